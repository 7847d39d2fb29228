//! Telling the other replicas what changed, so that their caches (configuration,
//! signing keys, access tokens) forget it at once. PostgreSQL carries the messages
//! (LISTEN/NOTIFY); with SQLite there is one process and nothing to tell. A message
//! can be missed while a listener reconnects: the listener then reports
//! [`Heard::Lost`], and everything is forgotten.

use async_trait::async_trait;

use super::StoreResult;

/// What other replicas must forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Admin-managed configuration.
    Configuration(Stale),
    /// Access tokens (by hash) revoked, or whose claims were re-issued.
    Tokens(Vec<String>),
}

/// The cached configuration a committed change makes stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// An organization (by id): its record, slug and domains, its connections with
    /// their secrets, and its licence; and whatever was looked up and not found, which
    /// the change may have created.
    Organization(String),
    /// An application, by client ID.
    Application(String),
    /// The signing keys.
    SigningKeys,
    /// All of it: what a notice this version cannot read stands for.
    Everything,
}

/// Called in this process after each committed change of configuration, before the
/// write returns, so that this replica's caches never serve what it has just changed.
pub type OnChange = std::sync::Arc<dyn Fn(&Stale) + Send + Sync>;

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
    /// The notification payloads, each `<origin> <kind>[ <detail>]`: for configuration
    /// `organization <id>`, `application <client id>` or `signing_keys` (none: all of
    /// it), for tokens `<hash>,<hash>…`.
    pub fn payloads(&self, origin: &str) -> Vec<String> {
        match self {
            Change::Configuration(stale) => vec![match stale {
                Stale::Organization(id) => format!("{origin} configuration organization {id}"),
                Stale::Application(client_id) => format!("{origin} configuration application {client_id}"),
                Stale::SigningKeys => format!("{origin} configuration signing_keys"),
                Stale::Everything => format!("{origin} configuration"),
            }],
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
            ("configuration", None) => Some(Change::Configuration(Stale::Everything)),
            // A change this version cannot name (from a newer replica) is taken for
            // all of configuration: forgetting too much costs reads, too little is stale.
            ("configuration", Some(detail)) => Some(Change::Configuration(match detail.split_once(' ') {
                Some(("organization", id)) if !id.is_empty() => Stale::Organization(id.to_owned()),
                Some(("application", client_id)) if !client_id.is_empty() => Stale::Application(client_id.to_owned()),
                None if detail == "signing_keys" => Stale::SigningKeys,
                _ => Stale::Everything,
            })),
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
    /// Sets what this process runs after each of its own committed configuration
    /// changes (the broker forgetting its cached configuration).
    fn on_change(&self, forget: OnChange);
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
        for stale in [Stale::Organization("org_1".into()), Stale::Application("app client".into()), Stale::SigningKeys, Stale::Everything] {
            let change = Change::Configuration(stale);
            assert_eq!(Change::parse(&change.payloads("a")[0], "b"), Some(change.clone()));
            assert_eq!(Change::parse(&change.payloads("a")[0], "a"), None);
        }
        assert_eq!(Change::parse("a nonsense", "b"), None);
        for unknown in ["a configuration extra", "a configuration organization ", "a configuration groups g1"] {
            assert_eq!(Change::parse(unknown, "b"), Some(Change::Configuration(Stale::Everything)), "{unknown}");
        }
        assert!(Change::Tokens(vec![]).payloads("a").is_empty());
    }
}
