//! Browser sessions at ssogate and the identity provider's tokens they hold: when a
//! session lapses, when its upstream access token is refreshed, and when a failing
//! refresh gives up and ends the session.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Timestamp;

/// How long sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// From sign-in, whatever happens.
    pub absolute: Duration,
    /// Without activity (a sign-in to another application through the session, or a
    /// code exchanged under it).
    pub idle: Duration,
}

impl Default for SessionLifetimes {
    fn default() -> Self {
        SessionLifetimes { absolute: Duration::from_secs(12 * 3600), idle: Duration::from_secs(2 * 3600) }
    }
}

impl SessionLifetimes {
    /// When a session active at `at` lapses for idleness (never past its absolute end).
    pub fn idle_until(&self, at: Timestamp, absolute_end: Timestamp) -> Timestamp {
        (at + self.idle).min(absolute_end)
    }
}

/// What ssogate keeps of the identity provider's answer, sealed at rest: the tokens,
/// and the profile as the IdP last described it (ID-token claims merged with userinfo).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamTokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    /// When the access token expires, in Unix seconds, if the IdP said.
    pub expires_at: Option<i64>,
    /// The nonce of the sign-in; a refreshed ID token may repeat it and nothing else.
    pub nonce: String,
    /// The claims of the latest ID token.
    pub id_token_claims: Map<String, Value>,
    /// The ID-token claims merged with userinfo.
    pub profile: Map<String, Value>,
}

/// Tokens never reach a log line.
impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("access_token", &self.access_token.as_ref().map(|_| "…"))
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .field("id_token", &self.id_token.as_ref().map(|_| "…"))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// When upstream access tokens are refreshed, and how long a failing IdP is borne.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh this long before the access token expires.
    pub margin: Duration,
    /// An IdP that keeps failing (down, 5xx, timeouts) for this long ends the session;
    /// a refusal (`invalid_grant`) ends it at once.
    pub grace: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy { margin: Duration::from_secs(60), grace: Duration::from_secs(300) }
    }
}

/// First retry after a failed refresh; each further one waits twice as long, up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// What to do after a refresh failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(Timestamp),
    EndSession,
}

impl RefreshPolicy {
    /// When the tokens should next be refreshed: `None` without a refresh token or
    /// an expiry to refresh ahead of.
    pub fn due_at(&self, tokens: &UpstreamTokens, now: Timestamp) -> Option<Timestamp> {
        tokens.refresh_token.as_ref()?;
        let expires = Timestamp::from_unix_timestamp(tokens.expires_at?).ok()?;
        // A token shorter-lived than the margin is refreshed halfway through its life.
        let lead = self.margin.min((expires - now).unsigned_abs() / 2);
        Some((expires - lead).max(now))
    }

    /// After a transient failure: retry with backoff while the grace period lasts.
    /// `failing_since` is when the first of the current run of failures happened.
    pub fn after_transient_failure(&self, failing_since: Timestamp, now: Timestamp) -> AfterFailure {
        let failing_for = (now - failing_since).unsigned_abs();
        if failing_for >= self.grace {
            return AfterFailure::EndSession;
        }
        // Doubling from FIRST_RETRY, counted from how long the failures have lasted.
        let mut wait = FIRST_RETRY;
        while wait < failing_for && wait < MAX_RETRY {
            wait *= 2;
        }
        let wait = wait.min(MAX_RETRY).min(self.grace - failing_for);
        AfterFailure::RetryAt(now + wait.max(Duration::from_secs(1)))
    }
}

/// Whether an IdP's refusal of a refresh means the grant is gone for good (RFC 6749
/// §5.2), as opposed to a failure worth retrying.
pub fn refusal_is_final(oauth_error: &str) -> bool {
    use super::oauth::ErrorCode::*;
    matches!(super::oauth::ErrorCode::parse(oauth_error), Some(InvalidGrant | InvalidClient | UnauthorizedClient | InvalidScope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn tokens(expires_in: Option<i64>, refresh: bool) -> UpstreamTokens {
        UpstreamTokens {
            refresh_token: refresh.then(|| "rt".into()),
            expires_at: expires_in.map(|e| 1_800_000_000 + e),
            ..Default::default()
        }
    }

    #[test]
    fn refresh_is_due_a_margin_before_expiry() {
        let p = RefreshPolicy::default();
        assert_eq!(p.due_at(&tokens(Some(3600), true), at(0)), Some(at(3540)));
        // Short-lived tokens: halfway.
        assert_eq!(p.due_at(&tokens(Some(30), true), at(0)), Some(at(15)));
        // Already expired: now.
        assert_eq!(p.due_at(&tokens(Some(-10), true), at(0)), Some(at(0)));
        // Nothing to refresh with or for.
        assert_eq!(p.due_at(&tokens(Some(3600), false), at(0)), None);
        assert_eq!(p.due_at(&tokens(None, true), at(0)), None);
    }

    #[test]
    fn transient_failures_back_off_then_end_the_session() {
        let p = RefreshPolicy { margin: Duration::from_secs(60), grace: Duration::from_secs(300) };
        assert_eq!(p.after_transient_failure(at(0), at(0)), AfterFailure::RetryAt(at(5)));
        assert_eq!(p.after_transient_failure(at(0), at(5)), AfterFailure::RetryAt(at(10)));
        assert_eq!(p.after_transient_failure(at(0), at(12)), AfterFailure::RetryAt(at(32)));
        assert_eq!(p.after_transient_failure(at(0), at(200)), AfterFailure::RetryAt(at(260)));
        // The last retry lands on the end of the grace period, not past it.
        assert_eq!(p.after_transient_failure(at(0), at(280)), AfterFailure::RetryAt(at(300)));
        assert_eq!(p.after_transient_failure(at(0), at(300)), AfterFailure::EndSession);
    }

    #[test]
    fn idle_expiry_never_outlives_the_session() {
        let l = SessionLifetimes { absolute: Duration::from_secs(100), idle: Duration::from_secs(30) };
        assert_eq!(l.idle_until(at(10), at(100)), at(40));
        assert_eq!(l.idle_until(at(90), at(100)), at(100));
    }

    #[test]
    fn only_grant_refusals_are_final() {
        assert!(refusal_is_final("invalid_grant"));
        assert!(!refusal_is_final("temporarily_unavailable"));
        assert!(!refusal_is_final("server_error"));
    }

    #[test]
    fn debug_output_hides_tokens() {
        let t = UpstreamTokens { access_token: Some("secret-at".into()), refresh_token: Some("secret-rt".into()), ..Default::default() };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
