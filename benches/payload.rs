//! Decoding cost of PIM's three request shapes, from the body bytes as the handler receives them to
//! an `ActivationRequest`: the part of `POST /v1/evaluate` that every request pays before the rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pimgate::payload::decode;

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
        // A sample that stopped decoding would make the figure meaningless.
        decode(bytes).unwrap();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| b.iter(|| decode(std::hint::black_box(bytes))));
    }
    group.finish();
}

criterion_group!(benches, decode_samples);
criterion_main!(benches);
