//! The endpoint: binds the listeners, runs the receive loops and the
//! transaction timers, and answers what the SIP core answers by itself
//! (RFC 3261 §8.2, §11, §17.2.3; 400 with Warning for malformed requests).
//!
//! What it answers by itself (OPTIONS, 405, 481, ...) and digest
//! challenges go out statelessly, as a stateless UAS may (RFC 3261 §8.2.7,
//! §26.3.2.4): a source, spoofed or not, that is not yet known to be
//! anyone gets one answer per request and holds nothing in the transaction
//! table. Only requests a service works on get a server transaction, and
//! the table has a cap past which new requests get 503.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_proto::header::Via;
use sip_proto::transaction::Timers;
use sip_proto::{Message, Method, Request, Response};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::inspect::{Capabilities, Verdict, inspect};
use crate::invite::ClientInviteTx;
use crate::ratelimit::RateLimiter;
use crate::response::{response_to, response_to_salvaged, stamp_top_via, udp_response_target};
use crate::service::{Incoming, Service};
use crate::stats;
use crate::transport::{
    self, Connections, PerIp, ReplyPath, Sink, Source, TcpSettings, bind_tcp, bind_udp,
};
use crate::tx::{ClientOutcome, Lookup, ReplyTarget, TxTable};
use crate::{EndpointConfig, Error, Transport};

/// How often the transaction timers are checked. Retransmission timers are
/// hundreds of milliseconds, so 10 ms of slack is well inside tolerance.
const TIMER_TICK: Duration = Duration::from_millis(10);

/// Requests a service may be working on at once; past this, new ones get
/// 503 with Retry-After instead of queueing without bound.
const MAX_IN_FLIGHT: usize = 10_000;

/// Service answers to a non-INVITE that are sent statelessly: challenges
/// (a retransmitted request just gets a fresh one) and 481 (nothing to
/// remember about a dialog that does not exist).
const STATELESS_ANSWERS: [u16; 3] = [401, 407, 481];

/// A bound set of SIP listeners and the tasks that serve them.
pub struct Endpoint {
    core: Arc<Core>,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    local: Vec<(Transport, SocketAddr)>,
}

impl Endpoint {
    /// Binds every listener in `config`. Fails with [`Error::Bind`] naming
    /// the listener that could not be bound.
    pub async fn bind(config: EndpointConfig) -> Result<Endpoint, Error> {
        if config.listen.is_empty() {
            return Err(Error::NoListeners);
        }
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local = Vec::new();
        for listen in &config.listen {
            let bound = match listen.transport {
                Transport::Udp => {
                    let socket = bind_udp(listen.addr)?;
                    let addr = local_addr(&socket.local_addr(), listen)?;
                    udp.push(Arc::new(socket));
                    addr
                }
                Transport::Tcp => {
                    let listener = bind_tcp(listen.addr)?;
                    let addr = local_addr(&listener.local_addr(), listen)?;
                    tcp.push(listener);
                    addr
                }
            };
            local.push((listen.transport, bound));
        }
        let core = Arc::new_cyclic(|me| Core::new(config, &udp, &local, me.clone()));
        Ok(Endpoint {
            core,
            udp,
            tcp,
            local,
        })
    }

    /// Hands requests of the service's methods to `service` (the endpoint
    /// answers OPTIONS and rejects everything else by itself).
    pub fn set_service(&mut self, service: Arc<dyn Service>) {
        let mut caps = Capabilities::default();
        for method in service.methods() {
            if !caps.allow.contains(&method) {
                caps.allow.push(method);
            }
        }
        caps.supported.extend(service.supported());
        let _ = self.core.caps.set(caps);
        let _ = self.core.service.set(service);
    }

    /// Shows every message received (once admitted) and sent
    /// (retransmissions included) to `tap`; set it before `run`.
    pub fn set_tap(&mut self, tap: Arc<dyn crate::Tap>) {
        let _ = self.core.tap.set(tap);
    }

    /// A handle for sending requests from this endpoint (qualify pings,
    /// later calls); usable before and while the endpoint runs.
    pub fn handle(&self) -> EndpointHandle {
        EndpointHandle {
            core: Arc::downgrade(&self.core),
        }
    }

    /// The addresses actually bound (port 0 resolved to the real port).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.local.clone()
    }

    /// Serves until `shutdown` completes, then stops every listener and
    /// connection and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let core = self.core.clone();
        let _ = core.caps.set(Capabilities::default());
        let stop = core.stop.clone();
        let sink: Arc<dyn Sink> = core.clone();
        let mut tasks = tokio::task::JoinSet::new();
        let loops_per_socket = std::thread::available_parallelism().map_or(1, |n| n.get());
        for socket in &self.udp {
            for _ in 0..loops_per_socket {
                tasks.spawn(transport::udp_loop(
                    socket.clone(),
                    sink.clone(),
                    core.limiter.clone(),
                    stop.clone(),
                ));
            }
        }
        for listener in self.tcp {
            tasks.spawn(transport::tcp_accept_loop(
                listener,
                core.tcp.clone(),
                sink.clone(),
                stop.clone(),
            ));
        }
        tasks.spawn(timer_loop(core.clone()));
        shutdown.await;
        stop.cancel();
        // Receive loops and accept loops end at once on cancel; give
        // connection tasks a moment to flush what they have queued.
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        Ok(())
    }
}

fn local_addr(
    addr: &std::io::Result<SocketAddr>,
    listen: &crate::ListenAddr,
) -> Result<SocketAddr, Error> {
    match addr {
        Ok(a) => Ok(*a),
        Err(e) => Err(Error::Bind {
            transport: listen.transport,
            addr: listen.addr,
            source: std::io::Error::new(e.kind(), e.to_string()),
        }),
    }
}

async fn timer_loop(core: Arc<Core>) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = core.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (target, bytes) in core.transactions.due(Instant::now()) {
            core.send(&target, bytes, None);
        }
        // The gauges count every shard: once a second is enough for them.
        ticks = ticks.wrapping_add(1);
        if ticks % 100 == 1 {
            metrics::gauge!("sip_transactions_active").set(core.transactions.active() as f64);
            metrics::gauge!("sip_server_transactions").set(core.transactions.servers() as f64);
            metrics::gauge!("sip_tcp_connections").set(core.tcp.connections.len() as f64);
        }
    }
}

/// The shared state every receive loop works on.
pub(crate) struct Core {
    config: EndpointConfig,
    /// Set once: by `set_service`, or to the default when `run` starts.
    caps: OnceLock<Capabilities>,
    service: OnceLock<Arc<dyn Service>>,
    /// Sees every message received and sent (call traces), if set.
    tap: OnceLock<Arc<dyn crate::Tap>>,
    /// A UDP socket per address family, for requests we send, with its
    /// bound address (read once: `local_addr` is a system call, and every
    /// request we send and every Contact we write needs it).
    udp_v4: Option<(Arc<UdpSocket>, SocketAddr)>,
    udp_v6: Option<(Arc<UdpSocket>, SocketAddr)>,
    /// Our TCP listener addresses (for Via sent-by of requests over TCP).
    tcp_local: Vec<SocketAddr>,
    in_flight: Arc<Semaphore>,
    server_header: Arc<str>,
    transactions: TxTable,
    /// The per-message counters, resolved once.
    counters: stats::Counters,
    /// Keys the To tags of stateless answers: a retransmitted request gets
    /// the same tag, so the same response, without any state kept.
    stateless_tags: RandomState,
    /// Per-source token buckets for UDP (`None`: no limit).
    limiter: Option<Arc<RateLimiter>>,
    tcp: TcpSettings,
    stop: CancellationToken,
    /// Handle to ourselves, for tasks spawned from `&self` (TCP reconnects).
    me: Weak<Core>,
}

impl Core {
    fn new(
        config: EndpointConfig,
        udp: &[Arc<UdpSocket>],
        local: &[(Transport, SocketAddr)],
        me: Weak<Core>,
    ) -> Core {
        let timers = Timers {
            t1: config.t1,
            t2: config.t2,
            t4: config.t4,
        };
        let reserved = config.tcp_outbound_reserved.min(config.max_tcp_connections);
        let tcp = TcpSettings {
            limits: config.limits,
            idle_timeout: config.tcp_idle_timeout,
            message_timeout: config.tcp_message_timeout,
            connections: Arc::new(Connections::default()),
            permits: Arc::new(Semaphore::new(config.max_tcp_connections - reserved)),
            outbound_permits: Arc::new(Semaphore::new(reserved)),
            per_ip: PerIp::new(config.tcp_max_per_ip),
        };
        let family = |v6: bool| {
            udp.iter().find_map(|s| {
                let addr = s.local_addr().ok().filter(|a| a.is_ipv6() == v6)?;
                Some((s.clone(), addr))
            })
        };
        Core {
            caps: OnceLock::new(),
            service: OnceLock::new(),
            tap: OnceLock::new(),
            udp_v4: family(false),
            udp_v6: family(true),
            tcp_local: local
                .iter()
                .filter(|(t, _)| *t == Transport::Tcp)
                .map(|(_, a)| *a)
                .collect(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            server_header: Arc::from(config.user_agent.as_str()),
            transactions: TxTable::new(timers),
            counters: stats::Counters::new(),
            stateless_tags: RandomState::new(),
            limiter: RateLimiter::new(config.udp_rate, config.udp_burst).map(Arc::new),
            tcp,
            stop: CancellationToken::new(),
            config,
            me,
        }
    }

    /// Our UDP socket of `dest`'s address family and its bound address.
    fn udp_for(&self, dest: SocketAddr) -> Option<(Arc<UdpSocket>, SocketAddr)> {
        if dest.is_ipv6() {
            self.udp_v6.clone()
        } else {
            self.udp_v4.clone()
        }
    }

    /// Our TCP listener address of `dest`'s address family.
    fn tcp_local_for(&self, dest: SocketAddr) -> Option<SocketAddr> {
        self.tcp_local
            .iter()
            .find(|a| a.is_ipv6() == dest.is_ipv6())
            .copied()
    }

    /// A fresh To tag (RFC 3261 §19.3: at least 32 bits of randomness).
    fn new_tag() -> String {
        format!("{:016x}", rand::random::<u64>())
    }

    fn on_request(&self, mut req: Request, source: &Source) {
        self.counters.request_in(&req.method);
        let Some(via) = stamp_top_via(&mut req, source.remote) else {
            stats::dropped("no_via");
            return;
        };
        let target = self.reply_target(&via, source);
        let now = Instant::now();
        let Some(key) = crate::tx::server_key(&req, &via) else {
            stats::dropped("no_transaction_key");
            return;
        };
        match self.transactions.on_request(&key, &req.method, now) {
            Lookup::Retransmit(bytes) => {
                stats::retransmission_absorbed();
                self.send(&target, bytes, None);
                return;
            }
            Lookup::Absorbed => {
                stats::retransmission_absorbed();
                return;
            }
            Lookup::PassAck => {
                self.pass_ack(req, source);
                return;
            }
            Lookup::NotFound => {}
        }
        match req.method {
            // An ACK outside any transaction acknowledges a 2xx to an
            // INVITE: the dialog's owner takes it.
            Method::Ack => self.pass_ack(req, source),
            Method::Cancel => {
                // §9.2: a CANCEL that matches no INVITE transaction gets 481;
                // one that does gets 200, and the INVITE's TU is told (it
                // answers 487 if it has not answered yet).
                let status = if self.transactions.cancel_invite(&key) {
                    200
                } else {
                    481
                };
                self.answer(&req, &key, status, Vec::new(), &target);
            }
            _ => match inspect(&req, self.caps.get_or_init(Capabilities::default)) {
                Verdict::Answer { status, headers } => {
                    self.answer(&req, &key, status, headers, &target);
                }
                Verdict::Serve => self.serve(req, key, source, target, now),
            },
        }
    }

    /// Hands a request to the service; its answer goes out through a
    /// server transaction that absorbs retransmissions meanwhile.
    fn serve(
        &self,
        req: Request,
        key: crate::tx::Key,
        source: &Source,
        target: ReplyTarget,
        now: Instant,
    ) {
        let (Some(service), Some(core)) = (self.service.get().cloned(), self.me.upgrade()) else {
            // Only a service's methods pass `inspect`; without one, none do.
            self.answer(&req, &key, 500, Vec::new(), &target);
            return;
        };
        if req.method == Method::Invite {
            self.serve_invite(req, key, source, target, now, &service);
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let retry = vec![(sip_proto::HeaderName::RetryAfter, "5".to_owned())];
            self.answer(&req, &key, 503, retry, &target);
            return;
        };
        let started = self.transactions.start_pending(
            key.clone(),
            false,
            None,
            None,
            target.clone(),
            now,
            self.config.max_transactions,
        );
        if started.is_err() {
            self.table_full(&req, &key, &target);
            return;
        }
        let incoming = Incoming {
            request: req,
            source: source.remote,
            transport: source.transport,
            to_tag: Core::new_tag(),
            server: self.server_header.clone(),
        };
        let to_tag = incoming.to_tag.clone();
        let mut answer = service.handle(incoming);
        // Most answers are ready at once (a challenge, an in-memory
        // lookup): poll once here and answer inline, so no task is spawned
        // and an overloaded receive loop slows down (letting the kernel
        // queue, then drop, datagrams) instead of piling up tasks. Only an
        // answer that waits (storage IO, a lock) moves to its own task,
        // which polls it again with a real waker.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(response) = answer.as_mut().poll(&mut cx) {
            drop(permit);
            core.respond_non_invite(&key, &to_tag, response, &target);
            return;
        }
        tokio::spawn(async move {
            let response = answer.await;
            drop(permit);
            core.respond_non_invite(&key, &to_tag, response, &target);
        });
    }

    /// Starts the server transaction of an INVITE and hands the INVITE to
    /// the service with the handle it answers through. No 100 Trying yet:
    /// the service hands one over ([`InviteTx::trying`](crate::InviteTx::trying))
    /// once it accepts the INVITE (authenticated, or in a known dialog), so
    /// a spoofed INVITE gets its challenge alone and not 100 + 407; the
    /// transaction sends it only if no response follows within 200 ms.
    fn serve_invite(
        &self,
        req: Request,
        key: crate::tx::Key,
        source: &Source,
        target: ReplyTarget,
        now: Instant,
        service: &Arc<dyn Service>,
    ) {
        let cancel = CancellationToken::new();
        let started = self.transactions.start_pending(
            key.clone(),
            true,
            None,
            Some(cancel.clone()),
            target.clone(),
            now,
            self.config.max_transactions,
        );
        if started.is_err() {
            self.table_full(&req, &key, &target);
            return;
        }
        let to_tag = Core::new_tag();
        let tx = crate::invite::server_tx(
            self.me.clone(),
            key,
            to_tag.clone(),
            target,
            cancel,
            req.clone(),
            self.server_header.clone(),
        );
        let incoming = Incoming {
            request: req,
            source: source.remote,
            transport: source.transport,
            to_tag,
            server: self.server_header.clone(),
        };
        service.handle_invite(incoming, tx);
    }

    /// Hands an ACK for a 2xx to the service.
    fn pass_ack(&self, req: Request, source: &Source) {
        let Some(service) = self.service.get() else {
            stats::dropped("stray_ack");
            return;
        };
        service.handle_ack(Incoming {
            request: req,
            source: source.remote,
            transport: source.transport,
            to_tag: String::new(),
            server: self.server_header.clone(),
        });
    }

    /// Sends `response` once and drops the transaction `key`.
    pub(crate) fn send_stateless_response(
        &self,
        key: &crate::tx::Key,
        response: Response,
        target: &ReplyTarget,
    ) {
        self.transactions.forget(key);
        let status = response.status;
        self.send(target, response.to_bytes(), Some(status));
    }

    /// Sends a transaction user's response through its pending server
    /// transaction.
    pub(crate) fn respond(
        &self,
        key: &crate::tx::Key,
        to_tag: &str,
        response: Response,
        target: &ReplyTarget,
    ) {
        let status = response.status;
        let sends =
            self.transactions
                .respond(key, status, to_tag, response.to_bytes(), Instant::now());
        for bytes in sends {
            self.send(target, bytes, Some(status));
        }
    }

    /// Hands a pending INVITE transaction its 100 Trying, which goes out
    /// when its machine asks for it (see [`TxTable::arm_trying`](crate::tx::TxTable::arm_trying)).
    pub(crate) fn arm_trying(&self, key: &crate::tx::Key, trying: Response, target: &ReplyTarget) {
        if let Some(bytes) = self
            .transactions
            .arm_trying(key, trying.to_bytes(), Instant::now())
        {
            self.send(target, bytes, Some(100));
        }
    }

    /// Sends a service's final answer to a non-INVITE request: through
    /// its server transaction, or for [`STATELESS_ANSWERS`] once, dropping
    /// the transaction.
    fn respond_non_invite(
        &self,
        key: &crate::tx::Key,
        to_tag: &str,
        response: Response,
        target: &ReplyTarget,
    ) {
        if STATELESS_ANSWERS.contains(&response.status) {
            self.send_stateless_response(key, response, target);
        } else {
            self.respond(key, to_tag, response, target);
        }
    }

    /// Answers `req` by the endpoint itself, statelessly (RFC 3261 §8.2.7):
    /// nothing is kept. The To tag is a keyed hash of the transaction key,
    /// so a retransmission gets the same response it would have got from a
    /// transaction.
    fn answer(
        &self,
        req: &Request,
        key: &crate::tx::Key,
        status: u16,
        extra: Vec<(sip_proto::HeaderName, String)>,
        target: &ReplyTarget,
    ) {
        let tag = format!("{:016x}", self.stateless_tags.hash_one(key));
        let mut resp = response_to(req, status, &tag, &self.server_header);
        for (name, value) in extra {
            resp.headers.push(name, value);
        }
        self.send(target, resp.to_bytes(), Some(status));
    }

    /// The transaction table is at `max_transactions`: 503 with
    /// Retry-After, statelessly.
    fn table_full(&self, req: &Request, key: &crate::tx::Key, target: &ReplyTarget) {
        stats::transaction_table_full();
        tracing::debug!(
            max = self.config.max_transactions,
            method = %req.method.as_str(),
            "transaction table full: 503"
        );
        let retry = vec![(sip_proto::HeaderName::RetryAfter, "5".to_owned())];
        self.answer(req, key, 503, retry, target);
    }

    /// Where responses to a request with top Via `via` go (RFC 3261
    /// §18.2.2, RFC 3581 §4): over
    /// UDP to the source IP and the `rport`/sent-by port; over TCP back on
    /// the connection, or if it has closed, to the source IP and sent-by port.
    fn reply_target(&self, via: &Via, source: &Source) -> ReplyTarget {
        let (addr, reconnect) = match source.transport {
            Transport::Udp => {
                let addr = udp_response_target(Some(via), source.remote);
                (addr, addr)
            }
            Transport::Tcp => {
                let port = via.port.unwrap_or(5060);
                (source.remote, SocketAddr::new(source.remote.ip(), port))
            }
        };
        ReplyTarget {
            transport: source.transport,
            addr,
            reconnect,
            path: source.reply.clone(),
        }
    }

    /// §18.1.2 / §17.1.3: a response goes to the client transaction its
    /// top Via branch and CSeq method name; anything else (broadcast Vias,
    /// stray or forged responses) is dropped.
    fn on_response(&self, resp: Response, _source: &Source) {
        self.counters.response_in(resp.status);
        let key = match (resp.top_via(), resp.cseq()) {
            (Some(via), Some(cseq)) => via
                .branch()
                .map(|b| crate::tx::Key::client(b, cseq.method.as_str())),
            _ => None,
        };
        let sends = key.and_then(|k| self.transactions.on_response(&k, resp, Instant::now()));
        match sends {
            Some(sends) => {
                for (target, bytes) in sends {
                    self.send(&target, bytes, None);
                }
            }
            None => stats::dropped("stray_response"),
        }
    }

    /// Answers a request that did not parse, if enough of it is readable
    /// (RFC 4475 §3.1.2: 400 with a Warning naming the fault), else drops it.
    fn on_malformed(&self, data: &[u8], status: u16, reason: &str, source: &Source) {
        stats::parse_error(source.transport);
        tracing::debug!(peer = %source.remote, transport = %source.transport, %reason, "malformed SIP message");
        let Some(salvaged) = sip_proto::salvage_request(data) else {
            stats::dropped("unparseable");
            return;
        };
        if salvaged.method == "ACK" {
            // Never answer an ACK (RFC 3261 §17.2.1).
            stats::dropped("malformed_ack");
            return;
        }
        let resp = response_to_salvaged(
            &salvaged,
            status,
            reason,
            source.remote,
            &Core::new_tag(),
            &self.config.user_agent,
            &self.config.domain,
        );
        let target = ReplyTarget {
            transport: source.transport,
            addr: source.remote,
            reconnect: source.remote,
            path: source.reply.clone(),
        };
        self.send(&target, resp.to_bytes(), Some(status));
    }

    /// Sends bytes back along `target`; UDP and a live TCP connection send
    /// at once, a closed TCP connection is re-opened (RFC 3261 §18.2.2).
    fn send(&self, target: &ReplyTarget, bytes: Bytes, status: Option<u16>) {
        if let Some(status) = status {
            self.counters.response_out(status);
        }
        if let Some(tap) = self.tap.get() {
            tap.message(false, target.transport, target.addr, &bytes);
        }
        match &target.path {
            ReplyPath::Udp(socket) => {
                if let Err(e) = socket.try_send_to(&bytes, target.addr) {
                    stats::dropped("udp_send_failed");
                    tracing::debug!(to = %target.addr, error = %e, "udp send failed");
                }
            }
            ReplyPath::Tcp(tx) => {
                let sent = match tx.try_send(bytes) {
                    Ok(()) => return,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        stats::dropped("tcp_queue_full");
                        return;
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(bytes)) => bytes,
                };
                if let Some(conn) = self.tcp.connections.get(target.addr) {
                    if conn.try_send(sent).is_err() {
                        stats::dropped("tcp_send_failed");
                    }
                    return;
                }
                if self.stop.is_cancelled() {
                    return;
                }
                let Some(core) = self.me.upgrade() else {
                    return;
                };
                let sink: Arc<dyn Sink> = core;
                transport::connect_and_send(
                    target.reconnect,
                    sent,
                    self.tcp.clone(),
                    sink,
                    self.stop.clone(),
                );
            }
        }
    }
}

impl Sink for Core {
    fn admit(&self, ip: IpAddr) -> bool {
        self.service.get().is_none_or(|service| service.admit(ip))
    }

    fn on_message(&self, data: Bytes, source: &Source) {
        // Datagrams were checked by the receive loop; a TCP connection was
        // checked at accept, but its source may have been banned since.
        if source.transport == Transport::Tcp && !self.admit(source.remote.ip()) {
            stats::dropped("not_admitted");
            return;
        }
        if let Some(tap) = self.tap.get() {
            tap.message(true, source.transport, source.remote, &data);
        }
        match Message::parse(&data, &self.config.limits) {
            Ok(Message::Request(req)) => self.on_request(req, source),
            Ok(Message::Response(resp)) => self.on_response(resp, source),
            Err(e) => self.on_malformed(&data, e.status_code(), &e.warning_text(), source),
        }
    }

    fn on_stream_error(&self, data: &[u8], status: u16, reason: &str, source: &Source) {
        if !self.admit(source.remote.ip()) {
            return;
        }
        self.on_malformed(data, status, reason, source);
    }
}

/// Why a request sent with [`EndpointHandle::request`] got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No final response within 64*T1 (Timer F, RFC 3261 §17.1.2.2).
    #[error("no response within the transaction timeout")]
    Timeout,
    /// The request could not be sent (no socket for the address family,
    /// TCP connection refused, send error).
    #[error("could not send the request: {0}")]
    Transport(String),
    /// The endpoint has stopped.
    #[error("the SIP endpoint has stopped")]
    Stopped,
}

/// Sends requests from the endpoint as a client (RFC 3261 §17.1.2).
#[derive(Clone)]
pub struct EndpointHandle {
    core: Weak<Core>,
}

impl EndpointHandle {
    /// Sends `request` (a non-INVITE; everything but the top Via filled in)
    /// to `dest` over `transport` and waits for its final response. The
    /// endpoint adds the top Via with a fresh branch and `rport`, reuses an
    /// open TCP connection to `dest` (the one a phone registered over) or
    /// opens one, and retransmits over UDP (Timer E).
    pub async fn request(
        &self,
        mut request: Request,
        transport: Transport,
        dest: SocketAddr,
    ) -> Result<Response, ClientError> {
        let (core, target, sent_by) = self.route(transport, dest).await?;
        add_via(&mut request, transport, sent_by);
        transact(core, target, request).await
    }

    /// As [`request`](Self::request), for a request that already carries
    /// its top Via (a CANCEL shares its INVITE's branch, RFC 3261 §9.1).
    pub(crate) async fn send_prepared(
        &self,
        request: Request,
        transport: Transport,
        dest: SocketAddr,
    ) -> Result<Response, ClientError> {
        let (core, target, _) = self.route(transport, dest).await?;
        transact(core, target, request).await
    }

    /// Sends an INVITE (everything but the top Via filled in) to `dest`
    /// over `transport` through a client INVITE transaction (RFC 3261
    /// §17.1.1): retransmitted over UDP (Timer A), given up after Timer B.
    /// Its responses arrive on the returned handle.
    pub async fn invite(
        &self,
        mut request: Request,
        transport: Transport,
        dest: SocketAddr,
    ) -> Result<ClientInviteTx, ClientError> {
        let (core, target, sent_by) = self.route(transport, dest).await?;
        let branch = add_via(&mut request, transport, sent_by);
        let key = crate::tx::Key::client(&branch, request.method.as_str());
        // Responses beyond this many unread ones are dropped: a peer that
        // floods 1xx cannot grow our memory. (flume: its buffer grows
        // with what is queued, where tokio's allocates 32 slots at once,
        // and the handle lives as long as the call.)
        let (events_tx, events) = flume::bounded(32);
        let sends = core.transactions.start_client_invite(
            key,
            request.clone(),
            target.clone(),
            events_tx,
            Instant::now(),
        );
        for bytes in sends {
            core.send(&target, bytes, None);
        }
        Ok(ClientInviteTx {
            events,
            handle: self.clone(),
            invite: Some(request),
            transport,
            dest,
        })
    }

    /// Sends a request outside any transaction (an ACK for a 2xx, RFC 3261
    /// §13.2.2.4): a fresh top Via branch, sent once.
    pub async fn send_stateless(
        &self,
        mut request: Request,
        transport: Transport,
        dest: SocketAddr,
    ) -> Result<(), ClientError> {
        let (core, target, sent_by) = self.route(transport, dest).await?;
        add_via(&mut request, transport, sent_by);
        core.send(&target, request.to_bytes(), None);
        Ok(())
    }

    /// The address a peer at `dest` reaches us on over `transport`: what
    /// goes into our Contact and Via (a wildcard listener resolved to the
    /// local address the OS routes `dest` from).
    pub fn local_addr_for(&self, transport: Transport, dest: SocketAddr) -> Option<SocketAddr> {
        let core = self.core.upgrade()?;
        let local = match transport {
            Transport::Udp => core.udp_for(dest)?.1,
            Transport::Tcp => core.tcp_local_for(dest)?,
        };
        Some(SocketAddr::new(
            reachable_ip(local.ip(), dest),
            local.port(),
        ))
    }

    /// The socket or connection to send to `dest` over, and our sent-by.
    async fn route(
        &self,
        transport: Transport,
        dest: SocketAddr,
    ) -> Result<(Arc<Core>, ReplyTarget, SocketAddr), ClientError> {
        let core = self.core.upgrade().ok_or(ClientError::Stopped)?;
        let (path, local) = match transport {
            Transport::Udp => {
                let (socket, local) = core.udp_for(dest).ok_or_else(|| {
                    ClientError::Transport(format!("no UDP listener for {dest}'s address family"))
                })?;
                (ReplyPath::Udp(socket), local)
            }
            Transport::Tcp => {
                let conn = match core.tcp.connections.get(dest) {
                    Some(conn) => conn,
                    None => {
                        let sink: Arc<dyn Sink> = core.clone();
                        transport::connect(dest, core.tcp.clone(), sink, core.stop.clone())
                            .await
                            .ok_or_else(|| {
                                ClientError::Transport(format!("cannot connect to {dest}"))
                            })?
                    }
                };
                let local = core.tcp_local_for(dest).ok_or_else(|| {
                    ClientError::Transport(format!("no TCP listener for {dest}'s address family"))
                })?;
                (ReplyPath::Tcp(conn), local)
            }
        };
        let sent_by = SocketAddr::new(reachable_ip(local.ip(), dest), local.port());
        let target = ReplyTarget {
            transport,
            addr: dest,
            reconnect: dest,
            path,
        };
        Ok((core, target, sent_by))
    }
}

/// Runs a client non-INVITE transaction for `request` (top Via in place)
/// and waits for its final response.
async fn transact(
    core: Arc<Core>,
    target: ReplyTarget,
    request: Request,
) -> Result<Response, ClientError> {
    let branch = request
        .top_via()
        .and_then(|v| v.branch().map(str::to_owned))
        .ok_or_else(|| ClientError::Transport("request has no Via branch".into()))?;
    let key = crate::tx::Key::client(&branch, request.method.as_str());
    let (waiter, outcome) = tokio::sync::oneshot::channel();
    let sends = core.transactions.start_client(
        key,
        request.to_bytes(),
        target.clone(),
        waiter,
        Instant::now(),
    );
    for bytes in sends {
        core.send(&target, bytes, None);
    }
    drop(core);
    match outcome.await {
        Ok(ClientOutcome::Response(r)) => Ok(*r),
        Ok(ClientOutcome::Timeout) => Err(ClientError::Timeout),
        Ok(ClientOutcome::TransportError) => Err(ClientError::Transport("transport error".into())),
        Err(_) => Err(ClientError::Stopped),
    }
}

/// Puts our Via with a fresh branch and `rport` on top; returns the branch.
fn add_via(request: &mut Request, transport: Transport, sent_by: SocketAddr) -> String {
    let branch = sip_proto::transaction::new_branch(rand::random());
    let via = format!(
        "SIP/2.0/{} {sent_by};branch={branch};rport",
        transport.as_via_str()
    );
    request
        .headers
        .insert_first(sip_proto::HeaderName::Via, via);
    branch
}

/// The address to put in our Via: the listener's own, or for a wildcard
/// listener the local address the OS routes `dest` from.
fn reachable_ip(local: std::net::IpAddr, dest: SocketAddr) -> std::net::IpAddr {
    if !local.is_unspecified() {
        return local;
    }
    let bind: SocketAddr = if dest.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(dest).and_then(|()| s.local_addr()))
        .map_or(local, |a| a.ip())
}
