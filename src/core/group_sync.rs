//! Group sync rules: which ssogate groups a user belongs to, given the groups their
//! IdP reports and the connection's mapping.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::claims::Claims;
use super::connection::GroupSync;
use super::group_mapping::GroupMapping;
use super::roles::DEFAULT_GROUPS;
use super::Timestamp;
use serde::Serialize;

/// A group as the IdP reports it: a name, and for Entra/Zitadel-style objects an id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdpGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The groups the IdP reported at sign-in or refresh: the claim at `path` in the
/// ID token, or else in userinfo. `None` when neither has it.
pub fn reported_groups(id_token: &Claims, userinfo: Option<&Claims>, path: &str) -> Option<Vec<IdpGroup>> {
    idp_groups(id_token, path).or_else(|| userinfo.and_then(|u| idp_groups(u, path)))
}

/// What an IdP said of a user's groups at sign-in or refresh.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupsReport {
    Groups(Vec<IdpGroup>),
    /// The claim is elsewhere (OIDC Core §5.6.2 distributed claims: `_claim_names`
    /// names it; Entra ID's `hasgroups`): too many groups to carry, not none.
    Elsewhere,
    /// No claim at all.
    Absent,
}

/// The groups claim at `path` in the ID token or userinfo, or why there is none.
pub fn groups_report(id_token: &Claims, userinfo: Option<&Claims>, path: &str) -> GroupsReport {
    if let Some(groups) = reported_groups(id_token, userinfo, path) {
        return GroupsReport::Groups(groups);
    }
    let claim = top_claim(path);
    let elsewhere = |c: &Claims| distributed_source(c, claim).is_some() || c.get("hasgroups") == Some(&Value::Bool(true));
    if elsewhere(id_token) || userinfo.is_some_and(elsewhere) {
        GroupsReport::Elsewhere
    } else {
        GroupsReport::Absent
    }
}

/// The claim a dotted path starts at (`realm_access` of `realm_access.roles`).
pub fn top_claim(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// What `claims` gives in `_claim_names` for `claim` (OIDC Core §5.6.2: the name of
/// its source), if anything.
pub fn distributed_source<'c>(claims: &'c Claims, claim: &str) -> Option<&'c Value> {
    claims.get("_claim_names")?.get(claim)
}

/// The groups claim at `path` (dotted for nested claims, e.g. `realm_access.roles`):
/// an array of strings, a single string, or an array of `{id, displayName}` objects.
/// `None` when the claim is absent (so userinfo may be consulted); unusable entries
/// are skipped.
pub fn idp_groups(claims: &Claims, path: &str) -> Option<Vec<IdpGroup>> {
    let mut segments = path.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.get(segment)?;
    }
    let one = |v: &Value| -> Option<IdpGroup> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(IdpGroup { name: s.trim().to_owned(), id: None }),
            Value::Object(o) => {
                let id = o.get("id").and_then(Value::as_str).map(str::to_owned);
                let name = o.get("displayName").or_else(|| o.get("name")).and_then(Value::as_str).map(str::to_owned);
                match (name, id) {
                    (Some(name), id) => Some(IdpGroup { name, id }),
                    (None, Some(id)) => Some(IdpGroup { name: id.clone(), id: Some(id) }),
                    (None, None) => None,
                }
            }
            _ => None,
        }
    };
    Some(match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    })
}

/// The outcome of applying the rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The ssogate groups the user belongs to, by name.
    pub groups: BTreeSet<String>,
    /// Groups to create first (`create_missing_groups`), as custom groups without permissions.
    pub to_create: BTreeSet<String>,
    /// No IdP group led anywhere: `groups` is the fallback `end-user` alone.
    pub fell_back: bool,
}

pub const FALLBACK_GROUP: &str = "end-user";

/// Applies the rules: an IdP group named in the mapping (by name or id) goes where the
/// mapping says; otherwise it joins the ssogate group of exactly the same name, which
/// is created when missing if `create_missing` allows, and is ignored if not. The
/// default groups match in any case (`Admin` is `admin`, as ToolJet does); others
/// exactly. A user in no group lands in `end-user`. Mapping targets are created when
/// missing too, if allowed.
pub fn resolve(idp: &[IdpGroup], mapping: &GroupMapping, existing: &HashSet<&str>, create_missing: bool) -> Resolution {
    let mut r = Resolution::default();
    let place = |name: &str, r: &mut Resolution| {
        let name = DEFAULT_GROUPS.iter().find(|d| d.eq_ignore_ascii_case(name)).copied().unwrap_or(name);
        if existing.contains(name) {
            r.groups.insert(name.to_owned());
        } else if create_missing {
            r.groups.insert(name.to_owned());
            r.to_create.insert(name.to_owned());
        }
    };
    for g in idp {
        match mapping.targets(&g.name, g.id.as_deref()) {
            Some(targets) => targets.into_iter().for_each(|t| place(t, &mut r)),
            None => place(&g.name, &mut r),
        }
    }
    if r.groups.is_empty() {
        r.groups.insert(FALLBACK_GROUP.to_owned());
        r.fell_back = true;
    }
    r
}

/// A connection's group-sync settings, ready to apply to any number of users.
pub struct SyncRules {
    mapping: GroupMapping,
    create_missing: bool,
}

impl SyncRules {
    /// The mapping was validated when saved; should it not parse now, groups sync by
    /// name only.
    pub fn of(settings: &GroupSync) -> Self {
        SyncRules { mapping: GroupMapping::parse(&settings.mapping).unwrap_or_default(), create_missing: settings.create_missing_groups }
    }

    pub fn resolve(&self, idp: &[IdpGroup], existing: &HashSet<&str>) -> Resolution {
        resolve(idp, &self.mapping, existing, self.create_missing)
    }
}

/// A background re-application of group sync to a connection's users.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyncJob {
    pub id: String,
    pub organization_id: String,
    pub connection_id: String,
    /// What changed (e.g. `connection.updated`, `group.created`).
    pub reason: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// Users to re-sync, and how many are done.
    pub total: u64,
    pub done: u64,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::roles::{derive_role, Role};
    use serde_json::json;

    fn names(groups: &[&str]) -> Vec<IdpGroup> {
        groups.iter().map(|g| IdpGroup { name: g.to_string(), id: None }).collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// The organization's groups for the examples: defaults plus optional extras, with
    /// their permissions.
    fn role(groups: &BTreeSet<String>, perms: &[(&str, &[&str])]) -> Role {
        let owned: Vec<(String, bool, Vec<String>)> = groups
            .iter()
            .map(|g| {
                let is_default = ["admin", "builder", "end-user"].contains(&g.as_str());
                let p = perms.iter().find(|(n, _)| n == g).map(|(_, p)| p.iter().map(|s| s.to_string()).collect()).unwrap_or_default();
                (g.clone(), is_default, p)
            })
            .collect();
        derive_role(owned.iter().map(|(n, d, p)| (n.as_str(), *d, p.as_slice())))
    }

    const DEFAULTS: [&str; 3] = ["admin", "builder", "end-user"];

    fn existing<'a>(extra: &[&'a str]) -> HashSet<&'a str> {
        DEFAULTS.iter().copied().chain(extra.iter().copied()).collect()
    }

    #[test]
    fn the_documented_examples_hold() {
        let none = GroupMapping::default();
        // IdP admin, builder, end-user with no mapping: the default groups.
        let r = resolve(&names(&["admin", "builder", "end-user"]), &none, &existing(&[]), false);
        assert_eq!(r.groups, set(&["admin", "builder", "end-user"]));
        // engineers exists without permissions: engineers + end-user role.
        let r = resolve(&names(&["engineers"]), &none, &existing(&["engineers"]), false);
        assert_eq!(r.groups, set(&["engineers"]));
        assert_eq!(role(&r.groups, &[]), Role::EndUser);
        // engineers exists with manage_apps: builder.
        assert_eq!(role(&r.groups, &[("engineers", &["manage_apps"])]), Role::Builder);
        // engineers missing, mapped to an existing `all apps`: all apps (+ its permissions' role).
        let m = GroupMapping::parse("engineers -> all apps").unwrap();
        let r = resolve(&names(&["engineers"]), &m, &existing(&["all apps"]), false);
        assert_eq!(r.groups, set(&["all apps"]));
        assert_eq!(role(&r.groups, &[("all apps", &["manage_apps"])]), Role::Builder);
        // Mapped to builder: builder.
        let m = GroupMapping::parse("engineers -> builder").unwrap();
        let r = resolve(&names(&["engineers"]), &m, &existing(&[]), false);
        assert_eq!(r.groups, set(&["builder"]));
        assert_eq!(role(&r.groups, &[]), Role::Builder);
        // IdP admin and `all apps`: both, role admin.
        let r = resolve(&names(&["admin", "all apps"]), &none, &existing(&["all apps"]), false);
        assert_eq!(r.groups, set(&["admin", "all apps"]));
        assert_eq!(role(&r.groups, &[]), Role::Admin);
        // No groups at all: end-user.
        let r = resolve(&[], &none, &existing(&[]), false);
        assert_eq!(r.groups, set(&["end-user"]));
        assert!(r.fell_back);
        let r = resolve(&names(&["end-user"]), &none, &existing(&[]), false);
        assert!(!r.fell_back, "end-user named by the IdP");
    }

    #[test]
    fn default_group_names_match_in_any_case() {
        let none = GroupMapping::default();
        let r = resolve(&names(&["Admin", "BUILDER", "End-User"]), &none, &existing(&[]), true);
        assert_eq!(r.groups, set(&["admin", "builder", "end-user"]));
        assert!(r.to_create.is_empty(), "no look-alike default groups are created");
        let m = GroupMapping::parse("Engineering -> Builder").unwrap();
        assert_eq!(resolve(&names(&["Engineering"]), &m, &existing(&[]), true).groups, set(&["builder"]));
    }

    #[test]
    fn missing_groups_are_created_only_when_allowed_and_names_are_case_sensitive() {
        let none = GroupMapping::default();
        let r = resolve(&names(&["Engineers", "ops"]), &none, &existing(&["engineers"]), false);
        assert_eq!(r.groups, set(&["end-user"]), "no exact match, nothing created");
        let r = resolve(&names(&["Engineers", "ops"]), &none, &existing(&["engineers"]), true);
        assert_eq!(r.groups, set(&["Engineers", "ops"]));
        assert_eq!(r.to_create, set(&["Engineers", "ops"]));
    }

    #[test]
    fn one_idp_group_to_several_and_by_id() {
        let m = GroupMapping::parse("6f1c-aa -> marketing, 6f1c-aa -> builder").unwrap();
        let groups = vec![IdpGroup { name: "Marketing (EU)".into(), id: Some("6f1c-aa".into()) }];
        let r = resolve(&groups, &m, &existing(&["marketing"]), false);
        assert_eq!(r.groups, set(&["builder", "marketing"]));
    }

    #[test]
    fn claims_in_all_three_shapes_and_nested() {
        let claims = json!({
            "groups": ["a", " b ", "", 7],
            "group": "solo",
            "entra": [{"id": "g-1", "displayName": "Sales"}, {"id": "g-2"}, {"foo": 1}],
            "realm_access": {"roles": ["admin"]},
        });
        let c = claims.as_object().unwrap();
        assert_eq!(idp_groups(c, "groups").unwrap(), names(&["a", "b"]));
        assert_eq!(idp_groups(c, "group").unwrap(), names(&["solo"]));
        assert_eq!(
            idp_groups(c, "entra").unwrap(),
            vec![IdpGroup { name: "Sales".into(), id: Some("g-1".into()) }, IdpGroup { name: "g-2".into(), id: Some("g-2".into()) }]
        );
        assert_eq!(idp_groups(c, "realm_access.roles").unwrap(), names(&["admin"]));
        assert_eq!(idp_groups(c, "missing"), None);
        assert_eq!(groups_report(c, None, "groups"), GroupsReport::Groups(names(&["a", "b"])));
        assert_eq!(groups_report(c, None, "missing"), GroupsReport::Absent);
        let overage = json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.example/x"}}});
        assert_eq!(groups_report(&Claims::new(), overage.as_object(), "groups"), GroupsReport::Elsewhere);
        assert_eq!(groups_report(overage.as_object().unwrap(), None, "roles"), GroupsReport::Absent);
        let implicit = json!({"hasgroups": true});
        assert_eq!(groups_report(implicit.as_object().unwrap(), None, "groups"), GroupsReport::Elsewhere);
        assert_eq!(idp_groups(c, "realm_access.nothing"), None);
    }
}
