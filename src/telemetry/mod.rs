//! The gateway's own telemetry: metrics, logs, `/health`, `/ready`, `/metrics`.

pub mod admin;
pub mod config;
pub mod logs;
pub mod metrics;

pub use admin::{metrics_handle, AdminServer, Readiness, ReadinessCheck};
