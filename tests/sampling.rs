//! Tail sampling through a running gateway: must-keep traces (errors, VIP
//! users, orders over 1000) arrive whole and at once, ordinary traces are
//! kept at the baseline share after the decision wait, and bad policy config
//! is refused with its key path and line.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use otlp_gateway::config;
use otlp_gateway::model::Signal;
use otlp_gateway::testkit::{self, kv_bool, kv_double, kv_str};

use support::fake_otlp::FakeOtlp;
use support::gateway;

const POLICIES: &str = r#"
[processors.tail_sampling]
decision_wait = "1s"
decision_wait_after_root = "500ms"
decision = "first_match"
[[processors.tail_sampling.policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
[[processors.tail_sampling.policies]]
name = "vip"
type = "boolean_attribute"
boolean_attribute = { key = "user.vip", value = true }
[[processors.tail_sampling.policies]]
name = "high-value"
type = "numeric_attribute"
numeric_attribute = { key = "order.amount", min_value = 1000, min_inclusive = false }
[[processors.tail_sampling.policies]]
name = "baseline"
type = "probabilistic"
probabilistic = { sampling_percentage = 10 }
"#;

/// What a generated trace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Error,
    Vip,
    HighValue,
    /// `order.amount` exactly 1000: not high value.
    Exactly1000,
    Ordinary,
}

/// A trace of `spans` spans over two services; the marker sits on the last span.
fn trace(id: u32, kind: Kind, spans: u32) -> ExportTraceServiceRequest {
    let mut trace_id = [0u8; 16];
    trace_id[..4].copy_from_slice(&id.to_be_bytes());
    trace_id[15] = 0x5a;
    let span = |i: u32| {
        let mut span_id = [0u8; 8];
        span_id[..4].copy_from_slice(&(i + 1).to_be_bytes());
        let last = i + 1 == spans;
        let mut attributes: Vec<KeyValue> = vec![kv_str("user.id", format!("u-{id}"))];
        match kind {
            Kind::Vip if last => attributes.push(kv_bool("user.vip", true)),
            Kind::HighValue if last => attributes.push(kv_double("order.amount", 1000.01)),
            Kind::Exactly1000 if last => attributes.push(kv_double("order.amount", 1000.0)),
            _ => attributes.push(kv_double("order.amount", 42.5)),
        }
        Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if i == 0 {
                Vec::new()
            } else {
                vec![0, 0, 0, 1, 0, 0, 0, 0]
            },
            name: format!("op-{i}"),
            start_time_unix_nano: 1_000 + u64::from(i),
            end_time_unix_nano: 2_000 + u64::from(i),
            attributes,
            status: (kind == Kind::Error && last).then(|| Status {
                code: status::StatusCode::Error as i32,
                message: "boom".into(),
            }),
            ..Default::default()
        }
    };
    let half = spans / 2;
    ExportTraceServiceRequest {
        resource_spans: [("checkout", 0..half), ("payment", half..spans)]
            .into_iter()
            .map(|(service, range)| ResourceSpans {
                resource: Some(testkit::resource(service, 0)),
                scope_spans: vec![ScopeSpans {
                    spans: range.map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Spans received per trace id.
fn received(fake: &FakeOtlp) -> HashMap<Vec<u8>, usize> {
    let mut spans = HashMap::new();
    for request in fake.received_traces() {
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            *spans.entry(span.trace_id.clone()).or_default() += 1;
        }
    }
    spans
}

fn id_of(id: u32) -> Vec<u8> {
    trace(id, Kind::Ordinary, 2).resource_spans[0].scope_spans[0].spans[0]
        .trace_id
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_keep_traces_arrive_whole_and_the_rest_at_the_baseline_share() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{POLICIES}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1_000_000)
    ))
    .await;
    let mut client = TraceServiceClient::connect(gateway::grpc_url(&gw))
        .await
        .expect("connect");

    let mut expected: HashMap<u32, (Kind, u32)> = HashMap::new();
    let kinds = [Kind::Error, Kind::Vip, Kind::HighValue, Kind::Exactly1000];
    for id in 0..2_000u32 {
        let kind = if id % 20 < 4 {
            kinds[(id % 20) as usize]
        } else {
            Kind::Ordinary
        };
        let spans = 3 + id % 28; // 3 to 30 spans
        expected.insert(id, (kind, spans));
        client
            .export(trace(id, kind, spans))
            .await
            .expect("accepted");
    }
    // Must-keep traces go out at once (early keep), everything else after the wait.
    let must_keep: u64 = expected
        .values()
        .filter(|(k, _)| matches!(k, Kind::Error | Kind::Vip | Kind::HighValue))
        .map(|(_, n)| u64::from(*n))
        .sum();
    fake.wait_for_items(Signal::Traces, must_keep).await;
    // Wait for the decisions of the rest: poll until the count stops growing.
    let mut last = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fake.accepted_items(Signal::Traces);
        if now == last && now > must_keep {
            break;
        }
        last = now;
    }

    let got = received(&fake);
    let mut ordinary_kept = 0;
    let mut ordinary = 0;
    for (id, (kind, spans)) in &expected {
        let arrived = got.get(&id_of(*id)).copied().unwrap_or(0);
        match kind {
            Kind::Error | Kind::Vip | Kind::HighValue => {
                assert_eq!(
                    arrived, *spans as usize,
                    "{kind:?} trace {id} arrives whole"
                )
            }
            Kind::Ordinary | Kind::Exactly1000 => {
                ordinary += 1;
                if arrived > 0 {
                    assert_eq!(arrived, *spans as usize, "kept traces are whole");
                    ordinary_kept += 1;
                }
            }
        }
    }
    let share = f64::from(ordinary_kept) / f64::from(ordinary);
    // 1,700 ordinary traces: the 10 % baseline within a wide statistical margin.
    assert!((0.06..=0.14).contains(&share), "baseline share {share}");
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shards_every_must_keep_trace_still_arrives_whole() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1_000_000),
        POLICIES.replace(
            "decision = \"first_match\"",
            "decision = \"first_match\"\nshards = 3"
        )
    ))
    .await;
    let mut client = TraceServiceClient::connect(gateway::grpc_url(&gw))
        .await
        .expect("connect");
    let mut must_keep = 0;
    // Each request mixes several traces, so the router splits it over the shards.
    for batch in 0..50u32 {
        let mut request = ExportTraceServiceRequest::default();
        for i in 0..8 {
            let id = 10_000 + batch * 8 + i;
            let kind = [Kind::Error, Kind::Vip, Kind::HighValue, Kind::Ordinary][(i % 4) as usize];
            let spans = 3 + i;
            if kind != Kind::Ordinary {
                must_keep += spans;
            }
            request
                .resource_spans
                .extend(trace(id, kind, spans).resource_spans);
        }
        client.export(request).await.expect("accepted");
    }
    fake.wait_for_items(Signal::Traces, u64::from(must_keep))
        .await;
    let got = received(&fake);
    for batch in 0..50u32 {
        for i in 0..3 {
            let id = 10_000 + batch * 8 + i;
            assert_eq!(
                got.get(&id_of(id)).copied(),
                Some((3 + i) as usize),
                "trace {id}"
            );
        }
    }
    assert!(gw.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spans_of_a_kept_trace_follow_it() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{POLICIES}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1_000_000)
    ))
    .await;
    let mut client = TraceServiceClient::connect(gateway::grpc_url(&gw))
        .await
        .expect("connect");
    client.export(trace(77, Kind::Error, 4)).await.unwrap();
    fake.wait_for_items(Signal::Traces, 4).await;
    // Well after the decision, more spans of the same trace.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = trace(77, Kind::Ordinary, 8);
    for rs in &mut late.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| s.name != "op-0" && s.name != "op-1");
            for s in &mut ss.spans {
                s.span_id[7] = 9;
            }
        }
    }
    client.export(late).await.unwrap();
    fake.wait_for_items(Signal::Traces, 4 + 6).await;
    assert_eq!(received(&fake).get(&id_of(77)).copied(), Some(10));
    assert!(gw.shutdown().await);
}

#[test]
fn bad_policy_config_is_refused_with_its_path_and_line() {
    let text = r#"[exporters.debug.console]
[pipelines.traces]
exporters = ["debug/console"]
[processors.tail_sampling]
[[processors.tail_sampling.policies]]
name = "routes"
type = "string_attribute"
string_attribute = { key = "http.route", values = ["(unclosed"], enabled_regex_matching = true }
[[processors.tail_sampling.policies]]
name = "amounts"
type = "numeric_attribute"
numeric_attribute = { key = "order.amount", min_value = 10, max_value = 5 }
[[processors.tail_sampling.policies]]
name = "nothing"
type = "latency"
"#;
    let errors = config::load_and_validate_str(text, "t.toml")
        .expect_err("refused")
        .lines();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "processors.tail_sampling.policies[0].string_attribute.values[0] (line 8): invalid regular expression \"(unclosed\""
        ),
        "{errors:#?}"
    );
    assert_eq!(
        errors[1],
        "processors.tail_sampling.policies[1].numeric_attribute.min_value (line 12): must not be greater than max_value (5)"
    );
    assert!(
        errors[2].starts_with("processors.tail_sampling.policies[2].latency"),
        "{errors:#?}"
    );

    let unknown = "[processors.tail_sampling]\n[[processors.tail_sampling.policies]]\nname = \"x\"\ntype = \"sometimes\"\n";
    let errors = config::load_and_validate_str(unknown, "t.toml")
        .expect_err("refused")
        .lines();
    assert!(
        errors[0].starts_with(
            "processors.tail_sampling.policies[0].type (line 4): unknown variant `sometimes`"
        ),
        "{errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_decides_the_oldest_traces_early_and_counts_it() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        "{}{}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1_000_000),
        POLICIES
            .replace("decision_wait = \"1s\"", "decision_wait = \"60s\"")
            .replace(
                "decision_wait_after_root = \"500ms\"",
                "decision_wait_after_root = \"60s\"\nnum_traces = 20"
            )
    ))
    .await;
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", gateway::admin(&gw)))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let forced = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "otlp_gateway_sampling_forced_decisions_total{reason=\"buffer_full\"} ",
                )
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let before = forced(&metrics().await);
    let mut client = TraceServiceClient::connect(gateway::grpc_url(&gw))
        .await
        .expect("connect");
    for id in 50_000..50_500u32 {
        client
            .export(trace(id, Kind::Ordinary, 4))
            .await
            .expect("accepted");
    }
    // With 60 s waits, only the bound can have decided: 480 of the 500 traces, early.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut after = before;
    while tokio::time::Instant::now() < deadline {
        after = forced(&metrics().await);
        if after - before >= 480.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after - before >= 480.0,
        "forced decisions counted: {before} -> {after}"
    );
    assert!(
        gw.shutdown().await,
        "the 20 held traces are decided at shutdown"
    );
}
