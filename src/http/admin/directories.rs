//! Directories (SCIM directory sync) of an organization: created with their SCIM
//! URL and bearer token (shown once), rotated, deleted, and inspected: counts,
//! last activity and last error, and the users and groups they pushed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::{organization, PageQuery, Paginated};
use crate::broker::ListRequest;
use crate::core::audit::Actor;
use crate::core::scim::directory::{CreateDirectory, UserDirectory};
use crate::core::scim::schema::ResourceType;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{org}/directories", post(create).get(list))
        .route("/directories/{id}", get(show).delete(remove))
        .route("/directories/{id}/rotate-token", post(rotate_token))
        .route("/directories/{id}/users", get(users))
        .route("/directories/{id}/groups", get(groups))
}

/// A directory with what an IdP admin types into their IdP's provisioning settings.
#[derive(Serialize)]
struct DirectoryView {
    #[serde(flatten)]
    directory: UserDirectory,
    scim_base_url: String,
    user_count: u64,
    group_count: u64,
    /// Only when created or rotated: it is stored hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_token: Option<String>,
}

async fn view(state: &AppState, directory: UserDirectory, bearer_token: Option<String>) -> ApiResult<DirectoryView> {
    let (user_count, group_count) = state.store.directory_counts(&directory.id).await?;
    Ok(DirectoryView { scim_base_url: state.broker.scim_base_url(&directory), directory, user_count, group_count, bearer_token })
}

async fn directory(state: &AppState, id: &str) -> ApiResult<UserDirectory> {
    state.store.get_directory(id).await?.ok_or_else(|| ApiError::not_found("directory"))
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<CreateDirectory>,
) -> ApiResult<(StatusCode, Json<DirectoryView>)> {
    let org = organization(&state, &org).await?;
    let (d, token) = state.broker.create_directory(&org.id, body.validate()?, &actor).await?;
    Ok((StatusCode::CREATED, Json(view(&state, d, Some(token)).await?)))
}

async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paginated<UserDirectory>>> {
    let org = organization(&state, &org).await?;
    let (page, limit) = q.page()?;
    let rows = state.store.list_directories(&org.id, &page).await?;
    Ok(Json(Paginated::new(rows, limit, |d| &d.id)))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<DirectoryView>> {
    let d = directory(&state, &id).await?;
    Ok(Json(view(&state, d, None).await?))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.broker.delete_directory(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<Json<DirectoryView>> {
    let (d, token) = state.broker.rotate_directory_token(&id, &actor).await?;
    Ok(Json(view(&state, d, Some(token)).await?))
}

/// `?start_index=&count=` over the directory's resources, as SCIM lists them.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcePage {
    start_index: Option<i64>,
    count: Option<i64>,
}

async fn resources(state: &AppState, id: &str, rt: ResourceType, q: ResourcePage) -> ApiResult<Json<Value>> {
    let d = directory(state, id).await?;
    let req = ListRequest { start_index: q.start_index, count: q.count, ..Default::default() };
    let list = state.broker.scim_list(&d, rt, &req).await.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.detail))?;
    Ok(Json(list))
}

async fn users(State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<ResourcePage>) -> ApiResult<Json<Value>> {
    resources(&state, &id, ResourceType::User, q).await
}

async fn groups(State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<ResourcePage>) -> ApiResult<Json<Value>> {
    resources(&state, &id, ResourceType::Group, q).await
}
