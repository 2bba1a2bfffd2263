//! Per-call traces (`GET /api/v1/calls/{id}/trace`): what each of the last
//! N calls sent and received, and what its dialplan did, in order.
//!
//! Recording is cheap and never contends across calls: each call has its
//! own bounded buffer behind its own lock, found by any of its legs' ids in
//! a sharded map; a message is kept as the bytes it already was (read and
//! formatted only when someone asks). The ring of recent calls is locked
//! once when a call starts. This crate keeps messages as opaque bytes:
//! `chan-sip` records them, the binary reads them.
//!
//! An INVITE refused before it becomes a call (the 407 of digest
//! authentication's first round, a wrong password) is traced too, under
//! its Call-ID: the call that follows with credentials continues that
//! trace, and a Call-ID that is only ever refused stays findable. Those
//! attempts are kept in a second ring of the same capacity, so a flood of
//! unauthenticated INVITEs never pushes calls' traces out.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::cdr::unix_ms;

const SHARDS: usize = 16;

/// Most events kept per call; later ones are counted, not kept.
pub const MAX_EVENTS: usize = 300;

/// Most legs (ids) one call is found by.
const MAX_LEGS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these; a poisoned one is intact.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thing that happened to a call.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    /// Unix ms.
    pub at_ms: u64,
    /// What.
    pub what: TraceWhat,
}

/// What a trace event is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TraceWhat {
    /// A signalling message, as it was on the wire.
    Message {
        /// Received (`true`) or sent.
        inbound: bool,
        /// The peer (`udp:192.0.2.1:5060`).
        peer: TracePeer,
        /// The message.
        bytes: Bytes,
    },
    /// A dialplan step or what the call made of one.
    Step {
        /// The script's `file:line`, if it came from a script.
        location: Option<String>,
        /// What it did (`call:dial("1002")`, `dialled 2 contacts`).
        text: String,
    },
}

/// Where a traced message came from or went to; shown as
/// `udp:192.0.2.1:5060`. Kept as it is and formatted only when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracePeer {
    /// The transport's name (`udp`, `tcp`).
    pub transport: &'static str,
    /// The peer's address.
    pub addr: SocketAddr,
}

impl fmt::Display for TracePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Events a trace has room for from the start (a call's set-up is about a
/// dozen messages and steps): no regrowth on the common path.
const FIRST_EVENTS: usize = 16;

/// One call's trace.
#[derive(Debug)]
pub struct CallTrace {
    id: String,
    legs: Mutex<Vec<String>>,
    events: Mutex<Vec<TraceEvent>>,
    live: AtomicBool,
    /// Whether a call owns it (not only refused attempts).
    admitted: AtomicBool,
    dropped: AtomicU64,
    /// Fallen out of the kept traces: nobody can ask for it any more, so
    /// it records nothing (the call may hold it for hours).
    forgotten: AtomicBool,
}

impl CallTrace {
    /// The call's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records `what` now (dropped, and counted, past [`MAX_EVENTS`]).
    pub fn record(&self, what: TraceWhat) {
        if self.forgotten.load(Ordering::Relaxed) {
            return;
        }
        let mut events = lock(&self.events);
        if events.len() >= MAX_EVENTS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        events.push(TraceEvent {
            at_ms: unix_ms(),
            what,
        });
    }

    /// Records a dialplan step (or the call's account of one).
    pub fn step(&self, location: Option<String>, text: String) {
        self.record(TraceWhat::Step { location, text });
    }

    /// The call has ended.
    pub fn end(&self) {
        self.live.store(false, Ordering::Relaxed);
    }

    /// Whether the call is in progress.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether a call started (`false`: every INVITE with this Call-ID was
    /// refused before it was routed, see [`Traces::attempt`]).
    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Whether it still records: `false` once it has fallen out of the
    /// kept traces, when a caller may skip preparing what it would record.
    pub fn is_recording(&self) -> bool {
        !self.forgotten.load(Ordering::Relaxed)
    }

    /// Whether nothing is recorded yet. A trace that already holds events
    /// existed when the message being handled arrived, so the tap has
    /// filed that message under it.
    pub fn is_empty(&self) -> bool {
        lock(&self.events).is_empty()
    }

    /// The ids of its legs, the call's own first.
    pub fn legs(&self) -> Vec<String> {
        lock(&self.legs).clone()
    }

    /// Everything recorded so far, oldest first.
    pub fn events(&self) -> Vec<TraceEvent> {
        lock(&self.events).clone()
    }

    /// Events not kept because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The traces of the last `capacity` calls, found by any leg's id.
#[derive(Debug)]
pub struct Traces {
    capacity: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Arc<CallTrace>>>>,
    ring: Mutex<VecDeque<Arc<CallTrace>>>,
    /// Refused attempts, the last `capacity` (a call that continues one
    /// is in `ring` as well; leaving this ring then forgets nothing).
    attempts: Mutex<VecDeque<Arc<CallTrace>>>,
}

impl Traces {
    /// Keeps the traces of the last `capacity` calls (0: none).
    pub fn new(capacity: usize) -> Traces {
        Traces {
            capacity,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            ring: Mutex::new(VecDeque::new()),
            attempts: Mutex::new(VecDeque::new()),
        }
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, HashMap<String, Arc<CallTrace>>> {
        let i = (self.hasher.hash_one(id) as usize) % SHARDS;
        lock(&self.shards[i])
    }

    fn new_trace(&self, id: &str, admitted: bool) -> Arc<CallTrace> {
        let trace = Arc::new(CallTrace {
            id: id.to_owned(),
            legs: Mutex::new(vec![id.to_owned()]),
            events: Mutex::new(Vec::with_capacity(FIRST_EVENTS)),
            live: AtomicBool::new(admitted),
            admitted: AtomicBool::new(admitted),
            dropped: AtomicU64::new(0),
            forgotten: AtomicBool::new(false),
        });
        self.shard(id).insert(id.to_owned(), Arc::clone(&trace));
        trace
    }

    /// Appends `trace` to `ring` and forgets what falls out of it past
    /// capacity (for the attempts' ring, only what no call has taken over).
    fn keep(&self, ring: &Mutex<VecDeque<Arc<CallTrace>>>, trace: &Arc<CallTrace>, calls: bool) {
        let old = {
            let mut ring = lock(ring);
            ring.push_back(Arc::clone(trace));
            let mut old = Vec::new();
            while ring.len() > self.capacity {
                old.extend(ring.pop_front());
            }
            old
        };
        for gone in old {
            if !calls && gone.is_admitted() {
                continue;
            }
            // Nobody can look it up any more: its legs go with it.
            let legs = std::mem::take(&mut *lock(&gone.legs));
            for leg in legs {
                let mut shard = self.shard(&leg);
                if shard.get(&leg).is_some_and(|t| Arc::ptr_eq(t, &gone)) {
                    shard.remove(&leg);
                }
            }
            // A live call keeps its Arc: free what it recorded, and record
            // no more (only the last `capacity` calls cost memory).
            gone.forgotten.store(true, Ordering::Relaxed);
            let events = std::mem::take(&mut *lock(&gone.events));
            drop(events);
        }
    }

    /// Starts the trace of call `id`, forgetting the oldest past capacity;
    /// `None` when tracing is off. If `id` has a trace of refused attempts
    /// only (see [`attempt`](Self::attempt)), the call continues it.
    pub fn start(&self, id: &str) -> Option<Arc<CallTrace>> {
        if self.capacity == 0 {
            return None;
        }
        let trace = match self.get(id) {
            Some(t) if !t.admitted.swap(true, Ordering::Relaxed) => {
                t.live.store(true, Ordering::Relaxed);
                t
            }
            _ => self.new_trace(id, true),
        };
        self.keep(&self.ring, &trace, true);
        Some(trace)
    }

    /// The trace an INVITE refused before it became a call (challenged,
    /// or its credentials refused) is recorded in: `id`'s trace if it has
    /// one, else a new one kept among the last `capacity` refused
    /// attempts (apart from the calls). `None` when tracing is off.
    pub fn attempt(&self, id: &str) -> Option<Arc<CallTrace>> {
        if self.capacity == 0 {
            return None;
        }
        if let Some(t) = self.get(id) {
            return Some(t);
        }
        let trace = self.new_trace(id, false);
        self.keep(&self.attempts, &trace, false);
        Some(trace)
    }

    /// Files `trace` under another leg's id too.
    pub fn add_leg(&self, trace: &Arc<CallTrace>, leg: &str) {
        {
            let mut legs = lock(&trace.legs);
            if legs.len() >= MAX_LEGS || legs.iter().any(|l| l == leg) {
                return;
            }
            legs.push(leg.to_owned());
        }
        self.shard(leg).insert(leg.to_owned(), Arc::clone(trace));
    }

    /// The trace of the call one of whose legs has id `id`.
    pub fn get(&self, id: &str) -> Option<Arc<CallTrace>> {
        self.shard(id).get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_calls_by_any_leg() {
        let t = Traces::new(2);
        let a = t.start("a").unwrap();
        t.add_leg(&a, "a-out");
        a.step(Some("x.lua:1".into()), "call:answer()".into());
        assert_eq!(t.get("a-out").unwrap().events().len(), 1);
        let _b = t.start("b").unwrap();
        let _c = t.start("c").unwrap();
        assert!(t.get("a").is_none() && t.get("a-out").is_none());
        assert!(t.get("b").is_some() && t.get("c").is_some());
        assert!(Traces::new(0).start("x").is_none());
        // The call still holds its trace: forgotten, it keeps nothing.
        assert!(!a.is_recording() && t.get("b").unwrap().is_recording());
        assert!(a.legs().is_empty(), "its legs went with it");
        assert!(a.events().is_empty(), "its events were freed");
        a.step(None, "after".into());
        assert!(a.events().is_empty(), "and it records no more");
    }

    #[test]
    fn a_call_continues_its_refused_attempt_and_attempts_never_push_calls_out() {
        let t = Traces::new(2);
        let a = t.attempt("a").unwrap();
        a.step(None, "407".into());
        assert!(!a.is_admitted() && !a.is_live() && !a.is_empty());
        // The same Call-ID again: the same trace.
        assert!(Arc::ptr_eq(&t.attempt("a").unwrap(), &a));
        // With credentials it becomes the call, keeping what came before.
        let call = t.start("a").unwrap();
        assert!(Arc::ptr_eq(&call, &a) && call.is_admitted() && call.is_live());
        assert_eq!(call.events().len(), 1);
        // A flood of refused Call-IDs: kept apart, the call stays.
        for i in 0..10 {
            t.attempt(&format!("scan-{i}")).unwrap();
        }
        assert!(t.get("a").is_some());
        assert!(t.get("scan-9").is_some() && t.get("scan-8").is_some());
        assert!(t.get("scan-7").is_none());
        // Calls push out calls, continued or not.
        t.start("b").unwrap();
        t.start("c").unwrap();
        assert!(t.get("a").is_none());
        assert!(Traces::new(0).attempt("x").is_none());
    }

    #[test]
    fn a_peer_shows_as_transport_and_address() {
        let peer = TracePeer {
            transport: "udp",
            addr: SocketAddr::from(([192, 0, 2, 1], 5060)),
        };
        assert_eq!(peer.to_string(), "udp:192.0.2.1:5060");
    }

    #[test]
    fn a_call_keeps_at_most_max_events() {
        let t = Traces::new(1);
        let a = t.start("a").unwrap();
        for i in 0..MAX_EVENTS + 5 {
            a.step(None, i.to_string());
        }
        assert_eq!(a.events().len(), MAX_EVENTS);
        assert_eq!(a.dropped(), 5);
    }
}
