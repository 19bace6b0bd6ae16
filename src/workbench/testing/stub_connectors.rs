//! The connectors record-stubbed cases run with: the configured ones, and a stand-in for every
//! connector the rules name that is not configured, so the real checks reach the fact book
//! (`connectors::facts::through`) instead of reporting "not configured" before asking.
//!
//! A stand-in is a connector built from settings that point at the discard port on loopback
//! (`127.0.0.1:9`) with no secrets (`secrets::without_secrets`); the file-based ones read an empty
//! file that is removed again once built. Stand-ins are only ever used under a replaying fact book,
//! which answers every question from the case's stubs and never runs the fetch: nothing is called.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::connectors::{BuildContext, Connectors, ConnectorsSettings, secrets};

/// Where a stand-in would send a request (never reached: see the module doc).
const NOWHERE: &str = "http://127.0.0.1:9";

/// The connector sections (`graph`, `http.compliance`, ...) the rules need but were built without
/// (`NamedCheck::unconfigured`, set by `rules::build`).
pub(super) fn missing_sections(rules: &crate::rules::RuleSet) -> BTreeSet<String> {
    crate::workbench::explain::checks_without_connector(rules)
        .into_iter()
        .map(|check| check.connector)
        .collect()
}

/// `given` with a stand-in for every section in `missing`.
pub(super) fn with_stand_ins(
    given: &Arc<Connectors>,
    missing: &BTreeSet<String>,
) -> Result<Arc<Connectors>, String> {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let scratch = std::env::temp_dir().join(format!(
        "pimgate-rule-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let built = build(missing, &scratch);
    // The files were read at build; nothing reads them again under a replaying book.
    let _ = std::fs::remove_dir_all(&scratch);
    let stand_ins = built?;
    let mut merged = Connectors {
        graph: given.graph.clone().or_else(|| stand_ins.graph.clone()),
        hr_file: given.hr_file.clone().or_else(|| stand_ins.hr_file.clone()),
        servicenow: given
            .servicenow
            .clone()
            .or_else(|| stand_ins.servicenow.clone()),
        jira: given.jira.clone().or_else(|| stand_ins.jira.clone()),
        pagerduty: given
            .pagerduty
            .clone()
            .or_else(|| stand_ins.pagerduty.clone()),
        opsgenie: given
            .opsgenie
            .clone()
            .or_else(|| stand_ins.opsgenie.clone()),
        oncall_file: given
            .oncall_file
            .clone()
            .or_else(|| stand_ins.oncall_file.clone()),
        opa: given.opa.clone(),
        http: given.http.clone(),
    };
    for (name, opa) in &stand_ins.opa {
        merged
            .opa
            .entry(name.clone())
            .or_insert_with(|| Arc::clone(opa));
    }
    for (name, api) in &stand_ins.http {
        merged
            .http
            .entry(name.clone())
            .or_insert_with(|| Arc::clone(api));
    }
    Ok(Arc::new(merged))
}

fn build(missing: &BTreeSet<String>, scratch: &PathBuf) -> Result<Arc<Connectors>, String> {
    let unused = json!({ "env": "PIMGATE_RULE_TEST_NO_SECRET" });
    let mut settings = serde_json::Map::new();
    let mut opa = serde_json::Map::new();
    let mut http = serde_json::Map::new();
    let file = |name: &str, text: &str| -> Result<Json, String> {
        std::fs::create_dir_all(scratch)
            .and_then(|()| std::fs::write(scratch.join(name), text))
            .map_err(|error| format!("cannot write a stand-in file: {error}"))?;
        Ok(json!(scratch.join(name)))
    };
    for section in missing {
        let (kind, name) = section.split_once('.').unwrap_or((section.as_str(), ""));
        match kind {
            "graph" => {
                settings.insert(
                    kind.into(),
                    json!({
                        "client_id": "00000000-0000-0000-0000-000000000000",
                        "client_secret": unused,
                        "tenant_id": "00000000-0000-0000-0000-000000000000",
                        "authority_url": NOWHERE,
                        "graph_url": NOWHERE,
                    }),
                );
            }
            "hr_file" => {
                settings.insert(kind.into(), json!({ "path": file("hr.csv", "id\n")? }));
            }
            "oncall_file" => {
                settings.insert(
                    kind.into(),
                    json!({ "path": file("oncall.yaml", "shifts: []\n")? }),
                );
            }
            "servicenow" => {
                settings.insert(
                    kind.into(),
                    json!({ "base_url": NOWHERE, "auth": "basic", "username": "stub", "password": unused }),
                );
            }
            "jira" => {
                settings.insert(
                    kind.into(),
                    json!({ "base_url": NOWHERE, "flavor": "datacenter", "personal_access_token": unused }),
                );
            }
            "pagerduty" => {
                settings.insert(
                    kind.into(),
                    json!({ "base_url": NOWHERE, "api_token": unused }),
                );
            }
            "opsgenie" => {
                settings.insert(
                    kind.into(),
                    json!({ "base_url": NOWHERE, "api_key": unused }),
                );
            }
            "opa" if !name.is_empty() => {
                opa.insert(name.into(), json!({ "base_url": NOWHERE }));
            }
            "http" if !name.is_empty() => {
                http.insert(
                    name.into(),
                    json!({ "url": NOWHERE, "signing_secret": unused }),
                );
            }
            _ => {}
        }
    }
    settings.insert("opa".into(), Json::Object(opa));
    settings.insert("http".into(), Json::Object(http));
    let settings: ConnectorsSettings = serde_json::from_value(Json::Object(settings))
        .map_err(|error| format!("stand-in connector settings: {error}"))?;
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "00000000-0000-0000-0000-000000000000".into(),
    };
    secrets::without_secrets(|| Connectors::build(&settings, &context)).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}
