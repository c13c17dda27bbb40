use super::*;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

fn traces_json(body: &str) -> Result<ExportTraceServiceRequest, RequestError> {
    to_protobuf(Signal::Traces, body.as_bytes())
        .map(|b| ExportTraceServiceRequest::decode(b).unwrap())
}

fn expected_trace() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: (1..=16).collect(),
                    span_id: (1..=8).collect(),
                    parent_span_id: vec![9; 8],
                    name: "GET /".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_500_000_000,
                    attributes: vec![KeyValue {
                        key: "http.status_code".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(500)),
                        }),
                        ..Default::default()
                    }],
                    dropped_attributes_count: 2,
                    status: Some(Status {
                        code: StatusCode::Error as i32,
                        message: "boom".into(),
                    }),
                    ..Default::default()
                }],
                schema_url: "https://s".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const CAMEL: &str = r#"{"resourceSpans":[{"scopeSpans":[{"schemaUrl":"https://s","spans":[{
    "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","parentSpanId":"0909090909090909",
    "name":"GET /","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000500000000,
    "attributes":[{"key":"http.status_code","value":{"intValue":"500"}}],"droppedAttributesCount":2,
    "status":{"code":2,"message":"boom"}}]}]}]}"#;

const SNAKE: &str = r#"{"resource_spans":[{"scope_spans":[{"schema_url":"https://s","spans":[{
    "trace_id":"0102030405060708090A0B0C0D0E0F10","span_id":"0102030405060708","parent_span_id":"0909090909090909",
    "name":"GET /","kind":"SPAN_KIND_SERVER","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":"1700000000500000000",
    "attributes":[{"key":"http.status_code","value":{"int_value":500}}],"dropped_attributes_count":"2",
    "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;

#[test]
fn library_serde_needs_the_normalization() {
    // What the opentelemetry-proto serde types read without help: snake_case
    // keys are silently ignored (an empty request), enum names are refused.
    let raw: ExportTraceServiceRequest = serde_json::from_str(SNAKE).unwrap();
    assert!(raw.resource_spans.is_empty());
    let named = CAMEL.replace(r#""kind":2"#, r#""kind":"SPAN_KIND_SERVER""#);
    assert!(serde_json::from_str::<ExportTraceServiceRequest>(&named).is_err());
    // …but camelCase, hex ids and 64-bit integers as strings they read.
    let camel: ExportTraceServiceRequest = serde_json::from_str(CAMEL).unwrap();
    assert_eq!(camel, expected_trace());
}

#[test]
fn camel_and_snake_case_decode_to_the_same_protobuf() {
    let expected = Bytes::from(expected_trace().encode_to_vec());
    assert_eq!(
        to_protobuf(Signal::Traces, CAMEL.as_bytes()).unwrap(),
        expected
    );
    assert_eq!(
        to_protobuf(Signal::Traces, SNAKE.as_bytes()).unwrap(),
        expected
    );
}

#[test]
fn invalid_hex_id_names_the_field() {
    let body = CAMEL.replace(
        "0102030405060708090a0b0c0d0e0f10",
        "zz02030405060708090a0b0c0d0e0f10",
    );
    let err = traces_json(&body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid JSON traces request: resourceSpans[0].scopeSpans[0].spans[0].traceId: \
         invalid character 'z' at position 0"
    );
}

#[test]
fn unknown_enum_name_is_refused() {
    let body = CAMEL.replace(r#""kind":2"#, r#""kind":"SPAN_KIND_SIDEWAYS""#);
    assert_eq!(
        traces_json(&body).unwrap_err().to_string(),
        "invalid JSON traces request: kind: unknown enum value \"SPAN_KIND_SIDEWAYS\""
    );
}

#[test]
fn malformed_json_is_refused_with_position() {
    let err = traces_json("{\"resourceSpans\":[").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid JSON traces request: EOF while parsing a list at line 1 column 18"
    );
}

#[test]
fn metrics_in_both_spellings() {
    let point = |v| NumberDataPoint {
        time_unix_nano: 5,
        value: Some(v),
        ..Default::default()
    };
    let expected = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "g".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point(number_data_point::Value::AsInt(-7))],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "s".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(number_data_point::Value::AsDouble(1.5))],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "h".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                count: 3,
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![10.0],
                                sum: Some(12.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "e".into(),
                        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                count: 1,
                                scale: -2,
                                zero_count: 1,
                                ..Default::default()
                            }],
                            aggregation_temporality: 0,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let camel = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"5","asInt":"-7"}]}},
        {"name":"s","sum":{"dataPoints":[{"timeUnixNano":5,"asDouble":1.5}],"aggregationTemporality":2,"isMonotonic":true}},
        {"name":"h","histogram":{"dataPoints":[{"count":"3","bucketCounts":["1",2],"explicitBounds":[10],"sum":12}],"aggregationTemporality":1}},
        {"name":"e","exponentialHistogram":{"dataPoints":[{"count":1,"scale":-2,"zeroCount":"1"}]}}]}]}]}"#;
    let snake = r#"{"resource_metrics":[{"scope_metrics":[{"metrics":[
        {"name":"g","gauge":{"data_points":[{"time_unix_nano":"5","as_int":-7}]}},
        {"name":"s","sum":{"data_points":[{"time_unix_nano":5,"as_double":1.5}],"aggregation_temporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","is_monotonic":true}},
        {"name":"h","histogram":{"data_points":[{"count":3,"bucket_counts":[1,"2"],"explicit_bounds":[10.0],"sum":12}],"aggregation_temporality":"AGGREGATION_TEMPORALITY_DELTA"}},
        {"name":"e","exponential_histogram":{"data_points":[{"count":"1","scale":"-2","zero_count":1}]}}]}]}]}"#;
    let want = Bytes::from(expected.encode_to_vec());
    assert_eq!(
        to_protobuf(Signal::Metrics, camel.as_bytes()).unwrap(),
        want
    );
    assert_eq!(
        to_protobuf(Signal::Metrics, snake.as_bytes()).unwrap(),
        want
    );
}

#[test]
fn logs_in_both_spellings() {
    let expected = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1,
                    observed_time_unix_nano: 2,
                    severity_number: SeverityNumber::Info as i32,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("hello".into())),
                    }),
                    trace_id: vec![0xab; 16],
                    span_id: vec![0xcd; 8],
                    flags: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let camel = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","observedTimeUnixNano":"2",
        "severityNumber":9,"severityText":"INFO","body":{"stringValue":"hello"},
        "traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","flags":1}]}]}]}"#;
    let snake = r#"{"resource_logs":[{"scope_logs":[{"log_records":[{"time_unix_nano":1,"observed_time_unix_nano":"2",
        "severity_number":"SEVERITY_NUMBER_INFO","severity_text":"INFO","body":{"string_value":"hello"},
        "trace_id":"ABABABABABABABABABABABABABABABAB","span_id":"cdcdcdcdcdcdcdcd","flags":"1"}]}]}]}"#;
    let want = Bytes::from(expected.encode_to_vec());
    assert_eq!(to_protobuf(Signal::Logs, camel.as_bytes()).unwrap(), want);
    assert_eq!(to_protobuf(Signal::Logs, snake.as_bytes()).unwrap(), want);
}

#[test]
fn lower_camel_case() {
    assert_eq!(lower_camel("time_unix_nano"), "timeUnixNano");
    assert_eq!(lower_camel("as_int"), "asInt");
    assert_eq!(lower_camel("_x"), "x");
    assert_eq!(lower_camel("name"), "name");
}
