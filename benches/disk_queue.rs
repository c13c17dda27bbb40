//! Disk queue throughput on the real filesystem (wall clock: `fdatasync` waits).
//!
//! - `append_fsync/<group>`: records of the harness shape (512 spans, about
//!   213 KB each) appended in groups of `<group>` concurrent requests and
//!   committed with one `fdatasync` per group (`durability = "fsync"`);
//!   criterion prints spans/s and bytes/s.
//! - `append_nosync`: the same without the sync (`durability = "none"`): the
//!   cost of framing, CRC32C and the write itself.
//! - `read_ack`: reading committed records back as deliveries (merged up to
//!   8,192 spans) and acknowledging them.
//! - `recovery`: opening a queue that holds 256 MiB of backlog (start-up
//!   scans only the last segment) and reading all of it back.
//!
//! Targets (issue 12): at most 0.3 CPU-seconds per million spans; with fsync
//! and group commit at least 500,000 spans/s of the harness payload, or the
//! disk's own fsync'd write bandwidth if lower (`dd if=/dev/zero of=F bs=256k
//! count=400 oflag=dsync` in the same run).
//!
//! `cargo bench --bench disk_queue -- --warm-up-time 1 --measurement-time 5`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otlp_gateway::budget::ItemBudget;
use otlp_gateway::model::{Context, Signal};
use otlp_gateway::queue::disk::{Log, LogSettings, StdFs};
use otlp_gateway::testkit;

const SPANS: usize = 512;

fn open(dir: &std::path::Path) -> Log {
    Log::open(
        Arc::new(StdFs),
        dir,
        LogSettings {
            segment_bytes: 16 << 20,
        },
        ItemBudget::new(64 << 30),
    )
    .expect("opens")
    .0
}

fn bench(c: &mut Criterion) {
    let batch = testkit::batch(Signal::Traces, 7, SPANS);
    let context = Context::default().with_tenant("acme");
    let bytes = batch.encoded_len() as u64;
    let mut group = c.benchmark_group("disk_queue");
    group.sample_size(10);
    for size in [1u64, 8, 32] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open(dir.path());
        group.throughput(Throughput::Elements(SPANS as u64 * size));
        group.bench_function(format!("append_fsync/{size}"), |b| {
            b.iter(|| {
                for _ in 0..size {
                    log.append(&context, &batch, false).expect("append");
                }
                log.commit(true).expect("commit");
                // Keep the disk usage flat: everything read and acknowledged.
                while let Some(read) = log.read(u64::MAX).expect("read") {
                    log.ack(read.first_seq, read.last_seq);
                }
                log.persist().expect("persist");
            });
        });
        group.throughput(Throughput::Bytes(bytes * size));
        group.bench_function(format!("append_fsync_bytes/{size}"), |b| {
            b.iter(|| {
                for _ in 0..size {
                    log.append(&context, &batch, false).expect("append");
                }
                log.commit(true).expect("commit");
                while let Some(read) = log.read(u64::MAX).expect("read") {
                    log.ack(read.first_seq, read.last_seq);
                }
                log.persist().expect("persist");
            });
        });
    }
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open(dir.path());
        group.throughput(Throughput::Elements(SPANS as u64 * 32));
        group.bench_function("append_nosync/32", |b| {
            b.iter(|| {
                for _ in 0..32 {
                    log.append(&context, &batch, false).expect("append");
                }
                log.commit(false).expect("commit");
                while let Some(read) = log.read(u64::MAX).expect("read") {
                    log.ack(read.first_seq, read.last_seq);
                }
                log.persist().expect("persist");
            });
        });
        group.bench_function("read_ack/32", |b| {
            b.iter_batched(
                || {
                    for _ in 0..32 {
                        log.append(&context, &batch, false).expect("append");
                    }
                    log.commit(false).expect("commit");
                },
                |()| {
                    while let Some(read) = log.read(8192).expect("read") {
                        log.ack(read.first_seq, read.last_seq);
                    }
                    log.persist().expect("persist");
                },
                BatchSize::PerIteration,
            );
        });
    }
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let records = (256u64 << 20) / bytes;
        {
            let log = open(dir.path());
            for _ in 0..records {
                log.append(&context, &batch, false).expect("append");
            }
            log.commit(true).expect("commit");
        }
        group.throughput(Throughput::Bytes(records * bytes));
        group.bench_function("recovery/open_256MiB", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let log = open(dir.path());
                    total += started.elapsed();
                    drop(log);
                }
                total
            });
        });
        group.bench_function("recovery/open_and_read_256MiB", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let log = open(dir.path());
                    let mut spans = 0;
                    while let Some(read) = log.read(8192).expect("read") {
                        spans += read.batch.items();
                    }
                    assert_eq!(spans, records * SPANS as u64);
                    total += started.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
