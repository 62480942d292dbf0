//! Signing keys: the KMS signer, the public key as a JWK, and its RFC 7638 thumbprint.
//!
//! The private key never leaves KMS. We hash `header.payload` ourselves and send only the
//! digest (`MessageType=DIGEST`), so the token's claims never travel to KMS either. KMS
//! answers an ECDSA signature in DER (RFC 3279 `Ecdsa-Sig-Value`); JWS wants the fixed
//! 64-byte `r || s` of RFC 7518 §3.4, which [`der_to_jose_es256`] produces.

use std::future::Future;
use std::pin::Pin;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::Serialize;

use crate::error::DependencyError;

/// The JOSE algorithm of a signing key. Fixed by the key, never taken from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4), on a KMS `ECC_NIST_P256` key.
    ES256,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
        }
    }
}

/// A boxed future, so [`Signer`] can be used as `dyn Signer`.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, DependencyError>> + Send + 'a>>;

/// Something that signs a SHA-256 digest and returns the JWS signature bytes
/// (`r || s` for ES256). KMS in production; a local key in unit tests.
pub trait Signer: Send + Sync {
    /// The key's algorithm.
    fn algorithm(&self) -> Algorithm;
    /// The key id put in the JWS header: the RFC 7638 thumbprint of the public key.
    fn kid(&self) -> &str;
    /// Signs a SHA-256 digest of the JWS signing input.
    fn sign_digest<'a>(&'a self, digest: &'a [u8; 32]) -> SignFuture<'a>;
}

/// Signs with an asymmetric KMS key through `kms:Sign`.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    kid: String,
    algorithm: Algorithm,
}

impl KmsSigner {
    /// Fetches the public key once (`kms:GetPublicKey`) to learn the algorithm and the
    /// `kid`. Call at cold start; signing then needs one `kms:Sign` per token.
    pub async fn load(client: aws_sdk_kms::Client, key_id: &str) -> Result<Self, DependencyError> {
        let jwk = fetch_public_jwk(&client, key_id).await?;
        Ok(Self { client, key_id: key_id.to_owned(), kid: jwk.thumbprint(), algorithm: Algorithm::ES256 })
    }
}

/// Fetches a KMS signing key's public half (`kms:GetPublicKey`) as a JWK. Only P-256 keys
/// that KMS offers for ECDSA_SHA_256 are accepted: the key, not a token, fixes the algorithm.
pub async fn fetch_public_jwk(client: &aws_sdk_kms::Client, key_id: &str) -> Result<EcPublicJwk, DependencyError> {
    let out =
        client.get_public_key().key_id(key_id).send().await.map_err(|e| DependencyError::kms("GetPublicKey", e))?;
    let bad = |message: &str| DependencyError::Kms { operation: "GetPublicKey", message: message.to_owned() };
    if !out.signing_algorithms().contains(&SigningAlgorithmSpec::EcdsaSha256) {
        return Err(bad("signing key must be an ECC_NIST_P256 SIGN_VERIFY key"));
    }
    let der = out.public_key().ok_or_else(|| bad("no public key in the answer"))?;
    EcPublicJwk::from_p256_spki(der.as_ref()).map_err(bad)
}

impl Signer for KmsSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn kid(&self) -> &str {
        &self.kid
    }

    fn sign_digest<'a>(&'a self, digest: &'a [u8; 32]) -> SignFuture<'a> {
        Box::pin(async move {
            let out = self
                .client
                .sign()
                .key_id(&self.key_id)
                .message(Blob::new(digest.as_slice()))
                .message_type(MessageType::Digest)
                .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                .send()
                .await
                .map_err(|e| DependencyError::kms("Sign", e))?;
            let der = out.signature().ok_or_else(|| DependencyError::Kms {
                operation: "Sign",
                message: "no signature in the answer".to_owned(),
            })?;
            der_to_jose_es256(der.as_ref())
                .map_err(|e| DependencyError::Kms { operation: "Sign", message: format!("unusable signature: {e}") })
        })
    }
}

/// Why a DER ECDSA signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerSignatureError {
    /// Not `SEQUENCE { INTEGER r, INTEGER s }` in strict DER.
    #[error("malformed DER ECDSA signature")]
    Malformed,
    /// r or s does not fit the curve's 32 bytes, or is zero.
    #[error("ECDSA integer out of range for P-256")]
    OutOfRange,
}

/// Converts a DER `Ecdsa-Sig-Value` (as KMS returns it) to JOSE's fixed-width `r || s`
/// (RFC 7518 §3.4): each integer left-padded with zeros to 32 bytes, its DER sign byte
/// (a leading 0x00 added when the high bit is set) dropped.
pub fn der_to_jose_es256(der: &[u8]) -> Result<Vec<u8>, DerSignatureError> {
    const WIDTH: usize = 32;
    let (body, rest) = der_element(der, 0x30)?;
    if !rest.is_empty() {
        return Err(DerSignatureError::Malformed);
    }
    let (r, rest) = der_element(body, 0x02)?;
    let (s, rest) = der_element(rest, 0x02)?;
    if !rest.is_empty() {
        return Err(DerSignatureError::Malformed);
    }
    let mut out = vec![0u8; 2 * WIDTH];
    for (i, int) in [r, s].into_iter().enumerate() {
        let magnitude = der_unsigned_magnitude(int)?;
        if magnitude.len() > WIDTH || magnitude.is_empty() {
            return Err(DerSignatureError::OutOfRange);
        }
        let end = (i + 1) * WIDTH;
        out[end - magnitude.len()..end].copy_from_slice(magnitude);
    }
    Ok(out)
}

/// Splits one DER element with the expected tag off the front: (contents, rest).
fn der_element(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerSignatureError> {
    let (&first, input) = input.split_first().ok_or(DerSignatureError::Malformed)?;
    if first != tag {
        return Err(DerSignatureError::Malformed);
    }
    let (&len0, input) = input.split_first().ok_or(DerSignatureError::Malformed)?;
    let (len, input) = match len0 {
        0..=0x7f => (usize::from(len0), input),
        // Long form with one length byte; DER requires it only for lengths >= 128.
        0x81 => {
            let (&len1, input) = input.split_first().ok_or(DerSignatureError::Malformed)?;
            if len1 < 0x80 {
                return Err(DerSignatureError::Malformed);
            }
            (usize::from(len1), input)
        }
        _ => return Err(DerSignatureError::Malformed),
    };
    if input.len() < len {
        return Err(DerSignatureError::Malformed);
    }
    Ok(input.split_at(len))
}

/// The magnitude of a non-negative, minimally encoded DER INTEGER (leading 0x00 sign byte
/// removed). Negative or non-minimal encodings and zero are refused.
fn der_unsigned_magnitude(int: &[u8]) -> Result<&[u8], DerSignatureError> {
    match int {
        [] => Err(DerSignatureError::Malformed),
        [first, ..] if first & 0x80 != 0 => Err(DerSignatureError::Malformed), // negative
        [0x00] => Err(DerSignatureError::OutOfRange),                          // zero
        [0x00, second, ..] if second & 0x80 == 0 => Err(DerSignatureError::Malformed), // non-minimal
        [0x00, rest @ ..] => Ok(rest),
        _ => Ok(int),
    }
}

/// A P-256 public key as a JWK (RFC 7517/7518 §6.2), members in the lexicographic order
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

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) up to the
/// BIT STRING holding the 65-byte uncompressed point. KMS always answers this form.
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl EcPublicJwk {
    /// Reads a DER SubjectPublicKeyInfo of a P-256 key (what `kms:GetPublicKey` returns).
    pub fn from_p256_spki(der: &[u8]) -> Result<Self, &'static str> {
        let point = der.strip_prefix(&P256_SPKI_PREFIX[..]).ok_or("not a P-256 SubjectPublicKeyInfo")?;
        Self::from_uncompressed_point(point)
    }

    /// Reads an uncompressed SEC1 point `0x04 || x || y`.
    pub fn from_uncompressed_point(point: &[u8]) -> Result<Self, &'static str> {
        match point {
            [0x04, xy @ ..] if xy.len() == 64 => {
                Ok(Self { crv: "P-256", kty: "EC", x: B64URL.encode(&xy[..32]), y: B64URL.encode(&xy[32..]) })
            }
            _ => Err("not an uncompressed P-256 point"),
        }
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256 of the required members, sorted, no
    /// whitespace). Used as the `kid`, so a key's id is derived from the key itself.
    pub fn thumbprint(&self) -> String {
        // Serialising a struct of strings cannot fail.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical))
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

/// rsaEncryption AlgorithmIdentifier: SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }.
const RSA_ALGORITHM_ID: [u8; 13] = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]; // + 05 00

impl RsaPublicJwk {
    /// Reads a DER SubjectPublicKeyInfo of an RSA key (what `kms:GetPublicKey` returns for
    /// an RSA_2048 key).
    pub fn from_spki(der: &[u8]) -> Result<Self, &'static str> {
        const BAD: &str = "not an RSA SubjectPublicKeyInfo";
        let (spki, rest) = der_read(der, 0x30).ok_or(BAD)?;
        if !rest.is_empty() {
            return Err(BAD);
        }
        let algorithm = spki.strip_prefix(&RSA_ALGORITHM_ID[..]).ok_or(BAD)?;
        let algorithm = algorithm.strip_prefix(&[0x05, 0x00][..]).ok_or(BAD)?;
        let (bits, rest) = der_read(algorithm, 0x03).ok_or(BAD)?;
        let key = bits.strip_prefix(&[0x00][..]).ok_or(BAD)?;
        if !rest.is_empty() {
            return Err(BAD);
        }
        let (rsa, rest) = der_read(key, 0x30).ok_or(BAD)?;
        if !rest.is_empty() {
            return Err(BAD);
        }
        let (n, rsa) = der_read(rsa, 0x02).ok_or(BAD)?;
        let (e, rest) = der_read(rsa, 0x02).ok_or(BAD)?;
        if !rest.is_empty() {
            return Err(BAD);
        }
        let unsigned = |int: &[u8]| match int {
            [0x00, rest @ ..] if !rest.is_empty() => rest.to_vec(),
            _ => int.to_vec(),
        };
        Ok(Self { e: B64URL.encode(unsigned(e)), kty: "RSA", n: B64URL.encode(unsigned(n)) })
    }

    /// The RFC 7638 thumbprint.
    pub fn thumbprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical))
    }
}

/// One DER element with tag `tag` off the front of `input`: (contents, rest). Definite
/// lengths up to 3 bytes, minimally encoded.
fn der_read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, input) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, mut input) = input.split_first()?;
    let len = match len0 {
        0..=0x7f => usize::from(len0),
        0x81..=0x83 => {
            let count = usize::from(len0 & 0x7f);
            if input.len() < count || input[0] == 0 {
                return None;
            }
            let len = input[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            input = &input[count..];
            if len < 0x80 {
                return None;
            }
            len
        }
        _ => return None,
    };
    (input.len() >= len).then(|| input.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, r.len() as u8];
        body.extend_from_slice(r);
        body.extend_from_slice(&[0x02, s.len() as u8]);
        body.extend_from_slice(s);
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn converts_full_width_integers_unchanged() {
        let r = [0x11u8; 32];
        let s = [0x22u8; 32];
        let jose = der_to_jose_es256(&der_sig(&r, &s)).expect("valid");
        assert_eq!(&jose[..32], &r);
        assert_eq!(&jose[32..], &s);
    }

    #[test]
    fn drops_the_sign_byte_of_integers_with_the_high_bit_set() {
        let mut r = vec![0x00];
        r.extend([0x80u8; 32]);
        let mut s = vec![0x00];
        s.extend([0xffu8; 32]);
        let jose = der_to_jose_es256(&der_sig(&r, &s)).expect("valid");
        assert_eq!(jose.len(), 64);
        assert_eq!(&jose[..32], &[0x80u8; 32]);
        assert_eq!(&jose[32..], &[0xffu8; 32]);
    }

    #[test]
    fn left_pads_short_integers_whose_leading_bytes_were_zero() {
        // r = 0x00 0x00 0x01 .. (30 significant bytes), s = 1.
        let r = [0x01u8; 30];
        let jose = der_to_jose_es256(&der_sig(&r, &[0x01])).expect("valid");
        assert_eq!(&jose[..2], &[0, 0]);
        assert_eq!(&jose[2..32], &r);
        assert_eq!(&jose[32..63], &[0u8; 31]);
        assert_eq!(jose[63], 1);
    }

    #[test]
    fn handles_a_short_integer_that_needs_a_sign_byte() {
        let r = [0x00, 0x9a, 0xbc];
        let jose = der_to_jose_es256(&der_sig(&r, &[0x7f])).expect("valid");
        assert_eq!(&jose[30..32], &[0x9a, 0xbc]);
        assert!(jose[..30].iter().all(|b| *b == 0));
    }

    #[test]
    fn matches_an_independent_signer_that_verifies() {
        // GIVEN a P-256 key in aws-lc-rs, signing in DER (the form KMS returns)
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
        let der_key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
        for i in 0..64u8 {
            let message = [i; 40];
            let der = der_key.sign(&rng, &message).expect("sign");
            // WHEN converted to JOSE
            let jose = der_to_jose_es256(der.as_ref()).expect("KMS-style DER converts");
            // THEN the fixed-width verifier accepts it
            let public =
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, der_key.public_key().as_ref());
            public.verify(&message, &jose).expect("JOSE signature verifies");
        }
    }

    #[test]
    fn refuses_malformed_der() {
        let good = der_sig(&[0x01; 32], &[0x02; 32]);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut wrong_tag = good.clone();
        wrong_tag[0] = 0x31;
        let cases: Vec<(Vec<u8>, DerSignatureError)> = vec![
            (vec![], DerSignatureError::Malformed),
            (trailing, DerSignatureError::Malformed),
            (wrong_tag, DerSignatureError::Malformed),
            (good[..good.len() - 1].to_vec(), DerSignatureError::Malformed),
            (der_sig(&[0x80; 32], &[0x01]), DerSignatureError::Malformed), // negative r
            (der_sig(&[0x00, 0x01], &[0x01]), DerSignatureError::Malformed), // non-minimal r
            (der_sig(&[0x00], &[0x01]), DerSignatureError::OutOfRange),    // r = 0
            (der_sig(&[0x01; 33], &[0x01]), DerSignatureError::OutOfRange), // r too wide
        ];
        for (der, expected) in cases {
            assert_eq!(der_to_jose_es256(&der), Err(expected), "{der:02x?}");
        }
    }

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
        assert_eq!(jwk.thumbprint(), EXPECTED_RFC7515_A3_THUMBPRINT);
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
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn reads_modulus_and_exponent_out_of_an_rsa_spki() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let spki = pair.public_key().as_der().expect("spki");
        let jwk = RsaPublicJwk::from_spki(spki.as_ref()).expect("RSA SPKI parses");
        assert_eq!(jwk.e, "AQAB");
        assert_eq!(B64URL.decode(&jwk.n).expect("b64").len(), 256, "2048-bit modulus, no sign byte");
        assert!(RsaPublicJwk::from_spki(&spki.as_ref()[1..]).is_err());
        let mut p256 = P256_SPKI_PREFIX.to_vec();
        p256.extend([4u8; 65]);
        assert!(RsaPublicJwk::from_spki(&p256).is_err());
    }

    #[test]
    fn reads_the_point_out_of_a_p256_spki() {
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.push(0x04);
        spki.extend([0xaa; 32]);
        spki.extend([0xbb; 32]);
        let jwk = EcPublicJwk::from_p256_spki(&spki).expect("valid SPKI");
        assert_eq!(B64URL.decode(&jwk.x).expect("b64"), vec![0xaa; 32]);
        assert_eq!(B64URL.decode(&jwk.y).expect("b64"), vec![0xbb; 32]);
        assert!(EcPublicJwk::from_p256_spki(&spki[..spki.len() - 1]).is_err());
        assert!(EcPublicJwk::from_p256_spki(&spki[1..]).is_err());
    }
}
