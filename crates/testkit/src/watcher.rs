//! A phone's subscriber side for tests (RFC 6665): raw SUBSCRIBEs with
//! digest, NOTIFYs answered and kept, for busy lamps, MWI and presence.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_proto::{HeaderName, Message, Request, Response};

use crate::{Ua, challenges};

/// How long a watcher waits for an answer or a NOTIFY.
const WAIT: Duration = Duration::from_secs(5);

/// A phone watching another extension: raw SUBSCRIBEs, NOTIFYs answered.
pub struct Watcher {
    /// Its socket.
    pub ua: Ua,
    user: String,
    tag: String,
    call_id: String,
    /// The To of our SUBSCRIBEs, with the notifier's tag once it answered.
    pub to: String,
    cseq: u32,
    /// NOTIFYs read while waiting for a response.
    notifies: Vec<Request>,
    domain: String,
}

impl Watcher {
    /// `user` of `domain` about to watch `target`, through `server`'s UDP.
    pub fn new(server: SocketAddr, domain: &str, user: &str, target: &str) -> Watcher {
        Watcher {
            ua: Ua::udp(server).expect("socket"),
            domain: domain.to_owned(),
            user: user.to_owned(),
            tag: format!("{:08x}", rand::random::<u32>()),
            call_id: format!("{:016x}@watcher", rand::random::<u64>()),
            to: format!("<sip:{target}@{domain}>"),
            cseq: 0,
            notifies: Vec::new(),
        }
    }

    /// The text of the next SUBSCRIBE for `event` with `expires`.
    pub fn subscribe_request(&mut self, event: &str, expires: u32) -> String {
        self.cseq += 1;
        let local = self.ua.local_addr();
        let uri = self
            .to
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default()
            .to_owned();
        format!(
            "SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{:016x};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} SUBSCRIBE\r\nContact: <sip:{user}@{local}>\r\nEvent: {event}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
            rand::random::<u64>(),
            user = self.user,
            tag = self.tag,
            to = self.to,
            cid = self.call_id,
            seq = self.cseq,
            domain = self.domain,
        )
    }

    /// Sends a SUBSCRIBE and returns its final response (NOTIFYs that
    /// arrive meanwhile are answered 200 and kept).
    pub fn send(&mut self, text: &str) -> Response {
        self.ua.send(text.as_bytes()).expect("send");
        let seq = self.cseq;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ua.recv(left).expect("an answer to SUBSCRIBE") {
                Message::Response(r)
                    if r.status >= 200 && r.cseq().is_some_and(|c| c.seq == seq) =>
                {
                    if r.status < 300
                        && let Some(to) = r.headers.get(&HeaderName::To)
                    {
                        self.to = to.to_owned();
                    }
                    return r;
                }
                Message::Request(n) if n.method.as_str() == "NOTIFY" => {
                    self.answer(&n, 200);
                    self.notifies.push(n);
                }
                _ => {}
            }
        }
    }

    /// SUBSCRIBE, answering the 407 with `password`.
    pub fn subscribe_as(&mut self, password: &str, event: &str, expires: u32) -> Response {
        let text = self.subscribe_request(event, expires);
        let first = self.send(&text);
        if first.status != 407 {
            return first;
        }
        let challenge = challenges(&first).into_iter().next().expect("a challenge");
        let uri = text.split(' ').nth(1).unwrap_or_default().to_owned();
        let auth = challenge.answer(&self.user, password, "SUBSCRIBE", &uri, 1);
        let retry = self.subscribe_request(event, expires).replace(
            "Content-Length: 0\r\n",
            &format!("Proxy-Authorization: {auth}\r\nContent-Length: 0\r\n"),
        );
        self.send(&retry)
    }

    /// SUBSCRIBE with the extension's test password (`pw-USER`).
    pub fn subscribe(&mut self, event: &str, expires: u32) -> Response {
        let password = format!("pw-{}", self.user);
        self.subscribe_as(&password, event, expires)
    }

    /// Answers `req` (a NOTIFY) with `status`.
    pub fn answer(&mut self, req: &Request, status: u16) {
        self.ua.respond(req, status).expect("send");
    }

    /// The next NOTIFY, answered with `status`.
    pub fn notify_answered(&mut self, status: u16) -> Request {
        if !self.notifies.is_empty() {
            return self.notifies.remove(0);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Message::Request(n) = self.ua.recv(left).expect("a NOTIFY")
                && n.method.as_str() == "NOTIFY"
            {
                self.answer(&n, status);
                return n;
            }
        }
    }

    /// The next NOTIFY, answered 200.
    pub fn notify(&mut self) -> Request {
        self.notify_answered(200)
    }
}
