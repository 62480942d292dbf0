//! Login against the local stack: DynamoDB Local and the KMS emulator, real SDK clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use lambda_http::http::StatusCode;
use serde_json::Value;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::token::AccessClaims;
use tokenauth::store::schema;
use tokenauth_tests::*;

#[tokio::test]
async fn login_issues_an_es256_access_token_that_verifies_with_the_kms_public_key() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, "verify", &["read", "write"]).await;

    let response = tokenauth::edge::http::login(&service, &login_request(&username, &password, None)).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_of(&response);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "read write");
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("tkrt_"), "recognisable prefix");

    // Verified by jsonwebtoken with the key fetched independently from KMS.
    let der = public_key_der(&clients, &current_signing_key(&config, &clients).await).await;
    let key = DecodingKey::from_ec_pem(pem(&der).as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&config.audience]);
    validation.set_issuer(&[&config.issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims = decode::<AccessClaims>(access, &key, &validation).expect("signature verifies").claims;

    let header = decode_header(access).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    // kid = RFC 7638 thumbprint, computed by jsonwebtoken from the point at the end of the SPKI.
    let point = &der[der.len() - 64..];
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..]),
    }))
    .unwrap();
    assert_eq!(header.kid.as_deref(), Some(jwk.thumbprint(ThumbprintHash::SHA256).unwrap().as_str()));
    let raw_header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(raw_header.as_object().unwrap().len(), 3, "header is exactly alg, typ, kid: {raw_header}");

    assert_eq!(claims.iss, config.issuer);
    assert_eq!(claims.aud, config.audience);
    assert_eq!(claims.sub, user_id, "sub is the stable user id, not the username");
    assert_ne!(claims.sub, username);
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(claims.jti.len() >= 22);
    assert_eq!(claims.client_id, "first-party");
    assert_eq!(claims.scope, "read write");
    assert_eq!(claims.sid, Some(family_of(refresh)));
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let mut names: Vec<&str> = payload.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["aud", "client_id", "exp", "iat", "iss", "jti", "scope", "sid", "sub"]);
}

#[tokio::test]
async fn family_item_holds_a_hash_and_the_ttl_never_the_token() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, "family", &["read"]).await;

    let body = json_of(&tokenauth::edge::http::login(&service, &login_request(&username, &password, None)).await);
    let refresh = body["refresh_token"].as_str().unwrap();
    let secret = secret_part(refresh);

    let item = clients
        .dynamodb
        .get_item()
        .table_name(&config.families_table)
        .key(schema::FAMILIES_PARTITION_KEY, AttributeValue::S(family_of(refresh)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("family written");
    let s = |k: &str| item[k].as_s().unwrap().clone();
    let n = |k: &str| item[k].as_n().unwrap().parse::<u64>().unwrap();
    assert_eq!(s("user_id"), user_id);
    assert_eq!(s("status"), "active");
    assert_eq!(item["scopes"].as_l().unwrap().len(), 1);
    assert_eq!(n("generation"), 0);
    assert_eq!(s("token_hash"), tokenauth::rules::token::RefreshToken::parse(refresh).unwrap().hash());
    assert_eq!(n(schema::TTL_ATTRIBUTE), n("created_at") + 30 * 24 * 3600, "TTL = absolute expiry");
    assert_eq!(n("idle_expires_at"), n("created_at") + 7 * 24 * 3600);
    for (name, value) in &item {
        let text = format!("{value:?}");
        assert!(!text.contains(secret) && !text.contains(refresh), "attribute {name} holds the token");
    }
    let ttl = clients.dynamodb.describe_time_to_live().table_name(&config.families_table).send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some(schema::TTL_ATTRIBUTE));
}

#[tokio::test]
async fn unknown_user_wrong_password_and_disabled_user_get_byte_identical_answers() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "same", &["read"]).await;
    let (disabled, disabled_password, _) = create_user(&config, &clients, "disabled", &["read"]).await;
    tokenauth::store::DynamoUsers::new(clients.dynamodb.clone(), &config.users_table)
        .change(
            &tokenauth::rules::username::Username::normalise(&disabled).unwrap(),
            &tokenauth::store::AccountChange::Disable,
            tokenauth::Clock::now(&SystemClock),
        )
        .await
        .unwrap();

    let unknown =
        tokenauth::edge::http::login(&service, &login_request(&unique_username("nobody"), &password, None)).await;
    let wrong = tokenauth::edge::http::login(&service, &login_request(&username, "not-the-password", None)).await;
    let off = tokenauth::edge::http::login(&service, &login_request(&disabled, &disabled_password, None)).await;

    for response in [&unknown, &wrong, &off] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.body().as_ref(), br#"{"error":"invalid_grant"}"#);
    }
    assert_eq!(format!("{:?}", unknown.headers()), format!("{:?}", wrong.headers()));
    assert_eq!(format!("{:?}", off.headers()), format!("{:?}", wrong.headers()));
}

#[tokio::test]
async fn requested_scope_must_be_within_the_users_scopes() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "scope", &["read", "write"]).await;

    let narrowed = tokenauth::edge::http::login(&service, &login_request(&username, &password, Some("read"))).await;
    assert_eq!(narrowed.status(), StatusCode::OK);
    assert_eq!(json_of(&narrowed)["scope"], "read");

    for scope in ["read admin", "admin", "read  write", "caf\u{e9}"] {
        let response = tokenauth::edge::http::login(&service, &login_request(&username, &password, Some(scope))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{scope:?}");
        let body = json_of(&response);
        assert_eq!(body["error"], "invalid_scope", "{scope:?}");
        assert!(body.get("access_token").is_none());
    }
}

async fn login_status(
    service: &tokenauth::LoginService,
    username: &str,
    password: &str,
) -> lambda_http::Response<lambda_http::Body> {
    tokenauth::edge::http::login(service, &login_request(username, password, None)).await
}

#[tokio::test]
async fn throttles_after_five_failures_for_known_and_unknown_users_until_the_window_passes() {
    let config = config();
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(tokenauth::platform::clock::Clock::now(&SystemClock)));
    let service = login_service(&config, &clients, clock.clone()).await;
    let (username, password, _) = create_user(&config, &clients, "throttle", &["read"]).await;
    let nobody = unique_username("ghost");

    for name in [&username, &nobody] {
        for attempt in 1..=5 {
            let response = login_status(&service, name, "wrong").await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {attempt} for {name}");
            clock.advance(10);
        }
        // The sixth attempt is refused without checking the password, even the right one.
        let throttled = login_status(&service, name, &password).await;
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS, "{name}");
        let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((800..=900).contains(&retry_after), "retry-after {retry_after}");
        assert_eq!(json_of(&throttled)["error"], "temporarily_unavailable");
        assert!(json_of(&throttled).get("access_token").is_none());
    }
    // Same answer for the known and the unknown name: no enumeration through throttling.
    let known = login_status(&service, &username, "wrong").await;
    let unknown = login_status(&service, &nobody, "wrong").await;
    assert_eq!(known.body().as_ref(), unknown.body().as_ref());

    clock.advance(901);
    let after = login_status(&service, &username, &password).await;
    assert_eq!(after.status(), StatusCode::OK, "the window has passed");
}

#[tokio::test]
async fn a_successful_login_resets_the_failure_count() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "reset", &["read"]).await;

    for _ in 0..4 {
        assert_eq!(login_status(&service, &username, "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(&service, &username, &password).await.status(), StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(login_status(&service, &username, "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    // 8 failures in the window, but the success in between reset the count to 4.
    assert_eq!(login_status(&service, &username, &password).await.status(), StatusCode::OK);
    // And a fifth failure after the reset still counts normally.
    for _ in 0..5 {
        login_status(&service, &username, "wrong").await;
    }
    assert_eq!(login_status(&service, &username, &password).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Families of `user_id`, read through the by-user index.
async fn families_of(clients: &Clients, config: &tokenauth::Config, user_id: &str) -> usize {
    clients
        .dynamodb
        .query()
        .table_name(&config.families_table)
        .index_name(schema::FAMILIES_BY_USER_INDEX)
        .key_condition_expression("user_id = :u")
        .expression_attribute_values(":u", AttributeValue::S(user_id.to_owned()))
        .send()
        .await
        .unwrap()
        .count() as usize
}

#[tokio::test]
async fn kms_stopped_answers_503_with_no_token_and_no_usable_family() {
    let config = config();
    let clients = clients().await;
    // A private emulator this test may stop without disturbing the others.
    let emulator = KmsEmulator::start();
    let signer = emulator.signer().await;
    let service =
        tokenauth::LoginService::new(&config, clients.dynamodb.clone(), Arc::new(signer), Arc::new(SystemClock));
    let (username, password, user_id) = create_user(&config, &clients, "kmsdown", &["read"]).await;
    let works = login_status(&service, &username, &password).await;
    assert_eq!(works.status(), StatusCode::OK, "the private emulator works before it is stopped");
    let before = families_of(&clients, &config, &user_id).await;

    drop(emulator); // KMS stops.
    let started = std::time::Instant::now();
    let response = login_status(&service, &username, &password).await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(8), "answered in {:?}", started.elapsed());
    let body = json_of(&response);
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    let text = String::from_utf8_lossy(response.body().as_ref()).to_string();
    assert!(!text.contains("tkrt_") && !text.contains("eyJ"), "no token material in {text}");
    assert_eq!(
        families_of(&clients, &config, &user_id).await,
        before,
        "the family written for the unsigned token was removed"
    );
}

#[tokio::test]
async fn dynamodb_unreachable_or_hanging_answers_503() {
    let config = config();
    let clients = clients().await;
    let signer = current_kms_signer(&config, &clients).await;

    // Nothing listens: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // Accepts connections and never answers: a hung dependency.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });

    for url in [closed_url, hanging_url] {
        let dynamodb = dynamodb_at(&url).await;
        let service = tokenauth::LoginService::new(&config, dynamodb, Arc::new(signer.clone()), Arc::new(SystemClock));
        let started = std::time::Instant::now();
        let response = login_status(&service, "someone", "password").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{url}");
        assert!(started.elapsed() < Duration::from_secs(8), "{url}: answered in {:?}", started.elapsed());
        assert_eq!(json_of(&response)["error"], "temporarily_unavailable");
        assert!(response.headers().contains_key("retry-after"));
    }
    holder.abort();
}

#[tokio::test]
async fn one_login_makes_six_aws_calls_in_three_round_trips() {
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "calls", &["read"]).await;
    clients.calls.clear();

    let response = login_status(&service, &username, &password).await;
    assert_eq!(response.status(), StatusCode::OK);

    let calls = clients.calls.calls();
    let names = clients.calls.names();
    println!("AWS calls for one successful login: {} {:?}", calls.len(), names);
    assert_eq!(calls.len(), 6, "{names:?}");
    // First, alone: the per-source limit (an UpdateItem of the Limits table).
    let (limit, calls) = (&calls[0], &calls[1..]);
    assert_eq!(limit.operation, "UpdateItem", "{names:?}");
    assert!(calls.iter().all(|c| limit.finished.unwrap() <= c.started), "the limit is checked before anything else");
    let find = |operation: &str| calls.iter().find(|c| c.operation == operation).unwrap();
    // First round trip: the account, the attempt's reservation and the client, at once.
    let (read, reserve) = (find("GetItem"), find("UpdateItem"));
    let client = calls.iter().filter(|c| c.operation == "GetItem").nth(1).expect("the client's read");
    // Second: the signature and the family's transaction (conditioned on the account).
    let (sign, write) = (find("Sign"), find("TransactWriteItems"));
    let overlap = |a: &tokenauth_tests::Call, b: &tokenauth_tests::Call| {
        a.started < b.finished.unwrap() && b.started < a.finished.unwrap()
    };
    assert!(overlap(read, reserve), "the account read and the reservation were in flight at the same time");
    assert!(overlap(client, reserve), "the client read and the reservation were in flight at the same time");
    assert!(overlap(sign, write), "Sign and the family's write were in flight at the same time");
    let first_done = read.finished.unwrap().max(reserve.finished.unwrap()).max(client.finished.unwrap());
    assert!(first_done <= sign.started.min(write.started), "the password check comes between the two");
}

/// The deployment's client, once disabled in the registry, gets no new session: 401
/// `invalid_client`, no family written, the attempt given back; registered and active, it
/// is the tokens' `client_id`.
#[tokio::test]
async fn a_disabled_client_gets_no_new_session() {
    use tokenauth::rules::clients::ClientRecord;
    let app = format!("app-{}", tokenauth::rules::token::random_id().replace(['-', '_'], ""));
    let config = config_with(&[("CLIENT_ID", &app)]);
    let clients = clients().await;
    let registry = tokenauth::store::DynamoClients::new(clients.dynamodb.clone(), &config.clients_table);
    registry.create(&ClientRecord::public(&app, vec![], vec![], SystemClock.now())).await.unwrap();
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, "client-off", &["read"]).await;

    let tokens = login_tokens(&service, &username, &password).await;
    let claims = independently_verified(&config, &clients, tokens["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims.client_id, app, "issued to the registered client");
    assert_eq!(families_of(&clients, &config, &user_id).await, 1);

    registry.disable(&app, SystemClock.now()).await.unwrap().expect("registered");
    for _ in 0..config.login_max_failures + 1 {
        let response = login_status(&service, &username, &password).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(&response)["error"], "invalid_client");
    }
    assert_eq!(families_of(&clients, &config, &user_id).await, 1, "no family written for the disabled client");
    let other = login_service(&tokenauth_tests::config(), &clients, Arc::new(SystemClock)).await;
    assert_eq!(
        login_status(&other, &username, &password).await.status(),
        StatusCode::OK,
        "refused attempts were given back: the username is not locked out"
    );
}

/// A login with `body` on `service`: status and body.
async fn login_with(service: &tokenauth::LoginService, body: Value) -> (StatusCode, Value) {
    let response = tokenauth::edge::http::login(service, &login_event_with_body(&body.to_string())).await;
    (response.status(), json_of(&response))
}

#[tokio::test]
async fn a_known_devices_trust_renews_with_each_login_from_it() {
    use tokenauth::platform::clock::Clock;
    use tokenauth::rules::token::DeviceToken;
    use tokenauth::rules::username::Username;
    // GIVEN a device that logged in at T0 and got a device token trusted until T0 + TTL
    let config = config();
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let service = login_service(&config, &clients, clock.clone()).await;
    let (username, password, _) = create_user(&config, &clients, "devrenew", &["read"]).await;
    let t0 = clock.now();
    let (status, first) = login_with(&service, serde_json::json!({"username": username, "password": password})).await;
    assert_eq!(status, StatusCode::OK);
    let device = first["device_token"].as_str().unwrap().to_owned();
    let hash = DeviceToken::parse(&device).unwrap().hash();
    let users = tokenauth::store::DynamoUsers::new(clients.dynamodb.clone(), &config.users_table);
    let name = Username::normalise(&username).unwrap();
    let ttl = config.device_token_ttl.as_secs();

    // WHEN it logs in again with it 1000 s later
    clock.advance(1000);
    let body = serde_json::json!({"username": username, "password": password, "device_token": device});
    let (status, second) = login_with(&service, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["device_token"], device.as_str(), "a known device keeps its token");

    // THEN it is trusted until TTL after this login, not the first
    assert!(users.device_is_known(&name, &hash, t0 + ttl + 500).await.unwrap(), "renewed past the first expiry");
    assert!(!users.device_is_known(&name, &hash, t0 + 1000 + ttl).await.unwrap(), "and no further");
}

#[tokio::test]
async fn disable_and_revoke_all_end_the_trust_of_the_users_devices() {
    use tokenauth::platform::clock::Clock;
    use tokenauth::rules::token::DeviceToken;
    use tokenauth::rules::username::Username;
    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let revoke = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
    let revoker = tokenauth::Revoker::new(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    let users = tokenauth::store::DynamoUsers::new(clients.dynamodb.clone(), &config.users_table);
    for ending in ["revoke-all", "disable"] {
        // GIVEN a user whose device logged in before
        let (username, password, _) = create_user(&config, &clients, "devend", &["read"]).await;
        let name = Username::normalise(&username).unwrap();
        let login = serde_json::json!({"username": username, "password": password});
        let (_, first) = login_with(&service, login.clone()).await;
        let device = first["device_token"].as_str().unwrap().to_owned();
        let hash = DeviceToken::parse(&device).unwrap().hash();
        assert!(users.device_is_known(&name, &hash, SystemClock.now()).await.unwrap());

        // WHEN every session ends: POST /auth/revoke-all, or `authctl user disable` (the
        // same account change authctl makes) and the account enabled again by hand
        if ending == "revoke-all" {
            let bearer = format!("Bearer {}", first["access_token"].as_str().unwrap());
            let response = tokenauth::edge::http::revoke(&revoke, &revoke_all_request(Some(&bearer))).await;
            assert_eq!(response.status(), StatusCode::OK);
        } else {
            let disable = tokenauth::store::AccountChange::Disable;
            revoker.change_account(&name, &disable, "disabled_by_admin", SystemClock.now()).await.unwrap();
            clients
                .dynamodb
                .update_item()
                .table_name(&config.users_table)
                .key(schema::USERS_PARTITION_KEY, AttributeValue::S(name.as_str().to_owned()))
                .key(schema::USERS_SORT_KEY, AttributeValue::S("profile".into()))
                .update_expression("SET #s = :active")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":active", AttributeValue::S("active".into()))
                .send()
                .await
                .unwrap();
        }

        // THEN the old device is a stranger: not known, and its next login gets a new token
        assert!(!users.device_is_known(&name, &hash, SystemClock.now()).await.unwrap(), "{ending}");
        let body = serde_json::json!({"username": username, "password": password, "device_token": device});
        let (status, again) = login_with(&service, body).await;
        assert_eq!(status, StatusCode::OK, "{ending}: {again}");
        assert_ne!(again["device_token"], device.as_str(), "{ending}: a stranger gets a device token of its own");
    }
}
