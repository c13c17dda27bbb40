//! Tenants: who may write ([`identify`]: tokens, client certificates), as
//! which tenant (a header, a resource attribute, a default), how much
//! ([`quota`]: token buckets per tenant and signal), and where their data
//! goes (`[[routes]]`: a route per tenant, carried in the batch
//! [`Context`](crate::model::Context) to the fan-out).
//!
//! ```text
//! request head ─► Tenants::identify (credential, certificate, header)   401 / 403 / 400 before the body is read
//! decoded batch ─► Tenants::assign (per resource; split when tenants differ)   403 on a mismatch
//!               ─► Tenants::take_quota (all parts or none)                     429 / RESOURCE_EXHAUSTED + retry delay
//!               ─► one Envelope per tenant, Context { tenant, route } ─► Ingest
//! ```
//!
//! Everything here runs on the receivers' tasks, in parallel, before the
//! pipeline; a lookup is O(1) at any number of tenants.

pub mod config;
pub mod identify;
pub mod quota;
pub mod registry;
pub mod stats;
pub mod tokens;

pub use config::{RouteConfig, TenancyConfig, TenantConfig, TenantSource};
pub use identify::{Caller, TenantError};
pub use registry::{TenancyError, Tenant, Tenants};
