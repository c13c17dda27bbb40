//! Span metrics end to end: the OpenTelemetry SDK sends known spans (exact
//! start and end times) to a running gateway whose traces pipeline has the
//! spanmetrics connector and whose metrics pipeline exports OTLP to a fake
//! backend; the latest cumulative `calls` and `duration` points received must
//! match the spans sent exactly, series by series and bucket by bucket —
//! also when tail sampling drops most of the traces.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue as PbKeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use otlp_gateway::model::Signal;

use support::fake_otlp::FakeOtlp;
use support::gateway;
use support::sdk::{self, Client};

/// The histogram bounds of the tests, in milliseconds.
const BOUNDS_MS: [u64; 4] = [10, 50, 100, 500];

fn connector(extra: &str) -> String {
    format!(
        r#"
[connectors.spanmetrics]
metrics_flush_interval = "200ms"
histogram.explicit.buckets = ["10ms", "50ms", "100ms", "500ms"]
dimensions = [{{ name = "http.response.status_code" }}, {{ name = "tenant.id", default = "none" }}]
{extra}
[pipelines.traces]
exporters = ["otlp/down"]
[pipelines.metrics]
exporters = ["otlp/down"]
"#
    )
}

/// One span as sent.
#[derive(Debug, Clone)]
struct Sent {
    name: &'static str,
    kind: SpanKind,
    error: bool,
    code: Option<i64>,
    millis: u64,
}

/// `traces` traces of a root `GET /cart` (server; every tenth an error with
/// code 500, the others 200) and a `SELECT cart` child (client, no code).
fn shop_traces(traces: usize) -> Vec<Vec<Sent>> {
    // 50 ms sits exactly on a bound: it belongs to the 50 ms bucket.
    let durations = [5, 20, 50, 70, 300, 800];
    (0..traces)
        .map(|i| {
            let error = i % 10 == 3;
            vec![
                Sent {
                    name: "GET /cart",
                    kind: SpanKind::Server,
                    error,
                    code: Some(if error { 500 } else { 200 }),
                    millis: durations[i % durations.len()],
                },
                Sent {
                    name: "SELECT cart",
                    kind: SpanKind::Client,
                    error: false,
                    code: None,
                    millis: 3 + (i as u64 % 4) * 40,
                },
            ]
        })
        .collect()
}

/// Sends `traces` with the SDK over gRPC, as service `checkout` of tenant `acme`.
async fn send(gw: &otlp_gateway::topology::Gateway, traces: Vec<Vec<Sent>>) {
    send_as(gw, "acme", traces).await;
}

/// Sends `traces` with the SDK over gRPC, as service `checkout` with resource `tenant.id`.
async fn send_as(
    gw: &otlp_gateway::topology::Gateway,
    tenant: &'static str,
    traces: Vec<Vec<Sent>>,
) {
    let url = sdk::endpoint(gw, Client::Grpc, Signal::Traces);
    sdk::blocking(move || {
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name("checkout")
                    .with_attribute(KeyValue::new("tenant.id", tenant))
                    .build(),
            )
            .with_batch_exporter(sdk::span_exporter(Client::Grpc, url))
            .build();
        let tracer = provider.tracer("shop");
        let start = SystemTime::now();
        for trace in traces {
            let mut root_cx = None;
            for sent in trace {
                let mut attributes = Vec::new();
                if let Some(code) = sent.code {
                    attributes.push(KeyValue::new("http.response.status_code", code));
                }
                let builder = tracer
                    .span_builder(sent.name)
                    .with_kind(sent.kind.clone())
                    .with_start_time(start)
                    .with_attributes(attributes);
                let mut span = match &root_cx {
                    None => builder.start(&tracer),
                    Some(cx) => builder.start_with_context(&tracer, cx),
                };
                if sent.error {
                    span.set_status(Status::error("declined"));
                }
                span.end_with_timestamp(start + Duration::from_millis(sent.millis));
                if root_cx.is_none() {
                    root_cx = Some(opentelemetry::Context::current_with_span(span));
                }
            }
        }
        drop(tracer);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;
}

/// calls and bucket counts of one series.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    calls: i64,
    buckets: Vec<u64>,
}

/// The series a span belongs to, rendered as its sorted `key=value` attributes.
fn series_of(sent: &Sent, tenant: &str) -> String {
    let kind = match sent.kind {
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        _ => "SPAN_KIND_INTERNAL",
    };
    let status = if sent.error {
        "STATUS_CODE_ERROR"
    } else {
        "STATUS_CODE_UNSET"
    };
    let mut parts = vec![
        "service.name=checkout".to_owned(),
        format!("span.name={}", sent.name),
        format!("span.kind={kind}"),
        format!("status.code={status}"),
        format!("tenant.id={tenant}"),
    ];
    if let Some(code) = sent.code {
        parts.push(format!("http.response.status_code={code}"));
    }
    parts.sort();
    parts.join(",")
}

/// What the gateway must report for `traces`: per series, the calls and the
/// count in each bucket (upper bounds inclusive, one more above the last).
fn expected(traces: &[Vec<Sent>]) -> BTreeMap<String, Counts> {
    expected_for(traces, "acme")
}

/// [`expected`] for spans of `tenant`.
fn expected_for(traces: &[Vec<Sent>], tenant: &str) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for sent in traces.iter().flatten() {
        let counts = out
            .entry(series_of(sent, tenant))
            .or_insert_with(|| Counts {
                calls: 0,
                buckets: vec![0; BOUNDS_MS.len() + 1],
            });
        counts.calls += 1;
        let bucket = BOUNDS_MS
            .iter()
            .position(|&bound| sent.millis <= bound)
            .unwrap_or(BOUNDS_MS.len());
        counts.buckets[bucket] += 1;
    }
    out
}

fn label(attributes: &[PbKeyValue]) -> String {
    let mut parts: Vec<String> = attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            format!("{}={value}", kv.key)
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// The latest cumulative point of every series the fake received.
fn received(fake: &FakeOtlp) -> BTreeMap<String, Counts> {
    // series -> (time, counts)
    let mut calls: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut buckets: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    for request in fake.received_metrics() {
        for metric in request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            match metric.data.as_ref() {
                Some(metric::Data::Sum(sum)) => {
                    assert_eq!(metric.name, "calls");
                    for p in &sum.data_points {
                        let Some(number_data_point::Value::AsInt(value)) = p.value else {
                            panic!("calls is an int sum");
                        };
                        let entry = calls.entry(label(&p.attributes)).or_default();
                        if p.time_unix_nano >= entry.0 {
                            *entry = (p.time_unix_nano, value);
                        }
                    }
                }
                Some(metric::Data::Histogram(histogram)) => {
                    assert_eq!(
                        (metric.name.as_str(), metric.unit.as_str()),
                        ("duration", "s")
                    );
                    for p in &histogram.data_points {
                        assert_eq!(p.explicit_bounds, [0.01, 0.05, 0.1, 0.5]);
                        assert_eq!(p.count, p.bucket_counts.iter().sum::<u64>());
                        let entry = buckets.entry(label(&p.attributes)).or_default();
                        if p.time_unix_nano >= entry.0 {
                            *entry = (p.time_unix_nano, p.bucket_counts.clone());
                        }
                    }
                }
                other => panic!("unexpected metric {other:?}"),
            }
        }
    }
    calls
        .into_iter()
        .map(|(series, (_, calls))| {
            let buckets = buckets
                .get(&series)
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            (series, Counts { calls, buckets })
        })
        .collect()
}

/// Waits (up to 30 s) until the received series equal `want`, then asserts they do.
async fn assert_received(fake: &FakeOtlp, want: &BTreeMap<String, Counts>) {
    for _ in 0..300 {
        if &received(fake) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(&received(fake), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_is_counted_into_calls_and_duration_buckets() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{}",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 100_000),
        connector("")
    ))
    .await;
    let traces = shop_traces(120);
    let want = expected(&traces);
    assert_eq!(want.len(), 3, "ok, error and database series");
    send(&gw, traces.clone()).await;
    assert_received(&fake, &want).await;
    // The spans themselves went on too, every one.
    fake.wait_for_items(Signal::Traces, 240).await;

    // More spans add to the same cumulative series.
    send(&gw, traces.clone()).await;
    let doubled: BTreeMap<String, Counts> = want
        .iter()
        .map(|(series, c)| {
            let buckets = c.buckets.iter().map(|b| b * 2).collect();
            (
                series.clone(),
                Counts {
                    calls: c.calls * 2,
                    buckets,
                },
            )
        })
        .collect();
    assert_received(&fake, &doubled).await;
    assert!(gw.shutdown().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_counted_before_tail_sampling_drops_their_traces() {
    let fake = FakeOtlp::start().await;
    let sampling = r#"
[processors.tail_sampling]
decision_wait = "1s"
decision_wait_after_root = "500ms"
[[processors.tail_sampling.policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
"#;
    let gw = gateway::start(&format!(
        "{}{}",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 100_000),
        connector(sampling)
    ))
    .await;
    let traces = shop_traces(200);
    let kept: u64 = traces
        .iter()
        .filter(|t| t.iter().any(|s| s.error))
        .map(|t| t.len() as u64)
        .sum();
    let all: u64 = traces.iter().map(|t| t.len() as u64).sum();
    assert!(kept * 5 < all, "the sampler drops most traces");
    let want = expected(&traces);
    send(&gw, traces).await;
    assert_received(&fake, &want).await;
    fake.wait_for_items(Signal::Traces, kept).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fake.accepted_items(Signal::Traces),
        kept,
        "only the error traces were exported"
    );
    let calls: i64 = received(&fake).values().map(|c| c.calls).sum();
    assert_eq!(calls as u64, all, "while span metrics counted every span");
    assert!(gw.shutdown().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_over_the_cardinality_limit_are_counted_in_the_overflow_series() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{}",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 100_000),
        connector("aggregation_cardinality_limit = 2")
    ))
    .await;
    // The first two series (in arrival order) get in; the rest overflow.
    let traces = shop_traces(20);
    let mut want = expected(&traces[..1]);
    let mut overflow = Counts {
        calls: 0,
        buckets: vec![0; BOUNDS_MS.len() + 1],
    };
    for (series, counts) in expected(&traces[1..]) {
        match want.get_mut(&series) {
            Some(known) => {
                known.calls += counts.calls;
                for (a, b) in known.buckets.iter_mut().zip(&counts.buckets) {
                    *a += b;
                }
            }
            None => {
                overflow.calls += counts.calls;
                for (a, b) in overflow.buckets.iter_mut().zip(&counts.buckets) {
                    *a += b;
                }
            }
        }
    }
    assert!(overflow.calls > 0);
    want.insert("otel.metric.overflow=true".to_owned(), overflow.clone());
    send(&gw, traces).await;
    assert_received(&fake, &want).await;

    let text = reqwest::get(format!("http://{}/metrics", gateway::admin(&gw)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let counted: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("otlp_gateway_spanmetrics_overflow_spans_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("overflow counter on /metrics");
    // The recorder is process-wide: other tests of this binary may add to it.
    assert!(counted >= overflow.calls as f64, "{counted}");
    assert!(gw.shutdown().await, "drained");
}

/// `config.toml` with the commented-out `[connectors.spanmetrics]` example switched on.
fn shipped_with_spanmetrics() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config.toml")).unwrap();
    let mut out = Vec::new();
    let mut in_example = false;
    for line in text.lines() {
        if line == "# [connectors.spanmetrics]" {
            in_example = true;
        } else if line.starts_with("# ---") {
            in_example = false;
        }
        if !in_example {
            out.push(line.to_owned());
        } else if line.starts_with("# #") {
            out.push(String::new()); // Keep line numbers.
        } else {
            out.push(line.strip_prefix("# ").unwrap_or(line).to_owned());
        }
    }
    out.join("\n")
}

#[test]
fn the_shipped_example_is_valid_once_uncommented_and_described() {
    let text = shipped_with_spanmetrics();
    let (config, warnings) =
        otlp_gateway::config::load_and_validate_str(&text, "config.toml").expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    let spanmetrics = config.connectors.spanmetrics.as_ref().expect("switched on");
    assert_eq!(spanmetrics.dimensions.len(), 2);
    assert_eq!(spanmetrics.histogram.explicit.buckets.len(), 11);
    let described = otlp_gateway::config::describe(&config);
    assert!(
        described.contains(
            "connector spanmetrics: traces -> metrics, spanmetrics(metrics [calls, duration], flush every 15s, \
             expire never, cardinality limit 10000, dimensions [service.name, span.name, span.kind, status.code, \
             http.response.status_code, tenant.id (default \"unknown\")], buckets [5ms, 10ms, 25ms, 50ms, 100ms, \
             250ms, 500ms, 1s, 2s 500ms, 5s, 10s])\n"
        ),
        "{described}"
    );
    assert!(
        described.contains(
            "exporters [debug/console], connectors [spanmetrics] (every span, before sampling)\n"
        ),
        "{described}"
    );
    assert!(
        described.contains("pipeline metrics: receivers [otlp, spanmetrics] -> "),
        "{described}"
    );
}

#[test]
fn span_metrics_need_both_pipelines_and_report_their_key_paths() {
    let text = "[exporters.debug.console]\n\
                [pipelines.traces]\nexporters = [\"debug/console\"]\n\
                [connectors.spanmetrics]\n\
                histogram.explicit.buckets = [\"1s\", \"500ms\"]\n";
    let errors = otlp_gateway::config::load_and_validate_str(text, "test.toml")
        .expect_err("invalid")
        .lines();
    assert_eq!(
        errors,
        [
            "connectors.spanmetrics (line 4): span metrics need a traces pipeline to read ([pipelines.traces]) \
             and a metrics pipeline to feed ([pipelines.metrics])",
            "connectors.spanmetrics.histogram.explicit.buckets[1] (line 5): bounds must increase: 500ms is not greater than 1s",
        ]
    );
}

/// With tenancy, each tenant's span metrics stay in batches of their own,
/// carry the tenant to the exporter (`X-Scope-OrgID`) and follow the
/// tenant's route: globex's route sends everything (traces and the metrics
/// made of them) to its own backend, and its spans are still counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_span_metrics_keep_its_context_and_route() {
    let fake = FakeOtlp::start().await;
    let gold = FakeOtlp::start().await;
    let exporter = |name: &str, fake: &FakeOtlp| {
        gateway::otlp_exporter_named(name, &fake.grpc_url(), "grpc", 100_000).replacen(
            "compression = \"none\"\n",
            "compression = \"none\"\ntenant_header = \"X-Scope-OrgID\"\n",
            1,
        )
    };
    let gw = gateway::start(&format!(
        r#"{}{}{}
[tenancy]
[[routes]]
name = "gold"
tenants = ["globex"]
exporters = ["otlp/gold"]
"#,
        exporter("down", &fake),
        exporter("gold", &gold),
        connector("")
    ))
    .await;
    let acme = shop_traces(30);
    let globex = shop_traces(50);
    send_as(&gw, "acme", acme.clone()).await;
    send_as(&gw, "globex", globex.clone()).await;
    assert_received(&fake, &expected_for(&acme, "acme")).await;
    assert_received(&gold, &expected_for(&globex, "globex")).await;
    for (backend, tenant) in [(&fake, "acme"), (&gold, "globex")] {
        for request in backend.requests() {
            assert_eq!(
                request.header("x-scope-orgid"),
                Some(tenant),
                "{:?}",
                request.signal
            );
            if let support::fake_otlp::Payload::Metrics(metrics) = &request.payload {
                for rm in &metrics.resource_metrics {
                    for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                        let Some(metric::Data::Sum(sum)) = &m.data else {
                            continue;
                        };
                        for p in &sum.data_points {
                            assert!(label(&p.attributes).contains(&format!("tenant.id={tenant}")));
                        }
                    }
                }
            }
        }
    }
    gold.wait_for_items(Signal::Traces, 100).await;
    assert!(gw.shutdown().await, "drained");
}
