//! Login throttling under real concurrency, against the local stack: an attacker's burst of
//! parallel guesses brings at most `LOGIN_MAX_FAILURES` of them to the password check, and
//! the owner's device (which logged in before) still logs in during the attack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use tokenauth::platform::clock::SystemClock;
use tokenauth::LoginService;
use tokenauth_tests::*;

async fn attempt(service: &LoginService, body: Value) -> (StatusCode, Value) {
    let response = tokenauth::edge::http::login(service, &login_event_with_body(&body.to_string())).await;
    (response.status(), json_of(&response))
}

/// `count` wrong guesses for `username` at once; the statuses.
async fn burst(service: &Arc<LoginService>, username: &str, count: usize) -> Vec<StatusCode> {
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..count {
        let (service, username) = (service.clone(), username.to_owned());
        guesses.spawn(async move {
            let body = json!({"username": username, "password": format!("guess-{i}")});
            attempt(&service, body).await.0
        });
    }
    guesses.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_four_parallel_guesses_bring_at_most_the_limit_to_the_password_check() {
    let config = config();
    let clients = clients().await;
    let service = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
    for name in [create_user(&config, &clients, "burst", &["read"]).await.0, unique_username("burst-ghost")] {
        let statuses = burst(&service, &name, 24).await;
        // A 401 is a guess whose password was checked; a 429 was refused before the check.
        let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        println!("{name}: {checked} of 24 parallel guesses reached the password check, {throttled} throttled");
        assert_eq!(checked + throttled, 24, "{statuses:?}");
        assert_eq!(checked, config.login_max_failures as usize, "exactly the limit, never more");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owners_device_logs_in_during_an_attack_that_locks_out_everyone_else() {
    let config = config();
    let clients = clients().await;
    let service = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
    let (username, password, _) = create_user(&config, &clients, "victim", &["read"]).await;

    // The owner logged in on this device before: it keeps the device token it got.
    let (status, first) = attempt(&service, json!({"username": username, "password": password})).await;
    assert_eq!(status, StatusCode::OK);
    let device = first["device_token"].as_str().expect("a device token for a new device").to_owned();
    assert!(device.starts_with("tkdv_"));

    // The attack and the owner's login, at once.
    let attack = burst(&service, &username, 24);
    let owner = attempt(&service, json!({"username": username, "password": password, "device_token": device}));
    let (statuses, (status, during)) = tokio::join!(attack, owner);
    assert_eq!(status, StatusCode::OK, "the owner's device logs in during the attack: {during}");
    assert_eq!(during["device_token"], device.as_str(), "a known device keeps its token");
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert!(checked <= config.login_max_failures as usize, "{statuses:?}");

    // The price: without its device token, even the owner waits out the window...
    let (status, _) = attempt(&service, json!({"username": username, "password": password})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // ...and a made-up device token is a stranger's.
    let forged = tokenauth::rules::token::DeviceToken::new().encode();
    let body = json!({"username": username, "password": password, "device_token": forged});
    assert_eq!(attempt(&service, body).await.0, StatusCode::TOO_MANY_REQUESTS);

    // A device has a limit of its own: guesses through a stolen device token stop too.
    for i in 0..config.login_max_failures {
        let body = json!({"username": username, "password": format!("wrong-{i}"), "device_token": device});
        assert_eq!(attempt(&service, body).await.0, StatusCode::UNAUTHORIZED);
    }
    let body = json!({"username": username, "password": password, "device_token": device});
    assert_eq!(attempt(&service, body).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_attempt_with_the_right_password_is_given_back_even_when_refused_for_its_scope() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "giveback", &["read"]).await;
    for _ in 0..config.login_max_failures + 2 {
        let body = json!({"username": username, "password": password, "scope": "read admin"});
        assert_eq!(attempt(&service, body).await.0, StatusCode::BAD_REQUEST, "invalid_scope, not 429");
    }
    let (status, _) = attempt(&service, json!({"username": username, "password": password})).await;
    assert_eq!(status, StatusCode::OK, "asking for too much is not guessing");
}
