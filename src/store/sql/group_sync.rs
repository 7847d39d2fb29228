//! Group sync in the store: bringing users' memberships to what their IdP groups
//! (a groups claim, or their directory's groups) say, through the connection's
//! mapping, inside the caller's write transaction. Many users are synced in a
//! fixed number of statements (a PATCH of a thousand members costs what its
//! members do, not a round trip each), so a SCIM write or a re-sync job pays per
//! batch, not per user.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::directory::user_view_row;
use super::{from_json, ms, param_list, record, to_json, SqlStore, Tx};
use crate::core::audit::Actor;
use crate::core::connection::{GroupSync, WhenClaimMissing};
use crate::core::group_sync::{self, GroupsReport, IdpGroup, SyncRules};
use crate::core::ids::{new_id, IdKind};
use crate::core::user::UserView;
use crate::core::Timestamp;
use crate::store::{GroupSyncOf, IdpGroupsSource, StoreError, StoreResult};

/// Users read, locked and synced per batch: bounds the statements' parameters.
const BATCH: usize = 400;

/// A user about to be synced, as read under the lock.
struct Syncing {
    before: UserView,
    /// The IdP has reported their groups at least once (`idp_groups_at`).
    groups_reported: bool,
}

/// What a sync does for one user.
enum Plan {
    /// Leave the memberships as they are.
    Keep,
    /// Set them from these IdP groups, keeping the groups on the user when `store`.
    Apply { idp_groups: Vec<IdpGroup>, store: bool },
}

impl SqlStore {
    /// [`crate::store::Logins::sync_groups`] inside a write transaction of the
    /// caller's (a SCIM write syncs the members it changed in its own).
    pub(super) async fn sync_groups_in(
        &self,
        tx: &mut Tx,
        of: GroupSyncOf<'_>,
        groups: IdpGroupsSource<'_>,
        actor: &Actor,
    ) -> StoreResult<UserView> {
        let GroupSyncOf { user_id, connection_id } = of;
        let users = self.users_to_sync(tx, &[user_id]).await?;
        let organization_id = users[0].before.user.organization_id.clone();
        let mut target = SyncTarget::load(tx, connection_id, &organization_id).await?;
        let mut synced = self.sync_users_groups(tx, &mut target, users, groups, actor).await?;
        synced.pop().ok_or(StoreError::NotFound("user"))
    }

    /// Brings the memberships of many users of the connection's organization to
    /// what their stored IdP groups (or directory groups) say, reading what they
    /// share once.
    pub(super) async fn sync_stored_groups_in(
        &self,
        tx: &mut Tx,
        connection_id: &str,
        organization_id: &str,
        users: impl IntoIterator<Item = &String>,
        actor: &Actor,
    ) -> StoreResult<()> {
        let mut target = SyncTarget::load(tx, connection_id, organization_id).await?;
        let ids: Vec<&str> = users.into_iter().map(String::as_str).collect();
        for batch in ids.chunks(BATCH) {
            let users = self.users_to_sync(tx, batch).await?;
            if users.iter().any(|u| u.before.user.organization_id != organization_id) {
                return Err(StoreError::NotFound("connection"));
            }
            self.sync_users_groups(tx, &mut target, users, IdpGroupsSource::Stored, actor).await?;
        }
        Ok(())
    }

    /// The users (distinct ids), in the order given, held against concurrent
    /// writes. Every one must exist.
    async fn users_to_sync(&self, tx: &mut Tx, ids: &[&str]) -> StoreResult<Vec<Syncing>> {
        self.hold_rows(tx, "users", ids).await?;
        let mut found = self.users_with_groups(tx, ids).await?;
        ids.iter().map(|id| found.remove(*id).ok_or(StoreError::NotFound("user"))).collect()
    }

    /// The users with their memberships, by id.
    async fn users_with_groups(&self, tx: &mut Tx, ids: &[&str]) -> StoreResult<HashMap<String, Syncing>> {
        let sql =
            format!("SELECT users.*, {} AS memberships FROM users WHERE id IN ({})", self.dialect.memberships(), param_list(1, ids.len()));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        let mut found = HashMap::with_capacity(ids.len());
        for row in q.fetch_all(&mut **tx).await? {
            let groups_reported = row.try_get::<Option<i64>, _>("idp_groups_at")?.is_some();
            let before = user_view_row(&row)?;
            found.insert(before.user.id.clone(), Syncing { before, groups_reported });
        }
        Ok(found)
    }

    /// Syncs each user's memberships, returning their views in the same order.
    async fn sync_users_groups(
        &self,
        tx: &mut Tx,
        target: &mut SyncTarget,
        users: Vec<Syncing>,
        groups: IdpGroupsSource<'_>,
        actor: &Actor,
    ) -> StoreResult<Vec<UserView>> {
        let SyncTarget { settings, groups: organization } = target;
        if !settings.enabled || users.is_empty() {
            return Ok(users.into_iter().map(|u| u.before).collect());
        }
        let ids: Vec<&str> = users.iter().map(|u| u.before.user.id.as_str()).collect();
        let mut from_directory = directory_groups(tx, &ids).await?;
        let plans: Vec<Plan> = users
            .iter()
            .map(|u| self.plan(tx, settings, &u.before, u.groups_reported, groups, from_directory.remove(&u.before.user.id), actor))
            .collect();
        if plans.iter().all(|p| matches!(p, Plan::Keep)) {
            return Ok(users.into_iter().map(|u| u.before).collect());
        }
        let org = users[0].before.user.organization_id.clone();
        let t = self.clock.now();
        let known = organization_groups(organization, tx, &org).await?;
        let rules = SyncRules::of(settings);
        // Per user, the groups sync puts them in (ids).
        let mut wanted: Vec<(&str, Vec<String>)> = vec![];
        let mut stored: Vec<(&str, &[IdpGroup])> = vec![];
        for (u, plan) in users.iter().zip(&plans) {
            let Plan::Apply { idp_groups, store } = plan else { continue };
            let resolution = rules.resolve(idp_groups, &known.keys().map(String::as_str).collect());
            for name in &resolution.to_create {
                if !known.contains_key(name) {
                    let id = self.create_synced_group(tx, &org, name, actor).await?;
                    known.insert(name.clone(), id);
                }
            }
            // The fallback `end-user` only stands in for "no group at all".
            let hand_set = !settings.authoritative && u.before.synced_groups.len() < u.before.groups.len();
            let user_id = u.before.user.id.as_str();
            let groups = if resolution.fell_back && hand_set {
                vec![]
            } else {
                resolution.groups.iter().filter_map(|name| known.get(name).cloned()).collect()
            };
            wanted.push((user_id, groups));
            if *store {
                stored.push((user_id, idp_groups));
            }
        }
        let held: HashMap<&str, Vec<&String>> = users
            .iter()
            .map(|u| (u.before.user.id.as_str(), u.before.groups.iter().filter_map(|name| known.get(name)).collect()))
            .collect();
        write_memberships(tx, &wanted, &held, settings.authoritative, t).await?;
        let applied: Vec<&str> = wanted.iter().map(|(user_id, _)| *user_id).collect();
        if !stored.is_empty() {
            let cases: Vec<String> = (0..stored.len()).map(|i| format!("WHEN ${} THEN ${}", 2 * i + 2, 2 * i + 3)).collect();
            let sql = format!(
                "UPDATE users SET idp_groups = CASE id {} END, idp_groups_at = $1 WHERE id IN ({})",
                cases.join(" "),
                param_list(2 * stored.len() + 2, stored.len())
            );
            let mut q = sqlx::query(&sql).bind(ms(t));
            for (user_id, groups) in &stored {
                q = q.bind(*user_id).bind(to_json(groups));
            }
            for (user_id, _) in &stored {
                q = q.bind(*user_id);
            }
            q.execute(&mut **tx).await?;
        }
        let mut after = self.users_with_groups(tx, &applied).await?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let Some(Syncing { before: after, .. }) = after.remove(&u.before.user.id) else {
                out.push(u.before);
                continue;
            };
            let before = u.before;
            let added: Vec<&String> = after.groups.iter().filter(|g| !before.groups.contains(g)).collect();
            let removed: Vec<&String> = before.groups.iter().filter(|g| !after.groups.contains(g)).collect();
            if !added.is_empty() || !removed.is_empty() {
                let mut changes = serde_json::json!({"added": added, "removed": removed});
                if before.role != after.role {
                    changes["role"] = serde_json::json!({"from": before.role, "to": after.role});
                }
                record(tx, t, Some(&org), actor, "user.groups_synced", ("user", &after.user.id), changes);
            }
            out.push(after);
        }
        Ok(out)
    }

    /// Which IdP groups, if any, a sync applies to one user; records in the audit
    /// log why a sign-in's report was not applied.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        tx: &mut Tx,
        settings: &GroupSync,
        before: &UserView,
        groups_reported: bool,
        groups: IdpGroupsSource<'_>,
        from_directory: Option<Vec<IdpGroup>>,
        actor: &Actor,
    ) -> Plan {
        // A directory that sets this user's memberships speaks alone: the groups
        // claim changes nothing, and a re-sync applies the directory's groups.
        match (groups, from_directory) {
            (IdpGroupsSource::Reported { .. }, Some(_)) => Plan::Keep,
            (IdpGroupsSource::Stored, Some(directory)) => Plan::Apply { idp_groups: directory, store: true },
            (IdpGroupsSource::Stored, None) if groups_reported => Plan::Apply { idp_groups: before.user.idp_groups.clone(), store: false },
            (IdpGroupsSource::Stored, None) => Plan::Keep,
            (IdpGroupsSource::Reported { id_token, userinfo }, None) => {
                let report = group_sync::groups_report(id_token, userinfo, &settings.claim);
                let claim = &settings.claim;
                let left_alone_because = match (&report, settings.when_claim_missing) {
                    (GroupsReport::Elsewhere, _) => {
                        Some(format!("the IdP sent the `{claim}` claim elsewhere (distributed claims, as Entra ID does for many groups), which is not fetched"))
                    }
                    (GroupsReport::Absent, WhenClaimMissing::Keep) => Some(format!("the IdP did not send the `{claim}` claim")),
                    (GroupsReport::Absent, WhenClaimMissing::Clear) | (GroupsReport::Groups(_), _) => None,
                };
                if let Some(why) = left_alone_because {
                    // Recorded when something was kept: a user without synced groups
                    // (or with the fallback alone) would otherwise add an entry at
                    // every sign-in and refresh.
                    if before.synced_groups.iter().any(|g| g != group_sync::FALLBACK_GROUP) {
                        let changes = serde_json::json!({"reason": format!("{why}; memberships were left as they were")});
                        let (org, user) = (Some(before.user.organization_id.as_str()), ("user", before.user.id.as_str()));
                        record(tx, self.clock.now(), org, actor, "user.groups_not_synced", user, changes);
                    }
                    return Plan::Keep;
                }
                let idp_groups = match report {
                    GroupsReport::Groups(groups) => groups,
                    GroupsReport::Absent | GroupsReport::Elsewhere => vec![],
                };
                Plan::Apply { idp_groups, store: true }
            }
        }
    }

    /// A group named by the mapping that the organization lacks
    /// (`create_missing_groups`); another sync (or an admin) may have created it
    /// since this one read the organization's groups: then theirs is used.
    async fn create_synced_group(&self, tx: &mut Tx, org: &str, name: &str, actor: &Actor) -> StoreResult<String> {
        let created: Option<String> = sqlx::query_scalar(
            "INSERT INTO groups (id, organization_id, name, description, permissions, is_default, created_at, updated_at) \
             VALUES ($1, $2, $3, 'Created by group sync.', '[]', 0, $4, $4) ON CONFLICT (organization_id, name) DO NOTHING RETURNING id",
        )
        .bind(new_id(IdKind::Group))
        .bind(org)
        .bind(name)
        .bind(ms(self.clock.now()))
        .fetch_optional(&mut **tx)
        .await?;
        match created {
            Some(id) => {
                let changes = serde_json::json!({"name": name, "by": "group sync"});
                record(tx, self.clock.now(), Some(org), actor, "group.created", ("group", &id), changes);
                Ok(id)
            }
            None => Ok(sqlx::query_scalar("SELECT id FROM groups WHERE organization_id = $1 AND name = $2")
                .bind(org)
                .bind(name)
                .fetch_one(&mut **tx)
                .await?),
        }
    }
}

/// What a connection's group sync reads once however many of its users it syncs.
struct SyncTarget {
    settings: GroupSync,
    /// The organization's groups by name, read when first needed.
    groups: Option<HashMap<String, String>>,
}

impl SyncTarget {
    async fn load(conn: &mut AnyConnection, connection_id: &str, organization_id: &str) -> StoreResult<Self> {
        // Only a connection of the user's own organization syncs their groups.
        let settings: Option<String> = sqlx::query_scalar("SELECT group_sync FROM connections WHERE id = $1 AND organization_id = $2")
            .bind(connection_id)
            .bind(organization_id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(SyncTarget { settings: from_json(&settings.ok_or(StoreError::NotFound("connection"))?)?, groups: None })
    }
}

/// Parameters per membership statement: under SQLite's limit of 32,766.
const MEMBERSHIP_PARAMETERS: usize = 16_000;

/// Brings the users' memberships to `wanted`, writing only what changes: a re-sync
/// after a mapping change moves the memberships the change moves, not every one of
/// every user. Sync replaces the memberships it made; an admin's stay (and a group
/// the admin set stays theirs), unless the connection's sync is `authoritative`,
/// which makes every wanted membership sync's own. `held`: each user's memberships
/// (group ids) as read under the lock; an insert that meets one held meanwhile
/// leaves it be.
async fn write_memberships(
    tx: &mut Tx,
    wanted: &[(&str, Vec<String>)],
    held: &HashMap<&str, Vec<&String>>,
    authoritative: bool,
    at: Timestamp,
) -> StoreResult<()> {
    let replaced = if authoritative { "" } else { " AND source = 'sync'" };
    // Users in chunks whose kept memberships fit one statement's parameters.
    let mut chunks: Vec<&[(&str, Vec<String>)]> = vec![];
    let (mut start, mut size) = (0, 0);
    for (i, (_, groups)) in wanted.iter().enumerate() {
        let cost = 1 + 2 * groups.len();
        if i > start && size + cost > MEMBERSHIP_PARAMETERS {
            chunks.push(&wanted[start..i]);
            (start, size) = (i, 0);
        }
        size += cost;
    }
    chunks.push(&wanted[start..]);
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let kept: Vec<(&str, &String)> = chunk.iter().flat_map(|(user, groups)| groups.iter().map(move |g| (*user, g))).collect();
        let but_kept = if kept.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> =
                (0..kept.len()).map(|i| format!("(${}, ${})", chunk.len() + 2 * i + 1, chunk.len() + 2 * i + 2)).collect();
            format!(" AND NOT ((group_id, user_id) IN (VALUES {}))", pairs.join(", "))
        };
        let sql = format!("DELETE FROM group_memberships WHERE user_id IN ({}){replaced}{but_kept}", param_list(1, chunk.len()));
        let mut q = sqlx::query(&sql);
        for (user, _) in chunk {
            q = q.bind(*user);
        }
        for (user, group) in &kept {
            q = q.bind(group.as_str()).bind(*user);
        }
        q.execute(&mut **tx).await?;
        if authoritative {
            // What is left of these users' memberships is wanted: all sync's now.
            let sql = format!(
                "UPDATE group_memberships SET source = 'sync' WHERE user_id IN ({}) AND source <> 'sync'",
                param_list(1, chunk.len())
            );
            chunk.iter().fold(sqlx::query(&sql), |q, (user, _)| q.bind(*user)).execute(&mut **tx).await?;
        }
    }
    let missing: Vec<(&str, &String)> = wanted
        .iter()
        .flat_map(|(user, groups)| {
            let had = held.get(user);
            groups.iter().filter(move |g| !had.is_some_and(|h| h.contains(g))).map(move |g| (*user, g))
        })
        .collect();
    // Many memberships per statement: a user may be in hundreds of groups.
    for chunk in missing.chunks(400) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${}, 'sync', $1)", 2 * i + 2, 2 * i + 3)).collect();
        let sql = format!(
            "INSERT INTO group_memberships (group_id, user_id, source, created_at) VALUES {} ON CONFLICT (group_id, user_id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(ms(at));
        for (user_id, group_id) in chunk {
            q = q.bind(group_id.as_str()).bind(*user_id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// [`SyncTarget::groups`], read on first use.
async fn organization_groups<'g>(
    groups: &'g mut Option<HashMap<String, String>>,
    conn: &mut AnyConnection,
    organization_id: &str,
) -> StoreResult<&'g mut HashMap<String, String>> {
    if groups.is_none() {
        let rows = sqlx::query("SELECT id, name FROM groups WHERE organization_id = $1").bind(organization_id).fetch_all(conn).await?;
        *groups = Some(rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("id")?))).collect::<StoreResult<_>>()?);
    }
    Ok(groups.get_or_insert_with(HashMap::new))
}

/// The groups each user's directory puts them in, as IdP groups (its display
/// names, with the IdP's own id as `externalId` for mappings by id), for the users
/// whose directory sets their memberships (the organization's `groups_source` is
/// `directory`); users it does not are absent.
async fn directory_groups(conn: &mut AnyConnection, user_ids: &[&str]) -> StoreResult<HashMap<String, Vec<IdpGroup>>> {
    // One statement: the organization's choice, then each user's memberships (by
    // the member index; LEFT JOIN keeps SQLite's order), each in a group of their
    // own directory (another directory's group gives a row without one).
    let sql = format!(
        "SELECT du.user_id, o.groups_source, g.display_name, g.external_id FROM directory_users du \
         JOIN directories d ON d.id = du.directory_id JOIN organizations o ON o.id = d.organization_id \
         LEFT JOIN directory_group_members m ON m.member_id = du.user_id \
         LEFT JOIN directory_groups g ON g.id = m.group_id AND g.directory_id = du.directory_id \
         WHERE du.user_id IN ({}) ORDER BY du.user_id, g.display_name",
        param_list(1, user_ids.len())
    );
    let mut q = sqlx::query_as::<_, (String, String, Option<String>, Option<String>)>(&sql);
    for id in user_ids {
        q = q.bind(*id);
    }
    let mut out: HashMap<String, Vec<IdpGroup>> = HashMap::new();
    for (user_id, source, name, id) in q.fetch_all(&mut *conn).await? {
        if source != "directory" {
            continue;
        }
        let groups = out.entry(user_id).or_default();
        if let Some(name) = name {
            groups.push(IdpGroup { name, id });
        }
    }
    Ok(out)
}
