//! Media anchoring for one call (DESIGN.md "Media"). Every SDP the call
//! sends is ours: written on `media.advertise` and a port pair leased for
//! that side, answered (RFC 3264 §6) or offered (§5, re-offers §8) with our
//! codecs; no phone ever sees another phone's address. RTP runs through a
//! [`media::Leg`] per side with symmetric-RTP latching (RFC 4961), so a
//! phone behind NAT is reached where its packets come from. Each side
//! negotiates its own codec; the bridge relays when they agree and
//! transcodes when they do not.
//!
//! Each party's media is its own [`MediaEndpoint`] (endpoint.rs): its
//! ports, its SDP session and offer/answer state, its leg; a party that
//! leaves the call (parked, transferred, a channel) takes it along. A
//! call's [`CallMedia`] runs what plays on two legs: side `A`, the
//! caller's (its endpoint kept here), and side `B`, either a dial's
//! target heard on its own endpoint (early media, an answer being put
//! through) or the bridged party's leg, lent by its `SipChannel`, which
//! keeps its endpoint and answers its phone's offers itself (the call
//! gives the leg back whenever nothing runs on it, and takes it again to
//! bridge). A leg is either parked (in its endpoint, or lent here) or
//! owned by what runs on it (a bridge, an echo); [`CallMedia::take_legs`]
//! stops that and parks the legs again.

mod endpoint;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::bridge::End;
use media::{
    Bridge, Echo, Latching, Leg, Listener, MediaTimeout, Player, PortPool, Prompt, Recorder,
    Recording,
};
use pbx::ActionError;
use sdp::{Codec, Direction, SessionDescription};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) use endpoint::{MediaEndpoint, Settled, parse};
use endpoint::{answerable, offered_names};

/// The `[media]` settings the channel needs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Leases RTP/RTCP port pairs (`media.rtp_ports`).
    pub pool: PortPool,
    /// The address RTP sockets bind to (`media.bind`).
    pub bind: IpAddr,
    /// The address written in SDP (`media.advertise`); `None`: the bind
    /// address, or when that is unspecified, the address the peer reaches
    /// us on.
    pub advertise: Option<IpAddr>,
    /// Our codecs in preference order, telephone-event included.
    pub codecs: Vec<Codec>,
    /// Hang up a call whose peer has sent no RTP for this long.
    pub rtp_timeout: Option<Duration>,
    /// Which sources a leg takes RTP from (`media.strict_source`: only the
    /// IP its SIP comes from or its SDP's IP; otherwise others after a
    /// probation).
    pub latching: Latching,
    /// Whose ringback callers hear (`media.tone_zone`).
    pub tone_zone: media::tones::ToneZone,
    /// Music on hold by class name (`sounds/moh/NAME.wav`); a phone that
    /// holds the call makes the other side hear its call's class. Without
    /// the class, the hold is passed on to the other phone instead.
    pub moh: std::collections::HashMap<String, Arc<Prompt>>,
    /// "Parked in slot N" by slot, said to the transferor of a blind
    /// transfer that parks the call (`sounds/park-parked-in.wav` and the
    /// digits), when the sounds are there.
    pub park_announcements: std::collections::HashMap<u16, Arc<Prompt>>,
}

impl MediaConfig {
    /// Ports from `pool`, bound on `bind`, PCMU, PCMA, G722 and
    /// telephone-event, a 60 s RTP timeout.
    pub fn new(pool: PortPool, bind: IpAddr) -> MediaConfig {
        MediaConfig {
            pool,
            bind,
            advertise: None,
            codecs: vec![
                Codec::PCMU,
                Codec::PCMA,
                Codec::G722,
                Codec::TELEPHONE_EVENT,
            ],
            rtp_timeout: Some(Duration::from_secs(60)),
            latching: Latching::Strict,
            tone_zone: media::tones::ToneZone::default(),
            moh: std::collections::HashMap::new(),
            park_announcements: std::collections::HashMap::new(),
        }
    }

    /// The address written in SDP towards a peer that reaches us on
    /// `local` (our SIP address for it).
    fn advertise_for(&self, local: Option<IpAddr>) -> IpAddr {
        if let Some(ip) = self.advertise {
            return ip;
        }
        if !self.bind.is_unspecified() {
            return self.bind;
        }
        local.unwrap_or(self.bind)
    }
}

/// Why an SDP could not be used; each maps to the status a request
/// carrying it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not an SDP we can read (400).
    Malformed(String),
    /// Nothing in it we can accept (488, RFC 3261 §21.4.26).
    NotAcceptable(String),
    /// No RTP ports left (503).
    NoPorts(String),
}

impl Failure {
    pub fn status(&self) -> u16 {
        match self {
            Failure::Malformed(_) => 400,
            Failure::NotAcceptable(_) => 488,
            Failure::NoPorts(_) => 503,
        }
    }

    /// The final response `tx`'s request gets for it, with a Warning
    /// saying why.
    pub fn response(&self, tx: &sip_net::InviteTx, agent: &str) -> sip_proto::Response {
        tx.response_with_warning(self.status(), agent, self.text())
    }

    pub fn text(&self) -> &str {
        match self {
            Failure::Malformed(t) | Failure::NotAcceptable(t) | Failure::NoPorts(t) => t,
        }
    }
}

/// Which side of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// The caller.
    A,
    /// The callee the call is bridged (or dialling) to.
    B,
}

impl Which {
    fn other(self) -> Which {
        match self {
            Which::A => Which::B,
            Which::B => Which::A,
        }
    }
}

/// What runs on the legs (what to start again after a codec change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The caller alone: its media is received and dropped.
    Listen,
    Bridge,
    Echo,
    /// One side holds: the other hears music ([`CallMedia::hold`]).
    Hold,
}

/// A prompt playing on the caller's leg, watched by a task that tells the
/// route when it has been played and gives the leg back when stopped.
struct Playing {
    /// `true`: paused for a codec change, to go on ([`Playing::pause`]).
    stop: oneshot::Sender<bool>,
    /// Gives the leg back boxed: a task keeps room for its output from
    /// the start, and a leg is over half a kilobyte.
    task: JoinHandle<Result<Box<Stopped>, media::Error>>,
}

/// What a stopped prompt gives back: the leg and, when paused before its
/// end, where to go on.
struct Stopped {
    leg: Leg,
    paused: Option<Paused>,
}

/// A prompt paused part-way (its leg's codec changed): the route still
/// waits for it.
struct Paused {
    prompt: Arc<Prompt>,
    frame: u64,
    done: oneshot::Sender<Result<(), ActionError>>,
}

impl Playing {
    fn start(
        leg: Leg,
        prompt: Arc<Prompt>,
        done: oneshot::Sender<Result<(), ActionError>>,
    ) -> Self {
        Playing::start_from(leg, prompt, 0, done)
    }

    /// Plays `prompt` from frame `frame` on.
    fn start_from(
        leg: Leg,
        prompt: Arc<Prompt>,
        frame: u64,
        done: oneshot::Sender<Result<(), ActionError>>,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<bool>();
        // Started here, so the task keeps the player (small), not the leg.
        let mut player = Player::start_from(leg, prompt.clone(), frame);
        let task = tokio::spawn(async move {
            let mut done = Some(done);
            let mut pause = false;
            tokio::select! {
                () = player.finished() => {
                    if let Some(done) = done.take() {
                        let _ = done.send(Ok(()));
                    }
                    // Played: the player keeps receiving until told.
                    let _ = (&mut stopped).await;
                }
                asked = &mut stopped => pause = asked.unwrap_or(false),
            }
            let (leg, frame) = player.stop_at().await?;
            let paused = match done.take() {
                // Paused for a codec change: the route waits on.
                Some(done) if pause => Some(Paused {
                    prompt,
                    frame,
                    done,
                }),
                // Cut short: the call ended, or the route stopped it.
                Some(done) => {
                    let _ = done.send(Err(ActionError::Ended));
                    None
                }
                None => None,
            };
            Ok(Box::new(Stopped { leg, paused }))
        });
        Playing { stop, task }
    }

    async fn stop(self) -> Result<Leg, media::Error> {
        self.end(false).await.map(|s| s.leg)
    }

    /// Stops the prompt to go on with it once the leg is back (a codec
    /// change): where it was, unless it had been played.
    async fn pause(self) -> Result<Stopped, media::Error> {
        self.end(true).await
    }

    async fn end(self, pause: bool) -> Result<Stopped, media::Error> {
        let _ = self.stop.send(pause);
        self.task
            .await
            .map_err(|_| media::Error::TaskFailed)?
            .map(|s| *s)
    }
}

/// What runs on the legs, holding them.
#[derive(Default)]
enum Activity {
    /// Nothing: the legs are parked in their sides.
    #[default]
    Idle,
    /// Caller and callee joined.
    Bridge(Bridge),
    /// The caller hears itself.
    Echo(Echo),
    /// The caller alone, nothing playing: received and dropped (digits
    /// and the RTP timeout still work).
    Listen(Listener),
    /// A prompt to the caller.
    Play(Playing),
    /// The caller recorded.
    Record(Recorder),
    /// The caller, answered by the dialplan, hears ringback while a dial
    /// rings.
    Ringback(Player),
    /// One side put the call on hold: music plays to the other side
    /// (`listener`), the holder's leg is parked.
    Hold { player: Player, listener: Which },
}

/// Silence watch: clones of the timeouts of the legs that should be
/// receiving. An owner folds [`Watch::deadline`] into its one timer and
/// asks [`Watch::expired`] when it fires (a timer per side was a sizeable
/// part of every call's task).
pub(crate) struct Watch([Option<(Which, MediaTimeout)>; 2]);

impl Watch {
    /// The one party of a channel (if it still has media), as side `A`.
    pub fn one(party: Option<&MediaEndpoint>) -> Watch {
        Watch([party.and_then(|p| Some((Which::A, p.watched()?))), None])
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// When the first watched side will have been silent too long, unless
    /// RTP comes before.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.iter().flatten().map(|(_, t)| t.deadline()).min()
    }

    /// A side silent too long at `now`, and for how long.
    pub fn expired(&self, now: Instant) -> Option<(Which, Duration)> {
        self.0
            .iter()
            .flatten()
            .find_map(|(w, t)| t.silent_at(now).map(|d| (*w, d)))
    }

    /// Which side went silent, and for how long (pending while there is
    /// nothing to watch).
    pub async fn silent(self) -> (Which, Duration) {
        loop {
            let Some(at) = self.deadline() else {
                return std::future::pending().await;
            };
            if let Some(silent) = self.expired(Instant::now()) {
                return silent;
            }
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// The media of one call: its two parties' endpoints and what runs on
/// their legs. A party's SDP state is its endpoint's; what this adds is
/// the pairing: an offer from one side passed on to the other (RFC 3264
/// §8, hold stays hold), the codec the other side uses preferred, and the
/// activity (bridge, prompt, music) restarted when a codec changes.
pub(crate) struct CallMedia {
    config: Arc<MediaConfig>,
    /// The caller's initial offer, until it is answered.
    caller_offer: Option<Box<SessionDescription>>,
    // Boxed, like the SDPs and the parked legs: a call's task holds all
    // of this for the whole call, most of it empty most of the time.
    a: Option<Box<MediaEndpoint>>,
    b: Option<Callee>,
    activity: Activity,
    /// A recording the call's end interrupted, kept for the route to
    /// collect (a voicemail ends with the caller hanging up).
    orphan: Option<Recorder>,
    /// While a side holds: who, and the music the other side hears.
    hold: Option<(Which, Arc<Prompt>)>,
    /// While bridged to a side that negotiated no telephone-events: that
    /// side, and the other side's RFC 4733 digits, which it gets in INFO.
    info_digits: Option<(Which, media::Digits)>,
}

/// The callee side of a call's media.
enum Callee {
    /// A dial's target heard on its own endpoint (its early media, its
    /// answer about to be put through), owned here.
    Own(Box<MediaEndpoint>),
    /// The bridged party's leg, lent by its channel, which keeps its
    /// endpoint (its SDP, the offers its phone makes): here while parked
    /// between what runs on it (the call gives it back to the channel
    /// then), `None` while something runs on it or the channel has it.
    Lent {
        leg: Option<Box<Leg>>,
        /// Its codec, to put first towards the caller.
        codec: &'static str,
    },
}

/// Where a digit one side sent in signalling (SIP INFO) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigitTo {
    /// Into the other side's RTP stream as RFC 4733 events.
    Stream,
    /// To that side in an INFO of ours: it negotiated no telephone-events.
    Info(Which),
    /// Nobody takes it (not bridged; or 16 digits already wait).
    Nowhere,
}

impl CallMedia {
    pub fn new(config: Arc<MediaConfig>) -> CallMedia {
        CallMedia {
            config,
            caller_offer: None,
            a: None,
            b: None,
            activity: Activity::Idle,
            orphan: None,
            hold: None,
            info_digits: None,
        }
    }

    /// A call's media with `party` as its caller side and nobody else yet
    /// (a parked call ringing its parker back).
    pub fn alone(config: Arc<MediaConfig>, party: Box<MediaEndpoint>) -> CallMedia {
        let mut media = CallMedia::new(config);
        media.a = Some(party);
        media
    }

    /// `which`'s endpoint: its SDP state, to answer its party's offers
    /// (`channel::answer_offer`; after a new codec, [`restart`](Self::restart)).
    pub fn side_mut(&mut self, which: Which) -> Option<&mut MediaEndpoint> {
        match which {
            Which::A => self.a.as_deref_mut(),
            Which::B => match &mut self.b {
                Some(Callee::Own(party)) => Some(party),
                _ => None,
            },
        }
    }

    fn side(&self, which: Which) -> Option<&MediaEndpoint> {
        match which {
            Which::A => self.a.as_deref(),
            Which::B => match &self.b {
                Some(Callee::Own(party)) => Some(party),
                _ => None,
            },
        }
    }

    /// The codec `which` uses, to put first towards the other side.
    fn preferred(&self, which: Which) -> Vec<String> {
        if which == Which::B
            && let Some(Callee::Lent { codec, .. }) = &self.b
        {
            return vec![(*codec).to_owned()];
        }
        self.side(which)
            .map(MediaEndpoint::preferred)
            .unwrap_or_default()
    }

    /// Checks the caller's initial offer before the call is routed: it
    /// must parse and hold an audio section we can answer. An INVITE
    /// without SDP is fine: we offer in our 200 (RFC 3261 §13.2.1).
    pub fn set_caller_offer(&mut self, body: &[u8]) -> Result<(), Failure> {
        if body.is_empty() {
            return Ok(());
        }
        let offer = parse(body)?;
        answerable(&self.config, &offer)?;
        self.caller_offer = Some(Box::new(offer));
        Ok(())
    }

    /// Leases `which`'s ports (once), advertising the address a peer that
    /// reaches our SIP on `sip_ip` can reach.
    fn open(&mut self, which: Which, sip_ip: Option<IpAddr>) -> Result<(), Failure> {
        if self.side(which).is_some() {
            return Ok(());
        }
        // Only the caller's digits are read from its first packet on.
        let party = MediaEndpoint::open(&self.config, sip_ip, which == Which::A)?;
        match which {
            Which::A => self.a = Some(party),
            Which::B => self.b = Some(Callee::Own(party)),
        }
        Ok(())
    }

    /// What the caller gets in our 18x/200: the answer to its offer (made
    /// once, the same bytes every time after; RFC 3264 §8 keeps the
    /// version of an unchanged description), or our offer when its INVITE
    /// had none. Makes the caller's leg.
    /// `peer` is the IP the caller's SIP comes from.
    pub async fn caller_description(
        &mut self,
        sip_ip: Option<IpAddr>,
        peer: IpAddr,
    ) -> Result<Bytes, Failure> {
        if let Some(bytes) = self.a.as_deref().and_then(MediaEndpoint::last_sent) {
            return Ok(bytes);
        }
        self.open(Which::A, sip_ip)?;
        // Prefer what the callee settled on: no transcoding when it can.
        let prefer = self.preferred(Which::B);
        let offer = self.caller_offer.take();
        let a = self.a.as_deref_mut().ok_or_else(no_side)?;
        a.set_signalling(peer);
        let Some(offer) = offer else {
            // Late offer: ours now, the caller's answer in its ACK.
            return Ok(a.offer_late(&prefer));
        };
        let (bytes, stream) = a.answer(&offer, &prefer, Direction::SendRecv)?;
        self.settle(Which::A, &stream).await?;
        Ok(bytes)
    }

    /// A new party for one target of a dial, whose SIP reaches us on
    /// `sip_ip`: its own ports and our offer to it, our codecs with the
    /// caller's (or its leg's) first so the bridge can relay rather than
    /// transcode; only the codecs of `only` (a trunk's `codecs`, in its
    /// order) that we have, all of ours when none of them is a voice codec
    /// we have. Each target of a fork gets its own, as Asterisk's and
    /// FreeSWITCH's forks do: whichever answers (or sends early media,
    /// or is asked to confirm) is heard on its own ports.
    pub fn callee_endpoint(
        &self,
        sip_ip: Option<IpAddr>,
        only: Option<&[Codec]>,
    ) -> Result<(Box<MediaEndpoint>, Bytes), Failure> {
        let mut party = MediaEndpoint::open(&self.config, sip_ip, false)?;
        let prefer = match self.a.as_deref().and_then(MediaEndpoint::codec_name) {
            Some(name) => vec![name.to_owned()],
            None => self
                .caller_offer
                .as_deref()
                .map(offered_names)
                .unwrap_or_default(),
        };
        let offer = party.offer(&prefer, Direction::SendRecv, only);
        Ok((party, offer))
    }

    /// Reads a callee's answer (in a 18x or 2xx) to our offer, without
    /// applying it.
    pub fn callee_answer(&self, body: &[u8]) -> Result<sdp::Stream, Failure> {
        match self.side(Which::B) {
            Some(b) => b.read_answer(body),
            None => Err(Failure::NotAcceptable("an answer without our offer".into())),
        }
    }

    /// Applies a callee's answer, from the fork whose SIP comes from
    /// `peer`; `last` (its 2xx) closes the exchange.
    pub async fn apply_callee(
        &mut self,
        stream: &sdp::Stream,
        last: bool,
        peer: IpAddr,
    ) -> Result<(), Failure> {
        self.side_mut(Which::B)
            .ok_or_else(no_side)?
            .set_signalling(peer);
        self.settle(Which::B, stream).await?;
        if last && let Some(b) = self.side_mut(Which::B) {
            b.withdraw_offer();
        }
        Ok(())
    }

    /// Restarts what runs on the legs (an endpoint's codec changed).
    pub async fn restart(&mut self) {
        self.restart_if(Settled::Restart).await;
    }

    /// Applies one negotiated stream to `which`'s endpoint; a new codec on
    /// a leg something runs on restarts that (a recording in progress ends
    /// here; a prompt is cut short).
    async fn settle(&mut self, which: Which, stream: &sdp::Stream) -> Result<(), Failure> {
        let settled = self.side_mut(which).ok_or_else(no_side)?.settle(stream)?;
        self.restart_if(settled).await;
        Ok(())
    }

    /// Restarts what runs on the legs when an endpoint's new codec asks
    /// for it.
    async fn restart_if(&mut self, settled: Settled) {
        if settled != Settled::Restart {
            return;
        }
        // A prompt goes on where it was, in the new codec: the route
        // still waits for it (a phone may change codec as an IVR speaks).
        if matches!(self.activity, Activity::Play(_))
            && let Activity::Play(playing) = std::mem::take(&mut self.activity)
        {
            if let Ok(Stopped { leg, paused }) = playing.pause().await {
                self.park(Which::A, leg);
                if let (Some(p), Some(leg)) = (paused, self.take_caller_leg()) {
                    self.activity =
                        Activity::Play(Playing::start_from(leg, p.prompt, p.frame, p.done));
                    return;
                }
            }
            self.resume(Kind::Listen);
            return;
        }
        let (kind, _) = self.take_legs().await;
        self.resume(kind);
    }

    /// Stops what runs on the legs and parks them; says what it was.
    async fn take_legs(&mut self) -> (Kind, Option<Recording>) {
        let mut recording = None;
        self.info_digits = None;
        // What ran on the caller's leg alone gives it back the same way.
        let (kind, caller) = match std::mem::take(&mut self.activity) {
            Activity::Idle => return (Kind::Listen, None),
            Activity::Bridge(bridge) => {
                if let Ok((a, b)) = bridge.stop().await {
                    self.park(Which::A, a);
                    self.park(Which::B, b);
                }
                return (Kind::Bridge, None);
            }
            Activity::Echo(echo) => (Kind::Echo, echo.stop().await),
            Activity::Listen(listener) => (Kind::Listen, listener.stop().await),
            Activity::Play(playing) => (Kind::Listen, playing.stop().await),
            Activity::Ringback(player) => (Kind::Listen, player.stop().await),
            Activity::Hold { player, listener } => {
                if let Ok(leg) = player.stop().await {
                    self.park(listener, leg);
                }
                return (Kind::Hold, None);
            }
            Activity::Record(recorder) => (
                Kind::Listen,
                recorder.stop().await.map(|(a, r)| {
                    recording = Some(r);
                    a
                }),
            ),
        };
        if let Ok(a) = caller {
            self.park(Which::A, a);
        }
        (kind, recording)
    }

    /// The caller's leg, unparked.
    fn take_caller_leg(&mut self) -> Option<Leg> {
        self.a.as_mut().and_then(|s| s.take_leg())
    }

    fn park(&mut self, which: Which, leg: Leg) {
        if which == Which::B
            && let Some(Callee::Lent { leg: parked, .. }) = &mut self.b
        {
            *parked = Some(Box::new(leg));
            return;
        }
        if let Some(side) = self.side_mut(which) {
            side.park_leg(leg);
        }
    }

    /// The callee's leg, unparked: its own endpoint's, or the one its
    /// channel lent.
    fn take_callee_leg(&mut self) -> Option<Leg> {
        match &mut self.b {
            Some(Callee::Own(party)) => party.take_leg(),
            Some(Callee::Lent { leg, .. }) => leg.take().map(|l| *l),
            None => None,
        }
    }

    /// Starts `kind` on the parked legs (the caller alone is listened to).
    fn resume(&mut self, kind: Kind) {
        let a = self.take_caller_leg();
        let b = self.take_callee_leg();
        if kind == Kind::Hold
            && let Some((holder, music)) = self.hold.clone()
        {
            // Music to the side that is not holding (the caller alone when
            // the dialplan holds it); the holder's leg, if any, parked.
            let listener = holder.other();
            let (plays, parked) = match listener {
                Which::A => (a, b),
                Which::B => (b, a),
            };
            if let Some(leg) = parked {
                self.park(holder, leg);
            }
            self.activity = match plays {
                Some(leg) => Activity::Hold {
                    player: Player::start_looped(leg, music),
                    listener,
                },
                None => Activity::Idle,
            };
            return;
        }
        let (activity, b) = match (kind, a, b) {
            (Kind::Bridge, Some(a), Some(b)) => {
                self.info_digits = info_digits(&a, &b);
                (Activity::Bridge(Bridge::start(a, b)), None)
            }
            (Kind::Echo, Some(a), b) => (Activity::Echo(Echo::start(a)), b),
            (_, Some(a), b) => (Activity::Listen(Listener::start(a)), b),
            (_, None, b) => (Activity::Idle, b),
        };
        if let Some(b) = b {
            self.park(Which::B, b);
        }
        self.activity = activity;
    }

    /// Joins the caller's and the callee's media.
    pub async fn bridge(&mut self) {
        self.hold = None;
        self.take_legs().await;
        self.resume(Kind::Bridge);
    }

    /// `holder` put the call on hold: the other side hears `music`, looped,
    /// continuing the stream it was getting (same SSRC, sequence and
    /// timestamp line); the holder's leg is parked, so it gets nothing.
    pub async fn hold(&mut self, holder: Which, music: Arc<Prompt>) {
        self.take_legs().await;
        self.hold = Some((holder, music));
        self.resume(Kind::Hold);
    }

    /// Who holds the call, if one side does.
    pub fn held_by(&self) -> Option<Which> {
        self.hold.as_ref().map(|(w, _)| *w)
    }

    /// The hold ends: the music stops and the two sides are joined again.
    pub async fn unhold(&mut self) {
        if self.hold.take().is_some() {
            self.take_legs().await;
            self.resume(Kind::Bridge);
        }
    }

    /// The music class `name` (`sounds/moh/NAME.wav`), if it was loaded.
    pub fn music(&self, name: &str) -> Option<Arc<Prompt>> {
        self.config.moh.get(name).cloned()
    }

    /// Sends the caller's media back to it.
    pub async fn echo(&mut self) {
        self.hold = None;
        self.take_legs().await;
        self.resume(Kind::Echo);
    }

    /// The caller alone with nothing playing (after answering).
    pub async fn listen(&mut self) {
        if matches!(self.activity, Activity::Idle) {
            self.resume(Kind::Listen);
        }
    }

    /// Plays `prompt` to the caller; `done` hears when it has been played.
    pub async fn play(
        &mut self,
        prompt: Arc<Prompt>,
        done: oneshot::Sender<Result<(), ActionError>>,
    ) {
        self.hold = None;
        self.take_legs().await;
        match self.take_caller_leg() {
            Some(a) => self.activity = Activity::Play(Playing::start(a, prompt, done)),
            None => {
                let _ = done.send(Err(ActionError::Failed("the caller has no media".into())));
            }
        }
    }

    /// Stops the prompt playing, if one is (barge-in): the caller is
    /// listened to again.
    pub async fn stop_playing(&mut self) {
        if matches!(self.activity, Activity::Play(_)) {
            self.take_legs().await;
            self.resume(Kind::Listen);
        }
    }

    /// Ringback to the caller (answered already) while a dial rings.
    pub async fn ringback(&mut self) {
        self.hold = None;
        let Some(tone) = media::tones::ringback(self.config.tone_zone) else {
            return;
        };
        self.take_legs().await;
        match self.take_caller_leg() {
            Some(a) => self.activity = Activity::Ringback(Player::start_looped(a, tone)),
            None => self.resume(Kind::Listen),
        }
    }

    /// Whether the caller hears ringback.
    pub fn is_ringback(&self) -> bool {
        matches!(self.activity, Activity::Ringback(_))
    }

    /// The ringback ends (the dial did): the caller is listened to.
    pub async fn stop_ringback(&mut self) {
        if self.is_ringback() {
            self.take_legs().await;
            self.resume(Kind::Listen);
        }
    }

    /// Starts recording the caller, for at most `max`.
    pub async fn record(
        &mut self,
        max: Duration,
        silence: Option<Duration>,
    ) -> Result<Arc<tokio::sync::Notify>, ActionError> {
        self.hold = None;
        self.take_legs().await;
        let a = self
            .take_caller_leg()
            .ok_or_else(|| ActionError::Failed("the caller has no media".into()))?;
        let recorder = Recorder::start_until_silence(a, max, silence);
        let silent = recorder.silent();
        self.activity = Activity::Record(recorder);
        Ok(silent)
    }

    /// Stops the recording (running, or cut off by the call's end) and
    /// hands it over.
    pub async fn stop_recording(&mut self) -> Option<Recording> {
        if let Some(recorder) = self.orphan.take() {
            return recorder.stop().await.ok().map(|(_, r)| r);
        }
        if !matches!(self.activity, Activity::Record(_)) {
            return None;
        }
        let (_, recording) = self.take_legs().await;
        self.resume(Kind::Listen);
        recording
    }

    /// The caller's digits: those since its leg was made the first time,
    /// from now on after that.
    pub fn caller_digits(&mut self) -> Option<media::Digits> {
        self.a.as_mut()?.digits()
    }

    /// A digit the caller sent in signalling (SIP INFO), offered to
    /// `read_digits` like an RFC 4733 one.
    pub fn push_caller_digit(&self, digit: rtp::Digit) {
        if let Some(a) = &self.a {
            a.push_digit(digit);
        }
    }

    /// A digit `from` sent in SIP INFO, `duration` long (DTMF
    /// interworking, Asterisk's `dtmf_mode`): bridged, it goes into the
    /// other side's stream as RFC 4733 events when that side negotiated
    /// them, else to that side in an INFO; not bridged, the caller's is
    /// offered to `read_digits` like an RFC 4733 one.
    pub fn signalled_digit(&self, from: Which, digit: rtp::Digit, duration: Duration) -> DigitTo {
        let Activity::Bridge(bridge) = &self.activity else {
            if from == Which::A {
                self.push_caller_digit(digit);
            }
            return DigitTo::Nowhere;
        };
        let (to, end) = match from {
            Which::A => (Which::B, End::B),
            Which::B => (Which::A, End::A),
        };
        if !bridge.takes_events(end) {
            DigitTo::Info(to)
        } else if bridge.send_digit(end, digit, duration) {
            DigitTo::Stream
        } else {
            DigitTo::Nowhere
        }
    }

    /// Whether a bridged side gets the other's RFC 4733 digits in INFO.
    pub fn interworks(&self) -> bool {
        self.info_digits.is_some()
    }

    /// The next RFC 4733 digit from one bridged side for the other, which
    /// negotiated no telephone-events (see [`interworks`](Self::interworks)):
    /// that side and the digit. Cancel-safe; pending while there is none.
    pub async fn next_info_digit(&mut self) -> (Which, rtp::Digit) {
        if let Some((to, digits)) = &mut self.info_digits
            && let Some(digit) = digits.next().await
        {
            return (*to, digit);
        }
        self.info_digits = None;
        std::future::pending().await
    }

    /// The legs to watch for silence: made, run by something, and
    /// expected to send (not on hold).
    pub fn watch(&self) -> Watch {
        let watched = |which| Some((which, self.side(which)?.watched()?));
        Watch([watched(Which::A), watched(Which::B)])
    }

    /// Ends all media: what runs stops, the ports go back to the pool.
    pub fn release(&mut self) {
        if let Activity::Record(recorder) = std::mem::take(&mut self.activity) {
            self.orphan = Some(recorder);
        }
        self.activity = Activity::Idle;
        self.a = None;
        self.b = None;
    }
}

impl CallMedia {
    /// Takes `which`'s endpoint out of the call (a party leaving for
    /// another call, a bridge or the parking lot): what ran on the legs
    /// stops, the endpoint leaves with its leg parked in it and its SDP
    /// state, and the caller, if it stays, is listened to.
    pub async fn detach(&mut self, which: Which) -> Option<Box<MediaEndpoint>> {
        self.take_legs().await;
        self.hold = None;
        let side = match which {
            Which::A => self.a.take(),
            Which::B => match self.b.take() {
                Some(Callee::Own(party)) => Some(party),
                lent => {
                    self.b = lent;
                    None
                }
            },
        }?;
        if which == Which::B {
            self.resume(Kind::Listen);
        }
        Some(side)
    }

    /// Takes a party's endpoint (a dial target's, or one made by
    /// [`detach`](Self::detach)) in as this call's callee side, giving back
    /// the one it replaces (its leg parked in it); [`bridge`](Self::bridge)
    /// joins it to the caller.
    pub async fn attach_callee(&mut self, party: Box<MediaEndpoint>) -> Option<Box<MediaEndpoint>> {
        self.take_legs().await;
        self.hold = None;
        let previous = match self.b.replace(Callee::Own(party)) {
            Some(Callee::Own(previous)) => Some(previous),
            _ => None,
        };
        self.resume(Kind::Listen);
        previous
    }

    /// The bridged party's leg, lent by its channel (which keeps its
    /// endpoint), parked here as the callee side's: [`bridge`](Self::bridge)
    /// joins it to the caller. Given while nothing runs on the callee side.
    pub fn lend_callee(&mut self, leg: Leg) {
        let codec = leg.params().codec.name();
        self.b = Some(Callee::Lent {
            leg: Some(Box::new(leg)),
            codec,
        });
    }

    /// The lent leg, when nothing runs on it: its channel has it back (to
    /// watch it, and set it to what its phone settles on).
    pub fn idle_callee(&mut self) -> Option<Leg> {
        match &mut self.b {
            Some(Callee::Lent { leg, .. }) => leg.take().map(|l| *l),
            _ => None,
        }
    }

    /// The bridged party leaves: what ran on the legs stops, its lent leg
    /// comes back (for its channel), and the caller is listened to.
    pub async fn return_callee(&mut self) -> Option<Leg> {
        self.take_legs().await;
        self.hold = None;
        let leg = self.idle_callee();
        if matches!(self.b, Some(Callee::Lent { .. })) {
            self.b = None;
        }
        self.resume(Kind::Listen);
        leg
    }

    /// Stops what runs on the legs, parking them, for it to be started
    /// again with [`go_on`](Self::go_on) (a party's new codec).
    pub async fn pause(&mut self) -> Kind {
        self.take_legs().await.0
    }

    /// Starts again what [`pause`](Self::pause) stopped.
    pub fn go_on(&mut self, kind: Kind) {
        self.resume(kind);
    }

    /// `party` becomes the caller side (the bridged party, kept as the
    /// call's party when the caller left it).
    pub async fn attach_caller(&mut self, party: Box<MediaEndpoint>) {
        self.take_legs().await;
        self.hold = None;
        self.caller_offer = None;
        self.a = Some(party);
        self.resume(Kind::Listen);
    }

    /// An offerless re-INVITE from `from`: our current description again
    /// as the offer (RFC 3264 §8.4); the answer comes in the ACK.
    pub fn offer_again(&mut self, from: Which) -> Option<Bytes> {
        self.side_mut(from)?.offer_again()
    }
}

/// For a bridge of `a` and `b` where exactly one side negotiated
/// telephone-events: the side without them, and the other's digits.
fn info_digits(a: &Leg, b: &Leg) -> Option<(Which, media::Digits)> {
    let events = |leg: &Leg| leg.params().send_event_payload_type.is_some();
    match (events(a), events(b)) {
        (true, false) => Some((Which::B, a.handle().digits())),
        (false, true) => Some((Which::A, b.handle().digits())),
        _ => None,
    }
}

fn no_side() -> Failure {
    Failure::NotAcceptable("no media for this side yet".into())
}

#[cfg(test)]
mod tests {
    use super::endpoint::{audio_direction, ports_for};
    use super::*;

    const OFFER: &[u8] =
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\n\
        m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";

    fn config() -> Arc<MediaConfig> {
        Arc::new(MediaConfig::new(
            PortPool::new(24100..=24199).unwrap(),
            "127.0.0.1".parse().unwrap(),
        ))
    }

    #[test]
    fn helpers_read_the_first_audio_section() {
        let offer = parse(OFFER).unwrap();
        assert_eq!(ports_for(&offer, 7000), vec![0, 7000]);
        assert_eq!(offered_names(&offer), ["PCMA", "PCMU", "telephone-event"]);
        assert_eq!(audio_direction(&offer), Direction::SendOnly);
    }

    #[test]
    fn the_advertised_address_follows_the_config() {
        let pool = PortPool::new(24200..=24203).unwrap();
        let mut c = MediaConfig::new(pool, "0.0.0.0".parse().unwrap());
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        assert_eq!(
            c.advertise_for(Some(lan)),
            lan,
            "the address the phone reaches"
        );
        c.bind = "10.0.0.1".parse().unwrap();
        assert_eq!(c.advertise_for(Some(lan)).to_string(), "10.0.0.1");
        c.advertise = Some("203.0.113.10".parse().unwrap());
        assert_eq!(c.advertise_for(Some(lan)).to_string(), "203.0.113.10");
    }

    #[test]
    fn caller_offers_are_checked_before_routing() {
        let mut m = CallMedia::new(config());
        assert_eq!(m.set_caller_offer(b"").map_err(|f| f.status()), Ok(()));
        assert_eq!(
            m.set_caller_offer(b"garbage").map_err(|f| f.status()),
            Err(400)
        );
        let g729 = b"v=0\r\no=- 1 1 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
        let refused = m.set_caller_offer(g729).unwrap_err();
        assert_eq!(refused.status(), 488);
        assert!(refused.text().contains("PCMU"), "{}", refused.text());
        assert_eq!(m.set_caller_offer(OFFER).map_err(|f| f.status()), Ok(()));
    }

    #[tokio::test]
    async fn the_callee_is_offered_the_callers_codec_first_and_the_caller_gets_its_own() {
        let mut m = CallMedia::new(config());
        m.set_caller_offer(OFFER).unwrap();
        let ip = Some("127.0.0.1".parse().unwrap());
        let (callee, offer) = m.callee_endpoint(ip, None).unwrap();
        let offer = parse(&offer).unwrap();
        let audio = &offer.media[0];
        assert_eq!(audio.formats[0], "8", "PCMA, the caller's first: {offer:?}");
        assert_ne!(audio.port, 4000);
        // The callee answers PCMU only, on its own address.
        assert!(m.attach_callee(callee).await.is_none());
        let answer = "v=0\r\no=- 2 2 IN IP4 127.0.0.12\r\ns=-\r\nc=IN IP4 127.0.0.12\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let stream = m.callee_answer(answer.as_bytes()).unwrap();
        let phone = "127.0.0.1".parse().unwrap();
        m.apply_callee(&stream, true, phone).await.unwrap();
        let ours = m.caller_description(ip, phone).await.unwrap();
        let ours = parse(&ours).unwrap();
        // The caller's answer: its sections in order, video refused, audio
        // on our address and port, PCMU first (no transcoding needed), and
        // recvonly for its sendonly.
        assert_eq!(ours.media.len(), 2);
        assert_eq!(ours.media[0].port, 0);
        let a = &ours.media[1];
        assert_eq!(a.formats[0], "0", "{ours:?}");
        assert_eq!(ours.direction(1), Direction::RecvOnly);
        assert_eq!(ours.rtp_address(1).unwrap().ip().to_string(), "127.0.0.1");
        // The same bytes again for a 200 after a 183.
        assert_eq!(
            m.caller_description(ip, phone).await.unwrap(),
            Bytes::from(ours.to_bytes())
        );
    }
}
