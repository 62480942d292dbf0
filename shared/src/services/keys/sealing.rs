//! The server-side secret of sealed successors ([`crate::rules::rotation`]): a 256-bit data key
//! that KMS generates under the sealing key (`SEALING_KEY_ID`, symmetric), kept only
//! encrypted, in the Keys table (item `sealing`), and decrypted by the refresh function
//! once per instance. Reading the Families table, or the Keys table, is not enough to
//! open a sealed successor: that takes `kms:Decrypt` on the sealing key as well.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::error::DependencyError;
use crate::rules::rotation::SealingSecret;
use crate::store::DynamoKeys;

/// The encryption context of the data key: KMS refuses to decrypt it under any other, and
/// IAM grants `kms:Decrypt` only with it.
pub const ENCRYPTION_CONTEXT: (&str, &str) = ("tokenauth", "successor-sealing");

/// The sealing secret, decrypted on first use and kept for the life of the instance.
#[derive(Debug)]
pub struct SealingSecrets {
    keys: DynamoKeys,
    kms: aws_sdk_kms::Client,
    secret: tokio::sync::OnceCell<SealingSecret>,
}

impl SealingSecrets {
    /// The secret stored in `keys`, decrypted through `kms`.
    pub fn new(keys: DynamoKeys, kms: aws_sdk_kms::Client) -> Self {
        Self { keys, kms, secret: tokio::sync::OnceCell::new() }
    }

    /// The secret: one `GetItem` and one `kms:Decrypt` the first time, none after. A
    /// failure is not kept: the next call tries again.
    pub async fn get(&self) -> Result<&SealingSecret, DependencyError> {
        self.secret.get_or_try_init(|| self.decrypt()).await
    }

    async fn decrypt(&self) -> Result<SealingSecret, DependencyError> {
        let ciphertext = self.keys.sealing_ciphertext().await?.ok_or_else(|| {
            DependencyError::Corrupt("no sealing secret in the Keys table (run `authctl keys rotate`)".to_owned())
        })?;
        let out = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_context(ENCRYPTION_CONTEXT.0, ENCRYPTION_CONTEXT.1)
            .send()
            .await
            .map_err(|e| DependencyError::kms("Decrypt", e))?;
        let bytes: [u8; 32] = out
            .plaintext()
            .and_then(|p| p.as_ref().try_into().ok())
            .ok_or_else(|| DependencyError::Kms { operation: "Decrypt", message: "not a 256-bit key".to_owned() })?;
        Ok(SealingSecret::from_bytes(bytes))
    }
}

/// Creates the sealing secret if the Keys table has none: `kms:GenerateDataKey` under
/// `sealing_key_id`, the ciphertext written only if still absent (two creators at once
/// keep the first). Returns whether this call created it.
pub async fn ensure_sealing_secret(
    keys: &DynamoKeys,
    kms: &aws_sdk_kms::Client,
    sealing_key_id: &str,
) -> Result<bool, DependencyError> {
    if keys.sealing_ciphertext().await?.is_some() {
        return Ok(false);
    }
    if sealing_key_id.is_empty() {
        return Err(DependencyError::Corrupt("SEALING_KEY_ID is not set: no sealing secret can be made".to_owned()));
    }
    let out = kms
        .generate_data_key()
        .key_id(sealing_key_id)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context(ENCRYPTION_CONTEXT.0, ENCRYPTION_CONTEXT.1)
        .send()
        .await
        .map_err(|e| DependencyError::kms("GenerateDataKey", e))?;
    let ciphertext = out.ciphertext_blob().ok_or_else(|| DependencyError::Kms {
        operation: "GenerateDataKey",
        message: "no ciphertext in the answer".to_owned(),
    })?;
    keys.put_sealing_ciphertext(ciphertext.as_ref()).await
}
