//! The inputs of the cost model, measured for each kind of signing key (`kms`, `envelope`):
//! for each kind of request, its AWS calls, how many round trips they take one after
//! another, the DynamoDB capacity they consume (as DynamoDB Local accounts it, in all and
//! by table) and its KMS requests, a login refused by the per-source limit among them; and
//! what an instance of login and of refresh calls once, at its start (the key set, its MAC,
//! an envelope key's decrypt, the sealing secret), and on its first request. Written to `.local/cost/measured.json`,
//! which `infra/local/cost.py` turns into `docs/cost.md` (`make cost`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, GrantType};
use tokenauth::rules::keys::set::KeyKind;
use tokenauth::store::DynamoClients;
use tokenauth::Config;
use tokenauth::{LoginService, TokenService};
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

/// The variable that names each table of the stack (`USERS_TABLE`...), so the figures name
/// a table as the template does, whatever its local name.
fn table_variables(keys_table: &str) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> =
        std::env::vars().filter(|(variable, _)| variable.ends_with("_TABLE")).map(|(k, v)| (v, k)).collect();
    names.insert(keys_table.to_owned(), "KEYS_TABLE".to_owned());
    names
}

/// What the calls since the last measurement consumed, once every one of them has
/// finished (a signer's re-read may finish after the request that started it).
async fn measured(clients: &Clients, meter: &CapacityMeter, tables: &BTreeMap<String, String>) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while clients.calls.calls().iter().any(|c| c.finished.is_none()) {
        assert!(std::time::Instant::now() < deadline, "calls still unfinished: {:?}", clients.calls.names());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let calls = clients.calls.calls();
    let consumed = meter.take_by_table();
    let names: Vec<String> = calls.iter().map(|c| format!("{}.{}", c.service, c.operation)).collect();
    let kms = names.iter().filter(|n| n.starts_with("KMS.")).count();
    let by_table: BTreeMap<&str, Value> = consumed
        .by_table
        .iter()
        .map(|(table, units)| {
            let variable = tables.get(table).map_or(table.as_str(), String::as_str);
            (variable, json!({"read_units": units.read, "write_units": units.write}))
        })
        .collect();
    clients.calls.clear();
    json!({"calls": names, "round_trips": round_trips(&calls), "read_units": consumed.total.read,
           "write_units": consumed.total.write, "by_table": by_table, "kms_requests": kms})
}

/// What each request consumes, with the current key of `kind`.
async fn measure(kind: KeyKind) -> Value {
    let config = deployment_of_kind(kind).await;
    let tables = table_variables(&config.keys_table);
    let (clients, meter) = metered().await;
    let plain = tokenauth_tests::clients().await;
    let (username, password, _) = create_user(&config, &plain, "cost", &["read"]).await;
    clients.calls.clear();
    meter.take();

    // An instance's start, as the functions start (their `from_config`): what it calls once.
    let login = LoginService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone()).await.unwrap();
    let login_start = measured(&clients, &meter, &tables).await;
    let refresh = TokenService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone()).await.unwrap();
    let refresh_start = measured(&clients, &meter, &tables).await;

    // An instance's first requests: the signer may re-read the set it read at start.
    let first_tokens = login_tokens(&login, &username, &password).await;
    let login_first = measured(&clients, &meter, &tables).await;
    let response = tokenauth::edge::http::token(
        &refresh,
        &refresh_request(first_tokens["refresh_token"].as_str().unwrap(), None, false),
    )
    .await;
    assert_eq!(response.status(), 200);
    let refresh_first = measured(&clients, &meter, &tables).await;

    // Steady state: the signer has its key (decrypted once, for an envelope key).
    let tokens = login_tokens(&login, &username, &password).await;
    let login_ok = measured(&clients, &meter, &tables).await;
    let wrong = tokenauth::edge::http::login(&login, &login_request(&username, "wrong", None)).await;
    assert_eq!(wrong.status(), 401);
    let login_failed = measured(&clients, &meter, &tables).await;
    // A session in its steady state: rotated past its history's length, so its item is as
    // large as it gets (a refresh's write units follow the item's size).
    let mut refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..=tokenauth::store::HISTORY_SLOTS {
        let response = tokenauth::edge::http::token(&refresh, &refresh_request(&refresh_token, None, false)).await;
        assert_eq!(response.status(), 200);
        refresh_token = json_of(&response)["refresh_token"].as_str().unwrap().to_owned();
    }
    clients.calls.clear();
    meter.take();
    let response = tokenauth::edge::http::token(&refresh, &refresh_request(&refresh_token, None, false)).await;
    assert_eq!(response.status(), 200);
    let refreshed = measured(&clients, &meter, &tables).await;

    // A service's token (client credentials, client_secret_basic), and a user's token
    // exchanged by a service for another API (token exchange): each as the token endpoint
    // answers it, the clients registered beforehand.
    let (service, service_secret) = register_service(&config, &plain, "cost-cc", GrantType::ClientCredentials).await;
    let (exchanger, exchanger_secret) = register_service(&config, &plain, "cost-te", GrantType::TokenExchange).await;
    clients.calls.clear();
    meter.take();
    let issued = tokenauth::edge::http::token(
        &refresh,
        &token_request("grant_type=client_credentials", &service, &service_secret),
    )
    .await;
    assert_eq!(issued.status(), 200, "{:?}", issued.body());
    let client_credentials = measured(&clients, &meter, &tables).await;
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={}\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
        tokens["access_token"].as_str().unwrap()
    );
    let exchanged = tokenauth::edge::http::token(&refresh, &token_request(&body, &exchanger, &exchanger_secret)).await;
    assert_eq!(exchanged.status(), 200, "{:?}", exchanged.body());
    let token_exchange = measured(&clients, &meter, &tables).await;

    // A login refused by the per-source limit: a source whose one login this window is spent.
    let mut one_per_source = config.clone();
    one_per_source.source_limits.login_max = 1;
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
    let login_throttled = measured(&clients, &meter, &tables).await;
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
    let steady = measured(&clients, &meter, &tables).await;
    clock.advance(config.authorizer.poll_every.as_secs());
    authorizer.handle(&event).await.unwrap();
    let poll = measured(&clients, &meter, &tables).await;

    assert_eq!(steady["calls"], json!([]), "no AWS call per authorizer request");
    let starts_decrypting =
        |start: &Value| start["calls"].as_array().unwrap().iter().filter(|c| *c == "KMS.Decrypt").count();
    match kind {
        KeyKind::Kms => {
            assert_eq!(login_ok["kms_requests"], 1, "a kms:Sign per login: {login_ok}");
            assert_eq!(refreshed["kms_requests"], 1, "a kms:Sign per refresh: {refreshed}");
            assert_eq!(starts_decrypting(&login_start), 0, "a KMS-held key is not decrypted: {login_start}");
        }
        KeyKind::Envelope => {
            assert_eq!(login_ok["kms_requests"], 0, "no KMS call per login in steady state: {login_ok}");
            assert_eq!(refreshed["kms_requests"], 0, "no KMS call per refresh in steady state: {refreshed}");
            assert_eq!(starts_decrypting(&login_start), 1, "login decrypts its key once, at start: {login_start}");
        }
    }
    for first in [&login_first, &refresh_first] {
        assert!(
            first["calls"].as_array().unwrap().iter().all(|c| c != "KMS.Decrypt"),
            "the key was decrypted at start, not by a request: {first}"
        );
    }
    for m in [&login_ok, &login_failed, &refreshed, &poll] {
        assert!(m["read_units"].as_f64().unwrap() + m["write_units"].as_f64().unwrap() > 0.0, "capacity measured: {m}");
    }
    json!({
        "login": login_ok,
        "login_failed": login_failed,
        "refresh": refreshed,
        "login_throttled": login_throttled,
        "authorizer_request": steady,
        "authorizer_poll": poll,
        "login_start": login_start,
        "refresh_start": refresh_start,
        "login_first": login_first,
        "refresh_first": refresh_first,
        "client_credentials": client_credentials,
        "token_exchange": token_exchange,
    })
}

/// A confidential client with `grant`, scope `read`, the deployment's audience, and a
/// secret: (id, secret).
async fn register_service(config: &Config, clients: &Clients, prefix: &str, grant: GrantType) -> (String, String) {
    let id = unique_username(prefix);
    let secret = ClientSecret::new();
    let mut client = ClientRecord::public(&id, vec!["read".into()], vec![config.audience.clone()], SystemClock.now());
    client.client_type = ClientType::Confidential;
    client.grants = vec![grant];
    client.rotate_secret(&secret, SystemClock.now(), 0);
    DynamoClients::new(clients.dynamodb.clone(), &config.clients_table).create(&client).await.unwrap();
    (id, secret.encode())
}

/// A token-endpoint request with `body`, the client authenticated by `client_secret_basic`.
fn token_request(body: &str, client_id: &str, secret: &str) -> lambda_http::Request {
    let mut event = event("token-client-credentials-basic.json");
    event["headers"]["authorization"] = basic_authorization(client_id, secret).into();
    event["body"] = body.into();
    request_from_event(&event)
}

#[tokio::test]
async fn measure_what_each_request_consumes_with_each_kind_of_key() {
    let config = config();
    let mut kinds = serde_json::Map::new();
    for kind in [KeyKind::Kms, KeyKind::Envelope] {
        kinds.insert(kind.as_str().to_owned(), measure(kind).await);
    }
    let document = json!({
        "measured_at": SystemClock.now(),
        "kinds": kinds,
        "poll_every_secs": config.authorizer.poll_every.as_secs(),
        "access_token_ttl_secs": config.access_token_ttl.as_secs(),
        "key_reload_secs": config.key_reload.as_secs(),
        "envelope_key_max_age_secs": config.envelope_key_max_age.as_secs(),
    });
    let dir = repo_root().join(".local/cost");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("measured.json"), serde_json::to_string_pretty(&document).unwrap()).unwrap();
}
