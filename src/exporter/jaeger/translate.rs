//! OTLP traces → Jaeger `api_v2` batches, as the Collector's own translator
//! does (opentelemetry-collector-contrib `pkg/translator/jaeger`,
//! `traces_to_jaegerproto.go`):
//!
//! - one [`Batch`] per resource; its [`Process`]: `service.name` → `service_name`
//!   (`OTLPResourceNoServiceName` for a resource without attributes), the other
//!   resource attributes → `tags`;
//! - span tags, in this order: `otel.scope.name` / `otel.scope.version` (the
//!   translator's names since semconv 1.16; `otel.library.*` is the older
//!   spelling), the attributes, `span.kind`, `otel.status_code`, `error = true`,
//!   `otel.status_description`, `w3c.tracestate`;
//! - references: the parent first as `CHILD_OF` (same trace id), then each link
//!   as `FOLLOWS_FROM` (or `CHILD_OF` when its `opentracing.ref_type` says
//!   `child_of`); a link to the parent itself only changes the parent's type;
//! - events → logs: `event` = the name (unless an attribute is named so), then
//!   the attributes;
//! - attribute types → typed tags; arrays and maps as JSON strings.
//!
//! Besides the translator: `flags` carries the span's W3C trace flags (bit 0,
//! sampled, is Jaeger's sampled flag too), and resources without spans are
//! left out (a `PostSpans` call with nothing in it).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue as OtlpKeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;

use super::proto::{Batch, KeyValue, Log, Process, Span, SpanRef, SpanRefType, ValueType};

/// The service name of a resource without attributes (the translator's).
pub const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

const SERVICE_NAME: &str = "service.name";
const SCOPE_NAME: &str = "otel.scope.name";
const SCOPE_VERSION: &str = "otel.scope.version";
const SPAN_KIND: &str = "span.kind";
const STATUS_CODE: &str = "otel.status_code";
const STATUS_DESCRIPTION: &str = "otel.status_description";
const ERROR: &str = "error";
const TRACE_STATE: &str = "w3c.tracestate";
const EVENT: &str = "event";
const REF_TYPE: &str = "opentracing.ref_type";
const REF_TYPE_CHILD_OF: &str = "child_of";

/// W3C trace flags in OTLP's `Span.flags` (the low byte).
const TRACE_FLAGS_MASK: u32 = 0xff;

/// Every resource with spans as one Jaeger batch, with its span count.
pub fn batches(request: ExportTraceServiceRequest) -> Vec<(Batch, u64)> {
    let mut out = Vec::with_capacity(request.resource_spans.len());
    for resource_spans in request.resource_spans {
        let mut spans = Vec::new();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            spans.extend(scope_spans.spans.into_iter().map(|s| span(s, scope)));
        }
        if spans.is_empty() {
            continue;
        }
        let process = process(resource_spans.resource);
        let count = spans.len() as u64;
        out.push((
            Batch {
                spans,
                process: Some(process),
            },
            count,
        ));
    }
    out
}

/// The resource as a Jaeger process.
pub fn process(resource: Option<Resource>) -> Process {
    let attributes = resource.map_or_else(Vec::new, |r| r.attributes);
    if attributes.is_empty() {
        return Process {
            service_name: NO_SERVICE_NAME.to_owned(),
            tags: Vec::new(),
        };
    }
    let mut service_name = String::new();
    let mut tags = Vec::with_capacity(attributes.len());
    for attribute in attributes {
        if attribute.key == SERVICE_NAME {
            // As pdata's `Str()`: a non-string service.name reads as "".
            if let Some(Value::StringValue(name)) = attribute.value.and_then(|v| v.value) {
                service_name = name;
            }
        } else {
            tags.push(tag(attribute.key, attribute.value));
        }
    }
    Process { service_name, tags }
}

/// One span, its scope's name and version as tags.
pub fn span(mut span: OtlpSpan, scope: Option<&InstrumentationScope>) -> Span {
    let references = references(&span.trace_id, &span.parent_span_id, &span.links);
    let tags = span_tags(&mut span, scope);
    let logs = std::mem::take(&mut span.events)
        .into_iter()
        .map(log)
        .collect();
    let start = span.start_time_unix_nano;
    Span {
        trace_id: span.trace_id,
        span_id: span.span_id,
        operation_name: span.name,
        references,
        flags: span.flags & TRACE_FLAGS_MASK,
        start_time: Some(timestamp(start)),
        duration: Some(duration(start, span.end_time_unix_nano)),
        tags,
        logs,
        process: None,
        process_id: String::new(),
        warnings: Vec::new(),
    }
}

/// The span's tags; its attributes, status message and trace state are moved out.
fn span_tags(span: &mut OtlpSpan, scope: Option<&InstrumentationScope>) -> Vec<KeyValue> {
    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.push(string_tag(SCOPE_NAME, &scope.name));
        }
        if !scope.version.is_empty() {
            tags.push(string_tag(SCOPE_VERSION, &scope.version));
        }
    }
    tags.extend(attribute_tags(std::mem::take(&mut span.attributes)));
    let kind = match SpanKind::try_from(span.kind) {
        Ok(SpanKind::Client) => Some("client"),
        Ok(SpanKind::Server) => Some("server"),
        Ok(SpanKind::Producer) => Some("producer"),
        Ok(SpanKind::Consumer) => Some("consumer"),
        Ok(SpanKind::Internal) => Some("internal"),
        Ok(SpanKind::Unspecified) | Err(_) => None,
    };
    if let Some(kind) = kind {
        tags.push(string_tag(SPAN_KIND, kind));
    }
    if let Some(status) = span.status.take() {
        match StatusCode::try_from(status.code) {
            Ok(StatusCode::Error) => {
                tags.push(string_tag(STATUS_CODE, "ERROR"));
                tags.push(KeyValue {
                    key: ERROR.to_owned(),
                    v_type: ValueType::Bool as i32,
                    v_bool: true,
                    ..KeyValue::default()
                });
            }
            Ok(StatusCode::Ok) => tags.push(string_tag(STATUS_CODE, "OK")),
            Ok(StatusCode::Unset) | Err(_) => {}
        }
        if !status.message.is_empty() {
            tags.push(owned_string_tag(STATUS_DESCRIPTION, status.message));
        }
    }
    if !span.trace_state.is_empty() {
        tags.push(owned_string_tag(
            TRACE_STATE,
            std::mem::take(&mut span.trace_state),
        ));
    }
    tags
}

/// The parent (`CHILD_OF`) first, then the links.
fn references(trace_id: &[u8], parent: &[u8], links: &[Link]) -> Vec<SpanRef> {
    let has_parent = parent.iter().any(|b| *b != 0);
    let mut refs = Vec::with_capacity(links.len() + usize::from(has_parent));
    if has_parent {
        refs.push(SpanRef {
            trace_id: trace_id.to_vec(),
            span_id: parent.to_vec(),
            ref_type: SpanRefType::ChildOf as i32,
        });
    }
    for link in links {
        let child_of = link.attributes.iter().any(|a| {
            a.key == REF_TYPE
                && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(Value::StringValue(t)) if t == REF_TYPE_CHILD_OF)
        });
        let ref_type = if child_of {
            SpanRefType::ChildOf
        } else {
            SpanRefType::FollowsFrom
        } as i32;
        if has_parent && link.trace_id == trace_id && link.span_id == parent {
            // Already referenced as the parent: the link only says how.
            refs[0].ref_type = ref_type;
            continue;
        }
        refs.push(SpanRef {
            trace_id: link.trace_id.clone(),
            span_id: link.span_id.clone(),
            ref_type,
        });
    }
    refs
}

fn log(event: Event) -> Log {
    let mut fields = Vec::with_capacity(event.attributes.len() + 1);
    if !event.name.is_empty() && !event.attributes.iter().any(|a| a.key == EVENT) {
        fields.push(owned_string_tag(EVENT, event.name));
    }
    fields.extend(attribute_tags(event.attributes));
    Log {
        timestamp: Some(timestamp(event.time_unix_nano)),
        fields,
    }
}

fn attribute_tags(attributes: Vec<OtlpKeyValue>) -> impl Iterator<Item = KeyValue> {
    attributes.into_iter().map(|a| tag(a.key, a.value))
}

fn string_tag(key: &str, value: &str) -> KeyValue {
    owned_string_tag(key, value.to_owned())
}

fn owned_string_tag(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        v_type: ValueType::String as i32,
        v_str: value,
        ..KeyValue::default()
    }
}

/// One attribute as a typed tag; an empty value is an empty string.
pub fn tag(key: String, value: Option<AnyValue>) -> KeyValue {
    let mut tag = KeyValue {
        key,
        ..KeyValue::default()
    };
    match value.and_then(|v| v.value) {
        Some(Value::StringValue(s)) => tag.v_str = s,
        Some(Value::BoolValue(b)) => {
            tag.v_type = ValueType::Bool as i32;
            tag.v_bool = b;
        }
        Some(Value::IntValue(i)) => {
            tag.v_type = ValueType::Int64 as i32;
            tag.v_int64 = i;
        }
        Some(Value::DoubleValue(d)) => {
            tag.v_type = ValueType::Float64 as i32;
            tag.v_float64 = d;
        }
        Some(Value::BytesValue(b)) => {
            tag.v_type = ValueType::Binary as i32;
            tag.v_binary = b;
        }
        Some(value @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            tag.v_str = json(Some(&value)).to_string();
        }
        // A string-table index is for profiles only; nothing to resolve it against here.
        Some(Value::StringValueStrindex(_)) | None => {}
    }
    tag
}

/// A value as pdata's `AsRaw` renders it to JSON: bytes as base64, a
/// non-finite double as `null` (JSON has no NaN).
fn json(value: Option<&Value>) -> serde_json::Value {
    use base64::Engine as _;
    use serde_json::Value as Json;
    match value {
        None | Some(Value::StringValueStrindex(_)) => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number)
        }
        Some(Value::BytesValue(b)) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(array)) => Json::Array(
            array
                .values
                .iter()
                .map(|v| json(v.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(list)) => Json::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

fn timestamp(unix_nanos: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(unix_nanos / 1_000_000_000).unwrap_or(i64::MAX),
        // Below 10⁹: fits.
        nanos: (unix_nanos % 1_000_000_000) as i32,
    }
}

/// `end - start`, negative when the span ends before it starts (as Go's `Sub`).
fn duration(start: u64, end: u64) -> prost_types::Duration {
    let nanos = i128::from(end) - i128::from(start);
    prost_types::Duration {
        seconds: (nanos / 1_000_000_000) as i64,
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

#[cfg(test)]
mod tests;
