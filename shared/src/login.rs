//! The login rules: who gets a session, with which scope, and what is written.
//!
//! The decisions take plain values and do no I/O ([`judge`] after the password check,
//! [`new_family`] for what a granted login writes), so each outcome has a unit test
//! without a stack; whether an attempt may reach the password check at all is one
//! conditional write ([`crate::store::DynamoUsers::reserve_attempt`]), tested against
//! DynamoDB Local. [`LoginService`] runs them between its calls.
//!
//! Throttling (OWASP's device cookies): every attempt is reserved on a failed-login counter
//! before the password is checked, so N parallel guesses bring at most
//! `LOGIN_MAX_FAILURES` of them to argon2. Attempts are charged to the username, except
//! from a device that logged in as that user before and presents its device token: it has
//! a counter of its own, so a stranger who exhausts the username's counter locks out
//! strangers only, never the owner's devices.
//!
//! One successful login without a device token makes four AWS calls in two sequential
//! round trips: the account read and the reservation at once (GetItem, UpdateItem), then
//! `kms:Sign` and one transaction at once (the family, conditioned on the account as read;
//! the counter cleared; the new device remembered). With a well-formed device token: the
//! account and device reads at once, then the reservation, then the two at once (five
//! calls, three round trips). A counter whose window has passed costs one more write. Every other outcome issues nothing and leaves no usable session behind.

use std::fmt;
use std::sync::Arc;

use crate::audit::{self, LoginFailure, RequestMeta};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{ApiError, DependencyError, StartError};
use crate::keys::{KeySetSigner, Signer};
use crate::password;
use crate::scope::Scope;
use crate::store::{
    AttemptCounter, DynamoFamilies, DynamoUsers, FamilyRecord, FamilyStatus, Guarded, UserRecord, UserStatus,
};
use crate::token::{AccessGrant, AccessTokenIssuer, DeviceToken, RefreshToken, TokenResponse};
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
    /// The device token this client got at an earlier login, if it kept one.
    pub device_token: Option<String>,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("password", &"<redacted>")
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
    /// How long a device token stays trusted, seconds.
    pub device_ttl_secs: u64,
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
            device_ttl_secs: config.device_token_ttl.as_secs(),
        }
    }
}

/// After the password check: the scope a login is granted, or why it is refused. The
/// client sees one answer for every refusal but [`LoginFailure::InvalidScope`].
pub fn judge(
    user: Option<&UserRecord>,
    password_verified: bool,
    requested: Option<Scope>,
) -> Result<Scope, LoginFailure> {
    let user = match user {
        None => return Err(LoginFailure::UnknownUser),
        Some(u) if u.status != UserStatus::Active => return Err(LoginFailure::Disabled),
        Some(_) if !password_verified => return Err(LoginFailure::WrongPassword),
        Some(u) => u,
    };
    let allowed = Scope::from_tokens(user.scopes.iter().cloned());
    match requested {
        None => Ok(allowed),
        Some(requested) if requested.is_subset_of(&allowed) => Ok(requested),
        Some(_) => Err(LoginFailure::InvalidScope),
    }
}

/// The family a granted login starts: generation 0 of `refresh`, alive, with the scope
/// granted, ending at the first of its absolute and idle lifetimes, following the account
/// (stored under `user_key`) as login read it.
pub fn new_family(
    user_key: &str,
    user: &UserRecord,
    scope: &Scope,
    refresh: &RefreshToken,
    now: u64,
    policy: &LoginPolicy,
) -> FamilyRecord {
    FamilyRecord {
        family_id: refresh.family_id(),
        user_id: user.user_id.clone(),
        client_id: policy.client_id.clone(),
        scopes: scope.tokens().map(str::to_owned).collect(),
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
        idle_expires_at: now + policy.refresh_idle_secs.min(policy.refresh_ttl_secs),
        expires_at: now + policy.refresh_ttl_secs,
        user_key: Some(user_key.to_owned()),
        user_version: user.version,
        sessions_epoch: user.sessions_epoch,
        not_before: user.not_before,
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
    /// Builds the service from configuration and SDK clients, signing with the key set's
    /// current key ([`KeySetSigner`]).
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
    ) -> Result<Self, StartError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let signer = KeySetSigner::from_config(config, dynamodb.clone(), kms, clock.clone()).await;
        Ok(Self::new(config, dynamodb, Arc::new(signer), clock))
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
            families: DynamoFamilies::new(dynamodb, &config.families_table, &config.users_table),
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
        let requested = match request.scope.as_deref() {
            None => None,
            Some(raw) => Some(Scope::parse(raw).map_err(|_| ApiError::InvalidScope)?),
        };

        // A device that logged in before is charged on its own counter; any other attempt
        // on the username's. The attempt is reserved before the password is checked, so at
        // most the limit of parallel guesses reach argon2. Without a device token the
        // reservation runs alongside the account read.
        let device = request.device_token.as_deref().and_then(DeviceToken::parse);
        let device_hash = device.as_ref().map(DeviceToken::hash);
        let now = self.clock.now();
        let (max, window) = (self.policy.max_failures, self.policy.failure_window_secs);
        let reserve = |counter| self.users.reserve_attempt(&username, counter, now, max, window);
        let (user, counter, reserved) = match device_hash.as_deref() {
            None => {
                let (user, reserved) = tokio::join!(self.users.get(&username), reserve(AttemptCounter::Username));
                (user, AttemptCounter::Username, reserved)
            }
            Some(hash) => {
                let (user, known) =
                    tokio::join!(self.users.get(&username), self.users.device_is_known(&username, hash, now));
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
        let family = new_family(username.as_str(), user, &scope, &refresh, now, &self.policy);
        let scope = scope.to_scope_string();
        let grant = AccessGrant { subject: user_id, client_id, scope: &scope, session_id: &family.family_id };
        // After an account change, tokens are issued at or after its cut-off.
        let issued_at = now.max(user.not_before);

        // Sign and write at once. If either fails nothing is returned; a family written
        // for a token that could not be signed is deleted again (best effort: its secret
        // never left this process, so even if the delete fails nobody can use it). The
        // write is conditioned on the account as read: a change committed meanwhile
        // (disable, new scopes, sessions ended) refuses the login.
        // The counter charged is cleared; a device without a trusted token gets one.
        let new_device = if matches!(counter, AttemptCounter::Device(_)) { None } else { Some(DeviceToken::new()) };
        let new_device_hash = new_device.as_ref().map(DeviceToken::hash);
        let device_expires = now + self.policy.device_ttl_secs;
        let also =
            self.users.after_login(&username, counter, new_device_hash.as_deref().map(|h| (h, device_expires)), now)?;
        let (issued, created) =
            tokio::join!(self.issuer.issue(&grant, &refresh, issued_at), self.families.create(&family, also));
        let tokens = match (issued, created) {
            (Ok(tokens), Ok(Guarded::Done)) => tokens,
            (_, Ok(Guarded::AccountChanged)) => {
                failed(LoginFailure::AccountChanged, Some(user_id));
                return Err(ApiError::InvalidGrant);
            }
            (Err(e), Ok(Guarded::Done)) => {
                if let Err(cleanup) = self.families.delete_unissued(&family).await {
                    tracing::warn!(error = %cleanup, family_id = %family.family_id, "could not delete an unissued family");
                }
                failed(LoginFailure::Unavailable, Some(user_id));
                return Err(e.into());
            }
            // Nothing written, the counter not cleared: the attempt is given back, so an
            // outage does not lock users out.
            (_, Err(e)) => {
                self.users.release_attempt(&username, counter).await;
                failed(LoginFailure::Unavailable, Some(user_id));
                return Err(e.into());
            }
        };

        audit::login_succeeded(user_id, &family.family_id, client_id, ip);
        // A trusted device keeps its token; a new one gets one.
        let device_token = new_device.or(device).map(|d| d.encode());
        Ok(TokenResponse { device_token, ..tokens })
    }
}

#[cfg(test)]
mod tests {
    //! One test per login outcome, on plain values: no stack.
    use super::*;

    fn policy() -> LoginPolicy {
        LoginPolicy {
            client_id: "first-party".into(),
            refresh_ttl_secs: 30 * 86_400,
            refresh_idle_secs: 7 * 86_400,
            max_failures: 5,
            failure_window_secs: 900,
            device_ttl_secs: 90 * 86_400,
        }
    }

    fn user(status: UserStatus, scopes: &[&str]) -> UserRecord {
        let scopes = scopes.iter().map(|s| s.to_string()).collect();
        UserRecord { status, ..UserRecord::new("u-1".into(), "$argon2id$...".into(), scopes, 0) }
    }

    fn scope(raw: &str) -> Scope {
        Scope::parse(raw).expect("valid scope")
    }

    #[test]
    fn refuses_an_unknown_user_even_when_the_dummy_check_passed() {
        assert_eq!(judge(None, true, None), Err(LoginFailure::UnknownUser));
        assert_eq!(judge(None, false, None), Err(LoginFailure::UnknownUser));
    }

    #[test]
    fn refuses_a_disabled_user_even_with_the_right_password() {
        assert_eq!(judge(Some(&user(UserStatus::Disabled, &["read"])), true, None), Err(LoginFailure::Disabled));
    }

    #[test]
    fn refuses_a_wrong_password() {
        assert_eq!(judge(Some(&user(UserStatus::Active, &["read"])), false, None), Err(LoginFailure::WrongPassword));
    }

    #[test]
    fn grants_every_scope_of_the_user_when_none_is_asked_for() {
        let granted = judge(Some(&user(UserStatus::Active, &["write", "read"])), true, None);
        assert_eq!(granted.map(|s| s.to_scope_string()), Ok("read write".to_owned()));
    }

    #[test]
    fn grants_a_narrower_scope_when_asked_for() {
        let granted = judge(Some(&user(UserStatus::Active, &["read", "write"])), true, Some(scope("read")));
        assert_eq!(granted.map(|s| s.to_scope_string()), Ok("read".to_owned()));
    }

    #[test]
    fn refuses_a_scope_beyond_the_users() {
        let refused = judge(Some(&user(UserStatus::Active, &["read"])), true, Some(scope("read admin")));
        assert_eq!(refused, Err(LoginFailure::InvalidScope));
    }

    #[test]
    fn a_new_family_starts_alive_at_generation_zero_holding_only_the_hash() {
        let refresh = RefreshToken::new_family();
        let account = UserRecord { version: 7, sessions_epoch: 2, not_before: 990, ..user(UserStatus::Active, &[]) };
        let family = new_family("alice", &account, &scope("read write"), &refresh, 1_000, &policy());
        let followed = (family.user_key.as_deref(), family.user_version, family.sessions_epoch, family.not_before);
        assert_eq!(followed, (Some("alice"), 7, 2, 990), "follows the account as login read it");
        assert_eq!((family.family_id.as_str(), family.user_id.as_str()), (refresh.family_id().as_str(), "u-1"));
        assert_eq!((family.generation, family.status), (0, FamilyStatus::Active));
        assert_eq!(family.token_hash, refresh.hash());
        assert!(!family.token_hash.contains(&refresh.encode()[5..]), "never the token itself");
        assert_eq!(family.scopes, vec!["read".to_owned(), "write".to_owned()]);
        assert_eq!((family.idle_expires_at, family.expires_at), (1_000 + 7 * 86_400, 1_000 + 30 * 86_400));
        assert!(family.is_alive(1_000));
    }

    #[test]
    fn the_idle_limit_never_outlasts_the_absolute_lifetime() {
        let short = LoginPolicy { refresh_ttl_secs: 3_600, ..policy() };
        let account = user(UserStatus::Active, &["read"]);
        let family = new_family("alice", &account, &scope("read"), &RefreshToken::new_family(), 0, &short);
        assert_eq!(family.idle_expires_at, 3_600);
    }
}
