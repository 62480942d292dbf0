//! The token endpoint (`POST /auth/token`) against the local stack, through the real
//! service and handler: client authentication by secret (Basic and post), a wrong,
//! rotated-out or disabled client's secret, `private_key_jwt` once and not twice, a
//! refresh token refused to another client with its family untouched, the first-party
//! `/auth/refresh` JSON path still rotating, and bad input answered with RFC 6749 §5.2
//! errors (the whole corpus: `tokenauth::edge::http`'s unit tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, GrantType, StoredSecret};
use tokenauth::rules::dpop::{called_url, ProofKey};
use tokenauth::services::client_auth::{ClientAuthenticator, ClientCredentials};
use tokenauth::store::DynamoClients;
use tokenauth::{ApiError, Config, TokenService};
use tokenauth_tests::*;

/// The host of the sample events (what a DPoP proof's `htu` names).
const SAMPLE_HOST: &str = "api.example.test";

struct Setup {
    config: Config,
    clients: Clients,
    clock: Arc<ManualClock>,
    registry: DynamoClients,
    authenticator: ClientAuthenticator,
    endpoint: TokenService,
}

async fn setup() -> Setup {
    let config = config();
    assert!(!config.clients_table.is_empty(), "the stack has a Clients table");
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let registry = DynamoClients::new(clients.dynamodb.clone(), &config.clients_table);
    let authenticator = ClientAuthenticator::from_config(&config, clients.dynamodb.clone());
    let endpoint = refresh_service(&config, &clients, clock.clone()).await;
    Setup { config, clients, clock, registry, authenticator, endpoint }
}

impl Setup {
    /// A confidential client with client credentials and a fresh secret, registered.
    async fn confidential(&self, prefix: &str) -> (ClientRecord, String) {
        let secret = ClientSecret::new();
        let id = unique_username(prefix);
        let client = ClientRecord {
            client_type: ClientType::Confidential,
            grants: vec![GrantType::ClientCredentials],
            secrets: vec![StoredSecret { hash: secret.hash(&id), created_at: self.clock.now(), expires_at: None }],
            ..ClientRecord::public(&id, vec!["read".into()], Vec::new(), self.clock.now())
        };
        self.registry.create(&client).await.unwrap();
        (client, secret.encode())
    }

    async fn authenticate(&self, credentials: &ClientCredentials) -> Result<ClientRecord, ApiError> {
        self.authenticator.authenticate(credentials, self.clock.now()).await
    }

    async fn post(&self, path: &str, body: &str, authorization: Option<&str>) -> Response<Body> {
        tokenauth::edge::http::token(&self.endpoint, &token_request(path, body, authorization)).await
    }
}

/// A form POST to `path` as the HTTP API delivers it.
fn token_request(path: &str, body: &str, authorization: Option<&str>) -> Request {
    let mut event = event("token-client-credentials-basic.json");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = json!(body);
    match authorization {
        Some(value) => event["headers"]["authorization"] = json!(value),
        None => drop(event["headers"].as_object_mut().unwrap().remove("authorization")),
    }
    request_from_event(&event)
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

#[track_caller]
fn assert_invalid_client(response: &Response<Body>, after_basic: bool) {
    assert_eq!(response.status(), 401, "{:?}", response.body());
    assert_eq!(json_of(response)["error"], "invalid_client");
    assert_eq!(
        response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()),
        after_basic.then_some(r#"Basic realm="token""#),
        "WWW-Authenticate: Basic after an Authorization header (RFC 6749 §5.2), and only then"
    );
}

#[tokio::test]
async fn client_secret_basic_and_client_secret_post_authenticate_a_confidential_client() {
    let s = setup().await;
    let (client, secret) = s.confidential("svc").await;
    let id = client.client_id.clone();
    let by_basic = ClientCredentials::SecretBasic { client_id: id.clone(), secret: secret.clone() };
    assert_eq!(s.authenticate(&by_basic).await.unwrap(), client);
    let by_post = ClientCredentials::SecretPost { client_id: id.clone(), secret: secret.clone() };
    assert_eq!(s.authenticate(&by_post).await.unwrap(), client);
    // A confidential client presenting nothing, or an assertion, is not authenticated.
    let nothing = s.authenticate(&ClientCredentials::None { client_id: Some(id.clone()) }).await;
    assert!(matches!(nothing, Err(ApiError::InvalidClient { basic: false })), "{nothing:?}");

    // Through the handler, both methods get past client authentication (to the grant).
    for (body, authorization) in [
        ("grant_type=client_credentials".to_owned(), Some(basic(&id, &secret))),
        (format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"), None),
    ] {
        let response = s.post("/auth/token", &body, authorization.as_deref()).await;
        assert_ne!(json_of(&response)["error"], "invalid_client", "{:?}", response.body());
        assert!(response.status().as_u16() < 500, "{:?}", response.body());
    }
}

#[tokio::test]
async fn a_wrong_or_rotated_out_secret_is_invalid_client_with_basic_asked_for_after_basic() {
    let s = setup().await;
    let (mut client, old) = s.confidential("svc").await;
    let id = client.client_id.clone();
    let wrong = ClientSecret::new().encode();
    assert_invalid_client(
        &s.post("/auth/token", "grant_type=client_credentials", Some(&basic(&id, &wrong))).await,
        true,
    );
    let post = format!("grant_type=client_credentials&client_id={id}&client_secret={wrong}");
    assert_invalid_client(&s.post("/auth/token", &post, None).await, false);
    // Not a secret of ours at all, and an unknown client: the same answer.
    assert_invalid_client(&s.post("/auth/token", "grant_type=client_credentials", Some(&basic(&id, "x"))).await, true);
    let unknown = basic(&unique_username("nobody"), &old);
    assert_invalid_client(&s.post("/auth/token", "grant_type=client_credentials", Some(&unknown)).await, true);
    // A scheme we do not take in the Authorization header: refused, with the challenge.
    for scheme in ["Bearer a.b.c", "Digest username=\"x\""] {
        assert_invalid_client(&s.post("/auth/token", "grant_type=client_credentials", Some(scheme)).await, true);
    }

    // A rotation keeping the old secret 60 s: both work, then only the new one.
    let new = ClientSecret::new();
    client.rotate_secret(&new, s.clock.now(), 60);
    s.registry.replace(&client).await.unwrap();
    let with = |secret: &str| ClientCredentials::SecretBasic { client_id: id.clone(), secret: secret.to_owned() };
    s.authenticate(&with(&old)).await.expect("the old secret within its overlap");
    s.authenticate(&with(&new.encode())).await.expect("the new secret");
    s.clock.advance(61);
    assert!(matches!(s.authenticate(&with(&old)).await, Err(ApiError::InvalidClient { basic: true })));
    assert_invalid_client(&s.post("/auth/token", "grant_type=client_credentials", Some(&basic(&id, &old))).await, true);
    s.authenticate(&with(&new.encode())).await.expect("the new secret still");
}

#[tokio::test]
async fn a_disabled_client_is_invalid_client() {
    let s = setup().await;
    let (client, secret) = s.confidential("svc").await;
    let credentials = ClientCredentials::SecretPost { client_id: client.client_id.clone(), secret: secret.clone() };
    s.authenticate(&credentials).await.expect("active");
    s.registry.disable(&client.client_id, s.clock.now()).await.unwrap().expect("disabled");
    assert!(matches!(s.authenticate(&credentials).await, Err(ApiError::InvalidClient { basic: false })));
    let body = format!("grant_type=client_credentials&client_id={}&client_secret={secret}", client.client_id);
    assert_invalid_client(&s.post("/auth/token", &body, None).await, false);
}

/// A client registered with a JWKS of one P-256 key, and its key.
async fn assertion_client(s: &Setup) -> (ClientRecord, ProofKey) {
    let key = ProofKey::generate().unwrap();
    let mut jwk = serde_json::to_value(key.public_jwk()).unwrap();
    jwk["kid"] = json!("k1");
    let id = unique_username("jwt");
    let client = ClientRecord {
        client_type: ClientType::Confidential,
        grants: vec![GrantType::ClientCredentials],
        jwks: Some(json!({"keys": [jwk]}).to_string()),
        ..ClientRecord::public(&id, vec!["read".into()], Vec::new(), s.clock.now())
    };
    s.registry.create(&client).await.unwrap();
    (client, key)
}

fn assertion(key: &ProofKey, client_id: &str, audience: &str, now: u64) -> String {
    let claims = json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
                        "jti": tokenauth::rules::token::random_id()});
    key.sign(&json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}), &claims).unwrap()
}

#[tokio::test]
async fn a_client_assertion_is_accepted_once_and_its_replay_is_invalid_client() {
    let s = setup().await;
    let (client, key) = assertion_client(&s).await;
    let token_endpoint = format!("{}/auth/token", s.config.issuer.trim_end_matches('/'));
    let signed = assertion(&key, &client.client_id, &token_endpoint, s.clock.now());
    let credentials = ClientCredentials::PrivateKeyJwt { client_id: None, assertion: signed.clone() };
    assert_eq!(s.authenticate(&credentials).await.unwrap(), client, "the first use, found by its sub");
    let replayed = s.authenticate(&credentials).await;
    assert!(matches!(replayed, Err(ApiError::InvalidClient { basic: false })), "{replayed:?}");
    // The replay through the handler too (with the client_id this time).
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_assertion_type={}&client_assertion={signed}",
        client.client_id,
        tokenauth::edge::http::JWT_BEARER_ASSERTION
    );
    assert_invalid_client(&s.post("/auth/token", &body, None).await, false);

    // A fresh assertion through the handler passes authentication (on to the grant).
    let fresh = assertion(&key, &client.client_id, &token_endpoint, s.clock.now());
    let body = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={fresh}",
        tokenauth::edge::http::JWT_BEARER_ASSERTION
    );
    let response = s.post("/auth/token", &body, None).await;
    assert_ne!(json_of(&response)["error"], "invalid_client", "{:?}", response.body());

    // Another audience, another client's key, a secret for a JWKS client: refused.
    let elsewhere = assertion(&key, &client.client_id, "https://other.example.com/token", s.clock.now());
    let refused = s.authenticate(&ClientCredentials::PrivateKeyJwt { client_id: None, assertion: elsewhere }).await;
    assert!(matches!(refused, Err(ApiError::InvalidClient { .. })), "{refused:?}");
    let stranger = ProofKey::generate().unwrap();
    let forged = assertion(&stranger, &client.client_id, &token_endpoint, s.clock.now());
    let refused = s.authenticate(&ClientCredentials::PrivateKeyJwt { client_id: None, assertion: forged }).await;
    assert!(matches!(refused, Err(ApiError::InvalidClient { .. })), "{refused:?}");
    let secret =
        ClientCredentials::SecretPost { client_id: client.client_id.clone(), secret: ClientSecret::new().encode() };
    assert!(matches!(s.authenticate(&secret).await, Err(ApiError::InvalidClient { .. })));
}

/// The raw item of a family, read strongly consistent: every attribute as stored.
async fn family_item(s: &Setup, family_id: &str) -> HashMap<String, AttributeValue> {
    let out = s
        .clients
        .dynamodb
        .get_item()
        .table_name(&s.config.families_table)
        .key("family_id", AttributeValue::S(family_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item.expect("the family exists")
}

#[tokio::test]
async fn a_refresh_by_another_client_is_invalid_grant_and_leaves_the_family_byte_for_byte() {
    let s = setup().await;
    let login = login_service(&s.config, &s.clients, s.clock.clone()).await;
    let (username, password, _) = create_user(&s.config, &s.clients, "bound", &["read"]).await;
    let r0 = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let family_id = family_of(&r0);
    let before = family_item(&s, &family_id).await;
    assert_eq!(before["client_id"], AttributeValue::S(s.config.client_id.clone()));

    let other = unique_username("app");
    s.registry.create(&ClientRecord::public(&other, Vec::new(), Vec::new(), s.clock.now())).await.unwrap();
    let form = format!("grant_type=refresh_token&refresh_token={r0}&client_id={other}");
    for path in ["/auth/token", "/auth/refresh"] {
        let response = s.post(path, &form, None).await;
        assert_eq!(response.status(), 401, "{path}: {:?}", response.body());
        assert_eq!(json_of(&response)["error"], "invalid_grant", "{path}");
    }
    // The same through the legacy JSON body.
    let mut json_event = event("refresh-json.json");
    json_event["body"] = json!({"refresh_token": r0, "client_id": other}).to_string().into();
    let response = tokenauth::edge::http::token(&s.endpoint, &request_from_event(&json_event)).await;
    assert_eq!((response.status().as_u16(), json_of(&response)["error"].clone()), (401, json!("invalid_grant")));
    // A confidential client authenticating properly is refused the same way.
    let (service, secret) = s.confidential("svc").await;
    let mut with_refresh = service.clone();
    with_refresh.grants.push(GrantType::RefreshToken);
    s.registry.replace(&with_refresh).await.unwrap();
    let response = s
        .post(
            "/auth/token",
            &format!("grant_type=refresh_token&refresh_token={r0}"),
            Some(&basic(&service.client_id, &secret)),
        )
        .await;
    assert_eq!((response.status().as_u16(), json_of(&response)["error"].clone()), (401, json!("invalid_grant")));

    assert_eq!(
        family_item(&s, &family_id).await,
        before,
        "the family is untouched: no rotation, no reuse, no revocation"
    );
    assert!(revocations_of(&s.config, &s.clients, &family_id).await.is_empty(), "nothing revoked");
    // Its own client still rotates the very same token: it was never judged as reuse.
    let response = s.post("/auth/token", &format!("grant_type=refresh_token&refresh_token={r0}"), None).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    assert_ne!(json_of(&response)["refresh_token"].as_str().unwrap(), r0);
}

#[tokio::test]
async fn the_first_party_refresh_path_still_rotates_json_and_form() {
    let s = setup().await;
    let login = login_service(&s.config, &s.clients, s.clock.clone()).await;
    let (username, password, user_id) = create_user(&s.config, &s.clients, "legacy", &["read"]).await;
    let r0 = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let json = tokenauth::edge::http::token(&s.endpoint, &refresh_request(&r0, None, false)).await;
    assert_eq!(json.status(), 200, "{:?}", json.body());
    let body = json_of(&json);
    let r1 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r0);
    assert_eq!(body["token_type"], "Bearer");
    let claims = independently_verified(&s.config, &s.clients, body["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!((claims.sub.as_str(), claims.client_id.as_str()), (user_id.as_str(), "first-party"));
    let form = tokenauth::edge::http::token(&s.endpoint, &refresh_request(&r1, Some("read"), true)).await;
    assert_eq!(form.status(), 200, "{:?}", form.body());
    // The token endpoint with the first-party client named: the same rotation.
    let r2 = json_of(&form)["refresh_token"].as_str().unwrap().to_owned();
    let named = s
        .post("/auth/token", &format!("grant_type=refresh_token&refresh_token={r2}&client_id=first-party"), None)
        .await;
    assert_eq!(named.status(), 200, "{:?}", named.body());
    assert_eq!(family(&s.config, &s.clients, &family_of(&r0)).await.generation, 3);
}

/// The DPoP proof of a `POST /auth/token` on the sample events' host, made now by `key`.
fn token_proof(s: &Setup, key: &ProofKey, path: &str) -> String {
    let url = called_url(s.config.dpop.public_base_url.as_deref(), None, Some(SAMPLE_HOST), path).unwrap();
    key.proof("POST", &url, s.clock.now(), None).unwrap()
}

#[tokio::test]
async fn client_credentials_with_a_dpop_proof_are_bound_to_its_key_and_a_bad_or_replayed_proof_is_refused() {
    let s = setup().await;
    assert!(!s.config.dpop.proofs_table.is_empty(), "the stack has a Proofs table");
    let (client, secret) = s.confidential("svc-dpop").await;
    let authorization = basic(&client.client_id, &secret);
    let key = ProofKey::generate().unwrap();
    let endpoint = &s.endpoint;
    let post = |proofs: Vec<String>| {
        let mut request = token_request("/auth/token", "grant_type=client_credentials", Some(&authorization));
        for proof in proofs {
            request.headers_mut().append("dpop", proof.parse().unwrap());
        }
        async move { tokenauth::edge::http::token(endpoint, &request).await }
    };

    let proof = token_proof(&s, &key, "/auth/token");
    let bound = post(vec![proof.clone()]).await;
    assert_eq!(bound.status(), 200, "{:?}", bound.body());
    let body = json_of(&bound);
    assert_eq!(body["token_type"], "DPoP", "RFC 9449 §5: the response says the token is bound");
    let claims = independently_verified(&s.config, &s.clients, body["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims.cnf.map(|c| c.jkt), Some(key.thumbprint()), "cnf.jkt names the proof's key");
    assert_eq!(claims.sub, client.client_id);

    // RFC 9449 §5: an invalid proof is invalid_dpop_proof, whatever the grant; nothing issued.
    let refused = [
        ("replayed", proof),
        ("malformed", "garbage".to_owned()),
        ("for another URL", token_proof(&s, &key, "/auth/refresh")),
    ];
    for (name, proof) in refused {
        let response = post(vec![proof]).await;
        assert_eq!(response.status(), 400, "{name}: {:?}", response.body());
        assert_eq!(json_of(&response)["error"], "invalid_dpop_proof", "{name}");
        assert!(json_of(&response).get("access_token").is_none(), "{name}");
    }
    let two = post(vec![token_proof(&s, &key, "/auth/token"), token_proof(&s, &key, "/auth/token")]).await;
    assert_eq!(json_of(&two)["error"], "invalid_dpop_proof");

    // Without a proof: a bearer token, as before.
    let bearer = json_of(&post(Vec::new()).await);
    assert_eq!(bearer["token_type"], "Bearer", "{bearer}");
    let claims = independently_verified(&s.config, &s.clients, bearer["access_token"].as_str().unwrap()).await.unwrap();
    assert!(claims.cnf.is_none());
}

#[tokio::test]
async fn bad_token_requests_through_the_handler_get_rfc6749_errors_and_never_a_5xx() {
    let s = setup().await;
    let (client, secret) = s.confidential("svc").await;
    let both = basic(&client.client_id, &secret);
    let post_secret = format!("client_id={}&client_secret={secret}", client.client_id);
    let cases: Vec<(&str, Request, u16, &str)> = vec![
        ("missing grant_type", token_request("/auth/token", "scope=read", None), 400, "invalid_request"),
        (
            "unknown grant",
            token_request("/auth/token", "grant_type=password&username=a&password=b", None),
            400,
            "unsupported_grant_type",
        ),
        (
            "duplicated scope",
            token_request("/auth/token", "grant_type=client_credentials&scope=a&scope=b", Some(&both)),
            400,
            "invalid_request",
        ),
        (
            "header and body credentials",
            token_request("/auth/token", &format!("grant_type=client_credentials&{post_secret}"), Some(&both)),
            400,
            "invalid_request",
        ),
        (
            "malformed Basic",
            token_request("/auth/token", "grant_type=client_credentials", Some("Basic %%%")),
            401,
            "invalid_client",
        ),
        (
            "oversized",
            token_request(
                "/auth/token",
                &format!("grant_type=client_credentials&scope={}", "a".repeat(17 * 1024)),
                None,
            ),
            413,
            "invalid_request",
        ),
        (
            "refresh grant at /auth/refresh only",
            token_request("/auth/refresh", "grant_type=client_credentials", Some(&both)),
            400,
            "unsupported_grant_type",
        ),
        (
            "a public client's client credentials",
            token_request("/auth/token", "grant_type=client_credentials&client_id=first-party", None),
            400,
            "unauthorized_client",
        ),
        (
            "a refresh token that is not ours",
            token_request("/auth/token", "grant_type=refresh_token&refresh_token=nope", None),
            401,
            "invalid_grant",
        ),
    ];
    for (name, request, status, code) in cases {
        let response = tokenauth::edge::http::token(&s.endpoint, &request).await;
        assert_eq!(response.status().as_u16(), status, "{name}: {:?}", response.body());
        assert_eq!(json_of(&response)["error"], code, "{name}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
    }
    let mut json_event = event("token-client-credentials-basic.json");
    json_event["headers"]["content-type"] = json!("application/json");
    json_event["body"] = json!({"grant_type": "client_credentials"}).to_string().into();
    let response = tokenauth::edge::http::token(&s.endpoint, &request_from_event(&json_event)).await;
    assert_eq!((response.status().as_u16(), json_of(&response)["error"].clone()), (400, json!("invalid_request")));
    let mut get = event("token-client-credentials-basic.json");
    get["requestContext"]["http"]["method"] = json!("GET");
    let response = tokenauth::edge::http::token(&s.endpoint, &request_from_event(&get)).await;
    assert_eq!(response.status(), 405);
    // The sample event: a client never registered, Basic.
    let sample =
        tokenauth::edge::http::token(&s.endpoint, &request_from_event(&event("token-client-credentials-basic.json")))
            .await;
    assert_invalid_client(&sample, true);
}
