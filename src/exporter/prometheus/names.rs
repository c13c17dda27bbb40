//! Prometheus metric and label names from OTLP names, units and attribute keys,
//! as the OpenTelemetry → Prometheus compatibility specification says (and as
//! the Collector's `prometheusremotewrite` exporter does).
//!
//! - Metric names: characters outside `[a-zA-Z0-9_:]` become `_`, runs of `_`
//!   become one, a leading digit gets a `_` prefix.
//! - With suffixes on: the unit's Prometheus word is appended unless the name
//!   already has it (`s` → `_seconds`, `By` → `_bytes`, `m/s` →
//!   `_meters_per_second`, `{request}` → nothing); monotonic sums end in
//!   `_total`; gauges with unit `1` end in `_ratio`.
//! - Label names: characters outside `[a-zA-Z0-9_]` become `_`; a leading digit
//!   gets a `key_` prefix; a name starting with `__` (reserved for Prometheus)
//!   gets a `key` prefix.

/// What kind of Prometheus metric a name is built for (suffixes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Monotonic sum: `_total`.
    Counter,
    /// OTLP gauge: `_ratio` for unit `1`.
    Gauge,
    /// Non-monotonic sum, histogram, summary: the unit only.
    Other,
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: NameKind, add_suffixes: bool) -> String {
    if !add_suffixes {
        return sanitize_metric_name(name);
    }
    let mut tokens: Vec<String> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let (main, per) = unit_words(unit);
    if let Some(main) = main {
        push_words(&mut tokens, &main);
    }
    if let Some(per) = per {
        if !tokens.iter().any(|t| t == "per") || !tokens.contains(&per) {
            tokens.push("per".to_owned());
            tokens.push(per);
        }
    }
    match kind {
        NameKind::Counter => {
            tokens.retain(|t| t != "total");
            tokens.push("total".to_owned());
        }
        NameKind::Gauge if unit == "1" => {
            tokens.retain(|t| t != "ratio");
            tokens.push("ratio".to_owned());
        }
        _ => {}
    }
    let joined = tokens.join("_");
    leading_digit(joined)
}

/// Appends the tokens of `words` (`"seconds"`, `"kibibytes"`) unless the name has them all.
fn push_words(tokens: &mut Vec<String>, words: &str) {
    let parts: Vec<&str> = words.split('_').filter(|w| !w.is_empty()).collect();
    if parts.iter().all(|w| tokens.iter().any(|t| t == w)) {
        return;
    }
    tokens.extend(parts.into_iter().map(str::to_owned));
}

/// Invalid characters to `_`, runs of `_` to one, a leading digit prefixed with `_`.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    leading_digit(out)
}

fn leading_digit(name: String) -> String {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// A Prometheus label name for an attribute key; `None` for an empty key.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(key.len() + 4);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    } else if key.starts_with("__") {
        out.push_str("key");
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    Some(out)
}

/// The Prometheus words of a UCUM unit: the main unit and the "per" unit
/// (`"m/s"` → `("meters", "second")`). Annotations in braces are dropped;
/// units not in the table are used as they are, sanitised.
pub fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    let unit = strip_annotations(unit);
    let unit = unit.trim();
    if unit.is_empty() {
        return (None, None);
    }
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit, None),
    };
    let main = match main {
        "" | "1" => None,
        m => Some(main_unit(m).map_or_else(|| clean_word(m), str::to_owned)),
    };
    let per = per
        .filter(|p| !p.is_empty())
        .map(|p| per_unit(p).map_or_else(|| clean_word(p), str::to_owned));
    (
        main.filter(|w| !w.is_empty()),
        per.filter(|w| !w.is_empty()),
    )
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn clean_word(word: &str) -> String {
    let cleaned: String = word
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    cleaned.trim_matches('_').to_owned()
}

/// The specification's table of main units.
fn main_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        // Time
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        // Bytes
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        // SI
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        // Misc
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

/// The specification's table of "per" units.
fn per_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_become_suffixes() {
        let cases = [
            (
                "http.server.duration",
                "s",
                NameKind::Other,
                "http_server_duration_seconds",
            ),
            (
                "http.server.duration",
                "ms",
                NameKind::Other,
                "http_server_duration_milliseconds",
            ),
            (
                "rpc.requests",
                "{request}",
                NameKind::Counter,
                "rpc_requests_total",
            ),
            ("requests_total", "1", NameKind::Counter, "requests_total"),
            (
                "system.memory.usage",
                "By",
                NameKind::Gauge,
                "system_memory_usage_bytes",
            ),
            ("heap", "MiBy", NameKind::Gauge, "heap_mebibytes"),
            (
                "cpu.utilization",
                "1",
                NameKind::Gauge,
                "cpu_utilization_ratio",
            ),
            ("cpu.utilization", "1", NameKind::Other, "cpu_utilization"),
            ("speed", "m/s", NameKind::Gauge, "speed_meters_per_second"),
            (
                "throughput",
                "By/s",
                NameKind::Counter,
                "throughput_bytes_per_second_total",
            ),
            ("latency_seconds", "s", NameKind::Other, "latency_seconds"),
            ("bytes.sent", "By", NameKind::Counter, "bytes_sent_total"),
            ("temp", "Cel", NameKind::Gauge, "temp_celsius"),
            ("queue", "items", NameKind::Gauge, "queue_items"),
            ("load", "%", NameKind::Gauge, "load_percent"),
            ("total.requests", "", NameKind::Counter, "requests_total"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(metric_name(name, unit, kind, true), want, "{name} [{unit}]");
        }
    }

    #[test]
    fn without_suffixes_only_sanitises() {
        assert_eq!(
            metric_name("http.server.duration", "s", NameKind::Counter, false),
            "http_server_duration"
        );
        assert_eq!(sanitize_metric_name("a..b-c:d"), "a_b_c:d");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(
            metric_name("2xx.count", "", NameKind::Counter, true),
            "_2xx_count_total"
        );
        assert_eq!(sanitize_metric_name("ünïcode"), "_n_code");
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("http.method").as_deref(), Some("http_method"));
        assert_eq!(label_name("1st").as_deref(), Some("key_1st"));
        assert_eq!(label_name("__secret").as_deref(), Some("key__secret"));
        assert_eq!(label_name("_private").as_deref(), Some("_private"));
        assert_eq!(label_name("a-b/c").as_deref(), Some("a_b_c"));
        assert_eq!(label_name(""), None);
    }
}
