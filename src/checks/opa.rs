//! `opa`: the organisation's own Open Policy Agent decides, given the activation request.
//!
//! `- opa: { connector: main, path: pim/allow }` asks `[connectors.opa.main]` for the document
//! `pim/allow` with `{"input": <request document>}` (`checks::request_document`: the same fields as
//! the audit record, the stage and the effective activation interval). OPA's `result` decides:
//! `true` passes, `false` fails, `{ "allow": bool, "reasons": [string, ...] }` passes or fails with
//! the reasons in the message. Anything else (an undefined document, a string, a number, no or a
//! non-boolean `allow`, reasons that are not strings, an OPA error, a timeout, garbage, an oversized
//! body) is "could not be evaluated": never a pass. OPA's `decision_id` goes into the evidence so the
//! audit record and OPA's decision log can be joined.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::request_document::request_document;
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::opa::Opa;
use crate::connectors::{ConnectorId, Connectors};
use crate::vocabulary::diagnostic::Diagnostic;

/// Reasons shown to the requester: at most this many, each at most [`MAX_REASON_CHARS`].
const MAX_REASONS: usize = 5;
const MAX_REASON_CHARS: usize = 200;
/// Longest document path accepted in a rule.
const MAX_PATH_CHARS: usize = 256;

/// `opa: { connector: NAME, path: pim/allow }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaSpec {
    /// The `[connectors.opa.NAME]` to ask.
    pub connector: String,
    /// The document under `/v1/data/`, e.g. `pim/allow` (the Rego `package pim` rule `allow`).
    pub path: String,
}

/// `- opa: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct OpaKind;

impl CheckKind for OpaKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "An Open Policy Agent document decides, given the request document.",
            example: "- opa: { connector: main, path: pim/allow }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "connector",
                    "connector name",
                    "required",
                    "main",
                    "The `[connectors.opa.NAME]` to ask.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "path",
                    "document path",
                    "required",
                    "pim/allow",
                    "The document under `/v1/data/`.",
                ),
            ],
            reads: vec![crate::checks::registry::UpstreamFact::new(
                "OPA",
                "POST /v1/data/{path} with {\"input\": <request document>}; `result` true/false or { allow: bool, reasons: [string] } decides, anything else is not evaluated",
            )],
        }
    }

    const NAME: &'static str = "opa";
    const REACH: Reach = Reach::Upstream;
    type Spec = OpaSpec;

    fn connector(_spec: &OpaSpec) -> Option<ConnectorId> {
        Some(ConnectorId::Opa)
    }

    fn connector_section(spec: &OpaSpec) -> Option<String> {
        Some(format!("opa.{}", spec.connector.trim()))
    }

    fn build(spec: &OpaSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

/// Validates the path and the connector name. When no OPA is configured at all (`rules validate`
/// offline, `rules test`), the name cannot be judged: loading warns that the connector is not
/// configured and the check reports "not evaluated". When some are, an unknown name is an error.
pub fn build(spec: &OpaSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if let Err(message) = check_path(&spec.path) {
        problems.push(Diagnostic::error(
            "path",
            message,
            "give the document as OPA's data API names it: package path and rule, separated by `/`, e.g. `pim/allow`",
        ));
    }
    let name = spec.connector.trim();
    let configured = &env.connectors.opa;
    if name.is_empty() {
        problems.push(Diagnostic::error(
            "connector",
            "is empty",
            "name a `[connectors.opa.NAME]` section, e.g. `connector: main`",
        ));
    } else if !configured.is_empty() && !configured.contains_key(name) {
        let near = configured
            .keys()
            .map(|known| (strsim::levenshtein(name, known), known))
            .filter(|(distance, _)| *distance <= 3)
            .min()
            .map(|(_, known)| known);
        let known = configured
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        problems.push(Diagnostic::error(
            "connector",
            format!(
                "no `[connectors.opa.{}]` is configured",
                super::util::quote(name, 60)
            ),
            match near {
                Some(near) => format!("did you mean `{near}`? Configured: {known}"),
                None => format!("use one of the configured OPA connectors: {known}"),
            },
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(OpaCheck {
        connector: name.to_string(),
        path: spec.path.clone(),
        connectors: Arc::clone(env.connectors),
    }))
}

/// `pim/allow`: segments of `[A-Za-z0-9_]`, separated by single `/`, no leading or trailing `/`
/// (so no `..`, no query, nothing that could reach another OPA endpoint).
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.chars().count() > MAX_PATH_CHARS {
        return Err(format!("is longer than {MAX_PATH_CHARS} characters"));
    }
    let shown = super::util::quote(path, 60);
    if path.starts_with('/') {
        return Err(format!(
            "`{shown}` starts with `/`; it is relative to `/v1/data/`"
        ));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(format!(
                "`{shown}` has an empty segment (`//` or a trailing `/`)"
            ));
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "`{shown}` has a segment with characters other than letters, digits and `_`"
            ));
        }
    }
    Ok(())
}

#[derive(Debug)]
struct OpaCheck {
    connector: String,
    path: String,
    connectors: Arc<Connectors>,
}

/// What OPA's `result` says, or why it says nothing usable.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allow(Vec<String>),
    Deny(Vec<String>),
    Unusable(&'static str),
}

/// Reads a `result`: a boolean, or `{allow: bool, reasons?: [string]}` (other keys ignored).
fn verdict(result: Option<&Value>) -> Verdict {
    let Some(result) = result else {
        return Verdict::Unusable("the policy's document is undefined for this request");
    };
    match result {
        Value::Bool(true) => Verdict::Allow(Vec::new()),
        Value::Bool(false) => Verdict::Deny(Vec::new()),
        Value::Object(object) => {
            let reasons = match object.get("reasons") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => {
                    let mut reasons = Vec::new();
                    for item in items {
                        let Value::String(text) = item else {
                            return Verdict::Unusable("`reasons` holds something other than text");
                        };
                        reasons.push(text.as_str());
                    }
                    bounded(&reasons)
                }
                Some(_) => return Verdict::Unusable("`reasons` is not a list"),
            };
            match object.get("allow") {
                Some(Value::Bool(true)) => Verdict::Allow(reasons),
                Some(Value::Bool(false)) => Verdict::Deny(reasons),
                Some(_) => Verdict::Unusable("`allow` is not true or false"),
                None => Verdict::Unusable("the result has no `allow`"),
            }
        }
        _ => Verdict::Unusable("the result is neither true/false nor `{allow, reasons}`"),
    }
}

/// Reasons as a requester may see them: control characters out, whitespace collapsed, empty ones
/// dropped, at most [`MAX_REASONS`] of at most [`MAX_REASON_CHARS`] each.
fn bounded(reasons: &[&str]) -> Vec<String> {
    reasons
        .iter()
        .map(|reason| {
            let clean: String = reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
            super::util::quote(&clean, MAX_REASON_CHARS)
        })
        .filter(|reason| !reason.is_empty())
        .take(MAX_REASONS)
        .collect()
}

impl OpaCheck {
    fn judge(&self, verdict: Verdict) -> CheckOutcome {
        let path = &self.path;
        let with = |reasons: &[String]| {
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join("; "))
            }
        };
        match verdict {
            Verdict::Allow(reasons) => {
                CheckOutcome::pass(format!("the OPA policy `{path}` allows{}", with(&reasons)))
                    .with_evidence("reasons", reasons)
            }
            Verdict::Deny(reasons) => {
                CheckOutcome::fail(format!("the OPA policy `{path}` denies{}", with(&reasons)))
                    .with_evidence("reasons", reasons)
            }
            Verdict::Unusable(why) => CheckOutcome::error(format!(
                "the OPA policy `{path}` could not be evaluated: its answer is not a decision"
            ))
            .with_evidence("error_detail", why),
        }
    }

    async fn ask(&self, opa: &Opa, context: &CheckContext<'_>) -> CheckOutcome {
        let input = request_document(context, opa.justification());
        let (answer, call) = opa.query(&self.path, input, context.deadline).await;
        let outcome = match answer {
            Ok(decision) => self
                .judge(verdict(decision.result.as_ref()))
                .with_evidence("decision_id", decision.decision_id),
            Err(error) => CheckOutcome::error(format!(
                "the OPA policy `{}` could not be evaluated: {error}",
                self.path
            ))
            .with_evidence("error_detail", error.detail()),
        };
        // OPA decides on what is true now (its data, the request as sent).
        outcome.holding_at(context.now).with_evidence(
            "upstream",
            serde_json::to_value([&call]).unwrap_or(Value::Null),
        )
    }
}

#[async_trait]
impl Check for OpaCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let outcome = match self.connectors.opa.get(&self.connector) {
            None => CheckOutcome::error(format!(
                "the OPA connector `{}` is not configured, so the OPA policy `{}` could not be evaluated",
                self.connector, self.path
            )),
            Some(opa) => self.ask(opa, context).await,
        };
        outcome
            .with_evidence("connector", self.connector.as_str())
            .with_evidence("path", self.path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, now, request, run};
    use serde_json::json;

    fn problems(yaml: &str) -> Vec<Diagnostic> {
        let spec: OpaSpec = yaml_serde::from_str(yaml).unwrap();
        build(&spec, &TestEnv::default().env()).unwrap_err()
    }

    #[test]
    fn document_paths_are_package_segments_and_nothing_else() {
        for good in ["pim/allow", "pim", "org_1/pim/v2/allow"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/pim/allow",
            "pim/allow/",
            "pim//allow",
            "pim/../admin",
            "pim/allow?pretty=true",
            "pim/al low",
            "pim/allow#x",
            "pim/allów",
            "pim\\allow",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a/".repeat(200)).is_err());
    }

    #[test]
    fn a_bad_path_and_an_empty_connector_are_each_reported() {
        let found = problems("{ connector: '', path: '../v1/policies' }");
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["path", "connector"], "{found:?}");
        assert!(found[0].fix.contains("pim/allow"));
    }

    #[test]
    fn the_spec_refuses_unknown_keys() {
        let error = yaml_serde::from_str::<OpaSpec>("{ connector: main, path: pim/allow, url: x }")
            .unwrap_err();
        assert!(error.to_string().contains("unknown field `url`"), "{error}");
    }

    #[test]
    fn without_the_connector_the_check_is_not_evaluated_and_never_passes() {
        let spec: OpaSpec = yaml_serde::from_str("{ connector: main, path: pim/allow }").unwrap();
        let check = build(&spec, &TestEnv::default().env()).unwrap();
        let outcome = run(check.as_ref(), &request(), now());
        assert_eq!(outcome.status, CheckStatus::Error);
        assert!(outcome.message.contains("not configured"), "{outcome:?}");
        assert_eq!(outcome.evidence["path"], "pim/allow");
    }

    #[test]
    fn only_a_boolean_or_an_allow_object_is_a_decision() {
        assert_eq!(verdict(Some(&json!(true))), Verdict::Allow(vec![]));
        assert_eq!(verdict(Some(&json!(false))), Verdict::Deny(vec![]));
        assert_eq!(
            verdict(Some(&json!({ "allow": false, "reasons": ["no training"] }))),
            Verdict::Deny(vec!["no training".into()])
        );
        assert_eq!(
            verdict(Some(&json!({ "allow": true, "extra": 1 }))),
            Verdict::Allow(vec![])
        );
        for unusable in [
            None,
            Some(json!("yes")),
            Some(json!(1)),
            Some(json!(null)),
            Some(json!([true])),
            Some(json!({})),
            Some(json!({ "allow": "true" })),
            Some(json!({ "allow": 1 })),
            Some(json!({ "allow": true, "reasons": "fine" })),
            Some(json!({ "allow": true, "reasons": [1] })),
        ] {
            assert!(
                matches!(verdict(unusable.as_ref()), Verdict::Unusable(_)),
                "{unusable:?}"
            );
        }
    }

    #[test]
    fn reasons_are_cleaned_and_bounded() {
        let long = "x".repeat(1000);
        let many: Vec<&str> = vec!["a\nb\u{7}c", "", "  ", &long, "d", "e", "f", "g", "h"];
        let shown = bounded(&many);
        assert_eq!(shown.len(), MAX_REASONS);
        assert_eq!(shown[0], "a b c");
        assert!(shown[1].chars().count() <= MAX_REASON_CHARS + 1);
        assert!(shown.iter().all(|r| !r.chars().any(char::is_control)));
    }
}
