//! DPoP sessions (RFC 9449) at login and the token endpoint, against the local stack:
//! binding at login and at refresh, rotation only with the session's key, refusals that
//! change nothing (no proof, another key, a replay, another request), concurrency, and a
//! failing Proofs table. The proofs are made with the client's side of the rules
//! (`ProofKey`); the authorizer's side is tested elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::dpop::{called_url, ProofKey};
use tokenauth::store::{DynamoFamilies, FamilyRecord, FamilyStatus};
use tokenauth::{Config, LoginService, TokenService};
use tokenauth_tests::*;

/// The host of the sample events: the URL a proof names is `https://` it and the path.
const HOST: &str = "api.example.test";

struct Setup {
    config: Config,
    clients: Clients,
    clock: Arc<ManualClock>,
    login: LoginService,
    refresh: TokenService,
    username: String,
    password: String,
    user_id: String,
}

async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, config()).await
}

async fn setup_with(prefix: &str, config: Config) -> Setup {
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let login = login_service(&config, &clients, clock.clone()).await;
    let refresh = refresh_service(&config, &clients, clock.clone()).await;
    let (username, password, user_id) = create_user(&config, &clients, prefix, &["read", "write"]).await;
    Setup { config, clients, clock, login, refresh, username, password, user_id }
}

/// The sample `event` as a request with these `DPoP` headers.
fn with_proofs(event: Value, proofs: &[&str]) -> Request {
    let mut request = request_from_event(&event);
    for proof in proofs {
        request.headers_mut().append("dpop", proof.parse().unwrap());
    }
    request
}

impl Setup {
    /// The URL the client calls for `path` on the sample events' host.
    fn url(&self, path: &str) -> String {
        called_url(self.config.dpop.public_base_url.as_deref(), None, Some(HOST), path).unwrap()
    }

    /// A fresh proof by `key` for `POST path`, made now.
    fn proof(&self, key: &ProofKey, path: &str) -> String {
        key.proof("POST", &self.url(path), self.clock.now(), None).unwrap()
    }

    async fn login_with(&self, proofs: &[&str]) -> Response<Body> {
        let mut event = event("login-http-api.json");
        event["body"] = Value::String(
            serde_json::json!({"username": self.username, "password": self.password, "scope": "read write"})
                .to_string(),
        );
        tokenauth::edge::http::login(&self.login, &with_proofs(event, proofs)).await
    }

    /// Logs in with a proof by `key` (or none), returns the token response.
    async fn login_bound(&self, key: Option<&ProofKey>) -> Value {
        let proof = key.map(|k| self.proof(k, "/auth/login"));
        let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
        let response = self.login_with(&proofs).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
        json_of(&response)
    }

    async fn refresh_with(&self, token: &str, proofs: &[&str]) -> Response<Body> {
        let mut event = event("refresh-json.json");
        event["body"] = Value::String(serde_json::json!({ "refresh_token": token }).to_string());
        tokenauth::edge::http::token(&self.refresh, &with_proofs(event, proofs)).await
    }

    /// Refreshes with a fresh proof by `key` (or none).
    async fn refresh(&self, token: &str, key: Option<&ProofKey>) -> Response<Body> {
        match key {
            Some(key) => self.refresh_with(token, &[&self.proof(key, "/auth/refresh")]).await,
            None => self.refresh_with(token, &[]).await,
        }
    }

    async fn rotate(&self, token: &str, key: Option<&ProofKey>) -> Value {
        let response = self.refresh(token, key).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
        json_of(&response)
    }

    async fn family(&self, token: &str) -> FamilyRecord {
        family(&self.config, &self.clients, &family_of(token)).await
    }

    /// The `cnf.jkt` of an access token, verified as any verifier would.
    async fn bound_to(&self, body: &Value) -> Option<String> {
        let claims = independently_verified(&self.config, &self.clients, body["access_token"].as_str().unwrap())
            .await
            .expect("a valid access token");
        claims.cnf.map(|c| c.jkt)
    }
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap().to_owned()
}

/// A 400 `invalid_dpop_proof` with this description, never cached.
fn assert_invalid_proof(response: &Response<Body>, description: &str) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{:?}", response.body());
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(response);
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    assert_eq!(body["error_description"], description, "{body}");
}

#[tokio::test]
async fn a_login_with_a_proof_is_bound_to_the_key() {
    let s = setup("dpop-login").await;
    let key = ProofKey::generate().unwrap();
    let body = s.login_bound(Some(&key)).await;
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(s.bound_to(&body).await, Some(key.thumbprint()), "cnf.jkt is the key's RFC 7638 thumbprint");
    let family = s.family(&refresh_token(&body)).await;
    assert_eq!((family.jkt, family.bound_since), (Some(key.thumbprint()), Some(0)));
}

/// Whether two calls were in flight at the same time.
fn overlap(a: &Call, b: &Call) -> bool {
    a.started < b.finished.unwrap() && b.started < a.finished.unwrap()
}

#[tokio::test]
async fn a_dpop_login_and_refresh_record_the_proof_beside_their_reads_adding_no_round_trip() {
    let s = setup("dpop-calls").await;
    let key = ProofKey::generate().unwrap();
    s.clients.calls.clear();
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let (calls, names) = (s.clients.calls.calls(), s.clients.calls.names());
    println!("AWS calls for one DPoP login: {} {names:?}", calls.len());
    assert_eq!(calls.len(), 7, "a bearer login's six and the proof's PutItem: {names:?}");
    let (limit, calls) = (&calls[0], &calls[1..]);
    assert_eq!(limit.operation, "UpdateItem", "the per-source limit first: {names:?}");
    let find = |operation: &str| calls.iter().find(|c| c.operation == operation).unwrap();
    let (read, reserve, record) = (find("GetItem"), find("UpdateItem"), find("PutItem"));
    let (sign, write) = (find("Sign"), find("TransactWriteItems"));
    assert!(overlap(read, record) && overlap(reserve, record), "the proof's record beside the account's read");
    let first_done = [read, reserve, record].iter().map(|c| c.finished.unwrap()).max().unwrap();
    assert!(first_done <= sign.started.min(write.started), "recorded before anything is signed or written");

    s.clients.calls.clear();
    s.rotate(&r0, Some(&key)).await;
    let (calls, names) = (s.clients.calls.calls(), s.clients.calls.names());
    println!("AWS calls for one DPoP refresh: {} {names:?}", calls.len());
    assert_eq!(calls.len(), 7, "a bearer refresh's six and the proof's PutItem: {names:?}");
    // Limit, client, family and proof at once (the token endpoint authenticates the client
    // beside the family's read).
    let mut first = names[..4].to_vec();
    first.sort();
    let expected = ["DynamoDB.GetItem", "DynamoDB.GetItem", "DynamoDB.PutItem", "DynamoDB.UpdateItem"];
    assert_eq!(first, expected, "{names:?}");
    let record = calls[..4].iter().find(|c| c.operation == "PutItem").unwrap();
    assert!(calls[..4].iter().all(|c| std::ptr::eq(c, record) || overlap(c, record)), "all four at once");
    let first_done = calls[..4].iter().map(|c| c.finished.unwrap()).max().unwrap();
    assert!(calls[4..].iter().all(|c| first_done <= c.started), "then the account, the signature and the rotation");
}

/// The REST API sample login event (stage `prod`) for `s`'s user, with a proof for `url`.
fn rest_login(s: &Setup, key: &ProofKey, url: &str) -> Request {
    let mut event = event("login-rest-api.json");
    event["body"] = Value::String(json!({"username": s.username, "password": s.password}).to_string());
    with_proofs(event, &[&key.proof("POST", url, s.clock.now(), None).unwrap()])
}

#[tokio::test]
async fn behind_a_rest_api_stage_the_proof_names_the_url_with_the_stage_or_the_public_base_url() {
    let s = setup("dpop-stage").await;
    assert!(s.config.dpop.public_base_url.is_none(), "the stack sets no PUBLIC_BASE_URL");
    let key = ProofKey::generate().unwrap();
    // The sample event is the stage `prod` of a REST API: the client called /prod/auth/login.
    let without_stage = rest_login(&s, &key, "https://api.example.test/auth/login");
    assert_invalid_proof(
        &tokenauth::edge::http::login(&s.login, &without_stage).await,
        "the DPoP proof is for another request",
    );
    let with_stage = rest_login(&s, &key, "https://api.example.test/prod/auth/login");
    let response = tokenauth::edge::http::login(&s.login, &with_stage).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    assert_eq!(json_of(&response)["token_type"], "DPoP");

    // Behind a custom domain with a base path mapping: PUBLIC_BASE_URL and the path in the API.
    let custom = setup_with("dpop-base", config_with(&[("PUBLIC_BASE_URL", "https://auth.example.com/v1")])).await;
    let stage_url = rest_login(&custom, &key, "https://api.example.test/prod/auth/login");
    assert_invalid_proof(
        &tokenauth::edge::http::login(&custom.login, &stage_url).await,
        "the DPoP proof is for another request",
    );
    let public = rest_login(&custom, &key, "https://auth.example.com/v1/auth/login");
    let response = tokenauth::edge::http::login(&custom.login, &public).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
}

#[tokio::test]
async fn a_bound_session_rotates_with_a_proof_from_its_key_and_stays_bound() {
    let s = setup("dpop-rotate").await;
    let key = ProofKey::generate().unwrap();
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let body = s.rotate(&r0, Some(&key)).await;
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(s.bound_to(&body).await, Some(key.thumbprint()));
    let r1 = refresh_token(&body);
    let family = s.family(&r1).await;
    assert_eq!((family.generation, family.jkt.as_deref()), (1, Some(key.thumbprint().as_str())));
    let r2 = refresh_token(&s.rotate(&r1, Some(&key)).await);
    assert_eq!(s.family(&r2).await.generation, 2);
}

#[tokio::test]
async fn a_bound_refresh_without_a_proof_is_refused_and_changes_nothing_then_works_with_one() {
    let s = setup("dpop-noproof").await;
    let key = ProofKey::generate().unwrap();
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let before = s.family(&r0).await;

    assert_invalid_proof(&s.refresh(&r0, None).await, "a DPoP proof is required");
    assert_eq!(s.family(&r0).await, before, "not a single attribute changed");

    let body = s.rotate(&r0, Some(&key)).await;
    assert_eq!(s.family(&refresh_token(&body)).await.generation, 1);
}

#[tokio::test]
async fn a_proof_from_another_key_is_refused_and_changes_nothing() {
    let s = setup("dpop-otherkey").await;
    let (key, other) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let before = s.family(&r0).await;
    assert_invalid_proof(
        &s.refresh(&r0, Some(&other)).await,
        "the DPoP proof is signed by another key than the session's",
    );
    assert_eq!(s.family(&r0).await, before);
    s.rotate(&r0, Some(&key)).await;
}

#[tokio::test]
async fn a_thief_with_a_copied_bound_token_but_not_the_key_cannot_end_the_session() {
    let s = setup("dpop-thief").await;
    let (key, thief) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let r1 = refresh_token(&s.rotate(&r0, Some(&key)).await);
    // Past the retry leeway, r0 would be reuse: presented without the key it is not.
    s.clock.advance(s.config.refresh_leeway.as_secs() + 1);
    let before = s.family(&r1).await;
    assert_invalid_proof(&s.refresh(&r0, None).await, "a DPoP proof is required");
    assert_invalid_proof(
        &s.refresh(&r0, Some(&thief)).await,
        "the DPoP proof is signed by another key than the session's",
    );
    let after = s.family(&r1).await;
    assert_eq!(after, before, "no revocation, no rotation");
    assert_eq!(after.status, FamilyStatus::Active);
    assert!(revocations_of(&s.config, &s.clients, &family_of(&r1)).await.is_empty(), "nothing denylisted");
    s.rotate(&r1, Some(&key)).await;
}

/// `POST /auth/revoke` (form) of `token` with these `DPoP` headers, through the handler.
async fn revoke_with(revoke: &tokenauth::RevocationService, token: &str, proofs: &[&str]) -> Response<Body> {
    let mut event = event("revoke-refresh-token-form.json");
    event["body"] = Value::String(format!("token={token}"));
    tokenauth::edge::http::revoke(revoke, &with_proofs(event, proofs)).await
}

#[tokio::test]
async fn a_copied_bound_refresh_token_without_the_key_cannot_end_the_session_by_revocation() {
    let s = setup("dpop-revoke").await;
    let revoke = revocation_service(&s.config, &s.clients, s.clock.clone()).await;
    let (key, thief) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let before = s.family(&r0).await;
    let refused = revoke_with(&revoke, &r0, &[]).await;
    assert_invalid_proof(&refused, "a DPoP proof is required");
    let by_thief = revoke_with(&revoke, &r0, &[&s.proof(&thief, "/auth/revoke")]).await;
    assert_invalid_proof(&by_thief, "the DPoP proof is signed by another key than the session's");
    assert_eq!(s.family(&r0).await, before, "nothing ended");
    assert!(revocations_of(&s.config, &s.clients, &family_of(&r0)).await.is_empty(), "nothing denylisted");

    // A proof for another URL is refused too; the session's own key, for this URL, ends it.
    let elsewhere = revoke_with(&revoke, &r0, &[&s.proof(&key, "/auth/refresh")]).await;
    assert_eq!(json_of(&elsewhere)["error"], "invalid_dpop_proof");
    let own = revoke_with(&revoke, &r0, &[&s.proof(&key, "/auth/revoke")]).await;
    assert_eq!(own.status(), StatusCode::OK, "{:?}", own.body());
    assert_eq!(s.family(&r0).await.status, FamilyStatus::Revoked);
    // A forged token of a bound family needs no proof to change nothing (RFC 7009 §2.2).
    let forged = tokenauth::rules::token::RefreshToken::from_parts(&family_of(&r0), 9, [7; 32]).unwrap().encode();
    assert_eq!(revoke_with(&revoke, &forged, &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_copied_bound_access_token_is_revoked_only_with_a_proof_of_its_key() {
    let s = setup("dpop-revoke-at").await;
    let revoke = revocation_service(&s.config, &s.clients, s.clock.clone()).await;
    let (key, thief) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let access = s.login_bound(Some(&key)).await["access_token"].as_str().unwrap().to_owned();
    let jti = independently_verified(&s.config, &s.clients, &access).await.unwrap().jti;
    assert_invalid_proof(&revoke_with(&revoke, &access, &[]).await, "a DPoP proof is required");
    let by_thief = revoke_with(&revoke, &access, &[&s.proof(&thief, "/auth/revoke")]).await;
    assert_invalid_proof(&by_thief, "the DPoP proof is signed by another key than the session's");
    assert!(revocations_of(&s.config, &s.clients, &jti).await.is_empty(), "nothing denylisted");
    let own = revoke_with(&revoke, &access, &[&s.proof(&key, "/auth/revoke")]).await;
    assert_eq!(own.status(), StatusCode::OK, "{:?}", own.body());
    assert!(!revocations_of(&s.config, &s.clients, &jti).await.is_empty(), "denylisted with its key's proof");
}

#[tokio::test]
async fn revoke_all_takes_a_bound_token_only_as_dpop_with_a_fresh_proof_of_its_key() {
    let s = setup("dpop-revoke-all").await;
    let revoke = revocation_service(&s.config, &s.clients, s.clock.clone()).await;
    let key = ProofKey::generate().unwrap();
    let tokens = s.login_bound(Some(&key)).await;
    let (access, r0) = (tokens["access_token"].as_str().unwrap().to_owned(), refresh_token(&tokens));
    let url = s.url("/auth/revoke-all");
    let revoke_all = |scheme: &str, proofs: Vec<String>| {
        let mut event = event("revoke-all.json");
        event["headers"]["authorization"] = Value::String(format!("{scheme} {access}"));
        let request = with_proofs(event, &proofs.iter().map(String::as_str).collect::<Vec<_>>());
        let revoke = &revoke;
        async move { tokenauth::edge::http::revoke(revoke, &request).await }
    };
    let fresh = |key: &ProofKey, url: &str, with_ath: bool| {
        key.proof("POST", url, s.clock.now(), with_ath.then_some(access.as_str())).unwrap()
    };
    let thief = ProofKey::generate().unwrap();
    let refused = [
        ("as Bearer, no proof", revoke_all("Bearer", Vec::new()).await),
        ("as Bearer, with a proof", revoke_all("Bearer", vec![fresh(&key, &url, true)]).await),
        ("as DPoP, no proof", revoke_all("DPoP", Vec::new()).await),
        ("a proof without ath", revoke_all("DPoP", vec![fresh(&key, &url, false)]).await),
        ("a proof for another URL", revoke_all("DPoP", vec![fresh(&key, &s.url("/auth/revoke"), true)]).await),
        ("another key's proof", revoke_all("DPoP", vec![fresh(&thief, &url, true)]).await),
    ];
    for (name, response) in refused {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}: {:?}", response.body());
        assert_eq!(json_of(&response)["error"], "invalid_token", "{name}");
        // RFC 9449 §7.1: the challenge of the scheme the token came under.
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        let scheme = if name.starts_with("as Bearer") { "Bearer " } else { "DPoP " };
        assert!(challenge.starts_with(scheme), "{name}: {challenge}");
        if scheme == "DPoP " {
            for alg in tokenauth::rules::dpop::DPOP_SIGNING_ALGS {
                assert!(challenge.contains(alg), "{name}: {challenge} names {alg}");
            }
        }
    }
    assert_eq!(s.family(&r0).await.status, FamilyStatus::Active, "a copied bound token ends nothing");

    let proof = fresh(&key, &url, true);
    let ended = revoke_all("DPoP", vec![proof.clone()]).await;
    assert_eq!(ended.status(), StatusCode::OK, "{:?}", ended.body());
    assert_eq!(s.family(&r0).await.status, FamilyStatus::Revoked, "every session of the user ends");
    let replayed = revoke_all("DPoP", vec![proof]).await;
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED, "a proof counts once");
}

#[tokio::test]
async fn a_replayed_proof_is_refused_at_login_and_at_the_token_endpoint() {
    let s = setup("dpop-replay").await;
    let key = ProofKey::generate().unwrap();
    let at_login = s.proof(&key, "/auth/login");
    let r0 = refresh_token(&json_of(&s.login_with(&[&at_login]).await));
    assert_invalid_proof(&s.login_with(&[&at_login]).await, "the DPoP proof was used before");

    let proof = s.proof(&key, "/auth/refresh");
    let first = s.refresh_with(&r0, &[&proof]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let r1 = refresh_token(&json_of(&first));
    let before = s.family(&r1).await;
    assert_invalid_proof(&s.refresh_with(&r1, &[&proof]).await, "the DPoP proof was used before");
    assert_eq!(s.family(&r1).await, before);
}

#[tokio::test]
async fn a_proof_for_another_request_or_out_of_its_window_is_refused() {
    let s = setup("dpop-request").await;
    let key = ProofKey::generate().unwrap();
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let before = s.family(&r0).await;
    let now = s.clock.now();
    let another_request = "the DPoP proof is for another request";
    let cases = [
        (key.proof("GET", &s.url("/auth/refresh"), now, None).unwrap(), another_request),
        (key.proof("POST", &s.url("/auth/login"), now, None).unwrap(), another_request),
        (key.proof("POST", "https://elsewhere.example.test/auth/refresh", now, None).unwrap(), another_request),
        (
            key.proof("POST", &s.url("/auth/refresh"), now - s.config.dpop.proof_max_age.as_secs() - 1, None).unwrap(),
            "the DPoP proof's iat is outside the accepted window",
        ),
        ("not.a.proof".to_owned(), "the DPoP proof is malformed"),
    ];
    for (proof, description) in &cases {
        assert_invalid_proof(&s.refresh_with(&r0, &[proof]).await, description);
    }
    // Two proofs at once: exactly one is accepted (RFC 9449 §4.3).
    let (a, b) = (s.proof(&key, "/auth/refresh"), s.proof(&key, "/auth/refresh"));
    assert_invalid_proof(&s.refresh_with(&r0, &[&a, &b]).await, "exactly one DPoP proof is accepted");
    assert_eq!(s.family(&r0).await, before);
    // A login with a proof for the token endpoint.
    assert_invalid_proof(&s.login_with(&[&s.proof(&key, "/auth/refresh")]).await, another_request);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_refreshes_of_a_bound_token_with_two_valid_proofs_at_once_rotate_once() {
    let s = Arc::new(setup("dpop-race").await);
    let key = Arc::new(ProofKey::generate().unwrap());
    let r0 = refresh_token(&s.login_bound(Some(&key)).await);
    let results = race(&s, &r0, [Some(key.clone()), Some(key.clone())]).await;

    let ok: Vec<&Value> = results.iter().filter(|(st, _)| *st == StatusCode::OK).map(|(_, b)| b).collect();
    let successors: std::collections::BTreeSet<String> = ok.iter().map(|b| refresh_token(b)).collect();
    println!("two bound refreshes at once: {:?}", results.iter().map(|(st, _)| *st).collect::<Vec<_>>());
    // One rotation; the other, within the leeway, gets the same successor as a retry.
    assert!(!ok.is_empty());
    assert_eq!(successors.len(), 1, "exactly one successor");
    assert!(ok.iter().all(|b| b["token_type"] == "DPoP"));
    let family = s.family(&r0).await;
    assert_eq!((family.generation, family.status), (1, FamilyStatus::Active), "exactly one rotation");
    assert_eq!(
        family.token_hash,
        tokenauth::rules::token::RefreshToken::parse(successors.first().unwrap()).unwrap().hash()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_keys_binding_one_unbound_session_at_once_bind_it_once() {
    let s = Arc::new(setup("dpop-race-bind").await);
    let (a, b) = (Arc::new(ProofKey::generate().unwrap()), Arc::new(ProofKey::generate().unwrap()));
    let r0 = refresh_token(&s.login_bound(None).await);
    let results = race(&s, &r0, [Some(a.clone()), Some(b.clone())]).await;

    let ok: Vec<&Value> = results.iter().filter(|(st, _)| *st == StatusCode::OK).map(|(_, b)| b).collect();
    println!(
        "two keys binding at once: {:?}",
        results.iter().map(|(st, b)| (*st, b["error"].clone())).collect::<Vec<_>>()
    );
    assert_eq!(ok.len(), 1, "one key wins");
    let refused: Vec<&Value> = results.iter().filter(|(st, _)| *st != StatusCode::OK).map(|(_, b)| b).collect();
    assert_eq!(refused[0]["error"], "invalid_dpop_proof", "the other is the wrong key for the session now");
    let family = s.family(&r0).await;
    let winner = s.bound_to(ok[0]).await.unwrap();
    assert!(winner == a.thumbprint() || winner == b.thumbprint());
    assert_eq!((family.generation, family.jkt.as_deref(), family.bound_since), (1, Some(winner.as_str()), Some(1)));
}

/// Refreshes `token` once per entry at once, each with a fresh proof by its key (or none).
async fn race(s: &Arc<Setup>, token: &str, keys: [Option<Arc<ProofKey>>; 2]) -> Vec<(StatusCode, Value)> {
    // Proofs made first, so the two requests start together.
    let requests: Vec<(String, Option<String>)> =
        keys.iter().map(|k| (token.to_owned(), k.as_ref().map(|k| s.proof(k, "/auth/refresh")))).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (token, proof) in requests {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
            let response = s.refresh_with(&token, &proofs).await;
            (response.status(), json_of(&response))
        });
    }
    let mut out = Vec::new();
    while let Some(result) = tasks.join_next().await {
        out.push(result.unwrap());
    }
    out
}

#[tokio::test]
async fn an_unbound_session_refreshes_as_before_with_bearer_tokens() {
    let s = setup("dpop-bearer").await;
    let body = s.login_bound(None).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(s.bound_to(&body).await, None);
    let body = s.rotate(&refresh_token(&body), None).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(s.bound_to(&body).await, None, "no cnf");
    let family = s.family(&refresh_token(&body)).await;
    assert_eq!((family.generation, family.jkt, family.bound_since), (1, None, None));
}

#[tokio::test]
async fn a_valid_proof_binds_an_unbound_session_at_its_rotation() {
    let s = setup("dpop-bind").await;
    let key = ProofKey::generate().unwrap();
    let r0 = refresh_token(&s.login_bound(None).await);
    let body = s.rotate(&r0, Some(&key)).await;
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(s.bound_to(&body).await, Some(key.thumbprint()));
    let r1 = refresh_token(&body);
    let family = s.family(&r1).await;
    assert_eq!((family.jkt.as_deref(), family.bound_since), (Some(key.thumbprint().as_str()), Some(1)));
    // From now on the session is bound: no proof, no rotation, nothing changed.
    let before = s.family(&r1).await;
    assert_invalid_proof(&s.refresh(&r1, None).await, "a DPoP proof is required");
    assert_eq!(s.family(&r1).await, before);
    let r2 = refresh_token(&s.rotate(&r1, Some(&key)).await);
    assert_eq!(s.family(&r2).await.jkt.as_deref(), Some(key.thumbprint().as_str()));
}

#[tokio::test]
async fn a_session_bound_at_refresh_still_treats_its_rotated_bearer_token_as_reuse() {
    // A thief who copied the bearer token r0 and binds the session to their own key first:
    // the victim's r0, after the leeway, is reuse as before DPoP, and ends the session.
    let s = setup("dpop-hijack").await;
    let thief = ProofKey::generate().unwrap();
    let r0 = refresh_token(&s.login_bound(None).await);
    let r1 = refresh_token(&s.rotate(&r0, Some(&thief)).await);
    s.clock.advance(s.config.refresh_leeway.as_secs() + 1);
    let response = s.refresh(&r0, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&response)["error"], "invalid_grant");
    assert_eq!(s.family(&r1).await.status, FamilyStatus::Revoked, "reuse of a bearer token ends the session");
    assert_eq!(s.refresh(&r1, Some(&thief)).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_retry_of_the_token_that_bound_the_session_needs_the_same_key() {
    let s = setup("dpop-retry").await;
    let (key, other) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let r0 = refresh_token(&s.login_bound(None).await);
    let r1 = refresh_token(&s.rotate(&r0, Some(&key)).await);
    let before = s.family(&r1).await;
    // The response was lost: r0 again, within the leeway. The answer is a bound token.
    assert_invalid_proof(&s.refresh(&r0, None).await, "a DPoP proof is required");
    assert_invalid_proof(
        &s.refresh(&r0, Some(&other)).await,
        "the DPoP proof is signed by another key than the session's",
    );
    assert_eq!(s.family(&r1).await, before, "no answer counted, nothing revoked");
    let retry = s.rotate(&r0, Some(&key)).await;
    assert_eq!(refresh_token(&retry), r1, "the same successor");
    assert_eq!(retry["token_type"], "DPoP");
}

#[tokio::test]
async fn with_dpop_off_any_proof_is_refused_and_bearer_sessions_work() {
    let s = setup_with("dpop-off", config_with(&[("PROOFS_TABLE", "")])).await;
    let key = ProofKey::generate().unwrap();
    assert_invalid_proof(&s.login_with(&[&s.proof(&key, "/auth/login")]).await, "DPoP is not enabled");
    let r0 = refresh_token(&s.login_bound(None).await);
    assert_invalid_proof(&s.refresh(&r0, Some(&key)).await, "DPoP is not enabled");
    s.rotate(&r0, None).await;
}

#[tokio::test]
async fn a_failing_proofs_table_answers_503_and_issues_nothing() {
    // A table that does not exist: the record's PutItem fails as DynamoDB failing would.
    let missing = format!("{}-missing", config().dpop.proofs_table);
    let s = setup_with("dpop-503", config_with(&[("PROOFS_TABLE", &missing)])).await;
    let key = ProofKey::generate().unwrap();
    let login = s.login_with(&[&s.proof(&key, "/auth/login")]).await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE, "{:?}", login.body());
    assert_eq!(json_of(&login)["error"], "temporarily_unavailable");
    let families = DynamoFamilies::new(s.clients.dynamodb.clone(), &s.config.families_table, &s.config.users_table);
    assert!(families.family_ids_of_user(&s.user_id).await.unwrap().is_empty(), "no session started");

    let r0 = refresh_token(&s.login_bound(None).await);
    let before = s.family(&r0).await;
    let refresh = s.refresh(&r0, Some(&key)).await;
    assert_eq!(refresh.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(json_of(&refresh).get("access_token").is_none());
    assert_eq!(s.family(&r0).await, before, "nothing written");
    // Without a proof, the table is not asked.
    s.login_bound(None).await;
}
