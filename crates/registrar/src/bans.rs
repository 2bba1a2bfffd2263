//! Brute-force protection: failed authentications counted per source IP in
//! a sliding window; past the limit the source is banned for a while and
//! every message from it is dropped unanswered. Sans-IO (time is passed in)
//! and bounded: the table never holds more than `max_tracked` addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// When to ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures within `window` that trigger a ban (0 disables banning).
    pub after_failures: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban_time: Duration,
    /// Most addresses tracked at once; the stalest are forgotten first.
    pub max_tracked: usize,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            after_failures: 10,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(600),
            max_tracked: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures in the current window.
    failures: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; not (yet) banned.
    Counted(u32),
    /// This failure started a ban (log it, once).
    Banned,
}

/// Per-source failure counts and bans.
#[derive(Debug)]
pub struct BanList {
    policy: BanPolicy,
    entries: HashMap<IpAddr, Entry>,
}

impl BanList {
    /// An empty list with `policy`.
    pub fn new(policy: BanPolicy) -> BanList {
        BanList {
            policy,
            entries: HashMap::new(),
        }
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.entries
            .get(&ip)
            .and_then(|e| e.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Records a failed authentication from `ip`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> FailureOutcome {
        if self.policy.after_failures == 0 {
            return FailureOutcome::Counted(0);
        }
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.policy.max_tracked {
            self.evict(now);
        }
        let policy = self.policy;
        let entry = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            window_start: now,
            banned_until: None,
            last_seen: now,
        });
        entry.last_seen = now;
        if entry.banned_until.is_some_and(|until| now < until) {
            return FailureOutcome::Counted(entry.failures);
        }
        if now.saturating_duration_since(entry.window_start) > policy.window {
            entry.failures = 0;
            entry.window_start = now;
            entry.banned_until = None;
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= policy.after_failures {
            entry.banned_until = Some(now + policy.ban_time);
            entry.failures = 0;
            entry.window_start = now;
            return FailureOutcome::Banned;
        }
        FailureOutcome::Counted(entry.failures)
    }

    /// A successful authentication from `ip` clears its failure count.
    pub fn record_success(&mut self, ip: IpAddr) {
        if let Some(e) = self.entries.get(&ip)
            && e.banned_until.is_none()
        {
            self.entries.remove(&ip);
        }
    }

    /// Forgets entries that are neither banned nor inside their window.
    pub fn sweep(&mut self, now: Instant) {
        let window = self.policy.window;
        self.entries.retain(|_, e| {
            e.banned_until.is_some_and(|until| now < until)
                || now.saturating_duration_since(e.window_start) <= window
        });
    }

    /// Number of sources banned at `now`.
    pub fn active_bans(&self, now: Instant) -> usize {
        self.entries
            .values()
            .filter(|e| e.banned_until.is_some_and(|until| now < until))
            .count()
    }

    /// Makes room: drop expired entries, then the least recently seen
    /// unbanned ones; active bans are kept unless nothing else is left.
    fn evict(&mut self, now: Instant) {
        self.sweep(now);
        if self.entries.len() < self.policy.max_tracked {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.banned_until.is_some(), e.last_seen))
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            self.entries.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BanPolicy {
        BanPolicy {
            after_failures: 3,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(600),
            max_tracked: 4,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn bans_after_n_failures_within_the_window() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        assert_eq!(bans.record_failure(ip(1), t0), FailureOutcome::Counted(1));
        assert_eq!(bans.record_failure(ip(1), t0), FailureOutcome::Counted(2));
        assert_eq!(bans.record_failure(ip(1), t0), FailureOutcome::Banned);
        assert!(bans.is_banned(ip(1), t0));
        assert!(!bans.is_banned(ip(2), t0));
        assert_eq!(bans.active_bans(t0), 1);
        // Further failures during the ban do not re-log it.
        assert!(matches!(
            bans.record_failure(ip(1), t0),
            FailureOutcome::Counted(_)
        ));
        // The ban ends on time.
        let later = t0 + Duration::from_secs(601);
        assert!(!bans.is_banned(ip(1), later));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        bans.record_failure(ip(1), t0);
        bans.record_failure(ip(1), t0);
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(bans.record_failure(ip(1), t1), FailureOutcome::Counted(1));
        assert!(!bans.is_banned(ip(1), t1));
    }

    #[test]
    fn success_clears_the_count() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        bans.record_failure(ip(1), t0);
        bans.record_failure(ip(1), t0);
        bans.record_success(ip(1));
        assert_eq!(bans.record_failure(ip(1), t0), FailureOutcome::Counted(1));
    }

    #[test]
    fn table_is_bounded_and_keeps_bans() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        for _ in 0..3 {
            bans.record_failure(ip(1), t0);
        }
        for n in 2..=200 {
            bans.record_failure(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(bans.entries.len() <= 4);
        assert!(bans.is_banned(ip(1), t0), "an active ban survives eviction");
    }

    #[test]
    fn zero_disables_banning() {
        let t0 = Instant::now();
        let mut bans = BanList::new(BanPolicy {
            after_failures: 0,
            ..policy()
        });
        for _ in 0..100 {
            bans.record_failure(ip(1), t0);
        }
        assert!(!bans.is_banned(ip(1), t0));
    }
}
