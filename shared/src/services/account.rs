//! Account self-service, behind the authorizer: `POST /auth/password` (change the
//! password), `GET /auth/sessions` (the caller's live sessions), `DELETE /auth/sessions/{sid}`
//! (end one), `DELETE /auth/sessions` (end every other: "sign out everywhere else") and
//! `DELETE /auth/account` (erase the account).
//!
//! The caller is the user of the access token, checked here again and strongly consistent
//! (`AccountService::caller`) rather than taken from the authorizer's context: the one
//! verifier with a fresh key set, a token in the user's own hands (no `act`, not a
//! service's), its `jti` not revoked, its session live, its account active and holding it,
//! its client active. A token revoked a moment ago cannot change a password within the
//! authorizer's lag. (A DPoP-bound token's proof was checked by the authorizer, which is
//! in front of every route here; its `jti` is spent there, so it is not checked again.)
//!
//! The two changes that need the password (a new password, deleting the account) are
//! throttled as login is: per source address, and each attempt reserved on the username's
//! failed-login counter before argon2 runs, so a stolen access token is no password oracle
//! (at most `LOGIN_MAX_FAILURES` guesses per window, shared with login's).
//!
//! A password change ends every other session and keeps the caller's (its access token
//! and its next refresh keep working): the user who changes a password on a phone stays
//! signed in on it, every other device signs in again. Changes commit only on the account
//! as read ([`Revoker::change_account_as_read`]): of concurrent password changes exactly
//! one commits; the others see another hash and are judged against it.

use std::fmt;
use std::sync::Arc;

use crate::error::{ApiError, DependencyError};
use crate::platform::audit::{self, AccountEvent, RequestMeta};
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::platform::retry;
use crate::rules::limits::LimitedAction;
use crate::rules::login::LockoutWindow;
use crate::rules::password;
use crate::rules::password_policy::{check_new_password, PasswordRefusal};
use crate::rules::revoke::{bearer_account_holds, bearer_session, revoke_all_subject};
use crate::rules::sessions::{is_live_session, live_sessions, session_to_end, SessionView, MAX_LISTED_SESSIONS};
use crate::rules::username::Username;
use crate::services::client_auth::ClientAuthenticator;
use crate::services::keys::KeyRing;
use crate::services::limits::SourceLimiter;
use crate::services::revoke::{AccountChanged, ChangedAsRead, Revoker};
use crate::store::{
    AccountChange, AttemptCounter, DynamoFamilies, DynamoRevocations, DynamoUsers, FamilyRecord, UserRecord, UserStatus,
};

/// How the access token came: `Authorization: Bearer` or `Authorization: DPoP`
/// (RFC 9449 §7.1, a bound token).
#[derive(Clone, Copy)]
pub enum Presented<'a> {
    /// A bearer token; a DPoP-bound token presented so is refused.
    Bearer(&'a str),
    /// A DPoP-bound token, its proof checked by the authorizer.
    Dpop(&'a str),
}

impl<'a> Presented<'a> {
    /// The access token, whatever its scheme.
    pub fn token(self) -> &'a str {
        match self {
            Self::Bearer(token) | Self::Dpop(token) => token,
        }
    }

    /// Whether it came under the DPoP scheme.
    pub fn is_dpop(self) -> bool {
        matches!(self, Self::Dpop(_))
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bearer(_) => "Bearer(<redacted>)",
            Self::Dpop(_) => "Dpop(<redacted>)",
        })
    }
}

/// `POST /auth/password`, parsed.
#[derive(Clone)]
pub struct PasswordChange {
    /// The password the account has now.
    pub current_password: String,
    /// The password it should have.
    pub new_password: String,
}

impl fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordChange").finish_non_exhaustive()
    }
}

/// Whether an account change keeps the caller's session.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// A password change, "sign out everywhere else": the caller stays signed in.
    Caller,
    /// A deletion: no session survives.
    None,
}

/// The caller as the tables say now: the verified token, its account and its session.
struct Caller {
    username: Username,
    user: UserRecord,
    family: FamilyRecord,
}

/// The account function's service. Built once per cold start.
pub struct AccountService {
    keys: KeyRing,
    users: DynamoUsers,
    families: DynamoFamilies,
    revocations: DynamoRevocations,
    clients: ClientAuthenticator,
    revoker: Revoker,
    limiter: SourceLimiter,
    window: LockoutWindow,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for AccountService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountService").field("keys", &self.keys).field("window", &self.window).finish_non_exhaustive()
    }
}

impl AccountService {
    /// Builds the service with the one verifier, its keys read now (so the first request
    /// need not) and again at most once per `KEY_SET_RELOAD_SECS`.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = KeyRing::from_config(config, dynamodb.clone(), kms);
        keys.sync(clock.now()).await;
        Self::new(config, dynamodb, keys, clock)
    }

    /// The service around a key ring as it is (no I/O here).
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client, keys: KeyRing, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys,
            users: DynamoUsers::new(dynamodb.clone(), &config.users_table),
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table, &config.users_table),
            revocations: DynamoRevocations::new(dynamodb.clone(), &config.revocations_table),
            clients: ClientAuthenticator::from_config(config, dynamodb.clone()),
            revoker: Revoker::new(config, dynamodb.clone(), clock.clone()),
            limiter: SourceLimiter::new(config, dynamodb, LimitedAction::Login, clock.clone()),
            window: LockoutWindow {
                max: config.login_max_failures,
                window_secs: config.login_failure_window.as_secs(),
            },
            clock,
        }
    }

    /// `POST /auth/password`: the current password checked (throttled), the new one
    /// judged by the policy, then every other session ends and the caller's continues.
    pub async fn change_password(
        &self,
        presented: Presented<'_>,
        change: PasswordChange,
        meta: &RequestMeta,
    ) -> Result<(), ApiError> {
        let ip = meta.source_ip.as_deref();
        self.limiter.admit(meta).await?;
        let now = self.clock.now();
        let caller = self.caller(presented, now).await?;
        let event = |event| audit::account(event, &caller.user.user_id, &caller.family.family_id, ip);
        check_new_password(&change.new_password, caller.username.as_str())
            .and_then(|()| {
                (change.new_password != change.current_password).then_some(()).ok_or(PasswordRefusal::Unchanged)
            })
            .map_err(|refusal| {
                event(AccountEvent::PasswordRefused);
                ApiError::InvalidRequest(refusal.description())
            })?;
        self.reserve_attempt(&caller, now, &event).await?;
        let new_hash = {
            let new_password = change.new_password;
            blocking(move || password::hash(&new_password).map_err(|e| DependencyError::Internal(e.to_string())))
                .await??
        };
        let change_to = AccountChange::SetPassword(new_hash);
        let current = Some(change.current_password.as_str());
        self.change_as_caller(&caller, &change_to, Keep::Caller, current, "password_changed", now, &event).await?;
        self.users.release_attempt(&caller.username, AttemptCounter::Username).await;
        event(AccountEvent::PasswordChanged);
        Ok(())
    }

    /// `GET /auth/sessions`: the caller's live sessions, the caller's marked.
    pub async fn sessions(&self, presented: Presented<'_>) -> Result<Vec<SessionView>, ApiError> {
        let now = self.clock.now();
        let caller = self.caller(presented, now).await?;
        // Revoked families stay in the index until their TTL: read twice the list's length.
        let ids = self.families.recent_family_ids_of_user(&caller.user.user_id, 2 * MAX_LISTED_SESSIONS).await?;
        let mut families = self.families.get_many(&ids).await?;
        // The index is eventually consistent: a session that began a moment ago may not be
        // in it yet, but the caller's own is always listed.
        families.push(caller.family.clone());
        Ok(live_sessions(&families, &caller.user, &caller.family.family_id, now))
    }

    /// `DELETE /auth/sessions/{sid}`: ends one live session of the caller's own account
    /// (the caller's too: "sign out of this device"); anything else is 404, so nobody learns
    /// whether another user's session id exists.
    pub async fn end_session(&self, presented: Presented<'_>, sid: &str, meta: &RequestMeta) -> Result<(), ApiError> {
        let now = self.clock.now();
        let caller = self.caller(presented, now).await?;
        let family = if sid == caller.family.family_id {
            Some(caller.family.clone())
        } else if crate::rules::token::is_family_id(sid) {
            self.families.get(sid).await?
        } else {
            None
        };
        let Some(family) = session_to_end(family.as_ref(), &caller.user, now) else {
            return Err(ApiError::NotFound);
        };
        self.revoker.end_session(&family.family_id, "ended_by_user", now).await?;
        audit::account(AccountEvent::SessionEnded, &caller.user.user_id, &family.family_id, meta.source_ip.as_deref());
        Ok(())
    }

    /// `DELETE /auth/sessions`: "sign out everywhere else", revoke-all minus the caller's
    /// session. Returns how many families the clean-up revoked.
    pub async fn end_other_sessions(&self, presented: Presented<'_>, meta: &RequestMeta) -> Result<usize, ApiError> {
        let now = self.clock.now();
        let caller = self.caller(presented, now).await?;
        let ip = meta.source_ip.as_deref();
        let event = |event| audit::account(event, &caller.user.user_id, &caller.family.family_id, ip);
        let change = AccountChange::EndSessions;
        let done = self.change_as_caller(&caller, &change, Keep::Caller, None, "ended_by_user", now, &event).await?;
        event(AccountEvent::OtherSessionsEnded);
        Ok(done.families_revoked)
    }

    /// `DELETE /auth/account`: with the caller's password (throttled as login), every
    /// session ends and everything that names the person is erased
    /// ([`Revoker::erase_account`]); the username is free for a new account at once.
    pub async fn delete_account(
        &self,
        presented: Presented<'_>,
        password: String,
        meta: &RequestMeta,
    ) -> Result<(), ApiError> {
        let ip = meta.source_ip.as_deref();
        self.limiter.admit(meta).await?;
        let now = self.clock.now();
        let caller = self.caller(presented, now).await?;
        let user_id = caller.user.user_id.clone();
        let event = |event| audit::account(event, &user_id, &caller.family.family_id, ip);
        self.reserve_attempt(&caller, now, &event).await?;
        let password = Some(password.as_str());
        let change = AccountChange::Delete;
        self.change_as_caller(&caller, &change, Keep::None, password, "account_deleted", now, &event).await?;
        // Committed: no login, no session from here on. What names the person goes now; if
        // this fails, `authctl user delete` finishes it.
        self.revoker.erase_account(&caller.username, &user_id).await.map_err(|e| match e {
            crate::store::UserWriteError::Dependency(e) => ApiError::Unavailable(e),
            _ => ApiError::Unavailable(DependencyError::Internal("account erasure refused".into())),
        })?;
        event(AccountEvent::AccountDeleted);
        Ok(())
    }

    /// Applies a change the caller asked for on the account as the caller read it; when
    /// another change committed first, again on the account as it now reads, the password
    /// (if the change needs one) checked again against the hash now stored. With
    /// `Keep::Caller` the caller's session survives the change. 401 `invalid_grant` for
    /// a wrong password; 401 `invalid_token` once the caller's session or account is gone.
    #[allow(clippy::too_many_arguments)]
    async fn change_as_caller(
        &self,
        caller: &Caller,
        change: &AccountChange,
        keep: Keep,
        password: Option<&str>,
        reason: &str,
        now: u64,
        event: &impl Fn(AccountEvent),
    ) -> Result<AccountChanged, ApiError> {
        let (mut user, mut family) = (caller.user.clone(), caller.family.clone());
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            if let Some(password) = password {
                if !self.password_matches(password, &user).await? {
                    event(AccountEvent::WrongPassword);
                    return Err(ApiError::WrongPassword);
                }
            }
            let kept = matches!(keep, Keep::Caller).then_some(&family);
            let verified = password.map(|_| user.password_hash.as_str());
            match self
                .revoker
                .change_account_as_read(&caller.username, &user, change, kept, verified, reason, now)
                .await?
            {
                ChangedAsRead::Done(done) => return Ok(done),
                ChangedAsRead::SessionEnded => return Err(ApiError::InvalidToken),
                ChangedAsRead::AccountMoved => {
                    match tokio::try_join!(self.users.get(&caller.username), self.families.get(&family.family_id))? {
                        (Some(u), Some(f)) if u.user_id == user.user_id && u.status == UserStatus::Active => {
                            (user, family) = (u, f);
                        }
                        _ => return Err(ApiError::InvalidToken),
                    }
                }
            }
        }
        Err(DependencyError::Internal("the account kept changing under the caller's change".into()).into())
    }

    /// The caller of a request: the token verified by the one verifier with a fresh key
    /// set, in the user's own hands, and live by the tables read now (strongly consistent):
    /// its `jti` not denylisted, its session a live session of its account, the account
    /// active and holding the token (its cut-off, or its kept session's), its client
    /// active. Anything else is 401 `invalid_token`.
    async fn caller(&self, presented: Presented<'_>, now: u64) -> Result<Caller, ApiError> {
        let claims = revoke_all_subject(presented.token(), self.keys.fresh_verifier(now).await?, now)?;
        // RFC 9449 §7.1: a bound token only with the DPoP scheme (the authorizer checked
        // its proof); a bearer token only with the Bearer scheme.
        if claims.cnf.is_some() != presented.is_dpop() {
            return Err(ApiError::InvalidToken);
        }
        let sid = claims.sid.clone().ok_or(ApiError::InvalidToken)?;
        let (family, jti_revoked, client) = tokio::try_join!(
            self.families.get(&sid),
            self.revocations.is_jti_revoked(&claims.jti),
            self.clients.client(&claims.client_id)
        )?;
        if !client.is_some_and(|c| c.is_active()) {
            return Err(ApiError::InvalidToken);
        }
        let family = family.ok_or(ApiError::InvalidToken)?;
        let username = bearer_session(&claims, Some(&family), jti_revoked).ok_or(ApiError::InvalidToken)?;
        let user = self.users.get(&username).await?.ok_or(ApiError::InvalidToken)?;
        let live = user.status == UserStatus::Active
            && is_live_session(&family, &user, now)
            && bearer_account_holds(&claims, &family, Some(&user));
        if !live {
            return Err(ApiError::InvalidToken);
        }
        Ok(Caller { username, user, family })
    }

    /// Reserves one password attempt on the username's failed-login counter (login's), or
    /// refuses with 429 when the window is full.
    async fn reserve_attempt(&self, caller: &Caller, now: u64, event: &impl Fn(AccountEvent)) -> Result<(), ApiError> {
        match self.users.reserve_attempt(&caller.username, AttemptCounter::Username, now, self.window).await? {
            Ok(()) => Ok(()),
            Err(retry_after) => {
                event(AccountEvent::Throttled);
                Err(ApiError::Throttled { retry_after })
            }
        }
    }

    /// Whether `password` is the account's (argon2id, off the async runtime).
    async fn password_matches(&self, password: &str, user: &UserRecord) -> Result<bool, ApiError> {
        let (password, phc) = (password.to_owned(), user.password_hash.clone());
        Ok(blocking(move || password::verify(&password, &phc)).await?)
    }
}

/// Runs CPU-bound work (argon2) off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, DependencyError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| DependencyError::Internal(e.to_string()))
}
