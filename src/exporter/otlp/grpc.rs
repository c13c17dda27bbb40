//! OTLP/gRPC: one unary `Export` call per batch on one shared tonic `Channel`.
//!
//! tonic's `Channel` carries the connection (HTTP/2, TLS, reconnect, user
//! agent); the call itself is framed here rather than through
//! `tonic::client::Grpc` and a `Codec`, for two reasons:
//!
//! - **compression level**: tonic hard-codes gzip 6 / zstd 3. Over gRPC with
//!   the default `compression = "gzip"`, gzip 6 is ~10× the CPU of gzip 1
//!   (see `compress.rs`), more than the rest of the gateway together;
//! - **no panic on a bad answer**: tonic's `Status::from_header_map`
//!   `expect`s a valid base64 `grpc-status-details-bin`; the status is parsed
//!   here without trusting the backend.
//!
//! It also keeps one copy of the body: the segments are written (or
//! compressed) straight into the length-prefixed message.
//!
//! ```text
//! request:  POST <grpc_path>  content-type: application/grpc  te: trailers
//!           [grpc-encoding: gzip|zstd]  grpc-timeout: <timeout>  <headers>
//!           body: [compressed-flag u8][length u32 BE][Export*ServiceRequest]
//! response: [flag][length][Export*ServiceResponse]  trailers: grpc-status,
//!           grpc-message, grpc-status-details-bin (or all in the headers)
//! ```

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, Bytes};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use rustls::client::danger::ServerCertVerifier;
use tonic::codegen::Service;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::exporter::{ExportError, ExportOutcome};
use crate::model::{Batch, Signal};

use super::config::{Compression, OtlpExporterConfig};
use super::{compress, error_chain, truncate, ExportResponse, OtlpBuildError, USER_AGENT};

/// Largest response body read (an export response is a few bytes).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC's base64: standard alphabet, padding optional on decode.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The gRPC side of an [`super::OtlpExporter`].
#[derive(Debug)]
pub(crate) struct GrpcTransport {
    /// Cloned per call: a handle to the shared connection, not a new one.
    channel: Channel,
    /// Every header of a call: gRPC's own, then the configured metadata.
    headers: HeaderMap,
    compression: Compression,
    timeout: Duration,
}

impl GrpcTransport {
    pub(crate) fn build(
        endpoint: Uri,
        config: &OtlpExporterConfig,
        extra: HeaderMap,
        verifier: Option<Arc<dyn ServerCertVerifier>>,
    ) -> Result<Self, OtlpBuildError> {
        let invalid = |reason: String| OtlpBuildError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.into(),
        };
        if !matches!(endpoint.path(), "" | "/") {
            return Err(invalid("a gRPC endpoint takes no path".into()));
        }
        let timeout = config.timeout.get();
        let mut builder = Endpoint::from(endpoint)
            .user_agent(USER_AGENT)
            .map_err(|e| invalid(error_chain(&e)))?
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        if let Some(verifier) = verifier {
            builder = builder
                .tls_config_with_verifier(ClientTlsConfig::new(), verifier)
                .map_err(|e| OtlpBuildError::Tls(error_chain(&e)))?;
        }

        let mut headers = HeaderMap::with_capacity(extra.len() + 4);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(GRPC_TIMEOUT, grpc_timeout(timeout));
        match config.compression {
            Compression::None => {}
            Compression::Gzip => {
                headers.insert(GRPC_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Zstd => {
                headers.insert(GRPC_ENCODING, HeaderValue::from_static("zstd"));
            }
        }
        // Reserved names (`grpc-*`, `te`, …) were refused when parsing `headers`.
        for (name, value) in &extra {
            headers.insert(name, value.clone());
        }

        Ok(GrpcTransport {
            channel: builder.connect_lazy(),
            headers,
            compression: config.compression,
            timeout,
        })
    }

    /// The length-prefixed message of `batch`, compressed as configured.
    pub(crate) fn encode(&self, batch: &Batch) -> std::io::Result<Bytes> {
        frame(batch, self.compression)
    }

    /// One call with a message made by [`GrpcTransport::encode`].
    pub(super) async fn send(
        &self,
        signal: Signal,
        body: Bytes,
        tenant: &[(HeaderName, HeaderValue)],
    ) -> Result<ExportOutcome, ExportError> {
        match signal {
            Signal::Traces => {
                self.call::<ExportTraceServiceResponse>(signal.grpc_path(), body, tenant)
                    .await
            }
            Signal::Metrics => {
                self.call::<ExportMetricsServiceResponse>(signal.grpc_path(), body, tenant)
                    .await
            }
            Signal::Logs => {
                self.call::<ExportLogsServiceResponse>(signal.grpc_path(), body, tenant)
                    .await
            }
        }
    }

    /// One unary call of method `path` (`/<package>.<Service>/<Method>`) with a
    /// message made by [`GrpcTransport::encode`]; the other exporters speaking
    /// gRPC (`jaeger`) share this framing, status parsing and classification.
    pub(crate) async fn call<R: ExportResponse>(
        &self,
        path: &'static str,
        body: Bytes,
        tenant: &[(HeaderName, HeaderValue)],
    ) -> Result<ExportOutcome, ExportError> {
        let mut request = Request::new(tonic::body::Body::new(Full::new(body)));
        *request.method_mut() = Method::POST;
        // A path only: the channel fills in scheme and authority.
        *request.uri_mut() = Uri::from_static(path);
        *request.headers_mut() = self.headers.clone();
        for (name, value) in tenant {
            request.headers_mut().insert(name, value.clone());
        }

        let mut channel = self.channel.clone();
        let exchange = async {
            let transport_error = |e: tonic::transport::Error| ExportError::Retryable {
                reason: format!("gRPC transport: {}", error_chain(&e)).into(),
                retry_after: None,
            };
            poll_fn(|cx| channel.poll_ready(cx))
                .await
                .map_err(transport_error)?;
            let response = channel.call(request).await.map_err(transport_error)?;
            let (parts, body) = response.into_parts();
            let collected = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ExportError::Retryable {
                    reason: format!("gRPC response: {}", error_chain(&*e)).into(),
                    retry_after: None,
                })?;
            let status = call_status(parts.status, &parts.headers, collected.trailers());
            Ok((status, parts.headers, collected.to_bytes()))
        };
        let (status, headers, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ExportError::Retryable {
                    reason: format!("no answer within {:?}", self.timeout).into(),
                    retry_after: None,
                })
            }
        };
        if status.code() != Code::Ok {
            return Err(classify(&status));
        }
        Ok(decode_response::<R>(&headers, body))
    }
}

/// `grpc-timeout`: at most 8 digits and a unit.
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    let millis = timeout.as_millis();
    let text = if millis <= 99_999_999 {
        format!("{millis}m")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&text).expect("digits and a unit letter are a valid header value")
}

/// The length-prefixed message: `[compressed u8][length u32 BE][body]`.
fn frame(batch: &Batch, compression: Compression) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(5 + batch.encoded_len());
    out.extend_from_slice(&[u8::from(compression != Compression::None), 0, 0, 0, 0]);
    compress::write_body(batch, compression, &mut out)?;
    let length = u32::try_from(out.len() - 5)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    out[1..5].copy_from_slice(&length.to_be_bytes());
    Ok(Bytes::from(out))
}

/// The call's status: from the headers (a trailers-only answer), else the
/// trailers, else the HTTP status (gRPC's `http-grpc-status-mapping`).
fn call_status(http: StatusCode, headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Status {
    if let Some(status) = parse_status(headers) {
        return status;
    }
    if http != StatusCode::OK {
        let code = match http {
            StatusCode::BAD_REQUEST => Code::Internal,
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::NOT_FOUND => Code::Unimplemented,
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
            _ => Code::Unknown,
        };
        return Status::new(code, format!("HTTP {http} without grpc-status"));
    }
    trailers
        .and_then(parse_status)
        .unwrap_or_else(|| Status::unknown("response without grpc-status"))
}

/// `grpc-status`, `grpc-message` and `grpc-status-details-bin`, without
/// trusting their encoding.
fn parse_status(headers: &HeaderMap) -> Option<Status> {
    let code = Code::from_bytes(headers.get(GRPC_STATUS)?.as_bytes());
    let message = headers
        .get(GRPC_MESSAGE)
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let details = headers
        .get(GRPC_STATUS_DETAILS)
        .and_then(|v| BASE64.decode(v.as_bytes()).ok())
        .map(Bytes::from)
        .unwrap_or_default();
    Some(Status::with_details(code, message, details))
}

/// The first message of a successful call; anything unreadable counts as
/// full success (the server said OK).
fn decode_response<R: ExportResponse>(headers: &HeaderMap, mut body: Bytes) -> ExportOutcome {
    if body.len() < 5 {
        return ExportOutcome::default();
    }
    let compressed = body.get_u8() == 1;
    let length = body.get_u32() as usize;
    if body.len() < length {
        return ExportOutcome::default();
    }
    let message = body.split_to(length);
    let decoded = if compressed {
        let encoding = headers
            .get(GRPC_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity");
        compress::decompress_capped(encoding, &message, MAX_RESPONSE_BYTES)
            .ok()
            .and_then(|plain| R::decode(plain.as_slice()).ok())
    } else {
        R::decode(message).ok()
    };
    decoded.map(R::outcome).unwrap_or_default()
}

/// Maps a gRPC status to retryable or permanent (OTLP spec and Collector semantics).
pub(super) fn classify(status: &Status) -> ExportError {
    let retry_delay = || {
        status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
    };
    let reason = || {
        format!(
            "gRPC {:?}: {}",
            status.code(),
            truncate(status.message().to_owned())
        )
        .into()
    };
    match status.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => ExportError::Retryable {
            reason: reason(),
            retry_after: retry_delay(),
        },
        // The server is throttling only if it says when to come back; without
        // `RetryInfo` the Collector treats it as a permanent limit (e.g. too large).
        Code::ResourceExhausted => match status.get_details_retry_info() {
            Some(info) => ExportError::Retryable {
                reason: reason(),
                retry_after: info.retry_delay,
            },
            None => ExportError::Permanent { reason: reason() },
        },
        _ => ExportError::Permanent { reason: reason() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn with_retry(code: Code, delay: Duration) -> Status {
        Status::with_error_details(code, "busy", ErrorDetails::with_retry_info(Some(delay)))
    }

    #[test]
    fn unavailable_is_retryable_with_retry_info() {
        let error = classify(&with_retry(Code::Unavailable, Duration::from_secs(7)));
        assert!(
            matches!(error, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
            "{error:?}"
        );
        let error = classify(&Status::unavailable("down"));
        assert!(
            matches!(
                error,
                ExportError::Retryable {
                    retry_after: None,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn resource_exhausted_needs_retry_info_to_be_retryable() {
        assert!(!classify(&Status::resource_exhausted("too big")).is_retryable());
        let error = classify(&with_retry(
            Code::ResourceExhausted,
            Duration::from_millis(250),
        ));
        assert!(
            matches!(error, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_millis(250)),
            "{error:?}"
        );
    }

    #[test]
    fn codes_follow_the_otlp_spec() {
        let retryable = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        let permanent = [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::Unauthenticated,
        ];
        for code in retryable {
            assert!(classify(&Status::new(code, "m")).is_retryable(), "{code:?}");
        }
        for code in permanent {
            assert!(
                !classify(&Status::new(code, "m")).is_retryable(),
                "{code:?}"
            );
        }
    }

    #[test]
    fn reason_names_code_and_message() {
        let error = classify(&Status::invalid_argument("bad span"));
        assert_eq!(
            error.to_string(),
            "permanent: gRPC InvalidArgument: bad span"
        );
    }

    #[test]
    fn frame_is_length_prefixed() {
        let batch = Batch::from_validated(Signal::Logs, Bytes::from(vec![0x0a, 0x00]), 0);
        let framed = frame(&batch, Compression::None).unwrap();
        assert_eq!(&framed[..], &[0, 0, 0, 0, 2, 0x0a, 0x00]);
        let framed = frame(&batch, Compression::Zstd).unwrap();
        assert_eq!(framed[0], 1);
        let length = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, framed.len() - 5);
        assert_eq!(
            compress::decompress_capped("zstd", &framed[5..], 100).unwrap(),
            vec![0x0a, 0x00]
        );
    }

    #[test]
    fn grpc_timeout_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000m");
        assert_eq!(grpc_timeout(Duration::from_secs(10_000_000)), "10000000S");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn status_comes_from_headers_then_trailers_then_http() {
        let ok = headers(&[("grpc-status", "0")]);
        let unavailable = headers(&[("grpc-status", "14"), ("grpc-message", "going%20away")]);
        let status = call_status(StatusCode::OK, &unavailable, Some(&ok));
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unavailable, "going away")
        );
        let status = call_status(StatusCode::OK, &HeaderMap::new(), Some(&ok));
        assert_eq!(status.code(), Code::Ok);
        let status = call_status(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), None);
        assert_eq!(status.code(), Code::Unavailable);
        let status = call_status(StatusCode::OK, &HeaderMap::new(), None);
        assert_eq!(status.code(), Code::Unknown);
    }

    #[test]
    fn bad_status_details_do_not_panic() {
        let status = parse_status(&headers(&[
            ("grpc-status", "14"),
            ("grpc-status-details-bin", "!!not base64!!"),
        ]))
        .unwrap();
        assert!(matches!(
            classify(&status),
            ExportError::Retryable {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn retry_info_survives_the_header_round_trip() {
        let sent = with_retry(Code::Unavailable, Duration::from_secs(3));
        let details = BASE64.encode(sent.details());
        let status = parse_status(&headers(&[
            ("grpc-status", "14"),
            ("grpc-status-details-bin", &details),
        ]))
        .unwrap();
        assert!(matches!(
            classify(&status),
            ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
    }

    #[test]
    fn response_message_gives_partial_success() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
        use prost::Message;
        let message = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 4,
                error_message: "old".into(),
            }),
        }
        .encode_to_vec();
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(&message);
        let outcome =
            decode_response::<ExportTraceServiceResponse>(&HeaderMap::new(), Bytes::from(body));
        assert_eq!(outcome.rejected_items, 4);
        let empty = decode_response::<ExportTraceServiceResponse>(&HeaderMap::new(), Bytes::new());
        assert_eq!(empty, ExportOutcome::default());
    }
}
