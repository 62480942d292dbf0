//! The client registry's rules: who may call the token endpoint, with which grants, for
//! which scopes and audiences, and how a confidential client proves who it is.
//!
//! A client is public (the first-party and mobile apps: nothing to authenticate with) or
//! confidential (services: a server-generated secret, or a registered JWKS for
//! `private_key_jwt`, RFC 7523 §2.2). A secret is shown once and stored as a SHA-256 hash:
//! it is 256 random bits, so no guess can hit it and a slow password hash would only cost
//! every token request CPU time without making anything harder (the same reasoning as the
//! refresh and device tokens). During a rotation two secrets are valid: the new one and the
//! previous one until its expiry.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::rules::scope::Scope;
use crate::rules::token::random_bytes;

/// The client id of the first-party app: every session issued before the registry existed
/// belongs to it, and the local stack and `make deploy` register it.
pub const FIRST_PARTY_CLIENT_ID: &str = "first-party";

/// Longest client id accepted (anything longer is not one of ours, and is refused before
/// a read).
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// Whether `id` can be a client id: 1 to [`MAX_CLIENT_ID_BYTES`] of `A-Z a-z 0-9 . _ - :`,
/// so it is safe in keys, logs and metric dimensions.
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// RFC 6749 §2.1 client types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// Cannot keep a secret (an app on a user's device): never authenticates.
    Public,
    /// A service: authenticates with a secret or a signed assertion.
    Confidential,
}

/// The grants a client may be allowed, by their RFC names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GrantType {
    /// RFC 6749 §6.
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// RFC 6749 §4.4.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// RFC 8693.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    /// Every grant, in the order the metadata lists them.
    pub const ALL: [GrantType; 3] = [Self::RefreshToken, Self::ClientCredentials, Self::TokenExchange];

    /// The RFC name (`grant_type` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// The grant of an RFC name; `None` for any other.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// Whether a client of `client_type` may be given this grant: client credentials and
    /// token exchange need a client that authenticates (RFC 6749 §4.4, RFC 8693 §2.1).
    pub fn allowed_for(self, client_type: ClientType) -> bool {
        self == Self::RefreshToken || client_type == ClientType::Confidential
    }
}

/// Whether a client may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    /// Its tokens are issued and accepted.
    Active,
    /// Nothing is issued to it; tokens issued to it before `disabled_at` are revoked.
    Disabled,
}

/// A stored client secret: its hash, never the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// [`ClientSecret::hash`].
    pub hash: String,
    /// When it was generated, Unix seconds.
    pub created_at: u64,
    /// When a rotated-out secret stops working, Unix seconds; `None` for the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A registered client, in the shape of its DynamoDB item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The `client_id`.
    pub client_id: String,
    /// Public or confidential.
    pub client_type: ClientType,
    /// The grants it may use at the token endpoint.
    pub grants: Vec<GrantType>,
    /// The scopes it may be given (empty: none beyond what a user's session has, for a
    /// public client; a service with none gets tokens with an empty scope).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The APIs (`aud` values) it may ask tokens for; the first is its default for client
    /// credentials. Empty: the deployment's audience only.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Lifetime of the access tokens issued to it, seconds; `None`: the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl_secs: Option<u64>,
    /// Confidential clients with a secret: the current one first, then at most one
    /// rotated-out one until its expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<StoredSecret>,
    /// Confidential clients with `private_key_jwt`: the registered JWKS (RFC 7517 JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Active or disabled.
    pub status: ClientStatus,
    /// When it was disabled, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<u64>,
    /// When it was registered, Unix seconds.
    pub created_at: u64,
}

impl ClientRecord {
    /// A public client (an app): the refresh grant, the given scopes and audiences.
    pub fn public(client_id: &str, scopes: Vec<String>, audiences: Vec<String>, now: u64) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_type: ClientType::Public,
            grants: vec![GrantType::RefreshToken],
            scopes,
            audiences,
            token_ttl_secs: None,
            secrets: Vec::new(),
            jwks: None,
            status: ClientStatus::Active,
            disabled_at: None,
            created_at: now,
        }
    }

    /// Whether it may be used.
    pub fn is_active(&self) -> bool {
        self.status == ClientStatus::Active
    }

    /// Whether it may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.is_active() && self.grants.contains(&grant) && grant.allowed_for(self.client_type)
    }

    /// The scopes it may be given.
    pub fn scope(&self) -> Scope {
        Scope::from_tokens(self.scopes.iter().cloned())
    }

    /// The audience a token for it names: `requested` if it is one it may ask for, else
    /// `None` (RFC 8693 §2.2.2 `invalid_target`); no request: its first registered one,
    /// or the deployment's `default`.
    pub fn audience<'a>(&'a self, requested: Option<&'a str>, default: &'a str) -> Option<&'a str> {
        match requested {
            Some(aud) => (self.audiences.iter().any(|a| a == aud) || (self.audiences.is_empty() && aud == default))
                .then_some(aud),
            None => Some(self.audiences.first().map_or(default, String::as_str)),
        }
    }

    /// Whether `presented` is one of its secrets valid at `now`. Every stored secret is
    /// compared, in constant time, whichever matches.
    pub fn secret_matches(&self, presented: &str, now: u64) -> bool {
        let Some(presented) = ClientSecret::parse(presented) else { return false };
        let hash = presented.hash(&self.client_id);
        let mut matched = subtle::Choice::from(0);
        for stored in &self.secrets {
            let live = subtle::Choice::from(u8::from(stored.expires_at.is_none_or(|end| now < end)));
            matched |= stored.hash.as_bytes().ct_eq(hash.as_bytes()) & live;
        }
        bool::from(matched)
    }

    /// Starts a rotation at `now`: `new` becomes the current secret, the current one stays
    /// valid until `now + previous_valid_for_secs` (0: ends now), any older one is dropped.
    pub fn rotate_secret(&mut self, new: &ClientSecret, now: u64, previous_valid_for_secs: u64) {
        let previous = self.secrets.iter().find(|s| s.expires_at.is_none()).cloned();
        self.secrets =
            std::iter::once(StoredSecret { hash: new.hash(&self.client_id), created_at: now, expires_at: None })
                .chain(
                    previous
                        .filter(|_| previous_valid_for_secs > 0)
                        .map(|s| StoredSecret { expires_at: Some(now + previous_valid_for_secs), ..s }),
                )
                .collect();
    }
}

/// Prefix of every client secret, so secret scanners can recognise leaked ones.
pub const CLIENT_SECRET_PREFIX: &str = "tkcs_";

/// A client secret: `tkcs_` + 256 random bits, base64url. Generated by the server, shown
/// once, stored only as [`ClientSecret::hash`].
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret([u8; 32]);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

impl Default for ClientSecret {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientSecret {
    /// A new secret.
    pub fn new() -> Self {
        Self(random_bytes())
    }

    /// Parses a presented secret strictly; `None` for anything not of our exact form.
    pub fn parse(secret: &str) -> Option<Self> {
        let body = secret.strip_prefix(CLIENT_SECRET_PREFIX)?;
        let bytes: [u8; 32] = B64URL.decode(body).ok()?.try_into().ok()?;
        (B64URL.encode(bytes) == body).then_some(Self(bytes))
    }

    /// The string handed to the operator, once.
    pub fn encode(&self) -> String {
        format!("{CLIENT_SECRET_PREFIX}{}", B64URL.encode(self.0))
    }

    /// What is stored: SHA-256 over a domain tag, the client id and the secret, base64url.
    /// The client id in the hash means a stored hash is no use under another client.
    pub fn hash(&self, client_id: &str) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"tokenauth client secret v1\0");
        ctx.update(client_id.as_bytes());
        ctx.update(b"\0");
        ctx.update(&self.0);
        B64URL.encode(ctx.finish())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(secret: &ClientSecret) -> ClientRecord {
        let mut client = ClientRecord {
            client_type: ClientType::Confidential,
            grants: vec![GrantType::ClientCredentials],
            ..ClientRecord::public("svc-b", vec!["read".into()], vec!["https://api.c".into()], 100)
        };
        client.secrets = vec![StoredSecret { hash: secret.hash("svc-b"), created_at: 100, expires_at: None }];
        client
    }

    #[test]
    fn a_secret_matches_only_its_own_client_and_only_in_our_form() {
        let secret = ClientSecret::new();
        let client = service(&secret);
        assert!(client.secret_matches(&secret.encode(), 200));
        assert!(!client.secret_matches(&ClientSecret::new().encode(), 200));
        assert!(!client.secret_matches(&secret.encode()[1..], 200));
        assert!(!client.secret_matches(&format!("{} ", secret.encode()), 200));
        let mut other = service(&secret);
        other.client_id = "svc-x".into();
        assert!(!other.secret_matches(&secret.encode(), 200), "the hash is bound to the client id");
        assert!(!format!("{secret:?}{client:?}").contains(&secret.encode()[5..]));
    }

    #[test]
    fn a_rotation_keeps_two_secrets_valid_until_the_previous_expires() {
        let (old, new, newest) = (ClientSecret::new(), ClientSecret::new(), ClientSecret::new());
        let mut client = service(&old);
        client.rotate_secret(&new, 1000, 600);
        assert!(client.secret_matches(&old.encode(), 1599));
        assert!(client.secret_matches(&new.encode(), 1599));
        assert!(!client.secret_matches(&old.encode(), 1600), "rotated out");
        client.rotate_secret(&newest, 1700, 600);
        assert_eq!(client.secrets.len(), 2);
        assert!(!client.secret_matches(&old.encode(), 1701), "only one previous secret is kept");
        assert!(client.secret_matches(&new.encode(), 1701));
        client.rotate_secret(&ClientSecret::new(), 1800, 0);
        assert!(!client.secret_matches(&newest.encode(), 1800), "0: the previous one ends now");
    }

    #[test]
    fn grants_audiences_and_status() {
        let mut client = service(&ClientSecret::new());
        assert!(client.allows(GrantType::ClientCredentials));
        assert!(!client.allows(GrantType::TokenExchange));
        assert_eq!(client.audience(None, "api"), Some("https://api.c"));
        assert_eq!(client.audience(Some("https://api.c"), "api"), Some("https://api.c"));
        assert_eq!(client.audience(Some("api"), "api"), None);
        client.status = ClientStatus::Disabled;
        assert!(!client.allows(GrantType::ClientCredentials));
        let mut app = ClientRecord::public("app", vec![], vec![], 0);
        assert_eq!(app.audience(None, "api"), Some("api"));
        assert_eq!(app.audience(Some("api"), "api"), Some("api"));
        app.grants.push(GrantType::ClientCredentials);
        assert!(!app.allows(GrantType::ClientCredentials), "a public client cannot use client credentials");
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
            assert_eq!(serde_json::to_value(grant).unwrap(), grant.as_str());
        }
        assert!(is_valid_client_id("first-party") && !is_valid_client_id("a b") && !is_valid_client_id(""));
    }
}
