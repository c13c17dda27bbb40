//! The semantic pass: every problem in a parsed [`Config`], each naming its key path.
//!
//! Like the Collector's `confmap` validation, the pass never stops at the first problem. Each
//! config struct checks its own fields through [`Validate`]; checks that need the whole tree
//! (two listeners on one address, pipelines naming exporters, unused exporters) live in
//! [`check`]. Lines are filled in afterwards by the loader, which has the text.

use std::net::SocketAddr;

use super::{Config, EXPORTER_KINDS};
use crate::batch::config::BatchConfig;
use crate::model::Signal;
use crate::receiver::config::{ConnectionLimits, GrpcConfig, HttpConfig, OtlpReceiverConfig};
use crate::receiver::tls::ServerTlsConfig;
use crate::settings::error::ConfigError;
pub use crate::settings::validate::Validate;
use crate::settings::validate::{file_problem, join, push, GREATER_THAN_ZERO};
use crate::telemetry::config::{AdminConfig, LogsConfig, ServiceConfig};

/// What the semantic pass found. Lines are not set yet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// The config must not be used.
    pub errors: Vec<ConfigError>,
    /// Legal but probably not meant (an exporter no pipeline uses).
    pub warnings: Vec<ConfigError>,
}

/// Runs every check on `config`: each section's [`Validate`], then the cross-references.
pub fn check(config: &Config) -> Findings {
    let mut errors = Vec::new();
    config.validate("", &mut errors);
    Findings {
        errors,
        warnings: warnings(config),
    }
}

impl Validate for Config {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        self.service.validate(&join(path, "service"), errors);
        self.admin.validate(&join(path, "admin"), errors);
        self.storage.validate(&join(path, "storage"), errors);
        self.receivers
            .otlp
            .validate(&join(path, "receivers.otlp"), errors);
        listeners_are_distinct(self, path, errors);
        self.processors
            .batch
            .validate(&join(path, "processors.batch"), errors);
        if let Some(redaction) = &self.processors.redaction {
            redaction.validate(&join(path, "processors.redaction"), errors);
        }
        if let Some(sampling) = &self.processors.tail_sampling {
            let sampling_path = join(path, "processors.tail_sampling");
            sampling.validate(&sampling_path, errors);
            if self.pipelines.traces.is_none() {
                errors.push(ConfigError::new(
                    sampling_path,
                    "tail sampling needs a traces pipeline ([pipelines.traces])",
                ));
            }
        }
        if let Some(spanmetrics) = &self.connectors.spanmetrics {
            let connector_path = join(path, "connectors.spanmetrics");
            spanmetrics.validate(&connector_path, errors);
            if self.pipelines.traces.is_none() || self.pipelines.metrics.is_none() {
                errors.push(ConfigError::new(
                    connector_path,
                    "span metrics need a traces pipeline to read ([pipelines.traces]) \
                     and a metrics pipeline to feed ([pipelines.metrics])",
                ));
            }
        }
        for exporter in self.exporters.iter() {
            let exporter_path = join(path, &exporter.path());
            if !is_exporter_name(exporter.name) {
                errors.push(ConfigError::new(
                    &exporter_path,
                    format!(
                        "invalid exporter name \"{}\": use letters, digits, '_' and '-'",
                        exporter.name
                    ),
                ));
            }
            exporter.config.validate(&exporter_path, errors);
        }
        pipelines_are_wired(self, path, errors);
        tenancy_is_wired(self, path, errors);
    }
}

/// `[tenancy]`, `[tenants]` and `[[routes]]`: their own checks, and routes naming defined exporters.
fn tenancy_is_wired(config: &Config, path: &str, errors: &mut Vec<ConfigError>) {
    for exporter in config.exporters.iter().filter(|e| e.config.per_tenant()) {
        let rejecting = config
            .tenancy
            .as_ref()
            .is_some_and(|t| t.unknown_tenants == crate::tenancy::config::UnknownTenants::Reject);
        if !rejecting || config.tenants.is_empty() {
            errors.push(ConfigError::new(
                join(path, &format!("{}.endpoint", exporter.path())),
                "an endpoint with {tenant} is built once per tenant listed under [tenants]: \
                 it needs [tenancy] with unknown_tenants = \"reject\" and at least one tenant",
            ));
        }
    }
    let Some(tenancy) = &config.tenancy else {
        if !config.tenants.is_empty() {
            errors.push(ConfigError::new(
                join(path, "tenants"),
                "tenants need a [tenancy] table",
            ));
        }
        if !config.routes.is_empty() {
            errors.push(ConfigError::new(
                join(path, "routes"),
                "routes need a [tenancy] table",
            ));
        }
        return;
    };
    crate::tenancy::config::TenancySection {
        tenancy,
        tenants: &config.tenants,
        routes: &config.routes,
    }
    .validate(path, errors);
    for (i, route) in config.routes.iter().enumerate() {
        let route_path = join(path, &format!("routes[{i}]"));
        let lists = [
            ("exporters", Some(&route.exporters)),
            ("traces", route.traces.as_ref()),
            ("metrics", route.metrics.as_ref()),
            ("logs", route.logs.as_ref()),
        ];
        for (key, ids) in lists {
            for (j, id) in ids.into_iter().flatten().enumerate() {
                if config.exporter(id).is_none() {
                    errors.push(ConfigError::new(
                        format!("{route_path}.{key}[{j}]"),
                        format!(
                            "unknown exporter \"{id}\"; defined: {}",
                            config.exporter_ids().join(", ")
                        ),
                    ));
                }
            }
        }
    }
}

impl Validate for ServiceConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        self.logs.validate(&join(path, "logs"), errors);
    }
}

impl Validate for LogsConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if let Err(error) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            push(
                errors,
                path,
                "level",
                format!("invalid log filter \"{}\": {error}", self.level),
            );
        }
    }
}

impl Validate for AdminConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        listen_address(&self.endpoint, &join(path, "endpoint"), errors);
        let water = self.ready_queue_high_water;
        // Written so that NaN fails too.
        if !(water > 0.0 && water <= 1.0) {
            push(
                errors,
                path,
                "ready_queue_high_water",
                format!("must be greater than 0 and at most 1, got {water}"),
            );
        }
    }
}

impl Validate for OtlpReceiverConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.grpc.is_none() && self.http.is_none() {
            errors.push(ConfigError::new(
                path,
                "no protocol enabled; add [receivers.otlp.grpc] and/or [receivers.otlp.http]",
            ));
        }
        if self.max_inflight_bytes.get() == 0 {
            push(errors, path, "max_inflight_bytes", GREATER_THAN_ZERO);
        }
        // One request may hold its body as received plus decompressed; a lone
        // request must always fit, or it could never be accepted.
        let largest = [
            self.grpc
                .as_ref()
                .map(|g| (g.max_request_bytes, g.max_decompressed_bytes)),
            self.http
                .as_ref()
                .map(|h| (h.max_request_bytes, h.max_decompressed_bytes)),
        ]
        .into_iter()
        .flatten()
        .map(|(received, decompressed)| received.get().saturating_add(decompressed.get()))
        .max()
        .unwrap_or(0);
        if self.max_inflight_bytes.get() > 0 && self.max_inflight_bytes.get() < largest {
            push(
                errors,
                path,
                "max_inflight_bytes",
                format!(
                    "must be at least max_request_bytes + max_decompressed_bytes ({largest} bytes), \
                     so that one request of the largest size fits"
                ),
            );
        }
        if let Some(grpc) = &self.grpc {
            grpc.validate(&join(path, "grpc"), errors);
        }
        if let Some(http) = &self.http {
            http.validate(&join(path, "http"), errors);
        }
    }
}

impl Validate for GrpcConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        listener(
            &self.endpoint,
            (self.max_request_bytes, self.max_decompressed_bytes),
            &self.connection_limits(),
            path,
            errors,
        );
        if let Some(tls) = &self.tls {
            tls.validate(&join(path, "tls"), errors);
        }
    }
}

impl Validate for HttpConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        listener(
            &self.endpoint,
            (self.max_request_bytes, self.max_decompressed_bytes),
            &self.connection_limits(),
            path,
            errors,
        );
        if let Some(tls) = &self.tls {
            tls.validate(&join(path, "tls"), errors);
        }
    }
}

impl Validate for ServerTlsConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let files = [
            ("cert_file", Some(&self.cert_file)),
            ("key_file", Some(&self.key_file)),
            ("client_ca_file", self.client_ca_file.as_ref()),
        ];
        for (key, file) in files {
            let Some(file) = file else { continue };
            if let Some(problem) = file_problem(file) {
                push(
                    errors,
                    path,
                    key,
                    format!("{problem}: \"{}\"", file.display()),
                );
            }
        }
    }
}

/// The checks both receiver protocols share: address, sizes, limits.
fn listener(
    endpoint: &str,
    (max_request, max_decompressed): (super::ByteSize, super::ByteSize),
    limits: &ConnectionLimits,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    listen_address(endpoint, &join(path, "endpoint"), errors);
    request_sizes(max_request.get(), max_decompressed.get(), path, errors);
    if limits.max_concurrent_streams == 0 {
        push(errors, path, "max_concurrent_streams", GREATER_THAN_ZERO);
    }
    if limits.max_connections == 0 {
        push(errors, path, "max_connections", GREATER_THAN_ZERO);
    }
    for (key, value) in [
        ("read_header_timeout", limits.read_header_timeout),
        ("read_timeout", limits.read_timeout),
        ("idle_timeout", limits.idle_timeout),
        ("keepalive_timeout", limits.keepalive_timeout),
    ] {
        if value.is_zero() {
            push(errors, path, key, GREATER_THAN_ZERO);
        }
    }
}

fn request_sizes(request: u64, decompressed: u64, path: &str, errors: &mut Vec<ConfigError>) {
    if request == 0 {
        push(errors, path, "max_request_bytes", GREATER_THAN_ZERO);
    }
    if decompressed < request {
        push(
            errors,
            path,
            "max_decompressed_bytes",
            format!(
                "must be at least max_request_bytes ({})",
                super::ByteSize(request)
            ),
        );
    }
}

/// A listen address must be `IP:port`; names are not resolved.
fn listen_address(endpoint: &str, path: &str, errors: &mut Vec<ConfigError>) -> Option<SocketAddr> {
    match endpoint.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(ConfigError::new(
                path,
                format!(
                    "invalid listen address \"{endpoint}\": expected IP:port, e.g. \"0.0.0.0:4317\""
                ),
            ));
            None
        }
    }
}

/// No two of the gRPC, HTTP and admin listeners may bind the same port on overlapping
/// addresses (`0.0.0.0` overlaps every address). Port 0 (any free port) never clashes.
fn listeners_are_distinct(config: &Config, path: &str, errors: &mut Vec<ConfigError>) {
    let otlp = &config.receivers.otlp;
    let mut listeners: Vec<(String, &str)> = Vec::new();
    if let Some(grpc) = &otlp.grpc {
        listeners.push((join(path, "receivers.otlp.grpc.endpoint"), &grpc.endpoint));
    }
    if let Some(http) = &otlp.http {
        listeners.push((join(path, "receivers.otlp.http.endpoint"), &http.endpoint));
    }
    listeners.push((join(path, "admin.endpoint"), &config.admin.endpoint));

    let mut seen: Vec<(&str, SocketAddr)> = Vec::new();
    for (key, endpoint) in &listeners {
        // Bad addresses are reported by the section itself.
        let Ok(addr) = endpoint.parse::<SocketAddr>() else {
            continue;
        };
        if addr.port() != 0 {
            let clash = seen.iter().find(|(_, other)| {
                other.port() == addr.port()
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            });
            if let Some((other_key, _)) = clash {
                errors.push(ConfigError::new(
                    key,
                    format!("address {addr} is already used by {other_key}"),
                ));
            }
        }
        seen.push((key, addr));
    }
}

impl Validate for BatchConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.send_batch_size == 0 {
            push(errors, path, "send_batch_size", GREATER_THAN_ZERO);
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            push(
                errors,
                path,
                "send_batch_max_size",
                format!(
                    "must be 0 (no limit) or at least send_batch_size ({})",
                    self.send_batch_size
                ),
            );
        }
        if self.timeout.get().is_zero() {
            push(errors, path, "timeout", GREATER_THAN_ZERO);
        }
    }
}

/// Every signal's pipeline names at least one exporter, each defined once; at least one pipeline.
fn pipelines_are_wired(config: &Config, path: &str, errors: &mut Vec<ConfigError>) {
    let pipelines_path = join(path, "pipelines");
    if Signal::ALL
        .iter()
        .all(|&signal| config.pipelines.get(signal).is_none())
    {
        errors.push(ConfigError::new(
            &pipelines_path,
            "no pipeline defined; add [pipelines.traces], [pipelines.metrics] and/or [pipelines.logs]",
        ));
        return;
    }
    let defined = config.exporter_ids();
    for signal in Signal::ALL {
        let Some(pipeline) = config.pipelines.get(signal) else {
            continue;
        };
        let pipeline_path = join(&pipelines_path, signal.as_str());
        if pipeline.exporters.is_empty() {
            errors.push(ConfigError::new(
                format!("{pipeline_path}.exporters"),
                "must name at least one exporter",
            ));
        }
        for (i, id) in pipeline.exporters.iter().enumerate() {
            let message = match id.split_once('/') {
                _ if pipeline.exporters[..i].contains(id) => {
                    format!("exporter \"{id}\" is listed twice")
                }
                _ if config.exporter(id).is_some() => continue,
                Some((kind, _)) if !EXPORTER_KINDS.contains(&kind) => format!(
                    "unknown exporter kind \"{kind}\" in \"{id}\"; kinds are {}",
                    EXPORTER_KINDS.join(", ")
                ),
                Some(_) if defined.is_empty() => {
                    format!("unknown exporter \"{id}\"; no exporter is defined")
                }
                Some(_) => format!(
                    "unknown exporter \"{id}\"; defined: {}",
                    defined.join(", ")
                ),
                None => format!(
                    "invalid exporter id \"{id}\": expected \"<kind>/<name>\", e.g. \"debug/console\""
                ),
            };
            errors.push(ConfigError::new(
                format!("{pipeline_path}.exporters[{i}]"),
                message,
            ));
        }
    }
}

/// Legal configs that are probably mistakes.
fn warnings(config: &Config) -> Vec<ConfigError> {
    let mut warnings = Vec::new();
    for exporter in config.exporters.iter() {
        let id = exporter.id();
        let path = exporter.path();
        let used = Signal::ALL
            .iter()
            .any(|&signal| config.signal_exporters(signal).contains(&id));
        if !used {
            warnings.push(ConfigError::new(&path, "not used by any pipeline"));
        }
        exporter.config.warnings(&path, &mut warnings);
    }
    warnings
}

/// Exporter names become ids (`otlp/jaeger`), metric labels and key paths: keep them plain.
fn is_exporter_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(toml: &str) -> Vec<String> {
        let config: Config = toml::from_str(toml).unwrap();
        check(&config)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const MINIMAL: &str =
        "[exporters.debug.console]\n[pipelines.traces]\nexporters = [\"debug/console\"]\n";

    #[test]
    fn receiver_tls_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "x").unwrap();
        let text = format!(
            "{MINIMAL}[receivers.otlp.grpc]\nendpoint = \"127.0.0.1:0\"\n\
             [receivers.otlp.grpc.tls]\ncert_file = \"{}\"\nkey_file = \"/nonexistent/key.pem\"\n\
             client_ca_file = \"{}\"\n",
            cert.display(),
            dir.path().display()
        );
        assert_eq!(
            errors(&text),
            [
                "receivers.otlp.grpc.tls.key_file: file not found: \"/nonexistent/key.pem\""
                    .to_owned(),
                format!(
                    "receivers.otlp.grpc.tls.client_ca_file: not a file: \"{}\"",
                    dir.path().display()
                ),
            ]
        );
    }

    #[test]
    fn inflight_budget_must_hold_one_largest_request() {
        let mut config = crate::config::ReceiversConfig::default().otlp;
        config.max_inflight_bytes = crate::config::ByteSize::mib(16);
        let mut errors = Vec::new();
        config.validate("receivers.otlp", &mut errors);
        let messages: Vec<_> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![format!(
                "receivers.otlp.max_inflight_bytes: must be at least max_request_bytes + \
                 max_decompressed_bytes ({} bytes), so that one request of the largest size fits",
                72 * 1024 * 1024
            )]
        );
    }

    #[test]
    fn minimal_config_is_valid() {
        let config: Config = toml::from_str(MINIMAL).unwrap();
        assert_eq!(check(&config), Findings::default());
    }

    #[test]
    fn wildcard_address_clashes_with_any_address_on_its_port() {
        let toml = format!(
            "{MINIMAL}[admin]\nendpoint = \"127.0.0.1:4318\"\n[receivers.otlp.grpc]\nendpoint = \"0.0.0.0:4318\"\n[receivers.otlp.http]\nendpoint = \"127.0.0.1:0\"\n"
        );
        assert_eq!(
            errors(&toml),
            ["admin.endpoint: address 127.0.0.1:4318 is already used by receivers.otlp.grpc.endpoint"]
        );
    }

    #[test]
    fn port_zero_never_clashes() {
        let toml = format!(
            "{MINIMAL}[admin]\nendpoint = \"127.0.0.1:0\"\n[receivers.otlp.grpc]\nendpoint = \"127.0.0.1:0\"\n"
        );
        assert_eq!(errors(&toml), Vec::<String>::new());
    }

    #[test]
    fn retry_bounds_follow_the_collector() {
        let toml = format!(
            "{MINIMAL}[exporters.otlp.x]\nendpoint = \"http://h:1\"\n[exporters.otlp.x.retry_on_failure]\n\
             initial_interval = \"0s\"\nmultiplier = 0.5\nrandomization_factor = 1.0\nmax_elapsed_time = \"0s\"\n"
        );
        assert_eq!(
            errors(&toml),
            [
                "exporters.otlp.x.retry_on_failure.initial_interval: must be greater than 0",
                "exporters.otlp.x.retry_on_failure.multiplier: must be at least 1, got 0.5",
                "exporters.otlp.x.retry_on_failure.randomization_factor: must be at least 0 and less than 1, got 1",
            ]
        );
        let toml = format!(
            "{MINIMAL}[exporters.otlp.x]\nendpoint = \"http://h:1\"\n[exporters.otlp.x.retry_on_failure]\n\
             randomization_factor = nan\nmax_interval = \"1s\"\nmax_elapsed_time = \"2s\"\n"
        );
        assert_eq!(
            errors(&toml),
            [
                "exporters.otlp.x.retry_on_failure.randomization_factor: must be at least 0 and less than 1, got NaN",
                "exporters.otlp.x.retry_on_failure.max_interval: must be at least initial_interval (5s)",
                "exporters.otlp.x.retry_on_failure.max_elapsed_time: must be at least initial_interval (5s)",
            ]
        );
    }

    #[test]
    fn endpoint_urls_need_scheme_host_and_port() {
        let cases = [
            ("127.0.0.1:4317", "must start with http:// or https://"),
            ("grpc://h:4317", "must start with http:// or https://"),
            ("http://h", "no port (e.g. http://collector:4317)"),
            ("http://h:4317/v1", "a gRPC endpoint takes no path"),
            ("http://h:4317?a=b", "no query string allowed"),
            ("http://h :4317", "invalid uri character"),
        ];
        for (endpoint, problem) in cases {
            let toml = format!("{MINIMAL}[exporters.otlp.x]\nendpoint = \"{endpoint}\"\n");
            assert_eq!(
                errors(&toml),
                [format!(
                    "exporters.otlp.x.endpoint: invalid endpoint \"{endpoint}\": {problem}"
                )]
            );
        }
        let toml = format!(
            "{MINIMAL}[exporters.otlp.x]\nendpoint = \"https://h:4318/base\"\nprotocol = \"http_protobuf\"\n"
        );
        assert_eq!(errors(&toml), Vec::<String>::new());
    }

    #[test]
    fn header_names_and_values_must_be_valid_http() {
        let toml = format!(
            "{MINIMAL}[exporters.otlp.x]\nendpoint = \"http://h:1\"\nheaders = {{ \"bad name\" = \"ok\", good = \"bad\\nvalue\" }}\n"
        );
        assert_eq!(
            errors(&toml),
            [
                "exporters.otlp.x.headers.bad name: invalid header name \"bad name\"",
                "exporters.otlp.x.headers.good: invalid header value: use visible ASCII, spaces and tabs",
            ]
        );
    }

    #[test]
    fn bad_log_filter_and_high_water_are_reported() {
        let toml = format!(
            "{MINIMAL}[service.logs]\nlevel = \"info,=x=\"\n[admin]\nready_queue_high_water = 0.0\n"
        );
        let found = errors(&toml);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("service.logs.level: invalid log filter \"info,=x=\": "),
            "{found:?}"
        );
        assert_eq!(
            found[1],
            "admin.ready_queue_high_water: must be greater than 0 and at most 1, got 0"
        );
    }

    #[test]
    fn pipeline_ids_are_checked() {
        let toml = "[exporters.debug.console]\n[pipelines.traces]\n\
                    exporters = [\"console\", \"zipkin/x\", \"otlp/x\", \"debug/console\", \"debug/console\"]\n\
                    [pipelines.logs]\nexporters = []\n";
        assert_eq!(
            errors(toml),
            [
                "pipelines.traces.exporters[0]: invalid exporter id \"console\": expected \"<kind>/<name>\", e.g. \"debug/console\"",
                "pipelines.traces.exporters[1]: unknown exporter kind \"zipkin\" in \"zipkin/x\"; kinds are debug, elasticsearch, jaeger, otlp, prometheusremotewrite",
                "pipelines.traces.exporters[2]: unknown exporter \"otlp/x\"; defined: debug/console",
                "pipelines.traces.exporters[4]: exporter \"debug/console\" is listed twice",
                "pipelines.logs.exporters: must name at least one exporter",
            ]
        );
    }

    #[test]
    fn no_pipeline_and_no_protocol_are_errors() {
        assert_eq!(
            errors("[receivers.otlp]\n"),
            [
                "receivers.otlp: no protocol enabled; add [receivers.otlp.grpc] and/or [receivers.otlp.http]",
                "pipelines: no pipeline defined; add [pipelines.traces], [pipelines.metrics] and/or [pipelines.logs]",
            ]
        );
    }

    #[test]
    fn unused_exporter_and_ignored_tls_are_warnings() {
        let toml = format!(
            "{MINIMAL}[exporters.otlp.x]\nendpoint = \"http://h:1\"\ntls = {{ insecure_skip_verify = true }}\n"
        );
        let config: Config = toml::from_str(&toml).unwrap();
        let findings = check(&config);
        assert!(findings.errors.is_empty());
        let warnings: Vec<String> = findings.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "exporters.otlp.x: not used by any pipeline",
                "exporters.otlp.x.tls: ignored: the endpoint is http:// (plain text)",
            ]
        );
    }
}
