use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{organization, PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::entitlements::{Entitlements, PutEntitlements};
use crate::core::organization::{CreateOrganization, Organization, UpdateOrganization};
use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations", post(create).get(list))
        .route("/organizations/{org}", get(show).patch(update).delete(remove))
        .route("/organizations/{org}/entitlements", get(entitlements).put(put_entitlements))
}

/// The licence with the seats in use.
#[derive(Serialize)]
struct EntitlementsView {
    #[serde(flatten)]
    entitlements: Entitlements,
    user_count: u64,
}

async fn entitlements(State(state): State<AppState>, Path(org): Path<String>) -> ApiResult<Json<EntitlementsView>> {
    let id = organization(&state, &org).await?.id;
    let (entitlements, user_count) = state.store.entitlements(&id).await?;
    Ok(Json(EntitlementsView { entitlements, user_count }))
}

/// Replaces the licence. Lowering `max_users` below the current count removes nobody:
/// existing users keep signing in, new ones are refused.
async fn put_entitlements(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<PutEntitlements>,
) -> ApiResult<Json<EntitlementsView>> {
    let id = organization(&state, &org).await?.id;
    state.broker.put_entitlements(&id, &body.validate()?, &actor).await?;
    entitlements(State(state), Path(id)).await
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<Organization>)> {
    let org = state.broker.create_organization(body.validate()?, &actor).await?;
    Ok((StatusCode::CREATED, Json(org)))
}

async fn list(State(state): State<AppState>, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Paginated<Organization>>> {
    let (page, limit) = q.page()?;
    let rows = state.store.list_organizations(&page).await?;
    Ok(Json(Paginated::new(rows, limit, |o| &o.id)))
}

async fn show(State(state): State<AppState>, Path(org): Path<String>) -> ApiResult<Json<Organization>> {
    Ok(Json(organization(&state, &org).await?))
}

async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<UpdateOrganization>,
) -> ApiResult<Json<Organization>> {
    let id = organization(&state, &org).await?.id;
    Ok(Json(state.broker.update_organization(&id, Box::new(|o| body.apply(o)), &actor).await?))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(org): Path<String>) -> ApiResult<StatusCode> {
    let id = organization(&state, &org).await?.id;
    state.broker.delete_organization(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
