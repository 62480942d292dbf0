//! The `key-rotation` Lambda: wiring only. On its EventBridge schedule it performs the next
//! due step of the key lifecycle (add a key, promote, retire), gated as `authctl keys
//! rotate` is; running twice at once is safe (the key set is written conditionally).

mod handler;

use std::sync::Arc;

use lambda_runtime::{run, service_fn, Error};
use tokenauth::services::keys::KeyManager;
use tokenauth::{Config, SystemClock};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tokenauth::platform::aws::function_sdk_config(&config).await?;
    let manager = KeyManager::from_config(
        &config,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        Arc::new(SystemClock),
    );
    run(service_fn(|event| handler::function_handler(&manager, event))).await
}
