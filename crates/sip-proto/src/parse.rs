//! The message parser and stream framer (RFC 3261 §7, §7.3.1 folding,
//! §7.5 leading CRLFs, §18.3 framing by Content-Length).
//!
//! One pass over the bytes: `memchr` finds line ends, the message text is
//! copied once into an `Arc<str>` that every unfolded header value is a
//! range of (only folded values are copied), known headers are checked with
//! the borrowed scanners of `typed.rs` (no allocation) and nothing else is
//! built. Lines may end in CRLF or, tolerantly, a bare LF; a bare CR is an
//! error, so no stored value ever holds CR or LF.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use memchr::memchr2;

use crate::error::{Error, Limit};
use crate::header::{HeaderName, HeaderValue, Headers};
use crate::message::{Limits, Message, Method, Request, Response};
use crate::scan::{self, Reason};
use crate::typed;
use crate::uri;

/// Where the next line ends.
enum Line {
    /// Content is `pos..end`; the next line starts at `next`.
    Complete { end: usize, next: usize },
    /// No line terminator yet.
    Incomplete,
    /// A CR not followed by LF at this offset.
    BareCr,
}

#[inline]
fn next_line(buf: &[u8], pos: usize) -> Line {
    let rest = buf.get(pos..).unwrap_or_default();
    let Some(i) = memchr2(b'\r', b'\n', rest) else {
        return Line::Incomplete;
    };
    let at = pos + i;
    match (rest.get(i), buf.get(at + 1)) {
        (Some(b'\n'), _) => Line::Complete {
            end: at,
            next: at + 1,
        },
        (_, Some(b'\n')) => Line::Complete {
            end: at,
            next: at + 2,
        },
        (_, None) => Line::Incomplete,
        _ => Line::BareCr,
    }
}

/// One logical header line: from the name to the end of its last
/// continuation line (terminator excluded).
struct RawHeader<'a> {
    line: usize,
    /// Offset of `text` in the buffer.
    start: usize,
    text: &'a [u8],
    folded: bool,
}

enum ScanError {
    Incomplete,
    BareCr { line: usize },
}

/// Walks the header section line by line, joining continuation lines.
struct HeaderScanner<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> HeaderScanner<'a> {
    /// `Ok(None)` at the empty line; `pos` is then the body's start.
    #[inline(always)]
    fn next(&mut self) -> Result<Option<RawHeader<'a>>, ScanError> {
        let start = self.pos;
        let (mut end, mut next) = match next_line(self.buf, start) {
            Line::Complete { end, next } => (end, next),
            Line::Incomplete => return Err(ScanError::Incomplete),
            Line::BareCr => return Err(ScanError::BareCr { line: self.line }),
        };
        if end == start {
            self.pos = next;
            return Ok(None);
        }
        let line = self.line;
        self.line += 1;
        let mut folded = false;
        loop {
            match self.buf.get(next) {
                Some(b' ' | b'\t') => match next_line(self.buf, next) {
                    Line::Complete { end: e, next: n } => {
                        end = e;
                        next = n;
                        folded = true;
                        self.line += 1;
                    }
                    Line::Incomplete => return Err(ScanError::Incomplete),
                    Line::BareCr => return Err(ScanError::BareCr { line: self.line }),
                },
                Some(_) => break,
                None => return Err(ScanError::Incomplete),
            }
        }
        self.pos = next;
        Ok(Some(RawHeader {
            line,
            start,
            text: self.buf.get(start..end).unwrap_or_default(),
            folded,
        }))
    }
}

/// Parses a Content-Length value (already unfolded/trimmed); numbers too
/// large for `usize` saturate (they are over every limit anyway).
fn content_length(v: &[u8], line: usize) -> Result<usize, Error> {
    let err = |reason: &'static str| Error::ContentLength {
        line: Some(line),
        reason: reason.into(),
    };
    if v.first() == Some(&b'-') && v.len() > 1 && v.iter().skip(1).all(u8::is_ascii_digit) {
        return Err(err("negative value"));
    }
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(err("not a number"));
    }
    Ok(v.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// The header's value bytes, unfolded and trimmed (borrowed when unfolded).
fn value_bytes(text: &[u8], folded: bool) -> Cow<'_, [u8]> {
    if !folded {
        let mut v = text;
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = v {
            v = rest;
        }
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(text.len());
    for seg in text.split(|&b| b == b'\n') {
        let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
        let mut s = seg;
        while let [b' ' | b'\t', rest @ ..] = s {
            s = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = s {
            s = rest;
        }
        if s.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(s);
    }
    Cow::Owned(out)
}

/// Replaces each fold (and the LWS around it) by one SP and trims.
fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for seg in raw.split('\n') {
        let seg = scan::trim_lws(seg.strip_suffix('\r').unwrap_or(seg));
        if seg.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(seg);
    }
    out
}

/// Splits `name: value`; checks the name is a token.
#[inline(always)]
fn split_header<'a>(h: &RawHeader<'a>) -> Result<(HeaderName, usize), Error> {
    if matches!(h.text.first(), Some(b' ' | b'\t')) {
        return Err(Error::header(
            "header",
            Some(h.line),
            "line starts with whitespace but no header precedes it",
        ));
    }
    let Some(colon) = scan::find_byte(h.text, b':') else {
        return Err(Error::header(
            "header",
            Some(h.line),
            "no ':' after the header name",
        ));
    };
    let mut name = h.text.get(..colon).unwrap_or_default();
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    if let Some(known) = HeaderName::known(name) {
        return Ok((known, colon + 1));
    }
    if name.is_empty() || !name.iter().all(|&b| scan::is(b, scan::TOKEN)) {
        return Err(Error::header(
            "header",
            Some(h.line),
            "header name is empty or not a token",
        ));
    }
    Ok((HeaderName::from_bytes(name), colon + 1))
}

/// The start line, parsed.
enum Start {
    Request { method: Method, uri: uri::Uri },
    Response { status: u16, reason: String },
}

fn start_err(reason: impl Into<Cow<'static, str>>) -> Error {
    Error::StartLine {
        reason: reason.into(),
    }
}

/// `s.split_once(' ')` with a plain byte loop (the std char searcher costs
/// more than the whole status-line check on these short lines).
fn split_sp(s: &str) -> Option<(&str, &str)> {
    let at = scan::find_byte(s.as_bytes(), b' ')?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

fn check_version(v: &str) -> Result<(), Error> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let numeric = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and_then(|_| v.get(4..))
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if numeric {
        Err(Error::Version {
            version: v.chars().take(32).collect(),
        })
    } else {
        Err(start_err(format!(
            "expected SIP/2.0, found '{}'",
            v.chars().take(32).collect::<String>().escape_debug()
        )))
    }
}

fn parse_start(line: &str) -> Result<Start, Error> {
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let Some((version, rest)) = split_sp(line) else {
            return Err(start_err("status line has no status code"));
        };
        check_version(version)?;
        let rest = rest.trim_start_matches(' ');
        let (code, reason) = split_sp(rest).unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(start_err(format!(
                "status code '{}' is not three digits",
                code.chars().take(16).collect::<String>().escape_debug()
            )));
        }
        let status: u16 = code.parse().map_err(|_| start_err("bad status code"))?;
        if !(100..=699).contains(&status) {
            return Err(start_err(format!("status code {status} is not in 100-699")));
        }
        let reason = scan::trim_lws(reason);
        if reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(start_err("control character in the reason phrase"));
        }
        return Ok(Start::Response {
            status,
            reason: reason.to_owned(),
        });
    }
    // Request-Line: tolerate runs of SP between elements and trailing SP
    // (RFC 4475 §3.1.2.9 / §3.1.2.10 allow either answer; we accept and
    // never re-emit them).
    let line = line.trim_end_matches(' ');
    let (Some(first), Some(last)) = (
        scan::find_byte(line.as_bytes(), b' '),
        line.as_bytes().iter().rposition(|&b| b == b' '),
    ) else {
        return Err(start_err(
            "request line must be 'Method SP Request-URI SP SIP-Version'",
        ));
    };
    let method = line.get(..first).unwrap_or("");
    let version = line.get(last + 1..).unwrap_or("");
    let target = scan::trim_lws(line.get(first..last).unwrap_or(""));
    if first == last || target.is_empty() {
        return Err(start_err(
            "request line must be 'Method SP Request-URI SP SIP-Version'",
        ));
    }
    check_version(version)?;
    if !scan::is_token(method) {
        return Err(start_err(format!(
            "method '{}' is not a token",
            method.chars().take(32).collect::<String>().escape_debug()
        )));
    }
    if target.contains([' ', '\t']) {
        return Err(start_err("whitespace inside the Request-URI"));
    }
    let uri = uri::parse_uri_ref(target)
        .map_err(|reason| Error::Uri {
            context: "Request-URI",
            reason,
        })?
        .to_owned();
    Ok(Start::Request {
        method: Method::from_token(method),
        uri,
    })
}

/// Bit for headers that may appear only once (0 for the others).
fn single_bit(h: &HeaderName) -> u16 {
    match h {
        HeaderName::CallId => 1,
        HeaderName::From => 1 << 1,
        HeaderName::To => 1 << 2,
        HeaderName::CSeq => 1 << 3,
        HeaderName::MaxForwards => 1 << 4,
        HeaderName::ContentType => 1 << 5,
        HeaderName::Expires => 1 << 6,
        HeaderName::MinExpires => 1 << 7,
        _ => 0,
    }
}

const VIA_SEEN: u16 = 1 << 15;

fn too_large(what: Limit, actual: usize, limit: usize) -> Error {
    Error::TooLarge {
        what,
        actual,
        limit,
    }
}

fn scan_error(e: ScanError) -> Error {
    match e {
        ScanError::Incomplete => Error::Truncated {
            reason: "header section not terminated by an empty line",
        },
        ScanError::BareCr { line } => Error::header("header", Some(line), "CR not followed by LF"),
    }
}

pub(crate) fn parse_message(buf: &[u8], limits: &Limits) -> Result<Message, Error> {
    if buf.len() > limits.max_message_size {
        return Err(too_large(
            Limit::MessageSize,
            buf.len(),
            limits.max_message_size,
        ));
    }
    let mut pos = 0;
    loop {
        match buf.get(pos..pos + 2) {
            Some(b"\r\n") => pos += 2,
            _ if buf.get(pos) == Some(&b'\n') => pos += 1,
            _ => break,
        }
    }
    let (start_end, headers_start) = match next_line(buf, pos) {
        Line::Complete { end, next } => (end, next),
        Line::Incomplete => {
            return Err(if buf.len() == pos {
                Error::Truncated {
                    reason: "empty message",
                }
            } else {
                Error::Truncated {
                    reason: "no line end after the start line",
                }
            });
        }
        Line::BareCr => return Err(start_err("CR not followed by LF")),
    };
    // One UTF-8 check for the whole message: every header slice must lie in
    // the valid prefix (the body may be binary).
    let text = match std::str::from_utf8(buf) {
        Ok(t) => t,
        Err(e) => {
            std::str::from_utf8(buf.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default()
        }
    };
    let start_line = text
        .get(pos..start_end)
        .ok_or_else(|| start_err("not valid UTF-8"))?;
    let start = parse_start(start_line)?;
    // The text every unfolded header value is a range of (one copy).
    let shared: Arc<str> = Arc::from(text);

    let mut headers = Headers::with_capacity(16);
    let mut scanner = HeaderScanner {
        buf,
        pos: headers_start,
        line: 2,
    };
    let mut seen: u16 = 0;
    let mut content_len: Option<(usize, usize)> = None;
    let mut count = 0usize;
    // Contact header lines seen, and whether one of them was `*`.
    let (mut contacts, mut contact_star) = (0usize, false);
    while let Some(raw) = scanner.next().map_err(scan_error)? {
        count += 1;
        if count > limits.max_headers {
            return Err(too_large(Limit::HeaderCount, count, limits.max_headers));
        }
        if raw.text.len() > limits.max_header_line {
            return Err(too_large(
                Limit::HeaderLine,
                raw.text.len(),
                limits.max_header_line,
            ));
        }
        let (name, value_at) = split_header(&raw)?;
        if matches!(name, HeaderName::ContentLength) {
            if let Some((_, first)) = content_len {
                return Err(Error::ContentLength {
                    line: Some(raw.line),
                    reason: format!("appears more than once (first on line {first})").into(),
                });
            }
            let value = value_bytes(raw.text.get(value_at..).unwrap_or_default(), raw.folded);
            content_len = Some((content_length(&value, raw.line)?, raw.line));
            continue;
        }
        let value_start = raw.start + value_at;
        let Some(raw_value) = text.get(value_start..raw.start + raw.text.len()) else {
            return Err(Error::Header {
                name: Cow::Owned(name.as_str().to_owned()),
                line: Some(raw.line),
                reason: "value is not valid UTF-8".into(),
            });
        };
        // An unfolded value is a range of the shared text; a folded one owns
        // its unfolded copy.
        let mut folded_value = String::new();
        let (value, range) = if raw.folded {
            folded_value = unfold(raw_value);
            (folded_value.as_str(), None)
        } else {
            let (a, b) = scan::trim_lws_range(raw_value.as_bytes());
            (
                raw_value.get(a..b).unwrap_or_default(),
                Some((value_start + a, value_start + b)),
            )
        };
        // Serializing writes the full name and the trimmed, unfolded value:
        // after a compact name ("s" for Subject) that line is longer than the
        // one received, and it must fit the limit too.
        let written = name.as_str().len() + 2 + value.len();
        if written > limits.max_header_line {
            return Err(too_large(
                Limit::HeaderLine,
                written,
                limits.max_header_line,
            ));
        }
        typed::validate(&name, value).map_err(|reason: Reason| Error::Header {
            name: Cow::Borrowed(name.static_name()),
            line: Some(raw.line),
            reason,
        })?;
        if matches!(name, HeaderName::Contact) {
            contacts += 1;
            contact_star |= value == "*";
            if contact_star && contacts > 1 {
                return Err(Error::header(
                    "Contact",
                    Some(raw.line),
                    "'*' must be the only Contact value",
                ));
            }
        }
        let bit = single_bit(&name);
        if bit != 0 {
            if seen & bit != 0 {
                return Err(Error::DuplicateHeader {
                    name: name.static_name(),
                    line: raw.line,
                });
            }
            seen |= bit;
        } else if matches!(name, HeaderName::Via) {
            seen |= VIA_SEEN;
        }
        let value = match range {
            Some((a, b)) => HeaderValue::shared(&shared, a, b)
                .ok_or_else(|| too_large(Limit::MessageSize, buf.len(), u32::MAX as usize))?,
            None => HeaderValue::from(std::mem::take(&mut folded_value)),
        };
        headers.push_value(name, value);
    }
    // Serializing always writes a Content-Length line, so a message without
    // one must leave room for it: otherwise we would accept a message whose
    // serialization we (and peers with the same limit) refuse.
    if content_len.is_none() && count >= limits.max_headers {
        return Err(too_large(
            Limit::HeaderCount,
            count.saturating_add(1),
            limits.max_headers,
        ));
    }
    let body_start = scanner.pos;
    let available = buf.len().saturating_sub(body_start);
    let body = match content_len {
        Some((n, line)) => {
            if n > available {
                return Err(Error::ContentLength {
                    line: Some(line),
                    reason: if n == usize::MAX {
                        "value too large".into()
                    } else {
                        format!("{n} but only {available} bytes follow the header section").into()
                    },
                });
            }
            if n > limits.max_body_size {
                return Err(too_large(Limit::BodySize, n, limits.max_body_size));
            }
            buf.get(body_start..body_start + n).unwrap_or_default()
        }
        None => {
            if available > limits.max_body_size {
                return Err(too_large(Limit::BodySize, available, limits.max_body_size));
            }
            buf.get(body_start..).unwrap_or_default()
        }
    };
    for (bit, name) in [
        (VIA_SEEN, "Via"),
        (single_bit(&HeaderName::From), "From"),
        (single_bit(&HeaderName::To), "To"),
        (single_bit(&HeaderName::CallId), "Call-ID"),
        (single_bit(&HeaderName::CSeq), "CSeq"),
    ] {
        if seen & bit == 0 {
            return Err(Error::MissingHeader { name });
        }
    }
    let body = Bytes::copy_from_slice(body);
    Ok(match start {
        Start::Request { method, uri } => {
            let cseq = headers.get(&HeaderName::CSeq).unwrap_or_default();
            let cseq_method = typed::scan_cseq(cseq).map(|(_, m)| m).unwrap_or_default();
            if cseq_method != method.as_str() {
                return Err(Error::MethodMismatch {
                    method: method.as_str().chars().take(64).collect(),
                    cseq: cseq_method.chars().take(64).collect(),
                });
            }
            Message::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        }
        Start::Response { status, reason } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

pub(crate) fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    Ok(frame_total(buf, limits)?.filter(|total| buf.len() >= *total))
}

/// As [`frame_len`], but `Some(total)` as soon as the header section is
/// complete, whether or not the body has arrived yet.
pub(crate) fn frame_total(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    let need_more = |len: usize| {
        if len > limits.max_message_size {
            Err(too_large(Limit::MessageSize, len, limits.max_message_size))
        } else {
            Ok(None)
        }
    };
    let headers_start = match next_line(buf, 0) {
        Line::Complete { next, .. } => next,
        Line::Incomplete => return need_more(buf.len()),
        Line::BareCr => return Err(start_err("CR not followed by LF")),
    };
    let mut scanner = HeaderScanner {
        buf,
        pos: headers_start,
        line: 2,
    };
    let mut content_len: Option<(usize, usize)> = None;
    let mut count = 0usize;
    loop {
        let raw = match scanner.next() {
            Ok(Some(raw)) => raw,
            Ok(None) => break,
            Err(ScanError::Incomplete) => return need_more(buf.len()),
            Err(e) => return Err(scan_error(e)),
        };
        count += 1;
        if count > limits.max_headers {
            return Err(too_large(Limit::HeaderCount, count, limits.max_headers));
        }
        if raw.text.len() > limits.max_header_line {
            return Err(too_large(
                Limit::HeaderLine,
                raw.text.len(),
                limits.max_header_line,
            ));
        }
        // Lines that are not `name: value` are left for the parser to report.
        let Ok((name, value_at)) = split_header(&raw) else {
            continue;
        };
        if matches!(name, HeaderName::ContentLength) {
            if let Some((_, first)) = content_len {
                return Err(Error::ContentLength {
                    line: Some(raw.line),
                    reason: format!("appears more than once (first on line {first})").into(),
                });
            }
            let value = value_bytes(raw.text.get(value_at..).unwrap_or_default(), raw.folded);
            content_len = Some((content_length(&value, raw.line)?, raw.line));
        }
    }
    let header_len = scanner.pos;
    if header_len > limits.max_message_size {
        return Err(too_large(
            Limit::MessageSize,
            header_len,
            limits.max_message_size,
        ));
    }
    let Some((cl, _)) = content_len else {
        return Err(Error::ContentLength {
            line: None,
            reason: "missing, and required to frame a message on a stream".into(),
        });
    };
    if cl > limits.max_body_size {
        return Err(too_large(Limit::BodySize, cl, limits.max_body_size));
    }
    let total = header_len.saturating_add(cl);
    if total > limits.max_message_size {
        return Err(too_large(
            Limit::MessageSize,
            total,
            limits.max_message_size,
        ));
    }
    Ok(Some(total))
}

/// Lines split at LF with a trailing CR removed; for salvaging.
pub(crate) fn loose_lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, Error> {
        parse_message(s.as_bytes(), &Limits::default())
    }

    const MIN: &str = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\n";

    #[test]
    fn folding_and_bare_lf() {
        let m = parse(&format!(
            "OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1\r\n\t OPTIONS\r\nSubject: a  \r\n   b \r\n  \r\nl: 0\r\n\r\n"
        ))
        .unwrap();
        assert_eq!(m.headers().get(&HeaderName::CSeq), Some("1 OPTIONS"));
        assert_eq!(m.headers().get_raw("subject"), Some("a b"));
        let m = parse("OPTIONS sip:x SIP/2.0\nv: SIP/2.0/UDP h\nf: <sip:a@b>\nt: <sip:c@d>\ni: x\nCSeq: 1 OPTIONS\n\nbody")
            .unwrap();
        assert_eq!(&m.body()[..], b"body");
        let e = parse(&format!(
            "OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\rX: y\r\n\r\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("CR not followed by LF"), "{e}");
        assert_eq!(&value_bytes(b" a \r\n b\r\n\tc ", true)[..], b"a b c");
    }

    #[test]
    fn start_lines() {
        let ok = |l: &str| parse(&format!("{l}\r\n{MIN}CSeq: 1 OPTIONS\r\n\r\n"));
        assert!(ok("OPTIONS  sip:x  SIP/2.0  ").is_ok());
        assert!(ok("OPTIONS sip:x sip/2.0").is_ok());
        assert_eq!(
            ok("OPTIONS sip:x SIP/7.0").unwrap_err().kind(),
            crate::ErrorKind::Version
        );
        assert_eq!(
            ok("OPTIONS sip:x HTTP/1.1").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
        assert_eq!(
            ok("OPTIONS sip:x").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
        assert_eq!(
            ok("OPTIONS sip:x; lr SIP/2.0").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
        assert_eq!(
            ok("OPT(IONS sip:x SIP/2.0").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
        assert_eq!(
            ok("OPTIONS <sip:x> SIP/2.0").unwrap_err().kind(),
            crate::ErrorKind::Uri
        );
        assert!(ok("SIP/2.0 100 ").is_ok());
        assert!(ok("SIP/2.0 180").is_ok());
        assert_eq!(
            ok("SIP/2.0 099 x").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
        assert_eq!(
            ok("SIP/2.0 2000 x").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
        assert_eq!(
            ok("SIP/3.0 200 OK").unwrap_err().kind(),
            crate::ErrorKind::Version
        );
        assert_eq!(
            ok("SIP/2.0 200 O\u{1}K").unwrap_err().kind(),
            crate::ErrorKind::StartLine
        );
    }

    #[test]
    fn content_length_and_limits() {
        let base = format!("MESSAGE sip:x SIP/2.0\r\n{MIN}CSeq: 1 MESSAGE\r\n");
        let m = parse(&format!("{base}Content-Length: 3\r\n\r\nabcdef")).unwrap();
        assert_eq!(&m.body()[..], b"abc");
        for (cl, kind) in [
            ("7", crate::ErrorKind::ContentLength),
            ("-1", crate::ErrorKind::ContentLength),
            ("x", crate::ErrorKind::ContentLength),
            (
                "99999999999999999999999999",
                crate::ErrorKind::ContentLength,
            ),
        ] {
            let e = parse(&format!("{base}Content-Length: {cl}\r\n\r\nabcdef")).unwrap_err();
            assert_eq!(e.kind(), kind, "{cl}: {e}");
        }
        let small = Limits {
            max_body_size: 2,
            ..Limits::default()
        };
        let msg = format!("{base}l: 3\r\n\r\nabc");
        let e = parse_message(msg.as_bytes(), &small).unwrap_err();
        assert_eq!(e.status_code(), 413);
        assert_eq!(
            frame_len(msg.as_bytes(), &small).unwrap_err().status_code(),
            413
        );
        let few = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        assert_eq!(
            parse_message(msg.as_bytes(), &few).unwrap_err().kind(),
            crate::ErrorKind::TooLarge
        );
        let short = Limits {
            max_header_line: 20,
            ..Limits::default()
        };
        assert_eq!(
            parse_message(msg.as_bytes(), &short).unwrap_err().kind(),
            crate::ErrorKind::TooLarge
        );
        let tiny = Limits {
            max_message_size: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse_message(msg.as_bytes(), &tiny)
                .unwrap_err()
                .status_code(),
            413
        );
    }

    /// Found by `fuzz/run.sh sip_message` (seed
    /// `fuzz/corpus/sip_message/header-count-without-content-length`): a
    /// message with `max_headers` header fields and no Content-Length was
    /// accepted, but serializing adds a Content-Length line, and we refused
    /// our own bytes (129 header fields).
    #[test]
    fn accepted_messages_at_the_header_limit_reserialize() {
        let l = Limits::default();
        let base = format!("OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\r\n");
        let have = base.matches("\r\n").count() - 1;
        for fields in [l.max_headers - 1, l.max_headers, l.max_headers + 1] {
            let mut msg = base.clone();
            for i in have..fields {
                msg.push_str(&format!("X-H{i}: v\r\n"));
            }
            for cl in [false, true] {
                let m = format!("{msg}{}\r\n", if cl { "l: 0\r\n" } else { "" });
                let Ok(parsed) = parse(&m) else {
                    continue;
                };
                assert!(fields < l.max_headers, "{fields} fields, cl {cl}: accepted");
                let bytes = parsed.to_bytes();
                let again = parse_message(&bytes, &l)
                    .unwrap_or_else(|e| panic!("{fields} fields, cl {cl}: {e}"));
                assert_eq!(again, parsed);
                assert_eq!(frame_len(&bytes, &l).unwrap(), Some(bytes.len()));
            }
        }
        // The limit still lets the largest message through that serializes
        // within it, and refuses one more.
        let mut msg = base.clone();
        for i in have..l.max_headers - 1 {
            msg.push_str(&format!("X-H{i}: v\r\n"));
        }
        assert!(parse(&format!("{msg}\r\n")).is_ok());
        assert!(parse(&format!("{msg}l: 0\r\n\r\n")).is_ok());
        let e = parse(&format!("{msg}X-Last: v\r\n\r\n")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::TooLarge);
    }

    /// The same property for the line limit (seed
    /// `fuzz/corpus/sip_message/compact-name-at-line-limit`): a compact
    /// name within `max_header_line` must not serialize, with its full
    /// name, to a line over it.
    #[test]
    fn accepted_lines_at_the_line_limit_reserialize() {
        let l = Limits::default();
        for (name, full) in [("s", "Subject"), ("Subject", "Subject"), ("X-S", "X-S")] {
            for len in [l.max_header_line - 8, l.max_header_line] {
                let line = format!("{name}: {}", "a".repeat(len - name.len() - 2));
                let m = format!("OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\r\n{line}\r\n\r\n");
                let Ok(parsed) = parse(&m) else {
                    assert!(
                        len + full.len() - name.len() > l.max_header_line,
                        "{name} {len}"
                    );
                    continue;
                };
                let bytes = parsed.to_bytes();
                let again = parse_message(&bytes, &l)
                    .unwrap_or_else(|e| panic!("{name}, line of {len}: {e}"));
                assert_eq!(again, parsed);
            }
        }
    }

    #[test]
    fn framing() {
        let l = Limits::default();
        let msg = format!(
            "MESSAGE sip:x SIP/2.0\r\n{MIN}CSeq: 1 MESSAGE\r\nContent-Length:\r\n 3\r\n\r\nabc"
        );
        let b = msg.as_bytes();
        assert_eq!(frame_len(b, &l).unwrap(), Some(b.len()));
        for cut in 0..b.len() {
            assert_eq!(frame_len(&b[..cut], &l).unwrap(), None, "cut at {cut}");
        }
        let mut two = b.to_vec();
        two.extend_from_slice(b);
        assert_eq!(frame_len(&two, &l).unwrap(), Some(b.len()));
        let no_cl = format!("OPTIONS sip:x SIP/2.0\r\n{MIN}\r\n");
        assert_eq!(
            frame_len(no_cl.as_bytes(), &l).unwrap_err().kind(),
            crate::ErrorKind::ContentLength
        );
        let dup = "OPTIONS sip:x SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            frame_len(dup.as_bytes(), &l).unwrap_err().kind(),
            crate::ErrorKind::ContentLength
        );
        let huge = "OPTIONS sip:x SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n";
        assert_eq!(
            frame_len(huge.as_bytes(), &l).unwrap_err().kind(),
            crate::ErrorKind::TooLarge
        );
        let endless = vec![b'a'; l.max_message_size + 1];
        assert_eq!(
            frame_len(&endless, &l).unwrap_err().kind(),
            crate::ErrorKind::TooLarge
        );
    }

    #[test]
    fn header_section_errors() {
        let e = parse("OPTIONS sip:x SIP/2.0\r\n bad\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse("OPTIONS sip:x SIP/2.0\r\nNoColon\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Header);
        let e = parse("OPTIONS sip:x SIP/2.0\r\nBad Name: x\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Header);
        let e = parse(&format!(
            "OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\r\nX-Foo: \u{fffd}\r\n\r\n"
        ));
        assert!(e.is_ok(), "{e:?}");
        let mut bad =
            format!("OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\r\nX-Foo: ").into_bytes();
        bad.extend_from_slice(b"\xff\r\n\r\n");
        let e = parse_message(&bad, &Limits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "X-Foo header (line 7): value is not valid UTF-8"
        );
        let e = parse(&format!(
            "OPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\r\n"
        ))
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Truncated);
        assert_eq!(parse("").unwrap_err().kind(), crate::ErrorKind::Truncated);
        assert!(
            parse(&format!(
                "\r\n\r\nOPTIONS sip:x SIP/2.0\r\n{MIN}CSeq: 1 OPTIONS\r\n\r\n"
            ))
            .is_ok()
        );
    }
}
