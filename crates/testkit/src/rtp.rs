//! Real RTP for media tests, blocking and std-only like [`Phone`](crate::Phone):
//! an [`RtpPeer`] is one UDP socket on a test address that writes SDP naming
//! itself (or, for NAT tests, naming somewhere else), sends paced G.711 /
//! G.722 tones, RFC 4733 digits and arbitrary datagrams from that socket,
//! and records everything that arrives on it from a background thread.
//!
//! The analysis helpers turn what arrived back into something a test can
//! assert on: [`RtpPeer::audio`] decodes the received audio and
//! [`dominant_frequency`] / [`tone_power`] say which tone it carries.
//! [`RemoteMedia::parse`] reads the PBX's SDP (via the workspace `sdp`
//! crate) for where to send and with which payload types.
//!
//! Every wait is bounded: sends are paced by the clock and stop after the
//! duration asked for, and [`RtpPeer::wait_for`] takes a timeout.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtp::{Codec, Decoder, Digit, DtmfSender, Encoder, PacketBuilder, RtpHeader, RtpPacket};

/// Samples per second of the narrowband codecs' clock (and of PCMU/PCMA audio).
pub const CLOCK_RATE: u32 = 8000;
/// Audio per packet.
pub const PTIME: Duration = Duration::from_millis(20);
/// RTP timestamp units per packet (20 ms at 8 kHz).
pub const SAMPLES_PER_PACKET: u32 = 160;
/// The dynamic payload type this kit uses for RFC 4733 telephone-event.
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// Peak amplitude of the tones sent (about −12 dBFS).
const TONE_AMPLITUDE: f64 = 8000.0;

/// Payload type of a codec name this kit writes into SDP: `PCMU` 0, `PCMA`
/// 8, `G722` 9, `telephone-event` 101 (case-insensitive).
pub fn payload_type_of(name: &str) -> Option<u8> {
    if name.eq_ignore_ascii_case("telephone-event") {
        return Some(TELEPHONE_EVENT_PT);
    }
    Codec::from_name(name).map(Codec::payload_type)
}

/// SDP (RFC 8866) for one audio stream at `addr` with `codecs` (names as in
/// [`payload_type_of`]; unknown names are a panic, this is test code), 20 ms
/// packets, sendrecv. Offer and answer have the same shape here.
pub fn sdp_for(addr: SocketAddr, codecs: &[&str]) -> String {
    let ip = addr.ip();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let pts: Vec<u8> = codecs
        .iter()
        .map(|c| payload_type_of(c).unwrap_or_else(|| panic!("testkit SDP: unknown codec {c}")))
        .collect();
    let list: Vec<String> = pts.iter().map(u8::to_string).collect();
    let mut out = format!(
        "v=0\r\no=testkit {id} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {list}\r\n",
        id = rand::random::<u32>(),
        port = addr.port(),
        list = list.join(" "),
    );
    for pt in pts {
        let map = match pt {
            0 => "PCMU/8000",
            8 => "PCMA/8000",
            9 => "G722/8000",
            _ => "telephone-event/8000",
        };
        out.push_str(&format!("a=rtpmap:{pt} {map}\r\n"));
        if pt == TELEPHONE_EVENT_PT {
            out.push_str(&format!("a=fmtp:{pt} 0-16\r\n"));
        }
    }
    out.push_str("a=ptime:20\r\na=sendrecv\r\n");
    out
}

/// Where the other side wants RTP and what it agreed to, read from an SDP
/// body (the first RTP `m=` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// The effective `c=` address and the `m=` port.
    pub addr: SocketAddr,
    /// Every payload type of the `m=` line, in order.
    pub payload_types: Vec<u8>,
    /// The first voice payload type (not telephone-event, not CN): the
    /// codec chosen, in an answer.
    pub voice: Option<u8>,
    /// The telephone-event payload type, if offered.
    pub telephone_event: Option<u8>,
}

impl RemoteMedia {
    /// Reads `body` (an SDP offer or answer).
    ///
    /// # Errors
    /// A description of the fault: unparseable SDP, no RTP `m=` section, or
    /// no usable address on it.
    pub fn parse(body: &[u8]) -> Result<RemoteMedia, String> {
        let sdp = sdp::parse(body).map_err(|e| format!("unparseable SDP: {e}"))?;
        let index = sdp
            .media
            .iter()
            .position(|m| m.is_rtp() && !m.is_disabled())
            .ok_or("no enabled RTP m= section")?;
        let addr = sdp
            .rtp_address(index)
            .ok_or("the m= section has no IP address")?;
        let m = &sdp.media[index];
        let payload_types: Vec<u8> = m.payload_types().collect();
        let voice = payload_types
            .iter()
            .copied()
            .find(|pt| m.rtpmap(*pt).is_some_and(|map| map.is_voice()));
        Ok(RemoteMedia {
            addr,
            payload_types,
            voice,
            telephone_event: m.telephone_event().map(|t| t.payload_type),
        })
    }
}

/// One datagram that arrived on an [`RtpPeer`].
#[derive(Debug, Clone)]
pub struct Received {
    /// When the collector read it.
    pub at: Instant,
    /// Who sent it.
    pub from: SocketAddr,
    /// The whole datagram.
    pub bytes: Vec<u8>,
    /// Its RTP header, if it parses as RTP and is not RTCP (a packet type
    /// of 192–223 where RTP's marker and payload type would be).
    pub header: Option<RtpHeader>,
    /// Its RTP payload (empty when not RTP).
    pub payload: Vec<u8>,
}

impl Received {
    /// The payload type, if RTP.
    pub fn payload_type(&self) -> Option<u8> {
        self.header.map(|h| h.payload_type)
    }
}

/// Sequence number, timestamp and SSRC of what this peer sends.
#[derive(Debug)]
struct Outgoing {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// Whether the next media packet starts a talkspurt (marker bit).
    marker: bool,
}

/// A UDP socket speaking RTP for a test, with a collector thread recording
/// every datagram that arrives until [`stop`](Self::stop) or drop.
///
/// Sends take `&self`, so one peer can send from one thread while another
/// reads what it collected (use `std::thread::scope`).
pub struct RtpPeer {
    socket: UdpSocket,
    local: SocketAddr,
    out: Mutex<Outgoing>,
    inbox: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    collector: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RtpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpPeer")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RtpPeer {
    /// Binds `ip` port 0 and starts collecting.
    ///
    /// # Errors
    /// The socket errors of binding and cloning it.
    pub fn bind(ip: IpAddr) -> std::io::Result<RtpPeer> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let local = socket.local_addr()?;
        let reader = socket.try_clone()?;
        reader.set_read_timeout(Some(Duration::from_millis(10)))?;
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let inbox = inbox.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("rtp-collector-{}", local.port()))
                .spawn(move || collect(&reader, &inbox, &stop))?
        };
        Ok(RtpPeer {
            socket,
            local,
            out: Mutex::new(Outgoing {
                ssrc: rand::random(),
                sequence: rand::random(),
                timestamp: rand::random(),
                marker: true,
            }),
            inbox,
            stop,
            collector: Some(collector),
        })
    }

    /// A peer on 127.0.0.1 (panics if it cannot bind: test code).
    pub fn localhost() -> RtpPeer {
        RtpPeer::bind(IpAddr::from([127, 0, 0, 1])).expect("RTP socket on 127.0.0.1")
    }

    /// Our socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The SSRC of what this peer sends.
    pub fn ssrc(&self) -> u32 {
        lock(&self.out).ssrc
    }

    /// An SDP offer naming this peer's address and port with `codecs`
    /// (`"PCMU"`, `"PCMA"`, `"G722"`, `"telephone-event"`).
    pub fn sdp_offer(&self, codecs: &[&str]) -> String {
        sdp_for(self.local, codecs)
    }

    /// An SDP answer naming this peer (the same shape as an offer; list only
    /// the codecs the answer picks).
    pub fn sdp_answer(&self, codecs: &[&str]) -> String {
        sdp_for(self.local, codecs)
    }

    /// SDP naming `advertised` instead of this peer, as a phone behind NAT
    /// writes its private address, while it really sends from
    /// [`local_addr`](Self::local_addr).
    pub fn sdp_advertising(&self, advertised: SocketAddr, codecs: &[&str]) -> String {
        sdp_for(advertised, codecs)
    }

    /// Sends `bytes` as one datagram to `dest`, as they are.
    ///
    /// # Errors
    /// The socket's.
    pub fn send_raw(&self, dest: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(bytes, dest).map(|_| ())
    }

    /// Sends one RTP packet with our SSRC, the next sequence number and the
    /// current timestamp, then advances the timestamp by `advance`.
    ///
    /// # Errors
    /// The socket's.
    pub fn send_packet(
        &self,
        dest: SocketAddr,
        payload_type: u8,
        payload: &[u8],
        advance: u32,
    ) -> std::io::Result<()> {
        let bytes = {
            let mut out = lock(&self.out);
            let header = RtpHeader {
                marker: std::mem::take(&mut out.marker),
                payload_type,
                sequence: out.sequence,
                timestamp: out.timestamp,
                ssrc: out.ssrc,
            };
            out.sequence = out.sequence.wrapping_add(1);
            out.timestamp = out.timestamp.wrapping_add(advance);
            build(header, payload)?
        };
        self.send_raw(dest, &bytes)
    }

    /// Sends a `freq_hz` sine for `duration` to `dest` as `payload_type`
    /// (0 PCMU, 8 PCMA, 9 G722), one 20 ms packet at a time paced by the
    /// clock (160 timestamp units each). Blocks for about `duration`.
    ///
    /// # Errors
    /// `InvalidInput` for a payload type without a codec here; the socket's.
    pub fn send_tone(
        &self,
        dest: SocketAddr,
        payload_type: u8,
        freq_hz: f64,
        duration: Duration,
    ) -> std::io::Result<()> {
        let codec = Codec::from_payload_type(payload_type).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("no codec for payload type {payload_type}"),
            )
        })?;
        let mut encoder = Encoder::new(codec);
        let rate = codec.sample_rate();
        let per_packet = codec.samples_per_packet(20);
        let packets = duration.as_millis().div_ceil(20);
        let start = Instant::now();
        let mut n = 0usize;
        for k in 0..packets {
            let pcm: Vec<i16> = (0..per_packet)
                .map(|i| {
                    let t = (n + i) as f64 / f64::from(rate);
                    (TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * freq_hz * t).sin()) as i16
                })
                .collect();
            n += per_packet;
            let mut payload = Vec::with_capacity(per_packet);
            encoder
                .encode(&pcm, &mut payload)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            pace(start, PTIME * u32::try_from(k).unwrap_or(u32::MAX));
            self.send_packet(dest, payload_type, &payload, codec.timestamp_step(20))?;
        }
        Ok(())
    }

    /// Sends RFC 4733 `digit` (`0`–`9`, `*`, `#`, `A`–`D`) as
    /// telephone-event `payload_type` lasting `duration`: a start packet
    /// with the marker bit, updates every 50 ms with a growing duration, and
    /// three end packets, all with the same timestamp, paced by the clock.
    /// Blocks for about `duration` + 60 ms.
    ///
    /// # Errors
    /// `InvalidInput` for a character that is no DTMF digit; the socket's.
    pub fn send_dtmf(
        &self,
        dest: SocketAddr,
        payload_type: u8,
        digit: char,
        duration: Duration,
    ) -> std::io::Result<()> {
        let invalid = |e: rtp::EventError| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
        };
        let digit = Digit::from_char(digit).map_err(invalid)?;
        let samples = u32::try_from(duration.as_millis() * u128::from(CLOCK_RATE) / 1000)
            .unwrap_or(u32::MAX)
            .max(1);
        let timestamp = lock(&self.out).timestamp;
        let packets = DtmfSender::new(CLOCK_RATE)
            .packets(digit, timestamp, samples)
            .map_err(invalid)?;
        let start = Instant::now();
        for p in &packets {
            pace(
                start,
                Duration::from_micros(u64::from(p.send_at) * 1_000_000 / u64::from(CLOCK_RATE)),
            );
            let bytes = {
                let mut out = lock(&self.out);
                let header = RtpHeader {
                    marker: p.marker,
                    payload_type,
                    sequence: out.sequence,
                    timestamp: p.timestamp,
                    ssrc: out.ssrc,
                };
                out.sequence = out.sequence.wrapping_add(1);
                build(header, &p.payload())?
            };
            self.send_raw(dest, &bytes)?;
        }
        // The next media starts after the event, as a phone's would.
        let mut out = lock(&self.out);
        out.timestamp = timestamp.wrapping_add(samples);
        out.marker = true;
        Ok(())
    }

    /// Sends each of `digits` as [`send_dtmf`](Self::send_dtmf) with
    /// `duration`, `gap` apart.
    ///
    /// # Errors
    /// As `send_dtmf`.
    pub fn send_digits(
        &self,
        dest: SocketAddr,
        payload_type: u8,
        digits: &str,
        duration: Duration,
        gap: Duration,
    ) -> std::io::Result<()> {
        for d in digits.chars() {
            self.send_dtmf(dest, payload_type, d, duration)?;
            std::thread::sleep(gap);
            let mut out = lock(&self.out);
            out.timestamp = out.timestamp.wrapping_add(gap_samples(gap));
        }
        Ok(())
    }

    /// A snapshot of every datagram received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inbox).clone()
    }

    /// How many datagrams have arrived so far.
    pub fn count(&self) -> usize {
        lock(&self.inbox).len()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        lock(&self.inbox).clear();
    }

    /// Waits until at least `count` datagrams have arrived or `timeout`
    /// passes; whether they did.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until nothing has arrived for `quiet` (or `timeout` passes),
    /// so a stream still in flight is all in before it is analysed.
    pub fn settle(&self, quiet: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = self.count();
        let mut since = Instant::now();
        while Instant::now() < deadline && since.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(5));
            let now = self.count();
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }

    /// The received RTP packets of `payload_type`.
    pub fn packets_of(&self, payload_type: u8) -> Vec<Received> {
        lock(&self.inbox)
            .iter()
            .filter(|r| r.payload_type() == Some(payload_type))
            .cloned()
            .collect()
    }

    /// Decodes every received PCMU and PCMA packet, in sequence-number
    /// order per source, to 8 kHz samples (see [`decode_run`]).
    pub fn audio(&self) -> Vec<i16> {
        decode_run(&self.received())
    }

    /// Stops the collector (what arrived is kept).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.collector.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn gap_samples(gap: Duration) -> u32 {
    u32::try_from(gap.as_millis() * u128::from(CLOCK_RATE) / 1000).unwrap_or(u32::MAX)
}

/// Sprays RTP at every even port of `ports` on `ip` from `from`, as a host
/// hunting for unlatched call legs does: one well-formed PCMU stream per
/// port (the port as its SSRC, sequence numbers going up by one, 160-byte
/// payloads), a packet to each port every 20 ms, until `stop` is set.
pub fn spray_rtp(
    from: &RtpPeer,
    ip: IpAddr,
    ports: std::ops::RangeInclusive<u16>,
    stop: &AtomicBool,
) {
    let mut k: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        for port in ports.clone().step_by(2) {
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: k,
                timestamp: u32::from(k) * 160,
                ssrc: u32::from(port),
            };
            if let Ok(packet) = build(header, &[0xFF; 160]) {
                let _ = from.send_raw(SocketAddr::new(ip, port), &packet);
            }
        }
        k = k.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn build(header: RtpHeader, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    PacketBuilder::new(header)
        .payload(payload)
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Sleeps until `start + offset`.
fn pace(start: Instant, offset: Duration) {
    let due = start + offset;
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

fn collect(socket: &UdpSocket, inbox: &Mutex<Vec<Received>>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            // Timeouts (to look at `stop`) and ICMP errors alike.
            continue;
        };
        let bytes = buf.get(..n).unwrap_or_default().to_vec();
        let (header, payload) = match RtpPacket::parse(&bytes) {
            Ok(p) if !rtp::packet::looks_like_rtcp(&bytes) => {
                (Some(p.header()), p.payload().to_vec())
            }
            _ => (None, Vec::new()),
        };
        lock(inbox).push(Received {
            at: Instant::now(),
            from,
            bytes,
            header,
            payload,
        });
    }
}

/// The `payload_type` (0 PCMU, 8 PCMA) payload of `samples` samples of a
/// `freq_hz` sine at 8 kHz starting at sample `start`, so consecutive
/// frames join up; `None` for other payload types. For floods and
/// hand-built packets ([`RtpPeer::send_packet`]).
pub fn tone_payload(
    payload_type: u8,
    freq_hz: f64,
    start: usize,
    samples: usize,
) -> Option<Vec<u8>> {
    let codec = Codec::from_payload_type(payload_type).filter(|c| *c != Codec::G722)?;
    let pcm: Vec<i16> = (start..start + samples)
        .map(|n| {
            let t = n as f64 / f64::from(CLOCK_RATE);
            (TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * freq_hz * t).sin()) as i16
        })
        .collect();
    let mut out = Vec::with_capacity(samples);
    Encoder::new(codec).encode(&pcm, &mut out).ok()?;
    Some(out)
}

/// Decodes one payload of `payload_type` (0 PCMU, 8 PCMA at 8 kHz; 9 G722
/// at 16 kHz, fresh decoder state); `None` for other payload types.
pub fn decode_payload(payload_type: u8, payload: &[u8]) -> Option<Vec<i16>> {
    let codec = Codec::from_payload_type(payload_type)?;
    let mut out = Vec::new();
    Decoder::new(codec).decode(payload, &mut out).ok()?;
    Some(out)
}

/// The 8 kHz audio of a run of received packets: the PCMU and PCMA ones
/// (others are skipped), grouped by SSRC in order of first arrival, each
/// group in sequence-number order (wrapping), decoded and concatenated.
pub fn decode_run(packets: &[Received]) -> Vec<i16> {
    let mut order: Vec<u32> = Vec::new();
    let mut groups: Vec<Vec<(RtpHeader, &[u8])>> = Vec::new();
    for p in packets {
        let Some(h) = p.header else { continue };
        if h.payload_type != 0 && h.payload_type != 8 {
            continue;
        }
        let i = order.iter().position(|s| *s == h.ssrc).unwrap_or_else(|| {
            order.push(h.ssrc);
            groups.push(Vec::new());
            order.len() - 1
        });
        groups[i].push((h, &p.payload));
    }
    let mut out = Vec::new();
    for mut group in groups {
        let Some(first) = group.first().map(|(h, _)| h.sequence) else {
            continue;
        };
        group.sort_by_key(|(h, _)| h.sequence.wrapping_sub(first));
        for (h, payload) in group {
            if let Some(samples) = decode_payload(h.payload_type, payload) {
                out.extend(samples);
            }
        }
    }
    out
}

/// The power of `freq_hz` in `samples` at `rate` Hz (Goertzel), normalised
/// by the number of samples squared so runs of different lengths compare.
pub fn tone_power(samples: &[i16], rate: u32, freq_hz: f64) -> f64 {
    if samples.is_empty() || rate == 0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq_hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    power / (n * n)
}

/// The mean [`tone_power`] of `freq_hz` over consecutive `block`-sample
/// blocks of `samples` (a trailing partial block is left out unless it is
/// the only one): power averaged this way does not care about the phase
/// jumps a relayed stream has at lost or re-timed packets, and its
/// frequency resolution is about `rate / block` Hz.
pub fn block_power(samples: &[i16], rate: u32, freq_hz: f64, block: usize) -> f64 {
    let block = block.max(1);
    if samples.len() < block {
        return tone_power(samples, rate, freq_hz);
    }
    let chunks = samples.chunks_exact(block);
    let n = chunks.len() as f64;
    chunks.map(|c| tone_power(c, rate, freq_hz)).sum::<f64>() / n
}

/// The frequency (Hz, to within a few Hz) carrying the most power in
/// `samples` at `rate` Hz, searched from 50 Hz to just under Nyquist: a
/// 25 Hz scan over 40 ms blocks, then a 1 Hz scan around the best over
/// 200 ms blocks (see [`block_power`]). `None` for silence or too few
/// samples (under 40 ms).
pub fn dominant_frequency(samples: &[i16], rate: u32) -> Option<f64> {
    let coarse_block = (rate / 25) as usize;
    if rate == 0 || samples.len() < coarse_block || samples.iter().all(|s| *s == 0) {
        return None;
    }
    // Every candidate costs a pass over the run; two seconds of audio is
    // plenty for a test and keeps the scan quick.
    let samples = &samples[..samples.len().min(rate as usize * 2)];
    let nyquist = f64::from(rate) / 2.0;
    let best_of = |candidates: &mut dyn Iterator<Item = f64>, block: usize| {
        candidates
            .map(|f| (f, block_power(samples, rate, f, block)))
            .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
    };
    let coarse = best_of(
        &mut (2..)
            .map(|k| f64::from(k) * 25.0)
            .take_while(|f| *f < nyquist - 25.0),
        coarse_block,
    );
    let fine = best_of(
        &mut (-30..=30)
            .map(|d| coarse.0 + f64::from(d))
            .filter(|f| *f > 0.0 && *f < nyquist),
        (rate / 5) as usize,
    );
    Some(fine.0)
}

/// Whether `samples` at `rate` Hz carry mostly `freq_hz`: the dominant
/// frequency is within `tolerance_hz` of it.
pub fn is_tone(samples: &[i16], rate: u32, freq_hz: f64, tolerance_hz: f64) -> bool {
    dominant_frequency(samples, rate).is_some_and(|f| (f - freq_hz).abs() <= tolerance_hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (RtpPeer, RtpPeer) {
        (RtpPeer::localhost(), RtpPeer::localhost())
    }

    #[test]
    fn a_pcmu_tone_arrives_as_that_tone() {
        let (a, b) = pair();
        a.send_tone(b.local_addr(), 0, 1000.0, Duration::from_millis(400))
            .unwrap();
        assert!(b.wait_for(20, Duration::from_secs(2)), "{}", b.count());
        b.settle(Duration::from_millis(50), Duration::from_secs(1));
        let got = b.received();
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|p| p.from == a.local_addr()));
        assert!(got.iter().all(|p| p.payload_type() == Some(0)));
        assert!(got.iter().all(|p| p.payload.len() == 160));
        let h: Vec<RtpHeader> = got.iter().filter_map(|p| p.header).collect();
        assert!(h[0].marker && !h[1].marker);
        for w in h.windows(2) {
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
            assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
            assert_eq!(w[1].ssrc, a.ssrc());
        }
        // Paced: 20 packets of 20 ms take about 380 ms to arrive.
        let span = got[19].at - got[0].at;
        assert!(span >= Duration::from_millis(300), "{span:?}");
        let f = dominant_frequency(&b.audio(), 8000).unwrap();
        assert!((f - 1000.0).abs() <= 10.0, "{f}");
    }

    #[test]
    fn pcma_and_g722_tones_decode_to_their_frequency() {
        let (a, b) = pair();
        a.send_tone(b.local_addr(), 8, 2000.0, Duration::from_millis(200))
            .unwrap();
        assert!(b.wait_for(10, Duration::from_secs(2)));
        assert!(is_tone(&b.audio(), 8000, 2000.0, 10.0));
        b.clear();
        a.send_tone(b.local_addr(), 9, 1500.0, Duration::from_millis(200))
            .unwrap();
        assert!(b.wait_for(10, Duration::from_secs(2)));
        // audio() is PCMU/PCMA only; G.722 decodes at 16 kHz.
        assert!(b.audio().is_empty());
        let mut pcm = Vec::new();
        for p in b.packets_of(9) {
            assert_eq!(p.payload.len(), 160);
            pcm.extend(decode_payload(9, &p.payload).unwrap());
        }
        assert!(is_tone(&pcm[pcm.len() / 2..], 16_000, 1500.0, 20.0));
    }

    #[test]
    fn dominant_frequency_tells_tones_apart() {
        let tone = |f: f64| -> Vec<i16> {
            (0..8000)
                .map(|i| {
                    (8000.0 * (2.0 * std::f64::consts::PI * f * f64::from(i) / 8000.0).sin()) as i16
                })
                .collect()
        };
        for f in [300.0, 440.0, 1000.0, 2000.0, 3400.0] {
            let got = dominant_frequency(&tone(f), 8000).unwrap();
            assert!((got - f).abs() <= 2.0, "{f} -> {got}");
        }
        assert_eq!(dominant_frequency(&[0; 8000], 8000), None);
        assert_eq!(dominant_frequency(&tone(1000.0)[..300], 8000), None);
        let frames: Vec<i16> = (0..50)
            .flat_map(|k| {
                decode_payload(8, &tone_payload(8, 700.0, k * 160, 160).unwrap()).unwrap()
            })
            .collect();
        assert!(is_tone(&frames, 8000, 700.0, 3.0));
        assert_eq!(tone_payload(9, 700.0, 0, 160), None);
        let t = tone(1000.0);
        assert!(tone_power(&t, 8000, 1000.0) > 100.0 * tone_power(&t, 8000, 3000.0));
    }

    #[test]
    fn dtmf_parses_back_with_the_rtp_crate() {
        let (a, b) = pair();
        a.send_digits(
            b.local_addr(),
            TELEPHONE_EVENT_PT,
            "12#",
            Duration::from_millis(100),
            Duration::from_millis(20),
        )
        .unwrap();
        b.settle(Duration::from_millis(50), Duration::from_secs(2));
        let got = b.packets_of(TELEPHONE_EVENT_PT);
        let mut rx = rtp::DtmfReceiver::new();
        let digits: String = got
            .iter()
            .filter_map(|p| rx.on_packet(&p.header.unwrap(), &p.payload).unwrap())
            .map(Digit::as_char)
            .collect();
        assert_eq!(digits, "12#");
        // Per digit: start + one update (100 ms, 50 ms apart) + 3 ends.
        assert_eq!(got.len(), 3 * 5);
        let first: Vec<_> = got[..5].iter().map(|p| p.header.unwrap()).collect();
        assert!(first[0].marker && first[1..].iter().all(|h| !h.marker));
        assert!(first.iter().all(|h| h.timestamp == first[0].timestamp));
        let events: Vec<_> = got[..5]
            .iter()
            .map(|p| rtp::TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        assert!(events.windows(2).all(|w| w[1].duration >= w[0].duration));
        assert!(!events[1].end && events[2..].iter().all(|e| e.end && e.duration == 800));
        // The next digit starts later.
        let second = got[5].header.unwrap();
        assert!(second.timestamp.wrapping_sub(first[0].timestamp) >= 800);
        assert!(
            a.send_dtmf(b.local_addr(), 101, 'x', Duration::from_millis(50))
                .is_err()
        );
    }

    #[test]
    fn sdp_names_the_peer_or_what_it_is_told() {
        let a = RtpPeer::localhost();
        let offer = a.sdp_offer(&["PCMU", "PCMA", "telephone-event"]);
        let m = RemoteMedia::parse(offer.as_bytes()).unwrap();
        assert_eq!(m.addr, a.local_addr());
        assert_eq!(m.payload_types, vec![0, 8, 101]);
        assert_eq!((m.voice, m.telephone_event), (Some(0), Some(101)));
        let answer = a.sdp_answer(&["PCMA"]);
        let m = RemoteMedia::parse(answer.as_bytes()).unwrap();
        assert_eq!((m.voice, m.telephone_event), (Some(8), None));

        let nat: SocketAddr = "10.99.99.99:4000".parse().unwrap();
        let sdp = a.sdp_advertising(nat, &["PCMU"]);
        assert!(sdp.contains("c=IN IP4 10.99.99.99\r\n"), "{sdp}");
        assert!(sdp.contains("m=audio 4000 RTP/AVP 0\r\n"), "{sdp}");
        assert!(!sdp.contains(&a.local_addr().port().to_string()), "{sdp}");
        assert_eq!(RemoteMedia::parse(sdp.as_bytes()).unwrap().addr, nat);
        assert!(RemoteMedia::parse(b"v=0\r\n").is_err());
    }

    #[test]
    fn hostile_datagrams_are_recorded_as_they_are() {
        let (a, b) = pair();
        a.send_raw(b.local_addr(), b"garbage").unwrap();
        a.send_raw(b.local_addr(), &[0x80; 2000]).unwrap();
        a.send_packet(b.local_addr(), 0, &[0xFF; 160], 160).unwrap();
        // An RTCP sender report (no blocks) is not taken for RTP.
        let mut sr = vec![0x80, 200, 0, 6];
        sr.resize(28, 0);
        a.send_raw(b.local_addr(), &sr).unwrap();
        assert!(b.wait_for(4, Duration::from_secs(2)));
        let got = b.received();
        assert_eq!(got[0].bytes, b"garbage");
        assert!(got[0].header.is_none() && got[0].payload.is_empty());
        assert_eq!(got[1].bytes.len(), 2000);
        assert_eq!(got[2].payload_type(), Some(0));
        assert_eq!(got[2].header.unwrap().ssrc, a.ssrc());
        assert!(got[3].header.is_none() && got[3].bytes.len() == 28);
    }

    #[test]
    fn stop_ends_collecting() {
        let (a, mut b) = pair();
        b.stop();
        a.send_packet(b.local_addr(), 0, &[0xFF; 160], 160).unwrap();
        assert!(!b.wait_for(1, Duration::from_millis(100)));
    }
}
