//! The OpenID Provider endpoints applications use, and the callback identity
//! providers answer at. Thin: the [`Broker`](crate::broker::Broker) decides.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use cookie::SameSite;
use serde_json::json;

use super::cookies::{cookies, set_cookie};
use super::error::{page_status, OAuthJson};
use super::pages::{escape, form_page, message_page, page_framed_by, signed_out_of_apps};
use super::rate_limit::{retry_after, Limit};
use super::AppState;
use crate::broker::{client_credentials, BackchannelError, ClientAuthFailure, Reply, SsoProfileError, UserinfoError};
use crate::core::application::{Application, ClientType};
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::oidc::discovery::discovery;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(configuration))
        .route("/oauth2/jwks", get(jwks))
        .route("/oauth2/authorize", get(authorize).post(authorize))
        .route("/sso/callback", get(shared_callback))
        .route("/sso/callback/{connection_id}", get(callback))
        .route("/oauth2/token", axum::routing::post(token))
        .route("/oauth2/revoke", axum::routing::post(revoke))
        .route("/oauth2/introspect", axum::routing::post(introspect))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/oauth2/logout", get(logout).post(logout))
        .route("/oauth2/sso_userinfo", axum::routing::post(sso_userinfo))
        .route("/sso/logged-out", get(logged_out))
        .route("/sso/backchannel-logout/{connection_id}", axum::routing::post(backchannel_logout))
        .route("/sso/frontchannel-logout/{connection_id}", get(frontchannel_logout))
}

async fn configuration(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(discovery(&state.broker.issuer))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.broker.keys.jwks();
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")], body.as_str().to_owned()).into_response()
}

/// Parameters from the query (GET) or a form body (POST), as the spec allows both.
fn params(method: &Method, query: Option<String>, body: &Bytes) -> Vec<(String, String)> {
    let raw = if method == Method::POST { body.as_ref() } else { query.as_deref().unwrap_or_default().as_bytes() };
    url::form_urlencoded::parse(raw).into_owned().collect()
}

pub(super) fn reply(state: &AppState, r: Reply) -> Response {
    let (mut resp, cookies) = match r {
        Reply::Redirect { location, cookies } => (Redirect::to(&location).into_response(), cookies),
        Reply::ErrorPage { kind, title, message } => (message_page(page_status(kind), &title, &message), vec![]),
        Reply::ConfirmLogout { fields } => (logout_confirmation(&state.broker.issuer, &fields), vec![]),
        Reply::SignedOut { cookies } => {
            (message_page(200, "Signed out", "You are signed out of ssogate. You can close this window."), cookies)
        }
        Reply::SignedOutOfApps { frames, then, cookies } => (signed_out_of_apps(&frames, then.as_deref()), cookies),
        Reply::Trial { outcome, cookies } => (super::console::trial_page(&outcome), cookies),
    };
    for c in &cookies {
        let value = set_cookie(&c.name, c.value.as_deref(), c.path, c.max_age, state.config.secure_cookies(), SameSite::Lax);
        resp.headers_mut().append(header::SET_COOKIE, value);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Asks the user whether to sign out (OIDC RP-Initiated Logout 1.0 §2), posting the
/// request back with its confirmation token.
fn logout_confirmation(issuer: &str, fields: &[(String, String)]) -> Response {
    let hidden: String = fields
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value)))
        .collect();
    let body = format!(
        "<p>An application asked to sign you out of ssogate. Sign out?</p>\
         <form method=\"post\" action=\"{}/oauth2/logout\">{hidden}<button type=\"submit\" id=\"confirm-logout\">Sign out</button></form>\
         <p>If you did not ask to sign out, close this page: you stay signed in.</p>",
        escape(issuer)
    );
    form_page(200, "Sign out?", &body)
}

async fn logout(State(state): State<AppState>, method: Method, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let mut params = params(&method, query, &body);
    // The confirmation comes from the page's form, never in a URL (which leaks to logs).
    if method == Method::GET {
        params.retain(|(name, _)| name != "confirm");
    }
    let r = state.broker.end_session(params, &cookies(&headers)).await;
    reply(&state, r)
}

/// The page of a browser over the sign-in limit (`authorize`, whichever API).
pub(super) const TOO_MANY_SIGN_INS: (&str, &str) =
    ("Too many sign-in attempts", "Too many sign-ins were started from your network. Wait a moment, then try again.");

/// A per-address limit of an endpoint a browser loads: over it, the answer is a 429
/// page (`title`, `message`) with `Retry-After`, never a redirect.
pub(super) fn over_page_limit(
    limit: &Limit,
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    (title, message): (&str, &str),
) -> Option<Response> {
    let wait = limit.check(&state.limits.client(peer.ip(), headers)).err()?;
    Some((retry_after(wait), message_page(429, title, message)).into_response())
}

async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = over_page_limit(&state.limits.authorize, &state, peer, &headers, TOO_MANY_SIGN_INS) {
        return refused;
    }
    let r = state.broker.authorize(params(&method, query, &body), &cookies(&headers)).await;
    reply(&state, r)
}

async fn callback(
    State(state): State<AppState>,
    Path(connection_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = state.broker.callback(Some(&connection_id), params(&Method::GET, query, &Bytes::new()), &cookies(&headers)).await;
    reply(&state, r)
}

/// Connections from before each had its own redirect URI answer here.
async fn shared_callback(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let r = state.broker.callback(None, params(&Method::GET, query, &Bytes::new()), &cookies(&headers)).await;
    reply(&state, r)
}

pub(super) const NO_STORE: [(header::HeaderName, &str); 2] = [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")];

async fn token(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> Response {
    let (app, form) = match client_and_form(&state, peer, &headers, &body, Some(&state.limits.token)).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match state.broker.token(&app, form).await {
        Ok(t) => (NO_STORE, Json(t)).into_response(),
        Err(e) => OAuthJson(e).into_response(),
    }
}

/// RFC 7009 §2.2: 200 with an empty body, whether or not the token was known.
async fn revoke(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> Response {
    let (app, form) = match client_and_form(&state, peer, &headers, &body, Some(&state.limits.token)).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match state.broker.revoke(&app, &form).await {
        Ok(()) => (StatusCode::OK, NO_STORE).into_response(),
        Err(e) => OAuthJson(e).into_response(),
    }
}

/// RFC 7662 §2.2: the token's state as JSON, never cached.
async fn introspect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A resource server introspects at its API's request rate: no per-client
    // allowance, only the failure limits.
    let (app, form) = match client_and_form(&state, peer, &headers, &body, None).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match state.broker.introspect(&app, &form).await {
        Ok(answer) => (NO_STORE, Json(answer)).into_response(),
        Err(e) => OAuthJson(e).into_response(),
    }
}

/// The form of a request that authenticates its client, and the client (see
/// [`authenticated_client`]), or the answer refusing it.
pub(super) async fn client_and_form(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
    allowance: Option<&Limit>,
) -> Result<(Application, HashMap<String, String>), Response> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let app = authenticated_client(state, peer, headers, &form, allowance).await?;
    Ok((app, form))
}

/// Client authentication at the endpoints that take client credentials, under the
/// limits of [`rate_limit`](super::rate_limit): a key that failed too often is
/// refused before its next attempt is checked; failures count by (client, address)
/// or, naming no registered client, by address; only an authenticated client spends
/// its own per-client allowance (`allowance`, if the endpoint has one), so failures
/// of others never throttle it.
pub(super) async fn authenticated_client(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    allowance: Option<&Limit>,
) -> Result<Application, Response> {
    let limits = &state.limits;
    let address = limits.client(peer.ip(), headers);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let claimed = client_credentials(form, authorization).ok().map(|(id, _)| format!("{id} {address}"));
    let blocked = limits.unattributed_clients.check_blocked(&address);
    let blocked = blocked.and_then(|()| claimed.as_deref().map_or(Ok(()), |k| limits.client_auth_failures.check_blocked(k)));
    blocked.map_err(too_many)?;
    let app = match state.broker.authenticate_client(form, authorization).await {
        Ok(app) => app,
        Err(failure) => {
            let over = match &failure {
                ClientAuthFailure::Unattributed(_) => limits.unattributed_clients.record_failure(&address),
                ClientAuthFailure::Refused { client_id, .. } => {
                    limits.client_auth_failures.record_failure(&format!("{client_id} {address}"))
                }
                ClientAuthFailure::Store(_) => Ok(()),
            };
            over.map_err(too_many)?;
            return Err(OAuthJson(failure.into_error()).into_response());
        }
    };
    // Anyone can name a public client: its allowance is also per address.
    let key = match app.client_type {
        ClientType::Confidential | ClientType::ResourceServer => app.client_id.clone(),
        ClientType::Public => format!("{} {address}", app.client_id),
    };
    if let Some(limit) = allowance {
        limit.check(&key).map_err(too_many)?;
    }
    Ok(app)
}

fn too_many(wait: std::time::Duration) -> Response {
    let body = json!({"error": "temporarily_unavailable", "error_description": format!("too many requests from this client; retry in {} s", wait.as_secs().max(1))});
    (StatusCode::TOO_MANY_REQUESTS, NO_STORE, retry_after(wait), Json(body)).into_response()
}

pub(super) fn invalid_token() -> Response {
    OAuthJson(OAuthError::new(ErrorCode::InvalidToken, "the access token is missing, unknown, expired or revoked")).into_response()
}

fn invalid_request(why: impl Into<String>) -> Response {
    OAuthJson(OAuthError::new(ErrorCode::InvalidRequest, why)).into_response()
}

/// The live SSO profile, for application backends (form: `token`, plus client authentication).
async fn sso_userinfo(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (app, form) = match client_and_form(&state, peer, &headers, &body, Some(&state.limits.token)).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match state.broker.sso_profile(&app, form).await {
        Ok(profile) => (NO_STORE, Json(profile)).into_response(),
        Err(SsoProfileError::Request(e)) => OAuthJson(e).into_response(),
        Err(SsoProfileError::InactiveToken) => invalid_token(),
        Err(SsoProfileError::Store(e)) => OAuthJson(e.into()).into_response(),
    }
}

async fn logged_out(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let r = state.broker.logged_out(params(&Method::GET, query, &Bytes::new()));
    reply(&state, r)
}

/// OpenID Connect Front-Channel Logout 1.0 §2–3: a page the IdP frames, 400 for a
/// request that names no session of this connection's IdP; limited per address.
async fn frontchannel_logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(connection_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let why = ("Too many sign-out requests", "Too many sign-outs came from your network. Wait a moment, then try again.");
    if let Some(refused) = over_page_limit(&state.limits.frontchannel_logout, &state, peer, &headers, why) {
        return refused;
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    match state.broker.frontchannel_logout(&connection_id, &params).await {
        Ok(done) => page_framed_by(200, "Signed out", "You are signed out of ssogate.", &done.idp_origin, &done.frames),
        Err(BackchannelError::InvalidRequest(why)) => message_page(400, "Invalid logout request", &why),
        Err(BackchannelError::Unavailable) => {
            message_page(503, "Sign-out unavailable", "ssogate cannot reach its database; try again shortly.")
        }
    }
}

/// OpenID Connect Back-Channel Logout 1.0 §2.8: 200 when done, 400 with an OAuth
/// error when the token is refused.
async fn backchannel_logout(State(state): State<AppState>, Path(connection_id): Path<String>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match state.broker.backchannel_logout(&connection_id, &form).await {
        Ok(_) => (StatusCode::OK, NO_STORE).into_response(),
        Err(BackchannelError::InvalidRequest(why)) => invalid_request(why),
        Err(BackchannelError::Unavailable) => {
            OAuthJson(OAuthError::new(ErrorCode::TemporarilyUnavailable, "ssogate cannot reach its database; try again shortly"))
                .into_response()
        }
    }
}

/// The token comes in the `Authorization` header (RFC 6750 §2.1) or, on a POST, in
/// a form body (§2.2, pyoidc's default); never both (§2: one method per request).
async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    let mut in_body: Vec<String> = Vec::new();
    if method == Method::POST && form {
        in_body = url::form_urlencoded::parse(&body).filter(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned()).collect();
    }
    let token = match (bearer, in_body.len()) {
        (Some(_), 1..) => return invalid_request("the access token was sent both in the Authorization header and in the body"),
        (None, 2..) => return invalid_request("access_token was sent more than once"),
        (Some(t), _) => Some(t),
        (None, _) => in_body.pop(),
    };
    let result = match token {
        Some(t) => state.broker.userinfo(&t).await,
        None => Err(UserinfoError::InvalidToken),
    };
    match result {
        Ok(body) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], Bytes::from_owner(body)).into_response()
        }
        Err(UserinfoError::InvalidToken) => invalid_token(),
        Err(UserinfoError::Store(e)) => OAuthJson(e.into()).into_response(),
    }
}
