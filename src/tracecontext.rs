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
//! With `tracing.endpoint` set, `telemetry` exports the request spans over OTLP in this same trace;
//! without it, this only correlates logs and upstream calls.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};

/// `00-{32 hex}-{16 hex}-{2 hex}`.
const HEADER_LENGTH: usize = 55;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// One position in a trace: the trace, the span pimgate is in, and the caller's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The span of this hop: pimgate's own for the request, a fresh one per upstream call.
    pub span_id: [u8; 8],
    /// Bit 0 is `sampled`; kept as the caller sent it so its sampling decision carries through.
    pub flags: u8,
}

impl TraceContext {
    /// A `traceparent` header value, or `None` when it is not a valid version-00 header. Strict on
    /// purpose: a malformed or zero id would otherwise stitch unrelated requests into one trace.
    /// Future versions are refused too (the spec allows reading their prefix, but pimgate then
    /// starts its own trace, which is always safe).
    pub fn parse(header: &str) -> Option<Self> {
        if header.len() != HEADER_LENGTH {
            return None;
        }
        let mut parts = header.split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" {
            return None;
        }
        let trace_id: [u8; 16] = lower_hex(trace_id)?.try_into().ok()?;
        let span_id: [u8; 8] = lower_hex(span_id)?.try_into().ok()?;
        let flags: [u8; 1] = lower_hex(flags)?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: u8::from_be_bytes(flags),
        })
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

    /// The `traceparent` value naming this span as the parent of the next hop.
    pub fn to_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }

    /// The trace id as it appears in headers and logs.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
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

/// The spec allows only lower-case hex (`HEXDIGLC`); `hex::decode` would also take upper case.
fn lower_hex(text: &str) -> Option<Vec<u8>> {
    if !text
        .bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    hex::decode(text).ok()
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
