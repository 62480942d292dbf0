//! `POST /auth/refresh`.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::RefreshService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &RefreshService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::http::refresh(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The sample events in `events/`, through the handler, against the local stack.
    use std::sync::Arc;

    use tokenauth::platform::clock::SystemClock;
    use tokenauth_tests::{clients, config, event, json_of, request_from_event};

    use super::*;

    async fn service() -> RefreshService {
        let config = config();
        let clients = clients().await;
        tokenauth_tests::refresh_service(&config, &clients, Arc::new(SystemClock)).await
    }

    #[tokio::test]
    async fn sample_events_reach_the_rotation_and_get_rfc6749_answers() {
        let service = service().await;
        // The sample tokens were never issued: a well-formed request, an invalid grant.
        for name in ["refresh-json.json", "refresh-form.json"] {
            let response = function_handler(&service, request_from_event(&event(name))).await.unwrap();
            assert_eq!(response.status(), 401, "{name}");
            assert_eq!(json_of(&response)["error"], "invalid_grant", "{name}");
        }
        let response =
            function_handler(&service, request_from_event(&event("refresh-wrong-grant-type.json"))).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json_of(&response)["error"], "unsupported_grant_type");
    }
}
