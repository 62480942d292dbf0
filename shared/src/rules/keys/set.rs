//! The key set and its lifecycle: which keys sign, which are trusted, and when a key may
//! move on. Rules only, no I/O: [`crate::services::keys::KeyManager`] reads the set, applies one of
//! these steps and writes it back conditionally.
//!
//! ```text
//!   add ──► pending ──promote──► current ──promote (of the next)──► previous ──retire──► retired
//!              │                    │                                   │
//!              └────────────────────┴──────────── revoke ───────────────┴──► revoked
//! ```
//!
//! - `pending`: published in the JWKS and trusted, not signing. Promotion waits until it
//!   has been published for [`KeyTimings::publish_lead`], longer than any cache of the
//!   JWKS we document, so no verifier meets a token of a key it has not seen.
//! - `current`: signs; exactly one (none only before the first key).
//! - `previous`: trusted, not signing. Retirement waits [`KeyTimings::retire_after`] past
//!   its promotion: the last signer has stopped using it and its last token has expired.
//! - `retired` / `revoked`: neither published nor trusted. `revoke` is the emergency exit
//!   that skips every gate: a compromised key is distrusted at once, live tokens included.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::KeyAlgorithm;

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published and trusted, not signing yet.
    Pending,
    /// Signs every new token.
    Current,
    /// Trusted until its last token has expired.
    Previous,
    /// Neither published nor trusted; its KMS key is scheduled for deletion.
    Retired,
    /// Distrusted in an emergency, live tokens included.
    Revoked,
}

impl KeyState {
    /// The state's name as stored and listed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }

    /// Whether tokens of a key in this state are accepted (and the key published).
    pub fn is_trusted(self) -> bool {
        matches!(self, Self::Pending | Self::Current | Self::Previous)
    }
}

/// Where a key's private half lives, and so what signing with it costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// In KMS, never out of it: every token is a `kms:Sign`.
    #[default]
    Kms,
    /// An ES256 key pair made by KMS (`GenerateDataKeyPairWithoutPlaintext`) whose private
    /// half is stored only encrypted under a symmetric KMS key; a signer decrypts it once
    /// and signs locally, so a token costs no KMS call. Rotated often.
    Envelope,
}

impl KeyKind {
    /// The kind's name as configured (`SIGNING_KEY_KIND`) and listed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kms => "kms",
            Self::Envelope => "envelope",
        }
    }

    /// `kms` or `envelope`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "kms" => Some(Self::Kms),
            "envelope" => Some(Self::Envelope),
            _ => None,
        }
    }

    fn is_kms(&self) -> bool {
        *self == Self::Kms
    }
}

/// One key of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The RFC 7638 thumbprint of the public key: the `kid` of its tokens.
    pub kid: String,
    /// ES256 (ECC_NIST_P256) or RS256 (RSA_2048).
    pub alg: KeyAlgorithm,
    /// KMS-held or envelope. Not stored for KMS-held keys, so sets written before envelope
    /// keys existed keep their exact bytes (and their MAC).
    #[serde(default, skip_serializing_if = "KeyKind::is_kms")]
    pub kind: KeyKind,
    /// The KMS key (ARN) that holds the private half (KMS-held), or under which the private
    /// half is encrypted (envelope).
    pub kms_key_id: String,
    /// Envelope keys: the private half (PKCS #8) as KMS encrypted it, bound by its
    /// encryption context to this `kid`. Erased when the key is retired or revoked.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub wrapped_private_key: Option<Vec<u8>>,
    /// The public key, DER SubjectPublicKeyInfo in standard base64, as
    /// `kms:GetPublicKey` returned it: verifiers need no KMS call.
    pub public_key: String,
    /// Its state.
    pub state: KeyState,
    /// When it entered that state (Unix seconds): the gates count from here.
    pub since: u64,
}

/// The whole set, as one item: one read gives every verifier and signer all it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// Bumped by every change; writes are conditional on it, so two changes that read the
    /// same set cannot both land.
    pub version: u64,
    /// Every key, oldest first.
    pub entries: Vec<KeyEntry>,
}

/// A key to add: what KMS said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Its thumbprint.
    pub kid: String,
    /// Its algorithm.
    pub alg: KeyAlgorithm,
    /// KMS-held or envelope.
    pub kind: KeyKind,
    /// The KMS key (ARN).
    pub kms_key_id: String,
    /// DER SPKI, standard base64.
    pub public_key: String,
    /// Envelope keys: the encrypted private half.
    pub wrapped_private_key: Option<Vec<u8>>,
}

/// How long a retired or revoked key stays listed in the set (for `authctl keys list`).
pub const RETAINED_FOR: Duration = Duration::from_secs(400 * 86_400);

/// The same for envelope keys, which rotate daily: a year of them would fill a third of
/// the one item's 400 KB (every reader parses it), and the audit log keeps their history.
pub const ENVELOPE_RETAINED_FOR: Duration = Duration::from_secs(30 * 86_400);

/// How long each gate waits. Derived from the configuration
/// ([`crate::platform::config::Config::key_timings`]), so a test shortens them by configuring, never by force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTimings {
    /// A pending key is promoted only after it has been published this long: longer than
    /// the JWKS `max-age` we send and than our own functions' reload intervals.
    pub publish_lead: Duration,
    /// A previous key is retired only this long after it stopped being current: the
    /// signers' reload interval (a signer may still use it that long), the access-token
    /// lifetime, and twice the clock leeway.
    pub retire_after: Duration,
    /// The current key is replaced when it is this old: a new key is added
    /// `publish_lead` before, so it can be promoted on time.
    pub max_age: Duration,
    /// The same for a current envelope key (its private half is in signers' memory: rotated
    /// far more often).
    pub envelope_max_age: Duration,
}

impl KeyTimings {
    /// The age at which a current key of `kind` is replaced.
    pub fn max_age_of(&self, kind: KeyKind) -> Duration {
        match kind {
            KeyKind::Kms => self.max_age,
            KeyKind::Envelope => self.envelope_max_age,
        }
    }
}

/// A step of the lifecycle, as performed (for the audit line and the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStep {
    /// A key was added as pending.
    Added {
        /// Its kid.
        kid: String,
    },
    /// The first key of an empty set became current at once: no verifier trusts any
    /// other key, so there is nothing to wait for.
    Bootstrapped {
        /// Its kid.
        kid: String,
    },
    /// The pending key became current; the current one became previous.
    Promoted {
        /// The new current key.
        kid: String,
        /// The key it replaced, if any.
        replaced: Option<String>,
    },
    /// A previous key was retired.
    Retired {
        /// Its kid.
        kid: String,
        /// Its KMS key, to schedule for deletion (KMS-held keys; an envelope key's private
        /// half is erased from the set instead, and the key it was encrypted under stays).
        kms_key_id: Option<String>,
    },
    /// A key was revoked; if it was current, the pending key took its place.
    Revoked {
        /// Its kid.
        kid: String,
        /// Its KMS key, to schedule for deletion (KMS-held keys, as for `Retired`).
        kms_key_id: Option<String>,
        /// The pending key promoted in its place.
        promoted: Option<String>,
    },
}

impl KeyStep {
    /// The step's name in audit lines.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Added { .. } => "key_added",
            Self::Bootstrapped { .. } => "key_bootstrapped",
            Self::Promoted { .. } => "key_promoted",
            Self::Retired { .. } => "key_retired",
            Self::Revoked { .. } => "key_revoked",
        }
    }
}

impl fmt::Display for KeyStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Added { kid } => write!(f, "added key {kid} as pending"),
            Self::Bootstrapped { kid } => write!(f, "added key {kid} as current (the set had no key)"),
            Self::Promoted { kid, replaced: Some(old) } => {
                write!(f, "promoted key {kid} to current; key {old} is previous")
            }
            Self::Promoted { kid, replaced: None } => write!(f, "promoted key {kid} to current"),
            Self::Retired { kid, kms_key_id } => {
                write!(f, "retired key {kid}; ")?;
                erased(f, kms_key_id.as_deref())
            }
            Self::Revoked { kid, kms_key_id, promoted } => {
                write!(f, "revoked key {kid}; ")?;
                erased(f, kms_key_id.as_deref())?;
                match promoted {
                    Some(new) => write!(f, "; key {new} is current"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// What became of a key that left the set: its KMS key deleted, or its private half erased.
fn erased(f: &mut fmt::Formatter<'_>, kms_key_id: Option<&str>) -> fmt::Result {
    match kms_key_id {
        Some(id) => write!(f, "its KMS key {id} is scheduled for deletion"),
        None => f.write_str("its encrypted private key is erased from the set"),
    }
}

/// What the next due step of a scheduled rotation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueStep {
    /// Retire this previous key.
    Retire(String),
    /// Promote the pending key.
    Promote,
    /// Add a pending key of the configured kind.
    Add,
}

/// Why a step was refused. Each says what it waits for and until when.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// A gate has not opened yet.
    #[error("{what}: waiting for {gate} until {} ({} s from now); --force overrides it", rfc3339(*until), until.saturating_sub(*now))]
    Gate {
        /// What was asked.
        what: &'static str,
        /// What the gate waits for.
        gate: &'static str,
        /// When it opens (Unix seconds).
        until: u64,
        /// The time of the check.
        now: u64,
    },
    /// There is no pending key to promote (or to take over from a revoked current key).
    #[error("{0}: there is no pending key; add one first (`authctl keys add`)")]
    NoPending(&'static str),
    /// There is already a pending key.
    #[error("add: key {0} is already pending; promote it before adding another")]
    AlreadyPending(String),
    /// There is no previous key to retire.
    #[error("retire: there is no previous key")]
    NoPrevious,
    /// The key is in the set already.
    #[error("add: the key is already in the set as {0}")]
    Duplicate(String),
    /// The key is the key set's own signing key (the trust root), never a token signing key.
    #[error("add: that KMS key signs the key set (KEY_SET_VERIFY_KEY's); it never signs tokens")]
    TrustRoot,
    /// A scheduled step is no longer due (another run did it first).
    #[error("rotate: nothing is due any more")]
    NotDue,
    /// No trusted key has this kid.
    #[error("revoke: no published key has kid {0}")]
    UnknownKid(String),
}

/// The label in front of every signed set: a signature made for anything else never
/// verifies a set.
const AUTHENTICATED_LABEL: &[u8] = b"tokenauth key set v1\n";

impl KeySet {
    /// The bytes the set's signature covers (`kms:Sign`, ECDSA P-256 with SHA-256): a fixed
    /// label and the SHA-256 of the set as JSON (fields in declaration order, entries as
    /// stored), so a change to the version or to any field of any entry changes them, and
    /// they stay 53 bytes however many keys the set lists (KMS signs at most 4 KiB raw).
    pub fn authenticated_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json);
        [AUTHENTICATED_LABEL, digest.as_ref()].concat()
    }

    /// The key that signs now.
    pub fn current(&self) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.state == KeyState::Current)
    }

    /// The pending key, if one waits.
    pub fn pending(&self) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.state == KeyState::Pending)
    }

    /// Every key whose tokens are accepted and which the JWKS publishes: pending, current
    /// and previous, in that order of age.
    pub fn trusted(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.iter().filter(|e| e.state.is_trusted())
    }

    /// Adds `key` as pending, or as current if the set has no current key yet.
    pub fn add(&mut self, key: NewKey, now: u64) -> Result<KeyStep, KeyRefusal> {
        // Envelope keys share the KMS key their private halves are encrypted under.
        let same_kms_key =
            |e: &KeyEntry| key.kind == KeyKind::Kms && e.kind == KeyKind::Kms && e.kms_key_id == key.kms_key_id;
        if let Some(existing) = self.entries.iter().find(|e| e.kid == key.kid || same_kms_key(e)) {
            return Err(KeyRefusal::Duplicate(existing.state.as_str().to_owned()));
        }
        if let Some(pending) = self.pending() {
            return Err(KeyRefusal::AlreadyPending(pending.kid.clone()));
        }
        let bootstrap = self.current().is_none();
        let state = if bootstrap { KeyState::Current } else { KeyState::Pending };
        let kid = key.kid.clone();
        self.entries.push(KeyEntry {
            kid: key.kid,
            alg: key.alg,
            kind: key.kind,
            kms_key_id: key.kms_key_id,
            wrapped_private_key: key.wrapped_private_key,
            public_key: key.public_key,
            state,
            since: now,
        });
        self.version += 1;
        Ok(if bootstrap { KeyStep::Bootstrapped { kid } } else { KeyStep::Added { kid } })
    }

    /// Makes the pending key current and the current key previous, once the pending key
    /// has been published for `publish_lead` (or with `force`).
    pub fn promote(&mut self, now: u64, timings: &KeyTimings, force: bool) -> Result<KeyStep, KeyRefusal> {
        let pending = self.pending().ok_or(KeyRefusal::NoPending("promote"))?;
        let opens = pending.since.saturating_add(timings.publish_lead.as_secs());
        if now < opens && !force {
            return Err(KeyRefusal::Gate {
                what: "promote",
                gate: "the pending key to be published longer than any JWKS cache",
                until: opens,
                now,
            });
        }
        Ok(self.promote_pending(now))
    }

    /// Retires the oldest previous key once it has been out of use for `retire_after`
    /// (or with `force`).
    pub fn retire(&mut self, now: u64, timings: &KeyTimings, force: bool) -> Result<KeyStep, KeyRefusal> {
        let index = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state == KeyState::Previous)
            .min_by_key(|(_, e)| e.since)
            .map(|(i, _)| i)
            .ok_or(KeyRefusal::NoPrevious)?;
        let opens = self.entries[index].since.saturating_add(timings.retire_after.as_secs());
        if now < opens && !force {
            return Err(KeyRefusal::Gate {
                what: "retire",
                gate: "the last token signed with the previous key to expire",
                until: opens,
                now,
            });
        }
        let entry = &mut self.entries[index];
        entry.state = KeyState::Retired;
        entry.since = now;
        let kms_key_id = entry.leave();
        self.version += 1;
        Ok(KeyStep::Retired { kid: entry.kid.clone(), kms_key_id })
    }

    /// Distrusts the key `kid` at once. Revoking the current key needs a pending key,
    /// which becomes current in the same change, so the set always has a signer.
    pub fn revoke(&mut self, kid: &str, now: u64) -> Result<KeyStep, KeyRefusal> {
        let index = self
            .entries
            .iter()
            .position(|e| e.kid == kid && e.state.is_trusted())
            .ok_or_else(|| KeyRefusal::UnknownKid(kid.to_owned()))?;
        let promoted = match self.entries[index].state {
            KeyState::Current => {
                if self.pending().is_none() {
                    return Err(KeyRefusal::NoPending("revoke of the current key"));
                }
                match self.promote_pending(now) {
                    KeyStep::Promoted { kid, .. } => Some(kid),
                    _ => None,
                }
            }
            _ => None,
        };
        let entry = &mut self.entries[index];
        entry.state = KeyState::Revoked;
        entry.since = now;
        let kms_key_id = entry.leave();
        self.version += 1;
        Ok(KeyStep::Revoked { kid: entry.kid.clone(), kms_key_id, promoted })
    }

    /// The step a scheduled rotation performs now, if any: retire a previous key whose gate
    /// opened, else promote a pending key whose gate opened, else add a key (of `kind`, the
    /// deployment's) when there is none, when the current key will reach its kind's max age
    /// within the publish lead, or when the current key is of another kind (the deployment
    /// switched kinds: the migration starts at once, through the same gates).
    pub fn due_step(&self, now: u64, timings: &KeyTimings, kind: KeyKind) -> Option<DueStep> {
        let retire_at = |e: &KeyEntry| e.since.saturating_add(timings.retire_after.as_secs());
        if let Some(previous) =
            self.entries.iter().filter(|e| e.state == KeyState::Previous).find(|e| now >= retire_at(e))
        {
            return Some(DueStep::Retire(previous.kid.clone()));
        }
        if let Some(pending) = self.pending() {
            let opens = pending.since.saturating_add(timings.publish_lead.as_secs());
            return (now >= opens).then_some(DueStep::Promote);
        }
        let replace_from = |current: &KeyEntry| {
            let max_age = timings.max_age_of(current.kind);
            current.since.saturating_add(max_age.saturating_sub(timings.publish_lead).as_secs())
        };
        match self.current() {
            None => Some(DueStep::Add),
            Some(current) if current.kind != kind || now >= replace_from(current) => Some(DueStep::Add),
            Some(_) => None,
        }
    }

    /// Forgets retired and revoked keys that left the set more than `RETAINED_FOR` ago, so
    /// the one item never outgrows DynamoDB's 400 KB (an RSA entry is about 700 bytes). No
    /// verifier trusts them, their KMS keys are long deleted; the audit log keeps their
    /// history. Whether anything was dropped.
    pub fn forget_old_keys(&mut self, now: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| {
            let retained = match e.kind {
                KeyKind::Kms => RETAINED_FOR,
                KeyKind::Envelope => ENVELOPE_RETAINED_FOR,
            };
            e.state.is_trusted() || now.saturating_sub(e.since) <= retained.as_secs()
        });
        before != self.entries.len()
    }

    fn promote_pending(&mut self, now: u64) -> KeyStep {
        let mut replaced = None;
        for entry in &mut self.entries {
            if entry.state == KeyState::Current {
                entry.state = KeyState::Previous;
                entry.since = now;
                replaced = Some(entry.kid.clone());
            }
        }
        let mut kid = String::new();
        if let Some(pending) = self.entries.iter_mut().find(|e| e.state == KeyState::Pending) {
            pending.state = KeyState::Current;
            pending.since = now;
            kid = pending.kid.clone();
        }
        self.version += 1;
        KeyStep::Promoted { kid, replaced }
    }
}

impl KeyEntry {
    /// The key leaves the set (retired or revoked): an envelope key's private half is
    /// erased, so nothing readable from the table can sign with it again; a KMS-held key's
    /// KMS key is returned, to be scheduled for deletion.
    fn leave(&mut self) -> Option<String> {
        match self.kind {
            KeyKind::Kms => Some(self.kms_key_id.clone()),
            KeyKind::Envelope => {
                self.wrapped_private_key = None;
                None
            }
        }
    }
}

/// Unix seconds as an RFC 3339 UTC time, for messages people read.
pub fn rfc3339(secs: u64) -> String {
    use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
    let secs_i64 = i64::try_from(secs).unwrap_or(i64::MAX);
    DateTime::from_secs(secs_i64).fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| secs.to_string())
}

impl fmt::Display for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<9} {} {} {:<8} {} since {}",
            self.state.as_str(),
            self.kid,
            self.alg.as_str(),
            self.kind.as_str(),
            self.kms_key_id,
            rfc3339(self.since)
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;
    const TIMINGS: KeyTimings = KeyTimings {
        publish_lead: Duration::from_secs(3600),
        retire_after: Duration::from_secs(1000),
        max_age: Duration::from_secs(90 * 86_400),
        envelope_max_age: Duration::from_secs(86_400),
    };

    fn key(n: u8) -> NewKey {
        NewKey {
            kid: format!("kid-{n}"),
            alg: KeyAlgorithm::ES256,
            kind: KeyKind::Kms,
            kms_key_id: format!("arn:kms:key-{n}"),
            public_key: "AA==".to_owned(),
            wrapped_private_key: None,
        }
    }

    /// An envelope key: its private half encrypted under the one envelope KMS key.
    fn envelope(n: u8) -> NewKey {
        NewKey {
            kind: KeyKind::Envelope,
            kms_key_id: "arn:kms:envelope".to_owned(),
            wrapped_private_key: Some(vec![n; 8]),
            ..key(n)
        }
    }

    fn states(set: &KeySet) -> Vec<(&str, KeyState)> {
        set.entries.iter().map(|e| (e.kid.as_str(), e.state)).collect()
    }

    /// An empty set's first key signs at once; the next waits as pending.
    fn bootstrapped() -> KeySet {
        let mut set = KeySet::default();
        assert_eq!(set.add(key(1), T0), Ok(KeyStep::Bootstrapped { kid: "kid-1".into() }));
        set
    }

    #[test]
    fn the_authenticated_bytes_change_with_every_field_and_nothing_else() {
        let mut set = bootstrapped();
        set.add(key(2), T0 + 10).unwrap();
        let bytes = set.authenticated_bytes();
        assert_eq!(bytes.len(), AUTHENTICATED_LABEL.len() + 32);
        assert_eq!(bytes, set.clone().authenticated_bytes(), "the same set, the same bytes");
        let changes: [fn(&mut KeySet); 9] = [
            |s| s.version += 1,
            |s| s.entries[1].kid.push('x'),
            |s| s.entries[1].alg = KeyAlgorithm::RS256,
            |s| s.entries[1].kms_key_id.push('x'),
            |s| s.entries[1].public_key = "AQ==".into(),
            |s| s.entries[1].state = KeyState::Current,
            |s| s.entries[1].since += 1,
            |s| s.entries[1].kind = KeyKind::Envelope,
            |s| s.entries[1].wrapped_private_key = Some(vec![1]),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut changed = set.clone();
            change(&mut changed);
            assert_ne!(changed.authenticated_bytes(), bytes, "change {i} left the signed bytes as they were");
        }
        let mut swapped = set.clone();
        swapped.entries.reverse();
        assert_ne!(swapped.authenticated_bytes(), bytes, "the order of entries is covered");
    }

    #[test]
    fn the_first_key_is_current_and_the_next_pending() {
        let mut set = bootstrapped();
        assert_eq!(set.add(key(2), T0 + 10), Ok(KeyStep::Added { kid: "kid-2".into() }));
        assert_eq!(states(&set), [("kid-1", KeyState::Current), ("kid-2", KeyState::Pending)]);
        assert_eq!(set.current().map(|e| e.kid.as_str()), Some("kid-1"));
        assert_eq!(set.trusted().count(), 2);
        assert_eq!(set.version, 2);
    }

    #[test]
    fn one_pending_key_at_a_time_and_no_key_twice() {
        let mut set = bootstrapped();
        assert_eq!(set.add(key(1), T0), Err(KeyRefusal::Duplicate("current".into())));
        set.add(key(2), T0).unwrap();
        assert_eq!(set.add(key(3), T0), Err(KeyRefusal::AlreadyPending("kid-2".into())));
    }

    #[test]
    fn promote_waits_for_the_publish_lead_and_names_it() {
        let mut set = bootstrapped();
        set.add(key(2), T0).unwrap();
        let before = set.clone();
        let refusal = set.promote(T0 + 3599, &TIMINGS, false).unwrap_err();
        assert_eq!(
            refusal,
            KeyRefusal::Gate {
                what: "promote",
                gate: "the pending key to be published longer than any JWKS cache",
                until: T0 + 3600,
                now: T0 + 3599
            }
        );
        let message = refusal.to_string();
        assert!(message.contains("published longer than any JWKS cache"), "{message}");
        assert!(message.contains("2027-01-15T09:00:00Z") && message.contains("(1 s from now)"), "{message}");
        assert_eq!(set, before, "a refused step changes nothing");

        let step = set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        assert_eq!(step, KeyStep::Promoted { kid: "kid-2".into(), replaced: Some("kid-1".into()) });
        assert_eq!(states(&set), [("kid-1", KeyState::Previous), ("kid-2", KeyState::Current)]);
        assert_eq!(set.entries[0].since, T0 + 3600);
    }

    #[test]
    fn force_opens_a_gate() {
        let mut set = bootstrapped();
        set.add(key(2), T0).unwrap();
        assert!(set.promote(T0 + 1, &TIMINGS, true).is_ok());
        assert!(set.retire(T0 + 2, &TIMINGS, true).is_ok());
        assert_eq!(states(&set), [("kid-1", KeyState::Retired), ("kid-2", KeyState::Current)]);
    }

    #[test]
    fn retire_waits_for_the_last_token_and_names_it() {
        let mut set = bootstrapped();
        assert_eq!(set.retire(T0, &TIMINGS, false), Err(KeyRefusal::NoPrevious));
        set.add(key(2), T0).unwrap();
        set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        let refusal = set.retire(T0 + 3600 + 999, &TIMINGS, false).unwrap_err();
        assert!(matches!(refusal, KeyRefusal::Gate { until, .. } if until == T0 + 4600));
        assert!(refusal.to_string().contains("the last token signed with the previous key to expire"));
        assert_eq!(
            set.retire(T0 + 4600, &TIMINGS, false),
            Ok(KeyStep::Retired { kid: "kid-1".into(), kms_key_id: Some("arn:kms:key-1".into()) })
        );
        assert_eq!(set.trusted().map(|e| e.kid.as_str()).collect::<Vec<_>>(), ["kid-2"]);
    }

    #[test]
    fn promote_without_a_pending_key_is_refused() {
        let mut set = bootstrapped();
        assert_eq!(set.promote(T0 + 1_000_000, &TIMINGS, true), Err(KeyRefusal::NoPending("promote")));
    }

    #[test]
    fn revoking_the_current_key_promotes_the_pending_one_at_once() {
        let mut set = bootstrapped();
        assert_eq!(set.revoke("kid-1", T0), Err(KeyRefusal::NoPending("revoke of the current key")));
        set.add(key(2), T0 + 5).unwrap();
        let step = set.revoke("kid-1", T0 + 6).unwrap();
        assert_eq!(
            step,
            KeyStep::Revoked {
                kid: "kid-1".into(),
                kms_key_id: Some("arn:kms:key-1".into()),
                promoted: Some("kid-2".into())
            }
        );
        assert_eq!(states(&set), [("kid-1", KeyState::Revoked), ("kid-2", KeyState::Current)]);
        assert_eq!(set.revoke("kid-1", T0 + 7), Err(KeyRefusal::UnknownKid("kid-1".into())));
    }

    #[test]
    fn revoking_a_pending_or_previous_key_leaves_the_signer_alone() {
        let mut set = bootstrapped();
        set.add(key(2), T0).unwrap();
        set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        set.add(key(3), T0 + 3601).unwrap();
        set.revoke("kid-1", T0 + 3602).unwrap();
        set.revoke("kid-3", T0 + 3603).unwrap();
        assert_eq!(
            states(&set),
            [("kid-1", KeyState::Revoked), ("kid-2", KeyState::Current), ("kid-3", KeyState::Revoked)]
        );
    }

    #[test]
    fn the_due_step_walks_the_whole_lifecycle() {
        let mut set = KeySet::default();
        assert_eq!(set.due_step(T0, &TIMINGS, KeyKind::Kms), Some(DueStep::Add));
        set.add(key(1), T0).unwrap();
        // Nothing until the current key is `max_age - publish_lead` old.
        let add_at = T0 + TIMINGS.max_age.as_secs() - TIMINGS.publish_lead.as_secs();
        assert_eq!(set.due_step(add_at - 1, &TIMINGS, KeyKind::Kms), None);
        assert_eq!(set.due_step(add_at, &TIMINGS, KeyKind::Kms), Some(DueStep::Add));
        set.add(key(2), add_at).unwrap();
        assert_eq!(set.due_step(add_at + 3599, &TIMINGS, KeyKind::Kms), None);
        assert_eq!(set.due_step(add_at + 3600, &TIMINGS, KeyKind::Kms), Some(DueStep::Promote));
        set.promote(add_at + 3600, &TIMINGS, false).unwrap();
        assert_eq!(set.due_step(add_at + 4599, &TIMINGS, KeyKind::Kms), None);
        assert_eq!(set.due_step(add_at + 4600, &TIMINGS, KeyKind::Kms), Some(DueStep::Retire("kid-1".into())));
        set.retire(add_at + 4600, &TIMINGS, false).unwrap();
        assert_eq!(set.due_step(add_at + 4600, &TIMINGS, KeyKind::Kms), None);
    }

    #[test]
    fn keys_that_left_the_set_long_ago_are_forgotten_and_no_trusted_key_ever_is() {
        let mut set = bootstrapped();
        set.add(key(2), T0).unwrap();
        set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        set.retire(T0 + 4600, &TIMINGS, false).unwrap();
        let kept = T0 + 4600 + RETAINED_FOR.as_secs();
        assert!(!set.forget_old_keys(kept), "kept for the retention period");
        assert_eq!(set.entries.len(), 2);
        assert!(set.forget_old_keys(kept + 1));
        assert_eq!(states(&set), [("kid-2", KeyState::Current)], "the current key stays, however old");
    }

    #[test]
    fn a_kms_key_is_stored_as_before_envelope_keys_existed_so_its_mac_still_verifies() {
        let set = bootstrapped();
        let json = serde_json::to_string(&set).unwrap();
        assert!(!json.contains("kind") && !json.contains("wrapped_private_key"), "{json}");
        let before = r#"{"version":1,"entries":[{"kid":"kid-1","alg":"ES256","kms_key_id":"arn:kms:key-1","public_key":"AA==","state":"current","since":1800000000}]}"#;
        assert_eq!(serde_json::from_str::<KeySet>(before).unwrap(), set);
        assert_eq!(json, before);
    }

    #[test]
    fn envelope_keys_share_their_kms_key_but_not_their_kid() {
        let mut set = bootstrapped();
        set.add(envelope(2), T0).unwrap();
        set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        assert_eq!(set.add(envelope(3), T0 + 3601), Ok(KeyStep::Added { kid: "kid-3".into() }));
        assert_eq!(set.add(envelope(3), T0 + 3601), Err(KeyRefusal::Duplicate("pending".into())));
        let current = set.current().unwrap();
        assert_eq!((current.kind, current.wrapped_private_key.as_deref()), (KeyKind::Envelope, Some(&[2u8; 8][..])));
    }

    #[test]
    fn an_envelope_key_that_leaves_the_set_loses_its_private_half_and_keeps_the_kms_key() {
        let mut set = bootstrapped();
        set.add(envelope(2), T0).unwrap();
        set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        set.add(envelope(3), T0 + 3601).unwrap();
        set.promote(T0 + 7201, &TIMINGS, false).unwrap();
        // kid-1 (KMS) and kid-2 (envelope) are previous.
        assert_eq!(
            set.retire(T0 + 9000, &TIMINGS, false).unwrap(),
            KeyStep::Retired { kid: "kid-1".into(), kms_key_id: Some("arn:kms:key-1".into()) }
        );
        let step = set.retire(T0 + 9000, &TIMINGS, false).unwrap();
        assert_eq!(step, KeyStep::Retired { kid: "kid-2".into(), kms_key_id: None });
        assert!(step.to_string().contains("encrypted private key is erased"), "{step}");
        assert_eq!(set.entries[1].wrapped_private_key, None);
        set.add(envelope(4), T0 + 9001).unwrap();
        assert_eq!(
            set.revoke("kid-3", T0 + 9002).unwrap(),
            KeyStep::Revoked { kid: "kid-3".into(), kms_key_id: None, promoted: Some("kid-4".into()) }
        );
        assert_eq!(set.entries[2].wrapped_private_key, None);
        assert!(set.entries[3].wrapped_private_key.is_some(), "the new current key keeps its private half");
    }

    #[test]
    fn an_envelope_key_is_replaced_at_its_own_max_age_and_a_change_of_kind_starts_at_once() {
        let mut set = KeySet::default();
        set.add(envelope(1), T0).unwrap();
        let add_at = T0 + 86_400 - 3600;
        assert_eq!(set.due_step(add_at - 1, &TIMINGS, KeyKind::Envelope), None);
        assert_eq!(set.due_step(add_at, &TIMINGS, KeyKind::Envelope), Some(DueStep::Add));
        assert_eq!(set.due_step(T0, &TIMINGS, KeyKind::Kms), Some(DueStep::Add), "the deployment went back to KMS");
        set.add(key(2), T0).unwrap();
        assert_eq!(set.due_step(T0 + 3599, &TIMINGS, KeyKind::Kms), None, "the publish lead still holds");
        assert_eq!(set.due_step(T0 + 3600, &TIMINGS, KeyKind::Kms), Some(DueStep::Promote));
    }

    #[test]
    fn envelope_keys_are_forgotten_after_a_month() {
        let mut set = bootstrapped();
        set.add(envelope(2), T0).unwrap();
        set.promote(T0 + 3600, &TIMINGS, false).unwrap();
        set.add(key(3), T0 + 3601).unwrap();
        set.promote(T0 + 7201, &TIMINGS, false).unwrap();
        set.retire(T0 + 9000, &TIMINGS, false).unwrap();
        set.retire(T0 + 9000, &TIMINGS, false).unwrap();
        assert!(set.forget_old_keys(T0 + 9001 + ENVELOPE_RETAINED_FOR.as_secs()));
        assert_eq!(states(&set), [("kid-1", KeyState::Retired), ("kid-3", KeyState::Current)]);
    }

    #[test]
    fn the_set_round_trips_through_json() {
        let mut set = bootstrapped();
        set.add(key(2), T0).unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.contains(r#""state":"pending""#) && json.contains(r#""alg":"ES256""#), "{json}");
        assert_eq!(serde_json::from_str::<KeySet>(&json).unwrap(), set);
    }
}
