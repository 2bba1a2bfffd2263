//! Criterion benchmarks of the per-packet hot paths of the media engine:
//! RTP parse and in-place rewrite (the relay), G.711 transcoding, G.722,
//! resampling and the jitter buffer (the decoding paths), RTCP parsing.
//!
//! `cargo bench -p rtp`; timings are for reading, never for pass/fail.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rtp::codec::g711;
use rtp::codec::resample::{Downsampler, Upsampler};
use rtp::rtcp::{self, ReceiverReport, SdesChunk};
use rtp::{
    Codec, Decoder, Encoder, JitterBuffer, PacketBuilder, ReportBlock, Rewriter, RtcpPacket,
    RtpHeader, RtpPacket,
};

fn header(seq: u16) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 0x1234_5678,
    }
}

fn speech() -> Vec<i16> {
    (0..320)
        .map(|i| (8000.0 * (i as f64 * 0.3).sin() + 2000.0 * (i as f64 * 1.7).sin()) as i16)
        .collect()
}

fn relay(c: &mut Criterion) {
    let packet = PacketBuilder::new(header(1))
        .payload(&[0xFF; 160])
        .build()
        .unwrap();
    c.bench_function("rtp parse 20 ms PCMU", |b| {
        b.iter(|| RtpPacket::parse(black_box(&packet)).unwrap().header())
    });
    let mut rewriter = Rewriter::new(1, 8000, 0, 0);
    let now = Instant::now();
    let mut buf = packet.clone();
    let mut seq = 0u16;
    c.bench_function("rtp rewrite in place", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            rewriter.rewrite_in_place(black_box(&mut buf), now).unwrap()
        })
    });
}

fn codecs(c: &mut Criterion) {
    let pcm = speech();
    let mut ulaw = Vec::new();
    g711::encode_ulaw(&pcm[..160], &mut ulaw);
    c.bench_function("PCMU -> PCMA 20 ms", |b| {
        b.iter(|| {
            black_box(&ulaw)
                .iter()
                .map(|&u| g711::ulaw_to_alaw(u))
                .collect::<Vec<u8>>()
        })
    });
    let mut enc = Encoder::new(Codec::G722);
    let mut out = Vec::with_capacity(160);
    c.bench_function("G.722 encode 20 ms", |b| {
        b.iter(|| {
            out.clear();
            enc.encode(black_box(&pcm), &mut out).unwrap();
        })
    });
    let mut dec = Decoder::new(Codec::G722);
    let payload = out.clone();
    let mut samples = Vec::with_capacity(320);
    c.bench_function("G.722 decode 20 ms", |b| {
        b.iter(|| {
            samples.clear();
            dec.decode(black_box(&payload), &mut samples).unwrap();
        })
    });
    let mut up = Upsampler::new();
    let mut down = Downsampler::new();
    let mut out = Vec::with_capacity(320);
    c.bench_function("upsample 8 -> 16 kHz 20 ms", |b| {
        b.iter(|| {
            out.clear();
            up.process(black_box(&pcm[..160]), &mut out);
        })
    });
    c.bench_function("downsample 16 -> 8 kHz 20 ms", |b| {
        b.iter(|| {
            out.clear();
            down.process(black_box(&pcm), &mut out);
        })
    });
}

fn jitter(c: &mut Criterion) {
    let t0 = Instant::now();
    let payload = [0xFFu8; 160];
    let mut jb = JitterBuffer::new(8000, Duration::from_millis(60), 64);
    let mut seq = 0u16;
    c.bench_function("jitter buffer push + pop", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let at = t0 + Duration::from_millis(u64::from(seq) * 20);
            jb.push(header(seq), black_box(&payload), at);
            jb.pop(at + Duration::from_millis(60))
        })
    });
}

fn control(c: &mut Criterion) {
    let compound = rtcp::build_compound(&[
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock::default()],
        }),
        RtcpPacket::SourceDescription(vec![SdesChunk::cname(1, "pbx@example.com")]),
    ])
    .unwrap();
    c.bench_function("rtcp parse RR + SDES", |b| {
        b.iter(|| rtcp::parse_compound(black_box(&compound)).unwrap())
    });
}

criterion_group!(benches, relay, codecs, jitter, control);
criterion_main!(benches);
