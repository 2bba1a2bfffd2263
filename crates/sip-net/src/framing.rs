//! Incremental stream framing (RFC 3261 §18.3): finds where one message
//! ends in a TCP buffer that grows read by read, without scanning the
//! headers again from the start on every read.
//!
//! A message trickled in small reads used to be re-framed from its first
//! byte on every read: quadratic in its size. The [`Framer`] keeps the
//! position up to which it has looked for the empty line that ends the
//! header section, runs the full header scan (`Message::frame_total`) only
//! when that line has arrived (or the buffer has doubled since the last
//! scan, so a malformed start is still reported early), and once it knows
//! the message's total length only compares lengths while the body
//! arrives. Every byte is looked at a bounded number of times.

use memchr::memchr;
use sip_proto::{Error, Limits, Message};

/// The smallest buffer length at which a second full scan runs when no
/// empty line has been seen.
const MIN_RESCAN: usize = 512;

/// The framing state of the message at the front of one connection's buffer.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// Bytes of the buffer already searched for the end of the headers.
    scanned: usize,
    /// Buffer length at which the headers are scanned in full again even
    /// without an empty line (0: at the first look).
    rescan_at: usize,
    /// The message's total length, once its header section is complete.
    total: Option<usize>,
}

impl Framer {
    /// Forgets the message in progress: call when bytes were taken from
    /// the front of the buffer.
    pub(crate) fn reset(&mut self) {
        *self = Framer::default();
    }

    /// `Ok(Some(len))` when `buf` begins with a complete message of `len`
    /// bytes (the framer is then reset for the next one); `Ok(None)` when
    /// more bytes are needed; `Err` when the stream cannot be framed.
    pub(crate) fn next(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
        if let Some(total) = self.total {
            return Ok(self.complete_if(buf.len() >= total, total));
        }
        let headers_done = self.find_end_of_headers(buf);
        if !headers_done && buf.len() < self.rescan_at {
            return Ok(None);
        }
        self.rescan_at = buf.len().saturating_mul(2).max(MIN_RESCAN);
        match Message::frame_total(buf, limits)? {
            Some(total) => {
                self.total = Some(total);
                Ok(self.complete_if(buf.len() >= total, total))
            }
            None => Ok(None),
        }
    }

    fn complete_if(&mut self, complete: bool, total: usize) -> Option<usize> {
        if complete {
            self.reset();
            Some(total)
        } else {
            None
        }
    }

    /// Searches the bytes not yet searched for an empty line (a line
    /// terminator, CRLF or bare LF, followed by another).
    fn find_end_of_headers(&mut self, buf: &[u8]) -> bool {
        let mut at = self.scanned;
        while let Some(i) = buf.get(at..).and_then(|rest| memchr(b'\n', rest)) {
            let lf = at + i;
            match (buf.get(lf + 1), buf.get(lf + 2)) {
                (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => {
                    self.scanned = lf;
                    return true;
                }
                // The LF is too near the end to tell yet: look again from it.
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = lf;
                    return false;
                }
                _ => at = lf + 1,
            }
        }
        self.scanned = buf.len();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 4\r\n\r\nbody";

    #[test]
    fn byte_by_byte_frames_at_the_last_byte() {
        let limits = Limits::default();
        let mut f = Framer::default();
        for end in 1..MSG.len() {
            assert_eq!(f.next(&MSG[..end], &limits).unwrap(), None, "at {end}");
        }
        assert_eq!(f.next(MSG, &limits).unwrap(), Some(MSG.len()));
    }

    #[test]
    fn pipelined_messages_frame_one_after_the_other() {
        let limits = Limits::default();
        let mut buf = [MSG, MSG].concat();
        let mut f = Framer::default();
        let first = f.next(&buf, &limits).unwrap().unwrap();
        buf.drain(..first);
        assert_eq!(f.next(&buf, &limits).unwrap(), Some(MSG.len()));
    }

    #[test]
    fn bare_lf_line_ends_are_framed() {
        let text = String::from_utf8(MSG.to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        let mut f = Framer::default();
        let bytes = text.as_bytes();
        let split = bytes.len() - 6;
        assert_eq!(f.next(&bytes[..split], &Limits::default()).unwrap(), None);
        assert_eq!(
            f.next(bytes, &Limits::default()).unwrap(),
            Some(bytes.len())
        );
    }

    #[test]
    fn a_bad_start_is_reported_at_once() {
        let mut f = Framer::default();
        assert!(f.next(b"GARBAGE\r\rmore", &Limits::default()).is_err());
    }

    #[test]
    fn missing_content_length_is_an_error_when_the_headers_end() {
        let mut f = Framer::default();
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n";
        assert_eq!(f.next(msg, &Limits::default()).unwrap(), None);
        let done = [&msg[..], b"\r\n"].concat();
        assert!(f.next(&done, &Limits::default()).is_err());
    }
}
