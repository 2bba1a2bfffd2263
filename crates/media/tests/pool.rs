//! The RTP port pool against real sockets: pairs are bound, ports held by
//! another program are skipped, exhaustion is an error, dropped pairs
//! come back; released pairs are kept bound, handed out again only after
//! their quarantine, and never with the previous call's late packets.
//!
//! Each test uses its own range below Linux's ephemeral range
//! (32768–60999), so tests running in parallel and sockets bound to port 0
//! do not take each other's ports.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use media::{Error, Leg, PortPool, StreamParams, leg::buffer};
use rtp::{Codec, PacketBuilder, RtpHeader};
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn pair_is_even_rtp_and_odd_rtcp_both_bound() {
    let pool = PortPool::new(23100..=23109).unwrap();
    let pair = pool.allocate(LOCALHOST).unwrap();
    assert_eq!(pair.rtp_port() % 2, 0);
    assert_eq!(pair.rtcp_port(), pair.rtp_port() + 1);
    assert!((23100..=23109).contains(&pair.rtp_port()));
    // Both ports really are taken.
    assert!(std::net::UdpSocket::bind((LOCALHOST, pair.rtp_port())).is_err());
    assert!(std::net::UdpSocket::bind((LOCALHOST, pair.rtcp_port())).is_err());
    assert_eq!(pool.in_use(), 1);
}

#[tokio::test]
async fn exhaustion_is_an_error_and_a_dropped_pair_is_reused() {
    let pool = PortPool::new(23200..=23205).unwrap();
    assert_eq!(pool.capacity(), 3);
    let mut pairs: Vec<_> = (0..3).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
    let mut ports: Vec<u16> = pairs.iter().map(|p| p.rtp_port()).collect();
    ports.sort_unstable();
    assert_eq!(ports, [23200, 23202, 23204]);
    match pool.allocate(LOCALHOST) {
        Err(Error::Exhausted { leased, pairs, .. }) => assert_eq!((leased, pairs), (3, 3)),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    let freed = pairs.remove(1);
    let freed_port = freed.rtp_port();
    drop(freed);
    assert_eq!(pool.in_use(), 2);
    let again = pool.allocate(LOCALHOST).unwrap();
    assert_eq!(again.rtp_port(), freed_port);
    assert_eq!(pool.in_use(), 3);
}

#[tokio::test]
async fn ports_held_by_another_program_are_skipped() {
    let pool = PortPool::new(23300..=23305).unwrap();
    // Someone else holds 23300's RTCP port and 23304's RTP port.
    let _squatter_a = std::net::UdpSocket::bind((LOCALHOST, 23301)).unwrap();
    let _squatter_b = std::net::UdpSocket::bind((LOCALHOST, 23304)).unwrap();
    let pair = pool.allocate(LOCALHOST).unwrap();
    assert_eq!(pair.rtp_port(), 23302);
    // 23300's RTP port was not left bound by the failed attempt.
    assert!(std::net::UdpSocket::bind((LOCALHOST, 23300)).is_ok());
    assert!(matches!(
        pool.allocate(LOCALHOST),
        Err(Error::Exhausted {
            leased: 1,
            pairs: 3,
            ..
        })
    ));
}

#[tokio::test]
async fn a_freed_pair_is_not_leased_again_at_once() {
    let pool = PortPool::new(23400..=23405).unwrap();
    let mut last = pool.allocate(LOCALHOST).unwrap().rtp_port();
    for _ in 0..30 {
        // Dropped at once, but the next lease takes another pair.
        let next = pool.allocate(LOCALHOST).unwrap().rtp_port();
        assert_ne!(next, last);
        last = next;
    }
    // With every other pair leased, a cooling one is still handed out.
    let held: Vec<_> = (0..2).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
    let free = [23400, 23402, 23404]
        .into_iter()
        .find(|p| held.iter().all(|h| h.rtp_port() != *p))
        .unwrap();
    assert_eq!(pool.allocate(LOCALHOST).unwrap().rtp_port(), free);
}

#[tokio::test]
async fn binding_a_foreign_address_is_a_socket_error() {
    let pool = PortPool::new(23500..=23501).unwrap();
    // TEST-NET-1 is not an address of this host.
    let err = pool.allocate(IpAddr::from([192, 0, 2, 1])).unwrap_err();
    assert!(matches!(err, Error::Socket { .. }), "{err:?}");
    assert_eq!(pool.in_use(), 0);
}

fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
    };
    PacketBuilder::new(header)
        .payload(&[0xFF; 160])
        .build()
        .unwrap()
}

/// Whether `port` on 127.0.0.1 can be bound now (nobody holds it).
fn bindable(port: u16) -> bool {
    std::net::UdpSocket::bind((LOCALHOST, port)).is_ok()
}

#[tokio::test]
async fn a_released_pair_is_reused_only_after_its_quarantine() {
    let quarantine = Duration::from_millis(300);
    let pool = PortPool::new(23600..=23609)
        .unwrap()
        .with_reuse(quarantine, 4);
    let released = pool.allocate(LOCALHOST).unwrap();
    let port = released.rtp_port();
    drop(released);
    // Kept bound, not leased.
    assert_eq!((pool.in_use(), pool.idle()), (0, 1));
    assert!(!bindable(port) && !bindable(port + 1));
    // During the quarantine every other pair goes first.
    let held: Vec<_> = (0..4).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
    assert!(held.iter().all(|p| p.rtp_port() != port), "reused at once");
    drop(held);
    assert_eq!(pool.idle(), 4);
    tokio::time::sleep(quarantine + Duration::from_millis(100)).await;
    // Then the one released longest ago is the next lease.
    let again = pool.allocate(LOCALHOST).unwrap();
    assert_eq!(again.rtp_port(), port);
    assert_eq!((pool.in_use(), pool.idle()), (1, 3));
}

#[tokio::test]
async fn a_half_full_idle_list_hands_out_pairs_after_half_the_quarantine() {
    let quarantine = Duration::from_millis(1000);
    // Idle list of 2 (full) and of 8 (a quarter full), two pairs released.
    let full = PortPool::new(23700..=23719)
        .unwrap()
        .with_reuse(quarantine, 2);
    let roomy = PortPool::new(23720..=23739)
        .unwrap()
        .with_reuse(quarantine, 8);
    let released = |pool: &PortPool| {
        let pairs: Vec<_> = (0..2).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
        pairs.iter().map(|p| p.rtp_port()).collect::<Vec<u16>>()
    };
    let (full_ports, roomy_ports) = (released(&full), released(&roomy));
    assert_eq!((full.idle(), roomy.idle()), (2, 2));
    // More than half the quarantine later, less than all of it.
    tokio::time::sleep(quarantine * 6 / 10).await;
    let reused = full.allocate(LOCALHOST).unwrap();
    assert_eq!(reused.rtp_port(), full_ports[0], "the oldest idle pair");
    let fresh = roomy.allocate(LOCALHOST).unwrap();
    assert!(!roomy_ports.contains(&fresh.rtp_port()), "reused too early");
    assert_eq!((full.idle(), roomy.idle()), (1, 2));
}

#[tokio::test]
async fn a_stale_datagram_on_a_released_pair_never_reaches_the_next_leg() {
    // No quarantine, so the released pair is the next lease at once.
    let pool = PortPool::new(23620..=23623)
        .unwrap()
        .with_reuse(Duration::ZERO, 2);
    let old_peer = tokio::net::UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let new_peer = tokio::net::UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let params = StreamParams::new(Codec::Pcmu);

    let mut old = Leg::new(
        pool.allocate(LOCALHOST).unwrap(),
        params,
        Some(old_peer.local_addr().unwrap()),
    )
    .with_signalling(Some(LOCALHOST));
    let rtp = old.ports().rtp_addr();
    let rtcp = (LOCALHOST, old.ports().rtcp_port());
    // The old call's leg latches onto its peer, then the call ends.
    old_peer.send_to(&packet(1, 0x0BAD), rtp).await.unwrap();
    let mut buf = buffer();
    let rx = timeout(Duration::from_secs(3), old.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!(rx.header.ssrc, 0x0BAD);
    drop(old);
    // Late packets of the old call queue on the idle sockets.
    for seq in 2..6 {
        old_peer.send_to(&packet(seq, 0x0BAD), rtp).await.unwrap();
        old_peer.send_to(b"late rtcp", rtcp).await.unwrap();
    }

    let ports = pool.allocate(LOCALHOST).unwrap();
    assert_eq!(ports.rtp_addr(), rtp, "the released pair was not reused");
    let mut new = Leg::new(ports, params, Some(new_peer.local_addr().unwrap()))
        .with_signalling(Some(LOCALHOST));
    assert_eq!(new.latched(), None);
    new_peer.send_to(&packet(100, 0x600D), rtp).await.unwrap();
    let rx = timeout(Duration::from_secs(3), new.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!((rx.header.ssrc, rx.header.sequence), (0x600D, 100));
    assert_eq!(new.latched(), Some(new_peer.local_addr().unwrap()));
    assert_eq!(new.handle().stats().rtp_received, 1);
}

#[tokio::test]
async fn the_idle_pairs_are_bounded_and_the_rest_closed() {
    let pool = PortPool::new(23640..=23659)
        .unwrap()
        .with_reuse(Duration::from_secs(3600), 3);
    let pairs: Vec<_> = (0..6).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
    let ports: Vec<u16> = pairs.iter().map(|p| p.rtp_port()).collect();
    drop(pairs);
    assert_eq!((pool.in_use(), pool.idle()), (0, 3));
    // Three pairs are still bound, three were closed.
    let closed = ports
        .iter()
        .filter(|&&p| bindable(p) && bindable(p + 1))
        .count();
    assert_eq!(closed, 3);
    // Fewer kept from now on: the oldest extras are closed at once.
    let pool = pool.with_reuse(Duration::from_secs(3600), 1);
    assert_eq!(pool.idle(), 1);
    let closed = ports
        .iter()
        .filter(|&&p| bindable(p) && bindable(p + 1))
        .count();
    assert_eq!(closed, 5);
    // By default a range keeps at most half its pairs.
    let pool = PortPool::new(23660..=23667).unwrap();
    let pairs: Vec<_> = (0..4).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
    drop(pairs);
    assert_eq!(pool.idle(), 2);
}

#[tokio::test]
async fn idle_pairs_do_not_hide_an_exhausted_range() {
    let pool = PortPool::new(23680..=23683)
        .unwrap()
        .with_reuse(Duration::from_secs(3600), 2);
    let mut pairs: Vec<_> = (0..2).map(|_| pool.allocate(LOCALHOST).unwrap()).collect();
    assert!(matches!(
        pool.allocate(LOCALHOST),
        Err(Error::Exhausted {
            leased: 2,
            pairs: 2,
            ..
        })
    ));
    // A released pair in quarantine still serves when nothing else is free.
    let port = pairs.pop().unwrap().rtp_port();
    assert_eq!(pool.idle(), 1);
    pairs.push(pool.allocate(LOCALHOST).unwrap());
    assert_eq!(pairs[1].rtp_port(), port);
    assert!(matches!(
        pool.allocate(LOCALHOST),
        Err(Error::Exhausted {
            leased: 2,
            pairs: 2,
            ..
        })
    ));
}
