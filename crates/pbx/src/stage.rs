//! What plays on a call's two media legs (DESIGN.md "Media",
//! docs/call-core.md): side `A`, the caller's, and side `B`, its other
//! party's, each lent by whoever keeps it (a channel driver's endpoint, a
//! channel), and the one activity that holds them: the two joined (a
//! [`media::Bridge`], relaying or transcoding, with keypresses crossing
//! as each side negotiated them, RFC 4733 events or in signalling), one
//! side's hold with music on hold to the other, a prompt, ringback, a
//! recording or an echo to the caller, or the caller alone listened to.
//!
//! A lent leg is parked here while nothing runs on it, and goes back to
//! its keeper with [`Stage::take_idle`] (which then watches it for
//! silence, and sets it to a new codec). Protocol-free: a driver says
//! what its parties' SDP settled on by giving legs back and lending them
//! again ([`Stage::suspend`], [`Stage::go_on`]).

use std::sync::Arc;
use std::time::Duration;

use media::bridge::End;
use media::{Bridge, Echo, Leg, Listener, Player, Prompt, Recorder, Recording};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::bridge::Side;
use crate::handle::ActionError;

/// What runs on the legs (what to start again after a codec change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The caller alone: its media is received and dropped.
    Listen,
    Bridge,
    Echo,
    /// One side holds: the other hears music ([`Stage::hold`]).
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
    /// Nothing: the legs are parked.
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
    Hold { player: Player, listener: Side },
}

/// What [`Stage::suspend`] stopped, for [`Stage::go_on`].
pub struct Suspended(Resume);

enum Resume {
    Kind(Kind),
    /// A prompt, to go on where it was.
    Play(Paused),
}

/// Where a keypress one side sent in signalling (SIP INFO) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitTo {
    /// Into the other side's RTP stream as RFC 4733 events.
    Stream,
    /// To that side in signalling: it negotiated no telephone-events.
    Signalling(Side),
    /// Nobody takes it (not bridged; or 16 digits already wait).
    Nowhere,
}

/// A call's two legs and what runs on them (see the module docs).
#[derive(Default)]
pub struct Stage {
    // Boxed: a call keeps its stage for the whole call, and a leg is over
    // half a kilobyte; most of the time a leg is in an activity.
    a: Option<Box<Leg>>,
    b: Option<Box<Leg>>,
    activity: Activity,
    /// A recording the call's end interrupted, kept for the route to
    /// collect (a voicemail ends with the caller hanging up).
    orphan: Option<Recorder>,
    /// While a side holds: who, and the music the other side hears.
    hold: Option<(Side, Arc<Prompt>)>,
    /// While bridged to a side that negotiated no telephone-events: that
    /// side, and the other side's RFC 4733 digits, which it gets in
    /// signalling.
    signalled: Option<(Side, media::Digits)>,
}

impl Stage {
    /// An empty stage: no legs, nothing running.
    pub fn new() -> Stage {
        Stage::default()
    }

    /// Lends `side`'s leg, parked here until something runs on it.
    pub fn give(&mut self, side: Side, leg: Leg) {
        *self.slot(side) = Some(Box::new(leg));
    }

    /// `side`'s leg back when nothing runs on it.
    pub fn take_idle(&mut self, side: Side) -> Option<Leg> {
        self.slot(side).take().map(|l| *l)
    }

    fn slot(&mut self, side: Side) -> &mut Option<Box<Leg>> {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Stops what runs on the legs and parks them; says what it was.
    async fn take_legs(&mut self) -> (Kind, Option<Recording>) {
        let mut recording = None;
        self.signalled = None;
        // What ran on the caller's leg alone gives it back the same way.
        let (kind, caller) = match std::mem::take(&mut self.activity) {
            Activity::Idle => return (Kind::Listen, None),
            Activity::Bridge(bridge) => {
                if let Ok((a, b)) = bridge.stop().await {
                    self.give(Side::A, a);
                    self.give(Side::B, b);
                }
                return (Kind::Bridge, None);
            }
            Activity::Echo(echo) => (Kind::Echo, echo.stop().await),
            Activity::Listen(listener) => (Kind::Listen, listener.stop().await),
            Activity::Play(playing) => (Kind::Listen, playing.stop().await),
            Activity::Ringback(player) => (Kind::Listen, player.stop().await),
            Activity::Hold { player, listener } => {
                if let Ok(leg) = player.stop().await {
                    self.give(listener, leg);
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
            self.give(Side::A, a);
        }
        (kind, recording)
    }

    /// Starts `kind` on the parked legs (the caller alone is listened to).
    fn resume(&mut self, kind: Kind) {
        let a = self.take_idle(Side::A);
        let b = self.take_idle(Side::B);
        if kind == Kind::Hold
            && let Some((holder, music)) = self.hold.clone()
        {
            // Music to the side that is not holding (the caller alone when
            // the dialplan holds it); the holder's leg, if any, parked.
            let listener = holder.other();
            let (plays, parked) = match listener {
                Side::A => (a, b),
                Side::B => (b, a),
            };
            if let Some(leg) = parked {
                self.give(holder, leg);
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
                self.signalled = signalled(&a, &b);
                (Activity::Bridge(Bridge::start(a, b)), None)
            }
            (Kind::Echo, Some(a), b) => (Activity::Echo(Echo::start(a)), b),
            (_, Some(a), b) => (Activity::Listen(Listener::start(a)), b),
            (_, None, b) => (Activity::Idle, b),
        };
        if let Some(b) = b {
            self.give(Side::B, b);
        }
        self.activity = activity;
    }

    /// Stops what runs, parking the legs, to start it again with
    /// [`go_on`](Self::go_on) once their keepers have set them to a new
    /// codec; a prompt goes on where it was (the route still waits for
    /// it: a phone may change codec while an IVR speaks).
    pub async fn suspend(&mut self) -> Suspended {
        if matches!(self.activity, Activity::Play(_))
            && let Activity::Play(playing) = std::mem::take(&mut self.activity)
        {
            if let Ok(Stopped { leg, paused }) = playing.pause().await {
                self.give(Side::A, leg);
                if let Some(paused) = paused {
                    return Suspended(Resume::Play(paused));
                }
            }
            return Suspended(Resume::Kind(Kind::Listen));
        }
        let (kind, _) = self.take_legs().await;
        Suspended(Resume::Kind(kind))
    }

    /// Starts again what [`suspend`](Self::suspend) stopped.
    pub fn go_on(&mut self, suspended: Suspended) {
        match suspended.0 {
            Resume::Kind(kind) => self.resume(kind),
            Resume::Play(p) => match self.take_idle(Side::A) {
                Some(leg) => {
                    self.activity =
                        Activity::Play(Playing::start_from(leg, p.prompt, p.frame, p.done));
                }
                None => {
                    let _ = p.done.send(Err(ActionError::Ended));
                    self.resume(Kind::Listen);
                }
            },
        }
    }

    /// Stops what runs and parks the legs (a party about to leave, or to
    /// come); nothing runs until told.
    pub async fn stop_all(&mut self) {
        self.take_legs().await;
        self.hold = None;
    }

    /// Joins the two sides' media.
    pub async fn bridge(&mut self) {
        self.hold = None;
        self.take_legs().await;
        self.resume(Kind::Bridge);
    }

    /// Whether the two sides are joined.
    pub fn is_bridged(&self) -> bool {
        matches!(self.activity, Activity::Bridge(_))
    }

    /// `holder` put the call on hold: the other side hears `music`, looped,
    /// continuing the stream it was getting (same SSRC, sequence and
    /// timestamp line); the holder's leg is parked, so it gets nothing.
    pub async fn hold(&mut self, holder: Side, music: Arc<Prompt>) {
        self.take_legs().await;
        self.hold = Some((holder, music));
        self.resume(Kind::Hold);
    }

    /// Who holds the call, if one side does.
    pub fn held_by(&self) -> Option<Side> {
        self.hold.as_ref().map(|(w, _)| *w)
    }

    /// The hold ends: the music stops and the two sides are joined again.
    pub async fn unhold(&mut self) {
        if self.hold.take().is_some() {
            self.take_legs().await;
            self.resume(Kind::Bridge);
        }
    }

    /// Sends the caller's media back to it.
    pub async fn echo(&mut self) {
        self.hold = None;
        self.take_legs().await;
        self.resume(Kind::Echo);
    }

    /// The caller alone with nothing playing (after answering).
    pub fn listen(&mut self) {
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
        match self.take_idle(Side::A) {
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

    /// `tone`, looped, to the caller (answered already) while a dial
    /// rings.
    pub async fn ringback(&mut self, tone: Arc<Prompt>) {
        self.hold = None;
        self.take_legs().await;
        match self.take_idle(Side::A) {
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

    /// Starts recording the caller, for at most `max` (or until `silence`
    /// long of it); what is notified when the silence ends it.
    pub async fn record(
        &mut self,
        max: Duration,
        silence: Option<Duration>,
    ) -> Result<Arc<tokio::sync::Notify>, ActionError> {
        self.hold = None;
        self.take_legs().await;
        let a = self
            .take_idle(Side::A)
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

    /// A keypress `from` sent in signalling, `duration` long (DTMF
    /// interworking, Asterisk's `dtmf_mode`): bridged, it goes into the
    /// other side's stream as RFC 4733 events when that side negotiated
    /// them, else to that side in signalling.
    pub fn signalled_digit(&self, from: Side, digit: rtp::Digit, duration: Duration) -> DigitTo {
        let Activity::Bridge(bridge) = &self.activity else {
            return DigitTo::Nowhere;
        };
        let (to, end) = match from {
            Side::A => (Side::B, End::B),
            Side::B => (Side::A, End::A),
        };
        if !bridge.takes_events(end) {
            DigitTo::Signalling(to)
        } else if bridge.send_digit(end, digit, duration) {
            DigitTo::Stream
        } else {
            DigitTo::Nowhere
        }
    }

    /// Whether a bridged side gets the other's RFC 4733 digits in
    /// signalling.
    pub fn interworks(&self) -> bool {
        self.signalled.is_some()
    }

    /// The next RFC 4733 digit from one bridged side for the other, which
    /// negotiated no telephone-events (see [`interworks`](Self::interworks)):
    /// that side and the digit. Cancel-safe; pending while there is none.
    pub async fn next_signalled_digit(&mut self) -> (Side, rtp::Digit) {
        if let Some((to, digits)) = &mut self.signalled
            && let Some(digit) = digits.next().await
        {
            return (*to, digit);
        }
        self.signalled = None;
        std::future::pending().await
    }

    /// Ends everything: what runs stops, the legs go (a recording cut off
    /// is kept for [`stop_recording`](Self::stop_recording)).
    pub fn release(&mut self) {
        if let Activity::Record(recorder) = std::mem::take(&mut self.activity) {
            self.orphan = Some(recorder);
        }
        self.activity = Activity::Idle;
        self.hold = None;
        self.signalled = None;
        self.a = None;
        self.b = None;
    }
}

/// For a bridge of `a` and `b` where exactly one side negotiated
/// telephone-events: the side without them, and the other's digits.
fn signalled(a: &Leg, b: &Leg) -> Option<(Side, media::Digits)> {
    let events = |leg: &Leg| leg.params().send_event_payload_type.is_some();
    match (events(a), events(b)) {
        (true, false) => Some((Side::B, a.handle().digits())),
        (false, true) => Some((Side::A, b.handle().digits())),
        _ => None,
    }
}
