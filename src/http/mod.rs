//! HTTP surface: routes, the request-id middleware, and the single error → response mapping.

pub mod admin_access;
pub mod answer;
mod decision_metrics;
pub mod error;
pub mod evaluate;
pub mod health;
mod http_metrics;
pub mod recent;
pub mod redelivery;
pub mod replay;
pub mod request_id;
pub mod state;

use actix_web::web;

use crate::payload::Stage;

/// Every route on one listener: the layout when `admin.listen = ""`.
/// Everything outside tools rely on (`shared/spec/interface.md`): keep these paths.
pub fn routes(config: &mut web::ServiceConfig) {
    decision_routes(config);
    operator_routes(config);
}

/// What PIM calls: the only routes on `server.listen` when the admin listener is on. Anything else
/// there is a 404, so a prober learns nothing from `/metrics` (e.g. why its token was refused).
pub fn decision_routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource(Stage::PreApproval.path()).route(web::post().to(evaluate::pre_approval)),
        )
        .service(
            web::resource(Stage::PostApproval.path())
                .route(web::post().to(evaluate::post_approval)),
        );
}

/// Health, readiness and metrics: on `admin.listen`, for probes, scrapes and operators only.
pub fn operator_routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics));
}
