//! What login and refresh issue: the access token (RFC 9068 JWT profile, JWS compact
//! form), the opaque refresh token, and the RFC 6749 §5.1 token response that carries both.
//!
//! The JWT is assembled here rather than by a JWT library because the signature comes
//! from KMS, asynchronously, and the key's algorithm (never a caller) decides `alg`.
//! [`crate::rules::verify`] is the one verifier of what is issued here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::DependencyError;
use crate::rules::keys::Signer;

/// `typ` of an access token, RFC 9068 §2.1.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of an access token: RFC 9068 §2.2 plus `sid`, the refresh-token family
/// (session) it belongs to, so a session's access tokens can be revoked together. A
/// service's own token (client credentials) has no session: `sub` is its `client_id` and
/// there is no `sid` ([`AccessClaims::is_service`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Stable user id (never the username).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scope, space-separated (RFC 6749 §3.3).
    pub scope: String,
    /// Session id: the refresh-token family; none for a service's own token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The key the token is bound to (RFC 9449 §6.1), for a DPoP-bound session: presented
    /// only as `Authorization: DPoP` with a proof from that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The calling client of a token exchanged for a user (RFC 8693 §4.1), nesting the
    /// actors of the token it was exchanged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// `act` (RFC 8693 §4.1): who acts for the subject, and before it whoever acted for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The acting client's id.
    pub sub: String,
    /// The actor before this one, if the subject token was itself exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// Every actor of the chain, the latest first.
    pub fn chain(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }
}

/// `cnf` of a sender-constrained token (RFC 7800 §3.1, RFC 9449 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the client's DPoP key.
    pub jkt: String,
}

impl AccessClaims {
    /// The DPoP key thumbprint the token is bound to, if it is.
    pub fn bound_to(&self) -> Option<&str> {
        self.cnf.as_ref().map(|c| c.jkt.as_str())
    }

    /// Whether this is a service's own token (client credentials): no session, no user,
    /// `sub` is the client. The verifier accepts no other token without `sid`.
    pub fn is_service(&self) -> bool {
        self.sid.is_none()
    }

    /// Whether a client of this token's chain (issued to it, or acting in it) is `client_id`.
    pub fn involves_client(&self, client_id: &str) -> bool {
        self.client_id == client_id || self.act.as_ref().is_some_and(|a| a.chain().any(|a| a.sub == client_id))
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'static str,
    kid: &'a str,
}

/// The base64url JOSE header of our access tokens for a key: `alg`, `typ`, `kid` and
/// nothing else. The issuer writes exactly this, and the verifier recognises it as is.
pub fn encoded_header(alg: &str, kid: &str) -> String {
    // Serialising a struct of strings cannot fail.
    B64URL.encode(serde_json::to_vec(&Header { alg, typ: ACCESS_TOKEN_TYP, kid }).unwrap_or_default())
}

/// Issues access tokens: builds the claims and has the signer sign them.
pub struct AccessTokenIssuer {
    signer: Arc<dyn Signer>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl fmt::Debug for AccessTokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Who and what a new access token is for.
#[derive(Debug, Clone)]
pub struct AccessGrant<'a> {
    /// The user id.
    pub subject: &'a str,
    /// The client.
    pub client_id: &'a str,
    /// Granted scope, space-separated.
    pub scope: &'a str,
    /// The session (family) id.
    pub session_id: &'a str,
    /// The DPoP key thumbprint the session is bound to, if it is: the token carries it as
    /// `cnf.jkt` and the response says `token_type: DPoP`.
    pub bound_to: Option<&'a str>,
}

/// RFC 8693 §3: the type URI of an access token, for `subject_token_type` and
/// `issued_token_type`.
pub const ACCESS_TOKEN_TYPE_URI: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Who and what an access-only token is for: a service itself (client credentials: `subject`
/// = `client_id`, no session), or a user through a calling service (token exchange: the
/// user's session and an `act`).
#[derive(Debug, Clone)]
pub struct AccessOnlyGrant<'a> {
    /// `sub`: the client itself, or the user of the exchanged token.
    pub subject: &'a str,
    /// The client the token is issued to.
    pub client_id: &'a str,
    /// Granted scope, space-separated.
    pub scope: &'a str,
    /// `aud`; `None`: the deployment's audience.
    pub audience: Option<&'a str>,
    /// The user's session, for an exchanged token; `None` for a service's own token.
    pub session_id: Option<&'a str>,
    /// The actor chain of an exchanged token.
    pub act: Option<Actor>,
    /// The client's registered lifetime; `None`: the deployment's.
    pub ttl: Option<Duration>,
    /// No later expiry than this (an exchanged token ends with its subject token).
    pub not_after: Option<u64>,
    /// A token exchange answer (says `issued_token_type`).
    pub exchanged: bool,
    /// The DPoP key thumbprint of the caller's proof, if it sent one (RFC 9449 §5): the
    /// token carries it as `cnf.jkt` and the response says `token_type: DPoP`.
    pub bound_to: Option<&'a str>,
}

impl AccessTokenIssuer {
    /// An issuer for `iss`/`aud` whose tokens live `ttl`.
    pub fn new(signer: Arc<dyn Signer>, issuer: String, audience: String, ttl: Duration) -> Self {
        Self { signer, issuer, audience, ttl }
    }

    /// The lifetime of the tokens, for `expires_in`.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a session's tokens: the access token for `grant` (claims built here, one
    /// `kms:Sign`) and the RFC 6749 §5.1 response carrying it with `refresh_token`. The
    /// one issuing path of login and refresh.
    pub async fn issue(
        &self,
        grant: &AccessGrant<'_>,
        refresh_token: &RefreshToken,
        now: u64,
    ) -> Result<TokenResponse, DependencyError> {
        let access_token = self.sign(&self.claims(grant, now)).await?;
        Ok(TokenResponse {
            access_token,
            token_type: if grant.bound_to.is_some() { "DPoP" } else { "Bearer" },
            expires_in: self.ttl.as_secs(),
            refresh_token: Some(refresh_token.encode()),
            scope: grant.scope.to_owned(),
            device_token: None,
            issued_token_type: None,
        })
    }

    /// The claims of a token issued at `now`.
    pub fn claims(&self, grant: &AccessGrant<'_>, now: u64) -> AccessClaims {
        AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.subject.to_owned(),
            aud: self.audience.clone(),
            exp: now + self.ttl.as_secs(),
            iat: now,
            jti: random_id(),
            client_id: grant.client_id.to_owned(),
            scope: grant.scope.to_owned(),
            sid: Some(grant.session_id.to_owned()),
            cnf: grant.bound_to.map(|jkt| Confirmation { jkt: jkt.to_owned() }),
            act: None,
        }
    }

    /// Issues an access token without a refresh token (client credentials, token
    /// exchange): the response of RFC 6749 §4.4.3 / RFC 8693 §2.2.1.
    pub async fn issue_access_only(
        &self,
        grant: &AccessOnlyGrant<'_>,
        now: u64,
    ) -> Result<TokenResponse, DependencyError> {
        let claims = self.access_only_claims(grant, now);
        let expires_in = claims.exp.saturating_sub(now);
        let access_token = self.sign(&claims).await?;
        Ok(TokenResponse {
            access_token,
            token_type: if grant.bound_to.is_some() { "DPoP" } else { "Bearer" },
            expires_in,
            refresh_token: None,
            scope: grant.scope.to_owned(),
            device_token: None,
            issued_token_type: grant.exchanged.then_some(ACCESS_TOKEN_TYPE_URI),
        })
    }

    /// The claims of an access-only token issued at `now`: lives `grant.ttl` (or the
    /// deployment's lifetime), never past `grant.not_after`.
    pub fn access_only_claims(&self, grant: &AccessOnlyGrant<'_>, now: u64) -> AccessClaims {
        let ttl = grant.ttl.unwrap_or(self.ttl).as_secs();
        let exp = grant.not_after.map_or(now + ttl, |limit| limit.min(now + ttl));
        AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.subject.to_owned(),
            aud: grant.audience.unwrap_or(&self.audience).to_owned(),
            exp,
            iat: now,
            jti: random_id(),
            client_id: grant.client_id.to_owned(),
            scope: grant.scope.to_owned(),
            sid: grant.session_id.map(str::to_owned),
            cnf: grant.bound_to.map(|jkt| Confirmation { jkt: jkt.to_owned() }),
            act: grant.act.clone(),
        }
    }

    /// Signs `claims` into a compact JWS: one `kms:Sign` call.
    pub async fn sign(&self, claims: &AccessClaims) -> Result<String, DependencyError> {
        let payload = serde_json::to_vec(claims).map_err(|e| DependencyError::Internal(e.to_string()))?;
        self.signer.sign_jws(&payload).await
    }
}

/// RFC 6749 §5.1 successful token response.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The signed access token (JWT).
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a session bound to a DPoP key (RFC 9449 §5).
    pub token_type: &'static str,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// The opaque refresh token; none for client credentials and token exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scope; left out when nothing is granted (RFC 6749 §3.3: a scope is one
    /// or more scope-tokens, so `""` is none; the access token's `scope` claim still says
    /// `""`, as every verifier requires the claim).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// Login only: the device token of a client that logged in (an extension member, RFC
    /// 6749 §5.1). Presented at its next login, it exempts the client from the lockout a
    /// stranger's guesses put on the username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Token exchange only (RFC 8693 §2.2.1): the type of the issued token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// 128 random bits, base64url: ids that cannot be guessed (jti, family, user).
pub fn random_id() -> String {
    B64URL.encode(random_bytes::<16>())
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not recoverable: no token may be issued without it.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("operating system random number generator failed");
    bytes
}

/// Prefix of every device token.
pub const DEVICE_TOKEN_PREFIX: &str = "tkdv_";

/// A device token (OWASP's device cookie): `tkdv_` + 256 random bits, base64url. Only its
/// hash is stored, under the username it logged in as.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken([u8; 32]);

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

impl DeviceToken {
    /// A new device token.
    pub fn new() -> Self {
        Self(random_bytes())
    }

    /// Parses a presented token strictly; `None` for anything not of our exact form.
    pub fn parse(token: &str) -> Option<Self> {
        let body = token.strip_prefix(DEVICE_TOKEN_PREFIX)?;
        let bytes: [u8; 32] = B64URL.decode(body).ok()?.try_into().ok()?;
        (B64URL.encode(bytes) == body).then_some(Self(bytes))
    }

    /// The string handed to the client.
    pub fn encode(&self) -> String {
        format!("{DEVICE_TOKEN_PREFIX}{}", B64URL.encode(self.0))
    }

    /// What is stored: SHA-256, base64url (256 random bits need no slow hash).
    pub fn hash(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"tokenauth device token v1\0");
        ctx.update(&self.0);
        B64URL.encode(ctx.finish())
    }
}

impl Default for DeviceToken {
    fn default() -> Self {
        Self::new()
    }
}

/// Prefix of every refresh token, so secret scanners can recognise leaked ones.
pub const REFRESH_TOKEN_PREFIX: &str = "tkrt_";
const FAMILY_BYTES: usize = 16;
const SECRET_BYTES: usize = 32;
const BODY_BYTES: usize = FAMILY_BYTES + 4 + SECRET_BYTES;
/// Length of a refresh token string.
pub const REFRESH_TOKEN_LEN: usize = REFRESH_TOKEN_PREFIX.len() + (BODY_BYTES * 4).div_ceil(3);

/// Whether `id` is spelled as a family (session) id: 128 bits, canonical base64url. A
/// `sid` from a URL that is not one names no session, and is not looked up.
pub fn is_family_id(id: &str) -> bool {
    B64URL.decode(id).is_ok_and(|bytes| bytes.len() == FAMILY_BYTES && B64URL.encode(&bytes) == id)
}

/// An opaque refresh token: `tkrt_` + base64url(family id ‖ generation ‖ secret).
///
/// The family id (128 random bits) finds the family with one key lookup; the generation
/// (0 at login, +1 per rotation) says which slot of the family's history the token
/// belongs in; the secret (256 random bits) proves possession. Only
/// [`RefreshToken::hash`] is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    family: [u8; FAMILY_BYTES],
    generation: u32,
    secret: [u8; SECRET_BYTES],
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("family_id", &self.family_id())
            .field("generation", &self.generation)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl RefreshToken {
    /// The first token (generation 0) of a new family.
    pub fn new_family() -> Self {
        Self { family: random_bytes(), generation: 0, secret: random_bytes() }
    }

    /// The next token of this family: generation + 1, a fresh secret. `None` when the
    /// generation counter is exhausted (2^32 rotations: the family must end).
    pub fn successor(&self) -> Option<Self> {
        Some(Self { family: self.family, generation: self.generation.checked_add(1)?, secret: random_bytes() })
    }

    /// The token of `generation` in the family `family_id` with a known secret (used when
    /// a sealed successor is opened).
    pub fn from_parts(family_id: &str, generation: u32, secret: [u8; SECRET_BYTES]) -> Option<Self> {
        let family: [u8; FAMILY_BYTES] = B64URL.decode(family_id).ok()?.try_into().ok()?;
        Some(Self { family, generation, secret })
    }

    /// Parses a presented token strictly; `None` for anything not of our exact form.
    pub fn parse(token: &str) -> Option<Self> {
        if token.len() != REFRESH_TOKEN_LEN {
            return None;
        }
        let body = token.strip_prefix(REFRESH_TOKEN_PREFIX)?;
        let bytes = B64URL.decode(body).ok()?;
        // One token, one spelling: non-canonical trailing bits are refused.
        if bytes.len() != BODY_BYTES || B64URL.encode(&bytes) != body {
            return None;
        }
        let (family, rest) = bytes.split_at(FAMILY_BYTES);
        let (generation, secret) = rest.split_at(4);
        Some(Self {
            family: family.try_into().ok()?,
            generation: u32::from_be_bytes(generation.try_into().ok()?),
            secret: secret.try_into().ok()?,
        })
    }

    /// The family (session) this token belongs to, base64url: the `sid` claim.
    pub fn family_id(&self) -> String {
        B64URL.encode(self.family)
    }

    /// 0 at login, +1 per rotation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The secret; only for sealing a successor under it.
    pub(crate) fn secret(&self) -> &[u8; SECRET_BYTES] {
        &self.secret
    }

    /// The string handed to the client.
    pub fn encode(&self) -> String {
        let mut body = [0u8; BODY_BYTES];
        body[..FAMILY_BYTES].copy_from_slice(&self.family);
        body[FAMILY_BYTES..FAMILY_BYTES + 4].copy_from_slice(&self.generation.to_be_bytes());
        body[FAMILY_BYTES + 4..].copy_from_slice(&self.secret);
        let mut out = String::with_capacity(REFRESH_TOKEN_LEN);
        out.push_str(REFRESH_TOKEN_PREFIX);
        B64URL.encode_string(body, &mut out);
        out
    }

    /// What is stored: SHA-256 over the family id, the generation and the secret,
    /// base64url. A fast hash is right here: the secret has 256 bits of entropy, so there
    /// is nothing to brute-force.
    pub fn hash(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"tokenauth refresh token v1\0");
        ctx.update(&self.family);
        ctx.update(&self.generation.to_be_bytes());
        ctx.update(&self.secret);
        B64URL.encode(ctx.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_token_round_trips_through_its_string_form() {
        let token = RefreshToken::new_family();
        let encoded = token.encode();
        assert!(encoded.starts_with(REFRESH_TOKEN_PREFIX));
        assert_eq!(encoded.len(), REFRESH_TOKEN_LEN);
        assert_eq!(RefreshToken::parse(&encoded), Some(token.clone()));
        let next = token.successor().expect("successor");
        assert_eq!(RefreshToken::parse(&next.encode()), Some(next));
    }

    #[test]
    fn successors_share_the_family_count_up_and_carry_fresh_256_bit_secrets() {
        let a = RefreshToken::new_family();
        let b = a.successor().expect("successor");
        assert_eq!(a.family_id(), b.family_id());
        assert_eq!((a.generation(), b.generation()), (0, 1));
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.secret.len() * 8, 256);
        assert_ne!(RefreshToken::new_family().family_id(), a.family_id());
    }

    #[test]
    fn only_a_canonical_128_bit_id_is_a_family_id() {
        let family = RefreshToken::new_family().family_id();
        assert!(is_family_id(&family));
        for not_one in ["", "abc", &family[1..], &format!("{family}A"), "../../etc", "AAAAAAAAAAAAAAAAAAAAAB"] {
            assert!(!is_family_id(not_one), "{not_one:?}");
        }
    }

    #[test]
    fn the_hash_binds_family_generation_and_secret() {
        let a = RefreshToken::new_family();
        let mut other_generation = a.clone();
        other_generation.generation = 1;
        let mut other_family = a.clone();
        other_family.family[0] ^= 1;
        assert_ne!(a.hash(), other_generation.hash());
        assert_ne!(a.hash(), other_family.hash());
    }

    #[test]
    fn rejects_anything_but_the_exact_form() {
        let good = RefreshToken::new_family().encode();
        let mut bad: Vec<String> = vec![
            String::new(),
            good[1..].to_owned(),
            format!("{good}x"),
            format!("{}=", &good[..good.len() - 1]),
            good.replacen(REFRESH_TOKEN_PREFIX, "TKRT_", 1),
            good.replace('-', "+").replace('_', "/"),
        ];
        bad.retain(|b| b != &good);
        // The last character carries unused bits, zero when canonical; setting one
        // spells the same bytes differently, which must not parse.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut non_canonical = good.clone().into_bytes();
        let last = non_canonical.len() - 1;
        let index = ALPHABET.iter().position(|c| *c == non_canonical[last]).expect("base64url");
        assert_eq!(index & 0b1111, 0, "canonical encoding leaves the unused bits zero");
        non_canonical[last] = ALPHABET[index | 1];
        bad.push(String::from_utf8(non_canonical).expect("ascii"));
        for b in bad {
            assert_eq!(RefreshToken::parse(&b), None, "{b}");
        }
    }

    #[test]
    fn device_tokens_round_trip_and_only_their_exact_form_parses() {
        let token = DeviceToken::new();
        let encoded = token.encode();
        assert_eq!(DeviceToken::parse(&encoded), Some(token.clone()));
        assert_ne!(token.hash(), DeviceToken::new().hash());
        assert!(!format!("{token:?}").contains(&encoded[5..]));
        for bad in [&encoded[1..], &format!("{encoded}A"), &encoded.replace("tkdv_", "tkrt_"), ""] {
            assert_eq!(DeviceToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_token_response_leaves_out_a_scope_that_grants_nothing() {
        let response = |scope: &str| {
            serde_json::to_value(TokenResponse {
                access_token: "a.b.c".into(),
                token_type: "Bearer",
                expires_in: 900,
                refresh_token: None,
                scope: scope.into(),
                device_token: None,
                issued_token_type: None,
            })
            .expect("a token response serialises")
        };
        assert_eq!(response("read write")["scope"], "read write");
        assert!(response("").get("scope").is_none(), "RFC 6749 §3.3: \"\" is not a scope");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = RefreshToken::new_family();
        let secret = B64URL.encode(token.secret);
        assert!(!format!("{token:?}").contains(&secret));
    }
}
