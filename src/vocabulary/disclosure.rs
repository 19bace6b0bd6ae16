//! How much of a requester's justification leaves the process when pimgate hands the request to
//! another system (`checks::request_document`); a connector setting, so it lives below both.

use serde::{Deserialize, Serialize};

/// How much of the justification a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disclosure {
    /// As normalised at decode (what the rules judged).
    #[default]
    Full,
    /// `sha256:<hex>` of it: a receiver can compare, not read.
    Hash,
    /// Not sent (`null`).
    Omit,
}
