//! `sdp`: the Session Description Protocol as data, with no IO and no
//! clock (RFC 8866 model, parser and serializer; RFC 3264 offer/answer;
//! RFC 3551 static payload types).
//!
//! It is what `chan-sip` and the media engine use to read a peer's SDP,
//! answer it with Switchboard's codecs, address and ports, build offers
//! for outbound legs, and learn after an exchange which codec goes where.
//! It does not open sockets, resolve names, pick ports or read the time:
//! callers pass those in ([`Local`], [`LocalSession`]).
//!
//! Read in this order:
//! - [`model`]: [`SessionDescription`], [`MediaDescription`] and the typed
//!   accessors (rtpmap, fmtp, ptime, direction, effective `c=`,
//!   telephone-event);
//! - [`parse()`] / [`parse_with`] with [`Limits`], and the serializer
//!   (`Display` / [`SessionDescription::to_bytes`], CRLF);
//! - [`codec`]: [`RtpMap`], the static payload type table, [`Codec`];
//! - [`offer_answer`]: [`offer`], [`answer`], [`negotiate`],
//!   [`rewrite_connection`], [`LocalSession`] (`o=` versioning);
//! - [`error`]: one [`Error`] type naming the line and the fault.
//!
//! Parsing is strict on the lines the model types (a malformed `m=`, `c=`,
//! `o=`, `t=` or `b=` is an error with its line number) and lenient on
//! attributes: unknown ones are kept in order and written back. Every
//! description [`parse()`] accepts serializes to bytes that parse to an
//! equal model (see `tests/mutation.rs`).
//!
//! A call's first exchange, as `chan-sip` and the media engine see it:
//!
//! ```
//! use std::net::IpAddr;
//! use sdp::{Codec, Direction, Local, LocalSession, Role};
//!
//! let invite_body = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.5\r\ns=-\r\n\
//! c=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\n\
//! a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n";
//! let offer = sdp::parse(invite_body)?;
//!
//! // Our address, codecs in our order, one RTP port per m= section.
//! let pbx: IpAddr = "203.0.113.10".parse().unwrap();
//! let codecs = ["PCMU", "PCMA", "telephone-event"]
//!     .iter()
//!     .filter_map(|c| Codec::by_name(c))
//!     .collect();
//! let local = Local::new(pbx, codecs, vec![30000]);
//! let mut leg = LocalSession::with_id(4242, pbx); // one per leg, kept for re-INVITEs
//! let answer = sdp::answer(&offer, &local, &mut leg);
//! let body_200_ok = answer.to_bytes();
//! assert!(body_200_ok.starts_with(b"v=0\r\no=- 4242 4242 IN IP4 203.0.113.10\r\n"));
//!
//! // What the media engine needs for m= section 0.
//! let streams = sdp::negotiate(&offer, &answer, Role::Answerer)?;
//! let audio = &streams[0];
//! let codec = audio.codec.as_ref().unwrap();
//! assert_eq!(codec.rtpmap.encoding, "PCMU"); // our preference, the offer's number
//! assert_eq!(audio.telephone_event.as_ref().unwrap().send_payload_type, 101);
//! assert_eq!(audio.remote, Some("192.0.2.5:4000".parse().unwrap()));
//! assert_eq!(audio.direction, Direction::SendRecv);
//!
//! // Anchoring: the other leg gets the same offer on our address and port.
//! let mut outbound = offer.clone();
//! sdp::rewrite_connection(&mut outbound, pbx, &[30002]);
//! let mut b_leg = LocalSession::with_id(4243, pbx);
//! let outbound = b_leg.stamp(outbound);
//! assert_eq!(outbound.rtp_address(0), Some("203.0.113.10:30002".parse().unwrap()));
//! # Ok::<(), sdp::Error>(())
//! ```

pub mod codec;
pub mod error;
pub mod model;
pub mod offer_answer;
mod parse;
mod write;

pub use codec::{Codec, MediaKind, RtpMap, static_payload_type};
pub use error::{Error, Limit};
pub use model::{
    Address, Attribute, Bandwidth, Connection, Direction, Fmtp, MediaDescription, Origin,
    SessionDescription, TelephoneEvent, Timing,
};
pub use offer_answer::{
    Local, LocalSession, NegotiatedCodec, Role, Stream, answer, negotiate, offer,
    rewrite_connection,
};
pub use parse::{Limits, parse, parse_with};
