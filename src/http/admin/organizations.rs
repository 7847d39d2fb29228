use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::{organization, PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::ids::{new_id, IdKind};
use crate::core::now;
use crate::core::organization::{CreateOrganization, Organization, UpdateOrganization};
use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/organizations", post(create).get(list)).route("/organizations/{org}", get(show).patch(update).delete(remove))
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<Organization>)> {
    let new = body.validate()?;
    let t = now();
    let org = Organization {
        id: new_id(IdKind::Organization),
        name: new.name,
        slug: new.slug,
        domains: new.domains,
        created_at: t,
        updated_at: t,
    };
    let org = state.store.create_organization(org, new.slug_given, &actor).await?;
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
    Ok(Json(state.store.update_organization(&id, Box::new(|o| body.apply(o)), &actor).await?))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(org): Path<String>) -> ApiResult<StatusCode> {
    let id = organization(&state, &org).await?.id;
    state.store.delete_organization(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
