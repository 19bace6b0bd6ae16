//! `pimgate onboard`: registers pimgate as PIM's custom extension and links it to roles' policies
//! through Microsoft Graph (`shared/spec/wire.md` §4), idempotently, so it can be re-run after any
//! change (host, timeout, roles) and only what differs is written.
//!
//! Permissions of the `[connectors.graph]` app (application permissions, admin consent):
//! `PrivilegedAccess-CustomExt.ReadWrite.All` (read, create and update the custom extension) and
//! `RoleManagementPolicy.ReadWrite.Directory` (read the roles' policy assignments and update their
//! `CustomExtension_PreApproval_EndUser_Assignment` rule). Without `--apply` nothing is called.

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

/// Where PIM's custom extensions live (beta: the only version PIM documents for them).
pub const EXTENSIONS_PATH: &str = "/beta/identityGovernance/privilegedAccess/customExtensions";
/// The policy rule that makes PIM call the extension before an end user's activation.
pub const RULE_ID: &str = "CustomExtension_PreApproval_EndUser_Assignment";
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
    /// The public host PIM calls, e.g. `pimgate.contoso.com` (no scheme, no path).
    pub host: String,
    /// pimgate's app registration (client) id, part of the Application ID URI PIM gets a token for.
    pub client_id: String,
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
}

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// The flags or the configuration cannot work; nothing was called.
    #[error("{0}")]
    Usage(String),
    #[error("{step}: Microsoft Graph answered HTTP {status} `{code}`: {message}")]
    Graph {
        step: String,
        status: u16,
        code: String,
        message: String,
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
    pub extension_id: String,
    pub extension_body: Value,
    pub roles: Vec<RoleTarget>,
    pub warnings: Vec<String>,
}

/// The extension id to use when none is given: the same for the same tenant, host and resource
/// type, so re-runs address the extension they created. UUIDv5 is not enabled in the `uuid`
/// crate; this is the first 16 bytes of SHA-256 over
/// `pimgate-onboard\n{tenant}\n{host}\n{resourceType}` (tenant and host lower-case) with the
/// version (4) and variant (RFC 4122) bits set, so Graph accepts it as an ordinary GUID.
pub fn derive_extension_id(tenant: &str, host: &str, resource_type: ResourceKind) -> String {
    let digest = Sha256::digest(format!(
        "pimgate-onboard\n{}\n{}\n{}",
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

/// The custom extension exactly as `wire.md` §4 gives it.
pub fn extension_body(extension_id: &str, options: &Options) -> Value {
    let host = options.host.trim().to_ascii_lowercase();
    json!({
        "@odata.type": "#microsoft.graph.roleManagementCustomCalloutExtension",
        "id": extension_id,
        "displayName": options.display_name,
        "description": options.description,
        "endpointConfiguration": {
            "@odata.type": "#microsoft.graph.httpRequestEndpoint",
            "targetUrl": format!("https://{host}/v1/evaluate"),
        },
        "clientConfiguration": {
            "@odata.type": "#microsoft.graph.customExtensionClientConfiguration",
            "timeoutInMilliseconds": options.timeout_ms,
            "maximumRetries": options.retries,
        },
        "authenticationConfiguration": {
            "@odata.type": "#microsoft.graph.azureAdTokenAuthentication",
            "resourceId": format!("api://{host}/{}", options.client_id.trim()),
        },
        "resourceType": options.resource_type.as_str(),
    })
}

/// The policy rule that makes PIM call the extension, exactly as `wire.md` §4 gives it.
pub fn rule_body(extension_id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyCustomExtensionRule",
        "id": RULE_ID,
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

/// Checks the options and works out every body, without calling anything.
pub fn plan(settings: &Settings, options: &Options) -> Result<Plan, OnboardError> {
    let host = options.host.trim();
    if !valid_host(host) {
        return Err(OnboardError::Usage(format!(
            "`--host {host}` is not a host name: give the public host PIM calls, e.g. `pimgate.contoso.com` (no scheme, no path)"
        )));
    }
    if !is_guid(options.client_id.trim()) {
        return Err(OnboardError::Usage(format!(
            "`--client-id {}` is not a GUID: give pimgate's application (client) id",
            options.client_id
        )));
    }
    if options.timeout_ms == 0 {
        return Err(OnboardError::Usage(
            "`--timeout-ms 0` cannot work: use e.g. 10000".to_string(),
        ));
    }
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
        None => derive_extension_id(&tenant, host, options.resource_type),
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
    let mut warnings = Vec::new();
    if options.timeout_ms <= settings.server.deadline_ms {
        warnings.push(format!(
            "warning: timeoutInMilliseconds {} is not above server.deadline_ms {}: PIM may give up before pimgate answers; use e.g. {}",
            options.timeout_ms,
            settings.server.deadline_ms,
            settings.server.deadline_ms.saturating_mul(2)
        ));
    }
    Ok(Plan {
        graph_url,
        extension_body: extension_body(&extension_id, options),
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

fn rule_url(graph_url: &str, policy_id: &str) -> String {
    format!(
        "{graph_url}/beta/policies/roleManagementPolicies/{}/rules/{RULE_ID}",
        escape_query(policy_id)
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
        let rule = rule_url(&plan.graph_url, "{policyId}");
        writeln!(out, "   GET {rule}")?;
        writeln!(
            out,
            "   if customExtensionId or isEnabled differ: PATCH {rule}"
        )?;
        writeln!(out, "{}", pretty(&rule_body(&plan.extension_id)))?;
    }
    Ok(())
}

/// The Graph calls of `--apply`, with one token for all of them.
struct Session {
    http: reqwest::Client,
    token: Secret,
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
    async fn call(
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

/// A field of the extension an operator cares about, with the name shown in "updated: …".
const COMPARED: [(&str, &str); 7] = [
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
    let Some(graph_settings) = &settings.connectors.graph else {
        return Err(OnboardError::Usage(
            "`--apply` calls Microsoft Graph as the `[connectors.graph]` app, and that section is not configured".to_string(),
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
                .map(|problem| format!("{}: {} ({})", problem.key, problem.message, problem.fix))
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
    let session = Session { http, token };
    let graph_url = graph.graph_url();

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

    let desired_rule = rule_body(&plan.extension_id);
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
        let url = rule_url(graph_url, &policy_id);
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
        );
        let again = derive_extension_id(
            "11111111-2222-4333-8444-555555555555",
            "PIMGATE.contoso.com ",
            ResourceKind::EntraRoles,
        );
        let other_kind = derive_extension_id(
            "11111111-2222-4333-8444-555555555555",
            "pimgate.contoso.com",
            ResourceKind::EntraGroups,
        );
        assert_eq!(one, again);
        assert_ne!(one, other_kind);
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
            differences(&existing, &desired, &COMPARED[3..5]),
            vec!["timeout 10000 → 12000".to_string()]
        );
    }
}
