//! Events for applications: what a directory changed and which sessions ended,
//! listed for polling and delivered to webhooks. Types follow WorkOS's names, so
//! that receivers written for it read them as they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Validated, ValidationError};
use super::network::NetworkPolicy;
use super::{validate, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "dsync.user.created")]
    UserCreated,
    #[serde(rename = "dsync.user.updated")]
    UserUpdated,
    /// The directory set `active: false`: the user can no longer sign in.
    #[serde(rename = "dsync.user.deactivated")]
    UserDeactivated,
    #[serde(rename = "dsync.user.deleted")]
    UserDeleted,
    #[serde(rename = "dsync.group.created")]
    GroupCreated,
    #[serde(rename = "dsync.group.updated")]
    GroupUpdated,
    #[serde(rename = "dsync.group.deleted")]
    GroupDeleted,
    #[serde(rename = "dsync.group.user_added")]
    MemberAdded,
    #[serde(rename = "dsync.group.user_removed")]
    MemberRemoved,
    #[serde(rename = "session.ended")]
    SessionEnded,
}

pub const ALL: [EventType; 10] = [
    EventType::UserCreated,
    EventType::UserUpdated,
    EventType::UserDeactivated,
    EventType::UserDeleted,
    EventType::GroupCreated,
    EventType::GroupUpdated,
    EventType::GroupDeleted,
    EventType::MemberAdded,
    EventType::MemberRemoved,
    EventType::SessionEnded,
];

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "dsync.user.created",
            EventType::UserUpdated => "dsync.user.updated",
            EventType::UserDeactivated => "dsync.user.deactivated",
            EventType::UserDeleted => "dsync.user.deleted",
            EventType::GroupCreated => "dsync.group.created",
            EventType::GroupUpdated => "dsync.group.updated",
            EventType::GroupDeleted => "dsync.group.deleted",
            EventType::MemberAdded => "dsync.group.user_added",
            EventType::MemberRemoved => "dsync.group.user_removed",
            EventType::SessionEnded => "session.ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An event as applications receive it (webhook body, polling list).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    pub event: EventType,
    pub organization_id: Option<String>,
    pub data: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A webhook endpoint of an application.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub application_id: String,
    pub url: String,
    /// The event types it receives; empty: all.
    pub events: Vec<EventType>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
    #[serde(default)]
    pub events: Vec<EventType>,
}

impl CreateWebhook {
    /// `policy`: where ssogate may send requests to applications.
    pub fn validate(mut self, policy: &NetworkPolicy) -> Validated<CreateWebhook> {
        self.url = validate::backchannel_logout_uri("url", &self.url)?;
        let url = url::Url::parse(&self.url).map_err(|e| ValidationError::new("url", e.to_string()))?;
        policy.check_url("url", &url)?;
        self.events.sort_by_key(|t| t.as_str());
        self.events.dedup();
        Ok(self)
    }
}

/// One delivery of an event to an endpoint, as the delivery log shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event: EventType,
    /// `pending`, `delivered` or `failed` (retries spent).
    pub status: String,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<Timestamp>,
    /// The endpoint's last HTTP status, and what went wrong.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// When a failed delivery is tried again: 10 s, doubling, at most an hour apart;
/// `None` once `attempts` have been made without success (about 7 hours in all).
pub fn retry_delay(attempts: u32) -> Option<std::time::Duration> {
    const MAX_ATTEMPTS: u32 = 16;
    (attempts < MAX_ATTEMPTS).then(|| std::time::Duration::from_secs((10u64 << attempts.saturating_sub(1).min(10)).min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_read_as_they_are_written() {
        for t in ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::parse("dsync.user.exploded"), None);
    }

    #[test]
    fn retries_back_off_to_an_hour_then_stop() {
        let secs = |n| retry_delay(n).map(|d| d.as_secs());
        assert_eq!((secs(1), secs(2), secs(3)), (Some(10), Some(20), Some(40)));
        assert_eq!(secs(10), Some(3600));
        assert_eq!(secs(15), Some(3600));
        assert_eq!(secs(16), None);
        let total: u64 = (1..16).filter_map(secs).sum();
        assert!((7 * 3600..8 * 3600).contains(&total), "{total}");
    }
}
