//! The SDK's HTTPS client trusts the roots we configure, not the machine's: DynamoDB Local
//! behind a TLS relay whose certificate comes from a throwaway CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;
use tokenauth::platform::aws::{sdk_config, Credentials, TrustRoots};

/// `tls_proxy.py` of this test's own in front of DynamoDB Local, stopped when dropped.
struct TlsRelay {
    child: std::process::Child,
    endpoint: String,
    ca_pem: std::path::PathBuf,
}

impl TlsRelay {
    fn start() -> Self {
        let command = std::env::var("TOKENAUTH_TLS_PROXY").expect("TOKENAUTH_TLS_PROXY is set by make test");
        let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("the local stack's DynamoDB");
        let target_port = dynamodb.rsplit(':').next().unwrap().trim_end_matches('/').to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ca_pem = std::env::temp_dir().join(format!("tokenauth-test-ca-{}-{port}.pem", std::process::id()));
        let mut parts = command.split_whitespace();
        let child = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .args([ca_pem.to_str().unwrap(), &port.to_string(), &target_port])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !ca_pem.exists() {
            assert!(std::time::Instant::now() < deadline, "the TLS relay did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, endpoint: format!("https://127.0.0.1:{port}"), ca_pem }
    }

    async fn dynamodb(&self, roots: &TrustRoots) -> aws_sdk_dynamodb::Client {
        let sdk = sdk_config(roots, Credentials::Environment).await.unwrap();
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(&self.endpoint).build(),
        )
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ca_pem);
    }
}

/// One test (the only one in this binary) because it points the machine's trust store at
/// the relay's CA through `SSL_CERT_FILE`, which no other thread may be reading meanwhile.
#[tokio::test]
async fn the_sdk_trusts_the_configured_roots_and_not_the_machines() {
    let relay = TlsRelay::start();
    std::env::set_var("SSL_CERT_FILE", &relay.ca_pem);
    std::env::remove_var("SSL_CERT_DIR");

    // Control: the SDK's default client trusts the machine's store, which now holds the CA.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let default_client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(&relay.endpoint).build(),
    );
    default_client.list_tables().send().await.expect("the machine's store trusts the relay");

    // Ours trusts the Amazon Trust Services roots only: refused for its issuer.
    let dynamodb = relay.dynamodb(&TrustRoots::AmazonTrustServices).await;
    let error = dynamodb.list_tables().send().await.expect_err("the relay's CA is not an Amazon root");
    let message = DisplayErrorContext(&error).to_string();
    assert!(message.contains("UnknownIssuer"), "refused for its issuer: {message}");

    // AWS_CA_BUNDLE replaces them: the same relay is trusted, DynamoDB Local answers over TLS.
    let path = relay.ca_pem.to_str().unwrap().to_owned();
    let roots = tokenauth_tests::config_with(&[(TrustRoots::VARIABLE, &path)]).trust_roots;
    assert!(matches!(roots, TrustRoots::Bundle(_)));
    let tables = relay.dynamodb(&roots).await.list_tables().send().await.expect("trusted over TLS");
    let revocations = std::env::var("REVOCATIONS_TABLE").unwrap();
    assert!(tables.table_names().contains(&revocations), "DynamoDB Local answered through the relay");
}
