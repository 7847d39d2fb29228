"""A second real OpenID Provider for ssogate's integration tests: django-oauth-toolkit
(DOT) in a one-file Django project, on a loopback port.

Configuration comes as JSON in the OP_CONFIG environment variable:
  { "port": 0,
    "clients": [ { "client_id", "client_secret", "redirect_uris": [...],
                   "post_logout_redirect_uris": [...] } ],
    "accounts": { "<login>": { <claims: email, email_verified, given_name, groups...> } },
    "ttl": { "AccessToken", "IdToken", "RefreshToken", "AuthorizationCode" }   (seconds, optional),
    "authorization_response_iss": false   (true: RFC 9207 "iss" in authorization responses) }
Port 0 (or none) picks a free one. Once listening it prints one line to stdout,
{"issuer": "http://127.0.0.1:<port>/o"}, and nothing more; logs go to stderr.

The person "signing in" is simulated: a GET of /o/authorize/ signs in the account named
by login_hint (or keeps the current session, or signs in "alice" when there is none);
login_hint "deny" refuses (error=access_denied back to the redirect_uri). Consent is
pre-granted (skip_authorization). prompt=login goes through /login/, which signs in
again the same way; prompt=none without a session gets login_required.

Claims: sub is the login; the account's claims follow (they may override sub), with
preferred_username defaulting to the login. The standard OIDC scope of each claim
applies (email, profile), "groups" needs the groups scope, and any claim with no
known scope is always given. The same claims go in the ID token and in userinfo.

Test controls, as an IdP admin would act (no auth):
  POST /test/accounts/<login>  (JSON body) replaces the account's claims;
  POST /test/clients/<id>      (JSON {"redirect_uris": [...]}, optionally
                               "post_logout_redirect_uris") replaces a client's URIs;
  POST /test/revoke/<login>    revokes every token and grant of the account;
  GET  /test/refreshes         lists the refresh_token grants served: [{account, at}].
"""

import glob
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from urllib.parse import urlencode

import django
from django.conf import settings

CONFIG = json.loads(os.environ.get("OP_CONFIG") or "{}")
ACCOUNTS = dict(CONFIG.get("accounts") or {})
REFRESHES = []
REFRESHES_LOCK = threading.Lock()
GROUP_CLAIMS = ("groups", "entra_groups", "realm_access")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def bind_server():
    # Binding first gives the port (0 = any free one) before Django is configured,
    # so the issuer can be fixed in the settings.
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    server = ThreadedWSGIServer(("127.0.0.1", int(CONFIG.get("port") or 0)), WSGIRequestHandler)
    server.daemon_threads = True
    return server


def private_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def database_dir():
    # A file (not :memory:, which is one database per thread's connection). Clean up
    # the ones of earlier runs that were killed (SIGKILL gives no chance to).
    prefix = os.path.join(tempfile.gettempdir(), "ssogate-dot-op-")
    for old in glob.glob(prefix + "*"):
        try:
            os.kill(int(old[len(prefix):].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (ValueError, PermissionError):
            pass
    return tempfile.mkdtemp(prefix=f"ssogate-dot-op-{os.getpid()}-")


def configure(issuer, port, db_dir):
    ttl = CONFIG.get("ttl") or {}
    provider = {
        "OIDC_ENABLED": True,
        "OIDC_RSA_PRIVATE_KEY": private_key_pem(),
        "OIDC_ISS_ENDPOINT": issuer,
        "PKCE_REQUIRED": False,
        "SCOPES": {
            "openid": "OpenID Connect",
            "email": "Email address",
            "profile": "Profile",
            "groups": "Group memberships",
            "offline_access": "Offline access",
        },
        "DEFAULT_SCOPES": ["openid"],
        "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
        # Logout with a valid id_token_hint of the signed-in user goes through at once.
        "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
        "OAUTH2_VALIDATOR_CLASS": f"{__name__}.AccountValidator",
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": bool(CONFIG.get("authorization_response_iss")),
    }
    for name, setting in [
        ("AccessToken", "ACCESS_TOKEN_EXPIRE_SECONDS"),
        ("IdToken", "ID_TOKEN_EXPIRE_SECONDS"),
        ("RefreshToken", "REFRESH_TOKEN_EXPIRE_SECONDS"),
        ("AuthorizationCode", "AUTHORIZATION_CODE_EXPIRE_SECONDS"),
    ]:
        if name in ttl:
            provider[setting] = int(ttl[name])
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oauth2_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            f"{__name__}.SimulatedLogin",
        ],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(db_dir, "op.sqlite3"),
                "OPTIONS": {
                    "timeout": 30,
                    "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
                },
            }
        },
        # Browsers share cookies across the ports of one host: a name of its own keeps
        # this OP's session apart from ssogate's and from another OP's.
        SESSION_COOKIE_NAME=f"dot_op_session_{port}",
        CSRF_COOKIE_NAME=f"dot_op_csrf_{port}",
        LOGIN_URL="/login/",
        OAUTH2_PROVIDER=provider,
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr}},
            "root": {"handlers": ["stderr"], "level": "INFO"},
            "loggers": {"django": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
        },
    )
    logging.captureWarnings(True)


def account_claims(login):
    return ACCOUNTS.get(login) or {"email": f"{login}@example.com", "email_verified": True}


# --- everything below needs Django set up (see main) ---


def define_app():
    global AccountValidator, SimulatedLogin, urlpatterns

    from django.contrib.auth import get_user_model, login
    from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt
    from oauth2_provider.models import (
        get_access_token_model,
        get_application_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )
    from oauth2_provider.oauth2_validators import OAuth2Validator
    from oauth2_provider.settings import oauth2_settings

    Application = get_application_model()
    User = get_user_model()

    class AccountValidator(OAuth2Validator):
        oidc_claim_scope = {
            **OAuth2Validator.oidc_claim_scope,
            "hd": "profile",
            "department": "profile",
            **{claim: "groups" for claim in GROUP_CLAIMS},
        }

        def get_additional_claims(self, request):
            login_name = request.user.username
            return {"sub": login_name, "preferred_username": login_name, **account_claims(login_name)}

        def get_oidc_claims(self, token, token_handler, request):
            # As DOT's, except that a claim of no known scope is always given.
            claims = {}
            for k, v in self.get_claim_dict(request).items():
                if self.oidc_claim_scope.get(k, "openid") in request.scopes:
                    claims[k] = v(request) if callable(v) else v
            return claims

        def get_discovery_claims(self, request):
            return sorted(self.oidc_claim_scope)

        # DOT leaves these two to the deployment (its base raises NotImplementedError,
        # a 500 on prompt=none). Consent is pre-granted; whether there is a session
        # DOT's view checks itself (login_required when there is none).
        def validate_silent_authorization(self, request):
            return True

        def validate_silent_login(self, request):
            return True

        def save_bearer_token(self, token, request, *args, **kwargs):
            super().save_bearer_token(token, request, *args, **kwargs)
            if request.grant_type == "refresh_token":
                with REFRESHES_LOCK:
                    REFRESHES.append({"account": request.user.username, "at": int(time.time() * 1000)})

    def sign_in(request, who):
        if request.user.is_authenticated and request.user.username == who:
            return
        user, _ = User.objects.get_or_create(username=who)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")

    def deny(request):
        # Refuse only a request whose client and redirect_uri check out; anything else
        # goes on to DOT, which answers it as it would.
        client_id = request.GET.get("client_id", "")
        redirect_uri = request.GET.get("redirect_uri", "")
        app = Application.objects.filter(client_id=client_id).first()
        if app is None or not app.redirect_uri_allowed(redirect_uri):
            return None
        params = {"error": "access_denied", "error_description": "the user declined"}
        if "state" in request.GET:
            params["state"] = request.GET["state"]
        if oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS:
            params["iss"] = oauth2_settings.OIDC_ISS_ENDPOINT
        separator = "&" if "?" in redirect_uri else "?"
        response = HttpResponseRedirect(redirect_uri + separator + urlencode(params))
        response.allowed_schemes = app.get_allowed_schemes()
        return response

    class SimulatedLogin:
        """Signs in at /o/authorize/ as the login_hint says, with no login form."""

        def __init__(self, get_response):
            self.get_response = get_response

        def __call__(self, request):
            if request.method == "GET" and request.path == "/o/authorize/":
                hint = request.GET.get("login_hint")
                if hint == "deny":
                    response = deny(request)
                    if response is not None:
                        return response
                elif "none" not in request.GET.get("prompt", "").split():
                    if hint or not request.user.is_authenticated:
                        sign_in(request, hint or "alice")
            return self.get_response(request)

    def login_view(request):
        # prompt=login comes here (LOGIN_URL) with ?next=<the authorize URL, prompt dropped>.
        from urllib.parse import parse_qs, urlparse

        nxt = request.GET.get("next", "")
        if not nxt.startswith("/"):
            return HttpResponseBadRequest("no next")
        hint = (parse_qs(urlparse(nxt).query).get("login_hint") or ["alice"])[0]
        if hint == "deny":
            # Only a request that DOT would refuse anyway (unknown client or
            # redirect_uri) gets here with "deny": no redirect for it.
            return HttpResponseBadRequest("access denied; invalid client_id or redirect_uri")
        if request.user.is_authenticated and request.user.username == hint:
            # A fresh sign-in all the same: auth_time moves on.
            from django.contrib.auth import logout

            logout(request)
        sign_in(request, hint)
        return HttpResponseRedirect(nxt)

    def body(request):
        try:
            return json.loads(request.body or b"{}")
        except ValueError:
            return None

    @csrf_exempt
    def control_account(request, login_name):
        if request.method != "POST":
            return HttpResponse(status=405)
        claims = body(request)
        if not isinstance(claims, dict):
            return HttpResponseBadRequest("a JSON object of claims")
        ACCOUNTS[login_name] = claims
        return HttpResponse(status=204)

    @csrf_exempt
    def control_client(request, client_id):
        if request.method != "POST":
            return HttpResponse(status=405)
        data = body(request) or {}
        uris = data.get("redirect_uris")
        app = Application.objects.filter(client_id=client_id).first()
        if app is None or not isinstance(uris, list):
            return HttpResponseBadRequest("unknown client or no redirect_uris")
        fields = {"redirect_uris": " ".join(uris)}
        if isinstance(data.get("post_logout_redirect_uris"), list):
            fields["post_logout_redirect_uris"] = " ".join(data["post_logout_redirect_uris"])
        Application.objects.filter(pk=app.pk).update(**fields)
        return HttpResponse(status=204)

    @csrf_exempt
    def control_revoke(request, login_name):
        if request.method != "POST":
            return HttpResponse(status=405)
        for model in (
            get_refresh_token_model(),
            get_access_token_model(),
            get_id_token_model(),
            get_grant_model(),
        ):
            model.objects.filter(user__username=login_name).delete()
        return HttpResponse(status=204)

    def refreshes(request):
        with REFRESHES_LOCK:
            return JsonResponse(list(REFRESHES), safe=False)

    urlpatterns = [
        path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
        path("login/", login_view),
        path("test/accounts/<str:login_name>", control_account),
        path("test/clients/<str:client_id>", control_client),
        path("test/revoke/<str:login_name>", control_revoke),
        path("test/refreshes", refreshes),
    ]

    for client in CONFIG.get("clients") or []:
        public = client.get("token_endpoint_auth_method") == "none" or not client.get("client_secret")
        Application.objects.create(
            name=client["client_id"],
            client_id=client["client_id"],
            client_secret=client.get("client_secret") or "",
            # Stored as given: DOT's default PBKDF2 hashing costs ~1 s of CPU per token call.
            hash_client_secret=False,
            client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=" ".join(client.get("redirect_uris") or []),
            post_logout_redirect_uris=" ".join(client.get("post_logout_redirect_uris") or []),
            algorithm=Application.RS256_ALGORITHM,
            skip_authorization=True,
        )


def main():
    server = bind_server()
    port = server.server_port
    issuer = f"http://127.0.0.1:{port}/o"
    db_dir = database_dir()

    def stop(*_):
        shutil.rmtree(db_dir, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        configure(issuer, port, db_dir)
        django.setup()
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        call_command("migrate", verbosity=0)
        define_app()
        server.set_app(get_wsgi_application())
    except BaseException:
        shutil.rmtree(db_dir, ignore_errors=True)
        raise
    sys.stdout.write(json.dumps({"issuer": issuer}) + "\n")
    sys.stdout.flush()
    log(f"DOT OpenID Provider listening, issuer {issuer}")
    server.serve_forever()


if __name__ == "__main__":
    main()
