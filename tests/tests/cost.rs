//! The inputs of the cost model, measured: for each kind of request, its AWS calls, how many
//! round trips they take one after another, the DynamoDB capacity they consume (as DynamoDB
//! Local accounts it) and its KMS requests, a login refused by the per-source limit among
//! them. Written to `.local/cost/measured.json`, which `infra/local/cost.py` turns into
//! `docs/cost.md` (`make cost`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth_tests::capacity::CapacityMeter;
use tokenauth_tests::*;

/// Clients that log calls and meter capacity.
async fn metered() -> (Clients, CapacityMeter) {
    let meter = CapacityMeter::default();
    let plain = clients().await;
    let calls = plain.calls.clone();
    let dynamodb =
        aws_sdk_dynamodb::Client::from_conf(plain.dynamodb.config().to_builder().interceptor(meter.clone()).build());
    (Clients { dynamodb, kms: plain.kms.clone(), calls }, meter)
}

/// Calls one after another: a call that starts after every call of the current round trip
/// has finished starts the next.
fn round_trips(calls: &[Call]) -> usize {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.started);
    let mut trips = 0;
    let mut wave_end: Option<std::time::Instant> = None;
    for call in sorted {
        let finished = call.finished.unwrap_or(call.started);
        match wave_end {
            Some(end) if call.started < end => wave_end = Some(end.max(finished)),
            _ => {
                trips += 1;
                wave_end = Some(finished);
            }
        }
    }
    trips
}

fn measured(clients: &Clients, meter: &CapacityMeter) -> Value {
    let calls = clients.calls.calls();
    let units = meter.take();
    let names: Vec<String> = calls.iter().map(|c| format!("{}.{}", c.service, c.operation)).collect();
    let kms = names.iter().filter(|n| n.starts_with("KMS.")).count();
    clients.calls.clear();
    json!({"calls": names, "round_trips": round_trips(&calls), "read_units": units.read,
           "write_units": units.write, "kms_requests": kms})
}

#[tokio::test]
async fn measure_what_each_request_consumes() {
    let config = config();
    let (clients, meter) = metered().await;
    let plain = tokenauth_tests::clients().await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &plain, "cost", &["read"]).await;
    clients.calls.clear();
    meter.take();

    let tokens = login_tokens(&login, &username, &password).await;
    let login_ok = measured(&clients, &meter);
    let wrong = tokenauth::edge::http::login(&login, &login_request(&username, "wrong", None)).await;
    assert_eq!(wrong.status(), 401);
    let login_failed = measured(&clients, &meter);
    let response = tokenauth::edge::http::refresh(
        &refresh,
        &refresh_request(tokens["refresh_token"].as_str().unwrap(), None, false),
    )
    .await;
    assert_eq!(response.status(), 200);
    let refreshed = measured(&clients, &meter);

    // A login refused by the per-source limit: a source whose one login this window is spent.
    let one_per_source = config_with(&[("LOGIN_LIMIT_PER_SOURCE", "1")]);
    let limited = login_service(&one_per_source, &clients, Arc::new(SystemClock)).await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let source = format!("2001:db8:{:x}:{:x}::1", nanos >> 16, nanos & 0xffff);
    let mut from_source = event("login-http-api.json");
    from_source["body"] = json!({"username": username, "password": password}).to_string().into();
    from_source["requestContext"]["http"]["sourceIp"] = source.into();
    let first = tokenauth::edge::http::login(&limited, &request_from_event(&from_source)).await;
    assert_eq!(first.status(), 200);
    clients.calls.clear();
    meter.take();
    let refused = tokenauth::edge::http::login(&limited, &request_from_event(&from_source)).await;
    assert_eq!(refused.status(), 429);
    let login_throttled = measured(&clients, &meter);
    assert_eq!(login_throttled["calls"], json!(["DynamoDB.UpdateItem"]), "a refused login is one write, nothing else");

    // The authorizer: a request with no poll due, and one that polls.
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let authorizer = Authorizer::from_config(&config, clients.dynamodb.clone(), clock.clone());
    authorizer.warm_up().await;
    clients.calls.clear();
    meter.take();
    let event =
        event_text_with("authorizer-http-api-v2.json", &format!("Bearer {}", tokens["access_token"].as_str().unwrap()));
    authorizer.handle(&event).await.unwrap();
    let steady = measured(&clients, &meter);
    clock.advance(config.authorizer.poll_every.as_secs());
    authorizer.handle(&event).await.unwrap();
    let poll = measured(&clients, &meter);

    assert_eq!(steady["calls"], json!([]), "no AWS call per authorizer request");
    assert!(login_ok["kms_requests"] == 1 && refreshed["kms_requests"] == 1, "{login_ok} {refreshed}");
    for m in [&login_ok, &login_failed, &refreshed, &poll] {
        assert!(m["read_units"].as_f64().unwrap() + m["write_units"].as_f64().unwrap() > 0.0, "capacity measured: {m}");
    }

    let document = json!({
        "measured_at": SystemClock.now(),
        "login": login_ok,
        "login_failed": login_failed,
        "refresh": refreshed,
        "login_throttled": login_throttled,
        "authorizer_request": steady,
        "authorizer_poll": poll,
        "poll_every_secs": config.authorizer.poll_every.as_secs(),
        "access_token_ttl_secs": config.access_token_ttl.as_secs(),
    });
    let dir = repo_root().join(".local/cost");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("measured.json"), serde_json::to_string_pretty(&document).unwrap()).unwrap();
}
