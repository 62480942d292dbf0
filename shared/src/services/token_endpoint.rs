//! `POST /auth/token` (RFC 6749 §3.2): one endpoint for every grant. The client is
//! authenticated first ([`ClientAuthenticator`]), then asked whether it may use the grant,
//! then the grant runs: a refresh ([`RefreshService`], bound to the client the session
//! was issued to), client credentials or token exchange ([`GrantService`]).
//!
//! `POST /auth/refresh` (the first-party app's path from before the registry) is served by
//! the same service with the refresh grant only: a request there that authenticates no
//! client is the deployment's own (`CLIENT_ID`), so a refresh token issued to any other
//! client is refused there as it is here.

use std::fmt;

use crate::error::{ApiError, StartError};
use crate::platform::audit::RequestMeta;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::rules::clients::GrantType;
use crate::rules::token::TokenResponse;
use crate::services::client_auth::{ClientAuthenticator, ClientCredentials};
use crate::services::grants::GrantService;
use crate::services::refresh::{RefreshRequest, RefreshService};
use crate::services::token_dpop::PresentedProof;

/// A token request, parsed ([`crate::edge::http`]).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// How the client authenticates.
    pub client: ClientCredentials,
    /// The grant and its parameters.
    pub grant: GrantRequest,
}

/// A grant and its parameters.
#[derive(Debug, Clone)]
pub enum GrantRequest {
    /// RFC 6749 §6 (its `DPoP` proof inside).
    RefreshToken(RefreshRequest),
    /// RFC 6749 §4.4.
    ClientCredentials(ClientCredentialsRequest),
    /// RFC 8693 §2.1.
    TokenExchange(ExchangeRequest),
}

impl GrantRequest {
    /// The grant's type.
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::RefreshToken(_) => GrantType::RefreshToken,
            Self::ClientCredentials(_) => GrantType::ClientCredentials,
            Self::TokenExchange(_) => GrantType::TokenExchange,
        }
    }
}

/// Client credentials (RFC 6749 §4.4.2).
#[derive(Debug, Clone, Default)]
pub struct ClientCredentialsRequest {
    /// A narrower scope than the client's.
    pub scope: Option<String>,
    /// `audience` or `resource` (RFC 8707): the API the token is for.
    pub audience: Option<String>,
    /// A `DPoP` proof: the token is bound to its key (RFC 9449 §5).
    pub dpop: Option<PresentedProof>,
}

/// Token exchange (RFC 8693 §2.1).
#[derive(Clone, Default)]
pub struct ExchangeRequest {
    /// The user's access token.
    pub subject_token: String,
    /// Must be `urn:ietf:params:oauth:token-type:access_token`.
    pub subject_token_type: String,
    /// `audience` or `resource`: the API the new token is for.
    pub audience: Option<String>,
    /// A narrower scope.
    pub scope: Option<String>,
    /// If sent, must be `urn:ietf:params:oauth:token-type:access_token`.
    pub requested_token_type: Option<String>,
    /// A `DPoP` proof of the caller's: the new token is bound to its key (RFC 9449 §5).
    pub dpop: Option<PresentedProof>,
}

impl fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The token endpoint.
pub struct TokenService {
    clients: ClientAuthenticator,
    refresh: RefreshService,
    grants: GrantService,
    clock: std::sync::Arc<dyn Clock>,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService").field("refresh", &self.refresh).finish_non_exhaustive()
    }
}

impl TokenService {
    /// The endpoint over its parts.
    pub fn new(
        clients: ClientAuthenticator,
        refresh: RefreshService,
        grants: GrantService,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Self {
        Self { clients, refresh, grants, clock }
    }

    /// The endpoint a deployment configured, as the `refresh` function builds it at cold
    /// start: one clock and one signer shared by the refresh grant and the other grants,
    /// the sealing secret decrypted and the exchange verifier's keys read ahead of the
    /// first request, at once.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
    ) -> Result<Self, StartError> {
        let (clock, signer) = super::cold_start_signer(config, &dynamodb, &kms).await;
        let clients = ClientAuthenticator::from_config(config, dynamodb.clone());
        let refresh = RefreshService::new(config, dynamodb.clone(), kms.clone(), signer.clone(), clock.clone());
        let grants = GrantService::new(config, dynamodb, kms, signer, clock.clone(), clients.clone());
        tokio::join!(refresh.warm_up(), grants.warm_up());
        Ok(Self::new(clients, refresh, grants, clock))
    }

    /// The refresh service (the `/auth/refresh` route's).
    pub fn refresh_service(&self) -> &RefreshService {
        &self.refresh
    }

    /// The client authenticator.
    pub fn clients(&self) -> &ClientAuthenticator {
        &self.clients
    }

    /// Authenticates the client, checks it may use the grant, runs the grant. A refresh
    /// authenticates beside the family's read (the most frequent grant pays no round trip
    /// for it); the other grants authenticate first.
    pub async fn token(&self, request: TokenRequest, meta: &RequestMeta) -> Result<TokenResponse, ApiError> {
        let grant_type = request.grant.grant_type();
        let client = async {
            let client = self.clients.authenticate(&request.client, self.clock.now()).await?;
            if client.allows(grant_type) {
                Ok(client)
            } else {
                Err(ApiError::UnauthorizedClient)
            }
        };
        match request.grant {
            // Each grant's future boxed: they hold several SDK calls' futures at once, too
            // large together for a caller's stack in a debug build.
            GrantRequest::RefreshToken(refresh) => {
                let client = Box::pin(async { client.await.map(|c| c.client_id) });
                Box::pin(self.refresh.refresh_for(client, refresh, meta)).await
            }
            GrantRequest::ClientCredentials(grant) => {
                let client = Box::pin(client).await?;
                Box::pin(self.grants.client_credentials(&client, grant, meta)).await
            }
            GrantRequest::TokenExchange(grant) => {
                let client = Box::pin(client).await?;
                Box::pin(self.grants.token_exchange(&client, grant, meta)).await
            }
        }
    }
}
