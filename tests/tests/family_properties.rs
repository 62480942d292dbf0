//! Random interleavings of refresh, retry, reuse, forgery, revocation and time on one
//! family, against DynamoDB Local, checking the invariants after every step:
//! - at most one live successor: the family's current hash is that of the newest token
//!   ever handed out, and every 200 hands out exactly that token;
//! - a revoked family never becomes active again;
//! - a forged token never changes a single attribute.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::token::RefreshToken;
use tokenauth::store::{FamilyRecord, FamilyStatus};
use tokenauth_tests::*;

#[derive(Debug, Clone)]
enum Op {
    Refresh,
    RetryPrevious,
    ReplayOld(usize),
    Forge(u32),
    Revoke,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Refresh),
        2 => Just(Op::RetryPrevious),
        1 => (0..8usize).prop_map(Op::ReplayOld),
        2 => (0..6u32).prop_map(Op::Forge),
        1 => Just(Op::Revoke),
        2 => (1..45u64).prop_map(Op::Wait),
    ]
}

struct World {
    config: tokenauth::Config,
    clients: Clients,
    clock: Arc<ManualClock>,
    login: tokenauth::LoginService,
    refresh: tokenauth::TokenService,
    revoke: tokenauth::RevocationService,
    username: String,
    password: String,
}

async fn world() -> World {
    let config = config();
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let login = login_service(&config, &clients, clock.clone()).await;
    let refresh = refresh_service(&config, &clients, clock.clone()).await;
    let revoke = revocation_service(&config, &clients, clock.clone()).await;
    let (username, password, _) = create_user(&config, &clients, "prop", &["read"]).await;
    World { config, clients, clock, login, refresh, revoke, username, password }
}

async fn run(w: &World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let first = login_tokens(&w.login, &w.username, &w.password).await["refresh_token"].as_str().unwrap().to_owned();
    let family_id = family_of(&first);
    // Every token ever handed out, oldest first: issued[g] is generation g.
    let mut issued = vec![first];
    let mut ever_revoked = false;
    for op in ops {
        let before: FamilyRecord = family(&w.config, &w.clients, &family_id).await;
        let presented = match &op {
            Op::Refresh | Op::Revoke => Some(issued.last().unwrap().clone()),
            Op::RetryPrevious => Some(issued[issued.len().saturating_sub(2)].clone()),
            Op::ReplayOld(i) => Some(issued[i % issued.len()].clone()),
            Op::Forge(g) => Some(
                RefreshToken::from_parts(&family_id, *g, tokenauth::rules::token::random_bytes::<32>())
                    .unwrap()
                    .encode(),
            ),
            Op::Wait(secs) => {
                w.clock.advance(*secs);
                None
            }
        };
        if let Some(token) = presented {
            if matches!(op, Op::Revoke) {
                let request = tokenauth::RevokeRequest::anonymous(token);
                w.revoke.revoke(request, None).await.map_err(|e| TestCaseError::fail(format!("revoke: {e}")))?;
            } else {
                let response = tokenauth::edge::http::token(&w.refresh, &refresh_request(&token, None, false)).await;
                if response.status() == 200 {
                    let handed = json_of(&response)["refresh_token"].as_str().unwrap().to_owned();
                    if !issued.contains(&handed) {
                        issued.push(handed.clone());
                    }
                    prop_assert_eq!(&handed, issued.last().unwrap(), "a 200 hands out the newest token only");
                } else {
                    prop_assert!(matches!(response.status().as_u16(), 401 | 400), "{:?}: {}", op, response.status());
                }
            }
        }
        let after = family(&w.config, &w.clients, &family_id).await;
        if matches!(op, Op::Forge(_)) {
            prop_assert_eq!(&after, &before, "a forged token changed the family");
        }
        // At most one live successor.
        prop_assert_eq!(after.generation as usize, issued.len() - 1, "generation counts the tokens handed out");
        prop_assert_eq!(&after.token_hash, &RefreshToken::parse(issued.last().unwrap()).unwrap().hash());
        // Revoked stays revoked.
        if ever_revoked {
            prop_assert_eq!(after.status, FamilyStatus::Revoked, "a revoked family came back");
        }
        ever_revoked |= after.status == FamilyStatus::Revoked;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn interleavings_keep_one_live_successor_and_revocation_final(ops in proptest::collection::vec(op(), 1..12)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let w = world().await;
            run(&w, ops).await
        })?;
    }
}
