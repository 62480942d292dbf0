//! The Keys table: the signing key set as one item (`id` = `signing`), and the encrypted
//! sealing secret of refresh-token successors (`id` = `sealing`). One strongly
//! consistent `GetItem` tells a verifier every key it trusts and a signer the key it signs
//! with, public keys included, so no function needs KMS to learn a key or to trust the set.
//! Every change is a
//! `PutItem` conditional on the version it read: two changes made from the same set
//! (two rotation runs at once) cannot both land. The item carries a signature over the set
//! (`signature`); this repository stores and returns it, the services check it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::is_conditional_check_failed;
use super::schema::KEYS_PARTITION_KEY;
use crate::error::DependencyError;
use crate::rules::keys::set::KeySet;

/// The one item's key.
const SIGNING_SET: &str = "signing";

/// The attribute of the set's item that holds its signature.
const SIGNATURE: &str = "signature";

/// The key set as the table holds it, before its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeySet {
    /// The set.
    pub set: KeySet,
    /// The ECDSA P-256 signature (DER) its writer made over [`KeySet::authenticated_bytes`]
    /// with the key set's KMS signing key; none on a set written by hand.
    pub signature: Option<Vec<u8>>,
}

/// The item of the sealing secret (encrypted under KMS; see [`crate::services::keys::sealing`]).
const SEALING: &str = "sealing";

/// The key set in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoKeys {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoKeys {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The key set as stored, strongly consistent, with the signature its writer made over
    /// it; the empty set (version 0, no signature) if none was written yet. Not yet checked:
    /// callers go through [`crate::services::keys::AuthenticatedKeys`], which trusts only a
    /// set whose signature verifies.
    pub async fn read(&self) -> Result<StoredKeySet, DependencyError> {
        match self.item(SIGNING_SET).await? {
            None => Ok(StoredKeySet { set: KeySet::default(), signature: None }),
            Some(mut item) => {
                item.remove(KEYS_PARTITION_KEY);
                let signature = match item.remove(SIGNATURE) {
                    None => None,
                    Some(AttributeValue::B(blob)) => Some(blob.into_inner()),
                    Some(_) => return Err(DependencyError::Corrupt("key set: its signature is not binary".to_owned())),
                };
                let set =
                    serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("key set: {e}")))?;
                Ok(StoredKeySet { set, signature })
            }
        }
    }

    /// One item of the table by its id, strongly consistent.
    async fn item(&self, id: &str) -> Result<Option<HashMap<String, AttributeValue>>, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEYS_PARTITION_KEY, AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("GetItem", e))?;
        Ok(out.item)
    }

    /// Writes `set` with its `signature` if the stored set is still at `read_version` (0: none
    /// stored). `Ok(false)`: another change landed first; read again and decide again.
    pub async fn replace(&self, set: &KeySet, signature: &[u8], read_version: u64) -> Result<bool, DependencyError> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(set).map_err(|e| DependencyError::Internal(format!("key set: {e}")))?;
        item.insert(KEYS_PARTITION_KEY.to_owned(), AttributeValue::S(SIGNING_SET.to_owned()));
        item.insert(SIGNATURE.to_owned(), AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(signature)));
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let request = if read_version == 0 {
            request
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", KEYS_PARTITION_KEY)
        } else {
            request
                .condition_expression("version = :read")
                .expression_attribute_values(":read", AttributeValue::N(read_version.to_string()))
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(DependencyError::dynamodb("PutItem", e)),
        }
    }

    /// The encrypted sealing secret, if one was made.
    pub async fn sealing_ciphertext(&self) -> Result<Option<Vec<u8>>, DependencyError> {
        match self.item(SEALING).await?.as_ref().and_then(|item| item.get("ciphertext")) {
            None => Ok(None),
            Some(AttributeValue::B(blob)) => Ok(Some(blob.as_ref().to_vec())),
            Some(_) => Err(DependencyError::Corrupt("sealing secret: ciphertext is not binary".to_owned())),
        }
    }

    /// Stores the encrypted sealing secret unless one exists; whether this call stored it.
    pub async fn put_sealing_ciphertext(&self, ciphertext: &[u8]) -> Result<bool, DependencyError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEYS_PARTITION_KEY, AttributeValue::S(SEALING.to_owned()))
            .item("ciphertext", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(ciphertext)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", KEYS_PARTITION_KEY)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(DependencyError::dynamodb("PutItem", e)),
        }
    }
}
