//! The server transaction table (RFC 3261 §17.2): the `sip-proto` machines
//! keyed by §17.2.3 matching, sharded so receive loops rarely contend, with
//! a deadline heap per shard that the endpoint's timer task drains. Server
//! transactions are counted across shards so the endpoint can cap them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use sip_proto::header::Via;
use sip_proto::transaction::{
    Action, ClientInvite, ClientNonInvite, Reliability, Rfc2543Parts, ServerInvite,
    ServerNonInvite, Timers, TransactionKey, is_rfc3261_branch,
};
use sip_proto::{Method, Request, Response};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::invite::{InviteEvent, build_non2xx_ack};

use crate::Transport;
use crate::transport::ReplyPath;

/// The table holds as many server transactions as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull;

/// The key type the table uses.
pub(crate) type Key = TransactionKey;

/// Shards of the table; a power of two.
const SHARDS: usize = 32;

/// Where a transaction's responses (and retransmissions) go.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTarget {
    pub transport: Transport,
    /// Destination (UDP) or the connection's peer (TCP).
    pub addr: SocketAddr,
    /// For TCP, where to connect if the connection has closed.
    pub reconnect: SocketAddr,
    pub path: ReplyPath,
}

/// What a request that arrived did to the table.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A retransmission: send these bytes (the last response) again.
    Retransmit(Bytes),
    /// Matched and absorbed (an ACK for a non-2xx, or a retransmission
    /// that has nothing to resend yet).
    Absorbed,
    /// No transaction matches: a new request.
    NotFound,
    /// An ACK that matched an INVITE transaction in Accepted (RFC 6026
    /// §7.1): it acknowledges the 2xx and goes to the TU.
    PassAck,
}

enum Machine {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
    /// A request we sent (OPTIONS qualify, BYE, CANCEL, ...).
    Client(ClientNonInvite),
    /// An INVITE we sent (an outbound call leg, a re-INVITE).
    ClientInvite(ClientInvite),
}

/// How a client transaction ended, for the task awaiting it.
#[derive(Debug)]
pub(crate) enum ClientOutcome {
    /// A final response arrived.
    Response(Box<Response>),
    /// Timer F fired: no final response within 64*T1.
    Timeout,
    /// The transport reported an error.
    TransportError,
}

impl Machine {
    fn send_response(&mut self, status: u16, response: Bytes, now: Instant) -> Vec<Action> {
        match self {
            Machine::Invite(m) => m.send_response(status, response, now),
            Machine::NonInvite(m) => m.send_response(status, response, now),
            Machine::Client(_) | Machine::ClientInvite(_) => Vec::new(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Invite(m) => m.poll_timeout(),
            Machine::NonInvite(m) => m.poll_timeout(),
            Machine::Client(m) => m.poll_timeout(),
            Machine::ClientInvite(m) => m.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Machine::Invite(m) => m.handle_timeout(now),
            Machine::NonInvite(m) => m.handle_timeout(now),
            Machine::Client(m) => m.handle_timeout(now),
            Machine::ClientInvite(m) => m.handle_timeout(now),
        }
    }

    /// Whether this is a server transaction (a request we received).
    fn is_server(&self) -> bool {
        matches!(self, Machine::Invite(_) | Machine::NonInvite(_))
    }

    fn handle_request(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Machine::Invite(m) => m.handle_request(now),
            Machine::NonInvite(m) => m.handle_request(now),
            // A request never matches a client key.
            Machine::Client(_) | Machine::ClientInvite(_) => Vec::new(),
        }
    }
}

/// A live transaction: its machine, where its responses go, the RFC 2543
/// ACK alias filed for it, if any, and what its kind keeps for its TU.
struct Tx {
    machine: Machine,
    target: ReplyTarget,
    /// Boxed, as in [`Slot::Alias`]: rare.
    alias: Option<Box<Key>>,
    /// The deadline of this transaction's earliest entry in its shard's
    /// heap, if it has one: a later deadline of the machine needs no entry
    /// of its own until that one is popped (each entry clones the key).
    scheduled: Option<Instant>,
    tu: Tu,
}

/// What a transaction keeps for its TU, by kind: one kind's fields side
/// by side with the others' made every transaction 104 bytes of them (an
/// INVITE's are kept 32 s after its 2xx, RFC 6026).
enum Tu {
    /// A request we received.
    Server {
        /// For an INVITE still waiting for its TU: the 100 Trying to send
        /// when the machine asks for one (RFC 3261 §17.2.1).
        trying: Option<Bytes>,
        /// For an INVITE: fired when a CANCEL matches it (§9.2).
        cancel: Option<CancellationToken>,
    },
    /// A request we sent other than INVITE: who awaits its outcome.
    Client(Option<oneshot::Sender<ClientOutcome>>),
    /// An INVITE we sent.
    ClientInvite {
        /// Where its responses go.
        events: flume::Sender<InviteEvent>,
        /// Until its final response: the INVITE, which the ACK for a
        /// non-2xx final response is built from (§17.1.1.3).
        invite: Option<Box<Request>>,
        /// After a non-2xx: that ACK, resent for each retransmission of
        /// the response.
        ack: Option<Bytes>,
    },
}

impl Tx {
    fn new(machine: Machine, target: ReplyTarget, tu: Tu) -> Tx {
        Tx {
            machine,
            target,
            alias: None,
            scheduled: None,
            tu,
        }
    }

    /// Files the machine's next deadline in `deadlines`, unless an entry
    /// at or before it is there already (when that one is popped early,
    /// [`TxTable::due`] files the deadline then).
    fn schedule(&mut self, key: &Key, deadlines: &mut Deadlines) {
        if let Some(at) = self.machine.poll_timeout()
            && self.scheduled.is_none_or(|s| s > at)
        {
            deadlines.push(Reverse((at, KeyOrd(key.clone()))));
            self.scheduled = Some(at);
        }
    }

    fn finish(&mut self, outcome: ClientOutcome) {
        match &mut self.tu {
            Tu::Client(waiter) => {
                if let Some(waiter) = waiter.take() {
                    let _ = waiter.send(outcome);
                }
            }
            Tu::ClientInvite { events, .. } => {
                let event = match outcome {
                    ClientOutcome::Response(r) => InviteEvent::Response(r),
                    ClientOutcome::Timeout => InviteEvent::Timeout,
                    ClientOutcome::TransportError => InviteEvent::TransportError,
                };
                // A full queue means the TU stopped reading; it learns
                // nothing more (bounded: a peer flooding 1xx cannot grow
                // memory).
                let _ = events.try_send(event);
            }
            Tu::Server { .. } => {}
        }
    }
}

enum Slot {
    Tx(Box<Tx>),
    /// RFC 2543 ACK matching: the ACK carries our To tag, which the INVITE
    /// key lacks, so the INVITE's transaction is also filed under this key.
    /// Boxed: every slot of the table is as large as its largest variant,
    /// and a key is 32 bytes where a boxed transaction is 8.
    Alias(Box<Key>),
}

/// A shard's deadline heap, earliest first.
type Deadlines = BinaryHeap<Reverse<(Instant, KeyOrd)>>;

struct Shard {
    slots: HashMap<Key, Slot>,
    deadlines: Deadlines,
    count: usize,
    /// Server transactions in every shard (shared by all shards).
    servers: Arc<AtomicUsize>,
}

/// A key in the deadline heap; ordering among equal deadlines is irrelevant.
struct KeyOrd(Key);

impl PartialEq for KeyOrd {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for KeyOrd {}
impl PartialOrd for KeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KeyOrd {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Shard {
    fn insert(&mut self, key: Key, mut tx: Tx) {
        let server = tx.machine.is_server();
        if server {
            self.servers.fetch_add(1, Ordering::Relaxed);
        }
        tx.schedule(&key, &mut self.deadlines);
        match self.slots.insert(key, Slot::Tx(Box::new(tx))) {
            Some(Slot::Tx(old)) => {
                if old.machine.is_server() {
                    self.servers.fetch_sub(1, Ordering::Relaxed);
                }
            }
            _ => self.count += 1,
        }
    }

    fn resolve(&self, key: &Key) -> Option<Key> {
        match self.slots.get(key)? {
            Slot::Tx(_) => Some(key.clone()),
            Slot::Alias(primary) => Some((**primary).clone()),
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(Slot::Tx(tx)) = self.slots.remove(key) {
            self.count = self.count.saturating_sub(1);
            if tx.machine.is_server() {
                self.servers.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(alias) = &tx.alias {
                self.slots.remove(alias.as_ref());
            }
        }
    }
}

/// Server transactions, sharded by key.
pub(crate) struct TxTable {
    timers: Timers,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    servers: Arc<AtomicUsize>,
}

impl TxTable {
    pub(crate) fn new(timers: Timers) -> TxTable {
        let servers = Arc::new(AtomicUsize::new(0));
        TxTable {
            timers,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        slots: HashMap::new(),
                        deadlines: BinaryHeap::new(),
                        count: 0,
                        servers: servers.clone(),
                    })
                })
                .collect(),
            servers,
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        // INVITE, its ACK and its CANCEL share a branch, hence a shard. RFC
        // 2543 keys (no branch) all live in shard 0 so an ACK alias, which
        // differs from its INVITE key only in the To tag, is found there.
        let idx = match key.branch() {
            Some(branch) => (self.hasher.hash_one(branch) as usize) % SHARDS,
            None => 0,
        };
        self.shards[idx]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds an arriving request to the transaction it matches, if any.
    pub(crate) fn on_request(&self, key: &Key, method: &Method, now: Instant) -> Lookup {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let Some(primary) = shard.resolve(key) else {
            return Lookup::NotFound;
        };
        let Some(Slot::Tx(tx)) = shard.slots.get_mut(&primary) else {
            return Lookup::NotFound;
        };
        let actions = match (&mut tx.machine, method) {
            (Machine::Invite(m), Method::Ack) => m.handle_ack(now),
            // An ACK never matches a non-INVITE transaction.
            (
                Machine::NonInvite(_) | Machine::Client(_) | Machine::ClientInvite(_),
                Method::Ack,
            ) => return Lookup::NotFound,
            (machine, _) => machine.handle_request(now),
        };
        let mut resend = None;
        let mut terminated = false;
        let mut pass_ack = false;
        for action in actions {
            match action {
                Action::Transmit(bytes) => resend = Some(bytes),
                Action::SendTrying => resend = send_trying(tx, now).or(resend),
                Action::PassAckToTu => pass_ack = true,
                Action::Terminated => terminated = true,
                _ => {}
            }
        }
        if terminated {
            shard.remove(&primary);
        } else {
            tx.schedule(&primary, &mut shard.deadlines);
        }
        match resend {
            Some(bytes) => Lookup::Retransmit(bytes),
            None if pass_ack => Lookup::PassAck,
            None => Lookup::Absorbed,
        }
    }

    /// Finds the INVITE server transaction the CANCEL with `cancel_key`
    /// targets (RFC 3261 §9.2) and tells its TU; `false` if there is none.
    pub(crate) fn cancel_invite(&self, cancel_key: &Key) -> bool {
        let Some(invite) = cancel_key.invite_for_cancel() else {
            return false;
        };
        let shard = self.shard(&invite);
        let Some(primary) = shard.resolve(&invite) else {
            return false;
        };
        if let Some(Slot::Tx(tx)) = shard.slots.get(&primary)
            && let Tu::Server {
                cancel: Some(cancel),
                ..
            } = &tx.tu
        {
            cancel.cancel();
        }
        true
    }

    fn reliability(target: &ReplyTarget) -> Reliability {
        if target.transport == Transport::Tcp {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        }
    }

    fn new_machine(&self, invite: bool, target: &ReplyTarget, now: Instant) -> Machine {
        let reliability = Self::reliability(target);
        if invite {
            Machine::Invite(ServerInvite::new(reliability, self.timers, now))
        } else {
            Machine::NonInvite(ServerNonInvite::new(reliability, self.timers))
        }
    }

    /// Creates the server transaction for a request its TU is still working
    /// on: retransmissions are absorbed (an INVITE gets `trying`, a 100,
    /// when the machine asks for it) until [`respond`](Self::respond).
    /// `Err(TableFull)` when `max` server transactions are already live.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_pending(
        &self,
        key: Key,
        invite: bool,
        trying: Option<Bytes>,
        cancel: Option<CancellationToken>,
        target: ReplyTarget,
        now: Instant,
        max: usize,
    ) -> Result<(), TableFull> {
        // Racy by a few between receive loops; a bound, not an exact count.
        if self.servers.load(Ordering::Relaxed) >= max {
            return Err(TableFull);
        }
        let machine = self.new_machine(invite, &target, now);
        let tx = Tx::new(machine, target, Tu::Server { trying, cancel });
        self.shard(&key).insert(key, tx);
        Ok(())
    }

    /// Hands a pending INVITE transaction the 100 Trying its TU would
    /// send (RFC 3261 §17.2.1): kept until the machine asks for it (at
    /// [`TRYING_DELAY`](sip_proto::transaction::TRYING_DELAY) unless a
    /// response goes out first, or at once for a retransmitted INVITE);
    /// returned, to send now, when the machine has asked already and no
    /// response has been sent.
    pub(crate) fn arm_trying(&self, key: &Key, trying: Bytes, now: Instant) -> Option<Bytes> {
        let mut shard = self.shard(key);
        let Some(Slot::Tx(tx)) = shard.slots.get_mut(key) else {
            return None;
        };
        let Machine::Invite(machine) = &tx.machine else {
            return None;
        };
        if machine.trying_overdue() {
            return transmissions(tx.machine.send_response(100, trying, now))
                .0
                .into_iter()
                .next_back();
        }
        // Kept until then (a response, which makes it moot, drops it).
        if let Tu::Server { trying: slot, .. } = &mut tx.tu {
            *slot = Some(trying);
        }
        None
    }

    /// Sends the TU's response through a pending transaction; returns the
    /// bytes to send now (nothing if the transaction has gone, e.g. after
    /// a transport error).
    pub(crate) fn respond(
        &self,
        key: &Key,
        status: u16,
        to_tag: &str,
        response: Bytes,
        now: Instant,
    ) -> Vec<Bytes> {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let Some(Slot::Tx(tx)) = shard.slots.get_mut(key) else {
            return Vec::new();
        };
        let actions = tx.machine.send_response(status, response, now);
        // Any response makes a held-back 100 Trying moot.
        if let Tu::Server { trying, .. } = &mut tx.tu {
            *trying = None;
        }
        let (out, mut terminated) = transmissions(actions);
        if !terminated && tx.machine.poll_timeout().is_some_and(|at| at <= now) {
            terminated = transmissions(tx.machine.handle_timeout(now)).1;
        }
        if terminated {
            shard.remove(key);
            return out;
        }
        tx.schedule(key, &mut shard.deadlines);
        if status >= 200
            && let Some(alias) = key.ack_alias(to_tag)
        {
            tx.alias = Some(Box::new(alias.clone()));
            shard
                .slots
                .insert(alias, Slot::Alias(Box::new(key.clone())));
        }
        out
    }

    /// Starts a client transaction for `request` (already carrying its top
    /// Via with `branch`); returns the bytes to send now. `waiter` learns
    /// the outcome.
    pub(crate) fn start_client(
        &self,
        key: Key,
        request: Bytes,
        target: ReplyTarget,
        waiter: oneshot::Sender<ClientOutcome>,
        now: Instant,
    ) -> Vec<Bytes> {
        let reliability = Self::reliability(&target);
        let (machine, actions) = ClientNonInvite::new(request, reliability, self.timers, now);
        let (out, _) = transmissions(actions);
        let tx = Tx::new(Machine::Client(machine), target, Tu::Client(Some(waiter)));
        self.shard(&key).insert(key, tx);
        out
    }

    /// Starts a client INVITE transaction (RFC 3261 §17.1.1) for `invite`
    /// (already carrying its top Via); returns the bytes to send now. Every
    /// response, provisional and final (2xx retransmissions too), goes to
    /// `events`.
    pub(crate) fn start_client_invite(
        &self,
        key: Key,
        invite: Request,
        target: ReplyTarget,
        events: flume::Sender<InviteEvent>,
        now: Instant,
    ) -> Vec<Bytes> {
        let reliability = Self::reliability(&target);
        let (machine, actions) =
            ClientInvite::new(invite.to_bytes(), reliability, self.timers, now);
        let (out, _) = transmissions(actions);
        let tu = Tu::ClientInvite {
            events,
            invite: Some(Box::new(invite)),
            ack: None,
        };
        let tx = Tx::new(Machine::ClientInvite(machine), target, tu);
        self.shard(&key).insert(key, tx);
        out
    }

    /// Feeds a received response to the client transaction it matches
    /// (RFC 3261 §17.1.3); `None` if none does (a stray response), else the
    /// bytes to send (an ACK for a non-2xx final response to an INVITE).
    pub(crate) fn on_response(
        &self,
        key: &Key,
        response: Response,
        now: Instant,
    ) -> Option<Vec<(ReplyTarget, Bytes)>> {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let Some(Slot::Tx(tx)) = shard.slots.get_mut(key) else {
            return None;
        };
        let status = response.status;
        let actions = match &mut tx.machine {
            Machine::Client(machine) => machine.handle_response(status, now),
            Machine::ClientInvite(machine) => machine.handle_response(status, now),
            _ => return None,
        };
        let mut sends = Vec::new();
        let mut terminated = false;
        for action in actions {
            match action {
                Action::SendAck { .. } => {
                    if let Tu::ClientInvite { invite, ack, .. } = &mut tx.tu {
                        if let Some(invite) = invite.take() {
                            *ack = Some(build_non2xx_ack(&invite, &response).to_bytes());
                        }
                        if let Some(ack) = ack {
                            sends.push((tx.target.clone(), ack.clone()));
                        }
                    }
                }
                Action::PassToTu { status } => match &mut tx.tu {
                    Tu::ClientInvite { events, invite, .. } => {
                        if status >= 200 {
                            // Nothing more is built from the INVITE.
                            *invite = None;
                        }
                        let _ = events.try_send(InviteEvent::Response(Box::new(response.clone())));
                    }
                    _ if status >= 200 => {
                        tx.finish(ClientOutcome::Response(Box::new(response.clone())));
                    }
                    _ => {}
                },
                Action::Terminated => terminated = true,
                _ => {}
            }
        }
        if terminated {
            shard.remove(key);
        } else {
            tx.schedule(key, &mut shard.deadlines);
        }
        Some(sends)
    }

    /// Runs every timer that is due; returns the retransmissions to send.
    pub(crate) fn due(&self, now: Instant) -> Vec<(ReplyTarget, Bytes)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let shard = &mut *guard;
            while let Some(Reverse((at, _))) = shard.deadlines.peek() {
                if *at > now {
                    break;
                }
                let Some(Reverse((at, KeyOrd(key)))) = shard.deadlines.pop() else {
                    break;
                };
                let Some(Slot::Tx(tx)) = shard.slots.get_mut(&key) else {
                    continue;
                };
                if tx.scheduled == Some(at) {
                    tx.scheduled = None;
                }
                // The machine's deadline moved: later (filed now, if no
                // entry is waiting for it), or gone.
                if tx.machine.poll_timeout().is_none_or(|at| at > now) {
                    tx.schedule(&key, &mut shard.deadlines);
                    continue;
                }
                let mut terminated = false;
                for action in tx.machine.handle_timeout(now) {
                    match action {
                        Action::Transmit(bytes) => out.push((tx.target.clone(), bytes)),
                        Action::SendTrying => {
                            if let Some(bytes) = send_trying(tx, now) {
                                out.push((tx.target.clone(), bytes));
                            }
                        }
                        Action::Terminated => terminated = true,
                        Action::Timeout(timer) => {
                            tracing::debug!(%key, ?timer, "transaction timed out");
                            tx.finish(ClientOutcome::Timeout);
                        }
                        Action::TransportError => tx.finish(ClientOutcome::TransportError),
                        _ => {}
                    }
                }
                if terminated {
                    shard.remove(&key);
                } else {
                    tx.schedule(&key, &mut shard.deadlines);
                }
            }
        }
        out
    }

    /// Forgets a transaction at once (a final answer sent statelessly).
    pub(crate) fn forget(&self, key: &Key) {
        self.shard(key).remove(key);
    }

    /// Number of live server transactions.
    pub(crate) fn servers(&self) -> usize {
        self.servers.load(Ordering::Relaxed)
    }

    /// Number of live transactions, server and client.
    pub(crate) fn active(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).count)
            .sum()
    }
}

/// Splits a machine's actions into the bytes to transmit and whether it
/// terminated.
fn transmissions(actions: Vec<Action>) -> (Vec<Bytes>, bool) {
    let mut out = Vec::new();
    let mut terminated = false;
    for action in actions {
        match action {
            Action::Transmit(bytes) => out.push(bytes),
            Action::Terminated => terminated = true,
            _ => {}
        }
    }
    (out, terminated)
}

/// Hands the stored 100 Trying to an INVITE machine that asked for one and
/// returns what it says to transmit.
fn send_trying(tx: &mut Tx, now: Instant) -> Option<Bytes> {
    let Tu::Server { trying, .. } = &mut tx.tu else {
        return None;
    };
    let trying = trying.take()?;
    transmissions(tx.machine.send_response(100, trying, now))
        .0
        .into_iter()
        .next_back()
}

/// The §17.2.3 server key of a request with top Via `via`: branch, sent-by
/// and method when the Via has an RFC 3261 branch, else the RFC 2543
/// fallback parts.
pub(crate) fn server_key(req: &Request, via: &Via) -> Option<Key> {
    if let Some(branch) = via.branch()
        && is_rfc3261_branch(branch)
    {
        let host = via.host.to_string();
        return Some(TransactionKey::server(
            branch,
            &host,
            via.port,
            req.method.as_str(),
        ));
    }
    let call_id = req.call_id()?;
    let cseq = req.cseq()?;
    let from_tag = req
        .headers
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned));
    let to_tag = req
        .headers
        .to()
        .ok()
        .and_then(|t| t.tag().map(str::to_owned));
    let uri = req.uri.to_string();
    let mut top_via = via.clone();
    // The RFC 2543 comparison is of the Via as sent; our own stamp of
    // received/rport must not make a retransmission look different.
    top_via.params.remove("received");
    top_via.params.remove("rport");
    let top_via = top_via.to_string();
    Some(TransactionKey::server_rfc2543(&Rfc2543Parts {
        method: req.method.as_str(),
        request_uri: &uri,
        call_id,
        cseq: cseq.seq,
        from_tag: from_tag.as_deref(),
        to_tag: to_tag.as_deref(),
        top_via: &top_via,
    }))
}

#[cfg(test)]
mod tests {
    use sip_proto::{Limits, Message};
    use tokio::net::UdpSocket;

    use super::*;

    async fn target() -> ReplyTarget {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        ReplyTarget {
            transport: Transport::Udp,
            addr,
            reconnect: addr,
            path: ReplyPath::Udp(Arc::new(socket)),
        }
    }

    fn parse(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r\n").as_bytes(), &Limits::default()).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtx1
From: <sip:alice@127.0.0.1>;tag=a
To: <sip:bob@127.0.0.1>
Call-ID: tx1@127.0.0.1
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0

";

    fn response(status: &str, branch: &str, method: &str) -> Response {
        let text = format!(
            "SIP/2.0 {status}
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}
From: <sip:alice@127.0.0.1>;tag=a
To: <sip:bob@127.0.0.1>;tag=b
Call-ID: tx1@127.0.0.1
CSeq: 1 {method}
Content-Length: 0

"
        );
        match parse(&text) {
            Message::Response(r) => r,
            Message::Request(_) => panic!("a request"),
        }
    }

    #[test]
    fn what_a_transaction_keeps_for_its_tu_is_small() {
        assert!(
            std::mem::size_of::<Tu>() <= 56,
            "{}",
            std::mem::size_of::<Tu>()
        );
    }

    #[tokio::test]
    async fn a_server_invite_resends_its_trying_and_hears_a_cancel() {
        let table = TxTable::new(Timers::default());
        let key = TransactionKey::server("z9hG4bKtx1", "127.0.0.1", Some(5070), "INVITE");
        let cancel = CancellationToken::new();
        let now = Instant::now();
        let trying = Bytes::from_static(b"SIP/2.0 100 Trying");
        table
            .start_pending(
                key.clone(),
                true,
                Some(trying.clone()),
                Some(cancel.clone()),
                target().await,
                now,
                10,
            )
            .unwrap();
        // A retransmission before the TU answers gets the 100 Trying.
        assert!(
            matches!(table.on_request(&key, &Method::Invite, now), Lookup::Retransmit(b) if b == trying)
        );
        let cancel_key = TransactionKey::server("z9hG4bKtx1", "127.0.0.1", Some(5070), "CANCEL");
        assert!(table.cancel_invite(&cancel_key));
        assert!(cancel.is_cancelled());
        let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here");
        assert_eq!(
            table.respond(&key, 486, "b", busy.clone(), now),
            std::slice::from_ref(&busy)
        );
        assert!(
            matches!(table.on_request(&key, &Method::Invite, now), Lookup::Retransmit(b) if b == busy)
        );
    }

    /// A pending INVITE transaction started at `now`, as the endpoint
    /// starts one (no 100 Trying yet).
    async fn pending_invite(table: &TxTable, branch: &str, now: Instant) -> TransactionKey {
        let key = TransactionKey::server(branch, "127.0.0.1", Some(5070), "INVITE");
        table
            .start_pending(key.clone(), true, None, None, target().await, now, 10)
            .unwrap();
        key
    }

    fn sent(out: &[(ReplyTarget, Bytes)]) -> Vec<Bytes> {
        out.iter().map(|(_, b)| b.clone()).collect()
    }

    #[tokio::test]
    async fn an_armed_trying_goes_out_only_if_nothing_answers_within_200_ms() {
        let table = TxTable::new(Timers::default());
        let t0 = Instant::now();
        let ms = |n| t0 + std::time::Duration::from_millis(n);
        let trying = Bytes::from_static(b"SIP/2.0 100 Trying");
        let ringing = Bytes::from_static(b"SIP/2.0 180 Ringing");

        // Ringing within 200 ms: no 100 at all.
        let fast = pending_invite(&table, "z9hG4bKfast", t0).await;
        assert_eq!(table.arm_trying(&fast, trying.clone(), ms(10)), None);
        assert_eq!(
            table.respond(&fast, 180, "b", ringing.clone(), ms(50)),
            std::slice::from_ref(&ringing)
        );
        // Nothing answered within 200 ms: the 100 goes out then.
        let slow = pending_invite(&table, "z9hG4bKslow", t0).await;
        assert_eq!(table.arm_trying(&slow, trying.clone(), ms(10)), None);
        assert!(table.due(ms(199)).is_empty());
        assert_eq!(sent(&table.due(ms(200))), std::slice::from_ref(&trying));
        assert!(table.due(ms(400)).is_empty(), "sent once");
        // ... and again for each retransmitted INVITE until a response.
        assert!(
            matches!(table.on_request(&slow, &Method::Invite, ms(500)), Lookup::Retransmit(b) if b == trying)
        );
    }

    #[tokio::test]
    async fn a_trying_armed_late_or_after_a_retransmission_goes_out_at_once() {
        let table = TxTable::new(Timers::default());
        let t0 = Instant::now();
        let ms = |n| t0 + std::time::Duration::from_millis(n);
        let trying = Bytes::from_static(b"SIP/2.0 100 Trying");

        // The TU accepted the INVITE only after 200 ms (slow storage, say).
        let late = pending_invite(&table, "z9hG4bKlate", t0).await;
        assert!(table.due(ms(200)).is_empty(), "nothing to send yet");
        assert_eq!(
            table.arm_trying(&late, trying.clone(), ms(250)),
            Some(trying.clone())
        );
        // The caller retransmitted before the TU accepted it.
        let again = pending_invite(&table, "z9hG4bKagain", t0).await;
        assert!(matches!(
            table.on_request(&again, &Method::Invite, ms(100)),
            Lookup::Absorbed
        ));
        assert_eq!(
            table.arm_trying(&again, trying.clone(), ms(120)),
            Some(trying.clone())
        );
        // Answered already: never a 100.
        let done = pending_invite(&table, "z9hG4bKdone", t0).await;
        let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here");
        table.respond(&done, 486, "b", busy, ms(10));
        assert_eq!(table.arm_trying(&done, trying, ms(300)), None);
    }

    fn heap_entries(table: &TxTable) -> usize {
        table
            .shards
            .iter()
            .map(|s| s.lock().unwrap().deadlines.len())
            .sum()
    }

    #[tokio::test]
    async fn a_later_deadline_waits_for_the_earlier_entry_and_still_fires() {
        let table = TxTable::new(Timers::default());
        let t0 = Instant::now();
        let ms = |n| t0 + std::time::Duration::from_millis(n);
        let key = pending_invite(&table, "z9hG4bKheap", t0).await;
        assert_eq!(heap_entries(&table), 1, "the 100 Trying deadline");
        let ok = Bytes::from_static(b"SIP/2.0 200 OK");
        assert_eq!(table.respond(&key, 200, "b", ok, ms(10)).len(), 1);
        // The ACK (RFC 6026: to the TU), and its retransmission.
        assert!(matches!(
            table.on_request(&key, &Method::Ack, ms(20)),
            Lookup::PassAck
        ));
        table.on_request(&key, &Method::Ack, ms(30));
        assert_eq!(heap_entries(&table), 1, "Timer L waits for that entry");
        assert!(table.due(ms(200)).is_empty());
        assert_eq!(heap_entries(&table), 1, "Timer L filed when it was popped");
        assert_eq!(table.servers(), 1);
        // Timer L: 64*T1 after the 2xx.
        table.due(ms(10 + 31_999));
        assert_eq!(table.servers(), 1);
        table.due(ms(10 + 32_000));
        assert_eq!(table.servers(), 0);
        assert_eq!(heap_entries(&table), 0);
    }

    #[tokio::test]
    async fn a_client_invite_acks_a_failure_and_each_retransmission_of_it() {
        let table = TxTable::new(Timers::default());
        let Message::Request(invite) = parse(INVITE) else {
            panic!("not a request");
        };
        let key = TransactionKey::client("z9hG4bKtx1", "INVITE");
        let (events, responses) = flume::bounded(8);
        let now = Instant::now();
        let sent = table.start_client_invite(key.clone(), invite, target().await, events, now);
        assert_eq!(sent.len(), 1, "the INVITE");
        let busy = response("486 Busy Here", "z9hG4bKtx1", "INVITE");
        let first = table.on_response(&key, busy.clone(), now).unwrap();
        assert_eq!(first.len(), 1, "the ACK");
        let ack = first[0].1.clone();
        assert!(ack.starts_with(b"ACK sip:bob@127.0.0.1 SIP/2.0"));
        assert!(matches!(responses.try_recv(), Ok(InviteEvent::Response(r)) if r.status == 486));
        let again = table.on_response(&key, busy, now).unwrap();
        assert_eq!(again.into_iter().map(|(_, b)| b).collect::<Vec<_>>(), [ack]);
        assert!(
            responses.try_recv().is_err(),
            "a retransmission is absorbed"
        );
    }

    #[tokio::test]
    async fn a_client_transaction_tells_its_waiter_the_final_response() {
        let table = TxTable::new(Timers::default());
        let key = TransactionKey::client("z9hG4bKtx2", "BYE");
        let (waiter, outcome) = oneshot::channel();
        let now = Instant::now();
        let bye = Bytes::from_static(b"BYE sip:bob@127.0.0.1 SIP/2.0");
        let sent = table.start_client(key.clone(), bye, target().await, waiter, now);
        assert_eq!(sent.len(), 1, "the BYE");
        let ok = response("200 OK", "z9hG4bKtx2", "BYE");
        assert!(table.on_response(&key, ok, now).unwrap().is_empty());
        assert!(matches!(outcome.await, Ok(ClientOutcome::Response(r)) if r.status == 200));
    }
}
