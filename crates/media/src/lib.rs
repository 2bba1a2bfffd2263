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
//!   symmetric-RTP latching (RFC 4961), guarded by [`latch`] (which
//!   sources may latch: [`Latching`]), with its [`LegHandle`] (counters,
//!   SDP changes, RFC 4733 [`Digits`]) and [`MediaTimeout`];
//! - [`bridge`]: [`Bridge`], one task relaying (or transcoding) media
//!   between two legs, with stream continuity and RFC 4733 passthrough;
//! - [`echo`]: [`Echo`], a leg's audio sent back to it;
//! - [`prompt`]: [`Prompt`], an announcement loaded from a WAV file;
//! - [`player`]: [`Player`], a prompt sent on a leg as paced RTP;
//! - [`listener`]: [`Listener`], a leg received from while nothing plays;
//! - [`recorder`]: [`Recorder`], what the peer sends decoded into a
//!   [`Recording`];
//! - [`tones`]: call-progress tones made here (ringback);
//! - [`report`]: the RTCP reports each leg sends for the streams it
//!   terminates (RFC 3550 §6);
//! - [`error`]: one [`Error`].
//!
//! A call as `chan-sip` drives it (the call task owns the legs and the
//! bridge; nothing here is shared between calls but the pool):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::IpAddr;
//! use std::time::Duration;
//!
//! use media::{Bridge, Leg, PortPool, StreamParams};
//! use sdp::{Codec, Local, LocalSession, Role};
//!
//! // Once, from the config's `media.rtp_ports`; clones share it.
//! let pool = PortPool::new(26000..=26099)?;
//! let pbx: IpAddr = "127.0.0.1".parse()?;
//!
//! // The caller's INVITE: lease a port pair, answer with it.
//! let offer = sdp::parse(
//!     b"v=0\r\no=alice 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\n\
//!       t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
//! )?;
//! let ports = pool.allocate(pbx)?;
//! let codecs = ["PCMU", "PCMA", "telephone-event"]
//!     .iter()
//!     .filter_map(|c| Codec::by_name(c))
//!     .collect();
//! let local = Local::new(pbx, codecs, vec![ports.rtp_port()]);
//! let answer = sdp::answer(&offer, &local, &mut LocalSession::with_id(1, pbx));
//! let streams = sdp::negotiate(&offer, &answer, Role::Answerer)?;
//! // The SDP names a private address: the leg latches onto where the
//! // phone's RTP really comes from, taken only from the IP its INVITE came
//! // from (or the SDP's), never from a stranger that sprays our ports.
//! let (params, remote) = StreamParams::from_sdp(&streams[0])?;
//! assert_eq!(params.recv_event_payload_type, Some(101));
//! let invite_source: IpAddr = "127.0.0.1".parse()?;
//! let caller = Leg::new(ports, params, remote).with_signalling(Some(invite_source));
//! let caller_media = caller.handle();
//!
//! // The callee's leg, from its own exchange (`Role::Offerer`): here PCMA.
//! let callee = Leg::new(pool.allocate(pbx)?, StreamParams::new(rtp::Codec::Pcma), None);
//!
//! // Bridged when the callee answers; a re-INVITE updates a leg through
//! // its handle (`set_remote`) while the bridge runs.
//! let bridge = Bridge::start(caller, callee);
//! assert!(bridge.is_transcoding()); // PCMU <-> PCMA
//!
//! // The call task waits for its SIP events and for `media.rtp_timeout`.
//! let rtp_timeout = caller_media.media_timeout(Duration::from_millis(10));
//! tokio::select! {
//!     _silent_for = rtp_timeout.expired() => { /* BYE both legs */ }
//! }
//! let (caller, callee) = bridge.stop().await?;
//! drop((caller, callee)); // ports back to the pool
//! assert_eq!(pool.in_use(), 0);
//! # Ok(())
//! # }
//! ```

pub mod bridge;
mod done;
pub mod echo;
pub mod error;
pub mod latch;
pub mod leg;
pub mod listener;
mod path;
pub mod player;
pub mod pool;
pub mod prompt;
pub mod recorder;
pub mod report;
pub mod tones;

pub use bridge::Bridge;
pub use echo::Echo;
pub use error::Error;
pub use latch::Latching;
pub use leg::{
    Digits, Leg, LegHandle, LegStats, MediaTimeout, PayloadKind, Received, StreamParams,
};
pub use listener::Listener;
pub use player::Player;
pub use pool::{IDLE_FILES_SHARE, IDLE_MAX, PortPair, PortPool, QUARANTINE};
pub use prompt::{Prompt, WavError};
pub use recorder::{Recorder, Recording};
