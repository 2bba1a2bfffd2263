//! A desk phone for call tests: a [`Ua`] that registers as an extension,
//! places calls (answering the 407 challenge, RFC 3261 §22.3), answers
//! calls, and speaks just enough dialog (RFC 3261 §12, §13, §15, §9) to
//! ACK, BYE and CANCEL. Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_proto::{HeaderName, Message, Request, Response};

use crate::ua::{Ua, UaError, challenges};

/// A small SDP offer/answer body for tests (RFC 4566 shape).
pub fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=test 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// A call this phone placed.
#[derive(Debug, Clone)]
pub struct OutCall {
    /// The Request-URI dialled.
    pub uri: String,
    /// Call-ID.
    pub call_id: String,
    /// Our From header value, with our tag.
    pub from: String,
    /// The To header value as sent (no tag).
    pub to: String,
    /// CSeq number of the INVITE.
    pub cseq: u32,
    /// Top Via of the (last) INVITE, for CANCEL.
    pub via: String,
    /// The SDP we offered.
    pub offer: String,
}

/// A call this phone received (an INVITE), with the To tag it answers with.
#[derive(Debug, Clone)]
pub struct InCall {
    /// The INVITE.
    pub invite: Request,
    /// Our To tag.
    pub tag: String,
}

/// An established dialog (after a 2xx), enough to send ACK and BYE.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our party (From in our requests), with tag.
    pub local: String,
    /// Their party (To in our requests), with tag.
    pub remote: String,
    /// Where our requests go (their Contact).
    pub target: String,
    /// Our last CSeq.
    pub cseq: u32,
}

/// A registered extension's phone.
pub struct Phone {
    /// The UA underneath (for raw sends).
    pub ua: Ua,
    /// Extension id.
    pub user: String,
    password: String,
    domain: String,
    /// A response read early (while looking for a 407), handed out next.
    pending: Option<Response>,
    /// The call placed last: responses to other calls (retransmissions of
    /// an earlier final answer) are skipped, and its non-2xx final answer
    /// is ACKed as a phone does (RFC 3261 §17.1.1.3).
    current: Option<OutCall>,
}

impl Phone {
    /// A phone on UDP for `user` talking to `server`.
    pub fn udp(server: SocketAddr, user: &str, password: &str, domain: &str) -> Phone {
        Phone {
            ua: Ua::udp(server).expect("UDP socket for a test phone"),
            user: user.to_owned(),
            password: password.to_owned(),
            domain: domain.to_owned(),
            pending: None,
            current: None,
        }
    }

    /// A phone on UDP whose socket is bound on `ip` (127.0.0.2, say: a
    /// phone on another host, or one whose address changed).
    pub fn udp_from(
        server: SocketAddr,
        ip: std::net::IpAddr,
        user: &str,
        password: &str,
        domain: &str,
    ) -> Phone {
        Phone {
            ua: Ua::udp_from(server, ip).expect("UDP socket for a test phone"),
            user: user.to_owned(),
            password: password.to_owned(),
            domain: domain.to_owned(),
            pending: None,
            current: None,
        }
    }

    /// A phone on TCP.
    pub fn tcp(server: SocketAddr, user: &str, password: &str, domain: &str) -> Phone {
        Phone {
            ua: Ua::tcp(server).expect("TCP connection for a test phone"),
            user: user.to_owned(),
            password: password.to_owned(),
            domain: domain.to_owned(),
            pending: None,
            current: None,
        }
    }

    /// Registers for an hour; the final status.
    pub fn register(&mut self) -> u16 {
        let req = self.ua.register_request(&self.user, &self.domain, 3600);
        self.ua
            .transact_authenticated(&req, &self.user, &self.password)
            .map_or(0, |r| r.status)
    }

    /// Places a call to `dest` (a number at our domain): sends the INVITE,
    /// answers the 407 with credentials (ACKing the 407), and returns once
    /// the authenticated INVITE is sent. Read its responses with
    /// [`response`](Self::response).
    pub fn call(&mut self, dest: &str) -> Result<OutCall, UaError> {
        self.call_with(dest, &[])
    }

    /// As [`call`](Self::call), with extra headers.
    pub fn call_with(&mut self, dest: &str, extra: &[(&str, &str)]) -> Result<OutCall, UaError> {
        self.call_sdp(dest, extra, &sdp("127.0.0.1", 40_000))
    }

    /// As [`call_with`](Self::call_with), offering `offer` (an SDP body, for
    /// instance [`RtpPeer::sdp_offer`](crate::RtpPeer::sdp_offer)) instead
    /// of the fixed test SDP. The answer is the body of the 2xx that
    /// [`final_response`](Self::final_response) returns.
    pub fn call_sdp(
        &mut self,
        dest: &str,
        extra: &[(&str, &str)],
        offer: &str,
    ) -> Result<OutCall, UaError> {
        let uri = format!("sip:{dest}@{}", self.domain);
        let offer = offer.to_owned();
        let from = format!(
            "\"Phone {}\" <sip:{}@{}>;tag={:08x}",
            self.user,
            self.user,
            self.domain,
            rand::random::<u32>()
        );
        let mut req = self
            .ua
            .request("INVITE", &uri)
            .header("From", &from)
            .header(
                "Contact",
                &format!("<sip:{}@{}>", self.user, self.ua.local_addr()),
            )
            .body("application/sdp", offer.as_bytes());
        for (n, v) in extra {
            req = req.header(n, v);
        }
        self.ua.send(req.build().as_bytes())?;
        let first = self.final_or_407(Duration::from_secs(5))?;
        let call_id = req.get("Call-ID").unwrap_or_default().to_owned();
        let to = req.get("To").unwrap_or_default().to_owned();
        let mut sent = req.clone();
        if let Some(first) = first {
            // ACK the 407 (same branch, To with its tag), then retry with
            // credentials and the next CSeq.
            let ack_cseq = req
                .get("CSeq")
                .unwrap_or("1 INVITE")
                .replace("INVITE", "ACK");
            let ack = req
                .clone()
                .with_method("ACK")
                .header("CSeq", &ack_cseq)
                .header("To", first.headers.get(&HeaderName::To).unwrap_or_default())
                .body("", b"")
                .without("Content-Type");
            self.ua.send(ack.build().as_bytes())?;
            let challenge = challenges(&first)
                .into_iter()
                .next()
                .ok_or(UaError::Timeout)?;
            let mut retry = self
                .ua
                .authorized(&req, &challenge, &self.user, &self.password, 1);
            let auth = retry.get("Authorization").unwrap_or_default().to_owned();
            retry = retry
                .without("Authorization")
                .header("Proxy-Authorization", &auth);
            self.ua.send(retry.build().as_bytes())?;
            sent = retry;
        }
        let cseq = sent
            .get("CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let call = OutCall {
            uri,
            call_id,
            from,
            to,
            cseq,
            via: sent.get("Via").unwrap_or_default().to_owned(),
            offer,
        };
        self.current = Some(call.clone());
        Ok(call)
    }

    /// Waits for a 407 (returned) or for the first non-100 response (left
    /// for later: `None`; the INVITE went through without a challenge).
    fn final_or_407(&mut self, timeout: Duration) -> Result<Option<Response>, UaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.ua.recv_response(left)?;
            match r.status {
                100 => continue,
                407 => return Ok(Some(r)),
                _ => {
                    self.pending = Some(r);
                    return Ok(None);
                }
            }
        }
    }

    /// The next response (skipping 100 Trying), waiting at most `timeout`.
    pub fn response(&mut self, timeout: Duration) -> Result<Response, UaError> {
        if let Some(r) = self.pending.take() {
            return Ok(r);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.ua.recv_response(left)?;
            if r.status != 100 {
                return Ok(r);
            }
        }
    }

    /// Reads responses to the call placed last until a final one, ACKs it
    /// if it is not a 2xx, and returns it (provisionals seen are in the
    /// second element).
    pub fn final_response(&mut self, timeout: Duration) -> Result<(Response, Vec<u16>), UaError> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.response(left)?;
            if let Some(call) = &self.current
                && (r.call_id() != Some(call.call_id.as_str())
                    || r.cseq().is_none_or(|c| c.seq != call.cseq))
            {
                continue;
            }
            if r.status >= 300
                && let Some(call) = self.current.clone()
            {
                self.ack_failure(&call, &r)?;
            }
            if r.status >= 200 {
                return Ok((r, seen));
            }
            seen.push(r.status);
        }
    }

    /// The ACK for a non-2xx final answer to our INVITE: same branch and
    /// CSeq number, To of the answer.
    fn ack_failure(&mut self, call: &OutCall, r: &Response) -> Result<(), UaError> {
        let text = format!(
            "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} ACK\r\nContent-Length: 0\r\n\r\n",
            uri = call.uri,
            via = call.via,
            from = call.from,
            to = r.headers.get(&HeaderName::To).unwrap_or_default(),
            cid = call.call_id,
            seq = call.cseq
        );
        self.ua.send(text.as_bytes())
    }

    /// ACKs a 2xx to our INVITE and returns the dialog (§13.2.2.4: a new
    /// transaction to the Contact of the 2xx).
    pub fn ack(&mut self, call: &OutCall, ok: &Response) -> Result<Dialog, UaError> {
        self.ack_sdp(call, ok, "")
    }

    /// As [`ack`](Self::ack), carrying `sdp` (none when empty): the answer
    /// to an offer the 2xx made (an INVITE sent without SDP, RFC 3261
    /// §13.2.1).
    pub fn ack_sdp(&mut self, call: &OutCall, ok: &Response, sdp: &str) -> Result<Dialog, UaError> {
        let remote = ok
            .headers
            .get(&HeaderName::To)
            .unwrap_or_default()
            .to_owned();
        let target = contact_of(&ok.headers).unwrap_or_else(|| call.uri.clone());
        let dialog = Dialog {
            call_id: call.call_id.clone(),
            local: call.from.clone(),
            remote,
            target,
            cseq: call.cseq,
        };
        let mut ack = self.in_dialog(&dialog, "ACK", call.cseq);
        if !sdp.is_empty() {
            ack = ack.replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                ),
            );
        }
        self.ua.send(ack.as_bytes())?;
        Ok(dialog)
    }

    /// Sends CANCEL for a call still ringing (§9.1: same branch and CSeq
    /// number as the INVITE).
    pub fn cancel(&mut self, call: &OutCall) -> Result<(), UaError> {
        let text = format!(
            "CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} CANCEL\r\nContent-Length: 0\r\n\r\n",
            uri = call.uri,
            via = call.via,
            from = call.from,
            to = call.to,
            cid = call.call_id,
            seq = call.cseq
        );
        self.ua.send(text.as_bytes())
    }

    /// Sends a request in `dialog` with the next CSeq and waits for its
    /// final response (skipping anything else that arrives meanwhile).
    pub fn request_in(
        &mut self,
        dialog: &mut Dialog,
        method: &str,
        body: Option<&str>,
    ) -> Result<Response, UaError> {
        let body = body.map(|b| ("application/sdp", b));
        self.request_in_with(dialog, method, body)
    }

    /// As [`request_in`](Self::request_in), with a body of any
    /// `(content type, text)` (an INFO's `application/dtmf-relay`, say).
    pub fn request_in_with(
        &mut self,
        dialog: &mut Dialog,
        method: &str,
        body: Option<(&str, &str)>,
    ) -> Result<Response, UaError> {
        self.request_in_headers(dialog, method, &[], body)
    }

    /// As [`request_in_with`](Self::request_in_with), with extra headers
    /// (a REFER's `Refer-To`, say).
    pub fn request_in_headers(
        &mut self,
        dialog: &mut Dialog,
        method: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Result<Response, UaError> {
        dialog.cseq += 1;
        let mut text = self.in_dialog(dialog, method, dialog.cseq);
        for (name, value) in headers {
            text = text.replace(
                "Content-Length: 0\r\n",
                &format!("{name}: {value}\r\nContent-Length: 0\r\n"),
            );
        }
        if let Some((content_type, body)) = body {
            text = text.replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            );
        }
        self.send_in_dialog(&text, dialog.cseq)
    }

    /// As [`request_in`](Self::request_in) (no body), answering a 401/407
    /// with this phone's credentials, as a phone whose address changed
    /// during a call re-authenticates.
    pub fn request_in_authenticated(
        &mut self,
        dialog: &mut Dialog,
        method: &str,
    ) -> Result<Response, UaError> {
        let first = self.request_in(dialog, method, None)?;
        if first.status != 401 && first.status != 407 {
            return Ok(first);
        }
        let Some(challenge) = crate::ua::challenges(&first).into_iter().next() else {
            return Ok(first);
        };
        let header = if first.status == 407 {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let auth = challenge.answer(&self.user, &self.password, method, &dialog.target, 1);
        dialog.cseq += 1;
        let text = self.in_dialog(dialog, method, dialog.cseq).replace(
            "Content-Length: 0\r\n",
            &format!("{header}: {auth}\r\nContent-Length: 0\r\n"),
        );
        self.send_in_dialog(&text, dialog.cseq)
    }

    /// Sends an in-dialog request and waits for its final response.
    fn send_in_dialog(&mut self, text: &str, seq: u32) -> Result<Response, UaError> {
        self.ua.send(text.as_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ua.recv(left)? {
                Message::Response(r)
                    if r.status >= 200 && r.cseq().is_some_and(|c| c.seq == seq) =>
                {
                    return Ok(r);
                }
                _ => {}
            }
        }
    }

    /// ACKs the 2xx to our last re-INVITE in `dialog` (same CSeq number).
    pub fn ack_in(&mut self, dialog: &Dialog) -> Result<(), UaError> {
        let ack = self.in_dialog(dialog, "ACK", dialog.cseq);
        self.ua.send(ack.as_bytes())
    }

    fn in_dialog(&self, dialog: &Dialog, method: &str, seq: u32) -> String {
        let local = self.ua.local_addr();
        let transport = self.ua.transport();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{:016x};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} {method}\r\nContact: <sip:{user}@{local}>\r\nContent-Length: 0\r\n\r\n",
            rand::random::<u64>(),
            target = dialog.target,
            from = dialog.local,
            to = dialog.remote,
            cid = dialog.call_id,
            user = self.user,
        )
    }

    /// Waits for a request of `method` (answering nothing else; other
    /// requests and responses are skipped).
    pub fn request(&mut self, method: &str, timeout: Duration) -> Result<Request, UaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UaError::Timeout);
            }
            if let Message::Request(r) = self.ua.recv(left)?
                && r.method.as_str() == method
            {
                return Ok(r);
            }
        }
    }

    /// Waits for the next request, whatever its method (responses are
    /// skipped).
    pub fn request_any(&mut self, timeout: Duration) -> Result<Request, UaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UaError::Timeout);
            }
            if let Message::Request(r) = self.ua.recv(left)? {
                return Ok(r);
            }
        }
    }

    /// Waits for an INVITE.
    pub fn incoming(&mut self, timeout: Duration) -> Result<InCall, UaError> {
        let invite = self.request("INVITE", timeout)?;
        Ok(InCall {
            invite,
            tag: format!("{:08x}", rand::random::<u32>()),
        })
    }

    /// Answers `request` with `status` (our tag on the To of an INVITE's
    /// answers; Contact and an SDP answer on a 2xx to INVITE).
    pub fn reply(&mut self, request: &Request, tag: &str, status: u16) -> Result<(), UaError> {
        let answer = (200..300)
            .contains(&status)
            .then(|| sdp("127.0.0.1", 41_000));
        self.respond(request, tag, status, answer.as_deref())
    }

    /// As [`reply`](Self::reply), with `answer` (an SDP body, for instance
    /// [`RtpPeer::sdp_answer`](crate::RtpPeer::sdp_answer)) as the body of
    /// a 2xx to INVITE instead of the fixed test SDP, or of a 1xx (early
    /// media: a 183 with SDP, as phones and carriers send it). Other
    /// answers carry no body.
    pub fn reply_sdp(
        &mut self,
        request: &Request,
        tag: &str,
        status: u16,
        answer: &str,
    ) -> Result<(), UaError> {
        self.respond(request, tag, status, Some(answer))
    }

    fn respond(
        &mut self,
        request: &Request,
        tag: &str,
        status: u16,
        answer: Option<&str>,
    ) -> Result<(), UaError> {
        let mut text = format!("SIP/2.0 {status} {}\r\n", reason(status));
        for via in request.headers.get_all(&HeaderName::Via) {
            text.push_str(&format!("Via: {via}\r\n"));
        }
        let to = request.headers.get(&HeaderName::To).unwrap_or_default();
        let to = if status > 100 && !to.contains("tag=") {
            format!("{to};tag={tag}")
        } else {
            to.to_owned()
        };
        for (name, value) in [
            (
                "From",
                request.headers.get(&HeaderName::From).unwrap_or_default(),
            ),
            ("To", to.as_str()),
            ("Call-ID", request.call_id().unwrap_or_default()),
            (
                "CSeq",
                request.headers.get(&HeaderName::CSeq).unwrap_or_default(),
            ),
        ] {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        let is_invite = request.method.as_str() == "INVITE";
        // A 2xx carries the answer; a 1xx does when one is given (early
        // media: SIP phones and carriers send 183 with SDP).
        if let (true, true, Some(answer)) = (is_invite, (101..300).contains(&status), answer) {
            text.push_str(&format!(
                "Contact: <sip:{}@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
                self.user,
                self.ua.local_addr(),
                answer.len()
            ));
        } else {
            text.push_str("Content-Length: 0\r\n\r\n");
        }
        self.ua.send(text.as_bytes())
    }

    /// The dialog a 2xx we sent to `call` created (to BYE the caller).
    pub fn dialog_of(&self, call: &InCall) -> Dialog {
        let h = &call.invite.headers;
        let to = h.get(&HeaderName::To).unwrap_or_default();
        Dialog {
            call_id: call.invite.call_id().unwrap_or_default().to_owned(),
            local: format!("{to};tag={}", call.tag),
            remote: h.get(&HeaderName::From).unwrap_or_default().to_owned(),
            target: contact_of(h).unwrap_or_default(),
            cseq: 100,
        }
    }

    /// Reads nothing for `quiet`, or returns the first message that arrived.
    pub fn silence(&mut self, quiet: Duration) -> Option<Message> {
        self.ua.recv(quiet).ok()
    }
}

fn contact_of(headers: &sip_proto::Headers) -> Option<String> {
    match headers.contact().ok()? {
        sip_proto::header::Contact::Addrs(list) => list.first().map(|c| c.uri.to_string()),
        _ => None,
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        603 => "Decline",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    /// The value of header `name` in a message's text.
    fn header<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .unwrap_or_default()
    }

    fn body(text: &str) -> &str {
        text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// A fake server socket and a phone talking to it.
    fn pair() -> (UdpSocket, Phone) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let phone = Phone::udp(server.local_addr().unwrap(), "1001", "pw", "test.invalid");
        (server, phone)
    }

    #[test]
    fn call_sdp_offers_the_given_body_and_the_answer_is_in_the_200() {
        let (server, mut phone) = pair();
        let offer = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\n";
        let answer = "v=0\r\no=y 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\n";
        let fake = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
            let ok = format!(
                "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=srv\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:1002@127.0.0.1:9>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
                header(&invite, "Via"),
                header(&invite, "From"),
                header(&invite, "To"),
                header(&invite, "Call-ID"),
                header(&invite, "CSeq"),
                answer.len()
            );
            server.send_to(ok.as_bytes(), from).unwrap();
            invite
        });
        let call = phone.call_sdp("1002", &[("X-Test", "1")], offer).unwrap();
        assert_eq!(call.offer, offer);
        let (ok, _) = phone.final_response(Duration::from_secs(5)).unwrap();
        assert_eq!(ok.status, 200);
        assert_eq!(&ok.body[..], answer.as_bytes());
        let invite = fake.join().unwrap();
        assert_eq!(body(&invite), offer);
        assert_eq!(header(&invite, "Content-Type"), "application/sdp");
        assert_eq!(header(&invite, "X-Test"), "1");
    }

    #[test]
    fn reply_sdp_answers_with_the_given_body_and_reply_keeps_the_fixed_one() {
        let (server, mut phone) = pair();
        let to = phone.ua.local_addr();
        let invite = format!(
            "INVITE sip:1001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {srv};branch=z9hG4bKfake\r\nMax-Forwards: 70\r\nFrom: <sip:pbx@test.invalid>;tag=p\r\nTo: <sip:1001@test.invalid>\r\nCall-ID: fake-1\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@{srv}>\r\nContent-Length: 0\r\n\r\n",
            srv = server.local_addr().unwrap()
        );
        let mut buf = vec![0u8; 65_535];
        for (custom, want) in [
            (true, "m=audio 7000 RTP/AVP 0\r\n"),
            (false, "m=audio 41000 "),
        ] {
            server.send_to(invite.as_bytes(), to).unwrap();
            let incoming = phone.incoming(Duration::from_secs(5)).unwrap();
            let answer = "v=0\r\no=z 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
            if custom {
                phone
                    .reply_sdp(&incoming.invite, &incoming.tag, 200, answer)
                    .unwrap();
            } else {
                phone.reply(&incoming.invite, &incoming.tag, 200).unwrap();
            }
            let (n, _) = server.recv_from(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
            assert!(body(&text).contains(want), "{text}");
            assert_eq!(
                header(&text, "Content-Length"),
                body(&text).len().to_string()
            );
            assert!(header(&text, "To").ends_with(&format!(";tag={}", incoming.tag)));
            // A ringing answer: reply_sdp's carries the SDP (early media),
            // reply's none.
            if custom {
                phone
                    .reply_sdp(&incoming.invite, &incoming.tag, 183, answer)
                    .unwrap();
            } else {
                phone.reply(&incoming.invite, &incoming.tag, 180).unwrap();
            }
            let (n, _) = server.recv_from(&mut buf).unwrap();
            let ringing = body(&String::from_utf8_lossy(&buf[..n])).to_owned();
            assert_eq!(ringing.contains("m=audio 7000"), custom, "{ringing}");
        }
    }
}
