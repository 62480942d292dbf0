//! Keys: the key set, its gated lifecycle, rotation under traffic, the JWKS and the
//! metadata. Each test has a Keys table of its own (and its own KMS tag), so changing a set
//! here never touches the set the other tests sign with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::keys::set::{KeyKind, KeyRefusal, KeyState, KeyStep};
use tokenauth::rules::keys::{KeyAlgorithm, Signer};
use tokenauth::services::discovery::DiscoveryService;
use tokenauth::services::keys::manager::{KeyChangeError, KeySource, KEY_SET_TAG_KEY};
use tokenauth::services::keys::{AuthenticatedKeys, KeyManager, KmsSigner};
use tokenauth::Config;
use tokenauth_tests::*;

/// A Keys table of this test's own.
async fn fresh_keys_table(clients: &Clients) -> String {
    let name = format!("keys-{}", unique_username("t"));
    create_keys_table(clients, &name).await;
    name
}

/// The stack's configuration on a Keys table of its own with short gates: a key is
/// published 3 s before it may sign, tokens live 6 s (+ 2 s leeway), everyone re-reads the
/// set every second. Shortened by configuration, as a deployment would set them.
async fn short_gates(clients: &Clients, extra: &[(&str, &str)]) -> Config {
    let table = fresh_keys_table(clients).await;
    let tag = unique_username("set");
    let mut overrides = vec![
        ("KEYS_TABLE", table.as_str()),
        ("KEY_SET_TAG", tag.as_str()),
        ("ACCESS_TOKEN_TTL_SECS", "6"),
        ("TOKEN_LEEWAY_SECS", "2"),
        ("KEY_SET_RELOAD_SECS", "1"),
        ("REVOCATION_POLL_SECS", "1"),
        ("JWKS_MAX_AGE_SECS", "1"),
        ("KEY_PUBLISH_LEAD_SECS", "3"),
        ("KEY_MAX_AGE_DAYS", "1"),
        ("AUTHORIZER_ROUTE_SCOPES", "$default="),
    ];
    overrides.extend_from_slice(extra);
    config_with(&overrides)
}

fn manager(config: &Config, clients: &Clients, clock: Arc<dyn Clock>) -> KeyManager {
    KeyManager::from_config(config, clients.dynamodb.clone(), clients.kms.clone(), clock)
}

async fn allowed(a: &Authorizer, token: &str) -> bool {
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {token}"));
    let answer = serde_json::to_value(a.handle(&event).await.unwrap()).unwrap();
    answer["isAuthorized"] == true
}

/// A token with valid claims for ten minutes, signed directly with `kms_key_id`: what a
/// token of that key looks like to the authorizer, whether or not the key still signs.
async fn token_of_key(config: &Config, clients: &Clients, kms_key_id: &str) -> String {
    let signer = KmsSigner::load(clients.kms.clone(), kms_key_id).await.unwrap();
    let now = SystemClock.now();
    let claims = json!({"iss": config.issuer, "sub": "u-keys", "aud": config.audience, "exp": now + 600,
        "iat": now, "jti": tokenauth::rules::token::random_id(), "client_id": "first-party", "scope": "read",
        "sid": tokenauth::rules::token::random_id()});
    signer.sign_jws(claims.to_string().as_bytes()).await.unwrap()
}

/// Waits until `check` holds, at most `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One authorization or refresh as a client saw it.
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    what: &'static str,
    kid: String,
    ok: bool,
    /// Shown when an assertion fails.
    #[allow(dead_code)]
    detail: String,
}

/// Login, refresh and authorize traffic from `workers` clients, each with its own login
/// and refresh service (its own signer) and every request checked by each of two
/// authorizer instances, until `stop`. Every token is authorized again on every round
/// while it is inside its lifetime.
#[allow(clippy::too_many_arguments)]
async fn traffic(
    config: Config,
    clients: Clients,
    authorizers: Arc<Vec<Authorizer>>,
    username: String,
    password: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Outcome>>>,
) {
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    let record = |what, kid: &str, ok, detail: String| {
        log.lock().unwrap().push(Outcome { at: Instant::now(), what, kid: kid.to_owned(), ok, detail });
    };
    let mut tokens = login_tokens(&login, &username, &password).await;
    let mut live: Vec<(String, u64)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        live.push((access.clone(), SystemClock.now() + 6));
        // Tokens inside their lifetime by any clock (1 s margin for the second boundary).
        live.retain(|(_, exp)| *exp > SystemClock.now() + 1);
        for (token, _) in &live {
            for (i, a) in authorizers.iter().enumerate() {
                let ok = allowed(a, token).await;
                record("authorize", &kid_of(token), ok, format!("authorizer {i}"));
            }
        }
        let request = refresh_request(tokens["refresh_token"].as_str().unwrap(), None, false);
        let response = tokenauth::edge::http::token(&refresh, &request).await;
        let ok = response.status() == 200;
        let body = json_of(&response);
        let kid = body["access_token"].as_str().map(kid_of).unwrap_or_default();
        record("refresh", &kid, ok, body.to_string());
        if !ok {
            return;
        }
        tokens = body;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Waits until a refresh from now on issues a token of `kid`.
async fn new_tokens_carry(log: &Mutex<Vec<Outcome>>, kid: &str) {
    let since = Instant::now();
    eventually(Duration::from_secs(5), "new tokens carrying the new kid", async || {
        log.lock().unwrap().iter().any(|o| o.what == "refresh" && o.ok && o.kid == kid && o.at > since)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_rotate_and_are_revoked_under_continuous_traffic_without_failing_a_request() {
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    let first = keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    assert!(matches!(first, KeyStep::Bootstrapped { .. }), "{first}");
    let key1 = key_set(&config, &clients).await.current().unwrap().clone();

    let authorizers: Arc<Vec<Authorizer>> = Arc::new(vec![
        Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock)),
        Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock)),
    ]);
    for a in authorizers.iter() {
        a.warm_up().await;
    }
    let (username, password, _) = create_user(&config, &clients, "keys", &["read"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(traffic(
                config.clone(),
                clients.clone(),
                authorizers.clone(),
                username.clone(),
                password.clone(),
                stop.clone(),
                log.clone(),
            ))
        })
        .collect();

    // Routine rotation: add, promote when the gate opens, retire when its gate opens.
    let KeyStep::Added { kid: kid2 } = keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap() else {
        panic!("a second key is pending")
    };
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    keys.promote(false).await.expect("the gate opened after the publish lead");
    new_tokens_carry(&log, &kid2).await;
    let old_key_token = token_of_key(&config, &clients, &key1.kms_key_id).await;
    for a in authorizers.iter() {
        assert!(allowed(a, &old_key_token).await, "the previous key is still trusted");
    }
    let retire_at = Instant::now() + Duration::from_secs(config.key_timings().retire_after.as_secs());
    tokio::time::sleep_until(retire_at.into()).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let retired = keys.retire(false).await.expect("the gate opened after the last token of the key expired");
    assert!(matches!(&retired, KeyStep::Retired { kid, .. } if *kid == key1.kid), "{retired}");
    for a in authorizers.iter() {
        eventually(Duration::from_secs(3), "every authorizer distrusting the retired key", async || {
            !allowed(a, &old_key_token).await
        })
        .await;
    }

    // Emergency: a third key is published, then the current key is revoked.
    let KeyStep::Added { kid: kid3 } = keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap() else {
        panic!("a third key is pending")
    };
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let key2 = key_set(&config, &clients).await.current().unwrap().clone();
    assert_eq!(key2.kid, kid2);
    let revoked_key_token = token_of_key(&config, &clients, &key2.kms_key_id).await;
    let revoked_at = Instant::now();
    let revoked = keys.revoke(&kid2).await.unwrap();
    assert!(matches!(&revoked, KeyStep::Revoked { promoted: Some(k), .. } if *k == kid3), "{revoked}");
    for a in authorizers.iter() {
        eventually(Duration::from_secs(3), "every authorizer distrusting the revoked key", async || {
            !allowed(a, &revoked_key_token).await
        })
        .await;
    }
    new_tokens_carry(&log, &kid3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let log = log.lock().unwrap().clone();
    let refreshes: Vec<&Outcome> = log.iter().filter(|o| o.what == "refresh").collect();
    let failed: Vec<&&Outcome> = refreshes.iter().filter(|o| !o.ok).collect();
    assert!(failed.is_empty(), "refreshes failed during rotation: {failed:?}");
    // Every refused authorization is of a token of the revoked key, after the revoke: the
    // routine rotation refused nothing.
    let refused: Vec<&Outcome> = log.iter().filter(|o| o.what == "authorize" && !o.ok).collect();
    let unexpected: Vec<&&Outcome> = refused.iter().filter(|o| !(o.kid == kid2 && o.at >= revoked_at)).collect();
    assert!(unexpected.is_empty(), "authorizations refused for tokens inside their lifetime: {unexpected:?}");
    let kids: BTreeSet<&str> = refreshes.iter().map(|o| o.kid.as_str()).collect();
    assert_eq!(kids, BTreeSet::from([key1.kid.as_str(), kid2.as_str(), kid3.as_str()]), "all three keys signed");
    let authorized = log.iter().filter(|o| o.what == "authorize" && o.ok).count();
    assert!(
        authorized > 100 && refreshes.len() > 50,
        "traffic ran: {authorized} allowed, {} refreshes",
        refreshes.len()
    );

    let set = key_set(&config, &clients).await;
    let states: Vec<KeyState> = set.entries.iter().map(|e| e.state).collect();
    assert_eq!(states, [KeyState::Retired, KeyState::Revoked, KeyState::Current]);
}

#[tokio::test]
async fn unsafe_promote_and_retire_are_refused_naming_their_gate() {
    let clients = clients().await;
    let config = short_gates(&clients, &[("KEY_PUBLISH_LEAD_SECS", "3600"), ("ACCESS_TOKEN_TTL_SECS", "900")]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let before = key_set(&config, &clients).await;

    let refused = keys.promote(false).await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, KeyChangeError::Refused(KeyRefusal::Gate { what: "promote", .. })), "{message}");
    assert!(message.contains("published longer than any JWKS cache") && message.contains("until 20"), "{message}");
    assert_eq!(key_set(&config, &clients).await, before, "a refused promote changes nothing");

    keys.promote(true).await.expect("--force opens the gate");
    let refused = keys.retire(false).await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, KeyChangeError::Refused(KeyRefusal::Gate { what: "retire", .. })), "{message}");
    assert!(message.contains("the last token signed with the previous key to expire"), "{message}");
    let set = key_set(&config, &clients).await;
    assert_eq!(set.entries.iter().map(|e| e.state).collect::<Vec<_>>(), [KeyState::Previous, KeyState::Current]);

    let nothing = keys.retire(true).await.map(|_| ()).and(keys.retire(true).await.map(|_| ()));
    assert!(matches!(nothing, Err(KeyChangeError::Refused(KeyRefusal::NoPrevious))), "{nothing:?}");
}

#[tokio::test]
async fn the_key_set_signing_key_cannot_be_added_as_a_token_key() {
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    assert!(!config.key_set_signing_key_id.is_empty(), "the stack names the key-set signing key");
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    let before = key_set(&config, &clients).await;
    let refused = keys.add(KeySource::Adopt(config.key_set_signing_key_id.clone())).await.unwrap_err();
    assert!(matches!(refused, KeyChangeError::Refused(KeyRefusal::TrustRoot)), "{refused}");
    assert_eq!(key_set(&config, &clients).await, before, "the set is as it was");
    assert!(
        !tagged_keys(&clients, &config.key_set_tag)
            .await
            .iter()
            .any(|(id, _)| config.key_set_signing_key_id.ends_with(id.as_str())
                || id.ends_with(config.key_set_signing_key_id.as_str())),
        "the trust root was not tagged for the set's signers"
    );
}

/// The keys a test's KMS tag marks, and whether each is pending deletion.
async fn tagged_keys(clients: &Clients, tag: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let listed = clients.kms.list_keys().limit(1000).send().await.unwrap();
    for key in listed.keys() {
        let id = key.key_id().unwrap();
        let tags = clients.kms.list_resource_tags().key_id(id).send().await.unwrap();
        if tags.tags().iter().any(|t| t.tag_key() == KEY_SET_TAG_KEY && t.tag_value() == tag) {
            let state = clients.kms.describe_key().key_id(id).send().await.unwrap();
            let metadata = state.key_metadata().unwrap();
            let pending = metadata.key_state() == Some(&aws_sdk_kms::types::KeyState::PendingDeletion);
            out.push((metadata.arn().unwrap().to_owned(), pending));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_runs_at_once_leave_one_consistent_set_and_no_stray_key() {
    let clients = clients().await;
    // KMS-held keys, whatever the stack's kind: the stray KMS keys are the point.
    let config = Config { signing_key_kind: KeyKind::Kms, ..short_gates(&clients, &[]).await };
    let timings = config.key_timings();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    // Four runs at once at every point of the schedule: first key, successor due,
    // promotion due, retirement due.
    let mut expected_steps = Vec::new();
    for advance in [
        0,
        timings.max_age.as_secs() - timings.publish_lead.as_secs(),
        timings.publish_lead.as_secs(),
        timings.retire_after.as_secs(),
    ] {
        clock.advance(advance);
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let manager = manager(&config, &clients, clock.clone());
                tokio::spawn(async move { manager.rotate().await.unwrap() })
            })
            .collect();
        let mut done = Vec::new();
        for run in runs {
            if let Some(step) = run.await.unwrap() {
                done.push(step.name());
            }
        }
        assert_eq!(done.len(), 1, "exactly one run performs the due step: {done:?}");
        expected_steps.push(done[0]);
        let set = key_set(&config, &clients).await;
        assert_eq!(set.entries.iter().filter(|e| e.state == KeyState::Current).count(), 1, "{set:?}");
        assert!(set.entries.iter().filter(|e| e.state == KeyState::Pending).count() <= 1, "{set:?}");
    }
    assert_eq!(expected_steps, ["key_bootstrapped", "key_added", "key_promoted", "key_retired"]);
    let set = key_set(&config, &clients).await;
    assert_eq!(set.entries.iter().map(|e| e.state).collect::<Vec<_>>(), [KeyState::Retired, KeyState::Current]);

    // Runs that lost created keys too: each is scheduled for deletion, as is the retired one.
    let in_use = set.current().unwrap().kms_key_id.clone();
    let tagged = tagged_keys(&clients, &config.key_set_tag).await;
    assert!(tagged.len() >= 2, "{tagged:?}");
    for (arn, pending_deletion) in &tagged {
        assert_eq!(*pending_deletion, *arn != in_use, "{arn}: only the current key is kept: {tagged:?}");
    }
}

#[tokio::test]
async fn an_unknown_kid_flood_reloads_the_key_set_at_most_once_per_interval() {
    let clients = clients().await;
    let config = short_gates(&clients, &[("REVOCATION_POLL_SECS", "1")]).await;
    manager(&config, &clients, Arc::new(SystemClock)).add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let a = Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    a.warm_up().await;
    // A well-formed token whose kid no key of the set has (signed by a key of another set).
    let stranger = tokenauth_tests::create_signing_key(&clients.kms, aws_sdk_kms::types::KeySpec::EccNistP256).await;
    let token = token_of_key(&config, &clients, &stranger).await;
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {token}"));
    clients.calls.clear();

    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        for _ in 0..500 {
            let answer = serde_json::to_value(a.handle(&event).await.unwrap()).unwrap();
            assert_eq!(answer["isAuthorized"], false);
            requests += 1;
        }
        // Let the background reloads run, as the next invocations would.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads = clients.calls.names().iter().filter(|c| *c == "DynamoDB.GetItem").count();
    let bound = elapsed.ceil() as usize + 1;
    println!("{requests} requests with an unknown kid over {elapsed:.1} s: {reads} key-set reads (bound {bound})");
    assert!(requests >= 2_000, "a flood: {requests}");
    assert!(reads >= 1, "an unknown kid makes the instance look at the set again");
    assert!(reads <= bound, "at most one read per interval (1 s) per instance: {reads} in {elapsed:.1} s");
    assert!(clients.calls.names().iter().all(|c| c == "DynamoDB.GetItem"), "nothing else: {:?}", clients.calls.names());
}

/// A signer of `config`'s set read through `dynamodb`, re-reading every 10 s and relying on
/// a read for 30 s, on `clock`.
fn signer_reading_through(
    config: &Config,
    clients: &Clients,
    dynamodb: aws_sdk_dynamodb::Client,
    clock: Arc<ManualClock>,
) -> tokenauth::services::keys::KeySetSigner {
    let keys = AuthenticatedKeys::from_config(config, dynamodb, clients.kms.clone());
    tokenauth::services::keys::KeySetSigner::new(
        keys,
        clients.kms.clone(),
        Duration::from_secs(10),
        Duration::from_secs(30),
        clock,
    )
}

#[tokio::test]
async fn a_signer_signs_with_the_key_last_read_only_within_the_staleness_bound() {
    // GIVEN a signer that read the set (one current key) at T0, re-reading every 10 s and
    // relying on a read for 30 s, whose key set then becomes unreadable
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    manager(&config, &clients, clock.clone()).add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let signer = signer_reading_through(&config, &clients, clients.dynamodb.clone(), clock.clone());
    assert!(signer.sign_jws(b"{}").await.is_ok(), "the first read succeeds");
    clients.dynamodb.delete_table().table_name(&config.keys_table).send().await.unwrap();
    // WHEN reads fail, THEN the key last read signs until the bound, and nothing past it,
    // also between two reads (a request that takes no read must not outlive the bound)
    for (advance, signs, when) in [
        (10, true, "a read failed 10 s after the last good one"),
        (5, true, "inside the interval, within the bound"),
        (15, true, "30 s after the last good read: at the bound"),
        (1, false, "past the bound, with no read due"),
        (10, false, "past the bound, the read failed again"),
    ] {
        clock.advance(advance);
        assert_eq!(signer.sign_jws(b"{}").await.is_ok(), signs, "{when}");
    }
}

#[tokio::test]
async fn a_signer_whose_due_re_read_hangs_signs_with_the_key_it_holds_without_waiting_for_it() {
    // GIVEN a signer that read the set through a DynamoDB endpoint that then stops answering
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    manager(&config, &clients, clock.clone()).add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let proxy = TcpProxy::to_dynamodb_local().await;
    let signer = signer_reading_through(&config, &clients, dynamodb_at(&proxy.url).await, clock.clone());
    assert!(signer.sign_jws(b"{}").await.is_ok(), "the first read succeeds");
    proxy.hang();
    // WHEN a re-read falls due and hangs
    clock.advance(10);
    let started = std::time::Instant::now();
    let signed = signer.sign_jws(b"{}").await;
    // THEN the token is signed with the key held, long before the hung read could end (the
    // SDK gives an attempt 2 s; the budget is 25 ms)
    assert!(signed.is_ok(), "{signed:?}");
    assert!(started.elapsed() < tokenauth::platform::aws::ATTEMPT_TIMEOUT, "waited {:?}", started.elapsed());
    // and within the staleness bound every request does so while the read is under way,
    clock.advance(15);
    assert!(signer.sign_jws(b"{}").await.is_ok(), "25 s after the last good read");
    // but past it nothing is signed until a read succeeds
    clock.advance(10);
    assert!(signer.sign_jws(b"{}").await.is_err(), "35 s after the last good read: stale");
    // Once DynamoDB answers again (the read held meanwhile ends with the SDK's timeout; one
    // read at a time), a later read succeeds and signing resumes.
    proxy.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        clock.advance(10);
        if signer.sign_jws(b"{}").await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "signing never resumed after DynamoDB answered again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_warm_instance_idle_through_a_promotion_accepts_the_new_key_once_the_read_its_first_token_started_answers() {
    // GIVEN an authorizer instance that read the set (one current key) and then got no
    // request while a new key was published for the lead and promoted
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let a = Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    a.warm_up().await;
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let pending = keys.list().await.unwrap().pending().unwrap().kms_key_id.clone();
    tokio::time::sleep(config.key_publish_lead + Duration::from_millis(500)).await;
    keys.promote(false).await.expect("the gate is open after the publish lead");
    // WHEN its first request carries a token of the new current key
    let token = token_of_key(&config, &clients, &pending).await;
    // THEN it is allowed (as soon as the key-set read that token started has answered; the
    // request itself waits for it only the budget): publish-before-sign holds for
    // instances that were idle too
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {token}"));
    let answer = serde_json::to_value(handle_after_reads(&a, &event).await.unwrap()).unwrap();
    assert_eq!(answer["isAuthorized"], true, "a genuine token of the promoted key was refused");
}

/// The documents as the jwks function serves them.
async fn get(
    service: &DiscoveryService,
    path: &str,
    if_none_match: Option<&str>,
) -> lambda_http::Response<lambda_http::Body> {
    let mut event = event("refresh-json.json");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!("GET");
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = Value::Null;
    if let Some(tag) = if_none_match {
        event["headers"]["if-none-match"] = json!(tag);
    }
    tokenauth::edge::http::discovery(service, &request_from_event(&event)).await
}

#[tokio::test]
async fn the_jwks_publishes_every_trusted_key_and_each_verifies_our_tokens_independently() {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    let service = DiscoveryService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    keys.add(KeySource::Create(KeyAlgorithm::RS256)).await.unwrap();
    let es256_key = key_set(&config, &clients).await.current().unwrap().clone();
    let es256_token = token_of_key(&config, &clients, &es256_key.kms_key_id).await;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    keys.promote(false).await.unwrap();
    // The RS256 key now signs what login issues.
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "jwks", &["read"]).await;
    let rs256_token = login_tokens(&login, &username, &password).await["access_token"].as_str().unwrap().to_owned();

    let response = get(&service, "/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let document: Value = json_of(&response);
    let published = document["keys"].as_array().unwrap();
    assert_eq!(published.len(), 2, "previous and current: {document}");

    let set = key_set(&config, &clients).await;
    for (token, alg) in [(&es256_token, Algorithm::ES256), (&rs256_token, Algorithm::RS256)] {
        let kid = kid_of(token);
        let jwk_value = published.iter().find(|k| k["kid"] == kid.as_str()).expect("the token's key is published");
        let members: BTreeSet<&str> = jwk_value.as_object().unwrap().keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = match alg {
            Algorithm::ES256 => ["kty", "crv", "x", "y", "kid", "alg", "use"].into(),
            _ => ["kty", "n", "e", "kid", "alg", "use"].into(),
        };
        assert_eq!(members, expected, "public members only: {jwk_value}");
        assert_eq!(jwk_value["use"], "sig");

        // jsonwebtoken, with nothing but the published JWK.
        let jwk: Jwk = serde_json::from_value(jwk_value.clone()).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&[&config.issuer]);
        let claims = decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation);
        assert!(claims.is_ok(), "{alg:?} token verifies from the JWKS: {claims:?}");

        // The published key is the one KMS holds: the same numbers as kms:GetPublicKey's DER.
        let entry = set.entries.iter().find(|e| e.kid == kid).unwrap();
        let der = public_key_der(&clients, &entry.kms_key_id).await;
        let decoded = |member: &str| B64URL.decode(jwk_value[member].as_str().unwrap()).unwrap();
        match alg {
            Algorithm::ES256 => {
                let point = [vec![4], decoded("x"), decoded("y")].concat();
                assert!(der.ends_with(&point), "x and y are KMS's public point");
            }
            _ => {
                let n = decoded("n");
                assert!(der.windows(n.len()).any(|w| w == n), "n is KMS's modulus");
                assert!(der.windows(3).any(|w| w == decoded("e").as_slice()), "e is KMS's exponent");
            }
        }
    }

    // Unchanged: 304 to a client that has it; a retired key leaves the document.
    assert_eq!(get(&service, "/.well-known/jwks.json", Some(&etag)).await.status(), 304);
    keys.retire(true).await.unwrap();
    let after = get(&service, "/.well-known/jwks.json", Some(&etag)).await;
    assert_eq!(after.status(), 200, "the set changed, so does the tag");
    let kids: Vec<Value> = json_of(&after)["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids, [json!(kid_of(&rs256_token))]);
}

#[tokio::test]
async fn the_metadata_names_every_endpoint_under_the_issuer() {
    let clients = clients().await;
    let config = config_with(&[("TOKEN_ISSUER", "https://auth.example.test/tenant-a")]);
    let service = DiscoveryService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    let response = get(&service, "/.well-known/oauth-authorization-server", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["cache-control"].to_str().unwrap().starts_with("public, max-age="));
    let metadata = json_of(&response);
    assert_eq!(metadata["issuer"], "https://auth.example.test/tenant-a", "exactly the tokens' iss");
    for (member, path) in [
        ("jwks_uri", "/.well-known/jwks.json"),
        ("token_endpoint", "/auth/token"),
        ("revocation_endpoint", "/auth/revoke"),
    ] {
        assert_eq!(metadata[member], format!("https://auth.example.test/tenant-a{path}"), "{member}");
    }
    for member in [
        "grant_types_supported",
        "response_types_supported",
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert!(metadata[member].is_array(), "{member}: {metadata}");
    }
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"])
    );
    assert_eq!(metadata["introspection_endpoint"], "https://auth.example.test/tenant-a/auth/introspect");
    // The stack accepts proofs (PROOFS_TABLE is set): RFC 9449 §5.1.
    assert_eq!(metadata["dpop_signing_alg_values_supported"], json!(["ES256"]));

    let mut post = event("refresh-json.json");
    post["rawPath"] = json!("/.well-known/jwks.json");
    let refused = tokenauth::edge::http::discovery(&service, &request_from_event(&post)).await;
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "GET, HEAD");
    assert_eq!(get(&service, "/.well-known/other", None).await.status(), 404);
}

/// What someone who can write the Keys table but not sign with the key set's KMS key does:
/// adds a P-256 key of their own (a made-up KMS key id, pending) to the stored set and bumps
/// its version, keeping the signature that was there. Returns the key, whose tokens they can
/// now sign offline.
async fn plant_key(config: &Config, clients: &Clients) -> tokenauth::rules::keys::testing::LocalSigner {
    use base64::engine::general_purpose::STANDARD as B64;
    let planted = tokenauth::rules::keys::testing::LocalSigner::new();
    let table = tokenauth::store::DynamoKeys::new(clients.dynamodb.clone(), &config.keys_table);
    let stored = table.read().await.unwrap();
    let mut set = stored.set.clone();
    set.entries.push(tokenauth::rules::keys::set::KeyEntry {
        kid: planted.trusted().kid().to_owned(),
        alg: KeyAlgorithm::ES256,
        kind: KeyKind::Kms,
        kms_key_id: "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000beef".to_owned(),
        wrapped_private_key: None,
        public_key: B64.encode(planted.spki()),
        state: KeyState::Pending,
        since: SystemClock.now(),
    });
    set.version += 1;
    let old_signature = stored.signature.expect("the rotation signed the set it wrote");
    assert!(table.replace(&set, &old_signature, stored.set.version).await.unwrap(), "the planted set is written");
    planted
}

/// Valid claims for this deployment with this `jti`, signed by `key`.
fn token_signed_by(config: &Config, key: &tokenauth::rules::keys::testing::LocalSigner, jti: &str) -> String {
    let now = SystemClock.now();
    key.sign_claims(&json!({"iss": config.issuer, "sub": "u-planted", "aud": config.audience, "exp": now + 600,
        "iat": now, "jti": jti, "client_id": "first-party", "scope": "read",
        "sid": tokenauth::rules::token::random_id()}))
}

#[tokio::test]
async fn a_key_written_into_the_table_by_hand_is_trusted_by_no_one() {
    // GIVEN a set made by the rotation (one current key), and warm readers of it: an
    // authorizer, the revoke function's service and the JWKS
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let keys = manager(&config, &clients, clock.clone());
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let genuine = token_of_key(&config, &clients, &keys.list().await.unwrap().current().unwrap().kms_key_id).await;
    let warm = Authorizer::from_config(&config, clients.dynamodb.clone(), clock.clone());
    warm.warm_up().await;
    let revoke = tokenauth::RevocationService::from_config(
        &config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        clock.clone(),
    )
    .await;
    let jwks = DiscoveryService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    assert!(allowed(&warm, &genuine).await);

    // WHEN someone without the key set's signing key adds a key of their own to the table
    let planted = plant_key(&config, &clients).await;
    let jti = tokenauth::rules::token::random_id();
    let forged = token_signed_by(&config, &planted, &jti);
    clock.advance(2); // every reader's next request re-reads the set
    let cold = Authorizer::from_config(&config, clients.dynamodb.clone(), clock.clone());
    cold.warm_up().await;

    // THEN no verifier accepts its tokens: neither the warm authorizer (which keeps the
    // set it verified, genuine tokens included), nor one that starts now
    assert!(!allowed(&warm, &forged).await, "a warm authorizer trusted the planted key");
    assert!(allowed(&warm, &genuine).await, "the last verified set still serves");
    assert!(!allowed(&cold, &forged).await, "a cold authorizer trusted the planted key");
    // revoke-all refuses its bearer, and revoking it writes nothing
    let response = tokenauth::edge::http::revoke(&revoke, &revoke_all_request(Some(&format!("Bearer {forged}")))).await;
    assert_eq!(response.status(), 401, "revoke-all took a bearer of the planted key");
    let body = format!("token={forged}&token_type_hint=access_token");
    assert_eq!(tokenauth::edge::http::revoke(&revoke, &revoke_request(&body, true)).await.status(), 200);
    assert!(revocations_of(&config, &clients, &jti).await.is_empty(), "revoke acted on a forged token");
    // the JWKS does not publish it
    let response = get(&jwks, "/.well-known/jwks.json", None).await;
    let published = String::from_utf8(response.body().to_vec()).unwrap();
    assert!(!published.contains(planted.trusted().kid()), "the JWKS published the planted key: {published}");
    // and the rotation does not vouch for it by signing its next change over it
    let refused = keys.add(KeySource::Create(KeyAlgorithm::ES256)).await;
    assert!(matches!(refused, Err(KeyChangeError::Dependency(_))), "the rotation changed a tampered set: {refused:?}");
    let stored = tokenauth::store::DynamoKeys::new(clients.dynamodb.clone(), &config.keys_table).read().await.unwrap();
    assert_eq!(stored.set.entries.len(), 2, "nothing was added over the planted key");
}

#[tokio::test]
async fn a_reader_fails_closed_once_the_last_verified_set_is_past_its_staleness_bound() {
    // GIVEN a warm authorizer whose set is then tampered with
    let clients = clients().await;
    let config = short_gates(&clients, &[("REVOCATION_MAX_STALENESS_SECS", "3")]).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let keys = manager(&config, &clients, clock.clone());
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let genuine = token_of_key(&config, &clients, &keys.list().await.unwrap().current().unwrap().kms_key_id).await;
    let a = Authorizer::from_config(&config, clients.dynamodb.clone(), clock.clone());
    a.warm_up().await;
    plant_key(&config, &clients).await;
    // WHEN the rejections outlast the staleness bound THEN even genuine tokens are refused
    clock.advance(2);
    assert!(allowed(&a, &genuine).await, "within the bound, the last verified set serves");
    clock.advance(2);
    assert!(!allowed(&a, &genuine).await, "past the bound, a reader with no verified set refuses");
}

#[tokio::test]
async fn an_older_set_with_a_valid_signature_is_refused_once_a_newer_one_was_verified() {
    // GIVEN a set at version 1, whose item (with its valid signature) someone keeps
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let table = tokenauth::store::DynamoKeys::new(clients.dynamodb.clone(), &config.keys_table);
    let old = table.read().await.unwrap();
    // and a reader that verified the set after a later change
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let reader = AuthenticatedKeys::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    let newer = reader.get().await.expect("the rotation's set verifies");
    assert_eq!(newer.version, old.set.version + 1);
    // WHEN the old item is written back
    assert!(table.replace(&old.set, old.signature.as_deref().unwrap(), newer.version).await.unwrap());
    // THEN the reader refuses it, while a reader that never saw the newer one verifies it
    assert!(reader.get().await.is_err(), "a replayed older set was used");
    let fresh = AuthenticatedKeys::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    assert_eq!(fresh.get().await.unwrap(), old.set, "the old set's signature is still genuine");
}

#[tokio::test]
async fn a_set_signed_with_any_other_kms_key_is_refused() {
    // GIVEN a set made by the rotation, and a planted key added to it
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let token_key = keys.list().await.unwrap().current().unwrap().kms_key_id.clone();
    let reader = AuthenticatedKeys::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    reader.get().await.expect("the rotation's set verifies");
    plant_key(&config, &clients).await;
    // WHEN the planted set is signed, as the set's writer signs it, with a KMS key that is
    // not the set's: the token signing key, which login and refresh may sign with
    let table = tokenauth::store::DynamoKeys::new(clients.dynamodb.clone(), &config.keys_table);
    let planted = table.read().await.unwrap();
    let signature = clients
        .kms
        .sign()
        .key_id(&token_key)
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .message_type(aws_sdk_kms::types::MessageType::Raw)
        .message(aws_sdk_kms::primitives::Blob::new(planted.set.authenticated_bytes()))
        .send()
        .await
        .unwrap()
        .signature
        .unwrap();
    assert!(table.replace(&planted.set, signature.as_ref(), planted.set.version).await.unwrap());
    // THEN neither the reader that verified the genuine set nor a new one takes it
    assert!(reader.get().await.is_err(), "a warm reader took a set signed by a token key");
    let fresh = AuthenticatedKeys::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
    assert!(fresh.get().await.is_err(), "a new reader took a set signed by a token key");
}

#[tokio::test]
async fn a_cold_reader_trusts_the_set_with_kms_unreachable() {
    // GIVEN a set made by the rotation
    let clients = clients().await;
    let config = short_gates(&clients, &[]).await;
    let keys = manager(&config, &clients, Arc::new(SystemClock));
    keys.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let written = keys.list().await.unwrap();
    // WHEN a reader that has never verified a set starts while KMS answers nothing (its
    // client reaches a closed port), as a login or refresh instance would hold one
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cold = AuthenticatedKeys::from_config(&config, clients.dynamodb.clone(), kms_at(&closed_url).await);
    // THEN it verifies the set with the pinned public key alone
    assert_eq!(cold.get().await.unwrap(), written, "a cold reader needed KMS to trust the set");
    // and so does the authorizer, which holds no KMS client at all
    let token = token_of_key(&config, &clients, &written.current().unwrap().kms_key_id).await;
    let authorizer = Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    assert_eq!(authorizer.warm_up().await, tokenauth::rules::polled::Freshness::Fresh);
    assert!(allowed(&authorizer, &token).await);
}
