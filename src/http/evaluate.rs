//! `POST /v1/evaluate` and `POST /v1/evaluate/post-approval`: the PIM custom-extension endpoints,
//! one per stage (PIM does not say in the body which stage calls; each stage's extension is
//! registered with its own `targetUrl`). Both run the same code with their [`Stage`].
//!
//! Order matters: readiness, then the token (nothing of an unauthenticated request is read), then
//! content type and size, then the payload, then the decision under the deadline.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::Utc;
use futures::StreamExt;
use futures::future::Either;

use super::answer;
use super::decision_metrics;
use super::error::ApiError;
use super::recent::{RecentDecision, RequestSummary};
use super::redelivery::{Delivery, Redelivery};
use super::replay::{Answer, ReplayCache};
use super::request_id::RequestId;
use super::state::AppState;
use crate::audit::{CallerSummary, Served};
use crate::connectors::facts::{self, FactBook};
use crate::decision::{self, Decision, Outcome};
use crate::payload::{self, EvaluationKey, Stage};
use crate::settings::TokenVersion;

/// Time kept back from the deadline for serializing and writing the answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

/// `POST /v1/evaluate`: PIM's pre-approval callback.
pub async fn pre_approval(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    evaluate(Stage::PreApproval, request, body, state).await
}

/// `POST /v1/evaluate/post-approval`: PIM's post-approval callback (after a human approved).
pub async fn post_approval(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    evaluate(Stage::PostApproval, request, body, state).await
}

#[tracing::instrument(skip_all, fields(stage = stage.name(), evaluation_id, outcome))]
async fn evaluate(
    stage: Stage,
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let deadline = Duration::from_millis(state.settings.server.deadline_ms);
    if let Some(why) = state.not_ready_reason() {
        return Err(ApiError::NotReady(why));
    }

    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| visible_text(value.as_bytes()).unwrap_or("\u{FFFD}"));
    let verified = match tokio::time::timeout(
        deadline,
        state.authenticator.verify_header(authorization),
    )
    .await
    {
        Ok(Ok(verified)) => verified,
        Ok(Err(error)) if !error.is_token_rejection() => {
            // We cannot judge the token (keys unreachable): say so instead of blaming the caller.
            tracing::warn!(reason = error.reason_code(), %error, "token could not be verified");
            return Err(ApiError::NotReady("the signing keys are unavailable"));
        }
        Ok(Err(error)) => {
            metrics::counter!("pimgate_token_rejections_total", "reason" => error.reason_code())
                .increment(1);
            tracing::warn!(reason = error.reason_code(), %error, "bearer token rejected");
            return Err(ApiError::Unauthorized(error));
        }
        Err(_) => {
            return Err(ApiError::NotReady(
                "the signing keys could not be refreshed in time",
            ));
        }
    };

    check_content_type(&request)?;
    let limit = state.settings.server.max_body_bytes;
    let body = read_body(
        &request,
        body,
        limit,
        deadline.saturating_sub(started.elapsed()),
    )
    .await?;

    let rules = state.rules();
    // A copy of a delivery already retried once is known by its bytes: no decoding, no key to
    // derive (`http::redelivery`). Anything else is decoded and judged on its fields.
    let delivery = Delivery {
        stage,
        rules_revision: &rules.revision,
        caller_app_id: &verified.caller_app_id,
        body: &body,
    };
    let known = state.redeliveries.get(&delivery);
    let decoded;
    let (activation, evaluation_key, key) = match &known {
        Some(known) => (&*known.activation, known.evaluation_key, known.replay_key),
        None => {
            decoded = payload::decode(&body).inspect_err(|error| {
                tracing::info!(field = error.field().unwrap_or(""), %error, "activation request rejected");
            })?;
            let evaluation_key = EvaluationKey::derive(stage, &rules.revision, &decoded);
            let key = ReplayCache::key(&evaluation_key, &verified.caller_app_id);
            (&decoded, evaluation_key, key)
        }
    };
    let remaining = deadline.saturating_sub(started.elapsed());
    let budget = remaining.saturating_sub(ANSWER_MARGIN.min(remaining / 10));
    // The fact book keeps what the upstreams answered, for the audit record (`rules backtest`).
    // With the audit log off nobody reads it: the evaluation then runs without one, which asks
    // upstream exactly as usual and keeps nothing (`connectors::facts`).
    let book = state.audit.is_on().then(FactBook::recording);
    // Built only if the replay cache has no answer (`ReplayCache::get_or_evaluate`).
    let evaluate = || {
        let evaluation = decision::evaluate_keyed(
            &rules,
            activation,
            stage,
            &evaluation_key,
            Utc::now(),
            budget,
        );
        match &book {
            Some(book) => Either::Left(facts::scope(Arc::clone(book), evaluation)),
            None => Either::Right(evaluation),
        }
    };
    let Answer { decision, replay } =
        match tokio::time::timeout(remaining, state.replays.get_or_evaluate(key, evaluate)).await {
            Ok(answer) => answer,
            Err(_) => Answer {
                decision: Arc::new(deadline_decision(
                    stage,
                    &evaluation_key,
                    &rules.revision,
                    started,
                )),
                replay: false,
            },
        };
    if replay && known.is_none() {
        // The second sighting of these bytes: the next copy need not decode them.
        state.redeliveries.remember(
            &delivery,
            Redelivery {
                activation: Arc::new(activation.clone()),
                evaluation_key,
                replay_key: key,
            },
        );
    }

    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let console_on = state.recent.capacity() > 0;
    // A replay repeats an answer already notified.
    let notifier = request
        .app_data::<web::Data<crate::notify::Notifier>>()
        .filter(|notifier| !replay && !notifier.is_empty());
    // Masked once, for the audit record, the console and the notifications alike (hashing is a
    // sha256 each time).
    let justification = if state.audit.is_on() || console_on || notifier.is_some() {
        state
            .audit
            .masked_justification(activation.justification.as_deref())
    } else {
        None
    };
    if let Some(book) = &book {
        let facts = if replay {
            Vec::new()
        } else {
            book.take_facts()
        };
        // Borrowed from the request's extensions (set by the request-id middleware), not copied.
        let extensions = request.extensions();
        let http_request_id = extensions.get::<RequestId>().map_or("", |id| id.0.as_str());
        state.audit.record_served(
            &decision,
            activation,
            Served {
                caller: &CallerSummary {
                    app_id: &verified.caller_app_id,
                    token_version: match verified.token_version {
                        TokenVersion::V1 => "v1",
                        TokenVersion::V2 => "v2",
                    },
                    dev: verified.dev,
                },
                http_request_id,
                replay,
                latency_ms,
                facts: &facts,
                justification: justification.as_deref(),
            },
        );
    }
    decision_metrics::record(&decision, replay, started.elapsed());
    // The notifier only queues, never waits.
    if let Some(notifier) = notifier {
        notifier.notify(&decision, activation, justification.as_deref());
    }
    if console_on {
        state.recent.push(RecentDecision {
            answered_at: Utc::now(),
            decision: Arc::clone(&decision),
            request: RequestSummary::of(activation, justification.map(Cow::into_owned)),
            replay,
            latency_ms,
        });
    }
    tracing::Span::current()
        .record(
            "evaluation_id",
            tracing::field::display(decision.evaluation_id),
        )
        .record("outcome", decision.outcome.as_str());
    tracing::info!(
        principal_id = %activation.principal_id,
        target = %activation.target_id(),
        action = activation.action.as_str(),
        policy = decision.policy.as_deref().unwrap_or("-"),
        replay,
        latency_ms,
        "decision answered"
    );
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(answer::body(&decision)?))
}

/// `HeaderValue::to_str`, for the `Authorization` header: the text when every byte is visible
/// ASCII or a tab, else `None`. The same rule, checked without an early exit so the compiler can
/// check many bytes at a time: a bearer token is a kilobyte or more, and `to_str`'s byte-by-byte
/// loop was 1 % of a request.
fn visible_text(bytes: &[u8]) -> Option<&str> {
    let visible = bytes.iter().fold(true, |all, &byte| {
        all & ((b' '..=b'~').contains(&byte) | (byte == b'\t'))
    });
    if visible {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

fn check_content_type(request: &HttpRequest) -> Result<(), ApiError> {
    let value = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    let charset_ok = value
        .split(';')
        .skip(1)
        .filter_map(|parameter| parameter.split_once('='))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .all(|(_, charset)| {
            charset
                .trim()
                .trim_matches('"')
                .eq_ignore_ascii_case("utf-8")
        });
    if is_json && charset_ok {
        Ok(())
    } else {
        let shown: String = value.chars().take(64).collect();
        Err(ApiError::UnsupportedMediaType(if shown.is_empty() {
            "(none)".into()
        } else {
            shown
        }))
    }
}

/// Reads at most `limit` bytes: a declared or actual larger body is refused without buffering it.
async fn read_body(
    request: &HttpRequest,
    mut body: web::Payload,
    limit: usize,
    time_left: Duration,
) -> Result<web::Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collect = async {
        let mut buffer =
            web::BytesMut::with_capacity(declared.map_or(4096, |length| length as usize));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| ApiError::BodyRead(error.to_string()))?;
            if buffer.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    };
    tokio::time::timeout(time_left, collect)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

/// The safety net behind the per-check timeouts: if evaluation itself overruns, deny in time, under
/// the id the request's evaluation would have had (it names the request, not the attempt).
fn deadline_decision(
    stage: Stage,
    key: &EvaluationKey,
    rules_revision: &str,
    started: Instant,
) -> Decision {
    Decision {
        evaluation_id: key.evaluation_id(),
        stage,
        outcome: Outcome::Denied,
        reasons: vec![
            "Denied: pimgate could not finish evaluating this request in time; this is not a finding against you, retry the activation in a minute.".into(),
        ],
        policy: None,
        skipped_policies: Vec::new(),
        checks: Vec::new(),
        shadow: Vec::new(),
        guards: Vec::new(),
        rules_revision: rules_revision.to_string(),
        evaluated_at: Utc::now(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The `Authorization` header's text is exactly what `HeaderValue::to_str` would give.
        #[test]
        fn header_text_is_what_to_str_gives(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(value) = header::HeaderValue::from_bytes(&bytes) {
                prop_assert_eq!(visible_text(value.as_bytes()), value.to_str().ok());
            }
        }
    }

    #[test]
    fn a_token_with_a_byte_outside_visible_ascii_has_no_text() {
        assert_eq!(visible_text(b"Bearer a.b.c"), Some("Bearer a.b.c"));
        assert_eq!(visible_text(b"Bearer\ta.b.c"), Some("Bearer\ta.b.c"));
        for bad in [&b"Bearer a.\x7fb"[..], b"Bearer \xc3\xa9", b"Bearer \x01"] {
            assert_eq!(visible_text(bad), None, "{bad:?}");
        }
    }
}
