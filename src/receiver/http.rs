//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with a
//! protobuf (`application/x-protobuf`) or JSON (`application/json`) body,
//! over HTTP/1.1 or HTTP/2 (h2c).
//!
//! Errors follow the OTLP/HTTP spec: a `google.rpc.Status` body in the
//! request's own encoding, 400 for a bad request, 413 when too large, 415 for
//! an unsupported content type or encoding, 503 with `Retry-After` when the
//! pipeline is full. Answers outside OTLP (404, 405) are plain text.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use super::body::{plain, ReplyBody};
use super::config::HttpConfig;
use super::decode::{decompress, off_runtime, read_body, Compression, ReadDeadline};
use super::error::{ReceiveError, RequestError};
use super::export::{ExportResponse, Intake, RequestMetrics, Verdict, HTTP};
use super::json;
use super::server;
use super::status;
use super::tls::{self, PeerIdentity};
use crate::model::Signal;
use crate::pipeline::Ingest;
use crate::telemetry::metrics::reason;
use crate::tenancy::Tenants;

/// The OTLP/HTTP receiver, bound and ready to [`run`](HttpReceiver::run).
#[derive(Debug)]
pub struct HttpReceiver {
    listener: server::Listener,
    service: Arc<HttpService>,
}

impl HttpReceiver {
    /// Binds `config.endpoint`; requests will go to `ingest`. `retry_after`
    /// is the delay sent when refusing because the gateway is shutting down
    /// (a full pipeline names its own). With `tenants`, every request is
    /// identified (and authenticated) before its body is read.
    ///
    /// # Errors
    /// [`ReceiveError::Bind`] when the address cannot be bound,
    /// [`ReceiveError::ZeroLimit`] when `max_connections` or
    /// `max_concurrent_streams` is 0, [`ReceiveError::Tls`] when the `tls`
    /// certificate or key cannot be used.
    pub async fn bind(
        config: &HttpConfig,
        ingest: Ingest,
        retry_after: Duration,
        tenants: Option<Arc<Tenants>>,
    ) -> Result<Self, ReceiveError> {
        let listener = server::Listener::bind(
            HTTP,
            &config.endpoint,
            config.connection_limits(),
            config.tls.as_ref(),
            tls::ALPN_HTTP,
        )
        .await?;
        Ok(HttpReceiver {
            listener,
            service: Arc::new(HttpService {
                intake: Intake::new(ingest, retry_after, HTTP, tenants),
                max_request_bytes: config.max_request_bytes.as_usize(),
                max_decompressed_bytes: config.max_decompressed_bytes.as_usize(),
                read_timeout: config.read_timeout.get(),
            }),
        })
    }

    /// The bound address (the real port when the endpoint said `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, tells
    /// every connection to finish, closes what is still open after the
    /// shutdown's grace, and returns.
    pub async fn run(self, shutdown: impl Into<server::Shutdown>) {
        let shutdown = shutdown.into();
        let limits = self.listener.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .keep_alive_interval(limits.keepalive_time)
            .keep_alive_timeout(limits.keepalive_timeout);
        let connector = Connector {
            builder,
            service: self.service,
        };
        server::serve(self.listener, HTTP, shutdown, connector).await;
    }
}

/// Serves one connection with the shared HTTP/1.1 and HTTP/2 settings.
struct Connector {
    builder: auto::Builder<TokioExecutor>,
    service: Arc<HttpService>,
}

impl server::Connect for Connector {
    fn connect<I>(
        &self,
        io: TokioIo<I>,
        state: Arc<server::ConnectionState>,
        peer: Option<PeerIdentity>,
    ) -> impl GracefulConnection<Error: std::fmt::Display + Send> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.service.clone();
        self.builder
            .serve_connection(
                io,
                service_fn(move |mut request: Request<Incoming>| {
                    if let Some(peer) = &peer {
                        request.extensions_mut().insert(peer.clone());
                    }
                    let in_flight = state.request_started();
                    let service = service.clone();
                    async move {
                        let response = service.handle(request).await;
                        drop(in_flight);
                        Ok::<_, Infallible>(response)
                    }
                }),
            )
            .into_owned()
    }
}

/// The body encoding of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Option<Format> {
        let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let media_type = value.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Format::Protobuf)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            Format::Protobuf => HeaderValue::from_static("application/x-protobuf"),
            Format::Json => HeaderValue::from_static("application/json"),
        }
    }

    /// A `google.rpc.Status` body in this format.
    fn status(self, code: Code, message: &str, retry_after: Option<Duration>) -> Vec<u8> {
        match self {
            Format::Protobuf => {
                status::status_protobuf(&status::status(code, message, retry_after))
            }
            Format::Json => status::status_json(code, message, retry_after),
        }
    }
}

#[derive(Debug)]
struct HttpService {
    intake: Intake,
    max_request_bytes: usize,
    max_decompressed_bytes: usize,
    read_timeout: Duration,
}

impl HttpService {
    async fn handle(&self, request: Request<Incoming>) -> Response<ReplyBody> {
        let Some(signal) = Signal::from_http_path(request.uri().path()) else {
            return plain(StatusCode::NOT_FOUND, "404 page not found");
        };
        if request.method() != Method::POST {
            RequestMetrics::start(signal, HTTP).refuse(reason::UNSUPPORTED);
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 method not allowed, supported: [POST]",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let Some(format) = Format::from_headers(request.headers()) else {
            RequestMetrics::start(signal, HTTP).refuse(reason::UNSUPPORTED);
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "415 unsupported media type, supported: [application/json, application/x-protobuf]",
            );
        };
        let metrics = RequestMetrics::start(signal, HTTP);
        let result = if self.intake.has_pipeline(signal) {
            self.export(signal, format, request, &metrics).await
        } else {
            Err(RequestError::NoPipeline { signal })
        };
        metrics.finish(&result);
        match result {
            Ok(Verdict::Accepted { rejected, message }) => {
                let answer = ExportResponse::new(signal, rejected, &message);
                let body = match format {
                    Format::Protobuf => answer.to_protobuf(),
                    Format::Json => answer.to_json(),
                };
                respond(StatusCode::OK, format, body)
            }
            Ok(Verdict::Refused {
                retry_after,
                message,
            }) => {
                let body = format.status(Code::Unavailable, &message, Some(retry_after));
                let mut response = respond(StatusCode::SERVICE_UNAVAILABLE, format, body);
                response.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from(status::retry_after_secs(retry_after)),
                );
                response
            }
            Err(error) => {
                let retry_after = self.intake.retry_hint(&error);
                let body = format.status(error.grpc_code(), &error.to_string(), retry_after);
                let mut response = respond(error.http_status(), format, body);
                if let Some(retry_after) = retry_after {
                    response.headers_mut().insert(
                        RETRY_AFTER,
                        HeaderValue::from(status::retry_after_secs(retry_after)),
                    );
                }
                if let RequestError::UnsupportedEncoding { .. } = error {
                    response.headers_mut().insert(
                        ACCEPT_ENCODING,
                        HeaderValue::from_static("gzip, zstd, identity"),
                    );
                }
                response
            }
        }
    }

    async fn export(
        &self,
        signal: Signal,
        format: Format,
        request: Request<Incoming>,
        metrics: &RequestMetrics,
    ) -> Result<Verdict, RequestError> {
        let headers = request.headers();
        let peer = request.extensions().get::<PeerIdentity>();
        let caller = self
            .intake
            .identify(headers, peer.map(|p| &*p.subject_cn))?;
        let compression =
            Compression::from_header("Content-Encoding", headers.get(CONTENT_ENCODING))?;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_request_bytes as u64) {
            // Refused before reading a byte of it.
            return Err(RequestError::BodyTooLarge {
                limit: self.max_request_bytes,
            });
        }
        let (body, mut held) = read_body(
            request.into_body(),
            self.max_request_bytes,
            self.max_request_bytes,
            self.intake.inflight(),
            ReadDeadline::after(self.read_timeout),
        )
        .await?;
        metrics.body_read(body.len());
        if body.is_empty() {
            return self
                .intake
                .export(signal, Bytes::new(), caller.as_ref())
                .await;
        }
        let cap = self.max_decompressed_bytes;
        let payload = if compression == Compression::Identity {
            decompress(compression, body, cap, self.intake.inflight())?.0
        } else {
            let inflight = self.intake.inflight().clone();
            let (payload, reserved) = off_runtime(body.len(), move || {
                decompress(compression, body, cap, &inflight)
            })
            .await?;
            held.merge(reserved);
            payload
        };
        let encoded = match format {
            Format::Protobuf => payload,
            Format::Json if payload.is_empty() => payload,
            Format::Json => {
                // Every byte of the protobuf is reserved before it is written.
                let inflight = self.intake.inflight().clone();
                let (encoded, reserved) = off_runtime(payload.len(), move || {
                    json::to_protobuf_within(signal, &payload, &inflight, cap)
                })
                .await?;
                held.merge(reserved);
                encoded
            }
        };
        let verdict = self.intake.export(signal, encoded, caller.as_ref()).await;
        drop(held);
        verdict
    }
}

fn respond(status: StatusCode, format: Format, body: Vec<u8>) -> Response<ReplyBody> {
    let mut response = Response::new(ReplyBody::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, format.content_type());
    response
}
