//! State read from a dependency now and then rather than per request: the key ring of a
//! verifier, a signer's current key, the authorizer's revocation feed. One rule for all
//! three: a read falls due once per interval (taken by one caller, however many ask), and
//! the state may be relied on for a staleness bound after the last good read, then not
//! (fail closed: the caller refuses rather than guess).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Whether polled state may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Read successfully within the staleness bound.
    Fresh,
    /// Not read successfully for longer than the bound (or never): refuse.
    Stale,
}

/// When polled state was last read and whether it may still be relied on. Lock-free: the
/// authorizer asks on every request.
#[derive(Debug)]
pub struct Polled {
    every_secs: u64,
    max_staleness_secs: u64,
    /// Unix seconds of the last attempt, 0 for never.
    last_attempt: AtomicU64,
    /// Unix seconds of the last good read, 0 for never.
    last_success: AtomicU64,
    /// Unix seconds (when it started) of the last read that failed, 0 for never.
    last_failure: AtomicU64,
}

impl Polled {
    /// Never read yet: the first [`Polled::claim`] wins, and the state is stale until a
    /// read succeeds. `every` of zero makes every claim win.
    pub fn new(every: Duration, max_staleness: Duration) -> Self {
        Self {
            every_secs: every.as_secs(),
            max_staleness_secs: max_staleness.as_secs(),
            last_attempt: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
        }
    }

    /// Already read at `at` (benchmarks and tests of the hot path: nothing falls due for
    /// `every`).
    pub fn read_at(self, at: u64) -> Self {
        self.last_attempt.store(at.max(1), Ordering::Release);
        self.last_success.store(at.max(1), Ordering::Release);
        self
    }

    /// Takes the one read of this interval if it is still free: `true` means the caller
    /// reads now, and nobody else does until `every` has passed.
    pub fn claim(&self, now: u64) -> bool {
        let attempt = self.last_attempt.load(Ordering::Acquire);
        if attempt != 0 && now < attempt.saturating_add(self.every_secs) {
            return false;
        }
        self.last_attempt.compare_exchange(attempt, now.max(1), Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// A read that started at `now` succeeded. It counts as that interval's read too, also
    /// when it was made without [`Polled::claim`] (a signer's read at start, or one it had to
    /// make at once): the next read falls due `every` later, not at the next request.
    pub fn succeeded(&self, now: u64) {
        self.last_attempt.fetch_max(now.max(1), Ordering::AcqRel);
        self.last_success.fetch_max(now.max(1), Ordering::AcqRel);
    }

    /// A read that started at `now` failed.
    pub fn failed(&self, now: u64) {
        self.last_failure.fetch_max(now.max(1), Ordering::AcqRel);
    }

    /// Whether a read that started after the last good one has failed: the dependency is
    /// failing now, rather than the state merely not read for a while (an idle or frozen
    /// instance), so a caller has no reason to wait longer for the read under way.
    pub fn failing(&self) -> bool {
        self.last_failure.load(Ordering::Acquire) > self.last_success.load(Ordering::Acquire)
    }

    /// When the last good read was, if there was one.
    pub fn last_success(&self) -> Option<u64> {
        Some(self.last_success.load(Ordering::Acquire)).filter(|at| *at != 0)
    }

    /// Whether the state may be relied on at `now`: read successfully at most the
    /// staleness bound ago.
    pub fn freshness(&self, now: u64) -> Freshness {
        match self.last_success() {
            Some(at) if now.saturating_sub(at) <= self.max_staleness_secs => Freshness::Fresh,
            _ => Freshness::Stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled(every: u64, staleness: u64) -> Polled {
        Polled::new(Duration::from_secs(every), Duration::from_secs(staleness))
    }

    #[test]
    fn one_caller_takes_each_interval_s_read() {
        let p = polled(5, 60);
        assert!(p.claim(1_000), "never read: due");
        assert!(!p.claim(1_000), "taken");
        assert!(!p.claim(1_004), "inside the interval");
        assert!(p.claim(1_005), "the next interval");
    }

    #[test]
    fn an_interval_of_zero_reads_every_time() {
        let p = polled(0, 60);
        assert!(p.claim(1_000) && p.claim(1_000) && p.claim(1_001));
    }

    #[test]
    fn state_never_read_is_stale_even_after_an_attempt() {
        let p = polled(5, 60);
        assert!(p.claim(1_000));
        assert_eq!(p.freshness(1_000), Freshness::Stale);
    }

    #[test]
    fn a_good_read_serves_until_the_staleness_bound_and_not_a_second_longer() {
        let p = polled(5, 60);
        p.claim(1_000);
        p.succeeded(1_000);
        assert!(p.claim(1_005), "a later read falls due");
        assert_eq!(p.freshness(1_060), Freshness::Fresh, "it failed, but the bound holds");
        assert_eq!(p.freshness(1_061), Freshness::Stale);
        p.succeeded(1_061);
        assert_eq!(p.freshness(1_061), Freshness::Fresh, "a good read restores it");
    }

    #[test]
    fn a_slow_read_never_moves_the_last_success_back() {
        let p = polled(5, 60);
        p.succeeded(1_010);
        p.succeeded(1_000);
        assert_eq!(p.last_success(), Some(1_010));
    }

    #[test]
    fn a_read_made_without_a_claim_still_spends_the_interval() {
        let p = polled(5, 60);
        p.succeeded(1_000);
        assert!(!p.claim(1_000), "read at start: nothing due at the first request");
        assert!(!p.claim(1_004));
        assert!(p.claim(1_005));
    }

    #[test]
    fn reads_are_failing_from_a_failed_read_after_the_last_good_one_until_the_next_good_one() {
        let p = polled(5, 60);
        assert!(!p.failing(), "never read, never failed");
        p.succeeded(1_000);
        p.failed(1_000);
        assert!(!p.failing(), "a failure in the second of the good read is not after it");
        p.failed(1_005);
        assert!(p.failing(), "failed after the good read");
        p.succeeded(1_010);
        assert!(!p.failing(), "read again");
        p.failed(1_008);
        assert!(!p.failing(), "a slow failure of an older read is not after the good one");
    }

    #[test]
    fn preloaded_state_is_fresh_and_not_due() {
        let p = polled(5, 60).read_at(1_000);
        assert_eq!(p.freshness(1_000), Freshness::Fresh);
        assert!(!p.claim(1_004));
        assert!(p.claim(1_005));
    }
}
