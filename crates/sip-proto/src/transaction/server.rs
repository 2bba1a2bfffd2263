//! Server transactions: INVITE (RFC 3261 §17.2.1, Figure 7, with RFC 6026
//! §7.1 Accepted) and non-INVITE (RFC 3261 §17.2.2, Figure 8).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    Action, Class, Reliability, Retransmit, TRYING_DELAY, Timer, Timers, deadline, due, earliest,
};

/// The states of a [`ServerInvite`] (RFC 3261 Figure 7, RFC 6026 Figure 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteState {
    /// The INVITE was received; the TU may send provisional responses.
    Proceeding,
    /// A 300–699 final response was sent; Timers G and H run until the ACK.
    Completed,
    /// The ACK for the final response arrived; Timer I absorbs its
    /// retransmissions.
    Confirmed,
    /// A 2xx was sent (RFC 6026): INVITE retransmissions are absorbed, the
    /// TU's 2xx retransmissions are sent, until Timer L fires.
    Accepted,
    /// Over; the machine ignores every event.
    Terminated,
}

/// The INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
///
/// Created when an INVITE matches no transaction; the endpoint passes the
/// INVITE to the TU itself. 100 Trying: the machine emits
/// [`Action::SendTrying`] [`TRYING_DELAY`] after creation unless the TU has
/// responded by then; an endpoint that prefers to send 100 Trying at once
/// calls [`send_response`](Self::send_response) with it right after
/// [`new`](Self::new).
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliability: Reliability,
    timers: Timers,
    /// What a retransmitted INVITE gets again: the most recent
    /// provisional response in Proceeding, the 300–699 final response in
    /// Completed (Timer G's too). One field for both, which no state
    /// needs at once: the machine is kept 32 s after a 2xx (RFC 6026).
    resend: Option<Bytes>,
    /// When to ask for a 100 Trying, until the TU responds.
    trying: Option<Instant>,
    /// Timer G.
    retransmit: Option<Retransmit>,
    /// Timer H.
    timeout: Option<Instant>,
    /// Timer I (Confirmed) or L (Accepted).
    linger: Option<Instant>,
}

impl ServerInvite {
    /// Starts the transaction in Proceeding at `now`, with the 100 Trying
    /// deadline set to `now +` [`TRYING_DELAY`].
    pub fn new(reliability: Reliability, timers: Timers, now: Instant) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            reliability,
            timers,
            resend: None,
            trying: deadline(now, TRYING_DELAY),
            retransmit: None,
            timeout: None,
            linger: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// `true` once the machine reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// Whether a 100 Trying should go out as soon as the TU has one: the
    /// machine asked for it already ([`Action::SendTrying`] at its
    /// [`TRYING_DELAY`] deadline, or early for a retransmitted INVITE)
    /// while the TU had none to give, and no response has been sent
    /// since. `false` while the deadline is still ahead: an endpoint that
    /// lets the machine decide keeps the 100 until it asks (RFC 3261
    /// §17.2.1: sent only if the TU has not answered within 200 ms).
    pub fn trying_overdue(&self) -> bool {
        self.state == ServerInviteState::Proceeding
            && self.trying.is_none()
            && self.resend.is_none()
    }

    /// The earliest pending timer deadline, if any: call
    /// [`handle_timeout`](Self::handle_timeout) when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.trying,
            self.retransmit.map(|r| r.at),
            self.timeout,
            self.linger,
        ])
    }

    /// The TU sends `response`, whose status is `status`.
    ///
    /// - 1xx in Proceeding: sent, and remembered for INVITE retransmissions.
    /// - 2xx in Proceeding: sent; Accepted with Timer L. 2xx in Accepted
    ///   (the TU's own retransmissions, RFC 3261 §13.3.1.4, or a 2xx to a
    ///   second fork): sent.
    /// - 300–699 in Proceeding: sent; Completed with Timer G (unreliable
    ///   transport only) and Timer H.
    /// - Anything else is discarded (RFC 3261 §17.2.1: no final response
    ///   after the first one; codes outside 100–699).
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) -> Vec<Action> {
        use ServerInviteState as S;
        let mut out = Vec::new();
        let Some(class) = Class::of(status) else {
            return out;
        };
        match (self.state, class) {
            (S::Proceeding, Class::Provisional) => {
                self.trying = None;
                self.resend = Some(response.clone());
                out.push(Action::Transmit(response));
            }
            (S::Proceeding, Class::Success) => {
                self.trying = None;
                self.resend = None;
                out.push(Action::Transmit(response));
                self.state = S::Accepted;
                self.linger = deadline(now, self.timers.timeout());
            }
            (S::Proceeding, Class::Failure) => {
                self.trying = None;
                self.resend = Some(response.clone());
                out.push(Action::Transmit(response));
                self.state = S::Completed;
                self.retransmit = match self.reliability {
                    Reliability::Unreliable => Retransmit::start(now, self.timers.t1),
                    Reliability::Reliable => None,
                };
                self.timeout = deadline(now, self.timers.timeout());
            }
            (S::Accepted, Class::Success) => out.push(Action::Transmit(response)),
            _ => {}
        }
        out
    }

    /// The INVITE was received again (a retransmission).
    ///
    /// In Proceeding the most recent provisional response is resent; if the
    /// TU has sent none yet and 100 Trying is still pending,
    /// [`Action::SendTrying`] comes now instead of at its deadline. In
    /// Completed the final response is resent. In Confirmed and Accepted
    /// the retransmission is absorbed (RFC 6026 §7.1: not passed to the TU).
    pub fn handle_request(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let mut out = Vec::new();
        match self.state {
            ServerInviteState::Proceeding => {
                if let Some(provisional) = &self.resend {
                    out.push(Action::Transmit(provisional.clone()));
                } else if self.trying.take().is_some() {
                    out.push(Action::SendTrying);
                }
            }
            ServerInviteState::Completed => {
                if let Some(response) = &self.resend {
                    out.push(Action::Transmit(response.clone()));
                }
            }
            _ => {}
        }
        out
    }

    /// An ACK matched the transaction.
    ///
    /// In Completed (the ACK for the 300–699 response): absorbed, Timers G
    /// and H stop, Confirmed with Timer I (immediately Terminated on a
    /// reliable transport). In Confirmed: absorbed. In Accepted:
    /// [`Action::PassAckToTu`] (RFC 6026 §7.1). Otherwise ignored.
    pub fn handle_ack(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            ServerInviteState::Completed => {
                self.retransmit = None;
                self.timeout = None;
                self.resend = None;
                self.state = ServerInviteState::Confirmed;
                let i = match self.reliability {
                    Reliability::Unreliable => self.timers.t4,
                    Reliability::Reliable => Duration::ZERO,
                };
                if i.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.linger = deadline(now, i);
                }
            }
            ServerInviteState::Accepted => out.push(Action::PassAckToTu),
            _ => {}
        }
        out
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4):
    /// [`Action::TransportError`] and Terminated. In Accepted (RFC 6026
    /// §7.1) the TU is informed and the machine stays.
    pub fn handle_transport_error(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let mut out = Vec::new();
        match self.state {
            ServerInviteState::Terminated => {}
            ServerInviteState::Accepted => out.push(Action::TransportError),
            _ => {
                out.push(Action::TransportError);
                self.terminate(&mut out);
            }
        }
        out
    }

    /// Fires the timers whose deadline is at or before `now`: Timer H
    /// ([`Action::Timeout`] then Terminated), Timer I or L (Terminated), the
    /// 100 Trying deadline ([`Action::SendTrying`]), or else Timer G (one
    /// retransmission of the final response; the interval doubles up to
    /// T2).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.is_terminated() {
            return out;
        }
        if due(self.timeout, now) {
            out.push(Action::Timeout(Timer::H));
            self.terminate(&mut out);
        } else if due(self.linger, now) {
            self.terminate(&mut out);
        } else if due(self.trying, now) {
            self.trying = None;
            out.push(Action::SendTrying);
        } else if let Some(timer) = self.retransmit.filter(|r| r.at <= now) {
            if let Some(response) = &self.resend {
                out.push(Action::Transmit(response.clone()));
            }
            self.retransmit = timer.doubled(now, Some(self.timers.t2));
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.trying = None;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
        self.resend = None;
        self.state = ServerInviteState::Terminated;
        out.push(Action::Terminated);
    }
}

/// The states of a [`ServerNonInvite`] (RFC 3261 Figure 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteState {
    /// The request was received; the TU has not responded yet.
    Trying,
    /// The TU sent a provisional response.
    Proceeding,
    /// The TU sent a final response; Timer J absorbs request
    /// retransmissions.
    Completed,
    /// Over; the machine ignores every event.
    Terminated,
}

/// The non-INVITE server transaction (RFC 3261 §17.2.2).
///
/// Created when a request other than INVITE or ACK matches no transaction;
/// the endpoint passes the request to the TU itself.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliability: Reliability,
    timers: Timers,
    /// The last response sent, resent on request retransmission.
    last_response: Option<Bytes>,
    /// Timer J.
    linger: Option<Instant>,
}

impl ServerNonInvite {
    /// Starts the transaction in Trying. No timer runs until the TU's final
    /// response, so no `now` is needed.
    pub fn new(reliability: Reliability, timers: Timers) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            reliability,
            timers,
            last_response: None,
            linger: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// `true` once the machine reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// The earliest pending timer deadline, if any: call
    /// [`handle_timeout`](Self::handle_timeout) when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.linger
    }

    /// The TU sends `response`, whose status is `status`.
    ///
    /// - 1xx in Trying or Proceeding: sent; Proceeding.
    /// - 200–699 in Trying or Proceeding: sent; Completed with Timer J
    ///   (immediately Terminated on a reliable transport).
    /// - Anything in Completed is discarded (RFC 3261 §17.2.2), as are
    ///   codes outside 100–699.
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) -> Vec<Action> {
        use ServerNonInviteState as S;
        let mut out = Vec::new();
        let Some(class) = Class::of(status) else {
            return out;
        };
        match (self.state, class) {
            (S::Trying | S::Proceeding, Class::Provisional) => {
                self.state = S::Proceeding;
                self.last_response = Some(response.clone());
                out.push(Action::Transmit(response));
            }
            (S::Trying | S::Proceeding, Class::Success | Class::Failure) => {
                self.last_response = Some(response.clone());
                out.push(Action::Transmit(response));
                self.state = S::Completed;
                let j = match self.reliability {
                    Reliability::Unreliable => self.timers.timeout(),
                    Reliability::Reliable => Duration::ZERO,
                };
                if j.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.linger = deadline(now, j);
                }
            }
            _ => {}
        }
        out
    }

    /// The request was received again (a retransmission): absorbed in
    /// Trying, answered with the last response in Proceeding and Completed.
    pub fn handle_request(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let mut out = Vec::new();
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) && let Some(response) = &self.last_response
        {
            out.push(Action::Transmit(response.clone()));
        }
        out
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4):
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

    /// Fires Timer J if its deadline is at or before `now`: Terminated.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.is_terminated() && due(self.linger, now) {
            self.terminate(&mut out);
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.linger = None;
        self.last_response = None;
        self.state = ServerNonInviteState::Terminated;
        out.push(Action::Terminated);
    }
}
