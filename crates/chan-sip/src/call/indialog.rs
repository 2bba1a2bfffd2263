//! Requests inside a call's dialogs (RFC 3261 §12.2.2): BYE, UPDATE and
//! INFO, and re-INVITEs (§14), each answered for its own side (RFC 3264
//! §8: media is anchored, so the other phone is not asked) with glare
//! (491) against our own; keypresses in INFO cross to the other side as it
//! negotiated them (RFC 4733 events or INFO).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use sip_net::{Incoming, InviteTx};
use sip_proto::{HeaderName, Method, Request, Response};
use tokio::sync::oneshot;

use super::Call;
use crate::anchor::{DigitTo, Failure, Which};
use crate::channel::{Changed, answer_offer};
use crate::leg::SipLeg;
use crate::relay::set_body;
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
                // A new offer in an UPDATE: answered for this side alone
                // (new address, codec, hold), as a re-INVITE's is.
                let which = if from_bridge { Which::B } else { Which::A };
                let (answer, changed) = self.answer_offer(which, &request.body);
                let r = match answer {
                    Ok(sdp) => Reply {
                        status: 200,
                        body: Some(("application/sdp".to_owned(), sdp)),
                        header: None,
                    },
                    Err(failure) => Reply::status(failure.status()),
                };
                let _ = reply.send(r);
                self.on_offer_changed(which, changed).await;
            }
            Method::Info => {
                let which = if from_bridge { Which::B } else { Which::A };
                let _ = reply.send(self.on_info(which, &request));
            }
            // A bare UPDATE (a session refresh, RFC 3311 §5.2) and the
            // rest are this dialog's alone: accepted here.
            _ => {
                let _ = reply.send(Reply::status(200));
            }
        }
    }

    /// An INFO from `from`'s phone: a keypress (DTMF in
    /// `application/dtmf-relay` or `application/dtmf`) goes to the other
    /// side as that side negotiated it (RFC 4733 events in its stream, or
    /// an INFO of ours), or to `read_digits` when nobody is bridged; an
    /// INFO without a body (a keep-alive) is accepted; another body is
    /// refused with 415 and the types we take (RFC 3261 §21.4.13). The
    /// phones are not each other's peers: media is anchored, and so are
    /// their in-dialog requests.
    fn on_info(&mut self, from: Which, request: &Request) -> Reply {
        match read_info(request) {
            Ok(Some((digit, duration))) => {
                if let DigitTo::Info(to) = self.media.signalled_digit(from, digit, duration) {
                    self.send_info_digit(to, digit, duration);
                }
                Reply::status(200)
            }
            Ok(None) => Reply::status(200),
            Err(refused) => refused,
        }
    }

    /// Sends `digit` to `to`'s phone in an INFO (`application/dtmf-relay`),
    /// for a phone that negotiated no RFC 4733 events.
    pub(super) fn send_info_digit(&mut self, to: Which, digit: rtp::Digit, duration: Duration) {
        let leg = match to {
            Which::A => Some(&mut self.a.leg),
            Which::B => self.phase.bridge_mut().map(|b| &mut b.leg),
        };
        let Some(leg) = leg.filter(|leg| leg.state == LegState::Up) else {
            return;
        };
        let mut info = leg.dialog.request(Method::Info, None, None);
        let body = format!(
            "Signal={}\r\nDuration={}\r\n",
            digit.as_char(),
            duration.as_millis()
        );
        set_body(
            &mut info.headers,
            &mut info.body,
            Some(("application/dtmf-relay".to_owned(), body.into())),
        );
        // A phone pressing keys faster than the other answers INFO (or one
        // that never answers: 32 s each) must not grow the call's tasks
        // without bound: beyond a few unanswered, keypresses are dropped.
        let in_flight = self.info_in_flight.get_or_insert_with(Default::default);
        if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_INFO_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(digit = %digit, "keypress dropped: {MAX_INFO_IN_FLIGHT} INFOs unanswered");
            return;
        }
        let in_flight = in_flight.clone();
        let sent = leg.send(info);
        tokio::spawn(async move {
            let _ = sent.await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
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
        // Answered here, for this side alone: media is anchored, so the
        // other phone is not asked. An offerless re-INVITE gets our
        // description as the offer (its answer comes in the ACK).
        let (answer, changed) = self.answer_offer(which, &incoming.request.body);
        let r = match answer {
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
        self.on_offer_changed(which, changed).await;
    }

    /// A new offer from `which`'s phone answered against its own media
    /// (`channel::answer_offer`, as a `SipChannel` answers its own).
    fn answer_offer(&mut self, which: Which, body: &[u8]) -> (Result<Bytes, Failure>, Changed) {
        let leg = match which {
            Which::A => Some(&mut self.a.leg),
            Which::B => self.phase.bridge_mut().map(|b| &mut b.leg),
        };
        match leg {
            Some(leg) => answer_offer(leg, self.media.side_mut(which), body),
            None => (
                Err(Failure::NotAcceptable("no such party".into())),
                Changed::default(),
            ),
        }
    }

    /// What a phone's new offer changed, for the call's media. Hold with
    /// music (the way Asterisk and FreeSWITCH do it): a phone that holds
    /// (`sendonly`/`inactive`) while the other is up, and nobody holds
    /// yet, makes the other side hear the call's music on hold instead of
    /// silence, with no re-INVITE of its own; its resume joins them again.
    /// With no music class, the bridge goes on relaying what the holder
    /// sends (its own music, if it plays any). A new codec restarts what
    /// runs on the legs (the bridge transcodes if the sides now differ).
    async fn on_offer_changed(&mut self, which: Which, changed: Changed) {
        let mut restarted = false;
        if let Some(held) = changed.hold {
            self.publish();
            let other_up = match which {
                Which::A => self
                    .phase
                    .bridge()
                    .is_some_and(|b| b.leg.state == LegState::Up),
                Which::B => self.a.leg.state == LegState::Up,
            };
            match (held, self.media.held_by()) {
                (true, None) if other_up => {
                    if let Some(music) = self.media.music(self.moh_class()) {
                        self.note(|| {
                            format!(
                                "{which:?} holds: music on hold \"{}\" to the other side",
                                self.moh_class()
                            )
                        });
                        self.media.hold(which, music).await;
                        restarted = true;
                    }
                }
                (false, Some(holder)) if holder == which => {
                    self.note(|| format!("{which:?} resumes: bridged again"));
                    self.media.unhold().await;
                    restarted = true;
                }
                _ => {}
            }
        }
        if changed.restart && !restarted {
            self.media.restart().await;
        }
    }
}

// Our 2xx to a re-INVITE until its ACK, and the dialogs' bookkeeping
// (which leg a request is from, its CSeq).
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
}

/// Our answer to a re-INVITE that meets one of ours in the same dialog
/// (RFC 3261 §14.2): 491, to be tried again after a random wait.
pub(crate) fn glare(tx: &InviteTx) -> Response {
    let mut r = tx.response(491);
    r.headers.push(HeaderName::RetryAfter, "1");
    r
}

/// Keypresses sent in INFO to one call's parties and not yet answered,
/// beyond which more are dropped.
const MAX_INFO_IN_FLIGHT: u8 = 8;

/// The INFO bodies we take: keypresses.
const DTMF_TYPES: &str = "application/dtmf-relay, application/dtmf";

/// How long a keypress lasts when its INFO does not say (`Duration=`, in
/// milliseconds, as most phones send).
pub(super) const INFO_DIGIT_DEFAULT: Duration = Duration::from_millis(160);

/// What an INFO carries: a keypress and how long it lasts, nothing (a
/// keep-alive, accepted), or a body that is no keypress, refused with 415
/// and the types we take (RFC 3261 §21.4.13).
pub(crate) fn read_info(request: &Request) -> Result<Option<(rtp::Digit, Duration)>, Reply> {
    if request.body.is_empty() {
        return Ok(None);
    }
    match info_digit(request) {
        Some(digit) => Ok(Some((digit, info_duration(request)))),
        None => Err(Reply::status(415).with_header(HeaderName::Accept, DTMF_TYPES)),
    }
}

/// How long the keypress of an INFO lasts: its `Duration` field, else
/// 160 ms.
fn info_duration(request: &Request) -> Duration {
    std::str::from_utf8(&request.body)
        .ok()
        .and_then(|body| {
            body.lines().find_map(|line| {
                let (key, value) = line.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("duration")
                    .then(|| value.trim().parse::<u64>().ok())?
            })
        })
        .map_or(INFO_DIGIT_DEFAULT, Duration::from_millis)
}

/// The keypress an INFO carries: `application/dtmf-relay` (`Signal=5`,
/// the Cisco format most phones send) or `application/dtmf` (`5`). Some
/// phones send `10` and `11` for `*` and `#`.
fn info_digit(request: &Request) -> Option<rtp::Digit> {
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

    #[test]
    fn info_durations_default_to_160_ms() {
        let ms = |body: &str| info_duration(&info("application/dtmf-relay", body)).as_millis();
        assert_eq!(ms("Signal=5\r\nDuration=250\r\n"), 250);
        assert_eq!(ms("Signal=5\r\nduration = 90\r\n"), 90);
        assert_eq!(ms("Signal=5\r\n"), 160);
        assert_eq!(ms("Signal=5\r\nDuration=long\r\n"), 160);
    }
}
