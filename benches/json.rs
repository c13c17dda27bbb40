//! OTLP/JSON decode throughput: the streaming transcoder the HTTP receiver
//! uses (`receiver::json::to_protobuf_within`, JSON straight into protobuf)
//! against the previous way (a `serde_json::Value` tree, the
//! `opentelemetry-proto` serde types, a prost encode), on the load
//! generator's trace shape (512 spans per request) and on metrics and logs.
//! Throughput is in bytes of JSON, so criterion prints MB/s.
//!
//! It also prints the memory one request holds while it is decoded: the
//! bytes reserved in the in-flight budget for the output, as a multiple of
//! the JSON's size (the JSON text itself is held too, counted when it was read).
//!
//! `cargo bench --bench json -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_gateway::budget::ItemBudget;
use otlp_gateway::model::Signal;
use otlp_gateway::receiver::json::to_protobuf_within;
use otlp_gateway::testkit;
use prost::Message;

fn json_of(signal: Signal) -> Vec<u8> {
    match signal {
        Signal::Traces => serde_json::to_vec(&testkit::trace_request(42, 512)),
        Signal::Metrics => serde_json::to_vec(&testkit::metrics_request(42, 512)),
        Signal::Logs => serde_json::to_vec(&testkit::logs_request(42, 512)),
    }
    .expect("serializes")
}

/// The previous decoder: a JSON tree, then the serde types, then prost.
fn value_tree(signal: Signal, json: &[u8]) -> usize {
    let value: serde_json::Value = serde_json::from_slice(json).expect("json");
    match signal {
        Signal::Traces => serde_json::from_value::<ExportTraceServiceRequest>(value)
            .map(|r| r.encode_to_vec().len()),
        Signal::Metrics => serde_json::from_value::<ExportMetricsServiceRequest>(value)
            .map(|r| r.encode_to_vec().len()),
        Signal::Logs => serde_json::from_value::<ExportLogsServiceRequest>(value)
            .map(|r| r.encode_to_vec().len()),
    }
    .expect("valid request")
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    let budget = ItemBudget::new(u64::MAX);
    for signal in Signal::ALL {
        let json = json_of(signal);
        let (protobuf, held) =
            to_protobuf_within(signal, &json, &budget, usize::MAX).expect("valid request");
        eprintln!(
            "{signal}: {} bytes of JSON -> {} bytes of protobuf; {} bytes reserved for the output ({:.2}x the JSON)",
            json.len(),
            protobuf.len(),
            held.items(),
            held.items() as f64 / json.len() as f64
        );
        drop(held);
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_function(format!("{signal}/transcode"), |b| {
            b.iter(|| {
                to_protobuf_within(signal, black_box(&json), &budget, usize::MAX)
                    .expect("valid request")
            })
        });
        group.bench_function(format!("{signal}/value_tree_serde_prost"), |b| {
            b.iter(|| value_tree(signal, black_box(&json)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
