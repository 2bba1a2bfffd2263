//! Transactions (RFC 3261 §17): the four client and server state machines,
//! their timers, and the keys that match a message to its transaction.
//!
//! - [`ClientInvite`]: §17.1.1 (Figure 5), with the RFC 6026 "Accepted"
//!   state and Timer M;
//! - [`ClientNonInvite`]: §17.1.2 (Figure 6);
//! - [`ServerInvite`]: §17.2.1 (Figure 7), with the RFC 6026 "Accepted"
//!   state and Timer L;
//! - [`ServerNonInvite`]: §17.2.2 (Figure 8);
//! - [`TransactionKey`]: matching responses to client transactions
//!   (§17.1.3) and requests to server transactions (§17.2.3, including the
//!   RFC 2543 fallback).
//!
//! The machines are sans-IO. They never see a socket or a clock and they do
//! not parse SIP: a message is opaque [`Bytes`] built by the caller, a
//! response is known by its status code. The endpoint that owns the sockets
//! feeds each machine events with the current [`Instant`] (`handle_*(…,
//! now)`) and performs the [`Action`]s that come back, in order. It asks
//! [`poll_timeout`](ClientInvite::poll_timeout) for the next deadline and
//! calls [`handle_timeout`](ClientInvite::handle_timeout) when it passes.
//! When an [`Action::Terminated`] comes out, the transaction is over: the
//! endpoint removes it from its table and later events are ignored.
//!
//! Timer values (RFC 3261 Table 4, RFC 6026 §8.11), from [`Timers`]:
//!
//! | Timer | Machine            | Value                                   |
//! |-------|--------------------|-----------------------------------------|
//! | A     | client INVITE      | T1, doubling; unreliable transport only |
//! | B     | client INVITE      | 64·T1                                   |
//! | D     | client INVITE      | 32 s unreliable, 0 reliable             |
//! | M     | client INVITE      | 64·T1 (RFC 6026 Accepted)               |
//! | E     | client non-INVITE  | T1, doubling up to T2; unreliable only  |
//! | F     | client non-INVITE  | 64·T1                                   |
//! | K     | client non-INVITE  | T4 unreliable, 0 reliable               |
//! | G     | server INVITE      | T1, doubling up to T2; unreliable only  |
//! | H     | server INVITE      | 64·T1                                   |
//! | I     | server INVITE      | T4 unreliable, 0 reliable               |
//! | L     | server INVITE      | 64·T1 (RFC 6026 Accepted)               |
//! | J     | server non-INVITE  | 64·T1 unreliable, 0 reliable            |
//!
//! A Timer D, I, J or K of zero (a reliable transport) takes effect at once:
//! the machine moves to Terminated in the call that would have started it.
//! A retransmission interval of zero
//! (T1 or T2 configured as zero) disables retransmission rather than
//! spinning. A deadline too far in the future for [`Instant`] never fires.

use std::time::{Duration, Instant};

use bytes::Bytes;

mod client;
mod key;
mod server;

pub use client::{ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState};
pub use key::{MAGIC_COOKIE, Rfc2543Parts, TransactionKey, is_rfc3261_branch, new_branch};
pub use server::{ServerInvite, ServerInviteState, ServerNonInvite, ServerNonInviteState};

/// Timer D on an unreliable transport (RFC 3261 §17.1.1.2: "at least 32
/// seconds"). It is zero on a reliable transport.
pub const TIMER_D: Duration = Duration::from_secs(32);

/// How long a [`ServerInvite`] waits for the TU's first response before it
/// asks for a 100 Trying ([`Action::SendTrying`], RFC 3261 §17.2.1).
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The base timer values of RFC 3261 §17.1.1.1 and Table 4, from which all
/// transaction timers are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timers {
    /// T1, the round-trip time estimate: the first retransmission interval
    /// (Timers A, E, G) and the unit of the 64·T1 timeouts (B, F, H, J, L,
    /// M). Default 500 ms.
    pub t1: Duration,
    /// T2, the longest retransmission interval for non-INVITE requests and
    /// INVITE responses (Timers E and G). Default 4 s.
    pub t2: Duration,
    /// T4, the longest time a message stays in the network (Timers I and K
    /// on unreliable transports). Default 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: the value of Timers B, F, H, L and M, and of J on an
    /// unreliable transport (32 s with the default T1).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Whether the transport a transaction runs over is reliable (TCP, TLS,
/// SCTP, WebSocket) or not (UDP). It decides which timers run (RFC 3261
/// §17: retransmission timers A, E and G run only over unreliable
/// transports, and D, I, J and K are zero over reliable ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// A reliable transport (TCP, TLS, SCTP, WebSocket): no retransmissions.
    Reliable,
    /// An unreliable transport (UDP): the machines retransmit.
    Unreliable,
}

impl Reliability {
    /// `true` for [`Reliability::Reliable`].
    pub fn is_reliable(self) -> bool {
        matches!(self, Reliability::Reliable)
    }
}

/// The names of the RFC 3261 §17 transaction timers (plus L and M from
/// RFC 6026), as reported by [`Action::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client INVITE retransmission.
    A,
    /// Client INVITE timeout: no response at all.
    B,
    /// Client INVITE wait in Completed for final response retransmissions.
    D,
    /// Client non-INVITE retransmission.
    E,
    /// Client non-INVITE timeout: no final response.
    F,
    /// Server INVITE final response retransmission.
    G,
    /// Server INVITE timeout: no ACK for the non-2xx final response.
    H,
    /// Server INVITE wait in Confirmed for ACK retransmissions.
    I,
    /// Server non-INVITE wait in Completed for request retransmissions.
    J,
    /// Client non-INVITE wait in Completed for response retransmissions.
    K,
    /// Server INVITE wait in Accepted (RFC 6026).
    L,
    /// Client INVITE wait in Accepted (RFC 6026).
    M,
}

/// What a machine asks its endpoint to do. Perform the actions of one call
/// in the order they are returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the peer over the transaction's transport: the
    /// client's request (first send and retransmissions), or the server's
    /// response (first send, retransmission, or resend on a retransmitted
    /// request).
    Transmit(Bytes),
    /// [`ClientInvite`] only: build the ACK for the non-2xx final response
    /// with this status that was just handed to
    /// [`handle_response`](ClientInvite::handle_response) and send it over
    /// the transaction's transport (RFC 3261 §17.1.1.3: same Request-URI,
    /// Call-ID, From, CSeq number, top Via and Route as the INVITE, To from
    /// the response). Emitted again for each retransmission of that
    /// response received in Completed.
    SendAck {
        /// The status of the final response being acknowledged (300–699).
        status: u16,
    },
    /// [`ServerInvite`] only: the TU has not answered within
    /// [`TRYING_DELAY`]; build a 100 Trying for the INVITE and hand it back
    /// with [`ServerInvite::send_response`] (RFC 3261 §17.2.1). Also
    /// emitted early if the INVITE is retransmitted before then.
    SendTrying,
    /// Client machines only: pass the response just handed to
    /// `handle_response`, which has this status, up to the TU.
    PassToTu {
        /// The status of the response to pass on.
        status: u16,
    },
    /// [`ServerInvite`] in Accepted only (RFC 6026 §7.1): pass the ACK just
    /// handed to [`ServerInvite::handle_ack`] up to the TU.
    PassAckToTu,
    /// A timer expired before the expected message arrived (Timer B or F:
    /// no final response; Timer H: no ACK). Inform the TU; it is followed by
    /// [`Action::Terminated`].
    Timeout(Timer),
    /// The transport failure reported with `handle_transport_error` must be
    /// reported to the TU (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.4). It is
    /// followed by [`Action::Terminated`], except in the RFC 6026 Accepted
    /// states, where the machine stays to absorb retransmissions.
    TransportError,
    /// The machine reached Terminated: remove it from the transaction
    /// table. Emitted exactly once, always last; nothing follows it.
    Terminated,
}

/// The class of a status code, as the state machines see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// 100–199.
    Provisional,
    /// 200–299.
    Success,
    /// 300–699.
    Failure,
}

impl Class {
    /// `None` for a code outside 100–699, which no machine acts on.
    fn of(status: u16) -> Option<Class> {
        match status {
            100..=199 => Some(Class::Provisional),
            200..=299 => Some(Class::Success),
            300..=699 => Some(Class::Failure),
            _ => None,
        }
    }
}

/// A running retransmission timer (A, E or G): when it fires next, and the
/// interval that led to that deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retransmit {
    at: Instant,
    interval: Duration,
}

impl Retransmit {
    /// Starts a retransmission timer of `interval` at `now`, or `None` if the
    /// interval is zero (which would spin) or the deadline does not fit.
    fn start(now: Instant, interval: Duration) -> Option<Retransmit> {
        if interval.is_zero() {
            return None;
        }
        now.checked_add(interval)
            .map(|at| Retransmit { at, interval })
    }

    /// The next timer after this one fired at `now`: the interval doubled,
    /// capped at `cap` if given (T2 for Timers E and G).
    fn doubled(self, now: Instant, cap: Option<Duration>) -> Option<Retransmit> {
        let doubled = self.interval.saturating_mul(2);
        let interval = match cap {
            Some(cap) => doubled.min(cap),
            None => doubled,
        };
        Retransmit::start(now, interval)
    }
}

/// `now + d`, or `None` (a timer that never fires) if it does not fit.
fn deadline(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Whether an optional deadline has passed at `now`.
fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|at| at <= now)
}

/// The earliest of some optional deadlines.
fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

#[cfg(test)]
mod tests;
