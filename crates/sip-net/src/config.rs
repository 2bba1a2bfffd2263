//! Endpoint configuration: listeners (`udp:ADDR:PORT`, `tcp:ADDR:PORT`), domain, limits, timers.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// A SIP transport the endpoint can listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// RFC 3261 §18 over UDP datagrams.
    Udp,
    /// RFC 3261 §18 over TCP streams, framed by Content-Length.
    Tcp,
}

impl Transport {
    /// The lowercase name (`udp`, `tcp`): URIs' `transport` parameter,
    /// listeners, logs, metric labels and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// The transport token used in Via headers (`UDP`, `TCP`).
    pub fn as_via_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One listener: `udp:0.0.0.0:5060`, `tcp:[::1]:5060`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    /// Transport of the listener.
    pub transport: Transport,
    /// Socket address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
}

impl FromStr for ListenAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::BadListen(s.to_owned());
        let (proto, rest) = s.split_once(':').ok_or_else(bad)?;
        let transport = match proto.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return Err(bad()),
        };
        let addr = rest.parse().map_err(|_| bad())?;
        Ok(ListenAddr { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Everything the endpoint needs to run.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Listeners to bind.
    pub listen: Vec<ListenAddr>,
    /// The SIP domain (host of local URIs, digest realm later).
    pub domain: String,
    /// Value of the `Server` / `User-Agent` header.
    pub user_agent: String,
    /// Parser size limits.
    pub limits: sip_proto::message::Limits,
    /// RFC 3261 timer base values.
    pub t1: Duration,
    /// RFC 3261 T2.
    pub t2: Duration,
    /// RFC 3261 T4.
    pub t4: Duration,
    /// Largest number of simultaneous TCP connections.
    pub max_tcp_connections: usize,
    /// A TCP connection with no complete message for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Largest number of TCP connections accepted from one IP address.
    pub tcp_max_per_ip: usize,
    /// A message begun on a TCP connection must be complete within this
    /// long, or the connection is closed (slowloris).
    pub tcp_message_timeout: Duration,
    /// Of `max_tcp_connections`, how many only connections we open (to
    /// phones) may use, so peers connecting to us cannot take them all.
    pub tcp_outbound_reserved: usize,
    /// Largest number of live server transactions; a new request past it
    /// gets 503 with Retry-After.
    pub max_transactions: usize,
    /// UDP datagrams a second one source may send on average (0: no limit).
    pub udp_rate: u32,
    /// UDP datagrams one source may send at once above `udp_rate`.
    pub udp_burst: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            listen: Vec::new(),
            domain: "localhost".to_owned(),
            user_agent: concat!("Switchboard/", env!("CARGO_PKG_VERSION")).to_owned(),
            limits: sip_proto::message::Limits::default(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            max_tcp_connections: 4096,
            tcp_idle_timeout: Duration::from_secs(600),
            tcp_max_per_ip: 128,
            tcp_message_timeout: Duration::from_secs(20),
            tcp_outbound_reserved: 128,
            max_transactions: 1_000_000,
            udp_rate: 100_000,
            udp_burst: 100_000,
        }
    }
}
