//! AWS SDK set-up shared by every function: the standard configuration chain (so
//! `AWS_ENDPOINT_URL_*` point the clients at the local stack) plus timeouts, so a hung
//! dependency becomes a prompt 503 instead of a Lambda timeout, and an HTTPS client that
//! trusts the Amazon Trust Services roots only.
//!
//! Why not the SDK's default HTTPS client: it reads and parses every certificate of the
//! machine's trust store (here a 144-certificate bundle plus a 292-file directory) while the
//! configuration loads, about 4.5 ms of a cold start before the first call. AWS endpoints
//! chain to Amazon Trust Services, whose repository (amazontrust.com/repository) recommends
//! its five roots for custom trust stores; trusting those alone also narrows who could
//! impersonate DynamoDB or KMS to us.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::ConfigError;

/// Connect timeout per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Timeout of one attempt of one call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Timeout of one call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(4_000);

/// The five Amazon Trust Services roots (Amazon Root CA 1-4, Starfield Services Root CA G2),
/// as published at amazontrust.com/repository; compiled in, so nothing is read at start.
pub const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("../../certs/amazon-trust-services.pem");

/// The roots the SDK's HTTPS client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The Amazon Trust Services roots (the default).
    AmazonTrustServices,
    /// The certificates of a PEM bundle, checked to parse (the SDK would panic on bad PEM).
    Bundle(String),
}

impl TrustRoots {
    /// The variable naming a PEM file of CA certificates to trust instead (as the AWS CLI
    /// and other SDKs read it): for a TLS-inspecting proxy or an emulator behind TLS.
    pub const VARIABLE: &'static str = "AWS_CA_BUNDLE";

    /// The certificates of the PEM file at `path` (which must hold at least one
    /// well-formed certificate), or the Amazon Trust Services roots if there is none.
    pub fn from_path(path: Option<&str>) -> Result<Self, ConfigError> {
        let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(Self::AmazonTrustServices);
        };
        let invalid = ConfigError::Invalid {
            name: Self::VARIABLE,
            reason: "the path of a readable PEM file of well-formed CA certificates",
        };
        let pem = std::fs::read_to_string(path).map_err(|_| invalid.clone())?;
        if certificates(&pem).is_none_or(|certs| certs.is_empty()) {
            return Err(invalid);
        }
        Ok(Self::Bundle(pem))
    }

    /// The PEM text of these roots.
    pub fn pem(&self) -> &str {
        match self {
            Self::AmazonTrustServices => AMAZON_TRUST_SERVICES_ROOTS,
            Self::Bundle(pem) => pem,
        }
    }
}

/// The DER certificates of a PEM text, `None` if a certificate section is malformed or is
/// not a certificate a trust store can take.
pub fn certificates(pem: &str) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().ok()?;
    certs.iter().all(|der| webpki::anchor_from_trusted_cert(der).is_ok()).then_some(certs)
}

/// An HTTPS client (rustls with aws-lc, as the SDK's default) trusting `roots` only.
pub fn https_client(roots: &TrustRoots) -> Result<SharedHttpClient, ConfigError> {
    let trust_store = TrustStore::empty().with_native_roots(false).with_pem_certificate(roots.pem().as_bytes());
    let context = TlsContext::builder().with_trust_store(trust_store).build().map_err(|_| ConfigError::Invalid {
        name: TrustRoots::VARIABLE,
        reason: "certificates the TLS client accepts",
    })?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

/// Where the SDK takes its credentials from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: where Lambda puts
    /// the execution role's credentials. Building the default chain instead would build an
    /// STS client (for web identity) and an IMDS client the function never uses, about a
    /// fifth of the SDK's work at cold start.
    Environment,
    /// The SDK's default chain (environment, profiles, SSO, web identity, IMDS...): for
    /// `authctl`, run by an operator.
    DefaultChain,
}

/// Loads the SDK configuration from the environment with our timeouts, standard retries,
/// the trust roots given (see [`crate::platform::config::Config::trust_roots`]) and the credentials given.
pub async fn sdk_config(roots: &TrustRoots, credentials: Credentials) -> Result<aws_config::SdkConfig, ConfigError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if credentials == Credentials::Environment {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    let config = loader
        .http_client(https_client(roots)?)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    Ok(config)
}

/// Attempts of one KMS call of login and refresh: one retry, where the SDK's standard mode
/// makes two. A throttled `kms:Sign` is tried once more after the SDK's jittered backoff
/// (at most 1 s: usually the next second of the quota), then answered 503 with a spread
/// `Retry-After` (`edge::http`): the client waits instead of the function, and a throttled
/// account sees at most twice its clients' rate, not three times (`docs/reliability.md`).
pub const SIGNING_MAX_ATTEMPTS: u32 = 2;

/// The KMS client of the functions that sign (login, refresh): [`sdk_config`]'s, with
/// [`SIGNING_MAX_ATTEMPTS`].
pub fn signing_kms_client(sdk: &aws_config::SdkConfig) -> aws_sdk_kms::Client {
    let retries = RetryConfig::standard().with_max_attempts(SIGNING_MAX_ATTEMPTS);
    aws_sdk_kms::Client::from_conf(aws_sdk_kms::config::Builder::from(sdk).retry_config(retries).build())
}

/// The SDK configuration a function loads at cold start: the deployment's trust roots and
/// the credentials Lambda puts in the environment.
pub async fn function_sdk_config(
    config: &crate::platform::config::Config,
) -> Result<aws_config::SdkConfig, ConfigError> {
    sdk_config(&config.trust_roots, Credentials::Environment).await
}

/// SDK clients whose endpoint nothing listens on, for tests and benchmarks of code that
/// holds a client but must make no call: a call would fail at once.
#[cfg(any(test, feature = "testing"))]
pub mod unreachable {
    const ENDPOINT: &str = "http://127.0.0.1:9";

    /// A DynamoDB client that reaches nothing.
    pub fn dynamodb() -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
                .endpoint_url(ENDPOINT)
                .build(),
        )
    }

    /// A KMS client that reaches nothing.
    pub fn kms() -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new("us-east-1"))
                .endpoint_url(ENDPOINT)
                .build(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// SHA-256 of each root's SubjectPublicKeyInfo, as amazontrust.com/repository lists them.
    const PUBLISHED_SPKI_SHA256: [&str; 5] = [
        "fbe3018031f9586bcbf41727e417b7d1c45c2f47f93be372a17b96b50757d5a2", // Amazon Root CA 1
        "7f4296fc5b6a4e3b35d3c369623e364ab1af381d8fa7121533c9d6c633ea2461", // Amazon Root CA 2
        "36abc32656acfc645c61b71613c4bf21c787f5cabbee48348d58597803d7abc9", // Amazon Root CA 3
        "f7ecded5c66047d28ed6466b543c40e0743abe81d109254dcf845d4c2c7853c5", // Amazon Root CA 4
        "2b071c59a0a0ae76b0eadb2bad23bad4580b69c3601b630c2eaf0613afa83f92", // Starfield Services G2
    ];

    fn spki_sha256(der: &CertificateDer<'_>) -> String {
        let anchor = webpki::anchor_from_trusted_cert(der).unwrap();
        let spki = webpki::spki_for_anchor(&anchor);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.as_ref());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tokenauth-aws-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn the_signing_kms_client_retries_once_where_the_others_retry_twice() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build();
        let retries = signing_kms_client(&sdk).config().retry_config().cloned().unwrap();
        assert_eq!(retries.max_attempts(), SIGNING_MAX_ATTEMPTS);
        assert_eq!(SIGNING_MAX_ATTEMPTS, 2);
        assert_eq!(aws_sdk_kms::Client::new(&sdk).config().retry_config().unwrap().max_attempts(), 3);
    }

    #[test]
    fn the_compiled_in_roots_are_exactly_the_five_published_amazon_trust_services_roots() {
        let certs = certificates(AMAZON_TRUST_SERVICES_ROOTS).expect("the compiled-in roots parse");
        let hashes: Vec<String> = certs.iter().map(spki_sha256).collect();
        assert_eq!(hashes, PUBLISHED_SPKI_SHA256);
    }

    #[test]
    fn without_a_ca_bundle_the_amazon_roots_are_trusted() {
        assert_eq!(TrustRoots::from_path(None).unwrap(), TrustRoots::AmazonTrustServices);
        assert_eq!(TrustRoots::from_path(Some("  ")).unwrap(), TrustRoots::AmazonTrustServices);
        assert_eq!(TrustRoots::AmazonTrustServices.pem(), AMAZON_TRUST_SERVICES_ROOTS);
    }

    #[test]
    fn a_ca_bundle_replaces_the_amazon_roots() {
        let one_root = AMAZON_TRUST_SERVICES_ROOTS.split("# Amazon Root CA 2").next().unwrap();
        let path = temp_file("one-root.pem", one_root);
        let roots = TrustRoots::from_path(path.to_str()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(roots, TrustRoots::Bundle(one_root.to_owned()));
        assert_eq!(certificates(roots.pem()).unwrap().len(), 1);
        assert!(https_client(&roots).is_ok());
    }

    #[test]
    fn a_ca_bundle_that_is_missing_empty_or_malformed_is_refused_at_start() {
        let refused = |path: &str| TrustRoots::from_path(Some(path)).unwrap_err();
        let expected = ConfigError::Invalid {
            name: TrustRoots::VARIABLE,
            reason: "the path of a readable PEM file of well-formed CA certificates",
        };
        assert_eq!(refused("/nonexistent/tokenauth/ca.pem"), expected);
        let not_pem = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
        let not_a_certificate = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        let cases =
            [("empty", ""), ("no-certificate", "just text\n"), ("not-pem", not_pem), ("not-cert", not_a_certificate)];
        for (name, contents) in cases {
            let path = temp_file(name, contents);
            let outcome = TrustRoots::from_path(path.to_str());
            std::fs::remove_file(&path).unwrap();
            assert_eq!(outcome.unwrap_err(), expected, "{name}");
        }
    }
}
