//! `[processors.tail_sampling]`: the Collector's tail sampling processor names
//! (`decision_wait`, `num_traces`, `expected_new_traces_per_sec`,
//! `decision_cache`, `policies` with `name` and `type` and a table named after
//! the type), plus what the Collector lacks: `decision_wait_after_root`,
//! byte bounds and first-match evaluation.
//!
//! ```toml
//! [processors.tail_sampling]
//! decision_wait = "10s"
//! decision = "first_match"
//! [[processors.tail_sampling.policies]]
//! name = "errors"
//! type = "status_code"
//! status_code = { status_codes = ["ERROR"] }
//! [[processors.tail_sampling.policies]]
//! name = "high-value"
//! type = "numeric_attribute"
//! numeric_attribute = { key = "order.amount", min_value = 1000, min_inclusive = false }
//! ```

use serde::Deserialize;

use crate::settings::units::{ByteSize, HumanDuration};
use crate::settings::validate::{join, push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

/// `[processors.tail_sampling]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// A trace is decided this long after its first span. Default `"10s"`.
    pub decision_wait: HumanDuration,
    /// …or this long after its root span arrived, if sooner. Default `"2s"`.
    pub decision_wait_after_root: HumanDuration,
    /// Traces held at once; past it the oldest are decided early (counted). Default `50000`.
    pub num_traces: usize,
    /// Expected new traces per second: sizes the tables up front. Default `0` (grow as needed).
    pub expected_new_traces_per_sec: usize,
    /// Bytes of spans held at once; past it the oldest traces are decided early. Default `"256MiB"`.
    pub max_buffered_bytes: ByteSize,
    /// A trace larger than this is decided at once. Default `"16MiB"`.
    pub max_trace_bytes: ByteSize,
    /// `"any"` (a `drop` policy vetoes, any other match keeps) or `"first_match"`
    /// (policies in order, the first that matches decides). Default `"any"`.
    pub decision: DecisionMode,
    /// Remembered decisions, for spans that arrive after their trace was decided.
    pub decision_cache: DecisionCacheConfig,
    /// Set this span attribute to the name of the policy that kept the trace. Default none.
    pub decision_attribute: Option<String>,
    /// Adaptive baseline: when set, the share of every `probabilistic` policy moves between
    /// `min_percent` and `max_percent` so that kept spans per second track this target, while
    /// the other policies keep everything they match. Default none (the shares as written).
    pub target_spans_per_second: Option<u64>,
    /// Lowest baseline share, in percent. Default `5`.
    pub min_percent: f64,
    /// Highest baseline share, in percent. Default `100`.
    pub max_percent: f64,
    /// Independent samplers, each with the traces whose id hashes to it (every span of a
    /// trace meets the same one), so deciding and buffering spread over cores. The bounds
    /// (`num_traces`, `max_buffered_bytes`, `target_spans_per_second`, rate limits) are
    /// shared out evenly. Default `1`.
    pub shards: usize,
    /// The policies, in order. At least one.
    pub policies: Vec<PolicyConfig>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: HumanDuration::from_secs(10),
            decision_wait_after_root: HumanDuration::from_secs(2),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            max_buffered_bytes: ByteSize::mib(256),
            max_trace_bytes: ByteSize::mib(16),
            decision: DecisionMode::Any,
            decision_cache: DecisionCacheConfig::default(),
            decision_attribute: None,
            target_spans_per_second: None,
            min_percent: 5.0,
            max_percent: 100.0,
            shards: 1,
            policies: Vec::new(),
        }
    }
}

/// How the policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionMode {
    Any,
    FirstMatch,
}

/// `decision_cache`: sizes of the kept and dropped trace-id caches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheConfig {
    /// Kept trace ids remembered. Default `100000`.
    pub sampled_cache_size: usize,
    /// Dropped trace ids remembered. Default `100000`.
    pub non_sampled_cache_size: usize,
}

impl Default for DecisionCacheConfig {
    fn default() -> Self {
        DecisionCacheConfig {
            sampled_cache_size: 100_000,
            non_sampled_cache_size: 100_000,
        }
    }
}

/// The policy types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    AlwaysSample,
    StatusCode,
    StringAttribute,
    BooleanAttribute,
    NumericAttribute,
    Latency,
    SpanCount,
    Probabilistic,
    RateLimiting,
    And,
    Not,
    Drop,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::AlwaysSample => "always_sample",
            PolicyType::StatusCode => "status_code",
            PolicyType::StringAttribute => "string_attribute",
            PolicyType::BooleanAttribute => "boolean_attribute",
            PolicyType::NumericAttribute => "numeric_attribute",
            PolicyType::Latency => "latency",
            PolicyType::SpanCount => "span_count",
            PolicyType::Probabilistic => "probabilistic",
            PolicyType::RateLimiting => "rate_limiting",
            PolicyType::And => "and",
            PolicyType::Not => "not",
            PolicyType::Drop => "drop",
        }
    }
}

/// One `[[policies]]` entry: a name, a type, and the table named after the type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PolicyType,
    pub status_code: Option<StatusCodePolicy>,
    pub string_attribute: Option<StringAttributePolicy>,
    pub boolean_attribute: Option<BooleanAttributePolicy>,
    pub numeric_attribute: Option<NumericAttributePolicy>,
    pub latency: Option<LatencyPolicy>,
    pub span_count: Option<SpanCountPolicy>,
    pub probabilistic: Option<ProbabilisticPolicy>,
    pub rate_limiting: Option<RateLimitingPolicy>,
    pub and: Option<AndPolicy>,
    pub not: Option<NotPolicy>,
    pub drop: Option<DropPolicy>,
}

/// `status_code = { status_codes = ["ERROR"] }`: any span with one of these statuses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodePolicy {
    /// `"ERROR"`, `"OK"`, `"UNSET"`.
    pub status_codes: Vec<String>,
}

/// `string_attribute`: any span (or its resource) with `key` equal to one of `values`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributePolicy {
    pub key: String,
    pub values: Vec<String>,
    /// Treat `values` as regular expressions. Default `false`.
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Match traces where no span has a matching value. Default `false`.
    #[serde(default)]
    pub invert_match: bool,
}

/// `boolean_attribute`: any span (or its resource) with `key` equal to `value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributePolicy {
    pub key: String,
    pub value: bool,
}

/// `numeric_attribute`: any span (or its resource) with a number `key` within the bounds
/// (ints and doubles alike). Ends are inclusive unless `min_inclusive` / `max_inclusive` say not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributePolicy {
    pub key: String,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    #[serde(default = "yes")]
    pub min_inclusive: bool,
    #[serde(default = "yes")]
    pub max_inclusive: bool,
}

fn yes() -> bool {
    true
}

/// `latency`: the trace lasts (first start to last end) at least `threshold_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyPolicy {
    pub threshold_ms: u64,
}

/// `span_count`: the trace has at least `min_spans` (and at most `max_spans`) spans.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountPolicy {
    pub min_spans: u64,
    pub max_spans: Option<u64>,
}

/// `probabilistic`: this share of traces, by a hash of the trace id (the same
/// trace gets the same answer on every gateway).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticPolicy {
    pub sampling_percentage: f64,
    /// Mixed into the hash; gateways that must agree use the same salt. Default none.
    #[serde(default)]
    pub hash_salt: String,
}

/// `rate_limiting`: traces while the spans they hold stay within `spans_per_second`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingPolicy {
    pub spans_per_second: u64,
}

/// `and`: every sub-policy matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndPolicy {
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// `not`: the sub-policy does not match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotPolicy {
    pub not_sub_policy: Box<PolicyConfig>,
}

/// `drop`: when every sub-policy matches, the trace is dropped whatever else matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropPolicy {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

impl Validate for TailSamplingConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        for (key, value) in [
            ("decision_wait", self.decision_wait),
            ("decision_wait_after_root", self.decision_wait_after_root),
        ] {
            if value.get().is_zero() {
                push(errors, path, key, GREATER_THAN_ZERO);
            }
        }
        if self.num_traces == 0 {
            push(errors, path, "num_traces", GREATER_THAN_ZERO);
        }
        if self.shards == 0 || self.shards > 64 {
            push(
                errors,
                path,
                "shards",
                format!("must be between 1 and 64, got {}", self.shards),
            );
        }
        if self.max_buffered_bytes.get() == 0 {
            push(errors, path, "max_buffered_bytes", GREATER_THAN_ZERO);
        }
        if self.max_trace_bytes.get() == 0 {
            push(errors, path, "max_trace_bytes", GREATER_THAN_ZERO);
        }
        if self.policies.is_empty() {
            push(errors, path, "policies", "at least one policy is required");
        }
        if !(0.0..=100.0).contains(&self.min_percent) {
            push(
                errors,
                path,
                "min_percent",
                format!("must be between 0 and 100, got {}", self.min_percent),
            );
        }
        if !(0.0..=100.0).contains(&self.max_percent) {
            push(
                errors,
                path,
                "max_percent",
                format!("must be between 0 and 100, got {}", self.max_percent),
            );
        } else if self.min_percent > self.max_percent {
            push(
                errors,
                path,
                "min_percent",
                format!(
                    "must not be greater than max_percent ({})",
                    self.max_percent
                ),
            );
        }
        if self.target_spans_per_second == Some(0) {
            push(errors, path, "target_spans_per_second", GREATER_THAN_ZERO);
        }
        for (i, policy) in self.policies.iter().enumerate() {
            policy.validate(&format!("{}[{i}]", join(path, "policies")), errors);
            if self.policies[..i].iter().any(|p| p.name == policy.name) {
                push(
                    errors,
                    &format!("{}[{i}]", join(path, "policies")),
                    "name",
                    format!("policy name \"{}\" is used twice", policy.name),
                );
            }
        }
    }
}

impl Validate for PolicyConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.name.trim().is_empty() {
            push(errors, path, "name", "must not be empty");
        }
        let table = self.kind.as_str();
        let missing = |errors: &mut Vec<ConfigError>| {
            push(
                errors,
                path,
                table,
                format!("type \"{table}\" needs its settings in `{table} = {{ ... }}`"),
            );
        };
        match self.kind {
            PolicyType::AlwaysSample => {}
            PolicyType::StatusCode => match &self.status_code {
                None => missing(errors),
                Some(p) => {
                    if p.status_codes.is_empty() {
                        push(
                            errors,
                            &join(path, table),
                            "status_codes",
                            "must name at least one",
                        );
                    }
                    for (i, code) in p.status_codes.iter().enumerate() {
                        if !matches!(code.as_str(), "ERROR" | "OK" | "UNSET") {
                            errors.push(ConfigError::new(
                                format!("{}.status_codes[{i}]", join(path, table)),
                                format!("unknown status code \"{code}\"; use ERROR, OK or UNSET"),
                            ));
                        }
                    }
                }
            },
            PolicyType::StringAttribute => match &self.string_attribute {
                None => missing(errors),
                Some(p) => {
                    if p.values.is_empty() {
                        push(
                            errors,
                            &join(path, table),
                            "values",
                            "must name at least one value",
                        );
                    }
                    if p.enabled_regex_matching {
                        for (i, value) in p.values.iter().enumerate() {
                            if let Err(error) = regex::Regex::new(value) {
                                errors.push(ConfigError::new(
                                    format!("{}.values[{i}]", join(path, table)),
                                    format!(
                                        "invalid regular expression \"{value}\": {}",
                                        error.to_string().lines().last().unwrap_or_default()
                                    ),
                                ));
                            }
                        }
                    }
                }
            },
            PolicyType::BooleanAttribute => {
                if self.boolean_attribute.is_none() {
                    missing(errors);
                }
            }
            PolicyType::NumericAttribute => match &self.numeric_attribute {
                None => missing(errors),
                Some(p) => match (p.min_value, p.max_value) {
                    (None, None) => push(
                        errors,
                        &join(path, table),
                        "min_value",
                        "set min_value, max_value or both",
                    ),
                    (Some(min), Some(max)) if min > max => push(
                        errors,
                        &join(path, table),
                        "min_value",
                        format!("must not be greater than max_value ({max})"),
                    ),
                    (min, max) if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) => {
                        push(errors, &join(path, table), "min_value", "must be a number")
                    }
                    _ => {}
                },
            },
            PolicyType::Latency => match &self.latency {
                None => missing(errors),
                Some(p) if p.threshold_ms == 0 => push(
                    errors,
                    &join(path, table),
                    "threshold_ms",
                    GREATER_THAN_ZERO,
                ),
                Some(_) => {}
            },
            PolicyType::SpanCount => match &self.span_count {
                None => missing(errors),
                Some(p) if p.max_spans.is_some_and(|max| max < p.min_spans) => push(
                    errors,
                    &join(path, table),
                    "max_spans",
                    format!("must be at least min_spans ({})", p.min_spans),
                ),
                Some(_) => {}
            },
            PolicyType::Probabilistic => match &self.probabilistic {
                None => missing(errors),
                Some(p) if !(0.0..=100.0).contains(&p.sampling_percentage) => push(
                    errors,
                    &join(path, table),
                    "sampling_percentage",
                    format!("must be between 0 and 100, got {}", p.sampling_percentage),
                ),
                Some(_) => {}
            },
            PolicyType::RateLimiting => match &self.rate_limiting {
                None => missing(errors),
                Some(p) if p.spans_per_second == 0 => push(
                    errors,
                    &join(path, table),
                    "spans_per_second",
                    GREATER_THAN_ZERO,
                ),
                Some(_) => {}
            },
            PolicyType::And => match &self.and {
                None => missing(errors),
                Some(p) => {
                    sub_policies(&p.and_sub_policy, &join(path, "and.and_sub_policy"), errors)
                }
            },
            PolicyType::Not => match &self.not {
                None => missing(errors),
                Some(p) => p
                    .not_sub_policy
                    .validate(&join(path, "not.not_sub_policy"), errors),
            },
            PolicyType::Drop => match &self.drop {
                None => missing(errors),
                Some(p) => sub_policies(
                    &p.drop_sub_policy,
                    &join(path, "drop.drop_sub_policy"),
                    errors,
                ),
            },
        }
    }
}

impl PolicyConfig {
    /// Divides rate limits (here and in sub-policies) among `shards`.
    fn share_rates(&mut self, shards: u64) {
        if let Some(p) = &mut self.rate_limiting {
            p.spans_per_second = p.spans_per_second.div_ceil(shards).max(1);
        }
        for sub in self
            .and
            .iter_mut()
            .flat_map(|p| p.and_sub_policy.iter_mut())
            .chain(
                self.drop
                    .iter_mut()
                    .flat_map(|p| p.drop_sub_policy.iter_mut()),
            )
        {
            sub.share_rates(shards);
        }
        if let Some(p) = &mut self.not {
            p.not_sub_policy.share_rates(shards);
        }
    }
}

fn sub_policies(policies: &[PolicyConfig], path: &str, errors: &mut Vec<ConfigError>) {
    if policies.is_empty() {
        errors.push(ConfigError::new(
            path,
            "at least one sub-policy is required",
        ));
    }
    for (i, policy) in policies.iter().enumerate() {
        if policy.kind == PolicyType::Drop {
            errors.push(ConfigError::new(
                format!("{path}[{i}].type"),
                "a drop policy cannot be a sub-policy",
            ));
        }
        policy.validate(&format!("{path}[{i}]"), errors);
    }
}

impl TailSamplingConfig {
    /// The settings of one of `shards` shards: the bounds and rates shared out.
    pub fn for_shard(&self, shards: usize) -> TailSamplingConfig {
        let shards = shards.max(1);
        let share = |n: usize| n.div_ceil(shards).max(1);
        let mut config = self.clone();
        config.num_traces = share(self.num_traces);
        config.max_buffered_bytes = ByteSize(self.max_buffered_bytes.get().div_ceil(shards as u64));
        config.expected_new_traces_per_sec = self.expected_new_traces_per_sec / shards;
        config.target_spans_per_second = self
            .target_spans_per_second
            .map(|t| t.div_ceil(shards as u64).max(1));
        config.decision_cache.sampled_cache_size = share(self.decision_cache.sampled_cache_size);
        config.decision_cache.non_sampled_cache_size =
            share(self.decision_cache.non_sampled_cache_size);
        for policy in &mut config.policies {
            policy.share_rates(shards as u64);
        }
        config
    }

    /// The settings in words, for `check-config`.
    pub fn describe(&self) -> String {
        let policies: Vec<String> = self
            .policies
            .iter()
            .map(|p| format!("{} ({})", p.name, p.kind.as_str()))
            .collect();
        format!(
            "tail_sampling(decision_wait={}, decision_wait_after_root={}, decision={}, num_traces={}, max_buffered_bytes={}, shards={}, policies=[{}])",
            self.decision_wait,
            self.decision_wait_after_root,
            match self.decision {
                DecisionMode::Any => "any",
                DecisionMode::FirstMatch => "first_match",
            },
            self.num_traces,
            self.max_buffered_bytes,
            self.shards,
            policies.join(", ")
        )
    }
}
