//! The library without a server: rules and guards, the decision and its checks, the connectors against
//! wiremock stand-ins on loopback, tokens against `Authenticator`, payload decoding, settings, the fuzz
//! corpus and the shape of `src/`. One binary (each file a module, its tests under `<file>::`) links
//! once instead of once per file.

#[path = "../support/mod.rs"]
mod support;

/// The fuzzed entry points and their properties, shared with the cargo-fuzz targets (a broken
/// property panics: that is how libFuzzer learns of a crash).
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

mod activation_interval;
mod auth_config_edges;
mod auth_tokens;
mod backtest;
mod check_keys;
mod connector_auth_methods;
mod connector_graph;
mod connector_group;
mod connector_http;
mod connector_http_mtls;
mod connector_itsm;
mod connector_oncall;
mod connector_opa;
mod critical_groups;
mod evaluate_output;
mod fuzz_corpus;
mod guards;
mod input_props;
mod never_more_permissive;
mod onboard;
mod onboard_lifecycle;
mod payload_decode;
mod reference;
mod rule_test_files;
mod rules_engine;
mod rules_index;
mod settings;
mod stubbed_records;
mod tidy;
mod upstream_http;
mod upstream_numbers;
