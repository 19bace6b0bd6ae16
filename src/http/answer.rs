//! PIM's answer as it goes on the wire (`shared/spec/wire.md` §2).
//!
//! Serialized per answer, replays included. Serializing is ≈ 2–3 % of a replay's CPU (perf); keeping
//! the bytes with each stored decision instead cost ≈ 4.5 MB of RSS with the replay cache full
//! (10,000 entries), so it was tried and not kept.

use actix_web::web::Bytes;
use serde::Serialize;

use crate::decision::Decision;

/// PIM's expected answer, nothing more.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PimResponse<'a> {
    /// Serialized as its hyphenated lower-case text, as `Uuid::to_string` writes it.
    evaluation_id: uuid::Uuid,
    evaluation_outcome: &'static str,
    reason: &'a [String],
}

/// The JSON body of the answer to `decision`.
pub fn body(decision: &Decision) -> Result<Bytes, serde_json::Error> {
    let answer = PimResponse {
        evaluation_id: decision.evaluation_id,
        evaluation_outcome: decision.outcome.as_str(),
        reason: &decision.reasons,
    };
    serde_json::to_vec(&answer).map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::decision::Outcome;

    #[test]
    fn the_body_holds_exactly_the_three_fields_pim_reads() {
        let decision = Decision {
            evaluation_id: uuid::Uuid::from_u128(0x0190_a6e4_7c2b_7000_8000_0000_0000_0001),
            reasons: vec!["one \"quoted\" reason".into(), "two".into()],
            policy: Some("p".into()),
            ..Decision::bare(Outcome::AutoApproved)
        };
        let sent: Value = serde_json::from_slice(&body(&decision).unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({
                "evaluationId": "0190a6e4-7c2b-7000-8000-000000000001",
                "evaluationOutcome": "AutoApproved",
                "reason": ["one \"quoted\" reason", "two"],
            })
        );
    }
}
