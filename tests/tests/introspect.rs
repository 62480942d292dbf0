//! Introspection (RFC 7662) through the real handler and service against DynamoDB Local
//! and the KMS emulator: what a registered confidential client learns about access and
//! refresh tokens, that a revocation, an account change or a disabled client is seen at
//! once (strongly consistent reads, no lag), that introspection writes nothing, and that
//! only authenticated confidential clients may ask, and only about what concerns them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, GrantType, StoredSecret};
use tokenauth::rules::username::Username;
use tokenauth::store::{AccountChange, DynamoClients};
use tokenauth::{Config, IntrospectionService, LoginService, RevocationService, Revoker};
use tokenauth_tests::*;

/// A registered confidential client: its id and secret.
struct Confidential {
    id: String,
    secret: String,
}

/// Registers a confidential client allowed `audiences` (empty: none), with a secret.
async fn register(config: &Config, clients: &Clients, prefix: &str, audiences: &[&str]) -> Confidential {
    let id = unique_username(prefix);
    let secret = ClientSecret::new();
    let now = SystemClock.now();
    let record = ClientRecord {
        client_type: ClientType::Confidential,
        // The refresh grant too: an app of these tests logs users in and refreshes.
        grants: vec![GrantType::ClientCredentials, GrantType::RefreshToken],
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        secrets: vec![StoredSecret { hash: secret.hash(&id), created_at: now, expires_at: None }],
        ..ClientRecord::public(&id, Vec::new(), Vec::new(), now)
    };
    registry(config, clients).create(&record).await.expect("client registered");
    Confidential { id, secret: secret.encode() }
}

fn registry(config: &Config, clients: &Clients) -> DynamoClients {
    assert!(!config.clients_table.is_empty(), "the stack has a Clients table (CLIENTS_TABLE)");
    DynamoClients::new(clients.dynamodb.clone(), &config.clients_table)
}

struct Setup {
    config: Config,
    clients: Clients,
    introspection: IntrospectionService,
    revocation: RevocationService,
    username: String,
    password: String,
    user_id: String,
}

async fn setup(prefix: &str) -> Setup {
    let config = config();
    let clients = clients().await;
    let introspection = IntrospectionService::from_config(
        &config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let revocation = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, prefix, &["read", "write"]).await;
    Setup { config, clients, introspection, revocation, username, password, user_id }
}

impl Setup {
    /// A login of the user through an app registered as `client_id` (the deployment's own
    /// client when `None`): the token response.
    async fn login_as(&self, client_id: Option<&str>) -> Value {
        let login = self.login_service(client_id).await;
        login_tokens(&login, &self.username, &self.password).await
    }

    async fn login_service(&self, client_id: Option<&str>) -> LoginService {
        let config = match client_id {
            Some(id) => config_with(&[("CLIENT_ID", id)]),
            None => self.config.clone(),
        };
        login_service(&config, &self.clients, Arc::new(SystemClock)).await
    }

    /// `client` introspects `token` with `client_secret_basic`: the response's status and body.
    async fn introspect(&self, client: &Confidential, token: &str) -> (u16, Value) {
        let authorization = basic_authorization(&client.id, &client.secret);
        self.ask(introspect_request(&format!("token={token}"), Some(&authorization))).await
    }

    async fn ask(&self, request: lambda_http::Request) -> (u16, Value) {
        let response = tokenauth::edge::http::introspect(&self.introspection, &request).await;
        assert_eq!(response.headers()["cache-control"], "no-store", "RFC 7662 §2.2 answers are never cached");
        (response.status().as_u16(), json_of(&response))
    }

    async fn revoke(&self, token: &str) {
        let response =
            tokenauth::edge::http::revoke(&self.revocation, &revoke_request(&format!("token={token}"), true)).await;
        assert_eq!(response.status(), 200);
    }

    /// A logout by `client`, authenticated (RFC 7009 §2.1: a confidential client's token).
    async fn revoke_as(&self, client: &Confidential, token: &str) {
        let mut request = revoke_request(&format!("token={token}"), true);
        request.headers_mut().insert("authorization", basic_authorization(&client.id, &client.secret).parse().unwrap());
        let response = tokenauth::edge::http::revoke(&self.revocation, &request).await;
        assert_eq!(response.status(), 200, "{:?}", response.body());
    }
}

fn field<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name].as_str().unwrap()
}

/// `{"active": false}` and nothing else, with 200.
#[track_caller]
fn assert_inactive(answer: (u16, Value), why: &str) {
    assert_eq!(answer, (200, json!({"active": false})), "{why}");
}

#[tokio::test]
async fn a_live_access_token_is_active_with_its_claims_and_inactive_right_after_its_revocation() {
    let s = setup("introspect-at").await;
    let api = register(&s.config, &s.clients, "orders-api", &[&s.config.audience]).await;
    let tokens = s.login_as(None).await;
    let access = field(&tokens, "access_token");

    let (status, answer) = s.introspect(&api, access).await;
    assert_eq!(status, 200, "{answer}");
    let claims = independently_verified(&s.config, &s.clients, access).await.expect("a token of ours");
    assert_eq!(
        answer,
        json!({"active": true, "scope": claims.scope, "client_id": claims.client_id, "sub": s.user_id,
               "aud": s.config.audience, "iss": s.config.issuer, "exp": claims.exp, "iat": claims.iat,
               "jti": claims.jti, "token_type": "Bearer", "sid": family_of(field(&tokens, "refresh_token"))})
    );

    // RFC 7009 revocation of the access token, then at once (no wait, no poll): inactive.
    s.revoke(access).await;
    assert_inactive(s.introspect(&api, access).await, "revoked by jti, seen at once");

    // A logout (the refresh token revoked) ends the session's access tokens at once too.
    let tokens = s.login_as(None).await;
    assert_eq!(s.introspect(&api, field(&tokens, "access_token")).await.1["active"], true);
    s.revoke(field(&tokens, "refresh_token")).await;
    assert_inactive(s.introspect(&api, field(&tokens, "access_token")).await, "its session ended, seen at once");
}

#[tokio::test]
async fn an_access_token_is_inactive_from_its_expiry_on_though_verifiers_allow_a_leeway_past_it() {
    let s = setup("introspect-exp").await;
    let api = register(&s.config, &s.clients, "orders-api", &[&s.config.audience]).await;
    let access = field(&s.login_as(None).await, "access_token").to_owned();
    let claims = independently_verified(&s.config, &s.clients, &access).await.expect("a token of ours");
    assert!(s.config.token_leeway.as_secs() > 0, "verifiers allow a leeway past exp: {:?}", s.config.token_leeway);
    let clock = Arc::new(ManualClock::new(claims.exp - 1));
    let introspection =
        IntrospectionService::from_config(&s.config, s.clients.dynamodb.clone(), s.clients.kms.clone(), clock.clone())
            .await;
    let authorization = basic_authorization(&api.id, &api.secret);
    let ask = || async {
        let request = introspect_request(&format!("token={access}"), Some(&authorization));
        json_of(&tokenauth::edge::http::introspect(&introspection, &request).await)
    };
    assert_eq!(ask().await["active"], true, "a second before its expiry");
    clock.advance(1);
    assert_eq!(ask().await, json!({"active": false}), "RFC 7662 §2.2: active only before its expiration time");
}

#[tokio::test]
async fn a_refresh_token_is_active_while_current_and_introspection_never_counts_as_a_use() {
    let s = setup("introspect-rt").await;
    let app = register(&s.config, &s.clients, "reports", &[]).await;
    let api = register(&s.config, &s.clients, "orders-api", &[&s.config.audience]).await;
    let app_config = config_with(&[("CLIENT_ID", app.id.as_str())]);
    let refresh = refresh_service(&app_config, &s.clients, Arc::new(SystemClock)).await;
    let tokens = s.login_as(Some(&app.id)).await;
    let r0 = field(&tokens, "refresh_token").to_owned();
    let family_id = family_of(&r0);

    let before = family(&s.config, &s.clients, &family_id).await;
    let (status, answer) = s.introspect(&app, &r0).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"active": true, "scope": "read write", "client_id": app.id, "sub": s.user_id, "iss": s.config.issuer,
               "exp": before.expires_at.min(before.idle_expires_at), "iat": before.created_at,
               "token_type": "refresh_token", "sid": family_id})
    );
    assert_inactive(s.introspect(&api, &r0).await, "a refresh token is seen only by the client it was issued to");
    assert_eq!(family(&s.config, &s.clients, &family_id).await, before, "introspection wrote nothing");

    // A rotation: the old token is inactive, the new one active.
    // The app is confidential: its refresh authenticates (client_secret_basic).
    let mut rotate = refresh_request(&r0, None, false);
    let authorization = basic_authorization(&app.id, &app.secret).parse().unwrap();
    rotate.headers_mut().insert("authorization", authorization);
    let response = tokenauth::edge::http::token(&refresh, &rotate).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let r1 = json_of(&response)["refresh_token"].as_str().unwrap().to_owned();
    let rotated = family(&s.config, &s.clients, &family_id).await;
    assert_inactive(s.introspect(&app, &r0).await, "rotated out");
    let (_, answer) = s.introspect(&app, &r1).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["iat"], json!(rotated.rotated_at.unwrap()), "issued by the rotation");
    // Presenting the rotated-out token to introspection is not reuse: nothing was written,
    // the family lives on and its current token still rotates.
    assert_eq!(family(&s.config, &s.clients, &family_id).await, rotated, "introspection wrote nothing");
    assert_eq!(s.introspect(&app, &r1).await.1["active"], true);

    // A logout (by the app, which is confidential): inactive at once.
    s.revoke_as(&app, &r1).await;
    assert_inactive(s.introspect(&app, &r1).await, "logged out");
}

#[tokio::test]
async fn callers_that_are_not_authenticated_confidential_clients_get_401_invalid_client() {
    let s = setup("introspect-auth").await;
    let api = register(&s.config, &s.clients, "orders-api", &[&s.config.audience]).await;
    let public = unique_username("mobile");
    registry(&s.config, &s.clients)
        .create(&ClientRecord::public(&public, Vec::new(), Vec::new(), SystemClock.now()))
        .await
        .unwrap();
    let disabled = register(&s.config, &s.clients, "retired-api", &[&s.config.audience]).await;
    registry(&s.config, &s.clients).disable(&disabled.id, SystemClock.now()).await.unwrap();
    let access = s.login_as(None).await["access_token"].as_str().unwrap().to_owned();
    let body = format!("token={access}");
    let wrong = ClientSecret::new().encode();
    let cases = [
        ("no client authentication", introspect_request(&body, None), false),
        ("a wrong secret, Basic", introspect_request(&body, Some(&basic_authorization(&api.id, &wrong))), true),
        (
            "a wrong secret, post",
            introspect_request(&format!("{body}&client_id={}&client_secret={wrong}", api.id), None),
            false,
        ),
        ("a registered public client", introspect_request(&format!("{body}&client_id={public}"), None), false),
        (
            "a public client presenting a secret",
            introspect_request(&body, Some(&basic_authorization(&public, &api.secret))),
            true,
        ),
        (
            "a disabled confidential client",
            introspect_request(&body, Some(&basic_authorization(&disabled.id, &disabled.secret))),
            true,
        ),
    ];
    for (name, request, basic) in cases {
        let response = tokenauth::edge::http::introspect(&s.introspection, &request).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(json_of(&response), json!({"error": "invalid_client"}), "{name}: nothing about the token");
        assert_eq!(response.headers().contains_key("www-authenticate"), basic, "{name}");
    }
    // The same token, asked by the right client with its secret in the body: active.
    let post = format!("{body}&client_id={}&client_secret={}", api.id, api.secret);
    assert_eq!(s.ask(introspect_request(&post, None)).await.1["active"], true);
}

#[tokio::test]
async fn tokens_a_client_may_not_see_and_tokens_that_are_not_ours_are_inactive() {
    let s = setup("introspect-see").await;
    let api = register(&s.config, &s.clients, "orders-api", &[&s.config.audience]).await;
    let other = register(&s.config, &s.clients, "billing-api", &["https://billing.example.test"]).await;
    let bare = register(&s.config, &s.clients, "no-audience", &[]).await;
    let tokens = s.login_as(None).await;
    let access = field(&tokens, "access_token");
    assert_eq!(s.introspect(&api, access).await.1["active"], true, "the API it is for sees it");
    assert_inactive(s.introspect(&other, access).await, "a token for an audience that is not the client's");
    assert_inactive(s.introspect(&bare, access).await, "a client with no audience sees only its own");
    assert_inactive(s.introspect(&api, field(&tokens, "refresh_token")).await, "another client's refresh token");

    let unknown_family = tokenauth::rules::token::RefreshToken::new_family().encode();
    for (name, token) in [
        ("garbage", "not-a-token"),
        ("a malformed refresh token", "tkrt_x"),
        ("a refresh token of no family", unknown_family.as_str()),
        ("a JWT no key of ours signed", PLACEHOLDER_AUTHORIZATION.trim_start_matches("Bearer ")),
    ] {
        assert_inactive(s.introspect(&api, token).await, name);
    }
}

#[tokio::test]
async fn an_account_change_that_ends_sessions_makes_its_tokens_inactive_at_once() {
    let s = setup("introspect-user").await;
    let app = register(&s.config, &s.clients, "reports", &[]).await;
    let tokens = s.login_as(Some(&app.id)).await;
    let (access, refresh) = (field(&tokens, "access_token"), field(&tokens, "refresh_token"));
    assert_eq!(s.introspect(&app, access).await.1["active"], true, "issued to it");
    assert_eq!(s.introspect(&app, refresh).await.1["active"], true);

    let revoker = Revoker::new(&s.config, s.clients.dynamodb.clone(), Arc::new(SystemClock));
    let username = Username::normalise(&s.username).unwrap();
    revoker.change_account(&username, &AccountChange::Disable, "introspection test", SystemClock.now()).await.unwrap();
    assert_inactive(s.introspect(&app, access).await, "the account's cut-off, seen at once");
    assert_inactive(s.introspect(&app, refresh).await, "the account disabled");
}

#[tokio::test]
async fn a_disabled_clients_tokens_are_inactive_at_once() {
    let s = setup("introspect-client").await;
    let app = register(&s.config, &s.clients, "reports", &[]).await;
    let api = register(&s.config, &s.clients, "orders-api", &[&s.config.audience]).await;
    let tokens = s.login_as(Some(&app.id)).await;
    let access = field(&tokens, "access_token");
    assert_eq!(s.introspect(&api, access).await.1["active"], true);
    assert_eq!(s.introspect(&api, access).await.1["client_id"], app.id.as_str());

    registry(&s.config, &s.clients).disable(&app.id, SystemClock.now()).await.unwrap();
    assert_inactive(s.introspect(&api, access).await, "issued to a client disabled just now");
}
