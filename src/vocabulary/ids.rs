//! The one reading of an Entra object id (GUID), shared by the payload, settings, checks and rules so
//! an id accepted in one place is never refused (or spelled differently) in another.

/// A GUID in the hyphenated 8-4-4-4-12 form PIM sends, lower-cased so ids compare as strings;
/// `None` for anything else (the braced, URN and unhyphenated forms included). No trimming: callers
/// reading operator text trim first.
pub fn parse_guid(text: &str) -> Option<String> {
    if text.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(text)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// Whether `text` is a GUID in the hyphenated form (see [`parse_guid`]).
pub fn is_guid(text: &str) -> bool {
    parse_guid(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::{is_guid, parse_guid};

    #[test]
    fn only_the_hyphenated_form_is_a_guid_and_it_is_lower_cased() {
        assert_eq!(
            parse_guid("62E90394-69F5-4237-9190-012177145E10").as_deref(),
            Some("62e90394-69f5-4237-9190-012177145e10")
        );
        for bad in [
            "",
            "abc",
            "62e9039469f542379190012177145e10",
            "{62e90394-69f5-4237-9190-012177145e10}",
            "urn:uuid:62e90394-69f5-4237-9190-012177145e10",
            "62e90394-69f5-4237-9190-012177145e1g",
            "62e90394_69f5-4237-9190-012177145e10",
            "62e90394-69f5-4237-9190-012177145é1",
            " 62e90394-69f5-4237-9190-012177145e1",
        ] {
            assert_eq!(parse_guid(bad), None, "{bad}");
            assert!(!is_guid(bad), "{bad}");
        }
    }
}
