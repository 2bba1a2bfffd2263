//! `sip-net`: the tokio side of SIP — UDP and TCP transports and the endpoint
//! that feeds their bytes to `sip-proto`'s parser and transaction machines.
//!
//! RFC 3261 §18 (transports), RFC 3581 (`rport`), RFC 5626 §3.5.1 (CRLF
//! keep-alive). The endpoint answers what a PBX core answers by itself
//! (OPTIONS, 400/405/420/483/501/505) and hands the rest to the transaction
//! user. Nothing a peer sends can panic it or grow its memory without bound.

mod config;
mod endpoint;
mod error;

pub use config::{EndpointConfig, ListenAddr, Transport};
pub use endpoint::Endpoint;
pub use error::Error;
