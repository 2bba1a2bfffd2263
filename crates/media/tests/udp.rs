//! The media engine against real UDP sockets on 127.0.0.1: test "phones"
//! are plain tokio sockets sending RTP built with the `rtp` crate, and the
//! assertions are about what they receive (payloads, samples, headers).
//!
//! Every test leases from its own port range below Linux's ephemeral
//! range, so tests running in parallel never share ports. Every wait is
//! bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use media::{Bridge, Echo, Latching, Leg, LegHandle, LegStats, PortPool, StreamParams};
use rtp::codec::g711;
use rtp::{Codec, Decoder, Encoder, PacketBuilder, RtpHeader, RtpPacket};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(3);

async fn phone() -> UdpSocket {
    UdpSocket::bind((LOCALHOST, 0)).await.unwrap()
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

/// A leg whose phone signals from 127.0.0.1 (where every test phone is).
fn leg(pool: &PortPool, params: StreamParams, remote: Option<SocketAddr>) -> Leg {
    Leg::new(pool.allocate(LOCALHOST).unwrap(), params, remote).with_signalling(Some(LOCALHOST))
}

fn header(pt: u8, seq: u16, ts: u32, ssrc: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
}

async fn send(from: &UdpSocket, to: SocketAddr, h: RtpHeader, payload: &[u8]) {
    let packet = PacketBuilder::new(h).payload(payload).build().unwrap();
    from.send_to(&packet, to).await.unwrap();
}

/// The next datagram, as (header, payload, source).
async fn recv(socket: &UdpSocket) -> (RtpHeader, Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (len, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("no RTP arrived in time")
        .unwrap();
    let packet = RtpPacket::parse(&buf[..len]).expect("not RTP");
    (packet.header(), packet.payload().to_vec(), from)
}

/// Asserts nothing arrives within a short time.
async fn silent(socket: &UdpSocket) {
    let mut buf = [0u8; 2048];
    let got = timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await;
    assert!(got.is_err(), "unexpected datagram: {got:?}");
}

/// Waits until the leg's counters satisfy `done`.
async fn wait_stats(handle: &LegHandle, done: impl Fn(&LegStats) -> bool) -> LegStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = handle.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters never got there: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// 20 ms of a 1 kHz tone at 8 kHz, starting at sample `start`.
fn tone(start: usize) -> Vec<i16> {
    (start..start + 160)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect()
}

fn ulaw(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    g711::encode_ulaw(pcm, &mut out);
    out
}

struct Call {
    phone_a: UdpSocket,
    phone_b: UdpSocket,
    a: LegHandle,
    b: LegHandle,
    a_port: SocketAddr,
    b_port: SocketAddr,
    bridge: Bridge,
}

/// Two phones, two legs whose SDP names the phones, a bridge.
async fn call(pool: &PortPool, pa: StreamParams, pb: StreamParams) -> Call {
    let (phone_a, phone_b) = (phone().await, phone().await);
    let a = leg(pool, pa, Some(addr(&phone_a)));
    let b = leg(pool, pb, Some(addr(&phone_b)));
    let (a_port, b_port) = (a.ports().rtp_addr(), b.ports().rtp_addr());
    let (ha, hb) = (a.handle(), b.handle());
    Call {
        phone_a,
        phone_b,
        a: ha,
        b: hb,
        a_port,
        b_port,
        bridge: Bridge::start(a, b),
    }
}

#[tokio::test]
async fn relay_carries_audio_both_ways_untouched() {
    let pool = PortPool::new(24000..=24019).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    assert!(!c.bridge.is_transcoding());

    for i in 0..3u16 {
        let payload = ulaw(&tone(usize::from(i) * 160));
        let sent = header(0, 1000 + i, 50_000 + 160 * u32::from(i), 0xAAAA);
        send(&c.phone_a, c.a_port, sent, &payload).await;
        let (got, got_payload, from) = recv(&c.phone_b).await;
        assert_eq!(from, c.b_port, "B hears the PBX's port, not A's");
        assert_eq!(got_payload, payload);
        assert_eq!(
            (got.payload_type, got.sequence, got.timestamp, got.ssrc),
            (0, sent.sequence, sent.timestamp, sent.ssrc)
        );
    }
    let payload = ulaw(&tone(999));
    send(&c.phone_b, c.b_port, header(0, 7, 9, 0xBBBB), &payload).await;
    let (got, got_payload, from) = recv(&c.phone_a).await;
    assert_eq!(from, c.a_port);
    assert_eq!(got_payload, payload);
    assert_eq!((got.sequence, got.timestamp, got.ssrc), (7, 9, 0xBBBB));

    assert_eq!(c.a.latched(), Some(addr(&c.phone_a)));
    assert_eq!(c.b.latched(), Some(addr(&c.phone_b)));
    let (a, b) = c.bridge.stop().await.unwrap();
    assert_eq!(a.handle().stats().rtp_received, 3);
    assert_eq!(b.handle().stats().rtp_sent, 3);
}

#[tokio::test]
async fn nat_phone_gets_audio_at_its_real_source() {
    let pool = PortPool::new(24020..=24039).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    // Phone A's SDP names an address it does not receive on (its private
    // address behind NAT); its RTP really comes from `phone_a`.
    let private = phone().await;
    let phone_a = phone().await;
    let phone_b = phone().await;
    let a = leg(&pool, pcmu, Some(addr(&private)));
    let b = leg(&pool, pcmu, Some(addr(&phone_b)));
    let (a_port, b_port, ha) = (a.ports().rtp_addr(), b.ports().rtp_addr(), a.handle());
    let _bridge = Bridge::start(a, b);

    send(&phone_a, a_port, header(0, 1, 160, 0xA), &[0xFF; 160]).await;
    recv(&phone_b).await;
    assert_eq!(ha.latched(), Some(addr(&phone_a)));

    send(&phone_b, b_port, header(0, 1, 160, 0xB), &[0x7F; 160]).await;
    let (got, payload, _) = recv(&phone_a).await;
    assert_eq!((got.ssrc, payload), (0xB, vec![0x7F; 160]));
    silent(&private).await;
}

#[tokio::test]
async fn third_party_flood_never_takes_a_latched_stream() {
    let pool = PortPool::new(24040..=24059).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    let attacker = phone().await;

    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[1; 160]).await;
    recv(&c.phone_b).await;

    for i in 0..200u16 {
        send(&attacker, c.a_port, header(0, i, 0, 0xBAD), &[9; 160]).await;
    }
    let stats = wait_stats(&c.a, |s| s.dropped_foreign >= 200).await;
    assert_eq!(stats.rtp_received, 1);

    send(&c.phone_a, c.a_port, header(0, 2, 320, 0xA), &[2; 160]).await;
    let (got, payload, _) = recv(&c.phone_b).await;
    assert_eq!((got.ssrc, got.sequence, payload), (0xA, 2, vec![2; 160]));
    silent(&c.phone_b).await;

    // B's audio still goes to the real phone, not to the attacker.
    send(&c.phone_b, c.b_port, header(0, 1, 160, 0xB), &[3; 160]).await;
    let (_, payload, _) = recv(&c.phone_a).await;
    assert_eq!(payload, vec![3; 160]);
    silent(&attacker).await;
    assert_eq!(c.a.latched(), Some(addr(&c.phone_a)));
}

#[tokio::test]
async fn sdp_only_latching_ignores_other_sources() {
    let pool = PortPool::new(24060..=24079).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let (trunk, phone_b, other) = (phone().await, phone().await, phone().await);
    let a = leg(&pool, pcmu, Some(addr(&trunk))).with_latching(Latching::SdpAddressOnly);
    let b = leg(&pool, pcmu, Some(addr(&phone_b)));
    let (a_port, ha) = (a.ports().rtp_addr(), a.handle());
    let _bridge = Bridge::start(a, b);

    send(&other, a_port, header(0, 1, 160, 0xC), &[1; 160]).await;
    wait_stats(&ha, |s| s.dropped_foreign == 1).await;
    assert_eq!(ha.latched(), None);
    send(&trunk, a_port, header(0, 1, 160, 0xD), &[2; 160]).await;
    let (got, _, _) = recv(&phone_b).await;
    assert_eq!(got.ssrc, 0xD);
    silent(&phone_b).await;
}

#[tokio::test]
async fn garbage_is_dropped_and_counted() {
    let pool = PortPool::new(24080..=24099).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    let stranger = phone().await;

    // Before latching: a valid RTP packet of a payload type nobody
    // negotiated does not latch.
    send(&stranger, c.a_port, header(99, 1, 0, 0x5), &[0; 20]).await;
    wait_stats(&c.a, |s| s.dropped_foreign == 1).await;
    assert_eq!(c.a.latched(), None);

    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        b"INVITE sip:bob@example.com SIP/2.0\r\n".to_vec(),
        // Version 1.
        {
            let mut p = PacketBuilder::new(header(0, 1, 0, 1))
                .payload(&[0; 10])
                .build()
                .unwrap();
            p[0] = (p[0] & 0x3F) | 0x40;
            p
        },
        // CSRC count running past the end.
        vec![0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
        // Padding longer than the packet.
        vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF],
    ];
    for g in &garbage {
        c.phone_a.send_to(g, c.a_port).await.unwrap();
    }
    // Oversize: a valid RTP header with 2000 bytes of payload.
    let big = PacketBuilder::new(header(0, 1, 0, 0xA))
        .payload(&[0; 2000])
        .build()
        .unwrap();
    c.phone_a.send_to(&big, c.a_port).await.unwrap();
    let stats = wait_stats(&c.a, |s| {
        s.dropped_malformed == garbage.len() as u64 && s.dropped_oversize == 1
    })
    .await;
    assert_eq!(stats.rtp_received, 0);
    assert_eq!(c.a.latched(), None);

    // The phone's real audio still latches and flows; an unknown payload
    // type from it is dropped.
    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[4; 160]).await;
    send(&c.phone_a, c.a_port, header(98, 2, 320, 0xA), &[5; 160]).await;
    send(&c.phone_a, c.a_port, header(0, 3, 480, 0xA), &[6; 160]).await;
    assert_eq!(recv(&c.phone_b).await.1, vec![4; 160]);
    assert_eq!(recv(&c.phone_b).await.1, vec![6; 160]);
    let stats = wait_stats(&c.a, |s| s.dropped_payload_type == 1).await;
    assert_eq!(stats.rtp_received, 2);
    silent(&c.phone_b).await;
}

#[tokio::test]
async fn payload_types_are_mapped_per_leg() {
    let pool = PortPool::new(24100..=24119).unwrap();
    // Same codec, numbered differently on each leg; telephone-event 101 on
    // A, 96 on B.
    let pa = StreamParams::new(Codec::Pcmu).with_telephone_event(101, 101);
    let pb = StreamParams::new(Codec::Pcmu)
        .with_payload_types(110, 110)
        .with_telephone_event(96, 96);
    let c = call(&pool, pa, pb).await;
    assert!(!c.bridge.is_transcoding());

    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[1; 160]).await;
    let (got, payload, _) = recv(&c.phone_b).await;
    assert_eq!((got.payload_type, payload), (110, vec![1; 160]));

    // RFC 4733 digit '5', end bit set, passes through with its payload.
    let event = [5, 0x80 | 10, 0x03, 0x20];
    send(&c.phone_a, c.a_port, header(101, 2, 320, 0xA), &event).await;
    let (got, payload, _) = recv(&c.phone_b).await;
    assert_eq!((got.payload_type, payload.as_slice()), (96, &event[..]));
    assert_eq!((got.sequence, got.timestamp), (2, 320));

    send(&c.phone_b, c.b_port, header(110, 1, 160, 0xB), &[2; 160]).await;
    let (got, _, _) = recv(&c.phone_a).await;
    assert_eq!(got.payload_type, 0);
    send(&c.phone_b, c.b_port, header(96, 2, 320, 0xB), &event).await;
    let (got, payload, _) = recv(&c.phone_a).await;
    assert_eq!((got.payload_type, payload.as_slice()), (101, &event[..]));
}

#[tokio::test]
async fn events_are_dropped_towards_a_leg_without_telephone_event() {
    let pool = PortPool::new(24120..=24139).unwrap();
    let pa = StreamParams::new(Codec::Pcmu).with_telephone_event(101, 101);
    let pb = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pa, pb).await;
    send(
        &c.phone_a,
        c.a_port,
        header(101, 1, 160, 0xA),
        &[5, 0x8A, 0, 160],
    )
    .await;
    wait_stats(&c.a, |s| s.dropped_payload_type == 1).await;
    silent(&c.phone_b).await;
}

#[tokio::test]
async fn a_new_source_continues_the_stream() {
    let pool = PortPool::new(24140..=24159).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    for i in 0..3u16 {
        send(
            &c.phone_a,
            c.a_port,
            header(0, 100 + i, 1600 + 160 * u32::from(i), 0xA),
            &[1; 160],
        )
        .await;
        recv(&c.phone_b).await;
    }
    // The phone restarts its stream (a new SSRC, numbers elsewhere).
    send(
        &c.phone_a,
        c.a_port,
        header(0, 40_000, 7, 0xF00D),
        &[2; 160],
    )
    .await;
    let (got, payload, _) = recv(&c.phone_b).await;
    assert_eq!(payload, vec![2; 160]);
    assert_eq!(got.ssrc, 0xA, "B keeps hearing one stream");
    assert_eq!(got.sequence, 103);
    assert!(got.marker, "a new source starts a talkspurt");
    assert!(got.timestamp.wrapping_sub(1600 + 320) >= 160);
}

#[tokio::test]
async fn sdp_change_moves_the_stream() {
    let pool = PortPool::new(24160..=24179).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[1; 160]).await;
    recv(&c.phone_b).await;
    // A re-INVITE moves A's media to another phone.
    let moved = phone().await;
    c.a.set_remote(Some(addr(&moved)));
    send(&c.phone_b, c.b_port, header(0, 1, 160, 0xB), &[2; 160]).await;
    let (_, payload, _) = recv(&moved).await;
    assert_eq!(payload, vec![2; 160]);
    assert_eq!(c.a.latched(), None);
    send(&moved, c.a_port, header(0, 9, 160, 0xC), &[3; 160]).await;
    assert_eq!(recv(&c.phone_b).await.1, vec![3; 160]);
    assert_eq!(c.a.latched(), Some(addr(&moved)));
    silent(&c.phone_a).await;
}

/// Samples within G.711's quantization error (about 1/16 of the
/// magnitude, plus a step near zero) of the originals.
fn close(got: &[i16], want: &[i16]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let err = (i32::from(*g) - i32::from(*w)).abs();
        assert!(err <= i32::from(w.unsigned_abs() / 8) + 40, "{g} vs {w}");
    }
}

#[tokio::test]
async fn pcmu_and_pcma_legs_are_transcoded() {
    let pool = PortPool::new(24180..=24199).unwrap();
    let c = call(
        &pool,
        StreamParams::new(Codec::Pcmu),
        StreamParams::new(Codec::Pcma),
    )
    .await;
    assert!(c.bridge.is_transcoding());
    let mut alaw = Decoder::new(Codec::Pcma);
    for i in 0..3usize {
        let pcm = tone(i * 160);
        send(
            &c.phone_a,
            c.a_port,
            header(0, i as u16, 160 * i as u32, 0xA),
            &ulaw(&pcm),
        )
        .await;
        let (got, payload, _) = recv(&c.phone_b).await;
        assert_eq!(got.payload_type, 8);
        assert_eq!(payload.len(), 160);
        let mut decoded = Vec::new();
        alaw.decode(&payload, &mut decoded).unwrap();
        close(&decoded, &pcm);
    }
    // And back: A-law from B arrives at A as µ-law.
    let pcm = tone(4000);
    let mut enc = Encoder::new(Codec::Pcma);
    let mut payload = Vec::new();
    enc.encode(&pcm, &mut payload).unwrap();
    send(&c.phone_b, c.b_port, header(8, 1, 160, 0xB), &payload).await;
    let (got, payload, _) = recv(&c.phone_a).await;
    assert_eq!(got.payload_type, 0);
    let mut decoded = Vec::new();
    Decoder::new(Codec::Pcmu)
        .decode(&payload, &mut decoded)
        .unwrap();
    close(&decoded, &pcm);
}

#[tokio::test]
async fn g722_and_pcmu_legs_are_transcoded() {
    let pool = PortPool::new(24200..=24219).unwrap();
    let c = call(
        &pool,
        StreamParams::new(Codec::G722),
        StreamParams::new(Codec::Pcmu),
    )
    .await;
    assert!(c.bridge.is_transcoding());
    // A 1 kHz tone at 16 kHz into G.722; PCMU out must carry the tone at
    // about the same level once the filters have settled.
    let mut enc = Encoder::new(Codec::G722);
    let mut out_pcm = Vec::new();
    let mut dec = Decoder::new(Codec::Pcmu);
    for i in 0..10u32 {
        let pcm: Vec<i16> = (i * 320..(i + 1) * 320)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 16000.0).sin())
                    as i16
            })
            .collect();
        let mut payload = Vec::new();
        enc.encode(&pcm, &mut payload).unwrap();
        send(
            &c.phone_a,
            c.a_port,
            header(9, i as u16, 160 * i, 0xA),
            &payload,
        )
        .await;
        let (got, payload, _) = recv(&c.phone_b).await;
        assert_eq!((got.payload_type, payload.len()), (0, 160));
        dec.decode(&payload, &mut out_pcm).unwrap();
    }
    let tail = &out_pcm[out_pcm.len() - 800..];
    let rms = (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
    let want = 8000.0 / 2f64.sqrt();
    assert!(
        (rms / want - 1.0).abs() < 0.25,
        "rms {rms}, want about {want}"
    );
}

#[tokio::test]
async fn echo_returns_the_samples_sent() {
    let pool = PortPool::new(24220..=24239).unwrap();
    let phone = phone().await;
    let params = StreamParams::new(Codec::Pcmu).with_telephone_event(101, 101);
    let leg = leg(&pool, params, Some(addr(&phone)));
    let port = leg.ports().rtp_addr();
    let echo = Echo::start(leg);
    let mut seen = Vec::new();
    for i in 0..5u16 {
        let payload = ulaw(&tone(usize::from(i) * 160));
        send(
            &phone,
            port,
            header(0, 500 + i, 8000 + 160 * u32::from(i), 0x1234),
            &payload,
        )
        .await;
        let (got, got_payload, from) = recv(&phone).await;
        assert_eq!(from, port);
        assert_eq!(got_payload, payload, "the same samples come back");
        assert_eq!(got.payload_type, 0);
        assert_ne!(got.ssrc, 0x1234, "echoed as our own stream");
        seen.push(got);
    }
    for w in seen.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc);
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
    }
    let leg = echo.stop().await.unwrap();
    assert_eq!(leg.handle().stats().rtp_sent, 5);
}

#[tokio::test]
async fn media_timeout_fires_only_after_silence() {
    let pool = PortPool::new(24240..=24259).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)));
    let port = leg.ports().rtp_addr();
    let handle = leg.handle();
    let timeout_after = Duration::from_millis(300);
    let media_timeout = handle.media_timeout(timeout_after);
    let _echo = Echo::start(leg);

    // Talking for 500 ms (longer than the timeout) keeps it from firing.
    let talking = async {
        for i in 0..25u16 {
            send(
                &phone,
                port,
                header(0, i, 160 * u32::from(i), 0x1),
                &[0xFF; 160],
            )
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = talking => {}
        silent_for = media_timeout.expired() => panic!("fired while RTP flowed ({silent_for:?})"),
    }
    assert!(handle.stats().rtp_received >= 20);
    // Then silence: it fires, after at least the configured time.
    let started = std::time::Instant::now();
    let silent_for = timeout(WAIT, media_timeout.expired())
        .await
        .expect("never fired");
    assert!(silent_for >= timeout_after);
    // Promptly (generous: the machine may be busy).
    assert!(started.elapsed() <= timeout_after + Duration::from_secs(1));
}

#[tokio::test]
async fn media_timeout_fires_for_a_leg_that_never_hears_anything() {
    let pool = PortPool::new(24260..=24279).unwrap();
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), None);
    let handle = leg.handle();
    let _echo = Echo::start(leg);
    let silent_for = timeout(
        WAIT,
        handle.media_timeout(Duration::from_millis(50)).expired(),
    )
    .await
    .expect("never fired");
    assert!(silent_for >= Duration::from_millis(50));
}

#[tokio::test]
async fn rtcp_is_terminated_and_checked() {
    let pool = PortPool::new(24280..=24299).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    let rtcp_port = SocketAddr::new(LOCALHOST, c.a_port.port() + 1);
    let rr = rtp::rtcp::build_compound(&[rtp::RtcpPacket::ReceiverReport(
        rtp::rtcp::ReceiverReport {
            ssrc: 0xA,
            reports: Vec::new(),
        },
    )])
    .unwrap();
    // From the phone's address (another port, as phones send RTCP).
    let phone_rtcp = phone().await;
    phone_rtcp.send_to(&rr, rtcp_port).await.unwrap();
    phone_rtcp.send_to(b"garbage", rtcp_port).await.unwrap();
    let stats = wait_stats(&c.a, |s| s.rtcp_received == 1 && s.rtcp_dropped == 1).await;
    assert_eq!(stats.rtp_received, 0);
    // Terminated: nothing reaches B's phone.
    silent(&c.phone_b).await;
}

#[tokio::test]
async fn legs_send_their_own_reports_and_bye() {
    let pool = PortPool::new(24300..=24319).unwrap();
    let phone = phone().await;
    let phone_rtcp = self::phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)))
        .with_rtcp_interval(Some(Duration::from_millis(50)));
    let port = leg.ports().rtp_addr();
    let rtcp_port = SocketAddr::new(LOCALHOST, port.port() + 1);
    let echo = Echo::start(leg);
    for i in 0..5u16 {
        send(
            &phone,
            port,
            header(0, i, 160 * u32::from(i), 0xFACE),
            &[0xFF; 160],
        )
        .await;
        recv(&phone).await;
    }
    // The phone's RTCP comes from another port of its address: the leg
    // latches it and reports there.
    let rr = rtp::rtcp::build_compound(&[rtp::RtcpPacket::ReceiverReport(
        rtp::rtcp::ReceiverReport {
            ssrc: 0xFACE,
            reports: Vec::new(),
        },
    )])
    .unwrap();
    phone_rtcp.send_to(&rr, rtcp_port).await.unwrap();

    let mut buf = [0u8; 2048];
    let sr = loop {
        let (len, from) = timeout(WAIT, phone_rtcp.recv_from(&mut buf))
            .await
            .expect("no RTCP report arrived")
            .unwrap();
        assert_eq!(from, rtcp_port);
        let packets = rtp::rtcp::parse_compound(&buf[..len]).unwrap();
        assert!(matches!(packets[1], rtp::RtcpPacket::SourceDescription(_)));
        if let rtp::RtcpPacket::SenderReport(sr) = &packets[0] {
            break sr.clone();
        }
    };
    assert_eq!((sr.packet_count, sr.octet_count), (5, 800));
    assert_eq!(sr.reports.len(), 1);
    assert_eq!(sr.reports[0].ssrc, 0xFACE);
    assert_eq!(sr.reports[0].cumulative_lost, 0);

    // Ending the leg says goodbye.
    drop(echo.stop().await.unwrap());
    let bye = loop {
        let (len, _) = timeout(WAIT, phone_rtcp.recv_from(&mut buf))
            .await
            .expect("no BYE arrived")
            .unwrap();
        let packets = rtp::rtcp::parse_compound(&buf[..len]).unwrap();
        if let Some(rtp::RtcpPacket::Bye(bye)) = packets.last() {
            break bye.clone();
        }
    };
    assert_eq!(bye.sources, [sr.ssrc]);
}

/// Every datagram a leg has read, whatever became of it.
fn seen(s: &LegStats) -> u64 {
    s.dropped_malformed
        + s.dropped_oversize
        + s.dropped_foreign
        + s.dropped_payload_type
        + s.rtcp_dropped
        + s.rtcp_received
        + s.rtp_received
}

#[tokio::test]
async fn random_datagrams_never_hurt_a_bridge() {
    let pool = PortPool::new(24320..=24339).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    let stranger = phone().await;
    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[1; 160]).await;
    recv(&c.phone_b).await;

    let rtcp_port = SocketAddr::new(LOCALHOST, c.a_port.port() + 1);
    for i in 0..2000u32 {
        let len = rand::random_range(0..1600);
        let mut datagram: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        // Half of them look like RTP version 2 (and some like RTCP).
        if i % 2 == 0
            && let Some(first) = datagram.first_mut()
        {
            *first = (*first & 0x3F) | 0x80;
        }
        let to = if i % 5 == 0 { rtcp_port } else { c.a_port };
        // Sending from the latched phone too: its garbage must be dropped
        // as well, and must not move the latch.
        let from = if i % 3 == 0 { &c.phone_a } else { &stranger };
        from.send_to(&datagram, to).await.unwrap();
        // In batches the leg has read, so the kernel drops none of them.
        if i % 50 == 49 {
            let sent = u64::from(i) + 2;
            wait_stats(&c.a, |s| seen(s) >= sent).await;
        }
    }
    assert_eq!(seen(&c.a.stats()), 2001);
    // Still latched on the phone, still relaying its audio.
    assert_eq!(c.a.latched(), Some(addr(&c.phone_a)));
    send(&c.phone_a, c.a_port, header(0, 2, 320, 0xA), &[2; 160]).await;
    // Whatever of the phone's own random datagrams parsed as PCMU went
    // through; the real packet arrives after them.
    let mut buf = [0u8; 2048];
    loop {
        let (len, _) = timeout(WAIT, c.phone_b.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let packet = RtpPacket::parse(&buf[..len]).expect("only RTP is relayed");
        // The phone's own datagrams that parse as PCMU are relayed, as
        // one continuous stream; nothing from the stranger is.
        assert_eq!(packet.header().ssrc, 0xA);
        if packet.payload() == [2; 160] {
            break;
        }
    }
}

#[tokio::test]
async fn digits_are_detected_once_and_passed_through() {
    let pool = PortPool::new(24340..=24359).unwrap();
    let pa = StreamParams::new(Codec::Pcmu).with_telephone_event(101, 101);
    let pb = StreamParams::new(Codec::Pcma).with_telephone_event(101, 101);
    let c = call(&pool, pa, pb).await;
    let mut digits = c.a.digits();
    // '5' then '#', each as a start, an update and three end packets
    // sharing one timestamp (RFC 4733 §2.5.1).
    let mut seq = 10u16;
    for (event, ts) in [(5u8, 8000u32), (11, 16_000)] {
        for (i, (end, duration)) in [
            (false, 160u16),
            (false, 320),
            (true, 480),
            (true, 480),
            (true, 480),
        ]
        .into_iter()
        .enumerate()
        {
            let payload = rtp::TelephoneEvent {
                event,
                end,
                volume: 10,
                duration,
            }
            .to_bytes()
            .unwrap();
            let mut h = header(101, seq, ts, 0xA);
            h.marker = i == 0;
            send(&c.phone_a, c.a_port, h, &payload).await;
            let (got, got_payload, _) = recv(&c.phone_b).await;
            assert_eq!(
                (got.payload_type, got_payload.as_slice()),
                (101, &payload[..])
            );
            seq += 1;
        }
    }
    let got: Vec<char> = vec![
        timeout(WAIT, digits.next())
            .await
            .unwrap()
            .unwrap()
            .as_char(),
        timeout(WAIT, digits.next())
            .await
            .unwrap()
            .unwrap()
            .as_char(),
    ];
    assert_eq!(got, ['5', '#']);
    assert!(
        timeout(Duration::from_millis(50), digits.next())
            .await
            .is_err()
    );
    // The leg gone, the subscription ends.
    drop(c.bridge.stop().await.unwrap());
    assert_eq!(timeout(WAIT, digits.next()).await.unwrap(), None);
    assert_eq!(c.a.digits().next().await, None);
}

/// Reads `n` digits from `digits` as text.
async fn read(digits: &mut media::Digits, n: usize) -> String {
    let mut out = String::new();
    for _ in 0..n {
        let digit = timeout(WAIT, digits.next()).await.unwrap().unwrap();
        out.push(digit.as_char());
    }
    out
}

fn push(handle: &LegHandle, text: &str) {
    for c in text.chars() {
        handle.push_digit(rtp::Digit::from_char(c).unwrap());
    }
}

#[tokio::test]
async fn each_digit_subscriber_reads_each_digit_once_and_a_laggard_skips_the_oldest() {
    let pool = PortPool::new(24440..=24443).unwrap();
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), None);
    let handle = leg.handle();
    // Nobody listens: dropped.
    push(&handle, "9");
    let mut early = handle.digits();
    push(&handle, "123");
    // A subscriber reads from its subscription on.
    let mut late = handle.digits();
    push(&handle, "4");
    assert_eq!(read(&mut early, 4).await, "1234");
    assert_eq!(read(&mut late, 1).await, "4");
    // Twenty unread digits: the oldest four are skipped.
    push(&handle, "0123456789*#ABCD0123");
    assert_eq!(read(&mut late, 16).await, "456789*#ABCD0123");
    assert!(
        timeout(Duration::from_millis(50), late.next())
            .await
            .is_err()
    );
    // A waiting subscriber is woken by the next digit.
    let waiter = tokio::spawn(async move { (late.next().await, late) });
    tokio::task::yield_now().await;
    push(&handle, "7");
    let (digit, late) = timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(digit.map(|d| d.as_char()), Some('7'));
    // The last subscriber gone, a new one starts afresh.
    drop((early, late));
    push(&handle, "5");
    let mut again = handle.digits();
    push(&handle, "6");
    assert_eq!(read(&mut again, 1).await, "6");
    // The leg gone: what was sent is still read, then the end.
    push(&handle, "8");
    let waiting = tokio::spawn(async move {
        let first = again.next().await;
        (first, again.next().await)
    });
    tokio::task::yield_now().await;
    drop(leg);
    let (first, end) = timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(first.map(|d| d.as_char()), Some('8'));
    assert_eq!(end, None);
    assert_eq!(handle.digits().next().await, None);
}

#[tokio::test]
async fn a_held_leg_receives_but_is_not_sent_to() {
    let pool = PortPool::new(24360..=24379).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    // Phone A puts the call on hold (a=sendonly): it may still send.
    c.a.set_sending(false);
    send(&c.phone_b, c.b_port, header(0, 1, 160, 0xB), &[1; 160]).await;
    wait_stats(&c.b, |s| s.rtp_received == 1).await;
    silent(&c.phone_a).await;
    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[2; 160]).await;
    assert_eq!(recv(&c.phone_b).await.1, vec![2; 160]);
    // Resumed.
    c.a.set_sending(true);
    send(&c.phone_b, c.b_port, header(0, 2, 320, 0xB), &[3; 160]).await;
    assert_eq!(recv(&c.phone_a).await.1, vec![3; 160]);
}

/// A host that is neither the phone's signalling IP nor its SDP address.
async fn stranger() -> UdpSocket {
    UdpSocket::bind((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
        .await
        .unwrap()
}

#[tokio::test]
async fn strict_legs_never_latch_onto_a_sprayer() {
    let pool = PortPool::new(24400..=24419).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let c = call(&pool, pcmu, pcmu).await;
    let sprayer = stranger().await;

    // Phone A sends nothing; the sprayer sends a well-formed, in-sequence
    // stream of the negotiated payload type, long past any probation.
    for seq in 0..40u16 {
        send(
            &sprayer,
            c.a_port,
            header(0, seq, u32::from(seq) * 160, 0x5),
            &[7; 160],
        )
        .await;
    }
    wait_stats(&c.a, |s| s.dropped_foreign == 40).await;
    assert_eq!(c.a.latched(), None);
    silent(&c.phone_b).await;

    // B's audio goes to A's SDP address, not to the sprayer.
    send(&c.phone_b, c.b_port, header(0, 1, 160, 0xB), &[3; 160]).await;
    let (_, payload, _) = recv(&c.phone_a).await;
    assert_eq!(payload, vec![3; 160]);
    silent(&sprayer).await;

    // Once the phone talks, it latches and is heard.
    send(&c.phone_a, c.a_port, header(0, 1, 160, 0xA), &[1; 160]).await;
    let (_, payload, _) = recv(&c.phone_b).await;
    assert_eq!(payload, vec![1; 160]);
    assert_eq!(c.a.latched(), Some(addr(&c.phone_a)));
}

#[tokio::test]
async fn learning_legs_move_to_a_new_source_only_after_probation_and_silence() {
    let pool = PortPool::new(24420..=24439).unwrap();
    let pcmu = StreamParams::new(Codec::Pcmu);
    let (phone_a, phone_b) = (phone().await, phone().await);
    let a = leg(&pool, pcmu, Some(addr(&phone_a))).with_latching(Latching::Learn);
    let b = leg(&pool, pcmu, Some(addr(&phone_b)));
    let (a_port, ha) = (a.ports().rtp_addr(), a.handle());
    let _bridge = Bridge::start(a, b);
    // Media from another host than the signalling (Learn's use case).
    let media_host = stranger().await;

    // Fewer packets than the probation: nothing latches or is relayed.
    for seq in 0..3u16 {
        send(&media_host, a_port, header(0, seq, 0, 0x9), &[1; 160]).await;
    }
    wait_stats(&ha, |s| s.dropped_foreign == 3).await;
    silent(&phone_b).await;
    assert_eq!(ha.latched(), None);
    // The fourth in sequence wins and is relayed.
    send(&media_host, a_port, header(0, 3, 480, 0x9), &[4; 160]).await;
    let (_, payload, _) = recv(&phone_b).await;
    assert_eq!(payload, vec![4; 160]);
    assert_eq!(ha.latched(), Some(addr(&media_host)));

    // A second stranger cannot take over while the source talks.
    let other = stranger().await;
    for seq in 0..10u16 {
        send(&media_host, a_port, header(0, 4 + seq, 0, 0x9), &[5; 160]).await;
        send(&other, a_port, header(0, seq, 0, 0x7), &[6; 160]).await;
    }
    for _ in 0..10 {
        let (_, payload, _) = recv(&phone_b).await;
        assert_eq!(payload, vec![5; 160]);
    }
    silent(&phone_b).await;
    assert_eq!(ha.latched(), Some(addr(&media_host)));
}

#[tokio::test]
async fn a_digit_sent_into_a_leg_is_one_event_in_its_stream() {
    let pool = PortPool::new(24460..=24479).unwrap();
    let pa = StreamParams::new(Codec::Pcmu);
    // B numbers telephone-event 96, A negotiated none.
    let pb = StreamParams::new(Codec::Pcmu).with_telephone_event(96, 96);
    let c = call(&pool, pa, pb).await;
    assert!(c.bridge.takes_events(media::bridge::End::B));
    assert!(!c.bridge.takes_events(media::bridge::End::A));
    let seven = rtp::Digit::from_char('7').unwrap();
    assert!(
        !c.bridge
            .send_digit(media::bridge::End::A, seven, Duration::from_millis(100)),
        "A takes no events: its digits go in signalling"
    );

    // A's audio reaches B, then the digit goes in B's stream.
    let payload = ulaw(&tone(0));
    send(&c.phone_a, c.a_port, header(0, 500, 8000, 0xA), &payload).await;
    let (audio, _, _) = recv(&c.phone_b).await;
    assert!(
        c.bridge
            .send_digit(media::bridge::End::B, seven, Duration::from_millis(100))
    );
    let mut receiver = rtp::DtmfReceiver::new();
    let mut events = Vec::new();
    let mut digits = Vec::new();
    let mut ends = 0;
    while ends < 3 {
        let (h, p, _) = recv(&c.phone_b).await;
        assert_eq!(h.payload_type, 96, "only the event while it plays");
        if let Some(d) = receiver.on_packet(&h, &p).unwrap() {
            digits.push(d.as_char());
        }
        if rtp::TelephoneEvent::parse(&p).unwrap().end {
            ends += 1;
        }
        if events.is_empty() {
            // Audio from A while the event plays is not sent over it.
            send(&c.phone_a, c.a_port, header(0, 501, 8160, 0xA), &payload).await;
        }
        events.push(h);
    }
    // Then A's audio again, in the same stream.
    send(&c.phone_a, c.a_port, header(0, 502, 8320, 0xA), &payload).await;
    let (after, _, _) = recv(&c.phone_b).await;
    assert_eq!(digits, ['7'], "one digit, once");
    let first = events[0];
    assert!(first.marker, "the event starts with the marker bit");
    assert_eq!(first.ssrc, audio.ssrc, "the same stream");
    assert_eq!(first.sequence, audio.sequence.wrapping_add(1));
    assert!(events.iter().all(|e| e.timestamp == first.timestamp));
    for pair in events.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
    }
    assert_eq!(after.payload_type, 0);
    assert_eq!(after.ssrc, audio.ssrc);
    assert_eq!(
        after.sequence,
        events.last().unwrap().sequence.wrapping_add(1)
    );
    assert!(
        after.timestamp.wrapping_sub(first.timestamp) >= 800,
        "audio resumes after the event's 100 ms: {} then {}",
        first.timestamp,
        after.timestamp
    );
}
