//! Envelope signing keys: an ES256 key pair that KMS makes
//! (`kms:GenerateDataKeyPairWithoutPlaintext`) and hands out only encrypted under the
//! deployment's symmetric envelope key (`ENVELOPE_KEY_ID`). The key set stores that
//! ciphertext beside the public half; a signer decrypts it once (`kms:Decrypt`) when the set
//! names it current and then signs locally with aws-lc-rs, so a token costs no KMS call.
//!
//! The ciphertext is bound by its encryption context to its purpose and its `kid`: KMS
//! decrypts it under no other, and IAM lets signers decrypt only with that purpose. A key
//! pair is made under a "new" context that signers may not decrypt, then re-encrypted
//! (`kms:ReEncrypt`, inside KMS) under the context that names its `kid`, which is known only
//! once the public half is: key rotation never sees the private half.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeyPairSpec;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::DependencyError;
use crate::rules::keys::set::{KeyEntry, KeyKind, NewKey};
use crate::rules::keys::{JwsFuture, KeyAlgorithm, Signer, TrustedKey};

/// The encryption context's key, as for the sealing secret.
pub const CONTEXT_KEY: &str = "tokenauth";
/// Its value for a key pair bound to its `kid` (the only one signers may decrypt).
pub const CONTEXT_PURPOSE: &str = "envelope-signing-key";
/// Its value for a key pair just made, before it is bound to its `kid`.
pub const CONTEXT_PURPOSE_NEW: &str = "envelope-signing-key-new";
/// The context's second key: the `kid` the private half belongs to.
pub const CONTEXT_KID: &str = "kid";

/// Makes an envelope key pair under `envelope_key_id`: the public half and the private half
/// encrypted, bound to its `kid`. Two KMS calls, once per key (daily); neither answer holds
/// the private key in clear.
pub async fn create_envelope_key(kms: &aws_sdk_kms::Client, envelope_key_id: &str) -> Result<NewKey, DependencyError> {
    if envelope_key_id.is_empty() {
        return Err(DependencyError::Kms {
            operation: "GenerateDataKeyPairWithoutPlaintext",
            message: "ENVELOPE_KEY_ID is not set: no envelope key can be made".to_owned(),
        });
    }
    let out = kms
        .generate_data_key_pair_without_plaintext()
        .key_id(envelope_key_id)
        .key_pair_spec(DataKeyPairSpec::EccNistP256)
        .encryption_context(CONTEXT_KEY, CONTEXT_PURPOSE_NEW)
        .send()
        .await
        .map_err(|e| DependencyError::kms("GenerateDataKeyPairWithoutPlaintext", e))?;
    let unusable = |message: &str| DependencyError::Kms {
        operation: "GenerateDataKeyPairWithoutPlaintext",
        message: message.to_owned(),
    };
    let public = out.public_key().ok_or_else(|| unusable("no public key in the answer"))?;
    let key = TrustedKey::from_spki(public.as_ref(), KeyAlgorithm::ES256).map_err(unusable)?;
    let unbound = out.private_key_ciphertext_blob().ok_or_else(|| unusable("no private key ciphertext"))?;
    let bound = kms
        .re_encrypt()
        .ciphertext_blob(unbound.clone())
        .source_key_id(envelope_key_id)
        .source_encryption_context(CONTEXT_KEY, CONTEXT_PURPOSE_NEW)
        .destination_key_id(envelope_key_id)
        .destination_encryption_context(CONTEXT_KEY, CONTEXT_PURPOSE)
        .destination_encryption_context(CONTEXT_KID, key.kid())
        .send()
        .await
        .map_err(|e| DependencyError::kms("ReEncrypt", e))?;
    let wrapped = bound.ciphertext_blob().ok_or_else(|| DependencyError::Kms {
        operation: "ReEncrypt",
        message: "no ciphertext in the answer".to_owned(),
    })?;
    Ok(NewKey {
        kid: key.kid().to_owned(),
        alg: KeyAlgorithm::ES256,
        kind: KeyKind::Envelope,
        kms_key_id: bound.key_id().or(out.key_id()).unwrap_or(envelope_key_id).to_owned(),
        public_key: B64.encode(key.spki()),
        wrapped_private_key: Some(wrapped.as_ref().to_vec()),
    })
}

/// Signs with an envelope key's private half, held in this instance's memory only. Its
/// `Debug` shows the `kid`, nothing else; the key pair lives in AWS-LC, which clears the
/// memory of a key it frees.
pub struct EnvelopeSigner {
    kid: String,
    encoded_header: String,
    pair: EcdsaKeyPair,
}

impl fmt::Debug for EnvelopeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl EnvelopeSigner {
    /// Decrypts the private half of `entry` (`kms:Decrypt` under its encryption context) and
    /// checks that it belongs to the entry's public key. The decrypted PKCS #8 is zeroed as
    /// soon as the key pair is parsed.
    pub async fn decrypt(
        kms: &aws_sdk_kms::Client,
        entry: &KeyEntry,
        public: &TrustedKey,
    ) -> Result<Self, DependencyError> {
        let corrupt = |why: &str| DependencyError::Corrupt(format!("envelope key {}: {why}", entry.kid));
        if entry.kind != KeyKind::Envelope || entry.alg != KeyAlgorithm::ES256 {
            return Err(corrupt("not an ES256 envelope key"));
        }
        let wrapped = entry.wrapped_private_key.as_deref().ok_or_else(|| corrupt("its private half is erased"))?;
        let started = std::time::Instant::now();
        let out = kms
            .decrypt()
            .key_id(&entry.kms_key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(CONTEXT_KEY, CONTEXT_PURPOSE)
            .encryption_context(CONTEXT_KID, &entry.kid)
            .send()
            .await;
        crate::platform::metrics::measure(
            "kms",
            "EnvelopeDecryptLatency",
            if out.is_ok() { "ok" } else { "error" },
            "Milliseconds",
            started.elapsed().as_secs_f64() * 1e3,
        );
        let mut out = out.map_err(|e| DependencyError::kms("Decrypt", e))?;
        let pkcs8 = Zeroizing::new(out.plaintext.take().map(Blob::into_inner).unwrap_or_default());
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| corrupt("its private half is not a P-256 PKCS #8 key"))?;
        let spki = aws_lc_rs::encoding::AsDer::as_der(pair.public_key())
            .map_err(|_| corrupt("its public half cannot be encoded"))?;
        if spki.as_ref() != public.spki() {
            return Err(corrupt("its private half does not belong to its public key"));
        }
        Ok(Self { kid: public.kid().to_owned(), encoded_header: public.encoded_header().to_owned(), pair })
    }

    /// The key id of its tokens.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl Signer for EnvelopeSigner {
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a> {
        let mut token = String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.encoded_header);
        token.push('.');
        B64URL.encode_string(payload, &mut token);
        let signed = self
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| DependencyError::Internal("ECDSA signing failed".to_owned()))
            .map(|signature| {
                token.push('.');
                B64URL.encode_string(signature.as_ref(), &mut token);
                token
            });
        Box::pin(async move { signed })
    }
}
