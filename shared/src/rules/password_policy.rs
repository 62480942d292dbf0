//! What a new password must be: NIST SP 800-63B-4 §3.1.1.2 ("Password Verifiers"). At
//! least [`MIN_PASSWORD_CHARS`] characters and at most a generous [`MAX_PASSWORD_CHARS`],
//! each Unicode code point one character; no composition rules (no "a digit and a symbol");
//! never truncated; refused when it is common, expected or guessable.
//!
//! "Common or guessable" is judged by zxcvbn (Dropbox's estimator, the `zxcvbn` crate)
//! rather than by a bundled list of breached passwords: it knows the most common
//! passwords, dictionary words and names, keyboard walks (`qwertyuiop`), repeats,
//! sequences, dates and l33t substitutions, and it takes the context-specific words §3.1.1.2
//! asks verifiers to refuse (the username, the service's name) as inputs. A password
//! whose estimated guesses stay under 10^10 (a score below [`MIN_SCORE`]) is refused: that
//! is zxcvbn's line for "safely unguessable" against an offline attack on a slow hash.
//! <https://pages.nist.gov/800-63-4/sp800-63b.html#passwordver>

use zxcvbn::Score;

/// The fewest characters (code points) a new password may have (NIST SP 800-63B-4
/// §3.1.1.2: at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The most characters a new password may have: far above the 64 §3.1.1.2 asks verifiers
/// to allow; the byte bound ([`crate::rules::password::MAX_PASSWORD_BYTES`]) also holds.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The lowest zxcvbn score accepted (3: "safely unguessable", over 10^10 guesses).
pub const MIN_SCORE: Score = Score::Three;

/// Words that make a password guessable here whoever the user is (§3.1.1.2:
/// "context-specific words, such as the name of the service").
const SERVICE_WORDS: [&str; 2] = ["tokenauth", "password"];

/// Why a new password is refused; the description is safe to show (it never echoes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRefusal {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    TooShort,
    /// More than [`MAX_PASSWORD_CHARS`] characters or the byte bound.
    TooLong,
    /// The same as the current password.
    Unchanged,
    /// Common, expected or guessable (the username, a common password, a keyboard walk).
    Guessable,
}

impl PasswordRefusal {
    /// The `error_description` of the 400 `invalid_request`.
    pub fn description(self) -> &'static str {
        match self {
            Self::TooShort => "new_password must be at least 8 characters",
            Self::TooLong => "new_password must be at most 256 characters",
            Self::Unchanged => "new_password must differ from the current password",
            Self::Guessable => {
                "new_password is too common or easy to guess (a common password, a word, a keyboard \
                 pattern or the username); a longer passphrase of unrelated words works"
            }
        }
    }
}

/// Judges a new password for `username` (its normalised form), without I/O. The length is
/// checked first, so a very long input costs no estimate.
pub fn check_new_password(password: &str, username: &str) -> Result<(), PasswordRefusal> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordRefusal::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS || password.len() > crate::rules::password::MAX_PASSWORD_BYTES {
        return Err(PasswordRefusal::TooLong);
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) && lower.len() < username.len() * 2 {
        // Mostly the username: guessable whatever the estimator makes of the rest.
        return Err(PasswordRefusal::Guessable);
    }
    let mut inputs = vec![username];
    inputs.extend(SERVICE_WORDS);
    if zxcvbn::zxcvbn(password, &inputs).score() < MIN_SCORE {
        return Err(PasswordRefusal::Guessable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_expected_passwords_are_refused() {
        for common in
            ["password1", "qwertyuiop", "Password123!", "letmein2024", "iloveyou", "123456789", "aaaaaaaaaaaa"]
        {
            assert_eq!(check_new_password(common, "ana"), Err(PasswordRefusal::Guessable), "{common}");
        }
    }

    #[test]
    fn the_username_and_the_service_name_are_refused() {
        assert_eq!(check_new_password("ana.lopez", "ana.lopez"), Err(PasswordRefusal::Guessable));
        assert_eq!(check_new_password("ana.lopez1", "ana.lopez"), Err(PasswordRefusal::Guessable));
        assert_eq!(check_new_password("Tokenauth2026", "ana"), Err(PasswordRefusal::Guessable));
    }

    #[test]
    fn length_is_counted_in_characters_with_no_composition_rules() {
        assert_eq!(check_new_password("short", "ana"), Err(PasswordRefusal::TooShort));
        assert_eq!(check_new_password("ȧḃċḋ", "ana"), Err(PasswordRefusal::TooShort), "4 characters, 9 bytes");
        assert_eq!(check_new_password(&"x".repeat(MAX_PASSWORD_CHARS + 1), "ana"), Err(PasswordRefusal::TooLong));
        // Lowercase letters and spaces only: no digit or symbol is asked for.
        let passphrase = "correct horse battery staple under a violet morning sky by the quiet river bank";
        let passphrase = &passphrase[..64];
        assert_eq!(passphrase.chars().count(), 64);
        assert_eq!(check_new_password(passphrase, "ana"), Ok(()));
        assert_eq!(check_new_password("crimson-otter-lantern-42", "ana"), Ok(()));
        assert_eq!(check_new_password("ταχύτητα-φως-θάλασσα", "ana"), Ok(()), "any script");
    }
}
