//! [`Context`]: who a batch belongs to and where it goes, carried with the
//! batch from the receiver through the stages, the batcher and the queue to
//! the exporter; and [`Envelope`], a batch with its context.
//!
//! The receiver sets it (the authenticated principal, a tenant from a header),
//! a stage may refine it (a tenant router splits a batch per tenant and tags
//! each part), the batcher merges only batches with equal contexts, so a
//! batch that reaches an exporter never mixes tenants, and the exporter reads
//! it for what it forwards per tenant (an `X-Scope-OrgID` header, an index name).
//!
//! Cheap to clone and compare: each field is an `Arc<str>`, and the empty
//! context (no tenant, no principal, no route) has no allocation at all.

use std::fmt;
use std::sync::Arc;

use super::Batch;

/// Who a batch belongs to and where it goes. Equal contexts may share a batch.
///
/// `#[non_exhaustive]`: more keys will come (a priority, a peer); build one
/// with [`Context::default`] and the `with_*` methods.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Context {
    /// The tenant the data belongs to.
    pub tenant: Option<Arc<str>>,
    /// Who sent it, as authenticated by the receiver (a token's name, a
    /// certificate subject). Never a secret.
    pub principal: Option<Arc<str>>,
    /// The route that selected the exporters of this batch.
    pub route: Option<Arc<str>>,
}

impl Context {
    /// The same context for tenant `tenant`.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<Arc<str>>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The same context sent by `principal`.
    #[must_use]
    pub fn with_principal(mut self, principal: impl Into<Arc<str>>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// The same context on route `route`.
    #[must_use]
    pub fn with_route(mut self, route: impl Into<Arc<str>>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// The tenant, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether nothing is set (the context of an unauthenticated, untenanted gateway).
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none() && self.principal.is_none() && self.route.is_none()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Context");
        if let Some(tenant) = &self.tenant {
            s.field("tenant", tenant);
        }
        if let Some(principal) = &self.principal {
            s.field("principal", principal);
        }
        if let Some(route) = &self.route {
            s.field("route", route);
        }
        s.finish()
    }
}

/// A batch with its context: what the stages of a signal pass to each other.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub context: Context,
    pub batch: Batch,
}

impl Envelope {
    /// `batch` with the empty context.
    pub fn new(batch: Batch) -> Self {
        Envelope {
            context: Context::default(),
            batch,
        }
    }

    /// `batch` with `context`.
    pub fn with_context(context: Context, batch: Batch) -> Self {
        Envelope { context, batch }
    }

    /// Items in the batch.
    pub fn items(&self) -> u64 {
        self.batch.items()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_by_value_and_empty_by_default() {
        let a = Context::default().with_tenant("acme");
        let b = Context::default().with_tenant(String::from("acme"));
        assert_eq!(a, b);
        assert_ne!(a, Context::default().with_tenant("globex"));
        assert_ne!(a, a.clone().with_route("eu"));
        assert!(Context::default().is_empty());
        assert!(!a.is_empty());
        assert_eq!(a.tenant(), Some("acme"));
        assert_eq!(format!("{a:?}"), "Context { tenant: \"acme\" }");
    }
}
