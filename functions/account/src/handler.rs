//! `POST /auth/password`, `GET|DELETE /auth/sessions`, `DELETE /auth/sessions/{sid}` and
//! `DELETE /auth/account`, behind the authorizer.

use lambda_http::{Body, Error, Request, Response};
use tokenauth::AccountService;

/// Hands the request to the library; every outcome is a response.
pub async fn function_handler(service: &AccountService, event: Request) -> Result<Response<Body>, Error> {
    Ok(tokenauth::edge::account::account(service, &event).await)
}
