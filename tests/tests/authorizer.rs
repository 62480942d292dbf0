//! The authorizer through its entry point, for every event shape, against the local stack:
//! allow / deny / unauthorized, revocation within the poll interval, and fail-closed after
//! the staleness bound when DynamoDB goes away or hangs (while requests, which wait for a
//! read at most the budget, are answered from the state held).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::Value;
use tokenauth::edge::authorizer::{Authorizer, Unauthorized};
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
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

/// The answer once the reads the request started have answered (the poll it found due).
async fn decide_after_reads(a: &Authorizer, event: &str) -> Result<Value, Unauthorized> {
    handle_after_reads(a, event).await.map(|answer| serde_json::to_value(answer).unwrap())
}

async fn authorizer(
    dynamodb: aws_sdk_dynamodb::Client,
    settings: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> Authorizer {
    // Every route open to a valid token unless the test sets rules of its own.
    let mut settings = settings.to_vec();
    if !settings.iter().any(|(name, _)| *name == "AUTHORIZER_ROUTE_SCOPES") {
        settings.push(("AUTHORIZER_ROUTE_SCOPES", "$default="));
    }
    let config = config_with(&settings);
    let a = Authorizer::from_config(&config, dynamodb, clock);
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

#[tokio::test]
async fn every_event_shape_allows_a_valid_token_with_context() {
    let clients = clients().await;
    let a = authorizer(clients.dynamodb.clone(), &[], Arc::new(SystemClock)).await;
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
            // `$default=`: every method on everything, written method by method (a `*` in
            // the method's place would span into the path).
            let resources = response["policyDocument"]["Statement"][0]["Resource"].as_array().unwrap();
            let resources: Vec<&str> = resources.iter().map(|r| r.as_str().unwrap()).collect();
            assert_eq!(resources.len(), 7, "{resources:?}");
            assert!(resources.iter().any(|r| r.ends_with("abc123/prod/GET/*")), "whole-API pattern: {resources:?}");
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
async fn keys_come_from_the_key_set_without_any_kms_call() {
    let clients = clients().await;
    clients.calls.clear();
    let a = authorizer(clients.dynamodb.clone(), &[], Arc::new(SystemClock)).await;
    let started = clients.calls.names();
    assert_eq!(
        started.iter().filter(|call| *call == "DynamoDB.GetItem").count(),
        1,
        "one read of the key set at start: {started:?}"
    );
    assert!(
        started.iter().all(|call| call == "DynamoDB.GetItem" || call == "DynamoDB.Query"),
        "at start the key set and the initial revocation load (a Query per hour bucket), no KMS call: {started:?}"
    );
    let (tokens, user_id) = access_token(&clients, &["read"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let allowed = decide(&a, &event_text_with("authorizer-rest-token.json", &bearer)).await.unwrap();
    assert_eq!(allowed["principalId"], user_id.as_str());
}

#[tokio::test]
async fn every_event_shape_refuses_bad_tokens_the_way_api_gateway_needs() {
    let clients = clients().await;
    let a = authorizer(clients.dynamodb.clone(), &[], Arc::new(SystemClock)).await;
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
    let rules = [("AUTHORIZER_ROUTE_SCOPES", "GET /api/items=admin;POST /api/{proxy+}=write")];
    let a = authorizer(clients.dynamodb.clone(), &rules, Arc::new(SystemClock)).await;
    let (tokens, _) = access_token(&clients, &["read", "write"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());

    for shape in SHAPES {
        let response = decide(&a, &event_text_with(shape, &bearer)).await.expect("a decision, not unauthorized");
        if shape.ends_with("v2.json") {
            assert_eq!(response["isAuthorized"], false);
        } else {
            let base = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod";
            assert!(!answer_allows(&response, &format!("{base}/GET/api/items")), "{shape}: {response}");
            assert!(
                answer_allows(&response, &format!("{base}/POST/api/x")),
                "write is granted, so POST routes stay allowed: {response}"
            );
        }
    }
    // With IAM answers for payload 2.0 the policy is the same kind.
    let iam =
        authorizer(clients.dynamodb.clone(), &[rules[0], ("AUTHORIZER_RESPONSE", "iam")], Arc::new(SystemClock)).await;
    let response = decide(&iam, &event_text_with("authorizer-http-api-v2.json", &bearer)).await.unwrap();
    assert!(!answer_allows(&response, "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/api/items"));
    assert!(is_allow_policy(&response), "the POST routes: {response}");
}

#[tokio::test]
async fn revocations_reach_a_warm_instance_within_the_poll_interval() {
    let config = config();
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let a = authorizer(clients.dynamodb.clone(), &[("REVOCATION_POLL_SECS", "1")], clock.clone()).await;
    let revoke = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
    let allowed = |t: &str| format!("Bearer {t}");

    // An access token (jti).
    let (one, _) = access_token(&clients, &["read"]).await;
    let token = one["access_token"].as_str().unwrap();
    assert!(decide(&a, &event_text_with(SHAPES[0], &allowed(token))).await.is_ok());
    revoke.revoke(tokenauth::RevokeRequest::anonymous(token), None).await.unwrap();
    clock.advance(1);
    assert_eq!(
        decide_after_reads(&a, &event_text_with(SHAPES[0], &allowed(token))).await.unwrap_err(),
        Unauthorized::Revoked,
        "jti"
    );

    // A session, through refresh-token reuse.
    let (two, _) = access_token(&clients, &["read"]).await;
    let refresh_clock = Arc::new(ManualClock::new(SystemClock.now()));
    let refresh = refresh_service(&config, &clients, refresh_clock.clone()).await;
    let r0 = two["refresh_token"].as_str().unwrap();
    let rotated = tokenauth::edge::http::token(&refresh, &refresh_request(r0, None, false)).await;
    assert_eq!(rotated.status(), 200);
    let session_token = two["access_token"].as_str().unwrap();
    assert!(decide(&a, &event_text_with(SHAPES[3], &allowed(session_token))).await.unwrap()["isAuthorized"] == true);
    refresh_clock.advance(31);
    assert_eq!(tokenauth::edge::http::token(&refresh, &refresh_request(r0, None, false)).await.status(), 401, "reuse");
    clock.advance(1);
    assert_eq!(
        decide_after_reads(&a, &event_text_with(SHAPES[3], &allowed(session_token))).await.unwrap()["isAuthorized"],
        false,
        "sid"
    );

    // Every session of a user (revoke-all).
    let (three, _) = access_token(&clients, &["read"]).await;
    let user_token = three["access_token"].as_str().unwrap();
    assert!(decide(&a, &event_text_with(SHAPES[1], &allowed(user_token))).await.is_ok());
    revoke.revoke_all(tokenauth::services::account::Presented::Bearer(user_token), None, None).await.unwrap();
    clock.advance(1);
    assert_eq!(
        decide_after_reads(&a, &event_text_with(SHAPES[1], &allowed(user_token))).await.unwrap_err(),
        Unauthorized::Revoked,
        "user"
    );
}

#[tokio::test]
async fn serves_cached_state_while_dynamodb_is_down_then_fails_closed_after_the_staleness_bound() {
    let clients = clients().await;
    let proxy = TcpProxy::to_dynamodb_local().await;
    let dynamodb = dynamodb_at(&proxy.url).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let settings = [("REVOCATION_POLL_SECS", "1"), ("REVOCATION_MAX_STALENESS_SECS", "3")];
    let a = authorizer(dynamodb, &settings, clock.clone()).await;
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

#[tokio::test]
async fn a_dynamodb_that_never_answers_holds_no_request_and_the_staleness_bound_still_fails_closed() {
    let clients = clients().await;
    let proxy = TcpProxy::to_dynamodb_local().await;
    let dynamodb = dynamodb_at(&proxy.url).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let settings = [("REVOCATION_POLL_SECS", "1"), ("REVOCATION_MAX_STALENESS_SECS", "3")];
    let a = authorizer(dynamodb, &settings, clock.clone()).await;
    let (tokens, _) = access_token(&clients, &["read"]).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    assert!(decide(&a, &event_text_with(SHAPES[0], &bearer)).await.is_ok());

    // DynamoDB accepts connections and never answers: each read waits for the SDK's
    // timeouts (2 s an attempt, 4 s a call), far longer than any request may.
    proxy.hang();
    let mut answered_while_reading = 0;
    for second in 1..=3 {
        clock.advance(1);
        let started = std::time::Instant::now();
        let answer = decide(&a, &event_text_with(SHAPES[0], &bearer)).await;
        let took = started.elapsed();
        assert!(answer.is_ok(), "{second} s after the last good read, within the bound: {answer:?}");
        // An order of magnitude above the budget (25 ms), well below one SDK attempt.
        assert!(took < std::time::Duration::from_secs(1), "a request waited {took:?} for a hung read");
        answered_while_reading += usize::from(a.reading());
    }
    assert!(answered_while_reading > 0, "the hung reads were under way while requests were answered");
    clock.advance(1);
    let started = std::time::Instant::now();
    let answer = decide(&a, &event_text_with(SHAPES[0], &bearer)).await;
    assert_eq!(answer.unwrap_err(), Unauthorized::StaleRevocations, "past the bound, hung read or not");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused at once: {:?}", started.elapsed());
}

/// An authorizer with these route rules answering payload 2.0 in `style`.
async fn with_rules(clients: &Clients, rules: &str, style: &str) -> Authorizer {
    let settings = [("AUTHORIZER_ROUTE_SCOPES", rules), ("AUTHORIZER_RESPONSE", style)];
    authorizer(clients.dynamodb.clone(), &settings, Arc::new(SystemClock)).await
}

/// `Bearer <access token>` of a new user with `scopes`.
async fn bearer_with(clients: &Clients, scopes: &[&str]) -> String {
    let (tokens, _) = access_token(clients, scopes).await;
    format!("Bearer {}", tokens["access_token"].as_str().unwrap())
}

/// The HTTP API 2.0 event API Gateway sends for `method path` (matched to `route_key`).
fn request_event(bearer: &str, route_key: &str, method: &str, path: &str) -> String {
    let mut event: Value = serde_json::from_str(&event_text_with("authorizer-http-api-v2.json", bearer)).unwrap();
    let arn = event["routeArn"].as_str().unwrap().to_owned();
    let base = &arn[..arn.find("/GET/").unwrap()];
    event["routeArn"] = Value::String(format!("{base}/{method}{path}"));
    event["routeKey"] = Value::String(route_key.to_owned());
    event["rawPath"] = Value::String(path.to_owned());
    event["requestContext"]["http"]["method"] = Value::String(method.to_owned());
    event["requestContext"]["http"]["path"] = Value::String(path.to_owned());
    event["requestContext"]["routeKey"] = Value::String(route_key.to_owned());
    event.to_string()
}

/// Rules with every route shape: exact, `ANY` with `{proxy+}`, and a `$default` rule.
const RULES: &str = "GET /api/whoami=read;ANY /api/admin/{proxy+}=admin;ANY /api/{proxy+}=read;$default=write";

/// (route API Gateway matched, method, path as sent) for requests of every kind,
/// including spellings that would slip past a byte-exact, first-match rule.
const REQUESTS: [(&str, &str, &str); 10] = [
    ("GET /api/whoami", "GET", "/api/whoami"),
    ("ANY /api/{proxy+}", "GET", "/api/items"),
    ("ANY /api/{proxy+}", "POST", "/api/admin/x"),
    ("ANY /api/admin/{proxy+}", "DELETE", "/api/admin/users/7"),
    ("ANY /api/{proxy+}", "FOO", "/api/whoami"),
    ("$default", "GET", "/API/whoami"),
    ("ANY /api/{proxy+}", "GET", "/api/whoami/"),
    ("ANY /api/{proxy+}", "GET", "/api/%77hoami"),
    ("$default", "GET", "/elsewhere"),
    ("$default", "PUT", "/"),
];

/// Overlapping rules: carve-outs under broader rules both ways round.
const OVERLAPPING: &str =
    "GET /api/{id}=;ANY /api/admin/{proxy+}=admin;GET /api/admin/health=;ANY /api/{proxy+}=read;$default=admin";

/// Requests of every rule of [`OVERLAPPING`], and the route API Gateway matches each to.
const OVERLAPPING_REQUESTS: [(&str, &str, &str); 8] = [
    ("GET /api/{id}", "GET", "/api/item42"),
    ("ANY /api/admin/{proxy+}", "GET", "/api/admin/export"),
    ("GET /api/admin/health", "GET", "/api/admin/health"),
    ("ANY /api/admin/{proxy+}", "POST", "/api/admin/health"),
    ("ANY /api/{proxy+}", "POST", "/api/item42"),
    ("ANY /api/{proxy+}", "GET", "/api/items/7"),
    ("$default", "GET", "/elsewhere"),
    ("$default", "GET", "/"),
];

/// What [`OVERLAPPING`] allows, written out by hand from the routes API Gateway selects.
fn overlapping_expected(scopes: &[&str], method: &str, path: &str) -> bool {
    let has = |scope: &str| scopes.contains(&scope);
    match (method, path) {
        ("GET", "/api/item42") | ("GET", "/api/admin/health") => true,
        (_, "/api/admin/export") | ("POST", "/api/admin/health") => has("admin"),
        (_, "/api/item42") | (_, "/api/items/7") => has("read"),
        _ => has("admin"),
    }
}

/// Whether an answer allows the request at `arn`: the simple answer itself, or the
/// policy evaluated as IAM does (an explicit deny wins, then an allow).
fn answer_allows(answer: &Value, arn: &str) -> bool {
    if let Some(simple) = answer.get("isAuthorized") {
        return simple == true;
    }
    let matches = |effect: &str| {
        answer["policyDocument"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Effect"] == effect)
            .any(|s| s["Resource"].as_array().unwrap().iter().any(|r| glob_matches(r.as_str().unwrap(), arn)))
    };
    !matches("Deny") && matches("Allow")
}

/// IAM's `*`: any run of characters.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head) && (head.len()..=text.len()).any(|i| glob_matches(rest, &text[i..]))
        }
    }
}

#[tokio::test]
async fn simple_and_iam_answers_agree_on_every_request_and_spellings_off_the_rules_are_denied() {
    let clients = clients().await;
    let rules = ("AUTHORIZER_ROUTE_SCOPES", RULES);
    let simple = with_rules(&clients, rules.1, "simple").await;
    let iam = with_rules(&clients, rules.1, "iam").await;
    for scopes in [&["read"][..], &["admin"], &["read", "admin"], &["write"]] {
        let bearer = bearer_with(&clients, scopes).await;
        for (route_key, method, path) in REQUESTS {
            let event = request_event(&bearer, route_key, method, path);
            let arn: Value = serde_json::from_str(&event).unwrap();
            let arn = arn["routeArn"].as_str().unwrap();
            let by_simple = answer_allows(&decide(&simple, &event).await.unwrap(), arn);
            let by_iam = answer_allows(&decide(&iam, &event).await.unwrap(), arn);
            assert_eq!(by_simple, by_iam, "{scopes:?}: {method} {path}");
        }
    }

    // Overlapping rules: the rule API Gateway routes to decides, in both styles, and a
    // policy replayed on every other request (cached per token) never over-grants.
    for style in ["simple", "iam"] {
        let a = with_rules(&clients, OVERLAPPING, style).await;
        for scopes in [&["write"][..], &["read"], &["admin"]] {
            let bearer = bearer_with(&clients, scopes).await;
            let mut answers = Vec::new();
            for (route_key, method, path) in OVERLAPPING_REQUESTS {
                let event = request_event(&bearer, route_key, method, path);
                let arn = serde_json::from_str::<Value>(&event).unwrap()["routeArn"].as_str().unwrap().to_owned();
                answers.push((arn, decide(&a, &event).await.unwrap()));
            }
            for (i, (arn, answer)) in answers.iter().enumerate() {
                let (_, method, path) = OVERLAPPING_REQUESTS[i];
                let expected = overlapping_expected(scopes, method, path);
                assert_eq!(answer_allows(answer, arn), expected, "{style} {scopes:?}: {method} {path}");
                if style == "iam" {
                    for (other, (other_arn, _)) in answers.iter().enumerate() {
                        let (_, other_method, other_path) = OVERLAPPING_REQUESTS[other];
                        assert!(
                            !answer_allows(answer, other_arn) || overlapping_expected(scopes, other_method, other_path),
                            "{scopes:?}: the policy for {method} {path} allows {other_method} {other_path}: {answer}"
                        );
                    }
                }
            }
        }
    }

    // Issue 18: a `{id}` rule is one segment, so a route added later under it falls to the
    // default; in both answer styles.
    let rules = ("AUTHORIZER_ROUTE_SCOPES", "GET /api/{id}=;$default=admin");
    for style in ["simple", "iam"] {
        let a = with_rules(&clients, rules.1, style).await;
        let bearer = bearer_with(&clients, &["read"]).await;
        let allows = |route_key: &'static str, path: &'static str| {
            let event = request_event(&bearer, route_key, "GET", path);
            let a = &a;
            async move {
                let arn: Value = serde_json::from_str(&event).unwrap();
                answer_allows(&decide(a, &event).await.unwrap(), arn["routeArn"].as_str().unwrap())
            }
        };
        assert!(allows("GET /api/{id}", "/api/item42").await, "{style}: GET /api/item42");
        assert!(!allows("$default", "/api/admin/export").await, "{style}: GET /api/admin/export without admin");
    }

    // A spelling off a rule's own (case, trailing slash, encoding, another method) is not
    // that rule's route: it gets the default, here one asking for a scope the token lacks.
    let rules = ("AUTHORIZER_ROUTE_SCOPES", "GET /api/whoami=read;$default=write");
    for style in ["simple", "iam"] {
        let a = with_rules(&clients, rules.1, style).await;
        let bearer = bearer_with(&clients, &["read"]).await;
        let allows = |method: &'static str, path: &'static str| {
            let event = request_event(&bearer, "$default", method, path);
            let a = &a;
            async move {
                let arn: Value = serde_json::from_str(&event).unwrap();
                answer_allows(&decide(a, &event).await.unwrap(), arn["routeArn"].as_str().unwrap())
            }
        };
        assert!(allows("GET", "/api/whoami").await, "{style}: the rule's own spelling");
        for (method, path) in
            [("GET", "/API/whoami"), ("GET", "/api/whoami/"), ("GET", "/api/%77hoami"), ("FOO", "/api/whoami")]
        {
            assert!(!allows(method, path).await, "{style}: {method} {path} slipped past the rule");
        }
    }
}

#[tokio::test]
async fn answers_cached_by_the_templates_identity_sources_are_never_reused_to_over_grant() {
    // The cache key as the template configures it: the identity headers and context. The
    // template caches nothing (ReauthorizeEvery 0: a DPoP proof is good for one request);
    // then the key checked is the one a deployment turning the cache back on must use.
    let api = template_with(&[]).http_api().unwrap();
    let authorizer = &api.authorizers["TokenAuthorizer"];
    let sources = match authorizer.result_ttl_secs {
        0 => ["$request.header.Authorization", "$context.httpMethod", "$context.path"].map(str::to_owned).to_vec(),
        _ => authorizer.identity_sources.clone(),
    };
    let list = |prefix: &str| -> Vec<String> {
        sources.iter().filter_map(|s| s.strip_prefix(prefix)).map(str::to_owned).collect()
    };
    let (headers, context) = (list("$request.header."), list("$context."));
    assert_eq!(headers.len() + context.len(), sources.len(), "sources this test does not model: {sources:?}");
    assert_eq!(headers, ["Authorization"]);
    let cache_key = |event: &Value| -> String {
        let mut key = event["headers"]["authorization"].as_str().unwrap().to_owned();
        for name in &context {
            let value = match name.as_str() {
                "httpMethod" => &event["requestContext"]["http"]["method"],
                "path" => &event["requestContext"]["http"]["path"],
                "routeKey" => &event["routeKey"],
                other => panic!("a context identity source this test does not model: {other}"),
            };
            key.push('|');
            key.push_str(value.as_str().unwrap());
        }
        key
    };

    let clients = clients().await;
    let rules = ("AUTHORIZER_ROUTE_SCOPES", RULES);
    for style in ["simple", "iam"] {
        let a = with_rules(&clients, rules.1, style).await;
        let bearer = bearer_with(&clients, &["read"]).await;
        let mut cache: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
        // Every request after every other, so each cached answer meets every later request.
        for _ in 0..2 {
            for (route_key, method, path) in REQUESTS {
                let event_text = request_event(&bearer, route_key, method, path);
                let event: Value = serde_json::from_str(&event_text).unwrap();
                let arn = event["routeArn"].as_str().unwrap();
                let fresh = answer_allows(&decide(&a, &event_text).await.unwrap(), arn);
                let cached = cache.entry(cache_key(&event)).or_insert_with(|| Value::Null);
                if cached.is_null() {
                    *cached = decide(&a, &event_text).await.unwrap();
                }
                let replayed = answer_allows(cached, arn);
                assert!(!replayed || fresh, "{style}: a cached answer allowed {method} {path}, which is denied");
                assert_eq!(replayed, fresh, "{style}: {method} {path}");
            }
        }
    }

    // Why the key holds method and path: keyed by route instead, a simple answer cached for
    // GET /api/items would be reused for POST /api/admin/x (both `ANY /api/{proxy+}`).
    let a = with_rules(&clients, rules.1, "simple").await;
    let bearer = bearer_with(&clients, &["read"]).await;
    let items = decide(&a, &request_event(&bearer, "ANY /api/{proxy+}", "GET", "/api/items")).await.unwrap();
    let admin = decide(&a, &request_event(&bearer, "ANY /api/{proxy+}", "POST", "/api/admin/x")).await.unwrap();
    assert_eq!((items["isAuthorized"].as_bool(), admin["isAuthorized"].as_bool()), (Some(true), Some(false)));

    // A policy is right for every route on its own: cached per token only (the coarsest key
    // API Gateway has), it still answers each request as the authorizer would.
    let iam = with_rules(&clients, rules.1, "iam").await;
    let first = request_event(&bearer, REQUESTS[0].0, REQUESTS[0].1, REQUESTS[0].2);
    let cached = decide(&iam, &first).await.unwrap();
    for (route_key, method, path) in REQUESTS {
        let event_text = request_event(&bearer, route_key, method, path);
        let event: Value = serde_json::from_str(&event_text).unwrap();
        let arn = event["routeArn"].as_str().unwrap();
        let fresh = answer_allows(&decide(&iam, &event_text).await.unwrap(), arn);
        assert_eq!(answer_allows(&cached, arn), fresh, "policy cached per token: {method} {path}");
    }
}

/// A service token that lives a day (a client's `token_ttl_secs`), issued two hours ago.
async fn day_long_service_token(
    config: &tokenauth::Config,
    clients: &Clients,
    issued_at: Arc<ManualClock>,
) -> (String, tokenauth::rules::token::AccessClaims) {
    use tokenauth::rules::clients::{ClientRecord, ClientType, GrantType};
    let client = ClientRecord {
        client_type: ClientType::Confidential,
        grants: vec![GrantType::ClientCredentials],
        token_ttl_secs: Some(86_400),
        ..ClientRecord::public(&unique_username("nightly-batch"), vec!["read".into()], Vec::new(), issued_at.now())
    };
    tokenauth::store::DynamoClients::new(clients.dynamodb.clone(), &config.clients_table)
        .create(&client)
        .await
        .unwrap();
    let signer = key_set_signer(config, clients, issued_at.clone()).await;
    let grants = tokenauth::services::grants::GrantService::new(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(signer),
        issued_at,
        tokenauth::services::client_auth::ClientAuthenticator::from_config(config, clients.dynamodb.clone()),
    );
    let request = tokenauth::services::token_endpoint::ClientCredentialsRequest::default();
    let issued = grants.client_credentials(&client, request, &tokenauth::RequestMeta::default()).await.unwrap();
    let claims = independently_verified(config, clients, &issued.access_token).await.expect("a token of ours");
    (issued.access_token, claims)
}

#[tokio::test]
async fn a_new_instance_refuses_day_long_tokens_revoked_before_its_lookback() {
    let config = config();
    let clients = clients().await;
    let two_hours_ago = SystemClock.now() - 7_200;
    assert!(config.revocation_lookback().as_secs() < 7_200, "the revocations lie before a cold start's lookback");
    let then = Arc::new(ManualClock::new(two_hours_ago));
    let (revoked, claims) = day_long_service_token(&config, &clients, then.clone()).await;
    let (cut_off, cut_claims) = day_long_service_token(&config, &clients, then.clone()).await;
    let (untouched, _) = day_long_service_token(&config, &clients, then.clone()).await;

    // Two hours ago: one token revoked by its jti (RFC 7009), another's client disabled.
    let revoker = tokenauth::Revoker::new(&config, clients.dynamodb.clone(), then.clone());
    revoker.revoke_access_token(&claims.jti, claims.exp).await.unwrap();
    then.advance(1);
    revoker.cut_off_client(&cut_claims.client_id, Some(86_400), then.now()).await.unwrap();

    // An instance started now reads back only its lookback's hour buckets; a token older
    // than that makes it read the entries that outlive the lookback.
    let fresh = authorizer(clients.dynamodb.clone(), &[], Arc::new(SystemClock)).await;
    let bearer = |token: &str| event_text_with(SHAPES[0], &format!("Bearer {token}"));
    assert!(!fresh.reading(), "a cold start reads no long-lived entry");
    let refused = decide_after_reads(&fresh, &bearer(&revoked)).await.unwrap_err();
    assert_eq!(refused, Unauthorized::Revoked, "the jti");
    let refused = decide_after_reads(&fresh, &bearer(&cut_off)).await.unwrap_err();
    assert_eq!(refused, Unauthorized::Revoked, "the client's cut-off");
    let allowed = decide_after_reads(&fresh, &bearer(&untouched)).await.unwrap();
    assert!(is_allow_policy(&allowed), "a day-long token nothing revoked: {allowed}");
}
