//! Jaeger exporter (`jaeger`): traces to Jaeger collectors older than 1.35
//! through their `api_v2` gRPC API, `jaeger.api_v2.CollectorService/PostSpans`.
//! Jaeger v2 and 1.35+ take OTLP: the `otlp` exporter is the way to them.
//!
//! Each batch is decoded and translated ([`translate`]) into one Jaeger
//! `Batch` per resource, each sent as one `PostSpans` call, in order; a retry
//! resends from the first call not delivered. The calls go over the `otlp`
//! exporter's gRPC transport (one shared tonic `Channel`, gzip 1, `timeout`
//! as the call's deadline, the status parsed without trusting the backend)
//! and are classified the same way:
//!
//! | answer | result |
//! |---|---|
//! | `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, `RESOURCE_EXHAUSTED` with `RetryInfo`, connect errors, `timeout` passed | retried (`queue::retry`) |
//! | `INVALID_ARGUMENT` and any other code | that call's spans dropped for good (counted); the next call goes on |

pub mod config;
pub mod translate;

/// The `jaeger.api_v2` protobuf package (prost types compiled by `build.rs`
/// from `proto/jaeger/`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/jaeger.api_v2.rs"));
}

use std::collections::VecDeque;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::exporter::otlp::grpc::GrpcTransport;
use crate::exporter::otlp::{
    parse_endpoint, parse_headers, tenant_templates, tls, ExportResponse, OtlpBuildError,
    TENANT_PLACEHOLDER,
};
use crate::exporter::{ExportError, ExportOutcome, Exporter};
use crate::model::{Batch, Context, Signal};

use self::config::JaegerExporterConfig;
use self::proto::{PostSpansRequest, PostSpansResponse};

/// The gRPC method every batch is sent to.
pub const POST_SPANS_PATH: &str = "/jaeger.api_v2.CollectorService/PostSpans";

/// Why a [`JaegerExporterConfig`] could not be turned into an exporter.
#[derive(Debug, thiserror::Error)]
pub enum JaegerBuildError {
    #[error("the jaeger exporter takes traces only, not {0}")]
    Signal(Signal),
    #[error(transparent)]
    Client(#[from] OtlpBuildError),
}

/// Sends trace batches to a Jaeger collector's `api_v2` gRPC API.
#[derive(Debug)]
pub struct JaegerExporter {
    id: String,
    transport: GrpcTransport,
    /// `headers` whose value names `{tenant}`, filled in per batch.
    tenant_templates: Vec<(HeaderName, String)>,
}

/// One batch as `PostSpans` calls (one per resource), sent in order.
#[derive(Debug)]
pub struct JaegerRequest {
    /// Calls not delivered yet, first to send at the front.
    calls: VecDeque<Call>,
    /// The `{tenant}` headers with their values, when the batch has a tenant.
    tenant: Vec<(HeaderName, HeaderValue)>,
}

/// One framed `PostSpansRequest` and its span count.
#[derive(Debug)]
struct Call {
    message: Bytes,
    spans: u64,
}

impl ExportResponse for PostSpansResponse {
    fn outcome(self) -> ExportOutcome {
        ExportOutcome::default()
    }
}

impl JaegerExporter {
    /// Builds the client; no connection is made until the first call.
    ///
    /// # Errors
    /// [`JaegerBuildError`] for a pipeline other than traces, a bad endpoint
    /// or header, an unreadable `tls.ca_file`, or outside a Tokio runtime.
    pub fn build(
        id: &str,
        signal: Signal,
        config: &JaegerExporterConfig,
    ) -> Result<Self, JaegerBuildError> {
        if signal != Signal::Traces {
            return Err(JaegerBuildError::Signal(signal));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(OtlpBuildError::NoRuntime.into());
        }
        let otlp = config.otlp_config();
        let endpoint = parse_endpoint(&otlp.endpoint)?;
        let verifier = match endpoint.scheme_str() {
            Some("https") => Some(tls::verifier(&otlp.tls)?),
            _ => None,
        };
        let headers = parse_headers(&otlp)?;
        Ok(JaegerExporter {
            id: id.to_owned(),
            transport: GrpcTransport::build(endpoint, &otlp, headers, verifier)?,
            tenant_templates: tenant_templates(&otlp)?,
        })
    }

    /// The exporter's id from `config.toml`.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn tenant_headers(
        &self,
        context: &Context,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ExportError> {
        let Some(tenant) = context.tenant() else {
            return Ok(Vec::new());
        };
        self.tenant_templates
            .iter()
            .map(|(name, template)| {
                let mut value = HeaderValue::from_str(
                    &template.replace(TENANT_PLACEHOLDER, tenant),
                )
                .map_err(|_| ExportError::Permanent {
                    reason: "the tenant id is not a valid header value".into(),
                })?;
                value.set_sensitive(true);
                Ok((name.clone(), value))
            })
            .collect()
    }
}

/// Decodes a traces batch and translates it into `PostSpansRequest` messages
/// (not yet framed), each with its span count.
///
/// # Errors
/// [`ExportError::Permanent`] when the batch is not traces or does not decode.
pub fn post_spans_requests(batch: &Batch) -> Result<Vec<(PostSpansRequest, u64)>, ExportError> {
    if batch.signal() != Signal::Traces {
        return Err(ExportError::Permanent {
            reason: format!(
                "the jaeger exporter takes traces only, not {}",
                batch.signal()
            )
            .into(),
        });
    }
    let request = ExportTraceServiceRequest::decode(batch.to_bytes()).map_err(|e| {
        ExportError::Permanent {
            reason: format!("decoding the batch: {e}").into(),
        }
    })?;
    Ok(translate::batches(request)
        .into_iter()
        .map(|(batch, spans)| (PostSpansRequest { batch: Some(batch) }, spans))
        .collect())
}

impl Exporter for JaegerExporter {
    type Request = JaegerRequest;

    fn encode(&self, batch: &Batch, context: &Context) -> Result<JaegerRequest, ExportError> {
        let mut calls = VecDeque::new();
        for (request, spans) in post_spans_requests(batch)? {
            // The transport frames (and compresses) a `Batch`'s bytes; here
            // they are one `PostSpansRequest`.
            let message =
                Batch::from_validated(Signal::Traces, request.encode_to_vec().into(), spans);
            let message = self
                .transport
                .encode(&message)
                .map_err(|e| ExportError::Permanent {
                    reason: format!("compressing the request: {e}").into(),
                })?;
            calls.push_back(Call { message, spans });
        }
        Ok(JaegerRequest {
            calls,
            tenant: self.tenant_headers(context)?,
        })
    }

    async fn send(&self, request: &mut JaegerRequest) -> Result<ExportOutcome, ExportError> {
        let mut delivered = 0u64;
        let mut rejected = 0u64;
        let mut last_rejection = None;
        while let Some(call) = request.calls.front() {
            let result = self
                .transport
                .call::<PostSpansResponse>(POST_SPANS_PATH, call.message.clone(), &request.tenant)
                .await;
            match result {
                Ok(_) => delivered += call.spans,
                Err(ExportError::Permanent { reason }) => {
                    // Retrying these bytes gives the same answer; the next call may pass.
                    tracing::debug!(exporter = %self.id, %reason, spans = call.spans, "Jaeger refused a batch.");
                    rejected += call.spans;
                    last_rejection = Some(reason);
                }
                Err(error) => {
                    tracing::debug!(exporter = %self.id, %error, "Export attempt failed.");
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
            request.calls.pop_front();
        }
        match last_rejection {
            Some(reason) if delivered == 0 => Err(ExportError::Permanent { reason }),
            Some(reason) => Ok(ExportOutcome {
                rejected_items: rejected,
                message: reason.into_owned(),
            }),
            None => Ok(ExportOutcome::default()),
        }
    }

    fn items(&self, request: &JaegerRequest) -> u64 {
        request.calls.iter().map(|c| c.spans).sum()
    }
}
