//! Tail sampling: spans held per trace until the trace is decided by named
//! policies (keep every error, every VIP, every order over 1000, a share of
//! the rest), in bounded memory.
//!
//! The sampler is a timed stage with its own budget
//! ([`pipeline::spawn_stage`](crate::pipeline::spawn_stage)) in front of the
//! traces pipeline's exporters: the fan-out refuses clients retryably when it
//! is full, and kept traces go through a fan-out of their own to the
//! exporters. The decision logic ([`policy`]) is pure and runs without a runtime.

pub mod config;
pub mod held;
pub mod policy;
pub mod sampler;

pub use config::TailSamplingConfig;
pub use sampler::TailSampler;
