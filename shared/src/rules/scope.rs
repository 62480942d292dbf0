//! Scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens of printable ASCII
//! other than space, `"` and `\`.

use std::collections::BTreeSet;

/// A set of scope tokens, kept in a stable order so `scope` strings are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

/// The requested scope is not valid RFC 6749 §3.3 syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope")]
pub struct MalformedScope;

impl Scope {
    /// Parses a space-delimited scope string. Empty tokens (repeated spaces) are refused,
    /// as is an empty string.
    pub fn parse(raw: &str) -> Result<Self, MalformedScope> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ') {
            let valid = !token.is_empty()
                && token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return Err(MalformedScope);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// A scope from already-validated tokens (e.g. a user's stored scopes).
    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    /// Whether every token of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether every token of `self` is in `granted`, a scope string as a token carries it
    /// (the authorizer's hot path: no set is built).
    pub fn is_granted_by(&self, granted: &str) -> bool {
        self.tokens().all(|needed| granted.split(' ').any(|token| token == needed))
    }

    /// The tokens in both.
    pub fn intersection(&self, other: &Scope) -> Scope {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether no token is in it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The RFC 6749 string form: tokens joined by single spaces.
    pub fn to_scope_string(&self) -> String {
        self.tokens().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_in_a_stable_order() {
        let scope = Scope::parse("write read write").expect("valid");
        assert_eq!(scope.to_scope_string(), "read write");
    }

    #[test]
    fn refuses_empty_tokens_and_forbidden_characters() {
        for raw in ["", " ", "read  write", "read ", "a\"b", "a\\b", "caf\u{e9}", "a\tb"] {
            assert_eq!(Scope::parse(raw), Err(MalformedScope), "{raw:?}");
        }
    }

    #[test]
    fn checks_a_scope_string_without_building_a_set() {
        let needed = Scope::from_tokens(["read", "write"]);
        assert!(needed.is_granted_by("write admin read"));
        assert!(!needed.is_granted_by("read"));
        assert!(!needed.is_granted_by("readwrite"), "whole tokens only");
        assert!(Scope::default().is_granted_by(""), "nothing needed");
    }

    #[test]
    fn intersects() {
        let login = Scope::from_tokens(["read", "write"]);
        assert_eq!(login.intersection(&Scope::from_tokens(["read", "admin"])).to_scope_string(), "read");
    }

    #[test]
    fn checks_subsets() {
        let granted = Scope::from_tokens(["read", "write"]);
        assert!(Scope::parse("read").expect("valid").is_subset_of(&granted));
        assert!(!Scope::parse("read admin").expect("valid").is_subset_of(&granted));
    }
}
