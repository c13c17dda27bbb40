//! Elasticsearch exporter encode throughput: spans and log records of the
//! load generator's shape (512 per batch) turned into `_bulk` NDJSON
//! (action and source line per document, index name and id included), with
//! and without gzip. Throughput is in documents, so criterion prints
//! documents per second (per core: thread CPU time, see `support/clock.rs`).
//!
//! Target (issue 11): 500,000 span documents/s per core before compression.
//!
//! `cargo bench --bench elasticsearch -- --warm-up-time 1 --measurement-time 3`

#[path = "support/clock.rs"]
mod clock;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use otlp_gateway::exporter::elasticsearch::config::ElasticsearchExporterConfig;
use otlp_gateway::exporter::elasticsearch::ElasticsearchExporter;
use otlp_gateway::exporter::Exporter;
use otlp_gateway::model::{Context, Signal};
use otlp_gateway::testkit;

const ITEMS: usize = 512;

fn exporter(signal: Signal, extra: &str) -> ElasticsearchExporter {
    let config: ElasticsearchExporterConfig = toml::from_str(&format!(
        "endpoint = \"http://127.0.0.1:9200\"\n\
         traces_index = \"traces-{{tenant}}-{{yyyy.MM.dd}}\"\n\
         logs_index = \"logs-{{service.name}}-{{yyyy.MM.dd}}\"\n{extra}"
    ))
    .expect("config");
    ElasticsearchExporter::build("elasticsearch/bench", signal, &config).expect("exporter")
}

fn encode(c: &mut Criterion<clock::Clock>) {
    let mut group = c.benchmark_group("elasticsearch");
    group.throughput(Throughput::Elements(ITEMS as u64));
    let context = Context::default().with_tenant("acme");
    let cases = [
        (Signal::Traces, "otel", "compression = \"none\""),
        (Signal::Traces, "otel+gzip", "compression = \"gzip\""),
        (Signal::Logs, "otel", "compression = \"none\""),
        (
            Signal::Logs,
            "ecs",
            "compression = \"none\"\nmapping = \"ecs\"",
        ),
        (Signal::Logs, "otel+gzip", "compression = \"gzip\""),
    ];
    for (signal, name, extra) in cases {
        let exporter = exporter(signal, extra);
        let batch = testkit::batch(signal, 42, ITEMS);
        let request = exporter.encode(&batch, &context).expect("encodes");
        let wire: usize = request.bodies().map(|b| b.len()).sum();
        eprintln!(
            "{signal}/{name}: {ITEMS} items, {} bytes of protobuf -> {} bytes of NDJSON ({:.0} per document), {wire} bytes on the wire",
            batch.encoded_len(),
            request.ndjson().len(),
            request.ndjson().len() as f64 / ITEMS as f64,
        );
        group.bench_function(format!("{signal}/{name}"), |b| {
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
