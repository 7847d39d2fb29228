"""An application written against WorkOS's Python SDK (PyPI workos), pointed at
ssogate's base URL with an ssogate application's client id and secret as its client id
and API key; the steps of tests/idp/workos.mjs:

    sdk.py authorization_url '<json>' -> {"url"}
    sdk.py profile_and_token '<json>' -> {"profile", "access_token", "expires_in"}
    sdk.py profile '<json>'           -> the profile
    sdk.py verify_header '<json>'     -> {} once `webhooks.verify_header` accepts the
                                         delivery's body and signature

Errors print {"error", "status"} and exit 1.
"""

import json
import sys

from workos import WorkOSClient


def main(step, data):
    client = WorkOSClient(api_key=data["api_key"], client_id=data["client_id"], base_url=data["base"] + "/", max_retries=0)
    if step == "authorization_url":
        routing = {k: data[k] for k in ("organization", "connection", "login_hint") if data.get(k)}
        return {"url": client.sso.get_authorization_url(redirect_uri=data["redirect_uri"], state=data.get("state"), **routing)}
    if step == "profile_and_token":
        answer = client.sso.get_profile_and_token(code=data["code"])
        return {"profile": answer.profile.to_dict(), "access_token": answer.access_token, "expires_in": answer.expires_in}
    if step == "verify_header":
        client.webhooks.verify_header(event_body=data["body"].encode(), event_signature=data["sig_header"], secret=data["secret"])
        return {}
    if step == "profile":
        return client.sso.get_profile(access_token=data["access_token"]).to_dict()
    raise ValueError(f"unknown step {step}")


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
    except Exception as e:  # noqa: BLE001 - the test reads what went wrong
        print(json.dumps({"error": f"{type(e).__name__}: {e}", "status": getattr(e, "status_code", None)}))
        sys.exit(1)
