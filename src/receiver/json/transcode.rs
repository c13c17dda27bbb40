//! OTLP/JSON straight into protobuf, in one streaming pass.
//!
//! The JSON is read token by token (`serde_json`'s streaming deserializer,
//! strings borrowed from the input where they have no escapes) and each
//! value is written at once as its protobuf field: no `serde_json::Value`
//! tree, no prost message. Message lengths are back-patched (one byte is
//! kept for the length and the body moved only when it needs more).
//!
//! The field shapes come from the same tables as the receiver's validating
//! walk (`model::schema`), plus what JSON needs beyond wire types: which
//! `bytes` are hex ids, which varints are enums, booleans or signed, which
//! 64-bit fields are doubles ([`scalar`]).
//!
//! # What it accepts (the proto3 JSON mapping as OTLP/JSON uses it)
//! - keys in lowerCamelCase or as the proto field names (snake_case);
//!   unknown keys are skipped, `null` means "not set";
//! - 64-bit integers as numbers or strings; 32-bit integers also as strings;
//! - doubles as numbers, numeric strings, `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - enums as numbers or value names (`"SPAN_KIND_SERVER"`);
//! - trace and span ids as hex (OTLP/JSON), other bytes as base64 (standard
//!   or URL-safe, padded or not).
//!
//! # Memory
//! The output grows only through [`Out::grow`], which reserves every byte in
//! the receivers' in-flight budget before it is allocated and stops at the
//! decompressed-size limit; nothing else grows with the input (serde_json
//! copies a string only when it has escapes, and nests at most 128 deep).

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::budget::{ItemBudget, Reservation};
use crate::model::schema::{self, Kind, Schema};

/// How a field's JSON value becomes protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    /// A nested message (index into the graph).
    Message(usize),
    Str,
    /// Base64 in JSON.
    Bytes,
    /// Hex in JSON (trace and span ids).
    HexId,
    Bool,
    /// `int32`: negative values take ten bytes, as protobuf requires.
    Int32,
    /// `sint32`: zigzag.
    SInt32,
    Int64,
    /// `uint32` / `uint64`.
    UInt,
    Enum(EnumKind),
    Fixed64,
    SFixed64,
    Double,
    Fixed32,
    /// `repeated double`, packed.
    PackedDouble,
    /// `repeated fixed64`, packed.
    PackedFixed64,
    /// `repeated uint64`, packed.
    PackedUInt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnumKind {
    SpanKind,
    StatusCode,
    Severity,
    Temporality,
}

impl EnumKind {
    fn number(self, name: &str) -> Option<i32> {
        match self {
            EnumKind::SpanKind => SpanKind::from_str_name(name).map(|v| v as i32),
            EnumKind::StatusCode => StatusCode::from_str_name(name).map(|v| v as i32),
            EnumKind::Severity => SeverityNumber::from_str_name(name).map(|v| v as i32),
            EnumKind::Temporality => AggregationTemporality::from_str_name(name).map(|v| v as i32),
        }
    }
}

/// What JSON needs to know beyond the wire kind of `message.field`.
fn scalar(message: &str, field: &str, kind: Kind) -> Scalar {
    match (message, field) {
        (_, "trace_id" | "span_id" | "parent_span_id") => return Scalar::HexId,
        ("AnyValue", "bool_value") | ("Sum", "is_monotonic") => return Scalar::Bool,
        ("AnyValue", "int_value") => return Scalar::Int64,
        ("AnyValue", "string_value_strindex") | ("KeyValue", "key_strindex") => {
            return Scalar::Int32
        }
        ("Span", "kind") => return Scalar::Enum(EnumKind::SpanKind),
        ("Status", "code") => return Scalar::Enum(EnumKind::StatusCode),
        ("LogRecord", "severity_number") => return Scalar::Enum(EnumKind::Severity),
        (_, "aggregation_temporality") => return Scalar::Enum(EnumKind::Temporality),
        ("NumberDataPoint" | "Exemplar", "as_int") => return Scalar::SFixed64,
        (_, "scale" | "offset") => return Scalar::SInt32,
        (_, "explicit_bounds") => return Scalar::PackedDouble,
        (
            _,
            "double_value" | "as_double" | "sum" | "min" | "max" | "zero_threshold" | "quantile"
            | "value",
        ) if matches!(kind, Kind::Fixed64) => return Scalar::Double,
        _ => {}
    }
    match kind {
        // Resolved to `Scalar::Message` by the graph builder before this is asked.
        Kind::Message(_) => Scalar::Str,
        Kind::Str => Scalar::Str,
        Kind::Bytes => Scalar::Bytes,
        Kind::Varint => Scalar::UInt,
        Kind::Fixed64 => Scalar::Fixed64,
        Kind::Fixed32 => Scalar::Fixed32,
        Kind::RepeatedFixed64 => Scalar::PackedFixed64,
        Kind::RepeatedVarint => Scalar::PackedUInt,
    }
}

/// One field as the transcoder sees it.
#[derive(Debug)]
struct JsonField {
    number: u32,
    /// The proto field name (`time_unix_nano`).
    snake: &'static str,
    /// Its JSON name (`timeUnixNano`).
    camel: String,
    scalar: Scalar,
}

#[derive(Debug)]
struct JsonMessage {
    fields: Vec<JsonField>,
}

impl JsonMessage {
    fn field(&self, key: &str) -> Option<&JsonField> {
        self.fields
            .iter()
            .find(|f| f.camel == key)
            .or_else(|| self.fields.iter().find(|f| f.snake == key))
    }
}

/// Every message reachable from the three requests, with message fields
/// resolved to indices. Built once.
#[derive(Debug)]
struct Graph {
    messages: Vec<JsonMessage>,
    /// Index of the trace, metrics and logs request.
    requests: [usize; 3],
}

fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let mut seen: Vec<&'static Schema> = Vec::new();
        let mut messages = Vec::new();
        let requests = [
            add(&schema::TRACE_REQUEST, &mut seen, &mut messages),
            add(&schema::METRICS_REQUEST, &mut seen, &mut messages),
            add(&schema::LOGS_REQUEST, &mut seen, &mut messages),
        ];
        // `add` fills every slot it opens before returning.
        let messages = messages
            .into_iter()
            .map(|m| m.unwrap_or(JsonMessage { fields: Vec::new() }))
            .collect();
        Graph { messages, requests }
    })
}

fn add(
    schema: &'static Schema,
    seen: &mut Vec<&'static Schema>,
    messages: &mut Vec<Option<JsonMessage>>,
) -> usize {
    if let Some(index) = seen.iter().position(|s| std::ptr::eq(*s, schema)) {
        return index;
    }
    let index = seen.len();
    seen.push(schema);
    messages.push(None);
    let short = schema.name.rsplit('.').next().unwrap_or(schema.name);
    let fields = schema
        .fields
        .iter()
        .map(|def| JsonField {
            number: def.number,
            snake: def.name,
            camel: lower_camel(def.name),
            scalar: match def.kind {
                Kind::Message(nested) => Scalar::Message(add(nested, seen, messages)),
                kind => scalar(short, def.name, kind),
            },
        })
        .collect();
    messages[index] = Some(JsonMessage { fields });
    index
}

impl Graph {
    fn message(&self, index: usize) -> &JsonMessage {
        &self.messages[index]
    }
}

/// `time_unix_nano` → `timeUnixNano`.
pub(super) fn lower_camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Why transcoding stopped, beyond what serde reports.
#[derive(Debug)]
pub enum Stop {
    /// The output would pass the decompressed-size limit.
    TooLarge { limit: usize },
    /// The in-flight budget has no room for the output.
    MemoryLimit { limit: u64 },
    /// Malformed JSON or a value that does not fit the mapping.
    Invalid(String),
}

/// The protobuf being written, every byte reserved in the budget first.
struct Out<'b> {
    buf: Vec<u8>,
    held: Reservation,
    budget: &'b ItemBudget,
    limit: usize,
    stop: Option<Stop>,
    /// Where in the request the decoder is, for error messages.
    path: Vec<(&'static str, Option<usize>)>,
}

/// Reservations grow by at least this much at a time.
const MIN_RESERVE: usize = 64 * 1024;

impl Out<'_> {
    /// Makes room for `extra` more bytes, reserving them in the budget first.
    fn grow(&mut self, extra: usize) -> Result<(), ()> {
        let needed = self.buf.len().saturating_add(extra);
        if needed <= self.buf.capacity() && needed as u64 <= self.held.items() {
            return Ok(());
        }
        if needed > self.limit {
            self.stop = Some(Stop::TooLarge { limit: self.limit });
            return Err(());
        }
        // Double what is held (at least MIN_RESERVE), never past the limit.
        let target = needed
            .max(self.buf.capacity().saturating_mul(2))
            .max(MIN_RESERVE)
            .min(self.limit);
        let more = (target as u64).saturating_sub(self.held.items());
        if more > 0 {
            match self.budget.try_reserve(more) {
                Some(reservation) => self.held.merge(reservation),
                None => {
                    self.stop = Some(Stop::MemoryLimit {
                        limit: self.budget.capacity(),
                    });
                    return Err(());
                }
            }
        }
        self.buf.reserve_exact(target - self.buf.len());
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.grow(bytes.len())?;
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn varint(&mut self, mut value: u64) -> Result<(), ()> {
        let mut tmp = [0u8; 10];
        let mut n = 0;
        while value >= 0x80 {
            tmp[n] = (value as u8) | 0x80;
            value >>= 7;
            n += 1;
        }
        tmp[n] = value as u8;
        self.put(&tmp[..=n])
    }

    fn tag(&mut self, number: u32, wire: u8) -> Result<(), ()> {
        self.varint((u64::from(number) << 3) | u64::from(wire))
    }

    /// Starts a length-delimited body: one byte kept for its length.
    fn open(&mut self) -> Result<usize, ()> {
        self.put(&[0])?;
        Ok(self.buf.len())
    }

    /// Ends the body started at `start`, writing its length in front of it.
    fn close(&mut self, start: usize) -> Result<(), ()> {
        let len = self.buf.len() - start;
        let size = varint_len(len as u64);
        if size > 1 {
            self.grow(size - 1)?;
            let end = self.buf.len();
            self.buf.resize(end + size - 1, 0);
            self.buf.copy_within(start..end, start + size - 1);
        }
        let mut at = start - 1;
        let mut value = len as u64;
        while value >= 0x80 {
            self.buf[at] = (value as u8) | 0x80;
            value >>= 7;
            at += 1;
        }
        self.buf[at] = value as u8;
        Ok(())
    }

    /// A serde error for a value that does not fit, naming where it is.
    fn invalid<E: de::Error>(&mut self, message: impl fmt::Display) -> E {
        let path = self.path_text();
        let text = if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.stop = Some(Stop::Invalid(text.clone()));
        E::custom(text)
    }

    /// The error for a failed [`Out::grow`], already recorded in `stop`.
    fn stopped<E: de::Error>(&self) -> E {
        E::custom("stopped")
    }

    fn path_text(&self) -> String {
        let mut text = String::new();
        for (name, index) in &self.path {
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(name);
            if let Some(index) = index {
                text.push_str(&format!("[{index}]"));
            }
        }
        text
    }
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Transcodes an OTLP/JSON request (`request` 0 traces, 1 metrics, 2 logs)
/// into protobuf, reserving its bytes in `budget`; the output may not pass `limit`.
pub fn transcode(
    request: usize,
    json: &[u8],
    budget: &ItemBudget,
    limit: usize,
) -> Result<(Bytes, Reservation), Stop> {
    let graph = graph();
    let mut out = Out {
        buf: Vec::new(),
        held: Reservation::detached(0),
        budget,
        limit,
        stop: None,
        path: Vec::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let result = MessageSeed {
        graph,
        message: graph.requests[request],
        out: &mut out,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match result {
        Ok(()) => Ok((Bytes::from(out.buf), out.held)),
        // serde_json's text adds the line and column to ours.
        Err(error) => Err(match out.stop.take() {
            Some(Stop::Invalid(_)) | None => Stop::Invalid(error.to_string()),
            Some(stop) => stop,
        }),
    }
}

/// Reads one JSON object as message `message`, writing its fields.
struct MessageSeed<'o, 'b> {
    graph: &'static Graph,
    message: usize,
    out: &'o mut Out<'b>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let message = self.graph.message(self.message);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let Some(field) = message.field(key.as_str()) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            self.out.path.push((field.camel.as_str(), None));
            map.next_value_seed(FieldSeed {
                graph: self.graph,
                field,
                out: &mut *self.out,
            })?;
            self.out.path.pop();
        }
        Ok(())
    }
}

/// A key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_owned()))
    }
}

/// The value of one field: a message, a scalar, or an array of either.
struct FieldSeed<'o, 'b> {
    graph: &'static Graph,
    field: &'static JsonField,
    out: &'o mut Out<'b>,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FieldSeed<'_, '_> {
    fn packed(&self) -> bool {
        matches!(
            self.field.scalar,
            Scalar::PackedDouble | Scalar::PackedFixed64 | Scalar::PackedUInt
        )
    }

    /// Writes the tag (unless the field is packed: its values follow one tag).
    fn tag<E: de::Error>(&mut self) -> Result<(), E> {
        if self.packed() {
            return Ok(());
        }
        let wire = match self.field.scalar {
            Scalar::Message(_) | Scalar::Str | Scalar::Bytes | Scalar::HexId => 2,
            Scalar::Fixed64 | Scalar::SFixed64 | Scalar::Double => 1,
            Scalar::Fixed32 => 5,
            _ => 0,
        };
        self.out
            .tag(self.field.number, wire)
            .map_err(|()| self.out.stopped())
    }

    fn number<E: de::Error>(&mut self, value: Number<'_>) -> Result<(), E> {
        let out = &mut *self.out;
        let written = match self.field.scalar {
            Scalar::Bool => match value {
                Number::Bool(b) => out.varint(u64::from(b)),
                _ => return Err(out.invalid("expected true or false")),
            },
            Scalar::UInt | Scalar::PackedUInt => match value.unsigned() {
                Some(v) => out.varint(v),
                None => return Err(out.invalid(format!("invalid unsigned integer {value}"))),
            },
            Scalar::Int64 | Scalar::Int32 => match value.signed() {
                // Two's complement, sign-extended to 64 bits, as protobuf writes int32 and int64.
                Some(v) => out.varint(v as u64),
                None => return Err(out.invalid(format!("invalid integer {value}"))),
            },
            Scalar::SInt32 => match value.signed().and_then(|v| i32::try_from(v).ok()) {
                Some(v) => out.varint(u64::from(((v << 1) ^ (v >> 31)) as u32)),
                None => return Err(out.invalid(format!("invalid 32-bit integer {value}"))),
            },
            Scalar::Enum(kind) => {
                let number = match value {
                    Number::Str(name) => match kind.number(name) {
                        Some(n) => Some(i64::from(n)),
                        None => name.parse::<i32>().ok().map(i64::from),
                    },
                    other => other.signed(),
                };
                match number.and_then(|n| i32::try_from(n).ok()) {
                    Some(n) => out.varint(i64::from(n) as u64),
                    None => return Err(out.invalid(format!("unknown enum value {value}"))),
                }
            }
            Scalar::Fixed64 | Scalar::PackedFixed64 => match value.unsigned() {
                Some(v) => out.put(&v.to_le_bytes()),
                None => return Err(out.invalid(format!("invalid unsigned integer {value}"))),
            },
            Scalar::SFixed64 => match value.signed() {
                Some(v) => out.put(&v.to_le_bytes()),
                None => return Err(out.invalid(format!("invalid integer {value}"))),
            },
            Scalar::Fixed32 => match value.unsigned().and_then(|v| u32::try_from(v).ok()) {
                Some(v) => out.put(&v.to_le_bytes()),
                None => return Err(out.invalid(format!("invalid 32-bit unsigned integer {value}"))),
            },
            Scalar::Double | Scalar::PackedDouble => match value.double() {
                Some(v) => out.put(&v.to_le_bytes()),
                None => return Err(out.invalid(format!("invalid number {value}"))),
            },
            Scalar::Str => match value {
                Number::Str(text) => {
                    let written = out.varint(text.len() as u64);
                    written.and_then(|()| out.put(text.as_bytes()))
                }
                _ => return Err(out.invalid(format!("expected a string, got {value}"))),
            },
            Scalar::Bytes => match value {
                Number::Str(text) => match decode_base64(text) {
                    Some(bytes) => out
                        .varint(bytes.len() as u64)
                        .and_then(|()| out.put(&bytes)),
                    None => return Err(out.invalid("invalid base64")),
                },
                _ => return Err(out.invalid(format!("expected a base64 string, got {value}"))),
            },
            Scalar::HexId => match value {
                Number::Str(text) => match decode_hex(text) {
                    Ok(bytes) => out
                        .varint(bytes.len() as u64)
                        .and_then(|()| out.put(&bytes)),
                    Err(problem) => return Err(out.invalid(problem)),
                },
                _ => return Err(out.invalid(format!("expected a hex string, got {value}"))),
            },
            Scalar::Message(_) => {
                return Err(out.invalid(format!("expected an object, got {value}")))
            }
        };
        written.map_err(|()| out.stopped())
    }

    fn scalar<E: de::Error>(mut self, value: Number<'_>) -> Result<(), E> {
        if self.packed() {
            // A single value where an array is expected: one packed element.
            let start = self.open_packed()?;
            self.number(value)?;
            return self.out.close(start).map_err(|()| self.out.stopped());
        }
        self.tag()?;
        self.number(value)
    }

    fn open_packed<E: de::Error>(&mut self) -> Result<usize, E> {
        self.out
            .tag(self.field.number, 2)
            .and_then(|()| self.out.open())
            .map_err(|()| self.out.stopped())
    }
}

/// A JSON scalar as read.
#[derive(Debug, Clone, Copy)]
enum Number<'a> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
}

impl fmt::Display for Number<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Bool(b) => write!(f, "{b}"),
            Number::I64(v) => write!(f, "{v}"),
            Number::U64(v) => write!(f, "{v}"),
            Number::F64(v) => write!(f, "{v}"),
            Number::Str(s) => write!(f, "\"{}\"", s.chars().take(64).collect::<String>()),
        }
    }
}

impl Number<'_> {
    fn signed(self) -> Option<i64> {
        match self {
            Number::I64(v) => Some(v),
            Number::U64(v) => i64::try_from(v).ok(),
            Number::F64(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(v as i64),
            Number::Str(s) => s.trim().parse().ok(),
            Number::Bool(_) | Number::F64(_) => None,
        }
    }

    fn unsigned(self) -> Option<u64> {
        match self {
            Number::I64(v) => u64::try_from(v).ok(),
            Number::U64(v) => Some(v),
            Number::F64(v) if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) => Some(v as u64),
            Number::Str(s) => s.trim().parse().ok(),
            Number::Bool(_) | Number::F64(_) => None,
        }
    }

    fn double(self) -> Option<f64> {
        match self {
            Number::I64(v) => Some(v as f64),
            Number::U64(v) => Some(v as f64),
            Number::F64(v) => Some(v),
            Number::Str("NaN") => Some(f64::NAN),
            Number::Str("Infinity") => Some(f64::INFINITY),
            Number::Str("-Infinity") => Some(f64::NEG_INFINITY),
            Number::Str(s) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
            Number::Bool(_) => None,
        }
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", bytes.len()));
    }
    let digit = |at: usize| -> Result<u8, String> {
        let c = bytes[at];
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!(
                "invalid character {:?} at position {at}",
                char::from(c)
            )),
        }
    };
    (0..bytes.len() / 2)
        .map(|i| Ok((digit(2 * i)? << 4) | digit(2 * i + 1)?))
        .collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

impl<'de> Visitor<'de> for FieldSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value for {}", self.field.camel)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(()) // null: not set
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Number::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Number::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Number::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Number::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Number::Str(v))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        let Scalar::Message(message) = self.field.scalar else {
            return Err(self.out.invalid("expected a value, got an object"));
        };
        self.tag()?;
        let start = self.out.open().map_err(|()| self.out.stopped())?;
        MessageSeed {
            graph: self.graph,
            message,
            out: &mut *self.out,
        }
        .visit_map(map)?;
        self.out.close(start).map_err(|()| self.out.stopped())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let packed = self.packed();
        let start = if packed {
            Some(self.open_packed()?)
        } else {
            None
        };
        let mut index = 0;
        loop {
            if let Some(last) = self.out.path.last_mut() {
                last.1 = Some(index);
            }
            let element = ElementSeed {
                graph: self.graph,
                field: self.field,
                out: &mut *self.out,
            };
            if seq.next_element_seed(element)?.is_none() {
                break;
            }
            index += 1;
        }
        if let Some(last) = self.out.path.last_mut() {
            last.1 = None;
        }
        match start {
            Some(start) => self.out.close(start).map_err(|()| self.out.stopped()),
            None => Ok(()),
        }
    }
}

/// One element of a repeated field: written as the field itself (with its
/// tag), or as a bare value inside a packed run.
struct ElementSeed<'o, 'b> {
    graph: &'static Graph,
    field: &'static JsonField,
    out: &'o mut Out<'b>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ElementSeed<'_, '_> {
    fn value<E: de::Error>(self, value: Number<'_>) -> Result<(), E> {
        let mut field = FieldSeed {
            graph: self.graph,
            field: self.field,
            out: self.out,
        };
        if field.packed() {
            return field.number(value);
        }
        field.tag()?;
        field.number(value)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an element of {}", self.field.camel)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.value(Number::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.value(Number::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.value(Number::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.value(Number::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.value(Number::Str(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        FieldSeed {
            graph: self.graph,
            field: self.field,
            out: self.out,
        }
        .visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<(), A::Error> {
        Err(self.out.invalid("nested arrays are not allowed"))
    }
}
