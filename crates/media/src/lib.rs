//! `media`: Switchboard's media engine, the part that owns RTP sockets.
//!
//! Every answered or bridged call is anchored: both legs' RTP goes through
//! Switchboard's ports (DESIGN.md "Media"). This crate leases those ports,
//! receives and sends the packets, latches onto where a phone's RTP really
//! comes from (symmetric RTP, RFC 4961), and joins two legs' media. What it
//! does to packets and samples (parsing, rewriting, codecs) is the `rtp`
//! crate's; this crate adds the sockets, the tasks and the policy. It knows
//! nothing of SIP: `chan-sip` reads the SDP and hands over addresses,
//! payload types and codecs.
//!
//! Read in this order:
//! - [`pool`]: [`PortPool`] leases an even RTP / odd RTCP [`PortPair`] from
//!   `media.rtp_ports` (RFC 3550 §11);
//! - [`leg`]: [`Leg`], one call leg's sockets, remote address and
//!   symmetric-RTP latching (RFC 4961), with its [`LegHandle`] (counters,
//!   SDP changes) and [`MediaTimeout`];
//! - [`bridge`]: [`Bridge`], one task relaying (or transcoding) media
//!   between two legs, with stream continuity and RFC 4733 passthrough;
//! - [`echo`]: [`Echo`], a leg's audio sent back to it;
//! - [`report`]: the RTCP reports each leg sends for the streams it
//!   terminates (RFC 3550 §6);
//! - [`error`]: one [`Error`].

pub mod bridge;
pub mod echo;
pub mod error;
pub mod leg;
mod path;
pub mod pool;
pub mod report;

pub use bridge::Bridge;
pub use echo::Echo;
pub use error::Error;
pub use leg::{
    Latching, Leg, LegHandle, LegStats, MediaTimeout, PayloadKind, Received, StreamParams,
};
pub use pool::{PortPair, PortPool};
