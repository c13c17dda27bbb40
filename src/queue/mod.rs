//! Queues between the batcher and the exporter, and the retry around sends.

pub mod config;
pub mod retry;
