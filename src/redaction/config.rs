//! `[processors.redaction]`: card numbers found in any text, and rules by
//! attribute key. Names follow the Collector's redaction processor where the
//! concept is the same (`blocked_keys`… as its `blocked_key_patterns`,
//! `allowed_keys`, `ignored_keys`, `summary`).
//!
//! ```toml
//! [processors.redaction]
//! detect_pans = true                # mask card numbers in every string to ****1111
//! blocked_keys_action = "redact"    # values of the default PCI keys become "****"
//! hash_key_env = "REDACTION_HMAC_KEY"
//! [[processors.redaction.rules]]
//! name = "emails"
//! keys = ['^user\.email$']
//! action = "hash"                   # HMAC-SHA256, hex: joinable, not readable
//! ```
//!
//! Key patterns are regular expressions matched anywhere in the key and
//! without regard to case (`cookie` matches `http.request.header.cookie`);
//! anchor them (`^user\.email$`) for an exact key. An attribute is judged by
//! the first of: `ignored_keys` (left untouched, not even scanned), `rules` in
//! order, `blocked_keys`, then, when `allowed_keys` is set, not being listed
//! there. Every string left after that is scanned for card numbers.

use serde::Deserialize;

use super::pan::PanScope;
use crate::settings::validate::{join, push, Validate};
use crate::settings::ConfigError;

/// Keys whose values PCI DSS (and common sense) keeps out of telemetry:
/// card number, CVV/CVC, expiry, track data, passwords, credentials, cookies.
pub const DEFAULT_BLOCKED_KEYS: &[&str] = &[
    r"card[._-]?(number|num|no)$",
    r"(^|[._-])pan$",
    r"cvv",
    r"cvc",
    r"card[._-]?(security|verification)[._-]?(code|value)",
    r"card[._-]?exp",
    r"exp(iry|iration)?[._-]?date",
    r"track[._-]?[12]?[._-]?data",
    r"password",
    r"passwd",
    r"authorization",
    r"cookie",
];

/// What happens to a value a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `****` and the last four characters of the value's text.
    MaskLast4,
    /// `redacted_text` in place of the value.
    Redact,
    /// Hex HMAC-SHA256 of the value's text, keyed from `hash_key_env`.
    Hash,
    /// The attribute is left out.
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::MaskLast4 => "mask_last4",
            Action::Redact => "redact",
            Action::Hash => "hash",
            Action::Remove => "remove",
        }
    }
}

/// `summary`: whether changed items say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Summary {
    /// Nothing added (counters on `/metrics` only).
    #[default]
    Silent,
    /// `redaction.masked.count` (int) on each changed span, log record, data
    /// point, resource or scope: how many of its values were changed.
    Info,
}

/// `[processors.redaction]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Mask card numbers in every string (and UTF-8 bytes value). Default `true`.
    pub detect_pans: bool,
    /// `"payment_networks"` (first digit 2–6; spares epoch timestamps) or
    /// `"any_luhn"`. Default `"payment_networks"`.
    pub pan_scope: PanScope,
    /// Key patterns whose values are replaced whatever they hold. Default:
    /// [`DEFAULT_BLOCKED_KEYS`]; set `[]` to turn them off.
    pub blocked_keys: Vec<String>,
    /// Action for `blocked_keys`. Default `"redact"`.
    pub blocked_keys_action: Action,
    /// When set, every attribute whose key matches none of these is replaced
    /// by `allowed_keys_action`. Default none (every key allowed).
    pub allowed_keys: Option<Vec<String>>,
    /// Action for attributes not in `allowed_keys`. Default `"redact"`.
    pub allowed_keys_action: Action,
    /// Key patterns never touched: not replaced, not scanned. Default none.
    pub ignored_keys: Vec<String>,
    /// Named rules, tried in order before `blocked_keys`.
    pub rules: Vec<RuleConfig>,
    /// The text of the `redact` action. Default `"****"`.
    pub redacted_text: String,
    /// Environment variable holding the HMAC key of the `hash` action
    /// (required when a rule hashes; at least 16 bytes). Default none.
    pub hash_key_env: Option<String>,
    /// `"silent"` or `"info"` (add `redaction.masked.count`). Default `"silent"`.
    pub summary: Summary,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            detect_pans: true,
            pan_scope: PanScope::default(),
            blocked_keys: DEFAULT_BLOCKED_KEYS.iter().map(|k| k.to_string()).collect(),
            blocked_keys_action: Action::Redact,
            allowed_keys: None,
            allowed_keys_action: Action::Redact,
            ignored_keys: Vec::new(),
            rules: Vec::new(),
            redacted_text: "****".to_string(),
            hash_key_env: None,
            summary: Summary::default(),
        }
    }
}

/// `[[processors.redaction.rules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The `rule` label on the counters. Required, unique.
    pub name: String,
    /// Key patterns. Required, at least one.
    pub keys: Vec<String>,
    /// What happens to the values of matching attributes.
    pub action: Action,
}

/// Rule names the processor uses itself.
pub const RESERVED_RULE_NAMES: &[&str] = &["pan", "blocked_keys", "allowed_keys"];

/// Shortest accepted HMAC key, in bytes.
pub const MIN_HASH_KEY_BYTES: usize = 16;

impl RedactionConfig {
    /// Whether any rule (or the blocked/allowed defaults) uses `action`.
    pub fn uses(&self, action: Action) -> bool {
        (!self.blocked_keys.is_empty() && self.blocked_keys_action == action)
            || (self.allowed_keys.is_some() && self.allowed_keys_action == action)
            || self.rules.iter().any(|rule| rule.action == action)
    }

    /// The HMAC key from `hash_key_env`, or why it cannot be had.
    pub fn hash_key(&self) -> Result<Option<Vec<u8>>, String> {
        if !self.uses(Action::Hash) {
            return Ok(None);
        }
        let Some(var) = &self.hash_key_env else {
            return Err(
                "the hash action needs `hash_key_env`, the environment variable that \
                        holds its key"
                    .to_string(),
            );
        };
        match std::env::var(var) {
            Ok(key) if key.len() >= MIN_HASH_KEY_BYTES => Ok(Some(key.into_bytes())),
            Ok(_) => Err(format!(
                "environment variable {var} must hold at least {MIN_HASH_KEY_BYTES} bytes"
            )),
            Err(_) => Err(format!("environment variable {var} is not set")),
        }
    }
}

impl RedactionConfig {
    /// One line for `check-config`: what is on, never a key or a secret.
    pub fn describe(&self) -> String {
        let pans = if self.detect_pans {
            match self.pan_scope {
                PanScope::PaymentNetworks => "card numbers",
                PanScope::AnyLuhn => "card numbers (any Luhn)",
            }
        } else {
            "no card scan"
        };
        let allowed = match &self.allowed_keys {
            Some(keys) => format!(", {} allowed keys", keys.len()),
            None => String::new(),
        };
        format!(
            "redaction({pans}, {} blocked keys -> {}, {} rules, {} ignored{allowed})",
            self.blocked_keys.len(),
            self.blocked_keys_action.as_str(),
            self.rules.len(),
            self.ignored_keys.len(),
        )
    }
}

/// The regex a key pattern compiles to: case-insensitive.
pub fn key_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

fn check_patterns(errors: &mut Vec<ConfigError>, path: &str, key: &str, patterns: &[String]) {
    for (i, pattern) in patterns.iter().enumerate() {
        if let Err(error) = key_regex(pattern) {
            let message = match error {
                regex::Error::Syntax(text) => {
                    format!(
                        "invalid regular expression: {}",
                        text.lines().last().unwrap_or("")
                    )
                }
                other => format!("invalid regular expression: {other}"),
            };
            push(errors, path, &format!("{key}[{i}]"), message);
        }
    }
}

impl Validate for RedactionConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        check_patterns(errors, path, "blocked_keys", &self.blocked_keys);
        check_patterns(errors, path, "ignored_keys", &self.ignored_keys);
        if let Some(allowed) = &self.allowed_keys {
            check_patterns(errors, path, "allowed_keys", allowed);
            if allowed.is_empty() {
                push(
                    errors,
                    path,
                    "allowed_keys",
                    "an empty list would replace every attribute; leave it out to allow all keys",
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let rule_path = join(path, &format!("rules[{i}]"));
            if rule.name.trim().is_empty() {
                push(errors, &rule_path, "name", "must not be empty");
            } else if RESERVED_RULE_NAMES.contains(&rule.name.as_str()) {
                push(
                    errors,
                    &rule_path,
                    "name",
                    format!("\"{}\" is used by the processor itself", rule.name),
                );
            } else if !names.insert(rule.name.as_str()) {
                push(
                    errors,
                    &rule_path,
                    "name",
                    format!("\"{}\" is used by another rule", rule.name),
                );
            }
            if rule.keys.is_empty() {
                push(
                    errors,
                    &rule_path,
                    "keys",
                    "must name at least one key pattern",
                );
            }
            check_patterns(errors, &rule_path, "keys", &rule.keys);
        }
        if let Err(problem) = self.hash_key() {
            push(errors, path, "hash_key_env", problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml_text: &str) -> Vec<String> {
        let config: RedactionConfig = toml::from_str(toml_text).expect("parses");
        let mut errors = Vec::new();
        config.validate("processors.redaction", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_valid_and_pci() {
        assert!(problems("").is_empty());
        let config = RedactionConfig::default();
        assert!(config.detect_pans);
        for key in [
            "payment.card.number",
            "card_number",
            "cardNumber",
            "card.cvv",
            "CVC2",
            "card.expiry",
            "expiration_date",
            "track2_data",
            "db.password",
            "http.request.header.authorization",
            "http.request.header.cookie",
            "pan",
        ] {
            assert!(
                config
                    .blocked_keys
                    .iter()
                    .any(|p| key_regex(p).unwrap().is_match(key)),
                "{key} blocked"
            );
        }
        for key in [
            "payment.card.type",
            "http.route",
            "span.kind",
            "company",
            "expected",
        ] {
            assert!(
                !config
                    .blocked_keys
                    .iter()
                    .any(|p| key_regex(p).unwrap().is_match(key)),
                "{key} not blocked"
            );
        }
    }

    #[test]
    fn bad_patterns_and_rules_name_their_key_path() {
        let found = problems(
            r#"
            blocked_keys = ["card(", "ok"]
            ignored_keys = ["[z-a]"]
            [[rules]]
            name = "pan"
            keys = []
            action = "redact"
            [[rules]]
            name = "x"
            keys = ["a"]
            action = "remove"
            [[rules]]
            name = "x"
            keys = ["b"]
            action = "remove"
            "#,
        );
        let text = found.join("\n");
        assert!(
            text.contains("processors.redaction.blocked_keys[0]: invalid regular expression"),
            "{text}"
        );
        assert!(
            text.contains("processors.redaction.ignored_keys[0]: invalid regular expression"),
            "{text}"
        );
        assert!(
            text.contains(
                "processors.redaction.rules[0].name: \"pan\" is used by the processor itself"
            ),
            "{text}"
        );
        assert!(
            text.contains("processors.redaction.rules[0].keys: must name at least one"),
            "{text}"
        );
        assert!(
            text.contains("processors.redaction.rules[2].name: \"x\" is used by another rule"),
            "{text}"
        );
        assert_eq!(found.len(), 5, "{text}");
    }

    #[test]
    fn hash_needs_its_key_variable() {
        let found = problems(
            r#"
            [[rules]]
            name = "emails"
            keys = ["email"]
            action = "hash"
            "#,
        );
        assert_eq!(
            found,
            [
                "processors.redaction.hash_key_env: the hash action needs `hash_key_env`, the \
              environment variable that holds its key"
            ]
        );
        let found = problems(
            r#"
            blocked_keys_action = "hash"
            hash_key_env = "OTLP_GATEWAY_TEST_UNSET_REDACTION_KEY"
            "#,
        );
        assert_eq!(
            found,
            ["processors.redaction.hash_key_env: environment variable \
              OTLP_GATEWAY_TEST_UNSET_REDACTION_KEY is not set"]
        );
        assert!(problems(r#"allowed_keys = []"#)[0].contains("allowed_keys: an empty list"));
    }
}
