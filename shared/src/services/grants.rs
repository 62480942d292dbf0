//! The grants that issue an access token without a session of their own: client
//! credentials (RFC 6749 §4.4) and token exchange (RFC 8693).
//!
//! Not built yet: both answer `unsupported_grant_type` until they are (issue 21).

use std::sync::Arc;

use crate::error::ApiError;
use crate::platform::audit::RequestMeta;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::rules::clients::ClientRecord;
use crate::rules::keys::Signer;
use crate::rules::token::TokenResponse;
use crate::services::client_auth::ClientAuthenticator;
use crate::services::token_endpoint::{ClientCredentialsRequest, ExchangeRequest};

/// Issues service tokens and exchanged tokens.
#[derive(Debug)]
pub struct GrantService {}

impl GrantService {
    /// The service over the deployment's tables, signing with `signer` (the token
    /// endpoint's one signer, shared with its refresh grant).
    pub fn new(
        _config: &Config,
        _dynamodb: aws_sdk_dynamodb::Client,
        _kms: aws_sdk_kms::Client,
        _signer: Arc<dyn Signer>,
        _clock: Arc<dyn Clock>,
        _clients: ClientAuthenticator,
    ) -> Self {
        Self {}
    }

    /// Client credentials for an authenticated `client` that may use the grant.
    pub async fn client_credentials(
        &self,
        _client: &ClientRecord,
        _request: ClientCredentialsRequest,
        _meta: &RequestMeta,
    ) -> Result<TokenResponse, ApiError> {
        Err(ApiError::UnsupportedGrantType)
    }

    /// Token exchange for an authenticated `client` that may use the grant.
    pub async fn token_exchange(
        &self,
        _client: &ClientRecord,
        _request: ExchangeRequest,
        _meta: &RequestMeta,
    ) -> Result<TokenResponse, ApiError> {
        Err(ApiError::UnsupportedGrantType)
    }
}
