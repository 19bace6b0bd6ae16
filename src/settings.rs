//! Typed configuration: built-in defaults < TOML file < `PIMGATE__SECTION__KEY` environment variables.
//!
//! Every key an outside tool relies on is named in `shared/spec/interface.md`; unknown keys are an
//! error so a typo never silently falls back to a default. Validation collects every problem before
//! failing, so an operator fixes a broken file in one pass.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Microsoft's PIM service principal, as seen in live traffic (`shared/spec/wire.md` §3).
pub const PIM_SERVICE_APP_ID: &str = "1c67c054-65c8-4f7f-92a1-eb7ba6e48627";

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub rules: RulesSettings,
    pub audit: AuditSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerSettings {
    pub listen: String,
    /// Every request is answered within this, whatever upstreams do. Keep it below the custom
    /// extension's `timeoutInMilliseconds` so PIM never has to guess.
    pub deadline_ms: u64,
    pub max_body_bytes: usize,
    /// How long PIM's retries of one request id get the identical answer.
    pub idempotency_ttl_seconds: u64,
    pub idempotency_capacity: u64,
    /// 0 means one worker per core.
    pub workers: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            deadline_ms: 5000,
            max_body_bytes: 65536,
            idempotency_ttl_seconds: 900,
            idempotency_capacity: 100_000,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthSettings {
    pub tenant_id: String,
    pub audiences: Vec<String>,
    pub allowed_callers: Vec<String>,
    pub token_versions: Vec<TokenVersion>,
    /// `{tenant_id}` is replaced by `tenant_id`.
    pub metadata_url: String,
    pub clock_skew_seconds: u64,
    /// Trust the built-in development issuer too (loopback listeners only).
    pub dev_mode: bool,
    /// Periodic JWKS refresh; Entra rotates keys, so at least daily.
    pub jwks_refresh_seconds: u64,
    /// Floor between refreshes triggered by an unknown `kid`, so forged kids cannot make us hammer Entra.
    pub jwks_min_refresh_interval_seconds: u64,
    /// Timeout of one discovery or JWKS fetch.
    pub fetch_timeout_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            tenant_id: String::new(),
            audiences: Vec::new(),
            allowed_callers: vec![PIM_SERVICE_APP_ID.to_string()],
            token_versions: vec![TokenVersion::V1, TokenVersion::V2],
            metadata_url: "https://login.microsoftonline.com/{tenant_id}/v2.0/.well-known/openid-configuration".into(),
            clock_skew_seconds: 60,
            dev_mode: false,
            jwks_refresh_seconds: 3600,
            jwks_min_refresh_interval_seconds: 30,
            fetch_timeout_ms: 5000,
        }
    }
}

impl AuthSettings {
    pub fn resolved_metadata_url(&self) -> String {
        self.metadata_url.replace("{tenant_id}", &self.tenant_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RulesSettings {
    /// A file or a folder of rule files. Relative paths are taken from the working directory.
    pub path: PathBuf,
}

impl Default for RulesSettings {
    fn default() -> Self {
        Self { path: PathBuf::from("rules") }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuditSettings {
    pub sink: AuditSink,
    /// Used when `sink = "file"`: JSON lines are appended.
    pub path: Option<PathBuf>,
    pub justification: JustificationMasking,
    /// With `justification = "truncate"`: characters kept.
    pub justification_max_chars: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            sink: AuditSink::Stdout,
            path: None,
            justification: JustificationMasking::Full,
            justification_max_chars: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSink {
    Stdout,
    Stderr,
    File,
    Off,
}

/// Justifications are free text and sometimes carry more than they should (names, customer data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JustificationMasking {
    Full,
    Truncate,
    Hash,
    Omit,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}
