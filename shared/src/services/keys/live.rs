//! The key set at run time. Verifiers keep their trusted keys in step with it
//! ([`KeyRing`]); signers sign with its current key ([`KeySetSigner`]). Both read the one
//! item of the Keys table, used only if its signature verifies ([`AuthenticatedKeys`]:
//! offline, with the public key pinned in the configuration), and neither calls KMS to
//! learn or trust a key, so a rotation needs no redeploy and a function's cold start no KMS
//! call.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{AuthenticatedKeys, KmsSigner};
use crate::error::DependencyError;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::platform::metrics;
use crate::rules::keys::set::{KeyEntry, KeySet};
use crate::rules::keys::{JwsFuture, Signer, TrustedKey};
use crate::rules::polled::{Freshness, Polled};
use crate::rules::verify::Verifier;

/// A key of the set as a verifier trusts it. The stored `kid` must be the thumbprint of the
/// stored public key: a set whose entries disagree with themselves is not used.
pub fn trusted_key(entry: &KeyEntry) -> Result<TrustedKey, DependencyError> {
    let corrupt = |why: &str| DependencyError::Corrupt(format!("key set entry {}: {why}", entry.kid));
    let der = B64.decode(&entry.public_key).map_err(|_| corrupt("public key is not base64"))?;
    let key = TrustedKey::from_spki(&der, entry.alg).map_err(corrupt)?;
    if key.kid() != entry.kid {
        return Err(corrupt("kid is not the thumbprint of the public key"));
    }
    Ok(key)
}

/// Every key of the set whose tokens are accepted (pending, current, previous).
pub fn trusted_keys(set: &KeySet) -> Result<Vec<TrustedKey>, DependencyError> {
    set.trusted().map(trusted_key).collect()
}

/// The key set could not be read for longer than its staleness bound: whoever relies on it
/// refuses (503) rather than use keys that may have been revoked since.
pub fn stale_key_set() -> DependencyError {
    DependencyError::DynamoDb {
        operation: "GetItem",
        message: "the key set could not be read for longer than its staleness bound".to_owned(),
    }
}

/// What a [`KeyRing::sync`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySync {
    /// Whether the keys may be relied on (loaded within the staleness bound).
    pub freshness: Freshness,
    /// Whether this call replaced the verifier's keys.
    pub changed: bool,
}

/// Keeps a [`Verifier`]'s trusted keys equal to the key set: reloaded at most once per
/// `every` (inline with the caller's other polling, or at once when a token names a key we
/// do not know), never more often, however many requests ask. If reading fails, the
/// last keys serve for `max_staleness`; after that the ring reports itself stale and the
/// caller refuses (an emergency revoke must not go unseen for long).
pub struct KeyRing {
    keys: AuthenticatedKeys,
    verifier: Arc<Verifier>,
    polled: Polled,
    /// The version the verifier's keys are from; only a read holds it.
    version: Mutex<Option<u64>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("polled", &self.polled).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The ring a function builds: the configured verifier, kept up to date from the Keys
    /// table every `every`, relied on for `max_staleness` after the last good read.
    pub fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        every: Duration,
        max_staleness: Duration,
    ) -> Self {
        let verifier = Arc::new(crate::services::verifier_for(config));
        Self::new(AuthenticatedKeys::from_config(config, dynamodb, kms), verifier, every, max_staleness)
    }

    /// A ring that keeps `verifier` (usually built with no keys) up to date from `keys`,
    /// reading at most once per `every` and never more than once a second (a revocation
    /// poll of 0, every request, does not make the key set a read per request).
    pub fn new(keys: AuthenticatedKeys, verifier: Arc<Verifier>, every: Duration, max_staleness: Duration) -> Self {
        let every = every.max(Duration::from_secs(1));
        Self { keys, verifier, polled: Polled::new(every, max_staleness), version: Mutex::new(None) }
    }

    /// A ring whose verifier already holds the keys as of `loaded_at` (benchmarks: no read
    /// falls due for `every`).
    pub fn preloaded(
        keys: AuthenticatedKeys,
        verifier: Arc<Verifier>,
        every: Duration,
        max_staleness: Duration,
        loaded_at: u64,
    ) -> Self {
        let ring = Self::new(keys, verifier, every, max_staleness);
        Self { polled: ring.polled.read_at(loaded_at), ..ring }
    }

    /// The verifier whose keys this ring keeps.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Reloads the set if the last attempt is `every` old (inline: the caller waits for
    /// that one read), and says whether the keys may be used.
    pub async fn sync(&self, now: u64) -> KeySync {
        let changed = if self.polled.claim(now) { self.load(now).await } else { false };
        KeySync { freshness: self.freshness(now), changed }
    }

    /// Whether the keys were loaded within the staleness bound.
    pub fn freshness(&self, now: u64) -> Freshness {
        self.polled.freshness(now)
    }

    /// Reads the set and hands its trusted keys to the verifier if it is newer than the one
    /// the verifier has (versions only grow, so a slow read never undoes a newer one).
    async fn load(&self, now: u64) -> bool {
        let set = match self.keys.get().await {
            Ok(set) => set,
            Err(e) => return self.failed(&e),
        };
        let mut version = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        if version.is_some_and(|v| set.version <= v) {
            self.polled.succeeded(now);
            return false;
        }
        let keys = match trusted_keys(&set) {
            Ok(keys) => keys,
            Err(e) => return self.failed(&e),
        };
        tracing::info!(version = set.version, keys = keys.len(), "key set loaded");
        self.verifier.replace_keys(keys);
        *version = Some(set.version);
        self.polled.succeeded(now);
        true
    }

    fn failed(&self, e: &DependencyError) -> bool {
        tracing::warn!(error = %e, "key set not reloaded; the last keys stay in use");
        metrics::count("keys", "KeySetReadFailures", "failed");
        false
    }
}

/// The signer of login and refresh: signs with the key set's current key, re-reading the
/// set at most once per `every`. A promotion therefore reaches every signer within `every`;
/// the retirement gate waits that long on top of the token lifetime
/// ([`Config::key_timings`]). If a re-read fails, the key it knows keeps signing until
/// the staleness bound ([`Config::key_set_max_staleness`]), then signing fails (503)
/// rather than guess.
pub struct KeySetSigner {
    keys: AuthenticatedKeys,
    kms: aws_sdk_kms::Client,
    polled: Polled,
    clock: Arc<dyn Clock>,
    loaded: tokio::sync::Mutex<Option<Arc<KmsSigner>>>,
}

impl fmt::Debug for KeySetSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySetSigner").field("polled", &self.polled).finish_non_exhaustive()
    }
}

impl KeySetSigner {
    /// A signer over the set in `keys`, signing through `kms`, re-reading the set every
    /// `every` and signing with the key last read for at most `max_staleness`.
    pub fn new(
        keys: AuthenticatedKeys,
        kms: aws_sdk_kms::Client,
        every: Duration,
        max_staleness: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let polled = Polled::new(every.max(Duration::from_secs(1)), max_staleness);
        Self { keys, kms, polled, clock, loaded: tokio::sync::Mutex::new(None) }
    }

    /// The signer a deployment configured (Keys table, `KEY_SET_RELOAD_SECS`), having read
    /// the set once so the first request need not. A failed read is not fatal here: the
    /// first request reads again, and answers 503 if it fails too.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = AuthenticatedKeys::from_config(config, dynamodb, kms.clone());
        let signer = Self::new(keys, kms, config.key_reload, config.key_set_max_staleness(), clock);
        if let Err(e) = signer.current().await {
            tracing::warn!(error = %e, "no signing key at start-up");
        }
        signer
    }

    /// The KMS signer of the current key, as of at most `every` ago.
    pub async fn current(&self) -> Result<Arc<KmsSigner>, DependencyError> {
        self.current_as_of(false).await
    }

    /// With `reread`, reads the set now whatever the interval.
    async fn current_as_of(&self, reread: bool) -> Result<Arc<KmsSigner>, DependencyError> {
        let now = self.clock.now();
        let mut loaded = self.loaded.lock().await;
        let due = self.polled.claim(now);
        match loaded.as_ref() {
            // Read within the interval: the key as read, while the last good read is within
            // the staleness bound; past it, refuse until the next read succeeds.
            Some(key) if !reread && !due => {
                return match self.polled.freshness(now) {
                    Freshness::Fresh => Ok(Arc::clone(key)),
                    Freshness::Stale => Err(stale_key_set()),
                };
            }
            // Due, asked to re-read, or never read: read now.
            _ => {}
        }
        match self.read_current().await {
            Ok(signer) => {
                let signer = match loaded.as_ref() {
                    Some(key) if key.kid() == signer.kid() => Arc::clone(key),
                    _ => Arc::new(signer),
                };
                *loaded = Some(Arc::clone(&signer));
                self.polled.succeeded(now);
                Ok(signer)
            }
            Err(e) => match loaded.as_ref() {
                Some(key) if self.polled.freshness(now) == Freshness::Fresh => {
                    tracing::warn!(error = %e, "key set not reloaded; signing with the key last read");
                    Ok(Arc::clone(key))
                }
                _ => Err(e),
            },
        }
    }

    async fn read_current(&self) -> Result<KmsSigner, DependencyError> {
        let set = self.keys.get().await?;
        let current = set.current().ok_or_else(|| {
            DependencyError::Corrupt("the key set has no current key (run `authctl keys rotate`)".to_owned())
        })?;
        let key = trusted_key(current)?;
        Ok(KmsSigner::new(self.kms.clone(), &current.kms_key_id, &key))
    }
}

impl Signer for KeySetSigner {
    /// Signs with the current key. If KMS refuses, the key may have just been revoked (its
    /// KMS key is then pending deletion and cannot sign): the set is read again at once and,
    /// if another key signs now, the token is signed with that one, so an emergency revoke
    /// costs no request its token.
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a> {
        Box::pin(async move {
            let signer = self.current().await?;
            match signer.sign_jws(payload).await {
                Err(refused @ DependencyError::Kms { .. }) => {
                    let now_current = self.current_as_of(true).await?;
                    if now_current.kid() == signer.kid() {
                        return Err(refused);
                    }
                    now_current.sign_jws(payload).await
                }
                outcome => outcome,
            }
        })
    }
}
