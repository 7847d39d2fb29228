// A real relying party (npm openid-client, certified) signing in through ssogate.
//
//   node rp.mjs start  '<json>'  -> {"url", "code_verifier", "state", "nonce"}
//   node rp.mjs finish '<json>'  -> {"id_token_claims", "userinfo", "token_type", "expires_in"}
//   node rp.mjs userinfo '<json>' (access_token, sub) -> the userinfo answer
//   node rp.mjs logout_url '<json>' (params) -> {"url"}: the RP-initiated logout URL
//   node rp.mjs verify_logout_token '<json>' (logout_token) -> its claims, once the
//       token is verified against ssogate's JWKS as OIDC Back-Channel Logout §2.6 asks
//   node rp.mjs refresh '<json>' (refresh_token[, scope]) -> the new tokens, the ID
//       token's claims validated by the library
//   node rp.mjs revoke '<json>' (token[, token_type_hint]) -> {} (RFC 7009)
//   node rp.mjs introspect '<json>' (token) -> the answer (RFC 7662), asked with this
//       client's credentials
//   node rp.mjs verify_access_token '<json>' (access_token, audience) -> its claims,
//       as a resource server verifies a JWT access token with jose (RFC 9068 §4)
//
//   node rp.mjs keypair '{"alg"}' -> {"private_jwk", "public_jwk"}: a client's signing key
//   node rp.mjs sign_assertion '<json>' (private_jwk, claims) -> {"assertion"}: a client
//       assertion made by hand, for the attacks no library would send
//
// With `private_jwk` in the JSON the client authenticates with private_key_jwt
// (RFC 7523) instead of a secret.
// The JSON carries issuer, client_id, client_secret (null for public clients),
// redirect_uri, optional client_metadata, and: for start, extra authorization parameters (`params`); for
// finish, `callback_url` and the values start returned. Errors print {"error": "..."}
// and exit 1, so a test can assert on what the library refused.
import * as client from 'openid-client';
import * as jose from 'jose';

const [, , step, raw] = process.argv;
const input = JSON.parse(raw);

async function configuration() {
  const auth = input.private_jwk
    ? client.PrivateKeyJwt({ key: await jose.importJWK(input.private_jwk, input.private_jwk.alg), kid: input.private_jwk.kid })
    : input.client_secret ? client.ClientSecretBasic(input.client_secret) : client.None();
  return client.discovery(new URL(input.issuer), input.client_id, input.client_metadata, auth, { execute: [client.allowInsecureRequests] });
}

try {
  if (step === 'keypair') {
    const alg = input.alg || 'ES256';
    const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
    const kid = `k-${Math.random().toString(36).slice(2)}`;
    const common = { kid, alg, use: 'sig' };
    console.log(JSON.stringify({ private_jwk: { ...(await jose.exportJWK(privateKey)), ...common }, public_jwk: { ...(await jose.exportJWK(publicKey)), ...common } }));
    process.exit(0);
  }
  if (step === 'sign_assertion') {
    const key = await jose.importJWK(input.private_jwk, input.private_jwk.alg);
    const assertion = await new jose.SignJWT(input.claims).setProtectedHeader({ alg: input.private_jwk.alg, kid: input.private_jwk.kid }).sign(key);
    console.log(JSON.stringify({ assertion }));
    process.exit(0);
  }
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
    console.log(JSON.stringify({ id_token_claims: claims, userinfo, token_type: tokens.token_type, expires_in: tokens.expires_in, access_token: tokens.access_token, id_token: tokens.id_token, refresh_token: tokens.refresh_token ?? null, scope: tokens.scope }));
  } else if (step === 'refresh') {
    const tokens = await client.refreshTokenGrant(config, input.refresh_token, input.scope ? { scope: input.scope } : undefined);
    console.log(JSON.stringify({ id_token_claims: tokens.claims(), access_token: tokens.access_token, refresh_token: tokens.refresh_token, scope: tokens.scope, expires_in: tokens.expires_in }));
  } else if (step === 'revoke') {
    await client.tokenRevocation(config, input.token, input.token_type_hint ? { token_type_hint: input.token_type_hint } : undefined);
    console.log('{}');
  } else if (step === 'introspect') {
    console.log(JSON.stringify(await client.tokenIntrospection(config, input.token)));
  } else if (step === 'verify_access_token') {
    const meta = config.serverMetadata();
    const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
    const { payload, protectedHeader } = await jose.jwtVerify(input.access_token, jwks, {
      issuer: meta.issuer, audience: input.audience, typ: 'at+jwt', requiredClaims: ['exp', 'iat', 'sub', 'client_id', 'jti'],
    });
    console.log(JSON.stringify({ ...payload, header_typ: protectedHeader.typ, header_alg: protectedHeader.alg }));
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
