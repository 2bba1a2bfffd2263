//! Parties moving between calls (docs/call-core.md "Features as moves"):
//! an answered caller leaves its call as a [`SipChannel`] (to the parking
//! lot), and a call takes such a channel in as its bridged party
//! (retrieving a parked call). The dialog keeps running across the move:
//! the dialog table points its Call-ID at whoever owns it now.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pbx::{
    ActionError, CallHandle, Cdr, DialOutcome, DialRequest, DialStatus, Disposition, LegState,
    ParkRequest, RouteEnd, TimedOut,
};
use tokio::sync::oneshot;

use super::{Bridge, Call, CallEvent, Phase};
use crate::anchor::CallMedia;
use crate::channel::SipChannel;
use crate::{Inner, Side};

impl Call {
    /// Takes the answered caller out of this call, still up, as a channel
    /// of its own; the call has no caller afterwards (the caller must
    /// `finish` it). `None` when the caller is not answered or is bridged.
    pub(super) async fn detach_caller(&mut self) -> Option<SipChannel> {
        if self.a.leg().state != LegState::Up || !self.phase.is_alone() {
            return None;
        }
        // The answered caller is a channel already (its dialog and media
        // its own, our 200 sent again until the ACK): it takes its leg
        // back and leaves; what stays is its ended shadow.
        let leg = self.media.return_caller().await;
        let ghost = SipChannel::owned(
            self.inner.clone(),
            self.a.leg().ghost(),
            None,
            self.events_tx.clone(),
            Side::Inbound,
        );
        let mut channel = std::mem::replace(&mut self.a.party, ghost);
        if let Some(leg) = leg {
            pbx::Channel::give_media(&mut channel, leg);
        }
        channel.leave_owner();
        Some(channel)
    }

    /// Takes `channel` in as the party the caller is bridged to (answering
    /// the caller first if need be); `done` hears when that bridge ends,
    /// as a dial's does.
    pub(super) async fn attach_callee(
        &mut self,
        mut channel: SipChannel,
        label: String,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        let id = self.next_branch;
        self.next_branch += 1;
        // It keeps its dialog and its media; the call gets its leg.
        let Some(leg) = pbx::Channel::take_media(&mut channel) else {
            // Ended on its way here: nothing to take in.
            let _ = done.send(Err(ActionError::Ended));
            return;
        };
        if let Some(t) = self.record.trace() {
            self.inner.traces.add_leg(t, &channel.leg.dialog.call_id);
        }
        self.media.lend_callee(leg);
        self.record.set_callee(Some(label));
        self.bridge_with(Bridge {
            branch: id,
            leg: channel,
            done: Some(done),
            answered_by: None,
        });
        self.answer_and_bridge().await;
    }

    /// Holds a parking slot for this call (announced before the park).
    pub(super) fn reserve_park(&mut self, slot: Option<u16>) -> Result<u16, ActionError> {
        self.live()?;
        let reservation = self
            .inner
            .parking
            .reserve(slot)
            .map_err(|e| ActionError::Failed(e.to_string()))?;
        let n = reservation.slot();
        self.parking = Some(reservation);
        Ok(n)
    }

    /// `call:park{}`: the caller (answered first if need be) goes to the
    /// parking lot; this call ends, its CDR saying `parked`.
    pub(super) async fn park(
        &mut self,
        slot: Option<u16>,
        timeout: Duration,
        ringback: Option<String>,
    ) -> Result<u16, ActionError> {
        self.own_media().await?;
        // The slot is held before the caller leaves: a taken or unknown
        // slot is an error while the call is still whole.
        let reservation = match self.parking.take() {
            Some(r) if slot.is_none_or(|n| n == r.slot()) => r,
            _ => self
                .inner
                .parking
                .reserve(slot)
                .map_err(|e| ActionError::Failed(e.to_string()))?,
        };
        let music = self.media.music(self.moh_class());
        // A blind transfer to the park rings the transferor back.
        let ringback = ringback.or_else(|| self.transferor());
        let channel = self
            .detach_caller()
            .await
            .ok_or_else(|| ActionError::Failed("the caller cannot be parked now".into()))?;
        let request = ParkRequest {
            slot: Some(reservation.slot()),
            timeout,
            parker: ringback,
            music,
        };
        let slot = reservation.park(Box::new(channel), request);
        self.note(|| format!("parked in slot {slot}"));
        self.transfer_parked(slot);
        self.finish(Disposition::Answered, 200, "parked");
        Ok(slot)
    }

    /// `call:unpark(slot)`: the call parked in `slot` is bridged to this
    /// call's caller.
    pub(super) async fn unpark(
        &mut self,
        slot: u16,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        if self.phase.is_ended() {
            let _ = done.send(Err(ActionError::Ended));
            return;
        }
        if !self.phase.is_alone() {
            let _ = done.send(Err(ActionError::Failed(
                "the call is bridged or dialling already".into(),
            )));
            return;
        }
        let Some(channel) = self.inner.parking.retrieve(slot).await else {
            let _ = done.send(Ok(DialOutcome {
                status: DialStatus::Unavailable,
                code: 404,
                answered_by: None,
            }));
            return;
        };
        let channel = match channel.into_any().downcast::<SipChannel>() {
            Ok(channel) => *channel,
            Err(_) => {
                let _ = done.send(Err(ActionError::Failed(
                    "the parked call is not a SIP call".into(),
                )));
                return;
            }
        };
        // Stop whatever the caller hears (a prompt, music) first.
        self.lend_parties();
        self.media.stop_playing().await;
        self.note(|| format!("retrieved the call parked in slot {slot}"));
        let label = format!("park:{slot}");
        self.attach_callee(channel, label, done).await;
    }
}

impl Call {
    /// `call:pickup(target)`: a call ringing `target` (or, without one, a
    /// member of the caller's pickup group) is asked to give itself up;
    /// the first that agrees gets this call's caller, answered, as its
    /// bridged party, and this call is over for its route.
    pub(super) async fn pickup(
        &mut self,
        target: Option<String>,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        if self.phase.is_ended() {
            let _ = done.send(Err(ActionError::Ended));
            return;
        }
        if !self.phase.is_alone() {
            let _ = done.send(Err(ActionError::Failed(
                "the call is bridged or dialling already".into(),
            )));
            return;
        }
        let me = self.record.caller().map(str::to_owned).unwrap_or_default();
        let extensions = self.inner.extensions.load();
        let group = extensions.get(&me).and_then(|e| e.pickup_group.clone());
        let wanted = |ringing: &str| match &target {
            Some(t) => ringing == t,
            None => {
                ringing != me
                    && group.is_some()
                    && extensions
                        .get(ringing)
                        .and_then(|e| e.pickup_group.as_ref())
                        == group.as_ref()
            }
        };
        // The call that has rung longest first.
        let candidates = self.inner.registry.ringing(self.record.id(), wanted);
        drop(extensions);
        let mut taken = None;
        for id in candidates {
            let Some(route) = self.inner.dialogs.get(&id) else {
                continue;
            };
            let (reply, agreed) = oneshot::channel();
            if ask(&route.events, CallEvent::PickupAsk { reply }, agreed).await {
                taken = Some((id, route.events));
                break;
            }
        }
        let Some((id, events)) = taken else {
            let _ = done.send(Ok(DialOutcome {
                status: DialStatus::Unavailable,
                code: 404,
                answered_by: None,
            }));
            return;
        };
        self.note(|| format!("picks up call {id}"));
        self.hand_over(events, done).await;
    }

    /// The call behind `events` agreed to take this call's caller: it is
    /// answered and handed over, and this call is over for its route.
    async fn hand_over(
        &mut self,
        events: crate::queue::EventTx,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        let me = self.record.caller().map(str::to_owned).unwrap_or_default();
        let channel = match self.answer().await {
            Ok(()) => self.detach_caller().await,
            Err(_) => None,
        };
        let Some(channel) = channel else {
            let _ = done.send(Err(ActionError::Failed(
                "the caller could not be answered".into(),
            )));
            return;
        };
        let adopt = CallEvent::Adopt {
            channel: Box::new(channel),
            label: me.into(),
        };
        let _ = events.send(adopt).await;
        self.finish(Disposition::Answered, 200, "took another call's party");
        let _ = done.send(Ok(DialOutcome {
            status: DialStatus::Answered,
            code: 200,
            answered_by: None,
        }));
    }

    /// An INVITE with Replaces: a ringing dialog of another call is a
    /// pickup of that call (a BLF key), an answered one a replacement of
    /// that party by this call's caller (unless `early_only`).
    pub(super) async fn replace(
        &mut self,
        dialog: pbx::DialogIds,
        early_only: bool,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        let unavailable = || {
            Ok(DialOutcome {
                status: DialStatus::Unavailable,
                code: 481,
                answered_by: None,
            })
        };
        let route = self
            .inner
            .dialogs
            .get(&dialog.call_id)
            .filter(|r| !r.events.same_channel(&self.events_tx));
        let Some(route) = route else {
            let _ = done.send(unavailable());
            return;
        };
        let tags = (
            dialog.local_tag.clone(),
            dialog.remote_tag.clone().unwrap_or_default(),
        );
        // A ringing branch first (it agrees only while it rings), then an
        // answered leg.
        let (reply, agreed) = oneshot::channel();
        let branch = matches!(route.side, Side::Outbound(_));
        if branch && ask(&route.events, CallEvent::PickupAsk { reply }, agreed).await {
            self.note(|| format!("INVITE with Replaces picks up dialog {}", dialog.call_id));
            self.hand_over(route.events, done).await;
            return;
        }
        if early_only {
            let _ = done.send(unavailable());
            return;
        }
        let (reply, agreed) = oneshot::channel();
        let ask_replace = CallEvent::ReplaceAsk {
            dialog: Box::new(super::DialogRef {
                call_id: dialog.call_id.clone(),
                tags,
            }),
            reply,
        };
        if route.events.send(ask_replace).await.is_ok()
            && let Ok(Ok(Some(call))) = tokio::time::timeout(ASK_WAIT, agreed).await
        {
            self.note(|| {
                format!(
                    "INVITE with Replaces takes the place of dialog {}",
                    dialog.call_id
                )
            });
            self.hand_over(call, done).await;
            return;
        }
        let _ = done.send(unavailable());
    }

    /// Another call would pick this one up: it may while its targets
    /// ring and nobody answered; they stop ringing now (a target's
    /// answer after this is too late and gets BYE).
    pub(super) fn on_pickup_ask(&mut self) -> bool {
        if !self.phase.pick() {
            return false;
        }
        self.note(|| "picked up by another call: the targets stop ringing".to_owned());
        self.cancel_branches();
        true
    }

    /// An INVITE with Replaces would replace the party in this answered
    /// dialog: if it is one of this call's legs and the call is bridged,
    /// that party is released and the other waits for the newcomer.
    pub(super) async fn on_replace_ask(
        &mut self,
        call_id: &str,
        (to_tag, from_tag): (String, String),
    ) -> bool {
        if !matches!(self.phase, Phase::Bridged(_)) {
            return false;
        }
        let Some(replaced) = self.leg_of(call_id, &to_tag, &from_tag) else {
            return false;
        };
        // The replaced party leaves, released; the other is the call's
        // party and keeps its place for the newcomer.
        let Some((mut channel, done)) = self.take_party(replaced).await else {
            return false;
        };
        pbx::Channel::hangup(
            &mut channel,
            &pbx::Hangup {
                code: 200,
                cause: "replaced",
            },
        );
        self.note(|| format!("dialog {call_id} is being replaced"));
        self.await_replacement(done.unwrap_or_else(|| oneshot::channel().0));
        true
    }

    /// The picker's (or the replacing) party arrives: bridged to the
    /// caller, whose route's `dial` returns when that call ends.
    pub(super) async fn on_adopt(&mut self, channel: SipChannel, label: String) {
        if let Some(done) = self.take_replacement() {
            let kept = self
                .identity
                .clone()
                .or_else(|| self.record.caller().map(str::to_owned))
                .unwrap_or_default();
            self.attach_callee(channel, label.clone(), done).await;
            self.tell_identities(&label, &kept);
            return;
        }
        let picked = self.phase.dialing().is_some_and(|d| d.is_picked());
        if self.phase.is_ended() || !picked {
            // Too late (the caller gave up meanwhile): the picker is told.
            drop(channel);
            return;
        }
        let Some(dialing) = self.leave_dialing() else {
            return;
        };
        self.attach_callee(channel, label, dialing.into_done())
            .await;
    }
}

/// How long a call waits for another's answer to a question.
pub(super) const ASK_WAIT: Duration = Duration::from_secs(2);

/// Sends `question` to another call and waits (a little) for its yes.
async fn ask(
    events: &crate::queue::EventTx,
    question: CallEvent,
    answer: oneshot::Receiver<bool>,
) -> bool {
    if events.send(question).await.is_err() {
        return false;
    }
    tokio::time::timeout(ASK_WAIT, answer)
        .await
        .is_ok_and(|r| r.unwrap_or(false))
}

/// A call parked too long rings the extension that parked it: a new call
/// whose caller is the parked party (answered already, it hears ringback)
/// dials the parker; unanswered, the parked party is hung up.
pub(crate) async fn ring_back(inner: Arc<Inner>, timed_out: TimedOut) {
    let TimedOut {
        channel,
        slot,
        parker,
    } = timed_out;
    let mut channel = match channel.into_any().downcast::<SipChannel>() {
        Ok(channel) => *channel,
        Err(_) => return,
    };
    if !inner.extensions.load().contains_key(&parker) {
        tracing::info!(slot, %parker, "parked call timed out; nobody to ring back");
        pbx::Channel::hangup(
            &mut channel,
            &pbx::Hangup {
                code: 200,
                cause: "park timeout",
            },
        );
        return;
    }
    tracing::info!(slot, %parker, "parked call timed out; ringing back the parker");
    let (events_tx, events) = crate::queue::events(64);
    let id = channel.leg.dialog.call_id.clone();
    let active = inner.active.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::gauge!("calls_active").set(active as f64);
    let party = pbx::Leg::snapshot(&channel.leg).peer;
    // The ring-back is a call of its own: its span, as an INVITE's call.
    let span = tracing::info_span!("call", call_id = %id, from = %party, to = %parker);
    let (handle, commands) = CallHandle::new();
    let now = pbx::unix_ms();
    let record = pbx::CallRecord::open(
        inner.registry.clone(),
        inner.cdrs.clone(),
        None,
        Cdr {
            answer_ms: Some(now),
            ..Cdr::begin(id, party, parker.clone(), format!("park:{slot}"), now)
        },
    );
    let timeout = inner.config.ring_timeout;
    let route = span.in_scope(|| {
        pbx::RouteTask::spawn(handle, commands, move |handle| async move {
            let request = DialRequest {
                targets: vec![parker],
                timeout: Some(timeout),
                // Who rings: the parked party's slot, so the parker knows.
                caller_id: Some(format!("Parked {slot} <{slot}>")),
                ..DialRequest::default()
            };
            let answered = handle
                .dial(request)
                .await
                .is_ok_and(|o| o.status == DialStatus::Answered);
            if !answered {
                let _ = handle.hangup().await;
            }
            RouteEnd::Done
        })
    });
    // The caller comes answered already, a channel (its dialog and
    // media its own, lending the call its leg): nothing of its INVITE is
    // left to answer.
    let a = super::Inbound {
        max_forwards: 70,
        party: channel,
    };
    let media = CallMedia::new(inner.media.clone());
    let mut call = Call::new(inner.clone(), record, route, (events_tx, events), a, media);
    call.phase = Phase::Answered;
    call.spawn(span);
}
