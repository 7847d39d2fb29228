//! Organizations: the customer tenants, each owning domains, connections, users, groups.

use serde::{Deserialize, Serialize};

use super::error::Validated;
use super::{patch, validate, Timestamp};

/// Which email addresses the organization's identity providers may vouch for. Any
/// organization's IdP can assert any address, so an address outside the
/// organization's own domains is, by default, passed to applications as unverified
/// (else org A's IdP could present `ceo@<org B's domain>` as verified).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailPolicy {
    /// Verified only within the organization's domains.
    #[default]
    Domains,
    /// The organization trusts its IdPs for any domain.
    Any,
    /// Sign-ins with an email outside the organization's domains are refused.
    RequireDomains,
}

impl EmailPolicy {
    /// Whether `email` stays verified for an organization owning `domains`.
    pub fn vouches_for(self, domains: &[String], email: &str) -> bool {
        match self {
            EmailPolicy::Any => true,
            EmailPolicy::Domains | EmailPolicy::RequireDomains => {
                validate::email_domain(email).is_some_and(|d| domains.iter().any(|own| own.eq_ignore_ascii_case(d)))
            }
        }
    }
}

/// Which source sets the group memberships of a user whom both a directory (SCIM)
/// and the groups claim at sign-in speak for. Users no directory knows always
/// follow the groups claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsSource {
    /// The directory: it pushes changes as they happen, so the groups claim is
    /// recorded on the user but changes no membership.
    #[default]
    Directory,
    /// The groups claim at each sign-in and refresh; the directory's groups are kept
    /// (and shown over SCIM) but change no membership.
    SignIn,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub domains: Vec<String>,
    pub email_policy: EmailPolicy,
    pub groups_source: GroupsSource,
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
    #[serde(default)]
    pub email_policy: EmailPolicy,
    #[serde(default)]
    pub groups_source: GroupsSource,
}

/// A validated creation request. `slug_given` tells whether a clash is the caller's
/// to fix (409) or ours to resolve by picking another slug.
#[derive(Debug)]
pub struct NewOrganization {
    pub name: String,
    pub slug: String,
    pub slug_given: bool,
    pub domains: Vec<String>,
    pub email_policy: EmailPolicy,
    pub groups_source: GroupsSource,
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
        Ok(NewOrganization { name, slug, slug_given, domains, email_policy: self.email_policy, groups_source: self.groups_source })
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
    #[serde(default, deserialize_with = "patch::present")]
    pub email_policy: Option<EmailPolicy>,
    #[serde(default, deserialize_with = "patch::present")]
    pub groups_source: Option<GroupsSource>,
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
        if let Some(policy) = self.email_policy {
            org.email_policy = policy;
        }
        if let Some(source) = self.groups_source {
            org.groups_source = source;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, slug: Option<&str>) -> Validated<NewOrganization> {
        CreateOrganization {
            name: name.into(),
            slug: slug.map(Into::into),
            domains: vec![],
            email_policy: EmailPolicy::default(),
            groups_source: GroupsSource::default(),
        }
        .validate()
    }

    #[test]
    fn slug_is_derived_from_the_name_when_absent() {
        let o = create("Acme Corp", None).unwrap();
        assert_eq!((o.slug.as_str(), o.slug_given), ("acme-corp", false));
        assert_eq!(create("日本", None).unwrap().slug, "org");
        assert_eq!(create("X", None).unwrap().slug, "org-x");
    }

    #[test]
    fn emails_are_vouched_for_within_the_organizations_domains() {
        let domains = vec!["acme.com".to_owned()];
        assert!(EmailPolicy::Domains.vouches_for(&domains, "ceo@ACME.com"));
        assert!(!EmailPolicy::Domains.vouches_for(&domains, "ceo@globex.com"));
        assert!(!EmailPolicy::Domains.vouches_for(&domains, "ceo@sub.acme.com"), "a subdomain is another domain");
        assert!(!EmailPolicy::RequireDomains.vouches_for(&domains, "not-an-email"));
        assert!(EmailPolicy::Any.vouches_for(&domains, "ceo@globex.com"));
        assert!(!EmailPolicy::Domains.vouches_for(&[], "ceo@acme.com"));
    }

    #[test]
    fn given_slug_is_validated() {
        assert_eq!(create("Acme", Some("Bad Slug")).unwrap_err().field, "slug");
        assert!(create("Acme", Some("acme")).unwrap().slug_given);
    }
}
