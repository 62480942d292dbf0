//! The event shapes the authorizer accepts, read borrowed from the raw JSON: only the
//! members we use, and an HTTP API event only as far as those members.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// A string from the event, borrowed when the JSON has no escapes.
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

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

/// One header, found case-insensitively.
#[derive(Default)]
pub(super) enum Header<'a> {
    /// Absent, or not a string.
    #[default]
    Missing,
    /// Exactly one.
    One(Cow<'a, str>),
    /// More than one, in different spellings: which one API Gateway checked is unknown,
    /// so none is used.
    Ambiguous,
}

impl<'a> Header<'a> {
    fn add(self, value: Option<Text<'a>>) -> Self {
        match (self, value) {
            (Header::Missing, Some(text)) => Header::One(text.0),
            (Header::Missing, None) => Header::Missing,
            (_, _) => Header::Ambiguous,
        }
    }

    /// The value if there is exactly one.
    pub(super) fn one(&self) -> Option<&str> {
        match self {
            Header::One(value) => Some(value),
            _ => None,
        }
    }
}

/// The headers the authorizer reads: the credentials and what names the URL called.
#[derive(Default)]
pub(super) struct Headers<'a> {
    pub(super) authorization: Header<'a>,
    /// The DPoP proof (RFC 9449 §4.1).
    pub(super) dpop: Header<'a>,
    pub(super) host: Header<'a>,
    /// Set by API Gateway itself: the scheme the client used.
    pub(super) forwarded_proto: Header<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Headers<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for HeadersVisitor<'a> {
            type Value = Headers<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = Headers::default();
                while let Some(key) = map.next_key::<Text<'_>>()? {
                    let name = key.0.as_ref();
                    let slot = if name.eq_ignore_ascii_case("authorization") {
                        &mut found.authorization
                    } else if name.eq_ignore_ascii_case("dpop") {
                        &mut found.dpop
                    } else if name.eq_ignore_ascii_case("host") {
                        &mut found.host
                    } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                        &mut found.forwarded_proto
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let value = map.next_value::<Option<Text<'a>>>()?;
                    *slot = std::mem::take(slot).add(value);
                }
                Ok(found)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Headers::default())
            }
        }
        deserializer.deserialize_any(HeadersVisitor(std::marker::PhantomData))
    }
}

/// Whether a REST `REQUEST` event's `multiValueHeaders` has more than one `DPoP` value
/// (its `headers` then holds only the last).
#[derive(Default)]
pub(super) struct RepeatedDpop(pub(super) bool);

impl<'de> Deserialize<'de> for RepeatedDpop {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MultiVisitor;
        impl<'de> Visitor<'de> for MultiVisitor {
            type Value = RepeatedDpop;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header lists")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut dpop_values = 0usize;
                while let Some(key) = map.next_key::<Text<'_>>()? {
                    if key.0.eq_ignore_ascii_case("dpop") {
                        dpop_values += map.next_value::<Option<Vec<IgnoredAny>>>()?.map_or(0, |v| v.len());
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(RepeatedDpop(dpop_values > 1))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RepeatedDpop(false))
            }
        }
        deserializer.deserialize_any(MultiVisitor)
    }
}

/// The members of every authorizer event shape that we use.
#[derive(Default)]
pub(super) struct Event<'a> {
    pub(super) kind: Option<Text<'a>>,
    pub(super) version: Option<Text<'a>>,
    pub(super) authorization_token: Option<Text<'a>>,
    pub(super) method_arn: Option<Text<'a>>,
    pub(super) route_arn: Option<Text<'a>>,
    pub(super) headers: Option<Headers<'a>>,
    /// Payload 2.0: the path the client called, as sent.
    pub(super) raw_path: Option<Text<'a>>,
    /// Payload 1.0 and REST: the path within the stage.
    pub(super) path: Option<Text<'a>>,
    pub(super) multi_value_headers: Option<RepeatedDpop>,
    /// Reading stopped once everything needed was known.
    pub(super) read_enough: bool,
}

/// Why the event reader stops early (an error is serde's only way to stop a map).
const READ_ENOUGH: &str = "read enough";

impl<'a> Event<'a> {
    /// The `DPoP` proof if there is exactly one: one header of that name (in any
    /// spelling), one value (HTTP APIs join repeated headers with commas; REST keeps them
    /// in `multiValueHeaders`).
    pub(super) fn dpop_proof(&self) -> Option<&str> {
        if self.multi_value_headers.as_ref().is_some_and(|m| m.0) {
            return None;
        }
        self.headers.as_ref()?.dpop.one().filter(|proof| !proof.contains(','))
    }

    /// The header `pick` chooses, if there is exactly one.
    pub(super) fn header(&self, pick: impl for<'h> Fn(&'h Headers<'a>) -> &'h Header<'a>) -> Option<&str> {
        self.headers.as_ref().and_then(|h| pick(h).one())
    }

    /// Reads the members we use from the raw event. An HTTP API event (its `version` known)
    /// is read only until its shape's members are all there: API Gateway puts
    /// `requestContext` and the rest after them, and the runtime has already checked that
    /// the whole event is JSON. `None` if the event is not a JSON object of that form.
    pub(super) fn read(raw: &'a str) -> Option<Self> {
        let mut event = Event::default();
        let mut json = serde_json::Deserializer::from_str(raw);
        match de::DeserializeSeed::deserialize(EventReader(&mut event), &mut json) {
            Ok(()) => json.end().ok().map(|()| event),
            Err(_) if event.read_enough => Some(event),
            Err(_) => None,
        }
    }

    pub(super) fn text<'f>(field: &'f Option<Text<'a>>) -> Option<&'f str> {
        field.as_ref().map(|t| t.0.as_ref())
    }

    /// Whether an HTTP API event has given every member its shape needs.
    fn has_all_it_needs(&self) -> bool {
        match (Self::text(&self.kind), Self::text(&self.version)) {
            (Some(_), Some("1.0")) => self.method_arn.is_some() && self.headers.is_some() && self.path.is_some(),
            (Some(_), Some("2.0")) => self.route_arn.is_some() && self.headers.is_some() && self.raw_path.is_some(),
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
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let member = match key.0.as_ref() {
                "type" => 0,
                "version" => 1,
                "authorizationToken" => 2,
                "methodArn" => 3,
                "routeArn" => 4,
                "headers" => 5,
                "rawPath" => 6,
                "path" => 7,
                "multiValueHeaders" => 8,
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
                5 => event.headers = map.next_value()?,
                6 => event.raw_path = map.next_value()?,
                7 => event.path = map.next_value()?,
                _ => event.multi_value_headers = map.next_value()?,
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
pub(super) enum Shape {
    RestToken,
    RestRequest,
    HttpV1,
    HttpV2,
}

/// `arn:aws:execute-api:region:account:api/stage/METHOD/path...` -> (base, method, path)
/// with base = `arn:...:api/stage` and the path without its leading `/`.
pub(super) fn split_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let resource_start = arn.match_indices(':').nth(4)?.0 + 1;
    let mut parts = arn[resource_start..].splitn(4, '/');
    let (api, stage, method) = (parts.next()?, parts.next()?, parts.next()?);
    let path = parts.next().unwrap_or("");
    let base_len = resource_start + api.len() + 1 + stage.len();
    (!api.is_empty() && !stage.is_empty() && !method.is_empty()).then(|| (&arn[..base_len], method, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(headers: &str) -> Header<'static> {
        let event = format!(r#"{{"type":"REQUEST","methodArn":"a","headers":{headers}}}"#);
        let parsed: Event<'_> = Event::read(&event).expect("an event");
        match parsed.headers.map(|h| h.authorization) {
            Some(Header::One(value)) => Header::One(value.into_owned().into()),
            Some(Header::Ambiguous) => Header::Ambiguous,
            _ => Header::Missing,
        }
    }

    #[test]
    fn two_authorization_headers_in_different_spellings_are_ambiguous_and_used_by_no_one() {
        let two = header_of(r#"{"authorization":"Bearer a","Authorization":"Bearer b"}"#);
        assert!(matches!(two, Header::Ambiguous));
        let then_null = header_of(r#"{"authorization":"Bearer a","AUTHORIZATION":null}"#);
        assert!(matches!(then_null, Header::Ambiguous));
        let null_first = header_of(r#"{"authorization":null,"Authorization":"Bearer b"}"#);
        assert!(matches!(null_first, Header::One(v) if v == "Bearer b"));
        assert!(matches!(header_of("{}"), Header::Missing));
    }

    #[test]
    fn reads_the_dpop_proof_host_and_scheme_and_refuses_two_proofs() {
        let read = |headers: &str, multi: &str| {
            let event = format!(
                r#"{{"type":"REQUEST","methodArn":"a","path":"/api/x","headers":{headers},"multiValueHeaders":{multi}}}"#
            );
            let event = Event::read(&event).expect("an event");
            (
                event.dpop_proof().map(str::to_owned),
                event.header(|h| &h.host).map(str::to_owned),
                event.header(|h| &h.forwarded_proto).map(str::to_owned),
                Event::text(&event.path).map(str::to_owned),
            )
        };
        let one = read(r#"{"DPoP":"p.q.r","Host":"h.test","X-Forwarded-Proto":"https"}"#, "{}");
        assert_eq!(one, (Some("p.q.r".into()), Some("h.test".into()), Some("https".into()), Some("/api/x".into())));
        assert_eq!(read(r#"{"dpop":"p.q.r"}"#, "{}").0.as_deref(), Some("p.q.r"));
        // Two spellings, two values joined by an HTTP API, two values of a REST API: none.
        assert_eq!(read(r#"{"dpop":"p.q.r","DPoP":"s.t.u"}"#, "{}").0, None);
        assert_eq!(read(r#"{"dpop":"p.q.r, s.t.u"}"#, "{}").0, None);
        assert_eq!(read(r#"{"DPoP":"s.t.u"}"#, r#"{"DPoP":["p.q.r","s.t.u"]}"#).0, None);
        assert_eq!(read(r#"{"DPoP":"s.t.u"}"#, r#"{"DPoP":["s.t.u"]}"#).0.as_deref(), Some("s.t.u"));
        assert_eq!(read("{}", "null").0, None);
    }

    #[test]
    fn reads_an_http_api_event_only_as_far_as_it_needs() {
        let arn = "arn:aws:execute-api:us-east-1:1:abc/$default/GET/x";
        let head = format!(
            r#"{{"version":"2.0","type":"REQUEST","routeArn":"{arn}","rawPath":"/x","headers":{{"Authorization":"Bearer t","DPoP":"p"}}"#
        );
        // Whatever follows the members we need is not read (the runtime has checked it).
        let truncated = format!(r#"{head},"requestContext":{{"never":"#);
        let event = Event::read(&truncated).expect("read enough");
        assert!(event.read_enough);
        assert_eq!(event.header(|h| &h.authorization), Some("Bearer t"));
        assert_eq!((event.dpop_proof(), Event::text(&event.raw_path)), (Some("p"), Some("/x")));
        // Without the path it needs, it reads on.
        let no_path = format!(
            r#"{{"version":"2.0","type":"REQUEST","routeArn":"{arn}","headers":{{}},"requestContext":{{"never":"#
        );
        assert!(Event::read(&no_path).is_none());
        // In another order, the whole event is read.
        let reordered = format!(
            r#"{{"headers":{{"authorization":"Bearer t"}},"routeArn":"{arn}","type":"REQUEST","version":"2.0","rawPath":"/x"}}"#
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
