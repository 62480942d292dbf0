//! Audit trail: one structured log line per security event, under the tracing target
//! `audit`, and one EMF count per event ([`crate::platform::metrics`]). Never a password, token, hash or username (users type passwords into the
//! username field); the stable user id when it is known.

use crate::rules::grants::{Grant, GrantRefusal};
use crate::rules::login::LoginFailure;
use crate::rules::session_context::{ContextChange, SessionContext};

/// Facts about the caller that go into the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The caller's IP address as API Gateway saw it.
    pub source_ip: Option<String>,
    /// The raw `User-Agent` header: used only to derive the user-agent family
    /// ([`crate::rules::session_context::user_agent_family`]), never logged or stored.
    pub user_agent: Option<String>,
}

impl RequestMeta {
    /// Where the request came from, coarsely: the caller's network and user-agent family.
    pub fn session_context(&self) -> SessionContext {
        SessionContext::of(self.source_ip.as_deref(), self.user_agent.as_deref())
    }
}

/// A login issued tokens.
pub fn login_succeeded(user_id: &str, family_id: &str, client_id: &str, source_ip: Option<&str>) {
    tracing::info!(
        target: "audit",
        event = "login",
        outcome = "success",
        user_id,
        family_id,
        client_id,
        source_ip = source_ip.unwrap_or("-"),
        "login succeeded"
    );
    crate::platform::metrics::count("login", "LoginAttempts", "success");
}

/// A login issued nothing.
pub fn login_failed(reason: LoginFailure, user_id: Option<&str>, client_id: &str, source_ip: Option<&str>) {
    tracing::warn!(
        target: "audit",
        event = "login",
        outcome = "failure",
        reason = reason.as_str(),
        user_id = user_id.unwrap_or("-"),
        client_id,
        source_ip = source_ip.unwrap_or("-"),
        "login failed"
    );
    crate::platform::metrics::count("login", "LoginAttempts", reason.as_str());
}

/// A session event other than login, one variant per kind of audit line. Its name and
/// outcome are the line's `event` and `outcome` and the `SessionEvents` metric's operation
/// and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// A refresh rotated its family.
    Rotated,
    /// A client whose response was lost got the same successor again.
    Retried,
    /// A retry within the leeway past the generation's retry answers: refused, not reuse.
    RetriesExhausted,
    /// A refresh token not of our form.
    MalformedToken,
    /// A refresh refused for its DPoP proof (missing for a bound session, invalid,
    /// replayed, from another key, or DPoP off): the class, as
    /// [`crate::rules::dpop::ProofRejection::class`] names it. Nothing changed.
    ProofRefused(&'static str),
    /// No family issued the presented refresh token.
    UnknownToken,
    /// A refresh token presented by another client than the one it was issued to
    /// (RFC 6749 §6): refused, nothing changed.
    WrongClient,
    /// A family that follows no account cannot be refreshed.
    NoAccount,
    /// The account ended the family (disabled, sessions ended, gone).
    AccountEnded,
    /// A refresh asked for a scope the family lacks.
    ScopeNotGranted,
    /// A genuine token of a revoked or expired family.
    DeadFamily,
    /// A rotated token came back: the family (or every family of the user) is revoked.
    ReuseDetected,
    /// RFC 7009: a refresh token's family revoked.
    RefreshTokenRevoked,
    /// RFC 7009: a refresh token of our form that revoked nothing.
    NothingToRevoke,
    /// RFC 7009: an access token denylisted.
    AccessTokenRevoked,
    /// Revoke-all refused a bearer whose session or account no longer holds.
    RevokedBearer,
    /// Revoke-all ended every session of the user.
    AllSessionsRevoked,
    /// A refresh came from another network or user-agent family than the session's last
    /// use: `true` when the session was ended for it (`ON_CONTEXT_CHANGE=end`), `false`
    /// when the rotation went ahead and the change is only recorded. Written by
    /// [`context_changed`], which says what changed.
    ContextChanged(bool),
}

impl SessionEvent {
    /// The line's `event` and `outcome`.
    pub fn name_and_outcome(self) -> (&'static str, &'static str) {
        match self {
            Self::Rotated => ("refresh_rotated", "success"),
            Self::Retried => ("refresh_retry", "success"),
            Self::RetriesExhausted => ("refresh_retry", "retries_exhausted"),
            Self::MalformedToken => ("refresh", "malformed_token"),
            Self::ProofRefused(class) => ("refresh", class),
            Self::UnknownToken => ("refresh", "unknown_token"),
            Self::WrongClient => ("refresh", "wrong_client"),
            Self::NoAccount => ("refresh", "no_account"),
            Self::AccountEnded => ("refresh", "account_ended"),
            Self::ScopeNotGranted => ("refresh", "invalid_scope"),
            Self::DeadFamily => ("refresh", "dead_family"),
            Self::ReuseDetected => ("refresh_reuse_detected", "revoked"),
            Self::RefreshTokenRevoked => ("revoke_refresh_token", "success"),
            Self::NothingToRevoke => ("revoke_refresh_token", "nothing_to_revoke"),
            Self::AccessTokenRevoked => ("revoke_access_token", "success"),
            Self::RevokedBearer => ("revoke_all", "revoked_bearer"),
            Self::AllSessionsRevoked => ("revoke_all", "success"),
            Self::ContextChanged(false) => ("session_context_changed", "recorded"),
            Self::ContextChanged(true) => ("session_context_changed", "ended"),
        }
    }
}

/// Whom a session event concerns: its family (`-` when none is known), and the user,
/// client and caller where they are known.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    family_id: &'a str,
    user_id: Option<&'a str>,
    client_id: Option<&'a str>,
    source_ip: Option<&'a str>,
}

impl<'a> Session<'a> {
    /// The family `family_id`, from `source_ip`.
    pub fn new(family_id: &'a str, source_ip: Option<&'a str>) -> Self {
        Self { family_id, user_id: None, client_id: None, source_ip }
    }

    /// Owned by `user_id`.
    pub fn user(self, user_id: &'a str) -> Self {
        Self { user_id: Some(user_id), ..self }
    }

    /// Issued to `client_id`.
    pub fn client(self, client_id: &'a str) -> Self {
        Self { client_id: Some(client_id), ..self }
    }
}

/// Writes the audit line of a session event and counts it.
pub fn session(event: SessionEvent, session: Session<'_>) {
    let (event, outcome) = event.name_and_outcome();
    let Session { family_id, user_id, client_id, source_ip } = session;
    let (user_id, client_id, source_ip) = (user_id.unwrap_or("-"), client_id.unwrap_or("-"), source_ip.unwrap_or("-"));
    if outcome == "success" {
        tracing::info!(target: "audit", event, outcome, user_id, family_id, client_id, source_ip, "{event}");
    } else {
        tracing::warn!(target: "audit", event, outcome, user_id, family_id, client_id, source_ip, "{event}");
    }
    crate::platform::metrics::count(event, "SessionEvents", outcome);
}

/// A session used from somewhere new ([`SessionEvent::ContextChanged`]): its audit line
/// says what changed (`network`, `user_agent` or `both`) and the coarse values before and
/// after (a network prefix, a user-agent family; `-` for a side that did not change), never
/// the header; counted as `SessionContextChanges` (operation `session_context_changed`,
/// outcome `recorded` or `ended`).
pub fn context_changed(ended: bool, change: &ContextChange, session: Session<'_>) {
    let (event, outcome) = SessionEvent::ContextChanged(ended).name_and_outcome();
    let Session { family_id, user_id, client_id, source_ip } = session;
    let (user_id, client_id, source_ip) = (user_id.unwrap_or("-"), client_id.unwrap_or("-"), source_ip.unwrap_or("-"));
    let changed = change.what();
    let side = |side: &Option<(String, String)>| side.clone().unwrap_or_else(|| ("-".into(), "-".into()));
    let ((network_was, network), (user_agent_was, user_agent)) = (side(&change.network), side(&change.user_agent));
    tracing::warn!(
        target: "audit",
        event,
        outcome,
        changed,
        network_was,
        network,
        user_agent_was,
        user_agent,
        user_id,
        family_id,
        client_id,
        source_ip,
        "{event}"
    );
    crate::platform::metrics::count(event, "SessionContextChanges", outcome);
}

/// A token issued by a grant without a session of its own ([`crate::rules::grants`]): who
/// asked (`client_id`), for whom (`user_id` and the session `family_id` of an exchanged
/// token; `-` for a service's own), for which API, and the chain of clients acting (the
/// caller first). Never the token.
#[derive(Debug, Clone, Copy)]
pub struct GrantIssued<'a> {
    /// The client the token was issued to.
    pub client_id: &'a str,
    /// The user of an exchanged token.
    pub user_id: Option<&'a str>,
    /// The session of an exchanged token.
    pub family_id: Option<&'a str>,
    /// The token's `aud`.
    pub audience: &'a str,
    /// The `act` chain, space-separated, the caller first; empty for a service's own token.
    pub actors: &'a str,
    /// The caller's address.
    pub source_ip: Option<&'a str>,
}

/// Writes the audit line of a token issued by `grant` and counts it for its client
/// (`TokensIssued`).
pub fn grant_issued(grant: Grant, issued: GrantIssued<'_>) {
    let event = grant.as_str();
    let GrantIssued { client_id, user_id, family_id, audience, actors, source_ip } = issued;
    tracing::info!(
        target: "audit",
        event,
        outcome = "success",
        client_id,
        user_id = user_id.unwrap_or("-"),
        family_id = family_id.unwrap_or("-"),
        audience,
        actors,
        source_ip = source_ip.unwrap_or("-"),
        "{event}"
    );
    crate::platform::metrics::count_per_client(event, "TokensIssued", "issued", client_id);
}

/// Writes the audit line of a refused `grant` and counts it for its client
/// (`GrantRefusals`, by reason).
pub fn grant_refused(grant: Grant, refusal: GrantRefusal, client_id: &str, source_ip: Option<&str>) {
    let (event, outcome) = (grant.as_str(), refusal.as_str());
    tracing::warn!(target: "audit", event, outcome, client_id, source_ip = source_ip.unwrap_or("-"), "{event} refused");
    crate::platform::metrics::count_per_client(event, "GrantRefusals", outcome, client_id);
}

/// An account self-service event ([`crate::services::account`]): its line's `event` and
/// `outcome`, and the `AccountEvents` metric's operation and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEvent {
    /// The password changed; every other session ended.
    PasswordChanged,
    /// A new password the policy refused (nothing changed, no attempt counted).
    PasswordRefused,
    /// The password given with a change was wrong (counted against the throttle).
    WrongPassword,
    /// A change that needs the password was refused by the throttle.
    Throttled,
    /// The user ended one of their sessions.
    SessionEnded,
    /// The user ended every session but the calling one.
    OtherSessionsEnded,
    /// The account was deleted and erased.
    AccountDeleted,
}

impl AccountEvent {
    /// The line's `event` and `outcome`.
    pub fn name_and_outcome(self) -> (&'static str, &'static str) {
        match self {
            Self::PasswordChanged => ("password_change", "success"),
            Self::PasswordRefused => ("password_change", "policy_refused"),
            Self::WrongPassword => ("account_password_check", "wrong_password"),
            Self::Throttled => ("account_password_check", "throttled"),
            Self::SessionEnded => ("session_end", "success"),
            Self::OtherSessionsEnded => ("other_sessions_end", "success"),
            Self::AccountDeleted => ("account_delete", "success"),
        }
    }
}

/// Writes the audit line of an account event and counts it. The stable user id only, never
/// the username (an erased account's lines must not name the person).
pub fn account(event: AccountEvent, user_id: &str, family_id: &str, source_ip: Option<&str>) {
    let (event, outcome) = event.name_and_outcome();
    let source_ip = source_ip.unwrap_or("-");
    if outcome == "success" {
        tracing::info!(target: "audit", event, outcome, user_id, family_id, source_ip, "{event}");
    } else {
        tracing::warn!(target: "audit", event, outcome, user_id, family_id, source_ip, "{event}");
    }
    crate::platform::metrics::count(event, "AccountEvents", outcome);
}
