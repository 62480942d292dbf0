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
    //! Answers that need no AWS call (the unit tier, `make unit`): the malformed sample event
    //! of `events/` (the files `cargo lambda invoke --data-file` sends) and bad input through
    //! the handler, on clients that reach nothing.
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use lambda_http::http::StatusCode;
    use serde_json::Value;
    use tokenauth_tests::{event, json_of, login_event_with_body, request_from_event, unit, Clients};

    use super::*;

    fn service() -> (LoginService, Clients) {
        let clients = unit::clients();
        (unit::login_service(&unit::config(), &clients), clients)
    }

    #[tokio::test]
    async fn the_malformed_sample_event_gets_invalid_request_without_an_aws_call() {
        let (service, clients) = service();
        let response = function_handler(&service, request_from_event(&event("login-http-api-malformed.json"))).await;
        let response = response.expect("the handler never errors");
        assert_eq!(response.status(), 400);
        assert_eq!(json_of(&response)["error"], "invalid_request");
        clients.assert_no_call("the malformed sample event");
    }

    #[tokio::test]
    async fn bad_input_gets_a_4xx_rfc6749_body_and_makes_no_aws_call() {
        let (service, clients) = service();
        let mut cases: Vec<(&str, Request, StatusCode)> = vec![
            ("malformed JSON", login_event_with_body(r#"{"username":"a","password":"#), StatusCode::BAD_REQUEST),
            ("not an object", login_event_with_body(r#"["a","b"]"#), StatusCode::BAD_REQUEST),
            ("empty body", login_event_with_body(""), StatusCode::BAD_REQUEST),
            ("missing password", login_event_with_body(r#"{"username":"a"}"#), StatusCode::BAD_REQUEST),
            ("missing username", login_event_with_body(r#"{"password":"p"}"#), StatusCode::BAD_REQUEST),
            ("empty username", login_event_with_body(r#"{"username":"","password":"p"}"#), StatusCode::BAD_REQUEST),
            ("blank username", login_event_with_body(r#"{"username":"   ","password":"p"}"#), StatusCode::BAD_REQUEST),
            ("empty password", login_event_with_body(r#"{"username":"a","password":""}"#), StatusCode::BAD_REQUEST),
            ("numeric username", login_event_with_body(r#"{"username":42,"password":"p"}"#), StatusCode::BAD_REQUEST),
            ("null password", login_event_with_body(r#"{"username":"a","password":null}"#), StatusCode::BAD_REQUEST),
            (
                "object password",
                login_event_with_body(r#"{"username":"a","password":{"x":1}}"#),
                StatusCode::BAD_REQUEST,
            ),
            (
                "array scope",
                login_event_with_body(r#"{"username":"a","password":"p","scope":["read"]}"#),
                StatusCode::BAD_REQUEST,
            ),
            (
                "username with a space",
                login_event_with_body(r#"{"username":"a b","password":"p"}"#),
                StatusCode::BAD_REQUEST,
            ),
            (
                "oversized body",
                login_event_with_body(&format!(r#"{{"username":"a","password":"{}"}}"#, "x".repeat(16 * 1024))),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        let mut wrong_type = event("login-http-api.json");
        wrong_type["headers"]["content-type"] = Value::String("application/x-www-form-urlencoded".into());
        cases.push(("wrong content type", request_from_event(&wrong_type), StatusCode::BAD_REQUEST));
        let mut no_type = event("login-http-api.json");
        no_type["headers"].as_object_mut().unwrap().remove("content-type");
        cases.push(("no content type", request_from_event(&no_type), StatusCode::BAD_REQUEST));
        let mut not_utf8 = event("login-http-api.json");
        not_utf8["body"] = Value::String(STANDARD.encode(b"{\"username\":\"a\xff\xfe\",\"password\":\"p\"}"));
        not_utf8["isBase64Encoded"] = Value::Bool(true);
        cases.push(("non-UTF-8 body", request_from_event(&not_utf8), StatusCode::BAD_REQUEST));
        let mut get = event("login-http-api.json");
        get["requestContext"]["http"]["method"] = Value::String("GET".into());
        cases.push(("GET", request_from_event(&get), StatusCode::METHOD_NOT_ALLOWED));

        for (name, request, status) in cases {
            let response = function_handler(&service, request).await.expect("the handler never errors");
            assert_eq!(response.status(), status, "{name}");
            let body = json_of(&response);
            assert_eq!(body["error"], "invalid_request", "{name}: {body}");
            assert!(body["error_description"].is_string(), "{name}");
            assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        }
        clients.assert_no_call("bad input");
    }

    #[tokio::test]
    async fn a_device_name_too_long_blank_or_with_a_control_character_is_invalid_request_without_an_aws_call() {
        let (service, clients) = service();
        let with_name = |name: &str| {
            let body = serde_json::json!({"username": "a", "password": "p", "device_name": name});
            login_event_with_body(&body.to_string())
        };
        let cases = [
            ("too long", with_name(&"x".repeat(65)), Some("device_name must be at most 64 characters")),
            ("a newline", with_name("Ana's\nphone"), Some("device_name must not contain control characters")),
            ("an escape", with_name("Ana\u{1b}[2J"), Some("device_name must not contain control characters")),
            ("blank", with_name("   "), Some("device_name must not be empty when present")),
            ("not a string", login_event_with_body(r#"{"username":"a","password":"p","device_name":7}"#), None),
        ];
        for (name, request, description) in cases {
            let response = function_handler(&service, request).await.expect("the handler never errors");
            assert_eq!(response.status(), 400, "{name}");
            let body = json_of(&response);
            assert_eq!(body["error"], "invalid_request", "{name}: {body}");
            if let Some(description) = description {
                assert_eq!(body["error_description"], description, "{name}");
            }
        }
        clients.assert_no_call("a bad device name");
    }

    #[tokio::test]
    async fn the_dpop_sample_event_where_dpop_is_off_gets_invalid_dpop_proof_without_an_aws_call() {
        let (service, clients) = service();
        let response =
            function_handler(&service, request_from_event(&event("login-http-api-dpop.json"))).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = json_of(&response);
        assert_eq!(body["error"], "invalid_dpop_proof");
        assert_eq!(body["error_description"], "DPoP is not enabled");
        clients.assert_no_call("a proof where DPoP is off");
    }

    #[tokio::test]
    async fn a_scope_that_is_not_a_scope_is_invalid_scope_before_any_aws_call() {
        let (service, clients) = service();
        let request = login_event_with_body(r#"{"username":"a","password":"p","scope":"read  write"}"#);
        let response = function_handler(&service, request).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json_of(&response)["error"], "invalid_scope");
        clients.assert_no_call("a malformed scope");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod needs_stack {
    //! The sample events that log in or fail a password check, through the handler, against
    //! the local stack (the stack tier, `make test`).
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
        for name in [
            "login-http-api.json",
            "login-rest-api.json",
            "login-http-api-base64.json",
            "login-http-api-device-name.json",
        ] {
            let response = invoke(&service, name).await;
            assert_eq!(response.status(), 200, "{name}");
            let body = json_of(&response);
            assert_eq!(body["token_type"], "Bearer", "{name}");
            assert_eq!(body["scope"], "read", "{name}");
        }
    }

    #[tokio::test]
    async fn the_dpop_sample_events_proof_is_stale_and_refused_before_the_password_check() {
        // Its proof was made at the event's time (2026-11-24): valid in every way but its age.
        let service = service_with_demo_user().await;
        let response = invoke(&service, "login-http-api-dpop.json").await;
        assert_eq!(response.status(), 400);
        let body = json_of(&response);
        assert_eq!(body["error"], "invalid_dpop_proof");
        assert_eq!(body["error_description"], "the DPoP proof's iat is outside the accepted window");
    }

    #[tokio::test]
    async fn the_wrong_password_sample_event_gets_invalid_grant() {
        let service = service_with_demo_user().await;
        let wrong = invoke(&service, "login-http-api-wrong-password.json").await;
        assert_eq!(wrong.status(), 401);
        assert_eq!(json_of(&wrong)["error"], "invalid_grant");
    }
}
