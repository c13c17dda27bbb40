//! The `jaeger` exporter through the running gateway, against the in-process
//! `jaeger.api_v2.CollectorService` double (tests/support/jaeger.rs): spans
//! from the OpenTelemetry SDK arrive as exact Jaeger batches; `UNAVAILABLE`
//! is retried; `INVALID_ARGUMENT` is dropped and counted.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as PbKv};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PbSpan};
use opentelemetry_sdk::Resource;
use otlp_gateway::exporter::jaeger::proto::{
    KeyValue as Tag, Log, SpanRef, SpanRefType, ValueType,
};
use otlp_gateway::model::Signal;
use otlp_gateway::topology::Gateway;
use prost::Message;

use support::gateway;
use support::jaeger::{Code, FakeJaeger};
use support::sdk::{blocking, endpoint, span_exporter, Client};

/// A gateway whose traces go to `[exporters.jaeger.<name>]` (metrics are per exporter id).
async fn gateway_to(jaeger: &FakeJaeger, name: &str) -> Gateway {
    gateway::start(&format!(
        r#"
[exporters.jaeger.{name}]
endpoint = "{url}"
compression = "gzip"
timeout = "5s"
[exporters.jaeger.{name}.retry_on_failure]
initial_interval = "20ms"
max_interval = "100ms"
max_elapsed_time = "30s"
[pipelines.traces]
exporters = ["jaeger/{name}"]
"#,
        url = jaeger.url()
    ))
    .await
}

fn string(key: &str, value: &str) -> Tag {
    Tag {
        key: key.to_owned(),
        v_type: ValueType::String as i32,
        v_str: value.to_owned(),
        ..Tag::default()
    }
}

fn int(key: &str, value: i64) -> Tag {
    Tag {
        key: key.to_owned(),
        v_type: ValueType::Int64 as i32,
        v_int64: value,
        ..Tag::default()
    }
}

fn boolean(key: &str, value: bool) -> Tag {
    Tag {
        key: key.to_owned(),
        v_type: ValueType::Bool as i32,
        v_bool: value,
        ..Tag::default()
    }
}

fn double(key: &str, value: f64) -> Tag {
    Tag {
        key: key.to_owned(),
        v_type: ValueType::Float64 as i32,
        v_float64: value,
        ..Tag::default()
    }
}

fn timestamp(unix_nanos: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (unix_nanos / 1_000_000_000) as i64,
        nanos: (unix_nanos % 1_000_000_000) as i32,
    }
}

/// Spans from the SDK: a server span under a remote parent (with trace state), with typed
/// attributes, an event, a link and an error status; and a root internal span with status OK.
#[tokio::test]
async fn sdk_spans_arrive_as_exact_jaeger_batches() {
    let jaeger = FakeJaeger::start().await;
    let gw = gateway_to(&jaeger, "sdk").await;
    let url = endpoint(&gw, Client::Grpc, Signal::Traces);
    let t0: u64 = 1_700_000_000_123_456_789;
    let at = move |offset_nanos: u64| UNIX_EPOCH + Duration::from_nanos(t0 + offset_nanos);
    let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let parent_id = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let linked_trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let linked_span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let (server_id, tick_trace, tick_id) = blocking(move || {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_attributes([
                        KeyValue::new("service.name", "checkout"),
                        KeyValue::new("host.name", "node-7"),
                        KeyValue::new("process.pid", 4242i64),
                    ])
                    .build(),
            )
            .with_batch_exporter(span_exporter(Client::Grpc, url))
            .build();
        let tracer = provider.tracer_with_scope(
            InstrumentationScope::builder("shop")
                .with_version("2.1")
                .build(),
        );
        let parent = SpanContext::new(
            trace_id,
            parent_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "a")]).unwrap(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        let mut server = tracer
            .span_builder("GET /cart")
            .with_kind(SpanKind::Server)
            .with_start_time(at(0))
            .with_attributes([
                KeyValue::new("http.route", "/cart"),
                KeyValue::new("http.response.status_code", 500i64),
                KeyValue::new("cart.total", 99.5),
                KeyValue::new("cache.hit", false),
                KeyValue::new(
                    "cart.items",
                    opentelemetry::Value::Array(
                        vec![opentelemetry::StringValue::from("a"), "b".into()].into(),
                    ),
                ),
            ])
            .with_links(vec![Link::with_context(SpanContext::new(
                linked_trace,
                linked_span,
                TraceFlags::SAMPLED,
                true,
                TraceState::NONE,
            ))])
            .start_with_context(&tracer, &cx);
        server.add_event_with_timestamp("retry", at(1_000), vec![KeyValue::new("attempt", 2i64)]);
        server.set_status(Status::error("card declined"));
        let server_id = server.span_context().span_id();
        server.end_with_timestamp(at(40_000_000));
        let mut tick = tracer
            .span_builder("tick")
            .with_kind(SpanKind::Internal)
            .with_start_time(at(0))
            .start_with_context(&tracer, &opentelemetry::Context::new());
        tick.set_status(Status::Ok);
        let tick_ids = (
            tick.span_context().trace_id(),
            tick.span_context().span_id(),
        );
        tick.end_with_timestamp(at(5));
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
        (server_id, tick_ids.0, tick_ids.1)
    })
    .await;

    let batches = jaeger.wait_for_spans(2).await;
    assert_eq!(batches.len(), 1, "one resource, one batch: {batches:?}");
    let batch = &batches[0];
    let process = batch.process.as_ref().expect("process");
    assert_eq!(process.service_name, "checkout");
    let mut process_tags = process.tags.clone();
    process_tags.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        process_tags,
        [string("host.name", "node-7"), int("process.pid", 4242)]
    );
    assert_eq!(batch.spans.len(), 2);
    let server = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "GET /cart")
        .expect("server span");
    assert_eq!(server.trace_id, trace_id.to_bytes());
    assert_eq!(server.span_id, server_id.to_bytes());
    assert_eq!(server.flags, 1, "sampled");
    assert_eq!(server.start_time, Some(timestamp(t0)));
    assert_eq!(
        server.duration,
        Some(prost_types::Duration {
            seconds: 0,
            nanos: 40_000_000
        })
    );
    assert_eq!(
        server.references,
        [
            SpanRef {
                trace_id: trace_id.to_bytes().to_vec(),
                span_id: parent_id.to_bytes().to_vec(),
                ref_type: SpanRefType::ChildOf as i32,
            },
            SpanRef {
                trace_id: linked_trace.to_bytes().to_vec(),
                span_id: linked_span.to_bytes().to_vec(),
                ref_type: SpanRefType::FollowsFrom as i32,
            },
        ]
    );
    assert_eq!(
        server.tags,
        [
            string("otel.scope.name", "shop"),
            string("otel.scope.version", "2.1"),
            string("http.route", "/cart"),
            int("http.response.status_code", 500),
            double("cart.total", 99.5),
            boolean("cache.hit", false),
            string("cart.items", r#"["a","b"]"#),
            string("span.kind", "server"),
            string("otel.status_code", "ERROR"),
            boolean("error", true),
            string("otel.status_description", "card declined"),
            string("w3c.tracestate", "vendor=a"),
        ]
    );
    assert_eq!(
        server.logs,
        [Log {
            timestamp: Some(timestamp(t0 + 1_000)),
            fields: vec![string("event", "retry"), int("attempt", 2)],
        }]
    );
    assert!(server.process.is_none(), "the batch carries the process");

    let tick = batch
        .spans
        .iter()
        .find(|s| s.operation_name == "tick")
        .expect("tick span");
    assert_eq!(tick.trace_id, tick_trace.to_bytes());
    assert_eq!(tick.span_id, tick_id.to_bytes());
    assert!(tick.references.is_empty(), "a root span");
    assert!(tick.logs.is_empty());
    assert_eq!(
        tick.tags,
        [
            string("otel.scope.name", "shop"),
            string("otel.scope.version", "2.1"),
            string("span.kind", "internal"),
            string("otel.status_code", "OK"),
        ]
    );
    assert_eq!(
        tick.duration,
        Some(prost_types::Duration {
            seconds: 0,
            nanos: 5
        })
    );
    let calls = jaeger.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(gw.shutdown().await);
}

// --- failures ---

fn kv(key: &str, value: &str) -> PbKv {
    PbKv {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Two resources (two `PostSpans` calls) of `spans` spans each.
fn request(seed: u8, spans: usize) -> ExportTraceServiceRequest {
    let resource = |service: &str| ResourceSpans {
        resource: Some(PbResource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..spans)
                .map(|i| PbSpan {
                    trace_id: vec![seed; 16],
                    span_id: [[seed; 4], (i as u32 + 1).to_be_bytes()].concat(),
                    name: format!("op-{i}"),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_000_001_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![resource("a"), resource("b")],
    }
}

async fn post(gw: &Gateway, request: &ExportTraceServiceRequest) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}{}",
            gateway::http_base(gw),
            Signal::Traces.http_path()
        ))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
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

/// `UNAVAILABLE` twice on the first call: it is retried with the same bytes and then
/// delivered, and the second resource's call follows once; nothing arrives twice.
#[tokio::test]
async fn unavailable_is_retried_then_delivered() {
    let jaeger = FakeJaeger::start().await;
    jaeger.fail_next(2, Code::Unavailable);
    let gw = gateway_to(&jaeger, "flaky").await;
    post(&gw, &request(3, 2)).await;
    let batches = jaeger.wait_for_spans(4).await;
    let services: Vec<_> = batches
        .iter()
        .map(|b| b.process.as_ref().unwrap().service_name.as_str())
        .collect();
    assert_eq!(services, ["a", "b"]);
    let calls = jaeger.calls();
    let answers: Vec<Code> = calls.iter().map(|c| c.answer).collect();
    assert_eq!(
        answers,
        [Code::Unavailable, Code::Unavailable, Code::Ok, Code::Ok]
    );
    assert_eq!(calls[0].request, calls[2].request, "the same call again");
    wait_for_series(
        &gw,
        "otlp_gateway_exporter_items_sent_total",
        &["exporter=\"jaeger/flaky\""],
        4.0,
    )
    .await;
    assert!(gw.shutdown().await);
}

/// `INVALID_ARGUMENT` on the first call: its spans are dropped and counted, never sent
/// again; the second resource's call is delivered.
#[tokio::test]
async fn invalid_argument_is_dropped_and_counted() {
    let jaeger = FakeJaeger::start().await;
    jaeger.fail_next(1, Code::InvalidArgument);
    let gw = gateway_to(&jaeger, "strict").await;
    post(&gw, &request(5, 3)).await;
    let metrics = wait_for_series(
        &gw,
        "otlp_gateway_exporter_items_dropped_total",
        &["exporter=\"jaeger/strict\""],
        3.0,
    )
    .await;
    assert_eq!(
        series(
            &metrics,
            "otlp_gateway_exporter_items_dropped_total",
            &["exporter=\"jaeger/strict\""]
        ),
        Some(3.0),
        "{metrics}"
    );
    let batches = jaeger.wait_for_spans(3).await;
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].process.as_ref().unwrap().service_name, "b");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answers: Vec<Code> = jaeger.calls().iter().map(|c| c.answer).collect();
    assert_eq!(answers, [Code::InvalidArgument, Code::Ok], "no retry");
    assert!(gw.shutdown().await);
}

// --- the shipped example ---

/// `config.toml`'s commented `[exporters.jaeger.legacy]` example, switched on and used by the
/// traces pipeline, is valid, and builds a `jaeger/legacy` exporter.
#[test]
fn shipped_example_is_valid_once_uncommented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config.toml")).unwrap();
    let mut out = Vec::new();
    let mut in_example = false;
    for line in text.lines() {
        if line == "# [exporters.jaeger.legacy]" {
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
    assert!(out.iter().any(|l| l == "[exporters.jaeger.legacy]"));
    let ca = root.join("Cargo.toml");
    let from = "[pipelines.traces]\n# Exporter ids, \"<kind>/<name>\". Required.\nexporters = [\"debug/console\"]";
    let text = out
        .join("\n")
        .replace("/etc/otlp-gateway/jaeger-ca.pem", &ca.display().to_string());
    assert!(text.contains(from), "traces pipeline");
    let text = text.replace(
        from,
        "[pipelines.traces]\nexporters = [\"debug/console\", \"jaeger/legacy\"]",
    );
    let (config, warnings) =
        otlp_gateway::config::load_and_validate_str_with(&text, "config.toml", |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warnings
            .iter()
            .all(|w| w.starts_with("exporters.jaeger.legacy.tls (line")),
        "{warnings:?}"
    );
    assert!(config.exporter_ids().iter().any(|id| id == "jaeger/legacy"));
}
