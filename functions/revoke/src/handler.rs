//! `POST /auth/revoke` (RFC 7009) and `POST /auth/revoke-all`.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::RevocationService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &RevocationService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::http::revoke(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The sample events in `events/`, through the handler, against the local stack.
    use std::sync::Arc;

    use tokenauth::platform::clock::SystemClock;
    use tokenauth_tests::{clients, config, event, json_of, request_from_event};

    use super::*;

    #[tokio::test]
    async fn sample_events_get_rfc7009_answers() {
        let config = config();
        let clients = clients().await;
        let service = RevocationService::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock)).await;
        // Unknown tokens: 200 and nothing changes (RFC 7009 §2.2).
        for name in ["revoke-refresh-token-form.json", "revoke-access-token-json.json"] {
            let response = function_handler(&service, request_from_event(&event(name))).await.unwrap();
            assert_eq!(response.status(), 200, "{name}");
        }
        // A bearer token that does not verify: 401 invalid_token with a challenge.
        let response = function_handler(&service, request_from_event(&event("revoke-all.json"))).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(json_of(&response)["error"], "invalid_token");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }
}
