//! Stream continuity for the relay (RFC 3550 §5.1, §8.2, A.1): one output
//! SSRC whose sequence numbers and timestamps run on across a change of
//! source, so the far end sees one stream.
//!
//! Within one source, sequence and timestamp keep their offsets (reordering,
//! loss and silence gaps pass through as they are). When the source changes
//! — a new SSRC, a jump larger than A.1's `MAX_DROPOUT` / `MAX_MISORDER`, or
//! [`Rewriter::reset_source`] — the next packet gets the next sequence
//! number and a timestamp that moved on by the wall-clock time since the last
//! packet (at least one packet's worth), with the marker bit set so the
//! receiver's jitter buffer re-syncs.

use std::time::Instant;

use crate::error::RtpError;
use crate::packet::{RtpHeader, RtpPacket, write_header_fields};

/// A forward jump larger than this starts a new source (RFC 3550 A.1).
const MAX_DROPOUT: i32 = 3000;
/// A backward jump larger than this starts a new source (RFC 3550 A.1).
const MAX_MISORDER: i32 = 100;

/// Rewrites SSRC, sequence numbers and timestamps of a relayed stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    ssrc: u32,
    clock_rate: u32,
    source: Option<Source>,
    /// Sequence number the next re-based packet gets.
    next_seq: u16,
    /// Output timestamp of the newest packet, and when it went out.
    last_ts: u32,
    last_sent: Option<Instant>,
    /// Timestamp step between consecutive packets (samples per packet).
    frame: u32,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// First and highest input sequence numbers seen from this source.
    base_seq: u16,
    highest_seq: u16,
    highest_ts: u32,
}

impl Rewriter {
    /// A rewriter that sends as `ssrc` with a `clock_rate` Hz timestamp clock,
    /// starting at `initial_seq` / `initial_ts` (pick both at random, RFC
    /// 3550 §5.1).
    pub fn new(ssrc: u32, clock_rate: u32, initial_seq: u16, initial_ts: u32) -> Self {
        Rewriter {
            ssrc,
            clock_rate,
            source: None,
            next_seq: initial_seq,
            last_ts: initial_ts.wrapping_sub(clock_rate / 50),
            last_sent: None,
            // 20 ms until the stream shows its own packet size.
            frame: (clock_rate / 50).max(1),
        }
    }

    /// The SSRC every output packet carries.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Makes the next packet start a new source even if its SSRC is the
    /// one already seen (for example a prompt that restarts).
    pub fn reset_source(&mut self) {
        self.source = None;
    }

    /// The output header for an input packet that arrived at `now`, or
    /// `None` when the packet is older than the start of its source (it
    /// would repeat a sequence number already sent) and must be dropped.
    pub fn rewrite(&mut self, input: &RtpHeader, now: Instant) -> Option<RtpHeader> {
        let mut rebased = false;
        let source = match self.source {
            Some(s) if s.ssrc == input.ssrc => {
                let ahead = i32::from(input.sequence.wrapping_sub(s.highest_seq) as i16);
                let behind_base = (input.sequence.wrapping_sub(s.base_seq) as i16) < 0;
                if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&ahead) {
                    rebased = true;
                    self.rebase(input, now)
                } else if behind_base {
                    return None;
                } else {
                    let mut s = s;
                    if ahead > 0 {
                        let step = input.timestamp.wrapping_sub(s.highest_ts);
                        if ahead == 1 && step > 0 && step <= self.clock_rate {
                            self.frame = step;
                        }
                        s.highest_seq = input.sequence;
                        s.highest_ts = input.timestamp;
                    }
                    s
                }
            }
            _ => {
                rebased = true;
                self.rebase(input, now)
            }
        };
        self.source = Some(source);
        let out = RtpHeader {
            marker: input.marker || rebased,
            payload_type: input.payload_type,
            sequence: input.sequence.wrapping_add(source.seq_offset),
            timestamp: input.timestamp.wrapping_add(source.ts_offset),
            ssrc: self.ssrc,
        };
        if (out.sequence.wrapping_sub(self.next_seq) as i16) >= 0 {
            self.next_seq = out.sequence.wrapping_add(1);
        }
        if self.last_sent.is_none() || (out.timestamp.wrapping_sub(self.last_ts) as i32) > 0 {
            self.last_ts = out.timestamp;
            self.last_sent = Some(now);
        }
        Some(out)
    }

    /// [`Rewriter::rewrite`] on a datagram, overwriting its header in place;
    /// `Ok(None)` means drop it.
    ///
    /// # Errors
    /// [`RtpError`] when the datagram is not RTP.
    pub fn rewrite_in_place(
        &mut self,
        data: &mut [u8],
        now: Instant,
    ) -> Result<Option<RtpHeader>, RtpError> {
        let input = RtpPacket::parse(data)?.header();
        let Some(out) = self.rewrite(&input, now) else {
            return Ok(None);
        };
        write_header_fields(data, &out)?;
        Ok(Some(out))
    }

    fn rebase(&mut self, input: &RtpHeader, now: Instant) -> Source {
        let elapsed = match self.last_sent {
            Some(last) => {
                let nanos = now.saturating_duration_since(last).as_nanos();
                u32::try_from(nanos * u128::from(self.clock_rate) / 1_000_000_000)
                    .unwrap_or(u32::MAX / 2)
                    .min(u32::MAX / 2)
            }
            None => 0,
        };
        let out_ts = self.last_ts.wrapping_add(elapsed.max(self.frame));
        Source {
            ssrc: input.ssrc,
            seq_offset: self.next_seq.wrapping_sub(input.sequence),
            ts_offset: out_ts.wrapping_sub(input.timestamp),
            base_seq: input.sequence,
            highest_seq: input.sequence,
            highest_ts: input.timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::packet::PacketBuilder;

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn one_source_keeps_its_spacing_under_the_fixed_ssrc() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(0xAAAA, 8000, 1000, 50_000);
        let a = r.rewrite(&pkt(7, 300, 9000), t0).unwrap();
        assert_eq!(
            (a.ssrc, a.sequence, a.timestamp, a.marker),
            (0xAAAA, 1000, 50_000, true)
        );
        let b = r.rewrite(&pkt(7, 301, 9160), ms(t0, 20)).unwrap();
        assert_eq!((b.sequence, b.timestamp, b.marker), (1001, 50_160, false));
        // Loss and a silence gap pass through as they are.
        let c = r.rewrite(&pkt(7, 305, 12_000), ms(t0, 60)).unwrap();
        assert_eq!((c.sequence, c.timestamp), (1005, 53_000));
        // A late packet keeps its place.
        let d = r.rewrite(&pkt(7, 303, 9640), ms(t0, 61)).unwrap();
        assert_eq!((d.sequence, d.timestamp), (1003, 50_640));
    }

    #[test]
    fn a_new_source_continues_the_sequence_with_a_plausible_jump() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(1, 8000, 0xFFFE, 0xFFFF_FF00);
        for i in 0..3u16 {
            let h = r
                .rewrite(
                    &pkt(7, 10 + i, 160 * u32::from(i)),
                    ms(t0, 20 * u64::from(i)),
                )
                .unwrap();
            assert_eq!(h.sequence, 0xFFFEu16.wrapping_add(i));
        }
        // A prompt takes over 30 ms after the last packet: +1 and +240 samples.
        let p = r.rewrite(&pkt(99, 5000, 777), ms(t0, 70)).unwrap();
        assert_eq!(p.sequence, 1);
        assert_eq!(p.timestamp, 0xFFFF_FF00u32.wrapping_add(320 + 240));
        assert!(p.marker);
        assert_eq!(p.ssrc, 1);
        let q = r.rewrite(&pkt(99, 5001, 937), ms(t0, 90)).unwrap();
        assert_eq!(
            (q.sequence, q.timestamp, q.marker),
            (2, p.timestamp.wrapping_add(160), false)
        );
        // The phone comes back: +1 again.
        let b = r.rewrite(&pkt(7, 13, 480), ms(t0, 90)).unwrap();
        assert_eq!(b.sequence, 3);
        assert!(b.marker);
        // No time passed: the jump is still one packet's worth, never zero.
        assert_eq!(b.timestamp, q.timestamp.wrapping_add(160));
    }

    #[test]
    fn packets_older_than_their_source_start_are_dropped() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(1, 8000, 100, 0);
        r.rewrite(&pkt(7, 10, 0), t0).unwrap();
        r.rewrite(&pkt(8, 500, 0), t0).unwrap();
        // 499 would reuse sequence number 100.
        assert_eq!(r.rewrite(&pkt(8, 499, 0), t0), None);
        assert_eq!(r.rewrite(&pkt(8, 501, 160), t0).unwrap().sequence, 102);
    }

    #[test]
    fn a_restart_within_one_ssrc_is_a_new_source() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(1, 8000, 0, 0);
        r.rewrite(&pkt(7, 10, 0), t0).unwrap();
        r.rewrite(&pkt(7, 11, 160), t0).unwrap();
        let j = r.rewrite(&pkt(7, 40_000, 5), ms(t0, 20)).unwrap();
        assert_eq!((j.sequence, j.timestamp, j.marker), (2, 320, true));
        let k = r.rewrite(&pkt(7, 39_000, 5), ms(t0, 20)).unwrap();
        assert_eq!(
            k.sequence, 3,
            "a jump back beyond MAX_MISORDER re-bases too"
        );
    }

    #[test]
    fn reset_source_rebases_the_same_ssrc() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(1, 8000, 0, 0);
        r.rewrite(&pkt(7, 10, 0), t0).unwrap();
        r.reset_source();
        let h = r.rewrite(&pkt(7, 0, 0), ms(t0, 100)).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.marker), (1, 800, true));
    }

    #[test]
    fn learns_the_packet_size_for_the_minimum_jump() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(1, 8000, 0, 0);
        r.rewrite(&pkt(7, 1, 0), t0).unwrap();
        r.rewrite(&pkt(7, 2, 240), t0).unwrap();
        let h = r.rewrite(&pkt(8, 1, 0), t0).unwrap();
        assert_eq!(h.timestamp, 480);
    }

    #[test]
    fn rewrites_datagrams_in_place() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(0x1234, 8000, 7, 0);
        let payload = [0xFFu8; 160];
        let mut bytes = PacketBuilder::new(pkt(99, 1, 1))
            .payload(&payload)
            .build()
            .unwrap();
        let out = r.rewrite_in_place(&mut bytes, t0).unwrap().unwrap();
        let p = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(p.header(), out);
        assert_eq!((out.ssrc, out.sequence), (0x1234, 7));
        assert_eq!(p.payload(), payload);
        assert!(r.rewrite_in_place(&mut [0u8; 3], t0).is_err());
        assert_eq!(r.ssrc(), 0x1234);
    }
}
