//! Errors of the endpoint: binding listeners and bad listener strings.

use std::net::SocketAddr;

/// What went wrong starting or running the endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener string is not `udp:ADDR:PORT` or `tcp:ADDR:PORT`.
    #[error(
        "listener {0:?} is not of the form udp:ADDR:PORT or tcp:ADDR:PORT (IPv6 as [::1]:5060)"
    )]
    BadListen(String),
    /// A socket could not be bound (port in use, no permission, no such address).
    #[error("cannot listen on {transport}:{addr}: {source}")]
    Bind {
        /// Transport of the listener.
        transport: crate::Transport,
        /// Address we tried to bind.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No listener was configured.
    #[error("no SIP listener configured: set sip.listen, e.g. [\"udp:0.0.0.0:5060\"]")]
    NoListeners,
}
