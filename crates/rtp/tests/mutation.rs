//! Deterministic mutation test of the RTP, RTCP and telephone-event parsers
//! and of the state machines that eat untrusted packets (RFC 3550 §5–§6,
//! RFC 4733 §2.3).
//!
//! A fixed-seed xorshift generator makes 50,000 inputs: plain random bytes,
//! and valid RTP / RTCP datagrams with bit flips, byte overwrites with
//! interesting values, truncation, extension and splicing. For every input
//! nothing panics; an accepted RTP packet rebuilds to the same fields; an
//! accepted RTCP compound rebuilds (or refuses with a typed error) and
//! re-parses to the same packets; and the jitter buffer, rewriter, DTMF
//! receiver, receiver statistics and decoders swallow it. A failure prints
//! the input.

use std::time::{Duration, Instant};

use rtp::rtcp::{self, Bye, ReceiverReport, SdesChunk, SenderReport};
use rtp::{
    Codec, Decoder, DtmfReceiver, JitterBuffer, PacketBuilder, ReceiverStats, ReportBlock,
    Rewriter, RtcpError, RtcpPacket, RtpHeader, RtpPacket, TelephoneEvent,
};

/// Inputs per run.
const ITERATIONS: usize = 50_000;

/// xorshift64* — tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

/// Byte values that matter to the RTP/RTCP grammar: versions, flag bits,
/// counts, RTCP packet types, lengths.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x03, 0x04, 0x0F, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
    0xBF, 0xC0, 0xFF, 200, 201, 202, 203, 204, 205, 206,
];

fn seeds() -> Vec<Vec<u8>> {
    let header = RtpHeader {
        marker: true,
        payload_type: 0,
        sequence: 65_535,
        timestamp: 0xFFFF_FF00,
        ssrc: 0x1234_5678,
    };
    let mut out = vec![
        PacketBuilder::new(header)
            .payload(&[0xFF; 160])
            .build()
            .unwrap(),
        PacketBuilder::new(RtpHeader {
            payload_type: 101,
            ..header
        })
        .payload(&[1, 0x8A, 0x03, 0x20])
        .build()
        .unwrap(),
        PacketBuilder::new(header)
            .csrcs(&[1, 2, 3])
            .extension(0xBEDE, &[0x10, 0xAA, 0, 0])
            .pad_to(4)
            .payload(&[9; 13])
            .build()
            .unwrap(),
    ];
    let block = ReportBlock {
        ssrc: 9,
        fraction_lost: 3,
        cumulative_lost: -2,
        highest_seq: 70_000,
        jitter: 12,
        last_sr: 5,
        delay_since_last_sr: 6,
    };
    out.push(
        rtcp::build_compound(&[
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 1,
                ntp_timestamp: 2,
                rtp_timestamp: 3,
                packet_count: 4,
                octet_count: 5,
                reports: vec![block],
            }),
            RtcpPacket::SourceDescription(vec![SdesChunk::cname(1, "pbx@example.com")]),
        ])
        .unwrap(),
    );
    out.push(
        rtcp::build_compound(&[
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 1,
                reports: vec![block, block],
            }),
            RtcpPacket::Bye(Bye {
                sources: vec![1, 2],
                reason: Some(b"bye".to_vec()),
            }),
            RtcpPacket::Other {
                packet_type: 204,
                count: 1,
                body: b"ssrcNAME".to_vec(),
            },
        ])
        .unwrap(),
    );
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(8) == 0 {
        let len = rng.below(80);
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut d = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                // The header bytes are where the structure is.
                let i = rng.below(d.len().min(16));
                d[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let n = rng.below(d.len() + 1);
                d.truncate(n);
            }
            3 => {
                for _ in 0..rng.below(9) {
                    d.push(rng.byte());
                }
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                d.extend_from_slice(&other[from..]);
            }
            _ if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.byte();
            }
            _ => {}
        }
    }
    d
}

fn check_rtp(data: &[u8]) {
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    let csrcs: Vec<u32> = p.csrcs().collect();
    let mut b = PacketBuilder::new(p.header())
        .csrcs(&csrcs)
        .payload(p.payload());
    if let Some((id, ext)) = p.extension() {
        b = b.extension(id, ext);
    }
    let bytes = b.build().expect("an accepted packet rebuilds");
    let again = RtpPacket::parse(&bytes).expect("a rebuilt packet parses");
    assert_eq!(again.header(), p.header());
    assert_eq!(again.payload(), p.payload());
    assert_eq!(again.extension(), p.extension());
    assert!(again.csrcs().eq(csrcs.iter().copied()));
}

fn check_rtcp(data: &[u8]) {
    let Ok(packets) = rtcp::parse_compound(data) else {
        return;
    };
    match rtcp::build_compound(&packets) {
        Ok(bytes) => {
            let again = rtcp::parse_compound(&bytes).expect("a rebuilt compound parses");
            assert_eq!(again, packets, "round trip changed the packets");
        }
        // An opaque body shortened by its padding is no longer whole words.
        Err(RtcpError::NotAligned(_)) => {}
        Err(e) => panic!("an accepted compound does not rebuild: {e}"),
    }
}

struct Machines {
    jitter: JitterBuffer,
    rewriter: Rewriter,
    dtmf: DtmfReceiver,
    stats: ReceiverStats,
    decoders: Vec<Decoder>,
    t0: Instant,
}

impl Machines {
    fn feed(&mut self, i: usize, data: &[u8]) {
        let now = self.t0 + Duration::from_millis(i as u64 * 7);
        if let Ok(p) = RtpPacket::parse(data) {
            let h = p.header();
            self.jitter.push(h, p.payload(), now);
            while self.jitter.pop(now).is_some() {}
            let mut copy = data.to_vec();
            let _ = self.rewriter.rewrite_in_place(&mut copy, now);
            let _ = self.dtmf.on_packet(&h, p.payload());
            self.stats.on_packet(h.sequence, h.timestamp, now);
            if i.is_multiple_of(64) {
                let _ = self.stats.report_block(now);
            }
            let mut pcm = Vec::new();
            for d in &mut self.decoders {
                pcm.clear();
                d.decode(p.payload(), &mut pcm).unwrap();
            }
        }
        let _ = TelephoneEvent::parse(data);
    }
}

#[test]
fn mutated_datagrams_never_panic() {
    let seeds = seeds();
    for s in &seeds {
        assert!(
            RtpPacket::parse(s).is_ok() || rtcp::parse_compound(s).is_ok(),
            "seed does not parse: {s:02x?}"
        );
    }
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut machines = Machines {
        jitter: JitterBuffer::new(8000, Duration::from_millis(60), 64),
        rewriter: Rewriter::new(7, 8000, 0, 0),
        dtmf: DtmfReceiver::new(),
        stats: ReceiverStats::new(0x1234_5678, 8000),
        decoders: vec![
            Decoder::new(Codec::Pcmu),
            Decoder::new(Codec::Pcma),
            Decoder::new(Codec::G722),
        ],
        t0: Instant::now(),
    };
    let (mut rtp_ok, mut rtcp_ok) = (0, 0);
    for i in 0..ITERATIONS {
        let data = mutate(&mut rng, &seeds);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_rtp(&data);
            check_rtcp(&data);
            machines.feed(i, &data);
        }));
        if result.is_err() {
            panic!("iteration {i} panicked on input {data:02x?}");
        }
        rtp_ok += usize::from(RtpPacket::parse(&data).is_ok());
        rtcp_ok += usize::from(rtcp::parse_compound(&data).is_ok());
    }
    eprintln!("{ITERATIONS} inputs: {rtp_ok} parsed as RTP, {rtcp_ok} as RTCP");
    // The mutations must reach the parsers' accepting paths, not only errors.
    assert!(rtp_ok > ITERATIONS / 10, "only {rtp_ok} RTP inputs parsed");
    assert!(
        rtcp_ok > ITERATIONS / 50,
        "only {rtcp_ok} RTCP inputs parsed"
    );
}
