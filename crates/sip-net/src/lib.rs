//! `sip-net`: the tokio side of SIP — UDP and TCP transports and the endpoint
//! that feeds their bytes to `sip-proto`'s parser and transaction machines.
//!
//! RFC 3261 §18 (transports), RFC 3581 (`rport`), RFC 5626 §3.5.1 (CRLF
//! keep-alive over TCP) and §4.4.2 (STUN keep-alive over UDP). The endpoint answers what a PBX core answers by itself
//! (OPTIONS, 400/405/416/420/481/483/501/505) and will hand the rest to
//! transaction users as they land. Nothing a peer sends can panic it or grow
//! its memory without bound: messages, TCP buffers, connections (in all and
//! per IP), send queues, the transaction table and each UDP source's rate
//! all have limits, and what the endpoint answers by itself (and digest
//! challenges) is answered statelessly, keeping nothing.
//!
//! Read `endpoint` first (the flow of one message), then `transport`
//! (sockets, connection limits) and `framing`, `ratelimit` (the UDP token
//! buckets), `tx` (server transactions), `inspect` (the §8.2 checks) and
//! `response` (building answers).

mod config;
mod endpoint;
mod error;
mod framing;
pub mod inspect;
pub mod invite;
mod keepalive;
mod ratelimit;
pub mod response;
mod service;
mod stats;
mod transport;
mod tx;

pub use config::{EndpointConfig, ListenAddr, Transport};
pub use endpoint::{ClientError, Endpoint, EndpointHandle};
pub use error::Error;
pub use invite::{ClientInviteTx, InviteEvent, InviteTx, OkResender};
pub use service::{BoxFuture, Incoming, Service, ServiceMux, Tap};
