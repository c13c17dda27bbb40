//! The OTLP message shapes as static tables, and the walk that checks a
//! received request against them and counts its items.
//!
//! The walk replaces a full prost decode at the receiver: it proves the bytes
//! are a well-formed `Export*ServiceRequest` (wire types, lengths, UTF-8,
//! nesting) and counts spans, data points and log records, without allocating.
//! Unknown fields are skipped, as protobuf requires for forward compatibility.

use super::wire::{Value, WireError, WireType};
use super::Signal;

/// How a known field is encoded.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A nested message of this shape.
    Message(&'static Schema),
    Str,
    Bytes,
    Varint,
    Fixed64,
    Fixed32,
    /// `repeated fixed64` / `repeated double`: packed or one per field.
    RepeatedFixed64,
    /// `repeated uint64`: packed or one per field.
    RepeatedVarint,
}

/// One known field of a message.
#[derive(Debug)]
pub struct FieldDef {
    pub number: u32,
    pub name: &'static str,
    pub kind: Kind,
}

/// Special checks for a message beyond its field shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    /// A span: trace_id (1) must be 16 non-zero bytes and span_id (2) 8 non-zero bytes.
    SpanIds,
}

/// The shape of one protobuf message.
#[derive(Debug)]
pub struct Schema {
    pub name: &'static str,
    pub fields: &'static [FieldDef],
    /// Whether one occurrence of this message is one item of its signal.
    pub item: bool,
    pub check: Check,
}

impl Schema {
    #[inline]
    fn field(&self, number: u32) -> Option<&FieldDef> {
        // Most tables list fields 1, 2, 3 … in order: try the direct slot first.
        match self.fields.get((number as usize).wrapping_sub(1)) {
            Some(def) if def.number == number => Some(def),
            _ => self.fields.iter().find(|f| f.number == number),
        }
    }

    /// The definition of field `number`, if it is a known field.
    #[inline]
    pub fn field_def(&self, number: u32) -> Option<&FieldDef> {
        self.field(number)
    }
}

const fn f(number: u32, name: &'static str, kind: Kind) -> FieldDef {
    FieldDef { number, name, kind }
}

const fn msg(name: &'static str, fields: &'static [FieldDef]) -> Schema {
    Schema {
        name,
        fields,
        item: false,
        check: Check::None,
    }
}

const fn item(name: &'static str, fields: &'static [FieldDef]) -> Schema {
    Schema {
        name,
        fields,
        item: true,
        check: Check::None,
    }
}

use Kind::{Bytes, Fixed32, Fixed64, Message as M, RepeatedFixed64, RepeatedVarint, Str, Varint};

// --- common/v1 and resource/v1 ---
pub static ANY_VALUE: Schema = msg(
    "AnyValue",
    &[
        f(1, "string_value", Str),
        f(2, "bool_value", Varint),
        f(3, "int_value", Varint),
        f(4, "double_value", Fixed64),
        f(5, "array_value", M(&ARRAY_VALUE)),
        f(6, "kvlist_value", M(&KEY_VALUE_LIST)),
        f(7, "bytes_value", Bytes),
        f(8, "string_value_strindex", Varint),
    ],
);
pub static ARRAY_VALUE: Schema = msg("ArrayValue", &[f(1, "values", M(&ANY_VALUE))]);
pub static KEY_VALUE_LIST: Schema = msg("KeyValueList", &[f(1, "values", M(&KEY_VALUE))]);
pub static KEY_VALUE: Schema = msg(
    "KeyValue",
    &[
        f(1, "key", Str),
        f(2, "value", M(&ANY_VALUE)),
        f(3, "key_strindex", Varint),
    ],
);
pub static SCOPE: Schema = msg(
    "InstrumentationScope",
    &[
        f(1, "name", Str),
        f(2, "version", Str),
        f(3, "attributes", M(&KEY_VALUE)),
        f(4, "dropped_attributes_count", Varint),
    ],
);
pub static ENTITY_REF: Schema = msg(
    "EntityRef",
    &[
        f(1, "schema_url", Str),
        f(2, "type", Str),
        f(3, "id_keys", Str),
        f(4, "description_keys", Str),
    ],
);
pub static RESOURCE: Schema = msg(
    "Resource",
    &[
        f(1, "attributes", M(&KEY_VALUE)),
        f(2, "dropped_attributes_count", Varint),
        f(3, "entity_refs", M(&ENTITY_REF)),
    ],
);

// --- trace/v1 ---
pub static TRACE_REQUEST: Schema = msg(
    "ExportTraceServiceRequest",
    &[f(1, "resource_spans", M(&RESOURCE_SPANS))],
);
pub static RESOURCE_SPANS: Schema = msg(
    "ResourceSpans",
    &[
        f(1, "resource", M(&RESOURCE)),
        f(2, "scope_spans", M(&SCOPE_SPANS)),
        f(3, "schema_url", Str),
    ],
);
pub static SCOPE_SPANS: Schema = msg(
    "ScopeSpans",
    &[
        f(1, "scope", M(&SCOPE)),
        f(2, "spans", M(&SPAN)),
        f(3, "schema_url", Str),
    ],
);
pub static SPAN: Schema = Schema {
    name: "Span",
    fields: &[
        f(1, "trace_id", Bytes),
        f(2, "span_id", Bytes),
        f(3, "trace_state", Str),
        f(4, "parent_span_id", Bytes),
        f(5, "name", Str),
        f(6, "kind", Varint),
        f(7, "start_time_unix_nano", Fixed64),
        f(8, "end_time_unix_nano", Fixed64),
        f(9, "attributes", M(&KEY_VALUE)),
        f(10, "dropped_attributes_count", Varint),
        f(11, "events", M(&SPAN_EVENT)),
        f(12, "dropped_events_count", Varint),
        f(13, "links", M(&SPAN_LINK)),
        f(14, "dropped_links_count", Varint),
        f(15, "status", M(&STATUS)),
        f(16, "flags", Fixed32),
    ],
    item: true,
    check: Check::SpanIds,
};
pub static SPAN_EVENT: Schema = msg(
    "Span.Event",
    &[
        f(1, "time_unix_nano", Fixed64),
        f(2, "name", Str),
        f(3, "attributes", M(&KEY_VALUE)),
        f(4, "dropped_attributes_count", Varint),
    ],
);
pub static SPAN_LINK: Schema = msg(
    "Span.Link",
    &[
        f(1, "trace_id", Bytes),
        f(2, "span_id", Bytes),
        f(3, "trace_state", Str),
        f(4, "attributes", M(&KEY_VALUE)),
        f(5, "dropped_attributes_count", Varint),
        f(6, "flags", Fixed32),
    ],
);
pub static STATUS: Schema = msg("Status", &[f(2, "message", Str), f(3, "code", Varint)]);

// --- logs/v1 ---
pub static LOGS_REQUEST: Schema = msg(
    "ExportLogsServiceRequest",
    &[f(1, "resource_logs", M(&RESOURCE_LOGS))],
);
pub static RESOURCE_LOGS: Schema = msg(
    "ResourceLogs",
    &[
        f(1, "resource", M(&RESOURCE)),
        f(2, "scope_logs", M(&SCOPE_LOGS)),
        f(3, "schema_url", Str),
    ],
);
pub static SCOPE_LOGS: Schema = msg(
    "ScopeLogs",
    &[
        f(1, "scope", M(&SCOPE)),
        f(2, "log_records", M(&LOG_RECORD)),
        f(3, "schema_url", Str),
    ],
);
pub static LOG_RECORD: Schema = item(
    "LogRecord",
    &[
        f(1, "time_unix_nano", Fixed64),
        f(11, "observed_time_unix_nano", Fixed64),
        f(2, "severity_number", Varint),
        f(3, "severity_text", Str),
        f(5, "body", M(&ANY_VALUE)),
        f(6, "attributes", M(&KEY_VALUE)),
        f(7, "dropped_attributes_count", Varint),
        f(8, "flags", Fixed32),
        f(9, "trace_id", Bytes),
        f(10, "span_id", Bytes),
        f(12, "event_name", Str),
    ],
);

// --- metrics/v1 ---
pub static METRICS_REQUEST: Schema = msg(
    "ExportMetricsServiceRequest",
    &[f(1, "resource_metrics", M(&RESOURCE_METRICS))],
);
pub static RESOURCE_METRICS: Schema = msg(
    "ResourceMetrics",
    &[
        f(1, "resource", M(&RESOURCE)),
        f(2, "scope_metrics", M(&SCOPE_METRICS)),
        f(3, "schema_url", Str),
    ],
);
pub static SCOPE_METRICS: Schema = msg(
    "ScopeMetrics",
    &[
        f(1, "scope", M(&SCOPE)),
        f(2, "metrics", M(&METRIC)),
        f(3, "schema_url", Str),
    ],
);
pub static METRIC: Schema = msg(
    "Metric",
    &[
        f(1, "name", Str),
        f(2, "description", Str),
        f(3, "unit", Str),
        f(5, "gauge", M(&GAUGE)),
        f(7, "sum", M(&SUM)),
        f(9, "histogram", M(&HISTOGRAM)),
        f(10, "exponential_histogram", M(&EXP_HISTOGRAM)),
        f(11, "summary", M(&SUMMARY)),
        f(12, "metadata", M(&KEY_VALUE)),
    ],
);
pub static GAUGE: Schema = msg("Gauge", &[f(1, "data_points", M(&NUMBER_POINT))]);
pub static SUM: Schema = msg(
    "Sum",
    &[
        f(1, "data_points", M(&NUMBER_POINT)),
        f(2, "aggregation_temporality", Varint),
        f(3, "is_monotonic", Varint),
    ],
);
pub static HISTOGRAM: Schema = msg(
    "Histogram",
    &[
        f(1, "data_points", M(&HISTOGRAM_POINT)),
        f(2, "aggregation_temporality", Varint),
    ],
);
pub static EXP_HISTOGRAM: Schema = msg(
    "ExponentialHistogram",
    &[
        f(1, "data_points", M(&EXP_HISTOGRAM_POINT)),
        f(2, "aggregation_temporality", Varint),
    ],
);
pub static SUMMARY: Schema = msg("Summary", &[f(1, "data_points", M(&SUMMARY_POINT))]);
pub static EXEMPLAR: Schema = msg(
    "Exemplar",
    &[
        f(7, "filtered_attributes", M(&KEY_VALUE)),
        f(2, "time_unix_nano", Fixed64),
        f(3, "as_double", Fixed64),
        f(6, "as_int", Fixed64),
        f(4, "span_id", Bytes),
        f(5, "trace_id", Bytes),
    ],
);
pub static NUMBER_POINT: Schema = item(
    "NumberDataPoint",
    &[
        f(7, "attributes", M(&KEY_VALUE)),
        f(2, "start_time_unix_nano", Fixed64),
        f(3, "time_unix_nano", Fixed64),
        f(4, "as_double", Fixed64),
        f(6, "as_int", Fixed64),
        f(5, "exemplars", M(&EXEMPLAR)),
        f(8, "flags", Varint),
    ],
);
pub static HISTOGRAM_POINT: Schema = item(
    "HistogramDataPoint",
    &[
        f(9, "attributes", M(&KEY_VALUE)),
        f(2, "start_time_unix_nano", Fixed64),
        f(3, "time_unix_nano", Fixed64),
        f(4, "count", Fixed64),
        f(5, "sum", Fixed64),
        f(6, "bucket_counts", RepeatedFixed64),
        f(7, "explicit_bounds", RepeatedFixed64),
        f(8, "exemplars", M(&EXEMPLAR)),
        f(10, "flags", Varint),
        f(11, "min", Fixed64),
        f(12, "max", Fixed64),
    ],
);
pub static EXP_BUCKETS: Schema = msg(
    "ExponentialHistogramDataPoint.Buckets",
    &[
        f(1, "offset", Varint),
        f(2, "bucket_counts", RepeatedVarint),
    ],
);
pub static EXP_HISTOGRAM_POINT: Schema = item(
    "ExponentialHistogramDataPoint",
    &[
        f(1, "attributes", M(&KEY_VALUE)),
        f(2, "start_time_unix_nano", Fixed64),
        f(3, "time_unix_nano", Fixed64),
        f(4, "count", Fixed64),
        f(5, "sum", Fixed64),
        f(6, "scale", Varint),
        f(7, "zero_count", Fixed64),
        f(8, "positive", M(&EXP_BUCKETS)),
        f(9, "negative", M(&EXP_BUCKETS)),
        f(10, "flags", Varint),
        f(11, "exemplars", M(&EXEMPLAR)),
        f(12, "min", Fixed64),
        f(13, "max", Fixed64),
        f(14, "zero_threshold", Fixed64),
    ],
);
pub static VALUE_AT_QUANTILE: Schema = msg(
    "SummaryDataPoint.ValueAtQuantile",
    &[f(1, "quantile", Fixed64), f(2, "value", Fixed64)],
);
pub static SUMMARY_POINT: Schema = item(
    "SummaryDataPoint",
    &[
        f(7, "attributes", M(&KEY_VALUE)),
        f(2, "start_time_unix_nano", Fixed64),
        f(3, "time_unix_nano", Fixed64),
        f(4, "count", Fixed64),
        f(5, "sum", Fixed64),
        f(6, "quantile_values", M(&VALUE_AT_QUANTILE)),
        f(8, "flags", Varint),
    ],
);

/// The request message of a signal.
pub fn request_schema(signal: Signal) -> &'static Schema {
    match signal {
        Signal::Traces => &TRACE_REQUEST,
        Signal::Metrics => &METRICS_REQUEST,
        Signal::Logs => &LOGS_REQUEST,
    }
}

/// Same limit as prost's default recursion limit.
pub const MAX_DEPTH: usize = 100;

/// What the walk found in a well-formed request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Items (spans, data points, log records), valid or not.
    pub items: u64,
    /// Items that fail a [`Check`] (spans with an invalid trace or span id).
    pub invalid_items: u64,
}

/// Checks `buf` against `schema` and counts its items.
///
/// # Errors
/// The first malformation found, naming the message and field.
pub fn walk(schema: &'static Schema, buf: &[u8]) -> Result<Census, WireError> {
    let mut census = Census::default();
    walk_message(schema, buf, 0, &mut census)?;
    Ok(census)
}

fn walk_message(
    schema: &'static Schema,
    buf: &[u8],
    depth: usize,
    census: &mut Census,
) -> Result<(), WireError> {
    if depth >= MAX_DEPTH {
        return Err(WireError::TooDeep(MAX_DEPTH));
    }
    let mut pos = 0;
    let mut ids_ok = [false, false];
    while pos < buf.len() {
        // Same parse as `wire::Reader::read_field`, with the one-byte key and
        // length of nearly every OTLP field read inline (this loop is most of
        // the cost of receiving a request).
        let (key, used) = varint_at(buf, pos)?;
        pos += used;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::BadVarint)?;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        let value = match (key & 7) as u8 {
            0 => {
                let (v, used) = varint_at(buf, pos)?;
                pos += used;
                Value::Varint(v)
            }
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|&end| end <= buf.len())
                    .ok_or(WireError::Truncated)?;
                Value::Fixed64(0) // only the wire type matters here
            }
            2 => {
                let (len, used) = varint_at(buf, pos)?;
                pos += used;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                let end = pos.checked_add(len).ok_or(WireError::Truncated)?;
                let bytes = buf.get(pos..end).ok_or(WireError::Truncated)?;
                pos = end;
                Value::Len(bytes)
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|&end| end <= buf.len())
                    .ok_or(WireError::Truncated)?;
                Value::Fixed32(0) // only the wire type matters here
            }
            other => return Err(WireError::BadWireType(other)),
        };
        let Some(def) = schema.field(number) else {
            continue;
        };
        let wrong = |found| WireError::WrongWireType {
            message: schema.name,
            field: def.name,
            found,
        };
        match (def.kind, value) {
            (Kind::Message(inner), Value::Len(bytes)) => {
                if inner.item {
                    census.items += 1;
                }
                if !(std::ptr::eq(inner, &KEY_VALUE)
                    && depth + 2 < MAX_DEPTH
                    && scalar_key_value_ok(bytes))
                {
                    walk_message(inner, bytes, depth + 1, census)?;
                }
            }
            (Kind::Str, Value::Len(bytes)) => {
                if !utf8_ok(bytes) {
                    return Err(WireError::InvalidUtf8 {
                        message: schema.name,
                        field: def.name,
                    });
                }
            }
            (Kind::Bytes, Value::Len(bytes)) => {
                if schema.check == Check::SpanIds {
                    match number {
                        1 => ids_ok[0] = valid_id(bytes, 16),
                        2 => ids_ok[1] = valid_id(bytes, 8),
                        _ => {}
                    }
                }
            }
            (Kind::Varint, Value::Varint(_))
            | (Kind::Fixed64, Value::Fixed64(_))
            | (Kind::Fixed32, Value::Fixed32(_))
            | (Kind::RepeatedFixed64, Value::Fixed64(_))
            | (Kind::RepeatedVarint, Value::Varint(_)) => {}
            (Kind::RepeatedFixed64, Value::Len(bytes)) => {
                if bytes.len() % 8 != 0 {
                    return Err(WireError::Truncated);
                }
            }
            (Kind::RepeatedVarint, Value::Len(mut bytes)) => {
                while !bytes.is_empty() {
                    let (_, used) = super::wire::read_varint(bytes)?;
                    bytes = &bytes[used..];
                }
            }
            (_, value) => return Err(wrong(value.wire_type())),
        }
    }
    if schema.check == Check::SpanIds && !(ids_ok[0] && ids_ok[1]) {
        census.invalid_items += 1;
    }
    Ok(())
}

/// The varint at `buf[pos..]` and its length; one-byte varints inline.
#[inline(always)]
fn varint_at(buf: &[u8], pos: usize) -> Result<(u64, usize), WireError> {
    match buf.get(pos) {
        Some(&byte) if byte < 0x80 => Ok((u64::from(byte), 1)),
        _ => super::wire::read_varint(buf.get(pos..).unwrap_or_default()),
    }
}

#[inline(always)]
fn utf8_ok(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// Whether `kv` is a valid `KeyValue` in the shape every SDK writes for a
/// scalar attribute: `key` then `value` (a string, bool, int or double
/// `AnyValue`), with one-byte lengths. `false` means "not this shape or not
/// valid": the caller then runs the full walk, which finds any error.
#[inline]
fn scalar_key_value_ok(kv: &[u8]) -> bool {
    let [0x0a, key_len, rest @ ..] = kv else {
        return false;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || rest.len() < key_len || !utf8_ok(&rest[..key_len]) {
        return false;
    }
    let [0x12, value_len, value @ ..] = &rest[key_len..] else {
        return false;
    };
    if usize::from(*value_len) != value.len() || value.len() >= 0x80 {
        return false;
    }
    match value {
        [0x0a, len, s @ ..] => usize::from(*len) == s.len() && utf8_ok(s),
        // bool / int: one varint that ends the value
        [0x10 | 0x18, v @ ..] => {
            matches!(super::wire::read_varint(v), Ok((_, used)) if used == v.len())
        }
        [0x21, d @ ..] => d.len() == 8,
        _ => false,
    }
}

/// An id is valid when it has exactly `len` bytes and is not all zero.
#[inline]
pub fn valid_id(bytes: &[u8], len: usize) -> bool {
    bytes.len() == len && bytes.iter().any(|&b| b != 0)
}

/// Unused-import guard for the `WireType` re-export in error messages.
#[allow(dead_code)]
const _: Option<WireType> = None;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn request(spans: Vec<Span>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn span(trace: u8, span: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            name: "op".into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_spans_and_flags_invalid_ids() {
        let mut bad = span(1, 2);
        bad.trace_id = vec![0; 16];
        let mut short = span(1, 2);
        short.span_id = vec![1; 3];
        let buf = request(vec![span(1, 2), bad, short, span(3, 4)]);
        let census = walk(&TRACE_REQUEST, &buf).unwrap();
        assert_eq!(
            census,
            Census {
                items: 4,
                invalid_items: 2
            }
        );
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        let mut buf = request(vec![span(1, 2)]);
        let pos = buf.windows(2).position(|w| w == b"op").unwrap();
        buf[pos] = 0xff;
        let err = walk(&TRACE_REQUEST, &buf).unwrap_err();
        assert_eq!(err.to_string(), "Span.name: invalid UTF-8 in string");
    }

    #[test]
    fn wrong_wire_type_is_refused() {
        // field 1 (resource_spans) as a varint
        let err = walk(&TRACE_REQUEST, &[0x08, 0x01]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ExportTraceServiceRequest.resource_spans: wrong wire type Varint"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        // AnyValue { array_value { values: AnyValue { array_value ... } } } nested 200 deep
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..200 {
            let mut array = Vec::new();
            super::super::wire::put_len_field(&mut array, 1, &inner);
            let mut any = Vec::new();
            super::super::wire::put_len_field(&mut any, 5, &array);
            inner = any;
        }
        assert_eq!(walk(&ANY_VALUE, &inner), Err(WireError::TooDeep(MAX_DEPTH)));
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut buf = request(vec![span(1, 2)]);
        buf.extend_from_slice(&[0xf8, 0x01, 0x05]); // field 31 varint 5
        assert_eq!(walk(&TRACE_REQUEST, &buf).unwrap().items, 1);
    }

    /// The walk as first written, over `wire::Reader`: the optimised walk
    /// must give the same answer (census or error) for any bytes.
    fn reference_walk(schema: &'static Schema, buf: &[u8]) -> Result<Census, WireError> {
        let mut census = Census::default();
        reference_walk_message(schema, buf, 0, &mut census)?;
        Ok(census)
    }

    fn reference_walk_message(
        schema: &'static Schema,
        buf: &[u8],
        depth: usize,
        census: &mut Census,
    ) -> Result<(), WireError> {
        if depth >= MAX_DEPTH {
            return Err(WireError::TooDeep(MAX_DEPTH));
        }
        let mut reader = crate::model::wire::Reader::new(buf);
        let mut ids_ok = [false, false];
        while let Some(field) = reader.next_field() {
            let field = field?;
            let Some(def) = schema.fields.iter().find(|f| f.number == field.number) else {
                continue;
            };
            let wrong = |found| WireError::WrongWireType {
                message: schema.name,
                field: def.name,
                found,
            };
            match (def.kind, field.value) {
                (Kind::Message(inner), Value::Len(bytes)) => {
                    if inner.item {
                        census.items += 1;
                    }
                    reference_walk_message(inner, bytes, depth + 1, census)?;
                }
                (Kind::Str, Value::Len(bytes)) => {
                    if std::str::from_utf8(bytes).is_err() {
                        return Err(WireError::InvalidUtf8 {
                            message: schema.name,
                            field: def.name,
                        });
                    }
                }
                (Kind::Bytes, Value::Len(bytes)) => {
                    if schema.check == Check::SpanIds {
                        match field.number {
                            1 => ids_ok[0] = valid_id(bytes, 16),
                            2 => ids_ok[1] = valid_id(bytes, 8),
                            _ => {}
                        }
                    }
                }
                (Kind::Varint, Value::Varint(_))
                | (Kind::Fixed64, Value::Fixed64(_))
                | (Kind::Fixed32, Value::Fixed32(_))
                | (Kind::RepeatedFixed64, Value::Fixed64(_))
                | (Kind::RepeatedVarint, Value::Varint(_)) => {}
                (Kind::RepeatedFixed64, Value::Len(bytes)) => {
                    if bytes.len() % 8 != 0 {
                        return Err(WireError::Truncated);
                    }
                }
                (Kind::RepeatedVarint, Value::Len(mut bytes)) => {
                    while !bytes.is_empty() {
                        let (_, used) = crate::model::wire::read_varint(bytes)?;
                        bytes = &bytes[used..];
                    }
                }
                (_, value) => return Err(wrong(value.wire_type())),
            }
        }
        if schema.check == Check::SpanIds && !(ids_ok[0] && ids_ok[1]) {
            census.invalid_items += 1;
        }
        Ok(())
    }

    fn realistic() -> Vec<u8> {
        crate::testkit::encoded_traces(1, 24).to_vec()
    }

    #[test]
    fn attribute_fast_path_reports_the_same_errors() {
        let buf = realistic();
        // invalid UTF-8 in an attribute key, then in a string value
        for needle in [&b"tenant.id"[..], &b"shop.example.com"[..]] {
            let mut bad = buf.clone();
            let pos = bad.windows(needle.len()).position(|w| w == needle).unwrap();
            bad[pos + 2] = 0xc3;
            assert_eq!(
                walk(&TRACE_REQUEST, &bad),
                reference_walk(&TRACE_REQUEST, &bad)
            );
            assert!(walk(&TRACE_REQUEST, &bad).is_err());
        }
        assert_eq!(
            walk(&TRACE_REQUEST, &buf),
            reference_walk(&TRACE_REQUEST, &buf)
        );
        let logs = crate::testkit::encoded_logs(1, 24);
        assert_eq!(
            walk(&LOGS_REQUEST, &logs),
            reference_walk(&LOGS_REQUEST, &logs)
        );
        let metrics = crate::testkit::encoded_metrics(1, 40);
        assert_eq!(
            walk(&METRICS_REQUEST, &metrics),
            reference_walk(&METRICS_REQUEST, &metrics)
        );
    }

    /// The uncorrupted request each proptest case starts from, per signal.
    fn corruption_base(signal: Signal) -> &'static [u8] {
        static BASES: std::sync::OnceLock<[Vec<u8>; 3]> = std::sync::OnceLock::new();
        let bases = BASES.get_or_init(|| {
            [
                realistic(),
                crate::testkit::encoded_metrics(1, 40).to_vec(),
                crate::testkit::encoded_logs(1, 24).to_vec(),
            ]
        });
        match signal {
            Signal::Traces => &bases[0],
            Signal::Metrics => &bases[1],
            Signal::Logs => &bases[2],
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn optimised_walk_agrees_with_reference_on_corrupted_requests(
            signal in proptest::sample::select(Signal::ALL.to_vec()),
            edits in proptest::collection::vec((0usize..100_000, proptest::prelude::any::<u8>()), 1..4),
            cut in proptest::option::of(0usize..100_000),
        ) {
            let schema = request_schema(signal);
            let mut buf = corruption_base(signal).to_vec();
            for (at, byte) in edits {
                let at = at % buf.len();
                buf[at] = byte;
            }
            if let Some(cut) = cut {
                buf.truncate(cut % buf.len());
            }
            proptest::prop_assert_eq!(walk(schema, &buf), reference_walk(schema, &buf), "{}", signal);
        }
    }

    // --- the tables against the prost message definitions ---
    //
    // Every message is built with every field set to a non-default value
    // (struct literals without `..Default::default()`, so a field added to
    // `opentelemetry-proto` does not compile until it is set here), one
    // element per repeated field and each oneof variant once (several
    // elements where a oneof needs them). prost encodes it; an independent
    // reader then walks the bytes along the tables, checking that every
    // field prost writes is declared with the same number and wire type,
    // and recording which declared fields were written. Every declared field
    // must be written by some request, so an entry with a wrong number fails.

    mod otlp {
        pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        pub use opentelemetry_proto::tonic::common::v1::{
            any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue,
            KeyValueList,
        };
        pub use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        pub use opentelemetry_proto::tonic::metrics::v1::{
            exemplar, exponential_histogram_data_point, metric, number_data_point,
            summary_data_point, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
            Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
            ScopeMetrics, Sum, Summary, SummaryDataPoint,
        };
        pub use opentelemetry_proto::tonic::resource::v1::Resource;
        pub use opentelemetry_proto::tonic::trace::v1::{
            span, ResourceSpans, ScopeSpans, Span, Status,
        };
    }

    mod full {
        //! Fully populated prost values.
        use super::otlp::*;

        /// One `AnyValue` of each variant (nested ones hold a string).
        pub fn any_values() -> Vec<AnyValue> {
            use any_value::Value;
            let string = || AnyValue {
                value: Some(Value::StringValue("inner".into())),
            };
            [
                Value::StringValue("s".into()),
                Value::BoolValue(true),
                Value::IntValue(-3),
                Value::DoubleValue(1.5),
                Value::ArrayValue(ArrayValue {
                    values: vec![string()],
                }),
                Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "nested".into(),
                        value: Some(string()),
                        key_strindex: 2,
                    }],
                }),
                // Not UTF-8: a table that took it for a string would say so.
                Value::BytesValue(vec![0xff, 0xfe]),
                Value::StringValueStrindex(7),
            ]
            .into_iter()
            .map(|value| AnyValue { value: Some(value) })
            .collect()
        }

        /// One attribute per `AnyValue` variant.
        pub fn attributes() -> Vec<KeyValue> {
            any_values()
                .into_iter()
                .enumerate()
                .map(|(i, value)| KeyValue {
                    key: format!("k{i}"),
                    value: Some(value),
                    key_strindex: 3,
                })
                .collect()
        }

        pub fn resource() -> Option<Resource> {
            Some(Resource {
                attributes: attributes(),
                dropped_attributes_count: 1,
                entity_refs: vec![EntityRef {
                    schema_url: "https://example.com/entity".into(),
                    r#type: "service".into(),
                    id_keys: vec!["service.name".into()],
                    description_keys: vec!["service.version".into()],
                }],
            })
        }

        pub fn scope() -> Option<InstrumentationScope> {
            Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                attributes: attributes(),
                dropped_attributes_count: 2,
            })
        }

        /// Ids are not UTF-8 either, for the same reason as the bytes value.
        const TRACE_ID: [u8; 16] = [0xff; 16];
        const SPAN_ID: [u8; 8] = [0xfe; 8];

        pub fn traces() -> ExportTraceServiceRequest {
            let span = Span {
                trace_id: TRACE_ID.to_vec(),
                span_id: SPAN_ID.to_vec(),
                trace_state: "k=v".into(),
                parent_span_id: vec![0xfd; 8],
                flags: 0x301,
                name: "op".into(),
                kind: 2,
                start_time_unix_nano: 1,
                end_time_unix_nano: 2,
                attributes: attributes(),
                dropped_attributes_count: 3,
                events: vec![span::Event {
                    time_unix_nano: 3,
                    name: "event".into(),
                    attributes: attributes(),
                    dropped_attributes_count: 4,
                }],
                dropped_events_count: 5,
                links: vec![span::Link {
                    trace_id: TRACE_ID.to_vec(),
                    span_id: SPAN_ID.to_vec(),
                    trace_state: "k=w".into(),
                    attributes: attributes(),
                    dropped_attributes_count: 6,
                    flags: 0x101,
                }],
                dropped_links_count: 7,
                status: Some(Status {
                    message: "boom".into(),
                    code: 2,
                }),
            };
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: resource(),
                    scope_spans: vec![ScopeSpans {
                        scope: scope(),
                        spans: vec![span],
                        schema_url: "https://example.com/scope".into(),
                    }],
                    schema_url: "https://example.com/resource".into(),
                }],
            }
        }

        pub fn logs() -> ExportLogsServiceRequest {
            let record = LogRecord {
                time_unix_nano: 1,
                observed_time_unix_nano: 2,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: any_values().into_iter().next(),
                attributes: attributes(),
                dropped_attributes_count: 3,
                flags: 1,
                trace_id: TRACE_ID.to_vec(),
                span_id: SPAN_ID.to_vec(),
                event_name: "event".into(),
            };
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: resource(),
                    scope_logs: vec![ScopeLogs {
                        scope: scope(),
                        log_records: vec![record],
                        schema_url: "https://example.com/scope".into(),
                    }],
                    schema_url: "https://example.com/resource".into(),
                }],
            }
        }

        /// One exemplar per value variant.
        fn exemplars() -> Vec<Exemplar> {
            [exemplar::Value::AsDouble(0.5), exemplar::Value::AsInt(-5)]
                .into_iter()
                .map(|value| Exemplar {
                    filtered_attributes: attributes(),
                    time_unix_nano: 1,
                    span_id: SPAN_ID.to_vec(),
                    trace_id: TRACE_ID.to_vec(),
                    value: Some(value),
                })
                .collect()
        }

        /// One point per value variant.
        fn number_points() -> Vec<NumberDataPoint> {
            [
                number_data_point::Value::AsDouble(2.5),
                number_data_point::Value::AsInt(-7),
            ]
            .into_iter()
            .map(|value| NumberDataPoint {
                attributes: attributes(),
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                exemplars: exemplars(),
                flags: 1,
                value: Some(value),
            })
            .collect()
        }

        fn buckets() -> Option<exponential_histogram_data_point::Buckets> {
            Some(exponential_histogram_data_point::Buckets {
                offset: -2,
                bucket_counts: vec![3],
            })
        }

        pub fn metrics() -> ExportMetricsServiceRequest {
            use metric::Data;
            let data = [
                Data::Gauge(Gauge {
                    data_points: number_points(),
                }),
                Data::Sum(Sum {
                    data_points: number_points(),
                    aggregation_temporality: 2,
                    is_monotonic: true,
                }),
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: attributes(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(4.5),
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![0.5],
                        exemplars: exemplars(),
                        flags: 1,
                        min: Some(0.25),
                        max: Some(9.5),
                    }],
                    aggregation_temporality: 1,
                }),
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: attributes(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(4.5),
                        scale: -1,
                        zero_count: 1,
                        positive: buckets(),
                        negative: buckets(),
                        flags: 1,
                        exemplars: exemplars(),
                        min: Some(0.25),
                        max: Some(9.5),
                        zero_threshold: 0.125,
                    }],
                    aggregation_temporality: 2,
                }),
                Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        attributes: attributes(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: 4.5,
                        quantile_values: vec![summary_data_point::ValueAtQuantile {
                            quantile: 0.5,
                            value: 2.5,
                        }],
                        flags: 1,
                    }],
                }),
            ];
            let metrics = data
                .into_iter()
                .map(|data| Metric {
                    name: "m".into(),
                    description: "d".into(),
                    unit: "s".into(),
                    metadata: attributes(),
                    data: Some(data),
                })
                .collect();
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: resource(),
                    scope_metrics: vec![ScopeMetrics {
                        scope: scope(),
                        metrics,
                        schema_url: "https://example.com/scope".into(),
                    }],
                    schema_url: "https://example.com/resource".into(),
                }],
            }
        }
    }

    /// The wire types a field of `kind` may have (repeated scalars: packed or not).
    fn wire_types_of(kind: Kind) -> &'static [u64] {
        match kind {
            Kind::Message(_) | Kind::Str | Kind::Bytes => &[2],
            Kind::Varint => &[0],
            Kind::Fixed64 => &[1],
            Kind::Fixed32 => &[5],
            Kind::RepeatedFixed64 => &[1, 2],
            Kind::RepeatedVarint => &[0, 2],
        }
    }

    /// A varint, read without `model::wire`.
    fn read_varint_at(buf: &[u8], pos: &mut usize) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = buf[*pos];
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
        }
        panic!("varint longer than 10 bytes");
    }

    /// Fields of a table seen in prost encodings, by (table address, number).
    type Seen = std::collections::HashSet<(usize, u32)>;

    fn key(schema: &'static Schema) -> usize {
        std::ptr::from_ref(schema) as usize
    }

    /// Walks prost's encoding `buf` of a `schema` message field by field and
    /// checks every field against the table; recurses into nested messages.
    fn check_encoding(schema: &'static Schema, buf: &[u8], path: &str, seen: &mut Seen) {
        let mut pos = 0;
        while pos < buf.len() {
            let tag = read_varint_at(buf, &mut pos);
            let (number, wire_type) = (u32::try_from(tag >> 3).unwrap(), tag & 7);
            let value = match wire_type {
                0 => {
                    read_varint_at(buf, &mut pos);
                    &[][..]
                }
                1 => {
                    pos += 8;
                    &[][..]
                }
                2 => {
                    let len = usize::try_from(read_varint_at(buf, &mut pos)).unwrap();
                    pos += len;
                    &buf[pos - len..pos]
                }
                5 => {
                    pos += 4;
                    &[][..]
                }
                other => panic!("{path}: prost wrote wire type {other}"),
            };
            let def = schema
                .fields
                .iter()
                .find(|f| f.number == number)
                .unwrap_or_else(|| {
                    panic!(
                        "{path}: prost writes field {number} (wire type {wire_type}), \
                         which table {} does not declare",
                        schema.name
                    )
                });
            assert!(
                wire_types_of(def.kind).contains(&wire_type),
                "{path}.{}: prost writes field {number} with wire type {wire_type}, \
                 table {} declares {:?}",
                def.name,
                schema.name,
                def.kind
            );
            seen.insert((key(schema), number));
            match def.kind {
                Kind::Message(inner) => {
                    check_encoding(inner, value, &format!("{path}.{}", def.name), seen);
                }
                Kind::Str => assert!(
                    std::str::from_utf8(value).is_ok(),
                    "{path}.{}: declared a string, prost wrote bytes that are not UTF-8",
                    def.name
                ),
                _ => {}
            }
        }
        assert_eq!(pos, buf.len(), "{path}: last field runs past the message");
    }

    /// Every table reachable from `root`, each once.
    fn tables_under(root: &'static Schema, out: &mut Vec<&'static Schema>) {
        if out.iter().any(|s| std::ptr::eq(*s, root)) {
            return;
        }
        out.push(root);
        for def in root.fields {
            if let Kind::Message(inner) = def.kind {
                tables_under(inner, out);
            }
        }
    }

    #[test]
    fn tables_match_the_prost_message_definitions() {
        let requests = [
            (Signal::Traces, full::traces().encode_to_vec()),
            (Signal::Metrics, full::metrics().encode_to_vec()),
            (Signal::Logs, full::logs().encode_to_vec()),
        ];
        let mut seen = Seen::new();
        let mut tables = Vec::new();
        for (signal, encoded) in &requests {
            let schema = request_schema(*signal);
            check_encoding(schema, encoded, schema.name, &mut seen);
            tables_under(schema, &mut tables);
            // The fast walk takes what prost writes, too.
            assert_eq!(walk(schema, encoded).map(|c| c.invalid_items), Ok(0));
        }
        for table in &tables {
            let mut numbers: Vec<u32> = table.fields.iter().map(|f| f.number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(
                numbers.len(),
                table.fields.len(),
                "{}: a field number twice",
                table.name
            );
            for def in table.fields {
                assert!(
                    seen.contains(&(key(table), def.number)),
                    "{}.{} (field {}) is declared but prost never writes it: wrong number?",
                    table.name,
                    def.name,
                    def.number
                );
            }
        }
    }
}
