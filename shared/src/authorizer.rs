//! The API Gateway Lambda authorizer: every event shape in, allow / deny / unauthorized out.
//!
//! Shapes: REST API `TOKEN` and `REQUEST`; HTTP API `REQUEST` payload 1.0 (IAM policy) and
//! 2.0 (IAM policy or simple response, by configuration). The event is read borrowed
//! from the raw JSON with only the members we use, and an HTTP API event only as far as
//! those members, so the hot path does little work for the dozens it ignores.
//!
//! Decisions: a missing, malformed, expired or revoked token, or a stale revocation state,
//! is *unauthorized* (REST: the error `Unauthorized`, API Gateway answers 401; HTTP API: a
//! deny, since its authorizers cannot ask for a 401). A valid token that lacks the scope a
//! route requires is a *deny* (403). Allow policies cover the whole API and explicitly deny
//! every route whose required scope the token lacks, so a policy cached by API Gateway for
//! this token stays right for every other route.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::revocation_cache::{Freshness, RevocationFeed};
use crate::verify::{Rejection, VerifiedToken, Verifier};

/// How HTTP API payload 2.0 events are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStyle {
    /// `{"isAuthorized": .., "context": ..}` (the route's own decision).
    Simple,
    /// An IAM policy document, as for REST APIs and payload 1.0.
    Iam,
}

/// A route's scope requirement: `METHOD /path` (both may use `*`) needs every scope listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    method: String,
    path: String,
    scopes: Vec<String>,
}

impl RouteRule {
    /// Parses `AUTHORIZER_ROUTE_SCOPES`: rules separated by `;`, each
    /// `METHOD /path=scope scope`, e.g. `GET /api/items=read;POST /api/items/*=write`.
    /// The first matching rule applies; a route no rule matches needs no scope.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        raw.split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|rule| {
                let (route, scopes) = rule.split_once('=').ok_or_else(|| format!("rule {rule:?} lacks '='"))?;
                let (method, path) =
                    route.trim().split_once(' ').ok_or_else(|| format!("route {route:?} must be 'METHOD /path'"))?;
                if !path.starts_with('/') {
                    return Err(format!("path {path:?} must start with /"));
                }
                Ok(Self {
                    method: method.trim().to_ascii_uppercase(),
                    path: path.trim().to_owned(),
                    scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                })
            })
            .collect()
    }

    /// Whether the rule covers `method` and `path`, the path given without its leading `/`
    /// (as it follows the method in an execute-api ARN).
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method)) && glob(&self.path[1..], path)
    }

    fn granted(&self, scope: &str) -> bool {
        self.scopes.iter().all(|s| scope.split(' ').any(|t| t == s))
    }
}

/// `*` matches any run of characters (including `/`, as in execute-api ARNs). Iterative,
/// with backtracking to the last star only: linear in practice, never exponential.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Why a request was not authorized (the audit/metric class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No bearer token where one was expected, or not exactly one.
    MissingToken,
    /// The token failed verification.
    Invalid(Rejection),
    /// The token is valid but revoked.
    Revoked,
    /// The revocation state is older than the staleness bound.
    StaleRevocations,
    /// The event is not one of the shapes we accept.
    UnknownEvent,
}

impl Unauthorized {
    /// The reason class logged and counted.
    pub fn class(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Invalid(r) => r.class(),
            Self::Revoked => "revoked",
            Self::StaleRevocations => "stale_revocations",
            Self::UnknownEvent => "unknown_event",
        }
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What API Gateway needs to answer 401; nothing about the token.
        f.write_str("Unauthorized")
    }
}

impl std::error::Error for Unauthorized {}

/// A string from the event, borrowed when the JSON has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// The `Authorization` header, found case-insensitively; `None` if absent, repeated in
/// different spellings, or not a string.
#[derive(Default)]
struct AuthorizationHeader<'a>(Option<Cow<'a, str>>, bool);

impl<'de: 'a, 'a> Deserialize<'de> for AuthorizationHeader<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for HeadersVisitor<'a> {
            type Value = AuthorizationHeader<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = AuthorizationHeader::default();
                while let Some(key) = map.next_key::<Text<'_>>()? {
                    if key.0.eq_ignore_ascii_case("authorization") {
                        let value = map.next_value::<Option<Text<'a>>>()?;
                        if found.0.is_some() {
                            found.1 = true; // ambiguous: two Authorization headers
                        }
                        found.0 = value.map(|t| t.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AuthorizationHeader::default())
            }
        }
        deserializer.deserialize_any(HeadersVisitor(std::marker::PhantomData))
    }
}

/// The members of every authorizer event shape that we use.
#[derive(Default)]
struct Event<'a> {
    kind: Option<Text<'a>>,
    version: Option<Text<'a>>,
    authorization_token: Option<Text<'a>>,
    method_arn: Option<Text<'a>>,
    route_arn: Option<Text<'a>>,
    headers: Option<AuthorizationHeader<'a>>,
    /// Reading stopped once everything needed was known.
    read_enough: bool,
}

/// Why the event reader stops early (an error is serde's only way to stop a map).
const READ_ENOUGH: &str = "read enough";

impl<'a> Event<'a> {
    /// Reads the members we use from the raw event. An HTTP API event (its `version` known)
    /// is read only until its shape's members are all there: API Gateway puts
    /// `requestContext` and the rest after them, and the runtime has already checked that
    /// the whole event is JSON. `None` if the event is not a JSON object of that form.
    fn read(raw: &'a str) -> Option<Self> {
        let mut event = Event::default();
        let mut json = serde_json::Deserializer::from_str(raw);
        match de::DeserializeSeed::deserialize(EventReader(&mut event), &mut json) {
            Ok(()) => json.end().ok().map(|()| event),
            Err(_) if event.read_enough => Some(event),
            Err(_) => None,
        }
    }

    fn text<'f>(field: &'f Option<Text<'a>>) -> Option<&'f str> {
        field.as_ref().map(|t| t.0.as_ref())
    }

    /// Whether an HTTP API event has given every member its shape needs.
    fn has_all_it_needs(&self) -> bool {
        match (Self::text(&self.kind), Self::text(&self.version)) {
            (Some(_), Some("1.0")) => self.method_arn.is_some() && self.headers.is_some(),
            (Some(_), Some("2.0")) => self.route_arn.is_some() && self.headers.is_some(),
            _ => false,
        }
    }
}

struct EventReader<'e, 'a>(&'e mut Event<'a>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for EventReader<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for EventReader<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an API Gateway authorizer event")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let event = self.0;
        let mut seen = 0u8;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let member = match key.0.as_ref() {
                "type" => 0,
                "version" => 1,
                "authorizationToken" => 2,
                "methodArn" => 3,
                "routeArn" => 4,
                "headers" => 5,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if seen & (1 << member) != 0 {
                return Err(de::Error::custom("duplicate member"));
            }
            seen |= 1 << member;
            match member {
                0 => event.kind = map.next_value()?,
                1 => event.version = map.next_value()?,
                2 => event.authorization_token = map.next_value()?,
                3 => event.method_arn = map.next_value()?,
                4 => event.route_arn = map.next_value()?,
                _ => event.headers = map.next_value()?,
            }
            if event.has_all_it_needs() {
                event.read_enough = true;
                return Err(de::Error::custom(READ_ENOUGH));
            }
        }
        Ok(())
    }
}

/// The shape of an event, which decides the answer's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    RestToken,
    RestRequest,
    HttpV1,
    HttpV2,
}

/// What the authorizer answers (serialised by the runtime): a simple response (HTTP API
/// payload 2.0) or an IAM policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `{"isAuthorized": .., "context": ..}`.
    Simple {
        /// Allow or deny.
        #[serde(rename = "isAuthorized")]
        is_authorized: bool,
        /// Claims handed to the backend.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<AuthContext>,
    },
    /// `{"principalId": .., "policyDocument": .., "context": ..}`.
    Policy {
        /// The user id (or `unauthorized`).
        #[serde(rename = "principalId")]
        principal_id: String,
        /// The IAM policy.
        #[serde(rename = "policyDocument")]
        policy_document: PolicyDocument,
        /// Claims handed to the backend.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<AuthContext>,
    },
}

/// The context API Gateway passes to the backend (strings only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthContext {
    /// User id.
    pub sub: String,
    /// Granted scope.
    pub scope: String,
    /// Client.
    pub client_id: String,
    /// Session id.
    pub sid: String,
    /// Token id.
    pub jti: String,
}

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// Allow and deny statements.
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Always `execute-api:Invoke`.
    #[serde(rename = "Action")]
    pub action: &'static str,
    /// `Allow` or `Deny`.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// execute-api ARNs (patterns).
    #[serde(rename = "Resource")]
    pub resource: Vec<String>,
}

impl PolicyDocument {
    /// A policy of these statements.
    fn of(statement: Vec<Statement>) -> Self {
        Self { version: "2012-10-17", statement }
    }
}

impl Statement {
    /// `execute-api:Invoke` with `effect` on `resource`.
    fn invoke(effect: &'static str, resource: Vec<String>) -> Self {
        Self { action: "execute-api:Invoke", effect, resource }
    }
}

impl From<VerifiedToken> for AuthContext {
    fn from(t: VerifiedToken) -> Self {
        Self { sub: t.sub, scope: t.scope, client_id: t.client_id, sid: t.sid, jti: t.jti }
    }
}

/// `arn:aws:execute-api:region:account:api/stage/METHOD/path...` -> (base, method, path)
/// with base = `arn:...:api/stage` and the path without its leading `/`.
fn split_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let resource_start = arn.match_indices(':').nth(4)?.0 + 1;
    let mut parts = arn[resource_start..].splitn(4, '/');
    let (api, stage, method) = (parts.next()?, parts.next()?, parts.next()?);
    let path = parts.next().unwrap_or("");
    let base_len = resource_start + api.len() + 1 + stage.len();
    (!api.is_empty() && !stage.is_empty() && !method.is_empty()).then(|| (&arn[..base_len], method, path))
}

/// Settings of the authorizer, from the environment.
#[derive(Debug, Clone)]
pub struct AuthorizerSettings {
    /// Payload 2.0 answer style (`AUTHORIZER_RESPONSE`: `simple` or `iam`, default `simple`).
    pub style: ResponseStyle,
    /// Route scope rules (`AUTHORIZER_ROUTE_SCOPES`, default none).
    pub rules: Vec<RouteRule>,
}

impl AuthorizerSettings {
    /// Reads `AUTHORIZER_RESPONSE` and `AUTHORIZER_ROUTE_SCOPES` through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, crate::ConfigError> {
        let style = match lookup("AUTHORIZER_RESPONSE").as_deref().map(str::trim) {
            None | Some("simple") => ResponseStyle::Simple,
            Some("iam") => ResponseStyle::Iam,
            Some(_) => {
                return Err(crate::ConfigError::Invalid { name: "AUTHORIZER_RESPONSE", reason: "`simple` or `iam`" })
            }
        };
        let rules = RouteRule::parse_list(&lookup("AUTHORIZER_ROUTE_SCOPES").unwrap_or_default()).map_err(|_| {
            crate::ConfigError::Invalid {
                name: "AUTHORIZER_ROUTE_SCOPES",
                reason: "`METHOD /path=scope ...` rules separated by `;`",
            }
        })?;
        Ok(Self { style, rules })
    }
}

/// Timing settings of the revocation feed and the verifier, and where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSettings {
    /// `REVOCATION_POLL_SECS` (default 5): poll at most this often per warm instance.
    pub poll_every_secs: u64,
    /// `REVOCATION_MAX_STALENESS_SECS` (default 60): serve a failed poll's state this long.
    pub max_staleness_secs: u64,
    /// `TOKEN_LEEWAY_SECS` (default 30): clock leeway for `exp`, `nbf`, `iat`.
    pub leeway_secs: u64,
    /// `TRUSTED_JWKS`, else `TRUSTED_KEY_IDS` (default `SIGNING_KEY_ID`).
    pub keys: KeySource,
}

impl FeedSettings {
    /// Reads the settings through `lookup`; `signing_key_id` is the default trusted key.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        signing_key_id: &str,
    ) -> Result<Self, crate::ConfigError> {
        let number = |name: &'static str, default: u64| match lookup(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| crate::ConfigError::Invalid { name, reason: "a whole number of seconds" }),
        };
        let keys = match (lookup("TRUSTED_JWKS"), lookup("TRUSTED_KEY_IDS")) {
            (Some(jwks), _) if !jwks.trim().is_empty() => KeySource::Jwks(jwks),
            (_, Some(ids)) if !ids.trim().is_empty() => {
                KeySource::Kms(ids.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            }
            _ => KeySource::Kms(vec![signing_key_id.to_owned()]),
        };
        Ok(Self {
            poll_every_secs: number("REVOCATION_POLL_SECS", 5)?,
            max_staleness_secs: number("REVOCATION_MAX_STALENESS_SECS", 60)?,
            leeway_secs: number("TOKEN_LEEWAY_SECS", 30)?,
            keys,
        })
    }
}

/// Where the trusted public keys come from: the one seam through which keys arrive. They
/// are loaded once per instance and parsed then; a request never loads or parses a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `kms:GetPublicKey` for these KMS key ids (current and previous), at cold start. The
    /// key's own signing algorithms decide ES256 or RS256.
    Kms(Vec<String>),
    /// A JWKS document handed over in configuration (`TRUSTED_JWKS`): no call at all.
    Jwks(String),
}

impl KeySource {
    /// The trusted keys, parsed and ready. `kms` is called only for [`KeySource::Kms`] (a
    /// KMS client costs about 0.2 ms to build at cold start).
    pub async fn load(
        &self,
        kms: impl FnOnce() -> aws_sdk_kms::Client,
    ) -> Result<Vec<crate::verify::TrustedKey>, Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Self::Kms(ids) => Ok(load_kms_keys(&kms(), ids).await?),
            Self::Jwks(document) => crate::verify::TrustedKey::from_jwks(document)
                .map_err(|reason| format!("TRUSTED_JWKS: {reason}").into()),
        }
    }
}

async fn load_kms_keys(
    kms: &aws_sdk_kms::Client,
    key_ids: &[String],
) -> Result<Vec<crate::verify::TrustedKey>, crate::error::DependencyError> {
    use aws_sdk_kms::types::SigningAlgorithmSpec as Alg;
    let mut keys = Vec::with_capacity(key_ids.len());
    for id in key_ids {
        let out = kms
            .get_public_key()
            .key_id(id)
            .send()
            .await
            .map_err(|e| crate::error::DependencyError::kms("GetPublicKey", e))?;
        let bad =
            |m: &str| crate::error::DependencyError::Kms { operation: "GetPublicKey", message: format!("{id}: {m}") };
        let der = out.public_key().ok_or_else(|| bad("no public key"))?.as_ref();
        let algorithms = out.signing_algorithms();
        let key = if algorithms.contains(&Alg::EcdsaSha256) {
            crate::verify::TrustedKey::es256_from_spki(der)
        } else if algorithms.contains(&Alg::RsassaPkcs1V15Sha256) {
            crate::verify::TrustedKey::rs256_from_spki(der)
        } else {
            Err("neither ECDSA_SHA_256 nor RSASSA_PKCS1_V1_5_SHA_256")
        }
        .map_err(bad)?;
        keys.push(key);
    }
    Ok(keys)
}

/// The authorizer: verifier, revocation feed, rules. Built once per cold start.
pub struct Authorizer {
    verifier: Verifier,
    feed: tokio::sync::Mutex<RevocationFeed>,
    settings: AuthorizerSettings,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer").field("verifier", &self.verifier).field("settings", &self.settings).finish()
    }
}

impl Authorizer {
    /// Assembles an authorizer.
    pub fn new(verifier: Verifier, feed: RevocationFeed, settings: AuthorizerSettings, clock: Arc<dyn Clock>) -> Self {
        Self { verifier, feed: tokio::sync::Mutex::new(feed), settings, clock }
    }

    /// Builds the authorizer as the function does: keys from their [`KeySource`], the
    /// revocation feed over the Revocations table, settings from `lookup` (the environment).
    pub async fn from_config(
        config: &crate::Config,
        lookup: impl Fn(&str) -> Option<String>,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: impl FnOnce() -> aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let feed_settings = FeedSettings::from_lookup(&lookup, &config.signing_key_id)?;
        let settings = AuthorizerSettings::from_lookup(&lookup)?;
        let keys = feed_settings.keys.load(kms).await?;
        let verifier = Verifier::new(keys, config.issuer.clone(), config.audience.clone(), feed_settings.leeway_secs);
        let lookback = config.access_token_ttl.as_secs() + feed_settings.leeway_secs + 60;
        let feed = RevocationFeed::new(
            crate::store::DynamoRevocations::new(dynamodb, &config.revocations_table),
            feed_settings.poll_every_secs,
            feed_settings.max_staleness_secs,
            lookback,
        );
        Ok(Self::new(verifier, feed, settings, clock))
    }

    /// The verifier (for benchmarks that take the hot path apart).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Polls the revocation feed now (at cold start, so the first request needs no read).
    pub async fn warm_up(&self) -> Freshness {
        self.feed.lock().await.sync(self.clock.now()).await
    }

    /// Answers one raw authorizer event: `Ok(response JSON)` for allow and deny,
    /// `Err(Unauthorized)` where API Gateway must answer 401 (REST).
    pub async fn handle(&self, raw_event: &str) -> Result<Answer, Unauthorized> {
        let Some(event) = Event::read(raw_event) else {
            return self.refuse(None, Unauthorized::UnknownEvent);
        };
        let (kind, version) = (Event::text(&event.kind), Event::text(&event.version));
        let (shape, arn) = match (kind, version) {
            (Some("TOKEN"), None) => (Shape::RestToken, event.method_arn.as_ref()),
            (Some("REQUEST"), None) => (Shape::RestRequest, event.method_arn.as_ref()),
            (Some("REQUEST"), Some("1.0")) => (Shape::HttpV1, event.method_arn.as_ref()),
            (Some("REQUEST"), Some("2.0")) => (Shape::HttpV2, event.route_arn.as_ref()),
            _ => return self.refuse(None, Unauthorized::UnknownEvent),
        };
        let Some((base, method, path)) = arn.and_then(|a| split_arn(&a.0)) else {
            return self.refuse(Some(shape), Unauthorized::UnknownEvent);
        };
        let header = match shape {
            Shape::RestToken => event.authorization_token.as_ref().map(|t| t.0.as_ref()),
            _ => match &event.headers {
                Some(AuthorizationHeader(Some(value), false)) => Some(value.as_ref()),
                _ => None,
            },
        };
        let Some(token) = header.and_then(crate::http::parse_bearer) else {
            return self.refuse(Some(shape), Unauthorized::MissingToken);
        };

        let now = self.clock.now();
        let verified = match self.verifier.verify(token, now) {
            Ok(v) => v,
            Err(rejection) => return self.refuse(Some(shape), Unauthorized::Invalid(rejection)),
        };
        {
            let mut feed = self.feed.lock().await;
            if feed.sync(now).await == Freshness::Stale {
                return self.refuse(Some(shape), Unauthorized::StaleRevocations);
            }
            if feed.is_revoked(&verified) {
                return self.refuse(Some(shape), Unauthorized::Revoked);
            }
        }

        let rule = self.settings.rules.iter().find(|r| r.matches(method, path));
        let allowed = rule.is_none_or(|r| r.granted(&verified.scope));
        if !allowed {
            audit("deny", "insufficient_scope");
        }
        Ok(match (shape, self.settings.style) {
            (Shape::HttpV2, ResponseStyle::Simple) => {
                Answer::Simple { is_authorized: allowed, context: Some(AuthContext::from(verified)) }
            }
            _ => self.policy(base, verified),
        })
    }

    /// An IAM policy for the whole API: allow everything, except an explicit deny for each
    /// rule whose scopes the token lacks (correct for any route if API Gateway caches it).
    fn policy(&self, base: &str, token: VerifiedToken) -> Answer {
        let mut statement = vec![Statement::invoke("Allow", vec![format!("{base}/*/*")])];
        let denied: Vec<String> = self
            .settings
            .rules
            .iter()
            .filter(|r| !r.granted(&token.scope))
            .map(|r| format!("{base}/{}{}", r.method, r.path))
            .collect();
        if !denied.is_empty() {
            statement.push(Statement::invoke("Deny", denied));
        }
        Answer::Policy {
            principal_id: token.sub.clone(),
            policy_document: PolicyDocument::of(statement),
            context: Some(AuthContext::from(token)),
        }
    }

    fn refuse(&self, shape: Option<Shape>, why: Unauthorized) -> Result<Answer, Unauthorized> {
        audit("unauthorized", why.class());
        match (shape, self.settings.style) {
            (Some(Shape::HttpV2), ResponseStyle::Simple) => Ok(Answer::Simple { is_authorized: false, context: None }),
            (Some(Shape::HttpV1 | Shape::HttpV2), _) => Ok(Answer::Policy {
                principal_id: "unauthorized".to_owned(),
                policy_document: PolicyDocument::of(vec![Statement::invoke("Deny", vec!["*".to_owned()])]),
                context: None,
            }),
            _ => Err(why),
        }
    }
}

/// One audit line and one metric per refusal class; never the token.
fn audit(outcome: &'static str, reason: &'static str) {
    tracing::warn!(target: "audit", event = "authorize", outcome, reason, "request not authorized");
    crate::metrics::count("authorize", "AuthorizerRefusals", reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_execute_api_paths() {
        assert!(glob("/api/*", "/api/items/7"));
        assert!(glob("/api/items", "/api/items"));
        assert!(!glob("/api/items", "/api/items/7"));
        assert!(glob("*", "/anything"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a/*/c", "/a/b/d"));
        assert!(glob("/a*", "/a"));
        assert!(!glob("/a*b*c*d*e", &format!("/a{}", "x".repeat(8000))), "no blow-up on long paths");
    }

    #[test]
    fn parses_route_rules_and_refuses_nonsense() {
        let rules = RouteRule::parse_list("GET /api/items=read; POST /api/items/*=write admin").expect("valid");
        assert_eq!(rules.len(), 2);
        assert!(rules[1].matches("post", "api/items/3"));
        assert!(!rules[0].matches("GET", "api/items/3"));
        assert!(rules[1].granted("admin write read"));
        assert!(!rules[1].granted("write"));
        assert!(RouteRule::parse_list("GET api=read").is_err());
        assert!(RouteRule::parse_list("/api=read").is_err());
        assert_eq!(RouteRule::parse_list("").expect("empty"), vec![]);
    }

    #[test]
    fn extracts_exactly_one_bearer_token() {
        use crate::http::parse_bearer;
        assert_eq!(parse_bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(parse_bearer("bEaReR abc"), Some("abc"));
        for bad in ["abc", "Bearer", "Bearer ", "Bearer a b", "Basic abc", "Bearer  abc", "Bearer a,b"] {
            assert_eq!(parse_bearer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_an_http_api_event_only_as_far_as_it_needs() {
        let arn = "arn:aws:execute-api:us-east-1:1:abc/$default/GET/x";
        let head = format!(
            r#"{{"version":"2.0","type":"REQUEST","routeArn":"{arn}","headers":{{"Authorization":"Bearer t"}}"#
        );
        // Whatever follows the members we need is not read (the runtime has checked it).
        let truncated = format!(r#"{head},"requestContext":{{"never":"#);
        let event = Event::read(&truncated).expect("read enough");
        assert!(event.read_enough);
        assert!(matches!(&event.headers, Some(AuthorizationHeader(Some(v), false)) if v == "Bearer t"));
        // In another order, the whole event is read.
        let reordered = format!(
            r#"{{"headers":{{"authorization":"Bearer t"}},"routeArn":"{arn}","type":"REQUEST","version":"2.0"}}"#
        );
        assert!(Event::read(&reordered).is_some_and(|e| Event::text(&e.route_arn) == Some(arn)));
        // A REST event has no version: it is read to the end, and must be JSON to the end.
        assert!(Event::read(r#"{"type":"REQUEST","methodArn":"a","headers":{},"requestContext":{"#).is_none());
        // A member we use, twice: refused.
        let twice = r#"{"headers":{},"headers":{"authorization":"Bearer t"},"version":"2.0","type":"REQUEST"}"#;
        assert!(Event::read(twice).is_none());
        assert!(Event::read("[]").is_none());
    }

    #[test]
    fn splits_method_and_route_arns() {
        let (base, method, path) =
            split_arn("arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/api/items").expect("arn");
        assert_eq!(
            (base, method, path),
            ("arn:aws:execute-api:eu-west-1:123456789012:abc123/prod", "GET", "api/items")
        );
        let (_, method, path) =
            split_arn("arn:aws:execute-api:eu-west-1:123456789012:abc123/$default/POST/").expect("arn");
        assert_eq!((method, path), ("POST", ""));
        assert!(split_arn("not-an-arn").is_none());
    }
}
