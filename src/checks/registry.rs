//! The closed set of check kinds operators can name in rules, and how each is built.
//!
//! Config types (what the YAML says) are separate from runtime types (what runs per request): a spec
//! is validated and built once when rules load. Each kind implements [`CheckKind`] in its own file;
//! the one `check_kinds!` table below generates everything else (the `CheckSpec` enum,
//! the name list, the YAML dispatch, `kind`, `build`, the connector a spec needs, the upstream
//! list). Adding a kind = one file and one line in that table; every `match` here is generated and
//! exhaustive, so there is no arm to forget and no runtime default.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::auth_methods;
use super::{Check, NamedCheck};
use super::{
    duration, group, hr, http, itsm, justification, oncall, opa, principal, start, ticket, window,
};
use crate::connectors::ConnectorId;
use crate::vocabulary::diagnostic::Diagnostic;

/// Whether a kind's checks ask an upstream system (and so cannot run offline; `rules test` stubs
/// them with `facts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Judges the request and the rules alone.
    Local,
    /// Asks a connector.
    Upstream,
}

/// One kind of check, as operators name it in rules: implemented by a unit type in the kind's file
/// and listed once in the `check_kinds!` table below.
pub trait CheckKind {
    /// The key operators write: `- duration: { max: PT2H }`.
    const NAME: &'static str;
    /// Local or upstream; no default, so a new kind says which it is.
    const REACH: Reach;
    /// What the YAML under the key deserializes into (`deny_unknown_fields` keeps typos loud).
    type Spec: DeserializeOwned + fmt::Debug + Clone + Send + Sync;

    /// The connector a spec calls, so loading can warn when it is not configured; `None` for a local
    /// kind, or for a spec whose source is not one pimgate knows (`build` refuses that one).
    fn connector(spec: &Self::Spec) -> Option<ConnectorId>;

    /// The config section to point an operator at when that connector is missing: `graph`, or
    /// `http.compliance` for a kind that names one of several connectors of its kind.
    fn connector_section(spec: &Self::Spec) -> Option<String> {
        Self::connector(spec).map(|id| id.name().to_string())
    }

    /// Validates the spec (every problem, not the first) and builds the runtime check. Each problem's
    /// key is below the check (`max`, `deny_patterns[1]`; empty for the check as a whole): `rules`
    /// places it under the policy and in its file.
    fn build(spec: &Self::Spec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>>;

    /// What `pimgate rules reference` says about this kind: no default, so a new kind cannot be
    /// added undocumented, and a test holds its key list equal to [`CheckKind::keys`].
    fn reference() -> KindReference;

    /// The keys the spec's map form accepts, read off serde (so they cannot drift from the type);
    /// a kind whose spec is not a plain struct names its map form's keys itself.
    fn keys() -> &'static [&'static str] {
        crate::vocabulary::serde_keys::field_names::<Self::Spec>()
    }
}

/// One check kind's entry in the operator reference.
#[derive(Debug, Clone)]
pub struct KindReference {
    /// One sentence: what the check passes.
    pub summary: &'static str,
    /// A check as written in `require:`, e.g. `- duration: { max: PT2H }`.
    pub example: &'static str,
    /// Every key of the spec, in the order written in the reference.
    pub keys: Vec<KeyDoc>,
    /// What the check reads from its upstream systems (fields, permissions, codes), taken from the
    /// constants the connectors use; empty for a local check.
    pub reads: Vec<UpstreamFact>,
}

/// One key of a check's spec.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub name: &'static str,
    /// The YAML type, e.g. `list of strings`.
    pub ty: &'static str,
    /// `required`, or the value an absent key means.
    pub default: &'static str,
    pub example: &'static str,
    pub doc: &'static str,
}

impl KeyDoc {
    pub const fn new(
        name: &'static str,
        ty: &'static str,
        default: &'static str,
        example: &'static str,
        doc: &'static str,
    ) -> Self {
        KeyDoc {
            name,
            ty,
            default,
            example,
            doc,
        }
    }
}

/// One thing a check reads upstream: which system, and what (built from the connectors' constants).
#[derive(Debug, Clone)]
pub struct UpstreamFact {
    pub system: &'static str,
    pub fact: String,
}

impl UpstreamFact {
    pub fn new(system: &'static str, fact: impl Into<String>) -> Self {
        UpstreamFact {
            system,
            fact: fact.into(),
        }
    }
}

/// One kind as the reference lists it: name, reach, serde's key list and the kind's own entry.
#[derive(Debug, Clone)]
pub struct KindEntry {
    pub name: &'static str,
    pub reach: Reach,
    pub keys: &'static [&'static str],
    pub reference: KindReference,
}

/// Generates `CheckSpec` and its dispatch from the table of kinds: `Variant: path::KindType`.
macro_rules! check_kinds {
    ($($variant:ident: $kind:ty),+ $(,)?) => {
        /// One entry of a policy's `require:` or `auto_approve:` list, e.g. `- duration: { max: PT2H }`.
        ///
        /// Deserialized by hand from a one-key map because `yaml_serde` reads derived enums only from
        /// YAML tags (`!duration`); only the map form is accepted, so there is one way to write a check.
        #[derive(Debug, Clone)]
        pub enum CheckSpec {
            $($variant(<$kind as CheckKind>::Spec),)+
        }

        /// The names operators write, in table order.
        pub const CHECK_KINDS: &[&str] = &[$(<$kind as CheckKind>::NAME,)+];

        /// Every kind's reference entry, in table order.
        pub fn kind_entries() -> Vec<KindEntry> {
            vec![$(KindEntry {
                name: <$kind as CheckKind>::NAME,
                reach: <$kind as CheckKind>::REACH,
                keys: <$kind as CheckKind>::keys(),
                reference: <$kind as CheckKind>::reference(),
            },)+]
        }

        /// The keys of kind `name`'s spec (empty for a name that is no kind).
        pub fn kind_keys(name: &str) -> &'static [&'static str] {
            $(if name == <$kind as CheckKind>::NAME {
                return <$kind as CheckKind>::keys();
            })+
            &[]
        }

        /// Each kind's name and reach, in table order.
        const REACHES: &[(&str, Reach)] = &[$((<$kind as CheckKind>::NAME, <$kind as CheckKind>::REACH),)+];

        impl CheckSpec {
            pub fn kind(&self) -> &'static str {
                match self {
                    $(CheckSpec::$variant(_) => <$kind as CheckKind>::NAME,)+
                }
            }

            /// The connector this check calls (`servicenow`, `graph`, …), so loading can warn when it
            /// is not configured. Local checks need none.
            pub fn required_connector(&self) -> Option<&'static str> {
                let connector = match self {
                    $(CheckSpec::$variant(spec) => <$kind as CheckKind>::connector(spec),)+
                };
                connector.map(ConnectorId::name)
            }

            /// Where that connector is configured (`[connectors.<section>]`), for loading's warning.
            pub fn connector_section(&self) -> Option<String> {
                match self {
                    $(CheckSpec::$variant(spec) => <$kind as CheckKind>::connector_section(spec),)+
                }
            }

            /// Validates the spec (reporting every problem, not the first) and builds the runtime check.
            pub fn build(&self, env: &BuildEnv<'_>) -> Result<NamedCheck, Vec<Diagnostic>> {
                let check = match self {
                    $(CheckSpec::$variant(spec) => <$kind as CheckKind>::build(spec, env)?,)+
                };
                Ok(NamedCheck {
                    kind: self.kind(),
                    check,
                    unconfigured: None,
                    fingerprint: None,
                    shared: None,
                })
            }
        }

        impl CheckSpecVisitor {
            fn read<'de, A: MapAccess<'de>>(kind: &str, map: &mut A) -> Result<CheckSpec, A::Error> {
                $(if kind == <$kind as CheckKind>::NAME {
                    return Ok(CheckSpec::$variant(map.next_value()?));
                })+
                Err(de::Error::unknown_variant(kind, CHECK_KINDS))
            }
        }
    };
}

// The table: one line per kind. Order is the order names are listed to operators.
check_kinds! {
    Duration: duration::DurationKind,
    Justification: justification::JustificationKind,
    Ticket: ticket::TicketKind,
    Principal: principal::PrincipalKind,
    Window: window::WindowKind,
    Start: start::StartKind,
    Itsm: itsm::ItsmKind,
    Hr: hr::HrKind,
    Oncall: oncall::OncallKind,
    Group: group::GroupKind,
    AuthMethods: auth_methods::AuthMethodsKind,
    Opa: opa::OpaKind,
    Http: http::HttpKind,
}

/// The kinds that ask an upstream system (and so cannot run offline).
pub static UPSTREAM_KINDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    REACHES
        .iter()
        .filter(|(_, reach)| *reach == Reach::Upstream)
        .map(|(name, _)| *name)
        .collect()
});

impl<'de> Deserialize<'de> for CheckSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckSpecVisitor)
    }
}

struct CheckSpecVisitor;

impl<'de> Visitor<'de> for CheckSpecVisitor {
    type Value = CheckSpec;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a check written as a map with one key, e.g. `duration: { max: PT2H }`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(kind) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "a check needs its kind as its key, one of: {}",
                CHECK_KINDS.join(", ")
            )));
        };
        let spec = Self::read(&kind, &mut map)?;
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a check has exactly one kind, but `{extra}` follows `{kind}`; start a new `- ` list item for it"
            )));
        }
        Ok(spec)
    }
}

/// What a spec may refer to by name: the rules' `lists:` and compiled `windows:`.
#[derive(Debug, Clone, Copy)]
pub struct BuildEnv<'a> {
    pub lists: &'a BTreeMap<String, Vec<String>>,
    pub windows: &'a BTreeMap<String, Arc<window::CompiledWindow>>,
    /// Upstream connectors; those not configured are `None` and their checks report "not evaluated".
    pub connectors: &'a Arc<crate::connectors::Connectors>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, now, request, run};

    const WINDOWS: &str = r#"
change-windows:
  timezone: Europe/Berlin
  weekly:
    - { days: [Tue, Thu], from: "18:00", to: "23:00" }
    - { days: [Sat], from: "00:00", to: "24:00" }
  except_dates: ["2026-12-24"]
"#;

    const CHECKS: &str = r#"
- duration: { max: PT2H }
- justification: { min_length: 10, deny_patterns: ['(?i)^admin$'] }
- ticket: { systems: [ServiceNow], patterns: { ServiceNow: "CHG[0-9]{7}" }, from_justification: true }
- principal: { deny: [break-glass] }
- window: change-windows
- window: { name: change-windows, cover: whole }
- start: { max_past: PT5M, max_future: P7D }
"#;

    fn test_env() -> TestEnv {
        let specs: BTreeMap<String, window::WindowSpec> = yaml_serde::from_str(WINDOWS).unwrap();
        let mut env = TestEnv::default();
        for (name, spec) in &specs {
            env.windows
                .insert(name.clone(), Arc::new(window::compile(name, spec).unwrap()));
        }
        env.lists.insert(
            "break-glass".to_string(),
            vec!["0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d".to_string()],
        );
        env
    }

    #[test]
    fn every_check_kind_builds_from_yaml_and_passes_a_good_request() {
        let env = test_env();
        let specs: Vec<CheckSpec> = yaml_serde::from_str(CHECKS).unwrap();
        let kinds: Vec<&str> = specs.iter().map(CheckSpec::kind).collect();
        assert_eq!(
            kinds,
            [
                "duration",
                "justification",
                "ticket",
                "principal",
                "window",
                "window",
                "start"
            ]
        );
        let mut request = request();
        request.justification = Some("CHG0031337: rotate the signing certificate".to_string());
        for spec in &specs {
            let built = spec.build(&env.env()).unwrap();
            let outcome = run(built.check.as_ref(), &request, now());
            assert_eq!(
                outcome.status,
                CheckStatus::Pass,
                "{}: {}",
                built.kind,
                outcome.message
            );
        }
    }

    #[test]
    fn every_kind_has_its_own_name_and_the_upstream_ones_are_listed() {
        let mut names = CHECK_KINDS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CHECK_KINDS.len(), "{CHECK_KINDS:?}");
        assert!(UPSTREAM_KINDS.iter().all(|kind| CHECK_KINDS.contains(kind)));
        assert_eq!(&UPSTREAM_KINDS[..3], ["itsm", "hr", "oncall"]);
        assert!(!UPSTREAM_KINDS.contains(&"duration"));
    }

    #[test]
    fn a_whole_day_slot_runs_to_midnight() {
        let env = test_env();
        let window = env.windows.get("change-windows").unwrap();
        let saturday_end = crate::checks::test_support::at("2026-11-28T22:59:59Z");
        let sunday = crate::checks::test_support::at("2026-11-28T23:00:00Z");
        assert!(window.contains(saturday_end));
        assert!(!window.contains(sunday));
    }

    #[test]
    fn malformed_check_entries_are_rejected_with_a_precise_error() {
        let cases = [
            (
                "- duration: { max: PT2H, maximum: PT4H }",
                "unknown field `maximum`",
            ),
            ("- duraton: { max: PT2H }", "unknown variant `duraton`"),
            ("- {}", "a check needs its kind"),
            (
                "- { duration: { max: PT2H }, start: { max_past: PT5M } }",
                "`start` follows `duration`",
            ),
            ("- window: { name: w, covr: whole }", "unknown field `covr`"),
        ];
        for (yaml, expected) in cases {
            let error = yaml_serde::from_str::<Vec<CheckSpec>>(yaml).unwrap_err();
            assert!(error.to_string().contains(expected), "{yaml}: {error}");
        }
    }
}
