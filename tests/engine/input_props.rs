//! Property tests over untrusted inputs, run by every `cargo test` (the fuzz targets need a fuzzing
//! toolchain; these do not): arbitrary and mutated request bodies, bearer tokens, rule files and upstream answers keep
//! the properties the fuzz harness checks, plus the class each kind of input must land in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness;

use harness::Class;
use pimgate::payload::decode;
use proptest::prelude::*;
use serde_json::Value;

const CASES: u32 = 256;

const SAMPLE_REQUESTS: [&str; 3] = [
    include_str!("../fixtures/requests/entra-role-activation.json"),
    include_str!("../fixtures/requests/azure-resource-activation.json"),
    include_str!("../fixtures/requests/group-activation.json"),
];

const SHIPPED_RULES: [&str; 4] = [
    include_str!("../../rules/20-critical.yaml"),
    include_str!("../../rules/30-extend.yaml"),
    include_str!("../../rules/90-everyone-else.yaml"),
    include_str!("../../rules/00-break-glass.yaml"),
];

/// Any JSON value, a few levels deep, with the key names PIM requests use mixed into random ones so
/// the decoder's field walk is reached.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("properties".to_string()),
        Just("@odata.type".to_string()),
        Just("principalId".to_string()),
        Just("roleDefinitionId".to_string()),
        Just("scheduleInfo".to_string()),
        Just("expiration".to_string()),
        Just("duration".to_string()),
        Just("startDateTime".to_string()),
        Just("ticketInfo".to_string()),
        "[a-zA-Z@.]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "P(T?[0-9]{0,12}[YMWDHS]){0,4}".prop_map(Value::String),
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON pointers of every value inside `value`.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let pointer = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(pointer.clone());
                pointers(child, pointer, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let pointer = format!("{prefix}/{index}");
                out.push(pointer.clone());
                pointers(child, pointer, out);
            }
        }
        _ => {}
    }
}

/// The decoder's answer to a body that is valid JSON: a request, or an error naming a field.
fn assert_json_body_is_decoded_or_blames_a_field(body: &[u8]) {
    harness::payload_decode(body);
    if let Err(error) = decode(body) {
        assert!(
            error.field().is_some(),
            "valid JSON must be blamed on a field, got: {error}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_json_bodies_decode_or_name_the_field_at_fault(value in json_value()) {
        assert_json_body_is_decoded_or_blames_a_field(value.to_string().as_bytes());
    }

    #[test]
    fn a_sample_with_one_value_replaced_or_removed_decodes_or_names_the_field_at_fault(
        sample in 0..SAMPLE_REQUESTS.len(),
        pick in any::<prop::sample::Index>(),
        replacement in prop::option::of(json_value()),
    ) {
        let mut document: Value = serde_json::from_str(SAMPLE_REQUESTS[sample]).unwrap();
        let mut all = Vec::new();
        pointers(&document, String::new(), &mut all);
        let pointer = pick.get(&all).clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match (document.pointer_mut(parent).unwrap(), replacement) {
            (Value::Object(map), None) => {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            (Value::Array(items), None) => {
                items.remove(key.parse::<usize>().unwrap());
            }
            (_, Some(value)) => *document.pointer_mut(&pointer).unwrap() = value,
            (_, None) => {}
        }
        assert_json_body_is_decoded_or_blames_a_field(document.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_as_a_body_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        harness::payload_decode(&body);
    }

    #[test]
    fn arbitrary_authorization_headers_are_rejected_with_a_401(header in ".{0,300}") {
        // Mode byte 0: the rest is the raw header value.
        let mut input = vec![0u8];
        input.extend_from_slice(header.as_bytes());
        prop_assert_eq!(harness::token_parse(&input), Class::Rejected);
    }

    #[test]
    fn bearer_tokens_of_three_arbitrary_segments_are_rejected_with_a_401(
        header in "[A-Za-z0-9_-]{0,80}",
        claims in "[A-Za-z0-9_-]{0,200}",
        signature in "[A-Za-z0-9_=+/-]{0,400}",
        kid_header in prop::bool::ANY,
    ) {
        use base64::Engine;
        let header = if kid_header {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"RS256","kid":"pimgate-dev"}"#)
        } else {
            header
        };
        let input = format!(" Bearer {header}.{claims}.{signature}");
        prop_assert_eq!(harness::token_parse(input.as_bytes()), Class::Rejected);
    }

    #[test]
    fn arbitrary_yaml_like_text_loads_or_reports_problems(
        text in "([a-z_]{1,10}: ?(\\[|\\{|-|'|\"|[a-zA-Z0-9 ]{0,12}|\\$\\{|\\*a|&a|!!str)?\n( {0,6}- )?){0,20}"
    ) {
        harness::rules_load(text.as_bytes());
    }

    #[test]
    fn a_shipped_rule_file_with_lines_dropped_or_swapped_loads_or_reports_problems(
        file in 0..SHIPPED_RULES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u8..3), 1..4),
    ) {
        let mut lines: Vec<String> = SHIPPED_RULES[file].lines().map(str::to_string).collect();
        for (first, second, operation) in edits {
            if lines.is_empty() {
                break;
            }
            let (first, second) = (first.index(lines.len()), second.index(lines.len()));
            match operation {
                0 => {
                    lines.remove(first);
                }
                1 => lines.swap(first, second),
                _ => {
                    let copy = lines[second].clone();
                    lines.insert(first, copy);
                }
            }
        }
        harness::rules_load(lines.join("\n").as_bytes());
    }

    #[test]
    fn arbitrary_upstream_answers_are_read_within_the_caps_or_refused(
        kind in prop::sample::select(vec![
            "graph-token", "graph-user", "servicenow-token", "servicenow-ticket", "jira-issue",
            "jira-users", "pagerduty-oncalls", "opsgenie-oncall", "retry-after",
        ]),
        status in 100u16..600,
        retry_after in "[0-9]{0,25}|[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4,6} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        reset in "[0-9]{0,25}",
        expires_in in prop_oneof![
            any::<i64>().prop_map(|number| number.to_string()),
            any::<f64>().prop_map(|number| format!("{number:?}")),
            "\"[0-9.e+-]{0,30}\"",
        ],
        token_shaped in prop::bool::ANY,
        noise in ".{0,200}",
    ) {
        let body = if token_shaped {
            format!(r#"{{"access_token":"t","expires_in":{expires_in},"ext_expires_in":{expires_in}}}"#)
        } else {
            noise
        };
        let input = format!(
            "{kind} {status}\nretry-after: {retry_after}\nratelimit-reset: {reset}\n\n{body}"
        );
        harness::connector_responses(input.as_bytes());
    }
}
