//! Live calls, for the admin API and metrics: each call's task files a
//! snapshot of itself here and updates it as its state changes. Sharded, so
//! calls rarely contend; nothing on a call's path waits on another call.
//! Whoever needs to follow calls as they change (busy lamps) takes a
//! [`Registry::watch`] feed: a broadcast of every filed snapshot and every
//! end, so the call path never waits on a watcher.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::leg::LegState;

const SHARDS: usize = 16;
/// Changes a watcher may fall behind by before it misses some (it is told
/// how many with [`broadcast::error::RecvError::Lagged`]).
const FEED_CAPACITY: usize = 4096;

/// A change to a live call, as [`Registry::watch`] reports it. The
/// snapshot is shared with the registry (one per change, not a copy per
/// watcher or per feed slot).
#[derive(Debug, Clone)]
pub enum CallChange {
    /// The call was filed or its state changed: its snapshot now.
    Updated(Arc<CallSnapshot>),
    /// The call ended: its last snapshot.
    Ended(Arc<CallSnapshot>),
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CallState {
    /// The dialplan is deciding.
    Routing,
    /// Targets are ringing.
    Dialing,
    /// Answered by the dialplan (no other party).
    Answered,
    /// Two legs joined.
    Bridged,
    /// Being torn down.
    Ending,
}

/// The identifiers of a leg's dialog as the channel holds them (for SIP:
/// Call-ID, our tag and the peer's, RFC 3261 §12), for busy lamps that name
/// the dialog a phone is in (RFC 4235). Not shown by the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialogIds {
    /// The dialog's id (SIP Call-ID).
    pub call_id: String,
    /// Our tag in it.
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
}

/// One leg as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegSnapshot {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The channel (`sip`).
    pub channel: &'static str,
    /// The peer's URI.
    pub peer: String,
    /// The peer's address (`udp:192.0.2.1:5060`).
    pub address: String,
    /// Where the leg stands.
    pub state: LegState,
    /// Whether this leg's phone has put the call on hold (its last
    /// offer was `sendonly` or `inactive`).
    pub held: bool,
    /// Its dialog's identifiers.
    #[serde(skip)]
    pub dialog: DialogIds,
}

/// A contact being rung by a dial in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingingSnapshot {
    /// The target as the dialplan named it (`1002`).
    pub target: String,
    /// The contact's URI (where the INVITE went).
    pub contact: String,
    /// Its address (`udp:192.0.2.1:5060`).
    pub address: String,
    /// `calling` until it answers 180/183, then `ringing`.
    pub state: LegState,
    /// The identifiers of the dialog being set up with it.
    #[serde(skip)]
    pub dialog: DialogIds,
}

/// One live call as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallSnapshot {
    /// The call's id.
    pub id: String,
    /// From URI.
    pub from: String,
    /// To URI.
    pub to: String,
    /// The authenticated caller.
    pub caller: Option<String>,
    /// The target that answered (`1002`), once bridged.
    pub callee: Option<String>,
    /// The routing context.
    pub context: String,
    /// Where the call stands.
    pub state: CallState,
    /// Unix ms when it started.
    pub started_ms: u64,
    /// Unix ms when it was answered.
    pub answered_ms: Option<u64>,
    /// Its legs, inbound first.
    pub legs: Vec<LegSnapshot>,
    /// The contacts a dial in progress is ringing (empty otherwise).
    pub ringing: Vec<RingingSnapshot>,
}

/// The live calls.
#[derive(Debug)]
pub struct Registry {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Arc<CallSnapshot>>>>,
    count: AtomicUsize,
    feed: broadcast::Sender<CallChange>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            count: AtomicUsize::new(0),
            feed: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CallSnapshot>>> {
        let i = (self.hasher.hash_one(id) as usize) % SHARDS;
        // Nothing panics while holding a shard; a poisoned one is intact.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Files a new call, or a call's new snapshot; watchers are told.
    pub fn insert(&self, snapshot: CallSnapshot) {
        let id = snapshot.id.clone();
        let snapshot = Arc::new(snapshot);
        let changed = (self.feed.receiver_count() > 0).then(|| snapshot.clone());
        if self.shard(&id).insert(id, snapshot).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(snapshot) = changed {
            // No watcher left between the count and the send: nothing to do.
            let _ = self.feed.send(CallChange::Updated(snapshot));
        }
    }

    /// Every change from now on: each snapshot filed, each call's end.
    pub fn watch(&self) -> broadcast::Receiver<CallChange> {
        self.feed.subscribe()
    }

    /// Changes a call's snapshot, if it is filed.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut CallSnapshot)) {
        let changed = {
            let mut shard = self.shard(id);
            let Some(s) = shard.get_mut(id) else {
                return;
            };
            // Copied only if a watcher still holds the snapshot.
            change(Arc::make_mut(s));
            (self.feed.receiver_count() > 0).then(|| s.clone())
        };
        if let Some(snapshot) = changed {
            let _ = self.feed.send(CallChange::Updated(snapshot));
        }
    }

    /// Removes a call that ended; watchers are told.
    pub fn remove(&self, id: &str) {
        let removed = self.shard(id).remove(id);
        if let Some(last) = removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
            if self.feed.receiver_count() > 0 {
                let _ = self.feed.send(CallChange::Ended(last));
            }
        }
    }

    /// Whether a call with this id is live.
    pub fn contains(&self, id: &str) -> bool {
        self.shard(id).contains_key(id)
    }

    /// Number of live calls.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether there are no live calls.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The calls (other than `except`) whose dial is ringing a target
    /// `wanted` accepts: what a pickup may take, the call that has rung
    /// longest first. Nothing is copied but the ids.
    pub fn ringing(&self, except: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let mut found: Vec<(u64, String)> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            found.extend(
                shard
                    .values()
                    .filter(|c| {
                        c.id != except
                            && c.state == CallState::Dialing
                            && c.ringing.iter().any(|r| wanted(&r.target))
                    })
                    .map(|c| (c.started_ms, c.id.clone())),
            );
        }
        found.sort();
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// Every live call, oldest first.
    pub fn list(&self) -> Vec<CallSnapshot> {
        let mut all: Vec<CallSnapshot> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .map(|c| CallSnapshot::clone(c))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, started_ms: u64) -> CallSnapshot {
        CallSnapshot {
            id: id.into(),
            from: "sip:1001@x".into(),
            to: "sip:1002@x".into(),
            caller: Some("1001".into()),
            callee: None,
            context: "default".into(),
            state: CallState::Routing,
            started_ms,
            answered_ms: None,
            legs: Vec::new(),
            ringing: Vec::new(),
        }
    }

    #[test]
    fn files_updates_lists_and_removes() {
        let r = Registry::new();
        r.insert(call("b", 2));
        r.insert(call("a", 1));
        r.insert(call("a", 1));
        assert_eq!(r.len(), 2);
        r.update("b", |s| s.state = CallState::Bridged);
        let ids: Vec<_> = r.list().into_iter().map(|c| (c.id, c.state)).collect();
        assert_eq!(
            ids,
            [
                ("a".to_owned(), CallState::Routing),
                ("b".to_owned(), CallState::Bridged)
            ]
        );
        r.remove("a");
        r.remove("a");
        assert_eq!(r.len(), 1);
        assert!(!r.contains("a") && r.contains("b"));
        r.update("zzz", |_| panic!("not filed"));
    }

    #[test]
    fn a_pickup_finds_the_calls_ringing_a_target_longest_first() {
        let r = Registry::new();
        let ringing = |id: &str, started_ms, target: &str| CallSnapshot {
            state: CallState::Dialing,
            ringing: vec![RingingSnapshot {
                target: target.into(),
                contact: format!("sip:{target}@127.0.0.1"),
                address: "udp:127.0.0.1:5060".into(),
                state: LegState::Ringing,
                dialog: DialogIds::default(),
            }],
            ..call(id, started_ms)
        };
        r.insert(ringing("late", 30, "1002"));
        r.insert(ringing("early", 10, "1002"));
        r.insert(ringing("other", 5, "1003"));
        r.insert(ringing("mine", 1, "1002"));
        r.insert(call("quiet", 2));
        assert_eq!(r.ringing("mine", |t| t == "1002"), ["early", "late"]);
        assert_eq!(
            r.ringing("mine", |t| t.starts_with("100")),
            ["other", "early", "late"]
        );
        assert!(r.ringing("mine", |t| t == "1009").is_empty());
    }

    #[test]
    fn watchers_see_every_snapshot_and_the_end() {
        let r = Registry::new();
        r.insert(call("quiet", 1));
        let mut feed = r.watch();
        r.insert(call("a", 1));
        r.update("a", |s| s.state = CallState::Bridged);
        r.remove("a");
        let mut seen = Vec::new();
        while let Ok(change) = feed.try_recv() {
            seen.push(match change {
                CallChange::Updated(s) => format!("updated {} {:?}", s.id, s.state),
                CallChange::Ended(s) => format!("ended {} {:?}", s.id, s.state),
            });
        }
        assert_eq!(
            seen,
            ["updated a Routing", "updated a Bridged", "ended a Bridged"]
        );
    }
}
