//! Batcher: groups each exporter's input into export-sized batches.

pub mod config;
