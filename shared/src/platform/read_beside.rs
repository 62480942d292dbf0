//! A read of polled state (the key set, the revocation feed) that the caller waits for only
//! as long as it chooses: the read runs on a task of its own, so a caller that stops
//! waiting leaves it to finish beside later requests, which then see what it read. One
//! read at a time: while one is under way no other starts, and one still under way after
//! [`READ_ABANDONED_AFTER`] is dropped so that the next interval can read again.
//!
//! Under Lambda's freeze between invocations the task runs only while the instance is
//! thawed (during an invocation, or while the runtime waits for the next event before the
//! freeze). A read frozen mid-flight resumes at the next thaw; its connection may have
//! died meanwhile, and it then fails or times out like any other failed read.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::platform::aws::OPERATION_TIMEOUT;
use crate::platform::metrics;
use crate::rules::polled::Polled;

/// The longest a request waits, in all, for reads of polled state that it started (the
/// authorizer's key set and revocation feed, a signer's key set): a healthy read (a
/// `GetItem` or a `Query` or two in the same region, single-digit milliseconds in
/// DynamoDB) ends well within it and is applied to this very request; one that has not
/// answered by then is left to finish beside later requests, so an outage or a slow
/// dependency adds at most this to a request's latency.
pub const READ_BUDGET: Duration = Duration::from_millis(25);

/// How long, from its start, a request waits in all for a read whose state it holds is
/// already past its staleness bound (an instance idle, or frozen, for longer than the
/// bound): answered from that state it would be refused, so it waits longer than
/// [`READ_BUDGET`] for the read it started (not when a read has failed since the last
/// good one: [`Polled::failing`], an outage). After a freeze the read may need a new
/// connection (a TLS handshake to DynamoDB) before its `GetItem` or `Query`, which can
/// outlast [`READ_BUDGET`] and ends well within this.
pub const STALE_READ_BUDGET: Duration = Duration::from_millis(250);

/// How long a read may stay under way before it is dropped: the SDK's timeout of two
/// calls (a signer's key-set read is a `GetItem` and, for a new envelope key, a
/// `kms:Decrypt`), with two seconds to spare. The SDK normally ends a hung call itself well before; this
/// bound only makes sure nothing can keep the next interval from reading.
pub const READ_ABANDONED_AFTER: Duration = Duration::from_millis(2 * OPERATION_TIMEOUT.as_millis() as u64 + 2_000);

/// How a read's mishaps are counted: an abandoned read in `failures` (`failed`), a read its
/// caller stopped waiting for in `ReadsPastBudget` (`what`), both under `operation`.
#[derive(Debug, Clone, Copy)]
pub struct ReadCounts {
    /// The metrics' `Operation` (`keys`, `authorize`).
    pub operation: &'static str,
    /// The metric of a failed read (`KeySetReadFailures`, `RevocationPollFailures`).
    pub failures: &'static str,
    /// What is read: the `Outcome` of `ReadsPastBudget` (`key_set`, `revocations`).
    pub what: &'static str,
}

/// At most one read under way, on a task of its own.
#[derive(Debug, Default)]
pub struct ReadBeside {
    /// The last read started; it ends when the read's task drops the sender, whether the
    /// read finished, failed, was abandoned or panicked.
    last: Mutex<Option<watch::Receiver<()>>>,
}

/// A read this caller started, which it may wait for.
#[derive(Debug)]
pub struct Started(watch::Receiver<()>);

impl Started {
    /// Waits until the read has ended or `deadline` has passed (`None`: until it ends), and
    /// says whether it ended.
    pub async fn ended_by(mut self, deadline: Option<Instant>) -> bool {
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.0.changed()).await.is_ok(),
            None => {
                // Only ever closed (nothing is sent): resolves when the read's task ends.
                let _ = self.0.changed().await;
                true
            }
        }
    }
}

impl ReadBeside {
    /// Waits until the read under way, if any, has ended or `deadline` has passed; whether
    /// none is under way then. Starts nothing.
    pub async fn settled_by(&self, deadline: Instant) -> bool {
        let under_way =
            self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref().filter(|r| running(r)).cloned();
        match under_way {
            Some(ended) => Started(ended).ended_by(Some(deadline)).await,
            None => true,
        }
    }

    /// Whether a read is under way.
    pub fn in_flight(&self) -> bool {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(running)
    }

    /// Starts the read `read()` makes on a task of its own if no read is under way and
    /// `due()` (asked only then) says one falls due. A read still running after
    /// [`READ_ABANDONED_AFTER`] is dropped and `abandoned()` called. `None` if nothing was
    /// started (and nothing was made: a request with nothing due pays for no read).
    pub fn start_if<F, A>(&self, due: impl FnOnce() -> bool, read: impl FnOnce() -> F, abandoned: A) -> Option<Started>
    where
        F: Future<Output = ()> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.as_ref().is_some_and(running) || !due() {
            return None;
        }
        let (ended, receiver) = watch::channel(());
        let read = read();
        tokio::spawn(async move {
            let _ended = ended;
            if tokio::time::timeout(READ_ABANDONED_AFTER, read).await.is_err() {
                abandoned();
            }
        });
        *last = Some(receiver.clone());
        Some(Started(receiver))
    }
}

impl ReadBeside {
    /// The one way polled state is read: if `polled` says a read falls due at `now` (its
    /// interval claimed) and none is under way, starts `read()` beside the caller and waits
    /// for it until `deadline` at most (`None`: until it ends), counting, as `counts` says,
    /// a read left under way or abandoned. Whether the state may be used is then
    /// `polled`'s to say.
    pub async fn read_if_due<F>(
        &self,
        polled: &Polled,
        now: u64,
        deadline: Option<Instant>,
        read: impl FnOnce() -> F,
        counts: ReadCounts,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let abandoned = move || {
            tracing::warn!(after = ?READ_ABANDONED_AFTER, read = counts.what, "read abandoned; the next interval reads again");
            metrics::count(counts.operation, counts.failures, "failed");
        };
        if let Some(started) = self.start_if(|| polled.claim(now), read, abandoned) {
            if !started.ended_by(deadline).await {
                tracing::warn!(read = counts.what, "read still under way; answering from the state held");
                metrics::count(counts.operation, "ReadsPastBudget", counts.what);
            }
        }
    }
}

/// Whether the read behind `ended` is still under way (its task still holds the sender).
fn running(ended: &watch::Receiver<()>) -> bool {
    ended.has_changed().is_ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_caller_waits_no_longer_than_its_deadline_and_the_read_still_finishes_beside() {
        let reads = ReadBeside::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let done = finished.clone();
        let started = reads
            .start_if(
                || true,
                || async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                },
                || {},
            )
            .expect("nothing under way: started");
        let waited_from = Instant::now();
        assert!(!started.ended_by(Some(waited_from + Duration::from_millis(25))).await, "still under way");
        assert_eq!(waited_from.elapsed(), Duration::from_millis(25), "waited exactly the budget");
        assert!(reads.in_flight());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 1, "finished beside the caller");
        assert!(!reads.in_flight());
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_read_starts_while_one_is_under_way_and_due_is_not_even_asked() {
        let reads = ReadBeside::default();
        assert!(reads.start_if(|| true, std::future::pending, || {}).is_some());
        tokio::task::yield_now().await;
        let asked = std::cell::Cell::new(false);
        assert!(reads
            .start_if(
                || {
                    asked.set(true);
                    true
                },
                || async {},
                || {}
            )
            .is_none());
        assert!(!asked.get(), "a claim taken while a read is under way would lose an interval");
        assert!(reads.start_if(|| false, || async {}, || {}).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_never_ends_is_abandoned_and_a_new_one_may_start() {
        let reads = ReadBeside::default();
        let abandoned = Arc::new(AtomicUsize::new(0));
        let counter = abandoned.clone();
        let started = reads
            .start_if(
                || true,
                std::future::pending,
                move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                },
            )
            .expect("nothing under way: started");
        assert!(started.ended_by(None).await, "ends, abandoned");
        assert_eq!(abandoned.load(Ordering::SeqCst), 1);
        assert!(!reads.in_flight());
        assert!(reads.start_if(|| true, || async {}, || {}).is_some(), "the next read may start");
    }

    #[tokio::test]
    async fn a_read_that_ends_within_the_deadline_is_reported_ended() {
        let reads = ReadBeside::default();
        let started = reads.start_if(|| true, || async {}, || {}).expect("nothing under way: started");
        assert!(started.ended_by(Some(Instant::now() + Duration::from_secs(60))).await);
        assert!(!reads.in_flight());
    }
}
