//! The Users table, one partition per normalised username: the account (`sk = "profile"`)
//! and the devices that logged in before (`sk = "device#<hash of its token>"`), each with
//! a failed-login counter of its own and an expiry that every login from it renews (a
//! change that ends every session forgets them: [`DynamoUsers::forget_devices`]). The
//! username's own failed-login counter (`sk = "login_failures"`, for unknown usernames
//! too) lives in a partition named by a hash of the username, never by the name.
//!
//! A login attempt is reserved on a counter before its password is checked
//! ([`DynamoUsers::reserve_attempt`], one conditional write), so however many guesses run at
//! once, at most the limit reach the password check.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::is_conditional_check_failed;
use super::schema::{TTL_ATTRIBUTE, USERS_PARTITION_KEY as PK, USERS_SORT_KEY as SK};
use crate::error::DependencyError;
use crate::platform::retry;
use crate::rules::login::{CounterRefusal, LockoutWindow};
use crate::rules::records::{AccountChange, UserRecord};
use crate::rules::username::Username;

const PROFILE: &str = "profile";
const LOGIN_FAILURES: &str = "login_failures";
const DEVICE: &str = "device#";

/// How many device expiries [`DynamoUsers::forget_devices`] sends at once.
const DEVICE_EXPIRY_CONCURRENCY: usize = 8;

/// Whose failed-login counter an attempt is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCounter<'a> {
    /// The username's: every attempt from a device that has not logged in before.
    Username,
    /// A device that logged in successfully before (OWASP's device cookie), by the hash of
    /// its token: a stranger's guesses against the username do not lock it out.
    Device(&'a str),
}

impl AttemptCounter<'_> {
    fn sort_key(&self) -> String {
        match self {
            Self::Username => LOGIN_FAILURES.to_owned(),
            Self::Device(hash) => format!("{DEVICE}{hash}"),
        }
    }

    /// The counter's item: a device's under the username it logged in as (it exists only
    /// for an account); the username's under [`failures_partition`], never the name.
    fn key(&self, username: &Username) -> HashMap<String, AttributeValue> {
        match self {
            Self::Username => key_of(&failures_partition(username), LOGIN_FAILURES),
            Self::Device(_) => key(username, &self.sort_key()),
        }
    }
}

/// The partition of a username's failed-login counter: `failures#` and a SHA-256 of the
/// normalised username, not the name. A counter exists for every name anyone tried, and
/// people type passwords into the username field; and once an account is erased, a failed
/// login with its name must not store the name again.
fn failures_partition(username: &Username) -> String {
    use base64::Engine as _;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"tokenauth login failures\0");
    ctx.update(username.as_str().as_bytes());
    format!("failures#{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.finish().as_ref()))
}

/// A failed-login counter (the username's or a device's) within its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    /// Failures counted in this window.
    #[serde(default)]
    pub failures: u32,
    /// When the window began (Unix seconds); absent after a successful login reset it.
    #[serde(default)]
    pub window_start: Option<u64>,
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
    key_of(username.as_str(), sort)
}

fn key_of(username: &str, sort: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(username.to_owned())),
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

    /// Reserves one login attempt on `counter` before the password is checked: one
    /// conditional write that counts it if the counter is under `max` in its window (or
    /// starts a new window), and refuses it otherwise with the time until the window ends.
    /// A failed attempt stays counted; a successful login clears the counter
    /// ([`DynamoUsers::after_login`]). A device counter must exist (the device is known).
    pub async fn reserve_attempt(
        &self,
        username: &Username,
        counter: AttemptCounter<'_>,
        now: u64,
        window: LockoutWindow,
    ) -> Result<Result<(), std::time::Duration>, DependencyError> {
        let LockoutWindow { max, window_secs } = window;
        let cutoff = window.cutoff(now);
        let device = matches!(counter, AttemptCounter::Device(_));
        // The username's counter expires with its window; a device keeps its own lifetime.
        let ttl = if device { "" } else { ", #ttl = :exp" };
        let exists = if device { " AND attribute_exists(#pk)" } else { "" };
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            let counted = self
                .counter_update(username, counter, now, window_secs)
                .update_expression(format!(
                    "SET failures = if_not_exists(failures, :zero) + :one, \
                     window_start = if_not_exists(window_start, :now){ttl}"
                ))
                .condition_expression(format!(
                    "(attribute_not_exists(window_start) OR window_start > :cutoff) \
                     AND (attribute_not_exists(failures) OR failures < :max){exists}"
                ))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":cutoff", n(cutoff))
                .expression_attribute_values(":max", n(u64::from(max)))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let old = match counted {
                Ok(_) => return Ok(Ok(())),
                Err(e) if is_conditional_check_failed(&e) => match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                },
                Err(e) => return Err(DependencyError::dynamodb("UpdateItem", e)),
            };
            let old: Option<LoginFailures> = old
                .map(serde_dynamo::from_item)
                .transpose()
                .map_err(|e| DependencyError::Corrupt(format!("login failures: {e}")))?;
            if let CounterRefusal::Throttled(retry_after) = window.refused(old.and_then(|o| o.window_start), now) {
                return Ok(Err(retry_after));
            }
            // The window has passed: start a new one with this attempt (unless a concurrent
            // attempt just did; then count on in the loop).
            let restarted = self
                .counter_update(username, counter, now, window_secs)
                .update_expression(format!("SET failures = :one, window_start = :now{ttl}"))
                .condition_expression(format!("window_start <= :cutoff{exists}"))
                .expression_attribute_values(":cutoff", n(cutoff))
                .send()
                .await;
            match restarted {
                Ok(_) => return Ok(Ok(())),
                Err(e) if is_conditional_check_failed(&e) => continue,
                Err(e) => return Err(DependencyError::dynamodb("UpdateItem", e)),
            }
        }
        Ok(Err(std::time::Duration::from_secs(1)))
    }

    /// Gives back an attempt reserved by [`DynamoUsers::reserve_attempt`] that did not
    /// fail on the password (a scope beyond the user's, DynamoDB or KMS failing after the
    /// check), so an outage does not lock users out. Best effort: a counter that cannot be
    /// given back expires with its window.
    pub async fn release_attempt(&self, username: &Username, counter: AttemptCounter<'_>) {
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter.key(username)))
            .update_expression("SET failures = failures - :one")
            .condition_expression("failures > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        if let Err(e) = released {
            if !is_conditional_check_failed(&e) {
                tracing::warn!(error = %DependencyError::dynamodb("UpdateItem", e), "could not give back a login attempt");
            }
        }
    }

    fn counter_update(
        &self,
        username: &Username,
        counter: AttemptCounter<'_>,
        now: u64,
        window_secs: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter.key(username)))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now));
        if matches!(counter, AttemptCounter::Device(_)) {
            request = request.expression_attribute_names("#pk", PK);
        } else {
            request = request
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":exp", n(now + window_secs));
        }
        request
    }

    /// Whether the device whose token hashes to `device_hash` logged in as `username`
    /// before and has not expired.
    pub async fn device_is_known(
        &self,
        username: &Username,
        device_hash: &str,
        now: u64,
    ) -> Result<bool, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(AttemptCounter::Device(device_hash).key(username)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("GetItem", e))?;
        let expires = out.item.as_ref().and_then(|i| i.get(TTL_ATTRIBUTE)?.as_n().ok()?.parse::<u64>().ok());
        Ok(expires.is_some_and(|at| at > now))
    }

    /// What a successful login writes in its family's transaction: the counter it was
    /// charged to cleared, and a trusted device until `device_expires_at`: a known device
    /// (the counter charged) has its trust renewed, a new one (its token's hash) is added.
    pub fn after_login(
        &self,
        username: &Username,
        counter: AttemptCounter<'_>,
        new_device: Option<&str>,
        device_expires_at: u64,
        now: u64,
    ) -> Result<Vec<TransactWriteItem>, DependencyError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| DependencyError::Corrupt(e.to_string());
        let mut clear = Update::builder()
            .table_name(&self.table)
            .set_key(Some(counter.key(username)))
            .update_expression("REMOVE failures, window_start");
        if matches!(counter, AttemptCounter::Device(_)) {
            // Trust renews on use. The family's account guard in the same transaction
            // refuses a login decided before a change that ended the device's trust.
            clear = clear
                .update_expression("SET #ttl = :device_expires REMOVE failures, window_start")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":device_expires", n(device_expires_at));
        }
        let clear = clear.build().map_err(invalid)?;
        let mut items = vec![TransactWriteItem::builder().update(clear).build()];
        if let Some(hash) = new_device {
            // An update, not a put (the item is new either way: the token was just made):
            // login's role may write only the attributes it names (the template's
            // `dynamodb:Attributes` condition), never a whole user item.
            let remember = Update::builder()
                .table_name(&self.table)
                .set_key(Some(AttemptCounter::Device(hash).key(username)))
                .update_expression("SET #ttl = :exp, created_at = :now")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":exp", n(device_expires_at))
                .expression_attribute_values(":now", n(now))
                .build()
                .map_err(invalid)?;
            items.push(TransactWriteItem::builder().update(remember).build());
        }
        Ok(items)
    }

    /// Ends the trust of every device that logged in as `username` (its token is a
    /// stranger's from now on): one Query for the partition's devices still trusted, then
    /// each one's expiry set to `now`, a few at a time. Expired rather than deleted, so
    /// this needs no right to delete items of the Users table; TTL removes them later.
    pub async fn forget_devices(&self, username: &Username, now: u64) -> Result<usize, DependencyError> {
        use futures_util::StreamExt as _;
        let devices: Vec<HashMap<String, AttributeValue>> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :device)")
            .filter_expression("#ttl > :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":pk", AttributeValue::S(username.as_str().to_owned()))
            .expression_attribute_values(":device", AttributeValue::S(DEVICE.to_owned()))
            .expression_attribute_values(":now", n(now))
            .projection_expression("#pk, #sk")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DependencyError::dynamodb("Query", e))?;
        let expire = |device: HashMap<String, AttributeValue>| async move {
            let expired = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(device))
                .update_expression("SET #ttl = :now")
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match expired {
                Err(e) if !is_conditional_check_failed(&e) => Err(DependencyError::dynamodb("UpdateItem", e)),
                _ => Ok(()),
            }
        };
        let count = devices.len();
        futures_util::stream::iter(devices)
            .map(expire)
            .buffer_unordered(DEVICE_EXPIRY_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, DependencyError>>()?;
        Ok(count)
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
                AccountChange::SetPassword(hash) => {
                    set.push("password_hash = :hash");
                    request = request.expression_attribute_values(":hash", AttributeValue::S(hash.clone()));
                }
                AccountChange::Delete => {
                    set.push("#status = :deleted");
                    request = request
                        .expression_attribute_names("#status", "status")
                        .expression_attribute_values(":deleted", AttributeValue::S("deleted".into()));
                }
            }
            let add = if change.ends_sessions() { "ADD version :one, sessions_epoch :one" } else { "ADD version :one" };
            let mut update = if set.is_empty() { add.to_owned() } else { format!("SET {} {add}", set.join(", ")) };
            if matches!(change, AccountChange::Delete) {
                update.push_str(" REMOVE password_hash");
            }
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

impl DynamoUsers {
    /// The profile's part of an account change decided on the account as read (`read`,
    /// which becomes `next`): absolute values, conditioned on the account still being that
    /// one (its `user_id`), at that version and active, and, with `password_hash`, still
    /// having the hash the caller's password was verified against. For a transaction
    /// ([`crate::store::DynamoFamilies::commit_account_change`]).
    pub fn change_as_read(
        &self,
        username: &Username,
        read: &UserRecord,
        next: &UserRecord,
        password_hash: Option<&str>,
    ) -> Result<TransactWriteItem, DependencyError> {
        let mut condition = if read.version == 0 {
            "#uid = :uid AND #status = :active AND (attribute_not_exists(version) OR version = :v)".to_owned()
        } else {
            "#uid = :uid AND #status = :active AND version = :v".to_owned()
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(username, PROFILE)))
            .expression_attribute_names("#uid", "user_id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":uid", AttributeValue::S(read.user_id.clone()))
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .expression_attribute_values(":v", n(read.version))
            .expression_attribute_values(":next_v", n(next.version))
            .expression_attribute_values(":epoch", n(next.sessions_epoch))
            .expression_attribute_values(":nb", n(next.not_before));
        // Only what the change moves (the function's role may write no other attribute).
        let mut set = vec!["version = :next_v", "sessions_epoch = :epoch", "not_before = :nb"];
        if next.status != read.status {
            let status = serde_dynamo::to_attribute_value::<_, AttributeValue>(next.status)
                .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
            set.push("#status = :next_status");
            update = update.expression_attribute_values(":next_status", status);
        }
        if next.scopes != read.scopes {
            let scopes = AttributeValue::L(next.scopes.iter().cloned().map(AttributeValue::S).collect());
            set.push("scopes = :scopes");
            update = update.expression_attribute_values(":scopes", scopes);
        }
        let mut expression = format!("SET {}", set.join(", "));
        if next.password_hash.is_empty() {
            expression.push_str(" REMOVE password_hash");
        } else if next.password_hash != read.password_hash {
            expression.push_str(", password_hash = :hash");
            update = update.expression_attribute_values(":hash", AttributeValue::S(next.password_hash.clone()));
        }
        if let Some(verified) = password_hash {
            condition.push_str(" AND password_hash = :verified");
            update = update.expression_attribute_values(":verified", AttributeValue::S(verified.to_owned()));
        }
        let update = update
            .update_expression(expression)
            .condition_expression(condition)
            .build()
            .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Erases what the Users table holds under `username` for the account `user_id`, once
    /// that account is marked deleted ([`AccountChange::Delete`]): its failed-login counter
    /// and devices, then the profile itself (only if it is still that account, deleted).
    /// Returns whether the profile is gone; safe to repeat.
    pub async fn erase(&self, username: &Username, user_id: &str) -> Result<bool, UserWriteError> {
        use futures_util::StreamExt as _;
        let items: Vec<HashMap<String, AttributeValue>> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", AttributeValue::S(username.as_str().to_owned()))
            .projection_expression("#pk, #sk")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DependencyError::dynamodb("Query", e))?;
        let others =
            items.into_iter().filter(|i| i.get(SK).and_then(|v| v.as_s().ok()).is_some_and(|sk| sk != PROFILE));
        let delete = |item: HashMap<String, AttributeValue>| async move {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(item))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DependencyError::dynamodb("DeleteItem", e))
        };
        let counter = AttemptCounter::Username.key(username);
        futures_util::stream::iter(others.chain(std::iter::once(counter)))
            .map(delete)
            .buffer_unordered(DEVICE_EXPIRY_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, DependencyError>>()?;
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(username, PROFILE)))
            .condition_expression("#uid = :uid AND #status = :deleted")
            .expression_attribute_names("#uid", "user_id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":uid", AttributeValue::S(user_id.to_owned()))
            .expression_attribute_values(":deleted", AttributeValue::S("deleted".into()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(DependencyError::dynamodb("DeleteItem", e).into()),
        }
    }
}

fn profile(item: HashMap<String, AttributeValue>) -> Result<UserRecord, DependencyError> {
    let profile: ProfileItem =
        serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("user profile: {e}")))?;
    Ok(profile.user)
}

/// The key of an account's profile item, for a condition another table's write checks.
pub(crate) fn profile_key(username: &str) -> HashMap<String, AttributeValue> {
    key_of(username, PROFILE)
}
