//! One authorizer event in, one answer out.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::value::RawValue;
use tokenauth::edge::authorizer::{Answer, Authorizer};

/// The event stays raw JSON here: the library reads only the fields it needs from it.
/// `Unauthorized` becomes the Lambda error of that name, which API Gateway (REST) turns into
/// a 401; nothing here panics.
pub async fn function_handler(authorizer: &Authorizer, event: LambdaEvent<Box<RawValue>>) -> Result<Answer, Error> {
    authorizer.handle(event.payload.get()).await.map_err(Error::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The sample events in `events/` through the handler, with tokens that are missing,
    //! malformed, garbage or signed by no key we know: refused before any AWS call (the unit
    //! tier, `make unit`), by a warm authorizer on clients that reach nothing. Valid tokens,
    //! revocations and the key set are the stack tier's (`tests/tests/authorizer.rs`).
    use lambda_runtime::{Context, LambdaEvent};
    use serde_json::{json, Value};
    use tokenauth::rules::keys::testing::LocalSigner;
    use tokenauth_tests::{event, event_text_with, unit, PLACEHOLDER_AUTHORIZATION};

    use super::*;

    const SHAPES: [&str; 4] = [
        "authorizer-rest-token.json",
        "authorizer-rest-request.json",
        "authorizer-http-api-v1.json",
        "authorizer-http-api-v2.json",
    ];

    /// The handler's answer as the JSON API Gateway receives, or the Lambda error's text.
    async fn invoke(authorizer: &Authorizer, text: String) -> Result<Value, String> {
        let raw = RawValue::from_string(text).unwrap();
        match function_handler(authorizer, LambdaEvent::new(raw, Context::default())).await {
            Ok(answer) => Ok(serde_json::to_value(answer).unwrap()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// REST: the `Unauthorized` error (a 401); HTTP API: a deny, in the configured style.
    fn assert_refused(shape: &str, outcome: Result<Value, String>, case: &str) {
        match shape {
            "authorizer-rest-token.json" | "authorizer-rest-request.json" => {
                assert_eq!(outcome.expect_err("REST answers with the error"), "Unauthorized", "{shape}: {case}");
            }
            "authorizer-http-api-v2.json" => assert_eq!(outcome.unwrap()["isAuthorized"], false, "{shape}: {case}"),
            _ => {
                let answer = outcome.unwrap();
                let statements = answer["policyDocument"]["Statement"].as_array().unwrap();
                assert!(statements.iter().all(|s| s["Effect"] == "Deny"), "{shape}: {case}: {answer}");
            }
        }
    }

    #[tokio::test]
    async fn a_trusted_key_s_token_with_one_claim_wrong_is_refused_in_every_shape_without_an_aws_call() {
        let (clients, key, config) = (unit::clients(), LocalSigner::new(), unit::config());
        let authorizer = unit::authorizer(&config, &clients, &key);
        let now = unit::claims(&config)["iat"].as_u64().unwrap();
        for (case, claim, value) in [
            ("expired", "exp", json!(now - 3600)),
            ("issued in the future", "iat", json!(now + 3600)),
            ("another audience", "aud", json!("https://other.example.com")),
            ("another issuer", "iss", json!("https://evil.example.com")),
            ("no session", "sid", json!("")),
        ] {
            let mut claims = unit::claims(&config);
            claims[claim] = value;
            let authorization = format!("Bearer {}", key.sign_claims(&claims));
            for shape in SHAPES {
                assert_refused(shape, invoke(&authorizer, event_text_with(shape, &authorization)).await, case);
            }
        }
        clients.assert_no_call("tokens refused by the verifier");
    }

    #[tokio::test]
    async fn sample_events_are_refused_without_panicking_each_in_its_own_way() {
        let clients = unit::clients();
        let authorizer = unit::authorizer(&unit::config(), &clients, &LocalSigner::new());
        for shape in SHAPES {
            assert_refused(shape, invoke(&authorizer, event(shape).to_string()).await, "the sample event");
        }
        clients.assert_no_call("a token signed by no key we know");
    }

    #[tokio::test]
    async fn missing_malformed_and_garbage_tokens_are_refused_in_every_shape_without_an_aws_call() {
        let clients = unit::clients();
        let authorizer = unit::authorizer(&unit::config(), &clients, &LocalSigner::new());
        let placeholder_token = PLACEHOLDER_AUTHORIZATION.trim_start_matches("Bearer ");
        let headers = [
            String::new(),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            format!("Basic {placeholder_token}"),
            format!("Bearer {placeholder_token} extra"),
            format!("Bearer {placeholder_token}x"),
            "Bearer not-a-jwt".to_owned(),
            "Bearer a.b.c".to_owned(),
            "Bearer ..".to_owned(),
            format!("Bearer {}", "a".repeat(9 * 1024)),
        ];
        for shape in SHAPES {
            for header in &headers {
                let case = header.get(..40).unwrap_or(header);
                assert_refused(shape, invoke(&authorizer, event_text_with(shape, header)).await, case);
            }
            // No Authorization header (REST TOKEN: no authorizationToken) at all.
            let mut missing = event(shape);
            missing.as_object_mut().unwrap().remove("authorizationToken");
            if let Some(headers) = missing["headers"].as_object_mut() {
                headers.retain(|name, _| !name.eq_ignore_ascii_case("authorization"));
            }
            assert_refused(shape, invoke(&authorizer, missing.to_string()).await, "no header");
        }
        // Not an authorizer event at all.
        for text in [r#"{"hello":"world"}"#, "[]", r#"{"type":"TOKEN"}"#] {
            assert_eq!(invoke(&authorizer, text.to_owned()).await.unwrap_err(), "Unauthorized", "{text}");
        }
        clients.assert_no_call("a missing, malformed or garbage token");
    }
}
