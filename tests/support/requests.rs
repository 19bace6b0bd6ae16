//! The one request builder: PIM request bodies for the three shapes (Entra role, group, Azure
//! resource), each from its sample under `tests/fixtures/requests/`, and the tokens that sign them
//! (a really signed Entra token from [`TestIdp`], or the development issuer's from [`dev_token`]).

use serde_json::{Value, json};

use super::auth::TestIdp;
use super::fixtures;
use super::serve::BIN;

/// The Entra role sample (Exchange Administrator, self-activation for an hour with a ticket).
pub const ENTRA_ROLE: &str = "entra-role-activation.json";
/// The group membership sample.
pub const GROUP: &str = "group-activation.json";
/// The Azure resource role sample.
pub const AZURE_RESOURCE: &str = "azure-resource-activation.json";

/// `tests/fixtures/requests/<name>`, parsed: any sample, as PIM sends it.
pub fn sample(name: &str) -> Value {
    fixtures::json("requests", name)
}

/// The sample's exact bytes, for tests that send them unchanged.
pub fn sample_bytes(name: &str) -> Vec<u8> {
    fixtures::text("requests", name).into_bytes()
}

/// The sample under its own request `id`.
pub fn with_id(name: &str, id: &str) -> Value {
    let mut body = sample(name);
    body["id"] = json!(id);
    body
}

/// An Entra role activation with request `id`.
pub fn entra_role(id: &str) -> Value {
    with_id(ENTRA_ROLE, id)
}

/// A group activation with request `id`.
pub fn group(id: &str) -> Value {
    with_id(GROUP, id)
}

/// An Azure resource activation with request `id`.
pub fn azure_resource(id: &str) -> Value {
    with_id(AZURE_RESOURCE, id)
}

/// An Entra role activation under a fresh id, so no stored answer is replayed.
pub fn fresh_entra_role() -> Value {
    entra_role(&uuid::Uuid::now_v7().to_string())
}

/// A valid v2 token as PIM sends it, really signed by `idp`'s current key.
pub fn signed_token(idp: &TestIdp) -> String {
    idp.sign(&idp.v2_claims())
}

/// A token from the built-in development issuer of `config/example.toml`.
pub fn dev_token() -> String {
    let output = std::process::Command::new(BIN)
        .args(["dev", "token", "--config", "config/example.toml"])
        .env_remove("PIMGATE_CONFIG")
        .output()
        .expect("run pimgate dev token");
    assert!(
        output.status.success(),
        "dev token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}
