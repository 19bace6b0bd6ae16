//! The fuzzed entry points and the properties every input must keep.
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/`) and by `tests/engine/fuzz_corpus.rs`, which replays
//! the committed corpora and regressions under plain `cargo test` on stable; so a property lives in
//! one place. A broken property panics: that is how libFuzzer learns of a crash.

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey};
use pimgate::auth::{AuthError, Authenticator};
use pimgate::payload::{self, ActivationRequest, PayloadError};
use pimgate::rules::{self, Selection};
use pimgate::settings::AuthSettings;
use pimgate::vocabulary::diagnostic::Severity;

/// What an input led to; the corpus test checks that each corpus reaches the classes it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Accepted,
    /// A 400 (payload), 401 (token) or a rule problem, with the properties below checked.
    Rejected,
}

/// The longest error text a 400 body may carry: values are cut to `ECHO_LIMIT`, paths are known names.
pub const MAX_PAYLOAD_ERROR_CHARS: usize = 1024;

/// `POST /v1/evaluate` step 4: the raw body, as the handler passes it.
pub fn payload_decode(data: &[u8]) -> Class {
    match payload::decode(data) {
        Ok(request) => {
            exercise_request(&request);
            Class::Accepted
        }
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.chars().count() <= MAX_PAYLOAD_ERROR_CHARS,
                "a 400 body must stay small, got {} chars",
                text.chars().count()
            );
            match &error {
                PayloadError::NotJson(detail) => assert!(!detail.is_empty(), "empty JSON error"),
                PayloadError::Field { field, problem } => {
                    assert!(!field.is_empty(), "an error must name a field: {text}");
                    assert!(!problem.is_empty(), "an error must say the problem: {text}");
                }
            }
            Class::Rejected
        }
    }
}

/// What the decision core and the audit record do with a decoded request, minus the I/O.
fn exercise_request(request: &ActivationRequest) {
    let now = fixed_now();
    let _ = request.target_id();
    let _ = request.scope();
    let _ = request.schedule.effective_start(now);
    if let Some(duration) = request.schedule.requested_duration(now) {
        let _ = payload::format_iso8601_duration(duration);
    }
    assert!(
        serde_json::to_string(request).is_ok(),
        "a decoded request must serialize for the audit record"
    );
}

/// A Monday morning in the shipped rules' time zone, so `when`, `start` and windows see one instant.
fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_426_200, 0).unwrap_or_default()
}

const DEV_KEY_PEM: &str = include_str!("../../src/auth/dev_key.pem");
/// The development issuer's key id: a token naming it is verified with the built-in key.
const DEV_KEY_ID: &str = "pimgate-dev";
/// `config/example.toml`'s first audience, so `pimgate dev token --config config/example.toml` seeds verify.
pub const EXAMPLE_AUDIENCE: &str = "api://pimgate.contoso.com/11111111-1111-1111-1111-111111111111";

/// Development mode without a tenant: the dev key is the whole key set and nothing touches the network
/// (an unknown `kid` is refused at once), so `verify_header` completes on a plain executor.
static AUTHENTICATOR: LazyLock<Arc<Authenticator>> = LazyLock::new(|| {
    let settings = AuthSettings {
        dev_mode: true,
        audiences: vec![EXAMPLE_AUDIENCE.to_string()],
        ..AuthSettings::default()
    };
    // Served on loopback as far as the authenticator knows: development mode requires it.
    let loopback = [std::net::SocketAddr::from(([127, 0, 0, 1], 8080))];
    match Authenticator::new(&settings, reqwest::Client::new(), &loopback) {
        Ok(authenticator) => authenticator,
        Err(error) => panic!("the fuzz authenticator settings are invalid: {error}"),
    }
});

static DEV_SIGNING_KEY: LazyLock<EncodingKey> =
    LazyLock::new(|| match EncodingKey::from_rsa_pem(DEV_KEY_PEM.as_bytes()) {
        Ok(key) => key,
        Err(error) => panic!("the checked-in development key does not load: {error}"),
    });

/// Two modes, by the first byte: even → the rest is the raw `Authorization` header value (an
/// attacker's view: scheme, segments, base64, JOSE header, signature); odd → the rest is the claims
/// part of a token really signed with the development key, so the claim rules behind the signature
/// check are reached too.
pub fn token_parse(data: &[u8]) -> Class {
    let Some((&mode, rest)) = data.split_first() else {
        return verify(None);
    };
    if mode % 2 == 0 {
        // actix hands the handler `to_str()` of the header, which fails on non-ASCII: "\u{FFFD}".
        let header = std::str::from_utf8(rest).unwrap_or("\u{FFFD}");
        verify(Some(header))
    } else {
        let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{DEV_KEY_ID}"}}"#);
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(rest)
        );
        let signature = match jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &DEV_SIGNING_KEY,
            Algorithm::RS256,
        ) {
            Ok(signature) => signature,
            Err(error) => panic!("signing with the development key failed: {error}"),
        };
        verify(Some(&format!("Bearer {message}.{signature}")))
    }
}

fn verify(authorization: Option<&str>) -> Class {
    match futures::executor::block_on(AUTHENTICATOR.verify_header(authorization)) {
        Ok(caller) => {
            assert!(
                caller.dev,
                "only the development key can have signed a fuzz token"
            );
            Class::Accepted
        }
        Err(error) => {
            assert_token_rejection(&error);
            Class::Rejected
        }
    }
}

/// Every failure of a caller's token must be a 401, never a 503 that would make PIM retry forever.
fn assert_token_rejection(error: &AuthError) {
    assert!(
        error.is_token_rejection(),
        "a bad token must be a 401, got `{}` ({error})",
        error.reason_code()
    );
}

const SAMPLE_REQUESTS: [&str; 3] = [
    include_str!("../../tests/fixtures/requests/entra-role-activation.json"),
    include_str!("../../tests/fixtures/requests/azure-resource-activation.json"),
    include_str!("../../tests/fixtures/requests/group-activation.json"),
];

/// YAML text as one rule file, then, if it compiles, rule selection (`match` and CEL `when`) for the
/// three sample requests.
pub fn rules_load(data: &[u8]) -> Class {
    // Rule files are read as UTF-8 or refused before parsing; only text reaches the compiler.
    let Ok(text) = std::str::from_utf8(data) else {
        return Class::Rejected;
    };
    match rules::load_str("fuzz.yaml", text) {
        Ok(rule_set) => {
            assert!(
                rule_set
                    .warnings
                    .iter()
                    .all(|problem| problem.severity == Severity::Warning),
                "a loaded rule set carries warnings only"
            );
            for problem in &rule_set.warnings {
                assert!(!problem.message.is_empty(), "a warning must say something");
                let _ = problem.to_string();
            }
            select_samples(&rule_set);
            Class::Accepted
        }
        Err(problems) => {
            assert!(
                problems
                    .iter()
                    .any(|problem| problem.severity == Severity::Error),
                "a refused rule set must carry at least one error"
            );
            for problem in &problems {
                assert!(!problem.message.is_empty(), "a problem must say something");
                assert!(problem.line != Some(0), "lines are 1-based: {problem}");
                let _ = problem.to_string();
            }
            Class::Rejected
        }
    }
}

fn select_samples(rule_set: &rules::RuleSet) {
    for sample in SAMPLE_REQUESTS {
        let Ok(request) = payload::decode(sample.as_bytes()) else {
            panic!("a sample request no longer decodes");
        };
        for stage in payload::Stage::ALL {
            if let Selection::ConditionError { message, .. } =
                rule_set.select(&request, stage, fixed_now())
            {
                assert!(!message.is_empty(), "a `when` error must say why");
            }
        }
    }
}

/// The answers `connector_responses` can be told to interpret, by the name on its first line.
const CONNECTOR_KINDS: [&str; 11] = [
    "graph-token",
    "graph-user",
    "servicenow-token",
    "servicenow-ticket",
    "jira-issue",
    "jira-users",
    "pagerduty-oncalls",
    "opsgenie-oncall",
    "retry-after",
    "opa-answer",
    "http-verdict",
];

/// What each lookup asks for; an answer about anything else must be refused as another record.
const GRAPH_USER_ID: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const SERVICENOW_NUMBER: &str = "CHG0031337";
const JIRA_KEY: &str = "OPS-12";
const JIRA_EMAIL: &str = "ada.lovelace@contoso.com";

/// An upstream's answer as pimgate's connectors read it. The input is text-shaped like an HTTP
/// response: a first line `<kind> <status>` (kind from [`CONNECTOR_KINDS`]), header lines
/// `name: value` up to an empty line, then the body as raw bytes. Every answer's headers go through
/// the `Retry-After` reader; the status and body through the kind's pure parser (token endpoints
/// interpret the status themselves; for the others the HTTP layer answers non-2xx, so only a 2xx
/// body reaches the parser). Properties: no panic, waits and token lifetimes within their caps, a
/// parsed record is the one asked for, and an error's requester sentence carries no status, code
/// or body text.
pub fn connector_responses(data: &[u8]) -> Class {
    use pimgate::connectors::{
        compliance_api, graph, jira, limits, opa, opsgenie, pagerduty, servicenow,
    };

    let (first, rest) = split_line(data);
    let first = String::from_utf8_lossy(first);
    let mut words = first.split_whitespace();
    let kind = words.next().unwrap_or("");
    let status = words
        .next()
        .and_then(|word| word.parse::<u16>().ok())
        .unwrap_or(200);
    let mut headers = reqwest::header::HeaderMap::new();
    let mut rest = rest;
    loop {
        let (line, after) = split_line(rest);
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let name = reqwest::header::HeaderName::from_bytes(&line[..colon]);
        let value = reqwest::header::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    let body = rest;

    let hint = limits::wait_hint(&headers, fixed_now());
    if let Some(wait) = hint {
        assert!(
            wait <= limits::MAX_RETRY_AFTER,
            "a wait hint beyond the cap: {wait:?}"
        );
    }
    if !CONNECTOR_KINDS.contains(&kind) {
        return Class::Rejected;
    }
    let success = (200..=299).contains(&status);
    let accepted = match kind {
        "retry-after" => hint.is_some(),
        "graph-token" => token_answer(graph::parse_token_answer(status, body)),
        "servicenow-token" => token_answer(servicenow::parse_token_answer(status, body)),
        _ if !success => false,
        "graph-user" => {
            let grants = graph::Grants::Roles(
                ["User.Read.All", "User-LifeCycleInfo.Read.All"]
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            );
            checked(graph::parse_user(GRAPH_USER_ID, body, &grants), |profile| {
                assert!(
                    profile.id.eq_ignore_ascii_case(GRAPH_USER_ID),
                    "a profile of another user was accepted: {}",
                    profile.id
                );
                assert!(serde_json::to_string(&profile).is_ok());
            })
        }
        "servicenow-ticket" => checked(
            servicenow::parse_ticket("change_request", SERVICENOW_NUMBER, body),
            |fetched| {
                if let pimgate::connectors::http::Fetched::Found(ticket) = fetched {
                    assert_ticket(&ticket, SERVICENOW_NUMBER);
                }
            },
        ),
        "jira-issue" => checked(jira::parse_issue(JIRA_KEY, body), |ticket| {
            assert_ticket(&ticket, JIRA_KEY);
        }),
        "jira-users" => checked(jira::parse_users(JIRA_EMAIL, body), |users| {
            for user in users {
                if let Some(email) = &user.email {
                    assert!(
                        email.eq_ignore_ascii_case(JIRA_EMAIL),
                        "a user with another address was kept: {email}"
                    );
                }
            }
        }),
        "pagerduty-oncalls" => checked(pagerduty::parse_oncalls_page(body), |(entries, _)| {
            for entry in entries {
                let _ = entry.covers(fixed_now());
                assert!(serde_json::to_string(&entry).is_ok());
            }
        }),
        "opsgenie-oncall" => checked(opsgenie::parse_on_call_recipients(body), |names| {
            for name in names {
                assert_eq!(name, name.trim().to_ascii_lowercase());
            }
        }),
        "opa-answer" => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(answer) => checked(opa::parse_answer(&answer), |decision| {
                if let Some(id) = &decision.decision_id {
                    assert!(
                        !id.chars().any(char::is_control),
                        "a decision id with control characters was kept: {id:?}"
                    );
                }
            }),
            Err(_) => false,
        },
        "http-verdict" => match serde_json::from_slice::<serde_json::Value>(body) {
            // Only `{"result": "pass"|"fail", "message": "..."}` may be a verdict: never anything else.
            Ok(answer) => match compliance_api::parse_verdict(&answer) {
                Ok(verdict) => {
                    let result = answer.get("result").and_then(serde_json::Value::as_str);
                    assert_eq!(
                        result,
                        Some(if verdict.passed { "pass" } else { "fail" }),
                        "a verdict read from {answer}"
                    );
                    assert!(
                        !verdict.message.chars().any(char::is_control)
                            && verdict.message.chars().count() <= compliance_api::MAX_MESSAGE_CHARS,
                        "an unclean receiver message was kept: {:?}",
                        verdict.message
                    );
                    true
                }
                Err(_) => false,
            },
            Err(_) => false,
        },
        _ => false,
    };
    if accepted {
        Class::Accepted
    } else {
        Class::Rejected
    }
}

/// The bytes before the first `\n` and those after it (all of `data` and nothing without one).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&byte| byte == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// A token endpoint's answer: a lifetime within the caps, or an error that keeps its properties.
fn token_answer(
    result: Result<
        (pimgate::connectors::secrets::Secret, std::time::Duration),
        pimgate::connectors::http::UpstreamError,
    >,
) -> bool {
    use pimgate::connectors::limits::{MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME};
    checked(result, |(secret, lifetime)| {
        assert!(!secret.expose().is_empty(), "an empty token was accepted");
        assert!(
            (MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&lifetime),
            "a token lifetime beyond the caps: {lifetime:?}"
        );
    })
}

/// Runs `accept` on a parsed answer; checks an error's two texts. Whether the answer was accepted.
fn checked<T>(
    result: Result<T, pimgate::connectors::http::UpstreamError>,
    accept: impl FnOnce(T),
) -> bool {
    match result {
        Ok(value) => {
            accept(value);
            true
        }
        Err(error) => {
            let sentence = error.to_string();
            assert!(
                sentence.len() <= 120
                    && !sentence.contains("HTTP")
                    && !sentence.contains("AADSTS")
                    && !sentence.contains('`'),
                "a requester-facing sentence must carry no status, code or upstream text: {sentence}"
            );
            let _ = error.detail();
            false
        }
    }
}

/// A parsed ticket is the one asked for, and every field it calls unreadable is one rules can name.
fn assert_ticket(ticket: &pimgate::connectors::ticket::ItsmTicket, asked: &str) {
    assert!(
        ticket.number.eq_ignore_ascii_case(asked),
        "a ticket for another number was accepted: {}",
        ticket.number
    );
    const FIELDS: [&str; 12] = [
        "state",
        "status",
        "status_category",
        "assigned_to",
        "requested_by",
        "requested_for",
        "caller_id",
        "opened_by",
        "assignee",
        "reporter",
        "start_date",
        "end_date",
    ];
    for field in &ticket.unreadable {
        assert!(
            FIELDS.contains(&field.as_str()),
            "unknown unreadable field {field}"
        );
    }
    if let Some(window) = ticket.window {
        let _ = (window.start.to_rfc3339(), window.end.to_rfc3339());
    }
    assert!(serde_json::to_string(ticket).is_ok());
}
