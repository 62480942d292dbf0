//! Ending sessions: RFC 7009 token revocation, revoke-all, and the revocation that reuse
//! detection triggers.
//!
//! Ending a session is two writes: the family becomes `revoked` (no refresh ever again)
//! and a denylist entry goes into Revocations (`sid`, or a user's not-before), so access
//! tokens already out there die at the authorizer too. Entries live until the last token
//! they cover has expired.

use std::fmt;
use std::sync::Arc;

use crate::audit;
use crate::clock::Clock;
use crate::config::{Config, ReuseScope};
use crate::error::{ApiError, DependencyError};
use crate::keys::fetch_public_jwk;
use crate::store::{DynamoFamilies, DynamoRevocations, Revocation, RevocationKind};
use crate::token::{AccessTokenVerifier, RefreshToken};

/// How long after a revocation an access token it covers may still be valid: the
/// access-token lifetime plus verifiers' clock leeway.
const CLOCK_LEEWAY_SECS: u64 = 60;

/// Revokes families and writes the matching denylist entries.
#[derive(Debug, Clone)]
pub struct Revoker {
    families: DynamoFamilies,
    revocations: DynamoRevocations,
    access_ttl_secs: u64,
}

impl Revoker {
    /// Over the configured tables.
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        Self {
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table),
            revocations: DynamoRevocations::new(dynamodb, &config.revocations_table),
            access_ttl_secs: config.access_token_ttl.as_secs(),
        }
    }

    fn entry(&self, kind: RevocationKind, subject: &str, now: u64, not_before: Option<u64>) -> Revocation {
        Revocation {
            kind,
            subject: subject.to_owned(),
            revoked_at_ms: now * 1000,
            not_before,
            expires_at: now + self.access_ttl_secs + CLOCK_LEEWAY_SECS,
        }
    }

    /// Revokes one family if `presented` is a token it issued (current or remembered) and
    /// denylists its `sid`. A forged token changes nothing. Returns whether it revoked.
    pub async fn revoke_presented(
        &self,
        presented: &RefreshToken,
        reason: &str,
        now: u64,
    ) -> Result<bool, DependencyError> {
        let family_id = presented.family_id();
        match self.families.revoke(&family_id, Some(&presented.hash()), reason, now).await? {
            Some(_) => {
                self.revocations.put(&[self.entry(RevocationKind::Sid, &family_id, now, None)]).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Ends every session of a user: a not-before entry first (so live access tokens die
    /// even if revoking a family fails midway), then every family.
    pub async fn revoke_user(&self, user_id: &str, reason: &str, now: u64) -> Result<usize, DependencyError> {
        self.revocations.put(&[self.entry(RevocationKind::User, user_id, now, Some(now + 1))]).await?;
        let mut revoked = 0;
        for family_id in self.families.family_ids_of_user(user_id).await? {
            if self.families.revoke(&family_id, None, reason, now).await?.is_some() {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Reacts to a detected reuse in `family_id` of `user_id`. The reused family is revoked
    /// last, so if any step fails, presenting the stolen token again detects the reuse
    /// again and finishes the job.
    pub async fn revoke_for_reuse(
        &self,
        scope: ReuseScope,
        user_id: &str,
        family_id: &str,
        now: u64,
    ) -> Result<(), DependencyError> {
        let mut entries = vec![self.entry(RevocationKind::Sid, family_id, now, None)];
        if scope == ReuseScope::User {
            entries.push(self.entry(RevocationKind::User, user_id, now, Some(now + 1)));
        }
        self.revocations.put(&entries).await?;
        if scope == ReuseScope::User {
            for other in self.families.family_ids_of_user(user_id).await? {
                if other != family_id {
                    self.families.revoke(&other, None, "reuse_detected", now).await?;
                }
            }
        }
        self.families.revoke(family_id, None, "reuse_detected", now).await?;
        Ok(())
    }

    /// Denylists one access token until it expires.
    pub async fn revoke_access_token(&self, jti: &str, exp: u64, now: u64) -> Result<(), DependencyError> {
        let mut entry = self.entry(RevocationKind::Jti, jti, now, None);
        entry.expires_at = exp + CLOCK_LEEWAY_SECS;
        self.revocations.put(&[entry]).await
    }
}

/// A revocation request (RFC 7009 §2.1).
#[derive(Clone)]
pub struct RevokeRequest {
    /// The token to revoke.
    pub token: String,
    /// `access_token` or `refresh_token`; a hint only (RFC 7009 §2.1).
    pub token_type_hint: Option<String>,
}

impl fmt::Debug for RevokeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeRequest").field("token_type_hint", &self.token_type_hint).finish_non_exhaustive()
    }
}

/// The revoke function's service.
pub struct RevocationService {
    revoker: Revoker,
    verifier: AccessTokenVerifier,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RevocationService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationService").field("verifier", &self.verifier).finish_non_exhaustive()
    }
}

impl RevocationService {
    /// Builds the service: one `kms:GetPublicKey` to verify access tokens.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DependencyError> {
        let jwk = fetch_public_jwk(&kms, &config.signing_key_id).await?;
        let verifier = AccessTokenVerifier::new(&jwk, &config.issuer, &config.audience)?;
        Ok(Self { revoker: Revoker::new(config, dynamodb), verifier, clock })
    }

    /// RFC 7009: revokes the token if it is one of ours and valid; answers the same for
    /// unknown, expired and malformed tokens (§2.2: "invalid tokens do not cause an error").
    /// A refresh token revokes its family and the family's access tokens (`sid`); an access
    /// token is verified first (never revoke on unverified claims) and denylisted by `jti`.
    pub async fn revoke(&self, request: RevokeRequest, source_ip: Option<&str>) -> Result<(), ApiError> {
        let now = self.clock.now();
        if let Some(refresh) = RefreshToken::parse(&request.token) {
            let revoked = self.revoker.revoke_presented(&refresh, "revoked_by_client", now).await?;
            let outcome = if revoked { "success" } else { "nothing_to_revoke" };
            audit::session_event("revoke_refresh_token", outcome, None, &refresh.family_id(), None, source_ip);
        } else if let Some(claims) = self.verifier.verify(&request.token) {
            self.revoker.revoke_access_token(&claims.jti, claims.exp, now).await?;
            audit::session_event(
                "revoke_access_token",
                "success",
                Some(&claims.sub),
                &claims.sid,
                Some(&claims.client_id),
                source_ip,
            );
        }
        Ok(())
    }

    /// `POST /auth/revoke-all`: the bearer token's user loses every session.
    pub async fn revoke_all(&self, bearer: &str, source_ip: Option<&str>) -> Result<usize, ApiError> {
        let claims = self.verifier.verify(bearer).ok_or(ApiError::InvalidToken)?;
        let revoked = self.revoker.revoke_user(&claims.sub, "revoke_all", self.clock.now()).await?;
        audit::session_event(
            "revoke_all",
            "success",
            Some(&claims.sub),
            &claims.sid,
            Some(&claims.client_id),
            source_ip,
        );
        Ok(revoked)
    }
}
