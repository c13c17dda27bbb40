//! Reading `config.toml`: file → `${VAR}` expansion → TOML → [`Config`] → validation.
//!
//! Type errors carry the dotted key path (from `serde_path_to_error`) and the line (from the
//! TOML error's span). The semantic pass then collects every remaining problem, and each gets
//! the line of its key (see `locate`). Everything is reported as [`ConfigError`]s, one per line.

use std::path::Path;

use super::expand::expand;
use super::locate::Locator;
use super::validate;
use super::Config;
use crate::settings::error::{ConfigError, ConfigErrors};

/// Reads, expands (`${VAR}` from the process environment) and parses `path`. No semantic checks:
/// use [`load_and_validate`] to get a config the gateway may run.
///
/// # Errors
///
/// [`ConfigErrors`] naming the file when it cannot be read, every bad `${VAR}` reference, or
/// the first TOML syntax or type error (with key path and line).
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let (text, origin) = read(path)?;
    load_str(&text, &origin)
}

/// [`load_file`] on text already read; `origin` names it in file-level errors (e.g. the path).
///
/// # Errors
///
/// As [`load_file`].
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_with(text, origin, env_lookup)
}

/// [`load_str`] reading `${VAR}` through `lookup` instead of the process environment.
///
/// # Errors
///
/// As [`load_file`].
pub fn load_str_with(
    text: &str,
    origin: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = expand(text, origin, lookup)?;
    let locator = Locator::new(&text);
    Ok(parse(&text, origin, &locator)?)
}

/// Loads `path` and runs every semantic check. `run` and `check-config` both call this, so the
/// gateway refuses to start on any config that `check-config` rejects.
///
/// Returns the config and its warnings (legal but probably unintended, e.g. an exporter no
/// pipeline uses), each formatted like an error: `<path> (line N): <message>`.
///
/// # Errors
///
/// Every problem found, in file order (see [`load_file`] for what stops early).
pub fn load_and_validate(path: &Path) -> Result<(Config, Vec<String>), ConfigErrors> {
    let (text, origin) = read(path)?;
    load_and_validate_str(&text, &origin)
}

/// [`load_and_validate`] on text already read.
///
/// # Errors
///
/// As [`load_and_validate`].
pub fn load_and_validate_str(
    text: &str,
    origin: &str,
) -> Result<(Config, Vec<String>), ConfigErrors> {
    load_and_validate_str_with(text, origin, env_lookup)
}

/// [`load_and_validate_str`] reading `${VAR}` through `lookup` instead of the process environment.
///
/// # Errors
///
/// As [`load_and_validate`].
pub fn load_and_validate_str_with(
    text: &str,
    origin: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), ConfigErrors> {
    let text = expand(text, origin, lookup)?;
    let locator = Locator::new(&text);
    let config = parse(&text, origin, &locator)?;
    let findings = validate::check(&config);
    let locate = |e: ConfigError| {
        let line = locator.line_of_path(&e.path);
        e.at_line(line)
    };
    if !findings.errors.is_empty() {
        let mut errors: Vec<ConfigError> = findings.errors.into_iter().map(locate).collect();
        // In file order, so the report reads top to bottom; keys not in the file go last.
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        return Err(ConfigErrors(errors));
    }
    let warnings = findings
        .warnings
        .into_iter()
        .map(|w| locate(w).to_string())
        .collect();
    Ok((config, warnings))
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, origin)),
        Err(error) => Err(ConfigError::new(
            origin,
            format!("cannot read file: {error}"),
        )),
    }
}

fn parse(text: &str, origin: &str, locator: &Locator) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // An empty path prints as "."; the error is about the file, not a key.
        let path = if path == "." { origin.to_owned() } else { path };
        let line = match inner.span() {
            Some(span) => Some(locator.line_of_offset(span.start)),
            None => locator.line_of_path(&path),
        };
        ConfigError {
            path,
            line,
            message: one_line(inner.message()),
        }
    })
}

/// Errors print one per line; fold any line break the parser put in its message.
fn one_line(message: &str) -> String {
    message.trim().lines().collect::<Vec<_>>().join("; ")
}
