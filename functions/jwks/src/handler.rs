//! `GET /.well-known/jwks.json` and `GET /.well-known/oauth-authorization-server`.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::services::discovery::DiscoveryService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &DiscoveryService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::http::discovery(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The sample events in `events/`, against the local stack's key set.
    use tokenauth_tests::{clients, config, current_signing_key, event, json_of, key_set, request_from_event};

    use super::*;

    #[tokio::test]
    async fn sample_events_get_the_stack_keys_and_metadata() {
        let config = config();
        let clients = clients().await;
        let service = DiscoveryService::from_config(&config, clients.dynamodb.clone());
        let response = function_handler(&service, request_from_event(&event("jwks-http-api.json"))).await.unwrap();
        assert_eq!(response.status(), 200);
        let jwks = json_of(&response);
        let current = key_set(&config, &clients).await.current().unwrap().kid.clone();
        assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == current.as_str()), "{jwks}");
        assert!(!current_signing_key(&config, &clients).await.is_empty());

        let response = function_handler(&service, request_from_event(&event("metadata-http-api.json"))).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(&response)["issuer"], config.issuer.as_str());
    }
}
