// A real OpenID Provider (npm oidc-provider) for ssogate's integration tests, on a
// free loopback port.
//
// Configuration comes as JSON in the OP_CONFIG environment variable:
//   { "clients": [ { client_id, client_secret, redirect_uris, ... } ],
//     "accounts": { "<login>": { <claims> } } }
// The person "signing in" is simulated: the login interaction completes at once as
// the account named by login_hint (or "alice"); login_hint "deny" refuses instead.
// Consent is pre-granted. Clients allowed the refresh_token grant get refresh tokens.
// "port" picks the port (default: any free one). Once listening it prints
// {"issuer": "http://127.0.0.1:<port>"}.
//
// Test controls, as an IdP admin would act:
//   POST /test/accounts/<login>  (JSON body) replaces the account's claims;
//   POST /test/revoke/<login>    revokes every grant (and refresh token) of the account;
//   GET  /test/refreshes         lists the refresh_token grants served: [{account, at}];
//   POST /test/clients/<id>      (JSON {"redirect_uris": [...]}) replaces a client's
//                                redirect URIs, as an IdP admin registers a new one.
import Provider from 'oidc-provider';
import http from 'node:http';

const config = JSON.parse(process.env.OP_CONFIG || '{}');
const accounts = config.accounts || {};
const grantsOf = {};
const refreshes = [];

const server = http.createServer();
await new Promise((resolve) => server.listen(config.port || 0, '127.0.0.1', resolve));
// "issuer_suffix": "/" gives an issuer ending in a slash, as LemonLDAP::NG's and Auth0's do.
const issuer = `http://127.0.0.1:${server.address().port}${config.issuer_suffix || ''}`;

const provider = new Provider(issuer, {
  clients: config.clients || [],
  pkce: { required: () => false },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'hd', 'department'],
    groups: ['groups', 'entra_groups', 'realm_access'],
  },
  ttl: config.ttl || {},
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  // Its back-channel logout calls go to ssogate on loopback, which the provider's
  // SSRF guard would refuse; in this test-only deployment that is the point.
  async fetch(url, options) {
    delete options.dispatcher;
    return fetch(url, options);
  },
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const accountId = ctx.oidc.session.accountId;
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId });
    grant.addOIDCScope('openid offline_access email profile groups');
    const id = await grant.save();
    (grantsOf[accountId] ||= []).push(id);
    return grant;
  },
  async findAccount(ctx, id) {
    const claims = accounts[id] || { email: `${id}@example.com`, email_verified: true };
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
for (const event of ['backchannel.error', 'server_error', 'end_session.error']) {
  provider.on(event, (...args) => console.error(event, ...args.map((a) => (a?.cause ? String(a.cause) : '') + (a?.message || a?.clientId || a))));
}
provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params.grant_type === 'refresh_token') {
    refreshes.push({ account: ctx.oidc.entities.Account?.accountId, at: Date.now() });
  }
});
// Plain http on loopback: no TLS-terminating proxy in front.
provider.proxy = false;

const handle = provider.callback();

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

async function testControl(req, res, [, action, who]) {
  if (action === 'clients') {
    const client = await provider.Client.find(who);
    const { redirect_uris: uris } = await body(req);
    if (!client || !Array.isArray(uris)) {
      res.statusCode = 400;
      return res.end('unknown client or no redirect_uris');
    }
    client.redirectUris = uris;
  } else if (action === 'accounts') {
    accounts[who] = await body(req);
  } else {
    for (const id of grantsOf[who] || []) {
      await provider.RefreshToken.adapter.revokeByGrantId(id);
      await provider.AccessToken.adapter.revokeByGrantId(id);
      const grant = await provider.Grant.find(id);
      if (grant) await grant.destroy();
    }
    grantsOf[who] = [];
  }
  res.statusCode = 204;
  res.end();
}

server.on('request', async (req, res) => {
  if (req.method === 'GET' && req.url === '/test/refreshes') {
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify(refreshes));
  }
  const control = req.method === 'POST' && req.url.match(/^\/test\/(accounts|revoke|clients)\/([^/?]+)$/);
  if (control) return testControl(req, res, control);
  const match = req.url.match(/^\/interaction\/([^/?]+)/);
  if (!match) return handle(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    const who = details.params.login_hint || 'alice';
    const result = who === 'deny'
      ? { error: 'access_denied', error_description: 'the user declined' }
      : { login: { accountId: who } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});

process.stdout.write(JSON.stringify({ issuer }) + '\n');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
