//! Where a session is used from, coarsely: the network (an IPv4 /24 or an IPv6 /48, never
//! the address) and the user-agent family (a browser's or an app's name, never the header),
//! and whether a refresh comes from somewhere other than the session's last use.
//!
//! Only these coarse values are stored on the family and shown in the user's list of
//! sessions: they are enough to notice "a session used from somewhere new" (issue 22) and
//! identify no one more precisely than the `source_ip` every audit line already carries.
//! What a change does is [`OnContextChange`]: recorded by default (mobile clients change
//! networks all the time; `docs/decisions.md`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// The longest user-agent family kept, in characters.
pub const MAX_USER_AGENT_FAMILY_CHARS: usize = 32;

/// How much of a `User-Agent` header is looked at: a family is named in its first words,
/// and the parser's work stays bounded whatever the header's length.
const USER_AGENT_PREFIX_BYTES: usize = 512;

/// The coarse network of `source_ip`: an IPv4 address's /24 (`203.0.113.0/24`), an IPv6
/// address's /48 (`2001:db8:1::/48`, a site's prefix under RFC 6177), an IPv4-mapped IPv6
/// address's IPv4 /24. `None` for anything that is not an address.
pub fn network_of(source_ip: &str) -> Option<String> {
    match source_ip.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4_network(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(v4_network(v4)),
            None => {
                let [a, b, c, ..] = v6.segments();
                Some(format!("{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0)))
            }
        },
    }
}

fn v4_network(v4: Ipv4Addr) -> String {
    let [a, b, c, _] = v4.octets();
    format!("{a}.{b}.{c}.0/24")
}

/// The user-agent family of a `User-Agent` header, never the header itself: a browser's
/// name as woothee recognises it ("Chrome", "Safari"), else the name of the first
/// product token without its version (RFC 9110 §10.1.5: `okhttp/4.12.0` → `okhttp`,
/// `MyApp/2.1 (iPhone; iOS 17)` → `MyApp`). Only ASCII letters, digits, `.`, `-`, `_` (and
/// spaces in a browser's name), at most [`MAX_USER_AGENT_FAMILY_CHARS`]; `None` for an
/// empty header or one that names nothing in that form.
pub fn user_agent_family(header: &str) -> Option<String> {
    let header = prefix(header.trim(), USER_AGENT_PREFIX_BYTES);
    if header.is_empty() {
        return None;
    }
    static PARSER: OnceLock<woothee::parser::Parser> = OnceLock::new();
    let parsed = PARSER.get_or_init(woothee::parser::Parser::new).parse(header);
    // Browsers only: for the rest woothee names a class ("HTTP Library" for curl), coarser
    // than the product an app or a tool names itself by.
    let browser = parsed.filter(|r| r.browser_type == "browser").map(|r| r.name);
    if let Some(name) = browser.filter(|n| *n != "UNKNOWN" && is_safe_family(n, true)) {
        return Some(name.to_owned());
    }
    // RFC 9110 §10.1.5: product = token ["/" product-version], the most significant first.
    let first = header.split_whitespace().next()?;
    let name = first.split('/').next()?;
    is_safe_family(name, false).then(|| name.to_owned())
}

fn is_safe_family(name: &str, spaces: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_AGENT_FAMILY_CHARS
        && name.bytes().any(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') || (spaces && b == b' '))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where a request came from, coarsely. A side that cannot be told (no address, no
/// header, or nothing recognisable in it) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionContext {
    /// [`network_of`] the caller's address.
    pub network: Option<String>,
    /// [`user_agent_family`] of its `User-Agent` header.
    pub user_agent: Option<String>,
}

impl SessionContext {
    /// The context of a request from `source_ip` with the `User-Agent` header `user_agent`.
    pub fn of(source_ip: Option<&str>, user_agent: Option<&str>) -> Self {
        Self { network: source_ip.and_then(network_of), user_agent: user_agent.and_then(user_agent_family) }
    }
}

/// What differs between a session's last use and this one: each side as it was and as it
/// now is, when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextChange {
    /// (was, now) of the network, if it changed.
    pub network: Option<(String, String)>,
    /// (was, now) of the user-agent family, if it changed.
    pub user_agent: Option<(String, String)>,
}

impl ContextChange {
    /// What changed, as audit lines name it: `network`, `user_agent` or `both`.
    pub fn what(&self) -> &'static str {
        match (&self.network, &self.user_agent) {
            (Some(_), Some(_)) => "both",
            (Some(_), None) => "network",
            _ => "user_agent",
        }
    }
}

/// Whether `family` was last used from another network or user-agent family than
/// `now_seen`. A side unknown on either part is no change: families written before this
/// feature have none, and a request without a header tells nothing.
pub fn context_change(
    family: &crate::rules::records::FamilyRecord,
    now_seen: &SessionContext,
) -> Option<ContextChange> {
    fn changed(was: Option<&String>, now: Option<&String>) -> Option<(String, String)> {
        match (was, now) {
            (Some(was), Some(now)) if was != now => Some((was.clone(), now.clone())),
            _ => None,
        }
    }
    let change = ContextChange {
        network: changed(family.network.as_ref(), now_seen.network.as_ref()),
        user_agent: changed(family.user_agent.as_ref(), now_seen.user_agent.as_ref()),
    };
    (change.network.is_some() || change.user_agent.is_some()).then_some(change)
}

/// What a refresh from a new context does (`ON_CONTEXT_CHANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnContextChange {
    /// Rotate as usual, and write an audit line and a metric once the rotation committed.
    #[default]
    Record,
    /// End the session (revoked, its `sid` denylisted) and issue nothing.
    End,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::login::{new_family, LoginPolicy, SessionOrigin};
    use crate::rules::records::UserRecord;
    use crate::rules::scope::Scope;
    use crate::rules::token::RefreshToken;

    #[test]
    fn an_ipv4_address_is_its_24() {
        assert_eq!(network_of("203.0.113.77").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(network_of(" 198.51.100.7 ").as_deref(), Some("198.51.100.0/24"));
        assert_eq!(network_of("10.0.0.0").as_deref(), Some("10.0.0.0/24"));
    }

    #[test]
    fn an_ipv6_address_is_its_48() {
        assert_eq!(network_of("2001:db8:1:2:3:4:5:6").as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(network_of("2001:db8::1").as_deref(), Some("2001:db8::/48"));
        assert_eq!(network_of("2001:0db8:00ab:ffff::").as_deref(), Some("2001:db8:ab::/48"));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_is_its_ipv4_24() {
        assert_eq!(network_of("::ffff:203.0.113.9").as_deref(), Some("203.0.113.0/24"));
    }

    #[test]
    fn what_is_not_an_address_has_no_network() {
        for garbage in ["", "-", "unknown", "203.0.113", "203.0.113.256", "203.0.113.7:443", "fe80::1%eth0", "::g"] {
            assert_eq!(network_of(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_network_never_holds_the_address() {
        let network = network_of("203.0.113.77").unwrap();
        assert!(!network.contains("77"), "{network}");
        let network = network_of("2001:db8:1:2:3:4:5:6").unwrap();
        assert!(!network.contains(":2:3"), "{network}");
    }

    #[test]
    fn a_browser_is_named_by_its_browser() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(user_agent_family(chrome).as_deref(), Some("Chrome"));
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
        assert_eq!(user_agent_family(safari).as_deref(), Some("Safari"));
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        assert_eq!(user_agent_family(firefox).as_deref(), Some("Firefox"));
    }

    #[test]
    fn an_app_is_named_by_its_first_product_without_the_version() {
        assert_eq!(user_agent_family("okhttp/4.12.0").as_deref(), Some("okhttp"));
        assert_eq!(user_agent_family("MyApp/2.1 (iPhone; iOS 17)").as_deref(), Some("MyApp"));
        assert_eq!(user_agent_family("curl/8.5.0").as_deref(), Some("curl"));
        assert_eq!(user_agent_family("Dalvik/2.1.0 (Linux; U; Android 14)").as_deref(), Some("Dalvik"));
        assert_eq!(user_agent_family("tokenauth-client").as_deref(), Some("tokenauth-client"));
    }

    #[test]
    fn empty_garbage_or_overlong_names_nothing() {
        for garbage in ["", "   ", "/1.0", "(compatible)", "<script>/1", "ä/1", "\"quoted\"/2"] {
            assert_eq!(user_agent_family(garbage), None, "{garbage:?}");
        }
        let long = format!("{}/1.0", "a".repeat(MAX_USER_AGENT_FAMILY_CHARS + 1));
        assert_eq!(user_agent_family(&long), None);
        let longest = format!("{}/1.0", "a".repeat(MAX_USER_AGENT_FAMILY_CHARS));
        assert_eq!(user_agent_family(&longest).map(|f| f.len()), Some(MAX_USER_AGENT_FAMILY_CHARS));
    }

    #[test]
    fn a_family_never_holds_the_version_or_the_details() {
        let family = user_agent_family("MyApp/2.1.7 (iPhone15,2; iOS 17.1; device-id 1234)").unwrap();
        assert!(!family.contains('2') && !family.contains("1234"), "{family}");
    }

    #[test]
    fn a_huge_header_is_read_only_in_its_first_bytes() {
        let huge = format!("okhttp/4.12.0 {}", "x".repeat(100_000));
        assert_eq!(user_agent_family(&huge).as_deref(), Some("okhttp"));
        let multibyte = "é".repeat(USER_AGENT_PREFIX_BYTES);
        assert_eq!(user_agent_family(&multibyte), None);
    }

    fn family_seen(network: Option<&str>, user_agent: Option<&str>) -> crate::rules::records::FamilyRecord {
        let policy = LoginPolicy {
            client_id: "app".into(),
            refresh_ttl_secs: 3600,
            refresh_idle_secs: 600,
            max_failures: 5,
            failure_window_secs: 60,
            device_ttl_secs: 60,
        };
        let user = UserRecord::new("u-1".into(), "hash".into(), vec!["read".into()], 0);
        let context = seen(network, user_agent);
        let origin = SessionOrigin { bound_to: None, device_name: None, context: &context };
        new_family("alice", &user, &Scope::from_tokens(["read"]), &RefreshToken::new_family(), 0, &policy, &origin)
    }

    fn seen(network: Option<&str>, user_agent: Option<&str>) -> SessionContext {
        SessionContext { network: network.map(str::to_owned), user_agent: user_agent.map(str::to_owned) }
    }

    #[test]
    fn the_same_network_and_family_is_no_change() {
        let family = family_seen(Some("203.0.113.0/24"), Some("okhttp"));
        assert_eq!(context_change(&family, &seen(Some("203.0.113.0/24"), Some("okhttp"))), None);
        assert_eq!(context_change(&family, &SessionContext::of(Some("203.0.113.200"), Some("okhttp/5.0"))), None);
    }

    #[test]
    fn a_new_network_or_family_is_a_change_of_that_side() {
        let family = family_seen(Some("203.0.113.0/24"), Some("okhttp"));
        let network = context_change(&family, &seen(Some("198.51.100.0/24"), Some("okhttp"))).unwrap();
        assert_eq!(network.network, Some(("203.0.113.0/24".into(), "198.51.100.0/24".into())));
        assert_eq!((network.user_agent.as_ref(), network.what()), (None, "network"));
        let agent = context_change(&family, &seen(Some("203.0.113.0/24"), Some("curl"))).unwrap();
        assert_eq!(agent.user_agent, Some(("okhttp".into(), "curl".into())));
        assert_eq!((agent.network.as_ref(), agent.what()), (None, "user_agent"));
        let both = context_change(&family, &seen(Some("198.51.100.0/24"), Some("curl"))).unwrap();
        assert_eq!(both.what(), "both");
    }

    #[test]
    fn a_side_unknown_on_either_part_is_no_change() {
        // A family written before this feature knows neither side.
        let old = family_seen(None, None);
        assert_eq!(context_change(&old, &seen(Some("198.51.100.0/24"), Some("curl"))), None);
        // A request without a header or an address tells nothing about that side.
        let family = family_seen(Some("203.0.113.0/24"), Some("okhttp"));
        assert_eq!(context_change(&family, &seen(None, None)), None);
        let only_network = context_change(&family, &seen(Some("198.51.100.0/24"), None)).unwrap();
        assert_eq!(only_network.what(), "network");
        let half_known = family_seen(None, Some("okhttp"));
        assert_eq!(context_change(&half_known, &seen(Some("198.51.100.0/24"), Some("okhttp"))), None);
    }

    #[test]
    fn record_is_the_default() {
        assert_eq!(OnContextChange::default(), OnContextChange::Record);
    }
}
