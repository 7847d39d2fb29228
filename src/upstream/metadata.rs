//! Provider metadata (OIDC Discovery 1.0) and signing keys (JWKS), and the checks
//! behind "Test connection": everything that would make logins through a connection
//! fail, found before a user hits it.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{IdpClient, UpstreamError};
use crate::core::connection::WELL_KNOWN_SUFFIX;
use crate::core::network::NetworkPolicy;

/// The fields of a discovery document ssogate uses; the rest is ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub backchannel_logout_supported: bool,
    #[serde(default)]
    pub frontchannel_logout_supported: bool,
}

/// Asymmetric algorithms ssogate accepts for ID tokens. `none` and the HMAC family are
/// never on it: HMAC would let anyone holding the (shared) client secret mint tokens.
pub const ALLOWED_SIGNING_ALGS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Whether `issuer` is the one a discovery URL promises: the URL without the
/// well-known suffix, or that with a terminating `/`, which OIDC Discovery 1.0 §4.1
/// removes before appending the suffix (LemonLDAP::NG's and Auth0's issuers end in
/// `/`). ID tokens' `iss` is then compared exactly with the document's `issuer`.
pub fn issuer_matches(discovery_url: &str, issuer: &str) -> bool {
    let promised = discovery_url.strip_suffix(WELL_KNOWN_SUFFIX).unwrap_or(discovery_url);
    issuer == promised || issuer.strip_suffix('/') == Some(promised)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub message: String,
}

fn finding(code: &'static str, message: impl Into<String>) -> Finding {
    Finding { code, message: message.into() }
}

/// What is wrong (problems) or merely worth knowing (warnings) about a discovery document.
pub fn check_metadata(discovery_url: &str, m: &ProviderMetadata, policy: &NetworkPolicy) -> (Vec<Finding>, Vec<Finding>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if !issuer_matches(discovery_url, &m.issuer) {
        let expected = discovery_url.strip_suffix(WELL_KNOWN_SUFFIX).unwrap_or(discovery_url);
        problems.push(finding(
            "issuer_mismatch",
            format!(
                "the document's issuer `{}` is not `{expected}`, the issuer its URL belongs to (OpenID Connect Discovery 1.0 §4.3)",
                m.issuer
            ),
        ));
    }
    let endpoints = [
        ("authorization_endpoint", &m.authorization_endpoint, true),
        ("token_endpoint", &m.token_endpoint, true),
        ("jwks_uri", &m.jwks_uri, true),
        ("userinfo_endpoint", &m.userinfo_endpoint, false),
        ("end_session_endpoint", &m.end_session_endpoint, false),
    ];
    for (name, value, required) in endpoints {
        match value {
            None if required => problems.push(finding("missing_endpoint", format!("the document has no `{name}`"))),
            None => {}
            Some(url) => {
                let checked =
                    url::Url::parse(url).map_err(|e| e.to_string()).and_then(|u| policy.check_url(name, &u).map_err(|e| e.message));
                if let Err(why) = checked {
                    problems.push(finding("insecure_endpoint", format!("`{name}` ({url}) {why}")));
                }
            }
        }
    }
    if m.userinfo_endpoint.is_none() {
        warnings.push(finding("no_userinfo", "no userinfo endpoint: profiles will hold only what the ID token carries"));
    }
    if !m.response_types_supported.is_empty() && !m.response_types_supported.iter().any(|t| t == "code") {
        problems.push(finding("code_flow_unsupported", "the provider does not support response_type=code"));
    }
    let algs = &m.id_token_signing_alg_values_supported;
    if !algs.is_empty() && !algs.iter().any(|a| ALLOWED_SIGNING_ALGS.contains(&a.as_str())) {
        problems.push(finding(
            "no_usable_alg",
            format!("ID tokens are signed with {algs:?}, none of which ssogate accepts ({ALLOWED_SIGNING_ALGS:?})"),
        ));
    }
    if !m.code_challenge_methods_supported.as_ref().is_some_and(|ms| ms.iter().any(|x| x == "S256")) {
        warnings.push(finding("no_pkce", "the provider does not advertise PKCE S256; logins will rely on state and nonce alone"));
    }
    (problems, warnings)
}

/// The keys of a JWKS that can verify ID tokens. Keys ssogate cannot parse (unknown
/// types, encryption keys) are skipped rather than failing the whole set.
pub fn usable_signing_keys(jwks: &Value) -> Result<Vec<Jwk>, UpstreamError> {
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or_else(|| UpstreamError::Malformed("the JWKS has no `keys` array".into()))?;
    Ok(keys
        .iter()
        .filter(|k| matches!(k.get("kty").and_then(Value::as_str), Some("RSA" | "EC" | "OKP")))
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(is_signing_key)
        .collect())
}

fn is_signing_key(k: &Jwk) -> bool {
    let for_signing = matches!(k.common.public_key_use, None | Some(PublicKeyUse::Signature));
    let asymmetric = !matches!(k.algorithm, AlgorithmParameters::OctetKey(_));
    let alg_ok = match k.common.key_algorithm {
        None => true,
        Some(alg) => matches!(
            alg,
            KeyAlgorithm::RS256
                | KeyAlgorithm::RS384
                | KeyAlgorithm::RS512
                | KeyAlgorithm::PS256
                | KeyAlgorithm::PS384
                | KeyAlgorithm::PS512
                | KeyAlgorithm::ES256
                | KeyAlgorithm::ES384
                | KeyAlgorithm::EdDSA
        ),
    };
    for_signing && asymmetric && alg_ok
}

/// The answer of `POST /connections/{id}/test`.
#[derive(Debug, Serialize)]
pub struct ConnectionReport {
    pub ok: bool,
    pub discovery_url: String,
    pub issuer: Option<String>,
    pub problems: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub signing_keys: usize,
    pub pkce: bool,
    /// Whether the IdP accepted the connection's client ID and secret: `accepted`,
    /// `refused`, or `unknown` (its answer did not tell).
    pub client_credentials: &'static str,
    /// Whether the IdP advertises refresh tokens (`offline_access`, the
    /// `refresh_token` grant); without them a session cannot follow the IdP.
    pub refresh_tokens: bool,
    /// How the IdP can tell ssogate a user signed out: `back_channel`,
    /// `front_channel` (OIDC Back-/Front-Channel Logout 1.0), and `end_session`
    /// (ssogate can send the browser to its logout, RP-Initiated Logout 1.0).
    pub logout_channels: Vec<&'static str>,
    /// The algorithms the IdP says it signs ID tokens with.
    pub signing_algs: Vec<String>,
}

/// How the IdP answers a token request carrying the connection's credentials and a
/// code that cannot be valid: a verdict on the credentials alone.
pub fn credentials_verdict(error: &str) -> Result<&'static str, Finding> {
    match error {
        // RFC 6749 §5.2: the client authenticated; only the grant was refused.
        "invalid_grant" | "invalid_request" => Ok("accepted"),
        "invalid_client" | "http_401" => Err(finding(
            "invalid_client",
            "the IdP refused the client ID or secret (invalid_client): copy them again from the IdP's application settings",
        )),
        "unauthorized_client" => Err(finding(
            "unauthorized_client",
            "the IdP knows the client but does not let it use the authorization code grant: enable it in the IdP's application settings",
        )),
        _ => Ok("unknown"),
    }
}

/// Fetches the discovery document and JWKS and reports every problem found;
/// `credentials` checks the client ID and secret at the token endpoint, given the
/// discovery document.
pub async fn test_connection<F, Fut>(client: &IdpClient, discovery_url: &str, credentials: F) -> ConnectionReport
where
    F: FnOnce(ProviderMetadata) -> Fut,
    Fut: std::future::Future<Output = Result<&'static str, Finding>>,
{
    let mut report = ConnectionReport {
        ok: false,
        discovery_url: discovery_url.to_owned(),
        issuer: None,
        problems: vec![],
        warnings: vec![],
        signing_keys: 0,
        pkce: false,
        client_credentials: "unknown",
        refresh_tokens: false,
        logout_channels: vec![],
        signing_algs: vec![],
    };
    let metadata: ProviderMetadata = match client.get_json(discovery_url).await {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(finding(fetch_code("discovery", &e), format!("discovery document: {e}")));
            return report;
        }
    };
    report.issuer = Some(metadata.issuer.clone());
    report.pkce = metadata.code_challenge_methods_supported.as_ref().is_some_and(|m| m.iter().any(|x| x == "S256"));
    report.refresh_tokens = metadata.scopes_supported.iter().any(|s| s == "offline_access")
        || metadata.grant_types_supported.iter().any(|g| g == "refresh_token");
    for (offered, channel) in [
        (metadata.backchannel_logout_supported, "back_channel"),
        (metadata.frontchannel_logout_supported, "front_channel"),
        (metadata.end_session_endpoint.is_some(), "end_session"),
    ] {
        if offered {
            report.logout_channels.push(channel);
        }
    }
    report.signing_algs = metadata.id_token_signing_alg_values_supported.clone();
    let (problems, warnings) = check_metadata(discovery_url, &metadata, client.policy());
    report.problems = problems;
    report.warnings = warnings;
    if let Some(jwks_uri) = &metadata.jwks_uri {
        match client.get_json::<Value>(jwks_uri).await.and_then(|v| usable_signing_keys(&v)) {
            Ok(keys) if keys.is_empty() => {
                report.problems.push(finding("no_signing_keys", "the JWKS holds no key ssogate can verify ID tokens with"))
            }
            Ok(keys) => report.signing_keys = keys.len(),
            Err(e) => report.problems.push(finding(fetch_code("jwks", &e), format!("JWKS: {e}"))),
        }
    }
    if metadata.token_endpoint.is_some() && report.problems.is_empty() {
        match credentials(metadata).await {
            Ok(verdict) => report.client_credentials = verdict,
            Err(problem) => {
                report.client_credentials = "refused";
                report.problems.push(problem);
            }
        }
        if report.client_credentials == "unknown" {
            report
                .warnings
                .push(finding("credentials_unchecked", "the IdP's token endpoint did not say whether the client ID and secret are right"));
        }
    }
    report.ok = report.problems.is_empty();
    report
}

fn fetch_code(what: &'static str, e: &UpstreamError) -> &'static str {
    match (what, e) {
        (_, UpstreamError::Forbidden(_)) => "forbidden_address",
        ("discovery", UpstreamError::Malformed(_)) => "invalid_discovery",
        ("jwks", UpstreamError::Malformed(_)) => "invalid_jwks",
        ("discovery", _) => "discovery_unreachable",
        _ => "jwks_unreachable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://idp.example.com/realms/acme/.well-known/openid-configuration";

    fn metadata(extra: Value) -> ProviderMetadata {
        let mut doc = json!({
            "issuer": "https://idp.example.com/realms/acme",
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "userinfo_endpoint": "https://idp.example.com/userinfo",
            "jwks_uri": "https://idp.example.com/jwks",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"]
        });
        doc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(doc).unwrap()
    }

    fn codes(found: &[Finding]) -> Vec<&str> {
        found.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_sound_document_has_no_problems() {
        let (p, w) = check_metadata(URL, &metadata(json!({})), &NetworkPolicy::default());
        assert!(p.is_empty(), "{p:?}");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let m = metadata(json!({
            "issuer": "https://idp.example.com/realms/other",
            "token_endpoint": "http://idp.example.com/token",
            "jwks_uri": null,
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["HS256", "none"],
            "code_challenge_methods_supported": ["plain"],
            "userinfo_endpoint": null
        }));
        let (p, w) = check_metadata(URL, &m, &NetworkPolicy::default());
        assert_eq!(codes(&p), ["issuer_mismatch", "insecure_endpoint", "missing_endpoint", "code_flow_unsupported", "no_usable_alg"]);
        assert!(p[0].message.contains("§4.3"));
        assert_eq!(codes(&w), ["no_userinfo", "no_pkce"]);
    }

    #[test]
    fn an_issuer_may_end_in_a_slash_the_discovery_url_leaves_out() {
        // OIDC Discovery 1.0 §4.1: `https://host/` is looked up at `https://host/.well-known/…`.
        let root = "https://idp.example.com/.well-known/openid-configuration";
        assert!(issuer_matches(root, "https://idp.example.com/"));
        assert!(issuer_matches(root, "https://idp.example.com"));
        assert!(issuer_matches(URL, "https://idp.example.com/realms/acme/"));
        assert!(!issuer_matches(URL, "https://idp.example.com/realms/acme//"));
        assert!(!issuer_matches(URL, "https://idp.example.com/realms/acm"));
        assert!(!issuer_matches(URL, "https://idp.example.com/realms"));
        assert!(!issuer_matches(root, "https://idp.example.com.evil.test/"));
        let (p, _) = check_metadata(URL, &metadata(json!({"issuer": "https://idp.example.com/realms/acme/"})), &NetworkPolicy::default());
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn only_asymmetric_signing_keys_are_usable() {
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "r", "use": "sig", "alg": "RS256", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"}
        ]});
        let keys = usable_signing_keys(&jwks).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.common.key_id.clone().unwrap()).collect();
        assert_eq!(kids, ["r", "e"]);
        assert!(usable_signing_keys(&json!({"nokeys": []})).is_err());
    }
}
