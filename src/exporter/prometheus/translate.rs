//! OTLP metrics → Prometheus series, as the OpenTelemetry → Prometheus
//! compatibility specification says.
//!
//! | OTLP | Prometheus |
//! |---|---|
//! | gauge | gauge (`_ratio` for unit `1`) |
//! | monotonic sum | counter `<name>_total` |
//! | non-monotonic sum | gauge |
//! | histogram | `_bucket{le}` (cumulative, `+Inf` = count), `_sum`, `_count` |
//! | exponential histogram | the same, with the explicit bounds its scale gives |
//! | summary | `{quantile}` series, `_sum`, `_count` |
//!
//! Resources give `job` (`service.namespace/service.name`, or `service.name`)
//! and `instance` (`service.instance.id`) to every series; the attributes in
//! `promote_resource_attributes` become labels too; the others (all but
//! `service.name`, `service.namespace`, `service.instance.id`) go to one
//! `target_info` gauge (value 1) per resource, at the resource's latest time.
//! Attribute keys that sanitise to the same label name are merged, their
//! values joined with `;` in the order of the original keys.
//!
//! A data point flagged "no recorded value" becomes a staleness marker.
//! Delta sums and histograms are added up into cumulative ones per series
//! ([`DeltaMode::Convert`], state in [`DeltaStates`]) or refused.
//!
//! Points that Prometheus would reject, failing the whole request, are
//! refused here by reason (see [`refusal`]) and never sent.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use bytes::Bytes;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint,
};

use super::names::{label_name, metric_name, NameKind};
use super::series::{put_label, SeriesSet};
use super::wire::{Label, Sample, STALE_NAN};

/// Why a data point was not sent (the `reason` label of the refusal counter).
pub mod refusal {
    /// The metric name is empty once sanitised.
    pub const INVALID_NAME: &str = "invalid_metric_name";
    /// Two labels of a series have one name (e.g. a point attribute `job`).
    pub const DUPLICATE_LABEL: &str = "duplicate_label";
    /// The point has no time (`time_unix_nano` 0).
    pub const NO_TIMESTAMP: &str = "no_timestamp";
    /// A number point without a value.
    pub const NO_VALUE: &str = "no_value";
    /// Bucket counts that do not match the bounds.
    pub const INVALID_HISTOGRAM: &str = "invalid_histogram";
    /// A sum or histogram with unspecified temporality.
    pub const UNSPECIFIED_TEMPORALITY: &str = "unspecified_temporality";
    /// Delta temporality with `delta = "refuse"`.
    pub const DELTA: &str = "delta";
    /// A delta point for a new series while `delta_max_series` series are tracked.
    pub const DELTA_SERIES_LIMIT: &str = "delta_series_limit";
    /// A delta point not later than the last one of its series.
    pub const DELTA_OUT_OF_ORDER: &str = "delta_out_of_order";
}

/// What to do with delta temporality sums and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaMode {
    /// Add them up per series into cumulative values (state kept in memory).
    Convert,
    /// Refuse them, counted.
    Refuse,
}

impl DeltaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeltaMode::Convert => "convert",
            DeltaMode::Refuse => "refuse",
        }
    }
}

/// How series are named and labelled.
#[derive(Debug, Clone)]
pub struct TranslateConfig {
    pub add_metric_suffixes: bool,
    pub target_info: bool,
    /// Resource attribute keys copied onto every series.
    pub promote_resource_attributes: Vec<String>,
    pub delta: DeltaMode,
    /// Series whose delta state is kept at most.
    pub delta_max_series: usize,
}

impl Default for TranslateConfig {
    fn default() -> Self {
        TranslateConfig {
            add_metric_suffixes: true,
            target_info: true,
            promote_resource_attributes: Vec::new(),
            delta: DeltaMode::Convert,
            delta_max_series: 100_000,
        }
    }
}

/// One batch translated: its series (samples sorted by time) and what was refused.
#[derive(Debug, Default)]
pub struct Translated {
    pub series: SeriesSet,
    /// Data points turned into samples.
    pub points: u64,
    /// Data points refused, by reason.
    pub refused: Vec<(&'static str, u64)>,
}

impl Translated {
    fn refuse(&mut self, reason: &'static str) {
        match self.refused.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.refused.push((reason, 1)),
        }
    }

    /// Data points refused, all reasons.
    pub fn refused_points(&self) -> u64 {
        self.refused.iter().map(|(_, n)| n).sum()
    }

    /// Samples in all series.
    pub fn samples(&self) -> usize {
        self.series.samples()
    }
}

/// Translates OTLP metrics; holds the delta→cumulative state.
#[derive(Debug)]
pub struct Translator {
    config: TranslateConfig,
    delta: Mutex<DeltaStates>,
    /// The last `target_info` time sent per resource (a hash of its labels), so a batch
    /// with older points than the previous one sends none rather than an out-of-order
    /// sample. At most `delta_max_series` entries; cleared when full.
    info_sent: Mutex<HashMap<u64, i64>>,
}

/// The labels a resource gives its series.
struct ResourceLabels {
    /// `job`, `instance` and promoted attributes, sorted by name.
    base: Vec<Label>,
    /// `target_info`'s labels (base plus the other attributes), when it has others.
    info: Option<Vec<Label>>,
}

/// A data point's value in a form that delta points can be added up in.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    /// Cumulative counts per finite upper bound (`le`), then the total count and sum.
    Histogram {
        buckets: Vec<(f64, f64)>,
        count: f64,
        sum: Option<f64>,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        count: f64,
        sum: f64,
    },
}

impl Value {
    /// Adds `delta` to this cumulative value; `false` when their shapes differ.
    fn add(&mut self, delta: &Value) -> bool {
        match (self, delta) {
            (Value::Number(a), Value::Number(b)) => {
                *a += b;
                true
            }
            (
                Value::Histogram {
                    buckets,
                    count,
                    sum,
                },
                Value::Histogram {
                    buckets: d_buckets,
                    count: d_count,
                    sum: d_sum,
                },
            ) => {
                if buckets.len() != d_buckets.len()
                    || buckets.iter().zip(d_buckets).any(|(a, b)| a.0 != b.0)
                {
                    return false;
                }
                for (a, b) in buckets.iter_mut().zip(d_buckets) {
                    a.1 += b.1;
                }
                *count += d_count;
                *sum = match (*sum, d_sum) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                true
            }
            _ => false,
        }
    }
}

/// Cumulative values of delta series, bounded by series count.
#[derive(Debug)]
pub struct DeltaStates {
    max_series: usize,
    series: HashMap<u64, DeltaState>,
}

#[derive(Debug)]
struct DeltaState {
    last_ms: i64,
    value: Value,
}

impl DeltaStates {
    pub fn new(max_series: usize) -> Self {
        DeltaStates {
            max_series,
            series: HashMap::new(),
        }
    }

    /// Series tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Adds the delta `value` at `ms` to series `key`; returns the cumulative value.
    fn accumulate(&mut self, key: u64, ms: i64, value: Value) -> Result<Value, &'static str> {
        if let Some(state) = self.series.get_mut(&key) {
            if ms <= state.last_ms {
                return Err(refusal::DELTA_OUT_OF_ORDER);
            }
            state.last_ms = ms;
            if !state.value.add(&value) {
                // New bucket layout: the series starts over.
                state.value = value;
            }
            return Ok(state.value.clone());
        }
        if self.series.len() >= self.max_series {
            return Err(refusal::DELTA_SERIES_LIMIT);
        }
        self.series.insert(
            key,
            DeltaState {
                last_ms: ms,
                value: value.clone(),
            },
        );
        Ok(value)
    }
}

/// A point common to all kinds: attributes, time, flags.
struct PointHead<'a> {
    attributes: &'a [KeyValue],
    time_unix_nano: u64,
    flags: u32,
}

/// OTLP `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

impl Translator {
    pub fn new(config: TranslateConfig) -> Self {
        let delta = Mutex::new(DeltaStates::new(config.delta_max_series));
        Translator {
            config,
            delta,
            info_sent: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &TranslateConfig {
        &self.config
    }

    /// Series with delta state kept.
    pub fn delta_series(&self) -> usize {
        self.delta.lock().map_or(0, |d| d.len())
    }

    /// Translates `request`; `tenant` keeps tenants' delta states apart.
    pub fn translate(
        &self,
        request: &ExportMetricsServiceRequest,
        tenant: Option<&str>,
    ) -> Translated {
        let mut out = Translated::default();
        let mut set = SeriesSet::default();
        for resource_metrics in &request.resource_metrics {
            let attributes = resource_metrics
                .resource
                .as_ref()
                .map_or(&[][..], |r| r.attributes.as_slice());
            let resource = self.resource_labels(attributes);
            let mut latest_ms: Option<i64> = None;
            for scope in &resource_metrics.scope_metrics {
                for metric in &scope.metrics {
                    self.metric(
                        metric,
                        &resource,
                        tenant,
                        &mut set,
                        &mut out,
                        &mut latest_ms,
                    );
                }
            }
            if let (Some(info), Some(ms)) = (resource.info, latest_ms) {
                let mut labels = info;
                labels.push(label(NAME, "target_info"));
                labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                if self.info_is_newer(&labels, tenant, ms) {
                    set.push(
                        labels.iter().map(|l| (&l.name[..], &l.value[..])),
                        Sample {
                            value: 1.0,
                            timestamp: ms,
                        },
                    );
                }
            }
        }
        set.sort_samples();
        out.series = set;
        out
    }

    /// Whether `target_info` with `labels` at `ms` is newer than the last one sent.
    fn info_is_newer(&self, labels: &[Label], tenant: Option<&str>, ms: i64) -> bool {
        let mut hasher = DefaultHasher::new();
        tenant.hash(&mut hasher);
        labels.hash(&mut hasher);
        let key = hasher.finish();
        let mut sent = match self.info_sent.lock() {
            Ok(sent) => sent,
            Err(poisoned) => poisoned.into_inner(),
        };
        match sent.get_mut(&key) {
            Some(last) if *last >= ms => ms == *last,
            Some(last) => {
                *last = ms;
                true
            }
            None => {
                if sent.len() >= self.config.delta_max_series {
                    sent.clear();
                }
                sent.insert(key, ms);
                true
            }
        }
    }

    fn resource_labels(&self, attributes: &[KeyValue]) -> ResourceLabels {
        let get = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_text(kv.value.as_ref()))
        };
        let mut base = Vec::new();
        let name = get("service.name").filter(|n| !n.is_empty());
        if let Some(name) = &name {
            let job = match get("service.namespace").filter(|n| !n.is_empty()) {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.clone(),
            };
            base.push(label("job", &job));
        }
        if let Some(instance) = get("service.instance.id").filter(|i| !i.is_empty()) {
            base.push(label("instance", &instance));
        }
        let promoted: Vec<&KeyValue> = attributes
            .iter()
            .filter(|kv| self.config.promote_resource_attributes.contains(&kv.key))
            .collect();
        // job and instance win over promoted attributes of the same label name.
        let reserved = |l: &Label| l.name == "job" || l.name == "instance";
        base.extend(
            merge_attributes(promoted)
                .into_iter()
                .filter(|l| !reserved(l)),
        );
        base.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let info = if self.config.target_info {
            let others: Vec<&KeyValue> = attributes
                .iter()
                .filter(|kv| {
                    !matches!(
                        kv.key.as_str(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                })
                .collect();
            let others: Vec<Label> = merge_attributes(others)
                .into_iter()
                .filter(|l| !reserved(l))
                .collect();
            (!others.is_empty()).then(|| {
                let mut labels: Vec<Label> = base.iter().filter(|l| reserved(l)).cloned().collect();
                labels.extend(others);
                labels
            })
        } else {
            None
        };
        ResourceLabels { base, info }
    }

    #[allow(clippy::too_many_arguments)]
    fn metric(
        &self,
        metric: &Metric,
        resource: &ResourceLabels,
        tenant: Option<&str>,
        set: &mut SeriesSet,
        out: &mut Translated,
        latest_ms: &mut Option<i64>,
    ) {
        let Some(data) = &metric.data else {
            return;
        };
        let suffixes = self.config.add_metric_suffixes;
        let (kind, temporality) = match data {
            Data::Gauge(_) => (NameKind::Gauge, None),
            Data::Sum(sum) if sum.is_monotonic => {
                (NameKind::Counter, Some(sum.aggregation_temporality))
            }
            Data::Sum(sum) => (NameKind::Other, Some(sum.aggregation_temporality)),
            Data::Histogram(h) => (NameKind::Other, Some(h.aggregation_temporality)),
            Data::ExponentialHistogram(h) => (NameKind::Other, Some(h.aggregation_temporality)),
            Data::Summary(_) => (NameKind::Other, None),
        };
        let name = metric_name(&metric.name, &metric.unit, kind, suffixes);
        let empty = name.is_empty();
        let names = SeriesNames::new(name);
        let mut ctx = MetricContext {
            translator: self,
            names: &names,
            le_cache: Vec::new(),
            resource,
            tenant,
            delta: false,
            set,
            out,
            latest_ms,
        };
        let points = match data {
            Data::Gauge(g) => g.data_points.len(),
            Data::Sum(s) => s.data_points.len(),
            Data::Histogram(h) => h.data_points.len(),
            Data::ExponentialHistogram(h) => h.data_points.len(),
            Data::Summary(s) => s.data_points.len(),
        };
        let refuse_all = |ctx: &mut MetricContext<'_>, reason| {
            for _ in 0..points {
                ctx.out.refuse(reason);
            }
        };
        if empty {
            return refuse_all(&mut ctx, refusal::INVALID_NAME);
        }
        if let Some(temporality) = temporality {
            if temporality == AggregationTemporality::Delta as i32 {
                if self.config.delta == DeltaMode::Refuse {
                    return refuse_all(&mut ctx, refusal::DELTA);
                }
                ctx.delta = true;
            } else if temporality != AggregationTemporality::Cumulative as i32 {
                return refuse_all(&mut ctx, refusal::UNSPECIFIED_TEMPORALITY);
            }
        }
        match data {
            Data::Gauge(g) => g.data_points.iter().for_each(|p| ctx.number(p)),
            Data::Sum(s) => s.data_points.iter().for_each(|p| ctx.number(p)),
            Data::Histogram(h) => h.data_points.iter().for_each(|p| ctx.histogram(p)),
            Data::ExponentialHistogram(h) => {
                h.data_points.iter().for_each(|p| ctx.exponential(p));
            }
            Data::Summary(s) => s.data_points.iter().for_each(|p| ctx.summary(p)),
        }
    }
}

/// The series names of one metric, shared by all its series.
struct SeriesNames {
    name: Bytes,
    bucket: Bytes,
    sum: Bytes,
    count: Bytes,
}

impl SeriesNames {
    fn new(name: String) -> Self {
        let with = |suffix: &str| Bytes::from(format!("{name}{suffix}"));
        SeriesNames {
            bucket: with("_bucket"),
            sum: with("_sum"),
            count: with("_count"),
            name: Bytes::from(name),
        }
    }
}

/// What translating one metric's points needs.
struct MetricContext<'a> {
    translator: &'a Translator,
    names: &'a SeriesNames,
    /// `le` label values of the bounds seen in this metric (points usually share them).
    le_cache: Vec<(u64, Bytes)>,
    resource: &'a ResourceLabels,
    tenant: Option<&'a str>,
    /// Points are deltas, to be added up.
    delta: bool,
    set: &'a mut SeriesSet,
    out: &'a mut Translated,
    latest_ms: &'a mut Option<i64>,
}

impl MetricContext<'_> {
    fn number(&mut self, point: &NumberDataPoint) {
        let value = match point.value {
            Some(number_data_point::Value::AsDouble(v)) => Some(v),
            // Counts past 2^53 lose precision, as in every Prometheus client.
            #[allow(clippy::cast_precision_loss)]
            Some(number_data_point::Value::AsInt(v)) => Some(v as f64),
            None => None,
        };
        let head = PointHead {
            attributes: &point.attributes,
            time_unix_nano: point.time_unix_nano,
            flags: point.flags,
        };
        match value {
            Some(v) => self.point(&head, Value::Number(v)),
            None if head.flags & NO_RECORDED_VALUE != 0 => self.point(&head, Value::Number(0.0)),
            None => self.out.refuse(refusal::NO_VALUE),
        }
    }

    fn histogram(&mut self, point: &HistogramDataPoint) {
        let head = PointHead {
            attributes: &point.attributes,
            time_unix_nano: point.time_unix_nano,
            flags: point.flags,
        };
        let bounds = &point.explicit_bounds;
        let counts = &point.bucket_counts;
        if !counts.is_empty() && counts.len() != bounds.len() + 1 {
            return self.out.refuse(refusal::INVALID_HISTOGRAM);
        }
        let mut cumulative = 0u64;
        let buckets = bounds
            .iter()
            .zip(counts)
            .map(|(&le, &n)| {
                cumulative = cumulative.saturating_add(n);
                #[allow(clippy::cast_precision_loss)]
                (le, cumulative as f64)
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let value = Value::Histogram {
            buckets,
            count: point.count as f64,
            sum: point.sum,
        };
        self.point(&head, value);
    }

    fn exponential(&mut self, point: &ExponentialHistogramDataPoint) {
        let head = PointHead {
            attributes: &point.attributes,
            time_unix_nano: point.time_unix_nano,
            flags: point.flags,
        };
        #[allow(clippy::cast_precision_loss)]
        let value = Value::Histogram {
            buckets: exponential_buckets(point),
            count: point.count as f64,
            sum: point.sum,
        };
        self.point(&head, value);
    }

    fn summary(&mut self, point: &SummaryDataPoint) {
        let head = PointHead {
            attributes: &point.attributes,
            time_unix_nano: point.time_unix_nano,
            flags: point.flags,
        };
        #[allow(clippy::cast_precision_loss)]
        let value = Value::Summary {
            quantiles: point
                .quantile_values
                .iter()
                .map(|q| (q.quantile, q.value))
                .collect(),
            count: point.count as f64,
            sum: point.sum,
        };
        self.point(&head, value);
    }

    /// Labels, delta state and the samples of one point.
    fn point(&mut self, head: &PointHead<'_>, value: Value) {
        if head.time_unix_nano == 0 {
            return self.out.refuse(refusal::NO_TIMESTAMP);
        }
        // Nanoseconds since 1970 fit i64 until 2262.
        let ms = i64::try_from(head.time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
        let Some(group) = self.group_labels(head.attributes, &value) else {
            return self.out.refuse(refusal::DUPLICATE_LABEL);
        };
        let stale = head.flags & NO_RECORDED_VALUE != 0;
        let value = if self.delta && !stale {
            let key = self.series_key(&group);
            let accumulated = match self.translator.delta.lock() {
                Ok(mut states) => states.accumulate(key, ms, value),
                // A panic while holding the lock left the states as they were: go on with them.
                Err(poisoned) => poisoned.into_inner().accumulate(key, ms, value),
            };
            match accumulated {
                Ok(value) => value,
                Err(reason) => return self.out.refuse(reason),
            }
        } else {
            value
        };
        self.out.points += 1;
        *self.latest_ms = Some(self.latest_ms.map_or(ms, |t| t.max(ms)));
        let sample = |v: f64| Sample {
            value: if stale { f64::from_bits(STALE_NAN) } else { v },
            timestamp: ms,
        };
        let names = self.names;
        let extra = match value {
            Value::Histogram { .. } => LE,
            Value::Summary { .. } => QUANTILE,
            Value::Number(_) => NAME,
        };
        let group = EncodedGroup::new(&group, extra);
        match value {
            Value::Number(v) => self.emit(&group, &names.name, None, sample(v)),
            Value::Histogram {
                buckets,
                count,
                sum,
            } => {
                for (le, n) in buckets {
                    let le = self.le_value(le);
                    self.emit(&group, &names.bucket, Some((LE, le)), sample(n));
                }
                let inf = Bytes::from_static(b"+Inf");
                self.emit(&group, &names.bucket, Some((LE, inf)), sample(count));
                if let Some(sum) = sum {
                    self.emit(&group, &names.sum, None, sample(sum));
                }
                self.emit(&group, &names.count, None, sample(count));
            }
            Value::Summary {
                quantiles,
                count,
                sum,
            } => {
                for (q, v) in quantiles {
                    let q = Bytes::from(format_float(q));
                    self.emit(&group, &names.name, Some((QUANTILE, q)), sample(v));
                }
                self.emit(&group, &names.sum, None, sample(sum));
                self.emit(&group, &names.count, None, sample(count));
            }
        }
    }

    /// The `le` label value of bound `le`, formatted once per metric.
    fn le_value(&mut self, le: f64) -> Bytes {
        let bits = le.to_bits();
        if let Some((_, text)) = self.le_cache.iter().find(|(b, _)| *b == bits) {
            return text.clone();
        }
        let text = Bytes::from(format_float(le));
        if self.le_cache.len() < 256 {
            self.le_cache.push((bits, text.clone()));
        }
        text
    }

    /// The resource's labels and the point's, sorted; `None` when a name repeats
    /// (a point attribute named like a resource label, or `le`/`quantile`).
    fn group_labels(&self, attributes: &[KeyValue], value: &Value) -> Option<Vec<Label>> {
        let mut labels = self.resource.base.clone();
        labels.extend(merge_attributes(attributes.iter().collect()));
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if labels.windows(2).any(|w| w[0].name == w[1].name) {
            return None;
        }
        let extra = match value {
            Value::Histogram { .. } => Some(LE),
            Value::Summary { .. } => Some(QUANTILE),
            Value::Number(_) => None,
        };
        if let Some(extra) = extra {
            if labels.iter().any(|l| l.name == extra) {
                return None;
            }
        }
        Some(labels)
    }

    /// The identity of a delta series: tenant, metric name, labels.
    fn series_key(&self, group: &[Label]) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.tenant.hash(&mut hasher);
        self.names.name.hash(&mut hasher);
        for l in group {
            l.name.hash(&mut hasher);
            l.value.hash(&mut hasher);
        }
        hasher.finish()
    }

    fn emit(
        &mut self,
        group: &EncodedGroup,
        name: &Bytes,
        extra: Option<(&'static str, Bytes)>,
        sample: Sample,
    ) {
        let bytes = &group.bytes;
        self.set.push_with(
            |out| {
                out.extend_from_slice(&bytes[..group.name_at]);
                put_label(out, NAME.as_bytes(), name);
                match &extra {
                    Some((n, v)) => {
                        out.extend_from_slice(&bytes[group.name_at..group.extra_at]);
                        put_label(out, n.as_bytes(), v);
                        out.extend_from_slice(&bytes[group.extra_at..]);
                    }
                    None => out.extend_from_slice(&bytes[group.name_at..]),
                }
            },
            sample,
        );
    }
}

/// A point's labels (sorted, without `__name__`, `le`, `quantile`) encoded once,
/// with the places where `__name__` and the extra label go in.
struct EncodedGroup {
    bytes: Vec<u8>,
    /// Where `__name__` goes: before the first label named after it.
    name_at: usize,
    /// Where the extra label (`le` or `quantile`) goes; at or after `name_at`.
    extra_at: usize,
}

impl EncodedGroup {
    fn new(group: &[Label], extra: &str) -> Self {
        let mut bytes = Vec::with_capacity(group.len() * 32);
        let mut name_at = None;
        let mut extra_at = None;
        for label in group {
            if name_at.is_none() && label.name[..] > *NAME.as_bytes() {
                name_at = Some(bytes.len());
            }
            if extra_at.is_none() && label.name[..] > *extra.as_bytes() {
                extra_at = Some(bytes.len());
            }
            put_label(&mut bytes, &label.name, &label.value);
        }
        let name_at = name_at.unwrap_or(bytes.len());
        let extra_at = extra_at.unwrap_or(bytes.len()).max(name_at);
        EncodedGroup {
            bytes,
            name_at,
            extra_at,
        }
    }
}

/// The metric name label.
const NAME: &str = "__name__";
/// The bucket bound label of histograms.
const LE: &str = "le";
/// The quantile label of summaries.
const QUANTILE: &str = "quantile";

/// Cumulative counts per upper bound of an exponential histogram: negative
/// buckets (most negative first), the zero bucket, positive buckets.
fn exponential_buckets(point: &ExponentialHistogramDataPoint) -> Vec<(f64, f64)> {
    // Bucket i covers (base^i, base^(i+1)], base = 2^(2^-scale).
    let scale = f64::from(point.scale);
    let bound = |index: i64| {
        #[allow(clippy::cast_precision_loss)]
        let exponent = index as f64 * (-scale).exp2();
        exponent.exp2()
    };
    let empty = Buckets::default();
    let negative = point.negative.as_ref().unwrap_or(&empty);
    let positive = point.positive.as_ref().unwrap_or(&empty);
    let mut buckets =
        Vec::with_capacity(negative.bucket_counts.len() + positive.bucket_counts.len() + 1);
    let mut cumulative = 0u64;
    for (k, &n) in negative.bucket_counts.iter().enumerate().rev() {
        cumulative = cumulative.saturating_add(n);
        let index = i64::from(negative.offset) + k as i64;
        #[allow(clippy::cast_precision_loss)]
        buckets.push((-bound(index), cumulative as f64));
    }
    cumulative = cumulative.saturating_add(point.zero_count);
    #[allow(clippy::cast_precision_loss)]
    buckets.push((point.zero_threshold.max(0.0), cumulative as f64));
    for (k, &n) in positive.bucket_counts.iter().enumerate() {
        cumulative = cumulative.saturating_add(n);
        let index = i64::from(positive.offset) + k as i64 + 1;
        #[allow(clippy::cast_precision_loss)]
        buckets.push((bound(index), cumulative as f64));
    }
    buckets
}

/// Attributes as labels: keys sanitised, empty values dropped (Prometheus
/// reads an empty label as absent), keys that sanitise alike merged with their
/// values joined by `;` in the order of the original keys.
fn merge_attributes(attributes: Vec<&KeyValue>) -> Vec<Label> {
    let mut named: Vec<(String, &str, String)> = attributes
        .into_iter()
        .filter_map(|kv| {
            let name = label_name(&kv.key)?;
            let value = value_text(kv.value.as_ref());
            (!value.is_empty()).then_some((name, kv.key.as_str(), value))
        })
        .collect();
    named.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut labels: Vec<Label> = Vec::with_capacity(named.len());
    let mut merged: Vec<(String, String)> = Vec::with_capacity(named.len());
    for (name, _, value) in named {
        match merged.last_mut() {
            Some(last) if last.0 == name => {
                last.1.push(';');
                last.1.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    labels.extend(merged.into_iter().map(|(name, value)| Label {
        name: Bytes::from(name),
        value: Bytes::from(value),
    }));
    labels
}

fn label(name: &'static str, value: &str) -> Label {
    Label {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

/// An attribute value as label text: strings as they are, other scalars in
/// their usual form, arrays and maps as JSON.
fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        None => String::new(),
        Some(other) => json_value(other).to_string(),
    }
}

fn json_value(value: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_float(*d)), J::Number)
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, json_value))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), v.map_or(J::Null, json_value))
                })
                .collect(),
        ),
        any_value::Value::BytesValue(b) => {
            J::String(b.iter().map(|x| format!("{x:02x}")).collect())
        }
        #[allow(unreachable_patterns)]
        _ => J::Null,
    }
}

/// A float as Prometheus writes `le` and `quantile` values (`0.5`, `1`, `+Inf`).
pub fn format_float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if value.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{value}")
    }
}

/// Hash of a resource's series identity labels (`job`, `instance`, promoted
/// attributes): every series of the resource, `target_info` included, carries
/// them, so equal keys keep a series in one partition.
pub fn resource_key(attribute: impl Fn(&str) -> Option<String>, promote: &[String]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for key in ["service.namespace", "service.name", "service.instance.id"]
        .into_iter()
        .chain(promote.iter().map(String::as_str))
    {
        attribute(key).hash(&mut hasher);
    }
    hasher.finish()
}
