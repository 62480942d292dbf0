//! A plain HTTP client for the local gateway that `with-stack.sh --gateway` starts: the
//! end-to-end tests talk to it as any client on the network would.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The gateway's address, from `with-stack.sh --gateway`.
pub fn gateway_url() -> String {
    std::env::var("GATEWAY_URL").expect(
        "GATEWAY_URL is not set: run the end-to-end tests through `make test` (infra/local/with-stack.sh --gateway)",
    )
}

/// The `NAME=VALUE,...` assignments of a list variable of `with-stack.sh --gateway`.
fn assignments(variable: &str) -> Vec<(String, String)> {
    let list = std::env::var(variable).unwrap_or_default();
    list.split(',').filter_map(|a| a.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A setting given to the functions behind the gateway (`GATEWAY_FUNCTION_ENV`), or to
/// the gateway as a template parameter (`GATEWAY_PARAMETERS`).
pub fn gateway_setting(name: &str) -> Option<String> {
    ["GATEWAY_FUNCTION_ENV", "GATEWAY_PARAMETERS"]
        .iter()
        .flat_map(|variable| assignments(variable))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The configuration the functions behind the gateway run with: the stack's, and
/// `GATEWAY_FUNCTION_ENV` over it.
pub fn gateway_function_config() -> tokenauth::Config {
    let settings = assignments("GATEWAY_FUNCTION_ENV");
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::config_with(&borrowed)
}

/// The revocation lag the gateway's setup states: the authorizer's poll plus the cache.
pub fn stated_revocation_lag() -> Duration {
    let secs =
        |name| gateway_setting(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{name} unset"));
    Duration::from_secs(secs("REVOCATION_POLL_SECS") + secs("AuthorizerCacheSecs"))
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
    pub fn str(&self, name: &str) -> &str {
        self.json[name].as_str().unwrap_or_else(|| panic!("no {name} in {}: {}", self.status, self.text))
    }
}

#[derive(Clone)]
pub struct GatewayClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for GatewayClient {
    fn default() -> Self {
        Self::new(&gateway_url())
    }
}

impl GatewayClient {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), client: Client::builder(TokioExecutor::new()).build_http() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(self.url(path));
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
        let request = request.body(Full::new(body)).expect("a valid request");
        let response = tokio::time::timeout(Duration::from_secs(60), self.client.request(request))
            .await
            .expect("the gateway answers within 60 s")
            .expect("the gateway is reachable");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("a whole body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> Answer {
        let body = serde_json::json!({ "username": username, "password": password }).to_string();
        self.send("POST", "/auth/login", &[], Some(("application/json", body))).await
    }

    /// The RFC 6749 refresh-token grant, as a form.
    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        let body = format!("grant_type=refresh_token&refresh_token={refresh_token}");
        self.send("POST", "/auth/refresh", &[], Some(("application/x-www-form-urlencoded", body))).await
    }

    /// RFC 7009 revocation, as a form.
    pub async fn revoke(&self, token: &str, hint: &str) -> Answer {
        let body = format!("token={token}&token_type_hint={hint}");
        self.send("POST", "/auth/revoke", &[], Some(("application/x-www-form-urlencoded", body))).await
    }

    pub async fn whoami(&self, access_token: &str) -> Answer {
        let bearer = format!("Bearer {access_token}");
        self.send("GET", "/api/whoami", &[("authorization", &bearer)], None).await
    }
}
