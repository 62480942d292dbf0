//! The per-source counters of login and refresh ([`crate::rules::limits`]): one item per
//! bucket in the Limits table, counted by one conditional `UpdateItem` per check, so N
//! concurrent checks of a bucket of `max` admit exactly `max` (DynamoDB serialises writes
//! to an item; there is no read before the write to race with).

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::is_conditional_check_failed;
use super::schema::{LIMITS_PARTITION_KEY, TTL_ATTRIBUTE};
use crate::error::DependencyError;
use crate::rules::limits::LimitCheck;

/// Why a check could not be made.
#[derive(Debug)]
pub enum LimitFailure {
    /// DynamoDB did not answer (connection refused, timeout): the same endpoint serves
    /// every other call of the request, which would fail as well.
    Unreachable(DependencyError),
    /// DynamoDB answered, refusing this call (no such table, access denied, the item
    /// throttled): a fault of the limit alone.
    Refused(DependencyError),
}

/// The Limits table.
#[derive(Debug, Clone)]
pub struct DynamoLimits {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLimits {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    /// Counts one request against the check's bucket: `Ok(Ok(()))` if it was below its
    /// limit (and now holds one more), `Ok(Err(retry_after))` if it is full (nothing
    /// written; a refused conditional write still costs one write unit).
    pub async fn take(&self, check: &LimitCheck) -> Result<Result<(), Duration>, LimitFailure> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LIMITS_PARTITION_KEY, AttributeValue::S(check.bucket.clone()))
            .update_expression("ADD hits :one SET #ttl = :expires")
            .condition_expression("attribute_not_exists(hits) OR hits < :max")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":max", AttributeValue::N(check.max.to_string()))
            .expression_attribute_values(":expires", AttributeValue::N(check.expires_at.to_string()))
            .send()
            .await;
        match counted {
            Ok(_) => Ok(Ok(())),
            Err(e) if is_conditional_check_failed(&e) => Ok(Err(check.retry_after)),
            Err(e @ SdkError::ServiceError(_)) => {
                Err(LimitFailure::Refused(DependencyError::dynamodb("UpdateItem", e)))
            }
            Err(e) => Err(LimitFailure::Unreachable(DependencyError::dynamodb("UpdateItem", e))),
        }
    }
}
