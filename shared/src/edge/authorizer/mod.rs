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
//! DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is accepted only as
//! `Authorization: DPoP` with one proof of that key for this request, whose `jti` is then
//! recorded once across every instance (one conditional write, the request's last step,
//! waited for at most [`PROOF_WRITE_BUDGET`]; fail closed). A verified token's claims are
//! kept per instance ([`VerifiedTokens`]) until its `exp` or a change of the trusted keys,
//! so a repeated token costs no signature check; revocation is checked on every request.
//! The token's SHA-256 (the cache's key) is also what the proof's `ath` is checked
//! against, and each client key is parsed once per instance ([`ClientKeys`]).
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
use std::time::Duration;

use tokio::time::Instant;

pub use answer::{Answer, AuthContext};

use crate::platform::clock::Clock;
use crate::platform::config::{AuthorizerSettings, Config, DpopSettings};
use crate::platform::metrics::Tally;
use crate::rules::dpop::{self, ClientKeys, ProofRejection, ProofRequest, ProofWindow};
use crate::rules::polled::Freshness;
use crate::rules::routes::{self, PolicyDocument, ResponseStyle};
use crate::rules::token::AccessClaims;
use crate::rules::verify::{Rejection, Verifier};
use crate::services::keys::live::KeySync;
use crate::services::keys::{AuthenticatedKeys, KeyRing};
use crate::services::proof_ledger::ProofLedger;
use crate::services::revocation_feed::RevocationFeed;
use crate::services::verified_tokens::{token_digest, TokenDigest, VerifiedTokens};
use crate::store::{DynamoProofs, ProofUse};
use event::{split_arn, Event, Shape};

pub use crate::platform::read_beside::{READ_BUDGET, STALE_READ_BUDGET};

/// How long a request waits at most for the Proofs table to record its proof. The write
/// is the one a DPoP request cannot do without (no state held could tell a replay), so it
/// is not finished beside: past this the proof is refused and the client retries with a
/// new one. An in-region conditional `PutItem` takes a few milliseconds; this bounds the
/// tail well below a second without refusing what is merely slower than the reads' budget.
pub const PROOF_WRITE_BUDGET: Duration = Duration::from_millis(100);

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
    /// A DPoP-bound token's proof was missing (a REST `TOKEN` event carries none), failed
    /// a check of [`crate::rules::dpop::verify_proof`], or was used before.
    Proof(ProofRejection),
    /// A DPoP-bound token presented as `Bearer`: whoever holds it without the key.
    BoundTokenAsBearer,
    /// `Authorization: DPoP` with a token that is not bound to a key.
    UnboundTokenAsDpop,
    /// An unbound token where the deployment requires DPoP (`REQUIRE_DPOP`).
    DpopRequired,
    /// A bound token where DPoP is off (`PROOFS_TABLE` empty): no replay could be detected.
    DpopDisabled,
    /// The proof ledger failed or did not answer within the budget: whether the proof is a
    /// replay is unknown, so it is refused (fail closed).
    ProofLedgerUnavailable,
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
            Self::Proof(r) => r.class(),
            Self::BoundTokenAsBearer => "dpop_bound_token_as_bearer",
            Self::UnboundTokenAsDpop => "dpop_unbound_token",
            Self::DpopRequired => "dpop_required",
            Self::DpopDisabled => "dpop_disabled",
            Self::ProofLedgerUnavailable => "dpop_ledger_unavailable",
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
    dpop: DpopCheck,
    verified: VerifiedTokens,
    client_keys: ClientKeys,
}

/// What the authorizer needs to check DPoP proofs.
struct DpopCheck {
    /// Where proofs are recorded once; `None` (no `PROOFS_TABLE`): bound tokens are refused.
    ledger: Option<Arc<dyn ProofLedger>>,
    required: bool,
    public_base_url: Option<String>,
    max_age: u64,
    leeway: u64,
}

impl DpopCheck {
    fn off() -> Self {
        Self { ledger: None, required: false, public_base_url: None, max_age: 0, leeway: 0 }
    }
}

/// How the request presented its token.
#[derive(Clone, Copy)]
enum Scheme {
    Bearer,
    Dpop,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer").field("keys", &self.keys).field("settings", &self.settings).finish()
    }
}

impl Authorizer {
    /// Assembles an authorizer.
    /// Assembles an authorizer without DPoP: bound tokens are refused (see [`Self::with_dpop`]).
    pub fn new(keys: KeyRing, feed: RevocationFeed, settings: AuthorizerSettings, clock: Arc<dyn Clock>) -> Self {
        let tally = Tally::new("authorize", settings.metrics_every);
        let (dpop, verified) = (DpopCheck::off(), VerifiedTokens::default());
        let client_keys = ClientKeys::default();
        Self { keys: Arc::new(keys), tally, feed, settings, clock, dpop, verified, client_keys }
    }

    /// Checks DPoP proofs as `settings` say (the window: `DPOP_PROOF_MAX_AGE_SECS` back,
    /// `leeway` ahead), recording each accepted proof in `ledger`; without a ledger, bound
    /// tokens are refused.
    pub fn with_dpop(
        mut self,
        settings: &DpopSettings,
        leeway: Duration,
        ledger: Option<Arc<dyn ProofLedger>>,
    ) -> Self {
        self.dpop = DpopCheck {
            ledger,
            required: settings.required,
            public_base_url: settings.public_base_url.clone(),
            max_age: settings.proof_max_age.as_secs(),
            leeway: leeway.as_secs(),
        };
        self
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
            Box::new(crate::store::DynamoRevocations::new(dynamodb.clone(), &config.revocations_table)),
            &config.authorizer,
            config.revocation_lookback().as_secs(),
        )
        .with_clock_margin(config.token_leeway.as_secs());
        let ledger = (!config.dpop.proofs_table.is_empty())
            .then(|| Arc::new(DynamoProofs::new(dynamodb.clone(), &config.dpop.proofs_table)) as Arc<dyn ProofLedger>);
        Self::new(keys, feed, config.authorizer.clone(), clock).with_dpop(&config.dpop, config.token_leeway, ledger)
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
        let authorization = match shape {
            Shape::RestToken => Event::text(&event.authorization_token),
            _ => event.header(|h| &h.authorization),
        };
        let presented = authorization.and_then(|value| match crate::edge::bearer::parse_bearer(value) {
            Some(token) => Some((Scheme::Bearer, token)),
            None => crate::edge::bearer::parse_dpop(value).map(|token| (Scheme::Dpop, token)),
        });
        let Some((scheme, token)) = presented else {
            return self.refuse(Some(shape), Unauthorized::MissingToken);
        };

        let now = self.clock.now();
        let digest = token_digest(token);
        // Every read this request starts is waited for until here at most, in all.
        let started = Instant::now();
        let deadline = Some(started + READ_BUDGET);
        let mut verified = match self.verify(token, &digest, now) {
            Ok(v) => v,
            // Perhaps a key newer than ours: a warm instance reads the set only when invoked,
            // so one left idle while a key was published and promoted meets its first token
            // here. Read the set now if the last read is an interval old (a flood of unknown
            // kids still costs at most one read per interval) and, if it answers within the
            // budget, verify with what it holds; if not, refuse, and a later request has it.
            Err(Rejection::UnknownKey) if self.keys.sync_until(now, deadline).await.changed => {
                match self.verify(token, &digest, now) {
                    Ok(v) => v,
                    Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
                }
            }
            Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
        };
        // The proof, without I/O, before any read: a refused proof costs no call.
        let proof = match self.check_proof(scheme, &verified, &event, shape, method, &digest, now) {
            Ok(proof) => proof,
            Err(why) => return self.refuse(Some(shape), why),
        };
        {
            let generation = self.keys.generation();
            let (mut keys, mut revocations) =
                tokio::join!(self.keys.sync_until(now, deadline), self.feed.sync_until(now, deadline));
            // State past its bound would refuse this request (an instance idle or frozen for
            // longer than the bound meets it on its first request): wait a little longer for
            // the reads under way rather than refuse at once. Not when a read of stale state
            // has already failed since its last good one: the dependency is failing (an
            // outage), and waiting would only delay the refusal.
            let revocations_stale = revocations == Freshness::Stale;
            let keys_stale = keys.freshness == Freshness::Stale;
            let failing = (revocations_stale && self.feed.polls_failing()) || (keys_stale && self.keys.reads_failing());
            if (revocations_stale || keys_stale) && !failing {
                let late = started + STALE_READ_BUDGET;
                let (key_freshness, settled) = tokio::join!(self.keys.settle(now, late), self.feed.settle(now, late));
                keys = KeySync { freshness: key_freshness, changed: self.keys.generation() != generation };
                revocations = settled;
            }
            if revocations == Freshness::Stale {
                return self.refuse(Some(shape), Unauthorized::StaleRevocations);
            }
            if keys.freshness == Freshness::Stale {
                return self.refuse(Some(shape), Unauthorized::StaleKeys);
            }
            if keys.changed {
                // The key may just have been revoked: verify again with the set as it is now.
                verified = match self.verify(token, &digest, now) {
                    Ok(v) => v,
                    Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
                };
            }
            // A token older than the first load's window (a day-long client token): the
            // entries that outlive that window, read once per instance, must be known.
            if self.feed.needs_long_lived(&verified) && !self.feed.load_long_lived_until(started + READ_BUDGET).await {
                return self.refuse(Some(shape), Unauthorized::StaleRevocations);
            }
            if self.feed.is_revoked(&verified) {
                return self.refuse(Some(shape), Unauthorized::Revoked);
            }
        }
        // Last, once everything else has passed: a refused request uses up no proof.
        if let Some(proof) = proof {
            if let Err(why) = self.record_proof(&proof, now).await {
                return self.refuse(Some(shape), why);
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

    /// The token's claims: from the cache of tokens this instance verified with the keys it
    /// trusts now, or verified now and kept.
    fn verify(&self, token: &str, digest: &[u8; 32], now: u64) -> Result<Arc<AccessClaims>, Rejection> {
        // Read before verifying: a verification with keys that are replaced meanwhile is not kept.
        let generation = self.keys.generation();
        if let Some(claims) = self.verified.get(digest, generation, now) {
            return Ok(claims);
        }
        let claims = Arc::new(self.verifier().verify(token, now)?);
        self.verified.insert(*digest, &claims, generation, now);
        Ok(claims)
    }

    /// Whether the token may be used as presented: a bound token only as `DPoP` with one
    /// proof from its key for this request (returned, to record), an unbound one only as
    /// `Bearer` and only if the deployment does not require DPoP.
    #[allow(clippy::too_many_arguments)]
    fn check_proof(
        &self,
        scheme: Scheme,
        verified: &AccessClaims,
        event: &Event<'_>,
        shape: Shape,
        method: &str,
        token_digest: &TokenDigest,
        now: u64,
    ) -> Result<Option<dpop::Proof>, Unauthorized> {
        let jkt = match (scheme, verified.bound_to()) {
            (Scheme::Bearer, None) if self.dpop.required => return Err(Unauthorized::DpopRequired),
            (Scheme::Bearer, None) => return Ok(None),
            (Scheme::Dpop, None) => return Err(Unauthorized::UnboundTokenAsDpop),
            (Scheme::Bearer, Some(_)) => return Err(Unauthorized::BoundTokenAsBearer),
            (Scheme::Dpop, Some(jkt)) => jkt,
        };
        if self.dpop.ledger.is_none() {
            return Err(Unauthorized::DpopDisabled);
        }
        // A REST TOKEN event carries the token only: no proof, no URL.
        let proof = match shape {
            Shape::RestToken => None,
            _ => event.dpop_proof(),
        };
        let proof = proof.ok_or(Unauthorized::Proof(ProofRejection::Missing))?;
        let path = match shape {
            Shape::HttpV2 => Event::text(&event.raw_path),
            _ => Event::text(&event.path),
        };
        let url = path
            .and_then(|path| {
                dpop::called_url(
                    self.dpop.public_base_url.as_deref(),
                    event.header(|h| &h.forwarded_proto),
                    event.header(|h| &h.host),
                    path,
                )
            })
            .ok_or(Unauthorized::Proof(ProofRejection::WrongUrl))?;
        let request = ProofRequest { method, url: &url, access_token_sha256: Some(*token_digest) };
        self.client_keys
            .verify_proof(proof, &request, &self.window(now), Some(jkt))
            .map(Some)
            .map_err(Unauthorized::Proof)
    }

    fn window(&self, now: u64) -> ProofWindow {
        ProofWindow { now, max_age: self.dpop.max_age, leeway: self.dpop.leeway }
    }

    /// Records the proof's first use across every instance, waiting [`PROOF_WRITE_BUDGET`] at most:
    /// a replay, an error or no answer in time refuses it.
    async fn record_proof(&self, proof: &dpop::Proof, now: u64) -> Result<(), Unauthorized> {
        let ledger = self.dpop.ledger.as_ref().ok_or(Unauthorized::DpopDisabled)?;
        let (key, expires_at) = (proof.replay_key(), self.window(now).expires_at(proof.iat));
        match tokio::time::timeout(PROOF_WRITE_BUDGET, ledger.record(&key, expires_at, now)).await {
            Ok(Ok(ProofUse::First)) => Ok(()),
            Ok(Ok(ProofUse::Replayed)) => Err(Unauthorized::Proof(ProofRejection::Replayed)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "DPoP proof not recorded; refused");
                Err(Unauthorized::ProofLedgerUnavailable)
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = PROOF_WRITE_BUDGET.as_millis() as u64,
                    "DPoP proof not recorded in time; refused"
                );
                Err(Unauthorized::ProofLedgerUnavailable)
            }
        }
    }

    /// An IAM policy that answers this request as the rules do and allows nothing they deny
    /// on another route (see [`routes::policy`]), with the token's context.
    fn policy(&self, base: &str, method: &str, path: &str, token: Arc<AccessClaims>) -> Answer {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The decision for DPoP and bearer tokens, on a warm instance whose key ring and
    //! revocation state were read just now (no poll due) and whose ledger is in memory:
    //! nothing here reaches AWS. The same against DynamoDB Local, with two instances sharing
    //! the Proofs table, is `tests/tests/dpop_authorizer.rs`.
    use serde_json::json;

    use super::*;
    use crate::platform::clock::ManualClock;
    use crate::rules::dpop::ProofKey;
    use crate::rules::keys::testing::LocalSigner;
    use crate::rules::revocations::RevocationCache;
    use crate::rules::routes::RouteRule;
    use crate::rules::verify::Verifier;
    use crate::services::keys::AuthenticatedKeys;
    use crate::services::proof_ledger::MemoryProofs;
    use crate::store::{DynamoKeys, DynamoRevocations};

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://auth.example.test";
    const AUD: &str = "tokenauth-api";
    const HOST: &str = "abc123.execute-api.us-east-1.amazonaws.com";
    const URL: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/api/items";

    use crate::platform::aws::unreachable::{dynamodb, kms};

    struct Fixture {
        authorizer: Authorizer,
        key: LocalSigner,
        client: ProofKey,
        ledger: Arc<MemoryProofs>,
    }

    fn fixture(required: bool) -> Fixture {
        let key = LocalSigner::new();
        let day = Duration::from_secs(86_400);
        let settings = AuthorizerSettings {
            style: ResponseStyle::Simple,
            rules: RouteRule::parse_list("$default=").unwrap(),
            poll_every: day,
            max_staleness: day,
            metrics_every: Duration::from_secs(10),
        };
        let feed = RevocationFeed::preloaded(
            Box::new(DynamoRevocations::new(dynamodb(), "unused")),
            &settings,
            RevocationCache::default(),
            NOW,
        );
        let verifier = Arc::new(Verifier::new(vec![key.trusted()], ISS.into(), AUD.into(), 30));
        let keys = AuthenticatedKeys::new(DynamoKeys::new(dynamodb(), "unused"), kms(), "", "");
        let ring = KeyRing::preloaded(keys, verifier, day, day, NOW);
        let ledger = Arc::new(MemoryProofs::default());
        let dpop = DpopSettings {
            proofs_table: "unused".into(),
            proof_max_age: Duration::from_secs(60),
            required,
            public_base_url: None,
        };
        let authorizer = Authorizer::new(ring, feed, settings, Arc::new(ManualClock::new(NOW))).with_dpop(
            &dpop,
            Duration::from_secs(30),
            Some(ledger.clone() as Arc<dyn ProofLedger>),
        );
        Fixture { authorizer, key, client: ProofKey::generate().unwrap(), ledger }
    }

    impl Fixture {
        fn token(&self, bound: bool) -> String {
            let mut claims = json!({"iss": ISS, "sub": "u", "aud": AUD, "exp": NOW + 900, "iat": NOW, "jti": "j",
                "client_id": "first-party", "scope": "read", "sid": "s"});
            if bound {
                claims["cnf"] = json!({"jkt": self.client.thumbprint()});
            }
            self.key.sign_claims(&claims)
        }

        fn proof(&self, token: &str) -> String {
            self.client.proof("GET", URL, NOW, Some(token)).unwrap()
        }

        /// The outcome class of an HTTP API 2.0 event with these headers.
        async fn outcome(&self, headers: serde_json::Value) -> &'static str {
            let event = json!({
                "version": "2.0", "type": "REQUEST",
                "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/api/items",
                "rawPath": "/api/items", "headers": headers,
            });
            self.authorizer.decide(&event.to_string()).await.1
        }
    }

    /// Revocations that answer (empty) after `delay`.
    #[derive(Debug)]
    struct SlowRevocations(Duration);

    impl crate::services::revocation_feed::RevocationSource for SlowRevocations {
        fn since(&self, _: u64, _: u64) -> crate::services::revocation_feed::SinceFuture<'_> {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(Vec::new())
            })
        }
    }

    /// Revocations whose first poll fails at once and whose later ones never answer (a
    /// DynamoDB that went away).
    #[derive(Debug, Default)]
    struct GoneRevocations(std::sync::atomic::AtomicBool);

    impl crate::services::revocation_feed::RevocationSource for GoneRevocations {
        fn since(&self, _: u64, _: u64) -> crate::services::revocation_feed::SinceFuture<'_> {
            let first = !self.0.swap(true, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if first {
                    return Err(crate::error::DependencyError::DynamoDb {
                        operation: "Query",
                        message: "connection refused".into(),
                    });
                }
                std::future::pending().await
            })
        }
    }

    /// An authorizer over `source`, its state last read at `NOW` (poll every 5 s, bound
    /// 60 s), with its clock, and a bearer request for it.
    fn polled_at_now(
        source: Box<dyn crate::services::revocation_feed::RevocationSource>,
    ) -> (Authorizer, Arc<ManualClock>, String) {
        let key = LocalSigner::new();
        let settings = AuthorizerSettings {
            style: ResponseStyle::Simple,
            rules: RouteRule::parse_list("$default=").unwrap(),
            poll_every: Duration::from_secs(5),
            max_staleness: Duration::from_secs(60),
            metrics_every: Duration::from_secs(10),
        };
        let feed = RevocationFeed::preloaded(source, &settings, RevocationCache::default(), NOW);
        let verifier = Arc::new(Verifier::new(vec![key.trusted()], ISS.into(), AUD.into(), 30));
        let keys = AuthenticatedKeys::new(DynamoKeys::new(dynamodb(), "unused"), kms(), "", "");
        let day = Duration::from_secs(86_400);
        let ring = KeyRing::preloaded(keys, verifier, day, day, NOW);
        let clock = Arc::new(ManualClock::new(NOW));
        let authorizer = Authorizer::new(ring, feed, settings, clock.clone());
        let claims = json!({"iss": ISS, "sub": "u", "aud": AUD, "exp": NOW + 900, "iat": NOW, "jti": "j",
            "client_id": "first-party", "scope": "read", "sid": "s"});
        let event = json!({
            "version": "2.0", "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/api/items",
            "rawPath": "/api/items", "headers": {"authorization": format!("Bearer {}", key.sign_claims(&claims))},
        });
        (authorizer, clock, event.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn during_an_outage_stale_state_is_refused_within_the_read_budget_not_the_longer_wait() {
        let (authorizer, clock, event) = polled_at_now(Box::new(GoneRevocations::default()));
        clock.advance(10);
        assert_eq!(authorizer.decide(&event).await.1, "allow", "its poll failed, but the state is within its bound");
        clock.advance(60);
        let asked = Instant::now();
        assert_eq!(authorizer.decide(&event).await.1, "stale_revocations", "past the bound: fail closed");
        assert_eq!(asked.elapsed(), READ_BUDGET, "no longer wait once a poll has failed since the last good one");
    }

    /// An instance last polled at `NOW` and asked at `NOW + 70`, past its 60 s bound (idle,
    /// or frozen), whose poll answers after `delay`: the outcome of a bearer request, and
    /// how long it took.
    async fn idle_instance_outcome(delay: Duration) -> (&'static str, Duration) {
        let (authorizer, clock, event) = polled_at_now(Box::new(SlowRevocations(delay)));
        clock.advance(70);
        let asked = Instant::now();
        let outcome = authorizer.decide(&event).await.1;
        (outcome, asked.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_idle_past_its_bound_waits_a_little_longer_for_its_poll_rather_than_refuse() {
        // A poll slower than READ_BUDGET (a new connection after a freeze) but within the
        // later budget: allowed, once the poll has answered.
        let slow = READ_BUDGET * 3;
        assert_eq!(idle_instance_outcome(slow).await, ("allow", slow));
        // A poll that does not answer within it: refused (fail closed) at the later budget.
        assert_eq!(idle_instance_outcome(STALE_READ_BUDGET * 4).await, ("stale_revocations", STALE_READ_BUDGET));
    }

    #[tokio::test]
    async fn a_bound_token_with_its_proof_is_allowed_once_per_proof() {
        let f = fixture(false);
        let token = f.token(true);
        let proof = f.proof(&token);
        let headers = json!({"authorization": format!("DPoP {token}"), "dpop": proof, "host": HOST});
        assert_eq!(f.outcome(headers.clone()).await, "allow");
        assert_eq!(f.outcome(headers).await, "dpop_replayed");
        let fresh = json!({"authorization": format!("DPoP {token}"), "DPoP": f.proof(&token), "Host": HOST});
        assert_eq!(f.outcome(fresh).await, "allow");
        assert_eq!(f.ledger.len(), 2);
    }

    #[tokio::test]
    async fn an_unknown_scheme_a_bound_bearer_and_an_unbound_dpop_token_are_refused() {
        let f = fixture(false);
        let (bound, unbound) = (f.token(true), f.token(false));
        let proof = f.proof(&bound);
        for scheme in ["Basic", "MAC", "DPoP-", "Token"] {
            let headers = json!({"authorization": format!("{scheme} {bound}"), "dpop": proof, "host": HOST});
            assert_eq!(f.outcome(headers).await, "missing_token", "{scheme}");
        }
        let as_bearer = json!({"authorization": format!("Bearer {bound}"), "dpop": proof, "host": HOST});
        assert_eq!(f.outcome(as_bearer).await, "dpop_bound_token_as_bearer");
        let unbound_proof = f.proof(&unbound);
        let unbound_as_dpop = json!({"authorization": format!("DPoP {unbound}"), "dpop": unbound_proof, "host": HOST});
        assert_eq!(f.outcome(unbound_as_dpop).await, "dpop_unbound_token");
        // Unbound as Bearer: still accepted unless REQUIRE_DPOP.
        assert_eq!(f.outcome(json!({"authorization": format!("Bearer {unbound}")})).await, "allow");
        assert!(f.ledger.is_empty(), "no refused request recorded a proof");
    }

    #[tokio::test]
    async fn two_dpop_proofs_or_none_are_refused_and_record_nothing() {
        let f = fixture(false);
        let token = f.token(true);
        let (one, two) = (f.proof(&token), f.proof(&token));
        let authorization = format!("DPoP {token}");
        for headers in [
            json!({"authorization": authorization, "dpop": one, "DPoP": two, "host": HOST}),
            json!({"authorization": authorization, "dpop": format!("{one}, {two}"), "host": HOST}),
            json!({"authorization": authorization, "host": HOST}),
        ] {
            assert_eq!(f.outcome(headers).await, "dpop_missing");
        }
        // No host: no URL to check the proof against.
        assert_eq!(f.outcome(json!({"authorization": authorization, "dpop": one})).await, "dpop_wrong_request");
        assert!(f.ledger.is_empty());
        // Both proofs are still good alone.
        for proof in [one, two] {
            assert_eq!(f.outcome(json!({"authorization": authorization, "dpop": proof, "host": HOST})).await, "allow");
        }
    }

    #[tokio::test]
    async fn require_dpop_refuses_unbound_tokens_and_accepts_bound_ones() {
        let f = fixture(true);
        let (bound, unbound) = (f.token(true), f.token(false));
        assert_eq!(f.outcome(json!({"authorization": format!("Bearer {unbound}")})).await, "dpop_required");
        let headers = json!({"authorization": format!("DPoP {bound}"), "dpop": f.proof(&bound), "host": HOST});
        assert_eq!(f.outcome(headers).await, "allow");
    }

    #[tokio::test]
    async fn without_a_ledger_bound_tokens_are_refused_and_bearer_tokens_still_pass() {
        let mut f = fixture(false);
        f.authorizer.dpop.ledger = None;
        let (bound, unbound) = (f.token(true), f.token(false));
        let headers = json!({"authorization": format!("DPoP {bound}"), "dpop": f.proof(&bound), "host": HOST});
        assert_eq!(f.outcome(headers).await, "dpop_disabled");
        assert_eq!(f.outcome(json!({"authorization": format!("Bearer {unbound}")})).await, "allow");
    }

    #[tokio::test]
    async fn a_rest_token_event_cannot_carry_a_proof_so_a_bound_token_is_refused() {
        let f = fixture(false);
        let token = f.token(true);
        let event = json!({"type": "TOKEN", "authorizationToken": format!("DPoP {token}"),
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/api/items"});
        assert_eq!(f.authorizer.decide(&event.to_string()).await.1, "dpop_missing");
    }

    /// A Proofs table that never answers, or fails.
    struct BrokenLedger {
        hangs: bool,
    }

    impl ProofLedger for BrokenLedger {
        fn record<'a>(&'a self, _: &'a str, _: u64, _: u64) -> crate::services::proof_ledger::RecordFuture<'a> {
            if self.hangs {
                Box::pin(std::future::pending())
            } else {
                Box::pin(std::future::ready(Err(crate::error::DependencyError::DynamoDb {
                    operation: "PutItem",
                    message: "unavailable".into(),
                })))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_proof_ledger_that_fails_or_hangs_refuses_within_the_budget() {
        for hangs in [true, false] {
            let mut f = fixture(false);
            f.authorizer.dpop.ledger = Some(Arc::new(BrokenLedger { hangs }));
            let token = f.token(true);
            let headers = json!({"authorization": format!("DPoP {token}"), "dpop": f.proof(&token), "host": HOST});
            let started = Instant::now();
            assert_eq!(f.outcome(headers).await, "dpop_ledger_unavailable", "hangs: {hangs}");
            assert!(started.elapsed() <= PROOF_WRITE_BUDGET, "waited {:?}", started.elapsed());
            // Bearer tokens do not touch the ledger.
            assert_eq!(f.outcome(json!({"authorization": format!("Bearer {}", f.token(false))})).await, "allow");
        }
    }

    #[tokio::test]
    async fn a_token_is_verified_once_and_its_claims_served_from_the_cache() {
        let f = fixture(false);
        let token = f.token(false);
        let bearer = json!({"authorization": format!("Bearer {token}")});
        assert_eq!(f.outcome(bearer.clone()).await, "allow");
        assert_eq!(f.authorizer.verified.len(), 1);
        // With no key trusted, only the cache can still allow it; new keys empty it.
        f.authorizer.verifier().replace_keys(Vec::new());
        assert_eq!(f.outcome(bearer.clone()).await, "allow");
        f.authorizer.keys.replace_for_tests(Vec::new());
        assert_eq!(f.outcome(bearer).await, "bad_signature");
        assert!(f.authorizer.verified.is_empty());
    }

    impl Fixture {
        /// The context the backend receives for a bearer `token` (HTTP API 2.0, simple).
        async fn context(&self, claims: serde_json::Value) -> serde_json::Value {
            let token = self.key.sign_claims(&claims);
            let event = json!({
                "version": "2.0", "type": "REQUEST",
                "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/api/items",
                "rawPath": "/api/items", "headers": {"authorization": format!("Bearer {token}")},
            });
            let answer = self.authorizer.handle(&event.to_string()).await.expect("an answer");
            let answer = serde_json::to_value(answer).unwrap();
            assert_eq!(answer["isAuthorized"], true, "{answer}");
            answer["context"].clone()
        }
    }

    #[tokio::test]
    async fn a_service_tokens_context_says_service_with_no_session() {
        let f = fixture(false);
        let context = f
            .context(json!({"iss": ISS, "sub": "svc-b", "aud": AUD, "exp": NOW + 900, "iat": NOW, "jti": "j-svc",
                "client_id": "svc-b", "scope": "read"}))
            .await;
        assert_eq!(
            context,
            json!({"principal_type": "service", "sub": "svc-b", "scope": "read", "client_id": "svc-b", "sid": "",
                "jti": "j-svc", "aud": AUD, "act": ""})
        );
    }

    #[tokio::test]
    async fn an_exchanged_tokens_context_says_user_with_its_actor_chain_latest_first() {
        let f = fixture(false);
        let context = f
            .context(json!({"iss": ISS, "sub": "u-1", "aud": AUD, "exp": NOW + 900, "iat": NOW, "jti": "j-x",
                "client_id": "svc-c", "scope": "read", "sid": "s-1",
                "act": {"sub": "svc-c", "act": {"sub": "svc-b"}}}))
            .await;
        assert_eq!(
            context,
            json!({"principal_type": "user", "sub": "u-1", "scope": "read", "client_id": "svc-c", "sid": "s-1",
                "jti": "j-x", "aud": AUD, "act": "svc-c svc-b"})
        );
        // A session's own token: a user, no actor.
        let own = f
            .context(json!({"iss": ISS, "sub": "u-1", "aud": AUD, "exp": NOW + 900, "iat": NOW, "jti": "j-u",
                "client_id": "first-party", "scope": "read", "sid": "s-1"}))
            .await;
        assert_eq!((&own["principal_type"], &own["act"], &own["sid"]), (&json!("user"), &json!(""), &json!("s-1")));
    }

    #[tokio::test]
    async fn a_token_for_another_api_is_refused() {
        let f = fixture(false);
        let token = f.key.sign_claims(&json!({"iss": ISS, "sub": "u-1", "aud": "https://api.c.example",
            "exp": NOW + 900, "iat": NOW, "jti": "j-c", "client_id": "svc-b", "scope": "read", "sid": "s-1",
            "act": {"sub": "svc-b"}}));
        assert_ne!(f.outcome(json!({"authorization": format!("Bearer {token}")})).await, "allow");
    }
}
