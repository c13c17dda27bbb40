//! The gateway's own telemetry: metrics, logs, `/health`, `/ready`, `/metrics`.

pub mod config;
pub mod metrics;
