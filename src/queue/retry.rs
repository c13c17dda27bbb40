//! Retry with exponential backoff and jitter, written once for every exporter.
//!
//! The semantics are the Collector's `retry_sender` (with its
//! `cenkalti/backoff` defaults), so `retry_on_failure` behaves as operators
//! of the Go collector expect:
//!
//! - only [`ExportError::Retryable`] is retried; a permanent error, or success
//!   with a partial rejection, ends the loop at once;
//! - the n-th wait is drawn uniformly from `interval * (1 ± randomization_factor)`,
//!   where `interval` starts at `initial_interval` and is multiplied by
//!   `multiplier` after each retry up to `max_interval`; the drawn wait is
//!   also capped at `max_interval` (the config's "cap on one wait");
//! - a server's delay (`RetryInfo`, `Retry-After`) is honoured: the wait is
//!   `max(backoff, retry_after)` and is not capped by `max_interval`;
//! - it gives up, returning the last error, when that wait would end past
//!   `max_elapsed_time` since the first attempt (`0s` means never);
//! - `enabled = false` makes exactly one attempt.
//!
//! # Shutdown
//! [`RetryPolicy::run`] takes a [`CancellationToken`]: once it fires, no new
//! wait starts and a wait in progress ends early; the last error is returned.
//! An attempt in progress is not interrupted (it has its own timeout).
//!
//! Time is `tokio::time`, so tests run on a paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exporter::{ExportError, ExportOutcome};

use super::config::RetryConfig;

/// The retry loop around one exporter's sends, built from `retry_on_failure`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    enabled: bool,
    initial_interval: Duration,
    randomization_factor: f64,
    multiplier: f64,
    max_interval: Duration,
    /// `None`: retry until cancelled.
    max_elapsed_time: Option<Duration>,
}

impl RetryPolicy {
    /// The policy `config` describes. Out-of-range numbers are clamped rather
    /// than refused (config validation reports them): `randomization_factor`
    /// to `[0, 1]`, `multiplier` to at least `1`.
    pub fn from_config(config: &RetryConfig) -> RetryPolicy {
        let randomization_factor = if config.randomization_factor.is_finite() {
            config.randomization_factor.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let multiplier = if config.multiplier.is_finite() {
            config.multiplier.max(1.0)
        } else {
            1.0
        };
        let max_elapsed_time = config.max_elapsed_time.get();
        RetryPolicy {
            enabled: config.enabled,
            initial_interval: config.initial_interval.get(),
            randomization_factor,
            multiplier,
            max_interval: config.max_interval.get(),
            max_elapsed_time: (!max_elapsed_time.is_zero()).then_some(max_elapsed_time),
        }
    }

    /// One attempt, never a retry.
    pub fn disabled() -> RetryPolicy {
        RetryPolicy {
            enabled: false,
            ..RetryPolicy::from_config(&RetryConfig::default())
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// A fresh sequence of (jittered) waits.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            interval: self.initial_interval,
            randomization_factor: self.randomization_factor,
            multiplier: self.multiplier,
            max_interval: self.max_interval,
        }
    }

    /// The retry state of one request: call [`Retrying::next_wait`] after
    /// each failed attempt. For a caller that must hold the request across
    /// attempts (a request that shrinks on partial success).
    pub fn start(&self) -> Retrying<'_> {
        Retrying {
            policy: self,
            started: Instant::now(),
            backoff: self.backoff(),
        }
    }

    /// Calls `attempt` until it succeeds, fails permanently, the time budget
    /// runs out or `cancel` fires.
    ///
    /// `on_retry(error, wait)` is called before each wait, for metrics and
    /// logs; it is not called when giving up.
    ///
    /// # Errors
    /// The last attempt's [`ExportError`]: permanent, or retryable when
    /// retries are disabled, exhausted (`max_elapsed_time`) or cancelled
    /// (`cancel.is_cancelled()` tells the two apart).
    pub async fn run<F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut attempt: F,
        mut on_retry: impl FnMut(&ExportError, Duration),
    ) -> Result<ExportOutcome, ExportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<ExportOutcome, ExportError>>,
    {
        let mut retrying = self.start();
        loop {
            let error = match attempt().await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            let Some(wait) = retrying.next_wait(&error, cancel) else {
                return Err(error);
            };
            on_retry(&error, wait);
            if !retrying.wait(wait, cancel).await {
                return Err(error);
            }
        }
    }
}

/// The retry state of one request under a [`RetryPolicy`].
#[derive(Debug)]
pub struct Retrying<'a> {
    policy: &'a RetryPolicy,
    started: Instant,
    backoff: Backoff,
}

impl Retrying<'_> {
    /// How long to wait before retrying after `error`, or `None` to give up:
    /// the error is permanent, retries are off, `cancel` fired, or the wait
    /// would end past `max_elapsed_time`. A partial success
    /// ([`ExportError::Partial`]) is retried like a retryable error.
    pub fn next_wait(
        &mut self,
        error: &ExportError,
        cancel: &CancellationToken,
    ) -> Option<Duration> {
        let retry_after = match error {
            ExportError::Retryable { retry_after, .. }
            | ExportError::Partial { retry_after, .. } => *retry_after,
            ExportError::Permanent { .. } => return None,
        };
        if !self.policy.enabled || cancel.is_cancelled() {
            return None;
        }
        let wait = self
            .backoff
            .next_wait()
            .max(retry_after.unwrap_or_default());
        if let Some(budget) = self.policy.max_elapsed_time {
            if self.started.elapsed().saturating_add(wait) > budget {
                return None;
            }
        }
        Some(wait)
    }

    /// Leaves `paused` out of the `max_elapsed_time` budget: time the request
    /// spent waiting for something other than its own retries (an open
    /// circuit breaker), so a long outage does not turn into drops.
    pub fn exclude(&mut self, paused: Duration) {
        self.started = self.started.checked_add(paused).unwrap_or(self.started);
    }

    /// Sleeps `wait`; `false` when `cancel` fired first.
    pub async fn wait(&self, wait: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}

impl Default for RetryPolicy {
    /// The Collector's defaults (see [`RetryConfig`]).
    fn default() -> Self {
        RetryPolicy::from_config(&RetryConfig::default())
    }
}

/// Exponential backoff with jitter; an endless iterator of waits.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The un-jittered interval of the next wait.
    interval: Duration,
    randomization_factor: f64,
    multiplier: f64,
    max_interval: Duration,
}

impl Backoff {
    /// The next wait: the current interval with jitter, capped at
    /// `max_interval`; then the interval grows.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.interval.as_secs_f64();
        let delta = base * self.randomization_factor;
        let drawn = if delta > 0.0 {
            rand::random_range((base - delta)..=(base + delta))
        } else {
            base
        };
        let wait = Duration::try_from_secs_f64(drawn)
            .unwrap_or(self.max_interval)
            .min(self.max_interval);
        let grown = base * self.multiplier;
        self.interval = Duration::try_from_secs_f64(grown)
            .unwrap_or(self.max_interval)
            .min(self.max_interval);
        wait
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    use crate::settings::units::HumanDuration;

    fn config(
        initial: u64,
        multiplier: f64,
        max: u64,
        max_elapsed: u64,
        jitter: f64,
    ) -> RetryConfig {
        RetryConfig {
            enabled: true,
            initial_interval: HumanDuration::from_secs(initial),
            randomization_factor: jitter,
            multiplier,
            max_interval: HumanDuration::from_secs(max),
            max_elapsed_time: HumanDuration::from_secs(max_elapsed),
        }
    }

    fn retryable(retry_after: Option<Duration>) -> ExportError {
        ExportError::Retryable {
            reason: "unavailable".into(),
            retry_after,
        }
    }

    /// Runs `policy` against a script of answers (the last one repeats),
    /// returning the result and the time of each attempt since the start.
    async fn run_script(
        policy: &RetryPolicy,
        cancel: &CancellationToken,
        script: Vec<Result<ExportOutcome, ExportError>>,
    ) -> (Result<ExportOutcome, ExportError>, Vec<Duration>) {
        let start = Instant::now();
        let times = RefCell::new(Vec::new());
        let result = policy
            .run(
                cancel,
                || {
                    let mut times = times.borrow_mut();
                    times.push(start.elapsed());
                    let answer = script[(times.len() - 1).min(script.len() - 1)].clone();
                    async move { answer }
                },
                |_, _| {},
            )
            .await;
        (result, times.into_inner())
    }

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn backoff_grows_by_multiplier_up_to_the_cap() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 5, 300, 0.0));
        let waits: Vec<_> = policy.backoff().take(6).collect();
        assert_eq!(waits, secs(&[1, 2, 4, 5, 5, 5]));
    }

    #[test]
    fn jitter_stays_within_the_factor_and_the_cap() {
        let policy = RetryPolicy::from_config(&config(10, 1.5, 30, 300, 0.5));
        let firsts: Vec<_> = (0..1000).map(|_| policy.backoff().next_wait()).collect();
        assert!(firsts
            .iter()
            .all(|w| (Duration::from_secs(5)..=Duration::from_secs(15)).contains(w)));
        assert!(firsts.iter().any(|w| *w < Duration::from_secs(9)));
        assert!(firsts.iter().any(|w| *w > Duration::from_secs(11)));
        let mut backoff = policy.backoff();
        let later: Vec<_> = backoff.by_ref().take(50).collect();
        assert!(later.iter().all(|w| *w <= Duration::from_secs(30)));
        // At the cap, waits are drawn from [max * (1 - factor), max].
        assert!(later[10..].iter().all(|w| *w >= Duration::from_secs(15)));
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let policy = RetryPolicy::from_config(&config(1, 0.5, 10, 0, 7.0));
        assert_eq!(policy.multiplier, 1.0);
        assert_eq!(policy.randomization_factor, 1.0);
        assert_eq!(policy.max_elapsed_time, None);
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_with_backoff_until_success() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 60, 300, 0.0));
        let script = vec![
            Err(retryable(None)),
            Err(retryable(None)),
            Err(retryable(None)),
            Ok(ExportOutcome::default()),
        ];
        let (result, times) = run_script(&policy, &CancellationToken::new(), script).await;
        assert_eq!(result.unwrap(), ExportOutcome::default());
        assert_eq!(times, secs(&[0, 1, 3, 7]));
    }

    #[tokio::test(start_paused = true)]
    async fn on_retry_sees_each_error_and_wait() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 60, 300, 0.0));
        let calls = Cell::new(0);
        let mut seen = Vec::new();
        let result = policy
            .run(
                &CancellationToken::new(),
                || {
                    calls.set(calls.get() + 1);
                    let answer = if calls.get() < 3 {
                        Err(retryable(None))
                    } else {
                        Ok(ExportOutcome::default())
                    };
                    async move { answer }
                },
                |error, wait| seen.push((error.kind(), wait)),
            )
            .await;
        assert!(result.is_ok());
        assert_eq!(
            seen,
            vec![
                ("retryable", Duration::from_secs(1)),
                ("retryable", Duration::from_secs(2))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn server_retry_after_wins_over_shorter_backoff() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 5, 300, 0.0));
        let script = vec![
            Err(retryable(Some(Duration::from_secs(20)))),
            Err(retryable(Some(Duration::from_millis(100)))),
            Ok(ExportOutcome::default()),
        ];
        let (result, times) = run_script(&policy, &CancellationToken::new(), script).await;
        assert!(result.is_ok());
        // 20s (server, above max_interval), then the 2s backoff (longer than the server's 100ms).
        assert_eq!(times, secs(&[0, 20, 22]));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 5, 300, 0.0));
        let script = vec![Err(ExportError::Permanent {
            reason: "400".into(),
        })];
        let (result, times) = run_script(&policy, &CancellationToken::new(), script).await;
        assert!(matches!(result, Err(ExportError::Permanent { .. })));
        assert_eq!(times.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_before_a_wait_would_pass_max_elapsed_time() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 100, 10, 0.0));
        let (result, times) = run_script(
            &policy,
            &CancellationToken::new(),
            vec![Err(retryable(None))],
        )
        .await;
        assert!(result.unwrap_err().is_retryable());
        // Attempts at 0, 1, 3, 7; the next wait (8s) would end at 15s > 10s.
        assert_eq!(times, secs(&[0, 1, 3, 7]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_delay_past_the_budget_gives_up_at_once() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 100, 10, 0.0));
        let script = vec![Err(retryable(Some(Duration::from_secs(60))))];
        let (result, times) = run_script(&policy, &CancellationToken::new(), script).await;
        assert!(result.is_err());
        assert_eq!(times, secs(&[0]));
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_makes_one_attempt() {
        let mut disabled = config(1, 2.0, 5, 300, 0.0);
        disabled.enabled = false;
        for policy in [RetryPolicy::from_config(&disabled), RetryPolicy::disabled()] {
            let (result, times) = run_script(
                &policy,
                &CancellationToken::new(),
                vec![Err(retryable(None))],
            )
            .await;
            assert!(result.unwrap_err().is_retryable());
            assert_eq!(times.len(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_cuts_the_wait_short() {
        let policy = RetryPolicy::from_config(&config(30, 2.0, 60, 300, 0.0));
        let cancel = CancellationToken::new();
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                cancel.cancel();
            })
        };
        let start = Instant::now();
        let (result, times) = run_script(&policy, &cancel, vec![Err(retryable(None))]).await;
        assert!(result.unwrap_err().is_retryable());
        assert_eq!(times.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        canceller.await.unwrap();

        // Already cancelled: one attempt, no wait.
        let (result, times) = run_script(&policy, &cancel, vec![Err(retryable(None))]).await;
        assert!(result.is_err());
        assert_eq!(times.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_max_elapsed_time_retries_until_cancelled() {
        let policy = RetryPolicy::from_config(&config(1, 2.0, 30, 0, 0.0));
        let cancel = CancellationToken::new();
        let stopper = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                cancel.cancel();
            })
        };
        let (result, times) = run_script(&policy, &cancel, vec![Err(retryable(None))]).await;
        assert!(result.is_err());
        // 1+2+4+8+16 = 31s, then every 30s until the hour ends.
        assert!(times.len() > 100, "{}", times.len());
        stopper.await.unwrap();
    }
}
