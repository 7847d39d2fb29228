//! Role derivation: a user's role follows from the groups they are in.

use serde::{Deserialize, Serialize};

/// Roles in priority order (`Admin` outranks `Builder` outranks `EndUser`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    EndUser,
    Builder,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Builder => "builder",
            Role::EndUser => "end-user",
        }
    }
}

/// The three groups every organization has; their names are the role names.
pub const DEFAULT_GROUPS: [&str; 3] = ["admin", "builder", "end-user"];

/// Permissions that make a custom group's members builders.
pub const BUILDER_PERMISSIONS: [&str; 2] = ["manage_apps", "manage_users"];
/// The permission that makes a custom group's members admins.
pub const ADMIN_PERMISSION: &str = "admin";

/// The role granted by membership of one group.
pub fn role_of_group(name: &str, is_default: bool, permissions: &[String]) -> Role {
    if is_default {
        return match name {
            "admin" => Role::Admin,
            "builder" => Role::Builder,
            _ => Role::EndUser,
        };
    }
    if permissions.iter().any(|p| p == ADMIN_PERMISSION) {
        Role::Admin
    } else if permissions.iter().any(|p| BUILDER_PERMISSIONS.contains(&p.as_str())) {
        Role::Builder
    } else {
        Role::EndUser
    }
}

/// A user's role: the highest any of their groups grants; `end-user` with no groups.
pub fn derive_role<'a>(groups: impl IntoIterator<Item = (&'a str, bool, &'a [String])>) -> Role {
    groups.into_iter().map(|(name, is_default, perms)| role_of_group(name, is_default, perms)).max().unwrap_or(Role::EndUser)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admin_outranks_builder_outranks_end_user() {
        let none = perms(&[]);
        assert_eq!(derive_role([("end-user", true, none.as_slice())]), Role::EndUser);
        assert_eq!(derive_role([("builder", true, none.as_slice()), ("end-user", true, none.as_slice())]), Role::Builder);
        assert_eq!(derive_role([("admin", true, none.as_slice()), ("builder", true, none.as_slice())]), Role::Admin);
        assert_eq!(derive_role(std::iter::empty()), Role::EndUser);
    }

    #[test]
    fn custom_group_permissions_grant_more_than_the_default_role() {
        let none = perms(&[]);
        let apps = perms(&["manage_apps"]);
        let reports = perms(&["reports:read"]);
        assert_eq!(derive_role([("engineers", false, none.as_slice())]), Role::EndUser);
        assert_eq!(derive_role([("engineers", false, apps.as_slice()), ("end-user", true, none.as_slice())]), Role::Builder);
        assert_eq!(derive_role([("analysts", false, reports.as_slice())]), Role::EndUser);
        // A custom group named like a default one grants nothing by its name.
        assert_eq!(derive_role([("admin", false, none.as_slice())]), Role::EndUser);
    }

    #[test]
    fn role_names_serialise_as_documented() {
        assert_eq!(serde_json::to_string(&Role::EndUser).unwrap(), "\"end-user\"");
        assert_eq!(Role::Builder.as_str(), "builder");
    }
}
