//! The per-source limit of login and refresh: one conditional write per request
//! ([`crate::store::DynamoLimits`]) before any other work, so a flood from one address costs
//! a write per request and never an argon2 verification, a `kms:Sign` or a family write.
//!
//! The source is the address API Gateway saw (`requestContext.http.sourceIp`), never a
//! header the client writes. A request without one (a direct invocation, no gateway) is not
//! counted. A limit that DynamoDB refuses to count (its table missing, access denied, its
//! item throttled) lets the request through (fail open, with a metric): it protects
//! capacity, not a secret, and a fault of it alone must not become an outage of login;
//! guessing stays bounded per username by the failed-attempt counter, which fails closed.
//! A DynamoDB that does not answer at all is a 503 at once: every later call of the
//! request would wait for it too (`docs/decisions.md`).

use std::sync::Arc;

use crate::error::ApiError;
use crate::platform::audit::RequestMeta;
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::platform::metrics;
use crate::rules::limits::{LimitedAction, RateLimit};
use crate::store::{DynamoLimits, LimitFailure};

/// The limit of one action per source. Built once per cold start.
#[derive(Clone)]
pub struct SourceLimiter {
    /// `None` when `LIMITS_TABLE` is empty: no per-source limit.
    store: Option<DynamoLimits>,
    action: LimitedAction,
    limit: RateLimit,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLimiter")
            .field("action", &self.action)
            .field("limit", &self.limit)
            .field("enabled", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl SourceLimiter {
    /// The limit of `action` as the deployment configured it.
    pub fn new(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        action: LimitedAction,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let limits = &config.source_limits;
        let max = match action {
            LimitedAction::Login => limits.login_max,
            LimitedAction::Refresh => limits.refresh_max,
        };
        let store = (!limits.table.is_empty()).then(|| DynamoLimits::new(dynamodb, &limits.table));
        Self { store, action, limit: RateLimit { max, window_secs: limits.window.as_secs() }, clock }
    }

    /// Counts the request against its source: `Err(Throttled)` (429 + `Retry-After`) when
    /// the source's bucket is full, `Err(Unavailable)` (503) when DynamoDB does not answer,
    /// `Ok` otherwise, also when DynamoDB refuses to count.
    pub async fn admit(&self, meta: &RequestMeta) -> Result<(), ApiError> {
        let (Some(store), Some(source)) = (&self.store, meta.source_ip.as_deref()) else {
            return Ok(());
        };
        let check = self.limit.check(self.action, source, self.clock.now());
        match store.take(&check).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(retry_after)) => {
                metrics::count(self.action.as_str(), "SourceThrottled", "throttled");
                Err(ApiError::Throttled { retry_after })
            }
            Err(LimitFailure::Refused(e)) => {
                tracing::warn!(error = %e, action = self.action.as_str(), "per-source limit refused; admitting");
                metrics::count(self.action.as_str(), "SourceLimitFailures", e.kind());
                Ok(())
            }
            Err(LimitFailure::Unreachable(e)) => Err(ApiError::Unavailable(e)),
        }
    }
}
