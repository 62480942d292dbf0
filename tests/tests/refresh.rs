//! Refresh-token rotation against the local stack: rotation, exactly-once retry, reuse
//! detection, forgery, concurrency, lifetimes, scope, dependency failures (bad input: the
//! refresh handler's unit tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::StatusCode;
use serde_json::Value;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::platform::config::ReuseScope;
use tokenauth::rules::token::RefreshToken;
use tokenauth::store::{FamilyStatus, RevocationKind};
use tokenauth::{Config, LoginService, TokenService};
use tokenauth_tests::*;

struct Setup {
    config: Config,
    clients: Clients,
    clock: Arc<ManualClock>,
    login: LoginService,
    refresh: TokenService,
    username: String,
    password: String,
    user_id: String,
}

async fn setup(prefix: &str, adjust: impl FnOnce(&mut Config)) -> Setup {
    let mut config = config();
    adjust(&mut config);
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let login = login_service(&config, &clients, clock.clone()).await;
    let refresh = refresh_service(&config, &clients, clock.clone()).await;
    let (username, password, user_id) = create_user(&config, &clients, prefix, &["read", "write"]).await;
    Setup { config, clients, clock, login, refresh, username, password, user_id }
}

impl Setup {
    async fn login(&self) -> String {
        login_tokens(&self.login, &self.username, &self.password).await["refresh_token"].as_str().unwrap().to_owned()
    }

    async fn refresh(&self, token: &str) -> lambda_http::Response<lambda_http::Body> {
        tokenauth::edge::http::token(&self.refresh, &refresh_request(token, None, false)).await
    }

    async fn rotate(&self, token: &str) -> String {
        let response = self.refresh(token).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
        json_of(&response)["refresh_token"].as_str().unwrap().to_owned()
    }

    async fn family(&self, token: &str) -> tokenauth::store::FamilyRecord {
        family(&self.config, &self.clients, &family_of(token)).await
    }
}

#[tokio::test]
async fn rotation_returns_a_new_pair_and_kills_the_presented_token_after_the_leeway() {
    let s = setup("rotate", |_| {}).await;
    let r0 = s.login().await;

    let response = s.refresh(&r0).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(&response);
    let r1 = body["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r0);
    assert_eq!(family_of(r1), family_of(&r0), "same session");
    assert_eq!(body["scope"], "read write");
    let claims = independently_verified(&s.config, &s.clients, body["access_token"].as_str().unwrap())
        .await
        .expect("valid access token");
    assert_eq!(claims.sid.as_deref(), Some(family_of(&r0).as_str()));
    assert_eq!(claims.sub, s.user_id);

    let f = s.family(r1).await;
    assert_eq!(f.generation, 1);
    assert_eq!(f.token_hash, RefreshToken::parse(r1).unwrap().hash());

    s.clock.advance(31);
    assert_eq!(s.refresh(&r0).await.status(), StatusCode::UNAUTHORIZED, "the old token is dead after the leeway");
}

#[tokio::test]
async fn a_retry_within_the_leeway_gets_the_identical_successor_and_no_branch() {
    let s = setup("retry", |_| {}).await;
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    s.clients.calls.clear();

    s.clock.advance(29);
    let retry = s.refresh(&r0).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let retry = json_of(&retry);
    assert_eq!(retry["refresh_token"], r1.as_str(), "the same successor, not a new branch");
    let calls = s.clients.calls.names();
    println!("AWS calls for an exactly-once retry: {} {:?}", calls.len(), calls);
    // At once: the per-source limit, the client (the token endpoint authenticates it beside
    // the family's read) and the family; then the account it must still follow (no
    // rotation to condition on), the signature, then the answer counted (bounded retries):
    // a signature KMS refuses spends no answer.
    let mut first = calls[..3].to_vec();
    first.sort();
    assert_eq!(first, ["DynamoDB.GetItem", "DynamoDB.GetItem", "DynamoDB.UpdateItem"], "{calls:?}");
    assert_eq!(calls[3..], ["DynamoDB.GetItem", "KMS.Sign", "DynamoDB.UpdateItem"], "{calls:?}");

    let f = s.family(&r1).await;
    assert_eq!((f.generation, f.status, f.retries), (1, FamilyStatus::Active, 1), "no rotation, one answer counted");
    let r2 = s.rotate(&r1).await;
    assert_eq!(s.family(&r2).await.generation, 2);
}

#[tokio::test]
async fn one_successful_refresh_is_the_limit_the_client_and_the_family_at_once_then_the_account_and_the_signature_at_once_then_one_write(
) {
    let s = setup("calls", |_| {}).await;
    let r0 = s.login().await;
    s.clients.calls.clear();
    s.rotate(&r0).await;
    let calls = s.clients.calls.calls();
    let names = s.clients.calls.names();
    println!("AWS calls for one successful refresh: {} {:?}", calls.len(), names);
    assert_eq!(names.len(), 6, "{names:?}");
    // First, at once: the per-source limit (an UpdateItem of the Limits table), the client
    // (strongly consistent: a disabled client is refused before anything is judged) and the
    // family's read (it names the account to check); one round trip for the three.
    let mut first = names[..3].to_vec();
    first.sort();
    assert_eq!(first, ["DynamoDB.GetItem", "DynamoDB.GetItem", "DynamoDB.UpdateItem"], "{names:?}");
    let overlap = |a: &tokenauth_tests::Call, b: &tokenauth_tests::Call| {
        a.started < b.finished.unwrap() && b.started < a.finished.unwrap()
    };
    assert!(
        overlap(&calls[0], &calls[1]) && overlap(&calls[1], &calls[2]) && overlap(&calls[0], &calls[2]),
        "the limit, the client's and the family's reads were in flight at the same time"
    );
    let first_done = calls[..3].iter().map(|c| c.finished.unwrap()).max().unwrap();
    // Then the owner's account (read after the token's `iat` was taken) and the signature
    // at once, and last one write of the family alone (no transaction).
    let mut second = names[3..5].to_vec();
    second.sort();
    assert_eq!(second, ["DynamoDB.GetItem", "KMS.Sign"], "{names:?}");
    assert_eq!(names[5], "DynamoDB.UpdateItem", "{names:?}");
    let find = |operation: &str| calls[3..5].iter().find(|c| c.operation == operation).unwrap();
    let (account, sign, write) = (find("GetItem"), find("Sign"), &calls[5]);
    assert!(first_done <= account.started.min(sign.started), "nothing is read or signed before the limit admits");
    assert!(overlap(account, sign), "the account's read beside the signature: no round trip of its own");
    assert!(
        account.finished.unwrap().max(sign.finished.unwrap()) <= write.started,
        "the account read and the signature before the write: a signature KMS refuses must leave nothing written"
    );
}

#[tokio::test]
async fn an_older_than_previous_token_is_reuse_and_revokes_every_family_of_the_user() {
    let s = setup("reuse", |_| {}).await;
    let other_session = s.login().await;
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    let r2 = s.rotate(&r1).await;

    let reuse = s.refresh(&r0).await; // within the leeway, but not the immediately previous token
    assert_eq!(reuse.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&reuse)["error"], "invalid_grant");

    let f = s.family(&r2).await;
    assert_eq!(f.status, FamilyStatus::Revoked);
    assert_eq!(f.revoked_reason.as_deref(), Some("reuse_detected"));
    assert_eq!(s.family(&other_session).await.status, FamilyStatus::Revoked, "by default every family of the user");
    assert_eq!(s.refresh(&r2).await.status(), StatusCode::UNAUTHORIZED, "the thief's current token is dead too");
    assert_eq!(s.refresh(&other_session).await.status(), StatusCode::UNAUTHORIZED);

    let sid = revocations_of(&s.config, &s.clients, &family_of(&r0)).await;
    assert_eq!(sid.len(), 1);
    assert_eq!(sid[0].kind, RevocationKind::Sid);
    assert_eq!(sid[0].expires_at, s.clock.now() + 900 + 60, "lives until the last access token it covers expires");
    let user = revocations_of(&s.config, &s.clients, &s.user_id).await;
    assert_eq!(user.len(), 1);
    assert_eq!(user[0].kind, RevocationKind::User);
    assert!(user[0].not_before.unwrap() > s.clock.now());
}

#[tokio::test]
async fn with_reuse_revoking_the_family_only_other_sessions_survive() {
    let s = setup("reusefam", |c| c.reuse_revokes = ReuseScope::Family).await;
    let other_session = s.login().await;
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    s.clock.advance(31);

    assert_eq!(s.refresh(&r0).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.family(&r1).await.status, FamilyStatus::Revoked);
    assert_eq!(s.family(&other_session).await.status, FamilyStatus::Active);
    assert_eq!(revocations_of(&s.config, &s.clients, &family_of(&r0)).await.len(), 1);
    assert!(revocations_of(&s.config, &s.clients, &s.user_id).await.is_empty(), "no user-wide entry");
    s.rotate(&other_session).await;
}

#[tokio::test]
async fn a_forged_token_with_a_real_family_id_changes_nothing() {
    let s = setup("forged", |_| {}).await;
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    let before = s.family(&r1).await;

    for generation in [0, 1, 2, 7] {
        let forged = RefreshToken::from_parts(&family_of(&r1), generation, [0x5a; 32]).unwrap().encode();
        let response = s.refresh(&forged).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(&response)["error"], "invalid_grant");
    }
    assert_eq!(s.family(&r1).await, before, "not a single attribute changed");
    assert!(revocations_of(&s.config, &s.clients, &family_of(&r1)).await.is_empty());
    s.rotate(&r1).await;
}

async fn concurrent_refreshes(s: &Arc<Setup>, token: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (s, token) = (s.clone(), token.to_owned());
        tasks.spawn(async move {
            let response = s.refresh(&token).await;
            (response.status(), json_of(&response))
        });
    }
    let mut out = Vec::new();
    while let Some(result) = tasks.join_next().await {
        out.push(result.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_with_leeway_rotate_once_and_the_bounded_answers_get_the_same_successor() {
    let s = Arc::new(setup("concurrent", |_| {}).await);
    let r0 = s.login().await;
    let started = std::time::Instant::now();
    let results = concurrent_refreshes(&s, &r0, 50).await;
    let elapsed = started.elapsed();

    let ok: Vec<&Value> = results.iter().filter(|(st, _)| *st == StatusCode::OK).map(|(_, b)| b).collect();
    let successors: std::collections::BTreeSet<&str> =
        ok.iter().map(|b| b["refresh_token"].as_str().unwrap()).collect();
    println!(
        "50 concurrent refreshes, leeway on: {} answered 200, {} distinct successor(s), in {elapsed:?}",
        ok.len(),
        successors.len()
    );
    // One rotation, then the bounded retry answers; the rest are refused, not reuse.
    let answers = 1 + tokenauth::rules::rotation::MAX_RETRY_ANSWERS as usize;
    assert_eq!(ok.len(), answers, "the rotation and its retry answers get the successor");
    let refused =
        results.iter().filter(|(st, b)| *st == StatusCode::UNAUTHORIZED && b["error"] == "invalid_grant").count();
    assert_eq!(refused, 50 - answers, "every other caller: invalid_grant");
    assert_eq!(successors.len(), 1, "exactly one successor");
    let f = s.family(&r0).await;
    assert_eq!(f.generation, 1, "exactly one rotation");
    assert_eq!(f.status, FamilyStatus::Active);
    assert_eq!(
        f.token_hash,
        RefreshToken::parse(successors.first().unwrap()).unwrap().hash(),
        "the live token is that one successor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_without_leeway_rotate_once_and_end_the_family() {
    let s = Arc::new(setup("concurrent0", |c| c.refresh_leeway = Duration::ZERO).await);
    let r0 = s.login().await;
    let results = concurrent_refreshes(&s, &r0, 50).await;

    let ok: Vec<&Value> = results.iter().filter(|(st, _)| *st == StatusCode::OK).map(|(_, b)| b).collect();
    let refused =
        results.iter().filter(|(st, b)| *st == StatusCode::UNAUTHORIZED && b["error"] == "invalid_grant").count();
    println!("50 concurrent refreshes, leeway 0: {} answered 200, {refused} answered 401", ok.len());
    assert_eq!(ok.len(), 1, "exactly one rotation wins");
    assert_eq!(refused, 49);
    // Documented outcome: without a leeway, a second use of a rotated token cannot be told
    // from theft, so the family ends; no successor stays live.
    let f = s.family(&r0).await;
    assert_eq!(f.generation, 1);
    assert_eq!(f.status, FamilyStatus::Revoked);
    assert_eq!(s.refresh(ok[0]["refresh_token"].as_str().unwrap()).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn inactivity_and_absolute_expiry_end_the_family_and_rotation_never_extends_it() {
    let s = setup("expiry", |c| {
        c.refresh_token_ttl = Duration::from_secs(100);
        c.refresh_idle_ttl = Duration::from_secs(50);
    })
    .await;
    // Inactivity: 49 s apart works (sliding), 51 s does not.
    let idle = s.login().await;
    s.clock.advance(49);
    let idle = s.rotate(&idle).await;
    s.clock.advance(49);
    let idle = s.rotate(&idle).await;
    s.clock.advance(51);
    assert_eq!(s.refresh(&idle).await.status(), StatusCode::UNAUTHORIZED, "idle for 51 s");
    assert_eq!(s.family(&idle).await.status, FamilyStatus::Active, "expiry refuses, it does not revoke");

    // Absolute: refreshing every 40 s keeps it from idling, but not past 100 s.
    let mut token = s.login().await;
    let expires_at = s.family(&token).await.expires_at;
    for _ in 0..2 {
        s.clock.advance(40);
        token = s.rotate(&token).await;
        assert_eq!(s.family(&token).await.expires_at, expires_at, "rotation never extends the absolute expiry");
    }
    s.clock.advance(21); // 101 s after login
    assert_eq!(s.refresh(&token).await.status(), StatusCode::UNAUTHORIZED, "past the absolute lifetime");
}

#[tokio::test]
async fn scope_may_be_narrowed_never_widened() {
    let s = setup("scope", |_| {}).await;
    let r0 = s.login().await;
    for form in [false, true] {
        let wide = tokenauth::edge::http::token(&s.refresh, &refresh_request(&r0, Some("read admin"), form)).await;
        assert_eq!(wide.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json_of(&wide)["error"], "invalid_scope");
    }
    assert_eq!(s.family(&r0).await.generation, 0, "a refused widening rotates nothing");

    let narrow = tokenauth::edge::http::token(&s.refresh, &refresh_request(&r0, Some("read"), true)).await;
    assert_eq!(narrow.status(), StatusCode::OK);
    let narrow = json_of(&narrow);
    assert_eq!(narrow["scope"], "read");
    let claims = independently_verified(&s.config, &s.clients, narrow["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.unwrap().scope, "read");
    // RFC 6749 §6: an omitted scope is the originally granted one, not the last narrowed one.
    let r2 = s.refresh(narrow["refresh_token"].as_str().unwrap()).await;
    assert_eq!(json_of(&r2)["scope"], "read write");
}

#[tokio::test]
async fn dynamodb_unreachable_answers_503_and_the_token_still_works_afterwards() {
    let s = setup("ddbdown", |_| {}).await;
    let r0 = s.login().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let signer = current_kms_signer(&s.config, &s.clients).await;
    let down = token_service_over(
        &s.config,
        &s.clients,
        tokenauth::RefreshService::new(
            &s.config,
            dynamodb_at(&url).await,
            s.clients.kms.clone(),
            Arc::new(signer),
            s.clock.clone(),
        ),
        s.clock.clone(),
    );

    let response = tokenauth::edge::http::token(&down, &refresh_request(&r0, None, false)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(json_of(&response).get("refresh_token").is_none());
    assert_eq!(s.family(&r0).await.generation, 0, "nothing was written");
    s.rotate(&r0).await;
}

#[tokio::test]
async fn kms_failing_answers_503_writes_nothing_and_the_same_token_rotates_afterwards() {
    for leeway in [30u64, 0] {
        let s = setup("kmsdown", |c| c.refresh_leeway = Duration::from_secs(leeway)).await;
        let r0 = s.login().await;
        let before = s.family(&r0).await;
        // A signer whose KMS is unreachable: the signature fails, before anything is written.
        let emulator = KmsEmulator::start();
        let signer = emulator.signer().await;
        drop(emulator);
        let broken = token_service_over(
            &s.config,
            &s.clients,
            tokenauth::RefreshService::new(
                &s.config,
                s.clients.dynamodb.clone(),
                s.clients.kms.clone(),
                Arc::new(signer),
                s.clock.clone(),
            ),
            s.clock.clone(),
        );

        let response = tokenauth::edge::http::token(&broken, &refresh_request(&r0, None, false)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(json_of(&response).get("refresh_token").is_none());
        assert_eq!(s.family(&r0).await, before, "nothing was written");

        // The client still holds r0, the last token it received: long after, with or
        // without a leeway, it rotates as if nothing had happened.
        s.clock.advance(leeway * 4 + 60);
        let r1 = s.rotate(&r0).await;
        assert_eq!(s.family(&r1).await.generation, 1);
        assert_eq!(s.family(&r1).await.status, FamilyStatus::Active);
    }
}

#[tokio::test]
async fn a_sealed_successor_opens_only_with_the_previous_token_and_the_kms_held_secret() {
    use tokenauth::rules::rotation::{open_successor, SealingSecret};
    use tokenauth::services::keys::sealing::SealingSecrets;
    use tokenauth::store::DynamoKeys;

    let s = setup("sealed", |_| {}).await;
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    let sealed = s.family(&r1).await.sealed_successor.expect("a successor is sealed for the retry window");
    let previous = RefreshToken::parse(&r0).unwrap();

    // What a reader of the tables has: the family item, the previous token (leaked, say) and
    // the Keys table's item, which holds the secret only as KMS ciphertext.
    let keys = DynamoKeys::new(s.clients.dynamodb.clone(), &s.config.keys_table);
    let ciphertext = keys.sealing_ciphertext().await.unwrap().expect("the stack made a sealing secret");
    assert_ne!(ciphertext.len(), 32, "stored encrypted (a KMS ciphertext blob), not as the 32 key bytes");
    let guessed = <[u8; 32]>::try_from(&ciphertext[..32]).unwrap();
    for secret in [SealingSecret::from_bytes(guessed), SealingSecret::from_bytes([0; 32])] {
        assert_eq!(open_successor(&secret, &previous, &sealed), None, "the table's contents alone do not open it");
    }

    // With kms:Decrypt of the secret as well, the previous token opens exactly r1.
    let secrets = SealingSecrets::new(keys, s.clients.kms.clone());
    let opened = open_successor(secrets.get().await.unwrap(), &previous, &sealed).expect("opens");
    assert_eq!(opened.encode(), r1);
}

#[tokio::test]
async fn a_username_deleted_and_created_again_does_not_resume_the_old_sessions() {
    use tokenauth::rules::username::Username;
    use tokenauth::store::{DynamoUsers, UserRecord};
    // GIVEN a session of a user whose account is then deleted and a new account created
    // under the same username (a new user_id; version, epoch and password as they were)
    let s = setup("recreated", |_| {}).await;
    let token = s.rotate(&s.login().await).await;
    let username = Username::normalise(&s.username).unwrap();
    s.clients
        .dynamodb
        .delete_item()
        .table_name(&s.config.users_table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(username.as_str().to_owned()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("profile".to_owned()))
        .send()
        .await
        .unwrap();
    let new_id = tokenauth::rules::token::random_id();
    let hash = tokenauth::rules::password::hash(&s.password).unwrap();
    let record = UserRecord::new(new_id.clone(), hash, vec!["read".into(), "write".into()], 0);
    DynamoUsers::new(s.clients.dynamodb.clone(), &s.config.users_table).create(&username, &record).await.unwrap();
    assert_ne!(new_id, s.user_id);

    // WHEN the old session's refresh token is presented
    let response = s.refresh(&token).await;

    // THEN it is refused like a dead session, with no token
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&response)["error"], "invalid_grant");
    assert!(json_of(&response).get("access_token").is_none());
    assert_eq!(s.family(&token).await.status, FamilyStatus::Revoked, "the old family is ended");
    // while a login of the new account works
    let fresh = s.login().await;
    assert_eq!(s.refresh(&fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn retries_inside_the_leeway_get_a_bounded_number_of_answers_then_invalid_grant_without_revocation() {
    use tokenauth::rules::rotation::MAX_RETRY_ANSWERS;
    // GIVEN a rotation whose response the client lost
    let s = setup("retrybound", |_| {}).await;
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    // WHEN it retries with the previous token inside the leeway, again and again
    for i in 0..MAX_RETRY_ANSWERS {
        let retry = s.refresh(&r0).await;
        assert_eq!(retry.status(), StatusCode::OK, "retry {i}");
        assert_eq!(json_of(&retry)["refresh_token"], r1.as_str());
    }
    s.clients.calls.clear();
    let refused = s.refresh(&r0).await;
    // THEN the answer after the last is invalid_grant, with no signature and no revocation
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&refused)["error"], "invalid_grant");
    assert!(!s.clients.calls.names().iter().any(|c| c == "KMS.Sign"), "{:?}", s.clients.calls.names());
    let f = s.family(&r1).await;
    assert_eq!((f.status, f.generation, f.retries), (FamilyStatus::Active, 1, MAX_RETRY_ANSWERS), "not reuse");
    assert!(revocations_of(&s.config, &s.clients, &family_of(&r1)).await.is_empty(), "no sid entry");
    // and the successor rotates as usual, its own generation with answers of its own
    let r2 = s.rotate(&r1).await;
    assert_eq!(s.family(&r2).await.retries, 0, "a new generation starts with none");
    assert_eq!(s.refresh(&r1).await.status(), StatusCode::OK, "a retry of the new rotation is answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_inside_the_leeway_get_at_most_the_bounded_answers() {
    use tokenauth::rules::rotation::MAX_RETRY_ANSWERS;
    let s = Arc::new(setup("retryrace", |_| {}).await);
    let r0 = s.login().await;
    let r1 = s.rotate(&r0).await;
    let n = MAX_RETRY_ANSWERS as usize + 1;
    let results = concurrent_refreshes(&s, &r0, n).await;
    let ok: Vec<&Value> = results.iter().filter(|(st, _)| *st == StatusCode::OK).map(|(_, b)| b).collect();
    println!("{n} concurrent retries: {} answered 200", ok.len());
    assert_eq!(ok.len(), MAX_RETRY_ANSWERS as usize, "at most the bound, and the bound when all are in time");
    assert!(ok.iter().all(|b| b["refresh_token"] == r1.as_str()), "each the same successor");
    let refused =
        results.iter().filter(|(st, b)| *st == StatusCode::UNAUTHORIZED && b["error"] == "invalid_grant").count();
    assert_eq!(refused, 1);
    let f = s.family(&r1).await;
    assert_eq!((f.status, f.retries), (FamilyStatus::Active, MAX_RETRY_ANSWERS));
}
