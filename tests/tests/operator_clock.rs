//! authctl's security times come from a clock checked against AWS's: run as the operator
//! runs it (the built binary, the stack's variables), with its clock moved by libfaketime
//! (Debian's, unpacked into .local/faketime by `make tools`), it refuses to write a
//! revocation or pass a key gate, and writes nothing; with the true clock the same
//! commands work. The server side is DynamoDB Local, whose responses carry a `Date`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use aws_sdk_dynamodb::types::AttributeValue;
use tokenauth::rules::records::UserStatus;
use tokenauth::rules::username::Username;
use tokenauth::store::{DynamoUsers, UserRecord};
use tokenauth::Config;
use tokenauth_tests::runtime::function_binary;
use tokenauth_tests::*;

/// libfaketime: `TOKENAUTH_FAKETIME_LIB`, or where `make tools` unpacks it.
fn faketime_lib() -> PathBuf {
    let lib = std::env::var_os("TOKENAUTH_FAKETIME_LIB")
        .map_or_else(|| repo_root().join(".local/faketime/libfaketime.so.1"), PathBuf::from);
    assert!(lib.exists(), "{} is missing: `make tools` unpacks Debian's libfaketime there", lib.display());
    lib
}

/// Runs authctl with the stack's variables and `overrides`; with `offset` (libfaketime's
/// `FAKETIME`, e.g. `-40s`, `+3d`) its clock is that far off.
fn authctl(args: &[&str], overrides: &[(&str, &str)], offset: Option<&str>) -> Output {
    let mut command = Command::new(function_binary("authctl"));
    command.args(args).envs(overrides.iter().copied()).stdin(Stdio::null());
    if let Some(offset) = offset {
        command.env("LD_PRELOAD", faketime_lib()).env("FAKETIME", offset);
    }
    command.output().expect("authctl runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn user(config: &Config, clients: &Clients, username: &str) -> UserRecord {
    let name = Username::normalise(username).unwrap();
    DynamoUsers::new(clients.dynamodb.clone(), &config.users_table).get(&name).await.unwrap().expect("the user")
}

/// Every Revocations entry about `subject` (a scan: the test's own user).
async fn revocation_entries(config: &Config, clients: &Clients, subject: &str) -> usize {
    let mut count = 0;
    let mut pages = clients
        .dynamodb
        .scan()
        .table_name(&config.revocations_table)
        .filter_expression("subject = :subject")
        .expression_attribute_values(":subject", AttributeValue::S(subject.to_owned()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        count += page.unwrap().items().len();
    }
    count
}

#[tokio::test]
async fn a_user_disable_with_the_clock_40_s_behind_is_refused_and_writes_nothing() {
    let (config, clients) = (config(), clients().await);
    let (username, _, user_id) = create_user(&config, &clients, "clock", &["read"]).await;
    let before = user(&config, &clients, &username).await;

    let behind = authctl(&["user", "disable", &username], &[], Some("-40s"));
    let message = stderr(&behind);
    assert!(!behind.status.success(), "a disable 40 s behind went through: {message}");
    assert!(message.contains("s behind AWS's") && message.contains("nothing was written"), "{message}");
    assert!(message.contains("40.") || message.contains("39."), "says by how much: {message}");
    let after = user(&config, &clients, &username).await;
    assert!(after == before && after.status == UserStatus::Active, "the refused disable changed the account");
    assert_eq!(revocation_entries(&config, &clients, &user_id).await, 0, "the refused disable wrote a revocation");

    let in_step = authctl(&["user", "disable", &username], &[], None);
    assert!(in_step.status.success(), "with the true clock: {}", stderr(&in_step));
    assert_eq!(user(&config, &clients, &username).await.status, UserStatus::Disabled);
    assert!(revocation_entries(&config, &clients, &user_id).await > 0, "the disable's cut-off entry");
}

#[tokio::test]
async fn a_session_revoke_all_with_the_clock_ahead_is_refused_too() {
    let (config, clients) = (config(), clients().await);
    let (username, _, user_id) = create_user(&config, &clients, "clock", &["read"]).await;
    let ahead = authctl(&["session", "revoke-all", &username], &[], Some("+15s"));
    assert!(!ahead.status.success(), "{}", stderr(&ahead));
    assert!(stderr(&ahead).contains("s ahead of AWS's"), "{}", stderr(&ahead));
    assert_eq!(revocation_entries(&config, &clients, &user_id).await, 0);
}

#[tokio::test]
async fn keys_promote_with_the_clock_3_days_ahead_does_not_pass_its_gate() {
    let clients = clients().await;
    let table = format!("keys-{}", unique_username("clock"));
    create_keys_table(&clients, &table).await;
    let tag = unique_username("clock");
    // The deployed publish lead (2 days): 3 days ahead, the gate would be open.
    let overrides = [("KEYS_TABLE", table.as_str()), ("KEY_SET_TAG", tag.as_str())];
    let config = config_with(&overrides);
    for step in ["first key (current)", "second key (pending)"] {
        let added = authctl(&["keys", "add"], &overrides, None);
        assert!(added.status.success(), "{step}: {}", stderr(&added));
    }
    let before = key_set(&config, &clients).await;
    assert!(before.pending().is_some(), "{before:?}");

    for args in [&["keys", "promote"][..], &["keys", "promote", "--force"], &["keys", "rotate"]] {
        let ahead = authctl(args, &overrides, Some("+3d"));
        let message = stderr(&ahead);
        assert!(!ahead.status.success(), "{args:?} 3 days ahead went through: {message}");
        assert!(message.contains("s ahead of AWS's") && message.contains("nothing was written"), "{args:?}: {message}");
        assert_eq!(key_set(&config, &clients).await, before, "{args:?} 3 days ahead changed the set");
    }

    // With the true clock the gate itself answers (the key was published a moment ago),
    // and a forced promotion goes through.
    let gated = authctl(&["keys", "promote"], &overrides, None);
    assert!(!gated.status.success() && !stderr(&gated).contains("AWS's"), "{}", stderr(&gated));
    let forced = authctl(&["keys", "promote", "--force"], &overrides, None);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(key_set(&config, &clients).await.current(), before.current(), "the pending key is current now");
}
