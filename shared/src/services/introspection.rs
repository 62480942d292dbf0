//! Token introspection (RFC 7662) for confidential clients: whether a token is live right
//! now, read strongly consistent, so a revoke is seen at once rather than within the
//! authorizer's poll (the point of asking).
//!
//! An access token is verified by the one verifier accepting any of our audiences, then
//! asked of [`TokenLiveness`]; a refresh token is its family's state (current, alive, its
//! account still holding it). Who may see which token is [`crate::rules::introspection`]'s.
//! Introspection reads only: it never counts as a use of a refresh token.

use std::fmt;
use std::sync::Arc;

use crate::error::ApiError;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::rules::clients::ClientRecord;
use crate::rules::introspection::{
    active_refresh_scope, is_current_and_alive, is_unexpired, may_introspect, may_see_access_token,
    may_see_refresh_token, Introspection,
};
use crate::rules::token::RefreshToken;
use crate::rules::username::Username;
use crate::services::client_auth::{ClientAuthenticator, ClientCredentials};
use crate::services::keys::KeyRing;
use crate::services::liveness::TokenLiveness;
use crate::store::{DynamoFamilies, DynamoUsers};

/// An introspection request (RFC 7662 §2.1).
#[derive(Clone)]
pub struct IntrospectionRequest {
    /// How the caller authenticates its client.
    pub client: ClientCredentials,
    /// The token asked about.
    pub token: String,
    /// `access_token` or `refresh_token`; a hint only (§2.1): the two forms cannot be
    /// mistaken for each other, so it is not needed.
    pub token_type_hint: Option<String>,
}

impl fmt::Debug for IntrospectionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionRequest")
            .field("client", &self.client)
            .field("token_type_hint", &self.token_type_hint)
            .finish_non_exhaustive()
    }
}

/// The introspect function's service.
pub struct IntrospectionService {
    clients: ClientAuthenticator,
    liveness: TokenLiveness,
    families: DynamoFamilies,
    users: DynamoUsers,
    keys: KeyRing,
    issuer: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IntrospectionService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionService").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl IntrospectionService {
    /// Builds the service with the one verifier accepting any audience, its keys read now
    /// (so the first request need not) and again at most once per `KEY_SET_RELOAD_SECS`.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = KeyRing::for_any_audience(config, dynamodb.clone(), kms);
        keys.sync(clock.now()).await;
        Self::new(config, dynamodb, keys, clock)
    }

    /// The service around a key ring as it is (no I/O here).
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client, keys: KeyRing, clock: Arc<dyn Clock>) -> Self {
        let clients = ClientAuthenticator::from_config(config, dynamodb.clone());
        Self {
            liveness: TokenLiveness::new(config, dynamodb.clone(), clients.clone()),
            clients,
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table, &config.users_table),
            users: DynamoUsers::new(dynamodb, &config.users_table),
            keys,
            issuer: config.issuer.clone(),
            clock,
        }
    }

    /// RFC 7662 §2.2: the caller, a confidential client, learns whether `request.token` is
    /// live and, if it may see it, its claims. A public client, or none, is
    /// `invalid_client` (§2.1: the endpoint is protected). Garbage, foreign, expired,
    /// revoked and unknown tokens, and tokens the caller may not see, are all
    /// `{"active": false}`.
    pub async fn introspect(&self, request: IntrospectionRequest) -> Result<Introspection, ApiError> {
        let now = self.clock.now();
        let client = self.clients.authenticate(&request.client, now).await?;
        if !may_introspect(&client) {
            return Err(request.client.refused());
        }
        let answer = match RefreshToken::parse(&request.token) {
            Some(refresh) => self.refresh_token(&client, &refresh, now).await?,
            None => self.access_token(&client, &request.token, now).await?,
        };
        tracing::info!(client_id = %client.client_id, active = answer.active, "introspected");
        Ok(answer)
    }

    /// An access token: verified, not expired (no leeway), visible to `client`, live.
    async fn access_token(&self, client: &ClientRecord, token: &str, now: u64) -> Result<Introspection, ApiError> {
        let Ok(claims) = self.keys.fresh_verifier(now).await?.verify(token, now) else {
            return Ok(Introspection::inactive());
        };
        if !is_unexpired(&claims, now)
            || !may_see_access_token(client, &claims)
            || !self.liveness.is_live(&claims).await?
        {
            return Ok(Introspection::inactive());
        }
        Ok(Introspection::access_token(&claims))
    }

    /// A refresh token: its family issued to `client`, the token current, the family
    /// alive and its account holding it. Nothing is written.
    async fn refresh_token(
        &self,
        client: &ClientRecord,
        presented: &RefreshToken,
        now: u64,
    ) -> Result<Introspection, ApiError> {
        let Some(family) = self.families.get(&presented.family_id()).await? else {
            return Ok(Introspection::inactive());
        };
        // The family's client is the caller, authenticated and active just now.
        if !may_see_refresh_token(client, &family) || !is_current_and_alive(&family, presented, now) {
            return Ok(Introspection::inactive());
        }
        let Some(username) = family.user_key.as_deref().and_then(Username::normalise) else {
            return Ok(Introspection::inactive());
        };
        let user = self.users.get(&username).await?;
        Ok(match active_refresh_scope(&family, presented, user.as_ref(), now) {
            Some(scopes) => Introspection::refresh_token(&family, presented, &scopes, &self.issuer),
            None => Introspection::inactive(),
        })
    }
}
