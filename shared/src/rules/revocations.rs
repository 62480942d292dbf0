//! What a warm authorizer knows about revocations: the denylist in memory, applied from
//! entries and asked per verified token. Kept up to date by
//! [`crate::services::revocation_feed::RevocationFeed`].

use std::collections::HashMap;

use crate::rules::records::{Revocation, RevocationKind};
use crate::rules::token::AccessClaims;

/// The denylist in memory.
#[derive(Debug, Default, Clone)]
pub struct RevocationCache {
    jti: HashMap<String, u64>,
    sid: HashMap<String, u64>,
    users: HashMap<String, (u64, u64)>,
    /// Users' cut-offs that spare one session each (a password change, "sign out
    /// everywhere else"): `(not_before, spared sid, expires_at)`, a few per user at most.
    users_but: HashMap<String, Vec<(u64, String, u64)>>,
    clients: HashMap<String, (u64, u64)>,
}

/// Keeps the later cut-off and the later expiry of two entries for one user or client.
fn raise(cutoffs: &mut HashMap<String, (u64, u64)>, e: Revocation) {
    let not_before = cut_off_of(&e);
    let entry = cutoffs.entry(e.subject).or_insert((0, 0));
    *entry = (entry.0.max(not_before), entry.1.max(e.expires_at));
}

fn cut_off_of(e: &Revocation) -> u64 {
    e.not_before.unwrap_or(e.revoked_at_ms / 1000 + 1)
}

/// Adds a user's cut-off that spares one session. Two such entries of one user do not
/// merge (each spares its own session); one that a later cut-off of the same session
/// covers adds nothing.
fn spare(cutoffs: &mut HashMap<String, Vec<(u64, String, u64)>>, mut e: Revocation, spared: String) {
    let not_before = cut_off_of(&e);
    let entries = cutoffs.entry(std::mem::take(&mut e.subject)).or_default();
    match entries.iter_mut().find(|(_, sid, _)| *sid == spared) {
        Some(held) => *held = (held.0.max(not_before), spared, held.2.max(e.expires_at)),
        None => entries.push((not_before, spared, e.expires_at)),
    }
}

impl RevocationCache {
    /// Adds entries (idempotent).
    pub fn apply(&mut self, entries: impl IntoIterator<Item = Revocation>) {
        for mut e in entries {
            match e.kind {
                RevocationKind::Jti => {
                    self.jti.insert(e.subject, e.expires_at);
                }
                RevocationKind::Sid => {
                    self.sid.insert(e.subject, e.expires_at);
                }
                RevocationKind::User => match e.except_sid.take() {
                    Some(spared) => spare(&mut self.users_but, e, spared),
                    None => raise(&mut self.users, e),
                },
                RevocationKind::Client => raise(&mut self.clients, e),
            }
        }
    }

    /// Whether a verified token is covered by an entry.
    pub fn is_revoked(&self, token: &AccessClaims) -> bool {
        let cut_off = |cutoffs: &HashMap<String, (u64, u64)>, id: &str| {
            cutoffs.get(id).is_some_and(|(not_before, _)| token.iat < *not_before)
        };
        self.jti.contains_key(&token.jti)
            || token.sid.as_ref().is_some_and(|sid| self.sid.contains_key(sid))
            || cut_off(&self.users, &token.sub)
            || (!self.users_but.is_empty()
                && self.users_but.get(&token.sub).is_some_and(|entries| {
                    entries.iter().any(|(not_before, spared, _)| {
                        token.iat < *not_before && token.sid.as_deref() != Some(spared.as_str())
                    })
                }))
            || (!self.clients.is_empty()
                && (cut_off(&self.clients, &token.client_id)
                    || token.act.as_ref().is_some_and(|act| act.chain().any(|a| cut_off(&self.clients, &a.sub)))))
    }

    /// Drops entries past their expiry (no token they cover can still be valid).
    pub fn prune(&mut self, now: u64) {
        self.jti.retain(|_, exp| *exp > now);
        self.sid.retain(|_, exp| *exp > now);
        self.users.retain(|_, (_, exp)| *exp > now);
        self.users_but.retain(|_, entries| {
            entries.retain(|(_, _, exp)| *exp > now);
            !entries.is_empty()
        });
        self.clients.retain(|_, (_, exp)| *exp > now);
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.jti.len()
            + self.sid.len()
            + self.users.len()
            + self.users_but.values().map(Vec::len).sum::<usize>()
            + self.clients.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The cache's tests, and the tokens and entries the feed's tests use too.
    use super::*;

    pub(crate) fn token(jti: &str, sid: &str, sub: &str, iat: u64) -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example.test".into(),
            aud: "api".into(),
            sub: sub.into(),
            scope: String::new(),
            client_id: String::new(),
            sid: Some(sid.into()),
            jti: jti.into(),
            iat,
            exp: iat + 900,
            cnf: None,
            act: None,
        }
    }

    pub(crate) fn entry(kind: RevocationKind, subject: &str, not_before: Option<u64>, expires_at: u64) -> Revocation {
        Revocation { kind, subject: subject.into(), revoked_at_ms: 1_000_000, not_before, expires_at, except_sid: None }
    }

    #[test]
    fn a_cut_off_that_spares_one_session_covers_every_other_session_of_the_user() {
        let mut cache = RevocationCache::default();
        let spare = |sid: &str, not_before| Revocation {
            except_sid: Some(sid.into()),
            ..entry(RevocationKind::User, "u1", Some(not_before), 2000)
        };
        cache.apply([spare("kept", 1000)]);
        assert!(cache.is_revoked(&token("j", "other", "u1", 999)), "another session, issued before");
        assert!(!cache.is_revoked(&token("j", "other", "u1", 1000)), "issued after the cut-off");
        assert!(!cache.is_revoked(&token("j", "kept", "u1", 999)), "the spared session");
        assert!(!cache.is_revoked(&token("j", "other", "u2", 999)), "another user");
        // A later change kept another session: the first one is no longer spared by it.
        cache.apply([spare("second", 1100)]);
        assert!(cache.is_revoked(&token("j", "kept", "u1", 1050)));
        assert!(!cache.is_revoked(&token("j", "second", "u1", 1050)));
        assert!(cache.is_revoked(&token("j", "second", "u1", 999)), "the first entry did not spare it");
        // A cut-off that spares nothing covers the kept sessions too.
        cache.apply([entry(RevocationKind::User, "u1", Some(900), 2000)]);
        assert!(cache.is_revoked(&token("j", "kept", "u1", 899)));
        // Applying an entry twice changes nothing; expiry prunes them.
        cache.apply([spare("kept", 1000)]);
        assert_eq!(cache.len(), 3);
        cache.prune(2000);
        assert!(cache.is_empty());
    }

    #[test]
    fn covers_tokens_by_jti_sid_and_user_not_before() {
        let mut cache = RevocationCache::default();
        cache.apply([
            entry(RevocationKind::Jti, "j1", None, 2000),
            entry(RevocationKind::Sid, "s1", None, 2000),
            entry(RevocationKind::User, "u1", Some(1000), 2000),
        ]);
        assert!(cache.is_revoked(&token("j1", "x", "x", 0)));
        assert!(cache.is_revoked(&token("x", "s1", "x", 0)));
        assert!(cache.is_revoked(&token("x", "x", "u1", 999)), "issued before not-before");
        assert!(!cache.is_revoked(&token("x", "x", "u1", 1000)), "issued after: a new login");
        assert!(!cache.is_revoked(&token("j2", "s2", "u2", 0)));
    }

    #[test]
    fn a_disabled_client_covers_its_tokens_and_those_it_acted_in_issued_before_the_cut_off() {
        let mut cache = RevocationCache::default();
        cache.apply([entry(RevocationKind::Client, "svc-b", Some(1000), 2000)]);
        let mut own = token("j", "s", "svc-b", 999);
        own.client_id = "svc-b".into();
        assert!(cache.is_revoked(&own));
        own.iat = 1000;
        assert!(!cache.is_revoked(&own), "issued after the cut-off: the client was enabled again");
        let mut exchanged = token("j", "s", "u1", 999);
        exchanged.client_id = "svc-c".into();
        exchanged.act = Some(crate::rules::token::Actor {
            sub: "svc-c".into(),
            act: Some(Box::new(crate::rules::token::Actor { sub: "svc-b".into(), act: None })),
        });
        assert!(cache.is_revoked(&exchanged), "svc-b acted earlier in the chain");
        let mut other = token("j", "s", "u1", 999);
        other.client_id = "first-party".into();
        assert!(!cache.is_revoked(&other));
    }

    #[test]
    fn prunes_entries_no_token_can_outlive() {
        let mut cache = RevocationCache::default();
        cache.apply([entry(RevocationKind::Jti, "old", None, 100), entry(RevocationKind::Jti, "new", None, 300)]);
        cache.prune(200);
        assert_eq!(cache.len(), 1);
        assert!(cache.is_revoked(&token("new", "x", "x", 0)));
    }
}
