//! What no client may do to the receivers: hold the shutdown open, lock
//! others out, keep a connection or the in-flight budget with a silent or
//! trickling upload, or have data for a signal without a pipeline
//! acknowledged and dropped. Each test failed on the receivers before
//! connection timeouts, eviction and bounded shutdown existed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use otlp_gateway::config;
use otlp_gateway::telemetry::metrics_handle;
use otlp_gateway::testkit;
use otlp_gateway::topology::{Gateway, FORCED_STOP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A gateway with a traces pipeline (debug exporter) and `receiver` lines in
/// both receiver tables.
async fn start(shutdown_timeout: &str, receiver: &str, http_extra: &str) -> Gateway {
    let text = format!(
        r#"
[service]
shutdown_timeout = "{shutdown_timeout}"
[service.logs]
level = "warn"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"
{receiver}
[receivers.otlp.http]
endpoint = "127.0.0.1:0"
{receiver}
{http_extra}
[exporters.debug.console]
[pipelines.traces]
exporters = ["debug/console"]
"#
    );
    let (config, _) = config::load_and_validate_str(&text, "test.toml")
        .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
    Gateway::start(&config).await.expect("starts")
}

/// Reads until the peer closes the connection (or `within` passes: `false`).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The value of one counter series in the shared recorder (0 when absent).
fn counter(series: &str) -> f64 {
    metrics_handle()
        .render()
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn json_request() -> String {
    r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"01010101010101010101010101010101",
       "spanId":"0101010101010101","name":"real","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_hold_the_shutdown_open() {
    // A header timeout far longer than the shutdown: only the shutdown's own
    // bound can close these connections in time.
    let gw = start("3s", "read_header_timeout = \"120s\"", "").await;
    let mut silent = Vec::new();
    for addr in [gw.grpc_addr().unwrap(), gw.http_addr().unwrap()] {
        for _ in 0..3 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
    }
    let forced_before = counter(
        "otlp_gateway_receiver_connections_closed_total{transport=\"grpc\",reason=\"shutdown_forced\"}",
    );
    let started = Instant::now();
    let drained = gw.shutdown().await;
    let took = started.elapsed();
    assert!(drained, "nothing was queued");
    assert!(
        took <= Duration::from_secs(3) + FORCED_STOP,
        "shutdown took {took:?} with silent clients connected"
    );
    for stream in &mut silent {
        assert!(
            closed_within(stream, Duration::from_secs(1)).await,
            "the gateway closed every silent connection"
        );
    }
    let forced_after = counter(
        "otlp_gateway_receiver_connections_closed_total{transport=\"grpc\",reason=\"shutdown_forced\"}",
    );
    assert!(
        forced_after >= forced_before + 3.0,
        "forced closes are counted: {forced_before} -> {forced_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_do_not_lock_out_a_real_client() {
    let gw = start("5s", "read_header_timeout = \"120s\"", "").await;
    let addr = gw.http_addr().unwrap();
    let mut silent = Vec::with_capacity(1000);
    for _ in 0..1000 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the gateway accept all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let evicted_before = counter(
        "otlp_gateway_receiver_connections_closed_total{transport=\"http\",reason=\"evicted\"}",
    );

    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/json")
        .body(json_request())
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("answered within 1 s");
    assert_eq!(answer.status(), StatusCode::OK);
    let evicted_after = counter(
        "otlp_gateway_receiver_connections_closed_total{transport=\"http\",reason=\"evicted\"}",
    );
    assert!(
        evicted_after > evicted_before,
        "the longest-idle connection made room: {evicted_before} -> {evicted_after}"
    );
    drop(silent);
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_missing_request_heads_are_closed_after_read_header_timeout() {
    let gw = start("5s", "read_header_timeout = \"500ms\"", "").await;
    // Nothing at all, on both protocols (gRPC: not even the HTTP/2 preface).
    for addr in [gw.grpc_addr().unwrap(), gw.http_addr().unwrap()] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut stream, Duration::from_secs(3)).await,
            "a silent connection to {addr} is closed"
        );
    }
    // An HTTP/1 head trickled a byte at a time.
    let mut stream = TcpStream::connect(gw.http_addr().unwrap()).await.unwrap();
    stream
        .write_all(b"POST /v1/traces HTTP/1.1\r\nhost: gw\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..60 {
            if stream.write_all(b"x").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        trickle.await,
        "a trickled request head is cut off well before 6 s"
    );
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_answered_408_and_gives_its_budget_back() {
    let gw = start("5s", "read_timeout = \"500ms\"", "").await;
    let addr = gw.http_addr().unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100000\r\n\r\n",
        )
        .await
        .unwrap();
    stream.write_all(&[0u8; 1000]).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!("no answer to a trickling body: {other:?}"),
        }
    }
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    // The budget it held is back: a normal request goes through.
    let ok = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(testkit::encoded_traces(1, 64))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_without_a_pipeline_is_refused_not_acknowledged() {
    let gw = start("5s", "", "").await;
    let answer = reqwest::Client::new()
        .post(format!("http://{}/v1/logs", gw.http_addr().unwrap()))
        .header("content-type", "application/x-protobuf")
        .body(testkit::encoded_logs(1, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);

    let mut client = LogsServiceClient::connect(format!("http://{}", gw.grpc_addr().unwrap()))
        .await
        .unwrap();
    let status = client
        .export(testkit::logs_request(1, 10))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("no pipeline for logs"),
        "{status:?}"
    );
    assert!(gw.shutdown().await);
}

/// One gRPC call whose body streams `chunks`, one per `every`; returns the
/// grpc-status (trailers or Trailers-Only headers) and the HTTP status.
async fn grpc_call(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    chunks: Vec<Bytes>,
    every: Duration,
) -> (StatusCode, Option<String>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().method(Method::POST).uri(format!(
        "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = StreamBody::new(Box::pin(futures_util::stream::unfold(
        chunks.into_iter(),
        move |mut rest| async move {
            let chunk = rest.next()?;
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Frame::data(chunk)), rest))
        },
    )));
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let trailers = body
        .collect()
        .await
        .ok()
        .and_then(|c| c.trailers().cloned())
        .unwrap_or_default();
    let status = trailers
        .get("grpc-status")
        .or_else(|| parts.headers.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned());
    (parts.status, status)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_honoured_and_other_codecs_are_refused() {
    let gw = start("5s", "", "").await;
    let addr = gw.grpc_addr().unwrap();
    let message = framed(&testkit::encoded_traces(1, 16));
    let (head, tail) = message.split_at(10);

    // The client gives up after 300 ms: answered DEADLINE_EXCEEDED (4) by then,
    // although its body would take 3 s to arrive.
    let started = Instant::now();
    let (_, status) = grpc_call(
        addr,
        &[
            ("content-type", "application/grpc"),
            ("grpc-timeout", "300m"),
        ],
        vec![Bytes::copy_from_slice(head), Bytes::copy_from_slice(tail)],
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status.as_deref(), Some("4"));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Without one, the same request succeeds.
    let (_, status) = grpc_call(
        addr,
        &[("content-type", "application/grpc")],
        vec![Bytes::copy_from_slice(&message)],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status.as_deref(), Some("0"));

    // A JSON codec is not parsed as protobuf: UNIMPLEMENTED (12).
    let (_, status) = grpc_call(
        addr,
        &[("content-type", "application/grpc+json")],
        vec![Bytes::from_static(b"\0\0\0\0\x02{}")],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status.as_deref(), Some("12"));

    // gRPC-Web is another protocol: refused at the HTTP level.
    let (http, _) = grpc_call(
        addr,
        &[("content-type", "application/grpc-web+proto")],
        vec![Bytes::copy_from_slice(&message)],
        Duration::ZERO,
    )
    .await;
    assert_eq!(http, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nan_and_infinity_are_accepted() {
    let gw = start(
        "5s",
        "",
        "[exporters.debug.metrics]\n[pipelines.metrics]\nexporters = [\"debug/metrics\"]\n",
    )
    .await;
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[
        {"timeUnixNano":"1","asDouble":"NaN"},{"timeUnixNano":"2","asDouble":"Infinity"},
        {"timeUnixNano":"3","asDouble":"-Infinity"},{"timeUnixNano":"4","asDouble":"1e3"}]}}]}]}]}"#;
    let answer = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", gw.http_addr().unwrap()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "{}");
    assert!(gw.shutdown().await);
}
