//! The stage contract every processing step implements, and the driver that
//! runs a stage which owns time.
//!
//! A stage is synchronous: it is handed one input at a time and pushes zero
//! or more outputs. A stage that holds data until a moment (the batcher's
//! `timeout`, later tail sampling's `decision_wait` and span metrics' flush
//! interval) says when through [`Transform::deadline`] and is called back at
//! that moment through [`Transform::on_deadline`]; [`run_timed`] is the task
//! that does this for it. Stages that hold nothing (redaction, routing) only
//! implement `process`, and run inline on their signal's task; an inline stage
//! that does hold data (an aggregation) gets the same `deadline` / `flush`
//! calls from the signal's task.
//!
//! # Shutdown
//! When its input closes, a stage is asked to [`Transform::flush`] what it
//! holds, inline or timed, so no held data is lost at shutdown.

use std::future::Future;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

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
/// Called once per input, on the task that runs the stage. Must not block or
/// await. The caller, not the stage, counts items in and out, so every stage
/// of a signal's task gets the same `otlp_gateway_stage_*` metrics.
pub trait Transform: Send + 'static {
    /// What the stage takes: a [`Batch`] for the signal stages.
    type In;
    /// What the stage emits.
    type Out;

    /// Stable name used as the `stage` label on metrics and in logs, e.g. `"redact"`.
    fn name(&self) -> &'static str;

    /// Push zero, one or many outputs for `input`. Pushing nothing holds or
    /// drops the input on purpose; return `Err` only for failures that the
    /// caller must count or refuse.
    ///
    /// # Errors
    /// [`StageError`] when the input cannot be processed.
    fn process(&mut self, input: Self::In, out: &mut Vec<Self::Out>) -> Result<(), StageError>;

    /// The next moment the stage wants [`Transform::on_deadline`], if it holds
    /// anything that must leave by a time. Default: never.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Called at (or after) [`Transform::deadline`]: push what is due.
    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<Self::Out>) {}

    /// The input has ended: push everything still held.
    fn flush(&mut self, _out: &mut Vec<Self::Out>) {}
}

/// Runs a stage that owns time as a task: feeds it `input`, calls it back at
/// its deadlines, hands every output to `emit` (awaited, so `emit` may apply
/// backpressure), and flushes it when `input` closes.
pub async fn run_timed<T, E, F>(mut stage: T, mut input: mpsc::Receiver<T::In>, mut emit: E)
where
    T: Transform,
    E: FnMut(T::Out) -> F,
    F: Future<Output = ()>,
{
    let mut out = Vec::new();
    loop {
        let deadline = stage.deadline();
        tokio::select! {
            received = input.recv() => match received {
                Some(item) => {
                    if let Err(error) = stage.process(item, &mut out) {
                        tracing::warn!(stage = stage.name(), %error, "Stage refused an input.");
                    }
                }
                None => break,
            },
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                stage.on_deadline(Instant::now(), &mut out);
            }
        }
        for item in out.drain(..) {
            emit(item).await;
        }
    }
    stage.flush(&mut out);
    for item in out.drain(..) {
        emit(item).await;
    }
}
