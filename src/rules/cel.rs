//! `when:` conditions: CEL expressions compiled once at load and evaluated over the normalized request.
//!
//! The `cel` crate has no cost budget, so the bound is the expression itself: at most
//! [`MAX_LENGTH`] characters and [`MAX_NESTING`] levels of brackets, checked before parsing (the parser
//! recurses, so a deep expression must never reach it). The variables hold a handful of scalars, so
//! evaluation time is bounded by the expression size.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program, Value};
use chrono::{DateTime, Utc};

use crate::payload::{ActivationRequest, Target};
use crate::rules::catalog;
use crate::vocabulary::diagnostic::Diagnostic;

pub const MAX_LENGTH: usize = 2048;
pub const MAX_NESTING: usize = 32;

/// A compiled `when:` expression. Cloning shares the compiled program.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_tuple("Condition")
            .field(&self.source)
            .finish()
    }
}

/// Why an expression is refused; its key is the `when` the caller names.
fn rejected(message: impl Into<String>, fix: &str) -> Box<Diagnostic> {
    Box::new(Diagnostic::error("", message, fix))
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

impl Condition {
    /// The compiled expression, or why it was rejected (its key empty: the caller names the `when`;
    /// boxed, as a rare error is no reason to make every `Result` large).
    pub fn compile(source: &str) -> Result<Condition, Box<Diagnostic>> {
        let length = source.chars().count();
        if length > MAX_LENGTH {
            return Err(rejected(
                format!("the expression is {length} characters long; the limit is {MAX_LENGTH}"),
                "split the condition over several policies, or move the logic into checks",
            ));
        }
        let depth = nesting_depth(source);
        if depth > MAX_NESTING {
            return Err(rejected(
                format!(
                    "the expression nests {depth} levels of brackets; the limit is {MAX_NESTING}"
                ),
                "flatten the expression",
            ));
        }
        if source.trim().is_empty() {
            return Err(rejected(
                "the expression is empty",
                "remove `when`, or write a condition such as `request.tier != \"Critical\"`",
            ));
        }
        let program = env().compile(source).map_err(|errors| {
            rejected(
                format!("the expression does not parse: {}", one_line(&errors.to_string())),
                "check the CEL syntax (https://cel.dev); strings are quoted, e.g. `request.role_name == \"Exchange Administrator\"`",
            )
        })?;
        Ok(Condition {
            source: source.to_string(),
            program: Arc::new(program),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `Err` when the expression fails or yields something other than a bool: the caller fails closed.
    pub fn evaluate(
        &self,
        request: &ActivationRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, String> {
        let mut context = Context::with_env(env());
        context.add_variable_from_value("request", request_value(request, now));
        context.add_variable_from_value("now", Value::Timestamp(now.fixed_offset()));
        // Request text flows into the interpreter; should it ever panic on some input, the policy
        // fails closed instead of the worker dying.
        let executed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.program.execute(&context)
        }))
        .map_err(|_| "the CEL interpreter failed on this request".to_string())?;
        match executed {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!(
                "`when` must yield a bool, it yielded a {}",
                other.type_of()
            )),
            Err(error) => Err(one_line(&without_request_text(&error.to_string(), request))),
        }
    }
}

/// CEL's runtime errors print the values involved (`String("…")`, a missing key, a bad time zone):
/// request text such as the justification must not ride along into the reason and the audit record,
/// which may be told to omit or hash it. Every printed string or bytes value becomes `String(…)` /
/// `Bytes(…)`, and the justification, wherever else it appears, `request.justification`.
fn without_request_text(message: &str, request: &ActivationRequest) -> String {
    static PRINTED_VALUE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let printed = PRINTED_VALUE.get_or_init(|| {
        regex::Regex::new(r#"String\("(?:[^"\\]|\\.)*"\)|Bytes\(\[[^\]]*\]\)"#).ok()
    });
    let mut message = match printed {
        Some(regex) => regex
            .replace_all(message, |found: &regex::Captures<'_>| {
                if found[0].starts_with("String") {
                    "String(…)"
                } else {
                    "Bytes(…)"
                }
            })
            .into_owned(),
        // The pattern is a constant; without it nothing of the message can be trusted.
        None => return "the expression failed on this request".to_string(),
    };
    if let Some(text) = request
        .justification
        .as_deref()
        .filter(|text| !text.is_empty())
    {
        message = message.replace(text, "request.justification");
    }
    message
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The deepest nesting of `(`, `[` and `{` outside string literals.
fn nesting_depth(source: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The `request` variable: every field is always present (empty string or zero when the request has
/// none), so a condition never fails on a missing key.
fn request_value(request: &ActivationRequest, now: DateTime<Utc>) -> Value {
    let (role_id, group_id, access) = match &request.target {
        Target::EntraRole {
            role_definition_id, ..
        }
        | Target::AzureRole {
            role_definition_id, ..
        } => (role_definition_id.clone(), String::new(), String::new()),
        Target::Group {
            group_id,
            access_id,
        } => (
            String::new(),
            group_id.clone(),
            access_id.as_str().to_string(),
        ),
    };
    let builtin = match request.target {
        Target::EntraRole { .. } => catalog::by_id(&role_id),
        _ => None,
    };
    let duration = request.schedule.requested_duration(now);
    let ticket = request.ticket.as_ref();
    let mut map: HashMap<String, Value> = HashMap::new();
    let mut put = |key: &str, value: Value| {
        map.insert(key.to_string(), value);
    };
    put("principal_id", request.principal_id.clone().into());
    put("action", request.action.as_str().into());
    put("resource_type", request.resource_type.as_str().into());
    put("role_id", role_id.into());
    put(
        "role_name",
        builtin.map(|role| role.name).unwrap_or("").into(),
    );
    put(
        "tier",
        builtin
            .map(|role| crate::rules::matcher::tier_name(role.tier))
            .unwrap_or("")
            .into(),
    );
    put("scope", request.scope().into());
    put("group_id", group_id.into());
    put("access", access.into());
    put(
        "justification",
        request.justification.clone().unwrap_or_default().into(),
    );
    put(
        "ticket_number",
        ticket
            .and_then(|t| t.number.clone())
            .unwrap_or_default()
            .into(),
    );
    put(
        "ticket_system",
        ticket
            .and_then(|t| t.system.clone())
            .unwrap_or_default()
            .into(),
    );
    put(
        "duration",
        Value::Duration(duration.unwrap_or_else(chrono::Duration::zero)),
    );
    put("has_duration", Value::Bool(duration.is_some()));
    put(
        "start",
        Value::Timestamp(request.schedule.effective_start(now).fixed_offset()),
    );
    Value::from(map)
}

#[cfg(test)]
mod tests {
    use super::{Condition, nesting_depth};

    #[test]
    fn nesting_ignores_brackets_inside_strings() {
        assert_eq!(nesting_depth("f(a[1], \"(((\")"), 2);
        assert_eq!(nesting_depth("'\\')' + (x)"), 1);
    }

    #[test]
    fn too_long_and_too_deep_expressions_are_rejected_before_parsing() {
        let long = format!("request.scope == \"{}\"", "a".repeat(3000));
        assert!(Condition::compile(&long).is_err_and(|p| p.message.contains("limit is 2048")));
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        assert!(Condition::compile(&deep).is_err_and(|p| p.message.contains("nests 40 levels")));
    }

    #[test]
    fn runtime_errors_never_carry_the_justification() {
        let mut request = crate::checks::test_support::request();
        request.justification = Some("Secret \"customer\" 4711 name".to_string());
        for source in [
            "request.justification + 1 == 2",
            "[request.justification] + 1 == 2",
            "{'a': 1}[request.justification] == 1",
            "bytes(request.justification) + 1 == 2",
            "now.getHours(request.justification) == 1",
        ] {
            let condition = Condition::compile(source).unwrap();
            let message = condition
                .evaluate(&request, chrono::Utc::now())
                .unwrap_err();
            assert!(
                !message.contains("customer") && !message.contains("4711"),
                "{source}: {message}"
            );
        }
    }

    #[test]
    fn unparsable_expressions_are_rejected() {
        assert!(
            Condition::compile("request.tier ==")
                .is_err_and(|p| p.message.contains("does not parse"))
        );
    }
}
