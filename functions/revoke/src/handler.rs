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
    //! Answers that need no AWS call (the unit tier, `make unit`): bad requests, bearer
    //! headers and tokens that are not valid access tokens of ours, through the handler, on
    //! clients that reach nothing and a key ring read just now. What revoking a valid token
    //! writes is in [`super::needs_stack`].
    use serde_json::{json, Value};
    use tokenauth::rules::keys::testing::LocalSigner;
    use tokenauth_tests::{event, json_of, request_from_event, revoke_all_request, revoke_request, unit};

    use super::*;

    #[tokio::test]
    async fn bad_revocation_requests_get_4xx_invalid_request_and_make_no_aws_call() {
        let clients = unit::clients();
        let service = unit::revocation_service(&unit::config(), &clients, &LocalSigner::new());
        let mut text = event("revoke-access-token-json.json");
        text["headers"]["content-type"] = Value::String("text/plain".into());
        let mut get = event("revoke-refresh-token-form.json");
        get["requestContext"]["http"]["method"] = Value::String("GET".into());
        let oversized = format!(r#"{{"token":"{}"}}"#, "x".repeat(17 * 1024));
        let cases = [
            ("no token", revoke_request("token_type_hint=refresh_token", true), 400),
            ("empty form", revoke_request("", true), 400),
            ("repeated token", revoke_request("token=a&token=b", true), 400),
            ("empty token", revoke_request(r#"{"token":""}"#, false), 400),
            ("numeric token", revoke_request(r#"{"token":5}"#, false), 400),
            ("malformed JSON", revoke_request("{", false), 400),
            ("wrong content type", request_from_event(&text), 400),
            ("GET", request_from_event(&get), 405),
            ("oversized", revoke_request(&oversized, false), 413),
        ];
        for (name, request, status) in cases {
            let response = function_handler(&service, request).await.unwrap();
            assert_eq!(response.status(), status, "{name}");
            assert_eq!(json_of(&response)["error"], "invalid_request", "{name}");
        }
        clients.assert_no_call("a bad revocation request");
    }

    #[tokio::test]
    async fn revoke_all_without_one_bearer_token_gets_401_with_a_challenge_and_makes_no_aws_call() {
        let clients = unit::clients();
        let service = unit::revocation_service(&unit::config(), &clients, &LocalSigner::new());
        // RFC 6750 §3.1: no token (none, or another scheme) gets the bare challenge; a
        // malformed one of ours says invalid_token.
        for (header, challenge) in [
            (None, "Bearer"),
            (Some("Basic abc"), "Bearer"),
            (Some("Bearer"), r#"Bearer error="invalid_token""#),
            (Some("Bearer a b"), r#"Bearer error="invalid_token""#),
            (Some("Bearer a,b"), r#"Bearer error="invalid_token""#),
        ] {
            let response = function_handler(&service, revoke_all_request(header)).await.unwrap();
            assert_eq!(response.status(), 401, "{header:?}");
            assert_eq!(json_of(&response)["error"], "invalid_token", "{header:?}");
            assert_eq!(response.headers()["www-authenticate"], challenge, "{header:?}");
        }
        let mut two = revoke_all_request(Some("Bearer a"));
        two.headers_mut().append("authorization", "Bearer b".parse().unwrap());
        let response = function_handler(&service, two).await.unwrap();
        assert_eq!((response.status().as_u16(), json_of(&response)["error"].clone()), (400, "invalid_request".into()));
        let mut get = event("revoke-all.json");
        get["requestContext"]["http"]["method"] = Value::String("GET".into());
        let response = function_handler(&service, request_from_event(&get)).await.unwrap();
        assert_eq!(response.status(), 405);
        clients.assert_no_call("revoke-all without a bearer token");
    }

    /// Tokens that are not valid access tokens of ours, each with the claims of a real one
    /// but one thing wrong (or no JWT at all).
    fn not_ours(key: &LocalSigner) -> Vec<(&'static str, String)> {
        let config = unit::config();
        let with = |name: &str, value: Value| {
            let mut claims = unit::claims(&config);
            claims[name] = value;
            key.sign_claims(&claims)
        };
        let past = unit::claims(&config)["iat"].as_u64().unwrap() - 3600;
        vec![
            ("garbage", "not-a-token".to_owned()),
            ("a refresh token's prefix, malformed", "rt_x".to_owned()),
            ("expired", with("exp", json!(past))),
            ("another audience", with("aud", json!("https://other.example.com"))),
            ("another issuer", with("iss", json!("https://evil.example.com"))),
            ("signed by another key", LocalSigner::new().sign_claims(&unit::claims(&config))),
        ]
    }

    #[tokio::test]
    async fn revoking_what_is_not_a_valid_token_of_ours_answers_200_and_makes_no_aws_call() {
        let (clients, key) = (unit::clients(), LocalSigner::new());
        let service = unit::revocation_service(&unit::config(), &clients, &key);
        for (name, token) in not_ours(&key) {
            let response = function_handler(&service, revoke_request(&format!("token={token}"), true)).await.unwrap();
            assert_eq!(response.status(), 200, "{name}: RFC 7009 §2.2");
        }
        clients.assert_no_call("revoking tokens that are not ours");
    }

    #[tokio::test]
    async fn revoke_all_with_a_bearer_that_is_not_a_valid_token_of_ours_gets_401_and_makes_no_aws_call() {
        let (clients, key) = (unit::clients(), LocalSigner::new());
        let service = unit::revocation_service(&unit::config(), &clients, &key);
        for (name, token) in not_ours(&key) {
            let response =
                function_handler(&service, revoke_all_request(Some(&format!("Bearer {token}")))).await.unwrap();
            assert_eq!(response.status(), 401, "{name}");
            assert_eq!(json_of(&response)["error"], "invalid_token", "{name}");
        }
        clients.assert_no_call("revoke-all with bearers that are not ours");
    }

    #[tokio::test]
    async fn revoke_all_with_a_body_over_the_limit_gets_413_before_its_bearer_is_looked_at() {
        let (clients, key) = (unit::clients(), LocalSigner::new());
        let config = unit::config();
        let service = unit::revocation_service(&config, &clients, &key);
        let valid = key.sign_claims(&unit::claims(&config));
        let mut e = event("revoke-all.json");
        e["headers"]["authorization"] = Value::String(format!("Bearer {valid}"));
        e["body"] = Value::String("x".repeat(17 * 1024));
        let response = function_handler(&service, request_from_event(&e)).await.unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(json_of(&response)["error"], "invalid_request");
        clients.assert_no_call("revoke-all with a body over the limit");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod needs_stack {
    //! The sample events, through the handler, against the local stack (the stack tier,
    //! `make test`): telling a token of ours from another needs the key set.
    use std::sync::Arc;

    use tokenauth::platform::clock::SystemClock;
    use tokenauth_tests::{clients, config, event, json_of, request_from_event};

    use super::*;

    #[tokio::test]
    async fn sample_events_get_rfc7009_answers() {
        let config = config();
        let clients = clients().await;
        let service = RevocationService::from_config(
            &config,
            clients.dynamodb.clone(),
            clients.kms.clone(),
            Arc::new(SystemClock),
        )
        .await;
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
