//! The SIP side of the Switchboard run: one UDP socket that is both every
//! call's caller (a UAC that answers the 407 challenge with
//! Proxy-Authorization, RFC 3261 §22.3, and ACKs the 2xx, §13.2.2.4) and
//! every call's callee (a UAS answering the PBX's INVITE with 200 and an
//! SDP answer), run on its own thread so that in-dialog requests (BYE,
//! OPTIONS) are answered while the media runs.
//!
//! Call `i` dials `m<i>p<port>@domain`; the benchmark's Lua context turns
//! that into `sip:m<i>@127.0.0.1:<port>`, so the INVITE the callee gets
//! names its call in the Request-URI. Every Call-ID the caller makes
//! starts with `bm<i>-`.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sip_proto::digest::DigestAnswer;
use sip_proto::header::{Contact, HeaderName};
use sip_proto::{Limits, Message, Method, Request, Response};

use crate::sdp_text;

/// INVITE retransmissions (RFC 3261 T1 doubling), and when a call that
/// got no final answer is given up.
const T1: Duration = Duration::from_millis(500);
const SETUP_TIMEOUT: Duration = Duration::from_secs(16);
/// How long a teardown waits for the last BYE's answer.
const BYE_TIMEOUT: Duration = Duration::from_secs(8);
/// Most messages one `pump` handles before the caller sends again.
const PUMP_BATCH: usize = 64;
/// How long a `pump` waits for a message.
const READ_TIMEOUT: Duration = Duration::from_millis(2);

/// Who the callers are.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The PBX's SIP address.
    pub server: SocketAddr,
    /// The caller's extension.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The PBX's domain (digest realm).
    pub domain: String,
    /// Whether the PBX rings a callee back for each call (the media run);
    /// `false` when it answers the caller itself (the queue run).
    pub callee: bool,
}

/// Where a set-up call's RTP goes through the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Legs {
    /// The PBX's address in its 200 to the caller: the caller sends here.
    pub caller_to: SocketAddr,
    /// The PBX's address in its INVITE to the callee: the callee sends here.
    pub callee_to: SocketAddr,
}

/// One call to set up: its index and its two RTP sockets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewCall {
    /// The call's index.
    pub index: usize,
    /// The caller's RTP socket (offered).
    pub caller_media: SocketAddr,
    /// The callee's RTP socket (answered).
    pub callee_media: SocketAddr,
}

enum Command {
    Setup {
        calls: Vec<NewCall>,
        rate: f64,
        reply: Sender<Vec<Result<Legs, String>>>,
    },
    Teardown {
        rate: f64,
        reply: Sender<(usize, usize)>,
    },
    Quit,
}

/// The running agent.
pub(crate) struct Agent {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    /// Binds the signalling socket on 127.0.0.1 and starts the thread.
    pub(crate) fn start(account: Account) -> io::Result<Agent> {
        let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        let local = socket.local_addr()?;
        let (commands, rx) = mpsc::channel();
        let mut state = State {
            socket,
            local,
            account,
            uac: HashMap::new(),
            uas: HashMap::new(),
            uas_by_call_id: HashMap::new(),
            seed: u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15,
        };
        let thread = std::thread::Builder::new()
            .name("sip".into())
            .spawn(move || state.serve(&rx))?;
        Ok(Agent {
            commands,
            thread: Some(thread),
        })
    }

    /// Sets `calls` up at `rate` per second; per call its legs or why not.
    pub(crate) fn setup(
        &self,
        calls: Vec<NewCall>,
        rate: f64,
    ) -> io::Result<Vec<Result<Legs, String>>> {
        let (reply, rx) = mpsc::channel();
        self.commands
            .send(Command::Setup { calls, rate, reply })
            .map_err(|_| io::Error::other("SIP thread stopped"))?;
        rx.recv()
            .map_err(|_| io::Error::other("SIP thread stopped"))
    }

    /// BYE on every call that is up, at `rate` per second: (answered 2xx, not).
    pub(crate) fn teardown(&self, rate: f64) -> io::Result<(usize, usize)> {
        let (reply, rx) = mpsc::channel();
        self.commands
            .send(Command::Teardown { rate, reply })
            .map_err(|_| io::Error::other("SIP thread stopped"))?;
        rx.recv()
            .map_err(|_| io::Error::other("SIP thread stopped"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Quit);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, no provisional answer yet (retransmitted).
    Calling,
    /// A provisional answer came: no more retransmissions.
    Proceeding,
    Up,
    Failed(String),
    /// BYE sent.
    Leaving,
    Ended,
}

/// The caller's side of call `i`.
struct Uac {
    call_id: String,
    from: String,
    uri: String,
    offer: String,
    cseq: u32,
    /// The INVITE as last sent (retransmitted as is), and its Via.
    invite: String,
    via: String,
    authenticated: bool,
    phase: Phase,
    started: Instant,
    last_sent: Instant,
    interval: Duration,
    /// From the 2xx: To with the PBX's tag, its Contact, its SDP address.
    to: String,
    target: String,
    media: Option<SocketAddr>,
}

/// The callee's side of call `i`.
struct Uas {
    /// Its RTP socket's port, for the SDP answer.
    port: u16,
    /// The 200 we sent, for retransmitted INVITEs.
    answer: Option<String>,
    /// Where the PBX's INVITE asked RTP to go.
    media: Option<SocketAddr>,
}

struct State {
    socket: UdpSocket,
    local: SocketAddr,
    account: Account,
    uac: HashMap<usize, Uac>,
    uas: HashMap<usize, Uas>,
    uas_by_call_id: HashMap<String, usize>,
    seed: u64,
}

impl State {
    fn random(&mut self) -> u64 {
        // xorshift64*: tags and branches only need to be unique.
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn serve(&mut self, commands: &Receiver<Command>) {
        loop {
            match commands.try_recv() {
                Ok(Command::Setup { calls, rate, reply }) => {
                    let r = self.setup(&calls, rate);
                    let _ = reply.send(r);
                }
                Ok(Command::Teardown { rate, reply }) => {
                    let r = self.teardown(rate);
                    let _ = reply.send(r);
                }
                Ok(Command::Quit) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => self.pump(),
            }
        }
    }

    fn send(&self, text: &str, to: SocketAddr) {
        // A lost datagram is retransmitted (INVITE) or shows as a failed call.
        let _ = self.socket.send_to(text.as_bytes(), to);
    }

    /// Handles what arrives until the socket is quiet for one read timeout,
    /// at most [`PUMP_BATCH`] messages (so that sending goes on under load).
    fn pump(&mut self) {
        let mut buf = [0u8; 65_536];
        for _ in 0..PUMP_BATCH {
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
                // ICMP from an earlier send, or worse: try again next time.
                Err(_) => return,
            };
            let Ok(msg) = Message::parse(buf.get(..len).unwrap_or_default(), &Limits::default())
            else {
                continue;
            };
            match msg {
                Message::Request(r) => self.on_request(&r, from),
                Message::Response(r) => self.on_response(&r),
            }
        }
    }

    fn setup(&mut self, calls: &[NewCall], rate: f64) -> Vec<Result<Legs, String>> {
        let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let began = Instant::now();
        let mut next = 0usize;
        loop {
            while next < calls.len() && began + gap * next as u32 <= Instant::now() {
                self.invite(calls[next]);
                next += 1;
            }
            self.pump();
            self.retransmit();
            let settled = calls.iter().all(|c| {
                self.uac
                    .get(&c.index)
                    .is_some_and(|u| !matches!(u.phase, Phase::Calling | Phase::Proceeding))
            });
            if next == calls.len() && settled {
                break;
            }
        }
        calls
            .iter()
            .map(|c| {
                let uac = self.uac.get(&c.index).ok_or("never sent")?;
                match &uac.phase {
                    Phase::Up => {}
                    Phase::Failed(why) => return Err(why.clone()),
                    other => return Err(format!("{other:?}")),
                }
                let caller_to = uac.media.ok_or("the PBX's 200 named no RTP address")?;
                if !self.account.callee {
                    return Ok(Legs {
                        caller_to,
                        callee_to: caller_to,
                    });
                }
                let callee_to = self
                    .uas
                    .get(&c.index)
                    .and_then(|u| u.media)
                    .ok_or("the callee's INVITE named no RTP address")?;
                Ok(Legs {
                    caller_to,
                    callee_to,
                })
            })
            .collect()
    }

    fn invite(&mut self, call: NewCall) {
        let (a, b, c) = (self.random(), self.random(), self.random());
        let user = self.account.user.clone();
        let domain = self.account.domain.clone();
        let uri = format!("sip:m{}p{}@{domain}", call.index, self.local.port());
        let mut uac = Uac {
            call_id: format!("bm{}-{a:016x}@bench", call.index),
            from: format!("<sip:{user}@{domain}>;tag={b:08x}"),
            uri: uri.clone(),
            offer: sdp_text::pcmu(c, call.caller_media.port()),
            cseq: 1,
            invite: String::new(),
            via: String::new(),
            authenticated: false,
            phase: Phase::Calling,
            started: Instant::now(),
            last_sent: Instant::now(),
            interval: T1,
            to: format!("<{uri}>"),
            target: String::new(),
            media: None,
        };
        self.write_invite(&mut uac, None);
        self.send(&uac.invite, self.account.server);
        self.uac.insert(call.index, uac);
        // The callee's answer names its socket; kept until the INVITE comes.
        self.uas.insert(
            call.index,
            Uas {
                port: call.callee_media.port(),
                answer: None,
                media: None,
            },
        );
    }

    fn write_invite(&mut self, uac: &mut Uac, auth: Option<String>) {
        let branch = self.random();
        uac.via = format!(
            "SIP/2.0/UDP {};branch=z9hG4bK{branch:016x};rport",
            self.local
        );
        let auth = auth.map_or_else(String::new, |a| format!("Proxy-Authorization: {a}\r\n"));
        uac.invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: <{uri}>\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{user}@{local}>\r\n{auth}\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            uri = uac.uri,
            via = uac.via,
            from = uac.from,
            cid = uac.call_id,
            cseq = uac.cseq,
            user = self.account.user,
            local = self.local,
            len = uac.offer.len(),
            sdp = uac.offer,
        );
        uac.last_sent = Instant::now();
        uac.interval = T1;
    }

    fn retransmit(&mut self) {
        let now = Instant::now();
        let server = self.account.server;
        let mut resend = Vec::new();
        for uac in self.uac.values_mut() {
            if !matches!(uac.phase, Phase::Calling | Phase::Proceeding) {
                continue;
            }
            if now.duration_since(uac.started) > SETUP_TIMEOUT {
                uac.phase = Phase::Failed("no final answer in time".into());
            } else if uac.phase == Phase::Calling
                && now.duration_since(uac.last_sent) >= uac.interval
            {
                uac.last_sent = now;
                uac.interval = (uac.interval * 2).min(Duration::from_secs(4));
                resend.push(uac.invite.clone());
            }
        }
        for text in resend {
            self.send(&text, server);
        }
    }

    fn on_response(&mut self, r: &Response) {
        let Some(index) = r
            .call_id()
            .and_then(|c| c.strip_prefix("bm"))
            .and_then(|c| c.split('-').next())
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return;
        };
        let Some(cseq) = r.cseq() else { return };
        let Some(mut uac) = self.uac.remove(&index) else {
            return;
        };
        if cseq.method == Method::Invite && cseq.seq == uac.cseq {
            self.on_invite_response(&mut uac, r);
        } else if cseq.method == Method::Bye && r.status >= 200 && uac.phase == Phase::Leaving {
            uac.phase = if r.status < 300 {
                Phase::Ended
            } else {
                Phase::Failed(format!("BYE answered {}", r.status))
            };
        }
        self.uac.insert(index, uac);
    }

    fn on_invite_response(&mut self, uac: &mut Uac, r: &Response) {
        let to = r
            .headers
            .get(&HeaderName::To)
            .unwrap_or_default()
            .to_owned();
        match r.status {
            100..=199 => {
                if uac.phase == Phase::Calling {
                    uac.phase = Phase::Proceeding;
                }
            }
            200..=299 => {
                if matches!(uac.phase, Phase::Calling | Phase::Proceeding) {
                    uac.to = to;
                    uac.target = match r.headers.contact() {
                        Ok(Contact::Addrs(list)) if !list.is_empty() => list[0].uri.to_string(),
                        _ => uac.uri.clone(),
                    };
                    let body = String::from_utf8_lossy(&r.body);
                    uac.media = sdp_text::media_addr(&body, self.account.server.ip());
                    uac.phase = Phase::Up;
                }
                if matches!(uac.phase, Phase::Up) {
                    // ACK every 2xx, retransmissions included (§13.2.2.4).
                    let ack = self.in_dialog(uac, "ACK", uac.cseq);
                    self.send(&ack, self.account.server);
                }
            }
            407 | 401
                if !uac.authenticated
                    && matches!(uac.phase, Phase::Calling | Phase::Proceeding) =>
            {
                self.ack_failure(uac, &to);
                let challenge = if r.status == 407 {
                    r.headers.proxy_authenticate()
                } else {
                    r.headers.www_authenticate()
                };
                let Some(ch) = challenge.ok().and_then(|l| {
                    l.into_iter()
                        .find(|c| c.scheme.eq_ignore_ascii_case("Digest"))
                }) else {
                    uac.phase = Phase::Failed(format!("{} without a Digest challenge", r.status));
                    return;
                };
                let realm = ch.params.unquoted("realm").unwrap_or_default().into_owned();
                let nonce = ch.params.unquoted("nonce").unwrap_or_default().into_owned();
                let opaque = ch.params.unquoted("opaque").map(|o| o.into_owned());
                let algorithm = ch
                    .params
                    .unquoted("algorithm")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(sip_proto::digest::Algorithm::Md5);
                let cnonce = format!("{:08x}", self.random() as u32);
                let value = DigestAnswer {
                    algorithm,
                    username: &self.account.user,
                    password: &self.account.password,
                    realm: &realm,
                    nonce: &nonce,
                    method: "INVITE",
                    uri: &uac.uri,
                    nc: 1,
                    cnonce: &cnonce,
                    opaque: opaque.as_deref(),
                }
                .to_header_value();
                uac.cseq += 1;
                uac.authenticated = true;
                uac.phase = Phase::Calling;
                self.write_invite(uac, Some(value));
                if r.status == 401 {
                    // Authorization, not Proxy-Authorization, for a 401.
                    uac.invite = uac
                        .invite
                        .replacen("Proxy-Authorization:", "Authorization:", 1);
                }
                self.send(&uac.invite, self.account.server);
            }
            _ => {
                if matches!(uac.phase, Phase::Calling | Phase::Proceeding) {
                    self.ack_failure(uac, &to);
                    uac.phase = Phase::Failed(format!("{} {}", r.status, r.reason));
                } else {
                    self.ack_failure(uac, &to);
                }
            }
        }
    }

    /// The ACK of a non-2xx final answer: the INVITE's Via and CSeq number
    /// (§17.1.1.3).
    fn ack_failure(&self, uac: &Uac, to: &str) {
        let text = format!(
            "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            uri = uac.uri,
            via = uac.via,
            from = uac.from,
            cid = uac.call_id,
            cseq = uac.cseq,
        );
        self.send(&text, self.account.server);
    }

    fn in_dialog(&mut self, uac: &Uac, method: &str, cseq: u32) -> String {
        let branch = self.random();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch:016x};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            target = uac.target,
            local = self.local,
            from = uac.from,
            to = uac.to,
            cid = uac.call_id,
        )
    }

    fn on_request(&mut self, r: &Request, from: SocketAddr) {
        let call_id = r.call_id().unwrap_or_default().to_owned();
        match r.method {
            Method::Invite => {
                let index = r
                    .uri
                    .as_sip()
                    .and_then(|u| u.user.as_deref())
                    .and_then(|u| u.strip_prefix('m'))
                    .and_then(|i| i.parse::<usize>().ok());
                let Some(index) = index else {
                    let text = self.reply(r, 404, "Not Found", None);
                    self.send(&text, from);
                    return;
                };
                let Some(uas) = self.uas.get(&index) else {
                    let text = self.reply(r, 481, "Call Does Not Exist", None);
                    self.send(&text, from);
                    return;
                };
                if let Some(answer) = &uas.answer {
                    // A retransmission (or a re-INVITE): the same answer.
                    self.send(answer, from);
                    return;
                }
                let port = uas.port;
                let body = String::from_utf8_lossy(&r.body).into_owned();
                let media = sdp_text::media_addr(&body, from.ip());
                let session = self.random();
                let sdp = sdp_text::pcmu(session, port);
                let text = self.reply(r, 200, "OK", Some((index, &sdp)));
                self.send(&text, from);
                self.uas.insert(
                    index,
                    Uas {
                        port,
                        answer: Some(text),
                        media,
                    },
                );
                self.uas_by_call_id.insert(call_id, index);
            }
            Method::Ack => {}
            Method::Bye => {
                if let Some(index) = call_id
                    .strip_prefix("bm")
                    .and_then(|c| c.split('-').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    && let Some(uac) = self.uac.get_mut(&index)
                {
                    // The PBX hung up on the caller.
                    uac.phase = Phase::Failed("the PBX sent BYE".into());
                }
                self.uas_by_call_id.remove(&call_id);
                let text = self.reply(r, 200, "OK", None);
                self.send(&text, from);
            }
            _ => {
                let text = self.reply(r, 200, "OK", None);
                self.send(&text, from);
            }
        }
    }

    /// A response to `r`: its Vias, From, To (with our tag when it has
    /// none), Call-ID and CSeq; with an SDP body and Contact for call
    /// `index` when given.
    fn reply(
        &mut self,
        r: &Request,
        status: u16,
        reason: &str,
        sdp: Option<(usize, &str)>,
    ) -> String {
        let mut text = format!("SIP/2.0 {status} {reason}\r\n");
        for via in r.headers.get_all(&HeaderName::Via) {
            text.push_str(&format!("Via: {via}\r\n"));
        }
        let to = r.headers.get(&HeaderName::To).unwrap_or_default();
        let tag = self.random() as u32;
        let to = if to.contains("tag=") {
            to.to_owned()
        } else {
            format!("{to};tag={tag:08x}")
        };
        text.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            r.headers.get(&HeaderName::From).unwrap_or_default(),
            r.call_id().unwrap_or_default(),
            r.headers.get(&HeaderName::CSeq).unwrap_or_default(),
        ));
        match sdp {
            Some((index, body)) => text.push_str(&format!(
                "Contact: <sip:m{index}@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                self.local,
                body.len()
            )),
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        text
    }

    fn teardown(&mut self, rate: f64) -> (usize, usize) {
        let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let mut up: Vec<usize> = self
            .uac
            .iter()
            .filter(|(_, u)| u.phase == Phase::Up)
            .map(|(i, _)| *i)
            .collect();
        up.sort_unstable();
        let began = Instant::now();
        let mut next = 0usize;
        let mut last_sent = began;
        loop {
            while next < up.len() && began + gap * next as u32 <= Instant::now() {
                if let Some(mut uac) = self.uac.remove(&up[next]) {
                    uac.cseq += 1;
                    let bye = self.in_dialog(&uac, "BYE", uac.cseq);
                    self.send(&bye, self.account.server);
                    uac.phase = Phase::Leaving;
                    self.uac.insert(up[next], uac);
                }
                next += 1;
                last_sent = Instant::now();
            }
            self.pump();
            let open = up
                .iter()
                .filter(|i| self.uac.get(i).is_some_and(|u| u.phase == Phase::Leaving))
                .count();
            if next == up.len() && (open == 0 || last_sent.elapsed() > BYE_TIMEOUT) {
                let ended = up
                    .iter()
                    .filter(|i| self.uac.get(i).is_some_and(|u| u.phase == Phase::Ended))
                    .count();
                return (ended, up.len() - ended);
            }
        }
    }
}

/// Whether an address is one of the generator's own RTP sockets: a PBX
/// that anchors media names its own ports instead.
pub(crate) fn is_own(addr: SocketAddr, own: SocketAddr) -> bool {
    addr.port() == own.port()
        && (addr.ip() == own.ip() || addr.ip() == IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake PBX on a socket of its own: reads one message, as text.
    fn recv(sock: &UdpSocket) -> (String, SocketAddr) {
        let mut buf = [0u8; 65_536];
        let (len, from) = sock.recv_from(&mut buf).expect("a message within 5 s");
        (String::from_utf8_lossy(&buf[..len]).into_owned(), from)
    }

    fn header<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
            .unwrap_or_default()
    }

    /// The answer to `req` with `status`, its Via/From/To/Call-ID/CSeq.
    fn answer(req: &str, status: &str, extra: &str, body: &str) -> String {
        format!(
            "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=pbx\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            header(req, "Via"),
            header(req, "From"),
            header(req, "To"),
            header(req, "Call-ID"),
            header(req, "CSeq"),
            body.len()
        )
    }

    #[test]
    fn sets_a_call_up_through_a_challenging_pbx() {
        let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
        pbx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let agent = Agent::start(Account {
            server: pbx.local_addr().unwrap(),
            user: "1100".into(),
            password: "secret".into(),
            domain: "bench.test".into(),
            callee: true,
        })
        .unwrap();
        let caller_media: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        let callee_media: SocketAddr = "127.0.0.1:41002".parse().unwrap();
        let setup = std::thread::spawn(move || {
            let r = agent.setup(
                vec![NewCall {
                    index: 7,
                    caller_media,
                    callee_media,
                }],
                100.0,
            );
            (agent, r)
        });

        let (invite, ua) = recv(&pbx);
        assert!(invite.starts_with("INVITE sip:m7p"), "{invite}");
        assert!(header(&invite, "Call-ID").starts_with("bm7-"));
        assert!(invite.contains("m=audio 41000 RTP/AVP 0"));
        let challenge = "Proxy-Authenticate: Digest realm=\"bench.test\", nonce=\"abc\", qop=\"auth\", algorithm=MD5\r\n";
        pbx.send_to(
            answer(&invite, "407 Proxy Authentication Required", challenge, "").as_bytes(),
            ua,
        )
        .unwrap();
        let (ack, _) = recv(&pbx);
        assert!(ack.starts_with("ACK "), "{ack}");
        assert_eq!(header(&ack, "CSeq"), "1 ACK");
        let (invite, _) = recv(&pbx);
        assert_eq!(header(&invite, "CSeq"), "2 INVITE");
        let auth = header(&invite, "Proxy-Authorization");
        assert!(auth.starts_with("Digest username=\"1100\""), "{auth}");
        assert!(auth.contains("nonce=\"abc\""));

        // The PBX dials the callee (the same socket) with its own offer.
        let user = invite
            .split_whitespace()
            .nth(1)
            .and_then(|u| u.strip_prefix("sip:m7p"))
            .and_then(|u| u.split('@').next())
            .unwrap();
        assert_eq!(user, ua.port().to_string());
        let offer = sdp_text::pcmu(1, 30_002);
        let b_leg = format!(
            "INVITE sip:m7@{ua} SIP/2.0\r\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bKb1\r\nFrom: <sip:pbx@bench.test>;tag=b\r\n\
             To: <sip:m7@{ua}>\r\nCall-ID: bleg\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@{pbx}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len(),
            pbx = pbx.local_addr().unwrap(),
        );
        pbx.send_to(b_leg.as_bytes(), ua).unwrap();
        let (ok, _) = recv(&pbx);
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        assert!(ok.contains("m=audio 41002 RTP/AVP 0"));

        // And answers the caller with its caller-side port.
        let body = sdp_text::pcmu(2, 30_000);
        let contact = format!(
            "Contact: <sip:pbx@{}>\r\nContent-Type: application/sdp\r\n",
            pbx.local_addr().unwrap()
        );
        pbx.send_to(answer(&invite, "200 OK", &contact, &body).as_bytes(), ua)
            .unwrap();
        let (ack, _) = recv(&pbx);
        assert!(
            ack.starts_with(&format!("ACK sip:pbx@{}", pbx.local_addr().unwrap())),
            "{ack}"
        );
        assert_eq!(header(&ack, "CSeq"), "2 ACK");
        assert!(header(&ack, "To").ends_with(";tag=pbx"));

        let (agent, legs) = setup.join().unwrap();
        let legs = legs.unwrap();
        assert_eq!(
            legs,
            vec![Ok(Legs {
                caller_to: "127.0.0.1:30000".parse().unwrap(),
                callee_to: "127.0.0.1:30002".parse().unwrap(),
            })]
        );
        assert!(is_own(callee_media, callee_media));
        assert!(!is_own(legs[0].clone().unwrap().caller_to, callee_media));
        drop(agent);
    }
}
