//! The `authorizer` Lambda: wiring only. The key set and the revocation state are read at
//! start; a request then makes no AWS call unless their poll is due, and waits for that at
//! most `READ_BUDGET`.

mod handler;

use std::sync::Arc;

use lambda_runtime::{run, service_fn, Error};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::{Config, SystemClock};

/// One invocation at a time, so a current-thread runtime: no worker threads to start at
/// cold start or to hand each I/O wake-up to.
/// A read a request stopped waiting for (`READ_BUDGET`) runs on this thread too: while a
/// request awaits and while the runtime waits for the next event; frozen with the instance
/// otherwise, it resumes at the next thaw (see docs/authorizer.md, "Reads never hold a
/// request").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tokenauth::platform::aws::function_sdk_config(&config).await?;
    // No KMS client: the key set's signature is checked with the pinned public key.
    let authorizer = Authorizer::from_config(&config, aws_sdk_dynamodb::Client::new(&sdk), Arc::new(SystemClock));
    // Before the runtime asks for the first event, not alongside: Lambda may freeze the
    // instance as soon as it asks (an instance initialised ahead of traffic), and a read
    // frozen in flight would stall or fail the first request.
    authorizer.warm_up().await;
    run(service_fn(|event| handler::function_handler(&authorizer, event))).await
}
