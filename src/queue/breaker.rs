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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::settings::units::HumanDuration;

    /// Opens after `failures` in a row; the ratio is out of the way (1000 attempts needed).
    fn config(failures: u32, open_initial: u64, open_max: u64) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            consecutive_failures: failures,
            min_requests: 1000,
            open_initial: HumanDuration::from_secs(open_initial),
            open_max: HumanDuration::from_secs(open_max),
            ..CircuitBreakerConfig::default()
        }
    }

    fn ok() -> Result<ExportOutcome, ExportError> {
        Ok(ExportOutcome::default())
    }

    fn unavailable(retry_after: Option<Duration>) -> Result<ExportOutcome, ExportError> {
        Err(ExportError::Retryable {
            reason: "503".into(),
            retry_after,
        })
    }

    fn bad_request() -> Result<ExportOutcome, ExportError> {
        Err(ExportError::Permanent {
            reason: "400".into(),
        })
    }

    /// One attempt through `breaker` answering `result`; returns how long admission took.
    async fn attempt(
        breaker: &CircuitBreaker,
        result: &Result<ExportOutcome, ExportError>,
    ) -> Duration {
        let start = Instant::now();
        let permit = breaker
            .admit(&CancellationToken::new())
            .await
            .expect("not cancelled");
        let waited = start.elapsed();
        permit.record(result);
        waited
    }

    /// Whether `waited` lies in the jitter band around `base` (capped at `max`), give or
    /// take the timer's millisecond.
    fn within_jitter(waited: Duration, base: f64, max: f64) -> bool {
        let low = (base * (1.0 - JITTER)).min(max) - 0.002;
        let high = (base * (1.0 + JITTER)).min(max) + 0.002;
        (low..=high).contains(&waited.as_secs_f64())
    }

    #[tokio::test(start_paused = true)]
    async fn n_consecutive_retryable_failures_open_it() {
        let breaker = CircuitBreaker::new("otlp/t", &config(3, 1, 60));
        for _ in 0..2 {
            attempt(&breaker, &unavailable(None)).await;
        }
        // A success in between starts the count again.
        attempt(&breaker, &ok()).await;
        for _ in 0..2 {
            assert_eq!(attempt(&breaker, &unavailable(None)).await, Duration::ZERO);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        attempt(&breaker, &unavailable(None)).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.not_ready().as_deref(),
            Some("circuit breaker of otlp/t open")
        );
        // No attempt is admitted before the open wait is over.
        let early = tokio::time::timeout(
            Duration::from_millis(700),
            breaker.admit(&CancellationToken::new()),
        )
        .await;
        assert!(early.is_err(), "admitted while open");
    }

    #[tokio::test(start_paused = true)]
    async fn the_open_wait_doubles_from_1s_to_60s_within_the_jitter() {
        let breaker = CircuitBreaker::new("otlp/t", &config(1, 1, 60));
        attempt(&breaker, &unavailable(None)).await;
        let mut base = 1.0_f64;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            let permit = breaker.admit(&CancellationToken::new()).await.unwrap();
            let waited = start.elapsed();
            assert!(permit.is_probe());
            assert_eq!(breaker.state(), CircuitState::HalfOpen);
            assert!(
                within_jitter(waited, base, 60.0),
                "waited {waited:?} for a base of {base}s"
            );
            waits.push(waited);
            permit.record(&unavailable(None));
            assert_eq!(breaker.state(), CircuitState::Open);
            base = (base * 2.0).min(60.0);
        }
        // 1, 2, 4, 8, 16, 32, then the cap.
        assert!(waits[5] > Duration::from_secs(25), "{waits:?}");
        assert!(waits[6..]
            .iter()
            .all(|w| *w >= Duration::from_secs(48) && *w <= Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_jittered() {
        let mut firsts = Vec::new();
        for _ in 0..200 {
            let breaker = CircuitBreaker::new("otlp/t", &config(1, 10, 60));
            attempt(&breaker, &unavailable(None)).await;
            firsts.push(attempt(&breaker, &ok()).await);
        }
        assert!(firsts.iter().all(|w| within_jitter(*w, 10.0, 60.0)));
        assert!(firsts.iter().any(|w| *w < Duration::from_millis(9_500)));
        assert!(firsts.iter().any(|w| *w > Duration::from_millis(10_500)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_backend_s_retry_after_is_the_floor() {
        let breaker = CircuitBreaker::new("otlp/t", &config(1, 1, 60));
        attempt(&breaker, &unavailable(Some(Duration::from_secs(10)))).await;
        let waited = attempt(&breaker, &unavailable(Some(Duration::from_secs(120)))).await;
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
        // Past open_max too: the backend said when.
        let waited = attempt(&breaker, &ok()).await;
        assert!(
            waited >= Duration::from_secs(120) && waited < Duration::from_secs(121),
            "{waited:?}"
        );
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_probe_through_while_the_others_wait() {
        let breaker = Arc::new(CircuitBreaker::new("otlp/t", &config(1, 1, 60)));
        attempt(&breaker, &unavailable(None)).await;
        let probe = breaker.admit(&CancellationToken::new()).await.unwrap();
        assert!(probe.is_probe());

        let admitted = Arc::new(AtomicUsize::new(0));
        let mut others = Vec::new();
        for _ in 0..3 {
            let (breaker, admitted) = (breaker.clone(), admitted.clone());
            others.push(tokio::spawn(async move {
                let permit = breaker.admit(&CancellationToken::new()).await.unwrap();
                assert!(!permit.is_probe());
                admitted.fetch_add(1, Ordering::SeqCst);
                permit.record(&ok());
            }));
        }
        // However long the probe takes, nobody else is let through.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(admitted.load(Ordering::SeqCst), 0);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(breaker.not_ready().unwrap().contains("half-open"));

        probe.record(&ok());
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.not_ready(), None);
        for other in others {
            other.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_the_waiters_keep_waiting() {
        let breaker = Arc::new(CircuitBreaker::new("otlp/t", &config(1, 1, 60)));
        attempt(&breaker, &unavailable(None)).await;
        let probe = breaker.admit(&CancellationToken::new()).await.unwrap();
        let waiter = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let permit = breaker.admit(&CancellationToken::new()).await.unwrap();
                (start.elapsed(), permit.is_probe())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        probe.record(&unavailable(None));
        // The waiter is the next probe, after the doubled wait (2s ± jitter).
        let (waited, is_probe) = waiter.await.unwrap();
        assert!(is_probe);
        assert!(
            within_jitter(waited - Duration::from_millis(100), 2.0, 60.0),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn success_closes_and_resets_the_backoff() {
        let breaker = CircuitBreaker::new("otlp/t", &config(1, 1, 60));
        attempt(&breaker, &unavailable(None)).await;
        attempt(&breaker, &unavailable(None)).await; // probe fails: 2s next
        attempt(&breaker, &unavailable(None)).await; // probe fails: 4s next
        let waited = attempt(&breaker, &ok()).await;
        assert!(within_jitter(waited, 4.0, 60.0), "{waited:?}");
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(attempt(&breaker, &ok()).await, Duration::ZERO);
        // The next opening starts over at open_initial.
        attempt(&breaker, &unavailable(None)).await;
        let waited = attempt(&breaker, &ok()).await;
        assert!(within_jitter(waited, 1.0, 60.0), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_never_trip_it() {
        let breaker = CircuitBreaker::new("otlp/t", &config(1, 1, 60));
        for _ in 0..100 {
            assert_eq!(attempt(&breaker, &bad_request()).await, Duration::ZERO);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);

        // Nor with the ratio: 100 % permanent errors are no failures.
        let ratio = CircuitBreaker::new(
            "otlp/r",
            &CircuitBreakerConfig {
                consecutive_failures: 1000,
                min_requests: 5,
                ..CircuitBreakerConfig::default()
            },
        );
        for _ in 0..100 {
            attempt(&ratio, &bad_request()).await;
        }
        assert_eq!(ratio.state(), CircuitState::Closed);

        // A probe answered with a permanent error hands the probe on, at once.
        attempt(&breaker, &unavailable(None)).await;
        attempt(&breaker, &bad_request()).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let permit = breaker.admit(&CancellationToken::new()).await.unwrap();
        assert!(permit.is_probe());
        // Dropped unreported (its worker stopped): the same.
        drop(permit);
        assert_eq!(attempt(&breaker, &ok()).await, Duration::ZERO);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_success_counts_as_success() {
        let breaker = CircuitBreaker::new("otlp/t", &config(2, 1, 60));
        let partial = Err(ExportError::Partial {
            delivered: 3,
            rejected: 0,
            reason: "some documents 429".into(),
            retry_after: None,
        });
        for _ in 0..10 {
            attempt(&breaker, &unavailable(None)).await;
            attempt(&breaker, &partial).await;
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        attempt(&breaker, &unavailable(None)).await;
        attempt(&breaker, &unavailable(None)).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        attempt(&breaker, &partial).await;
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_failure_ratio_over_the_window_trips_it() {
        let breaker = CircuitBreaker::new(
            "otlp/t",
            &CircuitBreakerConfig {
                consecutive_failures: 1000,
                failure_ratio: 0.1,
                window: HumanDuration::from_secs(30),
                min_requests: 20,
                ..CircuitBreakerConfig::default()
            },
        );
        for _ in 0..18 {
            attempt(&breaker, &ok()).await;
        }
        attempt(&breaker, &unavailable(None)).await; // 1 of 19: too few attempts
        attempt(&breaker, &ok()).await;
        attempt(&breaker, &unavailable(None)).await; // 2 of 21 = 9.5 %
        assert_eq!(breaker.state(), CircuitState::Closed);
        attempt(&breaker, &unavailable(None)).await; // 3 of 22 = 13.6 %
        assert_eq!(breaker.state(), CircuitState::Open);

        // Attempts older than the window no longer count.
        let breaker = CircuitBreaker::new(
            "otlp/w",
            &CircuitBreakerConfig {
                consecutive_failures: 1000,
                min_requests: 4,
                ..CircuitBreakerConfig::default()
            },
        );
        for _ in 0..30 {
            attempt(&breaker, &ok()).await;
        }
        attempt(&breaker, &unavailable(None)).await; // 1 of 31
        tokio::time::sleep(Duration::from_secs(31)).await;
        for _ in 0..2 {
            attempt(&breaker, &unavailable(None)).await; // 2 of 2, but fewer than 4 attempts
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        attempt(&breaker, &ok()).await;
        attempt(&breaker, &unavailable(None)).await; // 3 of 4
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn results_of_attempts_from_before_a_change_are_ignored() {
        let breaker = CircuitBreaker::new("otlp/t", &config(1, 1, 60));
        let cancel = CancellationToken::new();
        let in_flight = breaker.admit(&cancel).await.unwrap();
        attempt(&breaker, &unavailable(None)).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        // A request sent before the breaker opened comes back fine: it does not close it.
        in_flight.record(&ok());
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_cuts_the_open_wait_short() {
        let breaker = CircuitBreaker::new("otlp/t", &config(1, 30, 60));
        attempt(&breaker, &unavailable(None)).await;
        let cancel = CancellationToken::new();
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                cancel.cancel();
            })
        };
        let start = Instant::now();
        assert!(breaker.admit(&cancel).await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        canceller.await.unwrap();
        assert!(breaker.admit(&cancel).await.is_none());
    }
}
