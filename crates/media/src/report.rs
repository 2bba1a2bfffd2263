//! RTCP for the streams a leg terminates (RFC 3550 §6): reception and
//! sending statistics, the report interval (§6.2, the 5 s minimum
//! randomized by ±50 %, §6.3.1), SR or RR compounds with an SDES CNAME
//! (§6.1, §6.4, §6.5; a random CNAME per leg as RFC 7022 §4.2 suggests),
//! and BYE when the leg closes (§6.6).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtp::rtcp::{
    Bye, ReceiverReport, ReceiverStats, RtcpPacket, SdesChunk, SenderStats, build_compound,
    ntp_timestamp,
};
use rtp::{RtpHeader, RtpPacket};

/// The default report interval (RFC 3550 §6.2's minimum).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// `base` randomized to 0.5–1.5 times itself (§6.3.1).
pub(crate) fn randomized(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.5..1.5))
}

/// What one leg knows for its reports.
#[derive(Debug)]
pub(crate) struct Reporter {
    /// Our SSRC while we have sent nothing (an RR needs one).
    own_ssrc: u32,
    /// The random part of our CNAME (RFC 3550 §6.5.1), written out only
    /// when a report is built: a leg lives for a whole call, and the text
    /// would cost it a string.
    cname: u64,
    clock_rate: u32,
    received: Option<ReceiverStats>,
    sent: Option<Sent>,
}

#[derive(Debug)]
struct Sent {
    stats: SenderStats,
    ssrc: u32,
    /// Timestamp of the newest packet sent, and when.
    timestamp: u32,
    at: Instant,
}

impl Reporter {
    pub(crate) fn new(clock_rate: u32) -> Reporter {
        Reporter {
            own_ssrc: rand::random(),
            cname: rand::random(),
            clock_rate,
            received: None,
            sent: None,
        }
    }

    /// Our CNAME: the same text in every report of the leg.
    fn cname(&self) -> String {
        format!("{:016x}@switchboard", self.cname)
    }

    pub(crate) fn on_received(&mut self, header: &RtpHeader, now: Instant) {
        let stats = match &mut self.received {
            Some(stats) if stats.ssrc() == header.ssrc => stats,
            slot => slot.insert(ReceiverStats::new(header.ssrc, self.clock_rate)),
        };
        stats.on_packet(header.sequence, header.timestamp, now);
    }

    pub(crate) fn on_sent(&mut self, packet: &[u8], now: Instant) {
        let Ok(packet) = RtpPacket::parse(packet) else {
            return;
        };
        let header = packet.header();
        let sent = match &mut self.sent {
            Some(sent) if sent.ssrc == header.ssrc => sent,
            slot => slot.insert(Sent {
                stats: SenderStats::new(header.ssrc),
                ssrc: header.ssrc,
                timestamp: header.timestamp,
                at: now,
            }),
        };
        sent.stats.on_sent(packet.payload().len());
        if (header.timestamp.wrapping_sub(sent.timestamp) as i32) >= 0 {
            sent.timestamp = header.timestamp;
            sent.at = now;
        }
    }

    /// Takes in a compound the peer sent: its SR's timestamp, for our
    /// report blocks' LSR/DLSR.
    pub(crate) fn on_rtcp(&mut self, packets: &[RtcpPacket], now: Instant) {
        for packet in packets {
            if let (RtcpPacket::SenderReport(sr), Some(stats)) = (packet, &mut self.received)
                && sr.ssrc == stats.ssrc()
            {
                stats.on_sender_report(sr.ntp_timestamp, now);
            }
        }
    }

    /// The SSRC our reports carry.
    fn ssrc(&self) -> u32 {
        self.sent.as_ref().map_or(self.own_ssrc, |s| s.ssrc)
    }

    /// A report compound for now: SR when we have sent RTP, else RR; with
    /// a report block when we have received; and our CNAME.
    pub(crate) fn report(&mut self, now: Instant) -> Option<Vec<u8>> {
        let blocks: Vec<_> = self
            .received
            .as_mut()
            .and_then(|stats| stats.report_block(now))
            .into_iter()
            .collect();
        let first = match &self.sent {
            Some(sent) => {
                let since_unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let elapsed = now.saturating_duration_since(sent.at);
                let ticks = elapsed.as_secs_f64() * f64::from(self.clock_rate);
                // Saturating float-to-int cast; the RTP clock wraps anyway.
                let rtp_timestamp = sent.timestamp.wrapping_add(ticks as u32);
                RtcpPacket::SenderReport(sent.stats.sender_report(
                    ntp_timestamp(since_unix),
                    rtp_timestamp,
                    blocks,
                ))
            }
            None => RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.own_ssrc,
                reports: blocks,
            }),
        };
        let sdes =
            RtcpPacket::SourceDescription(vec![SdesChunk::cname(self.ssrc(), &self.cname())]);
        build_compound(&[first, sdes]).ok()
    }

    /// A BYE compound (an empty RR, our CNAME, BYE), when there was a
    /// stream to end.
    pub(crate) fn bye(&self) -> Option<Vec<u8>> {
        if self.sent.is_none() && self.received.is_none() {
            return None;
        }
        let ssrc = self.ssrc();
        build_compound(&[
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc,
                reports: Vec::new(),
            }),
            RtcpPacket::SourceDescription(vec![SdesChunk::cname(ssrc, &self.cname())]),
            RtcpPacket::Bye(Bye {
                sources: vec![ssrc],
                reason: None,
            }),
        ])
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp::PacketBuilder;
    use rtp::rtcp::parse_compound;

    fn header(seq: u16, ssrc: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        }
    }

    #[test]
    fn receiver_only_sends_rr_with_a_block_and_cname() {
        let mut r = Reporter::new(8000);
        let t0 = Instant::now();
        for seq in 0..10 {
            r.on_received(
                &header(seq, 0xA),
                t0 + Duration::from_millis(20 * u64::from(seq)),
            );
        }
        let packets = parse_compound(&r.report(t0 + Duration::from_secs(1)).unwrap()).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!("{packets:?}");
        };
        assert_eq!(rr.reports.len(), 1);
        assert_eq!(rr.reports[0].ssrc, 0xA);
        assert_eq!(rr.reports[0].cumulative_lost, 0);
        let RtcpPacket::SourceDescription(chunks) = &packets[1] else {
            panic!("{packets:?}");
        };
        assert_eq!(chunks[0].ssrc, rr.ssrc);
        assert!(chunks[0].cname_str().unwrap().ends_with("@switchboard"));
        // The same CNAME in every report (RFC 3550 §6.5.1: it binds the
        // leg's SSRCs), and in its BYE.
        let cname = chunks[0].cname_str().unwrap().to_owned();
        let later = parse_compound(&r.report(t0 + Duration::from_secs(6)).unwrap()).unwrap();
        let bye = parse_compound(&r.bye().unwrap()).unwrap();
        for packets in [later, bye] {
            let sdes = packets.iter().find_map(|p| match p {
                RtcpPacket::SourceDescription(chunks) => chunks[0].cname_str(),
                _ => None,
            });
            assert_eq!(sdes, Some(cname.as_str()));
        }
    }

    #[test]
    fn sender_sends_sr_counting_what_went_out() {
        let mut r = Reporter::new(8000);
        let t0 = Instant::now();
        for seq in 0..5 {
            let p = PacketBuilder::new(header(seq, 0xB))
                .payload(&[0; 160])
                .build()
                .unwrap();
            r.on_sent(&p, t0);
        }
        let packets = parse_compound(&r.report(t0 + Duration::from_millis(100)).unwrap()).unwrap();
        let RtcpPacket::SenderReport(sr) = &packets[0] else {
            panic!("{packets:?}");
        };
        assert_eq!((sr.ssrc, sr.packet_count, sr.octet_count), (0xB, 5, 800));
        // The newest timestamp (640) moved on by 100 ms at 8 kHz.
        assert_eq!(sr.rtp_timestamp, 640 + 800);
        let bye = parse_compound(&r.bye().unwrap()).unwrap();
        assert!(matches!(&bye[2], RtcpPacket::Bye(b) if b.sources == [0xB]));
    }

    #[test]
    fn nothing_to_say_goodbye_to() {
        assert!(Reporter::new(8000).bye().is_none());
    }

    #[test]
    fn interval_is_randomized_around_its_base() {
        for _ in 0..100 {
            let d = randomized(DEFAULT_INTERVAL);
            assert!(d >= Duration::from_millis(2500) && d <= Duration::from_millis(7500));
        }
    }
}
