//! Entry point: parse the command line and hand over to `pimgate::cli`.

use std::process::ExitCode;

use clap::Parser;

#[actix_web::main]
async fn main() -> ExitCode {
    pimgate::cli::run(pimgate::cli::Cli::parse()).await
}
