//! The key set as a trust root: only a set whose MAC verifies is used. Every write of the
//! set carries an HMAC-SHA-256 over [`KeySet::authenticated_bytes`], made with
//! `kms:GenerateMac` under the key set's own KMS key, which only the rotation role and
//! `authctl keys` may use to make MACs; every reader checks it with `kms:VerifyMac` once
//! per set it has not seen. A key written into the table by anyone else (a broad
//! `dynamodb:*` grant, restore tooling, an operator by hand) is in a set whose MAC no
//! longer verifies: no verifier trusts it, no signer signs with it, the JWKS does not list
//! it, and `KeySetRejected` counts it. Readers go on with the last set they verified until
//! its staleness bound, then refuse (the callers' [`crate::rules::polled::Polled`]).
//!
//! An older set with a valid MAC (a replay of an earlier version) is refused too once a
//! newer one was seen: versions only grow.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use subtle::ConstantTimeEq as _;

use crate::error::DependencyError;
use crate::platform::config::Config;
use crate::platform::metrics;
use crate::rules::keys::set::KeySet;
use crate::store::{DynamoKeys, StoredKeySet};

/// Why a stored set was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No key to check MACs with is configured (`KEY_SET_MAC_KEY_ID`): nothing is trusted.
    NoMacKey,
    /// The set carries no MAC.
    Unsigned,
    /// Its MAC does not verify: the set was changed by someone without the MAC key.
    BadMac,
    /// Its MAC verifies but it is older than a set this instance already verified.
    Rollback,
}

impl Rejection {
    /// The outcome dimension of `KeySetRejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoMacKey => "no_mac_key",
            Self::Unsigned => "unsigned",
            Self::BadMac => "bad_mac",
            Self::Rollback => "rollback",
        }
    }
}

/// The last set this instance verified: a re-read of the same set needs no KMS call.
struct Verified {
    version: u64,
    bytes: Vec<u8>,
    mac: Vec<u8>,
}

/// The Keys table's signing set, read and written with its MAC.
pub struct AuthenticatedKeys {
    keys: DynamoKeys,
    kms: aws_sdk_kms::Client,
    mac_key_id: String,
    verified: Mutex<Option<Verified>>,
}

impl fmt::Debug for AuthenticatedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedKeys").field("mac_key_id", &self.mac_key_id).finish_non_exhaustive()
    }
}

impl AuthenticatedKeys {
    /// The set in `keys`, checked (and MAC'd on write) with the KMS HMAC key `mac_key_id`.
    pub fn new(keys: DynamoKeys, kms: aws_sdk_kms::Client, mac_key_id: impl Into<String>) -> Self {
        Self { keys, kms, mac_key_id: mac_key_id.into(), verified: Mutex::new(None) }
    }

    /// The set of a deployment's Keys table, with its `KEY_SET_MAC_KEY_ID`.
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client) -> Self {
        Self::new(DynamoKeys::new(dynamodb, &config.keys_table), kms, &config.key_set_mac_key_id)
    }

    /// The table underneath (for the sealing secret, which is not part of the set).
    pub fn table(&self) -> &DynamoKeys {
        &self.keys
    }

    /// The key set, if its MAC verifies (the empty set if none was ever written). A set that
    /// fails is an error ([`DependencyError::Corrupt`]) and is counted.
    pub async fn get(&self) -> Result<KeySet, DependencyError> {
        let StoredKeySet { set, mac } = self.keys.read().await?;
        let bytes = set.authenticated_bytes();
        let last_version = {
            let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = verified.as_ref() {
                if set.version < last.version {
                    return Err(rejected(Rejection::Rollback, &set));
                }
                let same_mac = mac.as_deref().is_some_and(|mac| bool::from(mac.ct_eq(&last.mac)));
                if set.version == last.version && same_mac && bytes == last.bytes {
                    return Ok(set);
                }
            }
            verified.as_ref().map(|last| last.version)
        };
        // Nothing was ever written: an empty set trusts no key, so it needs no MAC.
        if set.version == 0 && set.entries.is_empty() && mac.is_none() && last_version.is_none() {
            return Ok(set);
        }
        if self.mac_key_id.is_empty() {
            return Err(rejected(Rejection::NoMacKey, &set));
        }
        let Some(mac) = mac else { return Err(rejected(Rejection::Unsigned, &set)) };
        let answer = self
            .kms
            .verify_mac()
            .key_id(&self.mac_key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(bytes.as_slice()))
            .mac(Blob::new(mac.as_slice()))
            .send()
            .await;
        match answer {
            Ok(out) if out.mac_valid() => {}
            Ok(_) => return Err(rejected(Rejection::BadMac, &set)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_kms_invalid_mac_exception()) => {
                return Err(rejected(Rejection::BadMac, &set));
            }
            Err(e) => return Err(DependencyError::kms("VerifyMac", e)),
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.as_ref().is_none_or(|last| set.version >= last.version) {
            *verified = Some(Verified { version: set.version, bytes, mac });
        }
        Ok(set)
    }

    /// Writes `set` with a fresh MAC if the stored set is still at `read_version`
    /// ([`DynamoKeys::replace`]). Without a MAC (KMS refused or failed) nothing is written.
    pub async fn replace(&self, set: &KeySet, read_version: u64) -> Result<bool, DependencyError> {
        if self.mac_key_id.is_empty() {
            return Err(DependencyError::Kms {
                operation: "GenerateMac",
                message: "KEY_SET_MAC_KEY_ID is not set: a key set without a MAC would be trusted by no one".to_owned(),
            });
        }
        let out = self
            .kms
            .generate_mac()
            .key_id(&self.mac_key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(set.authenticated_bytes()))
            .send()
            .await
            .map_err(|e| DependencyError::kms("GenerateMac", e))?;
        let mac = out.mac().ok_or_else(|| DependencyError::Kms {
            operation: "GenerateMac",
            message: "no MAC in the answer".to_owned(),
        })?;
        self.keys.replace(set, mac.as_ref(), read_version).await
    }
}

/// Counts and logs a rejected set (its version and kids only: nothing secret is in a set).
fn rejected(why: Rejection, set: &KeySet) -> DependencyError {
    metrics::count("keys", "KeySetRejected", why.as_str());
    let kids: Vec<&str> = set.entries.iter().map(|e| e.kid.as_str()).collect();
    tracing::error!(
        reason = why.as_str(),
        version = set.version,
        ?kids,
        "key set rejected: its MAC does not vouch for it"
    );
    DependencyError::Corrupt(format!("key set version {} rejected: {}", set.version, why.as_str()))
}
