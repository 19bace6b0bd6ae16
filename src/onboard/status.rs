//! `pimgate onboard --status`: what PIM has registered and linked, read with GETs only, set against
//! this host and the loaded rule set, so an operator sees at a glance whether each stage reaches
//! this deployment and whether a linked role would find a policy here.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::{EXTENSIONS_PATH, OnboardError, Options, POLICIES_PATH, Session, Stage, target_url};
use crate::payload::ResourceType;
use crate::rules::{RuleSet, catalog, matcher::Matcher};
use crate::settings::Settings;

/// List pages followed at most; a tenant has a few hundred role policies, Graph pages hold 100+.
const MAX_PAGES: usize = 50;

/// The report, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The host this deployment answers on (`--host` or `auth.audiences`).
    pub host: String,
    pub extensions: Vec<ExtensionStatus>,
    pub links: Vec<LinkStatus>,
    /// Why the rule set could not be consulted, when it could not (then `rules_match` is null).
    pub rules_problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ExtensionStatus {
    pub id: String,
    pub display_name: String,
    /// `pre-approval` / `post-approval`, or Graph's `type` as is for any other kind.
    pub stage: String,
    pub resource_type: String,
    pub target_url: String,
    /// The target URL is this host's route for the extension's stage.
    pub points_here: bool,
}

#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub role_id: String,
    pub role_name: String,
    pub policy_id: String,
    pub stage: Stage,
    pub extension_id: String,
    pub enabled: bool,
    /// The linked extension exists and its target URL is this host's route for the link's stage.
    pub points_here: bool,
    /// Some policy of the loaded rules can match an activation of this role (`None` when the rules
    /// could not be loaded). `false` means every activation of the role is denied here.
    pub rules_match: Option<bool>,
}

/// Reads the tenant's state and prints it as a table or JSON.
pub async fn run(
    settings: &Settings,
    options: &Options,
    out: &mut dyn Write,
) -> Result<(), OnboardError> {
    let host = host(settings, options)?;
    let session = Session::open(settings).await?;
    let rules = crate::rules::load(&settings.rules.path).map_err(|problems| {
        format!(
            "the rules at `{}` do not load ({} problem(s)); run `pimgate rules validate`",
            settings.rules.path.display(),
            problems.len()
        )
    });
    let status = read(&session, &host, rules.as_ref()).await?;
    if options.json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|error| OnboardError::Output(std::io::Error::other(error.to_string())))?;
        writeln!(out, "{text}")?;
    } else {
        print_table(&status, out)?;
    }
    Ok(())
}

fn host(settings: &Settings, options: &Options) -> Result<String, OnboardError> {
    let given = options
        .host
        .as_deref()
        .map(str::trim)
        .filter(|host| !host.is_empty());
    given
        .map(str::to_ascii_lowercase)
        .or_else(|| super::identity_from_audiences(&settings.auth.audiences, None).0)
        .ok_or_else(|| {
            OnboardError::Usage(
                "no host: give `--host` or list the Application ID URI `api://<host>/<clientId>` in `auth.audiences`".to_string(),
            )
        })
}

/// Every item of a Graph collection, following `@odata.nextLink`.
async fn list(session: &Session, step: &str, url: String) -> Result<Vec<Value>, OnboardError> {
    let mut items = Vec::new();
    let mut next = Some(url);
    for _ in 0..MAX_PAGES {
        let Some(url) = next.take() else { break };
        let page = session
            .call(step, reqwest::Method::GET, &url, None, false)
            .await?
            .unwrap_or_default();
        let Some(values) = page.get("value").and_then(Value::as_array) else {
            return Err(OnboardError::Unexpected {
                step: step.to_string(),
                what: "a collection without `value`".to_string(),
            });
        };
        items.extend(values.iter().cloned());
        next = page
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    Ok(items)
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Three GETs: the extensions, the directory roles' policy assignments (policy → role) and the
/// directory roles' policies with their rules.
async fn read(
    session: &Session,
    host: &str,
    rules: Result<&RuleSet, &String>,
) -> Result<Status, OnboardError> {
    let graph = &session.graph_url;
    let directory = super::escape_query("scopeId eq '/' and scopeType eq 'DirectoryRole'");
    let extensions = list(session, "extensions", format!("{graph}{EXTENSIONS_PATH}")).await?;
    let assignments = list(
        session,
        "policy assignments",
        format!("{graph}/v1.0/policies/roleManagementPolicyAssignments?$filter={directory}"),
    )
    .await?;
    let policies = list(
        session,
        "policies",
        format!("{graph}{POLICIES_PATH}?$filter={directory}&$expand=rules"),
    )
    .await?;

    let extensions: Vec<ExtensionStatus> = extensions
        .iter()
        .map(|extension| {
            let kind = text(extension, "/type");
            let stage = Stage::from_extension_type(&kind);
            let target = text(extension, "/endpointConfiguration/targetUrl");
            ExtensionStatus {
                id: text(extension, "/id").to_ascii_lowercase(),
                display_name: text(extension, "/displayName"),
                stage: stage.map_or(kind, |stage| stage.flag().to_string()),
                resource_type: text(extension, "/resourceType"),
                points_here: stage.is_some_and(|stage| target == target_url(host, stage)),
                target_url: target,
            }
        })
        .collect();
    let role_of_policy: BTreeMap<String, String> = assignments
        .iter()
        .map(|assignment| {
            (
                text(assignment, "/policyId"),
                text(assignment, "/roleDefinitionId").to_ascii_lowercase(),
            )
        })
        .collect();

    let mut links = Vec::new();
    for policy in &policies {
        let policy_id = text(policy, "/id");
        let Some(role_id) = role_of_policy.get(&policy_id) else {
            continue;
        };
        let rules_list = policy.get("rules").and_then(Value::as_array);
        for rule in rules_list.into_iter().flatten() {
            let Some(stage) = Stage::from_rule_id(&text(rule, "/id")) else {
                continue;
            };
            let extension_id = text(rule, "/customExtensionId").to_ascii_lowercase();
            if extension_id.is_empty() {
                continue;
            }
            let extension = extensions.iter().find(|known| known.id == extension_id);
            links.push(LinkStatus {
                role_id: role_id.clone(),
                role_name: catalog::by_id(role_id)
                    .map_or_else(|| "custom role".to_string(), |role| role.name.to_string()),
                policy_id: policy_id.clone(),
                stage,
                enabled: rule.get("isEnabled").and_then(Value::as_bool) == Some(true),
                points_here: extension
                    .is_some_and(|known| known.target_url == target_url(host, stage)),
                rules_match: rules
                    .ok()
                    .map(|rules| rules_can_match_role(rules, role_id, stage)),
                extension_id,
            });
        }
    }
    links.sort_by(|a, b| (&a.role_name, a.stage.flag()).cmp(&(&b.role_name, b.stage.flag())));
    Ok(Status {
        host: host.to_string(),
        extensions,
        links,
        rules_problem: rules.err().cloned(),
    })
}

/// Whether some policy of `rules` can match an activation of the Entra role `role_id` at `stage`:
/// its stages, roles, tiers and resource types admit it and it is not about groups. Other keys
/// (principals, scopes, `when`) narrow a policy but do not rule the role out, so they count as a
/// match.
pub fn rules_can_match_role(rules: &RuleSet, role_id: &str, stage: Stage) -> bool {
    rules
        .policies
        .iter()
        .any(|policy| matcher_admits_role(&policy.matcher, role_id, stage))
}

fn matcher_admits_role(matcher: &Matcher, role_id: &str, stage: Stage) -> bool {
    if matcher
        .stages
        .as_ref()
        .is_some_and(|stages| !stages.contains(&stage))
    {
        return false;
    }
    let role_id = role_id.to_ascii_lowercase();
    let roles = matcher
        .roles
        .as_ref()
        .is_none_or(|roles| roles.contains(&role_id));
    let tiers = matcher.tiers.as_ref().is_none_or(|tiers| {
        catalog::by_id(&role_id).is_some_and(|role| tiers.contains(&role.tier))
    });
    let kinds = matcher
        .resource_types
        .as_ref()
        .is_none_or(|kinds| kinds.contains(&ResourceType::EntraRoles));
    roles && tiers && kinds && matcher.groups.is_none()
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "NO" }
}

fn print_table(status: &Status, out: &mut dyn Write) -> Result<(), OnboardError> {
    writeln!(out, "custom extensions (this host: {}):", status.host)?;
    if status.extensions.is_empty() {
        writeln!(out, "  none")?;
    } else {
        writeln!(
            out,
            "  {:<36}  {:<13}  {:<14}  {:<5}  TARGET",
            "ID", "STAGE", "RESOURCE", "HERE"
        )?;
        for extension in &status.extensions {
            writeln!(
                out,
                "  {:<36}  {:<13}  {:<14}  {:<5}  {}",
                extension.id,
                extension.stage,
                extension.resource_type,
                yes_no(extension.points_here),
                extension.target_url
            )?;
        }
    }
    writeln!(out, "role policies linking an extension:")?;
    if status.links.is_empty() {
        writeln!(out, "  none")?;
    } else {
        writeln!(
            out,
            "  {:<36}  {:<13}  {:<36}  {:<7}  {:<5}  RULES",
            "ROLE", "STAGE", "EXTENSION", "ENABLED", "HERE"
        )?;
        for link in &status.links {
            writeln!(
                out,
                "  {:<36}  {:<13}  {:<36}  {:<7}  {:<5}  {}",
                link.role_name,
                link.stage.flag(),
                link.extension_id,
                yes_no(link.enabled),
                yes_no(link.points_here),
                link.rules_match.map_or("?", yes_no)
            )?;
        }
    }
    if let Some(problem) = &status.rules_problem {
        writeln!(out, "warning: {problem}")?;
    }
    for link in &status.links {
        if link.rules_match == Some(false) {
            writeln!(
                out,
                "warning: {} ({}) is linked at {} but no policy of the loaded rules matches it: every activation of it would be denied",
                link.role_name,
                link.role_id,
                link.stage.flag()
            )?;
        }
        if !link.points_here {
            writeln!(
                out,
                "note: {}'s {} link does not point at {} (another deployment, or a stale extension)",
                link.role_name,
                link.stage.flag(),
                target_url(&status.host, link.stage)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Stage, rules_can_match_role};

    const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";

    #[test]
    fn a_role_whose_only_policy_is_for_the_other_stage_has_no_rules_at_this_stage() {
        let Ok(rules) = crate::rules::load_str(
            "rules.yaml",
            "policies:\n  - name: first-look\n    match: { roles: [Global Administrator], stages: [pre_approval] }\n    decide: Approved\n    reason: ok\n",
        ) else {
            panic!("rules load");
        };
        assert!(rules_can_match_role(
            &rules,
            GLOBAL_ADMIN,
            Stage::PreApproval
        ));
        assert!(!rules_can_match_role(
            &rules,
            GLOBAL_ADMIN,
            Stage::PostApproval
        ));
    }
}
