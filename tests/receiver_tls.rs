//! TLS on the OTLP receivers: OTLP/gRPC and OTLP/HTTP over TLS reach the
//! backend, plain text on a TLS port is refused, mTLS refuses a client
//! without a certificate, a rotated certificate is served without a
//! restart, a silent client is closed, and an unusable key stops the start.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulConnection;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use otlp_gateway::config;
use otlp_gateway::model::Signal;
use otlp_gateway::receiver::config::GrpcConfig;
use otlp_gateway::receiver::server::{self, Connect, ConnectionState, Listener};
use otlp_gateway::receiver::tls::{subject_cn, ServerTlsConfig, ALPN_GRPC};
use otlp_gateway::receiver::PeerIdentity;
use otlp_gateway::settings::units::HumanDuration;
use otlp_gateway::telemetry::metrics_handle;
use otlp_gateway::testkit;
use otlp_gateway::topology::Gateway;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use support::fake_otlp::FakeOtlp;
use support::gateway;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// How long any wait on the gateway may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client
/// certificate (CN `acme-prod`), written to a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "receiver-tls test CA");
        let ca_pem = ca_params
            .self_signed(&ca_key)
            .expect("CA certificate")
            .pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write CA");
        let (client_cert, client_key) = leaf(&issuer, "acme-prod", &[]);
        let pki = Pki {
            dir,
            issuer,
            ca_pem,
            client_cert,
            client_key,
        };
        pki.write_server_cert("gateway-1");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a new server certificate and key (subject CN `cn`), each through a rename as
    /// certificate rotation tools do, key first.
    fn write_server_cert(&self, cn: &str) {
        let (cert, key) = leaf(&self.issuer, cn, &["127.0.0.1", "localhost"]);
        replace(&self.path("server.key"), &key);
        replace(&self.path("server.pem"), &cert);
    }

    /// The `tls` table lines of a receiver.
    fn tls_table(&self, protocol: &str, mtls: bool, reload_interval: &str) -> String {
        let client_ca = if mtls {
            format!("client_ca_file = \"{}\"\n", self.path("ca.pem").display())
        } else {
            String::new()
        };
        format!(
            "[receivers.otlp.{protocol}.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             reload_interval = \"{reload_interval}\"\n{client_ca}",
            self.path("server.pem").display(),
            self.path("server.key").display(),
        )
    }

    /// A rustls client trusting the test CA, offering `alpn`, with the client certificate
    /// when `with_cert`.
    fn client_config(&self, with_cert: bool, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certs(&self.ca_pem) {
            roots.add(cert).expect("CA certificate");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
        let mut config = if with_cert {
            let key = rustls_pemfile::private_key(&mut self.client_key.as_bytes())
                .expect("client key PEM")
                .expect("a client key");
            builder
                .with_client_auth_cert(pem_certs(&self.client_cert), key)
                .expect("client certificate")
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A tonic TLS config trusting the test CA, with the client certificate when `with_cert`.
    fn tonic_tls(&self, with_cert: bool) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if with_cert {
            tls.identity(Identity::from_pem(&self.client_cert, &self.client_key))
        } else {
            tls
        }
    }
}

fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let names = names
        .iter()
        .map(|name| (*name).to_owned())
        .collect::<Vec<_>>();
    let mut params = CertificateParams::new(names).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A gateway sending traces to `fake`, with `tls` lines appended to the config.
async fn start(fake: &FakeOtlp, tls: &str) -> Gateway {
    gateway::start(&format!(
        "{}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n{tls}",
        gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1000)
    ))
    .await
}

/// One OTLP/gRPC export of `spans` spans over TLS; the error text on failure.
async fn grpc_export(addr: SocketAddr, tls: ClientTlsConfig, spans: usize) -> Result<(), String> {
    grpc_export_with(addr, tls, &[], spans)
        .await
        .map_err(|status| format!("export: {status:?}"))
}

/// [`grpc_export`] with request `metadata`; the gRPC status on failure.
async fn grpc_export_with(
    addr: SocketAddr,
    tls: ClientTlsConfig,
    metadata: &[(&'static str, &str)],
    spans: usize,
) -> Result<(), tonic::Status> {
    let channel = Channel::from_shared(format!("https://{addr}"))
        .map_err(|e| tonic::Status::unknown(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| tonic::Status::unknown(e.to_string()))?
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .map_err(|e| tonic::Status::unknown(format!("connect: {e:?}")))?;
    let mut request = tonic::Request::new(testkit::trace_request(7, spans));
    for (name, value) in metadata {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("metadata value"));
    }
    TraceServiceClient::new(channel)
        .export(request)
        .await
        .map(drop)
}

/// One OTLP/HTTP protobuf export of `spans` spans over TLS with `client`; the status and
/// HTTP version of the answer.
async fn http_export(
    client: rustls::ClientConfig,
    http1_only: bool,
    addr: SocketAddr,
    spans: usize,
) -> Result<(StatusCode, Version), String> {
    http_export_with(client, http1_only, addr, &[], spans).await
}

/// [`http_export`] with request `headers`.
async fn http_export_with(
    client: rustls::ClientConfig,
    http1_only: bool,
    addr: SocketAddr,
    headers: &[(&'static str, &str)],
    spans: usize,
) -> Result<(StatusCode, Version), String> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client)
        .https_only();
    let connector = if http1_only {
        builder.enable_http1().build()
    } else {
        builder.enable_all_versions().build()
    };
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("https://localhost:{}/v1/traces", addr.port()))
        .header("content-type", "application/x-protobuf");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(testkit::encoded_traces(8, spans)))
        .expect("request");
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let (status, version) = (response.status(), response.version());
    tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .map_err(|_| "no body in time".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok((status, version))
}

/// The subject CN of the certificate the TLS listener at `addr` serves now.
async fn served_cn(pki: &Pki, addr: SocketAddr) -> String {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(false, &[b"h2"])));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    subject_cn(&chain[0]).expect("a subject CN").to_string()
}

/// The value of one counter series in the shared recorder (0 when absent).
fn counter(series: &str) -> f64 {
    metrics_handle()
        .render()
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Waits until `series` is above `before`.
async fn counter_rises(series: &str, before: f64) {
    let deadline = Instant::now() + WAIT;
    while counter(series) <= before {
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {before} for {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const GRPC_HANDSHAKE_FAILED: &str =
    "otlp_gateway_receiver_connections_closed_total{transport=\"grpc\",reason=\"tls_handshake\"}";
const HTTP_HANDSHAKE_FAILED: &str =
    "otlp_gateway_receiver_connections_closed_total{transport=\"http\",reason=\"tls_handshake\"}";

#[tokio::test]
async fn otlp_grpc_and_http_over_tls_reach_the_backend() {
    let pki = Pki::new();
    let fake = FakeOtlp::start().await;
    let gw = start(
        &fake,
        &format!(
            "{}{}",
            pki.tls_table("grpc", false, "1m"),
            pki.tls_table("http", false, "1m")
        ),
    )
    .await;

    grpc_export(gw.grpc_addr().unwrap(), pki.tonic_tls(false), 3)
        .await
        .expect("gRPC export over TLS");
    fake.wait_for_items(Signal::Traces, 3).await;

    // ALPN: h2 when offered, HTTP/1.1 otherwise.
    let http = gw.http_addr().unwrap();
    let h2 = http_export(pki.client_config(false, &[]), false, http, 4).await;
    assert_eq!(h2, Ok((StatusCode::OK, Version::HTTP_2)));
    let h1 = http_export(pki.client_config(false, &[]), true, http, 5).await;
    assert_eq!(h1, Ok((StatusCode::OK, Version::HTTP_11)));
    fake.wait_for_items(Signal::Traces, 3 + 4 + 5).await;
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn plain_text_on_a_tls_port_is_refused_and_counted() {
    let pki = Pki::new();
    let fake = FakeOtlp::start().await;
    let gw = start(
        &fake,
        &format!(
            "{}{}",
            pki.tls_table("grpc", false, "1m"),
            pki.tls_table("http", false, "1m")
        ),
    )
    .await;
    let grpc_before = counter(GRPC_HANDSHAKE_FAILED);
    let http_before = counter(HTTP_HANDSHAKE_FAILED);

    let plain_grpc = async {
        let mut client = TraceServiceClient::connect(gateway::grpc_url(&gw)).await?;
        client.export(testkit::trace_request(1, 1)).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let result = tokio::time::timeout(WAIT, plain_grpc)
        .await
        .expect("plain gRPC answered in time");
    assert!(result.is_err(), "plain-text gRPC on a TLS port must fail");

    let plain_http = reqwest::Client::new()
        .post(format!("{}/v1/traces", gateway::http_base(&gw)))
        .header("content-type", "application/x-protobuf")
        .body(testkit::encoded_traces(1, 1))
        .timeout(WAIT)
        .send()
        .await;
    assert!(
        plain_http.is_err(),
        "plain-text HTTP on a TLS port must fail: {plain_http:?}"
    );

    counter_rises(GRPC_HANDSHAKE_FAILED, grpc_before).await;
    counter_rises(HTTP_HANDSHAKE_FAILED, http_before).await;
    assert_eq!(fake.accepted_items(Signal::Traces), 0);
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let fake = FakeOtlp::start().await;
    let gw = start(
        &fake,
        &format!(
            "{}{}",
            pki.tls_table("grpc", true, "1m"),
            pki.tls_table("http", true, "1m")
        ),
    )
    .await;
    let (grpc, http) = (gw.grpc_addr().unwrap(), gw.http_addr().unwrap());

    let refused = grpc_export(grpc, pki.tonic_tls(false), 1).await;
    assert!(refused.is_err(), "gRPC without a client certificate");
    let refused = http_export(pki.client_config(false, &[]), false, http, 1).await;
    assert!(refused.is_err(), "HTTP without a client certificate");
    assert_eq!(fake.accepted_items(Signal::Traces), 0);

    grpc_export(grpc, pki.tonic_tls(true), 2)
        .await
        .expect("gRPC with the client certificate");
    let accepted = http_export(pki.client_config(true, &[]), false, http, 3).await;
    assert_eq!(accepted, Ok((StatusCode::OK, Version::HTTP_2)));
    fake.wait_for_items(Signal::Traces, 5).await;
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let fake = FakeOtlp::start().await;
    let gw = start(&fake, &pki.tls_table("grpc", false, "100ms")).await;
    let addr = gw.grpc_addr().unwrap();
    assert_eq!(served_cn(&pki, addr).await, "gateway-1");

    pki.write_server_cert("gateway-2");
    let deadline = Instant::now() + WAIT;
    loop {
        let cn = served_cn(&pki, addr).await;
        if cn == "gateway-2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {cn} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    grpc_export(addr, pki.tonic_tls(false), 2)
        .await
        .expect("export with the new certificate");

    // A broken key is counted and the certificate in use stays.
    let errors = "otlp_gateway_receiver_tls_reload_errors_total{transport=\"grpc\"}";
    let before = counter(errors);
    replace(&pki.path("server.key"), "not a key");
    counter_rises(errors, before).await;
    assert_eq!(served_cn(&pki, addr).await, "gateway-2");
    grpc_export(addr, pki.tonic_tls(false), 1)
        .await
        .expect("export after a failed reload");
    fake.wait_for_items(Signal::Traces, 3).await;
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_closed() {
    let pki = Pki::new();
    let text = format!(
        "[admin]\nendpoint = \"127.0.0.1:0\"\n[receivers.otlp.http]\nendpoint = \"127.0.0.1:0\"\n\
         read_header_timeout = \"300ms\"\n{}\
         [exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n",
        pki.tls_table("http", false, "1m")
    );
    let (config, _) = config::load_and_validate_str(&text, "test.toml")
        .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
    let gw = Gateway::start(&config).await.expect("starts");
    let mut silent = TcpStream::connect(gw.http_addr().unwrap()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        match tokio::time::timeout_at(started + WAIT, silent.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    assert!(closed, "a silent client on a TLS port was not closed");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before read_header_timeout: {:?}",
        started.elapsed()
    );
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn an_unusable_key_file_stops_the_start_naming_the_file() {
    let pki = Pki::new();
    std::fs::write(pki.path("server.key"), "-----BEGIN NOTHING-----\n").unwrap();
    let text = gateway::config_text(&format!(
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n{}",
        pki.tls_table("grpc", false, "1m")
    ));
    let (config, _) = config::load_and_validate_str(&text, "test.toml")
        .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
    let error = Gateway::start(&config).await.expect_err("start must fail");
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let key_file = pki.path("server.key").display().to_string();
    assert!(chain.contains(&key_file), "{chain}");
    assert!(chain.contains("key_file"), "{chain}");
}

#[test]
fn check_config_names_a_missing_certificate_with_its_key() {
    let text = gateway::config_text(
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n\
         [receivers.otlp.http.tls]\ncert_file = \"/nonexistent/server.pem\"\nkey_file = \"/nonexistent/server.key\"\n",
    );
    let errors = config::load_and_validate_str(&text, "test.toml")
        .expect_err("missing files")
        .to_string();
    assert!(
        errors.contains("receivers.otlp.http.tls.cert_file")
            && errors.contains("/nonexistent/server.pem"),
        "{errors}"
    );
    assert!(
        errors.contains("receivers.otlp.http.tls.key_file"),
        "{errors}"
    );
}

/// Answers every request with the subject CN of the [`PeerIdentity`] in its
/// extensions (empty without one), put there as the receivers do.
struct EchoPeer;

impl Connect for EchoPeer {
    fn connect<I>(
        &self,
        io: TokioIo<I>,
        state: Arc<ConnectionState>,
        peer: Option<PeerIdentity>,
    ) -> impl GracefulConnection<Error: std::fmt::Display + Send> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
            io,
            service_fn(move |mut request: Request<Incoming>| {
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(peer.clone());
                }
                let in_flight = state.request_started();
                let cn = request
                    .extensions()
                    .get::<PeerIdentity>()
                    .map(|peer| peer.subject_cn.to_string())
                    .unwrap_or_default();
                async move {
                    drop(in_flight);
                    Ok::<_, Infallible>(http::Response::new(Full::new(bytes::Bytes::from(cn))))
                }
            }),
        )
    }
}

#[tokio::test]
async fn the_verified_client_cn_reaches_the_request() {
    let pki = Pki::new();
    let settings = ServerTlsConfig {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("server.key"),
        client_ca_file: Some(pki.path("ca.pem")),
        reload_interval: HumanDuration::from_secs(60),
    };
    let limits = GrpcConfig::default().connection_limits();
    let listener = Listener::bind("grpc", "127.0.0.1:0", limits, Some(&settings), ALPN_GRPC)
        .await
        .expect("bind");
    let addr = listener.local_addr;
    let stop = CancellationToken::new();
    let served = tokio::spawn(server::serve(
        listener,
        "grpc",
        stop.clone().into(),
        EchoPeer,
    ));

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config(true, &[]))
        .https_only()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    let request = Request::builder()
        .uri(format!("https://localhost:{}/", addr.port()))
        .body(Full::new(bytes::Bytes::new()))
        .expect("request");
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("answer in time")
        .expect("answer");
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    assert_eq!(body.as_ref(), b"acme-prod");

    stop.cancel();
    tokio::time::timeout(WAIT, served)
        .await
        .expect("stops in time")
        .expect("serve task");
}

// --- tenants over TLS ---

/// The SDK's `HttpClient` on hyper and rustls with the test CA: the SDK's
/// built-in clients cannot be given a custom CA here.
#[derive(Debug, Clone)]
struct TlsHttpClient {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<bytes::Bytes>,
    >,
}

impl TlsHttpClient {
    fn new(tls: rustls::ClientConfig) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        TlsHttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for TlsHttpClient {
    async fn send_bytes(
        &self,
        request: Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = tokio::time::timeout(
            WAIT,
            self.client
                .request(Request::from_parts(parts, Full::new(body))),
        )
        .await??;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect())
            .await??
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}

const ACME_TOKEN: &str = "acme-token-over-tls-0123456789";
const GLOBEX_TOKEN: &str = "globex-token-over-tls-0123456789";

/// A gateway with TLS on both receivers (`mtls`: client certificates
/// required), authentication by a tokens file and by the client certificate
/// `acme-prod`, and an exporter that sends each batch's tenant as `X-Scope-OrgID`.
async fn start_tenanted(pki: &Pki, fake: &FakeOtlp, mtls: bool) -> Gateway {
    let tokens = pki.path("tokens");
    std::fs::write(
        &tokens,
        format!("acme {ACME_TOKEN}\nglobex {GLOBEX_TOKEN}\n"),
    )
    .expect("tokens file");
    let exporter = gateway::otlp_exporter(&fake.grpc_url(), "grpc", 1000).replacen(
        "compression = \"none\"\n",
        "compression = \"none\"\ntenant_header = \"X-Scope-OrgID\"\n",
        1,
    );
    gateway::start(&format!(
        "{exporter}\n[pipelines.traces]\nexporters = [\"otlp/down\"]\n{}{}\
         [tenancy]\n[tenancy.auth]\ntokens_file = \"{}\"\n\
         [tenants.acme]\nclient_subjects = [\"acme-prod\"]\n[tenants.globex]\n",
        pki.tls_table("grpc", mtls, "1m"),
        pki.tls_table("http", mtls, "1m"),
        tokens.display(),
    ))
    .await
}

/// The `X-Scope-OrgID` of every accepted request, one per span.
fn tenants_of(fake: &FakeOtlp) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| r.accepted())
        .flat_map(|r| {
            let tenant = r.header("x-scope-orgid").unwrap_or("").to_owned();
            std::iter::repeat_n(tenant, r.payload.items() as usize)
        })
        .collect()
}

#[tokio::test]
async fn tenant_authentication_over_tls_answers_as_over_plain_text() {
    let pki = Pki::new();
    let fake = FakeOtlp::start().await;
    let gw = start_tenanted(&pki, &fake, false).await;
    let (grpc, http) = (gw.grpc_addr().unwrap(), gw.http_addr().unwrap());
    let acme = format!("Bearer {ACME_TOKEN}");

    let code = |r: Result<(), tonic::Status>| r.err().map_or(tonic::Code::Ok, |s| s.code());
    assert_eq!(
        code(grpc_export_with(grpc, pki.tonic_tls(false), &[], 1).await),
        tonic::Code::Unauthenticated
    );
    let wrong = [("authorization", "Bearer not-anybody-s-token-at-all")];
    assert_eq!(
        code(grpc_export_with(grpc, pki.tonic_tls(false), &wrong, 1).await),
        tonic::Code::Unauthenticated
    );
    let spoof = [("authorization", acme.as_str()), ("x-tenant-id", "globex")];
    assert_eq!(
        code(grpc_export_with(grpc, pki.tonic_tls(false), &spoof, 1).await),
        tonic::Code::PermissionDenied
    );
    let own = [("authorization", acme.as_str())];
    assert_eq!(
        code(grpc_export_with(grpc, pki.tonic_tls(false), &own, 2).await),
        tonic::Code::Ok
    );

    let status = |r: Result<(StatusCode, Version), String>| r.expect("answer").0;
    let client = || pki.client_config(false, &[]);
    assert_eq!(
        status(http_export_with(client(), false, http, &[], 1).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(http_export_with(client(), true, http, &wrong, 1).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(http_export_with(client(), false, http, &spoof, 1).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(http_export_with(client(), true, http, &own, 3).await),
        StatusCode::OK
    );

    // The OpenTelemetry SDK's gRPC exporter over TLS, with and without the token.
    let sdk = |token: Option<&str>| {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(token) = token {
            metadata.insert(
                "authorization",
                format!("Bearer {token}").parse().expect("metadata"),
            );
        }
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("https://localhost:{}", grpc.port()))
            .with_tls_config(pki.tonic_tls(false))
            .with_metadata(metadata)
            .build()
            .expect("SDK exporter")
    };
    let span = |i: u64| opentelemetry_sdk::trace::SpanData {
        span_context: opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes((u128::from(i) + 1).to_be_bytes()),
            opentelemetry::trace::SpanId::from_bytes((i + 1).to_be_bytes()),
            opentelemetry::trace::TraceFlags::SAMPLED,
            false,
            Default::default(),
        ),
        parent_span_id: opentelemetry::trace::SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: opentelemetry::trace::SpanKind::Internal,
        name: "over tls".into(),
        start_time: std::time::SystemTime::now(),
        end_time: std::time::SystemTime::now(),
        attributes: vec![],
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: opentelemetry::trace::Status::Unset,
        instrumentation_scope: Default::default(),
    };
    use opentelemetry_sdk::trace::SpanExporter as _;
    sdk(Some(GLOBEX_TOKEN))
        .export(vec![span(1), span(2), span(3), span(4)])
        .await
        .expect("the SDK with globex's token is accepted over TLS");
    assert!(
        sdk(None).export(vec![span(5)]).await.is_err(),
        "the SDK without a token is refused over TLS"
    );

    // The SDK's HTTP/protobuf exporter over TLS (through an `HttpClient` that trusts the test CA).
    let sdk_http = |token: Option<&str>| {
        let mut headers = std::collections::HashMap::new();
        if let Some(token) = token {
            headers.insert("authorization".to_owned(), format!("Bearer {token}"));
        }
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("https://localhost:{}/v1/traces", http.port()))
            .with_headers(headers)
            .with_http_client(TlsHttpClient::new(pki.client_config(false, &[])))
            .build()
            .expect("SDK exporter")
    };
    sdk_http(Some(GLOBEX_TOKEN))
        .export(vec![span(6), span(7)])
        .await
        .expect("the SDK over HTTPS with globex's token is accepted");
    assert!(
        sdk_http(None).export(vec![span(8)]).await.is_err(),
        "the SDK over HTTPS without a token is refused"
    );
    assert!(
        sdk_http(Some("not-anybody-s-token-at-all"))
            .export(vec![span(9)])
            .await
            .is_err(),
        "the SDK over HTTPS with an unknown token is refused"
    );

    fake.wait_for_items(Signal::Traces, 2 + 3 + 4 + 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tenants = tenants_of(&fake);
    tenants.sort();
    let expected: Vec<String> = std::iter::repeat_n("acme".to_owned(), 5)
        .chain(std::iter::repeat_n("globex".to_owned(), 6))
        .collect();
    assert_eq!(tenants, expected);
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn a_client_certificate_subject_is_its_tenant() {
    let pki = Pki::new();
    let fake = FakeOtlp::start().await;
    let gw = start_tenanted(&pki, &fake, true).await;
    let (grpc, http) = (gw.grpc_addr().unwrap(), gw.http_addr().unwrap());

    // The certificate alone authenticates acme-prod as tenant acme.
    grpc_export_with(grpc, pki.tonic_tls(true), &[], 2)
        .await
        .expect("certificate is a credential");
    let answer = http_export_with(pki.client_config(true, &[]), false, http, &[], 3).await;
    assert_eq!(answer.expect("answer").0, StatusCode::OK);

    // Labelling its data as another tenant, or adding another tenant's token, is denied.
    let spoof = [("x-tenant-id", "globex")];
    let denied = grpc_export_with(grpc, pki.tonic_tls(true), &spoof, 1).await;
    assert_eq!(
        denied.err().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    let globex = format!("Bearer {GLOBEX_TOKEN}");
    let two = [("authorization", globex.as_str())];
    let answer = http_export_with(pki.client_config(true, &[]), false, http, &two, 1).await;
    assert_eq!(answer.expect("answer").0, StatusCode::FORBIDDEN);

    fake.wait_for_items(Signal::Traces, 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(tenants_of(&fake), vec!["acme".to_owned(); 5]);
    assert!(gw.shutdown().await);
}
