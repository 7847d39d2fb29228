use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{PageQuery, Paginated};
use crate::core::application::{Application, ClientType, CreateApplication, UpdateApplication};
use crate::core::audit::Actor;
use crate::core::ids::{new_id, IdKind};
use crate::core::now;
use crate::crypto::{hash_secret, random_token};
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

fn new_secret() -> ApiResult<(String, String)> {
    let secret = random_token("");
    let hash = hash_secret(&secret);
    Ok((secret, hash))
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateApplication>,
) -> ApiResult<(StatusCode, Json<WithSecret>)> {
    let new = body.validate(&state.broker.app_client.policy)?;
    let (client_secret, hash) = match new.client_type {
        ClientType::Confidential => new_secret().map(|(s, h)| (Some(s), h))?,
        ClientType::Public => (None, String::new()),
    };
    let t = now();
    let id = new_id(IdKind::Application);
    let application = Application {
        client_id: id.replacen("app_", "client_", 1),
        id,
        name: new.name,
        client_type: new.client_type,
        id_token_signed_response_alg: new.id_token_signed_response_alg,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        expose_idp_tokens: new.expose_idp_tokens,
        backchannel_logout_uri: new.backchannel_logout_uri,
        created_at: t,
        updated_at: t,
    };
    let application = state.broker.create_application(application, &hash, &actor).await?;
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
    let app = state.store.get_application(&id).await?.ok_or_else(|| ApiError::not_found("application"))?;
    if app.client_type == ClientType::Public {
        return Err(ApiError::new(StatusCode::CONFLICT, "public_client", "public clients have no secret to rotate"));
    }
    let (client_secret, hash) = new_secret()?;
    let application = state.broker.set_application_secret(&id, &hash, &actor).await?;
    Ok(Json(WithSecret { application, client_secret: Some(client_secret) }))
}
