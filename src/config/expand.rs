//! `${VAR}` expansion of the raw config text, before TOML parsing.
//!
//! # Syntax
//!
//! - `${NAME}`: the value of environment variable `NAME`. Unset is an error (naming the variable
//!   and the line); set but empty gives the empty string.
//! - `${NAME:-default}`: `default` when `NAME` is unset or empty (shell semantics). The default may
//!   itself hold references: `${A:-${B:-x}}`.
//! - `${env:NAME}` and `${env:NAME:-default}`: the same, in the OpenTelemetry Collector's spelling.
//! - `$${` is a literal `${`. A `$` not followed by `{` is kept as is.
//!
//! `NAME` is letters, digits and `_`, not starting with a digit. A reference ends on its own line.
//!
//! # Where
//!
//! Comments are left alone, so `# e.g. ${API_KEY}` needs no escaping. Inside a `"..."` string the
//! value is escaped so the parsed string equals the variable's value exactly (quotes, backslashes
//! and control characters included). Inside a `'...'` string, where TOML has no escapes, a value
//! that contains `'` or a line break is an error. Outside strings the value is inserted as is, so
//! `port = ${PORT}` gives an integer. Values are never expanded again.

use crate::settings::error::{ConfigError, ConfigErrors};

/// Where in the TOML text a reference stands; decides how its value is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside strings and comments: raw.
    Bare,
    Comment,
    /// `"..."`
    Basic,
    /// `"""..."""`
    MultiBasic,
    /// `'...'`
    Literal,
    /// `'''...'''`
    MultiLiteral,
}

/// Expands every `${...}` reference in `text` (see the module docs), reading variables through
/// `lookup` (`|name| std::env::var(name).ok()` in production, a map in tests).
///
/// # Errors
///
/// One [`ConfigError`] per bad reference (unset variable without default, malformed or
/// unterminated reference, value that cannot go in a `'...'` string), each with `origin` as its
/// path and the 1-based line of the reference. All are collected, not only the first.
pub fn expand(
    text: &str,
    origin: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigErrors> {
    let mut scan = Scan {
        origin,
        lookup: &lookup,
        errors: Vec::new(),
        line: 1,
    };
    let out = scan.document(text);
    if scan.errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(scan.errors))
    }
}

struct Scan<'a, F> {
    origin: &'a str,
    lookup: &'a F,
    errors: Vec<ConfigError>,
    line: usize,
}

impl<F: Fn(&str) -> Option<String>> Scan<'_, F> {
    /// The whole text, tracking comments and strings.
    fn document(&mut self, text: &str) -> String {
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut ctx = Context::Bare;
        // `text[start..i]` is pending, to be copied unchanged.
        let mut start = 0;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'\n' {
                self.line += 1;
                // A newline ends a comment; in a one-line string it is a TOML error the parser
                // reports, and scanning goes on as if the string had ended.
                if matches!(ctx, Context::Comment | Context::Basic | Context::Literal) {
                    ctx = Context::Bare;
                }
                i += 1;
                continue;
            }
            if ctx == Context::Comment {
                i += 1;
                continue;
            }
            if c == b'$' {
                if b[i..].starts_with(b"$${") {
                    out.push_str(&text[start..i]);
                    out.push_str("${");
                    i += 3;
                    start = i;
                    continue;
                }
                if b[i..].starts_with(b"${") {
                    match find_close(b, i + 2) {
                        Some(close) => {
                            out.push_str(&text[start..i]);
                            let reference = &text[i..=close];
                            if let Some(value) = self.resolve(&text[i + 2..close]) {
                                self.insert(&mut out, reference, &value, ctx);
                            }
                            i = close + 1;
                            start = i;
                        }
                        None => {
                            // Nothing after it on this line can be read reliably: skip it.
                            self.unterminated(text, i);
                            i += b[i..]
                                .iter()
                                .position(|&c| c == b'\n')
                                .unwrap_or(b.len() - i);
                        }
                    }
                    continue;
                }
            }
            match (ctx, c) {
                (Context::Bare, b'#') => ctx = Context::Comment,
                (Context::Bare, b'"') if b[i..].starts_with(b"\"\"\"") => {
                    ctx = Context::MultiBasic;
                    i += 3;
                    continue;
                }
                (Context::Bare, b'"') => ctx = Context::Basic,
                (Context::Bare, b'\'') if b[i..].starts_with(b"'''") => {
                    ctx = Context::MultiLiteral;
                    i += 3;
                    continue;
                }
                (Context::Bare, b'\'') => ctx = Context::Literal,
                (Context::Basic | Context::MultiBasic, b'\\') => {
                    // Skip the escaped character; it cannot open or close anything.
                    if b.get(i + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    i += 2;
                    continue;
                }
                (Context::Basic, b'"') | (Context::Literal, b'\'') => ctx = Context::Bare,
                (Context::MultiBasic, b'"') | (Context::MultiLiteral, b'\'') => {
                    // A run of 3 to 5 quotes closes (the extra ones belong to the string).
                    let run = b[i..].iter().take_while(|&&q| q == c).count();
                    if run >= 3 {
                        ctx = Context::Bare;
                    }
                    i += run;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        out.push_str(&text[start..]);
        out
    }

    /// The value of one reference; `body` is what stands between `${` and `}`.
    /// `None` after pushing an error.
    fn resolve(&mut self, body: &str) -> Option<String> {
        let spec = body.strip_prefix("env:").unwrap_or(body);
        let (name, default) = match spec.find(":-") {
            Some(at) => (&spec[..at], Some(&spec[at + 2..])),
            None => (spec, None),
        };
        if !is_var_name(name) {
            self.error(format!(
                "invalid reference \"${{{body}}}\": expected ${{NAME}} or ${{NAME:-default}}"
            ));
            return None;
        }
        match ((self.lookup)(name), default) {
            (Some(value), Some(_)) if !value.is_empty() => Some(value),
            (Some(value), None) => Some(value),
            (_, Some(default)) => self.value(default),
            (None, None) => {
                self.error(format!(
                    "environment variable \"{name}\" is not set and has no default"
                ));
                None
            }
        }
    }

    /// A default value: `$${` and nested references, no TOML structure.
    fn value(&mut self, text: &str) -> Option<String> {
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut ok = true;
        let mut start = 0;
        let mut i = 0;
        while i < b.len() {
            if b[i..].starts_with(b"$${") {
                out.push_str(&text[start..i]);
                out.push_str("${");
                i += 3;
                start = i;
            } else if b[i..].starts_with(b"${") {
                // The enclosing reference closed, so every nested one does too; this is defensive.
                let Some(close) = find_close(b, i + 2) else {
                    self.unterminated(text, i);
                    return None;
                };
                out.push_str(&text[start..i]);
                match self.resolve(&text[i + 2..close]) {
                    Some(value) => out.push_str(&value),
                    None => ok = false,
                }
                i = close + 1;
                start = i;
            } else {
                i += 1;
            }
        }
        out.push_str(&text[start..]);
        ok.then_some(out)
    }

    fn insert(&mut self, out: &mut String, reference: &str, value: &str, ctx: Context) {
        match ctx {
            Context::Bare | Context::Comment => out.push_str(value),
            Context::Basic => escape_basic(out, value, false),
            Context::MultiBasic => escape_basic(out, value, true),
            Context::Literal => {
                if value.contains(['\'', '\n', '\r']) {
                    self.error(format!(
                        "the value of {reference} contains ' or a line break, which a '...' string cannot hold; use a \"...\" string"
                    ));
                } else {
                    out.push_str(value);
                }
            }
            Context::MultiLiteral => {
                if value.contains("'''") {
                    self.error(format!(
                        "the value of {reference} contains ''', which a '''...''' string cannot hold; use a \"\"\"...\"\"\" string"
                    ));
                } else {
                    out.push_str(value);
                }
            }
        }
    }

    fn unterminated(&mut self, text: &str, at: usize) {
        let rest = &text[at..];
        let shown = rest.split(['\n', '\r']).next().unwrap_or(rest);
        self.error(format!(
            "unterminated reference \"{shown}\": missing }} on the same line"
        ));
    }

    fn error(&mut self, message: String) {
        self.errors
            .push(ConfigError::new(self.origin, message).at_line(Some(self.line)));
    }
}

/// Index of the `}` closing a reference whose body starts at `from`, on the same line.
/// Nested `${...}` pair up; `$${` is not an opening.
fn find_close(b: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = from;
    while j < b.len() {
        match b[j] {
            b'\n' | b'\r' => return None,
            b'$' if b[j..].starts_with(b"$${") => {
                j += 3;
                continue;
            }
            b'$' if b[j..].starts_with(b"${") => {
                depth += 1;
                j += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(j),
            b'}' => depth -= 1,
            _ => {}
        }
        j += 1;
    }
    None
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Escapes `value` for a TOML basic string so that it parses back to exactly `value`.
fn escape_basic(out: &mut String, value: &str, multiline: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' if multiline => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn ok(text: &str, pairs: &[(&str, &str)]) -> String {
        expand(text, "t.toml", env(pairs)).unwrap()
    }

    fn err(text: &str, pairs: &[(&str, &str)]) -> String {
        expand(text, "t.toml", env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn set_variable_is_substituted() {
        assert_eq!(ok("a = \"${X}\"", &[("X", "1")]), "a = \"1\"");
        assert_eq!(ok("a = \"${env:X}\"", &[("X", "1")]), "a = \"1\"");
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        assert_eq!(ok("a = \"${X:-d}\"", &[]), "a = \"d\"");
        assert_eq!(ok("a = \"${X:-d}\"", &[("X", "")]), "a = \"d\"");
        assert_eq!(ok("a = \"${X:-d}\"", &[("X", "v")]), "a = \"v\"");
        assert_eq!(ok("a = \"${X:-}\"", &[]), "a = \"\"");
        assert_eq!(ok("a = \"${X:-a:-b}\"", &[]), "a = \"a:-b\"");
        assert_eq!(ok("a = \"${X:-http://h:1}\"", &[]), "a = \"http://h:1\"");
    }

    #[test]
    fn set_but_empty_without_default_is_empty() {
        assert_eq!(ok("a = \"${X}\"", &[("X", "")]), "a = \"\"");
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() {
        assert_eq!(ok("a = \"$${X}\"", &[("X", "1")]), "a = \"${X}\"");
        assert_eq!(ok("a = \"$$${X}\"", &[("X", "1")]), "a = \"$${X}\"");
        assert_eq!(
            ok("a = \"$X $ $$ {}\"", &[("X", "1")]),
            "a = \"$X $ $$ {}\""
        );
        assert_eq!(ok("a = \"${X:-$${Y}}\"", &[]), "a = \"${Y}\"");
    }

    #[test]
    fn missing_variable_names_it_and_its_line() {
        assert_eq!(
            err("a = 1\n\nb = \"${API_KEY}\"", &[]),
            "t.toml (line 3): environment variable \"API_KEY\" is not set and has no default"
        );
    }

    #[test]
    fn every_missing_variable_is_reported() {
        assert_eq!(
            err("a = \"${A}\"\nb = \"${B}\"", &[]),
            "t.toml (line 1): environment variable \"A\" is not set and has no default\n\
             t.toml (line 2): environment variable \"B\" is not set and has no default"
        );
    }

    #[test]
    fn nested_defaults_expand_inner_references() {
        assert_eq!(ok("a = \"${A:-${B}}\"", &[("B", "b")]), "a = \"b\"");
        assert_eq!(ok("a = \"${A:-${B:-x}}\"", &[]), "a = \"x\"");
        assert_eq!(ok("a = \"${A:-${B:-x}}\"", &[("A", "a")]), "a = \"a\"");
        assert_eq!(ok("a = \"${A:-<${B:-x}>}\"", &[]), "a = \"<x>\"");
        // A lone `}` after the reference is text.
        assert_eq!(ok("a = \"${A:-x}}\"", &[]), "a = \"x}\"");
        assert_eq!(
            err("a = \"${A:-${B}}\"", &[]),
            "t.toml (line 1): environment variable \"B\" is not set and has no default"
        );
    }

    #[test]
    fn values_are_not_expanded_again() {
        assert_eq!(ok("a = \"${A}\"", &[("A", "${B}")]), "a = \"${B}\"");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert_eq!(
            err("a = \"${}\"", &[]),
            "t.toml (line 1): invalid reference \"${}\": expected ${NAME} or ${NAME:-default}"
        );
        assert_eq!(
            err("a = \"${A-b}\"", &[]),
            "t.toml (line 1): invalid reference \"${A-b}\": expected ${NAME} or ${NAME:-default}"
        );
        assert_eq!(
            err("a = \"${1A}\"", &[]),
            "t.toml (line 1): invalid reference \"${1A}\": expected ${NAME} or ${NAME:-default}"
        );
        assert_eq!(
            err("x = 1\na = \"${A:-${B}\"\nb = 2", &[]),
            "t.toml (line 2): unterminated reference \"${A:-${B}\"\": missing } on the same line"
        );
    }

    #[test]
    fn comments_are_left_alone() {
        let text = "# use ${API_KEY} or $${X}\na = \"#${A}\" # ${B}\n";
        assert_eq!(
            ok(text, &[("A", "1")]),
            "# use ${API_KEY} or $${X}\na = \"#1\" # ${B}\n"
        );
    }

    #[test]
    fn bare_values_are_inserted_raw() {
        assert_eq!(ok("port = ${P}", &[("P", "4317")]), "port = 4317");
    }

    #[test]
    fn basic_string_values_are_escaped() {
        let out = ok(
            "a = \"${A}\"\nb = \"\"\"${A}\"\"\"",
            &[("A", "q\"b\\n\nt\u{1}")],
        );
        assert_eq!(
            out,
            "a = \"q\\\"b\\\\n\\nt\\u0001\"\nb = \"\"\"q\\\"b\\\\n\nt\\u0001\"\"\""
        );
        #[derive(serde::Deserialize)]
        struct T {
            a: String,
            b: String,
        }
        let t: T = toml::from_str(&out).unwrap();
        assert_eq!(t.a, "q\"b\\n\nt\u{1}");
        assert_eq!(t.b, "q\"b\\n\nt\u{1}");
    }

    #[test]
    fn literal_strings_refuse_values_they_cannot_hold() {
        assert_eq!(ok("a = '${A}'", &[("A", "x\"y\\")]), "a = 'x\"y\\'");
        assert_eq!(
            err("a = '${A}'", &[("A", "it's")]),
            "t.toml (line 1): the value of ${A} contains ' or a line break, which a '...' string cannot hold; use a \"...\" string"
        );
    }

    #[test]
    fn string_state_survives_escapes_and_hashes() {
        // `\"` does not end the string, so `#` after it is not a comment.
        assert_eq!(ok("a = \"\\\" # ${A}\"", &[("A", "1")]), "a = \"\\\" # 1\"");
        // Inside '...' a backslash is plain, so the string ends at the next quote.
        assert_eq!(ok("a = 'x\\' # ${A}", &[("A", "1")]), "a = 'x\\' # ${A}");
        // Multi-line strings keep line counting right.
        assert_eq!(
            err("a = \"\"\"\n#\n\"\"\"\nb = \"${B}\"", &[]),
            "t.toml (line 4): environment variable \"B\" is not set and has no default"
        );
    }
}
