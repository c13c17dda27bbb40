//! [`Validate`]: how a config section reports its problems, and the small
//! helpers every section's checks share.

use std::path::Path;

use super::error::ConfigError;

/// A config section that can check itself.
pub trait Validate {
    /// Push one error per problem, each with its full key path (`path` is this section's);
    /// do not stop at the first.
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>);
}

/// The message for a number or duration that must not be zero.
pub const GREATER_THAN_ZERO: &str = "must be greater than 0";

/// `parent.key`, or `key` at the root.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Pushes an error about `path.key`.
pub fn push(errors: &mut Vec<ConfigError>, path: &str, key: &str, message: impl Into<String>) {
    errors.push(ConfigError::new(join(path, key), message));
}

/// Why `file` cannot be read as a file, if it cannot. Relative paths are from the working directory.
pub fn file_problem(file: &Path) -> Option<&'static str> {
    match std::fs::metadata(file) {
        Ok(meta) if meta.is_file() => None,
        Ok(_) => Some("not a file"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some("file not found"),
        Err(_) => Some("cannot read file"),
    }
}
