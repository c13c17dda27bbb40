//! Builders of realistic OTLP payloads for tests and benches (being written).
