//! ID token validation, OpenID Connect Core 1.0 §3.1.3.7, step by step, each failure
//! its own error so the admin sees exactly why a login was refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::metadata::ALLOWED_SIGNING_ALGS;

pub type Claims = Map<String, Value>;

/// How far clocks may disagree, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// An ID token issued longer ago than this is refused (a fresh login made it).
pub const MAX_TOKEN_AGE_SECS: i64 = 600;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdTokenError {
    #[error("the ID token is not a well-formed JWT")]
    Malformed,
    #[error("the ID token's algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the ID token is signed with key `{0}`, which is not in the provider's JWKS")]
    UnknownKey(String),
    #[error("the ID token names no key and the provider's JWKS has several")]
    AmbiguousKey,
    #[error("the ID token's signature is not valid")]
    BadSignature,
    #[error("the ID token's issuer `{0}` is not the connection's issuer")]
    WrongIssuer(String),
    #[error("the ID token is not meant for this client (aud)")]
    WrongAudience,
    #[error("the ID token's authorized party (azp) is not this client")]
    WrongAuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token has no valid iat")]
    MissingIssuedAt,
    #[error("the ID token's iat is too far from the current time")]
    IssuedAtOutOfRange,
    #[error("the ID token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the ID token's nonce does not match the login request")]
    NonceMismatch,
    #[error("the ID token has no sub")]
    MissingSubject,
    #[error("the logout token is not a back-channel logout event")]
    NotALogoutEvent,
    #[error("the logout token names neither a subject (sub) nor a session (sid)")]
    LogoutTargetMissing,
    #[error("the logout token carries a nonce, which logout tokens must not")]
    LogoutNonce,
    #[error("the logout token has no jti")]
    MissingTokenId,
}

impl IdTokenError {
    /// A stable code for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            IdTokenError::Malformed => "malformed",
            IdTokenError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            IdTokenError::UnknownKey(_) => "unknown_key",
            IdTokenError::AmbiguousKey => "ambiguous_key",
            IdTokenError::BadSignature => "bad_signature",
            IdTokenError::WrongIssuer(_) => "wrong_issuer",
            IdTokenError::WrongAudience => "wrong_audience",
            IdTokenError::WrongAuthorizedParty => "wrong_azp",
            IdTokenError::Expired => "expired",
            IdTokenError::MissingIssuedAt => "missing_iat",
            IdTokenError::IssuedAtOutOfRange => "iat_out_of_range",
            IdTokenError::NotYetValid => "not_yet_valid",
            IdTokenError::NonceMismatch => "nonce_mismatch",
            IdTokenError::MissingSubject => "missing_sub",
            IdTokenError::NotALogoutEvent => "not_a_logout_event",
            IdTokenError::LogoutTargetMissing => "logout_target_missing",
            IdTokenError::LogoutNonce => "logout_nonce",
            IdTokenError::MissingTokenId => "missing_jti",
        }
    }
}

/// What an ID token's `nonce` must be.
#[derive(Clone, Copy, Debug)]
pub enum Nonce<'a> {
    /// At sign-in: exactly the one sent.
    Exactly(&'a str),
    /// After a refresh: absent, or the sign-in's (OIDC Core §12.2).
    AbsentOr(&'a str),
}

/// What the token must match.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: Nonce<'a>,
    /// The client secret, when the connection opted in to HMAC-signed ID tokens.
    pub hmac_secret: Option<&'a str>,
    pub now: i64,
}

/// The `alg` and `kid` of a token's header, read without trusting anything else.
pub fn header(token: &str) -> Result<(String, Option<String>), IdTokenError> {
    let head = token.split('.').next().ok_or(IdTokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(head.trim_end_matches('=')).map_err(|_| IdTokenError::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| IdTokenError::Malformed)?;
    let alg = v.get("alg").and_then(Value::as_str).ok_or(IdTokenError::Malformed)?.to_owned();
    Ok((alg, v.get("kid").and_then(Value::as_str).map(str::to_owned)))
}

const HMAC_ALGS: [&str; 3] = ["HS256", "HS384", "HS512"];

/// Verifies `token` against `keys` and `expected`; returns its claims.
pub fn verify(token: &str, keys: &[Jwk], expected: &Expected) -> Result<Claims, IdTokenError> {
    let claims = verify_signature(token, keys, expected.hmac_secret)?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Verifies a back-channel logout token (OpenID Connect Back-Channel Logout 1.0
/// §2.6): signed like an ID token, for us, fresh, naming a subject or session, an
/// `events` member for logout, and no nonce. `expected.nonce` is not used.
pub fn verify_logout_token(token: &str, keys: &[Jwk], expected: &Expected) -> Result<Claims, IdTokenError> {
    let claims = verify_signature(token, keys, expected.hmac_secret)?;
    check_issuer_audience_and_times(&claims, expected)?;
    if !claims.get("events").and_then(Value::as_object).is_some_and(|e| e.get(LOGOUT_EVENT).is_some_and(Value::is_object)) {
        return Err(IdTokenError::NotALogoutEvent);
    }
    let named = |k: &str| claims.get(k).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
    if !named("sub") && !named("sid") {
        return Err(IdTokenError::LogoutTargetMissing);
    }
    if claims.contains_key("nonce") {
        return Err(IdTokenError::LogoutNonce);
    }
    if !named("jti") {
        return Err(IdTokenError::MissingTokenId);
    }
    Ok(claims)
}

/// Checks the header's algorithm against the allow-list and the signature against
/// the key it names; returns the claims, not yet checked.
pub fn verify_signature(token: &str, keys: &[Jwk], hmac_secret: Option<&str>) -> Result<Claims, IdTokenError> {
    if token.split('.').count() != 3 {
        return Err(IdTokenError::Malformed);
    }
    let (alg_name, kid) = header(token)?;
    let hmac = HMAC_ALGS.contains(&alg_name.as_str());
    if !(ALLOWED_SIGNING_ALGS.contains(&alg_name.as_str()) || hmac && hmac_secret.is_some()) {
        return Err(IdTokenError::AlgorithmNotAllowed(alg_name));
    }
    let alg: Algorithm = alg_name.parse().map_err(|_| IdTokenError::AlgorithmNotAllowed(alg_name.clone()))?;
    let key = if hmac {
        DecodingKey::from_secret(hmac_secret.unwrap_or_default().as_bytes())
    } else {
        let jwk = select_key(keys, kid.as_deref(), &alg_name)?;
        DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::BadSignature)?
    };
    let mut validation = Validation::new(alg);
    // The claims are checked afterwards, one by one, for precise errors.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    Ok(jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => IdTokenError::AlgorithmNotAllowed(alg_name.clone()),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => IdTokenError::BadSignature,
            _ => IdTokenError::Malformed,
        })?
        .claims)
}

/// The key a token's `kid` names; with no `kid`, the only usable key for its algorithm.
fn select_key<'k>(keys: &'k [Jwk], kid: Option<&str>, alg: &str) -> Result<&'k Jwk, IdTokenError> {
    // A key for signatures (or of no stated use), of the token's algorithm family
    // and, if it names one, of its algorithm: by `kid` too.
    let compatible = |k: &&Jwk| {
        k.common.public_key_use.as_ref().is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature)
            && k.common.key_algorithm.is_none_or(|ka| ka.to_string() == alg)
            && matches!(
                (&k.algorithm, &alg[..2]),
                (jsonwebtoken::jwk::AlgorithmParameters::RSA(_), "RS" | "PS")
                    | (jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_), "ES")
                    | (jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_), "Ed")
            )
    };
    match kid {
        Some(kid) => keys
            .iter()
            .filter(compatible)
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .ok_or_else(|| IdTokenError::UnknownKey(kid.to_owned())),
        None => {
            let mut candidates = keys.iter().filter(compatible);
            match (candidates.next(), candidates.next()) {
                (Some(k), None) => Ok(k),
                (None, _) => Err(IdTokenError::UnknownKey("(none)".into())),
                _ => Err(IdTokenError::AmbiguousKey),
            }
        }
    }
}

fn check_issuer_audience_and_times(c: &Claims, e: &Expected) -> Result<(), IdTokenError> {
    if c.get("iss").and_then(Value::as_str) != Some(e.issuer) {
        return Err(IdTokenError::WrongIssuer(c.get("iss").map(|v| v.to_string()).unwrap_or_default()));
    }
    let audiences: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&e.client_id) {
        return Err(IdTokenError::WrongAudience);
    }
    match c.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != e.client_id => return Err(IdTokenError::WrongAuthorizedParty),
        None if audiences.len() > 1 => return Err(IdTokenError::WrongAuthorizedParty),
        _ => {}
    }
    let exp = c.get("exp").and_then(Value::as_i64).ok_or(IdTokenError::Expired)?;
    if exp + CLOCK_SKEW_SECS <= e.now {
        return Err(IdTokenError::Expired);
    }
    let iat = c.get("iat").and_then(Value::as_i64).ok_or(IdTokenError::MissingIssuedAt)?;
    if iat > e.now + CLOCK_SKEW_SECS || iat < e.now - MAX_TOKEN_AGE_SECS - CLOCK_SKEW_SECS {
        return Err(IdTokenError::IssuedAtOutOfRange);
    }
    // RFC 7519 §4.1.5, with the same leeway as `exp` and `iat`; optional, but a
    // number when present.
    match c.get("nbf") {
        None => {}
        Some(nbf) => match nbf.as_i64() {
            Some(nbf) if nbf <= e.now + CLOCK_SKEW_SECS => {}
            _ => return Err(IdTokenError::NotYetValid),
        },
    }
    Ok(())
}

fn check_claims(c: &Claims, e: &Expected) -> Result<(), IdTokenError> {
    check_issuer_audience_and_times(c, e)?;
    let nonce = c.get("nonce").and_then(Value::as_str);
    let same =
        |want: &str| aws_lc_rs::constant_time::verify_slices_are_equal(nonce.unwrap_or_default().as_bytes(), want.as_bytes()).is_ok();
    let nonce_ok = match e.nonce {
        Nonce::Exactly(want) => same(want),
        Nonce::AbsentOr(want) => !c.contains_key("nonce") || same(want),
    };
    if !nonce_ok {
        return Err(IdTokenError::NonceMismatch);
    }
    if c.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(IdTokenError::MissingSubject);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::keys::{SigningAlg, SigningKey};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn expected<'a>() -> Expected<'a> {
        Expected { issuer: "https://idp.example.com", client_id: "ssogate", nonce: Nonce::Exactly("n-123"), hmac_secret: None, now: NOW }
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example.com", "aud": "ssogate", "sub": "u1", "exp": NOW + 300, "iat": NOW, "nonce": "n-123"})
    }

    fn key(kid: &str) -> (SigningKey, Jwk) {
        let (k, _) = SigningKey::generate(SigningAlg::ES256, kid.into()).unwrap();
        let jwk = serde_json::from_value(k.public_jwk()).unwrap();
        (k, jwk)
    }

    fn with(mut c: Value, f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        f(c.as_object_mut().unwrap());
        c
    }

    #[test]
    fn a_valid_token_passes() {
        let (k, jwk) = key("k1");
        let token = k.sign_jwt(&claims()).unwrap();
        assert_eq!(verify(&token, &[jwk], &expected()).unwrap()["sub"], "u1");
    }

    #[test]
    fn every_claim_rule_is_enforced() {
        let (k, jwk) = key("k1");
        let keys = [jwk];
        let cases: Vec<(Value, IdTokenError)> = vec![
            (
                with(claims(), |c| {
                    c.insert("iss".into(), json!("https://evil.example.com"));
                }),
                IdTokenError::WrongIssuer("\"https://evil.example.com\"".into()),
            ),
            (
                with(claims(), |c| {
                    c.insert("aud".into(), json!("someone-else"));
                }),
                IdTokenError::WrongAudience,
            ),
            (
                with(claims(), |c| {
                    c.insert("aud".into(), json!(["ssogate", "other"]));
                }),
                IdTokenError::WrongAuthorizedParty,
            ),
            (
                with(claims(), |c| {
                    c.insert("aud".into(), json!("ssogate"));
                    c.insert("azp".into(), json!("other"));
                }),
                IdTokenError::WrongAuthorizedParty,
            ),
            (
                with(claims(), |c| {
                    c.insert("exp".into(), json!(NOW - 120));
                }),
                IdTokenError::Expired,
            ),
            (
                with(claims(), |c| {
                    c.remove("exp");
                }),
                IdTokenError::Expired,
            ),
            (
                with(claims(), |c| {
                    c.remove("iat");
                }),
                IdTokenError::MissingIssuedAt,
            ),
            (
                with(claims(), |c| {
                    c.insert("iat".into(), json!(NOW + 3600));
                }),
                IdTokenError::IssuedAtOutOfRange,
            ),
            (
                with(claims(), |c| {
                    c.insert("iat".into(), json!(NOW - 7200));
                }),
                IdTokenError::IssuedAtOutOfRange,
            ),
            (
                with(claims(), |c| {
                    c.insert("nbf".into(), json!(NOW + CLOCK_SKEW_SECS + 1));
                }),
                IdTokenError::NotYetValid,
            ),
            (
                with(claims(), |c| {
                    c.insert("nbf".into(), json!("soon"));
                }),
                IdTokenError::NotYetValid,
            ),
            (
                with(claims(), |c| {
                    c.insert("nonce".into(), json!("other"));
                }),
                IdTokenError::NonceMismatch,
            ),
            (
                with(claims(), |c| {
                    c.remove("nonce");
                }),
                IdTokenError::NonceMismatch,
            ),
            (
                with(claims(), |c| {
                    c.remove("sub");
                }),
                IdTokenError::MissingSubject,
            ),
        ];
        for (c, want) in cases {
            let token = k.sign_jwt(&c).unwrap();
            assert_eq!(verify(&token, &keys, &expected()).unwrap_err(), want, "{c}");
        }
        // Several audiences are fine when azp names us.
        let ok = with(claims(), |c| {
            c.insert("aud".into(), json!(["ssogate", "other"]));
            c.insert("azp".into(), json!("ssogate"));
        });
        assert!(verify(&k.sign_jwt(&ok).unwrap(), &keys, &expected()).is_ok());
        // A clock slightly ahead at the IdP is within the leeway.
        let ok = with(claims(), |c| {
            c.insert("nbf".into(), json!(NOW + CLOCK_SKEW_SECS));
        });
        assert!(verify(&k.sign_jwt(&ok).unwrap(), &keys, &expected()).is_ok());
    }

    #[test]
    fn signatures_algorithms_and_keys() {
        let (k, jwk) = key("k1");
        let (other, other_jwk) = key("k2");
        let token = k.sign_jwt(&claims()).unwrap();
        // Tampered payload.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&with(claims(), |c| {
                c.insert("sub".into(), json!("admin"));
            }))
            .unwrap(),
        );
        assert_eq!(verify(&parts.join("."), std::slice::from_ref(&jwk), &expected()).unwrap_err(), IdTokenError::BadSignature);
        // Signed by a key whose kid is not in the JWKS.
        let foreign = other.sign_jwt(&claims()).unwrap();
        assert_eq!(verify(&foreign, std::slice::from_ref(&jwk), &expected()).unwrap_err(), IdTokenError::UnknownKey("k2".into()));
        // A kid that is in the JWKS but the signature is by another key.
        let mut forged: Vec<String> = foreign.split('.').map(String::from).collect();
        forged[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k1"}"#);
        assert_eq!(verify(&forged.join("."), &[jwk.clone(), other_jwk.clone()], &expected()).unwrap_err(), IdTokenError::BadSignature);
        // alg none, and HMAC without opt-in.
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(verify(&none, std::slice::from_ref(&jwk), &expected()).unwrap_err(), IdTokenError::AlgorithmNotAllowed("none".into()));
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(b"client-secret"),
        )
        .unwrap();
        assert_eq!(verify(&hs, std::slice::from_ref(&jwk), &expected()).unwrap_err(), IdTokenError::AlgorithmNotAllowed("HS256".into()));
        // HMAC with opt-in verifies with the client secret, and only with it.
        let opted = Expected { hmac_secret: Some("client-secret"), ..expected() };
        assert!(verify(&hs, &[], &opted).is_ok());
        let wrong = Expected { hmac_secret: Some("another-secret"), ..expected() };
        assert_eq!(verify(&hs, &[], &wrong).unwrap_err(), IdTokenError::BadSignature);
        // No kid: accepted only when exactly one key fits.
        let (kid_less, pkcs8) = SigningKey::generate(SigningAlg::ES256, "unused".into()).unwrap();
        let no_kid =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::ES256), &claims(), &jsonwebtoken::EncodingKey::from_ec_der(&pkcs8))
                .unwrap();
        let jwk: Jwk = serde_json::from_value(kid_less.public_jwk()).unwrap();
        assert!(verify(&no_kid, std::slice::from_ref(&jwk), &expected()).is_ok());
        assert_eq!(verify(&no_kid, &[jwk, other_jwk], &expected()).unwrap_err(), IdTokenError::AmbiguousKey);
        assert_eq!(verify("a.b", &[], &expected()).unwrap_err(), IdTokenError::Malformed);
    }

    #[test]
    fn refreshed_tokens_may_drop_the_nonce_but_not_change_it() {
        let (k, jwk) = key("k1");
        let keys = [jwk];
        let refresh = Expected { nonce: Nonce::AbsentOr("n-123"), ..expected() };
        let without = with(claims(), |c| {
            c.remove("nonce");
        });
        assert!(verify(&k.sign_jwt(&without).unwrap(), &keys, &refresh).is_ok());
        assert!(verify(&k.sign_jwt(&claims()).unwrap(), &keys, &refresh).is_ok());
        let other = with(claims(), |c| {
            c.insert("nonce".into(), json!("n-999"));
        });
        assert_eq!(verify(&k.sign_jwt(&other).unwrap(), &keys, &refresh).unwrap_err(), IdTokenError::NonceMismatch);
    }

    #[test]
    fn logout_tokens_are_checked_per_the_back_channel_spec() {
        let (k, jwk) = key("k1");
        let keys = [jwk];
        let good = json!({"iss": "https://idp.example.com", "aud": "ssogate", "iat": NOW, "exp": NOW + 120, "jti": "j1",
                          "sid": "s1", "events": {LOGOUT_EVENT: {}}});
        assert_eq!(verify_logout_token(&k.sign_jwt(&good).unwrap(), &keys, &expected()).unwrap()["sid"], "s1");
        let cases = [
            (
                with(good.clone(), |c| {
                    c.remove("events");
                }),
                IdTokenError::NotALogoutEvent,
            ),
            (
                with(good.clone(), |c| {
                    c.insert("events".into(), json!({"other": {}}));
                }),
                IdTokenError::NotALogoutEvent,
            ),
            (
                with(good.clone(), |c| {
                    c.remove("sid");
                }),
                IdTokenError::LogoutTargetMissing,
            ),
            (
                with(good.clone(), |c| {
                    c.insert("nonce".into(), json!("n"));
                }),
                IdTokenError::LogoutNonce,
            ),
            (
                with(good.clone(), |c| {
                    c.remove("jti");
                }),
                IdTokenError::MissingTokenId,
            ),
            (
                with(good.clone(), |c| {
                    c.insert("aud".into(), json!("other"));
                }),
                IdTokenError::WrongAudience,
            ),
            (
                with(good.clone(), |c| {
                    c.insert("iat".into(), json!(NOW - 7200));
                }),
                IdTokenError::IssuedAtOutOfRange,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(verify_logout_token(&k.sign_jwt(&c).unwrap(), &keys, &expected()).unwrap_err(), want, "{c}");
        }
        // An ID token is not a logout token, nor the reverse.
        assert_eq!(verify_logout_token(&k.sign_jwt(&claims()).unwrap(), &keys, &expected()).unwrap_err(), IdTokenError::NotALogoutEvent);
        assert_eq!(verify(&k.sign_jwt(&good).unwrap(), &keys, &expected()).unwrap_err(), IdTokenError::NonceMismatch);
    }
}
