//! The fast path of [`super::decode`]: the common, canonical body read straight into borrowed slots,
//! with no `serde_json::Value` (no map of owned keys, no string copied unless it has escapes).
//!
//! It only ever answers a question the way the walker would, or gives up:
//! - each object level captures a fixed set of keys ([`ROOT`], [`PROPERTIES`], ...), the union of
//!   every key the decoding rules may ask for at that level; asked for any other key, the view
//!   answers with an error, so the rules stop and [`decode`] returns `None`;
//! - a captured key must appear in its exact spelling: a key equal to one of them ignoring ASCII
//!   case (where the walker's case-insensitive lookup could pick a different key) and a repeated
//!   captured key (where `Value` keeps the last one) abandon the fast path;
//! - a captured key holds a string or `null` (or, for the four object keys, an object or `null`);
//!   any other type abandons it;
//! - every other value is still read with `deserialize_any`, the call `Value` itself uses, so
//!   exactly the same documents are valid JSON (e.g. a number out of range inside an ignored field
//!   fails both ways; `IgnoredAny` alone would skip it);
//! - any error of the rules, too, abandons the fast path, so every message comes from the walker.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ActivationRequest;
use super::decode::{At, Field, Fields, PayloadError, decode_fields, without_bom};

/// The most keys any level captures ([`ROOT`]).
const MAX_KEYS: usize = 14;

/// What a captured key may hold besides `null`.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Object(&'static [Key]),
}

#[derive(Clone, Copy)]
struct Key {
    name: &'static str,
    kind: Kind,
}

const fn string(name: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Str,
    }
}

const fn object(name: &'static str, keys: &'static [Key]) -> Key {
    Key {
        name,
        kind: Kind::Object(keys),
    }
}

const TICKET: &[Key] = &[string("ticketNumber"), string("ticketSystem")];
const EXPIRATION: &[Key] = &[string("duration"), string("endDateTime"), string("type")];
const SCHEDULE: &[Key] = &[string("startDateTime"), object("expiration", EXPIRATION)];
/// `properties` of an Azure resource request.
const PROPERTIES: &[Key] = &[
    string("principalId"),
    string("principalType"),
    string("requestType"),
    string("roleDefinitionId"),
    string("scope"),
    string("justification"),
    object("ticketInfo", TICKET),
    object("scheduleInfo", SCHEDULE),
];
/// The top level of all three shapes.
const ROOT: &[Key] = &[
    object("properties", PROPERTIES),
    string("@odata.type"),
    string("groupId"),
    string("roleDefinitionId"),
    string("id"),
    string("name"),
    string("principalId"),
    string("action"),
    string("accessId"),
    string("appScopeId"),
    string("directoryScopeId"),
    string("justification"),
    object("ticketInfo", TICKET),
    object("scheduleInfo", SCHEDULE),
];

/// Decodes `body` if it is plainly the common form; `None` sends it to the walker.
pub(super) fn decode(body: &[u8]) -> Option<ActivationRequest> {
    let mut deserializer = serde_json::Deserializer::from_slice(without_bom(body));
    let root = LevelSeed(ROOT).deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    let Slot::Object(root) = root else {
        return None;
    };
    decode_fields(&View {
        level: &root,
        path: String::new(),
    })
    .ok()
}

/// A captured key's value.
enum Slot<'de> {
    Absent,
    Null,
    Str(Cow<'de, str>),
    Object(Box<Level<'de>>),
}

/// One object: the slots of its captured keys, in the order of `keys`.
struct Level<'de> {
    keys: &'static [Key],
    slots: [Slot<'de>; MAX_KEYS],
}

/// Why the fast path gives up; never shown (the walker then decides).
const UNUSUAL: &str = "not the common form";

/// Reads one object capturing `keys` (or `null`).
struct LevelSeed(&'static [Key]);

impl<'de> DeserializeSeed<'de> for LevelSeed {
    type Value = Slot<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LevelSeed {
    type Value = Slot<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let keys = self.0;
        let mut slots: [Slot<'de>; MAX_KEYS] = std::array::from_fn(|_| Slot::Absent);
        while let Some(KeyText(text)) = map.next_key()? {
            let Some(index) = keys.iter().position(|key| key.name == text) else {
                if keys.iter().any(|key| key.name.eq_ignore_ascii_case(&text)) {
                    return Err(de::Error::custom(UNUSUAL));
                }
                map.next_value::<Skip>()?;
                continue;
            };
            let slot = slots
                .get_mut(index)
                .ok_or_else(|| de::Error::custom(UNUSUAL))?;
            if !matches!(slot, Slot::Absent) {
                return Err(de::Error::custom(UNUSUAL));
            }
            *slot = match keys.get(index).map(|key| key.kind) {
                Some(Kind::Str) => map.next_value_seed(StrSeed)?,
                Some(Kind::Object(inner)) => map.next_value_seed(LevelSeed(inner))?,
                None => return Err(de::Error::custom(UNUSUAL)),
            };
        }
        Ok(Slot::Object(Box::new(Level { keys, slots })))
    }
}

/// A string, borrowed from the body when it has no escapes.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(text.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A captured string key's value: a string or `null`, anything else gives up.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Slot<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Slot<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(text.to_string())))
    }
}

/// An ignored value, read with `deserialize_any` all the way down (as `Value` reads it), so the
/// fast path accepts exactly the JSON the walker accepts.
struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Keys as strings, the way `Value` reads them.
        while map.next_key::<KeyText<'de>>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(Skip)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        // serde_json never produces an enum from `deserialize_any`; accepted as `IgnoredAny` does.
        IgnoredAny.visit_enum(data).map(|_| Skip)
    }
}

/// The fast path's view of one captured object.
struct View<'o, 'de> {
    level: &'o Level<'de>,
    path: String,
}

impl<'o> Fields for View<'o, '_> {
    fn path(&self) -> &str {
        &self.path
    }

    fn get(&self, name: &str) -> Result<Option<(At<'_>, Field<'_, Self>)>, PayloadError> {
        let level: &'o Level<'_> = self.level;
        let found = level
            .keys
            .iter()
            .position(|key| key.name == name)
            .and_then(|index| Some((level.keys.get(index)?, level.slots.get(index)?)));
        let Some((key, slot)) = found else {
            // A question the fast path did not capture: it cannot answer it as the walker would.
            return Err(PayloadError::NotJson(UNUSUAL.to_string()));
        };
        let path = At {
            parent: &self.path,
            key: key.name,
        };
        let field = match slot {
            Slot::Absent => return Ok(None),
            Slot::Null => Field::Null,
            Slot::Str(text) => Field::Str(text),
            Slot::Object(inner) => Field::Object(View {
                level: inner,
                path: path.to_string(),
            }),
        };
        Ok(Some((path, field)))
    }
}
