//! `private_key_jwt` (RFC 7523 §2.2, §3; OpenID Connect Core §9): a client proves itself
//! with a JWT it signed with a key of its registered JWKS (RFC 7517). Checked here without
//! I/O; the `jti`'s single use is recorded by the service ([`replay_key`]).
//!
//! The algorithm comes from the key, never from the header alone: `ES256` for a P-256 EC
//! key, `RS256` or `PS256` for an RSA key of at least 2048 bits; `none` and every `HS*` are
//! refused before any key is looked at (an `HS256` "signed" with the public key as its
//! secret never reaches a MAC). The key is the one named by `kid`, else every key of the
//! algorithm's type is tried. The claims: `iss` = `sub` = the client, `aud` naming the
//! issuer, the token endpoint or the introspection endpoint, `exp` required and not past,
//! at most [`MAX_ASSERTION_LIFETIME_SECS`] ahead, `iat` and `nbf` (if present) not in the
//! future, `jti` required.

use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::Deserialize;

use crate::rules::keys::jwk::{JwkDocument, JwkSetDocument};

/// The longest assertion read (a 4096-bit RSA signature is 683 characters; claims are short).
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// The longest `jti` accepted (it is part of a stored key).
pub const MAX_JTI_BYTES: usize = 256;
/// An assertion may expire at most this long after it is checked (plus the leeway): a
/// captured one is useless soon, and its `jti` is remembered only that long.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 300;
/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// The algorithms a client may sign an assertion with (the metadata's
/// `token_endpoint_auth_signing_alg_values_supported`).
pub const ASSERTION_SIGNING_ALGS: [&str; 3] = ["ES256", "RS256", "PS256"];
/// The prefix of an assertion's replay key in the Proofs table: a DPoP proof's key starts
/// with a 43-character thumbprint and has its first `#` after it, so the two never collide.
pub const REPLAY_KEY_PREFIX: &str = "assertion#";
/// The token endpoint's path under the issuer.
pub const TOKEN_PATH: &str = "/auth/token";
/// The introspection endpoint's path under the issuer.
pub const INTROSPECTION_PATH: &str = "/auth/introspect";

/// Why an assertion was refused (all `invalid_client` to the caller; the class is logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionRejection {
    /// Longer than [`MAX_ASSERTION_BYTES`].
    Oversize,
    /// Not a compact JWS with JSON header and claims.
    Malformed,
    /// `alg` not in [`ASSERTION_SIGNING_ALGS`] (`none`, `HS256`, ...).
    UnsupportedAlgorithm,
    /// The registered JWKS does not parse.
    BadJwks,
    /// No registered key fits the header's `kid` and `alg`.
    NoMatchingKey,
    /// No fitting key verifies the signature.
    BadSignature,
    /// `iss` or `sub` is not the client.
    WrongClient,
    /// `aud` names neither the issuer nor one of its endpoints.
    WrongAudience,
    /// No `exp`.
    MissingExpiry,
    /// `exp` has passed.
    Expired,
    /// `exp` further ahead than [`MAX_ASSERTION_LIFETIME_SECS`].
    TooLongLived,
    /// `iat` or `nbf` in the future.
    NotYetValid,
    /// No `jti`, an empty one, or one longer than [`MAX_JTI_BYTES`].
    MissingJti,
    /// A `crit` header (RFC 7515 §4.1.11): extensions that must be understood, and we
    /// understand none.
    CriticalExtension,
}

impl AssertionRejection {
    /// The class logged and counted.
    pub fn class(self) -> &'static str {
        match self {
            Self::Oversize => "assertion_oversize",
            Self::Malformed => "assertion_malformed",
            Self::UnsupportedAlgorithm => "assertion_unsupported_alg",
            Self::BadJwks => "assertion_bad_jwks",
            Self::NoMatchingKey => "assertion_no_matching_key",
            Self::BadSignature => "assertion_bad_signature",
            Self::WrongClient => "assertion_wrong_client",
            Self::WrongAudience => "assertion_wrong_audience",
            Self::MissingExpiry => "assertion_missing_exp",
            Self::Expired => "assertion_expired",
            Self::TooLongLived => "assertion_too_long_lived",
            Self::NotYetValid => "assertion_not_yet_valid",
            Self::MissingJti => "assertion_missing_jti",
            Self::CriticalExtension => "assertion_crit",
        }
    }
}

/// What an assertion is checked against.
#[derive(Debug, Clone, Copy)]
pub struct AssertionCheck<'a> {
    /// The client whose JWKS this is: `iss` and `sub` must name it.
    pub client_id: &'a str,
    /// Our issuer (`TOKEN_ISSUER`): `aud` must contain it, `<issuer>/auth/token` or
    /// `<issuer>/auth/introspect`.
    pub issuer: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// Clock skew allowed on `exp`, `iat`, `nbf` and the lifetime (`TOKEN_LEEWAY_SECS`).
    pub leeway: u64,
}

/// An assertion that passed every check but its replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The client it authenticates.
    pub client_id: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`.
    pub exp: u64,
}

impl VerifiedAssertion {
    /// Its key in the Proofs table ([`replay_key`]).
    pub fn replay_key(&self) -> String {
        replay_key(&self.client_id, &self.jti)
    }

    /// Until when its use must be remembered: as long as it would be accepted.
    pub fn remember_until(&self, leeway: u64) -> u64 {
        self.exp.saturating_add(leeway)
    }
}

/// `assertion#<client_id>#<jti>`: one per client and `jti` (RFC 7523 §3 item 7).
pub fn replay_key(client_id: &str, jti: &str) -> String {
    format!("{REPLAY_KEY_PREFIX}{client_id}#{jti}")
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Present at all (whatever it lists): refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
}

/// The `sub` of an assertion, unverified: which client's JWKS to check it with when the
/// request named none (RFC 7523 §3: `sub` is the client id). Nothing is trusted from it.
pub fn unverified_subject(assertion: &str) -> Option<String> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return None;
    }
    let (_, payload, _) = crate::rules::verify::compact_parts(assertion)?;
    let claims: Claims = serde_json::from_slice(&B64URL.decode(payload).ok()?).ok()?;
    claims.sub
}

/// Checks `assertion` against the client's registered `jwks` and `check`: everything but
/// the `jti`'s single use.
pub fn verify_assertion(
    assertion: &str,
    jwks: &str,
    check: &AssertionCheck<'_>,
) -> Result<VerifiedAssertion, AssertionRejection> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(AssertionRejection::Oversize);
    }
    let (header_b64, payload_b64, signature_b64) =
        crate::rules::verify::compact_parts(assertion).ok_or(AssertionRejection::Malformed)?;
    let header: Header = decode_json(header_b64)?;
    if header.crit.is_some() {
        return Err(AssertionRejection::CriticalExtension);
    }
    let algorithm = SigningAlgorithm::parse(&header.alg).ok_or(AssertionRejection::UnsupportedAlgorithm)?;
    let set: JwkSetDocument = serde_json::from_str(jwks).map_err(|_| AssertionRejection::BadJwks)?;
    let candidates: Vec<&JwkDocument> = set
        .keys
        .iter()
        .filter(|key| header.kid.is_none() || key.kid == header.kid)
        .filter(|key| algorithm.fits(key))
        .collect();
    if candidates.is_empty() {
        return Err(AssertionRejection::NoMatchingKey);
    }
    let signature = B64URL.decode(signature_b64).map_err(|_| AssertionRejection::Malformed)?;
    let signing_input = &assertion.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    if !candidates.iter().any(|key| algorithm.verifies(key, signing_input, &signature)) {
        return Err(AssertionRejection::BadSignature);
    }
    let claims: Claims = decode_json(payload_b64)?;
    check_claims(claims, check)
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, AssertionRejection> {
    let bytes = B64URL.decode(part).map_err(|_| AssertionRejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AssertionRejection::Malformed)
}

fn check_claims(claims: Claims, check: &AssertionCheck<'_>) -> Result<VerifiedAssertion, AssertionRejection> {
    let names_client = |claim: &Option<String>| claim.as_deref() == Some(check.client_id);
    if !names_client(&claims.iss) || !names_client(&claims.sub) {
        return Err(AssertionRejection::WrongClient);
    }
    let base = check.issuer.trim_end_matches('/');
    let accepted = [
        check.issuer.to_owned(),
        base.to_owned(),
        format!("{base}{TOKEN_PATH}"),
        format!("{base}{INTROSPECTION_PATH}"),
    ];
    let audience_ok = match &claims.aud {
        Some(Audience::One(aud)) => accepted.contains(aud),
        Some(Audience::Many(auds)) => auds.iter().any(|aud| accepted.contains(aud)),
        None => false,
    };
    if !audience_ok {
        return Err(AssertionRejection::WrongAudience);
    }
    let exp = claims.exp.ok_or(AssertionRejection::MissingExpiry)?;
    if exp.saturating_add(check.leeway) < check.now {
        return Err(AssertionRejection::Expired);
    }
    if exp > check.now.saturating_add(MAX_ASSERTION_LIFETIME_SECS).saturating_add(check.leeway) {
        return Err(AssertionRejection::TooLongLived);
    }
    let future = |claim: Option<u64>| claim.is_some_and(|t| t > check.now.saturating_add(check.leeway));
    if future(claims.iat) || future(claims.nbf) {
        return Err(AssertionRejection::NotYetValid);
    }
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES).ok_or(AssertionRejection::MissingJti)?;
    Ok(VerifiedAssertion { client_id: check.client_id.to_owned(), jti, exp })
}

/// The algorithms of [`ASSERTION_SIGNING_ALGS`], each tied to the key type it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigningAlgorithm {
    Es256,
    Rs256,
    Ps256,
}

impl SigningAlgorithm {
    fn parse(alg: &str) -> Option<Self> {
        match alg {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }

    /// Whether `key` may verify this algorithm: its type (and curve), its `alg` and `use`
    /// if it states them.
    fn fits(self, key: &JwkDocument) -> bool {
        let typed = match self {
            Self::Es256 => key.kty == "EC" && key.crv.as_deref() == Some("P-256"),
            Self::Rs256 | Self::Ps256 => key.kty == "RSA",
        };
        typed
            && key.alg.as_deref().is_none_or(|alg| alg == self.name())
            && key.key_use.as_deref().is_none_or(|u| u == "sig")
    }

    /// Whether `signature` over `message` verifies with `key` (a malformed key verifies
    /// nothing).
    fn verifies(self, key: &JwkDocument, message: &[u8], signature: &[u8]) -> bool {
        let decode = |member: Option<&String>| member.and_then(|m| B64URL.decode(m).ok());
        match self {
            Self::Es256 => {
                let (Some(x), Some(y)) = (decode(key.x.as_ref()), decode(key.y.as_ref())) else { return false };
                if x.len() != 32 || y.len() != 32 || signature.len() != 64 {
                    return false;
                }
                let point: Vec<u8> = [&[0x04][..], &x, &y].concat();
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
            Self::Rs256 | Self::Ps256 => {
                let (Some(n), Some(e)) = (decode(key.n.as_ref()), decode(key.e.as_ref())) else { return false };
                let modulus_bits = n
                    .iter()
                    .position(|&b| b != 0)
                    .map_or(0, |first| (n.len() - first) * 8 - usize::try_from(n[first].leading_zeros()).unwrap_or(8));
                if modulus_bits < MIN_RSA_BITS {
                    return false;
                }
                let params = if self == Self::Rs256 { &RSA_PKCS1_2048_8192_SHA256 } else { &RSA_PSS_2048_8192_SHA256 };
                RsaPublicKeyComponents { n: &n, e: &e }.verify(params, message, signature).is_ok()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Every way we know of to pass a careless assertion check, one test each, with keys
    //! made here.
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
    use serde_json::{json, Value};

    use super::*;
    use crate::rules::dpop::ProofKey;

    const ISSUER: &str = "https://auth.example.com";
    const CLIENT: &str = "billing";
    const NOW: u64 = 1_800_000_000;

    fn check() -> AssertionCheck<'static> {
        AssertionCheck { client_id: CLIENT, issuer: ISSUER, now: NOW, leeway: 30 }
    }

    fn claims() -> Value {
        json!({"iss": CLIENT, "sub": CLIENT, "aud": format!("{ISSUER}/auth/token"), "exp": NOW + 60,
               "iat": NOW, "jti": "a1"})
    }

    fn encode(value: &Value) -> String {
        B64URL.encode(serde_json::to_vec(value).unwrap())
    }

    /// A P-256 client key and its JWKS.
    struct EcClient {
        key: ProofKey,
        kid: &'static str,
    }

    impl EcClient {
        fn new(kid: &'static str) -> Self {
            Self { key: ProofKey::generate().unwrap(), kid }
        }
        fn jwk(&self) -> Value {
            let mut jwk = serde_json::to_value(self.key.public_jwk()).unwrap();
            jwk["kid"] = json!(self.kid);
            jwk
        }
        fn jwks(&self) -> String {
            json!({"keys": [self.jwk()]}).to_string()
        }
        fn sign(&self, claims: &Value) -> String {
            self.key.sign(&json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}), claims).unwrap()
        }
    }

    /// An RSA client key and its JWKS.
    struct RsaClient {
        pair: RsaKeyPair,
    }

    impl RsaClient {
        fn new() -> Self {
            Self { pair: RsaKeyPair::generate(KeySize::Rsa2048).unwrap() }
        }
        fn jwk(&self) -> Value {
            let components: RsaPublicKeyComponents<Vec<u8>> = self.pair.public_key().into();
            json!({"kty": "RSA", "kid": "rsa-1", "n": B64URL.encode(&components.n), "e": B64URL.encode(&components.e)})
        }
        fn jwks(&self) -> String {
            json!({"keys": [self.jwk()]}).to_string()
        }
        fn sign(&self, alg: &str, claims: &Value) -> String {
            let input = format!("{}.{}", encode(&json!({"alg": alg, "kid": "rsa-1"})), encode(claims));
            let padding: &dyn aws_lc_rs::signature::RsaEncoding =
                if alg == "PS256" { &RSA_PSS_SHA256 } else { &RSA_PKCS1_SHA256 };
            let mut signature = vec![0; self.pair.public_modulus_len()];
            self.pair.sign(padding, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
            format!("{input}.{}", B64URL.encode(signature))
        }
    }

    fn refused(assertion: &str, jwks: &str) -> AssertionRejection {
        verify_assertion(assertion, jwks, &check()).expect_err("refused")
    }

    #[test]
    fn accepts_an_es256_assertion_for_the_token_endpoint_the_issuer_or_introspection() {
        let client = EcClient::new("k1");
        for aud in
            [json!(format!("{ISSUER}/auth/token")), json!(ISSUER), json!(["x", format!("{ISSUER}/auth/introspect")])]
        {
            let mut claims = claims();
            claims["aud"] = aud;
            let verified = verify_assertion(&client.sign(&claims), &client.jwks(), &check()).expect("accepted");
            assert_eq!(verified, VerifiedAssertion { client_id: CLIENT.into(), jti: "a1".into(), exp: NOW + 60 });
            assert_eq!(verified.replay_key(), "assertion#billing#a1");
        }
    }

    #[test]
    fn accepts_rs256_and_ps256_with_a_2048_bit_rsa_key() {
        let client = RsaClient::new();
        for alg in ["RS256", "PS256"] {
            verify_assertion(&client.sign(alg, &claims()), &client.jwks(), &check()).expect(alg);
        }
    }

    #[test]
    fn refuses_an_audience_that_is_not_ours() {
        let client = EcClient::new("k1");
        for aud in [json!("https://evil.example.com/auth/token"), json!([]), json!(format!("{ISSUER}/auth/revoke"))] {
            let mut claims = claims();
            claims["aud"] = aud;
            assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::WrongAudience);
        }
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("aud");
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::WrongAudience);
    }

    #[test]
    fn refuses_an_expired_assertion_past_the_leeway_only() {
        let client = EcClient::new("k1");
        let mut claims = claims();
        claims["exp"] = json!(NOW - 20);
        verify_assertion(&client.sign(&claims), &client.jwks(), &check()).expect("within the leeway");
        claims["exp"] = json!(NOW - 31);
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::Expired);
        claims.as_object_mut().unwrap().remove("exp");
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::MissingExpiry);
    }

    #[test]
    fn refuses_an_assertion_living_longer_than_five_minutes_or_issued_in_the_future() {
        let client = EcClient::new("k1");
        let mut claims = claims();
        claims["exp"] = json!(NOW + MAX_ASSERTION_LIFETIME_SECS + 30);
        verify_assertion(&client.sign(&claims), &client.jwks(), &check()).expect("five minutes and the leeway");
        claims["exp"] = json!(NOW + MAX_ASSERTION_LIFETIME_SECS + 31);
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::TooLongLived);
        let mut claims = self::claims();
        claims["iat"] = json!(NOW + 31);
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::NotYetValid);
        let mut claims = self::claims();
        claims["nbf"] = json!(NOW + 31);
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::NotYetValid);
    }

    #[test]
    fn refuses_a_missing_empty_or_huge_jti() {
        let client = EcClient::new("k1");
        for jti in [None, Some(json!("")), Some(json!("x".repeat(MAX_JTI_BYTES + 1))), Some(json!(7))] {
            let mut claims = claims();
            match jti {
                Some(jti) => claims["jti"] = jti,
                None => drop(claims.as_object_mut().unwrap().remove("jti")),
            }
            let rejection = refused(&client.sign(&claims), &client.jwks());
            assert!(
                matches!(rejection, AssertionRejection::MissingJti | AssertionRejection::Malformed),
                "{rejection:?}"
            );
        }
    }

    #[test]
    fn refuses_alg_none_whatever_the_claims() {
        let client = EcClient::new("k1");
        let unsigned = format!("{}.{}.", encode(&json!({"alg": "none"})), encode(&claims()));
        assert_eq!(refused(&unsigned, &client.jwks()), AssertionRejection::Malformed, "no signature part");
        let with_signature = format!("{}.{}.AAAA", encode(&json!({"alg": "none"})), encode(&claims()));
        assert_eq!(refused(&with_signature, &client.jwks()), AssertionRejection::UnsupportedAlgorithm);
    }

    #[test]
    fn refuses_a_crit_header_even_correctly_signed() {
        let client = EcClient::new("k1");
        for crit in [json!(["urn:example:must-understand"]), json!(["exp"]), json!([])] {
            let header = json!({"alg": "ES256", "kid": "k1", "crit": crit, "urn:example:must-understand": true});
            let assertion = client.key.sign(&header, &claims()).unwrap();
            assert_eq!(refused(&assertion, &client.jwks()), AssertionRejection::CriticalExtension, "{crit}");
        }
        assert!(verify_assertion(&client.sign(&claims()), &client.jwks(), &check()).is_ok(), "without crit: accepted");
    }

    #[test]
    fn refuses_hs256_keyed_with_the_public_key() {
        let client = RsaClient::new();
        let jwks = client.jwks();
        let input = format!("{}.{}", encode(&json!({"alg": "HS256", "kid": "rsa-1"})), encode(&claims()));
        for secret in [jwks.as_bytes().to_vec(), serde_json::to_vec(&client.jwk()).unwrap()] {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
            let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            let forged = format!("{input}.{}", B64URL.encode(tag.as_ref()));
            assert_eq!(refused(&forged, &jwks), AssertionRejection::UnsupportedAlgorithm);
        }
    }

    #[test]
    fn refuses_an_algorithm_the_key_is_not_for() {
        // An RSA-signed assertion claiming ES256, an EC one claiming RS256: no key fits.
        let ec = EcClient::new("k1");
        let rsa = RsaClient::new();
        let claiming_es256 = {
            let good = rsa.sign("RS256", &claims());
            let (_, rest) = good.split_once('.').unwrap();
            format!("{}.{rest}", encode(&json!({"alg": "ES256", "kid": "rsa-1"})))
        };
        assert_eq!(refused(&claiming_es256, &rsa.jwks()), AssertionRejection::NoMatchingKey);
        let claiming_rs256 = ec.key.sign(&json!({"alg": "RS256", "kid": "k1"}), &claims()).unwrap();
        assert_eq!(refused(&claiming_rs256, &ec.jwks()), AssertionRejection::NoMatchingKey);
        // A key registered for RS256 does not verify PS256.
        let mut jwk = rsa.jwk();
        jwk["alg"] = json!("RS256");
        let pinned = json!({"keys": [jwk]}).to_string();
        assert_eq!(refused(&rsa.sign("PS256", &claims()), &pinned), AssertionRejection::NoMatchingKey);
        verify_assertion(&rsa.sign("RS256", &claims()), &pinned, &check()).expect("its own algorithm");
        // A key for encryption verifies nothing.
        let mut jwk = ec.jwk();
        jwk["use"] = json!("enc");
        let encryption = json!({"keys": [jwk]}).to_string();
        assert_eq!(refused(&ec.sign(&claims()), &encryption), AssertionRejection::NoMatchingKey);
    }

    #[test]
    fn refuses_an_rsa_key_under_2048_bits() {
        // A 1024-bit modulus (its top bit set), whatever the signature.
        let small = json!({"keys": [{"kty": "RSA", "kid": "rsa-1", "n": B64URL.encode([0xc5u8; 128]), "e": "AQAB"}]});
        let rsa = RsaClient::new();
        assert_eq!(refused(&rsa.sign("RS256", &claims()), &small.to_string()), AssertionRejection::BadSignature);
    }

    #[test]
    fn refuses_an_issuer_or_subject_that_is_not_the_client() {
        let client = EcClient::new("k1");
        for (claim, value) in [("iss", "other"), ("sub", "other"), ("iss", ""), ("sub", "billing ")] {
            let mut claims = claims();
            claims[claim] = json!(value);
            assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::WrongClient, "{claim}");
        }
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("sub");
        assert_eq!(refused(&client.sign(&claims), &client.jwks()), AssertionRejection::WrongClient);
    }

    #[test]
    fn refuses_an_assertion_signed_with_another_clients_key() {
        let ours = EcClient::new("k1");
        let theirs = EcClient::new("k1");
        assert_eq!(refused(&theirs.sign(&claims()), &ours.jwks()), AssertionRejection::BadSignature);
        // Without a kid, every key of the type is tried; none of ours signed it.
        let unnamed = theirs.key.sign(&json!({"alg": "ES256"}), &claims()).unwrap();
        assert_eq!(refused(&unnamed, &ours.jwks()), AssertionRejection::BadSignature);
        // A kid we do not have.
        let other_kid = theirs.key.sign(&json!({"alg": "ES256", "kid": "k9"}), &claims()).unwrap();
        assert_eq!(refused(&other_kid, &ours.jwks()), AssertionRejection::NoMatchingKey);
    }

    #[test]
    fn without_a_kid_any_key_of_the_right_type_may_have_signed() {
        let first = EcClient::new("k1");
        let second = EcClient::new("k2");
        let jwks = json!({"keys": [first.jwk(), RsaClient::new().jwk(), second.jwk()]}).to_string();
        let unnamed = second.key.sign(&json!({"alg": "ES256"}), &claims()).unwrap();
        verify_assertion(&unnamed, &jwks, &check()).expect("the second key signed it");
    }

    #[test]
    fn refuses_a_tampered_signature_or_payload() {
        let client = EcClient::new("k1");
        let good = client.sign(&claims());
        let (input, signature) = good.rsplit_once('.').unwrap();
        let mut bytes = B64URL.decode(signature).unwrap();
        bytes[10] ^= 1;
        let tampered = format!("{input}.{}", B64URL.encode(&bytes));
        assert_eq!(refused(&tampered, &client.jwks()), AssertionRejection::BadSignature);
        let mut other = claims();
        other["sub"] = json!(CLIENT);
        other["jti"] = json!("a2");
        let (header, _) = input.split_once('.').unwrap();
        let swapped = format!("{header}.{}.{signature}", encode(&other));
        assert_eq!(refused(&swapped, &client.jwks()), AssertionRejection::BadSignature);
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        let client = EcClient::new("k1");
        for garbage in ["", "a", "a.b", "a.b.c", "..", "a.b.c.d", "e30.e30.e30", &"x".repeat(MAX_ASSERTION_BYTES + 1)] {
            assert!(verify_assertion(garbage, &client.jwks(), &check()).is_err(), "{garbage:.20}");
        }
        assert_eq!(refused(&client.sign(&claims()), "not json"), AssertionRejection::BadJwks);
        assert_eq!(unverified_subject(&client.sign(&claims())).as_deref(), Some(CLIENT));
        assert_eq!(unverified_subject("a.b.c"), None);
    }
}
