//! The receivers' in-flight byte budget (`receivers.otlp.max_inflight_bytes`):
//! request bodies count against it while they stream in, so slow or many
//! clients cannot make the gateway hold unbounded memory.

mod support;

use std::time::Duration;

use otlp_gateway::model::Signal;
use otlp_gateway::testkit;

use support::fake_otlp::FakeOtlp;
use support::gateway;

/// Bodies being read count against `max_inflight_bytes` while they stream
/// in: with slow clients holding most of the budget, the next request is
/// refused retryably, and accepted again once the slow ones are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_hold_the_inflight_budget() {
    use tokio::io::AsyncWriteExt;

    let fake = FakeOtlp::start().await;
    // One request may hold 300 KiB + 300 KiB; the budget is exactly that.
    let text = format!(
        "[admin]\nendpoint = \"127.0.0.1:0\"\n\
         [receivers.otlp]\nmax_inflight_bytes = \"600KiB\"\n\
         [receivers.otlp.grpc]\nendpoint = \"127.0.0.1:0\"\nmax_request_bytes = \"300KiB\"\nmax_decompressed_bytes = \"300KiB\"\n\
         [receivers.otlp.http]\nendpoint = \"127.0.0.1:0\"\nmax_request_bytes = \"300KiB\"\nmax_decompressed_bytes = \"300KiB\"\n\
         {}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 100_000)
    );
    let (config, _) = otlp_gateway::config::load_and_validate_str(&text, "test.toml")
        .unwrap_or_else(|errors| panic!("{errors}"));
    let gw = otlp_gateway::topology::Gateway::start(&config)
        .await
        .expect("starts");
    let addr = gw.http_addr().expect("http receiver");
    let url = format!("{}/v1/traces", gateway::http_base(&gw));
    let body = testkit::encoded_traces(1, 512); // ~212 KB
    let send = || {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
    };

    // Two slow clients: each announces 300 000 bytes, sends 250 000, then waits.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(
                b"POST /v1/traces HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-protobuf\r\ncontent-length: 300000\r\n\r\n",
            )
            .await
            .unwrap();
        stream.write_all(&vec![0u8; 250_000]).await.unwrap();
        stream.flush().await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let refused = send().await.expect("request");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");

    drop(slow);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut status = 0;
    while tokio::time::Instant::now() < deadline {
        status = send().await.expect("request").status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, 200,
        "the budget is free once the slow clients are gone"
    );
    fake.wait_for_items(Signal::Traces, 512).await;
    assert!(gw.shutdown().await);
}
