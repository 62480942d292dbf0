//! Counters as CloudWatch Embedded Metric Format lines: CloudWatch turns each line written
//! to stdout into metric data points, with no API call and no agent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Namespace of every metric.
pub const NAMESPACE: &str = "tokenauth";

/// The EMF document counting one `metric` event with the given `outcome` of `operation`.
pub fn count_line(operation: &str, metric: &str, outcome: &str, timestamp_ms: u128) -> Value {
    values_line(operation, metric, outcome, "Count", &[1.0], timestamp_ms)
}

/// Whether stdout goes to CloudWatch ([`crate::platform::config::running_in_lambda`]). Elsewhere
/// (tests, benchmarks, authctl) EMF lines are noise.
fn in_lambda() -> bool {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_LAMBDA.get_or_init(crate::platform::config::running_in_lambda)
}

/// The EMF document of one or more values of `metric` (`unit`: `Milliseconds`,
/// `Microseconds`, `Seconds`, `Count`) for `operation` and `outcome`; several values are
/// several data points (EMF takes up to 100 per document).
pub fn values_line(
    operation: &str,
    metric: &str,
    outcome: &str,
    unit: &str,
    values: &[f64],
    timestamp_ms: u128,
) -> Value {
    let value = match values {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Operation", "Outcome"]],
                "Metrics": [{ "Name": metric, "Unit": unit }],
            }],
        },
        "Operation": operation,
        "Outcome": outcome,
        metric: value,
    })
}

/// The EMF document counting one `metric` event of `operation` with `outcome` for one
/// client: two dimension sets, so the same data point is both the deployment's total
/// (`Operation`, `Outcome`) and the client's (`Operation`, `Outcome`, `ClientId`). Each
/// client that calls is a custom metric of its own in CloudWatch (priced per metric), so
/// only the token endpoint's grants for registered clients count this way.
pub fn client_count_line(operation: &str, metric: &str, outcome: &str, client_id: &str, timestamp_ms: u128) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Operation", "Outcome"], ["Operation", "Outcome", "ClientId"]],
                "Metrics": [{ "Name": metric, "Unit": "Count" }],
            }],
        },
        "Operation": operation,
        "Outcome": outcome,
        "ClientId": client_id,
        metric: 1.0,
    })
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// Writes one count to stdout, where Lambda ships it to CloudWatch.
pub fn count(operation: &str, metric: &str, outcome: &str) {
    if !in_lambda() {
        return;
    }
    println!("{}", count_line(operation, metric, outcome, now_ms()));
}

/// Writes one count for one client ([`client_count_line`]) to stdout.
pub fn count_per_client(operation: &str, metric: &str, outcome: &str, client_id: &str) {
    if !in_lambda() {
        return;
    }
    println!("{}", client_count_line(operation, metric, outcome, client_id, now_ms()));
}

/// Writes one measured value (a latency, an age) to stdout.
pub fn measure(operation: &str, metric: &str, outcome: &str, unit: &str, value: f64) {
    if !in_lambda() {
        return;
    }
    println!("{}", values_line(operation, metric, outcome, unit, &[value], now_ms()));
}

/// Counts and latencies of a hot path, written at most once per `every` per instance
/// instead of a line per request: at the authorizer's rate a line per request would cost
/// more in log ingestion than the invocation itself. What an instance gathered since its
/// last write is lost if it is shut down first (at most `every` of its counts).
#[derive(Debug)]
pub struct Tally {
    operation: &'static str,
    every_ms: u128,
    state: Mutex<TallyState>,
}

#[derive(Debug, Default)]
struct TallyState {
    since_ms: u128,
    counts: BTreeMap<&'static str, u64>,
    /// Latencies in microseconds, at most [`Tally::LATENCY_SAMPLES`] per write.
    latencies_us: Vec<f64>,
    seen: u64,
}

impl Tally {
    /// Latency values kept per write (EMF's limit per document).
    pub const LATENCY_SAMPLES: usize = 100;

    /// A tally of `operation`, written every `every`.
    pub fn new(operation: &'static str, every: Duration) -> Self {
        Self { operation, every_ms: every.as_millis(), state: Mutex::new(TallyState::default()) }
    }

    /// Counts one request of `outcome` that took `latency`; writes the tally if due.
    pub fn record(&self, outcome: &'static str, latency: Duration) {
        if !in_lambda() {
            return;
        }
        let lines = self.record_at(outcome, latency, now_ms());
        for line in lines {
            println!("{line}");
        }
    }

    /// [`Tally::record`] at `now_ms`, returning the EMF documents due (tests).
    pub fn record_at(&self, outcome: &'static str, latency: Duration, now_ms: u128) -> Vec<Value> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.seen == 0 && state.counts.is_empty() {
            state.since_ms = now_ms;
        }
        *state.counts.entry(outcome).or_default() += 1;
        state.seen += 1;
        // Every k-th latency, k growing with the traffic, so the samples span the window.
        let stride = 1 + state.seen / Self::LATENCY_SAMPLES as u64;
        if state.latencies_us.len() < Self::LATENCY_SAMPLES && state.seen % stride == 0 {
            state.latencies_us.push(latency.as_secs_f64() * 1e6);
        }
        if now_ms < state.since_ms + self.every_ms {
            return Vec::new();
        }
        let taken = std::mem::take(&mut *state);
        state.since_ms = now_ms;
        let mut lines: Vec<Value> = taken
            .counts
            .iter()
            .map(|(outcome, n)| values_line(self.operation, "Requests", outcome, "Count", &[*n as f64], now_ms))
            .collect();
        if !taken.latencies_us.is_empty() {
            lines.push(values_line(self.operation, "Latency", "all", "Microseconds", &taken.latencies_us, now_ms));
        }
        lines
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_writes_counts_per_outcome_and_sampled_latencies_once_per_interval() {
        let tally = Tally::new("authorize", Duration::from_secs(10));
        let t0 = 1_700_000_000_000u128;
        for i in 0..500u128 {
            let outcome = if i % 5 == 0 { "deny" } else { "allow" };
            assert!(tally.record_at(outcome, Duration::from_micros(40), t0 + i).is_empty(), "inside the interval");
        }
        let lines = tally.record_at("allow", Duration::from_micros(40), t0 + 10_000);
        let count = |outcome: &str| {
            lines.iter().find(|l| l["Outcome"] == outcome && l["Requests"].is_number()).map(|l| l["Requests"].clone())
        };
        assert_eq!(count("allow"), Some(json!(401.0)));
        assert_eq!(count("deny"), Some(json!(100.0)));
        let latency = lines.iter().find(|l| l["Latency"].is_array()).expect("a latency document");
        let samples = latency["Latency"].as_array().expect("an array of samples");
        assert!(!samples.is_empty() && samples.len() <= Tally::LATENCY_SAMPLES, "{}", samples.len());
        assert_eq!(latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Microseconds");
        assert!(tally.record_at("allow", Duration::from_micros(40), t0 + 10_001).is_empty(), "a new window");
    }

    #[test]
    fn writes_a_valid_emf_document() {
        let line = count_line("login", "LoginAttempts", "wrong_password", 1_700_000_000_123);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_123u64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        // Every dimension and metric the directive names is a member of the root object.
        for dimension in directive["Dimensions"][0].as_array().expect("dimension set") {
            assert!(line[dimension.as_str().expect("name")].is_string());
        }
        assert_eq!(directive["Metrics"][0]["Name"], "LoginAttempts");
        assert_eq!(line["LoginAttempts"].as_f64(), Some(1.0));
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
        assert_eq!(line["Outcome"], "wrong_password");
    }

    #[test]
    fn a_client_count_is_both_the_total_and_the_clients() {
        let line = client_count_line("token_exchange", "TokensIssued", "issued", "svc-a", 1_700_000_000_123);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        let sets = directive["Dimensions"].as_array().expect("dimension sets");
        assert_eq!(sets, &[json!(["Operation", "Outcome"]), json!(["Operation", "Outcome", "ClientId"])]);
        for dimension in sets.iter().flat_map(|s| s.as_array().expect("a set")) {
            assert!(line[dimension.as_str().expect("name")].is_string(), "{dimension} is a member");
        }
        assert_eq!(line["ClientId"], "svc-a");
        assert_eq!(line["TokensIssued"].as_f64(), Some(1.0));
        assert_eq!(directive["Metrics"][0], json!({"Name": "TokensIssued", "Unit": "Count"}));
    }
}
