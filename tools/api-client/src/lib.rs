//! A plain HTTP client of the service's API (the local gateway), as any client on the
//! network calls it: login, the refresh-token grant and RFC 7009 revocation as forms, the
//! protected route and the account routes with a bearer token. The end-to-end tests (`tests/src/gateway.rs`) and
//! `tools/loadgen` both call through it. Loopback only: it refuses any other address.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long a call may take before it counts as unanswered.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The base URL is not `http://` on a loopback address.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not http:// on a loopback address; this client is for the local gateway only")]
pub struct NotLoopback(pub String);

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    #[error("{method} {url}: no answer within {TIMEOUT:?}")]
    TimedOut { method: String, url: String },
    #[error("{method} {url}: {cause}")]
    Failed { method: String, url: String, cause: String },
}

/// One answer: its status, headers and body (JSON where it is JSON, else `Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Answer {
    /// A string member of the JSON body.
    ///
    /// # Panics
    /// When there is none, naming the status and the body (for tests).
    pub fn str(&self, name: &str) -> &str {
        self.json[name].as_str().unwrap_or_else(|| panic!("no {name} in {}: {}", self.status, self.text))
    }
}

/// A client of the API at one base URL; clones share its connections.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    /// A client of the API at `base` (`http://127.0.0.1:3000`), which must be loopback.
    pub fn new(base: &str) -> Result<Self, NotLoopback> {
        let base = base.trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|_| NotLoopback(base.to_owned()))?;
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if uri.scheme_str() != Some("http") || !loopback {
            return Err(NotLoopback(base.to_owned()));
        }
        Ok(Self { base: base.to_owned(), client: Client::builder(TokioExecutor::new()).build_http() })
    }

    /// The URL of `path` on this API.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with `headers` and, if given, a body of a content type.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Result<Answer, NoAnswer> {
        let url = self.url(path);
        let failed = |cause: String| NoAnswer::Failed { method: method.to_owned(), url: url.clone(), cause };
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some((content_type, body)) => {
                request = request.header("content-type", content_type);
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).map_err(|e| failed(e.to_string()))?;
        let call = async {
            let response = self.client.request(request).await.map_err(|e| failed(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(|e| failed(e.to_string()))?.to_bytes();
            Ok((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| NoAnswer::TimedOut { method: method.to_owned(), url: url.clone() })??;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        })
    }

    /// `POST /auth/login` with JSON credentials.
    pub async fn login(&self, username: &str, password: &str) -> Result<Answer, NoAnswer> {
        let body = serde_json::json!({ "username": username, "password": password }).to_string();
        self.send("POST", "/auth/login", &[], Some(("application/json", body))).await
    }

    /// The RFC 6749 refresh-token grant, as a form.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Answer, NoAnswer> {
        let body = format!("grant_type=refresh_token&refresh_token={refresh_token}");
        self.send("POST", "/auth/refresh", &[], Some(("application/x-www-form-urlencoded", body))).await
    }

    /// RFC 7009 revocation, as a form.
    pub async fn revoke(&self, token: &str, hint: &str) -> Result<Answer, NoAnswer> {
        let body = format!("token={token}&token_type_hint={hint}");
        self.send("POST", "/auth/revoke", &[], Some(("application/x-www-form-urlencoded", body))).await
    }

    /// The protected demo route, with a bearer token.
    pub async fn whoami(&self, access_token: &str) -> Result<Answer, NoAnswer> {
        let bearer = format!("Bearer {access_token}");
        self.send("GET", "/api/whoami", &[("authorization", &bearer)], None).await
    }

    /// `POST /auth/password` with JSON `{"current_password","new_password"}`, as the
    /// holder of `access_token`.
    pub async fn change_password(&self, access_token: &str, current: &str, new: &str) -> Result<Answer, NoAnswer> {
        let bearer = format!("Bearer {access_token}");
        let body = serde_json::json!({ "current_password": current, "new_password": new }).to_string();
        self.send("POST", "/auth/password", &[("authorization", &bearer)], Some(("application/json", body))).await
    }

    /// `GET /auth/sessions`: the caller's live sessions.
    pub async fn sessions(&self, access_token: &str) -> Result<Answer, NoAnswer> {
        let bearer = format!("Bearer {access_token}");
        self.send("GET", "/auth/sessions", &[("authorization", &bearer)], None).await
    }

    /// `DELETE /auth/sessions/{sid}`: ends one of the caller's sessions.
    pub async fn end_session(&self, access_token: &str, sid: &str) -> Result<Answer, NoAnswer> {
        let bearer = format!("Bearer {access_token}");
        self.send("DELETE", &format!("/auth/sessions/{sid}"), &[("authorization", &bearer)], None).await
    }

    /// `DELETE /auth/sessions`: "sign out everywhere else".
    pub async fn end_other_sessions(&self, access_token: &str) -> Result<Answer, NoAnswer> {
        let bearer = format!("Bearer {access_token}");
        self.send("DELETE", "/auth/sessions", &[("authorization", &bearer)], None).await
    }

    /// `DELETE /auth/account` with JSON `{"password"}`.
    pub async fn delete_account(&self, access_token: &str, password: &str) -> Result<Answer, NoAnswer> {
        let bearer = format!("Bearer {access_token}");
        let body = serde_json::json!({ "password": password }).to_string();
        self.send("DELETE", "/auth/account", &[("authorization", &bearer)], Some(("application/json", body))).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_http_on_loopback_is_accepted() {
        for base in ["http://127.0.0.1:3000", "http://127.0.0.1:3000/", "http://localhost:9", "http://[::1]:3000"] {
            assert!(ApiClient::new(base).is_ok(), "{base}");
        }
        for base in ["http://10.0.0.1:3000", "https://127.0.0.1:3000", "http://example.com", "127.0.0.1:3000", ""] {
            assert!(ApiClient::new(base).is_err(), "{base}");
        }
        assert_eq!(
            ApiClient::new("http://127.0.0.1:3000/").unwrap().url("/auth/login"),
            "http://127.0.0.1:3000/auth/login"
        );
    }

    #[tokio::test]
    async fn a_port_nothing_listens_on_is_no_answer_not_a_status() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ApiClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        assert!(matches!(client.whoami("t").await, Err(NoAnswer::Failed { .. })));
    }
}
