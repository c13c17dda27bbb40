//! Debug exporter: logs a summary of each batch, like the Collector's `debug` exporter.
//!
//! `basic` reads nothing but the batch's counts and costs nothing per item;
//! `normal` and `detailed` decode the batch (prost) and are for debugging only.

pub mod config;

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::model::{Batch, Context, Signal};

use super::{ExportError, ExportOutcome, Exporter};
pub use config::{DebugExporterConfig, Verbosity};

/// Logs what passes through.
#[derive(Debug)]
pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
}

impl DebugExporter {
    pub fn new(id: &str, config: &DebugExporterConfig) -> Self {
        DebugExporter {
            id: id.to_string(),
            verbosity: config.verbosity,
        }
    }

    /// Logs `batch` at info level.
    ///
    /// # Errors
    /// Never: a batch that cannot be decoded is logged as such.
    pub async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        self.log(batch, &Context::default());
        Ok(ExportOutcome::default())
    }

    fn log(&self, batch: &Batch, context: &Context) {
        let tenant = context.tenant().unwrap_or("");
        match self.verbosity {
            Verbosity::Basic => tracing::info!(
                exporter = %self.id,
                tenant,
                signal = %batch.signal(),
                items = batch.items(),
                bytes = batch.encoded_len(),
                "Batch."
            ),
            Verbosity::Normal | Verbosity::Detailed => {
                let summary = summarize(batch, self.verbosity == Verbosity::Detailed);
                tracing::info!(
                    exporter = %self.id,
                    tenant,
                    signal = %batch.signal(),
                    items = batch.items(),
                    bytes = batch.encoded_len(),
                    "Batch. {summary}"
                );
            }
        }
    }
}

impl Exporter for DebugExporter {
    /// Logging is the whole work: done at encode time, once per batch.
    type Request = u64;

    fn encode(&self, batch: &Batch, context: &Context) -> Result<u64, ExportError> {
        self.log(batch, context);
        Ok(batch.items())
    }

    async fn send(&self, _request: &mut u64) -> Result<ExportOutcome, ExportError> {
        Ok(ExportOutcome::default())
    }

    fn items(&self, request: &u64) -> u64 {
        *request
    }
}

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| r.attributes.iter())
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A human summary: resources, services, one sample item (or every item when `all`).
pub fn summarize(batch: &Batch, all: bool) -> String {
    let body = batch.to_bytes();
    let mut services = BTreeSet::new();
    let mut samples = Vec::new();
    let resources = match batch.signal() {
        Signal::Traces => {
            let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                return "undecodable batch".into();
            };
            for rs in &req.resource_spans {
                services.insert(service_name(rs.resource.as_ref()));
                for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    if all || samples.is_empty() {
                        samples.push(format!(
                            "span {:?} trace_id={} span_id={} kind={} status={}",
                            span.name,
                            hex(&span.trace_id),
                            hex(&span.span_id),
                            span.kind,
                            span.status.as_ref().map_or(0, |s| s.code)
                        ));
                    }
                }
            }
            req.resource_spans.len()
        }
        Signal::Metrics => {
            let Ok(req) = ExportMetricsServiceRequest::decode(body) else {
                return "undecodable batch".into();
            };
            for rm in &req.resource_metrics {
                services.insert(service_name(rm.resource.as_ref()));
                for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    if all || samples.is_empty() {
                        samples.push(format!("metric {:?} unit={:?}", metric.name, metric.unit));
                    }
                }
            }
            req.resource_metrics.len()
        }
        Signal::Logs => {
            let Ok(req) = ExportLogsServiceRequest::decode(body) else {
                return "undecodable batch".into();
            };
            for rl in &req.resource_logs {
                services.insert(service_name(rl.resource.as_ref()));
                for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                    if all || samples.is_empty() {
                        let text = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => s.clone(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        samples.push(format!(
                            "log severity={} body={text:?}",
                            record.severity_number
                        ));
                    }
                }
            }
            req.resource_logs.len()
        }
    };
    let services: Vec<_> = services.into_iter().collect();
    format!(
        "resources={resources} services=[{}] {}",
        services.join(","),
        samples.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_services_and_a_sample_span() {
        let batch = Batch::decode(Signal::Traces, crate::model::test_payload::traces(3, 16))
            .unwrap()
            .batch;
        let summary = summarize(&batch, false);
        assert!(summary.starts_with("resources="), "{summary}");
        assert!(summary.contains("services=["), "{summary}");
        assert!(summary.contains("span \""), "{summary}");
        assert_eq!(summary.matches("span \"").count(), 1);
        let all = summarize(&batch, true);
        assert_eq!(all.matches("span \"").count(), 16);
    }
}
