//! What every component's config is made of: value units (durations,
//! sizes), [`ConfigError`] and the [`Validate`] trait with its small helpers.
//!
//! A leaf: it imports nothing else of the crate, so a component's own
//! `config.rs` (receiver, batch, queue, each exporter) depends only on this,
//! and `config/` (which assembles them into `config.toml`) sits above them all.

pub mod breaker;
pub mod delivery;
pub mod error;
pub mod units;
pub mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use units::{ByteSize, HumanDuration};
pub use validate::Validate;
