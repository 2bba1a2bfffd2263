//! UDP and TCP transports (RFC 3261 §18): binding, the receive loops, TCP
//! framing by Content-Length with CRLF keep-alive (RFC 5626 §3.5.1), and the
//! paths a message takes back to its sender.
//!
//! What a hostile peer meets before anything is parsed: over UDP, the ban
//! list and a token bucket per source; over TCP, the ban list at accept, a
//! cap on connections per IP and in all (with slots kept for connections we
//! open to phones), a deadline for finishing each message once begun, and
//! an idle timeout between messages.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::framing::Framer;
use crate::ratelimit::RateLimiter;
use crate::{Error, Transport};

/// Messages queued for one TCP connection before it counts as stuck.
const TCP_SEND_QUEUE: usize = 256;
/// Largest UDP datagram we read; bigger ones are truncated by the OS and
/// then fail Content-Length framing.
const UDP_MAX_DATAGRAM: usize = 65_535;
/// After a TCP peer stops sending, how long a quiet send queue is kept
/// open for answers still being worked out before the connection closes.
const LINGER: Duration = Duration::from_millis(500);
/// A TCP peer that does not take a message within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Kernel buffer asked for on UDP sockets so bursts are not dropped.
const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Free places in a connection's send queue the reader waits for before
/// it hands on the next message: answers to a pipelining peer then queue
/// (and the reader stops reading) instead of being dropped.
const SEND_HEADROOM: usize = 8;
/// Queued messages are written together up to this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// How to send bytes back to where a message came from.
#[derive(Debug, Clone)]
pub(crate) enum ReplyPath {
    /// The UDP socket the datagram arrived on (so NAT bindings match).
    Udp(Arc<UdpSocket>),
    /// The TCP connection the message arrived on.
    Tcp(mpsc::Sender<Bytes>),
}

/// Where a message came from, and the way back.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub transport: Transport,
    pub remote: SocketAddr,
    pub reply: ReplyPath,
}

/// Binds a UDP socket: IPv6 sockets are v6-only so `udp:[::]:5060` and
/// `udp:0.0.0.0:5060` can both be configured; receive/send buffers enlarged.
pub(crate) fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, Error> {
    let err = |source| Error::Bind {
        transport: Transport::Udp,
        addr,
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    // Buffer sizes are a best effort: the kernel may cap them.
    let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER);
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(socket.into()).map_err(err)
}

/// Binds a TCP listener with SO_REUSEADDR (a restart does not wait for
/// TIME_WAIT) and, for IPv6, v6-only.
pub(crate) fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, Error> {
    let err = |source| Error::Bind {
        transport: Transport::Tcp,
        addr,
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

/// What the transports hand every complete message to.
pub(crate) trait Sink: Send + Sync + 'static {
    /// One complete message (a datagram, or one framed stream message).
    fn on_message(&self, data: Bytes, source: &Source);
    /// A stream could not be framed (`status`, `reason` say why); the
    /// connection is about to close.
    fn on_stream_error(&self, data: &[u8], status: u16, reason: &str, source: &Source);
    /// Whether anything from `ip` is processed at all (the ban list).
    fn admit(&self, ip: IpAddr) -> bool;
}

/// Receives datagrams until cancelled. Each passes the source's token
/// bucket (if limited) and the ban list before anything else, STUN
/// keep-alives included.
pub(crate) async fn udp_loop(
    socket: Arc<UdpSocket>,
    sink: Arc<dyn Sink>,
    limiter: Option<Arc<RateLimiter>>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; UDP_MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, remote)) => {
                let Some(data) = buf.get(..len) else { continue };
                if let Some(limiter) = &limiter
                    && !limiter.allow(remote.ip(), Instant::now())
                {
                    continue;
                }
                if !sink.admit(remote.ip()) {
                    crate::stats::dropped("not_admitted");
                    continue;
                }
                match crate::keepalive::classify(data, remote) {
                    Some(crate::keepalive::KeepAlive::Stun(response)) => {
                        metrics::counter!("sip_keepalives_total", "kind" => "stun").increment(1);
                        let _ = socket.try_send_to(&response, remote);
                        continue;
                    }
                    Some(crate::keepalive::KeepAlive::Crlf) => {
                        metrics::counter!("sip_keepalives_total", "kind" => "crlf").increment(1);
                        continue;
                    }
                    None => {}
                }
                let source = Source {
                    transport: Transport::Udp,
                    remote,
                    reply: ReplyPath::Udp(socket.clone()),
                };
                sink.on_message(Bytes::copy_from_slice(data), &source);
            }
            // ICMP port unreachable from an earlier send shows up here on
            // some systems; it says nothing about this socket.
            Err(e) => tracing::debug!(error = %e, "udp receive error"),
        }
    }
}

/// Open TCP connections by remote address, for responses whose own
/// connection has gone and for reuse (RFC 3261 §18.2.2).
#[derive(Default)]
pub(crate) struct Connections {
    by_peer: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
}

impl Connections {
    fn insert(&self, peer: SocketAddr, tx: mpsc::Sender<Bytes>) {
        self.by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, tx);
    }

    fn remove(&self, peer: SocketAddr) {
        self.by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer);
    }

    /// The open connection to `peer`, if any.
    pub(crate) fn get(&self, peer: SocketAddr) -> Option<mpsc::Sender<Bytes>> {
        self.by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .filter(|tx| !tx.is_closed())
            .cloned()
    }

    /// Number of open connections.
    pub(crate) fn len(&self) -> usize {
        self.by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Accepted connections by remote IP, against a cap per IP.
pub(crate) struct PerIp {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub(crate) fn new(limit: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` at the cap.
    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

/// One accepted connection's place in [`PerIp`]; given back on drop.
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self
            .per_ip
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Settings every TCP connection shares.
#[derive(Clone)]
pub(crate) struct TcpSettings {
    pub limits: sip_proto::Limits,
    /// Between messages: no complete message for this long closes.
    pub idle_timeout: Duration,
    /// A message begun must be complete within this long.
    pub message_timeout: Duration,
    pub connections: Arc<Connections>,
    /// Connection slots anyone may take (accepted and opened).
    pub permits: Arc<Semaphore>,
    /// Slots only connections we open may take.
    pub outbound_permits: Arc<Semaphore>,
    pub per_ip: Arc<PerIp>,
}

/// Accepts TCP connections until cancelled; each gets its own task.
pub(crate) async fn tcp_accept_loop(
    listener: TcpListener,
    settings: TcpSettings,
    sink: Arc<dyn Sink>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A banned source learns nothing, not even that we speak SIP.
        if !sink.admit(peer.ip()) {
            crate::stats::dropped("not_admitted");
            drop(stream);
            continue;
        }
        let Some(slot) = settings.per_ip.try_acquire(peer.ip()) else {
            crate::stats::dropped("tcp_per_ip_limit");
            tracing::debug!(%peer, "tcp connection refused: per-IP connection limit reached");
            drop(stream);
            continue;
        };
        let Ok(permit) = settings.permits.clone().try_acquire_owned() else {
            crate::stats::dropped("tcp_connection_limit");
            tracing::warn!(%peer, "tcp connection refused: connection limit reached");
            drop(stream);
            continue;
        };
        let settings = settings.clone();
        let sink = sink.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, settings, sink, stop, None).await;
            drop(permit);
            drop(slot);
        });
    }
}

/// Opens a TCP connection to `peer`, sends `first`, and serves it like an
/// accepted one (responses may come back on it).
pub(crate) fn connect_and_send(
    peer: SocketAddr,
    first: Bytes,
    settings: TcpSettings,
    sink: Arc<dyn Sink>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        if let Some(conn) = connect(peer, settings, sink, stop).await {
            let _ = conn.try_send(first);
        }
    });
}

/// Opens a TCP connection to `peer` and serves it like an accepted one;
/// returns its send queue, or `None` if it could not be opened in 5 s or
/// the connection limit is reached. It takes a reserved slot first, so
/// peers that connect to us cannot leave us unable to reach a phone.
pub(crate) async fn connect(
    peer: SocketAddr,
    settings: TcpSettings,
    sink: Arc<dyn Sink>,
    stop: CancellationToken,
) -> Option<mpsc::Sender<Bytes>> {
    let permit = settings
        .outbound_permits
        .clone()
        .try_acquire_owned()
        .or_else(|_| settings.permits.clone().try_acquire_owned());
    let Ok(permit) = permit else {
        crate::stats::dropped("tcp_connection_limit");
        return None;
    };
    let stream = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(peer)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tcp connect failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "tcp connect timed out");
            return None;
        }
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        serve_connection(stream, peer, settings, sink, stop, Some(ready_tx)).await;
        drop(permit);
    });
    ready_rx.await.ok()
}

/// Serves one connection: a writer task drains its send queue, this task
/// reads and frames.
///
/// The reader waits for room in the send queue before it hands on each
/// message. It used to hand messages on as fast as it could frame them
/// while answers were queued with `try_send` into a queue of
/// [`TCP_SEND_QUEUE`]: a peer that pipelined thousands of requests had the
/// reader run ahead of the writer (one write per answer against one read
/// per dozens of requests), the queue filled, and every answer after it was
/// dropped as `tcp_queue_full` while the connection stayed open: 10,000
/// pipelined OPTIONS got about 1,500 answers. Now a full queue stops the
/// reading (TCP flow control then slows the peer) and the writer sends
/// what is queued in one write.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    settings: TcpSettings,
    sink: Arc<dyn Sink>,
    stop: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<mpsc::Sender<Bytes>>>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(TCP_SEND_QUEUE);
    settings.connections.insert(peer, tx.clone());
    if let Some(ready) = ready {
        let _ = ready.send(tx.clone());
    }
    let closing = CancellationToken::new();
    let writer = tokio::spawn({
        let closing = closing.clone();
        async move {
            let mut batch = BytesMut::new();
            loop {
                let next = tokio::select! {
                    biased;
                    m = rx.recv() => m,
                    _ = closing.cancelled() => break,
                };
                let Some(bytes) = next else { break };
                if !write_queued(&mut wr, &mut rx, bytes, &mut batch).await {
                    return;
                }
            }
            // The reading side has ended: send what is queued and what the
            // transaction user still answers shortly (a REGISTER's 401 may
            // be in the works), then close; transactions that outlive the
            // connection no longer hold it open.
            while let Ok(Some(bytes)) = tokio::time::timeout(LINGER, rx.recv()).await {
                if !write_queued(&mut wr, &mut rx, bytes, &mut batch).await {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        }
    });
    let source = Source {
        transport: Transport::Tcp,
        remote: peer,
        reply: ReplyPath::Tcp(tx.clone()),
    };
    read_messages(&mut rd, peer, &settings, &*sink, &source, &tx, &stop).await;
    settings.connections.remove(peer);
    drop(source);
    drop(tx);
    closing.cancel();
    let _ = writer.await;
}

/// Reads and frames messages until the peer closes, a deadline passes, the
/// stream cannot be framed or the endpoint stops.
///
/// Two clocks: between messages, the idle timeout since the last complete
/// message (bytes of an unfinished message do not restart it); once a
/// message has begun, the message deadline since its first byte, however
/// slowly its bytes keep coming.
async fn read_messages(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    settings: &TcpSettings,
    sink: &dyn Sink,
    source: &Source,
    tx: &mpsc::Sender<Bytes>,
    stop: &CancellationToken,
) {
    let limits = settings.limits;
    let mut buf = BytesMut::with_capacity(4096);
    let mut framer = Framer::default();
    let mut idle_since = Instant::now();
    let mut message_started: Option<Instant> = None;
    loop {
        let deadline = match message_started {
            Some(at) => at + settings.message_timeout,
            None => idle_since + settings.idle_timeout,
        };
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout_at(deadline.into(), rd.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) if message_started.is_some() => {
                crate::stats::dropped("tcp_message_timeout");
                tracing::debug!(
                    %peer,
                    timeout = ?settings.message_timeout,
                    buffered = buf.len(),
                    "tcp message not completed in time, closing"
                );
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "tcp connection idle, closing");
                return;
            }
        }
        loop {
            let before = buf.len();
            let keepalive = take_keepalive(&mut buf);
            if buf.len() != before {
                framer.reset();
            }
            match keepalive {
                Keepalive::Ping => {
                    idle_since = Instant::now();
                    message_started = None;
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                    continue;
                }
                Keepalive::NeedMore => break,
                Keepalive::None => {}
            }
            match framer.next(&buf, &limits) {
                Ok(Some(len)) => {
                    // Room for the answers first (see `serve_connection`);
                    // the permits are given back at once, the room stays.
                    let room = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = tx.reserve_many(SEND_HEADROOM) => r,
                    };
                    if room.is_err() {
                        // The writer has given up on the peer.
                        return;
                    }
                    let msg = buf.split_to(len).freeze();
                    idle_since = Instant::now();
                    message_started = None;
                    sink.on_message(msg, source);
                }
                Ok(None) => {
                    if buf.len() > limits.max_message_size {
                        let reason = format!(
                            "message exceeds {} bytes without completing",
                            limits.max_message_size
                        );
                        sink.on_stream_error(&buf, 513, &reason, source);
                        return;
                    }
                    break;
                }
                Err(e) => {
                    sink.on_stream_error(&buf, e.status_code(), &e.warning_text(), source);
                    return;
                }
            }
        }
        if buf.is_empty() {
            message_started = None;
        } else if message_started.is_none() {
            message_started = Some(Instant::now());
        }
    }
}

/// Writes `first` and whatever else is queued behind it (up to
/// [`WRITE_BATCH`] bytes) in one write.
async fn write_queued(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Bytes>,
    first: Bytes,
    batch: &mut BytesMut,
) -> bool {
    let Ok(mut more) = rx.try_recv() else {
        return write_within(wr, &first).await;
    };
    batch.clear();
    batch.extend_from_slice(&first);
    loop {
        batch.extend_from_slice(&more);
        if batch.len() >= WRITE_BATCH {
            break;
        }
        match rx.try_recv() {
            Ok(next) => more = next,
            Err(_) => break,
        }
    }
    write_within(wr, batch).await
}

/// Writes `bytes`, giving up on a peer that has not taken them within
/// [`WRITE_TIMEOUT`] (it stopped reading; the connection is dropped rather
/// than held open by it).
async fn write_within(wr: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

enum Keepalive {
    /// A CRLFCRLF ping was consumed; answer with a CRLF pong.
    Ping,
    /// Only a lone CRLF is buffered: wait for the rest of the ping.
    NeedMore,
    /// No keep-alive at the front of the buffer.
    None,
}

/// RFC 5626 §3.5.1: a CRLFCRLF from the client is a ping answered by CRLF.
/// Lone CRLFs before a start line are ignored (RFC 3261 §7.5).
fn take_keepalive(buf: &mut BytesMut) -> Keepalive {
    let crlfs = buf.chunks(2).take_while(|c| *c == b"\r\n").count();
    if crlfs == 0 {
        return Keepalive::None;
    }
    if crlfs * 2 == buf.len() && crlfs == 1 {
        return Keepalive::NeedMore;
    }
    buf.advance(crlfs * 2);
    if crlfs >= 2 {
        Keepalive::Ping
    } else {
        Keepalive::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_ping_is_consumed_and_answered() {
        let mut b = BytesMut::from(&b"\r\n\r\nOPTIONS"[..]);
        assert!(matches!(take_keepalive(&mut b), Keepalive::Ping));
        assert_eq!(&b[..], b"OPTIONS");
    }

    #[test]
    fn lone_crlf_waits_for_more() {
        let mut b = BytesMut::from(&b"\r\n"[..]);
        assert!(matches!(take_keepalive(&mut b), Keepalive::NeedMore));
        b.extend_from_slice(b"\r\n");
        assert!(matches!(take_keepalive(&mut b), Keepalive::Ping));
        assert!(b.is_empty());
    }

    #[test]
    fn crlf_before_start_line_is_ignored() {
        let mut b = BytesMut::from(&b"\r\nINVITE"[..]);
        assert!(matches!(take_keepalive(&mut b), Keepalive::None));
        assert_eq!(&b[..], b"INVITE");
    }
}
