//! Debug exporter: logs a summary of each batch.

pub mod config;

use crate::model::Batch;

use super::{ExportError, ExportOutcome};

/// Logs what passes through.
#[derive(Debug)]
pub struct DebugExporter {
    pub name: String,
    pub verbosity: config::Verbosity,
}

impl DebugExporter {
    /// Logs `batch`; never fails.
    ///
    /// # Errors
    /// Never.
    pub async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        tracing::info!(exporter = %self.name, signal = %batch.signal(), items = batch.items(), "Batch.");
        Ok(ExportOutcome::default())
    }
}
