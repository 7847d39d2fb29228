//! Progress of background group re-syncs.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::{organization, PageQuery, Paginated};
use crate::core::group_sync::SyncJob;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/organizations/{org}/sync-jobs", get(list)).route("/sync-jobs/{id}", get(show))
}

/// Newest first.
async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paginated<SyncJob>>> {
    let org = organization(&state, &org).await?;
    let (page, limit) = q.page()?;
    let rows = state.store.list_sync_jobs(&org.id, &page).await?;
    Ok(Json(Paginated::new(rows, limit, |j| &j.id)))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<SyncJob>> {
    Ok(Json(state.store.sync_job(&id).await?.ok_or_else(|| ApiError::not_found("sync job"))?))
}
