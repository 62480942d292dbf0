//! Audit trail: one structured log line per security event, under the tracing target
//! `audit`, and one EMF count per event ([`crate::platform::metrics`]). Never a password, token, hash or username (users type passwords into the
//! username field); the stable user id when it is known.

use crate::rules::login::LoginFailure;

/// Facts about the caller that go into the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The caller's IP address as API Gateway saw it.
    pub source_ip: Option<String>,
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

/// A session event other than login: rotation, retry, reuse, revocation.
pub fn session_event(
    event: &'static str,
    outcome: &'static str,
    user_id: Option<&str>,
    family_id: &str,
    client_id: Option<&str>,
    source_ip: Option<&str>,
) {
    let user_id = user_id.unwrap_or("-");
    let client_id = client_id.unwrap_or("-");
    let source_ip = source_ip.unwrap_or("-");
    if outcome == "success" {
        tracing::info!(target: "audit", event, outcome, user_id, family_id, client_id, source_ip, "{event}");
    } else {
        tracing::warn!(target: "audit", event, outcome, user_id, family_id, client_id, source_ip, "{event}");
    }
    crate::platform::metrics::count(event, "SessionEvents", outcome);
}
