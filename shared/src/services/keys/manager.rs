//! Changes to the key set: the one path for `authctl keys` and the scheduled rotation.
//! Each change reads the set, applies one rule of [`crate::rules::keys::set`] and writes the set back
//! conditionally on the version it read; if another change landed in between, it reads
//! again and decides again, so two runs at once leave one consistent set. It changes only
//! a set whose signature verifies and signs each change it writes, so a rotation never
//! vouches for a key that someone else put into the table. KMS work that a
//! lost race leaves behind (a key created for a set that got another) is undone.

use std::fmt;
use std::sync::Arc;

use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::envelope::create_envelope_key;
use super::kms::fetch_public_key;
use super::AuthenticatedKeys;
use crate::error::DependencyError;
use crate::platform::clock::Clock;
use crate::platform::retry;
use crate::rules::keys::set::{DueStep, KeyKind, KeyRefusal, KeySet, KeyStep, KeyTimings, NewKey};
use crate::rules::keys::KeyAlgorithm;

/// The tag every key of a set carries (value: the set's name, `KEY_SET_TAG`). Signers may
/// `kms:Sign` only with keys that carry it (`infra/template.yaml`).
pub const KEY_SET_TAG_KEY: &str = "tokenauth:key-set";

/// Why a change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KeyChangeError {
    /// The lifecycle refused it (a gate, or nothing to do).
    #[error(transparent)]
    Refused(#[from] KeyRefusal),
    /// KMS or DynamoDB failed; the set is as it was, or as the last landed write left it.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// Other changes kept landing first.
    #[error("the key set kept changing underneath; try again")]
    Contended,
}

/// What to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Create a new KMS key of this algorithm, tagged for the set.
    Create(KeyAlgorithm),
    /// Make a new ES256 envelope key under `ENVELOPE_KEY_ID` ([`super::envelope`]).
    Envelope,
    /// Adopt an existing KMS key (tagged for the set on adoption).
    Adopt(String),
}

/// Performs key-set changes with KMS and the Keys table.
pub struct KeyManager {
    keys: AuthenticatedKeys,
    kms: aws_sdk_kms::Client,
    timings: KeyTimings,
    set_name: String,
    deletion_window_days: i32,
    sealing_key_id: String,
    signing_key_policy: Option<String>,
    kind: KeyKind,
    envelope_key_id: String,
    /// The public key that verifies the set (`KEY_SET_VERIFY_KEY`): never a token key.
    trust_root: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager").field("timings", &self.timings).field("set_name", &self.set_name).finish()
    }
}

impl KeyManager {
    /// A manager of the set in `config`'s Keys table with its gates.
    pub fn from_config(
        config: &crate::platform::config::Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys: AuthenticatedKeys::from_config(config, dynamodb, kms.clone()),
            kms,
            timings: config.key_timings(),
            set_name: config.key_set_tag.clone(),
            deletion_window_days: config.key_deletion_days,
            sealing_key_id: config.sealing_key_id.clone(),
            signing_key_policy: config.signing_key_policy.clone(),
            kind: config.signing_key_kind,
            envelope_key_id: config.envelope_key_id.clone(),
            trust_root: config.key_set_verify_key.trim().to_owned(),
            clock,
        }
    }

    /// The set as stored, if its signature verifies.
    pub async fn list(&self) -> Result<KeySet, DependencyError> {
        self.keys.get().await
    }

    /// Adds a key: pending, or current if the set is empty.
    pub async fn add(&self, source: KeySource) -> Result<KeyStep, KeyChangeError> {
        self.add_when(source, |_, _| true).await
    }

    /// Adds a key if `still_wanted` holds for the set it is written into.
    async fn add_when(
        &self,
        source: KeySource,
        still_wanted: impl Fn(&KeySet, u64) -> bool,
    ) -> Result<KeyStep, KeyChangeError> {
        // A set with keys has a sealing secret for refresh: made with its first key.
        if super::sealing::ensure_sealing_secret(self.keys.table(), &self.kms, &self.sealing_key_id).await? {
            tracing::info!(target: "audit", event = "sealing_secret_created");
        }
        // Refuse before creating anything in KMS when the set already says no.
        let set = self.keys.get().await?;
        if let Some(pending) = set.pending() {
            return Err(KeyRefusal::AlreadyPending(pending.kid.clone()).into());
        }
        let (key, created) = match source {
            KeySource::Create(alg) => (self.create_key(alg).await?, true),
            // Nothing to undo in KMS: a lost key pair is a ciphertext nobody stored.
            KeySource::Envelope => (create_envelope_key(&self.kms, &self.envelope_key_id).await?, false),
            KeySource::Adopt(id) => {
                let key = self.describe(&id).await?;
                // Before it is tagged for the set (which would let signers use it).
                if key.public_key == self.trust_root {
                    return Err(KeyRefusal::TrustRoot.into());
                }
                (self.adopt_key(key).await?, false)
            }
        };
        let result = self
            .change(|set, now| if still_wanted(set, now) { set.add(key.clone(), now) } else { Err(KeyRefusal::NotDue) })
            .await;
        match &result {
            Ok(step) => audit(step, false),
            // Certainly not in the set: the write was refused or never landed.
            Err(KeyChangeError::Refused(_) | KeyChangeError::Contended) if created => {
                self.delete_key(&key.kms_key_id).await
            }
            // The write may have landed with its answer lost: the key may be in the set, so
            // it stays (a tagged key; `authctl keys list` shows whether the set has it).
            Err(KeyChangeError::Dependency(e)) if created => tracing::error!(
                target: "audit",
                event = "key_add_uncertain",
                kms_key_id = key.kms_key_id.as_str(),
                error = %e,
                "the key set write failed; if `authctl keys list` does not show this key, schedule its deletion"
            ),
            Err(_) => {}
        }
        result
    }

    /// What a new key is made from in this deployment (`SIGNING_KEY_KIND`): an envelope key,
    /// or a KMS key of the algorithm of the KMS key in use (ES256 if none is).
    pub fn next_key_source(&self, set: &KeySet) -> KeySource {
        match self.kind {
            KeyKind::Envelope => KeySource::Envelope,
            KeyKind::Kms => KeySource::Create(
                set.current().filter(|c| c.kind == KeyKind::Kms).map_or(KeyAlgorithm::ES256, |c| c.alg),
            ),
        }
    }

    /// Promotes the pending key (gated unless `force`).
    pub async fn promote(&self, force: bool) -> Result<KeyStep, KeyChangeError> {
        let timings = self.timings;
        self.change(|set, now| set.promote(now, &timings, force)).await.inspect(|s| audit(s, force))
    }

    /// Retires the oldest previous key (gated unless `force`) and schedules its KMS key for
    /// deletion.
    pub async fn retire(&self, force: bool) -> Result<KeyStep, KeyChangeError> {
        let timings = self.timings;
        let step = self.change(|set, now| set.retire(now, &timings, force)).await?;
        audit(&step, force);
        if let KeyStep::Retired { kms_key_id: Some(kms_key_id), .. } = &step {
            self.delete_key(kms_key_id).await;
        }
        Ok(step)
    }

    /// Emergency: distrusts `kid` now (a current key hands over to the pending one) and
    /// schedules its KMS key for deletion, which also stops it signing at once.
    pub async fn revoke(&self, kid: &str) -> Result<KeyStep, KeyChangeError> {
        let step = self.change(|set, now| set.revoke(kid, now)).await?;
        audit(&step, false);
        if let KeyStep::Revoked { kms_key_id: Some(kms_key_id), .. } = &step {
            self.delete_key(kms_key_id).await;
        }
        Ok(step)
    }

    /// The next due step of the schedule, if any: what the rotation function runs. Safe to
    /// run twice at once: the second finds the step done, or loses the write and finds
    /// nothing due.
    pub async fn rotate(&self) -> Result<Option<KeyStep>, KeyChangeError> {
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            let set = self.keys.get().await?;
            let kind = self.kind;
            let step = match set.due_step(self.clock.now(), &self.timings, kind) {
                None => return Ok(None),
                Some(DueStep::Add) => {
                    // Only while an addition is still due when the set is written: another
                    // run may have added (or bootstrapped) meanwhile.
                    let source = self.next_key_source(&set);
                    let timings = self.timings;
                    self.add_when(source, |set, now| set.due_step(now, &timings, kind) == Some(DueStep::Add)).await
                }
                Some(DueStep::Promote) => self.promote(false).await,
                Some(DueStep::Retire(_)) => self.retire(false).await,
            };
            match step {
                Ok(step) => return Ok(Some(step)),
                // Another run did it first: look again.
                Err(KeyChangeError::Refused(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KeyChangeError::Contended)
    }

    /// Reads, applies `rule`, writes conditionally; again if another write landed first.
    async fn change(
        &self,
        rule: impl Fn(&mut KeySet, u64) -> Result<KeyStep, KeyRefusal>,
    ) -> Result<KeyStep, KeyChangeError> {
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            let mut set = self.keys.get().await?;
            let read_version = set.version;
            let now = self.clock.now();
            let step = rule(&mut set, now)?;
            set.forget_old_keys(now);
            if self.keys.replace(&set, read_version).await? {
                return Ok(step);
            }
        }
        Err(KeyChangeError::Contended)
    }

    /// A new SIGN_VERIFY key under `SIGNING_KEY_POLICY`, then tagged for the set. Tagged
    /// after creation, not in CreateKey: tags at creation need a `kms:TagResource` grant in
    /// IAM that covers every key of the account (the key does not exist yet), which would
    /// let the caller tag, and so adopt, any key; tagging afterwards is granted by the new
    /// key's own policy. A key whose tagging fails is scheduled for deletion.
    async fn create_key(&self, alg: KeyAlgorithm) -> Result<NewKey, DependencyError> {
        let spec = match alg {
            KeyAlgorithm::ES256 => KeySpec::EccNistP256,
            KeyAlgorithm::RS256 => KeySpec::Rsa2048,
        };
        let out = self
            .kms
            .create_key()
            .key_spec(spec)
            .key_usage(KeyUsageType::SignVerify)
            .description(format!("tokenauth access-token signing key ({})", self.set_name))
            .set_policy(self.signing_key_policy.clone())
            .send()
            .await
            .map_err(|e| DependencyError::kms("CreateKey", e))?;
        let arn = out.key_metadata().map(|m| m.arn().unwrap_or(m.key_id()).to_owned()).ok_or_else(|| {
            DependencyError::Kms { operation: "CreateKey", message: "no key metadata in the answer".into() }
        })?;
        let tagged = match self.set_tag() {
            Ok(tag) => self
                .kms
                .tag_resource()
                .key_id(&arn)
                .tags(tag)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DependencyError::kms("TagResource", e)),
            Err(e) => Err(e),
        };
        if let Err(e) = tagged {
            self.delete_key(&arn).await;
            return Err(e);
        }
        match self.describe(&arn).await {
            // CreateKey's ARN: the one name of the key in IAM policies and audit lines.
            Ok(key) => Ok(NewKey { kms_key_id: arn, ..key }),
            Err(e) => {
                self.delete_key(&arn).await;
                Err(e)
            }
        }
    }

    /// An existing key, tagged for the set so signers may use it.
    async fn adopt_key(&self, key: NewKey) -> Result<NewKey, DependencyError> {
        self.kms
            .tag_resource()
            .key_id(&key.kms_key_id)
            .tags(self.set_tag()?)
            .send()
            .await
            .map_err(|e| DependencyError::kms("TagResource", e))?;
        Ok(key)
    }

    /// The tag that makes a KMS key one of the set's (the one IAM lets signers use).
    fn set_tag(&self) -> Result<Tag, DependencyError> {
        Tag::builder()
            .tag_key(KEY_SET_TAG_KEY)
            .tag_value(&self.set_name)
            .build()
            .map_err(|e| DependencyError::Internal(e.to_string()))
    }

    /// The key's public half (`kms:GetPublicKey`) as an entry to add.
    async fn describe(&self, key_id: &str) -> Result<NewKey, DependencyError> {
        let (arn, key) = fetch_public_key(&self.kms, key_id).await?;
        Ok(NewKey {
            kid: key.kid().to_owned(),
            alg: key.algorithm(),
            kind: KeyKind::Kms,
            kms_key_id: arn,
            public_key: B64.encode(key.spki()),
            wrapped_private_key: None,
        })
    }

    /// Schedules a key's deletion (never immediate: KMS waits 7–30 days, and the key can no
    /// longer sign meanwhile). A failure is logged, not returned: the set no longer trusts
    /// the key either way, and a key left behind costs money, not safety.
    async fn delete_key(&self, key_id: &str) {
        // By key id: KMS takes the ARN too, the emulator (moto 5) answers 500 to it.
        let key_id = key_id.rsplit_once(":key/").map_or(key_id, |(_, id)| id);
        let scheduled = self
            .kms
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(self.deletion_window_days)
            .send()
            .await;
        match scheduled {
            Ok(_) => {
                tracing::info!(target: "audit", event = "key_deletion_scheduled", key_id, days = self.deletion_window_days)
            }
            Err(e) => tracing::error!(
                target: "audit",
                event = "key_deletion_scheduled",
                outcome = "failed",
                key_id,
                error = %crate::error::error_chain(&e),
                "schedule the deletion by hand"
            ),
        }
    }
}

/// One audit line per change, with whether a gate was forced.
fn audit(step: &KeyStep, forced: bool) {
    let kid = match step {
        KeyStep::Added { kid }
        | KeyStep::Bootstrapped { kid }
        | KeyStep::Promoted { kid, .. }
        | KeyStep::Retired { kid, .. }
        | KeyStep::Revoked { kid, .. } => kid.as_str(),
    };
    if forced {
        tracing::warn!(target: "audit", event = step.name(), kid, forced, "a lifecycle gate was overridden with --force");
    } else {
        tracing::info!(target: "audit", event = step.name(), kid, forced);
    }
    crate::platform::metrics::count("keys", "KeySetChanges", step.name());
}
