//! Per-tenant metrics with a bounded number of series.
//!
//! A tenant gets its own `tenant="<id>"` series once it is among the busiest:
//! every [`promote`] (once a second) gives free slots, up to
//! `metrics_max_tenants`, to the tenants with the most items since the last
//! one. Until then, and for everyone once the slots are taken, its figures
//! are summed under `tenant="_other"`. A tenant is never demoted, so every
//! series stays a monotonic counter; 10,000 tenants make at most
//! `metrics_max_tenants + 1` series per metric and label set.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use metrics::counter;

use super::registry::{Tenant, Tenants};
use crate::model::Signal;
use crate::telemetry::metrics::{TENANT_BYTES, TENANT_ITEMS};

/// The `tenant` label of tenants without their own series.
pub const OTHER: &str = "_other";

/// What happened to a tenant's items: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Taken into the pipeline.
    Accepted,
    /// Refused over the tenant's quota (retryable).
    OverQuota,
    /// Refused because the pipeline was full or shutting down (retryable).
    Refused,
}

impl ItemOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ItemOutcome::Accepted => "accepted",
            ItemOutcome::OverQuota => "over_quota",
            ItemOutcome::Refused => "refused",
        }
    }
}

/// A tenant's metrics slot.
#[derive(Debug, Default)]
pub struct TenantStats {
    promoted: AtomicBool,
    /// Items since the last promotion round, while not promoted.
    recent: AtomicU64,
}

/// Counts `items` (and `bytes`) of `tenant` with `outcome`.
pub fn record(tenant: &Tenant, signal: Signal, outcome: ItemOutcome, items: u64, bytes: u64) {
    let stats = &tenant.stats;
    let label = if stats.promoted.load(Ordering::Relaxed) {
        tenant.id.to_string()
    } else {
        stats.recent.fetch_add(items, Ordering::Relaxed);
        OTHER.to_owned()
    };
    if outcome == ItemOutcome::Accepted {
        counter!(TENANT_BYTES, "tenant" => label.clone(), "signal" => signal.as_str())
            .increment(bytes);
    }
    counter!(TENANT_ITEMS, "tenant" => label, "signal" => signal.as_str(), "outcome" => outcome.as_str())
        .increment(items);
}

/// Gives free series slots to the busiest tenants without one. Returns how many were promoted.
pub fn promote(tenants: &Tenants) -> usize {
    let mut promoted = 0;
    let mut candidates = Vec::new();
    tenants.for_each(|tenant| {
        if tenant.stats.promoted.load(Ordering::Relaxed) {
            promoted += 1;
        } else {
            let recent = tenant.stats.recent.swap(0, Ordering::Relaxed);
            if recent > 0 {
                candidates.push((recent, tenant.clone()));
            }
        }
    });
    let free = tenants.metrics_max_tenants.saturating_sub(promoted);
    candidates.sort_by_key(|(recent, _)| std::cmp::Reverse(*recent));
    let mut added = 0;
    for (_, tenant) in candidates.into_iter().take(free) {
        // Tenants past the dynamic cap share one slot: promoting it would name one of them for all.
        if std::sync::Arc::strong_count(&tenant.stats) == 1 {
            tenant.stats.promoted.store(true, Ordering::Relaxed);
            added += 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::config::TenancyConfig;
    use std::collections::BTreeMap;

    #[test]
    fn only_the_busiest_tenants_get_a_series_and_keep_it() {
        let config = TenancyConfig {
            metrics_max_tenants: 2,
            ..TenancyConfig::default()
        };
        let tenants = Tenants::new(&config, &BTreeMap::new(), &[]).unwrap();
        for (id, items) in [("a", 10), ("b", 500), ("c", 300), ("d", 1)] {
            let tenant = tenants.get(id).unwrap();
            record(&tenant, Signal::Traces, ItemOutcome::Accepted, items, 0);
        }
        assert_eq!(promote(&tenants), 2);
        let promoted = |id: &str| {
            tenants
                .get(id)
                .unwrap()
                .stats
                .promoted
                .load(Ordering::Relaxed)
        };
        assert!(promoted("b") && promoted("c"));
        assert!(!promoted("a") && !promoted("d"));
        // Slots are taken: a newly busy tenant stays under _other, nobody is demoted.
        record(
            &tenants.get("a").unwrap(),
            Signal::Traces,
            ItemOutcome::Accepted,
            10_000,
            0,
        );
        assert_eq!(promote(&tenants), 0);
        assert!(promoted("b") && promoted("c") && !promoted("a"));
    }
}
