//! OTLP exporter: sends each [`Batch`] as one `Export*ServiceRequest` over
//! OTLP/gRPC or OTLP/HTTP (protobuf) to any collector, Jaeger v2 included.
//!
//! The batch's encoded bytes go out as they are: no decode, no re-encode, and
//! at most one copy (into the compressor, or into the gRPC message frame).
//! One client (one tonic `Channel` or one pooled hyper client) is built per
//! exporter and shared by every request.
//!
//! # Errors
//! [`OtlpExporter::export`] makes one attempt and classifies the answer, the
//! way the Collector's `otlp`/`otlphttp` exporters do:
//!
//! | answer | result |
//! |---|---|
//! | gRPC `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS` | [`ExportError::Retryable`], `retry_after` from `RetryInfo` if sent |
//! | gRPC `RESOURCE_EXHAUSTED` with `RetryInfo` | [`ExportError::Retryable`] with its delay |
//! | gRPC `RESOURCE_EXHAUSTED` without `RetryInfo`, any other code | [`ExportError::Permanent`] |
//! | HTTP 429, 502, 503, 504 | [`ExportError::Retryable`], `retry_after` from `Retry-After` (seconds or HTTP-date) |
//! | any other HTTP status ≥ 300 | [`ExportError::Permanent`] |
//! | connect error, broken connection, `timeout` passed | [`ExportError::Retryable`] |
//! | success with `partial_success` | `Ok(ExportOutcome { rejected_items, message })` |
//!
//! Retrying is not done here but in `queue::retry`, the same for every exporter.
//!
//! # TLS
//! `https://` endpoints use rustls (ring). The server certificate is checked
//! against `tls.ca_file` when set, else the Mozilla roots (`webpki-roots`);
//! `tls.insecure_skip_verify` accepts any certificate. `http://` endpoints are
//! plaintext (HTTP/2 with prior knowledge for gRPC, HTTP/1.1 for HTTP).
//!
//! # Compression
//! Both transports compress here, at the fastest levels (gzip 1, zstd 1):
//! on OTLP payloads gzip 1 costs a tenth of gzip 6 for a ratio ~20 % worse
//! (measurements in `compress.rs`).

pub mod config;
mod compress;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod tls;

use std::borrow::Cow;
use std::path::PathBuf;

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use ::http::Uri;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

use bytes::Bytes;

use crate::model::{Batch, Context, Signal};

use self::config::{OtlpExporterConfig, OtlpProtocol};
use super::{ExportError, ExportOutcome, Exporter};

/// `User-Agent` of every export request.
const USER_AGENT: &str = concat!("otlp-gateway/", env!("CARGO_PKG_VERSION"));

/// Longest server message kept in an error reason or outcome message.
const MAX_MESSAGE_CHARS: usize = 512;

/// Why an [`OtlpExporterConfig`] could not be turned into an [`OtlpExporter`].
#[derive(Debug, thiserror::Error)]
pub enum OtlpBuildError {
    #[error("invalid endpoint \"{endpoint}\": {reason}")]
    Endpoint {
        endpoint: String,
        reason: Cow<'static, str>,
    },
    #[error("invalid header \"{name}\": {reason}")]
    Header {
        name: String,
        reason: Cow<'static, str>,
    },
    #[error("tls.ca_file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("the exporter must be built inside a Tokio runtime")]
    NoRuntime,
}

/// Sends batches as OTLP export requests over gRPC or HTTP/protobuf.
#[derive(Debug)]
pub struct OtlpExporter {
    id: String,
    transport: Transport,
    /// Where each batch's tenant goes (`tenant_header`), lower-cased.
    tenant_header: Option<HeaderName>,
    /// `headers` whose value names `{tenant}`, filled in per batch.
    tenant_templates: Vec<(HeaderName, String)>,
}

/// The placeholder for a batch's tenant in a `headers` value.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// Boxed: the clients are a few hundred bytes, and `Exporter` holds this by value.
#[derive(Debug)]
enum Transport {
    Grpc(Box<grpc::GrpcTransport>),
    Http(Box<http::HttpTransport>),
}

impl OtlpExporter {
    /// Checks `config` and builds the client. No connection is made until the
    /// first export, so a backend that is down at start-up is not an error.
    ///
    /// # Errors
    /// [`OtlpBuildError`] for a bad endpoint or header, an unreadable
    /// `tls.ca_file`, or when called outside a Tokio runtime (the gRPC
    /// channel spawns its connection task).
    pub fn build(id: &str, config: &OtlpExporterConfig) -> Result<OtlpExporter, OtlpBuildError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(OtlpBuildError::NoRuntime);
        }
        let endpoint = parse_endpoint(&config.endpoint)?;
        let headers = parse_headers(config)?;
        let verifier = match endpoint.scheme_str() {
            Some("https") => Some(tls::verifier(&config.tls)?),
            _ => None,
        };
        let transport = match config.protocol {
            OtlpProtocol::Grpc => Transport::Grpc(Box::new(grpc::GrpcTransport::build(
                endpoint, config, headers, verifier,
            )?)),
            OtlpProtocol::HttpProtobuf => Transport::Http(Box::new(http::HttpTransport::build(
                &endpoint, config, headers, verifier,
            )?)),
        };
        let tenant_header = match &config.tenant_header {
            Some(name) => Some(check_header_name(name, config.protocol).map_err(|reason| {
                OtlpBuildError::Header {
                    name: name.clone(),
                    reason: reason.into(),
                }
            })?),
            None => None,
        };
        Ok(OtlpExporter {
            id: id.to_owned(),
            transport,
            tenant_header,
            tenant_templates: tenant_templates(config)?,
        })
    }

    /// The exporter's name from `config.toml`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// One export attempt of `batch` with no tenant: encode, then send once. No retry.
    ///
    /// # Errors
    /// [`ExportError`] by the server's answer; see the module docs for the mapping.
    pub async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        let mut request = Exporter::encode(self, batch, &Context::default())?;
        Exporter::send(self, &mut request).await
    }
}

/// A batch as one OTLP export request: the body is framed (gRPC) or
/// compressed (HTTP) once, and sent as it is on every attempt.
#[derive(Debug, Clone)]
pub struct OtlpRequest {
    signal: Signal,
    body: Bytes,
    items: u64,
    /// The `tenant_header` and the `{tenant}` headers with their values, when the batch has a tenant.
    tenant: Vec<(HeaderName, HeaderValue)>,
}

impl Exporter for OtlpExporter {
    type Request = OtlpRequest;

    fn encode(&self, batch: &Batch, context: &Context) -> Result<OtlpRequest, ExportError> {
        let body = match &self.transport {
            Transport::Grpc(t) => t.encode(batch),
            Transport::Http(t) => t.encode(batch),
        }
        .map_err(|e| ExportError::Permanent {
            reason: format!("compressing the request: {e}").into(),
        })?;
        let mut tenant = Vec::new();
        if let Some(id) = context.tenant() {
            let value = |text: &str| {
                let mut value =
                    HeaderValue::from_str(text).map_err(|_| ExportError::Permanent {
                        reason: "the tenant id is not a valid header value".into(),
                    })?;
                value.set_sensitive(false);
                Ok::<_, ExportError>(value)
            };
            if let Some(name) = &self.tenant_header {
                tenant.push((name.clone(), value(id)?));
            }
            for (name, template) in &self.tenant_templates {
                let mut filled = value(&template.replace(TENANT_PLACEHOLDER, id))?;
                filled.set_sensitive(true);
                tenant.push((name.clone(), filled));
            }
        }
        Ok(OtlpRequest {
            signal: batch.signal(),
            body,
            items: batch.items(),
            tenant,
        })
    }

    async fn send(&self, request: &mut OtlpRequest) -> Result<ExportOutcome, ExportError> {
        if request.items == 0 {
            return Ok(ExportOutcome::default());
        }
        let tenant = request.tenant.as_slice();
        let result = match &self.transport {
            Transport::Grpc(t) => t.send(request.signal, request.body.clone(), tenant).await,
            Transport::Http(t) => t.send(request.signal, request.body.clone(), tenant).await,
        };
        if let Err(error) = &result {
            tracing::debug!(exporter = %self.id, signal = %request.signal, %error, "Export attempt failed.");
        }
        result
    }

    fn items(&self, request: &OtlpRequest) -> u64 {
        request.items
    }
}

/// Checks the scheme and host; the path is kept (HTTP appends `/v1/<signal>`).
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<Uri, OtlpBuildError> {
    let invalid = |reason: &'static str| OtlpBuildError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.into(),
    };
    let uri: Uri = endpoint.trim().parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("a query string is not allowed"));
    }
    Ok(uri)
}

/// Headers the exporter sets itself; configuring them would break the request.
const EXPORTER_HEADERS: [&str; 7] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "te",
    "host",
    "connection",
];

/// A header the configuration may set: a valid name, not one the exporter
/// or gRPC sets itself. Lower-cased (gRPC metadata requires it).
pub(crate) fn check_header_name(
    name: &str,
    protocol: OtlpProtocol,
) -> Result<HeaderName, &'static str> {
    let key = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "not a valid header name")?;
    if EXPORTER_HEADERS.contains(&key.as_str()) {
        return Err("set by the exporter");
    }
    if protocol == OtlpProtocol::Grpc
        && (key.as_str().starts_with("grpc-") || key.as_str().ends_with("-bin"))
    {
        return Err("reserved by gRPC");
    }
    Ok(key)
}

/// `headers` as a header map, names lower-cased (gRPC metadata requires it).
/// The `headers` whose value names the batch's tenant (`{tenant}`), checked
/// with a sample tenant id.
pub(crate) fn tenant_templates(
    config: &OtlpExporterConfig,
) -> Result<Vec<(HeaderName, String)>, OtlpBuildError> {
    let mut templates = Vec::new();
    for (name, value) in config
        .headers
        .iter()
        .filter(|(_, v)| v.contains(TENANT_PLACEHOLDER))
    {
        let invalid = |reason: &'static str| OtlpBuildError::Header {
            name: name.clone(),
            reason: reason.into(),
        };
        let key = check_header_name(name, config.protocol).map_err(invalid)?;
        HeaderValue::from_str(&value.replace(TENANT_PLACEHOLDER, "tenant"))
            .map_err(|_| invalid("the value must be visible ASCII"))?;
        templates.push((key, value.clone()));
    }
    Ok(templates)
}

/// The fixed `headers` (those without `{tenant}`), sent with every request.
pub(crate) fn parse_headers(config: &OtlpExporterConfig) -> Result<HeaderMap, OtlpBuildError> {
    let mut headers = HeaderMap::with_capacity(config.headers.len());
    for (name, value) in config
        .headers
        .iter()
        .filter(|(_, v)| !v.contains(TENANT_PLACEHOLDER))
    {
        let invalid = |reason: &'static str| OtlpBuildError::Header {
            name: name.clone(),
            reason: reason.into(),
        };
        let key = check_header_name(name, config.protocol).map_err(invalid)?;
        let mut value =
            HeaderValue::from_str(value).map_err(|_| invalid("the value must be visible ASCII"))?;
        value.set_sensitive(true);
        headers.append(key, value);
    }
    Ok(headers)
}

/// An `Export*ServiceResponse`: all three carry the same `partial_success`.
pub(crate) trait ExportResponse: prost::Message + Default + Send + 'static {
    fn outcome(self) -> ExportOutcome;
}

fn outcome(rejected: i64, message: String) -> ExportOutcome {
    ExportOutcome {
        rejected_items: u64::try_from(rejected).unwrap_or(0),
        message: truncate(message),
    }
}

impl ExportResponse for ExportTraceServiceResponse {
    fn outcome(self) -> ExportOutcome {
        self.partial_success
            .map(|p| outcome(p.rejected_spans, p.error_message))
            .unwrap_or_default()
    }
}

impl ExportResponse for ExportMetricsServiceResponse {
    fn outcome(self) -> ExportOutcome {
        self.partial_success
            .map(|p| outcome(p.rejected_data_points, p.error_message))
            .unwrap_or_default()
    }
}

impl ExportResponse for ExportLogsServiceResponse {
    fn outcome(self) -> ExportOutcome {
        self.partial_success
            .map(|p| outcome(p.rejected_log_records, p.error_message))
            .unwrap_or_default()
    }
}

/// Caps a server-provided message so one bad answer cannot bloat logs.
pub(crate) fn truncate(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `error` and its sources joined as `a: b: c` (hyper's own `Display` is terse).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    #[test]
    fn endpoint_needs_http_scheme_and_host() {
        assert!(parse_endpoint("http://localhost:4317").is_ok());
        assert!(parse_endpoint("https://collector.example/otlp").is_ok());
        for bad in [
            "localhost:4317",
            "grpc://x:1",
            "http://",
            "http://x:1/?a=b",
            "not a url",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_checked() {
        let mut config: OtlpExporterConfig = toml::from_str("endpoint = \"http://x:1\"").unwrap();
        config.headers.insert("X-Api-Key".into(), "secret".into());
        let headers = parse_headers(&config).unwrap();
        assert_eq!(headers["x-api-key"], "secret");
        config.headers.insert("grpc-timeout".into(), "1S".into());
        assert!(parse_headers(&config).is_err());
        config.protocol = OtlpProtocol::HttpProtobuf;
        assert!(parse_headers(&config).is_ok());
        config
            .headers
            .insert("Content-Type".into(), "text/plain".into());
        assert!(parse_headers(&config).is_err());
        config.headers.clear();
        config.headers.insert("bad name".into(), "v".into());
        assert!(parse_headers(&config).is_err());
    }

    #[test]
    fn partial_success_becomes_outcome() {
        let response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "x".repeat(2000),
            }),
        };
        let outcome = response.outcome();
        assert_eq!(outcome.rejected_items, 3);
        assert_eq!(outcome.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            ExportTraceServiceResponse::default().outcome(),
            ExportOutcome::default()
        );
    }

    #[tokio::test]
    async fn build_picks_the_transport() {
        let config: OtlpExporterConfig =
            toml::from_str("endpoint = \"https://x:4318\"\nprotocol = \"http_protobuf\"").unwrap();
        let exporter = OtlpExporter::build("a", &config).unwrap();
        assert!(matches!(exporter.transport, Transport::Http(_)));
        let config: OtlpExporterConfig = toml::from_str("endpoint = \"http://x:4317\"").unwrap();
        let exporter = OtlpExporter::build("b", &config).unwrap();
        assert!(matches!(exporter.transport, Transport::Grpc(_)));
    }

    #[test]
    fn build_outside_a_runtime_is_an_error() {
        let config: OtlpExporterConfig = toml::from_str("endpoint = \"http://x:4317\"").unwrap();
        assert!(matches!(
            OtlpExporter::build("a", &config),
            Err(OtlpBuildError::NoRuntime)
        ));
    }
}
