//! Per-source limits of login and refresh: which bucket a request is charged to, and when a
//! full bucket frees up again. No I/O: the counting is one conditional write in
//! [`crate::store::DynamoLimits`].
//!
//! A fixed-window counter: each source has one counter per window of `window_secs`,
//! keyed by the window's index, so a new window is a new item (nothing to reset, no
//! read-then-write) and the old one expires by TTL. A check is allowed while the counter
//! is below `max`. The price of the fixed window is its edge: a source can spend `max`
//! at the end of one window and `max` again at the start of the next, so the largest
//! burst is `2 × max` within a moment and the long-run rate is `max` per window
//! (`docs/decisions.md` says why that is acceptable here).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// What a source is limited on. Each has its own buckets and its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedAction {
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/refresh`.
    Refresh,
}

impl LimitedAction {
    /// The name in bucket keys, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Refresh => "refresh",
        }
    }
}

/// At most `max` requests per source in each window of `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub max: u32,
    /// The window's length in seconds (above 0).
    pub window_secs: u64,
}

/// One check against one bucket: what the store writes and how it answers a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    /// The item's key: `<action>#<source>#<window index>`.
    pub bucket: String,
    /// Requests allowed in the bucket.
    pub max: u32,
    /// When the item may be deleted (TTL): the end of its window.
    pub expires_at: u64,
    /// `Retry-After` if the bucket is full: until the window ends, by this clock.
    pub retry_after: Duration,
}

impl RateLimit {
    /// The check of a request from `source` (an address as API Gateway saw it) at `now`.
    pub fn check(self, action: LimitedAction, source: &str, now: u64) -> LimitCheck {
        let window_secs = self.window_secs.max(1);
        let index = now / window_secs;
        let end = (index + 1).saturating_mul(window_secs);
        LimitCheck {
            bucket: format!("{}#{}#{index}", action.as_str(), source_key(source)),
            max: self.max,
            expires_at: end,
            retry_after: Duration::from_secs(end.saturating_sub(now).max(1)),
        }
    }
}

/// The part of an address one caller controls: an IPv4 address, or the /64 of an IPv6
/// address (one subscriber gets at least a /64, so every address in it is one caller).
/// An IPv4-mapped IPv6 address is its IPv4 address. Anything that does not parse (API
/// Gateway always sends an address) is its own source, cut to 64 bytes.
pub fn source_key(source: &str) -> String {
    match source.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Err(_) => source.chars().filter(|c| c.is_ascii_graphic()).take(64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit { max: 3, window_secs: 60 };

    #[test]
    fn a_check_names_its_action_source_and_window() {
        let check = LIMIT.check(LimitedAction::Login, "198.51.100.7", 6_000);
        assert_eq!(check.bucket, "login#198.51.100.7#100");
        assert_eq!(check.max, 3);
        assert_eq!(check.expires_at, 6_060);
        let refresh = LIMIT.check(LimitedAction::Refresh, "198.51.100.7", 6_000);
        assert_eq!(refresh.bucket, "refresh#198.51.100.7#100", "login and refresh have buckets of their own");
    }

    #[test]
    fn every_second_of_a_window_shares_one_bucket_and_the_next_window_refills() {
        let first = LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_000).bucket;
        assert_eq!(LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_059).bucket, first);
        let next = LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_060).bucket;
        assert_ne!(next, first, "the next window is a new, empty bucket");
        assert_eq!(next, "login#192.0.2.1#101");
    }

    #[test]
    fn retry_after_is_the_rest_of_the_window_rounded_up_and_never_zero() {
        assert_eq!(LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_000).retry_after, Duration::from_secs(60));
        assert_eq!(LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_059).retry_after, Duration::from_secs(1));
        assert_eq!(LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_030).retry_after, Duration::from_secs(30));
        let one_sec = RateLimit { max: 1, window_secs: 1 };
        assert_eq!(one_sec.check(LimitedAction::Login, "192.0.2.1", 7).retry_after, Duration::from_secs(1));
    }

    #[test]
    fn a_burst_shares_the_bucket_and_the_window_edge_allows_at_most_twice_the_limit() {
        // The largest burst a source can get: the last second of one window and the first
        // of the next, each a bucket of `max`.
        let late = LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_059);
        let early = LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_060);
        assert_ne!(late.bucket, early.bucket);
        assert_eq!(late.max + early.max, 2 * LIMIT.max);
        // Two seconds on: still the second bucket, so no third helping.
        assert_eq!(LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_062).bucket, early.bucket);
    }

    #[test]
    fn a_clock_going_backwards_charges_an_earlier_window_with_a_bounded_retry_after() {
        // An instance whose clock is behind lands in the previous window's bucket (already
        // spent or expiring): it is charged there, and its Retry-After is still within one
        // window and at least a second.
        let ahead = LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_061);
        let behind = LIMIT.check(LimitedAction::Login, "192.0.2.1", 6_058);
        assert_ne!(ahead.bucket, behind.bucket);
        assert_eq!(behind.retry_after, Duration::from_secs(2));
        for now in [0, 1, 59, 60, 61, u64::MAX / 2, u64::MAX] {
            let check = LIMIT.check(LimitedAction::Login, "192.0.2.1", now);
            assert!(check.retry_after >= Duration::from_secs(1), "at {now}");
            assert!(check.retry_after <= Duration::from_secs(60), "at {now}");
        }
    }

    #[test]
    fn a_zero_window_is_read_as_one_second_not_a_division_by_zero() {
        let check = RateLimit { max: 1, window_secs: 0 }.check(LimitedAction::Refresh, "192.0.2.1", 10);
        assert_eq!(check.bucket, "refresh#192.0.2.1#10");
        assert_eq!(check.retry_after, Duration::from_secs(1));
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        assert_eq!(source_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(source_key("2001:db8:1:2::1"), source_key("2001:db8:1:2:ffff::9"), "one /64, one caller");
        assert_ne!(source_key("2001:db8:1:2::1"), source_key("2001:db8:1:3::1"));
        assert_eq!(source_key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(source_key(" 192.0.2.1 "), "192.0.2.1");
        assert_ne!(source_key("127.0.0.1"), source_key("127.0.0.2"));
    }

    #[test]
    fn an_unparseable_source_is_kept_printable_and_bounded() {
        let key = source_key(&format!("not an address {}", "x".repeat(200)));
        assert!(key.len() <= 64);
        assert!(key.chars().all(|c| c.is_ascii_graphic()));
    }
}
