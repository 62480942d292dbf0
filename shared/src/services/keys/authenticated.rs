//! The key set as a trust root: only a set whose signature verifies is used. Every write of
//! the set carries an ECDSA P-256 signature (SHA-256) over [`KeySet::authenticated_bytes`],
//! made with `kms:Sign` under the key set's own KMS key (`KEY_SET_SIGNING_KEY_ID`), which
//! only the rotation role and `authctl keys` may sign with; every reader checks it offline
//! with that key's public half, pinned in its configuration (`KEY_SET_VERIFY_KEY`), so
//! reading the set needs no KMS call, no KMS permission, and works through a KMS outage. A
//! key written into the table by anyone else (a broad `dynamodb:*` grant, restore tooling,
//! an operator by hand), or a set signed by any other key (one of the token signing keys,
//! which login and refresh may use), is in a set whose signature does not verify: no
//! verifier trusts it, no signer signs with it, the JWKS does not list it, and
//! `KeySetRejected` counts it. Readers go on with the last set they verified until its
//! staleness bound, then refuse (the callers' [`crate::rules::polled::Polled`]).
//!
//! An older set with a valid signature (a replay of an earlier version) is refused too once
//! a newer one was seen: versions only grow.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::signature::{ParsedPublicKey, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::error::DependencyError;
use crate::platform::config::Config;
use crate::platform::metrics;
use crate::rules::keys::set::KeySet;
use crate::store::{DynamoKeys, StoredKeySet};

/// Why a stored set was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No usable public key to check signatures with is configured (`KEY_SET_VERIFY_KEY`
    /// empty, or not a base64 DER P-256 public key): nothing is trusted.
    NoVerifyKey,
    /// The set carries no signature.
    Unsigned,
    /// Its signature does not verify: the set was changed, or signed, by someone without
    /// the key set's signing key.
    BadSignature,
    /// Its signature verifies but it is older than a set this instance already verified.
    Rollback,
}

impl Rejection {
    /// The outcome dimension of `KeySetRejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoVerifyKey => "no_verify_key",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::Rollback => "rollback",
        }
    }
}

/// The pinned public half of the key set's signing key.
struct VerifyKey(ParsedPublicKey);

impl VerifyKey {
    /// `KEY_SET_VERIFY_KEY`: base64 of the DER SubjectPublicKeyInfo that `kms:GetPublicKey`
    /// answers (a P-256 key). `None` if empty or not such a key.
    fn from_base64(text: &str) -> Option<Self> {
        let der = B64.decode(text.trim()).ok()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der).parse().ok().map(Self)
    }

    /// Whether `signature` (DER, as `kms:Sign` answers) is this key's over `bytes`.
    fn verifies(&self, bytes: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(bytes, signature).is_ok()
    }
}

/// The last set this instance verified: a re-read of the same set needs no new check.
struct Verified {
    version: u64,
    bytes: Vec<u8>,
    signature: Vec<u8>,
}

/// The Keys table's signing set, read and written with its signature.
pub struct AuthenticatedKeys {
    keys: DynamoKeys,
    /// The client that signs a set this caller writes; `None` for a reader that never does.
    kms: Option<aws_sdk_kms::Client>,
    signing_key_id: String,
    verify_key: Option<VerifyKey>,
    verified: Mutex<Option<Verified>>,
}

impl fmt::Debug for AuthenticatedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedKeys")
            .field("signing_key_id", &self.signing_key_id)
            .field("verify_key", &self.verify_key.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthenticatedKeys {
    /// The set in `keys`, checked with the pinned public key `verify_key` (base64 DER
    /// SubjectPublicKeyInfo) and signed on write with the KMS key `signing_key_id` (empty
    /// where the caller never writes the set).
    pub fn new(
        keys: DynamoKeys,
        kms: aws_sdk_kms::Client,
        signing_key_id: impl Into<String>,
        verify_key: &str,
    ) -> Self {
        let parsed = VerifyKey::from_base64(verify_key);
        Self {
            keys,
            kms: Some(kms),
            signing_key_id: signing_key_id.into(),
            verify_key: parsed,
            verified: Mutex::new(None),
        }
        .checked(verify_key)
    }

    /// The set of a deployment's Keys table for a caller that only reads it (the
    /// authorizer): no KMS client is built, since checking the set needs none.
    pub fn reader_from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        let verify_key = &config.key_set_verify_key;
        Self {
            keys: DynamoKeys::new(dynamodb, &config.keys_table),
            kms: None,
            signing_key_id: String::new(),
            verify_key: VerifyKey::from_base64(verify_key),
            verified: Mutex::new(None),
        }
        .checked(verify_key)
    }

    /// Logs a configured verify key that is not one (no set will be trusted).
    fn checked(self, verify_key: &str) -> Self {
        if self.verify_key.is_none() && !verify_key.is_empty() {
            tracing::error!("KEY_SET_VERIFY_KEY is not a base64 DER P-256 public key: no key set will be trusted");
        }
        self
    }

    /// The set of a deployment's Keys table, with its `KEY_SET_VERIFY_KEY` and
    /// `KEY_SET_SIGNING_KEY_ID` (`kms` is used only to sign a set this caller writes).
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client) -> Self {
        Self::new(
            DynamoKeys::new(dynamodb, &config.keys_table),
            kms,
            &config.key_set_signing_key_id,
            &config.key_set_verify_key,
        )
    }

    /// The table underneath (for the sealing secret, which is not part of the set).
    pub fn table(&self) -> &DynamoKeys {
        &self.keys
    }

    /// The key set, if its signature verifies (the empty set if none was ever written). A
    /// set that fails is an error ([`DependencyError::Corrupt`]) and is counted. No KMS call.
    pub async fn get(&self) -> Result<KeySet, DependencyError> {
        let StoredKeySet { set, signature } = self.keys.read().await?;
        let bytes = set.authenticated_bytes();
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = verified.as_ref() {
            if set.version < last.version {
                return Err(rejected(Rejection::Rollback, &set));
            }
            if set.version == last.version && signature.as_deref() == Some(&last.signature) && bytes == last.bytes {
                return Ok(set);
            }
        }
        // Nothing was ever written: an empty set trusts no key, so it needs no signature.
        if set.version == 0 && set.entries.is_empty() && signature.is_none() && verified.is_none() {
            return Ok(set);
        }
        let Some(verify_key) = &self.verify_key else { return Err(rejected(Rejection::NoVerifyKey, &set)) };
        let Some(signature) = signature else { return Err(rejected(Rejection::Unsigned, &set)) };
        if !verify_key.verifies(&bytes, &signature) {
            return Err(rejected(Rejection::BadSignature, &set));
        }
        *verified = Some(Verified { version: set.version, bytes, signature });
        Ok(set)
    }

    /// Writes `set` with a fresh signature if the stored set is still at `read_version`
    /// ([`DynamoKeys::replace`]). Without a signature the readers would take (KMS refused or
    /// failed, or the signing key is not the one they pin) nothing is written.
    pub async fn replace(&self, set: &KeySet, read_version: u64) -> Result<bool, DependencyError> {
        let unusable = |message: &str| DependencyError::Kms { operation: "Sign", message: message.to_owned() };
        let Some(kms) = self.kms.as_ref().filter(|_| !self.signing_key_id.is_empty()) else {
            return Err(unusable("KEY_SET_SIGNING_KEY_ID is not set: an unsigned key set would be trusted by no one"));
        };
        let bytes = set.authenticated_bytes();
        let out = kms
            .sign()
            .key_id(&self.signing_key_id)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .message_type(MessageType::Raw)
            .message(Blob::new(bytes.as_slice()))
            .send()
            .await
            .map_err(|e| DependencyError::kms("Sign", e))?;
        let signature = out.signature().ok_or_else(|| unusable("no signature in the answer"))?;
        // A set the readers would refuse is not written: the signing key must be the one
        // whose public half they pin.
        if !self.verify_key.as_ref().is_some_and(|key| key.verifies(&bytes, signature.as_ref())) {
            return Err(unusable(
                "the key set's signature does not verify with KEY_SET_VERIFY_KEY: \
                 KEY_SET_SIGNING_KEY_ID is not the key whose public half the readers pin",
            ));
        }
        self.keys.replace(set, signature.as_ref(), read_version).await
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
        "key set rejected: its signature does not vouch for it"
    );
    DependencyError::Corrupt(format!("key set version {} rejected: {}", set.version, why.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};

    use super::*;

    /// A P-256 pair, as KMS holds one: its public half as `KEY_SET_VERIFY_KEY` and a
    /// signature (DER, as `kms:Sign` answers) over `bytes`.
    fn kms_like_key(bytes: &[u8]) -> (String, Vec<u8>) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        let signature = pair.sign(&SystemRandom::new(), bytes).unwrap();
        (B64.encode(spki.as_ref()), signature.as_ref().to_vec())
    }

    #[test]
    fn a_kms_signature_over_the_set_verifies_with_the_pinned_key_only() {
        let set = KeySet { version: 3, ..KeySet::default() };
        let bytes = set.authenticated_bytes();
        let (pinned, signature) = kms_like_key(&bytes);
        let (other, other_signature) = kms_like_key(&bytes);
        let key = VerifyKey::from_base64(&pinned).unwrap();
        assert!(key.verifies(&bytes, &signature));
        assert!(!key.verifies(&bytes, &other_signature), "a signature of another key verified");
        assert!(VerifyKey::from_base64(&other).unwrap().verifies(&bytes, &other_signature));
        let changed = KeySet { version: 4, ..KeySet::default() }.authenticated_bytes();
        assert!(!key.verifies(&changed, &signature), "a signature verified another set");
        let mut flipped = signature.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(!key.verifies(&bytes, &flipped), "a changed signature verified");
    }

    #[tokio::test]
    async fn a_reader_signs_and_writes_nothing() {
        // A reader built without KMS, over a DynamoDB client that reaches nothing: a write
        // fails for want of a signature before any call (a call would fail as DynamoDB's).
        let config = Config::from_lookup(|name| match name {
            "USERS_TABLE" | "FAMILIES_TABLE" | "KEYS_TABLE" => Some("a-table".to_owned()),
            "TOKEN_ISSUER" => Some("https://issuer.test".to_owned()),
            "TOKEN_AUDIENCE" => Some("api".to_owned()),
            _ => None,
        })
        .unwrap();
        let reader = AuthenticatedKeys::reader_from_config(&config, crate::platform::aws::unreachable::dynamodb());
        let refused = reader.replace(&KeySet { version: 1, ..KeySet::default() }, 0).await;
        let refused_before_any_call = matches!(&refused,
            Err(DependencyError::Kms { operation: "Sign", message }) if message.contains("KEY_SET_SIGNING_KEY_ID is not set"));
        assert!(refused_before_any_call, "{refused:?}");
    }

    #[test]
    fn only_a_base64_der_p256_public_key_is_a_verify_key() {
        let (pinned, _) = kms_like_key(b"x");
        assert!(VerifyKey::from_base64(&pinned).is_some());
        assert!(VerifyKey::from_base64(&format!(" {pinned}\n")).is_some(), "surrounding whitespace is not the key");
        let rsa = crate::rules::keys::testing::LocalSigner::rs256();
        for refused in [String::new(), "not base64!".to_owned(), B64.encode(b"not DER"), B64.encode(rsa.spki())] {
            assert!(VerifyKey::from_base64(&refused).is_none(), "{refused:?} was taken as a P-256 key");
        }
    }
}
