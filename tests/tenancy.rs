//! Tenants end to end: authentication answers with their exact status over
//! gRPC and HTTP (raw clients for the codes, the OpenTelemetry SDK's OTLP
//! exporters for what an application sees), spoofing, per-resource split,
//! routes, quotas with their retry delay, and isolation between tenants.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::KeyValue as SdkKeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use otlp_gateway::model::Signal;
use otlp_gateway::topology::Gateway;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

use support::fake_otlp::FakeOtlp;
use support::gateway;
use support::sdk::attr;

const ACME_TOKEN: &str = "acme-token-0123456789abcdef";
const GLOBEX_TOKEN: &str = "globex-token-0123456789abcdef";
const ACME_VAR: &str = "OTLP_GATEWAY_TEST_ACME_TOKEN";
const GLOBEX_VAR: &str = "OTLP_GATEWAY_TEST_GLOBEX_TOKEN";

/// The tokens' environment variables, set once before any gateway reads them.
fn set_token_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var(ACME_VAR, ACME_TOKEN);
        std::env::set_var(GLOBEX_VAR, GLOBEX_TOKEN);
    });
}

// --- requests ---

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One resource per entry, with `tenant.id` when given, each with `spans` spans.
fn request(resources: &[(Option<&str>, usize)]) -> ExportTraceServiceRequest {
    let resource_spans = resources
        .iter()
        .map(|&(tenant, spans)| {
            let mut attributes = vec![kv("service.name", "checkout")];
            if let Some(tenant) = tenant {
                attributes.push(kv("tenant.id", tenant));
            }
            ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans).map(|_| span()).collect(),
                    ..ScopeSpans::default()
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn span() -> Span {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut trace_id = vec![0u8; 8];
    trace_id.extend_from_slice(&id.to_be_bytes());
    Span {
        trace_id,
        span_id: id.to_be_bytes().to_vec(),
        name: "GET /cart".into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_050_000_000,
        ..Span::default()
    }
}

// --- sending, raw ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Grpc,
    Http,
}

const BOTH: [Via; 2] = [Via::Grpc, Via::Http];

/// The answer to one export: success, or the gRPC code / HTTP status, and the retry delay.
#[derive(Debug)]
struct Answer {
    grpc: Option<Code>,
    http: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

impl Answer {
    fn ok(&self) -> bool {
        self.grpc == Some(Code::Ok) || self.http == Some(200)
    }

    /// Asserts the exact status for the transport it came over.
    fn expect(&self, via: Via, code: Code, http: u16) {
        match via {
            Via::Grpc => assert_eq!(self.grpc, Some(code), "{self:?}"),
            Via::Http => assert_eq!(self.http, Some(http), "{self:?}"),
        }
    }
}

async fn send(
    gw: &Gateway,
    via: Via,
    headers: &[(&'static str, &str)],
    req: &ExportTraceServiceRequest,
) -> Answer {
    match via {
        Via::Grpc => {
            let mut client = TraceServiceClient::connect(gateway::grpc_url(gw))
                .await
                .expect("connect");
            let mut request = tonic::Request::new(req.clone());
            for (name, value) in headers {
                request
                    .metadata_mut()
                    .insert(*name, value.parse().expect("metadata value"));
            }
            match client.export(request).await {
                Ok(_) => Answer {
                    grpc: Some(Code::Ok),
                    http: None,
                    retry_after: None,
                    message: String::new(),
                },
                Err(status) => Answer {
                    grpc: Some(status.code()),
                    http: None,
                    retry_after: status.get_details_retry_info().and_then(|r| r.retry_delay),
                    message: status.message().to_owned(),
                },
            }
        }
        Via::Http => post(&reqwest::Client::new(), gw, headers, req).await,
    }
}

async fn post(
    client: &reqwest::Client,
    gw: &Gateway,
    headers: &[(&'static str, &str)],
    req: &ExportTraceServiceRequest,
) -> Answer {
    let mut request = client
        .post(format!("{}/v1/traces", gateway::http_base(gw)))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("http answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let body = response.bytes().await.unwrap_or_default();
    Answer {
        grpc: None,
        http: Some(status),
        retry_after,
        message: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// --- sending, SDK ---

/// Exports `spans` spans under a resource with `tenant` (if any) through the
/// SDK's exporter over `via`, with `headers`; the SDK's own verdict.
async fn sdk_export(
    gw: &Gateway,
    via: Via,
    headers: &[(&str, &str)],
    tenant: Option<&str>,
    spans: usize,
) -> Result<(), String> {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut resource = opentelemetry_sdk::Resource::builder_empty().with_service_name("checkout");
    if let Some(tenant) = tenant {
        resource = resource.with_attribute(SdkKeyValue::new("tenant.id", tenant.to_owned()));
    }
    let resource = resource.build();
    let batch: Vec<SpanData> = (0..spans).map(|_| sdk_span()).collect();
    match via {
        Via::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &headers {
                let key: tonic::metadata::MetadataKey<tonic::metadata::Ascii> =
                    k.parse().expect("metadata key");
                metadata.insert(key, v.parse().expect("metadata value"));
            }
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(gateway::grpc_url(gw))
                .with_metadata(metadata)
                .build()
                .expect("exporter");
            exporter.set_resource(&resource);
            exporter.export(batch).await.map_err(|e| e.to_string())
        }
        Via::Http => {
            let url = format!("{}/v1/traces", gateway::http_base(gw));
            // The blocking reqwest client must live off the tokio runtime, as on the
            // SDK's batch processor thread.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_headers(headers)
                    .build()
                    .expect("exporter");
                exporter.set_resource(&resource);
                let result =
                    futures_executor::block_on(exporter.export(batch)).map_err(|e| e.to_string());
                let _ = tx.send(result);
            });
            rx.await.expect("export thread")
        }
    }
}

fn sdk_span() -> SpanData {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes((u128::from(id) << 8 | 1).to_be_bytes()),
            SpanId::from_bytes(id.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "POST /checkout".into(),
        start_time: now,
        end_time: now + Duration::from_millis(5),
        attributes: vec![],
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: Default::default(),
    }
}

// --- what arrived ---

/// Every span `fake` accepted, with the `tenant.id` of its resource and the
/// request's `x-scope-orgid` header.
fn arrived(fake: &FakeOtlp) -> Vec<(Option<String>, Option<String>)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.accepted())
        .flat_map(|r| {
            let header = r.header("x-scope-orgid").map(str::to_owned);
            let request = ExportTraceServiceRequest::decode(r.body.clone()).expect("traces");
            request
                .resource_spans
                .into_iter()
                .flat_map(move |rs| {
                    let tenant = rs
                        .resource
                        .as_ref()
                        .and_then(|res| attr(&res.attributes, "tenant.id"))
                        .and_then(|v| match v {
                            any_value::Value::StringValue(s) => Some(s),
                            _ => None,
                        });
                    let n: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
                    let header = header.clone();
                    std::iter::repeat_n((tenant, header), n)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An OTLP exporter `otlp/<name>` to `fake` that sends each batch's tenant as `X-Scope-OrgID`.
fn exporter(name: &str, fake: &FakeOtlp, queue_size: u64) -> String {
    gateway::otlp_exporter_named(name, &fake.grpc_url(), "grpc", queue_size).replacen(
        "compression = \"none\"\n",
        "compression = \"none\"\ntenant_header = \"X-Scope-OrgID\"\n",
        1,
    )
}

/// Two tenants with tokens from the environment, everything to `fake`.
async fn authenticated_gateway(fake: &FakeOtlp, on_mismatch: &str) -> Gateway {
    set_token_env();
    gateway::start(&format!(
        r#"
{exporter}
[pipelines.traces]
exporters = ["otlp/down"]
[tenancy]
on_mismatch = "{on_mismatch}"
[tenancy.auth]
[tenants.acme]
token_env = "{ACME_VAR}"
[tenants.globex]
token_env = "{GLOBEX_VAR}"
"#,
        exporter = exporter("down", fake, 10_000),
    ))
    .await
}

#[tokio::test]
async fn authentication_answers_have_the_exact_status_on_both_transports() {
    let fake = FakeOtlp::start().await;
    let gw = authenticated_gateway(&fake, "reject").await;
    let acme = bearer(ACME_TOKEN);
    let labelled = |tenant| request(&[(Some(tenant), 2)]);
    for via in BOTH {
        // No credential, an unknown one, an unknown scheme: UNAUTHENTICATED / 401.
        send(&gw, via, &[], &request(&[(None, 1)]))
            .await
            .expect(via, Code::Unauthenticated, 401);
        let wrong = bearer("not-a-token-of-anyone-at-all");
        send(
            &gw,
            via,
            &[("authorization", &wrong)],
            &request(&[(None, 1)]),
        )
        .await
        .expect(via, Code::Unauthenticated, 401);
        send(
            &gw,
            via,
            &[("authorization", "Basic YWNtZTpzZWNyZXQ=")],
            &request(&[(None, 1)]),
        )
        .await
        .expect(via, Code::Unauthenticated, 401);
        // Acme's token, data labelled globex by header or by attribute: PERMISSION_DENIED / 403.
        let answer = send(
            &gw,
            via,
            &[("authorization", &acme), ("x-tenant-id", "globex")],
            &request(&[(None, 1)]),
        )
        .await;
        answer.expect(via, Code::PermissionDenied, 403);
        assert!(!answer.message.contains(ACME_TOKEN), "{answer:?}");
        send(&gw, via, &[("authorization", &acme)], &labelled("globex"))
            .await
            .expect(via, Code::PermissionDenied, 403);
        // A label that is no tenant id: INVALID_ARGUMENT / 400.
        send(
            &gw,
            via,
            &[("authorization", &acme), ("x-tenant-id", "acme corp")],
            &request(&[(None, 1)]),
        )
        .await
        .expect(via, Code::InvalidArgument, 400);
        // Acme's token with acme's own label, or none: accepted.
        send(
            &gw,
            via,
            &[("authorization", &acme), ("x-tenant-id", "acme")],
            &labelled("acme"),
        )
        .await
        .expect(via, Code::Ok, 200);
        send(
            &gw,
            via,
            &[("authorization", &acme)],
            &request(&[(None, 3)]),
        )
        .await
        .expect(via, Code::Ok, 200);
    }
    fake.wait_for_items(Signal::Traces, 10).await;
    // Only the accepted spans arrived, all as acme's.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let spans = arrived(&fake);
    assert_eq!(spans.len(), 10);
    assert!(spans
        .iter()
        .all(|(_, header)| header.as_deref() == Some("acme")));
    gw.shutdown().await;
}

#[tokio::test]
async fn the_sdk_exporters_are_accepted_with_a_token_and_refused_without() {
    let fake = FakeOtlp::start().await;
    let gw = authenticated_gateway(&fake, "reject").await;
    let acme = bearer(ACME_TOKEN);
    let globex = format!("ApiKey {GLOBEX_TOKEN}");
    for via in BOTH {
        sdk_export(&gw, via, &[("authorization", &acme)], None, 3)
            .await
            .unwrap_or_else(|e| panic!("{via:?}: {e}"));
        sdk_export(&gw, via, &[("authorization", &globex)], Some("globex"), 2)
            .await
            .unwrap_or_else(|e| panic!("{via:?}: {e}"));
        let refused = sdk_export(&gw, via, &[], None, 1).await;
        assert!(refused.is_err(), "{via:?}: no token must be refused");
        let spoofed = sdk_export(&gw, via, &[("authorization", &acme)], Some("globex"), 1).await;
        assert!(spoofed.is_err(), "{via:?}: acme's token for globex's data");
    }
    fake.wait_for_items(Signal::Traces, 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut by_tenant: HashMap<Option<String>, usize> = HashMap::new();
    for (_, header) in arrived(&fake) {
        *by_tenant.entry(header).or_default() += 1;
    }
    assert_eq!(by_tenant.get(&Some("acme".into())), Some(&6));
    assert_eq!(by_tenant.get(&Some("globex".into())), Some(&4));
    assert_eq!(by_tenant.len(), 2, "{by_tenant:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_token_for_one_tenant_never_gets_data_into_another_tenants_route() {
    set_token_env();
    for on_mismatch in ["reject", "overwrite"] {
        let acme_fake = FakeOtlp::start().await;
        let globex_fake = FakeOtlp::start().await;
        let gw = gateway::start(&format!(
            r#"
{a}
{g}
[pipelines.traces]
exporters = ["otlp/acme"]
[tenancy]
on_mismatch = "{on_mismatch}"
[tenancy.auth]
[tenants.acme]
token_env = "{ACME_VAR}"
[tenants.globex]
token_env = "{GLOBEX_VAR}"
[[routes]]
name = "globex-only"
tenants = ["globex"]
exporters = ["otlp/globex"]
"#,
            a = exporter("acme", &acme_fake, 10_000),
            g = exporter("globex", &globex_fake, 10_000),
        ))
        .await;
        let acme = bearer(ACME_TOKEN);
        let mut accepted = 0;
        for via in BOTH {
            let attempts: [(&[(&'static str, &str)], ExportTraceServiceRequest); 4] = [
                (&[("x-tenant-id", "globex")], request(&[(None, 1)])),
                (&[], request(&[(Some("globex"), 1)])),
                (
                    &[("x-tenant-id", "globex")],
                    request(&[(Some("globex"), 1), (Some("acme"), 1)]),
                ),
                (
                    &[("x-scope-orgid", "globex")],
                    request(&[(Some("globex"), 1)]),
                ),
            ];
            for (labels, req) in attempts {
                let mut headers = vec![("authorization", acme.as_str())];
                headers.extend_from_slice(labels);
                let answer = send(&gw, via, &headers, &req).await;
                if on_mismatch == "reject" {
                    answer.expect(via, Code::PermissionDenied, 403);
                } else {
                    answer.expect(via, Code::Ok, 200);
                    accepted += req.resource_spans.len() as u64;
                }
            }
        }
        // Globex's own token reaches globex's route.
        send(
            &gw,
            Via::Http,
            &[("authorization", &bearer(GLOBEX_TOKEN))],
            &request(&[(None, 1)]),
        )
        .await
        .expect(Via::Http, Code::Ok, 200);
        globex_fake.wait_for_items(Signal::Traces, 1).await;
        acme_fake.wait_for_items(Signal::Traces, accepted).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            globex_fake.accepted_items(Signal::Traces),
            1,
            "{on_mismatch}"
        );
        for (tenant, header) in arrived(&acme_fake) {
            assert_eq!(header.as_deref(), Some("acme"), "{on_mismatch}");
            // Overwritten labels say acme; unlabelled resources stay unlabelled.
            assert!(
                matches!(tenant.as_deref(), Some("acme") | None),
                "{tenant:?}"
            );
        }
        assert_eq!(acme_fake.accepted_items(Signal::Traces), accepted);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_request_of_several_tenants_is_split_and_each_part_takes_its_route() {
    let default_fake = FakeOtlp::start().await;
    let eu_fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        r#"
{d}
{e}
[pipelines.traces]
exporters = ["otlp/main"]
[tenancy]
default_tenant = "anonymous"
[tenants.initech]
tier = "gold"
[[routes]]
name = "eu"
tenants = ["eu-*"]
tier = "gold"
exporters = ["otlp/eu"]
"#,
        d = exporter("main", &default_fake, 10_000),
        e = exporter("eu", &eu_fake, 10_000),
    ))
    .await;
    for via in BOTH {
        let req = request(&[
            (Some("eu-acme"), 2),
            (Some("us-globex"), 3),
            (None, 1),
            (Some("eu-acme"), 1),
            (Some("initech"), 4),
        ]);
        send(&gw, via, &[], &req).await.expect(via, Code::Ok, 200);
        // The header comes before the attribute in the default precedence: it names the
        // tenant of every resource of the request.
        let req = request(&[(None, 2), (Some("us-globex"), 1)]);
        send(&gw, via, &[("x-tenant-id", "eu-hooli")], &req)
            .await
            .expect(via, Code::Ok, 200);
    }
    eu_fake
        .wait_for_items(Signal::Traces, 2 * (3 + 4 + 3))
        .await;
    default_fake
        .wait_for_items(Signal::Traces, 2 * (3 + 1))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let count = |spans: &[(Option<String>, Option<String>)], header: &str| {
        spans
            .iter()
            .filter(|(_, h)| h.as_deref() == Some(header))
            .count()
    };
    let eu = arrived(&eu_fake);
    let main = arrived(&default_fake);
    assert_eq!(count(&eu, "eu-acme"), 6);
    assert_eq!(count(&eu, "initech"), 8, "gold tier goes to the eu route");
    assert_eq!(count(&eu, "eu-hooli"), 6);
    assert_eq!(eu.len(), 20);
    assert_eq!(count(&main, "us-globex"), 6);
    assert_eq!(count(&main, "anonymous"), 2);
    assert_eq!(main.len(), 8);
    // Without a header, each span's resource label is the tenant its batch was sent as.
    for (tenant, header) in eu.iter().chain(&main) {
        if let Some(tenant) = tenant {
            if header.as_deref() != Some("eu-hooli") {
                assert_eq!(Some(tenant), header.as_ref());
            }
        }
    }
    gw.shutdown().await;
}

/// Items per second of the quota under test.
const RATE: u64 = 500;

#[tokio::test]
async fn a_tenant_over_its_quota_is_refused_at_its_rate_and_another_is_not_touched() {
    let fake = FakeOtlp::start().await;
    let gw = gateway::start(&format!(
        r#"
{exporter}
[pipelines.traces]
exporters = ["otlp/down"]
[tenancy]
[tenants.acme.quota.traces]
items_per_second = {RATE}
items_burst = {RATE}
[tenants.globex]
"#,
        exporter = exporter("down", &fake, 1_000_000),
    ))
    .await;
    let client = reqwest::Client::new();
    let req = request(&[(Some("acme"), 50)]);
    let globex = request(&[(Some("globex"), 100)]);
    // Acme asks for five times its rate (50 spans every 20 ms) for 3 s; globex sends alongside.
    let (mut accepted, mut refused, mut globex_sent) = (0u64, 0u64, 0u64);
    let mut retry_after = None;
    let start = Instant::now();
    let mut next = start;
    for round in 0u64.. {
        if start.elapsed() >= Duration::from_secs(3) {
            break;
        }
        let answer = post(&client, &gw, &[], &req).await;
        if answer.ok() {
            accepted += 50;
        } else {
            answer.expect(Via::Http, Code::ResourceExhausted, 429);
            retry_after = answer.retry_after;
            refused += 50;
        }
        if round % 5 == 0 {
            post(&client, &gw, &[], &globex)
                .await
                .expect(Via::Http, Code::Ok, 200);
            globex_sent += 100;
        }
        next += Duration::from_millis(20);
        tokio::time::sleep_until(next.into()).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = RATE as f64 * (1.0 + elapsed);
    let ratio = accepted as f64 / allowed;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "accepted {accepted} of an allowed {allowed:.0} in {elapsed:.2} s (refused {refused})"
    );
    assert!(refused > 0);
    assert!(retry_after.is_some_and(|d| d >= Duration::from_secs(1)));
    // Over gRPC the refusal is RESOURCE_EXHAUSTED with a RetryInfo delay.
    let mut grpc = None;
    for _ in 0..50 {
        let answer = send(&gw, Via::Grpc, &[], &request(&[(Some("acme"), 1000)])).await;
        if !answer.ok() {
            grpc = Some(answer);
            break;
        }
    }
    let grpc = grpc.expect("acme refused over gRPC");
    grpc.expect(Via::Grpc, Code::ResourceExhausted, 429);
    assert!(grpc.retry_after.is_some(), "{grpc:?}");

    fake.wait_for_items(Signal::Traces, accepted + globex_sent)
        .await;
    // Counted per tenant on /metrics: acme's refusals, none for globex.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let metrics = client
        .get(format!("http://{}/metrics", gateway::admin(&gw)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let over_quota: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("otlp_gateway_tenant_items_total") && l.contains("over_quota"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(over_quota >= refused as f64, "{metrics}");
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains("tenant=\"globex\"") && l.contains("over_quota")),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_hung_backend_of_one_tenant_never_delays_another_tenants_data() {
    let hung = FakeOtlp::start().await;
    let healthy = FakeOtlp::start().await;
    hung.block();
    let gw = gateway::start(&format!(
        r#"
{a}
{b}
[pipelines.traces]
exporters = ["otlp/b"]
[tenancy]
[[routes]]
name = "acme"
tenants = ["acme"]
exporters = ["otlp/a"]
"#,
        a = exporter("a", &hung, 2_000),
        b = exporter("b", &healthy, 100_000),
    ))
    .await;
    let client = reqwest::Client::new();
    let mut acme_refused = 0;
    let mut worst = Duration::ZERO;
    let mut sent = 0;
    for round in 0..40 {
        // Acme floods its hung route until its queue is full and it is refused.
        for _ in 0..5 {
            let answer = post(&client, &gw, &[], &request(&[(Some("acme"), 100)])).await;
            if !answer.ok() {
                answer.expect(Via::Http, Code::Unavailable, 503);
                acme_refused += 1;
            }
        }
        let started = Instant::now();
        post(&client, &gw, &[], &request(&[(Some("globex"), 10)]))
            .await
            .expect(Via::Http, Code::Ok, 200);
        sent += 10;
        healthy.wait_for_items(Signal::Traces, sent).await;
        worst = worst.max(started.elapsed());
        if round == 0 {
            hung.wait_for_waiting(1).await;
        }
    }
    assert!(acme_refused > 0, "acme's queue filled up");
    // Globex's spans are delivered within its own batch timeout (20 ms) plus
    // scheduling, never after acme's retries (60 s of them).
    assert!(
        worst < Duration::from_secs(2),
        "worst globex delivery {worst:?}"
    );
    let metrics = client
        .get(format!("http://{}/metrics", gateway::admin(&gw)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("otlp_gateway_exporter_items_dropped_total")
                && l.contains("exporter=\"otlp/b\"")
        ),
        "{metrics}"
    );
    // Globex's own counters show only accepted items.
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("otlp_gateway_tenant_items_total")
                && l.contains("tenant=\"globex\"")
                && !l.contains("outcome=\"accepted\"")),
        "{metrics}"
    );
    hung.release();
    gw.shutdown().await;
}

#[tokio::test]
async fn one_tenant_filling_a_shared_exporter_fills_only_its_share() {
    let fake = FakeOtlp::start().await;
    fake.block();
    let gw = gateway::start(&format!(
        r#"
{exporter}
[pipelines.traces]
exporters = ["otlp/down"]
[tenancy]
max_queue_share = 0.25
"#,
        exporter = exporter("down", &fake, 1_000),
    ))
    .await;
    let client = reqwest::Client::new();
    // Acme fills its quarter (250 items) of the 1,000-item queue, then is refused.
    let mut acme = 0;
    for _ in 0..10 {
        if post(&client, &gw, &[], &request(&[(Some("acme"), 50)]))
            .await
            .ok()
        {
            acme += 50;
        }
    }
    assert_eq!(acme, 250);
    // Globex and initech still get their own shares.
    for tenant in ["globex", "initech"] {
        for _ in 0..5 {
            post(&client, &gw, &[], &request(&[(Some(tenant), 50)]))
                .await
                .expect(Via::Http, Code::Ok, 200);
        }
    }
    fake.release();
    fake.wait_for_items(Signal::Traces, 750).await;
    gw.shutdown().await;
}

#[test]
fn ten_thousand_tenants_load_and_validate() {
    let mut text = gateway::config_text(
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n[tenancy]\n[tenancy.quota.traces]\nitems_per_second = 1000\n",
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "[tenants.tenant-{i}]\ntier = \"{}\"\n[tenants.tenant-{i}.quota.logs]\nitems_per_second = {}\n",
            if i % 10 == 0 { "gold" } else { "standard" },
            100 + i
        ));
    }
    for i in 0..100 {
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\ntenants = [\"tenant-{i}\", \"tenant-{i}?*\"]\nexporters = [\"debug/console\"]\n"
        ));
    }
    let (config, _) =
        otlp_gateway::config::load_and_validate_str(&text, "tenants.toml").expect("valid");
    assert_eq!(config.tenants.len(), 10_000);
    let tenants = otlp_gateway::tenancy::Tenants::new(
        config.tenancy.as_ref().expect("tenancy"),
        &config.tenants,
        &config.routes,
    )
    .expect("registry");
    assert_eq!(tenants.listed(), 10_000);
    assert_eq!(
        tenants
            .get("tenant-42")
            .and_then(|t| t.route.clone())
            .as_deref(),
        Some("r4"),
        "tenant-42 matches r4's glob before r42"
    );
}

#[test]
fn bad_tenancy_configs_name_their_keys() {
    let errors = |body: &str| {
        otlp_gateway::config::load_and_validate_str(&gateway::config_text(body), "bad.toml")
            .expect_err("invalid")
            .to_string()
    };
    let pipeline =
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n";
    let text = errors(&format!("{pipeline}[tenants.acme]\n"));
    assert!(text.contains("tenants need a [tenancy] table"), "{text}");
    let text = errors(&format!(
        "{pipeline}[tenancy]\nmax_queue_share = 0\n[[routes]]\nname = \"x\"\ntenants = [\"a\"]\nexporters = [\"otlp/nope\"]\n[tenants.\"a b\"]\n[tenants.acme.quota.traces]\nitems_burst = 5\n"
    ));
    for needle in [
        "tenancy.max_queue_share",
        "routes[0].exporters[0]",
        "unknown exporter \"otlp/nope\"",
        "tenants.a b",
        "tenants.acme.quota.traces.items_burst",
        "a quota needs items_per_second or bytes_per_second",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let text = errors(&format!(
        "{pipeline}[tenancy]\n[tenants.acme]\ntoken_env = \"X\"\n"
    ));
    assert!(
        text.contains("tokens are only checked with [tenancy.auth]"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_token_variable_stops_the_start_without_printing_any_token() {
    set_token_env();
    let text = gateway::config_text(&format!(
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n[tenancy]\n[tenancy.auth]\n[tenants.acme]\ntoken_env = \"{ACME_VAR}\"\n[tenants.globex]\ntoken_env = \"OTLP_GATEWAY_TEST_UNSET_VARIABLE\"\n"
    ));
    let (config, _) = otlp_gateway::config::load_and_validate_str(&text, "t.toml").expect("valid");
    let error = Gateway::start(&config).await.expect_err("must not start");
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert!(
        chain.contains("OTLP_GATEWAY_TEST_UNSET_VARIABLE"),
        "{chain}"
    );
    assert!(!chain.contains(ACME_TOKEN), "{chain}");
    let described = otlp_gateway::config::describe(&config);
    assert!(!described.contains(ACME_TOKEN), "{described}");
    assert!(described.contains("tenancy"), "{described}");
}

#[tokio::test]
async fn an_endpoint_naming_the_tenant_is_one_exporter_per_tenant() {
    let a = FakeOtlp::start().await;
    let b = FakeOtlp::start().await;
    // The tenants are named by their backend's port, so `{tenant}` tells them apart.
    let (ta, tb) = (a.grpc_addr().port(), b.grpc_addr().port());
    a.block();
    let exporter =
        gateway::otlp_exporter_named("per_tenant", "http://127.0.0.1:{tenant}", "grpc", 1000);
    let gw = gateway::start(&format!(
        "{exporter}\n[pipelines.traces]\nexporters = [\"otlp/per_tenant\"]\n[tenancy]\nunknown_tenants = \"reject\"\n[tenants.\"{ta}\"]\n[tenants.\"{tb}\"]\n"
    ))
    .await;
    let client = reqwest::Client::new();
    let (ta, tb) = (ta.to_string(), tb.to_string());
    post(
        &client,
        &gw,
        &[("x-tenant-id", &ta)],
        &request(&[(None, 5)]),
    )
    .await
    .expect(Via::Http, Code::Ok, 200);
    a.wait_for_waiting(1).await;
    // B's own exporter delivers while A's backend hangs.
    post(
        &client,
        &gw,
        &[("x-tenant-id", &tb)],
        &request(&[(None, 3)]),
    )
    .await
    .expect(Via::Http, Code::Ok, 200);
    b.wait_for_items(Signal::Traces, 3).await;
    // A tenant without an exporter of its own is refused, not sent anywhere.
    post(
        &client,
        &gw,
        &[("x-tenant-id", "9")],
        &request(&[(None, 1)]),
    )
    .await
    .expect(Via::Http, Code::PermissionDenied, 403);
    a.release();
    a.wait_for_items(Signal::Traces, 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.accepted_items(Signal::Traces), 5);
    assert_eq!(b.accepted_items(Signal::Traces), 3);
    gw.shutdown().await;

    // Without refusing unknown tenants there would be nowhere to send theirs: a config error.
    let text = gateway::config_text(&format!(
        "{exporter}\n[pipelines.traces]\nexporters = [\"otlp/per_tenant\"]\n[tenancy]\n[tenants.acme]\n"
    ));
    let errors = otlp_gateway::config::load_and_validate_str(&text, "t.toml")
        .expect_err("invalid")
        .to_string();
    assert!(
        errors.contains("exporters.otlp.per_tenant.endpoint")
            && errors.contains("unknown_tenants = \"reject\""),
        "{errors}"
    );
}
