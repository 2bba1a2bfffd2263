//! A SIP dialog as one side of the B2BUA keeps it (RFC 3261 §12): Call-ID,
//! tags, the parties' header values, remote target, route set, CSeq
//! counters, and where its requests go; and the in-dialog requests built
//! from it (§12.2.1.1).

use std::net::SocketAddr;

use bytes::Bytes;
use sip_net::Transport;
use sip_proto::{HeaderName, Headers, Method, Request, Response, Uri};

/// One dialog.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub call_id: String,
    /// Our party's header value, with our tag (From in our requests).
    pub local: String,
    /// The peer's header value, with its tag (To in our requests).
    pub remote: String,
    /// Our tag and the peer's: a request in this dialog carries ours in To
    /// and theirs in From (§12.2.2).
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// The peer's Contact URI: the Request-URI of our requests.
    pub remote_target: Uri,
    /// Route headers for our requests, in order.
    pub route_set: Vec<String>,
    /// The CSeq number of our last request.
    pub local_cseq: u32,
    /// The CSeq number of the peer's last request, if any.
    pub remote_cseq: Option<u32>,
    /// Where our requests go: the address the peer's messages come from
    /// (a phone behind NAT is reached there, not at its private Contact).
    pub transport: Transport,
    pub peer: SocketAddr,
}

impl Dialog {
    /// The UAS side, from the INVITE we received and the To tag we answer
    /// with (§12.1.1).
    pub fn uas(
        invite: &Request,
        local_tag: &str,
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<Dialog> {
        let call_id = invite.call_id()?.to_owned();
        let remote = invite.headers.get(&HeaderName::From)?.to_owned();
        let to = invite.headers.get(&HeaderName::To)?;
        let local = format!("{to};tag={local_tag}");
        let remote_target = contact_uri(&invite.headers).unwrap_or_else(|| invite.uri.clone());
        let route_set = record_route(&invite.headers);
        let remote_tag = tag(invite.headers.from());
        Some(Dialog {
            call_id,
            local,
            remote,
            local_tag: local_tag.to_owned(),
            remote_tag,
            remote_target,
            route_set,
            local_cseq: rand::random::<u16>().into(),
            remote_cseq: invite.cseq().map(|c| c.seq),
            transport,
            peer,
        })
    }

    /// The UAC side, from the INVITE we sent and the 2xx that answered it
    /// (§12.1.2: the route set is the Record-Route in reverse).
    pub fn uac(
        invite: &Request,
        response: &Response,
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<Dialog> {
        let call_id = invite.call_id()?.to_owned();
        let local = invite.headers.get(&HeaderName::From)?.to_owned();
        let remote = response.headers.get(&HeaderName::To)?.to_owned();
        let remote_target = contact_uri(&response.headers).unwrap_or_else(|| invite.uri.clone());
        let mut route_set = record_route(&response.headers);
        route_set.reverse();
        let local_tag = tag(invite.headers.from())?;
        let remote_tag = tag(response.headers.to());
        Some(Dialog {
            call_id,
            local,
            remote,
            local_tag,
            remote_tag,
            remote_target,
            route_set,
            local_cseq: invite.cseq().map_or(1, |c| c.seq),
            remote_cseq: None,
            transport,
            peer,
        })
    }

    /// A new request in the dialog (§12.2.1.1), with the next CSeq (an ACK
    /// reuses the INVITE's number: pass `ack_seq`).
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

    /// Whether `request` belongs to this dialog: our tag in its To, the
    /// peer's in its From (§12.2.2; a Call-ID alone is guessable).
    pub fn matches(&self, request: &Request) -> bool {
        tag(request.headers.to()).as_deref() == Some(self.local_tag.as_str())
            && tag(request.headers.from()) == self.remote_tag
    }

    /// Whether an in-dialog request's CSeq is new (§12.2.2: a lower one is
    /// out of order and gets 500); records it.
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_cseq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_cseq = Some(seq);
                true
            }
        }
    }
}

/// The tag of a From or To header, if it parsed and has one.
fn tag(party: Result<sip_proto::header::NameAddr, sip_proto::Error>) -> Option<String> {
    party.ok().and_then(|p| p.tag().map(str::to_owned))
}

/// Every Record-Route entry, in order.
fn record_route(headers: &Headers) -> Vec<String> {
    headers
        .get_all(&HeaderName::RecordRoute)
        .flat_map(sip_proto::header::split_list)
        .map(str::to_owned)
        .collect()
}

/// The URI of the first Contact, if any.
pub(crate) fn contact_uri(headers: &Headers) -> Option<Uri> {
    let contact = headers.contact().ok()?;
    match contact {
        sip_proto::header::Contact::Addrs(list) => list.into_iter().next().map(|c| c.uri),
        _ => None,
    }
}

/// A tag for a header value we create (RFC 3261 §19.3).
pub(crate) fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_proto::{Limits, Message};

    fn parse(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r\n").as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn uas_dialog_targets_the_contact_and_keeps_record_route() {
        let Message::Request(invite) = parse(
            "INVITE sip:1002@pbx SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:1001@pbx>;tag=a\nTo: <sip:1002@pbx>\nCall-ID: c1\nCSeq: 7 INVITE\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\nContact: <sip:1001@10.0.0.1:5062>\nContent-Length: 0\n\n",
        ) else {
            panic!()
        };
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut d = Dialog::uas(&invite, "b", Transport::Udp, peer).unwrap();
        assert_eq!(d.route_set, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(d.remote_target.to_string(), "sip:1001@10.0.0.1:5062");
        assert!(!d.accept_remote_cseq(7));
        let mut bye = invite.clone();
        bye.headers.set(HeaderName::To, "<sip:1002@pbx>;tag=b");
        assert!(d.matches(&bye), "our tag in To, theirs in From");
        bye.headers.set(HeaderName::To, "<sip:1002@pbx>;tag=forged");
        assert!(!d.matches(&bye));
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
        let first = bye.cseq().unwrap().seq;
        let next = d.request(Method::Info, None, None).cseq().unwrap().seq;
        assert_eq!(next, first + 1);
    }

    #[test]
    fn uac_dialog_reverses_record_route() {
        let Message::Request(invite) = parse(
            "INVITE sip:1002@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\nFrom: <sip:1001@pbx>;tag=ours\nTo: <sip:1002@pbx>\nCall-ID: c2\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
        ) else {
            panic!()
        };
        let Message::Response(ok) = parse(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\nFrom: <sip:1001@pbx>;tag=ours\nTo: <sip:1002@pbx>;tag=theirs\nCall-ID: c2\nCSeq: 1 INVITE\nRecord-Route: <sip:p2;lr>\nRecord-Route: <sip:p1;lr>\nContact: <sip:1002@10.0.0.2:5070>\nContent-Length: 0\n\n",
        ) else {
            panic!()
        };
        let mut d = Dialog::uac(
            &invite,
            &ok,
            Transport::Udp,
            "10.0.0.2:5070".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(d.route_set, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        let ack = d.request(Method::Ack, None, Some(1));
        assert_eq!(ack.cseq().unwrap().seq, 1);
        assert_eq!(
            ack.headers.get(&HeaderName::To),
            Some("<sip:1002@pbx>;tag=theirs")
        );
        assert_eq!(d.request(Method::Bye, None, None).cseq().unwrap().seq, 2);
    }
}
