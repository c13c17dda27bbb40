//! What both transports share once a request body is decoded to protobuf:
//! validate it with [`Batch::decode`], hand it to the pipeline, count it, and
//! build the `Export*ServiceResponse`.

use std::time::Duration;

use bytes::Bytes;
use metrics::{counter, histogram};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::time::Instant;

use super::error::RequestError;
use std::sync::Arc;

use crate::model::{Batch, Context, Envelope, Signal};
use crate::pipeline::{Ingest, Refused};
use crate::telemetry::metrics::{
    reason, RECEIVER_ITEMS_ACCEPTED, RECEIVER_ITEMS_RECEIVED, RECEIVER_ITEMS_REFUSED,
    RECEIVER_REQUESTS, RECEIVER_REQUESTS_REFUSED, RECEIVER_REQUEST_BYTES,
    RECEIVER_REQUEST_DURATION,
};
use crate::tenancy::stats::{self, ItemOutcome};
use crate::tenancy::{Caller, Tenant, TenantError, Tenants};

/// `transport` label of the gRPC receiver.
pub const GRPC: &str = "grpc";
/// `transport` label of the HTTP receiver.
pub const HTTP: &str = "http";

/// The answer to a well-formed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledged; `rejected > 0` is answered with `partial_success`.
    Accepted { rejected: u64, message: String },
    /// Not taken; the client should retry after `retry_after`.
    Refused {
        retry_after: Duration,
        message: String,
    },
}

impl Verdict {
    fn accepted() -> Verdict {
        Verdict::Accepted {
            rejected: 0,
            message: String::new(),
        }
    }
}

/// One tenant's part of a request (no tenant without `[tenancy]`).
type TenantPart = (Option<Arc<Tenant>>, Envelope);

/// The pipeline side of a receiver, shared by all its connections.
#[derive(Debug, Clone)]
pub struct Intake {
    ingest: Ingest,
    /// Sent with `Refused::ShuttingDown`, which carries no delay of its own.
    retry_after: Duration,
    transport: &'static str,
    /// Tenant identity, quotas and routes, when `[tenancy]` is configured.
    tenants: Option<Arc<Tenants>>,
}

impl Intake {
    pub fn new(
        ingest: Ingest,
        retry_after: Duration,
        transport: &'static str,
        tenants: Option<Arc<Tenants>>,
    ) -> Self {
        Intake {
            ingest,
            retry_after,
            transport,
            tenants,
        }
    }

    /// Who sent the request, from its head (credential, certificate subject,
    /// tenant header); `None` without `[tenancy]`. Runs before the body is read.
    ///
    /// # Errors
    /// [`RequestError::Tenant`] when the caller is not authenticated or not allowed.
    pub fn identify(
        &self,
        headers: &http::HeaderMap,
        peer_subject: Option<&str>,
    ) -> Result<Option<Caller>, RequestError> {
        match &self.tenants {
            Some(tenants) => Ok(Some(tenants.identify(headers, peer_subject)?)),
            None => Ok(None),
        }
    }

    /// The receivers' in-flight byte budget (see `max_inflight_bytes`).
    pub fn inflight(&self) -> &crate::budget::ItemBudget {
        self.ingest.inflight()
    }

    /// Whether `signal` has a pipeline; requests for one without are refused for good.
    pub fn has_pipeline(&self, signal: Signal) -> bool {
        self.ingest.has_pipeline(signal)
    }

    /// The delay to ask of a client whose request failed with `error`, when
    /// that failure is worth retrying (the in-flight budget was spent, the
    /// tenant is over its quota).
    pub fn retry_hint(&self, error: &RequestError) -> Option<Duration> {
        match error {
            RequestError::MemoryLimit { .. } => Some(self.retry_after),
            RequestError::Tenant(TenantError::OverQuota { retry_after, .. }) => Some(*retry_after),
            _ => None,
        }
    }

    /// Validates the encoded request `body` and submits its items.
    ///
    /// # Errors
    /// [`RequestError::Decode`] when `body` is not a well-formed request.
    pub async fn export(
        &self,
        signal: Signal,
        body: Bytes,
        caller: Option<&Caller>,
    ) -> Result<Verdict, RequestError> {
        if body.is_empty() {
            return Ok(Verdict::accepted());
        }
        let decoded = Batch::decode(signal, body)?;
        let (batch, invalid) = (decoded.batch, decoded.rejected);
        let items = batch.items();
        let labels = [("signal", signal.as_str()), ("transport", self.transport)];
        counter!(RECEIVER_ITEMS_RECEIVED, &labels).increment(items + invalid);
        if invalid > 0 {
            self.refused_items(signal, reason::INVALID_ITEM, invalid);
        }
        let mut verdict = Verdict::Accepted {
            rejected: invalid,
            message: if invalid > 0 {
                invalid_items_message(signal, invalid)
            } else {
                String::new()
            },
        };
        if items == 0 {
            return Ok(verdict);
        }
        if !self.ingest.has_pipeline(signal) {
            self.refused_items(signal, reason::NO_PIPELINE, items);
            return Err(RequestError::NoPipeline { signal });
        }
        let parts = match (&self.tenants, caller) {
            (Some(tenants), Some(caller)) => {
                match self.tenant_parts(tenants, caller, signal, batch) {
                    Ok(parts) => parts,
                    Err(error) => {
                        self.refused_items(
                            signal,
                            RequestError::from(error.clone()).reason(),
                            items,
                        );
                        return Err(error.into());
                    }
                }
            }
            _ => vec![(None, Envelope::new(batch))],
        };
        for (tenant, envelope) in parts {
            let part_items = envelope.items();
            let bytes = envelope.batch.encoded_len() as u64;
            match self.ingest.submit_envelope(envelope).await {
                Ok(accepted) => {
                    let kept = part_items.saturating_sub(accepted.rejected_items);
                    counter!(RECEIVER_ITEMS_ACCEPTED, &labels).increment(kept);
                    if let Some(tenant) = &tenant {
                        stats::record(tenant, signal, ItemOutcome::Accepted, kept, bytes);
                    }
                    if accepted.rejected_items > 0 {
                        self.refused_items(signal, reason::PERMANENT, accepted.rejected_items);
                        if let Verdict::Accepted { rejected, message } = &mut verdict {
                            *rejected += accepted.rejected_items;
                            if !message.is_empty() && !accepted.message.is_empty() {
                                message.push_str("; ");
                            }
                            message.push_str(&accepted.message);
                        }
                    }
                }
                Err(refused) => {
                    // Parts of other tenants submitted before this one stay
                    // accepted; the client's retry sends them again (at least once).
                    let (why, retry_after) = match &refused {
                        Refused::Busy { retry_after, .. } => (reason::BACKPRESSURE, *retry_after),
                        Refused::ShuttingDown => (reason::SHUTTING_DOWN, self.retry_after),
                    };
                    self.refused_items(signal, why, part_items);
                    if let Some(tenant) = &tenant {
                        stats::record(tenant, signal, ItemOutcome::Refused, part_items, bytes);
                    }
                    verdict = Verdict::Refused {
                        retry_after,
                        message: refused.to_string(),
                    };
                    break;
                }
            }
        }
        Ok(verdict)
    }

    /// `batch` as one envelope per tenant, each within its tenant's quota.
    fn tenant_parts(
        &self,
        tenants: &Tenants,
        caller: &Caller,
        signal: Signal,
        batch: Batch,
    ) -> Result<Vec<TenantPart>, TenantError> {
        let parts = tenants.assign(caller, batch)?;
        if let Err(error) = tenants.take_quota(signal, &parts, Instant::now()) {
            if let TenantError::OverQuota { tenant: over, .. } = &error {
                for (tenant, part) in parts.iter().filter(|(t, _)| t.id == *over) {
                    let bytes = part.encoded_len() as u64;
                    stats::record(tenant, signal, ItemOutcome::OverQuota, part.items(), bytes);
                }
            }
            return Err(error);
        }
        Ok(parts
            .into_iter()
            .map(|(tenant, batch)| {
                let mut context = Context::default().with_tenant(tenant.id.clone());
                if let Some(route) = &tenant.route {
                    context = context.with_route(route.clone());
                }
                (Some(tenant), Envelope::with_context(context, batch))
            })
            .collect())
    }

    fn refused_items(&self, signal: Signal, why: &'static str, n: u64) {
        counter!(
            RECEIVER_ITEMS_REFUSED,
            "signal" => signal.as_str(),
            "transport" => self.transport,
            "reason" => why,
        )
        .increment(n);
    }
}

fn invalid_items_message(signal: Signal, n: u64) -> String {
    match signal {
        Signal::Traces => {
            format!("{n} spans rejected: trace_id must be 16 and span_id 8 bytes, not all zero")
        }
        Signal::Metrics | Signal::Logs => format!("{n} {} rejected as invalid", signal.item_noun()),
    }
}

/// Per-request metrics: outcome, refusals before decoding, duration, size.
#[derive(Debug)]
pub struct RequestMetrics {
    signal: Signal,
    transport: &'static str,
    start: Instant,
}

impl RequestMetrics {
    pub fn start(signal: Signal, transport: &'static str) -> Self {
        RequestMetrics {
            signal,
            transport,
            start: Instant::now(),
        }
    }

    /// The body size as received, before decompression.
    pub fn body_read(&self, bytes: usize) {
        histogram!(RECEIVER_REQUEST_BYTES, "signal" => self.signal.as_str(), "transport" => self.transport)
            .record(bytes as f64);
    }

    /// Records the outcome and duration of the request.
    pub fn finish(self, result: &Result<Verdict, RequestError>) {
        self.finish_with(match result {
            Ok(Verdict::Accepted { .. }) => Outcome::Accepted,
            Ok(Verdict::Refused { .. }) => Outcome::RefusedItems,
            Err(error) => Outcome::Refused(error.reason()),
        });
    }

    /// A request refused for `why` before its body was looked at (e.g. a wrong content type).
    pub fn refuse(self, why: &'static str) {
        self.finish_with(Outcome::Refused(why));
    }

    fn finish_with(self, outcome: Outcome) {
        let (signal, transport) = (self.signal.as_str(), self.transport);
        let label = match outcome {
            Outcome::Accepted => "accepted",
            Outcome::RefusedItems | Outcome::Refused(_) => "refused",
        };
        counter!(RECEIVER_REQUESTS, "signal" => signal, "transport" => transport, "outcome" => label)
            .increment(1);
        if let Outcome::Refused(why) = outcome {
            counter!(RECEIVER_REQUESTS_REFUSED, "signal" => signal, "transport" => transport, "reason" => why)
                .increment(1);
        }
        histogram!(RECEIVER_REQUEST_DURATION, "signal" => signal, "transport" => transport)
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// How a request ended, for the metrics.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Accepted,
    /// Refused after its items were counted (in `RECEIVER_ITEMS_REFUSED`).
    RefusedItems,
    /// Refused before its items were known, for this reason.
    Refused(&'static str),
}

/// The `Export*ServiceResponse` of `signal`, with `partial_success` when
/// items were rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportResponse {
    Traces(ExportTraceServiceResponse),
    Metrics(ExportMetricsServiceResponse),
    Logs(ExportLogsServiceResponse),
}

impl ExportResponse {
    pub fn new(signal: Signal, rejected: u64, message: &str) -> Self {
        let rejected_count = i64::try_from(rejected).unwrap_or(i64::MAX);
        let partial = rejected > 0 || !message.is_empty();
        let error_message = message.to_owned();
        match signal {
            Signal::Traces => ExportResponse::Traces(ExportTraceServiceResponse {
                partial_success: partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected_count,
                    error_message,
                }),
            }),
            Signal::Metrics => ExportResponse::Metrics(ExportMetricsServiceResponse {
                partial_success: partial.then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected_count,
                    error_message,
                }),
            }),
            Signal::Logs => ExportResponse::Logs(ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected_count,
                    error_message,
                }),
            }),
        }
    }

    pub fn to_protobuf(&self) -> Vec<u8> {
        match self {
            ExportResponse::Traces(r) => r.encode_to_vec(),
            ExportResponse::Metrics(r) => r.encode_to_vec(),
            ExportResponse::Logs(r) => r.encode_to_vec(),
        }
    }

    /// The OTLP/JSON form; `{}` for a full success. The rejected count is an
    /// int64, written as a string as the proto3 JSON mapping requires.
    pub fn to_json(&self) -> Vec<u8> {
        let (key, rejected, message) = match self {
            ExportResponse::Traces(r) => match &r.partial_success {
                Some(p) => ("rejectedSpans", p.rejected_spans, &p.error_message),
                None => return b"{}".to_vec(),
            },
            ExportResponse::Metrics(r) => match &r.partial_success {
                Some(p) => (
                    "rejectedDataPoints",
                    p.rejected_data_points,
                    &p.error_message,
                ),
                None => return b"{}".to_vec(),
            },
            ExportResponse::Logs(r) => match &r.partial_success {
                Some(p) => (
                    "rejectedLogRecords",
                    p.rejected_log_records,
                    &p.error_message,
                ),
                None => return b"{}".to_vec(),
            },
        };
        let mut partial = serde_json::Map::new();
        partial.insert(key.to_owned(), rejected.to_string().into());
        partial.insert("errorMessage".to_owned(), message.clone().into());
        serde_json::json!({ "partialSuccess": partial })
            .to_string()
            .into_bytes()
    }
}
