//! The OpenTelemetry SDK as a client of a running gateway: which transport,
//! the exporters for each signal, and the helpers to read what arrived.
#![allow(dead_code)]

use opentelemetry_otlp::{LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue as PbKeyValue};
use otlp_gateway::model::Signal;
use otlp_gateway::topology::Gateway;

use super::gateway;

/// The SDK's OTLP transport.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    Grpc,
    /// HTTP/protobuf.
    Http,
}

/// Where `client` sends `signal` on `gw` (HTTP takes the signal's path).
pub fn endpoint(gw: &Gateway, client: Client, signal: Signal) -> String {
    match client {
        Client::Grpc => gateway::grpc_url(gw),
        Client::Http => format!("{}{}", gateway::http_base(gw), signal.http_path()),
    }
}

/// Runs `f` on a blocking thread with the runtime entered: the SDK's
/// processors block, and the tonic client needs a runtime context.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        f()
    })
    .await
    .expect("blocking task")
}

/// The SDK's span exporter over `client` to `url`.
pub fn span_exporter(client: Client, url: String) -> SpanExporter {
    match client {
        Client::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build(),
        Client::Http => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build(),
    }
    .expect("span exporter")
}

/// The SDK's metric exporter over `client` to `url`.
pub fn metric_exporter(client: Client, url: String) -> MetricExporter {
    match client {
        Client::Grpc => MetricExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build(),
        Client::Http => MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build(),
    }
    .expect("metric exporter")
}

/// The SDK's log exporter over `client` to `url`.
pub fn log_exporter(client: Client, url: String) -> LogExporter {
    match client {
        Client::Grpc => LogExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build(),
        Client::Http => LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build(),
    }
    .expect("log exporter")
}

/// The value of attribute `key`, if present.
pub fn attr(attributes: &[PbKeyValue], key: &str) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

/// A string attribute value, to compare with [`attr`].
pub fn string(s: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(s.into()))
}

/// The bytes of a hex string (trace and span ids in OTLP/JSON).
pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
