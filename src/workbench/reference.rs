//! `pimgate rules reference`: the rule-file reference, generated from the code so it cannot drift.
//!
//! Key lists are read off the spec types (`rules::file_keys`, each kind's `CheckKind::keys`), each
//! check kind documents itself (`CheckKind::reference`, required by the trait), and what a check
//! reads upstream comes from the connectors' own constants. [`drift`] lists every key the types
//! have and the text does not document (or the reverse); a test keeps it empty and keeps
//! `rules/REFERENCE.md` equal to [`markdown`].

use std::fmt::Write as _;

use crate::checks::registry::{KindEntry, Reach, kind_entries};
use crate::rules::{file_keys, match_example};

/// The command that rewrites the checked-in reference.
pub const REGENERATE: &str = "cargo run -- rules reference > rules/REFERENCE.md";

/// What each rule-file key means, by section; a key the types have and this table lacks is
/// reported by [`drift`].
fn doc(section: &str, key: &str) -> Option<&'static str> {
    Some(match (section, key) {
        ("top", "policies") => {
            "The policies, in order: the first whose `match` and `when` fit decides."
        }
        ("top", "guards") => {
            "Rules applied whichever policy decides; a guard can only deny (or cap to Approved)."
        }
        ("top", "windows") => "Named maintenance windows, for `window` checks.",
        ("top", "lists") => {
            "Named lists of principal object ids, for `principal` checks and `match.principals`."
        }
        ("top", "groups") => {
            "Declared privileged groups (`tier`, `holds`), for `match.groups` and tiers."
        }
        ("rule", "name") => "Unique name, shown in reasons and the audit record.",
        ("rule", "description") => "Free text for operators.",
        ("rule", "match") => {
            "Which requests the rule is about (see Match keys); absent = every request."
        }
        ("rule", "when") => {
            "A CEL expression over the request; the rule applies only when it is true."
        }
        ("rule", "decide") => {
            "A fixed answer (`Approved`, `AutoApproved`, `Denied`) without checks; needs `reason`."
        }
        ("rule", "reason") => "The requester-facing reason of a `decide:` answer.",
        ("rule", "require") => "Checks that must all pass, else the request is denied.",
        ("rule", "on_error") => {
            "What a required check that cannot be evaluated means (see Failure modes)."
        }
        ("rule", "mode") => {
            "`enforce` decides; `audit` only records the would-be decision (shadow mode)."
        }
        ("approving", "auto_approve") => {
            "Checks that, all passing after `require`, answer AutoApproved."
        }
        ("approving", "allow_auto_approve_on_critical") => {
            "Lets `auto_approve` apply to critical-tier roles (refused otherwise)."
        }
        ("match", "roles") => "Role names or role definition ids.",
        ("match", "tiers") => "Role tiers from the catalog (`pimgate roles`).",
        ("match", "groups") => "Declared group names (top-level `groups:`).",
        ("match", "access") => "PIM group access: `member` or `owner`.",
        ("match", "resource_types") => "`entraRoles`, `groups` or `azureResources`.",
        ("match", "scopes") => "Directory or Azure scopes; a trailing `*` matches below.",
        ("match", "actions") => {
            "PIM actions, e.g. `selfActivate`, `selfExtend`, `selfRenew`, `selfDeactivate`."
        }
        ("match", "principals") => "List names (top-level `lists:`) or object ids of requesters.",
        ("match", "stages") => {
            "PIM's callbacks: `pre_approval`, `post_approval`; absent = every stage."
        }
        ("window", "timezone") => {
            "IANA time zone name the slots are read in, e.g. `Europe/Berlin`."
        }
        ("window", "weekly") => "Weekly slots (see below).",
        ("window", "except_dates") => "Dates (`YYYY-MM-DD`, local) on which the window is closed.",
        ("slot", "days") => "Days the slot starts on: `Mon` … `Sun`.",
        ("slot", "from") => "Local start, `HH:MM`.",
        ("slot", "to") => {
            "Local end, `HH:MM`; before `from` crosses midnight, `24:00` is the end of the day."
        }
        ("group", "tier") => "The tier requests for this group get.",
        ("group", "holds") => "Roles (names or ids) the group's members hold, which set its tier.",
        ("on_error", "deny") => {
            "Default. Fail closed: denied, with a reason saying the check could not run."
        }
        ("on_error", "approve") => {
            "The check is skipped and the request goes to PIM's normal approval; never AutoApproved."
        }
        ("mode", "enforce") => "Default. The rule decides.",
        ("mode", "audit") => {
            "Shadow mode: the would-be decision is recorded in the audit record only."
        }
        _ => return None,
    })
}

/// The sections of the rule file with the keys the types have.
fn sections() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    let keys = file_keys();
    vec![
        ("top", "Top-level keys", keys.top),
        ("rule", "Policy and guard keys", keys.guard),
        (
            "approving",
            "Policy-only keys (a guard refuses them)",
            keys.approving,
        ),
        ("match", "Match keys", keys.matching),
        (
            "window",
            "Window keys (`windows: { NAME: … }`)",
            keys.window,
        ),
        (
            "slot",
            "Weekly slot keys (`weekly: [ … ]`)",
            keys.weekly_slot,
        ),
        (
            "group",
            "Group declaration keys (`groups: { NAME: … }`)",
            keys.group_declaration,
        ),
        ("on_error", "Failure modes (`on_error:`)", keys.on_error),
        ("mode", "Modes (`mode:`)", keys.mode),
    ]
}

/// Every disagreement between the types and the documentation: a key without a doc, a check kind
/// documenting a key its spec does not have or missing one it has. Empty when the reference is
/// complete.
pub fn drift() -> Vec<String> {
    let mut problems = Vec::new();
    for (section, _, keys) in sections() {
        for key in keys {
            if doc(section, key).is_none() {
                problems.push(format!("`{section}.{key}` has no documentation"));
            }
        }
    }
    for entry in kind_entries() {
        let documented: Vec<&str> = entry.reference.keys.iter().map(|key| key.name).collect();
        let mut sorted_documented = documented.clone();
        sorted_documented.sort_unstable();
        let mut actual = entry.keys.to_vec();
        actual.sort_unstable();
        if sorted_documented != actual {
            problems.push(format!(
                "check `{}` documents keys {documented:?} but its spec has {:?}",
                entry.name, entry.keys
            ));
        }
        if entry.reach == Reach::Upstream && entry.reference.reads.is_empty() {
            problems.push(format!(
                "check `{}` asks an upstream system but says nothing about what it reads",
                entry.name
            ));
        }
    }
    problems
}

/// The reference as Markdown, the text of `rules/REFERENCE.md`.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("# pimgate rule reference\n\n");
    let _ = writeln!(
        out,
        "Generated from the code by `pimgate rules reference`; do not edit. Regenerate with `{REGENERATE}`.\n"
    );
    out.push_str("## Rule files\n\n");
    for (section, title, keys) in sections() {
        let _ = writeln!(out, "### {title}\n");
        if section == "match" {
            out.push_str("| key | meaning | example |\n|---|---|---|\n");
            for key in keys {
                let example = match match_example(key) {
                    example if example.starts_with('[') => format!("{key}: {example}"),
                    example => example.to_string(),
                };
                let _ = writeln!(
                    out,
                    "| `{key}` | {} | `{}` |",
                    cell(doc(section, key).unwrap_or("(undocumented)")),
                    cell(&example)
                );
            }
        } else {
            out.push_str("| key | meaning |\n|---|---|\n");
            for key in keys {
                let _ = writeln!(
                    out,
                    "| `{key}` | {} |",
                    cell(doc(section, key).unwrap_or("(undocumented)"))
                );
            }
        }
        out.push('\n');
    }
    out.push_str("## Check kinds\n\n");
    let entries = kind_entries();
    let names: Vec<String> = entries
        .iter()
        .map(|entry| format!("`{}`", entry.name))
        .collect();
    let _ = writeln!(
        out,
        "A check is a one-key map in `require:` or `auto_approve:`: {}. A check that cannot be evaluated is never a pass; `on_error` decides.\n",
        names.join(", ")
    );
    for entry in &entries {
        kind_section(&mut out, entry);
    }
    out
}

fn kind_section(out: &mut String, entry: &KindEntry) {
    let reach = match entry.reach {
        Reach::Local => "local: judges the request and the rules alone",
        Reach::Upstream => "upstream: asks a connector; `rules test` stubs it with `facts`",
    };
    let reference = &entry.reference;
    let _ = writeln!(out, "### `{}`\n", entry.name);
    let _ = writeln!(out, "{}\n\n*{reach}.*\n", reference.summary);
    let _ = writeln!(out, "```yaml\n{}\n```\n", reference.example);
    out.push_str("| key | type | default | example | meaning |\n|---|---|---|---|---|\n");
    for key in &reference.keys {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | `{}` | {} |",
            key.name,
            cell(key.ty),
            cell(key.default),
            cell(key.example),
            cell(key.doc)
        );
    }
    out.push('\n');
    if !reference.reads.is_empty() {
        out.push_str("Reads upstream:\n\n");
        for fact in &reference.reads {
            let _ = writeln!(out, "- {}: {}", fact.system, fact.fact);
        }
        out.push('\n');
    }
}

/// A table cell: pipes escaped so a regex or an alternative cannot split the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_the_types_have_is_documented_and_nothing_else() {
        assert_eq!(drift(), Vec::<String>::new());
    }

    #[test]
    fn the_reference_names_every_check_kind_and_key() {
        let text = markdown();
        for entry in kind_entries() {
            assert!(text.contains(&format!("### `{}`", entry.name)));
            for key in entry.keys {
                assert!(
                    text.contains(&format!("| `{key}` |")),
                    "{}.{key}",
                    entry.name
                );
            }
        }
        assert!(!text.contains("(undocumented)"));
    }
}
