//! The refresh-token rules that need no I/O: sealing a successor for the exactly-once
//! retry window, and deciding what a refused rotation means.
//!
//! RFC 6749 §10.4 and RFC 9700 §4.14.2 ask for rotation with reuse detection. What they
//! leave open, and what goes wrong elsewhere, is the client whose response got lost: it
//! still holds token k while the family has moved on to k+1. Within a short leeway after
//! the rotation we hand that client **the same** k+1 again (no branch in the family),
//! which requires keeping k+1 somewhere. We keep it sealed (AES-256-GCM) under a key
//! derived by HKDF-SHA256 from k's secret and a server-side [`SealingSecret`] that is not
//! in the Families table (a KMS data key, [`crate::services::keys::sealing`]): opening it takes both
//! k and the secret, so neither a reader of the table (even with a leaked old token) nor a
//! holder of k alone can; and since k+1's secret is random, no one can compute it.
//!
//! Each retry answer signs a new access token, so their number is bounded: at most
//! [`MAX_RETRY_ANSWERS`] per rotated token, counted on the family item by a conditional
//! write; past that, `invalid_grant` without revoking anything (it is not reuse).
//!
//! A family bound to a DPoP key (RFC 9449 §5) asks for a proof from that key before any of
//! this is decided ([`key_check`]): a token issued bound, presented without the key, is
//! refused with nothing changed and is not judged as reuse, so a thief who copied it cannot
//! end the session (docs/refresh-rotation.md).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::rules::dpop::ProofRejection;
use crate::rules::records::{AccountState, FamilyRecord, UserRecord, UserStatus};
use crate::rules::scope::Scope;
use crate::rules::token::{random_bytes, RefreshToken};

/// The server-side half of every sealing key: 32 random bytes held outside the Families
/// table. Never logged, never shown.
#[derive(Clone)]
pub struct SealingSecret([u8; 32]);

impl SealingSecret {
    /// The secret from its bytes (a decrypted KMS data key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for SealingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingSecret(..)")
    }
}

/// HKDF-SHA256: the server secret is the salt, the previous token's secret the input key
/// material; the family and generation bind the key to one place in one family.
fn sealing_key(server: &SealingSecret, previous: &RefreshToken) -> Option<LessSafeKey> {
    let family = previous.family_id();
    let salt = Salt::new(HKDF_SHA256, &server.0);
    let generation = previous.generation().to_be_bytes();
    let prk = salt.extract(previous.secret());
    let info: [&[u8]; 3] = [b"tokenauth successor v2", family.as_bytes(), &generation];
    let okm = prk.expand(&info, &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

fn aad(successor_generation: u32, family_id: &str) -> Vec<u8> {
    let mut aad = family_id.as_bytes().to_vec();
    aad.extend_from_slice(&successor_generation.to_be_bytes());
    aad
}

/// Seals `successor`'s secret under a key derived from `previous`'s secret and the server
/// secret. Output: base64url(nonce ‖ ciphertext ‖ tag).
pub fn seal_successor(server: &SealingSecret, previous: &RefreshToken, successor: &RefreshToken) -> Option<String> {
    let key = sealing_key(server, previous)?;
    let nonce_bytes = random_bytes::<NONCE_LEN>();
    let mut in_out = successor.secret().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad(successor.generation(), &successor.family_id())),
        &mut in_out,
    )
    .ok()?;
    let mut sealed = nonce_bytes.to_vec();
    sealed.extend(in_out);
    Some(B64URL.encode(sealed))
}

/// Opens a sealed successor with the previous token and the server secret; `None` if they
/// cannot open it.
pub fn open_successor(server: &SealingSecret, previous: &RefreshToken, sealed: &str) -> Option<RefreshToken> {
    let key = sealing_key(server, previous)?;
    let bytes = B64URL.decode(sealed).ok()?;
    if bytes.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let generation = previous.generation().checked_add(1)?;
    let family = previous.family_id();
    let mut in_out = ciphertext.to_vec();
    let plain = key
        .open_in_place(Nonce::try_assume_unique_for_key(nonce).ok()?, Aad::from(aad(generation, &family)), &mut in_out)
        .ok()?;
    RefreshToken::from_parts(&family, generation, plain.try_into().ok()?)
}

/// Which of a family's tokens a presented hash is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issued {
    /// The current token.
    Current,
    /// The token the last rotation replaced.
    Previous,
    /// An earlier token the family still remembers.
    Earlier,
    /// None it issued, as far as it remembers: forged, guessed or too old.
    Never,
}

/// How many characters of an earlier token's hash its history slot keeps (96 bits of
/// base64url). Enough to recognise a rotated token (matching one without the token takes
/// about 2^96 tries), and short enough that a family with a full history stays under
/// DynamoDB's 1 KB write unit: a rotation then costs 2 write units, not 4.
pub const HISTORY_MARK_CHARS: usize = 16;

/// What a history slot keeps of an earlier token's hash ([`HISTORY_MARK_CHARS`]).
pub fn history_mark(hash: &str) -> &str {
    hash.get(..HISTORY_MARK_CHARS).unwrap_or(hash)
}

/// Whether the family issued the token of `hash`, and which: the one place that asks,
/// in constant time per comparison (a hash is compared against a stored one). A history
/// slot holds the hash's mark ([`history_mark`]), or the whole hash if it was written
/// before marks were.
pub fn issued_by(family: &FamilyRecord, hash: &str) -> Issued {
    let same = |stored: &str| -> bool { stored.as_bytes().ct_eq(hash.as_bytes()).into() };
    let mark = history_mark(hash);
    let remembered = |stored: &str| -> bool { same(stored) | bool::from(stored.as_bytes().ct_eq(mark.as_bytes())) };
    // Empty history slots hold "": no hash is empty, and nothing presented may match one.
    if hash.is_empty() {
        Issued::Never
    } else if same(&family.token_hash) {
        Issued::Current
    } else if family.previous_hash.as_deref().is_some_and(same) {
        Issued::Previous
    } else if family.recent.iter().fold(false, |found, h| found | remembered(h)) {
        Issued::Earlier
    } else {
        Issued::Never
    }
}

/// What a refresh does with its family as it now reads: the step before each write of
/// the rotation loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStep {
    /// The presented token is current, the family alive and the scope asked for granted:
    /// write the rotation (conditioned on exactly that).
    Rotate,
    /// No family has the presented token's id: refuse, change nothing.
    Unknown,
    /// A family written before sessions followed their account: refuse, change nothing.
    NoAccount,
    /// The presented token cannot rotate the family as it is: [`classify`] says why.
    Refused,
}

/// The next step of a refresh of `presented`, asking for `required` (empty: the family's
/// own scope), given the family as read or as a refused write returned it.
pub fn next_step(family: Option<&FamilyRecord>, presented: &RefreshToken, required: &Scope, now: u64) -> RefreshStep {
    let Some(family) = family else { return RefreshStep::Unknown };
    let rotatable = issued_by(family, &presented.hash()) == Issued::Current
        && family.generation == presented.generation()
        && family.is_alive(now)
        && required.is_subset_of(&family.scope());
    if !rotatable {
        RefreshStep::Refused
    } else if family.user_key.is_none() {
        RefreshStep::NoAccount
    } else {
        RefreshStep::Rotate
    }
}

/// How many retry answers a rotated token gets (the same successor, each with a new access
/// token and a `kms:Sign`): enough for a client that lost a response or two, too few to
/// turn the leeway into a signing service.
pub const MAX_RETRY_ANSWERS: u32 = 3;

/// What a refused rotation means, decided from the family as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such family, or a token it never issued (forged, guessed, or older than the
    /// remembered history): refuse, change nothing.
    Unknown,
    /// A genuine token of a revoked or expired family: refuse, change nothing.
    Dead,
    /// The current token, alive, but a scope was requested that the family lacks.
    ScopeNotGranted,
    /// The immediately previous token within the leeway: answer with this same successor.
    Retry(RefreshToken),
    /// The same, but the retry answers of this generation are used up: refuse, change
    /// nothing (not reuse: the family lives on).
    RetriesExhausted,
    /// A genuinely issued token that has been rotated away: theft. Revoke.
    Reuse,
}

/// Classifies a refused rotation of `presented` given the family item as it was (`server`
/// opens a sealed successor for a retry).
pub fn classify(
    server: &SealingSecret,
    presented: &RefreshToken,
    family: Option<&FamilyRecord>,
    required: &Scope,
    now: u64,
    leeway_secs: u64,
) -> Refusal {
    let Some(family) = family else { return Refusal::Unknown };
    let issued = issued_by(family, &presented.hash());
    if issued == Issued::Never {
        return Refusal::Unknown;
    }
    if !family.is_alive(now) {
        return Refusal::Dead;
    }
    let scopes_granted = required.is_subset_of(&family.scope());
    if issued == Issued::Current {
        // The token is current and the family alive, so the condition failed on scope.
        return if scopes_granted { Refusal::Dead } else { Refusal::ScopeNotGranted };
    }
    let within_leeway = leeway_secs > 0
        && family.rotated_at.is_some_and(|at| now <= at.saturating_add(leeway_secs))
        && presented.generation().checked_add(1) == Some(family.generation);
    if issued == Issued::Previous && within_leeway {
        if let Some(successor) = family.sealed_successor.as_deref().and_then(|s| open_successor(server, presented, s)) {
            // The successor must be exactly the family's current token.
            if issued_by(family, &successor.hash()) == Issued::Current {
                return if !scopes_granted {
                    Refusal::ScopeNotGranted
                } else if family.retries >= MAX_RETRY_ANSWERS {
                    Refusal::RetriesExhausted
                } else {
                    Refusal::Retry(successor)
                };
            }
        }
    }
    Refusal::Reuse
}

/// Whether a refresh may go on with `family` as it now reads, presenting a token of
/// `presented_generation` with a proof from the key of thumbprint `proof_key` (if any).
/// Asked first, before the token is judged, and again whenever the family is read anew:
/// - an unbound family: always (a proof, if valid, binds it at its rotation);
/// - a bound family and a token issued bound (its generation at or after `bound_since`):
///   only with a proof from the family's key (RFC 9449 §5). Refused otherwise, and not
///   judged as reuse, so a copied token without the key changes nothing;
/// - a bound family and a token from before the binding (a bearer token): it is judged as
///   before; a rotated one is reuse. The retry answer, a bound token, asks for the key
///   again ([`retry_key_check`]).
pub fn key_check(
    family: &FamilyRecord,
    presented_generation: u32,
    proof_key: Option<&str>,
) -> Result<(), ProofRejection> {
    match family.jkt.as_deref() {
        Some(bound) if presented_generation >= family.bound_since.unwrap_or(0) => same_key(bound, proof_key),
        _ => Ok(()),
    }
}

/// Whether the retry answer of `family` (its current token again, with a new access token)
/// may go to a caller with a proof from `proof_key`: if the family is bound, only with its
/// key, whichever token the caller presented. An unbound family's retry does not bind it
/// (nothing is written but the count): its answer is a bearer one.
pub fn retry_key_check(family: &FamilyRecord, proof_key: Option<&str>) -> Result<(), ProofRejection> {
    match family.jkt.as_deref() {
        Some(bound) => same_key(bound, proof_key),
        None => Ok(()),
    }
}

/// Whether a proof from `proof_key` (none: no proof) is one of the `bound` key's: what a
/// token bound to that key must come with.
pub fn same_key(bound: &str, proof_key: Option<&str>) -> Result<(), ProofRejection> {
    match proof_key {
        None => Err(ProofRejection::Missing),
        Some(key) if key == bound => Ok(()),
        Some(_) => Err(ProofRejection::WrongKey),
    }
}

/// What a family may still do, given its owner's account as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountVerdict {
    /// The family has followed every change of the account.
    Unchanged,
    /// The account changed in a way the family survives (new scopes, a new cut-off): it
    /// follows, its scopes narrowed to the account's.
    Follow(AccountState),
    /// The account is gone or disabled, ended every session after this family began, or
    /// is another account under the same username (a new `user_id`).
    Dead,
}

/// Compares a family with its owner's account as read now. The account is followed by its
/// stable `user_id`, not by the username it is stored under: a username deleted and
/// created again does not resume the old account's sessions.
pub fn follow_account(family: &FamilyRecord, user: Option<&UserRecord>) -> AccountVerdict {
    let Some(user) = user else { return AccountVerdict::Dead };
    if user.user_id != family.user_id
        || user.status != UserStatus::Active
        || user.sessions_epoch != family.sessions_epoch
    {
        return AccountVerdict::Dead;
    }
    if user.version == family.user_version {
        return AccountVerdict::Unchanged;
    }
    AccountVerdict::Follow(AccountState {
        scopes: family.scope().intersection(&user.scope()).tokens().map(str::to_owned).collect(),
        user_version: user.version,
        not_before: user.not_before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::records::{FamilyStatus, HISTORY_SLOTS};

    const SERVER: SealingSecret = SealingSecret([42; 32]);

    fn family_after_rotation(previous: &RefreshToken, current: &RefreshToken, rotated_at: u64) -> FamilyRecord {
        let mut recent = vec![String::new(); HISTORY_SLOTS];
        recent[previous.generation() as usize % HISTORY_SLOTS] = previous.hash();
        FamilyRecord {
            family_id: current.family_id(),
            user_id: "u".into(),
            client_id: "c".into(),
            scopes: vec!["read".into(), "write".into()],
            token_hash: current.hash(),
            generation: current.generation(),
            recent,
            previous_hash: Some(previous.hash()),
            rotated_at: Some(rotated_at),
            sealed_successor: seal_successor(&SERVER, previous, current),
            status: FamilyStatus::Active,
            revoked_reason: None,
            revoked_at: None,
            sid_denylisted: false,
            retries: 0,
            created_at: 0,
            last_used_at: rotated_at,
            idle_expires_at: 10_000,
            expires_at: 10_000,
            user_key: Some("alice".into()),
            user_version: 3,
            sessions_epoch: 1,
            not_before: 500,
            jkt: None,
            bound_since: None,
            device_name: None,
            network: None,
            user_agent: None,
            kept: None,
        }
    }

    fn account(version: u64, epoch: u64, scopes: &[&str]) -> UserRecord {
        UserRecord {
            version,
            sessions_epoch: epoch,
            not_before: 900,
            ..UserRecord::new("u".into(), "$argon2id$...".into(), scopes.iter().map(|s| s.to_string()).collect(), 0)
        }
    }

    fn a_family() -> FamilyRecord {
        let k = RefreshToken::new_family();
        family_after_rotation(&k, &k.successor().expect("successor"), 1000)
    }

    #[test]
    fn a_family_that_followed_every_change_goes_on_unchanged() {
        assert_eq!(follow_account(&a_family(), Some(&account(3, 1, &["read", "write"]))), AccountVerdict::Unchanged);
    }

    #[test]
    fn a_family_follows_new_scopes_narrowed_to_the_accounts_and_its_cut_off() {
        let verdict = follow_account(&a_family(), Some(&account(4, 1, &["read", "admin"])));
        let expected = AccountState { scopes: vec!["read".into()], user_version: 4, not_before: 900 };
        assert_eq!(verdict, AccountVerdict::Follow(expected), "never wider than the login's scopes");
    }

    #[test]
    fn a_family_dies_with_a_disabled_or_missing_account_or_a_new_sessions_epoch() {
        let mut disabled = account(4, 1, &["read"]);
        disabled.status = UserStatus::Disabled;
        assert_eq!(follow_account(&a_family(), Some(&disabled)), AccountVerdict::Dead);
        assert_eq!(follow_account(&a_family(), None), AccountVerdict::Dead);
        assert_eq!(follow_account(&a_family(), Some(&account(4, 2, &["read", "write"]))), AccountVerdict::Dead);
    }

    #[test]
    fn a_family_dies_with_a_new_account_under_its_username() {
        let recreated = UserRecord { user_id: "u-new".into(), ..account(3, 1, &["read", "write"]) };
        assert_eq!(follow_account(&a_family(), Some(&recreated)), AccountVerdict::Dead, "same username, new user_id");
        let recreated_fresh = UserRecord { user_id: "u-new".into(), ..account(0, 0, &["read", "write"]) };
        let fresh_family = FamilyRecord { user_version: 0, sessions_epoch: 0, ..a_family() };
        assert_eq!(follow_account(&fresh_family, Some(&recreated_fresh)), AccountVerdict::Dead, "even at version 0");
    }

    #[test]
    fn only_the_previous_token_opens_the_sealed_successor() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let sealed = seal_successor(&SERVER, &k, &k1).expect("sealed");
        assert_eq!(open_successor(&SERVER, &k, &sealed), Some(k1.clone()));
        assert_eq!(open_successor(&SERVER, &k1, &sealed), None, "the successor cannot open itself");
        let forged = RefreshToken::from_parts(&k.family_id(), 0, [7; 32]).expect("parts");
        assert_eq!(open_successor(&SERVER, &forged, &sealed), None, "a forged token with the real family id cannot");
        let mut tampered = B64URL.decode(&sealed).expect("b64");
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(open_successor(&SERVER, &k, &B64URL.encode(tampered)), None);
        assert!(!sealed.contains(&B64URL.encode(k1.secret())), "sealed text does not show the secret");
    }

    #[test]
    fn the_previous_token_without_the_server_secret_cannot_open_the_successor() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let sealed = seal_successor(&SERVER, &k, &k1).expect("sealed");
        let other = SealingSecret::from_bytes([43; 32]);
        assert_eq!(open_successor(&other, &k, &sealed), None, "a reader of the table holding k, without the secret");
        let family = family_after_rotation(&k, &k1, 1000);
        assert_eq!(
            classify(&other, &k, Some(&family), &Scope::default(), 1010, 30),
            Refusal::Reuse,
            "no retry without it"
        );
        assert!(format!("{SERVER:?}").contains(".."), "never printed");
    }

    #[test]
    fn previous_token_within_the_leeway_is_a_retry_with_the_same_successor() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let family = family_after_rotation(&k, &k1, 1000);
        assert_eq!(classify(&SERVER, &k, Some(&family), &Scope::default(), 1030, 30), Refusal::Retry(k1.clone()));
        assert_eq!(
            classify(&SERVER, &k, Some(&family), &Scope::default(), 1031, 30),
            Refusal::Reuse,
            "after the leeway"
        );
        assert_eq!(classify(&SERVER, &k, Some(&family), &Scope::default(), 1000, 0), Refusal::Reuse, "leeway off");
        assert_eq!(
            classify(&SERVER, &k, Some(&family), &Scope::from_tokens(["admin"]), 1010, 30),
            Refusal::ScopeNotGranted,
            "a retry cannot widen scope"
        );
    }

    #[test]
    fn a_retry_past_its_answers_is_refused_without_being_reuse() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let mut family = family_after_rotation(&k, &k1, 1000);
        family.retries = MAX_RETRY_ANSWERS - 1;
        assert_eq!(classify(&SERVER, &k, Some(&family), &Scope::default(), 1010, 30), Refusal::Retry(k1.clone()));
        family.retries = MAX_RETRY_ANSWERS;
        assert_eq!(classify(&SERVER, &k, Some(&family), &Scope::default(), 1010, 30), Refusal::RetriesExhausted);
        assert_eq!(
            classify(&SERVER, &k, Some(&family), &Scope::default(), 1031, 30),
            Refusal::Reuse,
            "after the leeway"
        );
    }

    #[test]
    fn older_genuine_tokens_are_reuse_and_forgeries_are_unknown() {
        let k0 = RefreshToken::new_family();
        let k1 = k0.successor().expect("successor");
        let k2 = k1.successor().expect("successor");
        let mut family = family_after_rotation(&k1, &k2, 1000);
        family.recent[0] = k0.hash();
        assert_eq!(
            classify(&SERVER, &k0, Some(&family), &Scope::default(), 1001, 30),
            Refusal::Reuse,
            "older than previous"
        );
        let forged = RefreshToken::from_parts(&k2.family_id(), 1, [9; 32]).expect("parts");
        assert_eq!(classify(&SERVER, &forged, Some(&family), &Scope::default(), 1001, 30), Refusal::Unknown);
        assert_eq!(classify(&SERVER, &k0, None, &Scope::default(), 1001, 30), Refusal::Unknown, "no family");
    }

    #[test]
    fn genuine_tokens_of_dead_families_change_nothing() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let mut family = family_after_rotation(&k, &k1, 1000);
        assert_eq!(classify(&SERVER, &k1, Some(&family), &Scope::default(), 10_001, 30), Refusal::Dead, "expired");
        family.status = FamilyStatus::Revoked;
        assert_eq!(classify(&SERVER, &k1, Some(&family), &Scope::default(), 1001, 30), Refusal::Dead);
        assert_eq!(
            classify(&SERVER, &k, Some(&family), &Scope::default(), 1001, 30),
            Refusal::Dead,
            "no second revocation"
        );
    }

    #[test]
    fn an_earlier_token_is_known_by_its_history_mark_or_by_a_whole_hash_written_before_marks() {
        let k0 = RefreshToken::new_family();
        let k1 = k0.successor().expect("successor");
        let k2 = k1.successor().expect("successor");
        let mut family = family_after_rotation(&k1, &k2, 1000);
        family.recent[0] = history_mark(&k0.hash()).to_owned();
        assert_eq!(family.recent[0].len(), HISTORY_MARK_CHARS);
        assert_eq!(issued_by(&family, &k0.hash()), Issued::Earlier, "by its mark");
        assert_eq!(classify(&SERVER, &k0, Some(&family), &Scope::default(), 1001, 30), Refusal::Reuse);
        // A mark is a prefix of the hash: another token's hash does not match it.
        let stranger = RefreshToken::from_parts(&k2.family_id(), 0, [7; 32]).expect("parts");
        assert_eq!(issued_by(&family, &stranger.hash()), Issued::Never);
        family.recent[0] = k0.hash();
        assert_eq!(issued_by(&family, &k0.hash()), Issued::Earlier, "a whole hash, as stored before");
    }

    #[test]
    fn a_family_knows_which_of_its_tokens_a_hash_is() {
        let k0 = RefreshToken::new_family();
        let k1 = k0.successor().expect("successor");
        let k2 = k1.successor().expect("successor");
        let mut family = family_after_rotation(&k1, &k2, 1000);
        family.recent[0] = k0.hash();
        assert_eq!(issued_by(&family, &k2.hash()), Issued::Current);
        assert_eq!(issued_by(&family, &k1.hash()), Issued::Previous);
        assert_eq!(issued_by(&family, &k0.hash()), Issued::Earlier);
        assert_eq!(issued_by(&family, &RefreshToken::new_family().hash()), Issued::Never);
        assert_eq!(issued_by(&family, ""), Issued::Never, "an empty history slot matches nothing presented");
    }

    #[test]
    fn the_current_token_of_a_live_family_rotates() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let family = family_after_rotation(&k, &k1, 1000);
        assert_eq!(next_step(Some(&family), &k1, &Scope::default(), 1001), RefreshStep::Rotate);
        assert_eq!(next_step(Some(&family), &k1, &Scope::from_tokens(["read"]), 1001), RefreshStep::Rotate, "narrower");
    }

    #[test]
    fn a_refresh_without_a_family_is_unknown() {
        let k = RefreshToken::new_family();
        assert_eq!(next_step(None, &k, &Scope::default(), 1001), RefreshStep::Unknown);
    }

    #[test]
    fn a_family_that_follows_no_account_does_not_rotate() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let family = FamilyRecord { user_key: None, ..family_after_rotation(&k, &k1, 1000) };
        assert_eq!(next_step(Some(&family), &k1, &Scope::default(), 1001), RefreshStep::NoAccount);
    }

    #[test]
    fn anything_but_the_current_token_of_a_live_family_within_its_scope_is_refused() {
        let k = RefreshToken::new_family();
        let k1 = k.successor().expect("successor");
        let family = family_after_rotation(&k, &k1, 1000);
        assert_eq!(next_step(Some(&family), &k, &Scope::default(), 1001), RefreshStep::Refused, "the previous");
        let wider = Scope::from_tokens(["admin"]);
        assert_eq!(next_step(Some(&family), &k1, &wider, 1001), RefreshStep::Refused, "a scope not granted");
        assert_eq!(next_step(Some(&family), &k1, &Scope::default(), 10_001), RefreshStep::Refused, "expired");
        let revoked = FamilyRecord { status: FamilyStatus::Revoked, ..family.clone() };
        assert_eq!(next_step(Some(&revoked), &k1, &Scope::default(), 1001), RefreshStep::Refused, "revoked");
        let forged = RefreshToken::from_parts(&k1.family_id(), 1, [9; 32]).expect("parts");
        assert_eq!(next_step(Some(&family), &forged, &Scope::default(), 1001), RefreshStep::Refused, "forged");
    }

    fn bound_since(generation: u32) -> FamilyRecord {
        FamilyRecord { jkt: Some("key-a".into()), bound_since: Some(generation), ..a_family() }
    }

    #[test]
    fn an_unbound_family_goes_on_with_a_proof_or_without() {
        let family = a_family();
        for proof_key in [None, Some("key-a")] {
            assert_eq!(key_check(&family, 1, proof_key), Ok(()));
            assert_eq!(retry_key_check(&family, proof_key), Ok(()));
        }
    }

    #[test]
    fn a_token_issued_bound_goes_on_only_with_a_proof_from_the_familys_key() {
        let family = bound_since(0);
        for generation in [0, 1, 5] {
            assert_eq!(key_check(&family, generation, Some("key-a")), Ok(()), "{generation}");
            assert_eq!(key_check(&family, generation, None), Err(ProofRejection::Missing), "{generation}");
            assert_eq!(key_check(&family, generation, Some("key-b")), Err(ProofRejection::WrongKey), "{generation}");
        }
    }

    #[test]
    fn a_token_from_before_the_binding_is_judged_as_a_bearer_token_but_its_retry_answer_needs_the_key() {
        // Bound by the rotation to generation 1: generation 0 was a bearer token.
        let family = bound_since(1);
        assert_eq!(key_check(&family, 0, None), Ok(()), "judged as before: a rotated one is reuse");
        assert_eq!(key_check(&family, 1, None), Err(ProofRejection::Missing));
        assert_eq!(retry_key_check(&family, None), Err(ProofRejection::Missing), "the answer is a bound token");
        assert_eq!(retry_key_check(&family, Some("key-b")), Err(ProofRejection::WrongKey));
        assert_eq!(retry_key_check(&family, Some("key-a")), Ok(()));
    }
}
