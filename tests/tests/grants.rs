//! Client credentials (RFC 6749 §4.4) and token exchange (RFC 8693) against the local stack:
//! clients registered in the Clients table, users logged in through the login service,
//! revocation read from the tables, every token checked by the one verifier. The token
//! endpoint (client authentication, parsing) is tested on its own; here the grants are
//! called as it calls them, for a client it authenticated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;
use tokenauth::platform::clock::{Clock, ManualClock, SystemClock};
use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, GrantType, StoredSecret};
use tokenauth::rules::dpop::{called_url, ProofKey};
use tokenauth::rules::grants::SUBJECT_TOKEN_REFUSED;
use tokenauth::rules::token::{AccessClaims, Actor, RefreshToken, ACCESS_TOKEN_TYPE_URI};
use tokenauth::rules::verify::{Audiences, Verifier};
use tokenauth::services::client_auth::ClientAuthenticator;
use tokenauth::services::grants::GrantService;
use tokenauth::services::keys::authenticated::AuthenticatedKeys;
use tokenauth::services::keys::KeyRing;
use tokenauth::services::liveness::TokenLiveness;
use tokenauth::services::token_endpoint::{ClientCredentialsRequest, ExchangeRequest};
use tokenauth::store::DynamoClients;
use tokenauth::{ApiError, Config, LoginService, RequestMeta, Revoker, TokenResponse};
use tokenauth_tests::*;

const API_C: &str = "https://api.c.test";
const API_D: &str = "https://api.d.test";
const API_E: &str = "https://api.e.test";

/// A client's registered token lifetime in these tests (shorter than the deployment's).
const CLIENT_TTL_SECS: u64 = 300;

struct Setup {
    config: Config,
    clients: Clients,
    clock: Arc<ManualClock>,
    login: LoginService,
    grants: GrantService,
    registry: DynamoClients,
    /// May use client credentials: "read write", [API_C, API_D], a 300 s lifetime.
    service: ClientRecord,
    /// May exchange: "read write", [API_C, API_D].
    exchanger: ClientRecord,
    /// May exchange: "read", [API_E].
    second: ClientRecord,
    username: String,
    password: String,
    user_id: String,
}

/// Registers a confidential client with one secret.
async fn register(
    registry: &DynamoClients,
    prefix: &str,
    grant: GrantType,
    scopes: &str,
    audiences: &[&str],
    ttl: Option<u64>,
) -> ClientRecord {
    let client_id = unique_username(prefix);
    let secret = ClientSecret::new();
    let client = ClientRecord {
        client_type: ClientType::Confidential,
        grants: vec![grant],
        token_ttl_secs: ttl,
        secrets: vec![StoredSecret { hash: secret.hash(&client_id), created_at: SystemClock.now(), expires_at: None }],
        ..ClientRecord::public(
            &client_id,
            scopes.split(' ').map(str::to_owned).collect(),
            audiences.iter().map(|a| (*a).to_owned()).collect(),
            SystemClock.now(),
        )
    };
    registry.create(&client).await.expect("client registered");
    client
}

async fn setup(prefix: &str) -> Setup {
    let config = config();
    let clients = clients().await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let login = login_service(&config, &clients, clock.clone()).await;
    let signer = key_set_signer(&config, &clients, clock.clone()).await;
    let grants = GrantService::new(
        &config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        Arc::new(signer),
        clock.clone(),
        ClientAuthenticator::from_config(&config, clients.dynamodb.clone()),
    );
    grants.warm_up().await;
    let registry = DynamoClients::new(clients.dynamodb.clone(), &config.clients_table);
    let service =
        register(&registry, "svc", GrantType::ClientCredentials, "read write", &[API_C, API_D], Some(CLIENT_TTL_SECS))
            .await;
    let exchanger = register(&registry, "exa", GrantType::TokenExchange, "read write", &[API_C, API_D], None).await;
    let second = register(&registry, "exb", GrantType::TokenExchange, "read", &[API_E], None).await;
    let (username, password, user_id) = create_user(&config, &clients, prefix, &["read", "write"]).await;
    Setup { config, clients, clock, login, grants, registry, service, exchanger, second, username, password, user_id }
}

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("192.0.2.7".into()), user_agent: None }
}

fn exchange_request(subject_token: &str, audience: Option<&str>, scope: Option<&str>) -> ExchangeRequest {
    ExchangeRequest {
        subject_token: subject_token.to_owned(),
        subject_token_type: ACCESS_TOKEN_TYPE_URI.to_owned(),
        audience: audience.map(str::to_owned),
        scope: scope.map(str::to_owned),
        requested_token_type: None,
        dpop: None,
    }
}

impl Setup {
    /// A user's session: (access token, refresh token).
    async fn user_session(&self) -> (String, String) {
        let body = login_tokens(&self.login, &self.username, &self.password).await;
        (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
    }

    async fn service_token(&self, scope: Option<&str>, audience: Option<&str>) -> Result<TokenResponse, ApiError> {
        let request = ClientCredentialsRequest {
            scope: scope.map(str::to_owned),
            audience: audience.map(str::to_owned),
            dpop: None,
        };
        self.grants.client_credentials(&self.service, request, &meta()).await
    }

    async fn exchange(&self, client: &ClientRecord, request: ExchangeRequest) -> Result<TokenResponse, ApiError> {
        self.grants.token_exchange(client, request, &meta()).await
    }

    /// The one verifier of the deployment, accepting `audiences` only, with the key set's keys.
    async fn verifier(&self, audiences: Audiences) -> Arc<Verifier> {
        let verifier = Arc::new(tokenauth::services::verifier_accepting(&self.config, audiences));
        let ring = KeyRing::new(
            AuthenticatedKeys::from_config(&self.config, self.clients.dynamodb.clone(), self.clients.kms.clone()),
            verifier,
            self.config.key_reload,
            self.config.key_set_max_staleness(),
        );
        ring.sync(self.clock.now()).await;
        ring.verifier().clone()
    }

    /// The claims of `token` as a verifier for `audience` sees them.
    async fn claims_for(&self, audience: &str, token: &str) -> AccessClaims {
        self.verifier(Audiences::OneOf(vec![audience.to_owned()]))
            .await
            .verify(token, self.clock.now())
            .unwrap_or_else(|r| panic!("verifies for {audience}: {r:?}"))
    }

    fn liveness(&self) -> TokenLiveness {
        TokenLiveness::new(
            &self.config,
            self.clients.dynamodb.clone(),
            ClientAuthenticator::from_config(&self.config, self.clients.dynamodb.clone()),
        )
    }
}

fn is_refused_subject(result: &Result<TokenResponse, ApiError>) -> bool {
    matches!(result, Err(ApiError::InvalidRequest(SUBJECT_TOKEN_REFUSED)))
}

#[tokio::test]
async fn client_credentials_issue_a_service_token_with_the_clients_scope_and_audience_and_no_session() {
    let s = setup("grants-cc").await;
    let response = s.service_token(None, None).await.expect("issued");
    assert_eq!(response.token_type, "Bearer");
    assert!(response.refresh_token.is_none(), "no refresh token for a service");
    assert!(response.issued_token_type.is_none(), "not an exchange");
    assert_eq!(response.scope, "read write", "the client's scopes");
    assert_eq!(response.expires_in, CLIENT_TTL_SECS, "the client's lifetime, not the deployment's");
    let body = serde_json::to_value(&response).unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");

    let claims = s.claims_for(API_C, &response.access_token).await;
    assert_eq!(claims.sub, s.service.client_id);
    assert_eq!(claims.client_id, s.service.client_id);
    assert_eq!(claims.sid, None, "a service token has no session");
    assert_eq!(claims.act, None);
    assert_eq!(claims.aud, API_C, "the client's first audience");
    assert_eq!(claims.exp, s.clock.now() + CLIENT_TTL_SECS);
    assert!(claims.is_service());
    let other = s.verifier(Audiences::OneOf(vec![API_E.to_owned()])).await;
    assert!(other.verify(&response.access_token, s.clock.now()).is_err(), "refused by another API's verifier");
    assert!(s.liveness().is_live(&claims).await.unwrap(), "live while its client is");

    let narrowed = s.service_token(Some("read"), Some(API_D)).await.expect("narrowed");
    assert_eq!(narrowed.scope, "read");
    let claims = s.claims_for(API_D, &narrowed.access_token).await;
    assert_eq!((claims.scope.as_str(), claims.aud.as_str()), ("read", API_D));

    assert!(matches!(s.service_token(Some("read admin"), None).await, Err(ApiError::InvalidScope)), "wider");
    assert!(matches!(s.service_token(Some("read  write"), None).await, Err(ApiError::InvalidScope)), "malformed");
    assert!(matches!(s.service_token(None, Some(API_E)).await, Err(ApiError::InvalidTarget)), "not its audience");
    assert!(
        matches!(s.service_token(None, Some(&s.config.audience)).await, Err(ApiError::InvalidTarget)),
        "the deployment's audience is not one it registered"
    );
}

#[tokio::test]
async fn client_credentials_are_refused_to_a_client_without_the_grant_or_disabled() {
    let s = setup("grants-cc-refused").await;
    let request = ClientCredentialsRequest::default();
    let exchanger = s.grants.client_credentials(&s.exchanger, request.clone(), &meta()).await;
    assert!(matches!(exchanger, Err(ApiError::UnauthorizedClient)), "{exchanger:?}");
    let disabled = s.registry.disable(&s.service.client_id, SystemClock.now()).await.unwrap().expect("disabled");
    let refused = s.grants.client_credentials(&disabled, request, &meta()).await;
    assert!(matches!(refused, Err(ApiError::UnauthorizedClient)), "{refused:?}");
}

#[tokio::test]
async fn an_exchanged_token_acts_for_the_user_in_the_same_session_for_the_target_and_no_longer() {
    let s = setup("grants-tx").await;
    let (user_token, _) = s.user_session().await;
    let subject = s.claims_for(&s.config.audience, &user_token).await;

    // Later in the subject token's life: the new one ends with it, not a full lifetime on.
    let rest = 120;
    s.clock.advance(subject.exp - s.clock.now() - rest);
    let response = s.exchange(&s.exchanger, exchange_request(&user_token, Some(API_D), None)).await.expect("exchanged");
    assert_eq!(response.issued_token_type, Some(ACCESS_TOKEN_TYPE_URI));
    assert_eq!(response.token_type, "Bearer");
    assert!(response.refresh_token.is_none());
    assert_eq!(response.scope, "read write", "the subject's scope the client may have");
    assert_eq!(response.expires_in, rest);
    let body = serde_json::to_value(&response).unwrap();
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE_URI);

    let exchanged = s.claims_for(API_D, &response.access_token).await;
    assert_eq!(exchanged.sub, s.user_id);
    assert_eq!(exchanged.aud, API_D);
    assert_eq!(exchanged.client_id, s.exchanger.client_id);
    assert_eq!(exchanged.act, Some(Actor { sub: s.exchanger.client_id.clone(), act: None }));
    assert_eq!(exchanged.sid, subject.sid, "the same session");
    assert_eq!(exchanged.exp, subject.exp, "no longer than the subject token");
    assert!(exchanged.jti != subject.jti);
    let own = s.verifier(Audiences::OneOf(vec![s.config.audience.clone()])).await;
    assert!(own.verify(&response.access_token, s.clock.now()).is_err(), "refused by the subject's API");

    // No audience asked: the client's first; a narrower scope on request.
    let narrowed = s.exchange(&s.exchanger, exchange_request(&user_token, None, Some("write"))).await.unwrap();
    let claims = s.claims_for(API_C, &narrowed.access_token).await;
    assert_eq!((claims.aud.as_str(), claims.scope.as_str()), (API_C, "write"));
}

#[tokio::test]
async fn an_exchange_lives_at_most_the_clients_lifetime() {
    let s = setup("grants-tx-ttl").await;
    let short = register(&s.registry, "exs", GrantType::TokenExchange, "read", &[API_C], Some(60)).await;
    let (user_token, _) = s.user_session().await;
    let response = s.exchange(&short, exchange_request(&user_token, None, None)).await.unwrap();
    assert_eq!(response.expires_in, 60);
    assert_eq!(s.claims_for(API_C, &response.access_token).await.exp, s.clock.now() + 60);
}

#[tokio::test]
async fn an_exchanged_token_exchanged_again_nests_the_actors_and_its_clients_are_checked() {
    let s = setup("grants-tx-nested").await;
    let (user_token, _) = s.user_session().await;
    let first = s.exchange(&s.exchanger, exchange_request(&user_token, Some(API_C), None)).await.unwrap();
    let second = s.exchange(&s.second, exchange_request(&first.access_token, None, None)).await.expect("nested");
    assert_eq!(second.scope, "read", "the second client's share of the first token's scope");
    let claims = s.claims_for(API_E, &second.access_token).await;
    assert_eq!(claims.sub, s.user_id);
    assert_eq!(claims.client_id, s.second.client_id);
    let nested = json!({"sub": s.second.client_id, "act": {"sub": s.exchanger.client_id}});
    assert_eq!(serde_json::to_value(&claims.act).unwrap(), nested);
    assert!(s.liveness().is_live(&claims).await.unwrap());

    // Disabling a client of the chain ends the tokens it acted in, read strongly at once.
    s.registry.disable(&s.exchanger.client_id, SystemClock.now()).await.unwrap();
    assert!(!s.liveness().is_live(&claims).await.unwrap(), "the first actor is disabled");
    let again = s.exchange(&s.second, exchange_request(&first.access_token, None, None)).await;
    assert!(is_refused_subject(&again), "{again:?}");
}

#[tokio::test]
async fn revoking_the_users_session_ends_the_exchanged_token_and_refuses_the_subject_at_once() {
    let s = setup("grants-tx-revoked").await;
    let revoker = Revoker::new(&s.config, s.clients.dynamodb.clone(), s.clock.clone());

    // The subject token denylisted by jti (RFC 7009): refused now, no waiting.
    let (user_token, _) = s.user_session().await;
    let subject = s.claims_for(&s.config.audience, &user_token).await;
    assert!(s.exchange(&s.exchanger, exchange_request(&user_token, None, None)).await.is_ok());
    revoker.revoke_access_token(&subject.jti, subject.exp).await.unwrap();
    let refused = s.exchange(&s.exchanger, exchange_request(&user_token, None, None)).await;
    assert!(is_refused_subject(&refused), "{refused:?}");

    // The session ended: the token exchanged before is dead too (same sid), and the
    // subject cannot be exchanged any more.
    let (user_token, refresh_token) = s.user_session().await;
    let exchanged = s.exchange(&s.exchanger, exchange_request(&user_token, None, None)).await.unwrap();
    let exchanged = s.claims_for(API_C, &exchanged.access_token).await;
    assert!(s.liveness().is_live(&exchanged).await.unwrap());
    let revoked =
        revoker.revoke_presented(&RefreshToken::parse(&refresh_token).unwrap(), "test", s.clock.now()).await.unwrap();
    assert!(revoked);
    assert!(!s.liveness().is_live(&exchanged).await.unwrap(), "the exchanged token shares the ended session");
    let refused = s.exchange(&s.exchanger, exchange_request(&user_token, None, None)).await;
    assert!(is_refused_subject(&refused), "{refused:?}");
}

#[tokio::test]
async fn an_exchange_is_refused_for_a_target_or_scope_beyond_the_client_and_the_subject() {
    let s = setup("grants-tx-limits").await;
    let (user_token, _) = s.user_session().await;
    let target = s.exchange(&s.exchanger, exchange_request(&user_token, Some(API_E), None)).await;
    assert!(matches!(target, Err(ApiError::InvalidTarget)), "{target:?}");
    let scope = s.exchange(&s.exchanger, exchange_request(&user_token, None, Some("admin"))).await;
    assert!(matches!(scope, Err(ApiError::InvalidScope)), "{scope:?}");

    // A user with only "profile": nothing in common with a client of "read".
    let (username, password, _) = create_user(&s.config, &s.clients, "grants-profile", &["profile"]).await;
    let profile_token = login_tokens(&s.login, &username, &password).await["access_token"].as_str().unwrap().to_owned();
    let none = s.exchange(&s.second, exchange_request(&profile_token, None, None)).await;
    assert!(matches!(none, Err(ApiError::InvalidScope)), "{none:?}");
    let not_the_subjects = s.exchange(&s.second, exchange_request(&user_token, None, Some("write"))).await;
    assert!(matches!(not_the_subjects, Err(ApiError::InvalidScope)), "the client's scope bounds it too");

    let mut wrong_type = exchange_request(&user_token, None, None);
    wrong_type.subject_token_type = "urn:ietf:params:oauth:token-type:refresh_token".into();
    assert!(matches!(s.exchange(&s.exchanger, wrong_type).await, Err(ApiError::InvalidRequest(_))));
    let unauthorized = s.grants.token_exchange(&s.service, exchange_request(&user_token, None, None), &meta()).await;
    assert!(matches!(unauthorized, Err(ApiError::UnauthorizedClient)), "{unauthorized:?}");
}

#[tokio::test]
async fn a_forged_an_expired_a_foreign_and_a_service_subject_token_are_refused_alike() {
    let s = setup("grants-tx-bad").await;
    let (user_token, _) = s.user_session().await;
    let (head, signature) = user_token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{head}.{flipped}{}", &signature[1..]);
    let refused = s.exchange(&s.exchanger, exchange_request(&forged, None, None)).await;
    assert!(is_refused_subject(&refused), "a bad signature: {refused:?}");

    let garbage = s.exchange(&s.exchanger, exchange_request("not-a-token", None, None)).await;
    assert!(is_refused_subject(&garbage), "{garbage:?}");

    let service = s.service_token(None, None).await.unwrap();
    let refused = s.exchange(&s.exchanger, exchange_request(&service.access_token, None, None)).await;
    assert!(is_refused_subject(&refused), "a service's own token has no user: {refused:?}");

    let subject = s.claims_for(&s.config.audience, &user_token).await;
    s.clock.advance(subject.exp - s.clock.now() + s.config.token_leeway.as_secs() + 1);
    let expired = s.exchange(&s.exchanger, exchange_request(&user_token, None, None)).await;
    assert!(is_refused_subject(&expired), "expired: {expired:?}");
}

#[tokio::test]
async fn a_dpop_bound_subject_token_is_exchanged_for_an_unbound_one() {
    let s = setup("grants-tx-dpop").await;
    let key = ProofKey::generate().unwrap();
    let url =
        called_url(s.config.dpop.public_base_url.as_deref(), None, Some("api.example.test"), "/auth/login").unwrap();
    let mut event = event("login-http-api.json");
    event["body"] = json!({"username": s.username, "password": s.password}).to_string().into();
    event["headers"]["dpop"] = key.proof("POST", &url, s.clock.now(), None).unwrap().into();
    let bound = json_of(&tokenauth::edge::http::login(&s.login, &request_from_event(&event)).await);
    assert_eq!(bound["token_type"], "DPoP");
    let subject_token = bound["access_token"].as_str().unwrap();
    assert!(s.claims_for(&s.config.audience, subject_token).await.bound_to().is_some());

    let response = s.exchange(&s.exchanger, exchange_request(subject_token, None, None)).await.expect("exchanged");
    assert_eq!(response.token_type, "Bearer");
    let claims = s.claims_for(API_C, &response.access_token).await;
    assert_eq!(claims.bound_to(), None, "the service's token is not bound to the user's key");
    assert_eq!(claims.act.map(|a| a.sub), Some(s.exchanger.client_id.clone()));
}

#[tokio::test]
async fn an_exchange_with_the_callers_dpop_proof_is_bound_to_the_callers_key_once() {
    let s = setup("grants-tx-dpop-caller").await;
    let (subject_token, _) = s.user_session().await;
    let key = ProofKey::generate().unwrap();
    let url = called_url(s.config.dpop.public_base_url.as_deref(), None, Some("api.example.test"), "/auth/token");
    let proof = key.proof("POST", &url.unwrap(), s.clock.now(), None).unwrap();
    let presented = || tokenauth::services::token_dpop::PresentedProof {
        proof: proof.clone(),
        forwarded_proto: None,
        host: Some("api.example.test".into()),
        path: "/auth/token".into(),
        api_path: "/auth/token".into(),
    };
    let request = ExchangeRequest { dpop: Some(presented()), ..exchange_request(&subject_token, None, None) };
    let response = s.exchange(&s.exchanger, request).await.expect("exchanged");
    assert_eq!(response.token_type, "DPoP");
    let claims = s.claims_for(API_C, &response.access_token).await;
    assert_eq!(claims.bound_to(), Some(key.thumbprint().as_str()), "bound to the caller's key");
    assert_eq!(claims.act.map(|a| a.sub), Some(s.exchanger.client_id.clone()));

    let replayed = ExchangeRequest { dpop: Some(presented()), ..exchange_request(&subject_token, None, None) };
    let refused = s.exchange(&s.exchanger, replayed).await;
    assert!(matches!(refused, Err(ApiError::InvalidDpopProof(_))), "a replayed proof: {refused:?}");
}

#[tokio::test]
async fn an_exchange_answers_503_while_dynamodb_refuses_or_the_key_set_was_never_read() {
    let s = setup("grants-tx-503").await;
    let (user_token, _) = s.user_session().await;
    let proxy = DynamoDbThrottleProxy::start();
    let behind_proxy = || async {
        let dynamodb = dynamodb_at(&proxy.endpoint).await;
        let signer = key_set_signer(&s.config, &s.clients, s.clock.clone()).await;
        GrantService::new(
            &s.config,
            dynamodb.clone(),
            s.clients.kms.clone(),
            Arc::new(signer),
            s.clock.clone(),
            ClientAuthenticator::from_config(&s.config, dynamodb),
        )
    };
    let warm = behind_proxy().await;
    warm.warm_up().await;
    let cold = behind_proxy().await;

    // Every read refused: the warm service has its keys but cannot read the subject's
    // liveness; the cold one never read its keys and trusts none.
    proxy.throttle(&["GetItem"], "ProvisionedThroughputExceededException");
    for service in [&warm, &cold] {
        let refused = service.token_exchange(&s.exchanger, exchange_request(&user_token, None, None), &meta()).await;
        assert!(matches!(refused, Err(ApiError::Unavailable(_))), "{refused:?}");
    }
    proxy.off();
    // The cold one tries its keys again when its next read falls due, not at once.
    s.clock.advance(s.config.key_reload.as_secs().max(1));
    for service in [&warm, &cold] {
        let answered = service.token_exchange(&s.exchanger, exchange_request(&user_token, None, None), &meta()).await;
        assert!(answered.is_ok(), "answered once DynamoDB answers: {answered:?}");
    }
}
