//! An organization's licence: whether it may use SSO and group sync, how many users
//! it may have, and until when.

use serde::{Deserialize, Serialize};

use super::error::{Validated, ValidationError};
use super::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entitlements {
    pub sso: bool,
    pub group_sync: bool,
    /// `None`: no limit.
    pub max_users: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
}

impl Default for Entitlements {
    fn default() -> Self {
        Entitlements { sso: true, group_sync: true, max_users: None, expires_at: None }
    }
}

/// `PUT /organizations/{org}/entitlements`: the whole licence. `sso` and `group_sync`
/// must be stated; an omitted `max_users` or `expires_at` means no limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutEntitlements {
    pub sso: bool,
    pub group_sync: bool,
    pub max_users: Option<i64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
}

impl PutEntitlements {
    pub fn validate(self) -> Validated<Entitlements> {
        let max_users = match self.max_users {
            None => None,
            Some(n) if (0..=10_000_000).contains(&n) => Some(n as u32),
            Some(_) => return Err(ValidationError::new("max_users", "must be null (no limit) or between 0 and 10,000,000")),
        };
        Ok(Entitlements { sso: self.sso, group_sync: self.group_sync, max_users, expires_at: self.expires_at })
    }
}

impl Entitlements {
    /// Why SSO logins are refused now, in words for the person refused; `None` when allowed.
    pub fn sso_refusal(&self, now: Timestamp) -> Option<String> {
        if !self.sso {
            return Some("your organization's licence does not include single sign-on; contact your administrator".into());
        }
        match self.expires_at {
            Some(end) if end <= now => Some(format!("your organization's licence expired on {}; contact your administrator", end.date())),
            _ => None,
        }
    }

    /// Whether one more user fits, given how many there are.
    pub fn has_seat_for_one_more(&self, users: u64) -> bool {
        self.max_users.is_none_or(|max| users < u64::from(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn licences_refuse_sso_when_off_or_expired() {
        let now = datetime!(2026-11-25 12:00 UTC);
        assert_eq!(Entitlements::default().sso_refusal(now), None);
        let off = Entitlements { sso: false, ..Default::default() };
        assert!(off.sso_refusal(now).unwrap().contains("does not include"));
        let expired = Entitlements { expires_at: Some(datetime!(2026-11-01 0:00 UTC)), ..Default::default() };
        assert!(expired.sso_refusal(now).unwrap().contains("expired on 2026-11-01"));
        let valid = Entitlements { expires_at: Some(datetime!(2027-01-01 0:00 UTC)), ..Default::default() };
        assert_eq!(valid.sso_refusal(now), None);
    }

    #[test]
    fn seats() {
        let three = Entitlements { max_users: Some(3), ..Default::default() };
        assert!(three.has_seat_for_one_more(2));
        assert!(!three.has_seat_for_one_more(3));
        assert!(Entitlements::default().has_seat_for_one_more(1_000_000));
        assert!(!Entitlements { max_users: Some(0), ..Default::default() }.has_seat_for_one_more(0));
    }

    #[test]
    fn put_requires_every_field_and_bounds_seats() {
        let parse = |v: serde_json::Value| serde_json::from_value::<PutEntitlements>(v);
        assert!(parse(serde_json::json!({"sso": true})).is_err());
        let e = parse(serde_json::json!({"sso": true, "group_sync": false, "max_users": -1, "expires_at": null})).unwrap();
        assert_eq!(e.validate().unwrap_err().field, "max_users");
        let e =
            parse(serde_json::json!({"sso": true, "group_sync": false, "max_users": 50, "expires_at": "2027-01-01T00:00:00Z"})).unwrap();
        assert_eq!(e.validate().unwrap().max_users, Some(50));
    }
}
