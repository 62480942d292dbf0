//! Who is calling the token endpoint or introspection (RFC 6749 §2.3): the client the
//! request names, authenticated by the one method it used, read from the registry.
//!
//! Every failure is the same `invalid_client` (unknown, disabled, wrong or expired secret,
//! bad assertion, a confidential client presenting nothing, a public client presenting a
//! secret), so a caller learns nothing about which ids exist. The deployment's own client
//! (`CLIENT_ID`, `first-party`) is a public client with the refresh grant until the
//! registry holds an item for it; once it does, the item rules (a disable ends it).
//!
//! A client with a registered JWKS authenticates only by `private_key_jwt`
//! ([`crate::rules::client_assertion`]), its assertion's `jti` recorded once in the Proofs
//! table; a client with secrets only by `client_secret_basic` or `client_secret_post`.

use std::fmt;

use crate::error::{ApiError, DependencyError};
use crate::platform::config::Config;
use crate::rules::client_assertion::{unverified_subject, verify_assertion, AssertionCheck};
use crate::rules::clients::{is_valid_client_id, ClientRecord, ClientType};
use crate::store::{DynamoClients, DynamoProofs, ProofUse};

/// How a request authenticates its client: exactly one method (RFC 6749 §2.3.1 forbids
/// more), read by [`crate::edge::http`].
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// No authentication (`none`): a public client naming itself with `client_id`, or
    /// naming nobody (the first-party app's requests from before the registry).
    None {
        /// The `client_id` parameter, if any.
        client_id: Option<String>,
    },
    /// `client_secret_basic`: `Authorization: Basic`, id and secret form-decoded.
    SecretBasic {
        /// The client id.
        client_id: String,
        /// The secret as presented.
        secret: String,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    SecretPost {
        /// The client id.
        client_id: String,
        /// The secret as presented.
        secret: String,
    },
    /// `private_key_jwt` (RFC 7523 §2.2): a signed assertion.
    PrivateKeyJwt {
        /// The `client_id` parameter, if sent (it must then equal the assertion's `sub`).
        client_id: Option<String>,
        /// The `client_assertion` JWT.
        assertion: String,
    },
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

impl ClientCredentials {
    /// The RFC 8414 name of the method.
    pub fn method(&self) -> &'static str {
        match self {
            Self::None { .. } => "none",
            Self::SecretBasic { .. } => "client_secret_basic",
            Self::SecretPost { .. } => "client_secret_post",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// The `invalid_client` answer for this method (`WWW-Authenticate: Basic` after Basic).
    pub fn refused(&self) -> ApiError {
        ApiError::InvalidClient { basic: matches!(self, Self::SecretBasic { .. }) }
    }
}

/// Authenticates clients against the registry.
#[derive(Debug, Clone)]
pub struct ClientAuthenticator {
    clients: Option<DynamoClients>,
    own_client_id: String,
    /// Where assertions' `jti`s are recorded (`PROOFS_TABLE`); none: no assertion is accepted.
    assertions: Option<DynamoProofs>,
    issuer: String,
    leeway_secs: u64,
}

impl ClientAuthenticator {
    /// The authenticator a deployment configured: `CLIENTS_TABLE` (none: only the
    /// deployment's own public client exists).
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        let clients =
            (!config.clients_table.is_empty()).then(|| DynamoClients::new(dynamodb.clone(), &config.clients_table));
        let proofs_table = &config.dpop.proofs_table;
        Self {
            clients,
            own_client_id: config.client_id.clone(),
            assertions: (!proofs_table.is_empty()).then(|| DynamoProofs::new(dynamodb, proofs_table)),
            issuer: config.issuer.clone(),
            leeway_secs: config.token_leeway.as_secs(),
        }
    }

    /// The deployment's own client id (`CLIENT_ID`): who a request naming no client is.
    pub fn own_client_id(&self) -> &str {
        &self.own_client_id
    }

    /// The registered client `client_id`, read strongly consistent (a disable is seen at
    /// once); the deployment's own client as a public client when it is not registered.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, DependencyError> {
        if !is_valid_client_id(client_id) {
            return Ok(None);
        }
        let stored = match &self.clients {
            Some(clients) => clients.get(client_id, true).await?,
            None => None,
        };
        Ok(stored.or_else(|| (client_id == self.own_client_id).then(|| self.own_client())))
    }

    /// The deployment's own client as it is when not registered: public, the refresh grant.
    fn own_client(&self) -> ClientRecord {
        ClientRecord::public(&self.own_client_id, Vec::new(), Vec::new(), 0)
    }

    /// The active client `credentials` prove, or `invalid_client`.
    pub async fn authenticate(&self, credentials: &ClientCredentials, now: u64) -> Result<ClientRecord, ApiError> {
        let refused = || credentials.refused();
        let client_id = match credentials {
            ClientCredentials::None { client_id } => client_id.clone().unwrap_or_else(|| self.own_client_id.clone()),
            ClientCredentials::SecretBasic { client_id, .. } | ClientCredentials::SecretPost { client_id, .. } => {
                client_id.clone()
            }
            // RFC 7523 §3: the assertion's `sub` is the client; a `client_id` sent beside
            // it must be the same (checked with the claims).
            ClientCredentials::PrivateKeyJwt { client_id, assertion } => {
                match client_id.clone().or_else(|| unverified_subject(assertion)) {
                    Some(id) => id,
                    None => return Err(refused()),
                }
            }
        };
        let client = self.client(&client_id).await?;
        let Some(client) = client.filter(ClientRecord::is_active) else { return Err(refused()) };
        let proven = match (credentials, client.client_type, client.jwks.as_deref()) {
            (ClientCredentials::None { .. }, ClientType::Public, _) => true,
            (
                ClientCredentials::SecretBasic { secret, .. } | ClientCredentials::SecretPost { secret, .. },
                ClientType::Confidential,
                None,
            ) => client.secret_matches(secret, now),
            (ClientCredentials::PrivateKeyJwt { assertion, .. }, ClientType::Confidential, Some(jwks)) => {
                self.assertion_holds(&client.client_id, assertion, jwks, now).await?
            }
            _ => false,
        };
        if proven {
            Ok(client)
        } else {
            tracing::info!(client_id = %client.client_id, method = credentials.method(), "client authentication refused");
            Err(refused())
        }
    }

    /// Whether `assertion` proves `client_id` by its registered `jwks`, recording its `jti`
    /// (a second use within its life is refused, on any instance).
    async fn assertion_holds(
        &self,
        client_id: &str,
        assertion: &str,
        jwks: &str,
        now: u64,
    ) -> Result<bool, DependencyError> {
        let check = AssertionCheck { client_id, issuer: &self.issuer, now, leeway: self.leeway_secs };
        let verified = match verify_assertion(assertion, jwks, &check) {
            Ok(verified) => verified,
            Err(rejection) => {
                tracing::info!(client_id = %client_id, rejection = rejection.class(), "client assertion refused");
                return Ok(false);
            }
        };
        let Some(ledger) = &self.assertions else {
            tracing::warn!(client_id = %client_id, "no PROOFS_TABLE: client assertions cannot be checked for replay");
            return Ok(false);
        };
        match ledger.record(&verified.replay_key(), verified.remember_until(self.leeway_secs), now).await? {
            ProofUse::First => Ok(true),
            ProofUse::Replayed => {
                tracing::warn!(client_id = %client_id, "client assertion replayed");
                Ok(false)
            }
        }
    }
}
