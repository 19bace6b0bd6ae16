//! Typed configuration: built-in defaults < TOML file < `PIMGATE__SECTION__KEY` environment variables.
//!
//! Every key an outside tool relies on is named in `shared/spec/interface.md`; unknown keys are an
//! error so a typo never silently falls back to a default. Validation collects every problem before
//! failing, so an operator fixes a broken file in one pass.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::vocabulary::diagnostic::Diagnostic;

pub mod notify;

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
    pub tracing: TracingSettings,
    pub connectors: crate::connectors::ConnectorsSettings,
    pub admin: AdminSettings,
    /// `[[notify]]` targets told about the decisions their filters select (none by default).
    pub notify: Vec<notify::NotifySettings>,
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
    /// After SIGTERM/SIGINT, requests in flight get this long to finish before their connections are
    /// closed. Keep it above `deadline_ms` so every accepted evaluation can still be answered, and
    /// below the orchestrator's kill timeout (Kubernetes: `terminationGracePeriodSeconds`, default 30).
    pub shutdown_grace_seconds: u64,
    /// Between the signal and closing the listener, `/readyz` already answers 503 while requests are
    /// still accepted, so load balancers stop sending traffic before connections are refused. Not 0 by
    /// default: with 0, a POST already sent on a pooled keep-alive connection as the listener closes
    /// gets no answer (tests/process/shutdown.rs measured 7–8 of 16 clients under load), and PIM does not
    /// retry a POST. The example (development) config sets 0 for a quick Ctrl-C.
    pub shutdown_delay_ms: u64,
    /// HTTPS on the listener; absent means plain HTTP (TLS terminated by an ingress or sidecar).
    pub tls: Option<TlsSettings>,
    /// A connection must deliver its request line and headers within this, or it gets a 408 and is
    /// closed: the bound on slow-loris clients that trickle a head to hold a connection. PIM's head
    /// (a ~2 KB token and a few headers) arrives in one segment, and an ingress forwards it whole, so
    /// 3 s (actix's default is 5 s) is generous for PIM and short for an attacker. The body is
    /// bounded separately: reading it counts against `deadline_ms`. At least 1000: actix measures it
    /// from a clock it updates every 500 ms, so the effective timeout is up to 500 ms shorter, and a
    /// shorter setting can answer 408 to a complete request that waited in the backlog.
    pub client_request_timeout_ms: u64,
    /// After the answer, a closing connection gets this long to shut down cleanly (the peer reading
    /// the rest) before it is dropped; actix's default. 0 drops it at once.
    pub client_disconnect_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this; 0 turns keep-alive off. Above the idle
    /// timeout of common ingresses (ingress-nginx: 60 s), so the ingress, which pools connections to
    /// us, closes idle ones first: the side that closes an idle connection is the one that cannot
    /// race a request onto it as it closes. Idle connections cost a few KiB each and are capped by
    /// `max_connections`.
    pub keep_alive_seconds: u64,
    /// Open connections per worker; beyond it, new connections wait in the listen backlog (they
    /// are not refused) until one closes. PIM sends a few requests a minute through a handful of
    /// pooled connections, so 1024 (actix: 25,000) is far beyond legitimate need while keeping the
    /// memory of idle or slow connections bounded.
    pub max_connections: usize,
    /// TLS handshakes in progress per worker (with `[server.tls]` only): bounds the CPU a burst of
    /// new TLS connections can take from requests in flight. PIM reuses connections, so 64
    /// (actix: 256) is ample.
    pub max_connection_rate: usize,
    /// Connections the kernel queues before they are accepted (also capped by the kernel's
    /// `net.core.somaxconn`). They wait here while `max_connections` is reached; 1024 (actix's
    /// default) absorbs a burst without refusing PIM.
    pub backlog: u32,
}

/// The operator listener: `/healthz`, `/readyz` and `/metrics` live here, not on `server.listen`, so
/// what PIM (and anyone who can reach PIM's endpoint) sees is only the decision endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AdminSettings {
    /// Defaults to `127.0.0.1:9090`: a config holding only the keys of `shared/spec/interface.md`
    /// never puts operator surfaces on the public port, and reaching them from elsewhere is an
    /// explicit choice (`0.0.0.0:9090` in a pod, kept internal by the Service and NetworkPolicy).
    /// The empty string turns the second listener off and serves every route on `server.listen`
    /// (the old single-listener layout; only for a listener that is itself private).
    pub listen: String,
    /// The read-only operator console at `/` of the admin listener (never on `server.listen`; with
    /// `listen = ""` there is no console).
    pub console: bool,
    /// A file holding a secret the console and `/metrics` require (`Authorization: Bearer <secret>`,
    /// or HTTP Basic with the secret as password, which a browser asks for). Probes (`/healthz`,
    /// `/readyz`) stay open: kubelet sends no credentials. Read once at start-up.
    pub token_file: Option<PathBuf>,
    /// How many of this replica's recent decisions the console keeps in memory (0 = none).
    pub recent_decisions: usize,
}

/// The most decisions the console may keep: each is a few kilobytes.
pub const MAX_RECENT_DECISIONS: usize = 10_000;

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            console: true,
            token_file: None,
            recent_decisions: 200,
        }
    }
}

impl AdminSettings {
    /// False when the second listener is turned off (`listen = ""`).
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }
}

/// PEM files for HTTPS. Read once at start-up; a renewed certificate needs a restart.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TlsSettings {
    /// The server certificate, followed by its intermediates.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl ServerSettings {
    /// The connection keys with their accepted range and a fix, for [`Settings::validate`].
    fn connection_limits(
        &self,
    ) -> [(
        &'static str,
        u64,
        std::ops::RangeInclusive<u64>,
        &'static str,
    ); 6] {
        [
            (
                "server.client_request_timeout_ms",
                self.client_request_timeout_ms,
                1000..=60_000,
                "a request head arrives at once; use e.g. 3000",
            ),
            (
                "server.client_disconnect_timeout_ms",
                self.client_disconnect_timeout_ms,
                0..=60_000,
                "use e.g. 1000",
            ),
            (
                "server.keep_alive_seconds",
                self.keep_alive_seconds,
                0..=3600,
                "use a little more than the ingress's idle timeout, e.g. 75 (0 turns keep-alive off)",
            ),
            (
                "server.max_connections",
                self.max_connections as u64,
                1..=1_000_000,
                "use e.g. 1024 per worker",
            ),
            (
                "server.max_connection_rate",
                self.max_connection_rate as u64,
                1..=100_000,
                "use e.g. 64 TLS handshakes per worker",
            ),
            (
                "server.backlog",
                u64::from(self.backlog),
                1..=65_535,
                "use e.g. 1024",
            ),
        ]
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            deadline_ms: 5000,
            max_body_bytes: 65536,
            idempotency_ttl_seconds: 900,
            idempotency_capacity: 10_000,
            workers: 0,
            shutdown_grace_seconds: 20,
            shutdown_delay_ms: 2000,
            tls: None,
            client_request_timeout_ms: 3000,
            client_disconnect_timeout_ms: 1000,
            keep_alive_seconds: 75,
            max_connections: 1024,
            max_connection_rate: 64,
            backlog: 1024,
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
    /// Floor between refreshes triggered by an unknown `kid`, so forged kids cannot make us hammer Entra;
    /// at least [`MIN_JWKS_REFRESH_FLOOR_SECONDS`].
    pub jwks_min_refresh_interval_seconds: u64,
    /// Timeout of one discovery or JWKS fetch.
    pub fetch_timeout_ms: u64,
    /// Verified tokens remembered until they expire, so PIM's repeated token skips the RS256 check
    /// (~25 µs); 0 verifies every request.
    pub token_cache_capacity: u64,
}

/// Least time between refreshes triggered by an unknown `kid`. Anyone can send a token with a made-up
/// `kid`; below this a caller could make us fetch Entra's keys several times a second (and be throttled
/// by Entra, which would then delay a genuine rotation). Entra publishes a new key days before it signs
/// with it, so the periodic refresh normally finds it first and 10 s costs a real rotation nothing.
pub const MIN_JWKS_REFRESH_FLOOR_SECONDS: u64 = 10;

/// Far above any real tenant's distinct tokens per hour; keeps a typo from reserving gigabytes.
const MAX_TOKEN_CACHE_CAPACITY: u64 = 1_000_000;

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
            token_cache_capacity: 10_000,
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
    /// How often the rule files are checked for a change (names, sizes, modification times); a
    /// change is validated and then served without a restart. 0 turns polling off (SIGHUP still
    /// reloads).
    pub reload_interval_seconds: u64,
}

impl Default for RulesSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("rules"),
            reload_interval_seconds: 5,
        }
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
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// Optional export of pimgate's spans to an OpenTelemetry collector over OTLP/HTTP (protobuf).
/// Off by default: the logs already carry `trace_id`, and an export target is a deployment choice.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TracingSettings {
    /// The collector's base URL, e.g. `http://otel-collector:4318`; spans go to `{endpoint}/v1/traces`.
    /// Empty means no export.
    pub endpoint: String,
    /// `service.name` of the exported spans, which is how tracing backends group them.
    pub service_name: String,
    /// Timeout of one export; a slow collector then costs a dropped batch, never a request.
    pub timeout_ms: u64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            service_name: "pimgate".into(),
            timeout_ms: 5000,
        }
    }
}

impl TracingSettings {
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }

    /// Where the spans are posted: the OTLP/HTTP path appended to the configured base URL (the
    /// exporter would use a programmatic endpoint as is, unlike `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Every problem found, with where the settings came from.
#[derive(Debug, thiserror::Error)]
pub struct SettingsError {
    pub origin: String,
    pub problems: Vec<Diagnostic>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({}): {} problem(s)",
            self.origin,
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Environment variables that override file keys: `PIMGATE__SERVER__LISTEN` → `server.listen`.
const ENV_PREFIX: &str = "PIMGATE";
const ENV_SEPARATOR: &str = "__";
/// Keys given as comma-separated lists in the environment.
const ENV_LIST_KEYS: [&str; 3] = [
    "auth.audiences",
    "auth.allowed_callers",
    "auth.token_versions",
];

impl Settings {
    /// Loads defaults < `file` < process environment, then validates everything at once.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Self::load_with_env(file, None)
    }

    /// As `load`, with an explicit environment (tests must not mutate the process environment).
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, SettingsError> {
        let origin = match file {
            Some(path) => format!(
                "{} and {ENV_PREFIX}__* environment variables",
                path.display()
            ),
            None => format!("built-in defaults and {ENV_PREFIX}__* environment variables"),
        };
        let fail = |problems: Vec<Diagnostic>| SettingsError {
            origin: origin.clone(),
            problems,
        };
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(fail(vec![Diagnostic::error(
                    "--config",
                    format!("`{}` does not exist or is not a file", path.display()),
                    "pass the path of a TOML file such as `config/example.toml`",
                )]));
            }
            builder = builder.add_source(
                config::File::from(path.to_path_buf())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(",");
        for key in ENV_LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment.source(env));
        let layered = builder.build().map_err(|error| {
            fail(vec![Diagnostic::error(
                "(file)",
                error.to_string(),
                "check the TOML syntax at the position given",
            )])
        })?;
        let mut unknown = Vec::new();
        let settings: Settings =
            serde_ignored::deserialize(layered, |path| unknown.push(path.to_string())).map_err(
                |error| {
                    fail(vec![Diagnostic::error(
                        error_key(&error.to_string()),
                        error.to_string(),
                        "give the value the type shown in config/example.toml",
                    )])
                },
            )?;
        let mut problems: Vec<Diagnostic> = unknown
            .into_iter()
            .map(|key| {
                let message = format!("unknown key `{key}`");
                Diagnostic::error(
                    key,
                    message,
                    "remove it or correct its spelling; config/example.toml lists every key",
                )
            })
            .collect();
        problems.extend(settings.validate());
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(fail(problems))
        }
    }

    /// Semantic checks that serde cannot express. Returns every problem.
    pub fn validate(&self) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String, fix: &str| {
            problems.push(Diagnostic::error(key, message, fix))
        };
        let listen = self.server.listen.parse::<SocketAddr>().ok();
        if listen.is_none() {
            problem(
                "server.listen",
                format!("`{}` is not an IP address and port", self.server.listen),
                "write it as `0.0.0.0:8080` or `127.0.0.1:8080`",
            );
        }
        if !(100..=60_000).contains(&self.server.deadline_ms) {
            problem(
                "server.deadline_ms",
                format!("{} is outside 100..=60000", self.server.deadline_ms),
                "keep it below the custom extension's timeoutInMilliseconds, e.g. 5000",
            );
        }
        if !(1024..=10 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            problem(
                "server.max_body_bytes",
                format!("{} is outside 1024..=10485760", self.server.max_body_bytes),
                "PIM's requests are a few KiB; 65536 is plenty",
            );
        }
        if self.server.idempotency_capacity == 0 {
            problem(
                "server.idempotency_capacity",
                "must be at least 1".into(),
                "use e.g. 100000",
            );
        }
        if self.server.shutdown_grace_seconds > 600 {
            problem(
                "server.shutdown_grace_seconds",
                format!("{} is outside 0..=600", self.server.shutdown_grace_seconds),
                "use a little more than deadline_ms, e.g. 20, and less than the orchestrator's kill timeout",
            );
        }
        if self.server.shutdown_delay_ms > 60_000 {
            problem(
                "server.shutdown_delay_ms",
                format!("{} is outside 0..=60000", self.server.shutdown_delay_ms),
                "use about two readiness-probe periods, e.g. 2000",
            );
        }
        for (key, value, range, fix) in self.server.connection_limits() {
            if !range.contains(&value) {
                problem(
                    key,
                    format!("{value} is outside {}..={}", range.start(), range.end()),
                    fix,
                );
            }
        }
        if let Some(tls) = &self.server.tls {
            for (key, path) in [
                ("server.tls.cert_file", &tls.cert_file),
                ("server.tls.key_file", &tls.key_file),
            ] {
                if !path.is_file() {
                    problem(
                        key,
                        format!("`{}` does not exist or is not a file", path.display()),
                        "point it at a PEM file readable by the service, or remove [server.tls] to serve plain HTTP",
                    );
                }
            }
        }
        if !is_guid(&self.auth.tenant_id) {
            problem(
                "auth.tenant_id",
                format!("`{}` is not a GUID", self.auth.tenant_id),
                "use the Directory (tenant) ID from the Entra admin center",
            );
        }
        if self
            .auth
            .audiences
            .iter()
            .all(|audience| audience.trim().is_empty())
        {
            problem(
                "auth.audiences",
                "no audience is configured".into(),
                "list the API's client id and its Application ID URI `api://<host>/<clientId>`",
            );
        }
        if self.auth.allowed_callers.is_empty() {
            problem(
                "auth.allowed_callers",
                "no caller is allowed".into(),
                &format!("list PIM's application id `{PIM_SERVICE_APP_ID}`"),
            );
        }
        if self.auth.token_versions.is_empty() {
            problem(
                "auth.token_versions",
                "no token version is accepted".into(),
                "use [\"v1\", \"v2\"]",
            );
        }
        let metadata_url = self.auth.resolved_metadata_url();
        if let Err(message) = check_fetch_url(&metadata_url) {
            problem(
                "auth.metadata_url",
                message,
                "use https://, or http:// only for 127.0.0.1/localhost",
            );
        }
        if self.auth.jwks_refresh_seconds == 0 || self.auth.jwks_refresh_seconds > 86_400 {
            problem(
                "auth.jwks_refresh_seconds",
                format!("{} is outside 1..=86400", self.auth.jwks_refresh_seconds),
                "Entra rotates keys: refresh at least daily, e.g. 3600",
            );
        }
        if self.auth.jwks_min_refresh_interval_seconds < MIN_JWKS_REFRESH_FLOOR_SECONDS {
            problem(
                "auth.jwks_min_refresh_interval_seconds",
                format!(
                    "{} seconds lets every token with an unknown `kid` fetch the signing keys again",
                    self.auth.jwks_min_refresh_interval_seconds
                ),
                "use 30 (at least 10): Entra publishes a new key well before signing with it",
            );
        }
        if self.auth.token_cache_capacity > MAX_TOKEN_CACHE_CAPACITY {
            problem(
                "auth.token_cache_capacity",
                format!(
                    "{} is more than {MAX_TOKEN_CACHE_CAPACITY}",
                    self.auth.token_cache_capacity
                ),
                "PIM sends one token per hour or so: 10000 is plenty, 0 turns the cache off",
            );
        }
        if self.auth.clock_skew_seconds > 600 {
            problem(
                "auth.clock_skew_seconds",
                format!(
                    "{} seconds is more than 10 minutes",
                    self.auth.clock_skew_seconds
                ),
                "use 60",
            );
        }
        if let (true, Some(address)) = (self.auth.dev_mode, listen)
            && !address.ip().is_loopback()
        {
            problem(
                "auth.dev_mode",
                format!(
                    "development mode trusts a public test key, and `server.listen` is `{address}`, not a loopback address"
                ),
                "listen on 127.0.0.1 in development, or set auth.dev_mode = false",
            );
        }
        if self.admin.enabled() {
            match self.admin.listen.parse::<SocketAddr>() {
                Err(_) => problem(
                    "admin.listen",
                    format!("`{}` is not an IP address and port", self.admin.listen),
                    "write it as `127.0.0.1:9090` (`0.0.0.0:9090` in a pod, kept internal), or \"\" to serve every route on server.listen",
                ),
                Ok(admin) => {
                    if let Some(public) = listen
                        && same_socket(public, admin)
                    {
                        problem(
                            "admin.listen",
                            format!(
                                "`{admin}` is the same port as `server.listen` (`{public}`), so the operator endpoints cannot be kept off the public listener"
                            ),
                            "give the admin listener its own port, e.g. `127.0.0.1:9090`",
                        );
                    }
                }
            }
        }
        if self.admin.recent_decisions > MAX_RECENT_DECISIONS {
            problem(
                "admin.recent_decisions",
                format!(
                    "`{}` is more than {MAX_RECENT_DECISIONS}",
                    self.admin.recent_decisions
                ),
                "keep a few hundred (the default is 200); the audit log holds every decision",
            );
        }
        if let Some(path) = &self.admin.token_file {
            match crate::settings::read_admin_token(path) {
                Ok(_) => {}
                Err(message) => problem(
                    "admin.token_file",
                    message,
                    "point it at a file holding one line, the secret (at least 16 characters)",
                ),
            }
        }
        if !self.rules.path.exists() {
            problem(
                "rules.path",
                format!("`{}` does not exist", self.rules.path.display()),
                "point it at a rule file or a folder of rule files (relative to the working directory)",
            );
        }
        if self.audit.sink == AuditSink::File && self.audit.path.is_none() {
            problem(
                "audit.path",
                "`audit.sink = \"file\"` needs a path".into(),
                "set audit.path = \"/var/log/pimgate/audit.jsonl\"",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problem(
                "log.level",
                format!("`{}` is not a log filter", self.log.level),
                "use `info`, `debug`, or `pimgate=debug,info`",
            );
        }
        if self.tracing.enabled() {
            let url = reqwest::Url::parse(&self.tracing.endpoint);
            let usable = url.as_ref().is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none()
            });
            if !usable {
                problem(
                    "tracing.endpoint",
                    format!(
                        "`{}` is not an http(s) URL of an OTLP collector",
                        self.tracing.endpoint
                    ),
                    "set the collector's OTLP/HTTP base URL, e.g. `http://otel-collector:4318`, or leave it empty to export nothing",
                );
            }
            if self.tracing.service_name.trim().is_empty() {
                problem(
                    "tracing.service_name",
                    "is empty".into(),
                    "set tracing.service_name = \"pimgate\"",
                );
            }
            if self.tracing.timeout_ms == 0 {
                problem(
                    "tracing.timeout_ms",
                    "is 0".into(),
                    "set tracing.timeout_ms = 5000",
                );
            }
        }
        problems.extend(notify::validate(&self.notify));
        problems
    }

    /// The admin listener's address, `None` when `admin.listen = ""` (single listener).
    pub fn admin_address(&self) -> Result<Option<SocketAddr>, SettingsError> {
        if !self.admin.enabled() {
            return Ok(None);
        }
        self.admin
            .listen
            .parse()
            .map(Some)
            .map_err(|_| SettingsError {
                origin: "admin.listen".into(),
                problems: vec![Diagnostic::error(
                    "admin.listen",
                    format!("`{}` is not an IP address and port", self.admin.listen),
                    "write it as `127.0.0.1:9090`",
                )],
            })
    }

    pub fn listen_address(&self) -> Result<SocketAddr, SettingsError> {
        self.server.listen.parse().map_err(|_| SettingsError {
            origin: "server.listen".into(),
            problems: vec![Diagnostic::error(
                "server.listen",
                format!("`{}` is not an IP address and port", self.server.listen),
                "write it as `0.0.0.0:8080`",
            )],
        })
    }
}

/// Whether two listen addresses would claim the same port: same port (0 is an ephemeral port, never
/// a clash) and the same IP, or either on every interface.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Plain `http://` is refused except on loopback: signing keys fetched in clear text could be swapped.
pub fn check_fetch_url(url: &str) -> Result<(), String> {
    crate::vocabulary::fetch_url::check_fetch_url(url).map(|_| ())
}

pub use crate::vocabulary::ids::is_guid;

/// serde's messages end with "for key `a.b`" (config) or name a field; best effort to extract it.
fn error_key(message: &str) -> String {
    message
        .rsplit_once("for key `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key.to_string())
        .unwrap_or_else(|| "(value)".into())
}

/// The admin secret of `admin.token_file`: the file's text without surrounding whitespace, at least
/// 16 characters. The message names the file, never its content.
pub fn read_admin_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let token = text.trim();
    if token.chars().count() < 16 {
        return Err(format!(
            "`{}` holds fewer than 16 characters: too easy to guess",
            path.display()
        ));
    }
    Ok(token.to_string())
}
