//! Test support: builders of realistic OTLP payloads shared by unit tests,
//! integration tests and benches. Not part of the gateway's API.
//!
//! The trace shape mirrors `bench/loadgen/gen_payloads.py` (the load
//! generator the end-to-end numbers come from): 6 services, 8 spans per
//! trace, spans grouped per service into one `ResourceSpans` with one
//! `ScopeSpans`, 13 resource attributes, `tenant.id` / `order.id` /
//! `order.amount` (double) / `user.vip` (bool) / `user.id` on every span,
//! role-specific attributes, about 415 bytes per span.
//!
//! Everything is a pure function of `seed`: a tiny inline PRNG (SplitMix64)
//! is used instead of `rand::StdRng`, whose stream may change between `rand`
//! versions, and timestamps start at the fixed [`BASE_TIME_NANOS`].
//!
//! Unlike the Python generator, which draws error and card traces at random,
//! they are stratified here so every 512-span request has some: 1 trace in 20
//! is an error trace (root and one child with `Status=ERROR`, HTTP 500 and an
//! `exception` event) and 1 trace in 50 carries
//! `payment.card.number=4111111111111111` and a `http.request.body` with the
//! same number on span #1 and on the payment spans (3 of its 8 spans, so
//! about 0.75 % of all spans, as with the generator's defaults).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::model::{Batch, Signal};

/// The test card number the redaction stage must mask (a valid Visa test PAN).
pub const CARD: &str = "4111111111111111";
/// Services, in call-chain order, with their role (as in the load generator).
pub const SERVICES: [(&str, Role); 6] = [
    ("frontend", Role::Web),
    ("checkout", Role::Api),
    ("payment", Role::Payment),
    ("cart", Role::Cache),
    ("inventory", Role::Db),
    ("shipping", Role::Api),
];
/// Tenants drawn for `tenant.id`.
pub const TENANTS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];
/// Spans per trace.
pub const SPANS_PER_TRACE: usize = 8;
/// Time base of every payload (2023-11-14T22:13:20Z), so payloads are byte-identical per seed.
pub const BASE_TIME_NANOS: u64 = 1_700_000_000_000_000_000;
/// Schema URL on every `ResourceSpans` and `ScopeSpans`.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.27.0";

const ROUTES: [(&str, &str); 6] = [
    ("POST", "/api/checkout"),
    ("GET", "/api/cart"),
    ("POST", "/api/cart/items"),
    ("GET", "/api/products/{id}"),
    ("POST", "/api/orders"),
    ("GET", "/api/orders/{id}"),
];
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
const STACKTRACE: &str = "io.grpc.StatusRuntimeException: UNAVAILABLE\n\tat io.grpc.stub.ClientCalls.toStatusRuntimeException(ClientCalls.java:268)\n\tat oteldemo.PaymentService.charge(PaymentService.java:91)";

/// What a service does, which decides its spans' names and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Web,
    Api,
    Payment,
    Cache,
    Db,
}

/// SplitMix64: tiny, fast and stable across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; slightly biased, fine for test data).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal with the given `mu` and `sigma` of the underlying normal.
    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        // Box–Muller
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (mu + sigma * normal).exp()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// A string attribute.
pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// An int attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// A double attribute.
pub fn kv_double(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

/// A bool attribute.
pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The resource of service number `idx` (13 attributes, as in the load generator).
pub fn resource(service: &str, idx: usize) -> Resource {
    Resource {
        attributes: vec![
            kv_str("service.name", service),
            kv_str("service.namespace", "shop"),
            kv_str("service.version", format!("1.{}.{}", idx % 7, idx % 13)),
            kv_str(
                "service.instance.id",
                format!("{service}-{:04x}", idx * 7919 % 65536),
            ),
            kv_str("deployment.environment.name", "prod"),
            kv_str(
                "host.name",
                format!("ip-10-0-{}-{}.ec2.internal", idx % 8, idx % 250),
            ),
            kv_str("k8s.namespace.name", "shop"),
            kv_str(
                "k8s.pod.name",
                format!("{service}-7d9f8c6b5-{:05}", idx * 104_729 % 100_000),
            ),
            kv_str("k8s.node.name", format!("node-{}", idx % 6)),
            kv_str("cloud.region", "eu-west-1"),
            kv_str("telemetry.sdk.name", "opentelemetry"),
            kv_str(
                "telemetry.sdk.language",
                ["java", "go", "python", "nodejs"][idx % 4],
            ),
            kv_str("telemetry.sdk.version", "1.38.0"),
        ],
        ..Default::default()
    }
}

/// The instrumentation scope of a service.
pub fn scope(service: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: format!("io.opentelemetry.{service}"),
        version: "2.10.0".into(),
        ..Default::default()
    }
}

/// Whether trace number `index` of a request built from `seed` is an error trace (1 in 20).
fn is_error_trace(seed: u64, index: usize) -> bool {
    (index as u64).wrapping_add(seed) % 20 == 0
}

/// Whether trace number `index` of a request built from `seed` carries a card number (1 in 50).
fn is_card_trace(seed: u64, index: usize) -> bool {
    (index as u64)
        .wrapping_add(seed.wrapping_mul(7))
        .wrapping_add(13)
        % 50
        == 0
}

/// Builds `n` spans of one trace; returns them with their service index.
fn build_trace(rng: &mut Rng, seed: u64, index: usize, n: usize) -> Vec<(usize, Span)> {
    let mut trace_id: [u8; 16] = rng.bytes();
    if trace_id[..8] == [0; 8] {
        trace_id[0] = 1;
    }
    let tenant = *rng.pick(&TENANTS);
    let order_id = format!("ord-{:010}", rng.below(10_000_000_000));
    let user_id = format!("u-{:08}", rng.below(100_000_000));
    let amount = (rng.lognormal(3.5, 1.0) * 100.0).round() / 100.0;
    let vip = rng.unit() < 0.10;
    let is_error = is_error_trace(seed, index);
    let has_card = is_card_trace(seed, index);
    let (method, route) = *rng.pick(&ROUTES);
    let duration = (rng.lognormal(17.0, 0.8) as u64).max(100_000); // ~25 ms median
    let start = BASE_TIME_NANOS - duration - rng.below(2_000_000_000);
    let err_child = if is_error && n > 1 {
        1 + rng.below(n as u64 - 1) as usize
    } else {
        0
    };

    let mut spans = Vec::with_capacity(n);
    let mut span_ids: Vec<[u8; 8]> = Vec::with_capacity(n);
    for i in 0..n {
        let mut span_id: [u8; 8] = rng.bytes();
        if span_id == [0; 8] {
            span_id[0] = 1;
        }
        span_ids.push(span_id);
        let svc = if i == 0 {
            0
        } else {
            1 + (i - 1) % (SERVICES.len() - 1)
        };
        let (service, role) = SERVICES[svc];
        let parent = if i == 0 {
            Vec::new()
        } else if i < 3 {
            span_ids[0].to_vec()
        } else {
            span_ids[1 + rng.below(i as u64 - 1) as usize].to_vec()
        };
        let s_start = start
            + if i == 0 {
                0
            } else {
                rng.below(duration / 4 + 1)
            };
        let s_dur = if i == 0 {
            duration
        } else {
            ((duration as f64 * (0.05 + 0.45 * rng.unit())) as u64).max(10_000)
        };
        let mut attributes = vec![
            kv_str("tenant.id", tenant),
            kv_str("order.id", order_id.clone()),
            kv_double("order.amount", amount),
            kv_bool("user.vip", vip),
            kv_str("user.id", user_id.clone()),
        ];
        let kind;
        let name;
        if i == 0 {
            kind = span::SpanKind::Server;
            name = format!("{method} {route}");
            attributes.extend([
                kv_str("http.request.method", method),
                kv_str("http.route", route),
                kv_str(
                    "url.path",
                    route.replace("{id}", &rng.below(100_000).to_string()),
                ),
                kv_str("url.scheme", "https"),
                kv_int(
                    "http.response.status_code",
                    if is_error { 500 } else { 200 },
                ),
                kv_str("server.address", "shop.example.com"),
                kv_str(
                    "client.address",
                    format!("203.0.113.{}", 1 + rng.below(254)),
                ),
                kv_str("user_agent.original", UA),
                kv_str("network.protocol.version", "1.1"),
            ]);
        } else {
            match role {
                Role::Db => {
                    kind = span::SpanKind::Client;
                    name = "SELECT shop.orders".to_string();
                    attributes.extend([
                        kv_str("db.system", "postgresql"),
                        kv_str("db.namespace", "shop"),
                        kv_str("db.operation.name", "SELECT"),
                        kv_str(
                            "db.query.text",
                            "SELECT * FROM orders WHERE order_id = ? AND tenant = ?",
                        ),
                        kv_str("server.address", "pg-primary.shop.svc"),
                        kv_int("server.port", 5432),
                    ]);
                }
                Role::Cache => {
                    kind = span::SpanKind::Client;
                    name = "GET".to_string();
                    attributes.extend([
                        kv_str("db.system", "redis"),
                        kv_str("db.operation.name", "GET"),
                        kv_str("server.address", "redis.shop.svc"),
                        kv_int("server.port", 6379),
                    ]);
                }
                Role::Payment => {
                    kind = if i % 2 == 1 {
                        span::SpanKind::Server
                    } else {
                        span::SpanKind::Internal
                    };
                    name = "oteldemo.PaymentService/Charge".to_string();
                    attributes.extend([
                        kv_str("rpc.system", "grpc"),
                        kv_str("rpc.service", "oteldemo.PaymentService"),
                        kv_str("rpc.method", "Charge"),
                        kv_str("payment.currency", "EUR"),
                        kv_str("payment.card.type", "visa"),
                    ]);
                }
                Role::Web | Role::Api => {
                    kind = if i % 2 == 1 {
                        span::SpanKind::Client
                    } else {
                        span::SpanKind::Server
                    };
                    let verb = *rng.pick(&["GET", "POST"]);
                    let path = format!(
                        "/{service}/v1/{}",
                        rng.pick(&["get", "list", "quote", "reserve"])
                    );
                    name = format!("{verb} {path}");
                    attributes.extend([
                        kv_str("http.request.method", verb),
                        kv_str("url.full", format!("http://{service}.shop.svc:8080{path}")),
                        kv_int(
                            "http.response.status_code",
                            if is_error && i == err_child { 500 } else { 200 },
                        ),
                        kv_str("server.address", format!("{service}.shop.svc")),
                        kv_int("server.port", 8080),
                    ]);
                }
            }
            if has_card && (role == Role::Payment || i == 1) {
                attributes.push(kv_str("payment.card.number", CARD));
                attributes.push(kv_str(
                    "http.request.body",
                    format!("{{\"card\":\"{CARD}\",\"cvv\":\"123\",\"exp\":\"12/29\"}}"),
                ));
            }
        }
        let span_error = is_error && (i == 0 || i == err_child);
        let (status, events) = if span_error {
            (
                Status {
                    code: status::StatusCode::Error as i32,
                    message: "upstream failure".into(),
                },
                vec![span::Event {
                    time_unix_nano: s_start + s_dur / 2,
                    name: "exception".into(),
                    attributes: vec![
                        kv_str("exception.type", "io.grpc.StatusRuntimeException"),
                        kv_str("exception.message", "UNAVAILABLE: payment backend timeout"),
                        kv_str("exception.stacktrace", STACKTRACE),
                    ],
                    dropped_attributes_count: 0,
                }],
            )
        } else {
            (Status::default(), Vec::new())
        };
        spans.push((
            svc,
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent,
                name,
                kind: kind as i32,
                start_time_unix_nano: s_start,
                end_time_unix_nano: s_start + s_dur,
                attributes,
                events,
                status: Some(status),
                // has-is-remote / is-remote bits (OTLP 1.1+)
                flags: 0x100 | if i > 0 { 0x200 } else { 0 },
                ..Default::default()
            },
        ));
    }
    spans
}

/// A trace export request of exactly `spans` spans: complete 8-span traces
/// (the last one cut short when `spans` is not a multiple of 8), grouped per
/// service into one `ResourceSpans` each.
pub fn trace_request(seed: u64, spans: usize) -> ExportTraceServiceRequest {
    let mut rng = Rng::new(seed);
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    let mut left = spans;
    let mut index = 0;
    while left > 0 {
        let n = left.min(SPANS_PER_TRACE);
        for (svc, span) in build_trace(&mut rng, seed, index, n) {
            by_service[svc].push(span);
        }
        left -= n;
        index += 1;
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(idx, spans)| {
            let service = SERVICES[idx].0;
            ResourceSpans {
                resource: Some(resource(service, idx)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope(service)),
                    spans,
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// A metrics export request of exactly `points` data points: per service, a
/// rotation of a gauge (`system.cpu.utilization`, doubles), a monotonic
/// cumulative sum (`http.server.request.count`, ints) and an explicit-bucket
/// histogram (`http.server.request.duration`), each with up to 8 points that
/// differ by `http.route` and `http.response.status_code`.
pub fn metrics_request(seed: u64, points: usize) -> ExportMetricsServiceRequest {
    const BOUNDS: [f64; 14] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let mut rng = Rng::new(seed);
    let mut by_service: Vec<Vec<Metric>> = vec![Vec::new(); SERVICES.len()];
    let mut left = points;
    let mut n = 0usize;
    while left > 0 {
        let count = left.min(8);
        let svc = n % SERVICES.len();
        let time = BASE_TIME_NANOS - rng.below(1_000_000_000);
        let start = time - 60_000_000_000;
        let attributes = |rng: &mut Rng, p: usize| {
            vec![
                kv_str("http.route", ROUTES[p % ROUTES.len()].1),
                kv_int(
                    "http.response.status_code",
                    if p % 4 == 3 { 500 } else { 200 },
                ),
                kv_str("tenant.id", *rng.pick(&TENANTS)),
            ]
        };
        let data = match (n / SERVICES.len()) % 3 {
            0 => metric::Data::Gauge(Gauge {
                data_points: (0..count)
                    .map(|p| NumberDataPoint {
                        attributes: attributes(&mut rng, p),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsDouble(rng.unit())),
                        ..Default::default()
                    })
                    .collect(),
            }),
            1 => metric::Data::Sum(Sum {
                data_points: (0..count)
                    .map(|p| NumberDataPoint {
                        attributes: attributes(&mut rng, p),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(rng.below(1_000_000) as i64)),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2, // cumulative
                is_monotonic: true,
            }),
            _ => metric::Data::Histogram(Histogram {
                data_points: (0..count)
                    .map(|p| {
                        let bucket_counts: Vec<u64> =
                            (0..=BOUNDS.len()).map(|_| rng.below(500)).collect();
                        let total: u64 = bucket_counts.iter().sum();
                        HistogramDataPoint {
                            attributes: attributes(&mut rng, p),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: total,
                            sum: Some(total as f64 * 0.042),
                            bucket_counts,
                            explicit_bounds: BOUNDS.to_vec(),
                            min: Some(0.001),
                            max: Some(12.5),
                            ..Default::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
        };
        let (name, unit, description) = match data {
            metric::Data::Gauge(_) => ("system.cpu.utilization", "1", "CPU utilization"),
            metric::Data::Sum(_) => ("http.server.request.count", "{request}", "Requests served"),
            _ => (
                "http.server.request.duration",
                "s",
                "Duration of HTTP server requests",
            ),
        };
        by_service[svc].push(Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        });
        left -= count;
        n += 1;
    }
    let resource_metrics = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, metrics)| !metrics.is_empty())
        .map(|(idx, metrics)| {
            let service = SERVICES[idx].0;
            ResourceMetrics {
                resource: Some(resource(service, idx)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope(service)),
                    metrics,
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// A logs export request of exactly `records` log records spread over the
/// services: string bodies, severity INFO/WARN/ERROR (1 in 20 is ERROR),
/// trace context, `tenant.id` and a few attributes; 1 record in 50 has the
/// test card number in its body.
pub fn logs_request(seed: u64, records: usize) -> ExportLogsServiceRequest {
    let mut rng = Rng::new(seed);
    let mut by_service: Vec<Vec<LogRecord>> = vec![Vec::new(); SERVICES.len()];
    for i in 0..records {
        let svc = rng.below(SERVICES.len() as u64) as usize;
        let tenant = *rng.pick(&TENANTS);
        let order_id = format!("ord-{:010}", rng.below(10_000_000_000));
        let (severity_number, severity_text) = match (i as u64).wrapping_add(seed) % 20 {
            0 => (17, "ERROR"),
            1 | 2 => (13, "WARN"),
            _ => (9, "INFO"),
        };
        let body = if is_card_trace(seed, i) {
            format!("payment declined for card {CARD} on order {order_id}")
        } else if severity_number == 17 {
            format!("order {order_id} failed: UNAVAILABLE: payment backend timeout")
        } else {
            format!(
                "order {order_id} processed for tenant {tenant} in {} ms",
                1 + rng.below(900)
            )
        };
        let time = BASE_TIME_NANOS - rng.below(2_000_000_000);
        let trace_id: [u8; 16] = rng.bytes();
        let span_id: [u8; 8] = rng.bytes();
        by_service[svc].push(LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time + 1_500_000,
            severity_number,
            severity_text: severity_text.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body)),
            }),
            attributes: vec![
                kv_str("tenant.id", tenant),
                kv_str("order.id", order_id),
                kv_str("code.function.name", "OrderService.process"),
                kv_str("thread.name", format!("worker-{}", rng.below(16))),
            ],
            flags: 1,
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            ..Default::default()
        });
    }
    let resource_logs = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, logs)| !logs.is_empty())
        .map(|(idx, log_records)| {
            let service = SERVICES[idx].0;
            ResourceLogs {
                resource: Some(resource(service, idx)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope(service)),
                    log_records,
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

/// [`trace_request`], encoded.
pub fn encoded_traces(seed: u64, spans: usize) -> Bytes {
    Bytes::from(trace_request(seed, spans).encode_to_vec())
}

/// [`metrics_request`], encoded.
pub fn encoded_metrics(seed: u64, points: usize) -> Bytes {
    Bytes::from(metrics_request(seed, points).encode_to_vec())
}

/// [`logs_request`], encoded.
pub fn encoded_logs(seed: u64, records: usize) -> Bytes {
    Bytes::from(logs_request(seed, records).encode_to_vec())
}

/// Encoded request of `signal` with `items` items.
pub fn encoded(signal: Signal, seed: u64, items: usize) -> Bytes {
    match signal {
        Signal::Traces => encoded_traces(seed, items),
        Signal::Metrics => encoded_metrics(seed, items),
        Signal::Logs => encoded_logs(seed, items),
    }
}

/// A validated [`Batch`] of `signal` with `items` items.
///
/// # Panics
/// Never for the payloads built here: they are valid requests.
pub fn batch(signal: Signal, seed: u64, items: usize) -> Batch {
    Batch::decode(signal, encoded(signal, seed, items))
        .expect("testkit payloads are valid requests")
        .batch
}

/// The e-commerce tail-sampling policies of `../shared/SEED.md` as a
/// `[processors.tail_sampling]` table body (default waits): errors, VIP
/// users and orders over 1000 whole, 10 % of the rest.
pub const SHOP_SAMPLING: &str = r#"
decision = "first_match"
[[policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
[[policies]]
name = "vip"
type = "boolean_attribute"
boolean_attribute = { key = "user.vip", value = true }
[[policies]]
name = "high-value"
type = "numeric_attribute"
numeric_attribute = { key = "order.amount", min_value = 1000, min_inclusive = false }
[[policies]]
name = "baseline"
type = "probabilistic"
probabilistic = { sampling_percentage = 10 }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(req: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
        req.resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
    }

    fn has_card(span: &Span) -> bool {
        span.attributes
            .iter()
            .any(|kv| kv.key == "payment.card.number")
    }

    #[test]
    fn trace_request_has_the_load_generator_shape() {
        let req = trace_request(42, 512);
        assert_eq!(req.resource_spans.len(), 6);
        assert_eq!(spans(&req).count(), 512);
        let traces: std::collections::HashSet<_> =
            spans(&req).map(|s| s.trace_id.clone()).collect();
        assert_eq!(traces.len(), 64);
        for rs in &req.resource_spans {
            assert_eq!(rs.resource.as_ref().unwrap().attributes.len(), 13);
            assert_eq!(rs.scope_spans.len(), 1);
        }
        let bytes = req.encoded_len();
        let per_span = bytes / 512;
        assert!((360..=470).contains(&per_span), "{per_span} bytes per span");
        let errors = spans(&req)
            .filter(|s| s.status.as_ref().unwrap().code == status::StatusCode::Error as i32)
            .count();
        assert!(errors >= 4, "{errors} error spans");
        let cards = spans(&req).filter(|s| has_card(s)).count();
        assert!((3..=6).contains(&cards), "{cards} card spans");
        assert!(spans(&req).all(|s| s.attributes.iter().any(|kv| kv.key == "tenant.id")));
    }

    #[test]
    fn payloads_are_deterministic_per_seed() {
        assert_eq!(encoded_traces(7, 100), encoded_traces(7, 100));
        assert_ne!(encoded_traces(7, 100), encoded_traces(8, 100));
        assert_eq!(encoded_metrics(7, 100), encoded_metrics(7, 100));
        assert_eq!(encoded_logs(7, 100), encoded_logs(7, 100));
    }

    #[test]
    fn item_counts_are_exact_and_batches_validate() {
        for (signal, n) in [
            (Signal::Traces, 13),
            (Signal::Metrics, 77),
            (Signal::Logs, 31),
        ] {
            let decoded = Batch::decode(signal, encoded(signal, 1, n)).unwrap();
            assert_eq!(decoded.rejected, 0);
            assert_eq!(decoded.batch.items(), n as u64, "{signal}");
        }
    }

    #[test]
    fn metrics_mix_gauge_sum_and_histogram() {
        let req = metrics_request(3, 512);
        let metrics: Vec<_> = req
            .resource_metrics
            .iter()
            .flat_map(|r| r.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
            .collect();
        let kinds = |f: fn(&metric::Data) -> bool| {
            metrics
                .iter()
                .filter(|m| f(m.data.as_ref().unwrap()))
                .count()
        };
        assert!(kinds(|d| matches!(d, metric::Data::Gauge(_))) > 0);
        assert!(kinds(|d| matches!(d, metric::Data::Sum(_))) > 0);
        assert!(kinds(|d| matches!(d, metric::Data::Histogram(_))) > 0);
    }
}
