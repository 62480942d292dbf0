//! The hot-path access-token verifier (RFC 8725, RFC 9068 §4), written directly on
//! aws-lc-rs with keys parsed once.
//!
//! Order of checks, cheapest and most dangerous first: size (before any parsing); strict
//! compact form (three non-empty parts, base64url without padding, canonical trailing
//! bits); the header as a JSON object with only `alg`, `typ`, `kid` (so `jwk`, `jku`,
//! `x5u`, `x5c` and `crit` are refused by construction); the key by `kid` among the
//! trusted keys; the header's `alg` must equal that key's algorithm exactly (the token
//! never chooses the algorithm); `typ` is `at+jwt`; the signature (ES256: exactly 64
//! bytes `r||s`); only then the payload, a JSON object without duplicate members, and its
//! claims (`iss` exact, `aud` equal or containing, `exp`/`iat`/`sub`/`jti` required,
//! numeric claims numeric, `nbf` honoured, all with a leeway).

use std::fmt;

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::keys::EcPublicJwk;

/// Largest token looked at; anything longer is refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The algorithm of a trusted key. The key decides; the token's header must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 SHA-256, signature `r||s` (64 bytes).
    ES256,
    /// RSASSA-PKCS1-v1_5 SHA-256.
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

/// A public key trusted for verification, parsed once.
pub struct TrustedKey {
    kid: String,
    algorithm: KeyAlgorithm,
    key: ParsedPublicKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish()
    }
}

impl TrustedKey {
    /// A P-256 key from its DER SubjectPublicKeyInfo (what `kms:GetPublicKey` returns);
    /// `kid` is its RFC 7638 thumbprint, as the issuer sets it.
    pub fn es256_from_spki(der: &[u8]) -> Result<Self, &'static str> {
        let jwk = EcPublicJwk::from_p256_spki(der)?;
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, der).map_err(|_| "P-256 key rejected")?;
        Ok(Self { kid: jwk.thumbprint(), algorithm: KeyAlgorithm::ES256, key })
    }

    /// An RSA key from its DER SubjectPublicKeyInfo; `kid` is its RFC 7638 thumbprint.
    pub fn rs256_from_spki(der: &[u8]) -> Result<Self, &'static str> {
        let jwk = crate::keys::RsaPublicJwk::from_spki(der)?;
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).map_err(|_| "RSA key rejected")?;
        Ok(Self { kid: jwk.thumbprint(), algorithm: KeyAlgorithm::RS256, key })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
}

/// Why a token was refused. Grouped into classes for the audit line and metrics; the
/// client is told nothing more than "unauthorized".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Longer than [`MAX_TOKEN_BYTES`].
    Oversize,
    /// Not a strict compact JWS with JSON object header and payload.
    Malformed,
    /// No trusted key has the header's `kid`.
    UnknownKey,
    /// The header's `alg` is not the key's algorithm.
    AlgorithmMismatch,
    /// `typ` is missing or not `at+jwt`.
    WrongType,
    /// The signature does not verify.
    BadSignature,
    /// A required claim is missing.
    MissingClaim,
    /// `iss` is not ours.
    WrongIssuer,
    /// `aud` does not name us.
    WrongAudience,
    /// Past `exp` (plus leeway).
    Expired,
    /// Before `nbf`, or `iat` in the future (beyond leeway).
    NotYetValid,
}

impl Rejection {
    /// The audit/metric class.
    pub fn class(self) -> &'static str {
        match self {
            Self::Oversize | Self::Malformed => "malformed",
            Self::UnknownKey | Self::AlgorithmMismatch | Self::BadSignature => "bad_signature",
            Self::WrongType | Self::MissingClaim | Self::WrongIssuer | Self::WrongAudience => "invalid_claims",
            Self::Expired | Self::NotYetValid => "expired",
        }
    }
}

/// The claims the authorizer passes on, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// User id.
    pub sub: String,
    /// Granted scope, space-separated.
    pub scope: String,
    /// Client.
    pub client_id: String,
    /// Session (family) id.
    pub sid: String,
    /// Token id.
    pub jti: String,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
}

/// Verifies access tokens against a fixed set of trusted keys.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<TrustedKey>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header<'a> {
    alg: &'a str,
    #[serde(default)]
    typ: Option<&'a str>,
    kid: &'a str,
}

impl Verifier {
    /// A verifier trusting `keys`, for tokens of `issuer` to `audience`.
    pub fn new(keys: Vec<TrustedKey>, issuer: String, audience: String, leeway_secs: u64) -> Self {
        Self { keys, issuer, audience, leeway_secs }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Verifies `token` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Oversize);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(Rejection::Malformed);
        }
        let header_json = B64URL.decode(header_b64).map_err(|_| Rejection::Malformed)?;
        let header: Header<'_> = serde_json::from_slice(&header_json).map_err(|_| Rejection::Malformed)?;
        let key = self.keys.iter().find(|k| k.kid == header.kid).ok_or(Rejection::UnknownKey)?;
        if header.alg != key.algorithm.as_str() {
            return Err(Rejection::AlgorithmMismatch);
        }
        match header.typ {
            Some(t) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => {}
            _ => return Err(Rejection::WrongType),
        }
        let signature = B64URL.decode(signature_b64).map_err(|_| Rejection::Malformed)?;
        if key.algorithm == KeyAlgorithm::ES256 && signature.len() != 64 {
            return Err(Rejection::BadSignature);
        }
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        key.key.verify_sig(signing_input, &signature).map_err(|_| Rejection::BadSignature)?;

        let payload_json = B64URL.decode(payload_b64).map_err(|_| Rejection::Malformed)?;
        let claims: Claims<'_> = serde_json::from_slice(&payload_json).map_err(|_| Rejection::Malformed)?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, c: Claims<'_>, now: u64) -> Result<VerifiedToken, Rejection> {
        let (Some(iss), Some(sub), Some(exp), Some(iat), Some(jti)) = (c.iss, c.sub, c.exp, c.iat, c.jti) else {
            return Err(Rejection::MissingClaim);
        };
        if sub.is_empty() || jti.is_empty() {
            return Err(Rejection::MissingClaim);
        }
        if iss != self.issuer {
            return Err(Rejection::WrongIssuer);
        }
        if !c.aud.contains(&self.audience) {
            return Err(Rejection::WrongAudience);
        }
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(Rejection::Expired);
        }
        let latest = now.saturating_add(self.leeway_secs);
        if iat > latest || c.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(Rejection::NotYetValid);
        }
        Ok(VerifiedToken {
            sub: sub.to_owned(),
            scope: c.scope.unwrap_or_default().to_owned(),
            client_id: c.client_id.unwrap_or_default().to_owned(),
            sid: c.sid.unwrap_or_default().to_owned(),
            jti: jti.to_owned(),
            iat,
            exp,
        })
    }
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Default)]
struct Audience<'a> {
    first: Option<&'a str>,
    rest: Vec<&'a str>,
}

impl Audience<'_> {
    fn contains(&self, audience: &str) -> bool {
        self.first == Some(audience) || self.rest.iter().any(|a| *a == audience)
    }
}

impl<'de> Deserialize<'de> for Audience<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;
        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Audience { first: Some(v), rest: Vec::new() })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut audience = Audience::default();
                while let Some(a) = seq.next_element::<&'de str>()? {
                    if audience.first.is_none() {
                        audience.first = Some(a);
                    } else {
                        audience.rest.push(a);
                    }
                }
                Ok(audience)
            }
        }
        deserializer.deserialize_any(AudienceVisitor)
    }
}

/// The payload: known claims borrowed from the decoded JSON, unknown members skipped, any
/// member appearing twice refused (JSON allows it; RFC 7519 §4 and RFC 8725 do not).
#[derive(Default)]
struct Claims<'a> {
    iss: Option<&'a str>,
    sub: Option<&'a str>,
    aud: Audience<'a>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    jti: Option<&'a str>,
    client_id: Option<&'a str>,
    scope: Option<&'a str>,
    sid: Option<&'a str>,
}

/// More members than this is not an access token of ours.
const MAX_MEMBERS: usize = 64;

impl<'de> Deserialize<'de> for Claims<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimsVisitor;
        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = Claims<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut claims = Claims::default();
                let mut seen: Vec<&'de str> = Vec::with_capacity(12);
                let mut saw_aud = false;
                while let Some(key) = map.next_key::<&'de str>()? {
                    if seen.contains(&key) {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    if seen.len() == MAX_MEMBERS {
                        return Err(de::Error::custom("too many members"));
                    }
                    seen.push(key);
                    match key {
                        "iss" => claims.iss = Some(map.next_value()?),
                        "sub" => claims.sub = Some(map.next_value()?),
                        "aud" => {
                            claims.aud = map.next_value()?;
                            saw_aud = true;
                        }
                        "exp" => claims.exp = Some(map.next_value()?),
                        "nbf" => claims.nbf = Some(map.next_value()?),
                        "iat" => claims.iat = Some(map.next_value()?),
                        "jti" => claims.jti = Some(map.next_value()?),
                        "client_id" => claims.client_id = Some(map.next_value()?),
                        "scope" => claims.scope = Some(map.next_value()?),
                        "sid" => claims.sid = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if !saw_aud {
                    return Err(de::Error::custom("aud is required"));
                }
                Ok(claims)
            }
        }
        deserializer.deserialize_map(ClaimsVisitor)
    }
}
