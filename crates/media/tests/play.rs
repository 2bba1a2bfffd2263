//! Player, listener and recorder against real UDP sockets on 127.0.0.1: a
//! test "phone" is a plain tokio socket receiving the player's RTP or
//! sending RTP built with the `rtp` crate to a recorder.
//!
//! Every test leases from its own port range (27000-27199), so tests
//! running in parallel never share ports. Every wait is bounded, and the
//! timing checks only say "not early" (frames are never sent before their
//! time) and "finished eventually", so a loaded machine cannot fail them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::{
    Echo, Leg, LegHandle, LegStats, Listener, Player, PortPool, Prompt, Recorder, StreamParams,
};
use rtp::codec::g711;
use rtp::{Codec, Decoder, Encoder, PacketBuilder, RtpHeader, RtpPacket, TelephoneEvent};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(5);

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

/// The next datagram, as (header, payload, source, arrival).
async fn recv(socket: &UdpSocket) -> (RtpHeader, Vec<u8>, SocketAddr, Instant) {
    let mut buf = [0u8; 2048];
    let (len, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("no RTP arrived in time")
        .unwrap();
    let at = Instant::now();
    let packet = RtpPacket::parse(&buf[..len]).expect("not RTP");
    (packet.header(), packet.payload().to_vec(), from, at)
}

/// Asserts nothing arrives within a short time.
async fn silent(socket: &UdpSocket) {
    let mut buf = [0u8; 2048];
    let got = timeout(Duration::from_millis(150), socket.recv_from(&mut buf)).await;
    assert!(got.is_err(), "unexpected datagram: {got:?}");
}

/// Waits until the leg's counters satisfy `done`.
async fn wait_stats(handle: &LegHandle, done: impl Fn(&LegStats) -> bool) -> LegStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = handle.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "counters never got there: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` samples of a 1 kHz tone at `rate` Hz, amplitude 8000.
fn tone(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect()
}

/// The frequency of a tone, from its zero crossings.
fn frequency(samples: &[i16], rate: u32) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / f64::from(rate))
}

/// Sends an RFC 4733 digit: a start, an update, three ends.
async fn send_digit(from: &UdpSocket, to: SocketAddr, event: u8, seq: &mut u16, ts: u32) {
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
        let payload = TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
        .unwrap();
        let mut h = header(101, *seq, ts, 0xD161);
        h.marker = i == 0;
        send(from, to, h, &payload).await;
        *seq = seq.wrapping_add(1);
    }
}

#[tokio::test]
async fn player_sends_a_prompt_as_paced_pcmu_frames() {
    let pool = PortPool::new(27000..=27009).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)));
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let samples = tone(8000, 1600);
    let prompt = Arc::new(Prompt::from_samples(8000, samples.clone()).unwrap());
    assert_eq!(prompt.duration(), Duration::from_millis(200));

    let start = Instant::now();
    let mut player = Player::start(leg, prompt);
    assert_eq!(player.frames(), 10);
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(recv(&phone).await);
    }
    for (k, (h, payload, from, at)) in got.iter().enumerate() {
        assert_eq!(*from, port);
        assert_eq!(h.payload_type, 0);
        assert_eq!(h.marker, k == 0, "marker on the first packet only");
        let mut want = Vec::new();
        g711::encode_ulaw(&samples[k * 160..(k + 1) * 160], &mut want);
        assert_eq!(payload, &want, "frame {k}");
        // Never early: frame k leaves k × 20 ms after the start at the
        // earliest (1 ms for timer rounding).
        let due = Duration::from_millis(20 * k as u64).saturating_sub(Duration::from_millis(1));
        assert!(at.duration_since(start) >= due, "frame {k} early");
    }
    for w in got.windows(2) {
        let (a, b) = (&w[0].0, &w[1].0);
        assert_eq!(b.ssrc, a.ssrc);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
    }
    timeout(WAIT, player.finished())
        .await
        .expect("never finished");
    // And again: it stays finished.
    timeout(WAIT, player.finished()).await.unwrap();
    silent(&phone).await;
    let leg = player.stop().await.unwrap();
    assert_eq!(handle.stats().rtp_sent, 10);
    assert_eq!(leg.latched(), None, "nothing was received");
}

#[tokio::test]
async fn player_resamples_an_8k_prompt_for_g722() {
    let pool = PortPool::new(27010..=27019).unwrap();
    let phone = phone().await;
    // The peer numbers G.722 dynamically.
    let params = StreamParams::new(Codec::G722).with_payload_types(109, 9);
    let leg = leg(&pool, params, Some(addr(&phone)));
    let prompt = Arc::new(Prompt::from_samples(8000, tone(8000, 25 * 160)).unwrap());
    let mut player = Player::start(leg, prompt);
    let mut decoder = Decoder::new(Codec::G722);
    let mut pcm = Vec::new();
    let mut last: Option<RtpHeader> = None;
    for _ in 0..25 {
        let (h, payload, _, _) = recv(&phone).await;
        assert_eq!((h.payload_type, payload.len()), (109, 160));
        if let Some(l) = last {
            assert_eq!(h.timestamp, l.timestamp.wrapping_add(160), "8000 Hz clock");
            assert_eq!(h.sequence, l.sequence.wrapping_add(1));
        }
        last = Some(h);
        decoder.decode(&payload, &mut pcm).unwrap();
    }
    assert_eq!(pcm.len(), 8000, "half a second at 16 kHz");
    let f = frequency(&pcm[800..7200], 16_000);
    assert!((f - 1000.0).abs() < 30.0, "{f} Hz");
    let peak = pcm[800..7200]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!((6000..10_000).contains(&peak), "peak {peak}");
    timeout(WAIT, player.finished()).await.unwrap();
    player.stop().await.unwrap();
}

#[tokio::test]
async fn player_keeps_receiving_and_its_leg_works_again_after_stop() {
    let pool = PortPool::new(27020..=27029).unwrap();
    let phone = phone().await;
    // No SDP address: the player's first packets have nowhere to go
    // until the phone's RTP latches the leg.
    let params = StreamParams::new(Codec::Pcma).with_telephone_event(101, 101);
    let leg = leg(&pool, params, None);
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let mut digits = handle.digits();
    let prompt = Arc::new(Prompt::from_samples(16_000, tone(16_000, 16_000 / 2)).unwrap());
    let mut player = Player::start(leg, prompt);
    assert_eq!(player.frames(), 25);

    send(&phone, port, header(8, 1, 0, 0xAB), &[0xD5; 160]).await;
    let mut seq = 2;
    send_digit(&phone, port, 7, &mut seq, 160).await;
    assert_eq!(
        timeout(WAIT, digits.next())
            .await
            .unwrap()
            .unwrap()
            .as_char(),
        '7'
    );
    let (h, payload, from, _) = recv(&phone).await;
    assert_eq!((h.payload_type, payload.len(), from), (8, 160, port));
    assert_eq!(handle.latched(), Some(addr(&phone)));

    // `finished` polled in a select! loop, cancelled by the tick each time.
    let mut tick = tokio::time::interval(Duration::from_millis(3));
    let mut polls = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::select! {
            () = player.finished() => break,
            _ = tick.tick() => polls += 1,
        }
        assert!(Instant::now() < deadline, "never finished");
    }
    assert!(polls > 1, "finished was polled and cancelled repeatedly");
    let stats = handle.stats();
    assert_eq!(stats.rtp_sent + stats.send_dropped, 25);
    assert_eq!(stats.rtp_received, 6);

    // Idle after the prompt: still receiving (digits), sending nothing.
    send_digit(&phone, port, 11, &mut seq, 800).await;
    assert_eq!(
        timeout(WAIT, digits.next())
            .await
            .unwrap()
            .unwrap()
            .as_char(),
        '#'
    );
    while timeout(Duration::from_millis(150), phone.recv_from(&mut [0; 2048]))
        .await
        .is_ok()
    {}
    assert_eq!(handle.stats().rtp_sent + handle.stats().send_dropped, 25);

    // The leg comes back latched, and an echo can drive it.
    let leg = player.stop().await.unwrap();
    assert_eq!(leg.latched(), Some(addr(&phone)));
    let echo = Echo::start(leg);
    send(&phone, port, header(8, 40, 8000, 0xAB), &[0x55; 160]).await;
    let (_, payload, from, _) = recv(&phone).await;
    assert_eq!((payload, from), (vec![0x55; 160], port));
    echo.stop().await.unwrap();
}

#[tokio::test]
async fn a_player_stops_mid_prompt() {
    let pool = PortPool::new(27030..=27039).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)));
    let handle = leg.handle();
    let prompt = Arc::new(Prompt::from_samples(8000, vec![100; 8000 * 10]).unwrap());
    let mut player = Player::start(leg, prompt);
    recv(&phone).await;
    assert!(
        timeout(Duration::from_millis(100), player.finished())
            .await
            .is_err()
    );
    let stopped = Instant::now();
    let leg = timeout(WAIT, player.stop()).await.unwrap().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(2));
    let sent = handle.stats().rtp_sent;
    assert!(sent < 500, "{sent}");
    drop(leg);
    assert_eq!(pool.in_use(), 0);
}

#[tokio::test]
async fn an_empty_prompt_finishes_at_once_and_sends_nothing() {
    let pool = PortPool::new(27080..=27089).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcma), Some(addr(&phone)));
    let prompt = Arc::new(Prompt::from_samples(8000, Vec::new()).unwrap());
    assert_eq!(prompt.duration(), Duration::ZERO);
    let mut player = Player::start(leg, prompt);
    assert_eq!(player.frames(), 0);
    timeout(WAIT, player.finished()).await.unwrap();
    silent(&phone).await;
    let leg = player.stop().await.unwrap();
    assert_eq!(leg.handle().stats().rtp_sent, 0);
}

#[tokio::test]
async fn listener_receives_digits_and_sends_nothing() {
    let pool = PortPool::new(27040..=27049).unwrap();
    let phone = phone().await;
    let params = StreamParams::new(Codec::Pcmu).with_telephone_event(101, 101);
    let leg = leg(&pool, params, Some(addr(&phone)));
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let mut digits = handle.digits();
    let listener = Listener::start(leg);
    for i in 0..5u16 {
        send(
            &phone,
            port,
            header(0, i, u32::from(i) * 160, 0x77),
            &[0xFF; 160],
        )
        .await;
    }
    let mut seq = 5;
    send_digit(&phone, port, 0, &mut seq, 800).await;
    assert_eq!(
        timeout(WAIT, digits.next())
            .await
            .unwrap()
            .unwrap()
            .as_char(),
        '0'
    );
    wait_stats(&handle, |s| s.rtp_received == 10).await;
    silent(&phone).await;
    let leg = listener.stop().await.unwrap();
    assert_eq!(leg.latched(), Some(addr(&phone)));
    assert_eq!(handle.stats().rtp_sent, 0);
}

/// Sends `frames` 20 ms PCMU packets of a 1 kHz tone from sequence
/// `seq0` and timestamp `ts0`, in `order` (indexes; missing ones are lost,
/// repeated ones duplicated).
async fn send_tone(phone: &UdpSocket, to: SocketAddr, seq0: u16, ts0: u32, order: &[usize]) {
    let pcm = tone(8000, 160 * (order.iter().max().unwrap() + 1));
    for &k in order {
        let mut payload = Vec::new();
        g711::encode_ulaw(&pcm[k * 160..(k + 1) * 160], &mut payload);
        let h = header(
            0,
            seq0.wrapping_add(k as u16),
            ts0.wrapping_add(160 * k as u32),
            0x5EC,
        );
        send(phone, to, h, &payload).await;
    }
}

/// Asserts `got` is the G.711 round trip of `want`.
fn close(got: &[i16], want: &[i16]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (i32::from(*g) - i32::from(*w)).abs() <= 260,
            "sample {i}: {g} vs {w}"
        );
    }
}

#[tokio::test]
async fn recorder_records_a_pcmu_tone_by_media_time() {
    let pool = PortPool::new(27050..=27059).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)));
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let recorder = Recorder::start(leg, Duration::from_secs(10));
    // A second of tone sent as fast as possible, timestamps wrapping.
    let order: Vec<usize> = (0..50).collect();
    send_tone(&phone, port, 65_530, u32::MAX - 1000, &order).await;
    wait_stats(&handle, |s| s.rtp_received == 50).await;
    let (leg, recording) = recorder.stop().await.unwrap();
    assert_eq!(recording.sample_rate, 8000);
    assert_eq!(recording.samples.len(), 8000);
    assert_eq!(recording.duration(), Duration::from_secs(1));
    close(&recording.samples, &tone(8000, 8000));
    let f = frequency(&recording.samples, 8000);
    assert!((f - 1000.0).abs() < 5.0, "{f} Hz");
    silent(&phone).await;
    assert_eq!(leg.handle().stats().rtp_sent, 0);
}

#[tokio::test]
async fn recorder_fills_loss_with_silence_and_undoes_reordering() {
    let pool = PortPool::new(27060..=27069).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)));
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let recorder = Recorder::start(leg, Duration::from_secs(10));
    // 10..15 lost, 21 before 20, 30 twice.
    let mut order: Vec<usize> = (0..50).filter(|k| !(10..15).contains(k)).collect();
    let at20 = order.iter().position(|&k| k == 20).unwrap();
    order.swap(at20, at20 + 1);
    order.insert(order.iter().position(|&k| k == 31).unwrap(), 30);
    send_tone(&phone, port, 100, 4000, &order).await;
    wait_stats(&handle, |s| s.rtp_received == order.len() as u64).await;
    let (_leg, recording) = recorder.stop().await.unwrap();
    assert_eq!(recording.samples.len(), 8000, "the loss keeps its length");
    let want = tone(8000, 8000);
    close(&recording.samples[..1600], &want[..1600]);
    assert!(recording.samples[1600..2400].iter().all(|&s| s == 0));
    close(&recording.samples[2400..], &want[2400..]);
}

#[tokio::test]
async fn recorder_finishes_at_max_and_records_g722_at_16k() {
    let pool = PortPool::new(27070..=27079).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::G722), Some(addr(&phone)));
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let mut recorder = Recorder::start(leg, Duration::from_millis(300));
    assert!(
        timeout(Duration::from_millis(50), recorder.finished())
            .await
            .is_err()
    );
    // Half a second of a 16 kHz tone: more than the recorder takes.
    let pcm = tone(16_000, 8000);
    let mut encoder = Encoder::new(Codec::G722);
    for k in 0..25u16 {
        let mut payload = Vec::new();
        let at = usize::from(k) * 320;
        encoder.encode(&pcm[at..at + 320], &mut payload).unwrap();
        let h = header(9, 7 + k, 1_000 + 160 * u32::from(k), 0x722);
        send(&phone, port, h, &payload).await;
    }
    timeout(WAIT, recorder.finished())
        .await
        .expect("never finished");
    // Still receiving once full.
    send(&phone, port, header(9, 40, 6000, 0x722), &[0; 160]).await;
    wait_stats(&handle, |s| s.rtp_received == 26).await;
    let (_leg, recording) = recorder.stop().await.unwrap();
    assert_eq!(recording.sample_rate, 16_000);
    assert_eq!(recording.duration(), Duration::from_millis(300));
    assert_eq!(recording.samples.len(), 4800);
    let f = frequency(&recording.samples[800..], 16_000);
    assert!((f - 1000.0).abs() < 30.0, "{f} Hz");
}

/// Issue 11: a sender whose timestamps jump (9 s each, inside the 10 s gap
/// that is filled with silence) cannot fill a recording faster than real
/// time. Before, 30 packets sent at once made a 261 s recording.
#[tokio::test]
async fn recorder_fills_timestamp_jumps_no_faster_than_real_time() {
    let pool = PortPool::new(27090..=27099).unwrap();
    let phone = phone().await;
    let leg = leg(&pool, StreamParams::new(Codec::Pcmu), Some(addr(&phone)));
    let (port, handle) = (leg.ports().rtp_addr(), leg.handle());
    let started = std::time::Instant::now();
    let recorder = Recorder::start(leg, Duration::from_secs(600));
    for k in 0..30u16 {
        let header = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: k,
            timestamp: u32::from(k) * 72_000,
            ssrc: 0x77,
        };
        let packet = PacketBuilder::new(header)
            .payload(&[0u8; 160])
            .build()
            .unwrap();
        phone.send_to(&packet, port).await.unwrap();
    }
    wait_stats(&handle, |s| s.rtp_received == 30).await;
    let (_leg, recording) = recorder.stop().await.unwrap();
    // Silence up to real time plus the slack, and the 30 packets' audio.
    let bound = started.elapsed() + media::recorder::FILL_SLACK + Duration::from_millis(30 * 20);
    assert!(
        recording.duration() <= bound,
        "{:?} recorded in {:?}",
        recording.duration(),
        started.elapsed()
    );
}
