//! The login rules: who gets a session, with which scope, and what is written.
//!
//! The decisions take plain values and do no I/O ([`judge`] after the password check,
//! [`new_family`] for what a granted login writes, [`settle`] for what the (sign, write)
//! pair of a granted login leaves behind), so each outcome has a unit test without a
//! stack; whether an attempt may reach the password check at all is one conditional write
//! ([`crate::store::DynamoUsers::reserve_attempt`]), tested against DynamoDB Local.
//! [`crate::services::login::LoginService`] runs them between its calls.

use std::time::Duration;

use crate::rules::records::{FamilyRecord, FamilyStatus, UserRecord, UserStatus, HISTORY_SLOTS};
use crate::rules::scope::Scope;
use crate::rules::session_context::SessionContext;
use crate::rules::token::RefreshToken;

/// Why a login failed, as recorded (the client sees one answer for all of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// No such username.
    UnknownUser,
    /// Password did not verify.
    WrongPassword,
    /// Account disabled.
    Disabled,
    /// Too many failures in the window; the password was not checked.
    Throttled,
    /// Authenticated, but asked for a scope beyond the user's.
    InvalidScope,
    /// DynamoDB or KMS failed; nothing was issued.
    Unavailable,
    /// The account changed (disabled, new scopes, sessions ended) while logging in.
    AccountChanged,
    /// The DPoP proof was refused (invalid, replayed, or DPoP is off): checked before the
    /// password, so nothing about the account was learnt.
    InvalidDpopProof,
    /// The deployment's client (`CLIENT_ID`) is disabled in the registry: nothing is
    /// issued to it.
    ClientDisabled,
}

impl LoginFailure {
    /// The name audit lines and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::WrongPassword => "wrong_password",
            Self::Disabled => "disabled",
            Self::Throttled => "throttled",
            Self::InvalidScope => "invalid_scope",
            Self::Unavailable => "unavailable",
            Self::AccountChanged => "account_changed",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::ClientDisabled => "client_disabled",
        }
    }
}

/// Lifetimes and limits of login, as a deployment configured them.
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
    let allowed = user.scope();
    match requested {
        None => Ok(allowed),
        Some(requested) if requested.is_subset_of(&allowed) => Ok(requested),
        Some(_) => Err(LoginFailure::InvalidScope),
    }
}

/// The longest device name a login may give, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// The device name a login body gave ("Ana's phone"), trimmed: 1 to
/// [`MAX_DEVICE_NAME_CHARS`] characters, none of them a control character (it is shown
/// back in the user's list of sessions, and a newline or an escape has no place there).
/// The error is the `invalid_request` description.
pub fn device_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("device_name must not be empty when present");
    }
    if name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err("device_name must be at most 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("device_name must not contain control characters");
    }
    Ok(name.to_owned())
}

/// Where a login came from, as its family records it.
#[derive(Debug, Clone, Copy)]
pub struct SessionOrigin<'a> {
    /// The DPoP key (thumbprint) the login showed a proof from, if any.
    pub bound_to: Option<&'a str>,
    /// The name the user gave the device ([`device_name`]), if any.
    pub device_name: Option<&'a str>,
    /// The network and user-agent family of the login request.
    pub context: &'a SessionContext,
}

/// The family a granted login starts: generation 0 of `refresh`, alive, with the scope
/// granted, ending at the first of its absolute and idle lifetimes, following the account
/// (stored under `user_key`) as login read it, bound from its first token to the DPoP key
/// `origin.bound_to` (a thumbprint) when the login came with a proof, and recording the
/// device name and the context the login came from.
pub fn new_family(
    user_key: &str,
    user: &UserRecord,
    scope: &Scope,
    refresh: &RefreshToken,
    now: u64,
    policy: &LoginPolicy,
    origin: &SessionOrigin<'_>,
) -> FamilyRecord {
    let bound_to = origin.bound_to;
    FamilyRecord {
        family_id: refresh.family_id(),
        user_id: user.user_id.clone(),
        client_id: policy.client_id.clone(),
        scopes: scope.tokens().map(str::to_owned).collect(),
        token_hash: refresh.hash(),
        generation: 0,
        recent: vec![String::new(); HISTORY_SLOTS],
        previous_hash: None,
        rotated_at: None,
        sealed_successor: None,
        revoked_reason: None,
        revoked_at: None,
        sid_denylisted: false,
        retries: 0,
        status: FamilyStatus::Active,
        created_at: now,
        last_used_at: now,
        idle_expires_at: now + policy.refresh_idle_secs.min(policy.refresh_ttl_secs),
        expires_at: now + policy.refresh_ttl_secs,
        user_key: Some(user_key.to_owned()),
        user_version: user.version,
        sessions_epoch: user.sessions_epoch,
        not_before: user.not_before,
        jkt: bound_to.map(str::to_owned),
        bound_since: bound_to.map(|_| 0),
        device_name: origin.device_name.map(str::to_owned),
        network: origin.context.network.clone(),
        user_agent: origin.context.user_agent.clone(),
        kept: None,
    }
}

/// The failed-login window of a counter: at most `max` attempts are counted in
/// `window_secs` from the first; then attempts are refused until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutWindow {
    /// Attempts a window counts.
    pub max: u32,
    /// Its length, seconds.
    pub window_secs: u64,
}

/// What a counter that refused to count an attempt means, as it was when it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterRefusal {
    /// Full within its window: refused until the window ends (the `Retry-After`).
    Throttled(Duration),
    /// Its window has passed: a new one starts with this attempt.
    WindowPassed,
}

impl LockoutWindow {
    /// A counter whose window began at or before this, at `now`, counts no more.
    pub fn cutoff(&self, now: u64) -> u64 {
        now.saturating_sub(self.window_secs)
    }

    /// Why a counter whose window began at `window_start` refused an attempt at `now`.
    /// A counter with no window (a device forgotten meanwhile) refuses this once, like a
    /// full one.
    pub fn refused(&self, window_start: Option<u64>, now: u64) -> CounterRefusal {
        match window_start {
            None => CounterRefusal::Throttled(Duration::from_secs(1)),
            Some(start) if start > self.cutoff(now) => {
                CounterRefusal::Throttled(Duration::from_secs((start + self.window_secs).saturating_sub(now).max(1)))
            }
            Some(_) => CounterRefusal::WindowPassed,
        }
    }
}

/// How a granted login's family write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyWrite {
    /// The family is written and the counter cleared.
    Written,
    /// The account changed since it was read (disabled, new scopes, sessions ended):
    /// nothing written.
    AccountChanged,
    /// DynamoDB failed: nothing written.
    Failed,
}

/// What a granted login does once its token was signed (or not) and its family written
/// (or not), both at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Both held: answer with the tokens.
    Issue,
    /// The account moved under the login: refuse as for a wrong password; nothing to undo.
    Refuse,
    /// Written but not signed: delete the family again (its secret never left this
    /// process), answer 503. The attempt stays counted: the counter was cleared with
    /// the write.
    DeleteFamily,
    /// Not written: give the attempt back (an outage must not lock users out), answer 503.
    ReleaseAttempt,
}

/// The outcome table of a granted login's (sign, write) pair.
pub fn settle(signed: bool, write: FamilyWrite) -> Settlement {
    match (signed, write) {
        (true, FamilyWrite::Written) => Settlement::Issue,
        (_, FamilyWrite::AccountChanged) => Settlement::Refuse,
        (false, FamilyWrite::Written) => Settlement::DeleteFamily,
        (_, FamilyWrite::Failed) => Settlement::ReleaseAttempt,
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
        let family = new_family("alice", &account, &scope("read write"), &refresh, 1_000, &policy(), &unbound());
        let followed = (family.user_key.as_deref(), family.user_version, family.sessions_epoch, family.not_before);
        assert_eq!(followed, (Some("alice"), 7, 2, 990), "follows the account as login read it");
        assert_eq!((family.family_id.as_str(), family.user_id.as_str()), (refresh.family_id().as_str(), "u-1"));
        assert_eq!((family.generation, family.status), (0, FamilyStatus::Active));
        assert_eq!(family.token_hash, refresh.hash());
        assert!(!family.token_hash.contains(&refresh.encode()[5..]), "never the token itself");
        assert_eq!(family.scopes, vec!["read".to_owned(), "write".to_owned()]);
        assert_eq!((family.idle_expires_at, family.expires_at), (1_000 + 7 * 86_400, 1_000 + 30 * 86_400));
        assert!(family.is_alive(1_000));
        assert_eq!((family.jkt, family.bound_since), (None, None), "no proof: a bearer session");
        assert_eq!((family.device_name, family.network, family.user_agent), (None, None, None));
    }

    static NO_CONTEXT: SessionContext = SessionContext { network: None, user_agent: None };

    fn unbound() -> SessionOrigin<'static> {
        SessionOrigin { bound_to: None, device_name: None, context: &NO_CONTEXT }
    }

    #[test]
    fn a_new_family_records_the_device_name_and_where_the_login_came_from() {
        let account = user(UserStatus::Active, &["read"]);
        let context = SessionContext::of(Some("203.0.113.77"), Some("okhttp/4.12.0"));
        let origin = SessionOrigin { device_name: Some("Ana's phone"), context: &context, ..unbound() };
        let family = new_family("alice", &account, &scope("read"), &RefreshToken::new_family(), 0, &policy(), &origin);
        assert_eq!(family.device_name.as_deref(), Some("Ana's phone"));
        assert_eq!((family.network.as_deref(), family.user_agent.as_deref()), (Some("203.0.113.0/24"), Some("okhttp")));
    }

    #[test]
    fn a_device_name_is_trimmed_and_kept_as_given() {
        assert_eq!(device_name("  Ana's phone  ").as_deref(), Ok("Ana's phone"));
        assert_eq!(device_name("Téléphone d'Anaïs 📱").as_deref(), Ok("Téléphone d'Anaïs 📱"));
        let longest = "é".repeat(MAX_DEVICE_NAME_CHARS);
        assert_eq!(device_name(&longest), Ok(longest.clone()), "64 characters, whatever their bytes");
    }

    #[test]
    fn a_device_name_empty_too_long_or_with_control_characters_is_refused() {
        assert_eq!(device_name("   "), Err("device_name must not be empty when present"));
        assert_eq!(
            device_name(&"a".repeat(MAX_DEVICE_NAME_CHARS + 1)),
            Err("device_name must be at most 64 characters")
        );
        for control in ["Ana\nphone", "Ana\u{1b}[31m", "tab\there", "nul\0"] {
            assert_eq!(device_name(control), Err("device_name must not contain control characters"), "{control:?}");
        }
    }

    #[test]
    fn a_login_with_a_proof_binds_the_family_from_its_first_token() {
        let account = user(UserStatus::Active, &["read"]);
        let origin = SessionOrigin { bound_to: Some("jkt-1"), ..unbound() };
        let family = new_family("alice", &account, &scope("read"), &RefreshToken::new_family(), 0, &policy(), &origin);
        assert_eq!((family.jkt.as_deref(), family.bound_since), (Some("jkt-1"), Some(0)));
    }

    #[test]
    fn the_idle_limit_never_outlasts_the_absolute_lifetime() {
        let short = LoginPolicy { refresh_ttl_secs: 3_600, ..policy() };
        let account = user(UserStatus::Active, &["read"]);
        let family = new_family("alice", &account, &scope("read"), &RefreshToken::new_family(), 0, &short, &unbound());
        assert_eq!(family.idle_expires_at, 3_600);
    }

    #[test]
    fn a_login_issues_only_when_signed_and_written() {
        assert_eq!(settle(true, FamilyWrite::Written), Settlement::Issue);
    }

    #[test]
    fn a_login_whose_account_moved_is_refused_signed_or_not() {
        assert_eq!(settle(true, FamilyWrite::AccountChanged), Settlement::Refuse);
        assert_eq!(settle(false, FamilyWrite::AccountChanged), Settlement::Refuse);
    }

    #[test]
    fn a_family_written_for_a_token_that_could_not_be_signed_is_deleted() {
        assert_eq!(settle(false, FamilyWrite::Written), Settlement::DeleteFamily);
    }

    #[test]
    fn a_login_that_could_not_be_written_gives_its_attempt_back() {
        assert_eq!(settle(true, FamilyWrite::Failed), Settlement::ReleaseAttempt);
        assert_eq!(settle(false, FamilyWrite::Failed), Settlement::ReleaseAttempt);
    }

    const WINDOW: LockoutWindow = LockoutWindow { max: 5, window_secs: 900 };

    #[test]
    fn a_full_counter_refuses_until_its_window_ends() {
        assert_eq!(WINDOW.refused(Some(1_000), 1_000), CounterRefusal::Throttled(Duration::from_secs(900)));
        assert_eq!(WINDOW.refused(Some(1_000), 1_899), CounterRefusal::Throttled(Duration::from_secs(1)));
    }

    #[test]
    fn a_counter_whose_window_passed_starts_a_new_one() {
        assert_eq!(WINDOW.cutoff(1_900), 1_000);
        assert_eq!(WINDOW.refused(Some(1_000), 1_900), CounterRefusal::WindowPassed, "exactly at its end");
        assert_eq!(WINDOW.refused(Some(1_000), 5_000), CounterRefusal::WindowPassed);
    }

    #[test]
    fn a_counter_without_a_window_refuses_this_once() {
        assert_eq!(WINDOW.refused(None, 1_000), CounterRefusal::Throttled(Duration::from_secs(1)));
    }

    #[test]
    fn a_window_never_asks_to_wait_less_than_a_second_or_underflows() {
        assert_eq!(WINDOW.refused(Some(50), 10), CounterRefusal::Throttled(Duration::from_secs(940)), "early clock");
        assert_eq!(WINDOW.cutoff(10), 0);
    }
}
