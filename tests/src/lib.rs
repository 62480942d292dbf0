//! Helpers for the tests. The stack tier runs against the local stack that `make test`
//! starts (DynamoDB Local, KMS emulator) through the real SDK clients; the stack's
//! coordinates come from the environment (`.local/test-stack.env`). The unit tier
//! (`make unit`) needs none of it: [`unit`] builds the same services on clients that reach
//! nothing, and every helper here that needs the stack refuses to run there
//! ([`stack_required`]).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod capacity;
pub mod gateway;
pub mod iam;
pub mod runtime;
pub mod unit;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use tokenauth::platform::clock::Clock;
use tokenauth::rules::keys::set::{KeyKind, KeySet};
use tokenauth::rules::keys::KeyAlgorithm;
use tokenauth::rules::username::Username;
use tokenauth::services::keys::{KeySetSigner, KmsSigner};
use tokenauth::store::{DynamoKeys, DynamoUsers, UserRecord};
use tokenauth::{Config, LoginService};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The variable `make unit` sets to `unit`: the stack is not there, whatever the environment
/// holds.
pub const TIER_VARIABLE: &str = "TOKENAUTH_TEST_TIER";

/// Fails the test at once in the unit tier: `what` needs the local stack, so the test that
/// asked for it belongs in the stack tier (a `needs_stack` module, or a test target that
/// `make unit` does not name).
#[track_caller]
pub fn stack_required(what: &str) {
    if std::env::var(TIER_VARIABLE).is_ok_and(|tier| tier == "unit") {
        panic!(
            "this test asked for {what}, which the unit tier (`make unit`) does not have: move it into a \
             `needs_stack` module or a test target of the stack tier (`make test`)"
        );
    }
}

/// The configuration the stack wrote, as the functions read it.
#[track_caller]
pub fn config() -> Config {
    stack_required("the stack's configuration");
    Config::from_env().expect(
        "the local stack's variables are not set: this test is in the stack tier (`make test`); `make unit` runs \
         the tests that need no stack",
    )
}

/// The stack's configuration with some variables set otherwise, read as the functions
/// read theirs (so the overrides go through the same parser and checks).
#[track_caller]
pub fn config_with(overrides: &[(&str, &str)]) -> Config {
    stack_required("the stack's configuration");
    Config::from_lookup(|name| match overrides.iter().find(|(k, _)| *k == name) {
        Some((_, v)) => Some((*v).to_owned()),
        None => std::env::var(name).ok(),
    })
    .expect("the configuration with these overrides loads")
}

/// One AWS call as the SDK executed it.
#[derive(Debug, Clone)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub started: Instant,
    pub finished: Option<Instant>,
}

/// An SDK interceptor that records every call (execution, not attempt) a client makes.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
    pub fn names(&self) -> Vec<String> {
        self.calls().iter().map(|c| format!("{}.{}", c.service, c.operation)).collect()
    }
}

fn metadata(cfg: &ConfigBag) -> (String, String) {
    cfg.load::<Metadata>()
        .map(|m| (m.service().to_owned(), m.name().to_owned()))
        .unwrap_or_else(|| ("?".to_owned(), "?".to_owned()))
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // Operation metadata is in the config bag from serialization on; nothing happens on the
    // wire before it.
    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = metadata(cfg);
        self.0.lock().unwrap().push(Call { service, operation, started: Instant::now(), finished: None });
        Ok(())
    }

    fn read_after_execution(
        &self,
        _: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = metadata(cfg);
        let mut calls = self.0.lock().unwrap();
        if let Some(call) =
            calls.iter_mut().rev().find(|c| c.finished.is_none() && c.service == service && c.operation == operation)
        {
            call.finished = Some(Instant::now());
        }
        Ok(())
    }
}

/// SDK clients for the local stack, the way the functions build them, plus a call log.
#[derive(Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub calls: CallLog,
}

/// The SDK configuration the functions load (credentials from the environment).
async fn sdk_config() -> aws_config::SdkConfig {
    stack_required("an SDK client of the stack");
    tokenauth::platform::aws::sdk_config(&config().trust_roots, tokenauth::platform::aws::Credentials::Environment)
        .await
        .expect("SDK configuration loads")
}

pub async fn clients() -> Clients {
    let sdk = sdk_config().await;
    let calls = CallLog::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(calls.clone()).build(),
    );
    let kms =
        aws_sdk_kms::Client::from_conf(aws_sdk_kms::config::Builder::from(&sdk).interceptor(calls.clone()).build());
    Clients { dynamodb, kms, calls }
}

/// Clients like [`clients`] that also record every call as IAM authorises it.
pub async fn clients_recorded_by(recorder: &iam::IamRecorder) -> Clients {
    let sdk = sdk_config().await;
    let calls = CallLog::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(calls.clone()).interceptor(recorder.clone()).build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk).interceptor(calls.clone()).interceptor(recorder.clone()).build(),
    );
    Clients { dynamodb, kms, calls }
}

/// Clients like [`clients`], but whose KMS client is the one login and refresh build
/// ([`tokenauth::platform::aws::signing_kms_client`]: one retry), with the call log.
pub async fn signing_clients() -> Clients {
    let mut clients = clients().await;
    let kms = tokenauth::platform::aws::signing_kms_client(&sdk_config().await);
    clients.kms = aws_sdk_kms::Client::from_conf(kms.config().to_builder().interceptor(clients.calls.clone()).build());
    clients
}

/// The stack's KMS throttling switch (`infra/local/kms_emulator.py`): while this lives, the
/// stack's KMS emulator answers `ThrottlingException` (HTTP 400, as AWS KMS does over its
/// quota) to the operations named; dropped, it is switched off. The switch is a file that
/// `with-stack.sh` names in `TOKENAUTH_KMS_FAULTS` (the functions are never told of it);
/// it is stack-wide, so the tests that flip it hold [`KmsThrottling::exclusive`] while they do.
pub struct KmsThrottling {
    path: PathBuf,
}

impl KmsThrottling {
    /// The lock the tests that throttle KMS take, so that only one of them flips the switch
    /// at a time (tests of one target run in parallel).
    pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
        static SWITCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        SWITCH.lock().await
    }

    /// Throttles `operations` (`Sign`, `Decrypt`, `GenerateMac`, ...) from the next call on.
    pub fn on(operations: &[&str]) -> Self {
        stack_required("the KMS emulator's throttling switch");
        let path =
            PathBuf::from(std::env::var("TOKENAUTH_KMS_FAULTS").expect("TOKENAUTH_KMS_FAULTS is set by make test"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::json!({ "throttle": operations }).to_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        Self { path }
    }

    /// Switches it off now.
    pub fn off(self) {}
}

impl Drop for KmsThrottling {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `infra/local/dynamodb_throttle_proxy.py` of this test's own in front of the stack's
/// DynamoDB Local, with a switch file only this test writes; stopped when dropped.
pub struct DynamoDbThrottleProxy {
    child: std::process::Child,
    switch: tempfile_path::TempPath,
    pub endpoint: String,
}

/// A file path removed when dropped.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl DynamoDbThrottleProxy {
    pub fn start() -> Self {
        stack_required("a DynamoDB throttling proxy");
        let command = std::env::var("TOKENAUTH_DYNAMODB_THROTTLE_PROXY")
            .expect("TOKENAUTH_DYNAMODB_THROTTLE_PROXY is set by make test");
        let target = config_endpoint_port("AWS_ENDPOINT_URL_DYNAMODB");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let switch = std::env::temp_dir().join(format!("tokenauth-ddb-throttle-{}-{port}.json", std::process::id()));
        let mut parts = command.split_whitespace();
        let child = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .args([switch.to_str().unwrap(), &port.to_string(), &target.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the DynamoDB throttling proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, switch: tempfile_path::TempPath(switch), endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// Answers `operations` (`GetItem`, `TransactWriteItems`, ...) with DynamoDB's `code`
    /// (`ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`)
    /// from the next request on.
    pub fn throttle(&self, operations: &[&str], code: &str) {
        let tmp = self.switch.0.with_extension("tmp");
        std::fs::write(&tmp, serde_json::json!({ "throttle": operations, "code": code }).to_string()).unwrap();
        std::fs::rename(&tmp, &self.switch.0).unwrap();
    }

    /// Lets everything through again.
    pub fn off(&self) {
        let _ = std::fs::remove_file(&self.switch.0);
    }
}

impl Drop for DynamoDbThrottleProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of a loopback endpoint variable of the stack (`http://127.0.0.1:PORT`).
fn config_endpoint_port(variable: &str) -> u16 {
    let url = std::env::var(variable).unwrap_or_else(|_| panic!("{variable} is set by the stack"));
    url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("http://127.0.0.1:PORT")
}

/// A KMS client whose endpoint is `endpoint` (e.g. a private emulator a test may stop).
pub async fn kms_at(endpoint: &str) -> aws_sdk_kms::Client {
    let sdk = sdk_config().await;
    aws_sdk_kms::Client::from_conf(aws_sdk_kms::config::Builder::from(&sdk).endpoint_url(endpoint).build())
}

/// A DynamoDB client whose endpoint is `endpoint`.
pub async fn dynamodb_at(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let sdk = sdk_config().await;
    aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(endpoint).build())
}

/// The signer login and refresh build (the key set read once at start), on these clients.
pub async fn key_set_signer(config: &Config, clients: &Clients, clock: Arc<dyn Clock>) -> KeySetSigner {
    KeySetSigner::from_config(config, clients.dynamodb.clone(), clients.kms.clone(), clock).await
}

/// The login service as the function builds it, on the given clients and clock.
pub async fn login_service(config: &Config, clients: &Clients, clock: Arc<dyn Clock>) -> LoginService {
    let signer = key_set_signer(config, clients, clock.clone()).await;
    LoginService::new(config, clients.dynamodb.clone(), Arc::new(signer), clock)
}

/// The token endpoint (`POST /auth/token`, `POST /auth/refresh`) as the `refresh` function
/// builds it, on the given clients and clock: one signer for its grants.
pub async fn refresh_service(config: &Config, clients: &Clients, clock: Arc<dyn Clock>) -> tokenauth::TokenService {
    let signer: Arc<dyn tokenauth::rules::keys::Signer> =
        Arc::new(key_set_signer(config, clients, clock.clone()).await);
    let refresh = tokenauth::RefreshService::new(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        signer.clone(),
        clock.clone(),
    );
    refresh.warm_up().await;
    token_endpoint(config, clients, refresh, signer, clock)
}

/// The token endpoint over a given refresh service (one built on failing clients, say);
/// its other grants sign with a signer that has not read the key set yet.
pub fn token_service_over(
    config: &Config,
    clients: &Clients,
    refresh: tokenauth::RefreshService,
    clock: Arc<dyn Clock>,
) -> tokenauth::TokenService {
    let keys = tokenauth::services::keys::AuthenticatedKeys::from_config(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
    );
    let signer: Arc<dyn tokenauth::rules::keys::Signer> = Arc::new(KeySetSigner::new(
        keys,
        clients.kms.clone(),
        config.key_reload,
        config.key_set_max_staleness(),
        clock.clone(),
    ));
    token_endpoint(config, clients, refresh, signer, clock)
}

fn token_endpoint(
    config: &Config,
    clients: &Clients,
    refresh: tokenauth::RefreshService,
    signer: Arc<dyn tokenauth::rules::keys::Signer>,
    clock: Arc<dyn Clock>,
) -> tokenauth::TokenService {
    use tokenauth::services::client_auth::ClientAuthenticator;
    use tokenauth::services::grants::GrantService;
    let authenticator = ClientAuthenticator::from_config(config, clients.dynamodb.clone());
    let grants = GrantService::new(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        signer,
        clock.clone(),
        authenticator.clone(),
    );
    tokenauth::TokenService::new(authenticator, refresh, grants, clock)
}

/// The revocation service as the function builds it.
pub async fn revocation_service(
    config: &Config,
    clients: &Clients,
    clock: Arc<dyn Clock>,
) -> tokenauth::RevocationService {
    tokenauth::RevocationService::from_config(config, clients.dynamodb.clone(), clients.kms.clone(), clock).await
}

/// The key set of `config`'s Keys table, as stored.
pub async fn key_set(config: &Config, clients: &Clients) -> KeySet {
    DynamoKeys::new(clients.dynamodb.clone(), &config.keys_table).read().await.expect("key set readable").set
}

/// `infra/template.yaml`, read by the one template reader (`sam-template`), with its
/// parameters at their defaults and `overrides` over them.
pub fn template_with(overrides: &[(&str, &str)]) -> sam_template::Template {
    let overrides = overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    sam_template::Template::load(&repo_root().join("infra/template.yaml"), &overrides).expect("the template reads")
}

/// The template's tables, by the variable that names each (`KEYS_TABLE`...): the one
/// definition that `infra/local/stack.py` creates the stack's tables from, too.
pub fn template_tables() -> std::collections::BTreeMap<String, sam_template::Table> {
    template_with(&[]).tables().expect("the template's tables read")
}

/// Creates a table named `name` as `table` defines it: keys, indexes, TTL.
pub async fn create_table(clients: &Clients, table: &sam_template::Table, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType, TimeToLiveSpecification,
    };
    let key_schema = |keys: &[(String, String)]| -> Vec<KeySchemaElement> {
        keys.iter()
            .map(|(name, kind)| {
                KeySchemaElement::builder().attribute_name(name).key_type(KeyType::from(kind.as_str())).build().unwrap()
            })
            .collect()
    };
    let mut create = clients
        .dynamodb
        .create_table()
        .table_name(name)
        .set_key_schema(Some(key_schema(&table.key_schema)))
        .billing_mode(BillingMode::from(table.billing_mode.as_str()));
    for (attribute, kind) in &table.attributes {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .unwrap(),
        );
    }
    for (index, definition) in &table.indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .set_key_schema(Some(key_schema(&definition.key_schema)))
                .projection(
                    Projection::builder().projection_type(ProjectionType::from(definition.projection.as_str())).build(),
                )
                .build()
                .unwrap(),
        );
    }
    create.send().await.unwrap();
    if let Some(attribute) = &table.ttl_attribute {
        let ttl = TimeToLiveSpecification::builder().enabled(true).attribute_name(attribute).build().unwrap();
        clients.dynamodb.update_time_to_live().table_name(name).time_to_live_specification(ttl).send().await.unwrap();
    }
}

/// Creates a Keys table named `name`, as the template defines it (a test's own set).
pub async fn create_keys_table(clients: &Clients, name: &str) {
    create_table(clients, &template_tables()["KEYS_TABLE"], name).await;
}

/// The stack's configuration on a Keys table of its own whose first key, current, is of
/// `kind`: made as a new deployment's first scheduled rotation makes it (`make cost` and the
/// benchmarks measure each kind this way, whatever kind the stack started with).
pub async fn deployment_of_kind(kind: KeyKind) -> Config {
    let clients = clients().await;
    let table = format!("keys-{}", unique_username(kind.as_str()));
    create_keys_table(&clients, &table).await;
    let tag = unique_username("set");
    let config = config_with(&[
        ("KEYS_TABLE", table.as_str()),
        ("KEY_SET_TAG", tag.as_str()),
        ("SIGNING_KEY_KIND", kind.as_str()),
    ]);
    let manager = tokenauth::services::keys::manager::KeyManager::from_config(
        &config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(tokenauth::platform::clock::SystemClock),
    );
    manager.rotate().await.expect("the first key is made");
    let current = key_set(&config, &clients).await.current().map(|k| k.kind);
    assert_eq!(current, Some(kind), "the first key is current and of kind {kind:?}");
    config
}

/// The KMS key that signs now (the key set's current key).
pub async fn current_signing_key(config: &Config, clients: &Clients) -> String {
    key_set(config, clients).await.current().expect("the stack made a first key").kms_key_id.clone()
}

/// A signer of the current key, for tests that sign tokens with claims of their own.
pub async fn current_kms_signer(config: &Config, clients: &Clients) -> KmsSigner {
    KmsSigner::load(clients.kms.clone(), &current_signing_key(config, clients).await).await.expect("key loads")
}

/// The DER SubjectPublicKeyInfo of a KMS key, fetched as a third party would.
pub async fn public_key_der(clients: &Clients, key_id: &str) -> Vec<u8> {
    let out = clients.kms.get_public_key().key_id(key_id).send().await.unwrap();
    out.public_key().unwrap().as_ref().to_vec()
}

/// A DER public key as PEM.
pub fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
}

/// The claims of an access token we issued, checked by jsonwebtoken (an implementation
/// independent of ours) with the public half of the key its `kid` names in the key set,
/// fetched from KMS (not from our JWK conversion); `None` if it does not verify.
pub async fn independently_verified(
    config: &Config,
    clients: &Clients,
    token: &str,
) -> Option<tokenauth::rules::token::AccessClaims> {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let kid = decode_header(token).ok()?.kid?;
    let set = key_set(config, clients).await;
    let entry = set.trusted().find(|e| e.kid == kid)?;
    let der = public_key_der(clients, &entry.kms_key_id).await;
    let (key, algorithm) = match entry.alg {
        KeyAlgorithm::ES256 => (DecodingKey::from_ec_pem(pem(&der).as_bytes()).unwrap(), Algorithm::ES256),
        KeyAlgorithm::RS256 => (DecodingKey::from_rsa_pem(pem(&der).as_bytes()).unwrap(), Algorithm::RS256),
    };
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[&config.audience]);
    validation.set_issuer(&[&config.issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    decode::<tokenauth::rules::token::AccessClaims>(token, &key, &validation).ok().map(|data| data.claims)
}

/// Logs `username` in and returns the token response body.
pub async fn login_tokens(service: &LoginService, username: &str, password: &str) -> Value {
    let response = tokenauth::edge::http::login(service, &login_request(username, password, None)).await;
    assert_eq!(response.status(), 200, "login failed: {:?}", response.body());
    json_of(&response)
}

/// A refresh request as the HTTP API delivers it (JSON body, or form with grant_type).
pub fn refresh_request(refresh_token: &str, scope: Option<&str>, form: bool) -> Request {
    let mut event = event("refresh-json.json");
    if form {
        let mut body = format!("grant_type=refresh_token&refresh_token={refresh_token}");
        if let Some(scope) = scope {
            body.push_str(&format!("&scope={}", scope.replace(' ', "+")));
        }
        event["headers"]["content-type"] = Value::String("application/x-www-form-urlencoded".into());
        event["body"] = Value::String(body);
    } else {
        let mut body = serde_json::json!({ "refresh_token": refresh_token });
        if let Some(scope) = scope {
            body["scope"] = Value::String(scope.to_owned());
        }
        event["body"] = Value::String(body.to_string());
    }
    request_from_event(&event)
}

/// Reads a family item (strongly consistent).
pub async fn family(config: &Config, clients: &Clients, family_id: &str) -> tokenauth::store::FamilyRecord {
    tokenauth::store::DynamoFamilies::new(clients.dynamodb.clone(), &config.families_table, &config.users_table)
        .get(family_id)
        .await
        .unwrap()
        .expect("family exists")
}

/// Denylist entries about `subject` written in the last hour.
pub async fn revocations_of(config: &Config, clients: &Clients, subject: &str) -> Vec<tokenauth::store::Revocation> {
    let now_ms = tokenauth::platform::clock::Clock::now(&tokenauth::SystemClock) * 1000;
    tokenauth::store::DynamoRevocations::new(clients.dynamodb.clone(), &config.revocations_table)
        .since(now_ms.saturating_sub(3_600_000), now_ms + 7_200_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.subject == subject)
        .collect()
}

/// A username no other test uses.
pub fn unique_username(prefix: &str) -> String {
    format!("{prefix}-{}", tokenauth::rules::token::random_id().replace(['-', '_'], "x").to_lowercase())
}

/// Creates an active user with `scopes`; returns (username, password, user id).
pub async fn create_user(
    config: &Config,
    clients: &Clients,
    prefix: &str,
    scopes: &[&str],
) -> (String, String, String) {
    let username = unique_username(prefix);
    let password = format!("pw-{}", tokenauth::rules::token::random_id());
    let user_id = tokenauth::rules::token::random_id();
    let scopes = scopes.iter().map(|s| s.to_string()).collect();
    let record = UserRecord::new(user_id.clone(), tokenauth::rules::password::hash(&password).unwrap(), scopes, 0);
    DynamoUsers::new(clients.dynamodb.clone(), &config.users_table)
        .create(&Username::normalise(&username).unwrap(), &record)
        .await
        .expect("user created");
    (username, password, user_id)
}

/// Reads a sample event from `events/` (the files `cargo lambda invoke --data-file` uses).
pub fn event(name: &str) -> Value {
    let path = repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The `Authorization` value in the sample authorizer events of `events/` (a token no key
/// signed), for tests and benchmarks to replace.
pub const PLACEHOLDER_AUTHORIZATION: &str =
    "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Im5vbmUifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

/// The authorizer's answer to `event` once the reads the request started have answered:
/// a poll that fell due is waited for only `READ_BUDGET` (25 ms) by the request, then
/// finishes beside; if it outlived the request, this waits for it (10 s at most, its
/// abandonment) and asks again. For tests of what a poll brings, which must not depend on
/// the local stack answering within the budget.
pub async fn handle_after_reads(
    a: &tokenauth::edge::authorizer::Authorizer,
    event: &str,
) -> Result<tokenauth::edge::authorizer::Answer, tokenauth::edge::authorizer::Unauthorized> {
    let first = a.handle(event).await;
    if !a.reading() {
        return first;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.reading() {
        assert!(Instant::now() < deadline, "a read outlived its abandonment");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.handle(event).await
}

/// A sample authorizer event's text, members in API Gateway's order as the file has them,
/// with `authorization` in place of [`PLACEHOLDER_AUTHORIZATION`].
pub fn event_text_with(name: &str, authorization: &str) -> String {
    let path = repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace(PLACEHOLDER_AUTHORIZATION, authorization)
}

/// Turns an API Gateway event into the request lambda_http hands a handler.
pub fn request_from_event(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("event parses as an API Gateway request")
}

/// A revoke sample event (`revoke-refresh-token-form.json` or, for JSON,
/// `revoke-access-token-json.json`) with `body` instead of its own.
pub fn revoke_request(body: &str, form: bool) -> Request {
    let mut e = event(if form { "revoke-refresh-token-form.json" } else { "revoke-access-token-json.json" });
    e["body"] = Value::String(body.to_owned());
    request_from_event(&e)
}

/// The introspection sample event (`introspect-form.json`) with `body` instead of its own
/// and this `Authorization` header instead of its Basic one, or none.
pub fn introspect_request(body: &str, authorization: Option<&str>) -> Request {
    let mut e = event("introspect-form.json");
    e["body"] = Value::String(body.to_owned());
    let headers = e["headers"].as_object_mut().expect("the sample event has headers");
    headers.remove("authorization");
    if let Some(value) = authorization {
        headers.insert("authorization".into(), Value::String(value.to_owned()));
    }
    request_from_event(&e)
}

/// `Authorization: Basic` for a client id and secret as RFC 6749 §2.3.1 encodes them
/// (each form-encoded, then `id:secret` in base64).
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    use base64::Engine as _;
    // application/x-www-form-urlencoded of the bytes a client id or secret can hold.
    let encode = |part: &str| -> String {
        part.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => char::from(b).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// The revoke-all sample event with this `Authorization` header, or none.
pub fn revoke_all_request(authorization: Option<&str>) -> Request {
    let mut e = event("revoke-all.json");
    let headers = e["headers"].as_object_mut().expect("the sample event has headers");
    headers.remove("authorization");
    if let Some(value) = authorization {
        headers.insert("authorization".into(), Value::String(value.to_owned()));
    }
    request_from_event(&e)
}

/// The HTTP API (payload 2.0) login event with `body` as its body.
pub fn login_event_with_body(body: &str) -> Request {
    let mut event = event("login-http-api.json");
    event["body"] = Value::String(body.to_owned());
    request_from_event(&event)
}

/// The HTTP API login event for these credentials.
pub fn login_request(username: &str, password: &str, scope: Option<&str>) -> Request {
    let mut body = serde_json::json!({"username": username, "password": password});
    if let Some(scope) = scope {
        body["scope"] = Value::String(scope.to_owned());
    }
    login_event_with_body(&body.to_string())
}

/// The family (session) id inside a refresh token.
pub fn family_of(refresh_token: &str) -> String {
    tokenauth::rules::token::RefreshToken::parse(refresh_token).expect("a refresh token of ours").family_id()
}

/// The tail of a refresh token's string: base64url of its secret bytes only.
pub fn secret_part(refresh_token: &str) -> &str {
    &refresh_token[refresh_token.len() - 40..]
}

/// Status, headers and JSON body of a response.
pub fn json_of(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).expect("response body is JSON")
}

/// A KMS emulator of this test's own, stopped when dropped.
pub struct KmsEmulator {
    child: std::process::Child,
    pub endpoint: String,
}

impl KmsEmulator {
    pub fn start() -> Self {
        stack_required("a KMS emulator");
        let command = std::env::var("TOKENAUTH_KMS_EMULATOR").expect("TOKENAUTH_KMS_EMULATOR is set by make test");
        let mut parts = command.split_whitespace();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private KMS emulator did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, endpoint }
    }
}

impl KmsEmulator {
    /// A new ECC_NIST_P256 signing key in this emulator, loaded as the functions load theirs.
    pub async fn signer(&self) -> KmsSigner {
        let kms = kms_at(&self.endpoint).await;
        let key_id = create_signing_key(&kms, aws_sdk_kms::types::KeySpec::EccNistP256).await;
        KmsSigner::load(kms, &key_id).await.unwrap()
    }
}

/// A new SIGN_VERIFY key of `spec` (ECC_NIST_P256, RSA_2048) in the KMS behind `kms`; its id.
pub async fn create_signing_key(kms: &aws_sdk_kms::Client, spec: aws_sdk_kms::types::KeySpec) -> String {
    kms.create_key()
        .key_spec(spec)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

impl Drop for KmsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JWT's header, decoded (not verified).
pub fn jwt_header(token: &str) -> Value {
    use base64::Engine as _;
    let segment = token.split('.').next().unwrap_or("");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).expect("a base64url JWT header");
    serde_json::from_slice(&bytes).expect("a JSON JWT header")
}

/// The `kid` of a JWT's header.
pub fn kid_of(token: &str) -> String {
    jwt_header(token)["kid"].as_str().expect("a kid").to_owned()
}

/// A loopback TCP proxy to DynamoDB Local that a test can cut, as if DynamoDB went away,
/// or turn into a black hole that accepts connections and never answers.
pub struct TcpProxy {
    /// Its address, for an SDK client's endpoint.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
    hung: Arc<std::sync::atomic::AtomicBool>,
    forwarding: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpProxy {
    /// A proxy to `upstream` (`host:port`), forwarding.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.to_owned();
        let hung = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let forwarding = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (hang, handles) = (hung.clone(), forwarding.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            // Connections accepted once hung: kept open, never read, never answered.
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if hang.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let handle = connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                handles.lock().unwrap().push(handle);
            }
        });
        Self { url, task, hung, forwarding }
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Drops every open connection and from now on accepts new ones without ever answering:
    /// a DynamoDB that hangs, so every call waits for the SDK's timeouts.
    pub fn hang(&self) {
        self.hung.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.forwarding.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Forwards connections accepted from now on again: DynamoDB answers again. Requests
    /// held while it hung stay unanswered (their callers time out, as they would).
    pub fn resume(&self) {
        self.hung.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// A proxy to the stack's DynamoDB Local.
    pub async fn to_dynamodb_local() -> Self {
        let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("the stack's DynamoDB endpoint");
        Self::start(upstream.trim_start_matches("http://")).await
    }
}

/// Every string (and number, and binary as lossy text) anywhere inside an attribute value.
fn texts_of(value: &aws_sdk_dynamodb::types::AttributeValue, out: &mut Vec<String>) {
    match value {
        aws_sdk_dynamodb::types::AttributeValue::S(s) | aws_sdk_dynamodb::types::AttributeValue::N(s) => {
            out.push(s.clone())
        }
        aws_sdk_dynamodb::types::AttributeValue::B(b) => out.push(String::from_utf8_lossy(b.as_ref()).into_owned()),
        aws_sdk_dynamodb::types::AttributeValue::Ss(v) | aws_sdk_dynamodb::types::AttributeValue::Ns(v) => {
            out.extend(v.iter().cloned())
        }
        aws_sdk_dynamodb::types::AttributeValue::Bs(v) => {
            out.extend(v.iter().map(|b| String::from_utf8_lossy(b.as_ref()).into_owned()))
        }
        aws_sdk_dynamodb::types::AttributeValue::L(items) => items.iter().for_each(|v| texts_of(v, out)),
        aws_sdk_dynamodb::types::AttributeValue::M(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            texts_of(v, out);
        }),
        _ => {}
    }
}

/// Scans every table of the stack's DynamoDB (ListTables, so none is forgotten; the
/// stack's configured tables among them) and returns, per table, the items in which any
/// attribute value (maps and lists included) contains one of `needles`.
pub async fn items_naming(config: &Config, clients: &Clients, needles: &[&str]) -> Vec<(String, String)> {
    let tables = clients.dynamodb.list_tables().send().await.unwrap().table_names.unwrap_or_default();
    for configured in [&config.users_table, &config.families_table, &config.revocations_table, &config.clients_table] {
        assert!(tables.contains(configured), "{configured} is among the scanned tables {tables:?}");
    }
    let mut found = Vec::new();
    for table in tables {
        let mut start = None;
        loop {
            let page = clients.dynamodb.scan().table_name(&table).set_exclusive_start_key(start).send().await.unwrap();
            for item in page.items.unwrap_or_default() {
                let mut texts = Vec::new();
                texts_of(&aws_sdk_dynamodb::types::AttributeValue::M(item.clone()), &mut texts);
                if texts.iter().any(|t| needles.iter().any(|n| t.contains(n))) {
                    found.push((table.clone(), format!("{item:?}")));
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    found
}
