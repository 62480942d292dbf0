//! The access token of an `Authorization` header, for every path that takes one: `Bearer`
//! (RFC 6750 §2.1) for the authorizer (hot path) and revoke-all, `DPoP` (RFC 9449 §7.1)
//! for the authorizer.

/// `Bearer <token>` (RFC 6750 §2.1): scheme case-insensitive, exactly one token of the
/// b64token alphabet, nothing else. Shared by revoke-all and the authorizer.
pub fn parse_bearer(value: &str) -> Option<&str> {
    credential(value, "bearer")
}

/// `DPoP <token>` (RFC 9449 §7.1), read as strictly as `Bearer`.
pub fn parse_dpop(value: &str) -> Option<&str> {
    credential(value, "dpop")
}

/// `<scheme> 1*SP <token>` (RFC 6750 §2.1, RFC 9110 §11.4): the scheme case-insensitive
/// and looked at first (a credential of another scheme is not scanned), then one token of
/// the b64token alphabet after one or more spaces.
fn credential<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, token) = value.split_once(' ')?;
    if !given.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let token = token.trim_start_matches(' ');
    // A table and no early exit: this runs over the whole token on every authorizer request.
    let b64token = token.bytes().fold(true, |ok, b| ok & B64TOKEN[usize::from(b)]);
    (!token.is_empty() && b64token).then_some(token)
}

/// The b64token alphabet of RFC 6750 §2.1 (RFC 9110's token68), by byte.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_exactly_one_bearer_token() {
        assert_eq!(parse_bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(parse_bearer("bEaReR abc"), Some("abc"));
        assert_eq!(parse_bearer("Bearer  abc"), Some("abc"), "1*SP");
        for bad in ["abc", "Bearer", "Bearer ", "Bearer  ", "Bearer a b", "Basic abc", "Bearer\tabc", "Bearer a,b"] {
            assert_eq!(parse_bearer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn extracts_exactly_one_dpop_token() {
        assert_eq!(parse_dpop("DPoP abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(parse_dpop("dpop abc"), Some("abc"));
        for bad in ["Bearer abc", "DPoP", "DPoP ", "DPoP a b", "DPoPabc", "DPoP a,b"] {
            assert_eq!(parse_dpop(bad), None, "{bad:?}");
        }
    }
}
