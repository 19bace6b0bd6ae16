//! The fast path against the walker: on every fixture, a table of unusual bodies and generated
//! mutations of the fixtures, the fast path either gives up or yields exactly the walker's request,
//! and [`decode`] answers exactly what the walker answers (request or error).

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use super::decode::{decode, decode_by_walking};
use super::fast;

const FIXTURES: [(&str, &str); 9] = [
    (
        "entra-role-activation",
        include_str!("../../tests/fixtures/requests/entra-role-activation.json"),
    ),
    (
        "entra-role-administrative-unit",
        include_str!("../../tests/fixtures/requests/entra-role-administrative-unit.json"),
    ),
    (
        "entra-role-app-scope",
        include_str!("../../tests/fixtures/requests/entra-role-app-scope.json"),
    ),
    (
        "entra-role-self-deactivate",
        include_str!("../../tests/fixtures/requests/entra-role-self-deactivate.json"),
    ),
    (
        "entra-role-pascal-case",
        include_str!("../../tests/fixtures/requests/entra-role-pascal-case.json"),
    ),
    (
        "group-activation",
        include_str!("../../tests/fixtures/requests/group-activation.json"),
    ),
    (
        "group-owner-activation",
        include_str!("../../tests/fixtures/requests/group-owner-activation.json"),
    ),
    (
        "azure-resource-activation",
        include_str!("../../tests/fixtures/requests/azure-resource-activation.json"),
    ),
    (
        "azure-resource-named",
        include_str!("../../tests/fixtures/requests/azure-resource-named.json"),
    ),
];

/// The property every body must have; a message naming the body on failure.
fn agrees(body: &[u8]) -> Result<(), String> {
    let walked = decode_by_walking(body);
    if let Some(fast) = fast::decode(body)
        && walked.as_ref() != Ok(&fast)
    {
        return Err(format!(
            "fast path gave {fast:?}, walker {walked:?} for {}",
            String::from_utf8_lossy(body)
        ));
    }
    let decoded = decode(body);
    if decoded != walked {
        return Err(format!(
            "decode gave {decoded:?}, walker {walked:?} for {}",
            String::from_utf8_lossy(body)
        ));
    }
    Ok(())
}

#[test]
fn every_canonical_fixture_takes_the_fast_path_to_the_walkers_request() {
    for (name, body) in FIXTURES {
        let walked = decode_by_walking(body.as_bytes());
        assert!(walked.is_ok(), "{name}: {walked:?}");
        let fast = fast::decode(body.as_bytes());
        if name == "entra-role-pascal-case" {
            assert_eq!(fast, None, "{name}: case-variant keys are the walker's");
        } else {
            assert_eq!(fast.as_ref(), walked.as_ref().ok(), "{name}");
        }
        assert_eq!(decode(body.as_bytes()), walked, "{name}");
    }
}

/// A fixture with `edit` applied to its parsed form.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let body = FIXTURES
        .iter()
        .find(|(fixture, _)| *fixture == name)
        .map(|(_, body)| *body)
        .unwrap_or_default();
    let mut value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    edit(&mut value);
    value.to_string()
}

/// A change to a fixture's parsed form.
type Edit = Box<dyn FnOnce(&mut Value)>;

/// Moves `from` to `to` in an object.
fn rename(value: &mut Value, from: &str, to: &str) {
    if let Some(object) = value.as_object_mut()
        && let Some(moved) = object.remove(from)
    {
        object.insert(to.to_string(), moved);
    }
}

const ENTRA: &str = "entra-role-activation";
const AZURE: &str = "azure-resource-activation";
const GROUP: &str = "group-activation";

#[test]
fn unusual_bodies_are_answered_exactly_as_the_walker_answers_them() {
    let entra = FIXTURES[0].1.trim();
    let inner = entra.strip_prefix('{').unwrap_or(entra);
    let mut bodies: Vec<String> = vec![
        String::new(),
        "  ".into(),
        "[]".into(),
        "null".into(),
        "\"text\"".into(),
        "{}".into(),
        format!("\u{FEFF}{entra}"),
        format!("\u{FEFF}\u{FEFF}{entra}"),
        format!("{entra} \n"),
        format!("{entra} x"),
        format!("{entra}{{}}"),
        // Duplicates: `Value` keeps the last one.
        format!("{{\"principalId\": \"not a guid\", {inner}"),
        format!("{{\"principalId\": 7, {inner}"),
        format!("{{\"justification\": \"first\", {inner}"),
        format!("{{\"unknown\": 1, \"unknown\": [2], {inner}"),
        // Case variants beside or instead of the exact key.
        format!("{{\"PrincipalId\": \"not a guid\", {inner}"),
        format!("{{\"Justification\": \"another reason\", {inner}"),
        format!("{{\"JUSTIFICATION\": null, {inner}"),
        // Escapes in keys and values.
        format!("{{\"principal\\u0049d\": \"not a guid\", {inner}"),
        format!("{{\"x\": \"\\ud800\", {inner}"),
        format!("{{\"x\": \"\\ud83d\\ude00\", {inner}"),
        format!("{{\"x\": \"\\q\", {inner}"),
        // Numbers the walker must parse even where nobody reads them.
        format!("{{\"x\": 1e999, {inner}"),
        format!("{{\"x\": [[{{\"y\": -1e400}}]], {inner}"),
        format!("{{\"x\": 18446744073709551616, {inner}"),
        format!("{{\"x\": -0, \"y\": 1.5e-400, {inner}"),
        format!("{{\"x\": 01, {inner}"),
        // Nesting at and beyond serde_json's recursion limit.
        format!("{{\"x\": {}1{}, {inner}", "[".repeat(120), "]".repeat(120)),
        format!("{{\"x\": {}1{}, {inner}", "[".repeat(200), "]".repeat(200)),
    ];
    let mut raw: Vec<Vec<u8>> = vec![
        // Invalid UTF-8 inside an ignored string, and as a key.
        [b"{\"x\": \"\xff\", ".as_slice(), inner.as_bytes()].concat(),
        [b"{\"\xc3\x28\": 1, ".as_slice(), inner.as_bytes()].concat(),
        [b"\xEF\xBB\xBF".as_slice(), entra.as_bytes()].concat(),
    ];
    let edits: Vec<(&str, Edit)> = vec![
        (
            ENTRA,
            Box::new(|v| v["justification"] = "\t a \u{200B} b ".into()),
        ),
        (ENTRA, Box::new(|v| v["justification"] = " ".into())),
        (
            ENTRA,
            Box::new(|v| v["justification"] = "x".repeat(4097).into()),
        ),
        (
            ENTRA,
            Box::new(|v| v["justification"] = "\u{FDFA}".repeat(300).into()),
        ),
        (ENTRA, Box::new(|v| v["justification"] = 3.into())),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["expiration"]["duration"] = "P1Y".into()),
        ),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["expiration"]["duration"] = "PT0S".into()),
        ),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["expiration"]["duration"] = "P3651D".into()),
        ),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["expiration"]["duration"] = "-PT1H".into()),
        ),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["expiration"]["type"] = "noExpiration".into()),
        ),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["expiration"]["type"] = "afterDateTime".into()),
        ),
        (
            ENTRA,
            Box::new(|v| {
                v["scheduleInfo"]["expiration"]["endDateTime"] = "2026-11-23T08:00:00Z".into()
            }),
        ),
        (
            ENTRA,
            Box::new(|v| v["scheduleInfo"]["startDateTime"] = "yesterday".into()),
        ),
        (ENTRA, Box::new(|v| v["scheduleInfo"] = Value::Null)),
        (ENTRA, Box::new(|v| v["scheduleInfo"] = "PT1H".into())),
        (
            ENTRA,
            Box::new(|v| v["principalId"] = "0F6E7B1A-3C52-4B8E-A0D4-2E9F51C7D8A3".into()),
        ),
        (ENTRA, Box::new(|v| v["directoryScopeId"] = Value::Null)),
        (
            ENTRA,
            Box::new(|v| v["directoryScopeId"] = "administrativeUnits/x".into()),
        ),
        (ENTRA, Box::new(|v| v["@odata.type"] = 1.into())),
        (
            ENTRA,
            Box::new(|v| {
                v["@odata.type"] =
                    "#microsoft.graph.privilegedAccessGroupAssignmentScheduleRequest".into()
            }),
        ),
        (
            ENTRA,
            Box::new(|v| v["groupId"] = "2a7f3c1e-9b4d-4e8a-b6c5-1d0e9f8a7b6c".into()),
        ),
        (ENTRA, Box::new(|v| v["properties"] = "x".into())),
        (ENTRA, Box::new(|v| v["properties"] = Value::Null)),
        (ENTRA, Box::new(|v| v["action"] = "  ".into())),
        (ENTRA, Box::new(|v| v["action"] = "somethingNew".into())),
        (
            ENTRA,
            Box::new(|v| {
                v["ticketInfo"] = serde_json::json!({"ticketNumber": " ", "ticketSystem": null})
            }),
        ),
        (
            ENTRA,
            Box::new(|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("@odata.type");
                }
            }),
        ),
        (
            ENTRA,
            Box::new(|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("principalId");
                }
            }),
        ),
        (GROUP, Box::new(|v| v["accessId"] = "Owner".into())),
        (GROUP, Box::new(|v| v["accessId"] = "guest".into())),
        (GROUP, Box::new(|v| v["groupId"] = Value::Null)),
        (
            AZURE,
            Box::new(|v| v["properties"]["scope"] = "subscriptions/x".into()),
        ),
        (
            AZURE,
            Box::new(|v| v["properties"]["roleDefinitionId"] = "owner".into()),
        ),
        (
            AZURE,
            Box::new(|v| v["properties"]["requestType"] = 1.into()),
        ),
        (
            AZURE,
            Box::new(|v| v["properties"]["ticketInfo"] = serde_json::json!([])),
        ),
        (AZURE, Box::new(|v| v["name"] = "  ".into())),
        (AZURE, Box::new(|v| v["properties"]["Scope"] = "/".into())),
        (
            ENTRA,
            Box::new(|v| rename(v, "justification", "Justification")),
        ),
        (
            ENTRA,
            Box::new(|v| rename(v, "directoryScopeId", "DirectoryScopeID")),
        ),
        (
            AZURE,
            Box::new(|v| rename(&mut v["properties"], "scope", "SCOPE")),
        ),
        (AZURE, Box::new(|v| rename(v, "properties", "Properties"))),
    ];
    for (name, edit) in edits {
        bodies.push(edited(name, edit));
    }
    raw.extend(bodies.into_iter().map(String::into_bytes));
    for body in raw {
        if let Err(problem) = agrees(&body) {
            panic!("{problem}");
        }
    }
}

#[test]
fn a_case_variant_or_repeated_captured_key_leaves_the_body_to_the_walker() {
    let entra = FIXTURES[0].1.trim();
    let inner = entra.strip_prefix('{').unwrap_or(entra);
    let unknown = format!("{{\"unknownField\": 1, \"Unknown\": 2, {inner}");
    assert!(fast::decode(unknown.as_bytes()).is_some());
    for body in [
        format!("{{\"JUSTIFICATION\": null, {inner}"),
        format!("{{\"justification\": \"first\", {inner}"),
    ] {
        assert_eq!(fast::decode(body.as_bytes()), None, "{body}");
        assert!(decode_by_walking(body.as_bytes()).is_ok(), "{body}");
    }
}

/// A JSON document that, unlike `Value`, can hold repeated keys, raw key text (escapes) and raw
/// values (numbers out of range, odd strings).
#[derive(Debug, Clone)]
enum Doc {
    Raw(String),
    /// Keys as JSON string literals, quotes included.
    Object(Vec<(String, Doc)>),
}

impl Doc {
    fn from_value(value: &Value) -> Doc {
        match value {
            Value::Object(map) => Doc::Object(
                map.iter()
                    .map(|(key, value)| {
                        (
                            Value::from(key.as_str()).to_string(),
                            Doc::from_value(value),
                        )
                    })
                    .collect(),
            ),
            other => Doc::Raw(other.to_string()),
        }
    }

    fn render(&self) -> String {
        match self {
            Doc::Raw(text) => text.clone(),
            Doc::Object(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("{key}:{}", value.render()))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
        }
    }

    fn objects(&self) -> usize {
        match self {
            Doc::Raw(_) => 0,
            Doc::Object(entries) => {
                1 + entries
                    .iter()
                    .map(|(_, value)| value.objects())
                    .sum::<usize>()
            }
        }
    }

    /// Applies `mutation` to the `n`th object, pre-order.
    fn mutate(&mut self, n: &mut usize, mutation: &Mutation) -> bool {
        let Doc::Object(entries) = self else {
            return false;
        };
        if *n == 0 {
            mutation.apply(entries);
            return true;
        }
        *n -= 1;
        entries
            .iter_mut()
            .any(|(_, value)| value.mutate(n, mutation))
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Remove(Index),
    Replace(Index, String),
    /// 0: upper case, 1: lower case, 2: first letter's case flipped, 3: first letter escaped.
    Rename(Index, u8),
    /// The key again, later, with another value (`Value` keeps the later one).
    Duplicate(Index, String),
    /// The key again, earlier, with another value.
    Precede(Index, String),
    Add(String, String),
}

impl Mutation {
    fn apply(&self, entries: &mut Vec<(String, Doc)>) {
        match self {
            Mutation::Remove(at) if !entries.is_empty() => {
                entries.remove(at.index(entries.len()));
            }
            Mutation::Replace(at, raw) if !entries.is_empty() => {
                let index = at.index(entries.len());
                if let Some(entry) = entries.get_mut(index) {
                    entry.1 = Doc::Raw(raw.clone());
                }
            }
            Mutation::Rename(at, how) if !entries.is_empty() => {
                let index = at.index(entries.len());
                if let Some(entry) = entries.get_mut(index) {
                    entry.0 = renamed(&entry.0, *how);
                }
            }
            Mutation::Duplicate(at, raw) if !entries.is_empty() => {
                let key = entries[at.index(entries.len())].0.clone();
                entries.push((key, Doc::Raw(raw.clone())));
            }
            Mutation::Precede(at, raw) if !entries.is_empty() => {
                let key = entries[at.index(entries.len())].0.clone();
                entries.insert(0, (key, Doc::Raw(raw.clone())));
            }
            Mutation::Add(key, raw) => {
                entries.push((Value::from(key.as_str()).to_string(), Doc::Raw(raw.clone())));
            }
            _ => {}
        }
    }
}

fn renamed(key: &str, how: u8) -> String {
    let inner = key.get(1..key.len().saturating_sub(1)).unwrap_or_default();
    let mut chars = inner.chars();
    let first = chars.next();
    let rest: String = chars.collect();
    let body = match (how, first) {
        (0, _) => inner.to_ascii_uppercase(),
        (1, _) => inner.to_ascii_lowercase(),
        (2, Some(first)) if first.is_ascii_lowercase() => {
            format!("{}{rest}", first.to_ascii_uppercase())
        }
        (2, Some(first)) => format!("{}{rest}", first.to_ascii_lowercase()),
        (_, Some(first)) if first.is_ascii() => format!("\\u{:04X}{rest}", u32::from(first)),
        _ => inner.to_string(),
    };
    format!("\"{body}\"")
}

fn raw_value() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        "null",
        "0",
        "-0",
        "1.5",
        "1e999",
        "-1e400",
        "18446744073709551616",
        "true",
        "[]",
        "[1e999]",
        "{}",
        "{\"a\":{}}",
        "\"\"",
        "\"  \"",
        "\"\\u0041\"",
        "\"\\ud800\"",
        "\"\\ud83d\\ude00\"",
        "\"a\\u0000b\"",
        "\"PT8H\"",
        "\"P1Y\"",
        "\"PT0S\"",
        "\"P3651D\"",
        "\"-PT1H\"",
        "\"P1DT12H\"",
        "\"/\"",
        "\"/administrativeUnits/1B3C5D7E-0000-4000-8000-0123456789AB\"",
        "\"0F6E7B1A-3C52-4B8E-A0D4-2E9F51C7D8A3\"",
        "\"62e90394-69f5-4237-9190-012177145e10\"",
        "\"2026-11-23T09:30:00Z\"",
        "\"2026-11-23T08:00:00+01:00\"",
        "\"2036-11-23T09:30:00Z\"",
        "\"afterDateTime\"",
        "\"AfterDuration\"",
        "\"noExpiration\"",
        "\"notSpecified\"",
        "\"later\"",
        "\"member\"",
        "\"Owner\"",
        "\"selfActivate\"",
        "\"SelfDeactivate\"",
        "\"adminAssign\"",
        "\"#microsoft.graph.privilegedAccessGroupAssignmentScheduleRequest\"",
        "\"#microsoft.graph.unifiedRoleAssignmentScheduleRequest\"",
        "{\"type\":\"afterDuration\",\"duration\":\"PT1H\"}",
        "{\"ticketNumber\":\"INC1\",\"ticketSystem\":null}",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        4 => tricky,
        1 => any::<String>().prop_map(|text| Value::from(text).to_string()),
        1 => "[ -~]{0,12}".prop_map(|text| format!("\"{text}\"")),
        1 => any::<i64>().prop_map(|number| number.to_string()),
        1 => any::<f64>().prop_map(|number| Value::from(number).to_string()),
        1 => (4000usize..4200).prop_map(|length| format!("\"{}\"", "é".repeat(length))),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let key = prop::sample::select(vec![
        "x",
        "status",
        "Principalid",
        "scheduleinfo",
        "@odata.Type",
        "@odata.type",
        "properties",
        "PROPERTIES",
        "groupid",
        "groupId",
        "roleDefinitionId",
        "name",
        "id",
        "type",
        "Justification",
        "expiration",
        "duration",
        "scope",
        "appScopeId",
        "directoryScopeId",
        "ticketInfo",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        any::<Index>().prop_map(Mutation::Remove),
        (any::<Index>(), raw_value()).prop_map(|(at, raw)| Mutation::Replace(at, raw)),
        (any::<Index>(), 0u8..4).prop_map(|(at, how)| Mutation::Rename(at, how)),
        (any::<Index>(), raw_value()).prop_map(|(at, raw)| Mutation::Duplicate(at, raw)),
        (any::<Index>(), raw_value()).prop_map(|(at, raw)| Mutation::Precede(at, raw)),
        (key, raw_value()).prop_map(|(key, raw)| Mutation::Add(key, raw)),
    ]
}

fn mutated_body() -> impl Strategy<Value = Vec<u8>> {
    (
        0..FIXTURES.len(),
        prop::collection::vec((any::<Index>(), mutation()), 1..4),
        prop::sample::select(vec!["", "", "", "\u{FEFF}", "\u{FEFF}\u{FEFF}", " "]),
        prop::sample::select(vec!["", "", "", "\n", "x", "{}"]),
    )
        .prop_map(|(fixture, mutations, prefix, suffix)| {
            let value: Value = serde_json::from_str(FIXTURES[fixture].1).unwrap_or(Value::Null);
            let mut doc = Doc::from_value(&value);
            for (at, mutation) in &mutations {
                let mut n = at.index(doc.objects().max(1));
                doc.mutate(&mut n, mutation);
            }
            format!("{prefix}{}{suffix}", doc.render()).into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_decode_exactly_as_the_walker_decodes_them(body in mutated_body()) {
        if let Err(problem) = agrees(&body) {
            prop_assert!(false, "{}", problem);
        }
    }
}
