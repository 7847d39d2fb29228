//! What a presented token is, for the client that asks: token introspection for
//! resource servers (RFC 7662) and revocation by the client it was issued to
//! (RFC 7009).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::token::CachedToken;
use super::{handle, Broker};
use crate::core::application::{Application, ClientType};
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::store::{RefreshToken, RevokedTokens};

fn the_token(form: &HashMap<String, String>) -> Result<&str, OAuthError> {
    match form.get("token").map(String::as_str) {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(OAuthError::new(ErrorCode::InvalidRequest, "token is missing")),
    }
}

fn hint(form: &HashMap<String, String>) -> Option<&str> {
    form.get("token_type_hint").map(String::as_str)
}

impl Broker {
    /// RFC 7009: revoking a refresh token revokes its whole family; revoking an access
    /// token, that token alone (the application keeps refreshing). Only the client a
    /// token was issued to may revoke it; an unknown token is no error (§2.2). The
    /// hinted kind is looked up first; an unknown hint is ignored (§2.1).
    pub async fn revoke(&self, app: &Application, form: &HashMap<String, String>) -> Result<(), OAuthError> {
        if app.client_type == ClientType::ResourceServer {
            return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "a resource server holds no tokens to revoke"));
        }
        let hash = handle(the_token(form)?);
        let refresh_first = hint(form) == Some("refresh_token");
        let refresh = if refresh_first { self.store.refresh_token(&hash).await? } else { None };
        let (owner, which) = match refresh {
            Some(r) => (r.grant.application_id, RevokedTokens::Family(r.grant.code_hash)),
            None => match self.store.issued_token(&hash).await? {
                Some(t) => (t.application_id, RevokedTokens::AccessToken(hash.clone())),
                // Looked up already when hinted.
                None if refresh_first => return Ok(()),
                None => match self.store.refresh_token(&hash).await? {
                    Some(r) => (r.grant.application_id, RevokedTokens::Family(r.grant.code_hash)),
                    None => return Ok(()),
                },
            },
        };
        if owner != app.id {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "the token was not issued to this client"));
        }
        let kind = match which {
            RevokedTokens::AccessToken(_) => "access",
            RevokedTokens::Family(_) => "refresh",
        };
        let revoked = self.store.revoke_tokens(which).await?;
        tracing::info!(client_id = %app.client_id, kind, "token revoked");
        self.forget_tokens(revoked).await;
        Ok(())
    }

    /// RFC 7662 §2.2: whether the token is active and, if it is, what it grants. A
    /// resource server may ask about the access tokens for its audience (RFC 9700
    /// §4.10: a token for another API is not one it may honour); any other client
    /// only about the tokens issued to it. Everything else is `{"active": false}`,
    /// whether the token is unknown, expired, revoked, of an ended session or not
    /// the caller's to ask about. Access tokens are answered from the same memory as
    /// userinfo, so an API introspecting at its request rate costs no write.
    pub async fn introspect(&self, caller: &Application, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        if caller.client_type == ClientType::Public {
            return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "a public client cannot introspect tokens; ask with credentials"));
        }
        let hash = handle(the_token(form)?);
        let refresh_first = hint(form) == Some("refresh_token");
        if !refresh_first {
            if let Some(token) = self.live_access_token(&hash).await? {
                return Ok(self.access_token_answer(caller, &token));
            }
        }
        match self.store.refresh_token(&hash).await? {
            Some(r) => self.refresh_token_answer(caller, r).await,
            None if refresh_first => match self.live_access_token(&hash).await? {
                Some(token) => Ok(self.access_token_answer(caller, &token)),
                None => Ok(inactive()),
            },
            None => Ok(inactive()),
        }
    }

    fn access_token_answer(&self, caller: &Application, token: &CachedToken) -> Value {
        let issued = &token.issued;
        let for_caller = match caller.client_type {
            ClientType::ResourceServer => caller.access_token_audience.as_deref() == Some(issued.audience.as_str()),
            _ => issued.application_id == caller.id,
        };
        if !for_caller {
            return inactive();
        }
        // What userinfo says of the user, then what the token is.
        let mut answer: Map<String, Value> = serde_json::from_slice(&token.body).unwrap_or_default();
        answer.insert("active".into(), json!(true));
        answer.insert("token_type".into(), json!("Bearer"));
        answer.insert("scope".into(), json!(issued.scope));
        answer.insert("client_id".into(), json!(issued.client_id));
        answer.insert("aud".into(), json!(issued.audience));
        answer.insert("iss".into(), json!(self.issuer));
        answer.insert("iat".into(), json!(issued.issued_at.unix_timestamp()));
        answer.insert("exp".into(), json!(token.expires_at.unix_timestamp()));
        if !issued.session_id.is_empty() {
            answer.insert("sid".into(), json!(issued.session_id));
        }
        Value::Object(answer)
    }

    /// A refresh token is its client's own: only that client may ask about it.
    async fn refresh_token_answer(&self, caller: &Application, r: RefreshToken) -> Result<Value, OAuthError> {
        if r.grant.application_id != caller.id || r.spent || r.revoked {
            return Ok(inactive());
        }
        // A token outlives nothing of its session; asking about one counts as use.
        if self.use_session(&r.grant.session_hash).await?.is_none() {
            return Ok(inactive());
        }
        let mut answer = json!({
            "active": true, "scope": r.grant.scope, "client_id": caller.client_id, "sub": r.grant.user_id, "iss": self.issuer,
        });
        if !r.grant.session_id.is_empty() {
            answer["sid"] = json!(r.grant.session_id);
        }
        Ok(answer)
    }
}

fn inactive() -> Value {
    json!({"active": false})
}
