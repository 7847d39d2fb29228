//! ssogate's own signing keys, as an OpenID Provider: generated at first start,
//! kept sealed in the store, held parsed in memory (parsing an RSA key costs more
//! than signing with it), and published as a JWKS.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
pub enum SigningAlg {
    RS256,
    ES256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 2] = [SigningAlg::RS256, SigningAlg::ES256];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("a stored signing key is unreadable")]
    Parse,
    #[error("signing failed")]
    Sign,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// One private signing key with its id.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} {})", self.alg.as_str(), self.kid)
    }
}

impl SigningKey {
    /// A new key; returns it with its PKCS#8 encoding, for sealing into the store.
    pub fn generate(alg: SigningAlg, kid: String) -> Result<(Self, Vec<u8>), KeyError> {
        let pkcs8 = match alg {
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
                pair.as_der().map_err(|_| KeyError::Generate)?.as_ref().to_vec()
            }
            SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
        };
        Ok((Self::from_pkcs8(alg, kid, &pkcs8)?, pkcs8))
    }

    pub fn from_pkcs8(alg: SigningAlg, kid: String, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = match alg {
            SigningAlg::RS256 => Pair::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Parse)?),
            SigningAlg::ES256 => Pair::Ec(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| KeyError::Parse)?),
        };
        Ok(SigningKey { kid, alg, pair })
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.pair {
            Pair::Rsa(p) => {
                let pk = p.public_key();
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                       "n": b64(pk.modulus().big_endian_without_leading_zero()),
                       "e": b64(pk.exponent().big_endian_without_leading_zero())})
            }
            Pair::Ec(p) => {
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": self.kid, "crv": "P-256",
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        }
    }

    /// A compact JWS (a signed JWT) of `claims`.
    pub fn sign_jwt<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        self.sign_jwt_typed(claims, "JWT")
    }

    /// A signed JWT whose header `typ` names what it is (e.g. `logout+jwt`), so it
    /// cannot be mistaken for another kind of token.
    pub fn sign_jwt_typed<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, KeyError> {
        let header = json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid});
        let mut input = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|_| KeyError::Sign)?);
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?));
        let signature = match &self.pair {
            Pair::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).map_err(|_| KeyError::Sign)?;
                sig
            }
            Pair::Ec(p) => p.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| KeyError::Sign)?.as_ref().to_vec(),
        };
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(input)
    }
}

/// `at_hash` (OIDC Core 3.1.3.6): the left half of the SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    #[test]
    fn signed_tokens_verify_with_the_published_key() {
        for (alg, jalg) in [(SigningAlg::RS256, Algorithm::RS256), (SigningAlg::ES256, Algorithm::ES256)] {
            let (key, pkcs8) = SigningKey::generate(alg, "k1".into()).unwrap();
            let reloaded = SigningKey::from_pkcs8(alg, "k1".into(), &pkcs8).unwrap();
            let token = reloaded.sign_jwt(&json!({"sub": "u", "exp": 4_000_000_000u64})).unwrap();
            let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
            let mut v = Validation::new(jalg);
            v.validate_aud = false;
            v.required_spec_claims.clear();
            let data = decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap();
            assert_eq!(data.claims["sub"], "u");
            assert_eq!(data.header.kid.as_deref(), Some("k1"));
        }
    }

    #[test]
    fn at_hash_matches_a_published_example() {
        // SHA-256 of the token is c1f82f98 4f55c630 2e76c97d 95ce93a8 …; its left half, base64url.
        assert_eq!(at_hash("dNZX1hEZ9wBCzNL40Upu646bdzQA"), "wfgvmE9VxjAudsl9lc6TqA");
    }
}
