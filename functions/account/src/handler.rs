//! `POST /auth/password`, `GET|DELETE /auth/sessions`, `DELETE /auth/sessions/{sid}` and
//! `DELETE /auth/account`, behind the authorizer.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::AccountService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &AccountService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::account::account(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Answers that need no AWS call (the unit tier, `make unit`): the sample events (their
    //! bearer token is no token of ours), wrong methods and paths, bad bodies, and bearer
    //! headers or tokens that are not valid access tokens of ours, through the handler, on
    //! clients that reach nothing and a key ring read just now.
    use serde_json::{json, Value};
    use tokenauth::rules::keys::testing::LocalSigner;
    use tokenauth_tests::{event, json_of, request_from_event, unit};

    use super::*;

    const EVENTS: [&str; 5] = [
        "account-change-password.json",
        "account-list-sessions.json",
        "account-end-session.json",
        "account-end-other-sessions.json",
        "account-delete.json",
    ];

    /// A sample event with another `Authorization` header (none for `None`) and body.
    fn with(name: &str, authorization: Option<&str>, body: Option<&str>) -> Request {
        let mut event = event(name);
        match authorization {
            Some(value) => event["headers"]["authorization"] = Value::String(value.to_owned()),
            None => {
                event["headers"].as_object_mut().unwrap().remove("authorization");
            }
        }
        if let Some(body) = body {
            event["body"] = Value::String(body.to_owned());
        }
        request_from_event(&event)
    }

    #[tokio::test]
    async fn the_sample_events_get_401_invalid_token_and_make_no_aws_call() {
        let clients = unit::clients();
        let service = unit::account_service(&unit::config(), &clients, &LocalSigner::new());
        for name in EVENTS {
            let response = function_handler(&service, request_from_event(&event(name))).await.unwrap();
            assert_eq!(response.status(), 401, "{name}");
            assert_eq!(json_of(&response)["error"], "invalid_token", "{name}");
            assert_eq!(response.headers()["www-authenticate"], r#"Bearer error="invalid_token""#, "{name}");
        }
        clients.assert_no_call("the sample account events");
    }

    #[tokio::test]
    async fn missing_or_malformed_authorization_gets_401_and_makes_no_aws_call() {
        let clients = unit::clients();
        let service = unit::account_service(&unit::config(), &clients, &LocalSigner::new());
        for name in EVENTS {
            for header in [None, Some("Basic abc"), Some("Bearer"), Some("Bearer a b"), Some("DPoP")] {
                let response = function_handler(&service, with(name, header, None)).await.unwrap();
                assert_eq!(response.status(), 401, "{name} {header:?}");
                assert_eq!(json_of(&response)["error"], "invalid_token", "{name} {header:?}");
            }
        }
        clients.assert_no_call("account requests without one valid Authorization header");
    }

    #[tokio::test]
    async fn tokens_that_are_not_valid_access_tokens_of_ours_get_401_and_make_no_aws_call() {
        let (config, clients, key) = (unit::config(), unit::clients(), LocalSigner::new());
        let service = unit::account_service(&config, &clients, &key);
        let claims = |name: &str, value: Value| {
            let mut claims = unit::claims(&config);
            claims[name] = value;
            key.sign_claims(&claims)
        };
        let past = unit::claims(&config)["iat"].as_u64().unwrap() - 3600;
        let tokens = [
            ("garbage", "not-a-token".to_owned()),
            ("a refresh token", "rt_x".to_owned()),
            ("expired", claims("exp", json!(past))),
            ("another audience", claims("aud", json!("https://other.example.com"))),
            ("another issuer", claims("iss", json!("https://evil.example.com"))),
            ("signed by another key", LocalSigner::new().sign_claims(&unit::claims(&config))),
        ];
        for name in ["account-list-sessions.json", "account-end-session.json", "account-end-other-sessions.json"] {
            for (what, token) in &tokens {
                let response = function_handler(&service, with(name, Some(&format!("Bearer {token}")), None)).await;
                let response = response.unwrap();
                assert_eq!(response.status(), 401, "{name}: {what}");
                assert_eq!(json_of(&response)["error"], "invalid_token", "{name}: {what}");
            }
        }
        clients.assert_no_call("account requests with tokens that are not ours");
    }

    #[tokio::test]
    async fn bad_requests_get_4xx_and_make_no_aws_call() {
        let clients = unit::clients();
        let service = unit::account_service(&unit::config(), &clients, &LocalSigner::new());
        let bearer = Some("Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
        let method = |name: &str, method: &str| {
            let mut event = event(name);
            event["requestContext"]["http"]["method"] = Value::String(method.into());
            request_from_event(&event)
        };
        let mut elsewhere = event("account-list-sessions.json");
        elsewhere["rawPath"] = Value::String("/auth/elsewhere".into());
        elsewhere["requestContext"]["http"]["path"] = Value::String("/auth/elsewhere".into());
        let oversized = format!(r#"{{"password":"{}"}}"#, "x".repeat(17 * 1024));
        let cases = [
            ("password: not JSON", with("account-change-password.json", bearer, Some("{")), 400, "invalid_request"),
            (
                "password: no new password",
                with("account-change-password.json", bearer, Some(r#"{"current_password":"a"}"#)),
                400,
                "invalid_request",
            ),
            (
                "password: empty current",
                with("account-change-password.json", bearer, Some(r#"{"current_password":"","new_password":"b"}"#)),
                400,
                "invalid_request",
            ),
            ("delete: no body", with("account-delete.json", bearer, Some("")), 400, "invalid_request"),
            (
                "delete: a number",
                with("account-delete.json", bearer, Some(r#"{"password":5}"#)),
                400,
                "invalid_request",
            ),
            ("delete: oversized", with("account-delete.json", bearer, Some(&oversized)), 413, "invalid_request"),
            ("GET /auth/password", method("account-change-password.json", "GET"), 405, "invalid_request"),
            ("POST /auth/account", method("account-delete.json", "POST"), 405, "invalid_request"),
            ("PUT /auth/sessions", method("account-list-sessions.json", "PUT"), 405, "invalid_request"),
            ("GET /auth/sessions/{sid}", method("account-end-session.json", "GET"), 405, "invalid_request"),
            ("an unknown path", request_from_event(&elsewhere), 404, "invalid_request"),
        ];
        for (name, request, status, error) in cases {
            let response = function_handler(&service, request).await.unwrap();
            assert_eq!(response.status(), status, "{name}");
            assert_eq!(json_of(&response)["error"], error, "{name}");
        }
        clients.assert_no_call("bad account requests");
    }
}
