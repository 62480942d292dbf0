//! Where the trusted public keys come from: the one seam through which every function that
//! verifies gets its keys. They are loaded once per instance and parsed then; a request
//! never loads or parses a key.

use super::{fetch_trusted_key, TrustedKey};
use crate::error::{ConfigError, StartError};

/// Where the trusted keys come from (`TRUSTED_JWKS`, else `TRUSTED_KEY_IDS`, else the
/// signing key: see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `kms:GetPublicKey` for these KMS key ids (current and previous). The key's own
    /// signing algorithms decide ES256 or RS256.
    Kms(Vec<String>),
    /// A JWKS document handed over in configuration: no call at all.
    Jwks(String),
}

impl KeySource {
    /// The trusted keys, parsed and ready. `kms` is called only for [`KeySource::Kms`] (a
    /// KMS client costs about 0.2 ms to build at cold start).
    pub async fn load(&self, kms: impl FnOnce() -> aws_sdk_kms::Client) -> Result<Vec<TrustedKey>, StartError> {
        match self {
            Self::Kms(ids) => {
                let kms = kms();
                let mut keys = Vec::with_capacity(ids.len());
                for id in ids {
                    keys.push(fetch_trusted_key(&kms, id).await?);
                }
                Ok(keys)
            }
            Self::Jwks(document) => TrustedKey::from_jwks(document)
                .map_err(|reason| ConfigError::Unusable { name: "TRUSTED_JWKS", reason }.into()),
        }
    }
}
