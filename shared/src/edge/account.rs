//! The account routes at the edge ([`crate::services::account`]): the method and path
//! pick the operation, the `Authorization` header gives the caller's token (`Bearer`, or
//! `DPoP` for a bound one), bodies are JSON objects; errors through the one mapping
//! ([`crate::edge::http::error_response`]).
//!
//! | route | success |
//! |---|---|
//! | `POST /auth/password` `{"current_password","new_password"}` | 200 `{}` |
//! | `GET /auth/sessions` | 200 `{"sessions":[..]}` |
//! | `DELETE /auth/sessions` | 204 (every other session ended) |
//! | `DELETE /auth/sessions/{sid}` | 204 |
//! | `DELETE /auth/account` `{"password"}` | 204 |

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};

use crate::edge::http::{error_response, json_object, json_response, presented_token, request_meta};
use crate::error::{Allowed, ApiError};
use crate::rules::password::MAX_PASSWORD_BYTES;
use crate::rules::sessions::SessionView;
use crate::services::account::{AccountService, PasswordChange};

/// The path of the password change.
pub const PASSWORD_PATH: &str = "/auth/password";
/// The path of the caller's sessions (and, with an id after it, one of them).
pub const SESSIONS_PATH: &str = "/auth/sessions";
/// The path of the account.
pub const ACCOUNT_PATH: &str = "/auth/account";

/// Which account operation a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    ChangePassword,
    ListSessions,
    EndOtherSessions,
    EndSession(String),
    DeleteAccount,
}

/// Every account route: parse, act, answer. Never fails: every outcome is a response.
pub async fn account(service: &AccountService, request: &Request) -> Response<Body> {
    match handle(service, request).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn handle(service: &AccountService, request: &Request) -> Result<Response<Body>, ApiError> {
    let operation = operation(request)?;
    let presented = presented_token(request)?;
    let meta = request_meta(request);
    match operation {
        Operation::ChangePassword => {
            let change = parse_password_change(request)?;
            service.change_password(presented, change, &meta).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({})))
        }
        Operation::ListSessions => {
            let sessions = service.sessions(presented).await?;
            Ok(json_response(StatusCode::OK, &SessionsBody { sessions }))
        }
        Operation::EndOtherSessions => {
            service.end_other_sessions(presented, &meta).await?;
            Ok(no_content())
        }
        Operation::EndSession(sid) => {
            service.end_session(presented, &sid, &meta).await?;
            Ok(no_content())
        }
        Operation::DeleteAccount => {
            let password = parse_account_deletion(request)?;
            service.delete_account(presented, password, &meta).await?;
            Ok(no_content())
        }
    }
}

#[derive(Serialize)]
struct SessionsBody {
    sessions: Vec<SessionView>,
}

fn no_content() -> Response<Body> {
    let mut response = json_response(StatusCode::NO_CONTENT, &serde_json::json!({}));
    *response.body_mut() = Body::Empty;
    response.headers_mut().remove(lambda_http::http::header::CONTENT_TYPE);
    response
}

/// The operation of a method and path (the path as API Gateway routed it, any stage
/// prefix before `/auth`); 405 for a known path with another method, 404 otherwise.
fn operation(request: &Request) -> Result<Operation, ApiError> {
    let raw = request.raw_http_path();
    let path = if raw.is_empty() { request.uri().path().to_owned() } else { raw.to_owned() };
    let path = path.trim_end_matches('/');
    let method = request.method();
    let allowed = |wanted: &Method, allowed: Allowed| {
        if method == wanted {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed(allowed))
        }
    };
    if path.ends_with(PASSWORD_PATH) {
        allowed(&Method::POST, Allowed::Post)?;
        return Ok(Operation::ChangePassword);
    }
    if path.ends_with(ACCOUNT_PATH) {
        allowed(&Method::DELETE, Allowed::Delete)?;
        return Ok(Operation::DeleteAccount);
    }
    if path.ends_with(SESSIONS_PATH) {
        return match *method {
            Method::GET | Method::HEAD => Ok(Operation::ListSessions),
            Method::DELETE => Ok(Operation::EndOtherSessions),
            _ => Err(ApiError::MethodNotAllowed(Allowed::GetOrDelete)),
        };
    }
    // `/auth/sessions/{sid}`: API Gateway's path parameter, else the last segment.
    if let Some((before, sid)) = path.rsplit_once('/') {
        if before.ends_with(SESSIONS_PATH) {
            allowed(&Method::DELETE, Allowed::Delete)?;
            let sid = request.path_parameters_ref().and_then(|p| p.first("sid")).unwrap_or(sid);
            return Ok(Operation::EndSession(sid.to_owned()));
        }
    }
    Err(ApiError::NotFound)
}

#[derive(Deserialize)]
struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

/// A `POST /auth/password` body: both fields present, strings, non-empty, within the
/// password bound.
fn parse_password_change(request: &Request) -> Result<PasswordChange, ApiError> {
    let body: PasswordChangeBody = json_object(request, "content type must be application/json")?;
    if body.current_password.is_empty() {
        return Err(ApiError::InvalidRequest("current_password must not be empty"));
    }
    if body.new_password.is_empty() {
        return Err(ApiError::InvalidRequest("new_password must not be empty"));
    }
    if body.current_password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidRequest("current_password is too long"));
    }
    Ok(PasswordChange { current_password: body.current_password, new_password: body.new_password })
}

#[derive(Deserialize)]
struct AccountDeletionBody {
    password: String,
}

/// A `DELETE /auth/account` body: the account's password, present and non-empty.
fn parse_account_deletion(request: &Request) -> Result<String, ApiError> {
    let body: AccountDeletionBody = json_object(request, "content type must be application/json")?;
    if body.password.is_empty() {
        return Err(ApiError::InvalidRequest("password must not be empty"));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidRequest("password is too long"));
    }
    Ok(body.password)
}

#[cfg(test)]
mod tests {
    use lambda_http::http;

    use super::*;

    fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::from(body.to_owned())).expect("request")
    }

    #[test]
    fn methods_and_paths_pick_the_operation() {
        let op = |method, path| operation(&request(method, path, None, "")).map_err(|e| format!("{e:?}"));
        let refused = |e: ApiError| Err(format!("{e:?}"));
        assert_eq!(op("POST", "/auth/password"), Ok(Operation::ChangePassword));
        assert_eq!(op("GET", "/auth/sessions"), Ok(Operation::ListSessions));
        assert_eq!(op("DELETE", "/auth/sessions/"), Ok(Operation::EndOtherSessions));
        assert_eq!(op("DELETE", "/auth/sessions/abc"), Ok(Operation::EndSession("abc".into())));
        assert_eq!(op("DELETE", "/prod/auth/account"), Ok(Operation::DeleteAccount));
        assert_eq!(op("GET", "/auth/password"), refused(ApiError::MethodNotAllowed(Allowed::Post)));
        assert_eq!(op("POST", "/auth/account"), refused(ApiError::MethodNotAllowed(Allowed::Delete)));
        assert_eq!(op("POST", "/auth/sessions"), refused(ApiError::MethodNotAllowed(Allowed::GetOrDelete)));
        assert_eq!(op("GET", "/auth/sessions/abc"), refused(ApiError::MethodNotAllowed(Allowed::Delete)));
        assert_eq!(op("GET", "/auth/elsewhere"), refused(ApiError::NotFound));
    }

    #[test]
    fn bad_bodies_are_invalid_request_and_never_echo_a_password() {
        let json = Some("application/json");
        let cases = [
            ("no body", request("POST", "/auth/password", json, "")),
            ("not JSON", request("POST", "/auth/password", json, "{")),
            ("array", request("POST", "/auth/password", json, "[]")),
            (
                "text",
                request("POST", "/auth/password", Some("text/plain"), r#"{"current_password":"a","new_password":"b"}"#),
            ),
            ("missing new", request("POST", "/auth/password", json, r#"{"current_password":"hunter2-secret"}"#)),
            ("number", request("POST", "/auth/password", json, r#"{"current_password":"x","new_password":5}"#)),
            ("empty current", request("POST", "/auth/password", json, r#"{"current_password":"","new_password":"b"}"#)),
            ("empty new", request("POST", "/auth/password", json, r#"{"current_password":"a","new_password":""}"#)),
        ];
        for (name, request) in cases {
            match parse_password_change(&request) {
                Err(ApiError::InvalidRequest(why)) => assert!(!why.contains("hunter2"), "{name}: {why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let oversized = format!(r#"{{"current_password":"{}","new_password":"b"}}"#, "x".repeat(17 * 1024));
        assert!(matches!(
            parse_password_change(&request("POST", "/auth/password", json, &oversized)),
            Err(ApiError::PayloadTooLarge)
        ));
        for body in ["", "{}", r#"{"password":""}"#, r#"{"password":1}"#] {
            let parsed = parse_account_deletion(&request("DELETE", "/auth/account", json, body));
            assert!(matches!(parsed, Err(ApiError::InvalidRequest(_))), "{body}");
        }
    }

    #[test]
    fn the_token_comes_from_one_bearer_or_dpop_header() {
        use crate::services::account::Presented;
        let with = |values: &[&str]| {
            let mut builder = http::Request::builder().method("GET").uri("/auth/sessions");
            for v in values {
                builder = builder.header("authorization", *v);
            }
            builder.body(Body::Empty).expect("request")
        };
        assert!(matches!(presented_token(&with(&["Bearer abc"])), Ok(Presented::Bearer("abc"))));
        assert!(matches!(presented_token(&with(&["DPoP abc"])), Ok(Presented::Dpop("abc"))));
        assert!(matches!(presented_token(&with(&[])), Err(ApiError::NoToken)));
        assert!(matches!(presented_token(&with(&["Basic abc"])), Err(ApiError::NoToken)));
        assert!(matches!(presented_token(&with(&["Bearer a b"])), Err(ApiError::InvalidToken)));
        assert!(matches!(presented_token(&with(&["Bearer a", "Bearer b"])), Err(ApiError::SeveralTokens)));
    }
}
