//! Tenants: what identifying, splitting and rate-limiting a request costs,
//! at 100 and at 10,000 listed tenants (the cost must not grow: every
//! lookup is a hash); loading and validating a 10,000-tenant config; and the
//! delivery latency of tenant B's spans while tenant A's backend is healthy
//! and while it hangs (B must not notice).
//!
//! Per-request figures are per 512-span request (the load generator's
//! shape), in thread CPU time; the latency group is wall time.
//!
//! `cargo bench --bench tenancy -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/fake_otlp.rs"]
mod fake_otlp;
#[path = "support/clock.rs"]
mod clock;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion};
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_gateway::config;
use otlp_gateway::model::{Batch, Signal};
use otlp_gateway::tenancy::{TenancyConfig, TenantConfig, Tenants};
use otlp_gateway::testkit;
use otlp_gateway::topology::Gateway;
use prost::Message;

use clock::Clock;
use fake_otlp::FakeOtlp;

const SPANS: usize = 512;

/// `n` tenants `tenant-<i>`, each with a token in a tokens file and a traces quota.
fn registry(n: usize, dir: &tempfile::TempDir) -> Tenants {
    let mut tenants = BTreeMap::new();
    let mut tokens = String::new();
    for i in 0..n {
        let mut tenant = TenantConfig::default();
        tenant.quota.traces = Some(otlp_gateway::tenancy::config::Quota {
            items_per_second: Some(1e12),
            ..Default::default()
        });
        tenants.insert(format!("tenant-{i}"), tenant);
        tokens.push_str(&format!("tenant-{i} token-of-tenant-{i:08}\n"));
    }
    let path = dir.path().join(format!("tokens-{n}"));
    std::fs::write(&path, tokens).expect("tokens file");
    let config: TenancyConfig =
        toml::from_str(&format!("[auth]\ntokens_file = \"{}\"\n", path.display()))
            .expect("tenancy config");
    Tenants::new(&config, &tenants, &[]).expect("registry")
}

/// A 512-span request whose resources name `tenants` (cycling).
fn request(tenants: &[String]) -> Batch {
    let mut req: ExportTraceServiceRequest = testkit::trace_request(7, SPANS);
    for (i, rs) in req.resource_spans.iter_mut().enumerate() {
        let resource = rs.resource.get_or_insert_with(Default::default);
        resource.attributes.push(testkit::kv_str(
            "tenant.id",
            tenants[i % tenants.len()].clone(),
        ));
    }
    Batch::decode(Signal::Traces, req.encode_to_vec().into())
        .expect("valid")
        .batch
}

fn per_request(c: &mut Criterion<Clock>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("tenancy");
    for n in [100, 10_000] {
        let tenants = registry(n, &dir);
        let id = format!("tenant-{}", n / 2 + 7);
        let mut headers = HeaderMap::new();
        let token = format!("Bearer token-of-tenant-{:08}", n / 2 + 7);
        headers.insert(
            "authorization",
            HeaderValue::from_str(&token).expect("header"),
        );
        let one = request(std::slice::from_ref(&id));
        let four: Vec<String> = (0..4).map(|i| format!("tenant-{}", i * n / 4)).collect();
        let mixed = request(&four);
        let now = tokio::time::Instant::now();

        group.bench_function(format!("identify_token/{n}_tenants"), |b| {
            b.iter(|| black_box(tenants.identify(black_box(&headers), None)))
        });
        let caller = tenants.identify(&headers, None).expect("known token");
        // The token binds the tenant; the resources say the same tenant.
        group.bench_function(format!("identify_assign_quota_1_tenant/{n}_tenants"), |b| {
            b.iter(|| {
                let caller = tenants.identify(&headers, None).expect("known");
                let parts = tenants.assign(&caller, one.clone()).expect("assigned");
                tenants
                    .take_quota(Signal::Traces, &parts, now)
                    .expect("within quota");
                black_box(parts)
            })
        });
        // No token binding: four tenants by resource attribute, split.
        let anonymous = otlp_gateway::tenancy::Caller::default();
        group.bench_function(format!("assign_split_4_tenants/{n}_tenants"), |b| {
            b.iter(|| {
                let parts = tenants.assign(&anonymous, mixed.clone()).expect("assigned");
                tenants
                    .take_quota(Signal::Traces, &parts, now)
                    .expect("within quota");
                black_box(parts)
            })
        });
        drop(caller);
    }
    group.finish();
}

/// A config of `n` tenants with quotas and 100 routes, as text.
fn config_text(n: usize) -> String {
    let mut text = String::from(
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n[tenancy]\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "[tenants.tenant-{i}]\ntier = \"t{}\"\n[tenants.tenant-{i}.quota.traces]\nitems_per_second = {}\n",
            i % 7,
            1000 + i
        ));
    }
    for i in 0..100 {
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\ntenants = [\"tenant-{i}*\"]\nexporters = [\"debug/console\"]\n"
        ));
    }
    text
}

fn config_load(c: &mut Criterion<WallTime>) {
    let text = config_text(10_000);
    let mut group = c.benchmark_group("tenancy_config");
    group.sample_size(10);
    group.bench_function("load_validate_build_10000_tenants", |b| {
        b.iter(|| {
            let (config, _) = config::load_and_validate_str(&text, "t.toml").expect("valid");
            let tenancy = config.tenancy.as_ref().expect("tenancy");
            black_box(Tenants::new(tenancy, &config.tenants, &config.routes).expect("registry"))
        })
    });
    group.finish();
}

/// Wall time from posting 10 spans of tenant globex to their arrival at
/// globex's backend, while acme's backend is `hung` or healthy.
fn b_latency(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    hung: bool,
) {
    let (gw, acme, globex) = runtime.block_on(async {
        let acme = FakeOtlp::start().await;
        let globex = FakeOtlp::start().await;
        if hung {
            acme.block();
        }
        let exporter = |name: &str, fake: &FakeOtlp| {
            format!(
                "[exporters.otlp.{name}]\nendpoint = \"{}\"\ncompression = \"none\"\n[exporters.otlp.{name}.sending_queue]\nqueue_size = 5000\n",
                fake.grpc_url()
            )
        };
        let text = format!(
            "[admin]\nendpoint = \"127.0.0.1:0\"\n[receivers.otlp.grpc]\nendpoint = \"127.0.0.1:0\"\n[receivers.otlp.http]\nendpoint = \"127.0.0.1:0\"\n[processors.batch]\ntimeout = \"5ms\"\n{}{}[pipelines.traces]\nexporters = [\"otlp/globex\"]\n[tenancy]\n[[routes]]\nname = \"acme\"\ntenants = [\"acme\"]\nexporters = [\"otlp/acme\"]\n",
            exporter("acme", &acme),
            exporter("globex", &globex),
        );
        let (config, _) = config::load_and_validate_str(&text, "b.toml").expect("valid");
        (Gateway::start(&config).await.expect("start"), acme, globex)
    });
    let url = format!("http://{}/v1/traces", gw.http_addr().expect("http"));
    let client = reqwest::Client::new();
    let body = |tenant: &str| {
        let mut req = testkit::trace_request(3, 10);
        for rs in &mut req.resource_spans {
            let resource = rs.resource.get_or_insert_with(Default::default);
            resource
                .attributes
                .push(testkit::kv_str("tenant.id", tenant.to_owned()));
        }
        req.encode_to_vec()
    };
    let (acme_body, globex_body) = (body("acme"), body("globex"));
    let items = |req: &[u8]| {
        ExportTraceServiceRequest::decode(req)
            .map(|r| {
                r.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len() as u64)
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    let per_request = items(&globex_body);
    let name = if hung {
        "b_delivery/a_hung"
    } else {
        "b_delivery/a_healthy"
    };
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Acme keeps sending (refused once its hung queue is full).
                    let _ = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(acme_body.clone())
                        .send()
                        .await;
                    let want = globex.accepted_items(Signal::Traces) + per_request;
                    let start = Instant::now();
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(globex_body.clone())
                        .send()
                        .await
                        .expect("answer");
                    assert!(answer.status().is_success());
                    while globex.accepted_items(Signal::Traces) < want {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    runtime.block_on(async {
        acme.release();
        gw.shutdown().await;
    });
}

fn isolation(c: &mut Criterion<WallTime>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("tenancy_isolation");
    group.sample_size(20);
    b_latency(&mut group, &runtime, false);
    b_latency(&mut group, &runtime, true);
    group.finish();
}

criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = per_request
}
criterion_group!(wall, config_load, isolation);
criterion_main!(cpu, wall);
