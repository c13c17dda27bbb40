//! Tail sampling with a real OTLP SDK client (`opentelemetry-otlp` over
//! gRPC): e-commerce traces of 3 to 30 spans, some with errors, VIP users or
//! orders over 1000 (and some at exactly 1000.0, which is not over); 20,000
//! ordinary traces; and spans that end 16 to 21 s after the rest of their
//! trace, long after its decision.
//!
//! Every error, VIP and high-value trace arrives complete, late spans
//! included; the ordinary traces are kept at 10 % ± 1.5 %, and every kept
//! one is complete.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use otlp_gateway::model::Signal;

use support::fake_otlp::FakeOtlp;
use support::gateway;

const SAMPLING: &str = r#"
[processors.tail_sampling]
decision_wait = "4s"
decision_wait_after_root = "2s"
decision = "first_match"
num_traces = 100000
[[processors.tail_sampling.policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
[[processors.tail_sampling.policies]]
name = "vip"
type = "boolean_attribute"
boolean_attribute = { key = "user.vip", value = true }
[[processors.tail_sampling.policies]]
name = "high-value"
type = "numeric_attribute"
numeric_attribute = { key = "order.amount", min_value = 1000, min_inclusive = false }
[[processors.tail_sampling.policies]]
name = "baseline"
type = "probabilistic"
probabilistic = { sampling_percentage = 10 }
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Vip,
    HighValue,
    Ordinary,
}

const ORDINARY: usize = 20_000;
/// One must-keep trace (of each kind in turn) after every this many ordinary ones.
const EVERY: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_traces_are_sampled_whole_with_late_spans() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{SAMPLING}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 2_000_000)
    ))
    .await;
    let url = gateway::grpc_url(&gw);

    let handle = tokio::runtime::Handle::current();
    let traces = tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build()
            .expect("span exporter");
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(400_000)
                    .with_max_export_batch_size(4096)
                    .with_scheduled_delay(Duration::from_millis(50))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("shop");
        // trace id -> (kind, spans expected)
        let mut traces: HashMap<[u8; 16], (Kind, usize)> = HashMap::new();
        let mut late = Vec::new();
        let mut must_keep = 0;
        let mut ordinary = 0;
        let mut n = 0usize;
        while ordinary < ORDINARY {
            let kind = if n % EVERY == EVERY - 1 {
                must_keep += 1;
                [Kind::Error, Kind::Vip, Kind::HighValue][must_keep % 3]
            } else {
                ordinary += 1;
                Kind::Ordinary
            };
            // Must-keep traces: 3 to 30 spans; ordinary ones 3 to 5 (volume).
            let spans = if kind == Kind::Ordinary {
                3 + n % 3
            } else {
                3 + n % 28
            };
            let amount = match (kind, n % 7) {
                (Kind::HighValue, _) => 1000.01,
                (_, 0) => 1000.0,
                _ => 42.5,
            };
            let root = tracer
                .span_builder("POST /checkout")
                .with_kind(SpanKind::Server)
                .with_attributes([KeyValue::new("order.amount", 10.0)])
                .start(&tracer);
            let trace_id = root.span_context().trace_id().to_bytes();
            let cx = opentelemetry::Context::current_with_span(root);
            let mut expected = 1;
            for i in 1..spans {
                let mut child = tracer.start_with_context(format!("step-{i}"), &cx);
                if i == spans - 1 {
                    match kind {
                        Kind::Error => child.set_status(Status::error("payment declined")),
                        Kind::Vip => child.set_attribute(KeyValue::new("user.vip", true)),
                        _ => child.set_attribute(KeyValue::new("order.amount", amount)),
                    }
                } else {
                    child.set_attribute(KeyValue::new("user.vip", false));
                }
                child.end();
                expected += 1;
            }
            // One trace in 50 gets a span that ends long after its trace was decided.
            if n % 50 == 7 {
                late.push(tracer.start_with_context("late callback", &cx));
                expected += 1;
            }
            cx.span().end();
            traces.insert(trace_id, (kind, expected));
            n += 1;
        }
        provider.force_flush().expect("flush");
        std::thread::sleep(Duration::from_secs(16));
        let half = late.len() / 2;
        for mut span in late.drain(..half) {
            span.end();
        }
        provider.force_flush().expect("flush");
        std::thread::sleep(Duration::from_secs(5));
        for mut span in late {
            span.end();
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
        traces
    })
    .await
    .expect("client");

    // Wait for every decision: until the count stops growing.
    let mut last = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = fake.accepted_items(Signal::Traces);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let mut received: HashMap<Vec<u8>, usize> = HashMap::new();
    for request in fake.received_traces() {
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            *received.entry(span.trace_id.clone()).or_default() += 1;
        }
    }
    let (mut ordinary, mut kept) = (0usize, 0usize);
    for (id, (kind, expected)) in &traces {
        let got = received.get(id.as_slice()).copied().unwrap_or(0);
        match kind {
            Kind::Ordinary => {
                ordinary += 1;
                if got > 0 {
                    kept += 1;
                    assert_eq!(got, *expected, "a kept ordinary trace is complete");
                }
            }
            _ => assert_eq!(got, *expected, "{kind:?} trace arrives complete"),
        }
    }
    assert_eq!(ordinary, ORDINARY);
    let share = kept as f64 / ordinary as f64;
    assert!(
        (0.085..=0.115).contains(&share),
        "baseline share {share} over {ordinary} ordinary traces"
    );
    assert!(gw.shutdown().await);
}
