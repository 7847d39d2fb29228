//! The SCIM 2.0 service provider (RFC 7644) at `/scim/v2/<directory id>`: thin
//! handlers over the broker's directory sync. Every request carries the
//! directory's bearer token; wrong tokens are counted per client address and
//! directory and, past the limit, answered 429. Errors use the SCIM error schema
//! (§3.12) with the status mapped here, once.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, RequestPartsExt, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::bearer_token;
use super::rate_limit::retry_after;
use super::AppState;
use crate::broker::{ListRequest, Selection};
use crate::core::ids::{looks_like, IdKind};
use crate::core::scim::directory::UserDirectory;
use crate::core::scim::resource;
use crate::core::scim::schema::{self, ResourceType};
use crate::core::scim::{ScimError, ScimFailure, ScimResult, ScimType};

const SCIM_JSON: &str = "application/scim+json";

pub fn routes(state: AppState) -> Router<AppState> {
    let directory = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(one_resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{urn}", get(one_schema))
        .route("/.search", post(search_all))
        .route("/Users", get(list::<USERS>).post(create::<USERS>))
        .route("/Users/.search", post(search::<USERS>))
        .route("/Users/{id}", get(show::<USERS>).put(write::<USERS, false>).patch(write::<USERS, true>).delete(remove::<USERS>))
        .route("/Groups", get(list::<GROUPS>).post(create::<GROUPS>))
        .route("/Groups/.search", post(search::<GROUPS>))
        .route("/Groups/{id}", get(show::<GROUPS>).put(write::<GROUPS, false>).patch(write::<GROUPS, true>).delete(remove::<GROUPS>))
        .fallback(|| async { Failed(ScimError::new(ScimFailure::NotFound, "no such SCIM endpoint")) })
        .route_layer(middleware::from_fn_with_state(state, require_directory));
    Router::new().nest("/scim/v2/{directory}", directory)
}

const USERS: bool = true;
const GROUPS: bool = false;

fn resource_type(users: bool) -> ResourceType {
    if users {
        ResourceType::User
    } else {
        ResourceType::Group
    }
}

/// A SCIM error as an HTTP response.
pub struct Failed(pub ScimError);

impl From<ScimError> for Failed {
    fn from(e: ScimError) -> Self {
        Failed(e)
    }
}

fn status(failure: ScimFailure) -> StatusCode {
    match failure {
        ScimFailure::Invalid(_) => StatusCode::BAD_REQUEST,
        ScimFailure::Conflict => StatusCode::CONFLICT,
        ScimFailure::VersionMismatch => StatusCode::PRECONDITION_FAILED,
        ScimFailure::NotFound => StatusCode::NOT_FOUND,
        ScimFailure::Unauthorized => StatusCode::UNAUTHORIZED,
        ScimFailure::Forbidden => StatusCode::FORBIDDEN,
        ScimFailure::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ScimFailure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ScimFailure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let ScimError { failure, detail } = self.0;
        let code = status(failure);
        let mut body = json!({"schemas": [schema::ERROR], "status": code.as_u16().to_string(), "detail": detail});
        let scim_type = match failure {
            ScimFailure::Invalid(t) => Some(t),
            ScimFailure::Conflict => Some(ScimType::Uniqueness),
            _ => None,
        };
        if let Some(t) = scim_type {
            body["scimType"] = json!(t.as_str());
        }
        let mut resp = scim_json(code, &body);
        if failure == ScimFailure::Unauthorized {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ssogate-scim\""));
        }
        resp
    }
}

fn scim_json(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, SCIM_JSON)], body.to_string()).into_response()
}

fn with_etag(code: StatusCode, (body, etag): (Value, String)) -> Response {
    let mut resp = scim_json(code, &body);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if code == StatusCode::CREATED {
        if let Some(Ok(location)) = body["meta"]["location"].as_str().map(HeaderValue::from_str) {
            resp.headers_mut().insert(header::LOCATION, location);
        }
    }
    resp
}

/// Lets the request through with the directory's bearer token, and hands the
/// directory to the handler.
async fn require_directory(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Ok(Path(params)) = parts.extract::<Path<HashMap<String, String>>>().await else {
        return Failed(ScimError::not_found("directory")).into_response();
    };
    let directory_id = params.get("directory").cloned().unwrap_or_default();
    // Only what has the shape of a directory id is looked up and counted: the
    // failure counter's keys stay short, whatever a client puts in the path.
    if !looks_like(IdKind::Directory, &directory_id) {
        return Failed(ScimError::new(ScimFailure::Unauthorized, "the bearer token is not valid for this directory")).into_response();
    }
    // Tokens are 256 random bits: guessing is hopeless, but costs a lookup each. So
    // failures are counted per (address, directory) and refused past the limit,
    // while the right token is always let through: IdPs push from addresses their
    // customers share, and one tenant's stale token must not stop another's sync.
    let key = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| format!("{} {directory_id}", state.limits.client(peer.ip(), &parts.headers)));
    let limit = &state.limits.scim_token_failures;
    let token = bearer_token(&parts.headers).unwrap_or_default();
    let directory = match state.broker.scim_directory(&directory_id, token).await {
        Ok(d) => d,
        Err(e) => {
            if e.failure == ScimFailure::Unauthorized {
                if let Some(wait) = key.as_deref().and_then(|k| limit.check_blocked(k).and_then(|()| limit.record_failure(k)).err()) {
                    return too_many(wait);
                }
            }
            return Failed(e).into_response();
        }
    };
    parts.extensions.insert(directory);
    next.run(Request::from_parts(parts, body)).await
}

fn too_many(wait: std::time::Duration) -> Response {
    let mut resp =
        Failed(ScimError::new(ScimFailure::TooManyRequests, "too many failed attempts; wait before trying again")).into_response();
    resp.headers_mut().extend(retry_after(wait));
    resp
}

/// Records the outcome on the directory (activity, last error) and answers.
async fn finish(state: &AppState, d: &UserDirectory, result: ScimResult<Response>) -> Response {
    state.broker.scim_note(d, result.as_ref().map(|_| ())).await;
    result.unwrap_or_else(|e| Failed(e).into_response())
}

fn json_body(bytes: &Bytes) -> ScimResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| ScimError::invalid(ScimType::InvalidSyntax, format!("the body is not valid JSON: {e}")))
}

/// `If-Match: W/"3"` (or `"3"`): the version a write requires; `*` requires none,
/// and a tag ssogate never made matches nothing.
fn if_match(headers: &HeaderMap) -> Option<i64> {
    let v = headers.get(header::IF_MATCH)?.to_str().unwrap_or_default().trim();
    if v == "*" {
        return None;
    }
    Some(v.trim_start_matches("W/").trim_matches('"').parse().unwrap_or(-1))
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

fn list_params(query: Option<&str>) -> ScimResult<ListParams> {
    serde_urlencoded::from_str(query.unwrap_or_default()).map_err(|e| ScimError::value(format!("the query string does not parse: {e}")))
}

fn number(name: &str, v: Option<&str>) -> ScimResult<Option<i64>> {
    v.map(|v| v.trim().parse::<i64>().map_err(|_| ScimError::value(format!("`{name}` must be an integer")))).transpose()
}

async fn list<const U: bool>(State(state): State<AppState>, Extension(d): Extension<UserDirectory>, RawQuery(q): RawQuery) -> Response {
    let result = async {
        let p = list_params(q.as_deref())?;
        let req = ListRequest {
            start_index: number("startIndex", p.start_index.as_deref())?,
            count: number("count", p.count.as_deref())?,
            filter: p.filter,
            attributes: p.attributes,
            excluded_attributes: p.excluded_attributes,
        };
        let body = state.broker.scim_list(&d, resource_type(U), &req).await?;
        Ok(scim_json(StatusCode::OK, &body))
    }
    .await;
    finish(&state, &d, result).await
}

/// A query sent as a body (RFC 7644 §3.4.3), for filters too long for a URL.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchRequest {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<Vec<String>>,
    excluded_attributes: Option<Vec<String>>,
}

fn search_request(body: &Bytes) -> ScimResult<ListRequest> {
    let s: SearchRequest = serde_json::from_value(json_body(body)?)
        .map_err(|e| ScimError::invalid(ScimType::InvalidSyntax, format!("the search request does not parse: {e}")))?;
    Ok(ListRequest {
        filter: s.filter,
        start_index: s.start_index,
        count: s.count,
        attributes: s.attributes.map(|a| a.join(",")),
        excluded_attributes: s.excluded_attributes.map(|a| a.join(",")),
    })
}

async fn search<const U: bool>(State(state): State<AppState>, Extension(d): Extension<UserDirectory>, body: Bytes) -> Response {
    let result =
        async { Ok(scim_json(StatusCode::OK, &state.broker.scim_list(&d, resource_type(U), &search_request(&body)?).await?)) }.await;
    finish(&state, &d, result).await
}

async fn search_all(State(state): State<AppState>, Extension(d): Extension<UserDirectory>, body: Bytes) -> Response {
    let result = async { Ok(scim_json(StatusCode::OK, &state.broker.scim_search_all(&d, &search_request(&body)?).await?)) }.await;
    finish(&state, &d, result).await
}

async fn show<const U: bool>(
    State(state): State<AppState>,
    Extension(d): Extension<UserDirectory>,
    Path((_, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let result = async {
        let p = list_params(q.as_deref())?;
        let sel = Selection { attributes: p.attributes, excluded_attributes: p.excluded_attributes };
        Ok(with_etag(StatusCode::OK, state.broker.scim_get(&d, resource_type(U), &id, &sel).await?))
    }
    .await;
    finish(&state, &d, result).await
}

async fn create<const U: bool>(State(state): State<AppState>, Extension(d): Extension<UserDirectory>, body: Bytes) -> Response {
    let result =
        async { Ok(with_etag(StatusCode::CREATED, state.broker.scim_create(&d, resource_type(U), &json_body(&body)?).await?)) }.await;
    finish(&state, &d, result).await
}

/// PUT (`PATCH` false) or PATCH of one resource.
async fn write<const U: bool, const PATCH: bool>(
    State(state): State<AppState>,
    Extension(d): Extension<UserDirectory>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let answer = state.broker.scim_update(&d, resource_type(U), &id, if_match(&headers), &json_body(&body)?, PATCH).await?;
        Ok(match answer {
            Some(a) => with_etag(StatusCode::OK, a),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await;
    finish(&state, &d, result).await
}

async fn remove<const U: bool>(
    State(state): State<AppState>,
    Extension(d): Extension<UserDirectory>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        state.broker.scim_delete(&d, resource_type(U), &id, if_match(&headers)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&state, &d, result).await
}

/// Every item of a discovery endpoint, in one page.
fn list_all(resources: Vec<Value>) -> Value {
    resource::list_response(resources.len() as u64, 1, resources)
}

async fn service_provider_config() -> Response {
    let max_operations = crate::core::scim::patch::MAX_OPERATIONS as u32;
    scim_json(StatusCode::OK, &schema::service_provider_config(crate::broker::MAX_SCIM_RESULTS, max_operations))
}

async fn resource_types() -> Response {
    scim_json(StatusCode::OK, &list_all(schema::resource_types()))
}

async fn one_resource_type(Path((_, name)): Path<(String, String)>) -> Response {
    match schema::resource_types().into_iter().find(|r| r["id"] == name.as_str()) {
        Some(r) => scim_json(StatusCode::OK, &r),
        None => Failed(ScimError::not_found("resource type")).into_response(),
    }
}

async fn schemas() -> Response {
    scim_json(StatusCode::OK, &list_all(schema::schemas()))
}

async fn one_schema(Path((_, urn)): Path<(String, String)>) -> Response {
    match schema::schemas().into_iter().find(|s| s["id"] == urn.as_str()) {
        Some(s) => scim_json(StatusCode::OK, &s),
        None => Failed(ScimError::not_found("schema")).into_response(),
    }
}
