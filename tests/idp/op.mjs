// A real OpenID Provider (npm oidc-provider) for ssogate's integration tests, on a
// free loopback port.
//
// Configuration comes as JSON in the OP_CONFIG environment variable:
//   { "clients": [ { client_id, client_secret, redirect_uris, ... } ],
//     "accounts": { "<login>": { <claims> } } }
// The person "signing in" is simulated: the login interaction completes at once as
// the account named by login_hint (or "alice"); login_hint "deny" refuses instead.
// Consent is pre-granted. Once listening it prints {"issuer": "http://127.0.0.1:<port>"}.
import Provider from 'oidc-provider';
import http from 'node:http';

const config = JSON.parse(process.env.OP_CONFIG || '{}');
const accounts = config.accounts || {};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

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
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access email profile groups');
    await grant.save();
    return grant;
  },
  async findAccount(ctx, id) {
    const claims = accounts[id] || { email: `${id}@example.com`, email_verified: true };
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
// Plain http on loopback: no TLS-terminating proxy in front.
provider.proxy = false;

const handle = provider.callback();
server.on('request', async (req, res) => {
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
