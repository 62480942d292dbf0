//! AWS SDK set-up shared by every function: the standard configuration chain (so
//! `AWS_ENDPOINT_URL_*` point the clients at the local stack) plus timeouts, so a hung
//! dependency becomes a prompt 503 instead of a Lambda timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

/// Connect timeout per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Timeout of one attempt of one call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Timeout of one call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(4_000);

/// Loads the SDK configuration from the environment with our timeouts and standard retries.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}
