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

/// Criterion measurement of this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`)
/// instead of wall time, so numbers stay meaningful on a shared, busy machine
/// (time spent descheduled is not counted; cache interference still is).
/// `OTLP_BENCH_CLOCK=wall` switches back to wall time. Hand-written because
/// criterion 0.5 ships only `WallTime` and `libc` is not a dependency.
mod clock {
    use criterion::measurement::{Measurement, ValueFormatter};
    use criterion::Throughput;
    use std::time::Instant;

    pub struct Clock {
        cpu: bool,
        origin: Instant,
    }

    impl Clock {
        pub fn from_env() -> Self {
            let cpu = cfg!(all(target_os = "linux", target_pointer_width = "64"))
                && std::env::var("OTLP_BENCH_CLOCK").map_or(true, |v| v != "wall");
            eprintln!(
                "measuring {}",
                if cpu { "thread CPU time" } else { "wall time" }
            );
            Clock {
                cpu,
                origin: Instant::now(),
            }
        }

        fn now_ns(&self) -> u64 {
            if self.cpu {
                thread_cpu_ns()
            } else {
                self.origin.elapsed().as_nanos() as u64
            }
        }
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn thread_cpu_ns() -> u64 {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec (two i64 on 64-bit Linux).
        let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    fn thread_cpu_ns() -> u64 {
        unreachable!("CPU clock is only selected on 64-bit Linux")
    }

    impl Measurement for Clock {
        type Intermediate = u64;
        type Value = u64;

        fn start(&self) -> u64 {
            self.now_ns()
        }

        fn end(&self, start: u64) -> u64 {
            self.now_ns().saturating_sub(start)
        }

        fn add(&self, a: &u64, b: &u64) -> u64 {
            a + b
        }

        fn zero(&self) -> u64 {
            0
        }

        fn to_f64(&self, value: &u64) -> f64 {
            *value as f64
        }

        fn formatter(&self) -> &dyn ValueFormatter {
            &Nanos
        }
    }

    struct Nanos;

    impl ValueFormatter for Nanos {
        fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
            let (factor, unit) = match ns {
                ns if ns < 1e3 => (1.0, "ns"),
                ns if ns < 1e6 => (1e-3, "µs"),
                ns if ns < 1e9 => (1e-6, "ms"),
                _ => (1e-9, "s"),
            };
            values.iter_mut().for_each(|v| *v *= factor);
            unit
        }

        fn scale_throughputs(
            &self,
            typical: f64,
            throughput: &Throughput,
            values: &mut [f64],
        ) -> &'static str {
            let per_iter = match *throughput {
                Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                    n as f64
                }
            };
            let (denominator, unit) = match per_iter * 1e9 / typical {
                r if r < 1e3 => (1.0, " elem/s"),
                r if r < 1e6 => (1e3, "Kelem/s"),
                r if r < 1e9 => (1e6, "Melem/s"),
                _ => (1e9, "Gelem/s"),
            };
            values
                .iter_mut()
                .for_each(|v| *v = per_iter * 1e9 / *v / denominator);
            unit
        }

        fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
            "ns"
        }
    }
}
