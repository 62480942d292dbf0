//! End to end through the local gateway (`with-stack.sh --gateway`): HTTP on loopback to
//! the gateway, which reads its routes and authorizer from the template and invokes the
//! real handlers under `cargo lambda watch` (several instances of each, so concurrent
//! requests run concurrently). Nothing here calls a handler directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenauth::rules::keys::set::KeyKind;
use tokenauth::rules::keys::KeyAlgorithm;
use tokenauth::services::keys::manager::KeySource;
use tokenauth::services::keys::KeyManager;
use tokenauth::{Clock, SystemClock};
use tokenauth_tests::gateway::{
    gateway_client, gateway_function_config, gateway_setting, last_allowed_start, stated_revocation_lag,
    third_party_verdicts,
};
use tokenauth_tests::{clients, create_user, kid_of, repo_root};

/// One client's refreshes: when each was sent, the kid of the access token it returned, and
/// the token.
type Issued = Vec<(Instant, String, String)>;

#[test]
fn the_gateway_serves_the_routes_authorizers_and_cache_of_the_translated_template() {
    let root = repo_root();
    let template = root.join("infra/template.yaml");
    let translated = Command::new(root.join(".local/venv/bin/python"))
        .arg(root.join("infra/local/api_routes.py"))
        .arg(&template)
        .output()
        .expect("api_routes.py runs (make tools installs the venv)");
    assert!(translated.status.success(), "{}", String::from_utf8_lossy(&translated.stderr));
    let gateway = tokenauth_tests::runtime::function_binary("gateway");
    let read = Command::new(&gateway).arg("--template").arg(&template).arg("--print-routes").output().unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let translated: Value = serde_json::from_slice(&translated.stdout).unwrap();
    let read: Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(read, translated, "the gateway's routes differ from what the SAM translator builds");
    // The protected route is there, behind the authorizer, whose answers API Gateway does
    // not cache (a DPoP proof is good for one request): the comparison compared something.
    let whoami = read["routes"].as_array().unwrap().iter().find(|r| r["path"] == "/api/whoami").unwrap();
    let authorizer = &read["authorizers"][whoami["authorizer"].as_str().unwrap()];
    assert_eq!(authorizer["result_ttl_secs"], 0);
    assert_eq!(authorizer["identity_sources"], serde_json::json!(["$request.header.Authorization"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_through_the_gateway_ends_with_the_revoked_token_refused_within_the_stated_lag() {
    let config = gateway_function_config();
    let clients = clients().await;
    let (username, password, user_id) = create_user(&config, &clients, "gateway", &["read", "write"]).await;
    let gateway = gateway_client();

    let login = gateway.login(&username, &password).await.unwrap();
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.headers["cache-control"], "no-store");
    assert_eq!(login.str("token_type"), "Bearer");

    // The protected route sees the authorizer's context, never the token.
    let me = gateway.whoami(login.str("access_token")).await.unwrap();
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["authorizer"]["sub"], user_id.as_str());
    assert_eq!(me.json["authorizer"]["scope"], "read write");
    assert!(!me.text.contains(login.str("access_token")));
    assert_eq!(me.headers["x-gateway-authorizer"], "invoked");
    // The same token at once again: API Gateway caches no answer (the template's
    // ReauthorizeEvery 0), so the authorizer answers again (from its own verified-token cache).
    let again = gateway.whoami(login.str("access_token")).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.headers["x-gateway-authorizer"], "invoked");

    // API Gateway's own answers: no identity source, a token the authorizer denies.
    let anonymous = gateway.send("GET", "/api/whoami", &[], None).await.unwrap();
    assert_eq!((anonymous.status, anonymous.json["message"].as_str()), (401, Some("Unauthorized")));
    assert!(anonymous.headers.get("x-gateway-authorizer").is_none(), "401 without invoking the authorizer");
    let forged = gateway.whoami("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").await.unwrap();
    assert_eq!((forged.status, forged.json["message"].as_str()), (403, Some("Forbidden")));
    let nowhere = gateway.send("GET", "/api/nowhere", &[], None).await.unwrap();
    assert_eq!(nowhere.status, 404);

    let refreshed = gateway.refresh(login.str("refresh_token")).await.unwrap();
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_ne!(refreshed.str("refresh_token"), login.str("refresh_token"));
    assert_eq!(gateway.whoami(refreshed.str("access_token")).await.unwrap().status, 200);

    let revoked = gateway.revoke(refreshed.str("refresh_token"), "refresh_token").await.unwrap();
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let after = gateway.refresh(refreshed.str("refresh_token")).await.unwrap();
    assert_eq!(after.str("error"), "invalid_grant");

    let lag = stated_revocation_lag();
    let (allowed_until, refused) = last_allowed_start(&gateway, refreshed.str("access_token"), lag * 3).await;
    println!(
        "the revoked session's access token was last allowed {allowed_until:?} after the revoke (stated lag {lag:?})"
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
    // One poll of slack: the authorizer instance may have polled just before the revoke.
    assert!(allowed_until <= lag + Duration::from_secs(1), "allowed {allowed_until:?} after, stated lag {lag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_refresh_token_ends_the_family_end_to_end_and_parallel_retries_rotate_once() {
    let config = gateway_function_config();
    let clients = clients().await;
    let (username, password, _) = create_user(&config, &clients, "gwreuse", &["read"]).await;
    let gateway = gateway_client();
    let login = gateway.login(&username, &password).await.unwrap();
    assert_eq!(login.status, 200, "{}", login.text);

    // Four parallel refreshes of one token, on four function instances: one rotation; the
    // others are served the same successor (the retry leeway) or refused, never a second one.
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (gateway, token) = (gateway.clone(), login.str("refresh_token").to_owned());
        racing.spawn(async move { gateway.refresh(&token).await.unwrap() });
    }
    let mut successors = std::collections::BTreeSet::new();
    while let Some(answer) = racing.join_next().await {
        let answer = answer.unwrap();
        match answer.status {
            200 => {
                successors.insert(answer.str("refresh_token").to_owned());
            }
            _ => assert_eq!(answer.str("error"), "invalid_grant", "{}", answer.text),
        }
    }
    assert_eq!(successors.len(), 1, "parallel refreshes of one token rotated more than once");
    let second = successors.pop_first().unwrap();

    let third = gateway.refresh(&second).await.unwrap();
    assert_eq!(third.status, 200, "{}", third.text);
    // The first token again, after its successor was used: a thief's replay.
    let replay = gateway.refresh(login.str("refresh_token")).await.unwrap();
    assert_eq!((replay.status, replay.str("error")), (401, "invalid_grant"), "{}", replay.text);
    // The whole family is gone: the legitimate holder's newest token is refused too...
    let holder = gateway.refresh(third.str("refresh_token")).await.unwrap();
    assert_eq!(holder.str("error"), "invalid_grant", "{}", holder.text);
    // ...and its access token within the stated lag.
    let lag = stated_revocation_lag();
    let (allowed_until, refused) = last_allowed_start(&gateway, third.str("access_token"), lag * 3).await;
    assert_eq!(refused.status, 403, "still allowed after {allowed_until:?}");
    assert!(allowed_until <= lag + Duration::from_secs(1), "allowed {allowed_until:?} after, stated lag {lag:?}");
}

/// A forced cycle of key kinds under traffic: a KMS key, then an envelope key, then a KMS
/// key again, each added, published for the lead and promoted through the gate (as a
/// deployment switching `SigningKeyKind` there and back would), while clients keep calling
/// and refreshing. No valid token is refused, every refresh succeeds, each client gets tokens
/// of the new kid once the signers re-read the set (and of no key but the new one and the one
/// it replaced), and verifiers we did not write
/// accept the envelope key's tokens from the JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_rotate_kms_to_envelope_to_kms_while_clients_keep_calling_through_the_gateway() {
    let config = gateway_function_config();
    let clients = clients().await;
    let lead: u64 = gateway_setting("KEY_PUBLISH_LEAD_SECS").unwrap().parse().unwrap();
    let reload: u64 = gateway_setting("KEY_SET_RELOAD_SECS").unwrap().parse().unwrap();
    let manager =
        KeyManager::from_config(&config, clients.dynamodb.clone(), clients.kms.clone(), Arc::new(SystemClock));
    let first = manager.list().await.unwrap().current().cloned().unwrap();

    let gateway = gateway_client();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let issued: Arc<std::sync::Mutex<Vec<Issued>>> = Arc::default();
    let mut callers = tokio::task::JoinSet::new();
    for n in 0..3 {
        let (username, password, _) = create_user(&config, &clients, &format!("gwkeys{n}"), &["read"]).await;
        let (gateway, running, issued) = (gateway.clone(), running.clone(), issued.clone());
        issued.lock().unwrap().push(Vec::new());
        callers.spawn(async move {
            let login = gateway.login(&username, &password).await.unwrap();
            assert_eq!(login.status, 200, "{}", login.text);
            let mut tokens = (login.str("access_token").to_owned(), login.str("refresh_token").to_owned());
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                let me = gateway.whoami(&tokens.0).await.unwrap();
                assert_eq!(me.status, 200, "a valid token was refused during the rotation: {}", me.text);
                let sent = Instant::now();
                let next = gateway.refresh(&tokens.1).await.unwrap();
                assert_eq!(next.status, 200, "a refresh failed during the rotation: {}", next.text);
                tokens = (next.str("access_token").to_owned(), next.str("refresh_token").to_owned());
                issued.lock().unwrap()[n].push((sent, kid_of(&tokens.0), tokens.0.clone()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Each phase: (its key, its kind, from when every signer has it, until the next promotion).
    let mut phases: Vec<(String, KeyKind, Instant, Option<Instant>)> = Vec::new();
    for source in [KeySource::Envelope, KeySource::Create(KeyAlgorithm::ES256)] {
        manager.add(source).await.expect("a pending key");
        let pending = manager.list().await.unwrap().pending().cloned().unwrap();
        // The gate, not --force: wait until it opens.
        tokio::time::sleep(Duration::from_secs(lead) + Duration::from_millis(500)).await;
        manager.promote(false).await.expect("the promote gate is open after the publish lead");
        if let Some(previous) = phases.last_mut() {
            previous.3 = Some(Instant::now());
        }
        // Signers re-read the set every KEY_SET_RELOAD_SECS; a read that outlasts its budget
        // lands beside later requests, so an instance's first request after the interval may
        // still carry the previous kid. Keep calling until every client has received a token
        // of the new key sent after that (at most 60 s).
        let picked_up = Instant::now() + Duration::from_secs(reload) + Duration::from_millis(500);
        let deadline = Instant::now() + Duration::from_secs(60);
        let has_new = |c: &Issued| c.iter().any(|(sent, kid, _)| *sent >= picked_up && *kid == pending.kid);
        while Instant::now() < deadline && !issued.lock().unwrap().iter().all(has_new) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let waiting: Vec<usize> = (0..3).filter(|n| !has_new(&issued.lock().unwrap()[*n])).collect();
        assert!(waiting.is_empty(), "clients {waiting:?} got no token of the {:?} key within 60 s", pending.kind);
        phases.push((pending.kid, pending.kind, picked_up, None));
    }
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    while let Some(caller) = callers.join_next().await {
        caller.expect("no caller failed");
    }

    let kinds: Vec<KeyKind> = phases.iter().map(|p| p.1).collect();
    assert_eq!((first.kind, kinds.as_slice()), (KeyKind::Kms, [KeyKind::Envelope, KeyKind::Kms].as_slice()));
    let issued = issued.lock().unwrap().clone();
    for (n, client) in issued.iter().enumerate() {
        assert_eq!(client.first().map(|(_, kid, _)| kid), Some(&first.kid), "client {n} began with the first key");
        let mut before = &first.kid;
        for (kid, kind, from, until) in &phases {
            let during: Vec<&String> = client
                .iter()
                .filter(|(sent, ..)| *sent >= *from && until.is_none_or(|until| *sent < until))
                .map(|(_, kid, _)| kid)
                .collect();
            // The new key signs in its phase; the one it replaced may still sign for an
            // instance whose due re-read outlasted its budget (KeySetSigner's contract: that
            // key stays trusted past its last possible token), at any point in the phase.
            assert!(during.contains(&kid), "client {n} gets tokens of the {kind:?} key in its phase: {during:?}");
            assert!(
                during.iter().all(|k| *k == kid || *k == before),
                "client {n}: only the {kind:?} key, or the one it replaced, signs in its phase: {during:?}"
            );
            before = kid;
        }
    }
    let jwks = gateway.send("GET", "/.well-known/jwks.json", &[], None).await.unwrap();
    let kids: Vec<&str> = jwks.json["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
    for kid in std::iter::once(&first.kid).chain(phases.iter().map(|p| &p.0)) {
        assert!(kids.contains(&kid.as_str()), "{kid} is still published: {kids:?}");
    }

    // A token of the envelope key, as verifiers we did not write see it through the JWKS.
    let envelope_kid = &phases[0].0;
    let (_, _, token) = issued.iter().flatten().find(|(_, kid, _)| kid == envelope_kid).unwrap();
    let verdicts = third_party_verdicts(token, &config.issuer, &config.audience).await;
    assert_eq!(verdicts.pyjwt["kid"], envelope_kid.as_str(), "PyJWT chose the envelope key: {}", verdicts.pyjwt);
    assert_eq!(verdicts.pyjwt["algorithm"], "ES256");
    assert_eq!(verdicts.pyjwt["forged"], "invalid signature", "{}", verdicts.pyjwt);
    assert_eq!(verdicts.aws_jwt_verify["forged"], "JwtInvalidSignatureError", "{}", verdicts.aws_jwt_verify);
    assert_eq!(verdicts.jose["header"]["kid"], envelope_kid.as_str(), "{}", verdicts.jose);
    assert_eq!(verdicts.jose["forged"], "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "{}", verdicts.jose);
    for payload in [&verdicts.pyjwt["claims"], &verdicts.aws_jwt_verify["payload"], &verdicts.jose["payload"]] {
        assert_eq!(payload["iss"], config.issuer.as_str(), "{payload}");
    }
}

/// The demo user `make dev` seeds; an earlier run (or the other README test) may have
/// made it already.
async fn ensure_demo_user() {
    let config = gateway_function_config();
    let clients = clients().await;
    let username = tokenauth::rules::username::Username::normalise("demo").unwrap();
    let users = tokenauth::store::DynamoUsers::new(clients.dynamodb.clone(), &config.users_table);
    if users.get(&username).await.unwrap().is_none() {
        let hash = tokenauth::rules::password::hash("demo-password").unwrap();
        let record = tokenauth::store::UserRecord::new(
            tokenauth::rules::token::random_id(),
            hash,
            vec!["read".into(), "write".into()],
            0,
        );
        // Both README tests may get here at once: one creates, the other finds it made.
        let _ = users.create(&username, &record).await;
    }
    assert!(users.get(&username).await.unwrap().is_some(), "the demo user exists");
}

/// The first `sh` block of the README section under `heading`, with `GW=` pointing at this
/// run's gateway and `make` lines left out (`with-stack.sh --gateway` did what they do).
fn readme_block(heading: &str) -> Vec<String> {
    doc_block("README.md", heading)
}

/// The first `sh` block after `heading` in the document at `path` (from the repository's
/// root), as [`readme_block`] runs it.
fn doc_block(path: &str, heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let section = &readme[readme.find(heading).expect("the document's section")..];
    let block = section.split("```sh\n").nth(1).unwrap().split("\n```").next().unwrap();
    let gateway = gateway_client();
    block
        .lines()
        .filter(|line| !line.starts_with("make "))
        .map(|line| if line.starts_with("GW=") { format!("GW={}", gateway.url("")) } else { line.to_owned() })
        .collect()
}

/// docs/dpop.md's session (the README links to it), run as written.
#[tokio::test]
async fn the_dpop_doc_session_runs_as_written_through_the_gateway() {
    ensure_demo_user().await;
    let key_file = std::env::temp_dir().join(format!("tokenauth-readme-{}-device.pem", std::process::id()));
    let _ = std::fs::remove_file(&key_file);
    let script: Vec<String> = doc_block("docs/dpop.md", "## A DPoP session, end to end")
        .into_iter()
        .map(|line| line.replace("device.pem", key_file.to_str().unwrap()))
        .collect();
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .current_dir(repo_root())
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&key_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docs/dpop.md's session failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    // Login and refresh both answer DPoP tokens; whoami allows both with their proofs.
    assert_eq!(stdout.matches(r#""token_type":"DPoP""#).count(), 2, "{stdout}");
    assert_eq!(stdout.matches(r#"{"authorizer":{"#).count(), 2, "{stdout}");
    assert_eq!(stdout.matches(r#""client_id":"first-party""#).count(), 2, "{stdout}");
    assert_eq!(stdout.matches(r#""principal_type":"user""#).count(), 2, "{stdout}");
    // The bound token as Bearer is refused; the refresh without a proof is refused as the RFC says.
    assert!(lines.iter().any(|l| l.trim() == "HTTP/1.1 403 Forbidden"), "{stdout}");
    assert!(stdout.contains(r#"{"error":"invalid_dpop_proof","error_description":"a DPoP proof is required"}"#));
    // The token names the key: cnf.jkt is the key file's thumbprint.
    let thumbprint = lines.iter().position(|l| l.starts_with("{'jkt': ")).map(|i| (lines[i], lines[i + 1]));
    let (cnf, jkt) = thumbprint.unwrap_or_else(|| panic!("cnf and thumbprint lines: {stdout}"));
    assert_eq!(cnf, format!("{{'jkt': '{jkt}'}}"), "{stdout}");
}

/// docs/clients.md's service, end to end: registered by authctl (the test's stack, not make dev's:
/// its `set -a` line is left out, the stack's variables are this process's), a token by
/// client credentials, whoami as a service, a wrong secret, a disable.
#[tokio::test]
async fn the_clients_doc_service_runs_as_written_through_the_gateway() {
    let script: Vec<String> = doc_block("docs/clients.md", "## A service, end to end")
        .into_iter()
        .filter(|line| !line.starts_with("set -a"))
        .collect();
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .current_dir(repo_root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the service of docs/clients.md failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let registered: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let id = registered["client_id"].as_str().unwrap();
    assert!(registered["client_secret"].as_str().unwrap().starts_with("tkcs_"), "{stdout}");
    assert!(stdout.contains(r#""token_type":"Bearer""#) && !stdout.contains("refresh_token"), "{stdout}");
    assert!(stdout.contains(r#""principal_type":"service""#), "{stdout}");
    assert!(stdout.contains(&format!(r#""sub":"{id}""#)), "whoami names the service: {stdout}");
    let statuses: Vec<&str> = stdout.lines().filter(|l| l.starts_with("HTTP/1.1")).map(str::trim).collect();
    assert_eq!(statuses, ["HTTP/1.1 401 Unauthorized"], "{stdout}");
    assert!(stdout.to_ascii_lowercase().contains("www-authenticate: basic"), "{stdout}");
    assert_eq!(stdout.matches(r#""error":"invalid_client""#).count(), 2, "wrong secret, then disabled: {stdout}");
}

/// The README's account session: a user of its own (authctl, with this process's stack
/// variables: the block's `set -a` line is left out), two sessions, the sessions listed,
/// the password changed from one, the other's refresh refused, the list down to one.
#[tokio::test]
async fn the_readme_account_session_runs_as_written_through_the_gateway() {
    let script: Vec<String> = readme_block("### Your account: the password and the sessions")
        .into_iter()
        .filter(|line| !line.starts_with("set -a"))
        .collect();
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .current_dir(repo_root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README's account session failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let created = lines.iter().position(|l| l.starts_with("created user reader-"));
    let created = created.unwrap_or_else(|| panic!("authctl user add: {stdout}"));
    let answers: Vec<Value> = lines[created + 1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stdout}")))
        .collect();
    let [before, changed, refused, after] = answers.as_slice() else { panic!("four answers: {stdout}") };
    let currents = |list: &Value| -> Vec<bool> {
        let mut currents: Vec<bool> =
            list["sessions"].as_array().unwrap().iter().map(|s| s["current"].as_bool().unwrap()).collect();
        currents.sort();
        currents
    };
    assert_eq!(currents(before), [false, true], "two sessions, the phone's current: {stdout}");
    assert_eq!(before["sessions"][0]["client_id"], "first-party", "{stdout}");
    assert_eq!(changed, &serde_json::json!({}), "{stdout}");
    assert_eq!(refused["error"], "invalid_grant", "the laptop's session ended: {stdout}");
    assert_eq!(currents(after), [true], "only the phone's session is left: {stdout}");
}

#[tokio::test]
async fn the_readme_session_runs_as_written_through_the_gateway() {
    ensure_demo_user().await;
    let script = readme_block("## A session, end to end");
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README session failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let statuses: Vec<&str> = stdout.lines().filter(|l| l.starts_with("HTTP/1.1")).map(str::trim).collect();
    assert_eq!(statuses, ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden"], "{stdout}");
    assert_eq!(stdout.matches(r#"{"authorizer":{"#).count(), 2, "{stdout}");
    assert_eq!(stdout.matches(r#""client_id":"first-party""#).count(), 2, "{stdout}");
    assert_eq!(stdout.matches(r#""principal_type":"user""#).count(), 2, "{stdout}");
    assert!(stdout.trim_end().ends_with(r#"{"message":"Forbidden"}"#), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dpop_bound_token_passes_the_gateway_with_a_proof_for_the_url_called_and_only_once() {
    let config = gateway_function_config();
    let clients = clients().await;
    let gateway = gateway_client();
    let client = tokenauth::rules::dpop::ProofKey::generate().unwrap();
    let jkt = client.thumbprint();
    let signer = tokenauth_tests::key_set_signer(&config, &clients, Arc::new(SystemClock)).await;
    let issuer = tokenauth::services::issuer_for(Arc::new(signer), &config);
    let grant = tokenauth::rules::token::AccessGrant {
        subject: "gw-dpop",
        client_id: "first-party",
        scope: "read",
        session_id: "gw-dpop-session",
        bound_to: Some(&jkt),
    };
    let token = issuer
        .issue(&grant, &tokenauth::rules::token::RefreshToken::new_family(), SystemClock.now())
        .await
        .unwrap()
        .access_token;
    // The URL the client calls: the gateway's, over http (it sets X-Forwarded-Proto: http).
    let url = gateway.url("/api/whoami");
    let authorization = format!("DPoP {token}");
    let proof = client.proof("GET", &url, SystemClock.now(), Some(&token)).unwrap();
    let headers = [("authorization", authorization.as_str()), ("dpop", proof.as_str())];
    let me = gateway.send("GET", "/api/whoami", &headers, None).await.unwrap();
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["authorizer"]["sub"], "gw-dpop");
    // The same proof again: refused (403: an HTTP API authorizer can only deny).
    let replay = gateway.send("GET", "/api/whoami", &headers, None).await.unwrap();
    assert_eq!(replay.status, 403, "{}", replay.text);
    // As Bearer: refused; a proof for the https URL: refused.
    assert_eq!(gateway.whoami(&token).await.unwrap().status, 403);
    let https = url.replacen("http://", "https://", 1);
    let wrong = client.proof("GET", &https, SystemClock.now(), Some(&token)).unwrap();
    let headers = [("authorization", authorization.as_str()), ("dpop", wrong.as_str())];
    assert_eq!(gateway.send("GET", "/api/whoami", &headers, None).await.unwrap().status, 403);
}

/// Discovery works locally as deployed: the issuer is the gateway's own URL, so every URL the
/// RFC 8414 metadata names is one the gateway serves, and a client pointed at the gateway
/// uses them as they are.
#[tokio::test]
async fn the_metadata_through_the_gateway_names_endpoints_the_gateway_serves() {
    let gateway = gateway_client();
    let base = gateway.url("");
    let config = gateway_function_config();
    assert_eq!(config.issuer.trim_end_matches('/'), base, "the local issuer is the gateway's URL");
    let metadata = gateway.send("GET", "/.well-known/oauth-authorization-server", &[], None).await.unwrap();
    assert_eq!(metadata.status, 200, "{}", metadata.text);
    assert_eq!(metadata.json["issuer"], config.issuer.as_str(), "{}", metadata.text);
    let urls: Vec<(&String, &str)> = metadata
        .json
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.ends_with("_endpoint") || name.ends_with("_uri"))
        .map(|(name, value)| (name, value.as_str().unwrap_or_else(|| panic!("{name}: {value}"))))
        .collect();
    assert!(urls.iter().any(|(name, _)| *name == "jwks_uri"), "{}", metadata.text);
    assert!(urls.iter().any(|(name, _)| *name == "token_endpoint"), "{}", metadata.text);
    for (name, url) in &urls {
        let path = url.strip_prefix(&base).unwrap_or_else(|| panic!("{name} {url} is not under the gateway {base}"));
        assert!(path.starts_with('/'), "{name}: {url}");
        if *name == "jwks_uri" {
            // The GET one: fetched as it is named, the key set our tokens verify with.
            let jwks = gateway.send("GET", path, &[], None).await.unwrap();
            assert_eq!(jwks.status, 200, "{url}: {}", jwks.text);
            assert!(!jwks.json["keys"].as_array().unwrap().is_empty(), "{}", jwks.text);
        } else {
            // The POST ones: a route the gateway serves (the function's own answer to an
            // empty form, never the gateway's 404 for a route it does not know).
            let answer = gateway
                .send("POST", path, &[], Some(("application/x-www-form-urlencoded", String::new())))
                .await
                .unwrap();
            assert_ne!(answer.text, r#"{"message":"Not Found"}"#, "{name} {url} is not routed");
            assert!(answer.status < 500, "{name} {url}: {} {}", answer.status, answer.text);
            assert!(answer.json.is_object(), "{name} {url}: the function's JSON answer: {}", answer.text);
        }
    }
}
