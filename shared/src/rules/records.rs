//! The records the rules decide over: a session (refresh-token family), an account, a
//! denylist entry. Plain data in the shape of their DynamoDB items (serde); `store/` reads
//! and writes them, the rules take them as values.

use serde::{Deserialize, Serialize};

use crate::rules::scope::Scope;

/// How many earlier generations' hashes a family remembers, to recognise a genuinely
/// issued but rotated token (reuse) and tell it from a forgery. Older tokens than this
/// are treated like unknown ones: refused, with no revocation.
pub const HISTORY_SLOTS: usize = 16;

/// Whether a family's refresh token may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyStatus {
    /// The current token may be exchanged.
    Active,
    /// Revoked (logout, reuse detected, admin action); never active again.
    Revoked,
}

/// A refresh-token family. Holds hashes of tokens, never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// Family (session) id: the `sid` claim and part of the refresh token.
    pub family_id: String,
    /// Owner (GSI `by_user`).
    pub user_id: String,
    /// The client the session was issued to.
    pub client_id: String,
    /// Scopes granted at login (a list, so conditions can test membership).
    pub scopes: Vec<String>,
    /// Hash of the current refresh token ([`crate::rules::token::RefreshToken::hash`]).
    pub token_hash: String,
    /// Generation of the current token: 0 at login, +1 per rotation.
    pub generation: u32,
    /// Hashes of earlier tokens, slot = generation mod [`HISTORY_SLOTS`]; "" = empty.
    pub recent: Vec<String>,
    /// Hash of the immediately previous token (set by the first rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<String>,
    /// When the last rotation happened, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// The current token's secret sealed under a key only the previous token's holder can
    /// derive, for the exactly-once retry window ([`crate::rules::rotation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_successor: Option<String>,
    /// Retry answers given for the current generation (reset by each rotation): at most
    /// [`crate::rules::rotation::MAX_RETRY_ANSWERS`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Active or revoked.
    pub status: FamilyStatus,
    /// Why it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<String>,
    /// When it was revoked, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Set once the `sid` denylist entry of a logout is written: until then a logout of
    /// the revoked family is repeated in full ([`crate::rules::revoke::sid_entry_owed`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sid_denylisted: bool,
    /// Login time, Unix seconds (GSI sort key).
    pub created_at: u64,
    /// Last login or refresh, Unix seconds.
    pub last_used_at: u64,
    /// The family dies if unused until then (sliding, never past `expires_at`).
    pub idle_expires_at: u64,
    /// Absolute expiry, Unix seconds; also the TTL attribute.
    pub expires_at: u64,
    /// The owner's Users key (normalised username): the account every login and rotation
    /// of this family is checked against. Families written before it existed have none and
    /// cannot be refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    /// The account version this family last followed ([`UserRecord::version`]).
    #[serde(default)]
    pub user_version: u64,
    /// The sessions epoch the family was created in; a later epoch ended it.
    #[serde(default)]
    pub sessions_epoch: u64,
    /// The account's cut-off when the family last followed it: tokens it issues have
    /// `iat` at or after it.
    #[serde(default)]
    pub not_before: u64,
    /// The RFC 7638 thumbprint of the DPoP key the session is bound to (RFC 9449), set at
    /// login or by the rotation that bound it, never changed after: its access tokens carry
    /// it as `cnf.jkt` and it only rotates with a proof from that key. Families written
    /// before DPoP, and sessions that never showed a proof, have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The first generation issued bound (0 for a session bound at login): refresh tokens
    /// of earlier generations were bearer tokens, so presenting one is judged as before
    /// (a rotated one is reuse) rather than asked for the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_since: Option<u32>,
    /// A name the user gave the device at login ("Ana's phone"), shown in their list of
    /// sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The network the session was last used from (login or refresh), coarse: an IPv4 /24
    /// or an IPv6 /48, never the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The user-agent family the session was last used from ("okhttp", "Safari"), never the
    /// whole header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Set when an account change that ended every other session kept this one (a
    /// password change, "sign out everywhere else"): the session's tokens stay held to
    /// their earlier cut-off while the account is at that change's version
    /// ([`crate::rules::sessions::session_cut_off`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<KeptThrough>,
}

/// How a session outlived an account change that ended the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptThrough {
    /// The account version the change wrote.
    pub version: u64,
    /// The cut-off the session's access tokens stay held to (the one in force for it
    /// before the change), Unix seconds.
    pub since: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl FamilyRecord {
    /// Whether the family can still be used at `now` (TTL deletion is lazy: an expired item
    /// may linger for days, so expiry is always checked).
    pub fn is_alive(&self, now: u64) -> bool {
        self.status == FamilyStatus::Active && now < self.expires_at && now < self.idle_expires_at
    }

    /// The scope granted at login, as the family now has it.
    pub fn scope(&self) -> Scope {
        Scope::from_tokens(self.scopes.iter().cloned())
    }

    /// What the family keeps of its owner's account.
    pub fn account_state(&self) -> AccountState {
        AccountState { scopes: self.scopes.clone(), user_version: self.user_version, not_before: self.not_before }
    }

    /// Takes on the account's state (as a rotation that follows it writes it).
    pub fn follow(&mut self, state: &AccountState) {
        self.scopes.clone_from(&state.scopes);
        self.user_version = state.user_version;
        self.not_before = state.not_before;
    }

    /// The granted scope as an RFC 6749 string.
    pub fn scope_string(&self) -> String {
        self.scope().to_scope_string()
    }
}

/// What a family keeps of its owner's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The family's scopes: its own, narrowed to the account's.
    pub scopes: Vec<String>,
    /// The account version followed.
    pub user_version: u64,
    /// The account's cut-off.
    pub not_before: u64,
}

/// Whether an account may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// May log in.
    Active,
    /// May not log in; answers like a wrong password.
    Disabled,
    /// Being erased ([`AccountChange::Delete`]): no login, no session; the item goes once
    /// everything that names the person is gone.
    Deleted,
}

/// An account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable, random user id: the `sub` claim.
    pub user_id: String,
    /// argon2id PHC string; empty once the account is being deleted.
    #[serde(default)]
    pub password_hash: String,
    /// Scopes the user may be granted.
    pub scopes: Vec<String>,
    /// Active or disabled.
    pub status: UserStatus,
    /// Unix seconds.
    pub created_at: u64,
    /// Bumped by every change that live sessions must follow (scopes, status, sessions
    /// ended). A family remembers the version it last saw; logins and rotations are
    /// conditioned on it, so none slips past a change.
    #[serde(default)]
    pub version: u64,
    /// Bumped when every session of the user ends (disable, revoke-all, reuse): a family
    /// of an earlier epoch is dead.
    #[serde(default)]
    pub sessions_epoch: u64,
    /// The user cut-off, Unix seconds: access tokens issued before it are dead, and every
    /// token issued after the change that set it has its `iat` at or after it.
    #[serde(default)]
    pub not_before: u64,
}

impl UserRecord {
    /// The scopes the user may be granted.
    pub fn scope(&self) -> Scope {
        Scope::from_tokens(self.scopes.iter().cloned())
    }

    /// The account as `change` leaves it, decided on this one as read: the next version,
    /// the next sessions epoch if the change ends sessions, the cut-off raised to
    /// `not_before` (never lowered).
    pub fn after(&self, change: &AccountChange, not_before: u64) -> UserRecord {
        let mut next = self.clone();
        next.version += 1;
        next.not_before = next.not_before.max(not_before);
        if change.ends_sessions() {
            next.sessions_epoch += 1;
        }
        match change {
            AccountChange::SetScopes(scopes) => next.scopes.clone_from(scopes),
            AccountChange::Disable => next.status = UserStatus::Disabled,
            AccountChange::EndSessions => {}
            AccountChange::SetPassword(hash) => next.password_hash.clone_from(hash),
            AccountChange::Delete => {
                next.status = UserStatus::Deleted;
                next.password_hash.clear();
            }
        }
        next
    }

    /// A new active account.
    pub fn new(user_id: String, password_hash: String, scopes: Vec<String>, created_at: u64) -> Self {
        Self {
            user_id,
            password_hash,
            scopes,
            status: UserStatus::Active,
            created_at,
            version: 0,
            sessions_epoch: 0,
            not_before: 0,
        }
    }
}

/// An account change that every session of the account must follow.
#[derive(Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// New scopes: sessions narrow to them at their next refresh; live access tokens end.
    SetScopes(Vec<String>),
    /// No more logins; every session and access token ends.
    Disable,
    /// Every session and access token ends; the account stays usable (revoke-all, reuse).
    EndSessions,
    /// A new password (its argon2id PHC string): every session and access token ends (but
    /// the one a change by the user keeps).
    SetPassword(String),
    /// The account is erased: every session and access token ends, no login; the
    /// password hash goes at once, the item once the rest is gone.
    Delete,
}

impl AccountChange {
    /// Whether the change ends every session (a new sessions epoch).
    pub fn ends_sessions(&self) -> bool {
        !matches!(self, Self::SetScopes(_))
    }
}

impl std::fmt::Debug for AccountChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SetScopes(scopes) => f.debug_tuple("SetScopes").field(scopes).finish(),
            Self::Disable => f.write_str("Disable"),
            Self::EndSessions => f.write_str("EndSessions"),
            Self::SetPassword(_) => f.write_str("SetPassword(<redacted>)"),
            Self::Delete => f.write_str("Delete"),
        }
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user_id", &self.user_id)
            .field("password_hash", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("status", &self.status)
            .field("version", &self.version)
            .field("sessions_epoch", &self.sessions_epoch)
            .field("not_before", &self.not_before)
            .finish()
    }
}

/// What an entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Jti,
    /// Every access token of one session, by `sid` (the family id).
    Sid,
    /// Every access token of a user issued before `not_before`, by `sub`.
    User,
    /// Every access token issued before `not_before` to a client or exchanged by it (its
    /// `client_id`, or any `act` of the chain): a disabled client.
    Client,
}

impl RevocationKind {
    /// Its name in the item's sort key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jti => "jti",
            Self::Sid => "sid",
            Self::User => "user",
            Self::Client => "client",
        }
    }
}

/// One denylist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What it covers.
    pub kind: RevocationKind,
    /// The `jti`, `sid` or `sub` it covers.
    pub subject: String,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at_ms: u64,
    /// For `User` and `Client`: tokens with `iat` before this (Unix seconds) are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// TTL, Unix seconds: after this no token the entry covers can be valid.
    pub expires_at: u64,
    /// For `User`: the one session whose tokens the cut-off spares (the caller's, in a
    /// password change or "sign out everywhere else").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except_sid: Option<String>,
}
