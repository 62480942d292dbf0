//! Metrics: every outcome the functions count reaches stdout as a CloudWatch Embedded Metric
//! Format document when the binaries run as Lambda runs them (a local Runtime API, the
//! variables Lambda sets). Nothing else is needed for CloudWatch to turn them into metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::platform::clock::SystemClock;
use tokenauth_tests::runtime::{run_function, stack_environment, LambdaRun};
use tokenauth_tests::*;

/// (Operation, Outcome, metric name) of every EMF document of a run.
fn metrics(run: &LambdaRun) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for doc in run.emf() {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], tokenauth::platform::metrics::NAMESPACE, "{doc}");
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_number() || doc[name].is_array(), "the value of {name} is in the document: {doc}");
            out.insert((
                doc["Operation"].as_str().unwrap().to_owned(),
                doc["Outcome"].as_str().unwrap().to_owned(),
                name.to_owned(),
            ));
        }
    }
    out
}

fn expect(found: &BTreeSet<(String, String, String)>, wanted: &[(&str, &str, &str)], run: &LambdaRun) {
    for (operation, outcome, metric) in wanted {
        assert!(
            found.contains(&((*operation).to_owned(), (*outcome).to_owned(), (*metric).to_owned())),
            "no EMF {metric} for {operation}/{outcome}; found {found:?}\nstdout:\n{}",
            run.stdout.join("\n")
        );
    }
}

fn http_event(file: &str, body: Option<String>, headers: &[(&str, &str)]) -> Value {
    let mut e = event(file);
    if let Some(body) = body {
        e["body"] = Value::String(body);
    }
    for (k, v) in headers {
        e["headers"][*k] = Value::String((*v).to_owned());
    }
    e
}

fn body_of(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

fn login_event(username: &str, password: &str) -> Value {
    http_event("login-http-api.json", Some(json!({"username": username, "password": password}).to_string()), &[])
}

#[tokio::test]
async fn every_outcome_is_an_emf_line_on_the_functions_stdout() {
    let config = config();
    let clients = clients().await;
    let (username, password, _) = create_user(&config, &clients, "emf", &["read"]).await;
    let (writer, writer_password, _) = create_user(&config, &clients, "emf-w", &["write"]).await;
    let (locked, _, _) = create_user(&config, &clients, "emf-locked", &["read"]).await;
    let (disabled, disabled_password, _) = create_user(&config, &clients, "emf-disabled", &["read"]).await;
    tokenauth::Revoker::new(&config, clients.dynamodb.clone(), Arc::new(SystemClock))
        .change_account(
            &tokenauth::rules::username::Username::normalise(&disabled).unwrap(),
            &tokenauth::store::AccountChange::Disable,
            "test",
            tokenauth::platform::clock::Clock::now(&SystemClock),
        )
        .await
        .unwrap();
    let env = stack_environment(&[]);

    // login: success, each failure, throttled, and a KMS signing latency.
    let mut events = vec![
        login_event(&username, &password),
        login_event(&writer, &writer_password),
        login_event(&username, &password),
        login_event(&username, &password),
        login_event(&username, "wrong"),
        login_event(&unique_username("nobody"), "wrong"),
    ];
    events.extend((0..6).map(|_| login_event(&locked, "wrong")));
    events.push(login_event(&disabled, &disabled_password));
    events.push(http_event(
        "login-http-api.json",
        Some(json!({"username": username, "password": password, "scope": "admin"}).to_string()),
        &[],
    ));
    let login = run_function("login", &env, events).await;
    expect(
        &metrics(&login),
        &[
            ("login", "success", "LoginAttempts"),
            ("login", "wrong_password", "LoginAttempts"),
            ("login", "unknown_user", "LoginAttempts"),
            ("login", "throttled", "LoginAttempts"),
            ("login", "disabled", "LoginAttempts"),
            ("login", "invalid_scope", "LoginAttempts"),
            ("kms", "ok", "SignLatency"),
        ],
        &login,
    );
    let tokens: Vec<Value> = login.answers[..4].iter().map(body_of).collect();
    let write_tokens = &tokens[1];

    // refresh: rotated, retry served, refused, reuse detected.
    let r0 = tokens[2]["refresh_token"].as_str().unwrap();
    let refresh_event =
        |token: &str| http_event("refresh-json.json", Some(json!({"refresh_token": token}).to_string()), &[]);
    let refresh = run_function(
        "refresh",
        &env,
        vec![refresh_event(r0), refresh_event(r0), refresh_event("tkrt_not-a-token"), refresh_event(r0)],
    )
    .await;
    let rotated = body_of(&refresh.answers[0]);
    assert!(rotated["refresh_token"].is_string(), "{:?}", refresh.answers);
    let mut found = metrics(&refresh);
    // The retry window passes before the reuse: run the same token again after a rotation.
    let r1 = rotated["refresh_token"].as_str().unwrap().to_owned();
    let again = run_function(
        "refresh",
        &stack_environment(&[("REFRESH_LEEWAY_SECS", "0")]),
        vec![refresh_event(&r1), refresh_event(&r1)],
    )
    .await;
    found.extend(metrics(&again));
    expect(
        &found,
        &[
            ("refresh_rotated", "success", "SessionEvents"),
            ("refresh_retry", "success", "SessionEvents"),
            ("refresh", "malformed_token", "SessionEvents"),
            ("refresh_reuse_detected", "revoked", "SessionEvents"),
            ("kms", "ok", "SignLatency"),
        ],
        &again,
    );

    // revocations by kind.
    let form = |token: &str| {
        http_event(
            "revoke-refresh-token-form.json",
            Some(format!("token={token}")),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
    };
    // (The reuse above ended every session of `username`: these are the writer's.)
    let second = run_function("login", &env, vec![login_event(&writer, &writer_password)]).await;
    let bearer = format!("Bearer {}", body_of(&second.answers[0])["access_token"].as_str().unwrap());
    let revoke_all = http_event("revoke-all.json", None, &[("authorization", &bearer)]);
    let revoke = run_function(
        "revoke",
        &env,
        vec![
            form(write_tokens["refresh_token"].as_str().unwrap()),
            form(write_tokens["access_token"].as_str().unwrap()),
            revoke_all,
        ],
    )
    .await;
    expect(
        &metrics(&revoke),
        &[
            ("revoke_refresh_token", "success", "SessionEvents"),
            ("revoke_access_token", "success", "SessionEvents"),
            ("revoke_all", "success", "SessionEvents"),
        ],
        &revoke,
    );

    // authorizer: allow, deny (scope), unauthorized by reason, with latency and the feed's age.
    let (reader_name, reader_password, _) = create_user(&config, &clients, "emf-r", &["read"]).await;
    let reader =
        body_of(&run_function("login", &env, vec![login_event(&reader_name, &reader_password)]).await.answers[0]);
    let authorize = |authorization: &str| {
        serde_json::from_str::<Value>(&event_text_with("authorizer-http-api-v2.json", authorization)).unwrap()
    };
    let (other_writer, other_password, _) = create_user(&config, &clients, "emf-w2", &["write"]).await;
    let writer_login = run_function("login", &env, vec![login_event(&other_writer, &other_password)]).await;
    let write_only = body_of(&writer_login.answers[0]);
    let authorizer = run_function(
        "authorizer",
        &stack_environment(&[("AUTHORIZER_METRICS_SECS", "0"), ("REVOCATION_POLL_SECS", "0")]),
        vec![
            authorize(&format!("Bearer {}", reader["access_token"].as_str().unwrap())),
            authorize(&format!("Bearer {}", write_only["access_token"].as_str().unwrap())),
            authorize("Basic dXNlcjpwYXNz"),
            authorize(PLACEHOLDER_AUTHORIZATION),
        ],
    )
    .await;
    assert_eq!(authorizer.answers[0]["isAuthorized"], true, "{:?}", authorizer.answers);
    expect(
        &metrics(&authorizer),
        &[
            ("authorize", "allow", "Requests"),
            ("authorize", "insufficient_scope", "Requests"),
            ("authorize", "missing_token", "Requests"),
            ("authorize", "bad_signature", "Requests"),
            ("authorize", "all", "Latency"),
            ("authorize", "poll", "RevocationFeedAge"),
        ],
        &authorizer,
    );

    // A dependency failure: DynamoDB unreachable, a 503 and its class.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = run_function(
        "login",
        &stack_environment(&[("AWS_ENDPOINT_URL_DYNAMODB", &closed_url)]),
        vec![login_event(&username, &password)],
    )
    .await;
    assert_eq!(down.answers[0]["statusCode"], 503);
    expect(
        &metrics(&down),
        &[("http", "dynamodb", "DependencyFailures"), ("login", "unavailable", "LoginAttempts")],
        &down,
    );
    // KMS unreachable: a cold instance still trusts the key set (its signature is checked
    // offline), so it tries its key: the `kms:Sign` fails, a 503 of class kms.
    let kms_down = run_function(
        "login",
        &stack_environment(&[("AWS_ENDPOINT_URL_KMS", &closed_url)]),
        vec![login_event(&reader_name, &reader_password)],
    )
    .await;
    assert_eq!(kms_down.answers[0]["statusCode"], 503);
    expect(&metrics(&kms_down), &[("http", "kms", "DependencyFailures"), ("kms", "error", "SignLatency")], &kms_down);
    assert!(
        !metrics(&kms_down).iter().any(|(_, _, name)| name == "KeySetRejected"),
        "the key set was checked without KMS"
    );

    // No line carries a token, a password or the username.
    let _ = login_service(&config, &clients, Arc::new(SystemClock)).await;
    for run in [&login, &refresh, &again, &revoke, &authorizer, &down, &kms_down] {
        let text = run.stdout.join("\n");
        for secret in [password.as_str(), username.as_str(), tokens[0]["access_token"].as_str().unwrap(), r0] {
            assert!(!text.contains(secret), "stdout carries a secret");
        }
    }
}

#[tokio::test]
async fn a_key_set_whose_signature_does_not_vouch_for_it_is_counted() {
    // A set of its own, made by the rotation, then changed by someone without its signing key.
    let clients = clients().await;
    let table = format!("keys-{}", unique_username("emf"));
    create_keys_table(&clients, &table).await;
    let tag = unique_username("set");
    let config = config_with(&[("KEYS_TABLE", &table), ("KEY_SET_TAG", &tag)]);
    let manager = tokenauth::services::keys::KeyManager::from_config(
        &config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(SystemClock),
    );
    manager
        .add(tokenauth::services::keys::manager::KeySource::Create(tokenauth::rules::keys::KeyAlgorithm::ES256))
        .await
        .unwrap();
    let keys = tokenauth::store::DynamoKeys::new(clients.dynamodb.clone(), &table);
    let stored = keys.read().await.unwrap();
    let mut tampered = stored.set.clone();
    tampered.version += 1;
    assert!(keys.replace(&tampered, &stored.signature.unwrap(), stored.set.version).await.unwrap());

    let jwks =
        run_function("jwks", &stack_environment(&[("KEYS_TABLE", &table)]), vec![event("jwks-http-api.json")]).await;
    assert_eq!(jwks.answers[0]["statusCode"], 503, "a set whose signature fails is not published");
    expect(&metrics(&jwks), &[("keys", "bad_signature", "KeySetRejected")], &jwks);
}

/// The account function's `AccountEvents`: each outcome of a password change, a session
/// ended, "sign out everywhere else", a deletion, and a password check refused by the
/// throttle.
#[tokio::test]
async fn the_account_functions_events_are_emf_lines_on_its_stdout() {
    let config = config();
    let clients = clients().await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let env = stack_environment(&[]);
    let (username, password, _) = create_user(&config, &clients, "emf-account", &["read"]).await;
    let new_password = format!("violet anchor {} drifts slowly", tokenauth::rules::token::random_id());
    let bearer = |tokens: &Value| format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let call = |file: &str, tokens: &Value, body: Option<Value>| {
        http_event(file, body.map(|b| b.to_string()), &[("authorization", &bearer(tokens))])
    };
    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let caller = login_tokens(&login, &username, &password).await;
    let first = run_function(
        "account",
        &env,
        vec![
            call("account-change-password.json", &caller, Some(change("not-the-password-9", &new_password))),
            call("account-change-password.json", &caller, Some(change(&password, "password1"))),
            call("account-change-password.json", &caller, Some(change(&password, &new_password))),
        ],
    )
    .await;
    let statuses: Vec<&Value> = first.answers.iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(statuses, [&json!(401), &json!(400), &json!(200)], "{:?}", first.answers);

    // Two more sessions: one ended by id, the other by "sign out everywhere else".
    let other = login_tokens(&login, &username, &new_password).await;
    login_tokens(&login, &username, &new_password).await;
    let mut end_one = call("account-end-session.json", &caller, None);
    let sid = family_of(other["refresh_token"].as_str().unwrap());
    end_one["rawPath"] = Value::String(format!("/auth/sessions/{sid}"));
    end_one["requestContext"]["http"]["path"] = end_one["rawPath"].clone();
    end_one["pathParameters"]["sid"] = Value::String(sid);
    let second = run_function(
        "account",
        &env,
        vec![
            end_one,
            call("account-end-other-sessions.json", &caller, None),
            call("account-delete.json", &caller, Some(json!({"password": new_password}))),
        ],
    )
    .await;
    let statuses: Vec<&Value> = second.answers.iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(statuses, [&json!(204), &json!(204), &json!(204)], "{:?}", second.answers);

    // Past LOGIN_MAX_FAILURES wrong passwords, the next check is throttled.
    let (locked, locked_password, _) = create_user(&config, &clients, "emf-account-locked", &["read"]).await;
    let locked_caller = login_tokens(&login, &locked, &locked_password).await;
    let wrong = (0..=config.login_max_failures)
        .map(|_| call("account-delete.json", &locked_caller, Some(json!({"password": "not-the-password-9"}))))
        .collect();
    let throttled = run_function("account", &env, wrong).await;

    let mut found = metrics(&first);
    found.extend(metrics(&second));
    found.extend(metrics(&throttled));
    expect(
        &found,
        &[
            ("account_password_check", "wrong_password", "AccountEvents"),
            ("password_change", "policy_refused", "AccountEvents"),
            ("password_change", "success", "AccountEvents"),
            ("session_end", "success", "AccountEvents"),
            ("other_sessions_end", "success", "AccountEvents"),
            ("account_delete", "success", "AccountEvents"),
            ("account_password_check", "throttled", "AccountEvents"),
        ],
        &second,
    );
}
