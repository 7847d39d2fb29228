use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{organization, PageQuery, Paginated};
use crate::core::audit::AuditEvent;
use crate::core::ids::{looks_like, IdKind};
use crate::http::error::ApiResult;
use crate::http::extract::ApiQuery;
use crate::http::AppState;
use crate::store::EventFilter;

pub fn routes() -> Router<AppState> {
    Router::new().route("/organizations/{org}/events", get(for_organization)).route("/events", get(global))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// e.g. `connection.updated`
    action: Option<String>,
    target_id: Option<String>,
}

async fn list(state: &AppState, organization_id: Option<String>, q: EventQuery) -> ApiResult<Json<Paginated<AuditEvent>>> {
    let (page, limit) = PageQuery { limit: q.limit, cursor: q.cursor }.page()?;
    let filter = EventFilter { organization_id, action: q.action, target_id: q.target_id };
    let rows = state.store.list_events(&filter, &page).await?;
    Ok(Json(Paginated::new(rows, limit, |e| &e.id)))
}

/// An organization's audit log, newest first. A deleted organization's log stays
/// readable by its id.
async fn for_organization(
    State(state): State<AppState>,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Paginated<AuditEvent>>> {
    let id = match organization(&state, &org).await {
        Ok(o) => o.id,
        Err(_) if looks_like(IdKind::Organization, &org) => org,
        Err(e) => return Err(e),
    };
    list(&state, Some(id), q).await
}

/// Changes that belong to no organization (applications), newest first.
async fn global(State(state): State<AppState>, ApiQuery(q): ApiQuery<EventQuery>) -> ApiResult<Json<Paginated<AuditEvent>>> {
    list(&state, None, q).await
}
