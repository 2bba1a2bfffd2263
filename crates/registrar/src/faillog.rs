//! Rate limit for the info-level "authentication failed" log line: at most
//! one line per (source, extension) per window, the next line counting the
//! ones held back. Sans-clock: the caller passes `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Default window: at most one line per source and extension this often.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Most (source, extension) pairs remembered; past it, pairs whose window
/// has run out are forgotten, and if none has, new pairs are held back
/// (and counted in [`FailureLog::overflowed`]) until one runs out.
const MAX_KEYS: usize = 4_096;

/// Decides which failed authentications are logged.
#[derive(Debug)]
pub struct FailureLog {
    window: Duration,
    last: HashMap<(IpAddr, String), Entry>,
    overflowed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    logged_at: Instant,
    held_back: u64,
}

impl FailureLog {
    /// At most one line per (source, extension) per `window`.
    pub fn new(window: Duration) -> FailureLog {
        FailureLog {
            window,
            last: HashMap::new(),
            overflowed: 0,
        }
    }

    /// A failure of `user` from `ip` at `now`: `Some(n)` to log it, `n`
    /// being how many failures of that pair were held back since its
    /// last line; `None` to hold this one back.
    pub fn note(&mut self, ip: IpAddr, user: &str, now: Instant) -> Option<u64> {
        let key = (ip, user.to_owned());
        if let Some(entry) = self.last.get_mut(&key) {
            if now.saturating_duration_since(entry.logged_at) < self.window {
                entry.held_back += 1;
                return None;
            }
            let held_back = entry.held_back;
            *entry = Entry {
                logged_at: now,
                held_back: 0,
            };
            return Some(held_back);
        }
        if self.last.len() >= MAX_KEYS {
            let window = self.window;
            self.last
                .retain(|_, e| now.saturating_duration_since(e.logged_at) < window);
            if self.last.len() >= MAX_KEYS {
                self.overflowed += 1;
                return None;
            }
        }
        self.last.insert(
            key,
            Entry {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }

    /// Failures never logged because too many pairs were failing at once.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_pair_per_window_with_the_count_held_back() {
        let mut log = FailureLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        assert_eq!(log.note(a, "1001", t0), Some(0));
        assert_eq!(log.note(a, "1001", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(a, "1001", t0 + Duration::from_secs(9)), None);
        // Another extension, another source: their own lines.
        assert_eq!(log.note(a, "1002", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(log.note(b, "1001", t0 + Duration::from_secs(2)), Some(0));
        // The window over: logged, with the two held back.
        assert_eq!(log.note(a, "1001", t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(log.note(a, "1001", t0 + Duration::from_secs(11)), None);
        assert_eq!(log.note(a, "1001", t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn memory_is_bounded() {
        let mut log = FailureLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let ip = IpAddr::from([192, 0, 2, 1]);
        for i in 0..MAX_KEYS {
            assert_eq!(log.note(ip, &i.to_string(), t0), Some(0));
        }
        assert_eq!(log.note(ip, "new", t0), None);
        assert_eq!(log.overflowed(), 1);
        // Once the windows run out, the old pairs are forgotten.
        assert_eq!(log.note(ip, "new", t0 + Duration::from_secs(10)), Some(0));
        assert!(log.last.len() <= 1);
    }
}
