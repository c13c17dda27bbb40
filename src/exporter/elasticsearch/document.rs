//! Spans and log records as JSON documents, written straight from the
//! batch's protobuf bytes into the NDJSON buffer: no decode into structs,
//! no intermediate `serde_json::Value`. Strings and numbers go through
//! `serde_json` (escaping, shortest float form); the structure is written here.
//!
//! # `otel` mapping
//! Spans: `@timestamp` (start), `trace_id`, `span_id`, `parent_span_id`,
//! `trace_state`, `name`, `kind`, `duration` (ns), `status {code, message}`,
//! `attributes`, `events [{@timestamp, name, attributes}]`,
//! `links [{trace_id, span_id, trace_state, attributes}]`,
//! `resource.attributes`, `scope {name, version, attributes}`.
//! Log records: `@timestamp`, `observed_timestamp`, `severity_text`,
//! `severity_number`, `body`, `trace_id`, `span_id`, `event_name`,
//! `attributes`, `resource.attributes`, `scope`. A string body is written as
//! `body.text`, any other as `body.structured`, so that string and map
//! bodies never clash in one index mapping.
//!
//! # `ecs` mapping (log records)
//! `@timestamp`, `message`, `log.level`, `event.severity`, `trace.id`,
//! `span.id`, `log.logger` (scope name), `event.created` (observed time),
//! resource attributes under their ECS names where ECS has one
//! ([`ECS_RESOURCE_NAMES`]), the rest and the record's attributes under
//! their own names. `host.name` is kept and also written as `host.hostname`.
//!
//! # Values
//! Attribute values keep their types: strings, booleans, integers, doubles
//! (non-finite ones as `null`), bytes as base64, arrays as JSON arrays and
//! key-value lists as JSON objects. A key repeated in one object is written
//! once (the first wins): Elasticsearch refuses documents with duplicate keys.

use base64::Engine as _;

use crate::model::view::{Cursor, LogRecordView, SpanFields, SpanView};
use crate::model::wire::Value;

use super::index::UtcTime;

/// Deepest nesting of arrays and key-value lists written; deeper values become `null`.
const MAX_DEPTH: usize = 32;

/// OpenTelemetry resource attributes and their Elastic Common Schema names
/// (as Elastic's own OpenTelemetry exporter maps them).
pub const ECS_RESOURCE_NAMES: &[(&str, &str)] = &[
    ("service.instance.id", "service.node.name"),
    ("deployment.environment", "service.environment"),
    ("deployment.environment.name", "service.environment"),
    ("cloud.platform", "cloud.service.name"),
    ("container.image.tags", "container.image.tag"),
    ("host.name", "host.hostname"),
    ("host.arch", "host.architecture"),
    ("process.executable.path", "process.executable"),
    ("process.runtime.name", "service.runtime.name"),
    ("process.runtime.version", "service.runtime.version"),
    ("os.name", "host.os.name"),
    ("os.type", "host.os.platform"),
    ("os.description", "host.os.full"),
    ("os.version", "host.os.version"),
    ("k8s.deployment.name", "kubernetes.deployment.name"),
    ("k8s.namespace.name", "kubernetes.namespace"),
    ("k8s.node.name", "kubernetes.node.name"),
    ("k8s.pod.name", "kubernetes.pod.name"),
    ("k8s.pod.uid", "kubernetes.pod.uid"),
    ("k8s.job.name", "kubernetes.job.name"),
    ("k8s.cronjob.name", "kubernetes.cronjob.name"),
    ("k8s.statefulset.name", "kubernetes.statefulset.name"),
    ("k8s.replicaset.name", "kubernetes.replicaset.name"),
    ("k8s.daemonset.name", "kubernetes.daemonset.name"),
    ("k8s.container.name", "kubernetes.container.name"),
    ("k8s.cluster.name", "orchestrator.cluster.name"),
];

/// Protobuf field numbers of the messages read here.
mod field {
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    pub const SCOPE_ATTRIBUTES: u32 = 3;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_EVENTS: u32 = 11;
    pub const SPAN_LINKS: u32 = 13;
    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const EVENT_ATTRIBUTES: u32 = 3;
    pub const LINK_TRACE_ID: u32 = 1;
    pub const LINK_SPAN_ID: u32 = 2;
    pub const LINK_TRACE_STATE: u32 = 3;
    pub const LINK_ATTRIBUTES: u32 = 4;
    pub const LOG_ATTRIBUTES: u32 = 6;
    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const ARRAY_VALUES: u32 = 1;
    pub const KVLIST_VALUES: u32 = 1;
}

/// Writes documents; holds the scratch state reused between documents.
///
/// Items of one resource (and scope) share its bytes, so the `resource` and
/// `scope` members are written once per resource and copied for the next
/// items: a writer must not outlive the batch it writes (the cache is keyed
/// by the address of the resource's bytes).
#[derive(Debug, Default)]
pub struct DocumentWriter {
    /// Byte ranges (in the output) of the keys written in the objects being
    /// written, innermost last: to skip repeated keys.
    keys: Vec<(usize, usize)>,
    resource: CachedMember,
    scope: CachedMember,
}

/// The JSON value of a member computed from one message's bytes (empty: leave the member out).
#[derive(Debug, Default)]
struct CachedMember {
    /// Address and length of the message it was made from.
    of: Option<(usize, usize)>,
    json: Vec<u8>,
}

impl CachedMember {
    fn is_for(&self, message: &[u8]) -> bool {
        self.of == Some((message.as_ptr() as usize, message.len()))
    }
}

/// An object being written: where its keys start in [`DocumentWriter::keys`].
#[derive(Debug, Clone, Copy)]
struct Object {
    keys_from: usize,
    empty: bool,
    /// Whether its keys come from the data (attributes, maps) and may repeat; the
    /// writer's own names never do, and are not compared.
    checked: bool,
}

impl DocumentWriter {
    pub fn new() -> Self {
        DocumentWriter::default()
    }

    /// Appends `span` (whose scalar `fields` the caller read) as an `otel` document (no
    /// newline); `time` is its `@timestamp`.
    pub fn span(
        &mut self,
        out: &mut Vec<u8>,
        span: &SpanView<'_>,
        fields: &SpanFields<'_>,
        time: u64,
    ) {
        let mut doc = self.open(out);
        self.timestamp_member(out, &mut doc, "@timestamp", time);
        if let Some(id) = fields.trace_id {
            self.hex_member(out, &mut doc, "trace_id", &id);
        }
        if let Some(id) = fields.span_id {
            self.hex_member(out, &mut doc, "span_id", &id);
        }
        if let Some(id) = fields.parent_span_id {
            self.hex_member(out, &mut doc, "parent_span_id", &id);
        }
        let parts = SpanParts::of(span.encoded());
        if !parts.trace_state.is_empty() && self.key(out, &mut doc, "trace_state") {
            json_str(out, parts.trace_state);
        }
        self.str_member(out, &mut doc, "name", fields.name);
        self.str_member(out, &mut doc, "kind", span_kind(fields.kind));
        if self.key(out, &mut doc, "duration") {
            json(out, &fields.duration_nanos());
        }
        if self.key(out, &mut doc, "status") {
            let mut status = self.open(out);
            self.str_member(out, &mut status, "code", status_code(fields.status_code));
            if !fields.status_message.is_empty() {
                self.str_member(out, &mut status, "message", fields.status_message);
            }
            self.close(out, status);
        }
        if parts.attributes {
            self.attributes_member(
                out,
                &mut doc,
                "attributes",
                span.encoded(),
                field::SPAN_ATTRIBUTES,
            );
        }
        if parts.events {
            self.events_member(out, &mut doc, span.encoded());
        }
        if parts.links {
            self.links_member(out, &mut doc, span.encoded());
        }
        self.resource_member(out, &mut doc, span.resource().encoded());
        self.scope_member(out, &mut doc, span.scope().encoded());
        self.close(out, doc);
    }

    /// Appends `record` as an `otel` document (no newline); `time` is its `@timestamp`.
    pub fn log_otel(&mut self, out: &mut Vec<u8>, record: &LogRecordView<'_>, time: u64) {
        let mut doc = self.open(out);
        self.timestamp_member(out, &mut doc, "@timestamp", time);
        let observed = record.observed_time_unix_nano();
        if observed != 0 {
            self.timestamp_member(out, &mut doc, "observed_timestamp", observed);
        }
        let severity_text = record.severity_text();
        if !severity_text.is_empty() {
            self.str_member(out, &mut doc, "severity_text", severity_text);
        }
        let severity = record.severity_number();
        if severity != 0 && self.key(out, &mut doc, "severity_number") {
            json(out, &severity);
        }
        if let Some(body) = log_body(record.encoded()) {
            if self.key(out, &mut doc, "body") {
                let mut object = self.open(out);
                let name = if is_string(body) {
                    "text"
                } else {
                    "structured"
                };
                if self.key(out, &mut object, name) {
                    self.any_value(out, body, 0);
                }
                self.close(out, object);
            }
        }
        if let Some(id) = record.trace_id() {
            self.hex_member(out, &mut doc, "trace_id", &id);
        }
        if let Some(id) = record.span_id() {
            self.hex_member(out, &mut doc, "span_id", &id);
        }
        let event_name = record.event_name();
        if !event_name.is_empty() {
            self.str_member(out, &mut doc, "event_name", event_name);
        }
        self.attributes_member(
            out,
            &mut doc,
            "attributes",
            record.encoded(),
            field::LOG_ATTRIBUTES,
        );
        self.resource_member(out, &mut doc, record.resource().encoded());
        self.scope_member(out, &mut doc, record.scope().encoded());
        self.close(out, doc);
    }

    /// Appends `record` as an `ecs` document (no newline); `time` is its `@timestamp`.
    pub fn log_ecs(&mut self, out: &mut Vec<u8>, record: &LogRecordView<'_>, time: u64) {
        // Attributes land beside the fixed fields: every key is checked.
        let mut doc = self.open_checked(out);
        self.timestamp_member(out, &mut doc, "@timestamp", time);
        if let Some(body) = log_body(record.encoded()) {
            if self.key(out, &mut doc, "message") {
                match string_of(body) {
                    Some(text) => json(out, text),
                    None => {
                        // A structured body as its JSON text: ECS `message` is text.
                        let mut text = Vec::new();
                        self.any_value(&mut text, body, 0);
                        json(out, &String::from_utf8_lossy(&text));
                    }
                }
            }
        }
        let severity_text = record.severity_text();
        let severity = record.severity_number();
        let level = if severity_text.is_empty() {
            severity_name(severity)
        } else {
            severity_text
        };
        if !level.is_empty() {
            self.str_member(out, &mut doc, "log.level", level);
        }
        if severity != 0 && self.key(out, &mut doc, "event.severity") {
            json(out, &severity);
        }
        let observed = record.observed_time_unix_nano();
        if observed != 0 {
            self.timestamp_member(out, &mut doc, "event.created", observed);
        }
        if let Some(id) = record.trace_id() {
            self.hex_member(out, &mut doc, "trace.id", &id);
        }
        if let Some(id) = record.span_id() {
            self.hex_member(out, &mut doc, "span.id", &id);
        }
        let event_name = record.event_name();
        if !event_name.is_empty() {
            self.str_member(out, &mut doc, "event.action", event_name);
        }
        let scope = record.scope().encoded();
        let logger = first_str(scope, field::SCOPE_NAME);
        if !logger.is_empty() {
            self.str_member(out, &mut doc, "log.logger", logger);
        }
        for (key, value) in key_values(record.resource().encoded(), field::RESOURCE_ATTRIBUTES) {
            if let Some((_, ecs)) = ECS_RESOURCE_NAMES
                .iter()
                .find(|(otel, _)| otel.as_bytes() == key)
            {
                if key == b"host.name" && self.key_bytes(out, &mut doc, key) {
                    self.any_value(out, value, 0);
                }
                if self.key(out, &mut doc, ecs) {
                    self.any_value(out, value, 0);
                }
            } else if self.key_bytes(out, &mut doc, key) {
                self.any_value(out, value, 0);
            }
        }
        for (key, value) in key_values(record.encoded(), field::LOG_ATTRIBUTES) {
            if self.key_bytes(out, &mut doc, key) {
                self.any_value(out, value, 0);
            }
        }
        self.close(out, doc);
    }

    // --- objects and members ---

    /// Opens an object whose keys are the writer's own names.
    fn open(&mut self, out: &mut Vec<u8>) -> Object {
        out.push(b'{');
        Object {
            keys_from: self.keys.len(),
            empty: true,
            checked: false,
        }
    }

    /// Opens an object whose keys come from the data: a repeated one is skipped.
    fn open_checked(&mut self, out: &mut Vec<u8>) -> Object {
        let mut object = self.open(out);
        object.checked = true;
        object
    }

    fn close(&mut self, out: &mut Vec<u8>, object: Object) {
        self.keys.truncate(object.keys_from);
        out.push(b'}');
    }

    /// Writes `"key":` as the next member of `object`, unless the object has
    /// that key already: then nothing is written and the caller skips the value.
    fn key(&mut self, out: &mut Vec<u8>, object: &mut Object, key: &str) -> bool {
        self.key_bytes(out, object, key.as_bytes())
    }

    /// [`DocumentWriter::key`] for a key as the batch holds it.
    fn key_bytes(&mut self, out: &mut Vec<u8>, object: &mut Object, key: &[u8]) -> bool {
        let mark = out.len();
        if !object.empty {
            out.push(b',');
        }
        let start = out.len();
        json_str(out, key);
        let end = out.len();
        if object.checked {
            let written = &out[start..end];
            let repeated = self.keys[object.keys_from..]
                .iter()
                .any(|&(s, e)| e - s == written.len() && out[s..e] == *written);
            if repeated {
                out.truncate(mark);
                return false;
            }
        }
        self.keys.push((start, end));
        out.push(b':');
        object.empty = false;
        true
    }

    fn str_member(&mut self, out: &mut Vec<u8>, object: &mut Object, key: &str, value: &str) {
        if self.key(out, object, key) {
            json_str(out, value.as_bytes());
        }
    }

    fn hex_member(&mut self, out: &mut Vec<u8>, object: &mut Object, key: &str, id: &[u8]) {
        if self.key(out, object, key) {
            out.push(b'"');
            push_hex(out, id);
            out.push(b'"');
        }
    }

    fn timestamp_member(&mut self, out: &mut Vec<u8>, object: &mut Object, key: &str, time: u64) {
        if self.key(out, object, key) {
            out.push(b'"');
            UtcTime::from_unix_nanos(time).write_rfc3339(out);
            out.push(b'"');
        }
    }

    /// `key: {attributes}` from the repeated `KeyValue` field `number` of `message`; left
    /// out when there are none.
    fn attributes_member(
        &mut self,
        out: &mut Vec<u8>,
        object: &mut Object,
        key: &str,
        message: &[u8],
        number: u32,
    ) {
        let mut attributes = key_values(message, number).peekable();
        if attributes.peek().is_none() || !self.key(out, object, key) {
            return;
        }
        let mut inner = self.open_checked(out);
        for (key, value) in attributes {
            if self.key_bytes(out, &mut inner, key) {
                self.any_value(out, value, 1);
            }
        }
        self.close(out, inner);
    }

    /// `"resource": {"attributes": {...}}`, left out when the resource has no attributes.
    fn resource_member(&mut self, out: &mut Vec<u8>, object: &mut Object, resource: &[u8]) {
        if !self.resource.is_for(resource) {
            let mut json = std::mem::take(&mut self.resource.json);
            json.clear();
            if key_values(resource, field::RESOURCE_ATTRIBUTES)
                .next()
                .is_some()
            {
                let mut inner = self.open(&mut json);
                self.attributes_member(
                    &mut json,
                    &mut inner,
                    "attributes",
                    resource,
                    field::RESOURCE_ATTRIBUTES,
                );
                self.close(&mut json, inner);
            }
            self.resource = CachedMember {
                of: Some((resource.as_ptr() as usize, resource.len())),
                json,
            };
        }
        if !self.resource.json.is_empty() && self.key(out, object, "resource") {
            out.extend_from_slice(&self.resource.json);
        }
    }

    /// `"scope": {"name", "version", "attributes"}`, left out when there is no scope.
    fn scope_member(&mut self, out: &mut Vec<u8>, object: &mut Object, scope: &[u8]) {
        if !self.scope.is_for(scope) {
            let mut json = std::mem::take(&mut self.scope.json);
            json.clear();
            if !scope.is_empty() {
                self.scope_value(&mut json, scope);
            }
            self.scope = CachedMember {
                of: Some((scope.as_ptr() as usize, scope.len())),
                json,
            };
        }
        if !self.scope.json.is_empty() && self.key(out, object, "scope") {
            out.extend_from_slice(&self.scope.json);
        }
    }

    fn scope_value(&mut self, out: &mut Vec<u8>, scope: &[u8]) {
        let mut inner = self.open(out);
        let name = first_str(scope, field::SCOPE_NAME);
        if !name.is_empty() {
            self.str_member(out, &mut inner, "name", name);
        }
        let version = first_str(scope, field::SCOPE_VERSION);
        if !version.is_empty() {
            self.str_member(out, &mut inner, "version", version);
        }
        self.attributes_member(
            out,
            &mut inner,
            "attributes",
            scope,
            field::SCOPE_ATTRIBUTES,
        );
        self.close(out, inner);
    }

    fn events_member(&mut self, out: &mut Vec<u8>, object: &mut Object, span: &[u8]) {
        let mut events = repeated(span, field::SPAN_EVENTS).peekable();
        if events.peek().is_none() || !self.key(out, object, "events") {
            return;
        }
        out.push(b'[');
        for (i, event) in events.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut doc = self.open(out);
            self.timestamp_member(
                out,
                &mut doc,
                "@timestamp",
                first_fixed64(event, field::EVENT_TIME),
            );
            self.str_member(out, &mut doc, "name", first_str(event, field::EVENT_NAME));
            self.attributes_member(out, &mut doc, "attributes", event, field::EVENT_ATTRIBUTES);
            self.close(out, doc);
        }
        out.push(b']');
    }

    fn links_member(&mut self, out: &mut Vec<u8>, object: &mut Object, span: &[u8]) {
        let mut links = repeated(span, field::SPAN_LINKS).peekable();
        if links.peek().is_none() || !self.key(out, object, "links") {
            return;
        }
        out.push(b'[');
        for (i, link) in links.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut doc = self.open(out);
            if let Some(id) = first_len(link, field::LINK_TRACE_ID) {
                self.hex_member(out, &mut doc, "trace_id", id);
            }
            if let Some(id) = first_len(link, field::LINK_SPAN_ID) {
                self.hex_member(out, &mut doc, "span_id", id);
            }
            let state = first_str(link, field::LINK_TRACE_STATE);
            if !state.is_empty() {
                self.str_member(out, &mut doc, "trace_state", state);
            }
            self.attributes_member(out, &mut doc, "attributes", link, field::LINK_ATTRIBUTES);
            self.close(out, doc);
        }
        out.push(b']');
    }

    /// An encoded `AnyValue` as JSON (the last value field wins, as for a `oneof`).
    fn any_value(&mut self, out: &mut Vec<u8>, encoded: &[u8], depth: usize) {
        let mut chosen = None;
        let mut reader = Cursor::new(encoded);
        while let Some(f) = reader.next_field() {
            if (1..=8).contains(&f.number) {
                chosen = Some((f.number, f.value));
            }
        }
        match chosen {
            Some((1, Value::Len(s))) => json_str(out, s),
            Some((2, Value::Varint(v))) => json(out, &(v != 0)),
            Some((3, Value::Varint(v))) => json(out, &(v as i64)),
            Some((4, Value::Fixed64(v))) => json(out, &f64::from_bits(v)),
            Some((5, Value::Len(array))) if depth < MAX_DEPTH => {
                out.push(b'[');
                for (i, value) in repeated(array, field::ARRAY_VALUES).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.any_value(out, value, depth + 1);
                }
                out.push(b']');
            }
            Some((6, Value::Len(list))) if depth < MAX_DEPTH => {
                let mut object = self.open_checked(out);
                for (key, value) in key_values(list, field::KVLIST_VALUES) {
                    if self.key_bytes(out, &mut object, key) {
                        self.any_value(out, value, depth + 1);
                    }
                }
                self.close(out, object);
            }
            Some((7, Value::Len(bytes))) => {
                out.push(b'"');
                let start = out.len();
                let engine = &base64::engine::general_purpose::STANDARD;
                out.resize(
                    start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
                    0,
                );
                let written = engine.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
                out.truncate(start + written);
                out.push(b'"');
            }
            _ => out.extend_from_slice(b"null"),
        }
    }
}

/// Appends `value` as JSON. Serializing a string, number or bool into a
/// `Vec` cannot fail (non-finite floats become `null`).
#[inline]
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Appends `bytes` as a JSON string. The batch's strings were checked as UTF-8
/// when it was decoded, so they are copied as they are; only `"`, `\\` and
/// control characters are escaped (as `serde_json` does, without checking the
/// UTF-8 again: this is the hot loop of the exporter).
#[inline]
fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Lower-case hex of `bytes`.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// What a span holds beyond [`SpanFields`], found in one pass.
#[derive(Debug, Default)]
struct SpanParts<'a> {
    trace_state: &'a [u8],
    attributes: bool,
    events: bool,
    links: bool,
}

impl<'a> SpanParts<'a> {
    fn of(span: &'a [u8]) -> Self {
        let mut parts = SpanParts::default();
        let mut reader = Cursor::new(span);
        while let Some(f) = reader.next_field() {
            match (f.number, f.value) {
                (3, Value::Len(state)) if parts.trace_state.is_empty() => parts.trace_state = state,
                (field::SPAN_ATTRIBUTES, Value::Len(_)) => parts.attributes = true,
                (field::SPAN_EVENTS, Value::Len(_)) => parts.events = true,
                (field::SPAN_LINKS, Value::Len(_)) => parts.links = true,
                _ => {}
            }
        }
        parts
    }
}

/// `SpanKind` as a word.
fn span_kind(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// `Status.code` as a word.
fn status_code(code: i32) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

/// The short name of a `SeverityNumber` range (`""` when unspecified).
fn severity_name(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
}

/// The encoded body `AnyValue` of a log record, when it has one.
fn log_body(record: &[u8]) -> Option<&[u8]> {
    first_len(record, 5)
}

/// Whether an encoded `AnyValue` holds a string (or nothing that is an object or array).
fn is_string(encoded: &[u8]) -> bool {
    string_of(encoded).is_some()
}

/// The string of an encoded `AnyValue`, when it is one.
fn string_of(encoded: &[u8]) -> Option<&str> {
    let mut last = None;
    let mut reader = Cursor::new(encoded);
    while let Some(f) = reader.next_field() {
        if (1..=8).contains(&f.number) {
            last = Some((f.number, f.value));
        }
    }
    match last {
        Some((1, Value::Len(s))) => std::str::from_utf8(s).ok(),
        _ => None,
    }
}

/// The length-delimited fields numbered `number` of `message`, in order.
fn repeated(message: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    let mut reader = Cursor::new(message);
    std::iter::from_fn(move || loop {
        let f = reader.next_field()?;
        if let (true, Value::Len(bytes)) = (f.number == number, f.value) {
            return Some(bytes);
        }
    })
}

/// `(key, encoded AnyValue)` of the repeated `KeyValue` field `number` of `message`
/// (an absent value reads as an empty `AnyValue`, written as `null`).
fn key_values(message: &[u8], number: u32) -> impl Iterator<Item = (&[u8], &[u8])> {
    repeated(message, number).map(|kv| {
        let mut key: &[u8] = &[];
        let mut value: &[u8] = &[];
        let mut reader = Cursor::new(kv);
        while let Some(f) = reader.next_field() {
            match (f.number, f.value) {
                (field::KEY_VALUE_KEY, Value::Len(k)) => key = k,
                (field::KEY_VALUE_VALUE, Value::Len(v)) => value = v,
                _ => {}
            }
        }
        (key, value)
    })
}

fn first_len(message: &[u8], number: u32) -> Option<&[u8]> {
    repeated(message, number).next()
}

fn first_str(message: &[u8], number: u32) -> &str {
    first_len(message, number)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

fn first_fixed64(message: &[u8], number: u32) -> u64 {
    let mut reader = Cursor::new(message);
    while let Some(f) = reader.next_field() {
        if let (true, Value::Fixed64(v)) = (f.number == number, f.value) {
            return v;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;
    use serde_json::json;

    use crate::model::{Batch, Signal};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(text: &str) -> any_value::Value {
        any_value::Value::StringValue(text.into())
    }

    fn typed_attributes() -> Vec<KeyValue> {
        vec![
            kv("http.method", s("GET")),
            kv("http.status_code", any_value::Value::IntValue(200)),
            kv("retry", any_value::Value::BoolValue(true)),
            kv("ratio", any_value::Value::DoubleValue(0.25)),
            kv("payload", any_value::Value::BytesValue(vec![1, 2, 3])),
            kv(
                "tags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a")),
                        },
                        AnyValue {
                            value: Some(any_value::Value::IntValue(7)),
                        },
                    ],
                }),
            ),
            kv(
                "user",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("id", any_value::Value::IntValue(42)),
                        kv(
                            "roles",
                            any_value::Value::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(s("admin")),
                                }],
                            }),
                        ),
                    ],
                }),
            ),
            // Repeated key: the first is kept.
            kv("http.method", s("POST")),
            kv("nan", any_value::Value::DoubleValue(f64::NAN)),
            KeyValue {
                key: "empty".into(),
                value: None,
                ..Default::default()
            },
        ]
    }

    fn expected_attributes() -> serde_json::Value {
        json!({
            "http.method": "GET",
            "http.status_code": 200,
            "retry": true,
            "ratio": 0.25,
            "payload": "AQID",
            "tags": ["a", 7],
            "user": {"id": 42, "roles": ["admin"]},
            "nan": null,
            "empty": null,
        })
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![
                kv("service.name", s("checkout")),
                kv("host.name", s("node-1")),
                kv("k8s.namespace.name", s("shop")),
            ],
            ..Default::default()
        })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: "io.shop.checkout".into(),
            version: "1.2.0".into(),
            ..Default::default()
        })
    }

    const T0: u64 = 1_700_000_000_000_000_000;

    fn span_batch() -> Batch {
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            parent_span_id: vec![9; 8],
            trace_state: "k=v".into(),
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: T0 + 1,
            end_time_unix_nano: T0 + 1_500_000_001,
            attributes: typed_attributes(),
            events: vec![Event {
                time_unix_nano: T0 + 1_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.type", s("Timeout"))],
                ..Default::default()
            }],
            links: vec![Link {
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Batch::decode(Signal::Traces, Bytes::from(request.encode_to_vec()))
            .unwrap()
            .batch
    }

    fn log_batch(body: any_value::Value) -> Batch {
        let record = LogRecord {
            time_unix_nano: T0,
            observed_time_unix_nano: T0 + 5,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue { value: Some(body) }),
            attributes: vec![
                kv("order.id", any_value::Value::IntValue(12)),
                kv("service.name", s("shadowed")),
            ],
            trace_id: vec![0x11; 16],
            span_id: vec![0x22; 8],
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: vec![record],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Batch::decode(Signal::Logs, Bytes::from(request.encode_to_vec()))
            .unwrap()
            .batch
    }

    fn parse(out: &[u8]) -> serde_json::Value {
        serde_json::from_slice(out).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(out));
        })
    }

    #[test]
    fn span_document_has_every_field_with_types() {
        let batch = span_batch();
        let span = batch.spans().next().unwrap();
        let mut out = Vec::new();
        DocumentWriter::new().span(&mut out, &span, &span.fields(), span.start_time_unix_nano());
        assert_eq!(
            parse(&out),
            json!({
                "@timestamp": "2023-11-14T22:13:20.000000001Z",
                "trace_id": "0102030405060708090a0b0c0d0e0f10",
                "span_id": "0102030405060708",
                "parent_span_id": "0909090909090909",
                "trace_state": "k=v",
                "name": "GET /cart",
                "kind": "server",
                "duration": 1_500_000_000u64,
                "status": {"code": "error", "message": "boom"},
                "attributes": expected_attributes(),
                "events": [{
                    "@timestamp": "2023-11-14T22:13:20.001Z",
                    "name": "exception",
                    "attributes": {"exception.type": "Timeout"},
                }],
                "links": [{
                    "trace_id": "abababababababababababababababab",
                    "span_id": "cdcdcdcdcdcdcdcd",
                }],
                "resource": {"attributes": {
                    "service.name": "checkout",
                    "host.name": "node-1",
                    "k8s.namespace.name": "shop",
                }},
                "scope": {"name": "io.shop.checkout", "version": "1.2.0"},
            })
        );
    }

    #[test]
    fn log_document_otel() {
        let batch = log_batch(s("payment \"declined\""));
        let record = batch.log_records().next().unwrap();
        let mut out = Vec::new();
        DocumentWriter::new().log_otel(&mut out, &record, T0);
        assert_eq!(
            parse(&out),
            json!({
                "@timestamp": "2023-11-14T22:13:20.000Z",
                "observed_timestamp": "2023-11-14T22:13:20.000000005Z",
                "severity_text": "ERROR",
                "severity_number": 17,
                "body": {"text": "payment \"declined\""},
                "trace_id": "11111111111111111111111111111111",
                "span_id": "2222222222222222",
                "attributes": {"order.id": 12, "service.name": "shadowed"},
                "resource": {"attributes": {
                    "service.name": "checkout",
                    "host.name": "node-1",
                    "k8s.namespace.name": "shop",
                }},
                "scope": {"name": "io.shop.checkout", "version": "1.2.0"},
            })
        );
        let map = any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("event", s("login")),
                kv("ok", any_value::Value::BoolValue(false)),
            ],
        });
        let batch = log_batch(map);
        let record = batch.log_records().next().unwrap();
        out.clear();
        DocumentWriter::new().log_otel(&mut out, &record, T0);
        assert_eq!(
            parse(&out)["body"],
            json!({"structured": {"event": "login", "ok": false}})
        );
    }

    #[test]
    fn log_document_ecs() {
        let batch = log_batch(s("payment declined"));
        let record = batch.log_records().next().unwrap();
        let mut out = Vec::new();
        DocumentWriter::new().log_ecs(&mut out, &record, T0);
        assert_eq!(
            parse(&out),
            json!({
                "@timestamp": "2023-11-14T22:13:20.000Z",
                "message": "payment declined",
                "log.level": "ERROR",
                "event.severity": 17,
                "event.created": "2023-11-14T22:13:20.000000005Z",
                "trace.id": "11111111111111111111111111111111",
                "span.id": "2222222222222222",
                "log.logger": "io.shop.checkout",
                "service.name": "checkout",
                "host.name": "node-1",
                "host.hostname": "node-1",
                "kubernetes.namespace": "shop",
                // The record's `service.name` loses to the resource's (first wins).
                "order.id": 12,
            })
        );
        let map = any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("event", s("login"))],
        });
        let batch = log_batch(map);
        let record = batch.log_records().next().unwrap();
        out.clear();
        DocumentWriter::new().log_ecs(&mut out, &record, T0);
        assert_eq!(parse(&out)["message"], json!("{\"event\":\"login\"}"));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for text in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n tab\t cr\r",
            "\u{1}\u{8}\u{c}\u{1f}",
            "é ü 日本 🎉",
            "",
        ] {
            let mut out = Vec::new();
            json_str(&mut out, text.as_bytes());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deep_values_stop_at_the_limit() {
        let mut value = s("leaf");
        for _ in 0..40 {
            value = any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(value) }],
            });
        }
        let encoded = AnyValue { value: Some(value) }.encode_to_vec();
        let mut out = Vec::new();
        DocumentWriter::new().any_value(&mut out, &encoded, 0);
        let parsed = parse(&out);
        assert!(!out.windows(4).any(|w| w == b"leaf"));
        assert!(parsed.is_array());
    }
}
