//! HTTP request → the HTTP API payload format 2.0 event API Gateway sends to a Lambda (the
//! `aws_lambda_events` types that `lambda_http` reads them into, serialized), and the
//! function's answer → the HTTP response API Gateway makes of it.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayV2CustomAuthorizerV2Request, ApiGatewayV2httpRequest,
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

const ACCOUNT_ID: &str = "000000000000";
const API_ID: &str = "local";
const REGION: &str = "us-east-1";

/// Members that `ApiGatewayV2httpRequest` serializes for the custom-authorizer payloads it
/// also reads (deprecated there since aws_lambda_events 1.1) and that payload 2.0 does not
/// have; `httpMethod` would even say `GET` for every request. Left out of the event.
const NOT_IN_PAYLOAD_2_0: [&str; 6] =
    ["type", "methodArn", "httpMethod", "identitySource", "authorizationToken", "resource"];

/// What a request is, as far as events go.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub source_ip: String,
    pub request_id: &'a str,
    pub route_key: &'a str,
    pub path_parameters: &'a BTreeMap<String, String>,
    pub time: SystemTime,
}

impl Incoming<'_> {
    /// Header names in lower case, repeated headers joined with commas; cookies apart.
    fn headers_and_cookies(&self) -> (HeaderMap, Vec<String>) {
        let mut headers = HeaderMap::new();
        let mut cookies = Vec::new();
        for name in self.headers.keys() {
            let values = self.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            if name == COOKIE {
                for value in values {
                    cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
                }
            } else if let Ok(joined) = HeaderValue::from_str(&values.collect::<Vec<_>>().join(",")) {
                headers.insert(name.clone(), joined);
            }
        }
        // API Gateway sets the scheme the client used, over anything the client sent: the
        // authorizer names the URL a DPoP proof must be for with it (and the Host as sent).
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        (headers, cookies)
    }

    /// Decoded query parameters, each name's values in order.
    fn query_parameters(&self) -> HashMap<String, Vec<String>> {
        let mut parameters: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in form_urlencoded::parse(self.raw_query.as_bytes()) {
            parameters.entry(name.into_owned()).or_default().push(value.into_owned());
        }
        parameters
    }

    fn request_context(&self) -> ApiGatewayV2httpRequestContext {
        let epoch = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = self.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        let user_agent = self.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or("");
        let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
        http.method = self.method.clone();
        http.path = Some(self.path.to_owned());
        http.protocol = Some("HTTP/1.1".to_owned());
        http.source_ip = Some(self.source_ip.clone());
        http.user_agent = Some(user_agent.to_owned());
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.account_id = Some(ACCOUNT_ID.to_owned());
        context.apiid = Some(API_ID.to_owned());
        context.domain_name = Some(host.to_owned());
        context.domain_prefix = Some(host.split('.').next().unwrap_or(host).to_owned());
        context.http = http;
        context.request_id = Some(self.request_id.to_owned());
        context.route_key = Some(self.route_key.to_owned());
        context.stage = Some("$default".to_owned());
        context.time = Some(clf_time(self.time));
        context.time_epoch = i64::try_from(epoch.as_millis()).unwrap_or(i64::MAX);
        context
    }

    /// The event for the route's function; `authorizer` is the Lambda authorizer's context.
    pub fn integration_event(&self, authorizer: Option<&Map<String, Value>>) -> Value {
        let (headers, cookies) = self.headers_and_cookies();
        let mut event = ApiGatewayV2httpRequest::default();
        event.version = Some("2.0".to_owned());
        event.route_key = Some(self.route_key.to_owned());
        event.raw_path = Some(self.path.to_owned());
        event.raw_query_string = Some(self.raw_query.to_owned());
        event.cookies = (!cookies.is_empty()).then_some(cookies);
        event.headers = headers;
        event.query_string_parameters = QueryMap::from(self.query_parameters());
        event.path_parameters = self.path_parameters.clone().into_iter().collect();
        event.request_context = self.request_context();
        if let Some(context) = authorizer {
            let mut lambda = ApiGatewayRequestAuthorizer::default();
            lambda.fields = context.clone().into_iter().collect();
            event.request_context.authorizer = Some(lambda);
        }
        if !self.body.is_empty() {
            let textual = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_textual);
            match std::str::from_utf8(self.body) {
                Ok(text) if textual => event.body = Some(text.to_owned()),
                _ => {
                    event.body = Some(base64::engine::general_purpose::STANDARD.encode(self.body));
                    event.is_base64_encoded = true;
                }
            }
        }
        let mut event = serde_json::to_value(event).unwrap_or_default();
        if let Value::Object(members) = &mut event {
            for member in NOT_IN_PAYLOAD_2_0 {
                members.remove(member);
            }
        }
        event
    }

    /// The `REQUEST` event of a payload 2.0 Lambda authorizer, with the values of its
    /// identity sources in order.
    pub fn authorizer_event(&self, identity: &[String]) -> Value {
        let (headers, cookies) = self.headers_and_cookies();
        let mut event = ApiGatewayV2CustomAuthorizerV2Request::default();
        event.version = Some("2.0".to_owned());
        event.type_ = Some("REQUEST".to_owned());
        event.route_arn =
            Some(format!("arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/$default/{}{}", self.method, self.path));
        event.identity_source = Some(identity.to_vec());
        event.route_key = Some(self.route_key.to_owned());
        event.raw_path = Some(self.path.to_owned());
        event.raw_query_string = Some(self.raw_query.to_owned());
        event.cookies = cookies;
        event.headers = headers;
        event.query_string_parameters =
            self.query_parameters().into_iter().map(|(name, values)| (name, values.join(","))).collect();
        event.request_context = self.request_context();
        event.path_parameters = self.path_parameters.clone().into_iter().collect();
        serde_json::to_value(event).unwrap_or_default()
    }

    /// The value of one identity source (`$request.header.X`, `$request.querystring.X`,
    /// `$context.httpMethod`, `$context.path`...), `None` when missing or empty.
    pub fn identity_value(&self, source: &str) -> Option<String> {
        let value = if let Some(name) = source.strip_prefix("$request.header.") {
            let values: Vec<&str> = self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
            (!values.is_empty()).then(|| values.join(","))
        } else if let Some(name) = source.strip_prefix("$request.querystring.") {
            self.query_parameters().get(name).map(|values| values.join(","))
        } else {
            match source {
                "$context.httpMethod" => Some(self.method.as_str().to_owned()),
                "$context.path" => Some(self.path.to_owned()),
                "$context.routeKey" => Some(self.route_key.to_owned()),
                "$context.stage" => Some("$default".to_owned()),
                "$context.identity.sourceIp" => Some(self.source_ip.clone()),
                _ => None,
            }
        };
        value.filter(|v| !v.trim().is_empty())
    }
}

/// Content types API Gateway passes as text; any other body is base64-encoded.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json" | "application/x-www-form-urlencoded" | "application/xml" | "application/javascript"
        )
}

/// `12/Mar/2020:19:03:58 +0000`, the `time` of a request context.
fn clf_time(at: SystemTime) -> String {
    let format = time::macros::format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    time::OffsetDateTime::from(at).format(format).unwrap_or_default()
}

/// The answers API Gateway itself gives, with its bodies.
pub fn gateway_answer(status: StatusCode) -> Response<Bytes> {
    let message = match status {
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "Not Found",
        StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut response = Response::new(Bytes::from(json!({ "message": message }).to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The HTTP response for a function's payload 2.0 answer. A JSON object with
/// `statusCode` is taken as a response; any other valid JSON is a 200 with that JSON as its
/// body (API Gateway's inference); a malformed answer is a 500.
pub fn integration_response(answer: &[u8]) -> Response<Bytes> {
    let Ok(value) = serde_json::from_slice::<Value>(answer) else {
        return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Some(status) = value.get("statusCode") else {
        let mut response = Response::new(Bytes::from(value.to_string()));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    };
    let Some(status) = status.as_u64().and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let body = match (value.get("body"), value.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false)) {
        (None | Some(Value::Null), _) => Bytes::new(),
        (Some(Value::String(text)), false) => Bytes::from(text.clone()),
        (Some(Value::String(encoded)), true) => match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR),
        },
        (Some(other), _) => Bytes::from(other.to_string()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let single = value.get("headers").and_then(Value::as_object).into_iter().flatten();
    let multi = value.get("multiValueHeaders").and_then(Value::as_object).into_iter().flatten();
    let pairs = single.filter_map(|(n, v)| Some((n, scalar(v)?))).chain(
        multi.flat_map(|(n, vs)| vs.as_array().into_iter().flatten().filter_map(move |v| Some((n, scalar(v)?)))),
    );
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    for cookie in value.get("cookies").and_then(Value::as_array).into_iter().flatten() {
        if let Some(Ok(cookie)) = cookie.as_str().map(HeaderValue::try_from) {
            headers.append(SET_COOKIE, cookie);
        }
    }
    response
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn incoming<'a>(
        headers: &'a HeaderMap,
        body: &'a Bytes,
        query: &'a str,
        params: &'a BTreeMap<String, String>,
    ) -> Incoming<'a> {
        Incoming {
            method: &Method::POST,
            path: "/items/7",
            raw_query: query,
            headers,
            body,
            source_ip: "127.0.0.1".into(),
            request_id: "r-1",
            route_key: "POST /items/{id}",
            path_parameters: params,
            time: UNIX_EPOCH + std::time::Duration::from_millis(1_584_039_838_123),
        }
    }

    #[test]
    fn an_integration_event_has_the_payload_2_0_shape() {
        let h = headers(&[
            ("Content-Type", "application/json"),
            ("X-Many", "a"),
            ("x-many", "b"),
            ("Cookie", "c1=v1; c2=v2"),
            ("Host", "127.0.0.1:3000"),
        ]);
        let body = Bytes::from_static(br#"{"a":1}"#);
        let params = BTreeMap::from([("id".to_owned(), "7".to_owned())]);
        let request = incoming(&h, &body, "q=1&q=2&s=a%20b", &params);
        let context = json!({ "sub": "u1" });
        let event = request.integration_event(context.as_object());
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "POST /items/{id}");
        assert_eq!(event["rawPath"], "/items/7");
        assert_eq!(event["rawQueryString"], "q=1&q=2&s=a%20b");
        assert_eq!(event["queryStringParameters"], json!({ "q": "1,2", "s": "a b" }));
        assert_eq!(event["cookies"], json!(["c1=v1", "c2=v2"]));
        assert_eq!(event["headers"]["x-many"], "a,b");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["pathParameters"], json!({ "id": "7" }));
        assert_eq!(event["body"], r#"{"a":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
        let context = &event["requestContext"];
        assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(context["http"]["method"], "POST");
        assert_eq!(context["stage"], "$default");
        assert_eq!(context["timeEpoch"], 1_584_039_838_123_u64);
        assert_eq!(context["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(context["authorizer"]["lambda"]["sub"], "u1");
        for member in NOT_IN_PAYLOAD_2_0 {
            assert!(event.get(member).is_none(), "{member}");
        }
    }

    #[test]
    fn a_binary_body_is_base64_encoded_and_a_text_one_is_not() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let body = Bytes::from_static(b"\x00\x01hello");
        let params = BTreeMap::new();
        let event = incoming(&h, &body, "", &params).integration_event(None);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], base64::engine::general_purpose::STANDARD.encode(b"\x00\x01hello"));
        assert!(event["requestContext"].get("authorizer").is_none());
        let form = headers(&[("content-type", "application/x-www-form-urlencoded; charset=utf-8")]);
        let body = Bytes::from_static(b"grant_type=refresh_token");
        assert_eq!(incoming(&form, &body, "", &params).integration_event(None)["body"], "grant_type=refresh_token");
    }

    #[test]
    fn the_authorizer_event_carries_the_identity_values_in_order() {
        let h = headers(&[("authorization", "Bearer abc")]);
        let body = Bytes::new();
        let params = BTreeMap::new();
        let request = incoming(&h, &body, "", &params);
        let sources = ["$request.header.Authorization", "$context.httpMethod", "$context.path"];
        let values: Vec<String> = sources.iter().map(|s| request.identity_value(s).unwrap()).collect();
        assert_eq!(values, ["Bearer abc", "POST", "/items/7"]);
        let event = request.authorizer_event(&values);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["headers"]["authorization"], "Bearer abc");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["identitySource"], json!(values));
        assert_eq!(event["routeArn"], "arn:aws:execute-api:us-east-1:000000000000:local/$default/POST/items/7");
        let empty = headers(&[("authorization", " ")]);
        assert_eq!(incoming(&empty, &body, "", &params).identity_value("$request.header.Authorization"), None);
    }

    #[test]
    fn the_authorizer_event_carries_the_dpop_proof_the_host_called_and_the_scheme() {
        let h = headers(&[
            ("authorization", "DPoP abc"),
            ("DPoP", "p.q.r"),
            ("Host", "127.0.0.1:3000"),
            ("X-Forwarded-Proto", "https"),
        ]);
        let (body, params) = (Bytes::new(), BTreeMap::new());
        let event = incoming(&h, &body, "", &params).authorizer_event(&["DPoP abc".to_owned()]);
        assert_eq!(event["headers"]["dpop"], "p.q.r");
        assert_eq!(event["headers"]["host"], "127.0.0.1:3000");
        assert_eq!(event["headers"]["x-forwarded-proto"], "http", "the gateway's own scheme, not the client's");
        assert_eq!(event["rawPath"], "/items/7");
        // Two proofs arrive joined, as API Gateway joins repeated headers: the authorizer refuses both.
        let two = headers(&[("dpop", "p.q.r"), ("dpop", "s.t.u")]);
        assert_eq!(incoming(&two, &body, "", &params).authorizer_event(&[])["headers"]["dpop"], "p.q.r,s.t.u");
    }

    #[test]
    fn a_function_answer_becomes_the_response_api_gateway_makes() {
        let answer = json!({
            "statusCode": 401,
            "headers": { "content-type": "application/json", "www-authenticate": "Bearer" },
            "cookies": ["a=1", "b=2"],
            "body": base64::engine::general_purpose::STANDARD.encode(b"{}"),
            "isBase64Encoded": true,
        });
        let response = integration_response(answer.to_string().as_bytes());
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(response.headers().get_all(SET_COOKIE).iter().count(), 2);
        assert_eq!(response.body().as_ref(), b"{}");
        let inferred = integration_response(br#"{"hello":"world"}"#);
        assert_eq!((inferred.status(), inferred.body().as_ref()), (StatusCode::OK, br#"{"hello":"world"}"#.as_ref()));
        assert_eq!(integration_response(b"not json").status(), 500);
        assert_eq!(integration_response(br#"{"statusCode":"x"}"#).status(), 500);
    }
}
