//! The machine-readable facts behind a check's message ([`super::CheckOutcome::evidence`]).
//!
//! Every decision carries a few of these (a handful of keys per check), is kept by the replay cache
//! and the console, and is dropped later: as a `serde_json::Map` each key was a `String` of its own
//! and each map a B-tree, which made building and dropping evidence a visible share of a
//! decision's cost. The keys are names the check code writes (`"requested"`, `"upstream"`), so they
//! are `&'static str` here, kept sorted in one small vector: serialized, the evidence is the same
//! JSON object, keys in the same (sorted) order, as the map gave.

use std::ops::Index;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence(Vec<(&'static str, Value)>);

impl Evidence {
    /// Sets `key` (replacing an earlier value of it, as a map would).
    pub fn insert(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.binary_search_by(|(existing, _)| existing.cmp(&key)) {
            Ok(index) => self.0[index].1 = value,
            Err(index) => self.0.insert(index, (key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(existing, _)| (*existing).cmp(key))
            .ok()
            .map(|index| &self.0[index].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every entry of `other` (its values win, as `Map::extend`'s do).
    pub fn extend(&mut self, other: Evidence) {
        for (key, value) in other.0 {
            self.insert(key, value);
        }
    }

    /// The evidence as a JSON object (for the console and `evaluate`'s explanation).
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(key, value)| ((*key).to_string(), value.clone()))
                .collect(),
        )
    }
}

/// `evidence["key"]`: the value, or `null` when the key is absent (as indexing a `Value` gives).
impl Index<&str> for Evidence {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 6] = [
        "upstream",
        "max",
        "requested",
        "a",
        "window",
        "requested_seconds",
    ];

    proptest! {
        /// Whatever the order of inserts, and with keys set twice, the evidence serializes to
        /// exactly the JSON a `serde_json::Map` built by the same inserts did.
        #[test]
        fn serializes_exactly_as_the_map_it_replaces(
            inserts in proptest::collection::vec((0..KEYS.len(), any::<i64>()), 0..12)
        ) {
            let mut evidence = Evidence::default();
            let mut map = serde_json::Map::new();
            for (key, value) in inserts {
                evidence.insert(KEYS[key], value);
                map.insert(KEYS[key].to_string(), value.into());
            }
            prop_assert_eq!(
                serde_json::to_string(&evidence).ok(),
                serde_json::to_string(&map).ok()
            );
            prop_assert_eq!(evidence.to_value(), Value::Object(map.clone()));
            for key in KEYS {
                prop_assert_eq!(evidence.get(key), map.get(key));
            }
        }
    }

    #[test]
    fn an_absent_key_indexes_as_null_and_a_later_extend_wins() {
        let mut evidence = Evidence::default();
        evidence.insert("max", "PT2H");
        assert_eq!(evidence["max"], "PT2H");
        assert_eq!(evidence["missing"], Value::Null);
        let mut later = Evidence::default();
        later.insert("max", "PT8H");
        later.insert("requested", "PT1H");
        evidence.extend(later);
        assert_eq!(
            serde_json::to_string(&evidence).ok().as_deref(),
            Some(r#"{"max":"PT8H","requested":"PT1H"}"#)
        );
    }
}
