//! The floor of a brokered sign-in: the work no implementation can skip, timed in the
//! same run as ssogate so that the two compare on the day's machine. It is one
//! signature check of the IdP's ID token (RS256, as the fake IdP signs), one signature
//! of ssogate's ID token (RS256 or ES256), and the database's own work for the
//! statements a sign-in needs.

use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};

/// Seconds per operation of the sign-in's cryptography, with the calls ssogate makes
/// (aws-lc-rs), over a signing input the size of an ID token's.
pub struct Crypto {
    pub rs256_sign: f64,
    pub rs256_verify: f64,
    pub es256_sign: f64,
}

/// Mean seconds per call of `op`, over enough calls to take about half a second.
fn per_call(mut op: impl FnMut()) -> f64 {
    for _ in 0..20 {
        op();
    }
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed().as_secs_f64() < 0.5 {
        op();
        calls += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(calls)
}

impl Crypto {
    pub fn measure() -> Crypto {
        let rng = SystemRandom::new();
        let input = vec![b'e'; 800];
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let mut signature = vec![0; rsa.public_modulus_len()];
        let rs256_sign = per_call(|| rsa.sign(&RSA_PKCS1_SHA256, &rng, &input, &mut signature).unwrap());
        let public = rsa.public_key().as_ref().to_vec();
        let rs256_verify = per_call(|| UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public).verify(&input, &signature).unwrap());
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let es256_sign = per_call(|| {
            ec.sign(&rng, &input).unwrap();
        });
        Crypto { rs256_sign, rs256_verify, es256_sign }
    }

    /// Seconds of cryptography per sign-in whose ID token ssogate signs with `alg`.
    pub fn per_sign_in(&self, alg: &str) -> f64 {
        self.rs256_verify + if alg == "ES256" { self.es256_sign } else { self.rs256_sign }
    }
}

/// utime + stime of every PostgreSQL process on this machine (its backends, and the
/// writers and checkpointer that work for them), in seconds.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(|pid| super::try_cpu_seconds(pid))
        .sum()
}
