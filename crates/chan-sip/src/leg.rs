//! A SIP leg: one dialog of a call as `pbx` sees a leg (RFC 3261 §12:
//! requests inside it, BYE to end it), with our 2xx to the phone's latest
//! INVITE sent again until its ACK (§13.3.1.4), whoever owns the leg.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pbx::{Leg, LegSnapshot, LegState};
use sip_net::{InviteTx, OkResender, Transport};
use sip_proto::dialog::{OkRetransmit, OkTimer};
use sip_proto::{HeaderName, Method, Request, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::call::CallEvent;
use crate::dialog::Dialog;
use crate::{Inner, Reply};

/// Our Contact for a dialog with a peer at `peer`.
pub(crate) fn our_contact(inner: &Inner, transport: Transport, peer: SocketAddr) -> String {
    let addr = inner
        .endpoint
        .local_addr_for(transport, peer)
        .map_or_else(|| inner.config.domain.clone(), |a| a.to_string());
    match transport {
        Transport::Udp => format!("<sip:switchboard@{addr}>"),
        Transport::Tcp => format!("<sip:switchboard@{addr};transport=tcp>"),
    }
}

/// A SIP leg: one dialog of the call, as `pbx` sees a leg.
pub(crate) struct SipLeg {
    pub inner: Arc<Inner>,
    pub dialog: Dialog,
    pub direction: &'static str,
    pub state: LegState,
    pub contact: String,
    /// The phone put the call on hold (its last offer was sendonly or inactive).
    pub held: bool,
    /// The phone takes UPDATE (its Allow lists it, or it sent none).
    pub allows_update: bool,
    /// Set while a re-INVITE of ours is in progress in the dialog (made
    /// by the first, cleared by the task that sends it, whoever owns the
    /// leg by then): the phone's own re-INVITE meanwhile is glare (491).
    pub inviting: Option<Arc<AtomicBool>>,
    /// Our 2xx to the phone's latest INVITE (the first or a re-INVITE),
    /// until its ACK; UDP only. It goes where the leg goes (a party
    /// detached, parked, picked up), so the new owner keeps sending it.
    ok: Option<Box<PendingOk>>,
    /// Our answer to the phone's new offer, held while its leg is away in
    /// the old codec ([`hold_answer`](Self::hold_answer)).
    answer: Option<Box<HeldAnswer>>,
}

/// Our answer to a phone's new offer (re-INVITE, UPDATE) that moved it
/// to another codec while its leg was away (a bridge, a prompt running on
/// it in the codec it had). It goes out when the leg is back, set to the
/// new codec: the phone left the old format out of its offer (RFC 3264
/// §8.3.2), so nothing may reach it in that format once it has our answer.
pub(crate) enum HeldAnswer {
    /// Our 2xx to its re-INVITE, kept until the ACK once sent.
    ReInvite { tx: Box<InviteTx>, ok: Response },
    /// Our 200 to its UPDATE.
    Update {
        reply: oneshot::Sender<Reply>,
        answer: Reply,
    },
}

/// Our 2xx to an INVITE of the phone's, sent again until its ACK.
#[derive(Clone)]
struct PendingOk {
    resender: OkResender,
    ok: Response,
    retrans: OkRetransmit,
    /// The CSeq number the ACK repeats.
    seq: u32,
    /// It answers the INVITE that made the dialog (not a re-INVITE).
    first: bool,
}

/// No ACK came for our 2xx (§13.3.1.4): the dialog is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoAck {
    /// The 2xx answered the INVITE that made the dialog.
    pub first: bool,
}

/// Whether a message's Allow header admits `method` (RFC 3261 §20.5: no
/// Allow says nothing against it).
pub(crate) fn allows(headers: &sip_proto::Headers, method: &str) -> bool {
    headers.get(&HeaderName::Allow).is_none_or(|allow| {
        allow
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case(method))
    })
}

/// Whether an SDP offer puts the other side on hold: its first audio
/// section (or the session) is `sendonly` or `inactive` (RFC 6337 §5.3).
/// An offer that does not parse says nothing (`None`).
pub(crate) fn offers_hold(body: &[u8]) -> Option<bool> {
    let sdp = sdp::parse(body).ok()?;
    let index = sdp
        .media
        .iter()
        .position(|m| m.media.eq_ignore_ascii_case("audio"))?;
    Some(matches!(
        sdp.direction(index),
        sdp::Direction::SendOnly | sdp::Direction::Inactive
    ))
}

impl SipLeg {
    /// A leg for `dialog`, up or not yet (`state`), reached with
    /// `contact`.
    pub fn new(
        inner: Arc<Inner>,
        dialog: Dialog,
        direction: &'static str,
        state: LegState,
        contact: String,
        allows_update: bool,
    ) -> SipLeg {
        SipLeg {
            inner,
            dialog,
            direction,
            state,
            contact,
            held: false,
            allows_update,
            inviting: None,
            ok: None,
            answer: None,
        }
    }

    /// Holds `answer` until the leg, away in its old codec, is back
    /// ([`send_held_answer`](Self::send_held_answer)); one already held
    /// goes out first.
    pub fn hold_answer(&mut self, answer: HeldAnswer) {
        self.send_held_answer();
        self.answer = Some(Box::new(answer));
    }

    /// Sends the answer held for the leg's return, if one is.
    pub fn send_held_answer(&mut self) {
        match self.answer.take().map(|a| *a) {
            Some(HeldAnswer::ReInvite { mut tx, ok }) => {
                tx.respond(ok.clone());
                self.keep_ok(tx.ok_resender(), &ok, false);
            }
            Some(HeldAnswer::Update { reply, answer }) => {
                let _ = reply.send(answer);
            }
            None => {}
        }
    }

    /// Whether the phone's `request` belongs to this dialog and is in
    /// order (RFC 3261 §12.2.2), recording its CSeq; the refusal status
    /// otherwise (481 not this dialog, 500 out of order).
    pub fn admit(&mut self, request: &Request) -> Result<(), u16> {
        if !self.dialog.matches(request) {
            return Err(481);
        }
        let seq = request.cseq().map_or(0, |c| c.seq);
        if !self.dialog.accept_remote_cseq(seq) {
            return Err(500);
        }
        Ok(())
    }

    /// Keeps `ok`, our 2xx to the phone's INVITE just sent through
    /// `resender` (`first`: the INVITE that made the dialog), to send
    /// again until its ACK (over UDP; a reliable transport delivers it).
    pub fn keep_ok(&mut self, resender: OkResender, ok: &Response, first: bool) {
        if self.dialog.transport != Transport::Udp || !(200..300).contains(&ok.status) {
            return;
        }
        let config = &self.inner.config;
        self.ok = Some(Box::new(PendingOk {
            resender,
            seq: ok.cseq().map_or(0, |c| c.seq),
            ok: ok.clone(),
            retrans: OkRetransmit::start(Instant::now(), config.t1, config.t2),
            first,
        }));
    }

    /// When our 2xx is next due again, while it waits for its ACK.
    pub fn ok_due(&self) -> Option<Instant> {
        self.ok.as_ref().and_then(|p| p.retrans.poll_timeout())
    }

    /// Sends our 2xx again if it is due; [`NoAck`] when no ACK came in
    /// time (64×T1).
    pub fn retransmit_ok(&mut self, now: Instant) -> Result<(), NoAck> {
        let Some(pending) = self.ok.as_mut() else {
            return Ok(());
        };
        match pending.retrans.handle_timeout(now) {
            OkTimer::Resend => pending.resender.resend(pending.ok.clone()),
            OkTimer::GiveUp => {
                let first = pending.first;
                self.ok = None;
                return Err(NoAck { first });
            }
            _ => {}
        }
        Ok(())
    }

    /// An ACK with CSeq number `seq` came: our 2xx to that INVITE is
    /// acknowledged.
    pub fn acked(&mut self, seq: u32) {
        if self.ok.as_ref().is_some_and(|p| p.seq == seq) {
            self.ok = None;
        }
    }

    /// Whether a re-INVITE of ours is in progress in the dialog: a
    /// re-INVITE from the phone meanwhile gets 491 (RFC 3261 §14.2).
    pub fn inviting(&self) -> bool {
        self.inviting
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// Sends `request` (built on this leg's dialog) in the background and
    /// returns at once; the answer is logged at debug.
    pub fn send(&self, request: Request) -> JoinHandle<Option<Response>> {
        let endpoint = self.inner.endpoint.clone();
        let (transport, peer) = (self.dialog.transport, self.dialog.peer);
        tokio::spawn(async move {
            let method = request.method.clone();
            match endpoint.request(request, transport, peer).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!(%peer, %method, error = %e, "in-dialog request failed");
                    None
                }
            }
        })
    }

    /// Tells the phone who it talks to now (after a transfer or a
    /// pickup), carrying P-Asserted-Identity (RFC 3325) as Asterisk's
    /// connected-line update does: in an UPDATE without a body (RFC 3311)
    /// when the phone takes UPDATE, else in a re-INVITE offering what
    /// `offer` makes (our current description, unchanged, RFC 3264 §8.4;
    /// made only for a re-INVITE). The phone's answer (or `None`, refused)
    /// goes to `answers` as [`CallEvent::OfferAnswered`] for this leg's
    /// `side`, to be applied: a phone may settle on another of our codecs.
    /// A re-INVITE that meets the phone's own (491, glare) is tried again
    /// once, after the wait of RFC 3261 §14.1 (2.1-4 s when we chose the
    /// dialog's Call-ID, up to 2 s when the phone did): `first` is false
    /// then, and [`CallEvent::TellIdentity`] asks the owner to.
    pub fn tell_identity(
        &mut self,
        domain: &str,
        user: &str,
        offer: impl FnOnce() -> Option<bytes::Bytes>,
        (answers, side): (crate::queue::EventTx, crate::Side),
        first: bool,
    ) {
        if self.state != LegState::Up || user.is_empty() {
            return;
        }
        let display = self
            .inner
            .extensions
            .load()
            .get(user)
            .and_then(|e| e.name.clone())
            .map(|d| d.replace(['"', '\\', '\r', '\n'], ""));
        let identity = match display {
            Some(d) => format!("\"{d}\" <sip:{user}@{domain}>"),
            None => format!("<sip:{user}@{domain}>"),
        };
        if self.allows_update {
            let mut update = self.dialog.request(Method::Update, None, None);
            update
                .headers
                .push(HeaderName::Contact, self.contact.as_str());
            update
                .headers
                .push(HeaderName::parse("P-Asserted-Identity"), identity);
            drop(self.send(update));
            return;
        }
        let Some(sdp) = offer() else {
            return;
        };
        let mut invite = self
            .dialog
            .request(Method::Invite, Some(&self.contact), None);
        invite
            .headers
            .push(HeaderName::parse("P-Asserted-Identity"), identity);
        invite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        invite.body = sdp;
        let seq = self.dialog.local_cseq;
        let ack = self.dialog.request(Method::Ack, None, Some(seq));
        let endpoint = self.inner.endpoint.clone();
        let (transport, peer) = (self.dialog.transport, self.dialog.peer);
        // We chose the Call-ID of the dialogs we started (the dial's).
        let ours = self.direction == "outbound";
        let inviting = self
            .inviting
            .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        inviting.store(true, Ordering::Release);
        let user = user.to_owned();
        tokio::spawn(async move {
            let mut status = None;
            if let Ok(mut ctx) = endpoint.invite(invite, transport, peer).await {
                while let Some(event) = ctx.next().await {
                    if let sip_net::InviteEvent::Response(r) = event
                        && r.status >= 200
                    {
                        status = Some(r.status);
                        if r.status < 300 {
                            // Applied from now on, the ACK on its way.
                            inviting.store(false, Ordering::Release);
                            let answer = Some(r.body.clone());
                            let _ = answers
                                .send(CallEvent::OfferAnswered { side, answer })
                                .await;
                            let _ = endpoint.send_stateless(ack, transport, peer).await;
                            return;
                        }
                        break;
                    }
                }
            }
            inviting.store(false, Ordering::Release);
            let _ = answers
                .send(CallEvent::OfferAnswered { side, answer: None })
                .await;
            if status == Some(491) && first {
                let wait = if ours {
                    rand::random_range(2100..=4000)
                } else {
                    rand::random_range(0..=2000)
                };
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let _ = answers.send(CallEvent::TellIdentity { side, user }).await;
            }
        });
    }

    /// What stays of a leg that moved on: its dialog's identity, ended,
    /// with nothing to send (for an owner that still names it).
    pub fn ghost(&self) -> SipLeg {
        SipLeg {
            inner: self.inner.clone(),
            dialog: self.dialog.clone(),
            direction: self.direction,
            state: LegState::Ended,
            contact: self.contact.clone(),
            held: self.held,
            allows_update: self.allows_update,
            inviting: self.inviting.clone(),
            ok: None,
            answer: None,
        }
    }

    pub fn bye(&mut self) {
        if self.state == LegState::Up {
            let bye = self.dialog.request(Method::Bye, None, None);
            drop(self.send(bye));
        }
        self.state = LegState::Ended;
    }
}

impl Leg for SipLeg {
    fn snapshot(&self) -> LegSnapshot {
        LegSnapshot {
            direction: self.direction,
            channel: "sip",
            peer: self.dialog.remote_target.to_string(),
            address: format!("{}:{}", self.dialog.transport, self.dialog.peer),
            state: self.state,
            held: self.held,
            dialog: pbx::DialogIds {
                call_id: self.dialog.call_id.clone(),
                local_tag: self.dialog.local_tag.clone(),
                remote_tag: self.dialog.remote_tag.clone(),
            },
        }
    }

    async fn hangup(&mut self) {
        let up = self.state == LegState::Up;
        self.state = LegState::Ended;
        if up {
            let bye = self.dialog.request(Method::Bye, None, None);
            let _ = self.send(bye).await;
        }
    }
}
