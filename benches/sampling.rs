//! Tail sampling: policy evaluation per trace, and insert + decide per span
//! with 100,000 traces in flight (the steady state of a full sampler: every
//! new trace forces the oldest to be decided), on the load generator's trace
//! shape (8 spans per trace, ~415 bytes per span). It also prints the memory
//! a buffered span costs: the sampler's own count of held bytes and the
//! process's resident growth per span.
//!
//! `cargo bench --bench sampling -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otlp_gateway::model::regroup::group_by_trace;
use otlp_gateway::model::Signal;
use otlp_gateway::queue::QueuedBatch;
use otlp_gateway::sampling::held::HeldTrace;
use otlp_gateway::sampling::policy::{Policies, TraceSpans};
use otlp_gateway::sampling::{TailSampler, TailSamplingConfig};
use otlp_gateway::stage::Transform;
use otlp_gateway::testkit;

const SHOP: &str = testkit::SHOP_SAMPLING;

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// In `cargo test` (benches run once as tests) keep the sizes small.
fn full_size() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn policies(c: &mut Criterion) {
    let config: TailSamplingConfig = toml::from_str(SHOP).expect("config");
    let policies = Policies::compile(&config.policies, config.decision).expect("compiles");
    let batch = testkit::batch(Signal::Traces, 1, 512);
    let traces: Vec<_> = group_by_trace(&batch)
        .into_iter()
        .map(|(id, spans)| (id, HeldTrace::from_spans(&spans)))
        .collect();
    let mut group = c.benchmark_group("sampling");
    group.throughput(Throughput::Elements(traces.len() as u64));
    group.bench_function("decide_per_trace", |b| {
        b.iter(|| {
            traces
                .iter()
                .filter(|(id, spans)| {
                    matches!(
                        policies.decide(&TraceSpans {
                            trace_id: id,
                            spans,
                        }),
                        otlp_gateway::sampling::policy::Decision::Keep(_)
                    )
                })
                .count()
        })
    });
    group.finish();
}

fn insert_and_decide(c: &mut Criterion) {
    let in_flight: usize = if full_size() { 100_000 } else { 1_000 };
    // decision_wait long enough that only the bound decides: the steady state of a full buffer.
    let config: TailSamplingConfig = toml::from_str(&format!(
        "num_traces = {in_flight}\ndecision_wait = \"1h\"\nmax_buffered_bytes = \"8GiB\"\n{SHOP}"
    ))
    .expect("config");
    let mut sampler = TailSampler::new(&config).expect("compiles");
    let mut out = Vec::new();
    let before = resident_bytes();
    let mut seed = 0u64;
    // Fill to the bound; each 512-span request holds 64 traces of 8 spans.
    while sampler.traces_held() < in_flight {
        let batch = testkit::batch(Signal::Traces, seed, 512);
        seed += 1;
        sampler
            .process(QueuedBatch::detached(batch), &mut out)
            .expect("accepted");
        out.clear();
    }
    let spans = sampler.traces_held() as u64 * 8;
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "{} traces in flight: {} bytes of spans held ({} per span), resident growth {} bytes ({} per span; 10M spans -> {:.2} GiB)",
        sampler.traces_held(),
        sampler.bytes_held(),
        sampler.bytes_held() as u64 / spans.max(1),
        grown,
        grown / spans.max(1),
        (grown as f64 / spans.max(1) as f64) * 1e7 / (1u64 << 30) as f64
    );
    let mut group = c.benchmark_group("sampling");
    group.throughput(Throughput::Elements(512));
    group.bench_function(
        format!("insert_and_decide_per_span_{in_flight}_in_flight"),
        |b| {
            b.iter_batched(
                || {
                    seed += 1;
                    QueuedBatch::detached(testkit::batch(Signal::Traces, seed, 512))
                },
                |batch| {
                    sampler.process(batch, &mut out).expect("accepted");
                    out.clear();
                },
                BatchSize::SmallInput,
            )
        },
    );
    group.finish();
}

criterion_group!(benches, policies, insert_and_decide);
criterion_main!(benches);
