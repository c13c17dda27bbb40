pub mod elasticsearch;
pub mod fake_otlp;
pub mod gateway;
pub mod jaeger;
pub mod sdk;
pub mod process;
pub mod prometheus;
