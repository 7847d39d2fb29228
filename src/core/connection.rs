//! Connections: one organization's OpenID Connect identity provider.

use serde::{Deserialize, Serialize};

use super::error::{Validated, ValidationError};
use super::group_mapping::GroupMapping;
use super::network::NetworkPolicy;
use super::{patch, validate, Timestamp};

pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/openid-configuration";

/// Who may sign in through a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provisioning {
    /// Create the user at first login.
    #[default]
    Jit,
    /// Only users already in the organization.
    ExistingUsers,
}

/// Which claim finds an existing user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserMatch {
    #[default]
    Email,
    PreferredUsername,
    Sub,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct GroupSync {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_groups_claim")]
    pub claim: String,
    #[serde(default)]
    pub mapping: String,
    #[serde(default)]
    pub create_missing_groups: bool,
    /// Sync owns every membership, hand-set ones included. Off (the default), it
    /// replaces only the memberships it made, and an admin's stay.
    #[serde(default)]
    pub authoritative: bool,
    /// A sign-in or refresh whose groups claim is absent altogether.
    #[serde(default)]
    pub when_claim_missing: WhenClaimMissing,
}

/// What an absent groups claim means. Okta (with a groups filter), Entra ID and others
/// leave an empty claim out, so by default absent is empty: a user removed from their
/// last group loses it. `keep` suits an IdP that leaves it out for other reasons. A
/// claim the IdP says it sent elsewhere (OIDC Core §5.6.2 distributed claims, Entra
/// ID's group overage) is fetched from there, and keeps memberships as they are
/// when it cannot be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenClaimMissing {
    #[default]
    Clear,
    Keep,
}

impl<'de> Deserialize<'de> for GroupSync {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        GroupSync::deserialize(patch::ObjectOnly(d))
    }
}

impl Serialize for GroupSync {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        GroupSync::serialize(self, s)
    }
}

fn default_groups_claim() -> String {
    "groups".into()
}

impl Default for GroupSync {
    fn default() -> Self {
        GroupSync {
            enabled: false,
            claim: default_groups_claim(),
            mapping: String::new(),
            create_missing_groups: false,
            authoritative: false,
            when_claim_missing: WhenClaimMissing::Clear,
        }
    }
}

impl GroupSync {
    /// Validates the claim path and parses the mapping, storing its canonical text.
    fn validated(mut self) -> Validated<Self> {
        self.claim = validate::claim_path("claim", &self.claim)?;
        let mapping = GroupMapping::parse(&self.mapping).map_err(|e| e.within("mapping"))?;
        self.mapping = mapping.to_string();
        Ok(self)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Connection {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub client_id: String,
    pub discovery_url: String,
    pub scopes: Vec<String>,
    pub logout_url: Option<String>,
    pub provisioning: Provisioning,
    pub user_match: UserMatch,
    pub group_sync: GroupSync,
    /// Accept HS256/384/512 ID tokens, verified with the client secret. Off by
    /// default: anyone holding the shared secret could mint such tokens.
    pub allow_hmac_id_tokens: bool,
    /// Link a first sign-in to an existing user by an email the IdP does not say is
    /// verified. Off by default: an IdP that lets people type any address would let
    /// them take over the pre-created user who has it.
    pub trust_unverified_email: bool,
    /// A front-channel logout whose `sid` is the user's subject at the IdP ends that
    /// user's sessions from this connection that carry no IdP session id. For IdPs
    /// that send the subject as `sid` and no `sid` in their ID tokens (LemonLDAP::NG
    /// 2.16). Off by default: a cross-site page that knows a subject could then sign
    /// that user out.
    pub frontchannel_logout_by_subject: bool,
    /// Created before connections had their own redirect URI: still answered at the
    /// shared `/sso/callback`, which is safe only when the IdP names itself in its
    /// answer (RFC 9207 `iss`), since every connection shares it (RFC 9700 §4.4).
    /// Set to false once the connection's own URI is registered at the IdP; never
    /// back to true.
    pub shared_redirect_uri: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub discovery_url: String,
    pub scopes: Option<Vec<String>>,
    pub logout_url: Option<String>,
    #[serde(default)]
    pub provisioning: Provisioning,
    #[serde(default)]
    pub user_match: UserMatch,
    #[serde(default)]
    pub group_sync: GroupSync,
    #[serde(default)]
    pub allow_hmac_id_tokens: bool,
    #[serde(default)]
    pub trust_unverified_email: bool,
    #[serde(default)]
    pub frontchannel_logout_by_subject: bool,
}

/// The settings of a connection apart from identity and timestamps, validated.
#[derive(Debug)]
pub struct ConnectionSettings {
    pub name: String,
    pub client_id: String,
    pub discovery_url: String,
    pub scopes: Vec<String>,
    pub logout_url: Option<String>,
    pub provisioning: Provisioning,
    pub user_match: UserMatch,
    pub group_sync: GroupSync,
    pub allow_hmac_id_tokens: bool,
    pub trust_unverified_email: bool,
    pub frontchannel_logout_by_subject: bool,
}

/// The shared redirect URI of connections created before each had its own.
pub const SHARED_CALLBACK_PATH: &str = "/sso/callback";

impl Connection {
    /// The redirect URI this connection's own IdP answers at: its own path, so that
    /// an answer can be told apart from another connection's (RFC 9700 §4.4.2).
    pub fn own_redirect_uri(&self, public_url: &str) -> String {
        format!("{public_url}{SHARED_CALLBACK_PATH}/{}", self.id)
    }

    /// The redirect URI sign-ins through this connection use now.
    pub fn redirect_uri(&self, public_url: &str) -> String {
        if self.shared_redirect_uri {
            format!("{public_url}{SHARED_CALLBACK_PATH}")
        } else {
            self.own_redirect_uri(public_url)
        }
    }
}

pub fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}

/// Accepts either the discovery document's URL or the issuer URL (to which the
/// well-known suffix is appended), and checks it against the network policy.
pub fn discovery_url(policy: &NetworkPolicy, field: &str, value: &str) -> Validated<String> {
    let mut url = validate::url(field, value)?;
    policy.check_url(field, &url)?;
    if url.query().is_some() {
        return Err(ValidationError::new(field, "must not contain a query string"));
    }
    if !url.path().ends_with(WELL_KNOWN_SUFFIX) {
        let path = format!("{}{WELL_KNOWN_SUFFIX}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url.to_string())
}

fn logout_url(policy: &NetworkPolicy, value: &str) -> Validated<String> {
    let url = validate::url("logout_url", value)?;
    policy.check_url("logout_url", &url)?;
    Ok(url.to_string())
}

pub const MAX_SECRET_LEN: usize = 4096;

impl CreateConnection {
    /// Returns the validated settings and the client secret (to be encrypted by the caller).
    pub fn validate(self, policy: &NetworkPolicy) -> Validated<(ConnectionSettings, String)> {
        let secret = validate::opaque("client_secret", &self.client_secret, MAX_SECRET_LEN)?;
        let settings = ConnectionSettings {
            name: validate::name("name", &self.name)?,
            client_id: validate::opaque("client_id", &self.client_id, 1024)?,
            discovery_url: discovery_url(policy, "discovery_url", &self.discovery_url)?,
            scopes: validate::scopes("scopes", &self.scopes.unwrap_or_else(default_scopes))?,
            logout_url: self.logout_url.as_deref().map(|u| logout_url(policy, u)).transpose()?,
            provisioning: self.provisioning,
            user_match: self.user_match,
            group_sync: self.group_sync.validated().map_err(|e| e.within("group_sync"))?,
            allow_hmac_id_tokens: self.allow_hmac_id_tokens,
            trust_unverified_email: self.trust_unverified_email,
            frontchannel_logout_by_subject: self.frontchannel_logout_by_subject,
        };
        Ok((settings, secret))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    #[serde(default, deserialize_with = "patch::present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub client_secret: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub discovery_url: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub logout_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::present")]
    pub provisioning: Option<Provisioning>,
    #[serde(default, deserialize_with = "patch::present")]
    pub user_match: Option<UserMatch>,
    #[serde(default, deserialize_with = "patch::present")]
    pub group_sync: Option<GroupSync>,
    #[serde(default, deserialize_with = "patch::present")]
    pub allow_hmac_id_tokens: Option<bool>,
    #[serde(default, deserialize_with = "patch::present")]
    pub trust_unverified_email: Option<bool>,
    #[serde(default, deserialize_with = "patch::present")]
    pub frontchannel_logout_by_subject: Option<bool>,
    #[serde(default, deserialize_with = "patch::present")]
    pub shared_redirect_uri: Option<bool>,
}

impl UpdateConnection {
    /// Applies the change; returns a new client secret when one was given.
    pub fn apply(self, c: &mut Connection, policy: &NetworkPolicy) -> Validated<Option<String>> {
        if let Some(v) = &self.name {
            c.name = validate::name("name", v)?;
        }
        if let Some(v) = &self.client_id {
            c.client_id = validate::opaque("client_id", v, 1024)?;
        }
        if let Some(v) = &self.discovery_url {
            c.discovery_url = discovery_url(policy, "discovery_url", v)?;
        }
        if let Some(v) = &self.scopes {
            c.scopes = validate::scopes("scopes", v)?;
        }
        if let Some(v) = self.logout_url {
            c.logout_url = v.as_deref().map(|u| logout_url(policy, u)).transpose()?;
        }
        if let Some(v) = self.provisioning {
            c.provisioning = v;
        }
        if let Some(v) = self.user_match {
            c.user_match = v;
        }
        if let Some(v) = self.group_sync {
            c.group_sync = v.validated().map_err(|e| e.within("group_sync"))?;
        }
        if let Some(v) = self.allow_hmac_id_tokens {
            c.allow_hmac_id_tokens = v;
        }
        if let Some(v) = self.trust_unverified_email {
            c.trust_unverified_email = v;
        }
        if let Some(v) = self.frontchannel_logout_by_subject {
            c.frontchannel_logout_by_subject = v;
        }
        match self.shared_redirect_uri {
            Some(true) if !c.shared_redirect_uri => {
                return Err(ValidationError::new(
                    "shared_redirect_uri",
                    "a connection cannot go back to the shared redirect URI: every connection answering at one address lets one IdP's answer be taken for another's (RFC 9700 §4.4)",
                ))
            }
            Some(v) => c.shared_redirect_uri = v,
            None => {}
        }
        self.client_secret.map(|s| validate::opaque("client_secret", &s, MAX_SECRET_LEN)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: serde_json::Value) -> Validated<(ConnectionSettings, String)> {
        serde_json::from_value::<CreateConnection>(json).unwrap().validate(&NetworkPolicy::default())
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"name": "Okta", "client_id": "abc", "client_secret": "s3cret", "discovery_url": "https://acme.okta.com"})
    }

    #[test]
    fn defaults_and_issuer_urls_are_completed() {
        let (s, secret) = create(base()).unwrap();
        assert_eq!(secret, "s3cret");
        assert_eq!(s.discovery_url, "https://acme.okta.com/.well-known/openid-configuration");
        assert_eq!(s.scopes, ["openid", "profile", "email"]);
        assert_eq!((s.provisioning, s.user_match), (Provisioning::Jit, UserMatch::Email));
        assert!(!s.group_sync.enabled);
        assert_eq!(s.group_sync.claim, "groups");
    }

    #[test]
    fn errors_name_the_field() {
        let mut j = base();
        j["discovery_url"] = "http://acme.okta.com".into();
        assert_eq!(create(j).unwrap_err().field, "discovery_url");
        let mut j = base();
        j["group_sync"] = serde_json::json!({"enabled": true, "mapping": "Sales Team"});
        let e = create(j).unwrap_err();
        assert_eq!(e.field, "group_sync.mapping");
        assert!(e.message.contains("Sales Team"));
        let mut j = base();
        j["client_secret"] = "".into();
        assert_eq!(create(j).unwrap_err().field, "client_secret");
    }

    #[test]
    fn mapping_is_stored_canonically() {
        let mut j = base();
        j["group_sync"] = serde_json::json!({"enabled": true, "mapping": " A->b ,\nC -> d"});
        assert_eq!(create(j).unwrap().0.group_sync.mapping, "A -> b, C -> d");
    }
}
