use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::{organization, PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::user::{CreateUser, UpdateUser, UserView};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/organizations/{org}/users", post(create).get(list)).route("/users/{id}", get(show).patch(update).delete(remove))
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
    let user = state.store.create_user(&org.id, profile, groups, &actor).await?;
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
    Ok(Json(state.store.get_user(&id).await?.ok_or_else(|| ApiError::not_found("user"))?))
}

/// Note: on a connection with group sync, hand-set groups are replaced at the
/// user's next login by what the IdP says.
async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(state.store.update_user(&id, Box::new(|u| body.apply(u)), &actor).await?))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.store.delete_user(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
