//! HTTP request → the HTTP API payload format 2.0 event API Gateway sends to a Lambda, and
//! the function's answer → the HTTP response API Gateway makes of it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

const ACCOUNT_ID: &str = "000000000000";
const API_ID: &str = "local";
const REGION: &str = "us-east-1";

/// What a request is, as far as events go.
pub struct Incoming<'a> {
    pub method: &'a str,
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
    fn headers_and_cookies(&self) -> (Map<String, Value>, Vec<String>) {
        let mut headers = Map::new();
        let mut cookies = Vec::new();
        for (name, value) in self.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if name == COOKIE {
                cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
            } else {
                insert_joined(&mut headers, name.as_str(), &value);
            }
        }
        (headers, cookies)
    }

    /// Decoded query parameters, repeated names joined with commas.
    fn query_parameters(&self) -> Map<String, Value> {
        let mut parameters = Map::new();
        for (name, value) in form_urlencoded::parse(self.raw_query.as_bytes()) {
            insert_joined(&mut parameters, &name, &value);
        }
        parameters
    }

    fn request_context(&self) -> Value {
        let epoch = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = self.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        let user_agent = self.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or("");
        json!({
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": self.method,
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": self.source_ip,
                "userAgent": user_agent,
            },
            "requestId": self.request_id,
            "routeKey": self.route_key,
            "stage": "$default",
            "time": clf_time(epoch.as_secs()),
            "timeEpoch": u64::try_from(epoch.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The fields the integration event and the authorizer event share.
    fn common(&self) -> Map<String, Value> {
        let (headers, cookies) = self.headers_and_cookies();
        let mut event = Map::new();
        event.insert("version".into(), "2.0".into());
        event.insert("routeKey".into(), self.route_key.into());
        event.insert("rawPath".into(), self.path.into());
        event.insert("rawQueryString".into(), self.raw_query.into());
        if !cookies.is_empty() {
            event.insert("cookies".into(), cookies.into());
        }
        event.insert("headers".into(), headers.into());
        let query = self.query_parameters();
        if !query.is_empty() {
            event.insert("queryStringParameters".into(), query.into());
        }
        event.insert("requestContext".into(), self.request_context());
        if !self.path_parameters.is_empty() {
            event.insert("pathParameters".into(), json!(self.path_parameters));
        }
        event
    }

    /// The event for the route's function; `authorizer` is the Lambda authorizer's context.
    pub fn integration_event(&self, authorizer: Option<&Value>) -> Value {
        let mut event = self.common();
        if let (Some(context), Some(Value::Object(request_context))) = (authorizer, event.get_mut("requestContext")) {
            request_context.insert("authorizer".into(), json!({ "lambda": context }));
        }
        if !self.body.is_empty() {
            let textual = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_textual);
            match std::str::from_utf8(self.body) {
                Ok(text) if textual => {
                    event.insert("body".into(), text.into());
                    event.insert("isBase64Encoded".into(), false.into());
                }
                _ => {
                    event.insert("body".into(), base64::engine::general_purpose::STANDARD.encode(self.body).into());
                    event.insert("isBase64Encoded".into(), true.into());
                }
            }
        } else {
            event.insert("isBase64Encoded".into(), false.into());
        }
        Value::Object(event)
    }

    /// The `REQUEST` event of a payload 2.0 Lambda authorizer, with the values of its
    /// identity sources in order.
    pub fn authorizer_event(&self, identity: &[String]) -> Value {
        let mut event = self.common();
        event.insert("type".into(), "REQUEST".into());
        let route_arn =
            format!("arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/$default/{}{}", self.method, self.path);
        event.insert("routeArn".into(), route_arn.into());
        event.insert("identitySource".into(), json!(identity));
        Value::Object(event)
    }

    /// The value of one identity source (`$request.header.X`, `$request.querystring.X`,
    /// `$context.httpMethod`, `$context.path`...), `None` when missing or empty.
    pub fn identity_value(&self, source: &str) -> Option<String> {
        let value = if let Some(name) = source.strip_prefix("$request.header.") {
            let values: Vec<&str> = self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
            (!values.is_empty()).then(|| values.join(","))
        } else if let Some(name) = source.strip_prefix("$request.querystring.") {
            self.query_parameters().get(name).and_then(Value::as_str).map(str::to_owned)
        } else {
            match source {
                "$context.httpMethod" => Some(self.method.to_owned()),
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

/// Adds `name: value`; a name seen before gets the value appended after a comma, as
/// payload 2.0 joins repeated headers and query parameters.
fn insert_joined(map: &mut Map<String, Value>, name: &str, value: &str) {
    match map.get_mut(name) {
        Some(Value::String(joined)) => {
            joined.push(',');
            joined.push_str(value);
        }
        _ => {
            map.insert(name.to_owned(), Value::String(value.to_owned()));
        }
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
fn clf_time(epoch_secs: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = i64::try_from(epoch_secs / 86_400).unwrap_or(0);
    let secs = epoch_secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!("{day:02}/{month_name}/{year}:{:02}:{:02}:{:02} +0000", secs / 3600, secs % 3600 / 60, secs % 60)
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
            method: "POST",
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
        let event = request.integration_event(Some(&json!({ "sub": "u1" })));
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
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["identitySource"], json!(values));
        assert_eq!(event["routeArn"], "arn:aws:execute-api:us-east-1:000000000000:local/$default/POST/items/7");
        let empty = headers(&[("authorization", " ")]);
        assert_eq!(incoming(&empty, &body, "", &params).identity_value("$request.header.Authorization"), None);
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
