//! Property tests of PCI redaction: random OTLP traces, metrics and logs
//! carrying card numbers of every length and grouping, in every kind of
//! string field, at random places inside longer text, next to numbers that
//! are not card numbers (16 digits failing Luhn, 12-digit Luhn numbers,
//! IBANs, ISO timestamps, epoch milliseconds and nanoseconds, phone numbers).
//!
//! Card numbers also travel as int attribute values (masked to a string).
//!
//! Each generated text is a list of tokens, so the expected output is known
//! exactly: every card number replaced by `****` and its last four digits,
//! every other byte unchanged. The whole decoded output must equal the
//! expected request, and no card number's digits may remain in its bytes.
//!
//! `redaction_through_the_stage` runs many cases against the stage itself;
//! `redaction_through_the_gateway` sends fewer through a running gateway
//! (gRPC in, OTLP/gRPC out to a fake backend).

mod support;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, summary_data_point,
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use otlp_gateway::model::{Batch, Envelope, Signal};
use otlp_gateway::redaction::{pan, RedactionConfig, Redactor};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

// ---------------------------------------------------------------------------
// tokens

/// Appends the Luhn check digit to `digits`.
fn with_check_digit(digits: &str) -> String {
    (b'0'..=b'9')
        .map(|d| format!("{digits}{}", d as char))
        .find(|candidate| luhn(candidate))
        .expect("one check digit fits")
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let v = u32::from(d - b'0');
            if i % 2 == 1 {
                if v * 2 > 9 {
                    v * 2 - 9
                } else {
                    v * 2
                }
            } else {
                v
            }
        })
        .sum();
    sum % 10 == 0
}

/// A piece of generated text: what goes in, what must come out.
#[derive(Debug, Clone)]
struct Token {
    input: String,
    expected: String,
    /// The card number's bare digits, which must not appear in any output.
    pan_digits: Option<String>,
}

impl Token {
    fn plain(text: String) -> Token {
        Token {
            expected: text.clone(),
            input: text,
            pan_digits: None,
        }
    }
}

/// Issuer prefixes of the card networks.
const PREFIXES: &[&str] = &[
    "4", "51", "52", "53", "54", "55", "2221", "2720", "34", "37", "6011", "65", "35", "36", "62",
    "3528",
];

/// A card number of 13–19 digits, written plain or grouped by single spaces or dashes.
fn pan() -> impl Strategy<Value = Token> {
    (
        prop::sample::select(PREFIXES),
        13usize..=19,
        prop::collection::vec(0u8..10, 19),
        0u8..4,
        prop::collection::vec((1usize..=6, prop::sample::select(vec![' ', '-'])), 19),
    )
        .prop_map(|(prefix, len, fill, grouping, groups)| {
            let mut digits = prefix.to_string();
            for d in fill.iter().take(len - 1 - prefix.len()) {
                digits.push((b'0' + d) as char);
            }
            let digits = with_check_digit(&digits);
            let written = match grouping {
                0 => digits.clone(),
                1 | 2 => {
                    let sep = if grouping == 1 { " " } else { "-" };
                    digits
                        .as_bytes()
                        .chunks(4)
                        .map(|c| std::str::from_utf8(c).expect("digits"))
                        .collect::<Vec<_>>()
                        .join(sep)
                }
                _ => {
                    // Random group sizes, each gap a space or a dash.
                    let mut out = String::new();
                    let mut at = 0;
                    for (size, sep) in groups {
                        let end = (at + size).min(digits.len());
                        out.push_str(&digits[at..end]);
                        at = end;
                        if at == digits.len() {
                            break;
                        }
                        out.push(sep);
                    }
                    out
                }
            };
            Token {
                expected: format!("****{}", &digits[digits.len() - 4..]),
                input: written,
                pan_digits: Some(digits),
            }
        })
}

fn digits(len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(0u8..10, len)
        .prop_map(|v| v.into_iter().map(|d| (b'0' + d) as char).collect())
}

/// ISO 13616 check digits for `country` and `bban`.
fn iban(country: &str, bban: &str) -> String {
    let rearranged: String = format!("{bban}{country}00")
        .chars()
        .map(|c| match c {
            'A'..='Z' => (c as u32 - 'A' as u32 + 10).to_string(),
            _ => c.to_string(),
        })
        .collect();
    let rest = rearranged
        .bytes()
        .fold(0u32, |acc, d| (acc * 10 + u32::from(d - b'0')) % 97);
    format!("{country}{:02}{bban}", 98 - rest)
}

/// Numbers that are not card numbers and must pass unchanged.
fn not_a_pan() -> impl Strategy<Value = Token> {
    prop_oneof![
        // 16 digits failing Luhn.
        digits(16).prop_map(|d| {
            let d = if luhn(&d) {
                let last = (d.as_bytes()[15] - b'0' + 1) % 10;
                format!("{}{}", &d[..15], last)
            } else {
                d
            };
            Token::plain(d)
        }),
        // 12-digit Luhn numbers.
        digits(11).prop_map(|d| Token::plain(with_check_digit(&d))),
        // IBANs, printed in groups of four or in their electronic form.
        (
            digits(26),
            prop::bool::ANY,
            prop::sample::select(vec![
                ("DE", 22),
                ("FR", 27),
                ("ES", 24),
                ("AT", 20),
                ("NL", 18)
            ])
        )
            .prop_map(|(bban, grouped, (country, len))| {
                // Registered lengths; Dutch account numbers start with a bank code in letters.
                let bban = match country {
                    "NL" => format!("ABNA{}", &bban[..len - 8]),
                    _ => bban[..len - 4].to_string(),
                };
                let iban = iban(country, &bban);
                let text = if grouped {
                    iban.as_bytes()
                        .chunks(4)
                        .map(|c| std::str::from_utf8(c).expect("ascii"))
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    iban
                };
                Token::plain(text)
            }),
        // ISO timestamps.
        (
            2000u32..2100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..1_000_000_000
        )
            .prop_map(|(y, mo, d, h, mi, ns)| Token::plain(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{:02}.{ns:09}Z",
                mi % 60
            ))),
        // Epoch milliseconds and nanoseconds (this century).
        (1_600_000_000_000u64..1_999_999_999_999).prop_map(|ms| Token::plain(ms.to_string())),
        (1_600_000_000_000_000_000u64..1_999_999_999_999_999_999)
            .prop_map(|ns| Token::plain(ns.to_string())),
        // Phone numbers, international and national.
        (digits(2), digits(3), digits(4), digits(4))
            .prop_map(|(cc, a, b, c)| { Token::plain(format!("+{cc} {a} {b} {c}")) }),
        (digits(3), digits(3), digits(4))
            .prop_map(|(a, b, c)| Token::plain(format!("({a}) {b}-{c}"))),
        (digits(2), digits(11)).prop_map(|(cc, n)| Token::plain(format!("+{cc}{n}"))),
    ]
}

/// Text with no digits (so tokens next to it cannot join into longer runs).
fn words() -> impl Strategy<Value = Token> {
    prop::collection::vec(
        prop::sample::select(vec![
            "order", "paid", "with", "card", "note", "ok", "é", "日本", "{\"k\":", "\"v\"}", ";",
            "=", "/", "a", "Zz",
        ]),
        1..4,
    )
    .prop_map(|w| Token::plain(w.join(" ")))
}

/// A text: tokens joined by a space and a word, or glued to letters.
fn text() -> impl Strategy<Value = Vec<Token>> {
    prop::collection::vec(
        (
            prop_oneof![3 => pan(), 3 => not_a_pan(), 2 => words()],
            prop::sample::select(vec![" and ", " x ", ", id ", "|q|", "\u{e9} "]),
            prop::bool::weighted(0.2),
        ),
        0..5,
    )
    .prop_map(|parts| {
        let mut out = Vec::new();
        for (token, joiner, glue_letters) in parts {
            if !out.is_empty() {
                out.push(Token::plain(joiner.to_string()));
            }
            // Card numbers also appear glued to letters (an IBAN glued to
            // letters is no longer recognisable as one, so only card numbers).
            if glue_letters && token.pan_digits.is_some() {
                out.push(Token::plain("ab".into()));
                out.push(token);
                out.push(Token::plain("cd".into()));
            } else {
                out.push(token);
            }
        }
        out
    })
}

/// The input and expected form of one generated string, and its card numbers.
#[derive(Debug, Clone, Default)]
struct Texts {
    pairs: Vec<(String, String)>,
    pans: Vec<String>,
}

impl Texts {
    /// Takes the next generated text: (input, expected).
    fn take(&mut self, tokens: &[Token]) -> (String, String) {
        let input: String = tokens.iter().map(|t| t.input.as_str()).collect();
        let expected: String = tokens.iter().map(|t| t.expected.as_str()).collect();
        self.pans
            .extend(tokens.iter().filter_map(|t| t.pan_digits.clone()));
        self.pairs.push((input.clone(), expected.clone()));
        (input, expected)
    }
}

// ---------------------------------------------------------------------------
// requests: every field kind that can hold a string

/// Builds the same request twice, once from the inputs and once from the
/// expected outputs of `texts`, in order.
struct Twin<'a> {
    texts: &'a [Vec<Token>],
    next: usize,
    seen: Texts,
}

impl Twin<'_> {
    fn s(&mut self) -> (String, String) {
        let tokens = &self.texts[self.next % self.texts.len()];
        self.next += 1;
        self.seen.take(tokens)
    }

    fn any_str(&mut self) -> (AnyValue, AnyValue) {
        let (i, e) = self.s();
        (str_value(i), str_value(e))
    }

    /// A key-value list and an array nested inside an attribute value.
    fn nested(&mut self) -> (AnyValue, AnyValue) {
        let (k, ke) = self.s();
        let (v1, v1e) = self.any_str();
        let (v2, v2e) = self.any_str();
        let (b, be) = self.s();
        let make = |k: String, v1: AnyValue, v2: AnyValue, b: String| AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv(&k, v1),
                    kv(
                        "list",
                        AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![v2, bytes_value(b)],
                            })),
                        },
                    ),
                ],
            })),
        };
        (make(k, v1, v2, b), make(ke, v1e, v2e, be))
    }

    /// A card number of the last text sent as an int (masked to a string),
    /// else a small int (kept).
    fn int_pan(&self) -> (AnyValue, AnyValue) {
        let tokens = &self.texts[(self.next + self.texts.len() - 1) % self.texts.len()];
        match tokens.iter().find_map(|t| t.pan_digits.as_ref()) {
            Some(pan) => (
                int_value(pan.parse().expect("PANs starting 2-6 fit an i64")),
                str_value(format!("****{}", &pan[pan.len() - 4..])),
            ),
            None => (int_value(7), int_value(7)),
        }
    }

    fn attrs(&mut self) -> (Vec<KeyValue>, Vec<KeyValue>) {
        let (k1, k1e) = self.s();
        let (int, int_e) = self.int_pan();
        // A key the default rules block, now and then (its value becomes "****").
        let blocked = [
            "card.cvv",
            "db.Password",
            "http.request.header.cookie",
            "tracking.id",
        ][self.next % 4];
        let blocked_e = if blocked == "tracking.id" {
            str_value("t-1".into())
        } else {
            str_value("****".into())
        };
        let (v1, v1e) = self.any_str();
        let (v2, v2e) = self.nested();
        let (b, be) = self.s();
        (
            vec![
                kv(&format!("key.{k1}"), v1),
                kv("nested", v2),
                kv("blob", bytes_value(b)),
                kv("n", int),
                kv(blocked, str_value("t-1".into())),
            ],
            vec![
                kv(&format!("key.{k1e}"), v1e),
                kv("nested", v2e),
                kv("blob", bytes_value(be)),
                kv("n", int_e),
                kv(blocked, blocked_e),
            ],
        )
    }

    fn resource(&mut self) -> (Resource, Resource) {
        let (a, e) = self.attrs();
        (
            Resource {
                attributes: a,
                ..Default::default()
            },
            Resource {
                attributes: e,
                ..Default::default()
            },
        )
    }

    fn scope(&mut self) -> (InstrumentationScope, InstrumentationScope) {
        let (n, ne) = self.s();
        let (a, e) = self.attrs();
        (
            InstrumentationScope {
                name: n,
                attributes: a,
                ..Default::default()
            },
            InstrumentationScope {
                name: ne,
                attributes: e,
                ..Default::default()
            },
        )
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn str_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn bytes_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BytesValue(s.into_bytes())),
    }
}

fn int_value(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

fn traces(t: &mut Twin<'_>) -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let (resource, resource_e) = t.resource();
    let (scope, scope_e) = t.scope();
    let (name, name_e) = t.s();
    let (attrs, attrs_e) = t.attrs();
    let (event, event_e) = t.s();
    let (event_attrs, event_attrs_e) = t.attrs();
    let (link_attrs, link_attrs_e) = t.attrs();
    let (message, message_e) = t.s();
    let make =
        |resource, scope, name, attributes, event: String, event_attrs, link_attrs, message| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope),
                        spans: vec![Span {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            name,
                            kind: 2,
                            start_time_unix_nano: 1,
                            end_time_unix_nano: 2,
                            attributes,
                            events: vec![span::Event {
                                time_unix_nano: 1,
                                name: event,
                                attributes: event_attrs,
                                ..Default::default()
                            }],
                            links: vec![span::Link {
                                trace_id: vec![3; 16],
                                span_id: vec![4; 8],
                                attributes: link_attrs,
                                ..Default::default()
                            }],
                            status: Some(Status { message, code: 2 }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        };
    (
        make(
            resource,
            scope,
            name,
            attrs,
            event,
            event_attrs,
            link_attrs,
            message,
        ),
        make(
            resource_e,
            scope_e,
            name_e,
            attrs_e,
            event_e,
            event_attrs_e,
            link_attrs_e,
            message_e,
        ),
    )
}

fn logs(t: &mut Twin<'_>) -> (ExportLogsServiceRequest, ExportLogsServiceRequest) {
    let (resource, resource_e) = t.resource();
    let (scope, scope_e) = t.scope();
    let (body, body_e) = t.any_str();
    let (nested_body, nested_body_e) = t.nested();
    let (attrs, attrs_e) = t.attrs();
    let make = |resource, scope, body, nested_body, attributes| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1,
                        body: Some(body),
                        attributes,
                        ..Default::default()
                    },
                    LogRecord {
                        time_unix_nano: 2,
                        body: Some(nested_body),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (
        make(resource, scope, body, nested_body, attrs),
        make(resource_e, scope_e, body_e, nested_body_e, attrs_e),
    )
}

fn metrics(t: &mut Twin<'_>) -> (ExportMetricsServiceRequest, ExportMetricsServiceRequest) {
    let (resource, resource_e) = t.resource();
    let (scope, scope_e) = t.scope();
    let mut points = Vec::new();
    for _ in 0..5 {
        points.push(t.attrs());
    }
    let (exemplar, exemplar_e) = t.attrs();
    let (name, name_e) = t.s();
    let make =
        |resource, scope, attrs: Vec<Vec<KeyValue>>, exemplar: Vec<KeyValue>, name: String| {
            let exemplars = vec![Exemplar {
                filtered_attributes: exemplar,
                time_unix_nano: 1,
                value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsInt(3)),
                ..Default::default()
            }];
            let number = |attributes| NumberDataPoint {
                attributes,
                time_unix_nano: 1,
                value: Some(number_data_point::Value::AsDouble(1.5)),
                exemplars: exemplars.clone(),
                ..Default::default()
            };
            let metric = |name: String, data| Metric {
                name,
                unit: "1".into(),
                data: Some(data),
                ..Default::default()
            };
            let mut attrs = attrs.into_iter();
            let mut next = || attrs.next().unwrap_or_default();
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(resource),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope),
                        metrics: vec![
                            metric(
                                name,
                                metric::Data::Gauge(Gauge {
                                    data_points: vec![number(next())],
                                }),
                            ),
                            metric(
                                "sum".into(),
                                metric::Data::Sum(Sum {
                                    data_points: vec![number(next())],
                                    aggregation_temporality: 2,
                                    is_monotonic: true,
                                }),
                            ),
                            metric(
                                "histogram".into(),
                                metric::Data::Histogram(Histogram {
                                    data_points: vec![HistogramDataPoint {
                                        attributes: next(),
                                        count: 1,
                                        bucket_counts: vec![1, 0],
                                        explicit_bounds: vec![1.0],
                                        exemplars: exemplars.clone(),
                                        ..Default::default()
                                    }],
                                    aggregation_temporality: 2,
                                }),
                            ),
                            metric(
                                "exp".into(),
                                metric::Data::ExponentialHistogram(ExponentialHistogram {
                                    data_points: vec![ExponentialHistogramDataPoint {
                                        attributes: next(),
                                        count: 1,
                                        positive: Some(Buckets {
                                            offset: 0,
                                            bucket_counts: vec![1],
                                        }),
                                        ..Default::default()
                                    }],
                                    aggregation_temporality: 2,
                                }),
                            ),
                            metric(
                                "summary".into(),
                                metric::Data::Summary(Summary {
                                    data_points: vec![SummaryDataPoint {
                                        attributes: next(),
                                        count: 1,
                                        sum: 2.0,
                                        quantile_values: vec![
                                            summary_data_point::ValueAtQuantile {
                                                quantile: 0.5,
                                                value: 2.0,
                                            },
                                        ],
                                        ..Default::default()
                                    }],
                                }),
                            ),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        };
    let (inputs, expected): (Vec<_>, Vec<_>) = points.into_iter().unzip();
    (
        make(resource, scope, inputs, exemplar, name),
        make(resource_e, scope_e, expected, exemplar_e, name_e),
    )
}

/// One random case: a request of each signal, with its expected output.
#[derive(Debug, Clone)]
struct Case {
    traces: (ExportTraceServiceRequest, ExportTraceServiceRequest),
    metrics: (ExportMetricsServiceRequest, ExportMetricsServiceRequest),
    logs: (ExportLogsServiceRequest, ExportLogsServiceRequest),
    pans: Vec<String>,
    /// Every generated string: (input, expected).
    texts: Vec<(String, String)>,
}

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec(text(), 1..12).prop_map(move |texts| {
        let mut twin = Twin {
            texts: &texts,
            next: 0,
            seen: Texts::default(),
        };
        let traces = traces(&mut twin);
        let metrics = metrics(&mut twin);
        let logs = logs(&mut twin);
        Case {
            traces,
            metrics,
            logs,
            pans: twin.seen.pans,
            texts: twin.seen.pairs,
        }
    })
}

// ---------------------------------------------------------------------------
// checks

/// No contiguous 13–19 digit run that a card network could have issued
/// (first digit 2–6, not a `+` phone number, not an IBAN) passes Luhn in `text` (a
/// decoded request's debug form: its strings, quoted).
fn assert_no_luhn_run(text: &str) {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let run = std::str::from_utf8(&bytes[start..at]).expect("digits");
        // An IBAN in one piece (`AT611904300234573201`) is a country code
        // glued to a digit run: not a card number.
        let after_country = start >= 2
            && bytes[start - 1].is_ascii_uppercase()
            && bytes[start - 2].is_ascii_uppercase();
        let candidate = (13..=19).contains(&run.len())
            && (b'2'..=b'6').contains(&bytes[start])
            && (start == 0 || bytes[start - 1] != b'+')
            && !after_country;
        assert!(
            !(candidate && luhn(run)),
            "Luhn-valid run {run} left in output"
        );
    }
}

/// No card number's digits remain in `bytes`, in any of its written forms.
fn assert_no_pan(bytes: &[u8], pans: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for pan in pans {
        assert!(
            !text.contains(pan.as_str()),
            "card number {pan} left in output"
        );
        let grouped: Vec<&str> = pan
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("digits"))
            .collect();
        for sep in [" ", "-"] {
            let written = grouped.join(sep);
            assert!(
                !text.contains(&written),
                "card number {written} left in output"
            );
        }
    }
}

fn redact(redactor: &mut Redactor, signal: Signal, body: Vec<u8>) -> Bytes {
    let batch = Batch::decode(signal, Bytes::from(body))
        .expect("valid request")
        .batch;
    let mut envelope = Envelope::new(batch);
    redactor.redact(&mut envelope);
    envelope.batch.to_bytes()
}

#[test]
fn redaction_through_the_stage() {
    stage_property(&RedactionConfig::default(), case());
}

fn stage_property(config: &RedactionConfig, strategy: impl Strategy<Value = Case>) {
    // The stages keep a key cache across batches, as in the gateway.
    let stages = std::cell::RefCell::new((
        Redactor::new(config, Signal::Traces).expect("config compiles"),
        Redactor::new(config, Signal::Metrics).expect("config compiles"),
        Redactor::new(config, Signal::Logs).expect("config compiles"),
    ));
    let cases = if std::env::var("CI").is_ok() {
        512
    } else {
        256
    };
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(&strategy, |case| {
            // Each string on its own first: the clearest report when one is wrong.
            for (input, expected) in &case.texts {
                let masked = pan::mask(input.as_bytes(), pan::PanScope::PaymentNetworks)
                    .map_or_else(
                        || input.clone(),
                        |(m, _)| String::from_utf8(m).expect("utf8"),
                    );
                prop_assert_eq!(&masked, expected, "input {:?}", input);
            }
            let (traces, metrics, logs) = &mut *stages.borrow_mut();
            let out = redact(traces, Signal::Traces, case.traces.0.encode_to_vec());
            assert_no_pan(&out, &case.pans);
            let decoded = ExportTraceServiceRequest::decode(out).expect("valid output");
            assert_no_luhn_run(&format!("{decoded:?}"));
            prop_assert_eq!(&decoded, &case.traces.1);

            let out = redact(metrics, Signal::Metrics, case.metrics.0.encode_to_vec());
            assert_no_pan(&out, &case.pans);
            let decoded = ExportMetricsServiceRequest::decode(out).expect("valid output");
            assert_no_luhn_run(&format!("{decoded:?}"));
            prop_assert_eq!(&decoded, &case.metrics.1);

            let out = redact(logs, Signal::Logs, case.logs.0.encode_to_vec());
            assert_no_pan(&out, &case.pans);
            let decoded = ExportLogsServiceRequest::decode(out).expect("valid output");
            assert_no_luhn_run(&format!("{decoded:?}"));
            prop_assert_eq!(&decoded, &case.logs.1);
            Ok(())
        })
        .expect("redaction property holds");
}

#[test]
fn generated_cases_hold_card_numbers_and_lookalikes() {
    // The generator is worth its name: most cases carry card numbers, and
    // the non-PAN numbers are there too (and unchanged, by the property).
    let mut runner = TestRunner::deterministic();
    let mut with_pans = 0;
    let mut with_ibans = 0;
    for _ in 0..64 {
        let case = case().new_tree(&mut runner).expect("tree").current();
        if !case.pans.is_empty() {
            with_pans += 1;
        }
        let text = format!("{:?}", case.logs.0);
        if ["DE", "FR", "NL", "ES"]
            .iter()
            .any(|c| text.contains(&format!("\"{c}")))
        {
            with_ibans += 1;
        }
        for pan in &case.pans {
            assert!(luhn(pan) && (13..=19).contains(&pan.len()), "{pan}");
        }
    }
    assert!(with_pans > 40, "{with_pans} of 64 cases carry card numbers");
    assert!(with_ibans > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_through_the_gateway() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use support::fake_otlp::FakeOtlp;
    use support::gateway;

    let fake = FakeOtlp::start().await;
    let body = format!(
        "[processors.redaction]\n{}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n\
         [pipelines.metrics]\nexporters = [\"otlp/down\"]\n[pipelines.logs]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1000)
    );
    let gw = gateway::start(&body).await;
    let url = gateway::grpc_url(&gw);
    let mut trace_client = TraceServiceClient::connect(url.clone())
        .await
        .expect("connects");
    let mut metrics_client = MetricsServiceClient::connect(url.clone())
        .await
        .expect("connects");
    let mut logs_client = LogsServiceClient::connect(url).await.expect("connects");

    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let mut cases = Vec::new();
    for _ in 0..24 {
        cases.push(case().new_tree(&mut runner).expect("tree").current());
    }
    for (i, case) in cases.iter().enumerate() {
        let n = i as u64 + 1;
        trace_client
            .export(case.traces.0.clone())
            .await
            .expect("traces accepted");
        metrics_client
            .export(case.metrics.0.clone())
            .await
            .expect("metrics accepted");
        logs_client
            .export(case.logs.0.clone())
            .await
            .expect("logs accepted");
        fake.wait_for_items(Signal::Traces, n).await;
        fake.wait_for_items(Signal::Metrics, 5 * n).await;
        fake.wait_for_items(Signal::Logs, 2 * n).await;
        for request in fake.requests() {
            assert_no_pan(&request.body, &case.pans);
        }
    }
    // Every expected request arrived (in some batching): compare item by item.
    assert_eq!(
        spans_of(fake.received_traces()),
        spans_of(cases.iter().map(|c| c.traces.1.clone()))
    );
    assert_eq!(
        records_of(fake.received_logs()),
        records_of(cases.iter().map(|c| c.logs.1.clone()))
    );
    assert_eq!(
        metrics_of(fake.received_metrics()),
        metrics_of(cases.iter().map(|c| c.metrics.1.clone()))
    );
    gw.shutdown().await;
}

fn spans_of(requests: impl IntoIterator<Item = ExportTraceServiceRequest>) -> Vec<Span> {
    requests
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn records_of(requests: impl IntoIterator<Item = ExportLogsServiceRequest>) -> Vec<LogRecord> {
    requests
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect()
}

fn metrics_of(requests: impl IntoIterator<Item = ExportMetricsServiceRequest>) -> Vec<Metric> {
    requests
        .into_iter()
        .flat_map(|r| r.resource_metrics)
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .collect()
}
