//! Client transactions: INVITE (RFC 3261 §17.1.1, Figure 5, with RFC 6026
//! §7.2 Accepted) and non-INVITE (RFC 3261 §17.1.2, Figure 6).

use std::time::Instant;

use bytes::Bytes;

use super::{
    Action, Class, Reliability, Retransmit, TIMER_D, Timer, Timers, deadline, due, earliest,
};

/// The states of a [`ClientInvite`] (RFC 3261 Figure 5, RFC 6026 Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteState {
    /// The INVITE was sent; no response yet. Timers A and B run.
    Calling,
    /// A provisional response arrived; retransmission stops and no timer
    /// runs (the TU decides when to give up and CANCEL).
    Proceeding,
    /// A 300–699 final response arrived and was ACKed; Timer D absorbs its
    /// retransmissions.
    Completed,
    /// A 2xx arrived (RFC 6026): further 2xx responses (retransmissions, or
    /// other forks) go to the TU until Timer M fires.
    Accepted,
    /// Over; the machine ignores every event.
    Terminated,
}

/// The INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
///
/// Created when the TU sends an INVITE; [`ClientInvite::new`] returns the
/// first [`Action::Transmit`] of it. Feed it the status of every response
/// whose [`TransactionKey::client`](super::TransactionKey::client) matches.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    reliability: Reliability,
    timers: Timers,
    /// The INVITE, kept for retransmission until the first response.
    request: Option<Bytes>,
    /// Timer A.
    retransmit: Option<Retransmit>,
    /// Timer B.
    timeout: Option<Instant>,
    /// Timer D (Completed) or M (Accepted).
    linger: Option<Instant>,
}

impl ClientInvite {
    /// Starts the transaction in Calling at `now` and returns it with its
    /// first action, the transmission of `request` (the INVITE's bytes).
    /// Timer A starts (unreliable transport only) and Timer B starts.
    pub fn new(
        request: Bytes,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let retransmit = match reliability {
            Reliability::Unreliable => Retransmit::start(now, timers.t1),
            Reliability::Reliable => None,
        };
        let actions = vec![Action::Transmit(request.clone())];
        let tx = Self {
            state: ClientInviteState::Calling,
            reliability,
            timers,
            request: Some(request),
            retransmit,
            timeout: deadline(now, timers.timeout()),
            linger: None,
        };
        (tx, actions)
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// `true` once the machine reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// The earliest pending timer deadline, if any: call
    /// [`handle_timeout`](Self::handle_timeout) when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.retransmit.map(|r| r.at), self.timeout, self.linger])
    }

    /// A response with this `status` matched the transaction.
    ///
    /// - 1xx in Calling or Proceeding: passed to the TU, Proceeding (Timers
    ///   A and B stop).
    /// - 2xx in Calling or Proceeding: passed to the TU, Accepted, Timer M.
    ///   2xx in Accepted: passed to the TU (it re-sends its ACK).
    /// - 300–699 in Calling or Proceeding: [`Action::SendAck`], passed to
    ///   the TU, Completed with Timer D (immediately Terminated on a
    ///   reliable transport). 300–699 in Completed: [`Action::SendAck`]
    ///   again, not passed to the TU.
    /// - Anything else (including codes outside 100–699) is absorbed.
    pub fn handle_response(&mut self, status: u16, now: Instant) -> Vec<Action> {
        use ClientInviteState as S;
        let mut out = Vec::new();
        let Some(class) = Class::of(status) else {
            return out;
        };
        match (self.state, class) {
            (S::Calling | S::Proceeding, Class::Provisional) => {
                self.state = S::Proceeding;
                self.stop_sending();
                out.push(Action::PassToTu { status });
            }
            (S::Calling | S::Proceeding, Class::Success) => {
                out.push(Action::PassToTu { status });
                self.stop_sending();
                self.state = S::Accepted;
                self.linger = deadline(now, self.timers.timeout());
            }
            (S::Calling | S::Proceeding, Class::Failure) => {
                out.push(Action::SendAck { status });
                out.push(Action::PassToTu { status });
                self.stop_sending();
                self.state = S::Completed;
                let d = match self.reliability {
                    Reliability::Unreliable => TIMER_D,
                    Reliability::Reliable => std::time::Duration::ZERO,
                };
                if d.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.linger = deadline(now, d);
                }
            }
            (S::Completed, Class::Failure) => out.push(Action::SendAck { status }),
            (S::Accepted, Class::Success) => out.push(Action::PassToTu { status }),
            _ => {}
        }
        out
    }

    /// The transport failed to send the INVITE or the ACK (RFC 3261
    /// §17.1.1.2): [`Action::TransportError`] and Terminated. In Accepted
    /// the transaction sends nothing, so the TU is informed but the machine
    /// stays to keep passing 2xx retransmissions.
    pub fn handle_transport_error(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let mut out = Vec::new();
        match self.state {
            ClientInviteState::Terminated => {}
            ClientInviteState::Accepted => out.push(Action::TransportError),
            _ => {
                out.push(Action::TransportError);
                self.terminate(&mut out);
            }
        }
        out
    }

    /// Fires the timers whose deadline is at or before `now`: Timer B
    /// ([`Action::Timeout`] then Terminated), Timer D or M (Terminated), or
    /// else Timer A (one retransmission, and the interval doubles; a late
    /// call retransmits once, not once per missed deadline).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.is_terminated() {
            return out;
        }
        if due(self.timeout, now) {
            out.push(Action::Timeout(Timer::B));
            self.terminate(&mut out);
        } else if due(self.linger, now) {
            self.terminate(&mut out);
        } else if let Some(timer) = self.retransmit.filter(|r| r.at <= now) {
            if let Some(request) = &self.request {
                out.push(Action::Transmit(request.clone()));
            }
            self.retransmit = timer.doubled(now, None);
        }
        out
    }

    /// Stops Timers A and B and drops the request, which is not sent again.
    fn stop_sending(&mut self) {
        self.retransmit = None;
        self.timeout = None;
        self.request = None;
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.stop_sending();
        self.linger = None;
        self.state = ClientInviteState::Terminated;
        out.push(Action::Terminated);
    }
}

/// The states of a [`ClientNonInvite`] (RFC 3261 Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteState {
    /// The request was sent; no response yet. Timers E and F run.
    Trying,
    /// A provisional response arrived; Timer E continues at T2, Timer F
    /// still runs.
    Proceeding,
    /// A final response arrived; Timer K absorbs its retransmissions.
    Completed,
    /// Over; the machine ignores every event.
    Terminated,
}

/// The non-INVITE client transaction (RFC 3261 §17.1.2).
///
/// Created when the TU sends any request other than INVITE or ACK;
/// [`ClientNonInvite::new`] returns the first [`Action::Transmit`] of it.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliability: Reliability,
    timers: Timers,
    /// The request, kept for retransmission until a final response.
    request: Option<Bytes>,
    /// Timer E.
    retransmit: Option<Retransmit>,
    /// Timer F.
    timeout: Option<Instant>,
    /// Timer K.
    linger: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts the transaction in Trying at `now` and returns it with its
    /// first action, the transmission of `request`. Timer E starts
    /// (unreliable transport only) and Timer F starts.
    pub fn new(
        request: Bytes,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let retransmit = match reliability {
            Reliability::Unreliable => Retransmit::start(now, timers.t1),
            Reliability::Reliable => None,
        };
        let actions = vec![Action::Transmit(request.clone())];
        let tx = Self {
            state: ClientNonInviteState::Trying,
            reliability,
            timers,
            request: Some(request),
            retransmit,
            timeout: deadline(now, timers.timeout()),
            linger: None,
        };
        (tx, actions)
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// `true` once the machine reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// The earliest pending timer deadline, if any: call
    /// [`handle_timeout`](Self::handle_timeout) when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.retransmit.map(|r| r.at), self.timeout, self.linger])
    }

    /// A response with this `status` matched the transaction.
    ///
    /// - 1xx in Trying or Proceeding: passed to the TU, Proceeding.
    /// - 200–699 in Trying or Proceeding: passed to the TU, Completed with
    ///   Timer K (immediately Terminated on a reliable transport).
    /// - Anything in Completed (retransmissions) is absorbed, as are codes
    ///   outside 100–699.
    pub fn handle_response(&mut self, status: u16, now: Instant) -> Vec<Action> {
        use ClientNonInviteState as S;
        let mut out = Vec::new();
        let Some(class) = Class::of(status) else {
            return out;
        };
        match (self.state, class) {
            (S::Trying | S::Proceeding, Class::Provisional) => {
                self.state = S::Proceeding;
                out.push(Action::PassToTu { status });
            }
            (S::Trying | S::Proceeding, Class::Success | Class::Failure) => {
                out.push(Action::PassToTu { status });
                self.retransmit = None;
                self.timeout = None;
                self.request = None;
                self.state = S::Completed;
                let k = match self.reliability {
                    Reliability::Unreliable => self.timers.t4,
                    Reliability::Reliable => std::time::Duration::ZERO,
                };
                if k.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.linger = deadline(now, k);
                }
            }
            _ => {}
        }
        out
    }

    /// The transport failed to send the request (RFC 3261 §17.1.2.2):
    /// [`Action::TransportError`] and Terminated.
    pub fn handle_transport_error(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let mut out = Vec::new();
        if !self.is_terminated() {
            out.push(Action::TransportError);
            self.terminate(&mut out);
        }
        out
    }

    /// Fires the timers whose deadline is at or before `now`: Timer F
    /// ([`Action::Timeout`] then Terminated), Timer K (Terminated), or else
    /// Timer E (one retransmission; the interval doubles up to T2 in
    /// Trying and is T2 in Proceeding).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.is_terminated() {
            return out;
        }
        if due(self.timeout, now) {
            out.push(Action::Timeout(Timer::F));
            self.terminate(&mut out);
        } else if due(self.linger, now) {
            self.terminate(&mut out);
        } else if let Some(timer) = self.retransmit.filter(|r| r.at <= now) {
            if let Some(request) = &self.request {
                out.push(Action::Transmit(request.clone()));
            }
            self.retransmit = match self.state {
                ClientNonInviteState::Proceeding => Retransmit::start(now, self.timers.t2),
                _ => timer.doubled(now, Some(self.timers.t2)),
            };
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
        self.request = None;
        self.state = ClientNonInviteState::Terminated;
        out.push(Action::Terminated);
    }
}
