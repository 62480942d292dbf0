//! The API Gateway Lambda authorizer: every event shape in, allow / deny / unauthorized out.
//!
//! Shapes: REST API `TOKEN` and `REQUEST`; HTTP API `REQUEST` payload 1.0 (IAM policy) and
//! 2.0 (IAM policy or simple response, by configuration). The event is read borrowed
//! from the raw JSON with only the members we use, and an HTTP API event only as far as
//! those members, so the hot path does little work for the dozens it ignores.
//!
//! Decisions: a missing, malformed, expired or revoked token, or a stale revocation state,
//! is *unauthorized* (REST: the error `Unauthorized`, API Gateway answers 401; HTTP API: a
//! deny, since its authorizers cannot ask for a 401). A valid token that lacks the scope a
//! route requires is a *deny* (403). Allow policies cover the whole API and explicitly deny
//! every route whose required scope the token lacks, so a policy cached by API Gateway for
//! this token stays right for every other route.
//!
//! The hot path never waits on a dependency for long: a request that finds the key set or
//! the revocation feed due for a read (or meets a token naming a key it does not know)
//! starts the read and waits for it at most [`READ_BUDGET`] in all, then is answered from
//! the state held while the read finishes beside later requests. The staleness bounds are
//! judged by the clock at each request, so however long reads fail or hang (or an instance
//! stays frozen between invocations), state older than the bound is refused.

mod answer;
mod event;

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

pub use answer::{Answer, AuthContext};

use crate::platform::clock::Clock;
use crate::platform::config::{AuthorizerSettings, Config};
use crate::platform::metrics::Tally;
use crate::rules::polled::Freshness;
use crate::rules::routes::{self, PolicyDocument, ResponseStyle};
use crate::rules::token::AccessClaims;
use crate::rules::verify::{Rejection, Verifier};
use crate::services::keys::{AuthenticatedKeys, KeyRing};
use crate::services::revocation_feed::RevocationFeed;
use event::{split_arn, AuthorizationHeader, Event, Shape};

pub use crate::platform::read_beside::READ_BUDGET;

/// Why a request was not authorized (the audit/metric class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No bearer token where one was expected, or not exactly one.
    MissingToken,
    /// The token failed verification.
    Invalid(Rejection),
    /// The token is valid but revoked.
    Revoked,
    /// The revocation state is older than the staleness bound.
    StaleRevocations,
    /// The key set could not be re-read for longer than the staleness bound.
    StaleKeys,
    /// The event is not one of the shapes we accept.
    UnknownEvent,
}

impl Unauthorized {
    /// The reason class logged and counted.
    pub fn class(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Invalid(r) => r.class(),
            Self::Revoked => "revoked",
            Self::StaleRevocations => "stale_revocations",
            Self::StaleKeys => "stale_keys",
            Self::UnknownEvent => "unknown_event",
        }
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What API Gateway needs to answer 401; nothing about the token.
        f.write_str("Unauthorized")
    }
}

impl std::error::Error for Unauthorized {}

/// The authorizer: key ring (the verifier and its keys), revocation feed, rules. Built
/// once per cold start.
pub struct Authorizer {
    keys: Arc<KeyRing>,
    tally: Tally,
    feed: RevocationFeed,
    settings: AuthorizerSettings,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer").field("keys", &self.keys).field("settings", &self.settings).finish()
    }
}

impl Authorizer {
    /// Assembles an authorizer.
    pub fn new(keys: KeyRing, feed: RevocationFeed, settings: AuthorizerSettings, clock: Arc<dyn Clock>) -> Self {
        let tally = Tally::new("authorize", settings.metrics_every);
        Self { keys: Arc::new(keys), tally, feed, settings, clock }
    }

    /// Builds the authorizer as the function does: the key set and the revocation feed from
    /// their tables, re-read together at most once per `REVOCATION_POLL_SECS` (keys: at
    /// most once a second), the settings of `config`. No KMS client: the key set's
    /// signature is checked offline, and building a client it would never use costs a
    /// cold start about 0.1 ms.
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client, clock: Arc<dyn Clock>) -> Self {
        let keys = KeyRing::new(
            AuthenticatedKeys::reader_from_config(config, dynamodb.clone()),
            Arc::new(crate::services::verifier_for(config)),
            config.authorizer.poll_every,
            config.authorizer.max_staleness,
        );
        let feed = RevocationFeed::new(
            Box::new(crate::store::DynamoRevocations::new(dynamodb, &config.revocations_table)),
            &config.authorizer,
            config.revocation_lookback().as_secs(),
        );
        Self::new(keys, feed, config.authorizer.clone(), clock)
    }

    /// The verifier (for benchmarks that take the hot path apart).
    pub fn verifier(&self) -> &Verifier {
        self.keys.verifier()
    }

    /// Whether a read of the key set or the revocation feed is under way (one a request
    /// stopped waiting for, finishing beside): for tests that need what it brings.
    pub fn reading(&self) -> bool {
        self.keys.reading() || self.feed.polling()
    }

    /// Reads the key set and polls the revocation feed now, together, waiting for both
    /// however long they take (bounded by the SDK's timeouts): at cold start, before the
    /// runtime asks for the first event, nothing is held yet that a request could be
    /// answered from.
    pub async fn warm_up(&self) -> Freshness {
        let now = self.clock.now();
        let (keys, revocations) = tokio::join!(self.keys.sync(now), self.feed.sync(now));
        match (keys.freshness, revocations) {
            (Freshness::Fresh, Freshness::Fresh) => Freshness::Fresh,
            _ => Freshness::Stale,
        }
    }

    /// Answers one raw authorizer event: `Ok(response JSON)` for allow and deny,
    /// `Err(Unauthorized)` where API Gateway must answer 401 (REST). Every answer is counted
    /// by outcome, with its latency, in the instance's [`Tally`].
    pub async fn handle(&self, raw_event: &str) -> Result<Answer, Unauthorized> {
        let started = std::time::Instant::now();
        let (answer, outcome) = self.decide(raw_event).await;
        self.tally.record(outcome, started.elapsed());
        answer
    }

    /// The answer and its outcome class (`allow`, `insufficient_scope`, or a refusal's).
    async fn decide(&self, raw_event: &str) -> (Result<Answer, Unauthorized>, &'static str) {
        let Some(event) = Event::read(raw_event) else {
            return self.refuse(None, Unauthorized::UnknownEvent);
        };
        let (kind, version) = (Event::text(&event.kind), Event::text(&event.version));
        let (shape, arn) = match (kind, version) {
            (Some("TOKEN"), None) => (Shape::RestToken, event.method_arn.as_ref()),
            (Some("REQUEST"), None) => (Shape::RestRequest, event.method_arn.as_ref()),
            (Some("REQUEST"), Some("1.0")) => (Shape::HttpV1, event.method_arn.as_ref()),
            (Some("REQUEST"), Some("2.0")) => (Shape::HttpV2, event.route_arn.as_ref()),
            _ => return self.refuse(None, Unauthorized::UnknownEvent),
        };
        let Some((base, method, path)) = arn.and_then(|a| split_arn(&a.0)) else {
            return self.refuse(Some(shape), Unauthorized::UnknownEvent);
        };
        let header = match shape {
            Shape::RestToken => event.authorization_token.as_ref().map(|t| t.0.as_ref()),
            _ => match &event.headers {
                Some(AuthorizationHeader::One(value)) => Some(value.as_ref()),
                _ => None,
            },
        };
        let Some(token) = header.and_then(crate::edge::bearer::parse_bearer) else {
            return self.refuse(Some(shape), Unauthorized::MissingToken);
        };

        let now = self.clock.now();
        // Every read this request starts is waited for until here at most, in all.
        let deadline = Some(Instant::now() + READ_BUDGET);
        let mut verified = match self.verifier().verify(token, now) {
            Ok(v) => v,
            // Perhaps a key newer than ours: a warm instance reads the set only when invoked,
            // so one left idle while a key was published and promoted meets its first token
            // here. Read the set now if the last read is an interval old (a flood of unknown
            // kids still costs at most one read per interval) and, if it answers within the
            // budget, verify with what it holds; if not, refuse, and a later request has it.
            Err(Rejection::UnknownKey) if self.keys.sync_until(now, deadline).await.changed => {
                match self.verifier().verify(token, now) {
                    Ok(v) => v,
                    Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
                }
            }
            Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
        };
        {
            let (keys, revocations) =
                tokio::join!(self.keys.sync_until(now, deadline), self.feed.sync_until(now, deadline));
            if revocations == Freshness::Stale {
                return self.refuse(Some(shape), Unauthorized::StaleRevocations);
            }
            if keys.freshness == Freshness::Stale {
                return self.refuse(Some(shape), Unauthorized::StaleKeys);
            }
            if keys.changed {
                // The key may just have been revoked: verify again with the set as it is now.
                verified = match self.verifier().verify(token, now) {
                    Ok(v) => v,
                    Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
                };
            }
            if self.feed.is_revoked(&verified) {
                return self.refuse(Some(shape), Unauthorized::Revoked);
            }
        }

        let allowed = routes::decide(&self.settings.rules, method, path, &verified.scope);
        let outcome = if allowed { "allow" } else { "insufficient_scope" };
        if !allowed {
            audit("deny", outcome);
        }
        let answer = match (shape, self.settings.style) {
            (Shape::HttpV2, ResponseStyle::Simple) => {
                Answer::Simple { is_authorized: allowed, context: Some(AuthContext::from(verified)) }
            }
            _ => self.policy(base, method, path, verified),
        };
        (Ok(answer), outcome)
    }

    /// An IAM policy that answers this request as the rules do and allows nothing they deny
    /// on another route (see [`routes::policy`]), with the token's context.
    fn policy(&self, base: &str, method: &str, path: &str, token: AccessClaims) -> Answer {
        Answer::Policy {
            principal_id: token.sub.clone(),
            policy_document: routes::policy(&self.settings.rules, base, method, path, &token.scope),
            context: Some(AuthContext::from(token)),
        }
    }

    fn refuse(&self, shape: Option<Shape>, why: Unauthorized) -> (Result<Answer, Unauthorized>, &'static str) {
        audit("unauthorized", why.class());
        let answer = match (shape, self.settings.style) {
            (Some(Shape::HttpV2), ResponseStyle::Simple) => Ok(Answer::Simple { is_authorized: false, context: None }),
            (Some(Shape::HttpV1 | Shape::HttpV2), _) => Ok(Answer::Policy {
                principal_id: "unauthorized".to_owned(),
                policy_document: PolicyDocument::deny_all(),
                context: None,
            }),
            _ => Err(why),
        };
        (answer, why.class())
    }
}

/// One audit line per refusal class; never the token. (Counted by the tally, not here.)
fn audit(outcome: &'static str, reason: &'static str) {
    tracing::warn!(target: "audit", event = "authorize", outcome, reason, "request not authorized");
}
