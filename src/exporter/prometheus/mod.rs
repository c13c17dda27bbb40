//! Prometheus remote-write 1.0 exporter (`prometheusremotewrite`): OTLP
//! metrics translated to Prometheus series ([`translate`]), sent as
//! snappy-compressed `WriteRequest`s ([`wire`]).
//!
//! # Order
//! Prometheus drops samples older than a series' latest. So:
//! - the samples of a series are sorted by time inside a request;
//! - a batch with more than `max_samples_per_send` samples goes out as
//!   several requests, one after another (a retry resends from the first
//!   one not delivered);
//! - the [`ResourcePartitioner`] keys each resource by its `job`, `instance`
//!   and promoted attributes, which every one of its series carries (its
//!   `target_info` too): the branch runs one batcher, queue and sender per
//!   shard, so a series always goes through the same sender, in order.
//!
//! # Refused points
//! Points Prometheus would refuse (and with them the whole request) are
//! dropped before sending and counted by reason in
//! `otlp_gateway_prometheus_points_refused_total`; the sender also counts
//! them as dropped (`partial_success`).
//!
//! # Errors
//! | answer | result |
//! |---|---|
//! | 2xx | delivered |
//! | 429, 5xx | [`ExportError::Retryable`], `retry_after` from `Retry-After` |
//! | other status | that request's samples dropped for good (counted); the next request goes on |
//! | connect error, broken connection, `timeout` passed | [`ExportError::Retryable`] |

pub mod config;
pub mod names;
pub mod series;
pub mod translate;
pub mod wire;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use metrics::counter;

use crate::exporter::otlp::http::{client as http_client, HttpClient};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use crate::exporter::otlp::{http::parse_retry_after, tls, TENANT_PLACEHOLDER};
use crate::exporter::{ExportError, ExportOutcome, Exporter, Partitioner};
use crate::model::regroup::partition_resources;
use crate::model::{Batch, Context, Envelope, Signal};
use crate::telemetry::metrics::PROMETHEUS_POINTS_REFUSED;

use self::config::{secret_from_env, PrometheusExporterConfig, EXPORTER_HEADERS};
use self::series::SeriesSet;
use self::translate::{resource_key, Translator};

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("otlp-gateway/", env!("CARGO_PKG_VERSION"));

/// Largest response body read (Prometheus answers a line of text).
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Longest server message kept in an error reason.
const MAX_MESSAGE_CHARS: usize = 512;

/// Why a [`PrometheusExporterConfig`] could not be turned into an exporter.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusBuildError {
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
    #[error("environment variable {name} {reason}")]
    Secret { name: String, reason: &'static str },
    #[error("the prometheusremotewrite exporter takes metrics only, not {0}")]
    Signal(Signal),
    #[error(transparent)]
    Tls(#[from] crate::exporter::otlp::OtlpBuildError),
}

/// Sends metrics batches to a remote-write endpoint.
#[derive(Debug)]
pub struct PrometheusExporter {
    id: String,
    client: HttpClient,
    uri: Uri,
    /// Every fixed header: content type and encoding, version, user agent, auth, configured ones.
    headers: HeaderMap,
    /// `headers` whose value names `{tenant}`, filled in per batch.
    tenant_templates: Vec<(HeaderName, String)>,
    timeout: Duration,
    max_samples_per_send: usize,
    translator: Translator,
    partitioner: Arc<ResourcePartitioner>,
}

/// One batch, translated and cut into requests of at most `max_samples_per_send`
/// samples, sent in order.
#[derive(Debug)]
pub struct RemoteWriteRequest {
    /// Requests not delivered yet, first to send at the front.
    parts: VecDeque<Part>,
    /// Data points refused while translating, not yet reported to the sender.
    refused: u64,
    /// The `{tenant}` headers with their values, when the batch has a tenant.
    tenant: Vec<(HeaderName, HeaderValue)>,
}

/// One HTTP request's body and the data points it stands for.
#[derive(Debug)]
struct Part {
    body: Bytes,
    items: u64,
}

impl PrometheusExporter {
    /// Builds the client; no connection is made until the first send.
    ///
    /// # Errors
    /// [`PrometheusBuildError`] for a bad endpoint or header, a missing secret,
    /// an unreadable `tls.ca_file`, or a pipeline other than metrics.
    pub fn build(
        id: &str,
        signal: Signal,
        config: &PrometheusExporterConfig,
    ) -> Result<Self, PrometheusBuildError> {
        if signal != Signal::Metrics {
            return Err(PrometheusBuildError::Signal(signal));
        }
        let invalid_endpoint = |reason: &'static str| PrometheusBuildError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.into(),
        };
        let uri: Uri = config
            .endpoint
            .trim()
            .parse()
            .map_err(|_| invalid_endpoint("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid_endpoint("the scheme must be http:// or https://")),
        };
        let timeout = config.timeout.get();
        let verifier = if https {
            Some(tls::verifier(&config.tls)?)
        } else {
            None
        };
        let client = http_client(verifier, timeout)?;
        let (headers, tenant_templates) = headers(config)?;
        Ok(PrometheusExporter {
            id: id.to_owned(),
            client,
            uri,
            headers,
            tenant_templates,
            timeout,
            max_samples_per_send: config.max_samples_per_send.max(1),
            translator: Translator::new(config.translate_config()),
            partitioner: Arc::new(ResourcePartitioner {
                promote: config.promote_resource_attributes.clone(),
            }),
        })
    }

    /// The translator (and its delta state).
    pub fn translator(&self) -> &Translator {
        &self.translator
    }

    fn send_error(&self, error: ExportError) -> ExportError {
        tracing::debug!(exporter = %self.id, %error, "Remote-write request failed.");
        error
    }

    /// One HTTP request with `body`.
    async fn post(
        &self,
        body: Bytes,
        tenant: &[(HeaderName, HeaderValue)],
    ) -> Result<(), ExportError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
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
            let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok::<_, ExportError>((parts, body))
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
            return Ok(());
        }
        Err(classify(
            parts.status,
            parts.headers.get(RETRY_AFTER),
            &body,
            SystemTime::now(),
        ))
    }
}

/// The fixed headers, and the `{tenant}` templates.
fn headers(
    config: &PrometheusExporterConfig,
) -> Result<(HeaderMap, Vec<(HeaderName, String)>), PrometheusBuildError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert(
        HeaderName::from_static("x-prometheus-remote-write-version"),
        HeaderValue::from_static("0.1.0"),
    );
    headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
    let secret = |name: &str| {
        secret_from_env(name).map_err(|reason| PrometheusBuildError::Secret {
            name: name.to_owned(),
            reason,
        })
    };
    let authorization = match (&config.basic_auth, &config.bearer_token_env) {
        (Some(auth), _) => {
            let password = secret(&auth.password_env)?;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", auth.username));
            Some(format!("Basic {token}"))
        }
        (None, Some(name)) => Some(format!("Bearer {}", secret(name)?)),
        (None, None) => None,
    };
    if let Some(text) = authorization {
        let mut value = HeaderValue::from_str(&text).map_err(|_| PrometheusBuildError::Header {
            name: "authorization".to_owned(),
            reason: "the secret must be visible ASCII".into(),
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let mut templates = Vec::new();
    for (name, value) in &config.headers {
        let invalid = |reason: &'static str| PrometheusBuildError::Header {
            name: name.clone(),
            reason: reason.into(),
        };
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        if EXPORTER_HEADERS.contains(&key.as_str()) {
            return Err(invalid("set by the exporter"));
        }
        if value.contains(TENANT_PLACEHOLDER) {
            HeaderValue::from_str(&value.replace(TENANT_PLACEHOLDER, "tenant"))
                .map_err(|_| invalid("the value must be visible ASCII"))?;
            templates.push((key, value.clone()));
        } else {
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| invalid("the value must be visible ASCII"))?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
    }
    Ok((headers, templates))
}

impl Exporter for PrometheusExporter {
    type Request = RemoteWriteRequest;

    fn encode(&self, batch: &Batch, context: &Context) -> Result<RemoteWriteRequest, ExportError> {
        let request = ExportMetricsServiceRequest::decode(batch.to_bytes()).map_err(|e| {
            ExportError::Permanent {
                reason: format!("not a metrics request: {e}").into(),
            }
        })?;
        let translated = self.translator.translate(&request, context.tenant());
        for (reason, points) in &translated.refused {
            counter!(PROMETHEUS_POINTS_REFUSED, "exporter" => self.id.clone(), "reason" => *reason)
                .increment(*points);
        }
        let refused = translated.refused_points();
        // What the sender counts: the batch's items, split over the parts.
        let delivered_items = batch.items().saturating_sub(refused);
        let parts = split_parts(
            translated.series,
            self.max_samples_per_send,
            delivered_items,
        )?;
        let mut tenant = Vec::new();
        if let Some(id) = context.tenant() {
            for (name, template) in &self.tenant_templates {
                let mut value = HeaderValue::from_str(&template.replace(TENANT_PLACEHOLDER, id))
                    .map_err(|_| ExportError::Permanent {
                        reason: "the tenant id is not a valid header value".into(),
                    })?;
                value.set_sensitive(true);
                tenant.push((name.clone(), value));
            }
        }
        Ok(RemoteWriteRequest {
            parts,
            refused: batch.items().min(refused),
            tenant,
        })
    }

    async fn send(&self, request: &mut RemoteWriteRequest) -> Result<ExportOutcome, ExportError> {
        let mut delivered = 0u64;
        let mut rejected = std::mem::take(&mut request.refused);
        let mut last_rejection = None;
        while let Some(part) = request.parts.front() {
            match self.post(part.body.clone(), &request.tenant).await {
                Ok(()) => delivered += part.items,
                Err(ExportError::Permanent { reason }) => {
                    // Retrying these bytes gives the same answer; the next request may pass.
                    rejected += part.items;
                    last_rejection = Some(reason);
                }
                Err(error) => {
                    let error = self.send_error(error);
                    if delivered == 0 && rejected == 0 {
                        return Err(error);
                    }
                    let (reason, retry_after) = match error {
                        ExportError::Retryable {
                            reason,
                            retry_after,
                        }
                        | ExportError::Partial {
                            reason,
                            retry_after,
                            ..
                        } => (reason, retry_after),
                        ExportError::Permanent { reason } => (reason, None),
                    };
                    return Err(ExportError::Partial {
                        delivered,
                        rejected,
                        reason,
                        retry_after,
                    });
                }
            }
            request.parts.pop_front();
        }
        if delivered == 0 && rejected > 0 {
            if let Some(reason) = last_rejection {
                return Err(self.send_error(ExportError::Permanent { reason }));
            }
        }
        Ok(ExportOutcome {
            rejected_items: rejected,
            message: last_rejection.map_or_else(
                || "points Prometheus would refuse (see otlp_gateway_prometheus_points_refused_total)".to_owned(),
                |r| r.into_owned(),
            ),
        })
    }

    fn items(&self, request: &RemoteWriteRequest) -> u64 {
        request.refused + request.parts.iter().map(|p| p.items).sum::<u64>()
    }

    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        Some(self.partitioner.clone())
    }
}

/// Cuts `series` into snappy-compressed requests of at most `max_samples`
/// samples (a series with more is split, its samples staying in time order
/// across requests), and shares `items` out over them by their samples.
fn split_parts(
    series: SeriesSet,
    max_samples: usize,
    items: u64,
) -> Result<VecDeque<Part>, ExportError> {
    let total = series.samples().max(1) as u128;
    let snappy = |raw: &[u8]| {
        snap::raw::Encoder::new()
            .compress_vec(raw)
            .map(Bytes::from)
            .map_err(|e| ExportError::Permanent {
                reason: format!("snappy: {e}").into(),
            })
    };
    let mut parts = VecDeque::new();
    let mut samples_before = 0u128;
    let mut items_before = 0u64;
    for chunk in series.into_chunks(max_samples) {
        samples_before += chunk.samples as u128;
        // Items up to and including this chunk, in proportion to samples.
        let items_through =
            u64::try_from(u128::from(items) * samples_before / total).unwrap_or(items);
        parts.push_back(Part {
            body: snappy(&chunk.body)?,
            items: items_through - items_before,
        });
        items_before = items_through;
    }
    // A batch whose points all became no samples still counts as delivered.
    if let Some(last) = parts.back_mut() {
        last.items += items - items_before;
    } else if items > 0 {
        parts.push_back(Part {
            body: snappy(&[])?,
            items,
        });
    }
    Ok(parts)
}

/// Maps a non-2xx answer: 429 and 5xx retryable (Prometheus answers 5xx for
/// a storage problem), any other status permanent.
fn classify(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &[u8],
    now: SystemTime,
) -> ExportError {
    let mut reason = format!("HTTP {status}");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() {
        reason.push_str(": ");
        match text.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((cut, _)) => {
                reason.push_str(&text[..cut]);
                reason.push('…');
            }
            None => reason.push_str(text),
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        ExportError::Retryable {
            reason: reason.into(),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        }
    } else {
        ExportError::Permanent {
            reason: reason.into(),
        }
    }
}

/// `error` and its sources joined as `a: b: c`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// Keys each resource by its series identity labels (`job`, `instance`,
/// promoted attributes) and sends it whole to that key's partition.
#[derive(Debug)]
pub struct ResourcePartitioner {
    promote: Vec<String>,
}

impl Partitioner for ResourcePartitioner {
    fn split(&self, envelope: Envelope, partitions: usize) -> Vec<(usize, Envelope)> {
        let Envelope { context, batch } = envelope;
        let partitions = partitions.max(1) as u64;
        partition_resources(batch, |resource| {
            let key = resource_key(
                |name| resource.attribute(name).map(|v| format!("{v:?}")),
                &self.promote,
            );
            usize::try_from(key % partitions).unwrap_or(0)
        })
        .into_iter()
        .map(|(index, batch)| (index, Envelope::with_context(context.clone(), batch)))
        .collect()
    }
}

#[cfg(test)]
mod tests;
