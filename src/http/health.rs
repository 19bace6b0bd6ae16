//! Liveness, readiness and the Prometheus scrape endpoint, served by the same server as the API so
//! there is one port to secure.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use super::state::AppState;

/// Cheap on purpose: it proves the process answers, nothing more.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "alive" }))
}

/// 503 until the signing keys are in, and again from the moment a shutdown begins, so load balancers
/// drain this replica while the requests it already accepted finish.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let rules = state.rules();
    let keys = state.authenticator.is_ready();
    let stopping = state.is_shutting_down();
    let status = if stopping {
        "shutting down"
    } else if keys {
        "ready"
    } else {
        "not ready"
    };
    let body = json!({
        "status": status,
        "rules": { "loaded": true, "revision": rules.revision, "policies": rules.policies.len() },
        "signingKeys": keys,
    });
    if keys && !stopping {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics() -> HttpResponse {
    match handle() {
        Some(handle) => {
            handle.run_upkeep();
            HttpResponse::Ok()
                .content_type("text/plain; version=0.0.4")
                .body(handle.render())
        }
        None => HttpResponse::ServiceUnavailable().body("metrics recorder unavailable"),
    }
}

/// The process-wide recorder. Installed on first use; a second server in the same process (tests)
/// shares it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const LATENCY_BUCKETS: [f64; 12] = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}
