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

/// Longest access-token lifetime a client may be registered with (`--token-ttl`): a day.
/// A disable's denylist entry lives as long as the client's longest-lived token.
pub const MAX_CLIENT_TOKEN_TTL_SECS: u64 = 86_400;

/// What an operator registers (`authctl clients add`), before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// The `client_id`.
    pub client_id: String,
    /// Public or confidential.
    pub client_type: ClientType,
    /// The grants asked for; empty: the type's default ([`ClientSpec::default_grants`]).
    pub grants: Vec<GrantType>,
    /// The scopes it may be given.
    pub scopes: Vec<String>,
    /// The APIs it may ask tokens for.
    pub audiences: Vec<String>,
    /// Its public keys for `private_key_jwt` (a JWKS document); `None`: a secret.
    pub jwks: Option<String>,
    /// Its access tokens' lifetime; `None`: the deployment's.
    pub token_ttl_secs: Option<u64>,
}

/// Why a registration or a registry operation is refused (the operator's mistake, said
/// plainly).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientRefusal {
    /// Not a client id.
    #[error("a client id is 1-{MAX_CLIENT_ID_BYTES} characters of A-Z a-z 0-9 . _ - :")]
    BadId,
    /// A public client cannot authenticate, so it cannot use this grant.
    #[error("a public client cannot use the {0} grant: it needs a confidential client (--confidential)")]
    GrantNeedsConfidential(&'static str),
    /// Keys for `private_key_jwt` on a client that never authenticates.
    #[error("a public client has no credentials: --jwks is for confidential clients")]
    JwksOnPublic,
    /// The JWKS file is not one we accept.
    #[error("the JWKS is refused: {0}")]
    BadJwks(String),
    /// An audience that is not an absolute URL or a plain API name.
    #[error("audience {0:?} is not a URL or an API name without spaces")]
    BadAudience(String),
    /// A lifetime of zero or beyond the bound.
    #[error("the token lifetime must be 1-{MAX_CLIENT_TOKEN_TTL_SECS} seconds")]
    BadTokenTtl,
    /// An operation a disabled client cannot have (a new secret would be of no use).
    #[error("client {0} is disabled (or was disabled meanwhile)")]
    Disabled(String),
    /// A rotation asked of a client without a secret.
    #[error("client {0} has no secret to rotate (a public client, or one with registered keys)")]
    NoSecret(String),
}

impl ClientSpec {
    /// The grants of a client registered without `--grant`: an app refreshes its user's
    /// session, a service gets its own tokens.
    pub fn default_grants(client_type: ClientType) -> Vec<GrantType> {
        match client_type {
            ClientType::Public => vec![GrantType::RefreshToken],
            ClientType::Confidential => vec![GrantType::ClientCredentials],
        }
    }

    /// The record to store at `now` and, for a confidential client without keys, its new
    /// secret (shown once, stored only hashed); refused if anything in it is not usable.
    pub fn register(self, now: u64) -> Result<(ClientRecord, Option<ClientSecret>), ClientRefusal> {
        if !is_valid_client_id(&self.client_id) {
            return Err(ClientRefusal::BadId);
        }
        let mut grants = if self.grants.is_empty() { Self::default_grants(self.client_type) } else { self.grants };
        let mut seen = std::collections::HashSet::new();
        grants.retain(|g| seen.insert(*g));
        if let Some(grant) = grants.iter().find(|g| !g.allowed_for(self.client_type)) {
            return Err(ClientRefusal::GrantNeedsConfidential(grant.as_str()));
        }
        if let Some(bad) = self.audiences.iter().find(|a| a.is_empty() || a.chars().any(char::is_whitespace)) {
            return Err(ClientRefusal::BadAudience(bad.clone()));
        }
        if self.token_ttl_secs.is_some_and(|ttl| ttl == 0 || ttl > MAX_CLIENT_TOKEN_TTL_SECS) {
            return Err(ClientRefusal::BadTokenTtl);
        }
        if let Some(jwks) = &self.jwks {
            if self.client_type == ClientType::Public {
                return Err(ClientRefusal::JwksOnPublic);
            }
            check_client_jwks(jwks).map_err(ClientRefusal::BadJwks)?;
        }
        let secret = (self.client_type == ClientType::Confidential && self.jwks.is_none()).then(ClientSecret::new);
        let record = ClientRecord {
            client_type: self.client_type,
            grants,
            token_ttl_secs: self.token_ttl_secs,
            secrets: secret
                .iter()
                .map(|s| StoredSecret { hash: s.hash(&self.client_id), created_at: now, expires_at: None })
                .collect(),
            jwks: self.jwks,
            ..ClientRecord::public(&self.client_id, self.scopes, self.audiences, now)
        };
        Ok((record, secret))
    }
}

/// JWK members that only a private or symmetric key has.
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a client's JWKS for `private_key_jwt`: a JSON `{"keys": [...]}` of at least one
/// public EC P-256 or RSA key of 2048 to 8192 bits, each parsed as the verifier would
/// (a point on the curve, a usable modulus), none with a private member. A `kid` is the
/// client's own naming and is kept as it is.
pub fn check_client_jwks(document: &str) -> Result<(), String> {
    use crate::rules::keys::jwk::JwkDocument;
    use crate::rules::keys::TrustedKey;
    let set: serde_json::Value = serde_json::from_str(document).map_err(|e| format!("not JSON: {e}"))?;
    let keys = set.get("keys").and_then(serde_json::Value::as_array).ok_or("no \"keys\" array")?;
    if keys.is_empty() {
        return Err("the \"keys\" array is empty".to_owned());
    }
    for (i, key) in keys.iter().enumerate() {
        let members = key.as_object().ok_or_else(|| format!("key {i} is not a JSON object"))?;
        if let Some(private) = PRIVATE_JWK_MEMBERS.iter().find(|m| members.contains_key(**m)) {
            return Err(format!("key {i} has the private member {private:?}: register public keys only"));
        }
        let mut jwk: JwkDocument = serde_json::from_value(key.clone()).map_err(|e| format!("key {i}: {e}"))?;
        if jwk.kty == "RSA" {
            let modulus = jwk.n.as_deref().and_then(|n| B64URL.decode(n).ok()).unwrap_or_default();
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < 2048 {
                return Err(format!("key {i}: an RSA modulus of at least 2048 bits is required"));
            }
        }
        // The client names its keys as it likes; the verifier's rule (kid = thumbprint) is
        // for our own keys.
        jwk.kid = None;
        TrustedKey::from_jwk(&jwk).map_err(|e| format!("key {i}: {e} (EC P-256 or RSA 2048-8192 bits)"))?;
    }
    Ok(())
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

    fn spec(client_type: ClientType, grants: &[GrantType]) -> ClientSpec {
        ClientSpec {
            client_id: "svc-a".into(),
            client_type,
            grants: grants.to_vec(),
            scopes: vec!["read".into()],
            audiences: vec!["https://api.b".into()],
            jwks: None,
            token_ttl_secs: None,
        }
    }

    fn p256_jwk() -> serde_json::Value {
        let key = crate::rules::keys::testing::LocalSigner::new();
        key.trusted().public_jwk().clone()
    }

    #[test]
    fn a_registration_takes_its_types_default_grants_and_a_secret_only_for_a_confidential_client_without_keys() {
        let (app, none) = spec(ClientType::Public, &[]).register(10).unwrap();
        assert_eq!(app.grants, vec![GrantType::RefreshToken]);
        assert!(none.is_none() && app.secrets.is_empty());
        let (service, secret) = spec(ClientType::Confidential, &[]).register(10).unwrap();
        assert_eq!(service.grants, vec![GrantType::ClientCredentials]);
        let secret = secret.expect("a confidential client gets a secret");
        assert!(service.secret_matches(&secret.encode(), 11));
        assert_eq!(service.secrets.len(), 1);
        assert!(!serde_json::to_string(&service).unwrap().contains(&secret.encode()), "only the hash is stored");
        let both = [GrantType::ClientCredentials, GrantType::TokenExchange, GrantType::ClientCredentials];
        let (service, _) = spec(ClientType::Confidential, &both).register(10).unwrap();
        assert_eq!(service.grants, both[..2].to_vec(), "a repeated grant is kept once");
    }

    #[test]
    fn a_public_client_with_a_confidential_grant_or_keys_is_refused_by_name() {
        for grant in [GrantType::ClientCredentials, GrantType::TokenExchange] {
            let refused = spec(ClientType::Public, &[grant]).register(0).unwrap_err();
            assert_eq!(refused, ClientRefusal::GrantNeedsConfidential(grant.as_str()));
            assert!(refused.to_string().contains(grant.as_str()) && refused.to_string().contains("--confidential"));
        }
        let jwks = serde_json::json!({"keys": [p256_jwk()]}).to_string();
        let refused = ClientSpec { jwks: Some(jwks), ..spec(ClientType::Public, &[]) }.register(0).unwrap_err();
        assert_eq!(refused, ClientRefusal::JwksOnPublic);
        assert_eq!(
            ClientSpec { client_id: "a b".into(), ..spec(ClientType::Public, &[]) }.register(0).unwrap_err(),
            ClientRefusal::BadId
        );
        for ttl in [0, MAX_CLIENT_TOKEN_TTL_SECS + 1] {
            let refused = ClientSpec { token_ttl_secs: Some(ttl), ..spec(ClientType::Public, &[]) }.register(0);
            assert_eq!(refused.unwrap_err(), ClientRefusal::BadTokenTtl);
        }
    }

    #[test]
    fn a_client_with_keys_gets_no_secret_and_its_jwks_must_hold_usable_public_keys_only() {
        let public = p256_jwk();
        let jwks = serde_json::json!({"keys": [public.clone()]}).to_string();
        let (client, secret) =
            ClientSpec { jwks: Some(jwks.clone()), ..spec(ClientType::Confidential, &[]) }.register(0).unwrap();
        assert!(secret.is_none() && client.secrets.is_empty());
        assert_eq!(client.jwks.as_deref(), Some(jwks.as_str()));
        let mut named = public.clone();
        named["kid"] = "client-key-1".into();
        assert_eq!(check_client_jwks(&serde_json::json!({"keys": [named]}).to_string()), Ok(()), "any kid");

        let mut private = public.clone();
        private["d"] = "AAAA".into();
        let mut symmetric = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        let mut off_curve = public.clone();
        off_curve["y"] = B64URL.encode([1u8; 32]).into();
        let mut short_rsa = serde_json::json!({"kty": "RSA", "e": "AQAB"});
        short_rsa["n"] = B64URL.encode([0xC5u8; 128]).into(); // 1024 bits
        let mut p384 = public.clone();
        p384["crv"] = "P-384".into();
        symmetric["alg"] = "HS256".into();
        for (what, document) in [
            ("not JSON", "{".to_owned()),
            ("no keys", "{}".to_owned()),
            ("empty", r#"{"keys": []}"#.to_owned()),
            ("private member", serde_json::json!({"keys": [private]}).to_string()),
            ("symmetric", serde_json::json!({"keys": [symmetric]}).to_string()),
            ("off the curve", serde_json::json!({"keys": [off_curve]}).to_string()),
            ("RSA 1024", serde_json::json!({"keys": [short_rsa]}).to_string()),
            ("P-384", serde_json::json!({"keys": [p384]}).to_string()),
            ("one good, one bad", serde_json::json!({"keys": [public.clone(), {"kty": "EC"}]}).to_string()),
        ] {
            assert!(check_client_jwks(&document).is_err(), "{what} must be refused");
        }
        let rsa = crate::rules::keys::testing::LocalSigner::rs256();
        let rsa_jwks = serde_json::json!({"keys": [rsa.trusted().public_jwk().clone()]}).to_string();
        assert_eq!(check_client_jwks(&rsa_jwks), Ok(()), "RSA 2048");
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
