//! The Revocations table: a denylist of access tokens (`jti`), sessions (`sid`) and users
//! (everything issued before a time), laid out so "everything revoked since T" is cheap.
//!
//! Key: `bucket` = the hour of the revocation (`h<unix hours>`), `entry` =
//! `<revoked_at in ms, 13 digits>#<kind>#<id>`. A poller that last looked at time T
//! queries the one or two hour buckets since T with `entry > "<T>"`. Every entry carries
//! `expires_at` (TTL) = the moment no token it covers can still be valid, so the table
//! holds only what still matters and a cold authorizer loads it with a few queries.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, TransactWriteItem, WriteRequest};

use super::schema::{REVOCATIONS_PARTITION_KEY, REVOCATIONS_SORT_KEY, TTL_ATTRIBUTE};
use crate::error::DependencyError;
use crate::platform::retry;
use crate::rules::records::{Revocation, RevocationKind};

/// The partition of the item that records a revoked `jti` (never an hour bucket, so the
/// feed's queries do not see it).
fn jti_key(jti: &str) -> String {
    format!("jti#{jti}")
}

/// How long [`DynamoRevocations::put`] keeps retrying unprocessed entries: well inside
/// the authorizer's re-read window ([`crate::services::revocation_feed::POLL_OVERLAP_MS`], 15 s)
/// with the SDK's 4 s per call.
const WRITE_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// The sort key of that item.
const JTI_ENTRY: &str = "revoked";

/// The partition that holds a second copy of every entry that outlives the standard
/// lifetime (a long-lived client token's `jti`, a cut-off of such a client): an
/// authorizer's first read of the last hour buckets does not reach back to it, so an
/// instance reads this partition whole when a token that old comes
/// ([`DynamoRevocations::long_lived`]).
const LONG_LIVED_PARTITION: &str = "long";

impl Revocation {
    fn bucket(revoked_at_ms: u64) -> String {
        format!("h{}", revoked_at_ms / 3_600_000)
    }

    fn entry(&self) -> String {
        format!("{:013}#{}#{}", self.revoked_at_ms, self.kind.as_str(), self.subject)
    }

    fn to_item(&self) -> Result<HashMap<String, AttributeValue>, DependencyError> {
        self.to_item_in(Self::bucket(self.revoked_at_ms))
    }

    fn to_item_in(&self, partition: String) -> Result<HashMap<String, AttributeValue>, DependencyError> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(self).map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        item.insert(REVOCATIONS_PARTITION_KEY.to_owned(), AttributeValue::S(partition));
        item.insert(REVOCATIONS_SORT_KEY.to_owned(), AttributeValue::S(self.entry()));
        item.insert(TTL_ATTRIBUTE.to_owned(), AttributeValue::N(self.expires_at.to_string()));
        Ok(item)
    }
}

/// The Revocations table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRevocations {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// An entry living longer than this past its stamp is copied into the long-lived
    /// partition ([`Config::revocation_lifetime`](crate::Config::revocation_lifetime)).
    standard_lifetime_secs: u64,
}

impl DynamoRevocations {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), standard_lifetime_secs: u64::MAX }
    }

    /// A writer that copies every entry living longer than `standard_lifetime_secs` past
    /// its stamp into the long-lived partition, where a cold authorizer finds it.
    pub fn with_standard_lifetime(mut self, standard_lifetime_secs: u64) -> Self {
        self.standard_lifetime_secs = standard_lifetime_secs;
        self
    }

    /// One entry as a part of a transaction (a `Put`), so it lands if and only if the
    /// change it belongs to commits ([`crate::store::DynamoFamilies::commit_account_change`]).
    /// Not for `jti` entries, which are two items.
    pub fn put_part(&self, entry: &Revocation) -> Result<TransactWriteItem, DependencyError> {
        if entry.kind == RevocationKind::Jti {
            return Err(DependencyError::Internal("a jti entry is two items".into()));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(entry.to_item()?))
            .build()
            .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes entries (BatchWriteItem, 25 items at a time, unprocessed items retried). An
    /// access-token entry also gets an item keyed by its `jti`, so one GetItem tells
    /// whether a token was revoked ([`DynamoRevocations::is_jti_revoked`]).
    pub async fn put(&self, entries: &[Revocation]) -> Result<(), DependencyError> {
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            items.push(entry.to_item()?);
            if entry.expires_at > (entry.revoked_at_ms / 1000).saturating_add(self.standard_lifetime_secs) {
                items.push(entry.to_item_in(LONG_LIVED_PARTITION.to_owned())?);
            }
            if entry.kind == RevocationKind::Jti {
                items.push(HashMap::from([
                    (REVOCATIONS_PARTITION_KEY.to_owned(), AttributeValue::S(jti_key(&entry.subject))),
                    (REVOCATIONS_SORT_KEY.to_owned(), AttributeValue::S(JTI_ENTRY.to_owned())),
                    (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(entry.expires_at.to_string())),
                ]));
            }
        }
        let started = std::time::Instant::now();
        for chunk in items.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map_err(|e| DependencyError::Corrupt(e.to_string()))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, DependencyError>>()?;
            for attempt in 0..retry::ATTEMPTS {
                if requests.is_empty() {
                    break;
                }
                // Entries are stamped just before this call; the authorizer re-reads
                // POLL_OVERLAP_MS behind its cursor, so a write must not land later than
                // that after its stamp. Rather fail (and be repeated, stamped anew) than
                // retry past it.
                if started.elapsed() > WRITE_BUDGET {
                    break;
                }
                retry::backoff(attempt).await;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| DependencyError::dynamodb("BatchWriteItem", e))?;
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            }
            if !requests.is_empty() {
                return Err(DependencyError::DynamoDb {
                    operation: "BatchWriteItem",
                    message: format!("{} revocations left unprocessed", requests.len()),
                });
            }
        }
        Ok(())
    }

    /// Whether the access token `jti` was revoked (its entry is still alive).
    pub async fn is_jti_revoked(&self, jti: &str) -> Result<bool, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(REVOCATIONS_PARTITION_KEY, AttributeValue::S(jti_key(jti)))
            .key(REVOCATIONS_SORT_KEY, AttributeValue::S(JTI_ENTRY.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("GetItem", e))?;
        Ok(out.item.is_some())
    }

    /// Every entry revoked after `since_ms` in the hour buckets up to the one of `now_ms`
    /// (later entries of that hour too: learning a revocation early is harmless), oldest
    /// first: one Query per hour bucket (usually one). The buckets are read at once, not in turn: a
    /// cold start whose lookback crosses the hour (about a quarter of them) would otherwise
    /// wait for two round trips before its first answer.
    pub async fn since(&self, since_ms: u64, now_ms: u64) -> Result<Vec<Revocation>, DependencyError> {
        let after = format!("{since_ms:013}$"); // '$' sorts after '#': strictly later than since_ms
        let hours = since_ms / 3_600_000..=now_ms / 3_600_000;
        let buckets = futures_util::future::try_join_all(
            hours.map(|hour| self.partition(Revocation::bucket(hour * 3_600_000), Some(&after))),
        )
        .await?;
        entries(buckets.into_iter().flatten())
    }

    /// Every entry of the long-lived partition (those that outlive the standard lifetime,
    /// whenever they were written): what an authorizer reads, once, for a token older than
    /// its first load's lookback.
    /// Entries past their `expires_at` that TTL has not removed yet come too; the
    /// authorizer's cache drops them.
    pub async fn long_lived(&self) -> Result<Vec<Revocation>, DependencyError> {
        entries(self.partition(LONG_LIVED_PARTITION.to_owned(), None).await?)
    }

    /// The items of one partition (an hour bucket, the long-lived one) whose sort key is
    /// after `after` (every item without), all pages, read strongly consistent: a write
    /// acknowledged before the poll is seen by it.
    async fn partition(
        &self,
        partition: String,
        after: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, DependencyError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#b", REVOCATIONS_PARTITION_KEY)
            .expression_attribute_values(":b", AttributeValue::S(partition))
            .consistent_read(true);
        query = match after {
            Some(after) => query
                .key_condition_expression("#b = :b AND #e > :after")
                .expression_attribute_names("#e", REVOCATIONS_SORT_KEY)
                .expression_attribute_values(":after", AttributeValue::S(after.to_owned())),
            None => query.key_condition_expression("#b = :b"),
        };
        query.into_paginator().items().send().try_collect().await.map_err(|e| DependencyError::dynamodb("Query", e))
    }
}

/// The entries of items read from the table.
fn entries(
    items: impl IntoIterator<Item = HashMap<String, AttributeValue>>,
) -> Result<Vec<Revocation>, DependencyError> {
    items
        .into_iter()
        .map(|item| serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("revocation: {e}"))))
        .collect()
}
