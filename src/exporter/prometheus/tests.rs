//! Translation, splitting and classification of the remote-write exporter.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::translate::{refusal, DeltaMode, TranslateConfig, Translated, Translator};
use super::wire::{Label, Sample, STALE_NAN};
use super::*;

const T0: u64 = 1_700_000_000_000_000_000;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn service() -> Vec<KeyValue> {
    vec![
        kv("service.name", "checkout"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "pod-1"),
    ]
}

fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn number(attributes: Vec<KeyValue>, time: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn sum(points: Vec<NumberDataPoint>, monotonic: bool, temporality: AggregationTemporality) -> Data {
    Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: temporality as i32,
        is_monotonic: monotonic,
    })
}

fn translate(config: TranslateConfig, request: &ExportMetricsServiceRequest) -> Translated {
    Translator::new(config).translate(request, None)
}

/// Series as `name{a="b",…}` → samples, for readable assertions.
fn by_text(translated: &Translated) -> BTreeMap<String, Vec<Sample>> {
    translated
        .series
        .to_time_series()
        .iter()
        .map(|s| (text(&s.labels), s.samples.clone()))
        .collect()
}

fn text(labels: &[Label]) -> String {
    let utf8 = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map_or(String::new(), |l| utf8(&l.value));
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| format!("{}=\"{}\"", utf8(&l.name), utf8(&l.value)))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

fn values(samples: &[Sample]) -> Vec<(i64, f64)> {
    samples.iter().map(|s| (s.timestamp, s.value)).collect()
}

const MS: i64 = 1_700_000_000_000;

#[test]
fn gauges_counters_and_updown_sums() {
    let req = request(
        service(),
        vec![
            metric(
                "queue.depth",
                "{item}",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![kv("queue", "a")], T0, 3.0)],
                }),
            ),
            metric(
                "http.requests",
                "1",
                sum(
                    vec![NumberDataPoint {
                        attributes: vec![kv("http.method", "GET"), kv_int("http.status_code", 200)],
                        time_unix_nano: T0,
                        value: Some(number_data_point::Value::AsInt(42)),
                        ..Default::default()
                    }],
                    true,
                    AggregationTemporality::Cumulative,
                ),
            ),
            metric(
                "connections",
                "1",
                sum(
                    vec![number(vec![], T0, -2.0)],
                    false,
                    AggregationTemporality::Cumulative,
                ),
            ),
            metric(
                "cpu.utilization",
                "1",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], T0 + 1_500_000, 0.25)],
                }),
            ),
        ],
    );
    let out = translate(TranslateConfig::default(), &req);
    assert_eq!(out.points, 4);
    assert!(out.refused.is_empty());
    let series = by_text(&out);
    let base = "instance=\"pod-1\",job=\"shop/checkout\"";
    let expected = [
        (format!("queue_depth{{{base},queue=\"a\"}}"), (MS, 3.0)),
        (
            format!("http_requests_total{{http_method=\"GET\",http_status_code=\"200\",{base}}}"),
            (MS, 42.0),
        ),
        (format!("connections{{{base}}}"), (MS, -2.0)),
        (format!("cpu_utilization_ratio{{{base}}}"), (MS + 1, 0.25)),
    ];
    for (name, sample) in expected {
        assert_eq!(values(&series[&name]), [sample], "{name} in {series:#?}");
    }
    // No other resource attributes: no target_info.
    assert_eq!(series.len(), 4, "{series:#?}");
}

#[test]
fn histograms_have_cumulative_buckets_sum_and_count() {
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "http.server.duration",
            "s",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("route", "/pay")],
                    time_unix_nano: T0,
                    count: 10,
                    sum: Some(4.5),
                    bucket_counts: vec![2, 5, 0, 3],
                    explicit_bounds: vec![0.1, 0.5, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let out = translate(TranslateConfig::default(), &req);
    let series = by_text(&out);
    let bucket = |le: &str| {
        series[&format!(
            "http_server_duration_seconds_bucket{{job=\"api\",le=\"{le}\",route=\"/pay\"}}"
        )][0]
            .value
    };
    assert_eq!(
        [bucket("0.1"), bucket("0.5"), bucket("1"), bucket("+Inf")],
        [2.0, 7.0, 7.0, 10.0]
    );
    assert_eq!(
        series["http_server_duration_seconds_sum{job=\"api\",route=\"/pay\"}"][0].value,
        4.5
    );
    assert_eq!(
        series["http_server_duration_seconds_count{job=\"api\",route=\"/pay\"}"][0].value,
        10.0
    );
    assert_eq!(series.len(), 6);
}

#[test]
fn exponential_histograms_become_explicit_buckets() {
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "latency",
            "ms",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: T0,
                    count: 7,
                    sum: Some(20.0),
                    // base 2: buckets (1,2], (2,4], (4,8] and (-2,-1]
                    scale: 0,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![1, 2, 2],
                    }),
                    negative: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let out = translate(TranslateConfig::default(), &req);
    let series = by_text(&out);
    let bucket = |le: &str| {
        series[&format!("latency_milliseconds_bucket{{job=\"api\",le=\"{le}\"}}")][0].value
    };
    assert_eq!(bucket("-1"), 1.0);
    assert_eq!(bucket("0"), 2.0);
    assert_eq!(bucket("2"), 3.0);
    assert_eq!(bucket("4"), 5.0);
    assert_eq!(bucket("8"), 7.0);
    assert_eq!(bucket("+Inf"), 7.0);
    assert_eq!(
        series["latency_milliseconds_count{job=\"api\"}"][0].value,
        7.0
    );
}

#[test]
fn summaries_have_quantiles_sum_and_count() {
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "rpc.duration",
            "s",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T0,
                    count: 4,
                    sum: 2.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 0.4,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.9,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        )],
    );
    let series = by_text(&translate(TranslateConfig::default(), &req));
    assert_eq!(
        series["rpc_duration_seconds{job=\"api\",quantile=\"0.5\"}"][0].value,
        0.4
    );
    assert_eq!(
        series["rpc_duration_seconds{job=\"api\",quantile=\"0.99\"}"][0].value,
        0.9
    );
    assert_eq!(
        series["rpc_duration_seconds_sum{job=\"api\"}"][0].value,
        2.0
    );
    assert_eq!(
        series["rpc_duration_seconds_count{job=\"api\"}"][0].value,
        4.0
    );
}

#[test]
fn target_info_and_promoted_attributes() {
    let mut resource = service();
    resource.push(kv("deployment.environment", "prod"));
    resource.push(kv("host.name", "node-7"));
    let points = vec![number(vec![], T0, 1.0), number(vec![], T0 + 5_000_000, 2.0)];
    let req = request(
        resource,
        vec![metric(
            "up",
            "",
            Data::Gauge(Gauge {
                data_points: points,
            }),
        )],
    );
    let config = TranslateConfig {
        promote_resource_attributes: vec!["deployment.environment".into()],
        ..TranslateConfig::default()
    };
    let series = by_text(&translate(config, &req));
    let base = "instance=\"pod-1\",job=\"shop/checkout\"";
    assert_eq!(
        values(&series[&format!("up{{deployment_environment=\"prod\",{base}}}")]),
        [(MS, 1.0), (MS + 5, 2.0)]
    );
    // All other attributes, promoted ones too; at the resource's latest time.
    assert_eq!(
        values(
            &series[&format!(
                "target_info{{deployment_environment=\"prod\",host_name=\"node-7\",{base}}}"
            )]
        ),
        [(MS + 5, 1.0)]
    );
    let off = TranslateConfig {
        target_info: false,
        ..TranslateConfig::default()
    };
    assert!(by_text(&translate(off, &req))
        .keys()
        .all(|k| !k.starts_with("target_info")));
}

#[test]
fn names_and_labels_are_sanitised_and_colliding_keys_merged() {
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "3rd.party-calls",
            "",
            sum(
                vec![number(
                    vec![
                        kv("a.b", "1"),
                        kv("a_b", "2"),
                        kv("9z", "x"),
                        kv("__x", "y"),
                        kv("empty", ""),
                    ],
                    T0,
                    1.0,
                )],
                true,
                AggregationTemporality::Cumulative,
            ),
        )],
    );
    let out = translate(TranslateConfig::default(), &req);
    let series = by_text(&out);
    assert!(
        series.contains_key(
            "_3rd_party_calls_total{a_b=\"1;2\",job=\"api\",key_9z=\"x\",key__x=\"y\"}"
        ),
        "{series:#?}"
    );
    for s in &out.series.to_time_series() {
        let names: Vec<&[u8]> = s.labels.iter().map(|l| &l.name[..]).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "labels sorted by name");
    }
}

#[test]
fn invalid_points_are_refused_by_reason() {
    let req = request(
        vec![kv("service.name", "api")],
        vec![
            // A point attribute named like a resource label.
            metric(
                "a",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![kv("job", "other")], T0, 1.0)],
                }),
            ),
            // Histogram with an `le` attribute.
            metric(
                "h",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![
                        HistogramDataPoint {
                            attributes: vec![kv("le", "1")],
                            time_unix_nano: T0,
                            count: 1,
                            ..Default::default()
                        },
                        HistogramDataPoint {
                            time_unix_nano: T0,
                            count: 1,
                            bucket_counts: vec![1],
                            explicit_bounds: vec![1.0],
                            ..Default::default()
                        },
                    ],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            // A name that sanitises to nothing.
            metric(
                "",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], T0, 1.0)],
                }),
            ),
            metric(
                "no_time",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], 0, 1.0)],
                }),
            ),
            metric(
                "no_value",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: T0,
                        ..Default::default()
                    }],
                }),
            ),
            metric(
                "unspecified",
                "",
                sum(
                    vec![number(vec![], T0, 1.0)],
                    true,
                    AggregationTemporality::Unspecified,
                ),
            ),
            metric(
                "ok",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], T0, 1.0)],
                }),
            ),
        ],
    );
    let out = translate(TranslateConfig::default(), &req);
    let mut refused = out.refused.clone();
    refused.sort_unstable();
    let mut want = vec![
        (refusal::DUPLICATE_LABEL, 2),
        (refusal::INVALID_HISTOGRAM, 1),
        (refusal::INVALID_NAME, 1),
        (refusal::NO_TIMESTAMP, 1),
        (refusal::NO_VALUE, 1),
        (refusal::UNSPECIFIED_TEMPORALITY, 1),
    ];
    want.sort_unstable();
    assert_eq!(refused, want);
    assert_eq!(out.points, 1);
    assert_eq!(
        by_text(&out).keys().collect::<Vec<_>>(),
        ["ok{job=\"api\"}"]
    );
}

#[test]
fn delta_sums_and_histograms_become_cumulative() {
    let translator = Translator::new(TranslateConfig::default());
    let delta_sum = |t: u64, v: f64| {
        request(
            vec![kv("service.name", "api")],
            vec![metric(
                "calls",
                "",
                sum(
                    vec![number(vec![], t, v)],
                    true,
                    AggregationTemporality::Delta,
                ),
            )],
        )
    };
    let mut seen = Vec::new();
    for (i, v) in [3.0, 4.0, 0.0, 5.0].into_iter().enumerate() {
        let out = translator.translate(&delta_sum(T0 + i as u64 * 1_000_000_000, v), None);
        seen.push(out.series.to_time_series()[0].samples[0].value);
    }
    assert_eq!(seen, [3.0, 7.0, 7.0, 12.0]);
    // Another tenant's series of the same name starts from zero.
    let other = translator.translate(&delta_sum(T0, 1.0), Some("acme"));
    assert_eq!(other.series.to_time_series()[0].samples[0].value, 1.0);
    // An older point than the last is refused, counted.
    let late = translator.translate(&delta_sum(T0, 1.0), None);
    assert_eq!(late.refused, [(refusal::DELTA_OUT_OF_ORDER, 1)]);

    let delta_hist = |t: u64, counts: Vec<u64>| {
        request(
            vec![kv("service.name", "api")],
            vec![metric(
                "d",
                "s",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: t,
                        count: counts.iter().sum(),
                        sum: Some(1.0),
                        bucket_counts: counts,
                        explicit_bounds: vec![1.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            )],
        )
    };
    translator.translate(&delta_hist(T0, vec![1, 2]), None);
    let out = translator.translate(&delta_hist(T0 + 1_000_000_000, vec![3, 0]), None);
    let series = by_text(&out);
    assert_eq!(
        series["d_seconds_bucket{job=\"api\",le=\"1\"}"][0].value,
        4.0
    );
    assert_eq!(
        series["d_seconds_bucket{job=\"api\",le=\"+Inf\"}"][0].value,
        6.0
    );
    assert_eq!(series["d_seconds_sum{job=\"api\"}"][0].value, 2.0);
    assert_eq!(translator.delta_series(), 3);

    let refuse = TranslateConfig {
        delta: DeltaMode::Refuse,
        ..TranslateConfig::default()
    };
    let out = translate(refuse, &delta_sum(T0, 1.0));
    assert_eq!(out.refused, [(refusal::DELTA, 1)]);
    assert!(out.series.is_empty());
}

#[test]
fn delta_state_is_bounded() {
    let translator = Translator::new(TranslateConfig {
        delta_max_series: 2,
        ..TranslateConfig::default()
    });
    let points = (0..5)
        .map(|i| number(vec![kv("n", &i.to_string())], T0, 1.0))
        .collect();
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "calls",
            "",
            sum(points, true, AggregationTemporality::Delta),
        )],
    );
    let out = translator.translate(&req, None);
    assert_eq!(out.points, 2);
    assert_eq!(out.refused, [(refusal::DELTA_SERIES_LIMIT, 3)]);
    assert_eq!(translator.delta_series(), 2);
}

#[test]
fn samples_are_sorted_per_series_and_stale_points_marked() {
    let points = vec![
        number(vec![], T0 + 2_000_000, 3.0),
        number(vec![], T0, 1.0),
        NumberDataPoint {
            time_unix_nano: T0 + 3_000_000,
            flags: 1,
            ..Default::default()
        },
        number(vec![], T0 + 1_000_000, 2.0),
    ];
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: points,
            }),
        )],
    );
    let out = translate(TranslateConfig::default(), &req);
    assert_eq!(out.series.len(), 1);
    let series = out.series.to_time_series();
    let samples = &series[0].samples;
    let times: Vec<i64> = samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(times, [MS, MS + 1, MS + 2, MS + 3]);
    assert_eq!(samples[3].value.to_bits(), STALE_NAN);
}

#[test]
fn suffixes_can_be_turned_off() {
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "http.requests",
            "s",
            sum(
                vec![number(vec![], T0, 1.0)],
                true,
                AggregationTemporality::Cumulative,
            ),
        )],
    );
    let config = TranslateConfig {
        add_metric_suffixes: false,
        ..TranslateConfig::default()
    };
    assert!(by_text(&translate(config, &req)).contains_key("http_requests{job=\"api\"}"));
}

fn series(n: usize, samples: usize) -> SeriesSet {
    let mut set = SeriesSet::default();
    for i in 0..n {
        let name = format!("m{i}");
        for t in 0..samples {
            let labels: [(&[u8], &[u8]); 1] = [(b"__name__", name.as_bytes())];
            set.push(
                labels,
                Sample {
                    value: t as f64,
                    timestamp: t as i64,
                },
            );
        }
    }
    set
}

#[test]
fn requests_are_cut_at_max_samples_keeping_series_order() {
    // 3 series of 5 samples, 4 per request: 4 requests (4+4+4+3).
    let parts = split_parts(series(3, 5), 4, 30).unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts.iter().map(|p| p.items).sum::<u64>(), 30);
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for part in &parts {
        let request = wire::decode(&part.body).unwrap();
        assert!(
            request
                .timeseries
                .iter()
                .map(|s| s.samples.len())
                .sum::<usize>()
                <= 4
        );
        for s in request.timeseries {
            seen.entry(String::from_utf8(s.labels[0].value.to_vec()).unwrap())
                .or_default()
                .extend(s.samples.iter().map(|x| x.timestamp));
        }
    }
    for times in seen.values() {
        assert_eq!(times, &[0, 1, 2, 3, 4]);
    }
    // Nothing to send still carries its items.
    let parts = split_parts(SeriesSet::default(), 4, 2).unwrap();
    assert_eq!(parts.iter().map(|p| p.items).sum::<u64>(), 2);
}

#[test]
fn statuses_are_classified() {
    let now = SystemTime::now();
    for code in [429, 500, 503] {
        let status = StatusCode::from_u16(code).unwrap();
        let error = classify(status, Some(&HeaderValue::from_static("3")), b"busy", now);
        assert!(
            matches!(error, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
            "{code}: {error:?}"
        );
    }
    for code in [400, 401, 404, 413] {
        let status = StatusCode::from_u16(code).unwrap();
        let error = classify(status, None, b"out of order sample\n", now);
        assert!(!error.is_retryable(), "{code}");
        assert!(
            error.to_string().ends_with("out of order sample"),
            "{error}"
        );
    }
}

#[test]
fn resources_with_one_identity_share_a_partition() {
    let partitioner = ResourcePartitioner {
        promote: Vec::new(),
    };
    let resource = |instance: &str, host: &str| ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "api"),
                kv("service.instance.id", instance),
                kv("host.name", host),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], T0, 1.0)],
                }),
            )],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resources: Vec<ResourceMetrics> = (0..32)
        .map(|i| resource(&format!("pod-{}", i % 8), &format!("host-{i}")))
        .collect();
    let body = ExportMetricsServiceRequest {
        resource_metrics: resources,
    }
    .encode_to_vec();
    let batch = Batch::decode(Signal::Metrics, Bytes::from(body))
        .unwrap()
        .batch;
    let parts = partitioner.split(Envelope::new(batch), 4);
    assert!(parts.len() > 1, "8 instances over 4 partitions");
    assert_eq!(parts.iter().map(|(_, e)| e.items()).sum::<u64>(), 32);
    // Each instance is in exactly one partition.
    let mut home: BTreeMap<String, usize> = BTreeMap::new();
    for (index, envelope) in &parts {
        let request = ExportMetricsServiceRequest::decode(envelope.batch.to_bytes()).unwrap();
        for rm in request.resource_metrics {
            let attrs = rm.resource.unwrap().attributes;
            let instance = attrs
                .iter()
                .find(|kv| kv.key == "service.instance.id")
                .unwrap();
            let instance = format!("{:?}", instance.value);
            assert_eq!(*home.entry(instance).or_insert(*index), *index);
        }
    }
    assert_eq!(home.len(), 8);
}

#[tokio::test]
async fn builds_for_metrics_only_with_auth_headers() {
    std::env::set_var("OTLP_GATEWAY_TEST_PROM_TOKEN", "t0ken");
    let config: PrometheusExporterConfig = toml::from_str(
        "endpoint = \"http://127.0.0.1:9/api/v1/write\"\nbearer_token_env = \"OTLP_GATEWAY_TEST_PROM_TOKEN\"\nheaders = { \"X-Scope-OrgID\" = \"{tenant}\" }",
    )
    .unwrap();
    let exporter =
        PrometheusExporter::build("prometheusremotewrite/p", Signal::Metrics, &config).unwrap();
    assert_eq!(exporter.headers[AUTHORIZATION], "Bearer t0ken");
    assert_eq!(exporter.headers[CONTENT_ENCODING], "snappy");
    assert_eq!(
        exporter.headers["x-prometheus-remote-write-version"],
        "0.1.0"
    );
    assert_eq!(exporter.tenant_templates.len(), 1);
    assert!(matches!(
        PrometheusExporter::build("p", Signal::Traces, &config),
        Err(PrometheusBuildError::Signal(Signal::Traces))
    ));
    // Encoding fills the tenant header and counts the items.
    let req = request(
        vec![kv("service.name", "api")],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(vec![], T0, 1.0), number(vec![], 0, 1.0)],
            }),
        )],
    );
    let batch = Batch::decode(Signal::Metrics, Bytes::from(req.encode_to_vec()))
        .unwrap()
        .batch;
    let encoded =
        Exporter::encode(&exporter, &batch, &Context::default().with_tenant("acme")).unwrap();
    assert_eq!(Exporter::items(&exporter, &encoded), 2);
    assert_eq!(encoded.refused, 1);
    assert_eq!(encoded.tenant[0].1, "acme");
    // Nothing listens on port 9: retryable, nothing counted as delivered.
    let mut encoded = encoded;
    let error = Exporter::send(&exporter, &mut encoded).await.unwrap_err();
    assert!(
        matches!(
            error,
            ExportError::Partial {
                delivered: 0,
                rejected: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(Exporter::items(&exporter, &encoded), 1);
}
