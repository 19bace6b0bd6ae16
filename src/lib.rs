//! pimgate: the decision service Microsoft Entra PIM calls before a role activation.
//!
//! - `settings`: typed configuration, layered and validated at start-up.
//! - `auth`: OpenID discovery, JWKS cache, bearer-token validation, the development issuer.
//! - `payload`: PIM's three request shapes decoded into one `ActivationRequest`.
//! - `rules`: operator rule files parsed, validated and compiled; the built-in role catalog.
//! - `checks`: the `Check` trait and one file per check kind.
//! - `connectors`: upstream systems (ITSM, HR, on-call) over HTTP, with timeouts, retries, caches.
//! - `decision`: the decision value and the evaluation that runs a policy's checks.
//! - `audit`: one structured record per decision.
//! - `http`: routes, error → response mapping, health and metrics, the ring of recent decisions.
//! - `console`: the read-only operator pages on the admin listener (askama templates, SVG charts).
//! - `cli`: the `pimgate` command line.
//! - `notify`: Teams, Slack and signed-webhook notifications of selected decisions, off the decision path.
//! - `onboard`: registers the PIM custom extension and links it to roles' policies via Microsoft Graph.
//! - `startup`: wires the pieces into a running server.
//! - `reload`: hot reload of the rules on SIGHUP or a change of the rule files, validated first.
//! - `tracecontext`: W3C `traceparent` in from the caller, on to the upstream systems.
//! - `vocabulary`: words every layer speaks (`Outcome`, `SkippedPolicy`); depends on nothing.
//! - `workbench`: operator tools above the decision core (`rules test`).

pub mod audit;
pub mod auth;
pub mod checks;
pub mod cli;
pub mod connectors;
pub mod console;
pub mod decision;
pub mod http;
pub mod notify;
pub mod onboard;
pub mod payload;
pub mod reload;
pub mod rules;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod tracecontext;
pub mod vocabulary;
pub mod workbench;
