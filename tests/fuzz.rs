//! Structure-aware fuzzing on stable Rust: proptest drives mutations of real
//! OTLP payloads (the load generator's shape from `testkit`) into the parts
//! of the receivers that read client bytes: the protobuf walk, the JSON
//! transcoder, decompression and gRPC framing (through a running receiver).
//!
//! The properties: no panic; what is accepted is well formed; memory stays
//! within the in-flight budget and is all given back; everything refused
//! gets a status code the OTLP specification allows.
//!
//! CI runs a short pass (`FUZZ_CASES`, default 64 per target). A long run:
//!
//! ```sh
//! FUZZ_CASES=20000 cargo test --release --test fuzz -- --nocapture
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use otlp_gateway::budget::ItemBudget;
use otlp_gateway::model::{Batch, Signal};
use otlp_gateway::receiver::decode::{decompress, Compression};
use otlp_gateway::receiver::json::to_protobuf_within;
use otlp_gateway::testkit;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// A mutation of a byte string: flips, overwrites, cuts and splices.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip(at, 1 << bit)),
        any::<usize>().prop_map(Edit::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Remove(at, n)),
        (any::<usize>(), 1usize..256).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        if data.is_empty() {
            break;
        }
        let len = data.len();
        match edit {
            Edit::Set(at, b) => data[at % len] = *b,
            Edit::Flip(at, mask) => data[at % len] ^= mask,
            Edit::Truncate(at) => data.truncate(at % len),
            Edit::Insert(at, bytes) => {
                let at = at % len;
                data.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(at, n) => {
                let at = at % len;
                let end = (at + n).min(len);
                data.drain(at..end);
            }
            Edit::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n).min(len);
                let copy = data[at..end].to_vec();
                data.splice(end..end, copy);
            }
        }
    }
    data
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        Just(Signal::Traces),
        Just(Signal::Metrics),
        Just(Signal::Logs)
    ]
}

fn protobuf(signal: Signal, seed: u64) -> Vec<u8> {
    testkit::encoded(signal, seed, 24).to_vec()
}

fn json(signal: Signal, seed: u64) -> Vec<u8> {
    match signal {
        Signal::Traces => serde_json::to_vec(&testkit::trace_request(seed, 24)),
        Signal::Metrics => serde_json::to_vec(&testkit::metrics_request(seed, 24)),
        Signal::Logs => serde_json::to_vec(&testkit::logs_request(seed, 24)),
    }
    .expect("serializes")
}

#[test]
fn protobuf_walk_never_panics_and_what_it_accepts_is_well_formed() {
    runner()
        .run(
            &(signal(), 0u64..8, proptest::collection::vec(edit(), 1..6)),
            |(signal, seed, edits)| {
                let body = Bytes::from(apply(protobuf(signal, seed), &edits));
                if let Ok(decoded) = Batch::decode(signal, body) {
                    // Accepted bytes re-validate, and splitting them keeps every item.
                    let mut batch = decoded.batch;
                    let items = batch.items();
                    let again = Batch::decode(signal, batch.to_bytes()).expect("re-validates");
                    prop_assert_eq!(again.batch.items(), items);
                    let head = batch.split_to(items / 2);
                    prop_assert_eq!(head.items() + batch.items(), items);
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn json_transcoder_never_panics_and_stays_within_its_budget() {
    // Mutations of the text, and of its structure: a value swapped for another token.
    let token = prop_oneof![
        Just("null"),
        Just("\"NaN\""),
        Just("-1"),
        Just("1e309"),
        Just("\"\""),
        Just("[]"),
        Just("{}"),
        Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
        Just("\"\\u0000\\ud800\""),
        Just("18446744073709551616"),
        Just("true"),
    ];
    runner()
        .run(
            &(
                signal(),
                0u64..8,
                proptest::collection::vec(edit(), 0..4),
                proptest::collection::vec((any::<usize>(), token), 0..4),
                1u64..200_000,
            ),
            |(signal, seed, edits, swaps, budget_bytes)| {
                let mut text = json(signal, seed);
                for (at, token) in swaps {
                    // Replace the value after the n-th ':' with the token.
                    let colons: Vec<usize> = text
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b':')
                        .map(|(i, _)| i)
                        .collect();
                    if let Some(&colon) = colons.get(at % colons.len().max(1)) {
                        let end = text[colon + 1..]
                            .iter()
                            .position(|b| *b == b',' || *b == b'}')
                            .map_or(text.len(), |p| colon + 1 + p);
                        text.splice(colon + 1..end, token.bytes());
                    }
                }
                let text = apply(text, &edits);
                let budget = ItemBudget::new(budget_bytes);
                match to_protobuf_within(signal, &text, &budget, 1 << 20) {
                    Ok((bytes, held)) => {
                        prop_assert!(held.items() >= bytes.len() as u64);
                        // The output holds exactly what is reserved for it, and nothing else does.
                        prop_assert_eq!(budget.used(), held.items());
                        // What the transcoder writes is protobuf the walk can read (or
                        // refuse as too deep); never a panic.
                        let _ = Batch::decode(signal, bytes);
                    }
                    Err(error) => {
                        let code = error.http_status().as_u16();
                        prop_assert!(matches!(code, 400 | 413 | 503), "{code}: {error}");
                    }
                }
                prop_assert_eq!(budget.used(), 0, "everything given back");
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn decompression_never_panics_and_stays_within_cap_and_budget() {
    runner()
        .run(
            &(
                signal(),
                0u64..8,
                prop_oneof![Just(Compression::Gzip), Just(Compression::Zstd)],
                proptest::collection::vec(edit(), 0..4),
                1usize..300_000,
            ),
            |(signal, seed, compression, edits, cap)| {
                let plain = protobuf(signal, seed);
                let packed = match compression {
                    Compression::Gzip => {
                        let mut encoder =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        encoder.write_all(&plain).unwrap();
                        encoder.finish().unwrap()
                    }
                    _ => zstd::encode_all(&plain[..], 1).unwrap(),
                };
                let body = Bytes::from(apply(packed, &edits));
                let budget = ItemBudget::new(400_000);
                match decompress(compression, body, cap, &budget) {
                    Ok((out, held)) => {
                        prop_assert!(out.len() <= cap);
                        prop_assert!(held.items() >= out.len() as u64);
                    }
                    Err(error) => {
                        let code = error.http_status().as_u16();
                        prop_assert!(matches!(code, 400 | 413 | 503), "{code}: {error}");
                    }
                }
                prop_assert_eq!(budget.used(), 0);
                Ok(())
            },
        )
        .unwrap();
}

/// A running receiver for the framing fuzz, shared by its cases.
fn gateway() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let text = r#"
[service.logs]
level = "error"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"
max_request_bytes = "64KiB"
max_decompressed_bytes = "256KiB"
[exporters.debug.console]
[pipelines.traces]
exporters = ["debug/console"]
[pipelines.metrics]
exporters = ["debug/console"]
"#;
                let (config, _) = otlp_gateway::config::load_and_validate_str(text, "t").unwrap();
                let gw = otlp_gateway::topology::Gateway::start(&config)
                    .await
                    .unwrap();
                tx.send(gw.grpc_addr().unwrap()).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("gateway started")
    })
}

/// The gRPC status codes a receiver may answer an export with.
const SPEC_CODES: [&str; 7] = ["0", "3", "4", "8", "12", "13", "14"];

#[test]
fn grpc_framing_answers_every_mutation_with_a_spec_status() {
    let addr = gateway();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                prop_oneof![
                    Just(Signal::Traces),
                    Just(Signal::Metrics),
                    Just(Signal::Logs)
                ],
                0u64..4,
                proptest::collection::vec(edit(), 0..4),
                prop_oneof![
                    Just(None),
                    Just(Some("gzip")),
                    Just(Some("zstd")),
                    Just(Some("br"))
                ],
            ),
            |(signal, seed, edits, encoding)| {
                let message = protobuf(signal, seed);
                let mut framed = vec![u8::from(encoding.is_some())];
                let message = match encoding {
                    Some("gzip") => {
                        let mut encoder =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        encoder.write_all(&message).unwrap();
                        encoder.finish().unwrap()
                    }
                    Some("zstd") => zstd::encode_all(&message[..], 1).unwrap(),
                    _ => message,
                };
                framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                framed.extend_from_slice(&message);
                let body = apply(framed, &edits);
                let status = runtime.block_on(call(addr, signal, encoding, body));
                prop_assert!(
                    SPEC_CODES.contains(&status.as_str()),
                    "grpc-status {status}"
                );
                Ok(())
            },
        )
        .unwrap();
}

async fn call(addr: SocketAddr, signal: Signal, encoding: Option<&str>, body: Vec<u8>) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{}", signal.grpc_path()))
        .header("content-type", "application/grpc");
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let trailers = body
        .collect()
        .await
        .ok()
        .and_then(|c| c.trailers().cloned())
        .unwrap_or_default();
    trailers
        .get("grpc-status")
        .or_else(|| parts.headers.get("grpc-status"))
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| format!("none (HTTP {})", parts.status))
}
