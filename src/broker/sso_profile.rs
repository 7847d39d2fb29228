//! The SSO user info endpoint for application backends: with its own credentials
//! and a user's access token, an application reads what the identity provider says
//! of the user right now (as of the latest refresh), the IdP's ID token and, if the
//! application was created with `expose_idp_tokens`, the IdP's access token — to call
//! the customer's own APIs as the user.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{handle, Broker};
use crate::core::application::{Application, ClientType};
use crate::core::claims;
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SsoProfileError {
    /// Client authentication or the request failed (RFC 6749 §5.2 shape).
    #[error(transparent)]
    Request(#[from] OAuthError),
    /// The user's token is unknown, expired, revoked, another application's, or its
    /// session has ended.
    #[error("the access token is not active")]
    InactiveToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Broker {
    /// The live profile behind `form`'s `token`, for an authenticated application.
    pub async fn sso_profile(&self, app: &Application, form: HashMap<String, String>) -> Result<Value, SsoProfileError> {
        // Only a backend that can keep a secret may read a user's upstream profile.
        if app.client_type != ClientType::Confidential {
            return Err(OAuthError::new(ErrorCode::InvalidClient, "only confidential clients may read SSO user info").into());
        }
        let token =
            form.get("token").ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "send the user's access token as `token`"))?;
        let t = self.clock.now();
        let issued = self.store.issued_token(&handle(token)).await?;
        let issued =
            issued.filter(|i| !i.revoked && i.expires_at > t && i.application_id == app.id).ok_or(SsoProfileError::InactiveToken)?;
        let session = self.use_session(&issued.session_hash).await?.ok_or(SsoProfileError::InactiveToken)?;
        let upstream = session.upstream.unwrap_or_default();
        let org = self.config.organization(self.store.as_ref(), &session.organization_id).await?.ok_or(SsoProfileError::InactiveToken)?;
        // The IdP's own word stays in `id_token_decrypted` and as `idp_email_verified`;
        // `email_verified` is what ssogate vouches for, as in the ID token.
        let idp = claims::normalize(&upstream.profile);
        let vouched = idp.email.as_deref().is_some_and(|e| idp.email_verified && org.email_policy.vouches_for(&org.domains, e));

        let mut out: Map<String, Value> = upstream.profile;
        if let Some(raw) = out.insert("email_verified".into(), vouched.into()) {
            out.insert("idp_email_verified".into(), raw);
        }
        out.insert("id_token".into(), upstream.id_token.map_or(Value::Null, Value::String));
        out.insert("id_token_decrypted".into(), Value::Object(upstream.id_token_claims));
        if app.expose_idp_tokens {
            out.insert("access_token".into(), upstream.access_token.map_or(Value::Null, Value::String));
            out.insert("access_token_expires_at".into(), upstream.expires_at.map_or(Value::Null, Value::from));
            out.insert("expires_in".into(), upstream.expires_at.map_or(Value::Null, |e| Value::from((e - t.unix_timestamp()).max(0))));
        }
        out.insert(
            "ssogate".into(),
            json!({
                "user_id": session.user_id,
                "organization_id": session.organization_id,
                "connection_id": session.connection_id,
                "session_id": session.id,
                "refreshed_at": session.refresh.last_refreshed_at.map(|r| r.unix_timestamp()),
            }),
        );
        Ok(Value::Object(out))
    }
}
