//! Groups: named sets of users in an organization, carrying permissions.

use serde::{Deserialize, Serialize};

use super::error::{Validated, ValidationError};
use super::{patch, validate, Timestamp};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    /// One of the three built-in groups (`admin`, `builder`, `end-user`).
    pub is_default: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    pub description: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug)]
pub struct NewGroup {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
}

impl CreateGroup {
    pub fn validate(self) -> Validated<NewGroup> {
        Ok(NewGroup {
            name: validate::group_name("name", &self.name)?,
            description: self.description.as_deref().map(|d| validate::description("description", d)).transpose()?,
            permissions: validate::permissions("permissions", &self.permissions)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    #[serde(default, deserialize_with = "patch::present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::present")]
    pub permissions: Option<Vec<String>>,
}

impl UpdateGroup {
    pub fn apply(self, g: &mut Group) -> Validated<()> {
        if let Some(v) = &self.name {
            let name = validate::group_name("name", v)?;
            if g.is_default && name != g.name {
                return Err(ValidationError::new("name", "the default groups admin, builder and end-user cannot be renamed"));
            }
            g.name = name;
        }
        if let Some(v) = self.description {
            g.description = v.as_deref().map(|d| validate::description("description", d)).transpose()?;
        }
        if let Some(v) = &self.permissions {
            g.permissions = validate::permissions("permissions", v)?;
        }
        Ok(())
    }
}
