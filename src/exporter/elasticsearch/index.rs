//! Index names from templates (`traces-{tenant}-{yyyy.MM.dd}`), and the UTC
//! calendar arithmetic they and `@timestamp` need.
//!
//! The date conversion is hand-written (Howard Hinnant's `civil_from_days`,
//! a dozen lines) rather than pulling in `chrono` or `time` for one function
//! on the hot path; it is checked against known dates in the tests.

use std::fmt::Write as _;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{tenant}`.
    Tenant,
    /// A date pattern of `yyyy`, `MM`, `dd`, `HH` and separators.
    Date(Vec<DatePart>),
    /// Any other `{key}`: that resource attribute.
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePart {
    Year,
    Month,
    Day,
    Hour,
    Separator(char),
}

/// What a template's placeholders are filled in from, per document.
#[derive(Debug, Clone, Copy)]
pub struct IndexInputs<'a, F> {
    pub tenant: &'a str,
    /// The document's time, Unix nanoseconds.
    pub time_unix_nano: u64,
    /// Looks up a resource attribute as text.
    pub attribute: F,
}

/// A parsed index template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTemplate {
    parts: Vec<Part>,
    /// The finest date unit it names, in seconds (0: no date): the name changes at most that often.
    date_period: u64,
}

/// Placeholder value of a resource attribute the record does not have.
pub const MISSING_ATTRIBUTE: &str = "unknown";

/// Longest index name Elasticsearch accepts, in bytes.
const MAX_INDEX_BYTES: usize = 255;

impl IndexTemplate {
    /// Parses `text`.
    ///
    /// # Errors
    /// A message for an unclosed or empty `{}`, or a template with no literal and no placeholder.
    pub fn parse(text: &str) -> Result<IndexTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| "a '{' is not closed".to_owned())?;
            let key = after[..close].trim();
            if key.is_empty() {
                return Err("empty placeholder {}".to_owned());
            }
            if key.contains('{') {
                return Err("a '{' is not closed".to_owned());
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(placeholder(key));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err("a '}' has no '{'".to_owned());
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err("empty".to_owned());
        }
        let date_period = parts
            .iter()
            .filter_map(|p| match p {
                Part::Date(d) if d.contains(&DatePart::Hour) => Some(3600),
                Part::Date(_) => Some(86_400),
                _ => None,
            })
            .min()
            .unwrap_or(0);
        Ok(IndexTemplate { parts, date_period })
    }

    /// Whether any placeholder reads a resource attribute.
    pub fn reads_attributes(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Attribute(_)))
    }

    /// The key under which two documents get the same name given the same
    /// tenant and resource: the date period their time falls in.
    pub fn period_of(&self, time_unix_nano: u64) -> u64 {
        match self.date_period {
            0 => 0,
            period => time_unix_nano / 1_000_000_000 / period,
        }
    }

    /// Writes the index name for `inputs` into `out` (cleared first), sanitised per
    /// Elasticsearch's rules (see [`sanitize`]).
    pub fn render<'v, F>(&self, out: &mut String, inputs: &IndexInputs<'_, F>)
    where
        F: Fn(&str) -> Option<std::borrow::Cow<'v, str>>,
    {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Tenant => out.push_str(inputs.tenant),
                Part::Date(pattern) => {
                    let time = UtcTime::from_unix_nanos(inputs.time_unix_nano);
                    for piece in pattern {
                        // Writing into a String cannot fail.
                        let _ = match piece {
                            DatePart::Year => write!(out, "{:04}", time.year),
                            DatePart::Month => write!(out, "{:02}", time.month),
                            DatePart::Day => write!(out, "{:02}", time.day),
                            DatePart::Hour => write!(out, "{:02}", time.hour),
                            DatePart::Separator(c) => {
                                out.push(*c);
                                Ok(())
                            }
                        };
                    }
                }
                Part::Attribute(key) => match (inputs.attribute)(key) {
                    Some(value) if !value.is_empty() => out.push_str(&value),
                    _ => out.push_str(MISSING_ATTRIBUTE),
                },
            }
        }
        sanitize(out);
    }
}

/// A `{…}` key: the tenant, a date pattern, or a resource attribute.
fn placeholder(key: &str) -> Part {
    if key == "tenant" {
        return Part::Tenant;
    }
    if let Some(date) = date_pattern(key) {
        return Part::Date(date);
    }
    Part::Attribute(key.to_owned())
}

/// `yyyy.MM.dd`-like: only the tokens `yyyy`, `MM`, `dd`, `HH` and the separators `.-_`.
fn date_pattern(key: &str) -> Option<Vec<DatePart>> {
    let mut parts = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        let (part, len) = if rest.starts_with("yyyy") {
            (DatePart::Year, 4)
        } else if rest.starts_with("MM") {
            (DatePart::Month, 2)
        } else if rest.starts_with("dd") {
            (DatePart::Day, 2)
        } else if rest.starts_with("HH") {
            (DatePart::Hour, 2)
        } else {
            match rest.chars().next() {
                Some(c @ ('.' | '-' | '_')) => (DatePart::Separator(c), 1),
                _ => return None,
            }
        };
        parts.push(part);
        rest = &rest[len..];
    }
    parts
        .iter()
        .any(|p| !matches!(p, DatePart::Separator(_)))
        .then_some(parts)
}

/// Makes `name` a valid index name: lower case; `\ / * ? " < > | , # :`, spaces and
/// control characters become `_`; no leading `-`, `_` or `+`; not `.` or `..`; at most
/// 255 bytes (Elasticsearch's rules for index names).
pub fn sanitize(name: &mut String) {
    let needs_work = name.bytes().any(|b| {
        b.is_ascii_uppercase()
            || !b.is_ascii()
            || b <= b' '
            || matches!(
                b,
                b'\\' | b'/' | b'*' | b'?' | b'"' | b'<' | b'>' | b'|' | b',' | b'#' | b':'
            )
    }) || name.starts_with(['-', '_', '+'])
        || name == "."
        || name == ".."
        || name.len() > MAX_INDEX_BYTES
        || name.is_empty();
    if !needs_work {
        return;
    }
    let mut clean: String = name
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    let trimmed = clean.trim_start_matches(['-', '_', '+']).len();
    clean.drain(..clean.len() - trimmed);
    if clean.is_empty() || clean == "." || clean == ".." {
        clean = MISSING_ATTRIBUTE.to_owned();
    }
    if clean.len() > MAX_INDEX_BYTES {
        let mut cut = MAX_INDEX_BYTES;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    *name = clean;
}

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

impl UtcTime {
    /// The calendar time of a Unix timestamp in nanoseconds.
    pub fn from_unix_nanos(nanos: u64) -> UtcTime {
        let secs = nanos / 1_000_000_000;
        let sub = (nanos % 1_000_000_000) as u32;
        let days = (secs / 86_400) as i64;
        let of_day = (secs % 86_400) as u32;
        // civil_from_days (Howard Hinnant, public domain): days since 1970-01-01 → y/m/d.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            nanos: sub,
        }
    }

    /// Appends RFC 3339 (`2023-11-14T22:13:20.123456789Z`): milliseconds when the
    /// time is a whole millisecond, else nanoseconds.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        let year = self.year.clamp(0, 9999) as u32;
        push_digits(out, year, 4);
        out.push(b'-');
        push_digits(out, self.month, 2);
        out.push(b'-');
        push_digits(out, self.day, 2);
        out.push(b'T');
        push_digits(out, self.hour, 2);
        out.push(b':');
        push_digits(out, self.minute, 2);
        out.push(b':');
        push_digits(out, self.second, 2);
        out.push(b'.');
        if self.nanos % 1_000_000 == 0 {
            push_digits(out, self.nanos / 1_000_000, 3);
        } else {
            push_digits(out, self.nanos, 9);
        }
        out.push(b'Z');
    }
}

/// Appends `value` as exactly `width` decimal digits (zero-padded; `value` fits).
fn push_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    const NANOS: u64 = 1_000_000_000;

    fn render(template: &str, tenant: &str, time: u64, service: Option<&str>) -> String {
        let template = IndexTemplate::parse(template).unwrap();
        let mut out = String::new();
        let inputs = IndexInputs {
            tenant,
            time_unix_nano: time,
            attribute: |key: &str| {
                (key == "service.name")
                    .then_some(service)
                    .flatten()
                    .map(Cow::Borrowed)
            },
        };
        template.render(&mut out, &inputs);
        out
    }

    #[test]
    fn calendar_dates_match_known_days() {
        // 2023-11-14T22:13:20Z
        let t = UtcTime::from_unix_nanos(1_700_000_000 * NANOS + 5);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.nanos),
            (2023, 11, 14, 22, 13, 20, 5)
        );
        let epoch = UtcTime::from_unix_nanos(0);
        assert_eq!((epoch.year, epoch.month, epoch.day), (1970, 1, 1));
        // A leap day and the turn of a century that is a leap year.
        let leap = UtcTime::from_unix_nanos(951_782_400 * NANOS); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let march = UtcTime::from_unix_nanos(951_868_800 * NANOS); // 2000-03-01
        assert_eq!((march.year, march.month, march.day), (2000, 3, 1));
        let new_year = UtcTime::from_unix_nanos(1_704_067_199 * NANOS); // 2023-12-31T23:59:59
        assert_eq!(
            (new_year.year, new_year.month, new_year.day, new_year.hour),
            (2023, 12, 31, 23)
        );
    }

    #[test]
    fn rfc3339_keeps_nanoseconds_only_when_needed() {
        let mut out = Vec::new();
        UtcTime::from_unix_nanos(1_700_000_000 * NANOS + 123_000_000).write_rfc3339(&mut out);
        assert_eq!(out, b"2023-11-14T22:13:20.123Z");
        out.clear();
        UtcTime::from_unix_nanos(1_700_000_000 * NANOS + 123_456_789).write_rfc3339(&mut out);
        assert_eq!(out, b"2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn templates_fill_tenant_date_and_attributes() {
        let time = 1_700_000_000 * NANOS;
        assert_eq!(
            render("traces-{tenant}-{yyyy.MM.dd}", "Acme", time, None),
            "traces-acme-2023.11.14"
        );
        assert_eq!(
            render(
                "logs-{service.name}-{yyyy-MM-dd-HH}",
                "t",
                time,
                Some("Check Out")
            ),
            "logs-check_out-2023-11-14-22"
        );
        assert_eq!(
            render("logs-{service.name}", "t", time, None),
            "logs-unknown"
        );
        assert_eq!(
            render("logs-generic-default", "t", time, None),
            "logs-generic-default"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["", "a-{", "a-{}", "a}", "a-{b{c}"] {
            assert!(IndexTemplate::parse(bad).is_err(), "{bad}");
        }
        let t = IndexTemplate::parse("a-{yyyy.MM}-{host.name}").unwrap();
        assert!(t.reads_attributes());
        assert_eq!(t.period_of(86_400 * NANOS * 3 + 5), 3);
    }

    #[test]
    fn names_follow_elasticsearch_rules() {
        let cases = [
            ("Logs-A", "logs-a"),
            ("_logs", "logs"),
            ("-+x", "x"),
            ("a/b\\c*d?e\"f<g>h|i,j#k:l m", "a_b_c_d_e_f_g_h_i_j_k_l_m"),
            ("..", "unknown"),
            ("logs-ok.2023", "logs-ok.2023"),
        ];
        for (input, expected) in cases {
            let mut name = input.to_owned();
            sanitize(&mut name);
            assert_eq!(name, expected, "{input}");
        }
        let mut long = "é".repeat(200);
        sanitize(&mut long);
        assert!(long.len() <= 255 && long.is_char_boundary(long.len()));
    }
}
