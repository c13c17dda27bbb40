//! The `prometheusremotewrite` exporter's encode step: OTLP metrics batch →
//! decode → translate (names, labels, buckets) → `WriteRequest` protobuf →
//! snappy, per 2,000-point batch of the testkit's mix (a third each gauges,
//! cumulative counters and 15-bucket histograms, 17 samples per histogram point).
//!
//! Throughput is in samples (what Prometheus stores; target 2,000,000/s per
//! core) and, in the second group, in OTLP data points. Thread CPU time.
//!
//! `cargo bench --bench remote_write -- --warm-up-time 1 --measurement-time 3`

#[path = "support/clock.rs"]
mod clock;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otlp_gateway::exporter::prometheus::config::PrometheusExporterConfig;
use otlp_gateway::exporter::prometheus::translate::{TranslateConfig, Translator};
use otlp_gateway::exporter::prometheus::PrometheusExporter;
use otlp_gateway::exporter::Exporter;
use otlp_gateway::model::{Context, Signal};
use otlp_gateway::testkit;
use prost::Message;

const POINTS: usize = 2000;

fn encode(c: &mut Criterion<clock::Clock>) {
    let config: PrometheusExporterConfig =
        toml::from_str("endpoint = \"http://127.0.0.1:9/api/v1/write\"").expect("config");
    let exporter =
        PrometheusExporter::build("prometheusremotewrite/bench", Signal::Metrics, &config)
            .expect("exporter");
    let batch = testkit::batch(Signal::Metrics, 7, POINTS);
    let request = ExportMetricsServiceRequest::decode(batch.to_bytes()).expect("request");
    let samples = Translator::new(TranslateConfig::default())
        .translate(&request, None)
        .samples();
    eprintln!("{POINTS} data points → {samples} samples per batch");
    let context = Context::default();

    let mut group = c.benchmark_group("remote_write_samples");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("translate_encode_snappy", |b| {
        b.iter(|| {
            black_box(Exporter::encode(&exporter, black_box(&batch), &context).expect("encode"))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("remote_write_points");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("translate_encode_snappy", |b| {
        b.iter(|| {
            black_box(Exporter::encode(&exporter, black_box(&batch), &context).expect("encode"))
        })
    });
    group.finish();
}

criterion_group!(name = benches; config = Criterion::default().with_measurement(clock::Clock::from_env()); targets = encode);
criterion_main!(benches);
