//! End to end: real OpenTelemetry SDK clients (`opentelemetry-otlp`) export
//! traces, metrics and logs over gRPC and over HTTP/protobuf to the gateway,
//! which exports OTLP to an in-process downstream collector (the fake). What
//! arrives must equal what was sent: ids, names, timestamps, attributes,
//! resource and scope, not only counts.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{
    AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_sdk::Resource;
use otlp_gateway::model::Signal;

use support::fake_otlp::FakeOtlp;
use support::gateway;
use support::sdk::{
    attr, blocking, endpoint, hex, log_exporter, metric_exporter, span_exporter, string, Client,
};

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("checkout")
        .with_attribute(KeyValue::new("deployment.environment", "e2e"))
        .with_attribute(KeyValue::new("k8s.pod.name", "checkout-7d9f"))
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("e2e-scope")
        .with_version("1.2.3")
        .with_attributes([KeyValue::new("scope.attr", "s")])
        .build()
}

fn assert_resource(resource: Option<&PbResource>) {
    let attributes = &resource.expect("resource").attributes;
    assert_eq!(attr(attributes, "service.name"), string("checkout"));
    assert_eq!(attr(attributes, "deployment.environment"), string("e2e"));
    assert_eq!(attr(attributes, "k8s.pod.name"), string("checkout-7d9f"));
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn gateway_to(fake: &FakeOtlp) -> otlp_gateway::topology::Gateway {
    gateway::start(&format!(
        "{}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n[pipelines.metrics]\nexporters = [\"otlp/down\"]\n[pipelines.logs]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 10_000)
    ))
    .await
}

async fn traces_arrive_intact(client: Client) {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let url = endpoint(&gw, client, Signal::Traces);
    let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    let end = start + Duration::from_millis(85);
    let (trace_id, span_id, child_id) = blocking(move || {
        let exporter = span_exporter(client, url);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer_with_scope(scope());
        let mut root = tracer
            .span_builder("POST /checkout")
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("order.id", "o-42"),
                KeyValue::new("order.amount", 1250.5),
                KeyValue::new("user.vip", true),
                KeyValue::new("http.response.status_code", 500i64),
            ])
            .start(&tracer);
        root.set_status(Status::error("payment declined"));
        let ids = (
            root.span_context().trace_id(),
            root.span_context().span_id(),
        );
        let cx = opentelemetry::Context::current_with_span(root);
        let mut child = tracer
            .span_builder("charge card")
            .with_kind(SpanKind::Client)
            .with_start_time(start + Duration::from_millis(10))
            .start_with_context(&tracer, &cx);
        let child_id = child.span_context().span_id();
        child.end_with_timestamp(start + Duration::from_millis(70));
        cx.span().end_with_timestamp(end);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
        (ids.0, ids.1, child_id)
    })
    .await;

    fake.wait_for_items(Signal::Traces, 2).await;
    let received = fake.received_traces();
    let spans: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| {
            assert_resource(rs.resource.as_ref());
            rs.scope_spans.iter().map(move |ss| (rs, ss))
        })
        .flat_map(|(_, ss)| {
            let scope = ss.scope.as_ref().expect("scope");
            assert_eq!(scope.name, "e2e-scope");
            assert_eq!(scope.version, "1.2.3");
            assert_eq!(attr(&scope.attributes, "scope.attr"), string("s"));
            ss.spans.iter()
        })
        .collect();
    assert_eq!(spans.len(), 2, "{client:?}: exactly the two spans");
    let root = spans
        .iter()
        .find(|s| s.name == "POST /checkout")
        .expect("root span");
    let child = spans
        .iter()
        .find(|s| s.name == "charge card")
        .expect("child span");
    assert_eq!(root.trace_id, trace_id.to_bytes().to_vec());
    assert_eq!(root.span_id, span_id.to_bytes().to_vec());
    assert!(root.parent_span_id.is_empty());
    assert_eq!(child.trace_id, trace_id.to_bytes().to_vec());
    assert_eq!(child.span_id, child_id.to_bytes().to_vec());
    assert_eq!(child.parent_span_id, span_id.to_bytes().to_vec());
    assert_eq!(root.kind, 2, "SERVER");
    assert_eq!(child.kind, 3, "CLIENT");
    assert_eq!(root.start_time_unix_nano, nanos(start));
    assert_eq!(root.end_time_unix_nano, nanos(end));
    assert_eq!(
        child.end_time_unix_nano,
        nanos(start + Duration::from_millis(70))
    );
    let status = root.status.as_ref().expect("status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "payment declined")
    );
    assert_eq!(attr(&root.attributes, "order.id"), string("o-42"));
    assert_eq!(
        attr(&root.attributes, "order.amount"),
        Some(any_value::Value::DoubleValue(1250.5))
    );
    assert_eq!(
        attr(&root.attributes, "user.vip"),
        Some(any_value::Value::BoolValue(true))
    );
    assert_eq!(
        attr(&root.attributes, "http.response.status_code"),
        Some(any_value::Value::IntValue(500))
    );
    assert!(gw.shutdown().await, "drained");
}

async fn metrics_arrive_intact(client: Client) {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let url = endpoint(&gw, client, Signal::Metrics);
    blocking(move || {
        let exporter = metric_exporter(client, url);
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_resource(resource())
            .with_periodic_exporter(exporter)
            .build();
        let meter = provider.meter_with_scope(scope());
        let orders = meter
            .u64_counter("orders")
            .with_unit("{order}")
            .with_description("Orders placed")
            .build();
        orders.add(3, &[KeyValue::new("tenant.id", "t-1")]);
        orders.add(4, &[KeyValue::new("tenant.id", "t-1")]);
        let latency = meter
            .f64_histogram("checkout.duration")
            .with_unit("s")
            .build();
        latency.record(0.25, &[KeyValue::new("route", "/checkout")]);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;

    fake.wait_for_items(Signal::Metrics, 2).await;
    let received = fake.received_metrics();
    let mut seen = Vec::new();
    for rm in received.iter().flat_map(|r| &r.resource_metrics) {
        assert_resource(rm.resource.as_ref());
        for sm in &rm.scope_metrics {
            assert_eq!(sm.scope.as_ref().expect("scope").name, "e2e-scope");
            for m in &sm.metrics {
                match (m.name.as_str(), m.data.as_ref()) {
                    ("orders", Some(metric::Data::Sum(sum))) => {
                        assert_eq!(m.unit, "{order}");
                        assert_eq!(m.description, "Orders placed");
                        assert!(sum.is_monotonic);
                        let point = &sum.data_points[0];
                        assert_eq!(point.value, Some(number_data_point::Value::AsInt(7)));
                        assert_eq!(attr(&point.attributes, "tenant.id"), string("t-1"));
                        seen.push("orders");
                    }
                    ("checkout.duration", Some(metric::Data::Histogram(h))) => {
                        let point = &h.data_points[0];
                        assert_eq!((point.count, point.sum), (1, Some(0.25)));
                        assert_eq!(attr(&point.attributes, "route"), string("/checkout"));
                        seen.push("checkout.duration");
                    }
                    (name, data) => panic!("unexpected metric {name}: {data:?}"),
                }
            }
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec!["checkout.duration", "orders"], "{client:?}");
    assert!(gw.shutdown().await);
}

async fn logs_arrive_intact(client: Client) {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let url = endpoint(&gw, client, Signal::Logs);
    let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_001_000_000_007);
    blocking(move || {
        let exporter = log_exporter(client, url);
        let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(exporter)
            .build();
        let logger = provider.logger_with_scope(scope());
        let mut record = logger.create_log_record();
        record.set_timestamp(at);
        record.set_observed_timestamp(at + Duration::from_millis(1));
        record.set_severity_number(Severity::Warn);
        record.set_severity_text("WARN");
        record.set_body(LogValue::from("card declined for order o-42"));
        record.add_attribute("order.id", "o-42");
        record.add_attribute("attempt", 2i64);
        logger.emit(record);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;

    fake.wait_for_items(Signal::Logs, 1).await;
    let received = fake.received_logs();
    let records: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|rl| {
            assert_resource(rl.resource.as_ref());
            &rl.scope_logs
        })
        .flat_map(|sl| {
            assert_eq!(sl.scope.as_ref().expect("scope").name, "e2e-scope");
            &sl.log_records
        })
        .collect();
    assert_eq!(records.len(), 1, "{client:?}");
    let record = records[0];
    assert_eq!(record.time_unix_nano, nanos(at));
    assert_eq!(
        record.observed_time_unix_nano,
        nanos(at + Duration::from_millis(1))
    );
    assert_eq!(record.severity_number, Severity::Warn as i32);
    assert_eq!(record.severity_text, "WARN");
    assert_eq!(
        record.body,
        Some(AnyValue {
            value: string("card declined for order o-42")
        })
    );
    assert_eq!(attr(&record.attributes, "order.id"), string("o-42"));
    assert_eq!(
        attr(&record.attributes, "attempt"),
        Some(any_value::Value::IntValue(2))
    );
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_traces_arrive_intact() {
    traces_arrive_intact(Client::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_traces_arrive_intact() {
    traces_arrive_intact(Client::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_metrics_arrive_intact() {
    metrics_arrive_intact(Client::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_metrics_arrive_intact() {
    metrics_arrive_intact(Client::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_logs_arrive_intact() {
    logs_arrive_intact(Client::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_logs_arrive_intact() {
    logs_arrive_intact(Client::Http).await;
}

/// A JSON request over HTTP arrives downstream as the same spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_request_arrives_as_protobuf() {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeSpans":[{"scope":{"name":"curl"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "name":"GET /cart","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000120000000",
      "attributes":[{"key":"order.amount","value":{"doubleValue":99.5}},{"key":"retries","value":{"intValue":"3"}}],
      "status":{"code":2,"message":"boom"}}]}]}]}"#;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", gateway::http_base(&gw)))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    fake.wait_for_items(Signal::Traces, 1).await;
    let received = fake.received_traces();
    let rs = &received[0].resource_spans[0];
    assert_eq!(
        attr(&rs.resource.as_ref().unwrap().attributes, "service.name"),
        string("checkout")
    );
    assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "curl");
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(span.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(span.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(span.name, "GET /cart");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_700_000_000_120_000_000);
    assert_eq!(
        attr(&span.attributes, "order.amount"),
        Some(any_value::Value::DoubleValue(99.5))
    );
    assert_eq!(
        attr(&span.attributes, "retries"),
        Some(any_value::Value::IntValue(3))
    );
    assert_eq!(
        span.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "boom"))
    );
    assert!(gw.shutdown().await);
}

async fn metrics_text(gw: &otlp_gateway::topology::Gateway) -> String {
    reqwest::get(format!("http://{}/metrics", gateway::admin(gw)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

/// Downstream refusals drop the items with a counted reason; retryable
/// failures are retried and counted as failed attempts, then delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_retries_are_counted_per_exporter() {
    use support::fake_otlp::{Code, Failure};
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}\n[pipelines.traces]\nexporters = [\"otlp/counted\"]\n",
        gateway::otlp_exporter_named("counted", &fake.grpc_url(), "grpc", 10_000)
    ))
    .await;
    let url = format!("{}/v1/traces", gateway::http_base(&gw));
    let send = |seed: u64| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(otlp_gateway::testkit::encoded_traces(seed, 16))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
        }
    };
    let exporter = "exporter=\"otlp/counted\",signal=\"traces\"";

    fake.fail_next(1, Failure::grpc(Code::InvalidArgument));
    send(1).await;
    fake.wait_for_requests(1).await;
    fake.partial_next(1, 4, "4 spans too old");
    send(2).await;
    fake.wait_for_requests(2).await;
    fake.fail_next(2, Failure::grpc(Code::Unavailable));
    send(3).await;
    fake.wait_for_items(Signal::Traces, 32).await;

    fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{{labels}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
    // The fake records a request before the gateway counts its answer: wait for the count.
    let sent = "otlp_gateway_exporter_items_sent_total";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut text = metrics_text(&gw).await;
    while value(&text, sent, exporter) != Some(28.0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = metrics_text(&gw).await;
    }
    let value = |name: &str, labels: &str| value(&text, name, labels);
    assert_eq!(
        value(
            "otlp_gateway_exporter_items_dropped_total",
            &format!("{exporter},reason=\"permanent\"")
        ),
        Some(16.0),
        "{text}"
    );
    assert_eq!(
        value(
            "otlp_gateway_exporter_items_dropped_total",
            &format!("{exporter},reason=\"partial_success\"")
        ),
        Some(4.0)
    );
    assert_eq!(
        value("otlp_gateway_exporter_retries_total", exporter),
        Some(2.0)
    );
    assert_eq!(
        value(
            "otlp_gateway_exporter_items_failed_total",
            &format!("{exporter},reason=\"retryable\"")
        ),
        Some(32.0)
    );
    // 12 of the partial batch and all 16 of the retried one were delivered.
    assert_eq!(
        value("otlp_gateway_exporter_items_sent_total", exporter),
        Some(28.0)
    );
    assert!(gw.shutdown().await);
}
