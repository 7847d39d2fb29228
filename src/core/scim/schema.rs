//! The SCIM schemas ssogate serves (RFC 7643 §4 and §8.7): one table per resource
//! that drives everything else — reading input (attribute names are
//! case-insensitive, §2.1), typing values, what a client may change (mutability),
//! which comparisons are case-exact in filters, and the `/Schemas` endpoint.

use serde_json::{json, Map, Value};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Reference,
    DateTime,
    Complex,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::Reference => "reference",
            Kind::DateTime => "dateTime",
            Kind::Complex => "complex",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
    /// Accepted and never stored or returned (`password`: ssogate authenticates
    /// nobody with one).
    WriteOnly,
}

/// One attribute of a schema.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub required: bool,
    pub sub: &'static [Attr],
}

const fn attr(name: &'static str) -> Attr {
    Attr { name, kind: Kind::String, multi: false, case_exact: false, mutability: Mutability::ReadWrite, required: false, sub: &[] }
}

const fn complex(name: &'static str, sub: &'static [Attr]) -> Attr {
    Attr { kind: Kind::Complex, sub, ..attr(name) }
}

const fn multi(name: &'static str, sub: &'static [Attr]) -> Attr {
    Attr { kind: Kind::Complex, multi: true, sub, ..attr(name) }
}

const fn boolean(name: &'static str) -> Attr {
    Attr { kind: Kind::Boolean, ..attr(name) }
}

const fn reference(name: &'static str) -> Attr {
    Attr { kind: Kind::Reference, case_exact: true, ..attr(name) }
}

const fn read_only(a: Attr) -> Attr {
    Attr { mutability: Mutability::ReadOnly, ..a }
}

/// `value`, `display`, `type`, `primary`: the shape of most multi-valued attributes.
const PLURAL: &[Attr] = &[attr("value"), attr("display"), attr("type"), boolean("primary")];
const MEMBER: &[Attr] = &[Attr { case_exact: true, ..attr("value") }, reference("$ref"), attr("display"), attr("type")];

pub const USER_ATTRS: &[Attr] = &[
    Attr { required: true, ..attr("userName") },
    complex(
        "name",
        &[attr("formatted"), attr("familyName"), attr("givenName"), attr("middleName"), attr("honorificPrefix"), attr("honorificSuffix")],
    ),
    attr("displayName"),
    attr("nickName"),
    reference("profileUrl"),
    attr("title"),
    attr("userType"),
    attr("preferredLanguage"),
    attr("locale"),
    attr("timezone"),
    boolean("active"),
    Attr { mutability: Mutability::WriteOnly, case_exact: true, ..attr("password") },
    multi("emails", PLURAL),
    multi("phoneNumbers", PLURAL),
    multi("ims", PLURAL),
    multi("photos", PLURAL),
    multi(
        "addresses",
        &[
            attr("formatted"),
            attr("streetAddress"),
            attr("locality"),
            attr("region"),
            attr("postalCode"),
            attr("country"),
            attr("type"),
            boolean("primary"),
        ],
    ),
    read_only(multi("groups", MEMBER)),
    multi("entitlements", PLURAL),
    multi("roles", PLURAL),
    multi("x509Certificates", PLURAL),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    attr("employeeNumber"),
    attr("costCenter"),
    attr("organization"),
    attr("division"),
    attr("department"),
    complex("manager", &[Attr { case_exact: true, ..attr("value") }, reference("$ref"), read_only(attr("displayName"))]),
];

pub const GROUP_ATTRS: &[Attr] = &[Attr { required: true, ..attr("displayName") }, multi("members", MEMBER)];

/// Attributes every resource has (RFC 7643 §3.1).
pub const COMMON_ATTRS: &[Attr] = &[
    read_only(Attr { case_exact: true, ..attr("id") }),
    Attr { case_exact: true, ..attr("externalId") },
    read_only(complex(
        "meta",
        &[
            attr("resourceType"),
            Attr { kind: Kind::DateTime, ..attr("created") },
            Attr { kind: Kind::DateTime, ..attr("lastModified") },
            reference("location"),
            Attr { case_exact: true, ..attr("version") },
        ],
    )),
];

/// The resource types ssogate serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    User,
    Group,
}

impl ResourceType {
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::User => "User",
            ResourceType::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceType::User => "Users",
            ResourceType::Group => "Groups",
        }
    }

    pub fn schema(self) -> &'static str {
        match self {
            ResourceType::User => USER,
            ResourceType::Group => GROUP,
        }
    }

    pub fn attrs(self) -> &'static [Attr] {
        match self {
            ResourceType::User => USER_ATTRS,
            ResourceType::Group => GROUP_ATTRS,
        }
    }

    /// Schema extensions the resource may carry, each as a top-level object.
    pub fn extensions(self) -> &'static [(&'static str, &'static [Attr])] {
        match self {
            ResourceType::User => &[(ENTERPRISE_USER, ENTERPRISE_ATTRS)],
            ResourceType::Group => &[],
        }
    }
}

/// The attribute of `attrs` named `name`, in any case.
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Where an attribute path of a resource leads: the schema it belongs to (`None`:
/// the core schema) and its definition.
pub fn lookup(rt: ResourceType, uri: Option<&str>, name: &str) -> Option<(Option<&'static str>, &'static Attr)> {
    match uri {
        None => find(rt.attrs(), name).or_else(|| find(COMMON_ATTRS, name)).map(|a| (None, a)),
        Some(u) if u.eq_ignore_ascii_case(rt.schema()) => lookup(rt, None, name),
        Some(u) => {
            let (urn, attrs) = rt.extensions().iter().find(|(urn, _)| urn.eq_ignore_ascii_case(u))?;
            find(attrs, name).map(|a| (Some(*urn), a))
        }
    }
}

fn describe(a: &Attr) -> Value {
    let mutability = match a.mutability {
        Mutability::ReadWrite => "readWrite",
        Mutability::ReadOnly => "readOnly",
        Mutability::Immutable => "immutable",
        Mutability::WriteOnly => "writeOnly",
    };
    let returned = match (a.mutability, a.name) {
        (Mutability::WriteOnly, _) => "never",
        (_, "id") => "always",
        _ => "default",
    };
    let uniqueness = if matches!(a.name, "userName" | "id") { "server" } else { "none" };
    let mut d = json!({
        "name": a.name,
        "type": a.kind.as_str(),
        "multiValued": a.multi,
        "description": a.name,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    });
    if a.kind == Kind::Reference {
        d["referenceTypes"] = json!(["external", "uri"]);
    }
    if !a.sub.is_empty() {
        d["subAttributes"] = Value::Array(a.sub.iter().map(describe).collect());
    }
    d
}

/// The `/Schemas` representation of each schema (RFC 7643 §7).
pub fn schemas() -> Vec<Value> {
    let one = |id: &str, name: &str, attrs: &[Attr]| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id,
            "name": name,
            "description": format!("{name} resources"),
            "attributes": attrs.iter().map(describe).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("/Schemas/{id}")},
        })
    };
    vec![one(USER, "User", USER_ATTRS), one(ENTERPRISE_USER, "EnterpriseUser", ENTERPRISE_ATTRS), one(GROUP, "Group", GROUP_ATTRS)]
}

/// The `/ResourceTypes` representation (RFC 7643 §6).
pub fn resource_types() -> Vec<Value> {
    [ResourceType::User, ResourceType::Group]
        .into_iter()
        .map(|rt| {
            let extensions: Vec<Value> = rt.extensions().iter().map(|(urn, _)| json!({"schema": urn, "required": false})).collect();
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": rt.name(),
                "name": rt.name(),
                "endpoint": format!("/{}", rt.endpoint()),
                "description": format!("{} resources", rt.name()),
                "schema": rt.schema(),
                "schemaExtensions": extensions,
                "meta": {"resourceType": "ResourceType", "location": format!("/ResourceTypes/{}", rt.name())},
            })
        })
        .collect()
}

/// What the service provider supports (RFC 7643 §5), as configured.
pub fn service_provider_config(max_results: u32, max_operations: u32) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/ssogate/ssogate/blob/main/docs/directory-sync.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": max_operations, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The directory's bearer token, shown once when the directory is created or its token rotated.",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": "/ServiceProviderConfig"},
    })
}

/// The object of `map` under `key` in any case, if any.
pub fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_in_any_case_and_through_schema_urns() {
        assert_eq!(lookup(ResourceType::User, None, "USERNAME").map(|(_, a)| a.name), Some("userName"));
        assert_eq!(lookup(ResourceType::User, Some(USER), "emails").map(|(_, a)| a.multi), Some(true));
        let (urn, a) = lookup(ResourceType::User, Some(&ENTERPRISE_USER.to_uppercase()), "department").unwrap();
        assert_eq!((urn, a.name), (Some(ENTERPRISE_USER), "department"));
        assert!(lookup(ResourceType::Group, Some(ENTERPRISE_USER), "department").is_none());
        assert_eq!(lookup(ResourceType::Group, None, "externalid").map(|(_, a)| a.case_exact), Some(true));
    }

    #[test]
    fn schemas_describe_every_attribute_with_its_rules() {
        let s = schemas();
        let user = &s[0];
        let password = user["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "password").unwrap();
        assert_eq!((password["returned"].as_str(), password["mutability"].as_str()), (Some("never"), Some("writeOnly")));
        let groups = user["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "groups").unwrap();
        assert_eq!(groups["mutability"], "readOnly");
        assert_eq!(resource_types()[0]["schemaExtensions"][0]["schema"], ENTERPRISE_USER);
    }
}
