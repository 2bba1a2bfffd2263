//! A small SIP user agent over real UDP or TCP sockets (std, blocking, every
//! read bounded by a timeout): builds requests, sends raw bytes, reads and
//! parses what comes back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sip_proto::{HeaderName, Limits, Message, Request, Response};

/// Why a user-agent operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UaError {
    /// A socket error.
    Io(std::io::Error),
    /// Nothing arrived within the timeout.
    Timeout,
    /// Bytes arrived that do not parse as SIP.
    Parse(sip_proto::Error),
    /// The TCP peer closed the connection.
    Closed,
}

impl std::fmt::Display for UaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UaError::Io(e) => write!(f, "socket: {e}"),
            UaError::Timeout => f.write_str("no message within the timeout"),
            UaError::Parse(e) => write!(f, "unparseable message: {e}"),
            UaError::Closed => f.write_str("connection closed by peer"),
        }
    }
}

impl std::error::Error for UaError {}

impl From<std::io::Error> for UaError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => UaError::Timeout,
            _ => UaError::Io(e),
        }
    }
}

enum Socket {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, buf: Vec<u8> },
}

/// A user agent bound to 127.0.0.1 talking to one server address.
pub struct Ua {
    socket: Socket,
    server: SocketAddr,
    local: SocketAddr,
    cseq: std::cell::Cell<u32>,
}

impl Ua {
    /// A UA on a fresh UDP socket.
    pub fn udp(server: SocketAddr) -> Result<Ua, UaError> {
        let bind: SocketAddr = if server.is_ipv6() {
            "[::1]:0".parse().map_err(|_| UaError::Timeout)?
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        Ua::udp_from(server, bind.ip())
    }

    /// A UA on a fresh UDP socket bound on `ip` (another loopback address,
    /// such as 127.0.0.2, to play another host).
    pub fn udp_from(server: SocketAddr, ip: std::net::IpAddr) -> Result<Ua, UaError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let local = socket.local_addr()?;
        Ok(Ua {
            socket: Socket::Udp(socket),
            server,
            local,
            cseq: std::cell::Cell::new(0),
        })
    }

    /// Sends to `server` from now on (UDP): a phone that registered through
    /// one node of a cluster and is called by another answers that one.
    pub fn set_server(&mut self, server: SocketAddr) {
        self.server = server;
    }

    /// A UA on a fresh TCP connection.
    pub fn tcp(server: SocketAddr) -> Result<Ua, UaError> {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(Ua {
            socket: Socket::Tcp {
                stream,
                buf: Vec::new(),
            },
            server,
            local,
            cseq: std::cell::Cell::new(0),
        })
    }

    /// Our own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `UDP` or `TCP`, as written in Via.
    pub fn transport(&self) -> &'static str {
        match self.socket {
            Socket::Udp(_) => "UDP",
            Socket::Tcp { .. } => "TCP",
        }
    }

    /// A request builder with every mandatory header filled in: Via (fresh
    /// branch, `rport`), From (with tag), To, Call-ID, CSeq, Max-Forwards 70,
    /// Contact.
    pub fn request(&self, method: &str, uri: &str) -> RequestBuilder {
        self.cseq.set(self.cseq.get() + 1);
        let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
        let tag = format!("{:08x}", rand::random::<u32>());
        let call_id = format!("{:016x}@testkit", rand::random::<u64>());
        RequestBuilder {
            method: method.to_owned(),
            uri: uri.to_owned(),
            headers: vec![
                (
                    "Via".into(),
                    format!(
                        "SIP/2.0/{} {};branch={branch};rport",
                        self.transport(),
                        self.local
                    ),
                ),
                ("Max-Forwards".into(), "70".into()),
                (
                    "From".into(),
                    format!("<sip:test@{}>;tag={tag}", self.local),
                ),
                ("To".into(), format!("<{uri}>")),
                ("Call-ID".into(), call_id),
                ("CSeq".into(), format!("{} {method}", self.cseq.get())),
                ("Contact".into(), format!("<sip:test@{}>", self.local)),
            ],
            body: Vec::new(),
        }
    }

    /// A REGISTER for `user` at `domain` asking for `expires` seconds, with
    /// our address as the Contact.
    pub fn register_request(&self, user: &str, domain: &str, expires: u32) -> RequestBuilder {
        let aor = format!("sip:{user}@{domain}");
        self.request("REGISTER", &format!("sip:{domain}"))
            .header(
                "From",
                &format!("<{aor}>;tag={:08x}", rand::random::<u32>()),
            )
            .header("To", &format!("<{aor}>"))
            .header(
                "Contact",
                &format!(
                    "<sip:{user}@{};transport={}>",
                    self.local,
                    self.transport().to_ascii_lowercase()
                ),
            )
            .header("Expires", &expires.to_string())
    }

    /// Sends `req`; if challenged, answers the first (topmost) challenge as
    /// `user`/`password` with the same Call-ID and the next CSeq, and
    /// returns the final response to that.
    pub fn transact_authenticated(
        &mut self,
        req: &RequestBuilder,
        user: &str,
        password: &str,
    ) -> Result<Response, UaError> {
        let first = self.transact(req)?;
        if first.status != 401 && first.status != 407 {
            return Ok(first);
        }
        let Some(challenge) = challenges(&first).into_iter().next() else {
            return Ok(first);
        };
        let retry = self.authorized(req, &challenge, user, password, 1);
        self.transact(&retry)
    }

    /// `req` again with a fresh branch, the next CSeq and an Authorization
    /// (Proxy-Authorization for 407s is not needed yet) answering
    /// `challenge` with nonce-count `nc`.
    pub fn authorized(
        &self,
        req: &RequestBuilder,
        challenge: &DigestChallenge,
        user: &str,
        password: &str,
        nc: u32,
    ) -> RequestBuilder {
        self.cseq.set(self.cseq.get() + 1);
        let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.transport(),
            self.local
        );
        let cseq = format!("{} {}", self.cseq.get(), req.method);
        let auth = challenge.answer(user, password, &req.method, &req.uri, nc);
        req.clone()
            .header("Via", &via)
            .header("CSeq", &cseq)
            .header("Authorization", &auth)
    }

    /// Sends raw bytes to the server.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), UaError> {
        match &mut self.socket {
            Socket::Udp(s) => {
                s.send_to(bytes, self.server)?;
            }
            Socket::Tcp { stream, .. } => stream.write_all(bytes)?,
        }
        Ok(())
    }

    /// Answers `request` (a NOTIFY, say) with a bodyless `status`: its Via,
    /// From, To, Call-ID and CSeq copied back (RFC 3261 §8.2.6.2, as a UA
    /// that adds no To tag of its own).
    pub fn respond(&mut self, request: &Request, status: u16) -> Result<(), UaError> {
        let mut text = format!("SIP/2.0 {status} {}\r\n", crate::phone::reason(status));
        for via in request.headers.get_all(&HeaderName::Via) {
            text.push_str(&format!("Via: {via}\r\n"));
        }
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            let value = request.headers.get(&name).unwrap_or_default();
            text.push_str(&format!("{}: {value}\r\n", name.as_str()));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        self.send(text.as_bytes())
    }

    /// Reads the next message's bytes (a datagram, or one Content-Length
    /// framed stream message), waiting at most `timeout`.
    pub fn recv_raw(&mut self, timeout: Duration) -> Result<Vec<u8>, UaError> {
        let deadline = Instant::now() + timeout;
        match &mut self.socket {
            Socket::Udp(s) => {
                s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
                let mut buf = vec![0u8; 65_535];
                let (n, _) = s.recv_from(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
            Socket::Tcp { stream, buf } => loop {
                // Pongs (bare CRLF) are returned as they are.
                if buf.starts_with(b"\r\n") {
                    buf.drain(..2);
                    return Ok(b"\r\n".to_vec());
                }
                if let Ok(Some(len)) = Message::frame_len(buf, &Limits::default()) {
                    return Ok(buf.drain(..len).collect());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(UaError::Timeout);
                }
                stream.set_read_timeout(Some(left))?;
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(UaError::Closed);
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            },
        }
    }

    /// Reads and parses the next message.
    pub fn recv(&mut self, timeout: Duration) -> Result<Message, UaError> {
        let raw = self.recv_raw(timeout)?;
        Message::parse(&raw, &Limits::default()).map_err(UaError::Parse)
    }

    /// Reads the next message leniently, as a tolerant phone would: the
    /// status from the status line and the header lines as text. For
    /// answers to malformed requests, which echo the malformed headers.
    pub fn recv_status(&mut self, timeout: Duration) -> Result<RawResponse, UaError> {
        let raw = self.recv_raw(timeout)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Ok(RawResponse { status, text })
    }

    /// Reads messages until a response arrives (skipping requests).
    pub fn recv_response(&mut self, timeout: Duration) -> Result<Response, UaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UaError::Timeout);
            }
            if let Message::Response(r) = self.recv(left)? {
                return Ok(r);
            }
        }
    }

    /// Sends `request` and returns the first final (≥ 200) response.
    pub fn transact(&mut self, request: &RequestBuilder) -> Result<Response, UaError> {
        self.send(request.build().as_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let resp = self.recv_response(left)?;
            if resp.status >= 200 {
                return Ok(resp);
            }
        }
    }
}

/// A digest challenge read from a 401/407 (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: String,
    /// `qop` as offered.
    pub qop: Option<String>,
    /// `opaque`, to echo.
    pub opaque: Option<String>,
    /// `stale=true`.
    pub stale: bool,
}

/// Every Digest challenge in `resp`'s WWW-Authenticate (or, if none,
/// Proxy-Authenticate) headers, in order.
pub fn challenges(resp: &Response) -> Vec<DigestChallenge> {
    let mut list = resp.headers.www_authenticate().unwrap_or_default();
    if list.is_empty() {
        list = resp.headers.proxy_authenticate().unwrap_or_default();
    }
    list.iter()
        .filter(|c| c.scheme.eq_ignore_ascii_case("Digest"))
        .map(|c| DigestChallenge {
            realm: c.params.unquoted("realm").unwrap_or_default().into_owned(),
            nonce: c.params.unquoted("nonce").unwrap_or_default().into_owned(),
            algorithm: c
                .params
                .unquoted("algorithm")
                .map_or_else(|| "MD5".to_owned(), |a| a.into_owned()),
            qop: c.params.unquoted("qop").map(|q| q.into_owned()),
            opaque: c.params.unquoted("opaque").map(|o| o.into_owned()),
            stale: c
                .params
                .unquoted("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
        .collect()
}

impl DigestChallenge {
    /// The Authorization value answering this challenge for `method` and
    /// `uri` with nonce-count `nc`.
    pub fn answer(&self, user: &str, password: &str, method: &str, uri: &str, nc: u32) -> String {
        let algorithm = self
            .algorithm
            .parse()
            .unwrap_or(sip_proto::digest::Algorithm::Md5);
        let cnonce = format!("{:08x}", rand::random::<u32>());
        sip_proto::digest::DigestAnswer {
            algorithm,
            username: user,
            password,
            realm: &self.realm,
            nonce: &self.nonce,
            method,
            uri,
            nc,
            cnonce: &cnonce,
            opaque: self.opaque.as_deref(),
        }
        .to_header_value()
    }
}

/// A response read without strict parsing.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code (0 if the start line is not a SIP/2.0 status line).
    pub status: u16,
    /// The whole message as text.
    pub text: String,
}

impl RawResponse {
    /// The value of the first header line named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A request as text, header by header.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RequestBuilder {
    /// The same request with another method in the request line (the CSeq
    /// header is left alone; set it with [`header`](Self::header)).
    pub fn with_method(mut self, method: &str) -> Self {
        self.method = method.to_owned();
        self
    }

    /// Replaces every header named `name` (case-insensitive) with `value`,
    /// or appends it.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Some(pos) = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            self.headers
                .insert(pos.min(self.headers.len()), (name.into(), value.into()));
        } else {
            self.headers.push((name.into(), value.into()));
        }
        self
    }

    /// Appends a header even if one of that name exists.
    pub fn add_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Removes every header named `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Sets the body (Content-Length follows it).
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self.header("Content-Type", content_type)
    }

    /// The value of the first header named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as wire text (CRLF line ends, Content-Length added).
    pub fn build(&self) -> String {
        let mut out = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for (n, v) in &self.headers {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        out.push_str(&String::from_utf8_lossy(&self.body));
        out
    }
}
