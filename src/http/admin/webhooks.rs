//! Applications' webhook endpoints (created with their signing secret, shown once;
//! rotated; deleted) and the delivery log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::event::{CreateWebhook, Delivery, WebhookEndpoint};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/applications/{id}/webhooks", post(create).get(list))
        .route("/applications/{id}/webhooks/{webhook_id}", delete(remove))
        .route("/applications/{id}/webhooks/{webhook_id}/rotate-secret", post(rotate_secret))
        .route("/applications/{id}/webhook-deliveries", get(deliveries))
}

/// The one answer that carries an endpoint's signing secret.
#[derive(Serialize)]
struct WithSecret {
    #[serde(flatten)]
    webhook: WebhookEndpoint,
    secret: String,
}

#[derive(Serialize)]
struct Webhooks {
    data: Vec<WebhookEndpoint>,
}

async fn application_exists(state: &AppState, id: &str) -> ApiResult<()> {
    state.store.get_application(id).await?.map(|_| ()).ok_or_else(|| ApiError::not_found("application"))
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<WithSecret>)> {
    let new = body.validate(&state.broker.app_client.policy)?;
    let (webhook, secret) = state.broker.create_webhook(&id, new, &actor).await?;
    Ok((StatusCode::CREATED, Json(WithSecret { webhook, secret })))
}

async fn list(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Webhooks>> {
    application_exists(&state, &id).await?;
    Ok(Json(Webhooks { data: state.store.list_webhooks(&id).await? }))
}

async fn remove(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, webhook_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.delete_webhook(&id, &webhook_id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_secret(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, webhook_id)): Path<(String, String)>,
) -> ApiResult<Json<WithSecret>> {
    let (webhook, secret) = state.broker.rotate_webhook_secret(&id, &webhook_id, &actor).await?;
    Ok(Json(WithSecret { webhook, secret }))
}

async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paginated<Delivery>>> {
    application_exists(&state, &id).await?;
    let (page, limit) = q.page()?;
    let rows = state.store.list_deliveries(&id, &page).await?;
    Ok(Json(Paginated::new(rows, limit, |d| &d.id)))
}
