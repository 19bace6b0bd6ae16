//! The image's build, replayed without a container engine in the build context a `docker build .`
//! would really send.
//!
//! What it proves: the context is assembled from exactly what `.dockerignore` lets through (Docker's
//! pattern rules, `!` exceptions included); every stage of the Dockerfile is replayed in order with its
//! `COPY` (from the context or an earlier stage) and `RUN` file operations parsed from the Dockerfile
//! itself; every cargo command loads its manifest and lock (`--locked`, offline) and resolves all
//! targets, features and profiles (`cargo build --unit-graph`; `cargo chef prepare` and the skeleton of
//! `cargo chef cook` run for real); the dependency layer plans every dependency unit the service build
//! needs, with the same profile and features (else it would not be reused); the runtime stage's
//! `COPY --from` finds the binary where cargo puts it, and the configuration and rules as laid out in
//! the image load in the real binary.
//!
//! What it cannot prove: that the code compiles and links in the builder (the rest of `cargo test`
//! compiles the same sources with the same toolchain, but not the release profile); that the base
//! images and tags exist or what they contain (the image's own toolchain is stood in by this machine's,
//! whose version tests/deploy.rs compares with the `FROM rust:` tag); that anything installs from the
//! network (`cargo install` is checked against the cargo-chef installed here, pinned to the same
//! version); file ownership, modes and mtimes; the image's size or its behaviour when run.
//! `scripts/image.sh` covers those where a container engine is available.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod dockerfile;
mod dockerignore;
mod replay;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use dockerignore::DockerIgnore;
use replay::{StageState, Tools};

const BIN: &str = env!("CARGO_BIN_EXE_pimgate");

/// The one release build (tests/deploy.rs keeps the Dockerfile, the benchmark and README.md on it).
const RELEASE_BUILD: &str = "cargo build --release --locked --bin pimgate";

const SKIP_ENV: &str = "PIMGATE_SKIP_OFFLINE_TOOLS";

/// The Dockerfile as it was before cargo-chef: a hand-written stub crate that missed three benches.
const STUB_BUILD_DOCKERFILE: &str = include_str!("fixtures/Dockerfile.before-cargo-chef");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|error| panic!("cannot read `{relative}`: {error}"))
}

/// Writes past libtest's output capture, so a skip is visible in `cargo test` output.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The cargo-chef version the Dockerfile installs (`cargo install cargo-chef --locked --version V`).
fn pinned_chef_version() -> String {
    let dockerfile = read("Dockerfile");
    let words: Vec<&str> = dockerfile.split_whitespace().collect();
    let at = words
        .windows(2)
        .position(|pair| pair == ["install", "cargo-chef"])
        .expect("the Dockerfile installs cargo-chef");
    words[at..]
        .windows(2)
        .find(|pair| pair[0] == "--version")
        .map(|pair| pair[1].to_string())
        .expect("the Dockerfile pins cargo-chef with --version")
}

fn find_executable(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    dirs.extend(cargo_home.map(|home| home.join("bin")));
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tools for a replay; `None` (with a SKIPPED line) only when cargo-chef is missing and the skip
/// variable is set, else a missing cargo-chef fails the test with the command that installs it.
fn tools(test: &str) -> Option<Tools> {
    let chef = find_executable("cargo-chef");
    if chef.is_none() {
        let install = format!(
            "cargo install cargo-chef --locked --version {}",
            pinned_chef_version()
        );
        if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
            announce(&format!(
                "SKIPPED {test}: `cargo-chef` is not installed and {SKIP_ENV}=1; install it with: {install}"
            ));
            return None;
        }
        panic!(
            "`cargo-chef` is not installed; install it with: {install} (scripts/lint-deploy.sh does), or set {SKIP_ENV}=1 to skip"
        );
    }
    Some(Tools {
        cargo: PathBuf::from(env!("CARGO")),
        chef,
    })
}

/// The build context of this repository under `ignore`, in `into`.
fn context(ignore: &str, into: &Path) -> Vec<String> {
    let ignore = DockerIgnore::parse(ignore).unwrap();
    ignore.assemble_context(&root(), into).unwrap()
}

/// Replays `dockerfile` in the context `.dockerignore` (here `ignore`) sends.
fn replay(dockerfile: &str, ignore: &str, tools: &Tools) -> Result<Vec<StageState>, String> {
    let scratch = tempfile::tempdir().unwrap();
    let context_dir = scratch.path().join("context");
    std::fs::create_dir(&context_dir).unwrap();
    context(ignore, &context_dir);
    let stages = dockerfile::stages(dockerfile)?;
    let states = replay::replay(&stages, &context_dir, scratch.path(), tools)?;
    // Keep the folders for the caller's checks: the scratch folder goes when the test process ends.
    std::mem::forget(scratch);
    Ok(states)
}

#[test]
fn dockerignore_patterns_match_as_docker_matches_them() {
    // (patterns, path, excluded?), the cases of Docker's documentation and patternmatcher's tests.
    let cases: &[(&str, &str, bool)] = &[
        ("*\n!src/", "src/main.rs", false),
        ("*\n!src/", "srcs/main.rs", true),
        ("*\n!src/", "target/release/pimgate", true),
        ("*", "Cargo.toml", true),
        ("*", "a/b/c", true), // a parent folder matches
        ("*/temp*", "a/temporary", true),
        ("*/temp*", "a/b/temporary", false), // `*` does not cross `/`
        ("*/*/temp*", "a/b/temporary", true),
        ("temp?", "temp1", true),
        ("temp?", "temp12", false),
        ("**/*.go", "a/b/c.go", true),
        ("**/*.go", "c.go", true), // `**/` matches no folder too
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**", "a/x/y", true),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            "README-secret.md",
            true,
        ), // the last match wins
        ("*.md\n!README*.md\nREADME-secret.md", "README.md", false),
        ("*.md\n!README*.md\nREADME-secret.md", "CHANGES.md", true),
        ("/src/", "src/x", true), // a leading `/` means the context root
        ("./src//x/../", "src/y", true), // cleaned as Go's filepath.Clean
        ("# src", "src", false),  // a comment
        (" # src", "# src", true), // not a comment: `#` must be in the first column
        ("  src  ", "src", true), // trimmed
        ("! src", "src", false),  // an exception alone only re-includes
        ("src\n!src/keep", "src/keep", false),
        ("src\n!src/keep", "src/other", true),
        ("[a-c]x", "bx", true),
        ("[a-c]x", "dx", false),
        ("a\\*b", "a*b", true), // an escaped `*` is a literal
        ("a\\*b", "axb", false),
        ("file.txt", "fileXtxt", false), // `.` is literal
    ];
    for (patterns, path, excluded) in cases {
        let ignore = DockerIgnore::parse(patterns).unwrap();
        assert_eq!(
            ignore.excludes(path),
            *excluded,
            "patterns {patterns:?} on `{path}`"
        );
    }
    assert!(
        DockerIgnore::parse("!").is_err(),
        "`!` alone is an error, as in Docker"
    );
}

#[test]
fn the_build_context_sends_the_build_inputs_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let sent = context(&read(".dockerignore"), dir.path());
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "config/production.toml",
    ] {
        assert!(sent.iter().any(|f| f == needed), "`{needed}` is not sent");
    }
    // Every bench the manifest declares: without them the manifest does not load.
    let manifest: toml_like::Benches = toml_like::benches(&read("Cargo.toml"));
    assert!(!manifest.is_empty());
    for bench in manifest {
        let file = format!("benches/{bench}.rs");
        assert!(sent.contains(&file), "`{file}` is not sent");
    }
    assert!(
        sent.iter()
            .any(|f| f.starts_with("rules/") && f.ends_with(".yaml"))
    );
    for file in &sent {
        for kept_out in [
            "target/",
            ".git",
            "tests/",
            "fuzz/",
            "deploy/",
            "scripts/",
            "rules/requests/",
        ] {
            assert!(!file.starts_with(kept_out), "`{file}` is sent");
        }
        assert!(!file.ends_with(".test.yaml"), "`{file}` is sent");
        assert!(
            !file.starts_with("config/") || file == "config/production.toml",
            "`{file}` is sent: only the production config goes into the image"
        );
    }
}

/// The bench names `Cargo.toml` declares (`[[bench]] name = "..."`), read without a TOML crate.
mod toml_like {
    pub type Benches = Vec<String>;

    pub fn benches(manifest: &str) -> Benches {
        let mut names = Vec::new();
        let mut in_bench = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bench = line == "[[bench]]";
            } else if in_bench && let Some(value) = line.strip_prefix("name") {
                let name = value
                    .trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"');
                names.push(name.to_string());
            }
        }
        names
    }
}

#[test]
fn every_stage_of_the_dockerfile_replays_in_the_real_build_context() {
    let Some(tools) = tools("every_stage_of_the_dockerfile_replays_in_the_real_build_context")
    else {
        return;
    };
    let stages = replay(&read("Dockerfile"), &read(".dockerignore"), &tools)
        .unwrap_or_else(|error| panic!("the image does not build: {error}"));

    // The dependency layer and the service build plan the same release binary.
    let runs: Vec<_> = stages.iter().flat_map(|s| s.cargo_runs.iter()).collect();
    let build = runs
        .iter()
        .find(|run| run.command == RELEASE_BUILD)
        .unwrap_or_else(|| panic!("no `{RELEASE_BUILD}` in {runs:?}"));
    assert_eq!(build.roots.len(), 1, "{:?}", build.roots);
    let service = &build.roots[0];
    assert_eq!(service["target"]["name"], "pimgate");
    assert_eq!(service["target"]["kind"], serde_json::json!(["bin"]));
    assert_eq!(service["profile"]["name"], "release");
    assert_eq!(
        service["profile"]["strip"]["resolved"]["Named"], "symbols",
        "the image ships a stripped binary"
    );
    let cook = runs
        .iter()
        .find(|run| run.command.starts_with("cargo chef cook") && run.line < build.line)
        .unwrap_or_else(|| panic!("no dependency layer before the service build: {runs:?}"));
    assert!(
        build.dependency_units.len() > 100,
        "the service build plans its dependencies: {}",
        build.dependency_units.len()
    );
    assert!(
        build.dependency_units.is_subset(&cook.dependency_units),
        "the dependency layer plans every dependency unit of the service build"
    );

    // The runtime image: the service build's binary, the production config and the shipped rules.
    let image = stages.last().unwrap();
    let binary = std::fs::read_to_string(image.path("/usr/local/bin/pimgate")).unwrap();
    assert!(
        binary.contains(&format!(
            "`{RELEASE_BUILD}` (Dockerfile line {})",
            build.line
        )),
        "the image must ship the service build's binary, not the dependency layer's stub: {binary}"
    );
    assert_eq!(
        std::fs::read_to_string(image.path("/etc/pimgate/config.toml")).unwrap(),
        read("config/production.toml")
    );
    let rules = image
        .env
        .get("PIMGATE__RULES__PATH")
        .expect("the rules path is set");
    let shipped: Vec<String> = std::fs::read_dir(image.path(rules))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    assert!(!shipped.is_empty(), "the image ships rules");
    assert!(
        shipped.iter().all(|name| !name.ends_with(".test.yaml")),
        "{shipped:?}"
    );

    // The image's command, with its configuration and rules where the image has them, loads.
    let cmd: Vec<String> = serde_json::from_str(&image.last("CMD").unwrap().arguments).unwrap();
    let config = cmd
        .windows(2)
        .find(|pair| pair[0] == "--config")
        .map(|pair| pair[1].clone())
        .expect("CMD names its --config");
    let output = Command::new(BIN)
        .args(["rules", "validate", "--config"])
        .arg(image.path(&config))
        .env_remove("PIMGATE_CONFIG")
        .env("PIMGATE__RULES__PATH", image.path(rules))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the image's config and rules do not load: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_replay_fails_on_the_stub_build_that_missed_the_declared_benches() {
    // The Dockerfile before cargo-chef: its stub crate had one of the four benches the manifest
    // declares, and .dockerignore kept benches/ out, so cargo stopped at once. No cargo-chef needed.
    let tools = Tools {
        cargo: PathBuf::from(env!("CARGO")),
        chef: None,
    };
    let old_ignore = read(".dockerignore")
        .lines()
        .filter(|line| *line != "!benches/")
        .collect::<Vec<_>>()
        .join("\n");
    let error = replay(STUB_BUILD_DOCKERFILE, &old_ignore, &tools).unwrap_err();
    assert!(error.contains("Dockerfile line 16"), "{error}");
    assert!(
        error.contains("can't find `") && error.contains("` bench at `benches/"),
        "{error}"
    );
}

#[test]
fn the_replay_fails_when_dockerignore_keeps_out_a_copied_folder() {
    let Some(tools) = tools("the_replay_fails_when_dockerignore_keeps_out_a_copied_folder") else {
        return;
    };
    let ignore = read(".dockerignore")
        .lines()
        .filter(|line| *line != "!benches/")
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(
        ignore.trim(),
        read(".dockerignore").trim(),
        "the control must change something"
    );
    let error = replay(&read("Dockerfile"), &ignore, &tools).unwrap_err();
    assert!(
        error.contains("`benches` is not in the build context"),
        "{error}"
    );
}

#[test]
fn the_replay_fails_when_the_dependency_layer_is_planned_with_another_profile() {
    let Some(tools) =
        tools("the_replay_fails_when_the_dependency_layer_is_planned_with_another_profile")
    else {
        return;
    };
    let dockerfile = read("Dockerfile");
    let debug_cook = dockerfile.replace("cargo chef cook --release", "cargo chef cook");
    assert_ne!(
        debug_cook, dockerfile,
        "the control must change the cook line"
    );
    let error = replay(&debug_cook, &read(".dockerignore"), &tools).unwrap_err();
    assert!(error.contains("the dependency layer"), "{error}");
    assert!(error.contains("would compile again"), "{error}");
}

#[test]
fn scripts_test_installs_the_cargo_chef_the_dockerfile_pins() {
    let version = pinned_chef_version();
    // The script that runs this binary (`test = false`) installs it; it was scripts/test.sh.
    let script = read("scripts/lint-deploy.sh");
    assert!(
        script.contains(&format!("chef_version={version}\n"))
            && script.contains("cargo install cargo-chef --locked --version \"$chef_version\""),
        "scripts/lint-deploy.sh must install cargo-chef {version}, the version the Dockerfile pins"
    );
}

#[test]
fn the_replay_copies_files_folders_and_wildcards_as_docker_copies_them() {
    let tools = Tools {
        cargo: PathBuf::from(env!("CARGO")),
        chef: None,
    };
    let dockerfile = "FROM scratch AS first\n\
        WORKDIR /w\n\
        COPY Cargo.toml Cargo.lock ./\n\
        COPY src/*.rs /flat/\n\
        COPY rules/ /r\n\
        COPY [\"Cargo.toml\", \"/renamed.toml\"]\n\
        RUN mkdir -p made/deep && echo 'a b' > made/deep/f && touch made/t && rm -rf made/deep\n\
        FROM first AS second\n\
        COPY --from=first /w/Cargo.toml /second/manifest.toml\n";
    let ignore = "*\n!Cargo.toml\n!Cargo.lock\n!src/\n!rules/\n";
    let stages = replay(dockerfile, ignore, &tools).unwrap();
    let second = &stages[1];
    let has = |path: &str| second.path(path).exists();
    // A later stage starts from its base stage's files and WORKDIR.
    assert_eq!(second.workdir, "/w");
    assert!(has("Cargo.toml") && has("/w/Cargo.lock"));
    // A wildcard matches inside one folder only, and files land in the folder ending in `/`.
    assert!(has("/flat/main.rs") && has("/flat/lib.rs"));
    assert!(!has("/flat/src"));
    // A folder's contents are copied, not the folder.
    assert!(std::fs::read_dir(second.path("/r")).unwrap().count() > 0);
    assert!(!has("/r/rules"));
    assert!(has("/renamed.toml") && has("/second/manifest.toml"));
    assert!(has("/w/made/t") && !has("/w/made/deep"));
}

#[test]
fn the_replay_refuses_what_it_does_not_model_instead_of_passing() {
    let tools = Tools {
        cargo: PathBuf::from(env!("CARGO")),
        chef: None,
    };
    let cases = [
        ("RUN apt-get install -y curl", "`apt-get` is not modelled"),
        ("RUN mkdir a; mkdir b", "`;` is not modelled"),
        ("RUN mkdir a || true", "`|` is not modelled"),
        ("RUN --mount=type=cache,target=/t mkdir a", "RUN flags"),
        ("COPY --from=alpine:3 /x /x", "is no earlier stage"),
        ("ADD archive.tar /x", "`ADD` is not modelled"),
        ("WORKDIR $HOME", "substitution"),
        ("RUN cargo test", "`cargo test` is not modelled"),
        ("RUN cargo install cargo-chef", "is not pinned"),
        ("COPY missing.txt /x", "is not in the build context"),
    ];
    for (instruction, expected) in cases {
        let dockerfile = format!("FROM scratch\n{instruction}\n");
        let error = replay(&dockerfile, "*\n", &tools)
            .err()
            .unwrap_or_else(|| panic!("`{instruction}` passed"));
        assert!(error.contains(expected), "`{instruction}`: {error}");
    }
}
