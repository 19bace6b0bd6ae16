//! Entry point: parse the command line and hand over to `pimgate::cli`.

use std::process::ExitCode;

use clap::Parser;

/// A decision allocates and frees a few hundred small objects (evidence maps, reasons, the audit
/// record); glibc's malloc/free was ~24 % of the decision path's CPU. mimalloc measured +15-21 %
/// evaluations/s on the benchmark machine for +2-3 MB of RSS (BENCHMARKS.md; built without
/// transparent huge pages, which cost 15-19 MB of RSS for nothing at this size). Only the binary uses
/// it: tests and benches measure the library with the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    pimgate::cli::run(pimgate::cli::Cli::parse()).await
}
