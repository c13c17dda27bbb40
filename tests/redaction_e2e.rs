//! End to end, PCI redaction: real OpenTelemetry SDK clients
//! (`opentelemetry-otlp`) over gRPC and HTTP/protobuf, and OTLP/JSON requests
//! over HTTP, send traces, metrics and logs full of card numbers through a
//! gateway with `[processors.redaction]`; the downstream collector (the fake)
//! must see every card number masked, the blocked keys redacted, everything
//! else byte for byte as sent, and not one card number anywhere in the bytes
//! it received.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::logs::{
    AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue as PbKeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_sdk::Resource;
use otlp_gateway::model::Signal;
use otlp_gateway::testkit::CARD;

use support::fake_otlp::FakeOtlp;
use support::gateway;
use support::sdk::{
    attr, blocking, endpoint, hex, log_exporter, metric_exporter, span_exporter, string, Client,
};

/// The redaction table under test: the defaults (card numbers in any text,
/// the PCI blocked keys), one named rule, and the per-item summary.
const REDACTION: &str = r#"
[processors.redaction]
summary = "info"
[[processors.redaction.rules]]
name = "card_numbers"
keys = ['card[._-]?(number|num|no)$']
action = "mask_last4"
"#;

/// Card numbers, as written anywhere in these tests, that must never reach
/// the backend in any form.
const LEAKS: &[&str] = &[
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5500000000000004",
    "5500 0000 0000 0004",
    "5500-0000-0000-0004",
];

/// The summary attribute added to changed items, resources and scopes.
const MASKED_COUNT: &str = "redaction.masked.count";

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("checkout")
        .with_attribute(KeyValue::new("deployment.environment", "e2e"))
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("redaction-e2e")
        .with_version("1.0.0")
        .build()
}

/// A gateway with [`REDACTION`] in front of `fake`, for all three signals.
async fn gateway_to(fake: &FakeOtlp) -> otlp_gateway::topology::Gateway {
    gateway::start(&format!(
        "{}\n{REDACTION}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n[pipelines.metrics]\nexporters = [\"otlp/down\"]\n[pipelines.logs]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 10_000)
    ))
    .await
}

// --- values and assertions ---

fn int(i: i64) -> Option<any_value::Value> {
    Some(any_value::Value::IntValue(i))
}

/// The `redaction.masked.count` of an item, resource or scope.
fn masked_count(attributes: &[PbKeyValue]) -> Option<i64> {
    match attr(attributes, MASKED_COUNT) {
        Some(any_value::Value::IntValue(n)) => Some(n),
        None => None,
        other => panic!("{MASKED_COUNT} is not an int: {other:?}"),
    }
}

/// An `AnyValue` holding `value`.
fn any(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn s(text: &str) -> AnyValue {
    any(any_value::Value::StringValue(text.into()))
}

fn kv(key: &str, value: AnyValue) -> PbKeyValue {
    PbKeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn kvlist(values: Vec<PbKeyValue>) -> AnyValue {
    any(any_value::Value::KvlistValue(KeyValueList { values }))
}

fn array(values: Vec<AnyValue>) -> AnyValue {
    any(any_value::Value::ArrayValue(ArrayValue { values }))
}

fn bytes(data: &[u8]) -> AnyValue {
    any(any_value::Value::BytesValue(data.to_vec()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// No request the backend received holds any card number of [`LEAKS`], in
/// the bytes exactly as they came over the wire.
fn assert_no_card_numbers(fake: &FakeOtlp) {
    let requests = fake.requests();
    assert!(!requests.is_empty(), "the backend received requests");
    for request in &requests {
        for leak in LEAKS {
            assert!(
                !contains(&request.body, leak.as_bytes()),
                "{:?} request to the backend contains {leak:?}: {:?}",
                request.signal,
                request.payload
            );
        }
    }
}

/// POSTs an OTLP/JSON `body` to the gateway's `path`; the status and response text.
async fn post_json(gw: &otlp_gateway::topology::Gateway, path: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", gateway::http_base(gw)))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("response body"))
}

// --- traces ---

/// Exports one span full of card numbers with the SDK over `client` to `url`.
async fn send_sdk_span(client: Client, url: String) {
    blocking(move || {
        let exporter = span_exporter(client, url);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer_with_scope(scope());
        let mut span = tracer
            .span_builder("charge 5500-0000-0000-0004")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("payment.card.number", CARD),
                KeyValue::new("card.cvv", "123"),
                KeyValue::new("note", "paid with 4111 1111 1111 1111 today"),
                // 16 digits, not Luhn-valid.
                KeyValue::new("order.id", "1234567890123456"),
                // 16 digits from a card network, not Luhn-valid.
                KeyValue::new("order.ref", "4111111111111112"),
                // Epoch milliseconds, one Luhn-invalid and one Luhn-valid: first digit 1.
                KeyValue::new("ts", "1733212800000"),
                KeyValue::new("ts.luhn", "1733212800002"),
                KeyValue::new("amount", 1250i64),
            ])
            .start(&tracer);
        span.add_event(
            "retry 4111111111111111",
            vec![KeyValue::new(
                "detail",
                "second try with 4111-1111-1111-1111",
            )],
        );
        span.set_status(Status::error("declined: card 4111111111111111"));
        span.end();
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;
}

async fn sdk_traces_are_masked(client: Client) {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    send_sdk_span(client, endpoint(&gw, client, Signal::Traces)).await;

    fake.wait_for_items(Signal::Traces, 1).await;
    assert_no_card_numbers(&fake);
    let received = fake.received_traces();
    let spans: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| {
            let resource = rs.resource.as_ref().expect("resource");
            assert_eq!(
                attr(&resource.attributes, "service.name"),
                string("checkout")
            );
            assert_eq!(
                masked_count(&resource.attributes),
                None,
                "nothing changed in the resource"
            );
            &rs.scope_spans
        })
        .flat_map(|ss| {
            assert_eq!(ss.scope.as_ref().expect("scope").name, "redaction-e2e");
            &ss.spans
        })
        .collect();
    assert_eq!(spans.len(), 1, "{client:?}");
    let span = spans[0];
    assert_eq!(span.name, "charge ****0004", "{client:?}");
    let a = &span.attributes;
    assert_eq!(attr(a, "payment.card.number"), string("****1111"), "rule");
    assert_eq!(attr(a, "card.cvv"), string("****"), "blocked key");
    assert_eq!(
        attr(a, "note"),
        string("paid with ****1111 today"),
        "in place"
    );
    assert_eq!(attr(a, "order.id"), string("1234567890123456"));
    assert_eq!(attr(a, "order.ref"), string("4111111111111112"));
    assert_eq!(attr(a, "ts"), string("1733212800000"));
    assert_eq!(attr(a, "ts.luhn"), string("1733212800002"));
    assert_eq!(attr(a, "amount"), int(1250));
    assert_eq!(span.events.len(), 1);
    let event = &span.events[0];
    assert_eq!(event.name, "retry ****1111");
    assert_eq!(
        attr(&event.attributes, "detail"),
        string("second try with ****1111")
    );
    let status = span.status.as_ref().expect("status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "declined: card ****1111")
    );
    // Name, card number, cvv, note, event name, event attribute, status message.
    assert_eq!(masked_count(a), Some(7), "{client:?}: {a:?}");
    assert!(gw.shutdown().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_traces_are_masked() {
    sdk_traces_are_masked(Client::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sdk_traces_are_masked() {
    sdk_traces_are_masked(Client::Http).await;
}

/// OTLP/JSON: card numbers in the resource, the scope, the span name, string,
/// array, kvlist and bytes values, events, links and the status message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_traces_are_masked() {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let body = r#"{"resourceSpans":[{
      "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}},
        {"key":"host.note","value":{"stringValue":"ops card 4111111111111111"}}]},
      "scopeSpans":[{"scope":{"name":"curl","attributes":[{"key":"scope.note","value":{"stringValue":"5500 0000 0000 0004"}}]},
      "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"charge 5500-0000-0000-0004","kind":"SPAN_KIND_CLIENT",
        "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000120000000",
        "attributes":[
          {"key":"payment.card.number","value":{"stringValue":"4111111111111111"}},
          {"key":"card.cvv","value":{"intValue":"123"}},
          {"key":"note","value":{"stringValue":"paid with 4111 1111 1111 1111 today"}},
          {"key":"order.id","value":{"stringValue":"1234567890123456"}},
          {"key":"ts","value":{"stringValue":"1733212800000"}},
          {"key":"cards.tried","value":{"arrayValue":{"values":[{"stringValue":"none"},{"stringValue":"4111111111111111"}]}}},
          {"key":"customer","value":{"kvlistValue":{"values":[
            {"key":"memo","value":{"stringValue":"card 5500000000000004 on file"}},
            {"key":"password","value":{"stringValue":"hunter2"}},
            {"key":"tier","value":{"stringValue":"gold"}}]}}},
          {"key":"blob","value":{"bytesValue":"Y2FyZCA0MTExMTExMTExMTExMTExIG9uIGZpbGU="}}],
        "events":[{"timeUnixNano":"1700000000010000000","name":"retry 4111111111111111",
          "attributes":[{"key":"detail","value":{"stringValue":"card 4111-1111-1111-1111"}}]}],
        "links":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
          "attributes":[{"key":"link.note","value":{"stringValue":"4111111111111111"}}]}],
        "status":{"code":2,"message":"declined: card 4111111111111111"}}]}]}]}"#;
    assert_eq!(
        post_json(&gw, "/v1/traces", body).await,
        (200, "{}".to_string())
    );
    fake.wait_for_items(Signal::Traces, 1).await;
    assert_no_card_numbers(&fake);
    let received = fake.received_traces();
    assert_eq!(received.len(), 1);
    let rs = &received[0].resource_spans[0];
    let resource = rs.resource.as_ref().expect("resource");
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        string("checkout")
    );
    assert_eq!(
        attr(&resource.attributes, "host.note"),
        string("ops card ****1111")
    );
    assert_eq!(masked_count(&resource.attributes), Some(1));
    let scope = rs.scope_spans[0].scope.as_ref().expect("scope");
    assert_eq!(scope.name, "curl");
    assert_eq!(attr(&scope.attributes, "scope.note"), string("****0004"));
    assert_eq!(masked_count(&scope.attributes), Some(1));
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(span.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(span.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(span.name, "charge ****0004");
    assert_eq!(
        (span.start_time_unix_nano, span.kind),
        (1_700_000_000_000_000_000, 3)
    );
    let a = &span.attributes;
    assert_eq!(attr(a, "payment.card.number"), string("****1111"));
    assert_eq!(attr(a, "card.cvv"), string("****"), "an int, redacted");
    assert_eq!(attr(a, "note"), string("paid with ****1111 today"));
    assert_eq!(attr(a, "order.id"), string("1234567890123456"));
    assert_eq!(attr(a, "ts"), string("1733212800000"));
    assert_eq!(
        attr(a, "cards.tried"),
        array(vec![s("none"), s("****1111")]).value
    );
    assert_eq!(
        attr(a, "customer"),
        kvlist(vec![
            kv("memo", s("card ****0004 on file")),
            kv("password", s("****")),
            kv("tier", s("gold")),
        ])
        .value
    );
    assert_eq!(attr(a, "blob"), bytes(b"card ****1111 on file").value);
    assert_eq!(span.events[0].name, "retry ****1111");
    assert_eq!(
        attr(&span.events[0].attributes, "detail"),
        string("card ****1111")
    );
    assert_eq!(
        span.links[0].trace_id,
        hex("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(
        attr(&span.links[0].attributes, "link.note"),
        string("****1111")
    );
    let status = span.status.as_ref().expect("status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "declined: card ****1111")
    );
    // Name, card number, cvv, note, array element, kvlist memo and password,
    // bytes, event name and attribute, link attribute, status message.
    assert_eq!(masked_count(a), Some(12), "{a:?}");
    assert!(gw.shutdown().await);
}

// --- metrics ---

async fn sdk_metrics_are_masked(client: Client) {
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
        let payments = meter
            .u64_counter("payments")
            .with_description("Payments, e.g. by 5500-0000-0000-0004")
            .build();
        let attributes = [
            KeyValue::new("note", "card 4111111111111111"),
            KeyValue::new("payment.card_number", CARD),
            KeyValue::new("card.cvv", "123"),
            KeyValue::new("region", "eu"),
            KeyValue::new("order.id", "1234567890123456"),
        ];
        payments.add(2, &attributes);
        payments.add(1, &attributes);
        let amounts = meter.f64_histogram("payment.amount").build();
        amounts.record(
            12.5,
            &[
                KeyValue::new("memo", "refund to 4111 1111 1111 1111"),
                KeyValue::new("card_no", "5500000000000004"),
            ],
        );
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;

    fake.wait_for_items(Signal::Metrics, 2).await;
    assert_no_card_numbers(&fake);
    let mut seen = Vec::new();
    for rm in fake
        .received_metrics()
        .iter()
        .flat_map(|r| &r.resource_metrics)
    {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                match (m.name.as_str(), m.data.as_ref()) {
                    ("payments", Some(metric::Data::Sum(sum))) => {
                        assert_eq!(m.description, "Payments, e.g. by ****0004");
                        assert_eq!(sum.data_points.len(), 1);
                        let point = &sum.data_points[0];
                        assert_eq!(point.value, Some(number_data_point::Value::AsInt(3)));
                        let a = &point.attributes;
                        assert_eq!(attr(a, "note"), string("card ****1111"));
                        assert_eq!(attr(a, "payment.card_number"), string("****1111"));
                        assert_eq!(attr(a, "card.cvv"), string("****"));
                        assert_eq!(attr(a, "region"), string("eu"));
                        assert_eq!(attr(a, "order.id"), string("1234567890123456"));
                        assert_eq!(masked_count(a), Some(3), "{client:?}: {a:?}");
                        seen.push("payments");
                    }
                    ("payment.amount", Some(metric::Data::Histogram(h))) => {
                        let point = &h.data_points[0];
                        assert_eq!((point.count, point.sum), (1, Some(12.5)));
                        let a = &point.attributes;
                        assert_eq!(attr(a, "memo"), string("refund to ****1111"));
                        assert_eq!(attr(a, "card_no"), string("****0004"));
                        assert_eq!(masked_count(a), Some(2), "{client:?}: {a:?}");
                        seen.push("payment.amount");
                    }
                    (name, data) => panic!("unexpected metric {name}: {data:?}"),
                }
            }
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["payment.amount", "payments"], "{client:?}");
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_metrics_are_masked() {
    sdk_metrics_are_masked(Client::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sdk_metrics_are_masked() {
    sdk_metrics_are_masked(Client::Http).await;
}

/// OTLP/JSON: data point attributes (string, rule key, array, bytes) and
/// exemplar filtered attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_metrics_are_masked() {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let body = r#"{"resourceMetrics":[{
      "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeMetrics":[{"scope":{"name":"curl"},"metrics":[
        {"name":"payments","unit":"1","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
          "dataPoints":[{"asInt":"3","startTimeUnixNano":"1700000000000000000","timeUnixNano":"1700000060000000000",
            "attributes":[{"key":"note","value":{"stringValue":"card 4111111111111111"}},
              {"key":"card_number","value":{"stringValue":"5500-0000-0000-0004"}},
              {"key":"region","value":{"stringValue":"eu"}}],
            "exemplars":[{"asDouble":1.0,"timeUnixNano":"1700000030000000000",
              "filteredAttributes":[{"key":"card.cvv","value":{"stringValue":"999"}},
                {"key":"memo","value":{"stringValue":"4111 1111 1111 1111"}}]}]}]}},
        {"name":"queue.depth","gauge":{"dataPoints":[{"asDouble":1.5,"timeUnixNano":"1700000060000000000",
          "attributes":[{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"vip"},{"stringValue":"4111 1111 1111 1111"}]}}},
            {"key":"raw","value":{"bytesValue":"bWVtbyA1NTAwLTAwMDAtMDAwMC0wMDA0"}}]}]}}]}]}]}"#;
    assert_eq!(
        post_json(&gw, "/v1/metrics", body).await,
        (200, "{}".to_string())
    );
    fake.wait_for_items(Signal::Metrics, 2).await;
    assert_no_card_numbers(&fake);
    let received = fake.received_metrics();
    let metrics = &received[0].resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 2);
    let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
        panic!("sum: {:?}", metrics[0]);
    };
    let point = &sum.data_points[0];
    assert_eq!(point.value, Some(number_data_point::Value::AsInt(3)));
    let a = &point.attributes;
    assert_eq!(attr(a, "note"), string("card ****1111"));
    assert_eq!(attr(a, "card_number"), string("****0004"), "rule");
    assert_eq!(attr(a, "region"), string("eu"));
    let exemplar = &point.exemplars[0].filtered_attributes;
    assert_eq!(attr(exemplar, "card.cvv"), string("****"));
    assert_eq!(attr(exemplar, "memo"), string("****1111"));
    // Note, card number, and the two exemplar attributes (an exemplar is not an item).
    assert_eq!(masked_count(a), Some(4), "{a:?}");
    let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
        panic!("gauge: {:?}", metrics[1]);
    };
    let a = &gauge.data_points[0].attributes;
    assert_eq!(attr(a, "tags"), array(vec![s("vip"), s("****1111")]).value);
    assert_eq!(attr(a, "raw"), bytes(b"memo ****0004").value);
    assert_eq!(masked_count(a), Some(2), "{a:?}");
    assert!(gw.shutdown().await);
}

// --- logs ---

async fn sdk_logs_are_masked(client: Client) {
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
        record.set_severity_number(Severity::Warn);
        record.set_severity_text("WARN");
        record.set_body(LogValue::from(
            "payment failed for card 4111 1111 1111 1111 (retrying)",
        ));
        record.add_attribute("card_number", CARD);
        record.add_attribute("note", "customer typed 5500000000000004");
        record.add_attribute("http.request.header.authorization", "Bearer abc.def");
        record.add_attribute("card.cvc", 123i64);
        record.add_attribute("order.id", "1234567890123456");
        record.add_attribute("attempt", 2i64);
        logger.emit(record);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;

    fake.wait_for_items(Signal::Logs, 1).await;
    assert_no_card_numbers(&fake);
    let received = fake.received_logs();
    let records: Vec<_> = received
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect();
    assert_eq!(records.len(), 1, "{client:?}");
    let record = records[0];
    assert_eq!(record.severity_text, "WARN");
    assert_eq!(
        record.body,
        Some(s("payment failed for card ****1111 (retrying)"))
    );
    let a = &record.attributes;
    assert_eq!(attr(a, "card_number"), string("****1111"), "rule");
    assert_eq!(attr(a, "note"), string("customer typed ****0004"));
    assert_eq!(attr(a, "http.request.header.authorization"), string("****"));
    assert_eq!(attr(a, "card.cvc"), string("****"), "an int, redacted");
    assert_eq!(attr(a, "order.id"), string("1234567890123456"));
    assert_eq!(attr(a, "attempt"), int(2));
    // Body and four attributes.
    assert_eq!(masked_count(a), Some(5), "{client:?}: {a:?}");
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_logs_are_masked() {
    sdk_logs_are_masked(Client::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sdk_logs_are_masked() {
    sdk_logs_are_masked(Client::Http).await;
}

/// OTLP/JSON: a kvlist body with a nested card number, a blocked key inside
/// it, an array of strings and a bytes value; a string body; attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_masked() {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let body = r#"{"resourceLogs":[{
      "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeLogs":[{"scope":{"name":"curl"},"logRecords":[
        {"timeUnixNano":"1700000001000000007","severityNumber":13,"severityText":"WARN",
         "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
         "body":{"kvlistValue":{"values":[
           {"key":"message","value":{"stringValue":"payment failed"}},
           {"key":"payment","value":{"kvlistValue":{"values":[
             {"key":"memo","value":{"stringValue":"charged 4111111111111111 twice"}},
             {"key":"cvv","value":{"intValue":"123"}},
             {"key":"amount","value":{"doubleValue":12.5}}]}}},
           {"key":"cards","value":{"arrayValue":{"values":[{"stringValue":"expired"},{"stringValue":"5500 0000 0000 0004"}]}}},
           {"key":"raw","value":{"bytesValue":"Y2FyZCA0MTExMTExMTExMTExMTExIG9uIGZpbGU="}}]}},
         "attributes":[{"key":"card_number","value":{"stringValue":"4111111111111111"}},
           {"key":"note","value":{"stringValue":"see 4111-1111-1111-1111"}},
           {"key":"ts","value":{"stringValue":"1733212800000"}}]},
        {"timeUnixNano":"1700000002000000000",
         "body":{"stringValue":"customer entered 4111 1111 1111 1111 at checkout"}}]}]}]}"#;
    assert_eq!(
        post_json(&gw, "/v1/logs", body).await,
        (200, "{}".to_string())
    );
    fake.wait_for_items(Signal::Logs, 2).await;
    assert_no_card_numbers(&fake);
    let received = fake.received_logs();
    let records = &received[0].resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    let first = &records[0];
    assert_eq!(first.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(
        first.body,
        Some(kvlist(vec![
            kv("message", s("payment failed")),
            kv(
                "payment",
                kvlist(vec![
                    kv("memo", s("charged ****1111 twice")),
                    kv("cvv", s("****")),
                    kv("amount", any(any_value::Value::DoubleValue(12.5))),
                ])
            ),
            kv("cards", array(vec![s("expired"), s("****0004")])),
            kv("raw", bytes(b"card ****1111 on file")),
        ]))
    );
    let a = &first.attributes;
    assert_eq!(attr(a, "card_number"), string("****1111"));
    assert_eq!(attr(a, "note"), string("see ****1111"));
    assert_eq!(attr(a, "ts"), string("1733212800000"));
    // memo, cvv, cards[1], raw in the body; card_number and note.
    assert_eq!(masked_count(a), Some(6), "{a:?}");
    let second = &records[1];
    assert_eq!(
        second.body,
        Some(s("customer entered ****1111 at checkout"))
    );
    assert_eq!(masked_count(&second.attributes), Some(1));
    assert!(gw.shutdown().await);
}

// --- counters and error messages ---

/// The value of `otlp_gateway_redaction_values_total` with these labels, 0 when absent.
fn redaction_counter(text: &str, signal: &str, rule: &str, action: &str) -> f64 {
    let labels = [
        format!("signal=\"{signal}\""),
        format!("rule=\"{rule}\""),
        format!("action=\"{action}\""),
    ];
    text.lines()
        .filter(|line| line.starts_with("otlp_gateway_redaction_values_total{"))
        .filter(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

async fn metrics_text(gw: &otlp_gateway::topology::Gateway) -> String {
    reqwest::get(format!("http://{}/metrics", gateway::admin(gw)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

/// The SDK span of the traces test moves the counters on `/metrics` by at
/// least what it holds: five card numbers in text (name, note, event name,
/// event attribute, status message), one `card_numbers` value and one
/// blocked key. (The recorder is process-wide and other tests run at the
/// same time, so they may move them further.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_counters_count_traces_by_rule() {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let counters = |text: &str| {
        [
            redaction_counter(text, "traces", "pan", "mask_last4"),
            redaction_counter(text, "traces", "card_numbers", "mask_last4"),
            redaction_counter(text, "traces", "blocked_keys", "redact"),
        ]
    };
    let before = counters(&metrics_text(&gw).await);
    send_sdk_span(Client::Grpc, gateway::grpc_url(&gw)).await;
    // The stage counts a batch before it passes it on towards the exporter.
    fake.wait_for_items(Signal::Traces, 1).await;
    let text = metrics_text(&gw).await;
    let after = counters(&text);
    for ((rule, at_least), (before, after)) in
        [("pan", 5.0), ("card_numbers", 1.0), ("blocked_keys", 1.0)]
            .into_iter()
            .zip(before.into_iter().zip(after))
    {
        assert!(
            after - before >= at_least,
            "rule {rule}: {before} -> {after}, expected at least +{at_least}\n{text}"
        );
    }
    assert!(gw.shutdown().await);
}

/// A JSON request refused for a bad integer that is a card number: the 400
/// quotes the value masked, and nothing goes downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_error_message_masks_the_card_number() {
    let fake = FakeOtlp::start().await;
    let gw = gateway_to(&fake).await;
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
      "spanId":"eee19b7ec3c1b174","name":"x",
      "attributes":[{"key":"n","value":{"intValue":"4111111111111111x"}}]}]}]}]}"#;
    let (status, text) = post_json(&gw, "/v1/traces", body).await;
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains(CARD), "{text}");
    assert!(
        text.contains("****1111"),
        "the value is quoted masked: {text}"
    );
    assert!(gw.shutdown().await);
    assert!(fake.requests().is_empty(), "nothing was exported");
}
