//! Elasticsearch exporter: spans and log records as JSON documents through
//! the `_bulk` API (Elasticsearch 7+, 8, 9 and OpenSearch speak the same).
//!
//! # Encode (once per batch)
//! Each span or log record becomes an action line and a source line
//! ([`document`] for the mapping, [`index`] for the index name), written
//! straight from the batch's protobuf bytes into one NDJSON buffer. The
//! documents are then cut into bodies of at most `bulk_max_documents`
//! documents and `bulk_max_bytes` bytes, each gzip-compressed.
//!
//! # Ids
//! Every document has a deterministic `_id`: the hex trace id and span id of
//! a span; the first 128 bits of SHA-256 over the resource and the record's
//! bytes for a log record. A retried document therefore lands on the same
//! id: with `op_type = "create"` the retry answers 409
//! (`version_conflict_engine_exception`), counted as delivered; with
//! `"index"` it overwrites itself. Either way nothing is stored twice.
//!
//! # Answers
//! | answer | result |
//! |---|---|
//! | 200, every item 2xx (or 409 on `create`) | delivered |
//! | 200 with `errors: true` | read item by item, in order: 429 and 5xx items are kept and retried alone ([`ExportError::Partial`], so with backoff and jitter); other 4xx items (mapping errors…) are dropped, counted in `otlp_gateway_elasticsearch_items_rejected_total` by `error.type`, with one rate-limited log line |
//! | 429, any 5xx, connect error, timeout | [`ExportError::Retryable`] for the body and those after it, honouring `Retry-After` |
//! | any other status (401, 403, 413…) | [`ExportError::Permanent`] (or the rest dropped when earlier bodies went through) |
//!
//! Retrying is done by `queue::retry`, the same for every exporter; the
//! sending queue's `num_consumers` is the number of bulk requests in flight.

pub mod bulk;
pub mod config;
pub mod document;
pub mod index;

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use metrics::counter;

use crate::exporter::otlp::http::{client as http_client, HttpClient};
use tokio::time::Instant;

use crate::model::view::AnyValueRef;
use crate::model::{Batch, Context, Signal};
use crate::telemetry::metrics::ELASTICSEARCH_ITEMS_REJECTED;

use self::bulk::{Body, BulkResponse, Documents, ItemOutcome, Limits};
use self::config::{BulkCompression, ElasticsearchExporterConfig, Mapping, OpType};
use self::document::{push_hex, DocumentWriter};
use self::index::{IndexInputs, IndexTemplate};
use super::otlp::{error_chain, tls, truncate, OtlpBuildError};
use super::{ExportError, ExportOutcome, Exporter};

/// `User-Agent` of every bulk request.
const USER_AGENT_VALUE: &str = concat!("otlp-gateway/", env!("CARGO_PKG_VERSION"));

/// Largest bulk answer read (a few hundred bytes per item).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// At most one log line about rejected documents per exporter this often.
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Longest `error.type` kept as a metric label.
const MAX_REASON_LABEL: usize = 64;

/// Why an [`ElasticsearchExporterConfig`] could not be turned into an exporter.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchBuildError {
    #[error("invalid endpoint \"{endpoint}\": {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("{key}: invalid index template \"{template}\": {reason}")]
    Template {
        key: &'static str,
        template: String,
        reason: String,
    },
    #[error("the elasticsearch exporter takes traces and logs, not {0}")]
    Signal(Signal),
    #[error("mapping \"ecs\" is for logs; spans use \"otel\"")]
    EcsSpans,
    #[error("{key}: environment variable {name} is not set")]
    MissingSecret { key: &'static str, name: String },
    #[error("{key}: the secret in {name} is not a valid header value")]
    BadSecret { key: &'static str, name: String },
    #[error(transparent)]
    Tls(#[from] OtlpBuildError),
}

/// Sends spans or log records to Elasticsearch's `_bulk` API.
#[derive(Debug)]
pub struct ElasticsearchExporter {
    id: String,
    signal: Signal,
    mapping: Mapping,
    op_type: OpType,
    template: IndexTemplate,
    default_tenant: String,
    limits: Limits,
    client: BulkClient,
    /// When rejected documents were last logged.
    last_rejection_log: Mutex<Option<Instant>>,
}

/// The documents of one batch and the bodies that carry those still to deliver.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    docs: Documents,
    /// Documents still to deliver (indexes into `docs`), in order.
    pending: Vec<u32>,
    /// Bodies over `pending`, in order.
    bodies: Vec<Body>,
}

impl BulkRequest {
    /// The bodies as sent (compressed when configured).
    pub fn bodies(&self) -> impl Iterator<Item = &Bytes> {
        self.bodies.iter().map(|b| &b.bytes)
    }

    /// Every document's NDJSON (action and source lines), pending or not.
    pub fn ndjson(&self) -> &[u8] {
        &self.docs.ndjson
    }
}

impl ElasticsearchExporter {
    /// Checks `config` and builds the client for `signal`'s pipeline. No connection is
    /// made until the first request. Secrets are read from the environment now.
    ///
    /// # Errors
    /// [`ElasticsearchBuildError`] for a bad endpoint or template, a metrics pipeline,
    /// a missing secret or an unreadable `tls.ca_file`.
    pub fn build(
        id: &str,
        signal: Signal,
        config: &ElasticsearchExporterConfig,
    ) -> Result<ElasticsearchExporter, ElasticsearchBuildError> {
        let (key, template_text) = match signal {
            Signal::Traces => ("traces_index", &config.traces_index),
            Signal::Logs => ("logs_index", &config.logs_index),
            Signal::Metrics => return Err(ElasticsearchBuildError::Signal(signal)),
        };
        if signal == Signal::Traces && config.mapping == Mapping::Ecs {
            return Err(ElasticsearchBuildError::EcsSpans);
        }
        let template = IndexTemplate::parse(template_text).map_err(|reason| {
            ElasticsearchBuildError::Template {
                key,
                template: template_text.clone(),
                reason,
            }
        })?;
        Ok(ElasticsearchExporter {
            id: id.to_owned(),
            signal,
            mapping: config.mapping,
            op_type: config.op_type,
            template,
            default_tenant: config.default_tenant.clone(),
            limits: Limits {
                max_documents: config.bulk_max_documents.max(1),
                max_bytes: config.bulk_max_bytes.as_usize().max(1),
                gzip: config.compression == BulkCompression::Gzip,
            },
            client: BulkClient::build(config)?,
            last_rejection_log: Mutex::new(None),
        })
    }

    /// The exporter's id from `config.toml`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes every item of `batch` as a document.
    fn documents(&self, batch: &Batch, tenant: &str) -> Documents {
        let items = usize::try_from(batch.items()).unwrap_or(0);
        let mut docs = Documents {
            ndjson: Vec::with_capacity(batch.encoded_len().saturating_mul(3)),
            ranges: Vec::with_capacity(items),
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut writer = DocumentWriter::new();
        let mut names = IndexNames::new(&self.template, tenant);
        let mut id = Vec::with_capacity(48);
        match self.signal {
            Signal::Traces => {
                for span in batch.spans() {
                    let fields = span.fields();
                    let time =
                        first_set(&[fields.start_time_unix_nano, fields.end_time_unix_nano, now]);
                    let resource = span.resource();
                    let index = names.get(resource.encoded(), time, |key| {
                        attribute_text(resource.attribute(key))
                    });
                    id.clear();
                    match (fields.trace_id, fields.span_id) {
                        (Some(trace), Some(span_id)) => {
                            push_hex(&mut id, &trace);
                            push_hex(&mut id, &span_id);
                        }
                        // Not in a validated batch; still an id that repeats on retry.
                        _ => push_hash(&mut id, &[resource.encoded(), span.encoded()]),
                    }
                    let start = docs.begin(self.op_type, index, &id);
                    writer.span(&mut docs.ndjson, &span, &fields, time);
                    docs.end(start);
                }
            }
            Signal::Logs => {
                for record in batch.log_records() {
                    let time = first_set(&[
                        record.time_unix_nano(),
                        record.observed_time_unix_nano(),
                        now,
                    ]);
                    let resource = record.resource();
                    let index = names.get(resource.encoded(), time, |key| {
                        attribute_text(resource.attribute(key))
                    });
                    id.clear();
                    push_hash(&mut id, &[resource.encoded(), record.encoded()]);
                    let start = docs.begin(self.op_type, index, &id);
                    match self.mapping {
                        Mapping::Otel => writer.log_otel(&mut docs.ndjson, &record, time),
                        Mapping::Ecs => writer.log_ecs(&mut docs.ndjson, &record, time),
                    }
                    docs.end(start);
                }
            }
            Signal::Metrics => {}
        }
        docs
    }

    /// Counts and (rate-limited) logs documents the cluster refused.
    fn rejected(&self, kind: &str, reason: &str) {
        counter!(ELASTICSEARCH_ITEMS_REJECTED, "exporter" => self.id.clone(), "signal" => self.signal.as_str(), "reason" => reason_label(kind))
            .increment(1);
        let now = Instant::now();
        let Ok(mut last) = self.last_rejection_log.lock() else {
            return;
        };
        if last.is_some_and(|at| now.duration_since(at) < REJECTION_LOG_INTERVAL) {
            return;
        }
        *last = Some(now);
        tracing::warn!(
            exporter = %self.id,
            error_type = kind,
            reason = %truncate(reason.to_owned()),
            "Elasticsearch refused a document; dropped (further refusals are counted, not logged, for 10s)."
        );
    }
}

/// The first non-zero of `times`.
fn first_set(times: &[u64]) -> u64 {
    times.iter().copied().find(|&t| t != 0).unwrap_or(0)
}

/// A resource attribute as index-name text.
fn attribute_text(value: Option<AnyValueRef<'_>>) -> Option<Cow<'_, str>> {
    match value? {
        AnyValueRef::Str(s) => Some(Cow::Borrowed(s)),
        AnyValueRef::Int(i) => Some(Cow::Owned(i.to_string())),
        AnyValueRef::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
        AnyValueRef::Double(d) => Some(Cow::Owned(d.to_string())),
        AnyValueRef::Bytes(_) | AnyValueRef::Other => None,
    }
}

/// Appends the hex of the first 128 bits of SHA-256 over `parts` (each length-prefixed).
fn push_hash(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part);
    }
    push_hex(out, &context.finish().as_ref()[..16]);
}

/// A bounded metric label from an Elasticsearch `error.type`.
fn reason_label(kind: &str) -> String {
    let label: String = kind
        .chars()
        .take(MAX_REASON_LABEL)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        "unknown".to_owned()
    } else {
        label
    }
}

/// Index names per document, rendered again only when the resource or the date period changes.
struct IndexNames<'t> {
    template: &'t IndexTemplate,
    tenant: &'t str,
    name: String,
    /// (resource bytes address and length, date period) of `name`.
    key: Option<(usize, usize, u64)>,
}

impl<'t> IndexNames<'t> {
    fn new(template: &'t IndexTemplate, tenant: &'t str) -> Self {
        IndexNames {
            template,
            tenant,
            name: String::new(),
            key: None,
        }
    }

    fn get<'v, F>(&mut self, resource: &[u8], time: u64, attribute: F) -> &str
    where
        F: Fn(&str) -> Option<Cow<'v, str>>,
    {
        let (address, len) = if self.template.reads_attributes() {
            (resource.as_ptr() as usize, resource.len())
        } else {
            (0, 0)
        };
        let key = (address, len, self.template.period_of(time));
        if self.key != Some(key) {
            let inputs = IndexInputs {
                tenant: self.tenant,
                time_unix_nano: time,
                attribute,
            };
            self.template.render(&mut self.name, &inputs);
            self.key = Some(key);
        }
        &self.name
    }
}

impl Exporter for ElasticsearchExporter {
    type Request = BulkRequest;

    fn encode(&self, batch: &Batch, context: &Context) -> Result<BulkRequest, ExportError> {
        let tenant = context.tenant().unwrap_or(&self.default_tenant);
        let docs = self.documents(batch, tenant);
        let pending: Vec<u32> = (0..u32::try_from(docs.len()).unwrap_or(u32::MAX)).collect();
        let bodies =
            bulk::bodies(&docs, &pending, self.limits).map_err(|e| ExportError::Permanent {
                reason: format!("compressing the bulk body: {e}").into(),
            })?;
        Ok(BulkRequest {
            docs,
            pending,
            bodies,
        })
    }

    async fn send(&self, request: &mut BulkRequest) -> Result<ExportOutcome, ExportError> {
        if request.pending.is_empty() {
            return Ok(ExportOutcome::default());
        }
        let mut delivered = 0u64;
        let mut rejected = 0u64;
        let mut retry: Vec<u32> = Vec::new();
        let mut retry_after = None;
        let mut reason = String::new();
        let mut first_rejection = String::new();
        for body in &request.bodies {
            let docs = &request.pending[body.first..body.first + body.count];
            let answer = match self.client.post(body.bytes.clone()).await {
                Ok(answer) => answer,
                Err(ExportError::Retryable {
                    reason: why,
                    retry_after: after,
                }) => {
                    // This body and those after it: the cluster is busy or unreachable.
                    retry.extend_from_slice(&request.pending[body.first..]);
                    retry_after = after;
                    reason = why.into_owned();
                    break;
                }
                Err(error) => {
                    if delivered == 0 && rejected == 0 && retry.is_empty() {
                        return Err(error);
                    }
                    // Earlier bodies went through; this refusal (401, 413…) ends the rest.
                    let rest = (request.pending.len() - body.first) as u64;
                    rejected += rest;
                    if first_rejection.is_empty() {
                        first_rejection = error.to_string();
                    }
                    break;
                }
            };
            let response = match serde_json::from_slice::<BulkResponse>(&answer) {
                Ok(response) if response.items.len() == docs.len() => response,
                Ok(response) => {
                    retry.extend_from_slice(docs);
                    reason = format!(
                        "the bulk answer has {} items for {} documents",
                        response.items.len(),
                        docs.len()
                    );
                    continue;
                }
                Err(error) => {
                    retry.extend_from_slice(docs);
                    reason = format!("unreadable bulk answer: {error}");
                    continue;
                }
            };
            for (item, &doc) in response.items.iter().zip(docs) {
                match bulk::item_outcome(item) {
                    ItemOutcome::Delivered => delivered += 1,
                    ItemOutcome::Retry => {
                        retry.push(doc);
                        reason = format!("document refused with status {}", item.item().status);
                    }
                    ItemOutcome::Rejected { kind, reason: why } => {
                        rejected += 1;
                        if first_rejection.is_empty() {
                            first_rejection = truncate(format!("{kind}: {why}"));
                        }
                        self.rejected(&kind, &why);
                    }
                }
            }
        }
        if retry.is_empty() {
            return Ok(ExportOutcome {
                rejected_items: rejected,
                message: first_rejection,
            });
        }
        if retry.len() == request.pending.len() {
            // Nothing went through: the same bodies again.
            return Err(ExportError::Retryable {
                reason: reason.into(),
                retry_after,
            });
        }
        let bodies = bulk::bodies(&request.docs, &retry, self.limits).map_err(|e| {
            ExportError::Permanent {
                reason: format!("compressing the bulk body: {e}").into(),
            }
        })?;
        request.pending = retry;
        request.bodies = bodies;
        Err(ExportError::Partial {
            delivered,
            rejected,
            reason: reason.into(),
            retry_after,
        })
    }

    fn items(&self, request: &BulkRequest) -> u64 {
        request.pending.len() as u64
    }
}

/// One pooled HTTP client posting bodies to `<endpoint>/_bulk`.
#[derive(Debug)]
struct BulkClient {
    client: HttpClient,
    uri: Uri,
    /// Every header of a request: content type and encoding, user agent, authorization.
    headers: HeaderMap,
    timeout: Duration,
}

impl BulkClient {
    fn build(config: &ElasticsearchExporterConfig) -> Result<BulkClient, ElasticsearchBuildError> {
        let endpoint = config.endpoint.trim();
        let invalid = |reason: &str| ElasticsearchBuildError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.to_owned(),
        };
        let base: Uri = endpoint.parse().map_err(|_| invalid("not a URL"))?;
        let tls_needed = match base.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("the scheme must be http:// or https://")),
        };
        if base.host().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if base.query().is_some() {
            return Err(invalid("a query string is not allowed"));
        }
        let uri: Uri = format!("{}/_bulk", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|_| invalid("not a URL"))?;

        let timeout = config.timeout.get();
        let verifier = if tls_needed {
            Some(tls::verifier(&config.tls)?)
        } else {
            None
        };
        let client = http_client(verifier, timeout)?;

        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if config.compression == BulkCompression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if let Some(authorization) = authorization(config)? {
            headers.insert(AUTHORIZATION, authorization);
        }
        Ok(BulkClient {
            client,
            uri,
            headers,
            timeout,
        })
    }

    /// One bulk request; the answer's body on HTTP 2xx.
    async fn post(&self, body: Bytes) -> Result<Bytes, ExportError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| ExportError::Retryable {
                        reason: format!("bulk request failed: {}", error_chain(&e)).into(),
                        retry_after: None,
                    })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes());
            Ok::<_, ExportError>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ExportError::Retryable {
                    reason: format!("no bulk answer within {:?}", self.timeout).into(),
                    retry_after: None,
                })
            }
        };
        match body {
            Ok(body) if parts.status.is_success() => Ok(body),
            // The documents may or may not be in: the ids make a retry safe.
            Err(error) if parts.status.is_success() => Err(ExportError::Retryable {
                reason: format!("reading the bulk answer: {}", error_chain(&*error)).into(),
                retry_after: None,
            }),
            body => Err(classify(
                parts.status,
                parts.headers.get(RETRY_AFTER),
                &body.unwrap_or_default(),
            )),
        }
    }
}

/// A refused bulk request: 429 and 5xx are worth retrying, the rest is not.
fn classify(status: StatusCode, retry_after: Option<&HeaderValue>, body: &[u8]) -> ExportError {
    let mut reason = format!("HTTP {status}");
    if let Some(summary) = bulk::error_summary(body) {
        reason.push_str(": ");
        reason.push_str(&truncate(summary));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        ExportError::Retryable {
            reason: reason.into(),
            retry_after: retry_after
                .and_then(|v| super::otlp::http::parse_retry_after(v, SystemTime::now())),
        }
    } else {
        ExportError::Permanent {
            reason: reason.into(),
        }
    }
}

/// The `Authorization` header: `Basic` from `user` and `password_env`, or `ApiKey` from
/// `api_key_env`, read from the environment now.
fn authorization(
    config: &ElasticsearchExporterConfig,
) -> Result<Option<HeaderValue>, ElasticsearchBuildError> {
    let secret = |key: &'static str, name: &str| {
        std::env::var(name).map_err(|_| ElasticsearchBuildError::MissingSecret {
            key,
            name: name.to_owned(),
        })
    };
    let text = match (&config.user, &config.password_env, &config.api_key_env) {
        (Some(user), Some(password_env), _) => {
            let password = secret("password_env", password_env)?;
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        (_, _, Some(api_key_env)) => {
            format!("ApiKey {}", secret("api_key_env", api_key_env)?.trim())
        }
        _ => return Ok(None),
    };
    let key = if config.api_key_env.is_some() && config.user.is_none() {
        "api_key_env"
    } else {
        "password_env"
    };
    let mut value =
        HeaderValue::from_str(&text).map_err(|_| ElasticsearchBuildError::BadSecret {
            key,
            name: config
                .api_key_env
                .clone()
                .or_else(|| config.password_env.clone())
                .unwrap_or_default(),
        })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn config(text: &str) -> ElasticsearchExporterConfig {
        toml::from_str(&format!("endpoint = \"http://127.0.0.1:9\"\n{text}")).unwrap()
    }

    fn exporter(signal: Signal, text: &str) -> ElasticsearchExporter {
        ElasticsearchExporter::build("elasticsearch/test", signal, &config(text)).unwrap()
    }

    fn lines(request: &BulkRequest) -> Vec<serde_json::Value> {
        request
            .ndjson()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn spans_get_their_ids_and_index_per_tenant_and_day() {
        let exporter = exporter(
            Signal::Traces,
            "traces_index = \"traces-{tenant}-{yyyy.MM.dd}\"\ncompression = \"none\"",
        );
        let batch = testkit::batch(Signal::Traces, 3, 20);
        let context = Context::default().with_tenant("Acme");
        let request = Exporter::encode(&exporter, &batch, &context).unwrap();
        assert_eq!(exporter.items(&request), 20);
        let lines = lines(&request);
        assert_eq!(lines.len(), 40);
        for (span, pair) in batch.spans().zip(lines.chunks(2)) {
            let fields = span.fields();
            let mut expected_id = Vec::new();
            push_hex(&mut expected_id, &fields.trace_id.unwrap());
            push_hex(&mut expected_id, &fields.span_id.unwrap());
            let action = &pair[0]["create"];
            assert_eq!(action["_id"], String::from_utf8(expected_id).unwrap());
            let date = index::UtcTime::from_unix_nanos(fields.start_time_unix_nano);
            assert_eq!(
                action["_index"],
                format!(
                    "traces-acme-{:04}.{:02}.{:02}",
                    date.year, date.month, date.day
                )
            );
            assert_eq!(pair[1]["name"], fields.name);
        }
        // Without a tenant: the default one.
        let request = Exporter::encode(&exporter, &batch, &Context::default()).unwrap();
        assert!(lines_of(&request)[0]["create"]["_index"]
            .as_str()
            .unwrap()
            .starts_with("traces-default-"));
    }

    fn lines_of(request: &BulkRequest) -> Vec<serde_json::Value> {
        lines(request)
    }

    #[test]
    fn log_ids_repeat_for_the_same_record_only() {
        let exporter = exporter(
            Signal::Logs,
            "logs_index = \"logs-{service.name}\"\nop_type = \"index\"",
        );
        let batch = testkit::batch(Signal::Logs, 5, 30);
        let first = lines(&Exporter::encode(&exporter, &batch, &Context::default()).unwrap());
        let again = lines(&Exporter::encode(&exporter, &batch, &Context::default()).unwrap());
        assert_eq!(first, again);
        let ids: std::collections::HashSet<_> = first
            .iter()
            .step_by(2)
            .map(|a| a["index"]["_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 30, "one id per record");
        for (record, pair) in batch.log_records().zip(first.chunks(2)) {
            let service = record
                .resource()
                .attribute("service.name")
                .unwrap()
                .as_str()
                .unwrap();
            let mut expected = service.to_lowercase();
            index::sanitize(&mut expected);
            assert_eq!(pair[0]["index"]["_index"], format!("logs-{expected}"));
        }
    }

    #[test]
    fn metrics_and_ecs_spans_are_refused() {
        let config = config("");
        assert!(matches!(
            ElasticsearchExporter::build("e", Signal::Metrics, &config),
            Err(ElasticsearchBuildError::Signal(Signal::Metrics))
        ));
        let ecs = self::config("mapping = \"ecs\"");
        assert!(ElasticsearchExporter::build("e", Signal::Traces, &ecs).is_err());
        assert!(ElasticsearchExporter::build("e", Signal::Logs, &ecs).is_ok());
    }

    #[test]
    fn secrets_come_from_the_environment() {
        std::env::set_var("OTLP_GATEWAY_TEST_ES_PASSWORD", "s3cret");
        std::env::set_var("OTLP_GATEWAY_TEST_ES_API_KEY", "a2V5OmlkCg==");
        let basic = authorization(&config(
            "user = \"elastic\"\npassword_env = \"OTLP_GATEWAY_TEST_ES_PASSWORD\"",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(basic, "Basic ZWxhc3RpYzpzM2NyZXQ=");
        assert!(basic.is_sensitive());
        let api = authorization(&config("api_key_env = \"OTLP_GATEWAY_TEST_ES_API_KEY\""))
            .unwrap()
            .unwrap();
        assert_eq!(api, "ApiKey a2V5OmlkCg==");
        assert!(matches!(
            authorization(&config(
                "api_key_env = \"OTLP_GATEWAY_TEST_ES_UNSET_VARIABLE\""
            )),
            Err(ElasticsearchBuildError::MissingSecret { .. })
        ));
        assert!(authorization(&config("")).unwrap().is_none());
    }

    #[test]
    fn whole_request_answers_are_classified() {
        let retry_after = HeaderValue::from_static("7");
        for status in [429, 500, 502, 503, 504] {
            let error = classify(
                StatusCode::from_u16(status).unwrap(),
                Some(&retry_after),
                b"",
            );
            assert!(
                matches!(error, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
                "{status}: {error:?}"
            );
        }
        for status in [400, 401, 403, 404, 413] {
            let error = classify(StatusCode::from_u16(status).unwrap(), None, b"");
            assert!(matches!(error, ExportError::Permanent { .. }), "{status}");
        }
        let body = br#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#;
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, None, body).to_string(),
            "permanent: HTTP 401 Unauthorized: security_exception: missing authentication credentials"
        );
    }

    #[test]
    fn reason_labels_are_bounded() {
        assert_eq!(
            reason_label("mapper_parsing_exception"),
            "mapper_parsing_exception"
        );
        assert_eq!(reason_label("Weird Type!"), "weird_type_");
        assert_eq!(reason_label(""), "unknown");
        assert_eq!(reason_label(&"x".repeat(500)).len(), MAX_REASON_LABEL);
    }

    #[test]
    fn large_batches_become_several_bodies() {
        let exporter = exporter(Signal::Traces, "bulk_max_documents = 7");
        let batch = testkit::batch(Signal::Traces, 9, 50);
        let request = Exporter::encode(&exporter, &batch, &Context::default()).unwrap();
        assert_eq!(request.bodies().count(), 8);
        let exporter = exporter_with_bytes(4096);
        let request = Exporter::encode(&exporter, &batch, &Context::default()).unwrap();
        assert!(request.bodies().count() > 1);
    }

    fn exporter_with_bytes(bytes: u64) -> ElasticsearchExporter {
        exporter(
            Signal::Traces,
            &format!("bulk_max_bytes = {bytes}\ncompression = \"none\""),
        )
    }
}
