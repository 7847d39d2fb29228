//! `GET /metrics` for Prometheus (bearer: the metrics token, or else the admin
//! token: the labels name organizations and connections), and the middleware that
//! counts and times every HTTP request by route.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::{ApiError, ApiResult};
use super::extract::bearer_token;
use super::AppState;
use crate::crypto::verify_secret;
use crate::telemetry;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> ApiResult<Response> {
    // The admin API's limit, before any check: without a metrics token this endpoint
    // accepts the admin token, and guessing either must cost attempts.
    state.limits.admin.check(&state.limits.client(peer.ip(), req.headers())).map_err(ApiError::rate_limited)?;
    let presented =
        bearer_token(req.headers()).ok_or_else(|| ApiError::unauthorized("send the metrics token as `Authorization: Bearer <token>`"))?;
    let allowed = match &state.config.metrics_token_hash {
        Some(hash) => verify_secret(presented, hash),
        None => state.admin_auth.verify(presented, state.store.as_ref()).await?,
    };
    if !allowed {
        return Err(ApiError::unauthorized("the metrics token is not valid"));
    }
    let (size, idle) = state.store.pool_status();
    telemetry::db_pool(size, idle);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response())
}

/// Counts and times requests by route template (never by raw path: ids would make
/// every request a new series).
pub async fn record(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    telemetry::http_request(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}
