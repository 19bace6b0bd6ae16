//! Wires settings, rules, token verification, audit and routes into a running server, and owns its
//! lifecycle: optional TLS on the listener and the graceful shutdown.
//!
//! Two listeners: `server.listen` serves only what PIM calls, `admin.listen` the operator endpoints
//! (`/healthz`, `/readyz`, `/metrics`) on its own small server (one worker, its own connection cap),
//! so PIM traffic, or a flood on the public port, cannot starve the probes. `admin.listen = ""` puts
//! every route on `server.listen` instead.
//!
//! Shutdown is ours, not actix's (`disable_signals`): actix would close the listener the instant
//! SIGTERM arrives, before any load balancer has noticed. On the first SIGTERM/SIGINT (or
//! [`ShutdownHandle::shutdown`]) `/readyz` turns 503, the listener stays open for
//! `server.shutdown_delay_ms` so traffic drains away, then it closes and requests in flight get
//! `server.shutdown_grace_seconds` to finish; queued notifications are flushed within the same grace
//! period, and the audit sink is flushed last. A second signal stops at
//! once.
//!
//! SIGHUP reloads the rules (see [`crate::reload`]) and never stops the server; so does a change of
//! the rule files every `rules.reload_interval_seconds`. The signal handlers are installed in
//! [`Application::build`], before the port is announced, so a SIGHUP sent as soon as the service
//! listens reloads instead of killing the process (SIGHUP's default action).

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::{ConnectionType, KeepAlive};
use actix_web::middleware::Next;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::connectors::{BuildContext, Connectors};
use crate::http::admin_access::AdminToken;
use crate::http::state::AppState;
use crate::reload::Reloader;
use crate::rules;
use crate::settings::{Settings, TlsSettings};
use crate::vocabulary::diagnostic::format_problems;

pub struct Application {
    port: u16,
    server: Server,
    admin: Option<AdminServer>,
    state: web::Data<AppState>,
    refresher: tokio::task::JoinHandle<()>,
    shutdown: ShutdownHandle,
    reloader: Arc<Reloader>,
    reload_interval: Duration,
    signals: Signals,
    notifier: crate::notify::Notifier,
}

/// Stops a running [`Application`] the way a SIGTERM does. Cheap to clone; usable before
/// `run_until_stopped` is polled (the stop then takes effect as soon as the server runs).
#[derive(Clone)]
pub struct ShutdownHandle {
    state: web::Data<AppState>,
    server: ServerHandle,
    admin: Option<ServerHandle>,
    delay: Duration,
    grace: Duration,
    force: Arc<tokio::sync::Notify>,
    /// When the listener closed: the grace period, notifications' flush included, counts from it.
    closed_at: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

impl ShutdownHandle {
    /// Turns `/readyz` to 503, waits `server.shutdown_delay_ms`, closes the listener and waits for the
    /// requests in flight (at most `server.shutdown_grace_seconds`). Returns once the server has
    /// stopped; a call while a shutdown is already under way returns at once.
    pub async fn shutdown(&self) {
        if !self.state.begin_shutdown() {
            return;
        }
        tracing::info!(
            delay_ms = self.delay.as_millis() as u64,
            grace_seconds = self.grace.as_secs(),
            "shutting down: /readyz answers 503 from now on"
        );
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        tracing::info!("no longer accepting connections; finishing the requests in flight");
        let _ = self.closed_at.set(tokio::time::Instant::now());
        // Public first: while its requests finish, the admin listener still answers `/healthz` 200
        // (and `/readyz` 503), so the orchestrator does not kill a pod that is draining properly.
        self.server.stop(true).await;
        if let Some(admin) = &self.admin {
            admin.stop(true).await;
        }
    }

    /// Ends `run_until_stopped` now, abandoning requests still in flight (a second signal).
    pub fn force(&self) {
        self.state.begin_shutdown();
        self.force.notify_one();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state.is_shutting_down()
    }
}

impl Application {
    /// Loads the rules (refusing to start on any error), binds the listener and starts fetching keys.
    /// The server answers `/healthz` at once and `/readyz` once the signing keys are in.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // First: parts built below register metric handles once (e.g. a notification target's
        // `dropped` counter), and a handle taken before the recorder exists counts nowhere.
        crate::http::health::handle();
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
                problems.iter().filter(|p| p.is_error()).count(),
                format_problems(&problems)
            )
        })?;
        for warning in &rules.warnings {
            tracing::warn!(problem = %warning, "rules warning");
        }
        tracing::info!(
            revision = %rules.revision,
            policies = rules.policies.len(),
            path = %settings.rules.path.display(),
            "rules loaded"
        );
        rules::record_metrics(&rules);
        if let Some(graph) = connectors.graph.clone() {
            let needs = crate::http::health::permissions_needed(&rules);
            let probe_connectors = Arc::clone(&connectors);
            tokio::spawn(async move {
                log_graph_permissions(&graph, &probe_connectors, &needs).await;
            });
        }
        if settings.auth.dev_mode {
            tracing::warn!(
                "development mode is on: tokens from the built-in development issuer are trusted (loopback only)"
            );
        }
        let notifier = crate::notify::Notifier::start(&settings.notify).map_err(|problems| {
            let lines: Vec<String> = problems
                .iter()
                .map(|problem| format!("  - {problem}"))
                .collect();
            anyhow::anyhow!(
                "the notification targets cannot be started:\n{}",
                lines.join("\n")
            )
        })?;
        let listen = settings.listen_address()?;
        // The authenticator is told the address it will be served on: development mode is refused
        // there for a non-loopback one, whatever `Settings::validate` saw.
        let authenticator = Authenticator::new(&settings.auth, http, &[listen])
            .map_err(|error| anyhow::anyhow!("auth settings are unusable: {error}"))?;
        let audit = AuditLog::new(&settings.audit)?;
        let tls = settings.server.tls.as_ref().map(tls_config).transpose()?;
        let admin_listen = settings.admin_address()?;
        let workers = settings.server.workers;
        let limits = settings.server.clone();
        let max_body = settings.server.max_body_bytes;
        let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
        let delay = Duration::from_millis(settings.server.shutdown_delay_ms);
        let reload_interval = Duration::from_secs(settings.rules.reload_interval_seconds);
        let rules_path = settings.rules.path.clone();
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState::new(
            Arc::clone(&settings),
            Arc::clone(&authenticator),
            rules,
            audit,
        ));
        let refresher = authenticator.spawn_refresher();
        // `/readyz` reports the permissions the connectors' credentials lack.
        let connectors_data = web::Data::from(Arc::clone(&connectors));
        let reloader = Reloader::new(state.clone(), connectors, rules_path);
        let signals = Signals::register();

        let app_state = state.clone();
        let notifier_data = web::Data::new(notifier.clone());
        let admin_connectors = connectors_data.clone();
        let separate_admin = admin_listen.is_some();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(connectors_data.clone())
                .app_data(notifier_data.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(middleware::from_fn(close_connections_when_draining))
                .wrap(middleware::from_fn(crate::http::request_id::middleware))
                .configure(if separate_admin {
                    crate::http::decision_routes
                } else {
                    crate::http::routes
                })
        })
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        // Slow or idle clients are closed on time and open connections per worker are capped, so
        // they cannot starve PIM. Set before binding: `backlog` applies to listeners bound later.
        .client_request_timeout(Duration::from_millis(limits.client_request_timeout_ms))
        .client_disconnect_timeout(Duration::from_millis(limits.client_disconnect_timeout_ms))
        .keep_alive(keep_alive(limits.keep_alive_seconds))
        .max_connections(limits.max_connections)
        .max_connection_rate(limits.max_connection_rate)
        .backlog(limits.backlog);
        let mut server = server;
        if workers > 0 {
            server = server.workers(workers);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Bound here rather than from a std listener: only actix's own bind applies `backlog`.
        server = match tls {
            Some(config) => server.bind_rustls_0_23(listen, config),
            None => server.bind(listen),
        }
        .with_context(|| format!("cannot listen on {listen}"))?;
        let port = server
            .addrs()
            .first()
            .map(std::net::SocketAddr::port)
            .with_context(|| format!("no listener bound on {listen}"))?;
        // Bound before the public listener starts, so a taken admin port stops the start-up.
        let admin = admin_listen
            .map(|address| {
                AdminServer::start(
                    address,
                    state.clone(),
                    admin_connectors.clone(),
                    &limits,
                    grace,
                )
            })
            .transpose()?;
        let server = server.run();
        let shutdown = ShutdownHandle {
            state: state.clone(),
            server: server.handle(),
            admin: admin.as_ref().map(|admin| admin.server.handle()),
            delay,
            grace,
            force: Arc::new(tokio::sync::Notify::new()),
            closed_at: Arc::new(std::sync::OnceLock::new()),
        };
        tracing::info!(%listen, port, scheme, "pimgate listening");
        Ok(Application {
            port,
            server,
            admin,
            state,
            refresher,
            shutdown,
            reloader,
            reload_interval,
            signals,
            notifier,
        })
    }

    /// Reloads the rules on demand, as SIGHUP does (tests, embedding).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
    }

    /// A handle that stops this application as SIGTERM would (tests, embedding).
    pub fn handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port (the one bound, when `admin.listen` asked for port 0); `None` when
    /// `admin.listen = ""`.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|admin| admin.port)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until a graceful shutdown (SIGTERM, SIGINT or [`ShutdownHandle::shutdown`]) has
    /// finished, then flushes the audit sink. `Ok` after a shutdown, forced or not.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            admin,
            state,
            refresher,
            shutdown,
            reloader,
            reload_interval,
            signals,
            notifier,
            ..
        } = self;
        let watcher = (!reload_interval.is_zero()).then(|| reloader.spawn_watcher(reload_interval));
        let signals = tokio::spawn(listen_for_signals(signals, shutdown.clone(), reloader));
        let upkeep = tokio::spawn(crate::http::health::metrics_upkeep());
        let admin_handle = admin.as_ref().map(|admin| admin.server.handle());
        // Both servers are polled together: an actix `Server` only serves while it is polled.
        let servers = async move {
            match admin {
                Some(admin) => {
                    let admin_handle = admin.server.handle();
                    // The public server only stops through a shutdown, which stops the admin one
                    // too; stop it here as well so no listener outlives `run_until_stopped`.
                    let public = async move {
                        let result = server.await;
                        admin_handle.stop(true).await;
                        result
                    };
                    let (public, admin) = tokio::join!(public, admin.server);
                    public.and(admin)
                }
                None => server.await,
            }
        };
        let mut forced = false;
        let result = tokio::select! {
            result = servers => result,
            () = shutdown.force.notified() => {
                tracing::warn!("stopping at once; requests still in flight are abandoned");
                forced = true;
                if let Some(admin) = admin_handle {
                    admin.stop(false).await;
                }
                Ok(())
            }
        };
        if !forced && !notifier.is_empty() {
            let closed_at = shutdown
                .closed_at
                .get()
                .copied()
                .unwrap_or_else(tokio::time::Instant::now);
            notifier.flush(closed_at + shutdown.grace).await;
        }
        signals.abort();
        upkeep.abort();
        refresher.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Err(error) = state.audit.flush() {
            tracing::error!(%error, "the audit sink could not be flushed");
        }
        tracing::info!("pimgate stopped");
        result
    }
}

/// The operator listener's own server. One worker and a small connection cap of its own: probes
/// and scrapes are a handful of requests a minute, and sharing nothing with the public server means
/// connections held open on `server.listen` never delay a probe.
struct AdminServer {
    port: u16,
    server: Server,
}

/// Connections the admin listener holds open at once (its single worker); probes, a scraper and an
/// operator's port-forward need a few.
const ADMIN_MAX_CONNECTIONS: usize = 64;

impl AdminServer {
    fn start(
        address: std::net::SocketAddr,
        state: web::Data<AppState>,
        connectors: web::Data<Connectors>,
        limits: &crate::settings::ServerSettings,
        grace: Duration,
    ) -> anyhow::Result<AdminServer> {
        let token = match &state.settings.admin.token_file {
            Some(path) => AdminToken::new(
                &crate::settings::read_admin_token(path)
                    .map_err(|message| anyhow::anyhow!("`admin.token_file`: {message}"))?,
            ),
            None => AdminToken::none(),
        };
        let token = web::Data::new(token);
        let console = state.settings.admin.console;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(connectors.clone())
                .app_data(token.clone())
                .app_data(
                    web::FormConfig::default().limit(crate::console::pages::MAX_DRY_RUN_BYTES),
                )
                .wrap(middleware::from_fn(crate::http::admin_access::middleware))
                .wrap(middleware::from_fn(close_connections_when_draining))
                .wrap(middleware::from_fn(crate::http::request_id::middleware))
                .configure(crate::http::operator_routes)
                .configure(|config| {
                    if console {
                        crate::console::routes(config);
                    }
                })
        })
        .disable_signals()
        .workers(1)
        .shutdown_timeout(grace.as_secs())
        .client_request_timeout(Duration::from_millis(limits.client_request_timeout_ms))
        .client_disconnect_timeout(Duration::from_millis(limits.client_disconnect_timeout_ms))
        .keep_alive(keep_alive(limits.keep_alive_seconds))
        .max_connections(ADMIN_MAX_CONNECTIONS)
        .backlog(ADMIN_MAX_CONNECTIONS as u32)
        .bind(address)
        .with_context(|| format!("cannot listen on {address} (`admin.listen`)"))?;
        let port = server
            .addrs()
            .first()
            .map(std::net::SocketAddr::port)
            .with_context(|| format!("no admin listener bound on {address}"))?;
        tracing::info!(admin_listen = %address, admin_port = port, "operator endpoints (/healthz, /readyz, /metrics, the console at /) served on the admin listener");
        Ok(AdminServer {
            port,
            server: server.run(),
        })
    }
}

/// How long the start-up check of Graph's grants may take; it runs beside serving, never before.
const GRAPH_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches a Graph token once at start-up and logs what the loaded rules need that it was not
/// granted, naming the permission to grant, so the operator hears it before a requester is told
/// "HR data could not be checked". The result also feeds `/readyz`.
async fn log_graph_permissions(
    graph: &crate::connectors::graph::Graph,
    connectors: &Connectors,
    needs: &[crate::connectors::PermissionNeed],
) {
    let deadline = tokio::time::Instant::now() + GRAPH_PROBE_TIMEOUT;
    if let Err(error) = graph.check_grants(deadline).await {
        tracing::warn!(
            connector = "graph",
            detail = %error.detail(),
            "cannot fetch a Microsoft Graph token at start-up to check its permissions; checks that need Graph are not evaluated until it works"
        );
        return;
    }
    let report = crate::http::health::PermissionReport::new(connectors, needs);
    for sentence in report.degraded() {
        tracing::warn!(connector = "graph", "{sentence}");
    }
    let missing = report.missing();
    let verifiable = matches!(
        report.graph_grants,
        Some(crate::connectors::graph::Grants::Roles(_))
    );
    if missing.is_empty() && verifiable {
        tracing::info!(
            connector = "graph",
            needed = %needs.iter().map(|need| need.permission.name).collect::<Vec<_>>().join(", "),
            "the Microsoft Graph token carries the permissions the rules need"
        );
    }
    for (permission, _) in missing {
        tracing::warn!(
            connector = "graph",
            permission,
            "grant `{permission}` to pimgate's app registration: API permissions > Add a permission > Microsoft Graph > Application permissions, then Grant admin consent"
        );
    }
}

/// `server.keep_alive_seconds`: 0 turns keep-alive off.
fn keep_alive(seconds: u64) -> KeepAlive {
    match seconds {
        0 => KeepAlive::Disabled,
        seconds => KeepAlive::Timeout(Duration::from_secs(seconds)),
    }
}

/// Once shutdown has begun, every answer carries `Connection: close` and its connection closes
/// after it. During `server.shutdown_delay_ms` the listener is still open, so without this a
/// client would keep reusing a keep-alive connection right up to the moment actix closes it, and a
/// request sent on it in that instant is lost unanswered; a load balancer does not retry a lost
/// POST. Closing at a response boundary tells the client, race-free, not to reuse the connection.
async fn close_connections_when_draining(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let mut response = next.call(request).await?;
    if state.is_some_and(|state| state.is_shutting_down()) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// First SIGTERM/SIGINT: graceful shutdown; second: stop at once (an operator pressing Ctrl-C twice).
/// SIGHUP: reload the rules, in its own task so a slow reload never delays a shutdown signal.
async fn listen_for_signals(mut signals: Signals, handle: ShutdownHandle, reloader: Arc<Reloader>) {
    let mut received = 0_u32;
    loop {
        let name = match signals.next().await {
            None => return,
            Some(SignalEvent::Reload) => {
                tracing::info!(signal = "SIGHUP", "reloading the rules");
                let reloader = Arc::clone(&reloader);
                tokio::spawn(async move { reloader.reload("SIGHUP").await });
                continue;
            }
            Some(SignalEvent::Stop(name)) => name,
        };
        received += 1;
        if received == 1 {
            tracing::info!(signal = name, "shutdown signal received");
            let handle = handle.clone();
            tokio::spawn(async move { handle.shutdown().await });
        } else {
            tracing::warn!(signal = name, "second shutdown signal received");
            handle.force();
            return;
        }
    }
}

enum SignalEvent {
    Stop(&'static str),
    Reload,
}

/// The process signals pimgate acts on, listened for from [`Application::build`] on.
struct Signals {
    #[cfg(unix)]
    streams: Option<UnixSignals>,
}

#[cfg(unix)]
struct UnixSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    /// `None` when SIGHUP cannot be listened for: reloads then come from file changes only.
    hangup: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    /// Failures are logged once; the server still runs, without graceful shutdown or SIGHUP reload.
    fn register() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => {
                let hangup = signal(SignalKind::hangup())
                    .inspect_err(|error| {
                        tracing::error!(%error, "cannot listen for SIGHUP; rules reload on file changes only");
                    })
                    .ok();
                Some(UnixSignals {
                    terminate,
                    interrupt,
                    hangup,
                })
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGTERM/SIGINT; shutdown will not be graceful");
                None
            }
        };
        Signals { streams }
    }

    /// The next signal; `None` once none can arrive any more.
    async fn next(&mut self) -> Option<SignalEvent> {
        let streams = self.streams.as_mut()?;
        let hangup = async {
            match streams.hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(()) = streams.terminate.recv() => Some(SignalEvent::Stop("SIGTERM")),
            Some(()) = streams.interrupt.recv() => Some(SignalEvent::Stop("SIGINT")),
            Some(()) = hangup => Some(SignalEvent::Reload),
            else => None,
        }
    }
}

#[cfg(not(unix))]
impl Signals {
    fn register() -> Signals {
        Signals {}
    }

    async fn next(&mut self) -> Option<SignalEvent> {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Some(SignalEvent::Stop("Ctrl-C")),
            Err(error) => {
                tracing::error!(%error, "cannot listen for Ctrl-C; shutdown will not be graceful");
                None
            }
        }
    }
}

/// Reads and checks the PEM files at start-up, so a wrong path or a key that does not match the
/// certificate stops the service with the key to fix instead of failing every handshake.
fn tls_config(tls: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_path = tls.cert_file.display();
    let key_path = tls.key_file.display();
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            anyhow::anyhow!(
                "`server.tls.cert_file`: `{cert_path}` cannot be read as PEM ({error}); fix: point it at the PEM certificate chain (`-----BEGIN CERTIFICATE-----`)"
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "`server.tls.cert_file`: `{cert_path}` holds no certificate; fix: point it at the PEM certificate chain (`-----BEGIN CERTIFICATE-----`), not the key"
        );
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|error| {
        anyhow::anyhow!(
            "`server.tls.key_file`: `{key_path}` holds no usable private key ({error}); fix: point it at the unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)"
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            anyhow::anyhow!(
                "`server.tls.key_file`: `{key_path}` does not fit the certificate in `{cert_path}` ({error}); fix: use the key the certificate was issued for"
            )
        })
}
