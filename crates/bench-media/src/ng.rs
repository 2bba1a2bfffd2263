//! A client of rtpengine's ng control protocol: one UDP datagram per
//! request, `<cookie> <bencoded dictionary>`, answered by a datagram
//! starting with the same cookie. Only what the benchmark needs: `offer`,
//! `answer` and `delete`, and `ping` to wait for the daemon.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::bencode::Value;

/// How long one request waits for its answer before it is sent again.
const RETRY: Duration = Duration::from_millis(500);
/// Sends per request before giving up.
const TRIES: u32 = 4;

/// A connection to one rtpengine.
pub(crate) struct Ng {
    socket: UdpSocket,
    server: SocketAddr,
    next_cookie: u64,
}

impl Ng {
    /// A client of the rtpengine listening on `server`.
    pub(crate) fn new(server: SocketAddr) -> io::Result<Ng> {
        let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        Ok(Ng {
            socket,
            server,
            next_cookie: u64::from(std::process::id()) << 32,
        })
    }

    /// Sends `request` and returns the reply's dictionary, an error if the
    /// reply says `result` is not `ok` (or `pong` to a ping).
    pub(crate) fn request(&mut self, request: &Value) -> io::Result<Value> {
        self.next_cookie += 1;
        let cookie = format!("{:x}", self.next_cookie);
        let mut datagram = format!("{cookie} ").into_bytes();
        request.encode_into(&mut datagram);
        let mut buf = vec![0u8; 65_536];
        for _ in 0..TRIES {
            self.socket.send_to(&datagram, self.server)?;
            let deadline = Instant::now() + RETRY;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                let len = match self.socket.recv_from(&mut buf) {
                    Ok((len, _)) => len,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                };
                let reply = buf.get(..len).unwrap_or_default();
                let Some(body) = reply
                    .strip_prefix(cookie.as_bytes())
                    .and_then(|r| r.strip_prefix(b" "))
                else {
                    continue; // a late answer to an earlier try
                };
                let value = Value::decode(body)
                    .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
                let result = value
                    .get("result")
                    .and_then(Value::as_text)
                    .unwrap_or_default();
                if result == "ok" || result == "pong" {
                    return Ok(value);
                }
                let reason = value
                    .get("error-reason")
                    .and_then(Value::as_text)
                    .unwrap_or_default();
                return Err(io::Error::other(format!("rtpengine: {result}: {reason}")));
            }
        }
        Err(io::Error::new(
            ErrorKind::TimedOut,
            "rtpengine did not answer",
        ))
    }

    /// `ping` until rtpengine answers or `within` passes.
    pub(crate) fn wait_ready(&mut self, within: Duration) -> io::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self.request(&Value::dict([("command", Value::str("ping"))])) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `offer` (the caller's SDP) then `answer` (the callee's): the SDPs
    /// rtpengine rewrote, for the callee (the offer) and for the caller
    /// (the answer).
    pub(crate) fn offer_answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        caller_sdp: &str,
        callee_sdp: &str,
    ) -> io::Result<(String, String)> {
        let sdp_of = |v: &Value| {
            v.get("sdp").and_then(Value::as_text).ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidData, "rtpengine reply without sdp")
            })
        };
        let offer = self.request(&Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str(from_tag)),
            ("sdp", Value::str(caller_sdp)),
        ]))?;
        let answer = self.request(&Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str(from_tag)),
            ("to-tag", Value::str(to_tag)),
            ("sdp", Value::str(callee_sdp)),
        ]))?;
        Ok((sdp_of(&offer)?, sdp_of(&answer)?))
    }

    /// `delete`: the whole call.
    pub(crate) fn delete(&mut self, call_id: &str, from_tag: &str) -> io::Result<()> {
        self.request(&Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str(from_tag)),
        ]))
        .map(drop)
    }
}
