//! Token buckets for tenant quotas.
//!
//! Hand-written rather than `governor`: a request must take from two buckets
//! (items and bytes) all-or-nothing, and a request split over several tenants
//! must be able to give back what it took when one of them is over quota;
//! `governor` can neither refund nor check two limiters as one.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` per second. A
//! request is admitted when the bucket holds at least `min(n, burst)` tokens,
//! and then takes all `n` (the bucket may go into debt), so a request larger
//! than the burst is not refused for ever, and over time exactly `rate`
//! tokens per second are admitted.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::config::Quota;

/// One token bucket.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens refilling at `rate` per second.
    pub fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes `n` tokens, or says how long until they would be there.
    pub fn take(&self, n: f64, now: Instant) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate).min(self.burst);
        state.at = now;
        let needed = n.min(self.burst);
        if state.tokens >= needed {
            state.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - state.tokens) / self.rate))
        }
    }

    /// Gives back `n` tokens taken by [`Bucket::take`].
    pub fn refund(&self, n: f64) {
        if let Ok(mut state) = self.state.lock() {
            state.tokens = (state.tokens + n).min(self.burst);
        }
    }
}

/// A tenant's quota for one signal: an item bucket and a byte bucket, either optional.
#[derive(Debug)]
pub struct Limiter {
    items: Option<Bucket>,
    bytes: Option<Bucket>,
}

/// Which bucket refused, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub what: &'static str,
    pub retry_after: Duration,
}

impl Limiter {
    pub fn new(quota: &Quota) -> Self {
        let items = quota.items_per_second.map(|rate| {
            let burst = quota.items_burst.map_or(rate, |b| b as f64);
            Bucket::new(rate, burst.max(1.0))
        });
        let bytes = quota.bytes_per_second.map(|rate| {
            let rate = rate.get() as f64;
            let burst = quota.bytes_burst.map_or(rate, |b| b.get() as f64);
            Bucket::new(rate, burst.max(1.0))
        });
        Limiter { items, bytes }
    }

    /// Takes `items` and `bytes` together, or neither.
    ///
    /// # Errors
    /// [`OverQuota`] with the delay after which the request would fit.
    pub fn take(&self, items: u64, bytes: u64, now: Instant) -> Result<(), OverQuota> {
        if let Some(bucket) = &self.items {
            bucket
                .take(items as f64, now)
                .map_err(|retry_after| OverQuota {
                    what: "items",
                    retry_after,
                })?;
        }
        if let Some(bucket) = &self.bytes {
            if let Err(retry_after) = bucket.take(bytes as f64, now) {
                if let Some(items_bucket) = &self.items {
                    items_bucket.refund(items as f64);
                }
                return Err(OverQuota {
                    what: "bytes",
                    retry_after,
                });
            }
        }
        Ok(())
    }

    /// Gives back what [`Limiter::take`] took.
    pub fn refund(&self, items: u64, bytes: u64) {
        if let Some(bucket) = &self.items {
            bucket.refund(items as f64);
        }
        if let Some(bucket) = &self.bytes {
            bucket.refund(bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_the_rate() {
        let start = Instant::now();
        let bucket = Bucket::new(100.0, 50.0);
        assert!(bucket.take(50.0, start).is_ok());
        let wait = bucket.take(10.0, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // 100 ms later 10 tokens are back.
        assert!(bucket
            .take(10.0, start + Duration::from_millis(100))
            .is_ok());
        assert!(bucket
            .take(1.0, start + Duration::from_millis(100))
            .is_err());
        // Over 10 s of steady asking, 100/s get through.
        let mut admitted = 0.0;
        for ms in 0..10_000u64 {
            if bucket
                .take(1.0, start + Duration::from_millis(100 + ms))
                .is_ok()
            {
                admitted += 1.0;
            }
        }
        assert!((admitted - 1000.0_f64).abs() <= 2.0, "{admitted}");
    }

    #[test]
    fn a_request_larger_than_the_burst_goes_into_debt_instead_of_waiting_for_ever() {
        let start = Instant::now();
        let bucket = Bucket::new(10.0, 5.0);
        assert!(bucket.take(20.0, start).is_ok());
        // 15 in debt: 2 s until 5 are there again.
        assert_eq!(bucket.take(5.0, start), Err(Duration::from_secs(2)));
        assert!(bucket.take(5.0, start + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn items_and_bytes_are_taken_together_or_not_at_all() {
        let start = Instant::now();
        let limiter = Limiter::new(&Quota {
            items_per_second: Some(100.0),
            items_burst: None,
            bytes_per_second: Some(crate::settings::units::ByteSize(1024)),
            bytes_burst: None,
        });
        assert!(limiter.take(10, 1024, start).is_ok());
        let refused = limiter.take(10, 100, start).unwrap_err();
        assert_eq!(refused.what, "bytes");
        // The refused request's items were given back: 90 remain.
        assert!(limiter.take(90, 0, start).is_ok());
        assert_eq!(limiter.take(1, 0, start).unwrap_err().what, "items");
        limiter.refund(90, 0);
        assert!(limiter.take(90, 0, start).is_ok());
    }
}
