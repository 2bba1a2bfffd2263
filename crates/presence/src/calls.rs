//! Which extensions a call involves and how their lamps stand (RFC 4235
//! §3.7.1 states from the call core's snapshots): the caller as
//! `initiator`, the extensions being rung and the one that answered as
//! `recipient`. Fed by [`pbx::Registry::watch`]; no IO.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pbx::{CallChange, CallSnapshot, CallState, DialogIds};

use crate::body::{DialogState, DialogView, Direction};

/// What the tracker needs to know of the office.
pub trait Directory: Send + Sync + 'static {
    /// Whether `ext` is one of this office's extensions.
    fn contains(&self, ext: &str) -> bool;
    /// `ext`'s display name, if it has one.
    fn name(&self, ext: &str) -> Option<String>;
}

/// The user part of a `sip:user@host` URI.
pub fn user_of(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let user = rest.split_once('@').map(|(u, _)| u)?;
    Some(user.split(';').next().unwrap_or(user))
}

/// A dialog's identifiers as the watched phone sees them: Switchboard's
/// tag is the phone's remote tag and the phone's is its local one.
fn phone_side(ids: &DialogIds) -> (String, Option<String>, Option<String>) {
    let ours = Some(ids.local_tag.clone()).filter(|t| !t.is_empty());
    (ids.call_id.clone(), ids.remote_tag.clone(), ours)
}

/// The dialogs each extension a call involves has in it, by extension.
fn involved(call: &CallSnapshot, dir: &dyn Directory, domain: &str) -> Vec<(String, DialogView)> {
    let mut out: Vec<(String, DialogView)> = Vec::new();
    let answered = matches!(call.state, CallState::Answered | CallState::Bridged);
    let remote_for_callee = |uri: &str| {
        let name = user_of(uri).and_then(|u| dir.name(u));
        (uri.to_owned(), name)
    };
    let leg = |direction: &str| {
        call.legs
            .iter()
            .find(|l| l.direction == direction && !l.dialog.call_id.is_empty())
            .map(|l| phone_side(&l.dialog))
    };
    let fallback = || (call.id.clone(), None, None);
    if let Some(caller) = call.caller.as_deref().filter(|c| dir.contains(c)) {
        let (remote, remote_name) = match call.callee.as_deref().filter(|c| dir.contains(c)) {
            Some(callee) => (format!("sip:{callee}@{domain}"), dir.name(callee)),
            None => remote_for_callee(&call.to),
        };
        let (call_id, local_tag, remote_tag) = leg("inbound").unwrap_or_else(fallback);
        out.push((
            caller.to_owned(),
            DialogView {
                call: call.id.clone(),
                call_id,
                local_tag,
                remote_tag,
                state: if answered {
                    DialogState::Confirmed
                } else {
                    DialogState::Early
                },
                direction: Direction::Initiator,
                remote,
                remote_name,
            },
        ));
    }
    let (caller_uri, caller_name) = match call.caller.as_deref().filter(|c| dir.contains(c)) {
        Some(caller) => (format!("sip:{caller}@{domain}"), dir.name(caller)),
        None => remote_for_callee(&call.from),
    };
    let recipient = |state, (call_id, local_tag, remote_tag)| DialogView {
        call: call.id.clone(),
        call_id,
        local_tag,
        remote_tag,
        state,
        direction: Direction::Recipient,
        remote: caller_uri.clone(),
        remote_name: caller_name.clone(),
    };
    if let Some(callee) = call.callee.as_deref().filter(|c| dir.contains(c))
        && answered
        && !out.iter().any(|(e, _)| e == callee)
    {
        let ids = leg("outbound").unwrap_or_else(fallback);
        out.push((callee.to_owned(), recipient(DialogState::Confirmed, ids)));
    }
    for ring in &call.ringing {
        let target = ring.target.as_str();
        if dir.contains(target) && !out.iter().any(|(e, _)| e == target) {
            let ids = if ring.dialog.call_id.is_empty() {
                fallback()
            } else {
                phone_side(&ring.dialog)
            };
            out.push((target.to_owned(), recipient(DialogState::Early, ids)));
        }
    }
    out
}

/// Most dialogs one lamp report (a NOTIFY's dialog-info) lists.
pub const MAX_REPORTED: usize = 16;

/// A change in what one extension's lamp shows.
#[derive(Debug, Clone)]
pub struct LampChange {
    /// The extension.
    pub ext: String,
    /// Its dialogs now, with the ones that just ended as `terminated`.
    pub dialogs: Arc<[DialogView]>,
    /// Whether it is on a call (any dialog not terminated) before and after.
    pub busy_before: bool,
    /// See `busy_before`.
    pub busy_after: bool,
}

/// One extension's dialog in one call as the tracker keeps it: a
/// [`DialogView`] with the call's id shared (by the call's entry, the
/// extensions' indexes and the views: it was copied five times) and boxed
/// strings. A tracker keeps one per involved extension per live call.
#[derive(Debug, PartialEq, Eq)]
struct Lamp {
    call: Arc<str>,
    /// The phone's own Call-ID: the call's id, shared, for the caller.
    call_id: Arc<str>,
    local_tag: Option<Box<str>>,
    remote_tag: Option<Box<str>>,
    state: DialogState,
    direction: Direction,
    remote: Box<str>,
    remote_name: Option<Box<str>>,
}

impl Lamp {
    /// `view` of the call whose id is `call`, kept.
    fn new(call: &Arc<str>, view: DialogView) -> Lamp {
        let boxed = |s: Option<String>| s.map(String::into_boxed_str);
        Lamp {
            call: Arc::clone(call),
            call_id: if view.call_id == **call {
                Arc::clone(call)
            } else {
                Arc::from(view.call_id)
            },
            local_tag: boxed(view.local_tag),
            remote_tag: boxed(view.remote_tag),
            state: view.state,
            direction: view.direction,
            remote: view.remote.into_boxed_str(),
            remote_name: boxed(view.remote_name),
        }
    }

    /// What a report shows of it.
    fn view(&self) -> DialogView {
        let owned = |s: &Option<Box<str>>| s.as_deref().map(str::to_owned);
        DialogView {
            call: self.call.to_string(),
            call_id: self.call_id.to_string(),
            local_tag: owned(&self.local_tag),
            remote_tag: owned(&self.remote_tag),
            state: self.state,
            direction: self.direction,
            remote: self.remote.to_string(),
            remote_name: owned(&self.remote_name),
        }
    }

    /// Whether it shows what `view` shows.
    fn shows(&self, view: &DialogView) -> bool {
        *self.call == view.call
            && *self.call_id == view.call_id
            && self.local_tag.as_deref() == view.local_tag.as_deref()
            && self.remote_tag.as_deref() == view.remote_tag.as_deref()
            && self.state == view.state
            && self.direction == view.direction
            && *self.remote == view.remote
            && self.remote_name.as_deref() == view.remote_name.as_deref()
    }
}

/// One extension's live dialogs, oldest change first. Kept by call so a
/// change to one of an extension's calls costs O(log n), not a scan of
/// all of them: a queue or a gateway, or a busy benchmark extension,
/// can have hundreds at once.
#[derive(Debug, Default)]
struct ExtDialogs {
    /// The dialogs by the sequence number of their last change (shared
    /// with the call's entry in [`Tracker`]'s `calls`: one copy per call).
    order: BTreeMap<u64, Arc<Lamp>>,
    /// Each call's sequence number in `order`.
    by_call: HashMap<Arc<str>, u64>,
}

impl ExtDialogs {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Drops `call`'s dialog, if there is one.
    fn remove(&mut self, call: &str) {
        if let Some(seq) = self.by_call.remove(call) {
            self.order.remove(&seq);
        }
    }

    /// Adds `view` as the latest change (its call's older one removed first).
    fn push(&mut self, seq: u64, view: Arc<Lamp>) {
        self.remove(&view.call);
        self.by_call.insert(Arc::clone(&view.call), seq);
        self.order.insert(seq, view);
    }

    /// The dialogs, oldest change first.
    fn to_vec(&self) -> Vec<DialogView> {
        self.order.values().map(|v| v.view()).collect()
    }

    /// The latest `n` dialogs, oldest change first.
    fn latest(&self, n: usize) -> Vec<DialogView> {
        let mut out: Vec<DialogView> = self
            .order
            .values()
            .rev()
            .take(n)
            .map(|v| v.view())
            .collect();
        out.reverse();
        out
    }
}

/// The dialogs of every extension that is on a call.
#[derive(Debug, Default)]
pub struct Tracker {
    /// What each live call last showed, by call id. The views are shared
    /// with `by_ext` (a call's lamps were kept twice: most of a kilobyte
    /// per call).
    calls: HashMap<Arc<str>, Vec<(String, Arc<Lamp>)>>,
    /// Each extension's live dialogs.
    by_ext: HashMap<String, ExtDialogs>,
    /// The sequence number of the next change (orders each extension's
    /// dialogs).
    next: u64,
    /// Following no calls (see [`sleep`](Self::sleep)) until the next
    /// [`resync`](Self::resync).
    dormant: bool,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Forgets every call and stops following them: for while nobody
    /// watches any lamp (each call change cost a loaded server about 4%
    /// of its CPU here). [`resync`](Self::resync) from the live calls
    /// wakes it up.
    pub fn sleep(&mut self) {
        *self = Tracker {
            dormant: true,
            ..Tracker::default()
        };
    }

    /// Whether it is asleep: its dialogs say nothing until a resync.
    pub fn is_dormant(&self) -> bool {
        self.dormant
    }

    /// `ext`'s live dialogs.
    pub fn dialogs(&self, ext: &str) -> Vec<DialogView> {
        self.by_ext
            .get(ext)
            .map(ExtDialogs::to_vec)
            .unwrap_or_default()
    }

    /// Whether `ext` is on a call (ringing, calling or talking).
    pub fn busy(&self, ext: &str) -> bool {
        self.by_ext.get(ext).is_some_and(|d| !d.is_empty())
    }

    /// Starts again from the live calls (after the feed was missed, say):
    /// returns a change for every extension whose lamp differs, with the
    /// dialogs it no longer has as `terminated`.
    pub fn resync(
        &mut self,
        live: &[CallSnapshot],
        dir: &dyn Directory,
        domain: &str,
    ) -> Vec<LampChange> {
        let old = std::mem::take(self);
        for call in live {
            self.apply_snapshot(call, false, dir, domain, &|_| false);
        }
        let mut exts: Vec<&String> = old.by_ext.keys().chain(self.by_ext.keys()).collect();
        exts.sort();
        exts.dedup();
        let mut changes = Vec::new();
        for ext in exts {
            // Extensions without dialogs have no entry.
            let before = old.by_ext.get(ext.as_str());
            let now = self.by_ext.get(ext.as_str());
            let same = match (before, now) {
                (Some(b), Some(n)) => b.order.values().eq(n.order.values()),
                (b, n) => b.is_none() && n.is_none(),
            };
            if same {
                continue;
            }
            let mut report = self.dialogs(ext);
            for gone in before
                .into_iter()
                .flat_map(|b| b.order.values())
                .filter(|d| now.is_none_or(|n| !n.by_call.contains_key(&*d.call)))
            {
                report.push(DialogView {
                    state: DialogState::Terminated,
                    ..gone.view()
                });
            }
            changes.push(LampChange {
                ext: ext.clone(),
                dialogs: report.into(),
                busy_before: before.is_some_and(|b| !b.is_empty()),
                busy_after: now.is_some_and(|n| !n.is_empty()),
            });
        }
        changes
    }

    /// Applies one change from the call feed; returns the extensions whose
    /// lamps changed and that someone `watched` (the others are only kept
    /// up to date: building a report costs a copy of the extension's
    /// dialogs, and an extension with hundreds of calls, a queue or a
    /// gateway, would pay it on every change of each).
    pub fn apply(
        &mut self,
        change: &CallChange,
        dir: &dyn Directory,
        domain: &str,
        watched: &dyn Fn(&str) -> bool,
    ) -> Vec<LampChange> {
        match change {
            CallChange::Updated(c) => self.apply_snapshot(c, false, dir, domain, watched),
            CallChange::Ended(c) => self.apply_snapshot(c, true, dir, domain, watched),
        }
    }

    /// [`apply`](Self::apply) for `call`, which `ended` or was updated.
    fn apply_snapshot(
        &mut self,
        call: &CallSnapshot,
        ended: bool,
        dir: &dyn Directory,
        domain: &str,
        watched: &dyn Fn(&str) -> bool,
    ) -> Vec<LampChange> {
        // The call's id, shared by everything kept of the call.
        let id: Arc<str> = match self.calls.get_key_value(call.id.as_str()) {
            Some((id, _)) => Arc::clone(id),
            None => Arc::from(call.id.as_str()),
        };
        let kept = self.calls.get(&id);
        let now: Vec<(String, Arc<Lamp>)> = if ended {
            Vec::new()
        } else {
            involved(call, dir, domain)
                .into_iter()
                .map(|(ext, view)| {
                    // A lamp the change left as it was keeps its view: the
                    // extension's list holds that one, and a copy in
                    // `calls` would keep the call's views twice.
                    let same = kept
                        .and_then(|k| k.iter().find(|(e, v)| *e == ext && v.shows(&view)))
                        .map(|(_, v)| Arc::clone(v));
                    (ext, same.unwrap_or_else(|| Arc::new(Lamp::new(&id, view))))
                })
                .collect()
        };
        let before = if ended {
            self.calls.remove(&id).unwrap_or_default()
        } else {
            self.calls.insert(id, now.clone()).unwrap_or_default()
        };
        let mut changes = Vec::new();
        let mut exts: Vec<&str> = before.iter().map(|(e, _)| e.as_str()).collect();
        for (e, _) in &now {
            if !exts.contains(&e.as_str()) {
                exts.push(e);
            }
        }
        for ext in exts {
            let old = before.iter().find(|(e, _)| e == ext).map(|(_, v)| v);
            let new = now.iter().find(|(e, _)| e == ext).map(|(_, v)| v);
            if old == new {
                continue;
            }
            let busy_before = self.busy(ext);
            let seq = self.next;
            self.next += 1;
            let list = self.by_ext.entry(ext.to_owned()).or_default();
            list.remove(&call.id);
            if !watched(ext) {
                if let Some(view) = new {
                    list.push(seq, Arc::clone(view));
                }
                if list.is_empty() {
                    self.by_ext.remove(ext);
                }
                continue;
            }
            // A lamp shows a handful of calls; an extension with hundreds
            // (a queue, a gateway) reports its latest ones, and the body
            // stays small enough for one UDP NOTIFY.
            let mut report = list.latest(MAX_REPORTED - 1);
            match (new, old) {
                (Some(view), _) => {
                    list.push(seq, Arc::clone(view));
                    report.push(view.view());
                }
                (None, Some(view)) => report.push(DialogView {
                    state: DialogState::Terminated,
                    ..view.view()
                }),
                (None, None) => {}
            }
            if list.is_empty() {
                self.by_ext.remove(ext);
            }
            changes.push(LampChange {
                ext: ext.to_owned(),
                dialogs: report.into(),
                busy_before,
                busy_after: self.busy(ext),
            });
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx::{LegSnapshot, LegState, RingingSnapshot};

    struct Office;
    impl Directory for Office {
        fn contains(&self, ext: &str) -> bool {
            ext.starts_with("10")
        }
        fn name(&self, ext: &str) -> Option<String> {
            (ext == "1001").then(|| "Alice".to_owned())
        }
    }

    fn call(state: CallState, ringing: &[&str], callee: Option<&str>) -> CallSnapshot {
        CallSnapshot {
            id: "c1".into(),
            from: "sip:1001@d".into(),
            to: "sip:1002@d".into(),
            caller: Some("1001".into()),
            callee: callee.map(str::to_owned),
            context: "default".into(),
            state,
            started_ms: 0,
            answered_ms: None,
            legs: Vec::new(),
            ringing: ringing
                .iter()
                .map(|t| RingingSnapshot {
                    target: (*t).to_owned(),
                    contact: String::new(),
                    address: String::new(),
                    state: LegState::Ringing,
                    dialog: DialogIds {
                        call_id: format!("b-{t}"),
                        local_tag: "pbx-b".into(),
                        remote_tag: None,
                    },
                })
                .collect(),
        }
    }

    fn lamp(changes: &[LampChange], ext: &str) -> Vec<(DialogState, Direction)> {
        changes
            .iter()
            .find(|c| c.ext == ext)
            .map(|c| c.dialogs.iter().map(|d| (d.state, d.direction)).collect())
            .unwrap_or_default()
    }

    /// Whether the tracker keeps `ext`'s view of call `c1` once: the
    /// call's entry and the extension's list share it.
    fn kept_once(t: &Tracker, ext: &str) -> bool {
        let in_call = t.calls["c1"].iter().find(|(e, _)| e == ext).map(|(_, v)| v);
        let in_list = t.by_ext[ext].order.values().next();
        matches!((in_call, in_list), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    #[test]
    fn a_lamp_a_change_left_alone_is_kept_once() {
        let mut t = Tracker::new();
        let routing = call(CallState::Routing, &[], None);
        t.apply(
            &CallChange::Updated(Arc::new(routing)),
            &Office,
            "d",
            &|_| false,
        );
        assert!(kept_once(&t, "1001"));
        // The caller's lamp stays early while 1002 rings.
        let ringing = call(CallState::Dialing, &["1002"], None);
        t.apply(
            &CallChange::Updated(Arc::new(ringing)),
            &Office,
            "d",
            &|_| false,
        );
        assert!(kept_once(&t, "1001"));
        assert!(kept_once(&t, "1002"));
        // Answered, then bridged: the same lamps twice.
        for state in [CallState::Answered, CallState::Bridged] {
            let up = call(state, &[], Some("1002"));
            t.apply(&CallChange::Updated(Arc::new(up)), &Office, "d", &|_| true);
            assert!(kept_once(&t, "1001"), "{state:?}");
            assert!(kept_once(&t, "1002"), "{state:?}");
        }
        assert_eq!(t.dialogs("1001")[0].state, DialogState::Confirmed);
    }

    #[test]
    fn a_call_rings_is_answered_and_ends() {
        let mut t = Tracker::new();
        let routing = t.apply(
            &CallChange::Updated(Arc::new(call(CallState::Routing, &[], None))),
            &Office,
            "d",
            &|_| true,
        );
        assert_eq!(
            lamp(&routing, "1001"),
            [(DialogState::Early, Direction::Initiator)]
        );
        let ringing = call(CallState::Dialing, &["1002", "1002", "+4930"], None);
        let c = t.apply(
            &CallChange::Updated(Arc::new(ringing)),
            &Office,
            "d",
            &|_| true,
        );
        assert_eq!(
            lamp(&c, "1002"),
            [(DialogState::Early, Direction::Recipient)]
        );
        assert!(
            c.iter().all(|c| c.ext != "1001"),
            "the caller's lamp did not change"
        );
        let callee_view = &c[0].dialogs[0];
        assert_eq!(callee_view.call_id, "b-1002", "the callee's own dialog");
        assert_eq!(callee_view.remote_tag.as_deref(), Some("pbx-b"));
        assert_eq!(callee_view.local_tag, None, "not known before it answers");
        assert_eq!(callee_view.remote, "sip:1001@d");
        assert_eq!(callee_view.remote_name.as_deref(), Some("Alice"));
        assert!(t.busy("1002"));
        let mut bridged = call(CallState::Bridged, &[], Some("1002"));
        let leg = |direction, call_id: &str, ours: &str, theirs: &str| LegSnapshot {
            direction,
            channel: "sip",
            peer: String::new(),
            address: String::new(),
            state: LegState::Up,
            held: false,
            dialog: DialogIds {
                call_id: call_id.into(),
                local_tag: ours.into(),
                remote_tag: Some(theirs.into()),
            },
        };
        bridged.legs = vec![
            leg("inbound", "c1", "pbx-a", "alice"),
            leg("outbound", "b-1002", "pbx-b", "bob"),
        ];
        let c = t.apply(
            &CallChange::Updated(Arc::new(bridged)),
            &Office,
            "d",
            &|_| true,
        );
        assert_eq!(
            lamp(&c, "1002"),
            [(DialogState::Confirmed, Direction::Recipient)]
        );
        let bob = &c.iter().find(|c| c.ext == "1002").expect("1002").dialogs[0];
        assert_eq!(
            (
                bob.call_id.as_str(),
                bob.local_tag.as_deref(),
                bob.remote_tag.as_deref()
            ),
            ("b-1002", Some("bob"), Some("pbx-b"))
        );
        let alice = &c.iter().find(|c| c.ext == "1001").expect("1001").dialogs[0];
        assert_eq!(
            (
                alice.call_id.as_str(),
                alice.local_tag.as_deref(),
                alice.remote_tag.as_deref()
            ),
            ("c1", Some("alice"), Some("pbx-a"))
        );
        assert_eq!(
            lamp(&c, "1001"),
            [(DialogState::Confirmed, Direction::Initiator)]
        );
        let c = t.apply(
            &CallChange::Ended(Arc::new(call(CallState::Ending, &[], Some("1002")))),
            &Office,
            "d",
            &|_| true,
        );
        assert_eq!(
            lamp(&c, "1002"),
            [(DialogState::Terminated, Direction::Recipient)]
        );
        assert!(c.iter().all(|c| c.busy_before && !c.busy_after));
        assert!(!t.busy("1001") && !t.busy("1002"));
        assert!(t.calls.is_empty() && t.by_ext.is_empty());
    }

    #[test]
    fn a_resync_ends_calls_whose_end_was_missed() {
        let mut t = Tracker::new();
        t.apply(
            &CallChange::Updated(Arc::new(call(CallState::Bridged, &[], Some("1002")))),
            &Office,
            "d",
            &|_| true,
        );
        // The end of c1 was missed; another call rings 1003.
        let mut other = call(CallState::Dialing, &["1003"], None);
        other.id = "c2".into();
        other.caller = Some("1002".into());
        let c = t.resync(&[other], &Office, "d");
        assert_eq!(
            lamp(&c, "1001"),
            [(DialogState::Terminated, Direction::Initiator)]
        );
        assert_eq!(
            lamp(&c, "1002"),
            [
                (DialogState::Early, Direction::Initiator),
                (DialogState::Terminated, Direction::Recipient)
            ]
        );
        assert_eq!(
            lamp(&c, "1003"),
            [(DialogState::Early, Direction::Recipient)]
        );
        assert!(!t.busy("1001") && t.busy("1002") && t.busy("1003"));
    }

    #[test]
    fn a_ringing_extension_that_loses_the_race_is_told_it_ended() {
        let mut t = Tracker::new();
        t.apply(
            &CallChange::Updated(Arc::new(call(CallState::Dialing, &["1002", "1003"], None))),
            &Office,
            "d",
            &|_| true,
        );
        let c = t.apply(
            &CallChange::Updated(Arc::new(call(CallState::Bridged, &[], Some("1002")))),
            &Office,
            "d",
            &|_| true,
        );
        assert_eq!(
            lamp(&c, "1003"),
            [(DialogState::Terminated, Direction::Recipient)]
        );
        assert!(!t.busy("1003"));
    }

    #[test]
    fn unwatched_extensions_are_tracked_without_reports() {
        let mut t = Tracker::new();
        let only_1002 = |ext: &str| ext == "1002";
        let c = t.apply(
            &CallChange::Updated(Arc::new(call(CallState::Dialing, &["1002"], None))),
            &Office,
            "d",
            &only_1002,
        );
        assert!(c.iter().all(|c| c.ext == "1002"), "no report for 1001");
        assert_eq!(
            lamp(&c, "1002"),
            [(DialogState::Early, Direction::Recipient)]
        );
        // 1001's state is kept for a subscriber that comes later.
        assert!(t.busy("1001"));
        assert_eq!(t.dialogs("1001").len(), 1);
        let c = t.apply(
            &CallChange::Ended(Arc::new(call(CallState::Dialing, &["1002"], None))),
            &Office,
            "d",
            &only_1002,
        );
        assert_eq!(
            lamp(&c, "1002"),
            [(DialogState::Terminated, Direction::Recipient)]
        );
        assert!(!t.busy("1001") && t.dialogs("1001").is_empty());
    }

    /// A call of `1001` to `1002` with id `id`, ringing.
    fn ringing(id: &str) -> CallSnapshot {
        CallSnapshot {
            id: id.to_owned(),
            ..call(CallState::Dialing, &["1002"], None)
        }
    }

    #[test]
    fn an_extension_with_many_calls_keeps_them_in_the_order_they_last_changed() {
        let mut t = Tracker::new();
        let ids: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        for id in &ids {
            t.apply(
                &CallChange::Updated(Arc::new(ringing(id))),
                &Office,
                "d",
                &|_| false,
            );
        }
        // c5 is answered: it becomes 1001's latest change.
        let answered = CallSnapshot {
            id: "c5".to_owned(),
            ..call(CallState::Bridged, &[], Some("1002"))
        };
        t.apply(
            &CallChange::Updated(Arc::new(answered)),
            &Office,
            "d",
            &|_| false,
        );
        t.apply(
            &CallChange::Ended(Arc::new(ringing("c7"))),
            &Office,
            "d",
            &|_| false,
        );
        let order: Vec<String> = t.dialogs("1001").into_iter().map(|d| d.call).collect();
        let mut expected: Vec<String> = ids
            .iter()
            .filter(|id| *id != "c5" && *id != "c7")
            .cloned()
            .collect();
        expected.push("c5".to_owned());
        assert_eq!(order, expected);
        // A watched extension's report is its latest MAX_REPORTED dialogs,
        // the changed one last.
        let answered = CallSnapshot {
            id: "c0".to_owned(),
            ..call(CallState::Bridged, &[], Some("1002"))
        };
        let c = t.apply(
            &CallChange::Updated(Arc::new(answered)),
            &Office,
            "d",
            &|_| true,
        );
        let report: Vec<&str> = c
            .iter()
            .find(|c| c.ext == "1001")
            .expect("1001 reported")
            .dialogs
            .iter()
            .map(|d| d.call.as_str())
            .collect();
        let mut latest: Vec<&str> = expected[expected.len() - (MAX_REPORTED - 1)..]
            .iter()
            .map(String::as_str)
            .filter(|id| *id != "c0")
            .collect();
        latest.push("c0");
        assert_eq!(report, latest);
        assert_eq!(t.dialogs("1001").len(), 39);
        assert_eq!(
            t.dialogs("1001").last().map(|d| d.call.as_str()),
            Some("c0")
        );
    }
}
