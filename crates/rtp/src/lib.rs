//! `rtp`: RTP media as data, with no IO and no clock.
//!
//! This crate is what Switchboard's media engine (`media`) does to packets
//! and samples: it reads and writes RTP (RFC 3550 §5, the fixed header via
//! `rtp-rs`) and RTCP (RFC 3550 §6), keeps a relayed stream continuous when
//! its source changes, turns RFC 4733 telephone-events into digits and
//! digits into events, encodes and decodes G.711 and G.722, resamples
//! between 8 and 16 kHz, and reorders packets in a jitter buffer. It never
//! touches a socket or reads the time: callers pass bytes, sample counts and
//! `now` in, and get packets, samples, digits and errors out.
//!
//! It is not a transport, a session or a mixer: the `media` crate owns the
//! sockets, the pacing and the call's streams.
//!
//! Read in this order:
//! - [`packet`]: [`RtpPacket::parse`] and [`PacketBuilder`] (RFC 3550 §5.1);
//! - [`rewrite`]: [`Rewriter`], SSRC / sequence / timestamp continuity for
//!   the relay when a leg's source changes;
//! - [`rtcp`]: SR, RR, SDES, BYE and compound packets (§6.4–§6.6), and
//!   [`rtcp::ReceiverStats`], the per-source reception statistics (A.1, A.3,
//!   A.8) that fill report blocks;
//! - [`event`]: RFC 4733 telephone-events, [`DtmfReceiver`] and
//!   [`DtmfSender`];
//! - [`codec`]: [`Codec`], G.711 µ-law / A-law, G.722, and the 8 ↔ 16 kHz
//!   [`codec::resample`] filters;
//! - [`jitter`]: [`JitterBuffer`] for the paths that decode (player,
//!   recorder, mixer);
//! - [`error`]: one [`Error`] with a nested kind per module.
//!
//! Nothing here panics on input: every parser returns a typed error for
//! garbage (see `tests/mutation.rs` and the libFuzzer targets in `fuzz/`).

pub mod codec;
pub mod error;
pub mod event;
pub mod jitter;
pub mod packet;
pub mod rewrite;
pub mod rtcp;

pub use codec::{Codec, Decoder, Encoder};
pub use error::{BuildError, CodecError, Error, EventError, RtcpError, RtpError};
pub use event::{Digit, DtmfReceiver, DtmfSender, EventPacket, TelephoneEvent};
pub use jitter::{JitterBuffer, JitterStats, Playout, PushOutcome};
pub use packet::{PacketBuilder, RtpHeader, RtpPacket};
pub use rewrite::Rewriter;
pub use rtcp::{ReceiverStats, ReportBlock, RtcpPacket, SenderStats};
