//! Telling the other replicas what changed, so that their caches (configuration,
//! signing keys, access tokens) do not wait for a TTL to notice. PostgreSQL carries
//! the messages (LISTEN/NOTIFY); with SQLite there is one process and nothing to tell.
//! The TTLs stay as the backstop: a message can be missed while a listener reconnects,
//! and the listener then reports [`Heard::Lost`] so that everything is forgotten.

use async_trait::async_trait;

use super::StoreResult;

/// What other replicas must forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Admin-managed configuration: organizations, connections, applications,
    /// entitlements, signing keys.
    Configuration,
    /// Access tokens (by hash) revoked, or whose claims were re-issued.
    Tokens(Vec<String>),
}

/// What a listener heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    Change(Change),
    /// The listener lost its connection and may have missed changes.
    Lost,
}

/// PostgreSQL limits a notification's payload to 8000 bytes; token hashes go in
/// batches that stay well below it.
const TOKENS_PER_MESSAGE: usize = 100;

impl Change {
    /// The notification payloads, each `<origin> <kind>[ <hash>,<hash>…]`.
    pub fn payloads(&self, origin: &str) -> Vec<String> {
        match self {
            Change::Configuration => vec![format!("{origin} configuration")],
            Change::Tokens(hashes) => hashes.chunks(TOKENS_PER_MESSAGE).map(|c| format!("{origin} tokens {}", c.join(","))).collect(),
        }
    }

    /// Parses a payload; `None` for this replica's own messages and for garbage.
    pub fn parse(payload: &str, own_origin: &str) -> Option<Change> {
        let mut parts = payload.splitn(3, ' ');
        let origin = parts.next()?;
        if origin == own_origin {
            return None;
        }
        match (parts.next()?, parts.next()) {
            ("configuration", None) => Some(Change::Configuration),
            ("tokens", Some(list)) => Some(Change::Tokens(list.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect())),
            _ => None,
        }
    }
}

/// Receives the changes other replicas publish.
#[async_trait]
pub trait ChangeListener: Send {
    async fn next(&mut self) -> Heard;
}

#[async_trait]
pub trait Changes: Send + Sync + 'static {
    /// Tells the other replicas; best effort (their TTLs catch what is lost).
    async fn publish(&self, change: &Change) -> StoreResult<()>;
    /// A listener for the other replicas' changes; `None` when there can be no other
    /// replica (SQLite).
    async fn listen(&self) -> StoreResult<Option<Box<dyn ChangeListener>>>;
    /// Takes or renews the named lease for this process until `until`, unless another
    /// process holds it; so that a periodic job runs on one replica at a time.
    async fn try_lease(&self, name: &str, now: crate::core::Timestamp, until: crate::core::Timestamp) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_own_messages_are_skipped() {
        let hashes: Vec<String> = (0..250).map(|i| format!("h{i}")).collect();
        let payloads = Change::Tokens(hashes.clone()).payloads("a");
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let back: Vec<String> = payloads
            .iter()
            .flat_map(|p| match Change::parse(p, "b") {
                Some(Change::Tokens(h)) => h,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, hashes);
        assert_eq!(Change::parse(&Change::Configuration.payloads("a")[0], "b"), Some(Change::Configuration));
        assert_eq!(Change::parse(&Change::Configuration.payloads("a")[0], "a"), None);
        assert_eq!(Change::parse("a nonsense", "b"), None);
        assert_eq!(Change::parse("a configuration extra", "b"), None);
        assert!(Change::Tokens(vec![]).payloads("a").is_empty());
    }
}
