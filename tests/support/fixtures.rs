//! The one fixture loader for the test binaries: files under `tests/fixtures/<folder>/`, found from
//! the package root whatever the working directory, failing loudly with the path when one is missing.
// Each test binary uses a different subset.
#![allow(dead_code, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value;

/// `tests/fixtures/<folder>/<name>`, absolute.
pub fn path(folder: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder)
        .join(name)
}

/// The fixture's text.
pub fn text(folder: &str, name: &str) -> String {
    let path = path(folder, name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("fixture `{}`: {error}", path.display()))
}

/// The fixture, parsed as JSON.
pub fn json(folder: &str, name: &str) -> Value {
    let path = path(folder, name);
    serde_json::from_str(&text(folder, name))
        .unwrap_or_else(|error| panic!("fixture `{}` is not JSON: {error}", path.display()))
}
