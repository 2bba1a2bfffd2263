//! Fuzz target for RTP packets (RFC 3550 §5.1) and the state machines that
//! eat them: arbitrary bytes are parsed; an accepted packet is rebuilt and
//! re-parsed, and goes through the jitter buffer, the stream rewriter, the
//! RFC 4733 receiver, the receiver statistics and every decoder.
//!
//! Properties: nothing panics; an accepted packet rebuilds to the same
//! header, CSRCs, extension and payload.
//!
//! Run (stable toolchain): `fuzz/run.sh rtp`; with nightly, from `fuzz/`:
//! `cargo +nightly fuzz run rtp corpus/rtp`

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtp::{
    Codec, Decoder, DtmfReceiver, JitterBuffer, PacketBuilder, ReceiverStats, Rewriter, RtpPacket,
    TelephoneEvent,
};

fuzz_target!(|data: &[u8]| {
    let _ = TelephoneEvent::parse(data);
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    let h = p.header();
    let csrcs: Vec<u32> = p.csrcs().collect();
    let mut b = PacketBuilder::new(h).csrcs(&csrcs).payload(p.payload());
    if let Some((id, ext)) = p.extension() {
        b = b.extension(id, ext);
    }
    let bytes = b.build().expect("an accepted packet rebuilds");
    let again = RtpPacket::parse(&bytes).expect("a rebuilt packet parses");
    assert_eq!(again.header(), h);
    assert_eq!(again.payload(), p.payload());
    assert_eq!(again.extension(), p.extension());
    assert!(again.csrcs().eq(csrcs.iter().copied()));

    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(8000, Duration::from_millis(60), 8);
    jb.push(h, p.payload(), t0);
    while jb.pop(t0 + Duration::from_secs(1)).is_some() {}
    let mut copy = data.to_vec();
    let _ = Rewriter::new(1, 8000, 0, 0).rewrite_in_place(&mut copy, t0);
    let _ = DtmfReceiver::new().on_packet(&h, p.payload());
    let mut stats = ReceiverStats::new(h.ssrc, 8000);
    stats.on_packet(h.sequence, h.timestamp, t0);
    stats.on_packet(h.sequence.wrapping_add(1), h.timestamp, t0);
    let _ = stats.report_block(t0);
    for codec in [Codec::Pcmu, Codec::Pcma, Codec::G722] {
        let mut pcm = Vec::new();
        Decoder::new(codec)
            .decode(p.payload(), &mut pcm)
            .expect("every payload decodes");
    }
});
