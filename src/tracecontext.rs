//! W3C trace context (`traceparent`, <https://www.w3.org/TR/trace-context/>): the trace a request
//! belongs to, so the caller's trace, pimgate's logs and the upstream systems' logs line up.
//!
//! The request-id middleware reads the caller's `traceparent` (or starts a new trace), and runs the
//! handler inside [`scope`]; the upstream client (`connectors::http`) reads [`current`] and sends a
//! child `traceparent` upstream. A task-local rather than a parameter: the context then reaches
//! every connector without threading it through the decision core, which stays free of I/O
//! concerns. It is visible to everything the handler awaits in its own task (the decision's checks
//! run there through `join_all`); a `tokio::spawn`ed task would not see it.
//!
//! Reading and writing the header is OpenTelemetry's own [`TraceContextPropagator`]; this module
//! adds only the task-local and a grammar check the propagator does not make (see
//! `is_version_00_shape`).
//!
//! With `tracing.endpoint` set, `telemetry` exports the request spans over OTLP in this same trace;
//! without it, this only correlates logs and upstream calls.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

const TRACEPARENT: &str = "traceparent";

/// `00-{32 hex}-{16 hex}-{2 hex}`.
const HEADER_LENGTH: usize = 55;

/// Where the three dashes of a version-00 header are.
const DASHES: [usize; 3] = [2, 35, 52];

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// One position in a trace: the trace, the span pimgate is in, and the caller's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The span of this hop: pimgate's own for the request, a fresh one per upstream call.
    pub span_id: [u8; 8],
    /// Bit 0 is `sampled`, kept as the caller sent it so its sampling decision carries through;
    /// the propagator clears the other bits, as the spec asks of a version-00 reader.
    pub flags: u8,
}

impl TraceContext {
    /// A `traceparent` header value, or `None` when it is not a valid version-00 header. Strict on
    /// purpose: a malformed or zero id would otherwise stitch unrelated requests into one trace.
    /// Future versions are refused too (the spec allows reading their prefix, but pimgate then
    /// starts its own trace, which is always safe).
    pub fn parse(header: &str) -> Option<Self> {
        if !is_version_00_shape(header) {
            return None;
        }
        let extracted =
            TraceContextPropagator::new().extract_with_context(&Context::new(), &OneHeader(header));
        let span = extracted.span();
        let context = span.span_context();
        // `is_valid` refuses the all-zero ids; `is_remote` tells an extracted context from the
        // empty one the propagator returns when it refuses the header.
        (context.is_valid() && context.is_remote()).then(|| Self::from_span_context(context))
    }

    /// A new trace, for a request that came without a (valid) `traceparent`. Not sampled: with export
    /// off pimgate records nothing for a tracing backend, and a set flag would claim it did (with
    /// export on, `telemetry::exported_trace` supplies the exported span's own, sampled, context).
    pub fn new_root() -> Self {
        let trace_id = (u128::from(random_nonzero_u64()) << 64) | u128::from(random_nonzero_u64());
        Self {
            trace_id: trace_id.to_be_bytes(),
            span_id: random_nonzero_u64().to_be_bytes(),
            flags: 0,
        }
    }

    /// The same trace one hop further: a new span whose parent is this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: random_nonzero_u64().to_be_bytes(),
            ..*self
        }
    }

    /// Writes the `traceparent` naming this span as the parent of the next hop into `headers`
    /// (through the propagator, so the format is OpenTelemetry's). No `tracestate`: pimgate keeps
    /// none, and an empty header would only be noise upstream.
    pub fn inject(&self, headers: &mut dyn Injector) {
        let context = Context::new().with_remote_span_context(self.to_span_context());
        TraceContextPropagator::new().inject_context(&context, &mut TraceparentOnly { headers });
    }

    /// The `traceparent` value naming this span as the parent of the next hop.
    pub fn to_header(&self) -> String {
        let mut header = OneSlot(String::new());
        self.inject(&mut header);
        header.0
    }

    /// The trace id as it appears in headers and logs.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }

    /// The OpenTelemetry form of this context, as a remote parent.
    pub fn to_span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }

    /// The context of an OpenTelemetry span (the caller's, or pimgate's own exported one).
    pub fn from_span_context(context: &SpanContext) -> Self {
        Self {
            trace_id: context.trace_id().to_bytes(),
            span_id: context.span_id().to_bytes(),
            flags: context.trace_flags().to_u8(),
        }
    }
}

/// Runs `future` with `context` as the [`current`] trace context.
pub async fn scope<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The trace context of the request being served, if any (none in the CLI or outside a request).
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|context| *context).ok()
}

/// Exactly `00-{32}-{16}-{2}` in lower-case hex (`HEXDIGLC`), checked before the propagator reads
/// the header. The propagator is more lenient in ways pimgate's tests pin as refusals: it reads any
/// version up to `fe` with a trailing suffix (`01-…`, `…-01-`), trims whitespace, and parses ids
/// and flags with `from_str_radix`, which takes a leading `+`, short ids (31 digits) and one-digit
/// flags. Each of those would let a malformed header join a trace, so they are refused here.
fn is_version_00_shape(header: &str) -> bool {
    header.len() == HEADER_LENGTH
        && header.starts_with("00-")
        && header.bytes().enumerate().all(|(index, byte)| {
            if DASHES.contains(&index) {
                byte == b'-'
            } else {
                byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
            }
        })
}

/// One header value seen as the propagator's carrier (the caller has already refused repeated
/// `traceparent`s, so one value is all there is to read).
struct OneHeader<'a>(&'a str);

impl Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        key.eq_ignore_ascii_case(TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Passes on `traceparent` only (see [`TraceContext::inject`]).
struct TraceparentOnly<'a> {
    headers: &'a mut dyn Injector,
}

impl Injector for TraceparentOnly<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.headers.set(key, value);
        }
    }
}

/// Catches the one `traceparent` value for [`TraceContext::to_header`].
struct OneSlot(String);

impl Injector for OneSlot {
    fn set(&mut self, _key: &str, value: String) {
        self.0 = value;
    }
}

/// SipHash under a fresh random key per call (std seeds `RandomState` from the OS): unpredictable
/// enough for ids that must be unique, not secret, without a random-number crate.
fn random_nonzero_u64() -> u64 {
    loop {
        let value = RandomState::new().hash_one(std::time::SystemTime::now());
        if value != 0 {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_parsed_and_written_back_unchanged() {
        let context = TraceContext::parse(VALID).unwrap();
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(context.flags, 1);
        assert_eq!(context.to_header(), VALID);
    }

    #[test]
    fn invalid_headers_are_refused() {
        let cases = [
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version 01",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "zero parent id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "upper-case trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "upper-case parent id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
                "upper-case flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "trace id too short",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b-01",
                "ids of wrong lengths",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "one-digit flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "trailing dash",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "no flags",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "wrong separator",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
                "not hex",
            ),
            (
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "sign character",
            ),
            ("", "empty"),
        ];
        for (header, why) in cases {
            assert_eq!(TraceContext::parse(header), None, "{why}: `{header}`");
        }
    }

    /// Pins why [`is_version_00_shape`] exists: if a later OpenTelemetry turns strict on these, the
    /// check can go.
    #[test]
    fn the_propagator_alone_accepts_headers_the_shape_check_refuses() {
        let lenient = [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for header in lenient {
            let extracted = TraceContextPropagator::new()
                .extract_with_context(&Context::new(), &OneHeader(header));
            assert!(extracted.span().span_context().is_valid(), "`{header}`");
            assert!(!is_version_00_shape(header), "`{header}`");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_span() {
        let parent = TraceContext::parse(VALID).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.flags, parent.flags);
        assert_ne!(child.span_id, parent.span_id);
        assert_ne!(child.span_id, [0; 8]);
        assert_eq!(TraceContext::parse(&child.to_header()), Some(child));
    }

    #[test]
    fn new_roots_are_valid_unsampled_and_distinct() {
        let first = TraceContext::new_root();
        let second = TraceContext::new_root();
        assert_ne!(first.trace_id, second.trace_id);
        assert_eq!(first.flags, 0);
        assert_eq!(TraceContext::parse(&first.to_header()), Some(first));
    }

    #[tokio::test]
    async fn the_context_is_current_inside_its_scope_and_in_joined_futures_only() {
        assert_eq!(current(), None);
        let context = TraceContext::new_root();
        let seen = scope(context, async {
            let inner = futures::future::join_all((0..2).map(|_| async { current() })).await;
            (current(), inner)
        })
        .await;
        assert_eq!(seen.0, Some(context));
        assert_eq!(seen.1, vec![Some(context), Some(context)]);
        assert_eq!(current(), None);
    }
}
