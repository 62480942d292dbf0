//! Two password changes decided on the same account as read, in a fixed order against the
//! stack: the first commits (keeping session A), the second is refused (it would have kept
//! session B). The kept session A must then stay allowed by a fresh authorizer: the refused
//! change may end access tokens early only for sessions the committed change ended too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::Value;
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, SystemClock};
use tokenauth::rules::username::Username;
use tokenauth::services::revoke::ChangedAsRead;
use tokenauth::store::{AccountChange, DynamoUsers};
use tokenauth::Revoker;
use tokenauth_tests::*;

/// Whether a fresh authorizer (its first poll made now) allows `access_token`.
async fn allowed(access_token: &str) -> bool {
    let config = config_with(&[("AUTHORIZER_ROUTE_SCOPES", "$default=")]);
    let a = Authorizer::from_config(&config, clients().await.dynamodb, Arc::new(SystemClock));
    a.warm_up().await;
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {access_token}"));
    let answer = serde_json::to_value(handle_after_reads(&a, &event).await.unwrap()).unwrap();
    answer["isAuthorized"] == Value::Bool(true)
}

#[tokio::test]
async fn a_refused_password_change_leaves_the_committed_changes_kept_session_allowed() {
    let (config, clients) = (config(), clients().await);
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "race-kept", &["read"]).await;
    let (a, b) = (login_tokens(&login, &username, &password).await, login_tokens(&login, &username, &password).await);
    let access = |t: &Value| t["access_token"].as_str().unwrap().to_owned();
    let family_a = family(&config, &clients, &family_of(a["refresh_token"].as_str().unwrap())).await;
    let family_b = family(&config, &clients, &family_of(b["refresh_token"].as_str().unwrap())).await;
    assert!(allowed(&access(&a)).await && allowed(&access(&b)).await, "both sessions allowed before");

    let name = Username::normalise(&username).unwrap();
    let read = DynamoUsers::new(clients.dynamodb.clone(), &config.users_table).get(&name).await.unwrap().unwrap();
    let revoker = Revoker::new(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    let change = |password: &str| AccountChange::SetPassword(tokenauth::rules::password::hash(password).unwrap());
    let now = SystemClock.now();
    let first = revoker
        .change_account_as_read(
            &name,
            &read,
            &change("first new"),
            Some(&family_a),
            Some(&read.password_hash),
            "t",
            now,
        )
        .await
        .unwrap();
    assert!(matches!(first, ChangedAsRead::Done(_)), "the first change commits");
    let second = revoker
        .change_account_as_read(
            &name,
            &read,
            &change("second new"),
            Some(&family_b),
            Some(&read.password_hash),
            "t",
            now,
        )
        .await
        .unwrap();
    assert!(matches!(second, ChangedAsRead::AccountMoved), "the second, on the same read, is refused");

    assert!(!allowed(&access(&b)).await, "B ended by the committed change");
    assert!(allowed(&access(&a)).await, "A was kept by the committed change: the refused change must not end it");
}
