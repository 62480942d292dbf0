//! One authorizer event in, one answer out.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::value::RawValue;
use tokenauth::edge::authorizer::{Answer, Authorizer};

/// The event stays raw JSON here: the library reads only the fields it needs from it.
/// `Unauthorized` becomes the Lambda error of that name, which API Gateway (REST) turns into
/// a 401; nothing here panics.
pub async fn function_handler(authorizer: &Authorizer, event: LambdaEvent<Box<RawValue>>) -> Result<Answer, Error> {
    authorizer.handle(event.payload.get()).await.map_err(Error::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The sample events in `events/` (placeholder tokens) through the handler.
    use std::sync::Arc;

    use lambda_runtime::{Context, LambdaEvent};
    use tokenauth::SystemClock;
    use tokenauth_tests::{clients, config, event};

    use super::*;

    #[tokio::test]
    async fn sample_events_are_refused_without_panicking_each_in_its_own_way() {
        let config = config();
        let clients = clients().await;
        let authorizer = Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
        for name in ["authorizer-rest-token.json", "authorizer-rest-request.json"] {
            let raw = RawValue::from_string(event(name).to_string()).unwrap();
            let outcome = function_handler(&authorizer, LambdaEvent::new(raw, Context::default())).await;
            assert_eq!(outcome.unwrap_err().to_string(), "Unauthorized", "{name}");
        }
        let raw = RawValue::from_string(event("authorizer-http-api-v2.json").to_string()).unwrap();
        let answer = function_handler(&authorizer, LambdaEvent::new(raw, Context::default())).await.unwrap();
        assert_eq!(serde_json::to_value(answer).unwrap()["isAuthorized"], false);
        let raw = RawValue::from_string(event("authorizer-http-api-v1.json").to_string()).unwrap();
        let answer = function_handler(&authorizer, LambdaEvent::new(raw, Context::default())).await.unwrap();
        assert_eq!(serde_json::to_value(answer).unwrap()["policyDocument"]["Statement"][0]["Effect"], "Deny");
    }
}
