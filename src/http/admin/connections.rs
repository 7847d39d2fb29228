use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{organization, PageQuery, Paginated};
use crate::core::audit::Actor;
use crate::core::connection::{Connection, CreateConnection, UpdateConnection};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::AppState;
use crate::upstream::metadata::ConnectionReport;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{org}/connections", post(create).get(list))
        .route("/connections/{id}", get(show).patch(update).delete(remove))
        .route("/connections/{id}/test", post(test))
}

/// A connection as the API shows it: never its secret, always the addresses the
/// customer's IT team registers at their IdP.
#[derive(Serialize)]
struct ConnectionView {
    #[serde(flatten)]
    connection: Connection,
    /// The redirect URI sign-ins use now.
    redirect_uri: String,
    /// The connection's own redirect URI (the same as `redirect_uri` unless the
    /// connection still uses the shared one).
    own_redirect_uri: String,
    /// What the admin should do, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    post_logout_redirect_uri: String,
    backchannel_logout_uri: String,
    /// For IdPs that only do front-channel logout (LemonLDAP::NG): register it with
    /// `frontchannel_logout_session_required`, so the IdP sends `iss` and `sid`.
    frontchannel_logout_uri: String,
}

fn view(state: &AppState, connection: Connection) -> ConnectionView {
    let public_url = &state.config.public_url;
    let own_redirect_uri = connection.own_redirect_uri(public_url);
    let notice = connection.shared_redirect_uri.then(|| {
        format!(
            "This connection still uses the shared redirect URI, so its sign-ins work only while the IdP names itself in its answers \
             (RFC 9207 `iss`). Register {own_redirect_uri} at the IdP, then set `shared_redirect_uri` to false."
        )
    });
    ConnectionView {
        redirect_uri: connection.redirect_uri(public_url),
        own_redirect_uri,
        notice,
        post_logout_redirect_uri: state.broker.logged_out_url(),
        backchannel_logout_uri: format!("{public_url}/sso/backchannel-logout/{}", connection.id),
        frontchannel_logout_uri: format!("{public_url}/sso/frontchannel-logout/{}", connection.id),
        connection,
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    let org = organization(&state, &org).await?;
    let (s, secret) = body.validate(state.idp.policy())?;
    let connection = state.broker.create_connection(&org.id, s, &secret, &actor).await?;
    Ok((StatusCode::CREATED, Json(view(&state, connection))))
}

async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paginated<ConnectionView>>> {
    let org = organization(&state, &org).await?;
    let (page, limit) = q.page()?;
    let rows = state.store.list_connections(&org.id, &page).await?;
    let rows = rows.into_iter().map(|c| view(&state, c)).collect();
    Ok(Json(Paginated::new(rows, limit, |c: &ConnectionView| &c.connection.id)))
}

async fn find(state: &AppState, id: &str) -> ApiResult<Connection> {
    state.store.get_connection(id).await?.ok_or_else(|| ApiError::not_found("connection"))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ConnectionView>> {
    let c = find(&state, &id).await?;
    Ok(Json(view(&state, c)))
}

async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> ApiResult<Json<ConnectionView>> {
    let policy = state.idp.policy().clone();
    let c = state.broker.update_connection(&id, Box::new(move |c| body.apply(c, &policy)), &actor).await?;
    Ok(Json(view(&state, c)))
}

async fn remove(State(state): State<AppState>, Extension(actor): Extension<Actor>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.broker.delete_connection(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the IdP's discovery document, keys and the client credentials, and reports
/// what would break logins.
async fn test(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ConnectionReport>> {
    let c = find(&state, &id).await?;
    Ok(Json(state.broker.test_connection(&c).await?))
}
