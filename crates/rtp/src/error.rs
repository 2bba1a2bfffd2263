//! Errors of the `rtp` crate: one [`enum@Error`] with a nested kind for each
//! module (RFC 3550 §5 and §6, RFC 4733 §2.3, the codecs).

use thiserror::Error;

/// Any error of this crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// An RTP packet did not parse.
    #[error("RTP packet: {0}")]
    Rtp(#[from] RtpError),
    /// An RTP packet could not be built.
    #[error("building RTP packet: {0}")]
    Build(#[from] BuildError),
    /// An RTCP packet did not parse or could not be built.
    #[error("RTCP: {0}")]
    Rtcp(#[from] RtcpError),
    /// A telephone-event payload did not parse or could not be built.
    #[error("telephone-event: {0}")]
    Event(#[from] EventError),
    /// A codec could not encode or decode.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
}

/// Why bytes are not an RTP packet (RFC 3550 §5.1, A.1 validity checks).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Fewer bytes than the 12-byte fixed header.
    #[error("{len} bytes, shorter than the 12-byte fixed header")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The version field is not 2.
    #[error("version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC list or header extension runs past the end of the datagram.
    #[error("header needs {needed} bytes (CSRC list and extension), datagram has {len}")]
    HeaderTruncated {
        /// Bytes the header claims.
        needed: usize,
        /// The datagram's length.
        len: usize,
    },
    /// The padding count is zero or larger than what follows the header.
    #[error("padding count {0} is zero or longer than the payload")]
    BadPadding(u8),
}

/// Why an RTP packet could not be built (RFC 3550 §5.1 field limits).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The payload type does not fit in 7 bits.
    #[error("payload type {0} is above 127")]
    PayloadType(u8),
    /// More than 15 contributing sources.
    #[error("{0} CSRCs, at most 15 fit in the header")]
    TooManyCsrcs(usize),
    /// The header extension is not a whole number of 32-bit words.
    #[error("header extension of {0} bytes is not a multiple of 4")]
    ExtensionNotAligned(usize),
    /// The header extension is longer than the builder can write.
    #[error("header extension of {0} bytes is longer than 65535")]
    ExtensionTooLong(usize),
    /// Padding must round the packet to a multiple of at least 2 bytes.
    #[error("padding to a multiple of {0} bytes; use 2 to 255")]
    PaddingMultiple(u8),
    /// The output buffer is shorter than the packet.
    #[error("buffer of {len} bytes, the packet needs {needed}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// The buffer's length.
        len: usize,
    },
}

/// Why bytes are not RTCP, or an RTCP packet could not be built (RFC 3550 §6.4–§6.6, A.2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer than the 4-byte common header, or an empty compound packet.
    #[error("{len} bytes at offset {offset}, shorter than an RTCP header")]
    TooShort {
        /// Where the packet starts in the compound.
        offset: usize,
        /// Bytes left from there.
        len: usize,
    },
    /// The version field is not 2.
    #[error("version {version} at offset {offset}, expected 2")]
    BadVersion {
        /// Where the packet starts in the compound.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// The length field runs past the end of the datagram.
    #[error("packet at offset {offset} claims {claimed} bytes, {available} left")]
    LengthOverrun {
        /// Where the packet starts in the compound.
        offset: usize,
        /// Bytes the length field claims.
        claimed: usize,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// The body is too short for what the header says it holds.
    #[error("{kind} at offset {offset}: body of {len} bytes too short for its count")]
    BodyTooShort {
        /// The packet type's name.
        kind: &'static str,
        /// Where the packet starts in the compound.
        offset: usize,
        /// The body's length.
        len: usize,
    },
    /// The padding count is zero or longer than the packet, or padding is not on the last packet.
    #[error("bad padding in packet at offset {offset}")]
    BadPadding {
        /// Where the packet starts in the compound.
        offset: usize,
    },
    /// An SDES chunk's items run past its packet or are not terminated.
    #[error("SDES chunk at offset {offset} is not terminated within its packet")]
    SdesUnterminated {
        /// Where the packet starts in the compound.
        offset: usize,
    },
    /// More than 31 report blocks, sources or chunks for one packet's 5-bit count.
    #[error("{0} items, at most 31 fit in one RTCP packet")]
    TooManyItems(usize),
    /// An SDES item or BYE reason longer than 255 bytes.
    #[error("text of {0} bytes, at most 255 fit")]
    TextTooLong(usize),
    /// A packet longer than the 16-bit length field can say.
    #[error("packet of {0} bytes is longer than RTCP's length field allows")]
    PacketTooLong(usize),
    /// An application-defined or unknown packet body that is not whole 32-bit words.
    #[error("body of {0} bytes is not a multiple of 4")]
    NotAligned(usize),
    /// A cumulative-lost count outside the 24-bit signed range.
    #[error("cumulative lost {0} does not fit in 24 bits")]
    LostOutOfRange(i32),
}

/// Why a telephone-event payload is bad (RFC 4733 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EventError {
    /// Fewer than the 4 bytes of one event.
    #[error("payload of {0} bytes, a telephone-event needs 4")]
    TooShort(usize),
    /// The volume does not fit in 6 bits.
    #[error("volume -{0} dBm0 is out of range 0..=63")]
    Volume(u8),
    /// A character that is not a DTMF digit.
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    NotADigit(char),
    /// An event duration of zero samples, or a step of zero.
    #[error("duration or update interval of zero samples")]
    ZeroDuration,
}

/// Why a codec could not encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// G.722 frames hold samples in pairs (two 16 kHz samples per byte).
    #[error("{0} samples; G.722 encodes 16 kHz samples in pairs")]
    OddSampleCount(usize),
    /// A payload type this crate does not encode or decode.
    #[error("payload type {0} is not a codec this crate handles")]
    Unsupported(u8),
    /// The G.722 library reported a failure.
    #[error("G.722: {0}")]
    G722(&'static str),
}
