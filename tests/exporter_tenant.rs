//! The batch context reaches the backend: the OTLP exporter forwards each
//! batch's tenant in its `tenant_header` (e.g. `X-Scope-OrgID`), over gRPC
//! metadata and HTTP headers, and sends no such header for a batch without one;
//! `headers` values with `{tenant}` are filled in per batch.

mod support;

use otlp_gateway::exporter::otlp::config::OtlpExporterConfig;
use otlp_gateway::exporter::otlp::OtlpExporter;
use otlp_gateway::exporter::Exporter;
use otlp_gateway::model::{Context, Signal};
use otlp_gateway::testkit;

use support::fake_otlp::FakeOtlp;

fn exporter(endpoint: &str, protocol: &str) -> OtlpExporter {
    let toml = format!(
        "endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\ncompression = \"none\"\ntenant_header = \"X-Scope-OrgID\"\n\
         [headers]\nx-api-key = \"key-{{tenant}}-ingest\"\nx-static = \"always\"\n"
    );
    let config: OtlpExporterConfig = toml::from_str(&toml).expect("exporter config");
    OtlpExporter::build("otlp/tenant", &config).expect("exporter builds")
}

#[tokio::test]
async fn the_tenant_of_the_context_is_sent_in_the_tenant_header() {
    let fake = FakeOtlp::start().await;
    for (protocol, endpoint) in [
        ("grpc", fake.grpc_url()),
        ("http_protobuf", fake.http_url()),
    ] {
        let exporter = exporter(&endpoint, protocol);
        let batch = testkit::batch(Signal::Traces, 1, 16);

        let acme = Context::default().with_tenant("acme");
        let mut request = Exporter::encode(&exporter, &batch, &acme).expect("encodes");
        Exporter::send(&exporter, &mut request)
            .await
            .expect("delivered");
        let received = fake.next_request().await;
        assert_eq!(received.header("x-scope-orgid"), Some("acme"), "{protocol}");
        assert_eq!(
            received.header("x-api-key"),
            Some("key-acme-ingest"),
            "{protocol}"
        );
        assert_eq!(received.header("x-static"), Some("always"), "{protocol}");

        let mut request =
            Exporter::encode(&exporter, &batch, &Context::default()).expect("encodes");
        Exporter::send(&exporter, &mut request)
            .await
            .expect("delivered");
        let received = fake.next_request().await;
        assert_eq!(
            received.header("x-scope-orgid"),
            None,
            "{protocol}: no tenant, no header"
        );
        assert_eq!(received.header("x-api-key"), None, "{protocol}");
        assert_eq!(received.header("x-static"), Some("always"), "{protocol}");
    }
}

#[test]
fn a_reserved_or_invalid_tenant_header_is_a_config_error() {
    for (name, problem) in [
        ("content-type", "set by the exporter"),
        ("grpc-timeout", "reserved by gRPC"),
        ("bad name", "not a valid header name"),
    ] {
        let text = format!(
            "[exporters.otlp.x]\nendpoint = \"http://h:1\"\ntenant_header = \"{name}\"\n[pipelines.traces]\nexporters = [\"otlp/x\"]\n"
        );
        let errors =
            otlp_gateway::config::load_and_validate_str(&text, "t.toml").expect_err("refused");
        assert_eq!(
            errors.lines(),
            [format!(
                "exporters.otlp.x.tenant_header (line 3): invalid header name \"{name}\": {problem}"
            )]
        );
    }
}
