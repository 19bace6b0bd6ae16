//! The one way the `oncall` check asks an on-call system, whichever it is: [`OncallSource`],
//! implemented by each vendor's connector (`pagerduty`, `opsgenie`, `oncall_file`), and the table
//! of vendors rules may name ([`ONCALL_VENDORS`]). The check never matches vendor names.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::http::{UpstreamCall, UpstreamError};
use super::{ConnectorId, Connectors};

/// What the check asks: is the requester on call for one of these targets at `at`?
#[derive(Debug, Clone, Copy)]
pub struct OncallAsk<'a> {
    pub principal_id: &'a str,
    pub schedules: &'a [String],
    pub policies: &'a [String],
    /// The activation's effective start: the instant every duty must cover.
    pub at: DateTime<Utc>,
    /// `Some(at)` when the activation starts later than now (ask about that instant), `None` for
    /// now (the service's present, which its cache may serve).
    pub later: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    pub deadline: Instant,
}

/// One way the requester is on call at the asked instant.
#[derive(Debug, Clone)]
pub struct Duty {
    /// The schedule or escalation policy from the rule that this duty is for.
    pub target: String,
    pub level: u32,
    pub end: Option<DateTime<Utc>>,
}

/// A vendor's answer. `Unknown` and `NotOnCall` carry the requester's whole sentence.
#[derive(Debug)]
pub enum OncallAnswer {
    /// Every duty found (possibly none): the check judges levels and targets.
    Duties(Vec<Duty>),
    /// The vendor definitely says the requester is not on call, in its own words.
    NotOnCall(String),
    /// Could not be evaluated.
    Unknown(String),
}

/// The requester's lower-cased addresses, resolved only when a vendor needs them; `Err` is the
/// requester's sentence for a not-evaluated outcome.
#[async_trait]
pub trait RequesterAddresses: Send + Sync {
    async fn addresses(
        &self,
        principal_id: &str,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Vec<String>, String>;
}

/// An on-call system, as the `oncall` check uses it.
#[async_trait]
pub trait OncallSource: Send + Sync + fmt::Debug {
    async fn on_call(
        &self,
        ask: &OncallAsk<'_>,
        who: &dyn RequesterAddresses,
        calls: &mut Vec<UpstreamCall>,
    ) -> OncallAnswer;
}

/// What rules may name as an `oncall` source, and what it can do.
#[derive(Clone, Copy)]
pub struct OncallVendor {
    /// The `source:` value in rules, and the evidence's `source`.
    pub name: &'static str,
    pub connector: ConnectorId,
    /// Whether it can be asked about escalation policies (Opsgenie is asked per schedule).
    pub escalation_policies: bool,
    /// The configured connector, if any.
    pub get: fn(&Connectors) -> Option<Arc<dyn OncallSource>>,
}

impl fmt::Debug for OncallVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Every on-call vendor. A new one: a connector file implementing [`OncallSource`], and a line here.
pub const ONCALL_VENDORS: &[OncallVendor] = &[
    OncallVendor {
        name: "pagerduty",
        connector: ConnectorId::PagerDuty,
        escalation_policies: true,
        get: |connectors| {
            let source: Arc<dyn OncallSource> = connectors.pagerduty.clone()?;
            Some(source)
        },
    },
    OncallVendor {
        name: "opsgenie",
        connector: ConnectorId::Opsgenie,
        escalation_policies: false,
        get: |connectors| {
            let source: Arc<dyn OncallSource> = connectors.opsgenie.clone()?;
            Some(source)
        },
    },
    OncallVendor {
        name: "file",
        connector: ConnectorId::OncallFile,
        escalation_policies: true,
        get: |connectors| {
            let source: Arc<dyn OncallSource> = connectors.oncall_file.clone()?;
            Some(source)
        },
    },
];

/// The vendor rules call `name`.
pub fn oncall_vendor(name: &str) -> Option<&'static OncallVendor> {
    ONCALL_VENDORS.iter().find(|vendor| vendor.name == name)
}

/// The requester's sentence for an on-call system that failed.
pub fn unavailable(error: &UpstreamError) -> String {
    format!("on-call status could not be checked: {error}")
}

impl OncallAsk<'_> {
    /// "P1 or P2": the targets as the requester's sentences name them.
    pub fn targets(&self) -> String {
        let names: Vec<&str> = self
            .schedules
            .iter()
            .chain(self.policies)
            .map(String::as_str)
            .collect();
        names.join(" or ")
    }
}
