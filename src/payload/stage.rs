//! Which PIM callback delivered a request. The same activation request is judged once per stage, so
//! the stage is part of what names an evaluation (`fingerprint::EvaluationKey`).

/// PIM's custom-extension stages. Only the pre-approval stage is served today (`POST /v1/evaluate`);
/// the post-approval endpoint adds a variant here and nothing else in the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Before any human approval (`CustomExtension_PreApproval_…`).
    PreApproval,
}

impl Stage {
    /// The stage's name in key derivations (and wherever it is shown). Never reuse a name: it is
    /// hashed into every evaluation id.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::PreApproval => "preApproval",
        }
    }
}
