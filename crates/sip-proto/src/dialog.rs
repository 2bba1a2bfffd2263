//! Dialogs (RFC 3261 §12) and the UAS's 2xx retransmission until its ACK
//! (§13.3.1.4), sans-IO like the transaction machines: no sockets, no
//! clock, no randomness. A UA builds a [`Dialog`] from the INVITE and the
//! tag it answers with ([`Dialog::uas`], §12.1.1) or from the INVITE it
//! sent and the 2xx that answered it ([`Dialog::uac`], §12.1.2), matches
//! requests to it ([`Dialog::matches`], §12.2.2), checks their CSeq
//! ([`Dialog::accept_remote_cseq`]), follows target refreshes
//! ([`Dialog::refresh_target`], §12.2) and builds its own requests
//! ([`Dialog::request`], §12.2.1.1). Where requests go on the wire
//! (transport, the peer's source address for a phone behind NAT) is the
//! caller's business.
//!
//! [`OkRetransmit`] is the schedule of §13.3.1.4: a UAS that sent a 2xx to
//! an INVITE over an unreliable transport sends it again at T1, 2·T1, ...
//! capped at T2, until the ACK arrives or 64·T1 has passed, when the dialog
//! is over (the UA sends BYE).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::header::{Contact, NameAddr, split_list};
use crate::{Error, HeaderName, Headers, Method, Request, Response, Uri};

/// One dialog as one of its two parties keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dialog {
    /// The Call-ID shared by every request in the dialog.
    pub call_id: String,
    /// Our party's header value, with our tag (From in our requests).
    pub local: String,
    /// The peer's header value, with its tag (To in our requests).
    pub remote: String,
    /// Our tag: a request in this dialog carries it in To (§12.2.2).
    pub local_tag: String,
    /// The peer's tag (absent only for an RFC 2543 peer that sent none).
    pub remote_tag: Option<String>,
    /// The peer's Contact URI: the Request-URI of our requests.
    pub remote_target: Uri,
    /// Route headers for our requests, in order.
    pub route_set: Vec<String>,
    /// The CSeq number of our last request.
    pub local_cseq: u32,
    /// The CSeq number of the peer's last request, if any.
    pub remote_cseq: Option<u32>,
}

impl Dialog {
    /// The UAS side, from the INVITE we received and the To tag we answer
    /// with (§12.1.1). `first_cseq` is our first request's CSeq number less
    /// one (§8.1.1.5 asks for a value chosen at random below 2^31; the
    /// caller draws it). `None` when the INVITE lacks Call-ID, From or To.
    pub fn uas(invite: &Request, local_tag: &str, first_cseq: u32) -> Option<Dialog> {
        let call_id = invite.call_id()?.to_owned();
        let remote = invite.headers.get(&HeaderName::From)?.to_owned();
        let to = invite.headers.get(&HeaderName::To)?;
        Some(Dialog {
            call_id,
            local: format!("{to};tag={local_tag}"),
            remote,
            local_tag: local_tag.to_owned(),
            remote_tag: tag(invite.headers.from()),
            remote_target: contact_uri(&invite.headers).unwrap_or_else(|| invite.uri.clone()),
            route_set: record_route(&invite.headers),
            local_cseq: first_cseq,
            remote_cseq: invite.cseq().map(|c| c.seq),
        })
    }

    /// The UAC side, from the INVITE we sent and the 2xx (or 1xx with a To
    /// tag, for an early dialog) that answered it (§12.1.2: the route set is
    /// the Record-Route in reverse). `None` when the INVITE has no From tag
    /// or the messages lack Call-ID, From or To.
    pub fn uac(invite: &Request, response: &Response) -> Option<Dialog> {
        let mut route_set = record_route(&response.headers);
        route_set.reverse();
        Some(Dialog {
            call_id: invite.call_id()?.to_owned(),
            local: invite.headers.get(&HeaderName::From)?.to_owned(),
            remote: response.headers.get(&HeaderName::To)?.to_owned(),
            local_tag: tag(invite.headers.from())?,
            remote_tag: tag(response.headers.to()),
            remote_target: contact_uri(&response.headers).unwrap_or_else(|| invite.uri.clone()),
            route_set,
            local_cseq: invite.cseq().map_or(1, |c| c.seq),
            remote_cseq: None,
        })
    }

    /// A new request in the dialog (§12.2.1.1) with the next CSeq; an ACK
    /// repeats its INVITE's number: pass it as `ack_seq`.
    pub fn request(
        &mut self,
        method: Method,
        contact: Option<&str>,
        ack_seq: Option<u32>,
    ) -> Request {
        let seq = match ack_seq {
            Some(seq) => seq,
            None => {
                self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
                self.local_cseq
            }
        };
        let mut headers = Headers::with_capacity(10);
        for route in &self.route_set {
            headers.push(HeaderName::Route, route.as_str());
        }
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(HeaderName::From, self.local.as_str());
        headers.push(HeaderName::To, self.remote.as_str());
        headers.push(HeaderName::CallId, self.call_id.as_str());
        headers.push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
        if let Some(contact) = contact {
            headers.push(HeaderName::Contact, contact);
        }
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Whether `request` belongs to this dialog: our tag in its To and the
    /// peer's in its From (§12.2.2; the Call-ID alone is guessable).
    pub fn matches(&self, request: &Request) -> bool {
        request.call_id() == Some(self.call_id.as_str())
            && tag(request.headers.to()).as_deref() == Some(self.local_tag.as_str())
            && tag(request.headers.from()) == self.remote_tag
    }

    /// Whether an in-dialog request's CSeq is new, recording it if so
    /// (§12.2.2: a lower or equal one is out of order and gets 500).
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_cseq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_cseq = Some(seq);
                true
            }
        }
    }

    /// A target refresh (§12.2: a re-INVITE or UPDATE from the peer, or our
    /// re-INVITE's 2xx): its Contact, if it has one, is the new remote
    /// target. Returns whether the target changed.
    pub fn refresh_target(&mut self, headers: &Headers) -> bool {
        match contact_uri(headers) {
            Some(uri) if uri != self.remote_target => {
                self.remote_target = uri;
                true
            }
            _ => false,
        }
    }
}

/// The tag of a From or To header, if it parsed and has one.
fn tag(party: Result<NameAddr, Error>) -> Option<String> {
    party.ok().and_then(|p| p.tag().map(str::to_owned))
}

/// Every Record-Route entry, in order.
fn record_route(headers: &Headers) -> Vec<String> {
    headers
        .get_all(&HeaderName::RecordRoute)
        .flat_map(split_list)
        .map(str::to_owned)
        .collect()
}

/// The URI of the first Contact, if any.
pub fn contact_uri(headers: &Headers) -> Option<Uri> {
    match headers.contact().ok()? {
        Contact::Addrs(list) => list.into_iter().next().map(|c| c.uri),
        _ => None,
    }
}

/// What the owner of an [`OkRetransmit`] does when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OkTimer {
    /// Send the 2xx again.
    Resend,
    /// 64·T1 passed without an ACK: the dialog is over (§13.3.1.4: send
    /// BYE). The schedule is finished.
    GiveUp,
    /// Not yet (the deadline has not passed, or the schedule is finished).
    Wait,
}

/// The schedule of a UAS's 2xx to an INVITE until its ACK (§13.3.1.4), for
/// an unreliable transport (over TCP the transport delivers the 2xx, so
/// no schedule is started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkRetransmit {
    next: Instant,
    interval: Duration,
    give_up: Instant,
    t2: Duration,
    done: bool,
}

impl OkRetransmit {
    /// Starts the schedule for a 2xx sent at `now`: again at `now + t1`,
    /// intervals doubling up to `t2`, giving up at `now + 64·t1`.
    pub fn start(now: Instant, t1: Duration, t2: Duration) -> OkRetransmit {
        OkRetransmit {
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
            t2,
            done: false,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to
    /// do; `None` once the ACK came or the schedule gave up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then(|| self.next.min(self.give_up))
    }

    /// The ACK arrived: nothing more to send.
    pub fn handle_ack(&mut self) {
        self.done = true;
    }

    /// Whether the schedule is over (ACKed or given up).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// What to do at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> OkTimer {
        if self.done {
            return OkTimer::Wait;
        }
        if now >= self.give_up {
            self.done = true;
            return OkTimer::GiveUp;
        }
        if now < self.next {
            return OkTimer::Wait;
        }
        self.interval = (self.interval * 2).min(self.t2.max(self.interval));
        self.next = now + self.interval;
        OkTimer::Resend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Message};

    fn parse(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r\n").as_bytes(), &Limits::default()).unwrap()
    }

    fn request(text: &str) -> Request {
        match parse(text) {
            Message::Request(r) => r,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    fn response(text: &str) -> Response {
        match parse(text) {
            Message::Response(r) => r,
            Message::Request(_) => panic!("expected a response"),
        }
    }

    const INVITE: &str = "INVITE sip:1002@pbx SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:1001@pbx>;tag=a\nTo: <sip:1002@pbx>\nCall-ID: c1\nCSeq: 7 INVITE\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\nContact: <sip:1001@10.0.0.1:5062>\nContent-Length: 0\n\n";

    #[test]
    fn uas_dialog_targets_the_contact_and_keeps_record_route() {
        let invite = request(INVITE);
        let mut d = Dialog::uas(&invite, "b", 100).unwrap();
        assert_eq!(d.route_set, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(d.remote_target.to_string(), "sip:1001@10.0.0.1:5062");
        assert!(!d.accept_remote_cseq(7), "the INVITE's own CSeq is not new");
        let mut bye = invite.clone();
        bye.headers.set(HeaderName::To, "<sip:1002@pbx>;tag=b");
        assert!(d.matches(&bye), "our tag in To, theirs in From");
        bye.headers.set(HeaderName::To, "<sip:1002@pbx>;tag=forged");
        assert!(!d.matches(&bye));
        bye.headers.set(HeaderName::To, "<sip:1002@pbx>;tag=b");
        bye.headers.set(HeaderName::CallId, "other");
        assert!(!d.matches(&bye), "same tags, another Call-ID");
        assert!(d.accept_remote_cseq(8));
        let bye = d.request(Method::Bye, None, None);
        assert_eq!(
            bye.headers.get(&HeaderName::From),
            Some("<sip:1002@pbx>;tag=b")
        );
        assert_eq!(
            bye.headers.get(&HeaderName::To),
            Some("<sip:1001@pbx>;tag=a")
        );
        assert_eq!(bye.uri.to_string(), "sip:1001@10.0.0.1:5062");
        assert_eq!(bye.cseq().unwrap().seq, 101);
        assert_eq!(d.request(Method::Info, None, None).cseq().unwrap().seq, 102);
    }

    #[test]
    fn uas_needs_the_identifying_headers() {
        let mut invite = request(INVITE);
        invite.headers.remove(&HeaderName::CallId);
        assert_eq!(Dialog::uas(&invite, "b", 1), None);
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_acks_with_the_invite_cseq() {
        let invite = request(
            "INVITE sip:1002@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\nFrom: <sip:1001@pbx>;tag=ours\nTo: <sip:1002@pbx>\nCall-ID: c2\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
        );
        let ok = response(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\nFrom: <sip:1001@pbx>;tag=ours\nTo: <sip:1002@pbx>;tag=theirs\nCall-ID: c2\nCSeq: 1 INVITE\nRecord-Route: <sip:p2;lr>\nRecord-Route: <sip:p1;lr>\nContact: <sip:1002@10.0.0.2:5070>\nContent-Length: 0\n\n",
        );
        let mut d = Dialog::uac(&invite, &ok).unwrap();
        assert_eq!(d.route_set, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        let ack = d.request(Method::Ack, None, Some(1));
        assert_eq!(ack.cseq().unwrap().seq, 1);
        assert_eq!(
            ack.headers.get(&HeaderName::To),
            Some("<sip:1002@pbx>;tag=theirs")
        );
        assert_eq!(ack.headers.get_all(&HeaderName::Route).count(), 2);
        assert_eq!(d.request(Method::Bye, None, None).cseq().unwrap().seq, 2);
    }

    #[test]
    fn a_refresh_moves_the_remote_target() {
        let mut d = Dialog::uas(&request(INVITE), "b", 1).unwrap();
        let reinvite = request(&INVITE.replace("10.0.0.1:5062", "10.0.0.7:5099"));
        assert!(d.refresh_target(&reinvite.headers));
        assert_eq!(d.remote_target.to_string(), "sip:1001@10.0.0.7:5099");
        assert!(!d.refresh_target(&reinvite.headers), "same Contact again");
        let no_contact = request(&INVITE.replace("Contact: <sip:1001@10.0.0.1:5062>\n", ""));
        assert!(!d.refresh_target(&no_contact.headers));
        assert_eq!(
            d.request(Method::Bye, None, None).uri.to_string(),
            "sip:1001@10.0.0.7:5099"
        );
    }

    const T1: Duration = Duration::from_millis(500);
    const T2: Duration = Duration::from_secs(4);

    #[test]
    fn ok_is_resent_at_doubling_intervals_capped_at_t2() {
        let start = Instant::now();
        let mut r = OkRetransmit::start(start, T1, T2);
        let mut sent_at = Vec::new();
        let mut now = start;
        loop {
            let at = r.poll_timeout().expect("scheduled until it gives up");
            assert!(at > now, "the deadline moves forward");
            now = at;
            match r.handle_timeout(now) {
                OkTimer::Resend => sent_at.push((now - start).as_millis()),
                OkTimer::GiveUp => break,
                OkTimer::Wait => panic!("woken at the deadline with nothing to do"),
            }
        }
        assert_eq!(
            sent_at,
            [
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(now - start, T1 * 64, "gives up at 64·T1");
        assert!(r.is_done());
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(now + T2), OkTimer::Wait);
    }

    #[test]
    fn the_ack_stops_the_schedule() {
        let start = Instant::now();
        let mut r = OkRetransmit::start(start, T1, T2);
        assert_eq!(
            r.handle_timeout(start + T1 / 2),
            OkTimer::Wait,
            "early wake-up"
        );
        assert_eq!(r.handle_timeout(start + T1), OkTimer::Resend);
        r.handle_ack();
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(
            r.handle_timeout(start + T1 * 64),
            OkTimer::Wait,
            "no give-up after the ACK"
        );
    }

    #[test]
    fn a_zero_t1_gives_up_at_once_instead_of_spinning() {
        let start = Instant::now();
        let mut r = OkRetransmit::start(start, Duration::ZERO, T2);
        assert_eq!(
            r.handle_timeout(start),
            OkTimer::GiveUp,
            "64·0 has passed at once"
        );
    }
}
