// A real relying party (npm openid-client, certified) signing in through ssogate.
//
//   node rp.mjs start  '<json>'  -> {"url", "code_verifier", "state", "nonce"}
//   node rp.mjs finish '<json>'  -> {"id_token_claims", "userinfo", "token_type", "expires_in"}
//   node rp.mjs userinfo '<json>' (access_token, sub) -> the userinfo answer
//   node rp.mjs logout_url '<json>' (params) -> {"url"}: the RP-initiated logout URL
//   node rp.mjs verify_logout_token '<json>' (logout_token) -> its claims, once the
//       token is verified against ssogate's JWKS as OIDC Back-Channel Logout §2.6 asks
//
// The JSON carries issuer, client_id, client_secret (null for public clients),
// redirect_uri, optional client_metadata, and: for start, extra authorization parameters (`params`); for
// finish, `callback_url` and the values start returned. Errors print {"error": "..."}
// and exit 1, so a test can assert on what the library refused.
import * as client from 'openid-client';
import * as jose from 'jose';

const [, , step, raw] = process.argv;
const input = JSON.parse(raw);

async function configuration() {
  const auth = input.client_secret ? client.ClientSecretBasic(input.client_secret) : client.None();
  return client.discovery(new URL(input.issuer), input.client_id, input.client_metadata, auth, { execute: [client.allowInsecureRequests] });
}

try {
  const config = await configuration();
  if (step === 'start') {
    const code_verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: input.redirect_uri,
      scope: 'openid profile email groups',
      code_challenge: await client.calculatePKCECodeChallenge(code_verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(input.params || {}),
    });
    console.log(JSON.stringify({ url: url.href, code_verifier, state, nonce }));
  } else if (step === 'finish') {
    const tokens = await client.authorizationCodeGrant(config, new URL(input.callback_url), {
      pkceCodeVerifier: input.code_verifier,
      expectedState: input.state,
      expectedNonce: input.nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    console.log(JSON.stringify({ id_token_claims: claims, userinfo, token_type: tokens.token_type, expires_in: tokens.expires_in, access_token: tokens.access_token, id_token: tokens.id_token }));
  } else if (step === 'userinfo') {
    console.log(JSON.stringify(await client.fetchUserInfo(config, input.access_token, input.sub)));
  } else if (step === 'logout_url') {
    console.log(JSON.stringify({ url: client.buildEndSessionUrl(config, input.params).href }));
  } else if (step === 'verify_logout_token') {
    const meta = config.serverMetadata();
    const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
    const { payload } = await jose.jwtVerify(input.logout_token, jwks, {
      issuer: meta.issuer, audience: input.client_id, typ: 'logout+jwt', maxTokenAge: '2 minutes', requiredClaims: ['iat', 'jti'],
    });
    const event = payload.events?.['http://schemas.openid.net/event/backchannel-logout'];
    if (typeof event !== 'object' || (!payload.sub && !payload.sid) || 'nonce' in payload) {
      throw new Error('not a valid logout token');
    }
    console.log(JSON.stringify(payload));
  } else {
    throw new Error(`unknown step ${step}`);
  }
} catch (err) {
  console.log(JSON.stringify({ error: `${err.name}: ${err.message}`, code: err.code, oauth_error: err.error || err.cause?.error || null, oauth_error_description: err.error_description || err.cause?.error_description || null }));
  process.exit(1);
}
