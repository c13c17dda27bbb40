//! The disk queue end to end, with the gateway binary as a child process:
//!
//! - data acknowledged while the backend is down survives `kill -9` and is
//!   delivered after the restart;
//! - `kill -9` under load, again and again: every acknowledged span arrives
//!   at least once, and duplicates stay within the records in flight at the kills;
//! - a full queue (`max_bytes`) refuses retryably, loses nothing it
//!   acknowledged, and takes data again once the backend drained it;
//! - bad `sending_queue.disk` settings are refused by `check-config` with the key path.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_gateway::testkit;
use prost::Message;

use support::fake_otlp::{Answer, Code, Failure, FakeOtlp};
use support::process::strip_ansi;

/// How long any one step may take.
const LIMIT: Duration = Duration::from_secs(60);
/// Spans per client request.
const SPANS: usize = 20;
/// `send_batch_max_size`: the most spans one delivery read from disk holds.
const MAX_BATCH: u64 = 500;
/// `sending_queue.num_consumers`.
const CONSUMERS: u64 = 2;

fn config(queue_dir: &Path, endpoint: &str, extra_disk: &str) -> String {
    format!(
        r#"
[service]
shutdown_timeout = "5s"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"
[receivers.otlp.http]
endpoint = "127.0.0.1:0"
[processors.batch]
send_batch_size = {MAX_BATCH}
send_batch_max_size = {MAX_BATCH}
timeout = "20ms"
[storage]
directory = "{dir}"
max_bytes = "1GiB"
[exporters.otlp.backend]
endpoint = "{endpoint}"
protocol = "grpc"
compression = "none"
timeout = "2s"
[exporters.otlp.backend.retry_on_failure]
initial_interval = "50ms"
max_interval = "200ms"
max_elapsed_time = "600s"
[exporters.otlp.backend.circuit_breaker]
enabled = false
[exporters.otlp.backend.sending_queue]
num_consumers = {CONSUMERS}
storage = "disk"
[exporters.otlp.backend.sending_queue.disk]
segment_bytes = "256KiB"
{extra_disk}
[pipelines.traces]
exporters = ["otlp/backend"]
"#,
        dir = queue_dir.display()
    )
}

/// The gateway binary, running.
struct Running {
    child: Child,
    http: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway on `config_path` and waits for its start line.
fn start(config_path: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
        .arg("--config")
        .arg(config_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let stderr = child.stderr.take().expect("stderr");
    // Killed on drop, also when no start line comes.
    let mut running = Running {
        child,
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no start line; stderr: {seen:#?}"));
        let line = strip_ansi(&line);
        if line.contains("Gateway started.") {
            let from = line.find("http_addr=Some(").expect("http address") + 15;
            let to = from + line[from..].find(')').expect(")");
            running.http = line[from..to].parse().expect("an address");
            return running;
        }
        seen.push(line);
    }
}

fn span_ids(request: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| [s.trace_id.clone(), s.span_id.clone()].concat())
        .collect()
}

/// Every span id the backend accepted, with how often.
fn delivered(fake: &FakeOtlp) -> HashMap<Vec<u8>, u32> {
    let mut seen = HashMap::new();
    for request in fake
        .requests()
        .into_iter()
        .filter(support::fake_otlp::Received::accepted)
    {
        if let support::fake_otlp::Payload::Traces(request) = &request.payload {
            for id in span_ids(request) {
                *seen.entry(id).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// Posts one request of [`SPANS`] spans (seed `seed`); its span ids when acknowledged.
async fn send(http: &reqwest::Client, gateway: SocketAddr, seed: u64) -> Option<Vec<Vec<u8>>> {
    let request = testkit::trace_request(seed, SPANS);
    let response = http
        .post(format!("http://{gateway}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .timeout(Duration::from_secs(10))
        .body(request.encode_to_vec())
        .send()
        .await
        .ok()?;
    (response.status() == 200).then(|| span_ids(&request))
}

/// Waits until the backend holds every id of `wanted`.
async fn wait_delivered(fake: &FakeOtlp, wanted: &HashSet<Vec<u8>>) -> HashMap<Vec<u8>, u32> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = delivered(fake);
        let missing = wanted.iter().filter(|id| !got.contains_key(*id)).count();
        if missing == 0 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged spans never arrived",
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_acknowledged_while_the_backend_is_down_survives_kill_9() {
    let fake = FakeOtlp::start().await;
    fake.set_default(Answer::Fail(Failure::grpc(Code::Unavailable)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        config(&dir.path().join("queue"), &fake.grpc_url(), ""),
    )
    .unwrap();

    let gateway = start(&path);
    let http = reqwest::Client::new();
    let mut acknowledged = HashSet::new();
    for seed in 0..50 {
        let ids = send(&http, gateway.http, seed).await.expect("acknowledged");
        acknowledged.extend(ids);
    }
    // Nothing got through; kill the gateway without a chance to flush anything.
    assert!(delivered(&fake).is_empty());
    drop(gateway);
    let segments = std::fs::read_dir(dir.path().join("queue").join("otlp_backend-traces"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(segments >= 1, "the queue is on disk");

    fake.set_default(Answer::Ok);
    let _restarted = start(&path);
    let got = wait_delivered(&fake, &acknowledged).await;
    assert_eq!(got.len(), acknowledged.len(), "nothing unknown arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_again_and_again_loses_no_acknowledged_span() {
    let kills: u64 = std::env::var("OTLP_GATEWAY_KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let fake = FakeOtlp::start().await;
    // A slow backend keeps deliveries in flight when the kill comes.
    fake.set_delay(Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        config(&dir.path().join("queue"), &fake.grpc_url(), ""),
    )
    .unwrap();

    let mut acknowledged = HashSet::new();
    let mut seed = 0u64;
    let mut rng = testkit::Rng::new(7);
    for _ in 0..kills {
        let gateway = start(&path);
        let address = gateway.http;
        let run_for = Duration::from_millis(200 + rng.below(600));
        let mut clients = Vec::new();
        for client in 0..4u64 {
            let first = seed + client * 1_000_000;
            clients.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut acked = Vec::new();
                let until = Instant::now() + run_for;
                let mut seed = first;
                while Instant::now() < until {
                    if let Some(ids) = send(&http, address, seed).await {
                        acked.extend(ids);
                    }
                    seed += 1;
                }
                acked
            }));
        }
        // Kill mid-load: clients still sending, deliveries in flight.
        tokio::time::sleep(run_for.saturating_sub(Duration::from_millis(50))).await;
        drop(gateway);
        for client in clients {
            acknowledged.extend(client.await.unwrap());
        }
        seed += 4_000_000;
    }
    assert!(acknowledged.len() > 1000, "the load got through");
    let _last = start(&path);
    let got = wait_delivered(&fake, &acknowledged).await;
    let duplicates: u64 = got.values().map(|n| u64::from(*n) - 1).sum();
    // At a kill, what may come again: the deliveries in flight (one per
    // consumer) and those acknowledged since the cursor was last written.
    let bound = kills * CONSUMERS * MAX_BATCH * 2;
    eprintln!(
        "{} acknowledged spans over {kills} kills, {duplicates} duplicates (bound {bound})",
        acknowledged.len()
    );
    assert!(duplicates <= bound, "{duplicates} duplicates over {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_queue_refuses_retryably_and_loses_nothing() {
    let fake = FakeOtlp::start().await;
    fake.set_default(Answer::Fail(Failure::grpc(Code::Unavailable)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        config(
            &dir.path().join("queue"),
            &fake.grpc_url(),
            r#"max_bytes = "1MiB""#,
        ),
    )
    .unwrap();
    let gateway = start(&path);
    let http = reqwest::Client::new();
    let mut acknowledged = HashSet::new();
    let mut refused = None;
    for seed in 0..10_000 {
        let request = testkit::trace_request(seed, SPANS);
        let response = http
            .post(format!("http://{}/v1/traces", gateway.http))
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            acknowledged.extend(span_ids(&request));
        } else {
            refused = Some((
                response.status().as_u16(),
                response.headers().contains_key("retry-after"),
            ));
            break;
        }
    }
    assert_eq!(
        refused,
        Some((503, true)),
        "refused retryably once 1 MiB is on disk"
    );
    assert!(!acknowledged.is_empty());
    fake.set_default(Answer::Ok);
    wait_delivered(&fake, &acknowledged).await;
    // Drained: room again.
    let deadline = Instant::now() + LIMIT;
    loop {
        if send(&http, gateway.http, 99_999).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no room after the drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `check-config` on `config`: whether it passed, and what it printed.
fn check_config(path: &Path, config: &str) -> (bool, String) {
    std::fs::write(path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    (output.status.success(), text)
}

#[test]
fn check_config_refuses_bad_disk_queue_settings_with_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let queue = dir.path().join("queue");
    let (ok, text) = check_config(
        &path,
        &config(
            &queue,
            "http://127.0.0.1:1",
            "max_bytes = \"100KiB\"\ndurability = \"sometimes\"",
        ),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("exporters.otlp.backend.sending_queue.disk.durability"),
        "{text}"
    );

    let (ok, text) = check_config(
        &path,
        &config(&queue, "http://127.0.0.1:1", "max_bytes = \"100KiB\""),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("exporters.otlp.backend.sending_queue.disk.max_bytes")
            && text.contains("at least segment_bytes"),
        "{text}"
    );
}
