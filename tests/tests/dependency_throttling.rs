//! Login and refresh while KMS throttles, against the local stack: the KMS emulator's
//! throttling switch makes `kms:Sign` answer `ThrottlingException` exactly as AWS KMS does
//! over its quota (HTTP 400), through the real SDK with the functions' retry settings.
//! Every refused request answers 503 with a spread `Retry-After` and no token, and writes
//! nothing: no family for a refused login, the family untouched by a refused refresh (so
//! the same token rotates once KMS answers, however long the throttling lasted), no retry
//! answer spent by a refused retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::Value;
use tokenauth::edge::http::THROTTLED_RETRY_AFTER_SECS;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::rotation::MAX_RETRY_ANSWERS;
use tokenauth::store::DynamoFamilies;
use tokenauth_tests::*;

/// How many requests are refused at once while KMS throttles.
const PARALLEL: usize = 8;

/// A refused answer: 503, a `Retry-After` from the throttled range, no token in the body.
fn assert_throttled_answer(response: &Response<Body>) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{:?}", response.body());
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(THROTTLED_RETRY_AFTER_SECS.contains(&retry_after), "Retry-After {retry_after}");
    let body = json_of(response);
    assert_eq!(body["error"], "temporarily_unavailable");
    for field in ["access_token", "refresh_token", "device_token"] {
        assert!(body.get(field).is_none(), "no {field} in a refused answer: {body}");
    }
}

async fn families_of(config: &tokenauth::Config, clients: &Clients, user_id: &str) -> Vec<String> {
    DynamoFamilies::new(clients.dynamodb.clone(), &config.families_table, &config.users_table)
        .family_ids_of_user(user_id)
        .await
        .unwrap()
}

/// `PARALLEL` refreshes of `token` at once; their responses.
/// `users` (username, password, user id) logging in all at once: each answered as a
/// throttled dependency is answered.
async fn logins_all_throttled(service: &Arc<tokenauth::LoginService>, users: &[(String, String, String)]) {
    let mut logins = tokio::task::JoinSet::new();
    for (username, password, _) in users {
        let (service, username, password) = (service.clone(), username.clone(), password.clone());
        logins.spawn(async move {
            tokenauth::edge::http::login(&service, &login_request(&username, &password, None)).await
        });
    }
    for response in logins.join_all().await {
        assert_throttled_answer(&response);
    }
}

/// No user of `users` has a family.
async fn assert_no_family(config: &tokenauth::Config, clients: &Clients, users: &[(String, String, String)]) {
    for (username, _, user_id) in users {
        assert_eq!(families_of(config, clients, user_id).await, Vec::<String>::new(), "{username}: no family");
    }
}

/// Each of `users` logs in, and that session is the user's only one.
async fn each_logs_in_to_one_session(
    config: &tokenauth::Config,
    clients: &Clients,
    service: &tokenauth::LoginService,
    users: &[(String, String, String)],
) {
    for (username, password, user_id) in users {
        let tokens = login_tokens(service, username, password).await;
        let family_id = family_of(tokens["refresh_token"].as_str().unwrap());
        assert_eq!(families_of(config, clients, user_id).await, vec![family_id]);
    }
}

async fn parallel_refreshes(service: &Arc<tokenauth::TokenService>, token: &str) -> Vec<Response<Body>> {
    let mut refreshes = tokio::task::JoinSet::new();
    for _ in 0..PARALLEL {
        let (service, token) = (service.clone(), token.to_owned());
        refreshes
            .spawn(async move { tokenauth::edge::http::token(&service, &refresh_request(&token, None, true)).await });
    }
    refreshes.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_refused_while_kms_throttles_answer_503_with_retry_after_and_leave_no_family() {
    let _exclusive = KmsThrottling::exclusive().await;
    let config = config();
    let clients = signing_clients().await;
    let service = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
    // One user per login: parallel logins of one username are bounded by its lockout.
    let mut users = Vec::new();
    for _ in 0..PARALLEL {
        users.push(create_user(&config, &clients, "kms-throttled", &["read"]).await);
    }

    let throttling = KmsThrottling::on(&["Sign"]);
    logins_all_throttled(&service, &users).await;
    assert!(clients.calls.names().iter().any(|c| c == "KMS.Sign"), "the logins reached kms:Sign");
    assert_no_family(&config, &clients, &users).await;
    throttling.off();

    // KMS answers again: the same credentials log in, and that session is the user's only one.
    each_logs_in_to_one_session(&config, &clients, &service, &users).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_refused_while_kms_throttles_writes_nothing_and_the_same_token_rotates_long_after() {
    let _exclusive = KmsThrottling::exclusive().await;
    let config = config();
    let clients = signing_clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let login = login_service(&config, &clients, clock.clone()).await;
    let service = Arc::new(refresh_service(&config, &clients, clock.clone()).await);
    let (username, password, _) = create_user(&config, &clients, "kms-throttled-refresh", &["read"]).await;
    let token = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let family_id = family_of(&token);
    let before = family(&config, &clients, &family_id).await;

    let throttling = KmsThrottling::on(&["Sign"]);
    for response in parallel_refreshes(&service, &token).await {
        assert_throttled_answer(&response);
    }
    assert_eq!(family(&config, &clients, &family_id).await, before, "a refused refresh changes nothing");
    // The throttling outlasts the retry leeway: the token must not have been rotated
    // away meanwhile, or presenting it now would count as reuse.
    clock.advance(config.refresh_leeway.as_secs() * 4);
    for response in parallel_refreshes(&service, &token).await {
        assert_throttled_answer(&response);
    }
    assert_eq!(family(&config, &clients, &family_id).await, before);
    throttling.off();

    // KMS answers again: the same token rotates, once.
    let answers = parallel_refreshes(&service, &token).await;
    let rotated: Vec<&Response<Body>> = answers.iter().filter(|r| r.status() == StatusCode::OK).collect();
    assert!(!rotated.is_empty(), "the token rotates: {:?}", answers.iter().map(Response::status).collect::<Vec<_>>());
    let successors: std::collections::BTreeSet<String> =
        rotated.iter().map(|r| json_of(r)["refresh_token"].as_str().unwrap().to_owned()).collect();
    assert_eq!(successors.len(), 1, "one successor however many answers: {successors:?}");
    let after = family(&config, &clients, &family_id).await;
    assert_eq!(after.generation, before.generation + 1, "rotated exactly once");
    assert!(after.is_alive(clock.now()), "no reuse detected: the family lives");
    let successor = successors.into_iter().next().unwrap();
    let next = tokenauth::edge::http::token(&service, &refresh_request(&successor, None, true)).await;
    assert_eq!(next.status(), StatusCode::OK, "the successor rotates in turn: {:?}", next.body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_refused_while_kms_throttles_spends_none_of_the_retry_answers() {
    let _exclusive = KmsThrottling::exclusive().await;
    let config = config();
    let clients = signing_clients().await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let service = Arc::new(refresh_service(&config, &clients, Arc::new(SystemClock)).await);
    let (username, password, _) = create_user(&config, &clients, "kms-throttled-retry", &["read"]).await;
    let token = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    // The answer of this rotation is "lost": the client presents the same token again.
    let first = tokenauth::edge::http::token(&service, &refresh_request(&token, None, true)).await;
    assert_eq!(first.status(), StatusCode::OK);
    let successor: Value = json_of(&first)["refresh_token"].clone();
    let family_id = family_of(&token);
    let before = family(&config, &clients, &family_id).await;

    let throttling = KmsThrottling::on(&["Sign"]);
    // More refused retries than there are retry answers.
    assert!(PARALLEL > MAX_RETRY_ANSWERS as usize);
    for response in parallel_refreshes(&service, &token).await {
        assert_throttled_answer(&response);
    }
    assert_eq!(family(&config, &clients, &family_id).await, before, "no retry answer counted");
    throttling.off();

    let retried = tokenauth::edge::http::token(&service, &refresh_request(&token, None, true)).await;
    assert_eq!(retried.status(), StatusCode::OK, "the retry is answered once KMS answers: {:?}", retried.body());
    assert_eq!(json_of(&retried)["refresh_token"], successor, "with the same successor");
    assert_eq!(family(&config, &clients, &family_id).await.retries, before.retries + 1);
}

/// The services on a DynamoDB client that goes through a throttling proxy of this test's own.
/// (These tests take the KMS switch's lock too: their signatures must not meet the KMS
/// throttling of the tests above, which run in parallel.)
async fn behind_a_throttling_proxy() -> (DynamoDbThrottleProxy, Clients) {
    let proxy = DynamoDbThrottleProxy::start();
    let mut clients = signing_clients().await;
    clients.dynamodb = dynamodb_at(&proxy.endpoint).await;
    (proxy, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_refused_while_dynamodb_throttles_answer_503_with_retry_after_and_leave_no_family() {
    let _kms_unthrottled = KmsThrottling::exclusive().await;
    let config = config();
    let (proxy, clients) = behind_a_throttling_proxy().await;
    let service = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
    let mut users = Vec::new();
    for _ in 0..PARALLEL {
        users.push(create_user(&config, &clients, "ddb-throttled", &["read"]).await);
    }

    // The family's write (the transaction that also clears the user's counter) is throttled.
    proxy.throttle(&["TransactWriteItems"], "ProvisionedThroughputExceededException");
    logins_all_throttled(&service, &users).await;
    assert_no_family(&config, &clients, &users).await;
    proxy.off();

    each_logs_in_to_one_session(&config, &clients, &service, &users).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_refused_while_dynamodb_throttles_writes_nothing_and_the_same_token_rotates_afterwards() {
    let _kms_unthrottled = KmsThrottling::exclusive().await;
    let config = config();
    let (proxy, clients) = behind_a_throttling_proxy().await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let service = Arc::new(refresh_service(&config, &clients, Arc::new(SystemClock)).await);
    let (username, password, _) = create_user(&config, &clients, "ddb-throttled-refresh", &["read"]).await;
    let token = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let family_id = family_of(&token);
    let before = family(&config, &clients, &family_id).await;

    // The rotation's write throttled (an UpdateItem: the per-source limit's, also
    // throttled, admits), then the reads, each with another of the codes.
    for (operation, code) in [("UpdateItem", "ThrottlingException"), ("GetItem", "RequestLimitExceeded")] {
        proxy.throttle(&[operation], code);
        for response in parallel_refreshes(&service, &token).await {
            assert_throttled_answer(&response);
        }
        proxy.off();
        assert_eq!(family(&config, &clients, &family_id).await, before, "{operation} {code}: nothing written");
    }

    let rotated = tokenauth::edge::http::token(&service, &refresh_request(&token, None, true)).await;
    assert_eq!(rotated.status(), StatusCode::OK, "the same token rotates: {:?}", rotated.body());
    let after = family(&config, &clients, &family_id).await;
    assert_eq!((after.generation, after.is_alive(SystemClock.now())), (before.generation + 1, true));
}
