//! `[service]` and `[admin]`: the gateway's own logs, shutdown and admin listener.

use serde::Deserialize;

use crate::settings::units::HumanDuration;

/// `[service]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// On SIGTERM/SIGINT: how long queued data may drain before exit. Duration. Default `"30s"`.
    pub shutdown_timeout: HumanDuration,
    /// `[service.logs]`: the gateway's own logs. Default: `"info"`, text.
    pub logs: LogsConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            shutdown_timeout: HumanDuration::from_secs(30),
            logs: LogsConfig::default(),
        }
    }
}

/// Own log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[service.logs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Filter in `RUST_LOG` syntax (`"info"`, `"warn,otlp_gateway=debug"`); checked by
    /// `check-config`. `RUST_LOG`, when set, wins. Default `"info"`.
    pub level: String,
    /// `"text"` or `"json"`. Default `"text"`.
    pub format: LogFormat,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[admin]`: `/health`, `/ready` and `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address, `IP:port`; must not clash with a receiver's. Default `"127.0.0.1:8888"`;
    /// use `"0.0.0.0:8888"` in a container.
    pub endpoint: String,
    /// `/ready` fails while any exporter queue is fuller than this share of its capacity.
    /// Greater than 0 and at most 1. Default `0.9`.
    pub ready_queue_high_water: f64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            endpoint: "127.0.0.1:8888".into(),
            ready_queue_high_water: 0.9,
        }
    }
}
