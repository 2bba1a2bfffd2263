//! A call's stage with real media: each side's phone is a UDP socket on
//! 127.0.0.1 sending and receiving RTP through a leg lent to the stage
//! (media::Leg on a leased port pair), as a channel driver lends its
//! parties' legs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use media::{PortPool, Prompt, StreamParams};
use pbx::{Side, Stage};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::timeout;

mod common;
use common::{RtpPhone, WAIT};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn phone(pool: &PortPool) -> (media::Leg, RtpPhone) {
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let ports = pool.allocate(LOCALHOST).unwrap();
    socket.connect(ports.rtp_addr()).await.unwrap();
    let remote = socket.local_addr().unwrap();
    let leg = media::Leg::new(ports, StreamParams::new(rtp::Codec::Pcmu), Some(remote))
        .with_rtcp_interval(None);
    (leg, RtpPhone::new(socket))
}

/// `seconds` of a 400 Hz tone at 8 kHz.
fn tone(seconds: usize) -> Arc<Prompt> {
    let samples = (0..8000 * seconds)
        .map(|i| ((i as f64 * 400.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect();
    Arc::new(Prompt::from_samples(8000, samples).unwrap())
}

#[tokio::test]
async fn a_stage_joins_its_legs_plays_music_to_the_side_on_hold_and_gives_idle_legs_back() {
    let pool = PortPool::new(27600..=27639).unwrap();
    let (leg_a, mut a) = phone(&pool).await;
    let (leg_b, mut b) = phone(&pool).await;
    let mut stage = Stage::new();
    stage.give(Side::A, leg_a);
    stage.give(Side::B, leg_b);
    stage.bridge().await;
    assert!(stage.is_bridged());
    assert!(
        stage.take_idle(Side::A).is_none(),
        "the bridge holds the legs"
    );
    assert!(a.reaches(&b, 1).await, "A to B");
    assert!(b.reaches(&a, 2).await, "B to A");
    // B holds: A hears the music, and B's leg is idle (its keeper's again).
    stage.hold(Side::B, tone(1)).await;
    assert_eq!(stage.held_by(), Some(Side::B));
    assert!(a.hears_music().await, "the music to A");
    let b_leg = stage.take_idle(Side::B).expect("the holder's leg is idle");
    // Lent again for the resume: joined as before.
    stage.give(Side::B, b_leg);
    stage.unhold().await;
    assert!(stage.is_bridged());
    assert!(a.reaches(&b, 3).await, "A to B after the resume");
    assert!(b.reaches(&a, 4).await, "B to A after the resume");
    // Stopped: both legs are idle, for their keepers.
    stage.stop_all().await;
    assert!(stage.take_idle(Side::A).is_some());
    assert!(stage.take_idle(Side::B).is_some());
}

#[tokio::test]
async fn a_prompt_suspended_for_a_new_codec_goes_on_and_is_reported_played() {
    let pool = PortPool::new(27640..=27649).unwrap();
    let (leg_a, a) = phone(&pool).await;
    let mut stage = Stage::new();
    stage.give(Side::A, leg_a);
    let (done, played) = oneshot::channel();
    stage.play(tone(1), done).await;
    assert!(a.hears_music().await, "the prompt");
    // The caller's codec changes: the stage lets go of the leg, its
    // keeper sets it to the new codec, and the prompt goes on.
    let suspended = stage.suspend().await;
    let mut leg = stage.take_idle(Side::A).expect("the leg, idle");
    leg.set_params(StreamParams::new(rtp::Codec::Pcma));
    stage.give(Side::A, leg);
    stage.go_on(suspended);
    let result = timeout(WAIT, played).await.expect("played in time");
    assert_eq!(
        result.expect("told"),
        Ok(()),
        "the route hears it was played"
    );
    // Stopped before its end, a prompt tells the route it was cut short.
    let (done, cut) = oneshot::channel();
    stage.play(tone(5), done).await;
    stage.stop_playing().await;
    assert!(
        timeout(WAIT, cut)
            .await
            .expect("told")
            .expect("told")
            .is_err()
    );
}
