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
