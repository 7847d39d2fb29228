//! A small fake OpenID Provider, for the faults a certified OP never produces: bad
//! signatures, `alg: none`, wrong audiences, stale tokens, rotated keys, slow or
//! failing endpoints. It signs with ssogate's own key code (test-only use).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use ssogate::oidc::keys::{SigningAlg, SigningKey};

/// What the fake does wrong on the next logins.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    BadSignature,
    AlgNone,
    Hmac,
    WrongAudience,
    WrongIssuer,
    Expired,
    /// `nbf` an hour ahead.
    NotYetValid,
    NonceMismatch,
    UnknownKid,
    UserinfoSubMismatch,
    SlowToken(Duration),
    TokenEndpointFails,
    IssParamMismatch,
    /// Advertises and accepts only client_secret_post at the token endpoint.
    PostAuthOnly,
    /// Userinfo carries a 100 KiB claim.
    HugeClaims,
    /// The endpoint moved to `/<name>2` (and discovery says so); `/<name>` is 404.
    Moved(Endpoint),
    /// Answers without RFC 9207 `iss` (and does not advertise it), as many IdPs do.
    NoIssParam,
    /// Reuses an old authentication whatever the request asked (`auth_time` two hours back).
    StaleAuthTime,
    /// Says the email it sends is not verified.
    UnverifiedEmail,
    /// The next userinfo call answers 503 (once), as an IdP hiccup would.
    UserinfoFailsOnce,
    /// Code exchanges wait for `release_token`: the test holds a sign-in at the IdP
    /// while it changes something, then lets it go on.
    HoldTokenUntilReleased,
    /// A malicious IdP of another tenant (RFC 9700 §4.4 mix-up): its authorization
    /// endpoint forwards the browser to `to` (an honest IdP's authorization request
    /// with the attacker's own nonce and PKCE challenge), keeping the victim's `state`.
    MixUp {
        to: String,
    },
}

/// The endpoints the fake can move.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Endpoint {
    Token,
    Userinfo,
    Jwks,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Token => "/token",
            Endpoint::Userinfo => "/userinfo",
            Endpoint::Jwks => "/jwks",
        }
    }
}

struct Inner {
    fault: Fault,
    keys: Vec<SigningKey>,
    /// Nonces by code, from the authorization requests.
    /// Per code: the nonce sent, and who signs in (`login_hint`, else `fake-user`).
    nonces: HashMap<String, (String, String)>,
    token_requests: usize,
    /// Redirect URIs the IdP accepts (an honest IdP's client registration); empty: any.
    registered_redirect_uris: Vec<String>,
    /// Per code: the redirect URI of its authorization request (RFC 6749 §4.1.3).
    code_redirect_uris: HashMap<String, String>,
    /// Every code presented at the token endpoint.
    codes_received: Vec<String>,
    /// The query of every authorization request.
    authorize_requests: Vec<HashMap<String, String>>,
    /// Refresh tokens rotate (as Okta, Auth0, oidc-provider do): each code and refresh
    /// grant issues the next one, and only the latest of a subject is accepted.
    rotating_refresh: bool,
    latest_refresh: HashMap<String, u64>,
    /// `expires_in` of the access tokens it issues.
    token_lifetime: u64,
    /// Every refresh token presented, in order.
    refreshes: Vec<String>,
    /// The `groups` userinfo reports.
    groups: Vec<String>,
    /// Code exchanges that have waited at `HoldTokenUntilReleased`.
    held: usize,
    /// The ID token carries the groups too, and refreshes answer without a new ID
    /// token (OIDC Core §12.2 allows it).
    id_token_groups_not_refreshed: bool,
    /// Where the groups are, if not in userinfo (distributed claims).
    groups_elsewhere: Option<GroupsElsewhere>,
}

/// Groups sent elsewhere (OIDC Core §5.6.2): the ID token names a source instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupsElsewhere {
    /// Microsoft Entra ID's group overage: a Graph `getMemberObjects` call answering
    /// the groups' ids (`{"value": [...]}`), with the user's access token.
    EntraGraph,
    /// The standard form: a JWT the OP signs, with the groups in it.
    SignedJwt,
    /// A source that fails (500).
    Broken,
}

#[derive(Clone)]
pub struct FakeOp {
    pub issuer: String,
    pub client_id: String,
    inner: Arc<Mutex<Inner>>,
    /// Releases a token request held by `HoldTokenUntilReleased`.
    hold: Arc<tokio::sync::Notify>,
}

impl FakeOp {
    pub async fn start(client_id: &str) -> Self {
        Self::start_on(client_id, 0).await
    }

    /// On a port chosen beforehand (an IdP that comes up where one was expected).
    pub async fn start_on(client_id: &str, port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let (key, _) = SigningKey::generate(SigningAlg::RS256, "key-1".into()).unwrap();
        let op = FakeOp {
            issuer,
            client_id: client_id.into(),
            inner: Arc::new(Mutex::new(Inner {
                fault: Fault::None,
                keys: vec![key],
                nonces: HashMap::new(),
                token_requests: 0,
                registered_redirect_uris: vec![],
                code_redirect_uris: HashMap::new(),
                codes_received: vec![],
                authorize_requests: vec![],
                rotating_refresh: false,
                latest_refresh: HashMap::new(),
                token_lifetime: 300,
                refreshes: vec![],
                groups: vec!["Engineering".into(), "Sales Team".into()],
                held: 0,
                id_token_groups_not_refreshed: false,
                groups_elsewhere: None,
            })),
            hold: Arc::new(tokio::sync::Notify::new()),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/jwks2", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/token2", post(token))
            .route("/userinfo", get(userinfo))
            .route("/userinfo2", get(userinfo))
            .route("/graph/users/{user}/getMemberObjects", post(graph_member_objects))
            .route("/claims/{user}", get(signed_claims))
            .layer(axum::middleware::from_fn_with_state(op.clone(), gone_if_moved))
            .with_state(op.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        op
    }

    pub fn set_fault(&self, fault: Fault) {
        self.inner.lock().unwrap().fault = fault;
    }

    /// Replaces the signing key with a new one (new kid); the JWKS publishes only it.
    pub fn rotate_key(&self, kid: &str) {
        let (key, _) = SigningKey::generate(SigningAlg::RS256, kid.into()).unwrap();
        self.inner.lock().unwrap().keys = vec![key];
    }

    pub fn token_requests(&self) -> usize {
        self.inner.lock().unwrap().token_requests
    }

    /// From now on, accepts only these redirect URIs (exactly), as an honest IdP does.
    pub fn register_redirect_uris(&self, uris: &[&str]) {
        self.inner.lock().unwrap().registered_redirect_uris = uris.iter().map(|u| u.to_string()).collect();
    }

    /// Accepts one more redirect URI (another client registration of the same IdP).
    pub fn register_redirect_uri(&self, uri: &str) {
        self.inner.lock().unwrap().registered_redirect_uris.push(uri.to_owned());
    }

    pub fn codes_received(&self) -> Vec<String> {
        self.inner.lock().unwrap().codes_received.clone()
    }

    pub fn authorize_requests(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().unwrap().authorize_requests.clone()
    }

    /// Issues refresh tokens at sign-in and rotates them, refusing any but the latest;
    /// access tokens last `lifetime`.
    pub fn rotate_refresh_tokens(&self, lifetime: Duration) {
        let mut inner = self.inner.lock().unwrap();
        inner.rotating_refresh = true;
        inner.token_lifetime = lifetime.as_secs();
    }

    pub fn refreshes(&self) -> Vec<String> {
        self.inner.lock().unwrap().refreshes.clone()
    }

    #[allow(dead_code)] // for the scale benchmark
    pub fn refresh_count(&self) -> usize {
        self.inner.lock().unwrap().refreshes.len()
    }

    /// Access tokens (at sign-in and refresh) last `lifetime`.
    #[allow(dead_code)] // for the scale benchmark
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner.lock().unwrap().token_lifetime = lifetime.as_secs();
    }

    /// From now on, userinfo reports these groups.
    pub fn set_groups(&self, groups: &[&str]) {
        self.inner.lock().unwrap().groups = groups.iter().map(|g| g.to_string()).collect();
    }

    /// Puts the groups in the sign-in's ID token too, and answers refreshes without
    /// a new ID token: only userinfo can tell a refresh what the groups are now.
    pub fn keep_id_token_groups_across_refreshes(&self) {
        self.inner.lock().unwrap().id_token_groups_not_refreshed = true;
    }

    /// From now on, the groups are not in userinfo but where `elsewhere` says.
    pub fn send_groups_elsewhere(&self, elsewhere: GroupsElsewhere) {
        self.inner.lock().unwrap().groups_elsewhere = Some(elsewhere);
    }

    /// How many code exchanges have reached `HoldTokenUntilReleased`.
    pub fn held_token_requests(&self) -> usize {
        self.inner.lock().unwrap().held
    }

    /// Lets a token request held by `HoldTokenUntilReleased` answer.
    pub fn release_token(&self) {
        self.hold.notify_one();
    }
}

async fn discovery(State(op): State<FakeOp>) -> Json<Value> {
    let i = &op.issuer;
    let fault = op.inner.lock().unwrap().fault.clone();
    let at = |e: Endpoint| if fault == Fault::Moved(e) { format!("{i}{}2", e.path()) } else { format!("{i}{}", e.path()) };
    let auth_methods =
        if fault == Fault::PostAuthOnly { json!(["client_secret_post"]) } else { json!(["client_secret_basic", "client_secret_post"]) };
    Json(json!({
        "token_endpoint_auth_methods_supported": auth_methods,
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": at(Endpoint::Token),
        "userinfo_endpoint": at(Endpoint::Userinfo),
        "jwks_uri": at(Endpoint::Jwks),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        // A mix-up attacker does not promise iss either: the victim's IdP sends none.
        "authorization_response_iss_parameter_supported": !matches!(fault, Fault::NoIssParam | Fault::MixUp { .. }),
    }))
}

async fn jwks(State(op): State<FakeOp>) -> Json<Value> {
    let keys: Vec<Value> = op.inner.lock().unwrap().keys.iter().map(|k| k.public_jwk()).collect();
    Json(json!({ "keys": keys }))
}

/// Signs the user in at once: straight back to the redirect URI with a code.
async fn authorize(State(op): State<FakeOp>, Query(q): Query<HashMap<String, String>>) -> Response {
    let code = format!("code-{}", ssogate::core::ids::new_id(ssogate::core::ids::IdKind::Event));
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let fault = {
        let mut inner = op.inner.lock().unwrap();
        inner.authorize_requests.push(q.clone());
        if !inner.registered_redirect_uris.is_empty() && !inner.registered_redirect_uris.contains(&redirect_uri) {
            return (axum::http::StatusCode::BAD_REQUEST, "redirect_uri is not registered for this client").into_response();
        }
        let who = q.get("login_hint").cloned().unwrap_or_else(|| "fake-user".into());
        inner.nonces.insert(code.clone(), (q.get("nonce").cloned().unwrap_or_default(), who));
        inner.code_redirect_uris.insert(code.clone(), redirect_uri.clone());
        inner.fault.clone()
    };
    if let Fault::MixUp { to } = &fault {
        let mut url = url::Url::parse(to).unwrap();
        url.query_pairs_mut().append_pair("state", &q["state"]);
        return Redirect::to(url.as_str()).into_response();
    }
    let mut url = url::Url::parse(&redirect_uri).unwrap();
    url.query_pairs_mut().append_pair("code", &code).append_pair("state", &q["state"]);
    match fault {
        Fault::NoIssParam => {}
        Fault::IssParamMismatch => {
            url.query_pairs_mut().append_pair("iss", "https://someone-else.example.com");
        }
        _ => {
            url.query_pairs_mut().append_pair("iss", &op.issuer);
        }
    }
    Redirect::to(url.as_str()).into_response()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// The old address of a moved endpoint answers 404.
async fn gone_if_moved(State(op): State<FakeOp>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Fault::Moved(e) = op.inner.lock().unwrap().fault {
        if req.uri().path() == e.path() {
            return (axum::http::StatusCode::NOT_FOUND, "no such endpoint").into_response();
        }
    }
    next.run(req).await
}

async fn token(State(op): State<FakeOp>, headers: axum::http::HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    // Client authentication as the discovery document promises.
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let expected_basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:fake-secret", op.client_id));
    let post_only = op.inner.lock().unwrap().fault == Fault::PostAuthOnly;
    let authenticated = if post_only {
        basic.is_none()
            && form.get("client_id") == Some(&op.client_id)
            && form.get("client_secret").map(String::as_str) == Some("fake-secret")
    } else {
        basic == Some(expected_basic.as_str())
    };
    if !authenticated {
        return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        if op.inner.lock().unwrap().fault == Fault::TokenEndpointFails {
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "upstream database exploded").into_response();
        }
        return refresh(&op, &form).into_response();
    }
    let hold = {
        let mut inner = op.inner.lock().unwrap();
        inner.held += usize::from(inner.fault == Fault::HoldTokenUntilReleased);
        inner.fault == Fault::HoldTokenUntilReleased
    };
    if hold {
        op.hold.notified().await;
    }
    let (fault, (nonce, sub)) = {
        let mut inner = op.inner.lock().unwrap();
        inner.token_requests += 1;
        let code = form.get("code").cloned().unwrap_or_default();
        inner.codes_received.push(code.clone());
        if inner.code_redirect_uris.get(&code).is_some_and(|sent| form.get("redirect_uri") != Some(sent)) {
            return (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
        }
        (inner.fault.clone(), inner.nonces.get(&code).cloned().unwrap_or_default())
    };
    let email = if sub == "fake-user" { "fake.user@fake.test".to_owned() } else { format!("{sub}@fake.test") };
    match fault {
        Fault::SlowToken(d) => tokio::time::sleep(d).await,
        Fault::TokenEndpointFails => {
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "upstream database exploded").into_response();
        }
        _ => {}
    }
    let now = ssogate::core::now().unix_timestamp();
    let mut claims = json!({
        "iss": op.issuer, "aud": op.client_id, "sub": sub, "exp": now + 300, "iat": now,
        "nonce": nonce, "email": email, "email_verified": fault != Fault::UnverifiedEmail,
        "auth_time": if fault == Fault::StaleAuthTime { now - 7200 } else { now },
    });
    match fault {
        Fault::WrongAudience => claims["aud"] = json!("another-client"),
        Fault::WrongIssuer => claims["iss"] = json!("https://evil.example.com"),
        Fault::Expired => {
            claims["exp"] = json!(now - 3600);
            claims["iat"] = json!(now - 4000);
        }
        Fault::NotYetValid => claims["nbf"] = json!(now + 3600),
        Fault::NonceMismatch => claims["nonce"] = json!("not-the-nonce"),
        _ => {}
    }
    {
        let inner = op.inner.lock().unwrap();
        if inner.id_token_groups_not_refreshed {
            claims["groups"] = json!(inner.groups);
        }
        if let Some(elsewhere) = inner.groups_elsewhere {
            let endpoint = match elsewhere {
                GroupsElsewhere::EntraGraph => format!("{}/graph/users/{sub}/getMemberObjects", op.issuer),
                GroupsElsewhere::SignedJwt | GroupsElsewhere::Broken => format!("{}/claims/{sub}", op.issuer),
            };
            claims["_claim_names"] = json!({"groups": "src1"});
            claims["_claim_sources"] = json!({"src1": {"endpoint": endpoint}});
        }
    }
    let id_token = {
        let inner = op.inner.lock().unwrap();
        let key = &inner.keys[0];
        match fault {
            Fault::AlgNone => format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims)),
            Fault::Hmac => jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(b"whatever"),
            )
            .unwrap(),
            Fault::UnknownKid => {
                let (other, _) = SigningKey::generate(SigningAlg::RS256, "never-published".into()).unwrap();
                other.sign_jwt(&claims).unwrap()
            }
            Fault::BadSignature => {
                let token = key.sign_jwt(&claims).unwrap();
                let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                let mut tampered = claims.clone();
                tampered["sub"] = json!("admin");
                parts[1] = b64(&tampered);
                parts.join(".")
            }
            _ => key.sign_jwt(&claims).unwrap(),
        }
    };
    let mut inner = op.inner.lock().unwrap();
    let mut answer =
        json!({"access_token": format!("at.{sub}.0"), "token_type": "Bearer", "expires_in": inner.token_lifetime, "id_token": id_token});
    if inner.rotating_refresh {
        inner.latest_refresh.insert(sub.clone(), 0);
        answer["refresh_token"] = json!(format!("rt.{sub}.0"));
    }
    Json(answer).into_response()
}

/// `refresh_token` grants: refresh tokens read `rt.<sub>.<n>`; each use returns the
/// next one, a new access token naming the subject, and a fresh ID token.
fn refresh(op: &FakeOp, form: &HashMap<String, String>) -> Response {
    let parts: Vec<&str> = form.get("refresh_token").map_or(vec![], |t| t.split('.').collect());
    let [_, sub, n] = parts[..] else {
        return (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    };
    let presented: u64 = n.parse().unwrap_or(0);
    {
        let mut inner = op.inner.lock().unwrap();
        inner.refreshes.push(form["refresh_token"].clone());
        if inner.rotating_refresh {
            if inner.latest_refresh.get(sub) != Some(&presented) {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant", "error_description": "refresh token already used"})),
                )
                    .into_response();
            }
            inner.latest_refresh.insert(sub.to_owned(), presented + 1);
        }
    }
    let next = presented + 1;
    let lifetime = op.inner.lock().unwrap().token_lifetime;
    let now = ssogate::core::now().unix_timestamp();
    let claims = json!({"iss": op.issuer, "aud": op.client_id, "sub": sub, "exp": now + 300, "iat": now});
    let inner = op.inner.lock().unwrap();
    let mut answer = json!({
        "access_token": format!("at.{sub}.{next}"), "refresh_token": format!("rt.{sub}.{next}"),
        "token_type": "Bearer", "expires_in": lifetime,
    });
    if !inner.id_token_groups_not_refreshed {
        answer["id_token"] = json!(inner.keys[0].sign_jwt(&claims).unwrap());
    }
    Json(answer).into_response()
}

async fn userinfo(State(op): State<FakeOp>, headers: axum::http::HeaderMap) -> Response {
    let fault = {
        let mut inner = op.inner.lock().unwrap();
        if inner.fault == Fault::UserinfoFailsOnce {
            inner.fault = Fault::None;
            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
        inner.fault.clone()
    };
    // Access tokens name their subject (`at.<sub>.<n>`).
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let refreshed = bearer.and_then(|t| t.strip_prefix("at.")).and_then(|t| t.split('.').next());
    let (sub, username) = match (refreshed, fault == Fault::UserinfoSubMismatch) {
        (_, true) => ("someone-else", "fake"),
        (Some("fake-user") | None, _) => ("fake-user", "fake"),
        (Some(sub), _) => (sub, sub),
    };
    let (groups, elsewhere) = {
        let inner = op.inner.lock().unwrap();
        (inner.groups.clone(), inner.groups_elsewhere.is_some())
    };
    let mut info = json!({"sub": sub, "preferred_username": username});
    if !elsewhere {
        info["groups"] = json!(groups);
    }
    if fault == Fault::HugeClaims {
        info["blob"] = json!("x".repeat(100 * 1024));
    }
    Json(info).into_response()
}

/// The subject an access token (`at.<sub>.<n>`) names, if it is one of this OP's.
fn bearer_subject(headers: &axum::http::HeaderMap) -> Option<String> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    token.strip_prefix("at.")?.split('.').next().map(str::to_owned)
}

/// Entra ID's group overage source, as Microsoft Graph answers it: the ids of the
/// user's groups (here: each group name is its id).
async fn graph_member_objects(
    State(op): State<FakeOp>,
    axum::extract::Path(user): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if bearer_subject(&headers).as_deref() != Some(user.as_str()) {
        return (axum::http::StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    Json(json!({"value": op.inner.lock().unwrap().groups})).into_response()
}

/// The standard distributed claims source: a JWT the OP signs for the user.
async fn signed_claims(
    State(op): State<FakeOp>,
    axum::extract::Path(user): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let inner = op.inner.lock().unwrap();
    if inner.groups_elsewhere == Some(GroupsElsewhere::Broken) || bearer_subject(&headers).as_deref() != Some(user.as_str()) {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no").into_response();
    }
    let claims = json!({"iss": op.issuer, "sub": user, "groups": inner.groups});
    ([(axum::http::header::CONTENT_TYPE, "application/jwt")], inner.keys[0].sign_jwt(&claims).unwrap()).into_response()
}
