//! The admin web console under `/admin`: a small single-page app (plain JavaScript,
//! embedded in the binary, no build step) over the same JSON admin API — so every
//! rule and error message is the API's, shown at the field it names. The browser
//! signs in with the admin token once and then holds a sealed session cookie
//! (`SameSite=Strict`, `HttpOnly`); every API call it makes must also carry the
//! session's CSRF token in a header.

mod session;
mod trial_page;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cookie::SameSite;
use serde::Deserialize;
use serde_json::json;

use super::cookies::{cookies, set_cookie};
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::AppState;
use crate::core::now;
pub use session::ConsoleSession;
pub use trial_page::trial_page;

/// The header the console's API calls carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Scripts and styles from ssogate only, no framing, no form posts elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/", get(index))
        .route("/admin/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/admin/assets/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/admin/session", get(current).post(sign_in).delete(sign_out))
        .route("/admin/try/{connection_id}", get(try_connection))
}

fn hardened(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn index() -> Response {
    hardened(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    hardened(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The console session the request's cookie holds, if valid and not signed out.
pub async fn session_of(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<ConsoleSession>> {
    let Some(sealed) = cookies(headers).remove(session::COOKIE) else { return Ok(None) };
    let Some(admin_hash) = state.admin_auth.current_hash(state.store.as_ref()).await? else { return Ok(None) };
    let Some(session) = ConsoleSession::open(&state.broker.sealer, &sealed, &admin_hash, now().unix_timestamp()) else { return Ok(None) };
    if state.store.is_used(&session.ended_handle()).await? {
        return Ok(None);
    }
    Ok(Some(session))
}

fn session_cookie(state: &AppState, value: Option<&str>) -> HeaderValue {
    set_cookie(session::COOKIE, value, "/", session::LIFETIME, state.config.secure_cookies(), SameSite::Strict)
}

/// What the page needs besides the API: the CSRF token and the public URL.
fn session_info(state: &AppState, s: &ConsoleSession) -> Json<serde_json::Value> {
    Json(json!({
        "csrf": s.csrf,
        "expires_at": s.expires_at,
        "public_url": state.config.public_url,
    }))
}

fn signed_out() -> ApiError {
    ApiError::unauthorized("sign in to the console with the admin token")
}

async fn current(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let s = session_of(&state, &headers).await?.ok_or_else(signed_out)?;
    Ok(hardened(session_info(&state, &s).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// Signs the browser in with the admin token. A JSON body: a cross-site form cannot
/// send one, so no other site can sign a browser in.
async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> ApiResult<Response> {
    state.limits.admin.check(&state.limits.client(peer.ip(), &headers)).map_err(ApiError::rate_limited)?;
    if !state.admin_auth.verify(body.token.trim(), state.store.as_ref()).await? {
        tracing::warn!("console sign-in with a wrong admin token");
        return Err(ApiError::unauthorized("the admin token is not valid").with_field("token"));
    }
    let admin_hash = state.admin_auth.current_hash(state.store.as_ref()).await?.ok_or_else(signed_out)?;
    let session = ConsoleSession::new(&admin_hash, now().unix_timestamp());
    let sealed = session.seal(&state.broker.sealer).ok_or_else(signed_out)?;
    let mut resp = session_info(&state, &session).into_response();
    resp.headers_mut().append(header::SET_COOKIE, session_cookie(&state, Some(&sealed)));
    Ok(hardened(resp))
}

/// Ends the console session for good (a copy of its cookie stops working on every
/// replica), and clears the cookie.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(session) = session_of(&state, &headers).await? {
        let until = time::OffsetDateTime::from_unix_timestamp(session.expires_at).unwrap_or_else(|_| now());
        state.store.use_once(&session.ended_handle(), until).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().append(header::SET_COOKIE, session_cookie(&state, None));
    Ok(resp)
}

#[derive(Deserialize)]
struct TryQuery {
    login_hint: Option<String>,
}

/// Starts a try-it sign-in through the connection, in the admin's browser.
async fn try_connection(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(connection_id): Path<String>,
    Query(q): Query<TryQuery>,
) -> Response {
    match session_of(&state, &headers).await {
        Ok(Some(_)) => super::oidc::reply(&state, state.broker.start_trial(&connection_id, q.login_hint).await),
        Ok(None) => super::pages::message_page(
            401,
            "Sign in first",
            "Open the console and sign in with the admin token, then try the connection again.",
        ),
        Err(e) => e.into_response(),
    }
}
