//! The RTP port pool (RFC 3550 §11): even RTP ports with the odd RTCP port
//! above them, leased from a configured range and returned on drop.
//!
//! A lease binds both UDP sockets before it is handed out, so a port that
//! another program holds is skipped rather than failing a call later.
//! Leases are taken at random from the free pairs of the range, not in
//! order: a host that cannot see the SDP cannot guess which port the next
//! call gets (so spraying "the next port" is no better than spraying all
//! of them, which the legs' source checks refuse). The most recently freed
//! pairs (up to half the pool, at most 64) cool down before they are drawn
//! again, so late packets of one call do not reach the next one.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;

use crate::error::Error;

/// A bounded pool of RTP/RTCP port pairs, cheap to clone (one pool shared
/// by every call).
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The range as configured, for messages.
    start: u16,
    end: u16,
    /// The first even port of the range.
    first: u16,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// One entry per pair: leased or not.
    leased: Vec<bool>,
    /// Count of `true` in `leased`.
    count: usize,
    /// Pairs freed most recently, oldest first: drawn only when nothing
    /// else is free.
    cooling: VecDeque<usize>,
    /// How many pairs `cooling` holds at most.
    cooling_max: usize,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent
        // (every update is a single assignment pair), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PortPool {
    /// A pool over `range` (for example `10000..=20000`): every even port
    /// `p` with `p + 1` also in the range is one RTP/RTCP pair.
    ///
    /// # Errors
    /// [`Error::InvalidRange`] when the range holds no pair.
    pub fn new(range: RangeInclusive<u16>) -> Result<PortPool, Error> {
        let (start, end) = (*range.start(), *range.end());
        let first = start.saturating_add(start % 2);
        let pairs = if first < end {
            usize::from((end - first).div_ceil(2))
        } else {
            0
        };
        if pairs == 0 || first == 0 {
            return Err(Error::InvalidRange { start, end });
        }
        Ok(PortPool {
            inner: Arc::new(Inner {
                start,
                end,
                first,
                state: Mutex::new(State {
                    leased: vec![false; pairs],
                    count: 0,
                    cooling: VecDeque::new(),
                    cooling_max: (pairs / 2).min(64),
                }),
            }),
        })
    }

    /// Number of pairs in the range.
    pub fn capacity(&self) -> usize {
        self.inner.state().leased.len()
    }

    /// Number of pairs leased now.
    pub fn in_use(&self) -> usize {
        self.inner.state().count
    }

    /// Leases a pair chosen at random among the free ones and binds its
    /// two UDP sockets on `ip`. Ports that another program holds are
    /// skipped.
    ///
    /// # Errors
    /// [`Error::Exhausted`] when no pair is free; [`Error::NoRuntime`]
    /// outside a tokio runtime; [`Error::Socket`] when binding fails for a
    /// reason other than "address in use" (for example an `ip` that is not
    /// one of this host's).
    pub fn allocate(&self, ip: IpAddr) -> Result<PortPair, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let inner = &self.inner;
        let mut state = inner.state();
        let pairs = state.leased.len();
        // A few random draws find a free pair at once unless the pool is
        // nearly full; then a scan from a random start finds any left.
        let start = rand::random_range(0..pairs);
        let draws = (0..8).map(|_| rand::random_range(0..pairs));
        let scan = (0..pairs).map(|step| (start + step) % pairs);
        let fallback = state.cooling.clone();
        for index in draws.chain(scan).chain(fallback) {
            if state.leased[index] {
                continue;
            }
            let cooling = state.cooling.iter().position(|&i| i == index);
            if let Some(at) = cooling {
                // Only once every other pair is leased (the fallback
                // draws come last).
                if state.count + state.cooling.len() < pairs {
                    continue;
                }
                state.cooling.remove(at);
            }
            // index < pairs <= (end - first + 1) / 2, so this fits in u16.
            let rtp_port = inner.first + 2 * index as u16;
            let Some((rtp, rtcp)) = bind_pair(ip, rtp_port)? else {
                continue;
            };
            state.leased[index] = true;
            state.count += 1;
            drop(state);
            // Made first, so that a failure below returns the pair.
            let lease = Lease {
                pool: Arc::clone(inner),
                index,
            };
            let rtp = to_tokio(rtp, SocketAddr::new(ip, rtp_port))?;
            let rtcp = to_tokio(rtcp, SocketAddr::new(ip, rtp_port + 1))?;
            return Ok(PortPair {
                rtp,
                rtcp,
                ip,
                rtp_port,
                _lease: lease,
            });
        }
        Err(Error::Exhausted {
            ip,
            start: inner.start,
            end: inner.end,
            leased: state.count,
            pairs,
        })
    }
}

/// Binds `port` and `port + 1`; `None` when either is in use.
fn bind_pair(
    ip: IpAddr,
    port: u16,
) -> Result<Option<(std::net::UdpSocket, std::net::UdpSocket)>, Error> {
    let bind = |port| {
        let addr = SocketAddr::new(ip, port);
        match std::net::UdpSocket::bind(addr) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::AddrInUse => Ok(None),
            Err(source) => Err(Error::Socket { addr, source }),
        }
    };
    let Some(rtp) = bind(port)? else {
        return Ok(None);
    };
    let Some(rtcp) = bind(port + 1)? else {
        return Ok(None);
    };
    Ok(Some((rtp, rtcp)))
}

fn to_tokio(socket: std::net::UdpSocket, addr: SocketAddr) -> Result<UdpSocket, Error> {
    socket
        .set_nonblocking(true)
        .and_then(|()| UdpSocket::from_std(socket))
        .map_err(|source| Error::Socket { addr, source })
}

/// A leased pair: the bound RTP (even) and RTCP (odd) sockets. The pair
/// goes back to the pool when this is dropped (with the sockets, so the
/// ports are free to bind again).
#[derive(Debug)]
pub struct PortPair {
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
    ip: IpAddr,
    rtp_port: u16,
    _lease: Lease,
}

impl PortPair {
    /// The address both sockets are bound on.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The even RTP port, for the SDP `m=` line.
    pub fn rtp_port(&self) -> u16 {
        self.rtp_port
    }

    /// The odd RTCP port (`rtp_port() + 1`).
    pub fn rtcp_port(&self) -> u16 {
        self.rtp_port + 1
    }

    /// The RTP socket's address.
    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.rtp_port)
    }
}

/// Returns its pair to the pool on drop. Declared after the sockets in
/// [`PortPair`], so they are closed first.
#[derive(Debug)]
struct Lease {
    pool: Arc<Inner>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.pool.state();
        if let Some(slot) = state.leased.get_mut(self.index)
            && *slot
        {
            *slot = false;
            state.count -= 1;
            if state.cooling_max > 0 {
                if state.cooling.len() == state.cooling_max {
                    state.cooling.pop_front();
                }
                state.cooling.push_back(self.index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_must_hold_a_pair() {
        assert!(matches!(
            PortPool::new(10001..=10001),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            PortPool::new(10001..=10002),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            PortPool::new(RangeInclusive::new(20000, 10000)),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            PortPool::new(0..=1),
            Err(Error::InvalidRange { .. })
        ));
        assert_eq!(PortPool::new(10000..=20000).unwrap().capacity(), 5000);
        assert_eq!(PortPool::new(10001..=10004).unwrap().capacity(), 1);
        assert_eq!(PortPool::new(65534..=65535).unwrap().capacity(), 1);
    }

    #[test]
    fn allocate_outside_a_runtime_is_an_error() {
        let pool = PortPool::new(23000..=23001).unwrap();
        assert!(matches!(
            pool.allocate(IpAddr::from([127, 0, 0, 1])),
            Err(Error::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn leases_are_not_handed_out_in_order() {
        let pool = PortPool::new(25000..=25999).unwrap();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let pairs: Vec<PortPair> = (0..10).map(|_| pool.allocate(ip).unwrap()).collect();
        let ports: Vec<u16> = pairs.iter().map(PortPair::rtp_port).collect();
        // In order, each would be the one before plus two (the old pool's
        // behaviour); at random, ten in a row like that has odds of 500^-9.
        assert!(
            ports.windows(2).any(|w| w[1] != w[0] + 2),
            "ports handed out in order: {ports:?}"
        );
        assert_eq!(pool.in_use(), 10);
        drop(pairs);
        assert_eq!(pool.in_use(), 0);
        // A nearly full pool still finds its last free pair.
        let small = PortPool::new(25000..=25009).unwrap();
        let all: Vec<PortPair> = (0..5).map(|_| small.allocate(ip).unwrap()).collect();
        assert_eq!(all.len(), 5);
        assert!(matches!(small.allocate(ip), Err(Error::Exhausted { .. })));
    }
}
