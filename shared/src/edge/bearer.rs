//! The bearer token of an `Authorization` header (RFC 6750 §2.1), for every path that
//! takes one: the authorizer (hot path) and revoke-all.

/// `Bearer <token>` (RFC 6750 §2.1): scheme case-insensitive, exactly one token of the
/// b64token alphabet, nothing else. Shared by revoke-all and the authorizer.
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    // The scheme first: a `DPoP` credential is not scanned twice.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    // A table and no early exit: this runs over the whole token on every authorizer request.
    let b64token = token.bytes().fold(true, |ok, b| ok & B64TOKEN[usize::from(b)]);
    (!token.is_empty() && b64token).then_some(token)
}

/// The b64token alphabet of RFC 6750 §2.1, by byte.
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
        for bad in ["abc", "Bearer", "Bearer ", "Bearer a b", "Basic abc", "Bearer  abc", "Bearer a,b"] {
            assert_eq!(parse_bearer(bad), None, "{bad:?}");
        }
    }
}
