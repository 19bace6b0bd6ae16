//! The rule file format as types: what each key of a rule file may hold.
//!
//! A rule file is deserialized into these specs in one go, but leniently: every key is a [`Field`],
//! which keeps the value as written next to its typed reading, so a value of the wrong type is one
//! problem among others instead of the end of the read (`validate` then reports every problem at
//! once, `build` compiles what is valid). The keys a spec knows, for "unknown key" and "did you
//! mean", are read off the types themselves by [`field_names`], never kept in a second list.

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use yaml_serde::{Mapping, Value};

use crate::checks::registry::CheckSpec;
use crate::checks::window::WindowSpec;
use crate::rules::{FailureMode, PolicyMode};

use super::report::{key_text, one_line};
pub use crate::vocabulary::serde_keys::{field_names, variant_names};

/// One value as written (`raw`) and its typed reading, or serde's message when it is not a `T`.
#[derive(Debug)]
pub(super) struct Field<T> {
    pub raw: Value,
    pub typed: Result<T, String>,
}

impl<T: DeserializeOwned> Field<T> {
    pub(super) fn read(raw: Value) -> Self {
        // Read from a borrow, not a clone: a clone per nesting level made loading 10,000 policies
        // copy every value several times over (BENCHMARKS.md, "Rule scale").
        let typed = T::deserialize(&raw).map_err(|error| one_line(&error.to_string()));
        Field { raw, typed }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Field::read)
    }
}

/// For keys where `key: ~` is a mistake to report rather than "absent" (serde reads `null` into an
/// `Option` as `None`): absent is `None`, anything written, `null` included, is `Some`.
fn present<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Option<Field<T>>, D::Error> {
    Field::deserialize(deserializer).map(Some)
}

/// A list whose items are read one at a time, as the caller reaches them (`policies:`, `guards:`):
/// a file of 10,000 policies then never holds 10,000 typed specs at once, only the list as written
/// and the compiled policies (BENCHMARKS.md, "Rule scale").
#[derive(Debug)]
pub(super) struct Items<T> {
    /// The list as written (or whatever was written in its place).
    pub raw: Value,
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Items<T> {
    /// Each item as a [`Field`], read when it is reached; the value written instead when it is not a
    /// list.
    pub(super) fn read(&self) -> Result<impl Iterator<Item = Field<T>> + '_, &Value> {
        match &self.raw {
            Value::Sequence(items) => Ok(items.iter().map(|item| Field::read(item.clone()))),
            other => Err(other),
        }
    }
}

impl<'de, T> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|raw| Items {
            raw,
            item: PhantomData,
        })
    }
}

/// A mapping of names to entries (`lists:`, `windows:`, `groups:`), in file order.
#[derive(Debug)]
pub(super) struct Entries<T>(pub Vec<(String, Field<T>)>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mapping = Mapping::deserialize(deserializer)?;
        Ok(Entries(
            mapping
                .into_iter()
                .map(|(name, value)| (key_text(&name), Field::read(value)))
                .collect(),
        ))
    }
}

/// One rule file.
#[derive(Debug, Deserialize)]
pub(super) struct RuleFileSpec {
    pub policies: Option<Items<PolicySpec>>,
    pub guards: Option<Items<GuardSpec>>,
    #[serde(default, deserialize_with = "present")]
    pub windows: Option<Field<Entries<WindowSpec>>>,
    #[serde(default, deserialize_with = "present")]
    pub lists: Option<Field<Entries<Vec<String>>>>,
    #[serde(default, deserialize_with = "present")]
    pub groups: Option<Field<Entries<GroupDeclarationSpec>>>,
}

/// One entry under the top-level `groups:` (a declared privileged group).
#[derive(Debug, Deserialize)]
pub(super) struct GroupDeclarationSpec {
    pub tier: Option<Field<String>>,
    pub holds: Option<Field<Vec<String>>>,
}

/// What policies and guards have in common: who they are about and what they require.
#[derive(Debug, Deserialize)]
pub(super) struct RuleSpec {
    pub name: Option<Field<String>>,
    pub description: Option<Field<String>>,
    #[serde(rename = "match")]
    pub matching: Option<Field<MatchSpec>>,
    pub when: Option<Field<String>>,
    pub decide: Option<Field<String>>,
    pub reason: Option<Field<String>>,
    pub require: Option<Field<Vec<Field<CheckSpec>>>>,
    pub on_error: Option<Field<FailureMode>>,
    pub mode: Option<Field<PolicyMode>>,
}

/// The keys that let a rule approve without a human: a policy's only (a guard can only deny).
#[derive(Debug, Deserialize)]
pub(super) struct ApprovingSpec {
    pub auto_approve: Option<Field<Vec<Field<CheckSpec>>>>,
    pub allow_auto_approve_on_critical: Option<Field<bool>>,
}

/// One item of `policies:`.
#[derive(Debug, Deserialize)]
pub(super) struct PolicySpec {
    #[serde(flatten)]
    pub rule: RuleSpec,
    #[serde(flatten)]
    pub approving: ApprovingSpec,
}

/// One item of `guards:`. A guard knows the approving keys only to refuse them with their own
/// message (`validate`): a guard can only deny.
#[derive(Debug, Deserialize)]
pub(super) struct GuardSpec {
    #[serde(flatten)]
    pub rule: RuleSpec,
}

/// A policy's or guard's `match:`. `key: ~` is reported (an empty selector must not silently
/// widen the match to "any").
#[derive(Debug, Deserialize)]
pub(super) struct MatchSpec {
    #[serde(default, deserialize_with = "present")]
    pub roles: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub tiers: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub groups: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub access: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub resource_types: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub scopes: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub actions: Option<Field<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub principals: Option<Field<Vec<String>>>,
    /// PIM's stages the rule is for (`pre_approval`, `post_approval`); absent = every stage.
    #[serde(default, deserialize_with = "present")]
    pub stages: Option<Field<Vec<String>>>,
}

/// The keys of a policy, in the order the operator documentation lists them.
pub(super) fn policy_keys() -> Vec<&'static str> {
    [field_names::<RuleSpec>(), field_names::<ApprovingSpec>()].concat()
}

/// The keys of a rule file and its parts, read off the spec types, for the operator reference
/// (`pimgate rules reference`): documenting a key the types do not have, or missing one they
/// have, is then a test failure instead of drift.
#[derive(Debug, Clone, Copy)]
pub struct FileKeys {
    pub top: &'static [&'static str],
    /// Keys of a guard (the policy's keys without the approving ones).
    pub guard: &'static [&'static str],
    /// Keys only a policy has (they let a rule approve without a human).
    pub approving: &'static [&'static str],
    pub matching: &'static [&'static str],
    pub window: &'static [&'static str],
    pub weekly_slot: &'static [&'static str],
    pub group_declaration: &'static [&'static str],
    /// The values of `on_error:` and `mode:`.
    pub on_error: &'static [&'static str],
    pub mode: &'static [&'static str],
}

pub fn file_keys() -> FileKeys {
    FileKeys {
        top: field_names::<RuleFileSpec>(),
        guard: field_names::<RuleSpec>(),
        approving: field_names::<ApprovingSpec>(),
        matching: field_names::<MatchSpec>(),
        window: field_names::<WindowSpec>(),
        weekly_slot: field_names::<crate::checks::window::WeeklySlot>(),
        group_declaration: field_names::<GroupDeclarationSpec>(),
        on_error: variant_names::<FailureMode>(),
        mode: variant_names::<PolicyMode>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_keys_are_read_off_the_spec_types() {
        assert_eq!(
            field_names::<RuleFileSpec>(),
            ["policies", "guards", "windows", "lists", "groups"]
        );
        assert_eq!(field_names::<GroupDeclarationSpec>(), ["tier", "holds"]);
        assert_eq!(
            policy_keys(),
            [
                "name",
                "description",
                "match",
                "when",
                "decide",
                "reason",
                "require",
                "on_error",
                "mode",
                "auto_approve",
                "allow_auto_approve_on_critical"
            ]
        );
        assert!(field_names::<PolicySpec>().is_empty(), "flattened: a map");
        assert_eq!(variant_names::<FailureMode>(), ["deny", "approve"]);
        assert_eq!(variant_names::<PolicyMode>(), ["enforce", "audit"]);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_kept_with_its_message_and_the_rest_is_still_read() {
        let value: Value = yaml_serde::from_str(
            "name: a\non_error: sometimes\nmatch: { roles: ~ }\nallow_auto_approve_on_critical: 3\n",
        )
        .unwrap_or(Value::Null);
        let Ok(spec) = yaml_serde::from_value::<PolicySpec>(value) else {
            panic!("a policy with wrong values still reads as a spec");
        };
        assert!(matches!(spec.rule.name.map(|name| name.typed), Some(Ok(name)) if name == "a"));
        assert!(spec.rule.on_error.is_some_and(|field| {
            field
                .typed
                .is_err_and(|message| message.contains("unknown variant `sometimes`"))
        }));
        let roles = spec
            .rule
            .matching
            .and_then(|matching| matching.typed.ok())
            .and_then(|matching| matching.roles);
        assert!(
            roles.is_some_and(
                |roles| roles.raw.is_null() && roles.typed.is_ok_and(|roles| roles.is_empty())
            ),
            "`roles: ~` is present (an empty list, which `validate` refuses), not absent (which would match any role)"
        );
        assert!(
            spec.approving
                .allow_auto_approve_on_critical
                .is_some_and(|field| field.typed.is_err())
        );
    }

    #[test]
    fn a_list_of_items_is_read_one_item_at_a_time_and_anything_else_is_handed_back() {
        let Ok(spec) = yaml_serde::from_str::<RuleFileSpec>(
            "policies:\n  - name: a\n  - name: [not, a, name]\nguards: { name: g }\n",
        ) else {
            panic!("a rule file with wrong values still reads as a spec");
        };
        let policies: Vec<Field<PolicySpec>> = match spec.policies.as_ref().map(Items::read) {
            Some(Ok(items)) => items.collect(),
            _ => panic!("policies is a list"),
        };
        let names: Vec<Option<Result<&str, &str>>> = policies
            .iter()
            .map(|policy| {
                let spec = policy.typed.as_ref().ok()?;
                let name = spec.rule.name.as_ref()?;
                Some(name.typed.as_deref().map_err(|_| "not a string"))
            })
            .collect();
        assert_eq!(names, [Some(Ok("a")), Some(Err("not a string"))]);
        assert!(
            matches!(
                spec.guards.as_ref().map(Items::read),
                Some(Err(Value::Mapping(_)))
            ),
            "a mapping where a list belongs is handed back as written"
        );
    }
}
