//! The Families table: one item per refresh-token family (a login session).
//!
//! Creating a family is one transaction of two parts: a condition on the owner's account
//! (the same `user_id`, its version has not moved and it is active) and the family's put,
//! so an account change orders every login: one committed before it is cut off by it, one
//! after it sees it. Rotating a family is one conditional write of the family alone (the
//! presented token is current, the family alive and as judged); the refresh reads the
//! account itself, strongly consistent, after the moment its token's `iat` is taken, so a
//! change committed after that read cuts the token off (`services::refresh`). When the
//! family's condition fails, DynamoDB returns the item as it was
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), so telling a retry from a reuse from a
//! forgery costs no second read.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::is_conditional_check_failed;
use super::schema::{FAMILIES_BY_USER_INDEX, FAMILIES_BY_USER_PARTITION_KEY, FAMILIES_PARTITION_KEY};
use crate::error::DependencyError;
use crate::platform::retry;
use crate::rules::records::{AccountState, FamilyRecord, KeptThrough, HISTORY_SLOTS};
use crate::rules::rotation::history_mark;

/// The cancellation reasons of a transaction that DynamoDB refused for throughput, not for
/// a condition or a conflict: the transaction is throttled.
const TRANSACTION_THROTTLED: [Option<&str>; 2] = [Some("ProvisionedThroughputExceeded"), Some("ThrottlingError")];

/// What a rotation attempt found.
#[derive(Debug, Clone)]
pub enum RotateOutcome {
    /// The presented token was current and the family alive and as judged: the family is
    /// now rotated.
    Rotated,
    /// The family's condition did not hold; the item as it was, if there is one.
    Refused(Option<Box<FamilyRecord>>),
}

/// Everything a rotation writes. Built by [`crate::rules::rotation`].
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// Family to rotate.
    pub family_id: &'a str,
    /// Hash of the presented (current) token.
    pub presented_hash: &'a str,
    /// Generation of the presented token.
    pub presented_generation: u32,
    /// Hash of the successor.
    pub successor_hash: &'a str,
    /// The successor sealed for the retry window, if the window is on.
    pub sealed_successor: Option<&'a str>,
    /// Requested scopes that must all be in the family's scopes.
    pub required_scopes: &'a [String],
    /// Now, Unix seconds.
    pub now: u64,
    /// Inactivity lifetime, seconds.
    pub idle_secs: u64,
    /// The account version the family followed when it was judged: a family that has
    /// followed another one since (an account change that kept it, a concurrent
    /// rotation's follow) refuses the write, so a rotation never carries it backwards.
    pub judged_version: u64,
    /// The account as the family must now follow it, if it moved since the family last
    /// looked (narrowed scopes, new version and cut-off, written with the rotation).
    pub follow: Option<&'a AccountState>,
    /// The DPoP key (thumbprint) the refresh showed a proof from. `None`: the family must
    /// be unbound. `Some`: the family must be unbound or bound to this key, and is bound to
    /// it from the new generation on, in the same write.
    pub proof_key: Option<&'a str>,
    /// The network the refresh came from ([`crate::rules::session_context`]), written as
    /// the session's last; `None` keeps the one recorded.
    pub network: Option<&'a str>,
    /// The user-agent family the refresh came from, written as the session's last; `None`
    /// keeps the one recorded.
    pub user_agent: Option<&'a str>,
}

/// The account condition of a family write: the owner's profile is still the same
/// account (its stable `user_id`: a username deleted and created again is another account),
/// still at `version` and active.
#[derive(Debug, Clone, Copy)]
pub struct AccountGuard<'a> {
    /// The owner's Users key.
    pub user_key: &'a str,
    /// The owner's stable id, which the profile under that key must still carry.
    pub user_id: &'a str,
    /// The version the write was decided on.
    pub version: u64,
}

impl AccountGuard<'_> {
    /// The guard of a family as stored (`None` for a family without an owner key).
    pub fn of(family: &FamilyRecord) -> Option<AccountGuard<'_>> {
        Some(AccountGuard {
            user_key: family.user_key.as_deref()?,
            user_id: &family.user_id,
            version: family.user_version,
        })
    }

    fn condition_check(&self, users_table: &str) -> Result<TransactWriteItem, DependencyError> {
        // Accounts written before versions existed have none: that is version 0.
        let condition = if self.version == 0 {
            "#status = :active AND #uid = :uid AND (attribute_not_exists(#v) OR #v = :v)"
        } else {
            "#status = :active AND #uid = :uid AND #v = :v"
        };
        let check = ConditionCheck::builder()
            .table_name(users_table)
            .set_key(Some(crate::store::users::profile_key(self.user_key)))
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#uid", "user_id")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":uid", s(self.user_id))
            .expression_attribute_values(":v", n(self.version))
            .build()
            .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }
}

/// How an account change decided on the account as read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountCommit {
    /// Written.
    Done,
    /// The account is no longer as read (another change, another password): nothing was
    /// written.
    AccountMoved,
    /// The session to keep is no longer as read (ended, expired, rotated into another
    /// epoch): nothing was written.
    SessionEnded,
}

/// How a conditioned family write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// Written.
    Done,
    /// The account moved (or is not active): nothing was written.
    AccountChanged,
}

/// The Families table in DynamoDB (and the Users table, whose accounts its writes are
/// conditioned on).
#[derive(Debug, Clone)]
pub struct DynamoFamilies {
    client: aws_sdk_dynamodb::Client,
    table: String,
    users_table: String,
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// How a transaction ended.
enum Transacted {
    Done,
    /// A condition failed; the reason of each part, in order.
    Cancelled(Vec<CancellationReason>),
}

/// Whether part `index` of a cancelled transaction failed its condition.
fn failed(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

fn record(item: HashMap<String, AttributeValue>) -> Result<FamilyRecord, DependencyError> {
    serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("family: {e}")))
}

impl DynamoFamilies {
    /// The repository over `table`, its writes conditioned on accounts in `users_table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, users_table: impl Into<String>) -> Self {
        Self { client, table: table.into(), users_table: users_table.into() }
    }

    /// Writes a new family, if its owner's account is still at the version login decided
    /// on and active: one transaction, never overwriting an existing family, with `also`
    /// (what else a successful login writes: [`crate::store::DynamoUsers::after_login`]).
    pub async fn create(
        &self,
        family: &FamilyRecord,
        also: Vec<TransactWriteItem>,
    ) -> Result<Guarded, DependencyError> {
        let guard = AccountGuard::of(family).ok_or_else(|| DependencyError::Corrupt("family without owner".into()))?;
        let item = serde_dynamo::to_item(family).map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", FAMILIES_PARTITION_KEY)
            .build()
            .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        let mut items = vec![guard.condition_check(&self.users_table)?, TransactWriteItem::builder().put(put).build()];
        items.extend(also);
        match self.transact(items).await? {
            Transacted::Done => Ok(Guarded::Done),
            Transacted::Cancelled(reasons) if failed(&reasons, 0) => Ok(Guarded::AccountChanged),
            Transacted::Cancelled(_) => Err(DependencyError::Corrupt("a new family id already exists".into())),
        }
    }

    /// One TransactWriteItems: done, or cancelled with the reason of each part. A
    /// transaction cancelled only because another one held one of its items (DynamoDB's
    /// `TransactionConflict`: the account item is in every login and rotation of its user)
    /// is tried again a few times, a few milliseconds later, before it counts as a failure.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Transacted, DependencyError> {
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            let sent = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            match sent {
                Ok(_) => return Ok(Transacted::Done),
                Err(e) => match e.into_service_error() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        let reasons = cancelled.cancellation_reasons();
                        if reasons.iter().any(|r| r.code() == Some("ConditionalCheckFailed")) {
                            return Ok(Transacted::Cancelled(reasons.to_vec()));
                        }
                        if !reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                            let throttled = reasons.iter().any(|r| TRANSACTION_THROTTLED.contains(&r.code()));
                            let error = TransactWriteItemsError::TransactionCanceledException(cancelled);
                            if throttled {
                                let message = crate::error::error_chain(&error);
                                return Err(DependencyError::Throttled {
                                    service: "dynamodb",
                                    operation: "TransactWriteItems",
                                    message,
                                });
                            }
                            return Err(DependencyError::dynamodb("TransactWriteItems", error));
                        }
                    }
                    e => return Err(DependencyError::dynamodb("TransactWriteItems", e)),
                },
            }
        }
        Err(DependencyError::DynamoDb {
            operation: "TransactWriteItems",
            message: format!("still conflicting after {} attempts", retry::ATTEMPTS),
        })
    }

    /// Deletes a family whose token was never handed out (its access token could not be
    /// signed), so no half-created session is left behind. Conditional on the hash, so it
    /// can only ever remove the item this login wrote.
    pub async fn delete_unissued(&self, family: &FamilyRecord) -> Result<(), DependencyError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(&family.family_id))
            .condition_expression("token_hash = :hash AND generation = :zero")
            .expression_attribute_values(":hash", s(&family.token_hash))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DependencyError::dynamodb("DeleteItem", e))
    }

    /// Reads a family (strongly consistent).
    pub async fn get(&self, family_id: &str) -> Result<Option<FamilyRecord>, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(family_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("GetItem", e))?;
        out.item.map(record).transpose()
    }

    /// The one write of a refresh: replaces the current token's hash with the successor's
    /// if, and only if, the presented token is current, the family is active and not past
    /// either expiry, still follows the account version it was judged on
    /// (`r.judged_version`), every required scope was granted, and the family's DPoP
    /// binding allows `r.proof_key`. One conditional UpdateItem of the family alone (the
    /// account was read by the refresh). With `r.follow`, the family takes on the
    /// account's new state in the same write; with `r.proof_key` on an unbound family, it
    /// is bound to that key in the same write. The network and user-agent family the
    /// refresh came from are written with it.
    pub async fn rotate(&self, r: &Rotation<'_>) -> Result<RotateOutcome, DependencyError> {
        let slot = r.presented_generation as usize % HISTORY_SLOTS;
        let mut update = format!(
            "SET token_hash = :new, generation = :next, previous_hash = :old, recent[{slot}] = :old_mark, \
             rotated_at = :now, last_used_at = :now, idle_expires_at = :idle"
        );
        if r.follow.is_some() {
            update.push_str(", scopes = :scopes, user_version = :uv, not_before = :nb");
        }
        if r.proof_key.is_some() {
            update.push_str(", jkt = :jkt, bound_since = if_not_exists(bound_since, :next)");
        }
        // Where the session was last used from, in the same write: no call of its own.
        if r.network.is_some() {
            update.push_str(", #network = :network");
        }
        if r.user_agent.is_some() {
            update.push_str(", #user_agent = :user_agent");
        }
        // A new generation starts with no retry answers given.
        if r.sealed_successor.is_some() {
            update.push_str(", sealed_successor = :sealed REMOVE retries");
        } else {
            update.push_str(" REMOVE sealed_successor, retries");
        }
        let mut condition = "token_hash = :old AND generation = :gen AND #status = :active \
                             AND expires_at > :now AND idle_expires_at > :now"
            .to_owned();
        // Families written before versions existed have none: that is version 0.
        condition.push_str(if r.judged_version == 0 {
            " AND (attribute_not_exists(user_version) OR user_version = :judged)"
        } else {
            " AND user_version = :judged"
        });
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(r.family_id))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":new", s(r.successor_hash))
            .expression_attribute_values(":old", s(r.presented_hash))
            .expression_attribute_values(":old_mark", s(history_mark(r.presented_hash)))
            .expression_attribute_values(":gen", n(u64::from(r.presented_generation)))
            .expression_attribute_values(":next", n(u64::from(r.presented_generation) + 1))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":now", n(r.now))
            // Sliding, but never past the absolute expiry.
            .expression_attribute_values(":idle", n(r.now.saturating_add(r.idle_secs)))
            .expression_attribute_values(":judged", n(r.judged_version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(sealed) = r.sealed_successor {
            request = request.expression_attribute_values(":sealed", s(sealed));
        }
        if let Some(network) = r.network {
            request = request
                .expression_attribute_names("#network", "network")
                .expression_attribute_values(":network", s(network));
        }
        if let Some(user_agent) = r.user_agent {
            request = request
                .expression_attribute_names("#user_agent", "user_agent")
                .expression_attribute_values(":user_agent", s(user_agent));
        }
        // A binding is set once: a family bound meanwhile to another key (or at all, for a
        // refresh without a proof) refuses the write.
        match r.proof_key {
            Some(key) => {
                condition.push_str(" AND (attribute_not_exists(jkt) OR jkt = :jkt)");
                request = request.expression_attribute_values(":jkt", s(key));
            }
            None => condition.push_str(" AND attribute_not_exists(jkt)"),
        }
        if let Some(follow) = r.follow {
            let scopes = AttributeValue::L(follow.scopes.iter().map(|scope| s(scope)).collect());
            request = request
                .expression_attribute_values(":scopes", scopes)
                .expression_attribute_values(":uv", n(follow.user_version))
                .expression_attribute_values(":nb", n(follow.not_before));
        }
        for (i, scope) in r.required_scopes.iter().enumerate() {
            condition.push_str(&format!(" AND contains(scopes, :scope{i})"));
            request = request.expression_attribute_values(format!(":scope{i}"), s(scope));
        }
        match request.update_expression(update).condition_expression(condition).send().await {
            Ok(_) => Ok(RotateOutcome::Rotated),
            Err(e) if is_conditional_check_failed(&e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => {
                    Ok(RotateOutcome::Refused(c.item.map(record).transpose()?.map(Box::new)))
                }
                _ => Ok(RotateOutcome::Refused(None)),
            },
            Err(e) => Err(DependencyError::dynamodb("UpdateItem", e)),
        }
    }

    /// Counts one retry answer for `family`'s current generation, if it is still the
    /// generation `family` shows, alive, and under `max` answers: one conditional write, so
    /// however many retries arrive at once, at most `max` are answered. When the condition
    /// fails, the family as it now is (`ALL_OLD`).
    pub async fn count_retry(
        &self,
        family: &FamilyRecord,
        max: u32,
    ) -> Result<Result<(), Option<FamilyRecord>>, DependencyError> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(&family.family_id))
            .update_expression("ADD retries :one")
            .condition_expression(
                "token_hash = :current AND generation = :gen AND #status = :active \
                 AND (attribute_not_exists(retries) OR retries < :max)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":current", s(&family.token_hash))
            .expression_attribute_values(":gen", n(u64::from(family.generation)))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":max", n(u64::from(max)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match counted {
            Ok(_) => Ok(Ok(())),
            Err(e) if is_conditional_check_failed(&e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => Ok(Err(c.item.map(record).transpose()?)),
                _ => Ok(Err(None)),
            },
            Err(e) => Err(DependencyError::dynamodb("UpdateItem", e)),
        }
    }

    /// Revokes an active family (no-op if it is already revoked or gone). With
    /// `presented_hash`, only if that token is the family's current or a remembered one:
    /// a forged token revokes nothing. Returns the family if this call revoked it.
    pub async fn revoke(
        &self,
        family_id: &str,
        presented_hash: Option<&str>,
        reason: &str,
        now: u64,
    ) -> Result<Option<FamilyRecord>, DependencyError> {
        Ok(self.revoke_or_read(family_id, presented_hash, reason, now).await?.ok())
    }

    /// Like [`DynamoFamilies::revoke`], but when the condition fails it returns the item as
    /// it was (DynamoDB's `ALL_OLD`, no second read): a logout repeated after a failure can
    /// see whether the family is revoked and its `sid` entry still owed.
    pub async fn revoke_or_read(
        &self,
        family_id: &str,
        presented_hash: Option<&str>,
        reason: &str,
        now: u64,
    ) -> Result<Result<FamilyRecord, Option<FamilyRecord>>, DependencyError> {
        let mut condition = "#status = :active".to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(family_id))
            .update_expression(
                "SET #status = :revoked, revoked_reason = :reason, revoked_at = :now REMOVE sealed_successor",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":revoked", s("revoked"))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(hash) = presented_hash {
            condition.push_str(
                " AND (token_hash = :hash OR previous_hash = :hash OR contains(recent, :hash) \
                 OR contains(recent, :mark))",
            );
            request = request
                .expression_attribute_values(":hash", s(hash))
                .expression_attribute_values(":mark", s(history_mark(hash)));
        }
        match request.condition_expression(condition).send().await {
            Ok(out) => match out.attributes {
                Some(item) => Ok(Ok(record(item)?)),
                None => Err(DependencyError::Corrupt("no family returned".into())),
            },
            Err(e) if is_conditional_check_failed(&e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => Ok(Err(c.item.map(record).transpose()?)),
                _ => Ok(Err(None)),
            },
            Err(e) => Err(DependencyError::dynamodb("UpdateItem", e)),
        }
    }

    /// Records that the `sid` entry of a revoked family is written, so a repeated logout
    /// writes no second one.
    pub async fn mark_sid_denylisted(&self, family_id: &str) -> Result<(), DependencyError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(family_id))
            .update_expression("SET sid_denylisted = :yes")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", FAMILIES_PARTITION_KEY)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
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

    /// The kept session's part of an account change decided on the account as read
    /// ([`crate::store::DynamoUsers::change_as_read`]): the family as read (`family`) is
    /// carried into the account's new version and sessions epoch, following it
    /// (`state`), and remembers the cut-off its tokens stay held to (`kept`). Conditioned on
    /// the family being as read (active, of the old epoch and version, alive at `now`).
    pub fn keep_through(
        &self,
        family: &FamilyRecord,
        next_epoch: u64,
        state: &AccountState,
        kept: KeptThrough,
        now: u64,
    ) -> Result<TransactWriteItem, DependencyError> {
        let kept = serde_dynamo::to_attribute_value::<_, AttributeValue>(kept)
            .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        let update = Update::builder()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(&family.family_id))
            .update_expression(
                "SET user_version = :uv, sessions_epoch = :epoch, not_before = :nb, scopes = :scopes, kept = :kept",
            )
            .condition_expression(
                "#status = :active AND user_id = :uid AND sessions_epoch = :old_epoch \
                 AND user_version = :old_uv AND expires_at > :now AND idle_expires_at > :now",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":uid", s(&family.user_id))
            .expression_attribute_values(":old_epoch", n(family.sessions_epoch))
            .expression_attribute_values(":old_uv", n(family.user_version))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":uv", n(state.user_version))
            .expression_attribute_values(":epoch", n(next_epoch))
            .expression_attribute_values(":nb", n(state.not_before))
            .expression_attribute_values(":scopes", AttributeValue::L(state.scopes.iter().map(|x| s(x)).collect()))
            .expression_attribute_values(":kept", kept)
            .build()
            .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Commits an account change decided on the account as read in one transaction: the
    /// profile's part first, then the kept session's, if any, then `also` (parts without a
    /// condition: the change's denylist entry, which must land if and only if it commits).
    pub async fn commit_account_change(
        &self,
        profile: TransactWriteItem,
        kept: Option<TransactWriteItem>,
        also: Vec<TransactWriteItem>,
    ) -> Result<AccountCommit, DependencyError> {
        let keeps = kept.is_some();
        let items: Vec<TransactWriteItem> = std::iter::once(profile).chain(kept).chain(also).collect();
        match self.transact(items).await? {
            Transacted::Done => Ok(AccountCommit::Done),
            Transacted::Cancelled(reasons) if failed(&reasons, 0) => Ok(AccountCommit::AccountMoved),
            Transacted::Cancelled(reasons) if keeps && failed(&reasons, 1) => Ok(AccountCommit::SessionEnded),
            Transacted::Cancelled(_) => {
                Err(DependencyError::Internal("an account change's unconditioned part failed".into()))
            }
        }
    }

    /// Reads families by id (strongly consistent; BatchGetItem, 100 at a time, unprocessed
    /// keys asked again). Ids that name no family are left out.
    pub async fn get_many(&self, family_ids: &[String]) -> Result<Vec<FamilyRecord>, DependencyError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut families = Vec::with_capacity(family_ids.len());
        for chunk in family_ids.chunks(100) {
            let keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|id| HashMap::from([(FAMILIES_PARTITION_KEY.to_owned(), s(id))])).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| DependencyError::Corrupt(e.to_string()))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                retry::backoff(attempt).await;
                attempt += 1;
                if attempt > retry::ATTEMPTS + 2 {
                    return Err(DependencyError::DynamoDb {
                        operation: "BatchGetItem",
                        message: "keys left unprocessed".into(),
                    });
                }
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| DependencyError::dynamodb("BatchGetItem", e))?;
                for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    families.push(record(item)?);
                }
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
            }
        }
        Ok(families)
    }

    /// Deletes a family (an account's erasure): its refresh tokens are unknown from now on.
    pub async fn delete(&self, family_id: &str) -> Result<(), DependencyError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, s(family_id))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DependencyError::dynamodb("DeleteItem", e))
    }

    /// Ids of a user's most recent families (the `by_user` index, newest login first), at
    /// most `limit`.
    pub async fn recent_family_ids_of_user(&self, user_id: &str, limit: usize) -> Result<Vec<String>, DependencyError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(FAMILIES_BY_USER_INDEX)
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", FAMILIES_BY_USER_PARTITION_KEY)
            .expression_attribute_values(":u", s(user_id))
            .scan_index_forward(false)
            .set_limit(i32::try_from(limit).ok())
            .into_paginator()
            .items()
            .send();
        let mut ids = Vec::new();
        while ids.len() < limit {
            match items.next().await {
                Some(item) => {
                    let item = item.map_err(|e| DependencyError::dynamodb("Query", e))?;
                    ids.extend(item.get(FAMILIES_PARTITION_KEY).and_then(|id| id.as_s().ok()).cloned());
                }
                None => break,
            }
        }
        Ok(ids)
    }

    /// Ids of every family of a user (the `by_user` index, newest login first), all pages.
    pub async fn family_ids_of_user(&self, user_id: &str) -> Result<Vec<String>, DependencyError> {
        self.recent_family_ids_of_user(user_id, usize::MAX).await
    }
}
