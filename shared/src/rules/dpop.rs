//! DPoP proofs (RFC 9449 §4): the check of one proof against the request it came with,
//! without I/O. Whether its `jti` was seen before is the caller's question (a conditional
//! write shared by every instance, [`crate::store::DynamoProofs`]); everything else is here.
//!
//! Order of checks, cheapest and most dangerous first, as for access tokens: size; strict
//! compact form; the header, exactly `typ` `dpop+jwt`, an allowed `alg` and a public `jwk`
//! (a private member refused by name, any unknown member refused); the signature with the
//! header's own key; then the claims: `jti` (bounded), `htm` equal to the request's method,
//! `htu` equal to the URL the client called (RFC 3986 normalised, query and fragment
//! dropped), `iat` inside the window, `ath` when an access token comes with the proof, and
//! finally the key's RFC 7638 thumbprint against the one the token or session is bound to.
//!
//! Only ES256: the keys mobile platforms keep in hardware (Secure Enclave, Android
//! StrongBox) are P-256, one algorithm is one parser to get right, and an RSA proof would
//! cost the authorizer several times the time of an ECDSA one on every request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::rules::keys::jwk::{thumbprint, EcPublicJwk};

/// `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The proof algorithms accepted, as the metadata's `dpop_signing_alg_values_supported`.
pub const DPOP_SIGNING_ALGS: [&str; 1] = ["ES256"];

/// Largest proof looked at: a P-256 proof is about 600 bytes.
pub const MAX_PROOF_BYTES: usize = 2048;

/// Longest `jti` accepted: it is stored, keyed, until the proof's window ends.
pub const MAX_JTI_BYTES: usize = 128;

/// Why a proof was refused. The client learns only `invalid_dpop_proof` (or
/// `invalid_token` at the authorizer); the class goes into the audit line and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRejection {
    /// No proof where one is needed, or more than one `DPoP` header.
    Missing,
    /// Longer than [`MAX_PROOF_BYTES`].
    Oversize,
    /// Not a strict compact JWS with JSON object header and payload, or a claim of the
    /// wrong type.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is not one of [`DPOP_SIGNING_ALGS`] (`none` and HMAC included).
    UnsupportedAlgorithm,
    /// The `jwk` is not a public P-256 key: a private member, another curve, a bad point.
    BadKey,
    /// The signature does not verify with the header's key.
    BadSignature,
    /// `jti`, `htm`, `htu` or `iat` missing or empty, or `ath` missing where a token came.
    MissingClaim,
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the URL the request was made to.
    WrongUrl,
    /// `iat` is older than the window.
    Stale,
    /// `iat` is in the future beyond the clock leeway.
    Early,
    /// `ath` is not the hash of the access token presented with it.
    WrongTokenHash,
    /// The proof's key is not the one the token or the session is bound to.
    WrongKey,
    /// This `jti` was accepted before within its window.
    Replayed,
}

impl ProofRejection {
    /// The audit/metric class.
    pub fn class(self) -> &'static str {
        match self {
            Self::Missing => "dpop_missing",
            Self::Oversize | Self::Malformed | Self::MissingClaim => "dpop_malformed",
            Self::WrongType | Self::UnsupportedAlgorithm | Self::BadKey | Self::BadSignature => "dpop_bad_signature",
            Self::WrongMethod | Self::WrongUrl | Self::WrongTokenHash => "dpop_wrong_request",
            Self::Stale | Self::Early => "dpop_expired",
            Self::WrongKey => "dpop_wrong_key",
            Self::Replayed => "dpop_replayed",
        }
    }

    /// A short `error_description` for the token endpoint: says what to fix, no secret.
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => "a DPoP proof is required",
            Self::Oversize | Self::Malformed | Self::MissingClaim => "the DPoP proof is malformed",
            Self::WrongType => "the DPoP proof's typ must be dpop+jwt",
            Self::UnsupportedAlgorithm => "the DPoP proof's alg is not supported (ES256)",
            Self::BadKey => "the DPoP proof's jwk must be a public P-256 key",
            Self::BadSignature => "the DPoP proof's signature does not verify",
            Self::WrongMethod | Self::WrongUrl => "the DPoP proof is for another request",
            Self::Stale | Self::Early => "the DPoP proof's iat is outside the accepted window",
            Self::WrongTokenHash => "the DPoP proof's ath does not match the access token",
            Self::WrongKey => "the DPoP proof is signed by another key than the session's",
            Self::Replayed => "the DPoP proof was used before",
        }
    }
}

/// What a proof must match: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The request's HTTP method.
    pub method: &'a str,
    /// The URL the client called (scheme, host, path; query and fragment are ignored).
    pub url: &'a str,
    /// The SHA-256 of the access token presented with the proof (a protected resource,
    /// [`access_token_sha256`]), which the proof's `ath` must encode; `None` at the token
    /// endpoint. The hash, not the token: the authorizer has it already (its cache key).
    pub access_token_sha256: Option<[u8; 32]>,
}

/// The proof window: `iat` may be at most `max_age` old and `leeway` ahead of `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofWindow {
    /// Unix seconds.
    pub now: u64,
    /// Oldest accepted `iat`, as an age in seconds.
    pub max_age: u64,
    /// Clock leeway in seconds for an `iat` in the future.
    pub leeway: u64,
}

impl ProofWindow {
    /// When a proof issued at `iat` can no longer be accepted anywhere: how long its `jti`
    /// must be remembered (the TTL of its replay entry).
    pub fn expires_at(&self, iat: u64) -> u64 {
        iat.saturating_add(self.max_age).saturating_add(self.leeway).max(self.now.saturating_add(self.leeway))
    }
}

/// A proof that passed every check but the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what a session and its tokens are bound to
    /// (`cnf.jkt`).
    pub jkt: String,
    /// The proof's unique id.
    pub jti: String,
    /// When the client made it.
    pub iat: u64,
}

impl Proof {
    /// The key under which its use is recorded: `jti` per key, so one client cannot use up
    /// another's `jti`.
    pub fn replay_key(&self) -> String {
        format!("{}#{}", self.jkt, self.jti)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header<'a> {
    typ: &'a str,
    alg: &'a str,
    jwk: ProofJwk<'a>,
}

/// The header's `jwk`: a public key only. Private members are named so that a key with
/// one is refused as such ([`ProofRejection::BadKey`]), not as an unknown member.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJwk<'a> {
    kty: &'a str,
    crv: Option<&'a str>,
    x: Option<&'a str>,
    y: Option<&'a str>,
    alg: Option<&'a str>,
    #[serde(rename = "use")]
    _use: Option<IgnoredAny>,
    #[serde(rename = "kid")]
    _kid: Option<IgnoredAny>,
    #[serde(rename = "key_ops")]
    _key_ops: Option<IgnoredAny>,
    #[serde(rename = "ext")]
    _ext: Option<IgnoredAny>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
    n: Option<IgnoredAny>,
    e: Option<IgnoredAny>,
}

impl ProofJwk<'_> {
    fn has_private_member(&self) -> bool {
        [&self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k].iter().any(|m| m.is_some())
    }

    /// The uncompressed SEC1 point, for a public P-256 key only.
    fn p256(&self) -> Result<[u8; 65], ProofRejection> {
        if self.has_private_member() || self.n.is_some() || self.e.is_some() {
            return Err(ProofRejection::BadKey);
        }
        let (Some(x), Some(y)) = (self.x, self.y) else {
            return Err(ProofRejection::BadKey);
        };
        if self.kty != "EC" || self.crv != Some("P-256") || self.alg.is_some_and(|a| a != "ES256") {
            return Err(ProofRejection::BadKey);
        }
        let mut point = [0u8; 65];
        point[0] = 0x04;
        let (mut xb, mut yb) = ([0u8; 40], [0u8; 40]);
        match (B64URL.decode_slice(x, &mut xb), B64URL.decode_slice(y, &mut yb)) {
            (Ok(32), Ok(32)) => {}
            _ => return Err(ProofRejection::BadKey),
        }
        point[1..33].copy_from_slice(&xb[..32]);
        point[33..].copy_from_slice(&yb[..32]);
        Ok(point)
    }
}

/// The claims we check. Text borrowed from the payload unless it has JSON escapes (some
/// encoders write `https:\/\/...`), which are read as they mean.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htu: Option<Cow<'a, str>>,
    iat: Option<u64>,
    #[serde(borrow)]
    ath: Option<Cow<'a, str>>,
}

/// Checks `proof` against `request` and `window`, and the key against `bound_to` (the
/// thumbprint the token or session is bound to, if any). Everything but replay.
pub fn verify_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    window: &ProofWindow,
    bound_to: Option<&str>,
) -> Result<Proof, ProofRejection> {
    check_proof(proof, request, window, bound_to, None)
}

fn check_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    window: &ProofWindow,
    bound_to: Option<&str>,
    known_keys: Option<&ClientKeys>,
) -> Result<Proof, ProofRejection> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofRejection::Oversize);
    }
    let (header_b64, payload_b64, signature_b64) =
        crate::rules::verify::compact_parts(proof).ok_or(ProofRejection::Malformed)?;

    // A client sends the same header with every proof: one seen before, byte for byte,
    // passed every header check then and names the key parsed then.
    let known = known_keys.and_then(|keys| keys.by_header(header_b64));
    let key = match known {
        Some(key) => key,
        None => {
            let point = header_key(header_b64)?;
            match known_keys {
                Some(keys) => keys.remember(header_b64, &point)?,
                None => Arc::new(ParsedProofKey::parse(&point)?),
            }
        }
    };

    let mut signature = [0u8; 96];
    let signature_len = B64URL.decode_slice(signature_b64, &mut signature).map_err(|_| ProofRejection::Malformed)?;
    if signature_len != 64 {
        return Err(ProofRejection::BadSignature);
    }
    let signing_input = &proof.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    key.public.verify_sig(signing_input, &signature[..64]).map_err(|_| ProofRejection::BadSignature)?;

    let mut payload_buf = [0u8; MAX_PROOF_BYTES / 4 * 3];
    let payload_len = B64URL.decode_slice(payload_b64, &mut payload_buf).map_err(|_| ProofRejection::Malformed)?;
    let payload = std::str::from_utf8(&payload_buf[..payload_len]).map_err(|_| ProofRejection::Malformed)?;
    let claims: Claims<'_> = serde_json::from_str(payload).map_err(|_| ProofRejection::Malformed)?;
    let (Some(jti), Some(htm), Some(htu), Some(iat)) = (claims.jti, claims.htm, claims.htu, claims.iat) else {
        return Err(ProofRejection::MissingClaim);
    };
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(ProofRejection::MissingClaim);
    }
    let (jti, htm, htu) = (jti.as_ref(), htm.as_ref(), htu.as_ref());
    if htm != request.method {
        return Err(ProofRejection::WrongMethod);
    }
    if !same_url(htu, request.url) {
        return Err(ProofRejection::WrongUrl);
    }
    if iat > window.now.saturating_add(window.leeway) {
        return Err(ProofRejection::Early);
    }
    if iat.saturating_add(window.max_age) < window.now {
        return Err(ProofRejection::Stale);
    }
    if let Some(token_sha256) = request.access_token_sha256 {
        let Some(ath) = claims.ath else {
            return Err(ProofRejection::MissingClaim);
        };
        let mut expected = [0u8; 43];
        if B64URL.encode_slice(token_sha256, &mut expected) != Ok(43) || ath.as_bytes() != expected.as_slice() {
            return Err(ProofRejection::WrongTokenHash);
        }
    }
    if bound_to.is_some_and(|bound| bound != key.jkt) {
        return Err(ProofRejection::WrongKey);
    }
    Ok(Proof { jkt: key.jkt.clone(), jti: jti.to_owned(), iat })
}

/// The header's checks (`typ`, `alg`, a public P-256 `jwk`): its key's point.
fn header_key(header_b64: &str) -> Result<[u8; 65], ProofRejection> {
    let mut header_buf = [0u8; MAX_PROOF_BYTES / 4 * 3];
    let header_len = B64URL.decode_slice(header_b64, &mut header_buf).map_err(|_| ProofRejection::Malformed)?;
    let header_json = std::str::from_utf8(&header_buf[..header_len]).map_err(|_| ProofRejection::Malformed)?;
    let header: Header<'_> = serde_json::from_str(header_json).map_err(|_| ProofRejection::Malformed)?;
    // RFC 7515 §4.1.9: a media type, compared without case, "application/" implied.
    let typ = header.typ;
    if !(typ.eq_ignore_ascii_case(DPOP_TYP) || typ.eq_ignore_ascii_case("application/dpop+jwt")) {
        return Err(ProofRejection::WrongType);
    }
    if !DPOP_SIGNING_ALGS.contains(&header.alg) {
        return Err(ProofRejection::UnsupportedAlgorithm);
    }
    header.jwk.p256()
}

/// A proof's public key, parsed for signature checks, and its RFC 7638 thumbprint.
struct ParsedProofKey {
    public: ParsedPublicKey,
    jkt: String,
}

impl ParsedProofKey {
    /// From the header's uncompressed point; a point not on the curve fails the
    /// signature check, as it always has.
    fn parse(point: &[u8; 65]) -> Result<Self, ProofRejection> {
        let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|_| ProofRejection::BadSignature)?;
        let jwk = EcPublicJwk::from_uncompressed_point(point).map_err(|_| ProofRejection::BadKey)?;
        Ok(Self { public, jkt: thumbprint(&jwk) })
    }
}

/// The most client keys an instance keeps parsed ([`ClientKeys`]). An entry is the
/// header's text (at most [`MAX_HEADER_KEPT`] bytes), aws-lc's parsed key (an `EVP_PKEY`
/// with its `EC_KEY` and point, a few hundred bytes), the 43-byte thumbprint and the map's
/// overhead: under 1.5 KB, so at most about 1.5 MB.
pub const MAX_CLIENT_KEYS: usize = 1024;

/// The longest header text kept ([`ClientKeys`]): a P-256 proof's header is about 250
/// bytes of base64url; longer ones are checked every time.
pub const MAX_HEADER_KEPT: usize = 512;

/// The proof keys one instance has parsed, by the header they came in: a client sends the
/// same header (`typ`, `alg`, its `jwk`) with every proof, so its repeated proofs skip the
/// header's decoding and checks, the point's parsing and the thumbprint (a JSON text and a
/// SHA-256). Found only by the whole header text, which passed every header check when it
/// was kept, so a proof is always checked with exactly its own key. Holds public keys only, nothing
/// secret. At most [`MAX_CLIENT_KEYS`]; when full, everything goes (a burst of more clients
/// than that costs re-parsing only).
#[derive(Debug)]
pub struct ClientKeys {
    keys: Mutex<HashMap<Box<str>, Arc<ParsedProofKey>>>,
    capacity: usize,
}

impl std::fmt::Debug for ParsedProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedProofKey").field("jkt", &self.jkt).finish_non_exhaustive()
    }
}

impl Default for ClientKeys {
    fn default() -> Self {
        Self::with_capacity(MAX_CLIENT_KEYS)
    }
}

impl ClientKeys {
    /// At most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { keys: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// [`verify_proof`], with the proof's key as parsed before if its point was seen.
    pub fn verify_proof(
        &self,
        proof: &str,
        request: &ProofRequest<'_>,
        window: &ProofWindow,
        bound_to: Option<&str>,
    ) -> Result<Proof, ProofRejection> {
        check_proof(proof, request, window, bound_to, Some(self))
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of a header seen before, byte for byte.
    fn by_header(&self, header_b64: &str) -> Option<Arc<ParsedProofKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).get(header_b64).cloned()
    }

    /// Parses the key of a header that passed its checks, and keeps it under the header's
    /// text. Only a valid point is kept; a header longer than [`MAX_HEADER_KEPT`] is not.
    fn remember(&self, header_b64: &str, point: &[u8; 65]) -> Result<Arc<ParsedProofKey>, ProofRejection> {
        let key = Arc::new(ParsedProofKey::parse(point)?);
        if header_b64.len() <= MAX_HEADER_KEPT {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            if keys.len() >= self.capacity {
                keys.clear();
            }
            keys.insert(header_b64.into(), Arc::clone(&key));
        }
        Ok(key)
    }
}

/// The URL a client called, as a proof's `htu` must name it. With `PUBLIC_BASE_URL` set
/// (a custom domain, a base path mapping): that base and `path`, the request's path within
/// the API. Otherwise the scheme API Gateway forwarded (`X-Forwarded-Proto`, which it sets
/// itself; `https` when absent or anything else) and the `Host` the client called, with
/// `path` as the client sent it. `None` without a host to name.
pub fn called_url(
    public_base_url: Option<&str>,
    forwarded_proto: Option<&str>,
    host: Option<&str>,
    path: &str,
) -> Option<String> {
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    if let Some(base) = public_base_url {
        return Some(format!("{}{path}", base.trim_end_matches('/')));
    }
    let scheme = match forwarded_proto.map(str::trim) {
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ => "https",
    };
    let host = host.map(str::trim).filter(|h| !h.is_empty() && !h.contains(['/', '@', '?', '#', ' ']))?;
    Some(format!("{scheme}://{host}{path}"))
}

/// `ath`: base64url of the SHA-256 of the access token's ASCII (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    B64URL.encode(access_token_sha256(token))
}

/// The SHA-256 of an access token's ASCII: what `ath` encodes, and what a [`ProofRequest`]
/// takes.
pub fn access_token_sha256(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_ref());
    sha256
}

/// Whether `claimed` (a proof's `htu`) names `actual`, ignoring query and fragment, after
/// RFC 3986 §6.2.2–6.2.3 normalisation (case of scheme and host, percent-encoding of the
/// path, default port, dot segments, empty path): what RFC 9449 §4.3 asks. Only http and
/// https URLs match.
pub fn same_url(claimed: &str, actual: &str) -> bool {
    // The common case without parsing: the very text of a URL that parses (see
    // `parses_as_http_url`), which normalises as itself.
    if claimed == actual && parses_as_http_url(actual) {
        return true;
    }
    match (url_without_query(claimed), url_without_query(actual)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `text` is, plainly, a URL that [`url_without_query`] accepts: `http` or `https`,
/// a host of lower-case letters, digits, `-` and `.` in non-empty labels whose last one
/// starts with a letter (so not an IP address) and none punycode (`xn--`, which the URL
/// parser may refuse), an optional port of at most 65535, then nothing or a path.
/// Conservative: anything else goes to the parser.
fn parses_as_http_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")) else {
        return false;
    };
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with("xn--")
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let last_is_a_name = host.rsplit('.').next().is_some_and(|last| last.starts_with(|c: char| c.is_ascii_lowercase()));
    port_ok && labels_ok && last_is_a_name
}

fn url_without_query(text: &str) -> Option<url::Url> {
    let mut url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() || !url.username().is_empty() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    if url.path().contains('%') {
        let path = normalised_percent_encoding(url.path());
        url.set_path(&path);
    }
    Some(url)
}

/// RFC 3986 §6.2.2.1–2: a percent-encoded unreserved character decoded, any other
/// percent-encoding's hex digits in upper case (`/api/%77hoami` is `/api/whoami`).
fn normalised_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits exactly (`from_str_radix` alone would take a sign: `%+1`).
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escape {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                i += 3;
            }
            Some(b) => {
                out.push_str(&format!("%{b:02X}"));
                i += 3;
            }
            None => {
                // A parsed URL's path is ASCII (the parser percent-encodes the rest).
                out.push(char::from(bytes[i]));
                i += 1;
            }
        }
    }
    out
}

/// A client's DPoP key: what `authctl dpop proof`, the tests and the benchmarks make
/// proofs with (the service itself only checks them).
pub struct ProofKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKey").field("jkt", &self.thumbprint()).finish_non_exhaustive()
    }
}

impl ProofKey {
    /// A new P-256 key from the system's CSPRNG.
    pub fn generate() -> Result<Self, &'static str> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| "no key")?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A P-256 key from its PKCS #8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, &'static str> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map(|pair| Self { pair })
            .map_err(|_| "not a P-256 PKCS #8 private key")
    }

    /// The private key as PKCS #8 DER (for a key file).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, &'static str> {
        self.pair.to_pkcs8v1().map(|doc| doc.as_ref().to_vec()).map_err(|_| "cannot encode the key")
    }

    /// The public key as the JWK a proof's header carries.
    pub fn public_jwk(&self) -> EcPublicJwk {
        use aws_lc_rs::signature::KeyPair as _;
        // A P-256 pair's public key is always an uncompressed point.
        EcPublicJwk::from_uncompressed_point(self.pair.public_key().as_ref()).unwrap_or(EcPublicJwk {
            crv: "P-256",
            kty: "EC",
            x: String::new(),
            y: String::new(),
        })
    }

    /// The RFC 7638 thumbprint: the `cnf.jkt` of the tokens bound to this key.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public_jwk())
    }

    /// Signs `header` and `claims` exactly as given (tests forge proofs with it).
    pub fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> Result<String, &'static str> {
        let input = format!(
            "{}.{}",
            B64URL.encode(serde_json::to_vec(header).map_err(|_| "header")?),
            B64URL.encode(serde_json::to_vec(claims).map_err(|_| "claims")?)
        );
        let signature =
            self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).map_err(|_| "signing failed")?;
        Ok(format!("{input}.{}", B64URL.encode(signature.as_ref())))
    }

    /// Signs an already encoded `header.payload` (tests write JSON by hand with it).
    pub fn sign_input(&self, input: &str) -> Result<String, &'static str> {
        let signature =
            self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).map_err(|_| "signing failed")?;
        Ok(format!("{input}.{}", B64URL.encode(signature.as_ref())))
    }

    /// The header of this key's proofs: `typ`, `alg`, `jwk`.
    pub fn header(&self) -> serde_json::Value {
        serde_json::json!({"typ": DPOP_TYP, "alg": "ES256", "jwk": self.public_jwk()})
    }

    /// A proof for `method` `url` made at `iat`, with a fresh random `jti`, and `ath` of
    /// `access_token` when one goes with it.
    pub fn proof(&self, method: &str, url: &str, iat: u64, access_token: Option<&str>) -> Result<String, &'static str> {
        let mut claims = serde_json::json!({
            "jti": crate::rules::token::random_id(), "htm": method, "htu": url, "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = serde_json::json!(access_token_hash(token));
        }
        self.sign(&self.header(), &claims)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Every way we know of to get a proof past a careless verifier, one test each, and a
    //! property test that mutates proofs as the token verifier's mutates tokens.
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// The tests' client key: [`ProofKey`], unwrapped.
    struct ClientKey(ProofKey);

    impl ClientKey {
        fn new() -> Self {
            Self(ProofKey::generate().unwrap())
        }
        fn public_jwk(&self) -> Value {
            serde_json::to_value(self.0.public_jwk()).unwrap()
        }
        fn thumbprint(&self) -> String {
            self.0.thumbprint()
        }
        fn sign(&self, header: &Value, claims: &Value) -> String {
            self.0.sign(header, claims).unwrap()
        }
        fn header(&self) -> Value {
            self.0.header()
        }
        fn proof(&self, method: &str, url: &str, iat: u64, token: Option<&str>) -> String {
            self.0.proof(method, url, iat, token).unwrap()
        }
    }

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "https://api.example.test/api/whoami";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";

    fn request(token: Option<&'static str>) -> ProofRequest<'static> {
        ProofRequest { method: "GET", url: URL, access_token_sha256: token.map(access_token_sha256) }
    }

    fn window() -> ProofWindow {
        ProofWindow { now: NOW, max_age: 60, leeway: 5 }
    }

    fn check(proof: &str) -> Result<Proof, ProofRejection> {
        verify_proof(proof, &request(Some(TOKEN)), &window(), None)
    }

    fn claims(_key: &ClientKey) -> Value {
        json!({"jti": "j1", "htm": "GET", "htu": URL, "iat": NOW, "ath": access_token_hash(TOKEN)})
    }

    #[test]
    fn a_good_proof_names_its_key_by_thumbprint() {
        let key = ClientKey::new();
        let proof = check(&key.proof("GET", URL, NOW, Some(TOKEN))).unwrap();
        assert_eq!(proof.jkt, key.thumbprint());
        assert_eq!(proof.iat, NOW);
        assert_eq!(proof.replay_key(), format!("{}#{}", proof.jkt, proof.jti));
        // Bound to the same key: accepted.
        let bound = key.thumbprint();
        verify_proof(&key.proof("GET", URL, NOW, Some(TOKEN)), &request(Some(TOKEN)), &window(), Some(&bound)).unwrap();
    }

    #[test]
    fn rfc_9449_example_thumbprint_is_reproduced() {
        // RFC 9449 §4.1's example key and the thumbprint of §6.1 (the cnf.jkt example).
        let jwk = EcPublicJwk {
            crv: "P-256",
            kty: "EC",
            x: "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs".into(),
            y: "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA".into(),
        };
        assert_eq!(thumbprint(&jwk), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    }

    #[test]
    fn a_proof_from_another_key_than_the_bound_one_is_refused() {
        let (key, other) = (ClientKey::new(), ClientKey::new());
        let proof = other.proof("GET", URL, NOW, Some(TOKEN));
        let bound = key.thumbprint();
        assert_eq!(verify_proof(&proof, &request(Some(TOKEN)), &window(), Some(&bound)), Err(ProofRejection::WrongKey));
    }

    #[test]
    fn a_proof_for_another_method_or_url_is_refused() {
        let key = ClientKey::new();
        assert_eq!(check(&key.proof("POST", URL, NOW, Some(TOKEN))), Err(ProofRejection::WrongMethod));
        assert_eq!(check(&key.proof("get", URL, NOW, Some(TOKEN))), Err(ProofRejection::WrongMethod));
        for other in [
            "https://api.example.test/api/other",
            "https://evil.example.test/api/whoami",
            "http://api.example.test/api/whoami",
            "https://api.example.test:8443/api/whoami",
            "https://api.example.test/api/whoami/",
            "/api/whoami",
            "https://user@api.example.test/api/whoami",
        ] {
            assert_eq!(check(&key.proof("GET", other, NOW, Some(TOKEN))), Err(ProofRejection::WrongUrl), "{other}");
        }
    }

    #[test]
    fn htu_is_compared_after_normalisation_and_without_query_or_fragment() {
        let key = ClientKey::new();
        for same in [
            "https://API.Example.Test/api/whoami",
            "HTTPS://api.example.test:443/api/whoami",
            "https://api.example.test/api/./whoami",
            "https://api.example.test/api/whoami?x=1",
            "https://api.example.test/api/whoami#frag",
            "https://api.example.test/api/%77hoami",
            "https://api.example.test/%61pi/WHOAMI/../whoami",
        ] {
            check(&key.proof("GET", same, NOW, Some(TOKEN))).unwrap_or_else(|e| panic!("{same}: {e:?}"));
        }
        assert!(same_url("https://a.test", "https://a.test/"));
        // Percent-encoding (RFC 3986 §6.2.2.2): unreserved characters decoded, hex case
        // ignored, a reserved character's encoding kept.
        assert!(same_url("https://a.test/a%7Eb/%2fx", "https://a.test/a~b/%2Fx"));
        assert!(!same_url("https://a.test/a%2Fb", "https://a.test/a/b"), "an encoded / is not a /");
        assert!(!same_url("https://a.test/a%2", "https://a.test/a%2F"));
        assert!(!same_url("https://a.test/a%+1", "https://a.test/a%01"), "not an escape: kept as it is");
    }

    #[test]
    fn htu_by_text_matches_only_a_url_that_parses() {
        for url in [URL, "http://127.0.0.1:3000/auth/refresh", "https://a.test", "https://a.test:8443/x/../y"] {
            assert!(same_url(url, url), "{url}");
        }
        assert!(parses_as_http_url(URL));
        // Equal texts that the URL parser refuses (an IPv4 address out of range, a port out
        // of range, another scheme, a user) still never match.
        for url in ["https://1.2.3.999/api", "https://a.test:99999/api", "ftp://a.test/api", "https://user@a.test/api"]
        {
            assert!(!parses_as_http_url(url), "{url}");
            assert!(!same_url(url, url), "{url}");
        }
        // Not plainly valid, so left to the parser: still matched after normalisation.
        for url in ["https://API.Example.Test/api/whoami", "https://127.0.0.1/x", "https://xn--bcher-kva.test/x"] {
            assert!(!parses_as_http_url(url), "{url}");
            assert!(same_url(url, url), "{url}");
        }
    }

    #[test]
    fn a_kept_client_key_serves_only_proofs_of_its_own_point() {
        let keys = ClientKeys::default();
        let (key, other) = (ClientKey::new(), ClientKey::new());
        let request = request(Some(TOKEN));
        let first = keys.verify_proof(&key.proof("GET", URL, NOW, Some(TOKEN)), &request, &window(), None).unwrap();
        assert_eq!(first.jkt, key.thumbprint());
        assert_eq!(keys.len(), 1);
        // The kept key's header, another key's signature: refused, as without the cache.
        let forged = other.sign(&key.header(), &claims(&key));
        assert_eq!(keys.verify_proof(&forged, &request, &window(), None), Err(ProofRejection::BadSignature));
        // Another key is parsed and named by its own thumbprint, and the binding holds.
        let bound = key.thumbprint();
        let second = other.proof("GET", URL, NOW, Some(TOKEN));
        assert_eq!(keys.verify_proof(&second, &request, &window(), Some(&bound)), Err(ProofRejection::WrongKey));
        assert_eq!(keys.verify_proof(&second, &request, &window(), None).unwrap().jkt, other.thumbprint());
        assert_eq!(keys.len(), 2);
        // A kept key does not excuse the other checks.
        let old = key.proof("GET", URL, NOW - 61, Some(TOKEN));
        assert_eq!(keys.verify_proof(&old, &request, &window(), Some(&bound)), Err(ProofRejection::Stale));
    }

    #[test]
    fn a_kept_header_is_found_only_by_its_exact_text() {
        let keys = ClientKeys::default();
        let key = ClientKey::new();
        let request = request(Some(TOKEN));
        keys.verify_proof(&key.proof("GET", URL, NOW, Some(TOKEN)), &request, &window(), None).unwrap();
        // The same key in a header written otherwise (members reordered, spaces): checked
        // afresh, kept beside, and named by the same thumbprint.
        let jwk = key.public_jwk();
        let header = format!(
            r#"{{ "jwk": {{"y": "{}", "x": "{}", "kty": "EC", "crv": "P-256"}}, "alg": "ES256", "typ": "dpop+jwt" }}"#,
            jwk["y"].as_str().unwrap(),
            jwk["x"].as_str().unwrap()
        );
        let input = format!(
            "{}.{}",
            B64URL.encode(header.as_bytes()),
            B64URL.encode(serde_json::to_vec(&claims(&key)).unwrap())
        );
        let proof = keys.verify_proof(&key.0.sign_input(&input).unwrap(), &request, &window(), None).unwrap();
        assert_eq!((proof.jkt, keys.len()), (key.thumbprint(), 2));
        // A header that fails its checks is never kept, however often it comes.
        let mut private = key.header();
        private["jwk"]["d"] = json!("AAAA");
        for _ in 0..2 {
            assert_eq!(
                keys.verify_proof(&key.sign(&private, &claims(&key)), &request, &window(), None),
                Err(ProofRejection::BadKey)
            );
        }
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn claims_with_json_escapes_are_read_as_they_mean() {
        let key = ClientKey::new();
        let header = B64URL.encode(serde_json::to_vec(&key.header()).unwrap());
        // As PHP's json_encode writes it: every slash escaped.
        let payload = format!(
            r#"{{"jti":"j\/1","htm":"GET","htu":"{}","iat":{NOW},"ath":"{}"}}"#,
            URL.replace('/', "\\/"),
            access_token_hash(TOKEN)
        );
        let input = format!("{header}.{}", B64URL.encode(payload.as_bytes()));
        let signed = key.0.sign_input(&input).unwrap();
        let proof = check(&signed).unwrap();
        assert_eq!(proof.jti, "j/1");
    }

    #[test]
    fn the_client_keys_never_exceed_their_capacity() {
        let keys = ClientKeys::with_capacity(2);
        for _ in 0..5 {
            let key = ClientKey::new();
            let proof =
                keys.verify_proof(&key.proof("GET", URL, NOW, Some(TOKEN)), &request(Some(TOKEN)), &window(), None);
            assert_eq!(proof.unwrap().jkt, key.thumbprint());
            assert!(keys.len() <= 2);
        }
    }

    #[test]
    fn iat_outside_the_window_is_refused() {
        let key = ClientKey::new();
        assert_eq!(check(&key.proof("GET", URL, NOW - 61, Some(TOKEN))), Err(ProofRejection::Stale));
        assert_eq!(check(&key.proof("GET", URL, NOW + 6, Some(TOKEN))), Err(ProofRejection::Early));
        check(&key.proof("GET", URL, NOW - 60, Some(TOKEN))).unwrap();
        check(&key.proof("GET", URL, NOW + 5, Some(TOKEN))).unwrap();
    }

    #[test]
    fn the_replay_entry_lives_until_no_instance_could_accept_the_proof() {
        let w = window();
        assert_eq!(w.expires_at(NOW), NOW + 65);
        // An iat from the future: accepted up to now + leeway, remembered past its window.
        assert_eq!(w.expires_at(NOW + 5), NOW + 70);
        assert_eq!(w.expires_at(NOW - 60), NOW + 5);
    }

    #[test]
    fn ath_must_hash_the_token_presented_with_the_proof() {
        let key = ClientKey::new();
        assert_eq!(check(&key.proof("GET", URL, NOW, Some("another.token.here"))), Err(ProofRejection::WrongTokenHash));
        assert_eq!(check(&key.proof("GET", URL, NOW, None)), Err(ProofRejection::MissingClaim));
        // At the token endpoint no access token comes with the proof: ath is not needed.
        let at_token_endpoint = ProofRequest { method: "POST", url: URL, access_token_sha256: None };
        verify_proof(&key.proof("POST", URL, NOW, None), &at_token_endpoint, &window(), None).unwrap();
    }

    #[test]
    fn a_private_key_in_the_jwk_is_refused() {
        let key = ClientKey::new();
        let mut header = key.header();
        header["jwk"]["d"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(check(&key.sign(&header, &claims(&key))), Err(ProofRejection::BadKey));
        let mut symmetric = key.header();
        symmetric["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(check(&key.sign(&symmetric, &claims(&key))), Err(ProofRejection::BadKey));
    }

    #[test]
    fn alg_none_hmac_and_rsa_are_refused() {
        let key = ClientKey::new();
        for alg in ["none", "HS256", "RS256", "ES384", "EdDSA", "es256"] {
            let mut header = key.header();
            header["alg"] = json!(alg);
            assert_eq!(check(&key.sign(&header, &claims(&key))), Err(ProofRejection::UnsupportedAlgorithm), "{alg}");
        }
        // alg none with an empty signature: refused before anything else is looked at.
        let unsigned = format!(
            "{}.{}.",
            B64URL.encode(serde_json::to_vec(&json!({"typ":"dpop+jwt","alg":"none","jwk":key.public_jwk()})).unwrap()),
            B64URL.encode(serde_json::to_vec(&claims(&key)).unwrap())
        );
        assert_eq!(check(&unsigned), Err(ProofRejection::Malformed));
        // An HMAC "signature" keyed with the public key's bytes (the classic confusion).
        let mut hs = key.header();
        hs["alg"] = json!("HS256");
        let input = format!(
            "{}.{}",
            B64URL.encode(serde_json::to_vec(&hs).unwrap()),
            B64URL.encode(serde_json::to_vec(&claims(&key)).unwrap())
        );
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.public_jwk().to_string().as_bytes()),
            input.as_bytes(),
        );
        assert_eq!(
            check(&format!("{input}.{}", B64URL.encode(mac.as_ref()))),
            Err(ProofRejection::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn wrong_typ_unknown_header_members_and_missing_claims_are_refused() {
        let key = ClientKey::new();
        for typ in ["at+jwt", "JWT", "application/jwt", "dpop", "application/dpop+jwt+x"] {
            let mut header = key.header();
            header["typ"] = json!(typ);
            assert_eq!(check(&key.sign(&header, &claims(&key))), Err(ProofRejection::WrongType), "{typ}");
        }
        // RFC 7515 §4.1.9: media types compare without case, "application/" implied.
        for typ in ["DPOP+JWT", "Dpop+Jwt", "application/dpop+jwt", "Application/DPoP+JWT"] {
            let mut header = key.header();
            header["typ"] = json!(typ);
            assert!(check(&key.sign(&header, &claims(&key))).is_ok(), "{typ}");
        }
        for member in ["kid", "jku", "x5c", "crit"] {
            let mut header = key.header();
            header[member] = json!("x");
            assert_eq!(check(&key.sign(&header, &claims(&key))), Err(ProofRejection::Malformed), "{member}");
        }
        for missing in ["jti", "htm", "htu", "iat"] {
            let mut c = claims(&key);
            c.as_object_mut().unwrap().remove(missing);
            assert_eq!(check(&key.sign(&key.header(), &c)), Err(ProofRejection::MissingClaim), "{missing}");
        }
        let mut long_jti = claims(&key);
        long_jti["jti"] = json!("j".repeat(MAX_JTI_BYTES + 1));
        assert_eq!(check(&key.sign(&key.header(), &long_jti)), Err(ProofRejection::MissingClaim));
        let mut string_iat = claims(&key);
        string_iat["iat"] = json!(NOW.to_string());
        assert_eq!(check(&key.sign(&key.header(), &string_iat)), Err(ProofRejection::Malformed));
        let mut other_curve = key.header();
        other_curve["jwk"]["crv"] = json!("P-384");
        assert_eq!(check(&key.sign(&other_curve, &claims(&key))), Err(ProofRejection::BadKey));
    }

    #[test]
    fn a_proof_signed_by_another_key_than_its_jwk_is_refused() {
        let (key, other) = (ClientKey::new(), ClientKey::new());
        let forged = other.sign(&key.header(), &claims(&key));
        assert_eq!(check(&forged), Err(ProofRejection::BadSignature));
    }

    #[test]
    fn the_called_url_comes_from_the_base_url_or_the_forwarded_scheme_and_host() {
        assert_eq!(
            called_url(Some("https://api.example.com/v1/"), Some("http"), Some("x"), "/api/whoami").as_deref(),
            Some("https://api.example.com/v1/api/whoami")
        );
        assert_eq!(
            called_url(None, None, Some("abc.execute-api.eu-west-1.amazonaws.com"), "/api/whoami").as_deref(),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com/api/whoami")
        );
        assert_eq!(
            called_url(None, Some("http"), Some("127.0.0.1:3000"), "/auth/refresh").as_deref(),
            Some("http://127.0.0.1:3000/auth/refresh")
        );
        assert_eq!(called_url(None, Some("gopher"), Some("h.test"), "/").as_deref(), Some("https://h.test/"));
        assert_eq!(called_url(None, None, Some("evil.test/x?"), "/"), None);
        assert_eq!(called_url(None, None, None, "/"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any change of one byte of a valid proof (header, claims or signature) is refused,
        /// or, if it still parses to the same proof, is accepted as exactly that proof.
        #[test]
        fn a_mutated_proof_is_refused(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let key = ClientKey::new();
            let good = key.proof("GET", URL, NOW, Some(TOKEN));
            let original = check(&good).unwrap();
            let mut bytes = good.into_bytes();
            let at = position.index(bytes.len());
            prop_assume!(bytes[at] != byte);
            bytes[at] = byte;
            let Ok(mutated) = String::from_utf8(bytes) else { return Ok(()) };
            // With the key kept from the good proof: the same verdict.
            let keys = ClientKeys::default();
            keys.verify_proof(&key.proof("GET", URL, NOW, Some(TOKEN)), &request(Some(TOKEN)), &window(), None).unwrap();
            prop_assert_eq!(keys.verify_proof(&mutated, &request(Some(TOKEN)), &window(), None), check(&mutated));
            match check(&mutated) {
                Err(_) => {}
                // base64url's last character may carry unused bits: the same bytes decode.
                Ok(proof) => prop_assert_eq!(proof, original),
            }
        }

        /// A proof's claims replaced by arbitrary JSON under a valid signature never pass
        /// unless they name this request in this window.
        #[test]
        fn arbitrary_signed_claims_pass_only_when_they_name_the_request(
            htm in prop::sample::select(vec!["GET", "POST", "get", ""]),
            htu in prop::sample::select(vec![URL, "https://api.example.test/", "http://api.example.test/api/whoami", "x"]),
            age in -10i64..120,
            with_ath in any::<bool>(),
        ) {
            let key = ClientKey::new();
            let iat = NOW.saturating_add_signed(-age);
            let mut c = json!({"jti": "j", "htm": htm, "htu": htu, "iat": iat});
            if with_ath { c["ath"] = json!(access_token_hash(TOKEN)); }
            let verdict = check(&key.sign(&key.header(), &c));
            let should_pass = htm == "GET" && htu == URL && (-5..=60).contains(&age) && with_ath;
            prop_assert_eq!(verdict.is_ok(), should_pass, "{:?}", verdict);
        }
    }
}
