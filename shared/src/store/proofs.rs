//! The Proofs table: one item per accepted DPoP proof (`<jkt>#<jti>`), written by one
//! conditional `PutItem`, so a proof is accepted once however many instances see it
//! (DynamoDB serialises writes to an item), and gone by TTL when its window has passed.

use aws_sdk_dynamodb::types::AttributeValue;

use super::is_conditional_check_failed;
use super::schema::{PROOFS_PARTITION_KEY, TTL_ATTRIBUTE};
use crate::error::DependencyError;

/// Whether a proof was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofUse {
    /// Recorded now: the first use.
    First,
    /// Recorded before, within its window: a replay.
    Replayed,
}

/// The Proofs table.
#[derive(Debug, Clone)]
pub struct DynamoProofs {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoProofs {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    /// Records the use of the proof `replay_key` until `expires_at` (Unix seconds), unless
    /// it is recorded already. An item past its TTL that DynamoDB has not yet deleted is
    /// not a replay: its window is over, and the proof itself is refused as stale.
    pub async fn record(&self, replay_key: &str, expires_at: u64, now: u64) -> Result<ProofUse, DependencyError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PROOFS_PARTITION_KEY, AttributeValue::S(replay_key.to_owned()))
            .item(TTL_ATTRIBUTE, AttributeValue::N(expires_at.to_string()))
            .condition_expression("attribute_not_exists(#key) OR #ttl < :now")
            .expression_attribute_names("#key", PROOFS_PARTITION_KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(ProofUse::First),
            Err(e) if is_conditional_check_failed(&e) => Ok(ProofUse::Replayed),
            Err(e) => Err(DependencyError::dynamodb("PutItem", e)),
        }
    }
}
