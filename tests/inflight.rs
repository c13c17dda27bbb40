//! The receivers' in-flight byte budget (`receivers.otlp.max_inflight_bytes`):
//! request bodies count against it while they stream in, so slow or many
//! clients cannot make the gateway hold unbounded memory.

use std::time::Duration;

use otlp_gateway::budget::ItemBudget;
use otlp_gateway::config::ByteSize;
use otlp_gateway::pipeline::{Accepted, Ingest};
use otlp_gateway::receiver::config::HttpConfig;
use otlp_gateway::receiver::HttpReceiver;
use otlp_gateway::testkit;
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a condition on the budget may take to come true.
const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `budget` holds `bytes`.
///
/// # Panics
/// When it does not within [`DEADLINE`], naming the level it got to.
async fn wait_for_level(budget: &ItemBudget, bytes: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while budget.used() != bytes {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the in-flight budget holds {} bytes after {DEADLINE:?}, expected {bytes}",
            budget.used()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `google.rpc.Status` message of a protobuf error answer.
async fn status_message(response: reqwest::Response) -> String {
    let body = response.bytes().await.expect("body");
    tonic_types::pb::Status::decode(body)
        .expect("a google.rpc.Status")
        .message
}

/// Bodies being read count against `max_inflight_bytes` while they stream
/// in: with slow clients holding most of the budget, the next request is
/// refused retryably, and accepted again once the slow ones are gone.
///
/// The receiver runs on an [`Ingest`] built here (a running `Gateway` does
/// not expose its budget), so the test can wait on the budget's level
/// instead of guessing how long the slow bodies take to arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_hold_the_inflight_budget() {
    // One request may hold 300 KiB + 300 KiB; the budget is exactly that.
    const BUDGET: u64 = 600 * 1024;
    let (tx, mut submissions) = mpsc::channel(16);
    let ingest =
        Ingest::new(Some(tx), None, None, Duration::from_secs(1)).with_inflight_limit(BUDGET);
    let budget = ingest.inflight().clone();
    let (items_tx, mut items) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(submission) = submissions.recv().await {
            let _ = items_tx.send(submission.envelope.batch.items());
            let _ = submission.reply.send(Ok(Accepted::default()));
        }
    });
    let config = HttpConfig {
        endpoint: "127.0.0.1:0".into(),
        max_request_bytes: ByteSize(300 * 1024),
        max_decompressed_bytes: ByteSize(300 * 1024),
        ..HttpConfig::default()
    };
    let receiver = HttpReceiver::bind(&config, ingest, Duration::from_secs(1), None)
        .await
        .expect("binds");
    let addr = receiver.local_addr();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(receiver.run(shutdown.clone()));

    let url = format!("http://{addr}/v1/traces");
    let body = testkit::encoded_traces(1, 512); // ~212 KB
    assert!(body.len() as u64 + 500_000 > BUDGET && body.len() as u64 <= BUDGET);
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
    wait_for_level(&budget, 500_000, "both slow bodies read").await;

    let refused = send().await.expect("request");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        status_message(refused).await,
        format!(
            "receiver memory limit reached ({BUDGET} bytes of requests in flight), retry later"
        )
    );
    assert_eq!(budget.used(), 500_000, "a refused request holds nothing");
    assert!(items.try_recv().is_err(), "nothing reached the pipeline");

    drop(slow);
    wait_for_level(&budget, 0, "slow clients gone").await;
    let accepted = send().await.expect("request");
    assert_eq!(
        accepted.status(),
        200,
        "the budget is free once the slow clients are gone"
    );
    assert_eq!(items.recv().await, Some(512));
    wait_for_level(&budget, 0, "request answered").await;
    shutdown.cancel();
    served.await.expect("receiver stops");
}
