//! The gateway's authorizer wiring against a stand-in for the Lambda Invoke API (this tests
//! the gateway, not the functions: the end-to-end tests in `tests/tests/gateway.rs` run the
//! real handlers). What API Gateway does is the contract: a missing identity source is a
//! 401 without an invocation, a deny a 403, an authorizer error or malformed answer a 500;
//! answers are cached per identity-source values for the TTL; the context reaches the
//! integration in `requestContext.authorizer.lambda`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::gateway::{serve, Gateway, Timeouts};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

const TEMPLATE: &str = r#"
Parameters:
  CacheSecs: { Type: Number, Default: 1 }
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Tokens
        Authorizers:
          Tokens:
            FunctionArn: !GetAtt AuthFn.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            Identity: { Headers: [Authorization], Context: [httpMethod, path], ReauthorizeEvery: !Ref CacheSecs }
  AuthFn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: authorizer } }
  Backend:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: backend } }
    Properties:
      Events:
        Items: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: "/api/items/{id}", Method: GET } }
        Open: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /open, Method: POST, Auth: { Authorizer: NONE } } }
"#;

/// The stand-in: the authorizer answers by token; the backend echoes its event, or fails
/// for `/open` with `fail` in the body.
async fn lambda(
    request: Request<hyper::body::Incoming>,
    calls: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let event: Value = serde_json::from_slice(&request.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let (status, answer) = if path.contains("/functions/authorizer/") {
        calls.fetch_add(1, Ordering::SeqCst);
        match event["identitySource"][0].as_str().unwrap_or("") {
            "Bearer ok" => (200, json!({ "isAuthorized": true, "context": { "sub": "u1", "scope": "read" } })),
            "Bearer no" => (200, json!({ "isAuthorized": false })),
            "Bearer junk" => (200, json!({ "allow": true })),
            _ => (500, json!({ "errorType": "Boom", "errorMessage": "the authorizer failed" })),
        }
    } else if event["body"].as_str() == Some("fail") {
        (500, json!({ "errorType": "Boom", "errorMessage": "the function failed" }))
    } else {
        (
            200,
            json!({ "statusCode": 200, "headers": { "content-type": "application/json" }, "body": event.to_string() }),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

struct Setup {
    base: String,
    calls: Arc<AtomicUsize>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

async fn setup() -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let lambda_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lambda_url = format!("http://{}", lambda_listener.local_addr().unwrap());
    let counted = calls.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = lambda_listener.accept().await.unwrap();
            let calls = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| lambda(r, calls.clone()));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    let api = sam_template::Template::parse(TEMPLATE, &BTreeMap::new()).unwrap().http_api().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, Arc::new(Gateway::new(api, &lambda_url, Timeouts::default()))));
    Setup { base, calls, client: Client::builder(TokioExecutor::new()).build_http() }
}

impl Setup {
    async fn send(&self, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
        let mut request =
            Request::builder().method(method).uri(format!("{}{path}", self.base)).header("content-type", "text/plain");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response =
            self.client.request(request.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let authorizer = response.headers().get("x-gateway-authorizer").map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, authorizer, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_authorizer_is_wired_as_api_gateway_wires_it() {
    let s = setup().await;

    let (status, _, body) = s.send("GET", "/api/items/7", None, "").await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Unauthorized")));
    assert_eq!(s.calls.load(Ordering::SeqCst), 0, "no identity source: the authorizer is not invoked");

    let (status, authorizer, event) = s.send("GET", "/api/items/7", Some("ok"), "").await;
    assert_eq!((status, authorizer.as_deref()), (200, Some("invoked")));
    assert_eq!(event["requestContext"]["authorizer"]["lambda"], json!({ "sub": "u1", "scope": "read" }));
    assert_eq!(event["routeKey"], "GET /api/items/{id}");
    assert_eq!(event["pathParameters"]["id"], "7");
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");

    let (status, authorizer, _) = s.send("GET", "/api/items/7", Some("ok"), "").await;
    assert_eq!((status, authorizer.as_deref()), (200, Some("cached")));
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    // The path is an identity source: another item is another cache entry.
    let (_, authorizer, _) = s.send("GET", "/api/items/8", Some("ok"), "").await;
    assert_eq!(authorizer.as_deref(), Some("invoked"));

    let (status, _, body) = s.send("GET", "/api/items/7", Some("no"), "").await;
    assert_eq!((status, body["message"].as_str()), (403, Some("Forbidden")));
    let (status, authorizer, _) = s.send("GET", "/api/items/7", Some("no"), "").await;
    assert_eq!((status, authorizer.as_deref()), (403, Some("cached")), "a denial is cached too");

    for token in ["boom", "junk"] {
        let (status, _, body) = s.send("GET", "/api/items/7", Some(token), "").await;
        assert_eq!((status, body["message"].as_str()), (500, Some("Internal Server Error")), "{token}");
    }

    // After the TTL (1 s) the authorizer is asked again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = s.calls.load(Ordering::SeqCst);
    let (status, authorizer, _) = s.send("GET", "/api/items/7", Some("ok"), "").await;
    assert_eq!((status, authorizer.as_deref()), (200, Some("invoked")));
    assert_eq!(s.calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn open_routes_skip_the_authorizer_and_failures_are_api_gateway_answers() {
    let s = setup().await;
    let (status, authorizer, event) = s.send("POST", "/open", None, "hello").await;
    assert_eq!((status, authorizer), (200, None));
    assert!(event["requestContext"].get("authorizer").is_none());
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);

    let (status, _, body) = s.send("POST", "/open", None, "fail").await;
    assert_eq!((status, body["message"].as_str()), (500, Some("Internal Server Error")));
    let (status, _, body) = s.send("GET", "/open", None, "").await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
}
