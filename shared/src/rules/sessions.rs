//! The account's own view of its sessions, without I/O: which of a user's families are
//! live sessions ([`live_sessions`]), what the user sees of each ([`SessionView`]), which
//! session a `DELETE /auth/sessions/{sid}` may end ([`session_to_end`]), and the cut-off a
//! session's access tokens are held to after a change that kept it ([`session_cut_off`]).
//!
//! A session of another user is answered exactly like a session that does not exist: the
//! caller learns nothing about other users' session ids (OWASP ASVS V4.2.1, no IDOR).

use serde::Serialize;

use crate::rules::records::{FamilyRecord, FamilyStatus, UserRecord};

/// The most sessions `GET /auth/sessions` lists (the most recent logins first): a bound on
/// the work of one request, far above the sessions one person keeps.
pub const MAX_LISTED_SESSIONS: usize = 100;

/// One session as its user sees it (`GET /auth/sessions`). Times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    /// The session id: the `sid` claim of its access tokens.
    pub sid: String,
    /// The client it was issued to.
    pub client_id: String,
    /// When it began (the login).
    pub created_at: u64,
    /// When it last got tokens: its last refresh, or its login if it has not refreshed.
    pub last_refreshed_at: u64,
    /// The network it was last used from, coarse (an IPv4 /24, an IPv6 /48), if known.
    pub network: Option<String>,
    /// The user-agent family it was last used from, if known.
    pub user_agent: Option<String>,
    /// The name given to the device at login, if any.
    pub device_name: Option<String>,
    /// Whether it is the session of the token that asked.
    pub current: bool,
}

/// Whether `family` is a live session of `user` at `now`: the user's, active, within both
/// expiries, and of the account's current sessions epoch (a change that ended every session
/// left it behind, even if the clean-up has not revoked it yet).
pub fn is_live_session(family: &FamilyRecord, user: &UserRecord, now: u64) -> bool {
    family.user_id == user.user_id && family.is_alive(now) && family.sessions_epoch == user.sessions_epoch
}

/// The live sessions of `user` among `families`, as the user sees them, the caller's
/// (`current_sid`) marked; the most recently used first, at most [`MAX_LISTED_SESSIONS`].
pub fn live_sessions(families: &[FamilyRecord], user: &UserRecord, current_sid: &str, now: u64) -> Vec<SessionView> {
    let mut live: Vec<&FamilyRecord> = families.iter().filter(|f| is_live_session(f, user, now)).collect();
    // A family read twice (the caller's, as it was and as it is) is listed once, as it is:
    // its later generation.
    live.sort_by(|a, b| a.family_id.cmp(&b.family_id).then_with(|| b.generation.cmp(&a.generation)));
    live.dedup_by(|later, kept| later.family_id == kept.family_id);
    live.sort_by(|a, b| b.last_used_at.cmp(&a.last_used_at).then_with(|| a.family_id.cmp(&b.family_id)));
    live.into_iter().take(MAX_LISTED_SESSIONS).map(|f| view(f, current_sid)).collect()
}

fn view(family: &FamilyRecord, current_sid: &str) -> SessionView {
    SessionView {
        sid: family.family_id.clone(),
        client_id: family.client_id.clone(),
        created_at: family.created_at,
        last_refreshed_at: family.last_used_at,
        network: family.network.clone(),
        user_agent: family.user_agent.clone(),
        device_name: family.device_name.clone(),
        current: family.family_id == current_sid,
    }
}

/// Whether `DELETE /auth/sessions/{sid}` by `user` may end `family` (as read): only a live
/// session of the caller's own account. Anything else (no such session, another user's,
/// one already ended) is the same 404.
pub fn session_to_end<'a>(family: Option<&'a FamilyRecord>, user: &UserRecord, now: u64) -> Option<&'a FamilyRecord> {
    family.filter(|f| f.status == FamilyStatus::Active && is_live_session(f, user, now))
}

/// The cut-off the access tokens of `family` are held to by `user` as it is now: the
/// account's own (`not_before`), unless the account's latest change kept this session
/// (a password change or "sign out everywhere else" by its user), in which case its tokens
/// stay held to the cut-off in force for it before that change. Any later change moves the
/// account's version, and the session is held to the account's cut-off again.
pub fn session_cut_off(family: &FamilyRecord, user: &UserRecord) -> u64 {
    match family.kept {
        Some(kept) if kept.version == user.version => kept.since,
        _ => user.not_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::records::{KeptThrough, HISTORY_SLOTS};

    const NOW: u64 = 1_800_000_000;

    fn user() -> UserRecord {
        UserRecord {
            sessions_epoch: 3,
            version: 9,
            not_before: NOW - 100,
            ..UserRecord::new("u-1".into(), "$argon2id$x".into(), vec!["read".into()], NOW - 10_000)
        }
    }

    fn family(id: &str, last_used_at: u64) -> FamilyRecord {
        FamilyRecord {
            family_id: id.into(),
            user_id: "u-1".into(),
            client_id: "first-party".into(),
            scopes: vec!["read".into()],
            token_hash: "h".into(),
            generation: 1,
            recent: vec![String::new(); HISTORY_SLOTS],
            previous_hash: None,
            rotated_at: None,
            sealed_successor: None,
            retries: 0,
            status: FamilyStatus::Active,
            revoked_reason: None,
            revoked_at: None,
            sid_denylisted: false,
            created_at: NOW - 5_000,
            last_used_at,
            idle_expires_at: NOW + 1_000,
            expires_at: NOW + 10_000,
            user_key: Some("ana".into()),
            user_version: 9,
            sessions_epoch: 3,
            not_before: NOW - 100,
            jkt: None,
            bound_since: None,
            device_name: Some("Ana's phone".into()),
            network: Some("203.0.113.0/24".into()),
            user_agent: Some("okhttp".into()),
            kept: None,
        }
    }

    #[test]
    fn lists_only_the_users_live_sessions_most_recent_first_with_the_callers_marked() {
        let revoked = FamilyRecord { status: FamilyStatus::Revoked, ..family("revoked", NOW) };
        let expired = FamilyRecord { expires_at: NOW, ..family("expired", NOW) };
        let idle = FamilyRecord { idle_expires_at: NOW - 1, ..family("idle", NOW) };
        let ended_by_epoch = FamilyRecord { sessions_epoch: 2, ..family("old-epoch", NOW) };
        let someone_else = FamilyRecord { user_id: "u-2".into(), ..family("other-user", NOW) };
        // The caller's read twice: before and after a refresh of it (a later generation).
        let caller_refreshed = FamilyRecord { generation: 2, last_used_at: NOW - 1, ..family("older", NOW - 1) };
        let families = vec![
            family("older", NOW - 50),
            revoked,
            family("newer", NOW - 10),
            expired,
            idle,
            ended_by_epoch,
            someone_else,
            caller_refreshed,
        ];
        let listed = live_sessions(&families, &user(), "older", NOW);
        let ids: Vec<&str> = listed.iter().map(|s| s.sid.as_str()).collect();
        assert_eq!(ids, ["older", "newer"], "each once, the most recently used first");
        assert!(listed[0].current, "the caller's session is marked");
        assert!(!listed[1].current);
        assert_eq!(listed[0].last_refreshed_at, NOW - 1, "as it is now");
        assert_eq!(listed[0].network.as_deref(), Some("203.0.113.0/24"));
        assert_eq!(listed[0].user_agent.as_deref(), Some("okhttp"));
        assert_eq!(listed[0].device_name.as_deref(), Some("Ana's phone"));
    }

    #[test]
    fn the_list_is_bounded() {
        let families: Vec<FamilyRecord> =
            (0..MAX_LISTED_SESSIONS as u64 + 5).map(|i| family(&format!("f{i}"), NOW - i)).collect();
        let listed = live_sessions(&families, &user(), "f0", NOW);
        assert_eq!(listed.len(), MAX_LISTED_SESSIONS);
        assert_eq!(listed[0].sid, "f0");
    }

    #[test]
    fn a_session_can_be_ended_only_by_its_own_user_while_it_is_live() {
        let own = family("s", NOW);
        assert!(session_to_end(Some(&own), &user(), NOW).is_some());
        assert!(session_to_end(None, &user(), NOW).is_none(), "no such session");
        let other = UserRecord { user_id: "u-2".into(), ..user() };
        assert!(session_to_end(Some(&own), &other, NOW).is_none(), "another user's: the same 404");
        let ended = FamilyRecord { status: FamilyStatus::Revoked, ..family("s", NOW) };
        assert!(session_to_end(Some(&ended), &user(), NOW).is_none(), "already ended");
        let left_behind = FamilyRecord { sessions_epoch: 2, ..family("s", NOW) };
        assert!(session_to_end(Some(&left_behind), &user(), NOW).is_none(), "ended by an account change");
    }

    #[test]
    fn a_kept_session_is_held_to_its_earlier_cut_off_until_the_account_changes_again() {
        let kept = FamilyRecord { kept: Some(KeptThrough { version: 9, since: NOW - 500 }), ..family("s", NOW) };
        assert_eq!(session_cut_off(&kept, &user()), NOW - 500, "kept by the latest change");
        let changed_again = UserRecord { version: 10, not_before: NOW, ..user() };
        assert_eq!(session_cut_off(&kept, &changed_again), NOW, "a later change holds it to the account's");
        assert_eq!(session_cut_off(&family("t", NOW), &user()), NOW - 100, "not kept: the account's");
    }
}
