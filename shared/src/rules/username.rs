//! Usernames and their normalisation.
//!
//! The rule (also what throttling counts by): trim surrounding white space, apply Unicode
//! NFKC, lower-case. The result must be 1 to 64 characters with no white space and no
//! control characters. So `" Alice "`, `"ALICE"` and `"Ａｌｉｃｅ"` (full-width) are one
//! account, and one failure counter.
//!
//! Nor may it hold a character that renders as nothing or cannot be seen for what it is,
//! so that no second account can look like an existing one (`al\u{200B}ice` beside
//! `alice`): refused are Default_Ignorable_Code_Point (zero-width space and joiners, soft
//! hyphen, word joiner, variation selectors, Hangul fillers...) and the general categories
//! Format (Cf: bidirectional controls, U+FEFF...), Private_Use (Co), Surrogate (Cs) and
//! Unassigned (Cn), as ICU4X's Unicode data (`icu_properties`) says. Letters of any script,
//! digits and punctuation such as `.`, `-`, `_`, `@` stay allowed.

use std::fmt;

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::UnicodeNormalization;

/// Longest accepted username, in characters, after normalisation.
pub const MAX_USERNAME_CHARS: usize = 64;

/// A normalised username: the key of the Users table.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Normalises `raw`; `None` if the result is empty, too long, or has white space,
    /// control characters or characters that cannot be seen ([`is_invisible`]).
    pub fn normalise(raw: &str) -> Option<Self> {
        let normalised: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        let chars = normalised.chars().count();
        let acceptable = (1..=MAX_USERNAME_CHARS).contains(&chars)
            && !normalised.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c));
        acceptable.then_some(Self(normalised))
    }

    /// The normalised form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` renders as nothing or as something it is not: Default_Ignorable_Code_Point,
/// or general category Format, Private_Use, Surrogate or Unassigned.
pub fn is_invisible(c: char) -> bool {
    let refused_categories = GeneralCategoryGroup::Format
        .union(GeneralCategoryGroup::PrivateUse)
        .union(GeneralCategoryGroup::Surrogate)
        .union(GeneralCategoryGroup::Unassigned);
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || refused_categories.contains(CodePointMapData::<GeneralCategory>::new().get(c))
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
    fn refuses_each_named_invisible_character_anywhere_in_a_name() {
        for (c, name) in [
            ('\u{200B}', "zero-width space"),
            ('\u{00AD}', "soft hyphen"),
            ('\u{2060}', "word joiner"),
            ('\u{200C}', "zero-width non-joiner"),
            ('\u{200D}', "zero-width joiner"),
            ('\u{FEFF}', "zero-width no-break space"),
            ('\u{180E}', "Mongolian vowel separator"),
            ('\u{034F}', "combining grapheme joiner"),
            ('\u{FE0F}', "variation selector 16"),
            ('\u{3164}', "Hangul filler"),
            ('\u{115F}', "Hangul choseong filler"),
            ('\u{202E}', "right-to-left override"),
            ('\u{2066}', "left-to-right isolate"),
            ('\u{E000}', "private use"),
            ('\u{0378}', "unassigned"),
        ] {
            for raw in [format!("al{c}ice"), format!("{c}alice"), format!("alice{c}")] {
                assert_eq!(Username::normalise(&raw), None, "{name} (U+{:04X}) in {raw:?}", u32::from(c));
            }
        }
    }

    #[test]
    fn the_invisible_class_is_default_ignorables_and_format_private_unassigned_characters() {
        // Every Default_Ignorable_Code_Point of the BMP's main blocks and of tags.
        for c in ('\u{2060}'..='\u{206F}').chain('\u{FE00}'..='\u{FE0F}').chain('\u{E0000}'..='\u{E0FFF}') {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        }
        for c in ['\u{0600}', '\u{110BD}', '\u{F0000}', '\u{10FFFF}'] {
            assert!(is_invisible(c), "U+{:04X} (format, private use, noncharacter)", u32::from(c));
        }
        for c in "aZ09._-@+'é中ж日本ا".chars() {
            assert!(!is_invisible(c), "{c:?} is visible");
        }
    }

    #[test]
    fn names_of_any_script_with_dots_dashes_underscores_and_at_signs_stay_acceptable() {
        for raw in ["alice", "a.l-i_c@example.org", "user+tag", "o'brien", "josé", "мария", "李小龙", "محمد", "१२३"]
        {
            assert!(Username::normalise(raw).is_some(), "{raw:?}");
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
