//! The one normal form of a requester's justification, applied once when a request is decoded, so
//! every rule (`justification`, `ticket`, `itsm`, CEL `when`) and the audit record judge the same
//! visible text, and invisible or look-alike characters cannot pad it past a rule.
//!
//! The steps, in order:
//! 1. remove invisible characters ([`is_invisible`]);
//! 2. Unicode NFKC: compatibility forms become their plain letters (`ｔｅｓｔ` and `𝐭𝐞𝐬𝐭` → `test`,
//!    no-break and ideographic spaces → space, ligatures split);
//! 3. 1 and 2 again until nothing changes (NFKC can yield a filler, e.g. U+FFA0 → U+1160, and removing
//!    an invisible character can bring a letter and its accent together for NFKC to compose);
//! 4. every run of whitespace (Unicode `White_Space`: tabs, line breaks, U+1680, U+2028, …) becomes
//!    one space, and the text is trimmed.
//!
//! The result is a fixed point: normalising it again changes nothing (a property test holds it).

use unicode_normalization::UnicodeNormalization;

/// How often steps 1 and 2 may alternate. Each round that changes anything removes at least one
/// character NFKC produced from a compatibility form; real text needs one round, two at most, so
/// this only bounds the work on adversarial input.
const MAX_ROUNDS: usize = 8;

/// The normal form of a justification (see the module documentation); `""` when nothing visible
/// remains.
pub fn normalize_justification(text: &str) -> String {
    if text.bytes().all(|byte| matches!(byte, b' '..=b'~')) {
        return collapse_printable_ascii(text);
    }
    normalize_any(text)
}

/// The normal form of text made only of printable ASCII (U+0020–U+007E), the justification of
/// nearly every real request: none of it is invisible and NFKC leaves ASCII as it is, so only the
/// space runs are collapsed and the ends trimmed, which is what [`normalize_any`] does to such text
/// (a property test holds the two equal), without its two or three passes over the text.
fn collapse_printable_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The general normal form: the steps of the module documentation, for any text.
fn normalize_any(text: &str) -> String {
    let mut current: String = text.chars().filter(|&c| !is_invisible(c)).collect();
    for _ in 0..MAX_ROUNDS {
        let composed: String = current.nfkc().collect();
        let visible: String = composed.chars().filter(|&c| !is_invisible(c)).collect();
        let settled = visible == composed;
        current = visible;
        if settled {
            break;
        }
    }
    let mut out = String::with_capacity(current.len());
    for word in current.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Characters that show nothing, or nothing by themselves, and so could pad a justification
/// unseen: every Unicode `Default_Ignorable_Code_Point` (zero-width space/joiners, soft hyphen,
/// bidi marks, embeddings, overrides and isolates, word joiner, invisible operators, variation
/// selectors, combining grapheme joiner, Hangul fillers U+115F, U+1160, U+3164, U+FFA0, Mongolian
/// free variation selectors and vowel separator, Khmer inherent vowels, byte order mark, tags),
/// the remaining format characters (general category `Cf`: Arabic number signs, interlinear
/// annotation marks, Egyptian hieroglyph format controls, …), control characters other than
/// whitespace, U+2800 BRAILLE PATTERN BLANK and U+16FE4 KHITAN SMALL SCRIPT FILLER.
/// Whitespace itself is not invisible: it separates words and is collapsed, not removed.
pub fn is_invisible(c: char) -> bool {
    if c.is_whitespace() {
        return false;
    }
    if c.is_control() {
        return true;
    }
    matches!(
        u32::from(c),
        // Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 16.0).
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
            // General category Cf not already above.
            | 0x0600..=0x0605
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            // Blank symbols and fillers that are neither.
            | 0x2800
            | 0x16FE4
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn printable_ascii_takes_the_short_path_to_the_same_normal_form(
            text in "[ -~]{0,80}"
        ) {
            prop_assert_eq!(normalize_justification(&text), normalize_any(&text));
        }

        #[test]
        fn text_with_any_other_character_is_normalised_in_full(
            text in "[ -~\\t\\n\u{A0}\u{200B}\u{FF41}\u{1D41A}]{0,40}"
        ) {
            prop_assert_eq!(normalize_justification(&text), normalize_any(&text));
        }
    }

    #[test]
    fn the_short_path_is_taken_only_for_printable_ascii() {
        // A tab, a no-break space and a full-width letter each send the text down the full path,
        // whose result differs from what collapsing spaces alone would give.
        for (text, normal) in [
            ("fix\tit", "fix it"),
            ("fix\u{A0}it", "fix it"),
            ("fix \u{FF49}t", "fix it"),
        ] {
            assert_ne!(collapse_printable_ascii(text), normal);
            assert_eq!(normalize_justification(text), normal);
        }
        assert_eq!(normalize_justification("  two   spaces  "), "two spaces");
    }

    #[test]
    fn padding_look_alikes_and_whitespace_runs_are_normalised_away() {
        let cases = [
            ("fix\u{200B}\u{200B} it", "fix it"),
            ("\u{FEFF}\u{202E}test\u{202C}", "test"),
            ("ｔｅｓｔ", "test"),
            ("𝐭𝐞𝐬𝐭", "test"),
            ("te\u{AD}st", "test"),
            ("need\u{A0}admin", "need admin"),
            ("need\u{3000}\u{2003}admin", "need admin"),
            ("need\r\n\t admin", "need admin"),
            ("need \u{3164} \u{2800} \u{FFA0} admin", "need admin"),
            ("\u{115F}\u{1160}", ""),
            ("a\u{7}b\u{0}c", "abc"),
            ("\u{E0041}\u{E0042}tagged", "tagged"),
            ("ﬁx", "fix"),
            ("Änderung", "Änderung"),
            // A letter and its accent separated by an invisible joiner compose once it is gone.
            ("e\u{200D}\u{301}", "\u{E9}"),
            // NFKC turns the halfwidth filler into U+1160, which is invisible too.
            ("e\u{FFA0}\u{301}", "\u{E9}"),
            ("  ", ""),
        ];
        for (text, expected) in cases {
            assert_eq!(normalize_justification(text), expected, "{text:?}");
        }
    }

    #[test]
    fn every_character_alone_and_between_a_letter_and_its_accent_normalises_to_a_fixed_point() {
        // Every scalar value of the planes with compatibility forms, invisible characters and
        // combining marks (the basic and supplementary multilingual planes, CJK compatibility
        // ideographs, tags and variation selectors), alone and between a letter and an accent:
        // normalising twice equals normalising once. The property test covers the rest at random.
        let planes = [0..=0x1FFFF_u32, 0x2F800..=0x2FA1F, 0xE0000..=0xE0FFF];
        for code in planes.into_iter().flatten() {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            for text in [c.to_string(), format!("e{c}\u{301}")] {
                let once = normalize_justification(&text);
                assert_eq!(normalize_justification(&once), once, "U+{code:04X}");
            }
        }
    }

    /// Text drawn mostly from the characters that interact: letters, combining marks, Hangul jamo,
    /// compatibility forms, whitespace of every kind and invisible characters.
    fn tricky_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just('a'),
            Just('e'),
            Just(' '),
            Just('\u{A0}'),
            Just('\u{3000}'),
            Just('\n'),
            Just('\u{301}'),
            Just('\u{308}'),
            Just('\u{327}'),
            Just('\u{200B}'),
            Just('\u{200D}'),
            Just('\u{AD}'),
            Just('\u{FEFF}'),
            Just('\u{202E}'),
            Just('\u{3164}'),
            Just('\u{FFA0}'),
            Just('\u{1100}'),
            Just('\u{1161}'),
            Just('\u{11A8}'),
            Just('\u{AC00}'),
            Just('\u{FF41}'),
            Just('\u{FB01}'),
            Just('\u{2800}'),
            Just('\u{FDFA}'),
            Just('\u{E0100}'),
            any::<char>(),
        ];
        proptest::collection::vec(pieces, 0..64).prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent_and_leaves_no_invisible_or_repeated_space(
            text in prop_oneof![tricky_text(), any::<String>()]
        ) {
            let once = normalize_justification(&text);
            prop_assert_eq!(normalize_justification(&once), once.clone());
            prop_assert!(!once.chars().any(is_invisible), "{:?}", once);
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
            prop_assert!(!once.contains("  "));
            prop_assert!(once.chars().all(|c| c == ' ' || !c.is_whitespace()));
        }
    }
}
