//! The aggregation, read back through the OTLP requests the connector emits.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tokio::time::Instant;

use super::*;
use crate::budget::Reservation;
use crate::model::{Batch, Context, Envelope, Signal};
use crate::pipeline::Transform;
use crate::queue::QueuedBatch;

const MS: u64 = 1_000_000;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const ERROR: i32 = 2;

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(v),
        ..Default::default()
    }
}

fn s(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.into())
}

fn span(name: &str, kind: i32, status: i32, millis: u64, attributes: Vec<KeyValue>) -> Span {
    let start = 1_700_000_000_000_000_000u64;
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + millis * MS,
        attributes,
        status: Some(Status {
            code: status,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A batch of `spans` under resources `(attributes, spans)`.
fn batch(resources: Vec<(Vec<KeyValue>, Vec<Span>)>) -> Batch {
    let request = ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|(attributes, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    Batch::decode(Signal::Traces, request.encode_to_vec().into())
        .expect("valid spans")
        .batch
}

fn service(name: &str) -> Vec<KeyValue> {
    vec![kv("service.name", s(name))]
}

fn input(context: Context, batch: Batch) -> QueuedBatch {
    let items = batch.items();
    QueuedBatch::new(
        Envelope::with_context(context, batch),
        Reservation::detached(items),
    )
}

fn config(toml: &str) -> SpanMetricsConfig {
    toml::from_str(toml).expect("config")
}

/// One series as read back: calls, histogram count, sum, buckets, start time.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    resource_service: Option<String>,
    calls: i64,
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
    bounds: Vec<f64>,
    start: u64,
}

/// Attributes rendered `key=value` (sorted) → the series read back.
type Points = BTreeMap<String, Point>;

fn label(attributes: &[KeyValue]) -> String {
    let mut parts: Vec<String> = attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => format!("int:{i}"),
                Some(any_value::Value::BoolValue(b)) => format!("bool:{b}"),
                Some(any_value::Value::DoubleValue(d)) => format!("double:{d}"),
                other => format!("{other:?}"),
            };
            format!("{}={v}", kv.key)
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// Every series in `envelopes`, per tenant.
fn read(envelopes: &[Envelope]) -> BTreeMap<Option<String>, Points> {
    let mut out: BTreeMap<Option<String>, Points> = BTreeMap::new();
    for envelope in envelopes {
        assert_eq!(envelope.batch.signal(), Signal::Metrics);
        let tenant = envelope.context.tenant().map(str::to_owned);
        let request = ExportMetricsServiceRequest::decode(envelope.batch.to_bytes()).unwrap();
        for rm in request.resource_metrics {
            let resource_service = rm.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
            });
            for sm in rm.scope_metrics {
                assert_eq!(sm.scope.unwrap().name, encode::SCOPE_NAME);
                let points = out.entry(tenant.clone()).or_default();
                for m in sm.metrics {
                    match m.data.unwrap() {
                        metric::Data::Sum(sum) => {
                            assert_eq!(m.name, "calls");
                            assert!(sum.is_monotonic);
                            assert_eq!(sum.aggregation_temporality, 2, "cumulative");
                            for p in sum.data_points {
                                let entry = points.entry(label(&p.attributes)).or_insert(Point {
                                    resource_service: resource_service.clone(),
                                    calls: 0,
                                    count: 0,
                                    sum: 0.0,
                                    buckets: vec![],
                                    bounds: vec![],
                                    start: 0,
                                });
                                let Some(number_data_point::Value::AsInt(v)) = p.value else {
                                    panic!("calls are ints");
                                };
                                entry.calls = v;
                                entry.start = p.start_time_unix_nano;
                                assert!(p.time_unix_nano >= p.start_time_unix_nano);
                            }
                        }
                        metric::Data::Histogram(h) => {
                            assert_eq!(m.name, "duration");
                            assert_eq!(m.unit, "s");
                            assert_eq!(h.aggregation_temporality, 2, "cumulative");
                            for p in h.data_points {
                                let entry = points.get_mut(&label(&p.attributes)).unwrap();
                                entry.count = p.count;
                                entry.sum = p.sum.unwrap();
                                entry.buckets = p.bucket_counts;
                                entry.bounds = p.explicit_bounds;
                                assert_eq!(entry.start, p.start_time_unix_nano);
                            }
                        }
                        other => panic!("unexpected metric {other:?}"),
                    }
                }
            }
        }
    }
    out
}

/// Feeds `inputs` to a fresh connector and returns what it flushes.
fn run(config: &SpanMetricsConfig, inputs: Vec<QueuedBatch>) -> Vec<Envelope> {
    let mut connector = SpanMetricsConnector::new(config);
    let mut out = Vec::new();
    for input in inputs {
        connector.process(input, &mut out).unwrap();
    }
    assert!(out.is_empty(), "nothing leaves before the flush interval");
    connector.flush(&mut out);
    out
}

#[test]
fn labels_buckets_and_sums_follow_each_span() {
    let config = config(r#"histogram.explicit.buckets = ["2ms", "10ms", "100ms"]"#);
    let spans = vec![
        span("GET /cart", SERVER, ERROR, 1, vec![]),
        span("GET /cart", SERVER, ERROR, 2, vec![]), // on the bound: that bucket
        span("GET /cart", SERVER, ERROR, 3, vec![]),
        span("GET /cart", SERVER, ERROR, 5000, vec![]), // above every bound
        span("GET /cart", SERVER, 0, 50, vec![]),
        span("SELECT", CLIENT, 1, 100, vec![]),
        span("odd kind", 42, 7, 0, vec![]), // unknown kind and status read as unspecified
    ];
    let out = run(
        &config,
        vec![input(
            Context::default(),
            batch(vec![(service("cart"), spans)]),
        )],
    );
    let points = &read(&out)[&None];
    let keys: Vec<&str> = points.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "service.name=cart,span.kind=SPAN_KIND_CLIENT,span.name=SELECT,status.code=STATUS_CODE_OK",
            "service.name=cart,span.kind=SPAN_KIND_SERVER,span.name=GET /cart,status.code=STATUS_CODE_ERROR",
            "service.name=cart,span.kind=SPAN_KIND_SERVER,span.name=GET /cart,status.code=STATUS_CODE_UNSET",
            "service.name=cart,span.kind=SPAN_KIND_UNSPECIFIED,span.name=odd kind,status.code=STATUS_CODE_UNSET",
        ]
    );
    let errors = &points[keys[1]];
    assert_eq!(errors.resource_service.as_deref(), Some("cart"));
    assert_eq!((errors.calls, errors.count), (4, 4));
    assert_eq!(errors.buckets, [2, 1, 0, 1]);
    assert_eq!(errors.bounds, [0.002, 0.01, 0.1]);
    assert!((errors.sum - 5.006).abs() < 1e-9, "{}", errors.sum);
    assert_eq!(
        points[keys[0]].buckets,
        [0, 0, 1, 0],
        "100ms is in the 100ms bucket"
    );
    assert_eq!(points[keys[2]].buckets, [0, 0, 1, 0]);
    assert_eq!(points[keys[3]].buckets, [1, 0, 0, 0]);
}

#[test]
fn series_are_cumulative_across_flushes_with_the_first_seen_start_time() {
    let config = config(r#"metrics_flush_interval = "10s""#);
    let mut connector = SpanMetricsConnector::new(&config);
    let spans = || {
        batch(vec![(
            service("cart"),
            vec![span("GET /cart", SERVER, 0, 7, vec![])],
        )])
    };
    let mut out = Vec::new();
    assert_eq!(connector.deadline(), None, "nothing to send yet");
    connector
        .process(input(Context::default(), spans()), &mut out)
        .unwrap();
    let due = connector.deadline().expect("a flush is due");
    connector.on_deadline(due, &mut out);
    let first = read(&out)[&None].clone();
    let (_, first) = first.into_iter().next().unwrap();
    assert_eq!(first.calls, 1);

    // A flush with no new spans repeats the series; new spans add to it.
    out.clear();
    let due = connector
        .deadline()
        .expect("series are sent every interval");
    connector.on_deadline(due, &mut out);
    assert_eq!(read(&out)[&None].values().next().unwrap().calls, 1);
    for _ in 0..2 {
        connector
            .process(input(Context::default(), spans()), &mut out)
            .unwrap();
    }
    out.clear();
    connector.on_deadline(connector.deadline().unwrap(), &mut out);
    let third = read(&out)[&None].values().next().unwrap().clone();
    assert_eq!((third.calls, third.count), (3, 3));
    assert_eq!(
        third.start, first.start,
        "start time stays the first sighting"
    );
    assert_eq!(third.buckets.iter().sum::<u64>(), 3);
}

#[test]
fn series_over_the_limit_go_to_one_overflow_series_per_tenant() {
    let config = config("aggregation_cardinality_limit = 2");
    let spans: Vec<Span> = (0..5)
        .map(|i| span(&format!("op-{}", i % 4), SERVER, 0, 1, vec![]))
        .collect();
    let acme = Context::default().with_tenant("acme");
    let out = run(
        &config,
        vec![
            input(acme.clone(), batch(vec![(service("a"), spans.clone())])),
            input(
                Context::default().with_tenant("globex"),
                batch(vec![(service("a"), spans)]),
            ),
        ],
    );
    let all = read(&out);
    let acme = &all[&Some("acme".to_owned())];
    // op-0 (twice) and op-1 have series; op-2 and op-3 overflow.
    assert_eq!(acme.len(), 3);
    let overflow = &acme["otel.metric.overflow=bool:true"];
    assert_eq!(overflow.calls, 2);
    assert_eq!(overflow.resource_service, None);
    assert_eq!(
        acme["service.name=a,span.kind=SPAN_KIND_SERVER,span.name=op-0,status.code=STATUS_CODE_UNSET"]
            .calls,
        2
    );
    // The limit is over all tenants: globex's spans all overflow.
    let globex = &all[&Some("globex".to_owned())];
    assert_eq!(globex.len(), 1);
    assert_eq!(globex["otel.metric.overflow=bool:true"].calls, 5);
}

#[test]
fn each_tenant_context_gets_its_own_series_and_batches() {
    let config = SpanMetricsConfig::default();
    let spans = |n: usize| {
        batch(vec![(
            service("shop"),
            (0..n)
                .map(|_| span("POST /pay", SERVER, 0, 1, vec![]))
                .collect(),
        )])
    };
    let acme = Context::default().with_tenant("acme");
    let globex = Context::default().with_tenant("globex").with_route("eu");
    let out = run(
        &config,
        vec![
            input(acme.clone(), spans(3)),
            input(globex.clone(), spans(5)),
            input(acme.clone(), spans(1)),
            input(Context::default(), spans(2)),
        ],
    );
    assert_eq!(out.len(), 3, "one batch per context");
    let contexts: Vec<&Context> = out.iter().map(|e| &e.context).collect();
    assert!(contexts.contains(&&acme) && contexts.contains(&&globex));
    let all = read(&out);
    let calls = |tenant: Option<&str>| -> Vec<i64> {
        all[&tenant.map(str::to_owned)]
            .values()
            .map(|p| p.calls)
            .collect()
    };
    assert_eq!(calls(Some("acme")), [4]);
    assert_eq!(calls(Some("globex")), [5]);
    assert_eq!(calls(None), [2]);
}

#[test]
fn dimensions_come_from_the_span_then_the_resource_then_the_default() {
    let config = config(
        r#"
exclude_dimensions = ["span.kind"]
dimensions = [
  { name = "http.response.status_code" },
  { name = "tenant.id", default = "unknown" },
  { name = "region" },
]
"#,
    );
    let code = |c: i64| kv("http.response.status_code", any_value::Value::IntValue(c));
    let mut shop = service("shop");
    shop.push(kv("tenant.id", s("acme")));
    let spans = vec![
        span("GET /", SERVER, 0, 1, vec![code(200)]),
        span("GET /", CLIENT, 0, 1, vec![code(200)]), // kind excluded: same series
        span("GET /", SERVER, 0, 1, vec![code(500)]),
        // The span's attribute wins over the resource's.
        span(
            "GET /",
            SERVER,
            0,
            1,
            vec![code(500), kv("tenant.id", s("globex"))],
        ),
        // A string "200" is another value than the int 200.
        span(
            "GET /",
            SERVER,
            0,
            1,
            vec![kv("http.response.status_code", s("200"))],
        ),
    ];
    let other = vec![
        span("GET /", SERVER, 0, 1, vec![kv("region", s("eu"))]),
        span("GET /", SERVER, 0, 1, vec![]),
    ];
    let out = run(
        &config,
        vec![input(
            Context::default(),
            batch(vec![(shop, spans), (service("other"), other)]),
        )],
    );
    let points = &read(&out)[&None];
    let calls: Vec<(&str, i64)> = points.iter().map(|(k, p)| (k.as_str(), p.calls)).collect();
    assert_eq!(
        calls,
        [
            ("http.response.status_code=200,service.name=shop,span.name=GET /,status.code=STATUS_CODE_UNSET,tenant.id=acme", 1),
            ("http.response.status_code=int:200,service.name=shop,span.name=GET /,status.code=STATUS_CODE_UNSET,tenant.id=acme", 2),
            ("http.response.status_code=int:500,service.name=shop,span.name=GET /,status.code=STATUS_CODE_UNSET,tenant.id=acme", 1),
            ("http.response.status_code=int:500,service.name=shop,span.name=GET /,status.code=STATUS_CODE_UNSET,tenant.id=globex", 1),
            ("region=eu,service.name=other,span.name=GET /,status.code=STATUS_CODE_UNSET,tenant.id=unknown", 1),
            ("service.name=other,span.name=GET /,status.code=STATUS_CODE_UNSET,tenant.id=unknown", 1),
        ]
    );
}

#[test]
fn the_namespace_prefixes_the_metric_names() {
    let config = config(r#"namespace = "traces.span.metrics""#);
    let out = run(
        &config,
        vec![input(
            Context::default(),
            batch(vec![(service("a"), vec![span("x", SERVER, 0, 1, vec![])])]),
        )],
    );
    let request = ExportMetricsServiceRequest::decode(out[0].batch.to_bytes()).unwrap();
    let names: Vec<String> = request.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(
        names,
        ["traces.span.metrics.calls", "traces.span.metrics.duration"]
    );
}

#[test]
fn idle_series_expire_and_free_their_room_under_the_limit() {
    let config = config(
        r#"
metrics_flush_interval = "10s"
metrics_expiration = "1m"
aggregation_cardinality_limit = 1
"#,
    );
    let mut aggregator = Aggregator::new(&config);
    let one = |name: &str| batch(vec![(service("a"), vec![span(name, SERVER, 0, 1, vec![])])]);
    let t0 = Instant::now();
    aggregator.record(&Context::default(), &one("old"), t0, 1);
    aggregator.record(&Context::default(), &one("new"), t0, 1);
    assert_eq!(aggregator.live_series(), 1);
    aggregator.expire(t0 + Duration::from_secs(59));
    assert_eq!(aggregator.live_series(), 1, "not idle long enough");
    aggregator.expire(t0 + Duration::from_secs(60));
    assert!(aggregator.is_empty(), "the series and the overflow expired");
    aggregator.record(
        &Context::default(),
        &one("new"),
        t0 + Duration::from_secs(61),
        2,
    );
    let (_, state) = aggregator.contexts().next().unwrap();
    assert!(state.overflow().is_none(), "room again for a series");
    assert_eq!(state.series().count(), 1);
}

#[test]
fn many_series_are_split_into_requests_of_bounded_size() {
    let config = config("aggregation_cardinality_limit = 5000");
    let spans: Vec<Span> = (0..encode::SERIES_PER_REQUEST + 10)
        .map(|i| span(&format!("op-{i}"), SERVER, 0, 1, vec![]))
        .collect();
    let out = run(
        &config,
        vec![input(
            Context::default(),
            batch(vec![(service("a"), spans)]),
        )],
    );
    let items: Vec<u64> = out.iter().map(Envelope::items).collect();
    assert_eq!(
        items,
        [2 * encode::SERIES_PER_REQUEST as u64, 20],
        "a calls and a duration point per series"
    );
    assert_eq!(read(&out)[&None].len(), encode::SERIES_PER_REQUEST + 10);
}
