//! Resources as clients send them and as ssogate keeps and returns them.
//!
//! Input is read against the schema table ([`super::schema`]): attribute names in
//! any case become the schema's spelling; `"True"`/`"False"` strings (as Entra ID
//! sends them) become booleans; a lone value of a multi-valued attribute becomes a
//! one-element list; `null` means unassigned (RFC 7643 §2.5). Read-only attributes
//! (`id`, `meta`, `groups`) are ignored on input (RFC 7644 §3.3), `password` is
//! never kept, and attributes of no schema are dropped.

use serde_json::{Map, Value};

use super::schema::{self, Attr, Kind, Mutability, ResourceType};
use super::{ScimError, ScimResult};
use crate::core::validate;

/// The resource's attributes in their schema's spelling (without `id` and `meta`).
pub type Attributes = Map<String, Value>;

/// Most values a multi-valued attribute of a user may have (`emails`, `roles`, …).
pub const MAX_VALUES: usize = 100;
/// Largest resource kept, as JSON (group members are kept apart).
pub const MAX_RESOURCE_BYTES: usize = 64 * 1024;

/// Reads a resource body (POST or PUT).
pub fn read(rt: ResourceType, body: &Value) -> ScimResult<Attributes> {
    let Value::Object(input) = body else {
        return Err(ScimError::invalid(super::ScimType::InvalidSyntax, "the body must be a JSON object"));
    };
    let mut out = Map::new();
    for (key, value) in input {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some((urn, attrs)) = rt.extensions().iter().find(|(urn, _)| urn.eq_ignore_ascii_case(key)) {
            let Value::Object(ext) = value else { return Err(ScimError::value(format!("`{urn}` must be an object"))) };
            let mut read_ext = Map::new();
            for (k, v) in ext {
                if let Some(a) = schema::find(attrs, k) {
                    put(&mut read_ext, a, v, urn)?;
                }
            }
            if !read_ext.is_empty() {
                out.insert((*urn).to_owned(), Value::Object(read_ext));
            }
            continue;
        }
        if let Some((None, a)) = schema::lookup(rt, None, key) {
            put(&mut out, a, value, "")?;
        }
    }
    let size = out.iter().filter(|(k, _)| k.as_str() != "members").map(|(k, v)| k.len() + v.to_string().len()).sum::<usize>();
    if size > MAX_RESOURCE_BYTES {
        return Err(ScimError::value(format!("the resource is larger than {MAX_RESOURCE_BYTES} bytes")));
    }
    Ok(out)
}

/// Sets attribute `a` in `map` to `value` read against its definition (or removes
/// it for `null`); read-only and write-only attributes are left out.
pub fn put(map: &mut Map<String, Value>, a: &Attr, value: &Value, parent: &str) -> ScimResult<()> {
    if matches!(a.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
        return Ok(());
    }
    match typed(a, value, parent)? {
        Some(v) => map.insert(a.name.to_owned(), v),
        None => map.remove(a.name),
    };
    Ok(())
}

fn path_of(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}:{name}")
    }
}

/// `value` as attribute `a` holds it; `None` for unassigned.
pub fn typed(a: &Attr, value: &Value, parent: &str) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if a.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        // Group members are bounded by the request size; a user's lists by this.
        if a.name != "members" && items.len() > MAX_VALUES {
            return Err(ScimError::value(format!("`{}` has more than {MAX_VALUES} values", path_of(parent, a.name))));
        }
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = single(a, item, parent)? {
                if seen.insert(v.to_string()) {
                    out.push(v);
                }
            }
        }
        return Ok(if out.is_empty() { None } else { Some(Value::Array(out)) });
    }
    single(a, value, parent)
}

fn single(a: &Attr, value: &Value, parent: &str) -> ScimResult<Option<Value>> {
    let wrong = |what: &str| ScimError::value(format!("`{}` must be {what}", path_of(parent, a.name)));
    Ok(match (a.kind, value) {
        (_, Value::Null) => None,
        (Kind::Complex, Value::Object(o)) => {
            let mut out = Map::new();
            for (k, v) in o {
                if let Some(sub) = schema::find(a.sub, k) {
                    put(&mut out, sub, v, &path_of(parent, a.name))?;
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        // A bare value where a complex one is expected is its `value` (Entra ID sends
        // the enterprise `manager` as the manager's id; some clients send emails as
        // strings).
        (Kind::Complex, Value::String(_)) if schema::find(a.sub, "value").is_some() => {
            Some(Value::Object(Map::from_iter([("value".to_owned(), value.clone())])))
        }
        (Kind::Complex, _) => return Err(wrong("an object")),
        (Kind::Boolean, Value::Bool(_)) => Some(value.clone()),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
        (Kind::Boolean, _) => return Err(wrong("true or false")),
        (_, Value::String(s)) => Some(Value::String(s.clone())),
        (_, Value::Number(n)) => Some(Value::String(n.to_string())),
        (_, Value::Bool(b)) => Some(Value::String(b.to_string())),
        (_, _) => return Err(wrong("a string")),
    })
}

/// What a user resource means for the directory's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserFields {
    pub user_name: String,
    pub external_id: Option<String>,
    pub active: bool,
    /// The primary address, else the first work address, else the first.
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl UserFields {
    pub fn of(attrs: &Attributes) -> ScimResult<Self> {
        let user_name = text(attrs, "userName").ok_or_else(|| ScimError::value("`userName` is required"))?;
        let user_name = validate::opaque("userName", &user_name, 256).map_err(|e| ScimError::value(e.to_string()))?;
        let emails: Vec<&Map<String, Value>> =
            attrs.get("emails").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_object).collect()).unwrap_or_default();
        let pick = emails
            .iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| emails.iter().find(|e| e.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("work"))))
            .or_else(|| emails.first());
        let email = match pick.and_then(|e| text(e, "value")) {
            Some(e) => Some(validate::email("emails", &e).map_err(|e| ScimError::value(e.to_string()))?),
            None => None,
        };
        let name = attrs.get("name").and_then(Value::as_object);
        let name_part = |key: &str| -> ScimResult<Option<String>> {
            name.and_then(|n| text(n, key))
                .map(|v| validate::name(&format!("name.{key}"), &v).map_err(|e| ScimError::value(e.to_string())))
                .transpose()
        };
        Ok(UserFields {
            user_name,
            external_id: text(attrs, "externalId"),
            active: attrs.get("active").and_then(Value::as_bool).unwrap_or(true),
            email,
            first_name: name_part("givenName")?,
            last_name: name_part("familyName")?,
        })
    }
}

/// What a group resource means: its name, and its members (user ids) apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
}

impl GroupFields {
    pub fn of(attrs: &Attributes) -> ScimResult<Self> {
        let display_name = text(attrs, "displayName").ok_or_else(|| ScimError::value("`displayName` is required"))?;
        if display_name.chars().count() > 256 {
            return Err(ScimError::value("`displayName` is longer than 256 characters"));
        }
        Ok(GroupFields { display_name, external_id: text(attrs, "externalId") })
    }
}

/// A member of a group as the client sent it: its `value` (the member's id), and
/// the whole entry (`value`, `display`, `type`, `$ref`), returned as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub value: String,
    pub entry: Value,
}

impl Member {
    pub fn of(value: &str, entry: Value) -> Self {
        Member { value: value.to_owned(), entry }
    }
}

/// Members of a group from a value: a list of `{value, …}` objects, one object, or bare ids.
pub fn members(value: &Value) -> ScimResult<Vec<Member>> {
    let Some(a) = schema::find(schema::GROUP_ATTRS, "members") else { return Ok(vec![]) };
    let typed = typed(a, value, "")?.unwrap_or(Value::Array(vec![]));
    let list = typed.as_array().cloned().unwrap_or_default();
    list.into_iter()
        .map(|entry| match entry.get("value").and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Member { value: v.to_owned(), entry: entry.clone() }),
            None => Err(ScimError::value("each member needs a `value`")),
        })
        .collect()
}

/// Takes the members out of a group's attributes: they are kept as memberships,
/// not as part of the resource.
pub fn take_members(attrs: &mut Attributes) -> ScimResult<Vec<Member>> {
    attrs.remove("members").as_ref().map(members).transpose().map(Option::unwrap_or_default)
}

/// The times and version of a stored resource.
#[derive(Clone, Debug)]
pub struct Meta {
    pub created: String,
    pub last_modified: String,
    pub version: i64,
    pub location: String,
}

impl Meta {
    /// The weak ETag of the version (RFC 7644 §3.14).
    pub fn etag(&self) -> String {
        etag(self.version)
    }
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The resource as returned: schemas, id, the attributes, meta.
pub fn render(rt: ResourceType, id: &str, attrs: &Attributes, meta: &Meta) -> Value {
    let mut out = Map::new();
    let mut schemas = vec![Value::String(rt.schema().to_owned())];
    schemas.extend(rt.extensions().iter().filter(|(urn, _)| attrs.contains_key(*urn)).map(|(urn, _)| Value::String((*urn).to_owned())));
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(id.to_owned()));
    out.extend(attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.insert(
        "meta".into(),
        serde_json::json!({
            "resourceType": rt.name(),
            "created": meta.created,
            "lastModified": meta.last_modified,
            "location": meta.location,
            "version": meta.etag(),
        }),
    );
    Value::Object(out)
}

/// A list response (RFC 7644 §3.4.2): `resources` are the page starting at the
/// 1-based `start` of `total` matches.
pub fn list_response(total: u64, start: u64, resources: Vec<Value>) -> Value {
    serde_json::json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// An attribute named in `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The top-level key: a core attribute's name or an extension's URN.
    top: String,
    /// Below it: the attribute of an extension, or a core attribute's sub-attribute.
    below: Option<String>,
}

/// Parses a comma-separated attribute list; unknown attributes are ignored.
pub fn selection(rt: ResourceType, list: &str) -> Vec<Selected> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).filter_map(|path| selected(rt, path)).collect()
}

fn selected(rt: ResourceType, path: &str) -> Option<Selected> {
    let (uri, rest) = match path.rsplit_once(':') {
        Some((uri, rest)) if path.to_ascii_lowercase().starts_with("urn:") => (Some(uri), rest),
        _ => (None, path),
    };
    // `urn:…:enterprise:2.0:User` alone names the whole extension.
    if let Some((urn, _)) = rt.extensions().iter().find(|(urn, _)| urn.eq_ignore_ascii_case(path)) {
        return Some(Selected { top: (*urn).to_owned(), below: None });
    }
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let (urn, a) = schema::lookup(rt, uri, name)?;
    Some(match urn {
        Some(urn) => Selected { top: urn.to_owned(), below: Some(a.name.to_owned()) },
        None => {
            let sub = sub.and_then(|s| schema::find(a.sub, s)).map(|s| s.name.to_owned());
            Selected { top: a.name.to_owned(), below: sub }
        }
    })
}

/// Keeps only what `attributes` asks for, or drops what `excluded` names; `id` and
/// `schemas` are always returned.
pub fn project(resource: Value, attributes: &[Selected], excluded: &[Selected]) -> Value {
    let Value::Object(mut map) = resource else { return resource };
    let always = ["id", "schemas"];
    if !attributes.is_empty() {
        let mut kept = Map::new();
        for (k, v) in map {
            if always.contains(&k.as_str()) {
                kept.insert(k, v);
                continue;
            }
            let wanted: Vec<&Selected> = attributes.iter().filter(|s| s.top == k).collect();
            if wanted.is_empty() {
                continue;
            }
            if wanted.iter().any(|s| s.below.is_none()) {
                kept.insert(k, v);
            } else {
                let names: Vec<&str> = wanted.iter().filter_map(|s| s.below.as_deref()).collect();
                kept.insert(k, keep_below(v, &names));
            }
        }
        map = kept;
    }
    for s in excluded {
        match &s.below {
            None if !always.contains(&s.top.as_str()) => {
                map.remove(&s.top);
            }
            None => {}
            Some(below) => {
                if let Some(v) = map.get_mut(&s.top) {
                    drop_below(v, below);
                }
            }
        }
    }
    Value::Object(map)
}

fn keep_below(v: Value, names: &[&str]) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(k, _)| names.contains(&k.as_str())).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(|i| keep_below(i, names)).collect()),
        other => other,
    }
}

fn drop_below(v: &mut Value, name: &str) {
    match v {
        Value::Object(o) => {
            o.remove(name);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| drop_below(i, name)),
        _ => {}
    }
}

/// Whether a request's selection leaves out the group's members (Entra ID lists
/// groups with `excludedAttributes=members`), so they need not be loaded.
pub fn wants_members(attributes: &[Selected], excluded: &[Selected]) -> bool {
    let names_members = |s: &Selected| s.top == "members";
    if !attributes.is_empty() {
        return attributes.iter().any(names_members);
    }
    !excluded.iter().any(|s| names_members(s) && s.below.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_is_read_against_the_schema() {
        let body = json!({
            "schemas": [schema::USER],
            "USERNAME": "ada@example.com",
            "Active": "False",
            "name": {"GivenName": "Ada", "familyname": "Lovelace", "nickname": "dropped"},
            "emails": {"value": "ada@example.com", "type": "work", "primary": "true"},
            "password": "hunter2",
            "id": "chosen-by-client",
            "groups": [{"value": "g1"}],
            "favouriteColour": "blue",
            "title": null,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "Eng", "manager": "user_boss"},
        });
        let attrs = read(ResourceType::User, &body).unwrap();
        assert_eq!(
            Value::Object(attrs.clone()),
            json!({
                "userName": "ada@example.com",
                "active": false,
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
                schema::ENTERPRISE_USER: {"department": "Eng", "manager": {"value": "user_boss"}},
            })
        );
        let fields = UserFields::of(&attrs).unwrap();
        assert_eq!(fields.email.as_deref(), Some("ada@example.com"));
        assert!(!fields.active);
        assert_eq!((fields.first_name.as_deref(), fields.last_name.as_deref()), (Some("Ada"), Some("Lovelace")));
    }

    #[test]
    fn wrong_types_are_invalid_values_naming_the_attribute() {
        let e = read(ResourceType::User, &json!({"userName": "a", "active": "maybe"})).unwrap_err();
        assert_eq!(e.failure, super::super::ScimFailure::Invalid(super::super::ScimType::InvalidValue));
        assert!(e.detail.contains("active"), "{}", e.detail);
        let e = read(ResourceType::User, &json!({"userName": "a", "name": ["x"]})).unwrap_err();
        assert!(e.detail.contains("name"), "{}", e.detail);
        assert!(UserFields::of(&read(ResourceType::User, &json!({"displayName": "x"})).unwrap()).is_err());
        let bad_email = read(ResourceType::User, &json!({"userName": "a", "emails": [{"value": "not an address"}]})).unwrap();
        assert!(UserFields::of(&bad_email).unwrap_err().detail.contains("emails"));
    }

    #[test]
    fn lists_and_resources_are_bounded() {
        let emails: Vec<Value> = (0..=MAX_VALUES).map(|i| json!({"value": format!("u{i}@x.io")})).collect();
        let e = read(ResourceType::User, &json!({"userName": "u", "emails": emails})).unwrap_err();
        assert!(e.detail.contains("emails"), "{}", e.detail);
        let huge = "x".repeat(MAX_RESOURCE_BYTES);
        assert!(read(ResourceType::User, &json!({"userName": "u", "title": huge})).is_err());
        let entries: Vec<Value> = (0..5000).map(|i| json!({"value": format!("u{i}")})).collect();
        let many = members(&Value::Array(entries.iter().chain(entries.iter()).cloned().collect())).unwrap();
        assert_eq!(many.len(), 5000, "members are deduplicated, not bounded by MAX_VALUES");
    }

    #[test]
    fn the_email_is_the_primary_then_work_then_first() {
        let of =
            |emails: Value| UserFields::of(&read(ResourceType::User, &json!({"userName": "u", "emails": emails})).unwrap()).unwrap().email;
        assert_eq!(of(json!([{"value": "a@x.io"}, {"value": "b@x.io", "primary": true}])).as_deref(), Some("b@x.io"));
        assert_eq!(of(json!([{"value": "a@x.io", "type": "home"}, {"value": "w@x.io", "type": "work"}])).as_deref(), Some("w@x.io"));
        assert_eq!(of(json!([{"value": "a@x.io"}])).as_deref(), Some("a@x.io"));
    }

    #[test]
    fn selection_keeps_or_drops_what_is_named() {
        let meta = Meta { created: "c".into(), last_modified: "m".into(), version: 3, location: "l".into() };
        let attrs = read(
            ResourceType::User,
            &json!({"userName": "u", "name": {"givenName": "G", "familyName": "F"}, "emails": [{"value": "a@x.io", "type": "work"}], schema::ENTERPRISE_USER: {"department": "D", "division": "V"}}),
        )
        .unwrap();
        let r = render(ResourceType::User, "user_1", &attrs, &meta);
        assert_eq!(r["meta"]["version"], "W/\"3\"");
        assert_eq!(r["schemas"], json!([schema::USER, schema::ENTERPRISE_USER]));
        let only = project(r.clone(), &selection(ResourceType::User, "userName, name.givenName,emails.value"), &[]);
        assert_eq!(
            only,
            json!({"schemas": [schema::USER, schema::ENTERPRISE_USER], "id": "user_1", "userName": "u", "name": {"givenName": "G"}, "emails": [{"value": "a@x.io"}]})
        );
        let ext = project(r.clone(), &selection(ResourceType::User, &format!("{}:department", schema::ENTERPRISE_USER)), &[]);
        assert_eq!(ext[schema::ENTERPRISE_USER], json!({"department": "D"}));
        let without = project(r, &[], &selection(ResourceType::User, "emails,name.familyName,id,meta"));
        assert!(without.get("emails").is_none() && without.get("meta").is_none());
        assert_eq!((without["id"].as_str(), without["name"].clone()), (Some("user_1"), json!({"givenName": "G"})));
        let members = selection(ResourceType::Group, "members");
        assert!(!wants_members(&[], &members));
        assert!(wants_members(&members, &[]));
        assert!(!wants_members(&selection(ResourceType::Group, "displayName"), &[]));
        assert!(wants_members(&[], &[]));
    }
}
