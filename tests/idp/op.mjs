// A real OpenID Provider for ssogate's integration tests, on a free loopback port.
//
// Configuration comes as JSON in the OP_CONFIG environment variable:
//   { "clients": [ { client_id, client_secret, redirect_uris, ... } ],
//     "accounts": { "<login>": { <claims> } } }
// Once listening it prints one JSON line: {"issuer": "http://127.0.0.1:<port>"}.
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
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'hd', 'department'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  async findAccount(ctx, id) {
    const claims = accounts[id] || { email: `${id}@example.com`, email_verified: true };
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
// Plain http on loopback: tell the provider it is not behind a TLS proxy.
provider.proxy = false;

server.on('request', provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + '\n');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
