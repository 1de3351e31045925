//! Canonical payloads (docs/spec.md section 1): an event payload is accepted
//! only if it is *the* encoding of the `Event` it decodes to.
//!
//! The verdict is simple: decode with prost, re-encode, compare bytes. prost
//! writes fields in field-number order, omits proto3 defaults (0.0 and -0.0
//! alike), packs repeated numerics and writes minimal varints, which is the
//! canonical form the spec defines. What the comparison cannot say is *why*
//! bytes differ, and a refusal must say it. So when they differ, a small
//! wire-format walker reads the payload against the schema (compiled from
//! `proto/`, so it follows the proto as it grows) and names the first
//! violation in byte order: an unknown field, a field twice, two bodies of
//! a oneof, fields out of order, a non-minimal varint, a default encoded
//! explicitly, a length past the end, and so on.
//!
//! The walker alone decides exactly what the round trip decides (a property
//! the `event` fuzz target and the tests below check on mutated payloads),
//! so it is also what another implementation can follow, rule by rule. It
//! reads any bytes without panicking, allocates only for the error it
//! returns and the fields it has seen, and never recurses deeper than the
//! schema (and at most [`MAX_DEPTH`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

use crate::proto::Event;

/// Deepest nesting of messages the walker follows (prost's recursion limit).
pub const MAX_DEPTH: usize = 100;

/// Full name of the payload's message type.
const EVENT: &str = ".ceasefire.v1.Event";

/// Decodes `payload` as an [`Event`] if, and only if, it is the canonical
/// encoding of that event; otherwise says what is wrong, at which byte.
pub fn decode_event(payload: &[u8]) -> Result<Event, NonCanonical> {
    match Event::decode(payload) {
        Ok(event) if event.encoded_len() == payload.len() && event.encode_to_vec() == payload => {
            Ok(event)
        }
        decoded => {
            // Not canonical, or not an event at all: the walker says why.
            check_event(payload)?;
            // The walker found nothing, yet prost disagrees: a bug in one of
            // them (the tests and the fuzz target look for it). Still a
            // refusal, saying what can be said.
            let violation = match decoded {
                Err(error) => Violation::Undecodable(error.to_string()),
                Ok(_) => Violation::NotReencoding,
            };
            Err(NonCanonical {
                offset: 0,
                path: String::new(),
                violation,
            })
        }
    }
}

/// Walks `payload` as a `ceasefire.v1.Event` and reports the first violation
/// of the canonical-encoding rules, in byte order.
pub fn check_event(payload: &[u8]) -> Result<(), NonCanonical> {
    let schema = schema();
    let Some(&event) = schema.by_name.get(EVENT) else {
        // The compiled schema always has the event (a test checks it).
        return Ok(());
    };
    let mut path = Vec::new();
    Walker { schema }.message(event, payload, 0, 1, &mut path)
}

/// Why a payload is not canonical: the first violation, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonCanonical {
    /// Offset in the payload of the key of the offending field (of the
    /// bytes where a key was due, for a key that cannot be read).
    pub offset: usize,
    /// The fields leading to the message holding it, from the event down,
    /// such as `observation.location.point` or `define_zone.boundary.vertices[2]`;
    /// empty for the event itself.
    pub path: String,
    pub violation: Violation,
}

impl NonCanonical {
    /// Whether the payload is not a protobuf encoding of an event at all
    /// (no decoder reads it), rather than a non-canonical one.
    pub fn is_malformed(&self) -> bool {
        self.violation.is_malformed()
    }
}

impl fmt::Display for NonCanonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} (at byte {})", self.violation, self.offset)
        } else {
            write!(
                f,
                "{} (in {}, at byte {})",
                self.violation, self.path, self.offset
            )
        }
    }
}

impl std::error::Error for NonCanonical {}

/// A field, as messages name it: `field 2 (author)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRef {
    pub number: u32,
    pub name: &'static str,
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number, self.name)
    }
}

/// Which varint of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintRole {
    Key,
    Length,
    Value,
}

impl fmt::Display for VarintRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarintRole::Key => "key",
            VarintRole::Length => "length",
            VarintRole::Value => "value",
        })
    }
}

/// One rule broken. The first group makes the payload unreadable by any
/// protobuf decoder; the second is readable but not canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The bytes end inside a varint (of a key, a length or a value).
    TruncatedVarint {
        role: VarintRole,
        field: Option<FieldRef>,
    },
    /// A varint of more than 10 bytes, or above 2^64 - 1.
    VarintTooLong {
        role: VarintRole,
        field: Option<FieldRef>,
    },
    /// A key whose field number is 0 or above 2^29 - 1.
    InvalidFieldNumber(u64),
    /// A key with wire type 6 or 7.
    InvalidWireType { number: u64, wire_type: u8 },
    /// A known field with a wire type its type never has.
    WrongWireType {
        field: FieldRef,
        found: u8,
        expected: u8,
    },
    /// A length, or a fixed-size value, runs past the end of its message.
    Truncated {
        field: FieldRef,
        needed: u64,
        left: usize,
    },
    /// A string field that is not UTF-8.
    InvalidUtf8(FieldRef),
    /// A packed field of fixed-size elements whose length is not a multiple.
    PackedLength {
        field: FieldRef,
        len: usize,
        size: usize,
    },
    /// Messages nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// prost refuses what the walker accepts (a bug; never seen).
    Undecodable(String),

    /// A field number the schema does not define for this message.
    UnknownField(u32),
    /// A non-repeated (or packed) field encoded more than once.
    Twice(FieldRef),
    /// A repeated field whose elements are not consecutive.
    NotContiguous(FieldRef),
    /// A second member of a oneof.
    TwoBodies {
        oneof: &'static str,
        first: FieldRef,
        second: FieldRef,
    },
    /// A field after one with a higher number.
    OutOfOrder { field: FieldRef, after: FieldRef },
    /// A varint with needless continuation bytes.
    NonMinimalVarint { role: VarintRole, field: FieldRef },
    /// An implicit-presence field holding its default, encoded.
    ExplicitDefault {
        field: FieldRef,
        value: &'static str,
    },
    /// A varint value the field's type reads as another value.
    OutOfRange {
        field: FieldRef,
        value: u64,
        kind: &'static str,
    },
    /// A repeated numeric field not packed.
    NotPacked(FieldRef),
    /// A packed field with no elements (an empty list is omitted).
    EmptyPacked(FieldRef),
    /// prost re-encodes differently what the walker accepts (a bug; never seen).
    NotReencoding,
}

impl Violation {
    /// Whether no protobuf decoder reads the payload.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Violation::TruncatedVarint { .. }
                | Violation::VarintTooLong { .. }
                | Violation::InvalidFieldNumber(_)
                | Violation::InvalidWireType { .. }
                | Violation::WrongWireType { .. }
                | Violation::Truncated { .. }
                | Violation::InvalidUtf8(_)
                | Violation::PackedLength { .. }
                | Violation::TooDeep
                | Violation::Undecodable(_)
        )
    }
}

fn wire_type_name(wire_type: u8) -> &'static str {
    match wire_type {
        0 => "varint",
        1 => "64-bit",
        2 => "length-delimited",
        3 => "start group",
        4 => "end group",
        5 => "32-bit",
        _ => "invalid",
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = |field: &Option<FieldRef>| match field {
            Some(field) => format!(" of field {field}"),
            None => String::new(),
        };
        match self {
            Violation::TruncatedVarint { role, field } => {
                write!(f, "truncated varint: the {role}{}", of(field))
            }
            Violation::VarintTooLong { role, field } => write!(
                f,
                "invalid varint: the {role}{} is over 10 bytes or above 2^64 - 1",
                of(field)
            ),
            Violation::InvalidFieldNumber(number) => write!(f, "invalid field number {number}"),
            Violation::InvalidWireType { number, wire_type } => {
                write!(
                    f,
                    "invalid wire type {wire_type} in the key of field {number}"
                )
            }
            Violation::WrongWireType {
                field,
                found,
                expected,
            } => write!(
                f,
                "wrong wire type: field {field} has {found} ({}), expected {expected} ({})",
                wire_type_name(*found),
                wire_type_name(*expected)
            ),
            Violation::Truncated {
                field,
                needed,
                left,
            } => write!(
                f,
                "truncated: field {field} needs {needed} bytes, {left} are left"
            ),
            Violation::InvalidUtf8(field) => write!(f, "invalid UTF-8 in field {field}"),
            Violation::PackedLength { field, len, size } => write!(
                f,
                "truncated: packed field {field} is {len} bytes, not a multiple of {size}"
            ),
            Violation::TooDeep => write!(f, "messages nested more than {MAX_DEPTH} deep"),
            Violation::Undecodable(error) => write!(f, "{error}"),
            Violation::UnknownField(number) => write!(f, "unknown field {number}"),
            Violation::Twice(field) => write!(f, "field {field} appears twice"),
            Violation::NotContiguous(field) => write!(
                f,
                "the elements of repeated field {field} are not consecutive"
            ),
            Violation::TwoBodies {
                oneof,
                first,
                second,
            } => write!(
                f,
                "two bodies of the oneof {oneof}: field {second} after field {first}"
            ),
            Violation::OutOfOrder { field, after } => {
                write!(f, "fields out of order: {field} after {after}")
            }
            Violation::NonMinimalVarint { role, field } => {
                write!(f, "non-minimal varint: the {role} of field {field}")
            }
            Violation::ExplicitDefault { field, value } => {
                write!(
                    f,
                    "default value encoded explicitly: field {field} is {value}"
                )
            }
            Violation::OutOfRange { field, value, kind } => write!(
                f,
                "value out of range: field {field} holds {value}, which is not {kind}"
            ),
            Violation::NotPacked(field) => write!(f, "repeated field {field} is not packed"),
            Violation::EmptyPacked(field) => write!(
                f,
                "packed field {field} is empty (an empty list is omitted)"
            ),
            Violation::NotReencoding => {
                write!(f, "the payload does not re-encode to itself")
            }
        }
    }
}

// ---- the schema ---------------------------------------------------------------

/// How a field's values are encoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Bool,
    Enum,
    Fixed32,
    Sfixed32,
    Float,
    Fixed64,
    Sfixed64,
    Double,
    String,
    Bytes,
    /// Index of the message type in [`Schema::messages`].
    Message(usize),
    /// A field the walker does not look into (maps, groups: none in
    /// `proto/`, which a test checks); the round trip still decides.
    Opaque,
}

impl Kind {
    /// The wire type of one value.
    fn wire_type(self) -> u8 {
        match self {
            Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Bool
            | Kind::Enum => 0,
            Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => 1,
            Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => 5,
            Kind::String | Kind::Bytes | Kind::Message(_) | Kind::Opaque => 2,
        }
    }

    fn is_numeric(self) -> bool {
        self.wire_type() != 2
    }
}

#[derive(Debug)]
struct Field {
    number: u32,
    name: String,
    kind: Kind,
    repeated: bool,
    /// Repeated numeric, packed (proto3's default).
    packed: bool,
    /// Written when set even if it holds the default: message fields,
    /// oneof members, proto3 `optional` fields.
    explicit_presence: bool,
    /// Index into the message's `oneofs`, for a member of a real oneof.
    oneof: Option<usize>,
}

#[derive(Debug)]
struct MessageType {
    /// Sorted by number.
    fields: Vec<Field>,
    oneofs: Vec<String>,
}

impl MessageType {
    fn field(&self, number: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&number, |field| field.number)
            .ok()
            .map(|index| &self.fields[index])
    }
}

#[derive(Debug, Default)]
struct Schema {
    messages: Vec<MessageType>,
    /// Full name with the leading dot, as descriptors refer to types.
    by_name: HashMap<String, usize>,
}

/// The schema of every message in `proto/` and its imports, from the
/// descriptor set compiled with them.
fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .map(|set| Schema::from_descriptors(&set))
            .unwrap_or_default()
    })
}

impl Schema {
    fn from_descriptors(set: &FileDescriptorSet) -> Schema {
        // Every message type, nested ones included, with its full name.
        let mut types: Vec<(String, &DescriptorProto, bool)> = Vec::new();
        fn collect<'a>(
            prefix: &str,
            messages: &'a [DescriptorProto],
            proto3: bool,
            out: &mut Vec<(String, &'a DescriptorProto, bool)>,
        ) {
            for message in messages {
                let name = format!("{prefix}.{}", message.name());
                collect(&name, &message.nested_type, proto3, out);
                out.push((name, message, proto3));
            }
        }
        for file in &set.file {
            let prefix = if file.package().is_empty() {
                String::new()
            } else {
                format!(".{}", file.package())
            };
            collect(
                &prefix,
                &file.message_type,
                file.syntax() == "proto3",
                &mut types,
            );
        }
        let by_name: HashMap<String, usize> = types
            .iter()
            .enumerate()
            .map(|(index, (name, _, _))| (name.clone(), index))
            .collect();
        let maps: Vec<bool> = types
            .iter()
            .map(|(_, message, _)| {
                message
                    .options
                    .as_ref()
                    .is_some_and(|options| options.map_entry())
            })
            .collect();
        let messages = types
            .iter()
            .map(|(_, message, proto3)| {
                let mut fields: Vec<Field> = message
                    .field
                    .iter()
                    .map(|field| {
                        let repeated = field.label() == Label::Repeated;
                        let kind = match field.r#type() {
                            Type::Int32 => Kind::Int32,
                            Type::Int64 => Kind::Int64,
                            Type::Uint32 => Kind::Uint32,
                            Type::Uint64 => Kind::Uint64,
                            Type::Sint32 => Kind::Sint32,
                            Type::Sint64 => Kind::Sint64,
                            Type::Bool => Kind::Bool,
                            Type::Enum => Kind::Enum,
                            Type::Fixed32 => Kind::Fixed32,
                            Type::Sfixed32 => Kind::Sfixed32,
                            Type::Float => Kind::Float,
                            Type::Fixed64 => Kind::Fixed64,
                            Type::Sfixed64 => Kind::Sfixed64,
                            Type::Double => Kind::Double,
                            Type::String => Kind::String,
                            Type::Bytes => Kind::Bytes,
                            Type::Message => match by_name.get(field.type_name()) {
                                Some(&index) if !maps[index] => Kind::Message(index),
                                _ => Kind::Opaque,
                            },
                            Type::Group => Kind::Opaque,
                        };
                        let proto3_optional = field.proto3_optional();
                        let packed = repeated
                            && kind.is_numeric()
                            && field
                                .options
                                .as_ref()
                                .and_then(|options| options.packed)
                                .unwrap_or(*proto3);
                        Field {
                            number: u32::try_from(field.number()).unwrap_or(0),
                            name: field.name().to_string(),
                            kind,
                            repeated,
                            packed,
                            explicit_presence: !repeated
                                && (matches!(kind, Kind::Message(_) | Kind::Opaque)
                                    || field.oneof_index.is_some()
                                    || !*proto3),
                            oneof: field
                                .oneof_index
                                .filter(|_| !proto3_optional)
                                .and_then(|index| usize::try_from(index).ok()),
                        }
                    })
                    .collect();
                fields.sort_by_key(|field| field.number);
                MessageType {
                    fields,
                    oneofs: message
                        .oneof_decl
                        .iter()
                        .map(|oneof| oneof.name().to_string())
                        .collect(),
                }
            })
            .collect();
        Schema { messages, by_name }
    }
}

// ---- the walker -----------------------------------------------------------------

/// A failure to read a varint.
enum VarintError {
    Truncated,
    TooLong,
}

/// Reads the varint at `pos`: its value, its length, and whether it is
/// minimal (one byte, or a last byte other than 0x00). At most 10 bytes,
/// the 10th at most 1, as every protobuf decoder requires.
fn read_varint(buf: &[u8], pos: usize) -> Result<(u64, usize, bool), VarintError> {
    let mut value = 0u64;
    for index in 0..10 {
        let Some(&byte) = buf.get(pos + index) else {
            return Err(VarintError::Truncated);
        };
        if index == 9 && byte > 1 {
            return Err(VarintError::TooLong);
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            return Ok((value, index + 1, index == 0 || byte != 0));
        }
    }
    Err(VarintError::TooLong)
}

/// One step of the path to a nested message.
struct Step {
    name: &'static str,
    /// The element's index, for a repeated field.
    index: Option<usize>,
}

fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for (i, step) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(step.name);
        if let Some(index) = step.index {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

struct Walker {
    schema: &'static Schema,
}

impl Walker {
    /// Checks the message `type_index` encoded as `buf`, which starts at
    /// `base` in the payload.
    fn message(
        &self,
        type_index: usize,
        buf: &[u8],
        base: usize,
        depth: usize,
        path: &mut Vec<Step>,
    ) -> Result<(), NonCanonical> {
        let Some(message) = self.schema.messages.get(type_index) else {
            return Ok(());
        };
        // The previous field, the numbers seen, the oneof members seen.
        let mut last: Option<&'static Field> = None;
        let mut seen: Vec<u32> = Vec::new();
        let mut oneofs_seen: Vec<(usize, &'static Field)> = Vec::new();
        // Elements of the current run of a repeated field so far.
        let mut run = 0usize;
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = base + pos;
            let fail = |violation: Violation| NonCanonical {
                offset: at,
                path: render(path),
                violation,
            };
            let (key, key_len, key_minimal) = read_varint(buf, pos).map_err(|error| {
                fail(match error {
                    VarintError::Truncated => Violation::TruncatedVarint {
                        role: VarintRole::Key,
                        field: None,
                    },
                    VarintError::TooLong => Violation::VarintTooLong {
                        role: VarintRole::Key,
                        field: None,
                    },
                })
            })?;
            let number = key >> 3;
            if key > u64::from(u32::MAX) || number == 0 {
                return Err(fail(Violation::InvalidFieldNumber(number)));
            }
            let wire_type = (key & 7) as u8;
            if wire_type > 5 {
                return Err(fail(Violation::InvalidWireType { number, wire_type }));
            }
            let number = number as u32;
            let Some(field) = message.field(number) else {
                return Err(fail(Violation::UnknownField(number)));
            };
            let name = FieldRef {
                number,
                name: field.name.as_str(),
            };
            let expected = if field.packed {
                2
            } else {
                field.kind.wire_type()
            };
            if wire_type != expected {
                if field.packed && wire_type == field.kind.wire_type() {
                    return Err(fail(Violation::NotPacked(name)));
                }
                return Err(fail(Violation::WrongWireType {
                    field: name,
                    found: wire_type,
                    expected,
                }));
            }
            if !key_minimal {
                return Err(fail(Violation::NonMinimalVarint {
                    role: VarintRole::Key,
                    field: name,
                }));
            }
            let same_run =
                field.repeated && !field.packed && last.is_some_and(|l| l.number == number);
            if same_run {
                run += 1;
            } else {
                if seen.contains(&number) {
                    return Err(fail(if field.repeated && !field.packed {
                        Violation::NotContiguous(name)
                    } else {
                        Violation::Twice(name)
                    }));
                }
                if let Some(oneof) = field.oneof {
                    if let Some((_, first)) = oneofs_seen.iter().find(|(o, _)| *o == oneof) {
                        return Err(fail(Violation::TwoBodies {
                            oneof: message.oneofs.get(oneof).map_or("", String::as_str),
                            first: FieldRef {
                                number: first.number,
                                name: first.name.as_str(),
                            },
                            second: name,
                        }));
                    }
                    oneofs_seen.push((oneof, field));
                }
                if let Some(last) = last {
                    if number < last.number {
                        return Err(fail(Violation::OutOfOrder {
                            field: name,
                            after: FieldRef {
                                number: last.number,
                                name: last.name.as_str(),
                            },
                        }));
                    }
                }
                seen.push(number);
                run = 0;
            }
            last = Some(field);
            pos += key_len;
            let implicit = !field.repeated && !field.explicit_presence;
            let explicit_default = |value| fail(Violation::ExplicitDefault { field: name, value });
            match wire_type {
                0 => {
                    let (value, len) = self.varint_value(field, name, buf, pos, &fail)?;
                    if implicit && value == 0 {
                        return Err(explicit_default(if field.kind == Kind::Bool {
                            "false"
                        } else {
                            "0"
                        }));
                    }
                    pos += len;
                }
                1 | 5 => {
                    let size = if wire_type == 1 { 8 } else { 4 };
                    let left = buf.len() - pos;
                    let Some(bytes) = buf.get(pos..pos + size) else {
                        return Err(fail(Violation::Truncated {
                            field: name,
                            needed: size as u64,
                            left,
                        }));
                    };
                    if implicit {
                        if let Some(zero) = fixed_default(field.kind, bytes) {
                            return Err(explicit_default(zero));
                        }
                    }
                    pos += size;
                }
                _ => {
                    // Length-delimited (2): the only other wire type a
                    // known field can have here.
                    let (len, len_len, len_minimal) = read_varint(buf, pos).map_err(|error| {
                        fail(match error {
                            VarintError::Truncated => Violation::TruncatedVarint {
                                role: VarintRole::Length,
                                field: Some(name),
                            },
                            VarintError::TooLong => Violation::VarintTooLong {
                                role: VarintRole::Length,
                                field: Some(name),
                            },
                        })
                    })?;
                    if !len_minimal {
                        return Err(fail(Violation::NonMinimalVarint {
                            role: VarintRole::Length,
                            field: name,
                        }));
                    }
                    let start = pos + len_len;
                    let left = buf.len() - start;
                    if len > left as u64 {
                        return Err(fail(Violation::Truncated {
                            field: name,
                            needed: len,
                            left,
                        }));
                    }
                    let end = start + len as usize;
                    let content = &buf[start..end];
                    match field.kind {
                        Kind::String => {
                            if std::str::from_utf8(content).is_err() {
                                return Err(fail(Violation::InvalidUtf8(name)));
                            }
                            if implicit && content.is_empty() {
                                return Err(explicit_default("\"\""));
                            }
                        }
                        Kind::Bytes => {
                            if implicit && content.is_empty() {
                                return Err(explicit_default("empty"));
                            }
                        }
                        Kind::Message(index) => {
                            if depth >= MAX_DEPTH {
                                return Err(fail(Violation::TooDeep));
                            }
                            path.push(Step {
                                name: field.name.as_str(),
                                index: field.repeated.then_some(run),
                            });
                            self.message(index, content, base + start, depth + 1, path)?;
                            path.pop();
                        }
                        Kind::Opaque => {}
                        _ => self.packed(field, name, content, &fail)?,
                    }
                    pos = end;
                }
            }
        }
        Ok(())
    }

    /// Reads and checks the varint value of `field` at `pos`; returns it
    /// and its length.
    fn varint_value(
        &self,
        field: &Field,
        name: FieldRef,
        buf: &[u8],
        pos: usize,
        fail: &dyn Fn(Violation) -> NonCanonical,
    ) -> Result<(u64, usize), NonCanonical> {
        let (value, len, minimal) = read_varint(buf, pos).map_err(|error| {
            fail(match error {
                VarintError::Truncated => Violation::TruncatedVarint {
                    role: VarintRole::Value,
                    field: Some(name),
                },
                VarintError::TooLong => Violation::VarintTooLong {
                    role: VarintRole::Value,
                    field: Some(name),
                },
            })
        })?;
        if !minimal {
            return Err(fail(Violation::NonMinimalVarint {
                role: VarintRole::Value,
                field: name,
            }));
        }
        // What a decoder reads must encode back to this varint: int32 and
        // enum values are sign-extended to 64 bits, uint32 and sint32 fit
        // 32 bits, bool is 0 or 1.
        let in_range = match field.kind {
            Kind::Int32 | Kind::Enum => value as i32 as i64 as u64 == value,
            Kind::Uint32 | Kind::Sint32 => value <= u64::from(u32::MAX),
            Kind::Bool => value <= 1,
            _ => true,
        };
        if !in_range {
            let kind = match field.kind {
                Kind::Int32 => "an int32 (sign-extended to 64 bits)",
                Kind::Enum => "an enum value (an int32, sign-extended to 64 bits)",
                Kind::Uint32 => "a uint32",
                Kind::Sint32 => "a sint32",
                _ => "a bool (0 or 1)",
            };
            return Err(fail(Violation::OutOfRange {
                field: name,
                value,
                kind,
            }));
        }
        Ok((value, len))
    }

    /// Checks the content of a packed field.
    fn packed(
        &self,
        field: &Field,
        name: FieldRef,
        content: &[u8],
        fail: &dyn Fn(Violation) -> NonCanonical,
    ) -> Result<(), NonCanonical> {
        if content.is_empty() {
            return Err(fail(Violation::EmptyPacked(name)));
        }
        match field.kind.wire_type() {
            0 => {
                let mut pos = 0;
                while pos < content.len() {
                    let (_, len) = self.varint_value(field, name, content, pos, fail)?;
                    pos += len;
                }
                Ok(())
            }
            wire_type => {
                let size = if wire_type == 1 { 8 } else { 4 };
                if content.len().is_multiple_of(size) {
                    Ok(())
                } else {
                    Err(fail(Violation::PackedLength {
                        field: name,
                        len: content.len(),
                        size,
                    }))
                }
            }
        }
    }
}

/// The default a fixed-size implicit-presence value holds, if it does:
/// zero, and for floating point also -0.0, which proto3 encoders that
/// compare with `!= 0.0` (prost among them) omit like 0.0.
fn fixed_default(kind: Kind, bytes: &[u8]) -> Option<&'static str> {
    let bits = bytes
        .iter()
        .rev()
        .fold(0u64, |bits, &byte| (bits << 8) | u64::from(byte));
    match kind {
        Kind::Double if bits == 0 => Some("0.0"),
        Kind::Double if bits == 1 << 63 => Some("-0.0 (omitted like 0.0)"),
        Kind::Float if bits == 0 => Some("0.0"),
        Kind::Float if bits == 1 << 31 => Some("-0.0 (omitted like 0.0)"),
        _ if bits == 0 => Some("0"),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
