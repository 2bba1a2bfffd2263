//! Bridges and the parking lot with real media: each channel's party is a
//! UDP socket on 127.0.0.1 sending and receiving RTP through the channel's
//! anchored leg (media::Leg on a leased port pair), its signalling a queue
//! the test writes to (hang up, hold, resume).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{PortPool, Prompt, StreamParams};
use pbx::{
    BoxFuture, Bridge, BridgeEvent, Channel, ChannelError, ChannelEvent, ChannelId, DialogIds,
    Hangup, LegSnapshot, LegState, ParkError, ParkRequest, ParkingLot, Side, TimedOut,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;
use common::{RtpPhone, WAIT};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A party whose media is real and whose signalling is a queue.
struct LocalChannel {
    id: ChannelId,
    name: String,
    leg: Option<media::Leg>,
    held: bool,
    state: LegState,
    events: mpsc::UnboundedReceiver<ChannelEvent>,
    hung_up: Arc<Mutex<Vec<String>>>,
}

/// The far end of a LocalChannel: its phone's RTP and signalling.
struct Phone {
    rtp: RtpPhone,
    signal: mpsc::UnboundedSender<ChannelEvent>,
}

impl std::ops::Deref for Phone {
    type Target = RtpPhone;
    fn deref(&self) -> &RtpPhone {
        &self.rtp
    }
}

impl std::ops::DerefMut for Phone {
    fn deref_mut(&mut self) -> &mut RtpPhone {
        &mut self.rtp
    }
}

impl Phone {
    fn signal(&self, event: ChannelEvent) {
        self.signal.send(event).unwrap();
    }
}

async fn party(
    pool: &PortPool,
    name: &str,
    hung_up: &Arc<Mutex<Vec<String>>>,
) -> (Box<dyn Channel>, Phone) {
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let ports = pool.allocate(LOCALHOST).unwrap();
    socket.connect(ports.rtp_addr()).await.unwrap();
    let remote: SocketAddr = socket.local_addr().unwrap();
    let leg = media::Leg::new(ports, StreamParams::new(rtp::Codec::Pcmu), Some(remote))
        .with_rtcp_interval(None);
    let (signal, events) = mpsc::unbounded_channel();
    let channel = LocalChannel {
        id: ChannelId::next(),
        name: name.to_owned(),
        leg: Some(leg),
        held: false,
        state: LegState::Up,
        events,
        hung_up: hung_up.clone(),
    };
    (
        Box::new(channel),
        Phone {
            rtp: RtpPhone::new(socket),
            signal,
        },
    )
}

impl Channel for LocalChannel {
    fn id(&self) -> ChannelId {
        self.id
    }
    fn state(&self) -> LegState {
        self.state
    }
    fn held(&self) -> bool {
        self.held
    }
    fn snapshot(&self) -> LegSnapshot {
        LegSnapshot {
            direction: "inbound",
            channel: "local",
            peer: format!("local:{}", self.name),
            address: String::new(),
            state: self.state,
            held: self.held,
            dialog: DialogIds::default(),
        }
    }
    fn ring(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
    fn answer(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async { Ok(()) })
    }
    fn reject(&mut self, _code: u16, _reason: Option<&str>, _contact: Option<&str>) {}
    fn hangup(&mut self, _why: &Hangup) {
        self.state = LegState::Ended;
        self.hung_up.lock().unwrap().push(self.name.clone());
    }
    fn tell_identity(&mut self, _display: Option<&str>, _user: &str) {}
    fn take_media(&mut self) -> Option<media::Leg> {
        self.leg.take()
    }
    fn give_media(&mut self, leg: media::Leg) {
        self.leg = Some(leg);
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
    fn next_event(&mut self) -> BoxFuture<'_, ChannelEvent> {
        Box::pin(async {
            match self.events.recv().await {
                Some(ChannelEvent::Hold(on)) => {
                    self.held = on;
                    ChannelEvent::Hold(on)
                }
                Some(event) => event,
                None => std::future::pending().await,
            }
        })
    }
}

fn music() -> Arc<Prompt> {
    // One second of a 400 Hz tone at 8 kHz.
    let samples = (0..8000)
        .map(|i| ((f64::from(i) * 400.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect();
    Arc::new(Prompt::from_samples(8000, samples).unwrap())
}

fn pool(first: u16) -> PortPool {
    PortPool::new(first..=first + 39).unwrap()
}

#[tokio::test]
async fn a_bridge_relays_both_ways_plays_music_to_the_party_on_hold_and_resumes() {
    let pool = pool(27100);
    let hung = Arc::new(Mutex::new(Vec::new()));
    let (a, mut phone_a) = party(&pool, "a", &hung).await;
    let (b, mut phone_b) = party(&pool, "b", &hung).await;
    let mut bridge = Bridge::join(a, b, Some(music())).await;
    assert!(bridge.is_relaying());
    assert!(phone_a.reaches(&phone_b, 0x0A).await, "a -> b");
    assert!(phone_b.reaches(&phone_a, 0x0B).await, "b -> a");

    // A holds: B hears the music (a stream that is not A's), A nothing.
    phone_a.signal(ChannelEvent::Hold(true));
    let next = timeout(Duration::from_millis(300), bridge.next_event()).await;
    assert!(next.is_err(), "a hold is the bridge's own business");
    assert_eq!(bridge.held_by(), Some(Side::A));
    assert!(phone_b.hears_music().await, "music reaches b");

    // A resumes: relayed again both ways.
    phone_a.signal(ChannelEvent::Hold(false));
    let _ = timeout(Duration::from_millis(300), bridge.next_event()).await;
    assert!(bridge.is_relaying());
    assert!(phone_a.reaches(&phone_b, 0x1A).await, "a -> b after resume");
    assert!(phone_b.reaches(&phone_a, 0x1B).await, "b -> a after resume");

    // B hangs up: the owner hears of it, and gets A back still up.
    phone_b.signal(ChannelEvent::HungUp(Hangup {
        code: 200,
        cause: "callee",
    }));
    match timeout(WAIT, bridge.next_event()).await.unwrap() {
        BridgeEvent::HungUp { side, why } => {
            assert_eq!(side, Side::B);
            assert_eq!(why.cause, "callee");
        }
        other => panic!("expected a hangup, got {other:?}"),
    }
    let (mut a, _b) = bridge.split().await;
    assert_eq!(a.state(), LegState::Up);
    assert!(a.take_media().is_some(), "a's leg is back in its channel");
}

#[tokio::test]
async fn channels_move_from_one_bridge_to_another_and_keep_their_media() {
    let pool = pool(27200);
    let hung = Arc::new(Mutex::new(Vec::new()));
    let (a, mut phone_a) = party(&pool, "a", &hung).await;
    let (b, _phone_b) = party(&pool, "b", &hung).await;
    let (c, mut phone_c) = party(&pool, "c", &hung).await;
    let first = Bridge::join(a, b, None).await;
    // A transfer: A leaves B for C.
    let (a, mut b) = first.split().await;
    b.hangup(&Hangup {
        code: 200,
        cause: "transferred",
    });
    let _second = Bridge::join(a, c, None).await;
    assert!(phone_a.reaches(&phone_c, 0x0A).await, "a -> c");
    assert!(phone_c.reaches(&phone_a, 0x0C).await, "c -> a");
    assert_eq!(*hung.lock().unwrap(), ["b"]);
}

#[tokio::test]
async fn parking_takes_the_lowest_free_slot_plays_music_and_gives_the_call_back() {
    let pool = pool(27300);
    let hung = Arc::new(Mutex::new(Vec::new()));
    let (timed_tx, _timed_rx) = mpsc::unbounded_channel::<TimedOut>();
    let lot = ParkingLot::new(
        71..=72,
        Arc::new(move |t| {
            let _ = timed_tx.send(t);
        }),
    );
    let request = |slot| ParkRequest {
        slot,
        timeout: Duration::from_secs(60),
        parker: Some("1001".into()),
        music: Some(music()),
    };
    let (a, phone_a) = party(&pool, "a", &hung).await;
    let (b, _phone_b) = party(&pool, "b", &hung).await;
    let (c, _phone_c) = party(&pool, "c", &hung).await;
    assert_eq!(lot.park(a, request(None)).unwrap(), 71);
    assert!(phone_a.hears_music().await, "the parked party hears music");
    let (error, b) = lot.park(b, request(Some(71))).unwrap_err();
    assert_eq!(error, ParkError::Taken(71));
    assert_eq!(lot.park(b, request(Some(72))).unwrap(), 72);
    let (error, _c) = lot.park(c, request(None)).unwrap_err();
    assert_eq!(error, ParkError::Full);
    let listed: Vec<u16> = lot.list().iter().map(|p| p.slot).collect();
    assert_eq!(listed, [71, 72]);

    // Picked up: the channel comes back, up, with its leg; 71 is free.
    let mut a = lot.retrieve(71).await.expect("parked in 71");
    assert_eq!(a.state(), LegState::Up);
    assert!(a.take_media().is_some());
    assert!(lot.retrieve(71).await.is_none());
    let listed: Vec<u16> = lot.list().iter().map(|p| p.slot).collect();
    assert_eq!(listed, [72]);
}

#[tokio::test]
async fn a_parked_party_that_hangs_up_frees_its_slot_and_one_left_too_long_rings_back() {
    let pool = pool(27400);
    let hung = Arc::new(Mutex::new(Vec::new()));
    let (timed_tx, mut timed_rx) = mpsc::unbounded_channel::<TimedOut>();
    let lot = ParkingLot::new(
        71..=79,
        Arc::new(move |t| {
            let _ = timed_tx.send(t);
        }),
    );
    let (a, phone_a) = party(&pool, "a", &hung).await;
    let (b, _phone_b) = party(&pool, "b", &hung).await;
    let slot_a = lot
        .park(
            a,
            ParkRequest {
                slot: None,
                timeout: Duration::from_secs(60),
                parker: Some("1001".into()),
                music: None,
            },
        )
        .unwrap();
    phone_a.signal(ChannelEvent::HungUp(Hangup {
        code: 200,
        cause: "caller",
    }));
    for _ in 0..100 {
        if lot.list().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lot.list().is_empty(), "slot {slot_a} freed");
    assert!(lot.retrieve(slot_a).await.is_none());

    let slot_b = lot
        .park(
            b,
            ParkRequest {
                slot: Some(75),
                timeout: Duration::from_millis(200),
                parker: Some("1002".into()),
                music: None,
            },
        )
        .unwrap();
    let back = timeout(WAIT, timed_rx.recv()).await.unwrap().unwrap();
    assert_eq!((back.slot, back.parker.as_str()), (slot_b, "1002"));
    assert_eq!(back.channel.state(), LegState::Up);
    assert!(lot.list().is_empty());
    assert!(hung.lock().unwrap().is_empty(), "nobody was hung up");
}
