//! Keys without I/O: what a key is, how it is named and read, and the lifecycle rules of
//! the set. Fetching, signing through KMS and changing the set are in
//! [`crate::services::keys`].
//!
//! - [`KeyAlgorithm`]: ES256 on a KMS `ECC_NIST_P256` key, RS256 on `RSA_2048`. The key
//!   fixes the algorithm; a token never chooses it.
//! - [`set`]: the key set and its gated lifecycle (pending → current → previous →
//!   retired, or revoked).
//! - [`Signer`]: what signs access tokens; the key that signs decides the header.
//! - [`TrustedKey`]: a public key parsed once for verification, with its `kid` (the RFC 7638
//!   thumbprint, [`jwk::thumbprint`]) and public JWK.
//! - [`der`]: the DER we read (SubjectPublicKeyInfo, KMS's ECDSA signatures).

pub mod der;
pub mod jwk;
pub mod set;
mod trusted;

use std::future::Future;
use std::pin::Pin;

pub use trusted::TrustedKey;

use crate::error::DependencyError;

/// The JOSE algorithm of a key. Fixed by the key, never taken from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 SHA-256 (RFC 7518 §3.4), signature `r||s` (64 bytes).
    ES256,
    /// RSASSA-PKCS1-v1_5 SHA-256 (RFC 7518 §3.3).
    RS256,
}

impl KeyAlgorithm {
    /// The JOSE `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }
}

/// A boxed future of a compact JWS, so [`Signer`] can be used as `dyn Signer`.
pub type JwsFuture<'a> = Pin<Box<dyn Future<Output = Result<String, DependencyError>> + Send + 'a>>;

/// Something that signs access tokens: the key that signs decides the header (`alg`,
/// `kid`), so a signer whose key changes at run time cannot pair one key's header with
/// another key's signature.
pub trait Signer: Send + Sync {
    /// Signs `payload` (the claims JSON) into a compact JWS `header.payload.signature`.
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a>;
}

#[cfg(any(test, feature = "testing"))]
pub mod testing {
    //! The one test key: a local ES256 or RS256 key that signs like KMS does and is a
    //! [`Signer`], for unit tests of the rules and for benchmarks (feature `testing`;
    //! never in a function binary).
    #![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine as _;

    use super::*;

    enum Pair {
        Ec(EcdsaKeyPair),
        Rsa(RsaKeyPair),
    }

    /// A fresh key pair and its public half as a verifier trusts it.
    pub struct LocalSigner {
        pair: Pair,
        spki: Vec<u8>,
        trusted: TrustedKey,
    }

    impl Default for LocalSigner {
        fn default() -> Self {
            Self::new()
        }
    }

    impl LocalSigner {
        /// A fresh P-256 key (ES256).
        pub fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
            let trusted = TrustedKey::from_spki(&spki, KeyAlgorithm::ES256).unwrap();
            Self { pair: Pair::Ec(pair), spki, trusted }
        }

        /// A fresh RSA-2048 key (RS256).
        pub fn rs256() -> Self {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
            let trusted = TrustedKey::from_spki(&spki, KeyAlgorithm::RS256).unwrap();
            Self { pair: Pair::Rsa(pair), spki, trusted }
        }

        /// The public half, as a verifier trusts it (read back from its JWK).
        pub fn trusted(&self) -> TrustedKey {
            TrustedKey::from_jwks(&serde_json::json!({"keys": [self.trusted.public_jwk()]}).to_string())
                .unwrap()
                .remove(0)
        }

        /// The public key's SubjectPublicKeyInfo (what `kms:GetPublicKey` returns).
        pub fn spki(&self) -> &[u8] {
            &self.spki
        }

        /// The signature of `input`: JOSE `r || s` for ES256, PKCS #1 v1.5 for RS256.
        pub fn signature(&self, input: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match &self.pair {
                Pair::Ec(pair) => pair.sign(&rng, input).unwrap().as_ref().to_vec(),
                Pair::Rsa(pair) => {
                    let mut sig = vec![0; pair.public_modulus_len()];
                    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                    sig
                }
            }
        }

        /// `header.payload.signature` for any header and payload text.
        pub fn sign_raw(&self, header: &str, payload: &[u8]) -> String {
            let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
            format!("{input}.{}", B64URL.encode(self.signature(input.as_bytes())))
        }

        /// A token as our issuer writes it (its exact header), with these claims.
        pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
            self.sign_payload(claims.to_string().as_bytes())
        }

        fn sign_payload(&self, payload: &[u8]) -> String {
            let header = crate::rules::token::encoded_header(self.trusted.algorithm().as_str(), self.trusted.kid());
            let input = format!("{header}.{}", B64URL.encode(payload));
            format!("{input}.{}", B64URL.encode(self.signature(input.as_bytes())))
        }
    }

    impl Signer for LocalSigner {
        fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a> {
            let jws = self.sign_payload(payload);
            Box::pin(async move { Ok(jws) })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::rules::verify::Verifier;

        #[tokio::test]
        async fn signs_as_a_signer_what_the_verifier_accepts_for_both_algorithms() {
            for key in [LocalSigner::new(), LocalSigner::rs256()] {
                let claims = serde_json::json!({"iss": "i", "sub": "u", "aud": "a", "exp": 2_000, "iat": 1_000,
                    "jti": "j", "client_id": "c", "scope": "read", "sid": "s"});
                let jws = key.sign_jws(claims.to_string().as_bytes()).await.unwrap();
                let verifier = Verifier::new(vec![key.trusted()], "i".into(), "a".into(), 30);
                assert_eq!(verifier.verify(&jws, 1_000).unwrap().sub, "u");
                assert_eq!(verifier.verify(&key.sign_claims(&claims), 1_000).unwrap().jti, "j");
            }
        }
    }
}
