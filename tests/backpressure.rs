//! Backpressure end to end: the downstream stops answering, the exporter's
//! queue fills, clients get retryable answers (HTTP 503 + Retry-After, gRPC
//! UNAVAILABLE + RetryInfo) while memory stays bounded; when the downstream
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

/// The stated bound for this test: the whole test process (gateway, fake
/// downstream, client and test harness) stays under this resident size while
/// the gateway refuses load. The queue holds at most 4 096 spans (~2 MB).
const RSS_BOUND_BYTES: u64 = 200 * 1024 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
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
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 4096)
    ))
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/traces", gateway::http_base(&gw));

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
        assert!(
            rss_bytes() < RSS_BOUND_BYTES,
            "RSS {} over the bound",
            rss_bytes()
        );
    }
    assert!(refused > 0, "a blocked downstream must fill the queue");
    assert!(!acknowledged.is_empty());
    assert!(
        acknowledged.len() <= 4096 + 512,
        "no more than the queue accepted"
    );

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
