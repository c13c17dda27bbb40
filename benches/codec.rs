//! Codec benches: validating a received request (`Batch::decode`, the lazy
//! representation) against a full prost decode into `opentelemetry_proto`
//! types (the alternative representation), encoding a merged request, and
//! `split_to`. Payloads come from `testkit` (the load generator's shape, 512
//! items per request); throughput is in items (spans, data points, records).
//!
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_gateway::model::{Batch, Signal};
use otlp_gateway::testkit;
use prost::Message;

const ITEMS: usize = 512;
const REQUESTS: u64 = 4;

fn prost_decode(signal: Signal, body: Bytes) -> usize {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(|r| r.resource_spans.len()),
        Signal::Metrics => {
            ExportMetricsServiceRequest::decode(body).map(|r| r.resource_metrics.len())
        }
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(|r| r.resource_logs.len()),
    }
    .expect("valid payload")
}

fn decode(c: &mut Criterion<clock::Clock>) {
    let mut group = c.benchmark_group("decode");
    for signal in Signal::ALL {
        let body = testkit::encoded(signal, 42, ITEMS);
        eprintln!(
            "{signal}: {} bytes for {ITEMS} items ({} B/item)",
            body.len(),
            body.len() / ITEMS
        );
        group.throughput(Throughput::Elements(ITEMS as u64));
        group.bench_function(format!("{signal}/lazy_validate"), |b| {
            b.iter(|| Batch::decode(signal, black_box(body.clone())).expect("valid payload"))
        });
        group.bench_function(format!("{signal}/prost"), |b| {
            b.iter(|| prost_decode(signal, black_box(body.clone())))
        });
    }
    group.finish();
}

fn merged_traces() -> (Batch, ExportTraceServiceRequest) {
    let mut batch = Batch::empty(Signal::Traces);
    let mut request = ExportTraceServiceRequest::default();
    for seed in 0..REQUESTS {
        batch.append(testkit::batch(Signal::Traces, seed, ITEMS));
        request
            .resource_spans
            .extend(testkit::trace_request(seed, ITEMS).resource_spans);
    }
    (batch, request)
}

fn encode(c: &mut Criterion<clock::Clock>) {
    let (batch, request) = merged_traces();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(batch.items()));
    group.bench_function("traces_4x512/lazy_to_bytes", |b| {
        b.iter(|| black_box(&batch).to_bytes())
    });
    group.bench_function("traces_4x512/prost_encode_to_vec", |b| {
        b.iter(|| black_box(&request).encode_to_vec())
    });
    group.finish();
}

fn split(c: &mut Criterion<clock::Clock>) {
    let (batch, _) = merged_traces();
    let mut group = c.benchmark_group("split_to");
    group.throughput(Throughput::Elements(batch.items()));
    for max in [500u64, 100] {
        group.bench_function(format!("traces_4x512/max_{max}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |mut rest| {
                    let mut parts = 0;
                    while !rest.is_empty() {
                        black_box(rest.split_to(max));
                        parts += 1;
                    }
                    parts
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(name = benches; config = Criterion::default().with_measurement(clock::Clock::from_env()); targets = decode, encode, split);
criterion_main!(benches);

#[path = "support/clock.rs"]
mod clock;
