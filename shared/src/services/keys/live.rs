//! The key set at run time. Verifiers keep their trusted keys in step with it
//! ([`KeyRing`]); signers sign with its current key ([`KeySetSigner`]). Both read the one
//! item of the Keys table, used only if its signature verifies ([`AuthenticatedKeys`]:
//! offline, with the public key pinned in the configuration), and neither calls KMS to
//! learn or trust a key, so a rotation needs no redeploy and a function's cold start no KMS
//! call.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::time::Instant;

use super::{AuthenticatedKeys, EnvelopeSigner, KmsSigner};
use crate::error::DependencyError;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::platform::metrics;
use crate::platform::read_beside::{ReadBeside, ReadCounts, READ_BUDGET};
use crate::rules::keys::set::{KeyEntry, KeyKind, KeySet};
use crate::rules::keys::{JwsFuture, Signer, TrustedKey};
use crate::rules::polled::{Freshness, Polled};
use crate::rules::verify::{Audiences, Verifier};

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

/// How reads of the key set are counted (a verifier's and a signer's alike).
const KEY_SET_READS: ReadCounts = ReadCounts { operation: "keys", failures: "KeySetReadFailures", what: "key_set" };

/// What a [`KeyRing::sync`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySync {
    /// Whether the keys may be relied on (loaded within the staleness bound).
    pub freshness: Freshness,
    /// Whether the verifier's keys were replaced while this call waited.
    pub changed: bool,
}

/// Keeps a [`Verifier`]'s trusted keys equal to the key set: reloaded at most once per
/// `every` (with the caller's other polling, or at once when a token names a key we
/// do not know), never more often, however many requests ask. If reading fails, the
/// last keys serve for `max_staleness`; after that the ring reports itself stale and the
/// caller refuses (an emergency revoke must not go unseen for long).
///
/// A reload runs on a task of its own ([`ReadBeside`]): a caller with a deadline
/// ([`KeyRing::sync_until`], the authorizer's budget) stops waiting at it and is answered
/// with the keys held, while the read finishes beside later requests; its keys replace
/// the verifier's when it answers if they are newer, and it counts as a good read as of
/// when it started.
pub struct KeyRing {
    shared: Arc<Ring>,
    reads: ReadBeside,
}

/// What a reload's task reads and writes.
struct Ring {
    keys: AuthenticatedKeys,
    verifier: Arc<Verifier>,
    polled: Polled,
    /// The version the verifier's keys are from; only a read holds it.
    version: Mutex<Option<u64>>,
    /// How many times the verifier's keys were replaced.
    replaced: AtomicU64,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("polled", &self.shared.polled).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The ring a function builds: the configured verifier, kept up to date from the Keys
    /// table every `KEY_SET_RELOAD_SECS`, relied on for the key set's staleness bound after
    /// the last good read.
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client) -> Self {
        let verifier = Arc::new(crate::services::verifier_for(config));
        let keys = AuthenticatedKeys::from_config(config, dynamodb, kms);
        Self::new(keys, verifier, config.key_reload, config.key_set_max_staleness())
    }

    /// The ring of a function off the hot path that checks tokens of any audience this
    /// issuer serves (token exchange, introspection): re-read every `KEY_SET_RELOAD_SECS`,
    /// relied on for the key set's staleness bound.
    pub fn for_any_audience(config: &Config, dynamodb: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client) -> Self {
        let verifier = Arc::new(crate::services::verifier_accepting(config, Audiences::Any));
        let keys = AuthenticatedKeys::from_config(config, dynamodb, kms);
        Self::new(keys, verifier, config.key_reload, config.key_set_max_staleness())
    }

    /// A ring that keeps `verifier` (usually built with no keys) up to date from `keys`,
    /// reading at most once per `every` and never more than once a second (a revocation
    /// poll of 0, every request, does not make the key set a read per request).
    pub fn new(keys: AuthenticatedKeys, verifier: Arc<Verifier>, every: Duration, max_staleness: Duration) -> Self {
        let every = every.max(Duration::from_secs(1));
        Self::with_polled(keys, verifier, Polled::new(every, max_staleness))
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
        let every = every.max(Duration::from_secs(1));
        Self::with_polled(keys, verifier, Polled::new(every, max_staleness).read_at(loaded_at))
    }

    fn with_polled(keys: AuthenticatedKeys, verifier: Arc<Verifier>, polled: Polled) -> Self {
        let ring = Ring { keys, verifier, polled, version: Mutex::new(None), replaced: AtomicU64::new(0) };
        Self { shared: Arc::new(ring), reads: ReadBeside::default() }
    }

    /// The verifier whose keys this ring keeps.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.shared.verifier
    }

    /// The verifier with the key set as of at most `every` ago, after a reload if one is
    /// due (waited for); an error if the set could not be read for longer than the
    /// staleness bound: a key removed meanwhile must not vouch for a token (callers off
    /// the hot path, answering 503).
    pub async fn fresh_verifier(&self, now: u64) -> Result<&Verifier, DependencyError> {
        if self.sync(now).await.freshness == Freshness::Stale {
            return Err(stale_key_set());
        }
        Ok(self.verifier())
    }

    /// Reloads the set if the last attempt is `every` old, waiting for that read, and says
    /// whether the keys may be used (a cold start, and callers off the hot path).
    pub async fn sync(&self, now: u64) -> KeySync {
        self.sync_until(now, None).await
    }

    /// Starts a reload if the last attempt is `every` old and none is under way, waits for
    /// it until `deadline` at most (then it finishes beside later requests), and says
    /// whether the keys held may be used at `now`.
    pub async fn sync_until(&self, now: u64, deadline: Option<Instant>) -> KeySync {
        let replaced_before = self.shared.replaced.load(Ordering::Acquire);
        let ring = Arc::clone(&self.shared);
        let read = || async move { ring.load(now).await };
        self.reads.read_if_due(&self.shared.polled, now, deadline, read, KEY_SET_READS).await;
        let changed = self.shared.replaced.load(Ordering::Acquire) != replaced_before;
        KeySync { freshness: self.freshness(now), changed }
    }

    /// Whether a reload that started after the last good one has failed.
    pub fn reads_failing(&self) -> bool {
        self.shared.polled.failing()
    }

    /// Waits for the reload under way, if any, until `deadline` at most (starting none),
    /// and says whether the keys held may now be used.
    pub async fn settle(&self, now: u64, deadline: Instant) -> Freshness {
        self.reads.settled_by(deadline).await;
        self.freshness(now)
    }

    /// Whether a reload is under way.
    pub fn reading(&self) -> bool {
        self.reads.in_flight()
    }

    /// The generation of the verifier's keys: how many times this ring has replaced them.
    /// What was verified with one generation (the authorizer's verified-token cache) is not
    /// trusted with the next: a key may have left the set.
    pub fn generation(&self) -> u64 {
        self.shared.replaced.load(Ordering::Acquire)
    }

    /// Replaces the verifier's keys as a read of a new set does (unit tests of what the
    /// replacement does to caches, without a Keys table).
    #[cfg(test)]
    pub(crate) fn replace_for_tests(&self, keys: Vec<TrustedKey>) {
        self.shared.verifier.replace_keys(keys);
        self.shared.replaced.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the keys were loaded within the staleness bound.
    pub fn freshness(&self, now: u64) -> Freshness {
        self.shared.polled.freshness(now)
    }
}

impl Ring {
    /// Reads the set and hands its trusted keys to the verifier if it is newer than the one
    /// the verifier has (versions only grow, so a slow read never undoes a newer one). A
    /// good read counts as of `now`, when it started.
    async fn load(&self, now: u64) {
        let set = match self.keys.get().await {
            Ok(set) => set,
            Err(e) => return self.failed(now, &e),
        };
        let mut version = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        if version.is_some_and(|v| set.version <= v) {
            self.polled.succeeded(now);
            return;
        }
        let keys = match trusted_keys(&set) {
            Ok(keys) => keys,
            Err(e) => return self.failed(now, &e),
        };
        tracing::info!(version = set.version, keys = keys.len(), "key set loaded");
        self.verifier.replace_keys(keys);
        *version = Some(set.version);
        self.replaced.fetch_add(1, Ordering::AcqRel);
        self.polled.succeeded(now);
    }

    /// A read that started at `now` failed: logged, counted, and remembered as failing.
    fn failed(&self, now: u64, e: &DependencyError) {
        self.polled.failed(now);
        tracing::warn!(error = %e, "key set not reloaded; the last keys stay in use");
        metrics::count("keys", "KeySetReadFailures", "failed");
    }
}

/// The key the set names current, ready to sign: through KMS, or decrypted into memory.
#[derive(Debug)]
pub enum CurrentKey {
    /// A KMS-held key: every token a `kms:Sign`.
    Kms(KmsSigner),
    /// An envelope key, decrypted once: no KMS call per token.
    Envelope(EnvelopeSigner),
}

impl CurrentKey {
    /// The key id of its tokens.
    pub fn kid(&self) -> &str {
        match self {
            Self::Kms(key) => key.kid(),
            Self::Envelope(key) => key.kid(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Kms(_) => KeyKind::Kms,
            Self::Envelope(_) => KeyKind::Envelope,
        }
    }
}

impl Signer for CurrentKey {
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a> {
        match self {
            Self::Kms(key) => key.sign_jws(payload),
            Self::Envelope(key) => key.sign_jws(payload),
        }
    }
}

/// The signer of login and refresh: signs with the key set's current key, re-reading the
/// set at most once per `every`. A due re-read is waited for at most [`READ_BUDGET`], then
/// finishes beside later requests ([`ReadBeside`]) while the key held signs, so a slow or
/// absent DynamoDB costs a login or refresh at most that; a signer that holds no key yet,
/// or whose key is past the staleness bound, waits for the read (it has nothing it may
/// sign with). A promotion therefore reaches every signer within `every`, and the request
/// that finds a slow read due may still sign with the key before; the retirement gate waits
/// for the staleness bound on top of the token lifetime ([`Config::key_timings`]). An envelope key is
/// decrypted once, when the set first names it current. If a re-read fails, the key it
/// knows keeps signing until the staleness bound ([`Config::key_set_max_staleness`]), then
/// signing fails (503) rather than guess.
pub struct KeySetSigner {
    state: Arc<SignerState>,
    reads: ReadBeside,
}

/// What a signer and its background reads share.
struct SignerState {
    keys: AuthenticatedKeys,
    kms: aws_sdk_kms::Client,
    polled: Polled,
    clock: Arc<dyn Clock>,
    loaded: Mutex<Option<Arc<CurrentKey>>>,
    /// Held by the one read under way, so concurrent first requests decrypt once.
    reading: tokio::sync::Mutex<()>,
}

impl fmt::Debug for KeySetSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySetSigner").field("polled", &self.state.polled).finish_non_exhaustive()
    }
}

impl KeySetSigner {
    /// A signer over the set in `keys`, signing through `kms` (KMS-held keys) or with keys
    /// it decrypts through `kms` (envelope keys), re-reading the set every `every` and
    /// signing with the key last read for at most `max_staleness`.
    pub fn new(
        keys: AuthenticatedKeys,
        kms: aws_sdk_kms::Client,
        every: Duration,
        max_staleness: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let polled = Polled::new(every.max(Duration::from_secs(1)), max_staleness);
        let state =
            SignerState { keys, kms, polled, clock, loaded: Mutex::new(None), reading: tokio::sync::Mutex::new(()) };
        Self { state: Arc::new(state), reads: ReadBeside::default() }
    }

    /// The signer a deployment configured (Keys table, `KEY_SET_RELOAD_SECS`), having read
    /// the set (and decrypted an envelope key) once so the first request need not. A failed
    /// read is not fatal here: the first request reads again, and answers 503 if it fails too.
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

    /// The current key, as of at most `every` ago (plus a read that outlasted its budget).
    pub async fn current(&self) -> Result<Arc<CurrentKey>, DependencyError> {
        let now = self.state.clock.now();
        let held = self.state.held();
        let Some(held) = held else {
            return self.state.read_now(now, false).await;
        };
        // Past the bound nothing may sign until a read succeeds: wait for a read it starts.
        let deadline = match self.state.polled.freshness(now) {
            Freshness::Fresh => Some(Instant::now() + READ_BUDGET),
            Freshness::Stale => None,
        };
        let state = Arc::clone(&self.state);
        let read = || async move {
            let _ = state.read_now(now, false).await;
        };
        self.reads.read_if_due(&self.state.polled, now, deadline, read, KEY_SET_READS).await;
        match self.state.polled.freshness(now) {
            Freshness::Fresh => Ok(self.state.held().unwrap_or(held)),
            Freshness::Stale => Err(stale_key_set()),
        }
    }
}

impl SignerState {
    fn held(&self) -> Option<Arc<CurrentKey>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the set now (one read at a time) and returns its current key, decrypting an
    /// envelope key only if it is not the one held. Unless `again`, a read that another
    /// caller finished while this one waited for its turn is taken as this one's.
    async fn read_now(&self, now: u64, again: bool) -> Result<Arc<CurrentKey>, DependencyError> {
        let _turn = self.reading.lock().await;
        if !again {
            if let Some(held) = self.held() {
                if self.polled.last_success().is_some_and(|at| at >= now) {
                    return Ok(held);
                }
            }
        }
        match self.read_current().await {
            Ok(key) => {
                *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&key));
                self.polled.succeeded(now);
                Ok(key)
            }
            Err(e) => {
                self.polled.failed(now);
                tracing::warn!(error = %e, "key set not reloaded; signing with the key last read while it is fresh");
                metrics::count("keys", "KeySetReadFailures", "failed");
                Err(e)
            }
        }
    }

    async fn read_current(&self) -> Result<Arc<CurrentKey>, DependencyError> {
        let set = self.keys.get().await?;
        let current = set.current().ok_or_else(|| {
            DependencyError::Corrupt("the key set has no current key (run `authctl keys rotate`)".to_owned())
        })?;
        if let Some(held) = self.held() {
            if held.kid() == current.kid && held.kind() == current.kind {
                return Ok(held);
            }
        }
        let public = trusted_key(current)?;
        let key = match current.kind {
            KeyKind::Kms => CurrentKey::Kms(KmsSigner::new(self.kms.clone(), &current.kms_key_id, &public)),
            KeyKind::Envelope => CurrentKey::Envelope(EnvelopeSigner::decrypt(&self.kms, current, &public).await?),
        };
        tracing::info!(version = set.version, kid = key.kid(), kind = key.kind().as_str(), "signing key loaded");
        Ok(Arc::new(key))
    }
}

impl Signer for KeySetSigner {
    /// Signs with the current key. If KMS refuses (a KMS-held key), the key may have just
    /// been revoked (its KMS key is then pending deletion and cannot sign): the set is read
    /// again at once and, if another key signs now, the token is signed with that one, so an
    /// emergency revoke costs no request its token.
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> JwsFuture<'a> {
        Box::pin(async move {
            let signer = self.current().await?;
            match signer.sign_jws(payload).await {
                Err(refused @ DependencyError::Kms { .. }) => {
                    let now_current = self.state.read_now(self.state.clock.now(), true).await?;
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
