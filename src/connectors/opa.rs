//! An organisation's own Open Policy Agent: `POST {base_url}/v1/data/{path}` with `{"input": ...}`
//! (OPA's data API, "get a document with input"). One connector per `[connectors.opa.NAME]`.
//!
//! The connector only asks and reads OPA's envelope (`result`, `decision_id`); what a result means
//! (a boolean, `{allow, reasons}`) is the `opa` check's business (`checks::opa`). A query is a pure
//! read, so it goes through [`Upstream::read_json`] and is retried like a GET.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::BuildContext;
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::secrets::{Secret, SecretRef};
use crate::vocabulary::diagnostic::Diagnostic;
use crate::vocabulary::disclosure::Disclosure;

/// The name in `[connectors.opa.NAME]`, in audit records, metrics and error messages.
pub const CONNECTOR: &str = "opa";

/// The longest `decision_id` kept: OPA's are UUIDs; anything far longer is not one.
const MAX_DECISION_ID_CHARS: usize = 128;

/// `[connectors.opa.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpaSettings {
    /// OPA's address, e.g. `https://opa.internal:8181` (plain http only to loopback).
    pub base_url: Option<String>,
    pub timeout_ms: u64,
    /// OPA's token authentication (`--authentication=token`): sent as `Authorization: Bearer`.
    pub bearer: Option<SecretRef>,
    /// How much of the justification leaves the process.
    pub justification: Disclosure,
    /// Retries (a query is a pure read); defaults suit most systems.
    pub retry: RetrySettings,
    /// When to stop calling this OPA for a while after repeated failures.
    pub circuit: CircuitSettings,
}

impl Default for OpaSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            timeout_ms: 2000,
            bearer: None,
            justification: Disclosure::Full,
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
        }
    }
}

/// OPA's answer to one query: `result` absent means the document is undefined (not `false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpaDecision {
    pub result: Option<Value>,
    /// OPA's id for this decision in its decision log (present when decision logging is on).
    pub decision_id: Option<String>,
}

/// One configured OPA.
#[derive(Debug)]
pub struct Opa {
    name: String,
    upstream: Upstream,
    base_url: String,
    bearer: Option<Secret>,
    justification: Disclosure,
}

impl Opa {
    /// Validates `[connectors.opa.<name>]` and resolves the bearer secret now, so a missing one
    /// stops start-up. Reports every problem.
    pub fn new(
        name: &str,
        settings: &OpaSettings,
        context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let section = format!("{CONNECTOR}.{name}");
        let mut problems = Vec::new();
        let base_url = super::base_url(
            &section,
            settings.base_url.as_deref(),
            None,
            "`https://opa.internal:8181`",
            &mut problems,
        );
        super::call_timeout(&section, settings.timeout_ms, &mut problems);
        let bearer = settings
            .bearer
            .as_ref()
            .and_then(|reference| match reference.resolve() {
                Ok(secret) => Some(secret),
                Err(message) => {
                    problems.push(super::settings_problem(
                        &section,
                        "bearer",
                        message,
                        "set `bearer = { env = \"PIMGATE_OPA_TOKEN\" }` (or `{ file = \"/path\" }`) and provide OPA's token there",
                    ));
                    None
                }
            });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name: name.to_string(),
            upstream: Upstream::with_settings(
                super::instance_name(CONNECTOR, name),
                context.http.clone(),
                Duration::from_millis(settings.timeout_ms),
                settings.retry,
                settings.circuit,
            ),
            base_url,
            bearer,
            justification: settings.justification,
        })
    }

    /// The name of its `[connectors.opa.NAME]` section.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn justification(&self) -> Disclosure {
        self.justification
    }

    /// Asks OPA for the document at `path` (already validated: `pim/allow`) given `input`.
    /// 404 is not an OPA answer for `/v1/data` (an undefined document is `200 {}`), so it is an
    /// error like any other non-2xx.
    pub async fn query(
        &self,
        path: &str,
        input: Value,
        deadline: Instant,
    ) -> (Result<OpaDecision, UpstreamError>, UpstreamCall) {
        let source = format!("opa.{}", self.name);
        let key = format!("{path}|{}", super::facts::digest(&input));
        let fetch = async {
            let (decision, call) = self.ask(path, input, deadline).await;
            (super::facts::Plain(decision), Some(call))
        };
        let (decision, call) = super::facts::through(&source, &key, fetch).await;
        // A replayed answer asked nothing: its record says so.
        let call = call.unwrap_or_else(|| UpstreamCall {
            connector: CONNECTOR,
            operation: format!("POST /v1/data/{path}"),
            outcome: "replayed".into(),
            latency_ms: 0.0,
            cached: true,
            attempts: 0,
        });
        (decision.0, call)
    }

    async fn ask(
        &self,
        path: &str,
        input: Value,
        deadline: Instant,
    ) -> (Result<OpaDecision, UpstreamError>, UpstreamCall) {
        let operation = format!("POST /v1/data/{path}");
        let mut request = self
            .upstream
            .client()
            .post(format!("{}/v1/data/{path}", self.base_url))
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&serde_json::json!({ "input": input }));
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token.expose());
        }
        let (result, mut call) = self
            .upstream
            .read_json::<Value>(request, &operation, deadline)
            .await;
        let decision = match result {
            Ok(Fetched::Found(body)) => parse_answer(&body),
            Ok(Fetched::NotFound) => Err(UpstreamError::Status {
                connector: CONNECTOR,
                status: 404,
            }),
            Err(error) => Err(error),
        };
        if let Err(error) = &decision
            && call.outcome == "ok"
        {
            call.outcome = error.outcome().to_string();
        }
        (decision, call)
    }
}

/// OPA's envelope: an object, with an optional `result` and an optional string `decision_id`.
/// Anything else (an array, a `decision_id` that is not a short string) is not OPA's answer.
/// Pure, for tests and the fuzz harness.
pub fn parse_answer(body: &Value) -> Result<OpaDecision, UpstreamError> {
    let malformed = UpstreamError::Malformed {
        connector: CONNECTOR,
    };
    let Value::Object(envelope) = body else {
        return Err(malformed);
    };
    let decision_id = match envelope.get("decision_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id))
            if id.chars().count() <= MAX_DECISION_ID_CHARS && !id.chars().any(char::is_control) =>
        {
            Some(id.clone())
        }
        Some(_) => return Err(malformed),
    };
    Ok(OpaDecision {
        result: envelope.get("result").cloned(),
        decision_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> BuildContext {
        BuildContext {
            http: reqwest::Client::new(),
            tenant_id: "t".into(),
        }
    }

    #[test]
    fn the_envelope_keeps_an_undefined_result_apart_from_false() {
        let undefined = parse_answer(&json!({ "decision_id": "d-1" })).unwrap();
        assert_eq!(undefined.result, None);
        assert_eq!(undefined.decision_id.as_deref(), Some("d-1"));
        let denied = parse_answer(&json!({ "result": false })).unwrap();
        assert_eq!(denied.result, Some(json!(false)));
        assert!(parse_answer(&json!([true])).is_err());
        assert!(parse_answer(&json!({ "result": true, "decision_id": 7 })).is_err());
        let long = "x".repeat(MAX_DECISION_ID_CHARS + 1);
        assert!(parse_answer(&json!({ "result": true, "decision_id": long })).is_err());
    }

    #[test]
    fn settings_problems_name_the_connector_section() {
        let settings = OpaSettings {
            base_url: Some("http://opa.example:8181".into()),
            timeout_ms: 0,
            bearer: Some(SecretRef {
                env: Some("PIMGATE_TEST_SURELY_UNSET_OPA_TOKEN".into()),
                file: None,
            }),
            ..OpaSettings::default()
        };
        let problems = Opa::new("main", &settings, &context()).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connectors.opa.main.base_url",
                "connectors.opa.main.timeout_ms",
                "connectors.opa.main.bearer"
            ]
        );
        assert!(problems[0].message.contains("plain http"), "{problems:?}");
        assert!(!format!("{problems:?}").contains("hunter"));
        let missing = Opa::new("main", &OpaSettings::default(), &context()).unwrap_err();
        assert!(missing[0].message.contains("missing"));
    }

    #[test]
    fn loopback_http_is_accepted_for_a_local_opa() {
        let settings = OpaSettings {
            base_url: Some("http://127.0.0.1:8181/".into()),
            ..OpaSettings::default()
        };
        let opa = Opa::new("local", &settings, &context()).unwrap();
        assert_eq!(opa.name(), "local");
        assert_eq!(opa.base_url, "http://127.0.0.1:8181");
    }
}
