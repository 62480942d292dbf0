//! IAM proven from the calls, both ways. Each function's paths run against the local stack
//! with clients that record every call as IAM authorises it (`tokenauth_tests::iam`); then
//! `infra/local/iam_check.py` transforms `infra/template.yaml` with the SAM translator and
//! judges every call against that function's role, and every grant against the calls.
//! The emulators enforce no IAM: this is where a missing or an excess permission shows.
//! KMS calls are judged against the key's policy too (the template's keys, and the
//! `SIGNING_KEY_POLICY` rotation creates keys with), as KMS judges them; a second test shows
//! what the key policies refuse that IAM alone would not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::dpop::{called_url, ProofKey};
use tokenauth::rules::keys::set::{KeyKind, KeyStep};
use tokenauth::rules::username::Username;
use tokenauth::services::discovery::DiscoveryService;
use tokenauth::services::keys::KeyManager;
use tokenauth::store::AccountChange;
use tokenauth::{Config, Revoker};
use tokenauth_tests::iam::{IamCall, IamRecorder, Resource};
use tokenauth_tests::*;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const STACK: &str = "tokenauth";

/// The template's functions, each judged against its own role.
const FUNCTIONS: [&str; 9] = [
    "LoginFunction",
    "RefreshFunction",
    "RevokeFunction",
    "IntrospectFunction",
    "AuthorizerFunction",
    "JwksFunction",
    "KeyRotationFunction",
    "WhoamiFunction",
    "AccountFunction",
];

/// Names a call's resource as the template names it, with the tag condition of a KMS key.
struct Namer {
    tables: BTreeMap<String, &'static str>,
    sealing_key: String,
    /// The key-set signing key (`KEY_SET_SIGNING_KEY_ID` of the stack), where the stack has one.
    set_key: Option<String>,
    /// The envelope key (`ENVELOPE_KEY_ID` of the stack), where the stack has one.
    envelope_key: Option<String>,
    tags: BTreeMap<String, Option<String>>,
    /// The tags of the configurations' sets, each the stack's own set in the template.
    key_set_tags: BTreeSet<String>,
}

/// A key id or ARN as the bare id.
fn bare(id: &str) -> String {
    id.rsplit_once(":key/").map_or(id, |(_, id)| id).to_owned()
}

impl Namer {
    async fn new(configs: &[&Config], clients: &Clients) -> Self {
        let mut tables = BTreeMap::new();
        for config in configs {
            tables.insert(config.users_table.clone(), "UsersTable");
            tables.insert(config.families_table.clone(), "FamiliesTable");
            tables.insert(config.revocations_table.clone(), "RevocationsTable");
            tables.insert(config.keys_table.clone(), "KeysTable");
            tables.insert(config.source_limits.table.clone(), "LimitsTable");
            tables.insert(config.dpop.proofs_table.clone(), "ProofsTable");
            tables.insert(config.clients_table.clone(), "ClientsTable");
        }
        let config = configs[0];
        let mut tags = BTreeMap::new();
        for key in clients.kms.list_keys().limit(1000).send().await.unwrap().keys() {
            let id = key.key_id().unwrap().to_owned();
            let listed = clients.kms.list_resource_tags().key_id(&id).send().await.unwrap();
            let tag =
                listed.tags().iter().find(|t| t.tag_key() == "tokenauth:key-set").map(|t| t.tag_value().to_owned());
            tags.insert(id, tag);
        }
        let set_key = std::env::var("KEY_SET_SIGNING_KEY_ID").ok().filter(|k| !k.is_empty());
        let envelope_key = Some(config.envelope_key_id.clone()).filter(|k| !k.is_empty());
        Self {
            tables,
            sealing_key: config.sealing_key_id.clone(),
            set_key,
            envelope_key,
            tags,
            key_set_tags: configs.iter().map(|c| c.key_set_tag.clone()).collect(),
        }
    }

    fn name(&self, call: &IamCall) -> Value {
        let mut context: BTreeMap<String, Vec<String>> = call.context.clone();
        // The set's tag as the template writes it: the stack name.
        for values in context.values_mut() {
            for v in values.iter_mut() {
                if self.key_set_tags.contains(v) {
                    *v = STACK.to_owned();
                }
            }
        }
        let resource = match &call.resource {
            Resource::Table { name, index } => {
                let logical = self.tables.get(name).unwrap_or_else(|| panic!("table {name} is not one of the stack's"));
                let index = index.as_ref().map(|i| format!("/index/{i}")).unwrap_or_default();
                format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{logical}{index}")
            }
            // Decrypt names no key: the ciphertext does, and the only one we decrypt is the
            // sealing secret's.
            Resource::Key(None) if call.action == "kms:Decrypt" => {
                format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/SealingKey")
            }
            Resource::Key(None) => format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/a-new-key"),
            Resource::Key(Some(id)) => {
                let id = bare(id);
                let id = id.as_str();
                if id == bare(&self.sealing_key) {
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/SealingKey")
                } else if self.set_key.as_deref().map(bare).as_deref() == Some(id) {
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/KeySetSigningKey")
                } else if self.envelope_key.as_deref().map(bare).as_deref() == Some(id) {
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/EnvelopeKey")
                } else {
                    if let Some(Some(tag)) = self.tags.get(id) {
                        let tag = if self.key_set_tags.contains(tag) { STACK.to_owned() } else { tag.clone() };
                        context.insert("aws:ResourceTag/tokenauth:key-set".to_owned(), vec![tag]);
                    }
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}")
                }
            }
        };
        json!({"action": call.action, "resource": resource, "context": context})
    }
}

/// A signing key set of the test's own, of one kind, its first key made current as a new
/// deployment's first rotation makes it: both kinds are signed with whatever kind the stack
/// started with, and the stack's set is left as it is.
async fn own_key_set(plain: &Clients, kind: KeyKind) -> Config {
    let table = format!("keys-{}", unique_username("iam"));
    create_keys_table(plain, &table).await;
    let tag = unique_username("iam");
    let config = Config { signing_key_kind: kind, ..config_with(&[("KEYS_TABLE", &table), ("KEY_SET_TAG", &tag)]) };
    let manager = KeyManager::from_config(&config, plain.dynamodb.clone(), plain.kms.clone(), Arc::new(SystemClock));
    let first = manager.rotate().await.unwrap();
    assert!(matches!(first, Some(KeyStep::Bootstrapped { .. })), "{first:?}");
    assert_eq!(key_set(&config, plain).await.current().unwrap().kind, kind);
    config
}

/// The KMS calls recorded so far.
fn kms_calls(recorder: &IamRecorder) -> Vec<IamCall> {
    recorder.calls().into_iter().filter(|c| c.action.starts_with("kms:")).collect()
}

/// A signer starting on a set whose current key is an envelope key: its one KMS call is the
/// Decrypt of that key, in the context that binds it to its kid; the tokens after it cost none.
async fn signs_with_its_envelope_key<F: std::future::Future<Output = Value>>(
    envelope: &Config,
    recorder: &IamRecorder,
    started_with: usize,
    tokens: F,
) {
    let current = key_set(envelope, &tokenauth_tests::clients().await).await.current().unwrap().clone();
    let purpose = |c: &IamCall| c.context.get("kms:EncryptionContext:tokenauth").cloned().unwrap_or_default();
    let decrypts: Vec<IamCall> = kms_calls(recorder)
        .into_iter()
        .skip(started_with)
        .filter(|c| c.action == "kms:Decrypt" && purpose(c) == ["envelope-signing-key"])
        .collect();
    assert_eq!(decrypts.len(), 1, "{decrypts:?}");
    assert_eq!(decrypts[0].context["kms:EncryptionContext:kid"], std::slice::from_ref(&current.kid));
    let before = kms_calls(recorder).len();
    let tokens = tokens.await;
    assert_eq!(kid_of(tokens["access_token"].as_str().unwrap()), current.kid, "signed with the envelope key");
    let after = kms_calls(recorder).split_off(before);
    assert!(after.is_empty(), "no KMS call once the key is decrypted: {after:?}");
}

/// A proof by `key` for `POST path` on the sample events' host, made now.
fn dpop_proof(config: &Config, key: &ProofKey, path: &str) -> String {
    let url = called_url(config.dpop.public_base_url.as_deref(), None, Some("api.example.test"), path).unwrap();
    key.proof("POST", &url, SystemClock.now(), None).unwrap()
}

/// The login sample event for these credentials with a proof by `key`.
fn dpop_login(config: &Config, username: &str, password: &str, key: &ProofKey) -> lambda_http::Request {
    let mut event = event("login-http-api.json");
    event["body"] = json!({"username": username, "password": password}).to_string().into();
    event["headers"]["dpop"] = dpop_proof(config, key, "/auth/login").into();
    request_from_event(&event)
}

/// login, with a KMS key current: success (a new device), a known device, a wrong password,
/// a DPoP login, and KMS down after the password check (the family written for the unsigned token is
/// deleted); with an envelope key current: its decrypt at start, then a login.
async fn login_paths(config: &Config, envelope: &Config, recorder: &IamRecorder) {
    let clients = clients_recorded_by(recorder).await;
    let login = login_service(config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(config, &tokenauth_tests::clients().await, "iam-login", &["read"]).await;
    let first = login_tokens(&login, &username, &password).await;
    let device = first["device_token"].as_str().unwrap();
    let body = json!({"username": username, "password": password, "device_token": device});
    let known = tokenauth::edge::http::login(&login, &login_event_with_body(&body.to_string())).await;
    assert_eq!(known.status(), 200);
    let wrong = tokenauth::edge::http::login(&login, &login_request(&username, "wrong", None)).await;
    assert_eq!(wrong.status(), 401);
    let key = ProofKey::generate().unwrap();
    let bound = tokenauth::edge::http::login(&login, &dpop_login(config, &username, &password, &key)).await;
    assert_eq!(json_of(&bound)["token_type"], "DPoP", "a DPoP login: its proof recorded");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let kms_down = aws_sdk_kms::Client::from_conf(clients.kms.config().to_builder().endpoint_url(&closed_url).build());
    let signer = tokenauth::services::keys::KeySetSigner::from_config(
        config,
        clients.dynamodb.clone(),
        kms_down,
        Arc::new(SystemClock),
    )
    .await;
    let down = tokenauth::LoginService::new(config, clients.dynamodb.clone(), Arc::new(signer), Arc::new(SystemClock));
    let refused = tokenauth::edge::http::login(&down, &login_request(&username, &password, None)).await;
    assert_eq!(refused.status(), 503);

    let started_with = kms_calls(recorder).len();
    let login = login_service(envelope, &clients, Arc::new(SystemClock)).await;
    signs_with_its_envelope_key(envelope, recorder, started_with, login_tokens(&login, &username, &password)).await;
}

/// refresh, with a KMS key current: rotation, the exactly-once retry, following an account
/// change, reuse, a DPoP session's rotation; with an envelope key current: its decrypt at start, then a rotation.
async fn refresh_paths(config: &Config, envelope: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let login = login_service(config, &plain, Arc::new(SystemClock)).await;
    let refresh = refresh_service(config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(config, &plain, "iam-refresh", &["read", "write"]).await;
    let r0 = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let rotate = |token: String| {
        let refresh = &refresh;
        async move { tokenauth::edge::http::token(refresh, &refresh_request(&token, None, false)).await }
    };
    let r1 = json_of(&rotate(r0.clone()).await)["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(rotate(r0.clone()).await.status(), 200, "the retry within the leeway");
    let revoker = Revoker::new(config, plain.dynamodb.clone(), Arc::new(SystemClock));
    let name = Username::normalise(&username).unwrap();
    revoker
        .change_account(&name, &AccountChange::SetScopes(vec!["read".into()]), "iam", SystemClock.now())
        .await
        .unwrap();
    let r2 = json_of(&rotate(r1.clone()).await)["refresh_token"].as_str().unwrap().to_owned();
    assert!(!r2.is_empty(), "the family followed the account");
    let _ = rotate(r2).await;
    assert_eq!(rotate(r0).await.status(), 401, "reuse of a long-rotated token");

    // A DPoP session: bound at login, rotated with a proof (recorded) from its key.
    let key = ProofKey::generate().unwrap();
    let bound = json_of(&tokenauth::edge::http::login(&login, &dpop_login(config, &username, &password, &key)).await);
    let mut event = event("refresh-json.json");
    event["body"] = json!({"refresh_token": bound["refresh_token"]}).to_string().into();
    event["headers"]["dpop"] = dpop_proof(config, &key, "/auth/refresh").into();
    let rotated = tokenauth::edge::http::token(&refresh, &request_from_event(&event)).await;
    assert_eq!(json_of(&rotated)["token_type"], "DPoP", "a DPoP refresh: its proof recorded");

    client_grant_paths(config, &clients, &login, &username, &password).await;
    // The token endpoint with private_key_jwt: the client read, its assertion's jti recorded.
    let client_key = ProofKey::generate().unwrap();
    let client_id = unique_username("iam-jwt");
    let mut jwk = serde_json::to_value(client_key.public_jwk()).unwrap();
    jwk["kid"] = json!("k1");
    let registered = tokenauth::rules::clients::ClientRecord {
        client_type: tokenauth::rules::clients::ClientType::Confidential,
        grants: vec![tokenauth::rules::clients::GrantType::ClientCredentials],
        jwks: Some(json!({"keys": [jwk]}).to_string()),
        ..tokenauth::rules::clients::ClientRecord::public(&client_id, Vec::new(), Vec::new(), SystemClock.now())
    };
    tokenauth::store::DynamoClients::new(plain.dynamodb.clone(), &config.clients_table)
        .create(&registered)
        .await
        .unwrap();
    let now = SystemClock.now();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": config.issuer, "exp": now + 60,
                        "jti": tokenauth::rules::token::random_id()});
    let assertion = client_key.sign(&json!({"alg": "ES256", "kid": "k1"}), &claims).unwrap();
    let mut token_event = tokenauth_tests::event("token-client-credentials-basic.json");
    token_event["headers"].as_object_mut().unwrap().remove("authorization");
    token_event["body"] = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        tokenauth::edge::http::JWT_BEARER_ASSERTION
    )
    .into();
    let answered = tokenauth::edge::http::token(&refresh, &request_from_event(&token_event)).await;
    assert_ne!(json_of(&answered)["error"], "invalid_client", "the assertion authenticated its client");

    let r0 = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let started_with = kms_calls(recorder).len();
    let refresh = refresh_service(envelope, &clients, Arc::new(SystemClock)).await;
    let rotated = async { json_of(&tokenauth::edge::http::token(&refresh, &refresh_request(&r0, None, false)).await) };
    signs_with_its_envelope_key(envelope, recorder, started_with, rotated).await;
}

/// The token endpoint's client grants, on the refresh function's role: client credentials
/// (a signature), and token exchange (the key set, the subject's jti, session, account and
/// clients read strongly, a signature).
async fn client_grant_paths(
    config: &Config,
    clients: &Clients,
    login: &tokenauth::LoginService,
    username: &str,
    password: &str,
) {
    use tokenauth::rules::clients::{ClientRecord, ClientType, GrantType};
    use tokenauth::services::token_endpoint::{ClientCredentialsRequest, ExchangeRequest};
    let registry =
        tokenauth::store::DynamoClients::new(tokenauth_tests::clients().await.dynamodb, &config.clients_table);
    let confidential = |grant: GrantType| ClientRecord {
        client_type: ClientType::Confidential,
        grants: vec![grant],
        ..ClientRecord::public(&unique_username("iam-svc"), vec!["read".into()], vec!["https://api.c.test".into()], 0)
    };
    let (service, exchanger) = (confidential(GrantType::ClientCredentials), confidential(GrantType::TokenExchange));
    registry.create(&service).await.unwrap();
    registry.create(&exchanger).await.unwrap();
    let signer = key_set_signer(config, clients, Arc::new(SystemClock)).await;
    let grants = tokenauth::services::grants::GrantService::new(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(signer),
        Arc::new(SystemClock),
        tokenauth::services::client_auth::ClientAuthenticator::from_config(config, clients.dynamodb.clone()),
    );
    let meta = tokenauth::RequestMeta::default();
    let issued = grants.client_credentials(&service, ClientCredentialsRequest::default(), &meta).await;
    assert!(issued.is_ok(), "{issued:?}");
    let subject_token = login_tokens(login, username, password).await["access_token"].as_str().unwrap().to_owned();
    let request = ExchangeRequest {
        subject_token,
        subject_token_type: tokenauth::rules::token::ACCESS_TOKEN_TYPE_URI.into(),
        ..ExchangeRequest::default()
    };
    let exchanged = grants.token_exchange(&exchanger, request, &meta).await;
    assert!(exchanged.is_ok(), "{exchanged:?}");
}

/// revoke: a refresh token, an access token, revoke-all.
async fn revoke_paths(config: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let login = login_service(config, &plain, Arc::new(SystemClock)).await;
    let revoke = revocation_service(config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(config, &plain, "iam-revoke", &["read"]).await;
    for field in ["refresh_token", "access_token"] {
        let tokens = login_tokens(&login, &username, &password).await;
        let body = format!("token={}", tokens[field].as_str().unwrap());
        let mut event = event("revoke-refresh-token-form.json");
        event["body"] = Value::String(body);
        assert_eq!(tokenauth::edge::http::revoke(&revoke, &request_from_event(&event)).await.status(), 200);
    }
    let tokens = login_tokens(&login, &username, &password).await;
    let mut event = event("revoke-all.json");
    event["headers"]["authorization"] = Value::String(format!("Bearer {}", tokens["access_token"].as_str().unwrap()));
    assert_eq!(tokenauth::edge::http::revoke(&revoke, &request_from_event(&event)).await.status(), 200);

    // A confidential client revoking its own session's refresh token, authenticated by
    // private_key_jwt (RFC 7009 §2.1): the client read, its assertion's jti recorded.
    let client = JwtClient::register(config, &plain, "iam-revoker").await;
    let app_login =
        login_service(&config_with(&[("CLIENT_ID", client.id.as_str())]), &plain, Arc::new(SystemClock)).await;
    let tokens = login_tokens(&app_login, &username, &password).await;
    let body = client.asking_about(config, tokens["refresh_token"].as_str().unwrap());
    let response = tokenauth::edge::http::revoke(&revoke, &revoke_request(&body, true)).await;
    assert_eq!(response.status(), 200, "revoked by its own client: {:?}", response.body());
}

/// A confidential client that authenticates by `private_key_jwt` (RFC 7523), registered
/// with the JWKS of its one key.
struct JwtClient {
    id: String,
    key: ProofKey,
}

impl JwtClient {
    async fn register(config: &Config, plain: &Clients, prefix: &str) -> Self {
        use tokenauth::rules::clients::{ClientRecord, ClientType};
        let (id, key) = (unique_username(prefix), ProofKey::generate().unwrap());
        let mut jwk = serde_json::to_value(key.public_jwk()).unwrap();
        jwk["kid"] = json!("k1");
        let record = ClientRecord {
            client_type: ClientType::Confidential,
            jwks: Some(json!({"keys": [jwk]}).to_string()),
            ..ClientRecord::public(&id, Vec::new(), Vec::new(), SystemClock.now())
        };
        tokenauth::store::DynamoClients::new(plain.dynamodb.clone(), &config.clients_table)
            .create(&record)
            .await
            .unwrap();
        Self { id, key }
    }

    /// A form body about `token` (revocation, introspection) with a fresh assertion of
    /// this client (a `jti` of its own).
    fn asking_about(&self, config: &Config, token: &str) -> String {
        let claims = json!({"iss": self.id, "sub": self.id, "aud": config.issuer, "exp": SystemClock.now() + 60,
                            "jti": tokenauth::rules::token::random_id()});
        let assertion = self.key.sign(&json!({"alg": "ES256", "kid": "k1"}), &claims).unwrap();
        format!(
            "token={token}&client_assertion_type={}&client_assertion={assertion}",
            tokenauth::edge::http::JWT_BEARER_ASSERTION
        )
    }
}

/// introspect: a confidential client asks about an access token (its client, the denylist,
/// the session, the account, the key set) and a refresh token (its family, the account).
async fn introspect_paths(config: &Config, recorder: &IamRecorder) {
    use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, StoredSecret};
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let (client_id, secret, now) = (unique_username("iam-api"), ClientSecret::new(), SystemClock.now());
    let record = ClientRecord {
        client_type: ClientType::Confidential,
        secrets: vec![StoredSecret { hash: secret.hash(&client_id), created_at: now, expires_at: None }],
        ..ClientRecord::public(&client_id, Vec::new(), Vec::new(), now)
    };
    tokenauth::store::DynamoClients::new(plain.dynamodb.clone(), &config.clients_table).create(&record).await.unwrap();
    let app_config = config_with(&[("CLIENT_ID", client_id.as_str())]);
    let login = login_service(&app_config, &plain, Arc::new(SystemClock)).await;
    let introspection = tokenauth::IntrospectionService::from_config(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let (username, password, _) = create_user(config, &plain, "iam-introspect", &["read"]).await;
    let tokens = login_tokens(&login, &username, &password).await;
    let authorization = basic_authorization(&client_id, &secret.encode());
    for field in ["access_token", "refresh_token"] {
        let request = introspect_request(&format!("token={}", tokens[field].as_str().unwrap()), Some(&authorization));
        let response = tokenauth::edge::http::introspect(&introspection, &request).await;
        assert_eq!(json_of(&response)["active"], true, "{field}");
    }
    // A client authenticating with private_key_jwt: its assertion's jti recorded once.
    let jwt_client = JwtClient::register(config, &plain, "iam-api-jwt").await;
    let body = jwt_client.asking_about(config, tokens["access_token"].as_str().unwrap());
    let response = tokenauth::edge::http::introspect(&introspection, &introspect_request(&body, None)).await;
    assert_eq!(response.status(), 200, "the assertion authenticated its client: {:?}", response.body());
}

/// account: a password change refused (a wrong current password) and made, the sessions
/// listed, one ended, "sign out everywhere else", the account deleted (and erased), each
/// through the handler's route with the sample event's shape and a real token.
async fn account_paths(config: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let login = login_service(config, &plain, Arc::new(SystemClock)).await;
    let account = tokenauth::AccountService::from_config(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let (username, password, _) = create_user(config, &plain, "iam-account", &["read"]).await;
    // The caller's session and two others for the password change to end.
    let sessions = [
        login_tokens(&login, &username, &password).await,
        login_tokens(&login, &username, &password).await,
        login_tokens(&login, &username, &password).await,
    ];
    let bearer = format!("Bearer {}", sessions[0]["access_token"].as_str().unwrap());
    let call = |name: &str, body: Option<Value>, sid: Option<String>| {
        let mut event = event(name);
        event["headers"]["authorization"] = Value::String(bearer.clone());
        if let Some(body) = body {
            event["body"] = Value::String(body.to_string());
        }
        if let Some(sid) = sid {
            let path = format!("/auth/sessions/{sid}");
            event["rawPath"] = Value::String(path.clone());
            event["requestContext"]["http"]["path"] = Value::String(path);
            event["pathParameters"]["sid"] = Value::String(sid);
        }
        request_from_event(&event)
    };
    let new_password = format!("violet anchor {} drifts slowly", tokenauth::rules::token::random_id());
    let steps = [
        (
            "a wrong current password",
            "account-change-password.json",
            Some(json!({"current_password": "not-the-password-9", "new_password": new_password})),
            None,
            401,
        ),
        (
            "a password change",
            "account-change-password.json",
            Some(json!({"current_password": password, "new_password": new_password})),
            None,
            200,
        ),
        ("the sessions", "account-list-sessions.json", None, None, 200),
    ];
    for (what, name, body, sid, status) in steps {
        let response = tokenauth::edge::account::account(&account, &call(name, body, sid)).await;
        assert_eq!(response.status(), status, "{what}: {:?}", response.body());
    }
    // Two more sessions (the change ended the others): end one, then every other.
    let more =
        [login_tokens(&login, &username, &new_password).await, login_tokens(&login, &username, &new_password).await];
    let sid = family_of(more[0]["refresh_token"].as_str().unwrap());
    let steps = [
        ("one session ended", "account-end-session.json", None, Some(sid), 204),
        ("sign out everywhere else", "account-end-other-sessions.json", None, None, 204),
        ("a wrong password", "account-delete.json", Some(json!({"password": "not-the-password-9"})), None, 401),
        ("the account deleted", "account-delete.json", Some(json!({"password": new_password})), None, 204),
    ];
    for (what, name, body, sid, status) in steps {
        let response = tokenauth::edge::account::account(&account, &call(name, body, sid)).await;
        assert_eq!(response.status(), status, "{what}: {:?}", response.body());
    }
}

/// authorizer: start, a valid token, a due poll, an unknown kid.
async fn authorizer_paths(config: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let config = Config {
        authorizer: tokenauth::platform::config::AuthorizerSettings { rules: vec![], ..config.authorizer.clone() },
        ..config.clone()
    };
    let a = Authorizer::from_config(&config, clients.dynamodb.clone(), clock.clone());
    a.warm_up().await;
    let login = login_service(&config, &plain, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &plain, "iam-authz", &["read"]).await;
    let token = login_tokens(&login, &username, &password).await["access_token"].as_str().unwrap().to_owned();
    let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {token}"));
    clock.advance(config.authorizer.poll_every.as_secs() + 1);
    a.handle(&event).await.unwrap();
    let stranger = create_signing_key(&plain.kms, aws_sdk_kms::types::KeySpec::EccNistP256).await;
    let foreign = tokenauth::services::keys::KmsSigner::load(plain.kms.clone(), &stranger).await.unwrap();
    let forged = tokenauth::rules::keys::Signer::sign_jws(&foreign, b"{}").await.unwrap();
    clock.advance(config.authorizer.poll_every.as_secs() + 1);
    a.handle(&event_text_with("authorizer-http-api-v2.json", &format!("Bearer {forged}"))).await.unwrap();
    // A DPoP-bound token with its proof: the proof recorded in the Proofs table.
    let client = tokenauth::rules::dpop::ProofKey::generate().unwrap();
    let jkt = client.thumbprint();
    let signer = key_set_signer(&config, &plain, Arc::new(SystemClock)).await;
    let issuer = tokenauth::services::issuer_for(Arc::new(signer), &config);
    let grant = tokenauth::rules::token::AccessGrant {
        subject: "iam-dpop",
        client_id: "first-party",
        scope: "read",
        session_id: "iam-dpop-session",
        bound_to: Some(&jkt),
    };
    let now = SystemClock.now();
    let bound =
        issuer.issue(&grant, &tokenauth::rules::token::RefreshToken::new_family(), now).await.unwrap().access_token;
    let url = "https://abc123.execute-api.us-east-1.amazonaws.com/api/items";
    let proof = client.proof("GET", url, now, Some(&bound)).unwrap();
    let mut dpop = tokenauth_tests::event("authorizer-http-api-v2-dpop.json");
    dpop["headers"]["authorization"] = Value::String(format!("DPoP {bound}"));
    dpop["headers"]["dpop"] = Value::String(proof);
    let answer = serde_json::to_value(a.handle(&dpop.to_string()).await.unwrap()).unwrap();
    // No route rule here: denied for its scope, after every check and the proof's record.
    assert_eq!(answer["context"]["sub"], "iam-dpop", "the DPoP request passed the proof's checks: {answer}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// jwks: the document and the metadata.
async fn jwks_paths(config: &Config, recorder: &IamRecorder) {
    let clients = clients_recorded_by(recorder).await;
    let service = DiscoveryService::from_config(config, clients.dynamodb.clone(), clients.kms.clone());
    service.jwks().await.unwrap();
    service.metadata();
}

/// key-rotation: every step of the schedule on a set of its own with KMS keys (first key
/// with the sealing secret, successor, promotion, retirement and the deletion it
/// schedules), then the migration to envelope keys (`SIGNING_KEY_KIND=envelope`: a key
/// pair made and bound to its kid, promoted, the last KMS key retired).
async fn key_rotation_paths(config: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let config = &Config { signing_key_kind: KeyKind::Kms, ..config.clone() };
    let timings = config.key_timings();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let manager = KeyManager::from_config(config, clients.dynamodb.clone(), clients.kms.clone(), clock.clone());
    for advance in [
        0,
        timings.max_age.as_secs() - timings.publish_lead.as_secs(),
        timings.publish_lead.as_secs(),
        timings.retire_after.as_secs(),
    ] {
        clock.advance(advance);
        assert!(manager.rotate().await.unwrap().is_some(), "a step was due");
    }
    let envelope = Config { signing_key_kind: KeyKind::Envelope, ..config.clone() };
    let migrating = KeyManager::from_config(&envelope, clients.dynamodb.clone(), clients.kms.clone(), clock.clone());
    for (advance, step) in
        [(0, "added"), (timings.publish_lead.as_secs(), "promoted"), (timings.retire_after.as_secs(), "retired")]
    {
        clock.advance(advance);
        let done = migrating.rotate().await.unwrap();
        assert!(done.is_some(), "the envelope key {step}");
    }
    let set = manager.list().await.unwrap();
    let current = set.current().unwrap();
    assert_eq!(current.kind, KeyKind::Envelope, "{set:?}");
    assert_eq!(bare(&current.kms_key_id), bare(&envelope.envelope_key_id), "its private half is under ENVELOPE_KEY_ID");
    assert!(current.wrapped_private_key.is_some());
    // Every KMS key it created carries SIGNING_KEY_POLICY (the emulator keeps what
    // CreateKey was given) and the set's tag.
    let policy = config.signing_key_policy.as_deref().expect("the rotation's config sets a policy");
    let kms_keys: Vec<_> = set.entries.iter().filter(|e| e.kind == KeyKind::Kms).collect();
    assert_eq!(kms_keys.len(), 2, "{set:?}");
    for key in kms_keys {
        let id = key.kms_key_id.rsplit_once(":key/").map_or(key.kms_key_id.as_str(), |(_, id)| id);
        let got = plain.kms.get_key_policy().key_id(id).policy_name("default").send().await.unwrap();
        let got: Value = serde_json::from_str(got.policy().unwrap()).unwrap();
        assert_eq!(got, serde_json::from_str::<Value>(policy).unwrap(), "key {id}");
        let tags = plain.kms.list_resource_tags().key_id(id).send().await.unwrap();
        assert!(
            tags.tags().iter().any(|t| t.tag_key() == "tokenauth:key-set" && t.tag_value() == config.key_set_tag),
            "key {id} is tagged for the set"
        );
    }
}

/// Runs every function's paths once; the recorded calls, named as the template names them.
async fn recorded_calls() -> Value {
    let config = config();
    let plain = tokenauth_tests::clients().await;
    let rotation_table = format!("keys-{}", unique_username("iam"));
    create_keys_table(&plain, &rotation_table).await;
    // A key policy of the template's shape (the emulator keeps it but enforces none).
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministersWithoutUse", "Effect": "Allow",
         "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
         "Action": ["kms:DescribeKey", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"], "Resource": "*"},
        {"Sid": "SignersSign", "Effect": "Allow",
         "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/login")}, "Action": "kms:Sign", "Resource": "*"}]});
    let rotation_config = config_with(&[
        ("KEYS_TABLE", &rotation_table),
        ("KEY_SET_TAG", &unique_username("iam")),
        ("SIGNING_KEY_POLICY", &policy.to_string()),
    ]);

    let mut recorders: BTreeMap<&str, IamRecorder> = BTreeMap::new();
    for function in FUNCTIONS {
        recorders.insert(function, IamRecorder::default());
    }
    // Login and refresh sign with each kind of key, on sets of their own.
    let kms_set = own_key_set(&plain, KeyKind::Kms).await;
    let envelope_set = own_key_set(&plain, KeyKind::Envelope).await;
    login_paths(&kms_set, &envelope_set, &recorders["LoginFunction"]).await;
    refresh_paths(&kms_set, &envelope_set, &recorders["RefreshFunction"]).await;
    revoke_paths(&config, &recorders["RevokeFunction"]).await;
    introspect_paths(&config, &recorders["IntrospectFunction"]).await;
    authorizer_paths(&config, &recorders["AuthorizerFunction"]).await;
    jwks_paths(&config, &recorders["JwksFunction"]).await;
    key_rotation_paths(&rotation_config, &recorders["KeyRotationFunction"]).await;
    account_paths(&config, &recorders["AccountFunction"]).await;
    // whoami makes no AWS call (it links no AWS SDK).

    let main_namer = Namer::new(&[&config, &kms_set, &envelope_set], &plain).await;
    let rotation_namer = Namer::new(&[&rotation_config, &config], &plain).await;
    let mut functions = serde_json::Map::new();
    for (function, recorder) in &recorders {
        let namer = if *function == "KeyRotationFunction" { &rotation_namer } else { &main_namer };
        let mut calls: Vec<Value> = recorder.calls().iter().map(|c| namer.name(c)).collect();
        calls.sort_by_key(|c| c.to_string());
        calls.dedup();
        functions.insert((*function).to_owned(), Value::Array(calls));
    }
    json!({"region": REGION, "account": ACCOUNT, "stack_name": STACK, "functions": functions})
}

/// `iam_check.py` on a template and a set of calls: (exit code, report).
fn judge(template: &str, calls: &Value) -> (i32, Value) {
    let dir = std::env::temp_dir().join(format!("tokenauth-iam-{}", unique_username("run")));
    std::fs::create_dir_all(&dir).unwrap();
    let (template_path, calls_path) = (dir.join("template.yaml"), dir.join("calls.json"));
    std::fs::write(&template_path, template).unwrap();
    std::fs::write(&calls_path, serde_json::to_string_pretty(calls).unwrap()).unwrap();
    let out = std::process::Command::new(repo_root().join(".local/venv/bin/python"))
        .arg(repo_root().join("infra/local/iam_check.py"))
        .args([&template_path, &calls_path])
        .output()
        .expect("iam_check.py runs (make tools installs the venv)");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("a JSON report; stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_allowed_by_its_functions_role_and_every_grant_is_used() {
    let calls = recorded_calls().await;
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let (code, report) = judge(&template, &calls);
    assert_eq!(code, 0, "the template against the recorded calls:\n{report:#}\ncalls:\n{calls:#}");

    // A permission removed from the template: the call that needs it is denied.
    let login_statement = "Sid: ReadUsers\n              Effect: Allow\n              Action: [dynamodb:GetItem, dynamodb:ConditionCheckItem]";
    assert_eq!(template.matches(login_statement).count(), 1, "the login statement this test edits");
    let narrowed = template.replace(
        login_statement,
        "Sid: ReadUsers\n              Effect: Allow\n              Action: [dynamodb:GetItem]",
    );
    let (code, report) = judge(&narrowed, &calls);
    assert_eq!(code, 1);
    let denied = report["denied"].as_array().unwrap();
    assert!(
        denied.iter().any(|d| d["function"] == "LoginFunction" && d["action"] == "dynamodb:ConditionCheckItem"),
        "{report:#}"
    );

    // An attribute taken out of login's list: the write of a new device is denied.
    let login_attributes = r#""dynamodb:Attributes": [pk, sk, failures, window_start, expires_at, created_at]"#;
    assert_eq!(template.matches(login_attributes).count(), 1, "login's attribute list");
    let narrowed =
        template.replace(login_attributes, r#""dynamodb:Attributes": [pk, sk, failures, window_start, expires_at]"#);
    let (code, report) = judge(&narrowed, &calls);
    assert_eq!(code, 1);
    assert!(
        report["denied"].as_array().unwrap().iter().any(|d| d["function"] == "LoginFunction"
            && d["action"] == "dynamodb:UpdateItem"
            && d["context"]["dynamodb:Attributes"].as_array().unwrap().contains(&json!("created_at"))),
        "{report:#}"
    );

    // Writes of other attributes of a user item: refused to every function.
    let users = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/UsersTable");
    let mut extra = calls.clone();
    for function in ["LoginFunction", "RefreshFunction", "RevokeFunction"] {
        extra["functions"][function].as_array_mut().unwrap().extend([
            json!({"action": "dynamodb:UpdateItem", "resource": users,
                   "context": {"dynamodb:Attributes": ["pk", "sk", "password_hash"]}}),
            json!({"action": "dynamodb:UpdateItem", "resource": users,
                   "context": {"dynamodb:Attributes": ["pk", "scopes", "sk"]}}),
            json!({"action": "dynamodb:PutItem", "resource": users,
                   "context": {"dynamodb:Attributes": ["pk", "sk", "failures"]}}),
        ]);
    }
    let (code, report) = judge(&template, &extra);
    assert_eq!(code, 1);
    let denied = report["denied"].as_array().unwrap();
    for function in ["LoginFunction", "RefreshFunction", "RevokeFunction"] {
        assert_eq!(
            denied.iter().filter(|d| d["function"] == function && d["resource"] == users).count(),
            3,
            "{function}: {report:#}"
        );
    }

    // A call added to a function without a grant: denied; and a grant no call uses: reported.
    let mut extra = calls.clone();
    extra["functions"]["AuthorizerFunction"].as_array_mut().unwrap().push(json!({
        "action": "kms:Sign", "resource": format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/any"), "context": {}
    }));
    let (code, report) = judge(&template, &extra);
    assert_eq!(code, 1);
    assert!(report["denied"].as_array().unwrap().iter().any(|d| d["function"] == "AuthorizerFunction"), "{report:#}");
    let mut fewer = calls.clone();
    fewer["functions"]["JwksFunction"] = json!([]);
    let (code, report) = judge(&template, &fewer);
    assert_eq!(code, 1);
    assert!(
        report["unused"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["function"] == "JwksFunction" && u["action"] == "dynamodb:GetItem"),
        "{report:#}"
    );
}

/// A key of the account that is not the stack's, under KMS's default key policy (the
/// account root may do anything: IAM alone decides).
fn unrelated_key() -> (String, Value) {
    let arn = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/unrelated-key");
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Enable IAM User Permissions",
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*",
        "Resource": "*"}]});
    (arn, policy)
}

/// Synthetic calls (no stack needed to record them): each function with none but `calls`.
fn only(calls: &[(&str, Value)], key_policies: Value) -> Value {
    let mut functions = serde_json::Map::new();
    for function in FUNCTIONS {
        let mine: Vec<Value> = calls.iter().filter(|(f, _)| *f == function).map(|(_, c)| c.clone()).collect();
        functions.insert(function.to_owned(), Value::Array(mine));
    }
    json!({"region": REGION, "account": ACCOUNT, "stack_name": STACK, "functions": functions,
           "key_policies": key_policies})
}

fn denied_of<'r>(report: &'r Value, function: &str, action: &str, resource: &str) -> Option<&'r Value> {
    report["denied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["function"] == function && d["action"] == action && d["resource"] == resource)
}

#[test]
fn key_policies_refuse_what_a_broad_iam_grant_would_allow() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let (unrelated, default_policy) = unrelated_key();
    let ours = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/created-by-rotation");
    let policies = json!({ unrelated.clone(): default_policy });
    let tag = json!({"aws:RequestTag/tokenauth:key-set": [STACK], "aws:TagKeys": ["tokenauth:key-set"]});
    let ours_tag = json!({"aws:ResourceTag/tokenauth:key-set": [STACK]});

    // The rotation role tags and deletes keys created under SIGNING_KEY_POLICY, and nothing
    // else: an unrelated key (no set tag) cannot be adopted into the set or deleted.
    let calls = only(
        &[
            ("KeyRotationFunction", json!({"action": "kms:TagResource", "resource": ours, "context": tag})),
            (
                "KeyRotationFunction",
                json!({"action": "kms:ScheduleKeyDeletion", "resource": ours, "context": ours_tag}),
            ),
            ("KeyRotationFunction", json!({"action": "kms:TagResource", "resource": unrelated, "context": tag})),
            ("KeyRotationFunction", json!({"action": "kms:ScheduleKeyDeletion", "resource": unrelated, "context": {}})),
            ("KeyRotationFunction", json!({"action": "kms:GetPublicKey", "resource": unrelated, "context": {}})),
        ],
        policies.clone(),
    );
    let (_, report) = judge(&template, &calls);
    for action in ["kms:TagResource", "kms:ScheduleKeyDeletion"] {
        assert!(denied_of(&report, "KeyRotationFunction", action, &ours).is_none(), "{action} on its key: {report:#}");
        assert!(denied_of(&report, "KeyRotationFunction", action, &unrelated).is_some(), "{action}: {report:#}");
    }
    assert!(denied_of(&report, "KeyRotationFunction", "kms:GetPublicKey", &unrelated).is_some(), "{report:#}");

    // A broad kms:Sign in a role the signing key's policy does not name: refused on the
    // set's keys; the same grant works on a key whose policy delegates to IAM, so it is
    // the key policy that refuses.
    let poll = "- Sid: PollRevocations\n              Effect: Allow\n              Action: [dynamodb:Query]\n              Resource: !GetAtt RevocationsTable.Arn\n";
    assert_eq!(template.matches(poll).count(), 1, "the authorizer statement this test extends");
    let broad = template.replace(
        poll,
        &format!("{poll}            - Sid: SignWithAnything\n              Effect: Allow\n              Action: [kms:Sign]\n              Resource: \"*\"\n"),
    );
    let calls = only(
        &[
            ("AuthorizerFunction", json!({"action": "kms:Sign", "resource": ours, "context": ours_tag})),
            ("AuthorizerFunction", json!({"action": "kms:Sign", "resource": unrelated, "context": {}})),
            ("LoginFunction", json!({"action": "kms:Sign", "resource": ours, "context": ours_tag})),
        ],
        policies.clone(),
    );
    let (_, report) = judge(&broad, &calls);
    let refused = denied_of(&report, "AuthorizerFunction", "kms:Sign", &ours).unwrap_or_else(|| panic!("{report:#}"));
    assert!(refused["why"].as_str().unwrap().contains("key policy"), "{report:#}");
    assert!(denied_of(&report, "AuthorizerFunction", "kms:Sign", &unrelated).is_none(), "{report:#}");
    assert!(denied_of(&report, "LoginFunction", "kms:Sign", &ours).is_none(), "{report:#}");
    // The key-set signing key and the sealing secret: only the roles their policies name.
    // Login may sign tokens, never the set; readers check the set offline and may not even
    // read the key's public half; the rotation signs the set's raw bytes only.
    let set_key = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/KeySetSigningKey");
    let sealing = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/SealingKey");
    let raw = json!({"kms:SigningAlgorithm": ["ECDSA_SHA_256"], "kms:MessageType": ["RAW"]});
    let digest = json!({"kms:SigningAlgorithm": ["ECDSA_SHA_256"], "kms:MessageType": ["DIGEST"]});
    let sealing_context = json!({"kms:EncryptionContext:tokenauth": ["successor-sealing"]});
    let calls = only(
        &[
            ("LoginFunction", json!({"action": "kms:Sign", "resource": set_key, "context": raw})),
            ("KeyRotationFunction", json!({"action": "kms:Sign", "resource": set_key, "context": raw})),
            ("KeyRotationFunction", json!({"action": "kms:Sign", "resource": set_key, "context": digest})),
            ("JwksFunction", json!({"action": "kms:GetPublicKey", "resource": set_key, "context": {}})),
            ("AuthorizerFunction", json!({"action": "kms:Verify", "resource": set_key, "context": {}})),
            ("LoginFunction", json!({"action": "kms:Decrypt", "resource": sealing, "context": sealing_context})),
            ("RefreshFunction", json!({"action": "kms:Decrypt", "resource": sealing, "context": sealing_context})),
            ("RefreshFunction", json!({"action": "kms:Decrypt", "resource": sealing, "context": {}})),
        ],
        json!({}),
    );
    let (_, report) = judge(&template, &calls);
    assert!(denied_of(&report, "LoginFunction", "kms:Sign", &set_key).is_some(), "{report:#}");
    let rotation_signs = report["denied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["function"] == "KeyRotationFunction" && d["action"] == "kms:Sign")
        .map(|d| d["context"]["kms:MessageType"].clone())
        .collect::<Vec<_>>();
    assert_eq!(rotation_signs, [json!(["DIGEST"])], "the rotation signs the set's raw bytes only: {report:#}");
    assert!(denied_of(&report, "JwksFunction", "kms:GetPublicKey", &set_key).is_some(), "{report:#}");
    assert!(denied_of(&report, "AuthorizerFunction", "kms:Verify", &set_key).is_some(), "{report:#}");
    assert!(denied_of(&report, "LoginFunction", "kms:Decrypt", &sealing).is_some(), "{report:#}");
    let refresh_decrypts = report["denied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["function"] == "RefreshFunction" && d["action"] == "kms:Decrypt")
        .count();
    assert_eq!(refresh_decrypts, 1, "only the Decrypt outside the sealing context: {report:#}");
}

/// Whether `call` of `function` is among the report's denied calls.
fn is_denied(report: &Value, function: &str, call: &Value) -> bool {
    report["denied"].as_array().unwrap().iter().any(|d| {
        d["function"] == function
            && d["action"] == call["action"]
            && d["resource"] == call["resource"]
            && d["context"] == call["context"]
    })
}

#[test]
fn only_key_rotation_makes_key_pairs_and_signers_decrypt_only_bound_ones() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let envelope = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/EnvelopeKey");
    let call = |action: &str, context: Value| json!({"action": action, "resource": envelope, "context": context});
    let made = |spec: &str| {
        json!({"kms:EncryptionContext:tokenauth": ["envelope-signing-key-new"],
               "kms:EncryptionContextKeys": ["tokenauth"], "kms:DataKeyPairSpec": [spec]})
    };
    let new = |same: &str| {
        json!({"kms:EncryptionContext:tokenauth": ["envelope-signing-key-new"],
               "kms:EncryptionContextKeys": ["tokenauth"], "kms:ReEncryptOnSameKey": [same]})
    };
    let bound = json!({"kms:EncryptionContext:tokenauth": ["envelope-signing-key"],
                       "kms:EncryptionContext:kid": ["k1"], "kms:EncryptionContextKeys": ["kid", "tokenauth"]});
    let bound_on = |same: &str| {
        let mut context = bound.clone();
        context["kms:ReEncryptOnSameKey"] = json!([same]);
        context
    };
    let allowed = [
        ("KeyRotationFunction", call("kms:GenerateDataKeyPairWithoutPlaintext", made("ECC_NIST_P256"))),
        ("KeyRotationFunction", call("kms:ReEncryptFrom", new("true"))),
        ("KeyRotationFunction", call("kms:ReEncryptTo", bound_on("true"))),
        ("LoginFunction", call("kms:Decrypt", bound.clone())),
        ("RefreshFunction", call("kms:Decrypt", bound.clone())),
    ];
    let mut unbound = bound.clone();
    unbound["kms:EncryptionContext:tokenauth"] = json!(["envelope-signing-key-new"]);
    let mut other_purpose = bound.clone();
    other_purpose["kms:EncryptionContext:purpose"] = json!(["x"]);
    other_purpose["kms:EncryptionContextKeys"] = json!(["kid", "purpose", "tokenauth"]);
    let refused = [
        // Signers make no key pairs; no one makes one in clear, or of another spec.
        ("LoginFunction", call("kms:GenerateDataKeyPairWithoutPlaintext", made("ECC_NIST_P256"))),
        ("RefreshFunction", call("kms:GenerateDataKeyPairWithoutPlaintext", made("ECC_NIST_P256"))),
        ("KeyRotationFunction", call("kms:GenerateDataKeyPair", made("ECC_NIST_P256"))),
        ("KeyRotationFunction", call("kms:GenerateDataKeyPairWithoutPlaintext", made("RSA_2048"))),
        // Only the signers decrypt, and only a pair bound to its kid, in no other context.
        ("KeyRotationFunction", call("kms:Decrypt", bound.clone())),
        ("AuthorizerFunction", call("kms:Decrypt", bound.clone())),
        ("LoginFunction", call("kms:Decrypt", unbound)),
        ("RefreshFunction", call("kms:Decrypt", other_purpose)),
        // Re-encryption stays on the key: no private half moved out, none brought in.
        ("KeyRotationFunction", call("kms:ReEncryptFrom", new("false"))),
        ("KeyRotationFunction", call("kms:ReEncryptTo", bound_on("false"))),
        // A bound pair is not re-bound, nor a new one re-encrypted to another "new".
        ("KeyRotationFunction", call("kms:ReEncryptFrom", bound_on("true"))),
        ("KeyRotationFunction", call("kms:ReEncryptTo", new("true"))),
        ("LoginFunction", call("kms:ReEncryptFrom", bound_on("true"))),
    ];
    let calls: Vec<(&str, Value)> = allowed.iter().chain(refused.iter()).cloned().collect();
    let (_, report) = judge(&template, &only(&calls, json!({})));
    for (function, call) in &allowed {
        assert!(!is_denied(&report, function, call), "{function} {call}: {report:#}");
    }
    for (function, call) in &refused {
        assert!(is_denied(&report, function, call), "{function} {call} must be refused: {report:#}");
    }
}

#[test]
fn the_account_root_administers_keys_but_never_uses_them() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let (_, report) = judge(&template, &only(&[], json!({})));
    assert_eq!(report["key_policy"], json!([]), "{report:#}");

    // The sealing key's account statement widened to kms:* (what it was): reported.
    let account = "Sid: AccountAdministersWithoutUse\n            Effect: Allow\n            Principal:\n              AWS: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:root\"\n            Action: [";
    assert_eq!(
        template.matches(account).count(),
        3,
        "the sealing, key-set signing and envelope keys' account statements"
    );
    let widened = template.replacen(account, &account.replace("Action: [", "Action: [\"kms:*\", "), 1);
    let (code, report) = judge(&widened, &only(&[], json!({})));
    assert_eq!(code, 1);
    let problems = report["key_policy"].as_array().unwrap();
    for action in ["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"] {
        assert!(problems.iter().any(|p| p["key"] == "SealingKey" && p["action"] == action), "{action}: {report:#}");
    }
    // The signing keys' account statement given kms:Sign: reported.
    let signing = r#"{"Sid":"AccountAdministersWithoutUse","Effect":"Allow","Principal":{"AWS":"arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},"Action":["#;
    assert_eq!(template.matches(signing).count(), 1, "SIGNING_KEY_POLICY's account statement");
    let (_, report) = judge(&template.replace(signing, &format!("{signing}\"kms:Sign\",")), &only(&[], json!({})));
    assert!(
        report["key_policy"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "SIGNING_KEY_POLICY" && p["action"] == "kms:Sign"),
        "{report:#}"
    );

    // KMS's lockout check: without PutKeyPolicy for the rotation role, CreateKey with the
    // policy would be refused; the check says so.
    let keeps = r#""Action":["kms:GetPublicKey","kms:ScheduleKeyDeletion","kms:PutKeyPolicy"]"#;
    assert_eq!(template.matches(keeps).count(), 1, "the rotation role's statement in SIGNING_KEY_POLICY");
    let locked = template.replace(keeps, r#""Action":["kms:GetPublicKey","kms:ScheduleKeyDeletion"]"#);
    let (_, report) = judge(&locked, &only(&[], json!({})));
    assert!(report["key_policy"].as_array().unwrap().iter().any(|p| p["action"] == "kms:PutKeyPolicy"), "{report:#}");
}
