//! Exporters: turn a batch into a backend's request and send it. No queue, no
//! retry: those wrap every exporter the same way in `queue/`.
//!
//! # Contract
//! An [`Exporter`] is two steps, as Vector's sinks are:
//!
//! - [`Exporter::encode`]: translation and compression, done **once** per
//!   batch, whatever the number of attempts;
//! - [`Exporter::send`]: one attempt with the encoded request, classified by
//!   a typed [`ExportError`]; whether to retry is decided from the variant
//!   alone. A bulk API that delivered only some items answers
//!   [`ExportError::Partial`] and shrinks the request to the rest, so the
//!   retry sends only what failed and the delivered items' budget is
//!   released at once.
//!
//! # One home per kind
//! A kind lives in its own folder: `config.rs` (its `[exporters.<kind>.<name>]`
//! table, implementing [`ExporterConfig`]: validation, the `check-config`
//! line, `build`) and the exporter itself. [`registry`] is the one line
//! that adds the kind to `config.toml`; nothing else in the gateway names it.

pub mod debug;
pub mod elasticsearch;
pub mod jaeger;
pub mod otlp;
pub mod prometheus;
pub mod registry;

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::model::{Batch, Context, Envelope, Signal};
use crate::settings::breaker::CircuitBreakerConfig;
use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
use crate::settings::ConfigError;

pub use registry::{ExporterEntry, ExportersConfig, EXPORTER_KINDS};

/// How an export attempt failed. Retry behaviour lives in the variant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    /// Worth retrying: gRPC UNAVAILABLE (or RESOURCE_EXHAUSTED with RetryInfo),
    /// HTTP 429/502/503/504, connect errors and timeouts.
    #[error("retryable: {reason}")]
    Retryable {
        reason: Cow<'static, str>,
        /// The server's `RetryInfo` / `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Retrying the same bytes gives the same answer: 400, 413, INVALID_ARGUMENT…
    #[error("permanent: {reason}")]
    Permanent { reason: Cow<'static, str> },
    /// Some items are done, the rest is worth retrying: `delivered` items
    /// arrived, `rejected` were refused for good, and the request passed to
    /// [`Exporter::send`] now holds only the rest (retry it after
    /// `retry_after` if the backend said so).
    #[error("partial: {delivered} delivered, {rejected} rejected, the rest retryable: {reason}")]
    Partial {
        delivered: u64,
        rejected: u64,
        reason: Cow<'static, str>,
        retry_after: Option<Duration>,
    },
}

impl ExportError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExportError::Retryable { .. } | ExportError::Partial { .. }
        )
    }

    /// Bounded label for metrics (`retryable` / `permanent` / `partial`).
    pub fn kind(&self) -> &'static str {
        match self {
            ExportError::Retryable { .. } => "retryable",
            ExportError::Permanent { .. } => "permanent",
            ExportError::Partial { .. } => "partial",
        }
    }
}

/// A successful export; the backend may still have refused some items
/// (OTLP `partial_success`), which are then dropped and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    pub rejected_items: u64,
    pub message: String,
}

/// One backend: encode a batch once, send it per attempt.
pub trait Exporter: Send + Sync + 'static {
    /// A batch in the backend's form (translated, compressed), ready to send
    /// as many times as the retry needs.
    type Request: Send + Sync + 'static;

    /// Translates and compresses `batch`; `context` says for whom (per-tenant
    /// headers, index names).
    ///
    /// # Errors
    /// [`ExportError::Permanent`] when the batch cannot be encoded for this backend.
    fn encode(&self, batch: &Batch, context: &Context) -> Result<Self::Request, ExportError>;

    /// One attempt to deliver `request`. On [`ExportError::Partial`] the
    /// request has been cut down to the items still to retry.
    ///
    /// # Errors
    /// [`ExportError`] saying whether a retry may succeed.
    fn send(
        &self,
        request: &mut Self::Request,
    ) -> impl Future<Output = Result<ExportOutcome, ExportError>> + Send;

    /// How many items `request` still holds (what one attempt sends).
    fn items(&self, request: &Self::Request) -> u64;

    /// When the backend needs items of one key in order (samples of one
    /// series for remote-write), the partitioner that keys them: the
    /// branch then runs one batcher, queue and sender per partition.
    /// Default: unordered, `num_consumers` senders share one queue.
    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        None
    }
}

/// Splits a batch by a key into ordered partitions.
pub trait Partitioner: Send + Sync + fmt::Debug + 'static {
    /// Cuts `envelope` into parts (each keeping the context), each with the
    /// index (below `partitions`) of the partition that must carry it.
    fn split(&self, envelope: Envelope, partitions: usize) -> Vec<(usize, Envelope)>;
}

/// An encoded request of some [`Exporter`], behind a type-erased handle.
pub struct AnyRequest(Box<dyn Any + Send + Sync>);

impl fmt::Debug for AnyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyRequest")
    }
}

/// An [`Exporter`] of any kind, as the queue's senders hold it.
pub trait DynExporter: Send + Sync + 'static {
    fn encode(&self, batch: &Batch, context: &Context) -> Result<AnyRequest, ExportError>;
    fn send<'a>(
        &'a self,
        request: &'a mut AnyRequest,
    ) -> BoxFuture<'a, Result<ExportOutcome, ExportError>>;
    fn items(&self, request: &AnyRequest) -> u64;
    fn partitioner(&self) -> Option<Arc<dyn Partitioner>>;
}

/// Refusal for a request that another exporter encoded; cannot happen when
/// requests go back to the exporter that made them, as the sender does.
fn foreign_request() -> ExportError {
    ExportError::Permanent {
        reason: "request encoded by another exporter".into(),
    }
}

impl<E: Exporter> DynExporter for E {
    fn encode(&self, batch: &Batch, context: &Context) -> Result<AnyRequest, ExportError> {
        Exporter::encode(self, batch, context).map(|r| AnyRequest(Box::new(r)))
    }

    fn send<'a>(
        &'a self,
        request: &'a mut AnyRequest,
    ) -> BoxFuture<'a, Result<ExportOutcome, ExportError>> {
        match request.0.downcast_mut::<E::Request>() {
            Some(request) => Box::pin(Exporter::send(self, request)),
            None => Box::pin(async { Err(foreign_request()) }),
        }
    }

    fn items(&self, request: &AnyRequest) -> u64 {
        request
            .0
            .downcast_ref::<E::Request>()
            .map_or(0, |r| Exporter::items(self, r))
    }

    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        Exporter::partitioner(self)
    }
}

/// Why an exporter could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl BuildError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        BuildError(Box::new(error))
    }
}

/// What an exporter kind's config table offers the rest of the gateway:
/// everything `config/`, `check-config` and the topology need to know of a
/// kind, so that none of them names it.
pub trait ExporterConfig: fmt::Debug + Send + Sync {
    /// Pushes one error per problem, each with its full key path (`path` is
    /// this exporter's, `exporters.<kind>.<name>`).
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>);

    /// Legal settings that are probably mistakes.
    fn warnings(&self, _path: &str, _warnings: &mut Vec<ConfigError>) {}

    /// The resolved settings in words, for `check-config` (secrets never shown).
    fn describe(&self) -> String;

    /// Its `sending_queue` table.
    fn sending_queue(&self) -> &SendingQueueConfig;

    /// Its `retry_on_failure` table; `None` for kinds that never fail (debug).
    fn retry_on_failure(&self) -> Option<&RetryConfig>;

    /// Its `circuit_breaker` table: one breaker per exporter, shared by its workers.
    fn circuit_breaker(&self) -> &CircuitBreakerConfig;

    /// Builds the exporter `id` for `signal`'s pipeline. No connection is
    /// made yet: a backend that is down at start-up is not an error.
    ///
    /// # Errors
    /// [`BuildError`] when the settings cannot be turned into a client.
    fn build(&self, id: &str, signal: Signal) -> Result<Arc<dyn DynExporter>, BuildError>;

    /// Whether the settings name `{tenant}` where a client is made (an endpoint): then
    /// the exporter is built once per tenant listed under `[tenants]`, each with its own
    /// queue and workers. Default: no.
    fn per_tenant(&self) -> bool {
        false
    }

    /// Builds the exporter `id` of `tenant` for `signal`'s pipeline (its settings
    /// filled in). Only called when [`ExporterConfig::per_tenant`]. Default: [`ExporterConfig::build`].
    ///
    /// # Errors
    /// [`BuildError`] when the filled-in settings cannot be turned into a client.
    fn build_for_tenant(
        &self,
        id: &str,
        signal: Signal,
        _tenant: &str,
    ) -> Result<Arc<dyn DynExporter>, BuildError> {
        self.build(id, signal)
    }
}
