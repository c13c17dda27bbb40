use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

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
fn camel_and_snake_case_decode_to_the_same_protobuf() {
    assert_eq!(traces_json(CAMEL).unwrap(), expected_trace());
    assert_eq!(traces_json(SNAKE).unwrap(), expected_trace());
    // And the validating walk accepts what was written.
    let bytes = to_protobuf(Signal::Traces, CAMEL.as_bytes()).unwrap();
    let decoded = crate::model::Batch::decode(Signal::Traces, bytes).unwrap();
    assert_eq!((decoded.batch.items(), decoded.rejected), (1, 0));
}

#[test]
fn invalid_hex_id_names_the_field() {
    let body = CAMEL.replace(
        "0102030405060708090a0b0c0d0e0f10",
        "zz02030405060708090a0b0c0d0e0f10",
    );
    let err = traces_json(&body).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "invalid JSON traces request: resourceSpans[0].scopeSpans[0].spans[0].traceId: \
             invalid character 'z' at position 0 at line "
        ),
        "{err}"
    );
}

#[test]
fn unknown_enum_name_is_refused() {
    let body = CAMEL.replace(r#""kind":2"#, r#""kind":"SPAN_KIND_SIDEWAYS""#);
    let err = traces_json(&body).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "invalid JSON traces request: resourceSpans[0].scopeSpans[0].spans[0].kind: \
             unknown enum value \"SPAN_KIND_SIDEWAYS\""
        ),
        "{err}"
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
    let decode = |json: &str| {
        ExportMetricsServiceRequest::decode(to_protobuf(Signal::Metrics, json.as_bytes()).unwrap())
            .unwrap()
    };
    assert_eq!(decode(camel), expected);
    assert_eq!(decode(snake), expected);
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
    let decode = |json: &str| {
        ExportLogsServiceRequest::decode(to_protobuf(Signal::Logs, json.as_bytes()).unwrap())
            .unwrap()
    };
    assert_eq!(decode(camel), expected);
    assert_eq!(decode(snake), expected);
}

#[test]
fn lower_camel_case() {
    use super::transcode::lower_camel;
    assert_eq!(lower_camel("time_unix_nano"), "timeUnixNano");
    assert_eq!(lower_camel("as_int"), "asInt");
    assert_eq!(lower_camel("_x"), "x");
    assert_eq!(lower_camel("name"), "name");
}

fn metrics_json(json: &str) -> Result<ExportMetricsServiceRequest, RequestError> {
    to_protobuf(Signal::Metrics, json.as_bytes())
        .map(|b| ExportMetricsServiceRequest::decode(b).unwrap())
}

#[test]
fn nan_infinity_and_numbers_in_strings_are_doubles() {
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"g","gauge":{"dataPoints":[{"asDouble":"NaN"},{"asDouble":"Infinity"},{"asDouble":"-Infinity"},{"asDouble":"2.5"}]}},
        {"name":"h","histogram":{"dataPoints":[{"count":"1","sum":"NaN","min":"-Infinity","max":"Infinity","explicitBounds":["1.5",2,"Infinity"]}]}}]}]}]}"#;
    let request = metrics_json(json).unwrap();
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let Some(metric::Data::Gauge(gauge)) = &metrics[0].data else {
        panic!("a gauge")
    };
    let values: Vec<f64> = gauge
        .data_points
        .iter()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            _ => panic!("a double"),
        })
        .collect();
    assert!(values[0].is_nan());
    assert_eq!(values[1..], [f64::INFINITY, f64::NEG_INFINITY, 2.5]);
    let Some(metric::Data::Histogram(histogram)) = &metrics[1].data else {
        panic!("a histogram")
    };
    let point = &histogram.data_points[0];
    assert!(point.sum.unwrap().is_nan());
    assert_eq!(point.min, Some(f64::NEG_INFINITY));
    assert_eq!(point.max, Some(f64::INFINITY));
    assert_eq!(point.explicit_bounds, [1.5, 2.0, f64::INFINITY]);
}

#[test]
fn a_word_that_is_not_a_number_is_refused_with_its_field() {
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asDouble":"lots"}]}}]}]}]}"#;
    let err = metrics_json(json).unwrap_err().to_string();
    assert!(
        err.contains("metrics[0].gauge.dataPoints[0].asDouble: invalid number \"lots\""),
        "{err}"
    );
}

#[test]
fn unknown_keys_and_nulls_are_skipped_and_bytes_are_base64() {
    let json = r#"{"resourceSpans":[{"future":{"deep":[1,{"x":null}]},"resource":null,"scopeSpans":[{"spans":[{
        "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","unknownField":"y",
        "attributes":[{"key":"b","value":{"bytesValue":"AAEC/w=="}},{"key":"u","value":{"bytesValue":"AAEC_w"}},
                      {"key":"i","value":{"intValue":0}},{"key":"n","value":{"intValue":"-3"}}]}]}]}]}"#;
    let request = traces_json(json).unwrap();
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert!(request.resource_spans[0].resource.is_none());
    let values: Vec<_> = span
        .attributes
        .iter()
        .map(|kv| kv.value.as_ref().unwrap().value.clone().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            any_value::Value::BytesValue(vec![0, 1, 2, 255]),
            any_value::Value::BytesValue(vec![0, 1, 2, 255]),
            // A zero written out keeps its oneof case.
            any_value::Value::IntValue(0),
            any_value::Value::IntValue(-3),
        ]
    );
}

#[test]
fn every_output_byte_is_reserved_in_the_budget() {
    let body = crate::testkit::trace_request(7, 512);
    let json = serde_json::to_vec(&body).unwrap();
    let budget = ItemBudget::new(u64::MAX);
    let (bytes, held) = to_protobuf_within(Signal::Traces, &json, &budget, usize::MAX).unwrap();
    assert!(
        held.items() >= bytes.len() as u64,
        "{} < {}",
        held.items(),
        bytes.len()
    );
    assert_eq!(budget.used(), held.items());
    assert!(ExportTraceServiceRequest::decode(bytes).unwrap() == body);
    drop(held);

    // A budget smaller than the output: refused retryably, nothing left held.
    let small = ItemBudget::new(100_000);
    let err = to_protobuf_within(Signal::Traces, &json, &small, usize::MAX).unwrap_err();
    assert!(matches!(err, RequestError::MemoryLimit { .. }), "{err}");
    assert_eq!(small.used(), 0);
    // An output over the limit: too large.
    let err = to_protobuf_within(Signal::Traces, &json, &budget, 50_000).unwrap_err();
    assert!(
        matches!(err, RequestError::DecompressedTooLarge { limit: 50_000 }),
        "{err}"
    );
}

#[test]
fn realistic_requests_round_trip_for_every_signal() {
    let traces = crate::testkit::trace_request(3, 300);
    let json = serde_json::to_vec(&traces).unwrap();
    let got =
        ExportTraceServiceRequest::decode(to_protobuf(Signal::Traces, &json).unwrap()).unwrap();
    assert!(got == traces, "traces differ after the round trip");
    let metrics = crate::testkit::metrics_request(3, 300);
    let json = serde_json::to_vec(&metrics).unwrap();
    let got = metrics_json(std::str::from_utf8(&json).unwrap()).unwrap();
    assert!(got == metrics, "metrics differ after the round trip");
    let logs = crate::testkit::logs_request(3, 300);
    let json = serde_json::to_vec(&logs).unwrap();
    let got = ExportLogsServiceRequest::decode(to_protobuf(Signal::Logs, &json).unwrap()).unwrap();
    assert!(got == logs, "logs differ after the round trip");
}
