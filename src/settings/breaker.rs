//! `circuit_breaker`: the table every exporter carries next to `retry_on_failure`.

use serde::Deserialize;

use crate::settings::units::HumanDuration;
use crate::settings::validate::{push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

/// `[exporters.<kind>.<name>.circuit_breaker]`: stops sending to a backend that keeps
/// failing, and probes it with one batch at a time until it answers again.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Use a breaker at all. Default `true`.
    pub enabled: bool,
    /// Open after this many retryable failures in a row (any worker's). Integer, greater
    /// than 0. Default `5`.
    pub consecutive_failures: u32,
    /// Open when at least this share of the attempts in `window` failed retryably, once
    /// `min_requests` attempts were seen in it. Number in (0, 1]. Default `0.1`.
    pub failure_ratio: f64,
    /// The sliding window of `failure_ratio`. Duration, greater than 0. Default `"30s"`.
    pub window: HumanDuration,
    /// Attempts `window` must hold before `failure_ratio` applies. Integer, greater than 0.
    /// Default `20`.
    pub min_requests: u32,
    /// The first open wait (before one batch probes the backend). Duration, greater than 0.
    /// Default `"1s"`.
    pub open_initial: HumanDuration,
    /// Cap on the open wait, which doubles (with jitter) after each failed probe; a backend's
    /// `Retry-After` longer than it still wins. Duration, at least `open_initial`. Default `"60s"`.
    pub open_max: HumanDuration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: true,
            consecutive_failures: 5,
            failure_ratio: 0.1,
            window: HumanDuration::from_secs(30),
            min_requests: 20,
            open_initial: HumanDuration::from_secs(1),
            open_max: HumanDuration::from_secs(60),
        }
    }
}

impl CircuitBreakerConfig {
    /// The settings in words, for `check-config`.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "no circuit breaker".to_owned();
        }
        format!(
            "breaker after {} failures or {}% of {}+ in {}, open {}..{}",
            self.consecutive_failures,
            self.failure_ratio * 100.0,
            self.min_requests,
            self.window,
            self.open_initial,
            self.open_max
        )
    }
}

impl Validate for CircuitBreakerConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.consecutive_failures == 0 {
            push(errors, path, "consecutive_failures", GREATER_THAN_ZERO);
        }
        // Written so that NaN fails too.
        let ratio = self.failure_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            push(
                errors,
                path,
                "failure_ratio",
                format!("must be greater than 0 and at most 1, got {ratio}"),
            );
        }
        if self.window.get().is_zero() {
            push(errors, path, "window", GREATER_THAN_ZERO);
        }
        if self.min_requests == 0 {
            push(errors, path, "min_requests", GREATER_THAN_ZERO);
        }
        let initial = self.open_initial.get();
        if initial.is_zero() {
            push(errors, path, "open_initial", GREATER_THAN_ZERO);
        }
        if self.open_max.get() < initial {
            push(
                errors,
                path,
                "open_max",
                format!("must be at least open_initial ({})", self.open_initial),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let config: CircuitBreakerConfig = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        config.validate("exporters.otlp.x.circuit_breaker", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_the_issue_s_and_valid() {
        let config = CircuitBreakerConfig::default();
        assert!(config.enabled);
        assert_eq!(config.consecutive_failures, 5);
        assert_eq!(config.failure_ratio, 0.1);
        assert_eq!(config.window.get().as_secs(), 30);
        assert_eq!(config.min_requests, 20);
        assert_eq!(config.open_initial.get().as_secs(), 1);
        assert_eq!(config.open_max.get().as_secs(), 60);
        assert!(errors("").is_empty());
        assert_eq!(toml::from_str::<CircuitBreakerConfig>("").unwrap(), config);
    }

    #[test]
    fn every_bad_key_is_reported_with_its_path() {
        let found = errors(
            "consecutive_failures = 0\nfailure_ratio = 1.5\nwindow = \"0s\"\nmin_requests = 0\n\
             open_initial = \"10s\"\nopen_max = \"5s\"\n",
        );
        let expected = [
            "exporters.otlp.x.circuit_breaker.consecutive_failures",
            "exporters.otlp.x.circuit_breaker.failure_ratio",
            "exporters.otlp.x.circuit_breaker.window",
            "exporters.otlp.x.circuit_breaker.min_requests",
            "exporters.otlp.x.circuit_breaker.open_max",
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for (error, path) in found.iter().zip(expected) {
            assert!(error.starts_with(path), "{error} should name {path}");
        }
        assert!(errors("open_initial = \"0s\"")[0].contains("open_initial"));
        assert!(errors("failure_ratio = 0.0")[0].contains("failure_ratio"));
        assert!(errors("failure_ratio = nan")[0].contains("failure_ratio"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<CircuitBreakerConfig>("threshold = 3").is_err());
    }
}
