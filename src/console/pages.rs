//! The console's handlers: gather what a page shows, render its template, and send it with headers
//! that keep a read-only operator page inert (no script may run, no framing, nothing cached).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::views::{DecisionPage, DryRunPage, Explanation, IndexPage, NotFoundPage};
use crate::connectors::Connectors;
use crate::http::recent::RequestSummary;
use crate::http::state::AppState;
use crate::payload::{self, Stage};
use crate::workbench::explain;

/// No script at all (the pages need none), styles only inline, forms only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The largest dry-run form accepted: PIM's own bodies are a few kilobytes.
pub const MAX_DRY_RUN_BYTES: usize = 64 * 1024;

fn page(
    status: actix_web::http::StatusCode,
    rendered: Result<String, askama::Error>,
) -> HttpResponse {
    match rendered {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .body(html),
        Err(error) => {
            tracing::error!(%error, "a console page could not be rendered");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("the page could not be rendered; see the service log\n")
        }
    }
}

fn ok(rendered: Result<String, askama::Error>) -> HttpResponse {
    page(actix_web::http::StatusCode::OK, rendered)
}

/// `/`: the overview.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    let rules = state.rules();
    let recent = state.recent.newest_first();
    let hour = state.recent.last_hour(Utc::now());
    let view = IndexPage::build(
        &rules,
        state.last_reload(),
        &recent,
        state.recent.capacity(),
        &hour,
    );
    ok(view.render())
}

/// `/decisions/{id}`: one kept decision's full explanation.
pub async fn decision(state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    match state.recent.find(&id) {
        Some(entry) => ok(DecisionPage {
            explanation: Explanation::of(&entry.decision, &entry.request),
            replay: entry.replay,
            latency: format!("{:.1}", entry.latency_ms),
            answered_at: entry
                .answered_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
        }
        .render()),
        None => page(
            actix_web::http::StatusCode::NOT_FOUND,
            NotFoundPage {
                // Shown back on the page: only an id's characters, so nothing else is echoed.
                id: id
                    .chars()
                    .filter(|c| c.is_ascii_hexdigit() || *c == '-')
                    .take(36)
                    .collect(),
                capacity: state.recent.capacity(),
            }
            .render(),
        ),
    }
}

fn empty_form() -> DryRunPage {
    DryRunPage {
        body: String::new(),
        stage: Stage::PreApproval.name().to_string(),
        at: String::new(),
        error: String::new(),
        note: String::new(),
        explanation: None,
        text: String::new(),
    }
}

/// `GET /dry-run`: the empty form.
pub async fn dry_run_form() -> HttpResponse {
    ok(empty_form().render())
}

#[derive(Debug, Deserialize)]
pub struct DryRunForm {
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub at: String,
}

/// `POST /dry-run`: the pasted request, evaluated against the rules on disk with the file-based
/// connectors only, so no upstream system is called. Nothing is recorded (no audit record, no ring
/// entry, no metric of a decision).
pub async fn dry_run(
    state: web::Data<AppState>,
    connectors: web::Data<Connectors>,
    form: web::Form<DryRunForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let mut view = DryRunPage {
        body: form.body.clone(),
        stage: form.stage.clone(),
        at: form.at.clone(),
        ..empty_form()
    };
    let stage = if form.stage.trim().is_empty() {
        Stage::PreApproval
    } else {
        match form.stage.trim().parse::<Stage>() {
            Ok(stage) => stage,
            Err(_) => {
                view.error = "the stage is `pre_approval` or `post_approval`".into();
                return ok(view.render());
            }
        }
    };
    let now = if form.at.trim().is_empty() {
        Utc::now()
    } else {
        match DateTime::parse_from_rfc3339(form.at.trim()) {
            Ok(at) => at.with_timezone(&Utc),
            Err(_) => {
                view.error = "the time is not RFC 3339, e.g. 2026-11-24T18:05:00Z".into();
                return ok(view.render());
            }
        }
    };
    let request = match payload::decode(form.body.as_bytes()) {
        Ok(request) => request,
        Err(error) => {
            view.error = format!("not a PIM request: {error}");
            return ok(view.render());
        }
    };
    let offline = Arc::new(Connectors {
        hr_file: connectors.hr_file.clone(),
        oncall_file: connectors.oncall_file.clone(),
        ..Connectors::default()
    });
    let path = state.settings.rules.path.clone();
    let loaded = web::block(move || crate::rules::load_with(&path, &offline)).await;
    let rules = match loaded {
        Ok(Ok(rules)) => rules,
        Ok(Err(problems)) => {
            view.error = format!(
                "the rules on disk do not load ({} problem(s)); the live rules keep serving. First: {}",
                problems.len(),
                problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            return ok(view.render());
        }
        Err(_) => {
            view.error = "the rules could not be loaded".into();
            return ok(view.render());
        }
    };
    let live = state.rules().revision.clone();
    view.note = if rules.revision == live {
        format!("rules revision {live} (the live one)")
    } else {
        format!(
            "rules on disk are revision {}, the live ones {live}: a reload is pending or failed",
            rules.revision
        )
    };
    let budget = Duration::from_millis(state.settings.server.deadline_ms);
    let mut decision =
        crate::decision::evaluate_at_stage(&rules, &request, stage, now, budget).await;
    decision.skipped_policies = rules.select_explained(&request, stage, now).into_skipped();
    let summary = RequestSummary::of(
        &request,
        state
            .audit
            .mask_justification(request.justification.as_deref()),
    );
    view.explanation = Some(Explanation::of(&decision, &summary));
    let local_sources = [
        ("hr_file", connectors.hr_file.is_some()),
        ("oncall_file", connectors.oncall_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, configured)| configured.then_some(name))
    .collect();
    let offline = explain::offline_report(&rules, &decision, local_sources);
    view.text = explain::explain_with(&decision, &request, Some(&offline));
    ok(view.render())
}
