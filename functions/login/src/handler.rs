//! `POST /auth/login`.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::LoginService;

/// Hands the request to the library; every outcome (including bad input and a failed
/// dependency) is a response, so this never returns an error to the runtime.
pub async fn function_handler(service: &LoginService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::http::login(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The sample events in `events/` (the ones `cargo lambda invoke --data-file` sends),
    //! through the handler, against the local stack.
    use std::sync::Arc;

    use tokenauth::platform::clock::SystemClock;
    use tokenauth::rules::username::Username;
    use tokenauth::store::{DynamoUsers, UserRecord, UserWriteError};
    use tokenauth_tests::{clients, config, event, json_of, login_service, request_from_event};

    use super::*;

    /// The events log in as `demo` / `demo-password`, the user `make dev` seeds.
    async fn service_with_demo_user() -> LoginService {
        let config = config();
        let clients = clients().await;
        let demo = UserRecord::new(
            tokenauth::rules::token::random_id(),
            tokenauth::rules::password::hash("demo-password").unwrap(),
            vec!["read".into(), "write".into()],
            0,
        );
        match DynamoUsers::new(clients.dynamodb.clone(), &config.users_table)
            .create(&Username::normalise("demo").unwrap(), &demo)
            .await
        {
            Ok(()) | Err(UserWriteError::AlreadyExists) => {}
            Err(e) => panic!("{e}"),
        }
        login_service(&config, &clients, Arc::new(SystemClock)).await
    }

    async fn invoke(service: &LoginService, name: &str) -> Response<Body> {
        function_handler(service, request_from_event(&event(name))).await.expect("the handler never errors")
    }

    #[tokio::test]
    async fn sample_events_of_every_api_gateway_shape_log_in() {
        let service = service_with_demo_user().await;
        for name in ["login-http-api.json", "login-rest-api.json", "login-http-api-base64.json"] {
            let response = invoke(&service, name).await;
            assert_eq!(response.status(), 200, "{name}");
            let body = json_of(&response);
            assert_eq!(body["token_type"], "Bearer", "{name}");
            assert_eq!(body["scope"], "read", "{name}");
        }
    }

    #[tokio::test]
    async fn sample_error_events_get_rfc6749_errors() {
        let service = service_with_demo_user().await;
        let malformed = invoke(&service, "login-http-api-malformed.json").await;
        assert_eq!(malformed.status(), 400);
        assert_eq!(json_of(&malformed)["error"], "invalid_request");
        let wrong = invoke(&service, "login-http-api-wrong-password.json").await;
        assert_eq!(wrong.status(), 401);
        assert_eq!(json_of(&wrong)["error"], "invalid_grant");
    }
}
