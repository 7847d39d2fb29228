//! Organizations: the customer tenants, each owning domains, connections, users, groups.

use serde::{Deserialize, Serialize};

use super::error::Validated;
use super::{patch, validate, Timestamp};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub domains: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    pub slug: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
}

/// A validated creation request. `slug_given` tells whether a clash is the caller's
/// to fix (409) or ours to resolve by picking another slug.
#[derive(Debug)]
pub struct NewOrganization {
    pub name: String,
    pub slug: String,
    pub slug_given: bool,
    pub domains: Vec<String>,
}

impl CreateOrganization {
    pub fn validate(self) -> Validated<NewOrganization> {
        let name = validate::name("name", &self.name)?;
        let (slug, slug_given) = match &self.slug {
            Some(s) => (validate::slug("slug", s)?, true),
            None => {
                let derived = validate::slugify(&name);
                let slug = if validate::slug("slug", &derived).is_ok() { derived } else { format!("org-{}", derived) };
                (validate::slug("slug", slug.trim_end_matches('-')).unwrap_or_else(|_| "org".into()), false)
            }
        };
        let domains = validate::domains("domains", &self.domains)?;
        Ok(NewOrganization { name, slug, slug_given, domains })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    #[serde(default, deserialize_with = "patch::present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub domains: Option<Vec<String>>,
}

impl UpdateOrganization {
    pub fn apply(self, org: &mut Organization) -> Validated<()> {
        if let Some(name) = &self.name {
            org.name = validate::name("name", name)?;
        }
        if let Some(slug) = &self.slug {
            org.slug = validate::slug("slug", slug)?;
        }
        if let Some(domains) = &self.domains {
            org.domains = validate::domains("domains", domains)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, slug: Option<&str>) -> Validated<NewOrganization> {
        CreateOrganization { name: name.into(), slug: slug.map(Into::into), domains: vec![] }.validate()
    }

    #[test]
    fn slug_is_derived_from_the_name_when_absent() {
        let o = create("Acme Corp", None).unwrap();
        assert_eq!((o.slug.as_str(), o.slug_given), ("acme-corp", false));
        assert_eq!(create("日本", None).unwrap().slug, "org");
        assert_eq!(create("X", None).unwrap().slug, "org-x");
    }

    #[test]
    fn given_slug_is_validated() {
        assert_eq!(create("Acme", Some("Bad Slug")).unwrap_err().field, "slug");
        assert!(create("Acme", Some("acme")).unwrap().slug_given);
    }
}
