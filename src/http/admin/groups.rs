use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::{organization, PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::group::{CreateGroup, Group, UpdateGroup};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/organizations/{org}/groups", post(create).get(list)).route("/groups/{id}", get(show).patch(update).delete(remove))
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let org = organization(&state, &org).await?;
    let group = state.broker.create_group(&org.id, body.validate()?, &actor).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paginated<Group>>> {
    let org = organization(&state, &org).await?;
    let (page, limit) = q.page()?;
    let rows = state.store.list_groups(&org.id, &page).await?;
    Ok(Json(Paginated::new(rows, limit, |g| &g.id)))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Group>> {
    Ok(Json(state.store.get_group(&id).await?.ok_or_else(|| ApiError::not_found("group"))?))
}

async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateGroup>,
) -> ApiResult<Json<Group>> {
    let group = state.broker.update_group(&id, Box::new(|g| body.apply(g)), &actor).await?;
    Ok(Json(group))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.broker.delete_group(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
