//! The brokered login: an application's authorization request, the detour through
//! the organization's identity provider, and the codes and tokens the application
//! gets back. HTTP-agnostic: handlers turn [`Reply`]s into responses.

mod client_auth;
mod config_cache;
mod directory;
mod directory_sync;
mod introspection;
mod keyring;
mod login;
mod login_state;
mod logout;
mod refresh;
mod replicas;
mod sessions;
mod sso_profile;
mod sync_jobs;
#[cfg(test)]
mod testkit;
mod token;
mod trial;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

pub use client_auth::{client_credentials, ClientAuthFailure, ClientKeys};
pub use config_cache::ConfigCache;
pub use directory_sync::{activity_cache, ListRequest, Selection, MAX_RESULTS as MAX_SCIM_RESULTS};
pub use keyring::KeyRing;
pub use logout::BackchannelError;
pub use sso_profile::SsoProfileError;
pub use token::{Person, TokenCache, UserinfoError};
pub use trial::{pretty, TrialOutcome, TrialPreview};

use crate::core::authorize::AuthorizeRequest;
use crate::core::claims::ClaimLimits;
use crate::core::clock::Clock;
use crate::core::connection::Connection;
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::core::session::{RefreshPolicy, SessionLifetimes};
use crate::crypto::{hash_secret, SecretBox};
use crate::outbound::AppClient;
use crate::store::{Store, StoreError};
use crate::upstream::rp::{ClientSecret, Discovery, RelyingParty};
use crate::upstream::{Providers, UpstreamError};

/// Lifetimes of what a login creates.
#[derive(Clone, Debug)]
pub struct Lifetimes {
    pub login_state: Duration,
    pub code: Duration,
    pub access_token: Duration,
    pub id_token: Duration,
    pub session: SessionLifetimes,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            login_state: Duration::from_secs(600),
            code: Duration::from_secs(60),
            access_token: Duration::from_secs(3600),
            id_token: Duration::from_secs(3600),
            session: SessionLifetimes::default(),
        }
    }
}

pub const SESSION_COOKIE: &str = "ssogate_session";

/// A cookie to set (or, with no value, to clear).
#[derive(Clone, Debug, PartialEq)]
pub struct SetCookie {
    pub name: String,
    pub value: Option<String>,
    pub path: &'static str,
    pub max_age: Duration,
}

/// What the browser is told.
#[derive(Debug)]
pub enum Reply {
    Redirect {
        location: String,
        cookies: Vec<SetCookie>,
    },
    /// Redirecting would be unsafe (unknown client or redirect URI, a login from
    /// another browser): show a page.
    ErrorPage {
        kind: PageKind,
        title: String,
        message: String,
    },
    /// A sign-out request that did not prove it comes from the user's application:
    /// ask the user, with a form that posts `fields` back to the logout endpoint.
    ConfirmLogout {
        fields: Vec<(String, String)>,
    },
    /// Signed out, with nowhere to return to.
    SignedOut {
        cookies: Vec<SetCookie>,
    },
    /// Signed out, with applications to tell through the browser: a page framing
    /// their front-channel logout URIs, then on to `then` if there is somewhere to go.
    SignedOutOfApps {
        frames: Vec<String>,
        then: Option<String>,
        cookies: Vec<SetCookie>,
    },
    /// The end of an admin's try-it sign-in: what ssogate would make of the person.
    Trial {
        outcome: Box<TrialOutcome>,
        cookies: Vec<SetCookie>,
    },
}

/// What went wrong, for an error page; the HTTP layer picks its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// The request cannot be served as sent.
    BadRequest,
    /// What it names does not exist.
    NotFound,
    /// ssogate cannot serve it right now (its database is out of reach).
    Unavailable,
}

impl Reply {
    fn page(kind: PageKind, title: &str, message: impl Into<String>) -> Self {
        Reply::ErrorPage { kind, title: title.into(), message: message.into() }
    }
}

pub struct Broker {
    pub store: Arc<dyn Store>,
    pub providers: Providers,
    pub keys: Arc<KeyRing>,
    pub tokens: TokenCache,
    /// Applications, organizations and connections, for the hot path.
    pub config: ConfigCache,
    /// Seals login states into cookies.
    pub sealer: Arc<SecretBox>,
    /// Wakes the sync-job worker when a job is queued.
    pub sync_wake: tokio::sync::Notify,
    /// Wakes the webhook deliverer when this replica wrote events.
    pub deliveries_wake: tokio::sync::Notify,
    /// Directories whose activity this replica recorded in the last minute (an
    /// initial push is thousands of requests: one write a minute says enough).
    pub scim_activity: moka::sync::Cache<String, ()>,
    /// ssogate's issuer (the public URL).
    pub issuer: String,
    pub lifetimes: Lifetimes,
    pub refresh: RefreshPolicy,
    /// Delivers back-channel logout tokens to applications and fetches their keys
    /// (SSRF-guarded).
    pub app_client: AppClient,
    /// The keys `private_key_jwt` clients publish at their `jwks_uri`.
    pub client_keys: ClientKeys,
    pub claim_limits: ClaimLimits,
    /// Every time the broker reads (tests hold and move it).
    pub clock: Arc<dyn Clock>,
}

impl Broker {
    /// The application's redirect URI with `params` added to its query, plus `iss`
    /// (RFC 9207) so the client can tell which provider answered. Registered URIs are
    /// validated as URLs, so the page is for a registration older than that check.
    fn redirect_to_app(&self, req: &AuthorizeRequest, params: &[(&str, &str)], cookies: Vec<SetCookie>) -> Reply {
        let Ok(mut url) = url::Url::parse(&req.redirect_uri) else {
            return Reply::page(
                PageKind::BadRequest,
                "Invalid redirect URI",
                "The application's registered redirect URI is not a valid URL.",
            );
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = &req.state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.issuer);
        }
        Reply::Redirect { location: url.into(), cookies }
    }

    /// An OAuth error sent back to the application (RFC 6749 §4.1.2.1).
    fn error_redirect(&self, req: &AuthorizeRequest, e: OAuthError) -> Reply {
        tracing::info!(client_id = %req.client_id, error = %e.code, description = %e.description, "login failed");
        self.redirect_to_app(req, &[("error", e.code.as_str()), ("error_description", &e.description)], vec![])
    }
}

/// Why a connection's relying party could not be set up: its secret could not be
/// read, or its IdP's metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl Broker {
    /// The IdP of `connection`, answered at `callback`.
    pub(crate) async fn discovery<'a>(&'a self, connection: &'a Connection, callback: String) -> Result<Discovery<'a>, UpstreamError> {
        Discovery::new(&self.providers, connection, callback).await
    }

    /// The IdP of `connection` as its relying party: also its client secret.
    pub(crate) async fn authenticated<'a>(&self, connection: &Connection, idp: Discovery<'a>) -> Result<RelyingParty<'a>, StoreError> {
        let secret = self.config.client_secret(self.store.as_ref(), connection).await?;
        Ok(idp.authenticate(ClientSecret::new(secret)))
    }

    /// Both at once: the metadata first, as every step needs it.
    pub(crate) async fn relying_party<'a>(
        &'a self,
        connection: &'a Connection,
        callback: String,
    ) -> Result<RelyingParty<'a>, SetupFailure> {
        let idp = self.discovery(connection, callback).await?;
        Ok(self.authenticated(connection, idp).await?)
    }
}

/// ssogate's own failure, as the protocols report it: a database out of reach is worth
/// retrying (`temporarily_unavailable`); anything else is `server_error`, logged in full.
impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Unavailable(_) = e {
            tracing::warn!(error = %e, "database unavailable");
            return OAuthError::new(ErrorCode::TemporarilyUnavailable, "ssogate's database is not reachable; try again shortly");
        }
        tracing::error!(error = %e, "store failure");
        OAuthError::new(ErrorCode::ServerError, "ssogate could not complete the request; try again")
    }
}

/// Credentials are stored and looked up by hash.
pub fn handle(credential: &str) -> String {
    hash_secret(credential)
}
