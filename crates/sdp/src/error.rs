//! Errors of the SDP parser (RFC 8866 §5, §9) and of offer/answer
//! (RFC 3264 §6, §8); each names the line and what is wrong with it.

use std::borrow::Cow;
use std::fmt;

/// Which bound of [`crate::Limits`] a description went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`crate::Limits::max_size`]: the whole description, in bytes.
    Size,
    /// [`crate::Limits::max_lines`]: the number of lines.
    Lines,
    /// [`crate::Limits::max_media`]: the number of `m=` sections.
    MediaSections,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Size => "bytes",
            Limit::Lines => "lines",
            Limit::MediaSections => "m= sections",
        })
    }
}

/// Why a session description was refused, or an offer/answer exchange
/// could not be read.
///
/// Line numbers count the `v=` line as line 1. Messages read like
/// `line 5: m= line needs "media port proto fmt..."`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One line is malformed.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A line RFC 8866 §5 requires is absent.
    #[error("missing mandatory {what} line")]
    Missing {
        /// The line, e.g. `o=` or `t=`.
        what: &'static str,
    },
    /// The description is empty.
    #[error("empty session description")]
    Empty,
    /// The description goes over one of the [`crate::Limits`].
    #[error("session description has more than {max} {limit}")]
    TooLarge {
        /// Which bound.
        limit: Limit,
        /// The bound's value.
        max: usize,
    },
    /// An answer does not have the offer's `m=` sections (RFC 3264 §6:
    /// same number, same order).
    #[error("answer has {answer} m= sections but the offer has {offer} (RFC 3264 §6)")]
    SectionCount {
        /// `m=` sections in the offer.
        offer: usize,
        /// `m=` sections in the answer.
        answer: usize,
    },
}

impl Error {
    pub(crate) fn syntax(line: usize, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::Syntax {
            line,
            reason: reason.into(),
        }
    }

    /// The line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Syntax { line, .. } => Some(*line),
            _ => None,
        }
    }
}
