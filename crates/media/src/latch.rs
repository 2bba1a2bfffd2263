//! Which source a leg's RTP may come from: symmetric-RTP latching (RFC 4961
//! §4) guarded by source checks, and a learning probation before a new
//! source may take the stream over (RFC 3550 §8.2's "validation" of a new
//! source, as Asterisk's `strictrtp` learning does).
//!
//! A leg sends to its SDP address until it latches, then to the latched
//! source. What may latch depends on [`Latching`]:
//! - [`Latching::Strict`] (the default, `media.strict_source = true`): only
//!   RTP whose source IP is the one the leg's SIP signalling came from, or
//!   the IP its SDP names. Everything else is dropped, however well formed,
//!   so a host that sprays the port range can never take a stream.
//! - [`Latching::Learn`] (`media.strict_source = false`, for phones whose
//!   media comes from another host than their signalling): RTP from the
//!   signalling IP or the SDP address latches at once; any other source
//!   must first win a probation: [`PROBATION_PACKETS`] packets in sequence,
//!   one SSRC, one address, with nothing from any other address between.
//! - [`Latching::SdpAddressOnly`]: only the exact SDP address (trunks with
//!   a fixed media address).
//!
//! Once latched, another admissible source takes over only after winning
//! the probation while the latched one has been silent for [`SILENCE`]
//! (a phone whose NAT binding moved). Until then its packets are dropped
//! and counted. Sans-IO: the caller passes the time.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Which sources a leg may latch onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Latching {
    /// Only the IP the leg's SIP signalling came from, or the SDP's IP.
    #[default]
    Strict,
    /// The signalling IP or the SDP address at once; any other address
    /// after a probation.
    Learn,
    /// Only RTP from the exact SDP address (trunks with a fixed media
    /// address).
    SdpAddressOnly,
}

/// Packets in sequence (one SSRC, one address) a new source must send
/// before it may take a stream.
pub const PROBATION_PACKETS: u8 = 4;

/// How long the latched source must have been silent before a new source
/// that won its probation takes over.
pub const SILENCE: Duration = Duration::from_millis(500);

/// What to do with one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// From the latched source.
    Accept,
    /// The packet latched (or re-latched) the leg onto its source.
    Latched,
    /// Not from a source the leg takes: drop and count it.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    sequence: u16,
    count: u8,
}

/// A leg's latch state.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    mode: Latching,
    /// The IP the leg's SIP signalling comes from.
    signalling: Option<IpAddr>,
    current: Option<SocketAddr>,
    /// When the latched source last sent an accepted packet.
    heard: Option<Instant>,
    candidate: Option<Candidate>,
}

impl Latch {
    pub(crate) fn new(mode: Latching) -> Latch {
        Latch {
            mode,
            ..Latch::default()
        }
    }

    pub(crate) fn set_mode(&mut self, mode: Latching) {
        self.mode = mode;
    }

    pub(crate) fn set_signalling(&mut self, ip: Option<IpAddr>) {
        self.signalling = ip;
    }

    pub(crate) fn current(&self) -> Option<SocketAddr> {
        self.current
    }

    /// Forgets the latched source and any candidate.
    pub(crate) fn reset(&mut self) {
        self.current = None;
        self.heard = None;
        self.candidate = None;
    }

    /// Whether `from` may send on this leg at all.
    fn admissible(&self, from: SocketAddr, remote: Option<SocketAddr>) -> bool {
        match self.mode {
            Latching::Strict => {
                Some(from.ip()) == self.signalling || remote.map(|r| r.ip()) == Some(from.ip())
            }
            Latching::Learn => true,
            Latching::SdpAddressOnly => remote == Some(from),
        }
    }

    /// Whether `from` may latch without a probation.
    fn trusted(&self, from: SocketAddr, remote: Option<SocketAddr>) -> bool {
        match self.mode {
            Latching::Strict | Latching::SdpAddressOnly => true,
            Latching::Learn => remote == Some(from) || Some(from.ip()) == self.signalling,
        }
    }

    /// Counts one packet towards `from`'s probation; true once it has won.
    fn probation(&mut self, from: SocketAddr, ssrc: u32, sequence: u16) -> bool {
        let next = match self.candidate {
            Some(c)
                if c.from == from && c.ssrc == ssrc && sequence == c.sequence.wrapping_add(1) =>
            {
                Candidate {
                    sequence,
                    count: c.count.saturating_add(1),
                    ..c
                }
            }
            _ => Candidate {
                from,
                ssrc,
                sequence,
                count: 1,
            },
        };
        self.candidate = Some(next);
        next.count >= PROBATION_PACKETS
    }

    fn latch(&mut self, from: SocketAddr, now: Instant) -> Verdict {
        self.current = Some(from);
        self.heard = Some(now);
        self.candidate = None;
        Verdict::Latched
    }

    /// Judges one valid RTP packet of a negotiated payload type from
    /// `from`, the SDP address being `remote`.
    pub(crate) fn judge(
        &mut self,
        from: SocketAddr,
        remote: Option<SocketAddr>,
        ssrc: u32,
        sequence: u16,
        now: Instant,
    ) -> Verdict {
        if self.current == Some(from) {
            self.heard = Some(now);
            return Verdict::Accept;
        }
        if !self.admissible(from, remote) {
            return Verdict::Drop;
        }
        match self.current {
            None if self.trusted(from, remote) => self.latch(from, now),
            None => {
                if self.probation(from, ssrc, sequence) {
                    self.latch(from, now)
                } else {
                    Verdict::Drop
                }
            }
            Some(_) => {
                let won = self.probation(from, ssrc, sequence);
                let silent = self
                    .heard
                    .is_none_or(|t| now.saturating_duration_since(t) >= SILENCE);
                if won && silent {
                    self.latch(from, now)
                } else {
                    Verdict::Drop
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const PHONE: &str = "127.0.0.1:4000";
    const SPRAYER: &str = "127.0.0.2:5000";

    #[test]
    fn strict_takes_only_the_signalling_or_sdp_ip() {
        let now = Instant::now();
        let mut latch = Latch::new(Latching::Strict);
        latch.set_signalling(Some("127.0.0.1".parse().unwrap()));
        let sdp = Some(a("127.0.0.3:6000"));
        // A well-formed, in-sequence stream from a third host never latches.
        for seq in 0..100u16 {
            assert_eq!(latch.judge(a(SPRAYER), sdp, 7, seq, now), Verdict::Drop);
        }
        assert_eq!(latch.current(), None);
        // The phone's own IP (another port than its SIP) latches at once.
        assert_eq!(
            latch.judge(a(PHONE), sdp, 1, 1, now),
            Verdict::Latched,
            "signalling IP"
        );
        // So does the SDP's IP, after a reset.
        latch.reset();
        assert_eq!(
            latch.judge(a("127.0.0.3:6002"), sdp, 1, 1, now),
            Verdict::Latched
        );
    }

    #[test]
    fn learn_needs_a_probation_from_unknown_sources() {
        let now = Instant::now();
        let mut latch = Latch::new(Latching::Learn);
        latch.set_signalling(Some("127.0.0.1".parse().unwrap()));
        let sdp = Some(a("127.0.0.1:4000"));
        for seq in 10..10 + u16::from(PROBATION_PACKETS) - 1 {
            assert_eq!(latch.judge(a(SPRAYER), sdp, 7, seq, now), Verdict::Drop);
        }
        // Out of sequence starts again.
        assert_eq!(latch.judge(a(SPRAYER), sdp, 7, 50, now), Verdict::Drop);
        // 50 counted as one; two more in sequence make three.
        for seq in 51..53u16 {
            assert_eq!(latch.judge(a(SPRAYER), sdp, 7, seq, now), Verdict::Drop);
        }
        // A different SSRC starts again.
        assert_eq!(latch.judge(a(SPRAYER), sdp, 8, 53, now), Verdict::Drop);
        for seq in 54..56u16 {
            assert_eq!(latch.judge(a(SPRAYER), sdp, 8, seq, now), Verdict::Drop);
        }
        // Another address between two packets starts again too.
        assert_eq!(
            latch.judge(a("127.0.0.5:1"), sdp, 8, 56, now),
            Verdict::Drop
        );
        for seq in 56..56 + u16::from(PROBATION_PACKETS) - 1 {
            assert_eq!(latch.judge(a(SPRAYER), sdp, 8, seq, now), Verdict::Drop);
        }
        let last = 56 + u16::from(PROBATION_PACKETS) - 1;
        assert_eq!(latch.judge(a(SPRAYER), sdp, 8, last, now), Verdict::Latched);
        assert_eq!(latch.current(), Some(a(SPRAYER)));
    }

    #[test]
    fn a_latched_source_is_taken_over_only_after_silence() {
        let t0 = Instant::now();
        let mut latch = Latch::new(Latching::Learn);
        let sdp = Some(a(PHONE));
        assert_eq!(latch.judge(a(PHONE), sdp, 1, 1, t0), Verdict::Latched);
        let moved = a("127.0.0.1:4100");
        // While the phone talks, a winning probation is not enough.
        for seq in 0..20u16 {
            let t = t0 + Duration::from_millis(20 * u64::from(seq));
            assert_eq!(latch.judge(a(PHONE), sdp, 1, seq + 2, t), Verdict::Accept);
            assert_eq!(latch.judge(moved, sdp, 2, seq, t), Verdict::Drop);
        }
        // The phone falls silent (its NAT binding moved): the new source,
        // still in sequence, takes over once SILENCE has passed.
        let quiet = t0 + Duration::from_millis(380);
        let mut seq = 20u16;
        let mut t = quiet;
        loop {
            t += Duration::from_millis(20);
            match latch.judge(moved, sdp, 2, seq, t) {
                Verdict::Latched => break,
                Verdict::Drop => assert!(t < quiet + SILENCE + Duration::from_millis(40)),
                Verdict::Accept => unreachable!(),
            }
            seq += 1;
        }
        assert!(t.duration_since(quiet) >= SILENCE);
        assert_eq!(latch.current(), Some(moved));
        // And the old address is now the stranger.
        assert_eq!(latch.judge(a(PHONE), sdp, 1, 99, t), Verdict::Drop);
    }

    #[test]
    fn sdp_address_only_takes_the_exact_address() {
        let now = Instant::now();
        let mut latch = Latch::new(Latching::SdpAddressOnly);
        latch.set_signalling(Some("127.0.0.1".parse().unwrap()));
        let sdp = Some(a(PHONE));
        assert_eq!(
            latch.judge(a("127.0.0.1:4002"), sdp, 1, 1, now),
            Verdict::Drop
        );
        assert_eq!(latch.judge(a(PHONE), sdp, 1, 1, now), Verdict::Latched);
    }
}
