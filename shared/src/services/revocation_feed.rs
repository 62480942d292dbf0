//! How a warm authorizer keeps up with revocations.
//!
//! No DynamoDB read per request: the feed polls "revoked since T" at most once per
//! `poll_every` (inline, on the first request after the interval), so reads depend on
//! the number of warm instances, not on the request rate. A revocation is therefore
//! visible at an instance within `poll_every` (+ the request gap that triggers the poll),
//! however late within [`POLL_OVERLAP_MS`] of its stamp its write lands.
//! If polling fails, the last known state serves for at most `max_staleness`, then every
//! token is refused until a poll succeeds again (fail closed).

use std::future::Future;
use std::pin::Pin;

use crate::error::DependencyError;
use crate::platform::config::AuthorizerSettings;
use crate::platform::metrics;
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
}

impl RevocationSource for DynamoRevocations {
    fn since(&self, from_ms: u64, to_ms: u64) -> SinceFuture<'_> {
        Box::pin(DynamoRevocations::since(self, from_ms, to_ms))
    }
}

/// Keeps a [`RevocationCache`] up to date from a [`RevocationSource`].
#[derive(Debug)]
pub struct RevocationFeed {
    source: Box<dyn RevocationSource>,
    cache: RevocationCache,
    polled: Polled,
    lookback_secs: u64,
    cursor_ms: Option<u64>,
}

impl RevocationFeed {
    /// A feed that polls at most every `settings.poll_every`, serves a failed poll's last
    /// state for `settings.max_staleness`, and at start loads entries of the last
    /// `lookback_secs` (the longest a covered token can live).
    pub fn new(source: Box<dyn RevocationSource>, settings: &AuthorizerSettings, lookback_secs: u64) -> Self {
        Self {
            source,
            cache: RevocationCache::default(),
            polled: Polled::new(settings.poll_every, settings.max_staleness),
            lookback_secs,
            cursor_ms: None,
        }
    }

    /// A feed that already holds `cache`, synced at `synced_at` (for benchmarks and tests
    /// of the hot path: no poll is due until `settings.poll_every` later).
    pub fn preloaded(
        source: Box<dyn RevocationSource>,
        settings: &AuthorizerSettings,
        cache: RevocationCache,
        synced_at: u64,
    ) -> Self {
        Self {
            cache,
            cursor_ms: Some(synced_at.saturating_mul(1000)),
            polled: Polled::new(settings.poll_every, settings.max_staleness).read_at(synced_at),
            ..Self::new(source, settings, 0)
        }
    }

    /// Polls if due; then says whether the state may be used at `now` (Unix seconds).
    pub async fn sync(&mut self, now: u64) -> Freshness {
        if self.polled.claim(now) {
            let age = self.polled.last_success().map_or(0, |at| now.saturating_sub(at));
            match self.poll(now).await {
                // How old the state was when this poll renewed it.
                Ok(()) => metrics::measure("authorize", "RevocationFeedAge", "poll", "Seconds", age as f64),
                Err(e) => {
                    tracing::warn!(error = %e, "revocation poll failed; serving the last known state");
                    metrics::count("authorize", "RevocationPollFailures", "failed");
                }
            }
        }
        let freshness = self.polled.freshness(now);
        if freshness == Freshness::Stale {
            tracing::error!(last_success = ?self.polled.last_success(), "revocation state is stale; denying");
        }
        freshness
    }

    async fn poll(&mut self, now: u64) -> Result<(), DependencyError> {
        let now_ms = now.saturating_mul(1000);
        let since_ms = match self.cursor_ms {
            Some(cursor) => cursor.saturating_sub(POLL_OVERLAP_MS),
            None => now_ms.saturating_sub(self.lookback_secs.saturating_mul(1000)),
        };
        let entries = self.source.since(since_ms, now_ms.saturating_add(60_000)).await?;
        self.cache.apply(entries);
        self.cache.prune(now);
        self.cursor_ms = Some(now_ms);
        self.polled.succeeded(now);
        Ok(())
    }

    /// Whether a verified token is revoked, by the last known state.
    pub fn is_revoked(&self, token: &AccessClaims) -> bool {
        self.cache.is_revoked(token)
    }

    /// The cache, for inspection.
    pub fn cache(&self) -> &RevocationCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::records::RevocationKind;
    use crate::rules::revocations::tests::{entry, token};

    /// A source that answers from a script, one answer per read, and records each read.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: std::sync::Mutex<std::collections::VecDeque<Result<Vec<Revocation>, ()>>>,
        reads: std::sync::Mutex<Vec<(u64, u64)>>,
    }

    impl RevocationSource for std::sync::Arc<Scripted> {
        fn since(&self, from_ms: u64, to_ms: u64) -> SinceFuture<'_> {
            self.reads.lock().unwrap_or_else(|e| e.into_inner()).push((from_ms, to_ms));
            let answer = self.answers.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or(Ok(vec![]));
            Box::pin(async move {
                answer.map_err(|()| DependencyError::DynamoDb { operation: "Query", message: "scripted".into() })
            })
        }
    }

    fn scripted(answers: Vec<Result<Vec<Revocation>, ()>>) -> (std::sync::Arc<Scripted>, RevocationFeed) {
        let source =
            std::sync::Arc::new(Scripted { answers: std::sync::Mutex::new(answers.into()), ..Default::default() });
        let settings = AuthorizerSettings {
            style: crate::rules::routes::ResponseStyle::Simple,
            rules: vec![],
            poll_every: std::time::Duration::from_secs(5),
            max_staleness: std::time::Duration::from_secs(60),
            metrics_every: std::time::Duration::from_secs(10),
        };
        (source.clone(), RevocationFeed::new(Box::new(source), &settings, 1_000))
    }

    fn reads(source: &Scripted) -> Vec<(u64, u64)> {
        source.reads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[tokio::test]
    async fn polls_at_most_once_per_interval_from_the_lookback_then_from_the_cursor_with_overlap() {
        let (source, mut feed) = scripted(vec![Ok(vec![entry(RevocationKind::Sid, "s1", None, 99_999)])]);
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
        let (source, mut feed) = scripted(vec![Ok(vec![revoked]), Err(()), Err(()), Ok(vec![])]);
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
        let (_, mut feed) = scripted(vec![Err(())]);
        assert_eq!(feed.sync(1_000).await, Freshness::Stale);
    }
}
