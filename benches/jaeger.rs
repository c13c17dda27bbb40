//! Jaeger exporter encode throughput: spans of the load generator's shape
//! (512 per batch) decoded, mapped to Jaeger `api_v2` batches and encoded as
//! framed `PostSpansRequest` messages, without and with gzip; and the mapping
//! alone. Throughput is in spans, so criterion prints spans per second (per
//! core: thread CPU time, see `support/clock.rs`).
//!
//! Target (issue 11): Jaeger encode ≥ 1,000,000 spans/s per core.
//! Measured (shared 2-core machine): map ~290,000, encode ~250,000, encode
//! with gzip ~130,000 spans/s per core — below the target; the decode into
//! owned prost types dominates (see README, Jaeger).
//!
//! `cargo bench --bench jaeger -- --warm-up-time 1 --measurement-time 3`

#[path = "support/clock.rs"]
mod clock;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use otlp_gateway::exporter::jaeger::config::JaegerExporterConfig;
use otlp_gateway::exporter::jaeger::{post_spans_requests, JaegerExporter};
use otlp_gateway::exporter::Exporter;
use otlp_gateway::model::{Context, Signal};
use otlp_gateway::testkit;

const ITEMS: usize = 512;

fn encode(c: &mut Criterion<clock::Clock>) {
    // The exporter's gRPC channel is made (lazily) inside a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("jaeger");
    group.throughput(Throughput::Elements(ITEMS as u64));
    let batch = testkit::batch(Signal::Traces, 42, ITEMS);
    let context = Context::default();
    group.bench_function("map", |b| {
        b.iter(|| post_spans_requests(black_box(&batch)).expect("maps"))
    });
    for compression in ["none", "gzip"] {
        let config: JaegerExporterConfig = toml::from_str(&format!(
            "endpoint = \"http://127.0.0.1:14250\"\ncompression = \"{compression}\""
        ))
        .expect("config");
        let exporter =
            JaegerExporter::build("jaeger/bench", Signal::Traces, &config).expect("exporter");
        let request = exporter.encode(&batch, &context).expect("encodes");
        eprintln!(
            "jaeger/{compression}: {ITEMS} spans, {} bytes of OTLP -> {} items in the request",
            batch.encoded_len(),
            exporter.items(&request),
        );
        group.bench_function(format!("encode/{compression}"), |b| {
            b.iter(|| {
                exporter
                    .encode(black_box(&batch), &context)
                    .expect("encodes")
            })
        });
    }
    group.finish();
}

criterion_group!(name = benches; config = Criterion::default().with_measurement(clock::Clock::from_env()); targets = encode);
criterion_main!(benches);
