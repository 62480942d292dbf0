//! The Families table: one item per refresh-token family (a login session).

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::schema::FAMILIES_PARTITION_KEY;
use crate::error::DependencyError;

/// Whether a family's refresh token may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyStatus {
    /// The current token may be exchanged.
    Active,
    /// Revoked (logout, reuse detected, admin action); never active again.
    Revoked,
}

/// A refresh-token family. Holds a hash of the current token, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// Family (session) id: the `sid` claim and part of the refresh token.
    pub family_id: String,
    /// Owner (GSI `by_user`).
    pub user_id: String,
    /// The client the session was issued to.
    pub client_id: String,
    /// Scope granted at login, space-separated.
    pub scope: String,
    /// Hash of the current refresh token ([`crate::token::RefreshToken::hash`]).
    pub token_hash: String,
    /// 0 at login, +1 per rotation.
    pub generation: u64,
    /// Active or revoked.
    pub status: FamilyStatus,
    /// Login time, Unix seconds (GSI sort key).
    pub created_at: u64,
    /// Last login or refresh, Unix seconds.
    pub last_used_at: u64,
    /// The family dies if unused until then (sliding).
    pub idle_expires_at: u64,
    /// Absolute expiry, Unix seconds; also the TTL attribute.
    pub expires_at: u64,
}

/// The Families table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoFamilies {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFamilies {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Writes a new family: one PutItem that never overwrites an existing family.
    pub async fn create(&self, family: &FamilyRecord) -> Result<(), DependencyError> {
        let item = serde_dynamo::to_item(family).map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", FAMILIES_PARTITION_KEY)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DependencyError::dynamodb("PutItem", e))
    }

    /// Deletes a family whose token was never handed out (its access token could not be
    /// signed), so no half-created session is left behind. Conditional on the hash, so it
    /// can only ever remove the item this login wrote.
    pub async fn delete_unissued(&self, family: &FamilyRecord) -> Result<(), DependencyError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(FAMILIES_PARTITION_KEY, AttributeValue::S(family.family_id.clone()))
            .condition_expression("token_hash = :hash AND generation = :zero")
            .expression_attribute_values(":hash", AttributeValue::S(family.token_hash.clone()))
            .expression_attribute_values(":zero", AttributeValue::N("0".to_owned()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DependencyError::dynamodb("DeleteItem", e))
    }
}
