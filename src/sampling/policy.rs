//! Sampling policies compiled from their config, and the decision over a
//! trace: pure functions, testable without a runtime.
//!
//! A policy reads spans through `model::view` (attributes of the span and of
//! its resource, status, kind, name, times) without decoding them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use regex::RegexSet;
use tokio::time::Instant;

use crate::model::view::{
    first_varint, split_key_value, AnyValueRef, Cursor, KeyValueRest, SpanView, TraceId,
};
use crate::model::wire::Value;

use super::config::{DecisionMode, PolicyConfig, PolicyType};
use super::held::HeldTrace;

/// A compiled policy.
#[derive(Debug)]
pub enum Policy {
    Always,
    /// Any span whose status code (proto numbering: UNSET 0, OK 1, ERROR 2) is listed.
    Status(Vec<i32>),
    /// Any span (or its resource) whose string `key` is one of `values` (or matches).
    StringAttribute {
        key: String,
        values: Vec<String>,
        regexes: Option<RegexSet>,
        invert: bool,
    },
    BooleanAttribute {
        key: String,
        value: bool,
    },
    /// Any span (or its resource) whose number `key` is within the bounds; `true` = inclusive.
    NumericAttribute {
        key: String,
        min: Option<(f64, bool)>,
        max: Option<(f64, bool)>,
    },
    /// The trace lasts at least this many nanoseconds.
    Latency(u64),
    SpanCount {
        min: u64,
        max: Option<u64>,
    },
    /// Traces whose id hash (with the salt) falls below `threshold` of `u64::MAX`;
    /// the adaptive baseline moves the threshold.
    Probabilistic {
        threshold: AtomicU64,
        salt: Vec<u8>,
    },
    /// Traces while their spans fit in `per_second` for the current second.
    RateLimiting {
        per_second: u64,
        /// (second since `start`, spans spent in it).
        window: Mutex<(u64, u64)>,
        start: Instant,
    },
    And(Vec<Policy>),
    Not(Box<Policy>),
    /// Every sub-policy matches: the trace is dropped.
    Drop(Vec<Policy>),
}

/// Why a compiled policy could not be built (config validation reports these first).
#[derive(Debug, thiserror::Error)]
#[error("policy {name}: {problem}")]
pub struct PolicyError {
    pub name: String,
    pub problem: String,
}

impl Policy {
    /// Compiles `config`.
    ///
    /// # Errors
    /// [`PolicyError`] when the type's table is missing or a regex does not compile.
    pub fn compile(config: &PolicyConfig) -> Result<Policy, PolicyError> {
        let fail = |problem: String| PolicyError {
            name: config.name.clone(),
            problem,
        };
        let missing = || fail(format!("missing `{}` table", config.kind.as_str()));
        Ok(match config.kind {
            PolicyType::AlwaysSample => Policy::Always,
            PolicyType::StatusCode => {
                let p = config.status_code.as_ref().ok_or_else(missing)?;
                Policy::Status(
                    p.status_codes
                        .iter()
                        .map(|code| match code.as_str() {
                            "UNSET" => Ok(0),
                            "OK" => Ok(1),
                            "ERROR" => Ok(2),
                            other => Err(fail(format!("unknown status code {other}"))),
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            PolicyType::StringAttribute => {
                let p = config.string_attribute.as_ref().ok_or_else(missing)?;
                let regexes = if p.enabled_regex_matching {
                    Some(RegexSet::new(&p.values).map_err(|e| fail(e.to_string()))?)
                } else {
                    None
                };
                Policy::StringAttribute {
                    key: p.key.clone(),
                    values: p.values.clone(),
                    regexes,
                    invert: p.invert_match,
                }
            }
            PolicyType::BooleanAttribute => {
                let p = config.boolean_attribute.as_ref().ok_or_else(missing)?;
                Policy::BooleanAttribute {
                    key: p.key.clone(),
                    value: p.value,
                }
            }
            PolicyType::NumericAttribute => {
                let p = config.numeric_attribute.as_ref().ok_or_else(missing)?;
                Policy::NumericAttribute {
                    key: p.key.clone(),
                    min: p.min_value.map(|v| (v, p.min_inclusive)),
                    max: p.max_value.map(|v| (v, p.max_inclusive)),
                }
            }
            PolicyType::Latency => {
                let p = config.latency.as_ref().ok_or_else(missing)?;
                Policy::Latency(p.threshold_ms.saturating_mul(1_000_000))
            }
            PolicyType::SpanCount => {
                let p = config.span_count.as_ref().ok_or_else(missing)?;
                Policy::SpanCount {
                    min: p.min_spans,
                    max: p.max_spans,
                }
            }
            PolicyType::Probabilistic => {
                let p = config.probabilistic.as_ref().ok_or_else(missing)?;
                Policy::Probabilistic {
                    threshold: AtomicU64::new(share_threshold(p.sampling_percentage)),
                    salt: p.hash_salt.as_bytes().to_vec(),
                }
            }
            PolicyType::RateLimiting => {
                let p = config.rate_limiting.as_ref().ok_or_else(missing)?;
                Policy::RateLimiting {
                    per_second: p.spans_per_second,
                    window: Mutex::new((0, 0)),
                    start: Instant::now(),
                }
            }
            PolicyType::And => {
                let p = config.and.as_ref().ok_or_else(missing)?;
                Policy::And(
                    p.and_sub_policy
                        .iter()
                        .map(Policy::compile)
                        .collect::<Result<_, _>>()?,
                )
            }
            PolicyType::Not => {
                let p = config.not.as_ref().ok_or_else(missing)?;
                Policy::Not(Box::new(Policy::compile(&p.not_sub_policy)?))
            }
            PolicyType::Drop => {
                let p = config.drop.as_ref().ok_or_else(missing)?;
                Policy::Drop(
                    p.drop_sub_policy
                        .iter()
                        .map(Policy::compile)
                        .collect::<Result<_, _>>()?,
                )
            }
        })
    }

    /// Whether one span alone proves the policy matches its trace (so the
    /// trace can be kept the moment that span arrives).
    pub fn decides_on_a_span(&self) -> bool {
        match self {
            Policy::Status(_)
            | Policy::BooleanAttribute { .. }
            | Policy::NumericAttribute { .. } => true,
            Policy::StringAttribute { invert, .. } => !invert,
            _ => false,
        }
    }

    /// Whether `span` matches a span-level policy.
    pub fn span_matches(&self, span: &SpanView<'_>) -> bool {
        match self {
            Policy::Status(codes) => codes.contains(&span.status_code()),
            _ => self
                .attribute_key()
                .is_some_and(|key| self.value_matches(attribute(span, key))),
        }
    }

    /// The attribute an attribute policy reads.
    fn attribute_key(&self) -> Option<&str> {
        match self {
            Policy::StringAttribute { key, .. }
            | Policy::BooleanAttribute { key, .. }
            | Policy::NumericAttribute { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether an attribute policy matches the attribute's value (`None`: absent).
    fn value_matches(&self, value: Option<AnyValueRef<'_>>) -> bool {
        match self {
            Policy::StringAttribute {
                values, regexes, ..
            } => value
                .and_then(|v| v.as_str())
                .is_some_and(|s| match regexes {
                    Some(set) => set.is_match(s),
                    None => values.iter().any(|v| v == s),
                }),
            Policy::BooleanAttribute { value: wanted, .. } => {
                value.and_then(|v| v.as_bool()) == Some(*wanted)
            }
            Policy::NumericAttribute { min, max, .. } => value
                .and_then(|v| v.as_f64())
                .is_some_and(|v| within(v, *min, *max)),
            _ => false,
        }
    }

    /// Whether the policy matches the whole trace.
    pub fn matches(&self, trace: &TraceSpans<'_>) -> bool {
        match self {
            Policy::Always => true,
            Policy::StringAttribute { invert: true, .. } => {
                !trace.spans.views().any(|s| self.span_matches(&s))
            }
            Policy::Status(_)
            | Policy::StringAttribute { .. }
            | Policy::BooleanAttribute { .. }
            | Policy::NumericAttribute { .. } => trace.spans.views().any(|s| self.span_matches(&s)),
            Policy::Latency(threshold) => {
                trace
                    .spans
                    .max_end()
                    .saturating_sub(trace.spans.min_start())
                    >= *threshold
            }
            Policy::SpanCount { min, max } => {
                let n = trace.spans.len() as u64;
                n >= *min && max.is_none_or(|max| n <= max)
            }
            Policy::Probabilistic { threshold, salt } => {
                trace_hash(trace.trace_id, salt) < threshold.load(Ordering::Relaxed)
            }
            Policy::RateLimiting {
                per_second,
                window,
                start,
            } => {
                let second = start.elapsed().as_secs();
                let Ok(mut window) = window.lock() else {
                    return false;
                };
                if window.0 != second {
                    *window = (second, 0);
                }
                let spans = trace.spans.len() as u64;
                if window.1.saturating_add(spans) <= *per_second {
                    window.1 += spans;
                    true
                } else {
                    false
                }
            }
            Policy::And(all) | Policy::Drop(all) => all.iter().all(|p| p.matches(trace)),
            Policy::Not(inner) => !inner.matches(trace),
        }
    }
}

/// A span attribute, else the same attribute of its resource.
fn attribute<'a>(span: &SpanView<'a>, key: &str) -> Option<AnyValueRef<'a>> {
    span.attribute(key)
        .or_else(|| span.resource().attribute(key))
}

fn within(value: f64, min: Option<(f64, bool)>, max: Option<(f64, bool)>) -> bool {
    let above = match min {
        Some((bound, true)) => value >= bound,
        Some((bound, false)) => value > bound,
        None => true,
    };
    let below = match max {
        Some((bound, true)) => value <= bound,
        Some((bound, false)) => value < bound,
        None => true,
    };
    above && below
}

/// `percentage` of `u64::MAX`.
pub fn share_threshold(percentage: f64) -> u64 {
    if percentage >= 100.0 {
        u64::MAX
    } else if percentage <= 0.0 {
        0
    } else {
        (percentage / 100.0 * u64::MAX as f64) as u64
    }
}

/// FNV-1a over the salt and the trace id: stable across processes and
/// versions (so every gateway decides a trace the same way), unlike std's
/// randomly keyed hasher. Hand-written: eight lines, no crate needed.
pub fn trace_hash(trace_id: &TraceId, salt: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in salt.iter().chain(trace_id.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for similar inputs: finish with a multiply-xorshift.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// What a decision looks at: the trace's id and spans.
#[derive(Debug)]
pub struct TraceSpans<'a> {
    pub trace_id: &'a TraceId,
    pub spans: &'a HeldTrace,
}

/// What the sampler reads from a span as it arrives, in one pass over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub start: u64,
    pub end: u64,
    /// No parent span (absent or all zeros).
    pub root: bool,
    /// The first early-keep policy (in order) that this span alone matches.
    pub keep: Option<usize>,
}

/// The early-keep policies' verdicts on the resources of one request,
/// remembered while the spans sent under them are read (they share them).
#[derive(Debug, Default)]
pub struct ResourceMemo {
    /// Address and length of a resource's bytes, and the attribute policies it matches.
    recent: Vec<(usize, usize, u64)>,
    /// Where the next resource goes once `recent` is full.
    next: usize,
}

/// Resources remembered at once (a request's spans come from a handful).
const MEMO_SIZE: usize = 16;

impl ResourceMemo {
    /// Forgets every resource: call before reading another request (a
    /// freed request's address can be reused).
    pub fn clear(&mut self) {
        self.recent.clear();
        self.next = 0;
    }

    fn get(&self, at: (usize, usize)) -> Option<u64> {
        self.recent
            .iter()
            .find(|(ptr, len, _)| (*ptr, *len) == at)
            .map(|(_, _, bits)| *bits)
    }

    fn put(&mut self, at: (usize, usize), bits: u64) {
        if self.recent.len() < MEMO_SIZE {
            self.recent.push((at.0, at.1, bits));
        } else {
            self.recent[self.next] = (at.0, at.1, bits);
            self.next = (self.next + 1) % MEMO_SIZE;
        }
    }
}

/// At most this many policies keep a trace on a single span (one bit each);
/// any further ones are evaluated when the trace is decided.
const MAX_EARLY: usize = 64;

/// The outcome for one trace, with the index of the policy that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep(usize),
    /// Dropped by a `drop` policy, or (`None`) because no policy matched.
    Drop(Option<usize>),
}

/// The configured policies in order, with their names and how they combine.
#[derive(Debug)]
pub struct Policies {
    policies: Vec<(String, Policy)>,
    mode: DecisionMode,
    /// Top-level policies that may keep a trace on a single span.
    early: Vec<usize>,
    /// The attribute keys of those (by position in `early`).
    early_keys: Vec<(usize, String)>,
    /// Bit `n` set when some early key is `n` bytes long (`u128::MAX` when
    /// one is 128 or longer): a filter in front of the key comparisons.
    early_key_lengths: u128,
}

impl Policies {
    /// Compiles every policy.
    ///
    /// # Errors
    /// [`PolicyError`] for the first policy that does not compile.
    pub fn compile(configs: &[PolicyConfig], mode: DecisionMode) -> Result<Policies, PolicyError> {
        let policies: Vec<(String, Policy)> = configs
            .iter()
            .map(|c| Ok((c.name.clone(), Policy::compile(c)?)))
            .collect::<Result<_, PolicyError>>()?;
        let is_drop = |p: &Policy| matches!(p, Policy::Drop(_));
        let early: Vec<usize> = policies
            .iter()
            .enumerate()
            .filter(|(i, (_, policy))| {
                policy.decides_on_a_span()
                    && match mode {
                        // Any drop policy could still veto later spans.
                        DecisionMode::Any => !policies.iter().any(|(_, p)| is_drop(p)),
                        // Whatever matches first would keep too, unless a drop comes before.
                        DecisionMode::FirstMatch => !policies[..*i].iter().any(|(_, p)| is_drop(p)),
                    }
            })
            .map(|(i, _)| i)
            .take(MAX_EARLY)
            .collect();
        let early_keys: Vec<(usize, String)> = early
            .iter()
            .enumerate()
            .filter_map(|(bit, &i)| {
                let (_, policy): &(String, Policy) = &policies[i];
                policy.attribute_key().map(|key| (bit, key.to_owned()))
            })
            .collect();
        let early_key_lengths = early_keys.iter().fold(0u128, |mask, (_, key)| {
            u32::try_from(key.len())
                .ok()
                .and_then(|len| 1u128.checked_shl(len))
                .map_or(u128::MAX, |bit| mask | bit)
        });
        Ok(Policies {
            policies,
            mode,
            early,
            early_keys,
            early_key_lengths,
        })
    }

    /// The name of policy `index`.
    pub fn name(&self, index: usize) -> &str {
        self.policies
            .get(index)
            .map_or("", |(name, _)| name.as_str())
    }

    /// Whether policy `index` is a `probabilistic` one (the baseline).
    pub fn is_baseline(&self, index: usize) -> bool {
        matches!(
            self.policies.get(index),
            Some((_, Policy::Probabilistic { .. }))
        )
    }

    /// Sets the share of every `probabilistic` policy, in percent.
    pub fn set_baseline_percent(&self, percent: f64) {
        for (_, policy) in &self.policies {
            if let Policy::Probabilistic { threshold, .. } = policy {
                threshold.store(share_threshold(percent), Ordering::Relaxed);
            }
        }
    }

    /// A policy that keeps the trace of `span` on this span alone, if any.
    pub fn early_keep(&self, span: &SpanView<'_>) -> Option<usize> {
        self.early
            .iter()
            .copied()
            .find(|&i| self.policies[i].1.span_matches(span))
    }

    /// Reads `span` as it arrives: its times, whether it is a root, and
    /// [`early_keep`](Self::early_keep), all in one pass over its fields
    /// (each attribute's key is compared with every early policy's key), with
    /// the resource's verdicts remembered in `memo` for the spans that share it.
    pub fn arrival(&self, span: &SpanView<'_>, memo: &mut ResourceMemo) -> Arrival {
        let mut out = Arrival {
            start: 0,
            end: 0,
            root: true,
            keep: None,
        };
        let (mut seen_parent, mut seen_start, mut seen_end) = (false, false, false);
        let mut status_code = None;
        // Bits by position in `self.early`.
        let (mut has_key, mut matched) = (0u64, 0u64);
        let mut reader = Cursor::new(span.encoded());
        while let Some(field) = reader.next_field() {
            match (field.number, field.value) {
                (9, Value::Len(kv)) if self.early_key_lengths != 0 => {
                    let (key, rest) = split_key_value(kv);
                    self.match_attribute(key, rest, &mut has_key, &mut matched);
                }
                (4, Value::Len(parent)) if !seen_parent => {
                    seen_parent = true;
                    out.root = parent.len() != 8 || parent == [0u8; 8];
                }
                (7, Value::Fixed64(v)) if !seen_start => {
                    seen_start = true;
                    out.start = v;
                }
                (8, Value::Fixed64(v)) if !seen_end => {
                    seen_end = true;
                    out.end = v;
                }
                (15, Value::Len(status)) if status_code.is_none() => {
                    status_code = Some(first_varint(status, 3) as i32);
                }
                _ => {}
            }
        }
        // Attribute policies whose key the span lacks read the resource's.
        let resource = span.resource();
        let bytes = resource.encoded();
        let at = (bytes.as_ptr() as usize, bytes.len());
        let from_resource = match memo.get(at) {
            Some(bits) => bits,
            None => {
                let (mut has, mut bits) = (0u64, 0u64);
                for (key, rest) in resource.raw_attributes() {
                    self.match_attribute(key, rest, &mut has, &mut bits);
                }
                memo.put(at, bits);
                bits
            }
        };
        matched |= from_resource & !has_key;
        let status_code = status_code.unwrap_or(0);
        out.keep = self.early.iter().enumerate().find_map(|(bit, &i)| {
            let hit = match &self.policies[i].1 {
                Policy::Status(codes) => codes.contains(&status_code),
                _ => matched & (1 << bit) != 0,
            };
            hit.then_some(i)
        });
        out
    }

    /// Marks, for each early attribute policy reading `key`, that the key was
    /// seen (first occurrence only) and whether its value matches.
    #[inline]
    fn match_attribute(
        &self,
        key: &[u8],
        rest: KeyValueRest<'_>,
        has: &mut u64,
        matched: &mut u64,
    ) {
        // Most keys differ in length from every wanted one.
        let may_match = u32::try_from(key.len())
            .ok()
            .and_then(|len| 1u128.checked_shl(len))
            .map_or(self.early_key_lengths == u128::MAX, |bit| {
                self.early_key_lengths & bit != 0
            });
        if !may_match {
            return;
        }
        for (bit, wanted) in &self.early_keys {
            let mask = 1u64 << bit;
            if key.len() != wanted.len() || *has & mask != 0 || key != wanted.as_bytes() {
                continue;
            }
            *has |= mask;
            if self.policies[self.early[*bit]]
                .1
                .value_matches(Some(rest.value()))
            {
                *matched |= mask;
            }
        }
    }

    /// Decides a whole trace.
    pub fn decide(&self, trace: &TraceSpans<'_>) -> Decision {
        self.decide_with(trace, false)
    }

    /// Decides a trace none of whose spans matched an early-keep policy (the
    /// sampler checks each span on arrival): those policies are known not to
    /// match and are not evaluated again.
    pub fn decide_after_early(&self, trace: &TraceSpans<'_>) -> Decision {
        self.decide_with(trace, true)
    }

    fn decide_with(&self, trace: &TraceSpans<'_>, skip_early: bool) -> Decision {
        let known_false = |i: usize| skip_early && self.early.contains(&i);
        match self.mode {
            DecisionMode::FirstMatch => {
                for (i, (_, policy)) in self.policies.iter().enumerate() {
                    if !known_false(i) && policy.matches(trace) {
                        return match policy {
                            Policy::Drop(_) => Decision::Drop(Some(i)),
                            _ => Decision::Keep(i),
                        };
                    }
                }
                Decision::Drop(None)
            }
            DecisionMode::Any => {
                let mut keep = None;
                for (i, (_, policy)) in self.policies.iter().enumerate() {
                    match policy {
                        Policy::Drop(_) if policy.matches(trace) => return Decision::Drop(Some(i)),
                        Policy::Drop(_) => {}
                        _ if keep.is_none() && !known_false(i) && policy.matches(trace) => {
                            keep = Some(i)
                        }
                        _ => {}
                    }
                }
                keep.map_or(Decision::Drop(None), Decision::Keep)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::regroup::split_by_trace;
    use crate::model::Signal;

    #[test]
    fn arrival_reads_in_one_pass_what_the_single_field_readers_read() {
        let config: super::super::TailSamplingConfig = toml::from_str(
            r#"
decision = "first_match"
[[policies]]
name = "payments"
type = "string_attribute"
string_attribute = { key = "service.name", values = ["payment"] }
[[policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
[[policies]]
name = "vip"
type = "boolean_attribute"
boolean_attribute = { key = "user.vip", value = true }
[[policies]]
name = "high-value"
type = "numeric_attribute"
numeric_attribute = { key = "order.amount", min_value = 100, min_inclusive = false }
"#,
        )
        .expect("config");
        let policies = Policies::compile(&config.policies, config.decision).expect("compiles");
        let mut kept = [0usize; 4];
        let (mut spans, mut roots) = (0, 0);
        for seed in 0..8 {
            let batch = crate::testkit::batch(Signal::Traces, seed, 512);
            let mut memo = ResourceMemo::default();
            for (_, span) in split_by_trace(&batch) {
                let view = span.span();
                let arrival = policies.arrival(&view, &mut memo);
                assert_eq!(arrival.keep, policies.early_keep(&view));
                assert_eq!(arrival.start, view.start_time_unix_nano());
                assert_eq!(arrival.end, view.end_time_unix_nano());
                let root = view.parent_span_id().is_none_or(|p| p == [0u8; 8]);
                assert_eq!(arrival.root, root);
                if let Some(policy) = arrival.keep {
                    kept[policy] += 1;
                }
                spans += 1;
                roots += usize::from(root);
            }
        }
        // Every path was taken: the resource attribute, status, both span attributes.
        assert!(kept.iter().all(|&n| n > 0), "{kept:?}");
        assert!(kept.iter().sum::<usize>() < spans && roots > 0 && roots < spans);
    }

    #[test]
    fn numeric_bounds_respect_open_and_closed_ends() {
        let over = |v| within(v, Some((1000.0, false)), None);
        assert!(over(1000.01));
        assert!(!over(1000.0));
        assert!(!over(999.0));
        let closed = |v| within(v, Some((10.0, true)), Some((20.0, true)));
        assert!(closed(10.0) && closed(20.0) && !closed(20.5));
        let open_max = |v| within(v, None, Some((20.0, false)));
        assert!(open_max(19.99) && !open_max(20.0));
    }

    #[test]
    fn the_share_is_close_to_the_percentage_and_stable() {
        let threshold = share_threshold(10.0);
        let kept = (0u32..100_000)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id[15] = 1;
                trace_hash(&id, b"") < threshold
            })
            .count();
        assert!((9_000..=11_000).contains(&kept), "{kept}");
        let id = [7u8; 16];
        assert_eq!(trace_hash(&id, b"s"), trace_hash(&id, b"s"));
        assert_ne!(trace_hash(&id, b"s"), trace_hash(&id, b"t"));
        assert_eq!(share_threshold(100.0), u64::MAX);
        assert_eq!(share_threshold(0.0), 0);
    }
}
