//! The shape of the tree, checked like rust-analyzer's `tidy.rs`: dependencies between the top-level
//! modules of `src/` run one way (down [`LAYERS`]), and every module file says what it is for in
//! its first line (`//!`). A failure names the file and the edge, and says what to do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top to bottom: a module may use modules of the layers below its own, never its own layer or
/// above. A new top-level module gets a place here; a new edge upwards is a design change (move the
/// shared piece down, usually into `vocabulary`), not a line to add.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["startup", "onboard"],
    &["console"],
    &["workbench"],
    &["reload"],
    &["http"],
    &["notify"],
    &["audit"],
    &["decision"],
    &["rules"],
    &["checks"],
    &["auth", "telemetry"],
    &["settings"],
    &["connectors"],
    &["payload", "tracecontext"],
    &["vocabulary"],
];

/// Files that are not modules of their own.
const ROOTS: &[&str] = &["main", "lib"];

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            into.push(path);
        }
    }
}

fn files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    files.sort();
    files
}

/// `src/rules/compile.rs` → `rules`, `src/audit.rs` → `audit`.
fn top_module(path: &Path) -> String {
    let relative = path.strip_prefix("src").unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// `crate::x` paths outside the file's `#[cfg(test)]` part: test code may reach anywhere.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.find("#[cfg(test)]").map_or(text, |cut| &text[..cut]);
    let pattern = regex::Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    pattern
        .captures_iter(code)
        .map(|capture| capture[1].to_string())
        .collect()
}

/// Every edge `(file, from, to)` between different top-level modules.
fn edges() -> Vec<(PathBuf, String, String)> {
    let mut edges = Vec::new();
    for file in files() {
        let from = top_module(&file);
        if ROOTS.contains(&from.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for to in uses(&text) {
            if to != from {
                edges.push((file.clone(), from.clone(), to));
            }
        }
    }
    edges
}

#[test]
fn every_top_level_module_has_a_place_in_the_layers() {
    let modules: BTreeSet<String> = files()
        .iter()
        .map(|file| top_module(file))
        .filter(|module| !ROOTS.contains(&module.as_str()))
        .collect();
    let unplaced: Vec<_> = modules
        .iter()
        .filter(|module| layer_of(module).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "give these modules a layer in tests/tidy.rs LAYERS (below what they use, above what uses them): {unplaced:?}"
    );
    let listed: Vec<&str> = LAYERS
        .iter()
        .flat_map(|layer| layer.iter().copied())
        .collect();
    let gone: Vec<_> = listed
        .iter()
        .filter(|module| !modules.contains(**module))
        .collect();
    assert!(
        gone.is_empty(),
        "remove these from LAYERS, no such module: {gone:?}"
    );
}

#[test]
fn dependencies_between_top_level_modules_run_one_way_down_the_layers() {
    let mut back_edges = Vec::new();
    for (file, from, to) in edges() {
        let (Some(upper), Some(lower)) = (layer_of(&from), layer_of(&to)) else {
            continue; // reported by the test above
        };
        if lower <= upper {
            back_edges.push(format!(
                "{}: `{from}` (layer {upper}) uses `crate::{to}` (layer {lower})",
                file.display()
            ));
        }
    }
    assert!(
        back_edges.is_empty(),
        "dependencies must point down the layers in tests/tidy.rs; move the shared piece below both \
         (often into `vocabulary`) instead:\n{}",
        back_edges.join("\n")
    );
}

#[test]
fn every_module_file_starts_with_a_line_saying_what_it_is_for() {
    let undocumented: Vec<_> = files()
        .into_iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "start these files with a `//!` line saying why the module exists: {undocumented:?}"
    );
}

#[test]
fn the_edge_reader_sees_uses_and_skips_test_code() {
    let text = "use crate::rules::RuleSet;\nfn f() { crate::decision::evaluate(); }\n\
                #[cfg(test)]\nmod tests { use crate::cli; }\n";
    let found = uses(text);
    assert_eq!(
        found,
        BTreeSet::from(["rules".to_string(), "decision".to_string()])
    );
}
