//! The `refresh` Lambda: `POST /auth/token` and `POST /auth/refresh`. Wiring only; state is
//! built once per cold start.

mod handler;

use lambda_http::{run, service_fn, Error};
use tokenauth::services::token_endpoint::TokenService;
use tokenauth::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tokenauth::platform::aws::function_sdk_config(&config).await?;
    let service = TokenService::from_config(
        &config,
        aws_sdk_dynamodb::Client::new(&sdk),
        tokenauth::platform::aws::signing_kms_client(&sdk),
    )
    .await?;
    run(service_fn(|event| handler::function_handler(&service, event))).await
}
