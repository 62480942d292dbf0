//! `POST /auth/token` and `POST /auth/refresh`.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::services::token_endpoint::TokenService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &TokenService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::http::token(service, &event).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Answers that need no AWS call (the unit tier, `make unit`): the wrong-grant sample
    //! event and bad input through the handler, on clients that reach nothing.
    use lambda_http::http::StatusCode;
    use serde_json::Value;
    use tokenauth::rules::token::RefreshToken;
    use tokenauth_tests::{event, json_of, request_from_event, unit, Clients};

    use super::*;

    fn service() -> (TokenService, Clients) {
        let clients = unit::clients();
        (unit::token_service(&unit::config(), &clients), clients)
    }

    #[tokio::test]
    async fn the_wrong_grant_type_sample_event_is_unsupported_without_an_aws_call() {
        let (service, clients) = service();
        let response =
            function_handler(&service, request_from_event(&event("refresh-wrong-grant-type.json"))).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json_of(&response)["error"], "unsupported_grant_type");
        clients.assert_no_call("the wrong-grant sample event");
    }

    #[tokio::test]
    async fn the_dpop_sample_event_where_dpop_is_off_gets_invalid_dpop_proof_without_an_aws_call() {
        let (service, clients) = service();
        let response = function_handler(&service, request_from_event(&event("refresh-dpop.json"))).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = json_of(&response);
        assert_eq!(body["error"], "invalid_dpop_proof");
        assert_eq!(body["error_description"], "DPoP is not enabled");
        clients.assert_no_call("a proof where DPoP is off");
    }

    #[tokio::test]
    async fn the_token_endpoint_sample_event_is_invalid_client_with_basic_asked_for_without_an_aws_call() {
        // The unit tier's deployment has no Clients table: `billing` is no client of it.
        let (service, clients) = service();
        let response = function_handler(&service, request_from_event(&event("token-client-credentials-basic.json")))
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(json_of(&response)["error"], "invalid_client");
        assert_eq!(response.headers()["www-authenticate"], r#"Basic realm="token""#);
        clients.assert_no_call("an unknown client");
    }

    #[tokio::test]
    async fn bad_token_endpoint_input_gets_a_4xx_rfc6749_body_and_makes_no_aws_call() {
        let (service, clients) = service();
        let with = |body: &str, content_type: &str, method: &str| {
            let mut e = event("token-client-credentials-basic.json");
            e["body"] = Value::String(body.to_owned());
            e["headers"]["content-type"] = Value::String(content_type.to_owned());
            e["requestContext"]["http"]["method"] = Value::String(method.to_owned());
            request_from_event(&e)
        };
        let form = "application/x-www-form-urlencoded";
        let cases = [
            ("no grant_type", with("scope=read", form, "POST"), 400, "invalid_request"),
            ("unknown grant", with("grant_type=implicit", form, "POST"), 400, "unsupported_grant_type"),
            (
                "repeated grant_type",
                with("grant_type=client_credentials&grant_type=refresh_token", form, "POST"),
                400,
                "invalid_request",
            ),
            (
                "Basic and client_secret",
                with("grant_type=client_credentials&client_id=billing&client_secret=s", form, "POST"),
                400,
                "invalid_request",
            ),
            (
                "JSON",
                with(r#"{"grant_type":"client_credentials"}"#, "application/json", "POST"),
                400,
                "invalid_request",
            ),
            ("GET", with("grant_type=client_credentials", form, "GET"), 405, "invalid_request"),
            (
                "oversized",
                with(&format!("grant_type=client_credentials&scope={}", "a".repeat(17 * 1024)), form, "POST"),
                413,
                "invalid_request",
            ),
        ];
        for (name, request, status, error) in cases {
            let response = function_handler(&service, request).await.unwrap();
            assert_eq!(response.status(), StatusCode::from_u16(status).unwrap(), "{name}");
            assert_eq!(json_of(&response)["error"], error, "{name}");
            assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        }
        clients.assert_no_call("bad token-endpoint input");
    }

    #[tokio::test]
    async fn bad_input_gets_a_4xx_rfc6749_body_and_makes_no_aws_call() {
        let (service, clients) = service();
        // A token of our exact form (no family of it exists anywhere): every case below is
        // decided before it would be looked up.
        let r0 = RefreshToken::new_family().encode();
        let form = |body: &str| {
            let mut e = event("refresh-form.json");
            e["body"] = Value::String(body.to_owned());
            request_from_event(&e)
        };
        let json = |body: &str| {
            let mut e = event("refresh-json.json");
            e["body"] = Value::String(body.to_owned());
            request_from_event(&e)
        };
        let mut text = event("refresh-json.json");
        text["headers"]["content-type"] = Value::String("text/plain".into());
        let mut get = event("refresh-json.json");
        get["requestContext"]["http"]["method"] = Value::String("GET".into());
        let mut form_get = event("refresh-form.json");
        form_get["requestContext"]["http"]["method"] = Value::String("GET".into());
        let cases = vec![
            (
                "grant_type=password",
                form(&format!("grant_type=password&refresh_token={r0}")),
                400,
                "unsupported_grant_type",
            ),
            (
                "json grant_type=password",
                json(&format!(r#"{{"grant_type":"password","refresh_token":"{r0}"}}"#)),
                400,
                "unsupported_grant_type",
            ),
            ("form without grant_type", form(&format!("refresh_token={r0}")), 400, "invalid_request"),
            ("form without refresh_token", form("grant_type=refresh_token"), 400, "invalid_request"),
            (
                "repeated parameter",
                form(&format!("grant_type=refresh_token&refresh_token={r0}&refresh_token={r0}")),
                400,
                "invalid_request",
            ),
            ("empty refresh_token", json(r#"{"refresh_token":""}"#), 400, "invalid_request"),
            ("numeric refresh_token", json(r#"{"refresh_token":7}"#), 400, "invalid_request"),
            ("malformed JSON", json(r#"{"refresh_token":"#), 400, "invalid_request"),
            ("empty scope", json(&format!(r#"{{"refresh_token":"{r0}","scope":""}}"#)), 400, "invalid_request"),
            (
                "malformed scope",
                json(&format!(r#"{{"refresh_token":"{r0}","scope":"read  write"}}"#)),
                400,
                "invalid_scope",
            ),
            ("wrong content type", request_from_event(&text), 400, "invalid_request"),
            ("GET", request_from_event(&get), 405, "invalid_request"),
            ("GET with a form", request_from_event(&form_get), 405, "invalid_request"),
            ("oversized", json(&format!(r#"{{"refresh_token":"{}"}}"#, "x".repeat(17 * 1024))), 413, "invalid_request"),
            ("not a token of ours", json(r#"{"refresh_token":"hello"}"#), 401, "invalid_grant"),
            (
                "one character short",
                json(&format!(r#"{{"refresh_token":"{}"}}"#, &r0[..r0.len() - 1])),
                401,
                "invalid_grant",
            ),
        ];
        for (name, request, status, error) in cases {
            let response = function_handler(&service, request).await.unwrap();
            assert_eq!(response.status(), StatusCode::from_u16(status).unwrap(), "{name}");
            assert_eq!(json_of(&response)["error"], error, "{name}");
            assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        }
        clients.assert_no_call("bad input");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod needs_stack {
    //! The sample events whose tokens are well formed, through the handler, against the
    //! local stack (the stack tier, `make test`): their family must be looked up.
    use std::sync::Arc;

    use tokenauth::platform::clock::SystemClock;
    use tokenauth_tests::{clients, config, event, json_of, request_from_event};

    use super::*;

    #[tokio::test]
    async fn sample_events_reach_the_rotation_and_get_invalid_grant() {
        let config = config();
        let clients = clients().await;
        let service = tokenauth_tests::refresh_service(&config, &clients, Arc::new(SystemClock)).await;
        // The sample tokens were never issued: a well-formed request, an invalid grant.
        for name in ["refresh-json.json", "refresh-form.json"] {
            let response = function_handler(&service, request_from_event(&event(name))).await.unwrap();
            assert_eq!(response.status(), 401, "{name}");
            assert_eq!(json_of(&response)["error"], "invalid_grant", "{name}");
        }
        // Its proof was made at the event's time (2026-11-24): valid in every way but its
        // age, refused before the family is read.
        let response = function_handler(&service, request_from_event(&event("refresh-dpop.json"))).await.unwrap();
        assert_eq!(response.status(), 400);
        let body = json_of(&response);
        assert_eq!(body["error"], "invalid_dpop_proof");
        assert_eq!(body["error_description"], "the DPoP proof's iat is outside the accepted window");
    }
}
