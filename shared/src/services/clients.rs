//! The client registry's operations (`authctl clients`, the deployment's registration of
//! the first-party app): register, list, show, disable, rotate a secret.
//!
//! The rules (default grants, what a public client may have, which JWKS is usable, how a
//! rotation keeps two secrets) are in [`crate::rules::clients`]; this reads, asks them, and
//! writes. A new secret is handed back once and never stored or logged as itself.

use std::fmt;
use std::sync::Arc;

use crate::error::DependencyError;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::rules::clients::{ClientRecord, ClientRefusal, ClientSecret, ClientSpec, ClientType};
use crate::services::revoke::Revoker;
use crate::store::{ClientWriteError, DynamoClients};

/// Why a registry operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request itself is refused (a bad id, grant, JWKS, ...).
    #[error(transparent)]
    Refused(#[from] ClientRefusal),
    /// `add` of an id already registered.
    #[error("client {0} already exists")]
    Exists(String),
    /// An operation on an id not registered.
    #[error("no client {0}")]
    NotFound(String),
    /// The deployment has no Clients table configured.
    #[error("CLIENTS_TABLE is not set: this deployment has no client registry")]
    NoRegistry,
    /// DynamoDB failed; nothing, or only the idempotent first step, was written.
    #[error("DynamoDB failed: {0}")]
    Dependency(#[from] DependencyError),
}

/// A client as registered, and the secret made for it (shown once).
pub struct Registered {
    /// The stored record (hashes only).
    pub client: ClientRecord,
    /// The new secret, for a confidential client without keys.
    pub secret: Option<ClientSecret>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered").field("client", &self.client).finish_non_exhaustive()
    }
}

/// What a disable did.
#[derive(Debug, Clone)]
pub struct Disabled {
    /// The record as it now is.
    pub client: ClientRecord,
    /// Tokens of the client issued before this (Unix seconds) are refused.
    pub not_before: u64,
}

/// The registry's operations over the Clients table.
#[derive(Clone)]
pub struct ClientRegistry {
    clients: Option<DynamoClients>,
    revoker: Revoker,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRegistry").field("clients", &self.clients).finish_non_exhaustive()
    }
}

impl ClientRegistry {
    /// The registry a deployment configured (`CLIENTS_TABLE`; revocations for a disable).
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client, clock: Arc<dyn Clock>) -> Self {
        let clients =
            (!config.clients_table.is_empty()).then(|| DynamoClients::new(dynamodb.clone(), &config.clients_table));
        Self { clients, revoker: Revoker::new(config, dynamodb, clock.clone()), clock }
    }

    fn table(&self) -> Result<&DynamoClients, RegistryError> {
        self.clients.as_ref().ok_or(RegistryError::NoRegistry)
    }

    /// Registers a new client; [`RegistryError::Exists`] if the id is taken (nothing
    /// changes then).
    pub async fn add(&self, spec: ClientSpec) -> Result<Registered, RegistryError> {
        let table = self.table()?;
        let (client, secret) = spec.register(self.clock.now())?;
        match table.create(&client).await {
            Ok(()) => Ok(Registered { client, secret }),
            Err(ClientWriteError::Conflict(_)) => Err(RegistryError::Exists(client.client_id)),
            Err(ClientWriteError::Dependency(e)) => Err(e.into()),
        }
    }

    /// Registers the deployment's first-party app as a public client with the refresh
    /// grant and `audience` unless an item for it exists (kept as it is: an operator may
    /// have changed or disabled it). Whether it was created now.
    pub async fn ensure_first_party(&self, client_id: &str, audience: &str) -> Result<bool, RegistryError> {
        let spec = ClientSpec {
            client_id: client_id.to_owned(),
            client_type: ClientType::Public,
            grants: Vec::new(),
            scopes: Vec::new(),
            audiences: vec![audience.to_owned()],
            jwks: None,
            token_ttl_secs: None,
        };
        match self.add(spec).await {
            Ok(_) => Ok(true),
            Err(RegistryError::Exists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every registered client, by id.
    pub async fn list(&self) -> Result<Vec<ClientRecord>, RegistryError> {
        Ok(self.table()?.list().await?)
    }

    /// One client, read strongly consistent.
    pub async fn show(&self, client_id: &str) -> Result<ClientRecord, RegistryError> {
        self.table()?.get(client_id, true).await?.ok_or_else(|| RegistryError::NotFound(client_id.to_owned()))
    }

    /// Disables a client and ends what it holds. First the client's denylist entry (so every
    /// warm authorizer refuses its tokens, issued to it or exchanged by it, within the
    /// revocation lag; if this write fails nothing has changed and the call can be
    /// repeated), then the item's status (the commit point: from it on the token endpoint
    /// and introspection refuse the client, so its sessions cannot refresh). Repeating a
    /// disable moves the cut-off to now and keeps the first `disabled_at`.
    pub async fn disable(&self, client_id: &str) -> Result<Disabled, RegistryError> {
        let table = self.table()?;
        let client = self.show(client_id).await?;
        let now = self.clock.now();
        let not_before = self.revoker.cut_off_client(client_id, client.token_ttl_secs, now).await?;
        let client =
            table.disable(client_id, now).await?.ok_or_else(|| RegistryError::NotFound(client_id.to_owned()))?;
        Ok(Disabled { client, not_before })
    }

    /// Gives an active confidential client a new secret; the current one stays valid for
    /// `previous_valid_for_secs` (0: it ends now), any older one ends now. The new secret
    /// is handed back once.
    pub async fn rotate_secret(
        &self,
        client_id: &str,
        previous_valid_for_secs: u64,
    ) -> Result<Registered, RegistryError> {
        let table = self.table()?;
        let mut client = self.show(client_id).await?;
        if client.client_type != ClientType::Confidential || client.jwks.is_some() {
            return Err(ClientRefusal::NoSecret(client_id.to_owned()).into());
        }
        if !client.is_active() {
            return Err(ClientRefusal::Disabled(client_id.to_owned()).into());
        }
        let secret = ClientSecret::new();
        client.rotate_secret(&secret, self.clock.now(), previous_valid_for_secs);
        match table.set_secrets(client_id, &client.secrets).await {
            Ok(()) => Ok(Registered { client, secret: Some(secret) }),
            Err(ClientWriteError::Conflict(_)) => Err(ClientRefusal::Disabled(client_id.to_owned()).into()),
            Err(ClientWriteError::Dependency(e)) => Err(e.into()),
        }
    }
}
