//! The Elasticsearch exporter through the running gateway, against the
//! in-process `_bulk` double (tests/support/elasticsearch.rs): documents as
//! sent, index names and ids, and every failure mode of a bulk answer; and
//! once against `osmem-server`, an independent in-memory emulator of the
//! OpenSearch API, as a second opinion on the wire format.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::logs::{
    AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue as PbKv, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use opentelemetry_sdk::Resource;
use otlp_gateway::exporter::elasticsearch::config::ElasticsearchExporterConfig;
use otlp_gateway::exporter::elasticsearch::ElasticsearchExporter;
use otlp_gateway::exporter::Exporter;
use otlp_gateway::model::{Batch, Context, Signal};
use otlp_gateway::topology::Gateway;
use prost::Message;
use serde_json::{json, Value};

use support::elasticsearch::FakeElasticsearch;
use support::gateway;
use support::sdk::{blocking, endpoint, log_exporter, span_exporter, Client};

// --- gateway and payloads ---

/// A gateway whose traces and logs go to `[exporters.elasticsearch.es]` with `extra` settings.
/// `[exporters.elasticsearch.<name>]` with `extra` settings (metrics are per exporter id,
/// and every test of this file shares one metrics recorder: a test reading them names its own).
async fn gateway_to(es: &FakeElasticsearch, name: &str, extra: &str) -> Gateway {
    gateway::start(&format!(
        r#"
[exporters.elasticsearch.{name}]
endpoint = "{url}"
timeout = "5s"
{extra}
[exporters.elasticsearch.{name}.retry_on_failure]
initial_interval = "20ms"
max_interval = "100ms"
max_elapsed_time = "30s"
[exporters.elasticsearch.{name}.sending_queue]
num_consumers = 2
[pipelines.traces]
exporters = ["elasticsearch/{name}"]
[pipelines.logs]
exporters = ["elasticsearch/{name}"]
"#,
        url = es.url()
    ))
    .await
}

fn kv(key: &str, value: any_value::Value) -> PbKv {
    PbKv {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.into())
}

/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000_000_000;

/// `names.len()` spans of service `checkout`, span `i` named `names[i]` with ids from `seed`.
fn spans(seed: u8, names: &[&str]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(PbResource {
                attributes: vec![kv("service.name", text("checkout"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| Span {
                        trace_id: vec![seed; 16],
                        span_id: [[seed; 4], (i as u32 + 1).to_be_bytes()].concat(),
                        name: (*name).to_owned(),
                        kind: 2,
                        start_time_unix_nano: T0 + i as u64,
                        end_time_unix_nano: T0 + 1_000_000 + i as u64,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Posts an OTLP/HTTP protobuf request to the gateway.
async fn post(gw: &Gateway, signal: Signal, body: Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{}{}", gateway::http_base(gw), signal.http_path()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

async fn metrics_text(gw: &Gateway) -> String {
    reqwest::get(format!("http://{}/metrics", gateway::admin(gw)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

/// The value of the first series of `name` whose labels include every one of `labels`.
fn series(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|l| set.split(',').any(|s| s == *l))
            .then(|| value.trim().parse().ok())?
    })
}

fn ids_of(docs: &[support::elasticsearch::StoredDocument]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// --- documents ---

/// A span with every kind of field arrives as one exact document, in the index of its
/// day, under the id of its trace and span.
#[tokio::test]
async fn spans_become_exact_documents() {
    let es = FakeElasticsearch::start().await;
    let gw = gateway_to(&es, "es", "traces_index = \"traces-{tenant}-{yyyy.MM.dd}\"").await;
    let mut request = spans(7, &["POST /checkout"]);
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.parent_span_id = vec![1; 8];
    span.status = Some(Status {
        code: 2,
        message: "card declined".into(),
    });
    span.attributes = vec![
        kv("http.response.status_code", any_value::Value::IntValue(402)),
        kv("order.amount", any_value::Value::DoubleValue(12.5)),
        kv("user.vip", any_value::Value::BoolValue(true)),
        kv(
            "order.items",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(text("sku-1")),
                    },
                    AnyValue {
                        value: Some(text("sku-2")),
                    },
                ],
            }),
        ),
        kv(
            "customer",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("id", any_value::Value::IntValue(9)),
                    kv("tier", text("gold")),
                ],
            }),
        ),
    ];
    request.resource_spans[0].scope_spans[0].scope = Some(
        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
            name: "shop".into(),
            version: "2.1".into(),
            ..Default::default()
        },
    );
    post(&gw, Signal::Traces, request.encode_to_vec()).await;

    let docs = es.wait_for_documents(1).await;
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    assert_eq!(doc.index, "traces-default-2023.11.14");
    assert_eq!(
        doc.id,
        format!("{}{}", hex(&[7; 16]), hex(&[7, 7, 7, 7, 0, 0, 0, 1]))
    );
    assert_eq!(
        doc.source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000Z",
            "trace_id": hex(&[7; 16]),
            "span_id": "0707070700000001",
            "parent_span_id": "0101010101010101",
            "name": "POST /checkout",
            "kind": "server",
            "duration": 1_000_000,
            "status": {"code": "error", "message": "card declined"},
            "attributes": {
                "http.response.status_code": 402,
                "order.amount": 12.5,
                "user.vip": true,
                "order.items": ["sku-1", "sku-2"],
                "customer": {"id": 9, "tier": "gold"},
            },
            "resource": {"attributes": {"service.name": "checkout"}},
            "scope": {"name": "shop", "version": "2.1"},
        })
    );
    // gzip by default, as `create` actions.
    let requests = es.requests();
    assert!(requests[0].gzip);
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/x-ndjson")
    );
    assert_eq!(requests[0].actions[0].op, "create");
    assert!(gw.shutdown().await);
}

/// Real SDK clients: spans in the `otel` mapping, logs in the `ecs` mapping, indices per
/// service and day.
#[tokio::test]
async fn sdk_spans_and_logs_arrive_as_documents() {
    let es = FakeElasticsearch::start().await;
    // Spans take the `otel` mapping, logs here the `ecs` one: two exporters.
    let gw = gateway::start(&format!(
        r#"
[exporters.elasticsearch.spans]
endpoint = "{url}"
traces_index = "traces-{{service.name}}-{{yyyy.MM.dd}}"
[exporters.elasticsearch.logs]
endpoint = "{url}"
mapping = "ecs"
logs_index = "logs-{{service.name}}-{{yyyy.MM.dd}}"
[pipelines.traces]
exporters = ["elasticsearch/spans"]
[pipelines.logs]
exporters = ["elasticsearch/logs"]
"#,
        url = es.url()
    ))
    .await;
    let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    let traces_url = endpoint(&gw, Client::Grpc, Signal::Traces);
    let logs_url = endpoint(&gw, Client::Http, Signal::Logs);
    let resource = || {
        Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "Checkout"),
                KeyValue::new("host.name", "node-7"),
                KeyValue::new("service.instance.id", "pod-1"),
            ])
            .build()
    };
    let (trace_id, span_id) = blocking(move || {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(span_exporter(Client::Grpc, traces_url))
            .build();
        let tracer = provider.tracer_with_scope(
            InstrumentationScope::builder("shop")
                .with_version("2.1")
                .build(),
        );
        let mut span = tracer
            .span_builder("GET /cart")
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("cart.total", 99.5),
                KeyValue::new(
                    "cart.items",
                    opentelemetry::Value::Array(
                        vec![opentelemetry::StringValue::from("a"), "b".into()].into(),
                    ),
                ),
            ])
            .start(&tracer);
        let ids = (
            span.span_context().trace_id(),
            span.span_context().span_id(),
        );
        span.end_with_timestamp(start + Duration::from_millis(40));
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");

        let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(log_exporter(Client::Http, logs_url))
            .build();
        let logger =
            provider.logger_with_scope(InstrumentationScope::builder("shop.orders").build());
        let mut record = logger.create_log_record();
        record.set_timestamp(start);
        record.set_severity_number(Severity::Warn);
        record.set_severity_text("WARN");
        record.set_body(LogValue::from("card declined"));
        record.add_attribute("order.id", "o-42");
        record.add_attribute("attempt", 2i64);
        record.set_trace_context(ids.0, ids.1, None);
        logger.emit(record);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
        ids
    })
    .await;

    es.wait_for_documents(2).await;
    let spans = es.documents_in("traces-checkout-2023.11.14");
    assert_eq!(spans.len(), 1, "{:?}", es.documents());
    let span = &spans[0].source;
    assert_eq!(spans[0].id, format!("{trace_id}{span_id}"));
    assert_eq!(span["trace_id"], trace_id.to_string());
    assert_eq!(span["span_id"], span_id.to_string());
    assert_eq!(span["@timestamp"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(span["duration"], 40_000_000);
    assert_eq!(span["kind"], "server");
    assert_eq!(
        span["attributes"],
        json!({"http.response.status_code": 200, "cart.total": 99.5, "cart.items": ["a", "b"]})
    );
    assert_eq!(span["resource"]["attributes"]["service.name"], "Checkout");
    assert_eq!(span["scope"], json!({"name": "shop", "version": "2.1"}));

    let logs = es.documents_in("logs-checkout-2023.11.14");
    assert_eq!(logs.len(), 1, "{:?}", es.documents());
    let log = &logs[0].source;
    assert_eq!(log["@timestamp"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(log["message"], "card declined");
    assert_eq!(log["log.level"], "WARN");
    assert_eq!(log["event.severity"], 13);
    assert_eq!(log["trace.id"], trace_id.to_string());
    assert_eq!(log["span.id"], span_id.to_string());
    assert_eq!(log["service.name"], "Checkout");
    assert_eq!(log["service.node.name"], "pod-1");
    assert_eq!(log["host.name"], "node-7");
    assert_eq!(log["host.hostname"], "node-7");
    assert_eq!(log["log.logger"], "shop.orders");
    assert_eq!(log["order.id"], "o-42");
    assert_eq!(log["attempt"], 2);
    assert_eq!(logs[0].id.len(), 32, "a 128-bit hash");
    assert!(gw.shutdown().await);
}

/// A template naming a data stream, with the `{tenant}` of tenancy-less batches.
#[tokio::test]
async fn logs_go_to_a_data_stream_with_create() {
    let es = FakeElasticsearch::start().await;
    let gw = gateway_to(
        &es,
        "es",
        "logs_index = \"logs-{tenant}.otel-default\"\ndefault_tenant = \"Shop\"",
    )
    .await;
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(PbResource {
                attributes: vec![kv("service.name", text("checkout"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..3)
                    .map(|i| LogRecord {
                        observed_time_unix_nano: T0 + i,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(KeyValueList {
                                values: vec![
                                    kv("event", text("login")),
                                    kv("n", any_value::Value::IntValue(i as i64)),
                                ],
                            })),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    post(&gw, Signal::Logs, request.encode_to_vec()).await;
    let docs = es.wait_for_documents(3).await;
    assert!(
        docs.iter().all(|d| d.index == "logs-shop.otel-default"),
        "{docs:?}"
    );
    // No record time: the observed time dates the document.
    let mut bodies: Vec<_> = docs
        .iter()
        .map(|d| (d.source["@timestamp"].clone(), d.source["body"].clone()))
        .collect();
    bodies.sort_by_key(|(_, body)| body["structured"]["n"].as_i64());
    assert_eq!(
        bodies[0],
        (
            json!("2023-11-14T22:13:20.000Z"),
            json!({"structured": {"event": "login", "n": 0}})
        )
    );
    assert_eq!(bodies[2].0, json!("2023-11-14T22:13:20.000000002Z"));
    assert!(es.requests()[0].actions.iter().all(|a| a.op == "create"));
    assert!(gw.shutdown().await);
}

// --- failures ---

/// The answer to a stored bulk is lost (503): the retry sends the same ids, gets 409s and
/// counts them delivered. Nothing is stored twice.
#[tokio::test]
async fn a_retried_bulk_never_duplicates() {
    let es = FakeElasticsearch::start().await;
    es.lose_answers(1);
    let gw = gateway_to(&es, "dup", "").await;
    post(
        &gw,
        Signal::Traces,
        spans(3, &["a", "b", "c", "d", "e"]).encode_to_vec(),
    )
    .await;
    let requests = es.wait_for_requests(2).await;
    assert_eq!(requests[0].status, 503);
    assert_eq!(requests[1].status, 200);
    assert_eq!(
        requests[1].actions, requests[0].actions,
        "the same documents, the same ids"
    );
    assert_eq!(requests[1].item_statuses(), [409; 5]);
    let docs = es.documents();
    assert_eq!(docs.len(), 5);
    assert!(docs.iter().all(|d| d.version == 1), "{docs:?}");
    // The 409s count as delivered.
    let metrics = wait_for_series(
        &gw,
        "otlp_gateway_exporter_items_sent_total",
        &["exporter=\"elasticsearch/dup\""],
        5.0,
    )
    .await;
    assert!(
        series(
            &metrics,
            "otlp_gateway_exporter_items_dropped_total",
            &["exporter=\"elasticsearch/dup\""]
        )
        .is_none(),
        "{metrics}"
    );
    assert!(gw.shutdown().await);
}

/// Waits until `name{labels}` reaches `at_least`; the page then.
async fn wait_for_series(gw: &Gateway, name: &str, labels: &[&str], at_least: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = metrics_text(gw).await;
        if series(&metrics, name, labels).is_some_and(|v| v >= at_least) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} < {at_least}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An item answered 429 is sent again alone (after a backoff), then stored; the others
/// are not sent twice.
#[tokio::test]
async fn an_item_429_is_retried_alone() {
    let es = FakeElasticsearch::start().await;
    es.fail_items("/name", json!("busy"), 429, 1);
    let gw = gateway_to(&es, "busy", "").await;
    post(
        &gw,
        Signal::Traces,
        spans(4, &["a", "busy", "c", "d"]).encode_to_vec(),
    )
    .await;
    let docs = es.wait_for_documents(4).await;
    let requests = es.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].item_statuses(), [201, 429, 201, 201]);
    assert_eq!(requests[1].actions.len(), 1);
    assert_eq!(requests[1].actions[0], requests[0].actions[1]);
    assert_eq!(requests[1].item_statuses(), [201]);
    // Not at once: after the backoff (initial_interval 20ms, ±50 % jitter).
    let waited = requests[1].received.duration_since(requests[0].received);
    assert!(
        waited >= Duration::from_millis(10),
        "retried after {waited:?}"
    );
    assert_eq!(docs.len(), 4);
    let metrics = wait_for_series(
        &gw,
        "otlp_gateway_exporter_items_sent_total",
        &["exporter=\"elasticsearch/busy\""],
        4.0,
    )
    .await;
    assert_eq!(
        series(
            &metrics,
            "otlp_gateway_exporter_retries_total",
            &["exporter=\"elasticsearch/busy\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(gw.shutdown().await);
}

/// An item answered 400 (a mapping error) is dropped and counted by its error type; it is
/// not retried, and the rest is stored.
#[tokio::test]
async fn an_item_400_is_dropped_and_counted() {
    let es = FakeElasticsearch::start().await;
    es.fail_items("/name", json!("poison"), 400, usize::MAX);
    es.fail_items("/name", json!("busy"), 503, 1);
    let gw = gateway_to(&es, "poison", "").await;
    post(
        &gw,
        Signal::Traces,
        spans(5, &["a", "poison", "busy", "d"]).encode_to_vec(),
    )
    .await;
    es.wait_for_documents(3).await;
    let metrics = wait_for_series(
        &gw,
        "otlp_gateway_elasticsearch_items_rejected_total",
        &[
            "exporter=\"elasticsearch/poison\"",
            "reason=\"document_parsing_exception\"",
        ],
        1.0,
    )
    .await;
    assert_eq!(
        series(
            &metrics,
            "otlp_gateway_exporter_items_dropped_total",
            &[
                "exporter=\"elasticsearch/poison\"",
                "reason=\"partial_success\""
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    let requests = es.requests();
    // First: all four; then only the 503 one. The refused one never again.
    assert_eq!(requests[0].item_statuses(), [201, 400, 503, 201]);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].actions, [requests[0].actions[2].clone()]);
    let names: Vec<_> = es
        .documents()
        .iter()
        .map(|d| d.source["name"].clone())
        .collect();
    assert!(!names.contains(&json!("poison")), "{names:?}");
    assert!(gw.shutdown().await);
}

/// Whole-request 503s and 429s are retried with the whole bulk; `Retry-After` is honoured.
#[tokio::test]
async fn whole_request_failures_are_retried() {
    let es = FakeElasticsearch::start().await;
    es.fail_requests(2, 503, None);
    es.fail_requests(1, 429, Some("1"));
    let gw = gateway_to(&es, "es", "").await;
    post(
        &gw,
        Signal::Traces,
        spans(6, &["a", "b", "c"]).encode_to_vec(),
    )
    .await;
    let docs = es.wait_for_documents(3).await;
    assert_eq!(ids_of(&docs).len(), 3);
    let requests = es.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 429, 200]
    );
    assert!(requests.iter().all(|r| r.actions == requests[0].actions));
    let waited = requests[3].received.duration_since(requests[2].received);
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    assert!(gw.shutdown().await);
}

/// A batch larger than `bulk_max_documents` goes as several bulk requests.
#[tokio::test]
async fn bulk_requests_are_bounded() {
    let es = FakeElasticsearch::start().await;
    let gw = gateway_to(&es, "es", "bulk_max_documents = 3\ncompression = \"none\"").await;
    let names: Vec<String> = (0..10).map(|i| format!("op-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    post(&gw, Signal::Traces, spans(8, &names).encode_to_vec()).await;
    es.wait_for_documents(10).await;
    let requests = es.requests();
    assert!(
        requests.iter().all(|r| r.actions.len() <= 3 && !r.gzip),
        "{requests:?}"
    );
    assert_eq!(requests.iter().map(|r| r.actions.len()).sum::<usize>(), 10);
    assert!(gw.shutdown().await);
}

/// A batch sent as three bulk requests whose second is refused whole (503): the first's
/// documents count as delivered, only the rest is sent again (after the backoff).
#[tokio::test]
async fn a_whole_request_failure_mid_batch_retries_only_the_rest() {
    let es = FakeElasticsearch::start().await;
    es.pass_requests(1);
    es.fail_requests(1, 503, None);
    let gw = gateway_to(&es, "midbatch", "bulk_max_documents = 2").await;
    post(
        &gw,
        Signal::Traces,
        spans(13, &["a", "b", "c", "d", "e"]).encode_to_vec(),
    )
    .await;
    let docs = es.wait_for_documents(5).await;
    let requests = es.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 503, 200, 200], "{requests:?}");
    let sizes: Vec<usize> = requests.iter().map(|r| r.actions.len()).collect();
    assert_eq!(sizes, [2, 2, 2, 1]);
    assert_eq!(requests[2].actions, requests[1].actions);
    assert!(docs.iter().all(|d| d.version == 1));
    let metrics = wait_for_series(
        &gw,
        "otlp_gateway_exporter_items_sent_total",
        &["exporter=\"elasticsearch/midbatch\""],
        5.0,
    )
    .await;
    assert_eq!(
        series(
            &metrics,
            "otlp_gateway_exporter_items_sent_total",
            &["exporter=\"elasticsearch/midbatch\""]
        ),
        Some(5.0)
    );
    assert!(gw.shutdown().await);
}

// --- authentication and TLS ---

#[tokio::test]
async fn api_key_and_basic_auth_come_from_the_environment() {
    std::env::set_var(
        "OTLP_GATEWAY_IT_ES_API_KEY",
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
    );
    std::env::set_var("OTLP_GATEWAY_IT_ES_PASSWORD", "changeme");
    let es = FakeElasticsearch::start().await;
    es.require_authorization("ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==");
    let gw = gateway_to(&es, "es", "api_key_env = \"OTLP_GATEWAY_IT_ES_API_KEY\"").await;
    post(&gw, Signal::Traces, spans(9, &["a"]).encode_to_vec()).await;
    es.wait_for_documents(1).await;
    assert!(gw.shutdown().await);

    let es = FakeElasticsearch::start().await;
    // elastic:changeme
    es.require_authorization("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
    let gw = gateway_to(
        &es,
        "es",
        "user = \"elastic\"\npassword_env = \"OTLP_GATEWAY_IT_ES_PASSWORD\"",
    )
    .await;
    post(&gw, Signal::Traces, spans(9, &["a"]).encode_to_vec()).await;
    es.wait_for_documents(1).await;
    assert!(gw.shutdown().await);

    // Wrong credentials: 401, permanent: dropped and counted, not retried.
    let es = FakeElasticsearch::start().await;
    es.require_authorization("ApiKey something-else");
    let gw = gateway_to(
        &es,
        "badkey",
        "api_key_env = \"OTLP_GATEWAY_IT_ES_API_KEY\"",
    )
    .await;
    post(&gw, Signal::Traces, spans(9, &["a", "b"]).encode_to_vec()).await;
    let metrics = wait_for_series(
        &gw,
        "otlp_gateway_exporter_items_dropped_total",
        &["exporter=\"elasticsearch/badkey\"", "reason=\"permanent\""],
        2.0,
    )
    .await;
    assert!(metrics.contains("otlp_gateway_exporter_items_dropped_total"));
    assert_eq!(es.requests().len(), 1);
    assert_eq!(es.requests()[0].status, 401);
    assert!(es.documents().is_empty());
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn tls_with_a_custom_ca() {
    let es = FakeElasticsearch::start_tls().await;
    let gw = gateway_to(
        &es,
        "es",
        &format!(
            "[exporters.elasticsearch.es.tls]\nca_file = \"{}\"",
            es.ca_file().display()
        ),
    )
    .await;
    post(&gw, Signal::Traces, spans(10, &["a", "b"]).encode_to_vec()).await;
    es.wait_for_documents(2).await;
    assert!(gw.shutdown().await);
}

// --- the double itself follows the contract ---

#[tokio::test]
async fn the_double_refuses_a_body_without_the_final_newline() {
    let es = FakeElasticsearch::start().await;
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{}/_bulk", es.url()))
        .header("content-type", "application/x-ndjson")
        .body("{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"f\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "illegal_argument_exception");
    assert_eq!(body["status"], 400);
    // Index then create of one id, a bad index name, a duplicate key; per path default index.
    let answer = client
        .post(format!("{}/logs-x/_bulk", es.url()))
        .body(
            "{\"index\":{\"_id\":\"1\"}}\n{\"f\":1}\n{\"create\":{\"_id\":\"1\"}}\n{\"f\":2}\n\
             {\"index\":{\"_index\":\"Bad\",\"_id\":\"2\"}}\n{\"f\":1}\n{\"index\":{\"_id\":\"3\"}}\n{\"f\":1,\"f\":2}\n",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["errors"], true);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 201);
    assert_eq!(items[0]["index"]["result"], "created");
    assert_eq!(items[1]["create"]["status"], 409);
    assert_eq!(
        items[1]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(
        items[2]["index"]["error"]["type"],
        "invalid_index_name_exception"
    );
    assert_eq!(
        items[3]["index"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(es.documents_in("logs-x").len(), 1);
}

// --- a second opinion: osmem-server ---

/// The path of the `osmem-server` binary the `osmem-server` pip package bundles, if installed.
fn osmem_binary() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("OSMEM_SERVER_BIN") {
        return Some(path.into());
    }
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import osmem_server; print(osmem_server.resolve_binary())",
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Documents written by the exporter are read back from osmem-server (an independent
/// emulator of the OpenSearch REST API): same ids, same sources, a retry answered 409.
#[tokio::test]
async fn osmem_server_reads_back_what_the_exporter_wrote() {
    let Some(binary) = osmem_binary() else {
        assert!(
            std::env::var_os("OTLP_GATEWAY_REQUIRE_OSMEM").is_none(),
            "osmem-server is required (scripts/test.sh installs it: pip install osmem-server)"
        );
        eprintln!("SKIPPED: osmem-server is not installed (pip install osmem-server)");
        return;
    };
    let mut child = tokio::process::Command::new(&binary)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--no-ja",
            "--parent-pid",
            &std::process::id().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("osmem-server starts");
    // Its first line: {"url": "http://127.0.0.1:<port>", ...}.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("osmem-server ready")
        .expect("read")
        .expect("a line");
    let ready: Value = serde_json::from_str(&first).expect("ready line");
    let url = ready["url"].as_str().expect("url").to_owned();

    let config: ElasticsearchExporterConfig = toml::from_str(&format!(
        "endpoint = \"{url}\"\nmapping = \"ecs\"\nlogs_index = \"logs-{{service.name}}-{{yyyy.MM.dd}}\""
    ))
    .unwrap();
    let exporter =
        ElasticsearchExporter::build("elasticsearch/osmem", Signal::Logs, &config).unwrap();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(PbResource {
                attributes: vec![
                    kv("service.name", text("billing")),
                    kv("host.name", text("h1")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..4)
                    .map(|i| LogRecord {
                        time_unix_nano: T0 + i,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(text(&format!("invoice {i} sent"))),
                        }),
                        attributes: vec![kv("invoice.id", any_value::Value::IntValue(i as i64))],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = Batch::decode(Signal::Logs, Bytes::from(request.encode_to_vec()))
        .unwrap()
        .batch;
    let mut bulk = exporter.encode(&batch, &Context::default()).unwrap();
    let outcome = exporter.send(&mut bulk).await.expect("delivered");
    assert_eq!(outcome.rejected_items, 0);
    // Sent again (a retry): every item 409 on create, still delivered, nothing doubled.
    let mut again = exporter.encode(&batch, &Context::default()).unwrap();
    exporter
        .send(&mut again)
        .await
        .expect("409s count as delivered");

    let client = reqwest::Client::new();
    client
        .post(format!("{url}/logs-billing-2023.11.14/_refresh"))
        .send()
        .await
        .unwrap();
    let found: Value = client
        .get(format!("{url}/logs-billing-2023.11.14/_search?size=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hits = found["hits"]["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 4, "{found}");
    let mut messages: Vec<_> = hits
        .iter()
        .map(|h| h["_source"]["message"].as_str().unwrap().to_owned())
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "invoice 0 sent",
            "invoice 1 sent",
            "invoice 2 sent",
            "invoice 3 sent"
        ]
    );
    for hit in hits {
        assert_eq!(hit["_source"]["log.level"], "INFO");
        assert_eq!(hit["_source"]["host.hostname"], "h1");
        assert_eq!(hit["_id"].as_str().unwrap().len(), 32);
    }
    drop(lines);
    let _ = child.kill().await;
}

// --- the shipped example ---

/// `config.toml`'s commented `[exporters.elasticsearch.search]` example, switched on and used by
/// the traces and logs pipelines, is valid, and every value it writes is the default.
#[test]
fn shipped_example_is_valid_once_uncommented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config.toml")).unwrap();
    let mut out = Vec::new();
    let mut in_example = false;
    for line in text.lines() {
        if line == "# [exporters.elasticsearch.search]" {
            in_example = true;
        } else if line.starts_with("# ---") {
            in_example = false;
        }
        if !in_example {
            out.push(line.to_owned());
        } else if line.starts_with("# #") || line == "#" {
            out.push(String::new());
        } else {
            out.push(line.strip_prefix("# ").unwrap_or(line).to_owned());
        }
    }
    let ca = root.join("Cargo.toml");
    let mut text = out
        .join("\n")
        .replace("/etc/otlp-gateway/es-ca.pem", &ca.display().to_string());
    for (from, to) in [
        (
            "[pipelines.traces]\n# Exporter ids, \"<kind>/<name>\". Required.\nexporters = [\"debug/console\"]",
            "[pipelines.traces]\nexporters = [\"debug/console\", \"elasticsearch/search\"]\n",
        ),
        (
            "[pipelines.logs]\nexporters = [\"debug/console\"]",
            "[pipelines.logs]\nexporters = [\"debug/console\", \"elasticsearch/search\"]",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let env = |_: &str| None;
    let (config, warnings) =
        otlp_gateway::config::load_and_validate_str_with(&text, "config.toml", env)
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("exporters.elasticsearch.search.tls (line")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .all(|w| w.contains(".tls (line") || w.contains("ELASTICSEARCH_PASSWORD is not set")),
        "{warnings:?}"
    );
    let search = &config.exporters.elasticsearch["search"];
    let defaults: ElasticsearchExporterConfig = toml::from_str(&format!(
        "endpoint = \"http://127.0.0.1:9200\"\nuser = \"elastic\"\npassword_env = \"ELASTICSEARCH_PASSWORD\"\ntls = {{ ca_file = \"{}\" }}",
        ca.display()
    ))
    .unwrap();
    assert_eq!(format!("{search:?}"), format!("{defaults:?}"));
}

/// With tenancy, each batch's tenant (here from the `x-tenant-id` header, or per resource
/// from `tenant.id`) names its index.
#[tokio::test]
async fn the_tenant_names_the_index() {
    let es = FakeElasticsearch::start().await;
    let gw = gateway::start(&format!(
        r#"
[exporters.elasticsearch.tenants]
endpoint = "{url}"
traces_index = "traces-{{tenant}}-{{yyyy.MM.dd}}"
[pipelines.traces]
exporters = ["elasticsearch/tenants"]
[tenancy]
"#,
        url = es.url()
    ))
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", gateway::http_base(&gw)))
        .header("content-type", "application/x-protobuf")
        .header("x-tenant-id", "acme")
        .body(spans(11, &["a", "b"]).encode_to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let mut labelled = spans(12, &["c"]);
    labelled.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("tenant.id", text("globex")));
    post(&gw, Signal::Traces, labelled.encode_to_vec()).await;
    es.wait_for_documents(3).await;
    assert_eq!(
        es.documents_in("traces-acme-2023.11.14").len(),
        2,
        "{:?}",
        es.documents()
    );
    assert_eq!(
        es.documents_in("traces-globex-2023.11.14").len(),
        1,
        "{:?}",
        es.documents()
    );
    assert!(gw.shutdown().await);
}
