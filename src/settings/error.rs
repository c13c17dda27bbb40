//! `ConfigError`: one problem in `config.toml`, always naming the key it is about.
//!
//! # Format
//!
//! Every config problem, whether found while reading, expanding `${VAR}`, parsing or validating,
//! prints as exactly one line:
//!
//! ```text
//! <path> (line <N>): <message>
//! <path>: <message>                 when no line is known (the key is not in the file)
//! ```
//!
//! `<path>` is the dotted key path (`exporters.otlp.jaeger.timeout`, array items as
//! `pipelines.traces.exporters[1]`). Problems that belong to the file rather than to a key
//! (unreadable file, TOML syntax, `${VAR}` expansion) use the file's name as `<path>`.
//! `<N>` is 1-based. Warnings use the same format.

use std::fmt;

/// A problem in `config.toml`, always naming the key it is about. See the module docs for the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", LineSuffix(.line))]
pub struct ConfigError {
    /// Dotted key path (`receivers.otlp.grpc.endpoint`), or the file name for file-level problems.
    pub path: String,
    /// 1-based line of the key in the file, when known.
    pub line: Option<usize>,
    /// Lower-case, no trailing period.
    pub message: String,
}

impl ConfigError {
    /// An error about `path`, line unknown (validation fills it in from the file later).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }

    /// The same error with `line` set.
    #[must_use]
    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

struct LineSuffix<'a>(&'a Option<usize>);

impl fmt::Display for LineSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

/// Every problem found in one config (in file order when validated). Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(&.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Each error's one-line text, in order.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_path_line_and_message() {
        let e = ConfigError::new(
            "exporters.otlp.jaeger.timeout",
            "invalid duration \"5 secs\"",
        )
        .at_line(Some(12));
        assert_eq!(
            e.to_string(),
            "exporters.otlp.jaeger.timeout (line 12): invalid duration \"5 secs\""
        );
        let e = ConfigError::new("pipelines", "no pipeline defined");
        assert_eq!(e.to_string(), "pipelines: no pipeline defined");
    }

    #[test]
    fn errors_join_one_per_line() {
        let errors = ConfigErrors(vec![
            ConfigError::new("a", "x").at_line(Some(1)),
            ConfigError::new("b", "y"),
        ]);
        assert_eq!(errors.to_string(), "a (line 1): x\nb: y");
    }
}
