//! Criterion measurement of this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`)
//! instead of wall time, so numbers stay meaningful on a shared, busy machine
//! (time spent descheduled is not counted; cache interference still is).
//! `OTLP_BENCH_CLOCK=wall` switches back to wall time. Criterion 0.5 ships only
//! `WallTime`; the CPU clock comes from the `cpu-time` crate.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use std::time::Instant;

pub struct Clock {
    cpu: bool,
    origin: Instant,
}

impl Clock {
    pub fn from_env() -> Self {
        let cpu = std::env::var("OTLP_BENCH_CLOCK").map_or(true, |v| v != "wall");
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

fn thread_cpu_ns() -> u64 {
    cpu_time::ThreadTime::now().as_duration().as_nanos() as u64
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
