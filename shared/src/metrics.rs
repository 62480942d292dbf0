//! Counters as CloudWatch Embedded Metric Format lines: CloudWatch turns each line written
//! to stdout into metric data points, with no API call and no agent.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Namespace of every metric.
pub const NAMESPACE: &str = "tokenauth";

/// The EMF document counting one `metric` event with the given `outcome` of `operation`.
pub fn count_line(operation: &str, metric: &str, outcome: &str, timestamp_ms: u128) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Operation", "Outcome"]],
                "Metrics": [{ "Name": metric, "Unit": "Count" }],
            }],
        },
        "Operation": operation,
        "Outcome": outcome,
        metric: 1,
    })
}

/// Whether stdout goes to CloudWatch ([`crate::config::running_in_lambda`]). Elsewhere
/// (tests, benchmarks, authctl) EMF lines are noise.
fn in_lambda() -> bool {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_LAMBDA.get_or_init(crate::config::running_in_lambda)
}

/// Writes one count to stdout, where Lambda ships it to CloudWatch.
pub fn count(operation: &str, metric: &str, outcome: &str) {
    if !in_lambda() {
        return;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    println!("{}", count_line(operation, metric, outcome, now));
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(line["LoginAttempts"], 1);
        assert_eq!(line["Outcome"], "wrong_password");
    }
}
