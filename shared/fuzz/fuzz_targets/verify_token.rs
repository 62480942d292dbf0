//! Fuzzes the hot-path token verifier: any input must be refused, without a panic (the
//! key's private half is gone, so no input can carry a valid signature).
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use libfuzzer_sys::fuzz_target;
use tokenauth::rules::keys::{KeyAlgorithm, TrustedKey};
use tokenauth::rules::verify::Verifier;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
        let spki = key.public_key().as_der().expect("spki");
        let trusted = TrustedKey::from_spki(spki.as_ref(), KeyAlgorithm::ES256).expect("trusted");
        Verifier::new(vec![trusted], "https://auth.example.test".into(), "api".into(), 30)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        // The key is fresh per process and its private half is dropped: nothing the fuzzer
        // produces can carry a valid signature, so everything must be refused.
        assert!(verifier().verify(token, 1_800_000_000).is_err());
    }
});
