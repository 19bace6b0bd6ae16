//! What the test binaries share, included by each binary's `main.rs` with
//! `#[path = "../support/mod.rs"] mod support;`: the one request builder ([`requests`]), the one
//! fixture loader ([`fixtures`]), the test identity provider ([`auth`]), the in-process service
//! ([`app`]), the built binary as a child process ([`serve`]), a raw HTTP client ([`raw_http`]),
//! log capture ([`logs`]) and the rule tests' requests ([`rules`]).
// Each binary uses a different subset; a helper failing should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod app;
pub mod auth;
pub mod fixtures;
pub mod logs;
pub mod raw_http;
pub mod requests;
pub mod rules;
pub mod serve;
