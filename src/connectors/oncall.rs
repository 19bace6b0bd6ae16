//! The one way the `oncall` check asks an on-call system, whichever it is: [`OncallSource`],
//! implemented by each vendor's connector (`pagerduty`, `opsgenie`, `oncall_file`), and the table
//! of vendors rules may name ([`ONCALL_VENDORS`]). The check never matches vendor names.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::facts::{self, FactAnswer, Recordable, Unanswerable};
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Duty {
    /// The schedule or escalation policy from the rule that this duty is for.
    pub target: String,
    pub level: u32,
    pub end: Option<DateTime<Utc>>,
}

/// A vendor's answer. `Unknown` and `NotOnCall` carry the requester's whole sentence.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

/// An on-call system whose answers go through the fact book (`connectors::facts`); every vendor in
/// [`ONCALL_VENDORS`] is handed out wrapped. The key is the requester, the targets and the instant.
#[derive(Debug)]
struct Booked {
    name: &'static str,
    inner: Arc<dyn OncallSource>,
}

impl Booked {
    fn wrap(name: &'static str, inner: Arc<dyn OncallSource>) -> Arc<dyn OncallSource> {
        Arc::new(Booked { name, inner })
    }
}

#[async_trait]
impl OncallSource for Booked {
    async fn on_call(
        &self,
        ask: &OncallAsk<'_>,
        who: &dyn RequesterAddresses,
        calls: &mut Vec<UpstreamCall>,
    ) -> OncallAnswer {
        let key = format!(
            "{}|schedules={}|policies={}|at={}",
            ask.principal_id,
            ask.schedules.join(","),
            ask.policies.join(","),
            ask.at.to_rfc3339()
        );
        let fetch = async {
            let mut made = Vec::new();
            let answer = self.inner.on_call(ask, who, &mut made).await;
            (answer, made)
        };
        let (answer, made) = facts::through(&format!("{}.oncall", self.name), &key, fetch).await;
        calls.extend(made);
        answer
    }
}

impl Recordable for OncallAnswer {
    fn to_answer(&self) -> FactAnswer {
        match serde_json::to_value(self) {
            Ok(value) => FactAnswer::Value(value),
            Err(_) => FactAnswer::Error("malformed".into()),
        }
    }

    fn from_answer(answer: FactAnswer, _source: &str) -> Result<Self, String> {
        match answer {
            FactAnswer::Value(value) => {
                serde_json::from_value(value).map_err(|error| error.to_string())
            }
            other => Err(format!("not an on-call answer: {other:?}")),
        }
    }
}

impl Unanswerable for OncallAnswer {
    fn unanswerable(source: &str, detail: String) -> Self {
        let connector = source.split('.').next().unwrap_or(source).to_string();
        OncallAnswer::Unknown(format!(
            "on-call status could not be checked: {connector} could not be read ({detail})"
        ))
    }
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
            Some(Booked::wrap("pagerduty", source))
        },
    },
    OncallVendor {
        name: "opsgenie",
        connector: ConnectorId::Opsgenie,
        escalation_policies: false,
        get: |connectors| {
            let source: Arc<dyn OncallSource> = connectors.opsgenie.clone()?;
            Some(Booked::wrap("opsgenie", source))
        },
    },
    OncallVendor {
        name: "file",
        connector: ConnectorId::OncallFile,
        escalation_policies: true,
        get: |connectors| {
            let source: Arc<dyn OncallSource> = connectors.oncall_file.clone()?;
            Some(Booked::wrap("file", source))
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
