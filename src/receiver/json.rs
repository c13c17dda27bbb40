//! OTLP/JSON: a JSON request turned into the protobuf bytes of the same
//! `Export*ServiceRequest`, and responses written as JSON.
//!
//! Decoding uses the `opentelemetry-proto` serde types (feature `with-serde`)
//! after normalising what they do not accept themselves (checked in the
//! tests below): they read lowerCamelCase keys only, enums as numbers only,
//! and 32-bit integers as numbers only. The OTLP/JSON mapping also allows
//! snake_case keys (the proto field names), enum value names
//! (`"SPAN_KIND_SERVER"`) and integers written as strings, so those are
//! rewritten first. They already accept hex trace and span ids, base64
//! `bytesValue`, and 64-bit integers as numbers or strings.
//!
//! JSON is the slow path (a `serde_json::Value`, a prost message and an
//! encode per request); protobuf requests never come through here.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use prost::Message;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::RequestError;
use crate::model::Signal;

/// Decodes an OTLP/JSON request of `signal` into its protobuf encoding.
///
/// # Errors
/// [`RequestError::Json`] naming the offending field when the JSON is
/// malformed or does not follow the OTLP/JSON mapping (e.g. an invalid hex id).
pub fn to_protobuf(signal: Signal, body: &[u8]) -> Result<Bytes, RequestError> {
    let invalid = |message: String| RequestError::Json { signal, message };
    let mut value: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    normalize(&mut value).map_err(invalid)?;
    let encoded = match signal {
        Signal::Traces => encode::<ExportTraceServiceRequest>(value),
        Signal::Metrics => encode::<ExportMetricsServiceRequest>(value),
        Signal::Logs => encode::<ExportLogsServiceRequest>(value),
    }
    .map_err(invalid)?;
    Ok(Bytes::from(encoded))
}

fn encode<T: DeserializeOwned + Message>(value: Value) -> Result<Vec<u8>, String> {
    let request: T = serde_path_to_error::deserialize(value).map_err(|e| e.to_string())?;
    Ok(request.encode_to_vec())
}

/// Fields whose value is an enum: the value name is replaced by its number.
fn enum_number(key: &str, name: &str) -> Option<Option<i32>> {
    let number = match key {
        "kind" => SpanKind::from_str_name(name).map(|v| v as i32),
        "code" => StatusCode::from_str_name(name).map(|v| v as i32),
        "severityNumber" => SeverityNumber::from_str_name(name).map(|v| v as i32),
        "aggregationTemporality" => AggregationTemporality::from_str_name(name).map(|v| v as i32),
        _ => return None,
    };
    Some(number)
}

/// 32-bit integer fields, which the serde types only read as JSON numbers.
const INT32_FIELDS: &[&str] = &[
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
    "flags",
    "scale",
    "offset",
    "keyStrindex",
];

/// Rewrites `value` in place into the form the serde types read: keys in
/// lowerCamelCase, enum names as numbers, 32-bit integers in strings as numbers.
///
/// Every object key in an OTLP request is a field name (attribute keys are
/// values of a `key` field), so all keys can be renamed safely.
fn normalize(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(normalize),
        Value::Object(map) => normalize_object(map),
        _ => Ok(()),
    }
}

fn normalize_object(map: &mut Map<String, Value>) -> Result<(), String> {
    if map.keys().any(|k| k.contains('_')) {
        let old = std::mem::take(map);
        for (key, value) in old {
            let key = if key.contains('_') {
                lower_camel(&key)
            } else {
                key
            };
            map.insert(key, value);
        }
    }
    for (key, value) in map.iter_mut() {
        match value {
            Value::String(text) => {
                if let Some(number) = enum_number(key, text) {
                    let number = match number {
                        Some(n) => n,
                        None => text
                            .parse::<i32>()
                            .map_err(|_| format!("{key}: unknown enum value \"{text}\""))?,
                    };
                    *value = Value::from(number);
                } else if INT32_FIELDS.contains(&key.as_str()) {
                    let number: i64 = text
                        .parse()
                        .map_err(|_| format!("{key}: invalid integer \"{text}\""))?;
                    *value = Value::from(number);
                }
            }
            Value::Array(_) | Value::Object(_) => normalize(value)?,
            _ => {}
        }
    }
    Ok(())
}

/// `time_unix_nano` → `timeUnixNano`.
fn lower_camel(key: &str) -> String {
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

#[cfg(test)]
mod tests;
