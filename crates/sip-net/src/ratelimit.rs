//! A token bucket per source address for UDP, checked before a datagram
//! is parsed (RFC 3261 §26.3.2.4 on flooding): each source may send
//! `rate` datagrams a second on average and `burst` at once; what it sends
//! beyond that is dropped and counted in `sip_rate_limited_total`.
//!
//! IPv4 sources are limited per address, IPv6 sources per /64 (one
//! host's privacy addresses share a bucket). The table is sharded so the
//! receive loops rarely contend, and bounded: a bucket that has refilled
//! is the same as no bucket, so such entries are swept when a shard fills;
//! if a shard is still full of active senders (a flood from very many
//! addresses, which per-source limits cannot stop anyway), a new source is
//! let through unlimited rather than turned away.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Shards of the table; a power of two.
const SHARDS: usize = 64;
/// Sources tracked per shard (about 260,000 in all, some 10 MB).
const MAX_PER_SHARD: usize = 4096;
/// A full shard is swept at most this often (a sweep walks the shard).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// Per-source token buckets.
pub(crate) struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    dropped: metrics::Counter,
}

impl RateLimiter {
    /// A limiter of `rate` datagrams a second with bursts of `burst`;
    /// `None` when `rate` is 0 (no limit).
    pub(crate) fn new(rate: u32, burst: u32) -> Option<RateLimiter> {
        if rate == 0 {
            return None;
        }
        let dropped = metrics::counter!("sip_rate_limited_total", "transport" => "udp");
        // Shown at 0 before anything is dropped.
        dropped.increment(0);
        Some(RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            dropped,
        })
    }

    /// Whether a datagram from `source` arriving at `now` may be processed;
    /// a `false` is counted.
    pub(crate) fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let key = bucket_key(source);
        let idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards[idx]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let shard = &mut *shard;
        if !shard.buckets.contains_key(&key) && shard.buckets.len() >= MAX_PER_SHARD {
            if shard
                .last_sweep
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY)
            {
                shard.last_sweep = Some(now);
                shard
                    .buckets
                    .retain(|_, b| self.refilled(b, now) < self.burst);
            }
            if shard.buckets.len() >= MAX_PER_SHARD {
                return true;
            }
        }
        let bucket = shard.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.dropped.increment(1);
            false
        }
    }

    /// The bucket's tokens at `now`.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        (bucket.tokens + elapsed * self.rate).min(self.burst)
    }
}

/// IPv4 addresses as they are; IPv6 addresses cut to their /64.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate() {
        let limiter = RateLimiter::new(10, 5).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let passed = (0..20).filter(|_| limiter.allow(ip, t0)).count();
        assert_eq!(passed, 5);
        // 10 a second: after 300 ms, three more.
        let t1 = t0 + Duration::from_millis(300);
        let passed = (0..20).filter(|_| limiter.allow(ip, t1)).count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn sources_have_their_own_buckets_and_ipv6_shares_a_64() {
        let limiter = RateLimiter::new(1, 1).unwrap();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.allow(a, now));
        assert!(!limiter.allow(a, now));
        assert!(limiter.allow(b, now));
        let v6a: IpAddr = "fd00::1".parse().unwrap();
        let v6b: IpAddr = "fd00::2".parse().unwrap();
        let v6c: IpAddr = "fd00:0:0:1::1".parse().unwrap();
        assert!(limiter.allow(v6a, now));
        assert!(!limiter.allow(v6b, now), "same /64");
        assert!(limiter.allow(v6c, now), "another /64");
    }

    #[test]
    fn rate_zero_is_no_limiter() {
        assert!(RateLimiter::new(0, 100).is_none());
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = RateLimiter::new(1, 2).unwrap();
        let now = Instant::now();
        for n in 0..(SHARDS * MAX_PER_SHARD + 10_000) as u32 {
            limiter.allow(IpAddr::V4(n.into()), now);
        }
        let tracked: usize = limiter
            .shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum();
        assert!(tracked <= SHARDS * MAX_PER_SHARD);
    }
}
