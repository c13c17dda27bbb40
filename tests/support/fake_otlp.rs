//! A fake OTLP backend for tests: one in-process server on `127.0.0.1:0`
//! speaking OTLP/gRPC (tonic, with the generated `TraceService`,
//! `MetricsService` and `LogsService`) and one speaking OTLP/HTTP (hyper,
//! protobuf or JSON, HTTP/1.1 or HTTP/2), both answering from one script.
//!
//! ```ignore
//! let fake = FakeOtlp::start().await;                  // or FakeOtlp::start_tls()
//! fake.fail_next(2, Failure::grpc_retry(Code::Unavailable, Duration::from_secs(1)));
//! // ... point an exporter at fake.grpc_url() or fake.http_url() ...
//! fake.wait_for_items(Signal::Traces, 10).await;
//! assert_eq!(fake.received_traces().len(), 1);
//! let first = fake.next_request().await;                // every request, in order
//! assert_eq!(first.headers["x-api-key"], "secret");
//! ```
//!
//! # Answers
//! Each request takes the next scripted [`Answer`] ([`FakeOtlp::answer_next`],
//! [`FakeOtlp::fail_next`], [`FakeOtlp::partial_next`]); once the script is
//! empty it gets the default answer ([`FakeOtlp::set_default`], `Ok` at
//! first). A [`Failure`] written for one transport is translated for the
//! other (gRPC `UNAVAILABLE` ↔ HTTP 503, `RESOURCE_EXHAUSTED` ↔ 429, …), so
//! one script serves both.
//!
//! # Slow and stuck backends
//! [`FakeOtlp::set_delay`] delays every answer; [`FakeOtlp::block`] holds every
//! request (before it is recorded or answered) until [`FakeOtlp::release`].
//! [`FakeOtlp::waiting`] counts the requests held.
//!
//! # What is recorded
//! Every request that got an answer becomes a [`Received`]: transport,
//! signal, headers (gRPC metadata included), the request body exactly as it
//! came over the wire (decompressed, without gRPC framing), the decoded
//! request, the answer.
//! Read them in order with [`FakeOtlp::next_request`], all at once with
//! [`FakeOtlp::requests`], or only the accepted ones per signal with
//! [`FakeOtlp::received_traces`] & co. Requests the fake could not decode are
//! answered 400 / `INVALID_ARGUMENT` and not recorded.
//!
//! Dropping the `FakeOtlp` stops both servers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use otlp_gateway::model::Signal;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_types::{ErrorDetails, StatusExt};

pub use tonic::Code;

/// How long the waiting helpers wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// Largest request body accepted (decompressed), on both transports.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Which server a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

/// A decoded export request.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// Spans, data points or log records in the request.
    pub fn items(&self) -> u64 {
        match self {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum(),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(Data::Gauge(d)) => d.data_points.len() as u64,
                    Some(Data::Sum(d)) => d.data_points.len() as u64,
                    Some(Data::Histogram(d)) => d.data_points.len() as u64,
                    Some(Data::ExponentialHistogram(d)) => d.data_points.len() as u64,
                    Some(Data::Summary(d)) => d.data_points.len() as u64,
                    None => 0,
                })
                .sum(),
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len() as u64)
                .sum(),
        }
    }

    /// The request encoded again as protobuf.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
        }
    }
}

/// How the fake answers one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Full success.
    Ok,
    /// Success with `partial_success { rejected_*: rejected, error_message: message }`.
    Partial { rejected: i64, message: String },
    /// An error status.
    Fail(Failure),
}

/// An error answer. Written for one transport, translated for the other.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A gRPC status, with a `google.rpc.RetryInfo` detail when `retry_after` is set.
    /// Over HTTP: the matching status, and `Retry-After: <whole seconds>`.
    Grpc {
        code: Code,
        retry_after: Option<Duration>,
    },
    /// An HTTP status, with this `Retry-After` header (seconds or HTTP-date).
    /// Over gRPC: the matching code, with `RetryInfo` when the header is whole seconds.
    Http {
        status: u16,
        retry_after: Option<String>,
    },
}

impl Failure {
    pub fn grpc(code: Code) -> Failure {
        Failure::Grpc {
            code,
            retry_after: None,
        }
    }

    pub fn grpc_retry(code: Code, retry_after: Duration) -> Failure {
        Failure::Grpc {
            code,
            retry_after: Some(retry_after),
        }
    }

    pub fn http(status: u16) -> Failure {
        Failure::Http {
            status,
            retry_after: None,
        }
    }

    pub fn http_retry_after(status: u16, retry_after: &str) -> Failure {
        Failure::Http {
            status,
            retry_after: Some(retry_after.to_owned()),
        }
    }

    /// The gRPC status this failure answers with.
    pub fn to_status(&self) -> tonic::Status {
        let (code, retry_after) = match self {
            Failure::Grpc { code, retry_after } => (*code, *retry_after),
            Failure::Http {
                status,
                retry_after,
            } => (
                http_to_grpc(*status),
                retry_after
                    .as_deref()
                    .and_then(|s| s.trim().parse().ok())
                    .map(Duration::from_secs),
            ),
        };
        let message = format!("fake-otlp: scripted {code:?}");
        match retry_after {
            Some(delay) => tonic::Status::with_error_details(
                code,
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => tonic::Status::new(code, message),
        }
    }

    /// The HTTP status and `Retry-After` this failure answers with.
    pub fn to_http(&self) -> (u16, Option<String>) {
        match self {
            Failure::Http {
                status,
                retry_after,
            } => (*status, retry_after.clone()),
            Failure::Grpc { code, retry_after } => (
                grpc_to_http(*code),
                retry_after.map(|d| d.as_secs().to_string()),
            ),
        }
    }
}

fn grpc_to_http(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::Unimplemented => 501,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
    }
}

fn http_to_grpc(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub transport: Transport,
    pub signal: Signal,
    /// HTTP headers, or the gRPC request's metadata (`grpc-encoding`, custom headers, …).
    pub headers: HeaderMap,
    /// The request message as it came over the wire, byte for byte: the HTTP
    /// body, or the one gRPC message without its 5-byte length prefix; after
    /// decompression when the request was compressed. Not re-encoded, so it
    /// shows exactly what the client sent (field order, unknown fields, …).
    pub body: Bytes,
    pub payload: Payload,
    pub answer: Answer,
}

impl Received {
    /// The value of header `name` as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the backend kept the data (`Ok` or `Partial`).
    pub fn accepted(&self) -> bool {
        !matches!(self.answer, Answer::Fail(_))
    }
}

/// Certificates of a TLS fake: a CA and a leaf for `127.0.0.1` and `localhost`.
#[derive(Debug)]
pub struct FakeTls {
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    /// The CA written to a file, for `tls.ca_file`.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

struct State {
    script: Mutex<VecDeque<Answer>>,
    default: Mutex<Answer>,
    delay: Mutex<Duration>,
    /// `true` while blocked.
    gate: watch::Sender<bool>,
    waiting: AtomicUsize,
    log: Mutex<Vec<Received>>,
    /// Bumped after each record, to wake the waiting helpers.
    recorded: watch::Sender<usize>,
    requests_tx: mpsc::UnboundedSender<Received>,
}

impl State {
    /// Waits out the gate and the delay, picks the answer and records the request.
    async fn handle(
        &self,
        transport: Transport,
        headers: HeaderMap,
        body: Bytes,
        payload: Payload,
    ) -> Answer {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        // The sender lives in `self`, so this only returns once released.
        let _ = gate.wait_for(|blocked| !*blocked).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let answer = lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| lock(&self.default).clone());
        let received = Received {
            transport,
            signal: payload.signal(),
            headers,
            body,
            payload,
            answer: answer.clone(),
        };
        lock(&self.log).push(received.clone());
        let _ = self.requests_tx.send(received);
        self.recorded.send_modify(|n| *n += 1);
        answer
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The fake backend. See the module docs.
pub struct FakeOtlp {
    state: Arc<State>,
    requests_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    tls: Option<FakeTls>,
    shutdown: CancellationToken,
}

impl Drop for FakeOtlp {
    fn drop(&mut self) {
        // Let held requests finish so graceful shutdown is not stuck on them.
        self.release();
        self.shutdown.cancel();
    }
}

impl FakeOtlp {
    /// Starts both servers, plaintext (`http://`; gRPC is h2c).
    pub async fn start() -> FakeOtlp {
        FakeOtlp::start_with(None).await
    }

    /// Starts both servers behind TLS with a fresh CA; see [`FakeOtlp::tls`].
    pub async fn start_tls() -> FakeOtlp {
        FakeOtlp::start_with(Some(make_certs())).await
    }

    async fn start_with(certs: Option<(FakeTls, String, String)>) -> FakeOtlp {
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Answer::Ok),
            delay: Mutex::new(Duration::ZERO),
            gate: watch::channel(false).0,
            waiting: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            recorded: watch::channel(0).0,
            requests_tx,
        });
        let shutdown = CancellationToken::new();
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let http_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        let grpc_addr = grpc_listener.local_addr().expect("gRPC address");
        let http_addr = http_listener.local_addr().expect("HTTP address");

        let (tls, identity) = match certs {
            Some((tls, cert_pem, key_pem)) => (Some(tls), Some((cert_pem, key_pem))),
            None => (None, None),
        };
        spawn_grpc(
            grpc_listener,
            state.clone(),
            identity.clone(),
            shutdown.clone(),
        );
        spawn_http(http_listener, state.clone(), identity, shutdown.clone());

        FakeOtlp {
            state,
            requests_rx: tokio::sync::Mutex::new(requests_rx),
            grpc_addr,
            http_addr,
            tls,
            shutdown,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Endpoint for an OTLP/gRPC exporter, e.g. `http://127.0.0.1:40123`.
    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.grpc_addr)
    }

    /// Endpoint for an OTLP/HTTP exporter (without `/v1/...`), e.g. `http://127.0.0.1:40124`.
    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http_addr)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The certificates, for a fake started with [`FakeOtlp::start_tls`].
    pub fn tls(&self) -> Option<&FakeTls> {
        self.tls.as_ref()
    }

    /// `tls.ca_file` for a TLS fake.
    ///
    /// # Panics
    /// If the fake was started without TLS.
    pub fn ca_file(&self) -> &Path {
        &self.tls.as_ref().expect("started with start_tls()").ca_file
    }

    // --- script ---

    /// The next `n` requests get `answer`, after those already scripted.
    pub fn answer_next(&self, n: usize, answer: Answer) {
        lock(&self.state.script).extend(std::iter::repeat_n(answer, n));
    }

    /// The next `n` requests fail with `failure`; later ones get the default answer.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.answer_next(n, Answer::Fail(failure));
    }

    /// The next `n` requests succeed with `rejected` items refused.
    pub fn partial_next(&self, n: usize, rejected: i64, message: &str) {
        self.answer_next(
            n,
            Answer::Partial {
                rejected,
                message: message.to_owned(),
            },
        );
    }

    /// The answer once the script is used up (at first `Answer::Ok`).
    pub fn set_default(&self, answer: Answer) {
        *lock(&self.state.default) = answer;
    }

    /// Drops what is left of the script and restores the `Ok` default.
    pub fn reset_answers(&self) {
        lock(&self.state.script).clear();
        self.set_default(Answer::Ok);
    }

    /// Delays every answer by `delay` (zero to stop).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Holds every request, unanswered, until [`FakeOtlp::release`].
    pub fn block(&self) {
        self.state.gate.send_replace(true);
    }

    /// Lets held and future requests through.
    pub fn release(&self) {
        self.state.gate.send_replace(false);
    }

    /// Requests held by [`FakeOtlp::block`] right now.
    pub fn waiting(&self) -> usize {
        self.state.waiting.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests are held by [`FakeOtlp::block`].
    ///
    /// # Panics
    /// After [`WAIT`].
    pub async fn wait_for_waiting(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.waiting() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fake-otlp: {} of {n} requests held after {WAIT:?}",
                self.waiting()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // --- what was received ---

    /// The next answered request, in arrival order (each is returned once).
    ///
    /// # Panics
    /// If none comes within [`WAIT`].
    pub async fn next_request(&self) -> Received {
        let mut rx = self.requests_rx.lock().await;
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(received)) => received,
            _ => panic!("fake-otlp: no request within {WAIT:?}"),
        }
    }

    /// Every answered request so far, in order (not consumed).
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state.log).clone()
    }

    fn accepted(&self) -> impl Iterator<Item = Received> {
        self.requests().into_iter().filter(Received::accepted)
    }

    /// Accepted trace requests so far.
    pub fn received_traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.accepted()
            .filter_map(|r| match r.payload {
                Payload::Traces(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Accepted metrics requests so far.
    pub fn received_metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.accepted()
            .filter_map(|r| match r.payload {
                Payload::Metrics(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Accepted logs requests so far.
    pub fn received_logs(&self) -> Vec<ExportLogsServiceRequest> {
        self.accepted()
            .filter_map(|r| match r.payload {
                Payload::Logs(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Items of `signal` in accepted requests so far (partially rejected ones included).
    pub fn accepted_items(&self, signal: Signal) -> u64 {
        self.accepted()
            .filter(|r| r.signal == signal)
            .map(|r| r.payload.items())
            .sum()
    }

    /// Waits until accepted requests hold at least `n` items of `signal`.
    ///
    /// # Panics
    /// After [`WAIT`].
    pub async fn wait_for_items(&self, signal: Signal, n: u64) {
        self.wait_until(
            |fake| fake.accepted_items(signal) >= n,
            || format!("{n} {signal} items"),
        )
        .await;
    }

    /// Waits until at least `n` requests were answered (any answer).
    ///
    /// # Panics
    /// After [`WAIT`].
    pub async fn wait_for_requests(&self, n: usize) {
        self.wait_until(
            |fake| lock(&fake.state.log).len() >= n,
            || format!("{n} requests"),
        )
        .await;
    }

    async fn wait_until(&self, done: impl Fn(&FakeOtlp) -> bool, what: impl Fn() -> String) {
        let mut recorded = self.state.recorded.subscribe();
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                if done(self) {
                    return;
                }
                if recorded.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            waited.is_ok() && done(self),
            "fake-otlp: no {} within {WAIT:?}; got {} requests",
            what(),
            self.requests().len()
        );
    }
}

// --- certificates ---

/// A CA and a server certificate it signed, for `127.0.0.1` and `localhost`.
fn make_certs() -> (FakeTls, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake-otlp test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "fake-otlp");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");

    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");
    let tls = FakeTls {
        ca_pem: ca_cert.pem(),
        ca_file,
        _dir: dir,
    };
    (tls, cert.pem(), key.serialize_pem())
}

// --- gRPC ---

#[derive(Clone)]
struct GrpcHandler(Arc<State>);

impl GrpcHandler {
    async fn handle(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        extensions: &tonic::Extensions,
        payload: Payload,
    ) -> Result<Answer, tonic::Status> {
        let headers = metadata.clone().into_headers();
        let Some(RawMessage(body)) = extensions.get::<RawMessage>().cloned() else {
            return Err(tonic::Status::internal(
                "fake-otlp: raw message not recorded",
            ));
        };
        match self.0.handle(Transport::Grpc, headers, body, payload).await {
            Answer::Fail(failure) => Err(failure.to_status()),
            answer => Ok(answer),
        }
    }
}

fn partial(answer: Answer) -> Option<(i64, String)> {
    match answer {
        Answer::Partial { rejected, message } => Some((rejected, message)),
        _ => None,
    }
}

#[tonic::async_trait]
impl TraceService for GrpcHandler {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (metadata, extensions, message) = request.into_parts();
        let answer = self
            .handle(&metadata, &extensions, Payload::Traces(message))
            .await?;
        Ok(tonic::Response::new(trace_response(answer)))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcHandler {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let (metadata, extensions, message) = request.into_parts();
        let answer = self
            .handle(&metadata, &extensions, Payload::Metrics(message))
            .await?;
        Ok(tonic::Response::new(metrics_response(answer)))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcHandler {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let (metadata, extensions, message) = request.into_parts();
        let answer = self
            .handle(&metadata, &extensions, Payload::Logs(message))
            .await?;
        Ok(tonic::Response::new(logs_response(answer)))
    }
}

fn trace_response(answer: Answer) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: partial(answer).map(|(rejected_spans, error_message)| {
            ExportTracePartialSuccess {
                rejected_spans,
                error_message,
            }
        }),
    }
}

fn metrics_response(answer: Answer) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: partial(answer).map(|(rejected_data_points, error_message)| {
            ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            }
        }),
    }
}

fn logs_response(answer: Answer) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: partial(answer).map(|(rejected_log_records, error_message)| {
            ExportLogsPartialSuccess {
                rejected_log_records,
                error_message,
            }
        }),
    }
}

fn spawn_grpc(
    listener: TcpListener,
    state: Arc<State>,
    identity: Option<(String, String)>,
    shutdown: CancellationToken,
) {
    let handler = GrpcHandler(state);
    let mut builder = Server::builder();
    if let Some((cert, key)) = identity {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .expect("gRPC TLS config");
    }
    let router = builder
        .add_service(RecordRaw(
            TraceServiceServer::new(handler.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        ))
        .add_service(RecordRaw(
            MetricsServiceServer::new(handler.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        ))
        .add_service(RecordRaw(
            LogsServiceServer::new(handler)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        ));
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
            .await;
    });
}

/// The gRPC request message as received (unframed, decompressed), put in the
/// request extensions by [`RecordRaw`] for the handlers.
#[derive(Debug, Clone)]
struct RawMessage(Bytes);

/// Wraps a generated tonic service: reads the whole request body first, keeps
/// the message bytes as [`RawMessage`], then hands the same bytes on, so the
/// fake records what came over the wire rather than a re-encoding of what
/// prost decoded.
#[derive(Clone)]
struct RecordRaw<S>(S);

impl<S: NamedService> NamedService for RecordRaw<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<tonic::body::Body>> for RecordRaw<S>
where
    S: Service<Request<tonic::body::Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        // The clone is not ready yet: call the one that was polled, keep the clone.
        let clone = self.0.clone();
        let mut inner = std::mem::replace(&mut self.0, clone);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // On a read error pass on an empty body: tonic then answers the error.
            let body = Limited::new(body, MAX_REQUEST_BYTES + 5)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            if let Some(message) = grpc_message(&parts.headers, &body) {
                parts.extensions.insert(RawMessage(message));
            }
            let request = Request::from_parts(parts, tonic::body::Body::new(Full::new(body)));
            inner.call(request).await
        })
    }
}

/// The one message of a unary gRPC request body, decompressed per
/// `grpc-encoding` when its compressed flag is set; `None` when malformed.
fn grpc_message(headers: &HeaderMap, body: &Bytes) -> Option<Bytes> {
    let (&flag, rest) = body.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = body.slice(5..5usize.checked_add(length)?.min(body.len()));
    if message.len() != length || body.len() != 5 + length {
        return None;
    }
    match flag {
        0 => Some(message),
        1 => {
            let encoding = headers
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity");
            decompress(encoding, &message).ok().map(Bytes::from)
        }
        _ => None,
    }
}

// --- HTTP ---

fn spawn_http(
    listener: TcpListener,
    state: Arc<State>,
    identity: Option<(String, String)>,
    shutdown: CancellationToken,
) {
    let acceptor = identity.map(|(cert, key)| tls_acceptor(&cert, &key));
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let acceptor = acceptor.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(serve_http(&state, request).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let connection = builder.serve_connection(TokioIo::new(tls), service);
                        tokio::select! {
                            _ = connection => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = connection => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                }
            });
        }
    });
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate PEM");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("server key PEM")
        .expect("a server key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("content type"),
    );
    response
}

fn http_error(status: u16, message: &str) -> Response<Full<Bytes>> {
    let body = tonic_types::Status {
        code: http_to_grpc(status) as i32,
        message: message.to_owned(),
        details: vec![],
    }
    .encode_to_vec();
    reply(status, "application/x-protobuf", body)
}

/// One OTLP/HTTP request: route, decompress, decode, answer.
async fn serve_http(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(signal) = Signal::from_http_path(request.uri().path()) else {
        return http_error(404, "unknown path");
    };
    if request.method() != Method::POST {
        return http_error(405, "only POST");
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return http_error(400, "unreadable body"),
    };
    let encoding = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let body = match decompress(encoding, &body) {
        Ok(body) => body,
        Err(message) => return http_error(400, &message),
    };
    let json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let payload = match decode(signal, json, &body) {
        Ok(payload) => payload,
        Err(message) => return http_error(400, &message),
    };
    match state
        .handle(Transport::Http, parts.headers, Bytes::from(body), payload)
        .await
    {
        Answer::Fail(failure) => {
            let (status, retry_after) = failure.to_http();
            let mut response = http_error(status, &format!("fake-otlp: scripted {status}"));
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        answer => {
            let (content_type, body) = encode_response(signal, json, answer);
            reply(200, content_type, body)
        }
    }
}

fn decompress(encoding: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let limit = MAX_REQUEST_BYTES as u64 + 1;
    let mut out = Vec::new();
    let read = match encoding {
        "identity" | "" => return Ok(body.to_vec()),
        "gzip" => flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        "zstd" => {
            zstd::stream::read::Decoder::new(body).and_then(|d| d.take(limit).read_to_end(&mut out))
        }
        other => return Err(format!("unsupported Content-Encoding {other}")),
    };
    match read {
        Ok(n) if n as u64 >= limit => Err("body too large".into()),
        Ok(_) => Ok(out),
        Err(e) => Err(format!("bad {encoding} body: {e}")),
    }
}

fn decode(signal: Signal, json: bool, body: &[u8]) -> Result<Payload, String> {
    fn parse<M: Message + Default + serde::de::DeserializeOwned>(
        json: bool,
        body: &[u8],
    ) -> Result<M, String> {
        if json {
            serde_json::from_slice(body).map_err(|e| e.to_string())
        } else {
            M::decode(body).map_err(|e| e.to_string())
        }
    }
    Ok(match signal {
        Signal::Traces => Payload::Traces(parse(json, body)?),
        Signal::Metrics => Payload::Metrics(parse(json, body)?),
        Signal::Logs => Payload::Logs(parse(json, body)?),
    })
}

fn encode_response(signal: Signal, json: bool, answer: Answer) -> (&'static str, Vec<u8>) {
    fn encode<M: Message + serde::Serialize>(json: bool, message: M) -> (&'static str, Vec<u8>) {
        if json {
            (
                "application/json",
                serde_json::to_vec(&message).expect("JSON response"),
            )
        } else {
            ("application/x-protobuf", message.encode_to_vec())
        }
    }
    match signal {
        Signal::Traces => encode(json, trace_response(answer)),
        Signal::Metrics => encode(json, metrics_response(answer)),
        Signal::Logs => encode(json, logs_response(answer)),
    }
}
