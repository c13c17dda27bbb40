//! [`Aggregator`]: calls and a duration histogram per series, per context,
//! read straight from the encoded spans.
//!
//! A series is one combination of the dimensions (service, span name, kind,
//! status code and the configured extras) within one [`Context`], so a batch
//! built from it never mixes tenants. For each span the key is written into
//! one reused buffer (length-prefixed strings, fixed-width numbers) and
//! looked up in the context's map by that byte slice: a span whose series
//! exists allocates nothing. The span's scalar fields and the dimensions'
//! attributes are read in one pass over the span
//! ([`SpanView::fields_and_attributes`](crate::model::view::SpanView::fields_and_attributes)).
//! The map hashes with `foldhash` (randomly seeded per map, so clients
//! cannot precompute colliding names; a third of SipHash's cost per key),
//! and holds at most the cardinality limit's entries.
//!
//! # Bounds
//! At most `aggregation_cardinality_limit` series live at once over all
//! contexts; a span of a new series past that is counted in its context's
//! one overflow series (`otel.metric.overflow = true`) and on
//! `otlp_gateway_spanmetrics_overflow_spans_total`. The number of contexts
//! is bounded by the tenancy registry (unlisted tenants share one state past
//! 100,000).

use std::collections::HashMap;
use std::time::Duration;

use metrics::{counter, gauge};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use tokio::time::Instant;

use crate::model::view::{AnyValueRef, ResourceView};
use crate::model::{Batch, Context};
use crate::telemetry::metrics::{SPANMETRICS_OVERFLOW_SPANS, SPANMETRICS_SERIES};

use super::config::SpanMetricsConfig;
use super::OVERFLOW_KEY;

/// One series' cumulative counts.
#[derive(Debug, Clone)]
pub struct Series {
    /// The resource's `service.name` (`None` when that dimension is excluded).
    pub service: Option<String>,
    /// The data point attributes, built once when the series is first seen.
    pub attributes: Vec<KeyValue>,
    /// When the series was first seen, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// The last span counted (for `metrics_expiration`).
    pub last_update: Instant,
    pub calls: u64,
    /// Sum of the durations, nanoseconds.
    pub sum_nanos: u128,
    /// Counts per bucket: `bounds.len() + 1`, the last one above every bound.
    pub buckets: Box<[u64]>,
}

impl Series {
    fn new(
        service: Option<String>,
        attributes: Vec<KeyValue>,
        buckets: usize,
        now: Instant,
        unix_nano: u64,
    ) -> Self {
        Series {
            service,
            attributes,
            start_unix_nano: unix_nano,
            last_update: now,
            calls: 0,
            sum_nanos: 0,
            buckets: vec![0; buckets].into_boxed_slice(),
        }
    }

    #[inline]
    fn record(&mut self, bucket: usize, duration_nanos: u64, now: Instant) {
        self.calls += 1;
        self.sum_nanos += u128::from(duration_nanos);
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
        }
        self.last_update = now;
    }

    /// The sum of the durations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        // Whole seconds and the rest apart, so large sums keep their nanoseconds.
        (self.sum_nanos / 1_000_000_000) as f64 + (self.sum_nanos % 1_000_000_000) as f64 / 1e9
    }
}

/// The series of one context.
#[derive(Debug, Default)]
pub struct ContextSeries {
    by_key: HashMap<Box<[u8]>, Series, foldhash::fast::RandomState>,
    overflow: Option<Series>,
}

impl ContextSeries {
    /// Every series, overflow last.
    pub fn series(&self) -> impl Iterator<Item = &Series> {
        self.by_key.values().chain(self.overflow.as_ref())
    }

    pub fn overflow(&self) -> Option<&Series> {
        self.overflow.as_ref()
    }

    fn is_empty(&self) -> bool {
        self.by_key.is_empty() && self.overflow.is_none()
    }
}

/// A configured extra dimension.
#[derive(Debug, Clone)]
struct Dimension {
    name: String,
    default: Option<String>,
}

/// Which default dimensions are kept.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    service: bool,
    name: bool,
    kind: bool,
    status: bool,
}

/// Calls and duration histograms per series, per context. See the module docs.
#[derive(Debug)]
pub struct Aggregator {
    /// Bucket upper bounds in nanoseconds, increasing.
    bounds_nanos: Box<[u64]>,
    /// The same in seconds, for the data points.
    bounds_seconds: Vec<f64>,
    dimensions: Vec<Dimension>,
    defaults: Defaults,
    limit: usize,
    expiration: Option<Duration>,
    /// Series over all contexts, overflow series not counted.
    live: usize,
    contexts: HashMap<Context, ContextSeries>,
    /// The key of the span at hand.
    key: Vec<u8>,
}

/// Key tags of a dimension's value.
const ABSENT: u8 = 0;
const STR: u8 = 1;
const BOOL: u8 = 2;
const INT: u8 = 3;
const DOUBLE: u8 = 4;
const BYTES: u8 = 5;

impl Aggregator {
    pub fn new(config: &SpanMetricsConfig) -> Self {
        let bounds_nanos: Box<[u64]> = config
            .histogram
            .explicit
            .buckets
            .iter()
            .map(|b| u64::try_from(b.get().as_nanos()).unwrap_or(u64::MAX))
            .collect();
        let bounds_seconds = config
            .histogram
            .explicit
            .buckets
            .iter()
            .map(|b| b.get().as_secs_f64())
            .collect();
        let expiration = config.metrics_expiration.get();
        Aggregator {
            bounds_nanos,
            bounds_seconds,
            dimensions: config
                .dimensions
                .iter()
                .map(|d| Dimension {
                    name: d.name.clone(),
                    default: d.default.clone(),
                })
                .collect(),
            defaults: Defaults {
                service: config.keeps("service.name"),
                name: config.keeps("span.name"),
                kind: config.keeps("span.kind"),
                status: config.keeps("status.code"),
            },
            limit: config.aggregation_cardinality_limit,
            expiration: (!expiration.is_zero()).then_some(expiration),
            live: 0,
            contexts: HashMap::new(),
            key: Vec::with_capacity(256),
        }
    }

    /// The histogram's bucket bounds in seconds.
    pub fn bounds_seconds(&self) -> &[f64] {
        &self.bounds_seconds
    }

    /// Series held over all contexts, overflow series not counted.
    pub fn live_series(&self) -> usize {
        self.live
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The series of each context.
    pub fn contexts(&self) -> impl Iterator<Item = (&Context, &ContextSeries)> {
        self.contexts.iter()
    }

    /// Counts every span of `batch` under `context`; `now` and `unix_nano` (the
    /// wall clock) date the series seen for the first time.
    pub fn record(&mut self, context: &Context, batch: &Batch, now: Instant, unix_nano: u64) {
        let Aggregator {
            bounds_nanos,
            dimensions,
            defaults,
            limit,
            live,
            contexts,
            key,
            ..
        } = self;
        // Looked up by reference: the context is cloned only the first time.
        if !contexts.contains_key(context) {
            contexts.insert(context.clone(), ContextSeries::default());
        }
        let Some(state) = contexts.get_mut(context) else {
            return;
        };
        let mut overflowed = 0u64;
        // Read once per resource: its service name and its values of the dimensions.
        let mut resource: Option<ResourceView<'_>> = None;
        let mut service = "";
        let mut from_resource: Vec<Option<AnyValueRef<'_>>> = vec![None; dimensions.len()];
        let mut values: Vec<Option<AnyValueRef<'_>>> = vec![None; dimensions.len()];
        let mut on_span: Vec<Option<AnyValueRef<'_>>> = vec![None; dimensions.len()];
        let names: Vec<&str> = dimensions.iter().map(|d| d.name.as_str()).collect();
        for span in batch.spans() {
            let span_resource = span.resource();
            if !resource.is_some_and(|r| r.same_as(&span_resource)) {
                service = span_resource
                    .attribute("service.name")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                for (value, dimension) in from_resource.iter_mut().zip(dimensions.iter()) {
                    *value = span_resource.attribute(&dimension.name).filter(is_scalar);
                }
                resource = Some(span_resource);
            }
            let fields = span.fields_and_attributes(&names, &mut on_span);
            let kind = known_kind(fields.kind);
            let status = known_status(fields.status_code);
            key.clear();
            if defaults.service {
                put_str(key, service);
            }
            if defaults.name {
                put_str(key, fields.name);
            }
            // Both fit one byte once normalised.
            key.push(if defaults.kind { kind as u8 } else { 0 });
            key.push(if defaults.status { status as u8 } else { 0 });
            for (i, dimension) in dimensions.iter().enumerate() {
                let value = on_span[i].filter(is_scalar).or(from_resource[i]);
                put_value(key, value, dimension.default.as_deref());
                values[i] = value;
            }
            let duration = fields.duration_nanos();
            // OTLP explicit buckets are (bound[i-1], bound[i]]: the first bound not below the value.
            let bucket = bounds_nanos.partition_point(|&bound| bound < duration);
            if let Some(series) = state.by_key.get_mut(key.as_slice()) {
                series.record(bucket, duration, now);
                continue;
            }
            let buckets = bounds_nanos.len() + 1;
            if *live < *limit {
                let mut attributes = Vec::with_capacity(4 + dimensions.len());
                if defaults.service {
                    attributes.push(string_attribute("service.name", service));
                }
                if defaults.name {
                    attributes.push(string_attribute("span.name", fields.name));
                }
                if defaults.kind {
                    attributes.push(string_attribute("span.kind", kind.as_str_name()));
                }
                if defaults.status {
                    attributes.push(string_attribute("status.code", status.as_str_name()));
                }
                for (dimension, value) in dimensions.iter().zip(&values) {
                    if let Some(value) = dimension_value(*value, dimension.default.as_deref()) {
                        attributes.push(KeyValue {
                            key: dimension.name.clone(),
                            value: Some(value),
                            ..Default::default()
                        });
                    }
                }
                let service = defaults.service.then(|| service.to_owned());
                let mut series = Series::new(service, attributes, buckets, now, unix_nano);
                series.record(bucket, duration, now);
                state.by_key.insert(key.as_slice().into(), series);
                *live += 1;
            } else {
                overflowed += 1;
                state
                    .overflow
                    .get_or_insert_with(|| {
                        let attributes = vec![KeyValue {
                            key: OVERFLOW_KEY.to_owned(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::BoolValue(true)),
                            }),
                            ..Default::default()
                        }];
                        Series::new(None, attributes, buckets, now, unix_nano)
                    })
                    .record(bucket, duration, now);
            }
        }
        if overflowed > 0 {
            counter!(SPANMETRICS_OVERFLOW_SPANS).increment(overflowed);
        }
        if state.is_empty() {
            contexts.remove(context);
        }
    }

    /// Forgets the series that saw no span since `now - metrics_expiration`
    /// (nothing without an expiration), and publishes the series count.
    pub fn expire(&mut self, now: Instant) {
        if let Some(expiration) = self.expiration {
            let mut removed = 0;
            self.contexts.retain(|_, state| {
                let before = state.by_key.len();
                state
                    .by_key
                    .retain(|_, series| now.duration_since(series.last_update) < expiration);
                removed += before - state.by_key.len();
                if state
                    .overflow
                    .as_ref()
                    .is_some_and(|o| now.duration_since(o.last_update) >= expiration)
                {
                    state.overflow = None;
                }
                !state.is_empty()
            });
            self.live -= removed;
        }
        gauge!(SPANMETRICS_SERIES).set(self.live as f64);
    }
}

fn is_scalar(value: &AnyValueRef<'_>) -> bool {
    !matches!(value, AnyValueRef::Other)
}

/// The kind, unknown values as unspecified (so they share a series and a label value).
fn known_kind(kind: i32) -> SpanKind {
    SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified)
}

fn known_status(code: i32) -> StatusCode {
    StatusCode::try_from(code).unwrap_or(StatusCode::Unset)
}

#[inline]
fn put_str(key: &mut Vec<u8>, s: &str) {
    put_bytes(key, s.as_bytes());
}

#[inline]
fn put_bytes(key: &mut Vec<u8>, b: &[u8]) {
    // Lengths keep ("ab", "c") and ("a", "bc") apart.
    key.extend_from_slice(&(b.len() as u32).to_le_bytes());
    key.extend_from_slice(b);
}

/// A dimension's value in the key; the default is written as the string it becomes.
#[inline]
fn put_value(key: &mut Vec<u8>, value: Option<AnyValueRef<'_>>, default: Option<&str>) {
    match (value.filter(is_scalar), default) {
        (Some(AnyValueRef::Str(s)), _) | (None, Some(s)) => {
            key.push(STR);
            put_str(key, s);
        }
        (Some(AnyValueRef::Bool(b)), _) => key.extend_from_slice(&[BOOL, u8::from(b)]),
        (Some(AnyValueRef::Int(i)), _) => {
            key.push(INT);
            key.extend_from_slice(&i.to_le_bytes());
        }
        (Some(AnyValueRef::Double(d)), _) => {
            key.push(DOUBLE);
            key.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        (Some(AnyValueRef::Bytes(b)), _) => {
            key.push(BYTES);
            put_bytes(key, b);
        }
        (Some(AnyValueRef::Other), _) | (None, None) => key.push(ABSENT),
    }
}

/// A dimension's value as a data point attribute value, keeping its type.
fn dimension_value(value: Option<AnyValueRef<'_>>, default: Option<&str>) -> Option<AnyValue> {
    let value = match (value.filter(is_scalar), default) {
        (Some(AnyValueRef::Str(s)), _) | (None, Some(s)) => any_value::Value::StringValue(s.into()),
        (Some(AnyValueRef::Bool(b)), _) => any_value::Value::BoolValue(b),
        (Some(AnyValueRef::Int(i)), _) => any_value::Value::IntValue(i),
        (Some(AnyValueRef::Double(d)), _) => any_value::Value::DoubleValue(d),
        (Some(AnyValueRef::Bytes(b)), _) => any_value::Value::BytesValue(b.to_vec()),
        (Some(AnyValueRef::Other), _) | (None, None) => return None,
    };
    Some(AnyValue { value: Some(value) })
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}
