//! SIP messages (RFC 3261 §7): methods, requests, responses, size limits,
//! the serializer, and salvaging enough of a bad request to answer it
//! (§8.2, RFC 4475 §3.1.2). The parser itself is in `parse.rs`.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::header::{CSeq, HeaderName, Headers, Via};
use crate::uri::Uri;

/// A request method. Method names are case-sensitive (RFC 3261 §7.1):
/// `invite` is an extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// REGISTER.
    Register,
    /// OPTIONS.
    Options,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token, as received.
    Extension(String),
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Extension(s) => s,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The name of a method RFC 3261 or its extensions define, as a
    /// `'static` string (for metric labels and the like); `None` for an
    /// [`Method::Extension`].
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(_) => return None,
        })
    }

    /// The method named by `s` (case-sensitive); unknown names become
    /// [`Method::Extension`]. Does not check that `s` is a token.
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size limits the parser enforces, so that no input can make it allocate
/// beyond them.
///
/// The defaults suit a PBX: 64 KiB per message (the largest UDP datagram),
/// 128 header fields, 32 KiB of body (a large SDP offer with video and ICE
/// candidates is under 8 KiB), and 8 KiB per header field, folds included
/// (the longest RFC 4475 header is under 1 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (start line, headers and body), in bytes.
    pub max_message_size: usize,
    /// Most header fields (lines, not comma-separated values), counting
    /// the Content-Length line that serializing adds to a message without
    /// one.
    pub max_headers: usize,
    /// Largest body, in bytes.
    pub max_body_size: usize,
    /// Largest single header field, name and folds included, in bytes.
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 128,
            max_body_size: 32 * 1024,
            max_header_line: 8 * 1024,
        }
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method of the request line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The header fields, Content-Length excluded.
    pub headers: Headers,
    /// The body (exactly Content-Length bytes).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100–699.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// The header fields, Content-Length excluded.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// Parses ONE message from a datagram (UDP semantics, RFC 3261 §18.3):
    /// the body is framed by Content-Length and bytes after it are ignored
    /// (RFC 4475 §3.1.1.8); a Content-Length larger than what follows is an
    /// error; no Content-Length means the body is the rest of the datagram.
    ///
    /// Validates the start line and version (`SIP/2.0`, else
    /// [`crate::ErrorKind::Version`]), the mandatory headers (Via, From,
    /// To, Call-ID, CSeq, for requests and responses), that single-valued
    /// headers (Call-ID, From, To, CSeq, Max-Forwards, Content-Type,
    /// Content-Length, Expires, Min-Expires) appear once, that the CSeq
    /// method matches a request's method, and the syntax of every header
    /// this crate has a type for. Unknown headers are kept as they are
    /// (they must be UTF-8). Leading CRLFs are skipped.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Message, Error> {
        crate::parse::parse_message(buf, limits)
    }

    /// Stream framing (TCP, RFC 3261 §18.3): `Ok(Some(len))` when `buf`
    /// begins with a complete message of `len` bytes (headers and the
    /// Content-Length body); `Ok(None)` when more bytes are needed; `Err`
    /// when the stream cannot be framed (Content-Length missing, negative,
    /// repeated or malformed, or a size limit exceeded) and the connection
    /// should be closed. Leading CRLFs are not skipped here.
    pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
        crate::parse::frame_len(buf, limits)
    }

    /// Stream framing for a reader that keeps its place: `Ok(Some(total))`
    /// as soon as `buf` begins with a complete header section, `total`
    /// being the whole message's length (headers plus Content-Length), even
    /// if the body has not all arrived; `Ok(None)` while the header section
    /// is incomplete; `Err` as [`frame_len`](Self::frame_len). A reader
    /// that has its total need not scan the headers again while the body
    /// arrives.
    pub fn frame_total(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
        crate::parse::frame_total(buf, limits)
    }

    /// Serializes the message; see [`Request::to_bytes`].
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The header fields, to edit.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }
}

/// Writes header lines, then Content-Length, the empty line and the body.
/// CR and LF inside a value or reason (which the parser never produces) are
/// written as spaces so an edited header cannot inject lines.
fn write_rest(out: &mut BytesMut, headers: &Headers, body: &Bytes) {
    for h in headers {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        put_clean(out, h.name.as_str());
        out.put_slice(b": ");
        put_clean(out, &h.value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: ");
    out.put_slice(body.len().to_string().as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

fn put_clean(out: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    if memchr::memchr2(b'\r', b'\n', b).is_none() {
        out.put_slice(b);
    } else {
        out.extend(
            b.iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    }
}

fn estimate(headers: &Headers, body: &Bytes) -> usize {
    headers
        .iter()
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum::<usize>()
        + body.len()
        + 64
}

impl Request {
    /// Serializes: request line, every header in stored order as
    /// `Name: value` (canonical full names), `Content-Length: <body length>`,
    /// an empty line and the body.
    pub fn to_bytes(&self) -> Bytes {
        let uri = self.uri.to_string();
        let mut out = BytesMut::with_capacity(estimate(&self.headers, &self.body) + uri.len());
        put_clean(&mut out, self.method.as_str());
        out.put_u8(b' ');
        put_clean(&mut out, &uri);
        out.put_slice(b" SIP/2.0\r\n");
        write_rest(&mut out, &self.headers, &self.body);
        out.freeze()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.call_id()
    }

    /// The CSeq, if present and valid.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.cseq().ok()
    }

    /// The topmost Via value, if present and valid.
    pub fn top_via(&self) -> Option<Via> {
        self.headers.top_via().ok().flatten()
    }

    /// Max-Forwards, if present and valid.
    pub fn max_forwards(&self) -> Option<u32> {
        self.headers.max_forwards().ok().flatten()
    }
}

impl Response {
    /// Serializes: status line, then as [`Request::to_bytes`].
    pub fn to_bytes(&self) -> Bytes {
        let mut out =
            BytesMut::with_capacity(estimate(&self.headers, &self.body) + self.reason.len());
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(self.status.to_string().as_bytes());
        out.put_u8(b' ');
        put_clean(&mut out, &self.reason);
        out.put_slice(b"\r\n");
        write_rest(&mut out, &self.headers, &self.body);
        out.freeze()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.call_id()
    }

    /// The CSeq, if present and valid.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.cseq().ok()
    }

    /// The topmost Via value, if present and valid.
    pub fn top_via(&self) -> Option<Via> {
        self.headers.top_via().ok().flatten()
    }
}

/// What could be read of a request that failed to parse: enough to answer
/// it with 400 or 505 (RFC 3261 §8.2.6 copies Via, From, To, Call-ID and
/// CSeq into the response). Values are raw, unfolded and trimmed; bytes
/// that are not UTF-8 are replaced with U+FFFD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The first word of the request line.
    pub method: String,
    /// Every Via header value, in order (not split at commas).
    pub via: Vec<String>,
    /// The first From value.
    pub from: Option<String>,
    /// The first To value.
    pub to: Option<String>,
    /// The first Call-ID value.
    pub call_id: Option<String>,
    /// The first CSeq value.
    pub cseq: Option<String>,
}

/// Most header lines salvage looks at.
const SALVAGE_MAX_LINES: usize = 256;

/// For a request that failed to parse: reads the method and, line by line
/// and tolerantly, the raw Via (all), From, To, Call-ID and CSeq values.
/// `None` if the bytes do not look like a request (a status line, no
/// method token) or no Via can be read.
pub fn salvage_request(buf: &[u8]) -> Option<Salvaged> {
    let mut lines = crate::parse::loose_lines(buf);
    let start = lines.next()?;
    let method_end = start.iter().position(|&b| b == b' ').unwrap_or(start.len());
    let method = start.get(..method_end)?;
    if method.is_empty()
        || method.len() >= 4
            && method
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        || !method
            .iter()
            .all(|&b| crate::scan::is(b, crate::scan::TOKEN))
    {
        return None;
    }
    let mut s = Salvaged {
        method: String::from_utf8_lossy(method).into_owned(),
        via: Vec::new(),
        from: None,
        to: None,
        call_id: None,
        cseq: None,
    };
    // (name, value) with continuation lines joined.
    let mut current: Option<(HeaderName, String)> = None;
    let flush = |cur: Option<(HeaderName, String)>, s: &mut Salvaged| {
        if let Some((name, value)) = cur {
            let value = crate::scan::trim_lws(&value).to_owned();
            match name {
                HeaderName::Via => s.via.push(value),
                HeaderName::From => {
                    s.from.get_or_insert(value);
                }
                HeaderName::To => {
                    s.to.get_or_insert(value);
                }
                HeaderName::CallId => {
                    s.call_id.get_or_insert(value);
                }
                HeaderName::CSeq => {
                    s.cseq.get_or_insert(value);
                }
                _ => {}
            }
        }
    };
    for line in lines.take(SALVAGE_MAX_LINES) {
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, v)) = current.as_mut() {
                v.push(' ');
                v.push_str(crate::scan::trim_lws(&String::from_utf8_lossy(line)));
            }
            continue;
        }
        flush(current.take(), &mut s);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        let name = crate::scan::trim_lws(&name);
        if let Some(
            h @ (HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq),
        ) = HeaderName::known(name.as_bytes())
        {
            let value = line.get(colon + 1..).unwrap_or_default();
            current = Some((h, String::from_utf8_lossy(value).into_owned()));
        }
    }
    flush(current.take(), &mut s);
    if s.via.is_empty() { None } else { Some(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(Method::from_token("INVITE"), Method::Invite);
        assert_eq!(
            Method::from_token("invite"),
            Method::Extension("invite".into())
        );
        assert_eq!(Method::from_token("RE%47IST%45R").as_str(), "RE%47IST%45R");
        for m in [
            "ACK",
            "BYE",
            "CANCEL",
            "REGISTER",
            "OPTIONS",
            "INFO",
            "UPDATE",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "REFER",
            "MESSAGE",
            "PUBLISH",
        ] {
            assert_eq!(Method::from_token(m).to_string(), m);
            assert!(!matches!(Method::from_token(m), Method::Extension(_)));
        }
    }

    #[test]
    fn salvage() {
        let s = salvage_request(
            b"OPTIONS sip:x SIP/7.0\r\nVia: SIP/7.0/UDP a;branch=1\r\n\tcontinued\r\nv: second\r\n\
              f: <sip:a@b>\r\nTo: <sip:c@d>\r\ni: abc\r\nCSeq: 1 OPTIONS\r\nFrom: ignored\r\n\r\nVia: body",
        )
        .unwrap();
        assert_eq!(s.method, "OPTIONS");
        assert_eq!(s.via, ["SIP/7.0/UDP a;branch=1 continued", "second"]);
        assert_eq!(s.from.as_deref(), Some("<sip:a@b>"));
        assert_eq!(s.to.as_deref(), Some("<sip:c@d>"));
        assert_eq!(s.call_id.as_deref(), Some("abc"));
        assert_eq!(s.cseq.as_deref(), Some("1 OPTIONS"));
        assert!(salvage_request(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n").is_none());
        assert!(salvage_request(b"INVITE sip:x SIP/2.0\r\nTo: x\r\n\r\n").is_none());
        assert!(salvage_request(b"").is_none());
        assert!(salvage_request(b"\xff\xfe").is_none());
    }

    #[test]
    fn serializer_rewrites_content_length_and_strips_crlf() {
        let mut headers = Headers::new();
        headers.push(HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1");
        headers.push(HeaderName::ContentLength, "999");
        headers.push(HeaderName::parse("X-Evil"), "a\r\nInjected: yes");
        let r = Response {
            status: 200,
            reason: "OK".into(),
            headers,
            body: Bytes::from_static(b"hello"),
        };
        let b = r.to_bytes();
        assert_eq!(
            &b[..],
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nX-Evil: a  Injected: yes\r\nContent-Length: 5\r\n\r\nhello"
        );
    }
}
