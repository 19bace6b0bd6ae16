//! Black-box tests of the running service: real server on port 0, a real discovery/JWKS server on
//! loopback, tokens really signed with keys generated here. One binary for all API tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

#[path = "../support/mod.rs"]
mod support;

use support::app as helpers;
use support::auth as common_auth;

mod connectors;
mod console;
mod evaluate;
mod lifecycle;
mod listeners;
mod notify;
mod observability;
mod permissions;
mod post_approval;
mod reload;
mod replay_keys;
mod service;
mod shadow;
mod tokens;
