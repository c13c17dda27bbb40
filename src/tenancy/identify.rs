//! Finding the tenant of a request: [`Tenants::identify`] checks the
//! credential from the request head (before a byte of the body is read), and
//! [`Tenants::assign`] gives each resource of the decoded batch its tenant,
//! splitting the batch when its resources name several.
//!
//! # Precedence
//! A *bound* tenant (from a token or a client certificate, when that source
//! is in `sources`) always wins: every label of the request (the tenant
//! header, each resource's tenant attribute) that names another tenant is a
//! mismatch, refused (`PERMISSION_DENIED` / 403) or overwritten to the bound
//! tenant (`on_mismatch`). Without a bound tenant, the labels are tried in
//! `sources` order, then `default_tenant` (or refusal, `require_tenant`).

use std::sync::Arc;

use http::HeaderMap;
use tokio::time::Instant;

use super::config::{OnMismatch, TenantSource};
use super::registry::{Tenant, Tenants};
use super::tokens::token_of;
use crate::model::regroup::partition_resources;
use crate::model::rewrite::{self, KeyValueEdit, Rewriter, StrField};
use crate::model::schema::Schema;
use crate::model::{Batch, Signal};

/// Why a request's tenant was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// No credential, an unknown one, or no tenant at all (gRPC `UNAUTHENTICATED`, HTTP 401).
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// A credential for one tenant used for another, or a refused tenant (gRPC
    /// `PERMISSION_DENIED`, HTTP 403).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A tenant label that is not a tenant id (gRPC `INVALID_ARGUMENT`, HTTP 400).
    #[error("invalid tenant id in {0}: a tenant id is 1 to 128 letters, digits, '.', '_', '-', ':' or '@'")]
    InvalidId(&'static str),
    /// Over the tenant's quota (gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`, HTTP 429 with `Retry-After`).
    #[error("tenant {tenant} is over its {signal} quota ({what} per second), retry after {retry_after:?}")]
    OverQuota {
        tenant: Arc<str>,
        signal: Signal,
        what: &'static str,
        retry_after: std::time::Duration,
    },
}

/// Who sent a request, as far as its head tells.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The tenant the credential or certificate is, when that source is used.
    bound: Option<Arc<Tenant>>,
    /// The tenant header's value, when that source is used and it was sent.
    header: Option<Arc<str>>,
}

impl Tenants {
    /// Checks the credential in `headers` (and the client certificate's subject
    /// `peer_subject`), and reads the tenant header.
    ///
    /// # Errors
    /// [`TenantError`] for a missing or unknown credential, credentials for two
    /// tenants, an invalid or refused tenant.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        peer_subject: Option<&str>,
    ) -> Result<Caller, TenantError> {
        let mut bound: Option<Arc<str>> = None;
        let mut authenticated = false;
        if let Some(auth) = &self.auth {
            if let Some(value) = headers.get(http::header::AUTHORIZATION) {
                let tenant = token_of(value.as_bytes())
                    .and_then(|token| self.tokens.tenant_of(token))
                    .ok_or(TenantError::Unauthenticated("unknown credential"))?;
                authenticated = true;
                if self.sources.contains(&TenantSource::Credential) {
                    bound = Some(tenant.clone());
                }
            }
            if let Some(tenant) = peer_subject.and_then(|s| self.subjects.get(s)) {
                if auth.accept_client_certificates {
                    authenticated = true;
                }
                if self.sources.contains(&TenantSource::Certificate) {
                    match &bound {
                        Some(other) if other != tenant => {
                            return Err(TenantError::PermissionDenied(format!(
                                "the credential is tenant {other}, the client certificate tenant {tenant}"
                            )))
                        }
                        _ => bound = Some(tenant.clone()),
                    }
                }
            }
            if !authenticated {
                return Err(TenantError::Unauthenticated("no credential"));
            }
        } else if let Some(tenant) = peer_subject.and_then(|s| self.subjects.get(s)) {
            if self.sources.contains(&TenantSource::Certificate) {
                bound = Some(tenant.clone());
            }
        }
        let header = if self.sources.contains(&TenantSource::Header) {
            match headers.get(&self.header) {
                Some(value) => {
                    let id = value
                        .to_str()
                        .ok()
                        .filter(|id| super::config::valid_tenant_id(id))
                        .ok_or(TenantError::InvalidId("the tenant header"))?;
                    Some(Arc::from(id))
                }
                None => None,
            }
        } else {
            None
        };
        let bound = match bound {
            Some(id) => Some(self.get(&id).ok_or_else(|| refused(&id))?),
            None => None,
        };
        if let (Some(bound), Some(header)) = (&bound, &header) {
            if bound.id != *header && self.on_mismatch == OnMismatch::Reject {
                return Err(mismatch(&bound.id, header));
            }
        }
        Ok(Caller { bound, header })
    }

    /// Gives each resource of `batch` its tenant, and splits the batch when
    /// they differ. Parts of one tenant are merged.
    ///
    /// # Errors
    /// [`TenantError`] for a mismatch, an invalid or refused tenant, or no tenant.
    pub fn assign(
        &self,
        caller: &Caller,
        batch: Batch,
    ) -> Result<Vec<(Arc<Tenant>, Batch)>, TenantError> {
        let by_attribute = self.sources.contains(&TenantSource::ResourceAttribute);
        if !by_attribute {
            let tenant = match (&caller.bound, &caller.header) {
                (Some(bound), _) => bound.clone(),
                (None, Some(header)) => self.lookup(header)?,
                (None, None) => self.fallback()?,
            };
            return Ok(vec![(tenant, batch)]);
        }
        let attribute = self.resource_attribute.as_str();
        let header_first = self.header_before_attribute();
        let parts = partition_resources(batch, |resource| {
            resource
                .attribute(attribute)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
        let mut out: Vec<(Arc<Tenant>, Batch)> = Vec::with_capacity(parts.len());
        for (label, mut part) in parts {
            let label = match &label {
                Some(id) if !super::config::valid_tenant_id(id) => {
                    return Err(TenantError::InvalidId("a resource's tenant attribute"))
                }
                other => other.as_deref(),
            };
            let tenant = match &caller.bound {
                Some(bound) => {
                    if let Some(label) = label.filter(|l| **l != *bound.id) {
                        if self.on_mismatch == OnMismatch::Reject {
                            return Err(mismatch(&bound.id, label));
                        }
                        part = overwrite_attribute(&part, attribute, &bound.id);
                    }
                    bound.clone()
                }
                None => {
                    let chosen = match (header_first, &caller.header, label) {
                        (true, Some(header), _) => Some(&**header),
                        (_, _, Some(label)) => Some(label),
                        (false, Some(header), None) => Some(&**header),
                        (_, None, None) => None,
                    };
                    match chosen {
                        Some(id) => self.lookup(id)?,
                        None => self.fallback()?,
                    }
                }
            };
            match out.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &tenant)) {
                Some((_, merged)) => merged.append(part),
                None => out.push((tenant, part)),
            }
        }
        Ok(out)
    }

    /// Takes every part's items and bytes from its tenant's quota, all or none.
    ///
    /// # Errors
    /// [`TenantError::OverQuota`] for the first part over quota; nothing is taken then.
    pub fn take_quota(
        &self,
        signal: Signal,
        parts: &[(Arc<Tenant>, Batch)],
        now: Instant,
    ) -> Result<(), TenantError> {
        for (i, (tenant, batch)) in parts.iter().enumerate() {
            let Some(limiter) = tenant.limiter(signal) else {
                continue;
            };
            let (items, bytes) = (batch.items(), batch.encoded_len() as u64);
            if let Err(over) = limiter.take(items, bytes, now) {
                for (tenant, batch) in &parts[..i] {
                    if let Some(limiter) = tenant.limiter(signal) {
                        limiter.refund(batch.items(), batch.encoded_len() as u64);
                    }
                }
                return Err(TenantError::OverQuota {
                    tenant: tenant.id.clone(),
                    signal,
                    what: over.what,
                    retry_after: over.retry_after,
                });
            }
        }
        Ok(())
    }

    fn header_before_attribute(&self) -> bool {
        let rank = |s| self.sources.iter().position(|x| *x == s);
        match (
            rank(TenantSource::Header),
            rank(TenantSource::ResourceAttribute),
        ) {
            (Some(h), Some(a)) => h < a,
            (Some(_), None) => true,
            _ => false,
        }
    }

    fn lookup(&self, id: &str) -> Result<Arc<Tenant>, TenantError> {
        self.get(id).ok_or_else(|| refused(id))
    }

    fn fallback(&self) -> Result<Arc<Tenant>, TenantError> {
        if self.require_tenant {
            return Err(TenantError::Unauthenticated("no tenant"));
        }
        self.lookup(&self.default_tenant)
    }
}

fn refused(id: &str) -> TenantError {
    TenantError::PermissionDenied(format!("tenant {id} is not allowed to write"))
}

fn mismatch(bound: &str, label: &str) -> TenantError {
    TenantError::PermissionDenied(format!(
        "the credential is tenant {bound}, the data is labelled tenant {label}"
    ))
}

/// `part` with the resource attribute `key` set to `tenant` wherever it says otherwise.
fn overwrite_attribute(part: &Batch, key: &str, tenant: &str) -> Batch {
    struct Overwrite<'a> {
        key: &'a [u8],
        value: Vec<u8>,
    }
    impl Rewriter for Overwrite<'_> {
        fn enter(&mut self, schema: &'static Schema, _message: &[u8]) -> bool {
            // The record and its resource; not scopes or items.
            schema.name.starts_with("Resource")
        }
        fn key_value(&mut self, key: &[u8], value: &[u8], attribute: bool) -> KeyValueEdit {
            if attribute && key == self.key && value != self.value.as_slice() {
                KeyValueEdit::ReplaceValue(self.value.clone())
            } else {
                KeyValueEdit::Keep
            }
        }
        fn string(&mut self, _at: StrField, _s: &[u8]) -> Option<String> {
            None
        }
    }
    // AnyValue { string_value (1): tenant }
    let mut value = Vec::with_capacity(tenant.len() + 2);
    crate::model::wire::put_len_field(&mut value, 1, tenant.as_bytes());
    let mut overwrite = Overwrite {
        key: key.as_bytes(),
        value,
    };
    rewrite::rewrite(part, &mut overwrite).unwrap_or_else(|| part.clone())
}
