//! PATCH semantics: an absent field keeps its value, `null` clears a nullable one.

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
