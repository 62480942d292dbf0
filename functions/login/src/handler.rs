//! `POST /auth/login`.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::LoginService;

/// Hands the request to the library; every outcome (including bad input and a failed
/// dependency) is a response, so this never returns an error to the runtime.
pub async fn function_handler(service: &LoginService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::http::login(service, &event).await)
}
