//! The circuit breaker of one exporter: stops every worker from sending to a
//! backend that keeps failing, and lets one batch at a time probe it.
//!
//! ```text
//!            N retryable failures in a row,
//!            or failure_ratio of ≥ min_requests attempts in window
//!   Closed ─────────────────────────────────────────────► Open (wait: open_initial)
//!     ▲                                                     │ the wait is over
//!     │ the probe succeeds (or partially)                   ▼
//!     └──────────────────────────────────────────────── HalfOpen: one worker sends
//!                                                           │ one real batch, the
//!                the probe fails: Open, the wait doubled ◄──┘ others keep waiting
//! ```
//!
//! Workers ask [`CircuitBreaker::admit`] before every attempt and report the
//! attempt's result on the [`Permit`] they got. While the breaker is open
//! `admit` sleeps (until the wait is over, a state change, or the abort
//! token): no attempts are made and no CPU is spent, so batches stay in the
//! queue and the exporter's budget pushes back on the receivers as usual.
//!
//! # What counts
//! - A retryable failure ([`ExportError::Retryable`]: 5xx, 429, connect errors,
//!   timeouts) counts against the backend.
//! - Success, and a partial success ([`ExportError::Partial`]: the backend
//!   answered and took some items), count for it.
//! - A permanent error (400, 413: [`ExportError::Permanent`]) counts for
//!   neither: it says nothing about the backend's health, never trips the
//!   breaker, and the sender drops the batch with its counted reason. A probe
//!   that ends so hands the probe to the next waiting worker.
//! - Results of attempts admitted before the last state change are ignored:
//!   a request that was in flight when the breaker opened neither re-opens
//!   nor closes it.
//!
//! # The open wait
//! The first open wait is `open_initial`; each failed probe doubles it, up to
//! `open_max`; a successful probe resets it. The wait is drawn from
//! `base * (1 ± JITTER)` (capped at `open_max`) so the exporters of many
//! gateways do not probe in step, and it is never shorter than the
//! `Retry-After` (or gRPC `RetryInfo`) of the failure that opened it.
//!
//! Hand-written rather than taken from a crate: the breakers on crates.io
//! (`failsafe`, `recloser`) reject calls while open instead of parking the
//! caller until a probe decides, know nothing of `Retry-After`, and keep
//! their own clock, so they could not be driven on tokio's paused clock.
//!
//! Time is `tokio::time`, so tests run on a paused clock.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exporter::{ExportError, ExportOutcome};
use crate::settings::breaker::CircuitBreakerConfig;
use crate::telemetry::admin::ReadinessCheck;
use crate::telemetry::metrics::{EXPORTER_CIRCUIT_STATE, EXPORTER_CIRCUIT_TRANSITIONS};

/// Each open wait is drawn from `base * (1 ± JITTER)`.
pub const JITTER: f64 = 0.2;

/// Buckets of the failure-ratio window: it slides in steps of `window / WINDOW_BUCKETS`.
const WINDOW_BUCKETS: usize = 10;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts go through.
    Closed,
    /// No attempts until the open wait is over.
    Open,
    /// One probe is (or may be) in flight; everyone else waits for its result.
    HalfOpen,
}

impl CircuitState {
    /// The value of the `otlp_gateway_exporter_circuit_state` gauge.
    pub fn code(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::Open => 1.0,
            CircuitState::HalfOpen => 2.0,
        }
    }

    /// The `to` label of `otlp_gateway_exporter_circuit_transitions_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// What one attempt said about the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered (fully or partially).
    Healthy,
    /// It failed retryably, maybe with a delay of its own.
    Failing { retry_after: Option<Duration> },
    /// Nothing either way (a permanent error, an attempt given up).
    Neutral,
}

impl Verdict {
    /// How an attempt's `result` counts for the breaker (see the module docs).
    pub fn of(result: &Result<ExportOutcome, ExportError>) -> Verdict {
        match result {
            Ok(_) | Err(ExportError::Partial { .. }) => Verdict::Healthy,
            Err(ExportError::Retryable { retry_after, .. }) => Verdict::Failing {
                retry_after: *retry_after,
            },
            Err(ExportError::Permanent { .. }) => Verdict::Neutral,
        }
    }
}

/// One exporter's circuit breaker, shared by all its workers (and partitions).
#[derive(Debug)]
pub struct CircuitBreaker {
    exporter: String,
    consecutive_failures: u32,
    failure_ratio: f64,
    min_requests: u32,
    open_initial: Duration,
    open_max: Duration,
    inner: Mutex<Inner>,
    /// Bumped on every change a waiting worker must see.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every state transition; a [`Permit`] of an older one is stale.
    generation: u64,
    /// Retryable failures in a row while closed.
    consecutive: u32,
    window: FailureWindow,
    /// The un-jittered open wait of the next opening.
    open_base: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Phase {
    fn state(self) -> CircuitState {
        match self {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

impl CircuitBreaker {
    /// The breaker of exporter `exporter` (its id, the metrics label), closed.
    /// Out-of-range settings are clamped (validation reports them).
    pub fn new(exporter: &str, config: &CircuitBreakerConfig) -> Self {
        let open_initial = config.open_initial.get().max(Duration::from_millis(1));
        let failure_ratio = if config.failure_ratio.is_finite() {
            config.failure_ratio.clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            1.0
        };
        gauge!(EXPORTER_CIRCUIT_STATE, "exporter" => exporter.to_owned())
            .set(CircuitState::Closed.code());
        CircuitBreaker {
            exporter: exporter.to_owned(),
            consecutive_failures: config.consecutive_failures.max(1),
            failure_ratio,
            min_requests: config.min_requests.max(1),
            open_initial,
            open_max: config.open_max.get().max(open_initial),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation: 0,
                consecutive: 0,
                window: FailureWindow::new(config.window.get()),
                open_base: open_initial,
            }),
            changed: watch::Sender::new(0),
        }
    }

    /// The exporter id it guards.
    pub fn exporter(&self) -> &str {
        &self.exporter
    }

    pub fn state(&self) -> CircuitState {
        self.lock().phase.state()
    }

    /// Waits until an attempt may be made: at once while closed; while open,
    /// until the wait is over and this worker becomes the one probe, or until
    /// a probe closed the breaker. `None` when `cancel` fired first.
    pub async fn admit(&self, cancel: &CancellationToken) -> Option<Permit<'_>> {
        // Subscribed before looking, so no change after the look is missed.
        let mut changed = self.changed.subscribe();
        loop {
            let wake_at = {
                let mut inner = self.lock();
                match inner.phase {
                    Phase::Closed => return Some(self.permit(&inner, false)),
                    Phase::Open { until } if Instant::now() >= until => {
                        self.transition(&mut inner, Phase::HalfOpen { probing: true });
                        return Some(self.permit(&inner, true));
                    }
                    Phase::Open { until } => Some(until),
                    Phase::HalfOpen { probing: false } => {
                        inner.phase = Phase::HalfOpen { probing: true };
                        return Some(self.permit(&inner, true));
                    }
                    Phase::HalfOpen { probing: true } => None,
                }
            };
            if cancel.is_cancelled() {
                return None;
            }
            let until_open_over = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                // Cannot fail: `self` holds the sender.
                _ = changed.changed() => {}
                () = until_open_over => {}
            }
        }
    }

    fn permit(&self, inner: &Inner, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            generation: inner.generation,
            probe,
            recorded: false,
        }
    }

    /// Counts what an attempt admitted under `generation` said.
    fn record(&self, probe: bool, generation: u64, verdict: Verdict) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let now = Instant::now();
        match (inner.phase, probe) {
            (Phase::HalfOpen { .. }, true) => match verdict {
                Verdict::Healthy => {
                    inner.open_base = self.open_initial;
                    self.transition(&mut inner, Phase::Closed);
                }
                Verdict::Failing { retry_after } => {
                    inner.open_base = inner.open_base.saturating_mul(2).min(self.open_max);
                    self.open(&mut inner, now, retry_after);
                }
                Verdict::Neutral => {
                    // The next waiting worker probes.
                    inner.phase = Phase::HalfOpen { probing: false };
                    self.changed.send_modify(|n| *n = n.wrapping_add(1));
                }
            },
            (Phase::Closed, false) => match verdict {
                Verdict::Healthy => {
                    inner.consecutive = 0;
                    inner.window.record(now, false);
                }
                Verdict::Failing { retry_after } => {
                    inner.consecutive = inner.consecutive.saturating_add(1);
                    inner.window.record(now, true);
                    let (attempts, failures) = inner.window.totals(now);
                    let ratio_tripped = attempts >= self.min_requests
                        && f64::from(failures) >= self.failure_ratio * f64::from(attempts);
                    if inner.consecutive >= self.consecutive_failures || ratio_tripped {
                        self.open(&mut inner, now, retry_after);
                    }
                }
                Verdict::Neutral => {}
            },
            _ => {}
        }
    }

    /// Opens for the current base wait (jittered), at least `retry_after`.
    fn open(&self, inner: &mut Inner, now: Instant, retry_after: Option<Duration>) {
        let base = inner.open_base.as_secs_f64();
        let drawn = rand::random_range((base * (1.0 - JITTER))..=(base * (1.0 + JITTER)));
        let wait = Duration::try_from_secs_f64(drawn)
            .unwrap_or(self.open_max)
            .min(self.open_max)
            .max(retry_after.unwrap_or_default());
        tracing::warn!(
            exporter = %self.exporter,
            ?wait,
            consecutive_failures = inner.consecutive,
            "Circuit breaker open: no sends until the wait is over, then one probe."
        );
        self.transition(inner, Phase::Open { until: now + wait });
    }

    fn transition(&self, inner: &mut Inner, to: Phase) {
        let from = inner.phase.state();
        inner.phase = to;
        inner.generation = inner.generation.wrapping_add(1);
        let state = to.state();
        if state == CircuitState::Closed {
            inner.consecutive = 0;
            inner.window.clear();
            if from != CircuitState::Closed {
                tracing::info!(exporter = %self.exporter, "Circuit breaker closed: the backend answered.");
            }
        }
        gauge!(EXPORTER_CIRCUIT_STATE, "exporter" => self.exporter.clone()).set(state.code());
        counter!(EXPORTER_CIRCUIT_TRANSITIONS, "exporter" => self.exporter.clone(), "to" => state.as_str())
            .increment(1);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent after every statement; a panic elsewhere cannot tear it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ReadinessCheck for CircuitBreaker {
    fn not_ready(&self) -> Option<String> {
        match self.state() {
            CircuitState::Closed => None,
            CircuitState::Open => Some(format!("circuit breaker of {} open", self.exporter)),
            CircuitState::HalfOpen => Some(format!(
                "circuit breaker of {} half-open (probing)",
                self.exporter
            )),
        }
    }
}

/// Leave to make one attempt; report its result with [`Permit::record`].
/// Dropped unreported, it counts as [`Verdict::Neutral`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// Whether this attempt is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the attempt's result.
    pub fn record(mut self, result: &Result<ExportOutcome, ExportError>) {
        self.recorded = true;
        self.breaker
            .record(self.probe, self.generation, Verdict::of(result));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker
                .record(self.probe, self.generation, Verdict::Neutral);
        }
    }
}

/// Attempts and retryable failures over the last `window`, in
/// [`WINDOW_BUCKETS`] buckets: bounded, and it slides by a tenth of the window.
#[derive(Debug)]
struct FailureWindow {
    epoch: Instant,
    bucket_nanos: u128,
    buckets: [Bucket; WINDOW_BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which `window / WINDOW_BUCKETS` slice of time since `epoch` it counts.
    slot: u64,
    attempts: u32,
    failures: u32,
}

impl FailureWindow {
    fn new(window: Duration) -> Self {
        FailureWindow {
            epoch: Instant::now(),
            bucket_nanos: (window.as_nanos() / WINDOW_BUCKETS as u128).max(1),
            buckets: [Bucket::default(); WINDOW_BUCKETS],
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos / self.bucket_nanos).unwrap_or(u64::MAX)
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % WINDOW_BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        bucket.attempts = bucket.attempts.saturating_add(1);
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        }
    }

    /// `(attempts, failures)` in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.slot(now);
        let oldest = current.saturating_sub(WINDOW_BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=current).contains(&b.slot))
            .fold((0u32, 0u32), |(a, f), b| {
                (a.saturating_add(b.attempts), f.saturating_add(b.failures))
            })
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); WINDOW_BUCKETS];
    }
}
