//! The scheduled event (its content is not used): one due step, or none.

use lambda_runtime::{Error, LambdaEvent};
use tokenauth::services::keys::KeyManager;

/// The step taken (`{"step": null}` if none was due). A failure fails the invocation, so
/// the function's error metric and EventBridge's retry see it.
pub async fn function_handler(
    manager: &KeyManager,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let step = manager.rotate().await.map_err(|e| Error::from(e.to_string()))?;
    Ok(serde_json::json!({
        "step": step.as_ref().map(|s| s.name()),
        "detail": step.map(|s| s.to_string()),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod needs_stack {
    //! The sample schedule event, against a Keys table of the test's own in the local stack
    //! (the stack tier, `make test`): every step of the lifecycle reads and writes the set.
    use std::sync::Arc;

    use lambda_runtime::Context;
    use tokenauth::SystemClock;
    use tokenauth_tests::{clients, config_with, event, unique_username};

    use super::*;

    #[tokio::test]
    async fn the_schedule_event_bootstraps_an_empty_set_then_finds_nothing_due() {
        let clients = clients().await;
        let table = format!("keys-{}", unique_username("rotation"));
        tokenauth_tests::create_keys_table(&clients, &table).await;
        let config = config_with(&[("KEYS_TABLE", &table)]);
        let manager =
            KeyManager::from_config(&config, clients.dynamodb.clone(), clients.kms.clone(), Arc::new(SystemClock));
        let invoke = || {
            let event = serde_json::from_value(event("key-rotation-schedule.json")).unwrap();
            function_handler(&manager, LambdaEvent::new(event, Context::default()))
        };
        let first = invoke().await.unwrap();
        assert_eq!(first["step"], "key_bootstrapped", "{first}");
        let second = invoke().await.unwrap();
        assert_eq!(second["step"], serde_json::Value::Null, "{second}");
    }
}
