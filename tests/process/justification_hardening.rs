//! The justification as an attacker sees it: padded with invisible or repeated filler to pass the
//! rules, and as a privacy risk: masked in the audit record (`audit.justification = omit | hash`), it
//! must not leak back through reasons, check messages, evidence, shadow decisions or logs.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::requests;
use crate::support::serve as common_serve;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::decision::Outcome;
use requests::dev_token;
use serde_json::{Value, json};

const EXCHANGE_ADMIN: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";

fn body(justification: &str) -> Value {
    let mut body = requests::fresh_entra_role();
    body["justification"] = json!(justification);
    body["ticketInfo"] = Value::Null;
    body
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:30:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The outcome of `justification` (decoded from a PIM body, as the service would) under one policy
/// whose only check is `check`.
fn outcome(check: &str, justification: &str) -> (Outcome, Vec<String>) {
    let rules = format!(
        "policies:\n  - name: p\n    match: {{ resource_types: [entraRoles] }}\n    require:\n      - {check}\n"
    );
    let rules = pimgate::rules::load_str("padding.yaml", &rules)
        .unwrap_or_else(|problems| panic!("{check}: {problems:?}"));
    let request = pimgate::payload::decode(&serde_json::to_vec(&body(justification)).unwrap())
        .unwrap_or_else(|error| panic!("{justification:?}: {error}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let decision = runtime.block_on(pimgate::decision::evaluate(
        &rules,
        &request,
        now(),
        Duration::from_secs(5),
    ));
    (decision.outcome, decision.reasons.clone())
}

#[test]
fn padded_justifications_no_longer_pass_the_justification_rules() {
    let zwsp = "\u{200B}".repeat(15);
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "zero-width spaces inflate the length",
            "justification: { min_length: 20 }",
            format!("fix it now{zwsp}"),
        ),
        (
            "word joiners between letters inflate the length",
            "justification: { min_length: 20 }",
            "fix it now"
                .chars()
                .flat_map(|c| [c, '\u{2060}', '\u{2060}'])
                .collect(),
        ),
        (
            "soft hyphens inflate the length",
            "justification: { min_length: 20 }",
            "fix\u{AD}\u{AD}\u{AD}\u{AD} it\u{AD}\u{AD}\u{AD}\u{AD}\u{AD} now\u{AD}\u{AD}"
                .to_string(),
        ),
        (
            "Hangul fillers count as words",
            "justification: { min_words: 4 }",
            "fix it \u{3164} \u{3164}".to_string(),
        ),
        (
            "braille blanks count as words",
            "justification: { min_words: 4 }",
            "fix it \u{2800} \u{2800}".to_string(),
        ),
        (
            "halfwidth Hangul fillers and choseong fillers count as words",
            "justification: { min_words: 4 }",
            "fix it \u{FFA0} \u{115F}\u{1160}".to_string(),
        ),
        (
            "a repeated word counts as many words",
            "justification: { min_words: 4 }",
            "test test test test".to_string(),
        ),
        (
            "a repeated word in other cases and punctuation counts as many words",
            "justification: { min_words: 3 }",
            "Fix, fix. FIX!".to_string(),
        ),
        (
            "a lone punctuation mark counts as a word",
            "justification: { min_words: 3 }",
            "fix - -".to_string(),
        ),
        (
            "a zero-width space before the text slips past an anchored deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "\u{200B}test the login flow".to_string(),
        ),
        (
            "a byte order mark before the text slips past an anchored deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "\u{FEFF}test the login flow".to_string(),
        ),
        (
            "fullwidth letters slip past a deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "ｔｅｓｔ the login flow".to_string(),
        ),
        (
            "a right-to-left override slips past a deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "\u{202E}test the login flow".to_string(),
        ),
        (
            "a soft hyphen inside the word slips past a deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "te\u{AD}st the login flow".to_string(),
        ),
        (
            "a no-break space slips past a deny pattern with a space",
            "justification: { deny_patterns: ['(?i)^need admin$'] }",
            "need\u{A0}admin".to_string(),
        ),
        (
            "an ideographic space slips past a deny pattern with a space",
            "justification: { deny_patterns: ['(?i)^need admin$'] }",
            "need\u{3000}admin".to_string(),
        ),
        (
            "a line break and tabs slip past a deny pattern with a space",
            "justification: { deny_patterns: ['(?i)^need admin$'] }",
            "need\n\t\tadmin".to_string(),
        ),
        (
            "a zero-width joiner inside the word slips past a deny pattern",
            "justification: { deny_patterns: ['(?i)^need admin$'] }",
            "ne\u{200D}ed ad\u{200C}min".to_string(),
        ),
        (
            "a combining grapheme joiner and variation selectors slip past a deny pattern",
            "justification: { deny_patterns: ['(?i)^need admin$'] }",
            "need\u{34F} ad\u{FE0F}min\u{E0100}".to_string(),
        ),
        (
            "a Mongolian vowel separator slips past a deny pattern",
            "justification: { deny_patterns: ['(?i)^need admin$'] }",
            "need\u{180E} admin".to_string(),
        ),
        (
            "mathematical bold letters slip past a deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "𝐭𝐞𝐬𝐭 the login flow".to_string(),
        ),
        (
            "a control character slips past a deny pattern",
            "justification: { deny_patterns: ['(?i)^test'] }",
            "\u{7}test the login flow".to_string(),
        ),
    ];
    let passed: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, check, justification)| {
            let (outcome, reasons) = outcome(check, &justification);
            (outcome != Outcome::Denied).then(|| format!("{name}: {outcome:?} {reasons:?}"))
        })
        .collect();
    assert!(
        passed.is_empty(),
        "padding still passes:\n{}",
        passed.join("\n")
    );
}

#[test]
fn honest_justifications_still_pass_after_normalisation() {
    let cases = [
        (
            "justification: { min_length: 20, min_words: 4, deny_patterns: ['(?i)^test'] }",
            "Rotate the tenant-wide break-glass credential per change CHG0031337",
        ),
        (
            "justification: { min_length: 20, min_words: 4 }",
            "Änderung: Zertifikat für die Föderation erneuern",
        ),
        ("justification: { min_words: 3 }", "証明書 を 更新 する"),
        (
            "justification: { min_words: 4, deny_patterns: ['(?i)^need admin$'] }",
            "need admin to fix the mail flow",
        ),
        (
            "justification: { must_reference_ticket: true }",
            "ＣＨＧ００３１３３７: rotate the certificate",
        ),
    ];
    let refused: Vec<String> = cases
        .into_iter()
        .filter_map(|(check, justification)| {
            let (outcome, reasons) = outcome(check, justification);
            (outcome != Outcome::Approved).then(|| format!("{justification:?}: {reasons:?}"))
        })
        .collect();
    assert!(
        refused.is_empty(),
        "honest text refused:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_decoded_justification_is_the_normalised_text_every_rule_and_the_audit_see() {
    let request = pimgate::payload::decode(
        &serde_json::to_vec(&body(
            "\u{FEFF} ｆｉｘ\u{200B}  the\u{A0}\u{A0}mail\tflow\u{AD} \u{3164}\u{2800} now\u{202E} ",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        request.justification.as_deref(),
        Some("fix the mail flow now")
    );
    let invisible_only = pimgate::payload::decode(
        &serde_json::to_vec(&body("\u{200B}\u{3164} \u{2800}\u{FEFF}")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        invisible_only.justification, None,
        "nothing visible is no justification"
    );
}

// ---- masking -----------------------------------------------------------------------------------

/// A string no message, reason or log line has any other reason to contain.
const MARKER: &str = "ZqxjMarkerWv";

/// Every justification and ticket rule, failing (Global Administrator) and passing (Exchange
/// Administrator), enforced and in shadow (`mode: audit`), an `itsm` check that reads its ticket
/// from the justification and cannot be evaluated (no connector), and a `when` whose CEL error would
/// carry the justification's value.
const MASKING_RULES: &str = r#"
policies:
  - name: shadow-broken-condition
    mode: audit
    match: { resource_types: [entraRoles] }
    when: 'request.justification + 1 == 2'
    decide: Approved
    reason: never reached
  - name: shadow-strict
    mode: audit
    match: { resource_types: [entraRoles] }
    require:
      - justification: { min_length: 400, min_words: 40, deny_patterns: ['(?i)zqxj'], must_reference_ticket: true }
      - ticket: { systems: [ServiceNow], patterns: { ServiceNow: "(CHG|INC)[0-9]{7}" }, from_justification: true }
  - name: shadow-lenient
    mode: audit
    match: { resource_types: [entraRoles] }
    require:
      - justification: { min_length: 5, min_words: 2, must_reference_ticket: true }
      - ticket: { from_justification: true }
  - name: strict
    match: { roles: [Global Administrator] }
    require:
      - justification: { min_length: 400, min_words: 40, deny_patterns: ['(?i)zqxj'], must_reference_ticket: true }
      - ticket: { systems: [ServiceNow], patterns: { ServiceNow: "(CHG|INC)[0-9]{7}" }, from_justification: true }
      - itsm: { system: servicenow }
  - name: lenient
    match: { roles: [Exchange Administrator] }
    require:
      - justification: { min_length: 5, min_words: 2, deny_patterns: ['(?i)^test'], must_reference_ticket: true }
      - ticket: { from_justification: true }
    auto_approve:
      - itsm: { system: jira }
"#;

async fn post(base: &str, token: &str, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_masked_justification_appears_nowhere_in_the_audit_record_the_answer_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, MASKING_RULES).unwrap();
    let token = dev_token();
    let justification = format!("{MARKER} restart the OPS-4711 mail flow connector");
    let marker = MARKER.to_lowercase();

    for masking in ["omit", "hash"] {
        let mut served = common_serve::serve(
            Path::new("config/example.toml"),
            &[
                ("PIMGATE__RULES__PATH", rules.to_str().unwrap()),
                ("PIMGATE__RULES__RELOAD_INTERVAL_SECONDS", "0"),
                ("PIMGATE__AUDIT__SINK", "stdout"),
                ("PIMGATE__AUDIT__JUSTIFICATION", masking),
                ("PIMGATE__LOG__FORMAT", "json"),
                ("PIMGATE__LOG__LEVEL", "pimgate=trace,info"),
            ],
        );
        let base = served.base();
        let mut answers = Vec::new();
        for role in [None, Some(EXCHANGE_ADMIN)] {
            let mut body = body(&justification);
            if let Some(role) = role {
                body["roleDefinitionId"] = json!(role);
            }
            answers.push(post(&base, &token, &body).await);
        }
        assert_eq!(answers[0]["evaluationOutcome"], "Denied", "{answers:?}");
        assert_eq!(answers[1]["evaluationOutcome"], "Approved", "{answers:?}");
        let mut leaks: Vec<String> = answers
            .iter()
            .map(Value::to_string)
            .filter(|answer| answer.to_lowercase().contains(&marker))
            .map(|answer| format!("{masking}: the answer to PIM: {answer}"))
            .collect();

        served.signal("TERM");
        assert!(served.wait_for_exit(Duration::from_secs(20)).is_some());
        let records: Vec<Value> = served
            .stdout_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|record| record["type"] == "pimgate.audit")
            .collect();
        assert_eq!(records.len(), 2, "{masking}: one record per answer");
        for record in &records {
            let shadows = record["shadowDecisions"].as_array().unwrap();
            assert_eq!(shadows.len(), 3, "{record}");
            let text = record.to_string();
            if text.to_lowercase().contains(&marker) {
                leaks.push(format!("{masking}: the audit record: {text}"));
            }
        }
        let reasons = records[0]["reasons"].to_string();
        assert!(reasons.contains("too vague"), "{reasons}");
        let logs = served.stderr_lines();
        assert!(!logs.is_empty(), "the service logged nothing");
        leaks.extend(
            logs.iter()
                .filter(|line| line.to_lowercase().contains(&marker))
                .map(|line| format!("{masking}: a log line: {line}")),
        );
        assert!(
            leaks.is_empty(),
            "the masked justification leaks:\n{}",
            leaks.join("\n")
        );
    }
}
