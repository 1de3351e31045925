//! Times written relative to now (`"observedUntil": "now-5m"`), so that an
//! example or a template stays valid on any date.
//!
//! Only the event's time fields take the form (`createdAt`,
//! `observedFrom`, `observedUntil`, `effectiveFrom`, at any depth, so an
//! amendment's correction too), and only as a whole string: `now`, or `now`
//! then `+` or `-`, a whole number and one unit of `s`, `m`, `h` or `d`. A
//! time left out stays out: an observation's time is the mission's
//! testimony, and submit never invents one (the rules refuse it missing).
//!
//! What the nonce derives from (`submit`'s `report_nonce`) is the
//! event as written: a relative time counts there as its expression, never
//! as the instant it was resolved to, so the same file submitted on a later
//! day still names the same report and counts once.

use anyhow::{bail, Context};
use prost_types::Timestamp;
use serde_json::Value;

/// The fields a relative time may stand in, by their JSON and proto names.
const TIME_FIELDS: &[&str] = &[
    "createdAt",
    "created_at",
    "observedFrom",
    "observed_from",
    "observedUntil",
    "observed_until",
    "effectiveFrom",
    "effective_from",
];

/// One relative time of an event: where it is and what was written there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelativeTime {
    /// The JSON path of the field, keys joined by `.` (`observation.observedUntil`).
    pub path: String,
    /// The expression as written (`now-5m`).
    pub expression: String,
}

/// An event's JSON with its relative times resolved, and what was resolved.
pub struct Resolved {
    /// The event with every relative time replaced by an RFC 3339 instant.
    pub event: Value,
    /// The event with every relative time left out: what, with
    /// `relative_times`, the nonce derives from.
    pub as_written: Value,
    /// Each relative time, in the order met (keys in the file's order).
    pub relative_times: Vec<RelativeTime>,
}

/// Resolves the relative times of `event` against `now`.
pub fn resolve(event: &Value, now: &Timestamp) -> anyhow::Result<Resolved> {
    let mut resolved = Resolved {
        event: event.clone(),
        as_written: event.clone(),
        relative_times: Vec::new(),
    };
    walk(
        &mut resolved.event,
        &mut resolved.as_written,
        "",
        now,
        &mut resolved.relative_times,
    )?;
    Ok(resolved)
}

fn walk(
    event: &mut Value,
    as_written: &mut Value,
    path: &str,
    now: &Timestamp,
    found: &mut Vec<RelativeTime>,
) -> anyhow::Result<()> {
    let (Value::Object(fields), Value::Object(written)) = (event, as_written) else {
        return Ok(());
    };
    for (key, value) in fields.iter_mut() {
        let field_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            Value::String(text) if TIME_FIELDS.contains(&key.as_str()) && is_relative(text) => {
                let instant = instant(text, now).with_context(|| field_path.clone())?;
                found.push(RelativeTime {
                    path: field_path,
                    expression: text.clone(),
                });
                *value = Value::String(instant.to_string());
                written.remove(key);
            }
            Value::Object(_) => {
                if let Some(written_value) = written.get_mut(key) {
                    walk(value, written_value, &field_path, now, found)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `text` is meant as a relative time (then it must parse).
fn is_relative(text: &str) -> bool {
    text.starts_with("now")
}

/// The instant `text` names: `now`, or `now±N` and a unit (s, m, h, d), to
/// the whole second.
fn instant(text: &str, now: &Timestamp) -> anyhow::Result<Timestamp> {
    let rest = &text["now".len()..];
    let offset_seconds = if rest.is_empty() {
        0
    } else {
        let (sign, amount) = match rest.split_at(1) {
            ("+", amount) => (1, amount),
            ("-", amount) => (-1, amount),
            _ => bail!(
                "{text:?} is not a relative time: write now, now-15m or now+2h (units s, m, h, d)"
            ),
        };
        let unit_seconds = match amount.chars().last() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => bail!("{text:?}: the unit must be s, m, h or d (now-15m)"),
        };
        let digits = &amount[..amount.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            bail!("{text:?}: expected a whole number before the unit (now-15m)");
        }
        let count: i64 = digits
            .parse()
            .ok()
            .filter(|count: &i64| *count <= 100 * 366)
            .with_context(|| format!("{text:?}: at most 36600 days away"))?;
        sign * count * unit_seconds
    };
    Ok(Timestamp {
        seconds: now.seconds + offset_seconds,
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Timestamp = Timestamp {
        seconds: 1_800_000_000,
        nanos: 123,
    };

    #[test]
    fn relative_times_resolve_and_are_left_out_of_the_event_as_written() {
        let event = json!({
            "createdAt": "now",
            "observation": {
                "observedFrom": "now-20m",
                "observedUntil": "2027-01-15T10:00:00Z",
                "narrative": "now-5m is not a time here"
            }
        });
        let resolved = resolve(&event, &NOW).unwrap();
        assert_eq!(resolved.event["createdAt"], "2027-01-15T08:00:00Z");
        assert_eq!(
            resolved.event["observation"]["observedFrom"],
            "2027-01-15T07:40:00Z"
        );
        assert_eq!(
            resolved.event["observation"]["narrative"],
            "now-5m is not a time here"
        );
        assert_eq!(
            resolved.as_written,
            json!({"observation": {
                "observedUntil": "2027-01-15T10:00:00Z",
                "narrative": "now-5m is not a time here"
            }})
        );
        assert_eq!(
            resolved.relative_times,
            vec![
                RelativeTime {
                    path: "createdAt".into(),
                    expression: "now".into()
                },
                RelativeTime {
                    path: "observation.observedFrom".into(),
                    expression: "now-20m".into()
                },
            ]
        );
    }

    #[test]
    fn every_unit_and_sign() {
        let at = |text: &str| instant(text, &NOW).unwrap().seconds - NOW.seconds;
        assert_eq!(at("now"), 0);
        assert_eq!(at("now+30s"), 30);
        assert_eq!(at("now-15m"), -900);
        assert_eq!(at("now+2h"), 7200);
        assert_eq!(at("now-1d"), -86_400);
    }

    #[test]
    fn a_malformed_relative_time_is_refused_naming_the_field() {
        for bad in [
            "nowish",
            "now-",
            "now-m",
            "now-5",
            "now-5w",
            "now - 5m",
            "now-1.5h",
            "now-99999999d",
        ] {
            let event = json!({"observation": {"observedUntil": bad}});
            let error = resolve(&event, &NOW).err().unwrap();
            let text = format!("{error:#}");
            assert!(
                text.starts_with("observation.observedUntil: "),
                "{bad}: {text}"
            );
        }
    }
}
