// An application written against WorkOS's Node SDK (npm @workos-inc/node), pointed at
// ssogate's base URL with an ssogate application's client id and secret as its
// client id and API key:
//
//   node workos.mjs authorization_url '<json>' (base, api_key, client_id, redirect_uri,
//       organization | connection, login_hint, state) -> {"url"}
//   node workos.mjs authorization_url_pkce '<json>' -> {"url", "state", "code_verifier"}
//   node workos.mjs profile_and_token '<json>' (…, code[, code_verifier]) -> {"profile", "accessToken"}
//   node workos.mjs profile '<json>' (…, access_token) -> the profile
//   node workos.mjs construct_event '<json>' (…, body, sig_header, secret) ->
//       {"verified": true, "event"} once `webhooks.constructEvent` has verified it
//
// Errors print {"error", "status"} and exit 1.
import { WorkOS } from '@workos-inc/node';

const [, , step, raw] = process.argv;
const input = JSON.parse(raw);
const base = new URL(input.base);
const workos = new WorkOS(input.api_key, { apiHostname: base.hostname, port: Number(base.port), https: false, clientId: input.client_id });

try {
  if (step === 'authorization_url') {
    const url = workos.sso.getAuthorizationUrl({
      clientId: input.client_id, redirectUri: input.redirect_uri, state: input.state,
      ...(input.organization && { organization: input.organization }),
      ...(input.connection && { connection: input.connection }),
      ...(input.login_hint && { loginHint: input.login_hint }),
    });
    console.log(JSON.stringify({ url }));
  } else if (step === 'authorization_url_pkce') {
    const { url, state, codeVerifier } = await workos.sso.getAuthorizationUrlWithPKCE({
      clientId: input.client_id, redirectUri: input.redirect_uri, organization: input.organization, loginHint: input.login_hint,
    });
    console.log(JSON.stringify({ url, state, code_verifier: codeVerifier }));
  } else if (step === 'profile_and_token') {
    const { profile, accessToken } = await workos.sso.getProfileAndToken({
      code: input.code, clientId: input.client_id, ...(input.code_verifier && { codeVerifier: input.code_verifier }),
    });
    console.log(JSON.stringify({ profile, accessToken }));
  } else if (step === 'construct_event') {
    const event = await workos.webhooks.constructEvent({ payload: JSON.parse(input.body), sigHeader: input.sig_header, secret: input.secret });
    // The SDK deserializes the event types it knows; it verified the signature either way.
    console.log(JSON.stringify({ verified: true, event: event ?? null }));
  } else if (step === 'profile') {
    console.log(JSON.stringify(await workos.sso.getProfile({ accessToken: input.access_token })));
  } else {
    throw new Error(`unknown step ${step}`);
  }
} catch (err) {
  console.log(JSON.stringify({ error: `${err.name}: ${err.message}`, status: err.status ?? null }));
  process.exit(1);
}
