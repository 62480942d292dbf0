//! The authorizer through its entry point, for every event shape, against the local stack:
//! allow / deny / unauthorized, revocation within the poll interval, and fail-closed after
//! the staleness bound when DynamoDB goes away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::Value;
use tokenauth::authorizer::{Authorizer, Unauthorized};
use tokenauth::clock::{Clock, ManualClock, SystemClock};
use tokenauth::keys::{KeyAlgorithm, KeySource, TrustedKey};
use tokenauth_tests::*;

const SHAPES: [&str; 4] = [
    "authorizer-rest-token.json",
    "authorizer-rest-request.json",
    "authorizer-http-api-v1.json",
    "authorizer-http-api-v2.json",
];

/// The authorizer's answer as the JSON API Gateway receives.
async fn decide(a: &Authorizer, event: &str) -> Result<Value, Unauthorized> {
    a.handle(event).await.map(|answer| serde_json::to_value(answer).unwrap())
}

async fn authorizer(
    clients: &Clients,
    dynamodb: aws_sdk_dynamodb::Client,
    settings: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> Authorizer {
    let config = config_with(settings);
    let a = Authorizer::from_config(&config, dynamodb, || clients.kms.clone(), clock).await.expect("authorizer builds");
    a.warm_up().await;
    a
}

async fn access_token(clients: &Clients, scopes: &[&str]) -> (Value, String) {
    let config = config();
    let login = login_service(&config, clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, clients, "authz", scopes).await;
    (login_tokens(&login, &username, &password).await, user_id)
}

fn is_allow_policy(response: &Value) -> bool {
    let statements = response["policyDocument"]["Statement"].as_array().unwrap();
    statements.iter().any(|s| s["Effect"] == "Allow")
}

fn denies(response: &Value, resource_suffix: &str) -> bool {
    response["policyDocument"]["Statement"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Deny"
            && s["Resource"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().ends_with(resource_suffix))
    })
}

#[tokio::test]
async fn every_event_shape_allows_a_valid_token_with_context() {
    let clients = clients().await;
    let a = authorizer(&clients, clients.dynamodb.clone(), &[], Arc::new(SystemClock)).await;
    let (tokens, user_id) = access_token(&clients, &["read"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    clients.calls.clear();

    for shape in SHAPES {
        let response = decide(&a, &event_text_with(shape, &bearer)).await.unwrap_or_else(|e| panic!("{shape}: {e:?}"));
        if shape.ends_with("v2.json") {
            assert_eq!(response["isAuthorized"], true, "{shape}");
        } else {
            assert!(is_allow_policy(&response), "{shape}: {response}");
            assert_eq!(response["principalId"], user_id.as_str());
            let resource = response["policyDocument"]["Statement"][0]["Resource"][0].as_str().unwrap();
            assert!(resource.ends_with("abc123/prod/*/*"), "whole-API pattern, safe to cache: {resource}");
        }
        let context = &response["context"];
        assert_eq!(context["sub"], user_id.as_str(), "{shape}");
        assert_eq!(context["scope"], "read");
        assert_eq!(context["client_id"], "first-party");
        assert_eq!(context["sid"], family_of(tokens["refresh_token"].as_str().unwrap()).as_str());
        assert!(context["jti"].as_str().is_some_and(|j| !j.is_empty()));
    }
    assert!(clients.calls.calls().is_empty(), "no AWS call per request: {:?}", clients.calls.names());
}

#[tokio::test]
async fn keys_handed_over_as_a_jwks_need_no_kms_call_and_verify_the_same_tokens() {
    let clients = clients().await;
    let kms_keys = KeySource::Kms(vec![config().signing_key_id]).load(|| clients.kms.clone()).await.unwrap();
    let jwks = serde_json::json!({"keys": kms_keys.iter().map(TrustedKey::public_jwk).collect::<Vec<_>>()});
    clients.calls.clear();
    let a =
        authorizer(&clients, clients.dynamodb.clone(), &[("TRUSTED_JWKS", &jwks.to_string())], Arc::new(SystemClock))
            .await;
    let started = clients.calls.names();
    assert!(
        !started.is_empty() && started.iter().all(|call| call == "DynamoDB.Query"),
        "at start only the initial revocation load (a Query per hour bucket it spans), no KMS call: {started:?}"
    );
    let (tokens, user_id) = access_token(&clients, &["read"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let allowed = decide(&a, &event_text_with("authorizer-rest-token.json", &bearer)).await.unwrap();
    assert_eq!(allowed["principalId"], user_id.as_str());

    // A JWKS naming another key: the same token is refused.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let other = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let other = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        other.as_ref(),
    )
    .unwrap();
    let spki = aws_lc_rs::encoding::AsDer::as_der(aws_lc_rs::signature::KeyPair::public_key(&other)).unwrap();
    let other_jwks =
        serde_json::json!({"keys": [TrustedKey::from_spki(spki.as_ref(), KeyAlgorithm::ES256).unwrap().public_jwk()]})
            .to_string();
    let b =
        authorizer(&clients, clients.dynamodb.clone(), &[("TRUSTED_JWKS", &other_jwks)], Arc::new(SystemClock)).await;
    let refused = decide(&b, &event_text_with("authorizer-rest-token.json", &bearer)).await;
    assert_eq!(refused.unwrap_err().class(), "bad_signature");
}

#[tokio::test]
async fn every_event_shape_refuses_bad_tokens_the_way_api_gateway_needs() {
    let clients = clients().await;
    let a = authorizer(&clients, clients.dynamodb.clone(), &[], Arc::new(SystemClock)).await;
    let (tokens, _) = access_token(&clients, &["read"]).await;
    let good = tokens["access_token"].as_str().unwrap();
    let bad_headers = [
        PLACEHOLDER_AUTHORIZATION.to_owned(),
        format!("Basic {good}"),
        format!("Bearer {good} extra"),
        format!("Bearer {good}x"),
        "Bearer".to_owned(),
        String::new(),
    ];
    for shape in SHAPES {
        for header in &bad_headers {
            let outcome = decide(&a, &event_text_with(shape, header)).await;
            match shape {
                "authorizer-rest-token.json" | "authorizer-rest-request.json" => {
                    let e = outcome.expect_err("REST answers with the Unauthorized error");
                    assert_eq!(e.to_string(), "Unauthorized", "{shape}: {header}");
                }
                "authorizer-http-api-v2.json" => assert_eq!(outcome.unwrap()["isAuthorized"], false, "{shape}"),
                _ => {
                    let response = outcome.unwrap();
                    assert!(!is_allow_policy(&response), "{shape}: {response}");
                }
            }
        }
    }
    // Not an authorizer event at all.
    assert_eq!(decide(&a, r#"{"hello":"world"}"#).await.unwrap_err(), Unauthorized::UnknownEvent);
    assert_eq!(decide(&a, "not json").await.unwrap_err(), Unauthorized::UnknownEvent);
}

#[tokio::test]
async fn a_valid_token_without_the_routes_scope_is_denied_403_style() {
    let clients = clients().await;
    let rules = [("AUTHORIZER_ROUTE_SCOPES", "GET /api/items=admin;POST /api/*=write")];
    let a = authorizer(&clients, clients.dynamodb.clone(), &rules, Arc::new(SystemClock)).await;
    let (tokens, _) = access_token(&clients, &["read", "write"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());

    for shape in SHAPES {
        let response = decide(&a, &event_text_with(shape, &bearer)).await.expect("a decision, not unauthorized");
        if shape.ends_with("v2.json") {
            assert_eq!(response["isAuthorized"], false);
        } else {
            assert!(denies(&response, "/GET/api/items"), "{shape}: {response}");
            assert!(!denies(&response, "/POST/api/*"), "write is granted, so POST routes stay allowed: {response}");
        }
    }
    // With IAM answers for payload 2.0 the policy is the same kind.
    let iam = authorizer(
        &clients,
        clients.dynamodb.clone(),
        &[rules[0], ("AUTHORIZER_RESPONSE", "iam")],
        Arc::new(SystemClock),
    )
    .await;
    let response = decide(&iam, &event_text_with("authorizer-http-api-v2.json", &bearer)).await.unwrap();
    assert!(denies(&response, "/GET/api/items"));
}

#[tokio::test]
async fn revocations_reach_a_warm_instance_within_the_poll_interval() {
    let config = config();
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let a = authorizer(&clients, clients.dynamodb.clone(), &[("REVOCATION_POLL_SECS", "1")], clock.clone()).await;
    let revoke = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
    let allowed = |t: &str| format!("Bearer {t}");

    // An access token (jti).
    let (one, _) = access_token(&clients, &["read"]).await;
    let token = one["access_token"].as_str().unwrap();
    assert!(decide(&a, &event_text_with(SHAPES[0], &allowed(token))).await.is_ok());
    revoke.revoke(tokenauth::RevokeRequest { token: token.to_owned(), token_type_hint: None }, None).await.unwrap();
    clock.advance(1);
    assert_eq!(
        decide(&a, &event_text_with(SHAPES[0], &allowed(token))).await.unwrap_err(),
        Unauthorized::Revoked,
        "jti"
    );

    // A session, through refresh-token reuse.
    let (two, _) = access_token(&clients, &["read"]).await;
    let refresh_clock = Arc::new(ManualClock::new(SystemClock.now()));
    let refresh = refresh_service(&config, &clients, refresh_clock.clone()).await;
    let r0 = two["refresh_token"].as_str().unwrap();
    let rotated = tokenauth::http::refresh(&refresh, &refresh_request(r0, None, false)).await;
    assert_eq!(rotated.status(), 200);
    let session_token = two["access_token"].as_str().unwrap();
    assert!(decide(&a, &event_text_with(SHAPES[3], &allowed(session_token))).await.unwrap()["isAuthorized"] == true);
    refresh_clock.advance(31);
    assert_eq!(tokenauth::http::refresh(&refresh, &refresh_request(r0, None, false)).await.status(), 401, "reuse");
    clock.advance(1);
    assert_eq!(
        decide(&a, &event_text_with(SHAPES[3], &allowed(session_token))).await.unwrap()["isAuthorized"],
        false,
        "sid"
    );

    // Every session of a user (revoke-all).
    let (three, _) = access_token(&clients, &["read"]).await;
    let user_token = three["access_token"].as_str().unwrap();
    assert!(decide(&a, &event_text_with(SHAPES[1], &allowed(user_token))).await.is_ok());
    revoke.revoke_all(user_token, None).await.unwrap();
    clock.advance(1);
    assert_eq!(
        decide(&a, &event_text_with(SHAPES[1], &allowed(user_token))).await.unwrap_err(),
        Unauthorized::Revoked,
        "user"
    );
}

#[tokio::test]
async fn serves_cached_state_while_dynamodb_is_down_then_fails_closed_after_the_staleness_bound() {
    let clients = clients().await;
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap();
    let proxy = TcpProxy::start(upstream.trim_start_matches("http://")).await;
    let dynamodb = dynamodb_at(&proxy.url).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let settings = [("REVOCATION_POLL_SECS", "1"), ("REVOCATION_MAX_STALENESS_SECS", "3")];
    let a = authorizer(&clients, dynamodb, &settings, clock.clone()).await;
    let (tokens, _) = access_token(&clients, &["read"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());

    assert!(decide(&a, &event_text_with(SHAPES[0], &bearer)).await.is_ok());
    proxy.stop(); // DynamoDB is gone for this instance.
    for _ in 0..3 {
        clock.advance(1);
        assert!(decide(&a, &event_text_with(SHAPES[0], &bearer)).await.is_ok(), "within the staleness bound");
    }
    clock.advance(1);
    assert_eq!(decide(&a, &event_text_with(SHAPES[0], &bearer)).await.unwrap_err(), Unauthorized::StaleRevocations);
}

/// A loopback TCP proxy to DynamoDB Local that a test can cut, as if DynamoDB went away.
struct TcpProxy {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { url, task }
    }

    /// Stops listening and drops every open connection.
    fn stop(&self) {
        self.task.abort();
    }
}
