//! The JSON admin API under `/api/v1`, behind the admin bearer token.

mod applications;
mod connections;
mod directories;
mod events;
mod groups;
mod organizations;
mod signing_keys;
mod sync_jobs;
mod users;
mod webhooks;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::bearer_token;
use super::{console, AppState};
use crate::core::audit::Actor;
use crate::core::organization::Organization;
use crate::core::ValidationError;
use crate::store::Page;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(organizations::routes())
        .merge(connections::routes())
        .merge(directories::routes())
        .merge(applications::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(events::routes())
        .merge(signing_keys::routes())
        .merge(sync_jobs::routes())
        .merge(webhooks::routes())
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// The OpenAPI description of this API (`docs/openapi.yaml`), served without a token
/// so that tools can be pointed at a running instance.
pub async fn openapi_description() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/yaml")], include_str!("../../../docs/openapi.yaml"))
}

/// Lets the request through only with `Authorization: Bearer <admin token>`, or from
/// the console (its session cookie plus the CSRF header), and records who acts for
/// the audit log.
async fn require_admin(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    // Before any check: guessing tokens costs attempts.
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        state.limits.admin.check(&state.limits.client(peer.ip(), req.headers())).map_err(ApiError::rate_limited)?;
    }
    let actor = match bearer_token(req.headers()) {
        Some(presented) => {
            if !state.admin_auth.verify(presented, state.store.as_ref()).await? {
                return Err(ApiError::unauthorized("the admin token is not valid"));
            }
            Actor::admin_token()
        }
        None => {
            let Some(session) = console::session_of(&state, req.headers()).await? else {
                return Err(ApiError::unauthorized("send the admin token as `Authorization: Bearer <token>`"));
            };
            let csrf = req.headers().get(console::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !session.csrf_matches(csrf) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "the console's request lacks its CSRF token; reload the page",
                ));
            }
            Actor::admin_console()
        }
    };
    req.extensions_mut().insert(actor);
    Ok(next.run(req).await)
}

/// `?limit=&cursor=` on every list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

impl PageQuery {
    /// The page to ask the store for: one row more than shown, to know whether
    /// another page follows.
    fn page(&self) -> ApiResult<(Page, u32)> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ValidationError::new("limit", format!("must be between 1 and {MAX_PAGE}")).into());
        }
        Ok((Page { limit: limit + 1, cursor: self.cursor.clone() }, limit))
    }
}

/// A page of results and the cursor of the next page, if any.
#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Paginated<T> {
    fn new(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| id(r).to_owned()) } else { None };
        Paginated { data: rows, next_cursor }
    }
}

/// `{org}` in a path: an organization id or slug.
async fn organization(state: &AppState, id_or_slug: &str) -> ApiResult<Organization> {
    state.store.find_organization(id_or_slug).await?.ok_or_else(|| ApiError::not_found("organization"))
}
