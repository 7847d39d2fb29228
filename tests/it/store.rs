//! The storage layer through the `Store` trait, every check run on real SQLite and
//! on real PostgreSQL (a fresh database per test).

use crate::common;

use std::sync::Arc;

use common::pg::PgDatabase;
use serde_json::json;
use sqlx::Row;
use ssogate::core::audit::Actor;
use ssogate::core::claims::IdpProfile;
use ssogate::core::connection::Provisioning as P;
use ssogate::core::connection::{Connection, GroupSync, Provisioning, UserMatch};
use ssogate::core::group::NewGroup;
use ssogate::core::ids::{new_id, IdKind};
use ssogate::core::now;
use ssogate::core::organization::Organization;
use ssogate::core::session::UpstreamTokens;
use ssogate::core::user::UserProfile;
use ssogate::core::Timestamp;
use ssogate::crypto::SecretBox;
use ssogate::store::{
    Change, Changes, Directory, EventFilter, FirstTokens, Grant, GroupSyncOf, Heard, Logins, NextTokens, Page, Provisioned, Redemption,
    RefreshState, RevokedTokens, Rotation, Session, SessionFilter, SessionHandle, SignIn, SqlStore, Stale, Store, StoreError,
    StoredSigningKey,
};
use std::time::Duration;

/// A store over a fresh database, and the URL to peek at its raw rows.
struct TestDb {
    store: Arc<SqlStore>,
    url: String,
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/test.db", dir.path().display());
        TestDb { store: open(&url, [1; 32]).await, url, _pg: None, _dir: Some(dir) }
    }

    async fn postgres() -> Self {
        let pg = PgDatabase::create().await;
        TestDb { store: open(&pg.url, [1; 32]).await, url: pg.url.clone(), _pg: Some(pg), _dir: None }
    }

    async fn raw(&self, sql: &str) -> Vec<sqlx::any::AnyRow> {
        let mut c = sqlx::AnyConnection::connect_any(&self.url).await;
        sqlx::query(sql).fetch_all(&mut c).await.unwrap()
    }

    /// Another replica's store over the same database.
    async fn replica(&self) -> Arc<SqlStore> {
        open(&self.url, [1; 32]).await
    }

    async fn finish(self) {
        self.store.close().await;
    }
}

trait ConnectAny {
    async fn connect_any(url: &str) -> sqlx::AnyConnection;
}

impl ConnectAny for sqlx::AnyConnection {
    async fn connect_any(url: &str) -> sqlx::AnyConnection {
        use sqlx::Connection as _;
        sqlx::AnyConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    }
}

async fn open(url: &str, key: [u8; 32]) -> Arc<SqlStore> {
    let store = SqlStore::connect(url, Arc::new(SecretBox::new(&key))).await.expect("connect");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

fn actor() -> Actor {
    Actor("test".into())
}

fn org(name: &str, slug: &str, domains: &[&str]) -> Organization {
    let t = now();
    Organization {
        id: new_id(IdKind::Organization),
        name: name.into(),
        slug: slug.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        email_policy: Default::default(),
        groups_source: Default::default(),
        created_at: t,
        updated_at: t,
    }
}

fn connection(org_id: &str) -> Connection {
    let t = now();
    Connection {
        id: new_id(IdKind::Connection),
        organization_id: org_id.into(),
        name: "Okta".into(),
        client_id: "client".into(),
        discovery_url: "https://acme.okta.com/.well-known/openid-configuration".into(),
        scopes: vec!["openid".into()],
        logout_url: None,
        provisioning: Provisioning::Jit,
        user_match: UserMatch::Email,
        group_sync: GroupSync::default(),
        allow_hmac_id_tokens: false,
        trust_unverified_email: false,
        frontchannel_logout_by_subject: false,
        shared_redirect_uri: false,
        created_at: t,
        updated_at: t,
    }
}

fn page(limit: u32) -> Page {
    Page { limit, cursor: None }
}

fn profile(email: &str) -> UserProfile {
    UserProfile { email: Some(email.into()), username: None, first_name: None, last_name: None, idp_sub: None }
}

async fn organizations_have_defaults_unique_slugs_and_domains(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let a = s.create_organization(org("Acme", "acme", &["acme.com"]), true, &actor()).await.unwrap();
    assert_eq!(s.find_organization("acme").await.unwrap().unwrap(), a);
    assert_eq!(s.find_organization(&a.id).await.unwrap().unwrap().domains, ["acme.com"]);
    let groups = s.list_groups(&a.id, &page(10)).await.unwrap();
    let names: Vec<_> = groups.iter().map(|g| (g.name.as_str(), g.is_default)).collect();
    assert_eq!(names, [("admin", true), ("builder", true), ("end-user", true)]);

    let err = s.create_organization(org("Other", "acme", &[]), true, &actor()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { field, .. } if field == "slug"), "{err:?}");
    let b = s.create_organization(org("Other", "acme", &[]), false, &actor()).await.unwrap();
    assert_eq!(b.slug, "acme-2");
    let err = s.create_organization(org("Third", "third", &["new.com", "acme.com"]), true, &actor()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { field, .. } if field == "domains[1]"), "{err:?}");
    // The failed creation left nothing behind, not even its first domain.
    assert!(s.find_organization("third").await.unwrap().is_none());
    // The domain the failed creation wanted is still free.
    let b = s
        .update_organization(
            &b.id,
            Box::new(|o| {
                o.domains = vec!["new.com".into()];
                Ok(())
            }),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(b.domains, ["new.com"]);
    let renamed = s
        .update_organization(
            &a.id,
            Box::new(|o| {
                o.name = "Acme Corp".into();
                Ok(())
            }),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Corp");
    let events = s.list_events(&EventFilter { organization_id: Some(a.id.clone()), ..Default::default() }, &page(10)).await.unwrap();
    assert_eq!(events[0].action, "organization.updated");
    assert_eq!(events[0].changes, json!({"name": {"from": "Acme", "to": "Acme Corp"}}));

    s.delete_organization(&a.id, &actor()).await.unwrap();
    assert!(s.find_organization(&a.id).await.unwrap().is_none());
    assert!(s.list_groups(&a.id, &page(10)).await.unwrap().is_empty());
    let left = db.raw(&format!("SELECT COUNT(*) AS n FROM organization_domains WHERE organization_id = '{}'", a.id)).await;
    assert_eq!(left[0].try_get::<i64, _>("n").unwrap(), 0);
}

async fn connection_secrets_are_encrypted_and_bound_to_their_row(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("Acme", "acme", &[]), true, &actor()).await.unwrap();
    let c = s.create_connection(connection(&o.id), "plain-secret-123", &actor()).await.unwrap();
    let c2 = s.create_connection(connection(&o.id), "other-secret-456", &actor()).await.unwrap();
    assert_eq!(s.connection_client_secret(&c.id).await.unwrap(), "plain-secret-123");
    let raw = db.raw("SELECT id, client_secret_enc FROM connections ORDER BY id").await;
    let sealed: Vec<String> = raw.iter().map(|r| r.try_get("client_secret_enc").unwrap()).collect();
    assert!(sealed.iter().all(|v| v.starts_with("v1:") && !v.contains("secret")), "{sealed:?}");

    // A sealed secret moved to another row does not decrypt there.
    let mut c_conn = sqlx::AnyConnection::connect_any(&db.url).await;
    sqlx::query("UPDATE connections SET client_secret_enc = $1 WHERE id = $2")
        .bind(&sealed[0])
        .bind(&c2.id)
        .execute(&mut c_conn)
        .await
        .unwrap();
    assert!(matches!(s.connection_client_secret(&c2.id).await, Err(StoreError::Corrupt(_))));

    // A store opened with another key cannot read the secrets.
    let other = open(&db.url, [2; 32]).await;
    assert!(matches!(other.connection_client_secret(&c.id).await, Err(StoreError::Corrupt(_))));
    other.close().await;

    let updated = s
        .update_connection(
            &c.id,
            Box::new(|c| {
                c.name = "Okta EU".into();
                Ok(Some("new-secret-789".into()))
            }),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "Okta EU");
    assert_eq!(s.connection_client_secret(&c.id).await.unwrap(), "new-secret-789");
    let events = s
        .list_events(
            &EventFilter { organization_id: Some(o.id.clone()), action: Some("connection.updated".into()), ..Default::default() },
            &page(10),
        )
        .await
        .unwrap();
    assert_eq!(events[0].changes["client_secret"], "changed");
    assert!(!events[0].changes.to_string().contains("new-secret-789"));
}

async fn users_are_unique_per_organization_and_never_half_written(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let a = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let b = s.create_organization(org("B", "org-b", &[]), true, &actor()).await.unwrap();
    let g = s
        .create_group(&a.id, NewGroup { name: "All Apps".into(), description: None, permissions: vec!["manage_apps".into()] }, &actor())
        .await
        .unwrap();
    let u = s.create_user(&a.id, profile("jane@acme.com"), vec!["All Apps".into()], &actor()).await.unwrap();
    assert_eq!(u.groups, ["All Apps"]);
    assert_eq!(u.role.as_str(), "builder");
    // The same email in another organization is another person.
    s.create_user(&b.id, profile("jane@acme.com"), vec![], &actor()).await.unwrap();
    let err = s.create_user(&a.id, profile("jane@acme.com"), vec![], &actor()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { field, .. } if field == "email"), "{err:?}");
    // A bad group name fails the whole creation.
    let err = s.create_user(&a.id, profile("bob@acme.com"), vec!["admin".into(), "nope".into()], &actor()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(v) if v.field == "groups[1]"), "{err:?}");
    let users = s.list_users(&a.id, &page(10)).await.unwrap();
    assert_eq!(users.len(), 1, "half-written user left behind");

    let updated = s.update_user(&u.user.id, Box::new(|_| Ok(Some(vec!["admin".into(), "All Apps".into()]))), &actor()).await.unwrap();
    assert_eq!(updated.role.as_str(), "admin");
    assert_eq!(updated.groups, ["All Apps", "admin"]);
    // Deleting a group removes its memberships.
    s.delete_group(&g.id, &actor()).await.unwrap();
    assert_eq!(s.get_user(&u.user.id).await.unwrap().unwrap().groups, ["admin"]);
    let admin_group = s.list_groups(&a.id, &page(1)).await.unwrap().remove(0);
    assert!(matches!(s.delete_group(&admin_group.id, &actor()).await, Err(StoreError::Refused { code: "default_group", .. })));
}

async fn events_paginate_newest_first_with_filters(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    for i in 0..5 {
        s.create_group(&o.id, NewGroup { name: format!("g{i}"), description: None, permissions: vec![] }, &actor()).await.unwrap();
    }
    let filter = EventFilter { organization_id: Some(o.id.clone()), action: Some("group.created".into()), target_id: None };
    let first = s.list_events(&filter, &page(3)).await.unwrap();
    assert_eq!(first.len(), 3);
    let rest = s.list_events(&filter, &Page { limit: 3, cursor: Some(first[2].id.clone()) }).await.unwrap();
    assert_eq!(rest.len(), 2);
    let mut ids: Vec<_> = first.iter().chain(&rest).map(|e| e.id.clone()).collect();
    let newest_first = ids.clone();
    ids.sort();
    ids.reverse();
    assert_eq!(ids, newest_first);
    assert_eq!(rest[1].changes["name"], "g0");
    // By target, alone and beside an action: one group's history.
    let target = first[0].target_id.clone();
    let of = |action: Option<&str>, target_id: Option<&str>| EventFilter {
        organization_id: Some(o.id.clone()),
        action: action.map(str::to_owned),
        target_id: target_id.map(str::to_owned),
    };
    let history = s.list_events(&of(None, Some(&target)), &page(10)).await.unwrap();
    assert_eq!(history.iter().map(|e| e.target_id.as_str()).collect::<Vec<_>>(), [target.as_str()]);
    assert_eq!(s.list_events(&of(Some("group.created"), Some(&target)), &page(10)).await.unwrap().len(), 1);
    assert!(s.list_events(&of(Some("group.deleted"), Some(&target)), &page(10)).await.unwrap().is_empty());
    // Events of no organization are listed apart, with the same filters.
    assert!(s.list_events(&EventFilter::default(), &page(10)).await.unwrap().is_empty());
    let app = s.create_application(test_app("client_events"), "hash", &actor()).await.unwrap();
    let global = |action: &str| EventFilter { organization_id: None, action: Some(action.into()), target_id: Some(app.id.clone()) };
    let created = s.list_events(&global("application.created"), &page(10)).await.unwrap();
    assert_eq!((created.len(), created[0].organization_id.as_deref()), (1, None));
    assert!(s.list_events(&global("group.created"), &page(10)).await.unwrap().is_empty());
}

async fn settings_first_writer_wins(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    assert_eq!(s.setting("k").await.unwrap(), None);
    assert_eq!(s.put_setting_if_absent("k", "one").await.unwrap(), "one");
    assert_eq!(s.put_setting_if_absent("k", "two").await.unwrap(), "one");
    s.put_setting("k", "three").await.unwrap();
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("three"));
}

async fn concurrent_writers_all_succeed(db: &TestDb) {
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move { store.create_organization(org(&format!("Org {i}"), "org", &[]), false, &actor()).await })
        })
        .collect();
    let mut slugs = Vec::new();
    for t in tasks {
        slugs.push(t.await.unwrap().expect("concurrent create failed").slug);
    }
    slugs.sort();
    slugs.dedup();
    assert_eq!(slugs.len(), 24, "slugs must stay unique under concurrency");
}

/// Admin edits of one row at once each see the one before: none is lost.
async fn concurrent_edits_of_one_row_are_not_lost(db: &TestDb) {
    let o = db.store.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let c = db.store.create_connection(connection(&o.id), "x", &actor()).await.unwrap();
    let edits = (0..12).map(|i| {
        let (store, id) = (db.store.clone(), c.id.clone());
        tokio::spawn(async move {
            let add = Box::new(move |c: &mut Connection| {
                c.scopes.push(format!("scope-{i}"));
                Ok(None)
            });
            store.update_connection(&id, add, &actor()).await
        })
    });
    for edit in futures_util::future::join_all(edits).await {
        edit.unwrap().unwrap();
    }
    let scopes = db.store.get_connection(&c.id).await.unwrap().unwrap().scopes;
    assert_eq!(scopes.iter().filter(|s| s.starts_with("scope-")).count(), 12, "{scopes:?}");
}

fn idp_profile(sub: &str, email: &str) -> IdpProfile {
    IdpProfile {
        idp_sub: sub.into(),
        email: Some(email.into()),
        email_verified: true,
        first_name: Some("Ann".into()),
        ..Default::default()
    }
}

async fn provisioning_matches_within_the_organization_only(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let a = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let b = s.create_organization(org("B", "org-b", &[]), true, &actor()).await.unwrap();
    let ca = s.create_connection(connection(&a.id), "x", &actor()).await.unwrap();
    let mut cb = connection(&b.id);
    cb.provisioning = P::ExistingUsers;
    let cb = s.create_connection(cb, "x", &actor()).await.unwrap();
    let Provisioned::User(first) = s.provision_user(&ca, &idp_profile("u1", "ann@x.test"), now()).await.unwrap() else { panic!() };
    let Provisioned::User(again) = s.provision_user(&ca, &idp_profile("u1", "ann.new@x.test"), now()).await.unwrap() else { panic!() };
    assert_eq!(first.user.id, again.user.id, "a returning IdP subject is the same user");
    assert_eq!(again.user.email.as_deref(), Some("ann.new@x.test"));
    // Organization B admits existing users only, and Ann of A is not one of them.
    assert!(matches!(s.provision_user(&cb, &idp_profile("u1", "ann.new@x.test"), now()).await.unwrap(), Provisioned::NotAllowed));
    s.create_user(&b.id, profile("ann.new@x.test"), vec![], &actor()).await.unwrap();
    let Provisioned::User(in_b) = s.provision_user(&cb, &idp_profile("u1", "ann.new@x.test"), now()).await.unwrap() else { panic!() };
    assert_ne!(in_b.user.id, first.user.id);
    assert_eq!(in_b.user.organization_id, b.id);
    assert_eq!(in_b.user.idp_sub.as_deref(), Some("u1"));
}

async fn existing_users_are_matched_by_the_connection_rule(db: &TestDb) {
    use ssogate::core::connection::UserMatch;
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let by = |rule: UserMatch| {
        let mut c = connection(&o.id);
        c.provisioning = P::ExistingUsers;
        c.user_match = rule;
        c
    };
    let by_username = s.create_connection(by(UserMatch::PreferredUsername), "x", &actor()).await.unwrap();
    let by_sub = s.create_connection(by(UserMatch::Sub), "x", &actor()).await.unwrap();
    let pre = |email: &str, username: Option<&str>, sub: Option<&str>| UserProfile {
        email: Some(email.into()),
        username: username.map(Into::into),
        first_name: None,
        last_name: None,
        idp_sub: sub.map(Into::into),
    };
    let ann = s.create_user(&o.id, pre("ann@x.test", Some("ann"), None), vec![], &actor()).await.unwrap();
    let bob = s.create_user(&o.id, pre("bob@x.test", None, Some("idp-bob")), vec![], &actor()).await.unwrap();
    let mut profile = idp_profile("idp-ann", "someone.else@x.test");
    profile.username = Some("ann".into());
    let Provisioned::User(u) = s.provision_user(&by_username, &profile, now()).await.unwrap() else { panic!("ann by username") };
    assert_eq!(u.user.id, ann.user.id);
    // Matching by email is not what this connection does.
    assert!(matches!(s.provision_user(&by_username, &idp_profile("idp-x", "bob@x.test"), now()).await.unwrap(), Provisioned::NotAllowed));
    let Provisioned::User(u) = s.provision_user(&by_sub, &idp_profile("idp-bob", "bob.new@x.test"), now()).await.unwrap() else {
        panic!("bob by sub")
    };
    assert_eq!(u.user.id, bob.user.id);
    let events = (s
        .list_events(&EventFilter { organization_id: Some(o.id.clone()), action: Some("user.linked".into()), target_id: None }, &page(10))
        .await)
        .unwrap();
    assert_eq!(events.len(), 2);
}

async fn seats_hold_under_concurrent_first_logins(db: &TestDb) {
    use ssogate::core::entitlements::Entitlements;
    let o = db.store.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let c = db.store.create_connection(connection(&o.id), "x", &actor()).await.unwrap();
    let licence = Entitlements { max_users: Some(5), ..Default::default() };
    db.store.put_entitlements(&o.id, &licence, &actor()).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, c) = (db.store.clone(), c.clone());
            tokio::spawn(async move { store.provision_user(&c, &idp_profile(&format!("sub-{i}"), &format!("u{i}@x.test")), now()).await })
        })
        .collect();
    let (mut admitted, mut refused) = (vec![], 0);
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap().unwrap() {
            Provisioned::User(_) => admitted.push(i),
            Provisioned::NoSeat(5) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((admitted.len(), refused), (5, 15));
    let (e, users) = db.store.entitlements(&o.id).await.unwrap();
    assert_eq!((e, users), (licence, 5));
    // Existing users keep signing in; admins cannot add a sixth either.
    let i = admitted[0];
    let again = db.store.provision_user(&c, &idp_profile(&format!("sub-{i}"), &format!("u{i}@x.test")), now()).await.unwrap();
    assert!(matches!(again, Provisioned::User(_)), "{again:?}");
    let err = db.store.create_user(&o.id, profile("extra@x.test"), vec![], &actor()).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { code: "seat_limit_reached", .. }), "{err:?}");
    let events = db
        .store
        .list_events(
            &EventFilter { organization_id: Some(o.id.clone()), action: Some("entitlements.updated".into()), target_id: None },
            &page(5),
        )
        .await
        .unwrap();
    assert_eq!(events[0].changes["max_users"]["to"], 5);
}

async fn group_sync_replaces_memberships_in_one_transaction(db: &TestDb) {
    use ssogate::core::group_sync::IdpGroup;
    use ssogate::store::IdpGroupsSource;
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let mut synced = connection(&o.id);
    synced.group_sync = GroupSync {
        enabled: true,
        mapping: "Engineering -> engineers".into(),
        create_missing_groups: true,
        authoritative: true,
        ..GroupSync::default()
    };
    let c = s.create_connection(synced, "x", &actor()).await.unwrap();
    s.create_group(&o.id, NewGroup { name: "engineers".into(), description: None, permissions: vec!["manage_apps".into()] }, &actor())
        .await
        .unwrap();
    let Provisioned::User(u) = s.provision_user(&c, &idp_profile("u1", "a@x.test"), now()).await.unwrap() else { panic!() };
    s.update_user(&u.user.id, Box::new(|_| Ok(Some(vec!["admin".into()]))), &actor()).await.unwrap();
    let idp = vec![IdpGroup { name: "Engineering".into(), id: None }, IdpGroup { name: "Ops".into(), id: Some("g-9".into()) }];
    let claims = claims(json!({"groups": ["Engineering", {"id": "g-9", "displayName": "Ops"}]}));
    let reported = IdpGroupsSource::Reported { id_token: &claims, userinfo: None };
    let synced = s.sync_groups(GroupSyncOf { user_id: &u.user.id, connection_id: &c.id }, reported, &actor()).await.unwrap();
    // Sync is authoritative here: the hand-set admin membership is replaced; Ops is
    // created as a group.
    assert_eq!(synced.groups, ["Ops", "engineers"]);
    assert_eq!(synced.role.as_str(), "builder");
    assert_eq!(synced.user.idp_groups, idp);
    let created = s.list_groups(&o.id, &page(10)).await.unwrap().into_iter().find(|g| g.name == "Ops").unwrap();
    assert!(created.permissions.is_empty() && !created.is_default);
    let events = s
        .list_events(
            &EventFilter { organization_id: Some(o.id.clone()), action: Some("user.groups_synced".into()), target_id: None },
            &page(5),
        )
        .await
        .unwrap();
    assert_eq!(events[0].changes["removed"], json!(["admin"]));
    assert_eq!(events[0].changes["role"], json!({"from": "admin", "to": "builder"}));
    // Syncing the same groups again changes nothing and records nothing.
    s.sync_groups(GroupSyncOf { user_id: &u.user.id, connection_id: &c.id }, reported, &actor()).await.unwrap();
    let again = s
        .list_events(
            &EventFilter { organization_id: Some(o.id.clone()), action: Some("user.groups_synced".into()), target_id: None },
            &page(5),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);

    // A re-sync reads the rules as they are now and the IdP groups kept on the user,
    // and leaves those groups as they were.
    let remap = Box::new(|c: &mut Connection| {
        c.group_sync.mapping = "Engineering -> platform".into();
        Ok(None)
    });
    s.update_connection(&c.id, remap, &actor()).await.unwrap();
    let resynced =
        s.sync_groups(GroupSyncOf { user_id: &u.user.id, connection_id: &c.id }, IdpGroupsSource::Stored, &actor()).await.unwrap();
    assert_eq!(resynced.groups, ["Ops", "platform"]);
    assert_eq!(resynced.user.idp_groups, idp);
    // With group sync turned off meanwhile, a sync changes nothing.
    let off = Box::new(|c: &mut Connection| {
        c.group_sync.enabled = false;
        Ok(None)
    });
    s.update_connection(&c.id, off, &actor()).await.unwrap();
    let none = self::claims(json!({"groups": []}));
    let untouched = s
        .sync_groups(
            GroupSyncOf { user_id: &u.user.id, connection_id: &c.id },
            IdpGroupsSource::Reported { id_token: &none, userinfo: None },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!((&untouched.groups, &untouched.user.idp_groups), (&resynced.groups, &idp));

    // Back on. An IdP that says the claim is elsewhere (OIDC Core §5.6.2, Entra ID's
    // group overage) has not said "no groups": memberships stay, and the audit log
    // says why.
    let on = Box::new(|c: &mut Connection| {
        c.group_sync.enabled = true;
        Ok(None)
    });
    s.update_connection(&c.id, on, &actor()).await.unwrap();
    let (user_id, connection_id) = (u.user.id.as_str(), c.id.as_str());
    let sync = |id_token: &serde_json::Value| {
        let said = self::claims(id_token.clone());
        async move {
            s.sync_groups(GroupSyncOf { user_id, connection_id }, IdpGroupsSource::Reported { id_token: &said, userinfo: None }, &actor())
                .await
                .unwrap()
        }
    };
    let reasons = || async {
        let filter = EventFilter { organization_id: Some(o.id.clone()), action: Some("user.groups_not_synced".into()), target_id: None };
        s.list_events(&filter, &page(5))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.changes["reason"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let overage =
        sync(&json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.example/x"}}})).await;
    assert_eq!((&overage.groups, &overage.user.idp_groups), (&resynced.groups, &idp));
    assert!(reasons().await[0].contains("elsewhere"), "{:?}", reasons().await);
    // An absent claim: kept where the connection says so...
    let keep = Box::new(|c: &mut Connection| {
        c.group_sync.when_claim_missing = ssogate::core::connection::WhenClaimMissing::Keep;
        Ok(None)
    });
    s.update_connection(&c.id, keep, &actor()).await.unwrap();
    assert_eq!(sync(&json!({"sub": "u1"})).await.groups, resynced.groups);
    assert!(reasons().await[0].contains("did not send the `groups` claim"), "{:?}", reasons().await);
    // ...and by default, as Okta and Entra ID leave an empty claim out, no groups.
    let clear = Box::new(|c: &mut Connection| {
        c.group_sync.when_claim_missing = Default::default();
        Ok(None)
    });
    s.update_connection(&c.id, clear, &actor()).await.unwrap();
    let emptied = sync(&json!({"sub": "u1"})).await;
    assert_eq!(emptied.groups, ["end-user"]);
    assert!(emptied.user.idp_groups.is_empty());
    // With no synced group left, nothing kept is worth an audit entry.
    assert_eq!(sync(&json!({"hasgroups": true})).await.groups, ["end-user"]);
    assert_eq!(reasons().await.len(), 2);

    // A user the IdP never reported groups for (signed in while sync was off) is left
    // as they are by a re-sync, not stripped.
    let Provisioned::User(quiet) = s.provision_user(&c, &idp_profile("u2", "b@x.test"), now()).await.unwrap() else { panic!() };
    s.update_user(&quiet.user.id, Box::new(|_| Ok(Some(vec!["admin".into()]))), &actor()).await.unwrap();
    let resynced =
        s.sync_groups(GroupSyncOf { user_id: &quiet.user.id, connection_id: &c.id }, IdpGroupsSource::Stored, &actor()).await.unwrap();
    assert_eq!(resynced.groups, ["admin"]);
    // Nor can another organization's connection sync this organization's users.
    let other = s.create_organization(org("B", "org-b", &[]), true, &actor()).await.unwrap();
    let mut theirs = connection(&other.id);
    theirs.group_sync.enabled = true;
    let theirs = s.create_connection(theirs, "x", &actor()).await.unwrap();
    let refused = s
        .sync_groups(
            GroupSyncOf { user_id: &quiet.user.id, connection_id: &theirs.id },
            IdpGroupsSource::Reported { id_token: &none, userinfo: None },
            &actor(),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound("connection"))), "{refused:?}");
}

fn claims(v: serde_json::Value) -> ssogate::core::claims::Claims {
    serde_json::from_value(v).unwrap()
}

/// Concurrent syncs take turns. Many users at once reaching groups that do not
/// exist yet each find the group (created by whichever came first); syncs of one user
/// at once (two sign-ins, or a sign-in and a refresh) all succeed and leave exactly
/// the memberships of the IdP groups left, never the union of two.
async fn concurrent_group_syncs_take_turns(db: &TestDb) {
    use ssogate::store::IdpGroupsSource;
    let s = db.store.clone();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let mut synced = connection(&o.id);
    synced.group_sync = GroupSync { enabled: true, mapping: "A -> a, B -> b".into(), create_missing_groups: true, ..GroupSync::default() };
    let c = s.create_connection(synced, "x", &actor()).await.unwrap();
    let mut users = vec![];
    for i in 0..8 {
        let Provisioned::User(u) = s.provision_user(&c, &idp_profile(&format!("u{i}"), &format!("{i}@x.test")), now()).await.unwrap()
        else {
            panic!()
        };
        users.push(u.user.id);
    }
    let sync = |user: String, names: Vec<&'static str>| {
        let (s, conn) = (s.clone(), c.id.clone());
        tokio::spawn(async move {
            let said = claims(json!({ "groups": names }));
            s.sync_groups(
                GroupSyncOf { user_id: &user, connection_id: &conn },
                IdpGroupsSource::Reported { id_token: &said, userinfo: None },
                &actor(),
            )
            .await
        })
    };
    let first = futures_util::future::join_all(users.iter().map(|u| sync(u.clone(), vec!["A", "B"]))).await;
    for done in first {
        assert_eq!(done.unwrap().unwrap().groups, ["a", "b"]);
    }
    let created = s.list_groups(&o.id, &page(50)).await.unwrap().into_iter().filter(|g| g.name == "a" || g.name == "b").count();
    assert_eq!(created, 2, "each group created once");

    let one = &users[0];
    for round in 0..5 {
        let syncs = (0..8).map(|i| sync(one.clone(), vec![if (i + round) % 2 == 0 { "A" } else { "B" }]));
        for done in futures_util::future::join_all(syncs).await {
            done.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let now_ = s.get_user(one).await.unwrap().unwrap();
        let expected = now_.user.idp_groups[0].name.to_lowercase();
        assert_eq!(now_.groups, [expected], "round {round}");
    }
}

/// By default sync replaces only the memberships it made (peers' most common
/// complaint is sync wiping an admin's): hand-set ones stay, and an admin's list keeps
/// each kept group's origin.
async fn hand_set_memberships_survive_group_sync(db: &TestDb) {
    use ssogate::store::IdpGroupsSource;
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let mut synced = connection(&o.id);
    synced.group_sync =
        GroupSync { enabled: true, mapping: "Engineering -> engineers".into(), create_missing_groups: true, ..GroupSync::default() };
    let c = s.create_connection(synced, "x", &actor()).await.unwrap();
    let Provisioned::User(u) = s.provision_user(&c, &idp_profile("u1", "a@x.test"), now()).await.unwrap() else { panic!() };
    let id = u.user.id.as_str();
    let admin = actor();
    let set_by_hand = |groups: &[&str]| {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        s.update_user(id, Box::new(move |_| Ok(Some(groups))), &admin)
    };
    let engineering = claims(json!({"groups": ["Engineering"]}));
    let nothing = claims(json!({"groups": []}));
    let sync = |said| {
        s.sync_groups(
            GroupSyncOf { user_id: id, connection_id: &c.id },
            IdpGroupsSource::Reported { id_token: said, userinfo: None },
            &admin,
        )
    };
    let groups = |v: &ssogate::core::user::UserView| (v.groups.clone(), v.synced_groups.clone(), v.role.as_str().to_owned());
    let names = |g: &[&str]| g.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    set_by_hand(&["admin"]).await.unwrap();
    assert_eq!(groups(&sync(&engineering).await.unwrap()), (names(&["admin", "engineers"]), names(&["engineers"]), "admin".into()));
    // The IdP drops the group: the synced one goes, the admin's stays (no fallback needed).
    assert_eq!(groups(&sync(&nothing).await.unwrap()), (names(&["admin"]), names(&[]), "admin".into()));
    // An admin's list keeps a synced group synced, and adds hand-set ones.
    sync(&engineering).await.unwrap();
    assert_eq!(
        groups(&set_by_hand(&["engineers", "builder"]).await.unwrap()),
        (names(&["builder", "engineers"]), names(&["engineers"]), "builder".into())
    );
    assert_eq!(groups(&sync(&nothing).await.unwrap()), (names(&["builder"]), names(&[]), "builder".into()));
    // With no group left at all, the fallback.
    set_by_hand(&[]).await.unwrap();
    assert_eq!(groups(&sync(&nothing).await.unwrap()), (names(&["end-user"]), names(&["end-user"]), "end-user".into()));
    // IdP groups named like the default groups match in any case.
    let shouting = claims(json!({"groups": ["ADMIN"]}));
    assert_eq!(groups(&sync(&shouting).await.unwrap()), (names(&["admin"]), names(&["admin"]), "admin".into()));
}

/// Two IdP subjects with the same verified email signing in at once for the first
/// time, both matching one pre-created user: one links it, the other is refused as
/// someone else — never both linked in turn, the second overwriting the first.
async fn one_user_is_linked_to_one_subject_under_concurrency(db: &TestDb) {
    let o = db.store.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let c = db.store.create_connection(connection(&o.id), "x", &actor()).await.unwrap();
    for round in 0..10 {
        let email = format!("boss{round}@x.test");
        let boss = db.store.create_user(&o.id, profile(&email), vec![], &actor()).await.unwrap();
        let signs_in = |sub: String| {
            let (store, c, email) = (db.store.clone(), c.clone(), email.clone());
            tokio::spawn(async move { store.provision_user(&c, &idp_profile(&sub, &email), now()).await })
        };
        let (a, b) = tokio::join!(signs_in(format!("a{round}")), signs_in(format!("b{round}")));
        let linked = [a.unwrap(), b.unwrap()].into_iter().filter(|r| matches!(r, Ok(Provisioned::User(_)))).count();
        assert_eq!(linked, 1, "round {round}: one subject links the user");
        let now_ = db.store.get_user(&boss.user.id).await.unwrap().unwrap();
        let events = db
            .store
            .list_events(
                &EventFilter {
                    organization_id: Some(o.id.clone()),
                    action: Some("user.linked".into()),
                    target_id: Some(boss.user.id.clone()),
                },
                &page(5),
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "round {round}: linked once");
        assert!(now_.user.idp_sub.as_deref().is_some_and(|s| s.ends_with(&round.to_string())), "{:?}", now_.user.idp_sub);
    }
}

/// A group write queues its re-sync in its own transaction: a job for each connection
/// that syncs groups, one queued at a time; a failed write queues nothing.
async fn sync_jobs_queue_once_per_connection_and_are_taken_once(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let mut synced = connection(&o.id);
    synced.group_sync.enabled = true;
    let synced = s.create_connection(synced, "x", &actor()).await.unwrap();
    s.create_connection(connection(&o.id), "x", &actor()).await.unwrap(); // group sync off
    let group = |name: &str| NewGroup { name: name.into(), description: None, permissions: vec![] };
    s.create_group(&o.id, group("first"), &actor()).await.unwrap();
    let jobs = s.list_sync_jobs(&o.id, &page(10)).await.unwrap();
    assert_eq!(jobs.len(), 1, "only connections with group sync get a job");
    assert_eq!(
        (jobs[0].connection_id.as_str(), jobs[0].status.as_str(), jobs[0].reason.as_str()),
        (synced.id.as_str(), "queued", "group.created")
    );
    s.create_group(&o.id, group("second"), &actor()).await.unwrap();
    assert!(s.create_group(&o.id, group("second"), &actor()).await.is_err(), "the name is taken");
    assert_eq!(s.list_sync_jobs(&o.id, &page(10)).await.unwrap().len(), 1, "one queued job per connection");
    let claimed = s.claim_sync_job().await.unwrap().unwrap();
    assert_eq!((claimed.id.as_str(), claimed.status.as_str()), (jobs[0].id.as_str(), "running"));
    assert!(s.claim_sync_job().await.unwrap().is_none(), "a job is taken once");
    // A job making progress stays with its replica; one that stalled (its process
    // stopped) goes back to the queue.
    assert_eq!(s.requeue_stalled_sync_jobs(now() - Duration::from_secs(60)).await.unwrap(), 0);
    assert_eq!(s.requeue_stalled_sync_jobs(now() + Duration::from_millis(1)).await.unwrap(), 1);
    let again = s.claim_sync_job().await.unwrap().unwrap();
    s.update_sync_job(&again.id, "done", 3, 3, None).await.unwrap();
    let job = s.sync_job(&again.id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.total, job.done), ("done", 3, 3));
    assert_eq!(s.list_sync_jobs(&o.id, &page(10)).await.unwrap().len(), 1);
}

async fn grants_redeem_once_and_replays_revoke_tokens(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let c = s.create_connection(connection(&o.id), "x", &actor()).await.unwrap();
    let Provisioned::User(u) = s.provision_user(&c, &idp_profile("u1", "a@x.test"), now()).await.unwrap() else { panic!() };
    let t = now();
    let app = test_app("client_x");
    s.create_application(app.clone(), "hash", &actor()).await.unwrap();
    let later = t + std::time::Duration::from_secs(60);
    let grant = Grant {
        code_hash: "c1".into(),
        application_id: app.id.clone(),
        redirect_uri: "https://a/cb".into(),
        user_id: u.user.id.clone(),
        session_hash: SessionHandle::of_secret("s1"),
        session_id: "ses_1".into(),
        scope: "openid".into(),
        nonce: None,
        code_challenge: None,
        auth_time: t,
        claims: json!({"sub": u.user.id}),
        code_expires_at: later,
    };
    s.create_grant(&grant, None).await.unwrap();
    assert!(s.issued_token("t1").await.unwrap().is_none());
    match s.redeem_grant("c1", first("t1", later), t).await.unwrap() {
        // No session s1 exists: the exchange must see that.
        Redemption::Fresh(g, session_expires_at) => assert_eq!((g.code_hash.as_str(), session_expires_at), ("c1", None)),
        other => panic!("{other:?}"),
    }
    let token = s.issued_token("t1").await.unwrap().unwrap();
    assert_eq!(token.claims["sub"], json!(u.user.id));
    assert!(!token.revoked);
    match s.redeem_grant("c1", first("t2", later), t).await.unwrap() {
        Redemption::Replayed { revoked_token_hashes } => assert_eq!(revoked_token_hashes, ["t1"]),
        other => panic!("{other:?}"),
    }
    assert!(s.issued_token("t1").await.unwrap().unwrap().revoked);
    assert!(s.issued_token("t2").await.unwrap().is_none(), "a replay must not mint a token");
    assert!(matches!(s.redeem_grant("nope", first("t3", later), t).await.unwrap(), Redemption::Unknown));

    // A grant stored with the session its sign-in started: both are there.
    let session = Session { id_hash: SessionHandle::of_secret("s2"), ..session_of(&u.user.id, &c, t, later) };
    let sign_in = SignIn { session: &session, state_hash: "state-1", state_expires_at: later };
    s.create_grant(&Grant { code_hash: "c2".into(), session_hash: SessionHandle::of_secret("s2"), ..grant.clone() }, Some(sign_in))
        .await
        .unwrap();
    assert_eq!(s.session(&SessionHandle::of_secret("s2")).await.unwrap().unwrap().user_id, u.user.id);
    // The same login state cannot complete a second sign-in, and that attempt stores nothing.
    let again = Session { id_hash: SessionHandle::of_secret("s3"), id: new_id(IdKind::Session), ..session.clone() };
    let err = s
        .create_grant(
            &Grant { code_hash: "c3".into(), session_hash: SessionHandle::of_secret("s3"), ..grant },
            Some(SignIn { session: &again, ..sign_in }),
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { field, .. } if field == "state_hash"), "{err:?}");
    assert!(s.session(&SessionHandle::of_secret("s3")).await.unwrap().is_none());
    assert!(matches!(s.redeem_grant("c3", first("t9", later), t).await.unwrap(), Redemption::Unknown));
    match s.redeem_grant("c2", first("t4", later), t).await.unwrap() {
        Redemption::Fresh(_, session_expires_at) => assert_eq!(session_expires_at, Some(later)),
        other => panic!("{other:?}"),
    }
}

/// An access token for an exchange; a refresh token only a grant asking for
/// `offline_access` keeps.
fn first(access_hash: &str, access_expires_at: Timestamp) -> FirstTokens<'_> {
    FirstTokens { access_hash, access_expires_at, refresh_hash: "unused-refresh" }
}

/// A grant with `offline_access` is one token family: each refresh token works once,
/// the next replaces the access token, a spent one presented again revokes the whole
/// family (RFC 9700 §4.14.2), and two exchanges of one token at once rotate once.
async fn refresh_tokens_rotate_and_reuse_revokes_the_family(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let c = s.create_connection(connection(&o.id), "x", &actor()).await.unwrap();
    let Provisioned::User(u) = s.provision_user(&c, &idp_profile("u1", "a@x.test"), now()).await.unwrap() else { panic!() };
    let app = test_app("client_r");
    s.create_application(app.clone(), "hash", &actor()).await.unwrap();
    let t = now();
    let session = session_of(&u.user.id, &c, t, t + Duration::from_secs(3600));
    let grant = |code: &str, scope: &str| Grant {
        code_hash: code.into(),
        application_id: app.id.clone(),
        redirect_uri: "https://a/cb".into(),
        user_id: u.user.id.clone(),
        session_hash: session.id_hash.clone(),
        session_id: session.id.clone(),
        scope: scope.into(),
        nonce: None,
        code_challenge: None,
        auth_time: t,
        claims: json!({"sub": u.user.id}),
        code_expires_at: t + Duration::from_secs(60),
    };
    let sign_in = SignIn { session: &session, state_hash: "st", state_expires_at: t + Duration::from_secs(600) };
    s.create_grant(&grant("plain", "openid"), Some(sign_in)).await.unwrap();
    s.create_grant(&grant("offline", "openid offline_access"), None).await.unwrap();
    let later = t + Duration::from_secs(300);
    let tokens = |access_hash, refresh_hash| FirstTokens { access_hash, access_expires_at: later, refresh_hash };
    assert!(matches!(s.redeem_grant("plain", tokens("a0", "r0"), t).await.unwrap(), Redemption::Fresh(..)));
    assert!(s.refresh_token("r0").await.unwrap().is_none(), "no offline_access, no refresh token");
    assert!(matches!(s.redeem_grant("offline", tokens("a1", "r1"), t).await.unwrap(), Redemption::Fresh(..)));
    let found = s.refresh_token("r1").await.unwrap().unwrap();
    assert_eq!((found.grant.code_hash.as_str(), found.spent, found.revoked), ("offline", false, false));

    let claims = json!({"sub": u.user.id, "groups": ["new"]});
    let next = |access_hash, refresh_hash| NextTokens {
        access_hash,
        access_expires_at: later,
        refresh_hash,
        claims: &claims,
        scope: "openid offline_access",
        at: t,
    };
    match s.rotate_refresh_token("r1", next("a2", "r2")).await.unwrap() {
        Rotation::Rotated { replaced_token_hash } => assert_eq!(replaced_token_hash.as_deref(), Some("a1")),
        other => panic!("{other:?}"),
    }
    assert!(s.issued_token("a1").await.unwrap().is_none(), "the replaced access token is gone");
    let current = s.issued_token("a2").await.unwrap().unwrap();
    assert_eq!((current.claims["groups"].clone(), current.code_hash.as_str()), (json!(["new"]), "offline"));
    assert!(s.refresh_token("r1").await.unwrap().unwrap().spent);

    // Two exchanges of r2 at once: one rotates, the other is reuse and revokes all.
    let (x, y) = tokio::join!(s.rotate_refresh_token("r2", next("a3", "r3")), s.rotate_refresh_token("r2", next("a4", "r4")));
    let outcomes = [x.unwrap(), y.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Rotation::Rotated { .. })).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Rotation::Reused { .. })).count(), 1, "{outcomes:?}");
    for hash in ["a3", "a4"] {
        assert!(s.issued_token(hash).await.unwrap().is_none_or(|tok| tok.revoked), "{hash} must not be live");
    }
    assert!(s.refresh_token("r3").await.unwrap().is_none_or(|r| r.revoked));
    assert!(s.refresh_token("r4").await.unwrap().is_none_or(|r| r.revoked));
    assert!(matches!(s.rotate_refresh_token("r3", next("a5", "r5")).await.unwrap(), Rotation::Revoked | Rotation::Reused { .. }));
    assert!(s.issued_token("a5").await.unwrap().is_none(), "a revoked family mints nothing");
    assert!(
        matches!(s.rotate_refresh_token("nobody", next("a6", "r6")).await.unwrap(), Rotation::Reused { revoked_token_hashes } if revoked_token_hashes.is_empty())
    );

    // Revoking a family (RFC 7009) and ending its session both stop its refresh token.
    s.create_grant(&grant("offline-2", "openid offline_access"), None).await.unwrap();
    assert!(matches!(s.redeem_grant("offline-2", tokens("b1", "q1"), t).await.unwrap(), Redemption::Fresh(..)));
    assert_eq!(s.revoke_tokens(RevokedTokens::AccessToken("b1".into())).await.unwrap(), ["b1"]);
    assert!(s.issued_token("b1").await.unwrap().is_none(), "an access token revoked alone is gone");
    assert!(!s.refresh_token("q1").await.unwrap().unwrap().revoked, "its refresh token still works");
    assert!(s.revoke_tokens(RevokedTokens::Family("offline-2".into())).await.unwrap().is_empty(), "no access token was left");
    assert!(matches!(s.rotate_refresh_token("q1", next("b2", "q2")).await.unwrap(), Rotation::Revoked));
    s.create_grant(&grant("offline-3", "openid offline_access"), None).await.unwrap();
    assert!(matches!(s.redeem_grant("offline-3", tokens("c1", "p1"), t).await.unwrap(), Redemption::Fresh(..)));
    s.end_sessions(SessionFilter::Handle(&session.id_hash), "logout", &actor()).await.unwrap();
    assert!(s.refresh_token("p1").await.unwrap().unwrap().revoked);

    // A live family outlives its access token at purge; a revoked one does not.
    s.purge_expired(later + Duration::from_secs(3600)).await.unwrap();
    assert!(s.refresh_token("p1").await.unwrap().is_none(), "a revoked family is purged with its tokens");
}

/// A session of `user_id` through `c`, live until `until`, with no upstream tokens.
fn session_of(user_id: &str, c: &Connection, at: Timestamp, until: Timestamp) -> Session {
    Session {
        id: new_id(IdKind::Session),
        id_hash: SessionHandle::of_secret(&format!("hash-{}", new_id(IdKind::Session))),
        user_id: user_id.into(),
        organization_id: c.organization_id.clone(),
        connection_id: Some(c.id.clone()),
        auth_time: at,
        created_at: at,
        expires_at: until,
        idle_expires_at: until,
        last_active_at: at,
        idp_sub: Some("u1".into()),
        idp_sid: None,
        upstream: None,
        refresh: RefreshState::default(),
    }
}

fn test_app(client_id: &str) -> ssogate::core::application::Application {
    let t = now();
    ssogate::core::application::Application {
        id: new_id(IdKind::Application),
        name: client_id.into(),
        client_id: client_id.into(),
        client_type: Default::default(),
        id_token_signed_response_alg: "RS256".into(),
        redirect_uris: vec!["https://a/cb".into()],
        post_logout_redirect_uris: vec![],
        expose_idp_tokens: false,
        backchannel_logout_uri: None,
        frontchannel_logout_uri: None,
        frontchannel_logout_session_required: false,
        access_token_format: Default::default(),
        access_token_audience: None,
        token_endpoint_auth_method: ssogate::core::application::TokenEndpointAuth::ClientSecretBasic,
        jwks: None,
        jwks_uri: None,
        created_at: t,
        updated_at: t,
    }
}

/// Signs `session` in with one grant for `app_id`, redeemed for the token `token_hash`.
async fn sign_in(s: &dyn Store, session: &Session, app_id: &str, token_hash: &str) {
    let t = session.created_at;
    let code = format!("code-{token_hash}");
    let grant = Grant {
        code_hash: code.clone(),
        application_id: app_id.into(),
        redirect_uri: "https://a/cb".into(),
        user_id: session.user_id.clone(),
        session_hash: session.id_hash.clone(),
        session_id: session.id.clone(),
        scope: "openid".into(),
        nonce: None,
        code_challenge: None,
        auth_time: t,
        claims: json!({"sub": session.user_id}),
        code_expires_at: t + Duration::from_secs(60),
    };
    let state = format!("state-{token_hash}");
    s.create_grant(&grant, Some(SignIn { session, state_hash: &state, state_expires_at: t + Duration::from_secs(600) })).await.unwrap();
    assert!(matches!(s.redeem_grant(&code, first(token_hash, t + Duration::from_secs(3600)), t).await.unwrap(), Redemption::Fresh(..)));
}

async fn sessions_end_with_their_tokens_and_refreshes_are_claimed_once(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let o = s.create_organization(org("A", "org-a", &[]), true, &actor()).await.unwrap();
    let c = s.create_connection(connection(&o.id), "x", &actor()).await.unwrap();
    let Provisioned::User(u) = s.provision_user(&c, &idp_profile("u1", "a@x.test"), now()).await.unwrap() else { panic!() };
    let app = s.create_application(test_app("client_s"), "hash", &actor()).await.unwrap();
    let t = now();
    let day = t + Duration::from_secs(86_400);

    // Upstream tokens are sealed at rest and come back whole.
    let upstream = UpstreamTokens {
        access_token: Some("idp-access-token".into()),
        refresh_token: Some("idp-refresh-token".into()),
        expires_at: Some(t.unix_timestamp() + 30),
        nonce: "n".into(),
        ..Default::default()
    };
    let due = t - Duration::from_secs(1);
    let mut sessions = vec![];
    for i in 0..24 {
        let mut session = session_of(&u.user.id, &c, t, day);
        session.idp_sid = Some(format!("idp-sid-{i}"));
        session.upstream = Some(upstream.clone());
        session.refresh.due_at = Some(due);
        sign_in(s, &session, &app.id, &format!("tok-{i}")).await;
        sessions.push(session);
    }
    let raw = db.raw("SELECT upstream_enc FROM sessions").await;
    assert!(raw.iter().all(|r| !r.try_get::<String, _>("upstream_enc").unwrap().contains("idp-")), "tokens are sealed");
    assert_eq!(s.session(&sessions[0].id_hash).await.unwrap().unwrap().upstream, Some(upstream.clone()));

    // Four claimers at once: every due session is claimed exactly once.
    let lease = t + Duration::from_secs(120);
    let claims = futures_util::future::join_all((0..4).map(|_| s.claim_due_refreshes(t, lease, 10))).await;
    let mut claimed: Vec<String> = claims.into_iter().flat_map(|c| c.unwrap()).map(|x| x.id).collect();
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!((before, claimed.len()), (24, 24), "no session claimed twice, none missed");
    assert!(s.claim_due_refreshes(t, lease, 10).await.unwrap().is_empty(), "claimed sessions wait for their lease");
    // A saved refresh releases the claim and sets the next due time; a failure sets a retry.
    let next = t + Duration::from_secs(300);
    assert!(s.holds_refresh_lease(&sessions[0].id_hash, lease).await.unwrap());
    assert!(s.save_upstream_tokens(&sessions[0].id, &sessions[0].id_hash, lease, &upstream).await.unwrap());
    assert!(s.save_refreshed(&sessions[0].id_hash, lease, &upstream, Some(next), t).await.unwrap());
    assert!(!s.holds_refresh_lease(&sessions[0].id_hash, lease).await.unwrap(), "saving ends the lease");
    assert!(s.save_refresh_failure(&sessions[1].id_hash, lease, t, t, "idp down").await.unwrap());
    let later = t + Duration::from_secs(1);
    let retried = s.claim_due_refreshes(later, later + Duration::from_secs(120), 10).await.unwrap();
    assert_eq!(retried.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), [sessions[1].id.as_str()]);
    assert_eq!(retried[0].refresh.last_error.as_deref(), Some("idp down"));
    assert_eq!(s.session(&sessions[0].id_hash).await.unwrap().unwrap().refresh.due_at, Some(next));
    // A refresh that outlived its lease (the session was claimed again since) writes nothing.
    let late = &sessions[1];
    assert!(!s.holds_refresh_lease(&late.id_hash, lease).await.unwrap());
    let mut stale = upstream.clone();
    stale.refresh_token = Some("spent".into());
    assert!(!s.save_upstream_tokens(&late.id, &late.id_hash, lease, &stale).await.unwrap());
    assert!(!s.save_refreshed(&late.id_hash, lease, &stale, Some(next), t).await.unwrap());
    assert!(!s.save_refresh_failure(&late.id_hash, lease, t, t, "late").await.unwrap());
    let kept = s.session(&late.id_hash).await.unwrap().unwrap();
    assert_eq!((kept.upstream.as_ref(), kept.refresh.last_error.as_deref()), (Some(&upstream), Some("idp down")));

    // Ending a session revokes its tokens; the IdP can name it by sid or by subject.
    let ended = s
        .end_sessions(SessionFilter::Idp { connection_id: &c.id, sub: None, sid: Some("idp-sid-2") }, "idp_logout", &actor())
        .await
        .unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].revoked_token_hashes.clone(), ended[0].application_ids.clone()), (vec!["tok-2".to_owned()], vec![app.id.clone()]));
    assert!(s.issued_token("tok-2").await.unwrap().unwrap().revoked);
    assert!(!s.issued_token("tok-3").await.unwrap().unwrap().revoked);
    // A filter naming nothing ends nothing.
    let none = SessionFilter::Idp { connection_id: &c.id, sub: None, sid: None };
    assert!(s.end_sessions(none, "idp_logout", &actor()).await.unwrap().is_empty());
    let by_id = SessionFilter::Id { user_id: &u.user.id, id: &sessions[3].id };
    assert_eq!(s.end_sessions(by_id, "admin", &actor()).await.unwrap().len(), 1);
    let by_sub = SessionFilter::Idp { connection_id: &c.id, sub: Some("u1"), sid: None };
    assert_eq!(s.end_sessions(by_sub, "idp_logout", &actor()).await.unwrap().len(), 22);
    assert!(s.user_sessions(&u.user.id).await.unwrap().is_empty());
    assert!(s.issued_token("tok-23").await.unwrap().unwrap().revoked);

    // A front-channel logout naming the user by subject ends their sessions through that
    // connection without an IdP sid, and only those.
    let c2 = s.create_connection(connection(&o.id), "y", &actor()).await.unwrap();
    let without_sid = session_of(&u.user.id, &c, t, day);
    let mut with_sid = session_of(&u.user.id, &c, t, day);
    with_sid.idp_sid = Some("idp-sid-kept".into());
    let elsewhere = session_of(&u.user.id, &c2, t, day);
    for (i, session) in [&without_sid, &with_sid, &elsewhere].into_iter().enumerate() {
        sign_in(s, session, &app.id, &format!("tok-fcl-{i}")).await;
    }
    let by_subject = SessionFilter::IdpSubjectWithoutSid { connection_id: &c.id, sub: "u1" };
    let ended = s.end_sessions(by_subject, "idp_logout_by_subject", &actor()).await.unwrap();
    assert_eq!(ended.iter().map(|e| e.session.id.as_str()).collect::<Vec<_>>(), [without_sid.id.as_str()]);
    let other_subject = SessionFilter::IdpSubjectWithoutSid { connection_id: &c2.id, sub: "u2" };
    assert!(s.end_sessions(other_subject, "idp_logout_by_subject", &actor()).await.unwrap().is_empty());
    assert_eq!(s.user_sessions(&u.user.id).await.unwrap().len(), 2);
    s.end_sessions(SessionFilter::User(&u.user.id), "admin", &actor()).await.unwrap();

    // A new sign-in adopts the same user's grants from the session it replaces.
    let old = session_of(&u.user.id, &c, t, day);
    sign_in(s, &old, &app.id, "tok-old").await;
    let new = session_of(&u.user.id, &c, t, day);
    sign_in(s, &new, &app.id, "tok-new").await;
    s.adopt_grants(&old.id_hash, &new).await.unwrap();
    assert!(s.end_sessions(SessionFilter::Handle(&old.id_hash), "replaced", &actor()).await.unwrap()[0].revoked_token_hashes.is_empty());
    assert!(!s.issued_token("tok-old").await.unwrap().unwrap().revoked);
    assert_eq!(s.issued_token("tok-old").await.unwrap().unwrap().session_hash, new.id_hash);

    // Idle sessions lapse: touching one revives nothing, and purging revokes its tokens.
    let idle = Session { idle_expires_at: t + Duration::from_millis(1), ..session_of(&u.user.id, &c, t, day) };
    sign_in(s, &idle, &app.id, "tok-idle").await;
    let later = t + Duration::from_secs(5);
    assert!(s.touch_session(&idle.id_hash, later, later + Duration::from_secs(60)).await.unwrap().is_none());
    assert!(s.touch_session(&new.id_hash, later, later + Duration::from_secs(60)).await.unwrap().is_some());
    s.purge_expired(later).await.unwrap();
    assert!(s.session(&idle.id_hash).await.unwrap().is_none());
    assert!(s.issued_token("tok-idle").await.unwrap().unwrap().revoked);

    // One-time values are used once.
    assert!(s.use_once("jti-1", day).await.unwrap());
    assert!(!s.use_once("jti-1", day).await.unwrap());
}

async fn signing_keys_are_sealed_and_rotation_retires(db: &TestDb) {
    let s: &dyn Store = db.store.as_ref();
    let key = |kid: &str| StoredSigningKey {
        kid: kid.into(),
        alg: "ES256".into(),
        pkcs8: b"private-bytes".to_vec(),
        public_jwk: json!({"kid": kid}),
        created_at: now(),
        retired_at: None,
    };
    // Replicas starting together each try to create the first key: one is created.
    let other = db.replica().await;
    let (a, b) =
        futures_util::future::join(s.add_signing_key(&key("k1"), false, &actor()), other.add_signing_key(&key("k1b"), false, &actor()))
            .await;
    assert!(a.unwrap() ^ b.unwrap(), "exactly one first key");
    let first = s.signing_keys().await.unwrap();
    assert_eq!(first.len(), 1);
    let k1 = first[0].kid.clone();
    assert!(!s.add_signing_key(&key("k1c"), false, &actor()).await.unwrap(), "a live key is kept");
    s.add_signing_key(&key("k2"), true, &actor()).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().find(|k| k.kid == k1).unwrap().retired_at.is_some());
    assert!(keys.iter().find(|k| k.kid == "k2").unwrap().retired_at.is_none());
    assert_eq!(keys[0].pkcs8, b"private-bytes");
    let raw = db.raw("SELECT private_key_enc FROM signing_keys").await;
    assert!(!raw[0].try_get::<String, _>("private_key_enc").unwrap().contains("private"));
    other.close().await;
}

async fn leases_go_to_one_replica_at_a_time(db: &TestDb) {
    let (a, b) = (db.store.clone(), db.replica().await);
    let t = now();
    let until = t + Duration::from_secs(60);
    let both = futures_util::future::join(a.try_lease("job", t, until), b.try_lease("job", t, until)).await;
    assert_eq!([both.0.unwrap(), both.1.unwrap()].iter().filter(|x| **x).count(), 1, "exactly one replica takes a free lease");
    let (holder, other) = if a.try_lease("job", t, until).await.unwrap() { (&a, &b) } else { (&b, &a) };
    assert!(holder.try_lease("job", t + Duration::from_secs(1), until).await.unwrap(), "the holder renews");
    assert!(!other.try_lease("job", t + Duration::from_secs(30), until).await.unwrap(), "held until it expires");
    assert!(other.try_lease("job", until, until + Duration::from_secs(60)).await.unwrap(), "an expired lease passes on");
    assert!(!holder.try_lease("job", until, until + Duration::from_secs(60)).await.unwrap());
    assert!(a.try_lease("another job", t, until).await.unwrap(), "leases are per job");
    b.close().await;
}

async fn changes_reach_the_other_replicas(db: &TestDb) {
    let (a, b) = (db.store.clone(), db.replica().await);
    let Some(mut heard_by_b) = b.listen().await.unwrap() else {
        assert_eq!(db.store.dialect(), ssogate::store::Dialect::Sqlite, "only SQLite, with one process, has no change feed");
        a.publish(&Change::Configuration(Stale::Everything)).await.unwrap();
        return;
    };
    let mut heard_by_a = a.listen().await.unwrap().unwrap();
    let tokens: Vec<String> = (0..150).map(|i| format!("hash-{i}")).collect();
    a.publish(&Change::Tokens(tokens.clone())).await.unwrap();
    a.publish(&Change::Configuration(Stale::Everything)).await.unwrap();
    let mut got = vec![];
    while got.len() < tokens.len() {
        match next(&mut heard_by_b).await {
            Heard::Change(Change::Tokens(h)) => got.extend(h),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, tokens, "every hash arrives, in order, across messages");
    assert_eq!(next(&mut heard_by_b).await, Heard::Change(Change::Configuration(Stale::Everything)));
    // A replica does not hear itself.
    b.publish(&Change::Configuration(Stale::SigningKeys)).await.unwrap();
    assert_eq!(next(&mut heard_by_a).await, Heard::Change(Change::Configuration(Stale::SigningKeys)));
    assert!(tokio::time::timeout(Duration::from_millis(300), heard_by_b.next()).await.is_err());
    // An admin write announces itself in its own transaction: heard once committed,
    // never for a write that was refused.
    // It names what it made stale; a write of no cached configuration says nothing.
    let noticed = a.create_organization(org("N", "org-noticed", &[]), true, &actor()).await.unwrap();
    assert_eq!(next(&mut heard_by_b).await, Heard::Change(Change::Configuration(Stale::Organization(noticed.id.clone()))));
    assert!(a.create_organization(org("N", "org-noticed", &[]), true, &actor()).await.is_err(), "the slug is taken");
    a.create_user(&noticed.id, profile("nobody@noticed.test"), vec![], &actor()).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), heard_by_b.next()).await.is_err(), "nothing to forget");

    // A listener whose connection is cut, and cannot be mended for now, says so: what
    // was said meanwhile is lost, and the broker must forget everything and listen anew.
    let name = &db._pg.as_ref().expect("PostgreSQL").name;
    let admin = common::pg::admin_url();
    common::pg::execute(&admin, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    let cut = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND query LIKE 'LISTEN%'");
    common::pg::execute(&admin, &cut).await;
    assert_eq!(next(&mut heard_by_b).await, Heard::Lost);
    common::pg::execute(&admin, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    b.close().await;
}

async fn next(listener: &mut Box<dyn ssogate::store::ChangeListener>) -> Heard {
    tokio::time::timeout(Duration::from_secs(5), listener.next()).await.expect("a change arrives")
}

macro_rules! on_both_databases {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let db = super::TestDb::sqlite().await;
                    super::$check(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let db = super::TestDb::postgres().await;
                    super::$check(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_both_databases!(
    organizations_have_defaults_unique_slugs_and_domains,
    connection_secrets_are_encrypted_and_bound_to_their_row,
    users_are_unique_per_organization_and_never_half_written,
    events_paginate_newest_first_with_filters,
    settings_first_writer_wins,
    concurrent_writers_all_succeed,
    concurrent_edits_of_one_row_are_not_lost,
    provisioning_matches_within_the_organization_only,
    grants_redeem_once_and_replays_revoke_tokens,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    existing_users_are_matched_by_the_connection_rule,
    seats_hold_under_concurrent_first_logins,
    group_sync_replaces_memberships_in_one_transaction,
    concurrent_group_syncs_take_turns,
    hand_set_memberships_survive_group_sync,
    one_user_is_linked_to_one_subject_under_concurrency,
    sync_jobs_queue_once_per_connection_and_are_taken_once,
    signing_keys_are_sealed_and_rotation_retires,
    sessions_end_with_their_tokens_and_refreshes_are_claimed_once,
    leases_go_to_one_replica_at_a_time,
    changes_reach_the_other_replicas,
);
