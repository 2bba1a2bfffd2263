//! Reception and sending statistics for RTCP reports (RFC 3550 §6.4, A.1
//! sequence validation, A.3 loss, A.8 interarrival jitter); arrival times
//! are passed in.

use std::time::{Duration, Instant};

use super::{ReportBlock, SenderReport};

/// A source must send this many packets in sequence before it counts (A.1).
const MIN_SEQUENTIAL: u32 = 2;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What one receiver knows about one source: the fields of its report block.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    clock_rate: u32,
    started: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Reference for arrival times in timestamp units.
    epoch: Option<Instant>,
    transit: Option<u32>,
    /// Jitter scaled by 16, as in A.8.
    jitter: u32,
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    /// Statistics for source `ssrc` whose timestamps run at `clock_rate` Hz.
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        ReceiverStats {
            ssrc,
            clock_rate,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            epoch: None,
            transit: None,
            jitter: 0,
            last_sr: None,
        }
    }

    /// The source these statistics are about.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// A.1 `update_seq`: whether the packet counts.
    fn update_seq(&mut self, seq: u16) -> bool {
        if !self.started {
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                // Wrapped: one more cycle.
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: a restart if the next packet follows it.
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // Otherwise a duplicate or reordered packet: counted, max unchanged.
        self.received = self.received.wrapping_add(1);
        true
    }

    /// Records a packet with sequence number `seq` and timestamp `timestamp`
    /// that arrived at `arrival`; returns whether it counted as valid (A.1:
    /// not during probation nor an unconfirmed jump).
    pub fn on_packet(&mut self, seq: u16, timestamp: u32, arrival: Instant) -> bool {
        let valid = self.update_seq(seq);
        let epoch = *self.epoch.get_or_insert(arrival);
        let elapsed = arrival.saturating_duration_since(epoch).as_nanos();
        // Arrival in timestamp units, modulo 2^32 like the timestamps.
        let arrival_ts = (elapsed * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival_ts.wrapping_sub(timestamp);
        if valid && let Some(prev) = self.transit {
            let d = i64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            // A.8: J += (|D| - J) / 16, with J kept scaled by 16.
            let j = i64::from(self.jitter);
            self.jitter = (j + d - ((j + 8) >> 4)).clamp(0, i64::from(u32::MAX)) as u32;
        }
        self.transit = Some(transit);
        valid
    }

    /// Records a sender report from this source (its NTP timestamp) that arrived at `arrival`.
    pub fn on_sender_report(&mut self, ntp_timestamp: u64, arrival: Instant) {
        self.last_sr = Some((ntp_middle32(ntp_timestamp), arrival));
    }

    /// Packets received that counted (A.1), duplicates included.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The extended highest sequence number received (cycles and max).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u32 {
        self.extended_highest_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets expected minus received since the start (A.3), within RTCP's 24-bit range.
    pub fn cumulative_lost(&self) -> i32 {
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7F_FFFF) as i32
    }

    /// Interarrival jitter in timestamp units (A.8).
    pub fn jitter(&self) -> u32 {
        self.jitter >> 4
    }

    /// The report block for this source at `now`, which starts a new
    /// interval for the fraction lost (A.3); `None` until the source has
    /// sent a valid packet.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        if self.received == 0 && self.probation > 0 {
            return None;
        }
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, to_1_65536(d))
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// A duration in units of 1/65536 s, saturating.
fn to_1_65536(d: Duration) -> u32 {
    u32::try_from(d.as_nanos() * 65_536 / 1_000_000_000).unwrap_or(u32::MAX)
}

/// What a sender counts for its sender reports (§6.4.1).
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    ssrc: u32,
    packets: u32,
    octets: u32,
}

impl SenderStats {
    /// Counts for a stream sent as `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        SenderStats {
            ssrc,
            packets: 0,
            octets: 0,
        }
    }

    /// Records one RTP packet sent with `payload_len` payload octets
    /// (retransmitted RFC 4733 end packets should not be counted).
    pub fn on_sent(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        // Wraps like the 32-bit field it fills.
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// A sender report at wall-clock `ntp_timestamp`, which is `rtp_timestamp`
    /// in the stream's clock, carrying `reports`.
    pub fn sender_report(
        &self,
        ntp_timestamp: u64,
        rtp_timestamp: u32,
        reports: Vec<ReportBlock>,
    ) -> SenderReport {
        SenderReport {
            ssrc: self.ssrc,
            ntp_timestamp,
            rtp_timestamp,
            packet_count: self.packets,
            octet_count: self.octets,
            reports,
        }
    }
}

/// The 64-bit NTP timestamp (§4) of a time given as the duration since the Unix epoch.
pub fn ntp_timestamp(since_unix_epoch: Duration) -> u64 {
    let secs = since_unix_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    secs << 32 | frac
}

/// The middle 32 bits of an NTP timestamp, as in LSR (§6.4.1).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time to the source of `block` (§6.4.1: A − LSR − DLSR), given
/// the NTP time the block arrived; `None` when the block has no LSR or the
/// arithmetic goes negative (clock skew or garbage).
pub fn round_trip_time(block: &ReportBlock, arrival_ntp: u64) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let a = ntp_middle32(arrival_ntp);
    // Middle-32 NTP time wraps every 18 hours; A - LSR is modular.
    let rtt = a
        .wrapping_sub(block.last_sr)
        .checked_sub(block.delay_since_last_sr)?;
    Some(Duration::from_nanos(
        u64::from(rtt) * 1_000_000_000 / 65_536,
    ))
}
