//! [`Tenants`]: every tenant the gateway knows, looked up in O(1) by id, by
//! token digest or by certificate subject, each with its route, its quota
//! limiters and its metrics slot.
//!
//! Tenants listed under `[tenants]` are built at start. Others (when
//! `unknown_tenants = "accept"`) are added on first sight, up to
//! [`MAX_DYNAMIC_TENANTS`]; past that, new ids still get their own context
//! and route but share one set of limiters and one metrics slot, so no
//! client can grow the gateway's memory by inventing tenant ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::HeaderName;

use super::config::{
    AuthConfig, OnMismatch, RouteConfig, TenancyConfig, TenantConfig, TenantSource, UnknownTenants,
};
use super::quota::Limiter;
use super::stats::TenantStats;
use super::tokens::{TokenError, TokenTable};
use crate::model::Signal;

/// Tenants added on first sight before new ones share one state.
pub const MAX_DYNAMIC_TENANTS: usize = 100_000;

/// One tenant: its id, route, quota and metrics slot.
#[derive(Debug)]
pub struct Tenant {
    pub id: Arc<str>,
    /// The route its data takes; `None` is the pipelines' own exporters.
    pub route: Option<Arc<str>>,
    limiters: Arc<[Option<Limiter>; 3]>,
    pub(super) stats: Arc<TenantStats>,
}

impl Tenant {
    /// The quota limiter of `signal`, if the tenant has a quota for it.
    pub fn limiter(&self, signal: Signal) -> Option<&Limiter> {
        self.limiters[signal as usize].as_ref()
    }
}

/// Why the tenant registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("tokens_file names tenant \"{0}\", which is not listed under [tenants] and unknown_tenants is \"reject\"")]
    UnlistedInTokens(String),
    #[error("routes[{index}]: pattern {pattern:?}: {source}")]
    Pattern {
        index: usize,
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// A compiled `[[routes]]` entry.
#[derive(Debug)]
struct Route {
    name: Arc<str>,
    tenants: Option<regex::RegexSet>,
    tier: Option<String>,
}

impl Route {
    fn matches(&self, id: &str, tier: Option<&str>) -> bool {
        self.tenants.as_ref().is_some_and(|set| set.is_match(id))
            || (self.tier.is_some() && self.tier.as_deref() == tier)
    }
}

/// A tenant-id glob (`*`, `?`) as an anchored regex.
fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0u8; 4]))),
        }
    }
    out.push('$');
    out
}

/// Every tenant and how a request's tenant is found.
#[derive(Debug)]
pub struct Tenants {
    pub(super) sources: Vec<TenantSource>,
    pub(super) header: HeaderName,
    pub(super) resource_attribute: String,
    pub(super) default_tenant: Arc<str>,
    pub(super) require_tenant: bool,
    pub(super) unknown: UnknownTenants,
    pub(super) on_mismatch: OnMismatch,
    pub(super) auth: Option<AuthConfig>,
    pub(super) tokens: TokenTable,
    pub(super) subjects: HashMap<String, Arc<str>>,
    listed: HashMap<Arc<str>, Arc<Tenant>>,
    dynamic: Mutex<HashMap<Arc<str>, Arc<Tenant>>>,
    /// Limiters and stats shared by dynamic tenants past the cap.
    overflow: (Arc<[Option<Limiter>; 3]>, Arc<TenantStats>),
    default_quota: crate::tenancy::config::SignalQuotas,
    routes: Vec<Route>,
    pub(super) max_queue_share: f64,
    pub(super) metrics_max_tenants: usize,
}

fn limiters(quotas: &crate::tenancy::config::SignalQuotas) -> Arc<[Option<Limiter>; 3]> {
    Arc::new(Signal::ALL.map(|signal| quotas.get(signal).map(Limiter::new)))
}

impl Tenants {
    /// Builds the registry; reads tokens from the environment and `tokens_file`.
    ///
    /// # Errors
    /// [`TenancyError`] for a missing or shared token, an unreadable tokens file or a bad route pattern.
    pub fn new(
        config: &TenancyConfig,
        tenants: &BTreeMap<String, TenantConfig>,
        routes: &[RouteConfig],
    ) -> Result<Self, TenancyError> {
        let mut compiled = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let patterns: Vec<String> = route.tenants.iter().map(|g| glob_regex(g)).collect();
            let set = if patterns.is_empty() {
                None
            } else {
                Some(
                    regex::RegexSet::new(&patterns).map_err(|source| TenancyError::Pattern {
                        index,
                        pattern: route.tenants.join(", "),
                        source,
                    })?,
                )
            };
            compiled.push(Route {
                name: Arc::from(route.name.as_str()),
                tenants: set,
                tier: route.tier.clone(),
            });
        }
        let mut registry = Tenants {
            sources: config.sources.clone(),
            header: HeaderName::from_bytes(config.header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-tenant-id")),
            resource_attribute: config.resource_attribute.clone(),
            default_tenant: Arc::from(config.default_tenant.as_str()),
            require_tenant: config.require_tenant,
            unknown: config.unknown_tenants,
            on_mismatch: config.on_mismatch,
            auth: config.auth.clone(),
            tokens: TokenTable::default(),
            subjects: HashMap::new(),
            listed: HashMap::with_capacity(tenants.len()),
            dynamic: Mutex::new(HashMap::new()),
            overflow: (limiters(&config.quota), Arc::new(TenantStats::default())),
            default_quota: config.quota.clone(),
            routes: compiled,
            max_queue_share: config.max_queue_share,
            metrics_max_tenants: config.metrics_max_tenants,
        };
        for (id, tenant) in tenants {
            let id: Arc<str> = Arc::from(id.as_str());
            let quotas = if tenant.quota.traces.is_some()
                || tenant.quota.metrics.is_some()
                || tenant.quota.logs.is_some()
            {
                &tenant.quota
            } else {
                &config.quota
            };
            let entry = Arc::new(Tenant {
                id: id.clone(),
                route: registry.route_of(&id, tenant.tier.as_deref()),
                limiters: limiters(quotas),
                stats: Arc::new(TenantStats::default()),
            });
            if config.auth.is_some() {
                if let Some(var) = &tenant.token_env {
                    registry.tokens.insert_env(&id, var)?;
                }
            }
            for subject in &tenant.client_subjects {
                registry.subjects.insert(subject.clone(), id.clone());
            }
            registry.listed.insert(id, entry);
        }
        if let Some(file) = config.auth.as_ref().and_then(|a| a.tokens_file.as_ref()) {
            let mut unlisted = None;
            let mut tokens = std::mem::take(&mut registry.tokens);
            let result = tokens.insert_file(file, |id| {
                if !super::config::valid_tenant_id(id) {
                    return None;
                }
                match registry.listed.get_key_value(id) {
                    Some((id, _)) => Some(id.clone()),
                    None if registry.unknown == UnknownTenants::Accept => Some(Arc::from(id)),
                    None => {
                        unlisted = Some(id.to_owned());
                        None
                    }
                }
            });
            registry.tokens = tokens;
            if let Some(id) = unlisted {
                return Err(TenancyError::UnlistedInTokens(id));
            }
            result?;
        }
        Ok(registry)
    }

    fn route_of(&self, id: &str, tier: Option<&str>) -> Option<Arc<str>> {
        self.routes
            .iter()
            .find(|route| route.matches(id, tier))
            .map(|route| route.name.clone())
    }

    /// Tenants listed in the config.
    pub fn listed(&self) -> usize {
        self.listed.len()
    }

    /// Tokens known.
    pub fn tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Share of each exporter queue one tenant may hold.
    pub fn max_queue_share(&self) -> f64 {
        self.max_queue_share
    }

    /// The tenant `id`, adding it on first sight when unknown tenants are accepted.
    /// `None` when it is not listed and unknown tenants are refused.
    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        if let Some(tenant) = self.listed.get(id) {
            return Some(tenant.clone());
        }
        if self.unknown == UnknownTenants::Reject {
            return None;
        }
        let mut dynamic = self.dynamic.lock().ok()?;
        if let Some(tenant) = dynamic.get(id) {
            return Some(tenant.clone());
        }
        let id: Arc<str> = Arc::from(id);
        let route = self.route_of(&id, None);
        if dynamic.len() >= MAX_DYNAMIC_TENANTS {
            let (limiters, stats) = &self.overflow;
            return Some(Arc::new(Tenant {
                id,
                route,
                limiters: limiters.clone(),
                stats: stats.clone(),
            }));
        }
        let tenant = Arc::new(Tenant {
            id: id.clone(),
            route,
            limiters: limiters(&self.default_quota),
            stats: Arc::new(TenantStats::default()),
        });
        dynamic.insert(id, tenant.clone());
        Some(tenant)
    }

    /// Every tenant with its own state (listed and added), for the metrics tick.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Arc<Tenant>)) {
        self.listed.values().for_each(&mut f);
        if let Ok(dynamic) = self.dynamic.lock() {
            dynamic.values().for_each(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<RouteConfig> {
        let route = |name: &str, tenants: &[&str], tier: Option<&str>| RouteConfig {
            name: name.into(),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            tier: tier.map(Into::into),
            exporters: vec!["otlp/x".into()],
            traces: None,
            metrics: None,
            logs: None,
        };
        vec![
            route("vip", &["acme", "globex"], None),
            route("eu", &["eu-*"], None),
            route("gold", &[], Some("gold")),
        ]
    }

    #[test]
    fn routes_match_ids_globs_and_tiers_in_order() {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "initech".to_owned(),
            TenantConfig {
                tier: Some("gold".into()),
                ..TenantConfig::default()
            },
        );
        tenants.insert(
            "eu-gold".to_owned(),
            TenantConfig {
                tier: Some("gold".into()),
                ..TenantConfig::default()
            },
        );
        let registry = Tenants::new(&TenancyConfig::default(), &tenants, &routes()).unwrap();
        let route = |id: &str| {
            registry
                .get(id)
                .unwrap()
                .route
                .as_deref()
                .map(str::to_owned)
        };
        assert_eq!(route("acme").as_deref(), Some("vip"));
        assert_eq!(route("eu-west").as_deref(), Some("eu"));
        assert_eq!(route("eu-gold").as_deref(), Some("eu"), "first match wins");
        assert_eq!(route("initech").as_deref(), Some("gold"));
        assert_eq!(route("hooli"), None);
        assert_eq!(route("acme2"), None, "exact ids are anchored");
    }

    #[test]
    fn unknown_tenants_are_refused_when_configured_and_capped_when_accepted() {
        let config = TenancyConfig {
            unknown_tenants: UnknownTenants::Reject,
            ..TenancyConfig::default()
        };
        let mut tenants = BTreeMap::new();
        tenants.insert("acme".to_owned(), TenantConfig::default());
        let registry = Tenants::new(&config, &tenants, &[]).unwrap();
        assert!(registry.get("acme").is_some());
        assert!(registry.get("globex").is_none());

        let registry = Tenants::new(&TenancyConfig::default(), &tenants, &[]).unwrap();
        let a = registry.get("globex").unwrap();
        let b = registry.get("globex").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "added once, then found");
    }
}
