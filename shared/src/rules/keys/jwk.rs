//! Public keys as JWKs (RFC 7517, RFC 7518 §6): what a JWKS publishes and what a trusted
//! key set may be read from, and the RFC 7638 thumbprint that is every key's `kid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A P-256 public key as a JWK (RFC 7518 §6.2), members in the lexicographic order
/// RFC 7638 requires, so its JSON is the thumbprint input as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcPublicJwk {
    /// Always `P-256`.
    pub crv: &'static str,
    /// Always `EC`.
    pub kty: &'static str,
    /// The x coordinate, base64url, 32 bytes.
    pub x: String,
    /// The y coordinate, base64url, 32 bytes.
    pub y: String,
}

impl EcPublicJwk {
    /// Reads an uncompressed SEC1 point `0x04 || x || y`.
    pub fn from_uncompressed_point(point: &[u8]) -> Result<Self, &'static str> {
        match point {
            [0x04, xy @ ..] if xy.len() == 64 => {
                Ok(Self { crv: "P-256", kty: "EC", x: B64URL.encode(&xy[..32]), y: B64URL.encode(&xy[32..]) })
            }
            _ => Err("not an uncompressed P-256 point"),
        }
    }
}

/// An RSA public key as a JWK (RFC 7518 §6.3), members in RFC 7638 order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RsaPublicJwk {
    /// Public exponent, base64url, minimal big-endian.
    pub e: String,
    /// Always `RSA`.
    pub kty: &'static str,
    /// Modulus, base64url, minimal big-endian.
    pub n: String,
}

impl RsaPublicJwk {
    /// From the unsigned big-endian modulus and exponent.
    pub fn from_components(n: &[u8], e: &[u8]) -> Self {
        Self { e: B64URL.encode(e), kty: "RSA", n: B64URL.encode(n) }
    }
}

/// The RFC 7638 thumbprint of a JWK given as its required members in lexicographic order
/// ([`EcPublicJwk`], [`RsaPublicJwk`]): base64url(SHA-256 of that JSON, no whitespace).
/// Used as the `kid`, so a key's id is derived from the key itself.
pub fn thumbprint(required_members: &impl Serialize) -> String {
    // Serialising a struct of strings cannot fail.
    let canonical = serde_json::to_vec(required_members).unwrap_or_default();
    B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical))
}

/// A JWK as a JWKS document holds it: every member we read, as text. Checking is the
/// trusted key's business ([`super::TrustedKey::from_jwk`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JwkDocument {
    /// `EC` or `RSA`.
    pub kty: String,
    /// EC: the curve.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC: x.
    #[serde(default)]
    pub x: Option<String>,
    /// EC: y.
    #[serde(default)]
    pub y: Option<String>,
    /// RSA: modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA: exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// Key id; must be the thumbprint when present.
    #[serde(default)]
    pub kid: Option<String>,
    /// Algorithm; must be the key's when present.
    #[serde(default)]
    pub alg: Option<String>,
    /// Use; must be `sig` when present.
    #[serde(default, rename = "use")]
    pub key_use: Option<String>,
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, Deserialize)]
pub struct JwkSetDocument {
    /// The keys.
    pub keys: Vec<JwkDocument>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638's own example is an RSA key; for EC the value below was computed outside
    /// this code base (Python hashlib over the canonical JSON typed by hand) for the P-256
    /// key of RFC 7515 Appendix A.3 (x, y as printed there):
    /// sha256(b'{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}')
    #[test]
    fn thumbprint_matches_an_independent_computation() {
        let jwk = EcPublicJwk {
            crv: "P-256",
            kty: "EC",
            x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".to_owned(),
            y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&jwk).expect("json"),
            r#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#
        );
        assert_eq!(thumbprint(&jwk), EXPECTED_RFC7515_A3_THUMBPRINT);
    }

    const EXPECTED_RFC7515_A3_THUMBPRINT: &str = "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";

    /// RFC 7638 §3.1: the example RSA key and its thumbprint, from the RFC itself.
    #[test]
    fn rsa_thumbprint_matches_the_rfc7638_example() {
        let jwk = RsaPublicJwk {
            e: "AQAB".to_owned(),
            kty: "RSA",
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".to_owned(),
        };
        assert_eq!(thumbprint(&jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
