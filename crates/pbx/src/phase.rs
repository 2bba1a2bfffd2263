//! A call's phase (DESIGN.md "Calls", docs/call-core.md): which parties a
//! call has and what its route's `dial` waits for, as one enum whose
//! variants hold what exists only in that phase, so "a dial and a bridge
//! at once" or "a bridge after the end" cannot be written. What the admin
//! API and the busy lamps show ([`CallState`]) is derived from it.
//!
//! It is protocol-free: a channel driver's call task keeps its parties'
//! protocol state in the two type parameters (`P`, the bridged party; `X`,
//! what it keeps per dial) and moves the phase with its transition methods:
//!
//! | from | to | method |
//! |---|---|---|
//! | Routing, Answered | Dialing | [`enter_dialing`](Phase::enter_dialing) |
//! | Dialing | Routing, Answered | [`leave_dialing`](Phase::leave_dialing) |
//! | Routing, Answered | Bridged | [`bridge_with`](Phase::bridge_with) |
//! | Bridged | Answered | [`take_bridge`](Phase::take_bridge) |
//! | Answered | Replacing | [`await_replacement`](Phase::await_replacement) |
//! | Replacing | Answered | [`take_replacement`](Phase::take_replacement) |
//! | any | Ended | [`end`](Phase::end) |
//!
//! A dial in progress is a [`Fork`]: the targets ringing at once, what the
//! failed ones said, whether any rang; the first answer wins, and when
//! every target failed the dial's outcome follows from their statuses
//! ([`DialOutcome::unanswered`]).

use std::time::Instant;

use tokio::sync::oneshot;

use crate::handle::{ActionError, DialOutcome, DialStatus};
use crate::registry::CallState;

/// Where the route's `dial` (or a pickup's, an unpark's) hears how it
/// ended: when the targets give up, or when the bridge it made ends.
pub type DialDone = oneshot::Sender<Result<DialOutcome, ActionError>>;

/// A dial in progress: its targets (numbered by the channel driver) ring
/// at once until one answers, all fail, or the deadline passes.
#[derive(Debug)]
pub struct Fork<X> {
    done: DialDone,
    deadline: Instant,
    targets: Vec<u32>,
    codes: Vec<u16>,
    rang: bool,
    picked: bool,
    /// What the channel driver keeps for this dial.
    pub driver: X,
}

impl<X> Fork<X> {
    /// A dial whose `targets` ring until `deadline`; `done` hears how it
    /// ended.
    pub fn new(done: DialDone, deadline: Instant, targets: Vec<u32>, driver: X) -> Fork<X> {
        Fork {
            done,
            deadline,
            targets,
            codes: Vec::new(),
            rang: false,
            picked: false,
            driver,
        }
    }

    /// The targets ringing (or being set up).
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }

    /// Whether `id` is one of this dial's targets.
    pub fn is_target(&self, id: u32) -> bool {
        self.targets.contains(&id)
    }

    /// Rings `targets` instead, until `deadline` (the next trunk of a
    /// failover list).
    pub fn retarget(&mut self, targets: Vec<u32>, deadline: Instant) {
        self.targets = targets;
        self.deadline = deadline;
    }

    /// When the dial gives up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (an answering party given time to confirm).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// A target rings.
    pub fn ringing(&mut self) {
        self.rang = true;
    }

    /// Whether any target rang.
    pub fn has_rung(&self) -> bool {
        self.rang
    }

    /// A target failed with `code` (a final status: 486, 480, ...).
    pub fn failed(&mut self, code: u16) {
        self.codes.push(code);
    }

    /// The outcome if no target answers: from the failed targets' statuses.
    pub fn unanswered(&self) -> DialOutcome {
        DialOutcome::unanswered(&self.codes, self.rang)
    }

    /// Another call picks this one up: its targets must stop ringing.
    /// `false` if one already did.
    pub fn pick(&mut self) -> bool {
        !std::mem::replace(&mut self.picked, true)
    }

    /// Whether another call is picking this one up.
    pub fn is_picked(&self) -> bool {
        self.picked
    }

    /// The dial ended without a bridge: its route hears `outcome`.
    pub fn finish(self, outcome: Result<DialOutcome, ActionError>) {
        let _ = self.done.send(outcome);
    }

    /// The dial becomes a bridge: where its route hears how that ends.
    pub fn into_done(self) -> DialDone {
        self.done
    }
}

/// The caller's partner in a bridge.
#[derive(Debug)]
pub struct Bridged<P> {
    /// The channel driver's number for it (the dial's target that
    /// answered, or the number given to a party that came otherwise).
    pub branch: u32,
    /// The party.
    pub leg: P,
    /// The route's `dial` returns when the bridge ends.
    pub done: Option<DialDone>,
    /// The dial's target that answered, as the route gave it (the dial
    /// result's `answered_by`); `None` for a party that came otherwise
    /// (a pickup, a transfer).
    pub answered_by: Option<String>,
}

/// The call's phase (see the module docs).
#[derive(Debug)]
pub enum Phase<P, X> {
    /// The route runs and the caller is not answered.
    Routing,
    /// The caller is answered by us and alone: its media is the call's own
    /// (prompts, echo, recording, music), or it waits while a transfer's
    /// route runs.
    Answered,
    /// Targets ring (boxed: a dial is large and lasts seconds).
    Dialing(Box<Fork<X>>),
    /// The caller is bridged with another party (inline: an established
    /// call is the common case and keeps it).
    Bridged(Bridged<P>),
    /// An INVITE with Replaces released the bridged party; the newcomer
    /// takes its place and the route's dial goes on until then.
    Replacing(DialDone),
    /// The call is over; its route may still run, its actions failing
    /// with "call has ended". The bridged party (if it was bridged) is
    /// kept until the task ends: its dialog is still this call's.
    Ended(Option<Bridged<P>>),
}

impl<P, X> Phase<P, X> {
    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        matches!(self, Phase::Ended(_))
    }

    /// The caller with nobody else, dialling nobody: what a dial, a
    /// pickup, an unpark, a park and the media actions start from.
    pub fn is_alone(&self) -> bool {
        matches!(self, Phase::Routing | Phase::Answered)
    }

    /// The dial in progress.
    pub fn dialing(&self) -> Option<&Fork<X>> {
        match self {
            Phase::Dialing(d) => Some(d),
            _ => None,
        }
    }

    /// The dial in progress, to change.
    pub fn dialing_mut(&mut self) -> Option<&mut Fork<X>> {
        match self {
            Phase::Dialing(d) => Some(d),
            _ => None,
        }
    }

    /// The bridged party: while bridged, and after the end for the party
    /// that was.
    pub fn bridge(&self) -> Option<&Bridged<P>> {
        match self {
            Phase::Bridged(b) | Phase::Ended(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The bridged party, to change.
    pub fn bridge_mut(&mut self) -> Option<&mut Bridged<P>> {
        match self {
            Phase::Bridged(b) | Phase::Ended(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// What the admin API and the busy lamps show. A call waiting for its
    /// replacement still counts as bridged (the newcomer is on its way).
    pub fn call_state(&self) -> CallState {
        match self {
            Phase::Routing => CallState::Routing,
            Phase::Answered => CallState::Answered,
            Phase::Dialing(_) => CallState::Dialing,
            Phase::Bridged(_) | Phase::Replacing(_) => CallState::Bridged,
            Phase::Ended(_) => CallState::Ending,
        }
    }

    /// Another call would pick this one up: it may while its targets ring
    /// and nobody (no target, no other picker) took it. `true`: it is
    /// claimed; its targets must stop ringing.
    pub fn pick(&mut self) -> bool {
        match self {
            Phase::Dialing(fork) => fork.pick(),
            _ => false,
        }
    }

    /// The phase of a caller with nobody else: answered (`caller_up`) or
    /// not.
    fn alone(caller_up: bool) -> Self {
        if caller_up {
            Phase::Answered
        } else {
            Phase::Routing
        }
    }

    /// Routing | Answered -> Dialing: the targets ring.
    pub fn enter_dialing(&mut self, fork: Box<Fork<X>>) {
        *self = Phase::Dialing(fork);
    }

    /// Dialing -> Routing | Answered: the dial is over (its route gets its
    /// result, or a bridge follows at once). `None` when not dialling.
    pub fn leave_dialing(&mut self, caller_up: bool) -> Option<Box<Fork<X>>> {
        if !matches!(self, Phase::Dialing(_)) {
            return None;
        }
        match std::mem::replace(self, Self::alone(caller_up)) {
            Phase::Dialing(fork) => Some(fork),
            _ => None,
        }
    }

    /// Routing | Answered (a dial just left, a pickup, an unpark, a
    /// replacement arriving, a transferee back) -> Bridged.
    pub fn bridge_with(&mut self, bridge: Bridged<P>) {
        *self = Phase::Bridged(bridge);
    }

    /// Bridged -> Answered: the bridged party leaves (a transfer, a
    /// replacement, an attended transfer's move). `None` when not bridged.
    pub fn take_bridge(&mut self, caller_up: bool) -> Option<Bridged<P>> {
        if !matches!(self, Phase::Bridged(_)) {
            return None;
        }
        match std::mem::replace(self, Self::alone(caller_up)) {
            Phase::Bridged(bridge) => Some(bridge),
            _ => None,
        }
    }

    /// Answered (the bridged party just released) -> Replacing.
    pub fn await_replacement(&mut self, done: DialDone) {
        *self = Phase::Replacing(done);
    }

    /// Replacing -> Answered: the newcomer is here (and is bridged next).
    pub fn take_replacement(&mut self, caller_up: bool) -> Option<DialDone> {
        if !matches!(self, Phase::Replacing(_)) {
            return None;
        }
        match std::mem::replace(self, Self::alone(caller_up)) {
            Phase::Replacing(done) => Some(done),
            _ => None,
        }
    }

    /// Any -> Ended: the route's dial returns (a ringing one with "call
    /// has ended"; an answered one, bridged or waiting for its
    /// replacement, as answered); a ringing dial's driver data is dropped,
    /// which stops what it runs. `false` (and nothing changes) when the
    /// call had ended already.
    pub fn end(&mut self) -> bool {
        if self.is_ended() {
            return false;
        }
        let answered = |answered_by| {
            Ok(DialOutcome {
                status: DialStatus::Answered,
                code: 200,
                answered_by,
            })
        };
        match std::mem::replace(self, Phase::Ended(None)) {
            Phase::Dialing(fork) => {
                let _ = fork.done.send(Err(ActionError::Ended));
            }
            Phase::Bridged(mut bridge) => {
                if let Some(done) = bridge.done.take() {
                    let _ = done.send(answered(bridge.answered_by.clone()));
                }
                *self = Phase::Ended(Some(bridge));
            }
            Phase::Replacing(done) => {
                let _ = done.send(answered(None));
            }
            Phase::Routing | Phase::Answered | Phase::Ended(_) => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type TestPhase = Phase<&'static str, ()>;

    fn fork() -> (
        Box<Fork<()>>,
        oneshot::Receiver<Result<DialOutcome, ActionError>>,
    ) {
        let (done, heard) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(30);
        (Box::new(Fork::new(done, deadline, vec![1, 2], ())), heard)
    }

    #[test]
    fn a_dial_that_fails_everywhere_reports_the_busiest_status() {
        let (mut fork, mut heard) = fork();
        assert!(fork.is_target(2) && !fork.is_target(3));
        fork.ringing();
        fork.failed(480);
        fork.failed(486);
        let outcome = fork.unanswered();
        assert_eq!((outcome.status, outcome.code), (DialStatus::Busy, 486));
        fork.finish(Ok(outcome));
        assert!(matches!(heard.try_recv(), Ok(Ok(o)) if o.status == DialStatus::Busy));
    }

    #[test]
    fn a_call_is_picked_up_once_and_only_while_it_rings() {
        let (fork, _heard) = fork();
        let mut phase = TestPhase::Routing;
        assert!(!phase.pick(), "nothing rings");
        phase.enter_dialing(fork);
        assert!(phase.pick());
        assert!(!phase.pick(), "claimed already");
        assert!(phase.dialing().is_some_and(Fork::is_picked));
        phase.bridge_with(Bridged {
            branch: 1,
            leg: "1002",
            done: None,
            answered_by: None,
        });
        assert!(!phase.pick(), "answered");
    }

    #[test]
    fn the_phases_follow_the_table_and_the_state_follows_the_phase() {
        let mut phase = TestPhase::Routing;
        assert!(phase.is_alone());
        assert_eq!(phase.take_bridge(false).map(|b| b.leg), None);
        let (fork, mut heard) = fork();
        phase.enter_dialing(fork);
        assert_eq!(phase.call_state(), CallState::Dialing);
        // The caller was answered meanwhile: leaving the dial, it is alone
        // and answered.
        let fork = phase.leave_dialing(true).expect("dialling");
        assert!(matches!(phase, Phase::Answered));
        phase.bridge_with(Bridged {
            branch: 1,
            leg: "1002",
            done: Some(fork.into_done()),
            answered_by: Some("1002".into()),
        });
        assert_eq!(phase.call_state(), CallState::Bridged);
        let bridge = phase.take_bridge(true).expect("bridged");
        phase.await_replacement(bridge.done.expect("the dial waits"));
        assert_eq!(phase.call_state(), CallState::Bridged);
        let done = phase.take_replacement(true).expect("replacing");
        phase.bridge_with(Bridged {
            branch: 3,
            leg: "1003",
            done: Some(done),
            answered_by: None,
        });
        assert!(phase.end());
        assert_eq!(phase.call_state(), CallState::Ending);
        // The bridged party stays for the clean-up; the dial hears the
        // answer of whoever was bridged last.
        assert_eq!(phase.bridge().map(|b| b.leg), Some("1003"));
        let heard = heard.try_recv().expect("the dial returned");
        assert!(
            matches!(heard, Ok(o) if o.status == DialStatus::Answered && o.answered_by.is_none())
        );
        // Ending twice changes nothing.
        assert!(!phase.end());
    }

    #[test]
    fn ending_while_targets_ring_tells_the_dial_the_call_ended() {
        let mut phase = TestPhase::Answered;
        let (fork, mut heard) = fork();
        phase.enter_dialing(fork);
        assert!(phase.end());
        assert!(matches!(heard.try_recv(), Ok(Err(ActionError::Ended))));
        assert!(phase.bridge().is_none());
    }
}
