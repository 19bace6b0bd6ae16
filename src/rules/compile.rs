//! Compiling rule files into a [`RuleSet`], reporting every problem at once.
//!
//! Each file is read into a typed `RuleFileSpec` of `spec.rs` (leniently: a wrong value is a
//! problem, not the end of the read), each spec is validated on its own terms (`validate`), then built
//! against the rest of the rule set (`build`: lists, windows, declared groups, connectors). One run
//! names every unknown key, bad value and semantic problem in every file, each with its key path and
//! a best-effort line (`locate`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checks::registry::BuildEnv;
use crate::rules::catalog::Tier;
use crate::rules::index::PolicyIndex;
use crate::rules::{Policy, PolicyMode, RuleSet};
use crate::vocabulary::diagnostic::Diagnostic;

use super::build::{build_guard, build_policy};
use super::declarations::{collect_group_tiers, collect_lists, collect_windows};
use super::report::{Report, Source, kind_of};
use super::sources::{parse_file, read_sources, revision};
use super::spec::{Field, Items, RuleFileSpec};
use super::validate::{validate_guard, validate_policy};

pub use super::sources::{is_rule_file, is_test_file};

/// A hyphenated GUID, lower case, after trimming the operator's surrounding blanks; `None` for
/// anything else. The one reading of an id is [`crate::vocabulary::ids::parse_guid`].
pub fn parse_guid(text: &str) -> Option<String> {
    crate::vocabulary::ids::parse_guid(text.trim())
}

pub(crate) fn load(
    path: &Path,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut report = Report::default();
    let sources = read_sources(path, &mut report);
    compile_sources(&sources, path, report, connectors)
}

/// One rule file given as text, named `name` in problems and the revision. Reads no file, so the fuzz
/// targets and property tests reach the whole parse → validate → compile path in memory.
pub(crate) fn load_text(
    name: &str,
    text: &str,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let path = PathBuf::from(name);
    let sources = vec![Source {
        path: path.clone(),
        name: name.to_string(),
        text: text.to_string(),
    }];
    compile_sources(&sources, &path, Report::default(), connectors)
}

/// Policy and guard names, unique across all of them (case-insensitive): reasons, audit records and
/// test cases refer to them.
#[derive(Default)]
struct Names(HashMap<String, (usize, String)>);

impl Names {
    /// Claims the name of the rule at `key` (read from the item as written); the file and key of the
    /// rule that holds it already, if any.
    fn claim(
        &mut self,
        item: &yaml_serde::Value,
        file: usize,
        key: &str,
    ) -> Option<(String, usize, String)> {
        let name = item.get("name").and_then(yaml_serde::Value::as_str)?;
        match self.0.get(&name.to_ascii_lowercase()) {
            Some((first_file, first_key)) => {
                Some((name.to_string(), *first_file, first_key.clone()))
            }
            None => {
                self.0
                    .insert(name.to_ascii_lowercase(), (file, key.to_string()));
                None
            }
        }
    }
}

/// The items of `policies:` or `guards:`, each read as it is reached; `None` when the key is absent
/// or holds something other than a list, which is reported.
fn list_items<'s, T: serde::de::DeserializeOwned>(
    list: Option<&'s Items<T>>,
    key: &str,
    item: &str,
    report: &mut dyn FnMut(Diagnostic),
) -> Option<impl Iterator<Item = Field<T>> + 's> {
    match list?.read() {
        Ok(items) => Some(items),
        Err(written) => {
            report(Diagnostic::error(
                key,
                format!("`{key}` must be a list, found {}", kind_of(written)),
                format!("write each {item} as a `- name: ...` item"),
            ));
            None
        }
    }
}

fn compile_sources(
    sources: &[Source],
    path: &Path,
    mut report: Report,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let revision = revision(sources);

    let mut files: Vec<(usize, RuleFileSpec)> = Vec::new();
    for file in 0..sources.len() {
        let mut out = Vec::new();
        let spec = parse_file(&mut report, sources, file, &mut out);
        report.add_all(sources, file, out);
        if let Some(spec) = spec {
            files.push((file, spec));
        }
    }

    let lists = collect_lists(sources, &files, &mut report);
    let windows = collect_windows(sources, &files, &mut report);
    let group_tiers = collect_group_tiers(sources, &files, &lists, &mut report);
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
    let file_name = |file: usize| sources.get(file).map(|s| s.name.as_str()).unwrap_or("");
    let file_path = |file: usize| {
        sources
            .get(file)
            .map(|s| s.path.clone())
            .unwrap_or_default()
    };

    // (policy, file, key) in load order.
    let mut compiled: Vec<(Policy, usize, String)> = Vec::new();
    let mut names = Names::default();
    for (file, spec) in &files {
        let Some(items) = list_items(
            spec.policies.as_ref(),
            "policies",
            "policy",
            &mut |problem| report.add(sources, *file, problem),
        ) else {
            continue;
        };
        for (index, item) in items.enumerate() {
            let key = format!("policies[{index}]");
            let mut out = Vec::new();
            if let Some((name, first_file, first_key)) = names.claim(&item.raw, *file, &key) {
                out.push(Diagnostic::error(
                    format!("{key}.name"),
                    format!(
                        "policy name `{name}` is already used by {first_key} in `{}`",
                        file_name(first_file)
                    ),
                    "give every policy a unique name: audit records and test cases refer to it",
                ));
            }
            let policy = validate_policy(&mut out, &key, &item).and_then(|spec| {
                build_policy(
                    &mut out,
                    &key,
                    spec,
                    &env,
                    &critical_groups,
                    &file_path(*file),
                )
            });
            report.add_all(sources, *file, out);
            if let Some(policy) = policy {
                compiled.push((policy, *file, key));
            }
        }
    }

    // A guard's name must differ from every policy's and every other guard's.
    let mut guards = Vec::new();
    for (file, spec) in &files {
        let Some(items) = list_items(spec.guards.as_ref(), "guards", "guard", &mut |problem| {
            report.add(sources, *file, problem)
        }) else {
            continue;
        };
        for (index, item) in items.enumerate() {
            let key = format!("guards[{index}]");
            let mut out = Vec::new();
            if let Some((name, first_file, first_key)) = names.claim(&item.raw, *file, &key) {
                let what = if first_key.starts_with("guards") {
                    "another guard"
                } else {
                    "a policy"
                };
                out.push(Diagnostic::error(
                    format!("{key}.name"),
                    format!("guard name `{name}` is already used by {what}, {first_key} in `{}`", file_name(first_file)),
                    "give every guard and policy a unique name: reasons, audit records and test cases refer to it",
                ));
            }
            let guard = validate_guard(&mut out, &key, &item)
                .and_then(|spec| build_guard(&mut out, &key, spec, &env, &file_path(*file)));
            report.add_all(sources, *file, out);
            guards.extend(guard);
        }
    }

    // `tiers` also select the groups declared under `groups:` with one of those tiers.
    for (policy, _, _) in &mut compiled {
        policy.matcher.attach_group_tiers(&group_tiers);
    }
    for guard in &mut guards {
        guard.matcher.attach_group_tiers(&group_tiers);
    }

    global_checks(sources, path, &compiled, &mut report);
    super::start_bounds::warn_unbounded_starts(&compiled, &mut |file, warning| {
        report.add(sources, file, warning)
    });
    super::stages::warn_stages(&compiled, &mut |file, warning| {
        report.add(sources, file, warning)
    });

    let mut problems = report.problems;
    problems.sort_by_key(|(file, problem)| (*file, problem.line.unwrap_or(usize::MAX)));
    let errors = problems.iter().any(|(_, problem)| problem.is_error());
    let problems: Vec<Diagnostic> = problems.into_iter().map(|(_, problem)| problem).collect();
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
            Diagnostic::warning(
                "policies",
                "there are no policies: every request will be denied",
                "add policies, e.g. the examples shipped in `rules/`",
            )
            .in_file(path),
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
            report.add(
                sources,
                *file,
                Diagnostic::warning(
                key,
                format!(
                    "policy `{}` is unreachable: `{}` above it matches every request it matches (first match wins)",
                    policy.name, earlier.name
                ),
                format!("move `{}` above `{}`, or remove it", policy.name, earlier.name),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_guid;
    use crate::rules::load_str;
    use crate::vocabulary::diagnostic::Severity;

    #[test]
    fn a_policy_or_guard_with_a_blank_name_is_an_error_not_silently_dropped() {
        // Dropped, the denial would stop applying and the request fall through to `everyone`.
        for (rules, key) in [
            (
                "policies:\n  - name: '  '\n    decide: Denied\n    reason: frozen\n  - name: everyone\n    require: []\n",
                "policies[0].name",
            ),
            (
                "guards:\n  - name: ''\n    decide: Denied\n    reason: frozen\npolicies:\n  - name: everyone\n    require: []\n",
                "guards[0].name",
            ),
        ] {
            let problems = match load_str("rules.yaml", rules) {
                Ok(loaded) => panic!(
                    "{rules}: loaded with {} policies and {} guards",
                    loaded.policies.len(),
                    loaded.guards.len()
                ),
                Err(problems) => problems,
            };
            assert!(
                problems
                    .iter()
                    .any(|problem| problem.severity == Severity::Error
                        && problem.key == key
                        && problem.message.contains("no `name`")),
                "{rules}: {problems:?}"
            );
        }
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
