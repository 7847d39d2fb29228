//! `GET /app/v1/events`: the events outbox for applications that poll instead of
//! (or beside) receiving webhooks, authenticated with the application's own client
//! credentials (HTTP Basic, as at the token endpoint) and limited like it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::OAuthJson;
use super::oidc::authenticated_client;
use super::AppState;
use crate::core::application::ClientType;
use crate::core::event::EventType;
use crate::core::oauth::{ErrorCode, OAuthError};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/app/v1/events", get(events))
}

/// `?after=<event id>&limit=&events=<type>,<type>`: events after the one named
/// (oldest first); `list_metadata.after` is where the next call starts.
async fn events(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    match authenticated_client(&state, peer, &headers, &HashMap::new(), Some(&state.limits.token)).await {
        Err(refused) => return refused,
        // An API's credentials serve to introspect, not to read the directory's events.
        Ok(app) if app.client_type != ClientType::Confidential => {
            let why = "only a confidential application may read events";
            return OAuthJson(OAuthError::new(ErrorCode::UnauthorizedClient, why)).into_response();
        }
        Ok(_) => {}
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    let bad = |why: String| OAuthJson(OAuthError::new(ErrorCode::InvalidRequest, why)).into_response();
    let limit = match params.get("limit").map(|l| l.parse::<u32>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return bad(format!("limit must be between 1 and {MAX_LIMIT}")),
    };
    let mut types = vec![];
    for name in params.get("events").map(|e| e.split(',').map(str::trim).filter(|t| !t.is_empty()).collect::<Vec<_>>()).unwrap_or_default()
    {
        match EventType::parse(name) {
            Some(t) => types.push(t),
            None => return bad(format!("unknown event type `{name}`")),
        }
    }
    let after = params.get("after").cloned().unwrap_or_default();
    match state.store.list_app_events(&after, &types, limit).await {
        Ok(events) => {
            let next = events.last().map(|e| e.id.clone()).unwrap_or(after);
            Json(json!({"object": "list", "data": events, "list_metadata": {"after": next}})).into_response()
        }
        Err(e) => OAuthJson(e.into()).into_response(),
    }
}
