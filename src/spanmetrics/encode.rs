//! The aggregation state as OTLP metrics: per context, requests of at most
//! [`SERIES_PER_REQUEST`] series, one `ResourceMetrics` per service (its
//! resource holds `service.name`), each with the monotonic cumulative sum
//! `calls` and the cumulative explicit-bucket histogram `duration` (unit `s`).
//!
//! Built with the `opentelemetry-proto` types: this runs once per flush
//! interval for at most the cardinality limit's series, not per span.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::model::Context;

use super::aggregate::{Aggregator, Series};

/// Series (each a `calls` and a `duration` data point) per request at most.
pub const SERIES_PER_REQUEST: usize = 2048;

/// The instrumentation scope of the metrics.
pub const SCOPE_NAME: &str = "otlp-gateway/spanmetrics";

/// The metric names (with the namespace).
#[derive(Debug, Clone)]
pub struct Names {
    pub calls: String,
    pub duration: String,
}

/// One request per [`SERIES_PER_REQUEST`] series of each context, dated `unix_nano`.
pub fn requests(
    aggregator: &Aggregator,
    names: &Names,
    unix_nano: u64,
) -> Vec<(Context, ExportMetricsServiceRequest)> {
    let mut out = Vec::new();
    for (context, state) in aggregator.contexts() {
        let mut series: Vec<&Series> = state.series().collect();
        // Overflow series have no service and sort first; group the rest by service.
        series.sort_by(|a, b| a.service.cmp(&b.service));
        for chunk in series.chunks(SERIES_PER_REQUEST) {
            let mut request = ExportMetricsServiceRequest::default();
            for group in chunk.chunk_by(|a, b| a.service == b.service) {
                request.resource_metrics.push(resource_metrics(
                    group,
                    aggregator.bounds_seconds(),
                    names,
                    unix_nano,
                ));
            }
            out.push((context.clone(), request));
        }
    }
    out
}

fn resource_metrics(
    group: &[&Series],
    bounds: &[f64],
    names: &Names,
    unix_nano: u64,
) -> ResourceMetrics {
    let attributes = match group.first().and_then(|s| s.service.as_deref()) {
        Some(service) => vec![KeyValue {
            key: "service.name".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.to_owned())),
            }),
            ..Default::default()
        }],
        None => Vec::new(),
    };
    let calls = Metric {
        name: names.calls.clone(),
        description: "Spans seen, by their dimensions.".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: group
                .iter()
                .map(|s| NumberDataPoint {
                    attributes: s.attributes.clone(),
                    start_time_unix_nano: s.start_unix_nano,
                    time_unix_nano: unix_nano,
                    value: Some(number_data_point::Value::AsInt(
                        i64::try_from(s.calls).unwrap_or(i64::MAX),
                    )),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let duration = Metric {
        name: names.duration.clone(),
        description: "Span durations, by their dimensions.".to_owned(),
        unit: "s".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: group
                .iter()
                .map(|s| HistogramDataPoint {
                    attributes: s.attributes.clone(),
                    start_time_unix_nano: s.start_unix_nano,
                    time_unix_nano: unix_nano,
                    count: s.calls,
                    sum: Some(s.sum_seconds()),
                    bucket_counts: s.buckets.to_vec(),
                    explicit_bounds: bounds.to_vec(),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            }),
            metrics: vec![calls, duration],
            ..Default::default()
        }],
        ..Default::default()
    }
}
