//! The generated operator documents equal the checked-in ones, so they cannot drift from the code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use pimgate::workbench::{reference, roles};

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

#[test]
fn rules_reference_md_is_what_pimgate_rules_reference_prints() {
    assert!(
        read("rules/REFERENCE.md") == reference::markdown(),
        "rules/REFERENCE.md is out of date with the code; regenerate it with `{}`",
        reference::REGENERATE
    );
}

#[test]
fn the_reference_documents_exactly_the_keys_the_spec_types_have() {
    assert_eq!(reference::drift(), Vec::<String>::new());
}

#[test]
fn the_reference_names_every_check_kind_and_what_upstream_checks_read() {
    let text = reference::markdown();
    for kind in pimgate::checks::registry::CHECK_KINDS {
        assert!(text.contains(&format!("### `{kind}`")), "{kind}");
    }
    for fact in [
        "-1 = Implement",
        "start_date",
        "indeterminate",
        "employeeLeaveDateTime",
        "User-LifeCycleInfo.Read.All",
        "GroupMember.Read.All",
        "UserAuthenticationMethod.Read.All",
        "escalation_level",
        "deny",
        "audit",
    ] {
        assert!(text.contains(fact), "{fact}");
    }
}

#[test]
fn rules_catalog_md_ends_with_the_table_pimgate_roles_prints() {
    let catalog = read("rules/CATALOG.md");
    let Some((_, table)) = catalog.split_once(&format!("{}\n", roles::CATALOG_MARKER)) else {
        panic!(
            "rules/CATALOG.md lacks the line `{}`; {}",
            roles::CATALOG_MARKER,
            roles::REGENERATE
        );
    };
    assert!(
        table == roles::markdown(),
        "the role table in rules/CATALOG.md is out of date with src/rules/catalog_data.rs; {}",
        roles::REGENERATE
    );
}
