//! `http`: the organisation's own compliance API decides (training done, background check current,
//! device attested, change board sign-off), through a `[connectors.http.NAME]` connector.
//!
//! `- http: { connector: NAME, name: "Security training" }`: the request document
//! (`request_document`, with the stage and the effective interval) is POSTed, signed, and the
//! receiver's verdict `{"result": "pass" | "fail", "message": ..., "evidence": {...}}` is the
//! outcome; its `message` (cleaned and cut) is the requester's reason. Anything else (no answer,
//! an error status, an answer that is not exactly such a verdict) is not evaluated, and `on_error`
//! decides: never a pass. The verdict is about the present, so it holds at the time it was given
//! (`holds_at`), like a ticket's state.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::request_document::request_document;
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::http::UpstreamError;
use crate::connectors::{ConnectorId, Connectors};
use crate::vocabulary::diagnostic::Diagnostic;

/// `http: { connector: NAME, name: "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// The `[connectors.http.NAME]` to ask.
    pub connector: String,
    /// What the requester is told was checked, e.g. "Security training"; defaults to the
    /// connector's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `- http: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct HttpKind;

impl CheckKind for HttpKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The organisation's own compliance API decides, through a signed POST.",
            example: "- http: { connector: training, name: \"Security training\" }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "connector",
                    "connector name",
                    "required",
                    "training",
                    "The `[connectors.http.NAME]` to ask.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "name",
                    "string",
                    "the connector's name",
                    "Security training",
                    "What the requester is told was checked.",
                ),
            ],
            reads: vec![crate::checks::registry::UpstreamFact::new(
                "compliance API",
                "POST of the request document, signed; the verdict { result: pass | fail, message, evidence } decides, anything else is not evaluated",
            )],
        }
    }

    const NAME: &'static str = "http";
    const REACH: Reach = Reach::Upstream;
    type Spec = HttpSpec;

    fn connector(_spec: &HttpSpec) -> Option<ConnectorId> {
        Some(ConnectorId::Http)
    }

    fn connector_section(spec: &HttpSpec) -> Option<String> {
        Some(format!("http.{}", spec.connector.trim()))
    }

    fn build(spec: &HttpSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

/// The longest `name` a requester is shown.
const MAX_NAME_CHARS: usize = 80;

pub fn build(spec: &HttpSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let connector = spec.connector.trim().to_string();
    if connector.is_empty() {
        problems.push(Diagnostic::error(
            "connector",
            "is empty",
            "name a `[connectors.http.NAME]` section, e.g. `connector: compliance`",
        ));
    } else if !env.connectors.http.is_empty() && !env.connectors.http.contains_key(&connector) {
        // With no http connector at all (`rules validate` without a config), the load warns
        // instead, like any connector that is not configured.
        let known: Vec<&str> = env.connectors.http.keys().map(String::as_str).collect();
        let near = known
            .iter()
            .min_by_key(|name| strsim::levenshtein(name, &connector))
            .filter(|name| strsim::levenshtein(name, &connector) <= 3);
        let fix = match near {
            Some(near) => format!("did you mean `{near}`? Configured: {}", known.join(", ")),
            None => format!(
                "use one of the configured connectors ({}) or add `[connectors.http.{connector}]`",
                known.join(", ")
            ),
        };
        problems.push(Diagnostic::error(
            "connector",
            format!(
                "`{}` is not a configured http connector",
                super::util::quote(&connector, 40)
            ),
            fix,
        ));
    }
    let name = spec.name.as_deref().map(str::trim);
    if name.is_some_and(|name| name.is_empty() || name.chars().any(char::is_control)) {
        problems.push(Diagnostic::error(
            "name",
            "is empty or holds control characters",
            "give a short label the requester understands, e.g. `Security training`",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let label = match name {
        Some(name) => format!("`{}`", super::util::quote(name, MAX_NAME_CHARS)),
        None => format!("the compliance check `{connector}`"),
    };
    Ok(Arc::new(HttpCheck {
        connector,
        label,
        connectors: Arc::clone(env.connectors),
    }))
}

#[derive(Debug)]
struct HttpCheck {
    connector: String,
    /// How the requester's reasons name the check.
    label: String,
    connectors: Arc<Connectors>,
}

/// The requester's half of why the receiver gave no verdict: no status, no URL, no body.
fn why_not(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Timeout { .. } => "it did not answer in time",
        UpstreamError::Unreachable { .. } => "it could not be reached",
        UpstreamError::Status { .. } => "it answered with an error",
        UpstreamError::RateLimited { .. } => "it is rate-limiting pimgate",
        UpstreamError::Malformed { .. } | UpstreamError::WrongRecord { .. } => {
            "its answer was not a verdict pimgate can read"
        }
        UpstreamError::CircuitOpen { .. } => {
            "it keeps failing; pimgate is not calling it for a while"
        }
        UpstreamError::Auth { .. } => "pimgate could not authenticate to it",
        UpstreamError::NotConfigured { .. } | UpstreamError::Unavailable { .. } => {
            "it is not available"
        }
    }
}

#[async_trait]
impl Check for HttpCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let Some(api) = self.connectors.http.get(&self.connector) else {
            return CheckOutcome::error(format!(
                "{} could not be evaluated: the http connector `{}` is not configured",
                self.label, self.connector
            ))
            .with_evidence("connector", self.connector.clone());
        };
        let document = request_document(context, api.disclosure);
        let key = format!(
            "{}|{}",
            hex::encode(crate::payload::fingerprint(context.request)),
            context.stage.as_str()
        );
        let (answer, calls) = api
            .verdict(&document, &key, context.now, context.deadline)
            .await;
        let outcome = match answer {
            Ok(answer) => {
                let verdict = answer.verdict;
                let message = if verdict.message.is_empty() {
                    None
                } else {
                    Some(verdict.message)
                };
                let outcome = if verdict.passed {
                    CheckOutcome::pass(match message {
                        Some(message) => format!("{}: {message}", self.label),
                        None => format!("{} passed", self.label),
                    })
                } else {
                    CheckOutcome::fail(match message {
                        Some(message) => format!("{}: {message}", self.label),
                        None => format!("{} refused this activation", self.label),
                    })
                };
                outcome
                    .with_evidence("verdict", serde_json::Value::Object(verdict.evidence))
                    .holding_at(answer.given_at)
            }
            Err(error) => CheckOutcome::error(format!(
                "{} could not be evaluated: {}",
                self.label,
                why_not(&error)
            ))
            .with_evidence("error_detail", error.detail()),
        };
        outcome
            .with_evidence("connector", self.connector.clone())
            .with_evidence(
                "upstream",
                serde_json::to_value(&calls).unwrap_or(serde_json::Value::Null),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, now, request, run};

    fn spec(yaml: &str) -> HttpSpec {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn an_http_check_needs_a_connector_and_a_printable_name() {
        let env = TestEnv::default();
        let empty = build(&spec("{ connector: ' ' }"), &env.env()).unwrap_err();
        assert_eq!(empty[0].key, "connector");
        let named = build(&spec("{ connector: c, name: \"a\\nb\" }"), &env.env()).unwrap_err();
        assert_eq!(named[0].key, "name");
        let both = build(&spec("{ connector: '', name: '' }"), &env.env()).unwrap_err();
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(yaml_serde::from_str::<HttpSpec>("{ connector: c, url: x }").is_err());
        assert!(yaml_serde::from_str::<HttpSpec>("{ name: x }").is_err());
    }

    #[test]
    fn without_the_connector_the_check_is_not_evaluated_and_never_passes() {
        let check = build(
            &spec("{ connector: compliance }"),
            &TestEnv::default().env(),
        )
        .unwrap();
        let request = request();
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(outcome.status, CheckStatus::Error);
        assert!(
            outcome.message.contains("`compliance` is not configured"),
            "{}",
            outcome.message
        );
    }

    #[test]
    fn no_upstream_error_reason_carries_a_status_or_url() {
        let errors = [
            UpstreamError::Status {
                connector: "http",
                status: 500,
            },
            UpstreamError::Auth {
                connector: "http",
                detail: "HTTP 401".into(),
            },
            UpstreamError::Timeout { connector: "http" },
        ];
        for error in errors {
            let why = why_not(&error);
            assert!(!why.contains("500") && !why.contains("401") && !why.contains("http"));
        }
    }
}
