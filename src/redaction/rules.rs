//! The compiled form of `[processors.redaction]`: which rule an attribute key
//! falls under, and what each action makes of a value.

use std::fmt::Write as _;

use prost::Message as _;
use regex::RegexSet;

use super::config::{Action, RedactionConfig, RuleConfig};
use super::pan::PanScope;
use crate::model::view::AnyValueRef;

/// Why the redaction config cannot be used (the config check reports the
/// same problems with their key paths first).
#[derive(Debug, thiserror::Error)]
pub enum RedactionError {
    #[error("invalid key pattern: {0}")]
    Pattern(#[from] regex::Error),
    #[error("{0}")]
    HashKey(String),
}

/// What an attribute key falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// `ignored_keys`: untouched and unscanned.
    Ignored,
    /// Rule `n` of [`Rules::names`] replaces its value.
    Rule(u16),
    /// Nothing: the key and value are scanned for card numbers.
    Scan,
}

/// Counter index of card numbers found in text.
pub const PAN_RULE: u16 = 0;

/// The rules, compiled.
#[derive(Debug)]
pub struct Rules {
    /// Rule names, indexed by [`KeyClass::Rule`]: `pan`, the named rules,
    /// `blocked_keys`, `allowed_keys`.
    names: Vec<String>,
    actions: Vec<Action>,
    ignored: RegexSet,
    /// One pattern set per named rule, then `blocked_keys`.
    blocked: Vec<RegexSet>,
    /// `allowed_keys`, when set.
    allowed: Option<RegexSet>,
    pub detect_pans: bool,
    pub pan_scope: PanScope,
    /// Whether any key rule can apply, so attribute keys need a look-up.
    key_rules: bool,
    redacted_text: String,
    hash_key: Option<ring::hmac::Key>,
}

fn key_set(patterns: &[String]) -> Result<RegexSet, regex::Error> {
    regex::RegexSetBuilder::new(patterns)
        .case_insensitive(true)
        .size_limit(1 << 22)
        .build()
}

impl Rules {
    /// Compiles `config`, reading the hash key from its environment variable.
    ///
    /// # Errors
    /// [`RedactionError`] for a pattern that does not compile or a missing hash key.
    pub fn new(config: &RedactionConfig) -> Result<Self, RedactionError> {
        let mut names = vec!["pan".to_string()];
        let mut actions = vec![Action::MaskLast4];
        let mut blocked = Vec::new();
        let blocked_rule = RuleConfig {
            name: "blocked_keys".into(),
            keys: config.blocked_keys.clone(),
            action: config.blocked_keys_action,
        };
        for rule in config.rules.iter().chain(std::iter::once(&blocked_rule)) {
            names.push(rule.name.clone());
            actions.push(rule.action);
            blocked.push(key_set(&rule.keys)?);
        }
        names.push("allowed_keys".into());
        actions.push(config.allowed_keys_action);
        let allowed = config.allowed_keys.as_deref().map(key_set).transpose()?;
        let hash_key = config
            .hash_key()
            .map_err(RedactionError::HashKey)?
            .map(|key| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
        let mut rules = Rules {
            names,
            actions,
            ignored: key_set(&config.ignored_keys)?,
            blocked,
            allowed,
            detect_pans: config.detect_pans,
            pan_scope: config.pan_scope,
            key_rules: false,
            redacted_text: config.redacted_text.clone(),
            hash_key,
        };
        rules.key_rules = !rules.ignored.is_empty()
            || rules.blocked.iter().any(|set| !set.is_empty())
            || rules.allowed.is_some();
        Ok(rules)
    }

    /// Rule names, indexed like the counts of [`KeyClass::Rule`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The action of rule `rule`.
    pub fn action(&self, rule: u16) -> Action {
        self.actions[usize::from(rule)]
    }

    /// Whether any key rule can apply (else attributes need no key lookup).
    pub fn has_key_rules(&self) -> bool {
        !self.ignored.is_empty()
            || self.blocked.iter().any(|s| !s.is_empty())
            || self.allowed.is_some()
    }

    /// What `key` falls under; `attribute` is false inside key-value lists,
    /// where `allowed_keys` does not apply.
    pub fn classify(&self, key: &str, attribute: bool) -> KeyClass {
        if self.ignored.is_match(key) {
            return KeyClass::Ignored;
        }
        for (i, set) in self.blocked.iter().enumerate() {
            if set.is_match(key) {
                return KeyClass::Rule(i as u16 + 1);
            }
        }
        match &self.allowed {
            Some(allowed) if attribute && !allowed.is_match(key) => {
                KeyClass::Rule(self.names.len() as u16 - 1)
            }
            _ => KeyClass::Scan,
        }
    }

    /// The encoded `AnyValue` that replaces `value` (an encoded `AnyValue`)
    /// under `action`; `None` for [`Action::Remove`].
    pub fn replace_value(&self, action: Action, value: &[u8]) -> Option<Vec<u8>> {
        let text = match action {
            Action::Remove => return None,
            Action::Redact => self.redacted_text.clone(),
            Action::MaskLast4 => mask_last4(&value_text(value).unwrap_or_default()),
            Action::Hash => {
                self.hash(&value_text(value).map_or_else(|| value.to_vec(), String::into_bytes))
            }
        };
        Some(string_value(text))
    }

    /// Lowercase hex HMAC-SHA256 of `data`.
    fn hash(&self, data: &[u8]) -> String {
        let Some(key) = &self.hash_key else {
            // `Rules::new` refuses a config that hashes without a key.
            return self.redacted_text.clone();
        };
        let tag = ring::hmac::sign(key, data);
        let mut hex = String::with_capacity(64);
        for byte in tag.as_ref() {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}

/// The text of a scalar value (a string, a number, a bool, UTF-8 bytes).
fn value_text(value: &[u8]) -> Option<String> {
    match AnyValueRef::parse(value) {
        AnyValueRef::Str(s) => Some(s.to_string()),
        AnyValueRef::Bool(b) => Some(b.to_string()),
        AnyValueRef::Int(i) => Some(i.to_string()),
        AnyValueRef::Double(d) => Some(d.to_string()),
        AnyValueRef::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
        AnyValueRef::Other => None,
    }
}

/// `****` and the last four characters of `text` (only `****` when it has four or fewer).
pub fn mask_last4(text: &str) -> String {
    let count = text.chars().count();
    let mut out = String::from("****");
    if count > 4 {
        out.extend(text.chars().skip(count - 4));
    }
    out
}

fn string_value(text: String) -> Vec<u8> {
    opentelemetry_proto::tonic::common::v1::AnyValue {
        value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Rules {
        Rules::new(&toml::from_str(toml_text).expect("parses")).expect("compiles")
    }

    #[test]
    fn first_matching_class_wins() {
        let rules = rules(
            r#"
            ignored_keys = ["^debug\\."]
            [[rules]]
            name = "emails"
            keys = ["email"]
            action = "remove"
            "#,
        );
        assert_eq!(rules.names()[1], "emails");
        assert_eq!(rules.classify("debug.password", true), KeyClass::Ignored);
        assert_eq!(rules.classify("User.Email", true), KeyClass::Rule(1));
        assert_eq!(rules.classify("db.PASSWORD", false), KeyClass::Rule(2));
        assert_eq!(rules.names()[2], "blocked_keys");
        assert_eq!(rules.classify("http.route", true), KeyClass::Scan);
        assert_eq!(rules.action(1), Action::Remove);
    }

    #[test]
    fn allowed_keys_replace_the_rest_of_the_attributes_only() {
        let rules = rules(r#"allowed_keys = ["^service\\.name$", "^http\\."]"#);
        assert_eq!(rules.classify("service.name", true), KeyClass::Scan);
        assert_eq!(rules.classify("http.route", true), KeyClass::Scan);
        let other = rules.classify("user.id", true);
        assert_eq!(other, KeyClass::Rule(2));
        assert_eq!(rules.names()[2], "allowed_keys");
        assert_eq!(rules.classify("user.id", false), KeyClass::Scan);
    }

    #[test]
    fn actions_make_string_values() {
        let rules = rules("");
        let decode = |bytes: Vec<u8>| {
            opentelemetry_proto::tonic::common::v1::AnyValue::decode(bytes.as_slice())
                .unwrap()
                .value
                .unwrap()
        };
        let value =
            |v| opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }.encode_to_vec();
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let card = value(Value::StringValue("4111111111111111".into()));
        assert_eq!(
            decode(rules.replace_value(Action::MaskLast4, &card).unwrap()),
            Value::StringValue("****1111".into())
        );
        assert_eq!(
            decode(
                rules
                    .replace_value(Action::MaskLast4, &value(Value::IntValue(123)))
                    .unwrap()
            ),
            Value::StringValue("****".into())
        );
        assert_eq!(
            decode(
                rules
                    .replace_value(Action::Redact, &value(Value::BoolValue(true)))
                    .unwrap()
            ),
            Value::StringValue("****".into())
        );
        assert_eq!(rules.replace_value(Action::Remove, &card), None);
        assert_eq!(mask_last4("ab€cde"), "****€cde");
    }

    #[test]
    fn hash_is_keyed_hmac_sha256_hex() {
        std::env::set_var(
            "OTLP_GATEWAY_TEST_REDACTION_KEY",
            "0123456789abcdef-test-key",
        );
        let rules = rules(
            r#"
            blocked_keys_action = "hash"
            hash_key_env = "OTLP_GATEWAY_TEST_REDACTION_KEY"
            "#,
        );
        let value = opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "secret".into(),
                ),
            ),
        }
        .encode_to_vec();
        let out = rules.replace_value(Action::Hash, &value).unwrap();
        let again = rules.replace_value(Action::Hash, &value).unwrap();
        assert_eq!(out, again, "deterministic, so values stay joinable");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef-test-key");
        let expected: String = ring::hmac::sign(&key, b"secret")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let decoded =
            opentelemetry_proto::tonic::common::v1::AnyValue::decode(out.as_slice()).unwrap();
        assert_eq!(
            decoded.value,
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(expected))
        );
    }
}
