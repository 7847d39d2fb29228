//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), ssogate's part:
//! end the browser's session, then return to the application if it asked to and
//! the address is one it registered.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::{handle, Broker, Reply, SetCookie, SESSION_COOKIE};
use crate::core::authorize::single_valued;

/// The audience of an ID token hint, read without verifying it: it only chooses
/// whose registered addresses the redirect must match, so forging it gains nothing.
fn hinted_client(id_token_hint: &str) -> Option<String> {
    let payload = id_token_hint.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    match &claims["aud"] {
        Value::String(a) => Some(a.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl Broker {
    pub async fn end_session(&self, pairs: Vec<(String, String)>, cookies: &HashMap<String, String>) -> Reply {
        let params = match single_valued(pairs) {
            Ok(p) => p,
            Err(name) => return Reply::page(400, "Invalid sign-out request", format!("The parameter `{name}` was given more than once.")),
        };
        let mut location = None;
        if let Some(uri) = params.get("post_logout_redirect_uri") {
            let client_id = params.get("client_id").cloned().or_else(|| params.get("id_token_hint").and_then(|h| hinted_client(h)));
            let app = match client_id {
                Some(id) => self.config.application(self.store.as_ref(), &id).await.ok().flatten().map(|(a, _)| a),
                None => None,
            };
            match app {
                Some(app) if app.post_logout_redirect_uris.iter().any(|u| u == uri) => {
                    let mut url = url::Url::parse(uri).expect("registered URIs are valid");
                    if let Some(state) = params.get("state") {
                        url.query_pairs_mut().append_pair("state", state);
                    }
                    location = Some(url.to_string());
                }
                _ => {
                    return Reply::page(
                        400,
                        "Invalid sign-out request",
                        "The address to return to after signing out is not registered for this application.",
                    );
                }
            }
        }
        if let Some(id) = cookies.get(SESSION_COOKIE) {
            if let Err(e) = self.store.delete_session(&handle(id)).await {
                tracing::error!(error = %e, "ending a session failed");
                return Reply::page(503, "Sign-out unavailable", "ssogate cannot reach its database; try again shortly.");
            }
        }
        let clear = SetCookie { name: SESSION_COOKIE.into(), value: None, path: "/", max_age: std::time::Duration::ZERO };
        match location {
            Some(location) => Reply::Redirect { location, cookies: vec![clear] },
            None => Reply::SignedOut { cookies: vec![clear] },
        }
    }
}
