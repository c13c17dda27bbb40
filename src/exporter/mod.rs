//! Exporters: send one batch to one backend. No queue, no retry: those wrap
//! every exporter the same way in `queue/`.
//!
//! # Contract
//! `export(&batch)` makes one attempt and says how it went with a typed
//! [`ExportError`]; whether to retry is decided from the variant alone.

pub mod debug;
pub mod otlp;

use std::borrow::Cow;
use std::time::Duration;

use crate::model::Batch;

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
}

impl ExportError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExportError::Retryable { .. })
    }

    /// Bounded label for metrics (`retryable` / `permanent`).
    pub fn kind(&self) -> &'static str {
        match self {
            ExportError::Retryable { .. } => "retryable",
            ExportError::Permanent { .. } => "permanent",
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

/// Every exporter kind, dispatched statically.
#[derive(Debug)]
pub enum Exporter {
    Otlp(otlp::OtlpExporter),
    Debug(debug::DebugExporter),
}

impl Exporter {
    /// One attempt to deliver `batch`.
    ///
    /// # Errors
    /// [`ExportError`] saying whether a retry may succeed.
    pub async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        match self {
            Exporter::Otlp(e) => e.export(batch).await,
            Exporter::Debug(e) => e.export(batch).await,
        }
    }
}
