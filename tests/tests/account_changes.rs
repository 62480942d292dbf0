//! Sessions follow the account, against the local stack with truly concurrent calls (tasks
//! on a multi-threaded runtime, each call its own request to DynamoDB Local and the KMS
//! emulator): new scopes reach every session, a disable or a revoke-all leaves no session
//! and no access token behind whatever the interleaving, and a token issued after the
//! change (even in the same second) is valid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::StatusCode;
use serde_json::Value;
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::SystemClock;
use tokenauth::rules::username::Username;
use tokenauth::store::AccountChange;
use tokenauth::{Clock, Config, LoginService, RevocationService, Revoker, TokenService};
use tokenauth_tests::*;

/// The authorizer polls every second in these tests, so "within the lag" is a short wait.
const POLL: &str = "1";

struct Stack {
    config: Config,
    clients: Clients,
    login: Arc<LoginService>,
    refresh: Arc<TokenService>,
    revoke: RevocationService,
    revoker: Revoker,
}

impl Stack {
    async fn new() -> Self {
        let config = config_with(&[("REVOCATION_POLL_SECS", POLL), ("AUTHORIZER_ROUTE_SCOPES", "$default=")]);
        let clients = clients().await;
        let login = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
        let refresh = Arc::new(refresh_service(&config, &clients, Arc::new(SystemClock)).await);
        let revoke = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
        let revoker = Revoker::new(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
        Self { config, clients, login, refresh, revoke, revoker }
    }

    /// A warm authorizer, as a function instance that has been running a while.
    async fn authorizer(&self) -> Authorizer {
        let a = Authorizer::from_config(&self.config, self.clients.dynamodb.clone(), Arc::new(SystemClock));
        a.warm_up().await;
        a
    }

    async fn change(&self, username: &str, change: AccountChange) {
        let name = Username::normalise(username).unwrap();
        self.revoker.change_account(&name, &change, "test", SystemClock.now()).await.unwrap();
    }
}

/// Whether the authorizer allows `access_token`, once any read the request started (a poll
/// that fell due) has answered: the request waits for it only the budget.
async fn allowed(a: &Authorizer, access_token: &str) -> bool {
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {access_token}"));
    serde_json::to_value(handle_after_reads(a, &event).await.unwrap()).unwrap()["isAuthorized"] == true
}

/// One refresh: (status, body).
async fn refresh(service: &TokenService, token: &str, scope: Option<&str>) -> (StatusCode, Value) {
    let response = tokenauth::edge::http::token(service, &refresh_request(token, scope, false)).await;
    let status = response.status();
    (status, if response.body().is_empty() { Value::Null } else { json_of(&response) })
}

/// One login: (status, body).
async fn login(service: &LoginService, username: &str, password: &str) -> (StatusCode, Value) {
    let response = tokenauth::edge::http::login(service, &login_request(username, password, None)).await;
    (response.status(), json_of(&response))
}

fn str_of<'a>(body: &'a Value, member: &str) -> &'a str {
    body[member].as_str().unwrap()
}

/// Waits past the authorizer's poll interval, so what it denies now it denies within the lag.
async fn one_poll() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

#[tokio::test]
async fn new_scopes_reach_every_live_session_and_end_its_access_tokens() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "scopes", &["read", "write"]).await;
    let (_, first) = login(&s.login, &username, &password).await;
    let (_, second) = login(&s.login, &username, &password).await;
    let a = s.authorizer().await;
    assert!(allowed(&a, str_of(&first, "access_token")).await);

    s.change(&username, AccountChange::SetScopes(vec!["read".into()])).await;

    // Explicitly asking for the removed scope: invalid_scope, nothing rotated.
    let (status, body) = refresh(&s.refresh, str_of(&second, "refresh_token"), Some("write")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
    // Every session's next refresh carries only what is left, in the token and the answer.
    for session in [&first, &second] {
        let (status, body) = refresh(&s.refresh, str_of(session, "refresh_token"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "read");
        let claims = independently_verified(&s.config, &s.clients, str_of(&body, "access_token")).await.unwrap();
        assert_eq!(claims.scope, "read");
        // And the session goes on, narrowed for good.
        let (status, again) = refresh(&s.refresh, str_of(&body, "refresh_token"), None).await;
        assert_eq!((status, again["scope"].as_str()), (StatusCode::OK, Some("read")));
        assert!(allowed(&a, str_of(&again, "access_token")).await, "a token issued after the change is valid");
    }
    one_poll().await;
    for session in [&first, &second] {
        assert!(!allowed(&a, str_of(session, "access_token")).await, "the old access token is denied within the lag");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disable_during_fifty_logins_and_refreshes_leaves_no_session_and_no_access_token() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "disable", &["read"]).await;
    let mut sessions = Vec::new();
    for _ in 0..25 {
        sessions.push(login(&s.login, &username, &password).await.1);
    }

    // 25 logins and 25 refreshes in flight, the disable in the middle of them.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (login_service, refresh_service) = (s.login.clone(), s.refresh.clone());
        let (username, password) = (username.clone(), password.clone());
        let refresh_token = str_of(&sessions[i % 25], "refresh_token").to_owned();
        tasks.spawn(async move {
            // Spread over a few hundred milliseconds, so the disable lands among them.
            tokio::time::sleep(Duration::from_millis(6 * i as u64)).await;
            let is_login = i % 2 == 0;
            let (status, body) = if is_login {
                login(&login_service, &username, &password).await
            } else {
                refresh(&refresh_service, &refresh_token, None).await
            };
            (is_login, status, body)
        });
    }
    let mut issued: Vec<Value> = sessions.clone();
    let (mut done, mut succeeded, mut succeeded_before_disable) = (0, 0, 0);
    let mut disabled = false;
    while let Some(outcome) = tasks.join_next().await {
        let (is_login, status, body) = outcome.unwrap();
        if !disabled {
            // Before the disable: every refresh rotates; a login succeeds, or is turned
            // away with 429 when more parallel attempts than the limit are in flight
            // (they are reserved before argon2, and a loaded machine keeps more in flight).
            let throttled_login = is_login && status == StatusCode::TOO_MANY_REQUESTS;
            assert!(status == StatusCode::OK || throttled_login, "before the disable, {status}: {body}");
        }
        // Refused ones: 401, or 429 once the disabled account's failed logins hit the limit.
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS);
        assert!(status == StatusCode::OK || refused, "{status}: {body}");
        if status == StatusCode::OK {
            succeeded += 1;
            succeeded_before_disable += usize::from(!disabled);
            issued.push(body);
        }
        done += 1;
        if done == 10 && !disabled {
            s.change(&username, AccountChange::Disable).await;
            disabled = true;
        }
    }
    println!(
        "{succeeded} of 50 in-flight logins and refreshes succeeded, {succeeded_before_disable} before the disable"
    );
    // Ten completed before the disable and all were asserted above: at least one refresh
    // among them rotated unless every one of the ten was a throttled login.
    assert!(succeeded_before_disable >= 1, "the disable came after some of them succeeded");

    let a = s.authorizer().await;
    for tokens in &issued {
        let (status, _) = refresh(&s.refresh, str_of(tokens, "refresh_token"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no refresh token of the user rotates");
        assert!(!allowed(&a, str_of(tokens, "access_token")).await, "no access token of the user is allowed");
    }
    let after = login(&s.login, &username, &password).await.0;
    assert!(matches!(after, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS), "{after}");
}

/// A signer that, for its first token, waits until the refresh has read the account (its
/// third GetItem, after the client's and the family's: `refresh_calls` records only the
/// refresh's own calls), then makes an account change and lets the refresh's clock run
/// `slow_secs` on (a signature that took that long), and then signs: the change lands after
/// the refresh read the account and before its rotation is written.
struct ChangeWhileSigning {
    inner: Arc<dyn tokenauth::rules::keys::Signer>,
    refresh_calls: CallLog,
    revoker: Revoker,
    username: String,
    change: AccountChange,
    clock: Arc<tokenauth::platform::clock::ManualClock>,
    slow_secs: u64,
    done: std::sync::atomic::AtomicBool,
}

impl ChangeWhileSigning {
    async fn account_read(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reads_done = || {
            let calls = self.refresh_calls.calls();
            calls.iter().filter(|c| c.operation == "GetItem" && c.finished.is_some()).count()
        };
        while reads_done() < 3 {
            assert!(std::time::Instant::now() < deadline, "the refresh never read the account");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl tokenauth::rules::keys::Signer for ChangeWhileSigning {
    fn sign_jws<'a>(&'a self, payload: &'a [u8]) -> tokenauth::rules::keys::JwsFuture<'a> {
        Box::pin(async move {
            if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                self.account_read().await;
                let name = Username::normalise(&self.username).unwrap();
                self.revoker.change_account(&name, &self.change, "test", SystemClock.now()).await.unwrap();
                self.clock.advance(self.slow_secs);
            }
            self.inner.sign_jws(payload).await
        })
    }
}

/// A refresh service (on clients of its own) whose first signature makes `change` to
/// `username`'s account once the refresh has read it.
async fn refresh_racing(s: &Stack, username: &str, change: AccountChange) -> TokenService {
    let clock = Arc::new(tokenauth::platform::clock::ManualClock::new(SystemClock.now()));
    let inner = Arc::new(key_set_signer(&s.config, &s.clients, clock.clone()).await);
    let own = clients().await;
    let signer = Arc::new(ChangeWhileSigning {
        inner,
        refresh_calls: own.calls.clone(),
        revoker: s.revoker.clone(),
        username: username.to_owned(),
        change,
        clock: clock.clone(),
        slow_secs: 5,
        done: false.into(),
    });
    let service =
        tokenauth::RefreshService::new(&s.config, own.dynamodb.clone(), own.kms.clone(), signer, clock.clone());
    service.warm_up().await;
    let endpoint = token_service_over(&s.config, &own, service, clock);
    own.calls.clear();
    endpoint
}

/// The rotation is a write of the family alone (the account is read, not part of the
/// write): a change that commits between the refresh's read of the account and its write
/// does not stop the rotation unless it revoked the family, so what the refresh issued
/// must die with the change. Its access token's `iat` is from before the read, below the
/// change's cut-off however long the signature took; its refresh token meets the change at
/// its next use.
#[tokio::test]
async fn a_change_that_commits_between_a_refreshs_account_read_and_its_write_ends_what_it_issued() {
    let s = Stack::new().await;
    let a = s.authorizer().await;

    // Disabled meanwhile: the disable's clean-up revoked the family before the write, so
    // the rotation is refused on the family itself and nothing is issued.
    let (username, password, _) = create_user(&s.config, &s.clients, "raced-disable", &["read"]).await;
    let (_, session) = login(&s.login, &username, &password).await;
    let racing = refresh_racing(&s, &username, AccountChange::Disable).await;
    let (status, body) = refresh(&racing, str_of(&session, "refresh_token"), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_grant")), "{body}");

    // New scopes meanwhile: the token with the old ones dies, and the session narrows.
    let (username, password, _) = create_user(&s.config, &s.clients, "raced-scopes", &["read", "write"]).await;
    let (_, session) = login(&s.login, &username, &password).await;
    let racing = refresh_racing(&s, &username, AccountChange::SetScopes(vec!["read".into()])).await;
    let (status, issued) = refresh(&racing, str_of(&session, "refresh_token"), None).await;
    assert_eq!((status, issued["scope"].as_str()), (StatusCode::OK, Some("read write")), "{issued}");
    one_poll().await;
    assert!(!allowed(&a, str_of(&issued, "access_token")).await, "the old scopes' token is under the cut-off");
    let (status, narrowed) = refresh(&s.refresh, str_of(&issued, "refresh_token"), None).await;
    assert_eq!((status, narrowed["scope"].as_str()), (StatusCode::OK, Some("read")), "{narrowed}");
    assert!(allowed(&a, str_of(&narrowed, "access_token")).await, "the narrowed session goes on");
}

/// Two changes within one second: a token issued right after the first carries its cut-off
/// as `iat` (that is what makes it valid), so the second change's cut-off must lie past it.
#[tokio::test]
async fn a_second_change_in_the_same_second_ends_the_tokens_issued_after_the_first() {
    let s = Stack::new().await;
    let a = s.authorizer().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "same-second", &["a", "b", "c"]).await;
    let (_, session) = login(&s.login, &username, &password).await;
    let name = Username::normalise(&username).unwrap();
    let now = SystemClock.now();

    s.revoker
        .change_account(&name, &AccountChange::SetScopes(vec!["a".into(), "b".into()]), "test", now)
        .await
        .unwrap();
    let (status, after_first) = refresh(&s.refresh, str_of(&session, "refresh_token"), None).await;
    assert_eq!((status, after_first["scope"].as_str()), (StatusCode::OK, Some("a b")), "{after_first}");
    let (_, login_after_first) = login(&s.login, &username, &password).await;
    assert!(allowed(&a, str_of(&after_first, "access_token")).await, "valid after the first change");

    // The second change, stamped with the same second as the first.
    s.revoker.change_account(&name, &AccountChange::SetScopes(vec!["a".into()]), "test", now).await.unwrap();
    one_poll().await;
    for tokens in [&after_first, &login_after_first] {
        assert!(!allowed(&a, str_of(tokens, "access_token")).await, "issued after the first change, before the second");
    }
    let (status, after_second) = refresh(&s.refresh, str_of(&after_first, "refresh_token"), None).await;
    assert_eq!((status, after_second["scope"].as_str()), (StatusCode::OK, Some("a")), "{after_second}");
    assert!(allowed(&a, str_of(&after_second, "access_token")).await, "a token issued after the second is valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_all_racing_refreshes_leaves_no_earlier_token_and_a_login_right_after_works() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "raceall", &["read"]).await;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(login(&s.login, &username, &password).await.1);
    }

    // Each session refreshes in a chain while revoke-all, through its own endpoint with
    // one session's bearer token, lands in the middle.
    let mut chains = tokio::task::JoinSet::new();
    for session in &sessions {
        let refresh_service = s.refresh.clone();
        let mut token = str_of(session, "refresh_token").to_owned();
        chains.spawn(async move {
            let mut issued = Vec::new();
            for _ in 0..6 {
                let (status, body) = refresh(&refresh_service, &token, None).await;
                if status != StatusCode::OK {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
                    break;
                }
                token = str_of(&body, "refresh_token").to_owned();
                issued.push(body);
            }
            issued
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bearer = format!("Bearer {}", str_of(&sessions[0], "access_token"));
    let mut event = event("revoke-all.json");
    event["headers"]["authorization"] = Value::String(bearer);
    let response = tokenauth::edge::http::revoke(&s.revoke, &request_from_event(&event)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // A login right after it, very likely in the same second: valid.
    let (status, after) = login(&s.login, &username, &password).await;
    assert_eq!(status, StatusCode::OK);

    let mut issued = sessions.clone();
    while let Some(chain) = chains.join_next().await {
        issued.extend(chain.unwrap());
    }
    let a = s.authorizer().await;
    for tokens in &issued {
        assert!(!allowed(&a, str_of(tokens, "access_token")).await, "a token minted before the cut-off survived");
        assert_eq!(refresh(&s.refresh, str_of(tokens, "refresh_token"), None).await.0, StatusCode::UNAUTHORIZED);
    }
    assert!(allowed(&a, str_of(&after, "access_token")).await, "the login after the revoke-all is valid");
    let (status, _) = refresh(&s.refresh, str_of(&after, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::OK, "and its session refreshes");
}

#[tokio::test]
async fn revoke_all_refuses_a_revoked_bearer_and_ends_nothing() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "revbearer", &["read"]).await;
    let revoke_all = |access: &str| {
        let mut e = event("revoke-all.json");
        e["headers"]["authorization"] = Value::String(format!("Bearer {access}"));
        request_from_event(&e)
    };
    let revoke = |body: String| {
        let mut e = event("revoke-access-token-json.json");
        e["body"] = Value::String(body);
        request_from_event(&e)
    };
    let (_, victim) = login(&s.login, &username, &password).await;

    // A token revoked by its jti (RFC 7009), and one whose session was logged out.
    let (_, by_jti) = login(&s.login, &username, &password).await;
    let body = serde_json::json!({"token": str_of(&by_jti, "access_token")}).to_string();
    assert_eq!(tokenauth::edge::http::revoke(&s.revoke, &revoke(body)).await.status(), StatusCode::OK);
    let (_, logged_out) = login(&s.login, &username, &password).await;
    let body = serde_json::json!({"token": str_of(&logged_out, "refresh_token")}).to_string();
    assert_eq!(tokenauth::edge::http::revoke(&s.revoke, &revoke(body)).await.status(), StatusCode::OK);

    for revoked in [&by_jti, &logged_out] {
        let response = tokenauth::edge::http::revoke(&s.revoke, &revoke_all(str_of(revoked, "access_token"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(&response)["error"], "invalid_token");
    }
    let (status, victim) = refresh(&s.refresh, str_of(&victim, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::OK, "the victim's session lives on");

    // After a revoke-all, a token from before it cannot trigger another one.
    let response = tokenauth::edge::http::revoke(&s.revoke, &revoke_all(str_of(&victim, "access_token"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, fresh) = login(&s.login, &username, &password).await;
    let response = tokenauth::edge::http::revoke(&s.revoke, &revoke_all(str_of(&victim, "access_token"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "issued before the cut-off");
    assert_eq!(refresh(&s.refresh, str_of(&fresh, "refresh_token"), None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_revocation_entry_that_lands_after_the_authorizer_polled_past_its_stamp_is_still_denied() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "late", &["read"]).await;
    let (_, tokens) = login(&s.login, &username, &password).await;
    let access = str_of(&tokens, "access_token");
    let a = s.authorizer().await;
    assert!(allowed(&a, access).await, "polls now");

    // A write that was slow: stamped 8 s ago (before that poll), landing only now.
    let sid = family_of(str_of(&tokens, "refresh_token"));
    let now = SystemClock.now();
    let late = tokenauth::store::Revocation {
        kind: tokenauth::store::RevocationKind::Sid,
        subject: sid,
        revoked_at_ms: SystemClock.now_ms() - 8_000,
        not_before: None,
        expires_at: now + 3_600,
        except_sid: None,
    };
    tokenauth::store::DynamoRevocations::new(s.clients.dynamodb.clone(), &s.config.revocations_table)
        .put(&[late])
        .await
        .unwrap();
    one_poll().await;
    assert!(!allowed(&a, access).await, "denied at the next poll, within the stated lag");
}
