//! Account self-service end to end through the local gateway (`with-stack.sh --gateway`):
//! HTTP on loopback only, the gateway invoking the real account function behind the real
//! authorizer (four instances of each, so the concurrent requests here run concurrently),
//! and the real `authctl` for the operator's side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use tokenauth::rules::username::Username;
use tokenauth::store::schema::{USERS_PARTITION_KEY, USERS_SORT_KEY};
use tokenauth::store::DynamoUsers;
use tokenauth_tests::gateway::{
    gateway_client, gateway_function_config, last_allowed_start, stated_revocation_lag, Answer, ApiClient,
};
use tokenauth_tests::runtime::function_binary;
use tokenauth_tests::{clients, create_user, family_of, items_naming, Clients};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// A password the policy accepts (zxcvbn 4: random words and digits), unique per call.
fn strong_password() -> String {
    format!("violet anchor {} drifts slowly", tokenauth::rules::token::random_id())
}

/// One session of the gateway: its tokens as login (or the last refresh) gave them.
#[derive(Clone, Debug)]
struct Session {
    access_token: String,
    refresh_token: String,
}

impl Session {
    fn of(answer: &Answer) -> Self {
        assert_eq!(answer.status, 200, "{}", answer.text);
        Self {
            access_token: answer.str("access_token").to_owned(),
            refresh_token: answer.str("refresh_token").to_owned(),
        }
    }

    fn sid(&self) -> String {
        family_of(&self.refresh_token)
    }
}

/// `count` sessions of one user, logged in concurrently.
async fn sessions_of(gateway: &ApiClient, username: &str, password: &str, count: usize) -> Vec<Session> {
    let mut logins = JoinSet::new();
    for _ in 0..count {
        let (gateway, username, password) = (gateway.clone(), username.to_owned(), password.to_owned());
        logins.spawn(async move { gateway.login(&username, &password).await.unwrap() });
    }
    logins.join_all().await.iter().map(Session::of).collect()
}

/// Refreshes every session's refresh token at once; the answers in the sessions' order.
async fn refresh_all(gateway: &ApiClient, sessions: &[Session]) -> Vec<Answer> {
    let mut refreshes = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let (gateway, token) = (gateway.clone(), session.refresh_token.clone());
        refreshes.spawn(async move { (i, gateway.refresh(&token).await.unwrap()) });
    }
    let mut answers = refreshes.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, a)| a).collect()
}

fn assert_refused_grant(answer: &Answer, what: &str) {
    assert_eq!((answer.status, answer.json["error"].as_str()), (401, Some("invalid_grant")), "{what}: {}", answer.text);
}

/// Every access token is refused at whoami within the stated lag (one poll of slack: an
/// authorizer instance may have polled just before the change), all watched at once.
async fn assert_access_refused_within_lag(gateway: &ApiClient, access_tokens: Vec<String>, what: &str) {
    let lag = stated_revocation_lag();
    let mut watches = JoinSet::new();
    for token in access_tokens {
        let gateway = gateway.clone();
        watches.spawn(async move { last_allowed_start(&gateway, &token, lag * 3).await });
    }
    for (allowed_until, refused) in watches.join_all().await {
        println!("{what}: an access token was last allowed {allowed_until:?} after (stated lag {lag:?})");
        assert_eq!(refused.status, 403, "{what}: {}", refused.text);
        assert!(allowed_until <= lag + Duration::from_secs(1), "{what}: allowed {allowed_until:?} after, lag {lag:?}");
    }
}

/// Right after a change answered, at once: every session's refresh token is refused, and
/// every access token is watched from now until refused, within the stated lag.
async fn assert_sessions_ended(gateway: &ApiClient, sessions: &[Session], what: &str) {
    let tokens = sessions.iter().map(|s| s.access_token.clone()).collect();
    let refreshes = async {
        for (answer, session) in refresh_all(gateway, sessions).await.iter().zip(sessions) {
            assert_refused_grant(answer, &format!("{what}: session {}'s refresh", session.sid()));
        }
    };
    tokio::join!(assert_access_refused_within_lag(gateway, tokens, what), refreshes);
}

/// `access_token` keeps being allowed at whoami for twice the stated lag and a poll.
async fn assert_access_kept(gateway: &ApiClient, access_token: &str, what: &str) {
    let until = Instant::now() + stated_revocation_lag() * 2 + Duration::from_secs(1);
    while Instant::now() < until {
        let answer = gateway.whoami(access_token).await.unwrap();
        assert_eq!(answer.status, 200, "{what}: {}", answer.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the real authctl with the stack's variables (this process's), `stdin` as its
/// standard input; its stdout on success.
async fn authctl(args: &[&str], stdin: &str) -> String {
    let mut child = tokio::process::Command::new(function_binary("authctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authctl runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "authctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The user id `authctl user add` printed ("created user NAME (user id ID)").
fn created_user_id(stdout: &str) -> String {
    let after = stdout.split("(user id ").nth(1).unwrap_or_else(|| panic!("no user id in {stdout:?}"));
    after.split(')').next().unwrap().to_owned()
}

/// The `sub` whoami's authorizer context names for `access_token`.
async fn sub_of(gateway: &ApiClient, access_token: &str) -> String {
    let me = gateway.whoami(access_token).await.unwrap();
    assert_eq!(me.status, 200, "{}", me.text);
    me.json["authorizer"]["sub"].as_str().unwrap().to_owned()
}

async fn password_hash_of(clients: &Clients, username: &str) -> String {
    let users = DynamoUsers::new(clients.dynamodb.clone(), &gateway_function_config().users_table);
    users.get(&Username::normalise(username).unwrap()).await.unwrap().expect("the user exists").password_hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_ends_every_other_session_and_the_calling_one_continues() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-pw", &["read"]).await;
    let sessions = sessions_of(&gateway, &username, &password, 4).await;
    let (caller, others) = (&sessions[0], &sessions[1..]);
    let new_password = strong_password();

    // A wrong current password: 401 invalid_grant, and nothing changes.
    let wrong = gateway.change_password(&caller.access_token, "not-the-password-9", &new_password).await.unwrap();
    assert_refused_grant(&wrong, "a wrong current password");
    let still = gateway.login(&username, &password).await.unwrap();
    assert_eq!(still.status, 200, "the old password still logs in: {}", still.text);
    let others: Vec<Session> = others.iter().cloned().chain([Session::of(&still)]).collect();
    let sids: BTreeSet<String> = sessions.iter().chain(&others).map(Session::sid).collect();
    assert_eq!(sids.len(), 5, "five sessions");

    let changed = gateway.change_password(&caller.access_token, &password, &new_password).await.unwrap();
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json, serde_json::json!({}));

    // At once: every other session ends (refresh refused now, access tokens within the
    // lag), while the caller's access token keeps working and its next refresh works.
    let caller_continues = async {
        let refreshed = Session::of(&gateway.refresh(&caller.refresh_token).await.unwrap());
        assert_eq!(refreshed.sid(), caller.sid(), "the caller's session continues");
        assert_access_kept(&gateway, &refreshed.access_token, "the caller's refreshed access token").await;
        refreshed
    };
    let (_, _, refreshed) = tokio::join!(
        assert_sessions_ended(&gateway, &others, "after a password change"),
        assert_access_kept(&gateway, &caller.access_token, "the caller's access token"),
        caller_continues,
    );
    let again = Session::of(&gateway.refresh(&refreshed.refresh_token).await.unwrap());
    assert_eq!(again.sid(), caller.sid());

    assert_refused_grant(&gateway.login(&username, &password).await.unwrap(), "the old password");
    let new_login = gateway.login(&username, &new_password).await.unwrap();
    assert_eq!(new_login.status, 200, "the new password logs in: {}", new_login.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_current_passwords_count_against_the_login_throttle_until_429() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let max = config.login_max_failures as usize;
    let (username, password, _) = create_user(&config, &clients, "acct-throttle", &["read"]).await;
    let caller = &sessions_of(&gateway, &username, &password, 1).await[0];
    let hash_before = password_hash_of(&clients, &username).await;

    // Two more than the limit, all at once: exactly `max` are judged (401), the rest 429.
    let mut attempts = JoinSet::new();
    for i in 0..max + 2 {
        let (gateway, token, new) = (gateway.clone(), caller.access_token.clone(), strong_password());
        attempts
            .spawn(async move { gateway.change_password(&token, &format!("guess-{i}-wrong"), &new).await.unwrap() });
    }
    let answers = attempts.join_all().await;
    let judged = answers.iter().filter(|a| a.status == 401).count();
    let throttled: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!((judged, throttled.len()), (max, 2), "{:?}", answers.iter().map(|a| &a.text).collect::<Vec<_>>());
    for answer in answers.iter().filter(|a| a.status == 401) {
        assert_eq!(answer.json["error"], "invalid_grant", "{}", answer.text);
    }
    for answer in throttled {
        let retry_after: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after > 0 && retry_after <= config.login_failure_window.as_secs(), "{retry_after}");
    }
    // The counter is login's: even the right current password now waits, and login too.
    let right = gateway.change_password(&caller.access_token, &password, &strong_password()).await.unwrap();
    assert_eq!(right.status, 429, "{}", right.text);
    let login = gateway.login(&username, &password).await.unwrap();
    assert_eq!(login.status, 429, "{}", login.text);
    assert_eq!(password_hash_of(&clients, &username).await, hash_before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_password_changes_leave_exactly_one_new_password() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-race", &["read"]).await;
    let sessions = sessions_of(&gateway, &username, &password, 4).await;
    let new_passwords: Vec<String> = sessions.iter().map(|_| strong_password()).collect();
    let mut changes = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let (gateway, token, current, new) =
            (gateway.clone(), session.access_token.clone(), password.clone(), new_passwords[i].clone());
        changes.spawn(async move { (i, gateway.change_password(&token, &current, &new).await.unwrap()) });
    }
    let answers = changes.join_all().await;
    let winners: Vec<usize> = answers.iter().filter(|(_, a)| a.status == 200).map(|(i, _)| *i).collect();
    let texts: Vec<(u16, &str)> = answers.iter().map(|(_, a)| (a.status, a.text.as_str())).collect();
    assert_eq!(winners.len(), 1, "exactly one change commits: {texts:?}");
    for (_, answer) in answers.iter().filter(|(_, a)| a.status != 200) {
        assert_eq!(answer.status, 401, "a losing change is refused as unauthorised: {texts:?}");
    }
    let winner = winners[0];
    let losers = sessions.iter().enumerate().filter(|(i, _)| *i != winner).map(|(_, s)| s.access_token.clone());
    assert_access_refused_within_lag(&gateway, losers.collect(), "the losing sessions").await;
    // The winner's password logs in first (a success clears the failed-login counter the
    // losers' attempts reserved), then every other password is refused.
    let login = gateway.login(&username, &new_passwords[winner]).await.unwrap();
    assert_eq!(login.status, 200, "the winning password logs in: {}", login.text);
    for (i, candidate) in new_passwords.iter().enumerate().filter(|(i, _)| *i != winner) {
        assert_refused_grant(&gateway.login(&username, candidate).await.unwrap(), &format!("change {i}'s password"));
    }
    assert_refused_grant(&gateway.login(&username, &password).await.unwrap(), "the old password");
    // The winner's session continues; every other one ended.
    let refreshes = refresh_all(&gateway, &sessions).await;
    for (i, answer) in refreshes.iter().enumerate() {
        if i == winner {
            assert_eq!(answer.status, 200, "{}", answer.text);
        } else {
            assert_refused_grant(answer, &format!("session {i}"));
        }
    }
}

/// The winner of concurrent password changes keeps its session at the authorizer too: a
/// losing change's User cut-off entry (written before its commit was refused, sparing only
/// the loser's own session) must not deny the winner's access tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_losing_concurrent_password_change_does_not_end_the_winners_access_tokens() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-race-kept", &["read"]).await;
    let sessions = sessions_of(&gateway, &username, &password, 2).await;
    let mut changes = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let (gateway, token, current, new) =
            (gateway.clone(), session.access_token.clone(), password.clone(), strong_password());
        changes.spawn(async move { (i, gateway.change_password(&token, &current, &new).await.unwrap()) });
    }
    let answers = changes.join_all().await;
    let winners: Vec<usize> = answers.iter().filter(|(_, a)| a.status == 200).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "{:?}", answers.iter().map(|(_, a)| &a.text).collect::<Vec<_>>());
    let winner = &sessions[winners[0]];
    assert_access_kept(&gateway, &winner.access_token, "the winning caller's access token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn common_passwords_are_refused_with_a_clear_description_and_a_long_passphrase_is_accepted() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-policy", &["read"]).await;
    let caller = &sessions_of(&gateway, &username, &password, 1).await[0];
    for common in ["password1", "qwertyuiop", username.as_str(), "short"] {
        let refused = gateway.change_password(&caller.access_token, &password, common).await.unwrap();
        assert_eq!((refused.status, refused.str("error")), (400, "invalid_request"), "{common}: {}", refused.text);
        let description = refused.str("error_description");
        assert!(description.starts_with("new_password "), "names the field: {common}: {description}");
        let why = if common == "short" { "at least 8 characters" } else { "too common or easy to guess" };
        assert!(description.contains(why), "says why: {common}: {description}");
        assert!(!description.contains(common), "the description does not echo the password: {description}");
    }
    assert_eq!(gateway.login(&username, &password).await.unwrap().status, 200, "nothing changed");
    let passphrase = "the quiet harbor keeps seven lanterns burning through winter fog";
    assert_eq!(passphrase.chars().count(), 64);
    let accepted = gateway.change_password(&caller.access_token, &password, passphrase).await.unwrap();
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(gateway.login(&username, passphrase).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_listed_ended_one_at_a_time_and_signed_out_everywhere_else() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-sessions", &["read"]).await;
    let (other_user, other_password, _) = create_user(&config, &clients, "acct-stranger", &["read"]).await;
    let (mine, theirs) = tokio::join!(
        sessions_of(&gateway, &username, &password, 3),
        sessions_of(&gateway, &other_user, &other_password, 1)
    );
    let (caller, stranger) = (&mine[0], &theirs[0]);
    let listed = |answer: &Answer| -> Vec<(String, bool)> {
        assert_eq!(answer.status, 200, "{}", answer.text);
        let mut sids: Vec<(String, bool)> = answer.json["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["sid"].as_str().unwrap().to_owned(), s["current"].as_bool().unwrap()))
            .collect();
        sids.sort();
        sids
    };
    let expected = |sessions: &[&Session]| {
        let mut sids: Vec<(String, bool)> = sessions.iter().map(|s| (s.sid(), s.sid() == caller.sid())).collect();
        sids.sort();
        sids
    };

    let list = gateway.sessions(&caller.access_token).await.unwrap();
    assert_eq!(listed(&list), expected(&[&mine[0], &mine[1], &mine[2]]), "{}", list.text);
    assert!(!list.text.contains(&stranger.sid()), "another user's session never appears");
    let first = &list.json["sessions"][0];
    for field in ["client_id", "created_at", "last_refreshed_at"] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }

    // End one: its refresh is refused, its access token within the lag; the others live.
    let ended = gateway.end_session(&caller.access_token, &mine[1].sid()).await.unwrap();
    assert_eq!(ended.status, 204, "{}", ended.text);
    let (_, survivor) = tokio::join!(assert_sessions_ended(&gateway, &mine[1..2], "one session ended"), async {
        Session::of(&gateway.refresh(&mine[2].refresh_token).await.unwrap())
    });
    assert_eq!(gateway.whoami(&survivor.access_token).await.unwrap().status, 200);

    // Another user's session: 404, and it still refreshes.
    let foreign = gateway.end_session(&caller.access_token, &stranger.sid()).await.unwrap();
    assert_eq!((foreign.status, foreign.json["error"].as_str()), (404, Some("invalid_request")), "{}", foreign.text);
    let unknown = gateway.end_session(&caller.access_token, "no-such-session").await.unwrap();
    assert_eq!((unknown.status, unknown.text.as_str()), (404, foreign.text.as_str()), "same answer as a stranger's");
    assert_eq!(gateway.refresh(&stranger.refresh_token).await.unwrap().status, 200, "the stranger's session lives");

    let list = gateway.sessions(&caller.access_token).await.unwrap();
    assert_eq!(listed(&list), expected(&[caller, &survivor]), "{}", list.text);

    // Sign out everywhere else: the survivor ends, the caller continues.
    let elsewhere = gateway.end_other_sessions(&caller.access_token).await.unwrap();
    assert_eq!(elsewhere.status, 204, "{}", elsewhere.text);
    tokio::join!(
        assert_sessions_ended(&gateway, std::slice::from_ref(&survivor), "signed out elsewhere"),
        assert_access_kept(&gateway, &caller.access_token, "the caller after sign-out elsewhere"),
    );
    let caller_refreshed = Session::of(&gateway.refresh(&caller.refresh_token).await.unwrap());
    let list = gateway.sessions(&caller_refreshed.access_token).await.unwrap();
    assert_eq!(listed(&list), vec![(caller.sid(), true)], "{}", list.text);
}

/// Deleting the account through the gateway, then scanning the stack for the person.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_the_account_erases_the_person_and_the_username_starts_afresh() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, user_id) = create_user(&config, &clients, "acct-delete", &["read"]).await;
    let sessions = sessions_of(&gateway, &username, &password, 3).await;
    let caller = &sessions[0];
    let old_hash = password_hash_of(&clients, &username).await;

    let wrong = gateway.delete_account(&caller.access_token, "not-the-password-9").await.unwrap();
    assert_refused_grant(&wrong, "a wrong password");
    assert_eq!(password_hash_of(&clients, &username).await, old_hash, "nothing changed");
    let sessions: Vec<Session> = refresh_all(&gateway, &sessions).await.iter().map(Session::of).collect::<Vec<_>>();
    let caller = &sessions[0];

    let deleted = gateway.delete_account(&caller.access_token, &password).await.unwrap();
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""), "{}", deleted.text);
    assert_sessions_ended(&gateway, &sessions, "after the account's deletion").await;
    let naming = items_naming(&config, &clients, &[&username, &old_hash]).await;
    assert!(naming.is_empty(), "items still name the deleted account: {naming:#?}");

    // The username again, as a new account: a new sub that logs in at once.
    let new_password = strong_password();
    let added = authctl(&["user", "add", &username, "--scope", "read"], &format!("{new_password}\n")).await;
    let new_user_id = created_user_id(&added);
    assert_ne!(new_user_id, user_id);
    let login = gateway.login(&username, &new_password).await.unwrap();
    let fresh = Session::of(&login);
    assert_eq!(sub_of(&gateway, &fresh.access_token).await, new_user_id);
    assert_refused_grant(&gateway.login(&username, &password).await.unwrap(), "the deleted account's password");
    for (answer, session) in refresh_all(&gateway, &sessions).await.iter().zip(&sessions) {
        assert_refused_grant(answer, &format!("the deleted account's session {} after re-registration", session.sid()));
    }
    let list = gateway.sessions(&fresh.access_token).await.unwrap();
    assert_eq!(list.json["sessions"].as_array().map(Vec::len), Some(1), "{}", list.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authctl_set_password_ends_every_session_and_authctl_delete_erases_the_account() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-operator", &["read"]).await;
    let sessions = sessions_of(&gateway, &username, &password, 3).await;

    let new_password = strong_password();
    let out = authctl(&["user", "set-password", &username], &format!("{new_password}\n")).await;
    assert!(out.contains("ended every session"), "{out}");
    assert_sessions_ended(&gateway, &sessions, "after an operator's reset").await;
    assert_refused_grant(&gateway.login(&username, &password).await.unwrap(), "the old password");
    let after = sessions_of(&gateway, &username, &new_password, 2).await;
    let hash = password_hash_of(&clients, &username).await;

    let out = authctl(&["user", "delete", &username], "").await;
    assert!(out.contains("erased"), "{out}");
    assert_sessions_ended(&gateway, &after, "after an operator's deletion").await;
    let naming = items_naming(&config, &clients, &[&username, &hash]).await;
    assert!(naming.is_empty(), "items still name the deleted account: {naming:#?}");
    // (A login attempt now counts against the username as for any unknown one: after the scan.)
    assert_refused_grant(&gateway.login(&username, &new_password).await.unwrap(), "a deleted account");
}

/// The "Why": an operator deleted the profile item by hand and added the username
/// again. The new account logs in, and the old sessions are refused cleanly (401, not 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_deleted_by_hand_and_added_again_is_a_clean_new_account() {
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, user_id) = create_user(&config, &clients, "acct-byhand", &["read"]).await;
    let old = sessions_of(&gateway, &username, &password, 2).await;
    clients
        .dynamodb
        .delete_item()
        .table_name(&config.users_table)
        .key(USERS_PARTITION_KEY, AttributeValue::S(Username::normalise(&username).unwrap().as_str().to_owned()))
        .key(USERS_SORT_KEY, AttributeValue::S("profile".into()))
        .send()
        .await
        .unwrap();
    let new_password = strong_password();
    let added = authctl(&["user", "add", &username, "--scope", "read"], &format!("{new_password}\n")).await;
    let new_user_id = created_user_id(&added);
    assert_ne!(new_user_id, user_id);

    let mut logins = JoinSet::new();
    for _ in 0..4 {
        let (gateway, username, password) = (gateway.clone(), username.clone(), new_password.clone());
        logins.spawn(async move { gateway.login(&username, &password).await.unwrap() });
    }
    for login in logins.join_all().await {
        assert_eq!(login.status, 200, "the re-created user logs in: {}", login.text);
        assert_eq!(sub_of(&gateway, login.str("access_token")).await, new_user_id);
    }
    for (answer, session) in refresh_all(&gateway, &old).await.iter().zip(&old) {
        assert_refused_grant(answer, &format!("the old account's session {}", session.sid()));
    }
}

/// A session bound to a device key (DPoP, RFC 9449) uses the account routes as it uses any
/// protected route: `Authorization: DPoP` with a fresh proof for the URL called. The same
/// token as a bearer token is refused, and a password change keeps the bound session.
#[tokio::test]
async fn a_dpop_bound_session_lists_its_sessions_and_changes_the_password_with_proofs() {
    use tokenauth::platform::clock::{Clock, SystemClock};
    let (config, clients, gateway) = (gateway_function_config(), clients().await, gateway_client());
    let (username, password, _) = create_user(&config, &clients, "acct-dpop", &["read"]).await;
    let key = tokenauth::rules::dpop::ProofKey::generate().unwrap();
    let proof = |method: &str, path: &str, token: Option<&str>| {
        key.proof(method, &gateway.url(path), SystemClock.now(), token).unwrap()
    };
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let login_proof = proof("POST", "/auth/login", None);
    let login =
        gateway.send("POST", "/auth/login", &[("dpop", &login_proof)], Some(("application/json", body))).await.unwrap();
    let bound = Session::of(&login);
    assert_eq!(login.str("token_type"), "DPoP");
    let authorization = format!("DPoP {}", bound.access_token);

    let listed_proof = proof("GET", "/auth/sessions", Some(&bound.access_token));
    let headers = [("authorization", authorization.as_str()), ("dpop", listed_proof.as_str())];
    let listed = gateway.send("GET", "/auth/sessions", &headers, None).await.unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["sessions"][0]["sid"], bound.sid().as_str());
    assert_eq!(listed.json["sessions"][0]["current"], true);
    // The same proof again, or the token as a bearer token: refused by the authorizer.
    assert_eq!(gateway.send("GET", "/auth/sessions", &headers, None).await.unwrap().status, 403, "a replayed proof");
    assert_eq!(gateway.sessions(&bound.access_token).await.unwrap().status, 403, "a bound token as a bearer token");

    let new_password = strong_password();
    let change_proof = proof("POST", "/auth/password", Some(&bound.access_token));
    let headers = [("authorization", authorization.as_str()), ("dpop", change_proof.as_str())];
    let change = serde_json::json!({"current_password": password, "new_password": new_password}).to_string();
    let changed = gateway.send("POST", "/auth/password", &headers, Some(("application/json", change))).await.unwrap();
    assert_eq!(changed.status, 200, "{}", changed.text);
    // The bound session goes on: a refresh with a proof from its key rotates it.
    let refresh_proof = proof("POST", "/auth/refresh", None);
    let form = format!("grant_type=refresh_token&refresh_token={}", bound.refresh_token);
    let refreshed = gateway
        .send("POST", "/auth/refresh", &[("dpop", &refresh_proof)], Some(("application/x-www-form-urlencoded", form)))
        .await
        .unwrap();
    assert_eq!((refreshed.status, refreshed.str("token_type")), (200, "DPoP"), "{}", refreshed.text);
    assert_eq!(gateway.login(&username, &new_password).await.unwrap().status, 200);
}
