//! Secrets at rest and credentials: AES-256-GCM for what ssogate must read back
//! (IdP client secrets, upstream tokens, signing keys), SHA-256 for what it only
//! verifies (admin tokens, application client secrets — high-entropy, so a fast hash
//! is sound), and constant-time comparison throughout.

use aws_lc_rs::aead::{Aad, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{constant_time, digest, rand};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes, given as base64 or 64 hex characters")]
    BadKey,
    #[error("a stored secret could not be decrypted (wrong SSOGATE_ENCRYPTION_KEY, or the data was tampered with)")]
    Decrypt,
    #[error("the system random generator failed")]
    Random,
}

const ENVELOPE_VERSION: &str = "v1";

/// Encrypts and decrypts secrets stored in the database. Each ciphertext is bound to a
/// context (e.g. `connection:conn_…:client_secret`) as associated data, so a row's
/// secret copied into another tenant's row fails to decrypt.
pub struct SecretBox {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    #[expect(clippy::expect_used, reason = "aws-lc refuses only a key of the wrong length, which the type rules out")]
    pub fn new(key: &[u8; 32]) -> Self {
        let key = RandomizedNonceKey::new(&AES_256_GCM, key).expect("32 bytes is a valid AES-256 key");
        SecretBox { key }
    }

    /// Parses a key given as base64 (standard or URL-safe) or hex.
    pub fn parse_key(text: &str) -> Result<[u8; 32], CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16)).collect::<Result<Vec<_>, _>>().ok()
        } else {
            STANDARD.decode(text).ok().or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
        };
        bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or(CryptoError::BadKey)
    }

    pub fn generate_key() -> Result<[u8; 32], CryptoError> {
        let mut key = [0u8; 32];
        rand::fill(&mut key).map_err(|_| CryptoError::Random)?;
        Ok(key)
    }

    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let mut buf = plaintext.to_vec();
        let nonce = self.key.seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut buf).map_err(|_| CryptoError::Random)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{ENVELOPE_VERSION}:{}", URL_SAFE_NO_PAD.encode(out)))
    }

    pub fn decrypt(&self, context: &str, envelope: &str) -> Result<Vec<u8>, CryptoError> {
        let body = envelope.strip_prefix("v1:").ok_or(CryptoError::Decrypt)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| CryptoError::Decrypt)?;
        if raw.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut buf = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf).map_err(|_| CryptoError::Decrypt)?;
        Ok(plain.to_vec())
    }

    pub fn encrypt_str(&self, context: &str, plaintext: &str) -> Result<String, CryptoError> {
        self.encrypt(context, plaintext.as_bytes())
    }

    pub fn decrypt_str(&self, context: &str, envelope: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(context, envelope)?).map_err(|_| CryptoError::Decrypt)
    }
}

/// A random credential: `prefix` followed by 256 bits, URL-safe base64.
///
/// The one place ssogate panics at run time on purpose: the system random generator
/// (getrandom) does not fail on the platforms ssogate runs on, and if it ever did, no
/// state, code, token or secret could be made safely, so the request dies rather than
/// carry a weak or empty one.
#[expect(clippy::expect_used, reason = "no credential can be made without randomness; see above")]
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).expect("the system random generator works");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a credential ssogate only needs to verify.
pub fn hash_secret(secret: &str) -> String {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    format!("sha256:{}", URL_SAFE_NO_PAD.encode(d.as_ref()))
}

/// The signature of a webhook delivery, as the `ssogate-signature` header carries
/// it: `t=<unix ms>, v1=<hex HMAC-SHA256 of "<t>.<body>">` (the format WorkOS uses).
/// The timestamp is signed so that a receiver can refuse old replays.
pub fn webhook_signature(secret: &str, timestamp_ms: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{timestamp_ms}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp_ms}, v1={hex}")
}

/// Checks a presented credential against its stored hash in constant time.
pub fn verify_secret(presented: &str, stored_hash: &str) -> bool {
    constant_time::verify_slices_are_equal(hash_secret(presented).as_bytes(), stored_hash.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_are_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231 test case 2's key and data, split as "<t>.<body>" would be.
        let sig = webhook_signature("Jefe", 1, "what do ya want for nothing?");
        let (t, v1) = sig.split_once(", ").unwrap();
        assert_eq!(t, "t=1");
        assert_eq!(v1.len(), "v1=".len() + 64);
        assert_ne!(sig, webhook_signature("Jefe", 2, "what do ya want for nothing?"), "the timestamp is signed");
        assert_ne!(sig, webhook_signature("Jeff", 1, "what do ya want for nothing?"));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"Jefe");
        assert!(aws_lc_rs::hmac::verify(&key, b"1.what do ya want for nothing?", &hex_bytes(&v1[3..])).is_ok());
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn round_trip_and_context_binding() {
        let sb = SecretBox::new(&SecretBox::generate_key().unwrap());
        let env = sb.encrypt_str("connection:conn_a:client_secret", "hunter2").unwrap();
        assert!(!env.contains("hunter2"));
        assert_eq!(sb.decrypt_str("connection:conn_a:client_secret", &env).unwrap(), "hunter2");
        assert!(sb.decrypt_str("connection:conn_b:client_secret", &env).is_err());
        let other = SecretBox::new(&SecretBox::generate_key().unwrap());
        assert!(other.decrypt_str("connection:conn_a:client_secret", &env).is_err());
        // Nonces are random: the same plaintext never encrypts the same way twice.
        assert_ne!(env, sb.encrypt_str("connection:conn_a:client_secret", "hunter2").unwrap());
    }

    #[test]
    fn tampering_is_detected() {
        let sb = SecretBox::new(&[7u8; 32]);
        let env = sb.encrypt_str("ctx", "value").unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&env[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(sb.decrypt_str("ctx", &format!("v1:{}", URL_SAFE_NO_PAD.encode(raw))).is_err());
        assert!(sb.decrypt_str("ctx", "v1:").is_err());
        assert!(sb.decrypt_str("ctx", "garbage").is_err());
    }

    #[test]
    fn keys_parse_from_base64_or_hex() {
        let key = [0xabu8; 32];
        assert_eq!(SecretBox::parse_key(&STANDARD.encode(key)).unwrap(), key);
        assert_eq!(SecretBox::parse_key(&URL_SAFE_NO_PAD.encode(key)).unwrap(), key);
        assert_eq!(SecretBox::parse_key(&"ab".repeat(32)).unwrap(), key);
        assert!(SecretBox::parse_key("short").is_err());
    }

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let token = random_token("ssogate_admin_");
        assert!(token.len() > 40);
        let h = hash_secret(&token);
        assert!(verify_secret(&token, &h));
        assert!(!verify_secret("nope", &h));
        assert_ne!(random_token(""), random_token(""));
    }
}
