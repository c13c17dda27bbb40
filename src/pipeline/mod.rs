//! The pipeline: builds the topology from the config and moves batches from
//! the receivers through the stages to every exporter.
//!
//! ```text
//! receiver ─Ingest─► signal task: stages (Transform) ─FanOut─► targets:
//!     exporter branch: batcher ► queue ► senders ► exporter (or one chain per partition)
//!     timed stage:     own budget ► task ► FanOut of its own (or a connector ► another Ingest)
//! ```
//!
//! # Stage contract
//! Every step implements [`Transform`] (`process(input, &mut out)`, plus
//! `deadline` / `on_deadline` / `flush` for steps that hold data until a
//! time). Steps that hold nothing run inline on the signal's task, in flow
//! order, as [`BatchStage`]s; the task, not the stage, counts items in and
//! out. Steps that own time run as their own task through [`run_timed`]: the
//! batcher is the first of them, tail sampling and span metrics come next.
//!
//! # Backpressure
//! See [`fanout`]: admission into every target's item budget, or a
//! retryable refusal to the client.

pub mod branch;
pub mod fanout;
pub mod ingest;
pub mod signal;
pub mod timed;

pub use crate::stage::{run_timed, StageError, Transform};
pub use fanout::{FanOut, Full, Target, TargetKind};
pub use ingest::{Accepted, Ingest, Refused, Submission};
pub use signal::SignalPipeline;

/// The inline stages of a signal: batches (with their context) in, batches out.
pub type BatchStage = Box<dyn Transform<In = crate::model::Envelope, Out = crate::model::Envelope>>;
pub use timed::{spawn_sharded_stage, spawn_stage, Downstream};
