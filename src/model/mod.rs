//! The in-memory form of telemetry: [`Batch`] (encoded, validated, lazily
//! read) and the wire-level tools that read and rebuild it.

pub mod batch;
pub mod context;
pub mod regroup;
pub mod rewrite;
pub mod schema;
pub mod signal;
pub mod view;
pub mod wire;

pub use batch::{Batch, DecodeError, Decoded};
pub use context::{Context, Envelope};
pub use signal::Signal;

/// Small trace payloads for unit tests inside the crate.
#[cfg(test)]
pub(crate) mod test_payload {
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// `spans` spans over two services, ids derived from `seed`.
    pub fn traces(seed: u64, spans: usize) -> Bytes {
        let resource = |service: &str| Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let span = |i: usize| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.to_be_bytes());
            trace_id[15] = (i / 8) as u8 + 1;
            let mut span_id = [0u8; 8];
            span_id[..4].copy_from_slice(&(i as u32 + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                name: format!("op-{i}"),
                kind: 2,
                start_time_unix_nano: 1_000 + i as u64,
                end_time_unix_nano: 2_000 + i as u64,
                ..Default::default()
            }
        };
        let half = spans / 2;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource("checkout")),
                    scope_spans: vec![ScopeSpans {
                        spans: (0..half).map(span).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    resource: Some(resource("payment")),
                    scope_spans: vec![ScopeSpans {
                        spans: (half..spans).map(span).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        Bytes::from(request.encode_to_vec())
    }
}
