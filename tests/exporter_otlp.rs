//! The OTLP exporter against the fake backend: what arrives, and how each
//! answer is classified.

mod support;

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otlp_gateway::exporter::otlp::config::OtlpExporterConfig;
use otlp_gateway::exporter::otlp::OtlpExporter;
use otlp_gateway::exporter::{ExportError, ExportOutcome};
use otlp_gateway::model::{Batch, Signal};
use otlp_gateway::queue::config::RetryConfig;
use otlp_gateway::queue::retry::RetryPolicy;
use prost::Message;
use tokio_util::sync::CancellationToken;

use support::fake_otlp::{Code, Failure, FakeOtlp, Payload, Transport};

const PROTOCOLS: [&str; 2] = ["grpc", "http_protobuf"];

// --- payloads ---

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "test-lib".into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

fn traces() -> ExportTraceServiceRequest {
    let spans = |service: &str, first: u8| ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            scope: scope(),
            spans: (first..first + 3)
                .map(|n| Span {
                    trace_id: vec![n; 16],
                    span_id: vec![n; 8],
                    name: format!("GET /orders/{n}"),
                    start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n),
                    end_time_unix_nano: 1_700_000_000_500_000_000 + u64::from(n),
                    attributes: vec![KeyValue {
                        key: "http.status_code".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(200)),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![spans("checkout", 1), spans("payments", 10)],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let point = |v: f64| NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    Metric {
                        name: "queue.depth".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point(1.0), point(2.0)],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "requests".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(10.0)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("checkout"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: (0..4)
                    .map(|n| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + n,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("order {n} placed"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn payload(signal: Signal) -> Payload {
    match signal {
        Signal::Traces => Payload::Traces(traces()),
        Signal::Metrics => Payload::Metrics(metrics()),
        Signal::Logs => Payload::Logs(logs()),
    }
}

fn batch_of(payload: &Payload) -> Batch {
    Batch::decode(payload.signal(), Bytes::from(payload.encode_to_vec()))
        .expect("valid request")
        .batch
}

// --- exporters ---

/// An exporter from config lines; `compression` is `"none"` unless `extra_toml` sets it.
fn exporter_with(endpoint: &str, protocol: &str, extra_toml: &str) -> OtlpExporter {
    let compression = if extra_toml.contains("compression") {
        ""
    } else {
        "compression = \"none\""
    };
    let toml = format!(
        "endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\n{compression}\n{extra_toml}"
    );
    let config: OtlpExporterConfig = toml::from_str(&toml).expect("exporter config");
    OtlpExporter::build("test", &config).expect("exporter builds")
}

fn exporter(fake: &FakeOtlp, protocol: &str, extra_toml: &str) -> OtlpExporter {
    let endpoint = match protocol {
        "grpc" => fake.grpc_url(),
        _ => fake.http_url(),
    };
    exporter_with(&endpoint, protocol, extra_toml)
}

fn transport(protocol: &str) -> Transport {
    match protocol {
        "grpc" => Transport::Grpc,
        _ => Transport::Http,
    }
}

async fn export_traces(exporter: &OtlpExporter) -> Result<ExportOutcome, ExportError> {
    exporter.export(&batch_of(&Payload::Traces(traces()))).await
}

// --- delivery ---

#[tokio::test]
async fn every_signal_arrives_unchanged_over_both_protocols() {
    let fake = FakeOtlp::start().await;
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "");
        for signal in Signal::ALL {
            let sent = payload(signal);
            let outcome = exporter
                .export(&batch_of(&sent))
                .await
                .expect("export succeeds");
            assert_eq!(outcome, ExportOutcome::default());
            let received = fake.next_request().await;
            assert_eq!(received.transport, transport(protocol));
            assert_eq!(received.signal, signal);
            assert_eq!(received.payload, sent, "{protocol} {signal}");
        }
    }
}

#[tokio::test]
async fn appended_batches_arrive_as_one_request() {
    let fake = FakeOtlp::start().await;
    let first = traces();
    let mut second = traces();
    second.resource_spans[0].scope_spans[0].spans[0].name = "second".into();
    let mut batch = batch_of(&Payload::Traces(first.clone()));
    batch.append(batch_of(&Payload::Traces(second.clone())));
    assert!(batch.segments().len() > 1);
    let mut expected = first;
    expected.resource_spans.extend(second.resource_spans);

    for protocol in PROTOCOLS {
        exporter(&fake, protocol, "")
            .export(&batch)
            .await
            .expect("export succeeds");
        assert_eq!(
            fake.next_request().await.payload,
            Payload::Traces(expected.clone())
        );
    }
}

#[tokio::test]
async fn compressed_requests_announce_their_encoding() {
    let fake = FakeOtlp::start().await;
    for protocol in PROTOCOLS {
        for compression in ["gzip", "zstd"] {
            let exporter = exporter(&fake, protocol, &format!("compression = \"{compression}\""));
            for signal in Signal::ALL {
                exporter
                    .export(&batch_of(&payload(signal)))
                    .await
                    .expect("export succeeds");
                let received = fake.next_request().await;
                let header = if protocol == "grpc" {
                    "grpc-encoding"
                } else {
                    "content-encoding"
                };
                assert_eq!(received.header(header), Some(compression), "{protocol}");
                assert_eq!(
                    received.payload,
                    payload(signal),
                    "{protocol} {compression}"
                );
            }
        }
    }
}

#[tokio::test]
async fn configured_headers_arrive() {
    let fake = FakeOtlp::start().await;
    for protocol in PROTOCOLS {
        let exporter = exporter(
            &fake,
            protocol,
            "headers = { \"X-Api-Key\" = \"secret\", \"x-tenant\" = \"acme\" }",
        );
        export_traces(&exporter).await.expect("export succeeds");
        let received = fake.next_request().await;
        assert_eq!(received.header("x-api-key"), Some("secret"), "{protocol}");
        assert_eq!(received.header("x-tenant"), Some("acme"), "{protocol}");
        assert!(
            received
                .header("user-agent")
                .unwrap_or("")
                .contains("otlp-gateway/"),
            "{protocol}"
        );
        if protocol == "http_protobuf" {
            assert_eq!(
                received.header("content-type"),
                Some("application/x-protobuf")
            );
        }
    }
}

#[tokio::test]
async fn one_exporter_serves_many_concurrent_requests() {
    let fake = FakeOtlp::start().await;
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "");
        let batch = batch_of(&Payload::Traces(traces()));
        let sends = (0..20).map(|_| exporter.export(&batch));
        for result in futures_util::future::join_all(sends).await {
            result.expect("export succeeds");
        }
    }
    fake.wait_for_items(Signal::Traces, 2 * 20 * 6).await;
}

// --- partial success ---

#[tokio::test]
async fn partial_success_is_an_outcome_with_the_rejected_count() {
    let fake = FakeOtlp::start().await;
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "");
        for signal in Signal::ALL {
            fake.partial_next(1, 2, "2 items too old");
            let outcome = exporter
                .export(&batch_of(&payload(signal)))
                .await
                .expect("accepted");
            assert_eq!(
                outcome,
                ExportOutcome {
                    rejected_items: 2,
                    message: "2 items too old".into()
                },
                "{protocol} {signal}"
            );
        }
    }
}

// --- classification ---

fn assert_retryable(result: Result<ExportOutcome, ExportError>, retry_after: Option<Duration>) {
    match result {
        Err(ExportError::Retryable {
            retry_after: got, ..
        }) => assert_eq!(got, retry_after),
        other => panic!("expected retryable with {retry_after:?}, got {other:?}"),
    }
}

fn assert_permanent(result: Result<ExportOutcome, ExportError>) {
    assert!(
        matches!(result, Err(ExportError::Permanent { .. })),
        "expected permanent, got {result:?}"
    );
}

#[tokio::test]
async fn grpc_unavailable_with_retry_info_is_retryable_after_its_delay() {
    let fake = FakeOtlp::start().await;
    let exporter = exporter(&fake, "grpc", "");
    fake.fail_next(
        1,
        Failure::grpc_retry(Code::Unavailable, Duration::from_secs(4)),
    );
    assert_retryable(export_traces(&exporter).await, Some(Duration::from_secs(4)));
    fake.fail_next(1, Failure::grpc(Code::Unavailable));
    assert_retryable(export_traces(&exporter).await, None);
    assert!(export_traces(&exporter).await.is_ok());
}

#[tokio::test]
async fn grpc_resource_exhausted_is_retryable_only_with_retry_info() {
    let fake = FakeOtlp::start().await;
    let exporter = exporter(&fake, "grpc", "");
    fake.fail_next(1, Failure::grpc(Code::ResourceExhausted));
    assert_permanent(export_traces(&exporter).await);
    fake.fail_next(
        1,
        Failure::grpc_retry(Code::ResourceExhausted, Duration::from_millis(1500)),
    );
    assert_retryable(
        export_traces(&exporter).await,
        Some(Duration::from_millis(1500)),
    );
}

#[tokio::test]
async fn grpc_retryable_and_permanent_codes() {
    let fake = FakeOtlp::start().await;
    let exporter = exporter(&fake, "grpc", "");
    for code in [
        Code::Aborted,
        Code::OutOfRange,
        Code::DataLoss,
        Code::DeadlineExceeded,
    ] {
        fake.fail_next(1, Failure::grpc(code));
        assert_retryable(export_traces(&exporter).await, None);
    }
    for code in [
        Code::InvalidArgument,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::Internal,
    ] {
        fake.fail_next(1, Failure::grpc(code));
        assert_permanent(export_traces(&exporter).await);
    }
}

#[tokio::test]
async fn http_429_with_retry_after_is_retryable_after_its_delay() {
    let fake = FakeOtlp::start().await;
    let exporter = exporter(&fake, "http_protobuf", "");
    fake.fail_next(1, Failure::http_retry_after(429, "3"));
    assert_retryable(export_traces(&exporter).await, Some(Duration::from_secs(3)));
    for status in [502, 503, 504] {
        fake.fail_next(1, Failure::http(status));
        assert_retryable(export_traces(&exporter).await, None);
    }
    let in_a_minute =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
    fake.fail_next(1, Failure::http_retry_after(503, &in_a_minute));
    match export_traces(&exporter).await {
        Err(ExportError::Retryable {
            retry_after: Some(d),
            ..
        }) => {
            assert!(
                d > Duration::from_secs(55) && d <= Duration::from_secs(60),
                "{d:?}"
            )
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn http_client_and_server_errors_are_permanent() {
    let fake = FakeOtlp::start().await;
    let exporter = exporter(&fake, "http_protobuf", "");
    for status in [400, 401, 403, 404, 413, 500] {
        fake.fail_next(1, Failure::http(status));
        let result = export_traces(&exporter).await;
        // The reason carries the server's google.rpc.Status message.
        assert!(format!("{result:?}").contains("scripted"), "{result:?}");
        assert_permanent(result);
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    for protocol in PROTOCOLS {
        let exporter = exporter_with(&format!("http://{address}"), protocol, "");
        assert_retryable(export_traces(&exporter).await, None);
    }
}

#[tokio::test]
async fn a_slow_backend_times_out_as_retryable() {
    let fake = FakeOtlp::start().await;
    fake.set_delay(Duration::from_secs(3));
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "timeout = \"200ms\"");
        let started = tokio::time::Instant::now();
        assert_retryable(export_traces(&exporter).await, None);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{protocol}: {:?}",
            started.elapsed()
        );
    }
}

// --- with the retry policy ---

#[tokio::test]
async fn retry_policy_rides_out_an_outage() {
    let fake = FakeOtlp::start().await;
    let policy = RetryPolicy::from_config(&RetryConfig {
        initial_interval: otlp_gateway::settings::units::HumanDuration::from_millis(10),
        ..RetryConfig::default()
    });
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "");
        fake.fail_next(
            2,
            Failure::grpc_retry(Code::Unavailable, Duration::from_millis(20)),
        );
        let batch = batch_of(&Payload::Traces(traces()));
        let mut waits = Vec::new();
        let result = policy
            .run(
                &CancellationToken::new(),
                || exporter.export(&batch),
                |_, wait| waits.push(wait),
            )
            .await;
        assert!(result.is_ok(), "{protocol}: {result:?}");
        assert_eq!(waits.len(), 2);
        if protocol == "grpc" {
            // RetryInfo's 20ms beats the 10ms (±50%) backoff. (Over HTTP the
            // fake rounds it to `Retry-After: 0`.)
            assert!(
                waits.iter().all(|w| *w >= Duration::from_millis(20)),
                "{waits:?}"
            );
        }
    }
    let answers: Vec<bool> = fake.requests().iter().map(|r| r.accepted()).collect();
    assert_eq!(answers, [false, false, true, false, false, true]);
}

// --- TLS ---

#[tokio::test]
async fn tls_with_the_ca_file_works() {
    let fake = FakeOtlp::start_tls().await;
    let ca = format!("[tls]\nca_file = \"{}\"", fake.ca_file().display());
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, &ca);
        let outcome = export_traces(&exporter).await;
        assert!(outcome.is_ok(), "{protocol}: {outcome:?}");
        assert_eq!(fake.next_request().await.payload, Payload::Traces(traces()));
    }
}

#[tokio::test]
async fn tls_with_an_unknown_ca_fails() {
    let fake = FakeOtlp::start_tls().await;
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "");
        let result = export_traces(&exporter).await;
        // A failed handshake is a connect error: retryable, as in the Collector.
        assert!(
            matches!(&result, Err(ExportError::Retryable { reason, .. }) if reason.contains("certificate")),
            "{protocol}: {result:?}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn tls_with_insecure_skip_verify_works() {
    let fake = FakeOtlp::start_tls().await;
    for protocol in PROTOCOLS {
        let exporter = exporter(&fake, protocol, "[tls]\ninsecure_skip_verify = true");
        let outcome = export_traces(&exporter).await;
        assert!(outcome.is_ok(), "{protocol}: {outcome:?}");
    }
    assert_eq!(fake.received_traces().len(), 2);
}

#[tokio::test]
async fn http_over_tls_negotiates_http2() {
    let fake = FakeOtlp::start_tls().await;
    let exporter = exporter(&fake, "http_protobuf", "[tls]\ninsecure_skip_verify = true");
    export_traces(&exporter).await.expect("export succeeds");
    // HTTP/2 requests carry no `Host` header (the authority is a pseudo-header).
    assert_eq!(fake.next_request().await.header("host"), None);
}

/// Appends `value` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field.
fn put_len(out: &mut Vec<u8>, number: u64, body: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// A span written the way no protobuf encoder writes it: fields out of
/// number order, a non-minimal varint, a default value written out and an
/// unknown field. Decoding and encoding again gives different bytes.
fn unusual_span(n: u8) -> Vec<u8> {
    let mut span = Vec::new();
    put_len(&mut span, 5, format!("raw {n}").as_bytes()); // name before the ids
    put_len(&mut span, 1, &[n; 16]); // trace_id
    put_len(&mut span, 2, &[n; 8]); // span_id
    span.extend_from_slice(&[6 << 3, 0x82, 0x00]); // kind = 2 in two bytes
    span.extend_from_slice(&[10 << 3, 0x00]); // dropped_attributes_count = 0, written out
    put_varint(&mut span, 99 << 3); // unknown field 99, varint 1
    span.push(0x01);
    span.push(7 << 3 | 1); // start_time_unix_nano, fixed64
    span.extend_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
    span
}

/// An `ExportTraceServiceRequest` with two [`unusual_span`]s and an unknown
/// top-level field.
fn unusual_traces() -> Vec<u8> {
    let mut scope_spans = Vec::new();
    put_len(&mut scope_spans, 2, &unusual_span(1));
    put_len(&mut scope_spans, 2, &unusual_span(2));
    let mut resource_spans = Vec::new();
    put_len(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    put_len(&mut request, 15, b"from a newer client"); // unknown field 15
    put_len(&mut request, 1, &resource_spans);
    request
}

#[tokio::test]
async fn body_is_sent_without_decoding() {
    // A request the gateway never decoded arrives byte for byte. The request
    // is one a decode and re-encode would change, so only a pass-through of
    // the received bytes keeps it equal.
    let sent = unusual_traces();
    let reencoded = ExportTraceServiceRequest::decode(&sent[..])
        .expect("prost reads it")
        .encode_to_vec();
    assert_ne!(reencoded, sent, "the request must not be in canonical form");
    let decoded = Batch::decode(Signal::Traces, Bytes::from(sent.clone())).expect("valid request");
    assert_eq!((decoded.rejected, decoded.batch.items()), (0, 2));

    let fake = FakeOtlp::start().await;
    for protocol in PROTOCOLS {
        for compression in ["none", "gzip"] {
            exporter(&fake, protocol, &format!("compression = \"{compression}\""))
                .export(&decoded.batch)
                .await
                .expect("export succeeds");
            let received = fake.next_request().await;
            assert_eq!(received.transport, transport(protocol));
            assert!(
                received.body == sent,
                "{protocol} {compression}: the backend got other bytes than were received\n\
                 sent:     {sent:02x?}\nreceived: {:02x?}",
                &received.body[..]
            );
        }
    }
}

#[tokio::test]
async fn a_blocked_backend_holds_requests_until_released() {
    let fake = FakeOtlp::start().await;
    fake.block();
    for (answered, protocol) in PROTOCOLS.into_iter().enumerate() {
        let exporter = exporter(&fake, protocol, "");
        let send = tokio::spawn(async move { export_traces(&exporter).await });
        fake.wait_for_waiting(1).await;
        assert_eq!(fake.requests().len(), answered);
        assert!(!send.is_finished());
        fake.release();
        send.await.unwrap().expect("export succeeds once released");
        fake.block();
    }
    assert_eq!(fake.received_traces().len(), 2);
}
