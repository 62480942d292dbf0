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
    //! Answers that need no AWS call (the unit tier, `make unit`): the metadata sample
    //! event, other methods and paths, on clients that reach nothing.
    use serde_json::Value;
    use tokenauth_tests::{event, json_of, request_from_event, unit};

    use super::*;

    #[tokio::test]
    async fn the_metadata_sample_event_needs_no_aws_call() {
        let config = unit::config();
        let clients = unit::clients();
        let service = DiscoveryService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
        let response = function_handler(&service, request_from_event(&event("metadata-http-api.json"))).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(&response)["issuer"], config.issuer.as_str());
        assert!(response.headers()["cache-control"].to_str().unwrap().starts_with("public, max-age="));
        clients.assert_no_call("the metadata");
    }

    #[tokio::test]
    async fn other_methods_and_paths_get_405_and_404_without_an_aws_call() {
        let clients = unit::clients();
        let service = DiscoveryService::from_config(&unit::config(), clients.dynamodb.clone(), clients.kms.clone());
        for name in ["jwks-http-api.json", "metadata-http-api.json"] {
            let mut post = event(name);
            post["requestContext"]["http"]["method"] = Value::String("POST".into());
            let response = function_handler(&service, request_from_event(&post)).await.unwrap();
            assert_eq!(response.status(), 405, "{name}");
            assert_eq!(response.headers()["allow"], "GET, HEAD", "{name}");
        }
        let mut elsewhere = event("jwks-http-api.json");
        elsewhere["rawPath"] = Value::String("/.well-known/other.json".into());
        elsewhere["requestContext"]["http"]["path"] = Value::String("/.well-known/other.json".into());
        let response = function_handler(&service, request_from_event(&elsewhere)).await.unwrap();
        assert_eq!(response.status(), 404);
        clients.assert_no_call("another method or path");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod needs_stack {
    //! The JWKS sample event, against the local stack's key set (the stack tier,
    //! `make test`).
    use tokenauth_tests::{clients, config, current_signing_key, event, json_of, key_set, request_from_event};

    use super::*;

    #[tokio::test]
    async fn the_jwks_sample_event_gets_the_stack_keys() {
        let config = config();
        let clients = clients().await;
        let service = DiscoveryService::from_config(&config, clients.dynamodb.clone(), clients.kms.clone());
        let response = function_handler(&service, request_from_event(&event("jwks-http-api.json"))).await.unwrap();
        assert_eq!(response.status(), 200);
        let jwks = json_of(&response);
        let current = key_set(&config, &clients).await.current().unwrap().kid.clone();
        assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == current.as_str()), "{jwks}");
        assert!(!current_signing_key(&config, &clients).await.is_empty());
    }
}
