use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{PageQuery, Paginated};
use crate::core::application::{Application, CreateApplication, UpdateApplication};
use crate::core::audit::Actor;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/applications", post(create).get(list))
        .route("/applications/{id}", get(show).patch(update).delete(remove))
        .route("/applications/{id}/rotate-secret", post(rotate_secret))
}

/// The one answer that carries an application's client secret: it is stored only
/// hashed, so this is the caller's only chance to copy it.
#[derive(Serialize)]
struct WithSecret {
    #[serde(flatten)]
    application: Application,
    /// `null` for public clients, which have none.
    client_secret: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateApplication>,
) -> ApiResult<(StatusCode, Json<WithSecret>)> {
    let new = body.validate(&state.broker.app_client.policy)?;
    let (application, client_secret) = state.broker.create_application(new, &actor).await?;
    Ok((StatusCode::CREATED, Json(WithSecret { application, client_secret })))
}

async fn list(State(state): State<AppState>, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Paginated<Application>>> {
    let (page, limit) = q.page()?;
    let rows = state.store.list_applications(&page).await?;
    Ok(Json(Paginated::new(rows, limit, |a| &a.id)))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Application>> {
    let app = state.store.get_application(&id).await?.ok_or_else(|| ApiError::not_found("application"))?;
    Ok(Json(app))
}

async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateApplication>,
) -> ApiResult<Json<Application>> {
    let policy = state.broker.app_client.policy.clone();
    Ok(Json(state.broker.update_application(&id, Box::new(move |a| body.apply(a, &policy)), &actor).await?))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.broker.delete_application(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new client secret; the old one stops working at once.
async fn rotate_secret(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<Json<WithSecret>> {
    let (application, client_secret) = state.broker.rotate_application_secret(&id, &actor).await?;
    Ok(Json(WithSecret { application, client_secret: Some(client_secret) }))
}
