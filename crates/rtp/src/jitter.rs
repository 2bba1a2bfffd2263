//! A jitter buffer for the paths that decode (player, recorder, mixer):
//! RTP packets (RFC 3550 §5.1) in by sequence number with their arrival
//! time, out in order at their playout time, a target delay after arrival.
//!
//! Sans-IO: [`JitterBuffer::push`] takes `arrival`, [`JitterBuffer::pop`]
//! takes `now`, and [`JitterBuffer::next_deadline`] says when to call `pop`
//! again. Playout times follow the RTP timestamps from an anchor packet, so
//! network jitter up to the target delay is absorbed. Reordering is undone,
//! duplicates and packets whose turn has passed are dropped, a missing
//! packet becomes a [`Playout::Gap`] once its own playout time has passed,
//! sequence numbers wrap, a new SSRC (or a jump of more than 3000, RFC 3550
//! A.1) resets the buffer, and at most `capacity` packets are held (the
//! oldest goes first).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::packet::RtpHeader;

/// A jump larger than this (either way) is a restarted stream (RFC 3550 A.1).
const MAX_DROPOUT: i64 = 3000;

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Buffered.
    Accepted,
    /// Buffered after dropping the oldest packet (the buffer was full).
    Overflow,
    /// Buffered as the first packet of a new stream; everything before was dropped.
    Reset,
    /// Dropped: this sequence number is already buffered.
    Duplicate,
    /// Dropped: its turn has passed (played or reported as a gap).
    TooLate,
}

/// What [`JitterBuffer::pop`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The next packet, in sequence order.
    Packet {
        /// Its header.
        header: RtpHeader,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// Packets that never came in time: conceal `count` packets' worth.
    Gap {
        /// The first missing sequence number.
        sequence: u16,
        /// How many are missing.
        count: u16,
    },
}

/// Counters since the buffer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    /// Packets played out.
    pub played: u64,
    /// Packets reported missing in gaps.
    pub lost: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that came after their turn.
    pub late: u64,
    /// Packets dropped because the buffer was full.
    pub overflowed: u64,
    /// Stream resets (SSRC change or restart).
    pub resets: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    header: RtpHeader,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    arrival: Instant,
    timestamp: u32,
}

/// Reorders one RTP stream and releases it at playout time.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    clock_rate: u32,
    target: Duration,
    capacity: usize,
    ssrc: Option<u32>,
    /// Buffered packets by extended sequence number.
    packets: BTreeMap<i64, Entry>,
    /// Extended sequence number of the next packet to play.
    next: i64,
    /// Highest extended sequence number seen (the reference for extending).
    highest: i64,
    /// Whether anything has been handed out since the last reset.
    playing: bool,
    anchor: Option<Anchor>,
    /// Timestamp advance per packet, learnt from consecutive packets.
    ts_step: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer for a stream with a `clock_rate` Hz timestamp clock that
    /// plays each packet `target_delay` after the timing of the stream's
    /// first packet and holds at most `capacity` (at least 1) packets.
    pub fn new(clock_rate: u32, target_delay: Duration, capacity: usize) -> Self {
        JitterBuffer {
            clock_rate: clock_rate.max(1),
            target: target_delay,
            capacity: capacity.max(1),
            ssrc: None,
            packets: BTreeMap::new(),
            next: 0,
            highest: 0,
            playing: false,
            anchor: None,
            ts_step: (clock_rate / 50).max(1),
            stats: JitterStats::default(),
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packets are held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Counters since the buffer was made.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Drops everything; the next packet starts a new stream.
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.packets.clear();
        self.playing = false;
        self.anchor = None;
    }

    /// The sequence number extended to the one closest to the highest seen.
    fn extend(&self, seq: u16) -> i64 {
        let low = self.highest.rem_euclid(1 << 16) as u16;
        self.highest + i64::from(seq.wrapping_sub(low) as i16)
    }

    /// Takes a packet that arrived at `arrival`.
    pub fn push(&mut self, header: RtpHeader, payload: &[u8], arrival: Instant) -> PushOutcome {
        let mut outcome = PushOutcome::Accepted;
        let restart = match self.ssrc {
            None => true,
            Some(ssrc) if ssrc != header.ssrc => true,
            Some(_) => (self.extend(header.sequence) - self.highest).abs() > MAX_DROPOUT,
        };
        if restart {
            if self.ssrc.is_some() {
                self.stats.resets += 1;
                outcome = PushOutcome::Reset;
            }
            self.reset();
            self.ssrc = Some(header.ssrc);
            // Start each stream in the middle of the extended range.
            self.highest = (1 << 32) + i64::from(header.sequence);
            self.next = self.highest;
            self.anchor = Some(Anchor {
                arrival,
                timestamp: header.timestamp,
            });
        }
        let ext = self.extend(header.sequence);
        if ext < self.next {
            if self.playing {
                self.stats.late += 1;
                return PushOutcome::TooLate;
            }
            // Nothing played yet: an earlier packet that came second still counts.
            self.next = ext;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        // Learn the packet size from a neighbour.
        for (neighbour, forward) in [(ext - 1, true), (ext + 1, false)] {
            if let Some(e) = self.packets.get(&neighbour) {
                let step = if forward {
                    header.timestamp.wrapping_sub(e.header.timestamp)
                } else {
                    e.header.timestamp.wrapping_sub(header.timestamp)
                };
                if step > 0 && step <= self.clock_rate {
                    self.ts_step = step;
                }
            }
        }
        // After an underrun (nothing buffered, and this one is already past
        // its playout time), re-anchor so the target delay is restored.
        if self.packets.is_empty()
            && ext == self.next
            && self
                .playout_time(header.timestamp)
                .is_some_and(|t| t < arrival)
        {
            self.anchor = Some(Anchor {
                arrival,
                timestamp: header.timestamp,
            });
        }
        self.highest = self.highest.max(ext);
        self.packets.insert(
            ext,
            Entry {
                header,
                payload: payload.to_vec(),
            },
        );
        while self.packets.len() > self.capacity {
            if let Some((oldest, _)) = self.packets.pop_first() {
                self.stats.overflowed += 1;
                self.next = self.next.max(oldest + 1);
                if outcome == PushOutcome::Accepted {
                    outcome = PushOutcome::Overflow;
                }
            }
        }
        outcome
    }

    /// When a packet with RTP timestamp `ts` is due.
    fn playout_time(&self, ts: u32) -> Option<Instant> {
        let anchor = self.anchor?;
        let base = anchor.arrival + self.target;
        let diff = i64::from(ts.wrapping_sub(anchor.timestamp) as i32);
        let offset =
            Duration::from_nanos(diff.unsigned_abs() * 1_000_000_000 / u64::from(self.clock_rate));
        Some(if diff >= 0 {
            base.checked_add(offset).unwrap_or(base)
        } else {
            base.checked_sub(offset).unwrap_or(base)
        })
    }

    /// When the next item (packet or gap) becomes due, if anything is buffered.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (&first, entry) = self.packets.first_key_value()?;
        let missing = u32::try_from(first - self.next).unwrap_or(u32::MAX);
        // A missing packet is due when it would have been played.
        let ts = entry
            .header
            .timestamp
            .wrapping_sub(missing.wrapping_mul(self.ts_step));
        self.playout_time(ts)
    }

    /// The next packet or gap, if due at `now`; call until `None` on each tick.
    pub fn pop(&mut self, now: Instant) -> Option<Playout> {
        if self.next_deadline()? > now {
            return None;
        }
        self.playing = true;
        let first = *self.packets.first_key_value()?.0;
        if first == self.next {
            let entry = self.packets.remove(&first)?;
            self.next += 1;
            self.stats.played += 1;
            return Some(Playout::Packet {
                header: entry.header,
                payload: entry.payload,
            });
        }
        let count = u16::try_from(first - self.next).unwrap_or(u16::MAX);
        let sequence = self.next.rem_euclid(1 << 16) as u16;
        self.stats.lost += u64::from(count);
        self.next = first;
        Some(Playout::Gap { sequence, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(60);

    fn hdr(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc: 5,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Everything due by `now`.
    fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| jb.pop(now))
            .map(|p| match p {
                Playout::Packet { header, .. } => header.sequence.to_string(),
                Playout::Gap { sequence, count } => format!("gap {sequence}+{count}"),
            })
            .collect()
    }

    #[test]
    fn packets_wait_for_the_target_delay_then_come_out_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        assert_eq!(jb.pop(t0), None);
        assert_eq!(jb.next_deadline(), None);
        assert_eq!(jb.push(hdr(10, 0), b"a", t0), PushOutcome::Accepted);
        assert_eq!(
            jb.push(hdr(12, 320), b"c", ms(t0, 41)),
            PushOutcome::Accepted
        );
        assert_eq!(
            jb.push(hdr(11, 160), b"b", ms(t0, 45)),
            PushOutcome::Accepted
        );
        assert_eq!(jb.next_deadline(), Some(ms(t0, 60)));
        assert!(drain(&mut jb, ms(t0, 59)).is_empty());
        assert_eq!(
            jb.pop(ms(t0, 60)),
            Some(Playout::Packet {
                header: hdr(10, 0),
                payload: b"a".to_vec()
            })
        );
        assert!(drain(&mut jb, ms(t0, 79)).is_empty());
        assert_eq!(drain(&mut jb, ms(t0, 80)), ["11"]);
        assert_eq!(drain(&mut jb, ms(t0, 200)), ["12"]);
        assert!(jb.is_empty());
        assert_eq!(jb.stats().played, 3);
    }

    #[test]
    fn a_lost_packet_is_a_gap_at_its_own_playout_time() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        jb.push(hdr(1, 0), b"", t0);
        jb.push(hdr(4, 480), b"", ms(t0, 60));
        assert_eq!(drain(&mut jb, ms(t0, 60)), ["1"]);
        // 2 was due at 80 ms, 3 at 100 ms, 4 at 120 ms.
        assert_eq!(jb.next_deadline(), Some(ms(t0, 80)));
        assert_eq!(drain(&mut jb, ms(t0, 80)), ["gap 2+2"]);
        assert_eq!(drain(&mut jb, ms(t0, 119)), Vec::<String>::new());
        assert_eq!(drain(&mut jb, ms(t0, 120)), ["4"]);
        assert_eq!(jb.stats().lost, 2);
        // 3 turning up now is too late.
        assert_eq!(jb.push(hdr(3, 320), b"", ms(t0, 121)), PushOutcome::TooLate);
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        jb.push(hdr(1, 0), b"x", t0);
        assert_eq!(jb.push(hdr(1, 0), b"x", t0), PushOutcome::Duplicate);
        assert_eq!(drain(&mut jb, ms(t0, 60)), ["1"]);
        assert_eq!(jb.push(hdr(1, 0), b"x", ms(t0, 61)), PushOutcome::TooLate);
        assert_eq!(jb.stats().duplicates, 1);
    }

    #[test]
    fn an_earlier_packet_arriving_second_is_still_played_first() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        jb.push(hdr(8, 160), b"", t0);
        jb.push(hdr(7, 0), b"", ms(t0, 5));
        assert_eq!(drain(&mut jb, ms(t0, 500)), ["7", "8"]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        let seqs = [65_534u16, 0, 65_535, 1, 2];
        for (i, s) in seqs.iter().enumerate() {
            let n = u32::from(s.wrapping_sub(65_534));
            jb.push(hdr(*s, n * 160), b"", ms(t0, i as u64));
        }
        assert_eq!(
            drain(&mut jb, ms(t0, 1000)),
            ["65534", "65535", "0", "1", "2"]
        );
    }

    #[test]
    fn a_new_ssrc_resets_the_buffer() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        jb.push(hdr(100, 0), b"", t0);
        jb.push(hdr(101, 160), b"", t0);
        let other = RtpHeader {
            ssrc: 6,
            ..hdr(7, 99_999)
        };
        assert_eq!(jb.push(other, b"", ms(t0, 30)), PushOutcome::Reset);
        assert_eq!(jb.len(), 1);
        // The new stream plays a target delay after its own first packet.
        assert_eq!(jb.next_deadline(), Some(ms(t0, 90)));
        assert_eq!(drain(&mut jb, ms(t0, 90)), ["7"]);
        // A jump beyond MAX_DROPOUT within one SSRC resets too.
        let far = RtpHeader {
            ssrc: 6,
            ..hdr(20_000, 0)
        };
        assert_eq!(jb.push(far, b"", ms(t0, 100)), PushOutcome::Reset);
        assert_eq!(jb.stats().resets, 2);
    }

    #[test]
    fn the_buffer_is_bounded_and_drops_the_oldest() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 3);
        for s in 0..3u16 {
            assert_eq!(
                jb.push(hdr(s, u32::from(s) * 160), b"", t0),
                PushOutcome::Accepted
            );
        }
        assert_eq!(jb.push(hdr(3, 480), b"", t0), PushOutcome::Overflow);
        assert_eq!(jb.len(), 3);
        assert_eq!(jb.stats().overflowed, 1);
        assert_eq!(drain(&mut jb, ms(t0, 1000)), ["1", "2", "3"]);
    }

    #[test]
    fn after_an_underrun_the_target_delay_is_restored() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        jb.push(hdr(1, 0), b"", t0);
        assert_eq!(drain(&mut jb, ms(t0, 60)), ["1"]);
        // Packet 2 should have played at 80 ms but arrives at 200 ms.
        jb.push(hdr(2, 160), b"", ms(t0, 200));
        assert_eq!(jb.next_deadline(), Some(ms(t0, 260)));
        assert_eq!(drain(&mut jb, ms(t0, 260)), ["2"]);
    }

    #[test]
    fn jitter_within_the_target_is_absorbed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        // 20 ms packets arriving 0–50 ms late, some out of order.
        let late = [0u64, 50, 10, 40, 0, 30, 5, 45, 20, 0];
        for (i, l) in late.iter().enumerate() {
            let i = i as u64;
            jb.push(hdr(i as u16, 160 * i as u32), b"", ms(t0, 20 * i + l));
        }
        let mut played = Vec::new();
        for tick in 0..40u64 {
            played.extend(drain(&mut jb, ms(t0, 20 * tick)));
        }
        let expect: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(played, expect);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn reset_forgets_everything() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, TARGET, 50);
        jb.push(hdr(1, 0), b"", t0);
        jb.reset();
        assert!(jb.is_empty());
        assert_eq!(jb.push(hdr(50, 0), b"", t0), PushOutcome::Accepted);
        assert_eq!(drain(&mut jb, ms(t0, 60)), ["50"]);
    }
}
