//! The resolved config in words, for `otlp-gateway check-config`.
//!
//! Every value that changes behaviour is shown, defaults included, so an operator can check what
//! will actually run. Header values are never shown (they are often secrets), only their names.

use super::Config;
use crate::model::Signal;
use crate::receiver::config::ConnectionLimits;
use crate::telemetry::config::LogFormat;

/// The resolved config, one line per component and per pipeline, ending in a newline:
///
/// ```text
/// service: shutdown_timeout 30s, logs "info" as text
/// receivers: otlp/grpc 127.0.0.1:4317 (max 8.0 MiB, 64.0 MiB decompressed, 100 streams per connection, 1000 connections), otlp/http ..., retry_after 1s
/// admin: 127.0.0.1:8888 (/ready fails while a queue is over 90% full)
/// exporter debug/console: basic, queue 200000 items, 4 consumers, breaker after 5 failures or 10% of 20+ in 30s, open 1s..1m
/// pipeline traces: receivers [otlp] -> batch(send_batch_size=8192, send_batch_max_size=0 (no limit), timeout=200ms) -> exporters [debug/console]
/// ```
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let logs = &config.service.logs;
    let format = match logs.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    out.push_str(&format!(
        "service: shutdown_timeout {}, logs \"{}\" as {format}\n",
        config.service.shutdown_timeout, logs.level
    ));

    let otlp = &config.receivers.otlp;
    let mut receivers = Vec::new();
    if let Some(grpc) = &otlp.grpc {
        receivers.push(format!(
            "otlp/grpc {} (max {}, {} decompressed, {} streams per connection, {} connections, {})",
            grpc.endpoint,
            grpc.max_request_bytes,
            grpc.max_decompressed_bytes,
            grpc.max_concurrent_streams,
            grpc.max_connections,
            timeouts(&grpc.connection_limits())
        ));
    }
    if let Some(http) = &otlp.http {
        receivers.push(format!(
            "otlp/http {} (max {}, {} decompressed, {} streams per connection, {} connections, {})",
            http.endpoint,
            http.max_request_bytes,
            http.max_decompressed_bytes,
            http.max_concurrent_streams,
            http.max_connections,
            timeouts(&http.connection_limits())
        ));
    }
    if receivers.is_empty() {
        receivers.push("none".to_owned());
    }
    out.push_str(&format!(
        "receivers: {}, retry_after {}, max_inflight_bytes {}\n",
        receivers.join(", "),
        otlp.retry_after,
        otlp.max_inflight_bytes
    ));
    out.push_str(&format!(
        "admin: {} (/ready fails while a queue is over {}% full)\n",
        config.admin.endpoint,
        config.admin.ready_queue_high_water * 100.0
    ));

    if let Some(tenancy) = &config.tenancy {
        out.push_str(&format!(
            "tenancy: {}\n",
            tenancy.describe(&config.tenants, &config.routes)
        ));
    }
    for exporter in config.exporters.iter() {
        out.push_str(&format!(
            "exporter {}: {}\n",
            exporter.id(),
            exporter.config.describe()
        ));
    }

    if let Some(spanmetrics) = &config.connectors.spanmetrics {
        out.push_str(&format!(
            "connector spanmetrics: traces -> metrics, {}\n",
            spanmetrics.describe()
        ));
    }

    let batch = &config.processors.batch;
    let max = if batch.send_batch_max_size == 0 {
        "0 (no limit)".to_owned()
    } else {
        batch.send_batch_max_size.to_string()
    };
    let batch = format!(
        "batch(send_batch_size={}, send_batch_max_size={max}, timeout={})",
        batch.send_batch_size, batch.timeout
    );
    for signal in Signal::ALL {
        match config.pipelines.get(signal) {
            Some(pipeline) => {
                let redaction = match &config.processors.redaction {
                    Some(redaction) => format!("{} -> ", redaction.describe()),
                    None => String::new(),
                };
                let sampling = match (&config.processors.tail_sampling, signal) {
                    (Some(sampling), Signal::Traces) => format!("{} -> ", sampling.describe()),
                    _ => String::new(),
                };
                let spanmetrics = config.connectors.spanmetrics.is_some();
                let (receivers, connectors) = match signal {
                    Signal::Traces if spanmetrics => (
                        "otlp",
                        ", connectors [spanmetrics] (every span, before sampling)",
                    ),
                    Signal::Metrics if spanmetrics => ("otlp, spanmetrics", ""),
                    _ => ("otlp", ""),
                };
                out.push_str(&format!(
                    "pipeline {}: receivers [{receivers}] -> {redaction}{sampling}{batch} -> exporters [{}]{connectors}\n",
                    signal.as_str(),
                    pipeline.exporters.join(", ")
                ))
            }
            None => out.push_str(&format!("pipeline {}: not defined\n", signal.as_str())),
        }
    }
    out
}

/// The connection timeouts in words.
fn timeouts(limits: &ConnectionLimits) -> String {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let ping = match limits.keepalive_time {
        Some(every) => format!(
            "h2 ping every {} (timeout {})",
            d(every),
            d(limits.keepalive_timeout)
        ),
        None => "no h2 ping".to_owned(),
    };
    let tcp = match limits.tcp_keepalive {
        Some(after) => format!("tcp keepalive {}", d(after)),
        None => "no tcp keepalive".to_owned(),
    };
    format!(
        "header timeout {}, body timeout {}, idle timeout {}, {ping}, {tcp}",
        d(limits.read_header_timeout),
        d(limits.read_timeout),
        d(limits.idle_timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_spelled_out() {
        let config: Config = toml::from_str(
            "[exporters.debug.console]\n\
             [exporters.otlp.jaeger]\nendpoint = \"https://j:4317\"\nheaders = { x-api-key = \"secret\" }\n\
             [pipelines.traces]\nexporters = [\"debug/console\", \"otlp/jaeger\"]\n",
        )
        .unwrap();
        assert_eq!(
            describe(&config),
            "service: shutdown_timeout 30s, logs \"info\" as text\n\
             receivers: otlp/grpc 127.0.0.1:4317 (max 8.0 MiB, 64.0 MiB decompressed, 100 streams per connection, 1000 connections, header timeout 10s, body timeout 30s, idle timeout 1m, h2 ping every 30s (timeout 10s), tcp keepalive 1m), \
             otlp/http 127.0.0.1:4318 (max 8.0 MiB, 64.0 MiB decompressed, 100 streams per connection, 1000 connections, header timeout 10s, body timeout 30s, idle timeout 1m, h2 ping every 30s (timeout 10s), tcp keepalive 1m), retry_after 1s, max_inflight_bytes 256.0 MiB\n\
             admin: 127.0.0.1:8888 (/ready fails while a queue is over 90% full)\n\
             exporter debug/console: basic, queue 200000 items, 4 consumers, \
             breaker after 5 failures or 10% of 20+ in 30s, open 1s..1m\n\
             exporter otlp/jaeger: grpc https://j:4317, gzip, timeout 5s, headers [x-api-key], tls (web roots), \
             retry 5s..30s x1.5 ±0.5, give up after 5m, queue 200000 items, 4 consumers, \
             breaker after 5 failures or 10% of 20+ in 30s, open 1s..1m\n\
             pipeline traces: receivers [otlp] -> batch(send_batch_size=8192, send_batch_max_size=0 (no limit), timeout=200ms) \
             -> exporters [debug/console, otlp/jaeger]\n\
             pipeline metrics: not defined\n\
             pipeline logs: not defined\n"
        );
        assert!(!describe(&config).contains("secret"));
    }
}
