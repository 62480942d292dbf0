//! Account self-service against the local stack, through the account routes' edge
//! (`tokenauth::edge::account`) and the real services on DynamoDB Local and the KMS
//! emulator, with truly concurrent calls (tasks on a multi-threaded runtime): a password
//! change ends every other session and keeps the caller's, a wrong current password
//! changes nothing and is throttled, parallel changes leave one new hash, the session list
//! shows the user's live sessions only, and a deleted account leaves nothing that names
//! the person.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::SystemClock;
use tokenauth::rules::username::Username;
use tokenauth::store::{AccountChange, DynamoUsers, UserRecord, UserStatus};
use tokenauth::{AccountService, Clock, Config, LoginService, Revoker, TokenService};
use tokenauth_tests::*;

/// The authorizer polls every second in these tests, so "within the lag" is a short wait.
const POLL: &str = "1";
/// Login's failed-attempt limit in these tests.
const MAX_FAILURES: u32 = 3;

struct Stack {
    config: Config,
    clients: Clients,
    login: Arc<LoginService>,
    refresh: Arc<TokenService>,
    account: Arc<AccountService>,
}

impl Stack {
    async fn new() -> Self {
        let max_failures = MAX_FAILURES.to_string();
        let config = config_with(&[
            ("REVOCATION_POLL_SECS", POLL),
            ("AUTHORIZER_ROUTE_SCOPES", "$default="),
            ("LOGIN_MAX_FAILURES", &max_failures),
        ]);
        let clients = clients().await;
        let login = Arc::new(login_service(&config, &clients, Arc::new(SystemClock)).await);
        let refresh = Arc::new(refresh_service(&config, &clients, Arc::new(SystemClock)).await);
        let account = Arc::new(
            AccountService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone(), Arc::new(SystemClock))
                .await,
        );
        Self { config, clients, login, refresh, account }
    }

    /// A warm authorizer, as a function instance that has been running a while.
    async fn authorizer(&self) -> Authorizer {
        let a = Authorizer::from_config(&self.config, self.clients.dynamodb.clone(), Arc::new(SystemClock));
        a.warm_up().await;
        a
    }

    async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        let response = tokenauth::edge::http::login(&self.login, &login_request(username, password, None)).await;
        (response.status(), json_of(&response))
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        let response = tokenauth::edge::http::token(&self.refresh, &refresh_request(refresh_token, None, false)).await;
        let status = response.status();
        (status, if response.body().is_empty() { Value::Null } else { json_of(&response) })
    }

    async fn user(&self, username: &str) -> Option<UserRecord> {
        DynamoUsers::new(self.clients.dynamodb.clone(), &self.config.users_table)
            .get(&Username::normalise(username).unwrap())
            .await
            .unwrap()
    }
}

/// One account request: (status, body or null, the response's `Retry-After`).
async fn call(
    service: &AccountService,
    method: &str,
    path: &str,
    access_token: &str,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("https://api.example.test{path}"))
        .header("authorization", format!("Bearer {access_token}"));
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request: Request = builder.body(body.map_or(Body::Empty, |b| Body::from(b.to_string()))).unwrap();
    let response = tokenauth::edge::account::account(service, &request).await;
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = if response.body().is_empty() { Value::Null } else { json_of(&response) };
    (response.status(), body, retry_after)
}

async fn change_password(s: &AccountService, access_token: &str, current: &str, new: &str) -> (StatusCode, Value) {
    let body = json!({"current_password": current, "new_password": new});
    let (status, body, _) = call(s, "POST", "/auth/password", access_token, Some(body)).await;
    (status, body)
}

fn str_of<'a>(body: &'a Value, member: &str) -> &'a str {
    body[member].as_str().unwrap_or_else(|| panic!("no {member} in {body}"))
}

/// Whether the authorizer allows `access_token`, once any read the request started has
/// answered.
async fn allowed(a: &Authorizer, access_token: &str) -> bool {
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {access_token}"));
    serde_json::to_value(handle_after_reads(a, &event).await.unwrap()).unwrap()["isAuthorized"] == true
}

/// Waits past the authorizer's poll interval, so what it denies now it denies within the lag.
async fn one_poll() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

/// A passphrase the policy accepts, different each call.
fn new_passphrase() -> String {
    format!("violet harbour {} lantern", tokenauth::rules::token::random_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_ends_every_other_session_and_keeps_the_callers() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "pwchange", &["read"]).await;
    let (_, caller) = s.login(&username, &password).await;
    let (_, other) = s.login(&username, &password).await;
    let (_, third) = s.login(&username, &password).await;
    let a = s.authorizer().await;
    assert!(allowed(&a, str_of(&other, "access_token")).await);

    let new_password = new_passphrase();
    let (status, body) = change_password(&s.account, str_of(&caller, "access_token"), &password, &new_password).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({})));

    // The other sessions: their refresh tokens refused at once, their access tokens within
    // the lag. Both refreshes run at once with the caller's.
    let (caller_refresh, other_refresh, third_refresh) = tokio::join!(
        s.refresh(str_of(&caller, "refresh_token")),
        s.refresh(str_of(&other, "refresh_token")),
        s.refresh(str_of(&third, "refresh_token"))
    );
    assert_eq!(caller_refresh.0, StatusCode::OK, "the caller's session goes on: {}", caller_refresh.1);
    assert_eq!(other_refresh.0, StatusCode::UNAUTHORIZED);
    assert_eq!(third_refresh.0, StatusCode::UNAUTHORIZED);
    one_poll().await;
    assert!(!allowed(&a, str_of(&other, "access_token")).await, "another session's access token is denied");
    assert!(!allowed(&a, str_of(&third, "access_token")).await);
    assert!(allowed(&a, str_of(&caller, "access_token")).await, "the caller's access token keeps working");
    assert!(allowed(&a, str_of(&caller_refresh.1, "access_token")).await);
    // The caller's token still passes the account's own strongly consistent check.
    let (status, listed, _) = call(&s.account, "GET", "/auth/sessions", str_of(&caller, "access_token"), None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "only the caller's session is live: {listed}");

    assert_eq!(s.login(&username, &password).await.0, StatusCode::UNAUTHORIZED, "the old password fails");
    assert_eq!(s.login(&username, &new_password).await.0, StatusCode::OK, "the new one logs in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_current_password_changes_nothing_and_counts_against_the_throttle() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "pwwrong", &["read"]).await;
    let (_, caller) = s.login(&username, &password).await;
    let (_, other) = s.login(&username, &password).await;
    let before = s.user(&username).await.unwrap();
    let token = str_of(&caller, "access_token");

    for _ in 0..MAX_FAILURES {
        let (status, body) = change_password(&s.account, token, "not-the-password", &new_passphrase()).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_grant")), "{body}");
        assert!(!body.to_string().contains("not-the-password"));
    }
    assert_eq!(s.user(&username).await.unwrap(), before, "nothing changed");
    assert_eq!(s.refresh(str_of(&other, "refresh_token")).await.0, StatusCode::OK, "no session ended");
    // The window is full: even the right password is refused now, and so is a login from a
    // device that never logged in (the counter is login's).
    let body = json!({"current_password": password, "new_password": new_passphrase()});
    let (status, _, retry_after) = call(&s.account, "POST", "/auth/password", token, Some(body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some_and(|secs| secs.parse::<u64>().unwrap() >= 1));
    assert_eq!(s.login(&username, &password).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(s.user(&username).await.unwrap().password_hash, before.password_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_password_changes_leave_exactly_one_new_hash() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "pwrace", &["read"]).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(s.login(&username, &password).await.1);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for session in &sessions {
        let (account, token, current) =
            (s.account.clone(), str_of(session, "access_token").to_owned(), password.clone());
        tasks.spawn(async move {
            let new = new_passphrase();
            let (status, body) = change_password(&account, &token, &current, &new).await;
            (status, body, new)
        });
    }
    let mut changed = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        let (status, body, new) = outcome.unwrap();
        match status {
            StatusCode::OK => changed.push(new),
            // Judged against the winner's hash, or its session ended by the winner.
            StatusCode::UNAUTHORIZED => {}
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(changed.len(), 1, "exactly one change commits");
    let stored = s.user(&username).await.unwrap().password_hash;
    assert!(tokenauth::rules::password::verify(&changed[0], &stored), "the stored hash is the winner's");
    assert_eq!(s.login(&username, &changed[0]).await.0, StatusCode::OK);
    assert_eq!(s.login(&username, &password).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn common_passwords_are_refused_with_a_clear_description_and_a_long_passphrase_is_accepted() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "pwpolicy", &["read"]).await;
    let (_, caller) = s.login(&username, &password).await;
    let token = str_of(&caller, "access_token");
    for common in ["password1", "qwertyuiop", username.as_str(), "short"] {
        let (status, body) = change_password(&s.account, token, &password, common).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{common}");
        let description = str_of(&body, "error_description");
        assert!(description.starts_with("new_password"), "{common}: {description}");
        assert!(!description.contains(common), "the description never echoes the password");
    }
    // Refused by the policy before the password was checked: no attempt counted.
    let passphrase = "the quiet river bends past seven orange lanterns at dusk, and nobody";
    let passphrase = &passphrase[..64];
    let (status, body) = change_password(&s.account, token, &password, passphrase).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.login(&username, passphrase).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_session_list_shows_exactly_the_users_live_sessions_and_ends_one_by_id() {
    let s = Stack::new().await;
    let (username, password, _) = create_user(&s.config, &s.clients, "sessions", &["read"]).await;
    let (stranger, stranger_password, _) = create_user(&s.config, &s.clients, "stranger", &["read"]).await;
    let mut mine = Vec::new();
    for _ in 0..2 {
        mine.push(s.login(&username, &password).await.1);
    }
    // One named at login, as the app's "devices" screen shows it.
    let named = json!({"username": username, "password": password, "device_name": "Ana's phone"}).to_string();
    let response = tokenauth::edge::http::login(&s.login, &login_event_with_body(&named)).await;
    assert_eq!(response.status(), StatusCode::OK);
    mine.push(json_of(&response));
    let (_, theirs) = s.login(&stranger, &stranger_password).await;
    // One of the user's sessions ended by a logout: no longer listed.
    let (_, ended) = s.login(&username, &password).await;
    let revoke = revocation_service(&s.config, &s.clients, Arc::new(SystemClock)).await;
    revoke.revoke(tokenauth::RevokeRequest::anonymous(str_of(&ended, "refresh_token")), None).await.unwrap();

    let caller = str_of(&mine[0], "access_token");
    let (status, listed, _) = call(&s.account, "GET", "/auth/sessions", caller, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let sessions = listed["sessions"].as_array().unwrap();
    let mut sids: Vec<&str> = sessions.iter().map(|v| str_of(v, "sid")).collect();
    sids.sort_unstable();
    let mut expected: Vec<String> = mine.iter().map(|t| family_of(str_of(t, "refresh_token"))).collect();
    expected.sort_unstable();
    assert_eq!(sids, expected, "exactly the user's live sessions");
    let caller_sid = family_of(str_of(&mine[0], "refresh_token"));
    for session in sessions {
        assert_eq!(session["current"], str_of(session, "sid") == caller_sid, "{session}");
        assert_eq!(session["client_id"], s.config.client_id.as_str());
        assert!(session["created_at"].as_u64().unwrap() <= session["last_refreshed_at"].as_u64().unwrap());
        // Where it was used from, coarse (the sample event's address and curl).
        assert_eq!(session["network"], "198.51.100.0/24", "{session}");
        assert_eq!(session["user_agent"], "curl", "{session}");
        let named = str_of(session, "sid") == family_of(str_of(&mine[2], "refresh_token"));
        assert_eq!(session["device_name"], if named { json!("Ana's phone") } else { Value::Null }, "{session}");
    }

    // Another user's session: 404, and it goes on.
    let theirs_sid = family_of(str_of(&theirs, "refresh_token"));
    let (status, body, _) = call(&s.account, "DELETE", &format!("/auth/sessions/{theirs_sid}"), caller, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("invalid_request")));
    let (status, theirs_now) = s.refresh(str_of(&theirs, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "another user's session is untouched");
    // Garbage and an ended session: the same 404.
    for sid in ["not-a-sid".to_owned(), family_of(str_of(&ended, "refresh_token"))] {
        let (status, _, _) = call(&s.account, "DELETE", &format!("/auth/sessions/{sid}"), caller, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{sid}");
    }

    // Ending one of the user's: its refresh refused, its access token denied within the lag.
    let a = s.authorizer().await;
    let target = family_of(str_of(&mine[1], "refresh_token"));
    let (status, body, _) = call(&s.account, "DELETE", &format!("/auth/sessions/{target}"), caller, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(s.refresh(str_of(&mine[1], "refresh_token")).await.0, StatusCode::UNAUTHORIZED);
    one_poll().await;
    assert!(!allowed(&a, str_of(&mine[1], "access_token")).await);
    assert!(allowed(&a, str_of(&mine[2], "access_token")).await, "the others are untouched");
    assert!(allowed(&a, str_of(&theirs_now, "access_token")).await);
    let (_, listed, _) = call(&s.account, "GET", "/auth/sessions", caller, None).await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 2);

    // "Sign out everywhere else": only the caller's is left.
    let (status, _, _) = call(&s.account, "DELETE", "/auth/sessions", caller, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.refresh(str_of(&mine[2], "refresh_token")).await.0, StatusCode::UNAUTHORIZED);
    let (status, again) = s.refresh(str_of(&mine[0], "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    one_poll().await;
    assert!(!allowed(&a, str_of(&mine[2], "access_token")).await);
    assert!(allowed(&a, caller).await, "the caller's access token keeps working");
    let (_, listed, _) = call(&s.account, "GET", "/auth/sessions", str_of(&again, "access_token"), None).await;
    let sids: Vec<&str> = listed["sessions"].as_array().unwrap().iter().map(|v| str_of(v, "sid")).collect();
    assert_eq!(sids, [caller_sid.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_the_account_erases_what_names_the_person_and_frees_the_username() {
    let s = Stack::new().await;
    let (username, password, user_id) = create_user(&s.config, &s.clients, "erase", &["read"]).await;
    let (_, caller) = s.login(&username, &password).await;
    let (_, other) = s.login(&username, &password).await;
    let token = str_of(&caller, "access_token");
    let hash = s.user(&username).await.unwrap().password_hash;

    // The wrong password: 401, nothing changes.
    let (status, body, _) = call(&s.account, "DELETE", "/auth/account", token, Some(json!({"password": "nope"}))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_grant")));
    assert_eq!(s.user(&username).await.unwrap().status, UserStatus::Active);
    let (status, other) = s.refresh(str_of(&other, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);

    let a = s.authorizer().await;
    let (status, _, _) = call(&s.account, "DELETE", "/auth/account", token, Some(json!({"password": password}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for session in [&caller, &other] {
        assert_eq!(s.refresh(str_of(session, "refresh_token")).await.0, StatusCode::UNAUTHORIZED);
    }
    one_poll().await;
    for session in [&caller, &other] {
        assert!(!allowed(&a, str_of(session, "access_token")).await, "every access token is denied");
    }
    // A login with the name now fails like any unknown name's, and stores no name either.
    assert_eq!(s.login(&username, &password).await.0, StatusCode::UNAUTHORIZED);
    let name = Username::normalise(&username).unwrap();
    let naming = items_naming(&s.config, &s.clients, &[name.as_str()]).await;
    assert!(naming.is_empty(), "no table holds the username: {naming:#?}");
    let naming = items_naming(&s.config, &s.clients, &[&hash]).await;
    assert!(naming.is_empty(), "no table holds the password hash: {naming:#?}");

    // The username is free: a new account, a new sub, a login at once.
    let new_id = tokenauth::rules::token::random_id();
    let record = UserRecord::new(new_id.clone(), tokenauth::rules::password::hash(&password).unwrap(), vec![], 0);
    DynamoUsers::new(s.clients.dynamodb.clone(), &s.config.users_table).create(&name, &record).await.unwrap();
    let (status, fresh) = s.login(&username, &password).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let claims = independently_verified(&s.config, &s.clients, str_of(&fresh, "access_token")).await.unwrap();
    assert_eq!(claims.sub, new_id);
    assert_ne!(claims.sub, user_id);
    for session in [&caller, &other] {
        assert_eq!(s.refresh(str_of(session, "refresh_token")).await.0, StatusCode::UNAUTHORIZED, "never resumed");
    }
}

#[tokio::test]
async fn an_operator_reset_or_deletion_ends_every_session() {
    let s = Stack::new().await;
    let revoker = Revoker::new(&s.config, s.clients.dynamodb.clone(), Arc::new(SystemClock));
    let (username, password, _) = create_user(&s.config, &s.clients, "opreset", &["read"]).await;
    let (_, session) = s.login(&username, &password).await;
    let name = Username::normalise(&username).unwrap();
    let new_password = new_passphrase();
    let hash = tokenauth::rules::password::hash(&new_password).unwrap();
    revoker.change_account(&name, &AccountChange::SetPassword(hash), "test", SystemClock.now()).await.unwrap();
    assert_eq!(s.refresh(str_of(&session, "refresh_token")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.login(&username, &password).await.0, StatusCode::UNAUTHORIZED);
    let (status, session) = s.login(&username, &new_password).await;
    assert_eq!(status, StatusCode::OK);

    let changed = revoker.change_account(&name, &AccountChange::Delete, "test", SystemClock.now()).await.unwrap();
    assert_eq!(changed.user.status, UserStatus::Deleted);
    assert!(revoker.erase_account(&name, &changed.user.user_id).await.unwrap());
    assert!(s.user(&username).await.is_none());
    assert_eq!(s.refresh(str_of(&session, "refresh_token")).await.0, StatusCode::UNAUTHORIZED);
    assert!(items_naming(&s.config, &s.clients, &[name.as_str()]).await.is_empty());
    // Repeating an erasure that is done is harmless.
    assert!(!revoker.erase_account(&name, &changed.user.user_id).await.unwrap());
}

#[tokio::test]
async fn an_account_deleted_by_hand_and_added_again_is_a_clean_new_account() {
    let s = Stack::new().await;
    let (username, password, user_id) = create_user(&s.config, &s.clients, "byhand", &["read"]).await;
    let (_, session) = s.login(&username, &password).await;
    let name = Username::normalise(&username).unwrap();
    // As an operator would: the profile item deleted in the console, the username added again.
    s.clients
        .dynamodb
        .delete_item()
        .table_name(&s.config.users_table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(name.as_str().into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("profile".into()))
        .send()
        .await
        .unwrap();
    let new_id = tokenauth::rules::token::random_id();
    let record = UserRecord::new(new_id.clone(), tokenauth::rules::password::hash(&password).unwrap(), vec![], 0);
    DynamoUsers::new(s.clients.dynamodb.clone(), &s.config.users_table).create(&name, &record).await.unwrap();

    let (status, body) = s.refresh(str_of(&session, "refresh_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old session is not resumed: {body}");
    let (status, fresh) = s.login(&username, &password).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let claims = independently_verified(&s.config, &s.clients, str_of(&fresh, "access_token")).await.unwrap();
    assert_eq!(claims.sub, new_id);
    assert_ne!(claims.sub, user_id);
    assert_eq!(s.refresh(str_of(&fresh, "refresh_token")).await.0, StatusCode::OK);
}
