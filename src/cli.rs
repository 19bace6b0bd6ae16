//! The `pimgate` command line (`shared/spec/interface.md`): serve, rules validate/test, evaluate, dev token.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::auth::dev::{DevTokenOptions, issue_token};
use crate::decision;
use crate::payload;
use crate::rules;
use crate::settings::Settings;
use crate::startup::Application;
use crate::workbench::explain;
pub use crate::workbench::explain::explain;

#[derive(Debug, Parser)]
#[command(
    name = "pimgate",
    version,
    about = "The decision service Microsoft Entra PIM calls before a role activation"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "PIMGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check or test rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Evaluate one activation request as the service would and explain the decision.
    Evaluate {
        /// A PIM request body (JSON), as PIM would POST it.
        #[arg(long)]
        request: PathBuf,
        #[arg(long, env = "PIMGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Do not call upstream systems; say which checks could not run.
        #[arg(long)]
        offline: bool,
        /// Evaluate as if it were this instant (RFC 3339), e.g. to test a maintenance window.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// Print the full decision as JSON instead of the explanation.
        #[arg(long)]
        json: bool,
        /// Which of PIM's callbacks to answer as: `pre-approval` (`POST /v1/evaluate`) or
        /// `post-approval` (`POST /v1/evaluate/post-approval`, after a human approved).
        #[arg(long, default_value = "pre-approval")]
        stage: payload::Stage,
    },
    /// Register pimgate as PIM's custom extension for a stage and link it to roles' policies
    /// (Microsoft Graph v1.0). Without --apply, print the calls only; --status reports (GET only).
    Onboard {
        #[arg(long, env = "PIMGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The public host PIM calls, e.g. `pimgate.contoso.com` (default: from the
        /// `api://<host>/<clientId>` entry of `auth.audiences`).
        #[arg(long)]
        host: Option<String>,
        /// pimgate's application (client) id (default: from `auth.audiences`).
        #[arg(long)]
        client_id: Option<String>,
        /// Which of PIM's calls to register: before approval or after a human approved.
        #[arg(long, default_value = "pre-approval")]
        stage: payload::Stage,
        /// The extension's GUID (default: derived from tenant, host and resource type).
        #[arg(long)]
        extension_id: Option<String>,
        #[arg(long, default_value = "pimgate")]
        display_name: String,
        /// Default: "Pre-approval checks" or "Post-approval checks".
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_enum, default_value = "entraRoles")]
        resource_type: crate::onboard::ResourceKind,
        /// An Entra role name or role definition id whose policy should call pimgate (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How long PIM waits for pimgate (1000–60000), at least 1000 above `server.deadline_ms`.
        #[arg(long, default_value_t = 10000)]
        timeout_ms: u64,
        /// How often PIM retries (0–5).
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Make the calls (as the `[connectors.graph]` app) instead of printing them.
        #[arg(long, conflicts_with = "status")]
        apply: bool,
        /// Report the extensions, the role policies linking them and whether they point here.
        #[arg(long)]
        status: bool,
        /// With --status: JSON instead of a table.
        #[arg(long, requires = "status")]
        json: bool,
    },
    /// List the built-in Entra roles with their template ids and tiers.
    Roles {
        /// Only the roles of this tier (critical, high, medium, low).
        #[arg(long, value_parser = parse_tier)]
        tier: Option<crate::rules::catalog::Tier>,
        /// JSON (one array of `{id, name, tier}`) instead of a table.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// The Markdown table kept at the end of `rules/CATALOG.md` (every role).
        #[arg(long, conflicts_with = "tier")]
        markdown: bool,
    },
    /// Development helpers.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load and compile the rules; print every problem; exit 1 on any error.
    Validate {
        /// A rule file or folder (default: `rules.path` of --config, else `rules`).
        path: Option<PathBuf>,
        #[arg(long, env = "PIMGATE_CONFIG")]
        config: Option<PathBuf>,
        /// `text` (one `file:line:column: severity: ...` line each) or `json` (one object with
        /// every diagnostic, for CI annotations).
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
    /// Print the rule reference (Markdown) generated from the code: `rules/REFERENCE.md`.
    Reference,
    /// Run the test cases kept beside the rules (`*.test.yaml`); exit 1 on any failure.
    Test {
        path: Option<PathBuf>,
        #[arg(long, env = "PIMGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Run only the cases whose name contains this text (ignoring case).
        #[arg(long)]
        filter: Option<String>,
        /// Also write a JUnit XML report to this file, for CI systems.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Decide recorded requests again with the rules at PATH, from the facts in the audit records
    /// (no upstream call); print every decision that would change. Exit 0 when it ran, 2 on
    /// unreadable input (with its line number) or rules that do not load.
    Backtest {
        /// The audit log (JSON lines); `-` for standard input.
        #[arg(long)]
        audit: PathBuf,
        /// A rule file or folder (default: `rules.path` of --config, else `rules`).
        path: Option<PathBuf>,
        #[arg(long, env = "PIMGATE_CONFIG")]
        config: Option<PathBuf>,
        /// One JSON object per changed decision (JSON lines); the summary goes to standard error.
        #[arg(long)]
        json: bool,
    },
}

/// How `rules validate` prints its diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

fn parse_tier(text: &str) -> Result<crate::rules::catalog::Tier, String> {
    crate::rules::catalog::Tier::parse(text)
        .ok_or_else(|| format!("unknown tier `{text}`, expected critical, high, medium or low"))
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Print a bearer token from the built-in development issuer (trusted only with auth.dev_mode).
    Token {
        #[arg(long, env = "PIMGATE_CONFIG", default_value = "config/example.toml")]
        config: PathBuf,
        /// Audience (default: the first of auth.audiences).
        #[arg(long)]
        audience: Option<String>,
        /// Calling application id, put in `azp` (default: the first of auth.allowed_callers).
        #[arg(long)]
        caller: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: i64,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(config.as_deref()).await,
        Command::Rules {
            command:
                RulesCommand::Validate {
                    path,
                    config,
                    format,
                },
        } => match rules_context(path, config.as_deref(), false) {
            Ok((path, connectors)) => match format {
                ValidateFormat::Text => validate(&path, &connectors),
                ValidateFormat::Json => validate_json(&path, &connectors),
            },
            Err(code) => code,
        },
        Command::Rules {
            command: RulesCommand::Reference,
        } => {
            print!("{}", crate::workbench::reference::markdown());
            ExitCode::SUCCESS
        }
        Command::Roles {
            tier,
            json,
            markdown,
        } => roles(tier, json, markdown),
        Command::Rules {
            command:
                RulesCommand::Test {
                    path,
                    config,
                    filter,
                    junit,
                },
        } => match rules_context(path, config.as_deref(), true) {
            Ok((path, connectors)) => {
                let options = crate::workbench::testing::TestOptions { filter };
                test(&path, &connectors, &options, junit.as_deref()).await
            }
            Err(code) => code,
        },
        Command::Rules {
            command:
                RulesCommand::Backtest {
                    audit,
                    path,
                    config,
                    json,
                },
        } => match rules_context(path, config.as_deref(), false) {
            Ok((path, connectors)) => backtest(&audit, &path, &connectors, json).await,
            Err(code) => code,
        },
        Command::Evaluate {
            request,
            config,
            offline,
            now,
            json,
            stage,
        } => evaluate(&request, config.as_deref(), offline, now, json, stage).await,
        Command::Onboard {
            config,
            host,
            client_id,
            stage,
            extension_id,
            display_name,
            description,
            resource_type,
            roles,
            timeout_ms,
            retries,
            apply,
            status,
            json,
        } => {
            let options = crate::onboard::Options {
                host,
                client_id,
                stage,
                extension_id,
                display_name,
                description: description
                    .unwrap_or_else(|| crate::onboard::default_description(stage).to_string()),
                resource_type,
                roles,
                timeout_ms,
                retries,
                apply,
                status,
                json,
            };
            onboard(config.as_deref(), &options).await
        }
        Command::Dev {
            command:
                DevCommand::Token {
                    config,
                    audience,
                    caller,
                    subject,
                    expires_in,
                },
        } => {
            let settings = match load_settings(Some(&config)) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            let options = DevTokenOptions {
                audience,
                caller,
                subject,
                expires_in_seconds: expires_in,
            };
            match issue_token(&settings.auth, &options) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("pimgate: cannot issue a development token: {error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Exit 0 when everything is in place, 1 when a Graph call failed, 2 on bad flags or settings.
async fn onboard(config: Option<&Path>, options: &crate::onboard::Options) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let mut out = std::io::stdout();
    match crate::onboard::run(&settings, options, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pimgate: onboard: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn load_settings(config: Option<&Path>) -> Result<Settings, ExitCode> {
    Settings::load(config).map_err(|error| {
        eprintln!("pimgate: {error}");
        ExitCode::from(2)
    })
}

/// The rules to work on and the connectors to build them with: those of `--config` when given
/// (`offline_only` keeps just the file-based ones, so tests never call a real system), else none.
fn rules_context(
    path: Option<PathBuf>,
    config: Option<&Path>,
    offline_only: bool,
) -> Result<(PathBuf, std::sync::Arc<crate::connectors::Connectors>), ExitCode> {
    let Some(config) = config else {
        return Ok((
            path.unwrap_or_else(|| PathBuf::from("rules")),
            crate::connectors::Connectors::none(),
        ));
    };
    let settings = load_settings(Some(config))?;
    let mut connector_settings = settings.connectors.clone();
    if offline_only {
        connector_settings = crate::connectors::ConnectorsSettings {
            hr_file: connector_settings.hr_file,
            oncall_file: connector_settings.oncall_file,
            ..Default::default()
        };
    }
    // Neither `validate` nor `test` calls an upstream system, so they need no secrets: CI has the
    // configuration, not the production credentials.
    let connectors = crate::connectors::secrets::without_secrets(|| {
        build_connectors(&connector_settings, &settings.auth.tenant_id)
    })?;
    Ok((path.unwrap_or(settings.rules.path), connectors))
}

fn build_connectors(
    settings: &crate::connectors::ConnectorsSettings,
    tenant_id: &str,
) -> Result<std::sync::Arc<crate::connectors::Connectors>, ExitCode> {
    let context = crate::connectors::BuildContext {
        http: reqwest::Client::new(),
        tenant_id: tenant_id.to_string(),
    };
    crate::connectors::Connectors::build(settings, &context).map_err(|problems| {
        for problem in &problems {
            eprintln!("pimgate: {problem}");
        }
        ExitCode::from(2)
    })
}

/// With Graph configured, the application permissions the loaded rules need, so an operator can
/// compare them with the app registration. Offline on purpose: `validate` runs in CI with dummy
/// secrets, and what Entra actually granted is checked by the running service (start-up log,
/// `/readyz`, `pimgate_upstream_permission_missing`).
fn print_permissions_needed(rules: &rules::RuleSet, connectors: &crate::connectors::Connectors) {
    if connectors.graph.is_none() {
        return;
    }
    let report = crate::http::health::PermissionReport::new(
        connectors,
        &crate::http::health::permissions_needed(rules),
    );
    let needed = report.graph.unwrap_or_default();
    if needed.is_empty() {
        println!(
            "connectors.graph: the rules need no Microsoft Graph application permission (the ITSM and on-call checks' requester e-mail lookup needs `User.Read.All`)"
        );
        return;
    }
    println!(
        "connectors.graph: the rules need these Microsoft Graph application permissions (grant them to the app registration with admin consent; the running service reports what Entra granted in /readyz):"
    );
    for (permission, (needed_for, _)) in needed {
        println!("  {permission}: {}", needed_for.join("; "));
    }
}

/// Exit 0 after a shutdown by signal (graceful, or forced by a second signal): the orchestrator asked
/// for it, so it is not a failure. 1 if the service cannot start or the server fails, 2 on bad settings.
async fn serve(config: Option<&Path>) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    crate::telemetry::init(&settings.log, &settings.tracing);
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("pimgate: {error:#}");
            return ExitCode::from(1);
        }
    };
    let stopped = application.run_until_stopped().await;
    crate::telemetry::shutdown().await;
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pimgate: server stopped: {error}");
            ExitCode::from(1)
        }
    }
}

fn validate(path: &Path, connectors: &std::sync::Arc<crate::connectors::Connectors>) -> ExitCode {
    match rules::load_with(path, connectors) {
        Ok(rules) => {
            for warning in &rules.warnings {
                println!("{}", warning);
            }
            println!(
                "{}: {} policies, revision {}, {} warning(s), no errors",
                path.display(),
                rules.policies.len(),
                rules.revision,
                rules.warnings.len()
            );
            print_permissions_needed(&rules, connectors);
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                println!("{}", problem);
            }
            let errors = problems.iter().filter(|problem| problem.is_error()).count();
            println!(
                "{}: {errors} error(s), {} warning(s)",
                path.display(),
                problems.len() - errors
            );
            ExitCode::from(1)
        }
    }
}

/// `rules validate --format json`: `{"path", "ok", "errors", "warnings", "diagnostics": [...]}`, each
/// diagnostic with the stable fields of [`crate::vocabulary::diagnostic::Diagnostic`]. Exit 1 on
/// any error, as the text form.
fn validate_json(
    path: &Path,
    connectors: &std::sync::Arc<crate::connectors::Connectors>,
) -> ExitCode {
    let (ok, diagnostics) = match rules::load_with(path, connectors) {
        Ok(rules) => (true, rules.warnings),
        Err(problems) => (false, problems),
    };
    let errors = diagnostics
        .iter()
        .filter(|problem| problem.is_error())
        .count();
    let document = serde_json::json!({
        "path": path,
        "ok": ok,
        "errors": errors,
        "warnings": diagnostics.len() - errors,
        "diagnostics": diagnostics,
    });
    match serde_json::to_string_pretty(&document) {
        Ok(text) => println!("{text}"),
        Err(error) => {
            eprintln!("pimgate: {error}");
            return ExitCode::from(2);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `pimgate roles`: the catalog as a table, JSON or the Markdown of `rules/CATALOG.md`.
fn roles(tier: Option<crate::rules::catalog::Tier>, json: bool, markdown: bool) -> ExitCode {
    use crate::workbench::roles;
    if markdown {
        print!("{}", roles::markdown());
        return ExitCode::SUCCESS;
    }
    let selected = roles::roles(tier);
    if json {
        match serde_json::to_string_pretty(&selected) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("pimgate: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", roles::table(&selected));
    }
    ExitCode::SUCCESS
}

/// `rules backtest`: the connectors are the config's, but a replaying fact book answers every
/// upstream question, so nothing is called.
async fn backtest(
    audit: &Path,
    path: &Path,
    connectors: &std::sync::Arc<crate::connectors::Connectors>,
    json: bool,
) -> ExitCode {
    let rules = match rules::load_with(path, connectors) {
        Ok(rules) => rules,
        Err(problems) => {
            for problem in &problems {
                eprintln!("pimgate: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let input: Box<dyn std::io::BufRead> = if audit == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(audit) {
            Ok(file) => Box::new(std::io::BufReader::new(file)),
            Err(error) => {
                eprintln!("pimgate: cannot read `{}`: {error}", audit.display());
                return ExitCode::from(2);
            }
        }
    };
    let report = match crate::workbench::backtest::run(&rules, input).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("pimgate: backtest: {error}");
            return ExitCode::from(2);
        }
    };
    if json {
        for change in &report.changed {
            match serde_json::to_string(change) {
                Ok(line) => println!("{line}"),
                Err(error) => eprintln!("pimgate: {error}"),
            }
        }
        eprintln!("{}", report.summary());
    } else {
        print!("{}", report.render());
    }
    ExitCode::SUCCESS
}

/// Exit 0 when every case that ran passed, 1 on a failure or a problem, 2 when the JUnit report
/// cannot be written.
async fn test(
    path: &Path,
    connectors: &std::sync::Arc<crate::connectors::Connectors>,
    options: &crate::workbench::testing::TestOptions,
    junit: Option<&Path>,
) -> ExitCode {
    match crate::workbench::testing::run_tests_filtered(path, connectors, options).await {
        Ok(report) => {
            println!("{report}");
            if let Some(junit) = junit {
                let xml = crate::workbench::testing::junit::to_junit_xml(&report);
                if let Err(error) = std::fs::write(junit, xml) {
                    eprintln!(
                        "pimgate: cannot write the JUnit report `{}`: {error}",
                        junit.display()
                    );
                    return ExitCode::from(2);
                }
            }
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(problems) => {
            for problem in &problems {
                println!("{}", problem);
            }
            println!("the rules or their tests do not load; fix the problems above");
            ExitCode::from(1)
        }
    }
}

async fn evaluate(
    request_file: &Path,
    config: Option<&Path>,
    offline: bool,
    now: Option<DateTime<Utc>>,
    json: bool,
    stage: payload::Stage,
) -> ExitCode {
    let settings = match config {
        Some(config) => match load_settings(Some(config)) {
            Ok(settings) => Some(settings),
            Err(code) => return code,
        },
        None => None,
    };
    let (rules_path, deadline_ms) = match &settings {
        Some(settings) => (settings.rules.path.clone(), settings.server.deadline_ms),
        None => (
            PathBuf::from("rules"),
            crate::settings::ServerSettings::default().deadline_ms,
        ),
    };
    let body = match std::fs::read(request_file) {
        Ok(body) => body,
        Err(error) => {
            eprintln!("pimgate: cannot read `{}`: {error}", request_file.display());
            return ExitCode::from(2);
        }
    };
    let request = match payload::decode(&body) {
        Ok(request) => request,
        Err(error) => {
            eprintln!(
                "pimgate: `{}` is not a valid PIM request: {error}",
                request_file.display()
            );
            return ExitCode::from(2);
        }
    };
    // Offline: only the connectors that read local files are built (the HR file, the on-call
    // roster); the checks of every other connector report "not evaluated", and the report names them.
    let (connectors, local_sources) = match (offline, &settings) {
        (false, Some(settings)) => {
            match build_connectors(&settings.connectors, &settings.auth.tenant_id) {
                Ok(connectors) => (connectors, Vec::new()),
                Err(code) => return code,
            }
        }
        (true, Some(settings)) => {
            let local = crate::connectors::ConnectorsSettings {
                hr_file: settings.connectors.hr_file.clone(),
                oncall_file: settings.connectors.oncall_file.clone(),
                ..Default::default()
            };
            let mut sources = Vec::new();
            if local.hr_file.is_some() {
                sources.push("hr_file");
            }
            if local.oncall_file.is_some() {
                sources.push("oncall_file");
            }
            match build_connectors(&local, &settings.auth.tenant_id) {
                Ok(connectors) => (connectors, sources),
                Err(code) => return code,
            }
        }
        (_, None) => (crate::connectors::Connectors::none(), Vec::new()),
    };
    let rules = match rules::load_with(&rules_path, &connectors) {
        Ok(rules) => rules,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{}", problem);
            }
            return ExitCode::from(1);
        }
    };
    let now = now.unwrap_or_else(Utc::now);
    let budget = Duration::from_millis(deadline_ms);
    let mut decision = decision::evaluate_at_stage(&rules, &request, stage, now, budget).await;
    // The explanation names every policy passed over, not only those the index could not rule out.
    decision.skipped_policies = rules.select_explained(&request, stage, now).into_skipped();
    let offline = offline.then(|| explain::offline_report(&rules, &decision, local_sources));
    if json {
        // `decision` carries the audit record's field names (`evaluationId`, `shadowDecisions`, ...).
        let document = serde_json::json!({
            "request": request,
            "decision": explain::decision_json(&decision, &request),
            "offline": offline,
            "response": {
                "evaluationId": decision.evaluation_id.to_string(),
                "evaluationOutcome": decision.outcome.as_str(),
                "reason": decision.reasons,
            },
        });
        match serde_json::to_string_pretty(&document) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("pimgate: {error}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!(
            "{}",
            explain::explain_with(&decision, &request, offline.as_ref())
        );
    }
    ExitCode::SUCCESS
}
