//! Serde for proto enums as their numbers: `#[serde(with = "crate::enum_number")]`.
//!
//! The node stores [`PairSummary`](crate::projection::PairSummary) and
//! [`StatusChange`](crate::projection::StatusChange) as JSON; their statuses
//! and categories are written as the enum's number, exactly as when the
//! fields were `i32`, so stores written before keep opening. Reading a
//! number the enum does not know is an error (a damaged record), never a
//! panic.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<E, S>(value: &E, serializer: S) -> Result<S::Ok, S::Error>
where
    E: Copy + Into<i32>,
    S: Serializer,
{
    serializer.serialize_i32((*value).into())
}

pub fn deserialize<'de, E, D>(deserializer: D) -> Result<E, D::Error>
where
    E: TryFrom<i32>,
    D: Deserializer<'de>,
{
    let number = i32::deserialize(deserializer)?;
    E::try_from(number).map_err(|_| D::Error::custom(format!("unknown enum value {number}")))
}

/// `(enum, count)` pairs, as `[[number, count], ...]`.
pub mod counts {
    use super::*;

    pub fn serialize<E, S>(values: &[(E, u32)], serializer: S) -> Result<S::Ok, S::Error>
    where
        E: Copy + Into<i32>,
        S: Serializer,
    {
        serializer.collect_seq(values.iter().map(|&(value, count)| (value.into(), count)))
    }

    pub fn deserialize<'de, E, D>(deserializer: D) -> Result<Vec<(E, u32)>, D::Error>
    where
        E: TryFrom<i32>,
        D: Deserializer<'de>,
    {
        Vec::<(i32, u32)>::deserialize(deserializer)?
            .into_iter()
            .map(|(number, count)| {
                E::try_from(number)
                    .map(|value| (value, count))
                    .map_err(|_| D::Error::custom(format!("unknown enum value {number}")))
            })
            .collect()
    }
}
