//! A WorkOS-compatible SSO API: the routes and shapes of WorkOS's `/sso/authorize`,
//! `/sso/token` and `/sso/profile`, so an application written against WorkOS's SDKs
//! signs users in through ssogate by pointing them at its base URL. An environment is
//! an ssogate application (its client id and redirect URIs) and the API key is its
//! client secret. Only the shapes live here: the sign-in is ssogate's own, and its
//! users are mapped onto WorkOS's profile in [`profile`] and nowhere else.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::cookies::cookies;
use super::error::OAuthJson;
use super::extract::bearer_token;
use super::oidc::{authenticated_client, invalid_token, over_page_limit, reply, NO_STORE, TOO_MANY_SIGN_INS};
use super::pages::message_page;
use super::AppState;
use crate::broker::Person;
use crate::core::claims::full_name;
use crate::core::oauth::{ErrorCode, OAuthError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/sso/authorize", get(authorize)).route("/sso/token", post(token)).route("/sso/profile", get(get_profile))
}

/// What ssogate asks for on WorkOS's behalf, which has no `scope` parameter.
const SCOPE: &str = "openid profile email groups";

/// `GET /sso/authorize`: ssogate's authorization endpoint, which takes the same
/// routing parameters (`connection`, `organization`, `domain_hint`, `login_hint`)
/// and PKCE. WorkOS's OAuth `provider`s (GoogleOAuth, …) are not offered.
async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = over_page_limit(&state.limits.authorize, &state, peer, &headers, TOO_MANY_SIGN_INS) {
        return refused;
    }
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let named = |params: &[(String, String)], name: &str| params.iter().any(|(k, _)| k == name);
    if named(&params, "provider") && !named(&params, "connection") && !named(&params, "organization") {
        let message = "ssogate signs people in through their organization's identity provider: name a connection or an \
                       organization (WorkOS's OAuth providers are not offered).";
        return message_page(400, "Sign-in provider not offered", message);
    }
    // What WorkOS's providers take means nothing here; the scope is always the same
    // (an `offline_access` would mint a refresh token this flow never hands over).
    params.retain(|(k, _)| !(k.starts_with("provider") || k == "scope"));
    params.push(("scope".into(), SCOPE.into()));
    let r = state.broker.authorize(params, &cookies(&headers)).await;
    reply(&state, r)
}

/// The body of `/sso/token`: a form (the Node SDK) or JSON (the Python SDK), as
/// string values.
fn token_form(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let media_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|t| t.split(';').next());
    let json = media_type.is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Ok(url::form_urlencoded::parse(body).into_owned().collect());
    }
    let bad = || OAuthError::new(ErrorCode::InvalidRequest, "the body must be a JSON object of strings");
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else { return Err(bad()) };
    fields.into_iter().map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())).ok_or_else(bad)).collect()
}

/// `POST /sso/token`: the code (with the API key as `client_secret`, or PKCE for a
/// public client) for `{access_token, token_type, expires_in, profile}`.
async fn token(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match token_form(&headers, &body) {
        Ok(form) => form,
        Err(e) => return OAuthJson(e).into_response(),
    };
    let app = match authenticated_client(&state, peer, &headers, &form, Some(&state.limits.token)).await {
        Ok(app) => app,
        Err(refused) => return refused,
    };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return OAuthJson(OAuthError::new(ErrorCode::UnsupportedGrantType, "grant_type must be authorization_code")).into_response();
    }
    match state.broker.exchange_code_for_person(&app, &form).await {
        Ok((tokens, person)) => {
            let body = json!({
                "token_type": tokens.token_type, "access_token": tokens.access_token, "expires_in": tokens.expires_in,
                "profile": profile(&person),
            });
            (NO_STORE, Json(body)).into_response()
        }
        Err(e) => OAuthJson(e).into_response(),
    }
}

/// `GET /sso/profile` with the access token as bearer: the profile, as the user is now.
async fn get_profile(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let person = match bearer_token(&headers).filter(|t| !t.is_empty()) {
        Some(token) => state.broker.person_of_access_token(token).await,
        None => Ok(None),
    };
    match person {
        Ok(Some(person)) => (NO_STORE, Json(profile(&person))).into_response(),
        Ok(None) => invalid_token(),
        Err(e) => OAuthJson(e.into()).into_response(),
    }
}

/// A person as a WorkOS profile: `prof_` with the user's id (one profile per
/// person; ssogate links a person to one IdP subject per organization), the IdP's
/// subject as `idp_id`, the role and groups ssogate derived, and the IdP's other
/// claims as `raw_attributes`. Told what the token's scope allows, as userinfo is
/// (OIDC Core §5.4); the email only where ssogate vouches for it (WorkOS's profile
/// has no `email_verified`, and applications key users on it); the raw claims only
/// to applications that keep their secrets, and never the groups claim, which the
/// `groups` scope governs.
fn profile(person: &Person) -> Value {
    let has = |s: &str| person.scope.split(' ').any(|x| x == s);
    let user = &person.user;
    let u = &user.user;
    let names = has("profile");
    let name = full_name(u);
    let mut raw = match (&u.attributes, names && person.confidential_client) {
        (Value::Object(claims), true) => claims.clone(),
        _ => Default::default(),
    };
    for claim in ["groups", "roles", "_claim_names", "_claim_sources"].into_iter().chain(person.group_claim.as_deref()) {
        raw.remove(claim);
    }
    json!({
        "object": "profile",
        "id": format!("prof_{}", u.id.strip_prefix("user_").unwrap_or(&u.id)),
        "idp_id": u.idp_sub.clone().unwrap_or_default(),
        "organization_id": u.organization_id,
        "connection_id": u.connection_id,
        "connection_type": "GenericOIDC",
        "email": u.email.as_ref().filter(|_| has("email") && person.email_vouched),
        "first_name": u.first_name.as_ref().filter(|_| names),
        "last_name": u.last_name.as_ref().filter(|_| names),
        "name": name.filter(|_| names),
        "role": {"slug": user.role.as_str()},
        "roles": [{"slug": user.role.as_str()}],
        "groups": if has("groups") { json!(user.groups) } else { json!([]) },
        "custom_attributes": {},
        "raw_attributes": raw,
    })
}
