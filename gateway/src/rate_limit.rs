//! Token buckets, per tenant and per client address: with the body size and the tenant check,
//! the only checks before the write-ahead log, so 429, 413 and 403 are the answers that may come
//! without the body being logged (I1).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most client addresses tracked at once. Past it, addresses whose bucket has refilled are
/// forgotten (a full bucket is the same as a new one); if every one is still busy, all are
/// forgotten: a flood from that many addresses is not something one gateway's limiter can stop,
/// and refusing everyone would make it worse.
const MAX_ADDRESSES: usize = 65_536;

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

impl Bucket {
    fn full(rate: f64, burst: f64, now: Instant) -> Self {
        Bucket {
            rate,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
    }

    /// Takes one token; `Err(seconds)` until the next one when empty.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
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
            .map(|(tenant, rate, burst)| (tenant, Bucket::full(rate, burst, now)))
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
        match buckets.get_mut(tenant) {
            Some(bucket) => bucket.take(now),
            None => Ok(()),
        }
    }
}

/// Token buckets by client address, every address with the same rate and burst.
#[derive(Debug)]
pub struct AddressLimiter {
    /// Tokens per second per address (0: no limit).
    rate: f64,
    /// Capacity per address.
    burst: f64,
    /// Buckets of the addresses seen lately.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AddressLimiter {
    /// `rate` submissions per second per address with bursts of `burst`; a rate of 0 turns the
    /// limit off.
    pub fn new(rate: f64, burst: f64) -> Self {
        AddressLimiter {
            rate,
            burst,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `address` (none known: not limited, as for a Unix socket).
    pub fn try_acquire(&self, address_opt: Option<IpAddr>) -> Result<(), u64> {
        self.try_acquire_at(address_opt, Instant::now())
    }

    fn try_acquire_at(&self, address_opt: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let Some(address) = address_opt.filter(|_| self.rate > 0.0) else {
            return Ok(());
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&address) {
            buckets.retain(|_, bucket| {
                bucket.refill(now);
                bucket.tokens < bucket.burst
            });
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        buckets
            .entry(address)
            .or_insert_with(|| Bucket::full(self.rate, self.burst, now))
            .take(now)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
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

    #[test]
    fn each_address_has_its_own_bucket() {
        let limiter = AddressLimiter::new(1.0, 2.0);
        let (one, two) = (
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        );
        let start = Instant::now();
        assert!(limiter.try_acquire_at(one, start).is_ok());
        assert!(limiter.try_acquire_at(one, start).is_ok());
        assert_eq!(limiter.try_acquire_at(one, start), Err(1));
        assert!(
            limiter.try_acquire_at(two, start).is_ok(),
            "another address"
        );
        assert!(
            limiter
                .try_acquire_at(one, start + Duration::from_secs(1))
                .is_ok()
        );
        // No address (a Unix socket) and a limit of 0 are never limited.
        assert!(limiter.try_acquire_at(None, start).is_ok());
        let off = AddressLimiter::new(0.0, 0.0);
        for _ in 0..10 {
            assert!(off.try_acquire_at(one, start).is_ok());
        }
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn the_address_table_stays_bounded() {
        let limiter = AddressLimiter::new(1.0, 1.0);
        let start = Instant::now();
        let address = |n: u32| Some(IpAddr::V4(Ipv4Addr::from(n)));
        // Every address spends its only token: none is idle when the table fills up.
        for n in 0..MAX_ADDRESSES as u32 {
            assert!(limiter.try_acquire_at(address(n), start).is_ok());
        }
        assert_eq!(limiter.tracked(), MAX_ADDRESSES);
        assert!(limiter.try_acquire_at(address(u32::MAX), start).is_ok());
        assert_eq!(limiter.tracked(), 1, "all busy: forgotten, not refused");
        // Refilled buckets are the ones forgotten first.
        for n in 0..MAX_ADDRESSES as u32 - 1 {
            let _ = limiter.try_acquire_at(address(n), start);
        }
        let later = start + Duration::from_secs(5);
        assert!(limiter.try_acquire_at(address(7), later).is_ok());
        assert!(limiter.try_acquire_at(address(u32::MAX - 1), later).is_ok());
        assert!(limiter.tracked() <= 2, "{}", limiter.tracked());
    }
}
