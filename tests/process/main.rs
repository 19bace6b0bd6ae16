//! The service as a whole: the built `pimgate` binary as a child process (CLI, hot reload on SIGHUP,
//! graceful shutdown, OTLP export, justification masking end to end), and the in-process server under
//! load and slow clients. One binary (each file a module, its tests under `<file>::`).

#[path = "../support/mod.rs"]
mod support;

mod backtest;
mod cli;
mod console_browser;
mod justification_hardening;
mod otlp;
mod reload;
mod rules_workbench_cli;
mod shutdown;
mod slow_clients;
mod soak;
mod workbench_cli;
