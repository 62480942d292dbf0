//! `POST /auth/login`: the login service, the I/O around the login rules
//! ([`crate::rules::login`]: `judge` after the password check, `new_family` for what a
//! granted login writes, `settle` for what its (sign, write) pair leaves behind,
//! `LockoutWindow` for a refused attempt).
//!
//! Throttling (OWASP's device cookies): every attempt is reserved on a failed-login counter
//! before the password is checked ([`crate::store::DynamoUsers::reserve_attempt`], one
//! conditional write, tested against DynamoDB Local), so N parallel guesses bring at most
//! `LOGIN_MAX_FAILURES` of them to argon2. Attempts are charged to the username, except
//! from a device that logged in as that user before and presents its device token: it has
//! a counter of its own, so a stranger who exhausts the username's counter locks out
//! strangers only, never the owner's devices.
//!
//! The account read and the reservation go out at once, then `kms:Sign` and the family's
//! transaction at once (`docs/architecture.md` counts the calls and round trips). Every
//! outcome but success issues nothing and leaves no usable session behind.
//!
//! A `DPoP` proof (RFC 9449) is checked before the account is read, its use recorded beside
//! that read; a login with a valid proof starts a family bound to the proof's key, and its
//! access tokens carry `cnf.jkt` ([`crate::services::token_dpop`]).
//!
//! The client the tokens are issued to (`CLIENT_ID`) is read from the registry beside the
//! account, strongly consistent: a disabled client gets no new session (401
//! `invalid_client`), so its disable ends its logins at once and its tokens within the lag.

use std::fmt;
use std::sync::Arc;

use crate::error::{ApiError, DependencyError, StartError};
use crate::platform::audit::{self, RequestMeta};
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::rules::clients::ClientRecord;
use crate::rules::keys::Signer;
use crate::rules::limits::LimitedAction;
use crate::rules::login::{
    judge, new_family, settle, FamilyWrite, LockoutWindow, LoginFailure, LoginPolicy, SessionOrigin, Settlement,
};
use crate::rules::password;
use crate::rules::scope::Scope;
use crate::rules::token::{AccessGrant, AccessTokenIssuer, DeviceToken, RefreshToken, TokenResponse};
use crate::rules::username::Username;
use crate::services::client_auth::ClientAuthenticator;
use crate::services::limits::SourceLimiter;
use crate::services::token_dpop::{PresentedProof, TokenProofs};
use crate::store::{AttemptCounter, DynamoFamilies, DynamoUsers, Guarded};

/// A login attempt, already parsed from the request body.
#[derive(Clone)]
pub struct LoginRequest {
    /// As typed; normalised by the service.
    pub username: String,
    /// As typed.
    pub password: String,
    /// Requested scope (RFC 6749 §3.3); `None` = all of the user's scopes.
    pub scope: Option<String>,
    /// The device token this client got at an earlier login, if it kept one.
    pub device_token: Option<String>,
    /// The `DPoP` proof, if the client sent one: the session is bound to its key.
    pub dpop: Option<PresentedProof>,
    /// A name for the device, shown in the user's list of sessions (already checked,
    /// [`crate::rules::login::device_name`]).
    pub device_name: Option<String>,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("password", &"<redacted>")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Logs users in. Built once per cold start.
pub struct LoginService {
    users: DynamoUsers,
    families: DynamoFamilies,
    issuer: AccessTokenIssuer,
    policy: LoginPolicy,
    clock: Arc<dyn Clock>,
    limiter: SourceLimiter,
    proofs: TokenProofs,
    clients: ClientAuthenticator,
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
    /// Builds the service from configuration and SDK clients, signing with the key set's
    /// current key ([`crate::services::keys::KeySetSigner`]).
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
    ) -> Result<Self, StartError> {
        let (clock, signer) = super::cold_start_signer(config, &dynamodb, &kms).await;
        Ok(Self::new(config, dynamodb, signer, clock))
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
            limiter: SourceLimiter::new(config, dynamodb.clone(), LimitedAction::Login, clock.clone()),
            proofs: TokenProofs::new(config, dynamodb.clone()),
            clients: ClientAuthenticator::from_config(config, dynamodb.clone()),
            families: DynamoFamilies::new(dynamodb, &config.families_table, &config.users_table),
            issuer: super::issuer_for(signer, config),
            policy: login_policy(config),
            clock,
        }
    }

    /// Checks the credentials and, if they hold, starts a new session family.
    pub async fn login(&self, request: LoginRequest, meta: &RequestMeta) -> Result<TokenResponse, ApiError> {
        let ip = meta.source_ip.as_deref();
        let client_id = self.policy.client_id.as_str();
        let failed = |reason, user_id: Option<&str>| audit::login_failed(reason, user_id, client_id, ip);
        // Per source address, before anything that costs (argon2, KMS, the user's counters).
        // Refused: counted, not audited (docs/api.md); DynamoDB silent: the 503's audit line.
        self.limiter.admit(meta).await.inspect_err(|e| {
            if matches!(e, ApiError::Unavailable(_)) {
                failed(LoginFailure::Unavailable, None);
            }
        })?;

        let username =
            Username::normalise(&request.username).ok_or(ApiError::InvalidRequest("username is not acceptable"))?;
        let requested = match request.scope.as_deref() {
            None => None,
            Some(raw) => Some(Scope::parse(raw).map_err(|_| ApiError::InvalidScope)?),
        };
        // The DPoP proof, without I/O, before anything about the account is read or counted.
        let now = self.clock.now();
        let proof = self.proofs.check(request.dpop.as_ref(), now).inspect_err(|refusal| {
            tracing::info!(class = refusal.class(), "login: DPoP proof refused");
            failed(LoginFailure::InvalidDpopProof, None);
        })?;
        // Its use is recorded, and the client read, beside the account read; a replay, a
        // failed record or a disabled client refuses the login before the password is
        // checked.
        let admission = || async {
            let (recorded, client) =
                tokio::join!(self.proofs.record(proof.as_ref(), now), self.clients.client(client_id));
            match (recorded, client) {
                (Err(e), _) | (_, Err(e)) => {
                    failed(LoginFailure::Unavailable, None);
                    Some(ApiError::from(e))
                }
                (Ok(Err(refusal)), _) => {
                    tracing::info!(class = refusal.class(), "login: DPoP proof refused");
                    failed(LoginFailure::InvalidDpopProof, None);
                    Some(ApiError::from(refusal))
                }
                (Ok(Ok(())), Ok(client)) if !client.as_ref().is_some_and(ClientRecord::is_active) => {
                    failed(LoginFailure::ClientDisabled, None);
                    Some(ApiError::InvalidClient { basic: false })
                }
                (Ok(Ok(())), Ok(_)) => None,
            }
        };

        // A device that logged in before is charged on its own counter; any other attempt
        // on the username's. The attempt is reserved before the password is checked, so at
        // most the limit of parallel guesses reach argon2. Without a device token the
        // reservation runs alongside the account read (and the proof's record).
        let device = request.device_token.as_deref().and_then(DeviceToken::parse);
        let device_hash = device.as_ref().map(DeviceToken::hash);
        let window = LockoutWindow { max: self.policy.max_failures, window_secs: self.policy.failure_window_secs };
        let reserve = |counter| self.users.reserve_attempt(&username, counter, now, window);
        let (user, counter, reserved) = match device_hash.as_deref() {
            None => {
                let (user, reserved, refused) =
                    tokio::join!(self.users.get(&username), reserve(AttemptCounter::Username), admission());
                if let Some(refused) = refused {
                    // Not a failed password: the attempt is given back.
                    if matches!(reserved, Ok(Ok(()))) {
                        self.users.release_attempt(&username, AttemptCounter::Username).await;
                    }
                    return Err(refused);
                }
                (user, AttemptCounter::Username, reserved)
            }
            Some(hash) => {
                let (user, known, refused) = tokio::join!(
                    self.users.get(&username),
                    self.users.device_is_known(&username, hash, now),
                    admission()
                );
                if let Some(refused) = refused {
                    return Err(refused);
                }
                let known = known.inspect_err(|_| failed(LoginFailure::Unavailable, None))?;
                let counter = if known { AttemptCounter::Device(hash) } else { AttemptCounter::Username };
                (user, counter, reserve(counter).await)
            }
        };
        let user = user.inspect_err(|_| failed(LoginFailure::Unavailable, None))?;
        let user_id = user.as_ref().map(|u| u.user_id.as_str());
        if let Err(retry_after) = reserved.inspect_err(|_| failed(LoginFailure::Unavailable, user_id))? {
            failed(LoginFailure::Throttled, user_id);
            return Err(ApiError::Throttled { retry_after });
        }

        // Same work whether or not the user exists: one argon2id verification.
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = request.password;
        let verified = tokio::task::spawn_blocking(move || match stored_hash {
            Some(phc) => password::verify(&password, &phc),
            None => password::verify_dummy(&password),
        })
        .await
        .map_err(|e| DependencyError::Internal(e.to_string()))?;

        let scope = match judge(user.as_ref(), verified, requested) {
            Ok(scope) => scope,
            // The right password: the attempt is given back.
            Err(LoginFailure::InvalidScope) => {
                self.users.release_attempt(&username, counter).await;
                failed(LoginFailure::InvalidScope, user_id);
                return Err(ApiError::InvalidScope);
            }
            // The reserved attempt stays counted: that is the failure.
            Err(reason) => {
                failed(reason, user_id);
                return Err(ApiError::InvalidGrant);
            }
        };
        // `judge` grants only an existing user.
        let user = user.as_ref().ok_or(ApiError::InvalidGrant)?;
        let user_id = user.user_id.as_str();

        let refresh = RefreshToken::new_family();
        let bound_to = proof.as_ref().map(|p| p.jkt.as_str());
        let context = meta.session_context();
        let origin = SessionOrigin { bound_to, device_name: request.device_name.as_deref(), context: &context };
        let family = new_family(username.as_str(), user, &scope, &refresh, now, &self.policy, &origin);
        let scope = scope.to_scope_string();
        let grant = AccessGrant { subject: user_id, client_id, scope: &scope, session_id: &family.family_id, bound_to };
        // After an account change, tokens are issued at or after its cut-off.
        let issued_at = now.max(user.not_before);

        // Sign and write at once. If either fails nothing is returned; a family written
        // for a token that could not be signed is deleted again (best effort: its secret
        // never left this process, so even if the delete fails nobody can use it). The
        // write is conditioned on the account as read: a change committed meanwhile
        // (disable, new scopes, sessions ended) refuses the login.
        // The counter charged is cleared; a known device's trust is renewed, a device
        // without a trusted token gets one.
        let new_device = if matches!(counter, AttemptCounter::Device(_)) { None } else { Some(DeviceToken::new()) };
        let new_device_hash = new_device.as_ref().map(DeviceToken::hash);
        let device_expires = now + self.policy.device_ttl_secs;
        let also = self.users.after_login(&username, counter, new_device_hash.as_deref(), device_expires, now)?;
        let (issued, created) =
            tokio::join!(self.issuer.issue(&grant, &refresh, issued_at), self.families.create(&family, also));
        let write = match &created {
            Ok(Guarded::Done) => FamilyWrite::Written,
            Ok(Guarded::AccountChanged) => FamilyWrite::AccountChanged,
            Err(_) => FamilyWrite::Failed,
        };
        let tokens = match (settle(issued.is_ok(), write), issued, created) {
            (Settlement::Issue, Ok(tokens), _) => tokens,
            (Settlement::Refuse, _, _) => {
                failed(LoginFailure::AccountChanged, Some(user_id));
                return Err(ApiError::InvalidGrant);
            }
            (Settlement::DeleteFamily, Err(e), _) => {
                if let Err(cleanup) = self.families.delete_unissued(&family).await {
                    tracing::warn!(error = %cleanup, family_id = %family.family_id, "could not delete an unissued family");
                }
                failed(LoginFailure::Unavailable, Some(user_id));
                return Err(e.into());
            }
            (Settlement::ReleaseAttempt, _, created) => {
                self.users.release_attempt(&username, counter).await;
                failed(LoginFailure::Unavailable, Some(user_id));
                let cause = created.err().unwrap_or_else(|| DependencyError::Internal("family not written".into()));
                return Err(cause.into());
            }
            (Settlement::Issue | Settlement::DeleteFamily, _, _) => {
                return Err(DependencyError::Internal("login settled against its outcome".into()).into());
            }
        };

        audit::login_succeeded(user_id, &family.family_id, client_id, ip);
        // A trusted device keeps its token; a new one gets one.
        let device_token = new_device.or(device).map(|d| d.encode());
        Ok(TokenResponse { device_token, ..tokens })
    }
}

/// The login policy a deployment configured.
fn login_policy(config: &Config) -> LoginPolicy {
    LoginPolicy {
        client_id: config.client_id.clone(),
        refresh_ttl_secs: config.refresh_token_ttl.as_secs(),
        refresh_idle_secs: config.refresh_idle_ttl.as_secs(),
        max_failures: config.login_max_failures,
        failure_window_secs: config.login_failure_window.as_secs(),
        device_ttl_secs: config.device_token_ttl.as_secs(),
    }
}
