//! OTLP exporter over gRPC or HTTP/protobuf.

pub mod config;

use crate::model::Batch;

use super::{ExportError, ExportOutcome};

/// Sends batches as OTLP export requests.
#[derive(Debug)]
pub struct OtlpExporter {
    _private: (),
}

impl OtlpExporter {
    /// One export attempt.
    ///
    /// # Errors
    /// [`ExportError`] by the server's answer.
    pub async fn export(&self, _batch: &Batch) -> Result<ExportOutcome, ExportError> {
        Err(ExportError::Permanent {
            reason: "not implemented".into(),
        })
    }
}
