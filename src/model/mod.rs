//! The in-memory form of telemetry: [`Batch`] (encoded, validated, lazily
//! read) and the wire-level tools that read and rebuild it.

pub mod batch;
pub mod regroup;
pub mod schema;
pub mod signal;
pub mod view;
pub mod wire;

pub use batch::{Batch, DecodeError, Decoded};
pub use signal::Signal;
