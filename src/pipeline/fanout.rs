//! [`FanOut`]: hands a batch to every admission [`Target`] of a pipeline.
//!
//! A target is any entrance with its own item budget and a bounded channel:
//!
//! - an **exporter branch** (batcher → queue → senders of one exporter);
//! - a **timed stage** with its own budget (tail sampling holds traces for
//!   seconds), whose output goes through a fan-out of its own
//!   ([`spawn_stage`](super::timed::spawn_stage));
//! - a **connector** into another signal's pipeline (span metrics: traces
//!   in, metrics out), the same as a timed stage whose output is that
//!   pipeline's [`Ingest`](super::Ingest).
//!
//! # Backpressure
//! Admission reserves the batch's items in each target's budget together
//! with a slot in its channel, and sends without waiting. If no target can
//! take the batch it is handed back ([`Full`]) and the caller refuses its
//! client retryably (or, for a stage's own output, waits:
//! [`FanOut::admit_or_wait`]); if only some can, the others count the items
//! as dropped (`queue_full`), so one slow or dead target never holds up another.
//! A connector rides along: it gets a batch only with some exporter or stage,
//! so its room alone never accepts a batch the others refused.

use std::time::Duration;

use metrics::counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::budget::{ItemBudget, Reservation};
use crate::model::{Context, Envelope, Signal};
use crate::queue::{QueueError, QueuedBatch};
use crate::telemetry::metrics::{reason, EXPORTER_ITEMS_DROPPED, STAGE_ITEMS_DROPPED};

/// What a target is: decides the metric its drops are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// An exporter's batcher, queue and senders.
    Exporter,
    /// A stage that owns time (tail sampling), run as its own task.
    Stage,
    /// A stage whose output enters another signal's pipeline.
    Connector,
}

impl TargetKind {
    /// Whether the target only takes what another target of its fan-out admits: a
    /// connector, whose room must not turn a refusal to the client into a drop.
    pub fn rides_along(self) -> bool {
        self == TargetKind::Connector
    }
}

/// One entrance of a fan-out: an item budget and a bounded channel.
#[derive(Debug, Clone)]
pub struct Target {
    /// Exporter id (`kind/name`) or stage name.
    pub id: String,
    pub kind: TargetKind,
    pub budget: ItemBudget,
    pub tx: mpsc::Sender<QueuedBatch>,
    /// Per-tenant shares of `budget`, when tenants are isolated.
    shares: Option<Arc<TenantShares>>,
    /// Whether the target writes batches to disk and says when they are
    /// durable: a client's batch is answered only after that.
    durable: bool,
}

/// Each tenant's share of a target's budget, made on first use.
#[derive(Debug)]
struct TenantShares {
    capacity: u64,
    budgets: Mutex<HashMap<Arc<str>, ItemBudget>>,
}

/// Past this many shares, those holding nothing are forgotten.
const MAX_IDLE_SHARES: usize = 10_000;

impl TenantShares {
    fn budget(&self, whole: &ItemBudget, tenant: &Arc<str>) -> Option<ItemBudget> {
        let mut budgets = self.budgets.lock().ok()?;
        if let Some(share) = budgets.get(tenant) {
            return Some(share.clone());
        }
        if budgets.len() >= MAX_IDLE_SHARES {
            budgets.retain(|_, share| share.used() > 0);
        }
        let share = whole.share(self.capacity);
        budgets.insert(tenant.clone(), share.clone());
        Some(share)
    }
}

impl Target {
    /// A target of `budget` items with a channel of `channel` batches, and
    /// the receiving end for the task behind it.
    pub fn new(
        id: impl Into<String>,
        kind: TargetKind,
        budget: ItemBudget,
        channel: usize,
    ) -> (Target, mpsc::Receiver<QueuedBatch>) {
        let (tx, rx) = mpsc::channel(channel.max(1));
        (
            Target {
                id: id.into(),
                kind,
                budget,
                tx,
                shares: None,
                durable: false,
            },
            rx,
        )
    }

    /// Marks the target durable: each batch carries a [`DurableReply`](crate::queue::DurableReply)
    /// and its client waits for it ([`Receipts`]).
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Limits each tenant to `share` (0–1] of the budget, so one tenant's
    /// flood or stalled deliveries fill only its share.
    #[must_use]
    pub fn with_tenant_share(mut self, share: f64) -> Self {
        if share < 1.0 {
            let capacity = ((self.budget.capacity() as f64 * share).ceil() as u64).max(1);
            self.shares = Some(Arc::new(TenantShares {
                capacity,
                budgets: Mutex::new(HashMap::new()),
            }));
        }
        self
    }

    /// Reserves `items` for a batch of `context`: in the tenant's share when
    /// there are shares, else in the whole budget.
    fn try_reserve(&self, context: &Context, items: u64) -> Option<Reservation> {
        match (&self.shares, &context.tenant) {
            (Some(shares), Some(tenant)) => shares.budget(&self.budget, tenant)?.try_reserve(items),
            _ => self.budget.try_reserve(items),
        }
    }

    fn count_dropped(&self, signal: Signal, items: u64, why: &'static str) {
        match self.kind {
            TargetKind::Exporter => {
                counter!(EXPORTER_ITEMS_DROPPED, "exporter" => self.id.clone(), "signal" => signal.as_str(), "reason" => why)
                    .increment(items);
            }
            TargetKind::Stage | TargetKind::Connector => {
                counter!(STAGE_ITEMS_DROPPED, "stage" => self.id.clone(), "signal" => signal.as_str(), "reason" => why)
                    .increment(items);
            }
        }
    }
}

/// No target had room; the envelope is handed back.
#[derive(Debug)]
pub struct Full(pub Envelope);

/// What durable targets will say about an admitted batch: the client is
/// answered once every one of them has the batch on disk.
#[derive(Debug, Default)]
pub struct Receipts(Vec<tokio::sync::oneshot::Receiver<Result<(), QueueError>>>);

impl Receipts {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes `other`'s receipts too.
    pub fn extend(&mut self, other: Receipts) {
        self.0.extend(other.0);
    }

    /// Waits until every durable target wrote the batch, at most `deadline`.
    ///
    /// # Errors
    /// The first target's refusal (full, storage failure), or
    /// [`QueueError::Storage`] when the deadline passed first.
    pub async fn wait(self, deadline: Duration) -> Result<(), QueueError> {
        let all = async {
            for receipt in self.0 {
                receipt.await.unwrap_or(Err(QueueError::Closed))?;
            }
            Ok(())
        };
        tokio::time::timeout(deadline, all)
            .await
            .unwrap_or_else(|_| Err(QueueError::Storage("write to disk timed out".into())))
    }
}

/// The targets of one signal's pipeline (or of one timed stage's output).
#[derive(Debug, Clone)]
pub struct FanOut {
    signal: Signal,
    targets: Vec<Target>,
    /// Which targets a batch goes to by its context's route; `None`: all.
    routing: Option<Arc<Routing>>,
}

/// Where one exporter of a route sends a batch.
#[derive(Debug, Clone)]
pub enum Slot {
    /// The same target for every tenant.
    Target(usize),
    /// A target per tenant (an exporter built once per tenant); a batch of a
    /// tenant without one skips it.
    PerTenant(Arc<HashMap<Arc<str>, usize>>),
}

/// The slots of each route, and of batches without a (known) route.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// The pipeline's own exporters.
    pub default: Vec<Slot>,
    pub routes: HashMap<Arc<str>, Vec<Slot>>,
}

impl Routing {
    fn slots_of(&self, route: Option<&str>) -> &[Slot] {
        route
            .and_then(|r| self.routes.get(r))
            .unwrap_or(&self.default)
    }
}

/// How long [`FanOut::admit_or_wait`] waits between tries at first, and at most.
const WAIT_FIRST: Duration = Duration::from_millis(5);
const WAIT_MAX: Duration = Duration::from_millis(200);

impl FanOut {
    pub fn new(signal: Signal, targets: Vec<Target>) -> Self {
        FanOut {
            signal,
            targets,
            routing: None,
        }
    }

    /// Sends each batch only to the targets of its context's route.
    #[must_use]
    pub fn with_routing(mut self, routing: Routing) -> Self {
        self.routing = Some(Arc::new(routing));
        self
    }

    /// The targets a batch of `context` goes to.
    fn targets_for<'a>(&'a self, context: &Context) -> impl Iterator<Item = &'a Target> + 'a {
        let chosen = self
            .routing
            .as_ref()
            .map(|routing| routing.slots_of(context.route.as_deref()));
        let tenant = chosen.and(context.tenant.clone());
        let (all, some) = match chosen {
            None => (Some(self.targets.iter()), None),
            Some(slots) => (
                None,
                Some(slots.iter().filter_map(move |slot| {
                    let index = match slot {
                        Slot::Target(index) => *index,
                        Slot::PerTenant(by_tenant) => *by_tenant.get(tenant.as_ref()?)?,
                    };
                    self.targets.get(index)
                })),
            ),
        };
        all.into_iter().flatten().chain(some.into_iter().flatten())
    }

    /// Hands `envelope` to every target that has room, without waiting.
    /// Returns what the durable targets among them will say (nothing
    /// without such targets).
    ///
    /// # Errors
    /// [`Full`], with the envelope, when no target had room (nothing was sent).
    pub fn admit(&self, envelope: Envelope) -> Result<Receipts, Full> {
        let mut receipts = Receipts::default();
        let items = envelope.items();
        if items == 0 {
            return Ok(receipts);
        }
        // A slot is room in both the target's item budget and its channel,
        // taken together before anything is sent, so a target counted as
        // having room really gets the batch.
        let mut slots: Vec<_> = self
            .targets_for(&envelope.context)
            .map(|t| {
                let slot = t.tx.try_reserve().ok().and_then(|permit| {
                    let reservation = t.try_reserve(&envelope.context, items)?;
                    Some((permit, reservation))
                });
                (t, slot)
            })
            .collect();
        if slots.is_empty() {
            return Ok(receipts);
        }
        let Some(last) = slots.iter().rposition(|(_, slot)| slot.is_some()) else {
            return Err(Full(envelope));
        };
        // A connector rides along: its room alone does not accept a batch that every
        // exporter or stage refused (the client retries, and the connector sees it then).
        let accepted = |(t, slot): &(&Target, Option<_>)| slot.is_some() && !t.kind.rides_along();
        if !slots.iter().any(accepted) && !slots.iter().all(|(t, _)| t.kind.rides_along()) {
            // Dropping the slots gives their channel permits and reservations back.
            return Err(Full(envelope));
        }
        let mut queued = |target: &Target, envelope: Envelope, reservation| {
            let mut batch = QueuedBatch::new(envelope, reservation);
            if target.durable {
                let (reply, receipt) = tokio::sync::oneshot::channel();
                batch.durable = Some(reply);
                receipts.0.push(receipt);
            }
            batch
        };
        for i in 0..slots.len() {
            let target = slots[i].0;
            match slots[i].1.take() {
                // The last admitting target takes the envelope itself, the others a handle copy.
                Some((permit, reservation)) if i == last => {
                    permit.send(queued(target, envelope, reservation));
                    // Targets after the last admitting one are full.
                    for (target, _) in &slots[i + 1..] {
                        self.full(target, items);
                    }
                    return Ok(receipts);
                }
                Some((permit, reservation)) => {
                    permit.send(queued(target, envelope.clone(), reservation));
                }
                None => self.full(target, items),
            }
        }
        Ok(receipts)
    }

    fn full(&self, target: &Target, items: u64) {
        target.count_dropped(self.signal, items, reason::QUEUE_FULL);
        tracing::debug!(target = %target.id, items, "Target full; items dropped for it.");
    }

    /// Hands `envelope` on like [`FanOut::admit`], but when no target has
    /// room waits and tries again: for data that was already acknowledged
    /// (a timed stage's output, an inline stage's deadline or flush), so that
    /// a full downstream slows the stage (whose own budget then refuses
    /// clients) instead of losing data. Gives up only when `abort` fires
    /// (the drain deadline passed), counting the items as dropped.
    pub async fn admit_or_wait(&self, mut envelope: Envelope, abort: &CancellationToken) {
        let mut wait = WAIT_FIRST;
        loop {
            match self.admit(envelope) {
                // Already acknowledged: a disk queue writes it whatever its room.
                Ok(_receipts) => return,
                Err(Full(back)) => envelope = back,
            }
            tokio::select! {
                biased;
                () = abort.cancelled() => {
                    for target in self.targets_for(&envelope.context) {
                        target.count_dropped(self.signal, envelope.items(), reason::SHUTDOWN);
                    }
                    return;
                }
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(WAIT_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Batch, Context};

    fn envelope(spans: usize) -> Envelope {
        let batch = Batch::decode(Signal::Traces, crate::model::test_payload::traces(7, spans))
            .unwrap()
            .batch;
        Envelope::with_context(Context::default().with_tenant("acme"), batch)
    }

    fn target(id: &str, kind: TargetKind, capacity: u64) -> (Target, mpsc::Receiver<QueuedBatch>) {
        Target::new(id, kind, ItemBudget::new(capacity), 4)
    }

    #[test]
    fn every_target_with_room_gets_the_batch_and_its_context() {
        let (a, mut a_rx) = target("otlp/a", TargetKind::Exporter, 100);
        let (s, mut s_rx) = target("tail_sampling", TargetKind::Stage, 100);
        let fanout = FanOut::new(Signal::Traces, vec![a, s]);
        fanout.admit(envelope(8)).unwrap();
        for rx in [&mut a_rx, &mut s_rx] {
            let got = rx.try_recv().unwrap();
            assert_eq!(got.batch.items(), 8);
            assert_eq!(got.reservation.items(), 8);
            assert_eq!(got.context.tenant(), Some("acme"));
        }
    }

    #[test]
    fn a_full_stage_next_to_a_healthy_exporter_is_counted_not_refused() {
        let (a, mut a_rx) = target("otlp/a", TargetKind::Exporter, 100);
        let (s, mut s_rx) = target("tail_sampling", TargetKind::Stage, 10);
        let _held = s.budget.try_reserve(10).unwrap();
        let fanout = FanOut::new(Signal::Traces, vec![s, a]);
        fanout.admit(envelope(8)).unwrap();
        assert_eq!(a_rx.try_recv().unwrap().batch.items(), 8);
        assert!(s_rx.try_recv().is_err());
    }

    #[test]
    fn nothing_is_sent_when_no_target_has_room() {
        let (a, mut a_rx) = target("otlp/a", TargetKind::Exporter, 10);
        let held = a.budget.try_reserve(10).unwrap();
        let budget = a.budget.clone();
        let fanout = FanOut::new(Signal::Traces, vec![a]);
        let Err(Full(back)) = fanout.admit(envelope(8)) else {
            panic!("must be refused");
        };
        assert_eq!(back.items(), 8, "handed back whole");
        assert!(a_rx.try_recv().is_err());
        drop(held);
        fanout.admit(back).unwrap();
        assert_eq!(budget.used(), 8);
    }

    #[test]
    fn a_connector_with_room_does_not_accept_what_every_other_target_refused() {
        let (s, mut s_rx) = target("tail_sampling", TargetKind::Stage, 10);
        let held = s.budget.try_reserve(10).unwrap();
        let (c, mut c_rx) = target("spanmetrics", TargetKind::Connector, 100);
        let connector_budget = c.budget.clone();
        let fanout = FanOut::new(Signal::Traces, vec![c, s]);
        let Err(Full(back)) = fanout.admit(envelope(8)) else {
            panic!("refused: only the connector had room");
        };
        assert!(
            c_rx.try_recv().is_err(),
            "the connector did not get it either"
        );
        assert_eq!(connector_budget.used(), 0, "and holds nothing for it");
        drop(held);
        fanout.admit(back).unwrap();
        assert_eq!(c_rx.try_recv().unwrap().batch.items(), 8);
        assert_eq!(s_rx.try_recv().unwrap().batch.items(), 8);

        // A full connector next to a stage with room is counted, not refused.
        let _full = connector_budget.try_reserve(100).unwrap();
        fanout.admit(envelope(8)).unwrap();
        assert_eq!(s_rx.try_recv().unwrap().batch.items(), 8);
        assert!(c_rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn admit_or_wait_delivers_once_room_frees_up() {
        let (a, mut a_rx) = target("otlp/a", TargetKind::Exporter, 10);
        let held = a.budget.try_reserve(10).unwrap();
        let fanout = FanOut::new(Signal::Traces, vec![a]);
        let abort = CancellationToken::new();
        let task = tokio::spawn(async move { fanout.admit_or_wait(envelope(8), &abort).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(a_rx.try_recv().is_err(), "still waiting for room");
        drop(held);
        task.await.unwrap();
        assert_eq!(a_rx.try_recv().unwrap().batch.items(), 8);
    }
}
