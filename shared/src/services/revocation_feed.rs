//! How a warm authorizer keeps up with revocations.
//!
//! No DynamoDB read per request: the feed polls "revoked since T" at most once per
//! `poll_every` (started by the first request after the interval), so reads depend on
//! the number of warm instances, not on the request rate. A revocation is therefore
//! visible at an instance within `poll_every` (plus the request gap that triggers the poll
//! and the poll's own time), however late within [`POLL_OVERLAP_MS`] of its stamp its
//! write lands. If polling fails, the last known state serves for at most `max_staleness`, then
//! every token is refused until a poll succeeds again (fail closed).
//!
//! A poll runs on a task of its own ([`ReadBeside`]): the request that started it waits
//! for it only until the deadline it passes to [`RevocationFeed::sync_until`] (the
//! authorizer's [`crate::edge::authorizer::READ_BUDGET`]) and is then answered from the
//! state held; the poll finishes beside later requests and its result is applied when it
//! arrives, counted as read at the time the poll *started*. No second poll starts while
//! one is under way.
//!
//! The first load reads back one standard lifetime. An entry that outlives it (a revoked
//! day-long client token, such a client's cut-off) is also written to a long-lived
//! partition, which an instance reads once, when a token issued before its first load's
//! window comes ([`RevocationFeed::needs_long_lived`]): standard tokens never are, so a
//! cold start pays nothing for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::error::DependencyError;
use crate::platform::config::AuthorizerSettings;
use crate::platform::metrics;
use crate::platform::read_beside::{ReadBeside, ReadCounts, READ_ABANDONED_AFTER};
use crate::rules::polled::{Freshness, Polled};
use crate::rules::records::Revocation;
use crate::rules::revocations::RevocationCache;
use crate::rules::token::AccessClaims;
use crate::store::DynamoRevocations;

/// How far back each poll looks again. An entry is stamped just before its write is sent
/// and the read is strongly consistent, so an entry is missed only if it lands later than
/// this after its stamp. A writer is a function whose timeout (10 s in the template)
/// bounds how long its write can be under way; 5 s more cover clocks that disagree.
/// Re-applying an entry is harmless.
pub const POLL_OVERLAP_MS: u64 = 15_000;

/// A boxed future of a denylist read.
pub type SinceFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Revocation>, DependencyError>> + Send + 'a>>;

/// Where the feed reads "revoked since T": the Revocations table in production
/// ([`DynamoRevocations`], tested against DynamoDB Local); a scripted source in the unit
/// tests of the feed's staleness and fail-closed rules.
pub trait RevocationSource: Send + Sync + std::fmt::Debug {
    /// Entries revoked from `from_ms` up to `to_ms` (Unix milliseconds).
    fn since(&self, from_ms: u64, to_ms: u64) -> SinceFuture<'_>;

    /// Every entry that outlives the standard lifetime, whenever it was written: what the
    /// first load's lookback does not reach back to. None by default.
    fn long_lived(&self) -> SinceFuture<'_> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

impl RevocationSource for DynamoRevocations {
    fn since(&self, from_ms: u64, to_ms: u64) -> SinceFuture<'_> {
        Box::pin(DynamoRevocations::since(self, from_ms, to_ms))
    }

    fn long_lived(&self) -> SinceFuture<'_> {
        Box::pin(DynamoRevocations::long_lived(self))
    }
}

/// Keeps a [`RevocationCache`] up to date from a [`RevocationSource`].
#[derive(Debug)]
pub struct RevocationFeed {
    shared: Arc<Shared>,
    polls: ReadBeside,
    /// The read of the long-lived entries, once per instance (again after a failed one).
    long_lived_reads: ReadBeside,
}

/// What a poll's task reads and writes.
#[derive(Debug)]
struct Shared {
    source: Box<dyn RevocationSource>,
    polled: Polled,
    lookback_secs: u64,
    /// How much earlier than the covered window a token's `iat` must be before it may need
    /// a long-lived entry: the writers' clock leeway.
    clock_margin_ms: u64,
    held: Mutex<Held>,
}

/// The state held between polls.
#[derive(Debug)]
struct Held {
    cache: RevocationCache,
    /// Where the next poll starts reading (less the overlap): the start of the last good one.
    cursor_ms: Option<u64>,
    /// Where the first good read started: entries stamped earlier are known only if they
    /// outlive the lookback, from the long-lived partition.
    covered_from_ms: Option<u64>,
    /// The long-lived entries are applied (read once per instance, when a token needs them).
    long_lived_loaded: bool,
}

impl RevocationFeed {
    /// A feed that polls at most every `settings.poll_every`, serves a failed poll's last
    /// state for `settings.max_staleness`, and at start loads entries of the last
    /// `lookback_secs` (the longest a covered token can live).
    pub fn new(source: Box<dyn RevocationSource>, settings: &AuthorizerSettings, lookback_secs: u64) -> Self {
        let held = Held {
            cache: RevocationCache::default(),
            cursor_ms: None,
            covered_from_ms: None,
            long_lived_loaded: false,
        };
        Self::with_state(source, Polled::new(settings.poll_every, settings.max_staleness), lookback_secs, held)
    }

    /// Counts a token as possibly covered by an entry older than the first load's window
    /// when its `iat` is within `secs` (the writers' clock leeway) of that window's start.
    pub fn with_clock_margin(mut self, secs: u64) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.clock_margin_ms = secs.saturating_mul(1000);
        }
        self
    }

    /// A feed that already holds `cache`, synced at `synced_at` (for benchmarks and tests
    /// of the hot path: no poll is due until `settings.poll_every` later).
    pub fn preloaded(
        source: Box<dyn RevocationSource>,
        settings: &AuthorizerSettings,
        cache: RevocationCache,
        synced_at: u64,
    ) -> Self {
        let polled = Polled::new(settings.poll_every, settings.max_staleness).read_at(synced_at);
        let held = Held {
            cache,
            cursor_ms: Some(synced_at.saturating_mul(1000)),
            covered_from_ms: None,
            long_lived_loaded: false,
        };
        Self::with_state(source, polled, 0, held)
    }

    fn with_state(source: Box<dyn RevocationSource>, polled: Polled, lookback_secs: u64, held: Held) -> Self {
        let shared = Shared { source, polled, lookback_secs, clock_margin_ms: 0, held: Mutex::new(held) };
        Self { shared: Arc::new(shared), polls: ReadBeside::default(), long_lived_reads: ReadBeside::default() }
    }

    /// Polls if due and waits for the poll to finish; then says whether the state may be
    /// used at `now` (Unix seconds). For a cold start and for tests: a request passes a
    /// deadline to [`Self::sync_until`].
    pub async fn sync(&self, now: u64) -> Freshness {
        self.sync_until(now, None).await
    }

    /// Starts a poll if one is due and none is under way, waits for it until `deadline`
    /// at most (then it finishes beside later requests), and says whether the state held
    /// may be used at `now` (Unix seconds): fail closed past the staleness bound, whatever
    /// is under way.
    pub async fn sync_until(&self, now: u64, deadline: Option<Instant>) -> Freshness {
        let shared = Arc::clone(&self.shared);
        let poll = || async move { shared.poll(now).await };
        let counts = ReadCounts { operation: "authorize", failures: "RevocationPollFailures", what: "revocations" };
        self.polls.read_if_due(&self.shared.polled, now, deadline, poll, counts).await;
        self.shared.polled.freshness(now)
    }

    /// Waits for the poll under way, if any, until `deadline` at most (starting none), and
    /// says whether the state may now be used; logs a state that may not.
    pub async fn settle(&self, now: u64, deadline: Instant) -> Freshness {
        self.polls.settled_by(deadline).await;
        let freshness = self.shared.polled.freshness(now);
        if freshness == Freshness::Stale {
            tracing::error!(last_success = ?self.shared.polled.last_success(), "revocation state is stale; denying");
        }
        freshness
    }

    /// Whether a poll that started after the last good one has failed (DynamoDB failing
    /// now, not merely an instance that has not polled for a while).
    pub fn polls_failing(&self) -> bool {
        self.shared.polled.failing()
    }

    /// Whether a poll, or the read of the long-lived entries, is under way.
    pub fn polling(&self) -> bool {
        self.polls.in_flight() || self.long_lived_reads.in_flight()
    }

    /// Whether `token` was issued before what this instance's first load covered, while the
    /// long-lived entries (the only ones that can cover it and that load missed: a revoked
    /// day-long client token's `jti`, such a client's cut-off) are not yet known. A token
    /// of the standard lifetime that is still valid is never that old.
    pub fn needs_long_lived(&self, token: &AccessClaims) -> bool {
        let held = self.shared.held();
        !held.long_lived_loaded
            && held
                .covered_from_ms
                .is_some_and(|from| token.iat.saturating_mul(1000) < from.saturating_add(self.shared.clock_margin_ms))
    }

    /// Reads the long-lived entries (once per instance; again after a failed read) beside
    /// the caller ([`ReadBeside`]) and waits for them until `deadline` at most; a read not
    /// done by then goes on beside later requests. Whether they are known.
    pub async fn load_long_lived_until(&self, deadline: Instant) -> bool {
        let shared = Arc::clone(&self.shared);
        let abandoned = || {
            tracing::warn!(after = ?READ_ABANDONED_AFTER, "long-lived revocations read abandoned");
            metrics::count("authorize", "RevocationPollFailures", "failed");
        };
        let not_loaded = || !self.shared.held().long_lived_loaded;
        match self.long_lived_reads.start_if(not_loaded, || async move { shared.load_long_lived().await }, abandoned) {
            Some(started) => {
                started.ended_by(Some(deadline)).await;
            }
            None => {
                self.long_lived_reads.settled_by(deadline).await;
            }
        }
        self.shared.held().long_lived_loaded
    }

    /// Whether a verified token is revoked, by the last known state.
    pub fn is_revoked(&self, token: &AccessClaims) -> bool {
        self.shared.held().cache.is_revoked(token)
    }

    /// When the last good poll started, if there was one.
    pub fn last_success(&self) -> Option<u64> {
        self.shared.polled.last_success()
    }
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads and applies the long-lived entries.
    async fn load_long_lived(&self) {
        match self.source.long_lived().await {
            Ok(entries) => {
                let mut held = self.held();
                held.cache.apply(entries);
                held.long_lived_loaded = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "long-lived revocations not read; old tokens are refused until they are");
                metrics::count("authorize", "RevocationPollFailures", "long_lived");
            }
        }
    }

    /// One poll, started at `now`: its outcome logged and counted.
    async fn poll(&self, now: u64) {
        let age = self.polled.last_success().map_or(0, |at| now.saturating_sub(at));
        match self.read(now).await {
            // How old the state was when this poll renewed it.
            Ok(()) => metrics::measure("authorize", "RevocationFeedAge", "poll", "Seconds", age as f64),
            Err(e) => {
                self.polled.failed(now);
                tracing::warn!(error = %e, "revocation poll failed; serving the last known state");
                metrics::count("authorize", "RevocationPollFailures", "failed");
            }
        }
    }

    /// Reads from the cursor (less the overlap) and applies what it finds, however late it
    /// answers: the entries are learnt, the cursor moves to `now` (never back), and the
    /// success counts at `now`, when the read started, so a slow read never makes the state
    /// look fresher than it is.
    async fn read(&self, now: u64) -> Result<(), DependencyError> {
        let now_ms = now.saturating_mul(1000);
        let since_ms = match self.held().cursor_ms {
            Some(cursor) => cursor.saturating_sub(POLL_OVERLAP_MS),
            None => now_ms.saturating_sub(self.lookback_secs.saturating_mul(1000)),
        };
        let entries = self.source.since(since_ms, now_ms.saturating_add(60_000)).await?;
        let mut held = self.held();
        held.covered_from_ms.get_or_insert(since_ms);
        held.cache.apply(entries);
        held.cache.prune(now);
        held.cursor_ms = Some(held.cursor_ms.map_or(now_ms, |cursor| cursor.max(now_ms)));
        self.polled.succeeded(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::platform::read_beside::READ_ABANDONED_AFTER;
    use crate::rules::records::RevocationKind;
    use crate::rules::revocations::tests::{entry, token};

    /// One scripted answer: the entries or a failure, at once, after a while, or never.
    #[derive(Debug)]
    enum Answer {
        Now(Result<Vec<Revocation>, ()>),
        After(Duration, Result<Vec<Revocation>, ()>),
        Never,
    }

    /// A source that answers from a script, one answer per read, and records each read.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: std::sync::Mutex<std::collections::VecDeque<Answer>>,
        reads: std::sync::Mutex<Vec<(u64, u64)>>,
        /// The long-lived partition, and how often it was read.
        long: std::sync::Mutex<Vec<Revocation>>,
        long_reads: std::sync::atomic::AtomicUsize,
        /// How long the long-lived read takes.
        long_delay: std::sync::Mutex<Duration>,
    }

    impl RevocationSource for std::sync::Arc<Scripted> {
        fn long_lived(&self) -> SinceFuture<'_> {
            self.long_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let long = self.long.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let delay = *self.long_delay.lock().unwrap_or_else(|e| e.into_inner());
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(long)
            })
        }

        fn since(&self, from_ms: u64, to_ms: u64) -> SinceFuture<'_> {
            self.reads.lock().unwrap_or_else(|e| e.into_inner()).push((from_ms, to_ms));
            let answer =
                self.answers.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or(Answer::Now(Ok(vec![])));
            Box::pin(async move {
                let answer = match answer {
                    Answer::Now(answer) => answer,
                    Answer::After(wait, answer) => {
                        tokio::time::sleep(wait).await;
                        answer
                    }
                    Answer::Never => std::future::pending().await,
                };
                answer.map_err(|()| DependencyError::DynamoDb { operation: "Query", message: "scripted".into() })
            })
        }
    }

    fn scripted(answers: Vec<Result<Vec<Revocation>, ()>>) -> (std::sync::Arc<Scripted>, RevocationFeed) {
        scripted_every(5, answers.into_iter().map(Answer::Now).collect())
    }

    /// A feed polling every `poll_every` seconds, relying on a poll for 60 s.
    fn scripted_every(poll_every: u64, answers: Vec<Answer>) -> (std::sync::Arc<Scripted>, RevocationFeed) {
        let source =
            std::sync::Arc::new(Scripted { answers: std::sync::Mutex::new(answers.into()), ..Default::default() });
        let settings = AuthorizerSettings {
            style: crate::rules::routes::ResponseStyle::Simple,
            rules: vec![],
            poll_every: Duration::from_secs(poll_every),
            max_staleness: Duration::from_secs(60),
            metrics_every: Duration::from_secs(10),
        };
        (source.clone(), RevocationFeed::new(Box::new(source), &settings, 1_000))
    }

    /// The authorizer's deadline for a request starting now.
    fn budget() -> Option<Instant> {
        Some(Instant::now() + BUDGET)
    }

    fn reads(source: &Scripted) -> Vec<(u64, u64)> {
        source.reads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[tokio::test]
    async fn only_a_token_older_than_the_first_loads_window_reads_the_long_lived_entries_and_once() {
        let (source, feed) = scripted(vec![]);
        let feed = feed.with_clock_margin(30);
        *source.long.lock().unwrap_or_else(|e| e.into_inner()) =
            vec![entry(RevocationKind::Jti, "day-long", None, 99_999)];
        assert_eq!(feed.sync(10_000).await, Freshness::Fresh);
        // The first load covered from 9_000 s (its 1_000 s look-back) less the margin.
        for iat in [9_030, 9_500, 10_000] {
            assert!(!feed.needs_long_lived(&token("j", "s", "u", iat)), "{iat}: covered by the first load");
        }
        let old = token("day-long", "s", "u", 9_029);
        assert!(feed.needs_long_lived(&old));
        assert!(!feed.is_revoked(&old), "not known before the long-lived read");
        assert_eq!(source.long_reads.load(std::sync::atomic::Ordering::SeqCst), 0, "a cold start reads none");
        assert!(feed.load_long_lived_until(Instant::now() + BUDGET).await);
        assert!(!feed.polling(), "the read is done");
        assert!(feed.is_revoked(&old));
        assert!(!feed.needs_long_lived(&token("other", "s", "u", 1)), "read once per instance");
        assert_eq!(source.long_reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_long_lived_read_past_the_budget_goes_on_beside_and_serves_the_next_request() {
        let (source, feed) = scripted(vec![]);
        *source.long.lock().unwrap_or_else(|e| e.into_inner()) =
            vec![entry(RevocationKind::Jti, "day-long", None, 99_999)];
        *source.long_delay.lock().unwrap_or_else(|e| e.into_inner()) = BUDGET * 4;
        feed.sync(10_000).await;
        let old = token("day-long", "s", "u", 1);
        assert!(!feed.load_long_lived_until(Instant::now() + BUDGET).await, "not answered within the budget");
        assert!(feed.polling(), "still under way, beside");
        let deadline = Instant::now() + Duration::from_secs(5);
        while feed.polling() {
            assert!(Instant::now() < deadline, "the read finished on its own");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(feed.is_revoked(&old), "applied though nobody waited");
        assert!(!feed.needs_long_lived(&old));
        assert_eq!(source.long_reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn polls_at_most_once_per_interval_from_the_lookback_then_from_the_cursor_with_overlap() {
        let (source, feed) = scripted(vec![Ok(vec![entry(RevocationKind::Sid, "s1", None, 99_999)])]);
        assert_eq!(feed.sync(10_000).await, Freshness::Fresh);
        assert_eq!(reads(&source), vec![(9_000_000, 10_060_000)], "a cold feed reads the whole look-back");
        assert!(feed.is_revoked(&token("x", "s1", "x", 0)));
        for now in [10_001, 10_002, 10_004] {
            assert_eq!(feed.sync(now).await, Freshness::Fresh);
        }
        assert_eq!(reads(&source).len(), 1, "no read inside the interval");
        feed.sync(10_005).await;
        assert_eq!(reads(&source)[1], (10_000_000 - POLL_OVERLAP_MS, 10_065_000), "from the last cursor, overlapping");
    }

    #[tokio::test]
    async fn a_failed_poll_serves_the_last_state_until_the_staleness_bound_then_denies_until_a_poll_succeeds() {
        let revoked = entry(RevocationKind::Jti, "j1", None, 99_999);
        let (source, feed) = scripted(vec![Ok(vec![revoked]), Err(()), Err(()), Ok(vec![])]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        assert_eq!(feed.sync(1_005).await, Freshness::Fresh, "failed, last success 5 s ago");
        assert!(feed.is_revoked(&token("j1", "x", "x", 0)), "the last known state still applies");
        assert_eq!(feed.sync(1_060).await, Freshness::Fresh, "failed, exactly at the bound");
        assert_eq!(feed.sync(1_061).await, Freshness::Stale, "within the bound no longer: fail closed");
        assert_eq!(feed.sync(1_062).await, Freshness::Stale, "no new poll inside the interval");
        assert_eq!(feed.sync(1_066).await, Freshness::Fresh, "a successful poll restores it");
        assert_eq!(reads(&source).len(), 4);
    }

    #[tokio::test]
    async fn a_feed_that_never_synced_is_stale() {
        let (_, feed) = scripted(vec![Err(())]);
        assert_eq!(feed.sync(1_000).await, Freshness::Stale);
    }

    /// The budget under test (the authorizer's, restated so this layer does not import edge).
    const BUDGET: Duration = Duration::from_millis(25);

    #[tokio::test(start_paused = true)]
    async fn a_hung_poll_leaves_the_request_to_be_answered_from_the_state_held_at_the_deadline() {
        let revoked = entry(RevocationKind::Jti, "j1", None, 99_999);
        let (source, feed) = scripted_every(5, vec![Answer::Now(Ok(vec![revoked])), Answer::Never]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        let asked = Instant::now();
        assert_eq!(feed.sync_until(1_005, budget()).await, Freshness::Fresh, "answered from the state held");
        assert_eq!(asked.elapsed(), BUDGET, "waited the budget, not the read");
        assert!(feed.polling(), "the poll goes on beside");
        assert!(feed.is_revoked(&token("j1", "x", "x", 0)), "the state held still applies");
        assert_eq!(reads(&source).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_that_answers_after_the_budget_is_applied_for_later_requests_as_of_its_start() {
        let late = entry(RevocationKind::Sid, "s-late", None, 99_999);
        let (source, feed) =
            scripted_every(5, vec![Answer::Now(Ok(vec![])), Answer::After(Duration::from_millis(500), Ok(vec![late]))]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        assert_eq!(feed.sync_until(1_005, budget()).await, Freshness::Fresh);
        let session = token("x", "s-late", "x", 0);
        assert!(!feed.is_revoked(&session), "not answered yet");
        wait_until_polled(&feed).await;
        // A later request (the clock says 1_007) finds what the late poll learnt.
        assert_eq!(feed.sync_until(1_007, budget()).await, Freshness::Fresh);
        assert!(feed.is_revoked(&session), "the late answer was applied");
        assert_eq!(feed.last_success(), Some(1_005), "a success as of the poll's start, not its end");
        assert_eq!(reads(&source).len(), 2, "nothing due at 1_007");
        feed.sync(1_010).await;
        assert_eq!(reads(&source)[2].0, 1_005_000 - POLL_OVERLAP_MS, "the cursor moved to the late poll's start");
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_poll_is_under_way_however_many_requests_find_one_due() {
        // A poll on every request (REVOCATION_POLL_SECS=0), and the first one hangs.
        let (source, feed) = scripted_every(0, vec![Answer::Now(Ok(vec![])), Answer::Never]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        for now in 1_001..1_021 {
            assert_eq!(feed.sync_until(now, budget()).await, Freshness::Fresh);
        }
        assert_eq!(reads(&source).len(), 2, "the hung poll is the only one since: {:?}", reads(&source));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_staleness_bound_a_request_is_refused_while_a_poll_hangs() {
        let (_, feed) = scripted_every(5, vec![Answer::Now(Ok(vec![])), Answer::Never]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        assert_eq!(feed.sync_until(1_055, budget()).await, Freshness::Fresh, "hangs, within the bound");
        assert!(feed.polling());
        assert_eq!(feed.sync_until(1_061, budget()).await, Freshness::Stale, "fail closed, poll or no poll");
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_bound_a_request_may_settle_for_the_poll_it_started_within_a_later_deadline() {
        // An instance idle for longer than the bound: its held state is stale, its poll
        // (after a freeze: a new connection) answers after the budget but soon.
        let slow = Duration::from_millis(80);
        let (source, feed) =
            scripted_every(5, vec![Answer::Now(Ok(vec![])), Answer::After(slow, Ok(vec![])), Answer::Never]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        let asked = Instant::now();
        assert_eq!(feed.sync_until(1_070, budget()).await, Freshness::Stale, "the budget passed, the state is stale");
        assert_eq!(feed.settle(1_070, asked + Duration::from_millis(250)).await, Freshness::Fresh, "settled");
        assert_eq!(asked.elapsed(), slow, "waited for the poll, no longer");
        assert_eq!(reads(&source).len(), 2, "settling starts no read");
        // A poll that does not answer: settled for until the later deadline, then refused.
        let asked = Instant::now();
        assert_eq!(feed.sync_until(1_140, budget()).await, Freshness::Stale);
        assert_eq!(feed.settle(1_140, asked + Duration::from_millis(250)).await, Freshness::Stale, "fail closed");
        assert_eq!(asked.elapsed(), Duration::from_millis(250), "at most the later deadline");
        // Nothing under way: settling answers at once.
        wait_until_polled(&feed).await;
        let asked = Instant::now();
        assert_eq!(feed.settle(1_140, asked + Duration::from_millis(250)).await, Freshness::Stale);
        assert_eq!(asked.elapsed(), Duration::ZERO, "no poll under way: no wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_that_never_answers_is_abandoned_and_the_next_interval_polls_again() {
        let (source, feed) = scripted_every(5, vec![Answer::Now(Ok(vec![])), Answer::Never, Answer::Now(Ok(vec![]))]);
        assert_eq!(feed.sync(1_000).await, Freshness::Fresh);
        feed.sync_until(1_005, budget()).await;
        feed.sync_until(1_010, budget()).await;
        assert_eq!(reads(&source).len(), 2, "an interval later, the hung poll still blocks a second");
        wait_until_polled(&feed).await;
        assert_eq!(feed.sync_until(1_015, budget()).await, Freshness::Fresh);
        assert_eq!(reads(&source).len(), 3, "after the abandon, the next request polls again");
        assert_eq!(feed.last_success(), Some(1_015));
    }

    /// Lets (paused) time run until no poll is under way, the longest a poll may take at most.
    async fn wait_until_polled(feed: &RevocationFeed) {
        let deadline = Instant::now() + READ_ABANDONED_AFTER + Duration::from_secs(1);
        while feed.polling() {
            assert!(Instant::now() < deadline, "a poll outlived its abandonment");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
