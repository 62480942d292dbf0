//! The `jwks` Lambda: wiring only. Publishes the key set's public keys (RFC 7517) and the
//! RFC 8414 metadata; one DynamoDB read per JWKS request (the key set's signature is checked
//! offline, no KMS call).

mod handler;

use lambda_http::{run, service_fn, Error};
use tokenauth::services::discovery::DiscoveryService;
use tokenauth::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tokenauth::platform::aws::function_sdk_config(&config).await?;
    let service =
        DiscoveryService::from_config(&config, aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk));
    run(service_fn(|event| handler::function_handler(&service, event))).await
}
