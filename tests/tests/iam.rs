//! IAM proven from the calls, both ways. Each function's paths run against the local stack
//! with clients that record every call as IAM authorises it (`tokenauth_tests::iam`); then
//! `infra/local/iam_check.py` transforms `infra/template.yaml` with the SAM translator and
//! judges every call against that function's role, and every grant against the calls.
//! The emulators enforce no IAM: this is where a missing or an excess permission shows.
//! KMS calls are judged against the key's policy too (the template's keys, and the
//! `SIGNING_KEY_POLICY` rotation creates keys with), as KMS judges them; a second test shows
//! what the key policies refuse that IAM alone would not.
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

/// The template's functions, each judged against its own role.
const FUNCTIONS: [&str; 7] = [
    "LoginFunction",
    "RefreshFunction",
    "RevokeFunction",
    "AuthorizerFunction",
    "JwksFunction",
    "KeyRotationFunction",
    "WhoamiFunction",
];

/// Names a call's resource as the template names it, with the tag condition of a KMS key.
struct Namer {
    tables: BTreeMap<String, &'static str>,
    sealing_key: String,
    /// The key-set signing key (`KEY_SET_SIGNING_KEY_ID` of the stack), where the stack has one.
    set_key: Option<String>,
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
        let set_key = std::env::var("KEY_SET_SIGNING_KEY_ID").ok().filter(|k| !k.is_empty());
        Self {
            tables,
            sealing_key: config.sealing_key_id.clone(),
            set_key,
            tags,
            key_set_tag: config.key_set_tag.clone(),
        }
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
                let bare = |id: &str| id.rsplit_once(":key/").map_or(id, |(_, id)| id).to_owned();
                let id = bare(id);
                let id = id.as_str();
                if id == bare(&self.sealing_key) {
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/SealingKey")
                } else if self.set_key.as_deref().map(bare).as_deref() == Some(id) {
                    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/KeySetSigningKey")
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
    let service = DiscoveryService::from_config(config, clients.dynamodb.clone(), clients.kms.clone());
    service.jwks().await.unwrap();
    service.metadata();
}

/// key-rotation: every step of the schedule on a set of its own (first key with the
/// sealing secret, successor, promotion, retirement and the deletion it schedules).
async fn key_rotation_paths(config: &Config, recorder: &IamRecorder) {
    let plain = tokenauth_tests::clients().await;
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
    // Every key it created carries SIGNING_KEY_POLICY (the emulator keeps what CreateKey
    // was given) and the set's tag.
    let policy = config.signing_key_policy.as_deref().expect("the rotation's config sets a policy");
    let set = manager.list().await.unwrap();
    assert!(!set.entries.is_empty());
    for key in &set.entries {
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

#[test]
fn the_account_root_administers_keys_but_never_uses_them() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let (_, report) = judge(&template, &only(&[], json!({})));
    assert_eq!(report["key_policy"], json!([]), "{report:#}");

    // The sealing key's account statement widened to kms:* (what it was): reported.
    let account = "Sid: AccountAdministersWithoutUse\n            Effect: Allow\n            Principal:\n              AWS: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:root\"\n            Action: [";
    assert_eq!(template.matches(account).count(), 2, "the sealing and key-set signing keys' account statements");
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
