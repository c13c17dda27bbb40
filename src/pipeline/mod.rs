//! The pipeline: builds the topology from the config and moves batches from
//! the receivers through the stages to every exporter.
//!
//! ```text
//! receiver ──Ingest──► signal task: [Transform stages] ──fan-out──► per exporter:
//!                                                          batcher ► queue ► exporter workers
//! ```
//!
//! # Stage contract
//! Synchronous steps implement [`Transform`] and run on the signal's task, in
//! flow order. Steps that own time (the batcher, later tail sampling) are
//! tasks with an inherent `async fn run(self, input, output, shutdown)`.

pub mod ingest;
pub mod stage;

pub use ingest::{Accepted, Ingest, Refused, Submission};
pub use stage::{StageError, Transform};
