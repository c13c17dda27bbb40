//! [`Ingest`]: the handle receivers give their decoded batches to.
//!
//! # Backpressure
//! `submit` never waits for room: when the pipeline of the signal cannot take
//! the batch it answers [`Refused::Busy`] at once, and the receiver turns that
//! into a retryable protocol answer (gRPC `UNAVAILABLE` with `RetryInfo`, HTTP
//! 503 with `Retry-After`). A batch is acknowledged only after every exporter
//! of the pipeline has admitted it into its bounded queue, so an acknowledged
//! batch is never dropped for lack of room.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::budget::ItemBudget;
use crate::model::{Batch, Envelope, Signal};

/// What happened to an accepted batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items the pipeline refused for good (counted in `partial_success`).
    pub rejected_items: u64,
    /// Why, for `partial_success.error_message`; empty when nothing was rejected.
    pub message: String,
}

/// Why a batch was not accepted. Every variant is retryable by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{signal} pipeline is full, retry after {retry_after:?}")]
    Busy {
        signal: Signal,
        retry_after: Duration,
    },
    #[error("gateway is shutting down")]
    ShuttingDown,
}

/// A batch (with its context) on its way into the pipeline, with the channel for its answer.
#[derive(Debug)]
pub struct Submission {
    pub envelope: Envelope,
    pub reply: oneshot::Sender<Result<Accepted, Refused>>,
}

/// Cloneable handle that receivers submit batches through, one channel per signal.
#[derive(Debug, Clone)]
pub struct Ingest {
    traces: Option<mpsc::Sender<Submission>>,
    metrics: Option<mpsc::Sender<Submission>>,
    logs: Option<mpsc::Sender<Submission>>,
    retry_after: Duration,
    /// Bytes that requests being read and decoded may hold, shared by every receiver.
    inflight: ItemBudget,
}

impl Ingest {
    /// A handle over the given per-signal channels. A signal without a channel
    /// has no pipeline: its batches are accepted and counted as dropped by the
    /// receiver, as the Collector does for a signal with no pipeline.
    pub fn new(
        traces: Option<mpsc::Sender<Submission>>,
        metrics: Option<mpsc::Sender<Submission>>,
        logs: Option<mpsc::Sender<Submission>>,
        retry_after: Duration,
    ) -> Self {
        Ingest {
            traces,
            metrics,
            logs,
            retry_after,
            inflight: ItemBudget::new(u64::MAX),
        }
    }

    /// Bounds the bytes that requests being read and decoded may hold at once.
    pub fn with_inflight_limit(mut self, bytes: u64) -> Self {
        self.inflight = ItemBudget::new(bytes);
        self
    }

    /// The receivers' in-flight byte budget.
    pub fn inflight(&self) -> &ItemBudget {
        &self.inflight
    }

    /// A handle with one channel of `capacity` per signal, for tests and benches.
    pub fn channels(capacity: usize) -> (Ingest, [mpsc::Receiver<Submission>; 3]) {
        let (t, tr) = mpsc::channel(capacity);
        let (m, mr) = mpsc::channel(capacity);
        let (l, lr) = mpsc::channel(capacity);
        (
            Ingest::new(Some(t), Some(m), Some(l), Duration::from_secs(1)),
            [tr, mr, lr],
        )
    }

    /// Whether `signal` has a pipeline.
    pub fn has_pipeline(&self, signal: Signal) -> bool {
        self.sender(signal).is_some()
    }

    fn sender(&self, signal: Signal) -> Option<&mpsc::Sender<Submission>> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }

    /// Hands `batch` (with the empty context) to its pipeline and waits for the verdict.
    ///
    /// # Errors
    /// [`Refused`] when the pipeline is full or shutting down; the client should retry.
    pub async fn submit(&self, batch: Batch) -> Result<Accepted, Refused> {
        self.submit_envelope(Envelope::new(batch)).await
    }

    /// Hands `envelope` to its signal's pipeline and waits for the verdict.
    ///
    /// # Errors
    /// [`Refused`] when the pipeline is full or shutting down; the client should retry.
    pub async fn submit_envelope(&self, envelope: Envelope) -> Result<Accepted, Refused> {
        let signal = envelope.batch.signal();
        let Some(sender) = self.sender(signal) else {
            return Ok(Accepted::default());
        };
        let (reply, answer) = oneshot::channel();
        match sender.try_send(Submission { envelope, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(Refused::Busy {
                    signal,
                    retry_after: self.retry_after,
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Refused::ShuttingDown),
        }
        answer.await.unwrap_or(Err(Refused::ShuttingDown))
    }
}
