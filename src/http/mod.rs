//! HTTP surface: routes, the request-id middleware, and the single error → response mapping.

pub mod error;
pub mod evaluate;
pub mod health;
pub mod replay;
pub mod request_id;
pub mod state;

use actix_web::web;

/// Everything outside tools rely on (`shared/spec/interface.md`): keep these paths.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/v1/evaluate").route(web::post().to(evaluate::evaluate)))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics));
}
