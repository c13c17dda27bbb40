//! PCI redaction: the stage on the load generator's trace shape (512 spans
//! per request, ~415 bytes per span) with 0 % and 2 % of spans carrying a
//! card number (as `payment.card.number` and inside `http.request.body`),
//! with the shipped `config.toml` rules; and the card-number scanner alone
//! over the text of those spans, in bytes per second.
//!
//! Throughput is in spans for the stage (so µs per span = CPU-seconds per
//! million spans) and in bytes for the scanner.
//!
//! `cargo bench --bench redaction -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use otlp_gateway::model::{Batch, Envelope, Signal};
use otlp_gateway::redaction::pan::{self, PanScope};
use otlp_gateway::redaction::{RedactionConfig, Redactor};
use otlp_gateway::testkit;
use prost::Message;

const SPANS: usize = 512;

/// The shipped `[processors.redaction]` (defaults plus the card-number rule).
fn shipped_config() -> RedactionConfig {
    toml::from_str(
        r#"
        [[rules]]
        name = "card_numbers"
        keys = ['card[._-]?(number|num|no)$', '(^|[._-])pan$']
        action = "mask_last4"
        "#,
    )
    .expect("config")
}

/// A 512-span request with exactly `every`-th span carrying a card number
/// (`None`: no span does).
fn request(every: Option<usize>) -> ExportTraceServiceRequest {
    let mut req = testkit::trace_request(42, SPANS);
    let mut n = 0;
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                span.attributes
                    .retain(|kv| kv.key != "payment.card.number" && kv.key != "http.request.body");
                if every.is_some_and(|every| n % every == 0) {
                    span.attributes
                        .push(testkit::kv_str("payment.card.number", testkit::CARD));
                    span.attributes.push(testkit::kv_str(
                        "http.request.body",
                        format!(
                            "{{\"card\":\"{}\",\"cvv\":\"123\",\"exp\":\"12/29\"}}",
                            testkit::CARD
                        ),
                    ));
                }
                n += 1;
            }
        }
    }
    req
}

fn batch(req: &ExportTraceServiceRequest) -> Batch {
    Batch::decode(Signal::Traces, Bytes::from(req.encode_to_vec()))
        .expect("valid")
        .batch
}

fn stage(c: &mut Criterion<clock::Clock>) {
    let config = shipped_config();
    let mut group = c.benchmark_group("redaction");
    group.throughput(Throughput::Elements(SPANS as u64));
    for (name, every) in [("0pct", None), ("2pct", Some(50))] {
        let batch = batch(&request(every));
        let mut redactor = Redactor::new(&config, Signal::Traces).expect("compiles");
        let mut probe = Envelope::new(batch.clone());
        let changed = redactor.redact(&mut probe);
        assert_eq!(changed, every.is_some(), "{name}: changed as expected");
        assert!(!String::from_utf8_lossy(&probe.batch.to_bytes()).contains(testkit::CARD));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut envelope = Envelope::new(black_box(&batch).clone());
                redactor.redact(&mut envelope)
            })
        });
    }
    group.finish();
}

/// Every string value and key of the spans (the text the scanner sees).
fn span_text(req: &ExportTraceServiceRequest) -> Vec<String> {
    let mut text = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                text.push(span.name.clone());
                for kv in &span.attributes {
                    text.push(kv.key.clone());
                    if let Some(any_value::Value::StringValue(s)) =
                        kv.value.as_ref().and_then(|v| v.value.as_ref())
                    {
                        text.push(s.clone());
                    }
                }
            }
        }
    }
    text
}

fn scan(c: &mut Criterion<clock::Clock>) {
    let mut group = c.benchmark_group("pan_scan");
    for (name, every) in [
        ("attribute_text_0pct", None),
        ("attribute_text_2pct", Some(50)),
    ] {
        let text = span_text(&request(every));
        let bytes: usize = text.iter().map(String::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                text.iter()
                    .filter(|s| {
                        pan::mask(black_box(s.as_bytes()), PanScope::PaymentNetworks).is_some()
                    })
                    .count()
            })
        });
    }
    // Worst case for the first test: long texts full of digits that are not card numbers.
    let digits: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "order 1234-5678 ts 2026-12-03T10:15:{:02}.123456789Z id {i:012} qty 42",
                i % 60
            )
        })
        .collect();
    let bytes: usize = digits.iter().map(String::len).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("digit_heavy_text", |b| {
        b.iter(|| {
            digits
                .iter()
                .filter(|s| pan::mask(black_box(s.as_bytes()), PanScope::PaymentNetworks).is_some())
                .count()
        })
    });
    group.finish();
}

criterion_group!(name = benches; config = Criterion::default().with_measurement(clock::Clock::from_env()); targets = stage, scan);
criterion_main!(benches);

#[path = "support/clock.rs"]
mod clock;
