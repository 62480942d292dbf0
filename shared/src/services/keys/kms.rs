//! KMS: the signer (`kms:Sign` of a digest) and the public half of a key
//! (`kms:GetPublicKey`), whose own signing algorithms decide ES256 or RS256.

use aws_sdk_kms::error::ProvideErrorMetadata as _;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

use crate::error::DependencyError;
use crate::rules::keys::der::der_to_jose_es256;
use crate::rules::keys::{JwsFuture, KeyAlgorithm, Signer, TrustedKey};

impl KeyAlgorithm {
    /// The KMS signing algorithm that produces this JOSE algorithm's signatures.
    pub(crate) fn kms_spec(self) -> SigningAlgorithmSpec {
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
    Ok(fetch_public_key(client, key_id).await?.1)
}

/// [`fetch_trusted_key`], with the key's ARN as KMS names it.
pub(crate) async fn fetch_public_key(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<(String, TrustedKey), DependencyError> {
    let out =
        client.get_public_key().key_id(key_id).send().await.map_err(|e| DependencyError::kms("GetPublicKey", e))?;
    let bad = |m: &str| DependencyError::Kms { operation: "GetPublicKey", message: format!("{key_id}: {m}") };
    let der = out.public_key().ok_or_else(|| bad("no public key in the answer"))?;
    let algorithms = out.signing_algorithms();
    let algorithm = [KeyAlgorithm::ES256, KeyAlgorithm::RS256]
        .into_iter()
        .find(|alg| algorithms.contains(&alg.kms_spec()))
        .ok_or_else(|| bad("neither ECDSA_SHA_256 nor RSASSA_PKCS1_V1_5_SHA_256"))?;
    let key = TrustedKey::from_spki(der.as_ref(), algorithm).map_err(bad)?;
    Ok((out.key_id().unwrap_or(key_id).to_owned(), key))
}

/// Signs with an asymmetric KMS key through `kms:Sign`.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    kid: String,
    algorithm: KeyAlgorithm,
    encoded_header: String,
}

impl KmsSigner {
    /// A signer for the KMS key `key_id` whose public half is `public` (from the key set:
    /// no KMS call).
    pub fn new(client: aws_sdk_kms::Client, key_id: &str, public: &TrustedKey) -> Self {
        Self {
            client,
            key_id: key_id.to_owned(),
            kid: public.kid().to_owned(),
            algorithm: public.algorithm(),
            encoded_header: public.encoded_header().to_owned(),
        }
    }

    /// Fetches the public key (`kms:GetPublicKey`) to learn the algorithm and the `kid`;
    /// signing then needs one `kms:Sign` per token.
    pub async fn load(client: aws_sdk_kms::Client, key_id: &str) -> Result<Self, DependencyError> {
        let key = fetch_trusted_key(&client, key_id).await?;
        Ok(Self::new(client, key_id, &key))
    }

    /// The key id of its tokens (the RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Signs a SHA-256 digest (`MessageType=DIGEST`) and returns the JWS signature bytes
    /// (`r || s` for ES256).
    pub async fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, DependencyError> {
        let started = std::time::Instant::now();
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(digest.as_slice()))
            .message_type(MessageType::Digest)
            .signing_algorithm(self.algorithm.kms_spec())
            .send()
            .await;
        let outcome = match &out {
            Ok(_) => "ok",
            Err(e) if e.as_service_error().is_some_and(|s| s.is_kms_invalid_state_exception()) => "invalid_state",
            Err(e) if e.code() == Some("ThrottlingException") => "throttled",
            Err(_) => "error",
        };
        crate::platform::metrics::measure(
            "kms",
            "SignLatency",
            outcome,
            "Milliseconds",
            started.elapsed().as_secs_f64() * 1e3,
        );
        let out = out.map_err(|e| DependencyError::kms("Sign", e))?;
        let unusable = |message: String| DependencyError::Kms { operation: "Sign", message };
        let signature = out.signature().ok_or_else(|| unusable("no signature in the answer".to_owned()))?;
        match self.algorithm {
            KeyAlgorithm::ES256 => {
                der_to_jose_es256(signature.as_ref()).map_err(|e| unusable(format!("unusable signature: {e}")))
            }
            // PKCS#1 v1.5 signatures are the same bytes in KMS and in JWS.
            KeyAlgorithm::RS256 => Ok(signature.as_ref().to_vec()),
        }
    }
}

impl Signer for KmsSigner {
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a> {
        Box::pin(async move {
            let mut token = String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 100);
            token.push_str(&self.encoded_header);
            token.push('.');
            B64URL.encode_string(payload, &mut token);
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            let digest: &[u8; 32] = digest
                .as_ref()
                .try_into()
                .map_err(|_| DependencyError::Internal("SHA-256 digest is not 32 bytes".to_owned()))?;
            let signature = self.sign_digest(digest).await?;
            token.push('.');
            B64URL.encode_string(&signature, &mut token);
            Ok(token)
        })
    }
}
