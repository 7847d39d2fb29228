//! "Try it": from the console, an admin signs in through a connection to see what
//! ssogate would make of the person — profile, IdP groups, ssogate groups and role —
//! without creating or changing any user. The sign-in runs exactly like a real one
//! (same redirect URI, state, nonce, PKCE, ID token validation), so a successful
//! trial means real sign-ins will work.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::login_state::LoginState;
use super::{Broker, PageKind, Reply};
use crate::core::authorize::AuthorizeRequest;
use crate::core::claims::{self, Claims, IdpProfile};
use crate::core::connection::Connection;
use crate::core::group::Group;
use crate::core::group_sync::{self, SyncRules, FALLBACK_GROUP};
use crate::core::oauth::OAuthError;
use crate::core::roles::derive_role;
use crate::store::{Page, StoreResult};
use crate::upstream::metadata::{self, ConnectionReport};
use crate::upstream::rp::{ClientSecret, Discovery, VerifiedIdentity};

/// What the preview page shows.
#[derive(Debug)]
pub struct TrialOutcome {
    pub connection_id: String,
    pub result: Result<TrialPreview, OAuthError>,
}

#[derive(Debug)]
pub struct TrialPreview {
    pub profile: IdpProfile,
    /// The groups the IdP reported, by name (or id when it sent no name).
    pub idp_groups: Vec<String>,
    /// The ssogate groups the user would be in, and those group sync would create.
    pub groups: Vec<String>,
    pub groups_to_create: Vec<String>,
    pub role: &'static str,
    /// Why the groups are what they are (sync off, claim missing, …).
    pub notes: Vec<String>,
    pub id_token_claims: Claims,
    pub userinfo: Option<Claims>,
}

impl Broker {
    /// "Test connection": the discovery document, the keys, and the client ID and
    /// secret, which are checked by a token request with a code that cannot be valid
    /// (`invalid_grant` means the IdP authenticated the client; `invalid_client`, that
    /// it did not, RFC 6749 §5.2).
    pub async fn test_connection(&self, c: &Connection) -> StoreResult<ConnectionReport> {
        let secret = ClientSecret::new(self.config.client_secret(self.store.as_ref(), c).await?);
        let callback = c.redirect_uri(&self.issuer);
        let providers = &self.providers;
        Ok(metadata::test_connection(providers.client(), &c.discovery_url, |m| async move {
            let rp = Discovery::with_metadata(providers, c, callback, Arc::new(m)).authenticate(secret);
            rp.probe_credentials().await.map_or(Ok("unknown"), |error| metadata::credentials_verdict(&error))
        })
        .await)
    }

    /// Starts a trial sign-in through the connection (the console checked the admin).
    pub async fn start_trial(&self, connection_id: &str, login_hint: Option<String>) -> Reply {
        let connection = match self.config.connection(self.store.as_ref(), connection_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Reply::page(PageKind::NotFound, "No such connection", "The connection was not found; it may have been removed.")
            }
            Err(e) => return trial_failed(connection_id, OAuthError::from(e)),
        };
        let req = AuthorizeRequest { login_hint: login_hint.filter(|h| !h.is_empty()), prompt_login: true, ..Default::default() };
        match self.redirect_to_idp(&connection, &req, true).await {
            Ok(reply) => reply,
            Err(e) => trial_failed(connection_id, e),
        }
    }

    pub(super) async fn finish_trial(&self, login: &LoginState, params: &HashMap<String, String>) -> Reply {
        let result = async {
            let connection = self.connection_of(login).await?;
            let (identity, profile) = self.upstream_identity(login, &connection, params).await?;
            self.preview(&connection, identity, &profile).await
        };
        Reply::Trial {
            outcome: Box::new(TrialOutcome { connection_id: login.connection_id.clone(), result: result.await }),
            cookies: vec![],
        }
    }

    async fn preview(&self, c: &Connection, who: VerifiedIdentity, profile: &Claims) -> Result<TrialPreview, OAuthError> {
        let store = self.store.as_ref();
        let licence = self.config.entitlements(store, &c.organization_id).await?;
        let mut notes = vec![];
        let mut org_groups: Vec<Group> = vec![];
        let mut page = Page { limit: 200, cursor: None };
        loop {
            let batch = store.list_groups(&c.organization_id, &page).await?;
            let Some(last) = batch.last() else { break };
            page.cursor = Some(last.id.clone());
            org_groups.extend(batch);
        }
        let claim = &c.group_sync.claim;
        let idp_groups = group_sync::reported_groups(&who.id_claims, who.userinfo.as_ref(), claim);
        let (groups, to_create) = match (&idp_groups, c.group_sync.enabled, licence.group_sync) {
            (_, false, _) => {
                notes.push("group sync is off for this connection: a new user joins `end-user`; admins place users in groups".into());
                ([FALLBACK_GROUP.to_owned()].into(), Default::default())
            }
            (_, true, false) => {
                notes.push("the organization's licence does not include group sync".into());
                ([FALLBACK_GROUP.to_owned()].into(), Default::default())
            }
            (groups, true, true) => {
                if groups.is_none() {
                    notes.push(format!("the IdP sent no `{claim}` claim, in the ID token or userinfo"));
                }
                let existing: HashSet<&str> = org_groups.iter().map(|g| g.name.as_str()).collect();
                let r = SyncRules::of(&c.group_sync).resolve(groups.as_deref().unwrap_or_default(), &existing);
                (r.groups, r.to_create)
            }
        };
        let role = derive_role(groups.iter().map(|name| match org_groups.iter().find(|g| &g.name == name) {
            Some(g) => (g.name.as_str(), g.is_default, g.permissions.as_slice()),
            None => (name.as_str(), false, &[][..]),
        }));
        if !licence.sso {
            notes.push("the organization's licence does not allow single sign-on: real sign-ins are refused".into());
        }
        Ok(TrialPreview {
            profile: claims::normalize(profile),
            idp_groups: idp_groups
                .unwrap_or_default()
                .into_iter()
                .map(|g| if g.name.is_empty() { g.id.unwrap_or_default() } else { g.name })
                .collect(),
            groups: groups.into_iter().collect(),
            groups_to_create: to_create.into_iter().collect(),
            role: role.as_str(),
            notes,
            id_token_claims: who.id_claims,
            userinfo: who.userinfo,
        })
    }
}

pub(super) fn trial_failed(connection_id: &str, e: OAuthError) -> Reply {
    Reply::Trial { outcome: Box::new(TrialOutcome { connection_id: connection_id.into(), result: Err(e) }), cookies: vec![] }
}

/// Claims as shown on the preview page: pretty JSON.
pub fn pretty(claims: &Claims) -> String {
    serde_json::to_string_pretty(&Value::Object(claims.clone())).unwrap_or_default()
}
