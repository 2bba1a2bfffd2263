//! A call leg's media endpoint: its RTP/RTCP sockets, the remote address
//! from SDP, and symmetric-RTP latching (RFC 4961 §4 and RFC 3550 §8.2's
//! source checks), plus the media timeout the call awaits.
//!
//! Latching: until a leg has latched, it sends to the SDP address. A
//! valid RTP packet (RTP version 2, one of the leg's negotiated payload
//! types) from a source the leg's [`Latching`] admits latches the leg onto
//! that source (see [`crate::latch`]: by default only the IP its SIP
//! signalling came from or the SDP's IP). From then on the leg sends to
//! the latched address and drops RTP from every other one, counted in
//! [`LegStats::dropped_foreign`] and the `rtp_foreign_dropped_total`
//! metric; another source takes over only after a probation while the
//! latched one is silent. The latch is released when the SDP changes
//! ([`LegHandle::set_remote`]) or on request ([`LegHandle::relatch`]).
//!
//! RFC 4733 telephone-events are detected as they pass (each digit once,
//! however many packets carry it) and reported to [`LegHandle::digits`]
//! subscribers, whatever drives the leg.
//!
//! RTCP is terminated here: it is accepted from the peer's IP address (the
//! port latches on the first valid compound packet), parsed and counted,
//! never forwarded (a relayed stream's report blocks would describe SSRCs
//! and sequence numbers the far end never saw). Each leg sends its own
//! reports instead, about what it received from and sent to its peer (see
//! [`crate::report`]), and a BYE when it is dropped.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rtp::{Codec, Digit, DtmfReceiver, RtpHeader, RtpPacket};
use tokio::time::Sleep;

use crate::error::Error;
use crate::latch::{Latch, Latching, Verdict};
use crate::pool::PortPair;
use crate::report::{DEFAULT_INTERVAL, Reporter, randomized};

/// The largest datagram a leg accepts (an Ethernet MTU); larger ones are
/// dropped and counted.
pub const MAX_DATAGRAM: usize = 1500;

/// A receive buffer: one byte more than [`MAX_DATAGRAM`], so an oversize
/// datagram shows as one that filled it.
pub type Buffer = [u8; MAX_DATAGRAM + 1];

/// Refused datagrams [`Leg::try_recv`] reads before it gives up its turn.
const TRY_RECV_BURST: usize = 64;

/// A zeroed receive buffer on the heap.
pub fn buffer() -> Box<Buffer> {
    Box::new([0; MAX_DATAGRAM + 1])
}

/// Digits a [`Digits`] subscriber may fall behind by before it misses
/// some: more than anyone types ahead of a prompt (two bytes a slot, on
/// the legs someone listens to).
const DIGIT_BACKLOG: usize = 16;

/// Payload type of comfort noise (RFC 3389), static in RFC 3551.
pub const PT_COMFORT_NOISE: u8 = 13;

/// What a leg sends and receives, as negotiated in SDP (RFC 3264 §5.1:
/// each side's numbers are the ones it receives with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    /// The voice codec.
    pub codec: Codec,
    /// Payload type we send the codec with (the peer's number).
    pub send_payload_type: u8,
    /// Payload type the peer sends the codec with (our number).
    pub recv_payload_type: u8,
    /// RFC 4733 telephone-event payload type we send, if negotiated.
    pub send_event_payload_type: Option<u8>,
    /// RFC 4733 telephone-event payload type the peer sends, if negotiated.
    pub recv_event_payload_type: Option<u8>,
}

impl StreamParams {
    /// `codec` with its static payload type both ways and no
    /// telephone-event.
    pub fn new(codec: Codec) -> Self {
        StreamParams {
            codec,
            send_payload_type: codec.payload_type(),
            recv_payload_type: codec.payload_type(),
            send_event_payload_type: None,
            recv_event_payload_type: None,
        }
    }

    /// Sets the codec's payload types (dynamic numbers, or a peer that
    /// numbers differently).
    pub fn with_payload_types(mut self, send: u8, recv: u8) -> Self {
        self.send_payload_type = send;
        self.recv_payload_type = recv;
        self
    }

    /// Sets RFC 4733 telephone-event's payload types.
    pub fn with_telephone_event(mut self, send: u8, recv: u8) -> Self {
        self.send_event_payload_type = Some(send);
        self.recv_event_payload_type = Some(recv);
        self
    }

    /// The parameters and the remote RTP address of one negotiated SDP
    /// `m=` section (what [`sdp::negotiate`] returns).
    ///
    /// # Errors
    /// [`Error::NoCodec`] for a refused section, [`Error::UnsupportedCodec`]
    /// for a codec other than PCMU, PCMA and G722.
    pub fn from_sdp(stream: &sdp::Stream) -> Result<(StreamParams, Option<SocketAddr>), Error> {
        let negotiated = stream.codec.as_ref().ok_or(Error::NoCodec)?;
        let name = &negotiated.rtpmap.encoding;
        let codec =
            Codec::from_name(name).ok_or_else(|| Error::UnsupportedCodec(name.to_string()))?;
        let mut params = StreamParams::new(codec)
            .with_payload_types(negotiated.send_payload_type, negotiated.recv_payload_type);
        if let Some(te) = &stream.telephone_event {
            params = params.with_telephone_event(te.send_payload_type, te.recv_payload_type);
        }
        Ok((params, stream.remote))
    }

    fn kind_of(&self, payload_type: u8) -> Option<PayloadKind> {
        if payload_type == self.recv_payload_type {
            Some(PayloadKind::Audio)
        } else if Some(payload_type) == self.recv_event_payload_type {
            Some(PayloadKind::Event)
        } else if payload_type == PT_COMFORT_NOISE {
            Some(PayloadKind::ComfortNoise)
        } else {
            None
        }
    }
}

/// What an accepted RTP packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// The negotiated voice codec.
    Audio,
    /// An RFC 4733 telephone-event.
    Event,
    /// RFC 3389 comfort noise.
    ComfortNoise,
}

/// An RTP packet a leg accepted: the first `len` bytes of the buffer
/// passed to [`Leg::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Datagram length.
    pub len: usize,
    /// Its fixed header.
    pub header: RtpHeader,
    /// What its payload type means on this leg.
    pub kind: PayloadKind,
}

/// Counters of one leg, as [`LegHandle::stats`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LegStats {
    /// RTP packets accepted.
    pub rtp_received: u64,
    /// RTP packets sent.
    pub rtp_sent: u64,
    /// Packets that could not be sent: no destination yet, or the socket's
    /// buffer was full (a relay drops rather than stalls).
    pub send_dropped: u64,
    /// Datagrams that are not RTP version 2 (garbage, truncated headers).
    pub dropped_malformed: u64,
    /// Datagrams larger than [`MAX_DATAGRAM`].
    pub dropped_oversize: u64,
    /// RTP from an address the leg is not latched onto (or may not latch).
    pub dropped_foreign: u64,
    /// RTP with a payload type the leg did not negotiate, or one the other
    /// side of a bridge cannot take.
    pub dropped_payload_type: u64,
    /// Valid RTCP compound packets received from the peer.
    pub rtcp_received: u64,
    /// RTCP datagrams dropped: malformed, oversize or foreign.
    pub rtcp_dropped: u64,
    /// RTCP compounds (reports, BYE) sent.
    pub rtcp_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rtp_received: AtomicU64,
    rtp_sent: AtomicU64,
    send_dropped: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_foreign: AtomicU64,
    dropped_payload_type: AtomicU64,
    rtcp_received: AtomicU64,
    rtcp_dropped: AtomicU64,
    rtcp_sent: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// State a leg shares with its handles: counters, activity, and requests
/// the owner applies before its next packet.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// When the leg was made; activity is measured from here.
    epoch: Instant,
    /// Nanoseconds after `epoch` of the latest accepted RTP packet (or of
    /// the latest SDP change).
    last_rtp: AtomicU64,
    /// Set when `control` holds a request.
    pending: AtomicBool,
    control: Mutex<Control>,
    /// The latched source, for handles to read.
    latched: Mutex<Option<SocketAddr>>,
    /// The leg's digits for subscribers, kept while someone listens.
    digits: Mutex<DigitTap>,
}

/// Where a leg's digits go.
#[derive(Debug, Default)]
enum DigitTap {
    /// Nobody listens: digits are dropped.
    #[default]
    Idle,
    /// Someone listens (boxed: most legs never have a subscriber).
    Open(Box<Tap>),
    /// The leg is gone and nobody listens: new subscribers see the end.
    Gone,
}

/// A leg's latest digits and its subscribers: a small ring, numbered so
/// that each subscriber reads each digit once (a tokio broadcast queue
/// cost 40 bytes a slot, allocated up front on every subscribed leg,
/// even with no digit ever sent).
#[derive(Debug, Default)]
struct Tap {
    /// Digit number `n` is at `n % DIGIT_BACKLOG`, for the latest ones.
    ring: [Option<Digit>; DIGIT_BACKLOG],
    /// The number of the next digit sent.
    next: u64,
    /// Live [`Digits`]; the tap goes back to `Idle` when the last goes.
    subscribers: u32,
    /// The id the next subscriber gets.
    next_id: u32,
    /// The leg is gone: subscribers read what is left, then the end.
    closed: bool,
    /// Subscribers waiting for the next digit, by id.
    waiting: Vec<(u32, Waker)>,
}

impl Tap {
    /// Keeps `digit`; returns who waits for it, to wake once the lock is
    /// released.
    fn send(&mut self, digit: Digit) -> Vec<(u32, Waker)> {
        self.ring[slot(self.next)] = Some(digit);
        self.next += 1;
        std::mem::take(&mut self.waiting)
    }

    /// The leg is gone; returns who waits, to wake to see the end.
    fn close(&mut self) -> Vec<(u32, Waker)> {
        self.closed = true;
        std::mem::take(&mut self.waiting)
    }
}

/// Wakes the subscribers `waiting` (with no lock held).
fn wake(waiting: Vec<(u32, Waker)>) {
    for (_, waker) in waiting {
        waker.wake();
    }
}

/// The ring slot of digit number `n`.
fn slot(n: u64) -> usize {
    // The remainder is below DIGIT_BACKLOG: it fits.
    (n % DIGIT_BACKLOG as u64) as usize
}

impl Shared {
    fn digit_tap(&self) -> MutexGuard<'_, DigitTap> {
        lock(&self.digits)
    }

    /// Offers a digit to the subscribers; none is not an error.
    fn send_digit(&self, digit: Digit) {
        let waiting = match &mut *self.digit_tap() {
            DigitTap::Open(tap) if !tap.closed => tap.send(digit),
            _ => return,
        };
        wake(waiting);
    }
}

#[derive(Debug, Default)]
struct Control {
    /// A new SDP address (`Some(None)`: the SDP has none, e.g. hold).
    remote: Option<Option<SocketAddr>>,
    relatch: bool,
    sending: Option<bool>,
    /// A new signalling IP (`Some(None)`: none known).
    signalling: Option<Option<IpAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a plain assignment: a poisoned lock holds
    // consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn touch(&self, now: Instant) {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.last_rtp.store(nanos, Ordering::Relaxed);
    }

    fn last_rtp(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_rtp.load(Ordering::Relaxed))
    }
}

/// One call leg's media: the leased sockets and where the peer is.
///
/// The owner (a bridge, an echo, later a player or recorder) drives it with
/// [`Leg::recv`] and [`Leg::send_rtp`]; everyone else holds a
/// [`LegHandle`].
#[derive(Debug)]
pub struct Leg {
    ports: PortPair,
    params: StreamParams,
    latch: Latch,
    /// Counts RTP dropped from sources the latch refused, for every leg.
    foreign_metric: metrics::Counter,
    /// False while the peer does not want our media (hold: its SDP says
    /// `sendonly` or `inactive`).
    sending: bool,
    remote: Option<SocketAddr>,
    rtcp_peer: Option<SocketAddr>,
    shared: Arc<Shared>,
    reporter: Reporter,
    /// Base RTCP report interval; `None`: no reports, no BYE.
    rtcp_interval: Option<Duration>,
    /// Made on the first `recv` (a timer needs the runtime).
    rtcp_timer: Option<Pin<Box<Sleep>>>,
    dtmf: DtmfReceiver,
    /// The stream this leg last sent, whoever sent it (a bridge, a prompt,
    /// an echo): the next sender continues it.
    last_out: Option<Outbound>,
}

/// The last RTP packet a leg sent: SSRC, sequence number, timestamp, when.
#[derive(Debug, Clone, Copy)]
struct Outbound {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    at: Instant,
}

impl Leg {
    /// A leg on a leased port pair, sending `params` to `remote` (the SDP
    /// `c=` address and `m=` port; `None` until known or on hold) until it
    /// latches.
    pub fn new(ports: PortPair, params: StreamParams, remote: Option<SocketAddr>) -> Leg {
        Leg {
            ports,
            params,
            latch: Latch::new(Latching::default()),
            foreign_metric: metrics::counter!("rtp_foreign_dropped_total"),
            sending: true,
            remote,
            rtcp_peer: None,
            shared: Arc::new(Shared {
                counters: Counters::default(),
                epoch: Instant::now(),
                last_rtp: AtomicU64::new(0),
                pending: AtomicBool::new(false),
                control: Mutex::new(Control::default()),
                latched: Mutex::new(None),
                digits: Mutex::new(DigitTap::Idle),
            }),
            reporter: Reporter::new(params.codec.clock_rate()),
            rtcp_interval: Some(DEFAULT_INTERVAL),
            rtcp_timer: None,
            last_out: None,
            dtmf: DtmfReceiver::new(),
        }
    }

    /// Sets the base interval of the leg's RTCP reports (default 5 s, RFC
    /// 3550 §6.2; each interval is randomized ±50 %); `None` sends no RTCP
    /// at all.
    pub fn with_rtcp_interval(mut self, interval: Option<Duration>) -> Leg {
        self.rtcp_interval = interval;
        self.rtcp_timer = None;
        self
    }

    /// Sets which sources the leg may latch onto (default
    /// [`Latching::Strict`]).
    pub fn with_latching(mut self, latching: Latching) -> Leg {
        self.latch.set_mode(latching);
        self
    }

    /// Sets the IP the leg's SIP signalling comes from: in
    /// [`Latching::Strict`] mode RTP is taken from it (or from the SDP's IP)
    /// and from nowhere else.
    pub fn with_signalling(mut self, ip: Option<IpAddr>) -> Leg {
        self.latch.set_signalling(ip);
        self
    }

    /// A handle for the call: counters, timeout, SDP changes.
    pub fn handle(&self) -> LegHandle {
        LegHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The negotiated stream.
    pub fn params(&self) -> StreamParams {
        self.params
    }

    /// Changes the negotiated stream (a re-INVITE changed the codec).
    /// Stop the bridge that owns the leg first; a new one picks this up.
    pub fn set_params(&mut self, params: StreamParams) {
        self.params = params;
    }

    /// The leased ports (our address for the SDP).
    pub fn ports(&self) -> &PortPair {
        &self.ports
    }

    /// The SDP address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The latched source, once RTP has arrived.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latch.current()
    }

    /// Where RTP goes: the latched source, else the SDP address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latch.current().or(self.remote)
    }

    /// The SDP changed: send to `remote` and latch again.
    pub fn set_remote(&mut self, remote: Option<SocketAddr>) {
        self.remote = remote;
        self.unlatch();
        self.shared.touch(Instant::now());
    }

    /// Forgets the latched source; the next valid RTP latches again.
    pub fn relatch(&mut self) {
        self.unlatch();
    }

    fn unlatch(&mut self) {
        self.latch.reset();
        self.rtcp_peer = None;
        *lock(&self.shared.latched) = None;
    }

    /// Applies handles' requests; called before each packet is judged or
    /// sent (a plain load when there is none).
    fn apply_control(&mut self) {
        if !self.shared.pending.load(Ordering::Relaxed)
            || !self.shared.pending.swap(false, Ordering::Acquire)
        {
            return;
        }
        let control = std::mem::take(&mut *lock(&self.shared.control));
        if let Some(ip) = control.signalling {
            self.latch.set_signalling(ip);
        }
        if let Some(remote) = control.remote {
            self.set_remote(remote);
        } else if control.relatch {
            self.relatch();
        }
        if let Some(sending) = control.sending {
            self.sending = sending;
        }
    }

    /// Whether the leg sends RTP: false while the peer does not want our
    /// media (its SDP direction is `sendonly` or `inactive`, RFC 3264
    /// §6.1); what arrives is still received.
    pub fn set_sending(&mut self, sending: bool) {
        self.sending = sending;
    }

    /// Counts a received packet the owner dropped because the other side
    /// cannot take its payload type.
    pub fn count_dropped_payload_type(&self) {
        bump(&self.shared.counters.dropped_payload_type);
    }

    /// Waits for the next accepted RTP packet, read into `buf`. Everything
    /// else that arrives meanwhile (RTCP, garbage, oversize datagrams,
    /// foreign sources, unknown payload types) is handled or dropped and
    /// counted here. Cancel-safe: dropping the future loses no accepted
    /// packet.
    pub async fn recv(&mut self, buf: &mut Buffer) -> Received {
        loop {
            if let Some(received) = self.try_recv(buf) {
                return received;
            }
            self.rtp_ready().await;
        }
    }

    /// Waits until an RTP datagram may be read with
    /// [`try_recv`](Self::try_recv), serving RTCP and the leg's reports
    /// meanwhile. Holds no buffer: an owner that waits on many legs (a
    /// bridge) keeps none per leg while the line is quiet. Cancel-safe.
    pub async fn rtp_ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_rtp_ready(cx)).await;
    }

    /// [`rtp_ready`](Self::rtp_ready) as a poll: ready once an RTP
    /// datagram may be read. The wakers live in the sockets' own
    /// registrations and the report timer, so a task waiting on several
    /// legs keeps no state per leg (one task polls a leg at a time).
    pub fn poll_rtp_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        use std::future::Future as _;
        if let (Some(interval), None) = (self.rtcp_interval, &self.rtcp_timer) {
            self.rtcp_timer = Some(Box::pin(tokio::time::sleep(randomized(interval))));
        }
        // Bounded, so that a flood on the RTCP port cannot keep the task;
        // then the task is woken again to read on.
        let mut rtcp_waiting = false;
        for _ in 0..TRY_RECV_BURST {
            match self.ports.sockets().rtcp.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {
                    // Read into a buffer that lives only for the read (no
                    // 1.5 KB per leg kept for RTCP).
                    let mut data = [0u8; MAX_DATAGRAM + 1];
                    match self.ports.sockets().rtcp.try_recv_from(&mut data) {
                        Ok((len, from)) => self.on_rtcp(data.get(..len).unwrap_or_default(), from),
                        // Readiness cleared: the next poll registers the waker.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // Linux reports ICMP errors on unconnected UDP
                        // sockets only with IP_RECVERR; read, they are gone.
                        Err(_) => {}
                    }
                }
                // Transient: see above.
                Poll::Ready(Err(_)) => {}
                Poll::Pending => {
                    rtcp_waiting = true;
                    break;
                }
            }
        }
        if !rtcp_waiting {
            cx.waker().wake_by_ref();
        }
        if let Some(timer) = &mut self.rtcp_timer
            && timer.as_mut().poll(cx).is_ready()
        {
            // Resets the timer; polled again next time.
            self.send_report();
            if let Some(timer) = &mut self.rtcp_timer {
                let _ = timer.as_mut().poll(cx);
            }
        }
        match self.ports.sockets().rtp.poll_recv_ready(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next accepted RTP packet already waiting on the socket, read
    /// into `buf`; `None` when there is none (after [`rtp_ready`]
    /// (Self::rtp_ready) said there was, the datagrams were all dropped).
    /// Reads at most a burst of refused datagrams per call, so a flood
    /// from a foreign source cannot keep the caller from other work.
    pub fn try_recv(&mut self, buf: &mut Buffer) -> Option<Received> {
        for _ in 0..TRY_RECV_BURST {
            match self.ports.sockets().rtp.try_recv_from(&mut buf[..]) {
                Ok((len, from)) => {
                    if let Some(received) = self.on_rtp(buf.get(..len).unwrap_or_default(), from) {
                        return Some(received);
                    }
                }
                // WouldBlock clears the socket's readiness.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                // An ICMP report read in place of a datagram: transient.
                Err(_) => {}
            }
        }
        None
    }

    fn on_rtp(&mut self, data: &[u8], from: SocketAddr) -> Option<Received> {
        self.apply_control();
        let counters = &self.shared.counters;
        if data.len() > MAX_DATAGRAM {
            bump(&counters.dropped_oversize);
            return None;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            bump(&counters.dropped_malformed);
            return None;
        };
        let header = packet.header();
        // Only a packet of a negotiated payload type may latch.
        let negotiated = self.params.kind_of(header.payload_type).is_some();
        let now = Instant::now();
        let verdict = if negotiated || self.latch.current() == Some(from) {
            self.latch
                .judge(from, self.remote, header.ssrc, header.sequence, now)
        } else {
            Verdict::Drop
        };
        match verdict {
            Verdict::Accept => {}
            Verdict::Drop => {
                bump(&counters.dropped_foreign);
                self.foreign_metric.increment(1);
                return None;
            }
            Verdict::Latched => {
                tracing::debug!(
                    local = %self.ports.rtp_addr(),
                    sdp = ?self.remote,
                    source = %from,
                    "RTP latched"
                );
                *lock(&self.shared.latched) = Some(from);
            }
        }
        let Some(kind) = self.params.kind_of(header.payload_type) else {
            bump(&counters.dropped_payload_type);
            return None;
        };
        if kind == PayloadKind::Event
            && let Ok(Some(digit)) = self.dtmf.on_packet(&header, packet.payload())
        {
            self.shared.send_digit(digit);
        }
        bump(&counters.rtp_received);
        self.shared.touch(now);
        self.reporter.on_received(&header, now);
        Some(Received {
            len: data.len(),
            header,
            kind,
        })
    }

    fn on_rtcp(&mut self, data: &[u8], from: SocketAddr) {
        self.apply_control();
        let counters = &self.shared.counters;
        let peer_ip = self.destination().map(|a| a.ip());
        let from_peer = match self.rtcp_peer {
            Some(peer) => peer == from,
            None => peer_ip == Some(from.ip()),
        };
        let packets = (from_peer && data.len() <= MAX_DATAGRAM)
            .then(|| rtp::rtcp::parse_compound(data).ok())
            .flatten();
        let Some(packets) = packets else {
            bump(&counters.rtcp_dropped);
            return;
        };
        self.rtcp_peer = Some(from);
        bump(&counters.rtcp_received);
        self.reporter.on_rtcp(&packets, Instant::now());
    }

    /// Where RTCP goes: the latched RTCP source, else the RTP destination's
    /// port plus one (RFC 3550 §11).
    fn rtcp_destination(&self) -> Option<SocketAddr> {
        self.rtcp_peer.or_else(|| {
            let rtp = self.destination()?;
            Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
        })
    }

    fn send_rtcp(&self, compound: &[u8]) {
        let Some(to) = self.rtcp_destination() else {
            return;
        };
        if socket2::SockRef::from(&self.ports.sockets().rtcp)
            .send_to(compound, &to.into())
            .is_ok()
        {
            bump(&self.shared.counters.rtcp_sent);
        }
    }

    fn send_report(&mut self) {
        let now = Instant::now();
        if let Some(report) = self.reporter.report(now) {
            self.send_rtcp(&report);
        }
        if let (Some(interval), Some(timer)) = (self.rtcp_interval, &mut self.rtcp_timer) {
            timer.as_mut().reset((now + randomized(interval)).into());
        }
    }

    /// Sends an RTP datagram to [`Leg::destination`] without waiting: when
    /// there is no destination or the socket's buffer is full, the packet
    /// is dropped and counted. While not sending (hold), it is dropped
    /// quietly. Returns whether it went out.
    pub fn send_rtp(&mut self, packet: &[u8]) -> bool {
        self.apply_control();
        if !self.sending {
            return false;
        }
        let counters = &self.shared.counters;
        // tokio's `try_send_to` fails until the reactor has seen the socket
        // writable once; a direct non-blocking sendto does not wait for that.
        let socket = socket2::SockRef::from(&self.ports.sockets().rtp);
        let sent = self
            .destination()
            .is_some_and(|to| socket.send_to(packet, &to.into()).is_ok());
        bump(if sent {
            &counters.rtp_sent
        } else {
            &counters.send_dropped
        });
        if sent {
            let now = Instant::now();
            self.reporter.on_sent(packet, now);
            if let Some(h) = packet.get(..12) {
                self.last_out = Some(Outbound {
                    sequence: u16::from_be_bytes([h[2], h[3]]),
                    timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                    at: now,
                });
            }
        }
        sent
    }

    /// Where a new sender on this leg continues the stream the leg last
    /// sent, so the phone sees one stream whoever feeds it (a prompt, then
    /// the bridge; RFC 3550 §5.1): its SSRC, the next sequence number, and
    /// the timestamp moved on by the time since, at `clock_rate`. `None`
    /// before the leg has sent anything.
    pub fn continuation(&self, clock_rate: u32, now: Instant) -> Option<(u32, u16, u32)> {
        let last = self.last_out?;
        let elapsed = now.saturating_duration_since(last.at);
        let ticks = (elapsed.as_micros() * u128::from(clock_rate) / 1_000_000) as u32;
        // At least one 20 ms frame on, so no timestamp repeats.
        let step = ticks.max(clock_rate / 50);
        Some((
            last.ssrc,
            last.sequence.wrapping_add(1),
            last.timestamp.wrapping_add(step),
        ))
    }
}

impl Drop for Leg {
    /// Ends its digit subscriptions; says goodbye (RTCP BYE, RFC 3550
    /// §6.6) when the leg had a stream.
    fn drop(&mut self) {
        let waiting = match &mut *self.shared.digit_tap() {
            DigitTap::Open(open) => open.close(),
            other => {
                *other = DigitTap::Gone;
                Vec::new()
            }
        };
        wake(waiting);
        if self.rtcp_interval.is_some()
            && let Some(bye) = self.reporter.bye()
        {
            self.send_rtcp(&bye);
        }
    }
}

/// A cheap, cloneable view of a [`Leg`] for the call that owns it while a
/// bridge or echo drives the leg: counters, the media timeout, and SDP
/// changes (applied by the leg before its next packet).
#[derive(Debug, Clone)]
pub struct LegHandle {
    shared: Arc<Shared>,
}

impl LegHandle {
    /// The leg's counters now.
    pub fn stats(&self) -> LegStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LegStats {
            rtp_received: get(&c.rtp_received),
            rtp_sent: get(&c.rtp_sent),
            send_dropped: get(&c.send_dropped),
            dropped_malformed: get(&c.dropped_malformed),
            dropped_oversize: get(&c.dropped_oversize),
            dropped_foreign: get(&c.dropped_foreign),
            dropped_payload_type: get(&c.dropped_payload_type),
            rtcp_received: get(&c.rtcp_received),
            rtcp_dropped: get(&c.rtcp_dropped),
            rtcp_sent: get(&c.rtcp_sent),
        }
    }

    /// The source the leg latched onto, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        *lock(&self.shared.latched)
    }

    /// The SDP changed (re-INVITE): send to `remote` and latch again.
    /// Also restarts the media timeout's count.
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        lock(&self.shared.control).remote = Some(remote);
        self.shared.touch(Instant::now());
        self.request();
    }

    /// Forgets the latched source; the next valid RTP latches again.
    pub fn relatch(&self) {
        lock(&self.shared.control).relatch = true;
        self.request();
    }

    /// The IP the leg's SIP signalling comes from changed (another fork
    /// answered); applied before the leg's next packet.
    pub fn set_signalling(&self, ip: Option<IpAddr>) {
        lock(&self.shared.control).signalling = Some(ip);
        self.request();
    }

    /// Stops or resumes sending to the peer (hold and resume: its SDP
    /// direction changed, RFC 3264 §6.1); what it sends is still received.
    /// A held peer sends nothing either: drop the [`MediaTimeout`] while it
    /// is held.
    pub fn set_sending(&self, sending: bool) {
        lock(&self.shared.control).sending = Some(sending);
        self.request();
    }

    fn request(&self) {
        self.shared.pending.store(true, Ordering::Release);
    }

    /// The RFC 4733 digits the leg receives from now on (for
    /// `read_digits`), while a bridge, an echo or any owner drives it.
    pub fn digits(&self) -> Digits {
        let mut tap = self.shared.digit_tap();
        if matches!(*tap, DigitTap::Idle) {
            *tap = DigitTap::Open(Box::default());
        }
        match &mut *tap {
            DigitTap::Open(open) if !open.closed => {
                open.subscribers += 1;
                let id = open.next_id;
                open.next_id = open.next_id.wrapping_add(1);
                Digits {
                    shared: Some(Arc::clone(&self.shared)),
                    next: open.next,
                    id,
                }
            }
            _ => Digits {
                shared: None,
                next: 0,
                id: 0,
            },
        }
    }

    /// Offers `digit` to the leg's [`Digits`] subscribers as if it had come
    /// in RTP: for digits the signalling carries (SIP INFO). Dropped when
    /// nobody listens or the leg is gone.
    pub fn push_digit(&self, digit: Digit) {
        self.shared.send_digit(digit);
    }

    /// A timeout that fires once the leg has accepted no RTP for `after`
    /// (DESIGN.md `rtp_timeout`), counted from the latest packet, the
    /// latest SDP change, or the leg's creation.
    pub fn media_timeout(&self, after: Duration) -> MediaTimeout {
        MediaTimeout {
            shared: Arc::clone(&self.shared),
            after,
        }
    }
}

/// A subscription to a leg's RFC 4733 digits, each reported once.
#[derive(Debug)]
pub struct Digits {
    /// The leg's state; `None` when subscribed after the leg was gone.
    shared: Option<Arc<Shared>>,
    /// The number of the next digit this subscriber reads.
    next: u64,
    /// Which of the tap's waiters is this subscriber's.
    id: u32,
}

impl Digits {
    /// The next digit; `None` once the leg is gone. Cancel-safe. A
    /// subscriber that fell more than 16 digits behind skips the oldest.
    pub async fn next(&mut self) -> Option<Digit> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Digit>> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut tap = shared.digit_tap();
        let DigitTap::Open(open) = &mut *tap else {
            // A subscriber keeps its leg's tap open.
            return Poll::Ready(None);
        };
        let oldest = open.next.saturating_sub(DIGIT_BACKLOG as u64);
        self.next = self.next.max(oldest);
        if self.next < open.next {
            let digit = open.ring[slot(self.next)];
            self.next += 1;
            return Poll::Ready(digit);
        }
        if open.closed {
            return Poll::Ready(None);
        }
        match open.waiting.iter_mut().find(|(id, _)| *id == self.id) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => open.waiting.push((self.id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Digits {
    /// One subscriber fewer; the last one frees the tap.
    fn drop(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut tap = shared.digit_tap();
        let DigitTap::Open(open) = &mut *tap else {
            return;
        };
        open.waiting.retain(|(id, _)| *id != self.id);
        open.subscribers = open.subscribers.saturating_sub(1);
        if open.subscribers == 0 {
            *tap = if open.closed {
                DigitTap::Gone
            } else {
                DigitTap::Idle
            };
        }
    }
}

/// Fires when a leg has been silent for its configured time. The call
/// awaits [`MediaTimeout::expired`] next to its other events and hangs up
/// when it returns. While on hold (a `sendonly`/`inactive` peer sends
/// nothing), drop it and make a new one when the call resumes.
#[derive(Debug, Clone)]
pub struct MediaTimeout {
    shared: Arc<Shared>,
    after: Duration,
}

impl MediaTimeout {
    /// When the leg will have been silent for the configured time, if no
    /// RTP comes before (for an owner that keeps one timer for all its
    /// deadlines; check [`MediaTimeout::silent_at`] when it fires).
    pub fn deadline(&self) -> Instant {
        self.shared.last_rtp() + self.after
    }

    /// How long the leg has been silent at `now`, if that is the
    /// configured time or more.
    pub fn silent_at(&self, now: Instant) -> Option<Duration> {
        let last = self.shared.last_rtp();
        (now >= last + self.after).then(|| now.saturating_duration_since(last))
    }

    /// Counts the leg's silence from `now` on, as if RTP had just come:
    /// for a party that has just answered, whose leg was made while it
    /// rang (what it did not send then is no sign of a dead call).
    pub fn restart(&self, now: Instant) {
        self.shared.touch(now);
    }

    /// Waits until no RTP has arrived for the configured time; returns how
    /// long the leg has been silent. Cancel-safe.
    pub async fn expired(&self) -> Duration {
        loop {
            let deadline = self.shared.last_rtp() + self.after;
            let now = Instant::now();
            if now >= deadline {
                return now.saturating_duration_since(self.shared.last_rtp());
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}
