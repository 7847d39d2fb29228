//! Field-level validation of admin input. Each function returns the normalised value
//! or a [`ValidationError`] naming the field.

use std::collections::HashSet;

use url::{Host, Url};

use super::error::{Validated, ValidationError};

pub const MAX_NAME_LEN: usize = 200;

/// A display name: trimmed, not empty, no control characters.
pub fn name(field: &str, value: &str) -> Validated<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    // Counted before trimming, so the limit is the one the API description states.
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ValidationError::new(field, format!("must be at most {MAX_NAME_LEN} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

/// An opaque credential or identifier issued by someone else (client id, client secret).
pub fn opaque(field: &str, value: &str, max_len: usize) -> Validated<String> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(ValidationError::new(field, format!("must be at most {max_len} bytes")));
    }
    if value.chars().any(char::is_control) || value != value.trim() {
        return Err(ValidationError::new(field, "must not contain control characters or surrounding spaces"));
    }
    Ok(value.to_owned())
}

/// Organization slugs: `[a-z0-9-]{2,63}`, no leading/trailing hyphen, and never shaped
/// like an id so `{org}` in a path is unambiguous.
pub fn slug(field: &str, value: &str) -> Validated<String> {
    let v = value;
    let ok_chars = v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !(2..=63).contains(&v.len()) || !ok_chars || v.starts_with('-') || v.ends_with('-') {
        return Err(ValidationError::new(field, "must be 2-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"));
    }
    if v.starts_with("org_") || v.starts_with("org-") && v.len() == 30 {
        return Err(ValidationError::new(field, "must not look like an organization id"));
    }
    Ok(v.to_owned())
}

/// A slug derived from a display name (`Acme Corp.` → `acme-corp`); may be empty when the
/// name has no ASCII letters or digits, in which case the caller picks one.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// A DNS domain an organization owns (`acme.com`): lowercased, at least two labels.
pub fn domain(field: &str, value: &str) -> Validated<String> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = v.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if v.len() > 253
        || labels.len() < 2
        || !labels.iter().all(label_ok)
        || labels.last().is_none_or(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ValidationError::new(field, format!("`{}` is not a valid domain name (e.g. acme.com)", value.trim())));
    }
    Ok(v)
}

/// A list of domains, normalised and without duplicates.
pub fn domains(field: &str, values: &[String]) -> Validated<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(values.len());
    for (i, raw) in values.iter().enumerate() {
        let d = domain(&format!("{field}[{i}]"), raw)?;
        if !seen.insert(d.clone()) {
            return Err(ValidationError::new(format!("{field}[{i}]"), format!("`{d}` is listed twice")));
        }
        out.push(d);
    }
    Ok(out)
}

/// An email address, lowercased for matching. Deliberately permissive in the local part
/// (IdPs emit all sorts), strict about having exactly one `@` and a domain.
pub fn email(field: &str, value: &str) -> Validated<String> {
    let v = value.trim().to_lowercase();
    let valid = match v.split_once('@') {
        Some((local, host)) => {
            !local.is_empty()
                && local.len() <= 64
                && !host.contains('@')
                && domain(field, host).is_ok()
                && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !valid || v.len() > 254 {
        return Err(ValidationError::new(field, format!("`{}` is not a valid email address", value.trim())));
    }
    Ok(v)
}

/// The domain part of an already validated email.
pub fn email_domain(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, d)| d)
}

/// OAuth scope tokens (RFC 6749 §3.3), without duplicates, `openid` required.
pub fn scopes(field: &str, values: &[String]) -> Validated<Vec<String>> {
    let mut seen = HashSet::new();
    for (i, s) in values.iter().enumerate() {
        let valid = !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(ValidationError::new(format!("{field}[{i}]"), format!("`{s}` is not a valid scope token")));
        }
        if !seen.insert(s.as_str()) {
            return Err(ValidationError::new(format!("{field}[{i}]"), format!("`{s}` is listed twice")));
        }
    }
    if !seen.contains("openid") {
        return Err(ValidationError::new(field, "must include `openid`"));
    }
    Ok(values.to_vec())
}

/// An absolute URL (any scheme checks are the caller's).
pub fn url(field: &str, value: &str) -> Validated<Url> {
    Url::parse(value.trim()).map_err(|e| ValidationError::new(field, format!("is not a valid absolute URL ({e})")))
}

/// A downstream application's redirect URI, compared byte for byte at login, so it must
/// be exact and safe: `https`, `http` on loopback (RFC 8252 §7.3), or a private-use
/// scheme with a dot (`com.example.app:/cb`, RFC 8252 §7.1). No fragments, no credentials.
pub fn redirect_uri(field: &str, value: &str) -> Validated<String> {
    if value != value.trim() || value.is_empty() {
        return Err(ValidationError::new(field, "must be a non-empty URL without surrounding spaces"));
    }
    let u = url(field, value)?;
    if u.fragment().is_some() {
        return Err(ValidationError::new(field, "must not contain a fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ValidationError::new(field, "must not contain credentials"));
    }
    let loopback = matches!(u.host(), Some(Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(u.host(), Some(Host::Ipv6(ip)) if ip.is_loopback())
        || u.host_str() == Some("localhost");
    match u.scheme() {
        "https" if u.host().is_some() => Ok(value.to_owned()),
        "http" if loopback => Ok(value.to_owned()),
        "http" => Err(ValidationError::new(field, "must use https (http is allowed only for loopback addresses)")),
        s if s.contains('.') => Ok(value.to_owned()),
        s => Err(ValidationError::new(
            field,
            format!("scheme `{s}` is not allowed; use https, http on loopback, or a reverse-domain app scheme"),
        )),
    }
}

/// An application's back-channel logout endpoint: what a redirect URI may be, but
/// reachable by ssogate itself, so `https` (or `http` on loopback) only.
pub fn backchannel_logout_uri(field: &str, value: &str) -> Validated<String> {
    let v = redirect_uri(field, value)?;
    if !(v.starts_with("https://") || v.starts_with("http://")) {
        return Err(ValidationError::new(field, "must be an https URL (http only on loopback addresses)"));
    }
    Ok(v)
}

/// A list of redirect URIs, without duplicates; `required` demands at least one.
pub fn redirect_uris(field: &str, values: &[String], required: bool) -> Validated<Vec<String>> {
    if required && values.is_empty() {
        return Err(ValidationError::new(field, "must list at least one URI"));
    }
    if values.len() > 50 {
        return Err(ValidationError::new(field, "must list at most 50 URIs"));
    }
    let mut seen = HashSet::new();
    for (i, v) in values.iter().enumerate() {
        let item = format!("{field}[{i}]");
        redirect_uri(&item, v)?;
        if !seen.insert(v.as_str()) {
            return Err(ValidationError::new(item, "is listed twice"));
        }
    }
    Ok(values.to_vec())
}

/// A group name. Commas and `->` are the delimiters of the group-mapping text, so a
/// group whose name holds them could never be mapped to.
pub fn group_name(field: &str, value: &str) -> Validated<String> {
    let v = name(field, value)?;
    if v.contains(',') || v.contains("->") {
        return Err(ValidationError::new(field, "must not contain `,` or `->` (they delimit group mappings)"));
    }
    Ok(v)
}

/// Permission names: `[a-z0-9_.:-]{1,100}`, no duplicates.
pub fn permissions(field: &str, values: &[String]) -> Validated<Vec<String>> {
    let mut seen = HashSet::new();
    for (i, p) in values.iter().enumerate() {
        let ok = (1..=100).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
        if !ok {
            return Err(ValidationError::new(
                format!("{field}[{i}]"),
                format!("`{p}` must be 1-100 characters of a-z, 0-9, `_`, `.`, `:` or `-`"),
            ));
        }
        if !seen.insert(p.as_str()) {
            return Err(ValidationError::new(format!("{field}[{i}]"), format!("`{p}` is listed twice")));
        }
    }
    Ok(values.to_vec())
}

/// A dotted path to a claim (`groups`, `realm_access.roles`).
pub fn claim_path(field: &str, value: &str) -> Validated<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > 200 || v.split('.').any(|seg| seg.trim().is_empty()) {
        return Err(ValidationError::new(field, "must be a claim name or a dotted path such as `realm_access.roles`"));
    }
    Ok(v.to_owned())
}

/// An optional free-text field (descriptions): trimmed, bounded.
pub fn description(field: &str, value: &str) -> Validated<String> {
    let v = value.trim();
    // Counted before trimming, as for names.
    if value.chars().count() > 2000 {
        return Err(ValidationError::new(field, "must be at most 2000 characters"));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_must_not_be_empty() {
        assert_eq!(name("name", "  Acme  ").unwrap(), "Acme");
        assert_eq!(name("name", "   ").unwrap_err().field, "name");
        assert!(name("name", "a\u{7}b").is_err());
        assert!(name("name", &"x".repeat(201)).is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("slug", "acme-corp").unwrap(), "acme-corp");
        for bad in ["A", "-acme", "acme-", "ac me", "Acme", "org_01abc", "a"] {
            assert!(slug("slug", bad).is_err(), "{bad}");
        }
        assert_eq!(slugify("Acme Corp. (EU)"), "acme-corp-eu");
        assert_eq!(slugify("Ünïcode"), "n-code");
        assert_eq!(slugify("日本"), "");
    }

    #[test]
    fn domains_are_normalised_and_unique() {
        assert_eq!(domain("d", " Acme.COM. ").unwrap(), "acme.com");
        for bad in ["acme", "-acme.com", "acme..com", "acme.com/x", "1.2.3.4", "a b.com", ""] {
            assert!(domain("d", bad).is_err(), "{bad}");
        }
        let e = domains("domains", &["a.com".into(), "b.com".into(), "A.com".into()]).unwrap_err();
        assert_eq!(e.field, "domains[2]");
    }

    #[test]
    fn emails() {
        assert_eq!(email("email", "Jane.Doe+x@Acme.com").unwrap(), "jane.doe+x@acme.com");
        for bad in ["jane", "@acme.com", "jane@", "jane@acme", "ja ne@acme.com", "a@b@acme.com"] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
        assert_eq!(email_domain("a@acme.com"), Some("acme.com"));
    }

    #[test]
    fn scopes_need_openid_and_valid_tokens() {
        assert!(scopes("scopes", &["openid".into(), "email".into()]).is_ok());
        assert_eq!(scopes("scopes", &["email".into()]).unwrap_err().field, "scopes");
        assert_eq!(scopes("scopes", &["openid".into(), "a b".into()]).unwrap_err().field, "scopes[1]");
        assert_eq!(scopes("scopes", &["openid".into(), "openid".into()]).unwrap_err().field, "scopes[1]");
    }

    #[test]
    fn redirect_uris_are_exact_and_safe() {
        for ok in
            ["https://app.example.com/cb", "http://127.0.0.1:3000/cb", "http://localhost/cb", "http://[::1]/cb", "com.example.app:/oauth"]
        {
            assert!(redirect_uri("r", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "javascript:alert(1)",
            "/relative",
            " https://a.com/cb",
            "https://u:p@a.com/cb",
            "data:text/html,x",
        ] {
            assert!(redirect_uri("r", bad).is_err(), "{bad}");
        }
        assert!(redirect_uris("redirect_uris", &[], true).is_err());
        let e = redirect_uris("redirect_uris", &["https://a.com/cb".into(), "https://a.com/cb".into()], true).unwrap_err();
        assert_eq!(e.field, "redirect_uris[1]");
    }

    #[test]
    fn group_names_cannot_hold_mapping_delimiters() {
        assert!(group_name("name", "Marketing Team").is_ok());
        assert!(group_name("name", "a,b").is_err());
        assert!(group_name("name", "a -> b").is_err());
    }

    #[test]
    fn permissions_and_claim_paths() {
        assert!(permissions("permissions", &["manage_apps".into(), "reports:read".into()]).is_ok());
        assert_eq!(permissions("permissions", &["ok".into(), "Bad Perm".into()]).unwrap_err().field, "permissions[1]");
        assert_eq!(claim_path("claim", " realm_access.roles ").unwrap(), "realm_access.roles");
        assert!(claim_path("claim", "a..b").is_err());
        assert!(claim_path("claim", "").is_err());
    }
}
