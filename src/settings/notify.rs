//! `[[notify]]` targets as the operator writes them, and the checks that need no secret: every
//! problem is reported at once with its key and a fix, as the other settings are. The runtime side
//! (secrets resolved, queues, delivery) is the top-level `notify` module.

use serde::{Deserialize, Serialize};

use crate::connectors::secrets::SecretRef;
use crate::payload::Stage;
use crate::vocabulary::Outcome;
use crate::vocabulary::diagnostic::Diagnostic;

/// The tier names `tiers` accepts: `rules::catalog::Tier`'s, which this layer cannot name (a test
/// in `notify::filter` keeps the two lists equal).
pub const TIER_NAMES: [&str; 4] = ["critical", "high", "medium", "low"];

/// Where a notification goes and in which shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A Microsoft Teams Workflows webhook ("Send webhook alerts to a channel"): an Adaptive Card.
    Teams,
    /// A Slack incoming webhook: Block Kit blocks.
    Slack,
    /// Any receiver of the event as JSON, signed like the `http` check's requests.
    Webhook,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Teams => "teams",
            NotifyKind::Slack => "slack",
            NotifyKind::Webhook => "webhook",
        }
    }
}

/// One `[[notify]]` table. The URL is a secret too (Teams and Slack webhook URLs carry their
/// token), so it is read from the environment or a file, never written in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NotifySettings {
    /// Names the target in the metric (`target` label) and in logs.
    pub name: String,
    pub kind: NotifyKind,
    /// `{ env = "VARIABLE" }` or `{ file = "/path" }` holding the webhook URL.
    pub url: Option<SecretRef>,
    /// `kind = "webhook"` only: the HMAC key of `X-Pimgate-Signature`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Only these outcomes (`Approved`, `AutoApproved`, `Denied`); empty means every outcome.
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// Only decisions of these policies; empty means any policy (and none).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Only requests for Entra built-in roles of these tiers; empty means any target.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Only these stages (`pre_approval`, `post_approval`, as the rules spell them; Graph's
    /// `preApproval` is accepted too); empty means both.
    #[serde(default)]
    pub stages: Vec<String>,
    /// Only decisions where a `mode: audit` policy would have answered differently.
    #[serde(default)]
    pub shadow_disagreement: bool,
    /// Notifications waiting for this target; beyond it new ones are dropped (and counted).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Timeout of one delivery attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per notification, the first included; only transient failures are retried.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_queue_capacity() -> usize {
    1000
}

fn default_timeout_ms() -> u64 {
    5000
}

fn default_max_attempts() -> u32 {
    4
}

/// The largest queue a target may ask for: each waiting notification is a few kilobytes.
pub const MAX_QUEUE_CAPACITY: usize = 100_000;

/// Every problem of the `[[notify]]` targets that can be seen without reading a secret.
pub fn validate(targets: &[NotifySettings]) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, target) in targets.iter().enumerate() {
        let key = |field: &str| format!("notify[{index}].{field}");
        let valid_name = !target.name.is_empty()
            && target.name.len() <= 64
            && target
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            problems.push(Diagnostic::error(
                key("name"),
                format!("`{}` is not a usable target name", target.name),
                "use up to 64 letters, digits, `-`, `_` or `.`, e.g. `security-teams`",
            ));
        } else if !seen.insert(target.name.as_str()) {
            problems.push(Diagnostic::error(
                key("name"),
                format!("`{}` names two targets", target.name),
                "give every [[notify]] target its own name",
            ));
        }
        match &target.url {
            None => problems.push(Diagnostic::error(
                key("url"),
                "is missing",
                "set `url = { env = \"VARIABLE\" }` or `{ file = \"/path\" }`; the URL itself never goes in the config",
            )),
            Some(reference) => check_reference(&key("url"), reference, &mut problems),
        }
        match (target.kind, &target.secret) {
            (NotifyKind::Webhook, None) => problems.push(Diagnostic::error(
                key("secret"),
                "a webhook target signs every notification and needs a secret",
                "set `secret = { env = \"VARIABLE\" }` or `{ file = \"/path\" }`",
            )),
            (NotifyKind::Webhook, Some(reference)) => {
                check_reference(&key("secret"), reference, &mut problems)
            }
            (kind, Some(_)) => problems.push(Diagnostic::error(
                key("secret"),
                format!("a `{}` target does not sign its messages", kind.as_str()),
                "remove `secret`, or use `kind = \"webhook\"` for a signed receiver",
            )),
            (_, None) => {}
        }
        check_values(
            &key("outcomes"),
            &target.outcomes,
            &[Outcome::Approved, Outcome::AutoApproved, Outcome::Denied].map(Outcome::as_str),
            "use `Approved`, `AutoApproved` or `Denied`",
            &mut problems,
        );
        check_values(
            &key("tiers"),
            &target.tiers,
            &TIER_NAMES,
            "use `critical`, `high`, `medium` or `low`",
            &mut problems,
        );
        for stage in &target.stages {
            // The rules' spelling (`pre_approval`, `pre-approval`) or Graph's (`preApproval`).
            let graph = Stage::ALL
                .iter()
                .any(|known| known.as_str().eq_ignore_ascii_case(stage.trim()));
            if !graph && stage.parse::<Stage>().is_err() {
                problems.push(Diagnostic::error(
                    key("stages"),
                    format!("unknown value `{stage}`"),
                    "use `pre_approval` or `post_approval`",
                ));
            }
        }
        if target
            .policies
            .iter()
            .any(|policy| policy.trim().is_empty())
        {
            problems.push(Diagnostic::error(
                key("policies"),
                "holds an empty policy name",
                "list policy names as the rule files spell them",
            ));
        }
        if !(1..=MAX_QUEUE_CAPACITY).contains(&target.queue_capacity) {
            problems.push(Diagnostic::error(
                key("queue_capacity"),
                format!(
                    "{} is outside 1..={MAX_QUEUE_CAPACITY}",
                    target.queue_capacity
                ),
                "use e.g. 1000",
            ));
        }
        if !(100..=60_000).contains(&target.timeout_ms) {
            problems.push(Diagnostic::error(
                key("timeout_ms"),
                format!("{} is outside 100..=60000", target.timeout_ms),
                "use e.g. 5000",
            ));
        }
        if !(1..=10).contains(&target.max_attempts) {
            problems.push(Diagnostic::error(
                key("max_attempts"),
                format!("{} is outside 1..=10", target.max_attempts),
                "use e.g. 4 (1 turns retries off)",
            ));
        }
    }
    problems
}

/// A reference names exactly one place; whether the secret is there is checked at start-up.
fn check_reference(key: &str, reference: &SecretRef, problems: &mut Vec<Diagnostic>) {
    if reference.env.is_some() == reference.file.is_some() {
        problems.push(Diagnostic::error(
            key,
            "give either `env` or `file`, exactly one",
            "write `{ env = \"VARIABLE\" }` or `{ file = \"/path\" }`",
        ));
    }
}

/// Each of `values` is one of `known` (any letter case, surrounding whitespace ignored).
fn check_values(
    key: &str,
    values: &[String],
    known: &[&str],
    fix: &str,
    problems: &mut Vec<Diagnostic>,
) {
    for value in values {
        if !known
            .iter()
            .any(|name| name.eq_ignore_ascii_case(value.trim()))
        {
            problems.push(Diagnostic::error(
                key,
                format!("unknown value `{value}`"),
                fix,
            ));
        }
    }
}
