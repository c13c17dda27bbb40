//! The `prometheusremotewrite` exporter against a real Prometheus (Debian's
//! 2.42, started per test by `support::prometheus`): OpenTelemetry SDK
//! metrics → gateway → remote-write → Prometheus, then PromQL queries for
//! exact names, labels and values; and a Prometheus that is down, comes up,
//! is killed and comes back, with nothing lost and nothing out of order.

mod support;

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::Resource;
use otlp_gateway::model::Signal;
use otlp_gateway::topology::Gateway;

use support::gateway;
use support::prometheus::{labels, sample_value, Prometheus};
use support::sdk::{blocking, endpoint, Client};

/// A gateway whose metrics pipeline goes to `prometheusremotewrite/<name>` at `url`, quick retries.
async fn gateway_to(name: &str, url: &str) -> Gateway {
    gateway::start(&format!(
        r#"
[exporters.prometheusremotewrite.{name}]
endpoint = "{url}"
timeout = "2s"
num_shards = 2
max_samples_per_send = 50
[exporters.prometheusremotewrite.{name}.retry_on_failure]
initial_interval = "50ms"
max_interval = "200ms"
max_elapsed_time = "60s"
[pipelines.metrics]
exporters = ["prometheusremotewrite/{name}"]
"#
    ))
    .await
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("checkout")
        .with_attribute(KeyValue::new("service.namespace", "shop"))
        .with_attribute(KeyValue::new("service.instance.id", "pod-1"))
        .with_attribute(KeyValue::new("deployment.environment", "test"))
        .build()
}

/// An SDK meter provider exporting to `gw` over gRPC with `temporality`, flushed by hand.
fn provider(gw: &Gateway, temporality: Temporality) -> SdkMeterProvider {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint(gw, Client::Grpc, Signal::Metrics))
        .with_temporality(temporality)
        .build()
        .expect("metric exporter");
    SdkMeterProvider::builder()
        .with_resource(resource())
        .with_periodic_exporter(exporter)
        .build()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

async fn gateway_metrics(gw: &Gateway) -> String {
    reqwest::get(format!("http://{}/metrics", gateway::admin(gw)))
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("body")
}

/// Lines of the gateway's metrics that say `exporter` dropped or refused something.
async fn losses(gw: &Gateway, exporter: &str) -> Vec<String> {
    gateway_metrics(gw)
        .await
        .lines()
        .filter(|l| {
            (l.starts_with("otlp_gateway_exporter_items_dropped_total")
                || l.starts_with("otlp_gateway_prometheus_points_refused_total"))
                && l.contains(&format!("exporter=\"{exporter}\""))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_arrive_with_exact_names_labels_and_values() {
    let prom = Prometheus::start().await;
    let gw = gateway_to("sdk", &prom.write_url()).await;
    let provider = provider(&gw, Temporality::Cumulative);
    let observations = [0.05, 0.3, 0.3, 2.0];
    blocking(move || {
        let meter = provider.meter("prw-test");
        let orders = meter.u64_counter("orders").with_unit("{order}").build();
        orders.add(3, &[KeyValue::new("tenant.id", "t-1")]);
        orders.add(4, &[KeyValue::new("tenant.id", "t-1")]);
        orders.add(1, &[KeyValue::new("tenant.id", "t-2")]);
        let carts = meter.i64_up_down_counter("carts.open").build();
        carts.add(5, &[]);
        carts.add(-2, &[]);
        let temperature = meter.f64_gauge("cpu.temperature").with_unit("Cel").build();
        temperature.record(41.5, &[KeyValue::new("cpu", 0)]);
        let latency = meter
            .f64_histogram("checkout.duration")
            .with_unit("s")
            .with_boundaries(vec![0.1, 0.5, 1.0])
            .build();
        for value in observations {
            latency.record(value, &[KeyValue::new("http.route", "/pay")]);
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;

    let identity = [("instance", "pod-1"), ("job", "shop/checkout")];
    let with = |extra: &[(&str, &str)]| {
        let mut all = identity.to_vec();
        all.extend_from_slice(extra);
        pairs(&all)
    };

    // Monotonic sum → counter with _total, its attributes sanitised into labels.
    let t1 = prom
        .wait_for_value("orders_total{tenant_id=\"t-1\"}", 7.0)
        .await;
    assert_eq!(
        labels(&t1),
        with(&[("__name__", "orders_total"), ("tenant_id", "t-1")])
    );
    prom.wait_for_value("orders_total{tenant_id=\"t-2\"}", 1.0)
        .await;
    // Up-down counter (non-monotonic sum) → gauge, no suffix.
    let carts = prom.wait_for_value("carts_open", 3.0).await;
    assert_eq!(labels(&carts), with(&[("__name__", "carts_open")]));
    // Gauge with unit Cel → _celsius.
    let temp = prom.wait_for_value("cpu_temperature_celsius", 41.5).await;
    assert_eq!(
        labels(&temp),
        with(&[("__name__", "cpu_temperature_celsius"), ("cpu", "0")])
    );
    // Histogram → cumulative buckets with +Inf, _sum and _count, unit s → _seconds.
    for (le, count) in [("0.1", 1.0), ("0.5", 3.0), ("1", 3.0), ("+Inf", 4.0)] {
        let bucket = prom
            .wait_for_value(
                &format!("checkout_duration_seconds_bucket{{le=\"{le}\"}}"),
                count,
            )
            .await;
        assert_eq!(
            labels(&bucket),
            with(&[
                ("__name__", "checkout_duration_seconds_bucket"),
                ("http_route", "/pay"),
                ("le", le)
            ])
        );
    }
    let sum: f64 = observations.iter().sum();
    prom.wait_for_value("checkout_duration_seconds_sum", sum)
        .await;
    prom.wait_for_value("checkout_duration_seconds_count", 4.0)
        .await;
    // PromQL on the buckets: the median falls in (0.1, 0.5], 1 of its 2 observations in.
    let median = prom
        .query("histogram_quantile(0.5, checkout_duration_seconds_bucket)")
        .await;
    let median = sample_value(&median[0]).expect("a median");
    assert!((median - 0.3).abs() < 1e-9, "median {median}");
    // The other resource attributes in target_info.
    let info = prom.wait_for_value("target_info", 1.0).await;
    assert_eq!(
        labels(&info),
        with(&[
            ("__name__", "target_info"),
            ("deployment_environment", "test")
        ])
    );

    assert!(losses(&gw, "prometheusremotewrite/sdk").await.is_empty());
    assert_eq!(
        prom.own_metric("prometheus_tsdb_out_of_order_samples_total")
            .await,
        0.0
    );
    assert!(gw.shutdown().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_is_converted_to_cumulative() {
    let prom = Prometheus::start().await;
    let gw = gateway_to("delta", &prom.write_url()).await;
    let provider = provider(&gw, Temporality::Delta);
    blocking(move || {
        let meter = provider.meter("prw-delta");
        let requests = meter.u64_counter("http.requests").build();
        let sizes = meter
            .u64_histogram("payload.size")
            .with_unit("By")
            .with_boundaries(vec![100.0, 1000.0])
            .build();
        for (add, size) in [(3, 50), (4, 500), (5, 5000)] {
            requests.add(add, &[KeyValue::new("code", "200")]);
            sizes.record(size, &[]);
            provider.force_flush().expect("flush");
            std::thread::sleep(Duration::from_millis(20));
        }
        provider.shutdown().expect("shutdown");
    })
    .await;
    prom.wait_for_value("http_requests_total{code=\"200\"}", 12.0)
        .await;
    for (le, count) in [("100", 1.0), ("1000", 2.0), ("+Inf", 3.0)] {
        prom.wait_for_value(&format!("payload_size_bytes_bucket{{le=\"{le}\"}}"), count)
            .await;
    }
    prom.wait_for_value("payload_size_bytes_sum", 5550.0).await;
    // Every delta export became one cumulative sample.
    prom.wait_for_value("count_over_time(http_requests_total[10m])", 3.0)
        .await;
    assert!(losses(&gw, "prometheusremotewrite/delta").await.is_empty());
    assert!(gw.shutdown().await, "drained");
}

/// Rounds of counter increments over 12 series while Prometheus is down, up,
/// killed and back: every round arrives as one sample per series, none is
/// dropped or refused as out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_then_back_loses_nothing() {
    const SERIES: u64 = 12;
    let mut prom = Prometheus::reserve();
    let gw = gateway_to("outage", &prom.write_url()).await;
    let provider = provider(&gw, Temporality::Cumulative);
    let meter = provider.meter("prw-outage");
    let jobs = meter.u64_counter("jobs").build();
    let round = {
        let provider = provider.clone();
        move || {
            let provider = provider.clone();
            let jobs = jobs.clone();
            blocking(move || {
                for shard in 0..SERIES {
                    jobs.add(1, &[KeyValue::new("shard", shard.to_string())]);
                }
                provider.force_flush().expect("flush");
                // Distinct millisecond timestamps for the next round.
                std::thread::sleep(Duration::from_millis(20));
            })
        }
    };
    let mut rounds = 0;
    // Down from the start: the first rounds wait in the gateway, retried.
    for _ in 0..3 {
        round().await;
        rounds += 1;
    }
    prom = prom.restart().await;
    prom.wait_for_value("sum(jobs_total)", (rounds * SERIES) as f64)
        .await;
    for _ in 0..2 {
        round().await;
        rounds += 1;
    }
    prom.wait_for_value("sum(jobs_total)", (rounds * SERIES) as f64)
        .await;
    // Killed while the gateway keeps sending.
    prom.stop();
    for _ in 0..3 {
        round().await;
        rounds += 1;
    }
    prom = prom.restart().await;
    round().await;
    rounds += 1;
    prom.wait_for_value("sum(jobs_total)", (rounds * SERIES) as f64)
        .await;
    // One sample per round in every series: nothing lost, nothing merged.
    for shard in 0..SERIES {
        prom.wait_for_value(
            &format!("count_over_time(jobs_total{{shard=\"{shard}\"}}[10m])"),
            rounds as f64,
        )
        .await;
    }
    let counts = prom.query("count_over_time(jobs_total[10m])").await;
    assert_eq!(counts.len() as u64, SERIES);
    assert!(losses(&gw, "prometheusremotewrite/outage").await.is_empty());
    assert_eq!(
        prom.own_metric("prometheus_tsdb_out_of_order_samples_total")
            .await,
        0.0
    );
    let text = gateway_metrics(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("otlp_gateway_exporter_retries_total")
                && l.contains("prometheusremotewrite/outage")),
        "the outage was retried"
    );
    drop(provider);
    assert!(gw.shutdown().await, "drained");
}

/// The seed's e-commerce alert queries on span metrics: SDK spans → the
/// spanmetrics connector → the metrics pipeline → remote-write → Prometheus.
/// 20 server spans of `POST /pay`: 18 answered 200 in 20 ms, 2 answered 500 in
/// 300 ms (status ERROR). The 5xx ratio is exactly 0.1 and, with bounds 10 ms,
/// 50 ms, 100 ms, 500 ms, p99 interpolates to 0.1 + 0.4 × (19.8 − 18) / 2 = 0.46 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_metrics_answer_the_seed_alert_queries() {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::time::SystemTime;

    let prom = Prometheus::start().await;
    let gw = gateway::start(&format!(
        r#"
[connectors.spanmetrics]
metrics_flush_interval = "200ms"
histogram.explicit.buckets = ["10ms", "50ms", "100ms", "500ms"]
dimensions = [{{ name = "http.response.status_code" }}]
[exporters.debug.spans]
[exporters.prometheusremotewrite.red]
endpoint = "{url}"
timeout = "2s"
[exporters.prometheusremotewrite.red.retry_on_failure]
initial_interval = "50ms"
max_interval = "200ms"
[pipelines.traces]
exporters = ["debug/spans"]
[pipelines.metrics]
exporters = ["prometheusremotewrite/red"]
"#,
        url = prom.write_url()
    ))
    .await;
    let url = endpoint(&gw, Client::Grpc, Signal::Traces);
    blocking(move || {
        let provider = SdkTracerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(support::sdk::span_exporter(Client::Grpc, url))
            .build();
        let tracer = provider.tracer("shop");
        let start = SystemTime::now();
        for i in 0..20 {
            let failed = i % 10 == 7;
            let mut span = tracer
                .span_builder("POST /pay")
                .with_kind(SpanKind::Server)
                .with_start_time(start)
                .with_attributes([KeyValue::new(
                    "http.response.status_code",
                    if failed { 500 } else { 200 },
                )])
                .start(&tracer);
            if failed {
                span.set_status(Status::error("card declined"));
            }
            span.end_with_timestamp(start + Duration::from_millis(if failed { 300 } else { 20 }));
        }
        drop(tracer);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await;

    let calls = prom
        .wait_for_value("sum(calls_total{span_name=\"POST /pay\"})", 20.0)
        .await;
    assert!(labels(&calls).is_empty(), "one aggregate: {calls}");
    let errors = prom
        .wait_for_value(
            "calls_total{span_name=\"POST /pay\", http_response_status_code=\"500\"}",
            2.0,
        )
        .await;
    let errors = labels(&errors);
    for expected in [
        ("service_name", "checkout"),
        ("span_kind", "SPAN_KIND_SERVER"),
        ("status_code", "STATUS_CODE_ERROR"),
    ] {
        assert!(
            errors.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {errors:?}"
        );
    }
    let ratio = prom
        .query(
            "sum(calls_total{http_response_status_code=~\"5..\"}) / sum(calls_total{span_name=\"POST /pay\"})",
        )
        .await;
    let ratio = sample_value(&ratio[0]).expect("a 5xx ratio");
    assert!((ratio - 0.1).abs() < 1e-9, "5xx ratio {ratio}");
    prom.wait_for_value("sum(duration_seconds_count{span_name=\"POST /pay\"})", 20.0)
        .await;
    let p99 = prom
        .query("histogram_quantile(0.99, sum by (le) (duration_seconds_bucket{span_name=\"POST /pay\"}))")
        .await;
    let p99 = sample_value(&p99[0]).expect("a p99");
    assert!((p99 - 0.46).abs() < 1e-9, "p99 {p99}");
    assert!(losses(&gw, "prometheusremotewrite/red").await.is_empty());
    assert!(gw.shutdown().await, "drained");
}

/// `config.toml`'s commented `[exporters.prometheusremotewrite.prometheus]` example,
/// uncommented and used by the metrics pipeline, is valid.
#[test]
fn shipped_example_is_valid_once_uncommented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config.toml")).expect("config.toml");
    let mut out = Vec::new();
    let mut in_example = false;
    for line in text.lines() {
        if line == "# [exporters.prometheusremotewrite.prometheus]" {
            in_example = true;
        } else if line.starts_with("# ---") {
            in_example = false;
        }
        if !in_example || line.starts_with("# #") || line == "#" {
            out.push(line.to_owned());
        } else {
            out.push(line.strip_prefix("# ").unwrap_or(line).to_owned());
        }
    }
    let text = out.join("\n").replace(
        "[pipelines.metrics]\nexporters = [\"debug/console\"]",
        "[pipelines.metrics]\nexporters = [\"debug/console\", \"prometheusremotewrite/prometheus\"]",
    );
    assert!(text.contains("\"prometheusremotewrite/prometheus\"]"));
    std::env::set_var("PROMETHEUS_PASSWORD", "example");
    let (config, warnings) =
        otlp_gateway::config::load_and_validate_str_with(&text, "config.toml", |_| None)
            .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("ignored: the endpoint is http://")),
        "{warnings:?}"
    );
    let example = &config.exporters.prometheusremotewrite["prometheus"];
    assert_eq!(example.endpoint, "http://127.0.0.1:9090/api/v1/write");
    assert_eq!(
        example.promote_resource_attributes,
        ["deployment.environment"]
    );
}
