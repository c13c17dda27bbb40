//! The stage contract every processing step implements.

use crate::model::Batch;

/// Why a stage could not process a batch.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The stage refuses the batch for now (e.g. a full buffer); the sender may retry.
    #[error("stage {stage} is full")]
    Full { stage: &'static str },
    /// The batch is malformed for this stage; retrying gives the same answer.
    #[error("stage {stage} rejected the batch: {reason}")]
    Rejected { stage: &'static str, reason: String },
}

/// One synchronous step of the pipeline.
///
/// Called once per batch, on the pipeline task of its signal. Must not block
/// or await. The pipeline wrapper, not the stage, counts items in and out, so
/// every stage gets the same `otlp_gateway_stage_*` metrics.
pub trait Transform: Send + 'static {
    /// Stable name used as the `stage` label on metrics and in logs, e.g. `"redact"`.
    fn name(&self) -> &'static str;

    /// Push zero, one or many outputs for `input`. Pushing nothing drops the
    /// batch on purpose; return `Err` only for failures the caller must count
    /// or refuse.
    ///
    /// # Errors
    /// [`StageError`] when the batch cannot be processed.
    fn process(&mut self, input: Batch, out: &mut Vec<Batch>) -> Result<(), StageError>;
}
