//! One request through the gateway, as API Gateway handles it: pick the route; for a
//! protected route read the identity sources (any missing: 401, the authorizer is not
//! called), take a cached answer or invoke the authorizer (deny: 403, error: 500); invoke
//! the route's function with the authorizer's context; turn its answer into the response.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};

use crate::event::{gateway_answer, integration_response, Incoming};
use crate::routing;
use sam_template::{HttpApi, LambdaAuthorizer};

/// API Gateway's limit on a request payload.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How long API Gateway waits for a function.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// An HTTP API integration: at most 30 s.
    pub integration: Duration,
    /// A Lambda authorizer: 10 s.
    pub authorizer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { integration: Duration::from_secs(30), authorizer: Duration::from_secs(10) }
    }
}

pub struct Gateway {
    api: HttpApi,
    lambda: Invoker,
    /// Answers by authorizer and identity-source values, each with when it expires.
    /// Denials are cached too.
    cache: Mutex<HashMap<String, (Instant, AuthorizerAnswer)>>,
    timeouts: Timeouts,
    requests: AtomicU64,
}

/// An authorizer's simple response.
#[derive(Clone)]
struct AuthorizerAnswer {
    authorized: bool,
    context: Option<Map<String, Value>>,
}

/// Why a function gave no answer.
#[derive(Debug)]
enum InvokeError {
    /// It failed (an error result, a crash): API Gateway answers 500.
    Failed,
    /// It did not answer within the timeout.
    TimedOut,
}

/// Invokes functions through the Lambda Invoke API that `cargo lambda watch` serves.
struct Invoker {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Invoker {
    async fn invoke(&self, function: &str, event: &Value, timeout: Duration) -> Result<Bytes, InvokeError> {
        let request = Request::post(format!("{}/2015-03-31/functions/{function}/invocations", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(event.to_string())))
            .map_err(|_| InvokeError::Failed)?;
        let call = async {
            let response = self.client.request(request).await.map_err(|_| InvokeError::Failed)?;
            let failed = !response.status().is_success() || response.headers().contains_key("x-amz-function-error");
            let body = response.into_body().collect().await.map_err(|_| InvokeError::Failed)?.to_bytes();
            if failed {
                return Err(InvokeError::Failed);
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, call).await.map_err(|_| InvokeError::TimedOut)?
    }
}

/// What one request cost, for the access log and the overhead header.
#[derive(Default)]
struct Spent {
    in_functions: Duration,
    authorizer_status: Option<u16>,
    /// The authorizer's answer: `Some(true)` from the cache, `Some(false)` invoked.
    cached: Option<bool>,
}

impl Gateway {
    /// A gateway for `api` whose functions answer at `lambda_url` (`cargo lambda watch`).
    pub fn new(api: HttpApi, lambda_url: &str, timeouts: Timeouts) -> Self {
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
        Self {
            api,
            lambda: Invoker { client, base: lambda_url.trim_end_matches('/').to_owned() },
            cache: Mutex::new(HashMap::new()),
            timeouts,
            requests: AtomicU64::new(0),
        }
    }

    pub fn api(&self) -> &HttpApi {
        &self.api
    }

    /// Serves one request from `peer`. Never fails: every problem is an API Gateway answer.
    pub async fn handle(&self, request: Request<hyper::body::Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let received = SystemTime::now();
        let number = self.requests.fetch_add(1, Ordering::Relaxed);
        let request_id = format!(
            "local-{:x}-{number}",
            received.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis()
        );
        let (parts, body) = request.into_parts();
        let mut spent = Spent::default();
        let (route_key, mut response) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Err(_) => ("-".to_owned(), gateway_answer(StatusCode::PAYLOAD_TOO_LARGE)),
            Ok(body) => {
                let body = body.to_bytes();
                let path = parts.uri.path();
                match routing::select(&self.api.routes, parts.method.as_str(), path) {
                    None => ("-".to_owned(), gateway_answer(StatusCode::NOT_FOUND)),
                    Some(matched) => {
                        let route_key = matched.route.key();
                        let incoming = Incoming {
                            method: &parts.method,
                            path,
                            raw_query: parts.uri.query().unwrap_or(""),
                            headers: &parts.headers,
                            body: &body,
                            source_ip: peer.to_string(),
                            request_id: &request_id,
                            route_key: &route_key,
                            path_parameters: &matched.path_parameters,
                            time: received,
                        };
                        let response = self
                            .route(&incoming, matched.route.authorizer.as_deref(), &matched.route.function, &mut spent)
                            .await;
                        (route_key, response)
                    }
                }
            }
        };
        let overhead = started.elapsed().saturating_sub(spent.in_functions);
        let headers = response.headers_mut();
        if let Ok(id) = HeaderValue::try_from(&request_id) {
            headers.insert("apigw-requestid", id);
        }
        headers.insert(
            "x-gateway-overhead-us",
            HeaderValue::from(u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX)),
        );
        // Not an API Gateway header: lets a test see the result cache at work.
        if let Some(cached) = spent.cached {
            headers.insert("x-gateway-authorizer", HeaderValue::from_static(if cached { "cached" } else { "invoked" }));
        }
        // The template's access log fields; never a header or a body (tokens travel in both).
        println!(
            "{}",
            json!({
                "requestId": request_id,
                "ip": peer.to_string(),
                "time": received.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis().to_string(),
                "route": route_key,
                "status": response.status().as_u16(),
                "latencyMs": started.elapsed().as_millis(),
                "authorizerStatus": spent.authorizer_status,
                "authorizerCached": spent.cached.unwrap_or(false),
                "overheadUs": overhead.as_micros(),
            })
        );
        response.map(Full::new)
    }

    async fn route(
        &self,
        incoming: &Incoming<'_>,
        authorizer: Option<&str>,
        function: &str,
        spent: &mut Spent,
    ) -> Response<Bytes> {
        let context = match authorizer {
            None => None,
            Some(name) => {
                let Some(spec) = self.api.authorizers.get(name) else {
                    return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR);
                };
                match self.authorize(name, spec, incoming, spent).await {
                    Ok(context) => context,
                    Err(status) => {
                        spent.authorizer_status = Some(status.as_u16());
                        return gateway_answer(status);
                    }
                }
            }
        };
        let event = incoming.integration_event(context.as_ref());
        let began = Instant::now();
        let answer = self.lambda.invoke(function, &event, self.timeouts.integration).await;
        spent.in_functions += began.elapsed();
        match answer {
            Ok(answer) => integration_response(&answer),
            Err(InvokeError::Failed) => gateway_answer(StatusCode::INTERNAL_SERVER_ERROR),
            Err(InvokeError::TimedOut) => gateway_answer(StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// The authorizer's context for an allowed request, or the status API Gateway answers.
    async fn authorize(
        &self,
        name: &str,
        spec: &LambdaAuthorizer,
        incoming: &Incoming<'_>,
        spent: &mut Spent,
    ) -> Result<Option<Map<String, Value>>, StatusCode> {
        let identity: Option<Vec<String>> = spec.identity_sources.iter().map(|s| incoming.identity_value(s)).collect();
        let Some(identity) = identity else {
            return Err(StatusCode::UNAUTHORIZED);
        };
        let key = format!("{name}\u{0}{}", identity.join("\u{0}"));
        let now = Instant::now();
        let cached = self.cache_lookup(&key, now);
        spent.cached = Some(cached.is_some());
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let began = Instant::now();
                let invoked = self
                    .lambda
                    .invoke(&spec.function, &incoming.authorizer_event(&identity), self.timeouts.authorizer)
                    .await;
                spent.in_functions += began.elapsed();
                let answer =
                    invoked.ok().and_then(|bytes| simple_answer(&bytes)).ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
                if spec.result_ttl_secs > 0 {
                    // The TTL runs from the answer, not from the request.
                    let answered = Instant::now();
                    let until = answered + Duration::from_secs(spec.result_ttl_secs);
                    self.cache_store(key, until, answer.clone(), answered);
                }
                answer
            }
        };
        spent.authorizer_status = Some(if answer.authorized { 200 } else { 403 });
        if answer.authorized {
            Ok(answer.context)
        } else {
            Err(StatusCode::FORBIDDEN)
        }
    }

    fn cache_lookup(&self, key: &str, now: Instant) -> Option<AuthorizerAnswer> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(key).filter(|(until, _)| *until > now).map(|(_, answer)| answer.clone())
    }

    fn cache_store(&self, key: String, until: Instant, answer: AuthorizerAnswer, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= 10_000 {
            cache.retain(|_, (until, _)| *until > now);
        }
        cache.insert(key, (until, answer));
    }
}

/// Serves `gateway` on `listener` until the process ends, one task per connection.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Arc<Gateway>) -> ! {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("gateway: accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, std::convert::Infallible>(gateway.handle(request, peer.ip()).await) }
            });
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// A simple response (`{"isAuthorized": bool, "context": {...}}`); anything else is an
/// authorizer error.
fn simple_answer(bytes: &[u8]) -> Option<AuthorizerAnswer> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let authorized = value.get("isAuthorized")?.as_bool()?;
    let context = match value.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(context)) => Some(context.clone()),
        Some(_) => return None,
    };
    Some(AuthorizerAnswer { authorized, context })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_a_simple_response_is_an_answer() {
        let allow = simple_answer(br#"{"isAuthorized":true,"context":{"sub":"u"}}"#).unwrap();
        assert!(allow.authorized);
        assert_eq!(allow.context.unwrap()["sub"], "u");
        assert!(!simple_answer(br#"{"isAuthorized":false}"#).unwrap().authorized);
        for malformed in [&b"{}"[..], br#"{"isAuthorized":"yes"}"#, br#"{"isAuthorized":true,"context":1}"#, b"x"] {
            assert!(simple_answer(malformed).is_none());
        }
    }
}
