//! The `authorizer` Lambda: wiring only. Keys and the revocation state are loaded once per
//! instance; a request then makes no AWS call unless a revocation poll is due.

mod handler;

use std::sync::Arc;

use lambda_runtime::{run, service_fn, Error};
use tokenauth::authorizer::Authorizer;
use tokenauth::{Config, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tokenauth::aws::sdk_config().await;
    let authorizer = Authorizer::from_config(
        &config,
        |name| std::env::var(name).ok(),
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        Arc::new(SystemClock),
    )
    .await?;
    authorizer.warm_up().await;
    run(service_fn(|event| handler::function_handler(&authorizer, event))).await
}
