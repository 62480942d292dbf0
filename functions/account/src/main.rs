//! The `account` Lambda: wiring only. State is built once per cold start.

mod handler;

use std::sync::Arc;

use lambda_http::{run, service_fn, Error};
use tokenauth::{AccountService, Config, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tokenauth::platform::aws::function_sdk_config(&config).await?;
    let service = AccountService::from_config(
        &config,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        Arc::new(SystemClock),
    )
    .await;
    run(service_fn(|event| handler::function_handler(&service, event))).await
}
