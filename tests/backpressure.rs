//! Backpressure end to end: the downstream stops answering, the exporter's
//! queue fills, clients get retryable answers (HTTP 503 + Retry-After, gRPC
//! UNAVAILABLE + RetryInfo) while the exporter's queue stays within its
//! capacity (read on its `/metrics` gauges); when the downstream
//! comes back, everything that was acknowledged arrives. Also: shutdown
//! drains what was acknowledged.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use otlp_gateway::model::Signal;
use otlp_gateway::testkit;
use prost::Message;

use support::fake_otlp::FakeOtlp;
use support::gateway;

/// Capacity of the exporter's queue in the test, in spans (~2 MB).
const QUEUE_SIZE: u64 = 4096;

/// A coarse guard on the whole process: its resident size may grow by at
/// most this much from just before the load to the end of it. The load is
/// 64 requests of ~212 KB (~13.5 MB), so this catches gross leaks or
/// amplification, not an unbounded queue; the queue's own bound is checked
/// on its gauges.
const RSS_GROWTH_BOUND_BYTES: u64 = 64 * 1024 * 1024;

const QUEUE_ITEMS: &str = r#"otlp_gateway_queue_items{exporter="otlp/down",signal="traces"}"#;
const QUEUE_CAPACITY: &str =
    r#"otlp_gateway_queue_capacity_items{exporter="otlp/down",signal="traces"}"#;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

/// The value of `series` (name and exact labels) on the admin `/metrics`
/// page, if present.
async fn gauge(http: &reqwest::Client, admin: std::net::SocketAddr, series: &str) -> Option<u64> {
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
        .map(|value| value.trim().parse::<f64>().expect("a number") as u64)
}

fn trace_ids(
    request: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Vec<Vec<u8>> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| [s.trace_id.clone(), s.span_id.clone()].concat())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_retryably_and_delivers_everything_acknowledged() {
    let fake = FakeOtlp::start().await;
    fake.block();
    let gw = gateway::start(&format!(
        "{}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", QUEUE_SIZE)
    ))
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/traces", gateway::http_base(&gw));
    let admin = gateway::admin(&gw);
    assert_eq!(gauge(&http, admin, QUEUE_CAPACITY).await, Some(QUEUE_SIZE));

    // Watch the queue gauge (refreshed every second) for the whole refusing phase.
    let watching = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn({
        let (http, watching) = (http.clone(), watching.clone());
        async move {
            let mut highest = 0;
            loop {
                highest = highest.max(gauge(&http, admin, QUEUE_ITEMS).await.unwrap_or(0));
                if watching.is_cancelled() {
                    return highest;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let rss_before = rss_bytes();
    let mut rss_highest = rss_before;
    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    for seed in 0..64u64 {
        let request = testkit::trace_request(seed, 512);
        let response = http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .expect("request");
        match response.status().as_u16() {
            200 => acknowledged.extend(trace_ids(&request)),
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
        rss_highest = rss_highest.max(rss_bytes());
    }
    assert!(
        rss_highest - rss_before < RSS_GROWTH_BOUND_BYTES,
        "RSS grew by {} bytes under load (from {rss_before})",
        rss_highest - rss_before
    );

    // Nothing is delivered while the downstream is blocked, so the queue holds
    // exactly what was acknowledged; wait for the gauge to show it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = gauge(&http, admin, QUEUE_ITEMS).await.unwrap_or(0);
        if held == acknowledged.len() as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue gauge at {held} items, {} acknowledged",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        acknowledged.len() as u64 <= QUEUE_SIZE,
        "the queue holds {} items, over its capacity of {QUEUE_SIZE}",
        acknowledged.len()
    );
    assert!(refused > 0, "a blocked downstream must fill the queue");
    assert!(!acknowledged.is_empty());

    // gRPC clients get UNAVAILABLE with RetryInfo.
    let mut grpc = TraceServiceClient::connect(gateway::grpc_url(&gw))
        .await
        .expect("connect");
    let status = grpc
        .export(testkit::trace_request(1000, 512))
        .await
        .expect_err("queue is full");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(
        details.retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_secs(1))
    );

    // /ready reports the full queue.
    let ready = http
        .get(format!("http://{}/ready", gateway::admin(&gw)))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);

    watching.cancel();
    let highest = watcher.await.expect("watcher");
    assert!(
        highest <= QUEUE_SIZE,
        "the queue gauge reached {highest} items, over its capacity of {QUEUE_SIZE}"
    );

    fake.release();
    fake.wait_for_items(Signal::Traces, acknowledged.len() as u64)
        .await;
    let delivered: HashSet<_> = fake.received_traces().iter().flat_map(trace_ids).collect();
    let missing = acknowledged.difference(&delivered).count();
    assert_eq!(missing, 0, "every acknowledged span arrives");
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_acknowledged_data() {
    let fake = FakeOtlp::start().await;
    fake.set_delay(Duration::from_millis(200));
    let gw = gateway::start(&format!(
        "{}\n[pipelines.logs]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.http_url(), "http_protobuf", 100_000)
    ))
    .await;
    let http = reqwest::Client::new();
    for seed in 0..5 {
        let response = http
            .post(format!("{}/v1/logs", gateway::http_base(&gw)))
            .header("content-type", "application/x-protobuf")
            .body(testkit::encoded_logs(seed, 100))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    assert!(gw.shutdown().await, "drained within the deadline");
    assert_eq!(fake.accepted_items(Signal::Logs), 500);
}
