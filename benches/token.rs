//! What checking PIM's bearer token costs per request: the full RS256 path with the token cache off,
//! the same token answered from the cache, and a token refused at its header (parsing only). The
//! `rs256` group splits the signature check itself: `jsonwebtoken::decode` as `auth` calls it,
//! aws-lc building the key from (n, e) on every call (what jsonwebtoken does inside), and aws-lc with
//! the key parsed once.
//!
//! Run with `cargo bench --bench token`. Everything runs on loopback: the JWKS comes from the test
//! identity provider of `tests/support/auth.rs` (a wiremock server), tokens are really RS256-signed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/auth.rs"]
mod common_auth;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common_auth::{TestIdp, raw_token};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pimgate::auth::Authenticator;
use serde_json::json;
use tokio::runtime::Runtime;

/// The address every authenticator here is served on, as far as it knows.
const LOOPBACK: [std::net::SocketAddr; 1] = [std::net::SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    8080,
)];

/// Times `iterations` calls of `verify_header` inside one `block_on`, so the runtime's entry cost is
/// not counted per call.
fn time_verify(
    runtime: &Runtime,
    authenticator: &Arc<Authenticator>,
    authorization: &str,
    iterations: u64,
    expect_ok: bool,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iterations {
            let result = authenticator.verify_header(Some(authorization)).await;
            assert_eq!(result.is_ok(), expect_ok);
            black_box(result.ok());
        }
        start.elapsed()
    })
}

fn authenticator(runtime: &Runtime, idp: &TestIdp, cache_capacity: u64) -> Arc<Authenticator> {
    let mut settings = idp.settings();
    settings.token_cache_capacity = cache_capacity;
    runtime.block_on(async {
        let authenticator =
            Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).unwrap();
        authenticator.refresh_keys().await.unwrap();
        authenticator
    })
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

fn verify_header(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = runtime.block_on(TestIdp::start());
    let authorization = idp.bearer(&idp.v2_claims());
    let uncached = authenticator(&runtime, &idp, 0);
    let cached = authenticator(&runtime, &idp, 10_000);
    time_verify(&runtime, &cached, &authorization, 1, true);
    let header_refused = format!(
        "Bearer {}",
        raw_token(
            &json!({"alg": "none", "kid": idp.key.kid}),
            &idp.v2_claims(),
            b""
        )
    );

    let mut group = c.benchmark_group("verify_header");
    group.bench_function("uncached_rs256", |b| {
        b.iter_custom(|iterations| {
            time_verify(&runtime, &uncached, &authorization, iterations, true)
        });
    });
    group.bench_function("cached", |b| {
        b.iter_custom(|iterations| {
            time_verify(&runtime, &cached, &authorization, iterations, true)
        });
    });
    group.bench_function("header_parse_only_refused", |b| {
        b.iter_custom(|iterations| {
            time_verify(&runtime, &uncached, &header_refused, iterations, false)
        });
    });
    group.finish();
    assert!(
        cached.signature_checks() == 1,
        "the cached rows never ran RS256 after the first call"
    );

    let token = authorization.trim_start_matches("Bearer ").to_string();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let n = URL_SAFE_NO_PAD.decode(&idp.key.n).unwrap();
    let e = URL_SAFE_NO_PAD.decode(&idp.key.e).unwrap();
    let decoding_key = DecodingKey::from_rsa_components(&idp.key.n, &idp.key.e).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let parsed =
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pem_body(&idp.key.public_pem)).unwrap();

    let mut group = c.benchmark_group("rs256");
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding_key, &validation)
                .unwrap()
        });
    });
    group.bench_function("aws_lc_key_from_components_per_call", |b| {
        b.iter(|| {
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(
                    &RSA_PKCS1_2048_8192_SHA256,
                    black_box(signing_input.as_bytes()),
                    &signature,
                )
                .unwrap();
        });
    });
    group.bench_function("aws_lc_key_parsed_once", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(signing_input.as_bytes()), &signature)
                .unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, verify_header);
criterion_main!(benches);
