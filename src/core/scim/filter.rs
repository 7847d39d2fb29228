//! SCIM filters (RFC 7644 §3.4.2.2), parsed by the `scim_v2` crate and evaluated
//! here against a rendered resource. Attribute names match in any case; string
//! comparisons are case-exact only where the schema says so (`id`, `externalId`,
//! `members.value`); a multi-valued attribute matches when any of its values does,
//! and one named without a sub-attribute compares its `value`s. An attribute of no
//! schema matches nothing.
//!
//! The store narrows candidates by an indexed equality the filter implies
//! ([`Narrowing`]); this evaluation then decides exactly.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::{Map, Value};

use super::schema::{self, Attr, Kind, ResourceType};
use super::{ScimError, ScimResult, ScimType};

/// Longer filters are refused rather than parsed.
pub const MAX_FILTER_LEN: usize = 4096;

pub fn parse(text: &str) -> ScimResult<Filter> {
    if text.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid(ScimType::InvalidFilter, format!("the filter is longer than {MAX_FILTER_LEN} characters")));
    }
    text.parse::<Filter>().map_err(|e| ScimError::invalid(ScimType::InvalidFilter, format!("the filter does not parse: {e}")))
}

/// An equality the filter requires, which an index can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Narrowing {
    Id(String),
    /// `userName` (users) or `displayName` (groups), lowercased: both are
    /// case-insensitive.
    Name(String),
    ExternalId(String),
    /// Groups having this user as a member.
    Member(String),
}

/// The narrowing implied by the filter's top-level conjunction, if any.
pub fn narrowing(rt: ResourceType, f: &Filter) -> Option<Narrowing> {
    match f {
        Filter::And(operands) => operands.iter().find_map(|f| narrowing(rt, f)),
        Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(v))) => {
            let (urn, a) = schema::lookup(rt, path.uri.as_deref(), &path.name)?;
            if urn.is_some() {
                return None;
            }
            let name = match rt {
                ResourceType::User => "userName",
                ResourceType::Group => "displayName",
            };
            match (a.name, path.sub_attr.as_deref()) {
                ("id", None) => Some(Narrowing::Id(v.clone())),
                ("externalId", None) => Some(Narrowing::ExternalId(v.clone())),
                (n, None) if n == name => Some(Narrowing::Name(v.to_lowercase())),
                ("members", None) => Some(Narrowing::Member(v.clone())),
                ("members", Some(s)) if s.eq_ignore_ascii_case("value") => Some(Narrowing::Member(v.clone())),
                _ => None,
            }
        }
        Filter::ValuePath(vp) if vp.attr.name.eq_ignore_ascii_case("members") && rt == ResourceType::Group => match &*vp.filter {
            ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(v))) if p.name.eq_ignore_ascii_case("value") => {
                Some(Narrowing::Member(v.clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether `resource` (as rendered, with `id` and `meta`) satisfies the filter.
pub fn matches(rt: ResourceType, f: &Filter, resource: &Value) -> bool {
    let Value::Object(root) = resource else { return false };
    match f {
        Filter::Attr(exp) => attr_exp(rt, exp, root),
        Filter::ValuePath(vp) => {
            let Some((container, a)) = resolve(rt, root, &vp.attr) else { return false };
            let Some(v) = schema::get_ci(container, a.name) else { return false };
            elements(v).any(|el| el.as_object().is_some_and(|el| val_filter(a, &vp.filter, el)))
        }
        Filter::Not(inner) => !matches(rt, inner, resource),
        Filter::And(operands) => operands.iter().all(|f| matches(rt, f, resource)),
        Filter::Or(operands) => operands.iter().any(|f| matches(rt, f, resource)),
    }
}

fn elements(v: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        Value::Array(items) => Box::new(items.iter()),
        one => Box::new(std::iter::once(one)),
    }
}

/// The object holding the attribute `path` names (the resource or an extension of
/// it), and the attribute's definition.
fn resolve<'r>(rt: ResourceType, root: &'r Map<String, Value>, path: &AttrPath) -> Option<(&'r Map<String, Value>, &'static Attr)> {
    let (urn, a) = schema::lookup(rt, path.uri.as_deref(), &path.name)?;
    let container = match urn {
        None => root,
        Some(urn) => schema::get_ci(root, urn)?.as_object()?,
    };
    Some((container, a))
}

/// The values `path` reaches, with the definition of the attribute they are of.
fn values<'r>(rt: ResourceType, root: &'r Map<String, Value>, path: &AttrPath) -> Option<(Vec<&'r Value>, &'static Attr)> {
    let (container, a) = resolve(rt, root, path)?;
    let top = schema::get_ci(container, a.name);
    leaves(a, top, path.sub_attr.as_deref())
}

fn leaves<'r>(a: &'static Attr, top: Option<&'r Value>, sub: Option<&str>) -> Option<(Vec<&'r Value>, &'static Attr)> {
    let sub_name = match sub {
        Some(s) => Some(s),
        // `emails co "x"` compares each email's `value`.
        None if a.kind == Kind::Complex && a.multi => Some("value"),
        None => None,
    };
    let Some(sub_name) = sub_name else { return Some((top.into_iter().flat_map(elements).collect(), a)) };
    let sub_attr = schema::find(a.sub, sub_name)?;
    let found = top
        .into_iter()
        .flat_map(elements)
        .filter_map(Value::as_object)
        .filter_map(|o| schema::get_ci(o, sub_attr.name))
        .flat_map(elements)
        .collect();
    Some((found, sub_attr))
}

fn attr_exp(rt: ResourceType, exp: &AttrExp, root: &Map<String, Value>) -> bool {
    match exp {
        AttrExp::Present(path) => values(rt, root, path).is_some_and(|(vs, _)| vs.iter().any(|v| present(v))),
        AttrExp::Comparison(path, op, expected) => match values(rt, root, path) {
            Some((vs, a)) => compare_all(&vs, a, op, expected),
            None => false,
        },
    }
}

/// Whether one element of the multi-valued attribute `parent` satisfies the filter
/// inside brackets (`emails[type eq "work"]`).
pub fn element_matches(parent: &'static Attr, f: &ValFilter, el: &Map<String, Value>) -> bool {
    val_filter(parent, f, el)
}

fn val_filter(parent: &'static Attr, f: &ValFilter, el: &Map<String, Value>) -> bool {
    match f {
        ValFilter::Attr(exp) => {
            let path = match exp {
                AttrExp::Present(p) | AttrExp::Comparison(p, ..) => p,
            };
            let Some(a) = schema::find(parent.sub, &path.name) else { return false };
            let vs: Vec<&Value> = schema::get_ci(el, a.name).into_iter().flat_map(elements).collect();
            match exp {
                AttrExp::Present(_) => vs.iter().any(|v| present(v)),
                AttrExp::Comparison(_, op, expected) => compare_all(&vs, a, op, expected),
            }
        }
        ValFilter::Not(inner) => !val_filter(parent, inner, el),
        ValFilter::And(operands) => operands.iter().all(|f| val_filter(parent, f, el)),
        ValFilter::Or(operands) => operands.iter().any(|f| val_filter(parent, f, el)),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `ne` holds when no value is equal; every other operator when some value matches.
fn compare_all(vs: &[&Value], a: &Attr, op: &CompareOp, expected: &CompValue) -> bool {
    match (op, expected) {
        (CompareOp::Eq, CompValue::Null) => vs.is_empty(),
        (CompareOp::Ne, CompValue::Null) => !vs.is_empty(),
        (CompareOp::Ne, _) => !vs.iter().any(|v| compare(v, a, &CompareOp::Eq, expected)),
        _ => vs.iter().any(|v| compare(v, a, op, expected)),
    }
}

fn compare(actual: &Value, a: &Attr, op: &CompareOp, expected: &CompValue) -> bool {
    use std::cmp::Ordering;
    match (actual, expected) {
        (Value::Bool(b), CompValue::True | CompValue::False) => {
            let e = matches!(expected, CompValue::True);
            matches!(op, CompareOp::Eq) && *b == e
        }
        (Value::String(s), CompValue::Str(e)) => {
            let (s, e) = if a.case_exact { (s.clone(), e.clone()) } else { (s.to_lowercase(), e.to_lowercase()) };
            let order = || -> Ordering {
                if a.kind == Kind::DateTime {
                    let parse = |t: &str| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok();
                    if let (Some(x), Some(y)) = (parse(&s), parse(&e)) {
                        return x.cmp(&y);
                    }
                }
                s.cmp(&e)
            };
            match op {
                CompareOp::Eq => s == e,
                CompareOp::Ne => s != e,
                CompareOp::Co => s.contains(&e),
                CompareOp::Sw => s.starts_with(&e),
                CompareOp::Ew => s.ends_with(&e),
                CompareOp::Gt => order() == Ordering::Greater,
                CompareOp::Ge => order() != Ordering::Less,
                CompareOp::Lt => order() == Ordering::Less,
                CompareOp::Le => order() != Ordering::Greater,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [schema::USER, schema::ENTERPRISE_USER],
            "id": "user_01",
            "externalId": "00uABC",
            "userName": "Ada@Example.com",
            "displayName": "Ada Lovelace",
            "active": true,
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}, {"value": "ada@home.example", "type": "home"}],
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            schema::ENTERPRISE_USER: {"department": "Engineering", "manager": {"value": "user_boss"}},
            "meta": {"created": "2026-01-01T00:00:00Z", "lastModified": "2026-06-01T10:00:00.5Z", "version": "W/\"1\""},
        })
    }

    fn holds(text: &str) -> bool {
        matches(ResourceType::User, &parse(text).unwrap(), &user())
    }

    #[test]
    fn operators_compare_as_the_schema_says() {
        assert!(holds(r#"userName eq "ada@example.com""#), "userName is case-insensitive");
        assert!(holds(r#"USERNAME Eq "ADA@EXAMPLE.COM""#));
        assert!(holds(r#"externalId eq "00uABC""#));
        assert!(!holds(r#"externalId eq "00uabc""#), "externalId is case-exact");
        assert!(holds(r#"displayName co "love""#) && holds(r#"displayName sw "ada""#) && holds(r#"displayName ew "LACE""#));
        assert!(!holds("title pr") && holds("displayName pr"));
        assert!(holds(r#"name.familyName eq "lovelace""#));
        assert!(holds("active eq true") && !holds("active eq false"));
        assert!(holds(r#"userName ne "someone""#) && !holds(r#"userName ne "ada@example.com""#));
        assert!(holds(r#"meta.lastModified gt "2026-06-01T09:59:59Z""#) && !holds(r#"meta.lastModified lt "2026-01-02T00:00:00Z""#));
        assert!(holds(r#"meta.created ge "2026-01-01T00:00:00.000Z""#), "times compare as times, not text");
    }

    #[test]
    fn multi_valued_attributes_match_any_value() {
        assert!(holds(r#"emails eq "ada@home.example""#), "without a sub-attribute, `value` is compared");
        assert!(holds(r#"emails.value co "home""#));
        assert!(holds(r#"emails[type eq "work"]"#));
        assert!(holds(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!holds(r#"emails[type eq "home" and value co "@example.com"]"#), "both conditions on the same email");
    }

    #[test]
    fn logic_and_extensions() {
        assert!(holds(r#"userName eq "x" or externalId eq "00uABC""#));
        assert!(!holds(r#"userName eq "x" and externalId eq "00uABC""#));
        assert!(holds(r#"not (userName eq "x")"#));
        assert!(holds(r#"(userName eq "x" or displayName pr) and active eq true"#));
        assert!(holds(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "engineering""#));
        assert!(holds(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "user_boss""#));
        assert!(holds(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "ada""#));
        assert!(!holds(r#"favouriteColour eq "blue""#), "an attribute of no schema matches nothing");
    }

    #[test]
    fn bad_filters_are_invalid_filter_errors() {
        for bad in ["userName eq", "userName zz \"x\"", "(userName eq \"x\"", "userName eq 'x'"] {
            assert_eq!(parse(bad).unwrap_err().failure, super::super::ScimFailure::Invalid(ScimType::InvalidFilter), "{bad}");
        }
        assert!(parse(&"a pr and ".repeat(1000)).is_err());
    }

    #[test]
    fn narrowing_finds_an_indexed_equality_in_the_conjunction() {
        let n = |rt, text: &str| narrowing(rt, &parse(text).unwrap());
        assert_eq!(n(ResourceType::User, r#"userName eq "Ada@X.io""#), Some(Narrowing::Name("ada@x.io".into())));
        assert_eq!(n(ResourceType::User, r#"active eq true and externalId eq "e1""#), Some(Narrowing::ExternalId("e1".into())));
        assert_eq!(n(ResourceType::User, r#"userName eq "a" or userName eq "b""#), None);
        assert_eq!(n(ResourceType::User, r#"userName co "a""#), None);
        assert_eq!(n(ResourceType::Group, r#"displayName eq "Sales""#), Some(Narrowing::Name("sales".into())));
        assert_eq!(n(ResourceType::Group, r#"members.value eq "user_1""#), Some(Narrowing::Member("user_1".into())));
        assert_eq!(n(ResourceType::Group, r#"members[value eq "user_1"]"#), Some(Narrowing::Member("user_1".into())));
        assert_eq!(n(ResourceType::User, r#"id eq "user_1""#), Some(Narrowing::Id("user_1".into())));
    }
}
