//! Starts an in-process gateway from a TOML snippet, on ephemeral ports.
#![allow(dead_code)]

use std::net::SocketAddr;

use otlp_gateway::config;
use otlp_gateway::topology::Gateway;

/// A config with every listener on `127.0.0.1:0`, a fast batcher, and `body` appended.
pub fn config_text(body: &str) -> String {
    format!(
        r#"
[service]
shutdown_timeout = "5s"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"
[receivers.otlp.http]
endpoint = "127.0.0.1:0"
[processors.batch]
send_batch_size = 8192
timeout = "20ms"
{body}
"#
    )
}

/// Starts a gateway with [`config_text`]`(body)`.
///
/// # Panics
/// When the config is invalid or the gateway does not start.
pub async fn start(body: &str) -> Gateway {
    let text = config_text(body);
    let (config, _warnings) = config::load_and_validate_str(&text, "test.toml")
        .unwrap_or_else(|errors| panic!("invalid test config:\n{errors}\n{text}"));
    Gateway::start(&config).await.expect("gateway starts")
}

pub fn grpc_url(gateway: &Gateway) -> String {
    format!("http://{}", gateway.grpc_addr().expect("grpc receiver"))
}

pub fn http_base(gateway: &Gateway) -> String {
    format!("http://{}", gateway.http_addr().expect("http receiver"))
}

pub fn admin(gateway: &Gateway) -> SocketAddr {
    gateway.admin_addr().expect("admin listener")
}

/// An OTLP exporter table named `down` pointing at `endpoint`, with quick retries.
pub fn otlp_exporter(endpoint: &str, protocol: &str, queue_size: u64) -> String {
    otlp_exporter_named("down", endpoint, protocol, queue_size)
}

/// [`otlp_exporter`] under another name (metrics are per exporter id).
pub fn otlp_exporter_named(name: &str, endpoint: &str, protocol: &str, queue_size: u64) -> String {
    format!(
        r#"
[exporters.otlp.{name}]
endpoint = "{endpoint}"
protocol = "{protocol}"
compression = "none"
timeout = "2s"
[exporters.otlp.{name}.retry_on_failure]
initial_interval = "20ms"
max_interval = "100ms"
max_elapsed_time = "60s"
[exporters.otlp.{name}.sending_queue]
queue_size = {queue_size}
num_consumers = 2
"#
    )
}
