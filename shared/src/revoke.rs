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
use crate::error::{ApiError, DependencyError, StartError};
use crate::store::{DynamoFamilies, DynamoRevocations, Revocation, RevocationKind};
use crate::token::{AccessClaims, RefreshToken};
use crate::verify::Verifier;

/// What the token of an RFC 7009 request is, decided without I/O. A refresh token is
/// recognised by its form (its family decides later whether it is genuine); an access
/// token must pass the one verifier, so nothing is revoked on unverified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A refresh token of our form: its family (session) is the target.
    Session(RefreshToken),
    /// A valid access token: its `jti` is the target.
    AccessToken(AccessClaims),
    /// Anything else: invalid, expired, foreign or garbage. RFC 7009 §2.2: answered like
    /// a success, nothing changes.
    Nothing,
}

/// Classifies a presented token. The `token_type_hint` is not needed (RFC 7009 §2.1 lets
/// a server ignore it): the two kinds cannot be mistaken for each other.
pub fn classify(token: &str, verifier: &Verifier, now: u64) -> RevokeTarget {
    if let Some(refresh) = RefreshToken::parse(token) {
        return RevokeTarget::Session(refresh);
    }
    match verifier.verify(token, now) {
        Ok(claims) => RevokeTarget::AccessToken(claims),
        Err(_) => RevokeTarget::Nothing,
    }
}

/// Whose sessions revoke-all ends: the subject of a valid bearer token, else 401.
pub fn revoke_all_subject(bearer: &str, verifier: &Verifier, now: u64) -> Result<AccessClaims, ApiError> {
    verifier.verify(bearer, now).map_err(|_| ApiError::InvalidToken)
}

/// Revokes families and writes the matching denylist entries.
#[derive(Debug, Clone)]
pub struct Revoker {
    families: DynamoFamilies,
    revocations: DynamoRevocations,
    /// How long an entry written now must live ([`Config::revocation_lifetime`]).
    lifetime_secs: u64,
    /// How long past a token's `exp` its entry must live ([`Config::revocation_grace`]).
    grace_secs: u64,
}

impl Revoker {
    /// Over the configured tables.
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        Self {
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table),
            revocations: DynamoRevocations::new(dynamodb, &config.revocations_table),
            lifetime_secs: config.revocation_lifetime().as_secs(),
            grace_secs: config.revocation_grace().as_secs(),
        }
    }

    fn entry(&self, kind: RevocationKind, subject: &str, now: u64, not_before: Option<u64>) -> Revocation {
        Revocation {
            kind,
            subject: subject.to_owned(),
            revoked_at_ms: now * 1000,
            not_before,
            expires_at: now + self.lifetime_secs,
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
        entry.expires_at = exp + self.grace_secs;
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
    verifier: Verifier,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RevocationService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationService").field("verifier", &self.verifier).finish_non_exhaustive()
    }
}

impl RevocationService {
    /// Builds the service with the one verifier over the trusted keys.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let verifier = Verifier::from_config(config, || kms).await?;
        Ok(Self { revoker: Revoker::new(config, dynamodb), verifier, clock })
    }

    /// RFC 7009: revokes the token if it is one of ours and valid; answers the same for
    /// unknown, expired and malformed tokens (§2.2: "invalid tokens do not cause an error").
    /// A refresh token revokes its family and the family's access tokens (`sid`); an access
    /// token is denylisted by `jti`.
    pub async fn revoke(&self, request: RevokeRequest, source_ip: Option<&str>) -> Result<(), ApiError> {
        let now = self.clock.now();
        match classify(&request.token, &self.verifier, now) {
            RevokeTarget::Session(refresh) => {
                let revoked = self.revoker.revoke_presented(&refresh, "revoked_by_client", now).await?;
                let outcome = if revoked { "success" } else { "nothing_to_revoke" };
                audit::session_event("revoke_refresh_token", outcome, None, &refresh.family_id(), None, source_ip);
            }
            RevokeTarget::AccessToken(claims) => {
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
            RevokeTarget::Nothing => {}
        }
        Ok(())
    }

    /// `POST /auth/revoke-all`: the bearer token's user loses every session.
    pub async fn revoke_all(&self, bearer: &str, source_ip: Option<&str>) -> Result<usize, ApiError> {
        let now = self.clock.now();
        let claims = revoke_all_subject(bearer, &self.verifier, now)?;
        let revoked = self.revoker.revoke_user(&claims.sub, "revoke_all", now).await?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! One test per revocation outcome, on plain values: no stack.
    use serde_json::{json, Value};

    use super::*;
    use crate::keys::testing::LocalSigner;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> Value {
        json!({"iss": "https://auth.example.test", "sub": "u-1", "aud": "api", "exp": NOW + 600, "iat": NOW - 10,
               "jti": "j-1", "client_id": "first-party", "scope": "read", "sid": "s-1"})
    }

    fn setup() -> (LocalSigner, Verifier) {
        let signer = LocalSigner::new();
        let verifier = Verifier::new(vec![signer.trusted()], "https://auth.example.test".into(), "api".into(), 30);
        (signer, verifier)
    }

    #[test]
    fn a_refresh_token_targets_its_session_without_any_check_of_its_secret() {
        let (_, verifier) = setup();
        let refresh = RefreshToken::new_family();
        assert_eq!(classify(&refresh.encode(), &verifier, NOW), RevokeTarget::Session(refresh));
    }

    #[test]
    fn a_valid_access_token_targets_its_jti() {
        let (signer, verifier) = setup();
        match classify(&signer.sign_claims(&claims()), &verifier, NOW) {
            RevokeTarget::AccessToken(c) => assert_eq!((c.jti.as_str(), c.exp), ("j-1", NOW + 600)),
            other => panic!("expected the access token, got {other:?}"),
        }
    }

    #[test]
    fn an_expired_foreign_or_malformed_token_targets_nothing() {
        let (signer, verifier) = setup();
        let mut expired = claims();
        expired["exp"] = json!(NOW - 60);
        let mut no_sid = claims();
        no_sid.as_object_mut().unwrap().remove("sid");
        let (stranger, _) = setup();
        for token in [
            signer.sign_claims(&expired),
            signer.sign_claims(&no_sid),
            stranger.sign_claims(&claims()),
            "not-a-token".to_owned(),
            format!("{}x", RefreshToken::new_family().encode()),
        ] {
            assert_eq!(classify(&token, &verifier, NOW), RevokeTarget::Nothing, "{token}");
        }
    }

    #[test]
    fn revoke_all_takes_the_subject_of_a_valid_bearer_and_refuses_anything_else() {
        let (signer, verifier) = setup();
        assert_eq!(revoke_all_subject(&signer.sign_claims(&claims()), &verifier, NOW).unwrap().sub, "u-1");
        let refresh = RefreshToken::new_family().encode();
        assert!(matches!(revoke_all_subject(&refresh, &verifier, NOW), Err(ApiError::InvalidToken)));
        let (stranger, _) = setup();
        let foreign = stranger.sign_claims(&claims());
        assert!(matches!(revoke_all_subject(&foreign, &verifier, NOW), Err(ApiError::InvalidToken)));
    }
}
