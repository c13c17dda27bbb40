//! The gateway's own logs: `tracing` to stderr, text or JSON.

use tracing_subscriber::EnvFilter;

use super::config::{LogFormat, LogsConfig};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `config.level`.
/// A second call (tests) leaves the first subscriber in place.
///
/// # Errors
/// When `config.level` is not a valid filter.
pub fn init(config: &LogsConfig) -> Result<(), tracing_subscriber::filter::ParseError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::try_new(value)?,
        _ => EnvFilter::try_new(&config.level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
