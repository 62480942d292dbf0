//! IAM proven from the calls, both ways. Each function's paths run against the local stack
//! with clients that record every call as IAM authorises it (`tokenauth_tests::iam`); then
//! `infra/local/iam_check.py` transforms `infra/template.yaml` with the SAM translator and
//! judges every call against that function's role, and every grant against the calls.
//! The emulators enforce no IAM: this is where a missing or an excess permission shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
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

/// Names a call's resource as the template names it, with the tag condition of a KMS key.
struct Namer {
    tables: BTreeMap<String, &'static str>,
    sealing_key: String,
    tags: BTreeMap<String, Option<String>>,
    key_set_tag: String,
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
        Self { tables, sealing_key: config.sealing_key_id.clone(), tags, key_set_tag: config.key_set_tag.clone() }
    }

    fn name(&self, call: &IamCall) -> Value {
        let mut context: BTreeMap<String, Vec<String>> = call.context.clone();
        // The set's tag as the template writes it: the stack name.
        for values in context.values_mut() {
            for v in values.iter_mut() {
                if *v == self.key_set_tag {
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
                let id = id.rsplit_once(":key/").map_or(id.as_str(), |(_, id)| id);
                let sealing = self.sealing_key.rsplit_once(":key/").map_or(self.sealing_key.as_str(), |(_, id)| id);
                if id == sealing {
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/SealingKey")
                } else {
                    if let Some(Some(tag)) = self.tags.get(id) {
                        let tag = if *tag == self.key_set_tag { STACK.to_owned() } else { tag.clone() };
                        context.insert("aws:ResourceTag/tokenauth:key-set".to_owned(), vec![tag]);
                    }
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}")
                }
            }
        };
        json!({"action": call.action, "resource": resource, "context": context})
    }
}

/// login: success (a new device), a known device, a wrong password, and KMS down after the
/// password check (the family written for the unsigned token is deleted).
async fn login_paths(config: &Config, recorder: &IamRecorder) {
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
}

/// refresh: rotation, the exactly-once retry, following an account change, reuse.
async fn refresh_paths(config: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
    let clients = clients_recorded_by(recorder).await;
    let login = login_service(config, &plain, Arc::new(SystemClock)).await;
    let refresh = refresh_service(config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(config, &plain, "iam-refresh", &["read", "write"]).await;
    let r0 = login_tokens(&login, &username, &password).await["refresh_token"].as_str().unwrap().to_owned();
    let rotate = |token: String| {
        let refresh = &refresh;
        async move { tokenauth::edge::http::refresh(refresh, &refresh_request(&token, None, false)).await }
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
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// jwks: the document and the metadata.
async fn jwks_paths(config: &Config, recorder: &IamRecorder) {
    let clients = clients_recorded_by(recorder).await;
    let service = DiscoveryService::from_config(config, clients.dynamodb.clone());
    service.jwks().await.unwrap();
    service.metadata();
}

/// key-rotation: every step of the schedule on a set of its own (first key with the
/// sealing secret, successor, promotion, retirement and the deletion it schedules).
async fn key_rotation_paths(config: &Config, recorder: &IamRecorder) {
    let clients = clients_recorded_by(recorder).await;
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
}

/// Runs every function's paths once; the recorded calls, named as the template names them.
async fn recorded_calls() -> Value {
    let config = config();
    let plain = tokenauth_tests::clients().await;
    let rotation_table = format!("keys-{}", unique_username("iam"));
    create_keys_table(&plain, &rotation_table).await;
    let rotation_config = config_with(&[("KEYS_TABLE", &rotation_table), ("KEY_SET_TAG", &unique_username("iam"))]);

    let mut recorders: BTreeMap<&str, IamRecorder> = BTreeMap::new();
    for function in [
        "LoginFunction",
        "RefreshFunction",
        "RevokeFunction",
        "AuthorizerFunction",
        "JwksFunction",
        "KeyRotationFunction",
        "WhoamiFunction",
    ] {
        recorders.insert(function, IamRecorder::default());
    }
    login_paths(&config, &recorders["LoginFunction"]).await;
    refresh_paths(&config, &recorders["RefreshFunction"]).await;
    revoke_paths(&config, &recorders["RevokeFunction"]).await;
    authorizer_paths(&config, &recorders["AuthorizerFunction"]).await;
    jwks_paths(&config, &recorders["JwksFunction"]).await;
    key_rotation_paths(&rotation_config, &recorders["KeyRotationFunction"]).await;
    // whoami makes no AWS call (it links no AWS SDK).

    let main_namer = Namer::new(&[&config], &plain).await;
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
    let login_statement =
        "Action: [dynamodb:GetItem, dynamodb:UpdateItem, dynamodb:PutItem, dynamodb:ConditionCheckItem]";
    assert_eq!(template.matches(login_statement).count(), 1, "the login statement this test edits");
    let narrowed =
        template.replace(login_statement, "Action: [dynamodb:GetItem, dynamodb:UpdateItem, dynamodb:PutItem]");
    let (code, report) = judge(&narrowed, &calls);
    assert_eq!(code, 1);
    let denied = report["denied"].as_array().unwrap();
    assert!(
        denied.iter().any(|d| d["function"] == "LoginFunction" && d["action"] == "dynamodb:ConditionCheckItem"),
        "{report:#}"
    );

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
