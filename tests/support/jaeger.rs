//! A Jaeger collector double: an in-process tonic gRPC server on
//! `127.0.0.1:0` implementing `jaeger.api_v2.CollectorService/PostSpans` as
//! `proto/jaeger/collector.proto` says (the prost types the gateway compiles
//! from it, tonic's server and prost codec; gzip accepted). No Jaeger server
//! can be installed here, so this is what the `jaeger` exporter is tested
//! against.
//!
//! ```ignore
//! let jaeger = FakeJaeger::start().await;
//! jaeger.fail_next(2, Code::Unavailable);     // the next two calls answer UNAVAILABLE
//! // ... point an exporter at jaeger.url() ...
//! let batches = jaeger.wait_for_spans(3).await;
//! ```
//!
//! Every call is recorded ([`FakeJaeger::calls`]) with its answer; only the
//! accepted ones count as received ([`FakeJaeger::batches`]). Dropping it
//! stops the server.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use otlp_gateway::exporter::jaeger::proto::{Batch, PostSpansRequest, PostSpansResponse};
use otlp_gateway::exporter::jaeger::POST_SPANS_PATH;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::Status;

pub use tonic::Code;

/// How long the waiting helpers wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// One `PostSpans` call as it arrived, with the code it was answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub request: PostSpansRequest,
    pub metadata: HeaderMap,
    pub answer: Code,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    /// Codes to answer the next calls with, in order; `Ok` once empty.
    script: VecDeque<Code>,
}

pub struct FakeJaeger {
    url: String,
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
}

impl Drop for FakeJaeger {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeJaeger {
    pub async fn start() -> FakeJaeger {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(State::default()));
        let shutdown = CancellationToken::new();
        let server = Server::builder()
            .add_service(CollectorService(state.clone()))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                shutdown.clone().cancelled_owned(),
            );
        tokio::spawn(async move {
            if let Err(error) = server.await {
                eprintln!("fake jaeger: {error}");
            }
        });
        FakeJaeger {
            url,
            state,
            shutdown,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next `times` calls are answered `code` (then `Ok` again).
    pub fn fail_next(&self, times: usize, code: Code) {
        let mut state = self.state.lock().expect("state");
        state.script.extend(std::iter::repeat_n(code, times));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("state").calls.clone()
    }

    /// The batches of the accepted calls, in order.
    pub fn batches(&self) -> Vec<Batch> {
        self.calls()
            .into_iter()
            .filter(|c| c.answer == Code::Ok)
            .filter_map(|c| c.request.batch)
            .collect()
    }

    /// Waits until the accepted calls hold at least `spans` spans; their batches then.
    pub async fn wait_for_spans(&self, spans: usize) -> Vec<Batch> {
        self.wait(|| {
            let batches = self.batches();
            (batches.iter().map(|b| b.spans.len()).sum::<usize>() >= spans).then_some(batches)
        })
        .await
    }

    /// Waits until at least `calls` calls arrived (accepted or not); them then.
    pub async fn wait_for_calls(&self, calls: usize) -> Vec<Call> {
        self.wait(|| {
            let all = self.calls();
            (all.len() >= calls).then_some(all)
        })
        .await
    }

    async fn wait<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(value) = ready() {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fake jaeger: still waiting after {WAIT:?}; calls: {:?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `jaeger.api_v2.CollectorService`, routed by tonic's server as its
/// generated code would be.
#[derive(Clone)]
struct CollectorService(Arc<Mutex<State>>);

impl NamedService for CollectorService {
    const NAME: &'static str = "jaeger.api_v2.CollectorService";
}

/// The `PostSpans` method.
struct PostSpans(Arc<Mutex<State>>);

impl UnaryService<PostSpansRequest> for PostSpans {
    type Response = PostSpansResponse;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<PostSpansResponse>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<PostSpansRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let metadata = request.metadata().clone().into_headers();
            let request = request.into_inner();
            let mut state = state.lock().expect("state");
            let answer = state.script.pop_front().unwrap_or(Code::Ok);
            state.calls.push(Call {
                request,
                metadata,
                answer,
            });
            match answer {
                Code::Ok => Ok(tonic::Response::new(PostSpansResponse {})),
                code => Err(Status::new(code, format!("scripted {code:?}"))),
            }
        })
    }
}

impl<B> tonic::codegen::Service<Request<B>> for CollectorService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let state = self.0.clone();
        if request.uri().path() != POST_SPANS_PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        Box::pin(async move {
            let mut grpc = Grpc::new(
                tonic_prost::ProstCodec::<PostSpansResponse, PostSpansRequest>::default(),
            )
            .accept_compressed(CompressionEncoding::Gzip);
            Ok(grpc.unary(PostSpans(state), request).await)
        })
    }
}
