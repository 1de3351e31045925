//! Events and receipts as JSON: the proto3 JSON mapping of `proto/`.
//!
//! People write events as JSON (field names as in the .proto or lowerCamelCase,
//! enums by name, timestamps in RFC 3339, bytes in base64) and read receipts
//! the same way. The mapping is the standard one, driven by the compiled
//! descriptors, so it can never drift from the schema.

use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use ceasefire_grpc::proto::{Event, FILE_DESCRIPTOR_SET};

fn descriptor(name: &str) -> anyhow::Result<MessageDescriptor> {
    // Decoded once: building the pool costs far more than a message, and
    // `watch` renders every status change, the fuzzer every input.
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|error| anyhow!("the built-in proto descriptors are unreadable: {error}"))?;
    pool.get_message_by_name(name)
        .ok_or_else(|| anyhow!("no message {name} in the built-in descriptors"))
}

/// Parses one event from proto3 JSON. Unknown fields are an error: a typo
/// must not silently drop what the author meant to sign.
pub fn event_from_json(json: &str) -> anyhow::Result<Event> {
    parse("ceasefire.v1.Event", json)
}

/// Splits a file's text into the JSON values it holds, in order: one value
/// (a pretty-printed event), or one after another (NDJSON, one per line).
/// This is how `submit` reads its input; the values are events or
/// signed-event files. Text holding no value gives an empty list.
pub fn json_values(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .enumerate()
        .map(|(index, value)| {
            value.with_context(|| format!("event {} is not valid JSON", index + 1))
        })
        .collect()
}

fn parse<M: Message + Default>(name: &str, json: &str) -> anyhow::Result<M> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(descriptor(name)?, &mut deserializer)
        .map_err(|error| anyhow!("{error}"))?;
    deserializer.end().map_err(|error| anyhow!("{error}"))?;
    M::decode(message.encode_to_vec().as_slice())
        .with_context(|| format!("the JSON does not make a valid {name}"))
}

/// Renders any of our messages as proto3 JSON (for receipts and listings).
pub fn message_to_json<M: Message>(name: &str, message: &M) -> anyhow::Result<serde_json::Value> {
    let dynamic = DynamicMessage::decode(descriptor(name)?, message.encode_to_vec().as_slice())?;
    let options = SerializeOptions::new().skip_default_fields(true);
    Ok(dynamic.serialize_with_options(serde_json::value::Serializer, &options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_by_name_timestamps_and_snake_case_fields_are_read() {
        let event = event_from_json(
            r#"{"author": "mission-a", "created_at": "2026-11-25T06:00:00Z",
                "observation": {"finding": "FINDING_VIOLATION", "commitmentId": "ceasefire"}}"#,
        )
        .unwrap();
        assert_eq!(event.author, "mission-a");
        assert_eq!(event.created_at.unwrap().seconds, 1_795_586_400);
        let Some(ceasefire_grpc::proto::event::Body::Observation(observation)) = event.body else {
            panic!("not an observation");
        };
        assert_eq!(
            observation.finding,
            ceasefire_grpc::proto::Finding::Violation as i32
        );
    }

    #[test]
    fn unknown_fields_and_enum_names_are_errors() {
        assert!(event_from_json(r#"{"athor": "x"}"#).is_err());
        assert!(event_from_json(r#"{"observation": {"finding": "FINDING_MAYBE"}}"#).is_err());
        assert!(event_from_json(r#"{"author": "x"} trailing"#).is_err());
    }
}
