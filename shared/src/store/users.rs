//! The Users table: accounts (`sk = "profile"`) and failed-login counters
//! (`sk = "login_failures"`), both in the partition of the normalised username, so one
//! strongly consistent Query reads everything login needs.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use super::is_conditional_check_failed;
use super::schema::{TTL_ATTRIBUTE, USERS_PARTITION_KEY as PK, USERS_SORT_KEY as SK};
use crate::error::DependencyError;
use crate::username::Username;

const PROFILE: &str = "profile";
const LOGIN_FAILURES: &str = "login_failures";

/// Whether an account may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// May log in.
    Active,
    /// May not log in; answers like a wrong password.
    Disabled,
}

/// An account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable, random user id: the `sub` claim.
    pub user_id: String,
    /// argon2id PHC string.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// New scopes: sessions narrow to them at their next refresh; live access tokens end.
    SetScopes(Vec<String>),
    /// No more logins; every session and access token ends.
    Disable,
    /// Every session and access token ends; the account stays usable (revoke-all, reuse).
    EndSessions,
}

impl AccountChange {
    /// Whether the change ends every session (a new sessions epoch).
    pub fn ends_sessions(&self) -> bool {
        matches!(self, Self::Disable | Self::EndSessions)
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

/// Failed logins for one username within the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    /// Failures counted in this window.
    #[serde(default)]
    pub failures: u32,
    /// When the window began (Unix seconds); absent after a successful login reset it.
    #[serde(default)]
    pub window_start: Option<u64>,
}

impl LoginFailures {
    /// Seconds until the lockout ends, if the username is locked out at `now`.
    pub fn lockout_remaining(&self, now: u64, max_failures: u32, window_secs: u64) -> Option<u64> {
        let start = self.window_start?;
        let end = start.saturating_add(window_secs);
        (self.failures >= max_failures && now < end).then(|| end - now)
    }
}

/// Everything login reads, from one Query.
#[derive(Debug, Clone, Default)]
pub struct LoginLookup {
    /// The account, if the username exists.
    pub user: Option<UserRecord>,
    /// The failure counter, if one exists (also for unknown usernames).
    pub failures: Option<LoginFailures>,
}

#[derive(Serialize, Deserialize)]
struct ProfileItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    user: UserRecord,
}

/// Why an admin write to a user failed.
#[derive(Debug, thiserror::Error)]
pub enum UserWriteError {
    /// `create` on a username that exists.
    #[error("user already exists")]
    AlreadyExists,
    /// An update of a username that does not exist.
    #[error("no such user")]
    NotFound,
    /// DynamoDB failed.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// The Users table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoUsers {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn key(username: &Username, sort: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(username.as_str().to_owned())),
        (SK.to_owned(), AttributeValue::S(sort.to_owned())),
    ])
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl DynamoUsers {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Reads the account and the failure counter of `username`: one strongly consistent Query.
    pub async fn lookup_for_login(&self, username: &Username) -> Result<LoginLookup, DependencyError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(username.as_str().to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("Query", e))?;
        let mut lookup = LoginLookup::default();
        for item in out.items() {
            match item.get(SK).and_then(|v| v.as_s().ok()).map(String::as_str) {
                Some(PROFILE) => lookup.user = Some(profile(item.clone())?),
                Some(LOGIN_FAILURES) => {
                    let failures: LoginFailures = serde_dynamo::from_item(item.clone())
                        .map_err(|e| DependencyError::Corrupt(format!("login failures: {e}")))?;
                    lookup.failures = Some(failures);
                }
                _ => {}
            }
        }
        Ok(lookup)
    }

    /// Counts one failed login for `username` (existing or not) and returns the counter.
    /// A window older than `window_secs` starts over at 1. The item expires by TTL.
    pub async fn record_failure(
        &self,
        username: &Username,
        now: u64,
        window_secs: u64,
    ) -> Result<LoginFailures, DependencyError> {
        let cutoff = now.saturating_sub(window_secs);
        let expires = n(now + window_secs);
        // Within the window (or no window yet): count on.
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(username, LOGIN_FAILURES)))
            .update_expression("SET failures = if_not_exists(failures, :zero) + :one, window_start = if_not_exists(window_start, :now), #ttl = :exp")
            .condition_expression("attribute_not_exists(window_start) OR window_start > :cutoff")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":cutoff", n(cutoff))
            .expression_attribute_values(":exp", expires.clone())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let attributes = match counted {
            Ok(out) => out.attributes,
            Err(e) if is_conditional_check_failed(&e) => {
                // The window has passed: start a new one. If a concurrent failure already
                // did, our condition fails and the counter it wrote stands.
                let restarted = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(username, LOGIN_FAILURES)))
                    .update_expression("SET failures = :one, window_start = :now, #ttl = :exp")
                    .condition_expression("window_start <= :cutoff")
                    .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":cutoff", n(cutoff))
                    .expression_attribute_values(":exp", expires)
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await;
                match restarted {
                    Ok(out) => out.attributes,
                    Err(e) if is_conditional_check_failed(&e) => None,
                    Err(e) => return Err(DependencyError::dynamodb("UpdateItem", e)),
                }
            }
            Err(e) => return Err(DependencyError::dynamodb("UpdateItem", e)),
        };
        match attributes {
            Some(item) => {
                serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("login failures: {e}")))
            }
            None => Ok(LoginFailures { failures: 1, window_start: Some(now) }),
        }
    }

    /// Resets the failure counter after a successful login.
    pub async fn clear_failures(&self, username: &Username) -> Result<(), DependencyError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(username, LOGIN_FAILURES)))
            .update_expression("REMOVE failures, window_start")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if is_conditional_check_failed(&e) {
                    Ok(())
                } else {
                    Err(DependencyError::dynamodb("UpdateItem", e))
                }
            })
    }

    /// Creates an account; fails if the username is taken.
    pub async fn create(&self, username: &Username, user: &UserRecord) -> Result<(), UserWriteError> {
        let item = ProfileItem { pk: username.as_str().to_owned(), sk: PROFILE.to_owned(), user: user.clone() };
        let item = serde_dynamo::to_item(&item).map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                if is_conditional_check_failed(&e) {
                    UserWriteError::AlreadyExists
                } else {
                    DependencyError::dynamodb("PutItem", e).into()
                }
            })
    }

    /// Reads an account (strongly consistent).
    pub async fn get(&self, username: &Username) -> Result<Option<UserRecord>, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(username, PROFILE)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("GetItem", e))?;
        out.item.map(profile).transpose()
    }

    /// Applies an account change in one conditional write: the change itself, a new
    /// version (and sessions epoch, if it ends sessions), and the cut-off `not_before`
    /// (kept if a concurrent change already set a later one). Returns the account as
    /// written: the commit point every login and rotation is ordered against.
    pub async fn change(
        &self,
        username: &Username,
        change: &AccountChange,
        not_before: u64,
    ) -> Result<UserRecord, UserWriteError> {
        for raise_cut_off in [true, false] {
            let mut set = vec![];
            if raise_cut_off {
                set.push("not_before = :nb");
            }
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(username, PROFILE)))
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::AllNew);
            match change {
                AccountChange::SetScopes(scopes) => {
                    set.push("scopes = :scopes");
                    let list = AttributeValue::L(scopes.iter().cloned().map(AttributeValue::S).collect());
                    request = request.expression_attribute_values(":scopes", list);
                }
                AccountChange::Disable => {
                    set.push("#status = :disabled");
                    request = request
                        .expression_attribute_names("#status", "status")
                        .expression_attribute_values(":disabled", AttributeValue::S("disabled".into()));
                }
                AccountChange::EndSessions => {}
            }
            let add = if change.ends_sessions() { "ADD version :one, sessions_epoch :one" } else { "ADD version :one" };
            let update = if set.is_empty() { add.to_owned() } else { format!("SET {} {add}", set.join(", ")) };
            let condition = if raise_cut_off {
                request = request.expression_attribute_values(":nb", n(not_before));
                "attribute_exists(#pk) AND (attribute_not_exists(not_before) OR not_before < :nb)"
            } else {
                "attribute_exists(#pk)"
            };
            match request.update_expression(update).condition_expression(condition).send().await {
                Ok(out) => {
                    let item = out.attributes.ok_or_else(|| DependencyError::Corrupt("no account returned".into()))?;
                    return Ok(profile(item)?);
                }
                // A later cut-off is already there (or no such account: found out below).
                Err(e) if is_conditional_check_failed(&e) => continue,
                Err(e) => return Err(DependencyError::dynamodb("UpdateItem", e).into()),
            }
        }
        Err(UserWriteError::NotFound)
    }
}

fn profile(item: HashMap<String, AttributeValue>) -> Result<UserRecord, DependencyError> {
    let profile: ProfileItem =
        serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("user profile: {e}")))?;
    Ok(profile.user)
}

/// The key of an account's profile item, for a condition another table's write checks.
pub(crate) fn profile_key(username: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(username.to_owned())),
        (SK.to_owned(), AttributeValue::S(PROFILE.to_owned())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_only_at_the_limit_and_within_the_window() {
        let f = |failures, start| LoginFailures { failures, window_start: Some(start) };
        assert_eq!(f(4, 1000).lockout_remaining(1010, 5, 900), None);
        assert_eq!(f(5, 1000).lockout_remaining(1010, 5, 900), Some(890));
        assert_eq!(f(5, 1000).lockout_remaining(1900, 5, 900), None);
        assert_eq!(LoginFailures { failures: 0, window_start: None }.lockout_remaining(1010, 5, 900), None);
    }
}
