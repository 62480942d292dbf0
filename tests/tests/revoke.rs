//! RFC 7009 revocation and revoke-all against the local stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use lambda_http::http::StatusCode;
use serde_json::Value;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::store::{FamilyStatus, RevocationKind};
use tokenauth::{Config, LoginService, RevocationService, TokenService};
use tokenauth_tests::*;

struct Setup {
    config: Config,
    clients: Clients,
    login: LoginService,
    refresh: TokenService,
    revoke: RevocationService,
    username: String,
    password: String,
    user_id: String,
}

async fn setup(prefix: &str) -> Setup {
    let config = config();
    let clients = clients().await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    let revoke = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, prefix, &["read"]).await;
    Setup { config, clients, login, refresh, revoke, username, password, user_id }
}

fn form_body(token: &str, hint: &str) -> String {
    format!("token={token}&token_type_hint={hint}")
}

impl Setup {
    async fn session(&self) -> (String, String) {
        let body = login_tokens(&self.login, &self.username, &self.password).await;
        (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family_and_denylists_its_session() {
    let s = setup("revrt").await;
    let (_, refresh) = s.session().await;

    let response =
        tokenauth::edge::http::revoke(&s.revoke, &revoke_request(&form_body(&refresh, "refresh_token"), true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.body().as_ref().is_empty());

    assert_eq!(family(&s.config, &s.clients, &family_of(&refresh)).await.status, FamilyStatus::Revoked);
    let entries = revocations_of(&s.config, &s.clients, &family_of(&refresh)).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, RevocationKind::Sid);
    let refused = tokenauth::edge::http::token(&s.refresh, &refresh_request(&refresh, None, false)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Revoking again is still 200 and writes nothing more.
    let again =
        tokenauth::edge::http::revoke(&s.revoke, &revoke_request(&form_body(&refresh, "refresh_token"), true)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(revocations_of(&s.config, &s.clients, &family_of(&refresh)).await.len(), 1);
}

/// A confidential client with the refresh grant and a secret, registered: (id, secret).
async fn confidential_client(s: &Setup, prefix: &str) -> (String, String) {
    use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, GrantType, StoredSecret};
    let (id, secret, now) = (unique_username(prefix), ClientSecret::new(), SystemClock.now());
    let record = ClientRecord {
        client_type: ClientType::Confidential,
        grants: vec![GrantType::RefreshToken],
        secrets: vec![StoredSecret { hash: secret.hash(&id), created_at: now, expires_at: None }],
        ..ClientRecord::public(&id, Vec::new(), Vec::new(), now)
    };
    tokenauth::store::DynamoClients::new(s.clients.dynamodb.clone(), &s.config.clients_table)
        .create(&record)
        .await
        .unwrap();
    (id, secret.encode())
}

#[tokio::test]
async fn a_confidential_clients_tokens_are_revoked_only_by_that_client_authenticated() {
    let s = setup("revconf").await;
    let (id, secret) = confidential_client(&s, "web-backend").await;
    let (other, other_secret) = confidential_client(&s, "another-backend").await;
    let app = login_service(&config_with(&[("CLIENT_ID", id.as_str())]), &s.clients, Arc::new(SystemClock)).await;
    let tokens = login_tokens(&app, &s.username, &s.password).await;
    let (access, refresh) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    let (service, config, clients) = (&s.revoke, &s.config, &s.clients);
    let revoke = |body: String, authorization: Option<String>| {
        let mut request = revoke_request(&body, true);
        if let Some(value) = authorization {
            request.headers_mut().insert("authorization", value.parse().unwrap());
        }
        async move { tokenauth::edge::http::revoke(service, &request).await }
    };
    let family_status = || async move { family(config, clients, &family_of(refresh)).await.status };

    // Credentials are checked first: a wrong secret is refused whatever the token.
    for token in [refresh, "garbage"] {
        let response = revoke(format!("token={token}"), Some(basic_authorization(&id, "tkcs_wrong"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(json_of(&response)["error"], "invalid_client");
        assert_eq!(response.headers()["www-authenticate"], r#"Basic realm="token""#);
    }
    // Without its client's authentication, or by another client: refused, nothing ends.
    let anonymous = revoke(format!("token={refresh}"), None).await;
    assert_eq!(
        (anonymous.status(), json_of(&anonymous)["error"].clone()),
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let named = revoke(format!("token={refresh}&client_id={id}"), None).await;
    assert_eq!(named.status(), StatusCode::UNAUTHORIZED, "naming the client is not authenticating it");
    let by_other = revoke(format!("token={refresh}"), Some(basic_authorization(&other, &other_secret))).await;
    assert_eq!(by_other.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&by_other)["error"], "unauthorized_client");
    let by_other = revoke(format!("token={access}"), Some(basic_authorization(&other, &other_secret))).await;
    assert_eq!(json_of(&by_other)["error"], "unauthorized_client");
    assert_eq!(family_status().await, FamilyStatus::Active, "nothing ended");
    assert!(revocations_of(&s.config, &s.clients, &family_of(refresh)).await.is_empty());

    // The client itself: its access token (client_secret_post), then its session (Basic).
    let own = revoke(format!("token={access}&client_id={id}&client_secret={secret}"), None).await;
    assert_eq!(own.status(), StatusCode::OK, "{:?}", own.body());
    let own = revoke(format!("token={refresh}"), Some(basic_authorization(&id, &secret))).await;
    assert_eq!(own.status(), StatusCode::OK, "{:?}", own.body());
    assert_eq!(family_status().await, FamilyStatus::Revoked);

    // A public client's token is still revoked by whoever holds it (the first-party logout).
    let (_, first_party) = s.session().await;
    assert_eq!(revoke(format!("token={first_party}"), None).await.status(), StatusCode::OK);
    assert_eq!(family(&s.config, &s.clients, &family_of(&first_party)).await.status, FamilyStatus::Revoked);
}

#[tokio::test]
async fn revoking_an_access_token_verifies_it_then_denylists_its_jti_until_it_expires() {
    let s = setup("revat").await;
    let (access, refresh) = s.session().await;
    let claims = independently_verified(&s.config, &s.clients, &access).await.unwrap();

    let body = serde_json::json!({"token": access, "token_type_hint": "access_token"}).to_string();
    assert_eq!(tokenauth::edge::http::revoke(&s.revoke, &revoke_request(&body, false)).await.status(), StatusCode::OK);

    let entries = revocations_of(&s.config, &s.clients, &claims.jti).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, RevocationKind::Jti);
    assert_eq!(entries[0].expires_at, claims.exp + s.config.revocation_grace().as_secs());
    assert_eq!(
        family(&s.config, &s.clients, &family_of(&refresh)).await.status,
        FamilyStatus::Active,
        "the session lives on"
    );

    // The same token with its signature altered (one bit of the last byte): verified first,
    // so nothing is revoked on its unverified claims.
    let mut forged = access.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'Q' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let s2 = setup("revat2").await;
    let (access2, _) = s2.session().await;
    let claims2 = independently_verified(&s.config, &s.clients, &access2).await.unwrap();
    let mut parts: Vec<&str> = access2.split('.').collect();
    let sig_of_other = access.split('.').nth(2).unwrap();
    parts[2] = sig_of_other;
    let spliced = parts.join(".");
    for token in [forged, spliced] {
        let body = serde_json::json!({"token": token}).to_string();
        assert_eq!(
            tokenauth::edge::http::revoke(&s.revoke, &revoke_request(&body, false)).await.status(),
            StatusCode::OK
        );
    }
    assert!(revocations_of(&s.config, &s.clients, &claims2.jti).await.is_empty(), "unverified claims revoked nothing");
}

#[tokio::test]
async fn unknown_expired_and_garbage_tokens_get_200_and_change_nothing() {
    let s = setup("revjunk").await;
    // An access token that expired an hour ago, properly signed.
    let past = Arc::new(ManualClock::new(SystemClock.now() - 3600));
    let old_login = login_service(&s.config, &s.clients, past).await;
    let expired = login_tokens(&old_login, &s.username, &s.password).await;
    let expired_access = expired["access_token"].as_str().unwrap();
    let expired_jti: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            expired_access.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let forged_refresh = tokenauth::rules::token::RefreshToken::from_parts(
        &family_of(expired["refresh_token"].as_str().unwrap()),
        0,
        [1; 32],
    )
    .unwrap()
    .encode();

    for token in ["garbage", "tkrt_nope", "a.b.c", expired_access, &forged_refresh] {
        s.clients.calls.clear();
        let body = serde_json::json!({ "token": token }).to_string();
        let response = tokenauth::edge::http::revoke(&s.revoke, &revoke_request(&body, false)).await;
        assert_eq!(response.status(), StatusCode::OK, "{token}");
        // Reads (the family's client, RFC 7009 §2.1) and the refused conditional UpdateItem
        // of a forged token change nothing; no other call may write.
        let is_read = |n: &String| n.ends_with("GetItem") || n.ends_with("Query");
        let writes: Vec<String> =
            s.clients.calls.names().into_iter().filter(|n| !is_read(n) && !n.ends_with("UpdateItem")).collect();
        assert!(writes.is_empty(), "{token}: {writes:?}");
    }
    assert!(revocations_of(&s.config, &s.clients, expired_jti["jti"].as_str().unwrap()).await.is_empty());
    assert_eq!(
        family(&s.config, &s.clients, &family_of(expired["refresh_token"].as_str().unwrap())).await.status,
        FamilyStatus::Active,
        "a forged refresh token with a real family id revoked nothing"
    );
}

#[tokio::test]
async fn revoke_all_ends_every_session_of_the_bearer_and_writes_a_not_before_entry() {
    let s = setup("revall").await;
    let (_, first) = s.session().await;
    let (access, second) = s.session().await;
    let now = SystemClock.now();

    let response =
        tokenauth::edge::http::revoke(&s.revoke, &revoke_all_request(Some(&format!("bEaReR {access}")))).await;
    assert_eq!(response.status(), StatusCode::OK);
    for token in [&first, &second] {
        assert_eq!(family(&s.config, &s.clients, &family_of(token)).await.status, FamilyStatus::Revoked);
    }
    let entries = revocations_of(&s.config, &s.clients, &s.user_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, RevocationKind::User);
    assert!(entries[0].not_before.unwrap() > now);

    // A bearer token that does not verify: 401 invalid_token and a challenge (without one
    // bearer token at all: the revoke handler's unit tests).
    let response = tokenauth::edge::http::revoke(&s.revoke, &revoke_all_request(Some("Bearer not-a-jwt"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&response)["error"], "invalid_token");
    assert_eq!(response.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
}

#[tokio::test]
async fn the_admin_revoke_all_ends_every_session() {
    let s = setup("revadmin").await;
    let (_, first) = s.session().await;
    let (_, second) = s.session().await;
    let revoker = tokenauth::Revoker::new(&s.config, s.clients.dynamodb.clone(), Arc::new(SystemClock));

    let username = tokenauth::rules::username::Username::normalise(&s.username).unwrap();
    let end = tokenauth::store::AccountChange::EndSessions;
    let changed = revoker.change_account(&username, &end, "revoked_by_admin", SystemClock.now()).await.unwrap();
    assert_eq!(changed.families_revoked, 2);
    for token in [&first, &second] {
        let f = family(&s.config, &s.clients, &family_of(token)).await;
        assert_eq!((f.status, f.revoked_reason.as_deref()), (FamilyStatus::Revoked, Some("revoked_by_admin")));
        let entries = revocations_of(&s.config, &s.clients, &family_of(token)).await;
        assert_eq!(entries.iter().map(|e| e.kind).collect::<Vec<_>>(), [RevocationKind::Sid], "its sid denylisted");
    }
    let cut = revocations_of(&s.config, &s.clients, &s.user_id).await;
    assert_eq!(cut.iter().map(|e| e.kind).collect::<Vec<_>>(), [RevocationKind::User], "and the user's cut-off");
}

#[tokio::test]
async fn the_denylist_read_spans_every_hour_bucket_between_its_bounds_oldest_first() {
    use tokenauth::store::{DynamoRevocations, Revocation};
    let (config, clients) = (config(), clients().await);
    let store = DynamoRevocations::new(clients.dynamodb.clone(), &config.revocations_table);
    let hour = 480_000_u64 * 3_600_000; // hour buckets in 2024-10, which no other test writes
    let subject = unique_username("buckets");
    let entry = |revoked_at_ms: u64, n: u32| Revocation {
        kind: RevocationKind::Jti,
        subject: format!("{subject}-{n}"),
        revoked_at_ms,
        not_before: None,
        expires_at: revoked_at_ms / 1000 + 86_400,
        except_sid: None,
    };
    let written = [
        entry(hour + 10, 0),                    // before the read's start
        entry(hour + 3_599_000, 1),             // end of the first hour
        entry(hour + 3_600_000 + 1_000, 2),     // start of the second
        entry(hour + 2 * 3_600_000 + 5_000, 3), // in the third
        entry(hour + 3 * 3_600_000 + 1_000, 4), // in the hour after the read's end
    ];
    store.put(&written).await.unwrap();

    clients.calls.clear();
    let read = store.since(hour + 500_000, hour + 2 * 3_600_000 + 10_000).await.unwrap();
    let ours: Vec<&str> = read.iter().map(|r| r.subject.as_str()).filter(|s| s.starts_with(subject.as_str())).collect();
    let expected: Vec<String> = (1..=3).map(|n| format!("{subject}-{n}")).collect();
    assert_eq!(ours, expected, "the three entries inside the bounds, oldest first");
    assert_eq!(clients.calls.names(), ["DynamoDB.Query"; 3], "one Query per hour bucket");
}

/// Whether an authorizer over `config` lets `token` through (HTTP API, simple answer).
async fn authorizer_allows(config: &Config, clients: &Clients, token: &str) -> bool {
    let authorizer =
        tokenauth::edge::authorizer::Authorizer::from_config(config, clients.dynamodb.clone(), Arc::new(SystemClock));
    authorizer.warm_up().await;
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {token}"));
    match authorizer.handle(&event).await {
        Ok(answer) => serde_json::to_value(answer).unwrap()["isAuthorized"] == true,
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_logout_repeated_after_its_sid_write_failed_still_denylists_the_session() {
    // GIVEN a session, and a revoke function whose Revocations table is not there (its
    // first denylist write fails after the family write went through)
    let s = setup("revretry").await;
    let (access, refresh) = s.session().await;
    let table = format!("revocations-{}", unique_username("t"));
    let config = config_with(&[("REVOCATIONS_TABLE", table.as_str()), ("AUTHORIZER_ROUTE_SCOPES", "$default=")]);
    let revoke = revocation_service(&config, &s.clients, Arc::new(SystemClock)).await;
    let logout = || revoke_request(&form_body(&refresh, "refresh_token"), true);
    assert_eq!(tokenauth::edge::http::revoke(&revoke, &logout()).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(family(&s.config, &s.clients, &family_of(&refresh)).await.status, FamilyStatus::Revoked);
    create_table(&s.clients, &template_tables()["REVOCATIONS_TABLE"], &table).await;
    assert!(authorizer_allows(&config, &s.clients, &access).await, "no entry yet: the access token still lives");

    // WHEN the client repeats its logout
    assert_eq!(tokenauth::edge::http::revoke(&revoke, &logout()).await.status(), StatusCode::OK);

    // THEN the session's sid entry is written and its access tokens are denied
    let entries = revocations_of(&config, &s.clients, &family_of(&refresh)).await;
    assert_eq!(entries.iter().map(|e| e.kind).collect::<Vec<_>>(), [RevocationKind::Sid]);
    assert!(!authorizer_allows(&config, &s.clients, &access).await, "the session's access token is denied");
    // and a third logout writes nothing more
    assert_eq!(tokenauth::edge::http::revoke(&revoke, &logout()).await.status(), StatusCode::OK);
    assert_eq!(revocations_of(&config, &s.clients, &family_of(&refresh)).await.len(), 1);
}

#[tokio::test]
async fn a_refresh_token_logout_works_while_the_key_set_is_stale() {
    use tokenauth::rules::keys::KeyAlgorithm;
    use tokenauth::services::keys::manager::KeySource;
    // GIVEN a revoke function that read its key set once, whose Keys table is then gone
    // for longer than the staleness bound
    let s = setup("revstale").await;
    let (access, refresh) = s.session().await;
    let keys_table = format!("keys-{}", unique_username("t"));
    create_keys_table(&s.clients, &keys_table).await;
    let tag = unique_username("set");
    let config = config_with(&[
        ("KEYS_TABLE", keys_table.as_str()),
        ("KEY_SET_TAG", tag.as_str()),
        ("KEY_SET_RELOAD_SECS", "1"),
        ("REVOCATION_POLL_SECS", "1"),
    ]);
    let manager = tokenauth::services::keys::KeyManager::from_config(
        &config,
        s.clients.dynamodb.clone(),
        s.clients.kms.clone(),
        Arc::new(SystemClock),
    );
    manager.add(KeySource::Create(KeyAlgorithm::ES256)).await.unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let revoke = revocation_service(&config, &s.clients, clock.clone()).await;
    s.clients.dynamodb.delete_table().table_name(&keys_table).send().await.unwrap();
    clock.advance(config.key_set_max_staleness().as_secs() + 5);

    // WHEN an access token is presented, THEN it still needs a verifier it can trust: 503
    let body = serde_json::json!({ "token": access }).to_string();
    let response = tokenauth::edge::http::revoke(&revoke, &revoke_request(&body, false)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // WHEN the refresh token is presented, THEN its family is revoked: it needs no key
    let response =
        tokenauth::edge::http::revoke(&revoke, &revoke_request(&form_body(&refresh, "refresh_token"), true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(family(&s.config, &s.clients, &family_of(&refresh)).await.status, FamilyStatus::Revoked);
    let entries = revocations_of(&s.config, &s.clients, &family_of(&refresh)).await;
    assert_eq!(entries.iter().map(|e| e.kind).collect::<Vec<_>>(), [RevocationKind::Sid]);
}
