//! Model benches: the per-span reads and rewrites later stages do on a
//! received `Batch` (trace id, scalar fields, one attribute, card redaction,
//! per-trace regrouping, span-metrics derivation). Payloads come from
//! `testkit` (the load generator's shape, 512 spans per request); throughput
//! is in spans.
//!
//! `cargo bench --bench model -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otlp_gateway::model::regroup::{self, BatchBuilder, BuildIdHasher, SpanRef};
use otlp_gateway::model::view::{self, TraceId};
use otlp_gateway::model::{Batch, Signal};
use otlp_gateway::testkit;

const SPANS: usize = 512;
const REQUESTS: u64 = 4;

fn reads(c: &mut Criterion<clock::Clock>) {
    let batch = testkit::batch(Signal::Traces, 42, SPANS);
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("iterate_spans", |b| {
        b.iter(|| black_box(&batch).spans().count())
    });
    group.bench_function("trace_id", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for span in black_box(&batch).spans() {
                acc ^= span.trace_id().map_or(0, |id| id[15]);
            }
            acc
        })
    });
    group.bench_function("status_kind_name_times/accessors", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for span in black_box(&batch).spans() {
                acc += span.status_code() as u64
                    + span.kind() as u64
                    + span.name().len() as u64
                    + span
                        .end_time_unix_nano()
                        .wrapping_sub(span.start_time_unix_nano());
            }
            acc
        })
    });
    group.bench_function("status_kind_name_times/fields_one_pass", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for span in black_box(&batch).spans() {
                let f = span.fields();
                acc +=
                    f.status_code as u64 + f.kind as u64 + f.name.len() as u64 + f.duration_nanos();
            }
            acc
        })
    });
    group.bench_function("attribute/span_tenant_id", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for span in black_box(&batch).spans() {
                acc += span
                    .attribute("tenant.id")
                    .and_then(|v| v.as_str())
                    .map_or(0, str::len);
            }
            acc
        })
    });
    group.bench_function("attribute/resource_service_name_per_span", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for span in black_box(&batch).spans() {
                acc += span
                    .resource()
                    .attribute("service.name")
                    .and_then(|v| v.as_str())
                    .map_or(0, str::len);
            }
            acc
        })
    });
    group.bench_function("attribute/resource_service_name_cached", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            let mut cached: Option<(view::ResourceView<'_>, &str)> = None;
            for span in black_box(&batch).spans() {
                let resource = span.resource();
                let service = match cached {
                    Some((r, s)) if r.same_as(&resource) => s,
                    _ => {
                        let s = resource
                            .attribute("service.name")
                            .and_then(|v| v.as_str())
                            .unwrap_or("");
                        cached = Some((resource, s));
                        s
                    }
                };
                acc += service.len();
            }
            acc
        })
    });
    group.finish();
}

fn mask(s: &str) -> Option<String> {
    s.contains(testkit::CARD)
        .then(|| s.replace(testkit::CARD, "****1111"))
}

fn rewrite(c: &mut Criterion<clock::Clock>) {
    let batch = testkit::batch(Signal::Traces, 42, SPANS);
    let hits = batch
        .spans()
        .filter(|s| s.attribute("payment.card.number").is_some())
        .count();
    eprintln!("rewrite: {hits} of {SPANS} spans carry the card number");
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("walk_no_change", |b| {
        b.iter(|| {
            otlp_gateway::model::rewrite::rewrite_strings(black_box(&batch), |_| None).is_none()
        })
    });
    group.bench_function("walk_no_change_bytes", |b| {
        b.iter(|| {
            otlp_gateway::model::rewrite::rewrite_string_bytes(black_box(&batch), |_, _| None)
                .is_none()
        })
    });
    group.bench_function("mask_card_spans_bytes", |b| {
        b.iter(|| {
            otlp_gateway::model::rewrite::rewrite_string_bytes(black_box(&batch), |_, s| {
                // Cheap prefilter on bytes, as a PAN scanner would: 16 digits in a row.
                let digits = s.iter().filter(|c| c.is_ascii_digit()).count();
                if digits < 16 {
                    return None;
                }
                mask(std::str::from_utf8(s).ok()?)
            })
            .expect("cards present")
        })
    });
    group.bench_function("mask_card_spans", |b| {
        b.iter(|| {
            otlp_gateway::model::rewrite::rewrite_strings(black_box(&batch), mask)
                .expect("cards present")
        })
    });
    group.finish();
}

fn merged(requests: u64) -> Batch {
    let mut batch = Batch::empty(Signal::Traces);
    for seed in 0..requests {
        batch.append(testkit::batch(Signal::Traces, seed, SPANS));
    }
    batch
}

/// Splits into per-trace buffers, keyed by trace id, traces in order of arrival.
fn by_trace(batch: &Batch) -> (HashMap<TraceId, Vec<SpanRef>, BuildIdHasher>, Vec<TraceId>) {
    let mut traces: HashMap<TraceId, Vec<SpanRef>, BuildIdHasher> = HashMap::default();
    let mut order = Vec::new();
    for (trace_id, span) in regroup::split_by_trace(batch) {
        traces
            .entry(trace_id)
            .or_insert_with(|| {
                order.push(trace_id);
                Vec::with_capacity(8)
            })
            .push(span);
    }
    (traces, order)
}

fn rebuild(mut traces: HashMap<TraceId, Vec<SpanRef>, BuildIdHasher>, order: &[TraceId]) -> Batch {
    let mut builder = BatchBuilder::new(Signal::Traces);
    for trace_id in order {
        if let Some(spans) = traces.remove(trace_id) {
            builder.extend(spans);
        }
    }
    builder.build()
}

fn regrouping(c: &mut Criterion<clock::Clock>) {
    let batch = merged(REQUESTS);
    let mut group = c.benchmark_group("regroup");
    group.throughput(Throughput::Elements(batch.items()));
    group.bench_function("split_by_trace_4x512", |b| {
        b.iter(|| by_trace(black_box(&batch)))
    });
    group.bench_function("rebuild_4x512", |b| {
        b.iter_batched(
            || by_trace(&batch),
            |(traces, order)| rebuild(traces, &order),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("split_and_rebuild_4x512", |b| {
        b.iter(|| {
            let (traces, order) = by_trace(black_box(&batch));
            rebuild(traces, &order)
        })
    });
    group.finish();
}

/// Span-metrics aggregation state as a span-metrics stage would keep it:
/// calls + a duration histogram per (service, span name, kind, status code).
/// The key's hash is computed from the borrowed strings, so a span whose
/// series exists allocates nothing.
#[derive(Default)]
struct SpanMetrics {
    series: HashMap<u64, Vec<Series>, BuildIdHasher>,
}

struct Series {
    service: String,
    name: String,
    kind: i32,
    status: i32,
    calls: u64,
    sum_nanos: u64,
    buckets: [u64; BOUNDS_MS.len() + 1],
}

/// The spanmetrics connector's default bounds, in milliseconds.
const BOUNDS_MS: [u64; 16] = [
    2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000,
];

impl SpanMetrics {
    fn record(&mut self, service: &str, name: &str, kind: i32, status: i32, duration_nanos: u64) {
        let mut hasher = BuildIdHasher::default().build_hasher();
        hasher.write(service.as_bytes());
        hasher.write(name.as_bytes());
        hasher.write_u64(((kind as u64) << 32) | status as u64);
        let entries = self.series.entry(hasher.finish()).or_default();
        let at = match entries.iter().position(|s| {
            s.kind == kind && s.status == status && s.name == name && s.service == service
        }) {
            Some(at) => at,
            None => {
                entries.push(Series {
                    service: service.to_string(),
                    name: name.to_string(),
                    kind,
                    status,
                    calls: 0,
                    sum_nanos: 0,
                    buckets: [0; BOUNDS_MS.len() + 1],
                });
                entries.len() - 1
            }
        };
        let series = &mut entries[at];
        series.calls += 1;
        series.sum_nanos += duration_nanos;
        let bucket = BOUNDS_MS.partition_point(|&b| b * 1_000_000 < duration_nanos);
        series.buckets[bucket] += 1;
    }
}

fn span_metrics(c: &mut Criterion<clock::Clock>) {
    let batch = testkit::batch(Signal::Traces, 42, SPANS);
    let mut group = c.benchmark_group("span_metrics");
    group.throughput(Throughput::Elements(SPANS as u64));
    let mut state = SpanMetrics::default();
    group.bench_function("derive", |b| {
        b.iter(|| {
            let mut cached: Option<(view::ResourceView<'_>, &str)> = None;
            for span in black_box(&batch).spans() {
                let resource = span.resource();
                let service = match cached {
                    Some((r, s)) if r.same_as(&resource) => s,
                    _ => {
                        let s = resource
                            .attribute("service.name")
                            .and_then(|v| v.as_str())
                            .unwrap_or("");
                        cached = Some((resource, s));
                        s
                    }
                };
                let f = span.fields();
                state.record(service, f.name, f.kind, f.status_code, f.duration_nanos());
            }
        })
    });
    let series: usize = state.series.values().map(Vec::len).sum();
    eprintln!("span_metrics: {series} series");
    group.finish();
}

criterion_group!(name = benches; config = Criterion::default().with_measurement(clock::Clock::from_env()); targets = reads, rewrite, regrouping, span_metrics);
criterion_main!(benches);

#[path = "support/clock.rs"]
mod clock;
