//! otlp-gateway: an OTLP collector tier between services and their storage.
//!
//! ```text
//!  services ─OTLP/gRPC :4317─┐
//!           ─OTLP/HTTP :4318─┤ receiver   decode + validate into a `Batch` (no copy)
//!                            ▼
//!                         pipeline      per-signal task: stages (`Transform`), fan-out
//!                            ▼
//!                          batch        per exporter: size / time
//!                            ▼
//!                          queue        bounded, item-counted; retry with backoff
//!                            ▼
//!                         exporter      otlp (gRPC, HTTP) · debug
//! ```
//! Data only flows down. `telemetry` serves `/metrics`, `/health`, `/ready`.
#![forbid(unsafe_code)]

pub mod settings;
pub mod budget;
pub mod stage;
pub mod config;
pub mod model;
pub mod receiver;
pub mod pipeline;
pub mod redaction;
pub mod sampling;
pub mod spanmetrics;
pub mod tenancy;
pub mod batch;
pub mod queue;
pub mod exporter;
pub mod telemetry;
pub mod topology;
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;
