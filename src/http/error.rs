//! Every error of every layer becomes an HTTP answer here, and only here:
//! `{"error": {"code": "…", "message": "…", "field": "…"}}` with the right status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::core::ValidationError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds, for `429`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, retry_after: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs().max(1);
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {seconds} s"));
        e.retry_after = Some(seconds);
        e
    }

    pub fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A failure that is ours, not the caller's: logged in full, answered vaguely.
    fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; the error is in the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut resp = (self.status, Json(json!({ "error": body }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        resp
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{}: {}", e.field, e.message)).with_field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict { field, message } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", format!("{field}: {message}")).with_field(field)
            }
            StoreError::Refused { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            StoreError::Invalid(v) => v.into(),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is not reachable; try again shortly")
            }
            other => ApiError::internal(&other),
        }
    }
}
