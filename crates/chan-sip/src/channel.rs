//! A SIP dialog as a `pbx` [`Channel`] (docs/call-core.md): an answered
//! party that serves its own dialog (RFC 3261 §12.2.2, with `party.rs`,
//! as a call serves its caller's), whether a call holds it as its bridged
//! party (lending the call its leg, the call polling
//! [`SipChannel::next_sip`]) or it has left the call it came from
//! (parked, confirming, a transferor, on its way to another call). BYE
//! ends it, re-INVITEs
//! and UPDATEs are answered here against its own anchored media (hold and
//! resume become [`ChannelEvent::Hold`], a new codec
//! [`ChannelEvent::MediaChanged`], both when one offer does both), INFO
//! keypresses become digits, and our 2xx is sent again until its ACK
//! (§13.3.1.4).
//!
//! Its in-dialog requests reach it through its own inbox (the dialog
//! table points the dialog's Call-ID at it while it exists), or, while
//! the call it answered for holds it, through that call's queue: the call
//! hands them to [`SipChannel::serve`], and the channel gets an inbox of
//! its own only when it leaves ([`SipChannel::leave_owner`]). A call's
//! party that never moves so costs no queue of its own, no re-pointing
//! of its dialog and no extra future polled on each turn of the call's
//! loop.

use std::sync::Arc;
use std::time::Instant;

use pbx::{
    BoxFuture, Channel, ChannelError, ChannelEvent, ChannelId, Hangup, LegSnapshot, LegState,
};

use bytes::Bytes;
use sip_net::InviteTx;
use sip_proto::{HeaderName, Headers, Method, Response};
use tokio_util::sync::CancellationToken;

use crate::anchor::{Failure, MediaEndpoint, Watch};
use crate::call::CallEvent;
use crate::leg::SipLeg;
use crate::party::{self, Changed, Served};
use crate::relay::sleep_until;
use crate::{Inner, Reply, Side};
use sdp::SessionDescription;

/// One answered SIP dialog with its media (see the module docs).
pub(crate) struct SipChannel {
    id: ChannelId,
    inner: Arc<Inner>,
    pub(crate) leg: SipLeg,
    /// Its INVITE's transaction while an inbound party is not answered
    /// (then what sends our 2xx again); `Done` for any other.
    pub(crate) invite: CallerTx,
    /// Fires when the CANCEL for that INVITE comes (RFC 3261 §9.2),
    /// until it is answered.
    cancel: Option<CancellationToken>,
    /// Its media, the leg parked in it while no owner runs anything on
    /// it; `None` before our first SDP to an inbound party, once ended or
    /// handed on.
    pub(crate) media: Option<Box<MediaEndpoint>>,
    /// An inbound party's offer, from its INVITE until our answer to it
    /// ([`description`](Self::description)). Boxed: empty most of a call.
    offer: Option<Box<SessionDescription>>,
    /// Where its dialog's requests arrive.
    inbox: Inbox,
    /// The sending end of that queue (its own, or its owner's).
    inbox_tx: crate::queue::EventTx,
    /// A new codec came with a hold in one offer: [`ChannelEvent::MediaChanged`]
    /// follows the [`ChannelEvent::Hold`] at the next poll.
    media_changed: bool,
}

/// Where a channel's dialog's requests arrive.
#[derive(Debug)]
enum Inbox {
    /// Its own queue, read by whoever holds it.
    Own(crate::queue::EventRx),
    /// The queue of the call that holds it, which knows the dialog as
    /// `Side` and serves its requests through [`SipChannel::serve`].
    Owner(Side),
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
        SipChannel::with_inbox(inner, leg, media, Inbox::Own(inbox), inbox_tx)
    }

    /// Takes over an answered dialog for the call whose queue `events`
    /// gets its requests (as `side`): the call serves them through
    /// [`serve`](Self::serve) until the channel leaves it
    /// ([`leave_owner`](Self::leave_owner)).
    pub fn owned(
        inner: Arc<Inner>,
        leg: SipLeg,
        media: Option<Box<MediaEndpoint>>,
        events: crate::queue::EventTx,
        side: Side,
    ) -> SipChannel {
        SipChannel::with_inbox(inner, leg, media, Inbox::Owner(side), events)
    }

    fn with_inbox(
        inner: Arc<Inner>,
        leg: SipLeg,
        media: Option<Box<MediaEndpoint>>,
        inbox: Inbox,
        inbox_tx: crate::queue::EventTx,
    ) -> SipChannel {
        SipChannel {
            id: ChannelId::next(),
            inner,
            leg,
            invite: CallerTx::Done,
            cancel: None,
            media,
            offer: None,
            inbox,
            inbox_tx,
            media_changed: false,
        }
    }

    /// An inbound party: its INVITE's transaction `tx` is answered
    /// through the channel (`ring`, `reject`, [`answer_with`](Self::answer_with)),
    /// and a CANCEL for it ends the channel.
    pub(crate) fn offered(&mut self, tx: InviteTx, offer: Option<Box<SessionDescription>>) {
        self.cancel = Some(tx.cancel_token());
        self.invite = CallerTx::Open(Box::new(tx));
        self.offer = offer;
    }

    /// Our SDP for an inbound party's first 18x or 200, made on its own
    /// media endpoint (its ports leased now, the first time): the answer
    /// to its INVITE's offer with the `prefer`red codecs first, which
    /// makes its leg; or our offer when the INVITE had none (its answer
    /// comes in the ACK, RFC 3261 §13.2.1). The same bytes every time
    /// after (RFC 3264 §8 keeps the version of an unchanged description).
    pub(crate) fn description(&mut self, prefer: &[String]) -> Result<Bytes, Failure> {
        let peer = self.leg.dialog.peer;
        let media = match &mut self.media {
            Some(media) => media,
            none => {
                let ip = self
                    .inner
                    .endpoint
                    .local_addr_for(self.leg.dialog.transport, peer)
                    .map(|a| a.ip());
                // Its digits are read from its first packet on.
                none.insert(MediaEndpoint::open(&self.inner.media, ip, true)?)
            }
        };
        if let Some(bytes) = media.last_sent() {
            return Ok(bytes);
        }
        media.set_signalling(peer.ip());
        let Some(offer) = self.offer.take() else {
            return Ok(media.offer_late(prefer));
        };
        let (bytes, stream) = media.answer(&offer, prefer, sdp::Direction::SendRecv)?;
        // Its first settling makes the leg: nothing runs on it to restart.
        let _made = media.settle(&stream)?;
        Ok(bytes)
    }

    /// Answers an inbound party not answered yet: our 200 with its SDP
    /// ([`description`](Self::description), the `prefer`red codecs
    /// first). What cannot be answered (no ports, an SDP we cannot use)
    /// gets the failure status with a Warning (RFC 3261 §20.43), and the
    /// channel ends.
    pub(crate) fn answer_preferring(&mut self, prefer: &[String]) -> Result<(), Failure> {
        match self.description(prefer) {
            Ok(sdp) => {
                self.answer_with(Some(("application/sdp".to_owned(), sdp)));
                Ok(())
            }
            Err(failure) => {
                let r = self.invite.failure(&failure, &self.inner.config.domain);
                self.invite.respond(r);
                self.leg.state = LegState::Ended;
                Err(failure)
            }
        }
    }

    /// The codecs to put first in an offer to the party it is to talk
    /// to: the one it settled on, else those its INVITE offered.
    pub(crate) fn preferred(&self) -> Vec<String> {
        if let Some(codec) = self.media.as_deref().and_then(MediaEndpoint::codec_name) {
            return vec![codec.to_owned()];
        }
        self.offer
            .as_deref()
            .map(crate::anchor::offered_names)
            .unwrap_or_default()
    }

    /// The caller's CANCEL came: 487 to its INVITE, unless it was
    /// answered first (then the CANCEL has no effect, §9.2).
    fn on_cancel(&mut self) -> Option<SipEvent> {
        self.cancel = None;
        if self.invite.is_answered() {
            return None;
        }
        Channel::reject(self, 487, None, None);
        Some(SipEvent::Ended(Hangup {
            code: 487,
            cause: "cancel",
        }))
    }

    /// Answers its INVITE with 200 (our Contact, what we allow, `body`)
    /// and keeps the 2xx until the ACK (RFC 3261 §13.3.1.4).
    pub(crate) fn answer_with(&mut self, body: Option<(String, Bytes)>) {
        let mut ok = self.invite.response(200);
        ok.headers
            .push(HeaderName::Contact, self.leg.contact.as_str());
        ok.headers.push(
            HeaderName::Allow,
            "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO",
        );
        if let Some((content_type, body)) = body {
            ok.headers.push(HeaderName::ContentType, content_type);
            ok.body = body;
        }
        self.leg.state = LegState::Up;
        if let Some(media) = self.media.as_deref() {
            media.answered();
        }
        self.cancel = None;
        self.invite.respond(ok.clone());
        if let Some(resender) = self.invite.ok_resender() {
            self.leg.keep_ok(resender, &ok, true);
        }
    }

    /// It leaves the call that served its dialog: its requests come to an
    /// inbox of its own from now on. Nothing for a channel that has one.
    pub(crate) fn leave_owner(&mut self) {
        if !matches!(self.inbox, Inbox::Owner(_)) {
            return;
        }
        let (inbox_tx, inbox) = crate::queue::events(16);
        self.inner
            .dialogs
            .repoint(&self.leg.dialog.call_id, inbox_tx.clone(), Side::Inbound);
        self.inbox = Inbox::Own(inbox);
        self.inbox_tx = inbox_tx;
    }

    /// The side its owner knows its dialog as, in answers it is sent.
    fn side(&self) -> Side {
        match self.inbox {
            Inbox::Own(_) => Side::Inbound,
            Inbox::Owner(side) => side,
        }
    }

    /// Tells the party it talks to `user` now (`first`: not a retry
    /// after glare).
    pub(crate) fn tell(&mut self, user: &str, first: bool) {
        let domain = self.inner.config.domain.clone();
        let answers = (self.inbox_tx.clone(), self.side());
        let media = &mut self.media;
        self.leg.tell_identity(
            &domain,
            user,
            || media.as_deref_mut()?.offer_again(),
            answers,
            first,
        );
    }

    /// A NOTIFY of the implicit subscription of its REFER `id`, carrying
    /// `status` as a `message/sipfrag` (RFC 3515 §2.4.5); `done` ends the
    /// subscription.
    pub(crate) fn notify_refer(&mut self, id: u32, status: u16, reason: &str, done: bool) {
        let leg = &mut self.leg;
        if leg.state != LegState::Up {
            return;
        }
        let mut notify = leg.dialog.request(Method::Notify, None, None);
        notify
            .headers
            .push(HeaderName::Contact, leg.contact.as_str());
        notify
            .headers
            .push(HeaderName::parse("Event"), format!("refer;id={id}"));
        notify.headers.push(
            HeaderName::parse("Subscription-State"),
            if done {
                "terminated;reason=noresource".to_owned()
            } else {
                "active;expires=60".to_owned()
            },
        );
        notify
            .headers
            .push(HeaderName::ContentType, "message/sipfrag;version=2.0");
        notify.body = format!("SIP/2.0 {status} {reason}\r\n").into();
        drop(leg.send(notify));
    }

    fn ended(&mut self, code: u16, cause: &'static str) -> Hangup {
        self.leg.state = LegState::Ended;
        self.media = None;
        self.inner
            .dialogs
            .remove_owned(&self.leg.dialog.call_id, &self.inbox_tx);
        Hangup { code, cause }
    }

    /// What its phone's request came to, as the channel's events (for an
    /// owner that is not a SIP call): a hold and a new codec in one offer
    /// are two, the second given at the next poll.
    fn channel_event(&mut self, served: Served) -> Option<ChannelEvent> {
        match served {
            Served::Nothing => None,
            Served::HungUp => Some(ChannelEvent::HungUp(self.ended(200, "bye"))),
            Served::Offer(Changed { hold, restart }) => match (hold, restart) {
                (Some(held), restart) => {
                    self.media_changed = restart;
                    Some(ChannelEvent::Hold(held))
                }
                // The owner running media on the leg gives it back and
                // takes it again, in the new codec.
                (None, true) => Some(ChannelEvent::MediaChanged),
                (None, false) => None,
            },
            Served::Digit(digit, _) => Some(ChannelEvent::Digit(digit.as_char())),
            // Transfers are a call's business; a parked party has none.
            Served::Refer(_, reply) => {
                let _ = reply.send(Reply::status(603));
                None
            }
        }
    }

    /// An event of its dialog: a request served (answered here, but for
    /// a REFER), an ACK or an answer to our offer settled; or something
    /// another call asks of the call that owns this dialog, for the owner
    /// (`None` when it is settled here).
    pub(crate) fn serve(&mut self, event: CallEvent) -> Option<SipEvent> {
        let served = match event {
            CallEvent::Request { request, reply, .. } => {
                party::request(&mut self.leg, self.media.as_deref_mut(), *request, reply)
            }
            CallEvent::ReInvite { incoming, tx, .. } => {
                let agent = &self.inner.config.domain;
                let media = self.media.as_deref_mut();
                party::reinvite(&mut self.leg, media, *incoming, *tx, agent)
            }
            CallEvent::Ack { request, .. } => {
                party::ack(&mut self.leg, self.media.as_deref_mut(), &request)
            }
            CallEvent::TellIdentity { user, .. } => {
                self.tell(&user, false);
                Served::Nothing
            }
            CallEvent::OfferAnswered { answer, .. } => {
                let body = answer.unwrap_or_default();
                party::answered(self.media.as_deref_mut(), &body, "re-INVITE answer")
            }
            CallEvent::Hangup => {
                self.leg.bye();
                return Some(SipEvent::Ended(self.ended(200, "admin hangup")));
            }
            // Another call asking about this dialog (a pickup, an
            // attended transfer, a replacement): its owner's business.
            event @ (CallEvent::Branch { .. }
            | CallEvent::Confirmed { .. }
            | CallEvent::PickupAsk { .. }
            | CallEvent::Adopt { .. }
            | CallEvent::ReplaceAsk { .. }
            | CallEvent::GiveUp { .. }) => return Some(SipEvent::Owner(event)),
        };
        match served {
            Served::Nothing => None,
            Served::HungUp => Some(SipEvent::Ended(self.ended(200, "bye"))),
            served => Some(SipEvent::Served(served)),
        }
    }

    /// When its next timer is due: our 2xx again (§13.3.1.4), or the
    /// silence limit of its leg while something runs on it elsewhere.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.leg.state == LegState::Ended {
            return None;
        }
        [self.leg.ok_due(), self.silence().deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Its leg's silence watch: once its party is up (a caller still
    /// ringing need not send RTP, while ringback or early media play on
    /// its leg).
    fn silence(&self) -> Watch {
        let up = self.leg.state == LegState::Up;
        Watch::one(self.media.as_deref().filter(|_| up))
    }

    /// Its timers at `now`: our 2xx again, or the end of the dialog when
    /// no ACK came for it or its leg has been silent too long.
    pub(crate) fn on_deadline(&mut self, now: Instant) -> Option<SipEvent> {
        if self.leg.state == LegState::Ended {
            return None;
        }
        if self.leg.ok_due().is_some_and(|at| at <= now)
            && let Err(no_ack) = self.leg.retransmit_ok(now)
        {
            self.leg.bye();
            // The 2xx that answered the INVITE itself, or one to a
            // re-INVITE.
            let cause = if no_ack.first {
                "no ACK for our 200"
            } else {
                "no ACK"
            };
            return Some(SipEvent::Ended(self.ended(408, cause)));
        }
        // RTP may have come since the deadline was read: only a leg
        // really silent too long ends the call.
        let silent = self.silence().expired(now)?;
        tracing::info!(call_id = %self.leg.dialog.call_id, silent_ms = silent.as_millis() as u64, "no RTP; hanging up");
        metrics::counter!("rtp_timeouts_total").increment(1);
        self.leg.bye();
        Some(SipEvent::Ended(self.ended(200, "rtp timeout")))
    }

    /// The next request in its dialog, served, for an owner that keeps
    /// the channel's timers in its own ([`deadline`](Self::deadline),
    /// [`on_deadline`](Self::on_deadline)): a SIP call, whose one timer
    /// serves its parties too. Cancel-safe.
    pub(crate) async fn next_request(&mut self) -> SipEvent {
        loop {
            if self.leg.state == LegState::Ended {
                return std::future::pending().await;
            }
            let event = tokio::select! {
                () = cancelled(self.cancel.as_ref()) => None,
                event = receive(&mut self.inbox) => Some(event),
            };
            let Some(event) = event else {
                match self.on_cancel() {
                    Some(event) => return event,
                    None => continue,
                }
            };
            if let Some(event) = self.serve(event) {
                return event;
            }
        }
    }

    /// The next thing its party does: its dialog served, its timers
    /// driven (our 2xx until ACK, the RTP timeout of its leg while
    /// something runs on it elsewhere). Cancel-safe.
    async fn next_sip(&mut self) -> SipEvent {
        loop {
            let at = self.deadline();
            let event = tokio::select! {
                event = self.next_request() => Some(event),
                () = sleep_until(at), if at.is_some() => self.on_deadline(Instant::now()),
            };
            if let Some(event) = event {
                return event;
            }
        }
    }

    /// [`next_sip`](Self::next_sip) for an owner that is no SIP call (the
    /// parking lot, a confirmation): what concerns a call is refused.
    async fn next(&mut self) -> ChannelEvent {
        loop {
            if std::mem::take(&mut self.media_changed) {
                return ChannelEvent::MediaChanged;
            }
            // The owner has acted on the new codec (a leg it never gave
            // back kept the old one): our answer waits no longer.
            self.leg.send_held_answer();
            let event = match self.next_sip().await {
                SipEvent::Served(served) => self.channel_event(served),
                SipEvent::Ended(hangup) => Some(ChannelEvent::HungUp(hangup)),
                SipEvent::Owner(event) => {
                    refuse(event);
                    None
                }
            };
            if let Some(event) = event {
                return event;
            }
        }
    }
}

/// The next request in a channel's own inbox; pending for one its owner
/// serves from the owner's queue, or once every sender is gone.
async fn receive(inbox: &mut Inbox) -> CallEvent {
    if let Inbox::Own(inbox) = inbox
        && let Some(event) = inbox.recv().await
    {
        return event;
    }
    std::future::pending().await
}

/// Fires with `token` (pending without one).
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// What a SIP channel's party did, for a SIP call owning it (richer than
/// a [`ChannelEvent`]: a REFER to handle, a keypress's length, another
/// call's question about the dialog).
#[derive(Debug)]
pub(crate) enum SipEvent {
    /// A request served: what the owner must act on (never
    /// [`Served::Nothing`] or [`Served::HungUp`]).
    Served(Served),
    /// The party hung up, or was hung up (no ACK, no RTP, the admin API):
    /// the channel is over.
    Ended(Hangup),
    /// Another call asks the owner of this dialog something.
    Owner(CallEvent),
}

/// Another call's question to a channel's owner, when the owner is no
/// SIP call: no.
fn refuse(event: CallEvent) {
    match event {
        CallEvent::ReplaceAsk { reply, .. } => {
            let _ = reply.send(None);
        }
        CallEvent::GiveUp { reply, .. } => {
            let _ = reply.send(None);
        }
        CallEvent::PickupAsk { reply } => {
            let _ = reply.send(false);
        }
        _ => {}
    }
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
        if self.invite.is_answered() {
            return Err(ChannelError::State("the party has answered already".into()));
        }
        let r = self.invite.response(180);
        self.invite.respond(r);
        self.leg.state = LegState::Ringing;
        Ok(())
    }

    /// An inbound party not answered yet gets our 200 with our SDP (the
    /// answer to its offer on its own media); a party up already is
    /// answered. What cannot be answered ends: an SDP we cannot use gets
    /// its failure status with a Warning (RFC 3261 §20.43).
    fn answer(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        let result = match self.leg.state {
            LegState::Up => Ok(()),
            LegState::Ended => Err(ChannelError::Ended),
            _ if self.invite.is_answered() => {
                Err(ChannelError::State("not an inbound party".into()))
            }
            _ => self
                .answer_preferring(&[])
                .map_err(|f| ChannelError::Media(f.status(), f.text().to_owned())),
        };
        Box::pin(async move { result })
    }

    fn reject(&mut self, code: u16, reason: Option<&str>, contact: Option<&str>) {
        // Answered (or never an inbound party's): nothing to refuse;
        // `hangup` ends it.
        if self.invite.is_answered() {
            return;
        }
        let mut r = self.invite.response(code);
        if let Some(reason) = reason.filter(|r| !r.is_empty() && !r.contains(['\r', '\n'])) {
            r.reason = reason.to_owned();
        }
        if let Some(contact) = contact {
            r.headers.push(HeaderName::Contact, contact);
        }
        self.invite.respond(r);
        self.leg.state = LegState::Ended;
    }

    fn hangup(&mut self, why: &Hangup) {
        if self.leg.state == LegState::Ended {
            return;
        }
        tracing::debug!(call_id = %self.leg.dialog.call_id, cause = why.cause, "hanging up");
        if !self.invite.is_answered() {
            // Inbound and not answered: a final response ends it (603,
            // what Asterisk and FreeSWITCH send, unless the cause has one).
            let code = if (300..=699).contains(&why.code) {
                why.code
            } else {
                603
            };
            self.reject(code, None, None);
        }
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
        // The leg is in the codec the phone's new offer settled on: our
        // answer to that offer goes out now.
        self.leg.send_held_answer();
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
        if self.leg.state == LegState::Up && tokio::runtime::Handle::try_current().is_ok() {
            self.leg.bye();
        }
        self.inner
            .dialogs
            .remove_owned(&self.leg.dialog.call_id, &self.inbox_tx);
    }
}

/// An inbound party's INVITE transaction (RFC 3261 §13.3.1), for as
/// long as its owner answers it.
pub(crate) enum CallerTx {
    /// Not answered yet. Boxed: the transaction (which keeps the whole
    /// INVITE to build responses from) is large.
    Open(Box<InviteTx>),
    /// Answered with a 2xx: only what sends it again until the ACK
    /// (§13.3.1.4). The INVITE is not kept for the rest of the call.
    Answered(Box<sip_net::OkResender>),
    /// Answered otherwise, or a caller that came to the call answered
    /// already (a parked call ringing back whoever parked it): nothing
    /// more is answered.
    Done,
}

impl CallerTx {
    pub(crate) fn response(&self, status: u16) -> Response {
        match self {
            CallerTx::Open(tx) => tx.response(status),
            _ => Response {
                status,
                reason: String::new(),
                headers: Headers::default(),
                body: Bytes::new(),
            },
        }
    }

    pub(crate) fn response_with_warning(&self, status: u16, agent: &str, text: &str) -> Response {
        match self {
            CallerTx::Open(tx) => tx.response_with_warning(status, agent, text),
            _ => self.response(status),
        }
    }

    /// The answer for media we cannot use, with a Warning.
    pub(crate) fn failure(&self, failure: &Failure, agent: &str) -> Response {
        self.response_with_warning(failure.status(), agent, failure.text())
    }

    /// Sends `response`; a final one closes the transaction (a 2xx keeps
    /// only its resender), and a 2xx after it is the retransmission.
    pub(crate) fn respond(&mut self, response: Response) {
        match self {
            CallerTx::Open(tx) => {
                let status = response.status;
                tx.respond(response);
                if (200..300).contains(&status) {
                    *self = CallerTx::Answered(Box::new(tx.ok_resender()));
                } else if status >= 300 {
                    *self = CallerTx::Done;
                }
            }
            CallerTx::Answered(resender) => resender.resend(response),
            CallerTx::Done => {}
        }
    }

    pub(crate) fn is_answered(&self) -> bool {
        match self {
            CallerTx::Open(tx) => tx.is_answered(),
            _ => true,
        }
    }

    pub(crate) fn ok_resender(&self) -> Option<sip_net::OkResender> {
        match self {
            CallerTx::Open(tx) => Some(tx.ok_resender()),
            CallerTx::Answered(resender) => Some((**resender).clone()),
            CallerTx::Done => None,
        }
    }
}
