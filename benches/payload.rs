//! Decoding cost of PIM's three request shapes, from the body bytes as the handler receives them to
//! an `ActivationRequest`: the part of `POST /v1/evaluate` that every request pays before the rules.
//! `walker` is the reference decoder (a `serde_json::Value` walked by hand); `decode` is what the
//! handler calls (the borrowed fast path, falling back to the walker), so the two rows side by side
//! show what the fast path saves on the common body.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pimgate::payload::{decode, decode_by_walking};

const SAMPLES: [(&str, &str); 3] = [
    (
        "entra_role",
        include_str!("../tests/fixtures/requests/entra-role-activation.json"),
    ),
    (
        "azure_resource",
        include_str!("../tests/fixtures/requests/azure-resource-activation.json"),
    ),
    (
        "pim_for_groups",
        include_str!("../tests/fixtures/requests/group-activation.json"),
    ),
];

fn decode_samples(c: &mut Criterion) {
    let mut group = c.benchmark_group("payload_decode");
    for (name, body) in SAMPLES {
        let bytes = body.as_bytes();
        // A sample that stopped decoding, or decoded differently, would make the figures meaningless.
        assert_eq!(decode(bytes).unwrap(), decode_by_walking(bytes).unwrap());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("{name}/walker"), |b| {
            b.iter(|| decode_by_walking(std::hint::black_box(bytes)))
        });
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| decode(std::hint::black_box(bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode_samples);
criterion_main!(benches);
