//! One call's task (DESIGN.md "Calls"): it owns the inbound leg (the
//! caller's INVITE server transaction and UAS dialog), the outbound branches
//! of a dial (one client INVITE each, `outbound.rs`'s `Outbound`; first
//! 2xx wins, the rest get CANCEL, RFC 3261 §16.7-style forking done as a
//! B2BUA), and the bridge between the
//! caller and the winner (BYE either way ends both; re-INVITE, UPDATE and
//! INFO are answered for each leg alone, media being anchored, and
//! keypresses cross as each phone negotiated them, in `indialog.rs`). The
//! route (Lua) drives it through a [`pbx::CallHandle`]; its media is
//! `anchor.rs`'s.
//!
//! Read in this order: this file (the call's state, its task's loop, its
//! end), `caller.rs` (the INVITE that starts it, our 2xx and the ACK),
//! `commands.rs` (what the route asks), `dial.rs` (the forks and the
//! bridge), `indialog.rs` (requests inside the dialogs); then the features
//! built on moves: `confirm.rs`, `trunkdial.rs`, `moves.rs` (park,
//! pickup, Replaces), `transfer.rs` (REFER).
//!
//! Both parties are `SipChannel`s: the caller from its INVITE (the
//! channel holds its INVITE's transaction: `ring`, `reject`,
//! `answer_with`, and ends itself on a CANCEL), the bridged party from
//! the moment it is put through. Owned by the call, their dialogs'
//! requests come to the call's queue and are served by the channel's
//! code (`SipChannel::serve`); a party that leaves takes its dialog
//! along (`leave_owner`). Each keeps its own media endpoint (the
//! caller's from our first SDP to it, a dial's target's from its
//! INVITE), lending the call its leg for what plays (ringback and early
//! media before the answer, the bridge after: `pbx::Stage`, in
//! `anchor.rs`'s `CallMedia`); the call reacts to what they do
//! (`on_party`).
//!
//! The call's state is one enum, [`Phase`] (`pbx::Phase`, over this
//! crate's `SipChannel` as the bridged party and per-dial data); what the admin API shows
//! (`pbx::CallState`) is derived from it. The call's record (CDR,
//! registry entry, trace) and its route are `pbx`'s too
//! (`pbx::CallRecord`, `pbx::RouteTask`). Its moves, each made by one
//! method of [`Call`]:
//!
//! | from | to | on | method |
//! |---|---|---|---|
//! | (INVITE) | Routing | a new call | `start` |
//! | (parked call timed out) | Answered | the ring-back call | `ring_back` |
//! | Routing | Answered | the route answers | `answer` |
//! | Routing, Answered | Dialing | `dial` with a target started | `enter_dialing` |
//! | Dialing | Routing, Answered | no answer, busy, failed, timeout | `leave_dialing` (`end_dial`) |
//! | Dialing | Bridged | a branch answers (or confirms); a picker's party arrives | `leave_dialing`, then `bridge_with` |
//! | Routing, Answered | Bridged | unpark; a transferee back with its transferor | `bridge_with` |
//! | Bridged | Answered | blind transfer (REFER); attended transfer's move | `take_party` (`take_bridge`) |
//! | Bridged | Replacing | an INVITE with Replaces takes a party's place | `take_party`, then `await_replacement` |
//! | Replacing | Bridged | the newcomer arrives | `take_replacement`, then `bridge_with` |
//! | any | Ended | BYE, CANCEL, reject, hangup, park, pickup, timeouts, shutdown | `finish` |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pbx::{DialDone, DialOutcome, Disposition, Leg, LegState, RouteEvent};
use sip_net::{Incoming, InviteEvent, InviteTx};
use sip_proto::Request;
use tokio::sync::oneshot;

use crate::anchor::{CallMedia, Which};
use confirm::ConfirmMedia;

mod caller;
mod commands;
mod confirm;
mod dial;
mod indialog;
mod moves;
mod transfer;
mod trunkdial;
use crate::leg::SipLeg;
use crate::outbound::Outbound;
use crate::{Inner, Reply, Side};
pub(crate) use caller::start;
pub(crate) use moves::ring_back;

/// The music-on-hold class of a call that names none (`sounds/moh/default.wav`).
pub const DEFAULT_MOH: &str = "default";

/// Something that happened to a call, delivered to its task.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum CallEvent {
    /// BYE, UPDATE or INFO inside one of the call's dialogs.
    Request {
        /// Whose dialog.
        side: Side,
        /// The request (boxed: events queue per call, and a small event
        /// keeps the queue small).
        request: Box<Request>,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// A re-INVITE inside one of the call's dialogs.
    ReInvite {
        /// Whose dialog.
        side: Side,
        /// The request and where it came from.
        incoming: Box<Incoming>,
        /// Its server transaction.
        tx: Box<InviteTx>,
    },
    /// An ACK for one of our 2xx.
    Ack {
        /// Whose dialog.
        side: Side,
        /// The ACK.
        request: Box<Request>,
    },
    /// The party that answered a dial with `confirm` pressed the key
    /// (`accepted`) or did not; its media comes back to the call.
    Confirmed {
        /// The branch.
        id: u32,
        /// Whether it accepted the call.
        accepted: bool,
        /// Its media side, which the confirmation ran on.
        media: Box<ConfirmMedia>,
    },
    /// A response to (or the end of) an outbound branch's INVITE.
    Branch {
        /// The branch.
        id: u32,
        /// What happened.
        event: InviteEvent,
    },
    /// The admin API hangs the call up (`DELETE /api/v1/calls/{id}`).
    Hangup,
    /// Another call would pick this ringing call up: if it still rings,
    /// its targets stop ringing and it waits for the picker (`true`).
    PickupAsk {
        /// Whether it may.
        reply: oneshot::Sender<bool>,
    },
    /// Another call's attended transfer replaces one of this call's
    /// dialogs (by Call-ID and tags): the other party of this call, with
    /// its extension, or `None`.
    GiveUp {
        /// The dialog: its Call-ID, `to-tag` and `from-tag` (RFC 3891).
        dialog: Box<DialogRef>,
        /// The party.
        reply: oneshot::Sender<Option<(crate::channel::SipChannel, String)>>,
    },
    /// An INVITE with Replaces would take the place of the party in this
    /// answered dialog (Call-ID and tags, RFC 3891): if it is one of this
    /// call's bridged legs, that leg is set aside for the newcomer, and
    /// the answer is where to send it (the call's own queue: the dialog
    /// asked about may be a channel's).
    ReplaceAsk {
        /// The dialog: its Call-ID, `to-tag` and `from-tag`.
        dialog: Box<DialogRef>,
        /// The call's queue if it may.
        reply: oneshot::Sender<Option<crate::queue::EventTx>>,
    },
    /// The picker's party (answered), for the call that agreed.
    Adopt {
        /// The picker.
        channel: Box<crate::channel::SipChannel>,
        /// Its extension.
        label: Box<str>,
    },
    /// A phone answered an offer of ours sent in a request of our own (a
    /// re-INVITE telling it who it talks to).
    OfferAnswered {
        /// Whose dialog.
        side: Side,
        /// The answer in its 2xx; `None`: refused, or no answer came.
        answer: Option<bytes::Bytes>,
    },
    /// A re-INVITE telling a phone who it talks to met the phone's own
    /// (491): tell it again, once, now that the wait is over.
    TellIdentity {
        /// Whose dialog.
        side: Side,
        /// The extension it talks to.
        user: String,
    },
}

impl CallEvent {
    /// Whose dialog, for a request in one of the call's dialogs (or an
    /// answer to our offer in one).
    fn dialog_side(&self) -> Option<Side> {
        match self {
            CallEvent::Request { side, .. }
            | CallEvent::ReInvite { side, .. }
            | CallEvent::Ack { side, .. }
            | CallEvent::OfferAnswered { side, .. }
            | CallEvent::TellIdentity { side, .. } => Some(*side),
            _ => None,
        }
    }
}

/// A dialog another call asks about, by Call-ID and tags (RFC 3891):
/// boxed in [`CallEvent`], which queues per call.
#[derive(Debug)]
pub(crate) struct DialogRef {
    pub(crate) call_id: String,
    /// Its `to-tag` and `from-tag`.
    pub(crate) tags: (String, String),
}

/// The caller's side.
struct Inbound {
    /// The caller's INVITE's Max-Forwards, for the INVITEs a dial sends
    /// (RFC 3261 §16.6 step 3, as a B2BUA passes it on): all that the call
    /// needs of the INVITE after it started (a copy of the whole INVITE
    /// was kept for this until the bridge).
    max_forwards: u32,
    /// The caller, a channel from its INVITE on (which its INVITE's
    /// transaction is, [`SipChannel::invite`](crate::channel::SipChannel)),
    /// owned by the call.
    /// Its media endpoint is its channel's (made with our first SDP to
    /// it), lending the call its leg: ringback and early media play on
    /// it before the answer, as the bridge does after.
    party: crate::channel::SipChannel,
}

impl Inbound {
    fn leg(&self) -> &SipLeg {
        &self.party.leg
    }

    fn leg_mut(&mut self) -> &mut SipLeg {
        &mut self.party.leg
    }
}

/// A call's outbound branches by number: a call has one or a few, so a
/// list (one small allocation) rather than a hash map (a larger table).
#[derive(Default)]
struct Branches(Vec<(u32, Box<Outbound>)>);

impl Branches {
    fn get(&self, id: &u32) -> Option<&Outbound> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, b)| &**b)
    }

    fn get_mut(&mut self, id: &u32) -> Option<&mut Outbound> {
        self.0
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, b)| &mut **b)
    }

    fn insert(&mut self, id: u32, branch: Box<Outbound>) {
        match self.0.iter_mut().find(|(i, _)| *i == id) {
            Some((_, b)) => *b = branch,
            None => self.0.push((id, branch)),
        }
    }

    fn values(&self) -> impl Iterator<Item = &Outbound> {
        self.0.iter().map(|(_, b)| &**b)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Outbound> {
        self.0.iter_mut().map(|(_, b)| &mut **b)
    }
}

/// What chan-sip keeps per dial, beside the fork (`pbx::Fork`): the
/// targets' SIP branches are in [`Call`]'s `branches`.
struct Dial {
    /// The branch whose early media the caller hears (after the dialplan
    /// answered), instead of our ringback.
    early: Option<u32>,
    /// The branch the caller hears (its early media): it keeps its
    /// endpoint and lends the call its leg as the callee side's.
    heard: Option<u32>,
    /// A list of trunks dialled one after the other (`trunkdial.rs`).
    trunks: Option<Box<trunkdial::Failover>>,
    /// Whoever answers must press a key first (`confirm.rs`).
    confirm: Option<pbx::DialConfirm>,
    /// The answered parties being asked to confirm, each on its own
    /// media: the first to press the key is put through.
    confirming: Vec<confirm::Confirming>,
}

/// A dial in progress (the targets are ringing).
type Dialing = pbx::Fork<Dial>;

/// The caller joined with the party that answered (its branch number, its
/// channel, what the route's dial waits for). The bridged party is a
/// [`SipChannel`](crate::channel::SipChannel): it serves its own dialog
/// and keeps its own media endpoint, lending the call its leg for the
/// bridge; the call reacts to what it does (`on_party`).
type Bridge = pbx::Bridged<crate::channel::SipChannel>;

/// The call's phase: which parties it has and what the route waits for
/// (`pbx::Phase`: one enum, protocol-free; its moves are made by
/// [`Call`]'s transition methods, the table is in the module docs).
///
/// Kept beside it in [`Call`], because they are not phases:
/// - `transfer`: a blind transfer's transferor, set aside while the call
///   goes on through `Answered` and `Dialing` (the transferee's own
///   phases) until the target answers or fails;
/// - `failed_transfer`: a step deferred until the current event is handled;
/// - `parking`: a slot held while the route announces it (any live phase);
/// - `route`: which route task drives the call, not which parties it has;
/// - `moh`, `identity`, `verstat`: the call's attributes.
type Phase = pbx::Phase<crate::channel::SipChannel, Dial>;

struct Call {
    inner: Arc<Inner>,
    /// What `pbx` keeps of the call: its CDR, its registry entry, its
    /// trace, its end.
    record: pbx::CallRecord,
    /// The dialplan's route driving the call, and what it asks.
    route: pbx::RouteTask,
    events_tx: crate::queue::EventTx,
    events: crate::queue::EventRx,
    /// The call's one timer, set to its earliest deadline on each turn of
    /// its loop (kept, not made anew each turn: a timer made per event
    /// was work per event and room in the task).
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    a: Inbound,
    /// Boxed: a branch is large and a map's table has room for several.
    branches: Branches,
    next_branch: u32,
    /// Where the call is in its life: the one place that says whether
    /// targets ring, who is bridged, whether it is over ([`Phase`]).
    phase: Phase,
    /// The music-on-hold class the other side hears when one side holds
    /// (`None`: [`DEFAULT_MOH`]).
    moh: Option<Box<str>>,
    /// Keypresses sent in INFO to a party and not yet answered (made at
    /// the first; see `indialog::MAX_INFO_IN_FLIGHT`).
    info_in_flight: Option<Arc<std::sync::atomic::AtomicU8>>,
    media: CallMedia,
    /// A parking slot held for this call's caller (announced, then parked).
    parking: Option<pbx::Reservation>,
    /// A blind transfer in progress (`transfer.rs`).
    transfer: Option<Box<transfer::Transferring>>,
    /// Its target failed: to settle once the current event is handled.
    failed_transfer: Option<DialOutcome>,
    /// The extension whose identity the call's party has when it is not
    /// the caller's (the callee kept after the caller transferred).
    identity: Option<String>,
    /// The trunk channel a carrier's call holds, given back when the call ends.
    _trunk_channel: Option<crate::trunk::ChannelSeized>,
    /// A trunk call's STIR/SHAKEN `verstat`, set once its Identity is
    /// checked (before its route runs): on From and P-Asserted-Identity
    /// towards phones.
    verstat: Arc<std::sync::OnceLock<&'static str>>,
}

impl Call {
    /// A call of `a`'s (its caller, answered or not), filed in `record`,
    /// driven by `route`, its events coming on `events`, its media
    /// anchored in `media`; routing, nobody dialled. Started with
    /// [`spawn`](Self::spawn).
    fn new(
        inner: Arc<Inner>,
        record: pbx::CallRecord,
        route: pbx::RouteTask,
        (events_tx, events): (crate::queue::EventTx, crate::queue::EventRx),
        a: Inbound,
        media: CallMedia,
    ) -> Call {
        Call {
            inner,
            record,
            route,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            events_tx,
            events,
            a,
            branches: Branches::default(),
            next_branch: 1,
            phase: Phase::Routing,
            moh: None,
            info_in_flight: None,
            media,
            parking: None,
            transfer: None,
            failed_transfer: None,
            identity: None,
            _trunk_channel: None,
            verstat: Arc::default(),
        }
    }

    /// Files the call in the registry and starts its task in `span`.
    fn spawn(self, span: tracing::Span) {
        use tracing::Instrument;
        self.publish();
        tokio::spawn(Box::new(self).run().instrument(span));
    }

    /// The call's task. Boxed: a future that took the call by value
    /// would keep room for it twice (the argument and the local it moves
    /// into).
    async fn run(mut self: Box<Self>) {
        let stop = self.inner.stop.clone();
        loop {
            if self.phase.is_ended() && self.route.is_done() {
                break;
            }
            // The dial that rang ended unanswered: no more ringback.
            if self.phase.dialing().is_none() && self.media.is_ringback() {
                // Boxed, as the handlers below: a future that would
                // otherwise sit in every call task for the whole call.
                self.lend_parties();
                Box::pin(self.media.stop_ringback()).await;
            }
            // The parties' legs, when nothing runs on them, are their
            // channels' again (which watch them and set their codecs).
            self.settle_caller();
            self.settle_callee();
            let now = Instant::now();
            // The parties' channels' timers (our 2xx until ACK, their
            // legs' silence) are kept in the call's one timer.
            let caller_at = self.a.party.deadline();
            let callee_at = self.phase.bridge().and_then(|b| b.leg.deadline());
            let dial_deadline = self.phase.dialing().map(|d| d.deadline());
            let linger_at = self.route.linger_deadline(self.phase.is_ended(), now);
            // One timer for the deadlines (a timer is a sizeable part of a
            // call's memory): the earliest, then see which are due.
            let wake_at = [dial_deadline, linger_at, caller_at, callee_at]
                .into_iter()
                .flatten()
                .min();
            if let Some(at) = wake_at {
                self.timer.as_mut().reset(at.into());
            }
            tokio::select! {
                // Boxed: what handling an event or a command awaits (SDP,
                // media legs, a bridge's restart) would otherwise sit in
                // every call's task for the whole call.
                asked = self.route.next() => match asked {
                    RouteEvent::Command(command) => Box::pin(self.on_command(command)).await,
                    RouteEvent::Ended(end) => self.on_route_end(end),
                },
                Some(event) = self.events.recv() => Box::pin(self.on_event(event)).await,
                event = bridged_event(&mut self.phase), if self.phase.bridge().is_some() => {
                    Box::pin(self.on_party(Which::B, event)).await;
                }
                event = self.a.party.next_request() => {
                    Box::pin(self.on_party(Which::A, event)).await;
                }
                event = transfer::transferor_event(&mut self.transfer), if self.transfer.is_some() => {
                    self.on_transferor_event(event);
                }
                (to, digit) = self.media.next_info_digit(), if self.media.interworks() => {
                    // RFC 4733 reports a digit as it starts: its INFO says
                    // the usual length.
                    self.send_info_digit(to, digit, crate::party::INFO_DIGIT_DEFAULT);
                }
                () = stop.cancelled(), if !self.phase.is_ended() => self.on_shutdown(),
                () = &mut self.timer, if wake_at.is_some() => {
                    let now = Instant::now();
                    if dial_deadline.is_some_and(|at| at <= now) {
                        Box::pin(self.on_dial_timeout()).await;
                    }
                    if caller_at.is_some_and(|at| at <= now)
                        && let Some(event) = self.a.party.on_deadline(now)
                    {
                        Box::pin(self.on_party(Which::A, event)).await;
                    }
                    if callee_at.is_some_and(|at| at <= now)
                        && let Some(event) = self.phase.bridge_mut().and_then(|b| b.leg.on_deadline(now))
                    {
                        Box::pin(self.on_party(Which::B, event)).await;
                    }
                    if linger_at.is_some_and(|at| at <= now) {
                        self.route.abandon();
                        break;
                    }
                }
            }
            if let Some(outcome) = self.failed_transfer.take() {
                Box::pin(self.transfer_return(outcome)).await;
            }
        }
        self.cleanup();
    }

    // ---- events ----

    async fn on_event(&mut self, event: CallEvent) {
        // A party that is a channel owned by this call: its dialog is
        // served by the channel, as it would serve it from its own inbox.
        if let Some(which) = event.dialog_side().and_then(|side| self.which(side))
            && let Some(channel) = self.party_channel(which)
        {
            if let Some(event) = channel.serve(event) {
                Box::pin(self.on_party(which, event)).await;
            }
            return;
        }
        match event {
            CallEvent::Branch { id, event } => self.on_branch(id, event).await,
            CallEvent::Confirmed {
                id,
                accepted,
                media,
            } => self.on_confirmed(id, accepted, media.0).await,
            // A dialog no party's channel serves: a fork's.
            CallEvent::Request { request, reply, .. } => Call::on_fork_request(&request, reply),
            CallEvent::ReInvite { tx, .. } => Call::on_fork_reinvite(*tx),
            CallEvent::Ack { .. } | CallEvent::OfferAnswered { .. } => {}
            CallEvent::TellIdentity { side, user } => self.tell_identity(side, &user, false),
            CallEvent::Hangup => self.on_admin_hangup(),
            CallEvent::ReplaceAsk { dialog, reply } => {
                let DialogRef { call_id, tags } = *dialog;
                let agreed = self.on_replace_ask(&call_id, tags).await;
                let _ = reply.send(agreed.then(|| self.events_tx.clone()));
            }
            CallEvent::PickupAsk { reply } => {
                let _ = reply.send(self.on_pickup_ask());
            }
            CallEvent::Adopt { channel, label } => self.on_adopt(*channel, label.into()).await,
            CallEvent::GiveUp { dialog, reply } => {
                let DialogRef { call_id, tags } = *dialog;
                let party = self.give_up(&call_id, tags).await;
                let _ = reply.send(party);
            }
        }
    }

    /// What `which` party did (its channel served its dialog): the
    /// caller, or the bridged party.
    async fn on_party(&mut self, which: Which, event: crate::channel::SipEvent) {
        use crate::channel::SipEvent;
        match event {
            SipEvent::Served(served) => self.on_served(which, served).await,
            SipEvent::Ended(hangup) => match which {
                Which::A => self.on_caller_ended(&hangup),
                Which::B => self.on_callee_ended(&hangup),
            },
            SipEvent::Owner(event) => self.on_event(event).await,
        }
    }

    /// The bridged party's channel has ended (BYE, no ACK, no RTP): the
    /// caller gets BYE and the call ends.
    fn on_callee_ended(&mut self, hangup: &pbx::Hangup) {
        let cause = match hangup.cause {
            "bye" => "callee",
            "no ACK" => "no ACK for re-INVITE",
            cause => cause,
        };
        tracing::debug!(cause, "the bridged party has ended");
        self.a.leg_mut().bye();
        self.finish(Disposition::Answered, hangup.code, cause);
    }

    /// The caller's channel has ended (its CANCEL before the answer;
    /// BYE, no ACK, no RTP, the admin API after): the bridged party gets
    /// BYE, a dial still ringing is cancelled, and the call ends.
    fn on_caller_ended(&mut self, hangup: &pbx::Hangup) {
        let (disposition, cause) = match hangup.cause {
            "bye" => (Disposition::Answered, "caller"),
            // Before the answer (the channel sent 487).
            "cancel" => (Disposition::Cancelled, "cancel"),
            "no ACK for our 200" => {
                tracing::info!("no ACK for our 200 OK; ending the call");
                (Disposition::Failed, "no ACK from caller")
            }
            "no ACK" => {
                tracing::info!("no ACK for our 200 OK to a re-INVITE; ending the call");
                (Disposition::Answered, "no ACK for re-INVITE")
            }
            cause => (Disposition::Answered, cause),
        };
        if let Some(b) = self.phase.bridge_mut() {
            b.leg.leg.bye();
        }
        self.abandon_dial();
        self.finish(disposition, hangup.code, cause);
    }

    /// Lends the call's media the answered caller's leg, when its channel
    /// has it (before anything that runs on it starts).
    fn lend_caller(&mut self) {
        if let Some(leg) = pbx::Channel::take_media(&mut self.a.party) {
            self.media.lend_caller(leg);
        }
    }

    /// `which`'s channel: the answered caller's, or the bridged party's.
    fn party_channel(&mut self, which: Which) -> Option<&mut crate::channel::SipChannel> {
        match which {
            Which::A => Some(&mut self.a.party),
            Which::B => self.phase.bridge_mut().map(|b| &mut b.leg),
        }
    }

    /// Gives the answered caller's channel its leg back when nothing runs
    /// on it.
    fn settle_caller(&mut self) {
        if let Some(leg) = self.media.idle_caller() {
            pbx::Channel::give_media(&mut self.a.party, leg);
        }
    }

    /// Lends the call's media both parties' legs, for what it starts.
    fn lend_parties(&mut self) {
        self.lend_caller();
        self.lend_callee();
    }

    /// The answered caller's codec changed: what runs on its leg stops,
    /// the leg goes back to its channel to take the new codec, and it
    /// starts again (a prompt where it was).
    async fn restart_caller(&mut self) {
        let suspended = self.media.suspend().await;
        self.settle_caller();
        self.lend_parties();
        self.media.go_on(suspended).await;
    }

    /// A keypress the caller sent in signalling, offered to
    /// `read_digits` like an RFC 4733 one.
    fn push_caller_digit(&mut self, digit: rtp::Digit) {
        if let Some(media) = self.a.party.media.as_deref() {
            media.push_digit(digit);
        }
    }

    /// The caller's digits, for `read_digits`.
    fn caller_digits(&mut self) -> Option<media::Digits> {
        self.a.party.media.as_deref_mut()?.digits()
    }

    /// Lends the call's media the bridged party's leg, when its channel
    /// has it (before anything that runs on it starts).
    fn lend_callee(&mut self) {
        if let Some(b) = self.phase.bridge_mut()
            && let Some(leg) = pbx::Channel::take_media(&mut b.leg)
        {
            self.media.lend_callee(leg);
        }
    }

    /// Gives the bridged party's channel its leg back when nothing runs
    /// on it.
    fn settle_callee(&mut self) {
        if let Some(b) = self.phase.bridge_mut()
            && let Some(leg) = self.media.idle_callee()
        {
            pbx::Channel::give_media(&mut b.leg, leg);
        }
    }

    /// Joins the caller's and the bridged party's media.
    async fn bridge_media(&mut self) {
        self.lend_parties();
        self.media.bridge().await;
    }

    /// The bridged party's codec changed: what runs on its leg stops, the
    /// leg goes back to its channel to take the new codec, and it starts
    /// again.
    async fn restart_callee(&mut self) {
        self.lend_caller();
        let suspended = self.media.suspend().await;
        self.settle_callee();
        self.lend_parties();
        self.media.go_on(suspended).await;
    }

    /// The call's music-on-hold class.
    fn moh_class(&self) -> &str {
        self.moh.as_deref().unwrap_or(DEFAULT_MOH)
    }

    /// Notes in the trace what the call made of a dialplan step.
    fn note(&self, text: impl FnOnce() -> String) {
        self.record.note(text);
    }

    /// The admin API ends the call whatever its state: BYE to each party
    /// that answered, 480 to a caller still waiting, CANCEL to ringing
    /// branches (in `finish`).
    fn on_admin_hangup(&mut self) {
        if self.phase.is_ended() {
            return;
        }
        tracing::info!("call hung up by the admin API");
        if let Some(b) = self.phase.bridge_mut() {
            b.leg.leg.bye();
        }
        if self.a.leg().state == LegState::Up {
            self.a.leg_mut().bye();
            self.finish(Disposition::Answered, 200, "admin hangup");
        } else {
            let r = self.a.party.invite.response_with_warning(
                480,
                &self.inner.config.domain,
                "hung up by the administrator",
            );
            self.a.party.invite.respond(r);
            self.a.leg_mut().state = LegState::Ended;
            self.finish(Disposition::Failed, 480, "admin hangup");
        }
    }

    /// The server is stopping: end the call whatever its state.
    fn on_shutdown(&mut self) {
        if self.a.leg().state == LegState::Up {
            self.a.leg_mut().bye();
            if let Some(b) = self.phase.bridge_mut() {
                b.leg.leg.bye();
            }
            self.finish(Disposition::Answered, 200, "shutdown");
        } else {
            let r = self.a.party.invite.response_with_warning(
                503,
                &self.inner.config.domain,
                "shutting down",
            );
            self.a.party.invite.respond(r);
            self.finish(Disposition::Failed, 503, "shutdown");
        }
    }

    // ---- the phase's transitions (the table is in the module docs) ----

    /// Whether the caller has been answered (the phase a caller left
    /// alone returns to: `Answered`, or `Routing`).
    fn caller_up(&self) -> bool {
        self.a.leg().state == LegState::Up
    }

    /// Routing | Answered -> Dialing: the targets ring.
    fn enter_dialing(&mut self, dialing: Box<Dialing>) {
        self.phase.enter_dialing(dialing);
        self.publish();
    }

    /// Dialing -> Routing | Answered: the dial is over (the caller gets
    /// its result, or a bridge follows at once); the targets' own media
    /// (ports) go, the one put through having left its branch already.
    /// `None` when not dialling.
    fn leave_dialing(&mut self) -> Option<Box<Dialing>> {
        for branch in self.branches.values_mut() {
            branch.media = None;
        }
        let caller_up = self.caller_up();
        self.phase.leave_dialing(caller_up)
    }

    /// Routing | Answered (a dial just left, a pickup, an unpark, a
    /// replacement arriving, a transferee back) -> Bridged.
    fn bridge_with(&mut self, bridge: Bridge) {
        self.phase.bridge_with(bridge);
        self.publish();
    }

    /// Bridged -> Answered: the bridged party leaves (a transfer, a
    /// replacement, an attended transfer's move). `None` when not bridged.
    fn take_bridge(&mut self) -> Option<Bridge> {
        let caller_up = self.caller_up();
        let mut bridge = self.phase.take_bridge(caller_up)?;
        // Wherever it goes, its dialog goes with it.
        bridge.leg.leave_owner();
        Some(bridge)
    }

    /// Answered (the bridged party just released) -> Replacing.
    fn await_replacement(&mut self, done: DialDone) {
        self.phase.await_replacement(done);
    }

    /// Replacing -> Answered: the newcomer is here (and is bridged next).
    fn take_replacement(&mut self) -> Option<DialDone> {
        let caller_up = self.caller_up();
        self.phase.take_replacement(caller_up)
    }

    // ---- helpers ----

    /// The call is over: the route's pending and later actions fail with
    /// "call has ended", a dial in progress returns.
    fn finish(&mut self, disposition: Disposition, code: u16, cause: &str) {
        if self.phase.is_ended() {
            return;
        }
        // The route's pending and later actions fail from now on; its
        // dial returns: a ringing one with "call has ended", an answered
        // one (bridged, or waiting for its replacement) as answered.
        self.route.call_ended();
        self.phase.end();
        self.transfer_abandoned();
        // The ports go back to the pool now, not when the route returns.
        self.media.release();
        self.cancel_branches();
        self.record.end(disposition, code, cause);
    }

    fn publish(&self) {
        let mut legs = vec![self.a.leg().snapshot()];
        if let Some(b) = self.phase.bridge() {
            legs.push(pbx::Leg::snapshot(&b.leg.leg));
        }
        let ringing = self
            .phase
            .dialing()
            .iter()
            .flat_map(|d| d.targets())
            .filter_map(|id| self.branches.get(id))
            .filter(|b| !b.done)
            .map(Outbound::snapshot)
            .collect();
        self.record.publish(self.phase.call_state(), legs, ringing);
    }

    fn cleanup(mut self) {
        if !self.phase.is_ended() {
            self.finish(Disposition::Failed, 500, "internal");
        }
        let inner = &self.inner;
        // A party that moved on (parked) keeps its dialog.
        inner
            .dialogs
            .remove_owned(self.record.id(), &self.events_tx);
        // A party that answered is a channel (or has moved on) and has
        // its dialog: only the forks' are this call's.
        for branch in self.branches.values() {
            branch.forget(inner, &self.events_tx);
        }
        // Its CDR is queued before it stops counting as active: a
        // shutdown waits for no call to be active, then flushes the CDR
        // writer, and must find this one queued.
        self.record.close();
        let active = inner
            .active
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("calls_active").set(active as f64);
    }
}

/// The next thing the bridged party does (pending while nobody is
/// bridged), for the call's loop. Cancel-safe.
async fn bridged_event(phase: &mut Phase) -> crate::channel::SipEvent {
    match phase.bridge_mut() {
        Some(b) => b.leg.next_request().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phase took the place of `Option<Box<Dialing>>`,
    /// `Option<Bridge>`, an `Option` of the dial's sender, a `bool` and a
    /// `CallState`: it must not make each call larger (bench/README.md,
    /// "Per-call memory"). A bridge stays inline (an established call
    /// has one), anything else large stays boxed.
    #[test]
    fn the_phase_is_no_larger_than_the_fields_it_replaced() {
        let before = size_of::<Option<Box<Dialing>>>()
            + size_of::<Option<Bridge>>()
            + size_of::<Option<DialDone>>()
            + size_of::<bool>()
            + size_of::<pbx::CallState>();
        let phase = size_of::<Phase>();
        eprintln!(
            "Phase {phase} bytes (fields it replaced: {before}); Bridge {}, Dialing {}, Call {}",
            size_of::<Bridge>(),
            size_of::<Dialing>(),
            size_of::<Call>()
        );
        assert!(phase <= before, "Phase is {phase} bytes, was {before}");
        assert!(
            phase <= size_of::<Bridge>() + size_of::<usize>(),
            "a phase's data larger than a bridge must be boxed"
        );
    }
}
