//! `GET /api/whoami`: the protected route behind the authorizer in the SAM template. It
//! shows what a backend receives: the authorizer's context (`principal_type`, `sub`,
//! `scope`, `client_id`, `sid`, `jti`, `aud`, `act`; docs/authorizer.md "The context"),
//! never the token.

use lambda_http::request::RequestContext;
use lambda_http::{run, service_fn, Body, Error, Request, RequestExt, Response};

async fn whoami(event: Request) -> Result<Response<Body>, Error> {
    let context = match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().map(|a| serde_json::to_value(&a.fields).unwrap_or_default())
        }
        _ => None,
    };
    let body = serde_json::json!({ "authorizer": context });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::Text(body.to_string()))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    run(service_fn(whoami)).await
}
