pub mod fake_otlp;
pub mod gateway;
