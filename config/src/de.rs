//! Deserialization helpers shared by the model: short forms (`"fs": "write"`,
//! `"outgoing": false`, `"target": "pod/x"`) and lists that are either a `;`-separated string or
//! an array, with per-entry validation.
//!
//! Everything is validated while deserializing, not afterwards, so that an error carries the
//! position serde_json is at and the key path serde_path_to_error tracks (an array entry's
//! error names its index).

use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// A config section that may also be written in a short form (a string or a boolean).
pub(crate) trait ShortForm: Sized + for<'de> Deserialize<'de> {
    /// What the short form is, for "invalid type" messages.
    const EXPECTING: &'static str;

    fn from_str<E: de::Error>(s: &str) -> Result<Self, E> {
        Err(E::invalid_type(de::Unexpected::Str(s), &Self::EXPECTING))
    }

    fn from_bool<E: de::Error>(b: bool) -> Result<Self, E> {
        Err(E::invalid_type(de::Unexpected::Bool(b), &Self::EXPECTING))
    }
}

/// `deserialize_with` for a field whose type has a short form.
pub(crate) fn short_form<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: ShortForm,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: ShortForm> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            T::from_str(s)
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<T, E> {
            T::from_bool(b)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// Parses a unit-variant enum (a mode) from a string with serde's own messages, so that an
/// unknown value gets the same "did you mean" treatment as in the long form.
pub(crate) fn variant_from_str<T: for<'de> Deserialize<'de>, E: de::Error>(s: &str) -> Result<T, E> {
    let d: de::value::StrDeserializer<'_, E> = s.into_deserializer();
    T::deserialize(d)
}

/// Schema of "A or B" for a field with a short form.
pub(crate) struct Either<A, B>(PhantomData<(A, B)>);

impl<A: JsonSchema, B: JsonSchema> JsonSchema for Either<A, B> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{}_or_{}", A::schema_name(), B::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({ "anyOf": [g.subschema_for::<A>(), g.subschema_for::<B>()] })
    }
}

/// Validates one list entry; the error is the message after the entry.
pub(crate) type Check = fn(&str) -> Result<(), String>;

/// Deserializes a list given either as a `;`-separated string (entries trimmed, empty ones
/// dropped) or as an array of strings, running `check` on each entry.
pub(crate) fn list<'de, D: Deserializer<'de>>(d: D, check: Check) -> Result<Vec<String>, D::Error> {
    struct V(Check);
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a `;`-separated string or an array of strings")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            let mut out = Vec::new();
            for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                (self.0)(entry).map_err(|m| E::custom(format!("entry {} `{entry}`: {m}", out.len())))?;
                out.push(entry.to_owned());
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(Entry(self.0))? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(check))
}

/// One array entry, checked while it is deserialized so that the error's path ends in `[i]`.
struct Entry(Check);

impl<'de> DeserializeSeed<'de> for Entry {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        (self.0)(&s).map_err(|m| de::Error::custom(format!("`{s}`: {m}")))?;
        Ok(s)
    }
}

/// `deserialize_with` for an optional regex string.
pub(crate) fn opt_regex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(s) = &s {
        check_regex(s).map_err(|m| de::Error::custom(format!("`{s}`: {m}")))?;
    }
    Ok(s)
}

/// Compiles `s` to see that it is a valid regex; the error is one line.
pub(crate) fn check_regex(s: &str) -> Result<(), String> {
    regex::Regex::new(s).map(|_| ()).map_err(|e| regex_error(&e))
}

/// The regex crate's syntax errors span several lines (pattern, caret, message); keep the
/// message line only, e.g. "invalid regex: unclosed group".
pub(crate) fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().next().unwrap_or("invalid"));
    format!("invalid regex: {line}")
}

/// Accepts anything: entries of glob lists are all valid.
pub(crate) fn any_entry(_: &str) -> Result<(), String> {
    Ok(())
}
