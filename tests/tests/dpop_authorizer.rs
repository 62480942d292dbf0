//! The authorizer with DPoP-bound tokens against DynamoDB Local: two instances built as the
//! function builds them (two processes' worth of state) sharing the Proofs table, proofs
//! made by a client key ([`ProofKey`]), tokens issued with `cnf.jkt` by the stack's key set.
//! Every refused proof leaves nothing behind that would block the client's next good one;
//! the verified-token cache never outlives a revocation or a key leaving the set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokenauth::edge::authorizer::{Authorizer, Unauthorized};
use tokenauth::platform::clock::{Clock, SystemClock};
use tokenauth::rules::dpop::{access_token_hash, ProofKey, ProofRejection};
use tokenauth::rules::keys::set::KeyStep;
use tokenauth::rules::keys::{KeyAlgorithm, Signer};
use tokenauth::rules::token::{AccessGrant, RefreshToken};
use tokenauth::services::keys::manager::KeySource;
use tokenauth::services::keys::{KeyManager, KmsSigner};
use tokenauth::store::{DynamoProofs, ProofUse};
use tokenauth::Config;
use tokenauth_tests::*;

const HOST: &str = "abc123.execute-api.us-east-1.amazonaws.com";
const URL: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/api/items";
const ROUTE_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/api/items";

async fn instance(config: &Config, clients: &Clients) -> Authorizer {
    let a = Authorizer::from_config(config, clients.dynamodb.clone(), Arc::new(SystemClock));
    a.warm_up().await;
    a
}

fn dpop_config(extra: &[(&str, &str)]) -> Config {
    let mut settings = vec![("AUTHORIZER_ROUTE_SCOPES", "$default=")];
    settings.extend_from_slice(extra);
    let config = config_with(&settings);
    assert!(!config.dpop.proofs_table.is_empty(), "the stack has a Proofs table");
    config
}

/// A token of the stack's key set for a session `sid`, bound to `bound_to` if given.
async fn bound_token(config: &Config, clients: &Clients, sid: &str, bound_to: Option<&str>) -> String {
    let signer = key_set_signer(config, clients, Arc::new(SystemClock)).await;
    let issuer = tokenauth::services::issuer_for(Arc::new(signer), config);
    let grant = AccessGrant { subject: "u-dpop", client_id: "first-party", scope: "read", session_id: sid, bound_to };
    issuer.issue(&grant, &RefreshToken::new_family(), SystemClock.now()).await.unwrap().access_token
}

/// An HTTP API 2.0 event for GET /api/items with these headers, as API Gateway sends it.
fn event(headers: Value) -> String {
    json!({"version": "2.0", "type": "REQUEST", "routeArn": ROUTE_ARN, "identitySource": [],
        "routeKey": "GET /api/items", "rawPath": "/api/items", "rawQueryString": "", "headers": headers,
        "requestContext": {"http": {"method": "GET", "path": "/api/items"}}})
    .to_string()
}

fn dpop_event(token: &str, proof: &str) -> String {
    event(json!({"authorization": format!("DPoP {token}"), "dpop": proof, "host": HOST, "x-forwarded-proto": "https"}))
}

/// Whether the instance allowed it; the refusal's class if not.
async fn outcome(a: &Authorizer, event: &str) -> Result<(), &'static str> {
    let answer = a.handle(event).await.map(|answer| serde_json::to_value(answer).unwrap());
    match answer {
        Ok(answer) if answer["isAuthorized"] == true => Ok(()),
        Ok(answer) => Err(if answer.get("context").is_some() { "insufficient_scope" } else { "unauthorized" }),
        Err(why) => Err(why.class()),
    }
}

/// The class of the last refusal an instance counted, through its audit classes: the
/// instance answers HTTP API events with a deny, so the class is asked of a REST REQUEST
/// event built from the same headers (which answers with the `Unauthorized` error).
async fn refusal(a: &Authorizer, headers: Value) -> Option<Unauthorized> {
    let event = json!({"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/api/items",
        "path": "/api/items", "httpMethod": "GET", "headers": headers});
    a.handle(&event.to_string()).await.err()
}

fn dpop_headers(token: &str, proof: &str) -> Value {
    json!({"authorization": format!("DPoP {token}"), "dpop": proof, "host": HOST, "x-forwarded-proto": "https"})
}

#[tokio::test]
async fn a_dpop_request_is_allowed_once_and_its_proof_replayed_on_either_instance_is_refused() {
    let (config, clients) = (dpop_config(&[]), clients().await);
    let (one, two) = (instance(&config, &clients).await, instance(&config, &clients).await);
    let client = ProofKey::generate().unwrap();
    let token = bound_token(&config, &clients, "s-replay", Some(&client.thumbprint())).await;

    let proof = client.proof("GET", URL, SystemClock.now(), Some(&token)).unwrap();
    clients.calls.clear();
    assert_eq!(outcome(&one, &dpop_event(&token, &proof)).await, Ok(()));
    let calls = clients.calls.names();
    assert_eq!(calls, ["DynamoDB.PutItem"], "one conditional write per DPoP request, nothing else");
    // The same proof again, on the same instance and on the other one.
    assert_eq!(refusal(&one, dpop_headers(&token, &proof)).await, Some(Unauthorized::Proof(ProofRejection::Replayed)));
    assert_eq!(refusal(&two, dpop_headers(&token, &proof)).await, Some(Unauthorized::Proof(ProofRejection::Replayed)));
    // A new proof from the same key: allowed on either.
    for a in [&one, &two] {
        let fresh = client.proof("GET", URL, SystemClock.now(), Some(&token)).unwrap();
        assert_eq!(outcome(a, &dpop_event(&token, &fresh)).await, Ok(()));
    }
}

#[tokio::test]
async fn the_same_proof_sent_to_two_instances_at_once_is_allowed_by_exactly_one() {
    let (config, clients) = (dpop_config(&[]), clients().await);
    let (one, two) = (instance(&config, &clients).await, instance(&config, &clients).await);
    let client = ProofKey::generate().unwrap();
    let token = bound_token(&config, &clients, "s-race", Some(&client.thumbprint())).await;
    for _ in 0..5 {
        let event = dpop_event(&token, &client.proof("GET", URL, SystemClock.now(), Some(&token)).unwrap());
        let (a, b) = tokio::join!(outcome(&one, &event), outcome(&two, &event));
        assert_eq!([a, b].iter().filter(|o| o.is_ok()).count(), 1, "{a:?} {b:?}");
    }
}

#[tokio::test]
async fn proofs_for_another_request_key_token_or_time_and_forged_proofs_are_refused_and_block_nothing() {
    let (config, clients) = (dpop_config(&[]), clients().await);
    let a = instance(&config, &clients).await;
    let (client, thief) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let token = bound_token(&config, &clients, "s-bad-proofs", Some(&client.thumbprint())).await;
    let other_token = bound_token(&config, &clients, "s-other", Some(&client.thumbprint())).await;
    let now = SystemClock.now();
    // Every bad proof below uses the jti of the good proof sent last.
    let jti = "the-one-jti";
    let claims = |htm: &str, htu: &str, iat: u64, ath_of: &str| json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat, "ath": access_token_hash(ath_of)});
    let good_claims = claims("GET", URL, now, &token);
    let with_alg = |alg: &str| {
        let mut header = client.header();
        header["alg"] = json!(alg);
        header
    };
    let mut private_jwk = client.header();
    private_jwk["jwk"]["d"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let hs256 = {
        let input = format!("{}.{}", b64(&with_alg("HS256")), b64(&good_claims));
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret"),
            input.as_bytes(),
        );
        use base64::Engine as _;
        format!("{input}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let cases: Vec<(&str, String, ProofRejection)> = vec![
        (
            "another method",
            client.sign(&client.header(), &claims("POST", URL, now, &token)).unwrap(),
            ProofRejection::WrongMethod,
        ),
        (
            "another URL",
            client
                .sign(
                    &client.header(),
                    &claims("GET", "https://abc123.execute-api.us-east-1.amazonaws.com/api/other", now, &token),
                )
                .unwrap(),
            ProofRejection::WrongUrl,
        ),
        (
            "older than the window",
            client.sign(&client.header(), &claims("GET", URL, now - 61, &token)).unwrap(),
            ProofRejection::Stale,
        ),
        ("another key", thief.sign(&thief.header(), &good_claims).unwrap(), ProofRejection::WrongKey),
        (
            "ath of another token",
            client.sign(&client.header(), &claims("GET", URL, now, &other_token)).unwrap(),
            ProofRejection::WrongTokenHash,
        ),
        ("a private key in its jwk", client.sign(&private_jwk, &good_claims).unwrap(), ProofRejection::BadKey),
        ("alg none", format!("{}.{}.", b64(&with_alg("none")), b64(&good_claims)), ProofRejection::Malformed),
        (
            "alg none, signed",
            client.sign(&with_alg("none"), &good_claims).unwrap(),
            ProofRejection::UnsupportedAlgorithm,
        ),
        ("HS256", hs256, ProofRejection::UnsupportedAlgorithm),
    ];
    clients.calls.clear();
    for (case, proof, why) in &cases {
        assert_eq!(refusal(&a, dpop_headers(&token, proof)).await, Some(Unauthorized::Proof(*why)), "{case}");
        assert_eq!(outcome(&a, &dpop_event(&token, proof)).await, Err("unauthorized"), "{case}: HTTP API deny");
    }
    assert!(clients.calls.calls().is_empty(), "a refused proof writes nothing: {:?}", clients.calls.names());
    // The client's good proof with that very jti goes through.
    let good = client.sign(&client.header(), &good_claims).unwrap();
    assert_eq!(outcome(&a, &dpop_event(&token, &good)).await, Ok(()));
}

#[tokio::test]
async fn a_bound_token_as_bearer_or_without_a_proof_is_refused() {
    let (config, clients) = (dpop_config(&[]), clients().await);
    let a = instance(&config, &clients).await;
    let client = ProofKey::generate().unwrap();
    let token = bound_token(&config, &clients, "s-bearer", Some(&client.thumbprint())).await;
    let proof = client.proof("GET", URL, SystemClock.now(), Some(&token)).unwrap();
    let as_bearer = json!({"authorization": format!("Bearer {token}"), "dpop": proof, "host": HOST});
    assert_eq!(refusal(&a, as_bearer).await, Some(Unauthorized::BoundTokenAsBearer));
    let no_proof = json!({"authorization": format!("DPoP {token}"), "host": HOST});
    assert_eq!(refusal(&a, no_proof).await, Some(Unauthorized::Proof(ProofRejection::Missing)));
    // A REST TOKEN event carries the token only.
    let token_event = event_text_with("authorizer-rest-token.json", &format!("DPoP {token}"));
    assert_eq!(a.handle(&token_event).await.unwrap_err(), Unauthorized::Proof(ProofRejection::Missing));
    // The proof was never used: still good.
    assert_eq!(outcome(&a, &dpop_event(&token, &proof)).await, Ok(()));
}

#[tokio::test]
async fn the_conditional_write_of_a_proof_is_measured_against_dynamodb_local() {
    let (config, clients) = (dpop_config(&[]), clients().await);
    let proofs = DynamoProofs::new(clients.dynamodb.clone(), &config.dpop.proofs_table);
    let now = SystemClock.now();
    let mut took = Vec::new();
    for i in 0..200 {
        let key = format!("latency#{}-{i}", tokenauth::rules::token::random_id());
        let started = Instant::now();
        assert_eq!(proofs.record(&key, now + 65, now).await.unwrap(), ProofUse::First);
        took.push(started.elapsed());
        assert_eq!(proofs.record(&key, now + 65, now).await.unwrap(), ProofUse::Replayed);
    }
    took.sort();
    let (p50, p99) = (took[took.len() / 2], took[took.len() * 99 / 100]);
    println!("Proofs PutItem against DynamoDB Local: p50 {p50:?}, p99 {p99:?}");
    assert!(p50 < Duration::from_millis(25), "a write fits the request's budget here: {p50:?}");
}

#[tokio::test]
async fn a_revoked_session_s_cached_token_is_refused_at_the_next_poll() {
    let (config, clients) = (dpop_config(&[("REVOCATION_POLL_SECS", "1")]), clients().await);
    let a = instance(&config, &clients).await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "dpopcache", &["read"]).await;
    let refresh_token = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let family = family_of(&refresh_token);
    let client = ProofKey::generate().unwrap();
    let token = bound_token(&config, &clients, &family, Some(&client.thumbprint())).await;
    let proof = || client.proof("GET", URL, SystemClock.now(), Some(&token)).unwrap();
    assert_eq!(outcome(&a, &dpop_event(&token, &proof())).await, Ok(()), "verified and cached");
    assert_eq!(outcome(&a, &dpop_event(&token, &proof())).await, Ok(()), "from the cache");

    let revoker = tokenauth::Revoker::new(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    // The session revoked as a revoke request does: the family ended, its sid denylisted.
    let presented = RefreshToken::parse(&refresh_token).unwrap();
    assert!(revoker.revoke_presented(&presented, "test", SystemClock.now()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match refusal(&a, dpop_headers(&token, &proof())).await {
            Some(Unauthorized::Revoked) => break,
            None => assert!(Instant::now() < deadline, "the revocation reached the instance within its poll"),
            Some(other) => panic!("refused for another reason: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_key_revoked_from_the_set_stops_its_cached_tokens() {
    let clients = clients().await;
    let table = format!("keys-{}", unique_username("dpop"));
    create_keys_table(&clients, &table).await;
    let tag = unique_username("set");
    let config = dpop_config(&[
        ("KEYS_TABLE", &table),
        ("KEY_SET_TAG", &tag),
        ("KEY_SET_RELOAD_SECS", "1"),
        ("REVOCATION_POLL_SECS", "1"),
        ("JWKS_MAX_AGE_SECS", "1"),
        ("KEY_PUBLISH_LEAD_SECS", "3"),
    ]);
    let manager =
        KeyManager::from_config(&config, clients.dynamodb.clone(), clients.kms.clone(), Arc::new(SystemClock));
    manager.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let KeyStep::Added { kid } = manager.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap() else {
        panic!("a pending key")
    };
    let pending = key_set(&config, &clients).await.entries.iter().find(|e| e.kid == kid).unwrap().kms_key_id.clone();
    let a = instance(&config, &clients).await;
    // A token of the pending key (trusted already), bound, verified once and cached.
    let client = ProofKey::generate().unwrap();
    let now = SystemClock.now();
    let claims = json!({"iss": config.issuer, "sub": "u-keys", "aud": config.audience, "exp": now + 600, "iat": now,
        "jti": tokenauth::rules::token::random_id(), "client_id": "first-party", "scope": "read", "sid": "s-keys",
        "cnf": {"jkt": client.thumbprint()}});
    let signer = KmsSigner::load(clients.kms.clone(), &pending).await.unwrap();
    let token = signer.sign_jws(claims.to_string().as_bytes()).await.unwrap();
    let proof = || client.proof("GET", URL, SystemClock.now(), Some(&token)).unwrap();
    assert_eq!(outcome(&a, &dpop_event(&token, &proof())).await, Ok(()));
    assert_eq!(outcome(&a, &dpop_event(&token, &proof())).await, Ok(()), "from the cache");

    manager.revoke(&kid).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match refusal(&a, dpop_headers(&token, &proof())).await {
            Some(Unauthorized::Invalid(_)) => break,
            None => assert!(Instant::now() < deadline, "the key set's re-read reached the instance"),
            Some(other) => panic!("refused for another reason: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
