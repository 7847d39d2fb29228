//! Every error of every layer becomes an HTTP answer here, and only here: the admin
//! API's `{"error": {"code": "…", "message": "…", "field": "…"}}`, the protocol
//! endpoints' OAuth errors (RFC 6749 §5.2), and the statuses of error pages.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::broker::PageKind;
use crate::core::oauth::{ErrorCode, OAuthError};
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
            StoreError::Scim(e) => ApiError::new(StatusCode::CONFLICT, "conflict", e.detail),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is not reachable; try again shortly")
            }
            other => ApiError::internal(&other),
        }
    }
}

/// The status of an OAuth error at a JSON endpoint (token, userinfo, SSO user info,
/// back-channel logout): RFC 6749 §5.2 answers 400, or 401 for a client that failed
/// to authenticate; RFC 6750 §3.1 answers 401 for a bad bearer token; ssogate's own
/// failures are 500, or 503 when retrying soon can help.
pub fn oauth_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An OAuth error as a JSON answer (RFC 6749 §5.2), never cached, with the challenge
/// its status calls for (RFC 6749 §5.2 `Basic`, RFC 6750 §3 `Bearer`).
pub struct OAuthJson(pub OAuthError);

impl IntoResponse for OAuthJson {
    fn into_response(self) -> Response {
        let OAuthError { code, description } = self.0;
        let mut resp = (
            oauth_status(code),
            [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
            Json(json!({"error": code.as_str(), "error_description": description})),
        )
            .into_response();
        let challenge = match code {
            ErrorCode::InvalidClient => Some("Basic realm=\"ssogate\""),
            ErrorCode::InvalidToken => Some("Bearer error=\"invalid_token\""),
            _ => None,
        };
        if let Some(c) = challenge {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(c));
        }
        resp
    }
}

/// The status of an error page.
pub fn page_status(kind: PageKind) -> u16 {
    match kind {
        PageKind::BadRequest => 400,
        PageKind::NotFound => 404,
        PageKind::Unavailable => 503,
    }
}
