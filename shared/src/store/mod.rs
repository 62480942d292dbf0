//! Where state lives: DynamoDB repositories for users, refresh-token families, the
//! revocation denylist, the signing key set, the per-source request counters, the DPoP proofs seen and the registered clients.
//!
//! Item conversion goes through `serde_dynamo` in one place per table. Every call maps its
//! SDK error to a [`crate::error::DependencyError`] (a 503 for the client). These types are tested only
//! against DynamoDB Local: conditional writes are the point, and a map cannot show them.

mod clients;
mod families;
mod keys;
mod limits;
mod proofs;
mod revocations;
mod users;

pub use clients::{ClientWriteError, DynamoClients};
pub use families::{AccountCommit, AccountGuard, DynamoFamilies, Guarded, RotateOutcome, Rotation};
pub use keys::{DynamoKeys, StoredKeySet};
pub use limits::{DynamoLimits, LimitFailure};
pub use proofs::{DynamoProofs, ProofUse};
pub use revocations::DynamoRevocations;
pub use users::{AttemptCounter, DynamoUsers, LoginFailures, UserWriteError};

/// The records these repositories read and write (defined with the rules that decide
/// over them).
pub use crate::rules::records::{
    AccountChange, AccountState, FamilyRecord, FamilyStatus, KeptThrough, Revocation, RevocationKind, UserRecord,
    UserStatus, HISTORY_SLOTS,
};

/// Table layouts the code relies on. `infra/template.yaml` must declare the same keys,
/// indexes and TTL attributes; a test compares the two, and DynamoDB Local's tables.
pub mod schema {
    /// Users: partition key (normalised username).
    pub const USERS_PARTITION_KEY: &str = "pk";
    /// Users: sort key (`profile`, `login_failures` or `device#<hash>`).
    pub const USERS_SORT_KEY: &str = "sk";
    /// Families: partition key.
    pub const FAMILIES_PARTITION_KEY: &str = "family_id";
    /// Families: the index used to find every family of a user (revoke-all).
    pub const FAMILIES_BY_USER_INDEX: &str = "by_user";
    /// Families by user: partition key.
    pub const FAMILIES_BY_USER_PARTITION_KEY: &str = "user_id";
    /// Families by user: sort key.
    pub const FAMILIES_BY_USER_SORT_KEY: &str = "created_at";
    /// Revocations: partition key (time bucket).
    pub const REVOCATIONS_PARTITION_KEY: &str = "bucket";
    /// Revocations: sort key (`<revoked_at>#<kind>#<id>`).
    pub const REVOCATIONS_SORT_KEY: &str = "entry";
    /// Keys: partition key (`signing`, the one key set).
    pub const KEYS_PARTITION_KEY: &str = "id";
    /// Limits: partition key (`<action>#<source>#<window index>`).
    pub const LIMITS_PARTITION_KEY: &str = "bucket";
    /// Clients: partition key (`client_id`).
    pub const CLIENTS_PARTITION_KEY: &str = "client_id";
    /// Proofs: partition key (`<jkt>#<jti>` of an accepted DPoP proof).
    pub const PROOFS_PARTITION_KEY: &str = "proof";
    /// The TTL attribute of every table (Unix seconds).
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}

use aws_sdk_dynamodb::error::SdkError;

/// Whether an SDK error is DynamoDB's "your condition did not hold".
fn is_conditional_check_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}
