//! OTLP/HTTP with protobuf bodies: `POST <endpoint>/v1/<signal>` on one pooled
//! hyper client (HTTP/2 when the server offers it over TLS, else HTTP/1.1).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use rustls::client::danger::ServerCertVerifier;

use crate::exporter::{ExportError, ExportOutcome};
use crate::model::{Batch, Signal};

use super::config::{Compression, OtlpExporterConfig, TlsConfig};
use super::{compress, error_chain, tls, truncate, ExportResponse, OtlpBuildError, USER_AGENT};

/// Largest response body read; the rest is ignored (an OTLP response is a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pooled hyper client every HTTP exporter sends with.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client with `timeout` as its connect deadline: TLS with `verifier`
/// (HTTP/2 when the server offers it), or plaintext HTTP/1.1 when `None`.
pub(crate) fn client(
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    timeout: Duration,
) -> Result<HttpClient, OtlpBuildError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match verifier {
        Some(verifier) => builder
            .with_tls_config(tls::client_config(verifier)?)
            .https_only()
            .enable_all_versions()
            .wrap_connector(http),
        // Plaintext: the endpoint is `http://`, so the TLS config is never used.
        None => builder
            .with_tls_config(tls::client_config(tls::verifier(&TlsConfig::default())?)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .timer(TokioTimer::new())
        .build(connector))
}

/// The HTTP side of an [`super::OtlpExporter`].
#[derive(Debug)]
pub(super) struct HttpTransport {
    client: HttpClient,
    /// Request URI per signal, indexed by [`signal_index`].
    uris: [Uri; 3],
    /// Every header of a request: content type and encoding, user agent, the configured ones.
    headers: HeaderMap,
    compression: Compression,
    timeout: Duration,
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl HttpTransport {
    pub(super) fn build(
        endpoint: &Uri,
        config: &OtlpExporterConfig,
        extra: HeaderMap,
        verifier: Option<Arc<dyn ServerCertVerifier>>,
    ) -> Result<Self, OtlpBuildError> {
        let base = endpoint.to_string();
        let base = base.trim_end_matches('/');
        let uri = |signal: Signal| {
            format!("{base}{}", signal.http_path())
                .parse::<Uri>()
                .map_err(|e| OtlpBuildError::Endpoint {
                    endpoint: config.endpoint.clone(),
                    reason: e.to_string().into(),
                })
        };
        let uris = [
            uri(Signal::Traces)?,
            uri(Signal::Metrics)?,
            uri(Signal::Logs)?,
        ];

        let timeout = config.timeout.get();
        let client = client(verifier, timeout)?;

        let mut headers = HeaderMap::with_capacity(extra.len() + 3);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        match config.compression {
            Compression::None => {}
            Compression::Gzip => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Zstd => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            }
        }
        // Names the exporter must set (content type, encoding, …) were refused
        // when parsing; others, like `user-agent`, may be overridden.
        for (name, value) in &extra {
            headers.insert(name, value.clone());
        }

        Ok(HttpTransport {
            client,
            uris,
            headers,
            compression: config.compression,
            timeout,
        })
    }

    /// The request body of `batch`, compressed as configured.
    pub(super) fn encode(&self, batch: &Batch) -> std::io::Result<Bytes> {
        encode_body(batch, self.compression)
    }

    /// One request with a body made by [`HttpTransport::encode`].
    pub(super) async fn send(
        &self,
        signal: Signal,
        body: Bytes,
        tenant: &[(HeaderName, HeaderValue)],
    ) -> Result<ExportOutcome, ExportError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uris[signal_index(signal)].clone();
        *request.headers_mut() = self.headers.clone();
        for (name, value) in tenant {
            request.headers_mut().insert(name, value.clone());
        }

        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| ExportError::Retryable {
                        reason: format!("request failed: {}", error_chain(&e)).into(),
                        retry_after: None,
                    })?;
            let (parts, body) = response.into_parts();
            // The status line decides; a body we cannot read only loses the details.
            let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    tracing::debug!(error = %error_chain(&*error), "Could not read the export response body.");
                    Bytes::new()
                }
            };
            Ok((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ExportError::Retryable {
                    reason: format!("no answer within {:?}", self.timeout).into(),
                    retry_after: None,
                })
            }
        };
        if parts.status.is_success() {
            return Ok(match signal {
                Signal::Traces => decode_outcome::<ExportTraceServiceResponse>(&body),
                Signal::Metrics => decode_outcome::<ExportMetricsServiceResponse>(&body),
                Signal::Logs => decode_outcome::<ExportLogsServiceResponse>(&body),
            });
        }
        Err(classify(
            parts.status,
            parts.headers.get(RETRY_AFTER),
            &body,
            SystemTime::now(),
        ))
    }
}

/// A 2xx body; one we cannot decode (some servers answer JSON or nothing) means full success.
fn decode_outcome<R: ExportResponse>(body: &[u8]) -> ExportOutcome {
    R::decode(body).map(R::outcome).unwrap_or_default()
}

/// The request body: the batch itself (no copy for one segment) or compressed.
fn encode_body(batch: &Batch, compression: Compression) -> std::io::Result<Bytes> {
    if compression == Compression::None {
        return Ok(batch.to_bytes());
    }
    let mut out = Vec::new();
    compress::write_body(batch, compression, &mut out)?;
    Ok(Bytes::from(out))
}

/// Maps a non-2xx answer to retryable or permanent (OTLP/HTTP spec).
pub(super) fn classify(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &[u8],
    now: SystemTime,
) -> ExportError {
    let mut reason = format!("HTTP {status}");
    if let Some(message) = error_message(body) {
        reason.push_str(": ");
        reason.push_str(&message);
    }
    match status.as_u16() {
        429 | 502 | 503 | 504 => ExportError::Retryable {
            reason: reason.into(),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => ExportError::Permanent {
            reason: reason.into(),
        },
    }
}

/// The `message` of a `google.rpc.Status` body (what OTLP/HTTP servers send),
/// else the body as text.
fn error_message(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let message = match tonic_types::Status::decode(body) {
        Ok(status) if !status.message.is_empty() => status.message,
        _ => std::str::from_utf8(body).ok()?.trim().to_owned(),
    };
    (!message.is_empty()).then(|| truncate(message))
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(&header("3"), now),
            Some(Duration::from_secs(3))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after(&header(&later), now),
            Some(Duration::from_secs(120))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(
            parse_retry_after(&header(&earlier), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&header("soon"), now), None);
    }

    #[test]
    fn statuses_follow_the_otlp_spec() {
        let now = SystemTime::now();
        for code in [429, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            let error = classify(status, Some(&header("2")), b"", now);
            assert!(
                matches!(error, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(2)),
                "{code}: {error:?}"
            );
        }
        for code in [400, 401, 403, 404, 413, 500, 501] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(!classify(status, None, b"", now).is_retryable(), "{code}");
        }
    }

    #[test]
    fn reason_carries_the_server_message() {
        let body = tonic_types::Status {
            code: 3,
            message: "bad span".into(),
            details: vec![],
        }
        .encode_to_vec();
        let error = classify(StatusCode::BAD_REQUEST, None, &body, SystemTime::now());
        assert_eq!(
            error.to_string(),
            "permanent: HTTP 400 Bad Request: bad span"
        );
        let error = classify(StatusCode::BAD_REQUEST, None, b"nope\n", SystemTime::now());
        assert_eq!(error.to_string(), "permanent: HTTP 400 Bad Request: nope");
    }

    #[test]
    fn success_body_gives_partial_success() {
        let body = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "dropped".into(),
            }),
        }
        .encode_to_vec();
        let outcome = decode_outcome::<ExportLogsServiceResponse>(&body);
        assert_eq!(
            (outcome.rejected_items, outcome.message.as_str()),
            (2, "dropped")
        );
        assert_eq!(
            decode_outcome::<ExportLogsServiceResponse>(b"{}"),
            ExportOutcome::default()
        );
    }
}
