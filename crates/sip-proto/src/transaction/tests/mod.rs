//! Tests of the §17 machines with a fake clock: an `Instant` base plus
//! milliseconds.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

mod client;
mod server;

/// A fake clock: every time is `base + ms`.
pub(super) struct Clock {
    base: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    pub(super) fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.base).as_millis()).unwrap()
    }
}

/// What the timer driver needs from every machine.
pub(super) trait Machine {
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant) -> Vec<Action>;
    fn is_terminated(&self) -> bool;
}

macro_rules! machine {
    ($t:ty) => {
        impl Machine for $t {
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
                <$t>::handle_timeout(self, now)
            }
            fn is_terminated(&self) -> bool {
                <$t>::is_terminated(self)
            }
        }
    };
}
machine!(ClientInvite);
machine!(ClientNonInvite);
machine!(ServerInvite);
machine!(ServerNonInvite);

/// Fires a machine's timers at exactly their deadlines, up to and including
/// `until_ms`, and returns each firing as (ms, actions).
pub(super) fn run_timers<M: Machine>(
    m: &mut M,
    clock: &Clock,
    until_ms: u64,
) -> Vec<(u64, Vec<Action>)> {
    let mut fired = Vec::new();
    for _ in 0..10_000 {
        if m.is_terminated() {
            assert_eq!(m.poll_timeout(), None);
            break;
        }
        let Some(at) = m.poll_timeout() else { break };
        let ms = clock.ms(at);
        if ms > until_ms {
            break;
        }
        fired.push((ms, m.handle_timeout(at)));
    }
    fired
}

/// The times at which the firings transmitted something.
pub(super) fn transmit_times(fired: &[(u64, Vec<Action>)]) -> Vec<u64> {
    fired
        .iter()
        .filter(|(_, actions)| actions.iter().any(|a| matches!(a, Action::Transmit(_))))
        .map(|(ms, _)| *ms)
        .collect()
}

pub(super) fn msg(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// Millisecond offsets of a retransmission timer starting at `start` with
/// interval `t1`, doubling, capped at `cap`, strictly before `end`.
pub(super) fn schedule(start: u64, t1: u64, cap: Option<u64>, end: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut at, mut interval) = (start + t1, t1);
    while at < end {
        out.push(at);
        interval = cap.map_or(interval * 2, |cap| (interval * 2).min(cap));
        at += interval;
    }
    out
}

#[test]
fn schedule_helper_matches_the_rfc_examples() {
    // Timer A with T1 = 500 ms: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (§17.1.1.2).
    assert_eq!(
        schedule(0, 500, None, 32_000),
        [500, 1_500, 3_500, 7_500, 15_500, 31_500]
    );
    // Timer E: intervals 500 ms, 1, 2, 4, 4, 4 s... (§17.1.2.2).
    assert_eq!(
        &schedule(0, 500, Some(4_000), 32_000)[..6],
        [500, 1_500, 3_500, 7_500, 11_500, 15_500]
    );
}

/// A deterministic pseudo-random sequence (xorshift64), so the sequence
/// test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn status(&mut self) -> u16 {
        const CODES: [u16; 12] = [0, 99, 100, 180, 183, 200, 202, 302, 486, 603, 699, 700];
        CODES[self.below(CODES.len() as u64) as usize]
    }
}

/// Checks the invariants of one batch of actions from a machine that was
/// or was not terminated before: nothing after Terminated, Terminated last.
fn check_batch(was_terminated: bool, is_terminated: bool, actions: &[Action]) {
    if was_terminated {
        assert!(actions.is_empty(), "action after Terminated: {actions:?}");
        return;
    }
    let ends = actions.iter().filter(|a| **a == Action::Terminated).count();
    assert!(ends <= 1, "{actions:?}");
    if ends == 1 {
        assert_eq!(actions.last(), Some(&Action::Terminated));
    }
    assert_eq!(ends == 1, is_terminated, "{actions:?}");
}

#[test]
fn random_event_sequences_never_panic_and_end_once() {
    let clock = Clock::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let extreme = Timers {
        t1: Duration::MAX,
        t2: Duration::ZERO,
        t4: Duration::MAX,
    };
    for round in 0..2_000 {
        let reliability = if round % 2 == 0 {
            Reliability::Unreliable
        } else {
            Reliability::Reliable
        };
        let timers = match round % 5 {
            0 => extreme,
            1 => Timers {
                t1: Duration::ZERO,
                t2: Duration::ZERO,
                t4: Duration::ZERO,
            },
            _ => Timers::default(),
        };
        let mut now: u64 = 0;
        let (mut ci, _) = ClientInvite::new(msg("INVITE"), reliability, timers, clock.at(0));
        let (mut cn, _) = ClientNonInvite::new(msg("OPTIONS"), reliability, timers, clock.at(0));
        let mut si = ServerInvite::new(reliability, timers, clock.at(0));
        let mut sn = ServerNonInvite::new(reliability, timers);
        for _ in 0..40 {
            // Time mostly moves forward, sometimes backwards.
            now = match rng.below(10) {
                0 => now.saturating_sub(rng.below(1_000)),
                _ => now + rng.below(8_000),
            };
            let t = clock.at(now);
            let event = rng.below(5);
            let status = rng.status();

            let was = ci.is_terminated();
            let actions = match event {
                0 => ci.handle_response(status, t),
                1 => ci.handle_transport_error(t),
                _ => ci.handle_timeout(t),
            };
            check_batch(was, ci.is_terminated(), &actions);

            let was = cn.is_terminated();
            let actions = match event {
                0 => cn.handle_response(status, t),
                1 => cn.handle_transport_error(t),
                _ => cn.handle_timeout(t),
            };
            check_batch(was, cn.is_terminated(), &actions);

            let was = si.is_terminated();
            let actions = match event {
                0 => si.send_response(status, msg("response"), t),
                1 if rng.below(4) == 0 => si.handle_transport_error(t),
                1 => si.handle_ack(t),
                2 => si.handle_request(t),
                _ => si.handle_timeout(t),
            };
            check_batch(was, si.is_terminated(), &actions);

            let was = sn.is_terminated();
            let actions = match event {
                0 => sn.send_response(status, msg("response"), t),
                1 if rng.below(4) == 0 => sn.handle_transport_error(t),
                2 => sn.handle_request(t),
                _ => sn.handle_timeout(t),
            };
            check_batch(was, sn.is_terminated(), &actions);

            for (terminated, deadline) in [
                (ci.is_terminated(), ci.poll_timeout()),
                (cn.is_terminated(), cn.poll_timeout()),
                (si.is_terminated(), si.poll_timeout()),
                (sn.is_terminated(), sn.poll_timeout()),
            ] {
                if terminated {
                    assert_eq!(deadline, None);
                }
            }
        }
    }
}

#[test]
fn terminated_machines_have_no_timer() {
    let clock = Clock::new();
    let t = clock.at(0);
    let (mut ci, _) = ClientInvite::new(msg("I"), Reliability::Unreliable, Timers::default(), t);
    ci.handle_transport_error(t);
    let (mut cn, _) = ClientNonInvite::new(msg("O"), Reliability::Unreliable, Timers::default(), t);
    cn.handle_transport_error(t);
    let mut si = ServerInvite::new(Reliability::Unreliable, Timers::default(), t);
    si.handle_transport_error(t);
    let mut sn = ServerNonInvite::new(Reliability::Unreliable, Timers::default());
    sn.handle_transport_error(t);
    assert_eq!(
        [
            ci.poll_timeout(),
            cn.poll_timeout(),
            si.poll_timeout(),
            sn.poll_timeout()
        ],
        [None; 4]
    );
}

#[test]
fn timers_defaults_and_timeout() {
    let timers = Timers::default();
    assert_eq!(timers.t1, Duration::from_millis(500));
    assert_eq!(timers.t2, Duration::from_secs(4));
    assert_eq!(timers.t4, Duration::from_secs(5));
    assert_eq!(timers.timeout(), Duration::from_secs(32));
    let huge = Timers {
        t1: Duration::MAX,
        ..timers
    };
    assert_eq!(huge.timeout(), Duration::MAX);
    assert!(Reliability::Reliable.is_reliable());
    assert!(!Reliability::Unreliable.is_reliable());
}
