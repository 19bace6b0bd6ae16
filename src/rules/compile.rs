//! Reading rule files and compiling them into a [`RuleSet`], reporting every problem at once.
//!
//! Each file is parsed into a YAML value and then read key by key (rather than in one typed
//! deserialization that stops at the first mistake), so one run names every unknown key, bad value
//! and semantic problem in every file, each with its key path and a best-effort line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use yaml_serde::{Mapping, Value};

use crate::checks::NamedCheck;
use crate::checks::registry::{BuildEnv, CheckSpec};
use crate::checks::window::{self, CompiledWindow, WindowSpec};
use crate::payload::{Action, GroupAccess, ResourceType};
use crate::rules::catalog::{self, Tier};
use crate::rules::cel::Condition;
use crate::rules::index::PolicyIndex;
use crate::rules::locate::locate;
use crate::rules::matcher::{Matcher, ScopePattern, parse_tier};
use crate::rules::{
    FailureMode, FixedDecision, Guard, Policy, PolicyMode, RuleProblem, RuleSet, Severity,
};
use crate::vocabulary::Outcome;

const TOP_KEYS: &[&str] = &["policies", "guards", "windows", "lists", "groups"];
/// Keys of one entry under the top-level `groups:` (declared privileged groups).
const GROUP_DECLARATION_KEYS: &[&str] = &["tier", "holds"];
const POLICY_KEYS: &[&str] = &[
    "name",
    "description",
    "match",
    "when",
    "decide",
    "reason",
    "require",
    "auto_approve",
    "on_error",
    "allow_auto_approve_on_critical",
    "mode",
];
const GUARD_KEYS: &[&str] = &[
    "name",
    "description",
    "match",
    "when",
    "decide",
    "reason",
    "require",
    "on_error",
    "mode",
];
/// Policy keys that would let a guard approve: each gets its own error and fix, not "unknown key".
const GUARD_APPROVING_KEYS: &[&str] = &["auto_approve", "allow_auto_approve_on_critical"];
const MATCH_KEYS: &[&str] = &[
    "roles",
    "tiers",
    "groups",
    "access",
    "resource_types",
    "scopes",
    "actions",
    "principals",
];
const KNOWN_ACTIONS: &[&str] = &[
    "selfActivate",
    "selfDeactivate",
    "selfExtend",
    "selfRenew",
    "adminAssign",
    "adminRemove",
    "adminUpdate",
    "adminExtend",
    "adminRenew",
];

/// One rule file as read from disk.
struct Source {
    path: PathBuf,
    /// The name inside the rules folder (or the file name), hashed into the revision.
    name: String,
    text: String,
}

/// Problems are gathered here with their file, and located in that file's text.
struct Report {
    problems: Vec<(usize, RuleProblem)>,
}

impl Report {
    fn push(
        &mut self,
        sources: &[Source],
        file: usize,
        severity: Severity,
        key: &str,
        message: String,
        fix: String,
    ) {
        let (path, location) = match sources.get(file) {
            Some(source) => (source.path.clone(), locate(&source.text, key)),
            None => (PathBuf::new(), None),
        };
        self.problems.push((
            file,
            RuleProblem {
                severity,
                file: path,
                line: location.map(|(line, _)| line),
                column: location.map(|(_, column)| column),
                key: key.to_string(),
                message,
                fix,
            },
        ));
    }

    fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|(_, problem)| problem.severity == Severity::Error)
            .count()
    }
}

/// The per-file view used while compiling: which file problems belong to.
struct FileCtx<'a> {
    sources: &'a [Source],
    file: usize,
    report: &'a mut Report,
}

impl FileCtx<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.report.push(
            self.sources,
            self.file,
            Severity::Error,
            key,
            message.into(),
            fix.into(),
        );
    }

    fn warning(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.report.push(
            self.sources,
            self.file,
            Severity::Warning,
            key,
            message.into(),
            fix.into(),
        );
    }

    fn path(&self) -> PathBuf {
        self.sources
            .get(self.file)
            .map(|source| source.path.clone())
            .unwrap_or_default()
    }

    /// Deserializes one value, reporting a failure at `key` (refined to the unknown field it names).
    fn typed<T: DeserializeOwned>(&mut self, key: &str, value: &Value, fix: &str) -> Option<T> {
        match yaml_serde::from_value::<T>(value.clone()) {
            Ok(typed) => Some(typed),
            Err(error) => {
                let message = one_line(&error.to_string());
                let key = match quoted_after(&message, "unknown field `") {
                    Some(field) => format!("{key}.{field}"),
                    None => key.to_string(),
                };
                self.error(&key, message, fix);
                None
            }
        }
    }

    fn mapping<'v>(&mut self, key: &str, value: &'v Value, what: &str) -> Option<&'v Mapping> {
        match value {
            Value::Mapping(mapping) => Some(mapping),
            other => {
                self.error(
                    key,
                    format!("{what} must be a mapping, found {}", kind_of(other)),
                    format!("write `{what}` as `key: value` lines"),
                );
                None
            }
        }
    }

    /// Reports every key of `mapping` not in `known`, with a "did you mean".
    fn check_keys(&mut self, prefix: &str, mapping: &Mapping, known: &[&str]) {
        for (key, _) in mapping.iter() {
            let name = key_text(key);
            if known.contains(&name.as_str()) {
                continue;
            }
            let path = join(prefix, &name);
            let fix = match closest(&name, known.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? Known keys: {}", known.join(", ")),
                None => format!("known keys: {}", known.join(", ")),
            };
            self.error(&path, format!("unknown key `{name}`"), fix);
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        other => yaml_serde::to_string(other)
            .map(|text| text.trim().to_string())
            .unwrap_or_default(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between `prefix` and the next backtick, e.g. the field in "unknown field `x`".
fn quoted_after<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let start = text.find(prefix)? + prefix.len();
    let rest = text.get(start..)?;
    rest.get(..rest.find('`')?)
}

/// The known word nearest to `word` (case-insensitive edit distance ≤ a third of its length).
fn closest<'k>(word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    known
        .map(|candidate| {
            (
                strsim::levenshtein(&word, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// A hyphenated GUID, lower case, after trimming the operator's surrounding blanks; `None` for
/// anything else. The one reading of an id is [`crate::vocabulary::ids::parse_guid`].
pub fn parse_guid(text: &str) -> Option<String> {
    crate::vocabulary::ids::parse_guid(text.trim())
}

pub(crate) fn load(
    path: &Path,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<RuleProblem>> {
    let mut report = Report {
        problems: Vec::new(),
    };
    let sources = read_sources(path, &mut report);
    compile_sources(&sources, path, report, connectors)
}

/// One rule file given as text, named `name` in problems and the revision. Reads no file, so the fuzz
/// targets and property tests reach the whole parse → validate → compile path in memory.
pub(crate) fn load_text(
    name: &str,
    text: &str,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<RuleProblem>> {
    let path = PathBuf::from(name);
    let sources = vec![Source {
        path: path.clone(),
        name: name.to_string(),
        text: text.to_string(),
    }];
    let report = Report {
        problems: Vec::new(),
    };
    compile_sources(&sources, &path, report, connectors)
}

fn compile_sources(
    sources: &[Source],
    path: &Path,
    mut report: Report,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<RuleProblem>> {
    let revision = revision(sources);

    let mut documents: Vec<(usize, Mapping)> = Vec::new();
    for (file, source) in sources.iter().enumerate() {
        let mut ctx = FileCtx {
            sources,
            file,
            report: &mut report,
        };
        if let Some(document) = parse_document(&mut ctx, &source.text) {
            ctx.check_keys("", &document, TOP_KEYS);
            documents.push((file, document));
        }
    }

    let lists = collect_lists(sources, &documents, &mut report);
    let windows = collect_windows(sources, &documents, &mut report);
    let group_tiers = collect_group_tiers(sources, &documents, &lists, &mut report);
    let critical_groups: BTreeSet<String> = group_tiers
        .iter()
        .filter(|(_, tier)| **tier == Tier::Critical)
        .map(|(group, _)| group.clone())
        .collect();
    let env = BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    };

    // (policy, file, key) in load order.
    let mut compiled: Vec<(Policy, usize, String)> = Vec::new();
    let mut names: HashMap<String, (usize, String)> = HashMap::new();
    for (file, document) in &documents {
        let Some(value) = document.get("policies") else {
            continue;
        };
        let mut ctx = FileCtx {
            sources,
            file: *file,
            report: &mut report,
        };
        let items = match value {
            Value::Sequence(items) => items.as_slice(),
            Value::Null => &[],
            other => {
                ctx.error(
                    "policies",
                    format!("`policies` must be a list, found {}", kind_of(other)),
                    "write each policy as a `- name: ...` item",
                );
                continue;
            }
        };
        for (index, item) in items.iter().enumerate() {
            let key = format!("policies[{index}]");
            let name = policy_name(item);
            if let Some(name) = &name {
                match names.get(&name.to_ascii_lowercase()) {
                    Some((first_file, first_key)) => {
                        let first = sources
                            .get(*first_file)
                            .map(|s| s.name.as_str())
                            .unwrap_or("");
                        ctx.error(
                            &format!("{key}.name"),
                            format!("policy name `{name}` is already used by {first_key} in `{first}`"),
                            "give every policy a unique name: audit records and test cases refer to it",
                        );
                    }
                    None => {
                        names.insert(name.to_ascii_lowercase(), (*file, key.clone()));
                    }
                }
            }
            if let Some(policy) = compile_policy(&mut ctx, &key, item, &env, &critical_groups) {
                compiled.push((policy, *file, key));
            }
        }
    }

    let mut guards = compile_guards(sources, &documents, &env, &mut names, &mut report);
    // `tiers` also select the groups declared under `groups:` with one of those tiers.
    for (policy, _, _) in &mut compiled {
        policy.matcher.attach_group_tiers(&group_tiers);
    }
    for guard in &mut guards {
        guard.matcher.attach_group_tiers(&group_tiers);
    }

    global_checks(sources, path, &compiled, &mut report);
    super::start_bounds::warn_unbounded_starts(&compiled, &mut |file, key, message, fix| {
        report.push(sources, file, Severity::Warning, key, message, fix)
    });

    let mut problems = report.problems;
    problems.sort_by_key(|(file, problem)| (*file, problem.line.unwrap_or(usize::MAX)));
    let errors = problems
        .iter()
        .any(|(_, problem)| problem.severity == Severity::Error);
    let problems: Vec<RuleProblem> = problems.into_iter().map(|(_, problem)| problem).collect();
    if errors {
        return Err(problems);
    }
    Ok(RuleSet::new(
        revision,
        compiled.into_iter().map(|(policy, _, _)| policy).collect(),
        guards,
        problems,
    ))
}

fn read_sources(path: &Path, report: &mut Report) -> Vec<Source> {
    let mut problem = |message: String, fix: &str| {
        report.problems.push((
            0,
            RuleProblem {
                severity: Severity::Error,
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: String::new(),
                message,
                fix: fix.to_string(),
            },
        ))
    };
    let files: Vec<(PathBuf, String)> = if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                problem(
                    format!("cannot read the rules folder: {error}"),
                    "check `rules.path` and its permissions",
                );
                return Vec::new();
            }
        };
        let mut files: Vec<(PathBuf, String)> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|file| file.is_file() && is_rule_file(file))
            .filter_map(|file| {
                let name = file.file_name()?.to_string_lossy().into_owned();
                Some((file, name))
            })
            .collect();
        files.sort_by(|a, b| a.1.cmp(&b.1));
        files
    } else {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![(path.to_path_buf(), name)]
    };
    let mut sources = Vec::new();
    for (file, name) in files {
        match std::fs::read(&file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => sources.push(Source {
                    path: file,
                    name,
                    text,
                }),
                Err(_) => problem(
                    format!("`{}` is not UTF-8 text", file.display()),
                    "save the file as UTF-8",
                ),
            },
            Err(error) => problem(
                format!("cannot read `{}`: {error}", file.display()),
                "check `rules.path`: it names a rule file or a folder of them",
            ),
        }
    }
    sources
}

fn has_extension(name: &str, extensions: &[&str]) -> bool {
    extensions.iter().any(|extension| name.ends_with(extension))
}

pub(crate) fn is_rule_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    has_extension(&name, &[".yaml", ".yml"]) && !is_test_file(path)
}

pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    has_extension(&name, &[".test.yaml", ".test.yml"])
}

/// sha256 over each file's name and bytes, length-prefixed so no two file sets hash alike.
fn revision(sources: &[Source]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        for part in [source.name.as_bytes(), source.text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

fn parse_document(ctx: &mut FileCtx<'_>, text: &str) -> Option<Mapping> {
    match yaml_serde::from_str::<Value>(text) {
        Ok(Value::Mapping(mapping)) => Some(mapping),
        Ok(Value::Null) => Some(Mapping::new()),
        Ok(other) => {
            ctx.error(
                "",
                format!("a rule file must be a mapping with `policies`, `guards`, `windows` and `lists`, found {}", kind_of(&other)),
                "start the file with `policies:`",
            );
            None
        }
        Err(error) => {
            let location = error.location();
            let path = ctx.path();
            ctx.report.problems.push((
                ctx.file,
                RuleProblem {
                    severity: Severity::Error,
                    file: path,
                    line: location.as_ref().map(|at| at.line()),
                    column: location.as_ref().map(|at| at.column()),
                    key: String::new(),
                    message: format!(
                        "the file is not valid YAML: {}",
                        one_line(&error.to_string())
                    ),
                    fix: "fix the YAML syntax (indentation, quotes, `key: value`)".to_string(),
                },
            ));
            None
        }
    }
}

fn collect_lists(
    sources: &[Source],
    documents: &[(usize, Mapping)],
    report: &mut Report,
) -> BTreeMap<String, Vec<String>> {
    let mut lists = BTreeMap::new();
    let mut origin: HashMap<String, usize> = HashMap::new();
    for (file, document) in documents {
        let Some(value) = document.get("lists") else {
            continue;
        };
        let mut ctx = FileCtx {
            sources,
            file: *file,
            report,
        };
        let Some(mapping) = ctx.mapping("lists", value, "lists") else {
            continue;
        };
        for (name, entries) in mapping.iter() {
            let name = key_text(name);
            let key = format!("lists.{name}");
            if let Some(first) = origin.get(&name) {
                let first = sources.get(*first).map(|s| s.name.as_str()).unwrap_or("");
                ctx.error(
                    &key,
                    format!("list `{name}` is already defined in `{first}`"),
                    "list names are global across rule files: rename one",
                );
                continue;
            }
            let Some(items) = ctx.typed::<Vec<String>>(
                &key,
                entries,
                "a list is a YAML list of object ids (GUIDs)",
            ) else {
                continue;
            };
            let mut ids = Vec::new();
            for (index, item) in items.iter().enumerate() {
                match parse_guid(item) {
                    Some(id) => ids.push(id),
                    None => ctx.error(
                        &format!("{key}[{index}]"),
                        format!("`{item}` is not a GUID"),
                        "lists hold Entra object ids, e.g. `0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d`",
                    ),
                }
            }
            origin.insert(name.clone(), *file);
            lists.insert(name, ids);
        }
    }
    lists
}

/// The more severe of two tiers (`Tier` is declared most severe first but has no order).
fn most_severe(a: Tier, b: Tier) -> Tier {
    let rank = |tier: Tier| match tier {
        Tier::Critical => 0,
        Tier::High => 1,
        Tier::Medium => 2,
        Tier::Low => 3,
    };
    if rank(b) < rank(a) { b } else { a }
}

/// The top-level `groups:` of every file: which PIM for Groups groups are privileged. A role-assignable
/// group can hold Global Administrator, and PIM for Groups activation then hands that role out, so
/// the Critical-tier rule must know such groups. Keys are group ids or list names (every member);
/// an entry gives a `tier`, the roles it `holds`, or both; the group's tier is the highest of them.
/// Returns group id (lower case) to tier.
fn collect_group_tiers(
    sources: &[Source],
    documents: &[(usize, Mapping)],
    lists: &BTreeMap<String, Vec<String>>,
    report: &mut Report,
) -> BTreeMap<String, Tier> {
    let mut tiers: BTreeMap<String, Tier> = BTreeMap::new();
    for (file, document) in documents {
        let Some(value) = document.get("groups") else {
            continue;
        };
        let mut ctx = FileCtx {
            sources,
            file: *file,
            report,
        };
        let Some(mapping) = ctx.mapping("groups", value, "groups") else {
            continue;
        };
        for (name, entry) in mapping.iter() {
            let name = key_text(name);
            let key = format!("groups.{name}");
            let members = match parse_guid(&name) {
                Some(id) => vec![id],
                None => match lists.get(name.trim()) {
                    Some(members) => members.clone(),
                    None => {
                        ctx.error(
                            &key,
                            format!("`{name}` is neither a group id (GUID) nor a list name"),
                            "use the group's object id, or define the list under `lists:`",
                        );
                        continue;
                    }
                },
            };
            let Some(declaration) = ctx.mapping(&key, entry, "a group declaration") else {
                continue;
            };
            ctx.check_keys(&key, declaration, GROUP_DECLARATION_KEYS);
            let mut tier: Option<Tier> = None;
            let mut raise = |found: Tier| {
                tier = Some(tier.map_or(found, |current| most_severe(current, found)));
            };
            if let Some(value) = declaration.get("tier").filter(|value| !value.is_null()) {
                match ctx
                    .typed::<String>(&format!("{key}.tier"), value, "write `tier: Critical`")
                    .as_deref()
                    .map(parse_tier)
                {
                    Some(Some(found)) => raise(found),
                    Some(None) => ctx.error(
                        &format!("{key}.tier"),
                        "not a tier",
                        "use one of Critical, High, Medium, Low",
                    ),
                    None => {}
                }
            }
            if let Some(value) = declaration.get("holds").filter(|value| !value.is_null()) {
                let holds = ctx
                    .typed::<Vec<String>>(
                        &format!("{key}.holds"),
                        value,
                        "write `holds: [Global Administrator]`",
                    )
                    .unwrap_or_default();
                for (index, role) in holds.iter().enumerate() {
                    match resolve_role(role).and_then(|id| catalog::by_id(&id)) {
                        Some(role) => raise(role.tier),
                        None => ctx.error(
                            &format!("{key}.holds[{index}]"),
                            format!("`{role}` is not a built-in Entra role"),
                            "name the built-in Entra roles the group is assigned, e.g. `Global Administrator`; for other privileges give `tier:`",
                        ),
                    }
                }
            }
            let Some(tier) = tier else {
                ctx.error(
                    &key,
                    "the declaration gives neither `tier` nor `holds`",
                    "add `tier: Critical` or `holds: [Global Administrator]`",
                );
                continue;
            };
            for member in members {
                let entry = tiers.entry(member).or_insert(tier);
                *entry = most_severe(*entry, tier);
            }
        }
    }
    tiers
}

fn collect_windows(
    sources: &[Source],
    documents: &[(usize, Mapping)],
    report: &mut Report,
) -> BTreeMap<String, Arc<CompiledWindow>> {
    let mut windows = BTreeMap::new();
    let mut origin: HashMap<String, usize> = HashMap::new();
    for (file, document) in documents {
        let Some(value) = document.get("windows") else {
            continue;
        };
        let mut ctx = FileCtx {
            sources,
            file: *file,
            report,
        };
        let Some(mapping) = ctx.mapping("windows", value, "windows") else {
            continue;
        };
        for (name, spec) in mapping.iter() {
            let name = key_text(name);
            let key = format!("windows.{name}");
            if let Some(first) = origin.get(&name) {
                let first = sources.get(*first).map(|s| s.name.as_str()).unwrap_or("");
                ctx.error(
                    &key,
                    format!("window `{name}` is already defined in `{first}`"),
                    "window names are global across rule files: rename one",
                );
                continue;
            }
            origin.insert(name.clone(), *file);
            let Some(spec) = ctx.typed::<WindowSpec>(
                &key,
                spec,
                "a window has `timezone`, `weekly` and optional `except_dates`",
            ) else {
                continue;
            };
            match window::compile(&name, &spec) {
                Ok(compiled) => {
                    windows.insert(name, Arc::new(compiled));
                }
                Err(problems) => {
                    for problem in problems {
                        ctx.error(&join(&key, &problem.key), problem.message, problem.fix);
                    }
                }
            }
        }
    }
    windows
}

fn policy_name(item: &Value) -> Option<String> {
    match item {
        Value::Mapping(mapping) => mapping
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn compile_policy(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: &Value,
    env: &BuildEnv<'_>,
    critical_groups: &BTreeSet<String>,
) -> Option<Policy> {
    let errors_before = ctx.report.errors();
    let mapping = ctx.mapping(key, value, "a policy")?;
    ctx.check_keys(key, mapping, POLICY_KEYS);
    let field = |name: &str| mapping.get(name).filter(|value| !value.is_null());
    let path = |name: &str| format!("{key}.{name}");

    let name = match field("name") {
        None => {
            ctx.error(
                &path("name"),
                "the policy has no `name`",
                "add `name: some-unique-name`: reasons and audit records cite it",
            );
            None
        }
        Some(value) => ctx
            .typed::<String>(&path("name"), value, "a name is a string")
            .filter(|name| !name.trim().is_empty()),
    };
    let description = field("description").and_then(|value| {
        ctx.typed::<String>(&path("description"), value, "a description is a string")
    });
    let matcher = compile_match(
        ctx,
        &path("match"),
        field("match"),
        env.lists,
        Matcher::default(),
    );
    let when = field("when").and_then(|value| {
        let source = ctx.typed::<String>(
            &path("when"),
            value,
            "`when` is a CEL expression in a string",
        )?;
        match Condition::compile(&source) {
            Ok(condition) => Some(condition),
            Err(problem) => {
                ctx.error(&path("when"), problem.message, problem.fix);
                None
            }
        }
    });
    let decide = field("decide").and_then(|value| {
        let text = ctx.typed::<String>(
            &path("decide"),
            value,
            "`decide` is Approved, AutoApproved or Denied",
        )?;
        let outcome = [Outcome::Approved, Outcome::AutoApproved, Outcome::Denied]
            .into_iter()
            .find(|outcome| outcome.as_str().eq_ignore_ascii_case(text.trim()));
        if outcome.is_none() {
            ctx.error(
                &path("decide"),
                format!("unknown outcome `{text}`"),
                "use Approved, AutoApproved or Denied",
            );
        }
        outcome
    });
    let reason = field("reason").and_then(|value| {
        ctx.typed::<String>(
            &path("reason"),
            value,
            "a reason is a sentence for the requester",
        )
    });
    let require = compile_checks(ctx, &path("require"), field("require"), env);
    let auto_approve = compile_checks(ctx, &path("auto_approve"), field("auto_approve"), env);
    let on_error = field("on_error")
        .and_then(|value| {
            ctx.typed::<FailureMode>(
                &path("on_error"),
                value,
                "use `deny` (the default) or `approve`",
            )
        })
        .unwrap_or_default();
    let allow_critical = field("allow_auto_approve_on_critical")
        .and_then(|value| {
            ctx.typed::<bool>(
                &path("allow_auto_approve_on_critical"),
                value,
                "use true or false",
            )
        })
        .unwrap_or(false);
    let mode = field("mode")
        .and_then(|value| {
            ctx.typed::<PolicyMode>(
                &path("mode"),
                value,
                "use `enforce` (the default) or `audit` (record what the policy would decide, without deciding)",
            )
        })
        .unwrap_or_default();

    let has_checks = field("require").is_some() || field("auto_approve").is_some();
    if field("decide").is_some() && has_checks {
        ctx.error(
            &path("decide"),
            "`decide` gives a fixed answer, so the policy's `require`/`auto_approve` checks would never run",
            "remove `decide` and `reason`, or remove the checks",
        );
    }
    if field("decide").is_some() && field("reason").is_none() {
        ctx.error(
            &path("reason"),
            "`decide` needs a `reason`",
            "add `reason:` with a sentence the requester sees in PIM",
        );
    }
    if field("reason").is_some() && field("decide").is_none() {
        ctx.error(
            &path("reason"),
            "`reason` only applies with `decide`",
            "remove `reason`, or add `decide:`; checks write their own reasons",
        );
    }
    let auto_approves = decide == Some(Outcome::AutoApproved)
        || auto_approve
            .as_ref()
            .is_some_and(|checks| !checks.is_empty());
    // Applies to `mode: audit` too: an audit policy is a rehearsal of one that will be enforced, and
    // switching it to `enforce` must not be the moment it turns out to be illegal.
    let at = if decide == Some(Outcome::AutoApproved) {
        path("decide")
    } else {
        path("auto_approve")
    };
    if auto_approves && !allow_critical && matcher.as_ref().is_some_and(Matcher::can_match_critical)
    {
        ctx.error(
            &at,
            "this policy can auto-approve a Critical-tier role: its `match` names a Critical role, includes tier Critical, or does not restrict roles or tiers",
            "restrict `match` (e.g. `tiers: [High, Medium, Low]` or named non-Critical roles), or set `allow_auto_approve_on_critical: true` if skipping human approval for Critical roles is intended",
        );
    }

    if auto_approves
        && !allow_critical
        && let Some(group) = matcher
            .as_ref()
            .and_then(|matcher| matcher.critical_group_it_can_match(critical_groups))
    {
        ctx.error(
            &at,
            format!(
                "this policy can auto-approve group `{group}`, declared Critical under `groups:`: its `match` names the group or does not restrict groups"
            ),
            "restrict `match` to other groups (`groups: [...]`) or to roles (`resource_types: [entraRoles, azureResources]`), or set `allow_auto_approve_on_critical: true` if skipping human approval for that group is intended",
        );
    }

    if ctx.report.errors() > errors_before {
        return None;
    }
    Some(Policy {
        name: name?,
        description,
        source: ctx.path(),
        decide: match (decide, reason) {
            (Some(outcome), Some(reason)) => Some(FixedDecision { outcome, reason }),
            _ => None,
        },
        require: require.unwrap_or_default(),
        auto_approve: auto_approve.unwrap_or_default(),
        on_error,
        matcher: matcher?,
        when,
        allow_auto_approve_on_critical: allow_critical,
        mode,
    })
}

/// Every file's `guards:` list, in load order. A guard's name must differ from every policy's and
/// every other guard's (`names` holds the policies' already), and a guard no request can match is an
/// error: an operator who writes "leavers are always denied" must not believe it holds when it cannot.
fn compile_guards(
    sources: &[Source],
    documents: &[(usize, Mapping)],
    env: &BuildEnv<'_>,
    names: &mut HashMap<String, (usize, String)>,
    report: &mut Report,
) -> Vec<Guard> {
    let mut guards = Vec::new();
    for (file, document) in documents {
        let Some(value) = document.get("guards") else {
            continue;
        };
        let mut ctx = FileCtx {
            sources,
            file: *file,
            report,
        };
        let items = match value {
            Value::Sequence(items) => items.as_slice(),
            Value::Null => &[],
            other => {
                ctx.error(
                    "guards",
                    format!("`guards` must be a list, found {}", kind_of(other)),
                    "write each guard as a `- name: ...` item",
                );
                continue;
            }
        };
        for (index, item) in items.iter().enumerate() {
            let key = format!("guards[{index}]");
            if let Some(name) = policy_name(item) {
                match names.get(&name.to_ascii_lowercase()) {
                    Some((first_file, first_key)) => {
                        let first = sources
                            .get(*first_file)
                            .map(|s| s.name.as_str())
                            .unwrap_or("");
                        let what = if first_key.starts_with("guards") {
                            "another guard"
                        } else {
                            "a policy"
                        };
                        ctx.error(
                            &format!("{key}.name"),
                            format!("guard name `{name}` is already used by {what}, {first_key} in `{first}`"),
                            "give every guard and policy a unique name: reasons, audit records and test cases refer to it",
                        );
                    }
                    None => {
                        names.insert(name.to_ascii_lowercase(), (*file, key.clone()));
                    }
                }
            }
            if let Some(guard) = compile_guard(&mut ctx, &key, item, env) {
                guards.push(guard);
            }
        }
    }
    guards
}

fn compile_guard(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: &Value,
    env: &BuildEnv<'_>,
) -> Option<Guard> {
    let errors_before = ctx.report.errors();
    let mapping = ctx.mapping(key, value, "a guard")?;
    let path = |name: &str| format!("{key}.{name}");
    let mut known: Vec<&str> = GUARD_KEYS.to_vec();
    known.extend_from_slice(GUARD_APPROVING_KEYS);
    ctx.check_keys(key, mapping, &known);
    for approving in GUARD_APPROVING_KEYS {
        if mapping.contains_key(*approving) {
            ctx.error(
                &path(approving),
                format!("a guard can only deny, so `{approving}` has no place in it"),
                "remove it; to auto-approve, write a policy (under `policies:`) with `auto_approve` checks",
            );
        }
    }
    let field = |name: &str| mapping.get(name).filter(|value| !value.is_null());

    let name = match field("name") {
        None => {
            ctx.error(
                &path("name"),
                "the guard has no `name`",
                "add `name: some-unique-name`: reasons and audit records cite it",
            );
            None
        }
        Some(value) => ctx
            .typed::<String>(&path("name"), value, "a name is a string")
            .filter(|name| !name.trim().is_empty()),
    };
    let description = field("description").and_then(|value| {
        ctx.typed::<String>(&path("description"), value, "a description is a string")
    });
    let matcher = compile_match(
        ctx,
        &path("match"),
        field("match"),
        env.lists,
        Matcher::for_guard(),
    );
    if let Some(why) = matcher.as_ref().and_then(Matcher::contradiction) {
        ctx.error(
            &path("match"),
            format!("this guard can never apply: {why}"),
            "remove the contradicting key, or split the guard in two (one per kind of request)",
        );
    }
    let when = field("when").and_then(|value| {
        let source = ctx.typed::<String>(
            &path("when"),
            value,
            "`when` is a CEL expression in a string",
        )?;
        match Condition::compile(&source) {
            Ok(condition) => Some(condition),
            Err(problem) => {
                ctx.error(&path("when"), problem.message, problem.fix);
                None
            }
        }
    });
    let denies = field("decide").and_then(|value| {
        let text = ctx.typed::<String>(&path("decide"), value, "a guard's `decide` is Denied")?;
        let outcome = [Outcome::Approved, Outcome::AutoApproved, Outcome::Denied]
            .into_iter()
            .find(|outcome| outcome.as_str().eq_ignore_ascii_case(text.trim()));
        match outcome {
            Some(Outcome::Denied) => Some(()),
            Some(_) => {
                ctx.error(
                    &path("decide"),
                    format!("a guard can only deny, never `{text}`: it applies whichever policy decides"),
                    "write `decide: Denied` with a `reason`; to approve, write a policy (under `policies:`)",
                );
                None
            }
            None => {
                ctx.error(
                    &path("decide"),
                    format!("unknown outcome `{text}`"),
                    "a guard's fixed answer is `decide: Denied`",
                );
                None
            }
        }
    });
    let reason = field("reason").and_then(|value| {
        ctx.typed::<String>(
            &path("reason"),
            value,
            "a reason is a sentence for the requester",
        )
    });
    let require = compile_checks(ctx, &path("require"), field("require"), env);
    let on_error = field("on_error")
        .and_then(|value| {
            ctx.typed::<FailureMode>(
                &path("on_error"),
                value,
                "use `deny` (the default) or `approve` (the answer is then at most Approved)",
            )
        })
        .unwrap_or_default();
    let mode = field("mode")
        .and_then(|value| {
            ctx.typed::<PolicyMode>(
                &path("mode"),
                value,
                "use `enforce` (the default) or `audit` (record what the guard would do, without doing it)",
            )
        })
        .unwrap_or_default();

    let has_checks = require.as_ref().is_some_and(|checks| !checks.is_empty());
    if field("decide").is_some() && field("require").is_some() {
        ctx.error(
            &path("decide"),
            "`decide` gives a fixed denial, so the guard's `require` checks would never run",
            "remove `decide` and `reason`, or remove the checks",
        );
    }
    if field("decide").is_some() && field("reason").is_none() {
        ctx.error(
            &path("reason"),
            "`decide` needs a `reason`",
            "add `reason:` with a sentence the requester sees in PIM",
        );
    }
    if field("reason").is_some() && field("decide").is_none() {
        ctx.error(
            &path("reason"),
            "`reason` only applies with `decide: Denied`",
            "remove `reason`, or add `decide: Denied`; checks write their own reasons",
        );
    }
    if field("decide").is_none() && require.is_some() && !has_checks {
        ctx.error(
            &path("require"),
            "the guard has no checks and no fixed denial, so it could never deny anything",
            "add `require:` checks, or `decide: Denied` with a `reason`",
        );
    }

    if ctx.report.errors() > errors_before {
        return None;
    }
    Some(Guard {
        name: name?,
        description,
        source: ctx.path(),
        matcher: matcher?,
        when,
        require: require.unwrap_or_default(),
        deny_reason: denies.and(reason),
        on_error,
        mode,
    })
}

fn compile_checks(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: Option<&Value>,
    env: &BuildEnv<'_>,
) -> Option<Vec<NamedCheck>> {
    let items = match value {
        None => return Some(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            ctx.error(
                key,
                format!("expected a list of checks, found {}", kind_of(other)),
                "write each check as a list item, e.g. `- duration: { max: PT2H }`",
            );
            return None;
        }
    };
    let mut checks = Vec::new();
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{index}]");
        let Some(spec) = check_spec(ctx, &item_key, item) else {
            ok = false;
            continue;
        };
        match spec.build(env) {
            Ok(check) => {
                if let Some(connector) = spec.required_connector()
                    && !env.connectors.is_configured(connector)
                {
                    ctx.warning(
                        &format!("{item_key}.{}", spec.kind()),
                        format!(
                            "the `{connector}` connector is not configured, so this check cannot be evaluated and the policy's (or guard's) `on_error` decides"
                        ),
                        format!("configure `[connectors.{connector}]` in the service's config file"),
                    );
                }
                checks.push(check);
            }
            Err(problems) => {
                ok = false;
                let prefix = format!("{item_key}.{}", spec.kind());
                for problem in problems {
                    ctx.error(&join(&prefix, &problem.key), problem.message, problem.fix);
                }
            }
        }
    }
    ok.then_some(checks)
}

/// `- duration: { max: PT2H }` is a one-key mapping, which `yaml_serde` reads as an enum only through
/// `singleton_map` (its default spelling is a YAML tag, `!duration`).
fn check_spec(ctx: &mut FileCtx<'_>, key: &str, item: &Value) -> Option<CheckSpec> {
    match yaml_serde::from_value::<CheckSpec>(item.clone()) {
        Ok(spec) => Some(spec),
        Err(error) => {
            let message = one_line(&error.to_string());
            let kind = match item {
                Value::Mapping(mapping) if mapping.len() == 1 => {
                    mapping.keys().next().map(key_text)
                }
                _ => None,
            };
            let key = match (quoted_after(&message, "unknown field `"), kind) {
                (Some(field), Some(kind)) => format!("{key}.{kind}.{field}"),
                (Some(field), None) => format!("{key}.{field}"),
                _ => key.to_string(),
            };
            ctx.error(
                &key,
                message,
                "a check is one of duration, justification, ticket, principal, window, start, e.g. `- duration: { max: PT2H }`",
            );
            None
        }
    }
}

fn string_list(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: &Value,
    example: &str,
) -> Option<Vec<String>> {
    let items = ctx.typed::<Vec<String>>(
        key,
        value,
        &format!("write a list of strings, e.g. `{example}`"),
    )?;
    if items.is_empty() {
        let field = key.rsplit('.').next().unwrap_or(key);
        ctx.error(
            key,
            format!("an empty `{field}` list matches nothing"),
            format!("remove `{field}` to match any, or list values, e.g. `{example}`"),
        );
        return None;
    }
    Some(items)
}

fn resolve_role(name: &str) -> Option<String> {
    if let Some(id) = parse_guid(name) {
        return Some(id);
    }
    let name = name.trim();
    catalog::by_name(name)
        .or_else(|| {
            catalog::all()
                .iter()
                .find(|role| role.name.eq_ignore_ascii_case(name))
        })
        .map(|role| role.id.to_ascii_lowercase())
}

fn compile_match(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: Option<&Value>,
    lists: &BTreeMap<String, Vec<String>>,
    defaults: Matcher,
) -> Option<Matcher> {
    let Some(value) = value else {
        return Some(defaults);
    };
    let mapping = ctx.mapping(key, value, "match")?;
    let errors_before = ctx.report.errors();
    ctx.check_keys(key, mapping, MATCH_KEYS);
    let mut matcher = defaults;
    for (name, value) in mapping.iter() {
        let name = key_text(name);
        let field_key = format!("{key}.{name}");
        let example = match name.as_str() {
            "roles" => "roles: [Exchange Administrator]",
            "tiers" => "tiers: [High, Medium]",
            "groups" | "principals" => "[0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d]",
            "access" => "access: [member]",
            "resource_types" => "resource_types: [entraRoles]",
            "scopes" => "scopes: [/subscriptions/<id>/*]",
            "actions" => "actions: [selfExtend, selfRenew]",
            _ => continue,
        };
        let Some(items) = string_list(ctx, &field_key, value, example) else {
            continue;
        };
        let at = |index: usize| format!("{field_key}[{index}]");
        match name.as_str() {
            "roles" => {
                let mut ids = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match resolve_role(item) {
                        Some(id) => ids.push(id),
                        None => {
                            let suggestions = catalog::suggest(item, 3);
                            let fix = if suggestions.is_empty() {
                                "use an Entra built-in role name or a role definition GUID"
                                    .to_string()
                            } else {
                                format!(
                                    "did you mean {}? Or use a role definition GUID",
                                    quote_all(&suggestions)
                                )
                            };
                            ctx.error(&at(index), format!("unknown role `{item}`"), fix);
                        }
                    }
                }
                matcher.roles = Some(ids);
            }
            "tiers" => {
                let mut tiers = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match parse_tier(item) {
                        Some(tier) => tiers.push(tier),
                        None => ctx.error(
                            &at(index),
                            format!("unknown tier `{item}`"),
                            "use Critical, High, Medium or Low",
                        ),
                    }
                }
                matcher.tiers = Some(tiers);
            }
            "groups" => {
                let mut ids = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match parse_guid(item) {
                        Some(id) => ids.push(id),
                        None => ctx.error(
                            &at(index),
                            format!("`{item}` is not a GUID"),
                            "groups are matched by object id",
                        ),
                    }
                }
                matcher.groups = Some(ids);
            }
            "access" => {
                let mut access = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match item.trim().to_ascii_lowercase().as_str() {
                        "member" => access.push(GroupAccess::Member),
                        "owner" => access.push(GroupAccess::Owner),
                        _ => ctx.error(
                            &at(index),
                            format!("unknown group access `{item}`"),
                            "use member or owner",
                        ),
                    }
                }
                matcher.access = Some(access);
            }
            "resource_types" => {
                let mut types = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let found = [
                        ResourceType::EntraRoles,
                        ResourceType::EntraGroups,
                        ResourceType::AzureResources,
                    ]
                    .into_iter()
                    .find(|kind| kind.as_str().eq_ignore_ascii_case(item.trim()));
                    match found {
                        Some(kind) => types.push(kind),
                        None => ctx.error(
                            &at(index),
                            format!("unknown resource type `{item}`"),
                            "use entraRoles, entraGroups or azureResources",
                        ),
                    }
                }
                matcher.resource_types = Some(types);
            }
            "scopes" => {
                let mut scopes = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let body = item.trim().strip_suffix("/*").unwrap_or(item.trim());
                    if !item.trim().starts_with('/') || body.contains('*') {
                        ctx.error(
                            &at(index),
                            format!("`{item}` is not a scope pattern"),
                            "a scope starts with `/`; end it with `/*` to include everything below, e.g. `/subscriptions/<id>/*`",
                        );
                        continue;
                    }
                    scopes.push(ScopePattern::parse(item));
                }
                matcher.scopes = Some(scopes);
            }
            "actions" => {
                let mut actions = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    if let Action::Other(other) = Action::parse(item.trim()) {
                        let fix = match closest(&other, KNOWN_ACTIONS.iter().copied()) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("known actions: {}", KNOWN_ACTIONS.join(", ")),
                        };
                        ctx.warning(
                            &at(index),
                            format!("`{other}` is not an action PIM is known to send"),
                            fix,
                        );
                    }
                    actions.push(item.trim().to_ascii_lowercase());
                }
                matcher.actions = actions;
            }
            "principals" => {
                let mut ids = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    if let Some(id) = parse_guid(item) {
                        ids.push(id);
                    } else if let Some(members) = lists.get(item.trim()) {
                        ids.extend(members.iter().cloned());
                    } else {
                        let known: Vec<&str> = lists.keys().map(String::as_str).collect();
                        let fix = match closest(item, known.iter().copied()) {
                            Some(near) => format!(
                                "did you mean `{near}`? Define lists under `lists:`, or use an object id (GUID)"
                            ),
                            None => "define the list under `lists:`, or use an object id (GUID)"
                                .to_string(),
                        };
                        ctx.error(&at(index), format!("unknown list `{item}`"), fix);
                    }
                }
                matcher.principals = Some(ids);
            }
            _ => {}
        }
    }
    (ctx.report.errors() == errors_before).then_some(matcher)
}

fn quote_all(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Problems that need every policy: an empty rule set, and policies no request can reach.
fn global_checks(
    sources: &[Source],
    path: &Path,
    compiled: &[(Policy, usize, String)],
    report: &mut Report,
) {
    if compiled.is_empty() && report.errors() == 0 {
        report.problems.push((
            0,
            RuleProblem {
                severity: Severity::Warning,
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: "policies".to_string(),
                message: "there are no policies: every request will be denied".to_string(),
                fix: "add policies, e.g. the examples shipped in `rules/`".to_string(),
            },
        ));
    }
    // Only an enforcing policy without `when` can make a later one unreachable (an `audit`
    // catch-all never decides). They are indexed as they go by, so each policy is compared only
    // with the earlier ones filed under its own role, group, scope, principal, tier or action, not
    // with every one above it: thousands of policies for distinct targets load in linear time
    // (many policies for one role still compare with each other).
    let mut coverers = PolicyIndex::default();
    for (position, (policy, file, key)) in compiled.iter().enumerate() {
        let covers = |earlier: &Policy| earlier.matcher.covers(&policy.matcher);
        let shadow = match coverers.covering_candidates(&policy.matcher) {
            Some(mut candidates) => candidates.find_map(|earlier| {
                compiled
                    .get(earlier)
                    .filter(|(earlier, _, _)| covers(earlier))
            }),
            None => compiled.iter().take(position).find(|(earlier, _, _)| {
                earlier.mode == PolicyMode::Enforce && earlier.when.is_none() && covers(earlier)
            }),
        };
        if policy.mode == PolicyMode::Enforce && policy.when.is_none() {
            coverers.insert(position, &policy.matcher);
        }
        if let Some((earlier, _, _)) = shadow {
            report.push(
                sources,
                *file,
                Severity::Warning,
                key,
                format!(
                    "policy `{}` is unreachable: `{}` above it matches every request it matches (first match wins)",
                    policy.name, earlier.name
                ),
                format!("move `{}` above `{}`, or remove it", policy.name, earlier.name),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{closest, parse_guid};

    #[test]
    fn near_misses_get_a_suggestion_and_strangers_do_not() {
        assert_eq!(
            closest("requre", ["require", "reason"].into_iter()),
            Some("require")
        );
        assert_eq!(closest("colour", ["require", "reason"].into_iter()), None);
    }

    #[test]
    fn only_hyphenated_guids_are_accepted() {
        assert_eq!(
            parse_guid("0C2D8F4E-1111-4A2B-9C3D-5E6F7A8B9C0D").as_deref(),
            Some("0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d")
        );
        assert_eq!(parse_guid("0c2d8f4e11114a2b9c3d5e6f7a8b9c0d"), None);
        assert_eq!(parse_guid("break-glass"), None);
    }
}
