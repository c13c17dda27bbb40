//! Load generator for sizing a deployment: sends realistic OTLP traffic to a
//! gateway (or any OTLP receiver) over gRPC or HTTP, at a fixed rate or flat
//! out, and reports throughput, refusals and latency.
//!
//! ```sh
//! cargo run --release --example loadgen -- --endpoint http://127.0.0.1:4317 --duration 30s
//! cargo run --release --example loadgen -- --protocol http --endpoint http://127.0.0.1:4318 --rate 200000
//! ```
//!
//! Payloads come from `otlp_gateway::testkit` (the same builders the tests
//! and benches use): 6 services, 8 spans per trace, ~415 bytes per span,
//! 5 % error traces, 2 % spans with a card number. `--distinct` payloads
//! with different trace ids are generated up front and sent round-robin;
//! `--unique-trace-ids` gives every request fresh trace ids (for measuring a
//! tail sampler with realistic traffic).

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use otlp_gateway::model::Signal;
use otlp_gateway::testkit;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

/// OTLP load generator.
#[derive(Debug, Parser)]
struct Args {
    /// Receiver base URL.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    #[arg(long, value_enum, default_value = "traces")]
    signal: SignalArg,
    /// Items (spans, data points, log records) per second; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Items per request.
    #[arg(long, default_value_t = 512)]
    items_per_request: usize,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Distinct payloads (different trace ids) generated up front.
    #[arg(long, default_value_t = 64)]
    distinct: u64,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
    /// Give every request fresh trace ids (traces only, uncompressed), so a
    /// tail sampler sees new traces instead of the same ones again and again.
    #[arg(long)]
    unique_trace_ids: bool,
}

/// Where the trace ids sit in an encoded request: byte offsets of each
/// span's `trace_id` value, and which trace (0..) each belongs to.
fn trace_id_offsets(body: &Bytes, header: usize) -> anyhow::Result<Vec<(usize, u32)>> {
    let batch = otlp_gateway::model::Batch::decode(Signal::Traces, body.clone())
        .context("generated payload is invalid")?
        .batch;
    let mut traces: std::collections::HashMap<[u8; 16], u32> = std::collections::HashMap::new();
    let mut offsets = Vec::new();
    for item in otlp_gateway::model::regroup::split_items(&batch) {
        let span = item.item();
        // prost writes trace_id (field 1, 16 bytes) first: 0x0a 0x10 <id>.
        if span.len() < 18 || span[0] != 0x0a || span[1] != 0x10 {
            bail!("trace_id is not the first field of a generated span");
        }
        let at = span.as_ptr() as usize - body.as_ptr() as usize + 2 + header;
        let mut id = [0u8; 16];
        id.copy_from_slice(&span[2..18]);
        let next = traces.len() as u32;
        let trace = *traces.entry(id).or_insert(next);
        offsets.push((at, trace));
    }
    Ok(offsets)
}

/// `template` with its trace ids replaced: trace `t` of request `n` gets the
/// id `n:t` in its first 12 bytes (the last 4 stay, so ids are never zero).
fn with_fresh_ids(template: &Bytes, offsets: &[(usize, u32)], n: u64) -> Bytes {
    let mut body = template.to_vec();
    for (at, trace) in offsets {
        body[*at..*at + 8].copy_from_slice(&n.to_be_bytes());
        body[*at + 8..*at + 12].copy_from_slice(&trace.to_be_bytes());
    }
    Bytes::from(body)
}

#[derive(Default)]
struct Stats {
    ok_requests: AtomicU64,
    ok_items: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signal = match args.signal {
        SignalArg::Traces => Signal::Traces,
        SignalArg::Metrics => Signal::Metrics,
        SignalArg::Logs => Signal::Logs,
    };
    if args.unique_trace_ids && (args.gzip || !matches!(signal, Signal::Traces)) {
        bail!("--unique-trace-ids needs uncompressed traces");
    }
    let header = match args.protocol {
        Protocol::Grpc => 5,
        Protocol::Http => 0,
    };
    let payloads: Vec<Bytes> = (0..args.distinct.max(1))
        .map(|seed| {
            let body = testkit::encoded(signal, seed, args.items_per_request);
            let body = if args.gzip { gzip(&body) } else { body };
            match args.protocol {
                Protocol::Grpc => grpc_frame(&body, args.gzip),
                Protocol::Http => body,
            }
        })
        .collect();
    let offsets: Vec<Vec<(usize, u32)>> = if args.unique_trace_ids {
        (0..args.distinct.max(1))
            .map(|seed| {
                trace_id_offsets(
                    &testkit::encoded(signal, seed, args.items_per_request),
                    header,
                )
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    let offsets = Arc::new(offsets);
    let sequence = Arc::new(AtomicU64::new(1));
    let items = testkit::encoded(signal, 0, args.items_per_request);
    let items = otlp_gateway::model::Batch::decode(signal, items)
        .context("generated payload is invalid")?
        .batch
        .items();
    let uri = match args.protocol {
        Protocol::Grpc => format!(
            "{}{}",
            args.endpoint.trim_end_matches('/'),
            signal.grpc_path()
        ),
        Protocol::Http => format!(
            "{}{}",
            args.endpoint.trim_end_matches('/'),
            signal.http_path()
        ),
    };
    let uri: http::Uri = uri.parse().context("endpoint")?;
    let mut builder = Client::builder(TokioExecutor::new());
    if matches!(args.protocol, Protocol::Grpc) {
        builder.http2_only(true);
    }
    let client = builder.build_http::<Full<Bytes>>();
    let stats = Arc::new(Stats::default());
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let deadline = Instant::now() + args.duration;

    // Rate: a ticker adds one permit per request due; flat out: permits are unlimited.
    if args.rate > 0 {
        let per_request = Duration::from_secs_f64(items as f64 / args.rate as f64);
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_request);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tick.tick().await;
                permits.add_permits(1);
            }
        });
    }

    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.concurrency.max(1) {
        let client = client.clone();
        let uri = uri.clone();
        let payloads = payloads.clone();
        let stats = stats.clone();
        let permits = permits.clone();
        let rate_limited = args.rate > 0;
        let protocol = args.protocol;
        let gzip = args.gzip;
        let offsets = offsets.clone();
        let sequence = sequence.clone();
        workers.push(tokio::spawn(async move {
            let mut n = worker;
            while Instant::now() < deadline {
                if rate_limited {
                    match tokio::time::timeout_at(deadline, permits.acquire()).await {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => break,
                    }
                }
                let index = n % payloads.len();
                let body = match offsets.get(index) {
                    Some(offsets) => with_fresh_ids(
                        &payloads[index],
                        offsets,
                        sequence.fetch_add(1, Ordering::Relaxed),
                    ),
                    None => payloads[index].clone(),
                };
                n += 1;
                let sent = Instant::now();
                let outcome = send(&client, &uri, protocol, gzip, body).await;
                let micros = sent.elapsed().as_micros() as u64;
                match outcome {
                    Outcome::Ok => {
                        stats.ok_requests.fetch_add(1, Ordering::Relaxed);
                        stats.ok_items.fetch_add(items, Ordering::Relaxed);
                        if let Ok(mut l) = stats.latencies_us.lock() {
                            l.push(micros);
                        }
                    }
                    Outcome::Refused => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Failed => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    let reporter = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = stats.ok_items.load(Ordering::Relaxed);
                eprintln!(
                    "{:>4}s  {:>10} items/s  refused {}  failed {}",
                    start.elapsed().as_secs(),
                    now - last,
                    stats.refused.load(Ordering::Relaxed),
                    stats.failed.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    };
    for worker in workers {
        worker.await.context("worker")?;
    }
    reporter.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = stats
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let ok = stats.ok_items.load(Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    writeln!(out, "signal            : {}", signal)?;
    writeln!(out, "items/request     : {items}")?;
    writeln!(out, "accepted items/s  : {:.0}", ok as f64 / elapsed)?;
    writeln!(
        out,
        "accepted requests : {}",
        stats.ok_requests.load(Ordering::Relaxed)
    )?;
    writeln!(
        out,
        "refused (retryable): {}",
        stats.refused.load(Ordering::Relaxed)
    )?;
    writeln!(
        out,
        "failed            : {}",
        stats.failed.load(Ordering::Relaxed)
    )?;
    writeln!(
        out,
        "latency p50/p99   : {:.2} ms / {:.2} ms",
        pct(0.5) as f64 / 1e3,
        pct(0.99) as f64 / 1e3
    )?;
    if ok == 0 {
        bail!("nothing was accepted");
    }
    Ok(())
}

enum Outcome {
    Ok,
    Refused,
    Failed,
}

async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    uri: &http::Uri,
    protocol: Protocol,
    gzip: bool,
    body: Bytes,
) -> Outcome {
    let mut request = http::Request::post(uri.clone());
    request = match protocol {
        Protocol::Grpc => {
            let r = request
                .header("content-type", "application/grpc")
                .header("te", "trailers");
            if gzip {
                r.header("grpc-encoding", "gzip")
            } else {
                r
            }
        }
        Protocol::Http => {
            let r = request.header("content-type", "application/x-protobuf");
            if gzip {
                r.header("content-encoding", "gzip")
            } else {
                r
            }
        }
    };
    let Ok(request) = request.body(Full::new(body)) else {
        return Outcome::Failed;
    };
    let Ok(response) = client.request(request).await else {
        return Outcome::Failed;
    };
    let status = response.status();
    let Ok(collected) = response.into_body().collect().await else {
        return Outcome::Failed;
    };
    match protocol {
        Protocol::Http => match status.as_u16() {
            200 => Outcome::Ok,
            429 | 502..=504 => Outcome::Refused,
            _ => Outcome::Failed,
        },
        Protocol::Grpc => {
            let code = collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok());
            match code {
                Some(0) => Outcome::Ok,
                Some(8) | Some(14) => Outcome::Refused,
                _ => Outcome::Failed,
            }
        }
    }
}

fn grpc_frame(body: &[u8], compressed: bool) -> Bytes {
    let mut framed = BytesMut::with_capacity(body.len() + 5);
    framed.put_u8(u8::from(compressed));
    framed.put_u32(body.len() as u32);
    framed.put_slice(body);
    framed.freeze()
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(body)
        .expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}
