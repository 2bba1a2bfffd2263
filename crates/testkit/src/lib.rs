//! `testkit`: what Switchboard's integration tests use to talk to the real
//! thing — the `switchboard` binary started on port 0 ([`Server`]) and a
//! small SIP user agent over real UDP and TCP sockets ([`Ua`]).
//!
//! Nothing here is a mock: the server is the release or test build of the
//! binary, the sockets are real, and every wait is bounded by a timeout.

mod phone;
mod server;
mod ua;

pub use phone::{Dialog, InCall, OutCall, Phone, sdp};
pub use server::{Server, ServerError};
pub use ua::{DigestChallenge, RawResponse, RequestBuilder, Ua, UaError, challenges};
