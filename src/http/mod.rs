//! The HTTP surface: routing, middleware, and thin handlers over the store and the
//! upstream client.

pub mod admin;
mod app_events;
mod console;
mod cookies;
pub mod error;
pub mod extract;
mod health;
mod metrics;
mod oidc;
mod pages;
pub mod rate_limit;
mod scim;
pub mod serve;
mod workos;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admin_token::AdminAuth;
use crate::broker::Broker;
use crate::config::RuntimeConfig;
use crate::store::Store;
use crate::upstream::IdpClient;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<RuntimeConfig>,
    pub idp: IdpClient,
    pub admin_auth: Arc<AdminAuth>,
    pub broker: Arc<Broker>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub limits: Arc<rate_limit::RateLimits>,
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api =
        admin::router(state.clone()).fallback(|| async { ApiError::not_found("API endpoint") }).method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that HTTP method")
        });
    Router::new()
        .merge(health::routes())
        .merge(oidc::routes())
        .merge(workos::routes())
        .merge(console::routes())
        .merge(metrics::routes())
        .merge(scim::routes(state.clone()))
        .merge(app_events::routes())
        .route("/api/v1/openapi.yaml", axum::routing::get(admin::openapi_description))
        .nest("/api/v1", api)
        .route_layer(axum::middleware::from_fn(metrics::record))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
                .layer(DefaultBodyLimit::max(state.config.max_request_bytes)),
        )
        .with_state(state)
}
