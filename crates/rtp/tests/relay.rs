//! The relay's view across modules (RFC 3550 §5.1, A.1): a leg whose source
//! changes twice (phone → prompt → phone) goes through the [`Rewriter`], and
//! the far end's receiver statistics and jitter buffer see one continuous
//! stream — no loss, no reset, every packet played in order.

use std::time::{Duration, Instant};

use rtp::{JitterBuffer, Playout, PushOutcome, ReceiverStats, Rewriter, RtpHeader};

fn source(ssrc: u32, first_seq: u16, first_ts: u32, n: u16) -> Vec<RtpHeader> {
    (0..n)
        .map(|i| RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: first_seq.wrapping_add(i),
            timestamp: first_ts.wrapping_add(160 * u32::from(i)),
            ssrc,
        })
        .collect()
}

#[test]
fn the_far_end_sees_one_stream_across_source_changes() {
    let t0 = Instant::now();
    let mut input = source(0xA, 65_500, 1_000, 50);
    input.extend(source(0xB, 7, 0xFFFF_FF00, 100));
    input.extend(source(0xA, 14, 1_000 + 160 * 150, 50));

    let mut rewriter = Rewriter::new(0x5B, 8000, 65_535, 4_000_000_000);
    let mut stats = ReceiverStats::new(0x5B, 8000);
    let mut jb = JitterBuffer::new(8000, Duration::from_millis(40), 32);
    let mut played = Vec::new();
    for (i, h) in input.iter().enumerate() {
        let now = t0 + Duration::from_millis(20 * i as u64);
        let out = rewriter.rewrite(h, now).expect("nothing is dropped");
        assert_eq!(out.ssrc, 0x5B);
        stats.on_packet(out.sequence, out.timestamp, now);
        assert_ne!(jb.push(out, &[], now), PushOutcome::Reset);
        while let Some(p) = jb.pop(now) {
            played.push(p);
        }
    }
    let end = t0 + Duration::from_secs(10);
    while let Some(p) = jb.pop(end) {
        played.push(p);
    }

    let block = stats.report_block(end).unwrap();
    assert_eq!(block.cumulative_lost, 0);
    assert_eq!(block.fraction_lost, 0);
    // 200 packets from 65535 on: the first is A.1's probation packet, so
    // counting starts at 0, after the wrap, and ends at 198.
    assert_eq!(block.highest_seq, 198);
    assert_eq!(stats.received(), 199);
    assert!(block.jitter < 10, "jitter {}", block.jitter);

    assert_eq!(played.len(), 200);
    let mut expect = 65_535u16;
    for p in &played {
        let Playout::Packet { header, .. } = p else {
            panic!("gap in a continuous stream: {p:?}");
        };
        assert_eq!(header.sequence, expect);
        expect = expect.wrapping_add(1);
    }
    assert_eq!(jb.stats().resets, 0);
}
