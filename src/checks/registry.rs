//! The closed set of check kinds operators can name in rules, and how each is built.
//!
//! Config types (what the YAML says) are separate from runtime types (what runs per request): a spec
//! is validated and built once when rules load. Adding a kind = one file, one variant here, one arm
//! in `kind` and `build`; the compiler points at any arm you forget.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::NamedCheck;
use super::{duration, justification, principal, start, ticket, window};

/// One entry of a policy's `require:` or `auto_approve:` list, e.g. `- duration: { max: PT2H }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckSpec {
    Duration(duration::DurationSpec),
    Justification(justification::JustificationSpec),
    Ticket(ticket::TicketSpec),
    Principal(principal::PrincipalSpec),
    Window(window::WindowCheckSpec),
    Start(start::StartSpec),
}

/// What a spec may refer to by name: the rules' `lists:` and compiled `windows:`.
#[derive(Debug, Clone, Copy)]
pub struct BuildEnv<'a> {
    pub lists: &'a BTreeMap<String, Vec<String>>,
    pub windows: &'a BTreeMap<String, Arc<window::CompiledWindow>>,
}

/// A problem in one check's configuration; `rules` adds the file, line and policy around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Path below the check, e.g. `max` or `deny_patterns[1]`; empty for the check as a whole.
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl CheckSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::Duration(_) => "duration",
            CheckSpec::Justification(_) => "justification",
            CheckSpec::Ticket(_) => "ticket",
            CheckSpec::Principal(_) => "principal",
            CheckSpec::Window(_) => "window",
            CheckSpec::Start(_) => "start",
        }
    }

    /// Validates the spec (reporting every problem, not the first) and builds the runtime check.
    pub fn build(&self, env: &BuildEnv<'_>) -> Result<NamedCheck, Vec<SpecProblem>> {
        let check = match self {
            CheckSpec::Duration(spec) => duration::build(spec, env)?,
            CheckSpec::Justification(spec) => justification::build(spec, env)?,
            CheckSpec::Ticket(spec) => ticket::build(spec, env)?,
            CheckSpec::Principal(spec) => principal::build(spec, env)?,
            CheckSpec::Window(spec) => window::build(spec, env)?,
            CheckSpec::Start(spec) => start::build(spec, env)?,
        };
        Ok(NamedCheck {
            kind: self.kind(),
            check,
        })
    }
}
