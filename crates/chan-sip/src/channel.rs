//! A SIP dialog as a `pbx` [`Channel`] (docs/call-core.md): an answered
//! party that has left the call task it came from (parked, or on its way
//! to another call) and serves its own dialog (RFC 3261 §12.2.2): BYE ends
//! it, re-INVITEs and UPDATEs are answered here against its own anchored
//! media (hold and resume become [`ChannelEvent::Hold`], a new codec
//! [`ChannelEvent::MediaChanged`]), INFO keypresses become digits, and our
//! 2xx is sent again until its ACK (§13.3.1.4).
//!
//! Its in-dialog requests reach it through its own inbox: the dialog table
//! points the dialog's Call-ID at it while it exists.

use std::sync::Arc;
use std::time::Instant;

use pbx::{
    BoxFuture, Channel, ChannelError, ChannelEvent, ChannelId, Hangup, LegSnapshot, LegState,
};
use sip_net::{Incoming, InviteTx};
use sip_proto::{HeaderName, Method, Request};
use tokio::sync::oneshot;

use crate::anchor::{Failure, MediaEndpoint, Settled, Watch};
use crate::call::CallEvent;
use crate::call::{glare, read_info};
use crate::leg::{SipLeg, offers_hold};
use crate::relay::sleep_until;
use crate::{Inner, Reply, Side};

/// One answered SIP dialog with its media (see the module docs).
pub(crate) struct SipChannel {
    id: ChannelId,
    inner: Arc<Inner>,
    pub(crate) leg: SipLeg,
    /// Its media, the leg parked in it while no owner runs anything on
    /// it; `None` once ended or handed on.
    pub(crate) media: Option<Box<MediaEndpoint>>,
    inbox: crate::queue::EventRx,
    inbox_tx: crate::queue::EventTx,
    /// Handed on to another owner: its dialog is theirs now.
    moved: bool,
}

impl std::fmt::Debug for SipChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipChannel")
            .field("id", &self.id)
            .field("call_id", &self.leg.dialog.call_id)
            .finish_non_exhaustive()
    }
}

impl SipChannel {
    /// Takes over an answered dialog: its requests come here from now on.
    pub fn new(inner: Arc<Inner>, leg: SipLeg, media: Option<Box<MediaEndpoint>>) -> SipChannel {
        let (inbox_tx, inbox) = crate::queue::events(16);
        inner
            .dialogs
            .repoint(&leg.dialog.call_id, inbox_tx.clone(), Side::Inbound);
        SipChannel {
            id: ChannelId::next(),
            inner,
            leg,
            media,
            inbox,
            inbox_tx,
            moved: false,
        }
    }

    /// Gives the dialog to another owner (a call taking this party in),
    /// whose queue `events` gets its requests from now on, as `side`: its
    /// leg (with any 2xx still waiting for its ACK) and its media.
    pub fn into_parts(
        mut self,
        events: crate::queue::EventTx,
        side: Side,
    ) -> (SipLeg, Option<Box<MediaEndpoint>>) {
        // Handed on, not ended: nothing to hang up or forget when `self`
        // drops.
        let leg = self.leg.hand_over();
        self.moved = true;
        self.inner
            .dialogs
            .repoint(&leg.dialog.call_id, events, side);
        (leg, self.media.take())
    }

    /// Tells the party it talks to `user` now (`first`: not a retry
    /// after glare).
    fn tell(&mut self, user: &str, first: bool) {
        let domain = self.inner.config.domain.clone();
        let media = &mut self.media;
        let answers = (self.inbox_tx.clone(), Side::Inbound);
        self.leg.tell_identity(
            &domain,
            user,
            || media.as_deref_mut()?.offer_again(),
            answers,
            first,
        );
    }

    fn ended(&mut self, code: u16, cause: &'static str) -> ChannelEvent {
        self.leg.state = LegState::Ended;
        self.media = None;
        self.inner
            .dialogs
            .remove_owned(&self.leg.dialog.call_id, &self.inbox_tx);
        ChannelEvent::HungUp(Hangup { code, cause })
    }

    /// A new offer (re-INVITE, UPDATE) answered here; what it changed.
    fn answer_offer(
        &mut self,
        body: &[u8],
    ) -> (Result<bytes::Bytes, Failure>, Option<ChannelEvent>) {
        let (answer, changed) = answer_offer(&mut self.leg, self.media.as_deref_mut(), body);
        let event = match changed {
            Changed {
                hold: Some(held), ..
            } => Some(ChannelEvent::Hold(held)),
            // The owner running media on the leg gives it back and takes
            // it again, in the new codec.
            Changed { restart: true, .. } => Some(ChannelEvent::MediaChanged),
            Changed { .. } => None,
        };
        (answer, event)
    }

    async fn on_request(
        &mut self,
        request: Request,
        reply: oneshot::Sender<Reply>,
    ) -> Option<ChannelEvent> {
        if let Err(status) = self.leg.admit(&request) {
            let _ = reply.send(Reply::status(status));
            return None;
        }
        match request.method {
            Method::Bye => {
                let _ = reply.send(Reply::status(200));
                Some(self.ended(200, "bye"))
            }
            Method::Update if !request.body.is_empty() => {
                let (answer, event) = self.answer_offer(&request.body);
                let r = match answer {
                    Ok(sdp) => Reply {
                        status: 200,
                        body: Some(("application/sdp".to_owned(), sdp)),
                        header: None,
                    },
                    Err(failure) => Reply::status(failure.status()),
                };
                let _ = reply.send(r);
                event
            }
            // Transfers are a call's business; a parked party has none.
            Method::Refer => {
                let _ = reply.send(Reply::status(603));
                None
            }
            Method::Info => match read_info(&request) {
                Ok(digit) => {
                    let _ = reply.send(Reply::status(200));
                    digit.map(|(d, _)| ChannelEvent::Digit(d.as_char()))
                }
                Err(refused) => {
                    let _ = reply.send(refused);
                    None
                }
            },
            _ => {
                let _ = reply.send(Reply::status(200));
                None
            }
        }
    }

    async fn on_reinvite(&mut self, incoming: Incoming, mut tx: InviteTx) -> Option<ChannelEvent> {
        if let Err(status) = self.leg.admit(&incoming.request) {
            let r = tx.response(status);
            tx.respond(r);
            return None;
        }
        if self.leg.inviting() {
            // §14.2: our own re-INVITE is in progress (glare).
            tx.respond(glare(&tx));
            return None;
        }
        let (answer, event) = self.answer_offer(&incoming.request.body);
        let r = match answer {
            Ok(sdp) => {
                let mut r = tx.response(200);
                r.headers
                    .push(HeaderName::Contact, self.leg.contact.as_str());
                r.headers.push(HeaderName::ContentType, "application/sdp");
                r.body = sdp;
                r
            }
            Err(failure) => failure.response(&tx, &self.inner.config.domain),
        };
        tx.respond(r.clone());
        self.leg.keep_ok(tx.ok_resender(), &r, false);
        event
    }

    /// An ACK: the end of our 2xx's retransmissions, and the answer to
    /// an offer it carried (a new codec is a [`ChannelEvent::MediaChanged`]).
    fn on_ack(&mut self, request: &Request) -> Option<ChannelEvent> {
        if !self.leg.dialog.matches(request) {
            return None;
        }
        self.leg.acked(request.cseq().map_or(0, |c| c.seq));
        self.answered(&request.body, "ACK")
    }

    /// The answer to our pending offer (`what` carried it; empty: none
    /// came, and the offer is withdrawn); a new codec is a
    /// [`ChannelEvent::MediaChanged`].
    fn answered(&mut self, body: &[u8], what: &str) -> Option<ChannelEvent> {
        match self.media.as_deref_mut()?.ack_answer(body) {
            Ok(Settled::Done) => None,
            Ok(Settled::Restart) => Some(ChannelEvent::MediaChanged),
            Err(failure) => {
                tracing::info!(call_id = %self.leg.dialog.call_id, "{what}: {}", failure.text());
                None
            }
        }
    }

    async fn on_event(&mut self, event: CallEvent) -> Option<ChannelEvent> {
        match event {
            CallEvent::Request { request, reply, .. } => self.on_request(*request, reply).await,
            CallEvent::ReInvite { incoming, tx, .. } => self.on_reinvite(*incoming, *tx).await,
            CallEvent::Ack { request, .. } => self.on_ack(&request),
            CallEvent::TellIdentity { user, .. } => {
                self.tell(&user, false);
                None
            }
            CallEvent::OfferAnswered { answer, .. } => {
                self.answered(&answer.unwrap_or_default(), "re-INVITE answer")
            }
            CallEvent::Hangup => {
                self.leg.bye();
                Some(self.ended(200, "admin hangup"))
            }
            // A branch's or a relayed re-INVITE's news, or a pickup, is
            // not a lone dialog's business.
            CallEvent::Branch { .. }
            | CallEvent::Confirmed { .. }
            | CallEvent::PickupAsk { .. }
            | CallEvent::Adopt { .. } => None,
            CallEvent::ReplaceAsk { reply, .. } => {
                let _ = reply.send(false);
                None
            }
            CallEvent::GiveUp { reply, .. } => {
                let _ = reply.send(None);
                None
            }
        }
    }

    /// Our 2xx again, or the end of the dialog when no ACK came (§13.3.1.4).
    fn on_retransmit(&mut self) -> Option<ChannelEvent> {
        self.leg.retransmit_ok(Instant::now()).err()?;
        self.leg.bye();
        Some(self.ended(408, "no ACK"))
    }

    async fn next(&mut self) -> ChannelEvent {
        loop {
            if self.leg.state == LegState::Ended {
                return std::future::pending().await;
            }
            let retrans_at = self.leg.ok_due();
            let silence = Watch::one(self.media.as_deref());
            let watch_silence = !silence.is_empty();
            let event = tokio::select! {
                event = self.inbox.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => None,
                },
                () = sleep_until(retrans_at), if retrans_at.is_some() => self.on_retransmit(),
                (_, silent) = silence.silent(), if watch_silence => {
                    tracing::info!(call_id = %self.leg.dialog.call_id, silent_ms = silent.as_millis() as u64, "no RTP; hanging up");
                    metrics::counter!("rtp_timeouts_total").increment(1);
                    self.leg.bye();
                    Some(self.ended(200, "rtp timeout"))
                }
            };
            if let Some(event) = event {
                return event;
            }
        }
    }
}

/// What a party's new offer changed, for whoever runs media on its leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// The party put the call on hold (`true`) or took it off (`false`).
    pub hold: Option<bool>,
    /// Its codec changed: what runs on its leg must be restarted
    /// ([`Settled::Restart`]).
    pub restart: bool,
}

/// A new offer from the party of `leg` (re-INVITE, UPDATE; empty: an
/// offerless re-INVITE, answered with our description again, RFC 3264
/// §8.4), answered against its own `media` alone (RFC 3264 §6, §8: media
/// is anchored, so no other party is asked): our answer, and what it
/// changed. For a channel and for a call's caller and bridged party alike.
pub(crate) fn answer_offer(
    leg: &mut SipLeg,
    media: Option<&mut MediaEndpoint>,
    body: &[u8],
) -> (Result<bytes::Bytes, Failure>, Changed) {
    let Some(media) = media else {
        let none = Failure::NotAcceptable("no media session to offer".into());
        return (Err(none), Changed::default());
    };
    let answer = if body.is_empty() {
        media
            .offer_again()
            .map(|sdp| (sdp, Settled::Done))
            .ok_or(Failure::NotAcceptable("no media session to offer".into()))
    } else {
        media.answer_alone(body)
    };
    let mut changed = Changed::default();
    if let Ok((_, settled)) = &answer {
        if let Some(held) = offers_hold(body)
            && held != leg.held
        {
            leg.held = held;
            changed.hold = Some(held);
        }
        changed.restart = *settled == Settled::Restart;
    }
    (answer.map(|(sdp, _)| sdp), changed)
}

impl Channel for SipChannel {
    fn id(&self) -> ChannelId {
        self.id
    }

    fn state(&self) -> LegState {
        self.leg.state
    }

    fn held(&self) -> bool {
        self.leg.held
    }

    fn snapshot(&self) -> LegSnapshot {
        pbx::Leg::snapshot(&self.leg)
    }

    fn ring(&mut self) -> Result<(), ChannelError> {
        Err(ChannelError::State("the party has answered already".into()))
    }

    fn answer(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        let up = self.leg.state == LegState::Up;
        Box::pin(async move { if up { Ok(()) } else { Err(ChannelError::Ended) } })
    }

    fn reject(&mut self, _code: u16, _reason: Option<&str>, _contact: Option<&str>) {
        // Answered: nothing to refuse; `hangup` ends it.
    }

    fn hangup(&mut self, why: &Hangup) {
        if self.leg.state == LegState::Ended {
            return;
        }
        tracing::debug!(call_id = %self.leg.dialog.call_id, cause = why.cause, "hanging up");
        self.leg.bye();
        let _ = self.ended(why.code, why.cause);
    }

    fn tell_identity(&mut self, _display: Option<&str>, user: &str) {
        self.tell(user, true);
    }

    fn take_media(&mut self) -> Option<media::Leg> {
        self.media.as_deref_mut()?.take_leg()
    }

    fn give_media(&mut self, leg: media::Leg) {
        if let Some(media) = self.media.as_deref_mut() {
            media.park_leg(leg);
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn next_event(&mut self) -> BoxFuture<'_, ChannelEvent> {
        Box::pin(self.next())
    }
}

impl Drop for SipChannel {
    fn drop(&mut self) {
        // Dropped while up (the lot or a bridge went away): the party is
        // told, and its dialog forgotten.
        if self.moved {
            return;
        }
        if self.leg.state == LegState::Up && tokio::runtime::Handle::try_current().is_ok() {
            self.leg.bye();
        }
        self.inner
            .dialogs
            .remove_owned(&self.leg.dialog.call_id, &self.inbox_tx);
    }
}
