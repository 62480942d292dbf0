//! HTTP at the edge: request parsing and the one mapping from [`ApiError`] to a response.
//!
//! Bodies and errors follow RFC 6749: §5.1 token responses with `Cache-Control: no-store`,
//! §5.2 error bodies `{"error": .., "error_description": ..}`. Causes of 5xx answers are
//! logged here and never sent.

use lambda_http::http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH, PRAGMA, RETRY_AFTER, USER_AGENT,
    WWW_AUTHENTICATE,
};
use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};

use crate::error::{Allowed, ApiError};
use crate::platform::audit::RequestMeta;
use crate::rules::clients::GrantType;
use crate::rules::dpop::ProofRejection;
use crate::rules::password::MAX_PASSWORD_BYTES;
use crate::rules::token::{TokenResponse, ACCESS_TOKEN_TYPE_URI};
use crate::services::account::Presented;
use crate::services::client_auth::ClientCredentials;
use crate::services::discovery::DiscoveryService;
use crate::services::login::{LoginRequest, LoginService};
use crate::services::refresh::RefreshRequest;
use crate::services::revoke::{RevocationService, RevokeRequest};
use crate::services::token_dpop::PresentedProof;
use crate::services::token_endpoint::{
    ClientCredentialsRequest, ExchangeRequest, GrantRequest, TokenRequest, TokenService,
};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// `POST /auth/login`: parse, log in, answer. Never fails: every outcome is a response.
pub async fn login(service: &LoginService, request: &Request) -> Response<Body> {
    let outcome = match parse_login(request) {
        Ok(login) => service.login(login, &request_meta(request)).await,
        Err(e) => Err(e),
    };
    token_or_error(outcome)
}

/// The path of the token endpoint (RFC 6749 §3.2).
pub const TOKEN_PATH: &str = crate::rules::client_assertion::TOKEN_PATH;
/// The first-party app's refresh path from before the token endpoint.
pub const REFRESH_PATH: &str = "/auth/refresh";

/// `POST /auth/token` (RFC 6749 §3.2, every grant, a form) and `POST /auth/refresh` (the
/// refresh grant only, JSON or form, [`parse_refresh`]), told apart by the path; both
/// through the one [`TokenService`], so client authentication and the refresh token's
/// binding to its client hold on both.
pub async fn token(service: &TokenService, request: &Request) -> Response<Body> {
    let parsed = if request.raw_http_path().trim_end_matches('/').ends_with(REFRESH_PATH) {
        parse_refresh(request)
    } else {
        parse_token_request(request)
    };
    let outcome = match parsed {
        Ok(token_request) => service.token(token_request, &request_meta(request)).await,
        Err(e) => Err(e),
    };
    token_or_error(outcome)
}

/// A token endpoint's answer: the token response, or the error's one mapping.
fn token_or_error(outcome: Result<TokenResponse, ApiError>) -> Response<Body> {
    match outcome {
        Ok(tokens) => token_response(&tokens),
        Err(e) => error_response(&e),
    }
}

/// `POST /auth/revoke` (RFC 7009) and `POST /auth/revoke-all` (bearer token), told apart
/// by the path.
pub async fn revoke(service: &RevocationService, request: &Request) -> Response<Body> {
    let ip = request_meta(request).source_ip;
    let outcome = if request.raw_http_path().trim_end_matches('/').ends_with("/revoke-all") {
        match (request.method() == Method::POST, presented_token(request)) {
            (false, _) => Err(ApiError::MethodNotAllowed(Allowed::Post)),
            // The body is not read, but it is held to the same limit as every other.
            (true, _) if body_bytes(request).len() > MAX_BODY_BYTES => Err(ApiError::PayloadTooLarge),
            (true, Err(e)) => Err(e),
            (true, Ok(token)) => match presented_proof(request) {
                Ok(proof) => service.revoke_all(token, proof.as_ref(), ip.as_deref()).await.map(|_| ()),
                Err(_) => Err(ApiError::InvalidToken),
            },
        }
    } else {
        match parse_revoke(request) {
            Ok(revoke) => service.revoke(revoke, ip.as_deref()).await,
            Err(e) => Err(e),
        }
    };
    match outcome {
        // RFC 7009 §2.2: 200 and an empty body.
        Ok(()) => {
            let mut response = json_response(StatusCode::OK, &serde_json::json!({}));
            *response.body_mut() = Body::Empty;
            response.headers_mut().remove(CONTENT_TYPE);
            response
        }
        Err(e) => error_response(&e),
    }
}

/// `GET /.well-known/jwks.json` and `GET /.well-known/oauth-authorization-server`: the
/// document with `Cache-Control: public, max-age` and an `ETag`; 304 when the client's
/// `If-None-Match` names it; 404 for any other path.
pub async fn discovery(service: &DiscoveryService, request: &Request) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return error_response(&ApiError::MethodNotAllowed(Allowed::Get));
    }
    let path = request.raw_http_path();
    let document = if path.ends_with(crate::services::discovery::JWKS_PATH) {
        match service.jwks().await {
            Ok(document) => document,
            Err(e) => return error_response(&ApiError::Unavailable(e)),
        }
    } else if path.ends_with(crate::services::discovery::METADATA_PATH) {
        service.metadata()
    } else {
        return error_response(&ApiError::NotFound);
    };
    let not_modified =
        request.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| document.matches(v));
    let mut response = if not_modified {
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::Text(document.body));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&document.etag) {
        headers.insert(ETAG, etag);
    }
    if let Ok(cache) = HeaderValue::from_str(&service.cache_control()) {
        headers.insert(CACHE_CONTROL, cache);
    }
    response
}

/// The token of the one `Authorization` header: `Bearer` (RFC 6750 §2.1) or `DPoP`
/// (RFC 9449 §7.1), scheme case-insensitive, exactly one token of the b64token alphabet.
/// Revoke-all's and the account routes'.
pub(crate) fn presented_token(request: &Request) -> Result<Presented<'_>, ApiError> {
    let value = authorization(request)?;
    if let Some(token) = crate::edge::bearer::parse_bearer(value) {
        return Ok(Presented::Bearer(token));
    }
    if let Some(token) = crate::edge::bearer::parse_dpop(value) {
        return Ok(Presented::Dpop(token));
    }
    // Another scheme is no access token at all; ours, malformed, an invalid one.
    let scheme = value.split(' ').next().unwrap_or_default();
    let ours = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop");
    Err(if ours { ApiError::InvalidToken } else { ApiError::NoToken })
}

/// The value of the one `Authorization` header (none, several or a non-ASCII one: 401).
pub(crate) fn authorization(request: &Request) -> Result<&str, ApiError> {
    let mut values = request.headers().get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(ApiError::NoToken),
        (Some(_), Some(_)) => Err(ApiError::SeveralTokens),
        (Some(value), None) => value.to_str().map_err(|_| ApiError::InvalidToken),
    }
}

/// The client-authentication parameters of a token-endpoint or introspection body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientAuthParams<'a> {
    /// `client_id`.
    pub client_id: Option<&'a str>,
    /// `client_secret` (`client_secret_post`).
    pub client_secret: Option<&'a str>,
    /// `client_assertion_type` (RFC 7521 §4.2).
    pub client_assertion_type: Option<&'a str>,
    /// `client_assertion`.
    pub client_assertion: Option<&'a str>,
}

/// RFC 7523 §2.2: the one `client_assertion_type` accepted.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The one way a request authenticates its client (RFC 6749 §2.3): HTTP Basic, a secret in
/// the body, a JWT assertion, or none. More than one method is `invalid_request`
/// (§2.3.1: "MUST NOT use more than one authentication method"); a Basic header that does
/// not decode is `invalid_client`. A `client_id` in the body beside Basic must name the
/// same client.
pub fn client_credentials(request: &Request, params: ClientAuthParams<'_>) -> Result<ClientCredentials, ApiError> {
    let basic = basic_credentials(request)?;
    let assertion = match (params.client_assertion_type, params.client_assertion) {
        (None, None) => None,
        (Some(JWT_BEARER_ASSERTION), Some(assertion)) if !assertion.is_empty() => Some(assertion),
        (Some(JWT_BEARER_ASSERTION), _) => return Err(ApiError::InvalidRequest("client_assertion is required")),
        (Some(_), _) => return Err(ApiError::InvalidRequest("unsupported client_assertion_type")),
        (None, Some(_)) => return Err(ApiError::InvalidRequest("client_assertion_type is required")),
    };
    let methods =
        usize::from(basic.is_some()) + usize::from(params.client_secret.is_some()) + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(ApiError::InvalidRequest("use exactly one client authentication method"));
    }
    if params.client_id.is_some_and(str::is_empty) {
        return Err(ApiError::InvalidRequest("client_id must not be empty when present"));
    }
    let client_id = params.client_id.map(str::to_owned);
    Ok(match (basic, params.client_secret, assertion) {
        (Some((id, secret)), _, _) => {
            if client_id.as_ref().is_some_and(|body_id| *body_id != id) {
                return Err(ApiError::InvalidRequest("client_id differs from the authenticated client"));
            }
            ClientCredentials::SecretBasic { client_id: id, secret }
        }
        (None, Some(secret), _) => match client_id {
            Some(client_id) => ClientCredentials::SecretPost { client_id, secret: secret.to_owned() },
            None => return Err(ApiError::InvalidRequest("client_secret needs client_id")),
        },
        (None, None, Some(assertion)) => {
            ClientCredentials::PrivateKeyJwt { client_id, assertion: assertion.to_owned() }
        }
        (None, None, None) => ClientCredentials::None { client_id },
    })
}

/// `Authorization: Basic` (RFC 7617) as RFC 6749 §2.3.1 uses it: base64 of the
/// form-encoded id, `:`, the form-encoded secret. `None` without an `Authorization`
/// header; another scheme, or one that does not decode, is `invalid_client` with the
/// Basic challenge.
fn basic_credentials(request: &Request) -> Result<Option<(String, String)>, ApiError> {
    use base64::Engine as _;
    let refused = ApiError::InvalidClient { basic: true };
    let mut values = request.headers().get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest("use exactly one client authentication method"));
    }
    let value = value.to_str().map_err(|_| ApiError::InvalidClient { basic: true })?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or(ApiError::InvalidClient { basic: true })?;
    // Another scheme is refused with the Basic challenge too (RFC 6749 §5.2: a client
    // that tried the Authorization header gets 401 and WWW-Authenticate).
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refused);
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| refused)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::InvalidClient { basic: true })?;
    let (id, secret) = decoded.split_once(':').ok_or(ApiError::InvalidClient { basic: true })?;
    let form_decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (form_decode(id), form_decode(secret));
    if id.is_empty() || secret.is_empty() {
        return Err(ApiError::InvalidClient { basic: true });
    }
    Ok(Some((id, secret)))
}

/// The `DPoP` header (RFC 9449 §4.1).
pub const DPOP: &str = "dpop";

/// The `DPoP` proof of a login or token request, with what names the URL the client called
/// (the service checks it against that URL, [`crate::services::token_dpop`]). None: `None`.
/// More than one header (RFC 9449 §4.3: exactly one), or one that is not visible ASCII:
/// 400 `invalid_dpop_proof`. (An HTTP API joins repeated headers with commas into one
/// value, which no proof parses as.)
pub fn presented_proof(request: &Request) -> Result<Option<PresentedProof>, ApiError> {
    let mut values = request.headers().get_all(DPOP).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidDpopProof("exactly one DPoP proof is accepted"));
    }
    let proof = value.to_str().map_err(|_| ApiError::InvalidDpopProof(ProofRejection::Malformed.description()))?;
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(Some(PresentedProof {
        proof: proof.trim().to_owned(),
        forwarded_proto: header("x-forwarded-proto"),
        host: header(HOST.as_str()),
        path: request.uri().path().to_owned(),
        api_path: Some(request.raw_http_path()).filter(|p| !p.is_empty()).unwrap_or(request.uri().path()).to_owned(),
    }))
}

/// The caller's IP as API Gateway (REST or HTTP API) reports it, and its `User-Agent`
/// header (only ever reduced to a user-agent family, never logged).
pub fn request_meta(request: &Request) -> RequestMeta {
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    let user_agent = request.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    RequestMeta { source_ip, user_agent }
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    device_token: Option<String>,
    #[serde(default)]
    device_name: Option<String>,
}

/// Reads a login body: POST, `application/json`, at most [`MAX_BODY_BYTES`], UTF-8,
/// string fields, `username` and `password` present and non-empty, an optional
/// `device_name` as [`crate::rules::login::device_name`] allows; and its `DPoP` proof.
pub fn parse_login(request: &Request) -> Result<LoginRequest, ApiError> {
    let body: LoginBody = json_body(request, "content type must be application/json")?;
    if body.username.trim().is_empty() {
        return Err(ApiError::InvalidRequest("username must not be empty"));
    }
    if body.password.is_empty() {
        return Err(ApiError::InvalidRequest("password must not be empty"));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidRequest("password is too long"));
    }
    if body.scope.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::InvalidRequest("scope must not be empty when present"));
    }
    let device_name = body
        .device_name
        .as_deref()
        .map(crate::rules::login::device_name)
        .transpose()
        .map_err(ApiError::InvalidRequest)?;
    Ok(LoginRequest {
        username: body.username,
        password: body.password,
        scope: body.scope,
        device_token: body.device_token,
        device_name,
        dpop: presented_proof(request)?,
    })
}

/// The client-authentication members of a JSON or form body (RFC 6749 §2.3.1, RFC 7523).
#[derive(Deserialize)]
struct ClientAuthBody {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_assertion_type: Option<String>,
    #[serde(default)]
    client_assertion: Option<String>,
}

impl ClientAuthBody {
    /// The request's one client authentication method ([`client_credentials`]).
    fn credentials(&self, request: &Request) -> Result<ClientCredentials, ApiError> {
        client_credentials(
            request,
            ClientAuthParams {
                client_id: self.client_id.as_deref(),
                client_secret: self.client_secret.as_deref(),
                client_assertion_type: self.client_assertion_type.as_deref(),
                client_assertion: self.client_assertion.as_deref(),
            },
        )
    }
}

#[derive(Deserialize)]
struct RefreshBody {
    #[serde(default)]
    grant_type: Option<String>,
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(flatten)]
    client: ClientAuthBody,
}

/// Reads a `POST /auth/refresh` body, JSON or form, its `DPoP` proof and its client
/// authentication (none: the deployment's own client). A `grant_type` other than
/// `refresh_token` is `unsupported_grant_type`; in a form (the RFC 6749 shape)
/// `grant_type` is required.
pub fn parse_refresh(request: &Request) -> Result<TokenRequest, ApiError> {
    let (body, form): (RefreshBody, bool) = json_or_form_body(request)?;
    match body.grant_type.as_deref() {
        Some("refresh_token") => {}
        None if !form => {}
        None => return Err(ApiError::InvalidRequest("grant_type is required")),
        Some(_) => return Err(ApiError::UnsupportedGrantType),
    }
    let refresh_token =
        body.refresh_token.filter(|t| !t.is_empty()).ok_or(ApiError::InvalidRequest("refresh_token is required"))?;
    if body.scope.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::InvalidRequest("scope must not be empty when present"));
    }
    let client = body.client.credentials(request)?;
    let refresh = RefreshRequest { refresh_token, scope: body.scope, dpop: presented_proof(request)? };
    Ok(TokenRequest { client, grant: GrantRequest::RefreshToken(refresh) })
}

/// The parameters of an OAuth form request (the token endpoint, RFC 6749 §3.2;
/// introspection, RFC 7662 §2.1), each at most once, empty ones as if absent (§3.2: "sent
/// without a value MUST be treated as if they were omitted").
#[derive(Debug, Default)]
struct FormParams {
    values: std::collections::HashMap<String, String>,
}

impl FormParams {
    /// Reads a request's body: POST, only `application/x-www-form-urlencoded`, at most
    /// [`MAX_BODY_BYTES`], UTF-8, no parameter repeated.
    fn read(request: &Request) -> Result<Self, ApiError> {
        if request.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed(Allowed::Post));
        }
        let bytes = request.body().as_ref();
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        if !is_form_content_type(request) {
            return Err(ApiError::InvalidRequest("content type must be application/x-www-form-urlencoded"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ApiError::InvalidRequest("body is not UTF-8"))?;
        Self::parse(text)
    }

    /// The request's one client authentication method ([`client_credentials`]).
    fn client(&self, request: &Request) -> Result<ClientCredentials, ApiError> {
        client_credentials(
            request,
            ClientAuthParams {
                client_id: self.get("client_id"),
                client_secret: self.get("client_secret"),
                client_assertion_type: self.get("client_assertion_type"),
                client_assertion: self.get("client_assertion"),
            },
        )
    }

    /// Reads a form body. A repeated name, with or without a value, is `invalid_request`.
    fn parse(text: &str) -> Result<Self, ApiError> {
        let mut values = std::collections::HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
            if !seen.insert(name.clone().into_owned()) {
                return Err(ApiError::InvalidRequest("a parameter is repeated"));
            }
            if !value.is_empty() {
                values.insert(name.into_owned(), value.into_owned());
            }
        }
        Ok(Self { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    fn required(&self, name: &str, missing: &'static str) -> Result<String, ApiError> {
        self.owned(name).ok_or(ApiError::InvalidRequest(missing))
    }

    /// The target of the token: RFC 8707 `resource` (an absolute URI without a fragment)
    /// and RFC 8693 `audience`; both sent must name the same one (one target per token),
    /// else `invalid_target`.
    fn target(&self) -> Result<Option<String>, ApiError> {
        if let Some(resource) = self.get("resource") {
            let absolute = url::Url::parse(resource).is_ok_and(|url| url.fragment().is_none());
            if !absolute {
                return Err(ApiError::InvalidTarget);
            }
        }
        match (self.owned("audience"), self.owned("resource")) {
            (Some(audience), Some(resource)) if audience != resource => Err(ApiError::InvalidTarget),
            (audience, resource) => Ok(audience.or(resource)),
        }
    }
}

/// Reads a `POST /auth/token` request (RFC 6749 §3.2): POST, only
/// `application/x-www-form-urlencoded`, at most [`MAX_BODY_BYTES`], UTF-8, no parameter
/// repeated, `grant_type` one of the three this endpoint issues for (another is
/// `unsupported_grant_type`) with its parameters, and one client authentication method
/// ([`client_credentials`]). Unknown parameters are ignored.
pub fn parse_token_request(request: &Request) -> Result<TokenRequest, ApiError> {
    let params = FormParams::read(request)?;
    let grant_type = params.get("grant_type").ok_or(ApiError::InvalidRequest("grant_type is required"))?;
    let grant = match GrantType::parse(grant_type).ok_or(ApiError::UnsupportedGrantType)? {
        GrantType::RefreshToken => GrantRequest::RefreshToken(RefreshRequest {
            refresh_token: params.required("refresh_token", "refresh_token is required")?,
            scope: params.owned("scope"),
            dpop: presented_proof(request)?,
        }),
        GrantType::ClientCredentials => GrantRequest::ClientCredentials(ClientCredentialsRequest {
            scope: params.owned("scope"),
            audience: params.target()?,
            dpop: presented_proof(request)?,
        }),
        GrantType::TokenExchange => {
            let subject_token = params.required("subject_token", "subject_token is required")?;
            let subject_token_type = params.required("subject_token_type", "subject_token_type is required")?;
            if subject_token_type != ACCESS_TOKEN_TYPE_URI {
                return Err(ApiError::InvalidRequest("subject_token_type must be the access token type"));
            }
            let requested_token_type = params.owned("requested_token_type");
            if requested_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE_URI) {
                return Err(ApiError::InvalidRequest("requested_token_type must be the access token type"));
            }
            if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
                return Err(ApiError::InvalidRequest("actor_token is not supported"));
            }
            GrantRequest::TokenExchange(ExchangeRequest {
                subject_token,
                subject_token_type,
                audience: params.target()?,
                scope: params.owned("scope"),
                requested_token_type,
                dpop: presented_proof(request)?,
            })
        }
    };
    Ok(TokenRequest { client: params.client(request)?, grant })
}

#[derive(Deserialize)]
struct RevokeBody {
    token: Option<String>,
    #[serde(default)]
    token_type_hint: Option<String>,
    #[serde(flatten)]
    client: ClientAuthBody,
}

/// Reads an RFC 7009 revocation body, JSON or form; `token` is required, and the client's
/// authentication as at the token endpoint (none: a request that names no client).
pub fn parse_revoke(request: &Request) -> Result<RevokeRequest, ApiError> {
    let (body, _): (RevokeBody, bool) = json_or_form_body(request)?;
    let token = body.token.filter(|t| !t.is_empty()).ok_or(ApiError::InvalidRequest("token is required"))?;
    let client = body.client.credentials(request)?;
    Ok(RevokeRequest { token, token_type_hint: body.token_type_hint, client, dpop: presented_proof(request)? })
}

/// `POST /auth/introspect` (RFC 7662): 200 with the answer, `{"active": false}` for any
/// token that is not live or not the caller's to see; `invalid_client` for a caller that
/// is not an authenticated confidential client. Never cached.
pub async fn introspect(
    service: &crate::services::introspection::IntrospectionService,
    request: &Request,
) -> Response<Body> {
    let outcome = match parse_introspect(request) {
        Ok(introspection) => service.introspect(introspection).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(e) => error_response(&e),
    }
}

/// Reads an RFC 7662 §2.1 request: a form (only: the RFC's one encoding) read as the token
/// endpoint's is (`FormParams`), `token` required, and the client's one authentication
/// method ([`client_credentials`]).
pub fn parse_introspect(request: &Request) -> Result<crate::services::introspection::IntrospectionRequest, ApiError> {
    let params = FormParams::read(request)?;
    let client = params.client(request)?;
    let token = params.required("token", "token is required")?;
    Ok(crate::services::introspection::IntrospectionRequest {
        client,
        token,
        token_type_hint: params.owned("token_type_hint"),
    })
}

/// A JSON or `application/x-www-form-urlencoded` body, and whether it was a form.
fn json_or_form_body<T: for<'de> Deserialize<'de>>(request: &Request) -> Result<(T, bool), ApiError> {
    if !is_form_content_type(request) {
        let wrong_type = "content type must be application/json or application/x-www-form-urlencoded";
        return json_body(request, wrong_type).map(|body| (body, false));
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(Allowed::Post));
    }
    let bytes = request.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::InvalidRequest("body is not UTF-8"))?;
    // Read as the token endpoint reads its form (RFC 6749 §3.2): no parameter repeated,
    // known or not, and one sent without a value as if omitted.
    let params = FormParams::parse(text)?;
    let object = params.values.into_iter().map(|(name, value)| (name, serde_json::Value::String(value))).collect();
    serde_json::from_value(serde_json::Value::Object(object))
        .map(|body| (body, true))
        .map_err(|_| ApiError::InvalidRequest("form body is malformed"))
}

/// The request's body as bytes.
fn body_bytes(request: &Request) -> &[u8] {
    request.body().as_ref()
}

/// Whether the body is `application/x-www-form-urlencoded` (parameters after `;` aside).
fn is_form_content_type(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// A JSON body; `wrong_type` is what a client sending another content type is told.
fn json_body<T: for<'de> Deserialize<'de>>(request: &Request, wrong_type: &'static str) -> Result<T, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(Allowed::Post));
    }
    json_object(request, wrong_type)
}

/// Reads a body that must be one JSON object (`application/json`, at most
/// [`MAX_BODY_BYTES`], UTF-8), whatever the method.
pub(crate) fn json_object<T: for<'de> Deserialize<'de>>(
    request: &Request,
    wrong_type: &'static str,
) -> Result<T, ApiError> {
    let bytes = request.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if !is_json_content_type(request.headers().get(CONTENT_TYPE)) {
        return Err(ApiError::InvalidRequest(wrong_type));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::InvalidRequest("body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::InvalidRequest("body is empty"));
    }
    // serde would also build a struct from a JSON array; only an object is a valid body.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::InvalidRequest("body must be a JSON object"));
    }
    serde_json::from_str(text).map_err(|e| {
        ApiError::InvalidRequest(match e.classify() {
            serde_json::error::Category::Data => "body has a missing field or a field of the wrong type",
            _ => "body is not valid JSON",
        })
    })
}

/// `application/json`, optionally with `charset=utf-8`; case-insensitive.
fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json")
        && parts.all(|p| {
            let p = p.trim();
            p.is_empty() || p.eq_ignore_ascii_case("charset=utf-8") || p.eq_ignore_ascii_case("charset=\"utf-8\"")
        })
}

/// 200 with an RFC 6749 §5.1 body; never cached.
pub fn token_response(tokens: &TokenResponse) -> Response<Body> {
    json_response(StatusCode::OK, tokens)
}

/// `Retry-After` of a 503 for a failed or silent dependency: a blip is usually over by then.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// `Retry-After` of a 503 for a throttled dependency (KMS or DynamoDB over its quota): drawn
/// uniformly from this range, so that the clients refused in one second come back spread
/// over several instead of together into the same quota (`docs/reliability.md`).
pub const THROTTLED_RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = 2..=8;

/// A draw from [`THROTTLED_RETRY_AFTER_SECS`].
fn throttled_retry_after() -> u64 {
    let (low, high) = (*THROTTLED_RETRY_AFTER_SECS.start(), *THROTTLED_RETRY_AFTER_SECS.end());
    let draw = u64::from(u16::from_le_bytes(crate::rules::token::random_bytes::<2>()));
    low + draw % (high - low + 1)
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'static str>,
}

/// The one mapping from [`ApiError`] to HTTP: status, RFC 6749 §5.2 body, headers.
pub fn error_response(error: &ApiError) -> Response<Body> {
    let (status, error_code, description) = match error {
        ApiError::InvalidRequest(why) => (StatusCode::BAD_REQUEST, "invalid_request", Some(*why)),
        ApiError::MethodNotAllowed(Allowed::Post) => {
            (StatusCode::METHOD_NOT_ALLOWED, "invalid_request", Some("use POST"))
        }
        ApiError::MethodNotAllowed(Allowed::Get) => {
            (StatusCode::METHOD_NOT_ALLOWED, "invalid_request", Some("use GET"))
        }
        ApiError::MethodNotAllowed(Allowed::Delete) => {
            (StatusCode::METHOD_NOT_ALLOWED, "invalid_request", Some("use DELETE"))
        }
        ApiError::MethodNotAllowed(Allowed::GetOrDelete) => {
            (StatusCode::METHOD_NOT_ALLOWED, "invalid_request", Some("use GET or DELETE"))
        }
        ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", Some("request body too large")),
        ApiError::InvalidGrant => (StatusCode::UNAUTHORIZED, "invalid_grant", None),
        ApiError::InvalidScope => (StatusCode::BAD_REQUEST, "invalid_scope", None),
        ApiError::InvalidDpopProof(why) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof", Some(*why)),
        ApiError::UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported_grant_type", None),
        ApiError::InvalidClient { .. } => (StatusCode::UNAUTHORIZED, "invalid_client", None),
        ApiError::UnauthorizedClient => {
            (StatusCode::BAD_REQUEST, "unauthorized_client", Some("the client may not use this grant"))
        }
        ApiError::NotTheClientsToken => {
            (StatusCode::BAD_REQUEST, "unauthorized_client", Some("the token was not issued to this client"))
        }
        ApiError::InvalidTarget => {
            (StatusCode::BAD_REQUEST, "invalid_target", Some("the client may not ask tokens for this audience"))
        }
        ApiError::WrongPassword => {
            (StatusCode::UNAUTHORIZED, "invalid_grant", Some("the password is not the account's"))
        }
        ApiError::InvalidToken | ApiError::InvalidDpopToken => (StatusCode::UNAUTHORIZED, "invalid_token", None),
        ApiError::NoToken => (StatusCode::UNAUTHORIZED, "invalid_token", Some("an access token is required")),
        ApiError::SeveralTokens => {
            (StatusCode::BAD_REQUEST, "invalid_request", Some("exactly one Authorization header is accepted"))
        }
        ApiError::NotFound => (StatusCode::NOT_FOUND, "invalid_request", Some("no such resource")),
        ApiError::Throttled { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable", Some("too many attempts; retry later"))
        }
        ApiError::Unavailable(cause) => {
            tracing::error!(cause = %cause, "dependency failure; answering 503");
            crate::platform::metrics::count("http", "DependencyFailures", cause.kind());
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", Some("the service is temporarily unavailable"))
        }
    };
    let mut response = json_response(status, &ErrorBody { error: error_code, error_description: description });
    let retry_after = match error {
        ApiError::Throttled { retry_after } => Some(retry_after.as_secs().max(1)),
        ApiError::Unavailable(cause) if cause.is_throttling() => Some(throttled_retry_after()),
        ApiError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
        _ => None,
    };
    if let Some(secs) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if let ApiError::MethodNotAllowed(allowed) = error {
        let allow = match allowed {
            Allowed::Post => "POST",
            Allowed::Get => "GET, HEAD",
            Allowed::Delete => "DELETE",
            Allowed::GetOrDelete => "GET, HEAD, DELETE",
        };
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    }
    if matches!(error, ApiError::InvalidClient { basic: true }) {
        // RFC 6749 §5.2: the scheme the client tried.
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="token""#));
    }
    if matches!(error, ApiError::InvalidToken) {
        // RFC 6750 §3.
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
    }
    if matches!(error, ApiError::InvalidDpopToken) {
        // RFC 9449 §7.1: the DPoP scheme's challenge, with the proof algorithms we take.
        let challenge = r#"DPoP error="invalid_token", algs="ES256""#;
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if matches!(error, ApiError::NoToken) {
        // RFC 6750 §3.1: no token at all, the challenge without an error code.
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    // Our response types serialise infallibly (strings and integers only).
    let json = serde_json::to_string(body).unwrap_or_else(|_| r#"{"error":"server_error"}"#.to_owned());
    let mut response = Response::new(Body::Text(json));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;

    fn post(content_type: Option<&str>, body: impl Into<Body>) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/auth/login");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(body.into()).expect("request")
    }

    fn invalid_request(request: &Request) -> &'static str {
        match parse_login(request) {
            Err(ApiError::InvalidRequest(why)) => why,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn accepts_json_with_optional_scope_and_charset() {
        let login = parse_login(&post(
            Some("Application/JSON; charset=UTF-8"),
            r#"{"username":"a","password":"p","scope":"read"}"#,
        ))
        .expect("valid");
        assert_eq!(login.username, "a");
        assert_eq!(login.scope.as_deref(), Some("read"));
        let login = parse_login(&post(Some("application/json"), r#"{"username":"a","password":"p"}"#)).expect("valid");
        assert_eq!(login.scope, None);
    }

    #[test]
    fn refuses_each_kind_of_bad_input_with_invalid_request() {
        let json = Some("application/json");
        invalid_request(&post(Some("text/plain"), r#"{"username":"a","password":"p"}"#));
        invalid_request(&post(None, r#"{"username":"a","password":"p"}"#));
        invalid_request(&post(json, "{"));
        invalid_request(&post(json, r#"["a","p"]"#));
        invalid_request(&post(json, ""));
        invalid_request(&post(json, r#"{"username":"a"}"#));
        invalid_request(&post(json, r#"{"username":"","password":"p"}"#));
        invalid_request(&post(json, r#"{"username":"a","password":""}"#));
        invalid_request(&post(json, r#"{"username":1,"password":"p"}"#));
        invalid_request(&post(json, r#"{"username":"a","password":["p"]}"#));
        invalid_request(&post(json, r#"{"username":"a","password":"p","scope":""}"#));
        invalid_request(&post(json, r#"{"username":"a","password":"p","scope":7}"#));
        invalid_request(&post(json, r#"{"username":"a","username":"b","password":"p"}"#));
        invalid_request(&post(json, Body::Binary(vec![b'{', 0xff, 0xfe, b'}'])));
    }

    #[test]
    fn refuses_oversized_bodies_with_413() {
        let body = format!(r#"{{"username":"a","password":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        let err = parse_login(&post(Some("application/json"), body)).expect_err("too large");
        assert!(matches!(err, ApiError::PayloadTooLarge));
        assert_eq!(error_response(&err).status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn error_bodies_are_rfc6749_and_uncacheable() {
        let response = error_response(&ApiError::InvalidGrant);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.body().as_ref(), br#"{"error":"invalid_grant"}"#);
        let throttled = error_response(&ApiError::Throttled { retry_after: std::time::Duration::from_secs(42) });
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.headers()["retry-after"], "42");
    }

    #[test]
    fn a_dpop_proof_is_read_with_the_url_the_client_called_and_two_are_refused() {
        let request = |proofs: &[&str]| {
            let mut builder = http::Request::builder()
                .method("POST")
                .uri("/auth/refresh")
                .header("host", "api.example.test")
                .header("x-forwarded-proto", "https");
            for proof in proofs {
                builder = builder.header("DPoP", *proof);
            }
            builder.body(Body::Empty).expect("request")
        };
        assert!(presented_proof(&request(&[])).expect("no proof is fine").is_none());
        let one = presented_proof(&request(&["a.b.c"])).expect("one proof").expect("present");
        assert_eq!(one.proof, "a.b.c");
        assert_eq!((one.host.as_deref(), one.forwarded_proto.as_deref()), (Some("api.example.test"), Some("https")));
        assert_eq!((one.path.as_str(), one.api_path.as_str()), ("/auth/refresh", "/auth/refresh"));
        let two = presented_proof(&request(&["a.b.c", "d.e.f"])).expect_err("two proofs");
        assert!(matches!(two, ApiError::InvalidDpopProof(_)), "{two:?}");
        let response = error_response(&two);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(
            response.body().as_ref(),
            br#"{"error":"invalid_dpop_proof","error_description":"exactly one DPoP proof is accepted"}"#
        );
    }

    /// A request to `path` with `body` of `content_type`, and extra headers.
    fn token_post(path: &str, content_type: Option<&str>, body: impl Into<Body>, headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().method("POST").uri(path);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body.into()).expect("request")
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn token_form(body: &str) -> Request {
        token_post("/auth/token", FORM, body.to_owned(), &[])
    }

    fn basic(id: &str, secret: &str) -> String {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    }

    const EXCHANGE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
                            &subject_token=a.b.c\
                            &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";

    #[test]
    fn reads_each_grant_with_its_parameters_and_ignores_unknown_ones() {
        let refresh = parse_token_request(&token_form(
            "grant_type=refresh_token&refresh_token=tkrt_x&scope=read+write&client_id=first-party&extension=1",
        ))
        .expect("refresh");
        match refresh.grant {
            GrantRequest::RefreshToken(r) => {
                assert_eq!((r.refresh_token.as_str(), r.scope.as_deref()), ("tkrt_x", Some("read write")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(refresh.client, ClientCredentials::None { client_id: Some("first-party".into()) });

        let cc = parse_token_request(&token_post(
            "/auth/token",
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            "grant_type=client_credentials&scope=read&resource=https%3A%2F%2Fapi.example.com",
            &[("authorization", &basic("billing", "tkcs_s"))],
        ))
        .expect("client credentials");
        match cc.grant {
            GrantRequest::ClientCredentials(c) => {
                assert_eq!(c.scope.as_deref(), Some("read"));
                assert_eq!(c.audience.as_deref(), Some("https://api.example.com"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cc.client, ClientCredentials::SecretBasic { client_id: "billing".into(), secret: "tkcs_s".into() });

        let exchange = parse_token_request(&token_form(&format!(
            "{EXCHANGE}&audience=https%3A%2F%2Fc.example.com&resource=https%3A%2F%2Fc.example.com\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &client_id=svc-b&client_secret=tkcs_b"
        )))
        .expect("exchange");
        match exchange.grant {
            GrantRequest::TokenExchange(e) => {
                assert_eq!(e.subject_token, "a.b.c");
                assert_eq!(e.subject_token_type, ACCESS_TOKEN_TYPE_URI);
                assert_eq!(e.audience.as_deref(), Some("https://c.example.com"));
                assert_eq!(e.requested_token_type.as_deref(), Some(ACCESS_TOKEN_TYPE_URI));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            exchange.client,
            ClientCredentials::SecretPost { client_id: "svc-b".into(), secret: "tkcs_b".into() }
        );

        let assertion = parse_token_request(&token_form(&format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion=h.p.s",
            JWT_BEARER_ASSERTION.replace(':', "%3A")
        )))
        .expect("private_key_jwt");
        assert_eq!(assertion.client, ClientCredentials::PrivateKeyJwt { client_id: None, assertion: "h.p.s".into() });
    }

    #[test]
    fn empty_parameters_count_as_absent() {
        // RFC 6749 §3.2: a parameter without a value is as if omitted.
        let request = parse_token_request(&token_form("grant_type=refresh_token&refresh_token=t&scope=&client_id="))
            .expect("empty scope and client_id are absent");
        assert_eq!(request.client, ClientCredentials::None { client_id: None });
        match request.grant {
            GrantRequest::RefreshToken(r) => assert_eq!(r.scope, None),
            other => panic!("{other:?}"),
        }
    }

    /// The corpus: every input refused before any I/O, with its status and RFC 6749 §5.2 code.
    #[test]
    fn the_token_endpoint_corpus_answers_rfc6749_errors_and_never_a_5xx() {
        let both = basic("billing", "tkcs_s");
        let cases: Vec<(&str, Request, u16, &str)> = vec![
            ("no grant_type", token_form("refresh_token=t"), 400, "invalid_request"),
            ("empty grant_type", token_form("grant_type=&refresh_token=t"), 400, "invalid_request"),
            ("empty body", token_form(""), 400, "invalid_request"),
            ("unknown grant", token_form("grant_type=password&username=a&password=b"), 400, "unsupported_grant_type"),
            ("authorization code", token_form("grant_type=authorization_code&code=x"), 400, "unsupported_grant_type"),
            ("grant in another case", token_form("grant_type=Client_Credentials"), 400, "unsupported_grant_type"),
            ("repeated grant_type", token_form("grant_type=client_credentials&grant_type=client_credentials"), 400, "invalid_request"),
            ("repeated refresh_token", token_form("grant_type=refresh_token&refresh_token=a&refresh_token=a"), 400, "invalid_request"),
            ("repeated empty scope", token_form("grant_type=client_credentials&scope=&scope="), 400, "invalid_request"),
            ("repeated resource", token_form("grant_type=client_credentials&resource=https://a&resource=https://b"), 400, "invalid_request"),
            ("repeated client_id", token_form("grant_type=refresh_token&refresh_token=t&client_id=a&client_id=a"), 400, "invalid_request"),
            ("missing refresh_token", token_form("grant_type=refresh_token"), 400, "invalid_request"),
            ("empty refresh_token", token_form("grant_type=refresh_token&refresh_token="), 400, "invalid_request"),
            ("missing subject_token", token_form("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"), 400, "invalid_request"),
            ("missing subject_token_type", token_form("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c"), 400, "invalid_request"),
            ("a refresh token as subject", token_form(&EXCHANGE.replace("access_token", "refresh_token")), 400, "invalid_request"),
            ("an id_token requested", token_form(&format!("{EXCHANGE}&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token")), 400, "invalid_request"),
            ("an actor token", token_form(&format!("{EXCHANGE}&actor_token=x.y.z&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token")), 400, "invalid_request"),
            ("audience and resource disagree", token_form("grant_type=client_credentials&audience=https://a.example&resource=https://b.example"), 400, "invalid_target"),
            ("a relative resource", token_form("grant_type=client_credentials&resource=api"), 400, "invalid_target"),
            ("a resource with a fragment", token_form("grant_type=client_credentials&resource=https://a.example/#x"), 400, "invalid_target"),
            ("Basic and client_secret", token_post("/auth/token", FORM, "grant_type=client_credentials&client_id=billing&client_secret=tkcs_s", &[("authorization", &both)]), 400, "invalid_request"),
            ("Basic and an assertion", token_post("/auth/token", FORM, format!("grant_type=client_credentials&client_assertion_type={JWT_BEARER_ASSERTION}&client_assertion=a.b.c"), &[("authorization", &both)]), 400, "invalid_request"),
            ("client_secret and an assertion", token_form(&format!("grant_type=client_credentials&client_id=b&client_secret=s&client_assertion_type={JWT_BEARER_ASSERTION}&client_assertion=a.b.c")), 400, "invalid_request"),
            ("Basic naming another client_id", token_post("/auth/token", FORM, "grant_type=client_credentials&client_id=other", &[("authorization", &both)]), 400, "invalid_request"),
            ("client_secret without client_id", token_form("grant_type=client_credentials&client_secret=tkcs_s"), 400, "invalid_request"),
            ("an assertion of another type", token_form("grant_type=client_credentials&client_assertion_type=urn%3Asaml&client_assertion=x"), 400, "invalid_request"),
            ("an assertion without its type", token_form("grant_type=client_credentials&client_assertion=a.b.c"), 400, "invalid_request"),
            ("Basic not base64", token_post("/auth/token", FORM, "grant_type=client_credentials", &[("authorization", "Basic ***")]), 401, "invalid_client"),
            ("Basic without a colon", token_post("/auth/token", FORM, "grant_type=client_credentials", &[("authorization", "Basic YmlsbGluZw==")]), 401, "invalid_client"),
            ("Basic with an empty secret", token_post("/auth/token", FORM, "grant_type=client_credentials", &[("authorization", &basic("billing", ""))]), 401, "invalid_client"),
            ("Basic without credentials", token_post("/auth/token", FORM, "grant_type=client_credentials", &[("authorization", "Basic")]), 401, "invalid_client"),
            ("Bearer instead of Basic", token_post("/auth/token", FORM, "grant_type=client_credentials", &[("authorization", "Bearer a.b.c")]), 401, "invalid_client"),
            ("two Authorization headers", token_post("/auth/token", FORM, "grant_type=client_credentials", &[("authorization", &both), ("authorization", &both)]), 400, "invalid_request"),
            ("JSON", token_post("/auth/token", Some("application/json"), r#"{"grant_type":"client_credentials"}"#, &[]), 400, "invalid_request"),
            ("no content type", token_post("/auth/token", None, "grant_type=client_credentials", &[]), 400, "invalid_request"),
            ("text/plain", token_post("/auth/token", Some("text/plain"), "grant_type=client_credentials", &[]), 400, "invalid_request"),
            ("multipart", token_post("/auth/token", Some("multipart/form-data; boundary=x"), "grant_type=client_credentials", &[]), 400, "invalid_request"),
            ("not UTF-8", token_post("/auth/token", FORM, Body::Binary(b"grant_type=client_credentials&scope=\xff\xfe".to_vec()), &[]), 400, "invalid_request"),
            ("oversized", token_form(&format!("grant_type=client_credentials&scope={}", "a".repeat(MAX_BODY_BYTES))), 413, "invalid_request"),
            ("two DPoP proofs", token_post("/auth/token", FORM, "grant_type=refresh_token&refresh_token=t", &[("dpop", "a.b.c"), ("dpop", "d.e.f")]), 400, "invalid_dpop_proof"),
        ];
        for (name, request, status, code) in cases {
            let error = parse_token_request(&request).expect_err(name);
            let response = error_response(&error);
            assert_eq!(response.status().as_u16(), status, "{name}: {error:?}");
            let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect(name);
            assert_eq!(body["error"], code, "{name}");
            assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
            // RFC 6749 §5.2: every 401 here answers a client that tried the Authorization
            // header, whatever its scheme, and carries the challenge; no other answer does.
            let challenge = response.headers().get("www-authenticate");
            assert_eq!(challenge.is_some(), status == 401, "{name}: {challenge:?}");
            if let Some(challenge) = challenge {
                assert_eq!(challenge, r#"Basic realm="token""#, "{name}");
            }
        }
        let get = http::Request::builder().method("GET").uri("/auth/token").body(Body::Empty).expect("request");
        let response = error_response(&parse_token_request(&get).expect_err("GET"));
        assert_eq!(
            (response.status().as_u16(), &response.headers()["allow"]),
            (405, &HeaderValue::from_static("POST"))
        );
    }

    #[test]
    fn the_refresh_path_keeps_json_and_an_optional_grant_type_and_names_no_client_by_default() {
        let json =
            parse_refresh(&token_post("/auth/refresh", Some("application/json"), r#"{"refresh_token":"tkrt_x"}"#, &[]))
                .expect("JSON without grant_type");
        assert_eq!(json.client, ClientCredentials::None { client_id: None });
        assert!(matches!(json.grant, GrantRequest::RefreshToken(ref r) if r.refresh_token == "tkrt_x"));
        let named = parse_refresh(&token_post(
            "/auth/refresh",
            FORM,
            "grant_type=refresh_token&refresh_token=tkrt_x&client_id=mobile",
            &[],
        ))
        .expect("form with a client_id");
        assert_eq!(named.client, ClientCredentials::None { client_id: Some("mobile".into()) });
        let other_grant = token_post("/auth/refresh", FORM, "grant_type=client_credentials", &[]);
        assert!(matches!(parse_refresh(&other_grant), Err(ApiError::UnsupportedGrantType)));
    }

    #[test]
    fn the_refresh_and_revoke_forms_are_read_as_the_token_endpoints_is() {
        // RFC 6749 §3.2: a parameter sent without a value is as if omitted...
        for body in [
            "grant_type=refresh_token&refresh_token=tkrt_x&scope=&client_id=",
            "grant_type=refresh_token&refresh_token=tkrt_x&scope",
        ] {
            let parsed = parse_refresh(&token_post("/auth/refresh", FORM, body, &[])).expect(body);
            assert_eq!(parsed.client, ClientCredentials::None { client_id: None }, "{body}");
            assert!(matches!(parsed.grant, GrantRequest::RefreshToken(ref r) if r.scope.is_none()), "{body}");
        }
        // ...and none may be repeated, known or not.
        for body in [
            "grant_type=refresh_token&refresh_token=tkrt_x&foo=1&foo=2",
            "grant_type=refresh_token&refresh_token=tkrt_x&scope=a&scope=a",
        ] {
            let refused = parse_refresh(&token_post("/auth/refresh", FORM, body, &[]));
            assert!(matches!(refused, Err(ApiError::InvalidRequest("a parameter is repeated"))), "{body}: {refused:?}");
        }
        let revoke = |body: &str| parse_revoke(&token_post("/auth/revoke", FORM, body, &[]));
        assert!(matches!(revoke("token=t&token_type_hint=").map(|r| r.token_type_hint), Ok(None)));
        assert!(matches!(revoke("token=t&x=1&x=2"), Err(ApiError::InvalidRequest("a parameter is repeated"))));
        // JSON keeps its own rule: an empty scope there is a client's mistake.
        let json =
            token_post("/auth/refresh", Some("application/json"), r#"{"refresh_token":"tkrt_x","scope":""}"#, &[]);
        assert!(matches!(parse_refresh(&json), Err(ApiError::InvalidRequest(_))));
    }

    fn retry_after(response: &Response<Body>) -> u64 {
        let value = response.headers()["retry-after"].to_str().expect("an ASCII Retry-After");
        value.parse().expect("Retry-After in seconds")
    }

    #[test]
    fn a_throttled_dependency_asks_for_a_later_spread_retry_and_a_failed_one_for_a_prompt_one() {
        use crate::error::DependencyError;
        let failed = error_response(&ApiError::Unavailable(DependencyError::Internal("x".into())));
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&failed), UNAVAILABLE_RETRY_AFTER_SECS);
        let throttled =
            || DependencyError::Throttled { service: "kms", operation: "Sign", message: "Rate exceeded".into() };
        let draws: std::collections::BTreeSet<u64> =
            (0..200).map(|_| retry_after(&error_response(&ApiError::Unavailable(throttled())))).collect();
        assert!(draws.iter().all(|s| THROTTLED_RETRY_AFTER_SECS.contains(s)), "{draws:?}");
        assert!(draws.len() > 3, "spread, not one value: {draws:?}");
        let response = error_response(&ApiError::Unavailable(throttled()));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.body().as_ref(),
            br#"{"error":"temporarily_unavailable","error_description":"the service is temporarily unavailable"}"#
        );
    }
}
