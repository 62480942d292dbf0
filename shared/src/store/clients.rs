//! The Clients table: one item per registered client ([`ClientRecord`]), keyed by
//! `client_id`. Written by operators (`authctl clients`, the deployment's registration of
//! the first-party app), read by the token endpoint and introspection.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::is_conditional_check_failed;
use super::schema::CLIENTS_PARTITION_KEY as PK;
use crate::error::DependencyError;
use crate::rules::clients::{ClientRecord, ClientStatus, StoredSecret};

/// Why a registration was not written.
#[derive(Debug, thiserror::Error)]
pub enum ClientWriteError {
    /// A client with this id exists (create), or none does (an update).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// DynamoDB failed.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// The Clients table.
#[derive(Debug, Clone)]
pub struct DynamoClients {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn record(item: HashMap<String, AttributeValue>) -> Result<ClientRecord, DependencyError> {
    serde_dynamo::from_item(item).map_err(|e| DependencyError::Corrupt(format!("client: {e}")))
}

impl DynamoClients {
    /// The repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    /// Reads a client. `consistent`: strongly consistent (a disable is seen at once).
    pub async fn get(&self, client_id: &str, consistent: bool) -> Result<Option<ClientRecord>, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(client_id.to_owned()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| DependencyError::dynamodb("GetItem", e))?;
        out.item.map(record).transpose()
    }

    /// Registers a new client; [`ClientWriteError::Conflict`] if the id is taken.
    pub async fn create(&self, client: &ClientRecord) -> Result<(), ClientWriteError> {
        self.put(client, "attribute_not_exists(#pk)", "a client with this id exists").await
    }

    /// Replaces a registered client's item (a rotation, a disable, a re-registration);
    /// [`ClientWriteError::Conflict`] if it is not registered.
    pub async fn replace(&self, client: &ClientRecord) -> Result<(), ClientWriteError> {
        self.put(client, "attribute_exists(#pk)", "no client with this id").await
    }

    async fn put(
        &self,
        client: &ClientRecord,
        condition: &str,
        conflict: &'static str,
    ) -> Result<(), ClientWriteError> {
        let item = serde_dynamo::to_item(client).map_err(|e| DependencyError::Corrupt(e.to_string()))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Err(ClientWriteError::Conflict(conflict)),
            Err(e) => Err(DependencyError::dynamodb("PutItem", e).into()),
        }
    }

    /// Replaces an active client's secrets (a rotation) and nothing else, so a disable
    /// that lands between the read and this write is never undone;
    /// [`ClientWriteError::Conflict`] if it is not registered or not active.
    pub async fn set_secrets(&self, client_id: &str, secrets: &[StoredSecret]) -> Result<(), ClientWriteError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(client_id.to_owned()))
            .update_expression("SET secrets = :secrets")
            .condition_expression("attribute_exists(#pk) AND #status = :active")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":secrets",
                serde_dynamo::to_attribute_value(secrets).map_err(|e| DependencyError::Corrupt(e.to_string()))?,
            )
            .expression_attribute_values(
                ":active",
                serde_dynamo::to_attribute_value(ClientStatus::Active)
                    .map_err(|e| DependencyError::Corrupt(e.to_string()))?,
            )
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => {
                Err(ClientWriteError::Conflict("no active client with this id"))
            }
            Err(e) => Err(DependencyError::dynamodb("UpdateItem", e).into()),
        }
    }

    /// Marks a client disabled at `now` (idempotent: an earlier `disabled_at` is kept);
    /// the record as it now is, `None` if it is not registered.
    pub async fn disable(&self, client_id: &str, now: u64) -> Result<Option<ClientRecord>, DependencyError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(client_id.to_owned()))
            .update_expression("SET #status = :disabled, disabled_at = if_not_exists(disabled_at, :now)")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":disabled",
                serde_dynamo::to_attribute_value(ClientStatus::Disabled)
                    .map_err(|e| DependencyError::Corrupt(e.to_string()))?,
            )
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match update {
            Ok(out) => out.attributes.map(record).transpose(),
            Err(e) if is_conditional_check_failed(&e) => Ok(None),
            Err(e) => Err(DependencyError::dynamodb("UpdateItem", e)),
        }
    }

    /// Every registered client, by id (a scan: for operators, not for requests).
    pub async fn list(&self) -> Result<Vec<ClientRecord>, DependencyError> {
        let mut clients = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| DependencyError::dynamodb("Scan", e))?;
            for item in out.items.unwrap_or_default() {
                clients.push(record(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(clients)
    }
}
