// A second real relying party, npm oauth4webapi (OpenID-certified, and strict: it
// checks RFC 9207 `iss` on the authorization response, PKCE, state, the nonce, and
// `auth_time` against `max_age`), signing in through ssogate like rp.mjs does:
//
//   node rp-oauth4webapi.mjs start  '<json>' -> {"url", "code_verifier", "state", "nonce"}
//   node rp-oauth4webapi.mjs finish '<json>' -> {"id_token_claims", "userinfo", "access_token", ...}
//
//   node rp-oauth4webapi.mjs refresh '<json>' (refresh_token) -> the new tokens and
//       the refreshed ID token's validated claims
//   node rp-oauth4webapi.mjs revoke '<json>' (token) -> {} (RFC 7009)
//   node rp-oauth4webapi.mjs introspect '<json>' (token) -> the answer (RFC 7662)
//
// With `private_jwk` (an ES256 JWK) the client authenticates with private_key_jwt.
// The JSON is rp.mjs's (issuer, client_id, client_secret, redirect_uri, params,
// callback_url and what start returned; `params.max_age` is checked on return).
// Errors print {"error": "..."} and exit 1.
import * as oauth from 'oauth4webapi';

const [, , step, raw] = process.argv;
const input = JSON.parse(raw);
const insecure = { [oauth.allowInsecureRequests]: true };

try {
  const issuer = new URL(input.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));
  const client = { client_id: input.client_id, ...(input.client_metadata || {}) };
  const auth = input.private_jwk
    ? oauth.PrivateKeyJwt({ key: await crypto.subtle.importKey('jwk', input.private_jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']), kid: input.private_jwk.kid })
    : input.client_secret ? oauth.ClientSecretBasic(input.client_secret) : oauth.None();
  if (step === 'start') {
    const code_verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const url = new URL(as.authorization_endpoint);
    const params = {
      client_id: input.client_id, redirect_uri: input.redirect_uri, response_type: 'code', scope: 'openid profile email groups',
      code_challenge: await oauth.calculatePKCECodeChallenge(code_verifier), code_challenge_method: 'S256', state, nonce,
      ...(input.params || {}),
    };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
    console.log(JSON.stringify({ url: url.href, code_verifier, state, nonce }));
  } else if (step === 'finish') {
    const callback = oauth.validateAuthResponse(as, client, new URL(input.callback_url), input.state);
    const response = await oauth.authorizationCodeGrantRequest(as, client, auth, callback, input.redirect_uri, input.code_verifier, insecure);
    const maxAge = input.params?.max_age;
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, {
      expectedNonce: input.nonce, requireIdToken: true, ...(maxAge === undefined ? {} : { maxAge: Number(maxAge) }),
    });
    const claims = oauth.getValidatedIdTokenClaims(tokens);
    const info = await oauth.userInfoRequest(as, client, tokens.access_token, insecure);
    const userinfo = await oauth.processUserInfoResponse(as, client, claims.sub, info);
    console.log(JSON.stringify({ id_token_claims: claims, userinfo, token_type: tokens.token_type, expires_in: tokens.expires_in, access_token: tokens.access_token, refresh_token: tokens.refresh_token ?? null }));
  } else if (step === 'refresh') {
    const response = await oauth.refreshTokenGrantRequest(as, client, auth, input.refresh_token, insecure);
    const tokens = await oauth.processRefreshTokenResponse(as, client, response);
    console.log(JSON.stringify({ id_token_claims: oauth.getValidatedIdTokenClaims(tokens), access_token: tokens.access_token, refresh_token: tokens.refresh_token }));
  } else if (step === 'revoke') {
    await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, input.token, insecure));
    console.log('{}');
  } else if (step === 'introspect') {
    const response = await oauth.introspectionRequest(as, client, auth, input.token, insecure);
    console.log(JSON.stringify(await oauth.processIntrospectionResponse(as, client, response)));
  } else {
    throw new Error(`unknown step ${step}`);
  }
} catch (err) {
  console.log(JSON.stringify({ error: `${err.name}: ${err.message}`, code: err.code, oauth_error: err.error || err.cause?.error || null }));
  process.exit(1);
}
