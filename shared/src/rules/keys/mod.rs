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

#[cfg(test)]
pub(crate) mod testing {
    //! A local P-256 key that signs like KMS does, for unit tests of the rules.
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};

    use super::*;

    /// A fresh P-256 key.
    pub struct LocalSigner {
        pair: EcdsaKeyPair,
        trusted: TrustedKey,
    }

    impl LocalSigner {
        pub fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            let spki = pair.public_key().as_der().unwrap();
            let trusted = TrustedKey::from_spki(spki.as_ref(), KeyAlgorithm::ES256).unwrap();
            Self { pair, trusted }
        }

        /// The public half, as a verifier trusts it.
        pub fn trusted(&self) -> TrustedKey {
            TrustedKey::from_jwks(&serde_json::json!({"keys": [self.trusted.public_jwk()]}).to_string())
                .unwrap()
                .remove(0)
        }

        /// `header.payload.signature` for any header and payload text.
        pub fn sign_raw(&self, header: &str, payload: &[u8]) -> String {
            use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
            use base64::Engine as _;
            let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
            let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
            format!("{input}.{}", B64URL.encode(sig.as_ref()))
        }

        /// A token as our issuer writes it, with these claims.
        pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
            let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": self.trusted.kid()});
            self.sign_raw(&header.to_string(), claims.to_string().as_bytes())
        }
    }
}
