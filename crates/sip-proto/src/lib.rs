//! `sip-proto`: SIP as data, with no IO and no clock.
//!
//! This crate is the protocol core of Switchboard. It reads and writes SIP
//! messages (RFC 3261 §7, §19, §20, §25; RFC 3581 `rport`; RFC 5118 IPv6
//! references) and runs the RFC 3261 §17 transaction state machines. It
//! never touches a socket or reads the time: callers pass bytes and `now` in
//! and get messages, errors and actions out (the sans-IO style of
//! quinn-proto and rustls).
//!
//! It is not a transport or a UA: the `sip-net` endpoint
//! feeds it datagrams and stream bytes ([`Message::parse`],
//! [`Message::frame_len`]) and answers what does not parse using
//! [`Error::status_code`] and [`salvage_request`].
//!
//! Read in this order:
//! - [`message`]: [`Request`], [`Response`], [`Message`], [`Message::parse`]
//!   and the serializer ([`Message::to_bytes`]);
//! - [`header`]: [`Headers`] (raw, ordered) and the typed header values
//!   ([`header::Via`], [`header::NameAddr`], ...), parsed on demand;
//! - [`uri`]: `sip:`, `sips:` and `tel:` URIs;
//! - [`error`]: one [`Error`] type and the status code each fault maps to;
//! - [`transaction`]: the four §17 machines, driven by events and `now`;
//! - [`dialog`]: §12 dialog state and the §13.3.1.4 2xx schedule, the same way.
//!
//! The parser accepts every message RFC 4475 and RFC 5118 call valid and
//! rejects the invalid ones with the error kind a UAS needs to answer them
//! (see `tests/corpus.rs`); parse → [`Message::to_bytes`] → parse gives an
//! equal message.

pub mod dialog;
pub mod digest;
pub mod error;
mod fast;
pub mod header;
pub mod message;
mod params;
mod parse;
mod scan;
pub mod transaction;
mod typed;
pub mod uri;
mod value;

pub use error::{Error, ErrorKind, Limit};
pub use header::{HeaderName, Headers};
pub use message::{Limits, Message, Method, Request, Response, Salvaged, salvage_request};
pub use uri::{Host, Uri};
