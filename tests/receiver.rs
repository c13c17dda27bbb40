//! The OTLP receivers over real sockets: what clients send, what the
//! pipeline gets, and the exact answer to every kind of bad request.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use otlp_gateway::config::ByteSize;
use otlp_gateway::model::{Batch, Signal};
use otlp_gateway::pipeline::{Accepted, Ingest};
use otlp_gateway::receiver::config::{GrpcConfig, HttpConfig};
use otlp_gateway::receiver::{GrpcReceiver, HttpReceiver, ReceiveError};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::Code;

// ---------------------------------------------------------------- harness

/// Every test records into one Prometheus recorder, so metrics can be read back.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

/// Held by every test that sends logs over HTTP: the series labelled
/// `signal="logs",transport="http"` then change only by the requests of the
/// test holding it, so `requests_are_counted_by_outcome_and_reason` can
/// assert exact counts although the recorder is shared by the whole binary.
static LOGS_OVER_HTTP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of `series` (a metric name with its exact labels, as rendered)
/// in Prometheus text; 0 when the series does not exist yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The sum of every series of `metric` whose labels start with `labels`.
fn sample_sum(text: &str, metric: &str, labels: &str) -> f64 {
    let prefix = format!("{metric}{{{labels},");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// How the fake pipeline answers each submission.
#[derive(Clone)]
enum Pipeline {
    /// `Ok(Accepted::default())` at once.
    Accept,
    /// `Ok(Accepted { rejected_items, message })`.
    Reject(u64, &'static str),
    /// Takes submissions off the channel but never answers until the gate opens.
    Gated(std::sync::Arc<tokio::sync::Notify>),
    /// Never reads the channel (capacity 1): the second request finds it full.
    Stalled,
}

struct Gateway {
    grpc: SocketAddr,
    http: SocketAddr,
    ingest: Ingest,
    batches: mpsc::UnboundedReceiver<Batch>,
    shutdown: CancellationToken,
    grpc_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    /// Keeps the channels of a `Stalled` pipeline open.
    _stalled: Vec<mpsc::Receiver<otlp_gateway::pipeline::Submission>>,
}

fn grpc_config() -> GrpcConfig {
    GrpcConfig {
        endpoint: "127.0.0.1:0".into(),
        ..GrpcConfig::default()
    }
}

fn http_config() -> HttpConfig {
    HttpConfig {
        endpoint: "127.0.0.1:0".into(),
        ..HttpConfig::default()
    }
}

/// Small limits, for the size tests.
const MAX_REQUEST: u64 = 256 * 1024;
const MAX_DECOMPRESSED: u64 = 1024 * 1024;

fn limited<C>(mut config: C, set: impl FnOnce(&mut C, ByteSize, ByteSize)) -> C {
    set(
        &mut config,
        ByteSize(MAX_REQUEST),
        ByteSize(MAX_DECOMPRESSED),
    );
    config
}

async fn start(pipeline: Pipeline) -> Gateway {
    let grpc = limited(grpc_config(), |c, r, d| {
        c.max_request_bytes = r;
        c.max_decompressed_bytes = d;
    });
    let http = limited(http_config(), |c, r, d| {
        c.max_request_bytes = r;
        c.max_decompressed_bytes = d;
    });
    start_with(grpc, http, pipeline).await
}

async fn start_with(grpc: GrpcConfig, http: HttpConfig, pipeline: Pipeline) -> Gateway {
    metrics();
    let capacity = if matches!(pipeline, Pipeline::Stalled) {
        1
    } else {
        16
    };
    let (ingest, receivers) = Ingest::channels(capacity);
    let (tx, batches) = mpsc::unbounded_channel();
    let mut stalled = Vec::new();
    for mut rx in receivers {
        if let Pipeline::Stalled = pipeline {
            stalled.push(rx);
            continue;
        }
        let (tx, pipeline) = (tx.clone(), pipeline.clone());
        tokio::spawn(async move {
            while let Some(submission) = rx.recv().await {
                let answer = match &pipeline {
                    Pipeline::Reject(n, message) => Accepted {
                        rejected_items: *n,
                        message: (*message).into(),
                    },
                    Pipeline::Gated(gate) => {
                        let _ = tx.send(submission.envelope.batch.clone());
                        let gate = gate.clone();
                        tokio::spawn(async move {
                            gate.notified().await;
                            let _ = submission.reply.send(Ok(Accepted::default()));
                        });
                        continue;
                    }
                    _ => Accepted::default(),
                };
                let _ = tx.send(submission.envelope.batch);
                let _ = submission.reply.send(Ok(answer));
            }
        });
    }
    let retry_after = Duration::from_secs(1);
    let grpc = GrpcReceiver::bind(&grpc, ingest.clone(), retry_after, None)
        .await
        .unwrap();
    let http = HttpReceiver::bind(&http, ingest.clone(), retry_after, None)
        .await
        .unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr(), http.local_addr());
    let shutdown = CancellationToken::new();
    Gateway {
        grpc: grpc_addr,
        http: http_addr,
        ingest,
        batches,
        grpc_task: tokio::spawn(grpc.run(shutdown.clone())),
        http_task: tokio::spawn(http.run(shutdown.clone())),
        shutdown,
        _stalled: stalled,
    }
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn traces_client(&self) -> TraceServiceClient<tonic::transport::Channel> {
        TraceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// The next batch the pipeline got.
    async fn next_batch(&mut self) -> Batch {
        tokio::time::timeout(Duration::from_secs(5), self.batches.recv())
            .await
            .expect("a batch reaches the pipeline")
            .unwrap()
    }

    fn no_batch(&mut self) {
        assert!(
            self.batches.try_recv().is_err(),
            "nothing reaches the pipeline"
        );
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> HttpAnswer {
        let mut request = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        HttpAnswer::read(request.send().await.unwrap()).await
    }
}

struct HttpAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpAnswer {
    async fn read(response: reqwest::Response) -> Self {
        HttpAnswer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// The protobuf `google.rpc.Status` body: (code, message).
    fn status_pb(&self) -> (i32, String) {
        assert_eq!(self.header("content-type"), "application/x-protobuf");
        let status = tonic_types::pb::Status::decode(self.body.clone()).unwrap();
        (status.code, status.message)
    }

    /// The JSON `google.rpc.Status` body.
    fn status_json(&self) -> serde_json::Value {
        assert_eq!(self.header("content-type"), "application/json");
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A gRPC answer read with a raw HTTP/2 client.
#[derive(Debug)]
struct GrpcAnswer {
    http_status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// From the trailers, or from the headers of a Trailers-Only answer.
    grpc_status: Option<String>,
    grpc_message: Option<String>,
}

/// Sends one request over a fresh HTTP/2 connection, exactly as given.
async fn raw_grpc(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> GrpcAnswer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let find = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    GrpcAnswer {
        http_status: parts.status,
        grpc_status: find("grpc-status"),
        grpc_message: find("grpc-message"),
        headers: parts.headers.clone(),
        body: collected.to_bytes(),
    }
}

const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const GRPC_CONTENT: (&str, &str) = ("content-type", "application/grpc");

/// One length-prefixed gRPC message.
fn frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn code(code: Code) -> Option<String> {
    Some((code as i32).to_string())
}

// ---------------------------------------------------------------- payloads

fn span(n: u8) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: format!("span-{n}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![KeyValue {
            key: "http.route".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("/checkout".into())),
            }),
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: "boom".into(),
        }),
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics_request() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1,
                            value: Some(number_data_point::Value::AsInt(3)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("hello".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// 100 MiB of zeros as 100 concatenated gzip members (a valid gzip stream)
/// of about 100 KiB: cheap to build, and far past any cap in these tests.
fn gzip_bomb() -> Vec<u8> {
    gzip(&vec![0; 1 << 20]).repeat(100)
}

/// The same with zstd frames, which also concatenate.
fn zstd_bomb() -> Vec<u8> {
    zstd(&vec![0; 1 << 20]).repeat(100)
}

/// A request with 3 spans, the second with an all-zero trace id.
fn traces_with_zero_trace_id() -> ExportTraceServiceRequest {
    let mut zero = span(2);
    zero.trace_id = vec![0; 16];
    traces(vec![span(1), zero, span(3)])
}

const ZERO_ID_MESSAGE: &str =
    "1 spans rejected: trace_id must be 16 and span_id 8 bytes, not all zero";

/// A body whose first field claims 5 bytes and has 1.
const TRUNCATED: &[u8] = &[0x0a, 0x05, 0x01];

// ---------------------------------------------------------------- gRPC

#[tokio::test]
async fn grpc_exports_of_every_signal_reach_the_pipeline_as_sent() {
    let mut gw = start(Pipeline::Accept).await;
    let request = traces(vec![span(1), span(2)]);
    let response = gw
        .traces_client()
        .await
        .export(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response,
        ExportTraceServiceResponse {
            partial_success: None
        }
    );
    let batch = gw.next_batch().await;
    assert_eq!((batch.signal(), batch.items()), (Signal::Traces, 2));
    assert_eq!(batch.to_bytes(), request.encode_to_vec());

    let endpoint = format!("http://{}", gw.grpc);
    let mut metrics_client = MetricsServiceClient::connect(endpoint.clone())
        .await
        .unwrap();
    metrics_client.export(metrics_request()).await.unwrap();
    let batch = gw.next_batch().await;
    assert_eq!((batch.signal(), batch.items()), (Signal::Metrics, 1));
    assert_eq!(batch.to_bytes(), metrics_request().encode_to_vec());

    let mut logs_client = LogsServiceClient::connect(endpoint).await.unwrap();
    logs_client.export(logs_request()).await.unwrap();
    let batch = gw.next_batch().await;
    assert_eq!((batch.signal(), batch.items()), (Signal::Logs, 1));
    assert_eq!(batch.to_bytes(), logs_request().encode_to_vec());
}

#[tokio::test]
async fn grpc_accepts_gzip_and_zstd_messages() {
    let mut gw = start(Pipeline::Accept).await;
    let request = traces((1..=50).map(span).collect());
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = gw.traces_client().await.send_compressed(encoding);
        client.export(request.clone()).await.unwrap();
        assert_eq!(
            gw.next_batch().await.to_bytes(),
            request.encode_to_vec(),
            "{encoding:?}"
        );
    }
}

#[tokio::test]
async fn grpc_partial_success_for_a_span_with_zero_trace_id() {
    let mut gw = start(Pipeline::Accept).await;
    let response = gw
        .traces_client()
        .await
        .export(traces_with_zero_trace_id())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.partial_success,
        Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: ZERO_ID_MESSAGE.into(),
        })
    );
    let batch = gw.next_batch().await;
    assert_eq!(batch.items(), 2, "the valid spans go on");
}

#[tokio::test]
async fn grpc_partial_success_adds_items_the_pipeline_rejected() {
    let gw = start(Pipeline::Reject(2, "tenant quota exceeded")).await;
    let response = gw
        .traces_client()
        .await
        .export(traces_with_zero_trace_id())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.partial_success,
        Some(ExportTracePartialSuccess {
            rejected_spans: 3,
            error_message: format!("{ZERO_ID_MESSAGE}; tenant quota exceeded"),
        })
    );
}

#[tokio::test]
async fn grpc_undecodable_protobuf_is_invalid_argument() {
    let mut gw = start(Pipeline::Accept).await;
    let status = gw
        .traces_client()
        .await
        .export(ExportTraceServiceRequest::default())
        .await;
    assert!(status.is_ok(), "an empty request is fine");

    let answer = raw_grpc(
        gw.grpc,
        GRPC_TRACES,
        &[GRPC_CONTENT],
        frame(false, TRUNCATED),
    )
    .await;
    assert_eq!(answer.http_status, StatusCode::OK);
    assert_eq!(answer.grpc_status, code(Code::InvalidArgument));
    assert_eq!(
        answer.grpc_message.as_deref(),
        Some("invalid traces request: truncated message")
    );
    gw.no_batch();
}

#[tokio::test]
async fn grpc_empty_message_is_an_empty_success() {
    let mut gw = start(Pipeline::Accept).await;
    let answer = raw_grpc(gw.grpc, GRPC_TRACES, &[GRPC_CONTENT], frame(false, b"")).await;
    assert_eq!(answer.grpc_status, code(Code::Ok));
    assert_eq!(answer.headers["content-type"], "application/grpc");
    assert_eq!(
        answer.body,
        frame(false, b""),
        "one empty ExportTraceServiceResponse"
    );
    gw.no_batch();
}

#[tokio::test]
async fn grpc_framing_errors() {
    let gw = start(Pipeline::Accept).await;
    let ok = frame(false, &traces(vec![span(1)]).encode_to_vec());
    let cases: Vec<(Vec<u8>, Code, &str)> = vec![
        (
            vec![],
            Code::InvalidArgument,
            "invalid gRPC framing: request has no message",
        ),
        (
            vec![0, 0],
            Code::InvalidArgument,
            "invalid gRPC framing: truncated message header (2 bytes)",
        ),
        (
            [ok.clone(), ok.clone()].concat(),
            Code::InvalidArgument,
            "invalid gRPC framing: more than one message in a unary request",
        ),
        (
            ok[..ok.len() - 1].to_vec(),
            Code::InvalidArgument,
            &*format!(
                "invalid gRPC framing: message truncated: header says {} bytes, body has {}",
                ok.len() - 5,
                ok.len() - 6
            )
            .leak(),
        ),
        (
            frame(true, b"x"),
            Code::Internal,
            "compressed flag set with identity or empty grpc-encoding",
        ),
    ];
    for (body, want, message) in cases {
        let answer = raw_grpc(gw.grpc, GRPC_TRACES, &[GRPC_CONTENT], body).await;
        assert_eq!(answer.grpc_status, code(want), "{message}");
        assert_eq!(answer.grpc_message.as_deref(), Some(message));
    }
}

#[tokio::test]
async fn grpc_unknown_method_is_unimplemented() {
    let gw = start(Pipeline::Accept).await;
    let answer = raw_grpc(gw.grpc, "/foo.Bar/Baz", &[GRPC_CONTENT], frame(false, b"")).await;
    assert_eq!(answer.http_status, StatusCode::OK);
    assert_eq!(answer.grpc_status, code(Code::Unimplemented));
    assert_eq!(
        answer.grpc_message.as_deref(),
        Some("unknown method /foo.Bar/Baz")
    );
}

#[tokio::test]
async fn grpc_non_grpc_content_type_is_http_415() {
    let gw = start(Pipeline::Accept).await;
    let answer = raw_grpc(
        gw.grpc,
        GRPC_TRACES,
        &[("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(answer.http_status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        answer.body,
        "415 unsupported media type, supported: [application/grpc]"
    );
    assert_eq!(answer.grpc_status, None);
}

#[tokio::test]
async fn grpc_unknown_encoding_is_unimplemented_with_accepted_encodings() {
    let gw = start(Pipeline::Accept).await;
    let answer = raw_grpc(
        gw.grpc,
        GRPC_TRACES,
        &[GRPC_CONTENT, ("grpc-encoding", "snappy")],
        frame(true, b"x"),
    )
    .await;
    assert_eq!(answer.grpc_status, code(Code::Unimplemented));
    // Percent-decoded: tonic and grpc-go decode it the same way.
    assert_eq!(
        answer.grpc_message.as_deref(),
        Some("unsupported grpc-encoding \"snappy\", supported: gzip, zstd, identity")
    );
    assert_eq!(answer.headers["grpc-accept-encoding"], "gzip,zstd,identity");
}

#[tokio::test]
async fn grpc_corrupt_compressed_message_is_invalid_argument() {
    let gw = start(Pipeline::Accept).await;
    let answer = raw_grpc(
        gw.grpc,
        GRPC_TRACES,
        &[GRPC_CONTENT, ("grpc-encoding", "gzip")],
        frame(true, b"not gzip at all"),
    )
    .await;
    assert_eq!(answer.grpc_status, code(Code::InvalidArgument));
    assert_eq!(
        answer.grpc_message.as_deref(),
        Some("invalid gzip body: invalid gzip header")
    );
}

#[tokio::test]
async fn grpc_too_large_is_resource_exhausted() {
    let gw = start(Pipeline::Accept).await;
    // As received: the length prefix is over max_request_bytes.
    let big = traces((0..5000u32).map(|i| span((i % 250) as u8 + 1)).collect()).encode_to_vec();
    assert!(big.len() as u64 > MAX_REQUEST);
    let answer = raw_grpc(gw.grpc, GRPC_TRACES, &[GRPC_CONTENT], frame(false, &big)).await;
    assert_eq!(answer.grpc_status, code(Code::ResourceExhausted));
    assert_eq!(
        answer.grpc_message.as_deref(),
        Some("request body larger than max_request_bytes (262144 bytes)")
    );
    // Through tonic as well, which is what real clients see.
    let status = gw
        .traces_client()
        .await
        .export(ExportTraceServiceRequest::decode(&big[..]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn grpc_compression_bombs_are_resource_exhausted() {
    let mut gw = start(Pipeline::Accept).await;
    for (encoding, bomb) in [("gzip", gzip_bomb()), ("zstd", zstd_bomb())] {
        assert!(
            (bomb.len() as u64) < MAX_REQUEST,
            "{encoding} bomb fits the request limit"
        );
        let answer = raw_grpc(
            gw.grpc,
            GRPC_TRACES,
            &[GRPC_CONTENT, ("grpc-encoding", encoding)],
            frame(true, &bomb),
        )
        .await;
        assert_eq!(
            answer.grpc_status,
            code(Code::ResourceExhausted),
            "{encoding}"
        );
        assert_eq!(
            answer.grpc_message.as_deref(),
            Some("request body larger than max_decompressed_bytes (1048576 bytes) after decompression")
        );
    }
    gw.no_batch();
}

#[tokio::test]
async fn grpc_full_pipeline_is_unavailable_with_retry_info() {
    let gw = start(Pipeline::Stalled).await;
    fill_traces_channel(&gw).await;
    let status = gw
        .traces_client()
        .await
        .export(traces(vec![span(1)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "traces pipeline is full, retry after 1s");
    let details = tonic_types::pb::Status::decode(status.details()).unwrap();
    assert_eq!(details.code, Code::Unavailable as i32);
    assert_eq!(
        details.details[0].type_url,
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    let info = tonic_types::pb::RetryInfo::decode(&details.details[0].value[..]).unwrap();
    assert_eq!(
        info.retry_delay,
        Some(prost_types::Duration {
            seconds: 1,
            nanos: 0
        })
    );
}

/// Puts one submission in the (capacity 1, never read) traces channel.
async fn fill_traces_channel(gw: &Gateway) {
    let ingest = gw.ingest.clone();
    let batch = Batch::decode(
        Signal::Traces,
        Bytes::from(traces(vec![span(9)]).encode_to_vec()),
    )
    .unwrap()
    .batch;
    // Waits forever for an answer; the channel stays full.
    tokio::spawn(async move { ingest.submit(batch).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
}

// ---------------------------------------------------------------- HTTP

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[tokio::test]
async fn http_protobuf_plain_gzip_and_zstd() {
    let _logs_series = LOGS_OVER_HTTP.lock().await;
    let mut gw = start(Pipeline::Accept).await;
    let request = traces((1..=20).map(span).collect());
    let encoded = request.encode_to_vec();
    for (encoding, body) in [
        (None, encoded.clone()),
        (Some("gzip"), gzip(&encoded)),
        (Some("zstd"), zstd(&encoded)),
    ] {
        let answer = gw.post("/v1/traces", PROTOBUF, encoding, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{encoding:?}");
        assert_eq!(answer.header("content-type"), PROTOBUF);
        assert_eq!(
            ExportTraceServiceResponse::decode(answer.body)
                .unwrap()
                .partial_success,
            None
        );
        assert_eq!(gw.next_batch().await.to_bytes(), encoded, "{encoding:?}");
    }
    let answer = gw
        .post(
            "/v1/metrics",
            PROTOBUF,
            None,
            metrics_request().encode_to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(gw.next_batch().await.signal(), Signal::Metrics);
    let answer = gw
        .post(
            "/v1/logs",
            PROTOBUF,
            Some("gzip"),
            gzip(&logs_request().encode_to_vec()),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        gw.next_batch().await.to_bytes(),
        logs_request().encode_to_vec()
    );
}

const TRACES_CAMEL: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
    "traceId":"01010101010101010101010101010101","spanId":"0101010101010101","name":"span-1","kind":2,
    "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000",
    "attributes":[{"key":"http.route","value":{"stringValue":"/checkout"}}],
    "status":{"code":2,"message":"boom"}}]}]}]}"#;

const TRACES_SNAKE: &str = r#"{"resource_spans":[{"scope_spans":[{"spans":[{
    "trace_id":"01010101010101010101010101010101","span_id":"0101010101010101","name":"span-1","kind":"SPAN_KIND_SERVER",
    "start_time_unix_nano":1700000000000000000,"end_time_unix_nano":"1700000000100000000",
    "attributes":[{"key":"http.route","value":{"string_value":"/checkout"}}],
    "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;

#[tokio::test]
async fn http_json_camel_and_snake_case_decode_to_the_same_protobuf() {
    let mut gw = start(Pipeline::Accept).await;
    // The same message; the byte order of its fields follows the JSON's.
    let expected = traces(vec![span(1)]);
    let decoded = |batch: Batch| ExportTraceServiceRequest::decode(batch.to_bytes()).unwrap();
    for body in [TRACES_CAMEL, TRACES_SNAKE] {
        let answer = gw.post("/v1/traces", JSON, None, body).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("content-type"), JSON);
        assert_eq!(answer.text(), "{}");
        assert_eq!(decoded(gw.next_batch().await), expected);
    }
    // Compressed JSON too.
    let answer = gw
        .post(
            "/v1/traces",
            "application/json; charset=utf-8",
            Some("zstd"),
            zstd(TRACES_SNAKE.as_bytes()),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(decoded(gw.next_batch().await), expected);
}

#[tokio::test]
async fn http_partial_success_for_a_span_with_zero_trace_id() {
    let mut gw = start(Pipeline::Accept).await;
    let answer = gw
        .post(
            "/v1/traces",
            PROTOBUF,
            None,
            traces_with_zero_trace_id().encode_to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = ExportTraceServiceResponse::decode(answer.body).unwrap();
    assert_eq!(
        response.partial_success,
        Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: ZERO_ID_MESSAGE.into(),
        })
    );
    assert_eq!(gw.next_batch().await.items(), 2);

    let zero = TRACES_CAMEL.replace(
        "01010101010101010101010101010101",
        "00000000000000000000000000000000",
    );
    let answer = gw.post("/v1/traces", JSON, None, zero).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap(),
        serde_json::json!({"partialSuccess": {"rejectedSpans": "1", "errorMessage": ZERO_ID_MESSAGE}})
    );
    gw.no_batch();
}

#[tokio::test]
async fn http_empty_body_is_an_empty_success() {
    let _logs_series = LOGS_OVER_HTTP.lock().await;
    let mut gw = start(Pipeline::Accept).await;
    let answer = gw.post("/v1/traces", PROTOBUF, None, Vec::new()).await;
    assert_eq!((answer.status, answer.body.len()), (StatusCode::OK, 0));
    let answer = gw.post("/v1/logs", JSON, None, Vec::new()).await;
    assert_eq!((answer.status, answer.text()), (StatusCode::OK, "{}"));
    let answer = gw.post("/v1/metrics", JSON, None, "{}").await;
    assert_eq!((answer.status, answer.text()), (StatusCode::OK, "{}"));
    gw.no_batch();
}

#[tokio::test]
async fn http_undecodable_protobuf_is_400_with_protobuf_status() {
    let mut gw = start(Pipeline::Accept).await;
    let answer = gw
        .post("/v1/traces", PROTOBUF, None, TRUNCATED.to_vec())
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.status_pb(),
        (3, "invalid traces request: truncated message".into())
    );
    gw.no_batch();
}

#[tokio::test]
async fn http_bad_json_is_400_with_json_status() {
    let gw = start(Pipeline::Accept).await;
    let cases = [
        (
            "{\"resourceSpans\":[",
            "invalid JSON traces request: EOF while parsing a list at line 1 column 18",
        ),
        (
            &*TRACES_CAMEL
                .replace("\"traceId\":\"01", "\"traceId\":\"x1")
                .leak(),
            "invalid JSON traces request: resourceSpans[0].scopeSpans[0].spans[0].traceId: \
             invalid character 'x' at position 0",
        ),
        (
            &*TRACES_CAMEL
                .replace("\"kind\":2", "\"kind\":\"SPAN_KIND_SIDEWAYS\"")
                .leak(),
            "invalid JSON traces request: resourceSpans[0].scopeSpans[0].spans[0].kind: \
             unknown enum value \"SPAN_KIND_SIDEWAYS\"",
        ),
    ];
    for (body, message) in cases {
        let answer = gw.post("/v1/traces", JSON, None, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{message}");
        let status = answer.status_json();
        assert_eq!(status["code"], 3);
        // The message names the field; the parser adds where in the text it is.
        let text = status["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{text}");
    }
}

#[tokio::test]
async fn http_unsupported_content_type_is_415() {
    let gw = start(Pipeline::Accept).await;
    let answer = gw.post("/v1/traces", "text/plain", None, "hello").await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        answer.text(),
        "415 unsupported media type, supported: [application/json, application/x-protobuf]"
    );
}

#[tokio::test]
async fn http_unsupported_content_encoding_is_415() {
    let gw = start(Pipeline::Accept).await;
    let answer = gw.post("/v1/traces", JSON, Some("br"), "{}").await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.header("accept-encoding"), "gzip, zstd, identity");
    assert_eq!(
        answer.status_json(),
        serde_json::json!({"code": 12, "message": "unsupported Content-Encoding \"br\", supported: gzip, zstd, identity"})
    );
    let answer = gw
        .post("/v1/traces", PROTOBUF, Some("deflate"), vec![])
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        answer.status_pb(),
        (
            12,
            "unsupported Content-Encoding \"deflate\", supported: gzip, zstd, identity".into()
        )
    );
}

#[tokio::test]
async fn http_corrupt_gzip_is_400() {
    let gw = start(Pipeline::Accept).await;
    let answer = gw
        .post("/v1/traces", PROTOBUF, Some("gzip"), "not gzip at all")
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.status_pb(),
        (3, "invalid gzip body: invalid gzip header".into())
    );
}

#[tokio::test]
async fn http_unknown_path_is_404_and_wrong_method_405() {
    let gw = start(Pipeline::Accept).await;
    let answer = gw.post("/v1/spans", PROTOBUF, None, vec![]).await;
    assert_eq!(
        (answer.status, answer.text()),
        (StatusCode::NOT_FOUND, "404 page not found")
    );
    let response = reqwest::get(gw.url("/v1/traces")).await.unwrap();
    let answer = HttpAnswer::read(response).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header("allow"), "POST");
    assert_eq!(answer.text(), "405 method not allowed, supported: [POST]");
}

#[tokio::test]
async fn http_too_large_is_413() {
    let mut gw = start(Pipeline::Accept).await;
    let message = "request body larger than max_request_bytes (262144 bytes)";
    // Declared by Content-Length: refused before a byte of the body is sent.
    let mut stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        MAX_REQUEST + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with(&format!(r#"{{"code":8,"message":"{message}"}}"#)),
        "{answer}"
    );

    // Streamed with no length (HTTP/2, so the early answer is a clean stream reset):
    // refused while reading, once past the limit.
    let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let chunks =
        (0..80).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![0u8; 4096]))));
    let request = Request::post(gw.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let status = tonic_types::pb::Status::decode(body).unwrap();
    assert_eq!((status.code, &*status.message), (8, message));
    gw.no_batch();
}

#[tokio::test]
async fn http_compression_bombs_are_413() {
    let mut gw = start(Pipeline::Accept).await;
    let message =
        "request body larger than max_decompressed_bytes (1048576 bytes) after decompression";
    for (encoding, bomb) in [("gzip", gzip_bomb()), ("zstd", zstd_bomb())] {
        let answer = gw.post("/v1/traces", PROTOBUF, Some(encoding), bomb).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{encoding}");
        assert_eq!(answer.status_pb(), (8, message.into()));
    }
    gw.no_batch();
}

#[tokio::test]
async fn http_full_pipeline_is_503_with_retry_after() {
    let gw = start(Pipeline::Stalled).await;
    fill_traces_channel(&gw).await;
    let answer = gw
        .post(
            "/v1/traces",
            PROTOBUF,
            None,
            traces(vec![span(1)]).encode_to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("retry-after"), "1");
    let status = tonic_types::pb::Status::decode(answer.body.clone()).unwrap();
    assert_eq!(
        (status.code, &*status.message),
        (14, "traces pipeline is full, retry after 1s")
    );
    let info = tonic_types::pb::RetryInfo::decode(&status.details[0].value[..]).unwrap();
    assert_eq!(info.retry_delay.unwrap().seconds, 1);

    let answer = gw.post("/v1/traces", JSON, None, TRACES_CAMEL).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.status_json(),
        serde_json::json!({"code": 14, "message": "traces pipeline is full, retry after 1s",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]})
    );
}

#[tokio::test]
async fn http2_cleartext_is_served_too() {
    let mut gw = start(Pipeline::Accept).await;
    let encoded = traces(vec![span(1)]).encode_to_vec();
    let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::post(gw.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .body(Full::new(Bytes::from(encoded.clone())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(gw.next_batch().await.to_bytes(), encoded);
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_then_stops_accepting() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut gw = start(Pipeline::Gated(gate.clone())).await;
    let url = gw.url("/v1/traces");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("content-type", PROTOBUF)
            .body(traces(vec![span(1)]).encode_to_vec())
            .send()
            .await
            .unwrap()
            .status()
    });
    let mut client = gw.traces_client().await;
    let grpc_in_flight =
        tokio::spawn(async move { client.export(traces(vec![span(2)])).await.map(|_| ()) });
    gw.next_batch().await;
    gw.next_batch().await;

    gw.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !gw.http_task.is_finished() && !gw.grpc_task.is_finished(),
        "waiting for requests in flight"
    );
    assert!(
        tokio::net::TcpStream::connect(gw.http).await.is_err(),
        "no longer accepting"
    );

    gate.notify_waiters();
    assert_eq!(in_flight.await.unwrap(), StatusCode::OK);
    grpc_in_flight.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        (&mut gw.http_task).await.unwrap();
        (&mut gw.grpc_task).await.unwrap();
    })
    .await
    .expect("receivers return after their connections close");
}

#[tokio::test]
async fn at_max_connections_the_longest_idle_connection_makes_room() {
    let http = HttpConfig {
        max_connections: 1,
        ..http_config()
    };
    let gw = start_with(grpc_config(), http, Pipeline::Accept).await;
    let open = |addr| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        (sender, tokio::spawn(connection))
    };
    let request = || {
        Request::post("/v1/traces")
            .header("host", "gateway")
            .header("content-type", PROTOBUF)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (mut first, first_connection) = open(gw.http).await;
    assert_eq!(
        first.send_request(request()).await.unwrap().status(),
        StatusCode::OK
    );

    // The first connection is idle now: a new client is served at once, not locked out.
    let (mut second, _second_connection) = open(gw.http).await;
    let status = tokio::time::timeout(Duration::from_secs(2), second.send_request(request()))
        .await
        .expect("served without waiting")
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    // ... and the idle one was closed to make room.
    tokio::time::timeout(Duration::from_secs(2), first_connection)
        .await
        .expect("the idle connection is closed")
        .unwrap()
        .ok();
    assert!(first.send_request(request()).await.is_err());
}

#[tokio::test]
async fn binding_a_taken_port_is_an_error() {
    let gw = start(Pipeline::Accept).await;
    let (ingest, _rx) = Ingest::channels(1);
    let config = GrpcConfig {
        endpoint: gw.http.to_string(),
        ..GrpcConfig::default()
    };
    let error = GrpcReceiver::bind(&config, ingest, Duration::from_secs(1), None)
        .await
        .unwrap_err();
    assert!(matches!(error, ReceiveError::Bind { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot listen on {}: ", gw.http)),
        "{error}"
    );
}

#[tokio::test]
async fn requests_are_counted_by_outcome_and_reason() {
    // Other tests touch the logs/http series too; they wait while this one counts.
    let _logs_series = LOGS_OVER_HTTP.lock().await;
    let mut gw = start(Pipeline::Accept).await;
    let mut request = logs_request();
    let records = &mut request.resource_logs[0].scope_logs[0].log_records;
    records.push(records[0].clone());
    records.push(records[0].clone());
    let (accepted, bomb) = (request.encode_to_vec(), gzip_bomb());
    let bytes_sent = (accepted.len() + bomb.len() + TRUNCATED.len()) as f64;

    const LABELS: &str = r#"signal="logs",transport="http""#;
    // Each series and how much this test's requests must raise it.
    let expected = [
        (
            r#"otlp_gateway_receiver_requests_total{signal="logs",transport="http",outcome="accepted"}"#,
            1.0,
        ),
        (
            r#"otlp_gateway_receiver_requests_total{signal="logs",transport="http",outcome="refused"}"#,
            2.0,
        ),
        (
            r#"otlp_gateway_receiver_requests_refused_total{signal="logs",transport="http",reason="too_large"}"#,
            1.0,
        ),
        (
            r#"otlp_gateway_receiver_requests_refused_total{signal="logs",transport="http",reason="invalid"}"#,
            1.0,
        ),
        (
            r#"otlp_gateway_receiver_items_received_total{signal="logs",transport="http"}"#,
            3.0,
        ),
        (
            r#"otlp_gateway_receiver_items_accepted_total{signal="logs",transport="http"}"#,
            3.0,
        ),
        (
            r#"otlp_gateway_receiver_request_duration_seconds_count{signal="logs",transport="http"}"#,
            3.0,
        ),
        (
            r#"otlp_gateway_receiver_request_bytes_count{signal="logs",transport="http"}"#,
            3.0,
        ),
        (
            r#"otlp_gateway_receiver_request_bytes_sum{signal="logs",transport="http"}"#,
            bytes_sent,
        ),
    ];
    // Series with more labels, summed over all their values: no other
    // refusal reason, and no refused items.
    let sums = [
        ("otlp_gateway_receiver_requests_refused_total", 2.0),
        ("otlp_gateway_receiver_items_refused_total", 0.0),
    ];
    let before = metrics().render();

    let answer = gw.post("/v1/logs", PROTOBUF, None, accepted).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(gw.next_batch().await.items(), 3);
    let answer = gw.post("/v1/logs", PROTOBUF, Some("gzip"), bomb).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let answer = gw
        .post("/v1/logs", PROTOBUF, None, TRUNCATED.to_vec())
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let after = metrics().render();
    for (series, delta) in expected {
        assert_eq!(
            sample(&after, series) - sample(&before, series),
            delta,
            "{series}: before {}, after {}\n{after}",
            sample(&before, series),
            sample(&after, series)
        );
    }
    for (metric, delta) in sums {
        assert_eq!(
            sample_sum(&after, metric, LABELS) - sample_sum(&before, metric, LABELS),
            delta,
            "{metric}{{{LABELS},..}}\n{after}"
        );
    }
}
