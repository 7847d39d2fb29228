//! The directory's admin writes, each one unit: the store commits the write with its
//! audit row, the re-sync jobs it calls for and the notice to other replicas in one
//! transaction, and this replica forgets what it made stale; then its sync worker is
//! woken (in memory, so a crash loses nothing it stands for). Handlers write through
//! these, never through the store.
//!
//! Deleting users, connections and organizations ends their sessions first, exactly
//! as a revocation does — codes and tokens revoked, other replicas told at once,
//! back-channel logout sent to the applications — so nothing deleted keeps working
//! for the minutes a cached token would otherwise live.

use super::Broker;
use crate::core::application::{Application, ClientType, NewApplication};
use crate::core::audit::Actor;
use crate::core::connection::{Connection, ConnectionSettings};
use crate::core::entitlements::Entitlements;
use crate::core::group::{Group, NewGroup};
use crate::core::ids::{new_id, IdKind};
use crate::core::organization::{NewOrganization, Organization};
use crate::core::user::{User, UserProfile, UserView};
use crate::crypto::{hash_secret, random_token};
use crate::store::{Edit, SessionFilter, StoreError, StoreResult};

/// Admin writes that need nothing before the store's: each forwards to the store's
/// write of the same name, then [`Broker::changed`].
macro_rules! admin_writes {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        impl Broker {
            $(
                pub async fn $name(&self, $($arg: $ty),*) -> StoreResult<$ret> {
                    let written = self.store.$name($($arg),*).await?;
                    self.changed();
                    Ok(written)
                }
            )*
        }
    };
}

admin_writes! {
    fn update_organization(id: &str, edit: Edit<'_, Organization, ()>, actor: &Actor) -> Organization;
    fn put_entitlements(organization_id: &str, e: &Entitlements, actor: &Actor) -> Entitlements;
    fn update_connection(id: &str, edit: Edit<'_, Connection, Option<String>>, actor: &Actor) -> Connection;
    fn update_application(id: &str, edit: Edit<'_, Application, ()>, actor: &Actor) -> Application;
    fn delete_application(id: &str, actor: &Actor) -> ();
    fn create_user(organization_id: &str, profile: UserProfile, groups: Vec<String>, actor: &Actor) -> UserView;
    fn create_group(organization_id: &str, group: NewGroup, actor: &Actor) -> Group;
    fn update_group(id: &str, edit: Edit<'_, Group, ()>, actor: &Actor) -> Group;
    fn delete_group(id: &str, actor: &Actor) -> ();
}

impl Broker {
    /// A user an admin deactivates loses every session at once, as by their directory.
    pub async fn update_user(&self, id: &str, edit: Edit<'_, User, Option<Vec<String>>>, actor: &Actor) -> StoreResult<UserView> {
        let user = self.store.update_user(id, edit, actor).await?;
        self.changed();
        if !user.user.active {
            self.end_sessions(SessionFilter::User(id), "user_deactivated", actor).await?;
        }
        Ok(user)
    }

    pub async fn delete_user(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.store.get_user(id).await?.ok_or(StoreError::NotFound("user"))?;
        self.end_sessions(SessionFilter::User(id), "user_deleted", actor).await?;
        self.store.delete_user(id, actor).await?;
        self.changed();
        Ok(())
    }

    pub async fn delete_connection(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let connection = self.store.get_connection(id).await?.ok_or(StoreError::NotFound("connection"))?;
        self.end_sessions(SessionFilter::Connection(id), "connection_deleted", actor).await?;
        // Its directories go with it, taking back the memberships they gave.
        let page = crate::store::Page { limit: u32::MAX, cursor: None };
        for d in self.store.list_directories(&connection.organization_id, &page).await?.into_iter().filter(|d| d.connection_id == id) {
            self.store.delete_directory(&d.id, actor).await?;
        }
        self.store.delete_connection(id, actor).await?;
        self.changed();
        Ok(())
    }

    /// `id`: the organization's id (not its slug).
    pub async fn delete_organization(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.end_sessions(SessionFilter::Organization(id), "organization_deleted", actor).await?;
        self.store.delete_organization(id, actor).await?;
        self.changed();
        Ok(())
    }
}

impl Broker {
    pub async fn create_organization(&self, new: NewOrganization, actor: &Actor) -> StoreResult<Organization> {
        let t = self.clock.now();
        let org = Organization {
            id: new_id(IdKind::Organization),
            name: new.name,
            slug: new.slug,
            domains: new.domains,
            email_policy: new.email_policy,
            groups_source: new.groups_source,
            created_at: t,
            updated_at: t,
        };
        let org = self.store.create_organization(org, new.slug_given, actor).await?;
        self.changed();
        Ok(org)
    }

    pub async fn create_connection(
        &self,
        organization_id: &str,
        s: ConnectionSettings,
        client_secret: &str,
        actor: &Actor,
    ) -> StoreResult<Connection> {
        let t = self.clock.now();
        let connection = Connection {
            id: new_id(IdKind::Connection),
            organization_id: organization_id.to_owned(),
            name: s.name,
            client_id: s.client_id,
            discovery_url: s.discovery_url,
            scopes: s.scopes,
            logout_url: s.logout_url,
            provisioning: s.provisioning,
            user_match: s.user_match,
            group_sync: s.group_sync,
            allow_hmac_id_tokens: s.allow_hmac_id_tokens,
            trust_unverified_email: s.trust_unverified_email,
            frontchannel_logout_by_subject: s.frontchannel_logout_by_subject,
            shared_redirect_uri: false,
            created_at: t,
            updated_at: t,
        };
        let connection = self.store.create_connection(connection, client_secret, actor).await?;
        self.changed();
        Ok(connection)
    }

    /// The application and, for a confidential client, its secret in clear: it is
    /// stored only hashed, so this is the one time it exists.
    pub async fn create_application(&self, new: NewApplication, actor: &Actor) -> StoreResult<(Application, Option<String>)> {
        let secret = new.token_endpoint_auth_method.uses_secret().then(|| random_token(""));
        let t = self.clock.now();
        let id = new_id(IdKind::Application);
        let application = Application {
            client_id: id.replacen("app_", "client_", 1),
            id,
            name: new.name,
            client_type: new.client_type,
            id_token_signed_response_alg: new.id_token_signed_response_alg,
            redirect_uris: new.redirect_uris,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            expose_idp_tokens: new.expose_idp_tokens,
            backchannel_logout_uri: new.backchannel_logout_uri,
            frontchannel_logout_uri: new.frontchannel_logout_uri,
            frontchannel_logout_session_required: new.frontchannel_logout_session_required,
            access_token_format: new.access_token_format,
            access_token_audience: new.access_token_audience,
            token_endpoint_auth_method: new.token_endpoint_auth_method,
            jwks: new.jwks,
            jwks_uri: new.jwks_uri,
            created_at: t,
            updated_at: t,
        };
        let hash = secret.as_deref().map(hash_secret).unwrap_or_default();
        let application = self.store.create_application(application, &hash, actor).await?;
        self.changed();
        Ok((application, secret))
    }

    /// A new client secret, in clear this once; the old one stops working at once.
    pub async fn rotate_application_secret(&self, id: &str, actor: &Actor) -> StoreResult<(Application, String)> {
        let app = self.store.get_application(id).await?.ok_or(StoreError::NotFound("application"))?;
        if app.client_type == ClientType::Public {
            return Err(StoreError::Refused { code: "public_client", message: "public clients have no secret to rotate".into() });
        }
        if !app.token_endpoint_auth_method.uses_secret() {
            let message = "this client authenticates with its own keys (private_key_jwt): update its jwks instead".into();
            return Err(StoreError::Refused { code: "no_secret", message });
        }
        let secret = random_token("");
        let application = self.store.set_application_secret(id, &hash_secret(&secret), actor).await?;
        self.changed();
        Ok((application, secret))
    }

    /// After a committed admin write: this replica's sync worker starts on any job it
    /// queued.
    pub(super) fn changed(&self) {
        self.sync_wake.notify_one();
    }
}
