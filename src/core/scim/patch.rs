//! SCIM PATCH (RFC 7644 §3.5.2) on a resource's attributes, as real clients send it:
//! - operation names in any case (Entra ID: `"Replace"`), values typed by the schema
//!   (Entra ID: `"active": "False"`);
//! - `add`/`replace` without a path take a map whose keys may themselves be paths
//!   (`"name.givenName"`, `"urn:…:enterprise:2.0:User:department"`); read-only
//!   attributes in such a map are ignored (Okta repeats the group's `id`), while a
//!   path naming one is a `mutability` error;
//! - a filtered path that matches nothing, with `add` or `replace`, adds the
//!   element its equalities describe (Entra ID adds `emails[type eq "work"].value`
//!   to a user without a work address);
//! - a group's `members` are not part of the resource: their changes come back as
//!   [`MemberChange`]s, in order, for the store to apply one by one (Okta adds and
//!   removes in batches; Entra ID removes with a value list or a value filter).

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::filter::element_matches;
use super::resource::{members, typed, Attributes, Member};
use super::schema::{self, Attr, Kind, Mutability, ResourceType};
use super::{ScimError, ScimResult, ScimType};

/// More operations in one request are refused (`tooMany`).
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Add(Vec<Member>),
    /// By `value`.
    Remove(Vec<String>),
    RemoveAll,
    /// Exactly these members.
    Replace(Vec<Member>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a PATCH request body to `attrs`; returns the member changes it asks for.
pub fn apply(rt: ResourceType, attrs: &mut Attributes, body: &Value) -> ScimResult<Vec<MemberChange>> {
    let syntax = |m: &str| ScimError::invalid(ScimType::InvalidSyntax, m);
    let body = body.as_object().ok_or_else(|| syntax("the body must be a JSON object"))?;
    let ops = schema::get_ci(body, "Operations").and_then(Value::as_array).ok_or_else(|| syntax("`Operations` must be a list"))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid(ScimType::TooMany, format!("at most {MAX_OPERATIONS} operations per request")));
    }
    let mut members = vec![];
    for (i, operation) in ops.iter().enumerate() {
        let operation = operation.as_object().ok_or_else(|| syntax("each operation must be an object"))?;
        let op = match schema::get_ci(operation, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            other => return Err(syntax(&format!("Operations[{i}].op must be add, replace or remove, not {other:?}"))),
        };
        let value = schema::get_ci(operation, "value");
        let path = schema::get_ci(operation, "path").and_then(Value::as_str).map(str::trim).filter(|p| !p.is_empty());
        // A path naming a whole extension (`urn:…:enterprise:2.0:User`) is that
        // extension's object, as a map without a path would give it.
        if let Some(urn) = path.and_then(|p| rt.extensions().iter().find(|(urn, _)| urn.eq_ignore_ascii_case(p))).map(|(urn, _)| *urn) {
            if op == Op::Remove {
                attrs.remove(urn);
            } else {
                let map = Value::Object(Map::from_iter([(urn.to_owned(), value.cloned().unwrap_or(Value::Null))]));
                without_path(rt, attrs, op, Some(&map), &mut members)?;
            }
            continue;
        }
        match path {
            Some(path) => {
                let path = parse_path(path)?;
                at_path(rt, attrs, op, &path, value, false, &mut members)?;
            }
            None => without_path(rt, attrs, op, value, &mut members)?,
        }
    }
    Ok(members)
}

fn parse_path(text: &str) -> ScimResult<PatchPath> {
    text.trim()
        .parse::<PatchPath>()
        .map_err(|e| ScimError::invalid(ScimType::InvalidPath, format!("the path `{text}` does not parse: {e}")))
}

/// `add` or `replace` with a map of attributes (or paths) to values.
fn without_path(
    rt: ResourceType,
    attrs: &mut Attributes,
    op: Op,
    value: Option<&Value>,
    members: &mut Vec<MemberChange>,
) -> ScimResult<()> {
    if op == Op::Remove {
        return Err(ScimError::invalid(ScimType::NoTarget, "remove needs a path"));
    }
    let Some(Value::Object(map)) = value else { return Err(ScimError::value("an operation without a path needs an object as its value")) };
    for (key, v) in map {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some((urn, ext_attrs)) = rt.extensions().iter().find(|(urn, _)| urn.eq_ignore_ascii_case(key)) {
            let Value::Object(ext) = v else { return Err(ScimError::value(format!("`{urn}` must be an object"))) };
            for (k, sub_value) in ext {
                if let Some(a) = schema::find(ext_attrs, k) {
                    let path = AttrPath { uri: Some((*urn).to_owned()), name: a.name.to_owned(), sub_attr: None };
                    at_path(rt, attrs, op, &PatchPath::Attr(path), Some(sub_value), true, members)?;
                }
            }
            continue;
        }
        at_path(rt, attrs, op, &parse_path(key)?, Some(v), true, members)?;
    }
    Ok(())
}

fn at_path(
    rt: ResourceType,
    attrs: &mut Attributes,
    op: Op,
    path: &PatchPath,
    value: Option<&Value>,
    in_map: bool,
    members: &mut Vec<MemberChange>,
) -> ScimResult<()> {
    let (attr_path, filter, sub) = match path {
        PatchPath::Attr(p) => (p, None, p.sub_attr.as_deref()),
        PatchPath::Value(vp) => (&vp.attr, Some(&vp.filter), vp.sub_attr.as_deref()),
    };
    let Some((urn, a)) = schema::lookup(rt, attr_path.uri.as_deref(), &attr_path.name) else {
        // Attributes of no schema are not kept, so there is nothing to change.
        return if in_map { Ok(()) } else { Err(ScimError::invalid(ScimType::InvalidPath, format!("no attribute `{attr_path}`"))) };
    };
    match a.mutability {
        Mutability::ReadOnly if in_map => return Ok(()),
        Mutability::ReadOnly => return Err(ScimError::invalid(ScimType::Mutability, format!("`{}` is read-only", a.name))),
        Mutability::WriteOnly => return Ok(()),
        Mutability::ReadWrite | Mutability::Immutable => {}
    }
    if rt == ResourceType::Group && a.name == "members" {
        members.push(member_change(op, filter, value)?);
        return Ok(());
    }
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::value(format!("{op:?} of `{}` needs a value", a.name).to_lowercase()));
    }
    let container: &mut Map<String, Value> = match urn {
        None => attrs,
        Some(urn) => {
            let ext = attrs.entry(urn.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            match ext {
                Value::Object(o) => o,
                other => {
                    *other = Value::Object(Map::new());
                    other.as_object_mut().ok_or_else(|| ScimError::value("extension"))?
                }
            }
        }
    };
    let result = match filter {
        Some(f) => filtered(container, a, op, f, sub, value),
        None => plain(container, a, op, sub, value),
    };
    // An extension left empty is unassigned.
    if let Some(urn) = urn {
        if attrs.get(urn).and_then(Value::as_object).is_some_and(Map::is_empty) {
            attrs.remove(urn);
        }
    }
    result
}

fn member_values(value: Option<&Value>) -> ScimResult<Vec<String>> {
    Ok(value.map(members).transpose()?.unwrap_or_default().into_iter().map(|m| m.value).collect())
}

/// The ids a `members[value eq "a" or value eq "b"]` filter names.
fn filtered_ids(f: &ValFilter, out: &mut Vec<String>) -> ScimResult<()> {
    match f {
        ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(v))) if p.name.eq_ignore_ascii_case("value") => {
            out.push(v.clone());
            Ok(())
        }
        ValFilter::Or(operands) => operands.iter().try_for_each(|f| filtered_ids(f, out)),
        _ => Err(ScimError::invalid(ScimType::InvalidFilter, "members are selected by `value eq \"…\"`, alone or joined by `or`")),
    }
}

fn member_change(op: Op, filter: Option<&ValFilter>, value: Option<&Value>) -> ScimResult<MemberChange> {
    Ok(match (op, filter) {
        (Op::Remove, Some(f)) => {
            let mut ids = vec![];
            filtered_ids(f, &mut ids)?;
            MemberChange::Remove(ids)
        }
        (Op::Remove, None) if value.is_some() => MemberChange::Remove(member_values(value)?),
        (Op::Remove, None) => MemberChange::RemoveAll,
        (_, Some(_)) => return Err(ScimError::invalid(ScimType::InvalidPath, "members are added without a filter")),
        (Op::Add, None) => MemberChange::Add(value.map(members).transpose()?.unwrap_or_default()),
        (Op::Replace, None) => MemberChange::Replace(value.map(members).transpose()?.unwrap_or_default()),
    })
}

fn typed_value(a: &Attr, value: Option<&Value>) -> ScimResult<Option<Value>> {
    value.map(|v| typed(a, v, "")).transpose().map(Option::flatten)
}

/// A path without a filter: `title`, `name.givenName`, `emails`.
fn plain(container: &mut Map<String, Value>, a: &'static Attr, op: Op, sub: Option<&str>, value: Option<&Value>) -> ScimResult<()> {
    if let Some(sub) = sub {
        let s = schema::find(a.sub, sub)
            .ok_or_else(|| ScimError::invalid(ScimType::InvalidPath, format!("no attribute `{}.{sub}`", a.name)))?;
        let v = typed_value(s, value)?;
        let target =
            container.entry(a.name.to_owned()).or_insert_with(|| if a.multi { Value::Array(vec![]) } else { Value::Object(Map::new()) });
        // Without a filter, a sub-attribute of a multi-valued attribute is every value's.
        let objects: Vec<&mut Map<String, Value>> = match target {
            Value::Array(items) if items.is_empty() && v.is_some() => {
                items.push(Value::Object(Map::new()));
                items.iter_mut().filter_map(Value::as_object_mut).collect()
            }
            Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
            Value::Object(o) => vec![o],
            _ => vec![],
        };
        for o in objects {
            match (&v, op) {
                (Some(v), Op::Add | Op::Replace) => o.insert(s.name.to_owned(), v.clone()),
                _ => o.remove(s.name),
            };
        }
        drop_if_empty(container, a.name);
        return Ok(());
    }
    let v = typed_value(a, value)?;
    match (op, v) {
        (Op::Remove, _) if a.multi && value.is_some() => {
            // Remove the listed values only.
            let listed = typed_value(a, value)?.and_then(|v| v.as_array().cloned()).unwrap_or_default();
            if let Some(Value::Array(items)) = container.get_mut(a.name) {
                items.retain(|i| !listed.contains(i));
            }
        }
        (Op::Remove, _) | (_, None) => {
            container.remove(a.name);
        }
        (Op::Add, Some(Value::Array(new))) => {
            let items = container.entry(a.name.to_owned()).or_insert_with(|| Value::Array(vec![]));
            if let Value::Array(items) = items {
                for n in new {
                    if !items.contains(&n) {
                        items.push(n);
                    }
                }
            }
        }
        // A complex value's sub-attributes are merged in; others left as they were.
        (Op::Add | Op::Replace, Some(Value::Object(new))) if a.kind == Kind::Complex && !a.multi => {
            let target = container.entry(a.name.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            match target {
                Value::Object(o) => o.extend(new),
                other => *other = Value::Object(new),
            }
        }
        (Op::Add | Op::Replace, Some(v)) => {
            container.insert(a.name.to_owned(), v);
        }
    }
    drop_if_empty(container, a.name);
    Ok(())
}

fn drop_if_empty(container: &mut Map<String, Value>, name: &str) {
    let empty = match container.get(name) {
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if empty {
        container.remove(name);
    }
}

/// A filtered path: `emails[type eq "work"]`, `emails[type eq "work"].value`.
fn filtered(
    container: &mut Map<String, Value>,
    a: &'static Attr,
    op: Op,
    f: &ValFilter,
    sub: Option<&str>,
    value: Option<&Value>,
) -> ScimResult<()> {
    if !(a.multi && a.kind == Kind::Complex) {
        return Err(ScimError::invalid(ScimType::InvalidPath, format!("`{}` is not a multi-valued attribute to filter", a.name)));
    }
    let sub_attr = match sub {
        Some(s) => Some(
            schema::find(a.sub, s).ok_or_else(|| ScimError::invalid(ScimType::InvalidPath, format!("no attribute `{}.{s}`", a.name)))?,
        ),
        None => None,
    };
    let new_value = match (sub_attr, value) {
        (Some(s), Some(v)) => typed(s, v, a.name)?,
        (None, Some(v)) => typed(&Attr { multi: false, ..*a }, v, "")?,
        (_, None) => None,
    };
    let items = container.entry(a.name.to_owned()).or_insert_with(|| Value::Array(vec![]));
    let Value::Array(items) = items else { return Err(ScimError::value(format!("`{}` is not a list", a.name))) };
    let hits: Vec<usize> =
        items.iter().enumerate().filter(|(_, el)| el.as_object().is_some_and(|el| element_matches(a, f, el))).map(|(i, _)| i).collect();
    match op {
        Op::Remove => match sub_attr {
            None => {
                let mut i = 0;
                items.retain(|_| {
                    let keep = !hits.contains(&i);
                    i += 1;
                    keep
                });
            }
            Some(s) => {
                for &i in &hits {
                    if let Some(o) = items[i].as_object_mut() {
                        o.remove(s.name);
                    }
                }
            }
        },
        Op::Add | Op::Replace => {
            let Some(new_value) = new_value else { return Err(ScimError::value(format!("a value is needed for `{}`", a.name))) };
            if hits.is_empty() {
                let mut el = equalities(f).ok_or_else(|| {
                    ScimError::invalid(
                        ScimType::NoTarget,
                        format!("no value of `{}` matches the filter, and it does not say what to add", a.name),
                    )
                })?;
                set_in(&mut el, sub_attr, new_value.clone());
                items.push(Value::Object(el));
            }
            for &i in &hits {
                if let Some(o) = items[i].as_object_mut() {
                    set_in(o, sub_attr, new_value.clone());
                }
            }
        }
    }
    drop_if_empty(container, a.name);
    Ok(())
}

fn set_in(el: &mut Map<String, Value>, sub: Option<&Attr>, v: Value) {
    match (sub, v) {
        (Some(s), v) => {
            el.insert(s.name.to_owned(), v);
        }
        (None, Value::Object(o)) => el.extend(o),
        (None, _) => {}
    }
}

/// The element a filter of `eq`s joined by `and` describes.
fn equalities(f: &ValFilter) -> Option<Map<String, Value>> {
    match f {
        ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v)) => {
            let v = match v {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::True => Value::Bool(true),
                CompValue::False => Value::Bool(false),
                _ => return None,
            };
            Some(Map::from_iter([(p.name.clone(), v)]))
        }
        ValFilter::And(operands) => {
            let mut m = Map::new();
            for f in operands.iter() {
                m.extend(equalities(f)?);
            }
            Some(m)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scim::resource::read;
    use crate::core::scim::ScimFailure;
    use serde_json::json;

    fn user() -> Attributes {
        read(
            ResourceType::User,
            &json!({"userName": "ada", "active": true, "name": {"givenName": "Ada", "familyName": "L"}, "emails": [{"value": "a@x.io", "type": "work", "primary": true}]}),
        )
        .unwrap()
    }

    fn patch(rt: ResourceType, attrs: &mut Attributes, ops: Value) -> ScimResult<Vec<MemberChange>> {
        apply(rt, attrs, &json!({"schemas": [schema::PATCH_OP], "Operations": ops}))
    }

    #[test]
    fn entra_id_replaces_with_capitals_strings_and_maps_of_paths() {
        let mut u = user();
        patch(ResourceType::User, &mut u, json!([{"op": "Replace", "path": "active", "value": "False"}])).unwrap();
        assert_eq!(u["active"], false);
        patch(
            ResourceType::User,
            &mut u,
            json!([{"op": "Replace", "value": {"displayName": "Ada L", "name.givenName": "Augusta", "active": "True",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Maths", "id": "ignored"}}]),
        )
        .unwrap();
        assert_eq!(
            (u["displayName"].as_str(), u["name"]["givenName"].as_str(), u["active"].as_bool()),
            (Some("Ada L"), Some("Augusta"), Some(true))
        );
        assert_eq!(u["name"]["familyName"], "L", "other sub-attributes stay");
        assert_eq!(u[schema::ENTERPRISE_USER]["department"], "Maths");
        assert!(u.get("id").is_none());
    }

    #[test]
    fn a_filtered_path_that_matches_nothing_adds_what_it_describes() {
        let mut u = user();
        patch(ResourceType::User, &mut u, json!([{"op": "Add", "path": "emails[type eq \"home\"].value", "value": "h@x.io"}])).unwrap();
        patch(ResourceType::User, &mut u, json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "w@x.io"}])).unwrap();
        assert_eq!(u["emails"], json!([{"value": "w@x.io", "type": "work", "primary": true}, {"type": "home", "value": "h@x.io"}]));
        patch(ResourceType::User, &mut u, json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])).unwrap();
        assert_eq!(u["emails"].as_array().unwrap().len(), 1);
        let e =
            patch(ResourceType::User, &mut u, json!([{"op": "add", "path": "emails[value co \"x\" or type pr].display", "value": "d"}]));
        assert!(e.is_ok(), "matching elements exist, so no element needs describing");
        let mut fresh = read(ResourceType::User, &json!({"userName": "u"})).unwrap();
        let e = patch(ResourceType::User, &mut fresh, json!([{"op": "add", "path": "emails[value co \"x\"].display", "value": "d"}]))
            .unwrap_err();
        assert_eq!(e.failure, ScimFailure::Invalid(ScimType::NoTarget));
    }

    #[test]
    fn plain_paths_add_replace_and_remove() {
        let mut u = user();
        patch(
            ResourceType::User,
            &mut u,
            json!([{"op": "add", "path": "title", "value": "Countess"}, {"op": "remove", "path": "name.familyName"}]),
        )
        .unwrap();
        assert_eq!((u["title"].as_str(), u["name"].get("familyName")), (Some("Countess"), None));
        patch(ResourceType::User, &mut u, json!([{"op": "add", "path": "emails", "value": [{"value": "b@x.io"}]}])).unwrap();
        assert_eq!(u["emails"].as_array().unwrap().len(), 2, "add appends to a multi-valued attribute");
        patch(ResourceType::User, &mut u, json!([{"op": "replace", "path": "emails", "value": [{"value": "c@x.io"}]}])).unwrap();
        assert_eq!(u["emails"], json!([{"value": "c@x.io"}]));
        patch(
            ResourceType::User,
            &mut u,
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
        )
        .unwrap();
        patch(
            ResourceType::User,
            &mut u,
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "user_b"}]),
        )
        .unwrap();
        assert_eq!(u[schema::ENTERPRISE_USER]["manager"], json!({"value": "user_b"}));
        patch(
            ResourceType::User,
            &mut u,
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
        )
        .unwrap();
        assert!(u.get(schema::ENTERPRISE_USER).is_none(), "an emptied extension is unassigned");
        let whole = json!([{"op": "add", "path": schema::ENTERPRISE_USER, "value": {"division": "West", "costCenter": "42"}}]);
        patch(ResourceType::User, &mut u, whole).unwrap();
        assert_eq!(u[schema::ENTERPRISE_USER], json!({"division": "West", "costCenter": "42"}));
        patch(ResourceType::User, &mut u, json!([{"op": "remove", "path": schema::ENTERPRISE_USER}])).unwrap();
        assert!(u.get(schema::ENTERPRISE_USER).is_none());
    }

    #[test]
    fn refusals_name_their_scim_type() {
        let mut u = user();
        let kind = |ops: Value, u: &mut Attributes| patch(ResourceType::User, u, ops).unwrap_err().failure;
        assert_eq!(kind(json!([{"op": "replace", "path": "id", "value": "x"}]), &mut u), ScimFailure::Invalid(ScimType::Mutability));
        assert_eq!(
            kind(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]), &mut u),
            ScimFailure::Invalid(ScimType::Mutability)
        );
        assert_eq!(kind(json!([{"op": "remove"}]), &mut u), ScimFailure::Invalid(ScimType::NoTarget));
        assert_eq!(kind(json!([{"op": "merge", "path": "title", "value": "x"}]), &mut u), ScimFailure::Invalid(ScimType::InvalidSyntax));
        assert_eq!(
            kind(json!([{"op": "add", "path": "emails[type eq", "value": "x"}]), &mut u),
            ScimFailure::Invalid(ScimType::InvalidPath)
        );
        assert_eq!(
            kind(json!([{"op": "add", "path": "active", "value": "perhaps"}]), &mut u),
            ScimFailure::Invalid(ScimType::InvalidValue)
        );
        assert_eq!(
            kind(json!([{"op": "add", "path": "favouriteColour", "value": "x"}]), &mut u),
            ScimFailure::Invalid(ScimType::InvalidPath)
        );
        let many: Vec<Value> = (0..=MAX_OPERATIONS).map(|_| json!({"op": "add", "path": "title", "value": "x"})).collect();
        assert_eq!(kind(Value::Array(many), &mut u), ScimFailure::Invalid(ScimType::TooMany));
        assert_eq!(u, user(), "nothing of a refused request is applied to the caller's copy it was given");
    }

    #[test]
    fn group_members_come_back_as_changes_in_order() {
        let mut g = read(ResourceType::Group, &json!({"displayName": "Eng"})).unwrap();
        let changes = patch(
            ResourceType::Group,
            &mut g,
            json!([
                {"op": "add", "path": "members", "value": [{"value": "u1", "display": "One"}, {"value": "u2"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
                {"op": "remove", "path": "members[value eq \"u2\" or value eq \"u3\"]"},
                {"op": "replace", "path": "members", "value": [{"value": "u4"}]},
                {"op": "remove", "path": "members"},
                {"op": "replace", "value": {"id": "grp_1", "displayName": "Engineering"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            changes,
            vec![
                MemberChange::Add(vec![
                    Member::of("u1", json!({"value": "u1", "display": "One"})),
                    Member::of("u2", json!({"value": "u2"}))
                ]),
                MemberChange::Remove(vec!["u1".into()]),
                MemberChange::Remove(vec!["u2".into(), "u3".into()]),
                MemberChange::Replace(vec![Member::of("u4", json!({"value": "u4"}))]),
                MemberChange::RemoveAll,
            ]
        );
        assert_eq!(g["displayName"], "Engineering");
        let e = patch(ResourceType::Group, &mut g, json!([{"op": "remove", "path": "members[display co \"x\"]"}])).unwrap_err();
        assert_eq!(e.failure, ScimFailure::Invalid(ScimType::InvalidFilter));
    }

    #[test]
    fn a_removal_may_name_hundreds_of_members_in_one_filter() {
        // Okta and Entra ID remove members in batches; a flat `or` chain is one
        // level deep however long, so it stays under the filter depth limit.
        let ids: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
        let filter = ids.iter().map(|id| format!("value eq \"{id}\"")).collect::<Vec<_>>().join(" or ");
        let mut g = read(ResourceType::Group, &json!({"displayName": "Eng"})).unwrap();
        let changes = patch(ResourceType::Group, &mut g, json!([{"op": "remove", "path": format!("members[{filter}]")}])).unwrap();
        assert_eq!(changes, vec![MemberChange::Remove(ids)]);
    }
}
