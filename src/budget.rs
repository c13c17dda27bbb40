//! [`ItemBudget`]: the item count an exporter may hold, reserved at admission
//! and released when the items are delivered or given up.
//!
//! Hand-written rather than a `tokio::sync::Semaphore` because reservations
//! must be merged when the batcher joins batches and split when it cuts them,
//! and must never wait: admission either fits now or is refused.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
struct Inner {
    capacity: u64,
    used: AtomicU64,
    /// A share's whole: every item reserved here is reserved there too.
    parent: Option<Arc<Inner>>,
}

impl Inner {
    /// Adds `items` if they fit now (a batch larger than the capacity only into an empty budget).
    fn try_add(&self, items: u64) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let fits = used + items <= self.capacity || (used == 0 && items > 0);
            if !fits {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + items,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, items: u64) {
        self.used.fetch_sub(items, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.release(items);
        }
    }
}

/// Shared count of items held against a fixed capacity.
#[derive(Debug, Clone)]
pub struct ItemBudget {
    inner: Arc<Inner>,
}

impl ItemBudget {
    pub fn new(capacity: u64) -> Self {
        ItemBudget {
            inner: Arc::new(Inner {
                capacity,
                used: AtomicU64::new(0),
                parent: None,
            }),
        }
    }

    /// A share of this budget of at most `capacity` items: what is reserved
    /// in the share is reserved in this budget too, and fits only when both have room.
    pub fn share(&self, capacity: u64) -> ItemBudget {
        ItemBudget {
            inner: Arc::new(Inner {
                capacity,
                used: AtomicU64::new(0),
                parent: Some(self.inner.clone()),
            }),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Items currently reserved.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Reserves `items` if they fit now. A batch larger than the whole
    /// capacity is admitted only into an empty budget, so it cannot wedge.
    pub fn try_reserve(&self, items: u64) -> Option<Reservation> {
        if !self.inner.try_add(items) {
            return None;
        }
        if let Some(parent) = &self.inner.parent {
            if !parent.try_add(items) {
                self.inner.used.fetch_sub(items, Ordering::AcqRel);
                return None;
            }
        }
        Some(Reservation {
            inner: Some(self.inner.clone()),
            items,
        })
    }
}

impl ItemBudget {
    /// Reserves `items` even past the capacity: for what is held already
    /// and cannot be refused (a disk queue's segments found at start-up).
    pub fn force_reserve(&self, items: u64) -> Reservation {
        self.inner.used.fetch_add(items, Ordering::AcqRel);
        if let Some(parent) = &self.inner.parent {
            parent.used.fetch_add(items, Ordering::AcqRel);
        }
        Reservation {
            inner: Some(self.inner.clone()),
            items,
        }
    }
}

/// Items held against an [`ItemBudget`]; released on drop.
pub struct Reservation {
    inner: Option<Arc<Inner>>,
    items: u64,
}

impl Reservation {
    /// A reservation against no budget (for tests and unbounded paths).
    pub fn detached(items: u64) -> Self {
        Reservation { inner: None, items }
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// Takes over `other`'s items. Both must be against the same budget.
    pub fn merge(&mut self, mut other: Reservation) {
        debug_assert!(match (&self.inner, &other.inner) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => true,
        });
        if self.inner.is_none() {
            self.inner = other.inner.take();
        }
        self.items += other.items;
        other.items = 0;
    }

    /// Splits off a reservation of `items` (at most what this one holds).
    pub fn split(&mut self, items: u64) -> Reservation {
        let items = items.min(self.items);
        self.items -= items;
        Reservation {
            inner: self.inner.clone(),
            items,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            inner.release(self.items);
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("items", &self.items)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_until_full_then_release_on_drop() {
        let budget = ItemBudget::new(10);
        let a = budget.try_reserve(6).unwrap();
        assert!(budget.try_reserve(5).is_none());
        let b = budget.try_reserve(4).unwrap();
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 4);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn oversized_batch_only_into_empty_budget() {
        let budget = ItemBudget::new(10);
        let big = budget.try_reserve(50).unwrap();
        assert!(budget.try_reserve(1).is_none());
        drop(big);
        let small = budget.try_reserve(1).unwrap();
        assert!(budget.try_reserve(50).is_none());
        drop(small);
    }

    #[test]
    fn merge_and_split_keep_the_count() {
        let budget = ItemBudget::new(100);
        let mut a = budget.try_reserve(30).unwrap();
        a.merge(budget.try_reserve(20).unwrap());
        assert_eq!(a.items(), 50);
        assert_eq!(budget.used(), 50);
        let b = a.split(45);
        assert_eq!((a.items(), b.items()), (5, 45));
        drop(b);
        assert_eq!(budget.used(), 5);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_share_holds_at_most_its_capacity_and_counts_in_the_whole() {
        let whole = ItemBudget::new(100);
        let a = whole.share(40);
        let b = whole.share(40);
        let a1 = a.try_reserve(40).unwrap();
        assert!(a.try_reserve(1).is_none(), "a's share is full");
        let b1 = b.try_reserve(40).unwrap();
        assert_eq!(whole.used(), 80);
        let rest = whole.try_reserve(20).unwrap();
        // The whole is full: a fresh share has room, but reserving fails and leaves it empty.
        let c = whole.share(40);
        assert!(c.try_reserve(1).is_none());
        assert_eq!(c.used(), 0);
        drop(b1);
        let b2 = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 40);
        drop((a1, b2, rest));
        assert_eq!((whole.used(), a.used(), b.used()), (0, 0, 0));
    }
}
