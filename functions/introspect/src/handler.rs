//! `POST /auth/introspect` (RFC 7662).

use lambda_http::{Body, Error, Request, Response};
use tokenauth::IntrospectionService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &IntrospectionService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::http::introspect(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Answers that need no AWS call (the unit tier, `make unit`): bad requests, and
    //! callers that are not confidential clients the deployment knows (the unit tier's has
    //! no registry, so no client is read). What a registered client learns is in
    //! `tests/tests/introspect.rs`.
    use serde_json::Value;
    use tokenauth::rules::keys::testing::LocalSigner;
    use tokenauth_tests::{basic_authorization, event, introspect_request, json_of, request_from_event, unit};

    use super::*;

    #[tokio::test]
    async fn bad_introspection_requests_get_4xx_invalid_request_and_make_no_aws_call() {
        let clients = unit::clients();
        let service = unit::introspection_service(&unit::config(), &clients, &LocalSigner::new());
        let basic = basic_authorization("reports", "tkcs_x");
        let mut json = event("introspect-form.json");
        json["headers"]["content-type"] = Value::String("application/json".into());
        json["body"] = Value::String(r#"{"token":"x"}"#.into());
        let mut get = event("introspect-form.json");
        get["requestContext"]["http"]["method"] = Value::String("GET".into());
        let oversized = format!("token={}", "x".repeat(17 * 1024));
        let cases = [
            ("no token", introspect_request("token_type_hint=access_token", Some(&basic)), 400),
            ("empty token", introspect_request("token=", Some(&basic)), 400),
            ("repeated token", introspect_request("token=a&token=b", Some(&basic)), 400),
            ("JSON (RFC 7662 §2.1: a form)", request_from_event(&json), 400),
            ("two methods", introspect_request("token=a&client_id=reports&client_secret=s", Some(&basic)), 400),
            (
                "an assertion of another type",
                introspect_request("token=a&client_assertion_type=x&client_assertion=y", None),
                400,
            ),
            ("GET", request_from_event(&get), 405),
            ("oversized", introspect_request(&oversized, Some(&basic)), 413),
        ];
        for (name, request, status) in cases {
            let response = function_handler(&service, request).await.unwrap();
            assert_eq!(response.status(), status, "{name}");
            assert_eq!(json_of(&response)["error"], "invalid_request", "{name}");
        }
        clients.assert_no_call("a bad introspection request");
    }

    #[tokio::test]
    async fn callers_that_are_not_confidential_clients_get_401_invalid_client_and_make_no_aws_call() {
        let clients = unit::clients();
        let service = unit::introspection_service(&unit::config(), &clients, &LocalSigner::new());
        let unknown = basic_authorization("reports", "tkcs_x");
        let cases = [
            ("no client authentication (the first-party app, public)", introspect_request("token=a", None), false),
            ("the first-party app naming itself", introspect_request("token=a&client_id=first-party", None), false),
            (
                "a secret for the public first-party app",
                introspect_request("token=a", Some(&basic_authorization("first-party", "tkcs_x"))),
                true,
            ),
            ("an unknown client, Basic", introspect_request("token=a", Some(&unknown)), true),
            (
                "an unknown client, post",
                introspect_request("token=a&client_id=reports&client_secret=tkcs_x", None),
                false,
            ),
            ("Basic that does not decode", introspect_request("token=a", Some("Basic !!!")), true),
        ];
        for (name, request, basic) in cases {
            let response = function_handler(&service, request).await.unwrap();
            assert_eq!(response.status(), 401, "{name}");
            assert_eq!(json_of(&response), serde_json::json!({"error": "invalid_client"}), "{name}");
            assert_eq!(response.headers().contains_key("www-authenticate"), basic, "{name}: RFC 6749 §5.2");
            assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        }
        clients.assert_no_call("introspection by callers the deployment cannot know");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod needs_stack {
    //! The sample event, through the handler, against the local stack (the stack tier,
    //! `make test`).
    use std::sync::Arc;

    use tokenauth::platform::clock::SystemClock;
    use tokenauth_tests::{clients, config, event, json_of, request_from_event};

    use super::*;

    #[tokio::test]
    async fn the_sample_event_of_an_unregistered_client_gets_invalid_client() {
        let config = config();
        let clients = clients().await;
        let service = IntrospectionService::from_config(
            &config,
            clients.dynamodb.clone(),
            clients.kms.clone(),
            Arc::new(SystemClock),
        )
        .await;
        let response = function_handler(&service, request_from_event(&event("introspect-form.json"))).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(json_of(&response)["error"], "invalid_client");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    }
}
