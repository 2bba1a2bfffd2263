//! Requests inside a call's dialogs (RFC 3261 §12.2.2): BYE, UPDATE and
//! INFO, and re-INVITEs (§14) with their offers re-made for the other side
//! (RFC 3264 §8, media anchored) and glare (491).

use sip_net::{Incoming, InviteEvent, InviteTx};
use sip_proto::{HeaderName, Method, Request, Response};
use tokio::sync::oneshot;

use super::{Call, CallEvent};
use crate::anchor::{Failure, Which};
use crate::leg::SipLeg;
use crate::relay::{body_of, reply_from, set_body};
use crate::{Reply, Side};
use pbx::{Disposition, LegState};

impl Call {
    pub(super) async fn on_request(
        &mut self,
        side: Side,
        request: Request,
        reply: oneshot::Sender<Reply>,
    ) {
        if request.cseq().is_none() {
            let _ = reply.send(Reply::status(400));
            return;
        }
        // Which leg it came from, and the other one.
        let from_bridge =
            matches!((side, self.phase.bridge()), (Side::Outbound(id), Some(b)) if b.branch == id);
        if let Side::Outbound(_) = side
            && !from_bridge
        {
            // A fork that is not (or no longer) bridged saying goodbye
            // (200), or asking something (481).
            let status = if request.method == Method::Bye {
                200
            } else {
                481
            };
            let _ = reply.send(Reply::status(status));
            return;
        }
        if let Err(status) = self.admit(from_bridge, &request) {
            let _ = reply.send(Reply::status(status));
            return;
        }
        match request.method {
            Method::Refer => self.on_refer(from_bridge, request, reply).await,
            Method::Bye => {
                let _ = reply.send(Reply::status(200));
                if from_bridge {
                    if let Some(b) = self.phase.bridge_mut() {
                        b.leg.state = LegState::Ended;
                    }
                    self.a.leg.bye();
                    self.finish(Disposition::Answered, 200, "callee");
                } else {
                    if let Some(b) = self.phase.bridge_mut() {
                        b.leg.bye();
                    }
                    self.a.leg.state = LegState::Ended;
                    let answered = self.record.was_answered();
                    let disposition = if answered {
                        Disposition::Answered
                    } else {
                        Disposition::Cancelled
                    };
                    self.abandon_dial();
                    self.finish(disposition, if answered { 200 } else { 487 }, "caller");
                }
            }
            Method::Update if !request.body.is_empty() => {
                // A new offer in an UPDATE: media is anchored, so we answer
                // it for this side alone (new address, codec, hold).
                let which = if from_bridge { Which::B } else { Which::A };
                self.note_hold(from_bridge, &request.body);
                let r = match self.media.answer_here(which, &request.body).await {
                    Ok(sdp) => Reply {
                        status: 200,
                        body: Some(("application/sdp".to_owned(), sdp)),
                    },
                    Err(failure) => Reply::status(failure.status()),
                };
                let _ = reply.send(r);
            }
            _ => {
                // UPDATE and INFO go to the other leg when bridged.
                let target = if from_bridge {
                    Some(&mut self.a.leg)
                } else {
                    self.phase.bridge_mut().map(|b| &mut b.leg)
                };
                match target {
                    Some(leg) if leg.state == LegState::Up => {
                        let mut out = leg.dialog.request(request.method.clone(), None, None);
                        if request.method == Method::Update {
                            out.headers.push(HeaderName::Contact, leg.contact.as_str());
                        }
                        set_body(
                            &mut out.headers,
                            &mut out.body,
                            body_of(&request.headers, &request.body),
                        );
                        let sent = leg.send(out);
                        tokio::spawn(async move {
                            let r = match sent.await {
                                Ok(Some(r)) => reply_from(&r),
                                _ => Reply::status(408),
                            };
                            let _ = reply.send(r);
                        });
                    }
                    _ => {
                        // Nobody to pass it to: INFO (DTMF) and a bare
                        // UPDATE (a session refresh) are accepted; a
                        // keypress in an INFO goes to the dialplan's
                        // read_digits like an RFC 4733 one.
                        if request.method == Method::Info
                            && !from_bridge
                            && let Some(digit) = info_digit(&request)
                        {
                            self.media.push_caller_digit(digit);
                        }
                        let _ = reply.send(Reply::status(200));
                    }
                }
            }
        }
    }

    pub(super) async fn on_reinvite(&mut self, side: Side, incoming: Incoming, mut tx: InviteTx) {
        let from_bridge =
            matches!((side, self.phase.bridge()), (Side::Outbound(id), Some(b)) if b.branch == id);
        if matches!(side, Side::Outbound(_)) && !from_bridge || self.phase.is_ended() {
            let r = tx.response(481);
            tx.respond(r);
            return;
        }
        if let Err(status) = self.admit(from_bridge, &incoming.request) {
            let r = tx.response(status);
            tx.respond(r);
            return;
        }
        if self.leg_mut(from_bridge).is_some_and(|leg| leg.inviting()) {
            // §14.2: a re-INVITE of ours (the new identity) is in progress.
            tx.respond(glare(&tx));
            return;
        }
        let which = if from_bridge { Which::B } else { Which::A };
        let own_contact = self
            .leg_mut(from_bridge)
            .map(|leg| leg.contact.clone())
            .unwrap_or_default();
        let body = incoming.request.body.clone();
        self.note_hold(from_bridge, &body);
        let other_up = if from_bridge {
            self.a.leg.state == LegState::Up
        } else {
            self.phase
                .bridge()
                .is_some_and(|b| b.leg.state == LegState::Up)
        };
        if other_up
            && !body.is_empty()
            && !self.reinvite_pending
            && let Some(r) = self.hold_here(which, &body, &tx, &own_contact).await
        {
            self.respond_reinvite(side, tx, r);
            return;
        }
        if body.is_empty() || !other_up {
            // Answered here: an offerless re-INVITE gets our description
            // as the offer (its answer comes in the ACK); with nobody on
            // the other side, we answer the new offer ourselves.
            let sdp = if body.is_empty() {
                self.media
                    .offer_again(which)
                    .ok_or(Failure::NotAcceptable("no media session to offer".into()))
            } else {
                self.media.answer_here(which, &body).await
            };
            let r = match sdp {
                Ok(sdp) => {
                    let mut r = tx.response(200);
                    r.headers.push(HeaderName::Contact, own_contact);
                    r.headers.push(HeaderName::ContentType, "application/sdp");
                    r.body = sdp;
                    r
                }
                Err(failure) => failure.response(&tx, &self.inner.config.domain),
            };
            self.respond_reinvite(side, tx, r);
            return;
        }
        if self.reinvite_pending {
            // §14.2: a re-INVITE while another is in progress is glare.
            tx.respond(glare(&tx));
            return;
        }
        // The other side gets our offer (its own ports, the direction
        // asked for: hold is passed on), the asker our answer once it
        // has answered.
        let offer = match self.media.reoffer(which, &body) {
            Ok(offer) => offer,
            Err(failure) => {
                let r = failure.response(&tx, &self.inner.config.domain);
                tx.respond(r);
                return;
            }
        };
        let other = if from_bridge {
            &mut self.a.leg
        } else {
            match self.phase.bridge_mut() {
                Some(b) => &mut b.leg,
                None => return,
            }
        };
        self.reinvite_pending = true;
        let mut invite = other
            .dialog
            .request(Method::Invite, Some(&other.contact), None);
        set_body(
            &mut invite.headers,
            &mut invite.body,
            Some(("application/sdp".to_owned(), offer)),
        );
        let seq = other.dialog.local_cseq;
        let ack = other.dialog.request(Method::Ack, None, Some(seq));
        let endpoint = self.inner.endpoint.clone();
        let (transport, peer) = (other.dialog.transport, other.dialog.peer);
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let response = match endpoint.invite(invite, transport, peer).await {
                Ok(mut ctx) => loop {
                    match ctx.next().await {
                        Some(InviteEvent::Response(r)) if r.status < 200 => {}
                        Some(InviteEvent::Response(r)) => break Some(r),
                        _ => break None,
                    }
                },
                Err(_) => None,
            };
            if response.as_ref().is_some_and(|r| r.status < 300) {
                let _ = endpoint.send_stateless(ack, transport, peer).await;
            }
            let _ = events
                .send(CallEvent::ReInviteAnswered {
                    from: side,
                    tx: Box::new(tx),
                    response,
                })
                .await;
        });
    }

    /// Hold with music (the way Asterisk and FreeSWITCH do it): a re-INVITE
    /// that holds (`sendonly`/`inactive`) is answered here and the other
    /// side hears the call's music on hold instead of silence, with no
    /// re-INVITE of its own; the one that resumes is answered here and the
    /// bridge restarts. While one side holds, every re-offer from either
    /// is answered here. `None`: not a hold matter (or no music to play),
    /// so the re-INVITE is passed on as before.
    async fn hold_here(
        &mut self,
        which: Which,
        body: &bytes::Bytes,
        tx: &InviteTx,
        contact: &str,
    ) -> Option<Response> {
        let holds = crate::leg::offers_hold(body)?;
        let held_by = self.media.held_by();
        let music = match (holds, held_by) {
            (true, None) => Some(self.media.music(self.moh_class())?),
            (false, None) => return None,
            _ => None,
        };
        let answer = match self.media.answer_here(which, body).await {
            Ok(sdp) => sdp,
            Err(failure) => return Some(failure.response(tx, &self.inner.config.domain)),
        };
        match (music, holds, held_by) {
            (Some(music), _, _) => {
                self.note(|| {
                    format!(
                        "{which:?} holds: music on hold \"{}\" to the other side",
                        self.moh_class()
                    )
                });
                self.media.hold(which, music).await;
            }
            (None, false, Some(holder)) if holder == which => {
                self.note(|| format!("{which:?} resumes: bridged again"));
                self.media.unhold().await;
            }
            _ => {}
        }
        let mut r = tx.response(200);
        r.headers.push(HeaderName::Contact, contact);
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = answer;
        Some(r)
    }

    /// The other side answered a re-INVITE we passed on: the asker gets
    /// our answer to its offer (or the other side's refusal).
    pub(super) async fn on_reinvite_answered(
        &mut self,
        from: Side,
        tx: InviteTx,
        response: Option<Box<Response>>,
    ) {
        self.reinvite_pending = false;
        let which = if from == Side::Inbound {
            Which::A
        } else {
            Which::B
        };
        let own_contact = match which {
            Which::A => Some(self.a.leg.contact.clone()),
            Which::B => self.phase.bridge().map(|b| b.leg.contact.clone()),
        }
        .unwrap_or_default();
        let r = match response {
            Some(r) if r.status < 300 && !self.phase.is_ended() => {
                match self.media.reanswer(which, &r.body).await {
                    Ok(sdp) => {
                        let mut out = tx.response(200);
                        out.headers.push(HeaderName::Contact, own_contact);
                        out.headers.push(HeaderName::ContentType, "application/sdp");
                        out.body = sdp;
                        out
                    }
                    Err(failure) => failure.response(&tx, &self.inner.config.domain),
                }
            }
            Some(r) => {
                self.media.reoffer_failed(which);
                tx.response(if self.phase.is_ended() { 481 } else { r.status })
            }
            None => {
                self.media.reoffer_failed(which);
                tx.response(408)
            }
        };
        self.respond_reinvite(from, tx, r);
    }
}

// Our 2xx to a re-INVITE until its ACK, and the dialogs' bookkeeping
// (which leg a request is from, its CSeq, the hold it asks for).
impl Call {
    /// Answers a re-INVITE from `from`; a 2xx over UDP is kept and sent
    /// again until its ACK.
    fn respond_reinvite(&mut self, from: Side, mut tx: InviteTx, r: Response) {
        tx.respond(r.clone());
        let leg = match from {
            Side::Inbound => Some(&mut self.a.leg),
            Side::Outbound(_) => self.phase.bridge_mut().map(|b| &mut b.leg),
        };
        if let Some(leg) = leg {
            leg.keep_ok(tx.ok_resender(), &r, false);
        }
    }

    /// The leg a request came from: the bridged party's, or else the
    /// caller's.
    fn leg_mut(&mut self, from_bridge: bool) -> Option<&mut SipLeg> {
        if from_bridge {
            self.phase.bridge_mut().map(|b| &mut b.leg)
        } else {
            Some(&mut self.a.leg)
        }
    }

    /// §12.2.2: whether a request from that leg belongs to its dialog and
    /// is in order (recording its CSeq); the refusal status otherwise.
    fn admit(&mut self, from_bridge: bool, request: &Request) -> Result<(), u16> {
        self.leg_mut(from_bridge)
            .map_or(Err(481), |leg| leg.admit(request))
    }

    /// A new offer from one side (re-INVITE, UPDATE): notes whether it
    /// puts the call on hold, for the admin API.
    fn note_hold(&mut self, from_bridge: bool, offer: &[u8]) {
        let Some(held) = crate::leg::offers_hold(offer) else {
            return;
        };
        if let Some(leg) = self.leg_mut(from_bridge)
            && leg.held != held
        {
            leg.held = held;
            self.publish();
        }
    }
}

/// Our answer to a re-INVITE that meets one of ours in the same dialog
/// (RFC 3261 §14.2): 491, to be tried again after a random wait.
pub(crate) fn glare(tx: &InviteTx) -> Response {
    let mut r = tx.response(491);
    r.headers.push(HeaderName::RetryAfter, "1");
    r
}

/// The keypress an INFO carries: `application/dtmf-relay` (`Signal=5`,
/// the Cisco format most phones send) or `application/dtmf` (`5`). Some
/// phones send `10` and `11` for `*` and `#`.
pub(crate) fn info_digit(request: &Request) -> Option<rtp::Digit> {
    let content_type = request.headers.content_type()?.trim().to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let value = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match value {
        "10" => rtp::Digit::from_char('*').ok(),
        "11" => rtp::Digit::from_char('#').ok(),
        v if v.chars().count() == 1 => rtp::Digit::from_char(v.chars().next()?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match sip_proto::Message::parse(text.as_bytes(), &sip_proto::Limits::default()).unwrap() {
            sip_proto::Message::Request(r) => r,
            sip_proto::Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn info_digits_in_both_formats() {
        let d = |ct: &str, body: &str| info_digit(&info(ct, body)).map(|d| d.as_char());
        assert_eq!(
            d("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(d("application/dtmf-relay", "signal= #\r\n"), Some('#'));
        assert_eq!(d("application/dtmf-relay", "Signal=11\r\n"), Some('#'));
        assert_eq!(d("application/dtmf-relay", "Signal=10\r\n"), Some('*'));
        assert_eq!(d("application/dtmf", "7"), Some('7'));
        assert_eq!(d("application/dtmf-relay", "Signal=X\r\n"), None);
        assert_eq!(d("application/dtmf-relay", "Duration=160\r\n"), None);
        assert_eq!(d("text/plain", "5"), None);
    }
}
