use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use super::{organization, PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::user::{CreateUser, UpdateUser, UserView};
use crate::core::Timestamp;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;
use crate::store::{Session, SessionFilter};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{org}/users", post(create).get(list))
        .route("/users/{id}", get(show).patch(update).delete(remove))
        .route("/users/{id}/sessions", get(sessions).delete(revoke_sessions))
        .route("/users/{id}/sessions/{session_id}", delete(revoke_session))
}

/// A session as admins see it: times and refresh health, never a token.
#[derive(Serialize)]
struct SessionView {
    id: String,
    connection_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    auth_time: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    last_active_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    idle_expires_at: Timestamp,
    /// The IdP's session (its `sid` claim), which its logout messages name.
    idp_sid: Option<String>,
    upstream: UpstreamView,
}

#[derive(Serialize)]
struct UpstreamView {
    has_refresh_token: bool,
    access_token_expires_at: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    next_refresh_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_refreshed_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    failing_since: Option<Timestamp>,
    last_error: Option<String>,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        let upstream = s.upstream.unwrap_or_default();
        SessionView {
            id: s.id,
            connection_id: s.connection_id,
            auth_time: s.auth_time,
            last_active_at: s.last_active_at,
            expires_at: s.expires_at,
            idle_expires_at: s.idle_expires_at,
            idp_sid: s.idp_sid,
            upstream: UpstreamView {
                has_refresh_token: upstream.refresh_token.is_some(),
                access_token_expires_at: upstream.expires_at,
                next_refresh_at: s.refresh.due_at,
                last_refreshed_at: s.refresh.last_refreshed_at,
                failing_since: s.refresh.failing_since,
                last_error: s.refresh.last_error,
            },
        }
    }
}

async fn user(state: &AppState, id: &str) -> ApiResult<UserView> {
    state.store.get_user(id).await?.ok_or_else(|| ApiError::not_found("user"))
}

/// The user's live sessions, newest first.
async fn sessions(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let user = user(&state, &id).await?;
    let t = state.broker.clock.now();
    let live: Vec<SessionView> =
        state.store.user_sessions(&user.user.id).await?.into_iter().filter(|s| s.is_live(t)).map(SessionView::from).collect();
    Ok(Json(json!({ "data": live })))
}

/// Signs the user out everywhere: every session ends and its tokens stop working.
async fn revoke_sessions(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = user(&state, &id).await?;
    let ended = state.broker.end_sessions(SessionFilter::User(&user.user.id), "admin", &actor).await?;
    Ok(Json(json!({ "revoked": ended.len() })))
}

async fn revoke_session(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, session_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = user(&state, &id).await?;
    let ended = state.broker.end_sessions(SessionFilter::Id { user_id: &user.user.id, id: &session_id }, "admin", &actor).await?;
    if ended.is_empty() {
        return Err(ApiError::not_found("session"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Pre-creates a user, e.g. for connections that admit existing users only.
async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let org = organization(&state, &org).await?;
    let (profile, groups) = body.validate()?;
    let user = state.broker.create_user(&org.id, profile, groups, &actor).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paginated<UserView>>> {
    let org = organization(&state, &org).await?;
    let (page, limit) = q.page()?;
    let rows = state.store.list_users(&org.id, &page).await?;
    Ok(Json(Paginated::new(rows, limit, |u| &u.user.id)))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    Ok(Json(user(&state, &id).await?))
}

/// `groups` is the user's whole list: groups kept stay as they were (synced or set
/// by hand), new ones are hand-set, which group sync leaves alone unless the
/// connection's sync is authoritative.
async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(state.broker.update_user(&id, Box::new(|u| body.apply(u)), &actor).await?))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.broker.delete_user(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
