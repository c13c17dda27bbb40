//! Rewriting the strings and attributes of a [`Batch`] in place: the walk
//! that redaction runs on.
//!
//! [`rewrite`] offers a [`Rewriter`] every place a string can be (every
//! `string` field of the OTLP schema: attribute keys and values at any
//! nesting depth, span and event names, status messages, log bodies, metric
//! names …), every `bytes_value`, and every attribute (`KeyValue`) before its
//! contents, so it can keep, replace or remove it whole.
//!
//! Only the top-level records (`ResourceSpans`/`ResourceLogs`/
//! `ResourceMetrics`) that contain a change are re-encoded, and within them
//! only the changed messages; other records stay zero-copy slices of the
//! input. A rewriter can also skip a message unread ([`Rewriter::enter`]) and
//! append a summary attribute to the items, resources and scopes it changed
//! ([`Rewriter::summary`]).

use bytes::Bytes;

use super::batch::Batch;
use super::schema::{self, Kind, Schema};
use super::view::Cursor;
use super::wire::{self, Field, Value};
use super::Signal;

/// Where a string sits, named as in the schema tables: `("KeyValue", "key")`,
/// `("AnyValue", "string_value")`, `("Span", "name")`, `("Status", "message")` …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StrField {
    pub message: &'static str,
    pub field: &'static str,
}

/// The key of an attribute.
pub const KEY: StrField = StrField {
    message: "KeyValue",
    field: "key",
};
/// A string attribute value, array element or log body.
pub const STRING_VALUE: StrField = StrField {
    message: "AnyValue",
    field: "string_value",
};

/// What to do with one `KeyValue`, decided before its contents are visited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueEdit {
    /// Visit its key and the strings of its value.
    Walk,
    /// Leave it exactly as it is, unvisited.
    Keep,
    /// Keep the key (still offered to [`Rewriter::string`]) and replace the
    /// value with this encoded `AnyValue`.
    ReplaceValue(Vec<u8>),
    /// Leave it out.
    Remove,
}

/// What a walk over a batch does at each place a string can be.
pub trait Rewriter {
    /// Whether to look inside `message` (a message of shape `schema`) at all.
    /// Returning `false` keeps it unchanged without reading it. Default: yes.
    fn enter(&mut self, _schema: &'static Schema, _message: &[u8]) -> bool {
        true
    }

    /// Decides about a `KeyValue` from its key and encoded value. `attribute`
    /// is true for an `attributes` entry of a resource, scope, item, event,
    /// link or exemplar, false inside a key-value list. Default: walk it.
    fn key_value(&mut self, _key: &[u8], _value: &[u8], _attribute: bool) -> KeyValueEdit {
        KeyValueEdit::Walk
    }

    /// The replacement for string `s` (valid UTF-8: the batch was validated),
    /// or `None` to keep it.
    fn string(&mut self, at: StrField, s: &[u8]) -> Option<String>;

    /// A string to put in place of an `int_value` (the value changes type),
    /// or `None` to keep it. Default: keep.
    fn int_value(&mut self, _value: i64) -> Option<String> {
        None
    }

    /// The replacement for a `bytes_value`, or `None` to keep it. Default: keep.
    fn bytes_value(&mut self, _bytes: &[u8]) -> Option<Vec<u8>> {
        None
    }

    /// An encoded `KeyValue` to append to the attributes of an item, resource
    /// or scope in which `changes` strings or attributes changed (not counting
    /// those inside a nested resource, scope or item). Default: none.
    fn summary(&mut self, _changes: u32) -> Option<Vec<u8>> {
        None
    }
}

/// Runs `rewriter` over every top-level record of `batch`. Returns `None`
/// when nothing changed.
pub fn rewrite(batch: &Batch, rewriter: &mut impl Rewriter) -> Option<Batch> {
    let record_schema: &'static Schema = match batch.signal() {
        Signal::Traces => &schema::RESOURCE_SPANS,
        Signal::Metrics => &schema::RESOURCE_METRICS,
        Signal::Logs => &schema::RESOURCE_LOGS,
    };
    let mut segments: Vec<Bytes> = Vec::new();
    let mut changed = false;
    for segment in batch.segments() {
        let mut kept_from = 0;
        let mut reader = Cursor::new(segment);
        while let Some(field) = reader.next_field() {
            let (1, Value::Len(record)) = (field.number, field.value) else {
                continue;
            };
            let mut changes = 0;
            let Some(new) = rewrite_message(record_schema, record, rewriter, 1, &mut changes)
            else {
                continue;
            };
            changed = true;
            if field.start > kept_from {
                segments.push(segment.slice(kept_from..field.start));
            }
            let mut framed = Vec::with_capacity(wire::len_field_size(1, new.len()));
            wire::put_len_field(&mut framed, 1, &new);
            segments.push(Bytes::from(framed));
            kept_from = field.end;
        }
        if kept_from < segment.len() {
            segments.push(segment.slice(kept_from..));
        }
    }
    changed.then(|| Batch::from_validated_segments(batch.signal(), segments, batch.items()))
}

/// Offers every string of `batch` to `f` and replaces those for which it
/// returns `Some` (see [`rewrite`]). Returns `None` when nothing changed.
pub fn rewrite_strings(batch: &Batch, mut f: impl FnMut(&str) -> Option<String>) -> Option<Batch> {
    rewrite_string_bytes(batch, |_, s| f(std::str::from_utf8(s).ok()?))
}

/// [`rewrite_strings`], also telling `f` which field each string is in (so a
/// caller can, say, skip attribute keys).
pub fn rewrite_strings_with(
    batch: &Batch,
    mut f: impl FnMut(StrField, &str) -> Option<String>,
) -> Option<Batch> {
    rewrite_string_bytes(batch, |at, s| f(at, std::str::from_utf8(s).ok()?))
}

/// [`rewrite_strings_with`], offering each string as its bytes: they are
/// valid UTF-8 (the batch was validated), and a caller that scans bytes (for
/// digit runs, say) saves re-checking UTF-8 for every string.
pub fn rewrite_string_bytes(
    batch: &Batch,
    f: impl FnMut(StrField, &[u8]) -> Option<String>,
) -> Option<Batch> {
    struct Strings<F>(F);
    impl<F: FnMut(StrField, &[u8]) -> Option<String>> Rewriter for Strings<F> {
        fn string(&mut self, at: StrField, s: &[u8]) -> Option<String> {
            (self.0)(at, s)
        }
    }
    rewrite(batch, &mut Strings(f))
}

/// The field number of the attributes of a message that gets a summary
/// (an item, a resource or a scope), else `None`.
fn summary_field(schema: &'static Schema) -> Option<u32> {
    let holder = schema.item
        || std::ptr::eq(schema, &schema::RESOURCE)
        || std::ptr::eq(schema, &schema::SCOPE);
    if !holder {
        return None;
    }
    schema
        .fields
        .iter()
        .find(|def| def.name == "attributes")
        .map(|def| def.number)
}

/// The re-encoded message when something in it changed, else `None`. Adds
/// the number of changes not claimed by a nested summary to `changes`.
fn rewrite_message(
    schema: &'static Schema,
    buf: &[u8],
    rewriter: &mut impl Rewriter,
    depth: usize,
    changes: &mut u32,
) -> Option<Vec<u8>> {
    if depth >= schema::MAX_DEPTH || !rewriter.enter(schema, buf) {
        // Validated batches never nest this deep.
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut mine = 0u32;
    let mut reader = Cursor::new(buf);
    while let Some(field) = reader.next_field() {
        let Value::Len(bytes) = field.value else {
            continue;
        };
        let Some(def) = schema.field_def(field.number) else {
            continue;
        };
        let replacement = match def.kind {
            Kind::Message(inner) if std::ptr::eq(inner, &schema::KEY_VALUE) => {
                let attribute = matches!(def.name, "attributes" | "filtered_attributes");
                rewrite_key_value(bytes, attribute, rewriter, depth + 1, &mut mine)
            }
            Kind::Message(inner) if std::ptr::eq(inner, &schema::ANY_VALUE) => {
                match replace_int(rewriter, bytes, &mut mine) {
                    Some(new) => Some(Some(new)),
                    None => rewrite_message(inner, bytes, rewriter, depth + 1, &mut mine).map(Some),
                }
            }
            Kind::Message(inner) => {
                rewrite_message(inner, bytes, rewriter, depth + 1, &mut mine).map(Some)
            }
            Kind::Str => {
                let at = StrField {
                    message: schema.name,
                    field: def.name,
                };
                replace_string(rewriter, at, bytes, &mut mine).map(Some)
            }
            Kind::Bytes if std::ptr::eq(schema, &schema::ANY_VALUE) => rewriter
                .bytes_value(bytes)
                .filter(|new| new.as_slice() != bytes)
                .map(|new| {
                    mine += 1;
                    Some(new)
                }),
            _ => None,
        };
        // `Some(None)`: leave the field out.
        if let Some(new) = replacement {
            let out = out.get_or_insert_with(|| Vec::with_capacity(buf.len() + 16));
            out.extend_from_slice(&buf[copied..field.start]);
            if let Some(new) = new {
                wire::put_len_field(out, field.number, &new);
            }
            copied = field.end;
        }
    }
    let mut out = out?;
    out.extend_from_slice(&buf[copied..]);
    match summary_field(schema) {
        Some(number) if mine > 0 => {
            if let Some(kv) = rewriter.summary(mine) {
                wire::put_len_field(&mut out, number, &kv);
            }
        }
        _ => *changes += mine,
    }
    Some(out)
}

#[inline]
fn replace_string(
    rewriter: &mut impl Rewriter,
    at: StrField,
    s: &[u8],
    changes: &mut u32,
) -> Option<Vec<u8>> {
    let new = rewriter.string(at, s).filter(|new| new.as_bytes() != s)?;
    *changes += 1;
    Some(new.into_bytes())
}

/// An encoded string `AnyValue` in place of `any_value` when it is an int
/// the rewriter replaces.
fn replace_int(
    rewriter: &mut impl Rewriter,
    any_value: &[u8],
    changes: &mut u32,
) -> Option<Vec<u8>> {
    let mut cursor = Cursor::new(any_value);
    let (
        Some(Field {
            number: 3,
            value: Value::Varint(v),
            ..
        }),
        None,
    ) = (cursor.next_field(), cursor.next_field())
    else {
        return None;
    };
    let text = rewriter.int_value(v as i64)?;
    *changes += 1;
    let mut out = Vec::with_capacity(text.len() + 4);
    wire::put_len_field(&mut out, 1, text.as_bytes());
    Some(out)
}

/// A `KeyValue`: `None` unchanged, `Some(None)` removed, `Some(Some(bytes))` re-encoded.
fn rewrite_key_value(
    kv: &[u8],
    attribute: bool,
    rewriter: &mut impl Rewriter,
    depth: usize,
    changes: &mut u32,
) -> Option<Option<Vec<u8>>> {
    let parts = KeyValueParts::read(kv);
    match rewriter.key_value(parts.key, parts.value, attribute) {
        KeyValueEdit::Keep => None,
        KeyValueEdit::Remove => {
            *changes += 1;
            Some(None)
        }
        KeyValueEdit::ReplaceValue(value) => {
            *changes += 1;
            let key = replace_string(rewriter, KEY, parts.key, changes);
            let key = key.as_deref().unwrap_or(parts.key);
            let mut out = Vec::with_capacity(key.len() + value.len() + 8);
            wire::put_len_field(&mut out, 1, key);
            wire::put_len_field(&mut out, 2, &value);
            Some(Some(out))
        }
        KeyValueEdit::Walk if parts.scalar => {
            rewrite_scalar_key_value(kv, &parts, rewriter, changes).map(Some)
        }
        KeyValueEdit::Walk => {
            rewrite_message(&schema::KEY_VALUE, kv, rewriter, depth, changes).map(Some)
        }
    }
}

/// The key and value of a `KeyValue`, and whether it has the shape every SDK
/// writes for a scalar attribute: `key`, then `value` holding one string,
/// bool, int or double (most of the strings of a request).
struct KeyValueParts<'a> {
    key: &'a [u8],
    value: &'a [u8],
    /// The value field, when the shape is scalar.
    value_field: (usize, usize),
    /// The string of a scalar string value.
    string: Option<&'a [u8]>,
    scalar: bool,
}

impl<'a> KeyValueParts<'a> {
    #[inline]
    fn read(kv: &'a [u8]) -> Self {
        let mut parts = KeyValueParts {
            key: &[],
            value: &[],
            value_field: (0, 0),
            string: None,
            scalar: false,
        };
        let mut fields = 0;
        let mut cursor = Cursor::new(kv);
        while let Some(field) = cursor.next_field() {
            fields += 1;
            match (field.number, field.value) {
                (1, Value::Len(key)) => parts.key = key,
                (2, Value::Len(value)) => {
                    parts.value = value;
                    parts.value_field = (field.start, field.end);
                }
                _ => {}
            }
        }
        if fields != 2 || parts.value_field.0 == 0 {
            return parts;
        }
        let mut value = Cursor::new(parts.value);
        match (value.next_field(), value.next_field()) {
            (
                Some(Field {
                    number: 1,
                    value: Value::Len(s),
                    ..
                }),
                None,
            ) => {
                parts.string = Some(s);
                parts.scalar = true;
            }
            (Some(Field { number: 2..=4, .. }), None) => parts.scalar = true,
            _ => {}
        }
        parts
    }
}

/// The walk of a scalar `KeyValue` without the two levels of the general walk.
#[inline]
fn rewrite_scalar_key_value(
    kv: &[u8],
    parts: &KeyValueParts<'_>,
    rewriter: &mut impl Rewriter,
    changes: &mut u32,
) -> Option<Vec<u8>> {
    let new_key = replace_string(rewriter, KEY, parts.key, changes);
    let new_value = match parts.string {
        Some(s) => replace_string(rewriter, STRING_VALUE, s, changes).map(|s| {
            let mut value = Vec::with_capacity(s.len() + 4);
            wire::put_len_field(&mut value, 1, &s);
            value
        }),
        None => replace_int(rewriter, parts.value, changes),
    };
    if new_key.is_none() && new_value.is_none() {
        return None;
    }
    let key = new_key.as_deref().unwrap_or(parts.key);
    let mut out = Vec::with_capacity(kv.len() + 16);
    wire::put_len_field(&mut out, 1, key);
    match new_value {
        Some(value) => wire::put_len_field(&mut out, 2, &value),
        None => out.extend_from_slice(&kv[parts.value_field.0..parts.value_field.1]),
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
    };
    use prost::Message;

    fn traces_batch(req: &ExportTraceServiceRequest) -> Batch {
        Batch::decode(Signal::Traces, Bytes::from(req.encode_to_vec()))
            .unwrap()
            .batch
    }

    fn mask(s: &str) -> Option<String> {
        s.contains(testkit::CARD)
            .then(|| s.replace(testkit::CARD, "****1111"))
    }

    /// Applies `mask` to every string of a prost request, by hand.
    fn mask_any(v: &mut AnyValue) {
        match v.value.as_mut() {
            Some(any_value::Value::StringValue(s)) => {
                if let Some(m) = mask(s) {
                    *s = m;
                }
            }
            Some(any_value::Value::ArrayValue(a)) => a.values.iter_mut().for_each(mask_any),
            Some(any_value::Value::KvlistValue(l)) => mask_kvs(&mut l.values),
            _ => {}
        }
    }

    fn mask_kvs(kvs: &mut [KeyValue]) {
        for kv in kvs {
            if let Some(m) = mask(&kv.key) {
                kv.key = m;
            }
            if let Some(v) = kv.value.as_mut() {
                mask_any(v);
            }
        }
    }

    #[test]
    fn rewrite_replaces_card_numbers_and_keeps_unchanged_records_zero_copy() {
        let mut req = testkit::trace_request(11, 512);
        // Put the card into nested values, a span name, an event and a status message too.
        let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
        span.name = format!("GET /card/{}", testkit::CARD);
        span.status.get_or_insert_with(Default::default).message = format!("bad {}", testkit::CARD);
        span.attributes.push(KeyValue {
            key: "nested".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![testkit::kv_str("deep", format!("x{}", testkit::CARD))],
                })),
            }),
            ..Default::default()
        });
        span.attributes.push(KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::StringValue(testkit::CARD.into())),
                    }],
                })),
            }),
            ..Default::default()
        });
        span.attributes
            .push(testkit::kv_int(&format!("card.{}", testkit::CARD), 5));
        span.attributes.push(testkit::kv_str(
            &format!("k{}", testkit::CARD),
            testkit::CARD,
        ));
        span.attributes
            .push(testkit::kv_str(&format!("k{}", testkit::CARD), "plain"));
        span.events
            .push(opentelemetry_proto::tonic::trace::v1::span::Event {
                name: testkit::CARD.into(),
                attributes: vec![testkit::kv_str("e", testkit::CARD)],
                ..Default::default()
            });

        let batch = traces_batch(&req);
        let mut seen = 0;
        let rewritten = rewrite_strings(&batch, |s| {
            seen += 1;
            mask(s)
        })
        .expect("cards found");
        assert!(seen > 512 * 10, "every string offered");

        let mut expected = req.clone();
        for rs in &mut expected.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    if let Some(m) = mask(&span.name) {
                        span.name = m;
                    }
                    if let Some(status) = span.status.as_mut() {
                        if let Some(m) = mask(&status.message) {
                            status.message = m;
                        }
                    }
                    mask_kvs(&mut span.attributes);
                    for event in &mut span.events {
                        if let Some(m) = mask(&event.name) {
                            event.name = m;
                        }
                        mask_kvs(&mut event.attributes);
                    }
                }
            }
        }
        assert_ne!(expected, req);
        let decoded = ExportTraceServiceRequest::decode(rewritten.to_bytes()).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(rewritten.items(), 512);
        assert_eq!(rewritten.encoded_len(), rewritten.to_bytes().len());
        assert!(!String::from_utf8_lossy(&rewritten.to_bytes()).contains(testkit::CARD));

        // Records without a card are slices of the input buffer.
        let input = batch.segments()[0].as_ptr_range();
        let shared = rewritten
            .segments()
            .iter()
            .filter(|s| input.contains(&s.as_ptr()))
            .count();
        assert!(shared >= 1, "unchanged records are not copied");
        assert!(rewritten.segments().len() > 1);
    }

    #[test]
    fn rewrite_without_a_change_is_none() {
        let batch = testkit::batch(Signal::Traces, 12, 64);
        assert!(rewrite_strings(&batch, |_| None).is_none());
        assert!(
            rewrite_strings(&batch, |s| Some(s.to_string())).is_none(),
            "same value is no change"
        );
    }

    #[test]
    fn rewrite_reaches_logs_and_metrics_and_reports_the_field() {
        let logs = testkit::batch(Signal::Logs, 0, 100);
        let mut fields = std::collections::HashSet::new();
        let out = rewrite_strings_with(&logs, |at, s| {
            fields.insert(at);
            mask(s)
        })
        .unwrap();
        assert!(fields.contains(&StrField {
            message: "AnyValue",
            field: "string_value"
        }));
        assert!(fields.contains(&StrField {
            message: "KeyValue",
            field: "key"
        }));
        let decoded = ExportLogsServiceRequest::decode(out.to_bytes()).unwrap();
        assert_eq!(
            decoded
                .resource_logs
                .iter()
                .map(|r| r.scope_logs[0].log_records.len())
                .sum::<usize>(),
            100
        );
        assert!(!String::from_utf8_lossy(&out.to_bytes()).contains(testkit::CARD));
        assert!(String::from_utf8_lossy(&logs.to_bytes()).contains(testkit::CARD));

        let metrics = testkit::batch(Signal::Metrics, 0, 100);
        let out = rewrite_strings(&metrics, |s| {
            (s == "system.cpu.utilization").then(|| "cpu".to_string())
        })
        .unwrap();
        let decoded = ExportMetricsServiceRequest::decode(out.to_bytes()).unwrap();
        let names: Vec<_> = decoded
            .resource_metrics
            .iter()
            .flat_map(|r| r.scope_metrics[0].metrics.iter().map(|m| m.name.as_str()))
            .collect();
        assert!(names.contains(&"cpu"));
        assert!(!names.contains(&"system.cpu.utilization"));
        assert_eq!(out.items(), 100);
    }

    /// Removes `drop`, replaces the value of `secret` with an int, masks
    /// bytes values, skips spans named `skip`, and summarises changes.
    struct Edits;
    impl Rewriter for Edits {
        fn enter(&mut self, schema: &'static Schema, message: &[u8]) -> bool {
            !(std::ptr::eq(schema, &schema::SPAN)
                && crate::model::view::SpanView::new(message).name() == "skip")
        }
        fn key_value(&mut self, key: &[u8], _value: &[u8], attribute: bool) -> KeyValueEdit {
            match key {
                b"drop" => KeyValueEdit::Remove,
                b"secret" if attribute => KeyValueEdit::ReplaceValue(
                    AnyValue {
                        value: Some(any_value::Value::IntValue(0)),
                    }
                    .encode_to_vec(),
                ),
                _ => KeyValueEdit::Walk,
            }
        }
        fn string(&mut self, _: StrField, s: &[u8]) -> Option<String> {
            mask(std::str::from_utf8(s).ok()?)
        }
        fn bytes_value(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
            mask(std::str::from_utf8(bytes).ok()?).map(String::into_bytes)
        }
        fn summary(&mut self, changes: u32) -> Option<Vec<u8>> {
            Some(testkit::kv_int("changes", i64::from(changes)).encode_to_vec())
        }
    }

    #[test]
    fn rewriter_removes_replaces_skips_and_summarises() {
        let mut req = testkit::trace_request(3, 1);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans.extend([spans[0].clone(), spans[0].clone()]);
        let nested = KeyValue {
            key: "nested".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![
                        testkit::kv_str("secret", "kept: not an attribute"),
                        testkit::kv_str("drop", "x"),
                    ],
                })),
            }),
            ..Default::default()
        };
        spans[0].attributes = vec![
            testkit::kv_str("drop", "gone"),
            testkit::kv_str("secret", "hunter2"),
            KeyValue {
                key: "blob".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::BytesValue(
                        format!("pan={}", testkit::CARD).into_bytes(),
                    )),
                }),
                ..Default::default()
            },
            nested,
            testkit::kv_str("plain", "untouched"),
        ];
        spans[1].name = "skip".into();
        spans[1].attributes = vec![testkit::kv_str("drop", "stays: span skipped")];
        let batch = traces_batch(&req);
        let out = rewrite(&batch, &mut Edits).expect("changed");
        let decoded = ExportTraceServiceRequest::decode(out.to_bytes()).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        let attrs = &spans[0].attributes;
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["secret", "blob", "nested", "plain", "changes"]);
        let value = |i: usize| attrs[i].value.as_ref().unwrap().value.clone().unwrap();
        assert_eq!(value(0), any_value::Value::IntValue(0));
        assert_eq!(
            value(1),
            any_value::Value::BytesValue(b"pan=****1111".to_vec())
        );
        let any_value::Value::KvlistValue(list) = value(2) else {
            panic!("kvlist kept")
        };
        assert_eq!(
            list.values,
            vec![testkit::kv_str("secret", "kept: not an attribute")]
        );
        // drop, secret, blob, nested drop: four changes in the span.
        assert_eq!(value(4), any_value::Value::IntValue(4));
        assert_eq!(
            spans[1].attributes,
            vec![testkit::kv_str("drop", "stays: span skipped")]
        );
        assert_eq!(spans[2], req.resource_spans[0].scope_spans[0].spans[2]);
        assert_eq!(out.items(), batch.items());
    }
}
