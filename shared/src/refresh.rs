//! `POST /auth/refresh`: rotate the refresh token, issue a new access token.
//!
//! The happy path is one conditional UpdateItem and one `kms:Sign`. A refused write comes
//! back with the family as it was, and [`crate::rotation::classify`] decides: retry within
//! the leeway (same successor, one `kms:Sign`, no write), reuse (revoke), or nothing.

use std::fmt;
use std::sync::Arc;

use crate::audit::{self, RequestMeta};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ReuseScope};
use crate::error::{ApiError, StartError};
use crate::keys::{KmsSigner, Signer};
use crate::revoke::Revoker;
use crate::rotation::{classify, seal_successor, Refusal};
use crate::scope::Scope;
use crate::store::{DynamoFamilies, RotateOutcome, Rotation};
use crate::token::{AccessGrant, AccessTokenIssuer, RefreshToken, TokenResponse};

/// A refresh request (RFC 6749 §6), already parsed.
#[derive(Clone)]
pub struct RefreshRequest {
    /// The presented refresh token.
    pub refresh_token: String,
    /// A narrower scope for the new access token (never wider than the login's).
    pub scope: Option<String>,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest").field("scope", &self.scope).finish_non_exhaustive()
    }
}

/// Rotates refresh tokens. Built once per cold start.
pub struct RefreshService {
    families: DynamoFamilies,
    revoker: Revoker,
    issuer: AccessTokenIssuer,
    clock: Arc<dyn Clock>,
    leeway_secs: u64,
    idle_secs: u64,
    reuse_revokes: ReuseScope,
}

impl fmt::Debug for RefreshService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshService")
            .field("issuer", &self.issuer)
            .field("leeway_secs", &self.leeway_secs)
            .field("reuse_revokes", &self.reuse_revokes)
            .finish_non_exhaustive()
    }
}

impl RefreshService {
    /// Builds the service; fetches the signing key's public half once for the `kid`.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
    ) -> Result<Self, StartError> {
        let signer = KmsSigner::load(kms, &config.signing_key_id).await?;
        Ok(Self::new(config, dynamodb, Arc::new(signer), Arc::new(SystemClock)))
    }

    /// Builds the service around an existing signer and clock.
    pub fn new(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table),
            revoker: Revoker::new(config, dynamodb),
            issuer: AccessTokenIssuer::for_config(signer, config),
            clock,
            leeway_secs: config.refresh_leeway.as_secs(),
            idle_secs: config.refresh_idle_ttl.as_secs(),
            reuse_revokes: config.reuse_revokes,
        }
    }

    /// Exchanges a refresh token for a new access token and a new refresh token.
    pub async fn refresh(&self, request: RefreshRequest, meta: &RequestMeta) -> Result<TokenResponse, ApiError> {
        let ip = meta.source_ip.as_deref();
        let Some(presented) = RefreshToken::parse(&request.refresh_token) else {
            audit::session_event("refresh", "malformed_token", None, "-", None, ip);
            return Err(ApiError::InvalidGrant);
        };
        let family_id = presented.family_id();
        let required: Vec<String> = match request.scope.as_deref() {
            None => Vec::new(),
            Some(raw) => Scope::parse(raw).map_err(|_| ApiError::InvalidScope)?.tokens().map(str::to_owned).collect(),
        };
        let successor = presented.successor().ok_or(ApiError::InvalidGrant)?;
        let sealed = if self.leeway_secs > 0 { seal_successor(&presented, &successor) } else { None };
        let now = self.clock.now();
        let rotation = Rotation {
            family_id: &family_id,
            presented_hash: &presented.hash(),
            presented_generation: presented.generation(),
            successor_hash: &successor.hash(),
            sealed_successor: sealed.as_deref(),
            required_scopes: &required,
            now,
            idle_secs: self.idle_secs,
        };

        let (family, refresh_token, event) = match self.families.rotate(&rotation).await? {
            RotateOutcome::Rotated(family) => (*family, successor, "refresh_rotated"),
            RotateOutcome::Refused(old) => {
                let old = old.map(|family| *family);
                let user_id = old.as_ref().map(|f| f.user_id.clone());
                match classify(&presented, old.as_ref(), &required, now, self.leeway_secs) {
                    Refusal::Retry(same_successor) => {
                        // Checked by classify: the family exists.
                        let family = old.ok_or(ApiError::InvalidGrant)?;
                        (family, same_successor, "refresh_retry")
                    }
                    Refusal::ScopeNotGranted => {
                        audit::session_event("refresh", "invalid_scope", user_id.as_deref(), &family_id, None, ip);
                        return Err(ApiError::InvalidScope);
                    }
                    Refusal::Unknown => {
                        audit::session_event("refresh", "unknown_token", None, &family_id, None, ip);
                        return Err(ApiError::InvalidGrant);
                    }
                    Refusal::Dead => {
                        audit::session_event("refresh", "dead_family", user_id.as_deref(), &family_id, None, ip);
                        return Err(ApiError::InvalidGrant);
                    }
                    Refusal::Reuse => {
                        let user_id = user_id.unwrap_or_default();
                        audit::session_event("refresh_reuse_detected", "revoked", Some(&user_id), &family_id, None, ip);
                        self.revoker.revoke_for_reuse(self.reuse_revokes, &user_id, &family_id, now).await?;
                        return Err(ApiError::InvalidGrant);
                    }
                }
            }
        };

        // RFC 6749 §6: the narrowed scope if one was asked for, else the one granted at login.
        let scope =
            if required.is_empty() { family.scope_string() } else { Scope::from_tokens(required).to_scope_string() };
        let grant = AccessGrant {
            subject: &family.user_id,
            client_id: &family.client_id,
            scope: &scope,
            session_id: &family.family_id,
        };
        let tokens = self.issuer.issue(&grant, &refresh_token, now).await?;
        audit::session_event(event, "success", Some(&family.user_id), &family_id, Some(&family.client_id), ip);
        Ok(tokens)
    }
}
