//! Errors of the SIP message layer, and the status code each one maps to
//! (RFC 3261 §8.2, §21.4; RFC 4475 says which faults get which answer).

use std::borrow::Cow;
use std::fmt;

use crate::message::Method;

/// Which size limit of [`crate::Limits`] a message went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`crate::Limits::max_message_size`]: the whole message (or datagram).
    MessageSize,
    /// [`crate::Limits::max_body_size`]: the body, or the Content-Length.
    BodySize,
    /// [`crate::Limits::max_headers`]: the number of header fields.
    HeaderCount,
    /// [`crate::Limits::max_header_line`]: one header field, folds included.
    HeaderLine,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::MessageSize => "message size",
            Limit::BodySize => "body size",
            Limit::HeaderCount => "header count",
            Limit::HeaderLine => "header field length",
        })
    }
}

/// Why a SIP message, header value or URI was refused.
///
/// Every variant's text says what was wrong and where, e.g.
/// `Via header (line 3): missing branch parameter`. Line numbers count the
/// start line as line 1 and point at the first line of a folded header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request line or status line is malformed.
    #[error("start line: {reason}")]
    StartLine {
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The SIP-Version is well formed but not `SIP/2.0`.
    #[error("start line: unsupported protocol version {version:?} (only SIP/2.0 is supported)")]
    Version {
        /// The version as received (cut to 32 characters).
        version: String,
    },
    /// A header field is malformed (its name, or the value of a header this
    /// crate knows the grammar of).
    #[error("{name} header{}: {reason}", at_line(*.line))]
    Header {
        /// The header's name (canonical form), or `header` when the name
        /// itself is unreadable.
        name: Cow<'static, str>,
        /// Line of the message where the header starts, when known.
        line: Option<usize>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A header every request/response must carry is absent.
    #[error("missing mandatory {name} header")]
    MissingHeader {
        /// The header's canonical name.
        name: &'static str,
    },
    /// A header that may appear once appears again.
    #[error("{name} header (line {line}): may appear only once")]
    DuplicateHeader {
        /// The header's canonical name.
        name: &'static str,
        /// Line of the second occurrence.
        line: usize,
    },
    /// Content-Length is malformed, duplicated, missing on a stream, or
    /// larger than the bytes that follow the header section in a datagram.
    #[error("Content-Length{}: {reason}", at_line(*.line))]
    ContentLength {
        /// Line of the offending Content-Length header, when there is one.
        line: Option<usize>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The message goes over one of the configured [`crate::Limits`].
    #[error("{what} of {actual} is over the limit of {limit}")]
    TooLarge {
        /// Which limit.
        what: Limit,
        /// The size seen (bytes, or headers for [`Limit::HeaderCount`]);
        /// for a number too large to count, `usize::MAX`.
        actual: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The message ends before its header section does.
    #[error("message truncated: {reason}")]
    Truncated {
        /// What is missing.
        reason: &'static str,
    },
    /// A URI is malformed (the Request-URI, or one given to [`crate::Uri::parse`]).
    #[error("{context}: invalid URI: {reason}")]
    Uri {
        /// Where the URI was (`Request-URI`, `URI`, ...).
        context: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The CSeq method differs from the request line's method (RFC 3261 §8.1.1.5).
    #[error("CSeq method {cseq} does not match the request method {method}")]
    MethodMismatch {
        /// The request line's method.
        method: String,
        /// The CSeq header's method.
        cseq: String,
    },
}

fn at_line(line: Option<usize>) -> String {
    match line {
        Some(l) => format!(" (line {l})"),
        None => String::new(),
    }
}

/// The broad class of an [`Error`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed request line or status line.
    StartLine,
    /// SIP-Version other than 2.0 (answered with 505).
    Version,
    /// Malformed header field.
    Header,
    /// Mandatory header missing.
    MissingHeader,
    /// Single-valued header repeated.
    DuplicateHeader,
    /// Content-Length malformed, repeated, missing (stream) or too big for
    /// the datagram.
    ContentLength,
    /// Over a configured size limit.
    TooLarge,
    /// Header section not terminated.
    Truncated,
    /// Malformed URI.
    Uri,
    /// CSeq method and start-line method differ.
    Method,
    /// Anything else.
    Other,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::StartLine { .. } => ErrorKind::StartLine,
            Error::Version { .. } => ErrorKind::Version,
            Error::Header { .. } => ErrorKind::Header,
            Error::MissingHeader { .. } => ErrorKind::MissingHeader,
            Error::DuplicateHeader { .. } => ErrorKind::DuplicateHeader,
            Error::ContentLength { .. } => ErrorKind::ContentLength,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Truncated { .. } => ErrorKind::Truncated,
            Error::Uri { .. } => ErrorKind::Uri,
            Error::MethodMismatch { .. } => ErrorKind::Method,
        }
    }

    /// The SIP status a UAS answers a request with when it fails like this:
    /// 505 for an unknown SIP-Version; 413 for a message or body over the
    /// limit; 501 for a CSeq mismatch whose request method is unknown
    /// (RFC 4475 §3.1.2.18 prefers it); 400 for everything else (including
    /// too many or too long header fields). 513 is not used.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Version { .. } => 505,
            Error::TooLarge {
                what: Limit::MessageSize | Limit::BodySize,
                ..
            } => 413,
            Error::MethodMismatch { method, .. }
                if matches!(Method::from_token(method), Method::Extension(_)) =>
            {
                501
            }
            _ => 400,
        }
    }

    /// Short text for a `Warning: 399 host "..."` header: this error's
    /// message with `"` and `\` replaced and control characters turned into
    /// spaces, cut to 200 characters.
    pub fn warning_text(&self) -> String {
        self.to_string()
            .chars()
            .take(200)
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect()
    }

    /// A [`Error::Header`] for `name`.
    pub(crate) fn header(
        name: &'static str,
        line: Option<usize>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::Header {
            name: Cow::Borrowed(name),
            line,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes() {
        let e = Error::header("Via", Some(3), "missing branch parameter");
        assert_eq!(
            e.to_string(),
            "Via header (line 3): missing branch parameter"
        );
        assert_eq!(e.status_code(), 400);
        assert_eq!(e.kind(), ErrorKind::Header);
        let e = Error::header("Via", None, "x \"y\"\r\n");
        assert_eq!(e.warning_text(), "Via header: x 'y'  ");
        let v = Error::Version {
            version: "SIP/7.0".into(),
        };
        assert_eq!(v.status_code(), 505);
        let m = Error::MethodMismatch {
            method: "NEWMETHOD".into(),
            cseq: "INVITE".into(),
        };
        assert_eq!(m.status_code(), 501);
        let m = Error::MethodMismatch {
            method: "OPTIONS".into(),
            cseq: "INVITE".into(),
        };
        assert_eq!(m.status_code(), 400);
        let t = Error::TooLarge {
            what: Limit::BodySize,
            actual: 10,
            limit: 5,
        };
        assert_eq!(t.status_code(), 413);
        assert_eq!(t.to_string(), "body size of 10 is over the limit of 5");
    }
}
