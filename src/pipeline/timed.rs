//! Timed stages and connectors as fan-out targets.
//!
//! [`spawn_stage`] runs a stage that owns time (tail sampling holds traces
//! for `decision_wait`) as its own task behind a [`Target`] with its own
//! item budget: the fan-out in front of it refuses, retryably, when the stage
//! is full, and a full stage next to a healthy exporter is counted, not
//! refused. What the stage emits goes to a [`Downstream`]:
//!
//! - [`Downstream::FanOut`]: the exporters (or further stages) of the same
//!   signal, through the same admission and drop-and-count rule;
//! - [`Downstream::Pipeline`]: another signal's pipeline, through its
//!   [`Ingest`], which makes the stage a connector (span metrics: traces
//!   in, metrics out, into the metrics pipeline's own stages and exporters).
//!
//! The stage's input is [`QueuedBatch`]: each input holds its items in the
//! stage's budget until the stage lets go of them (drops or emits them), so
//! the budget bounds what the stage holds. A stage that keeps part of an
//! input splits the reservation along ([`Reservation::split`](crate::budget::Reservation::split)).
//!
//! # Shutdown
//! The task ends when the fan-out in front of it is gone: the stage
//! flushes, its output is handed on, and dropping the downstream handle lets
//! the next pipeline end in turn.

use std::sync::Arc;

use metrics::counter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::budget::ItemBudget;
use crate::model::Envelope;
use crate::queue::QueuedBatch;
use crate::telemetry::metrics::{reason, STAGE_ITEMS_DROPPED};

use super::fanout::{FanOut, Target, TargetKind};
use super::{run_timed, Ingest, Refused, Transform};

/// Batches waiting for a timed stage's task.
const STAGE_CHANNEL: usize = 1024;

/// Where a timed stage's output goes.
#[derive(Debug, Clone)]
pub enum Downstream {
    /// The targets of the same signal.
    FanOut(FanOut),
    /// Another signal's pipeline: the stage is a connector.
    Pipeline(Ingest),
}

impl Downstream {
    /// A stage feeding its own signal, or a connector into another pipeline.
    fn target_kind(&self) -> TargetKind {
        match self {
            Downstream::FanOut(_) => TargetKind::Stage,
            Downstream::Pipeline(_) => TargetKind::Connector,
        }
    }

    /// Hands `envelope` on, waiting while the downstream is full (the data
    /// was acknowledged already); gives up, counted, only when `abort` fires.
    async fn hand_on(&self, stage: &str, envelope: Envelope, abort: &CancellationToken) {
        match self {
            Downstream::FanOut(fanout) => fanout.admit_or_wait(envelope, abort).await,
            Downstream::Pipeline(ingest) => {
                let signal = envelope.batch.signal();
                let items = envelope.items();
                let mut wait = std::time::Duration::from_millis(5);
                loop {
                    match ingest.submit_envelope(envelope.clone()).await {
                        Ok(_) => return,
                        Err(Refused::Busy { .. }) if !abort.is_cancelled() => {}
                        Err(_) => {
                            counter!(STAGE_ITEMS_DROPPED, "stage" => stage.to_owned(), "signal" => signal.as_str(), "reason" => reason::SHUTDOWN)
                                .increment(items);
                            return;
                        }
                    }
                    tokio::select! {
                        biased;
                        () = abort.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(std::time::Duration::from_millis(200));
                }
            }
        }
    }
}

/// Starts one task per stage in `shards` behind one target (one budget of
/// `budget_items`): a router hands each input to the shards `split` assigns
/// its parts to (e.g. by trace id, so every span of a trace meets the same
/// shard), in order. With one shard this is [`spawn_stage`].
pub fn spawn_sharded_stage<T, S>(
    mut shards: Vec<T>,
    split: S,
    budget_items: u64,
    downstream: Downstream,
    abort: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Target
where
    T: Transform<In = QueuedBatch, Out = Envelope>,
    S: Fn(QueuedBatch, usize) -> Vec<(usize, QueuedBatch)> + Send + 'static,
{
    if shards.len() <= 1 {
        if let Some(stage) = shards.pop() {
            return spawn_stage(stage, budget_items, downstream, abort, tasks);
        }
    }
    let name = shards.first().map_or("stage", Transform::name);
    let (target, mut rx) = Target::new(
        name,
        downstream.target_kind(),
        ItemBudget::new(budget_items),
        STAGE_CHANNEL,
    );
    let downstream = Arc::new(downstream);
    let mut inputs = Vec::with_capacity(shards.len());
    for stage in shards {
        let (tx, shard_rx) = tokio::sync::mpsc::channel(STAGE_CHANNEL);
        inputs.push(tx);
        spawn_runner(stage, shard_rx, downstream.clone(), abort.clone(), tasks);
    }
    tasks.spawn(async move {
        while let Some(item) = rx.recv().await {
            for (shard, part) in split(item, inputs.len()) {
                let Some(input) = inputs.get(shard % inputs.len()) else {
                    continue;
                };
                // Waits while that shard is behind; the items are in the budget already.
                if input.send(part).await.is_err() {
                    tracing::error!(stage = name, "A shard ended before its router; batch lost.");
                }
            }
        }
    });
    target
}

/// Starts `stage` as a task into `tasks` and returns the target that feeds
/// it, with a budget of `budget_items` items. `kind` is [`TargetKind::Stage`]
/// or, when `downstream` is another signal's pipeline, [`TargetKind::Connector`].
pub fn spawn_stage<T>(
    stage: T,
    budget_items: u64,
    downstream: Downstream,
    abort: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Target
where
    T: Transform<In = QueuedBatch, Out = Envelope>,
{
    let (target, rx) = Target::new(
        stage.name(),
        downstream.target_kind(),
        ItemBudget::new(budget_items),
        STAGE_CHANNEL,
    );
    spawn_runner(stage, rx, Arc::new(downstream), abort, tasks);
    target
}

/// Runs `stage` on `input` as a task, handing its outputs to `downstream`.
fn spawn_runner<T>(
    stage: T,
    input: tokio::sync::mpsc::Receiver<QueuedBatch>,
    downstream: Arc<Downstream>,
    abort: CancellationToken,
    tasks: &mut JoinSet<()>,
) where
    T: Transform<In = QueuedBatch, Out = Envelope>,
{
    let name = stage.name();
    tasks.spawn(async move {
        run_timed(stage, input, |envelope| {
            let downstream = downstream.clone();
            let abort = abort.clone();
            async move { downstream.hand_on(name, envelope, &abort).await }
        })
        .await;
    });
}
