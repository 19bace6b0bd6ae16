//! The floor for `scripts/bench-evaluate.sh`: actix-web serving a constant PIM decision.
//!
//! Same actix-web build and worker option as pimgate, no auth, no decoding, no rules, no audit, so the
//! difference between the two numbers is what pimgate itself costs per request.
//!
//! Usage: `cargo run --release --example bare_handler -- [LISTEN] [WORKERS]`
//! (defaults `127.0.0.1:18081` and `1`).

use actix_web::{App, HttpResponse, HttpServer, web};

const DECISION: &str = r#"{"evaluationId":"0190a6e4-7c2b-7000-8000-000000000000","evaluationOutcome":"Approved","reason":["bare handler: constant decision"]}"#;

/// Takes the body as `Bytes` so it is read in full, as pimgate must before it can decode it.
async fn evaluate(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body.len());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DECISION)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let workers = match args.next() {
        Some(text) => text.parse::<usize>().map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("workers `{text}` is not a number: {error}"),
            )
        })?,
        None => 1,
    };
    HttpServer::new(|| App::new().route("/v1/evaluate", web::post().to(evaluate)))
        .workers(workers.max(1))
        .bind(listen)?
        .run()
        .await
}
