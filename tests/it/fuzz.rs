//! Property-based fuzzing (proptest) of every parser that reads input from outside:
//! the group-mapping text admins type, ID tokens from IdPs, discovery documents and
//! JWKS, authorization requests from browsers, and sealed cookies coming back. Each
//! must answer with an error, never panic, and what it accepts must be coherent.
//! Bounded for CI: `PROPTEST_CASES` (default 2000 per target) sets the effort.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};
use ssogate::core::application::{Application, ClientType};
use ssogate::core::authorize;
use ssogate::core::group_mapping::GroupMapping;
use ssogate::core::network::NetworkPolicy;
use ssogate::core::now;
use ssogate::crypto::SecretBox;
use ssogate::oidc::keys::{SigningAlg, SigningKey};
use ssogate::upstream::id_token::{self, Expected, Nonce};
use ssogate::upstream::metadata::{check_metadata, usable_signing_keys, ProviderMetadata};

fn config() -> ProptestConfig {
    ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000), ..ProptestConfig::default() }
}

/// Any JSON value, nested a few levels, with strings that look like the real thing.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z:/._-]{0,24}".prop_map(Value::from),
        prop_oneof![Just("https://idp.example.com"), Just("RS256"), Just("ES256"), Just("none"), Just("code"), Just("sig")]
            .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{1,24}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn app() -> Application {
    Application {
        id: "app_1".into(),
        name: "App".into(),
        client_id: "client_1".into(),
        client_type: ClientType::Confidential,
        id_token_signed_response_alg: "RS256".into(),
        redirect_uris: vec!["https://app.example.com/cb".into()],
        post_logout_redirect_uris: vec![],
        expose_idp_tokens: false,
        backchannel_logout_uri: None,
        frontchannel_logout_uri: None,
        frontchannel_logout_session_required: false,
        access_token_format: Default::default(),
        access_token_audience: None,
        token_endpoint_auth_method: ssogate::core::application::TokenEndpointAuth::ClientSecretBasic,
        jwks: None,
        jwks_uri: None,
        created_at: now(),
        updated_at: now(),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Accepted mappings are canonical: printing and parsing again gives the same mapping.
    #[test]
    fn group_mappings_parse_or_refuse_and_round_trip(text in "([A-Za-z ]{0,8}(->|-|>|,|\n| ){0,3}){0,8}") {
        match GroupMapping::parse(&text) {
            Ok(m) => prop_assert_eq!(GroupMapping::parse(&m.to_string()).unwrap(), m),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    /// Garbage never passes as an ID token, whatever its header claims.
    #[test]
    fn id_tokens_from_garbage_are_refused(
        raw in ".{0,200}",
        alg in prop_oneof![prop::sample::select(vec!["none", "HS256", "RS256", "ES256", "PS256"]).prop_map(String::from), "[A-Z0-9]{0,6}"],
        kid in prop::option::of("[a-z0-9-]{0,12}"),
        claims in json_value(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
        hmac in any::<bool>(),
    ) {
        let (key, _) = SigningKey::generate(SigningAlg::ES256, "k1".into()).unwrap();
        let keys = usable_signing_keys(&json!({"keys": [key.public_jwk()]})).unwrap();
        let expected = Expected {
            issuer: "https://idp.example.com",
            client_id: "client",
            nonce: Nonce::Exactly("n"),
            hmac_secret: hmac.then_some("shared-secret"),
            now: now().unix_timestamp(),
        };
        prop_assert!(id_token::verify(&raw, &keys, &expected).is_err());
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let forged = format!("{}.{}.{}", b64(&header), b64(&claims), URL_SAFE_NO_PAD.encode(&signature));
        prop_assert!(id_token::verify(&forged, &keys, &expected).is_err());
        prop_assert!(id_token::verify_logout_token(&forged, &keys, &expected).is_err());
    }

    /// Discovery documents and JWKS of any shape are read or refused, never crash the check.
    #[test]
    fn discovery_documents_and_jwks_of_any_shape(doc in json_value(), jwks in json_value(), keys in prop::collection::vec(json_value(), 0..4)) {
        if let Ok(m) = serde_json::from_value::<ProviderMetadata>(doc) {
            let _ = check_metadata("https://idp.example.com/.well-known/openid-configuration", &m, &NetworkPolicy::default());
        }
        let _ = usable_signing_keys(&jwks);
        if let Ok(found) = usable_signing_keys(&json!({"keys": keys})) {
            prop_assert!(found.len() <= keys.len());
        }
    }

    /// Authorization requests: any parameters give a request or an OAuth error; what
    /// is accepted asks for the code flow and carries what was sent.
    #[test]
    fn authorization_requests_validate_or_refuse(
        params in prop::collection::hash_map(
            prop_oneof![
                prop::sample::select(vec!["response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt",
                                          "login_hint", "organization", "connection", "domain_hint", "max_age", "request"]).prop_map(String::from),
                "[a-z_]{1,12}",
            ],
            prop_oneof![prop::sample::select(vec!["code", "openid", "openid email", "S256", "login", "none"]).prop_map(String::from), ".{0,40}"],
            0..10),
    ) {
        let params: HashMap<String, String> = params;
        match authorize::validate(&params, &app(), "https://app.example.com/cb".into()) {
            Ok(req) => {
                prop_assert_eq!(params.get("response_type").map(|s| s.trim()), Some("code"));
                prop_assert_eq!(req.redirect_uri.as_str(), "https://app.example.com/cb");
                prop_assert_eq!(req.state.as_deref(), params.get("state").map(|s| s.trim()).filter(|s| !s.is_empty()));
            }
            Err(e) => prop_assert!(!e.code.as_str().is_empty() && !e.description.is_empty()),
        }
        let pairs: Vec<(String, String)> = params.into_iter().collect();
        prop_assert!(authorize::single_valued(pairs).is_ok());
    }

    /// Sealed cookies and secrets coming back tampered, truncated or forged are refused.
    #[test]
    fn sealed_values_reject_anything_but_the_original(plain in ".{0,64}", garbage in ".{0,120}", flip in 0usize..200) {
        let sealer = SecretBox::new(&[7; 32]);
        let sealed = sealer.encrypt_str("login_state:x", &plain).unwrap();
        prop_assert_eq!(sealer.decrypt_str("login_state:x", &sealed).unwrap(), plain);
        prop_assert!(sealer.decrypt_str("login_state:y", &sealed).is_err());
        prop_assert!(sealer.decrypt("login_state:x", &garbage).is_err() || garbage == sealed);
        let mut bytes = sealed.clone().into_bytes();
        let i = flip % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(tampered == sealed || sealer.decrypt("login_state:x", &tampered).is_err());
        prop_assert!(sealer.decrypt("login_state:x", &sealed[..sealed.len() / 2]).is_err());
    }
}
