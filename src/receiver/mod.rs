//! OTLP receivers: gRPC on 4317 and HTTP on 4318.

pub mod config;
