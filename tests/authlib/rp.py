"""A third real relying party, PyPI Authlib (its requests client), using ssogate's
refresh tokens, revocation (RFC 7009) and introspection (RFC 7662):

    rp.py refresh    '<json>'  (issuer, client_id, client_secret, refresh_token[, scope])
        -> the token response, with `id_token_claims` once Authlib has validated the
           refreshed ID token (signature by ssogate's JWKS, iss, aud, exp, at_hash)
    rp.py revoke     '<json>'  (issuer, client_id, client_secret, token[, token_type_hint]) -> {}
    rp.py introspect '<json>'  (issuer, client_id, client_secret, token) -> the answer

With `private_jwk` (a JWK) in the JSON the client authenticates with
private_key_jwt (RFC 7523) instead of its secret. Errors print {"error": ...,
"oauth_error": ...} and exit 1, so a test can assert on what was refused.
"""

import json
import sys
import warnings

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from joserfc import jwk as joserfc_jwk

warnings.simplefilter("ignore")


def main(step, data):
    meta = requests.get(data["issuer"] + "/.well-known/openid-configuration", timeout=10).json()
    if data.get("private_jwk"):
        # Authlib signs assertions with joserfc's key objects.
        key = joserfc_jwk.import_key(data["private_jwk"])
        method = PrivateKeyJWT(meta["token_endpoint"], alg=data["private_jwk"]["alg"])
        session = OAuth2Session(data["client_id"], key, token_endpoint_auth_method=method)
    else:
        session = OAuth2Session(data["client_id"], data.get("client_secret"), token_endpoint_auth_method="client_secret_basic")
    if step == "refresh":
        extra = {"scope": data["scope"]} if data.get("scope") else {}
        token = dict(session.refresh_token(meta["token_endpoint"], refresh_token=data["refresh_token"], **extra))
        keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
        claims = jwt.decode(
            token["id_token"],
            keys,
            claims_cls=CodeIDToken,
            claims_options={"iss": {"essential": True, "value": meta["issuer"]}, "aud": {"essential": True, "value": data["client_id"]}},
            claims_params={"access_token": token["access_token"]},
        )
        claims.validate()
        token["id_token_claims"] = dict(claims)
        return token
    if step == "revoke":
        r = session.revoke_token(meta["revocation_endpoint"], token=data["token"], token_type_hint=data.get("token_type_hint"))
        if r.status_code != 200:
            body = r.json()
            return fail(f"HTTP {r.status_code}", body.get("error"))
        return {}
    if step == "introspect":
        r = session.introspect_token(meta["introspection_endpoint"], token=data["token"])
        if r.status_code != 200:
            return fail(f"HTTP {r.status_code}", r.json().get("error"))
        return r.json()
    raise ValueError(f"unknown step {step}")


def fail(message, oauth_error):
    print(json.dumps({"error": message, "oauth_error": oauth_error}))
    sys.exit(1)


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
    except OAuthError as e:
        fail(f"{type(e).__name__}: {e}", e.error)
    except Exception as e:  # noqa: BLE001 - the test reads what went wrong
        fail(f"{type(e).__name__}: {e}", None)
