//! Blind transfer (RFC 3515 REFER in a call's dialog, with RFC 4488
//! `Refer-Sub`): the bridged party that sends REFER (the transferor) leaves
//! the bridge, the other party (the transferee) hears ringback while the
//! target is routed through the transferor's own context (its dialplan's
//! rules and permissions), and the transferor learns how it went from
//! NOTIFYs with `message/sipfrag` bodies (100 Trying, then 200 or the
//! failure). Answered: the transferee and the target are bridged and the
//! transferor is released. Failed while the transferor is still there:
//! the transferee goes back to it. Failed after it hung up: the route
//! decides (the shipped one rings the transferor back).
//!
//! A REFER from the dialog's own peer is not challenged again: the dialog
//! table only delivers requests from that peer's address (or its
//! re-authenticated extension).

use media::Player;
use pbx::{
    CallDetails, CallHandle, Channel, ChannelEvent, DialOutcome, DialStatus, LegState, Party,
};
use tokio::sync::oneshot;

use super::{Bridge, Call, CallEvent};
use crate::anchor::Which;
use crate::channel::SipChannel;
use crate::leg::SipLeg;
use crate::party::{Refer, ReferTo, Replaced};
use crate::{Reply, Side};

/// A transfer in progress: who asked, and what is kept to give the
/// transferee back to it if the target fails.
pub(super) struct Transferring {
    /// The transferor, a channel serving its own dialog while the target
    /// rings (a re-INVITE or UPDATE answered by its own media, a BYE
    /// noted); NOTIFYs go in its dialog, and dropping it releases it.
    channel: SipChannel,
    /// Its number as the call's bridged party (again if it comes back).
    branch: u32,
    /// Its extension (the context the target is routed in).
    by: String,
    /// Where to.
    target: String,
    /// The implicit subscription's NOTIFYs (`None`: `Refer-Sub: false`).
    subscribed: bool,
    /// The REFER's CSeq (the NOTIFYs' `Event: refer;id=`).
    id: u32,
}

impl Transferring {
    /// A NOTIFY of the implicit subscription carrying `status` as a
    /// `message/sipfrag` (RFC 3515 §2.4.5); `done` ends the subscription.
    fn notify(&mut self, status: u16, reason: &str, done: bool) {
        if self.subscribed {
            self.channel.notify_refer(self.id, status, reason, done);
        }
    }
}

/// The next event of the transferor of the transfer in progress (pending
/// while there is none), for the call's loop.
pub(super) async fn transferor_event(transfer: &mut Option<Box<Transferring>>) -> ChannelEvent {
    match transfer {
        Some(t) => t.channel.next_event().await,
        None => std::future::pending().await,
    }
}

/// What becomes of the transferee when a blind transfer's target fails
/// ([`Call::transfer_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetFailed {
    /// Not a transfer's dial, or the transferor's context has no hook: the
    /// route that dialled gets the result.
    Route,
    /// Back to the transferor, still on the line.
    Return,
    /// The transferor hung up; the context's `on_transfer_failed` routes
    /// the transferee (it has taken over from the route that dialled).
    Hook,
}

/// The sipfrag reason phrase for a failed target.
fn failure_reason(status: DialStatus) -> &'static str {
    match status {
        DialStatus::Busy => "Busy Here",
        DialStatus::NoAnswer => "Request Timeout",
        DialStatus::Unavailable => "Temporarily Unavailable",
        _ => "Failed",
    }
}

impl Call {
    /// A REFER in one of the call's dialogs (the request is in order and
    /// from its peer).
    pub(super) async fn on_refer(
        &mut self,
        from_bridge: bool,
        refer: Result<Box<Refer>, &'static str>,
        reply: oneshot::Sender<Reply>,
    ) {
        if self.phase.bridge().is_none() || self.transfer.is_some() || self.phase.is_ended() {
            // A transfer moves the other party of a bridge, one at a time.
            let _ = reply.send(Reply::status(603));
            return;
        }
        let Refer { to, subscribed, id } = match refer {
            Ok(refer) => *refer,
            Err(why) => {
                tracing::info!("REFER refused: {why}");
                let _ = reply.send(Reply::status(400));
                return;
            }
        };
        let target = match to {
            ReferTo::Target(target) => target,
            ReferTo::Replaces(replaced) => {
                self.attended(from_bridge, replaced, (subscribed, id), reply)
                    .await;
                return;
            }
        };
        let transferor = if from_bridge {
            self.record.callee().map(str::to_owned)
        } else {
            self.identity
                .clone()
                .or_else(|| self.record.caller().map(str::to_owned))
        };
        let Some(by) = transferor.filter(|c| self.inner.extensions.load().contains_key(c)) else {
            // A transfer is routed in the transferor's context: it must be
            // one of our extensions.
            let _ = reply.send(Reply::status(403));
            return;
        };
        let _ = reply.send(Reply::status(202));
        // The transferor leaves the bridge as a channel of its own (when
        // it is the caller, the callee becomes the party the call keeps);
        // the transferee waits (ringback comes with the dial).
        let which = if from_bridge { Which::B } else { Which::A };
        let branch = self.phase.bridge().map_or(0, |b| b.branch);
        let Some((channel, done)) = self.take_party(which).await else {
            return;
        };
        self.note(|| format!("{by} transfers the call to {target} (REFER)"));
        let mut transfer = Box::new(Transferring {
            channel,
            branch,
            by: by.clone(),
            target: target.clone(),
            subscribed,
            id,
        });
        transfer.notify(100, "Trying", false);
        self.transfer = Some(transfer);
        self.publish();
        // The route that dialled the transferor is done with this call;
        // the transfer's route takes it over.
        drop(done);
        self.route.give_up();
        self.route_transfer(by, target, None);
    }

    /// The context a transfer by extension `by` is routed in: its own.
    fn transfer_context(&self, by: &str) -> String {
        self.inner
            .extensions
            .load()
            .get(by)
            .map_or_else(|| "default".to_owned(), |e| e.context.clone())
    }

    /// Routes the call again for a blind transfer by `by` to `target`, in
    /// `by`'s context, taking over from the route superseded: the
    /// transfer's own route, or (`failed` set) the context's hook for a
    /// target that failed after the transferor hung up.
    fn route_transfer(&mut self, by: String, target: String, failed: Option<DialStatus>) {
        let context = self.transfer_context(&by);
        let (handle, commands) = CallHandle::new();
        let handle = handle.with_trace(self.record.trace().cloned());
        let details = CallDetails {
            id: self.record.id().to_owned(),
            from: Party {
                user: by.clone(),
                host: self.inner.config.domain.clone(),
                display: None,
                uri: format!("sip:{by}@{}", self.inner.config.domain),
            },
            to: Party {
                user: target.clone(),
                host: self.inner.config.domain.clone(),
                display: None,
                uri: format!("sip:{target}@{}", self.inner.config.domain),
            },
            request_uri: Party {
                user: target.clone(),
                host: self.inner.config.domain.clone(),
                display: None,
                uri: format!("sip:{target}@{}", self.inner.config.domain),
            },
            source_ip: transfer_source(self.a.leg()),
            source_port: self.a.leg().dialog.peer.port(),
            transport: self.a.leg().dialog.transport.to_string(),
            caller: Some(by.clone()),
            context,
            headers: pbx::HeaderList::default(),
            transferred_by: Some(by),
            transfer_failed: failed,
            trunk: None,
            did: None,
            identity: None,
        };
        let router = self.inner.router.clone();
        self.route.take_over(handle, commands, move |handle| {
            router.route(handle, details)
        });
    }

    /// Party `which` leaves the bridge, still up, as a channel of its own
    /// (its dialog and media with it); what its dial waited for comes
    /// along. The other stays as the call's party: when the caller
    /// leaves, the bridged party takes its place (the party the call
    /// keeps is always its caller, `a`, whoever placed the call).
    pub(super) async fn take_party(
        &mut self,
        which: Which,
    ) -> Option<(SipChannel, Option<pbx::DialDone>)> {
        let bridge = self.take_bridge()?;
        let mut callee = bridge.leg;
        self.lend_parties();
        if let Some(leg) = self.media.return_callee().await {
            pbx::Channel::give_media(&mut callee, leg);
        }
        if which == Which::B {
            return Some((callee, bridge.done));
        }
        // The caller leaves, a channel with its own leg back; the
        // callee's channel becomes the call's caller, lending its leg as
        // the caller's.
        let leg = self.media.return_caller().await;
        let mut caller = std::mem::replace(&mut self.a.party, callee);
        if let Some(leg) = leg {
            pbx::Channel::give_media(&mut caller, leg);
        }
        caller.leave_owner();
        // The INVITE that made the call was the leaving party's.
        self.a.max_forwards = 70;
        // Outbound calls now carry the kept party's identity.
        self.identity = self.record.callee().map(str::to_owned);
        Some((caller, bridge.done))
    }

    /// The transfer target answered and is bridged: the transferor hears
    /// 200 and is released.
    pub(super) fn transfer_connected(&mut self) {
        if let Some(mut t) = self.transfer.take() {
            t.notify(200, "OK", true);
            self.note(|| format!("transfer to {} connected; {} released", t.target, t.by));
            self.record
                .transferred(format!("transferred by {} to {}", t.by, t.target));
            drop(t); // BYE
        }
    }

    /// The transferor of the transfer in progress, if one is.
    pub(super) fn transferor(&self) -> Option<String> {
        self.transfer.as_ref().map(|t| t.by.clone())
    }

    /// A transfer's route parked the call in `slot`: the transferor hears
    /// "parked in slot N" (when the sounds are there), then 200 in its
    /// NOTIFY, and is released.
    pub(super) fn transfer_parked(&mut self, slot: u16) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        self.record
            .transferred(format!("transferred by {} to park slot {slot}", t.by));
        let announcement = self.inner.media.park_announcements.get(&slot).cloned();
        tokio::spawn(async move {
            // The announcement on its leg, its dialog served meanwhile; a
            // BYE cuts it short.
            if let Some(prompt) = announcement
                && let Some(leg) = t.channel.take_media()
            {
                let mut player = Player::start(leg, prompt);
                let cap = tokio::time::sleep(std::time::Duration::from_secs(10));
                tokio::pin!(cap);
                loop {
                    tokio::select! {
                        () = player.finished() => break,
                        () = &mut cap => break,
                        event = t.channel.next_event() => {
                            if matches!(event, ChannelEvent::HungUp(_)) {
                                break;
                            }
                        }
                    }
                }
                if let Ok(leg) = player.stop().await {
                    t.channel.give_media(leg);
                }
            }
            t.notify(200, "OK", true);
            drop(t); // BYE
        });
    }

    /// The transfer target did not answer (`outcome`): what happens to
    /// the transferee. With the transferor still there, it goes back to
    /// it ([`TargetFailed::Return`]: the caller must call
    /// [`transfer_return`](Self::transfer_return)). Otherwise the
    /// transferor hears why (if it still listens), and the transferor's
    /// context decides: its `on_transfer_failed` hook, routed here
    /// ([`TargetFailed::Hook`]), or the transfer's route going on with the
    /// dial's result ([`TargetFailed::Route`]; the shipped one rings the
    /// transferor back).
    pub(super) fn transfer_failed(&mut self, outcome: &DialOutcome) -> TargetFailed {
        let Some(t) = &mut self.transfer else {
            return TargetFailed::Route;
        };
        if t.channel.leg.state == LegState::Up && t.channel.media.is_some() {
            return TargetFailed::Return;
        }
        t.notify(outcome.code.max(300), failure_reason(outcome.status), true);
        let (target, by) = (t.target.clone(), t.by.clone());
        self.transfer = None;
        let context = self.transfer_context(&by);
        if !self.inner.router.handles_failed_transfer(&context) {
            self.note(|| format!("transfer to {target} failed; {by} has hung up"));
            return TargetFailed::Route;
        }
        self.note(|| {
            format!("transfer to {target} failed; {by} has hung up; on_transfer_failed of {context} routes the call")
        });
        self.route.give_up();
        self.route_transfer(by, target, Some(outcome.status));
        TargetFailed::Hook
    }

    /// The transferee back with the transferor after the target failed.
    pub(super) async fn transfer_return(&mut self, outcome: DialOutcome) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        t.notify(outcome.code.max(300), failure_reason(outcome.status), true);
        self.note(|| format!("transfer to {} failed; back to {}", t.target, t.by));
        // It comes back as the bridged party, with its dialog and media.
        let mut channel = t.channel;
        let Some(leg) = channel.take_media() else {
            return;
        };
        self.media.lend_callee(leg);
        self.bridge_with(Bridge {
            branch: t.branch,
            leg: channel,
            done: None,
            answered_by: None,
        });
        self.bridge_media().await;
    }

    /// Something of the transferor's while its transfer runs: its
    /// channel answered it (a re-INVITE, an UPDATE) or it hung up (its
    /// channel has ended: a failed target then goes to the context).
    pub(super) fn on_transferor_event(&mut self, event: ChannelEvent) {
        if let (ChannelEvent::HungUp(_), Some(t)) = (event, &self.transfer) {
            self.note(|| format!("{}, transferring the call, hung up", t.by));
        }
    }

    /// The call ends during a transfer: the transferor is told and
    /// released.
    pub(super) fn transfer_abandoned(&mut self) {
        if let Some(mut t) = self.transfer.take() {
            t.notify(487, "Request Terminated", true);
            drop(t); // BYE
        }
    }
}

impl Call {
    /// Attended transfer (REFER with Replaces, RFC 3891): the REFER's
    /// sender talks to this call's other party and, in another call
    /// through us, to a second party; the two parties are joined here,
    /// each told who it talks to now, and the transferor's two legs are
    /// released.
    async fn attended(
        &mut self,
        from_bridge: bool,
        replaces: Replaced,
        (subscribed, id): (bool, u32),
        reply: oneshot::Sender<Reply>,
    ) {
        let Replaced {
            call_id,
            to_tag,
            from_tag,
        } = replaces;
        // Another call's: not this call's own dialogs (whose bridged
        // party's channel would ask this very call, busy here).
        let own = self.a.leg().dialog.call_id == call_id
            || self
                .phase
                .bridge()
                .is_some_and(|b| b.leg.leg.dialog.call_id == call_id);
        let other = self
            .inner
            .dialogs
            .get(&call_id)
            .filter(|route| !own && !route.events.same_channel(&self.events_tx));
        let Some(other) = other else {
            tracing::info!(replaces = %call_id, "attended transfer: no such call");
            let _ = reply.send(Reply::status(481));
            return;
        };
        let (give, given) = oneshot::channel();
        let ask = CallEvent::GiveUp {
            dialog: Box::new(super::DialogRef {
                call_id,
                tags: (to_tag, from_tag),
            }),
            reply: give,
        };
        if other.events.send(ask).await.is_err() {
            let _ = reply.send(Reply::status(481));
            return;
        }
        // A call that does not answer soon (busy in a move of its own
        // towards this one) is no call to join.
        let given = tokio::time::timeout(super::moves::ASK_WAIT, given).await;
        let Ok(Ok(Some((channel, label)))) = given else {
            // Not a dialog of that call, or that call is not bridged.
            let _ = reply.send(Reply::status(481));
            return;
        };
        let _ = reply.send(Reply::status(202));
        let by = if from_bridge {
            self.record.callee().map(str::to_owned)
        } else {
            self.identity
                .clone()
                .or_else(|| self.record.caller().map(str::to_owned))
        };
        let by = by.unwrap_or_default();
        let which = if from_bridge { Which::B } else { Which::A };
        let branch = self.phase.bridge().map_or(0, |b| b.branch);
        let Some((leaving, done)) = self.take_party(which).await else {
            return;
        };
        let mut transferor = Transferring {
            channel: leaving,
            branch,
            by,
            target: label.clone(),
            subscribed,
            id,
        };
        self.note(|| format!("attended transfer: joined with {label}"));
        // The route's dial goes on until the new bridge ends.
        let done = done.unwrap_or_else(|| oneshot::channel().0);
        let kept = self
            .identity
            .clone()
            .or_else(|| self.record.caller().map(str::to_owned))
            .unwrap_or_default();
        self.attach_callee(channel, label.clone(), done).await;
        self.record
            .transferred(format!("attended transfer by {} to {label}", transferor.by));
        transferor.notify(200, "OK", true);
        drop(transferor); // BYE
        // Each phone is told who it talks to now.
        self.tell_identities(&label, &kept);
    }

    /// The caller is told it talks to `to_caller` now, the bridged party
    /// that it talks to `to_callee`.
    pub(super) fn tell_identities(&mut self, to_caller: &str, to_callee: &str) {
        self.tell_identity(Side::Inbound, to_caller, true);
        if let Some(b) = self.phase.bridge() {
            self.tell_identity(Side::Outbound(b.branch), to_callee, true);
        }
    }

    /// The party on `side` (the caller, or the bridged party) is told it
    /// talks to `user` now (`first`: not a retry after glare).
    pub(super) fn tell_identity(&mut self, side: Side, user: &str, first: bool) {
        match side {
            // Its channel tells it, and hears its answer.
            Side::Inbound => self.a.party.tell(user, first),
            // The bridged party's channel tells it, and hears its answer.
            Side::Outbound(id) => {
                if let Some(b) = self.phase.bridge_mut().filter(|b| b.branch == id) {
                    b.leg.tell(user, first);
                }
            }
        }
    }

    /// Which of this call's legs (the caller's or the bridged party's) is
    /// the dialog `call_id` with the tags `to_tag` and `from_tag` of an
    /// RFC 3891 Replaces, either way round.
    pub(super) fn leg_of(&self, call_id: &str, to_tag: &str, from_tag: &str) -> Option<Which> {
        let matches = |leg: &SipLeg| {
            let d = &leg.dialog;
            let remote = d.remote_tag.as_deref().unwrap_or_default();
            d.call_id == call_id
                && ((d.local_tag == to_tag && remote == from_tag)
                    || (d.local_tag == from_tag && remote == to_tag))
        };
        if matches(self.a.leg()) {
            Some(Which::A)
        } else if self.phase.bridge().is_some_and(|b| matches(&b.leg.leg)) {
            Some(Which::B)
        } else {
            None
        }
    }

    /// Another call's attended transfer replaces the dialog `call_id`
    /// (with `tags`, either way round) of this call: the party at the
    /// other end of the bridge leaves, still up, with its extension; the
    /// transferor's leg here is released and the call ends.
    pub(super) async fn give_up(
        &mut self,
        call_id: &str,
        (to_tag, from_tag): (String, String),
    ) -> Option<(SipChannel, String)> {
        if self.phase.is_ended() || self.phase.bridge().is_none() {
            return None;
        }
        let transferor_is_callee = match self.leg_of(call_id, &to_tag, &from_tag)? {
            Which::A => false,
            Which::B => true,
        };
        // The party that stays up: the caller when the transferor is the
        // callee, else the callee.
        let label = if transferor_is_callee {
            self.identity
                .clone()
                .or_else(|| self.record.caller().map(str::to_owned))
        } else {
            self.record.callee().map(str::to_owned)
        };
        let label = label.unwrap_or_default();
        // The party leaves; the transferor is the call's party then.
        let party = if transferor_is_callee {
            Which::A
        } else {
            Which::B
        };
        let (channel, done) = self.take_party(party).await?;
        self.note(|| format!("attended transfer: {label} joins another call"));
        self.a.leg_mut().bye();
        self.finish(pbx::Disposition::Answered, 200, "attended transfer");
        drop(done);
        Some((channel, label))
    }
}

/// The transferee's address, for the transfer route's `call.source`.
fn transfer_source(leg: &SipLeg) -> String {
    leg.dialog.peer.ip().to_string()
}
