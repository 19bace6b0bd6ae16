//! The operator console: read-only HTML pages on the admin listener (never on `server.listen`),
//! server-rendered from askama templates (`templates/console/`), usable without JavaScript.
//!
//! What it shows comes from this replica only: the live rules, the last reload, the ring of recent
//! decisions (`http::recent`, masked as the audit log is), connector health as those decisions saw
//! it, and charts drawn here as SVG. The dry-run form evaluates a pasted request against the live
//! rules with no upstream call. Nothing on these pages changes any state.

pub mod chart;
pub mod health;
pub mod pages;
pub mod views;

use actix_web::web;

/// The console's routes, for the admin listener only (`startup` adds them there when
/// `admin.console` is on).
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(pages::index))
        .route("/decisions/{id}", web::get().to(pages::decision))
        .route("/dry-run", web::get().to(pages::dry_run_form))
        .route("/dry-run", web::post().to(pages::dry_run));
}
