//! decode → pipeline → encode, per item, for traces, metrics and logs: the
//! pass-through path of a request from the receiver's bytes to the export
//! request body, with admission into one exporter's budget and batcher input.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otlp_gateway::budget::ItemBudget;
use otlp_gateway::model::{Batch, Envelope, Signal};
use otlp_gateway::pipeline::{FanOut, SignalPipeline, Target, TargetKind};
use otlp_gateway::testkit;

fn pass_through(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    for signal in Signal::ALL {
        let body = testkit::encoded(signal, 42, 512);
        let items = Batch::decode(signal, body.clone())
            .expect("valid payload")
            .batch
            .items();
        group.throughput(Throughput::Elements(items));
        let (target, mut rx) = Target::new(
            "otlp/bench",
            TargetKind::Exporter,
            ItemBudget::new(1 << 30),
            4,
        );
        let mut pipeline = SignalPipeline::new(
            signal,
            Vec::new(),
            FanOut::new(signal, vec![target]),
            Duration::from_secs(1),
        );
        group.bench_function(format!("{signal}/decode_admit_encode"), |b| {
            b.iter_batched(
                || body.clone(),
                |body| {
                    let decoded = Batch::decode(signal, body).expect("valid payload");
                    pipeline
                        .process(Envelope::new(decoded.batch))
                        .expect("admitted");
                    let queued = rx.try_recv().expect("handed to the batcher");
                    let mut request = Vec::with_capacity(queued.batch.encoded_len() + 5);
                    request.push(0);
                    request.extend_from_slice(&(queued.batch.encoded_len() as u32).to_be_bytes());
                    queued.batch.write_to(&mut request);
                    request
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, pass_through);
criterion_main!(benches);
