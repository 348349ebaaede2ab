//! Per-tenant token buckets: the only check before the write-ahead log (with the body size), so a
//! 429 is the one answer besides 413 that may come without the body being logged (I1).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// One bucket.
#[derive(Debug)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// Capacity.
    burst: f64,
    /// Tokens now.
    tokens: f64,
    /// Last refill.
    refilled_at: Instant,
}

/// Token buckets by tenant; tenants without a configured rate are not limited.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Buckets for `(tenant, rate per second, burst)`; a rate of 0 means unlimited.
    pub fn new(limits: impl IntoIterator<Item = (String, f64, f64)>) -> Self {
        let now = Instant::now();
        let buckets = limits
            .into_iter()
            .filter(|(_, rate, _)| *rate > 0.0)
            .map(|(tenant, rate, burst)| {
                (
                    tenant,
                    Bucket {
                        rate,
                        burst,
                        tokens: burst,
                        refilled_at: now,
                    },
                )
            })
            .collect();
        RateLimiter {
            buckets: Mutex::new(buckets),
        }
    }

    /// Takes one token for `tenant`; `Err(seconds)` to advertise in `Retry-After` when empty.
    pub fn try_acquire(&self, tenant: &str) -> Result<(), u64> {
        self.try_acquire_at(tenant, Instant::now())
    }

    fn try_acquire_at(&self, tenant: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(bucket) = buckets.get_mut(tenant) else {
            return Ok(());
        };
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(bucket.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / bucket.rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new([("a".to_owned(), 2.0, 2.0)]);
        let start = Instant::now();
        assert!(limiter.try_acquire_at("a", start).is_ok());
        assert!(limiter.try_acquire_at("a", start).is_ok());
        assert_eq!(limiter.try_acquire_at("a", start), Err(1));
        assert!(
            limiter
                .try_acquire_at("a", start + Duration::from_millis(600))
                .is_ok()
        );
        assert!(limiter.try_acquire_at("other", start).is_ok());
    }
}
