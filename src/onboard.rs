//! `pimgate onboard`: registers pimgate as PIM's custom extension for one stage (pre-approval or
//! post-approval) and links it to roles' policies through Microsoft Graph v1.0
//! (`shared/spec/wire.md` §4, §4a), idempotently, so it can be re-run after any change (host,
//! timeout, roles) and only what differs is written. `--status` reports what is registered and
//! linked, with GETs only ([`status`]).
//!
//! Every call is Graph v1.0: the custom extensions (create, list, get, update) and the policy rules
//! (`unifiedRoleManagementPolicyCustomExtensionRule` get and update) both exist there; `wire.md` §4
//! still shows the beta paths, which keep working, but nothing here needs beta.
//!
//! Permissions of the `[connectors.graph]` app (application permissions, admin consent):
//! `PrivilegedAccess-CustomExt.ReadWrite.All` (read, create and update the custom extension) and
//! `RoleManagementPolicy.ReadWrite.Directory` (read the roles' policy assignments and update their
//! `CustomExtension_{Pre,Post}Approval_EndUser_Assignment` rule; `--status` needs only the `Read`
//! permissions). Without `--apply` or `--status` nothing is called.

pub mod status;

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::connectors::BuildContext;
use crate::connectors::graph::Graph;
use crate::connectors::http::UpstreamError;
use crate::connectors::secrets::Secret;
use crate::rules::catalog;
use crate::settings::{Settings, is_guid};

/// Where PIM's custom extensions live.
pub const EXTENSIONS_PATH: &str = "/v1.0/identityGovernance/privilegedAccess/customExtensions";
/// Where the role management policies (and their rules) live.
pub const POLICIES_PATH: &str = "/v1.0/policies/roleManagementPolicies";
/// PIM refuses an extension whose `timeoutInMilliseconds` is outside these bounds.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=60_000;
/// PIM refuses more retries than this.
pub const MAX_RETRIES: u32 = 5;
/// How much longer than `server.deadline_ms` PIM must wait: the answer still has to cross the
/// network (and TLS) after pimgate's deadline, and PIM's clock starts before pimgate's.
pub const DEADLINE_MARGIN_MS: u64 = 1_000;
const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// One Graph call may take this long; onboarding is interactive, not on a decision's deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Graph error messages can be long; an operator needs the first sentence or two.
const MAX_MESSAGE_CHARS: usize = 300;

/// The `resourceType` of the extension: one extension per kind of PIM resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResourceKind {
    #[value(name = "entraRoles")]
    EntraRoles,
    #[value(name = "azureResources")]
    AzureResources,
    #[value(name = "entraGroups")]
    EntraGroups,
}

/// The point of PIM's activation flow at which the extension is called (`wire.md` §4a): each has its
/// own extension `type`, `targetUrl` and policy rule, because PIM's request does not say which stage
/// is calling. The one stage type of the service, re-exported for onboarding's callers.
pub use crate::payload::Stage;

/// The extension's description when the operator gives none.
pub fn default_description(stage: Stage) -> &'static str {
    match stage {
        Stage::PreApproval => "Pre-approval checks",
        Stage::PostApproval => "Post-approval checks",
    }
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::EntraRoles => "entraRoles",
            ResourceKind::AzureResources => "azureResources",
            ResourceKind::EntraGroups => "entraGroups",
        }
    }
}

/// What the operator asked for (the command line's flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// The public host PIM calls, e.g. `pimgate.contoso.com` (no scheme, no path); from the
    /// `api://{host}/{clientId}` audience of `auth.audiences` when absent.
    pub host: Option<String>,
    /// pimgate's app registration (client) id, part of the Application ID URI PIM gets a token for;
    /// from `auth.audiences` when absent.
    pub client_id: Option<String>,
    pub stage: Stage,
    /// The extension's id; derived from tenant, host and resource type when absent.
    pub extension_id: Option<String>,
    pub display_name: String,
    pub description: String,
    pub resource_type: ResourceKind,
    /// Entra role names or role definition ids whose policy should call the extension.
    pub roles: Vec<String>,
    pub timeout_ms: u64,
    pub retries: u32,
    /// Make the calls; otherwise only print them.
    pub apply: bool,
    /// Report what is registered and linked (GETs only) instead of planning changes.
    pub status: bool,
    /// `--status` as JSON instead of a table.
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// The flags or the configuration cannot work; nothing was called.
    #[error("{0}")]
    Usage(String),
    #[error("{step}: Microsoft Graph answered HTTP {status} `{code}`: {message}{hint}")]
    Graph {
        step: String,
        status: u16,
        code: String,
        message: String,
        /// What to fix, when the step says more than Graph's message (empty or `"; fix: …"`).
        hint: String,
    },
    /// An operator's command: the upstream's full detail (status, Entra code) is what they need.
    #[error("{step}: {}", .source.detail())]
    Upstream { step: String, source: UpstreamError },
    #[error("{step}: Microsoft Graph's answer is not what was expected: {what}")]
    Unexpected { step: String, what: String },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl OnboardError {
    /// 2 for usage and configuration mistakes (as the other commands), 1 when Graph failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            OnboardError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A role to link, as resolved from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTarget {
    pub name: String,
    pub id: String,
}

/// Everything decided before any call: the same for a dry run and `--apply`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub graph_url: String,
    pub host: String,
    pub client_id: String,
    pub stage: Stage,
    pub extension_id: String,
    pub extension_body: Value,
    pub roles: Vec<RoleTarget>,
    pub warnings: Vec<String>,
}

/// The extension id to use when none is given: the same for the same tenant, host, resource type
/// and stage, so re-runs address the extension they created. UUIDv5 is not enabled in the `uuid`
/// crate; this is the first 16 bytes of SHA-256 over
/// `pimgate-onboard\n{tenant}\n{host}\n{resourceType}` (tenant and host lower-case; post-approval
/// appends `\npostApproval`, so the pre-approval ids of earlier versions stay what they were) with
/// the version (4) and variant (RFC 4122) bits set, so Graph accepts it as an ordinary GUID.
pub fn derive_extension_id(
    tenant: &str,
    host: &str,
    resource_type: ResourceKind,
    stage: Stage,
) -> String {
    let stage_suffix = match stage {
        Stage::PreApproval => String::new(),
        Stage::PostApproval => format!("\n{}", stage.as_str()),
    };
    let digest = Sha256::digest(format!(
        "pimgate-onboard\n{}\n{}\n{}{stage_suffix}",
        tenant.trim().to_ascii_lowercase(),
        host.trim().to_ascii_lowercase(),
        resource_type.as_str()
    ));
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// The target URL PIM calls for `stage` at `host`.
pub fn target_url(host: &str, stage: Stage) -> String {
    format!(
        "https://{}{}",
        host.trim().to_ascii_lowercase(),
        stage.path()
    )
}

/// The custom extension exactly as `wire.md` §4 gives it, with §4's v1.0 `type`.
pub fn extension_body(extension_id: &str, host: &str, client_id: &str, options: &Options) -> Value {
    let host = host.trim().to_ascii_lowercase();
    json!({
        "@odata.type": "#microsoft.graph.roleManagementCustomCalloutExtension",
        "id": extension_id,
        "type": options.stage.as_str(),
        "displayName": options.display_name,
        "description": options.description,
        "endpointConfiguration": {
            "@odata.type": "#microsoft.graph.httpRequestEndpoint",
            "targetUrl": target_url(&host, options.stage),
        },
        "clientConfiguration": {
            "@odata.type": "#microsoft.graph.customExtensionClientConfiguration",
            "timeoutInMilliseconds": options.timeout_ms,
            "maximumRetries": options.retries,
        },
        "authenticationConfiguration": {
            "@odata.type": "#microsoft.graph.azureAdTokenAuthentication",
            "resourceId": format!("api://{host}/{}", client_id.trim()),
        },
        "resourceType": options.resource_type.as_str(),
    })
}

/// The policy rule that makes PIM call the extension at `stage`, exactly as `wire.md` §4 gives it.
pub fn rule_body(extension_id: &str, stage: Stage) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyCustomExtensionRule",
        "id": stage.rule_id(),
        "customExtensionId": extension_id,
        "isEnabled": true,
        "target": {
            "caller": "EndUser",
            "operations": ["All"],
            "level": "Assignment",
            "inheritableSettings": [],
            "enforcedSettings": [],
        },
    })
}

/// The PATCH body of an existing extension: the POST body without its (immutable) `id`.
fn extension_patch_body(body: &Value) -> Value {
    let mut patch = body.clone();
    if let Some(object) = patch.as_object_mut() {
        object.remove("id");
    }
    patch
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
}

fn resolve_role(role: &str) -> Result<RoleTarget, OnboardError> {
    let role = role.trim();
    if let Some(builtin) = catalog::resolve(role) {
        return Ok(RoleTarget {
            name: builtin.name.to_string(),
            id: builtin.id.to_string(),
        });
    }
    if is_guid(role) {
        return Ok(RoleTarget {
            name: "custom role".to_string(),
            id: role.to_ascii_lowercase(),
        });
    }
    let suggestions = catalog::suggest(role, 3);
    let hint = if suggestions.is_empty() {
        "give a built-in role's name or a role definition id".to_string()
    } else {
        format!("did you mean {}?", suggestions.join(", "))
    };
    Err(OnboardError::Usage(format!(
        "`{role}` is not an Entra role name or id: {hint}"
    )))
}

/// `(host, client id)` named by `auth.audiences`: the host and GUID of an `api://{host}/{GUID}`
/// Application ID URI, else a bare GUID audience for the client id. With `host` given, an
/// Application ID URI for that host is preferred.
pub fn identity_from_audiences(
    audiences: &[String],
    host: Option<&str>,
) -> (Option<String>, Option<String>) {
    let uris: Vec<(String, String)> = audiences
        .iter()
        .filter_map(|audience| {
            let rest = audience.trim().strip_prefix("api://")?;
            let (uri_host, id) = rest.split_once('/')?;
            (is_guid(id) && valid_host(uri_host))
                .then(|| (uri_host.to_ascii_lowercase(), id.to_ascii_lowercase()))
        })
        .collect();
    let chosen = match host {
        Some(host) => uris
            .iter()
            .find(|(uri_host, _)| uri_host.eq_ignore_ascii_case(host.trim())),
        None => uris.first(),
    };
    let bare = audiences
        .iter()
        .map(|audience| audience.trim())
        .find(|audience| is_guid(audience))
        .map(str::to_ascii_lowercase);
    (
        chosen.map(|(host, _)| host.clone()),
        chosen.map(|(_, id)| id.clone()).or(bare),
    )
}

/// PIM's own limits on the extension, and the margin pimgate's deadline needs below PIM's timeout;
/// checked before anything is sent, since PIM would refuse the first two and silently time out on
/// the third.
fn check_limits(settings: &Settings, options: &Options) -> Result<(), OnboardError> {
    let timeout = options.timeout_ms;
    if !TIMEOUT_MS_RANGE.contains(&timeout) {
        return Err(OnboardError::Usage(format!(
            "`--timeout-ms {timeout}` is outside PIM's limits: timeoutInMilliseconds must be {} to {}",
            TIMEOUT_MS_RANGE.start(),
            TIMEOUT_MS_RANGE.end()
        )));
    }
    if options.retries > MAX_RETRIES {
        return Err(OnboardError::Usage(format!(
            "`--retries {}` is outside PIM's limits: maximumRetries must be 0 to {MAX_RETRIES}",
            options.retries
        )));
    }
    let deadline = settings.server.deadline_ms;
    let needed = deadline.saturating_add(DEADLINE_MARGIN_MS);
    if timeout < needed {
        let fix = if needed <= *TIMEOUT_MS_RANGE.end() {
            format!("use `--timeout-ms {needed}` or more, or lower `server.deadline_ms`")
        } else {
            format!(
                "lower `server.deadline_ms` to at most {}",
                TIMEOUT_MS_RANGE.end() - DEADLINE_MARGIN_MS
            )
        };
        return Err(OnboardError::Usage(format!(
            "`--timeout-ms {timeout}` leaves less than {DEADLINE_MARGIN_MS} ms above `server.deadline_ms` {deadline}: PIM would give up before pimgate's answer arrives; {fix}"
        )));
    }
    Ok(())
}

/// The host and client id to register: the flags, else what `auth.audiences` names.
fn identity(settings: &Settings, options: &Options) -> Result<(String, String), OnboardError> {
    let given_host = options
        .host
        .as_deref()
        .map(str::trim)
        .filter(|host| !host.is_empty());
    let (audience_host, audience_client) =
        identity_from_audiences(&settings.auth.audiences, given_host);
    let host = given_host.map(str::to_string).or(audience_host).ok_or_else(|| {
        OnboardError::Usage(
            "no host: give `--host` (the public host PIM calls) or list the Application ID URI `api://<host>/<clientId>` in `auth.audiences`".to_string(),
        )
    })?;
    if !valid_host(&host) {
        return Err(OnboardError::Usage(format!(
            "`--host {host}` is not a host name: give the public host PIM calls, e.g. `pimgate.contoso.com` (no scheme, no path)"
        )));
    }
    let client_id = options
        .client_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .or(audience_client)
        .ok_or_else(|| {
            OnboardError::Usage(
                "no client id: give `--client-id` (pimgate's application id) or list it in `auth.audiences`".to_string(),
            )
        })?;
    if !is_guid(&client_id) {
        return Err(OnboardError::Usage(format!(
            "`--client-id {client_id}` is not a GUID: give pimgate's application (client) id"
        )));
    }
    Ok((host, client_id.to_ascii_lowercase()))
}

/// Checks the options and works out every body, without calling anything.
pub fn plan(settings: &Settings, options: &Options) -> Result<Plan, OnboardError> {
    let (host, client_id) = identity(settings, options)?;
    let host = host.as_str();
    check_limits(settings, options)?;
    if !options.roles.is_empty() && options.resource_type != ResourceKind::EntraRoles {
        return Err(OnboardError::Usage(format!(
            "`--role` links Entra roles' policies; with `--resource-type {}` link the extension to the policy in the PIM portal",
            options.resource_type.as_str()
        )));
    }
    let graph = settings.connectors.graph.as_ref();
    let tenant = graph
        .and_then(|graph| graph.tenant_id.clone())
        .unwrap_or_else(|| settings.auth.tenant_id.clone());
    let extension_id = match &options.extension_id {
        Some(id) if is_guid(id.trim()) => id.trim().to_ascii_lowercase(),
        Some(id) => {
            return Err(OnboardError::Usage(format!(
                "`--extension-id {id}` is not a GUID"
            )));
        }
        None => derive_extension_id(&tenant, host, options.resource_type, options.stage),
    };
    let roles = options
        .roles
        .iter()
        .map(|role| resolve_role(role))
        .collect::<Result<Vec<_>, _>>()?;
    let graph_url = graph
        .and_then(|graph| graph.graph_url.clone())
        .unwrap_or_else(|| DEFAULT_GRAPH_URL.to_string())
        .trim_end_matches('/')
        .to_string();
    let warnings = Vec::new();
    Ok(Plan {
        graph_url,
        host: host.to_ascii_lowercase(),
        stage: options.stage,
        extension_body: extension_body(&extension_id, host, &client_id, options),
        client_id,
        extension_id,
        roles,
        warnings,
    })
}

/// `$filter` values are GUIDs and fixed words; only these characters need escaping.
fn escape_query(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('\'', "%27")
        .replace('/', "%2F")
}

fn assignments_url(graph_url: &str, role_id: &str) -> String {
    let filter = format!(
        "scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{role_id}'"
    );
    format!(
        "{graph_url}/v1.0/policies/roleManagementPolicyAssignments?$filter={}",
        escape_query(&filter)
    )
}

fn rule_url(graph_url: &str, policy_id: &str, stage: Stage) -> String {
    format!(
        "{graph_url}{POLICIES_PATH}/{}/rules/{}",
        escape_query(policy_id),
        stage.rule_id()
    )
}

fn pretty(body: &Value) -> String {
    serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string())
}

/// Prints what would be done (no `--apply`) or does it, one line per step on `out`.
pub async fn run(
    settings: &Settings,
    options: &Options,
    out: &mut dyn Write,
) -> Result<(), OnboardError> {
    if options.status {
        return status::run(settings, options, out).await;
    }
    let plan = plan(settings, options)?;
    for warning in &plan.warnings {
        writeln!(out, "{warning}")?;
    }
    if options.apply {
        apply(settings, &plan, out).await
    } else {
        dry_run(&plan, out)
    }
}

fn dry_run(plan: &Plan, out: &mut dyn Write) -> Result<(), OnboardError> {
    let extensions = format!("{}{EXTENSIONS_PATH}", plan.graph_url);
    let extension = format!("{extensions}/{}", plan.extension_id);
    writeln!(
        out,
        "dry run: nothing is changed; add --apply to make these calls as the [connectors.graph] app"
    )?;
    writeln!(out, "1. GET {extension}")?;
    writeln!(out, "   if it does not exist: POST {extensions}")?;
    writeln!(out, "{}", pretty(&plan.extension_body))?;
    writeln!(
        out,
        "   if it exists with other values: PATCH {extension} with the same body without `id`"
    )?;
    for (index, role) in plan.roles.iter().enumerate() {
        let step = index + 2;
        writeln!(out, "{step}. role {} ({}):", role.name, role.id)?;
        writeln!(
            out,
            "   GET {} (its `policyId`)",
            assignments_url(&plan.graph_url, &role.id)
        )?;
        let rule = rule_url(&plan.graph_url, "{policyId}", plan.stage);
        writeln!(out, "   GET {rule}")?;
        writeln!(
            out,
            "   if customExtensionId or isEnabled differ: PATCH {rule}"
        )?;
        writeln!(
            out,
            "{}",
            pretty(&rule_body(&plan.extension_id, plan.stage))
        )?;
    }
    Ok(())
}

/// The Graph calls of `--apply` and `--status`, with one token for all of them.
pub(crate) struct Session {
    http: reqwest::Client,
    token: Secret,
    /// The configured Graph base URL, without a trailing `/`.
    pub(crate) graph_url: String,
    /// Shown in the hint of PIM's refusal of the `resourceId`.
    resource_hint: Option<String>,
}

#[derive(serde::Deserialize)]
struct GraphErrorAnswer {
    error: GraphErrorBody,
}

#[derive(serde::Deserialize)]
struct GraphErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Session {
    /// One call; `Ok(None)` for a 404 when `missing_ok` (the "absent" of an idempotent GET).
    pub(crate) async fn call(
        &self,
        step: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
        missing_ok: bool,
    ) -> Result<Option<Value>, OnboardError> {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| OnboardError::Upstream {
                step: step.to_string(),
                source: if error.is_timeout() {
                    UpstreamError::Timeout {
                        connector: crate::connectors::graph::CONNECTOR,
                    }
                } else {
                    UpstreamError::Unreachable {
                        connector: crate::connectors::graph::CONNECTOR,
                    }
                },
            })?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND && missing_ok {
            return Ok(None);
        }
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<GraphErrorAnswer>(&bytes) {
                Ok(answer) => (answer.error.code, answer.error.message),
                Err(_) => (String::new(), String::new()),
            };
            return Err(OnboardError::Graph {
                step: step.to_string(),
                status: status.as_u16(),
                code: if code.is_empty() {
                    "(no code)".to_string()
                } else {
                    code
                },
                hint: self.hint(status, body, &message),
                message: if message.is_empty() {
                    "(no message)".to_string()
                } else {
                    message.chars().take(MAX_MESSAGE_CHARS).collect()
                },
            });
        }
        if bytes.is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| OnboardError::Unexpected {
                step: step.to_string(),
                what: format!("HTTP {} with a body that is not JSON", status.as_u16()),
            })
    }
}

impl Session {
    /// Signs in as the `[connectors.graph]` app (the only token it asks for).
    pub(crate) async fn open(settings: &Settings) -> Result<Self, OnboardError> {
        let Some(graph_settings) = &settings.connectors.graph else {
            return Err(OnboardError::Usage(
                "`--apply` and `--status` call Microsoft Graph as the `[connectors.graph]` app, and that section is not configured".to_string(),
            ));
        };
        let http = reqwest::Client::new();
        let context = BuildContext {
            http: http.clone(),
            tenant_id: settings.auth.tenant_id.clone(),
        };
        let graph = Graph::new(graph_settings, &context).map_err(|problems| {
            OnboardError::Usage(
                problems
                    .iter()
                    .map(|problem| {
                        format!("{}: {} ({})", problem.key, problem.message, problem.fix)
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let token = graph
            .access_token(Instant::now() + CALL_TIMEOUT)
            .await
            .map_err(|source| OnboardError::Upstream {
                step: format!("token for tenant {}", graph.tenant_id()),
                source,
            })?;
        Ok(Session {
            http,
            token,
            graph_url: graph.graph_url().trim_end_matches('/').to_string(),
            resource_hint: None,
        })
    }

    /// PIM refuses an extension whose `resourceId` is not one of the service principal's names
    /// (its Application ID URIs); its message says so in its own words, and the operator also needs
    /// to know which value was sent and where to add it.
    fn hint(&self, status: reqwest::StatusCode, body: Option<&Value>, message: &str) -> String {
        let sent = body
            .and_then(|body| body.pointer("/authenticationConfiguration/resourceId"))
            .and_then(Value::as_str);
        match (sent, &self.resource_hint) {
            (Some(sent), Some(_))
                if status == reqwest::StatusCode::BAD_REQUEST
                    && message.to_ascii_lowercase().contains("resource") =>
            {
                format!(
                    "; fix: add `{sent}` to the Application ID URIs (Expose an API) of pimgate's app registration, or give the `--host`/`--client-id` it has"
                )
            }
            _ => String::new(),
        }
    }
}

/// A field of the extension an operator cares about, with the name shown in "updated: …".
const COMPARED: [(&str, &str); 8] = [
    ("/type", "stage"),
    ("/displayName", "display name"),
    ("/description", "description"),
    ("/endpointConfiguration/targetUrl", "target URL"),
    ("/clientConfiguration/timeoutInMilliseconds", "timeout"),
    ("/clientConfiguration/maximumRetries", "retries"),
    ("/authenticationConfiguration/resourceId", "resource id"),
    ("/resourceType", "resource type"),
];

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(none)".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// "timeout 10000 → 12000" for every compared field that differs.
fn differences(existing: &Value, desired: &Value, fields: &[(&str, &str)]) -> Vec<String> {
    fields
        .iter()
        .filter_map(|(pointer, name)| {
            let have = existing.pointer(pointer);
            let want = desired.pointer(pointer);
            (have != want).then(|| format!("{name} {} → {}", shown(have), shown(want)))
        })
        .collect()
}

async fn apply(settings: &Settings, plan: &Plan, out: &mut dyn Write) -> Result<(), OnboardError> {
    let mut session = Session::open(settings).await?;
    session.resource_hint = Some(plan.client_id.clone());
    let graph_url = session.graph_url.clone();
    let graph_url = graph_url.as_str();

    let extension_url = format!("{graph_url}{EXTENSIONS_PATH}/{}", plan.extension_id);
    let step = format!(
        "extension {} ({})",
        plan.extension_id,
        shown(plan.extension_body.get("resourceType"))
    );
    match session
        .call(&step, reqwest::Method::GET, &extension_url, None, true)
        .await?
    {
        None => {
            session
                .call(
                    &step,
                    reqwest::Method::POST,
                    &format!("{graph_url}{EXTENSIONS_PATH}"),
                    Some(&plan.extension_body),
                    false,
                )
                .await?;
            writeln!(out, "{step}: created")?;
        }
        Some(existing) => {
            let changes = differences(&existing, &plan.extension_body, &COMPARED);
            if changes.is_empty() {
                writeln!(out, "{step}: already up to date")?;
            } else {
                session
                    .call(
                        &step,
                        reqwest::Method::PATCH,
                        &extension_url,
                        Some(&extension_patch_body(&plan.extension_body)),
                        false,
                    )
                    .await?;
                writeln!(out, "{step}: updated: {}", changes.join(", "))?;
            }
        }
    }

    let desired_rule = rule_body(&plan.extension_id, plan.stage);
    for role in &plan.roles {
        let step = format!("role {} ({})", role.name, role.id);
        let answer = session
            .call(
                &step,
                reqwest::Method::GET,
                &assignments_url(graph_url, &role.id),
                None,
                false,
            )
            .await?
            .unwrap_or_default();
        let policy_id = answer
            .pointer("/value/0/policyId")
            .and_then(Value::as_str)
            .ok_or_else(|| OnboardError::Unexpected {
                step: step.clone(),
                what: "no PIM policy is assigned to this role at the directory scope (is it a role definition id of this tenant?)".to_string(),
            })?
            .to_string();
        let step = format!("{step}, policy {policy_id}");
        let url = rule_url(graph_url, &policy_id, plan.stage);
        let existing = session
            .call(&step, reqwest::Method::GET, &url, None, false)
            .await?
            .unwrap_or_default();
        let changes = differences(
            &existing,
            &desired_rule,
            &[
                ("/customExtensionId", "customExtensionId"),
                ("/isEnabled", "isEnabled"),
            ],
        );
        if changes.is_empty() {
            writeln!(out, "{step}: already up to date")?;
        } else {
            session
                .call(
                    &step,
                    reqwest::Method::PATCH,
                    &url,
                    Some(&desired_rule),
                    false,
                )
                .await?;
            writeln!(out, "{step}: updated: {}", changes.join(", "))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_extension_ids_are_stable_v4_formatted_guids() {
        let one = derive_extension_id(
            "11111111-2222-4333-8444-555555555555",
            "pimgate.contoso.com",
            ResourceKind::EntraRoles,
            Stage::PreApproval,
        );
        let again = derive_extension_id(
            "11111111-2222-4333-8444-555555555555",
            "PIMGATE.contoso.com ",
            ResourceKind::EntraRoles,
            Stage::PreApproval,
        );
        let other_kind = derive_extension_id(
            "11111111-2222-4333-8444-555555555555",
            "pimgate.contoso.com",
            ResourceKind::EntraGroups,
            Stage::PreApproval,
        );
        let other_stage = derive_extension_id(
            "11111111-2222-4333-8444-555555555555",
            "pimgate.contoso.com",
            ResourceKind::EntraRoles,
            Stage::PostApproval,
        );
        assert_eq!(one, again);
        assert_ne!(one, other_kind);
        assert_ne!(one, other_stage);
        let parsed = uuid::Uuid::parse_str(&one).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn the_policy_assignment_filter_is_percent_encoded() {
        assert_eq!(
            assignments_url(
                "https://graph.microsoft.com",
                "62e90394-69f5-4237-9190-012177145e10"
            ),
            "https://graph.microsoft.com/v1.0/policies/roleManagementPolicyAssignments?$filter=scopeId%20eq%20%27%2F%27%20and%20scopeType%20eq%20%27DirectoryRole%27%20and%20roleDefinitionId%20eq%20%2762e90394-69f5-4237-9190-012177145e10%27"
        );
    }

    #[test]
    fn differences_name_each_changed_field_with_old_and_new_value() {
        let existing =
            json!({"clientConfiguration": {"timeoutInMilliseconds": 10000, "maximumRetries": 3}});
        let desired =
            json!({"clientConfiguration": {"timeoutInMilliseconds": 12000, "maximumRetries": 3}});
        assert_eq!(
            differences(&existing, &desired, &COMPARED[4..6]),
            vec!["timeout 10000 → 12000".to_string()]
        );
    }
}
