//! Words every layer speaks: PIM's answer, why a policy was passed over, how a problem in operator
//! input is reported (`diagnostic`), what an object id is (`ids`) and which URLs may be fetched (`fetch_url`). A leaf module, so the
//! rules (which name outcomes) and the decision (which produces them) both depend on it and not on
//! each other.

use serde::Serialize;

pub mod diagnostic;
pub mod disclosure;
pub mod fetch_url;
pub mod ids;
pub mod serde_keys;

/// PIM's three answers (`evaluationOutcome`), spelled exactly as PIM expects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum Outcome {
    Approved,
    AutoApproved,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "Approved",
            Outcome::AutoApproved => "AutoApproved",
            Outcome::Denied => "Denied",
        }
    }
}

/// Why a policy was passed over, for the explanation tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedPolicy {
    pub policy: String,
    pub why: String,
}
