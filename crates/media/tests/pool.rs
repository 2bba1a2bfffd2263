//! The RTP port pool against real sockets: pairs are bound, ports held by
//! another program are skipped, exhaustion is an error, dropped pairs
//! come back.
//!
//! Each test uses its own range below Linux's ephemeral range
//! (32768–60999), so tests running in parallel and sockets bound to port 0
//! do not take each other's ports.

use std::net::{IpAddr, Ipv4Addr};

use media::{Error, PortPool};

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
