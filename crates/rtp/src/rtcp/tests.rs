//! Tests of RTCP parsing and building (RFC 3550 §6.4–§6.6) and of the
//! reception statistics (A.1, A.3, A.8).

use std::time::{Duration, Instant};

use super::*;
use crate::error::RtcpError;

fn block(ssrc: u32, lost: i32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: 25,
        cumulative_lost: lost,
        highest_seq: 0x0001_0203,
        jitter: 42,
        last_sr: 0xDEAD_BEEF,
        delay_since_last_sr: 65_536,
    }
}

#[test]
fn parses_a_hand_written_sender_report() {
    #[rustfmt::skip]
    let data = [
        0x81, 200, 0x00, 0x0C,            // V=2, RC=1, SR, 12 words follow
        0x11, 0x22, 0x33, 0x44,           // sender SSRC
        0x83, 0xAA, 0x7E, 0x80, 0, 0, 0, 0, // NTP
        0x00, 0x00, 0x01, 0x40,           // RTP timestamp 320
        0x00, 0x00, 0x00, 0x02,           // packets
        0x00, 0x00, 0x01, 0x40,           // octets
        0x55, 0x66, 0x77, 0x88,           // report block: SSRC
        0x40, 0xFF, 0xFF, 0xFF,           // fraction 64/256, cumulative lost -1
        0x00, 0x01, 0x00, 0x05,           // extended highest seq
        0x00, 0x00, 0x00, 0x10,           // jitter
        0x12, 0x34, 0x56, 0x78,           // LSR
        0x00, 0x01, 0x00, 0x00,           // DLSR: 1 s
    ];
    let packets = parse_compound(&data).unwrap();
    let [RtcpPacket::SenderReport(sr)] = &packets[..] else {
        panic!("{packets:?}");
    };
    assert_eq!(sr.ssrc, 0x1122_3344);
    assert_eq!(sr.ntp_timestamp, 0x83AA_7E80_0000_0000);
    assert_eq!(
        (sr.rtp_timestamp, sr.packet_count, sr.octet_count),
        (320, 2, 320)
    );
    assert_eq!(
        sr.reports,
        [ReportBlock {
            ssrc: 0x5566_7788,
            fraction_lost: 64,
            cumulative_lost: -1,
            highest_seq: 0x0001_0005,
            jitter: 16,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65_536,
        }]
    );
}

#[test]
fn compound_packets_round_trip() {
    let packets = vec![
        RtcpPacket::SenderReport(SenderReport {
            ssrc: 1,
            ntp_timestamp: 0x0102_0304_0506_0708,
            rtp_timestamp: 9,
            packet_count: 10,
            octet_count: 1600,
            reports: vec![block(2, 100), block(3, -5)],
        }),
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![block(4, 0x7F_FFFF), block(5, -0x80_0000)],
        }),
        RtcpPacket::SourceDescription(vec![
            SdesChunk::cname(1, "switchboard@pbx.example.com"),
            SdesChunk {
                ssrc: 7,
                items: vec![
                    SdesItem {
                        kind: 2,
                        value: b"Desk 1001".to_vec(),
                    },
                    SdesItem {
                        kind: SDES_CNAME,
                        value: b"abc".to_vec(),
                    },
                ],
            },
            SdesChunk {
                ssrc: 8,
                items: vec![],
            },
        ]),
        RtcpPacket::Bye(Bye {
            sources: vec![1, 7],
            reason: Some(b"call ended".to_vec()),
        }),
        RtcpPacket::Bye(Bye::default()),
        RtcpPacket::Other {
            packet_type: PT_APP,
            count: 3,
            body: b"ssrcNAMEdata".to_vec(),
        },
        RtcpPacket::ReceiverReport(ReceiverReport::default()),
    ];
    let bytes = build_compound(&packets).unwrap();
    assert_eq!(bytes.len() % 4, 0);
    let parsed = parse_compound(&bytes).unwrap();
    assert_eq!(parsed, packets);
    let RtcpPacket::SourceDescription(chunks) = &parsed[2] else {
        panic!()
    };
    assert_eq!(chunks[0].cname_str(), Some("switchboard@pbx.example.com"));
    assert_eq!(chunks[1].cname_str(), Some("abc"));
    assert_eq!(chunks[2].cname_str(), None);
}

#[test]
fn an_empty_rr_is_eight_bytes() {
    let rr = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: 0xABCD,
        reports: vec![],
    });
    assert_eq!(
        build_compound(&[rr]).unwrap(),
        [0x80, 201, 0, 1, 0, 0, 0xAB, 0xCD]
    );
}

#[test]
fn padding_on_the_last_packet_is_stripped() {
    // BYE with one SSRC, P set, 4 bytes of padding.
    let data = [0xA1, 203, 0, 2, 0, 0, 0, 9, 0, 0, 0, 4];
    assert_eq!(
        parse_compound(&data).unwrap(),
        [RtcpPacket::Bye(Bye {
            sources: vec![9],
            reason: None
        })]
    );
}

#[test]
fn structural_garbage_is_a_typed_error() {
    assert_eq!(
        parse_compound(&[]),
        Err(RtcpError::TooShort { offset: 0, len: 0 })
    );
    assert_eq!(
        parse_compound(&[0x80, 201, 0]),
        Err(RtcpError::TooShort { offset: 0, len: 3 })
    );
    assert_eq!(
        parse_compound(&[0x40, 201, 0, 0]),
        Err(RtcpError::BadVersion {
            offset: 0,
            version: 1
        })
    );
    assert_eq!(
        parse_compound(&[0x80, 201, 0, 1, 0, 0]),
        Err(RtcpError::LengthOverrun {
            offset: 0,
            claimed: 8,
            available: 6
        })
    );
    // A good RR followed by a truncated header.
    let mut two = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
    two.extend_from_slice(&[0x80, 200]);
    assert_eq!(
        parse_compound(&two),
        Err(RtcpError::TooShort { offset: 8, len: 2 })
    );
}

#[test]
fn counts_beyond_the_body_are_errors() {
    // RR claiming one report block with none present.
    assert!(matches!(
        parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::BodyTooShort { kind: "RR", .. })
    ));
    // SR without sender info.
    assert!(matches!(
        parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::BodyTooShort { kind: "SR", .. })
    ));
    // BYE claiming two sources, one present.
    assert!(matches!(
        parse_compound(&[0x82, 203, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::BodyTooShort { kind: "BYE", .. })
    ));
    // BYE whose reason length runs past the packet.
    assert!(matches!(
        parse_compound(&[0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'a', b'b', b'c']),
        Err(RtcpError::BodyTooShort { kind: "BYE", .. })
    ));
    // SDES claiming two chunks, one present.
    assert!(matches!(
        parse_compound(&[0x82, 202, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::BodyTooShort { kind: "SDES", .. })
    ));
}

#[test]
fn unterminated_sdes_is_an_error() {
    // Item length runs past the packet.
    assert_eq!(
        parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b']),
        Err(RtcpError::SdesUnterminated { offset: 0 })
    );
    // Items fill the packet with no null item.
    assert_eq!(
        parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b']),
        Err(RtcpError::SdesUnterminated { offset: 0 })
    );
    // Item type with no length byte.
    assert_eq!(
        parse_compound(&[0x81, 202, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::SdesUnterminated { offset: 0 })
    );
}

#[test]
fn bad_padding_is_an_error() {
    // Padding count zero.
    assert_eq!(
        parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::BadPadding { offset: 0 })
    );
    // Padding count longer than the body.
    assert_eq!(
        parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 9]),
        Err(RtcpError::BadPadding { offset: 0 })
    );
    // Padding on a packet that is not the last.
    let data = [0xA0, 201, 0, 1, 0, 0, 0, 4, 0x80, 201, 0, 1, 0, 0, 0, 1];
    assert_eq!(
        parse_compound(&data),
        Err(RtcpError::BadPadding { offset: 0 })
    );
}

#[test]
fn building_out_of_range_fields_is_an_error_and_writes_nothing() {
    let mut out = vec![1, 2, 3];
    let rr = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: 1,
        reports: vec![block(1, 0); 32],
    });
    assert_eq!(rr.write(&mut out), Err(RtcpError::TooManyItems(32)));
    assert_eq!(out, [1, 2, 3]);
    let lost = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: 1,
        reports: vec![block(1, 0x80_0000)],
    });
    assert_eq!(
        lost.write(&mut out),
        Err(RtcpError::LostOutOfRange(0x80_0000))
    );
    let text = RtcpPacket::SourceDescription(vec![SdesChunk::cname(1, &"x".repeat(256))]);
    assert_eq!(text.write(&mut out), Err(RtcpError::TextTooLong(256)));
    let reason = RtcpPacket::Bye(Bye {
        sources: vec![],
        reason: Some(vec![b'x'; 300]),
    });
    assert_eq!(reason.write(&mut out), Err(RtcpError::TextTooLong(300)));
    let bye = RtcpPacket::Bye(Bye {
        sources: vec![0; 40],
        reason: None,
    });
    assert_eq!(bye.write(&mut out), Err(RtcpError::TooManyItems(40)));
    let app = RtcpPacket::Other {
        packet_type: PT_APP,
        count: 0,
        body: vec![0; 5],
    };
    assert_eq!(app.write(&mut out), Err(RtcpError::NotAligned(5)));
    let huge = RtcpPacket::Other {
        packet_type: PT_APP,
        count: 0,
        body: vec![0; 0x4_0000],
    };
    assert_eq!(
        huge.write(&mut out),
        Err(RtcpError::PacketTooLong(0x4_0004))
    );
    let count = RtcpPacket::Other {
        packet_type: PT_APP,
        count: 32,
        body: vec![],
    };
    assert_eq!(count.write(&mut out), Err(RtcpError::TooManyItems(32)));
    assert_eq!(out, [1, 2, 3]);
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

#[test]
fn an_in_order_stream_loses_nothing() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(77, 8000);
    assert_eq!(s.report_block(t0), None);
    // The first packet is on probation (A.1, MIN_SEQUENTIAL = 2).
    assert!(!s.on_packet(100, 0, t0));
    for i in 1..50u16 {
        assert!(s.on_packet(100 + i, 160 * u32::from(i), at(t0, 20 * u64::from(i))));
    }
    let b = s.report_block(at(t0, 1000)).unwrap();
    assert_eq!(b.ssrc, 77);
    assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 0));
    assert_eq!(b.highest_seq, 149);
    assert_eq!(b.jitter, 0, "constant transit time has no jitter");
    assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
    assert_eq!(s.received(), 49);
}

#[test]
fn loss_gives_fraction_per_interval_and_a_cumulative_count() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(1, 8000);
    s.on_packet(0, 0, t0);
    // 1..=100 with 2, 6, 10, ... 98 lost: 25 of 100.
    for seq in 1..=100u16 {
        if seq % 4 != 2 {
            s.on_packet(seq, 160 * u32::from(seq), at(t0, 20 * u64::from(seq)));
        }
    }
    let b = s.report_block(t0).unwrap();
    assert_eq!(b.cumulative_lost, 25);
    assert_eq!(b.fraction_lost, 64, "25% is 64/256");
    // Next interval: 10 more, none lost.
    for seq in 101..=110u16 {
        s.on_packet(seq, 160 * u32::from(seq), at(t0, 20 * u64::from(seq)));
    }
    let b = s.report_block(t0).unwrap();
    assert_eq!(
        (b.fraction_lost, b.cumulative_lost, b.highest_seq),
        (0, 25, 110)
    );
}

#[test]
fn sequence_wrap_counts_a_cycle() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(1, 8000);
    for (i, seq) in (65_530u16..=65_535).chain(0..10).enumerate() {
        s.on_packet(seq, 160 * i as u32, at(t0, 20 * i as u64));
    }
    let b = s.report_block(t0).unwrap();
    assert_eq!(b.highest_seq, (1 << 16) + 9);
    assert_eq!(b.cumulative_lost, 0);
}

#[test]
fn duplicates_and_reordering_do_not_move_the_highest() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(1, 8000);
    for seq in [10u16, 11, 12, 14, 13, 13, 15] {
        s.on_packet(seq, u32::from(seq) * 160, t0);
    }
    let b = s.report_block(t0).unwrap();
    assert_eq!(b.highest_seq, 15);
    // Expected 11..=15 is 5, received 6 (one duplicate): lost -1.
    assert_eq!(b.cumulative_lost, -1);
    assert_eq!(b.fraction_lost, 0);
}

#[test]
fn a_restart_is_accepted_after_two_packets_in_sequence() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(1, 8000);
    for seq in 0..5u16 {
        s.on_packet(seq, 0, t0);
    }
    assert!(!s.on_packet(40_000, 0, t0), "one far packet is ignored");
    assert!(s.on_packet(40_001, 0, t0), "the next in sequence restarts");
    let b = s.report_block(t0).unwrap();
    assert_eq!((b.highest_seq, b.cumulative_lost), (40_001, 0));
}

#[test]
fn jitter_follows_rfc3550_a8() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(1, 8000);
    // 20 ms packets whose arrival alternates between on time and 10 ms
    // late: |D| is 80 samples each time, and J converges to 80.
    for i in 0..400u64 {
        let late = if i % 2 == 1 { 10 } else { 0 };
        s.on_packet(i as u16, 160 * i as u32, at(t0, 20 * i + late));
    }
    let j = s.report_block(t0).unwrap().jitter;
    assert!((75..=80).contains(&j), "jitter {j}");
    assert_eq!(j, s.jitter());
}

#[test]
fn lsr_and_dlsr_come_from_the_last_sender_report() {
    let t0 = Instant::now();
    let mut s = ReceiverStats::new(1, 8000);
    s.on_packet(1, 0, t0);
    s.on_packet(2, 160, t0);
    s.on_sender_report(0x1111_2222_3333_4444, t0);
    let b = s.report_block(at(t0, 500)).unwrap();
    assert_eq!(b.last_sr, 0x2222_3333);
    assert_eq!(b.delay_since_last_sr, 32_768, "0.5 s in 1/65536 s");
}

#[test]
fn sender_stats_fill_a_sender_report() {
    let mut s = SenderStats::new(5);
    for _ in 0..3 {
        s.on_sent(160);
    }
    let sr = s.sender_report(7, 480, vec![block(9, 0)]);
    assert_eq!(
        (
            sr.ssrc,
            sr.ntp_timestamp,
            sr.rtp_timestamp,
            sr.packet_count,
            sr.octet_count
        ),
        (5, 7, 480, 3, 480)
    );
    assert_eq!(sr.reports.len(), 1);
}

#[test]
fn ntp_time_and_round_trip() {
    // 1970-01-01T00:00:00.5 is NTP second 2208988800 and half a second.
    let ntp = ntp_timestamp(Duration::from_millis(500));
    assert_eq!(ntp >> 32, 2_208_988_800);
    assert_eq!(ntp & 0xFFFF_FFFF, 0x8000_0000);
    // LSR at t, block sent after 1 s of delay, arrives at t + 1.25 s: 250 ms.
    let t = ntp_timestamp(Duration::from_secs(1_000));
    let b = ReportBlock {
        last_sr: ntp_middle32(t),
        delay_since_last_sr: 65_536,
        ..ReportBlock::default()
    };
    let arrival = ntp_timestamp(Duration::from_millis(1_001_250));
    let rtt = round_trip_time(&b, arrival).unwrap();
    assert!(rtt.abs_diff(Duration::from_millis(250)) < Duration::from_millis(1));
    assert_eq!(round_trip_time(&ReportBlock::default(), arrival), None);
    let early = ntp_timestamp(Duration::from_millis(1_000_500));
    assert_eq!(round_trip_time(&b, early), None, "DLSR larger than A - LSR");
}
