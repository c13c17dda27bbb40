//! The per-exporter circuit breaker end to end: a running gateway under
//! steady load, sending to a fake OTLP backend that goes down (every request
//! answered UNAVAILABLE / 503) and comes back.
//!
//! - zero loss: every span the gateway acknowledged arrives, although the
//!   outage (60 s) is longer than the exporter's retry budget (10 s);
//! - attempts during the outage grow logarithmically: the backend sees the
//!   failures that open the breaker and one probe per doubling open wait, a
//!   handful where retrying workers would make hundreds;
//! - `/ready` reports the open breaker during the outage and is ready after,
//!   and the state gauge and transition counter say what happened;
//! - `check-config` refuses a bad `circuit_breaker` table, naming the key.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_gateway::testkit;
use prost::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use support::fake_otlp::{Answer, Code, Failure, FakeOtlp};
use support::gateway;

/// Workers of the exporter.
const WORKERS: usize = 4;
/// `circuit_breaker.consecutive_failures` (the default).
const CONSECUTIVE_FAILURES: usize = 5;
/// `circuit_breaker.open_initial` (the default), in seconds.
const OPEN_INITIAL: f64 = 1.0;
/// The breaker's jitter: a wait is at least this share of its base.
const JITTER_LOW: f64 = 0.8;
/// Client requests of 10 spans each, one every this long.
const LOAD_EVERY: Duration = Duration::from_millis(100);

/// The exporter `otlp/<name>` to `endpoint`: retries within a 10 s budget, the default
/// breaker but for `open_max`.
fn exporter(name: &str, endpoint: &str, protocol: &str, open_max_secs: u64) -> String {
    format!(
        r#"
[exporters.otlp.{name}]
endpoint = "{endpoint}"
protocol = "{protocol}"
compression = "none"
timeout = "2s"
[exporters.otlp.{name}.retry_on_failure]
initial_interval = "100ms"
max_interval = "500ms"
max_elapsed_time = "10s"
[exporters.otlp.{name}.sending_queue]
queue_size = 200000
num_consumers = {WORKERS}
[exporters.otlp.{name}.circuit_breaker]
open_max = "{open_max_secs}s"
[pipelines.traces]
exporters = ["otlp/{name}"]
"#
    )
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

/// Most failed attempts the backend may see in an outage of `outage`: the
/// failures that open the breaker, one more in flight per other worker, and
/// the probes, whose waits double from `open_initial` up to `open_max`, each
/// at least [`JITTER_LOW`] of its base; two more for the moments the backend
/// is switched.
fn most_failed_attempts(outage: Duration, open_max: f64) -> usize {
    let mut probes = 0;
    let mut at = 0.0;
    let mut base = OPEN_INITIAL;
    loop {
        at += (base * JITTER_LOW).min(open_max);
        if at > outage.as_secs_f64() {
            break;
        }
        probes += 1;
        base = (base * 2.0).min(open_max);
    }
    CONSECUTIVE_FAILURES + (WORKERS - 1) + probes + 2
}

/// `GET /ready`: status and body.
async fn ready(http: &reqwest::Client, admin: SocketAddr) -> (u16, String) {
    let response = http
        .get(format!("http://{admin}/ready"))
        .send()
        .await
        .expect("ready");
    let status = response.status().as_u16();
    (status, response.text().await.expect("ready body"))
}

/// The value of `series` (name and exact labels) on `/metrics`, if present.
async fn metric(http: &reqwest::Client, admin: SocketAddr, series: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

/// Polls `/ready` until `wanted` holds, for at most `limit`; returns the last answer.
async fn ready_until(
    http: &reqwest::Client,
    admin: SocketAddr,
    limit: Duration,
    wanted: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = ready(http, admin).await;
        if wanted(status, &body) || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a request of 10 spans every [`LOAD_EVERY`] until `stop`; returns the spans acknowledged.
fn steady_load(url: String, stop: CancellationToken) -> tokio::task::JoinHandle<HashSet<Vec<u8>>> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut acknowledged = HashSet::new();
        let mut tick = tokio::time::interval(LOAD_EVERY);
        let mut seed = 0u64;
        while !stop.is_cancelled() {
            tick.tick().await;
            seed += 1;
            let request = testkit::trace_request(seed, 10);
            let response = http
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(request.encode_to_vec())
                .send()
                .await
                .expect("the gateway answers");
            if response.status() == 200 {
                acknowledged.extend(span_ids(&request));
            }
        }
        acknowledged
    })
}

/// The backend answers `failure` to everything for `outage` under steady load, then
/// recovers; checks loss, attempts, readiness and the breaker's metrics.
async fn outage_under_load(name: &str, protocol: &str, failure: Failure, outage: Duration) {
    /// The breaker's cap on its open wait in this test, so it probes again soon after
    /// the backend is back (the doubling to the default 60 s is a unit test's).
    const OPEN_MAX: u64 = 10;
    let fake = FakeOtlp::start().await;
    let endpoint = match protocol {
        "grpc" => fake.grpc_url(),
        _ => fake.http_url(),
    };
    let gw = gateway::start(&exporter(name, &endpoint, protocol, OPEN_MAX)).await;
    let admin = gateway::admin(&gw);
    let http = reqwest::Client::new();
    let id = format!("otlp/{name}");
    let state = format!(r#"otlp_gateway_exporter_circuit_state{{exporter="{id}"}}"#);
    assert_eq!(metric(&http, admin, &state).await, Some(0.0));
    assert_eq!(ready(&http, admin).await.0, 200);

    let stop = CancellationToken::new();
    let load = steady_load(
        format!("{}/v1/traces", gateway::http_base(&gw)),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !fake.received_traces().is_empty(),
        "delivered before the outage"
    );

    // Down.
    fake.set_default(Answer::Fail(failure));
    let down_at = Instant::now();
    let expected = format!("circuit breaker of {id} open");
    let (status, body) = ready_until(&http, admin, Duration::from_secs(4), |status, body| {
        status == 503 && body.contains(&expected)
    })
    .await;
    assert_eq!(
        (status, body.trim()),
        (503, expected.as_str()),
        "/ready during the outage"
    );
    // Open (1), or half-open (2) while a probe is in flight.
    let during = metric(&http, admin, &state).await;
    assert!(matches!(during, Some(1.0 | 2.0)), "{during:?}");
    tokio::time::sleep(outage.saturating_sub(down_at.elapsed())).await;
    let failed = fake.requests().iter().filter(|r| !r.accepted()).count();

    // Up again.
    fake.reset_answers();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let acknowledged = load.await.expect("load task");
    // 100 spans a second were offered; the queue took them in all along.
    assert!(
        acknowledged.len() as u64 >= outage.as_secs() * 50,
        "the gateway kept acknowledging during the outage: {} spans",
        acknowledged.len()
    );

    // The next probe (at most OPEN_MAX + jitter after the recovery) closes the breaker
    // and the queue drains.
    let deadline = Instant::now() + Duration::from_secs(OPEN_MAX * 2 + 10);
    let missing = loop {
        let delivered: HashSet<_> = fake.received_traces().iter().flat_map(span_ids).collect();
        let missing = acknowledged.difference(&delivered).count();
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        missing,
        0,
        "every acknowledged span arrives ({} acknowledged)",
        acknowledged.len()
    );
    let (status, body) = ready_until(&http, admin, Duration::from_secs(5), |status, _| {
        status == 200
    })
    .await;
    assert_eq!((status, body.as_str()), (200, "ready\n"), "/ready after");
    assert_eq!(metric(&http, admin, &state).await, Some(0.0));

    // Logarithmic attempts: a handful, not a retry every half second per worker.
    let bound = most_failed_attempts(outage, OPEN_MAX as f64);
    eprintln!("{id}: {failed} failed attempts in a {outage:?} outage (bound {bound}), {} spans acknowledged", acknowledged.len());
    assert!(
        (CONSECUTIVE_FAILURES..=bound).contains(&failed),
        "{failed} failed attempts in a {outage:?} outage (at most {bound})"
    );
    let transitions = |to: &str| {
        format!(r#"otlp_gateway_exporter_circuit_transitions_total{{exporter="{id}",to="{to}"}}"#)
    };
    let opened = metric(&http, admin, &transitions("open")).await;
    let closed = metric(&http, admin, &transitions("closed")).await;
    assert!(opened.is_some_and(|n| n >= 1.0), "{opened:?}");
    assert_eq!(closed, Some(1.0));
    // Each opening was followed by one half-open probe: the failed ones re-opened, the last closed.
    let probes = metric(&http, admin, &transitions("half_open")).await;
    assert_eq!(probes, opened);
    assert!(gw.shutdown().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_5s_under_load_loses_nothing_and_probes_logarithmically() {
    outage_under_load(
        "five",
        "grpc",
        Failure::grpc(Code::Unavailable),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_60s_under_load_loses_nothing_and_probes_logarithmically() {
    outage_under_load(
        "sixty",
        "http_protobuf",
        Failure::http(503),
        Duration::from_secs(60),
    )
    .await;
}

#[test]
fn check_config_refuses_a_bad_breaker_table_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[exporters.otlp.x]
endpoint = "http://127.0.0.1:4317"
[exporters.otlp.x.circuit_breaker]
consecutive_failures = 0
failure_ratio = 2.0
open_initial = "30s"
open_max = "10s"
[pipelines.traces]
exporters = ["otlp/x"]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "exporters.otlp.x.circuit_breaker.consecutive_failures (line 4): must be greater than 0",
        "exporters.otlp.x.circuit_breaker.failure_ratio (line 5): must be greater than 0 and at most 1, got 2",
        "exporters.otlp.x.circuit_breaker.open_max (line 7): must be at least open_initial (30s)",
    ] {
        assert!(stderr.contains(expected), "{expected}\nnot in:\n{stderr}");
    }

    // Unknown keys too.
    std::fs::write(
        &path,
        "[exporters.otlp.x]\nendpoint = \"http://127.0.0.1:4317\"\n[exporters.otlp.x.circuit_breaker]\nthreshold = 3\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("threshold"), "{stderr}");

    // A good table is described.
    std::fs::write(
        &path,
        "[exporters.otlp.x]\nendpoint = \"http://127.0.0.1:4317\"\n[exporters.otlp.x.circuit_breaker]\nopen_max = \"2m\"\n[pipelines.traces]\nexporters = [\"otlp/x\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("breaker after 5 failures or 10% of 20+ in 30s, open 1s..2m"),
        "{stdout}"
    );
}
