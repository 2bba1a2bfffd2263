//! Parties moving between calls (docs/call-core.md "Features as moves"):
//! an answered caller leaves its call as a [`SipChannel`] (to the parking
//! lot), and a call takes such a channel in as its bridged party
//! (retrieving a parked call). The dialog keeps running across the move:
//! the dialog table points its Call-ID at whoever owns it now.

use std::sync::Arc;
use std::time::Duration;

use pbx::{
    ActionError, CallState, DialOutcome, DialStatus, Disposition, LegState, ParkRequest, TimedOut,
};
use tokio::sync::oneshot;

use super::{Bridge, Call};
use crate::anchor::Which;
use crate::channel::{PendingOk, SipChannel};
use crate::leg::SipLeg;
use crate::{Inner, Side};

impl Call {
    /// Takes the answered caller out of this call, still up, as a channel
    /// of its own; the call has no caller afterwards (the caller must
    /// `finish` it). `None` when the caller is not answered or is bridged.
    pub(super) async fn detach_caller(&mut self) -> Option<SipChannel> {
        if self.a.leg.state != LegState::Up || self.bridge.is_some() || self.dialing.is_some() {
            return None;
        }
        let media = self.media.detach(Which::A).await?;
        // Our 200 may still wait for its ACK: the channel keeps sending it.
        let pending = match (self.a.ok.take(), self.a.retrans.take()) {
            (Some(ok), Some(retrans)) => Some(Box::new(PendingOk {
                resender: self.a.tx.ok_resender(),
                seq: ok.cseq().map_or(0, |c| c.seq),
                ok,
                retrans,
            })),
            _ => None,
        };
        let leg = SipLeg {
            inner: self.inner.clone(),
            dialog: self.a.leg.dialog.clone(),
            direction: self.a.leg.direction,
            state: LegState::Up,
            contact: self.a.leg.contact.clone(),
            held: self.a.leg.held,
        };
        // Moved, not ended: no BYE from this call.
        self.a.leg.state = LegState::Ended;
        Some(SipChannel::new(self.inner.clone(), leg, media, pending))
    }

    /// Takes `channel` in as the party the caller is bridged to (answering
    /// the caller first if need be); `done` hears when that bridge ends,
    /// as a dial's does.
    pub(super) async fn attach_callee(
        &mut self,
        channel: SipChannel,
        label: String,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        let (leg, media, _pending) = channel.into_parts();
        let id = self.next_branch;
        self.next_branch += 1;
        self.inner.dialogs.repoint(
            &leg.dialog.call_id,
            self.events_tx.clone(),
            Side::Outbound(id),
        );
        if let Some(t) = &self.trace {
            self.inner.traces.add_leg(t, &leg.dialog.call_id);
        }
        self.media.attach_callee(media).await;
        self.cdr.callee = Some(label);
        self.bridge = Some(Bridge {
            branch: id,
            leg,
            done: Some(done),
        });
        self.state = CallState::Bridged;
        self.publish();
        if self.a.leg.state != LegState::Up {
            match self.caller_sdp().await {
                Ok(body) => self.send_ok(Some(("application/sdp".to_owned(), body))),
                Err(failure) => {
                    let r = failure.response(&self.a.tx, &self.inner.config.domain);
                    self.a.tx.respond(r);
                    if let Some(b) = &mut self.bridge {
                        b.leg.bye();
                    }
                    self.finish(Disposition::Failed, failure.status(), "media");
                    return;
                }
            }
            self.publish();
        }
        self.media.bridge().await;
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
        let parker = self.cdr.caller.clone().unwrap_or_default();
        let channel = self
            .detach_caller()
            .await
            .ok_or_else(|| ActionError::Failed("the caller cannot be parked now".into()))?;
        let request = ParkRequest {
            slot: Some(reservation.slot()),
            timeout,
            parker,
            music,
        };
        let slot = reservation.park(Box::new(channel), request);
        self.note(|| format!("parked in slot {slot}"));
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
        if self.finished {
            let _ = done.send(Err(ActionError::Ended));
            return;
        }
        if self.dialing.is_some() || self.bridge.is_some() {
            let _ = done.send(Err(ActionError::Failed(
                "the call is bridged or dialling already".into(),
            )));
            return;
        }
        let Some(channel) = self.inner.parking.retrieve(slot).await else {
            let _ = done.send(Ok(DialOutcome {
                status: DialStatus::Unavailable,
                code: 404,
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
        self.media.stop_playing().await;
        self.note(|| format!("retrieved the call parked in slot {slot}"));
        let label = format!("park:{slot}");
        self.attach_callee(channel, label, done).await;
    }
}

/// A call parked too long: it rings the extension that parked it. Until
/// ring-back exists the parked party is told the call is over.
pub(crate) async fn ring_back(inner: Arc<Inner>, timed_out: TimedOut) {
    let TimedOut {
        mut channel,
        slot,
        parker,
    } = timed_out;
    tracing::info!(slot, %parker, "parked call timed out");
    let _ = inner;
    channel.hangup(&pbx::Hangup {
        code: 200,
        cause: "park timeout",
    });
}
