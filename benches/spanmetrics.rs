//! Span metrics: the per-span cost of the aggregation (`Aggregator::record`)
//! and of the connector's `process`, on the load generator's trace shape
//! (512 spans per request, ~415 bytes per span, a few dozen series), with the
//! default dimensions and with two extra ones (`http.response.status_code`
//! from the span, `tenant.id` with a default); and the cost of one flush.
//! Thread CPU time (see `support/clock.rs`); throughput is in spans, so the
//! time per iteration divided by 512 is the cost per span (target: 200 ns,
//! i.e. 0.2 CPU-seconds per million spans). `baseline/iterate_and_read_fields`
//! is the span walk alone, for reading the others on a busy machine.
//!
//! `cargo bench --bench spanmetrics -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otlp_gateway::budget::Reservation;
use otlp_gateway::model::{Context, Envelope, Signal};
use otlp_gateway::queue::QueuedBatch;
use otlp_gateway::spanmetrics::{Aggregator, SpanMetricsConfig, SpanMetricsConnector};
use otlp_gateway::stage::Transform;
use otlp_gateway::testkit;
use tokio::time::Instant;

const SPANS: usize = 512;

const TWO_DIMENSIONS: &str = r#"
dimensions = [
  { name = "http.response.status_code" },
  { name = "tenant.id", default = "unknown" },
]
"#;

fn record(c: &mut Criterion<clock::Clock>) {
    // Several requests, so resources and series vary as they do in a stream.
    let batches: Vec<_> = (0..8)
        .map(|seed| testkit::batch(Signal::Traces, seed, SPANS))
        .collect();
    let context = Context::default().with_tenant("acme");
    let mut group = c.benchmark_group("spanmetrics");
    group.throughput(Throughput::Elements(SPANS as u64));
    // What reading the fields costs on its own (the floor of `record`), measured in the same
    // run, so a busy machine's figures can be read against it.
    let mut i = 0;
    group.bench_function("baseline/iterate_and_read_fields", |b| {
        b.iter(|| {
            i = (i + 1) % batches.len();
            let mut acc = 0u64;
            for span in black_box(&batches[i]).spans() {
                let f = span.fields();
                acc +=
                    f.kind as u64 + f.status_code as u64 + f.name.len() as u64 + f.duration_nanos();
            }
            acc
        })
    });
    for (name, toml) in [
        ("default_dimensions", ""),
        ("two_dimensions", TWO_DIMENSIONS),
    ] {
        let config: SpanMetricsConfig = toml::from_str(toml).expect("config");
        let mut aggregator = Aggregator::new(&config);
        let now = Instant::now();
        let mut i = 0;
        group.bench_function(format!("record/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % batches.len();
                aggregator.record(&context, black_box(&batches[i]), now, 1);
            })
        });
        eprintln!("spanmetrics {name}: {} series", aggregator.live_series());
    }
    let config: SpanMetricsConfig = toml::from_str(TWO_DIMENSIONS).expect("config");
    let mut connector = SpanMetricsConnector::new(&config);
    let mut out = Vec::new();
    let mut i = 0;
    group.bench_function("connector_process/two_dimensions", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % batches.len();
                let batch = batches[i].clone();
                let items = batch.items();
                QueuedBatch::new(
                    Envelope::with_context(context.clone(), batch),
                    Reservation::detached(items),
                )
            },
            |input| connector.process(input, &mut out),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // One flush of what the connector holds, per series.
    let series = connector.aggregator().live_series() as u64;
    let mut group = c.benchmark_group("spanmetrics_flush");
    group.throughput(Throughput::Elements(series));
    group.bench_function("encode_all_series", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            connector.on_deadline(Instant::now(), &mut out);
            out
        })
    });
    group.finish();
}

criterion_group!(name = benches; config = Criterion::default().with_measurement(clock::Clock::from_env()); targets = record);
criterion_main!(benches);

#[path = "support/clock.rs"]
mod clock;
