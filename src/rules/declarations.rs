//! The named declarations policies refer to, global across rule files: `lists:` of object ids,
//! `windows:` of time, and `groups:` declared privileged (with the tier the Critical rule needs).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::checks::window::{self, CompiledWindow, WindowSpec};
use crate::rules::catalog::{self, Tier};
use crate::rules::matcher::parse_tier;
use crate::vocabulary::diagnostic::Diagnostic;

use super::build_match::resolve_role;
use super::compile::parse_guid;
use super::report::{Report, Source, mapping, read, unknown_keys};
use super::spec::{Entries, Field, GroupDeclarationSpec, RuleFileSpec, field_names};

/// The parsed files, each with its index in the sources.
pub(super) type Files<'a> = [(usize, RuleFileSpec)];

/// The entries of a top-level mapping such as `lists:`, or a problem when it is not a mapping.
fn entries<'f, T>(
    out: &mut Vec<Diagnostic>,
    key: &str,
    field: &'f Option<Field<Entries<T>>>,
) -> &'f [(String, Field<T>)] {
    let Some(field) = field else {
        return &[];
    };
    match &field.typed {
        Ok(entries) => &entries.0,
        Err(message) => {
            if mapping(out, key, &field.raw, key).is_some() {
                out.push(Diagnostic::error(
                    key,
                    message.clone(),
                    format!("write `{key}` as `name: value` lines"),
                ));
            }
            &[]
        }
    }
}

/// The name of the file that first defined a global name, for "already defined in".
fn first_file(sources: &[Source], file: usize) -> &str {
    sources.get(file).map(|s| s.name.as_str()).unwrap_or("")
}

pub(super) fn collect_lists(
    sources: &[Source],
    files: &Files<'_>,
    report: &mut Report,
) -> BTreeMap<String, Vec<String>> {
    let mut lists = BTreeMap::new();
    let mut origin: HashMap<String, usize> = HashMap::new();
    for (file, spec) in files {
        let mut out = Vec::new();
        for (name, entry) in entries(&mut out, "lists", &spec.lists) {
            let key = format!("lists.{name}");
            if let Some(first) = origin.get(name) {
                out.push(Diagnostic::error(
                    &key,
                    format!(
                        "list `{name}` is already defined in `{}`",
                        first_file(sources, *first)
                    ),
                    "list names are global across rule files: rename one",
                ));
                continue;
            }
            let Some(items) = read(
                &mut out,
                &key,
                entry,
                "a list is a YAML list of object ids (GUIDs)",
            ) else {
                continue;
            };
            let mut ids = Vec::new();
            for (index, item) in items.iter().enumerate() {
                match parse_guid(item) {
                    Some(id) => ids.push(id),
                    None => out.push(Diagnostic::error(
                        format!("{key}[{index}]"),
                        format!("`{item}` is not a GUID"),
                        "lists hold Entra object ids, e.g. `0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d`",
                    )),
                }
            }
            origin.insert(name.clone(), *file);
            lists.insert(name.clone(), ids);
        }
        report.add_all(sources, *file, out);
    }
    lists
}

pub(super) fn collect_windows(
    sources: &[Source],
    files: &Files<'_>,
    report: &mut Report,
) -> BTreeMap<String, Arc<CompiledWindow>> {
    let mut windows = BTreeMap::new();
    let mut origin: HashMap<String, usize> = HashMap::new();
    for (file, spec) in files {
        let mut out = Vec::new();
        for (name, entry) in entries::<WindowSpec>(&mut out, "windows", &spec.windows) {
            let key = format!("windows.{name}");
            if let Some(first) = origin.get(name) {
                out.push(Diagnostic::error(
                    &key,
                    format!(
                        "window `{name}` is already defined in `{}`",
                        first_file(sources, *first)
                    ),
                    "window names are global across rule files: rename one",
                ));
                continue;
            }
            origin.insert(name.clone(), *file);
            let Some(window) = read(
                &mut out,
                &key,
                entry,
                "a window has `timezone`, `weekly` and optional `except_dates`",
            ) else {
                continue;
            };
            match window::compile(name, window) {
                Ok(compiled) => {
                    windows.insert(name.clone(), Arc::new(compiled));
                }
                Err(problems) => {
                    out.extend(problems.into_iter().map(|problem| problem.under(&key)));
                }
            }
        }
        report.add_all(sources, *file, out);
    }
    windows
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
pub(super) fn collect_group_tiers(
    sources: &[Source],
    files: &Files<'_>,
    lists: &BTreeMap<String, Vec<String>>,
    report: &mut Report,
) -> BTreeMap<String, Tier> {
    let mut tiers: BTreeMap<String, Tier> = BTreeMap::new();
    for (file, spec) in files {
        let mut out = Vec::new();
        for (name, entry) in entries(&mut out, "groups", &spec.groups) {
            let key = format!("groups.{name}");
            let members = match parse_guid(name) {
                Some(id) => vec![id],
                None => match lists.get(name.trim()) {
                    Some(members) => members.clone(),
                    None => {
                        out.push(Diagnostic::error(
                            &key,
                            format!("`{name}` is neither a group id (GUID) nor a list name"),
                            "use the group's object id, or define the list under `lists:`",
                        ));
                        continue;
                    }
                },
            };
            let Some(tier) = declared_tier(&mut out, &key, entry) else {
                continue;
            };
            for member in members {
                let entry = tiers.entry(member).or_insert(tier);
                *entry = most_severe(*entry, tier);
            }
        }
        report.add_all(sources, *file, out);
    }
    tiers
}

/// The tier one `groups:` entry declares: its `tier`, raised by the roles it `holds`.
fn declared_tier(
    out: &mut Vec<Diagnostic>,
    key: &str,
    entry: &Field<GroupDeclarationSpec>,
) -> Option<Tier> {
    let declaration = mapping(out, key, &entry.raw, "a group declaration")?;
    unknown_keys(out, key, declaration, field_names::<GroupDeclarationSpec>());
    let spec = read(out, key, entry, "write `tier: Critical`")?;
    let mut tier: Option<Tier> = None;
    let mut raise = |found: Tier| {
        tier = Some(tier.map_or(found, |current| most_severe(current, found)));
    };
    if let Some(field) = &spec.tier {
        let at = format!("{key}.tier");
        match read(out, &at, field, "write `tier: Critical`").map(|text| parse_tier(text)) {
            Some(Some(found)) => raise(found),
            Some(None) => out.push(Diagnostic::error(
                &at,
                "not a tier",
                "use one of Critical, High, Medium, Low",
            )),
            None => {}
        }
    }
    if let Some(field) = &spec.holds {
        let at = format!("{key}.holds");
        let holds = read(out, &at, field, "write `holds: [Global Administrator]`");
        for (index, role) in holds.into_iter().flatten().enumerate() {
            match resolve_role(role).and_then(|id| catalog::by_id(&id)) {
                Some(role) => raise(role.tier),
                None => out.push(Diagnostic::error(
                    format!("{at}[{index}]"),
                    format!("`{role}` is not a built-in Entra role"),
                    "name the built-in Entra roles the group is assigned, e.g. `Global Administrator`; for other privileges give `tier:`",
                )),
            }
        }
    }
    if tier.is_none() {
        out.push(Diagnostic::error(
            key,
            "the declaration gives neither `tier` nor `holds`",
            "add `tier: Critical` or `holds: [Global Administrator]`",
        ));
    }
    tier
}
