//! The media engine's errors: what failed, on which address or port range,
//! and what the operator can change. WAV problems (prompts, recordings)
//! are detailed by [`WavError`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::prompt::WavError;

/// Everything the `media` crate can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configured port range holds no even RTP port whose odd RTCP
    /// neighbour is also in the range (RFC 3550 §11).
    #[error(
        "media.rtp_ports {start}-{end} holds no even/odd RTP/RTCP port pair; give a range of at least two ports starting at an even one"
    )]
    InvalidRange {
        /// First port of the range.
        start: u16,
        /// Last port of the range.
        end: u16,
    },
    /// Every pair of the range is leased or bound by another program.
    #[error(
        "no free RTP/RTCP port pair on {ip} in {start}-{end}: {leased} of {pairs} pairs are in use by calls, the rest are taken by other programs; widen media.rtp_ports or end calls"
    )]
    Exhausted {
        /// The address the pair was wanted on.
        ip: IpAddr,
        /// First port of the range.
        start: u16,
        /// Last port of the range.
        end: u16,
        /// Pairs leased to legs.
        leased: usize,
        /// Pairs in the range.
        pairs: usize,
    },
    /// Sockets can only be made inside a tokio runtime with IO enabled.
    #[error("RTP sockets need a tokio runtime with IO enabled; allocate ports from inside one")]
    NoRuntime,
    /// A socket operation failed other than with "address in use".
    #[error("RTP socket {addr}: {source}")]
    Socket {
        /// The local address concerned.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// An SDP stream names a codec the media engine does not know.
    #[error("codec {0} is not one the media engine handles (PCMU, PCMA, G722)")]
    UnsupportedCodec(String),
    /// An SDP stream was refused or has no codec.
    #[error("the SDP stream was refused or names no codec")]
    NoCodec,
    /// A media task (bridge, echo, player, listener, recorder) panicked or
    /// its runtime shut down.
    #[error(
        "the media task ended abnormally (panicked, or its runtime shut down); its legs and ports are gone"
    )]
    TaskFailed,
    /// A prompt's WAV file is missing, unreadable or not in a format the
    /// player takes (see [`WavError`]).
    #[error("prompt {}: {problem}", path.display())]
    Wav {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: WavError,
    },
    /// Samples given as a prompt have an unusable rate or length.
    #[error("prompt: {0}")]
    Prompt(#[source] WavError),
    /// A recording could not be written.
    #[error("cannot write recording {}: {source}", path.display())]
    WriteWav {
        /// The file.
        path: PathBuf,
        /// What the OS (or the WAV writer) said.
        #[source]
        source: std::io::Error,
    },
}
