//! `[connectors.http.NAME]`: an organisation's own compliance API, asked by the `http` check. pimgate
//! POSTs the activation request document (`checks::request_document`) and reads a verdict
//! `{"result": "pass" | "fail", "message": "...", "evidence": {...}}` ([`parse_verdict`]).
//!
//! Every request is signed so the receiver can tell it came from pimgate: `X-Pimgate-Timestamp`
//! (unix seconds) and `X-Pimgate-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the
//! connector's `signing_secret`. Authentication to the receiver is on top of that: a bearer secret,
//! an Entra app token for the receiver's audience (Graph's credentials), or a client certificate.
//!
//! A POST is not retried unless the operator declares the verdict `idempotent`; a verdict is cached
//! per request fingerprint and stage for `cache_ttl_seconds` (0: never). Anything but a well-formed
//! verdict is an [`UpstreamError`]: the check is then not evaluated, never passed.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::BuildContext;
use super::cache::{CacheSettings, TtlCache};
use super::graph::GraphSettings;
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::oauth::TokenSource;
use super::secrets::{Secret, SecretRef};
use crate::vocabulary::diagnostic::Diagnostic;
use crate::vocabulary::disclosure::Disclosure;
use crate::vocabulary::fetch_url::check_fetch_url;

/// The section name: `[connectors.http.NAME]`.
pub const CONNECTOR: &str = "http";
/// Header carrying the unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Pimgate-Timestamp";
/// Header carrying `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Pimgate-Signature";
/// The longest `message` of a verdict a requester is shown, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// The largest `evidence` object kept (serialised bytes); a larger one makes the verdict unreadable.
pub const MAX_EVIDENCE_BYTES: usize = 16 * 1024;

/// `[connectors.http.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceApiSettings {
    /// Where to POST: https (plain http only to loopback).
    pub url: Option<String>,
    pub timeout_ms: u64,
    /// How much of the justification the receiver gets.
    pub justification: Disclosure,
    /// Whether asking twice is harmless; only then are failed attempts retried.
    pub idempotent: bool,
    /// How long a verdict is reused for the same request and stage; 0 = never.
    pub cache_ttl_seconds: u64,
    /// The HMAC key of the signature header; required.
    pub signing_secret: Option<SecretRef>,
    /// `Authorization: Bearer <secret>`.
    pub bearer: Option<SecretRef>,
    /// An Entra client-credentials token for this audience, with `[connectors.graph]`'s credentials.
    pub entra: Option<EntraAuth>,
    /// A client certificate (PEM files).
    pub mtls: Option<MtlsFiles>,
    /// The CA certificates (PEM bundle) the receiver's certificate must chain to, for a receiver
    /// behind an internal CA. When given, only these are trusted for this connector (not the system
    /// roots): the receiver is known, so nothing else should be able to impersonate it.
    pub ca_file: Option<PathBuf>,
    /// Retries (only when `idempotent`).
    pub retry: RetrySettings,
    pub circuit: CircuitSettings,
}

impl Default for ComplianceApiSettings {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 2000,
            justification: Disclosure::Full,
            idempotent: false,
            cache_ttl_seconds: 0,
            signing_secret: None,
            bearer: None,
            entra: None,
            mtls: None,
            ca_file: None,
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
        }
    }
}

/// `entra = { audience = "api://..." }`: the receiver's app id URI (or client id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntraAuth {
    pub audience: String,
}

/// `mtls = { cert_file = "...", key_file = "..." }`: PEM certificate (chain) and its private key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// What the receiver said, once read and bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    /// The receiver's sentence: control characters out, at most [`MAX_MESSAGE_CHARS`].
    pub message: String,
    pub evidence: Map<String, Value>,
}

/// A verdict and when it was given (a cached one keeps its own time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub verdict: Verdict,
    pub given_at: DateTime<Utc>,
}

/// How pimgate authenticates to the receiver (beside the signature). `Debug` names the kind only.
enum Auth {
    None,
    Bearer(Secret),
    Entra(Box<TokenSource<()>>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(***)",
            Auth::Entra(_) => "Entra",
        })
    }
}

/// One configured receiver.
#[derive(Debug)]
pub struct ComplianceApi {
    pub name: String,
    pub disclosure: Disclosure,
    url: String,
    operation: String,
    upstream: Upstream,
    signing: Secret,
    auth: Auth,
    verdicts: Option<TtlCache<Answer>>,
}

impl ComplianceApi {
    /// Validates `[connectors.http.<name>]` (every problem at once) and resolves its secrets now.
    pub fn new(
        name: &str,
        settings: &ComplianceApiSettings,
        graph: Option<&GraphSettings>,
        context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let section = format!("{CONNECTOR}.{name}");
        let problem = |key: &str, message: String, fix: &str| {
            super::settings_problem(&section, key, message, fix)
        };
        let mut problems = Vec::new();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(problem(
                "",
                format!("`{name}` is not a usable connector name"),
                "name it with letters, digits, `-` and `_`, e.g. `[connectors.http.compliance]`",
            ));
        }
        let url = settings.url.as_deref().map(str::trim).unwrap_or_default();
        if url.is_empty() {
            problems.push(problem(
                "url",
                "is missing".into(),
                "set it to the receiver's https URL, e.g. `https://compliance.contoso.com/pimgate`",
            ));
        } else if let Err(message) = check_fetch_url(url) {
            problems.push(problem(
                "url",
                message,
                "use an https URL (plain http only to a loopback address)",
            ));
        }
        super::call_timeout(&section, settings.timeout_ms, &mut problems);
        if settings.cache_ttl_seconds > 3600 {
            problems.push(problem(
                "cache_ttl_seconds",
                format!("`{}` is longer than an hour", settings.cache_ttl_seconds),
                "use at most 3600 seconds (0 turns caching off)",
            ));
        }
        let signing = match &settings.signing_secret {
            None => {
                problems.push(problem(
                    "signing_secret",
                    "is missing: every request is signed so the receiver can tell it came from pimgate".into(),
                    "set `signing_secret = { env = \"PIMGATE_HTTP_SIGNING_SECRET\" }` and give the receiver the same secret",
                ));
                None
            }
            Some(reference) => super::secrets::required_secret(
                &section,
                "signing_secret",
                &Some(reference.clone()),
                &mut problems,
            ),
        };
        let ways = [
            settings.bearer.is_some(),
            settings.entra.is_some(),
            settings.mtls.is_some(),
        ];
        if ways.iter().filter(|given| **given).count() > 1 {
            problems.push(problem(
                "",
                "gives more than one of `bearer`, `entra`, `mtls`".into(),
                "keep the one the receiver checks",
            ));
        }
        let client = match own_client(settings) {
            Ok(Some(built)) => built,
            Ok(None) => context.http.clone(),
            Err(found) => {
                problems.extend(
                    found
                        .into_iter()
                        .map(|(key, message, fix)| problem(key, message, fix)),
                );
                context.http.clone()
            }
        };
        let mut auth = Auth::None;
        if let Some(reference) = &settings.bearer
            && let Some(secret) = super::secrets::required_secret(
                &section,
                "bearer",
                &Some(reference.clone()),
                &mut problems,
            )
        {
            auth = Auth::Bearer(secret);
        }
        let timeout = Duration::from_millis(settings.timeout_ms);
        if let Some(entra) = &settings.entra {
            let audience = entra.audience.trim().trim_end_matches("/.default");
            if audience.is_empty() {
                problems.push(problem(
                    "entra.audience",
                    "is empty".into(),
                    "set it to the receiver's application id URI, e.g. `api://contoso-compliance`",
                ));
            } else {
                match graph.and_then(|graph| {
                    super::graph::app_token_source(
                        graph,
                        context,
                        CONNECTOR,
                        format!("{audience}/.default"),
                        timeout,
                    )
                }) {
                    Some(source) => auth = Auth::Entra(Box::new(source)),
                    None => problems.push(problem(
                        "entra",
                        "needs `[connectors.graph]` with working credentials (its client id and secret, certificate or workload identity get the token)".into(),
                        "configure `[connectors.graph]`, or use `bearer` or `mtls`",
                    )),
                }
            }
        }
        let Some(signing) = signing else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let retry = if settings.idempotent {
            settings.retry
        } else {
            // A POST that changes something on the receiver must not be sent twice.
            RetrySettings {
                max_attempts: 1,
                ..settings.retry
            }
        };
        let verdicts = (settings.cache_ttl_seconds > 0).then(|| {
            TtlCache::with_name(
                "http_verdicts",
                CacheSettings {
                    ttl_seconds: settings.cache_ttl_seconds,
                    negative_ttl_seconds: 0,
                    capacity: 10_000,
                },
            )
        });
        let path = reqwest::Url::parse(url)
            .map(|parsed| parsed.path().to_string())
            .unwrap_or_default();
        Ok(Self {
            name: name.to_string(),
            disclosure: settings.justification,
            url: url.to_string(),
            operation: format!("POST {path}"),
            upstream: Upstream::with_settings(
                super::instance_name(CONNECTOR, name),
                client,
                timeout,
                retry,
                settings.circuit,
            ),
            signing,
            auth,
            verdicts,
        })
    }

    /// The receiver's verdict on `document` (the request document, serialised once here so the
    /// signature covers exactly the bytes sent). `cache_key` names the request and stage; a cached
    /// verdict is recorded as a cached call.
    pub async fn verdict(
        &self,
        document: &Value,
        cache_key: &str,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> (Result<Answer, UpstreamError>, Vec<UpstreamCall>) {
        let source = format!("http.{}", self.name);
        let fetch = async {
            let (answer, calls) = self
                .cached_verdict(document, cache_key, now, deadline)
                .await;
            (super::facts::Plain(answer), calls)
        };
        let (answer, calls) = super::facts::through(&source, cache_key, fetch).await;
        (answer.0, calls)
    }

    async fn cached_verdict(
        &self,
        document: &Value,
        cache_key: &str,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> (Result<Answer, UpstreamError>, Vec<UpstreamCall>) {
        let mut calls = Vec::new();
        let fetch = self.ask(document, now, deadline, &mut calls);
        let (result, cached) = match &self.verdicts {
            Some(cache) => cache.get_or_fetch(cache_key, fetch).await,
            None => (fetch.await, false),
        };
        if cached {
            calls.push(UpstreamCall::cached(CONNECTOR, &self.operation, &result));
        }
        let result = match result {
            Ok(Fetched::Found(answer)) => Ok(answer),
            // `ask` never answers "not found" (a 404 is an error), so this is unreachable in practice.
            Ok(Fetched::NotFound) => Err(UpstreamError::Malformed {
                connector: CONNECTOR,
            }),
            Err(error) => Err(error),
        };
        (result, calls)
    }

    async fn ask(
        &self,
        document: &Value,
        now: DateTime<Utc>,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<Answer>, UpstreamError> {
        let body = serde_json::to_vec(document).map_err(|_| UpstreamError::Malformed {
            connector: CONNECTOR,
        })?;
        let timestamp = Utc::now().timestamp().to_string();
        let signature = sign(self.signing.expose().as_bytes(), &timestamp, &body);
        let mut request = self
            .upstream
            .client()
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, format!("v1={signature}"))
            .body(body);
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(secret) => request = request.bearer_auth(secret.expose()),
            Auth::Entra(source) => {
                let token = source.token(deadline, calls).await?;
                request = request.bearer_auth(token.value.expose());
            }
        }
        let (result, call) = self
            .upstream
            .get_json::<Value>(request, &self.operation, deadline)
            .await;
        calls.push(call);
        match result? {
            Fetched::NotFound => {
                tracing::warn!(connector = %self.name, "compliance API answered 404");
                Err(UpstreamError::Status {
                    connector: CONNECTOR,
                    status: 404,
                })
            }
            Fetched::Found(value) => match parse_verdict(&value) {
                Ok(verdict) => Ok(Fetched::Found(Answer {
                    verdict,
                    given_at: now,
                })),
                Err(why) => {
                    tracing::warn!(connector = %self.name, why, "compliance API answer is not a verdict");
                    Err(UpstreamError::Malformed {
                        connector: CONNECTOR,
                    })
                }
            },
        }
    }
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`: what `X-Pimgate-Signature: v1=` carries.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    hex::encode(context.sign().as_ref())
}

/// The verdict in a receiver's JSON answer, or why it is not one. Strict, because anything read
/// wrongly could become a pass: `result` must be exactly `"pass"` or `"fail"`, `message` a string,
/// `evidence` (optional) an object of at most [`MAX_EVIDENCE_BYTES`]. Other fields are ignored, so a
/// receiver may add its own. Pure, so it can be fuzzed.
pub fn parse_verdict(answer: &Value) -> Result<Verdict, &'static str> {
    let object = answer
        .as_object()
        .ok_or("the answer is not a JSON object")?;
    let passed = match object.get("result").and_then(Value::as_str) {
        Some("pass") => true,
        Some("fail") => false,
        Some(_) => return Err("`result` is neither \"pass\" nor \"fail\""),
        None => return Err("`result` is missing or not a string"),
    };
    let message = object
        .get("message")
        .and_then(Value::as_str)
        .ok_or("`message` is missing or not a string")?;
    let evidence = match object.get("evidence") {
        None => Map::new(),
        Some(Value::Object(evidence)) => evidence.clone(),
        Some(_) => return Err("`evidence` is not an object"),
    };
    if serde_json::to_vec(&evidence).map_or(usize::MAX, |bytes| bytes.len()) > MAX_EVIDENCE_BYTES {
        return Err("`evidence` is larger than pimgate keeps");
    }
    Ok(Verdict {
        passed,
        message: clean_message(message),
        evidence,
    })
}

/// Control characters become spaces, runs of white space one, and the text is cut at
/// [`MAX_MESSAGE_CHARS`]: the receiver's sentence is shown to the requester, nothing else of it.
fn clean_message(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= MAX_MESSAGE_CHARS {
        return joined;
    }
    // The ellipsis counts: the requester sees at most MAX_MESSAGE_CHARS characters.
    let cut: String = joined.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    format!("{cut}…")
}

/// A problem with the TLS files: (key, message, fix).
type TlsProblem = (&'static str, String, &'static str);

const MTLS_FIX: &str = "give a PEM certificate and its unencrypted PEM private key";
const CA_FIX: &str =
    "give a PEM file with the CA certificate(s) that issued the receiver's certificate";

/// A client of this connector's own when it has TLS settings of its own (a client certificate, its
/// own CA); `None` shares pimgate's client. Every problem with the files is reported, not the first.
fn own_client(
    settings: &ComplianceApiSettings,
) -> Result<Option<reqwest::Client>, Vec<TlsProblem>> {
    if settings.mtls.is_none() && settings.ca_file.is_none() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("pimgate/", env!("CARGO_PKG_VERSION")))
        // As pimgate's shared client: a redirect could lead the request somewhere not vetted.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(files) = &settings.mtls {
        match identity(files) {
            Ok(identity) => builder = builder.identity(identity),
            Err(message) => problems.push(("mtls", message, MTLS_FIX)),
        }
    }
    if let Some(path) = &settings.ca_file {
        match roots(path) {
            Ok(certificates) => builder = builder.tls_certs_only(certificates),
            Err(message) => problems.push(("ca_file", message, CA_FIX)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match builder.build() {
        Ok(client) => Ok(Some(client)),
        Err(_) => Err(vec![(
            if settings.mtls.is_some() {
                "mtls"
            } else {
                "ca_file"
            },
            "the TLS files could not be used together".into(),
            MTLS_FIX,
        )]),
    }
}

/// The client identity from two PEM files (certificate chain, then key), read now.
fn identity(files: &MtlsFiles) -> Result<reqwest::Identity, String> {
    let mut pem = read(&files.cert_file)?;
    pem.push(b'\n');
    pem.extend(read(&files.key_file)?);
    reqwest::Identity::from_pem(&pem)
        .map_err(|_| "the certificate and key files are not a PEM certificate and key".to_string())
}

/// The trusted CA certificates of `ca_file`: at least one, all of them readable.
fn roots(path: &PathBuf) -> Result<Vec<reqwest::Certificate>, String> {
    let bundle = read(path)?;
    match reqwest::Certificate::from_pem_bundle(&bundle) {
        Ok(certificates) if !certificates.is_empty() => Ok(certificates),
        _ => Err(format!("`{}` holds no PEM certificate", path.display())),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_well_formed_pass_or_fail_is_a_verdict() {
        let pass = parse_verdict(&json!({"result": "pass", "message": "ok", "evidence": {"a": 1}}));
        assert!(pass.is_ok_and(|verdict| verdict.passed && verdict.evidence["a"] == 1));
        let fail = parse_verdict(&json!({"result": "fail", "message": "no training", "extra": 1}));
        assert!(fail.is_ok_and(|verdict| !verdict.passed));
        let refused = [
            json!({"result": "maybe", "message": "x"}),
            json!({"result": "PASS", "message": "x"}),
            json!({"result": true, "message": "x"}),
            json!({"message": "x"}),
            json!({"result": "pass"}),
            json!({"result": "pass", "message": 7}),
            json!({"result": "pass", "message": "x", "evidence": [1]}),
            json!({"result": "pass", "message": "x", "evidence": "all good"}),
            json!({"result": "pass", "message": "x", "evidence": {"blob": "x".repeat(MAX_EVIDENCE_BYTES)}}),
            json!(["pass"]),
            json!("pass"),
            json!(null),
        ];
        for answer in refused {
            assert!(parse_verdict(&answer).is_err(), "{answer}");
        }
    }

    #[test]
    fn the_receivers_message_is_cut_and_loses_control_characters() {
        let long = format!("line one\n\u{1b}[31mred\t{}", "x".repeat(1000));
        let verdict = parse_verdict(&json!({"result": "fail", "message": long})).unwrap();
        assert!(verdict.message.starts_with("line one [31mred x"));
        assert!(!verdict.message.chars().any(char::is_control));
        assert_eq!(verdict.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(verdict.message.ends_with('…'));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_as_pythons_hmac_computes_it() {
        // python3 -c "import hmac,hashlib; print(hmac.new(b'whsec-test', b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"whsec-test", "1700000000", br#"{"a":1}"#),
            "fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece"
        );
    }
}
