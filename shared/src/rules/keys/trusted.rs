//! A public key trusted for verification: parsed once, with its `kid`, its algorithm, the
//! exact header our issuer writes for it, and its public JWK.

use std::fmt;

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

use super::der::{p256_spki, p256_spki_to_jwk, rsa_spki_to_jwk};
use super::jwk::{thumbprint, JwkDocument, JwkSetDocument};
use super::KeyAlgorithm;

/// A public key trusted for verification, parsed once.
pub struct TrustedKey {
    kid: String,
    algorithm: KeyAlgorithm,
    key: ParsedPublicKey,
    /// The header our issuer writes for this key, base64url: a token carrying exactly
    /// this needs no header parsing (it passes every header check by construction).
    encoded_header: String,
    /// The public JWK, with `kid`, `alg` and `use`.
    jwk: serde_json::Value,
    /// DER SubjectPublicKeyInfo, as KMS hands it out.
    spki: Vec<u8>,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish()
    }
}

impl TrustedKey {
    /// A key from its DER SubjectPublicKeyInfo (what `kms:GetPublicKey` returns) for
    /// `algorithm`; `kid` is its RFC 7638 thumbprint, as the issuer sets it.
    pub fn from_spki(der: &[u8], algorithm: KeyAlgorithm) -> Result<Self, &'static str> {
        let (public_jwk, kid, key) = match algorithm {
            KeyAlgorithm::ES256 => {
                let jwk = p256_spki_to_jwk(der)?;
                let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, der).map_err(|_| "P-256 key rejected")?;
                (serde_json::to_value(&jwk), thumbprint(&jwk), key)
            }
            KeyAlgorithm::RS256 => {
                let jwk = rsa_spki_to_jwk(der)?;
                let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).map_err(|_| "RSA key rejected")?;
                (serde_json::to_value(&jwk), thumbprint(&jwk), key)
            }
        };
        let encoded_header = crate::rules::token::encoded_header(algorithm.as_str(), &kid);
        // Serialising a struct of strings cannot fail.
        let mut jwk = public_jwk.unwrap_or_default();
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), kid.clone().into());
            members.insert("alg".into(), algorithm.as_str().into());
            members.insert("use".into(), "sig".into());
        }
        Ok(Self { kid, algorithm, key, encoded_header, jwk, spki: der.to_vec() })
    }

    /// A key from a public JWK (RFC 7517): EC P-256 (`x`, `y`) or RSA (`n`, `e`). Its `kid`
    /// is recomputed as the RFC 7638 thumbprint; a `kid`, `alg` or `use` in the JWK that
    /// disagrees is refused rather than trusted.
    pub fn from_jwk(jwk: &JwkDocument) -> Result<Self, String> {
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let coordinate = |c: Option<&String>| match c.map(|c| B64URL.decode(c)) {
                    Some(Ok(bytes)) if bytes.len() == 32 => Ok(bytes),
                    _ => Err("an EC coordinate is not 32 bytes of base64url"),
                };
                let (x, y) = (coordinate(jwk.x.as_ref())?, coordinate(jwk.y.as_ref())?);
                Self::from_spki(&p256_spki(&x, &y), KeyAlgorithm::ES256)
            }
            ("RSA", _) => {
                let component = |c: Option<&String>, name: &str| {
                    c.and_then(|c| B64URL.decode(c).ok()).ok_or_else(|| format!("`{name}` is not base64url"))
                };
                let (n, e) = (component(jwk.n.as_ref(), "n")?, component(jwk.e.as_ref(), "e")?);
                let spki = aws_lc_rs::encoding::AsDer::as_der(&aws_lc_rs::rsa::PublicKeyComponents { n, e })
                    .map_err(|_| "not a usable RSA key")?;
                Self::from_spki(spki.as_ref(), KeyAlgorithm::RS256)
            }
            _ => Err("only EC P-256 and RSA keys are supported"),
        }
        .map_err(str::to_owned)?;
        if jwk.alg.as_deref().is_some_and(|alg| alg != key.algorithm.as_str()) {
            return Err(format!("`alg` of key {} must be {}", key.kid, key.algorithm.as_str()));
        }
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(format!("`use` of key {} must be `sig`", key.kid));
        }
        if jwk.kid.as_ref().is_some_and(|kid| *kid != key.kid) {
            return Err(format!("`kid` of key {} must be its RFC 7638 thumbprint", key.kid));
        }
        Ok(key)
    }

    /// Every key of a JWKS document (`{"keys": [...]}`); at least one.
    pub fn from_jwks(document: &str) -> Result<Vec<Self>, String> {
        let set: JwkSetDocument = serde_json::from_str(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        if set.keys.is_empty() {
            return Err("the JWKS document has no keys".to_owned());
        }
        set.keys.iter().map(Self::from_jwk).collect()
    }

    /// The public key as a JWK (RFC 7517) with `kid`, `alg` and `use`: what a JWKS lists.
    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The base64url header our issuer writes for this key.
    pub fn encoded_header(&self) -> &str {
        &self.encoded_header
    }

    /// Whether `signature` is this key's signature of `message` under its algorithm.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}
