//! From an IdP's claims to ssogate's normalized profile, and from a user to the
//! claims an application receives.

use serde_json::{Map, Value};

use super::organization::Organization;
use super::user::{User, UserView};
use super::validate;

pub type Claims = Map<String, Value>;

/// Protocol claims that describe the token, not the person; never kept as attributes.
const PROTOCOL_CLAIMS: [&str; 16] =
    ["iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "s_hash", "auth_time", "azp", "sid", "jti", "acr", "amr", "typ"];
/// Claims normalized into profile fields.
const PROFILE_CLAIMS: [&str; 9] =
    ["sub", "email", "email_verified", "name", "given_name", "family_name", "preferred_username", "picture", "hd"];

/// The person as their IdP describes them, normalized.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdpProfile {
    pub idp_sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub picture: Option<String>,
    pub hd: Option<String>,
    /// Every other claim, verbatim.
    pub attributes: Claims,
}

/// Ceilings on what one person's claims may weigh: they are stored on the user and
/// copied into tokens, so an IdP (or an attacker controlling one's claims) must not
/// be able to bloat every row and response.
#[derive(Clone, Copy, Debug)]
pub struct ClaimLimits {
    /// The ID token's and userinfo's claims together, as JSON.
    pub max_bytes: usize,
    pub max_groups: usize,
}

impl Default for ClaimLimits {
    fn default() -> Self {
        ClaimLimits { max_bytes: 64 * 1024, max_groups: 1000 }
    }
}

impl ClaimLimits {
    /// Why the claims are refused, if they are.
    pub fn check_size(&self, merged: &Claims) -> Result<(), String> {
        let bytes = serde_json::to_vec(merged).map_or(usize::MAX, |v| v.len());
        if bytes > self.max_bytes {
            return Err(format!(
                "the identity provider sent {} KiB of claims for this user; at most {} KiB are accepted",
                bytes / 1024,
                self.max_bytes / 1024
            ));
        }
        Ok(())
    }

    pub fn check_groups(&self, groups: usize) -> Result<(), String> {
        if groups > self.max_groups {
            return Err(format!("the identity provider sent {groups} groups for this user; at most {} are accepted", self.max_groups));
        }
        Ok(())
    }
}

/// The ID token's claims, with userinfo filling what the ID token lacks.
pub fn merge(id_token: &Claims, userinfo: Option<&Claims>) -> Claims {
    let mut merged = id_token.clone();
    for (k, v) in userinfo.into_iter().flatten() {
        merged.entry(k.clone()).or_insert_with(|| v.clone());
    }
    merged
}

fn text(c: &Claims, key: &str) -> Option<String> {
    c.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `email_verified` as IdPs send it: a boolean, or (some) the string "true".
fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

pub fn normalize(merged: &Claims) -> IdpProfile {
    let email = text(merged, "email").and_then(|e| validate::email("email", &e).ok());
    let attributes = merged
        .iter()
        .filter(|(k, _)| !PROTOCOL_CLAIMS.contains(&k.as_str()) && !PROFILE_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    IdpProfile {
        idp_sub: text(merged, "sub").unwrap_or_default(),
        email_verified: email.is_some() && truthy(merged.get("email_verified")),
        email,
        name: text(merged, "name"),
        first_name: text(merged, "given_name"),
        last_name: text(merged, "family_name"),
        username: text(merged, "preferred_username"),
        picture: text(merged, "picture"),
        hd: text(merged, "hd"),
        attributes,
    }
}

/// The scopes ssogate grants to applications; `offline_access` asks for a refresh
/// token (OIDC Core §11).
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// Whether a grant of `scope` (space-separated) comes with a refresh token.
pub fn grants_refresh_token(scope: &str) -> bool {
    scope.split(' ').any(|s| s == "offline_access")
}

/// Whether ssogate vouches for the user's email: the IdP said it is verified, and it
/// is in the organization's own domains (unless the organization trusts its IdPs for
/// any): another tenant's IdP can assert any address (OIDC Core §5.7).
pub fn email_vouched_for(user: &User, org: &Organization) -> bool {
    user.email.as_deref().is_some_and(|e| user.email_verified && org.email_policy.vouches_for(&org.domains, e))
}

/// The user's given and family names together, or whichever of them is known.
pub fn full_name(user: &User) -> Option<String> {
    match (&user.first_name, &user.last_name) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(n), None) | (None, Some(n)) => Some(n.clone()),
        (None, None) => None,
    }
}

/// The claims about a user an application receives, by the scopes it was granted.
pub fn user_claims(u: &UserView, org: &Organization, scopes: &[String]) -> Claims {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let user = &u.user;
    let mut c = Claims::new();
    c.insert("sub".into(), user.id.clone().into());
    c.insert("org_id".into(), org.id.clone().into());
    c.insert("org_slug".into(), org.slug.clone().into());
    c.insert("role".into(), u.role.as_str().into());
    if let Some(conn) = &user.connection_id {
        c.insert("connection_id".into(), conn.clone().into());
    }
    if let Some(s) = &user.idp_sub {
        c.insert("idp_sub".into(), s.clone().into());
    }
    if has("email") {
        if let Some(e) = &user.email {
            c.insert("email".into(), e.clone().into());
            c.insert("email_verified".into(), email_vouched_for(user, org).into());
        }
    }
    if has("profile") {
        let name = user.attributes.get("name").and_then(Value::as_str).map(str::to_owned).or_else(|| full_name(user));
        for (k, v) in [
            ("name", name),
            ("given_name", user.first_name.clone()),
            ("family_name", user.last_name.clone()),
            ("preferred_username", user.username.clone()),
            ("picture", user.picture.clone()),
        ] {
            if let Some(v) = v {
                c.insert(k.into(), v.into());
            }
        }
    }
    if has("groups") {
        c.insert("groups".into(), u.groups.clone().into());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn userinfo_fills_only_what_the_id_token_lacks() {
        let id = claims(json!({"sub": "u1", "email": "a@acme.com"}));
        let ui = claims(json!({"sub": "u1", "email": "b@acme.com", "preferred_username": "alice"}));
        let m = merge(&id, Some(&ui));
        assert_eq!(m["email"], "a@acme.com");
        assert_eq!(m["preferred_username"], "alice");
    }

    #[test]
    fn profiles_are_normalized_and_other_claims_kept() {
        let p = normalize(&claims(json!({
            "iss": "x", "aud": "y", "nonce": "n", "sub": "u1", "email": " Alice@ACME.com ", "email_verified": "true",
            "given_name": "Alice", "family_name": "Liddell", "preferred_username": "alice", "hd": "acme.com",
            "department": "R&D", "branch": {"city": "Oxford"}
        })));
        assert_eq!(p.idp_sub, "u1");
        assert_eq!(p.email.as_deref(), Some("alice@acme.com"));
        assert!(p.email_verified);
        assert_eq!((p.first_name.as_deref(), p.last_name.as_deref()), (Some("Alice"), Some("Liddell")));
        assert_eq!(p.hd.as_deref(), Some("acme.com"));
        assert_eq!(Value::Object(p.attributes), json!({"department": "R&D", "branch": {"city": "Oxford"}}));
    }

    #[test]
    fn an_invalid_email_is_dropped_and_unverified() {
        let p = normalize(&claims(json!({"sub": "u1", "email": "not-an-email", "email_verified": true})));
        assert_eq!((p.email, p.email_verified), (None, false));
    }

    #[test]
    fn claim_limits_refuse_oversized_claims_and_too_many_groups() {
        let limits = ClaimLimits { max_bytes: 100, max_groups: 2 };
        let mut c = Claims::new();
        c.insert("sub".into(), "a".into());
        assert!(limits.check_size(&c).is_ok());
        c.insert("blob".into(), "x".repeat(200).into());
        assert!(limits.check_size(&c).unwrap_err().contains("at most 0 KiB"));
        assert!(limits.check_groups(2).is_ok());
        assert!(limits.check_groups(3).unwrap_err().contains("3 groups"));
    }
}
