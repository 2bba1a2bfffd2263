//! `sip-proto`: SIP as data, with no IO and no clock.
//!
//! This crate is the protocol core of Switchboard. It reads and writes SIP
//! messages (RFC 3261 §7, §19, §20, §25; RFC 3581 `rport`; RFC 5118 IPv6
//! references) and runs the RFC 3261 §17 transaction state machines. It
//! never touches a socket or reads the time: callers pass bytes and `now` in
//! and get messages, errors and actions out (the sans-IO style of
//! quinn-proto and rustls).
//!
//! Read in this order:
//! - [`message`]: [`Request`], [`Response`], [`Message`] and [`Message::parse`];
//! - [`header`]: [`Headers`] (raw, ordered) and the typed header values;
//! - [`uri`]: `sip:`, `sips:` and `tel:` URIs;
//! - [`transaction`]: the four §17 machines, driven by events and `now`.

pub mod error;
pub mod header;
pub mod message;
pub mod transaction;
pub mod uri;

