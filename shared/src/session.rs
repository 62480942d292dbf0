//! The login rules: who gets a session, with which scope, and what is written.
//!
//! One successful login makes three AWS calls: a Query of the user's partition (account
//! and failure counter), then `kms:Sign` of the access token and a PutItem of the new
//! family, the last two at once. Every other outcome issues nothing and leaves no usable
//! session behind.

use std::fmt;
use std::sync::Arc;

use crate::audit::{self, LoginFailure};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{ApiError, DependencyError};
use crate::keys::{KmsSigner, Signer};
use crate::password;
use crate::scope::Scope;
use crate::store::{DynamoFamilies, DynamoUsers, FamilyRecord, FamilyStatus, UserStatus};
use crate::token::{AccessGrant, AccessTokenIssuer, RefreshToken};
use crate::username::Username;

/// A login attempt, already parsed from the request body.
#[derive(Clone)]
pub struct LoginRequest {
    /// As typed; normalised by the service.
    pub username: String,
    /// As typed.
    pub password: String,
    /// Requested scope (RFC 6749 §3.3); `None` = all of the user's scopes.
    pub scope: Option<String>,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("password", &"<redacted>")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Facts about the caller that go into the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The caller's IP address as API Gateway saw it.
    pub source_ip: Option<String>,
}

/// RFC 6749 §5.1 successful token response.
#[derive(Clone, serde::Serialize)]
pub struct TokenResponse {
    /// The signed access token (JWT).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// The opaque refresh token.
    pub refresh_token: String,
    /// The granted scope.
    pub scope: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Lifetimes and limits of login, from [`Config`].
#[derive(Debug, Clone)]
pub struct LoginPolicy {
    /// `client_id` of issued tokens.
    pub client_id: String,
    /// Absolute lifetime of a family, seconds.
    pub refresh_ttl_secs: u64,
    /// Inactivity lifetime of a family, seconds.
    pub refresh_idle_secs: u64,
    /// Failures per username before 429.
    pub max_failures: u32,
    /// Failure-counting window, seconds.
    pub failure_window_secs: u64,
}

impl LoginPolicy {
    /// The policy a deployment configured.
    pub fn from_config(config: &Config) -> Self {
        Self {
            client_id: config.client_id.clone(),
            refresh_ttl_secs: config.refresh_token_ttl.as_secs(),
            refresh_idle_secs: config.refresh_idle_ttl.as_secs(),
            max_failures: config.login_max_failures,
            failure_window_secs: config.login_failure_window.as_secs(),
        }
    }
}

/// Logs users in. Built once per cold start.
pub struct LoginService {
    users: DynamoUsers,
    families: DynamoFamilies,
    issuer: AccessTokenIssuer,
    policy: LoginPolicy,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for LoginService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginService")
            .field("issuer", &self.issuer)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl LoginService {
    /// Builds the service from configuration and SDK clients: fetches the signing key's
    /// public half once (`kms:GetPublicKey`) to learn its `kid`.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
    ) -> Result<Self, DependencyError> {
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
            users: DynamoUsers::new(dynamodb.clone(), &config.users_table),
            families: DynamoFamilies::new(dynamodb, &config.families_table),
            issuer: AccessTokenIssuer::for_config(signer, config),
            policy: LoginPolicy::from_config(config),
            clock,
        }
    }

    /// Checks the credentials and, if they hold, starts a new session family.
    pub async fn login(&self, request: LoginRequest, meta: &RequestMeta) -> Result<TokenResponse, ApiError> {
        let ip = meta.source_ip.as_deref();
        let client_id = self.policy.client_id.as_str();
        let failed = |reason, user_id: Option<&str>| audit::login_failed(reason, user_id, client_id, ip);

        let username =
            Username::normalise(&request.username).ok_or(ApiError::InvalidRequest("username is not acceptable"))?;
        let requested_scope = match request.scope.as_deref() {
            None => None,
            Some(raw) => Some(Scope::parse(raw).map_err(|_| ApiError::InvalidScope)?),
        };

        let lookup =
            self.users.lookup_for_login(&username).await.inspect_err(|_| failed(LoginFailure::Unavailable, None))?;
        let now = self.clock.now();
        if let Some(remaining) = lookup
            .failures
            .and_then(|f| f.lockout_remaining(now, self.policy.max_failures, self.policy.failure_window_secs))
        {
            failed(LoginFailure::Throttled, lookup.user.as_ref().map(|u| u.user_id.as_str()));
            return Err(ApiError::Throttled { retry_after: std::time::Duration::from_secs(remaining) });
        }

        // Same work whether or not the user exists: one argon2id verification.
        let stored_hash = lookup.user.as_ref().map(|u| u.password_hash.clone());
        let password = request.password;
        let verified = tokio::task::spawn_blocking(move || match stored_hash {
            Some(phc) => password::verify(&password, &phc),
            None => password::verify_dummy(&password),
        })
        .await
        .map_err(|e| DependencyError::Internal(e.to_string()))?;

        let user = match (lookup.user, verified) {
            (Some(user), true) if user.status == UserStatus::Active => user,
            (user, _) => {
                let reason = match &user {
                    None => LoginFailure::UnknownUser,
                    Some(u) if u.status != UserStatus::Active => LoginFailure::Disabled,
                    Some(_) => LoginFailure::WrongPassword,
                };
                let user_id = user.as_ref().map(|u| u.user_id.as_str());
                self.users
                    .record_failure(&username, now, self.policy.failure_window_secs)
                    .await
                    .inspect_err(|_| failed(LoginFailure::Unavailable, user_id))?;
                failed(reason, user_id);
                return Err(ApiError::InvalidGrant);
            }
        };

        let granted = Scope::from_tokens(user.scopes.iter().cloned());
        let granted_scope = match requested_scope {
            None => granted,
            Some(requested) if requested.is_subset_of(&granted) => requested,
            Some(_) => {
                failed(LoginFailure::InvalidScope, Some(&user.user_id));
                return Err(ApiError::InvalidScope);
            }
        };
        let scope = granted_scope.to_scope_string();

        let refresh = RefreshToken::new_family();
        let family = FamilyRecord {
            family_id: refresh.family_id(),
            user_id: user.user_id.clone(),
            client_id: client_id.to_owned(),
            scopes: granted_scope.tokens().map(str::to_owned).collect(),
            token_hash: refresh.hash(),
            generation: 0,
            recent: vec![String::new(); crate::store::HISTORY_SLOTS],
            previous_hash: None,
            rotated_at: None,
            sealed_successor: None,
            revoked_reason: None,
            revoked_at: None,
            status: FamilyStatus::Active,
            created_at: now,
            last_used_at: now,
            idle_expires_at: now + self.policy.refresh_idle_secs.min(self.policy.refresh_ttl_secs),
            expires_at: now + self.policy.refresh_ttl_secs,
        };
        let claims = self.issuer.claims(
            &AccessGrant { subject: &user.user_id, client_id, scope: &scope, session_id: &family.family_id },
            now,
        );

        // Sign and write at once. If either fails nothing is returned; a family written
        // for a token that could not be signed is deleted again (best effort: its secret
        // never left this process, so even if the delete fails nobody can use it).
        let clear_failures = async {
            if lookup.failures.is_some_and(|f| f.failures > 0) {
                if let Err(e) = self.users.clear_failures(&username).await {
                    tracing::warn!(error = %e, "could not reset the login failure counter");
                }
            }
        };
        let (signed, created, ()) =
            tokio::join!(self.issuer.sign(&claims), self.families.create(&family), clear_failures);
        let access_token = match (signed, created) {
            (Ok(token), Ok(())) => token,
            (Err(e), Ok(())) => {
                if let Err(cleanup) = self.families.delete_unissued(&family).await {
                    tracing::warn!(error = %cleanup, family_id = %family.family_id, "could not delete an unissued family");
                }
                failed(LoginFailure::Unavailable, Some(&user.user_id));
                return Err(e.into());
            }
            (_, Err(e)) => {
                failed(LoginFailure::Unavailable, Some(&user.user_id));
                return Err(e.into());
            }
        };

        audit::login_succeeded(&user.user_id, &family.family_id, client_id, ip);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.issuer.ttl().as_secs(),
            refresh_token: refresh.encode(),
            scope,
        })
    }
}
