//! The queue run (`--mode queue`, `bench/queue.sh`): N callers dial
//! Switchboard, whose bench context puts each in one call queue with no
//! agent, so every caller waits hearing music on hold. The generator only
//! receives: per caller one RTP socket on 127.0.0.1 (the SDP offer names
//! it), the kernel's arrival time of each packet (SO_TIMESTAMPNS). Jitter
//! is each packet's arrival against its RTP timestamp (8 kHz), above the
//! stream's minimum: how late the music came against its own clock. The
//! server's resident memory (VmRSS) is read before the callers and once
//! they all wait: the cost of a waiting caller.

use std::io::{ErrorKind, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;

use crate::sip;

/// Nanoseconds per RTP timestamp unit at 8 kHz.
const NS_PER_TICK: u64 = 125_000;

/// What one queue run measured.
#[derive(Debug, Default)]
pub(crate) struct QueueOutcome {
    /// Callers set up and waiting.
    pub callers: usize,
    /// Callers that got any music in the window.
    pub hearing: usize,
    /// RTP packets received in the window.
    pub packets: u64,
    /// Packets expected in the window (50 per second per caller).
    pub expected: u64,
    /// Jitter percentiles, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Packets whose RTP timestamp was behind the one received before.
    pub backward_steps: u64,
    /// The server's VmRSS before the callers and with all of them waiting, KiB.
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
}

impl QueueOutcome {
    /// Resident memory per waiting caller, KiB.
    pub(crate) fn kib_per_caller(&self) -> Option<f64> {
        let (a, b) = (self.rss_before_kib?, self.rss_after_kib?);
        (self.callers > 0).then(|| (b.saturating_sub(a)) as f64 / self.callers as f64)
    }
}

/// VmRSS of process `pid`, KiB.
pub(crate) fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One caller's received stream: (arrival ns, RTP timestamp) per packet.
#[derive(Default)]
struct Stream {
    packets: Vec<(u64, u32)>,
}

/// Sets `n` callers up through `agent` at `rate` per second, lets them
/// settle for `settle`, then listens for `window`.
pub(crate) fn run(
    agent: &sip::Agent,
    n: usize,
    rate: f64,
    settle: Duration,
    window: Duration,
    server_pid: Option<&str>,
) -> Result<QueueOutcome, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut sockets = Vec::with_capacity(n);
    let mut calls = Vec::with_capacity(n);
    for index in 0..n {
        let mut s = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| format!("binding caller {index}'s RTP socket: {e}"))?;
        setsockopt(&s, sockopt::ReceiveTimestampns, &true).map_err(|e| e.to_string())?;
        let addr = s.local_addr().map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut s, Token(index), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        sockets.push(s);
        calls.push(sip::NewCall {
            index,
            caller_media: addr,
            // Nobody is rung: the queue answers and plays music.
            callee_media: addr,
        });
    }
    let mut out = QueueOutcome {
        callers: n,
        rss_before_kib: server_pid.and_then(rss_kib),
        ..QueueOutcome::default()
    };
    let results = agent.setup(calls, rate).map_err(|e| e.to_string())?;
    let failed: Vec<String> = results.iter().filter_map(|r| r.clone().err()).collect();
    if let Some(first) = failed.first() {
        return Err(format!("{} of {n} callers failed: {first}", failed.len()));
    }
    // Music already flows: drain it while the last callers settle.
    let mut streams: Vec<Stream> = (0..n).map(|_| Stream::default()).collect();
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let settle_end = Instant::now() + settle;
    let mut counting = false;
    let mut window_end = settle_end + window;
    loop {
        let now = Instant::now();
        if !counting && now >= settle_end {
            counting = true;
            out.rss_after_kib = server_pid.and_then(rss_kib);
            window_end = now + window;
        }
        if counting && now >= window_end {
            break;
        }
        let until = if counting { window_end } else { settle_end };
        match poll.poll(&mut events, Some(until.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
        for ev in &events {
            let t = ev.token().0;
            let Some(sock) = sockets.get(t) else {
                continue;
            };
            loop {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let (len, stamp) = match recvmsg::<()>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(msg) => {
                        let stamp = msg.cmsgs().ok().and_then(|mut c| {
                            c.find_map(|m| match m {
                                ControlMessageOwned::ScmTimestampns(t) => Some(t),
                                _ => None,
                            })
                        });
                        (msg.bytes, stamp)
                    }
                    Err(Errno::EINTR | Errno::ECONNREFUSED) => continue,
                    Err(_) => break,
                };
                // RTCP (RFC 5761 §4: second byte 192-223) is not music: a
                // caller's RTCP goes to its RTP port + 1, which may be
                // another caller's RTP socket here.
                if !counting || len < 12 || buf[0] >> 6 != 2 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                let arrived = stamp.map_or_else(now_ns, |t| {
                    (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64
                });
                let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                streams[t].packets.push((arrived, ts));
            }
        }
    }
    out.expected = (window.as_millis() / 20) as u64 * n as u64;
    let mut added: Vec<u64> = Vec::new();
    for s in &streams {
        let Some(&(a0, t0)) = s.packets.first() else {
            continue;
        };
        out.hearing += 1;
        out.packets += s.packets.len() as u64;
        // Arrival against the RTP clock, relative to the first packet.
        let rel: Vec<i64> = s
            .packets
            .iter()
            .map(|&(a, t)| {
                // Signed: a timestamp behind the first packet's counts as
                // that much later, not as a wrap of the 32-bit clock.
                let media_ns = i64::from(t.wrapping_sub(t0) as i32) * NS_PER_TICK as i64;
                (a as i64 - a0 as i64) - media_ns
            })
            .collect();
        out.backward_steps += s
            .packets
            .windows(2)
            .filter(|w| (w[1].1.wrapping_sub(w[0].1) as i32) < 0)
            .count() as u64;
        let min = rel.iter().copied().min().unwrap_or(0);
        added.extend(rel.iter().map(|r| (r - min) as u64));
    }
    if !added.is_empty() {
        added.sort_unstable();
        let pct = |p: f64| {
            let i = ((added.len() - 1) as f64 * p).round() as usize;
            added[i.min(added.len() - 1)] as f64 / 1e6
        };
        out.p50_ms = pct(0.50);
        out.p99_ms = pct(0.99);
        out.max_ms = pct(1.0);
    }
    Ok(out)
}
