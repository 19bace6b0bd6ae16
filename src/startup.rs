//! Wires settings, rules, token verification, audit and routes into a running server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::connectors::{BuildContext, Connectors};
use crate::http::state::AppState;
use crate::rules::{self, RuleProblem, Severity};
use crate::settings::Settings;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Loads the rules (refusing to start on any error), binds the listener and starts fetching keys.
    /// The server answers `/healthz` at once and `/readyz` once the signing keys are in.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("pimgate/", env!("CARGO_PKG_VERSION")))
            // A redirect could lead a key fetch somewhere we did not vet.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let connectors = Connectors::build(
            &settings.connectors,
            &BuildContext {
                http: http.clone(),
                tenant_id: settings.auth.tenant_id.clone(),
            },
        )
        .map_err(|problems| {
            let lines: Vec<String> = problems
                .iter()
                .map(|problem| format!("  - {problem}"))
                .collect();
            anyhow::anyhow!("the connectors cannot be built:\n{}", lines.join("\n"))
        })?;
        let rules = rules::load_with(&settings.rules.path, &connectors).map_err(|problems| {
            anyhow::anyhow!(
                "the rules in `{}` have {} problem(s):\n{}",
                settings.rules.path.display(),
                problems
                    .iter()
                    .filter(|p| p.severity == Severity::Error)
                    .count(),
                format_problems(&problems)
            )
        })?;
        for warning in &rules.warnings {
            tracing::warn!(problem = %format_problem(warning), "rules warning");
        }
        tracing::info!(
            revision = %rules.revision,
            policies = rules.policies.len(),
            path = %settings.rules.path.display(),
            "rules loaded"
        );
        if settings.auth.dev_mode {
            tracing::warn!(
                "development mode is on: tokens from the built-in development issuer are trusted (loopback only)"
            );
        }
        let authenticator = Authenticator::new(&settings.auth, http)
            .map_err(|error| anyhow::anyhow!("auth settings are unusable: {error}"))?;
        let audit = AuditLog::new(&settings.audit)?;
        let listen = settings.listen_address()?;
        let listener =
            TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        let port = listener.local_addr()?.port();
        let workers = settings.server.workers;
        let max_body = settings.server.max_body_bytes;
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState::new(
            Arc::clone(&settings),
            Arc::clone(&authenticator),
            rules,
            audit,
        ));
        let refresher = authenticator.spawn_refresher();
        crate::http::health::handle();

        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(middleware::from_fn(crate::http::request_id::middleware))
                .configure(crate::http::routes)
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server.run();
        tracing::info!(%listen, port, "pimgate listening");
        Ok(Application {
            port,
            server,
            state,
            refresher,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.refresher.abort();
        result
    }
}

pub fn format_problem(problem: &RuleProblem) -> String {
    let location = match (problem.line, problem.column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", problem.file.display()),
        (Some(line), None) => format!("{}:{line}", problem.file.display()),
        _ => problem.file.display().to_string(),
    };
    let severity = match problem.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!(
        "{location}: {severity}: `{}`: {}. Fix: {}",
        problem.key, problem.message, problem.fix
    )
}

pub fn format_problems(problems: &[RuleProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  {}\n", format_problem(problem)))
        .collect()
}
