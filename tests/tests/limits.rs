//! The per-source limit of login and refresh against DynamoDB Local, with truly concurrent
//! requests: a burst from one address is refused with 429 and `Retry-After` while another
//! address logs in at the same moment; N concurrent checks of a bucket of B admit exactly
//! B; the next window admits again; a limit DynamoDB refuses to count admits (fail open).
//! Each test counts in a Limits table of its own, so runs and tests never share a bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::limits::{LimitedAction, RateLimit};
use tokenauth::store::DynamoLimits;
use tokenauth::Config;
use tokenauth_tests::*;

/// A fresh Limits table, as the template defines it.
async fn fresh_limits_table(clients: &Clients) -> String {
    let name = unique_username("limits");
    create_table(clients, &template_tables()["LIMITS_TABLE"], &name).await;
    name
}

/// The stack's configuration with a Limits table of its own and these limits per source.
async fn limited_config(clients: &Clients, login: u32, refresh: u32, window_secs: u64) -> Config {
    let table = fresh_limits_table(clients).await;
    config_with(&[
        ("LIMITS_TABLE", &table),
        ("LOGIN_LIMIT_PER_SOURCE", &login.to_string()),
        ("REFRESH_LIMIT_PER_SOURCE", &refresh.to_string()),
        ("SOURCE_LIMIT_WINDOW_SECS", &window_secs.to_string()),
    ])
}

/// `request` as API Gateway would hand it over from `source` (`requestContext.http.sourceIp`).
fn from_source(event_name: &str, body: &str, source: &str) -> Request {
    let mut event = event(event_name);
    event["body"] = Value::String(body.to_owned());
    event["requestContext"]["http"]["sourceIp"] = Value::String(source.to_owned());
    request_from_event(&event)
}

fn login_from(source: &str, username: &str, password: &str) -> Request {
    from_source("login-http-api.json", &json!({"username": username, "password": password}).to_string(), source)
}

fn refresh_from(source: &str, refresh_token: &str) -> Request {
    from_source("refresh-json.json", &json!({ "refresh_token": refresh_token }).to_string(), source)
}

/// The answer's `Retry-After` in seconds.
fn retry_after(response: &Response<Body>) -> u64 {
    response.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_from_one_address_gets_429_while_another_address_logs_in_at_the_same_time() {
    let clients = clients().await;
    let config = limited_config(&clients, 3, 3, 3600).await;
    let service = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
    let (username, password, _) = create_user(&config, &clients, "limited", &["read"]).await;

    // Twelve logins from the attacker's address and one from a user's, all at once.
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..13 {
        let (service, username, password) = (service.clone(), username.clone(), password.clone());
        let source = if n == 6 { "203.0.113.20" } else { "203.0.113.66" };
        requests.spawn(async move {
            let response = tokenauth::edge::http::login(&service, &login_from(source, &username, &password)).await;
            (source, response)
        });
    }
    let answers = requests.join_all().await;

    let (user, attacker): (Vec<_>, Vec<_>) = answers.iter().partition(|(source, _)| *source == "203.0.113.20");
    assert_eq!(
        user[0].1.status(),
        StatusCode::OK,
        "the other address logs in during the burst: {}",
        json_of(&user[0].1)
    );
    let ok = attacker.iter().filter(|(_, r)| r.status() == StatusCode::OK).count();
    let throttled: Vec<&Response<Body>> =
        attacker.iter().map(|(_, r)| r).filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).collect();
    assert_eq!(ok, 3, "exactly the limit of the burst is served");
    assert_eq!(throttled.len(), 9, "the rest is refused by the limit");
    for response in throttled {
        assert_eq!(json_of(response)["error"], "temporarily_unavailable");
        let secs = retry_after(response);
        assert!((1..=3600).contains(&secs), "Retry-After {secs} is within the window");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_of_one_bucket_admit_exactly_its_size() {
    let clients = clients().await;
    let table = fresh_limits_table(&clients).await;
    let limits = DynamoLimits::new(clients.dynamodb.clone(), &table);
    let limit = RateLimit { max: 10, window_secs: 3600 };
    let now = SystemClock.now();

    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let (limits, check) = (limits.clone(), limit.check(LimitedAction::Login, "192.0.2.44", now));
        checks.spawn(async move { limits.take(&check).await.expect("DynamoDB Local answers") });
    }
    let outcomes = checks.join_all().await;
    let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(admitted, 10, "the conditional write admits exactly the bucket's size");
    assert!(outcomes.iter().filter_map(|o| o.err()).all(|d| d >= Duration::from_secs(1)));

    // The counter holds exactly the admitted requests, with the window's end as its TTL.
    let check = limit.check(LimitedAction::Login, "192.0.2.44", now);
    let item = clients
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("bucket", aws_sdk_dynamodb::types::AttributeValue::S(check.bucket.clone()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the bucket's item");
    assert_eq!(item["hits"].as_n().unwrap(), "10");
    assert_eq!(item["expires_at"].as_n().unwrap(), &check.expires_at.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_bucket_admits_again_in_the_next_window() {
    let clients = clients().await;
    let config = limited_config(&clients, 2, 2, 60).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let login = login_service(&config, &clients, clock.clone()).await;
    let refresh = refresh_service(&config, &clients, clock.clone()).await;
    let (username, password, _) = create_user(&config, &clients, "refill", &["read"]).await;
    let source = "198.51.100.99";

    // Login: two served, the third refused until the window ends.
    for _ in 0..2 {
        assert_eq!(tokenauth::edge::http::login(&login, &login_from(source, &username, &password)).await.status(), 200);
    }
    let refused = tokenauth::edge::http::login(&login, &login_from(source, &username, &password)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&refused);
    let tokens = login_tokens(&login, &username, &password).await; // the sample address: its own bucket

    // Refresh has buckets of its own: a malformed token is refused by the refresh itself
    // (401) twice, then by the limit (429), before the token is even looked at.
    for _ in 0..2 {
        assert_eq!(tokenauth::edge::http::token(&refresh, &refresh_from(source, "tkrt_nonsense")).await.status(), 401);
    }
    let refused_refresh = tokenauth::edge::http::token(&refresh, &refresh_from(source, "tkrt_nonsense")).await;
    assert_eq!(refused_refresh.status(), StatusCode::TOO_MANY_REQUESTS);

    // After the Retry-After the source is served again.
    clock.advance(wait);
    assert_eq!(tokenauth::edge::http::login(&login, &login_from(source, &username, &password)).await.status(), 200);
    let token = tokens["refresh_token"].as_str().unwrap();
    let rotated = tokenauth::edge::http::token(&refresh, &refresh_from(source, token)).await;
    assert_eq!(rotated.status(), 200, "{}", json_of(&rotated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_that_dynamodb_refuses_to_count_admits() {
    let clients = clients().await;
    // A table that does not exist: every check fails with ResourceNotFound.
    let config = config_with(&[("LIMITS_TABLE", &unique_username("no-such-table")), ("LOGIN_LIMIT_PER_SOURCE", "1")]);
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "fail-open", &["read"]).await;
    for _ in 0..3 {
        let response = tokenauth::edge::http::login(&service, &login_from("192.0.2.5", &username, &password)).await;
        assert_eq!(response.status(), StatusCode::OK, "fail open: {}", json_of(&response));
    }
}

#[tokio::test]
async fn a_check_is_one_conditional_write() {
    let clients = clients().await;
    let table = fresh_limits_table(&clients).await;
    let limits = DynamoLimits::new(clients.dynamodb.clone(), &table);
    let check =
        RateLimit { max: 1_000, window_secs: 3600 }.check(LimitedAction::Refresh, "192.0.2.77", SystemClock.now());
    clients.calls.clear();
    limits.take(&check).await.unwrap().unwrap();
    assert_eq!(clients.calls.names(), ["DynamoDB.UpdateItem"]);
    // Latency against DynamoDB Local, as an indication only (docs/cost.md).
    let started = Instant::now();
    for _ in 0..50 {
        limits.take(&check).await.unwrap().unwrap();
    }
    println!("per-source check against DynamoDB Local: {:?} per call", started.elapsed() / 50);
}

#[tokio::test]
async fn a_request_without_a_source_address_is_not_counted() {
    let clients = clients().await;
    let config = limited_config(&clients, 1, 1, 3600).await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "no-source", &["read"]).await;
    let mut event = event("login-http-api.json");
    event["body"] = json!({"username": username, "password": password}).to_string().into();
    event["requestContext"]["http"].as_object_mut().unwrap().remove("sourceIp");
    for _ in 0..3 {
        let response = tokenauth::edge::http::login(&service, &request_from_event(&event)).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", json_of(&response));
    }
}
