//! How admin request bodies are read: PATCH semantics (an absent field keeps its
//! value, `null` clears a nullable one) and nested objects that must be objects.

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

/// Deserialises a present field (even `null`) as `Some(..)`, so that with
/// `#[serde(default)]` an absent field stays `None`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Deserialises a present field as `Some(..)` and refuses `null`: for a field that
/// cannot be cleared, `null` is a mistake to report, not a silent "no change".
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Wraps a deserializer so that a struct is read from an object only. serde's derive
/// also reads a struct from an array of its fields in order, which would let
/// `[true]` stand for `{"enabled": true}`. Use with `#[serde(remote = "Self")]`.
pub struct ObjectOnly<D>(pub D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Patch {
        #[serde(default, deserialize_with = "super::present")]
        name: Option<String>,
        #[serde(default, deserialize_with = "super::nullable")]
        note: Option<Option<String>>,
    }

    fn parse(json: &str) -> Result<Patch, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[derive(Debug, Deserialize)]
    #[serde(remote = "Self")]
    struct Nested {
        #[serde(default)]
        on: bool,
    }

    impl<'de> Deserialize<'de> for Nested {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Nested::deserialize(super::ObjectOnly(d))
        }
    }

    #[test]
    fn nested_structs_are_read_from_objects_only() {
        assert!(serde_json::from_str::<Nested>(r#"{"on": true}"#).unwrap().on);
        assert!(serde_json::from_str::<Nested>("[true]").unwrap_err().to_string().contains("expected struct Nested"));
        assert!(serde_json::from_str::<Vec<Nested>>(r#"[{}, {"on": true}]"#).unwrap()[1].on);
    }

    #[test]
    fn absent_null_and_value_are_told_apart() {
        let p = parse("{}").unwrap();
        assert_eq!((p.name, p.note), (None, None));
        let p = parse(r#"{"name": "a", "note": null}"#).unwrap();
        assert_eq!((p.name.as_deref(), p.note), (Some("a"), Some(None)));
        assert!(parse(r#"{"name": null}"#).unwrap_err().to_string().contains("null"));
    }
}
