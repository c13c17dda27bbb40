//! The pipeline: builds the topology from the config and moves batches from
//! the receivers through the stages to every exporter.
//!
//! ```text
//! receiver ─Ingest─► signal task: stages (Transform) ─admit─► per exporter:
//!                                                       batcher ► queue ► workers ► exporter
//! ```
//!
//! # Stage contract
//! Synchronous steps implement [`Transform`] and run on the signal's task, in
//! flow order, each batch in turn (`process(batch, &mut out)`); the task, not
//! the stage, counts items in and out. Steps that own time (the batcher,
//! later tail sampling) are tasks with an inherent `async fn run(self, input, output)`.
//!
//! # Backpressure
//! See [`signal`]: admission into every exporter's item budget, or a
//! retryable refusal to the client.

pub mod ingest;
pub mod signal;
pub mod stage;
pub mod topology;

pub use ingest::{Accepted, Ingest, Refused, Submission};
pub use signal::{ExporterInput, SignalPipeline};
pub use stage::{StageError, Transform};
pub use topology::{Gateway, StartError};
