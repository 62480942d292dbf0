//! KMS: the signer (`kms:Sign` of a digest) and the public half of a key
//! (`kms:GetPublicKey`), whose own signing algorithms decide ES256 or RS256.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::der::der_to_jose_es256;
use super::{KeyAlgorithm, SignFuture, Signer, TrustedKey};
use crate::error::DependencyError;

impl KeyAlgorithm {
    /// The KMS signing algorithm that produces this JOSE algorithm's signatures.
    fn kms_spec(self) -> SigningAlgorithmSpec {
        match self {
            Self::ES256 => SigningAlgorithmSpec::EcdsaSha256,
            Self::RS256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        }
    }
}

/// Fetches a KMS key's public half (`kms:GetPublicKey`) as a trusted key. The key's
/// signing algorithms decide: ECDSA_SHA_256 (ECC_NIST_P256) is ES256,
/// RSASSA_PKCS1_V1_5_SHA_256 (RSA) is RS256; anything else is refused.
pub async fn fetch_trusted_key(client: &aws_sdk_kms::Client, key_id: &str) -> Result<TrustedKey, DependencyError> {
    let out =
        client.get_public_key().key_id(key_id).send().await.map_err(|e| DependencyError::kms("GetPublicKey", e))?;
    let bad = |m: &str| DependencyError::Kms { operation: "GetPublicKey", message: format!("{key_id}: {m}") };
    let der = out.public_key().ok_or_else(|| bad("no public key in the answer"))?;
    let algorithms = out.signing_algorithms();
    let algorithm = [KeyAlgorithm::ES256, KeyAlgorithm::RS256]
        .into_iter()
        .find(|alg| algorithms.contains(&alg.kms_spec()))
        .ok_or_else(|| bad("neither ECDSA_SHA_256 nor RSASSA_PKCS1_V1_5_SHA_256"))?;
    TrustedKey::from_spki(der.as_ref(), algorithm).map_err(bad)
}

/// Signs with an asymmetric KMS key through `kms:Sign`.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    kid: String,
    algorithm: KeyAlgorithm,
}

impl KmsSigner {
    /// Fetches the public key once (`kms:GetPublicKey`) to learn the algorithm and the
    /// `kid`. Call at cold start; signing then needs one `kms:Sign` per token.
    pub async fn load(client: aws_sdk_kms::Client, key_id: &str) -> Result<Self, DependencyError> {
        let key = fetch_trusted_key(&client, key_id).await?;
        Ok(Self { client, key_id: key_id.to_owned(), kid: key.kid().to_owned(), algorithm: key.algorithm() })
    }
}

impl Signer for KmsSigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn kid(&self) -> &str {
        &self.kid
    }

    fn sign_digest<'a>(&'a self, digest: &'a [u8; 32]) -> SignFuture<'a> {
        Box::pin(async move {
            let out = self
                .client
                .sign()
                .key_id(&self.key_id)
                .message(Blob::new(digest.as_slice()))
                .message_type(MessageType::Digest)
                .signing_algorithm(self.algorithm.kms_spec())
                .send()
                .await
                .map_err(|e| DependencyError::kms("Sign", e))?;
            let unusable = |message: String| DependencyError::Kms { operation: "Sign", message };
            let signature = out.signature().ok_or_else(|| unusable("no signature in the answer".to_owned()))?;
            match self.algorithm {
                KeyAlgorithm::ES256 => {
                    der_to_jose_es256(signature.as_ref()).map_err(|e| unusable(format!("unusable signature: {e}")))
                }
                // PKCS#1 v1.5 signatures are the same bytes in KMS and in JWS.
                KeyAlgorithm::RS256 => Ok(signature.as_ref().to_vec()),
            }
        })
    }
}
