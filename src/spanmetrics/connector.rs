//! [`SpanMetricsConnector`]: the aggregation as a timed stage whose output
//! is the metrics pipeline's input (a connector, see
//! [`Downstream::Pipeline`](crate::pipeline::Downstream::Pipeline)).
//!
//! Each input batch is counted and let go at once (its budget items are
//! released when `process` returns), so the connector holds only its series.
//! Every `metrics_flush_interval` after the first span, and once more when
//! its input closes, it emits every series, cumulative, one envelope per
//! context and [`SERIES_PER_REQUEST`](super::encode::SERIES_PER_REQUEST) series.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::time::Instant;

use crate::model::{Batch, Envelope, Signal};
use crate::pipeline::{StageError, Transform};
use crate::queue::QueuedBatch;

use super::aggregate::Aggregator;
use super::config::SpanMetricsConfig;
use super::encode::{requests, Names};

/// Traces in, metrics out. See the module docs.
#[derive(Debug)]
pub struct SpanMetricsConnector {
    aggregator: Aggregator,
    names: Names,
    interval: Duration,
    next_flush: Option<Instant>,
}

impl SpanMetricsConnector {
    pub fn new(config: &SpanMetricsConfig) -> Self {
        SpanMetricsConnector {
            aggregator: Aggregator::new(config),
            names: Names {
                calls: config.metric_name("calls"),
                duration: config.metric_name("duration"),
            },
            interval: config.metrics_flush_interval.get(),
            next_flush: None,
        }
    }

    /// The aggregation state (for tests and benches).
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// Every series as metrics batches, one or more per context.
    fn emit(&mut self, now: Instant, out: &mut Vec<Envelope>) {
        self.aggregator.expire(now);
        for (context, request) in requests(&self.aggregator, &self.names, unix_nanos()) {
            let body = request.encode_to_vec();
            match Batch::decode(Signal::Metrics, body.into()) {
                Ok(decoded) => out.push(Envelope::with_context(context, decoded.batch)),
                // Cannot happen for what `requests` builds; never panic on it.
                Err(error) => tracing::error!(%error, "Span metrics request did not validate."),
            }
        }
    }
}

/// Now, in nanoseconds since the Unix epoch (0 before it).
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Transform for SpanMetricsConnector {
    type In = QueuedBatch;
    type Out = Envelope;

    fn name(&self) -> &'static str {
        "spanmetrics"
    }

    fn process(&mut self, input: QueuedBatch, _out: &mut Vec<Envelope>) -> Result<(), StageError> {
        let now = Instant::now();
        self.aggregator
            .record(&input.context, &input.batch, now, unix_nanos());
        if self.next_flush.is_none() && !self.aggregator.is_empty() {
            self.next_flush = Some(now + self.interval);
        }
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        self.next_flush
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Envelope>) {
        self.emit(now, out);
        // Series are sent every interval, new spans or not, until they expire.
        self.next_flush = (!self.aggregator.is_empty()).then(|| now + self.interval);
    }

    fn flush(&mut self, out: &mut Vec<Envelope>) {
        self.emit(Instant::now(), out);
        self.next_flush = None;
    }
}
