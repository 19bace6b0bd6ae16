//! Operator rules: YAML files parsed, validated (every problem at once) and compiled into a
//! [`RuleSet`] that selects the one policy deciding a request.
//!
//! PLACEHOLDER: the types below are the contract with `decision`; parsing and matching are being
//! written (see the rules helper's brief).

pub mod catalog;
pub mod testing;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::NamedCheck;
use crate::decision::{Outcome, SkippedPolicy};
use crate::payload::ActivationRequest;

/// What happens when a required check cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Fail closed: the request is denied, with a reason saying the check could not run.
    #[default]
    Deny,
    /// The check is skipped and the request goes on to PIM's normal approval; never `AutoApproved`.
    Approve,
}

/// A policy's fixed answer (`decide:`), with no checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedDecision {
    pub outcome: Outcome,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub source: PathBuf,
    pub decide: Option<FixedDecision>,
    pub require: Vec<NamedCheck>,
    pub auto_approve: Vec<NamedCheck>,
    pub on_error: FailureMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the rules, located well enough for an operator to fix it at 3 a.m.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path, e.g. `policies[2].require[0].duration.max`.
    pub key: String,
    pub message: String,
    pub fix: String,
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    /// sha256 over the rule files' names and bytes, in load order: audit records name the exact rules.
    pub revision: String,
    pub policies: Vec<Policy>,
    /// Problems that do not stop loading (e.g. a connector that is not configured).
    pub warnings: Vec<RuleProblem>,
}

/// The outcome of matching: the first policy that matches decides.
#[derive(Debug)]
pub enum Selection<'a> {
    Matched {
        policy: &'a Policy,
        skipped: Vec<SkippedPolicy>,
    },
    /// No policy matched: the request is denied (an operator adds a catch-all policy to change that).
    NoMatch { skipped: Vec<SkippedPolicy> },
    /// A policy's `when` condition failed to evaluate: fail closed rather than fall through.
    ConditionError {
        policy: &'a Policy,
        message: String,
        skipped: Vec<SkippedPolicy>,
    },
}

pub fn load(_path: &std::path::Path) -> Result<RuleSet, Vec<RuleProblem>> {
    Ok(RuleSet {
        revision: String::new(),
        policies: Vec::new(),
        warnings: Vec::new(),
    })
}

impl RuleSet {
    pub fn select(&self, _request: &ActivationRequest, _now: DateTime<Utc>) -> Selection<'_> {
        Selection::NoMatch {
            skipped: Vec::new(),
        }
    }
}
