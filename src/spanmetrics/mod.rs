//! Span metrics (RED): request counts and latency histograms computed from
//! every span, before tail sampling drops any.
//!
//! ```text
//! traces pipeline: redaction ─► FanOut ─┬► tail sampler ─► exporters   (or the exporters directly)
//!                                       └► SpanMetricsConnector ─Ingest─► metrics pipeline
//! ```
//!
//! With `[connectors.spanmetrics]` the traces pipeline gets one more fan-out
//! target, next to the sampler (or the exporters): a timed stage
//! ([`pipeline::spawn_stage`](crate::pipeline::spawn_stage)) whose output goes
//! into the metrics pipeline ([`Downstream::Pipeline`](crate::pipeline::Downstream)),
//! through that pipeline's own stages and exporters. It reads each span in
//! place ([`crate::model::view`]), never decoding a span.
//!
//! # Metrics
//! Per series (one combination of dimensions within one tenant context):
//!
//! | OTLP metric | type | Prometheus (after the OTLP translation) |
//! |---|---|---|
//! | `calls` | sum, monotonic, cumulative, int | `calls_total` |
//! | `duration` (unit `s`) | histogram, explicit buckets, cumulative | `duration_seconds_bucket` / `_sum` / `_count` |
//!
//! Data point attributes follow the Collector's spanmetrics connector:
//! `service.name` (the resource's), `span.name`, `span.kind`
//! (`SPAN_KIND_SERVER`, …), `status.code` (`STATUS_CODE_ERROR`, …), then the
//! configured `dimensions`, typed as in the span. Prometheus label
//! sanitising turns them into `service_name`, `span_name`, `span_kind`,
//! `status_code`. Each service's series sit under a resource holding its
//! `service.name` (so `job` is the service). `namespace` prefixes the names
//! (`traces.span.metrics` gives the Collector's).
//!
//! Series are cumulative from the moment they were first seen
//! (`start_time_unix_nano`) and all are sent every `metrics_flush_interval`
//! (and at shutdown) until they expire (`metrics_expiration`, default never).

pub mod aggregate;
pub mod config;
pub mod connector;
pub mod encode;

#[cfg(test)]
mod tests;

pub use aggregate::Aggregator;
pub use config::SpanMetricsConfig;
pub use connector::SpanMetricsConnector;

/// The attribute of the overflow series, as the Collector names it.
pub const OVERFLOW_KEY: &str = "otel.metric.overflow";

/// Spans the connector's fan-out target may hold while it catches up: the
/// connector lets go of a batch as soon as it has counted it, so this only
/// bounds what waits in its channel (shared with the other targets, not copied).
pub const CONNECTOR_BUDGET: u64 = 1 << 18;
