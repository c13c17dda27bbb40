//! The task of one signal's pipeline: runs the inline stages on each
//! submitted batch, then admits the result through the pipeline's [`FanOut`].
//!
//! # Stages that hold data
//! An inline stage may hold data (an aggregation): the task calls it back at
//! its [`Transform::deadline`] and, when the input closes, asks every stage
//! in flow order to [`Transform::flush`], passing what comes out through the
//! stages after it. Those outputs were acknowledged already, so they are
//! admitted with [`FanOut::admit_or_wait`]: a full downstream slows the
//! task (and so refuses new clients) rather than losing them.
//!
//! # Backpressure
//! A client's batch is admitted without waiting: if no target can take it,
//! the submission is refused ([`Refused::Busy`]) and the client retries; if
//! only some can, the others count it as dropped (`queue_full`).

use std::time::Duration;

use metrics::counter;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::model::{Envelope, Signal};
use crate::telemetry::metrics::{STAGE_ERRORS, STAGE_ITEMS_IN, STAGE_ITEMS_OUT};

use super::fanout::{FanOut, Full, Receipts};
use super::{Accepted, BatchStage, Refused, StageError, Submission};

/// How long a client waits for its batch to reach a disk queue before it is refused retryably.
const DURABLE_DEADLINE: Duration = Duration::from_secs(10);

/// Stages and fan-out of one signal.
pub struct SignalPipeline {
    signal: Signal,
    stages: Vec<BatchStage>,
    fanout: FanOut,
    retry_after: Duration,
    /// Fires when the drain deadline passed: held data stops waiting for room.
    abort: CancellationToken,
}

/// What the stages made of one input.
struct Processed {
    out: Vec<Envelope>,
    rejected_items: u64,
    message: String,
}

impl SignalPipeline {
    pub fn new(
        signal: Signal,
        stages: Vec<BatchStage>,
        fanout: FanOut,
        retry_after: Duration,
    ) -> Self {
        SignalPipeline {
            signal,
            stages,
            fanout,
            retry_after,
            abort: CancellationToken::new(),
        }
    }

    /// Gives up waiting for room (for held data) once `abort` fires.
    #[must_use]
    pub fn with_abort(mut self, abort: CancellationToken) -> Self {
        self.abort = abort;
        self
    }

    /// Runs until every [`Ingest`](super::Ingest) handle is gone, then
    /// flushes the stages; dropping the fan-out then lets the targets flush
    /// and stop.
    pub async fn run(mut self, mut input: mpsc::Receiver<Submission>) {
        loop {
            let deadline = self.stages.iter().filter_map(|s| s.deadline()).min();
            tokio::select! {
                received = input.recv() => match received {
                    Some(Submission { envelope, reply }) => {
                        match self.process_durably(envelope) {
                            Ok((accepted, receipts)) if !receipts.is_empty() => {
                                // Answered once a disk queue has it durably; the task goes on.
                                let busy = self.busy();
                                tokio::spawn(async move {
                                    let verdict = match receipts.wait(DURABLE_DEADLINE).await {
                                        Ok(()) => Ok(accepted),
                                        Err(error) => {
                                            tracing::debug!(%error, "Refused: not written to disk.");
                                            Err(busy)
                                        }
                                    };
                                    let _ = reply.send(verdict);
                                });
                            }
                            // The client may have gone; the data was admitted (or not) either way.
                            verdict => {
                                let _ = reply.send(verdict.map(|(accepted, _)| accepted));
                            }
                        }
                    }
                    None => break,
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.on_deadline(Instant::now()).await;
                }
            }
        }
        self.flush().await;
    }

    /// Runs the stages on a client's batch and admits their output. Public for benches.
    ///
    /// # Errors
    /// [`Refused::Busy`] when a stage was full or no target had room.
    pub fn process(&mut self, envelope: Envelope) -> Result<Accepted, Refused> {
        self.process_durably(envelope).map(|(accepted, _)| accepted)
    }

    /// [`SignalPipeline::process`], with what disk queues will say about the batch.
    fn process_durably(&mut self, envelope: Envelope) -> Result<(Accepted, Receipts), Refused> {
        let processed = self.run_stages(0, vec![envelope])?;
        let mut receipts = Receipts::default();
        for envelope in processed.out {
            receipts.extend(self.fanout.admit(envelope).map_err(|Full(_)| self.busy())?);
        }
        Ok((
            Accepted {
                rejected_items: processed.rejected_items,
                message: processed.message,
            },
            receipts,
        ))
    }

    fn busy(&self) -> Refused {
        Refused::Busy {
            signal: self.signal,
            retry_after: self.retry_after,
        }
    }

    /// Calls back every stage that is due and hands on what it emits.
    async fn on_deadline(&mut self, now: Instant) {
        for i in 0..self.stages.len() {
            if self.stages[i].deadline().is_some_and(|due| due <= now) {
                let mut out = Vec::new();
                self.stages[i].on_deadline(now, &mut out);
                self.hand_on_held(i + 1, out).await;
            }
        }
    }

    /// Input closed: each stage in flow order emits what it holds, through the stages after it.
    async fn flush(&mut self) {
        for i in 0..self.stages.len() {
            let mut out = Vec::new();
            self.stages[i].flush(&mut out);
            self.hand_on_held(i + 1, out).await;
        }
    }

    /// Held data (already acknowledged) from before stage `from`: through
    /// the remaining stages, then admitted, waiting for room if need be.
    async fn hand_on_held(&mut self, from: usize, held: Vec<Envelope>) {
        if held.is_empty() {
            return;
        }
        let out = match self.run_stages(from, held) {
            Ok(processed) => processed.out,
            Err(_) => {
                // A later stage refused (full): counted in stage errors; the held data is lost.
                tracing::warn!(signal = %self.signal, "A stage refused held data; dropped.");
                return;
            }
        };
        for envelope in out {
            self.fanout.admit_or_wait(envelope, &self.abort).await;
        }
    }

    /// Runs `input` through the stages from index `from` on.
    fn run_stages(&mut self, from: usize, input: Vec<Envelope>) -> Result<Processed, Refused> {
        let mut processed = Processed {
            out: input,
            rejected_items: 0,
            message: String::new(),
        };
        let signal = self.signal.as_str();
        for stage in self.stages.iter_mut().skip(from) {
            let mut next = Vec::with_capacity(processed.out.len());
            for envelope in std::mem::take(&mut processed.out) {
                let items = envelope.items();
                counter!(STAGE_ITEMS_IN, "stage" => stage.name(), "signal" => signal)
                    .increment(items);
                let before = next.len();
                match stage.process(envelope, &mut next) {
                    Ok(()) => {
                        let out: u64 = next[before..].iter().map(Envelope::items).sum();
                        counter!(STAGE_ITEMS_OUT, "stage" => stage.name(), "signal" => signal)
                            .increment(out);
                    }
                    Err(error) => {
                        counter!(STAGE_ERRORS, "stage" => stage.name(), "signal" => signal)
                            .increment(1);
                        match error {
                            StageError::Full { .. } => {
                                return Err(Refused::Busy {
                                    signal: self.signal,
                                    retry_after: self.retry_after,
                                })
                            }
                            StageError::Rejected { reason, .. } => {
                                processed.rejected_items += items;
                                processed.message = reason;
                            }
                        }
                    }
                }
            }
            processed.out = next;
        }
        Ok(processed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::ItemBudget;
    use crate::model::{Batch, Context};
    use crate::pipeline::fanout::{Target, TargetKind};
    use crate::pipeline::Transform;
    use crate::queue::QueuedBatch;

    fn envelope(spans: usize) -> Envelope {
        Envelope::new(
            Batch::decode(Signal::Traces, crate::model::test_payload::traces(7, spans))
                .unwrap()
                .batch,
        )
    }

    fn target(id: &str, capacity: u64) -> (Target, mpsc::Receiver<QueuedBatch>) {
        Target::new(id, TargetKind::Exporter, ItemBudget::new(capacity), 16)
    }

    fn pipeline(stages: Vec<BatchStage>, targets: Vec<Target>) -> SignalPipeline {
        SignalPipeline::new(
            Signal::Traces,
            stages,
            FanOut::new(Signal::Traces, targets),
            Duration::from_secs(2),
        )
    }

    #[test]
    fn refuses_when_no_exporter_has_room() {
        let (a, _rx) = target("otlp/a", 10);
        let held = a.budget.try_reserve(10).unwrap();
        let mut pipeline = pipeline(vec![], vec![a]);
        assert_eq!(
            pipeline.process(envelope(8)),
            Err(Refused::Busy {
                signal: Signal::Traces,
                retry_after: Duration::from_secs(2)
            })
        );
        drop(held);
        assert!(pipeline.process(envelope(8)).is_ok());
    }

    #[test]
    fn full_exporter_does_not_hold_up_the_other() {
        let (a, mut a_rx) = target("otlp/a", 100);
        let (b, mut b_rx) = target("otlp/b", 10);
        let _held = b.budget.try_reserve(10).unwrap();
        let mut pipeline = pipeline(vec![], vec![a, b]);
        assert!(pipeline.process(envelope(8)).is_ok());
        assert_eq!(a_rx.try_recv().unwrap().batch.items(), 8);
        assert!(b_rx.try_recv().is_err());
    }

    #[test]
    fn full_batcher_channel_counts_as_no_room() {
        let (input, _rx) = Target::new("otlp/a", TargetKind::Exporter, ItemBudget::new(1000), 1);
        let budget = input.budget.clone();
        let mut pipeline = pipeline(vec![], vec![input]);
        assert!(pipeline.process(envelope(8)).is_ok());
        assert!(matches!(
            pipeline.process(envelope(8)),
            Err(Refused::Busy { .. })
        ));
        assert_eq!(budget.used(), 8, "the refused batch holds no items");
    }

    struct Halve;
    impl Transform for Halve {
        type In = Envelope;
        type Out = Envelope;
        fn name(&self) -> &'static str {
            "halve"
        }
        fn process(
            &mut self,
            mut input: Envelope,
            out: &mut Vec<Envelope>,
        ) -> Result<(), StageError> {
            let half = input.items() / 2;
            out.push(Envelope::with_context(
                input.context.clone().with_route("halved"),
                input.batch.split_to(half),
            ));
            Ok(())
        }
    }

    #[test]
    fn stages_run_before_admission_and_set_the_context() {
        let (a, mut a_rx) = target("otlp/a", 100);
        let mut pipeline = pipeline(vec![Box::new(Halve)], vec![a]);
        pipeline.process(envelope(8)).unwrap();
        let queued = a_rx.try_recv().unwrap();
        assert_eq!(queued.batch.items(), 4);
        assert_eq!(queued.reservation.items(), 4);
        assert_eq!(queued.context, Context::default().with_route("halved"));
    }

    /// Holds everything until a deadline 1 s after its first input.
    #[derive(Default)]
    struct HoldOneSecond {
        held: Vec<Envelope>,
        since: Option<Instant>,
    }
    impl Transform for HoldOneSecond {
        type In = Envelope;
        type Out = Envelope;
        fn name(&self) -> &'static str {
            "hold"
        }
        fn process(&mut self, input: Envelope, _out: &mut Vec<Envelope>) -> Result<(), StageError> {
            self.since.get_or_insert_with(Instant::now);
            self.held.push(input);
            Ok(())
        }
        fn deadline(&self) -> Option<Instant> {
            self.since.map(|t| t + Duration::from_secs(1))
        }
        fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Envelope>) {
            self.since = None;
            out.append(&mut self.held);
        }
        fn flush(&mut self, out: &mut Vec<Envelope>) {
            self.since = None;
            out.append(&mut self.held);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_inline_stage_that_holds_gets_its_deadline_and_the_later_stages_run() {
        let (a, mut a_rx) = target("otlp/a", 100);
        let pipeline = pipeline(
            vec![Box::new(HoldOneSecond::default()), Box::new(Halve)],
            vec![a],
        );
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(pipeline.run(rx));
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(Submission {
            envelope: envelope(8),
            reply,
        })
        .await
        .unwrap();
        answer.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(a_rx.try_recv().is_err(), "held until its deadline");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = a_rx.try_recv().expect("emitted at the deadline");
        assert_eq!(got.batch.items(), 4, "and passed through the later stage");
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn held_data_is_flushed_when_the_input_closes() {
        let (a, mut a_rx) = target("otlp/a", 100);
        let pipeline = pipeline(vec![Box::new(HoldOneSecond::default())], vec![a]);
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(pipeline.run(rx));
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(Submission {
            envelope: envelope(8),
            reply,
        })
        .await
        .unwrap();
        answer.await.unwrap().unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(a_rx.try_recv().expect("flushed").batch.items(), 8);
    }
}
