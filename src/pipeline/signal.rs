//! The task of one signal's pipeline: runs the stages on each submitted
//! batch, then admits the result into every exporter of the pipeline.
//!
//! # Backpressure
//! Admission reserves the batch's items in each exporter's budget and hands
//! it to that exporter's batcher without waiting. If no exporter can take it,
//! the submission is refused ([`Refused::Busy`]) and the client retries; if
//! only some can, the others count it as dropped (`queue_full`), so one slow
//! or dead exporter never holds up another.

use std::time::Duration;

use metrics::counter;
use tokio::sync::mpsc;

use crate::model::{Batch, Signal};
use crate::queue::{ItemBudget, QueuedBatch};
use crate::telemetry::metrics::{
    reason, EXPORTER_ITEMS_DROPPED, STAGE_ERRORS, STAGE_ITEMS_IN, STAGE_ITEMS_OUT,
};

use super::{Accepted, BatchStage, Refused, StageError, Submission};

/// The entrance of one exporter: its budget and its batcher's input.
#[derive(Debug, Clone)]
pub struct ExporterInput {
    /// Exporter id, `kind/name`.
    pub id: String,
    pub budget: ItemBudget,
    pub tx: mpsc::Sender<QueuedBatch>,
}

/// Stages and exporters of one signal.
pub struct SignalPipeline {
    signal: Signal,
    stages: Vec<BatchStage>,
    exporters: Vec<ExporterInput>,
    retry_after: Duration,
}

impl SignalPipeline {
    pub fn new(
        signal: Signal,
        stages: Vec<BatchStage>,
        exporters: Vec<ExporterInput>,
        retry_after: Duration,
    ) -> Self {
        SignalPipeline {
            signal,
            stages,
            exporters,
            retry_after,
        }
    }

    /// Runs until every [`Ingest`](super::Ingest) handle is gone; dropping
    /// the exporter inputs then lets the batchers flush and stop.
    pub async fn run(mut self, mut input: mpsc::Receiver<Submission>) {
        while let Some(Submission { batch, reply }) = input.recv().await {
            let verdict = self.process(batch);
            // The client may have gone; the data was admitted (or not) either way.
            let _ = reply.send(verdict);
        }
    }

    /// Runs the stages and admits their output. Public for benches.
    ///
    /// # Errors
    /// [`Refused::Busy`] when no exporter had room.
    pub fn process(&mut self, batch: Batch) -> Result<Accepted, Refused> {
        let mut accepted = Accepted::default();
        let mut current = vec![batch];
        for stage in &mut self.stages {
            let mut next = Vec::with_capacity(current.len());
            for batch in current {
                let items = batch.items();
                counter!(STAGE_ITEMS_IN, "stage" => stage.name(), "signal" => self.signal.as_str())
                    .increment(items);
                let before = next.len();
                match stage.process(batch, &mut next) {
                    Ok(()) => {
                        let out: u64 = next[before..].iter().map(Batch::items).sum();
                        counter!(STAGE_ITEMS_OUT, "stage" => stage.name(), "signal" => self.signal.as_str()).increment(out);
                    }
                    Err(error) => {
                        counter!(STAGE_ERRORS, "stage" => stage.name(), "signal" => self.signal.as_str()).increment(1);
                        match error {
                            StageError::Full { .. } => {
                                return Err(Refused::Busy {
                                    signal: self.signal,
                                    retry_after: self.retry_after,
                                })
                            }
                            StageError::Rejected { reason, .. } => {
                                accepted.rejected_items += items;
                                accepted.message = reason;
                            }
                        }
                    }
                }
            }
            current = next;
        }
        for batch in current {
            self.admit(batch)?;
        }
        Ok(accepted)
    }

    /// Hands `batch` to every exporter that has room.
    fn admit(&self, batch: Batch) -> Result<(), Refused> {
        let items = batch.items();
        if items == 0 {
            return Ok(());
        }
        // A slot is room in both the exporter's item budget and its batcher's
        // channel, taken together before anything is sent, so an exporter
        // counted as having room really gets the batch.
        let slots: Vec<_> = self
            .exporters
            .iter()
            .map(|e| {
                let permit = e.tx.try_reserve().ok()?;
                let reservation = e.budget.try_reserve(items)?;
                Some((permit, reservation))
            })
            .collect();
        if !self.exporters.is_empty() && slots.iter().all(Option::is_none) {
            return Err(Refused::Busy {
                signal: self.signal,
                retry_after: self.retry_after,
            });
        }
        for (exporter, slot) in self.exporters.iter().zip(slots) {
            match slot {
                Some((permit, reservation)) => permit.send(QueuedBatch {
                    batch: batch.clone(),
                    reservation,
                }),
                None => {
                    counter!(EXPORTER_ITEMS_DROPPED, "exporter" => exporter.id.clone(), "signal" => self.signal.as_str(), "reason" => reason::QUEUE_FULL)
                        .increment(items);
                    tracing::debug!(exporter = %exporter.id, items, "Exporter queue full; items dropped for it.");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(spans: usize) -> Batch {
        Batch::decode(Signal::Traces, crate::model::test_payload::traces(7, spans))
            .unwrap()
            .batch
    }

    fn input(id: &str, capacity: u64) -> (ExporterInput, mpsc::Receiver<QueuedBatch>) {
        let (tx, rx) = mpsc::channel(16);
        (
            ExporterInput {
                id: id.into(),
                budget: ItemBudget::new(capacity),
                tx,
            },
            rx,
        )
    }

    #[test]
    fn refuses_when_no_exporter_has_room() {
        let (a, _rx) = input("otlp/a", 10);
        let held = a.budget.try_reserve(10).unwrap();
        let mut pipeline =
            SignalPipeline::new(Signal::Traces, vec![], vec![a], Duration::from_secs(2));
        assert_eq!(
            pipeline.process(batch(8)),
            Err(Refused::Busy {
                signal: Signal::Traces,
                retry_after: Duration::from_secs(2)
            })
        );
        drop(held);
        assert!(pipeline.process(batch(8)).is_ok());
    }

    #[test]
    fn full_exporter_does_not_hold_up_the_other() {
        let (a, mut a_rx) = input("otlp/a", 100);
        let (b, mut b_rx) = input("otlp/b", 10);
        let _held = b.budget.try_reserve(10).unwrap();
        let mut pipeline =
            SignalPipeline::new(Signal::Traces, vec![], vec![a, b], Duration::from_secs(1));
        assert!(pipeline.process(batch(8)).is_ok());
        assert_eq!(a_rx.try_recv().unwrap().batch.items(), 8);
        assert!(b_rx.try_recv().is_err());
    }

    #[test]
    fn full_batcher_channel_counts_as_no_room() {
        let (tx, _rx) = mpsc::channel(1);
        let input = ExporterInput {
            id: "otlp/a".into(),
            budget: ItemBudget::new(1000),
            tx,
        };
        let budget = input.budget.clone();
        let mut pipeline =
            SignalPipeline::new(Signal::Traces, vec![], vec![input], Duration::from_secs(1));
        assert!(pipeline.process(batch(8)).is_ok());
        assert!(matches!(
            pipeline.process(batch(8)),
            Err(Refused::Busy { .. })
        ));
        assert_eq!(budget.used(), 8, "the refused batch holds no items");
    }

    struct Halve;
    impl crate::pipeline::Transform for Halve {
        type In = Batch;
        type Out = Batch;
        fn name(&self) -> &'static str {
            "halve"
        }
        fn process(&mut self, mut input: Batch, out: &mut Vec<Batch>) -> Result<(), StageError> {
            let half = input.items() / 2;
            out.push(input.split_to(half));
            Ok(())
        }
    }

    #[test]
    fn stages_run_before_admission() {
        let (a, mut a_rx) = input("otlp/a", 100);
        let mut pipeline = SignalPipeline::new(
            Signal::Traces,
            vec![Box::new(Halve)],
            vec![a],
            Duration::from_secs(1),
        );
        pipeline.process(batch(8)).unwrap();
        let queued = a_rx.try_recv().unwrap();
        assert_eq!(queued.batch.items(), 4);
        assert_eq!(queued.reservation.items(), 4);
    }
}
