use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

use super::*;

fn value(v: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: Value) -> OtlpKeyValue {
    OtlpKeyValue {
        key: key.to_owned(),
        value: value(v),
        ..OtlpKeyValue::default()
    }
}

fn s(text: &str) -> Value {
    Value::StringValue(text.to_owned())
}

const TRACE: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const SPAN: [u8; 8] = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8];
const PARENT: [u8; 8] = [0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8];

fn otlp_span() -> OtlpSpan {
    OtlpSpan {
        trace_id: TRACE.to_vec(),
        span_id: SPAN.to_vec(),
        parent_span_id: PARENT.to_vec(),
        name: "GET /orders".to_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_002_223_456_790,
        flags: 0x301,
        trace_state: "vendor=a".to_owned(),
        attributes: vec![kv("http.route", s("/orders"))],
        ..OtlpSpan::default()
    }
}

fn string_kv(key: &str, text: &str) -> KeyValue {
    string_tag(key, text)
}

#[test]
fn attribute_types_become_typed_tags() {
    let t = tag("s".to_owned(), value(s("x")));
    assert_eq!(
        (t.v_type, t.v_str.as_str()),
        (ValueType::String as i32, "x")
    );
    let t = tag("b".to_owned(), value(Value::BoolValue(true)));
    assert_eq!((t.v_type, t.v_bool), (ValueType::Bool as i32, true));
    let t = tag("i".to_owned(), value(Value::IntValue(-42)));
    assert_eq!((t.v_type, t.v_int64), (ValueType::Int64 as i32, -42));
    let t = tag("d".to_owned(), value(Value::DoubleValue(2.5)));
    assert_eq!((t.v_type, t.v_float64), (ValueType::Float64 as i32, 2.5));
    let t = tag("y".to_owned(), value(Value::BytesValue(vec![0, 255])));
    assert_eq!(
        (t.v_type, t.v_binary),
        (ValueType::Binary as i32, vec![0, 255])
    );
    let array = Value::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(Value::IntValue(1)),
            },
            AnyValue {
                value: Some(s("a")),
            },
            AnyValue {
                value: Some(Value::BoolValue(false)),
            },
        ],
    });
    let t = tag("a".to_owned(), value(array));
    assert_eq!(
        (t.v_type, t.v_str.as_str()),
        (ValueType::String as i32, r#"[1,"a",false]"#)
    );
    let map = Value::KvlistValue(KeyValueList {
        values: vec![
            kv("z", Value::IntValue(3)),
            kv("k", Value::BytesValue(vec![1, 2, 3])),
        ],
    });
    let t = tag("m".to_owned(), value(map));
    assert_eq!(t.v_str, r#"{"k":"AQID","z":3}"#);
    let t = tag("e".to_owned(), None);
    assert_eq!((t.v_type, t.v_str.as_str()), (ValueType::String as i32, ""));
}

#[test]
fn resource_becomes_process() {
    let resource = Resource {
        attributes: vec![
            kv("host.name", s("h1")),
            kv(SERVICE_NAME, s("checkout")),
            kv("pid", Value::IntValue(7)),
        ],
        ..Resource::default()
    };
    let named = process(Some(resource));
    assert_eq!(named.service_name, "checkout");
    assert_eq!(
        named.tags,
        vec![
            string_kv("host.name", "h1"),
            tag("pid".to_owned(), value(Value::IntValue(7)))
        ]
    );
    let empty = process_of_none();
    assert_eq!(empty.service_name, NO_SERVICE_NAME);
    assert!(empty.tags.is_empty());
    let unnamed = process(Some(Resource {
        attributes: vec![kv("host.name", s("h1"))],
        ..Resource::default()
    }));
    assert_eq!(unnamed.service_name, "");
    assert_eq!(unnamed.tags.len(), 1);
}

fn process_of_none() -> Process {
    process(None)
}

#[test]
fn span_fields_ids_times_and_tag_order() {
    let scope = InstrumentationScope {
        name: "io.opentelemetry.http".to_owned(),
        version: "1.2.3".to_owned(),
        ..InstrumentationScope::default()
    };
    let mut otlp = otlp_span();
    otlp.status = Some(Status {
        code: StatusCode::Error as i32,
        message: "boom".to_owned(),
    });
    let span = span(otlp, Some(&scope));
    assert_eq!(span.trace_id, TRACE);
    assert_eq!(span.span_id, SPAN);
    assert_eq!(span.operation_name, "GET /orders");
    assert_eq!(span.flags, 0x01);
    assert_eq!(
        span.start_time,
        Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789
        })
    );
    assert_eq!(
        span.duration,
        Some(prost_types::Duration {
            seconds: 2,
            nanos: 100_000_001
        })
    );
    let error = KeyValue {
        key: "error".to_owned(),
        v_type: ValueType::Bool as i32,
        v_bool: true,
        ..KeyValue::default()
    };
    assert_eq!(
        span.tags,
        vec![
            string_kv("otel.scope.name", "io.opentelemetry.http"),
            string_kv("otel.scope.version", "1.2.3"),
            string_kv("http.route", "/orders"),
            string_kv("span.kind", "server"),
            string_kv("otel.status_code", "ERROR"),
            error,
            string_kv("otel.status_description", "boom"),
            string_kv("w3c.tracestate", "vendor=a"),
        ]
    );
    assert!(span.process.is_none() && span.process_id.is_empty());
}

#[test]
fn kinds_and_statuses() {
    for (kind, want) in [
        (SpanKind::Client, Some("client")),
        (SpanKind::Server, Some("server")),
        (SpanKind::Producer, Some("producer")),
        (SpanKind::Consumer, Some("consumer")),
        (SpanKind::Internal, Some("internal")),
        (SpanKind::Unspecified, None),
    ] {
        let mut otlp = otlp_span();
        otlp.kind = kind as i32;
        let tags = span(otlp, None).tags;
        let found = tags
            .iter()
            .find(|t| t.key == "span.kind")
            .map(|t| t.v_str.as_str());
        assert_eq!(found, want, "{kind:?}");
    }
    let mut otlp = otlp_span();
    otlp.status = Some(Status {
        code: StatusCode::Ok as i32,
        message: String::new(),
    });
    let tags = span(otlp, None).tags;
    assert!(tags.contains(&string_kv("otel.status_code", "OK")));
    assert!(!tags
        .iter()
        .any(|t| t.key == "error" || t.key == "otel.status_description"));
    let mut otlp = otlp_span();
    otlp.status = Some(Status::default());
    let tags = span(otlp, None).tags;
    assert!(!tags.iter().any(|t| t.key == "otel.status_code"));
}

#[test]
fn parent_and_links_become_references() {
    let other_trace = [9u8; 16];
    let mut otlp = otlp_span();
    otlp.links = vec![
        Link {
            trace_id: other_trace.to_vec(),
            span_id: vec![2; 8],
            ..Link::default()
        },
        Link {
            trace_id: TRACE.to_vec(),
            span_id: vec![3; 8],
            attributes: vec![kv("opentracing.ref_type", s("child_of"))],
            ..Link::default()
        },
    ];
    let refs = span(otlp, None).references;
    assert_eq!(
        refs,
        vec![
            SpanRef {
                trace_id: TRACE.to_vec(),
                span_id: PARENT.to_vec(),
                ref_type: SpanRefType::ChildOf as i32
            },
            SpanRef {
                trace_id: other_trace.to_vec(),
                span_id: vec![2; 8],
                ref_type: SpanRefType::FollowsFrom as i32
            },
            SpanRef {
                trace_id: TRACE.to_vec(),
                span_id: vec![3; 8],
                ref_type: SpanRefType::ChildOf as i32
            },
        ]
    );
    // A root span has no CHILD_OF; a link to the parent only changes its type.
    let mut root = otlp_span();
    root.parent_span_id = Vec::new();
    assert!(span(root, None).references.is_empty());
    let mut otlp = otlp_span();
    otlp.links = vec![Link {
        trace_id: TRACE.to_vec(),
        span_id: PARENT.to_vec(),
        ..Link::default()
    }];
    let refs = span(otlp, None).references;
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].ref_type, SpanRefType::FollowsFrom as i32);
}

#[test]
fn events_become_logs() {
    let mut otlp = otlp_span();
    otlp.events = vec![
        Event {
            time_unix_nano: 1_700_000_001_000_000_005,
            name: "retry".to_owned(),
            attributes: vec![kv("attempt", Value::IntValue(2))],
            ..Event::default()
        },
        Event {
            time_unix_nano: 1_700_000_001_500_000_000,
            name: "ignored".to_owned(),
            attributes: vec![kv("event", s("exception"))],
            ..Event::default()
        },
    ];
    let logs = span(otlp, None).logs;
    assert_eq!(
        logs,
        vec![
            Log {
                timestamp: Some(prost_types::Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 5
                }),
                fields: vec![
                    string_kv("event", "retry"),
                    tag("attempt".to_owned(), value(Value::IntValue(2)))
                ],
            },
            Log {
                timestamp: Some(prost_types::Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 500_000_000
                }),
                fields: vec![string_kv("event", "exception")],
            },
        ]
    );
}

#[test]
fn one_batch_per_resource_with_spans() {
    let resource = |name: &str| Resource {
        attributes: vec![kv(SERVICE_NAME, s(name))],
        ..Resource::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource("a")),
                scope_spans: vec![
                    ScopeSpans {
                        spans: vec![otlp_span(), otlp_span()],
                        ..ScopeSpans::default()
                    },
                    ScopeSpans {
                        spans: vec![otlp_span()],
                        ..ScopeSpans::default()
                    },
                ],
                ..ResourceSpans::default()
            },
            ResourceSpans {
                resource: Some(resource("empty")),
                ..ResourceSpans::default()
            },
            ResourceSpans {
                resource: Some(resource("b")),
                scope_spans: vec![ScopeSpans {
                    spans: vec![otlp_span()],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            },
        ],
    };
    let out = batches(request);
    let summary: Vec<_> = out
        .iter()
        .map(|(b, n)| {
            (
                b.process.as_ref().unwrap().service_name.as_str(),
                b.spans.len(),
                *n,
            )
        })
        .collect();
    assert_eq!(summary, [("a", 3, 3), ("b", 1, 1)]);
}

#[test]
fn negative_duration_keeps_one_sign() {
    let d = duration(2_000_000_000, 500_000_000);
    assert_eq!((d.seconds, d.nanos), (-1, -500_000_000));
}
