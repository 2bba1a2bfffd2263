//! A leg driven directly with `Leg::recv` / `Leg::send_rtp` (as a player or
//! recorder will), against real UDP sockets on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use media::{Leg, PayloadKind, PortPool, StreamParams, leg::buffer};
use rtp::{Codec, PacketBuilder, RtpHeader, RtpPacket};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(3);

fn packet(pt: u8, seq: u16, ssrc: u32) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
    };
    PacketBuilder::new(header)
        .payload(&[0xD5; 160])
        .build()
        .unwrap()
}

async fn socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

#[tokio::test]
async fn recv_latches_and_send_follows_the_latch() {
    let pool = PortPool::new(25000..=25009).unwrap();
    let (sdp_socket, sdp_addr) = socket().await;
    let (nat, nat_addr) = socket().await;
    let (stranger, _) = socket().await;
    let params = StreamParams::new(Codec::Pcma).with_telephone_event(101, 101);
    let mut leg = Leg::new(pool.allocate(LOCALHOST).unwrap(), params, Some(sdp_addr))
        .with_signalling(Some(LOCALHOST));
    let port = leg.ports().rtp_addr();
    assert_eq!(leg.destination(), Some(sdp_addr));

    // Before latching, we send to the SDP address.
    assert!(leg.send_rtp(&packet(8, 1, 0x1)));
    let mut buf = [0u8; 2048];
    let (len, from) = timeout(WAIT, sdp_socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((len, from), (172, port));

    // The phone's RTP comes from elsewhere (NAT): the leg latches there.
    nat.send_to(&packet(101, 7, 0xCAFE), port).await.unwrap();
    let mut rx_buf = buffer();
    let rx = timeout(WAIT, leg.recv(&mut rx_buf)).await.unwrap();
    assert_eq!(rx.kind, PayloadKind::Event);
    assert_eq!(
        (rx.len, rx.header.ssrc, rx.header.sequence),
        (172, 0xCAFE, 7)
    );
    assert_eq!(leg.latched(), Some(nat_addr));
    assert_eq!(leg.destination(), Some(nat_addr));

    // A stranger's packets are skipped; the next one from the phone is
    // what recv returns.
    for i in 0..50 {
        stranger.send_to(&packet(8, i, 0xBAD), port).await.unwrap();
    }
    nat.send_to(&packet(8, 8, 0xCAFE), port).await.unwrap();
    let rx = timeout(WAIT, leg.recv(&mut rx_buf)).await.unwrap();
    assert_eq!((rx.kind, rx.header.sequence), (PayloadKind::Audio, 8));
    let parsed = RtpPacket::parse(&rx_buf[..rx.len]).unwrap();
    assert_eq!(parsed.payload(), &[0xD5; 160][..]);
    let stats = leg.handle().stats();
    assert_eq!((stats.dropped_foreign, stats.rtp_received), (50, 2));

    assert!(leg.send_rtp(&packet(8, 2, 0x1)));
    let (_, from) = timeout(WAIT, nat.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, port);

    // Relatch on request: the next valid packet from anywhere latches.
    leg.relatch();
    assert_eq!(leg.destination(), Some(sdp_addr));
    stranger.send_to(&packet(8, 1, 0x2), port).await.unwrap();
    timeout(WAIT, leg.recv(&mut rx_buf)).await.unwrap();
    assert_ne!(leg.latched(), Some(nat_addr));
}

#[tokio::test]
async fn a_leg_with_no_destination_drops_and_counts() {
    let pool = PortPool::new(25010..=25019).unwrap();
    let mut leg = Leg::new(
        pool.allocate(LOCALHOST).unwrap(),
        StreamParams::new(Codec::Pcmu),
        None,
    )
    .with_signalling(Some(LOCALHOST));
    assert!(!leg.send_rtp(&packet(0, 1, 1)));
    assert_eq!(leg.handle().stats().send_dropped, 1);
}

#[tokio::test]
async fn dropping_a_leg_returns_its_ports() {
    let pool = PortPool::new(25020..=25021).unwrap();
    let leg = Leg::new(
        pool.allocate(LOCALHOST).unwrap(),
        StreamParams::new(Codec::Pcmu),
        None,
    )
    .with_signalling(Some(LOCALHOST));
    assert!(pool.allocate(LOCALHOST).is_err());
    drop(leg);
    assert_eq!(pool.in_use(), 0);
    pool.allocate(LOCALHOST).unwrap();
}

#[tokio::test]
async fn media_timeout_fires_after_silence() {
    let pool = PortPool::new(25030..=25039).unwrap();
    let leg = Leg::new(
        pool.allocate(LOCALHOST).unwrap(),
        StreamParams::new(Codec::Pcmu),
        None,
    )
    .with_signalling(Some(LOCALHOST));
    let silent_for = timeout(
        WAIT,
        leg.handle()
            .media_timeout(Duration::from_millis(30))
            .expired(),
    )
    .await
    .unwrap();
    assert!(silent_for >= Duration::from_millis(30));
}

#[tokio::test]
async fn a_relatch_request_applies_to_the_very_next_packet() {
    let pool = PortPool::new(25040..=25049).unwrap();
    let (old, _) = socket().await;
    let (new, new_addr) = socket().await;
    let mut leg = Leg::new(
        pool.allocate(LOCALHOST).unwrap(),
        StreamParams::new(Codec::Pcmu),
        None,
    )
    .with_signalling(Some(LOCALHOST));
    let port = leg.ports().rtp_addr();
    let handle = leg.handle();
    let mut buf = buffer();
    old.send_to(&packet(0, 1, 1), port).await.unwrap();
    timeout(WAIT, leg.recv(&mut buf)).await.unwrap();
    // The request comes while the leg waits for its next packet.
    let waiting = tokio::spawn(async move {
        let rx = timeout(WAIT, leg.recv(&mut buf)).await.unwrap();
        (leg, rx)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    handle.relatch();
    new.send_to(&packet(0, 9, 2), port).await.unwrap();
    let (leg, rx) = waiting.await.unwrap();
    assert_eq!((rx.header.ssrc, leg.latched()), (2, Some(new_addr)));
    assert_eq!(handle.stats().dropped_foreign, 0);
}
