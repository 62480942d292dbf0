//! The authorizer's cache of access tokens it has verified. With DPoP every request brings
//! the same access token with a new proof, and API Gateway's result cache is off (an answer
//! must not serve another proof), so without it every request would check two signatures.
//! The cache keeps the claims of a token whose signature and claims verified, so the
//! token's signature is checked once per instance while it lives.
//!
//! - Keyed by the SHA-256 of the token, not the token: 32 bytes an entry whatever the
//!   token's size, no bearer credential kept in memory longer than its request, and a
//!   different token cannot find another's entry (that would take a SHA-256 collision).
//! - An entry is used until the token's `exp` (the verifier's leeway after it is left to
//!   the verifier: a token that old is verified again, and refused once past it).
//! - Entries belong to one generation of the trusted keys ([`crate::services::keys::KeyRing::generation`]):
//!   when the ring replaces the verifier's keys the whole cache is emptied, so a key
//!   revoked from the set stops its tokens at the request that sees the new set.
//! - Revocation is not cached: the caller checks the denylist on every request.
//! - At most [`MAX_VERIFIED_TOKENS`] entries. When full, the expired ones go; if none has
//!   expired, everything goes (simple, O(n) once per that many new tokens; a burst of
//!   more live tokens than that costs re-verification only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::rules::token::AccessClaims;

/// The most tokens an instance remembers. An entry is its 32-byte key and the claims (nine
/// short strings, about 400 bytes with their allocations and the map's own overhead), so
/// the cache holds at most about 2 MB of the authorizer's 128 MB.
pub const MAX_VERIFIED_TOKENS: usize = 4096;

/// SHA-256 of an access token: the cache's key.
pub type TokenDigest = [u8; 32];

/// The digest of `token`: the same SHA-256 a DPoP proof's `ath` encodes, so a request
/// hashes its token once for both.
pub fn token_digest(token: &str) -> TokenDigest {
    crate::rules::dpop::access_token_sha256(token)
}

/// Verified claims by token digest, for one generation of the trusted keys.
#[derive(Debug)]
pub struct VerifiedTokens {
    inner: Mutex<Entries>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    generation: u64,
    claims: HashMap<TokenDigest, Arc<AccessClaims>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::with_capacity(MAX_VERIFIED_TOKENS)
    }
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { inner: Mutex::new(Entries::default()), capacity: capacity.max(1) }
    }

    /// The claims of the token with `digest` if it was verified with the keys of
    /// `generation` and has not expired at `now`. Seeing a newer generation empties the cache.
    /// Shared, not copied: a request takes from them only what its answer carries.
    pub fn get(&self, digest: &TokenDigest, generation: u64, now: u64) -> Option<Arc<AccessClaims>> {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.generation != generation {
            entries.adopt(generation);
            return None;
        }
        match entries.claims.get(digest) {
            Some(claims) if now < claims.exp => Some(Arc::clone(claims)),
            Some(_) => {
                entries.claims.remove(digest);
                None
            }
            None => None,
        }
    }

    /// Keeps `claims`, verified with the keys of `generation` (read before verifying): not
    /// kept if the keys have changed since, and a newer generation empties the cache first.
    pub fn insert(&self, digest: TokenDigest, claims: &Arc<AccessClaims>, generation: u64, now: u64) {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if generation < entries.generation {
            return;
        }
        if generation > entries.generation {
            entries.adopt(generation);
        }
        if entries.claims.len() >= self.capacity && !entries.claims.contains_key(&digest) {
            entries.claims.retain(|_, c| now < c.exp);
            if entries.claims.len() >= self.capacity {
                entries.claims.clear();
            }
        }
        entries.claims.insert(digest, Arc::clone(claims));
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).claims.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entries {
    fn adopt(&mut self, generation: u64) {
        self.generation = generation;
        self.claims.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "iss".into(),
            sub: "sub".into(),
            aud: "aud".into(),
            exp,
            iat: exp.saturating_sub(900),
            jti: "jti".into(),
            client_id: "first-party".into(),
            scope: "read".into(),
            sid: Some("sid".into()),
            cnf: None,
            act: None,
        })
    }

    #[test]
    fn a_verified_token_is_found_by_its_digest_until_its_expiry() {
        let cache = VerifiedTokens::default();
        let digest = token_digest("a.b.c");
        cache.insert(digest, &claims(1000), 0, 100);
        assert_eq!(cache.get(&digest, 0, 999), Some(claims(1000)));
        assert_eq!(cache.get(&token_digest("a.b.d"), 0, 999), None);
        assert_eq!(cache.get(&digest, 0, 1000), None, "at exp the verifier decides again");
        assert!(cache.is_empty(), "an expired entry is dropped when met");
    }

    #[test]
    fn new_keys_empty_the_cache_and_a_verification_with_old_keys_is_not_kept() {
        let cache = VerifiedTokens::default();
        let digest = token_digest("a.b.c");
        cache.insert(digest, &claims(1000), 3, 100);
        assert_eq!(cache.get(&digest, 4, 100), None, "the keys changed: verify again");
        assert!(cache.is_empty());
        // Verified with the keys of generation 3, inserted after the ring moved to 4: dropped.
        cache.insert(digest, &claims(1000), 3, 100);
        assert!(cache.is_empty());
        cache.insert(digest, &claims(1000), 4, 100);
        assert_eq!(cache.get(&digest, 4, 100), Some(claims(1000)));
        // An insert with newer keys than the cache has seen empties it too.
        cache.insert(token_digest("x.y.z"), &claims(1000), 5, 100);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&digest, 5, 100), None);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = VerifiedTokens::with_capacity(3);
        for i in 0..3 {
            cache.insert(token_digest(&format!("t{i}")), &claims(if i == 0 { 150 } else { 1000 }), 0, 100);
        }
        // Full: the expired entry makes room, the live ones stay.
        cache.insert(token_digest("t3"), &claims(1000), 0, 200);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&token_digest("t1"), 0, 200).is_some());
        // Full of live entries: everything goes, the new one stays.
        cache.insert(token_digest("t4"), &claims(1000), 0, 200);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&token_digest("t4"), 0, 200).is_some());
        for i in 0..50 {
            cache.insert(token_digest(&format!("u{i}")), &claims(1000), 0, 200);
            assert!(cache.len() <= 3);
        }
    }
}
