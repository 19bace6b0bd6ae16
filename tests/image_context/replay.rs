//! Replays a Dockerfile's stages in folders, without a container engine: each stage is a folder that
//! stands for its filesystem root; `WORKDIR`, `ENV`, `ARG` and `COPY` (from the build context or
//! `--from` an earlier stage) are applied as BuildKit applies them; `RUN` is interpreted, never handed to
//! a shell: `&&` lists of file operations (`mkdir`, `touch`, `rm`, `echo > file`) and cargo.
//!
//! Cargo runs for real, offline, against the host's `CARGO_HOME` (its registry cache), but stops once
//! the build is planned: `cargo build` becomes `cargo build ... -Z unstable-options --unit-graph`
//! (`RUSTC_BOOTSTRAP=1`), which loads the manifest and lock (`--locked` included), resolves every
//! target, feature and profile, and prints the units it would compile. `cargo chef prepare` runs as it
//! is (it is cheap); `cargo chef cook` runs as it is with `CARGO` pointing at a wrapper that adds the
//! same unit-graph flags, so its skeleton is written for real. Each binary a build would produce is
//! stood in by a placeholder file naming the Dockerfile line that built it, so a later
//! `COPY --from=...` finds it only where cargo would have put it.
//!
//! What is not modelled is an error naming the instruction, never a silent pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::dockerfile::{Instruction, Stage};
use crate::dockerignore::{clean, copy_source_regex};

/// The tools a replay runs.
pub struct Tools {
    /// The toolchain's cargo (the one running these tests).
    pub cargo: PathBuf,
    /// `cargo-chef`, where installed.
    pub chef: Option<PathBuf>,
}

/// One cargo command as the replay ran it.
#[derive(Debug, Clone)]
pub struct CargoRun {
    pub line: usize,
    pub command: String,
    /// The units cargo would build first (what was asked for), without their dependency lists.
    pub roots: Vec<Value>,
    /// Every unit of a registry or git package, as a comparable string.
    pub dependency_units: BTreeSet<String>,
}

/// A replayed stage: its folder, and what the image would record about it.
#[derive(Debug, Clone)]
pub struct StageState {
    pub name: Option<String>,
    pub root: PathBuf,
    pub workdir: String,
    pub env: BTreeMap<String, String>,
    /// `USER`, `EXPOSE`, `ENTRYPOINT`, `CMD`, ... kept as written: the image's metadata.
    pub metadata: Vec<Instruction>,
    pub cargo_runs: Vec<CargoRun>,
    /// The dependency layer `cargo chef cook` built in this stage, if any: (line, units).
    cooked: Option<(usize, BTreeSet<String>)>,
}

impl StageState {
    /// A path of the image, as a path in the stage's folder.
    pub fn path(&self, image_path: &str) -> PathBuf {
        resolve(&self.root, &self.workdir, image_path)
    }

    /// The last value of a metadata instruction (`CMD`, `USER`, ...).
    pub fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.metadata.iter().rev().find(|i| i.keyword == keyword)
    }
}

/// Replays every stage in order; `context` is the assembled build context, `scratch` an empty folder.
pub fn replay(
    stages: &[Stage],
    context: &Path,
    scratch: &Path,
    tools: &Tools,
) -> Result<Vec<StageState>, String> {
    let mut done: Vec<StageState> = Vec::new();
    for (index, stage) in stages.iter().enumerate() {
        let root = scratch.join(format!("stage-{index}"));
        let parent = done
            .iter()
            .find(|s| s.name.as_deref() == Some(stage.base.to_lowercase().as_str()));
        let mut state = match parent {
            Some(parent) => {
                copy_tree(&parent.root, &root)?;
                StageState {
                    name: stage.name.clone(),
                    root,
                    workdir: parent.workdir.clone(),
                    env: parent.env.clone(),
                    metadata: parent.metadata.clone(),
                    cargo_runs: Vec::new(),
                    cooked: None,
                }
            }
            None => {
                std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
                StageState {
                    name: stage.name.clone(),
                    root,
                    workdir: "/".into(),
                    env: BTreeMap::new(),
                    metadata: Vec::new(),
                    cargo_runs: Vec::new(),
                    cooked: None,
                }
            }
        };
        for instruction in &stage.instructions {
            apply(instruction, &mut state, &done, context, scratch, tools)?;
        }
        done.push(state);
    }
    Ok(done)
}

fn apply(
    instruction: &Instruction,
    stage: &mut StageState,
    done: &[StageState],
    context: &Path,
    scratch: &Path,
    tools: &Tools,
) -> Result<(), String> {
    let arguments = instruction.arguments.as_str();
    let refuse = |why: &str| format!("{instruction}: {why}");
    match instruction.keyword.as_str() {
        "WORKDIR" => {
            no_substitution(instruction)?;
            stage.workdir = clean(&if arguments.starts_with('/') {
                arguments.to_string()
            } else {
                format!("{}/{arguments}", stage.workdir)
            });
            std::fs::create_dir_all(stage.path(".")).map_err(|e| e.to_string())
        }
        "ENV" | "ARG" => {
            no_substitution(instruction)?;
            let words = shell_words(arguments).map_err(|why| refuse(&why))?;
            let words: Vec<String> = words
                .into_iter()
                .map(|token| match token {
                    Token::Word(word) => Ok(word),
                    _ => Err(refuse("an operator in ENV/ARG")),
                })
                .collect::<Result<_, _>>()?;
            match words.as_slice() {
                [key, value] if instruction.keyword == "ENV" && !key.contains('=') => {
                    stage.env.insert(key.clone(), value.clone());
                }
                _ => {
                    for word in words {
                        match word.split_once('=') {
                            Some((key, value)) => {
                                stage.env.insert(key.to_string(), value.to_string());
                            }
                            None if instruction.keyword == "ARG" => {} // no default: unset
                            None => return Err(refuse("cannot read this ENV")),
                        }
                    }
                }
            }
            Ok(())
        }
        "COPY" => copy(instruction, stage, done, context),
        "RUN" => run(instruction, stage, scratch, tools),
        "USER" | "EXPOSE" | "ENTRYPOINT" | "CMD" | "LABEL" | "HEALTHCHECK" | "STOPSIGNAL"
        | "VOLUME" | "MAINTAINER" => {
            stage.metadata.push(instruction.clone());
            Ok(())
        }
        other => Err(refuse(&format!(
            "`{other}` is not modelled by the replay (tests/image_context/replay.rs)"
        ))),
    }
}

fn no_substitution(instruction: &Instruction) -> Result<(), String> {
    if instruction.arguments.contains('$') {
        return Err(format!(
            "{instruction}: `$` substitution is not modelled by the replay"
        ));
    }
    Ok(())
}

/// An image path (absolute, or relative to `workdir`) inside the stage folder `root`.
fn resolve(root: &Path, workdir: &str, path: &str) -> PathBuf {
    let absolute = if path.starts_with('/') {
        clean(path)
    } else {
        clean(&format!("{workdir}/{path}"))
    };
    root.join(absolute.trim_start_matches('/'))
}

fn copy(
    instruction: &Instruction,
    stage: &mut StageState,
    done: &[StageState],
    context: &Path,
) -> Result<(), String> {
    no_substitution(instruction)?;
    let refuse = |why: String| format!("{instruction}: {why}");
    let arguments = instruction.arguments.trim();
    // Flags first, then either a JSON list (`["src", "dest"]`) or words.
    let mut rest = arguments;
    let mut words: Vec<String> = Vec::new();
    while rest.starts_with("--") {
        let (flag, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        words.push(flag.to_string());
        rest = after.trim_start();
    }
    if rest.starts_with('[') {
        let list: Vec<String> =
            serde_json::from_str(rest).map_err(|e| refuse(format!("JSON form: {e}")))?;
        words.extend(list);
    } else {
        words.extend(rest.split_whitespace().map(str::to_string));
    }
    let mut from: Option<String> = None;
    while words.first().is_some_and(|w| w.starts_with("--")) {
        let flag = words.remove(0);
        if let Some(stage_name) = flag.strip_prefix("--from=") {
            from = Some(stage_name.to_lowercase());
        } else if !(flag.starts_with("--chown=")
            || flag.starts_with("--chmod=")
            || flag == "--link")
        {
            return Err(refuse(format!("`{flag}` is not modelled by the replay")));
        }
    }
    let Some(destination) = words.pop() else {
        return Err(refuse("no destination".into()));
    };
    if words.is_empty() {
        return Err(refuse("no source".into()));
    }
    // Sources: from the context, or from an earlier stage's root (relative to its `/`).
    let (source_root, source_dir) = match &from {
        None => (context.to_path_buf(), "/".to_string()),
        Some(name) => {
            let found = done
                .iter()
                .enumerate()
                .find(|(index, s)| s.name.as_deref() == Some(name) || index.to_string() == *name)
                .map(|(_, s)| s.root.clone())
                .ok_or_else(|| {
                    refuse(format!(
                        "`--from={name}` is no earlier stage (images are not modelled)"
                    ))
                })?;
            (found, "/".to_string())
        }
    };
    let mut sources: Vec<PathBuf> = Vec::new();
    for source in &words {
        let matched = expand(&source_root, &source_dir, source)?;
        if matched.is_empty() {
            let whence = match &from {
                None => "the build context (kept out by .dockerignore, or absent)".to_string(),
                Some(name) => format!("stage `{name}`"),
            };
            return Err(refuse(format!("`{source}` is not in {whence}")));
        }
        sources.extend(matched);
    }
    let target = stage.path(&destination);
    let into_folder = destination.ends_with('/') || target.is_dir() || destination == ".";
    if sources.len() > 1 && !destination.ends_with('/') {
        return Err(refuse(
            "several sources need a destination folder ending in `/`".into(),
        ));
    }
    for source in sources {
        if source.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            let file_target = if into_folder {
                target.join(source.file_name().unwrap_or_default())
            } else {
                target.clone()
            };
            if let Some(parent) = file_target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::copy(&source, &file_target)
                .map_err(|e| refuse(format!("copy `{}`: {e}", source.display())))?;
        }
    }
    Ok(())
}

/// The paths a COPY source names under `root`, wildcards expanded as Go's `filepath.Match` does.
fn expand(root: &Path, workdir: &str, source: &str) -> Result<Vec<PathBuf>, String> {
    if !source.contains(['*', '?', '[']) {
        let path = resolve(root, workdir, source);
        return Ok(if path.exists() { vec![path] } else { vec![] });
    }
    let pattern = copy_source_regex(clean(source).trim_start_matches('/'))?;
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let relative = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            if pattern.is_match(&relative) {
                found.push(path.clone());
            }
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Copies the contents of `from` into `to` (created), as COPY copies a folder.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target).map_err(|e| e.to_string())?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A token of a RUN line: the replay reads only `&&` lists of plain words and `>`/`>>` redirections.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    And,
    Redirect { append: bool },
}

fn shell_words(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    let unsupported = |what: &str| {
        Err(format!(
            "{what} is not modelled by the replay: keep RUN to `&&` lists of plain commands"
        ))
    };
    while let Some(ch) = chars.next() {
        match ch {
            ' ' | '\t' | '\n' | '\r' => {
                if let Some(done) = word.take() {
                    tokens.push(Token::Word(done));
                }
            }
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return unsupported("an unterminated `'`"),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return unsupported("an unterminated `\"`"),
                        },
                        Some('$' | '`') => return unsupported("substitution"),
                        Some(c) => current.push(c),
                        None => return unsupported("an unterminated `\"`"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return unsupported("a trailing `\\`"),
            },
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                if let Some(done) = word.take() {
                    tokens.push(Token::Word(done));
                }
                tokens.push(Token::And);
            }
            '>' => {
                if let Some(done) = word.take() {
                    tokens.push(Token::Word(done));
                }
                let append = chars.peek() == Some(&'>');
                if append {
                    chars.next();
                }
                tokens.push(Token::Redirect { append });
            }
            '&' | '|' | ';' | '<' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '~' | '#'
                if word.is_none() || !matches!(ch, '#') =>
            {
                return unsupported(&format!("`{ch}`"));
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    if let Some(done) = word.take() {
        tokens.push(Token::Word(done));
    }
    Ok(tokens)
}

fn run(
    instruction: &Instruction,
    stage: &mut StageState,
    scratch: &Path,
    tools: &Tools,
) -> Result<(), String> {
    let arguments = instruction.arguments.trim();
    if arguments.starts_with("--") || arguments.starts_with('[') {
        return Err(format!(
            "{instruction}: RUN flags and the JSON form are not modelled by the replay"
        ));
    }
    let tokens = shell_words(arguments).map_err(|why| format!("{instruction}: {why}"))?;
    for step in tokens.split(|token| *token == Token::And) {
        let (words, redirect) =
            split_redirect(step).map_err(|why| format!("{instruction}: {why}"))?;
        let shown = words.join(" ");
        let fail = |why: String| format!("{instruction}: `{shown}` fails: {why}");
        match words.first().map(String::as_str) {
            Some("cargo") => cargo(instruction, &words, stage, scratch, tools).map_err(fail)?,
            Some("echo") => {
                let text = format!("{}\n", words[1..].join(" "));
                if let Some(Redirect { append, file }) = redirect {
                    write(&stage.path(&file), &text, append).map_err(fail)?;
                }
            }
            Some(_) if redirect.is_some() => {
                return Err(fail("only `echo` may redirect".into()));
            }
            Some("mkdir") => {
                let (flags, paths) = options(&words[1..]);
                for path in paths {
                    let target = stage.path(path);
                    let made = if flags.contains('p') {
                        std::fs::create_dir_all(&target)
                    } else {
                        std::fs::create_dir(&target)
                    };
                    made.map_err(|e| fail(format!("mkdir `{path}`: {e}")))?;
                }
            }
            Some("touch") => {
                for path in &words[1..] {
                    let target = stage.path(path);
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&target)
                        .map_err(|e| fail(format!("touch `{path}`: {e}")))?;
                    file.set_modified(std::time::SystemTime::now())
                        .map_err(|e| fail(format!("touch `{path}`: {e}")))?;
                }
            }
            Some("rm") => {
                let (flags, paths) = options(&words[1..]);
                for path in paths {
                    let target = stage.path(path);
                    let removed = if target.is_dir() && flags.contains('r') {
                        std::fs::remove_dir_all(&target)
                    } else {
                        std::fs::remove_file(&target)
                    };
                    match removed {
                        Err(_) if flags.contains('f') && !target.exists() => {}
                        other => other.map_err(|e| fail(format!("rm `{path}`: {e}")))?,
                    }
                }
            }
            Some(other) => {
                return Err(fail(format!(
                    "`{other}` is not modelled by the replay (tests/image_context/replay.rs): keep \
                     RUN to file operations and cargo, or teach the replay"
                )));
            }
            None => return Err(format!("{instruction}: an empty command")),
        }
    }
    Ok(())
}

/// `> file` (or `>> file` when `append`) at the end of a command.
struct Redirect {
    append: bool,
    file: String,
}

fn split_redirect(step: &[Token]) -> Result<(Vec<String>, Option<Redirect>), String> {
    let mut words = Vec::new();
    let mut redirect = None;
    let mut tokens = step.iter();
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) if redirect.is_none() => words.push(word.clone()),
            Token::Redirect { append } if redirect.is_none() => match tokens.next() {
                Some(Token::Word(file)) => {
                    redirect = Some(Redirect {
                        append: *append,
                        file: file.clone(),
                    });
                }
                _ => return Err("a redirection without a file".into()),
            },
            _ => return Err("words after a redirection".into()),
        }
    }
    Ok((words, redirect))
}

/// Short options (`-rf` → "rf") and the remaining operands.
fn options(words: &[String]) -> (String, Vec<&str>) {
    let mut flags = String::new();
    let mut operands = Vec::new();
    for word in words {
        match word.strip_prefix('-') {
            Some(short) if operands.is_empty() && !short.is_empty() => flags.push_str(short),
            _ => operands.push(word.as_str()),
        }
    }
    (flags, operands)
}

fn write(path: &Path, text: &str, append: bool) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

/// A child process in the stage's working folder with a clean environment: the host's toolchain and
/// `CARGO_HOME` (its registry cache), the stage's `ENV`, and no network.
fn child(program: &Path, stage: &StageState) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for kept in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "TMPDIR",
    ] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
    for (key, value) in &stage.env {
        match key.as_str() {
            "PATH" | "CARGO_HOME" | "RUSTUP_HOME" => {} // the image's toolchain is stood in by the host's
            "CARGO_TARGET_DIR" if value.starts_with('/') => {
                command.env(key, stage.path(value));
            }
            _ => {
                command.env(key, value);
            }
        }
    }
    command
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_COLOR", "never")
        .current_dir(stage.path("."));
    command
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn cargo(
    instruction: &Instruction,
    words: &[String],
    stage: &mut StageState,
    scratch: &Path,
    tools: &Tools,
) -> Result<(), String> {
    let command = words.join(" ");
    let subcommand: Vec<&str> = words.iter().skip(1).take(2).map(String::as_str).collect();
    match subcommand.as_slice() {
        ["build", ..] => {
            let mut cargo = child(&tools.cargo, stage);
            cargo
                .args(&words[1..])
                .args(["-Z", "unstable-options", "--unit-graph"])
                .env("RUSTC_BOOTSTRAP", "1");
            let output = cargo.output().map_err(|e| e.to_string())?;
            if !output.status.success() {
                return Err(output_text(&output));
            }
            let run = planned(instruction, &command, &output.stdout)?;
            if let Some((line, cooked)) = &stage.cooked {
                let missing: Vec<&String> = run.dependency_units.difference(cooked).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "the dependency layer (`cargo chef cook`, line {line}) does not build {} of \
                         the {} dependency units this build needs, so they would compile again on \
                         every source change; first: {}",
                        missing.len(),
                        run.dependency_units.len(),
                        missing[0]
                    ));
                }
            }
            place_binaries(stage, words, &run, tools)?;
            stage.cargo_runs.push(run);
            Ok(())
        }
        ["chef", "prepare"] | ["chef", "cook"] => {
            let chef = tools.chef.as_ref().ok_or_else(|| {
                "cargo-chef is not installed here (scripts/lint-deploy.sh installs it)".to_string()
            })?;
            let mut process = child(chef, stage);
            process.args(&words[1..]);
            if subcommand[1] == "cook" {
                // A real cook's build creates `<target dir>[/<triple>]/<profile folder>`, which
                // cargo-chef then cleans of its stubs' artifacts; a planned build creates nothing, so
                // the replay makes those folders where cargo-chef will look for them.
                for folder in cook_output_folders(stage, words) {
                    std::fs::create_dir_all(folder).map_err(|e| e.to_string())?;
                }
                let wrapper = unit_graph_wrapper(scratch)?;
                process
                    .env("CARGO", wrapper)
                    .env("PIMGATE_REPLAY_CARGO", &tools.cargo)
                    .env("RUSTC_BOOTSTRAP", "1");
            } else {
                process.env("CARGO", &tools.cargo);
            }
            let output = process.output().map_err(|e| e.to_string())?;
            if !output.status.success() {
                return Err(output_text(&output));
            }
            if subcommand[1] == "cook" && !words.iter().any(|w| w == "--no-build") {
                let run = planned(instruction, &command, &output.stdout)?;
                stage.cooked = Some((instruction.line, run.dependency_units.clone()));
                place_binaries(stage, words, &run, tools)?;
                stage.cargo_runs.push(run);
            }
            Ok(())
        }
        ["install", ..] => installed(&words[2..], tools),
        _ => Err(format!(
            "`cargo {}` is not modelled by the replay (tests/image_context/replay.rs)",
            subcommand.join(" ")
        )),
    }
}

/// `cargo install NAME --locked --version V`: pinned and locked, and the same tool is installed here
/// (the replay runs that one in place of the image's).
fn installed(arguments: &[String], tools: &Tools) -> Result<(), String> {
    let mut name = None;
    let mut version = None;
    let mut locked = false;
    let mut rest = arguments.iter();
    while let Some(argument) = rest.next() {
        match argument.as_str() {
            "--locked" => locked = true,
            "--version" => version = rest.next().cloned(),
            flag if flag.starts_with("--version=") => {
                version = Some(flag["--version=".len()..].to_string());
            }
            flag if flag.starts_with('-') => return Err(format!("`{flag}` is not modelled")),
            crate_name => match crate_name.split_once('@') {
                Some((crate_name, pinned)) => {
                    name = Some(crate_name.to_string());
                    version = Some(pinned.to_string());
                }
                None => name = Some(crate_name.to_string()),
            },
        }
    }
    let name = name.ok_or("no crate to install")?;
    let version = version.ok_or(format!(
        "`{name}` is not pinned (`--version`): the image would build with whatever is newest"
    ))?;
    if !locked {
        return Err(format!(
            "`{name}` is installed without `--locked`: its dependencies would float"
        ));
    }
    if name != "cargo-chef" {
        return Err(format!("installing `{name}` is not modelled by the replay"));
    }
    let chef = tools.chef.as_ref().ok_or(format!(
        "cargo-chef {version} is not installed here: cargo install cargo-chef --locked --version {version}"
    ))?;
    let output = Command::new(chef)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())?;
    let reported = String::from_utf8_lossy(&output.stdout);
    if !reported.split_whitespace().any(|word| word == version) {
        return Err(format!(
            "the image installs cargo-chef {version} but this machine has `{}`: \
             cargo install cargo-chef --locked --version {version}",
            reported.trim()
        ));
    }
    Ok(())
}

/// A `cargo` stand-in for `cargo chef cook`: the same command, planned instead of compiled.
fn unit_graph_wrapper(scratch: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch.join("cargo-unit-graph");
    std::fs::write(
        &path,
        "#!/bin/sh\n# cargo chef cook's build, planned but not compiled (tests/image_context).\n\
         exec \"$PIMGATE_REPLAY_CARGO\" \"$@\" -Z unstable-options --unit-graph\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    Ok(path)
}

/// Reads cargo's unit graph (the last JSON line of `stdout`).
fn planned(instruction: &Instruction, command: &str, stdout: &[u8]) -> Result<CargoRun, String> {
    let text = String::from_utf8_lossy(stdout);
    let graph: Value = text
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .ok_or(format!("no unit graph in cargo's output: {text}"))?;
    let units = graph["units"].as_array().cloned().unwrap_or_default();
    let without_dependencies = |unit: &Value| {
        let mut unit = unit.clone();
        if let Some(object) = unit.as_object_mut() {
            object.remove("dependencies");
        }
        unit
    };
    let roots = graph["roots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .filter_map(|index| units.get(usize::try_from(index).ok()?))
        .map(without_dependencies)
        .collect();
    let dependency_units = units
        .iter()
        .filter(|unit| {
            !unit["pkg_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("path+"))
        })
        .map(|unit| without_dependencies(unit).to_string())
        .collect();
    Ok(CargoRun {
        line: instruction.line,
        command: command.to_string(),
        roots,
        dependency_units,
    })
}

/// The value of `--flag VALUE` or `--flag=VALUE` (the last one), and every value of a repeated flag.
fn flag_values(words: &[String], flag: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        if let Some(value) = word.strip_prefix(&format!("{flag}=")) {
            values.push(value.to_string());
        } else if word == flag
            && let Some(value) = rest.next()
        {
            values.push(value.clone());
        }
    }
    values
}

/// cargo's folder for a profile's outputs (`dev` and `test` share `debug`, `bench` uses `release`).
fn profile_folder(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "release" | "bench" => "release",
        custom => custom,
    }
}

/// The folders cargo-chef cleans after its build, computed as cargo-chef computes them.
fn cook_output_folders(stage: &StageState, words: &[String]) -> Vec<PathBuf> {
    let target_dir = flag_values(words, "--target-dir")
        .pop()
        .map(|dir| stage.path(&dir))
        .or_else(|| stage.env.get("CARGO_TARGET_DIR").map(|dir| stage.path(dir)))
        .unwrap_or_else(|| stage.path("target"));
    let profile = if words.iter().any(|w| w == "--release") {
        "release".to_string()
    } else {
        flag_values(words, "--profile")
            .pop()
            .unwrap_or_else(|| "dev".into())
    };
    let triples = flag_values(words, "--target");
    let bases: Vec<PathBuf> = if triples.is_empty() {
        vec![target_dir]
    } else {
        triples
            .iter()
            .map(|triple| target_dir.join(triple.trim_end_matches(".json")))
            .collect()
    };
    bases
        .into_iter()
        .map(|base| base.join(profile_folder(&profile)))
        .collect()
}

/// Stands in for each binary the build would link, where cargo would put it
/// (`<target dir>[/<triple>]/<profile folder>/<name>`).
fn place_binaries(
    stage: &StageState,
    words: &[String],
    run: &CargoRun,
    tools: &Tools,
) -> Result<(), String> {
    let target_dir = match flag_values(words, "--target-dir").pop() {
        Some(dir) => stage.path(&dir),
        None => match stage.env.get("CARGO_TARGET_DIR") {
            Some(dir) => stage.path(dir),
            None => {
                let output = child(&tools.cargo, stage)
                    .args(["locate-project", "--workspace", "--message-format", "plain"])
                    .output()
                    .map_err(|e| e.to_string())?;
                let manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
                manifest
                    .parent()
                    .ok_or(format!("no workspace: {}", output_text(&output)))?
                    .join("target")
            }
        },
    };
    let triple_dir = match flag_values(words, "--target").pop() {
        Some(triple) => target_dir.join(triple.trim_end_matches(".json")),
        None => target_dir,
    };
    for unit in &run.roots {
        let is_binary = unit["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
        if !is_binary || unit["mode"] != "build" {
            continue;
        }
        let folder = profile_folder(unit["profile"]["name"].as_str().unwrap_or("dev"));
        let name = unit["target"]["name"].as_str().unwrap_or_default();
        let at = triple_dir.join(folder);
        std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
        std::fs::write(
            at.join(name),
            format!(
                "placeholder for the `{name}` binary that `{}` (Dockerfile line {}) builds\n",
                run.command, run.line
            ),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
