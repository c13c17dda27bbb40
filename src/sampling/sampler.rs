//! [`TailSampler`]: the timed stage that holds spans per trace until their
//! trace is decided.
//!
//! - A trace is decided `decision_wait` after its first span, or
//!   `decision_wait_after_root` after its root span arrived, if sooner.
//! - Early keep: a span that a span-level policy keeps (an error, a VIP, a
//!   high amount) keeps its trace at once: what is buffered goes out with it,
//!   and the trace's later spans follow without waiting.
//! - Late spans follow the cached decision (bounded FIFO caches of kept and
//!   dropped trace ids).
//! - Bounds: past `num_traces` traces or `max_buffered_bytes` bytes, the
//!   oldest traces are decided early by the same policies; a trace past
//!   `max_trace_bytes` is decided at once. Every forced decision is counted.
//!   Each buffered span also holds one item of the stage's budget, so a full
//!   sampler refuses new data retryably at the fan-out in front of it.
//! - At shutdown every pending trace is decided and flushed.
//!
//! # Cost
//! A request's spans are grouped by trace first (a sort, not a hash map a
//! client could flood with colliding ids), so each trace of a request costs
//! one lookup in the sampler's map, which holds pending traces and remembered
//! decisions alike. Each span is read once on arrival ([`Policies::arrival`]).
//! Held spans are copied into one buffer per trace ([`HeldTrace`]). Due times
//! are two FIFO queues (every trace waits the same `decision_wait`, every
//! root the same `decision_wait_after_root`), not a heap.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
// Trace ids are chosen by clients: std's keyed hasher keeps collision floods
// out (it is hashed once per trace per request, not per span).
use std::collections::hash_map::RandomState;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::time::Instant;

use crate::budget::Reservation;
use crate::model::regroup::{split_by_trace, BatchBuilder, SpanRef};
use crate::model::view::TraceId;
use crate::model::{Context, Envelope, Signal};
use crate::queue::QueuedBatch;
use crate::stage::{StageError, Transform};
use crate::telemetry::metrics::{
    SAMPLING_BASELINE_PERCENT, SAMPLING_DECISIONS, SAMPLING_FORCED, SAMPLING_LATE_SPANS,
    SAMPLING_TRACES_HELD,
};

use super::config::TailSamplingConfig;
use super::held::HeldTrace;
use super::policy::{Arrival, Decision, Policies, PolicyError, ResourceMemo, TraceSpans};

/// What made a trace be decided (the `trigger` label).
mod trigger {
    pub const EARLY: &str = "early";
    pub const WAIT: &str = "decision_wait";
    pub const TRACE_BYTES: &str = "max_trace_bytes";
    pub const BUFFER_FULL: &str = "buffer_full";
    pub const SHUTDOWN: &str = "shutdown";
}

/// A trace waiting for its decision.
#[derive(Debug)]
struct Pending {
    spans: HeldTrace,
    first: Instant,
    root_at: Option<Instant>,
    /// One item per buffered span, in the stage's budget.
    reservation: Reservation,
    context: Context,
}

/// What the sampler knows about a trace id.
#[derive(Debug)]
enum Slot {
    Pending(Box<Pending>),
    /// Kept by this policy: later spans follow.
    Kept(usize),
    /// Dropped: later spans are dropped.
    Dropped,
}

/// Policy index counted for a drop that no policy made.
const NO_POLICY: usize = usize::MAX;

/// Remembered decisions of one kind, forgotten first in, first out.
#[derive(Debug)]
struct Remembered {
    order: VecDeque<TraceId>,
    capacity: usize,
}

/// A due time and the trace it belongs to; the trace may since have been
/// decided (then the entry is skipped).
type Due = (Instant, TraceId);

/// The tail sampler of the traces pipeline.
#[derive(Debug)]
pub struct TailSampler {
    policies: Policies,
    wait: Duration,
    after_root: Duration,
    num_traces: usize,
    max_bytes: usize,
    max_trace_bytes: usize,
    /// Pending traces and remembered decisions.
    traces: HashMap<TraceId, Slot, RandomState>,
    pending: usize,
    held_bytes: usize,
    /// `first + decision_wait` per pending trace, in arrival order (so also
    /// the order in which bounds decide the oldest).
    waits: VecDeque<Due>,
    /// `root_at + decision_wait_after_root`, in arrival order of the roots.
    roots: VecDeque<Due>,
    kept: Remembered,
    dropped: Remembered,
    /// What goes out at the end of the current call, per context.
    out: HashMap<Context, BatchBuilder>,
    /// Per policy: the encoded span attribute naming it (`decision_attribute`), if set.
    decision_fields: Vec<Option<Vec<u8>>>,
    /// The adaptive baseline, when `target_spans_per_second` is set.
    adaptive: Option<Adaptive>,
    /// Decision counters by (policy, kept, trigger), registered once.
    counters: HashMap<(usize, bool, &'static str), metrics::Counter>,
    late_kept: metrics::Counter,
    late_dropped: metrics::Counter,
    traces_held: metrics::Gauge,
    /// Scratch space reused across calls.
    memo: ResourceMemo,
    arrivals: Vec<Arrival>,
}

/// Moves the baseline share so kept spans per second track a target.
///
/// Each second it counts the spans kept by the must-keep policies and the
/// spans of traces the baseline decided on; the share for the next second is
/// what is left of the target divided by those candidates, within bounds.
#[derive(Debug)]
struct Adaptive {
    target: f64,
    min: f64,
    max: f64,
    percent: f64,
    window_start: Instant,
    must_keep_spans: u64,
    candidate_spans: u64,
}

impl Adaptive {
    /// Ends the window if a second has passed; returns the new share.
    fn tick(&mut self, now: Instant) -> Option<f64> {
        let elapsed = now.duration_since(self.window_start).as_secs_f64();
        if elapsed < 1.0 {
            return None;
        }
        if self.candidate_spans > 0 {
            let left = (self.target - self.must_keep_spans as f64 / elapsed).max(0.0);
            let wanted = left / (self.candidate_spans as f64 / elapsed) * 100.0;
            self.percent = wanted.clamp(self.min, self.max);
        }
        self.window_start = now;
        self.must_keep_spans = 0;
        self.candidate_spans = 0;
        Some(self.percent)
    }
}

impl TailSampler {
    /// A sampler from validated config.
    ///
    /// # Errors
    /// [`PolicyError`] when a policy does not compile.
    pub fn new(config: &TailSamplingConfig) -> Result<Self, PolicyError> {
        Ok(TailSampler {
            policies: Policies::compile(&config.policies, config.decision)?,
            wait: config.decision_wait.get(),
            after_root: config.decision_wait_after_root.get(),
            num_traces: config.num_traces.max(1),
            max_bytes: config.max_buffered_bytes.as_usize(),
            max_trace_bytes: config.max_trace_bytes.as_usize(),
            traces: HashMap::with_capacity_and_hasher(
                config.expected_new_traces_per_sec,
                RandomState::default(),
            ),
            pending: 0,
            held_bytes: 0,
            waits: VecDeque::new(),
            roots: VecDeque::new(),
            kept: Remembered {
                order: VecDeque::new(),
                capacity: config.decision_cache.sampled_cache_size,
            },
            dropped: Remembered {
                order: VecDeque::new(),
                capacity: config.decision_cache.non_sampled_cache_size,
            },
            out: HashMap::new(),
            counters: HashMap::new(),
            late_kept: counter!(SAMPLING_LATE_SPANS, "decision" => "keep"),
            late_dropped: counter!(SAMPLING_LATE_SPANS, "decision" => "drop"),
            traces_held: gauge!(SAMPLING_TRACES_HELD),
            memo: ResourceMemo::default(),
            arrivals: Vec::new(),
            adaptive: config.target_spans_per_second.map(|target| Adaptive {
                target: target as f64,
                min: config.min_percent,
                max: config.max_percent,
                // Starts from the share as written (the first probabilistic policy's).
                percent: config
                    .policies
                    .iter()
                    .find_map(|p| p.probabilistic.as_ref().map(|p| p.sampling_percentage))
                    .unwrap_or(config.max_percent)
                    .clamp(config.min_percent, config.max_percent),
                window_start: Instant::now(),
                must_keep_spans: 0,
                candidate_spans: 0,
            }),
            decision_fields: config
                .policies
                .iter()
                .map(|p| {
                    config
                        .decision_attribute
                        .as_ref()
                        .map(|key| decision_field(key, &p.name))
                })
                .collect(),
        })
    }

    /// The adaptive baseline's current share in percent, when it is on.
    pub fn baseline_percent(&self) -> Option<f64> {
        self.adaptive.as_ref().map(|a| a.percent)
    }

    /// Counts a decision for the adaptive baseline and moves it each second.
    fn adapt(&mut self, decision: Decision, spans: usize, now: Instant) {
        let Some(adaptive) = self.adaptive.as_mut() else {
            return;
        };
        match decision {
            Decision::Keep(i) if !self.policies.is_baseline(i) => {
                adaptive.must_keep_spans += spans as u64
            }
            _ => adaptive.candidate_spans += spans as u64,
        }
        if let Some(percent) = adaptive.tick(now) {
            self.policies.set_baseline_percent(percent);
            gauge!(SAMPLING_BASELINE_PERCENT).set(percent);
        }
    }

    /// Traces waiting for a decision.
    pub fn traces_held(&self) -> usize {
        self.pending
    }

    /// Bytes of spans waiting for a decision.
    pub fn bytes_held(&self) -> usize {
        self.held_bytes
    }

    /// Sends `spans` of a trace that `policy` kept.
    fn forward(&mut self, context: &Context, spans: impl Iterator<Item = SpanRef>, policy: usize) {
        let field = self.decision_fields.get(policy).and_then(Option::as_ref);
        let builder = match self.out.get_mut(context) {
            Some(builder) => builder,
            None => self
                .out
                .entry(context.clone())
                .or_insert_with(|| BatchBuilder::new(Signal::Traces)),
        };
        for mut span in spans {
            if let Some(field) = field {
                span.append_fields(field);
            }
            builder.push(span);
        }
    }

    fn emit(&mut self, out: &mut Vec<Envelope>) {
        for (context, builder) in self.out.drain() {
            if !builder.is_empty() {
                out.push(Envelope::with_context(context, builder.build()));
            }
        }
        self.traces_held.set(self.pending as f64);
    }

    /// Records the decision on `id` in place of its pending entry (if any,
    /// which is returned), and forgets the oldest remembered decision of that
    /// kind past its cache size.
    fn settle(&mut self, id: TraceId, decision: Decision) -> Option<Box<Pending>> {
        let (slot, memory) = match decision {
            Decision::Keep(policy) => (Slot::Kept(policy), &mut self.kept),
            Decision::Drop(_) => (Slot::Dropped, &mut self.dropped),
        };
        let kept = matches!(slot, Slot::Kept(_));
        let previous = if memory.capacity == 0 {
            self.traces.remove(&id)
        } else {
            memory.order.push_back(id);
            self.traces.insert(id, slot)
        };
        while memory.order.len() > memory.capacity {
            let Some(old) = memory.order.pop_front() else {
                break;
            };
            // The id may be pending again (decided, forgotten, seen anew): keep that.
            if let Entry::Occupied(entry) = self.traces.entry(old) {
                let same_kind = match entry.get() {
                    Slot::Kept(_) => kept,
                    Slot::Dropped => !kept,
                    Slot::Pending(_) => false,
                };
                if same_kind {
                    entry.remove();
                }
            }
        }
        match previous {
            Some(Slot::Pending(pending)) => {
                self.pending -= 1;
                self.held_bytes = self.held_bytes.saturating_sub(pending.spans.bytes());
                Some(pending)
            }
            _ => None,
        }
    }

    /// Decides `id` (if still pending) by the policies.
    fn decide(&mut self, id: TraceId, trigger: &'static str) {
        let Some(Slot::Pending(pending)) = self.traces.get(&id) else {
            return;
        };
        // Every span was checked against the early-keep policies on arrival.
        let decision = self.policies.decide_after_early(&TraceSpans {
            trace_id: &id,
            spans: &pending.spans,
        });
        let Some(pending) = self.settle(id, decision) else {
            return;
        };
        self.count(decision, trigger);
        self.adapt(decision, pending.spans.len(), Instant::now());
        if let Decision::Keep(policy) = decision {
            let Pending { spans, context, .. } = *pending;
            self.forward(&context, spans.into_spans(), policy);
        }
    }

    fn count(&mut self, decision: Decision, trigger: &'static str) {
        let (index, kept) = match decision {
            Decision::Keep(i) => (i, true),
            Decision::Drop(Some(i)) => (i, false),
            Decision::Drop(None) => (NO_POLICY, false),
        };
        let policies = &self.policies;
        self.counters
            .entry((index, kept, trigger))
            .or_insert_with(|| {
                let policy = policies.name(index).to_owned();
                let outcome = if kept { "keep" } else { "drop" };
                counter!(SAMPLING_DECISIONS, "policy" => policy, "decision" => outcome, "trigger" => trigger)
            })
            .increment(1);
        if matches!(trigger, trigger::TRACE_BYTES | trigger::BUFFER_FULL) {
            counter!(SAMPLING_FORCED, "reason" => trigger).increment(1);
        }
    }

    /// Whether a `waits` entry is the due time of the trace as it is pending now.
    fn wait_is_current(&self, (due, id): &Due) -> bool {
        matches!(self.traces.get(id), Some(Slot::Pending(p)) if p.first + self.wait == *due)
    }

    fn root_is_current(&self, (due, id): &Due) -> bool {
        matches!(
            self.traces.get(id),
            Some(Slot::Pending(p)) if p.root_at.is_some_and(|r| r + self.after_root == *due)
        )
    }

    /// Decides the oldest traces until both bounds hold again.
    fn enforce_bounds(&mut self) {
        while self.pending > self.num_traces || self.held_bytes > self.max_bytes {
            let Some(entry) = self.waits.pop_front() else {
                return;
            };
            if self.wait_is_current(&entry) {
                self.decide(entry.1, trigger::BUFFER_FULL);
            }
        }
    }

    /// Drops the queue entries of decided traces once they outnumber the
    /// live ones (traces kept early leave theirs behind), so the queues stay
    /// bounded by the pending traces, not by the arrival rate.
    fn compact_queues(&mut self) {
        let limit = 2 * self.pending + 1024;
        if self.waits.len() > limit {
            let mut waits = std::mem::take(&mut self.waits);
            waits.retain(|e| self.wait_is_current(e));
            self.waits = waits;
        }
        if self.roots.len() > limit {
            let mut roots = std::mem::take(&mut self.roots);
            roots.retain(|e| self.root_is_current(e));
            self.roots = roots;
        }
    }

    /// Spans of `id` arriving after its decision.
    fn late(&mut self, context: &Context, id: TraceId, spans: &[SpanRef]) -> bool {
        match self.traces.get(&id) {
            Some(Slot::Kept(policy)) => {
                let policy = *policy;
                self.late_kept.increment(spans.len() as u64);
                if let Some(adaptive) = self.adaptive.as_mut() {
                    if !self.policies.is_baseline(policy) {
                        adaptive.must_keep_spans += spans.len() as u64;
                    }
                }
                self.forward(context, spans.iter().cloned(), policy);
                true
            }
            Some(Slot::Dropped) => {
                self.late_dropped.increment(spans.len() as u64);
                true
            }
            _ => false,
        }
    }

    /// The spans of one trace from one request.
    fn admit(
        &mut self,
        context: &Context,
        id: TraceId,
        spans: &[SpanRef],
        reservation: Reservation,
        now: Instant,
    ) {
        if self.late(context, id, spans) {
            return;
        }
        let mut arrivals = std::mem::take(&mut self.arrivals);
        arrivals.clear();
        let mut keep = None;
        for span in spans {
            let arrival = self.policies.arrival(&span.span(), &mut self.memo);
            if arrival.keep.is_some() {
                keep = arrival.keep;
                break;
            }
            arrivals.push(arrival);
        }
        if let Some(policy) = keep {
            self.arrivals = arrivals;
            self.count(Decision::Keep(policy), trigger::EARLY);
            let held = self.settle(id, Decision::Keep(policy));
            let mut kept = spans.len();
            if let Some(pending) = held {
                kept += pending.spans.len();
                let Pending {
                    spans: held,
                    context: held_context,
                    ..
                } = *pending;
                self.forward(&held_context, held.into_spans(), policy);
            }
            self.adapt(Decision::Keep(policy), kept, now);
            self.forward(context, spans.iter().cloned(), policy);
            return;
        }
        let bytes: usize = spans.iter().map(|s| s.item().len()).sum();
        let slot = match self.traces.entry(id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.pending += 1;
                self.waits.push_back((now + self.wait, id));
                entry.insert(Slot::Pending(Box::new(Pending {
                    spans: HeldTrace::new(),
                    first: now,
                    root_at: None,
                    reservation: Reservation::detached(0),
                    context: context.clone(),
                })))
            }
        };
        let Slot::Pending(pending) = slot else {
            // `late` handled the decided ones.
            self.arrivals = arrivals;
            return;
        };
        pending.spans.reserve(spans.len(), bytes);
        for (span, arrival) in spans.iter().zip(&arrivals) {
            pending.spans.push(span, arrival.start, arrival.end);
        }
        pending.reservation.merge(reservation);
        if pending.root_at.is_none() && arrivals.iter().any(|a| a.root) {
            pending.root_at = Some(now);
            self.roots.push_back((now + self.after_root, id));
        }
        let too_big = pending.spans.bytes() > self.max_trace_bytes;
        self.held_bytes += bytes;
        self.arrivals = arrivals;
        if too_big {
            self.decide(id, trigger::TRACE_BYTES);
        }
    }
}

/// Cuts `item` by trace id into the parts of `shards` shards (every span of a
/// trace in the same part), each holding its items of the reservation.
pub fn split_by_shard(item: QueuedBatch, shards: usize) -> Vec<(usize, QueuedBatch)> {
    let QueuedBatch {
        batch,
        context,
        mut reservation,
        ..
    } = item;
    let salt = b"shard";
    crate::model::regroup::partition(&batch, |span| {
        span.span().trace_id().map_or(0, |id| {
            (super::policy::trace_hash(&id, salt) % shards.max(1) as u64) as usize
        })
    })
    .into_iter()
    .map(|(shard, part)| {
        let held = reservation.split(part.items());
        (
            shard,
            QueuedBatch {
                batch: part,
                context: context.clone(),
                reservation: held,
                durable: None,
            },
        )
    })
    .collect()
}

/// `Span.attributes` (field 9) holding `key = policy` as a string, encoded.
fn decision_field(key: &str, policy: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;
    // A span with nothing but this attribute encodes to exactly that one field.
    Span {
        attributes: vec![KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(policy.to_owned())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

impl Transform for TailSampler {
    type In = QueuedBatch;
    type Out = Envelope;

    fn name(&self) -> &'static str {
        "tail_sampling"
    }

    fn process(&mut self, input: QueuedBatch, out: &mut Vec<Envelope>) -> Result<(), StageError> {
        let QueuedBatch {
            batch,
            context,
            mut reservation,
            ..
        } = input;
        let now = Instant::now();
        self.memo.clear();
        // Group by trace with a sort of (id, position) pairs, so spans of a
        // trace keep their order and only small keys move.
        let mut spans: Vec<Option<SpanRef>> = Vec::with_capacity(batch.items() as usize);
        let mut order: Vec<(TraceId, u32)> = Vec::with_capacity(batch.items() as usize);
        for (id, span) in split_by_trace(&batch) {
            order.push((id, spans.len() as u32));
            spans.push(Some(span));
        }
        order.sort_unstable();
        let mut group: Vec<SpanRef> = Vec::new();
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            group.clear();
            group.extend(run.iter().filter_map(|&(_, at)| spans[at as usize].take()));
            // One item of the budget per span, released when the span leaves.
            let items = reservation.split(group.len() as u64);
            self.admit(&context, run[0].0, &group, items, now);
        }
        self.enforce_bounds();
        self.compact_queues();
        self.emit(out);
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        // A stale entry in front only makes `on_deadline` run early and skip it.
        let wait = self.waits.front().map(|(due, _)| *due);
        let root = self.roots.front().map(|(due, _)| *due);
        match (wait, root) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Envelope>) {
        while let Some(entry) = self.roots.front().copied() {
            if entry.0 > now {
                break;
            }
            self.roots.pop_front();
            if self.root_is_current(&entry) {
                self.decide(entry.1, trigger::WAIT);
            }
        }
        while let Some(entry) = self.waits.front().copied() {
            if entry.0 > now {
                break;
            }
            self.waits.pop_front();
            if self.wait_is_current(&entry) {
                self.decide(entry.1, trigger::WAIT);
            }
        }
        self.emit(out);
    }

    fn flush(&mut self, out: &mut Vec<Envelope>) {
        let ids: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Pending(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.decide(id, trigger::SHUTDOWN);
        }
        self.waits.clear();
        self.roots.clear();
        self.emit(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Batch;
    use crate::sampling::config::TailSamplingConfig;
    use crate::testkit::{kv_bool, kv_double, kv_str};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    const SHOP: &str = crate::testkit::SHOP_SAMPLING;

    fn sampler(toml_text: &str) -> TailSampler {
        let config: TailSamplingConfig = toml::from_str(toml_text).expect("config");
        TailSampler::new(&config).expect("policies compile")
    }

    /// Spans `first..first + n` of trace `trace`; span 0 is the root.
    fn spans(
        trace: u32,
        first: u32,
        n: u32,
        attributes: Vec<KeyValue>,
        error: bool,
    ) -> QueuedBatch {
        let mut trace_id = [0u8; 16];
        trace_id[..4].copy_from_slice(&trace.to_be_bytes());
        trace_id[15] = 1;
        let spans = (first..first + n)
            .map(|i| {
                let mut span_id = [0u8; 8];
                span_id[..4].copy_from_slice(&(i + 1).to_be_bytes());
                let mut parent = [0u8; 8];
                parent[3] = 1;
                Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id: if i == 0 { Vec::new() } else { parent.to_vec() },
                    name: format!("op-{i}"),
                    start_time_unix_nano: 1_000,
                    end_time_unix_nano: 2_000,
                    attributes: attributes.clone(),
                    status: error.then(|| Status {
                        code: status::StatusCode::Error as i32,
                        message: String::new(),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(crate::testkit::resource("checkout", 0)),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = Batch::decode(Signal::Traces, request.encode_to_vec().into())
            .expect("valid")
            .batch;
        QueuedBatch::detached(batch)
    }

    fn items(out: &[Envelope]) -> u64 {
        out.iter().map(Envelope::items).sum()
    }

    #[tokio::test(start_paused = true)]
    async fn must_keep_spans_keep_their_trace_at_once_and_later_spans_follow() {
        let mut s = sampler(SHOP);
        let mut out = Vec::new();
        for (trace, attributes, error) in [
            (1, vec![], true),
            (2, vec![kv_bool("user.vip", true)], false),
            (3, vec![kv_double("order.amount", 1000.01)], false),
        ] {
            // Two ordinary spans wait; the third decides the trace.
            s.process(spans(trace, 1, 2, vec![], false), &mut out)
                .unwrap();
            assert_eq!(items(&out), 0, "nothing decided yet");
            s.process(spans(trace, 3, 1, attributes, error), &mut out)
                .unwrap();
            assert_eq!(
                items(&out),
                3,
                "trace {trace}: the buffered spans go with it"
            );
            out.clear();
            // Spans 20 s later follow the decision at once.
            tokio::time::advance(Duration::from_secs(20)).await;
            s.process(spans(trace, 4, 2, vec![], false), &mut out)
                .unwrap();
            assert_eq!(items(&out), 2, "trace {trace}: late spans follow");
            out.clear();
        }
        assert_eq!(s.traces_held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_amount_of_exactly_1000_is_not_high_value() {
        let mut s = sampler(&SHOP.replace("sampling_percentage = 10", "sampling_percentage = 0"));
        let mut out = Vec::new();
        s.process(
            spans(7, 0, 3, vec![kv_double("order.amount", 1000.0)], false),
            &mut out,
        )
        .unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        s.on_deadline(Instant::now(), &mut out);
        assert_eq!(items(&out), 0, "dropped at its decision");
        // The dropped decision is cached: a late span is dropped too.
        s.process(spans(7, 3, 1, vec![], false), &mut out).unwrap();
        assert_eq!(items(&out), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_baseline_keeps_about_ten_percent_of_ordinary_traces_whole() {
        let mut s = sampler(SHOP);
        let mut out = Vec::new();
        for trace in 0..20_000 {
            s.process(
                spans(trace, 0, 3, vec![kv_str("user.id", "u")], false),
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(items(&out), 0);
        tokio::time::advance(Duration::from_secs(3)).await;
        s.on_deadline(Instant::now(), &mut out);
        let kept = items(&out);
        assert_eq!(kept % 3, 0, "traces are kept whole");
        let share = kept as f64 / 3.0 / 20_000.0;
        assert!((0.085..=0.115).contains(&share), "baseline share {share}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trace_is_decided_after_its_root_plus_the_short_wait_or_after_decision_wait() {
        let mut s = sampler(&SHOP.replace("sampling_percentage = 10", "sampling_percentage = 100"));
        let mut out = Vec::new();
        // Without its root: decided 10 s after the first span.
        s.process(spans(1, 1, 2, vec![], false), &mut out).unwrap();
        // With its root: decided 2 s after the root arrived.
        s.process(spans(2, 0, 2, vec![], false), &mut out).unwrap();
        tokio::time::advance(Duration::from_millis(2100)).await;
        s.on_deadline(Instant::now(), &mut out);
        assert_eq!(items(&out), 2, "the rooted trace only");
        out.clear();
        assert_eq!(
            s.deadline(),
            Some(Instant::now() + Duration::from_millis(7900))
        );
        tokio::time::advance(Duration::from_millis(7900)).await;
        s.on_deadline(Instant::now(), &mut out);
        assert_eq!(items(&out), 2, "the rootless trace at decision_wait");
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_decide_the_oldest_traces_early_and_shutdown_decides_the_rest() {
        let mut s = sampler(&format!(
            "num_traces = 10\n{}",
            SHOP.replace("sampling_percentage = 10", "sampling_percentage = 100")
        ));
        let mut out = Vec::new();
        for trace in 0..100 {
            s.process(spans(trace, 1, 2, vec![], false), &mut out)
                .unwrap();
            assert!(s.traces_held() <= 10);
        }
        assert_eq!(
            items(&out),
            90 * 2,
            "the 90 oldest were decided early (kept at 100 %)"
        );
        out.clear();
        s.flush(&mut out);
        assert_eq!(items(&out), 10 * 2, "the rest at shutdown");
        assert_eq!((s.traces_held(), s.bytes_held()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drop_policy_vetoes_in_any_mode_and_decides_in_order_in_first_match_mode() {
        let policies = r#"
[[policies]]
name = "no-health"
type = "drop"
drop = { drop_sub_policy = [{ name = "health", type = "string_attribute", string_attribute = { key = "http.route", values = ["/health.*"], enabled_regex_matching = true } }] }
[[policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
"#;
        for mode in ["any", "first_match"] {
            let mut s = sampler(&format!("decision = \"{mode}\"\n{policies}"));
            let mut out = Vec::new();
            // An error on a health check: dropped (the drop policy comes first / vetoes).
            s.process(
                spans(1, 0, 2, vec![kv_str("http.route", "/healthz")], true),
                &mut out,
            )
            .unwrap();
            // An error elsewhere: kept.
            s.process(
                spans(2, 0, 2, vec![kv_str("http.route", "/cart")], true),
                &mut out,
            )
            .unwrap();
            tokio::time::advance(Duration::from_secs(11)).await;
            s.on_deadline(Instant::now(), &mut out);
            assert_eq!(items(&out), 2, "{mode}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn kept_spans_can_name_the_policy_that_kept_them() {
        let mut s = sampler(&format!("decision_attribute = \"sampling.policy\"\n{SHOP}"));
        let mut out = Vec::new();
        s.process(spans(5, 1, 2, vec![], false), &mut out).unwrap();
        s.process(spans(5, 3, 1, vec![], true), &mut out).unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        s.process(spans(5, 4, 1, vec![], false), &mut out).unwrap();
        let batch = out.iter().fold(Batch::empty(Signal::Traces), |mut all, e| {
            all.append(e.batch.clone());
            all
        });
        let request = ExportTraceServiceRequest::decode(batch.to_bytes()).unwrap();
        let spans: Vec<_> = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        assert_eq!(
            spans.len(),
            4,
            "the buffered, the deciding and the late span"
        );
        for span in spans {
            let named = span
                .attributes
                .iter()
                .find(|kv| kv.key == "sampling.policy");
            assert_eq!(
                named.and_then(|kv| kv.value.clone()).and_then(|v| v.value),
                Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "errors".into()
                    )
                )
            );
        }
        assert!(
            Batch::decode(Signal::Traces, batch.to_bytes()).is_ok(),
            "still valid OTLP"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiting_keeps_traces_while_their_spans_fit_in_the_second() {
        let mut s = sampler(
            "[[policies]]\nname = \"cap\"\ntype = \"rate_limiting\"\nrate_limiting = { spans_per_second = 10 }\n",
        );
        let mut out = Vec::new();
        for trace in 0..20 {
            s.process(spans(trace, 1, 3, vec![], false), &mut out)
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        s.on_deadline(Instant::now(), &mut out);
        assert_eq!(items(&out), 9, "three traces of three spans fit in ten");
        out.clear();
        for trace in 20..40 {
            s.process(spans(trace, 1, 3, vec![], false), &mut out)
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        s.on_deadline(Instant::now(), &mut out);
        assert_eq!(items(&out), 9, "and three more in a later second");
    }

    #[tokio::test(start_paused = true)]
    async fn the_adaptive_baseline_tracks_the_target_within_its_bounds() {
        // Per second: 100 error traces (300 must-keep spans) and 2000 ordinary traces (6000 spans).
        let run = |target: u64| async move {
            let mut s = sampler(&format!("target_spans_per_second = {target}\n{SHOP}"));
            let mut out = Vec::new();
            let mut trace = 0;
            let mut kept_last_second = 0;
            for _second in 0..6 {
                out.clear();
                for i in 0..2100 {
                    s.process(spans(trace, 0, 3, vec![], i < 100), &mut out)
                        .unwrap();
                    trace += 1;
                }
                tokio::time::advance(Duration::from_secs(1)).await;
                s.on_deadline(Instant::now(), &mut out);
                kept_last_second = items(&out);
            }
            (s.baseline_percent().unwrap(), kept_last_second)
        };
        let (percent, kept) = run(1000).await;
        // (1000 - 300) / 6000 = 11.7 %: kept spans near the target.
        assert!((9.0..=14.5).contains(&percent), "{percent}");
        assert!(
            (800..=1250).contains(&kept),
            "{kept} spans kept in the last second"
        );
        assert_eq!(run(200).await.0, 5.0, "never under min_percent");
        assert_eq!(run(1_000_000).await.0, 100.0, "never over max_percent");
    }

    #[test]
    fn sharding_keeps_each_trace_whole_and_the_reservation_with_its_items() {
        let budget = crate::budget::ItemBudget::new(100_000);
        let batch = crate::testkit::batch(Signal::Traces, 3, 512);
        let items = batch.items();
        let item = QueuedBatch {
            batch,
            context: Context::default().with_tenant("acme"),
            reservation: budget.try_reserve(items).unwrap(),
            durable: None,
        };
        let parts = split_by_shard(item, 4);
        assert!(parts.len() > 1, "spread over shards");
        let mut shard_of = std::collections::HashMap::new();
        let mut total = 0;
        for (shard, part) in &parts {
            assert_eq!(part.reservation.items(), part.batch.items());
            assert_eq!(part.context.tenant(), Some("acme"));
            total += part.batch.items();
            for (id, _) in split_by_trace(&part.batch) {
                assert_eq!(
                    *shard_of.entry(id).or_insert(*shard),
                    *shard,
                    "a trace in one shard"
                );
            }
        }
        assert_eq!(total, items);
        assert_eq!(budget.used(), items);
        drop(parts);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn buffered_spans_hold_one_budget_item_each_until_they_leave() {
        let budget = crate::budget::ItemBudget::new(1000);
        let mut s = sampler(SHOP);
        let mut item = spans(1, 1, 4, vec![], false);
        item.reservation = budget.try_reserve(4).unwrap();
        let mut out = Vec::new();
        s.process(item, &mut out).unwrap();
        assert_eq!(budget.used(), 4);
        s.flush(&mut out);
        assert_eq!(budget.used(), 0);
    }
}
