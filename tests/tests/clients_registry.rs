//! The client registry's operations as an operator runs them: the real `authctl clients`
//! binary against DynamoDB Local (add, list, show, disable, rotate-secret, their `--json`
//! shapes and their refusals), what it stores (secrets only as hashes, verified by
//! `ClientRecord::secret_matches`), the first-party registration of the local stack, and a
//! disabled client's tokens refused by a warm authorizer within the revocation lag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokenauth::edge::authorizer::{Authorizer, Unauthorized};
use tokenauth::platform::clock::{Clock, SystemClock};
use tokenauth::rules::clients::{ClientRecord, ClientStatus, ClientType, GrantType, FIRST_PARTY_CLIENT_ID};
use tokenauth::rules::token::{random_id, AccessOnlyGrant, Actor};
use tokenauth::services::client_auth::{ClientAuthenticator, ClientCredentials};
use tokenauth::store::{DynamoClients, RevocationKind};
use tokenauth_tests::runtime::function_binary;
use tokenauth_tests::*;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Runs the real authctl with the stack's variables.
fn authctl(args: &[&str]) -> Output {
    Command::new(function_binary("authctl")).args(args).stdin(Stdio::null()).output().expect("authctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one JSON document a successful `--json` command printed.
fn json_of_run(args: &[&str]) -> Value {
    let out = authctl(args);
    assert!(out.status.success(), "authctl {args:?}: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}", &random_id()[..12])
}

async fn stored(config: &tokenauth::Config, clients: &Clients, id: &str) -> ClientRecord {
    DynamoClients::new(clients.dynamodb.clone(), &config.clients_table)
        .get(id, true)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("client {id} is registered"))
}

#[tokio::test]
async fn authctl_registers_lists_shows_rotates_and_disables_clients_with_json_for_scripts() {
    let config = config();
    let clients = clients().await;
    let now = || SystemClock.now();

    // A service: a secret, shown once, stored as a hash that verifies it.
    let service = unique_id("svc");
    let added = json_of_run(&[
        "clients",
        "add",
        "--id",
        &service,
        "--confidential",
        "--grant",
        "client_credentials",
        "--grant",
        TOKEN_EXCHANGE,
        "--scope",
        "read write",
        "--audience",
        "https://api.b.example",
        "--audience",
        "https://api.c.example",
        "--token-ttl",
        "300",
        "--json",
    ]);
    let keys: Vec<&String> = added.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["client_id", "client_secret"], "{added}");
    assert_eq!(added["client_id"], service.as_str());
    let first_secret = added["client_secret"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("tkcs_"), "{first_secret}");
    let record = stored(&config, &clients, &service).await;
    assert_eq!(record.client_type, ClientType::Confidential);
    assert_eq!(record.grants, [GrantType::ClientCredentials, GrantType::TokenExchange]);
    assert_eq!(record.scopes, ["read", "write"]);
    assert_eq!(record.audiences, ["https://api.b.example", "https://api.c.example"]);
    assert_eq!(record.token_ttl_secs, Some(300));
    assert!(record.secret_matches(&first_secret, now()));
    assert!(!record.secret_matches(&format!("tkcs_{}", &first_secret[6..]), now()), "another secret");
    let item = clients
        .dynamodb
        .get_item()
        .table_name(&config.clients_table)
        .key("client_id", aws_sdk_dynamodb::types::AttributeValue::S(service.clone()))
        .send()
        .await
        .unwrap();
    assert!(!format!("{:?}", item.item()).contains(&first_secret[5..]), "the item holds no secret");

    // A public app: no secret, in JSON or in text.
    let app = unique_id("app");
    let public = json_of_run(&["clients", "add", "--id", &app, "--public", "--json"]);
    assert_eq!(public, json!({"client_id": app}));
    assert_eq!(stored(&config, &clients, &app).await.grants, [GrantType::RefreshToken], "the default grant");
    // The text answer shows the secret once, with the warning.
    let texted = unique_id("svc-text");
    let out = authctl(&["clients", "add", "--id", &texted, "--confidential"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("tkcs_") && text.contains("shown once") && text.contains("not shown again"), "{text}");
    assert_eq!(stored(&config, &clients, &texted).await.grants, [GrantType::ClientCredentials], "the default grant");

    // list and show: every field but hashes; the secrets' count and dates.
    let listed = json_of_run(&["clients", "list", "--json"]);
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["client_id"].as_str().unwrap()).collect();
    for id in [&service, &app, &texted] {
        assert!(ids.contains(&id.as_str()), "{id} in {ids:?}");
    }
    let shown = json_of_run(&["clients", "show", &service, "--json"]);
    assert_eq!(shown["client_type"], "confidential");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["grants"], json!(["client_credentials", TOKEN_EXCHANGE]));
    assert_eq!(shown["audiences"], json!(["https://api.b.example", "https://api.c.example"]));
    assert_eq!(shown["token_ttl_secs"], 300);
    assert_eq!(shown["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(shown["secrets"][0]["created_at"], record.created_at);
    let hash = &record.secrets[0].hash;
    for printed in [
        stdout(&authctl(&["clients", "show", &service])),
        stdout(&authctl(&["clients", "show", &service, "--json"])),
        stdout(&authctl(&["clients", "list"])),
        stdout(&authctl(&["clients", "list", "--json"])),
    ] {
        assert!(printed.contains(&service), "{printed}");
        assert!(!printed.contains(hash.as_str()) && !printed.contains(&first_secret), "no hash, no secret: {printed}");
    }

    // rotate-secret: the new one printed once, the previous valid until its expiry only.
    let rotated = json_of_run(&["clients", "rotate-secret", &service, "--previous-valid-for", "60", "--json"]);
    let second_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first_secret);
    let until = rotated["previous_valid_until"].as_u64().expect("the previous secret's expiry");
    assert!(until >= now() + 55 && until <= now() + 60, "{rotated}");
    let record = stored(&config, &clients, &service).await;
    assert!(record.secret_matches(&first_secret, now()), "the previous secret within its grace");
    assert!(record.secret_matches(&second_secret, now()));
    assert!(!record.secret_matches(&first_secret, until), "rotated out at its expiry");
    assert!(record.secret_matches(&second_secret, until));
    // The default grace is a day; 0 ends the previous at once.
    let rotated = json_of_run(&["clients", "rotate-secret", &service, "--json"]);
    let until = rotated["previous_valid_until"].as_u64().unwrap();
    assert!(until >= now() + 86_400 - 5 && until <= now() + 86_400, "{rotated}");
    let third_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    let rotated = json_of_run(&["clients", "rotate-secret", &service, "--previous-valid-for", "0", "--json"]);
    assert_eq!(rotated["previous_valid_until"], Value::Null);
    let record = stored(&config, &clients, &service).await;
    assert!(!record.secret_matches(&third_secret, now()), "0: ended now");
    assert!(!record.secret_matches(&first_secret, now()) && !record.secret_matches(&second_secret, now()));
    assert!(record.secret_matches(rotated["client_secret"].as_str().unwrap(), now()));
    assert_eq!(json_of_run(&["clients", "show", &service, "--json"])["secrets"].as_array().unwrap().len(), 1);

    // disable: the item says so, the client's cut-off entry is written, and the token
    // endpoint's authenticator refuses it.
    let current = rotated["client_secret"].as_str().unwrap().to_owned();
    let authenticator = ClientAuthenticator::from_config(&config, clients.dynamodb.clone());
    let basic = ClientCredentials::SecretBasic { client_id: service.clone(), secret: current.clone() };
    assert!(authenticator.authenticate(&basic, now()).await.is_ok());
    let before = now();
    let disabled = json_of_run(&["clients", "disable", &service, "--json"]);
    assert_eq!(disabled["client_id"], service.as_str());
    assert_eq!(disabled["status"], "disabled");
    let not_before = disabled["not_before"].as_u64().unwrap();
    assert!(not_before > before && not_before <= now() + 2, "the cut-off is now's: {disabled}");
    let record = stored(&config, &clients, &service).await;
    assert_eq!(record.status, ClientStatus::Disabled);
    assert_eq!(Some(record.disabled_at.unwrap()), disabled["disabled_at"].as_u64());
    let entries = revocations_of(&config, &clients, &service).await;
    let entry = entries.iter().find(|e| e.kind == RevocationKind::Client).expect("a client entry");
    assert_eq!(entry.not_before, Some(not_before));
    let lifetime = config.revocation_lifetime().as_secs().max(300 + config.revocation_grace().as_secs());
    assert!(entry.expires_at >= before + lifetime, "the entry outlives the client's last token: {entry:?}");
    assert!(authenticator.authenticate(&basic, now()).await.is_err(), "a disabled client authenticates no more");
    assert_eq!(json_of_run(&["clients", "show", &service, "--json"])["status"], "disabled");
    // A client whose tokens outlive the deployment's: its entry outlives them.
    let long_lived = unique_id("svc-long");
    json_of_run(&["clients", "add", "--id", &long_lived, "--confidential", "--token-ttl", "7200", "--json"]);
    let before = now();
    json_of_run(&["clients", "disable", &long_lived, "--json"]);
    let entries = revocations_of(&config, &clients, &long_lived).await;
    let entry = entries.iter().find(|e| e.kind == RevocationKind::Client).expect("a client entry");
    assert!(entry.expires_at >= before + 7200 + config.revocation_grace().as_secs(), "{entry:?}");
    // A disabled client gets no new secret.
    let out = authctl(&["clients", "rotate-secret", &service]);
    assert!(!out.status.success() && stderr(&out).contains("disabled"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("tkcs_"));
}

#[tokio::test]
async fn a_bad_registration_an_existing_id_and_an_unknown_id_are_refused_clearly_writing_nothing() {
    let config = config();
    let clients = clients().await;
    let table = DynamoClients::new(clients.dynamodb.clone(), &config.clients_table);

    // An existing id: its own exit status, the first registration untouched.
    let id = unique_id("svc-dup");
    let first = json_of_run(&["clients", "add", "--id", &id, "--confidential", "--json"]);
    let again = authctl(&["clients", "add", "--id", &id, "--public", "--json"]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    let kept = table.get(&id, true).await.unwrap().unwrap();
    assert_eq!(kept.client_type, ClientType::Confidential);
    assert!(kept.secret_matches(first["client_secret"].as_str().unwrap(), SystemClock.now()));

    // An unknown id: its own exit status.
    let unknown = unique_id("nobody");
    for args in [
        vec!["clients", "show", unknown.as_str()],
        vec!["clients", "disable", unknown.as_str()],
        vec!["clients", "rotate-secret", unknown.as_str()],
    ] {
        let out = authctl(&args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&format!("no client {unknown}")), "{args:?}: {}", stderr(&out));
    }
    assert!(revocations_of(&config, &clients, &unknown).await.is_empty(), "an unknown id is not cut off");

    // A public client with a confidential-only grant, keys on a public client, a grant
    // by another name, no type: refused, nothing written.
    let public = unique_id("app-bad");
    let dir = tempdir();
    let jwks_file = dir.join("keys.json");
    let key = tokenauth::rules::keys::testing::LocalSigner::new();
    std::fs::write(&jwks_file, json!({"keys": [key.trusted().public_jwk()]}).to_string()).unwrap();
    let jwks_path = jwks_file.to_str().unwrap();
    for (args, says) in [
        (vec!["--public", "--grant", "client_credentials"], "a public client cannot use the client_credentials grant"),
        (vec!["--public", "--grant", TOKEN_EXCHANGE], "a public client cannot use the urn:ietf"),
        (vec!["--public", "--jwks", jwks_path], "for confidential clients"),
        (vec!["--confidential", "--grant", "password"], "unknown grant"),
        (vec![], "--public"),
        (vec!["--public", "--confidential"], "cannot be used with"),
    ] {
        let mut argv = vec!["clients", "add", "--id", public.as_str()];
        argv.extend(&args);
        let out = authctl(&argv);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(table.get(&public, true).await.unwrap().is_none(), "nothing registered");

    // --jwks: usable public keys only; a client with keys gets no secret.
    let mut private = key.trusted().public_jwk().clone();
    private["d"] = "AAAA".into();
    let bad_file = dir.join("private.json");
    std::fs::write(&bad_file, json!({"keys": [private]}).to_string()).unwrap();
    let out = authctl(&["clients", "add", "--id", &public, "--confidential", "--jwks", bad_file.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("private member"), "{}", stderr(&out));
    assert!(table.get(&public, true).await.unwrap().is_none());
    let with_keys = json_of_run(&["clients", "add", "--id", &public, "--confidential", "--jwks", jwks_path, "--json"]);
    assert_eq!(with_keys, json!({"client_id": public}), "no secret for a client with keys");
    let record = table.get(&public, true).await.unwrap().unwrap();
    assert!(record.secrets.is_empty() && record.jwks.is_some());
    let out = authctl(&["clients", "rotate-secret", &public]);
    assert!(!out.status.success() && stderr(&out).contains("no secret to rotate"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clients-registry-{}", random_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_local_stack_registers_the_first_party_app_as_a_public_client_of_its_audience() {
    let config = config();
    let clients = clients().await;
    let first_party = stored(&config, &clients, FIRST_PARTY_CLIENT_ID).await;
    assert_eq!(first_party.client_type, ClientType::Public);
    assert_eq!(first_party.grants, [GrantType::RefreshToken]);
    assert_eq!(first_party.audiences, std::slice::from_ref(&config.audience));
    assert!(first_party.is_active() && first_party.secrets.is_empty());
    // Registering it again (as `make deploy` does on every deploy) keeps it as it is.
    let out = authctl(&["clients", "add", "--id", FIRST_PARTY_CLIENT_ID, "--public", "--audience", "https://other"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stored(&config, &clients, FIRST_PARTY_CLIENT_ID).await, first_party);
}

/// A token without a refresh token: a service's own (no session, no actor) or an exchanged one.
fn grant<'a>(
    subject: &'a str,
    client_id: &'a str,
    session: Option<&'a str>,
    act: Option<Actor>,
) -> AccessOnlyGrant<'a> {
    AccessOnlyGrant {
        subject,
        client_id,
        scope: "read",
        audience: None,
        session_id: session,
        exchanged: act.is_some(),
        act,
        ttl: None,
        not_after: None,
        bound_to: None,
    }
}

/// The authorizer as the function builds it, polling revocations every second.
async fn warm_authorizer(clients: &Clients) -> Authorizer {
    let config = config_with(&[("REVOCATION_POLL_SECS", "1"), ("AUTHORIZER_ROUTE_SCOPES", "$default=")]);
    let a = Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
    a.warm_up().await;
    a
}

/// Whether the authorizer allows `token` now (a REST API `TOKEN` event, whose refusals say
/// why), once any read the request started has answered.
async fn allows(a: &Authorizer, token: &str) -> Result<bool, Unauthorized> {
    let event = event_text_with("authorizer-rest-token.json", &format!("Bearer {token}"));
    let answer = serde_json::to_value(handle_after_reads(a, &event).await?).unwrap();
    Ok(answer["policyDocument"]["Statement"].as_array().unwrap().iter().any(|s| s["Effect"] == "Allow"))
}

#[tokio::test]
async fn a_disabled_clients_tokens_are_refused_by_a_warm_authorizer_within_the_lag() {
    let config = config();
    let clients = clients().await;
    let (app, service) = (unique_id("app-off"), unique_id("svc-off"));
    json_of_run(&["clients", "add", "--id", &app, "--public", "--json"]);
    json_of_run(&["clients", "add", "--id", &service, "--confidential", "--grant", TOKEN_EXCHANGE, "--json"]);

    // A user's session issued to the app (login as that client).
    let app_config = config_with(&[("CLIENT_ID", app.as_str())]);
    let login = login_service(&app_config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, "clients-off", &["read"]).await;
    let session = login_tokens(&login, &username, &password).await;
    let app_token = session["access_token"].as_str().unwrap().to_owned();
    // The service's own token, and tokens it exchanged: as the caller, and earlier in a chain.
    let issuer = tokenauth::services::issuer_for(
        Arc::new(key_set_signer(&config, &clients, Arc::new(SystemClock)).await),
        &config,
    );
    let now = SystemClock.now();
    let own = issuer.issue_access_only(&grant(&service, &service, None, None), now).await.unwrap().access_token;
    let actor = |sub: &str, act: Option<Actor>| Actor { sub: sub.to_owned(), act: act.map(Box::new) };
    let by_service = grant(&user_id, &service, Some("sess-1"), Some(actor(&service, None)));
    let exchanged = issuer.issue_access_only(&by_service, now).await.unwrap().access_token;
    let chain = actor("svc-downstream", Some(actor(&service, None)));
    let downstream = issuer
        .issue_access_only(&grant(&user_id, "svc-downstream", Some("sess-1"), Some(chain)), now)
        .await
        .unwrap()
        .access_token;
    // Another client's token, untouched by either disable.
    let (other_user, other_password, _) = create_user(&config, &clients, "clients-on", &["read"]).await;
    let first_party = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let other =
        login_tokens(&first_party, &other_user, &other_password).await["access_token"].as_str().unwrap().to_owned();

    let a = warm_authorizer(&clients).await;
    for token in [&app_token, &own, &exchanged, &downstream, &other] {
        assert_eq!(allows(&a, token).await, Ok(true), "allowed before the disable");
    }

    // The stated lag of this authorizer: its poll interval.
    let lag = config_with(&[("REVOCATION_POLL_SECS", "1")]).authorizer.poll_every;
    for (client, tokens) in [(&app, vec![&app_token]), (&service, vec![&own, &exchanged, &downstream])] {
        let started = Instant::now();
        let out = authctl(&["clients", "disable", client]);
        assert!(out.status.success(), "{}", stderr(&out));
        let deadline = started + Duration::from_secs(15);
        let mut refused_after = Vec::new();
        for token in &tokens {
            loop {
                match allows(&a, token).await {
                    Err(Unauthorized::Revoked) => break,
                    other => assert!(Instant::now() < deadline, "{client}'s token still {other:?} at the deadline"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            refused_after.push(started.elapsed());
        }
        let last = refused_after.iter().max().copied().unwrap();
        println!("{client}: refused {refused_after:?} after the disable started (lag {lag:?})");
        assert!(last <= lag + lag, "refused {last:?} after the disable, stated lag {lag:?} (+ a poll)");
    }
    assert_eq!(allows(&a, &other).await, Ok(true), "another client's token is not touched");
    // The app's session cannot refresh: the token endpoint's authenticator refuses the client.
    let authenticator = ClientAuthenticator::from_config(&config, clients.dynamodb.clone());
    let none = ClientCredentials::None { client_id: Some(app.clone()) };
    assert!(authenticator.authenticate(&none, SystemClock.now()).await.is_err());
}
