//! `pimgate roles`: the built-in Entra role catalog (`rules::catalog`) as operators read it: every
//! role with its template id and tier, as a table, JSON, or the Markdown table kept at the end of
//! `rules/CATALOG.md` (a test holds the two equal).

use std::fmt::Write as _;

use crate::rules::catalog::{self, BuiltinRole, Tier};

/// The line in `rules/CATALOG.md` after which the generated table follows, to the end of the file.
pub const CATALOG_MARKER: &str =
    "<!-- Generated below by `cargo run -q -- roles --markdown`; do not edit by hand. -->";

/// How to bring `rules/CATALOG.md` up to date.
pub const REGENERATE: &str = "keep rules/CATALOG.md up to its marker line and append the output of `cargo run -q -- roles --markdown` (e.g. `sed -i '/^<!-- Generated below/q' rules/CATALOG.md && cargo run -q -- roles --markdown >> rules/CATALOG.md`)";

/// The roles of `tier` (every role when `None`), most severe tier first, then by name.
pub fn roles(tier: Option<Tier>) -> Vec<&'static BuiltinRole> {
    let mut roles: Vec<&BuiltinRole> = catalog::all()
        .iter()
        .filter(|role| tier.is_none_or(|tier| role.tier == tier))
        .collect();
    roles.sort_by(|a, b| b.tier.cmp(&a.tier).then(a.name.cmp(b.name)));
    roles
}

/// An aligned text table: tier, id, name.
pub fn table(roles: &[&BuiltinRole]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<9} {:<36} NAME", "TIER", "ID");
    for role in roles {
        let _ = writeln!(
            out,
            "{:<9} {:<36} {}",
            role.tier.as_str(),
            role.id,
            role.name
        );
    }
    out
}

/// The Markdown table at the end of `rules/CATALOG.md` (every role).
pub fn markdown() -> String {
    let all = roles(None);
    let mut out = String::new();
    let _ = writeln!(out, "\n## All built-in roles ({})\n", all.len());
    out.push_str("| Tier | Role | Template id |\n|---|---|---|\n");
    for role in all {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` |",
            role.tier.as_str(),
            role.name,
            role.id
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_filter_keeps_only_that_tier_and_every_role_is_listed_once() {
        let critical = roles(Some(Tier::Critical));
        assert!(!critical.is_empty());
        assert!(critical.iter().all(|role| role.tier == Tier::Critical));
        assert!(
            critical
                .iter()
                .any(|role| role.name == "Global Administrator")
        );
        assert_eq!(roles(None).len(), catalog::all().len());
        assert!(table(&critical).contains("62e90394-69f5-4237-9190-012177145e10"));
    }
}
