//! Signals of a session used from somewhere new (issue 22, item 5), against the local stack:
//! login records the device name, network and user-agent family; a refresh from another
//! network and user agent writes an audit line and an EMF count (read from the functions'
//! own stdout, run as Lambda runs them) and the family then holds where it was last used;
//! a refresh from the same /24 and user-agent family signals nothing; with
//! `ON_CONTEXT_CHANGE=end` such a refresh ends the session instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::platform::clock::SystemClock;
use tokenauth_tests::runtime::{run_function, stack_environment, LambdaRun};
use tokenauth_tests::*;

/// A sample event `file` from `source_ip` with this `User-Agent`, carrying `body`.
fn event_from(file: &str, body: Value, source_ip: &str, user_agent: &str) -> Value {
    let mut e = event(file);
    e["body"] = Value::String(body.to_string());
    e["headers"]["user-agent"] = Value::String(user_agent.to_owned());
    e["requestContext"]["http"]["userAgent"] = Value::String(user_agent.to_owned());
    e["requestContext"]["http"]["sourceIp"] = Value::String(source_ip.to_owned());
    e
}

fn refresh_from(token: &str, source_ip: &str, user_agent: &str) -> Value {
    event_from("refresh-json.json", json!({ "refresh_token": token }), source_ip, user_agent)
}

fn body_of(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

/// The JSON log lines of a run whose `event` field is `event` (the runtime's JSON format
/// puts a line's fields under `fields`).
fn log_lines(run: &LambdaRun, event: &str) -> Vec<Value> {
    run.stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["event"] == event)
        .collect()
}

/// The `SessionContextChanges` EMF documents of a run.
fn context_change_counts(run: &LambdaRun) -> Vec<Value> {
    run.emf().into_iter().filter(|doc| doc.get("SessionContextChanges").is_some()).collect()
}

const APP: &str = "MyApp/2.1 (iPhone; iOS 17)";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

#[tokio::test]
async fn a_refresh_from_a_new_network_and_user_agent_is_an_audit_line_and_a_metric_and_is_recorded() {
    let (config, clients) = (config(), clients().await);
    let (username, password, user_id) = create_user(&config, &clients, "ctx", &["read"]).await;
    // Lambda's JSON log format, so the audit lines parse as the EMF lines do.
    let env = stack_environment(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]);

    let login_body = json!({"username": username, "password": password, "device_name": "  Ana's phone "});
    let login =
        run_function("login", &env, vec![event_from("login-http-api.json", login_body, "203.0.113.7", APP)]).await;
    let tokens = body_of(&login.answers[0]);
    let r0 = tokens["refresh_token"].as_str().unwrap_or_else(|| panic!("login: {:?}", login.answers)).to_owned();
    let family_id = family_of(&r0);
    let at_login = family(&config, &clients, &family_id).await;
    assert_eq!(at_login.device_name.as_deref(), Some("Ana's phone"), "trimmed");
    assert_eq!(
        (at_login.network.as_deref(), at_login.user_agent.as_deref()),
        (Some("203.0.113.0/24"), Some("MyApp")),
        "the login's network and user-agent family, never the address or the header"
    );

    // From another network and another user-agent family.
    let moved = run_function("refresh", &env, vec![refresh_from(&r0, "198.51.100.23", BROWSER)]).await;
    let r1 = body_of(&moved.answers[0])["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a recorded change still rotates: {:?}", moved.answers))
        .to_owned();
    let changes = log_lines(&moved, "session_context_changed");
    assert_eq!(changes.len(), 1, "one audit line:\n{}", moved.stdout.join("\n"));
    let fields = &changes[0]["fields"];
    assert_eq!(fields["outcome"], "recorded");
    assert_eq!(fields["changed"], "both");
    assert_eq!((&fields["network_was"], &fields["network"]), (&json!("203.0.113.0/24"), &json!("198.51.100.0/24")));
    assert_eq!((&fields["user_agent_was"], &fields["user_agent"]), (&json!("MyApp"), &json!("Firefox")));
    assert_eq!((&fields["family_id"], &fields["user_id"]), (&json!(family_id), &json!(user_id)));
    assert_eq!(fields["source_ip"], "198.51.100.23");
    let whole_log = moved.stdout.join("\n");
    assert!(!whole_log.contains("Gecko/20100101"), "never the header");
    let counts = context_change_counts(&moved);
    assert_eq!(counts.len(), 1, "one count:\n{whole_log}");
    assert_eq!(counts[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], tokenauth::platform::metrics::NAMESPACE);
    assert_eq!(
        (&counts[0]["Operation"], &counts[0]["Outcome"]),
        (&json!("session_context_changed"), &json!("recorded"))
    );
    assert_eq!(counts[0]["SessionContextChanges"], 1.0);

    let after = family(&config, &clients, &family_id).await;
    assert_eq!((after.network.as_deref(), after.user_agent.as_deref()), (Some("198.51.100.0/24"), Some("Firefox")));
    assert_eq!(after.device_name.as_deref(), Some("Ana's phone"), "the device name stays");
    assert_eq!(after.generation, 1);

    // The same /24 and the same user-agent family (another version): nothing to signal.
    let same = run_function(
        "refresh",
        &env,
        vec![refresh_from(
            &r1,
            "198.51.100.200",
            "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
        )],
    )
    .await;
    assert!(body_of(&same.answers[0])["refresh_token"].is_string(), "{:?}", same.answers);
    assert_eq!(
        log_lines(&same, "refresh_rotated").len(),
        1,
        "the run's audit lines are read:\n{}",
        same.stdout.join("\n")
    );
    assert!(log_lines(&same, "session_context_changed").is_empty(), "{}", same.stdout.join("\n"));
    assert!(context_change_counts(&same).is_empty(), "{}", same.stdout.join("\n"));
    assert_eq!(family(&config, &clients, &family_id).await.generation, 2);
}

#[tokio::test]
async fn a_retry_answer_from_a_new_network_writes_and_signals_nothing() {
    let (config, clients) = (config(), clients().await);
    let (username, password, _) = create_user(&config, &clients, "ctx-retry", &["read"]).await;
    let env = stack_environment(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]);
    let login_body = json!({"username": username, "password": password});
    let login =
        run_function("login", &env, vec![event_from("login-http-api.json", login_body, "203.0.113.7", APP)]).await;
    let r0 = body_of(&login.answers[0])["refresh_token"].as_str().unwrap().to_owned();
    let family_id = family_of(&r0);

    // The rotation from the login's own network, then its retry (a lost response) from
    // elsewhere: the same successor, within the leeway.
    let run = run_function(
        "refresh",
        &env,
        vec![refresh_from(&r0, "203.0.113.8", APP), refresh_from(&r0, "192.0.2.50", BROWSER)],
    )
    .await;
    let (first, retry) = (body_of(&run.answers[0]), body_of(&run.answers[1]));
    assert_eq!(first["refresh_token"], retry["refresh_token"], "the retry answer: {:?}", run.answers);
    assert_eq!(log_lines(&run, "refresh_retry").len(), 1, "{}", run.stdout.join("\n"));
    assert!(log_lines(&run, "session_context_changed").is_empty(), "{}", run.stdout.join("\n"));
    assert!(context_change_counts(&run).is_empty());
    let after = family(&config, &clients, &family_id).await;
    assert_eq!((after.network.as_deref(), after.user_agent.as_deref()), (Some("203.0.113.0/24"), Some("MyApp")));
}

#[tokio::test]
async fn with_on_context_change_end_a_refresh_from_a_new_network_ends_the_session() {
    let config = config_with(&[("ON_CONTEXT_CHANGE", "end")]);
    let clients = clients().await;
    let (username, password, _) = create_user(&config, &clients, "ctx-end", &["read"]).await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    let request = |e: Value| request_from_event(&e);

    let login_body = json!({"username": username, "password": password, "device_name": "laptop"});
    let response = tokenauth::edge::http::login(
        &login,
        &request(event_from("login-http-api.json", login_body, "203.0.113.7", APP)),
    )
    .await;
    assert_eq!(response.status(), 200);
    let tokens = json_of(&response);
    let r0 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let family_id = family_of(&r0);

    // The same network and user-agent family: rotates as ever.
    let same = tokenauth::edge::http::token(&refresh, &request(refresh_from(&r0, "203.0.113.99", APP))).await;
    assert_eq!(same.status(), 200);
    let r1 = json_of(&same)["refresh_token"].as_str().unwrap().to_owned();

    // Another network (same app): ended, nothing issued.
    let moved = tokenauth::edge::http::token(&refresh, &request(refresh_from(&r1, "198.51.100.23", APP))).await;
    assert_eq!(moved.status(), 401);
    let body = json_of(&moved);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none(), "{body}");
    let ended = family(&config, &clients, &family_id).await;
    assert_eq!(ended.status, tokenauth::rules::records::FamilyStatus::Revoked);
    assert_eq!(ended.revoked_reason.as_deref(), Some("context_changed"));
    assert!(ended.sid_denylisted, "its access tokens are denied, as after a logout");
    assert_eq!(ended.generation, 1, "nothing rotated");
    assert_eq!(ended.network.as_deref(), Some("203.0.113.0/24"), "nothing of the refused refresh written");
    assert!(!revocations_of(&config, &clients, &family_id).await.is_empty(), "the sid is denylisted");

    // Its refresh token stays refused, from anywhere.
    for (ip, agent) in [("203.0.113.99", APP), ("198.51.100.23", APP)] {
        let again = tokenauth::edge::http::token(&refresh, &request(refresh_from(&r1, ip, agent))).await;
        assert_eq!((again.status().as_u16(), json_of(&again)["error"].clone()), (401, json!("invalid_grant")), "{ip}");
    }
}
