//! Opaque, prefixed, URL-safe identifiers (`org_…`, `conn_…`).
//!
//! The random part is a lowercase ULID: sortable by creation time, so an id doubles
//! as a stable pagination cursor, and 80 bits of randomness make ids unguessable.

use crate::sync;
use std::fmt;
use std::sync::Mutex;

/// The kinds of object ssogate hands out ids for; the prefix tells a reader what an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Organization,
    Connection,
    Application,
    User,
    Group,
    Event,
    Job,
    Session,
    Directory,
    DirectoryGroup,
    /// An event for applications (the audit log's entries are `Event`s).
    AppEvent,
    Webhook,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Organization => "org",
            IdKind::Connection => "conn",
            IdKind::Application => "app",
            IdKind::User => "user",
            IdKind::Group => "grp",
            IdKind::Event => "evt",
            IdKind::Job => "job",
            IdKind::Session => "ses",
            IdKind::Directory => "dir",
            IdKind::DirectoryGroup => "dgrp",
            IdKind::AppEvent => "event",
            IdKind::Webhook => "whk",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// One monotonic generator per process, so ids made in the same millisecond still
/// sort in the order they were made (lists and audit logs rely on it).
static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A fresh id of the given kind, e.g. `org_01jd3m…`.
pub fn new_id(kind: IdKind) -> String {
    let ulid = {
        let mut guard = sync::lock(&GENERATOR);
        guard.get_or_insert_with(ulid::Generator::new).generate().unwrap_or_else(|_| ulid::Ulid::new())
    };
    format!("{}_{}", kind.prefix(), ulid.to_string().to_ascii_lowercase())
}

/// Whether `s` has the shape of an id of this kind (used to tell ids from slugs).
pub fn looks_like(kind: IdKind, s: &str) -> bool {
    s.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_url_safe_and_recognised() {
        let id = new_id(IdKind::Organization);
        assert!(id.starts_with("org_"));
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        assert!(looks_like(IdKind::Organization, &id));
        assert!(!looks_like(IdKind::Connection, &id));
        assert!(!looks_like(IdKind::Organization, "org_acme"));
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let ids: Vec<String> = (0..1000).map(|_| new_id(IdKind::Event)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
