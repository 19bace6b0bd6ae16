//! Test helpers for the check kinds: a fixed clock, a plain request, a build environment, a runner.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::registry::BuildEnv;
use super::window::CompiledWindow;
use super::{Check, CheckContext, CheckOutcome};
use crate::payload::{
    Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target, Ticket,
};

pub const PRINCIPAL: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";

/// Tuesday 2026-11-24 18:05 UTC (19:05 in Berlin).
pub fn now() -> DateTime<Utc> {
    at("2026-11-24T18:05:00Z")
}

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A self-activation of Global Administrator starting now for one hour, with nothing else filled in.
pub fn request() -> ActivationRequest {
    ActivationRequest {
        request_id: Some("req-1".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: "62e90394-69f5-4237-9190-012177145e10".to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        justification: None,
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(Duration::hours(1)),
            end: None,
        },
    }
}

pub fn ticket(number: Option<&str>, system: Option<&str>) -> Option<Ticket> {
    Some(Ticket {
        number: number.map(str::to_string),
        system: system.map(str::to_string),
    })
}

/// Owns the maps a [`BuildEnv`] borrows.
#[derive(Default)]
pub struct TestEnv {
    pub lists: BTreeMap<String, Vec<String>>,
    pub windows: BTreeMap<String, Arc<CompiledWindow>>,
    pub connectors: Arc<crate::connectors::Connectors>,
}

impl TestEnv {
    pub fn env(&self) -> BuildEnv<'_> {
        BuildEnv {
            lists: &self.lists,
            windows: &self.windows,
            connectors: &self.connectors,
        }
    }
}

pub fn run(check: &dyn Check, request: &ActivationRequest, now: DateTime<Utc>) -> CheckOutcome {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    futures::executor::block_on(check.evaluate(&CheckContext::new(request, now, deadline)))
}
