//! Which PIM callback delivered a request. The same activation request is judged once per stage, so
//! the stage is part of what names an evaluation (`fingerprint::EvaluationKey`), of what rules
//! apply (`match: { stages: [...] }`) and of what may be answered (no `AutoApproved` after a human
//! approved).
//!
//! PIM does not say in the body which stage is calling: each stage is registered as its own custom
//! extension with its own `targetUrl` (`POST /v1/evaluate`, `POST /v1/evaluate/post-approval`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// PIM's custom-extension stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Before any human approval (`CustomExtension_PreApproval_EndUser_Assignment`). The extension
    /// answers `Denied`, `Approved` (hand it to PIM's approvers) or `AutoApproved` (skip them).
    PreApproval,
    /// After a human approved, before the role is active
    /// (`CustomExtension_PostApproval_EndUser_Assignment`, preview): a re-check of what may have
    /// changed while the request waited. Only `Approved` or `Denied` mean anything here.
    PostApproval,
}

impl Stage {
    /// Every stage, in the order PIM calls them.
    pub const ALL: [Stage; 2] = [Stage::PreApproval, Stage::PostApproval];

    /// The stage's name in key derivations, and the custom extension's `type` in Microsoft Graph
    /// (`preApproval`, `postApproval`). Never reuse a name: it is hashed into every evaluation id.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::PreApproval => "preApproval",
            Stage::PostApproval => "postApproval",
        }
    }

    /// The stage of a custom extension `type` as Graph returns it (`None` for `grant`, `revoke`, …).
    pub fn from_extension_type(value: &str) -> Option<Self> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == value)
    }

    /// pimgate's route for this stage (`interface.md`): the extension's `targetUrl` path.
    pub fn path(self) -> &'static str {
        match self {
            Stage::PreApproval => "/v1/evaluate",
            Stage::PostApproval => "/v1/evaluate/post-approval",
        }
    }

    /// The role-management policy rule that makes PIM call the extension at this stage of an end
    /// user's activation.
    pub fn rule_id(self) -> &'static str {
        match self {
            Stage::PreApproval => "CustomExtension_PreApproval_EndUser_Assignment",
            Stage::PostApproval => "CustomExtension_PostApproval_EndUser_Assignment",
        }
    }

    /// The stage a policy rule id links, if it is one of the two.
    pub fn from_rule_id(value: &str) -> Option<Self> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.rule_id() == value)
    }

    /// As the command line's `--stage` spells it.
    pub fn flag(self) -> &'static str {
        match self {
            Stage::PreApproval => "pre-approval",
            Stage::PostApproval => "post-approval",
        }
    }

    /// How rules, rule tests, audit records and metrics spell it (`match: { stages: [post_approval] }`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::PreApproval => "pre_approval",
            Stage::PostApproval => "post_approval",
        }
    }

    /// Whether `AutoApproved` is an answer at this stage: not once a human has approved.
    pub fn allows_auto_approval(self) -> bool {
        self == Stage::PreApproval
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Reads `pre_approval` / `post_approval`, and the command line's `pre-approval` / `post-approval`.
impl FromStr for Stage {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normal = text.trim().to_ascii_lowercase().replace('-', "_");
        Stage::ALL
            .into_iter()
            .find(|stage| stage.name() == normal)
            .ok_or_else(|| format!("`{text}` is not a stage; use pre-approval or post-approval"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_reads_from_its_rule_name_and_its_command_line_spelling() {
        for stage in Stage::ALL {
            assert_eq!(stage.name().parse::<Stage>(), Ok(stage));
            assert_eq!(stage.name().replace('_', "-").parse::<Stage>(), Ok(stage));
        }
        assert!("approval".parse::<Stage>().is_err());
        assert!("postApproval ".parse::<Stage>().is_err());
    }

    #[test]
    fn only_the_pre_approval_stage_may_answer_auto_approved() {
        assert!(Stage::PreApproval.allows_auto_approval());
        assert!(!Stage::PostApproval.allows_auto_approval());
    }

    #[test]
    fn rules_and_audit_records_spell_a_stage_as_its_name() {
        assert_eq!(
            serde_json::to_string(&Stage::PostApproval).ok().as_deref(),
            Some("\"post_approval\"")
        );
        assert_eq!(
            yaml_serde::from_str::<Stage>("pre_approval").ok(),
            Some(Stage::PreApproval)
        );
    }
}
