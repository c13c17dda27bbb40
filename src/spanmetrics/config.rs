//! `[connectors.spanmetrics]`: the Collector's spanmetrics connector names
//! (`histogram.explicit.buckets`, `dimensions` with `name` and `default`,
//! `exclude_dimensions`, `metrics_flush_interval`, `metrics_expiration`,
//! `aggregation_cardinality_limit`, `namespace`).
//!
//! ```toml
//! [connectors.spanmetrics]
//! metrics_flush_interval = "15s"
//! aggregation_cardinality_limit = 10000
//! histogram.explicit.buckets = ["5ms", "10ms", "25ms", "50ms", "100ms", "250ms", "500ms", "1s", "2.5s", "5s"]
//! dimensions = [
//!   { name = "http.response.status_code" },
//!   { name = "tenant.id", default = "unknown" },
//! ]
//! ```
//!
//! Where this differs from the Collector: the duration histogram is always in
//! seconds (unit `s`), the namespace is empty by default (so the metrics are
//! `calls` and `duration`, which Prometheus sees as `calls_total` and
//! `duration_seconds_*`), and the cardinality limit defaults to 10,000 series
//! instead of none, so the aggregation state is always bounded.

use serde::Deserialize;

use crate::settings::units::HumanDuration;
use crate::settings::validate::{join, push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

/// The data point attributes every series has, unless excluded.
pub const DEFAULT_DIMENSIONS: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

/// Most buckets a histogram may have.
pub const MAX_BUCKETS: usize = 256;

/// `[connectors.spanmetrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// `histogram.explicit.buckets`: upper bounds of the duration histogram. Default: the
    /// Collector's, 2ms to 15s.
    pub histogram: HistogramConfig,
    /// Extra data point attributes, each read from the span's attributes, then its
    /// resource's; a span without it gets `default`, or no such attribute. Default none.
    pub dimensions: Vec<DimensionConfig>,
    /// Default dimensions to leave out (`service.name`, `span.name`, `span.kind`,
    /// `status.code`). Default none.
    pub exclude_dimensions: Vec<String>,
    /// Every series is sent this often, cumulative since it was first seen. Default `"15s"`.
    pub metrics_flush_interval: HumanDuration,
    /// A series that saw no span for this long is forgotten (it stops being sent and its
    /// room under the cardinality limit is freed). Default `"0s"`: never.
    pub metrics_expiration: HumanDuration,
    /// Series kept at most (per metric, over all tenants); spans of further series are
    /// counted in one overflow series per tenant with `otel.metric.overflow = true`.
    /// Default `10000`.
    pub aggregation_cardinality_limit: usize,
    /// Prefix of the metric names, joined with a dot (`"traces.span.metrics"` gives the
    /// Collector's names). Default `""`: `calls` and `duration`.
    pub namespace: String,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            histogram: HistogramConfig::default(),
            dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            metrics_flush_interval: HumanDuration::from_secs(15),
            metrics_expiration: HumanDuration::from_secs(0),
            aggregation_cardinality_limit: 10_000,
            namespace: String::new(),
        }
    }
}

/// `histogram`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// `histogram.explicit`.
    pub explicit: ExplicitHistogramConfig,
}

/// `histogram.explicit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitHistogramConfig {
    /// Upper bounds (inclusive, as OTLP explicit buckets are), increasing.
    pub buckets: Vec<HumanDuration>,
}

impl Default for ExplicitHistogramConfig {
    fn default() -> Self {
        // The Collector's spanmetrics defaults.
        let ms = [
            2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000,
        ];
        ExplicitHistogramConfig {
            buckets: ms.into_iter().map(HumanDuration::from_millis).collect(),
        }
    }
}

/// One entry of `dimensions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionConfig {
    /// Attribute key, looked up in the span's attributes, then in its resource's.
    pub name: String,
    /// Value for spans without the attribute. Default none: the series has no such attribute.
    pub default: Option<String>,
}

impl SpanMetricsConfig {
    /// The metric named `name` under the namespace.
    pub fn metric_name(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.namespace)
        }
    }

    /// Whether default dimension `name` is kept.
    pub fn keeps(&self, name: &str) -> bool {
        !self.exclude_dimensions.iter().any(|e| e == name)
    }

    /// For `check-config`.
    pub fn describe(&self) -> String {
        let buckets: Vec<String> = self
            .histogram
            .explicit
            .buckets
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut dimensions: Vec<String> = DEFAULT_DIMENSIONS
            .iter()
            .filter(|d| self.keeps(d))
            .map(|d| (*d).to_owned())
            .collect();
        dimensions.extend(self.dimensions.iter().map(|d| match &d.default {
            Some(default) => format!("{} (default \"{default}\")", d.name),
            None => d.name.clone(),
        }));
        let expiration = if self.metrics_expiration.get().is_zero() {
            "never".to_owned()
        } else {
            self.metrics_expiration.to_string()
        };
        format!(
            "spanmetrics(metrics [{}, {}], flush every {}, expire {expiration}, \
             cardinality limit {}, dimensions [{}], buckets [{}])",
            self.metric_name("calls"),
            self.metric_name("duration"),
            self.metrics_flush_interval,
            self.aggregation_cardinality_limit,
            dimensions.join(", "),
            buckets.join(", ")
        )
    }
}

impl Validate for SpanMetricsConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.metrics_flush_interval.get().is_zero() {
            push(errors, path, "metrics_flush_interval", GREATER_THAN_ZERO);
        }
        if self.aggregation_cardinality_limit == 0 {
            push(
                errors,
                path,
                "aggregation_cardinality_limit",
                GREATER_THAN_ZERO,
            );
        }
        let expiration = self.metrics_expiration.get();
        if !expiration.is_zero() && expiration < self.metrics_flush_interval.get() {
            push(
                errors,
                path,
                "metrics_expiration",
                format!(
                    "must be 0 (never) or at least metrics_flush_interval ({})",
                    self.metrics_flush_interval
                ),
            );
        }
        let buckets_path = join(path, "histogram.explicit.buckets");
        let buckets = &self.histogram.explicit.buckets;
        if buckets.is_empty() {
            errors.push(ConfigError::new(
                &buckets_path,
                "at least one bucket bound is required",
            ));
        } else if buckets.len() > MAX_BUCKETS {
            errors.push(ConfigError::new(
                &buckets_path,
                format!("at most {MAX_BUCKETS} bounds, got {}", buckets.len()),
            ));
        }
        for (i, bound) in buckets.iter().enumerate() {
            if bound.get().is_zero() {
                errors.push(ConfigError::new(
                    format!("{buckets_path}[{i}]"),
                    GREATER_THAN_ZERO,
                ));
            } else if i > 0 && buckets[i - 1] >= *bound {
                errors.push(ConfigError::new(
                    format!("{buckets_path}[{i}]"),
                    format!(
                        "bounds must increase: {bound} is not greater than {}",
                        buckets[i - 1]
                    ),
                ));
            }
        }
        for (i, excluded) in self.exclude_dimensions.iter().enumerate() {
            let at = join(path, &format!("exclude_dimensions[{i}]"));
            if !DEFAULT_DIMENSIONS.contains(&excluded.as_str()) {
                errors.push(ConfigError::new(
                    at,
                    format!(
                        "\"{excluded}\" is not a default dimension; those are {}",
                        DEFAULT_DIMENSIONS.join(", ")
                    ),
                ));
            } else if self.exclude_dimensions[..i].contains(excluded) {
                errors.push(ConfigError::new(
                    at,
                    format!("\"{excluded}\" is listed twice"),
                ));
            }
        }
        for (i, dimension) in self.dimensions.iter().enumerate() {
            let at = join(path, &format!("dimensions[{i}].name"));
            let name = dimension.name.as_str();
            if name.trim().is_empty() {
                errors.push(ConfigError::new(at, "must not be empty"));
            } else if DEFAULT_DIMENSIONS.contains(&name) || name == super::OVERFLOW_KEY {
                errors.push(ConfigError::new(
                    at,
                    format!("\"{name}\" is set by the connector itself"),
                ));
            } else if self.dimensions[..i].iter().any(|d| d.name == name) {
                errors.push(ConfigError::new(at, format!("\"{name}\" is listed twice")));
            }
        }
        if self.namespace.starts_with('.') || self.namespace.ends_with('.') {
            push(
                errors,
                path,
                "namespace",
                "must not start or end with '.' (it is joined to the names with one)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        let config: SpanMetricsConfig = toml::from_str(toml).unwrap();
        let mut errors = Vec::new();
        config.validate("connectors.spanmetrics", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_valid_and_follow_the_collector_buckets() {
        assert!(problems("").is_empty());
        let config = SpanMetricsConfig::default();
        assert_eq!(config.histogram.explicit.buckets.len(), 16);
        assert_eq!(config.metric_name("calls"), "calls");
        assert_eq!(
            config.describe(),
            "spanmetrics(metrics [calls, duration], flush every 15s, expire never, cardinality limit 10000, \
             dimensions [service.name, span.name, span.kind, status.code], buckets [2ms, 4ms, 6ms, 8ms, 10ms, \
             50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1s 400ms, 2s, 5s, 10s, 15s])"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let found = problems(
            r#"
metrics_flush_interval = "0s"
metrics_expiration = "1ms"
aggregation_cardinality_limit = 0
namespace = "x."
histogram.explicit.buckets = ["10ms", "5ms", "0s"]
exclude_dimensions = ["span.name", "http.method", "span.name"]
dimensions = [{ name = "" }, { name = "span.kind" }, { name = "tenant.id" }, { name = "tenant.id", default = "x" }]
"#,
        );
        assert_eq!(
            found,
            [
                "connectors.spanmetrics.metrics_flush_interval: must be greater than 0",
                "connectors.spanmetrics.aggregation_cardinality_limit: must be greater than 0",
                "connectors.spanmetrics.histogram.explicit.buckets[1]: bounds must increase: 5ms is not greater than 10ms",
                "connectors.spanmetrics.histogram.explicit.buckets[2]: must be greater than 0",
                "connectors.spanmetrics.exclude_dimensions[1]: \"http.method\" is not a default dimension; those are service.name, span.name, span.kind, status.code",
                "connectors.spanmetrics.exclude_dimensions[2]: \"span.name\" is listed twice",
                "connectors.spanmetrics.dimensions[0].name: must not be empty",
                "connectors.spanmetrics.dimensions[1].name: \"span.kind\" is set by the connector itself",
                "connectors.spanmetrics.dimensions[3].name: \"tenant.id\" is listed twice",
                "connectors.spanmetrics.namespace: must not start or end with '.' (it is joined to the names with one)",
            ]
        );
    }

    #[test]
    fn an_expiration_shorter_than_the_flush_interval_is_refused() {
        assert_eq!(
            problems("metrics_flush_interval = \"10s\"\nmetrics_expiration = \"5s\""),
            ["connectors.spanmetrics.metrics_expiration: must be 0 (never) or at least metrics_flush_interval (10s)"]
        );
    }
}
