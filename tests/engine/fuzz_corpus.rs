//! Replays the committed fuzz inputs under plain `cargo test` (stable, no libFuzzer): the named seeds
//! (`fuzz/seeds/`), the minimised corpora the fuzzer grew (`fuzz/corpus/`) and any input that once
//! crashed (`fuzz/regressions/`), through the same harness as the fuzz targets, so a property broken
//! by a later change fails here even where no fuzzer runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harness::Class;

/// Every file of `fuzz/{seeds,corpus,regressions}/<target>/`, sorted, with its path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

/// Runs every input of `target` through `run` (which panics on a broken property) and returns the
/// class of each, by path relative to `fuzz/`.
fn replay(target: &str, run: fn(&[u8]) -> Class) -> BTreeMap<String, Class> {
    let files = inputs(target);
    assert!(files.len() >= 10, "the {target} seeds are missing");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    files
        .iter()
        .map(|(path, bytes)| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            let class = std::panic::catch_unwind(|| run(bytes))
                .unwrap_or_else(|_| panic!("`fuzz/{name}` broke a property (message above)"));
            (name, class)
        })
        .collect()
}

/// Seeds whose name starts with one of `accepted` must be accepted, those with one of `rejected`
/// rejected; other seeds and all corpus files only have to keep the properties.
fn assert_seed_classes(classes: &BTreeMap<String, Class>, accepted: &[&str], rejected: &[&str]) {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (name, class) in classes {
        let Some(file) = name
            .strip_prefix("seeds/")
            .and_then(|rest| rest.split('/').nth(1))
        else {
            continue;
        };
        let expected = if accepted.iter().any(|prefix| file.starts_with(prefix)) {
            Class::Accepted
        } else if rejected.iter().any(|prefix| file.starts_with(prefix)) {
            Class::Rejected
        } else {
            continue;
        };
        checked += 1;
        if *class != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {class:?}"));
        }
    }
    assert!(checked >= 5, "too few seeds have an expected class");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn payload_seeds_and_corpus_decode_or_name_the_field_at_fault() {
    let classes = replay("payload_decode", harness::payload_decode);
    assert_seed_classes(&classes, &["entra-", "group-", "azure-"], &["bad-"]);
}

#[test]
fn token_seeds_and_corpus_verify_or_are_rejected_with_a_401() {
    let classes = replay("token_parse", harness::token_parse);
    assert_seed_classes(
        &classes,
        &["valid-", "signed-valid-"],
        &[
            "expired",
            "wrong-",
            "no-",
            "empty-",
            "scheme-",
            "basic-",
            "two-",
            "four-",
            "truncated-",
            "prefixed-",
            "swapped-",
            "alg-",
            "unknown-",
            "header-",
            "signed-no-",
            "signed-wrong-",
            "signed-array",
            "signed-null",
            "signed-garbage",
        ],
    );
}

#[test]
fn rule_seeds_and_corpus_compile_or_report_problems() {
    let classes = replay("rules_load", harness::rules_load);
    assert_seed_classes(&classes, &["shipped-"], &["rule-tests-"]);
}

#[test]
fn connector_response_seeds_and_corpus_are_read_within_the_caps_or_refused() {
    let classes = replay("connector_responses", harness::connector_responses);
    assert_seed_classes(&classes, &["ok-"], &["bad-"]);
}
