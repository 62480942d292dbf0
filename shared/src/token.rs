//! What login issues: the access token (RFC 9068 JWT profile, JWS compact form) and the
//! opaque refresh token.
//!
//! The JWT is assembled here rather than by a JWT library because the signature comes
//! from KMS, asynchronously, and the key's algorithm (never a caller) decides `alg`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::DependencyError;
use crate::keys::Signer;

/// `typ` of an access token, RFC 9068 §2.1.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of an access token: RFC 9068 §2.2 plus `sid`, the refresh-token family
/// (session) it belongs to, so a session's access tokens can be revoked together.
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
    /// Session id: the refresh-token family.
    pub sid: String,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Signs access tokens with one key. The encoded header is built once.
pub struct AccessTokenIssuer {
    signer: Arc<dyn Signer>,
    encoded_header: String,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl fmt::Debug for AccessTokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenIssuer")
            .field("kid", &self.signer.kid())
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
}

impl AccessTokenIssuer {
    /// An issuer for `iss`/`aud` whose tokens live `ttl`.
    pub fn new(signer: Arc<dyn Signer>, issuer: String, audience: String, ttl: Duration) -> Self {
        let header = Header { alg: signer.algorithm().as_str(), typ: ACCESS_TOKEN_TYP, kid: signer.kid() };
        // Serialising a struct of strings cannot fail.
        let encoded_header = B64URL.encode(serde_json::to_vec(&header).unwrap_or_default());
        Self { signer, encoded_header, issuer, audience, ttl }
    }

    /// The lifetime of the tokens, for `expires_in`.
    pub fn ttl(&self) -> Duration {
        self.ttl
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
            sid: grant.session_id.to_owned(),
        }
    }

    /// Signs `claims` into a compact JWS: one `kms:Sign` call.
    pub async fn sign(&self, claims: &AccessClaims) -> Result<String, DependencyError> {
        let payload = serde_json::to_vec(claims).map_err(|e| DependencyError::Internal(e.to_string()))?;
        let mut token = String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.encoded_header);
        token.push('.');
        B64URL.encode_string(&payload, &mut token);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let digest: &[u8; 32] = digest
            .as_ref()
            .try_into()
            .map_err(|_| DependencyError::Internal("SHA-256 digest is not 32 bytes".to_owned()))?;
        let signature = self.signer.sign_digest(digest).await?;
        token.push('.');
        B64URL.encode_string(&signature, &mut token);
        Ok(token)
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

/// Prefix of every refresh token, so secret scanners can recognise leaked ones.
pub const REFRESH_TOKEN_PREFIX: &str = "tkrt_";
const FAMILY_ID_LEN: usize = 22; // 16 bytes, base64url, no padding
const SECRET_LEN: usize = 43; // 32 bytes, base64url, no padding

/// An opaque refresh token: `tkrt_<family id>.<secret>`. The family id (128 random bits)
/// finds the family with one key lookup; the secret (256 random bits) proves possession.
/// Only [`RefreshToken::hash`] is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    family_id: String,
    secret: [u8; 32],
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken").field("family_id", &self.family_id).field("secret", &"<redacted>").finish()
    }
}

impl RefreshToken {
    /// A new token for a new family.
    pub fn new_family() -> Self {
        Self { family_id: random_id(), secret: random_bytes() }
    }

    /// A new token (the next generation) for an existing family.
    pub fn next_in_family(family_id: &str) -> Self {
        Self { family_id: family_id.to_owned(), secret: random_bytes() }
    }

    /// Parses a presented token strictly; `None` for anything not of our exact form.
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(REFRESH_TOKEN_PREFIX)?;
        if rest.len() != FAMILY_ID_LEN + 1 + SECRET_LEN || rest.as_bytes()[FAMILY_ID_LEN] != b'.' {
            return None;
        }
        let (family_id, secret) = (&rest[..FAMILY_ID_LEN], &rest[FAMILY_ID_LEN + 1..]);
        let family_bytes = B64URL.decode(family_id).ok()?;
        let secret: [u8; 32] = B64URL.decode(secret).ok()?.try_into().ok()?;
        // Canonical encodings only: one token, one spelling.
        if family_bytes.len() != 16 || B64URL.encode(&family_bytes) != family_id {
            return None;
        }
        if B64URL.encode(secret) != rest[FAMILY_ID_LEN + 1..] {
            return None;
        }
        Some(Self { family_id: family_id.to_owned(), secret })
    }

    /// The family (session) this token belongs to.
    pub fn family_id(&self) -> &str {
        &self.family_id
    }

    /// The string handed to the client.
    pub fn encode(&self) -> String {
        format!("{REFRESH_TOKEN_PREFIX}{}.{}", self.family_id, B64URL.encode(self.secret))
    }

    /// What is stored: SHA-256 over the family id and the secret, base64url. A fast hash is
    /// right here: the secret has 256 bits of entropy, so there is nothing to brute-force.
    pub fn hash(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"tokenauth refresh token v1\0");
        ctx.update(self.family_id.as_bytes());
        ctx.update(b"\0");
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
        assert_eq!(RefreshToken::parse(&encoded), Some(token.clone()));
        assert_eq!(RefreshToken::parse(&encoded).map(|t| t.hash()), Some(token.hash()));
    }

    #[test]
    fn refresh_tokens_carry_256_random_bits_and_differ() {
        let a = RefreshToken::new_family();
        let b = RefreshToken::next_in_family(a.family_id());
        assert_eq!(a.family_id(), b.family_id());
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.secret.len() * 8, 256);
    }

    #[test]
    fn rejects_anything_but_the_exact_form() {
        let good = RefreshToken::new_family().encode();
        let mut bad: Vec<String> = vec![
            String::new(),
            good[1..].to_owned(),
            format!("{good}x"),
            good.replace('.', "_"),
            good.replacen(REFRESH_TOKEN_PREFIX, "TKRT_", 1),
            format!("{}=", &good[..good.len() - 1]),
        ];
        // The last secret character carries 2 unused bits, zero when canonical; setting
        // one spells the same bytes differently, which must not parse.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut non_canonical = good.clone().into_bytes();
        let last = non_canonical.len() - 1;
        let index = ALPHABET.iter().position(|c| *c == non_canonical[last]).expect("base64url");
        assert_eq!(index & 0b11, 0, "canonical encoding leaves the unused bits zero");
        non_canonical[last] = ALPHABET[index | 1];
        let non_canonical = String::from_utf8(non_canonical).expect("ascii");
        bad.push(non_canonical);
        for b in bad {
            assert_eq!(RefreshToken::parse(&b), None, "{b}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = RefreshToken::new_family();
        let secret = B64URL.encode(token.secret);
        assert!(!format!("{token:?}").contains(&secret));
    }
}
