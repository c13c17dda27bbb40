//! `[tenancy]`, `[tenants.<id>]` and `[[routes]]`: who may write, as which
//! tenant, how much, and to which exporters.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::error::ConfigError;
use crate::settings::units::ByteSize;
use crate::settings::validate::{file_problem, join, push, Validate};

/// Where a tenant can come from, in the order of [`TenancyConfig::sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// The token in `authorization` (`Bearer <token>` or `ApiKey <token>`), mapped to its tenant.
    Credential,
    /// The subject common name of a verified client certificate (mTLS), mapped to its tenant.
    Certificate,
    /// The request header named by `header` (HTTP header or gRPC metadata).
    Header,
    /// The resource attribute named by `resource_attribute`, per resource.
    ResourceAttribute,
}

impl TenantSource {
    /// Whether the source proves who the client is (a tenant bound to a secret),
    /// rather than labels the data.
    pub fn is_bound(self) -> bool {
        matches!(self, TenantSource::Credential | TenantSource::Certificate)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TenantSource::Credential => "credential",
            TenantSource::Certificate => "certificate",
            TenantSource::Header => "header",
            TenantSource::ResourceAttribute => "resource_attribute",
        }
    }
}

/// What to do when a client bound to tenant A sends data labelled tenant B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMismatch {
    /// Refuse the request: gRPC `PERMISSION_DENIED`, HTTP 403.
    #[default]
    Reject,
    /// Take the data as A's and rewrite the label (the resource attribute) to A.
    Overwrite,
}

/// Whether tenants not listed under `[tenants]` may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTenants {
    /// Accepted with the default quota and the default route.
    #[default]
    Accept,
    /// Refused: gRPC `PERMISSION_DENIED`, HTTP 403.
    Reject,
}

/// `[tenancy]`: identity, authentication, default quota and isolation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// Where the tenant of a request (or of each resource) comes from, first match wins.
    /// Default `["credential", "certificate", "header", "resource_attribute"]`. A bound
    /// source (credential, certificate) listed here also makes every other label of the
    /// request that names another tenant a mismatch (see `on_mismatch`).
    pub sources: Vec<TenantSource>,
    /// Header (gRPC metadata) carrying the tenant. Default `"x-tenant-id"`; Grafana-style
    /// backends use `"X-Scope-OrgID"`.
    pub header: String,
    /// Resource attribute carrying the tenant. Default `"tenant.id"`. A request whose
    /// resources name several tenants is split per tenant.
    pub resource_attribute: String,
    /// Tenant of data no source names. Default `"default"`; set `require_tenant = true` to
    /// refuse such data instead (gRPC `UNAUTHENTICATED`, HTTP 401).
    pub default_tenant: String,
    /// Refuse data no source names a tenant for. Default `false`.
    pub require_tenant: bool,
    /// Tenants not listed under `[tenants]`: `"accept"` (default quota, default route) or
    /// `"reject"`. Default `"accept"`.
    pub unknown_tenants: UnknownTenants,
    /// A client bound to tenant A labelling data as tenant B: `"reject"` (403) or
    /// `"overwrite"` (the data is A's, the label rewritten). Default `"reject"`.
    pub on_mismatch: OnMismatch,
    /// `[tenancy.auth]`: when present, every request must carry a known credential.
    pub auth: Option<AuthConfig>,
    /// `[tenancy.quota.<signal>]`: the quota of every tenant without its own. Default: none.
    pub quota: SignalQuotas,
    /// Share of each exporter's queue (`sending_queue.queue_size`) one tenant may hold, so a
    /// flooding tenant fills only its share. Default `0.25`; `1.0` turns the limit off.
    pub max_queue_share: f64,
    /// Tenants with their own series on `/metrics` (the busiest first come); the rest are
    /// summed under `tenant="_other"`. Default `100`.
    pub metrics_max_tenants: usize,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            sources: vec![
                TenantSource::Credential,
                TenantSource::Certificate,
                TenantSource::Header,
                TenantSource::ResourceAttribute,
            ],
            header: "x-tenant-id".to_owned(),
            resource_attribute: "tenant.id".to_owned(),
            default_tenant: "default".to_owned(),
            require_tenant: false,
            unknown_tenants: UnknownTenants::Accept,
            on_mismatch: OnMismatch::Reject,
            auth: None,
            quota: SignalQuotas::default(),
            max_queue_share: 0.25,
            metrics_max_tenants: 100,
        }
    }
}

impl TenancyConfig {
    /// One line for `check-config`: sources, authentication, counts. Never a token
    /// (tokens are not even read here).
    pub fn describe(
        &self,
        tenants: &BTreeMap<String, TenantConfig>,
        routes: &[RouteConfig],
    ) -> String {
        let sources: Vec<&str> = self.sources.iter().map(|s| s.as_str()).collect();
        let auth = match &self.auth {
            None => "authentication off".to_owned(),
            Some(auth) => {
                let with_env = tenants.values().filter(|t| t.token_env.is_some()).count();
                let file = auth
                    .tokens_file
                    .as_ref()
                    .map_or(String::new(), |f| format!(", tokens_file {}", f.display()));
                format!("authentication on ({with_env} tenants with token_env{file})")
            }
        };
        let fallback = if self.require_tenant {
            "refused".to_owned()
        } else {
            format!("\"{}\"", self.default_tenant)
        };
        format!(
            "sources [{}] (header {}, attribute {}), no tenant -> {fallback}, unknown tenants {:?}, mismatch {:?}, {auth}, {} tenants listed, {} routes, queue share {}%",
            sources.join(", "),
            self.header,
            self.resource_attribute,
            self.unknown_tenants,
            self.on_mismatch,
            tenants.len(),
            routes.len(),
            self.max_queue_share * 100.0,
        )
    }
}

/// `[tenancy.auth]`: credentials. Tokens never appear in `config.toml`: each tenant's come
/// from the environment variable its `token_env` names, or from `tokens_file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A file of `<tenant> <token>` lines (`#` starts a comment), read at start. Default: none.
    pub tokens_file: Option<PathBuf>,
    /// Whether a client certificate verified by the receiver's `client_ca_file` counts as a
    /// credential on its own (mTLS without a token). Default `true`.
    #[serde(default = "yes")]
    pub accept_client_certificates: bool,
}

fn yes() -> bool {
    true
}

/// Per-signal quotas: `[…quota.traces]`, `[…quota.metrics]`, `[…quota.logs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalQuotas {
    pub traces: Option<Quota>,
    pub metrics: Option<Quota>,
    pub logs: Option<Quota>,
}

impl SignalQuotas {
    pub fn get(&self, signal: crate::model::Signal) -> Option<&Quota> {
        match signal {
            crate::model::Signal::Traces => self.traces.as_ref(),
            crate::model::Signal::Metrics => self.metrics.as_ref(),
            crate::model::Signal::Logs => self.logs.as_ref(),
        }
    }

    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        for (name, quota) in [
            ("traces", &self.traces),
            ("metrics", &self.metrics),
            ("logs", &self.logs),
        ] {
            if let Some(quota) = quota {
                quota.validate(&join(path, name), errors);
            }
        }
    }
}

/// A token-bucket quota: a steady rate and a burst, for items and for bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Items (spans, data points, log records) per second. Default: no item limit.
    pub items_per_second: Option<f64>,
    /// Items that may arrive at once above the rate. Default: one second's worth.
    pub items_burst: Option<u64>,
    /// Bytes (decoded protobuf) per second. Default: no byte limit.
    pub bytes_per_second: Option<ByteSize>,
    /// Bytes that may arrive at once above the rate. Default: one second's worth.
    pub bytes_burst: Option<ByteSize>,
}

impl Validate for Quota {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if let Some(rate) = self.items_per_second {
            if !(rate.is_finite() && rate > 0.0) {
                push(
                    errors,
                    path,
                    "items_per_second",
                    "must be a positive number",
                );
            }
        }
        if self.items_per_second.is_none() && self.items_burst.is_some() {
            push(errors, path, "items_burst", "needs items_per_second");
        }
        if self.items_burst == Some(0) {
            push(errors, path, "items_burst", "must be greater than 0");
        }
        if self.bytes_per_second.is_some_and(|b| b.get() == 0) {
            push(errors, path, "bytes_per_second", "must be greater than 0");
        }
        if self.bytes_per_second.is_none() && self.bytes_burst.is_some() {
            push(errors, path, "bytes_burst", "needs bytes_per_second");
        }
        if self.bytes_burst.is_some_and(|b| b.get() == 0) {
            push(errors, path, "bytes_burst", "must be greater than 0");
        }
        if self.items_per_second.is_none() && self.bytes_per_second.is_none() {
            errors.push(ConfigError::new(
                path,
                "a quota needs items_per_second or bytes_per_second",
            ));
        }
    }
}

/// `[tenants.<id>]`: one known tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// A free label routes can match (`tier = "gold"`). Default: none.
    pub tier: Option<String>,
    /// Environment variable holding this tenant's token (several, comma-separated, for
    /// rotation). Default: none.
    pub token_env: Option<String>,
    /// Client certificate subject common names that are this tenant (mTLS). Default: none.
    #[serde(default)]
    pub client_subjects: Vec<String>,
    /// `[tenants.<id>.quota.<signal>]`: this tenant's quota, replacing `[tenancy.quota]`.
    #[serde(default)]
    pub quota: SignalQuotas,
}

/// `[[routes]]`: which exporters the data of some tenants goes to. The first route that
/// matches a tenant is its route; a tenant no route matches goes to the pipeline's exporters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in logs and metrics. Required, unique.
    pub name: String,
    /// Tenant ids: exact, or globs with `*` and `?` (`"eu-*"`). Default: none.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Matches tenants whose `[tenants.<id>] tier` is this. Default: none.
    pub tier: Option<String>,
    /// Exporter ids for every signal. Each signal's list replaces it for that signal.
    #[serde(default)]
    pub exporters: Vec<String>,
    pub traces: Option<Vec<String>>,
    pub metrics: Option<Vec<String>>,
    pub logs: Option<Vec<String>>,
}

impl RouteConfig {
    /// The exporters of `signal` on this route.
    pub fn exporters_for(&self, signal: crate::model::Signal) -> &[String] {
        let own = match signal {
            crate::model::Signal::Traces => &self.traces,
            crate::model::Signal::Metrics => &self.metrics,
            crate::model::Signal::Logs => &self.logs,
        };
        own.as_deref().unwrap_or(&self.exporters)
    }
}

/// The longest tenant id accepted from a header or an attribute.
pub const MAX_TENANT_ID_BYTES: usize = 128;

/// Whether `id` may name a tenant: 1–128 bytes of letters, digits, `.`, `_`, `-`, `:`, `@`.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TENANT_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@'))
}

/// The parts of the root config this section is checked against.
#[derive(Debug)]
pub struct TenancySection<'a> {
    pub tenancy: &'a TenancyConfig,
    pub tenants: &'a BTreeMap<String, TenantConfig>,
    pub routes: &'a [RouteConfig],
}

impl Validate for TenancySection<'_> {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let tenancy_path = join(path, "tenancy");
        let t = self.tenancy;
        if t.sources.is_empty() {
            push(
                errors,
                &tenancy_path,
                "sources",
                "must name at least one source",
            );
        }
        let mut seen = HashSet::new();
        for (i, source) in t.sources.iter().enumerate() {
            if !seen.insert(*source) {
                push(
                    errors,
                    &tenancy_path,
                    &format!("sources[{i}]"),
                    format!("\"{}\" is listed twice", source.as_str()),
                );
            }
        }
        if http::HeaderName::from_bytes(t.header.as_bytes()).is_err() {
            push(errors, &tenancy_path, "header", "not a valid header name");
        }
        if t.resource_attribute.is_empty() {
            push(
                errors,
                &tenancy_path,
                "resource_attribute",
                "must not be empty",
            );
        }
        if !valid_tenant_id(&t.default_tenant) {
            push(errors, &tenancy_path, "default_tenant", TENANT_ID_RULE);
        }
        if !(t.max_queue_share > 0.0 && t.max_queue_share <= 1.0) {
            push(
                errors,
                &tenancy_path,
                "max_queue_share",
                "must be greater than 0 and at most 1",
            );
        }
        if let Some(auth) = &t.auth {
            if let Some(file) = &auth.tokens_file {
                if let Some(problem) = file_problem(file) {
                    push(
                        errors,
                        &join(&tenancy_path, "auth"),
                        "tokens_file",
                        format!("{problem}: {}", file.display()),
                    );
                }
            }
        }
        t.quota.validate(&join(&tenancy_path, "quota"), errors);

        let mut subjects = HashSet::new();
        for (id, tenant) in self.tenants {
            let tenant_path = join(path, &format!("tenants.{id}"));
            if !valid_tenant_id(id) {
                errors.push(ConfigError::new(&tenant_path, TENANT_ID_RULE));
            }
            if let Some(var) = &tenant.token_env {
                if var.is_empty() {
                    push(errors, &tenant_path, "token_env", "must name a variable");
                } else if t.auth.is_none() {
                    push(
                        errors,
                        &tenant_path,
                        "token_env",
                        "tokens are only checked with [tenancy.auth]",
                    );
                }
            }
            for subject in &tenant.client_subjects {
                if !subjects.insert(subject.as_str()) {
                    push(
                        errors,
                        &tenant_path,
                        "client_subjects",
                        format!("\"{subject}\" names another tenant too"),
                    );
                }
            }
            tenant.quota.validate(&join(&tenant_path, "quota"), errors);
        }

        let mut names = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let route_path = join(path, &format!("routes[{i}]"));
            if route.name.trim().is_empty() {
                push(errors, &route_path, "name", "must not be empty");
            } else if !names.insert(route.name.as_str()) {
                push(
                    errors,
                    &route_path,
                    "name",
                    format!("\"{}\" names another route too", route.name),
                );
            }
            if route.tenants.is_empty() && route.tier.is_none() {
                errors.push(ConfigError::new(
                    &route_path,
                    "a route needs tenants or a tier to match",
                ));
            }
            for (j, pattern) in route.tenants.iter().enumerate() {
                if pattern.is_empty() {
                    push(
                        errors,
                        &route_path,
                        &format!("tenants[{j}]"),
                        "must not be empty",
                    );
                }
            }
            if route.exporters.is_empty()
                && route.traces.is_none()
                && route.metrics.is_none()
                && route.logs.is_none()
            {
                push(
                    errors,
                    &route_path,
                    "exporters",
                    "must name at least one exporter",
                );
            }
        }
    }
}

const TENANT_ID_RULE: &str = "a tenant id is 1 to 128 letters, digits, '.', '_', '-', ':' or '@'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_bounded_and_plain() {
        assert!(valid_tenant_id("acme"));
        assert!(valid_tenant_id("org:42@eu-west_1.prod"));
        assert!(!valid_tenant_id(""));
        assert!(!valid_tenant_id("a b"));
        assert!(!valid_tenant_id("ac/me"));
        assert!(!valid_tenant_id(&"a".repeat(129)));
        assert!(valid_tenant_id(&"a".repeat(128)));
    }
}
