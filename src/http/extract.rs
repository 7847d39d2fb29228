//! Request extractors whose failures are API errors naming the field at fault,
//! instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The token of an `Authorization: Bearer` header: `None` without the header, an
/// empty string (which no token matches) for another scheme.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().unwrap_or_default();
    Some(value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).unwrap_or_default().trim())
}

/// A JSON body; unknown fields, missing fields and wrong types are 422s naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_request" },
                e.body_text(),
            )
        })?;
        // serde would also read a struct from an array of its fields in order
        // (`[null, null]` once cleared a user's email); the API takes objects only.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                Err(e) => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}")),
                Ok(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "the body must be a JSON object"),
            });
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(ApiJson).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {inner}"))
            } else {
                data_error(&path, &inner.to_string())
            }
        })
    }
}

/// Query-string parameters, with the same error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            data_error(&path, &e.into_inner().to_string())
        })
    }
}

/// Turns serde's message into a field name: serde reports unknown and missing
/// fields at the parent's path with the name in backticks.
fn data_error(path: &str, message: &str) -> ApiError {
    let quoted = message.split('`').nth(1).unwrap_or_default();
    let join = |name: &str| if path == "." || path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    let (code, field) = if message.starts_with("unknown field") {
        // serde_path_to_error already ends the path with the unknown name.
        ("unknown_field", if path == "." { quoted.to_owned() } else { path.to_owned() })
    } else if message.starts_with("missing field") {
        ("missing_field", join(quoted))
    } else {
        ("invalid_field", if path == "." { String::new() } else { path.to_owned() })
    };
    let message = if field.is_empty() { message.to_owned() } else { format!("{field}: {message}") };
    let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
    if field.is_empty() {
        err
    } else {
        err.with_field(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_fields() {
        let e = data_error("colour", "unknown field `colour`, expected one of `name`");
        assert_eq!((e.code, e.field.as_deref()), ("unknown_field", Some("colour")));
        let e = data_error("group_sync", "missing field `enabled`");
        assert_eq!(e.field.as_deref(), Some("group_sync.enabled"));
        let e = data_error("domains[1]", "invalid type: integer `3`, expected a string");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("domains[1]")));
    }
}
