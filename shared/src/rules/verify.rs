//! The one access-token verifier (RFC 8725, RFC 9068 §4), written directly on aws-lc-rs
//! with keys parsed once. The authorizer (hot path), revoke and revoke-all all verify with
//! it, so a token is accepted by one of them exactly when it is accepted by all.
//!
//! Order of checks, cheapest and most dangerous first: size (before any parsing); strict
//! compact form (three non-empty parts, base64url without padding, canonical trailing
//! bits); the header as a JSON object with only `alg`, `typ`, `kid` (so `jwk`, `jku`,
//! `x5u`, `x5c` and `crit` are refused by construction); the key by `kid` among the
//! trusted keys; the header's `alg` must equal that key's algorithm exactly (the token
//! never chooses the algorithm); `typ` is `at+jwt`; the signature (ES256: exactly 64
//! bytes `r||s`); only then the payload, UTF-8 JSON (RFC 7519 §7.2) forming an object
//! without duplicate members, and its claims: every claim our issuer writes is required
//! (`iss sub aud exp iat jti client_id scope sid`), `iss` exact, `aud` equal or
//! containing, numeric claims numeric, `nbf` honoured, all with one clock leeway.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::rules::keys::{KeyAlgorithm, TrustedKey};
use crate::rules::token::{AccessClaims, Actor};

/// Largest token looked at; anything longer is refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

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

/// Verifies access tokens against the trusted keys, which a [`crate::services::keys::KeyRing`]
/// replaces when the key set changes (a read lock and a reference count per token).
#[derive(Debug)]
pub struct Verifier {
    keys: RwLock<Arc<Vec<TrustedKey>>>,
    issuer: String,
    audiences: Audiences,
    leeway_secs: u64,
}

/// Which `aud` values a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audiences {
    /// A token naming one of these (an API's `ACCESS_TOKEN_AUDIENCE`).
    OneOf(Vec<String>),
    /// Any audience: for the token endpoint, where a token exchange's subject token may be
    /// for any API the issuer serves, and for introspection, which reports the audience.
    Any,
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
        Self::for_audiences(keys, issuer, Audiences::OneOf(vec![audience]), leeway_secs)
    }

    /// A verifier trusting `keys`, for tokens of `issuer` to any of `audiences`.
    pub fn for_audiences(keys: Vec<TrustedKey>, issuer: String, audiences: Audiences, leeway_secs: u64) -> Self {
        Self { keys: RwLock::new(Arc::new(keys)), issuer, audiences, leeway_secs }
    }

    /// The trusted keys now.
    pub fn keys(&self) -> Arc<Vec<TrustedKey>> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Trusts exactly `keys` from now on.
    pub fn replace_keys(&self, keys: Vec<TrustedKey>) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Verifies `token` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<AccessClaims, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Oversize);
        }
        let (header_b64, payload_b64, signature_b64) = compact_parts(token).ok_or(Rejection::Malformed)?;
        let keys = self.keys();
        let key = match keys.iter().find(|k| k.encoded_header() == header_b64) {
            Some(key) => key,
            None => key_for_header(&keys, header_b64)?,
        };
        // The signature is small: decoded on the stack, no allocation.
        let mut signature_buf = [0u8; 1024];
        let signature_len = B64URL.decode_slice(signature_b64, &mut signature_buf).map_err(|_| Rejection::Malformed)?;
        if key.algorithm() == KeyAlgorithm::ES256 && signature_len != 64 {
            return Err(Rejection::BadSignature);
        }
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        if !key.verifies(signing_input, &signature_buf[..signature_len]) {
            return Err(Rejection::BadSignature);
        }

        let payload_json = B64URL.decode(payload_b64).map_err(|_| Rejection::Malformed)?;
        // UTF-8 throughout, ignored members included (RFC 7519 §7.2, RFC 8259 §8.1): serde
        // skips an ignored string without looking at its bytes.
        let payload_json = std::str::from_utf8(&payload_json).map_err(|_| Rejection::Malformed)?;
        let claims: Claims<'_> = serde_json::from_str(payload_json).map_err(|_| Rejection::Malformed)?;
        self.check_claims(claims, now)
    }

    /// Every claim our issuer writes must be there (RFC 9068 §2.2 plus `sid`): a token that
    /// lacks one is not ours, whatever its signature, and could not be revoked by it. Only a
    /// service's own token has no `sid`, and then its `sub` is its `client_id` and no one
    /// acts for it.
    fn check_claims(&self, c: Claims<'_>, now: u64) -> Result<AccessClaims, Rejection> {
        let (Some(iss), Some(sub), Some(exp), Some(iat), Some(jti), Some(client_id), Some(scope)) =
            (c.iss, c.sub, c.exp, c.iat, c.jti, c.client_id, c.scope)
        else {
            return Err(Rejection::MissingClaim);
        };
        if sub.is_empty() || jti.is_empty() || client_id.is_empty() || c.sid.is_some_and(str::is_empty) {
            return Err(Rejection::MissingClaim);
        }
        if c.sid.is_none() && (sub != client_id || c.act.is_some()) {
            return Err(Rejection::MissingClaim);
        }
        if iss != self.issuer {
            return Err(Rejection::WrongIssuer);
        }
        let aud = match &self.audiences {
            Audiences::OneOf(accepted) => accepted.iter().find(|a| c.aud.contains(a)).cloned(),
            Audiences::Any => c.aud.first.map(str::to_owned),
        };
        let Some(aud) = aud else { return Err(Rejection::WrongAudience) };
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(Rejection::Expired);
        }
        let latest = now.saturating_add(self.leeway_secs);
        if iat > latest || c.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(Rejection::NotYetValid);
        }
        Ok(AccessClaims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud,
            exp,
            iat,
            jti: jti.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            sid: c.sid.map(str::to_owned),
            cnf: c.cnf.map(|jkt| crate::rules::token::Confirmation { jkt: jkt.to_owned() }),
            act: c.act,
        })
    }
}

/// The three non-empty parts of a JWS in compact form (RFC 7515 §7.1), nothing more: the
/// first check of an access token and of a DPoP proof.
pub fn compact_parts(jws: &str) -> Option<(&str, &str, &str)> {
    let mut parts = jws.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => Some((h, p, s)),
        _ => None,
    }
}

/// The key for a header other than the exact one our issuer writes: parsed and checked
/// member by member (the key by `kid`, then `alg` must be the key's, `typ` `at+jwt`).
fn key_for_header<'k>(keys: &'k [TrustedKey], header_b64: &str) -> Result<&'k TrustedKey, Rejection> {
    // Small: decoded on the stack, no allocation.
    let mut header_buf = [0u8; 512];
    let header_len = B64URL.decode_slice(header_b64, &mut header_buf).map_err(|_| Rejection::Malformed)?;
    let header_json = std::str::from_utf8(&header_buf[..header_len]).map_err(|_| Rejection::Malformed)?;
    let header: Header<'_> = serde_json::from_str(header_json).map_err(|_| Rejection::Malformed)?;
    let key = keys.iter().find(|k| k.kid() == header.kid).ok_or(Rejection::UnknownKey)?;
    if header.alg != key.algorithm().as_str() {
        return Err(Rejection::AlgorithmMismatch);
    }
    match header.typ {
        Some(t) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => Ok(key),
        _ => Err(Rejection::WrongType),
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
        self.first == Some(audience) || self.rest.contains(&audience)
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
    /// `cnf.jkt` only: a `cnf` without it binds nothing we can check, so is refused.
    cnf: Option<&'a str>,
    /// `act` of an exchanged token: `{"sub", "act"?}` and nothing else, at most
    /// [`MAX_ACTORS`] deep.
    act: Option<Actor>,
}

/// The longest actor chain accepted (exchanges of exchanges).
pub const MAX_ACTORS: usize = 8;

/// `cnf` of a DPoP-bound token: exactly `{"jkt": "<thumbprint>"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cnf<'a> {
    jkt: &'a str,
}

/// More unknown members than this is not an access token of ours.
const MAX_UNKNOWN_MEMBERS: usize = 54;

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
                let mut saw_aud = false;
                // Known claims are duplicates when already set; unknown ones are remembered.
                let mut unknown: [&'de str; MAX_UNKNOWN_MEMBERS] = [""; MAX_UNKNOWN_MEMBERS];
                let mut unknown_count = 0;
                while let Some(key) = map.next_key::<&'de str>()? {
                    let duplicate = match key {
                        "iss" => claims.iss.replace(map.next_value()?).is_some(),
                        "sub" => claims.sub.replace(map.next_value()?).is_some(),
                        "aud" => {
                            claims.aud = map.next_value()?;
                            std::mem::replace(&mut saw_aud, true)
                        }
                        "exp" => claims.exp.replace(map.next_value()?).is_some(),
                        "nbf" => claims.nbf.replace(map.next_value()?).is_some(),
                        "iat" => claims.iat.replace(map.next_value()?).is_some(),
                        "jti" => claims.jti.replace(map.next_value()?).is_some(),
                        "client_id" => claims.client_id.replace(map.next_value()?).is_some(),
                        "scope" => claims.scope.replace(map.next_value()?).is_some(),
                        "sid" => claims.sid.replace(map.next_value()?).is_some(),
                        "cnf" => claims.cnf.replace(map.next_value::<Cnf<'de>>()?.jkt).is_some(),
                        "act" => {
                            let act: Actor = map.next_value()?;
                            if act.chain().count() > MAX_ACTORS || act.chain().any(|a| a.sub.is_empty()) {
                                return Err(de::Error::custom("act"));
                            }
                            claims.act.replace(act).is_some()
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            if unknown[..unknown_count].contains(&key) {
                                true
                            } else if unknown_count == MAX_UNKNOWN_MEMBERS {
                                return Err(de::Error::custom("too many members"));
                            } else {
                                unknown[unknown_count] = key;
                                unknown_count += 1;
                                false
                            }
                        }
                    };
                    if duplicate {
                        return Err(de::Error::custom("duplicate member"));
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Attack tests: every way of getting a token past a careless verifier that we know of.
    use proptest::prelude::*;

    use crate::rules::keys::testing::LocalSigner;
    use serde_json::{json, Value};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://auth.example.test";
    const AUD: &str = "api";

    struct Keys {
        ec: LocalSigner,
        ec_spki: Vec<u8>,
        rsa: LocalSigner,
        verifier: Verifier,
    }

    fn keys() -> &'static Keys {
        static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let (ec, rsa) = (LocalSigner::new(), LocalSigner::rs256());
            let ec_spki = ec.spki().to_vec();
            let trusted = vec![
                TrustedKey::from_spki(&ec_spki, KeyAlgorithm::ES256).unwrap(),
                TrustedKey::from_spki(rsa.spki(), KeyAlgorithm::RS256).unwrap(),
            ];
            let verifier = Verifier::new(trusted, ISS.into(), AUD.into(), 30);
            Keys { ec, ec_spki, rsa, verifier }
        })
    }

    fn kid(alg: KeyAlgorithm) -> String {
        keys().verifier.keys().iter().find(|k| k.algorithm() == alg).unwrap().kid().to_owned()
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "user-1", "aud": AUD, "exp": NOW + 600, "iat": NOW - 10, "jti": "j1",
               "client_id": "first-party", "scope": "read write", "sid": "s1"})
    }

    fn header(alg: &str, kid: &str) -> Value {
        json!({"alg": alg, "typ": "at+jwt", "kid": kid})
    }

    fn b64(bytes: &[u8]) -> String {
        B64URL.encode(bytes)
    }

    /// `header.payload.signature` over raw JSON texts, signed with the EC key.
    fn es256_raw(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        format!("{input}.{}", b64(&keys().ec.signature(input.as_bytes())))
    }

    fn es256(header: &Value, payload: &Value) -> String {
        es256_raw(&header.to_string(), &payload.to_string())
    }

    fn rs256(header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
        format!("{input}.{}", b64(&keys().rsa.signature(input.as_bytes())))
    }

    /// A valid ES256 token with the header exactly as our issuer writes it.
    fn valid() -> String {
        let trusted = keys().verifier.keys();
        let key = trusted.iter().find(|k| k.algorithm() == KeyAlgorithm::ES256).unwrap();
        let header = String::from_utf8(B64URL.decode(key.encoded_header()).unwrap()).unwrap();
        es256_raw(&header, &claims().to_string())
    }

    fn verify(token: &str) -> Result<AccessClaims, Rejection> {
        keys().verifier.verify(token, NOW)
    }

    #[test]
    fn accepts_valid_es256_and_rs256_tokens_and_returns_the_context_claims() {
        let ok = verify(&valid()).expect("valid ES256");
        assert_eq!(
            (ok.sub.as_str(), ok.scope.as_str(), ok.sid.as_deref().unwrap_or_default(), ok.jti.as_str()),
            ("user-1", "read write", "s1", "j1")
        );
        assert!(verify(&rs256(&header("RS256", &kid(KeyAlgorithm::RS256)), &claims())).is_ok());
        let mut list = claims();
        list["aud"] = json!(["other", AUD]);
        assert!(verify(&es256(&header("ES256", &kid(KeyAlgorithm::ES256)), &list)).is_ok(), "aud containing");
        let mut typ = header("ES256", &kid(KeyAlgorithm::ES256));
        typ["typ"] = json!("application/at+jwt");
        assert!(verify(&es256(&typ, &claims())).is_ok());
    }

    #[test]
    fn the_header_our_issuer_writes_passes_every_header_check_of_the_parsing_path() {
        let trusted = keys().verifier.keys();
        for key in trusted.iter() {
            let parsed = key_for_header(&trusted, key.encoded_header()).expect("a header we accept");
            assert_eq!(parsed.kid(), key.kid());
            let json: Value = serde_json::from_slice(&B64URL.decode(key.encoded_header()).unwrap()).unwrap();
            assert_eq!(json, json!({"alg": key.algorithm().as_str(), "typ": "at+jwt", "kid": key.kid()}));
        }
        // The same claims under a header with the same members in another order: parsed.
        let reordered = es256(&header("ES256", &kid(KeyAlgorithm::ES256)), &claims());
        assert_ne!(reordered.split('.').next(), valid().split('.').next());
        assert_eq!(verify(&reordered), verify(&valid()));
    }

    #[test]
    fn refuses_alg_none_in_any_spelling() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = header(alg, &kid(KeyAlgorithm::ES256));
            let unsigned = format!("{}.{}.", b64(h.to_string().as_bytes()), b64(claims().to_string().as_bytes()));
            assert_eq!(verify(&unsigned), Err(Rejection::Malformed), "{alg} without signature");
            assert_eq!(verify(&format!("{unsigned}AAAA")), Err(Rejection::AlgorithmMismatch), "{alg} with junk");
        }
    }

    #[test]
    fn refuses_hs256_signed_with_the_public_key_in_every_form() {
        let ec_kid = kid(KeyAlgorithm::ES256);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&keys().ec_spki)
        );
        let jwk = serde_json::to_string(&crate::rules::keys::der::p256_spki_to_jwk(&keys().ec_spki).unwrap()).unwrap();
        for secret in [pem.as_bytes(), keys().ec_spki.as_slice(), jwk.as_bytes()] {
            let input = format!(
                "{}.{}",
                b64(header("HS256", &ec_kid).to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            assert_eq!(verify(&format!("{input}.{}", b64(tag.as_ref()))), Err(Rejection::AlgorithmMismatch));
        }
        // RS256 header with the EC key's kid, and the reverse: the key decides.
        assert_eq!(verify(&rs256(&header("RS256", &ec_kid), &claims())), Err(Rejection::AlgorithmMismatch));
        assert_eq!(
            verify(&es256(&header("ES256", &kid(KeyAlgorithm::RS256)), &claims())),
            Err(Rejection::AlgorithmMismatch)
        );
    }

    #[test]
    fn refuses_psychic_signatures_and_der_encoded_signatures() {
        let token = valid();
        let input = token.rsplit_once('.').unwrap().0;
        // CVE-2022-21449: r = s = 0, and r = s = n (the group order).
        let n: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6,
            0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
        ];
        let zero = [0u8; 64];
        let nn = [n, n].concat();
        for sig in [zero.as_slice(), nn.as_slice()] {
            assert_eq!(verify(&format!("{input}.{}", b64(sig))), Err(Rejection::BadSignature));
        }
        // The same valid signature in DER (what KMS returns) is not a JWS signature.
        let sig = B64URL.decode(token.rsplit_once('.').unwrap().1).unwrap();
        let mut der = vec![0x30, 0x44, 0x02, 0x20];
        der.extend_from_slice(&sig[..32]);
        der.extend_from_slice(&[0x02, 0x20]);
        der.extend_from_slice(&sig[32..]);
        assert_eq!(verify(&format!("{input}.{}", b64(&der))), Err(Rejection::BadSignature));
    }

    #[test]
    fn refuses_embedded_keys_key_urls_and_crit() {
        let attacker = json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        for (name, value) in [
            ("jwk", attacker),
            ("jku", json!("https://attacker.example/jwks.json")),
            ("x5u", json!("https://attacker.example/cert.pem")),
            ("x5c", json!(["MIIB"])),
            ("crit", json!(["exp"])),
        ] {
            let mut h = header("ES256", &kid(KeyAlgorithm::ES256));
            h[name] = value;
            assert_eq!(verify(&es256(&h, &claims())), Err(Rejection::Malformed), "{name}");
        }
    }

    #[test]
    fn refuses_unknown_and_path_traversal_kids() {
        for k in ["", "unknown", "../../../../etc/passwd", "..%2f..%2fkeys", &format!("{} ", kid(KeyAlgorithm::ES256))]
        {
            assert_eq!(verify(&es256(&header("ES256", k), &claims())), Err(Rejection::UnknownKey), "{k:?}");
        }
    }

    #[test]
    fn refuses_duplicate_members_in_header_and_payload() {
        let k = kid(KeyAlgorithm::ES256);
        let dup_header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{k}","kid":"{k}"}}"#);
        assert_eq!(verify(&es256_raw(&dup_header, &claims().to_string())), Err(Rejection::Malformed));
        let good_header = header("ES256", &k).to_string();
        let payload = claims().to_string();
        let dup_sub = payload.replacen('{', r#"{"sub":"admin","#, 1);
        assert_eq!(verify(&es256_raw(&good_header, &dup_sub)), Err(Rejection::Malformed), "duplicate known claim");
        let dup_unknown = payload.replacen('{', r#"{"x":1,"x":2,"#, 1);
        assert_eq!(
            verify(&es256_raw(&good_header, &dup_unknown)),
            Err(Rejection::Malformed),
            "duplicate unknown claim"
        );
    }

    #[test]
    fn refuses_padding_standard_alphabet_and_non_canonical_base64() {
        let token = valid();
        let parts: Vec<&str> = token.split('.').collect();
        let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
        assert_eq!(verify(&padded), Err(Rejection::Malformed));
        let standard = token.replace('-', "+").replace('_', "/");
        if standard != token {
            assert!(verify(&standard).is_err());
        }
        // A signature spelled with the standard alphabet is refused even when valid bytes.
        let std_sig = base64::engine::general_purpose::STANDARD_NO_PAD.encode(B64URL.decode(parts[2]).unwrap());
        if std_sig != parts[2] {
            assert_eq!(verify(&format!("{}.{}.{std_sig}", parts[0], parts[1])), Err(Rejection::Malformed));
        }
        for bad in
            ["a.b", "a.b.c.d", "..", &format!("{}..{}", parts[0], parts[2]), &format!(".{}.{}", parts[1], parts[2])]
        {
            assert_eq!(verify(bad), Err(Rejection::Malformed), "{bad}");
        }
    }

    #[test]
    fn checks_typ_iss_aud_and_time() {
        let k = kid(KeyAlgorithm::ES256);
        let with = |f: &dyn Fn(&mut Value, &mut Value)| {
            let (mut h, mut c) = (header("ES256", &k), claims());
            f(&mut h, &mut c);
            verify(&es256(&h, &c))
        };
        assert_eq!(with(&|h, _| h["typ"] = json!("JWT")), Err(Rejection::WrongType));
        assert_eq!(
            with(&|h, _| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            Err(Rejection::WrongType)
        );
        assert_eq!(with(&|_, c| c["iss"] = json!("https://evil.example")), Err(Rejection::WrongIssuer));
        assert_eq!(with(&|_, c| c["iss"] = json!(format!("{ISS}/"))), Err(Rejection::WrongIssuer));
        assert_eq!(with(&|_, c| c["aud"] = json!("other")), Err(Rejection::WrongAudience));
        assert_eq!(with(&|_, c| c["aud"] = json!([])), Err(Rejection::WrongAudience));
        assert_eq!(with(&|_, c| c["exp"] = json!(NOW - 31)), Err(Rejection::Expired));
        assert!(with(&|_, c| c["exp"] = json!(NOW - 29)).is_ok(), "within the leeway");
        assert_eq!(with(&|_, c| c["nbf"] = json!(NOW + 31)), Err(Rejection::NotYetValid));
        assert_eq!(with(&|_, c| c["iat"] = json!(NOW + 31)), Err(Rejection::NotYetValid));
        assert_eq!(
            with(&|_, c| c["exp"] = json!((NOW + 600).to_string())),
            Err(Rejection::Malformed),
            "exp as a string"
        );
        assert_eq!(with(&|_, c| c["exp"] = json!(1.8e9)), Err(Rejection::Malformed), "exp as a float");
        for required in ["exp", "iat", "sub", "jti", "iss", "client_id", "scope", "sid"] {
            assert_eq!(
                with(&|_, c| {
                    c.as_object_mut().unwrap().remove(required);
                }),
                Err(Rejection::MissingClaim),
                "{required}"
            );
        }
        assert_eq!(
            with(&|_, c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn refuses_empty_session_client_or_subject_and_accepts_an_empty_scope() {
        let k = kid(KeyAlgorithm::ES256);
        for (claim, value) in [("sid", json!("")), ("client_id", json!("")), ("sub", json!("")), ("jti", json!(""))] {
            let mut c = claims();
            c[claim] = value;
            assert_eq!(verify(&es256(&header("ES256", &k), &c)), Err(Rejection::MissingClaim), "{claim}");
        }
        let mut c = claims();
        c["scope"] = json!("");
        assert_eq!(verify(&es256(&header("ES256", &k), &c)).map(|t| t.scope), Ok(String::new()));
    }

    #[test]
    fn only_a_service_token_goes_without_a_session_and_no_one_acts_for_it() {
        let k = kid(KeyAlgorithm::ES256);
        let mut service = claims();
        service.as_object_mut().unwrap().remove("sid");
        service["sub"] = json!("svc-a");
        service["client_id"] = json!("svc-a");
        let verified = verify(&es256(&header("ES256", &k), &service)).unwrap();
        assert!(verified.is_service() && verified.sid.is_none());
        let mut user_without_session = claims();
        user_without_session.as_object_mut().unwrap().remove("sid");
        assert_eq!(verify(&es256(&header("ES256", &k), &user_without_session)), Err(Rejection::MissingClaim));
        let mut acted_for = service.clone();
        acted_for["act"] = json!({"sub": "svc-b"});
        assert_eq!(verify(&es256(&header("ES256", &k), &acted_for)), Err(Rejection::MissingClaim));
    }

    #[test]
    fn reads_a_nested_actor_chain_and_refuses_a_malformed_or_endless_one() {
        let k = kid(KeyAlgorithm::ES256);
        let mut exchanged = claims();
        exchanged["act"] = json!({"sub": "svc-c", "act": {"sub": "svc-b"}});
        let verified = verify(&es256(&header("ES256", &k), &exchanged)).unwrap();
        let chain: Vec<&str> = verified.act.as_ref().unwrap().chain().map(|a| a.sub.as_str()).collect();
        assert_eq!(chain, ["svc-c", "svc-b"]);
        assert!(!verified.is_service());
        let mut deep = json!({"sub": "svc-0"});
        for i in 1..=MAX_ACTORS {
            deep = json!({"sub": format!("svc-{i}"), "act": deep});
        }
        for act in [json!({"sub": ""}), json!({"sub": "a", "extra": 1}), json!("svc-b"), json!({}), deep] {
            let mut c = claims();
            c["act"] = act.clone();
            assert_eq!(verify(&es256(&header("ES256", &k), &c)), Err(Rejection::Malformed), "{act}");
        }
    }

    #[test]
    fn accepts_one_of_a_list_of_audiences_or_any_and_reports_the_one_accepted() {
        let trusted = || vec![TrustedKey::from_spki(&keys().ec_spki, KeyAlgorithm::ES256).unwrap()];
        let k = kid(KeyAlgorithm::ES256);
        let list = Verifier::for_audiences(
            trusted(),
            ISS.into(),
            Audiences::OneOf(vec!["https://api.b".into(), AUD.into()]),
            30,
        );
        let mut c = claims();
        c["aud"] = json!(["other", AUD]);
        let token = es256(&header("ES256", &k), &c);
        assert_eq!(list.verify(&token, NOW).map(|t| t.aud), Ok(AUD.to_owned()));
        c["aud"] = json!("https://api.c");
        let for_c = es256(&header("ES256", &k), &c);
        assert_eq!(list.verify(&for_c, NOW), Err(Rejection::WrongAudience));
        let any = Verifier::for_audiences(trusted(), ISS.into(), Audiences::Any, 30);
        assert_eq!(any.verify(&for_c, NOW).map(|t| t.aud), Ok("https://api.c".to_owned()));
        c["aud"] = json!([]);
        assert_eq!(any.verify(&es256(&header("ES256", &k), &c), NOW), Err(Rejection::WrongAudience));
    }

    #[test]
    fn refuses_a_claims_set_that_is_not_utf8_even_in_an_ignored_member() {
        let header = header("ES256", &kid(KeyAlgorithm::ES256)).to_string();
        let payload = claims().to_string();
        let mut bytes = payload.replacen('{', r#"{"note":"XX","#, 1).into_bytes();
        let at = bytes.windows(2).position(|w| w == b"XX").unwrap();
        bytes[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
        let input = format!("{}.{}", b64(header.as_bytes()), b64(&bytes));
        let sig = keys().ec.signature(input.as_bytes());
        assert_eq!(verify(&format!("{input}.{}", b64(sig.as_ref()))), Err(Rejection::Malformed));
        // The same member with valid UTF-8 is ignored as before.
        let fine = payload.replacen('{', r#"{"note":"\u00ff é","#, 1);
        assert!(verify(&es256_raw(&header, &fine)).is_ok());
    }

    #[test]
    fn refuses_oversize_tokens_before_parsing_and_deep_nesting_without_crashing() {
        assert_eq!(verify(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(Rejection::Oversize));
        let deep = format!(r#"{{"x":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let token = es256_raw(&header("ES256", &kid(KeyAlgorithm::ES256)).to_string(), &deep);
        assert_eq!(verify(&token), Err(Rejection::Oversize));
        let nested = format!(r#"{{"iss":"{ISS}","x":{}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
        let token = es256_raw(&header("ES256", &kid(KeyAlgorithm::ES256)).to_string(), &nested);
        assert!(token.len() < MAX_TOKEN_BYTES);
        assert_eq!(verify(&token), Err(Rejection::Malformed), "recursion limit, not a stack overflow");
    }

    /// The public JWKS of the test keys, as the issuer would publish it.
    fn jwks() -> Value {
        let ec = crate::rules::keys::der::p256_spki_to_jwk(&keys().ec_spki).unwrap();
        let rsa_spki = keys().rsa.spki().to_vec();
        let rsa = crate::rules::keys::der::rsa_spki_to_jwk(&rsa_spki).unwrap();
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": ec.x, "y": ec.y, "alg": "ES256", "use": "sig", "kid": kid(KeyAlgorithm::ES256)},
            {"kty": "RSA", "n": rsa.n, "e": rsa.e, "alg": "RS256", "use": "sig", "kid": kid(KeyAlgorithm::RS256)},
        ]})
    }

    #[test]
    fn keys_from_a_jwks_verify_the_same_tokens_as_keys_from_kms() {
        let keys = TrustedKey::from_jwks(&jwks().to_string()).expect("valid JWKS");
        let kids: Vec<_> = keys.iter().map(|k| (k.kid().to_owned(), k.algorithm())).collect();
        assert_eq!(
            kids,
            vec![(kid(KeyAlgorithm::ES256), KeyAlgorithm::ES256), (kid(KeyAlgorithm::RS256), KeyAlgorithm::RS256)]
        );
        let published = json!({"keys": keys.iter().map(TrustedKey::public_jwk).collect::<Vec<_>>()});
        assert_eq!(published, jwks(), "what a key publishes is what it was read from");
        let verifier = Verifier::new(keys, ISS.into(), AUD.into(), 30);
        assert!(verifier.verify(&valid(), NOW).is_ok());
        assert!(verifier.verify(&rs256(&header("RS256", &kid(KeyAlgorithm::RS256)), &claims()), NOW).is_ok());
    }

    #[test]
    fn refuses_a_jwks_whose_keys_claim_something_else() {
        let refused = |change: &dyn Fn(&mut Value)| {
            let mut doc = jwks();
            change(&mut doc);
            TrustedKey::from_jwks(&doc.to_string()).expect_err(&doc.to_string())
        };
        assert!(refused(&|d| d["keys"][0]["kid"] = json!("my-key")).contains("thumbprint"));
        assert!(refused(&|d| d["keys"][1]["alg"] = json!("PS256")).contains("alg"));
        assert!(refused(&|d| d["keys"][0]["alg"] = json!("HS256")).contains("alg"));
        assert!(refused(&|d| d["keys"][0]["use"] = json!("enc")).contains("use"));
        assert!(refused(&|d| d["keys"][0]["x"] = json!("AAAA")).contains("32 bytes"));
        assert!(refused(&|d| d["keys"][0]["crv"] = json!("P-384")).contains("supported"));
        assert!(refused(&|d| d["keys"] = json!([{"kty": "oct", "k": "c2VjcmV0"}])).contains("supported"));
        assert!(refused(&|d| d["keys"] = json!([])).contains("no keys"));
        assert!(refused(&|d| *d = json!("not a set")).contains("JWKS"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any change to a valid token is refused.
        #[test]
        fn mutated_tokens_are_never_allowed(index in 0usize..2000, byte in any::<u8>(), kind in 0u8..4) {
            let original = valid();
            let mut bytes = original.clone().into_bytes();
            let i = index % bytes.len();
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                2 => { bytes.remove(i); }
                _ => bytes.truncate(i),
            }
            if let Ok(mutated) = String::from_utf8(bytes) {
                prop_assume!(mutated != original);
                prop_assert!(verify(&mutated).is_err(), "accepted a mutation: {mutated}");
            }
        }
    }
}
