pub mod elasticsearch;
pub mod fake_otlp;
pub mod gateway;
pub mod sdk;
pub mod prometheus;
