//! Usernames and their normalisation.
//!
//! The rule (also what throttling counts by): trim surrounding white space, apply Unicode
//! NFKC, lower-case. The result must be 1 to 64 characters with no white space and no
//! control characters. So `" Alice "`, `"ALICE"` and `"Ａｌｉｃｅ"` (full-width) are one
//! account, and one failure counter.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Longest accepted username, in characters, after normalisation.
pub const MAX_USERNAME_CHARS: usize = 64;

/// A normalised username: the key of the Users table.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Normalises `raw`; `None` if the result is empty, too long, or has white space or
    /// control characters.
    pub fn normalise(raw: &str) -> Option<Self> {
        let normalised: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        let chars = normalised.chars().count();
        let acceptable = (1..=MAX_USERNAME_CHARS).contains(&chars)
            && !normalised.chars().any(|c| c.is_whitespace() || c.is_control());
        acceptable.then_some(Self(normalised))
    }

    /// The normalised form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({:?})", self.0)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_width_and_surrounding_space_to_one_account() {
        let expected = Username::normalise("alice").expect("valid");
        for raw in [" Alice ", "ALICE", "\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"] {
            assert_eq!(Username::normalise(raw).as_ref(), Some(&expected), "{raw:?}");
        }
    }

    #[test]
    fn rejects_empty_long_spaced_and_control_names() {
        for raw in ["", "   ", "al ice", "al\tice", "a\u{0}b", &"x".repeat(MAX_USERNAME_CHARS + 1)] {
            assert_eq!(Username::normalise(raw), None, "{raw:?}");
        }
        assert!(Username::normalise(&"x".repeat(MAX_USERNAME_CHARS)).is_some());
    }
}
