//! Validation of an application's authorization request (OIDC Core §3.1.2.1), in the
//! order that decides how an error may be reported: until the client and its
//! redirect URI are trusted, only an error page is safe; after, errors go back to
//! the application as OAuth error redirects.

use std::collections::HashMap;

use super::application::{Application, ClientType};
use super::claims::SUPPORTED_SCOPES;
use super::oauth::{ErrorCode, OAuthError};

/// A validated authorization request.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_login: bool,
    pub prompt_none: bool,
    /// Seconds: a session authenticated longer ago may not be reused (OIDC Core §3.1.2.1).
    #[serde(default)]
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    pub organization: Option<String>,
    pub connection: Option<String>,
    pub domain_hint: Option<String>,
}

impl AuthorizeRequest {
    /// Whether the request says where to sign in: a connection, an organization, or
    /// a domain (given, or that of an email `login_hint`).
    pub fn names_where_to_sign_in(&self) -> bool {
        self.connection.is_some()
            || self.organization.is_some()
            || self.domain_hint.is_some()
            || self.login_hint.as_deref().and_then(super::validate::email_domain).is_some()
    }
}

/// The request's parameters, refusing any given twice (RFC 6749 §3.1).
pub fn single_valued(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(k);
        }
    }
    Ok(map)
}

/// Checks the redirect URI against the application's list, byte for byte (RFC 9700
/// §2.1), except for the loopback port of a public client. An error here must be
/// shown as a page, never redirected.
pub fn trusted_redirect_uri(params: &HashMap<String, String>, app: &Application) -> Result<String, String> {
    let uri = params.get("redirect_uri").ok_or("the request has no redirect_uri")?;
    let public = app.client_type == ClientType::Public;
    if app.redirect_uris.iter().any(|r| r == uri || (public && same_loopback_uri_but_port(r, uri))) {
        Ok(uri.clone())
    } else {
        Err(format!("the redirect_uri `{uri}` is not registered for this application"))
    }
}

/// A native app listens on a port the OS picks at run time, so a loopback IP
/// literal redirect URI (`http://127.0.0.1/cb`, `http://[::1]/cb`) matches with any
/// port (RFC 8252 §7.3). Everything else must still be identical, and the requested
/// URI already in its canonical form (what the browser will be sent to). `localhost`
/// is not an IP literal and stays exact (RFC 8252 §8.3).
fn same_loopback_uri_but_port(registered: &str, requested: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use url::{Host, Url};
    let loopback_literal = |u: &Url| {
        let literal = match u.host() {
            Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
            Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
            _ => false,
        };
        u.scheme() == "http" && literal
    };
    let (Ok(mut r), Ok(mut q)) = (Url::parse(registered), Url::parse(requested)) else { return false };
    if q.as_str() != requested || !loopback_literal(&r) || !loopback_literal(&q) {
        return false;
    }
    // Loopback IP URLs always have a host, so clearing the port cannot fail.
    let (Ok(()), Ok(())) = (r.set_port(None), q.set_port(None)) else { return false };
    r == q
}

/// Validates the rest, once client and redirect URI are trusted.
pub fn validate(params: &HashMap<String, String>, app: &Application, redirect_uri: String) -> Result<AuthorizeRequest, OAuthError> {
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    if params.contains_key("request") || params.contains_key("request_uri") {
        return Err(OAuthError::new(ErrorCode::RequestNotSupported, "request objects are not supported"));
    }
    match get("response_type").as_deref() {
        Some("code") => {}
        Some(other) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                format!("response_type `{other}` is not supported; use `code`"),
            ))
        }
        None => return Err(OAuthError::new(ErrorCode::InvalidRequest, "response_type is missing")),
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "only response_mode=query is supported"));
    }
    let scopes: Vec<String> = get("scope").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "scope must include `openid`"));
    }
    let scopes: Vec<String> = scopes.into_iter().filter(|s| SUPPORTED_SCOPES.contains(&s.as_str())).collect();
    let code_challenge = get("code_challenge");
    match (code_challenge.as_deref(), get("code_challenge_method").as_deref()) {
        (Some(_), Some("S256")) => {}
        (Some(_), Some(m)) => {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, format!("code_challenge_method `{m}` is not supported; use S256")))
        }
        (Some(_), None) => {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "code_challenge_method must be S256 (plain is not supported)"))
        }
        (None, _) if app.client_type == ClientType::Public => {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "public clients must use PKCE (code_challenge with S256)"))
        }
        (None, _) => {}
    }
    if let Some(ch) = &code_challenge {
        if ch.len() != 43 || !ch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "code_challenge must be a base64url SHA-256 (43 characters)"));
        }
    }
    let prompts: Vec<String> = get("prompt").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let prompt_none = prompts.iter().any(|p| p == "none");
    if prompt_none && prompts.len() > 1 {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "prompt=none cannot be combined with other prompts"));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => {
            Some(v.parse::<u64>().map_err(|_| OAuthError::new(ErrorCode::InvalidRequest, "max_age must be a whole number of seconds"))?)
        }
    };
    for (name, max) in [("state", 2048), ("nonce", 512), ("login_hint", 512)] {
        if params.get(name).is_some_and(|v| v.len() > max) {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, format!("{name} is longer than {max} characters")));
        }
    }
    Ok(AuthorizeRequest {
        client_id: app.client_id.clone(),
        redirect_uri,
        scopes,
        state: params.get("state").cloned(),
        nonce: get("nonce"),
        code_challenge,
        prompt_login: prompts.iter().any(|p| p == "login" || p == "select_account"),
        prompt_none,
        max_age,
        login_hint: get("login_hint"),
        organization: get("organization"),
        connection: get("connection"),
        domain_hint: get("domain_hint"),
    })
}

/// How much the IdP's clock may differ from ours when its `auth_time` is judged.
const AUTH_TIME_LEEWAY_SECS: i64 = 60;

/// When the user authenticated, as far as the application may be told, checked
/// against what the request demanded (OIDC Core §3.1.2.1, §3.1.3.7 point 13): with
/// `max_age` the IdP must say (`auth_time`) and it must be recent enough; with
/// `prompt=login` an `auth_time` from before the sign-in started shows the IdP did
/// not re-authenticate. Without a word from the IdP, the sign-in's own time.
pub fn authenticated_at(req: &AuthorizeRequest, idp_auth_time: Option<i64>, started_at: i64, now: i64) -> Result<i64, OAuthError> {
    let stale =
        |why: &str| OAuthError::new(ErrorCode::AccessDenied, format!("the identity provider did not authenticate the user again: {why}"));
    match (idp_auth_time, req.max_age) {
        (None, Some(_)) => return Err(stale("its ID token has no auth_time, which max_age requires")),
        (Some(at), Some(max)) if now - at > max as i64 + AUTH_TIME_LEEWAY_SECS => {
            return Err(stale(&format!("it last authenticated the user {} s ago, more than max_age", now - at)))
        }
        (Some(at), _) if req.prompt_login && at < started_at - AUTH_TIME_LEEWAY_SECS => {
            return Err(stale("its auth_time is from before this sign-in started, though prompt=login asked it to"))
        }
        _ => {}
    }
    // An auth_time ahead of our clock is the IdP's clock; never later than now.
    Ok(idp_auth_time.map_or(now, |at| at.min(now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::application::TokenEndpointAuth;
    use crate::core::now;

    fn app(client_type: ClientType) -> Application {
        Application {
            id: "app_1".into(),
            name: "App".into(),
            client_id: "client_1".into(),
            client_type,
            id_token_signed_response_alg: "RS256".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: vec![],
            expose_idp_tokens: false,
            backchannel_logout_uri: None,
            frontchannel_logout_uri: None,
            frontchannel_logout_session_required: false,
            access_token_format: Default::default(),
            access_token_audience: None,
            token_endpoint_auth_method: TokenEndpointAuth::default_for(client_type),
            jwks: None,
            jwks_uri: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_id", "client_1"),
            ("redirect_uri", "https://app.example.com/cb"),
            ("response_type", "code"),
            ("scope", "openid email"),
            ("state", "s1"),
        ]
    }

    #[test]
    fn a_good_request_validates() {
        let p = params(&base());
        let uri = trusted_redirect_uri(&p, &app(ClientType::Confidential)).unwrap();
        let r = validate(&p, &app(ClientType::Confidential), uri).unwrap();
        assert_eq!(r.scopes, ["openid", "email"]);
        assert_eq!(r.state.as_deref(), Some("s1"));
        assert_eq!(r.max_age, None);
        let mut p = params(&base());
        p.insert("max_age".into(), "300".into());
        assert_eq!(validate(&p, &app(ClientType::Confidential), "https://app.example.com/cb".into()).unwrap().max_age, Some(300));
    }

    #[test]
    fn redirect_uris_match_exactly() {
        for bad in
            ["https://app.example.com/cb/", "https://app.example.com/cb?x=1", "https://APP.example.com/cb", "https://evil.example.com/cb"]
        {
            let mut b = base();
            b[1] = ("redirect_uri", bad);
            assert!(trusted_redirect_uri(&params(&b), &app(ClientType::Confidential)).is_err(), "{bad}");
        }
        assert!(trusted_redirect_uri(&params(&base()[..1]), &app(ClientType::Confidential)).is_err());
    }

    #[test]
    fn a_public_clients_loopback_redirect_uri_matches_any_port() {
        let mut native = app(ClientType::Public);
        native.redirect_uris = vec!["http://127.0.0.1/cb".into(), "http://[::1]:8080/cb?x=1".into(), "http://localhost/cb".into()];
        let asks = |app: &Application, uri: &str| {
            let mut b = base();
            b[1] = ("redirect_uri", uri);
            trusted_redirect_uri(&params(&b), app)
        };
        for good in ["http://127.0.0.1:51234/cb", "http://127.0.0.1/cb", "http://[::1]:1/cb?x=1", "http://[::1]/cb?x=1"] {
            assert_eq!(asks(&native, good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "http://127.0.0.1:5000/cb/",
            "http://127.0.0.1:5000/other",
            "http://127.0.0.1:5000/cb?x=1",
            "http://127.0.0.2:5000/cb",
            "https://127.0.0.1:5000/cb",
            "http://user@127.0.0.1:5000/cb",
            "http://127.0.0.1:5000/a/../cb",
            "http://127.0.0.1:5000/cb#f",
            "http://localhost:5000/cb",
            "http://[::1]:5000/cb",
        ] {
            assert!(asks(&native, bad).is_err(), "{bad}");
        }
        // Confidential clients stay exact.
        let mut web = native.clone();
        web.client_type = ClientType::Confidential;
        assert!(asks(&web, "http://127.0.0.1:51234/cb").is_err());
        assert!(asks(&web, "http://127.0.0.1/cb").is_ok());
    }

    #[test]
    fn errors_are_the_standard_ones() {
        let check = |extra: &[(&'static str, &'static str)], kind: ClientType, want: &str| {
            let mut b: HashMap<String, String> = params(&base());
            for (k, v) in extra {
                b.insert(k.to_string(), v.to_string());
            }
            let err = validate(&b, &app(kind), "https://app.example.com/cb".into()).unwrap_err();
            assert_eq!(err.code.as_str(), want, "{extra:?}: {}", err.description);
        };
        check(&[("response_type", "token")], ClientType::Confidential, "unsupported_response_type");
        check(&[("scope", "email")], ClientType::Confidential, "invalid_scope");
        check(
            &[("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), ("code_challenge_method", "plain")],
            ClientType::Confidential,
            "invalid_request",
        );
        check(&[], ClientType::Public, "invalid_request");
        check(&[("request", "eyJ...")], ClientType::Confidential, "request_not_supported");
        check(&[("prompt", "none login")], ClientType::Confidential, "invalid_request");
        check(&[("max_age", "-1")], ClientType::Confidential, "invalid_request");
        check(&[("max_age", "soon")], ClientType::Confidential, "invalid_request");
    }

    #[test]
    fn the_idps_auth_time_must_meet_max_age_and_prompt_login() {
        let req = |max_age: Option<u64>, prompt_login: bool| AuthorizeRequest { max_age, prompt_login, ..Default::default() };
        let (started, now) = (1_000, 1_010);
        assert_eq!(authenticated_at(&req(None, false), None, started, now), Ok(now));
        assert_eq!(authenticated_at(&req(None, false), Some(500), started, now), Ok(500), "the IdP's time is passed on");
        assert_eq!(authenticated_at(&req(Some(60), false), Some(1_005), started, now), Ok(1_005));
        assert!(authenticated_at(&req(Some(60), false), None, started, now).is_err(), "max_age needs auth_time");
        assert!(authenticated_at(&req(Some(1), false), Some(now - 7200), started, now).is_err(), "an IdP that ignored max_age");
        assert!(authenticated_at(&req(None, true), Some(now - 7200), started, now).is_err(), "an IdP that ignored prompt=login");
        assert_eq!(authenticated_at(&req(None, true), None, started, now), Ok(now), "IdPs need not send auth_time for prompt=login");
        assert_eq!(authenticated_at(&req(None, false), Some(now + 30), started, now), Ok(now), "never in the future");
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let pairs = vec![("state".to_string(), "a".to_string()), ("state".to_string(), "b".to_string())];
        assert_eq!(single_valued(pairs).unwrap_err(), "state");
    }
}
