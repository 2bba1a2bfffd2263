//! The RTP load: two UDP sockets per call on 127.0.0.1 (the caller's and
//! the callee's), one event loop that sends a 20 ms PCMU packet (RFC 3551:
//! 160 bytes of payload, sequence +1 and timestamp +160 per packet) from
//! each of them every 20 ms and receives on all of them, and what it
//! measured: packets sent and received per direction, and per packet the
//! one-way delay, of which the delay above its stream's minimum is the
//! jitter the path added.
//!
//! Every payload starts with a marker, the run, the stream, the send time
//! and whether it is counted, so packets are recognised whatever the relay
//! does to the RTP header (it may rewrite SSRC, sequence and timestamp).
//! The calls' send times are spread evenly over the 20 ms.
//!
//! Times are the real-time clock in nanoseconds: the send time is read
//! just before `sendto`, the arrival time is the kernel's (SO_TIMESTAMPNS,
//! taken when the packet is queued on the socket; on loopback that is
//! inside the relay's own `sendto`), so a generator that reads its
//! sockets late does not inflate the relay's jitter.

use std::io::{self, ErrorKind, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;

use crate::cpu;

/// RTP packet interval.
const PTIME: Duration = Duration::from_millis(20);
/// PCMU samples per packet (8 kHz × 20 ms): the payload size and the
/// timestamp step.
const SAMPLES: usize = 160;
/// RTP fixed header.
const RTP_HEADER: usize = 12;
/// Start of every payload the generator sends.
const MAGIC: &[u8; 4] = b"SBMB";
/// Marker, run, stream id, send time, counted flag.
const TAG_LEN: usize = 4 + 1 + 4 + 8 + 1;

/// Where one call's two sockets send: the caller's packets go to
/// `caller_to`, the callee's to `callee_to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// The relay's caller-side address (or the callee's socket, direct).
    pub caller_to: SocketAddr,
    /// The relay's callee-side address (or the caller's socket, direct).
    pub callee_to: SocketAddr,
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Sending before the counted window (latching, warm caches); not counted.
    pub warmup: Duration,
    /// The counted window.
    pub measure: Duration,
    /// Receiving after the last send, for packets still in flight.
    pub drain: Duration,
}

/// One direction's counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Direction {
    /// Counted packets sent.
    pub sent: u64,
    /// Counted packets received on the right socket.
    pub received: u64,
}

impl Direction {
    /// Lost share in percent.
    pub(crate) fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Caller to callee, callee to caller.
    pub dirs: [Direction; 2],
    /// Counted packets that arrived on another call's or side's socket.
    pub misrouted: u64,
    /// Datagrams that were not the generator's packets (RTCP, stale runs).
    pub foreign: u64,
    /// Smallest one-way delay seen, microseconds.
    pub delay_min_us: f64,
    /// Added delay (one-way delay less its stream's minimum), percentiles,
    /// microseconds.
    pub added_p50_us: f64,
    /// 99th percentile of the added delay.
    pub added_p99_us: f64,
    /// Largest added delay.
    pub added_max_us: f64,
    /// Wall-clock seconds between the CPU samples at the counted window's
    /// start and end (longer than the window when the generator was late).
    pub seconds: f64,
    /// Length of the counted window as scheduled: the packets counted were
    /// due within it.
    pub counted_seconds: f64,
    /// The server's CPU seconds during the counted window.
    pub server_cpu: Option<f64>,
    /// The generator's own CPU seconds during the counted window.
    pub own_cpu: f64,
    /// Latest a packet was sent after its due time, milliseconds.
    pub max_send_lag_ms: f64,
    /// Share of packets sent more than [`LATE`] after their due time, percent.
    pub late_percent: f64,
}

/// A packet sent this late means the generator could not keep up.
pub(crate) const LATE: Duration = Duration::from_millis(10);

impl Outcome {
    /// Received counted packets per second of the counted window, both
    /// directions.
    pub(crate) fn pps(&self) -> f64 {
        let got = self.dirs[0].received + self.dirs[1].received;
        if self.counted_seconds > 0.0 {
            got as f64 / self.counted_seconds
        } else {
            0.0
        }
    }

    /// Received counted packets per CPU-second of the server.
    pub(crate) fn per_cpu_second(&self) -> Option<f64> {
        let got = self.dirs[0].received + self.dirs[1].received;
        self.server_cpu.filter(|&c| c > 0.0).map(|c| got as f64 / c)
    }

    /// Worst direction's loss in percent.
    pub(crate) fn loss_percent(&self) -> f64 {
        let lost: u64 = self
            .dirs
            .iter()
            .map(|d| d.sent.saturating_sub(d.received))
            .sum();
        let sent: u64 = self.dirs.iter().map(|d| d.sent).sum();
        if sent == 0 {
            0.0
        } else {
            100.0 * lost as f64 / sent as f64
        }
    }
}

/// Per stream (call × direction) while running.
#[derive(Default)]
struct StreamStats {
    received: u64,
    /// One-way delays of counted packets, nanoseconds (saturating).
    delays: Vec<u32>,
}

/// The calls' sockets and the event loop over them.
pub(crate) struct Endpoints {
    poll: Poll,
    /// Call `i`: the caller's socket at `2i`, the callee's at `2i + 1`.
    sockets: Vec<UdpSocket>,
    run: u8,
}

impl Endpoints {
    /// No calls yet.
    pub(crate) fn new() -> io::Result<Endpoints> {
        Ok(Endpoints {
            poll: Poll::new()?,
            sockets: Vec::new(),
            run: 0,
        })
    }

    /// Calls that have sockets.
    pub(crate) fn calls(&self) -> usize {
        self.sockets.len() / 2
    }

    /// Binds the next call's two sockets; their addresses (caller, callee).
    pub(crate) fn add_call(&mut self) -> io::Result<(SocketAddr, SocketAddr)> {
        let mut pair = [SocketAddr::from(([127, 0, 0, 1], 0)); 2];
        for addr in &mut pair {
            let mut s = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            setsockopt(&s, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
            *addr = s.local_addr()?;
            let token = Token(self.sockets.len());
            self.poll
                .registry()
                .register(&mut s, token, Interest::READABLE)?;
            self.sockets.push(s);
        }
        Ok((pair[0], pair[1]))
    }

    /// Real-time clock, nanoseconds (the clock of SO_TIMESTAMPNS).
    fn now_ns(&self) -> u64 {
        now_ns()
    }

    /// Sends on every call in `routes` (the first `routes.len()` calls)
    /// both ways for `window`, receiving on all sockets; CPU of the server
    /// `server_pid` and of this process is read at the counted window's
    /// start and end.
    pub(crate) fn run(
        &mut self,
        routes: &[Route],
        window: Window,
        server_pid: Option<&str>,
    ) -> io::Result<Outcome> {
        let n = routes.len();
        if n == 0 || n > self.calls() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "routes do not match the calls",
            ));
        }
        self.run = self.run.wrapping_add(1);
        let run = self.run;
        let period_ns = PTIME.as_nanos() as u64;
        let warm_rounds = (window.warmup.as_nanos() as u64).div_ceil(period_ns);
        let counted_rounds = (window.measure.as_nanos() as u64)
            .div_ceil(period_ns)
            .max(1);
        let rounds = warm_rounds + counted_rounds;
        let total = rounds * n as u64;
        let mut rx = Receiver::new(run, 2 * n, counted_rounds as usize);
        let mut out = Outcome::default();

        let start_ns = self.now_ns() + 5_000_000;
        let due = |k: u64| -> u64 {
            let round = k / n as u64;
            let slot = k % n as u64;
            start_ns + round * period_ns + slot * period_ns / n as u64
        };
        let window_start_ns = start_ns + warm_rounds * period_ns;
        let window_end_ns = start_ns + rounds * period_ns;
        let stop_ns = window_end_ns + window.drain.as_nanos() as u64;
        let mut started: Option<(u64, Option<f64>, f64)> = None;
        let mut ended: Option<(u64, Option<f64>, f64)> = None;
        let sample = |now: u64| {
            (
                now,
                server_pid.and_then(cpu::seconds),
                cpu::seconds("self").unwrap_or(0.0),
            )
        };

        let mut packet = [0xffu8; RTP_HEADER + SAMPLES];
        let mut events = Events::with_capacity(1024);
        let mut k: u64 = 0;
        let mut max_lag_ns: u64 = 0;
        let mut late: u64 = 0;
        let late_ns = LATE.as_nanos() as u64;
        loop {
            let now = self.now_ns();
            if started.is_none() && now >= window_start_ns {
                started = Some(sample(now));
            }
            if ended.is_none() && now >= window_end_ns {
                ended = Some(sample(now));
            }
            while k < total && due(k) <= now {
                let call = (k % n as u64) as usize;
                let round = k / n as u64;
                let counted = round >= warm_rounds;
                let route = routes[call];
                for (side, to) in [(0usize, route.caller_to), (1, route.callee_to)] {
                    let stream = (2 * call + side) as u32;
                    let sent_ns = self.now_ns();
                    write_packet(&mut packet, run, stream, round, sent_ns, counted);
                    let sock = &self.sockets[2 * call + side];
                    match sock.send_to(&packet, to) {
                        Ok(_) if counted => out.dirs[side].sent += 1,
                        Ok(_) => {}
                        // A full socket buffer is a loss like any other.
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            if counted {
                                out.dirs[side].sent += 1;
                            }
                        }
                        // ICMP port unreachable from an earlier packet
                        // (nobody at the destination yet): a loss.
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                            if counted {
                                out.dirs[side].sent += 1;
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                let lag = now.saturating_sub(due(k));
                max_lag_ns = max_lag_ns.max(lag);
                late += u64::from(lag > late_ns);
                k += 1;
            }
            if k >= total && now >= stop_ns {
                break;
            }
            let next = if k < total { due(k) } else { stop_ns };
            let wait = Duration::from_nanos(next.saturating_sub(self.now_ns()));
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in &events {
                // Until the socket is empty: reading one datagram per
                // readiness lets a backlog build up whenever two arrivals
                // share one wake-up (a busy generator), until the socket
                // buffer overflows.
                let t = ev.token().0;
                if let Some(sock) = self.sockets.get(t) {
                    rx.read(sock.as_raw_fd(), t, usize::MAX);
                }
            }
        }
        // What is still queued (nothing, unless a read failed).
        for (t, sock) in self.sockets.iter().enumerate().take(2 * n) {
            rx.read(sock.as_raw_fd(), t, usize::MAX);
        }

        let Receiver {
            stats,
            foreign,
            misrouted,
            ..
        } = rx;
        out.foreign = foreign;
        out.misrouted = misrouted;
        for (i, s) in stats.iter().enumerate() {
            out.dirs[i % 2].received += s.received;
        }
        let (t0, s0, o0) = started.unwrap_or_else(|| sample(window_start_ns));
        let (t1, s1, o1) = ended.unwrap_or_else(|| sample(window_end_ns));
        out.seconds = (t1.saturating_sub(t0)) as f64 / 1e9;
        out.counted_seconds = (counted_rounds * period_ns) as f64 / 1e9;
        out.server_cpu = s0.zip(s1).map(|(a, b)| b - a);
        out.own_cpu = o1 - o0;
        out.max_send_lag_ms = max_lag_ns as f64 / 1e6;
        out.late_percent = 100.0 * late as f64 / total.max(1) as f64;

        let mut added: Vec<u32> = Vec::with_capacity(stats.iter().map(|s| s.delays.len()).sum());
        let mut min_all = u32::MAX;
        for s in &stats {
            let Some(&min) = s.delays.iter().min() else {
                continue;
            };
            min_all = min_all.min(min);
            added.extend(s.delays.iter().map(|d| d - min));
        }
        if !added.is_empty() {
            added.sort_unstable();
            let pct = |p: f64| {
                let i = ((added.len() - 1) as f64 * p).round() as usize;
                f64::from(added[i.min(added.len() - 1)]) / 1e3
            };
            out.added_p50_us = pct(0.50);
            out.added_p99_us = pct(0.99);
            out.added_max_us = pct(1.0);
            out.delay_min_us = f64::from(min_all) / 1e3;
        }
        Ok(out)
    }
}

/// Real-time clock, nanoseconds.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The receiving half of a run: buffers and per-stream counts.
struct Receiver {
    run: u8,
    buf: [u8; 2048],
    cmsg: Vec<u8>,
    stats: Vec<StreamStats>,
    foreign: u64,
    misrouted: u64,
}

impl Receiver {
    fn new(run: u8, streams: usize, packets_each: usize) -> Receiver {
        Receiver {
            run,
            buf: [0; 2048],
            cmsg: nix::cmsg_space!(TimeSpec),
            stats: (0..streams)
                .map(|_| StreamStats {
                    received: 0,
                    delays: Vec::with_capacity(packets_each),
                })
                .collect(),
            foreign: 0,
            misrouted: 0,
        }
    }

    /// Reads at most `at_most` datagrams from socket `t` (descriptor `fd`),
    /// stopping when it is empty.
    fn read(&mut self, fd: RawFd, t: usize, at_most: usize) {
        let mut done = 0;
        while done < at_most {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let (len, stamp) =
                match recvmsg::<()>(fd, &mut iov, Some(&mut self.cmsg), MsgFlags::MSG_DONTWAIT) {
                    Ok(msg) => {
                        let stamp = msg.cmsgs().ok().and_then(|mut c| {
                            c.find_map(|m| match m {
                                ControlMessageOwned::ScmTimestampns(t) => Some(t),
                                _ => None,
                            })
                        });
                        (msg.bytes, stamp)
                    }
                    // An ICMP error from an earlier send surfaces once; the
                    // socket stays usable.
                    Err(Errno::ECONNREFUSED | Errno::EINTR) => continue,
                    Err(_) => return, // EAGAIN: empty
                };
            done += 1;
            let arrived = stamp.map_or_else(now_ns, |t| {
                (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64
            });
            let Some(tag) = read_packet(self.buf.get(..len).unwrap_or_default(), self.run) else {
                self.foreign += 1;
                continue;
            };
            if !tag.counted {
                continue;
            }
            let stream = tag.stream as usize;
            // stream 2i (caller → callee) arrives at the callee's socket
            // 2i + 1, stream 2i + 1 at the caller's 2i.
            if stream >= self.stats.len() || stream ^ 1 != t {
                self.misrouted += 1;
                continue;
            }
            let s = &mut self.stats[stream];
            s.received += 1;
            let delay = arrived.saturating_sub(tag.sent_ns);
            s.delays.push(u32::try_from(delay).unwrap_or(u32::MAX));
        }
    }
}

/// What the generator wrote into a payload.
struct Tag {
    stream: u32,
    sent_ns: u64,
    counted: bool,
}

fn write_packet(
    p: &mut [u8; RTP_HEADER + SAMPLES],
    run: u8,
    stream: u32,
    round: u64,
    sent_ns: u64,
    counted: bool,
) {
    p[0] = 0x80; // version 2, no padding, no extension, no CSRC
    p[1] = if round == 0 { 0x80 } else { 0 }; // marker on the first packet, PT 0 (PCMU)
    p[2..4].copy_from_slice(&(round as u16).to_be_bytes());
    p[4..8].copy_from_slice(&((round as u32).wrapping_mul(SAMPLES as u32)).to_be_bytes());
    p[8..12].copy_from_slice(&(0x5b00_0000 ^ stream).to_be_bytes());
    let tag = &mut p[RTP_HEADER..RTP_HEADER + TAG_LEN];
    tag[0..4].copy_from_slice(MAGIC);
    tag[4] = run;
    tag[5..9].copy_from_slice(&stream.to_be_bytes());
    tag[9..17].copy_from_slice(&sent_ns.to_be_bytes());
    tag[17] = u8::from(counted);
}

/// The tag of one of this run's packets, wherever the RTP header (with
/// CSRCs or an extension a relay may add) ends.
fn read_packet(p: &[u8], run: u8) -> Option<Tag> {
    let first = *p.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let mut at = RTP_HEADER + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = p.get(at + 2..at + 4)?;
        at += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let tag = p.get(at..at + TAG_LEN)?;
    if &tag[0..4] != MAGIC || tag[4] != run {
        return None;
    }
    Some(Tag {
        stream: u32::from_be_bytes(tag[5..9].try_into().ok()?),
        sent_ns: u64::from_be_bytes(tag[9..17].try_into().ok()?),
        counted: tag[17] == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_other_runs_are_foreign() {
        let mut p = [0xffu8; RTP_HEADER + SAMPLES];
        write_packet(&mut p, 3, 77, 5, 123_456, true);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 5);
        assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 800);
        let t = read_packet(&p, 3).unwrap();
        assert_eq!((t.stream, t.sent_ns, t.counted), (77, 123_456, true));
        assert!(read_packet(&p, 4).is_none());
        assert!(read_packet(&p[..20], 3).is_none());
        assert_eq!(p[RTP_HEADER + TAG_LEN], 0xff, "PCMU silence after the tag");
    }

    #[test]
    fn direct_run_loses_nothing() {
        let mut e = Endpoints::new().unwrap();
        let mut routes = Vec::new();
        for _ in 0..4 {
            let (a, b) = e.add_call().unwrap();
            routes.push(Route {
                caller_to: b,
                callee_to: a,
            });
        }
        let w = Window {
            warmup: Duration::from_millis(40),
            measure: Duration::from_millis(200),
            drain: Duration::from_millis(50),
        };
        let o = e.run(&routes, w, None).unwrap();
        // 4 calls × 10 rounds each way
        assert_eq!(o.dirs[0].sent, 40);
        assert_eq!(o.dirs[1].sent, 40);
        assert_eq!(o.dirs[0].received + o.dirs[1].received, 80, "{o:?}");
        assert_eq!(o.misrouted, 0);
    }
}
