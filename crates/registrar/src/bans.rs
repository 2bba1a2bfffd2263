//! Brute-force protection: failed authentications counted per source
//! address and per user in a sliding window. A source past the limit is
//! banned (every message from it dropped unanswered); a user past the limit
//! is locked (even the right password is refused) for `ban_time`.
//! Sans-IO (time is passed in) and bounded: each table holds at most
//! `max_tracked` entries.
//!
//! What counts, and what is never punished:
//! - Only guesses count: wrong answers to a nonce issued to the same source
//!   (the registrar binds nonces to [`Source::nonce_binding`]). A spoofed
//!   packet cannot answer such a nonce, so it cannot get anyone banned.
//! - A success clears nothing: a user's failures count from every source
//!   together, so one valid REGISTER between guesses does not reset them.
//! - A source holding live registrations is not banned for the failures of
//!   *another* user (an office NAT with a colleague guessing: the colleague's
//!   victim is locked, the office stays up); a source inside a trusted
//!   network is never banned. Neither exempts a user from its lock.
//! - IPv6 sources are grouped by /64 (one host's privacy addresses are one
//!   source); IPv4 by address.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use ipnet::IpNet;
use serde::Serialize;

/// Longest user name kept as a key; longer names (never an extension) are
/// cut, so a flood of long names cannot inflate the table.
const MAX_USER_KEY: usize = 64;
/// Sources remembered per user for the listing.
const SOURCES_PER_USER: usize = 8;

/// When to ban and lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures within `window` that ban a source or lock a user (0
    /// disables both).
    pub after_failures: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long a ban or lock lasts.
    pub ban_time: Duration,
    /// Most sources, and most users, tracked at once; the stalest are
    /// forgotten first.
    pub max_tracked: usize,
    /// Networks whose sources are never banned (users are still locked).
    pub trusted: Vec<IpNet>,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            after_failures: 10,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(600),
            max_tracked: 100_000,
            trusted: Vec::new(),
        }
    }
}

/// Parses a network for [`BanPolicy::trusted`]: `10.0.0.0/8`,
/// `2001:db8::/32`, or a bare address (one host).
pub fn parse_network(text: &str) -> Result<IpNet, ipnet::AddrParseError> {
    let text = text.trim();
    match text.parse::<IpNet>() {
        Ok(net) => Ok(net.trunc()),
        Err(e) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| e),
    }
}

/// One source as bans see it: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` belongs to (an IPv4-mapped IPv6 address is IPv4).
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    Source(IpAddr::from(octets))
                }
            },
        }
    }

    /// The bytes a nonce for this source is bound to.
    pub fn nonce_binding(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        match self.0 {
            IpAddr::V4(v4) => {
                out[0] = 4;
                out[1..5].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out[0] = 6;
                out[1..].copy_from_slice(&v6.octets());
            }
        }
        out
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A failure count in a window, and the ban or lock it led to.
#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    window_start: Instant,
    until: Option<Instant>,
    last_seen: Instant,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter {
            failures: 0,
            window_start: now,
            until: None,
            last_seen: now,
        }
    }

    fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Counts one failure; `true` if it started a ban or lock.
    fn hit(&mut self, now: Instant, policy: &BanPolicy) -> bool {
        self.last_seen = now;
        if self.active(now) {
            return false;
        }
        if now.saturating_duration_since(self.window_start) > policy.window {
            self.failures = 0;
            self.window_start = now;
            self.until = None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= policy.after_failures {
            self.until = Some(now + policy.ban_time);
            self.failures = 0;
            self.window_start = now;
            return true;
        }
        false
    }

    /// Neither active nor inside its window: nothing to remember.
    fn forgettable(&self, now: Instant, window: Duration) -> bool {
        !self.active(now) && now.saturating_duration_since(self.window_start) > window
    }

    fn remaining(&self, now: Instant) -> Duration {
        self.until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }
}

#[derive(Debug, Clone)]
struct UserEntry {
    counter: Counter,
    /// Failures per source in the current window (at most
    /// [`SOURCES_PER_USER`]).
    sources: Vec<(Source, u32)>,
    /// The per-source failures that caused the current lock.
    locked_by: Vec<(Source, u32)>,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureOutcome {
    /// This failure started a ban of its source (log it, once).
    pub banned: bool,
    /// This failure locked its user (log it, once).
    pub locked: bool,
    /// The failure counted towards its source's ban (not trusted, not
    /// holding another user's registrations).
    pub source_counted: bool,
}

/// A banned source, for the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BannedSource {
    /// The address, or `PREFIX/64` for IPv6.
    pub source: String,
    /// Seconds until the ban ends.
    pub remaining_secs: u64,
}

/// A locked user, for the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LockedUser {
    /// The user name the failures were for (known or not).
    pub user: String,
    /// Seconds until the lock ends.
    pub remaining_secs: u64,
    /// Failures per source that led to the lock.
    pub failures_by_source: Vec<(String, u32)>,
}

/// Every active ban and lock.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Bans {
    /// Banned sources, sorted.
    pub sources: Vec<BannedSource>,
    /// Locked users, sorted.
    pub users: Vec<LockedUser>,
}

/// Per-source and per-user failure counts, bans and locks.
#[derive(Debug)]
pub struct BanList {
    policy: BanPolicy,
    sources: HashMap<Source, Counter>,
    users: HashMap<String, UserEntry>,
    /// Users with live authenticated registrations, per source, until when.
    holders: HashMap<Source, HashMap<String, Instant>>,
}

fn user_key(user: &str) -> &str {
    if user.len() <= MAX_USER_KEY {
        return user;
    }
    let mut end = MAX_USER_KEY;
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    &user[..end]
}

impl BanList {
    /// An empty list with `policy`.
    pub fn new(policy: BanPolicy) -> BanList {
        BanList {
            policy,
            sources: HashMap::new(),
            users: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    /// Whether `ip` is inside a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.policy.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether `ip`'s source is banned at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&Source::of(ip))
            .is_some_and(|c| c.active(now))
    }

    /// Whether `user` is locked at `now`.
    pub fn is_locked(&self, user: &str, now: Instant) -> bool {
        self.users
            .get(user_key(user))
            .is_some_and(|e| e.counter.active(now))
    }

    /// Records a failed guess for `user` from `ip` (see the module docs for
    /// what should be recorded at all).
    pub fn record_failure(&mut self, ip: IpAddr, user: &str, now: Instant) -> FailureOutcome {
        let mut outcome = FailureOutcome::default();
        if self.policy.after_failures == 0 {
            return outcome;
        }
        let source = Source::of(ip);
        let key = user_key(user);
        if !self.users.contains_key(key) && self.users.len() >= self.policy.max_tracked {
            make_room(&mut self.users, &self.policy, now, |e| &e.counter);
        }
        let entry = self.users.entry(key.to_owned()).or_insert(UserEntry {
            counter: Counter::new(now),
            sources: Vec::new(),
            locked_by: Vec::new(),
        });
        if !entry.counter.active(now) {
            if entry.counter.forgettable(now, self.policy.window) {
                entry.sources.clear();
            }
            let room = entry.sources.len() < SOURCES_PER_USER;
            match entry.sources.iter_mut().find(|(s, _)| *s == source) {
                Some((_, n)) => *n = n.saturating_add(1),
                None if room => entry.sources.push((source, 1)),
                None => {}
            }
            if entry.counter.hit(now, &self.policy) {
                outcome.locked = true;
                entry.locked_by = std::mem::take(&mut entry.sources);
            }
        } else {
            entry.counter.last_seen = now;
        }

        if self.is_trusted(ip) || self.holds_other_users(source, key, now) {
            return outcome;
        }
        outcome.source_counted = true;
        if !self.sources.contains_key(&source) && self.sources.len() >= self.policy.max_tracked {
            make_room(&mut self.sources, &self.policy, now, |c| c);
        }
        let counter = self
            .sources
            .entry(source)
            .or_insert_with(|| Counter::new(now));
        outcome.banned = counter.hit(now, &self.policy);
        outcome
    }

    /// Whether `source` holds live registrations of anyone but `user`.
    fn holds_other_users(&self, source: Source, user: &str, now: Instant) -> bool {
        self.holders
            .get(&source)
            .is_some_and(|users| users.iter().any(|(u, until)| u != user && now < *until))
    }

    /// `user` now has authenticated registrations from `ip` that last until
    /// `until` (`None`: none left from there).
    pub fn registered(&mut self, ip: IpAddr, user: &str, until: Option<Instant>) {
        let source = Source::of(ip);
        match until {
            Some(until) => {
                self.holders
                    .entry(source)
                    .or_default()
                    .insert(user.to_owned(), until);
            }
            None => {
                if let Some(users) = self.holders.get_mut(&source) {
                    users.remove(user);
                    if users.is_empty() {
                        self.holders.remove(&source);
                    }
                }
            }
        }
    }

    /// Forgets entries that are neither active nor inside their window,
    /// and registrations that have expired.
    pub fn sweep(&mut self, now: Instant) {
        let window = self.policy.window;
        self.sources.retain(|_, c| !c.forgettable(now, window));
        self.users
            .retain(|_, e| !e.counter.forgettable(now, window));
        self.holders.retain(|_, users| {
            users.retain(|_, until| now < *until);
            !users.is_empty()
        });
    }

    /// Number of sources banned at `now`.
    pub fn active_bans(&self, now: Instant) -> usize {
        self.sources.values().filter(|c| c.active(now)).count()
    }

    /// Number of users locked at `now`.
    pub fn active_locks(&self, now: Instant) -> usize {
        self.users
            .values()
            .filter(|e| e.counter.active(now))
            .count()
    }

    /// Every ban and lock active at `now`, sorted.
    pub fn list(&self, now: Instant) -> Bans {
        let mut sources: Vec<(Source, u64)> = self
            .sources
            .iter()
            .filter(|(_, c)| c.active(now))
            .map(|(s, c)| (*s, c.remaining(now).as_secs().max(1)))
            .collect();
        sources.sort();
        let mut users: Vec<LockedUser> = self
            .users
            .iter()
            .filter(|(_, e)| e.counter.active(now))
            .map(|(user, e)| LockedUser {
                user: user.clone(),
                remaining_secs: e.counter.remaining(now).as_secs().max(1),
                failures_by_source: e
                    .locked_by
                    .iter()
                    .map(|(s, n)| (s.to_string(), *n))
                    .collect(),
            })
            .collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        Bans {
            sources: sources
                .into_iter()
                .map(|(s, remaining_secs)| BannedSource {
                    source: s.to_string(),
                    remaining_secs,
                })
                .collect(),
            users,
        }
    }

    /// Lifts the ban of `ip`'s source and forgets its failures; `true` if
    /// it was banned.
    pub fn unban(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .remove(&Source::of(ip))
            .is_some_and(|c| c.active(now))
    }

    /// Lifts the lock of `user` and forgets its failures; `true` if it was
    /// locked.
    pub fn unlock(&mut self, user: &str, now: Instant) -> bool {
        self.users
            .remove(user_key(user))
            .is_some_and(|e| e.counter.active(now))
    }
}

/// Makes room in a full table: drop forgettable entries, then the least
/// recently seen inactive one; active bans and locks are kept unless
/// nothing else is left.
fn make_room<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    policy: &BanPolicy,
    now: Instant,
    counter: impl Fn(&V) -> &Counter,
) {
    map.retain(|_, v| !counter(v).forgettable(now, policy.window));
    if map.len() < policy.max_tracked {
        return;
    }
    let victim = map
        .iter()
        .min_by_key(|(_, v)| {
            let c = counter(v);
            (c.active(now), c.last_seen)
        })
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        map.remove(&k);
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
            trusted: Vec::new(),
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn bans_after_n_failures_within_the_window() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        assert!(!bans.record_failure(ip(1), "a", t0).banned);
        assert!(!bans.record_failure(ip(1), "b", t0).banned);
        let third = bans.record_failure(ip(1), "c", t0);
        assert!(third.banned && third.source_counted);
        assert!(bans.is_banned(ip(1), t0));
        assert!(!bans.is_banned(ip(2), t0));
        assert_eq!(bans.active_bans(t0), 1);
        // Further failures during the ban do not re-log it.
        assert!(!bans.record_failure(ip(1), "d", t0).banned);
        // The ban ends on time.
        let later = t0 + Duration::from_secs(601);
        assert!(!bans.is_banned(ip(1), later));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        bans.record_failure(ip(1), "a", t0);
        bans.record_failure(ip(1), "a", t0);
        let t1 = t0 + Duration::from_secs(61);
        let o = bans.record_failure(ip(1), "a", t1);
        assert!(!o.banned && !o.locked);
        assert!(!bans.is_banned(ip(1), t1));
        assert!(!bans.is_locked("a", t1));
    }

    #[test]
    fn a_user_is_locked_across_sources_and_successes() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        bans.record_failure(ip(1), "1002", t0);
        // A success (a registration of another user) clears nothing.
        bans.registered(ip(1), "1001", Some(t0 + Duration::from_secs(600)));
        bans.record_failure(ip(2), "1002", t0);
        let o = bans.record_failure(ip(1), "1002", t0);
        assert!(o.locked);
        assert!(bans.is_locked("1002", t0));
        assert!(!bans.is_locked("1001", t0));
        let list = bans.list(t0);
        assert_eq!(list.users.len(), 1);
        assert_eq!(
            list.users[0].failures_by_source,
            vec![("192.0.2.1".to_owned(), 2), ("192.0.2.2".to_owned(), 1)]
        );
        assert!(bans.unlock("1002", t0));
        assert!(!bans.is_locked("1002", t0));
        assert_eq!(bans.active_locks(t0), 0);
    }

    #[test]
    fn a_source_holding_registrations_is_not_banned_for_another_user() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        bans.registered(ip(1), "1001", Some(t0 + Duration::from_secs(600)));
        for _ in 0..5 {
            let o = bans.record_failure(ip(1), "1002", t0);
            assert!(!o.source_counted && !o.banned);
        }
        assert!(!bans.is_banned(ip(1), t0));
        assert!(bans.is_locked("1002", t0));
        // Failures for its own user still count.
        for _ in 0..3 {
            bans.record_failure(ip(1), "1001", t0);
        }
        assert!(bans.is_banned(ip(1), t0));
        // Once the registration is gone, other users' failures count again.
        let t1 = t0 + Duration::from_secs(700);
        bans.registered(ip(3), "1001", Some(t0 + Duration::from_secs(600)));
        bans.registered(ip(3), "1001", None);
        for _ in 0..3 {
            bans.record_failure(ip(3), "1003", t1);
        }
        assert!(bans.is_banned(ip(3), t1));
    }

    #[test]
    fn trusted_networks_are_never_banned_but_users_are_locked() {
        let t0 = Instant::now();
        let mut bans = BanList::new(BanPolicy {
            trusted: vec![parse_network("192.0.2.0/28").unwrap()],
            ..policy()
        });
        for _ in 0..10 {
            bans.record_failure(ip(1), "1002", t0);
        }
        assert!(!bans.is_banned(ip(1), t0));
        assert!(bans.is_locked("1002", t0));
        for _ in 0..3 {
            bans.record_failure(ip(200), "x", t0);
        }
        assert!(bans.is_banned(ip(200), t0), "outside the trusted /28");
    }

    #[test]
    fn ipv6_sources_group_by_64() {
        let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::10".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of(ip(7)));
        assert_ne!(Source::of(a).nonce_binding(), Source::of(c).nonce_binding());
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        bans.record_failure(a, "u1", t0);
        bans.record_failure(b, "u2", t0);
        bans.record_failure(b, "u3", t0);
        assert!(bans.is_banned(a, t0) && bans.is_banned(b, t0));
        assert!(!bans.is_banned(c, t0));
        assert_eq!(bans.list(t0).sources[0].source, "2001:db8:1:2::/64");
        assert!(bans.unban(a, t0));
        assert!(!bans.is_banned(b, t0));
    }

    #[test]
    fn tables_are_bounded_and_keep_bans() {
        let t0 = Instant::now();
        let mut bans = BanList::new(policy());
        for _ in 0..3 {
            bans.record_failure(ip(1), "victim", t0);
        }
        for n in 2..=200 {
            let long = "x".repeat(usize::from(n) * 10);
            bans.record_failure(ip(n), &long, t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(bans.sources.len() <= 4);
        assert!(bans.users.len() <= 4);
        assert!(bans.users.keys().all(|k| k.len() <= MAX_USER_KEY));
        assert!(bans.is_banned(ip(1), t0), "an active ban survives eviction");
        assert!(
            bans.is_locked("victim", t0),
            "an active lock survives eviction"
        );
    }

    #[test]
    fn zero_disables_banning() {
        let t0 = Instant::now();
        let mut bans = BanList::new(BanPolicy {
            after_failures: 0,
            ..policy()
        });
        for _ in 0..100 {
            bans.record_failure(ip(1), "a", t0);
        }
        assert!(!bans.is_banned(ip(1), t0));
        assert!(!bans.is_locked("a", t0));
    }

    #[test]
    fn networks_parse() {
        assert!(!parse_network("10.0.0.0/8").unwrap().contains(&ip(1)));
        assert!(
            parse_network("192.0.2.9")
                .unwrap()
                .contains(&"192.0.2.9".parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            parse_network("192.0.2.77/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert!(parse_network("2001:db8::/32").is_ok());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("office").is_err());
    }
}
