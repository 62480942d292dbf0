//! The unit tier (`make unit`): the services built as the functions build them, for the
//! answers that need no AWS call (bad input, wrong method, oversized bodies, malformed
//! tokens, the metadata). Nothing here reads the environment or needs the stack: the
//! configuration is fixed below, the SDK clients point at a loopback port nothing serves,
//! and every call they are asked to make is recorded ([`CallLog`]) and refused before it is
//! sent. A test shows that its answer needed no AWS call with [`Clients::assert_no_call`];
//! a path that does need one fails at once (503, and the recorded call) instead of waiting
//! on a connection. Answers that need DynamoDB or KMS stay in the stack tier, against the
//! real ones.

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, SystemClock};
use tokenauth::rules::keys::testing::LocalSigner;
use tokenauth::services::keys::{AuthenticatedKeys, KeyRing, KeySetSigner};
use tokenauth::services::revocation_feed::RevocationFeed;
use tokenauth::store::DynamoRevocations;
use tokenauth::{
    AccountService, Config, IntrospectionService, LoginService, RefreshService, RevocationService, Revoker,
};

use crate::{CallLog, Clients};

/// Where the unit tier's clients would connect: a loopback port nothing serves (they never
/// do: [`Unreachable`] refuses every call first).
pub const UNREACHABLE_ENDPOINT: &str = "http://127.0.0.1:1";

/// The unit tier's deployment: what a function reads, as fixed values (no environment).
const VARIABLES: &[(&str, &str)] = &[
    ("USERS_TABLE", "unit-users"),
    ("FAMILIES_TABLE", "unit-families"),
    ("REVOCATIONS_TABLE", "unit-revocations"),
    ("KEYS_TABLE", "unit-keys"),
    ("TOKEN_ISSUER", "https://auth.example.com"),
    ("TOKEN_AUDIENCE", "https://api.example.com"),
];

/// The unit tier's configuration, read through the functions' parser and checks.
pub fn config() -> Config {
    Config::from_lookup(|name| VARIABLES.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
        .expect("the unit tier's configuration loads")
}

/// An SDK interceptor that refuses every call before it is serialised, so nothing is sent
/// and nothing is retried.
#[derive(Debug, Clone, Copy)]
struct Unreachable;

impl Intercept for Unreachable {
    fn name(&self) -> &'static str {
        "Unreachable"
    }

    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        Err("the unit tier makes no AWS call: an answer that needs one belongs in the stack tier (`make test`)".into())
    }
}

/// SDK clients that reach nothing: static credentials, no retries, [`UNREACHABLE_ENDPOINT`],
/// every call recorded in `calls` and then refused.
pub fn clients() -> Clients {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let calls = CallLog::default();
    let credentials = Credentials::new("unit", "unit", None, None, "unit-tier");
    let region = Region::new("us-east-1");
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(credentials.clone())
            .endpoint_url(UNREACHABLE_ENDPOINT)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(calls.clone())
            .interceptor(Unreachable)
            .build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .endpoint_url(UNREACHABLE_ENDPOINT)
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .interceptor(calls.clone())
            .interceptor(Unreachable)
            .build(),
    );
    Clients { dynamodb, kms, calls }
}

impl Clients {
    /// Fails the test if any AWS call was asked of these clients (since the last clear).
    #[track_caller]
    pub fn assert_no_call(&self, what: &str) {
        assert!(self.calls.calls().is_empty(), "{what} reached AWS: {:?}", self.calls.names());
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The signer login and refresh build, before it has read the key set (it reads it on the
/// first token it signs, which no unit-tier answer does).
fn signer(config: &Config, clients: &Clients) -> Arc<KeySetSigner> {
    let keys = AuthenticatedKeys::from_config(config, clients.dynamodb.clone(), clients.kms.clone());
    Arc::new(KeySetSigner::new(keys, clients.kms.clone(), config.key_reload, config.key_set_max_staleness(), clock()))
}

/// The login service as the function builds it.
pub fn login_service(config: &Config, clients: &Clients) -> LoginService {
    LoginService::new(config, clients.dynamodb.clone(), signer(config, clients), clock())
}

/// The refresh service as the function builds it (without the warm-up read of the sealing
/// secret, which is a KMS call).
pub fn refresh_service(config: &Config, clients: &Clients) -> RefreshService {
    RefreshService::new(config, clients.dynamodb.clone(), clients.kms.clone(), signer(config, clients), clock())
}

/// The token endpoint as the `refresh` function builds it (`POST /auth/token` and
/// `POST /auth/refresh`), on these clients.
pub fn token_service(config: &Config, clients: &Clients) -> tokenauth::TokenService {
    use tokenauth::services::client_auth::ClientAuthenticator;
    use tokenauth::services::grants::GrantService;
    let signer = signer(config, clients);
    let refresh = RefreshService::new(config, clients.dynamodb.clone(), clients.kms.clone(), signer.clone(), clock());
    let authenticator = ClientAuthenticator::from_config(config, clients.dynamodb.clone());
    let grants = GrantService::new(
        config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
        signer,
        clock(),
        authenticator.clone(),
    );
    tokenauth::TokenService::new(authenticator, refresh, grants, clock())
}

/// A key ring read just now, trusting `key` only: no re-read falls due for `every`.
fn warm_key_ring(
    config: &Config,
    clients: &Clients,
    key: &LocalSigner,
    every: Duration,
    max_staleness: Duration,
) -> KeyRing {
    let verifier = tokenauth::services::verifier_for(config);
    verifier.replace_keys(vec![key.trusted()]);
    let keys = AuthenticatedKeys::from_config(config, clients.dynamodb.clone(), clients.kms.clone());
    KeyRing::preloaded(keys, Arc::new(verifier), every, max_staleness, SystemClock.now())
}

/// The revocation service of a warm instance: its key ring read just now, trusting `key`
/// only, with no re-read due. Answers decided by the request, the bearer header or the
/// token itself (garbage, expired, foreign, another audience) need no call.
pub fn revocation_service(config: &Config, clients: &Clients, key: &LocalSigner) -> RevocationService {
    let keys = warm_key_ring(config, clients, key, config.key_reload, config.key_set_max_staleness());
    let registry = tokenauth::services::client_auth::ClientAuthenticator::from_config(config, clients.dynamodb.clone());
    let proofs = tokenauth::services::token_dpop::TokenProofs::new(config, clients.dynamodb.clone());
    RevocationService::new(Revoker::new(config, clients.dynamodb.clone(), clock()), keys, registry, proofs, clock())
}

/// The account service of a warm instance: its key ring read just now, trusting `key`
/// only. Answers decided by the route, the body or the bearer token itself (missing,
/// garbage, expired, foreign) need no call.
pub fn account_service(config: &Config, clients: &Clients, key: &LocalSigner) -> AccountService {
    let keys = warm_key_ring(config, clients, key, config.key_reload, config.key_set_max_staleness());
    AccountService::new(config, clients.dynamodb.clone(), keys, clock())
}

/// The introspection service of a warm instance: its key ring (the verifier accepting any
/// audience) read just now, trusting `key` only. Requests refused before the client is
/// read, and clients the unit tier's deployment does not have (it has no registry), need
/// no call.
pub fn introspection_service(config: &Config, clients: &Clients, key: &LocalSigner) -> IntrospectionService {
    let verifier = tokenauth::services::verifier_accepting(config, tokenauth::rules::verify::Audiences::Any);
    verifier.replace_keys(vec![key.trusted()]);
    let keys = AuthenticatedKeys::from_config(config, clients.dynamodb.clone(), clients.kms.clone());
    let keys = KeyRing::preloaded(
        keys,
        Arc::new(verifier),
        config.key_reload,
        config.key_set_max_staleness(),
        SystemClock.now(),
    );
    IntrospectionService::new(config, clients.dynamodb.clone(), keys, clock())
}

/// Claims as login issues them under the unit tier's configuration (issued now, valid for
/// the configured lifetime), to sign with a [`LocalSigner`] and alter.
pub fn claims(config: &Config) -> serde_json::Value {
    let now = SystemClock.now();
    serde_json::json!({"iss": config.issuer, "sub": "unit-user", "aud": config.audience, "iat": now,
        "exp": now + config.access_token_ttl.as_secs(), "jti": "unit-jti", "client_id": config.client_id,
        "scope": "read", "sid": "unit-sid"})
}

/// The authorizer of a warm instance: its key ring counts as read just now, trusting `key`
/// only, with no re-read due for a minute (so a token naming an unknown key makes none);
/// its revocation feed never polled. A token refused before the revocation check gets its
/// answer with no call.
pub fn authorizer(config: &Config, clients: &Clients, key: &LocalSigner) -> Authorizer {
    let every = config.authorizer.poll_every.max(Duration::from_secs(60));
    let keys = warm_key_ring(config, clients, key, every, config.authorizer.max_staleness);
    let feed = RevocationFeed::new(
        Box::new(DynamoRevocations::new(clients.dynamodb.clone(), &config.revocations_table)),
        &config.authorizer,
        config.revocation_lookback().as_secs(),
    );
    Authorizer::new(keys, feed, config.authorizer.clone(), clock())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn a_call_is_recorded_and_refused_at_once_without_reaching_the_network() {
        let clients = clients();
        let started = Instant::now();
        let outcome = clients.dynamodb.get_item().table_name("unit-keys").send().await;
        let kms = clients.kms.get_public_key().key_id("alias/none").send().await;
        assert!(outcome.is_err() && kms.is_err(), "nothing answers in the unit tier");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused, not retried or timed out: {:?}",
            started.elapsed()
        );
        assert_eq!(clients.calls.names(), ["DynamoDB.GetItem", "KMS.GetPublicKey"]);
    }

    #[tokio::test]
    async fn an_answer_that_needs_aws_fails_loudly_with_the_call_on_record() {
        let clients = clients();
        let service = login_service(&config(), &clients);
        let request = crate::login_request("someone", "a password", None);
        let response = tokenauth::edge::http::login(&service, &request).await;
        assert_eq!(response.status(), 503);
        let check = std::panic::AssertUnwindSafe(|| clients.assert_no_call("a login"));
        let failed = std::panic::catch_unwind(check);
        assert!(failed.is_err(), "the call log saw the login's reads: {:?}", clients.calls.names());
    }
}
