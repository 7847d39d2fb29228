//! ssogate's own signing keys: list them, rotate one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use crate::core::audit::Actor;
use crate::core::Timestamp;
use crate::core::ValidationError;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::http::AppState;
use crate::oidc::keys::SigningAlg;

pub fn routes() -> Router<AppState> {
    Router::new().route("/signing-keys", get(list)).route("/signing-keys/rotate", post(rotate))
}

#[derive(Serialize)]
struct KeyView {
    kid: String,
    alg: String,
    /// Signs new tokens; retired keys stay published until their tokens expire.
    active: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    retired_at: Option<Timestamp>,
}

async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<KeyView>>> {
    let keys = state.store.signing_keys().await?;
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyView { active: k.retired_at.is_none(), kid: k.kid, alg: k.alg, created_at: k.created_at, retired_at: k.retired_at })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    alg: String,
}

/// Starts signing with a new key of `alg`; the old key stays in the JWKS until every
/// token it signed has expired.
async fn rotate(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<RotateRequest>,
) -> ApiResult<(StatusCode, Json<Vec<KeyView>>)> {
    let alg = SigningAlg::parse(&body.alg).ok_or_else(|| ValidationError::new("alg", "must be RS256 or ES256"))?;
    state.broker.keys.rotate(state.store.as_ref(), alg, &actor).await.map_err(|e| {
        tracing::error!(error = %e, "signing key rotation failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "rotation_failed", "the key could not be rotated; try again")
    })?;
    Ok((StatusCode::CREATED, list(State(state)).await?))
}
