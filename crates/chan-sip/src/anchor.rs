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
//! call's [`CallMedia`] keeps no endpoint: its sides `A` and `B` are
//! legs lent by whoever keeps the parties' endpoints, the caller's
//! `SipChannel` (from our first SDP to it: ringback and early media play
//! on its leg before the answer), a dial's target whose early media is
//! heard (its endpoint settles its 18x and 2xx), the bridged party's
//! `SipChannel`; each answers its own phone's offers (the call gives a
//! leg back whenever nothing runs on it, and takes it again for what it
//! starts, so an endpoint holds its leg when nothing runs on it, and
//! watches it, and sets its codec). What `CallMedia` adds is the codec
//! each side's lent leg has, and the stage: what plays on the two legs
//! is `pbx`'s [`pbx::Stage`] (bridge, hold music, prompts, ringback,
//! recording, echo).

mod endpoint;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::{Latching, Leg, MediaTimeout, PortPool, Prompt, Recording};
use pbx::ActionError;
use sdp::{Codec, Direction, SessionDescription};
use tokio::sync::oneshot;

use endpoint::answerable;
pub(crate) use endpoint::{MediaEndpoint, Settled, offered_names, parse};

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

/// The stage's side for `which`.
fn stage_side(which: Which) -> pbx::Side {
    match which {
        Which::A => pbx::Side::A,
        Which::B => pbx::Side::B,
    }
}

impl Which {
    fn other(self) -> Which {
        match self {
            Which::A => Which::B,
            Which::B => Which::A,
        }
    }
}

/// A party's silence watch: a clone of its leg's timeout while the leg
/// should be receiving. Its keeper folds [`Watch::deadline`] into its one
/// timer and asks [`Watch::expired`] when it fires (a timer per party was
/// a sizeable part of every call's task).
pub(crate) struct Watch(Option<MediaTimeout>);

impl Watch {
    /// The watch of `party`'s leg (none without media).
    pub fn one(party: Option<&MediaEndpoint>) -> Watch {
        Watch(party.and_then(MediaEndpoint::watched))
    }

    /// When the leg will have been silent too long, unless RTP comes
    /// before.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.as_ref().map(MediaTimeout::deadline)
    }

    /// How long the leg has been silent at `now`, if too long.
    pub fn expired(&self, now: Instant) -> Option<Duration> {
        self.0.as_ref()?.silent_at(now)
    }
}

/// Checks an inbound party's offer before its call is routed: it must
/// parse and hold an audio section we can answer; the offer, kept for
/// our answer. An INVITE without SDP is fine (`None`): we offer in our
/// 200 (RFC 3261 §13.2.1).
pub(crate) fn check_offer(
    config: &MediaConfig,
    body: &[u8],
) -> Result<Option<Box<SessionDescription>>, Failure> {
    if body.is_empty() {
        return Ok(None);
    }
    let offer = parse(body)?;
    answerable(config, &offer)?;
    Ok(Some(Box::new(offer)))
}

/// The media of one call: its two parties' endpoints and what runs on
/// their legs. A party's SDP state is its endpoint's; what this adds is
/// the pairing: an offer from one side passed on to the other (RFC 3264
/// §8, hold stays hold), the codec the other side uses preferred, and the
/// activity (bridge, prompt, music) restarted when a codec changes.
pub(crate) struct CallMedia {
    config: Arc<MediaConfig>,
    /// The caller's channel keeps its endpoint and lends its leg (in the
    /// stage, or back with the channel when idle): the codec of that leg,
    /// to put first towards the callee.
    caller_lent: Option<&'static str>,
    /// The callee's leg is lent by whoever keeps its endpoint (a dial's
    /// target while its early media is heard, the bridged party's
    /// channel), in the stage or, idle, waiting for the call to give it
    /// back: its codec, to put first towards the caller.
    callee_lent: Option<&'static str>,
    /// What plays on the two legs (`pbx`'s: protocol-free), lent by the
    /// parties' keepers.
    stage: pbx::Stage,
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
            caller_lent: None,
            callee_lent: None,
            stage: pbx::Stage::new(),
        }
    }

    /// The codec the callee uses, to put first towards the caller.
    pub fn callee_codec(&self) -> Vec<String> {
        self.callee_lent
            .map(|codec| vec![codec.to_owned()])
            .unwrap_or_default()
    }

    /// A new party for one target of a dial, whose SIP reaches us on
    /// `sip_ip`: its own ports and our offer to it, our codecs with the
    /// caller's (or its leg's) first so the bridge can relay rather than
    /// transcode; only the codecs of `only` (a trunk's `codecs`, in its
    /// order) that we have, all of ours when none of them is a voice codec
    /// we have. Each target of a fork gets its own, as Asterisk's and
    /// FreeSWITCH's forks do: whichever answers (or sends early media,
    /// or is asked to confirm) is heard on its own ports.
    /// `prefer` is the caller's (`SipChannel::preferred`).
    pub fn callee_endpoint(
        &self,
        sip_ip: Option<IpAddr>,
        only: Option<&[Codec]>,
        prefer: &[String],
    ) -> Result<(Box<MediaEndpoint>, Bytes), Failure> {
        let mut party = MediaEndpoint::open(&self.config, sip_ip, false)?;
        let offer = party.offer(prefer, Direction::SendRecv, only);
        Ok((party, offer))
    }

    /// Joins the caller's and the callee's media.
    pub async fn bridge(&mut self) {
        self.stage.bridge().await;
    }

    /// `holder` put the call on hold: the other side hears `music`, looped,
    /// continuing the stream it was getting; the holder's leg is parked,
    /// so it gets nothing.
    pub async fn hold(&mut self, holder: Which, music: Arc<Prompt>) {
        self.stage.hold(stage_side(holder), music).await;
    }

    /// Who holds the call, if one side does.
    pub fn held_by(&self) -> Option<Which> {
        self.stage.held_by().map(|side| match side {
            pbx::Side::A => Which::A,
            pbx::Side::B => Which::B,
        })
    }

    /// The hold ends: the music stops and the two sides are joined again.
    pub async fn unhold(&mut self) {
        self.stage.unhold().await;
    }

    /// The music class `name` (`sounds/moh/NAME.wav`), if it was loaded.
    pub fn music(&self, name: &str) -> Option<Arc<Prompt>> {
        self.config.moh.get(name).cloned()
    }

    /// Sends the caller's media back to it.
    pub async fn echo(&mut self) {
        self.stage.echo().await;
    }

    /// The caller alone with nothing playing (after answering).
    pub async fn listen(&mut self) {
        self.stage.listen();
    }

    /// Plays `prompt` to the caller; `done` hears when it has been played.
    pub async fn play(
        &mut self,
        prompt: Arc<Prompt>,
        done: oneshot::Sender<Result<(), ActionError>>,
    ) {
        self.stage.play(prompt, done).await;
    }

    /// Stops the prompt playing, if one is (barge-in): the caller is
    /// listened to again.
    pub async fn stop_playing(&mut self) {
        self.stage.stop_playing().await;
    }

    /// Ringback to the caller (answered already) while a dial rings.
    pub async fn ringback(&mut self) {
        let Some(tone) = media::tones::ringback(self.config.tone_zone) else {
            return;
        };
        self.stage.ringback(tone).await;
    }

    /// Whether the caller hears ringback.
    pub fn is_ringback(&self) -> bool {
        self.stage.is_ringback()
    }

    /// The ringback ends (the dial did): the caller is listened to.
    pub async fn stop_ringback(&mut self) {
        self.stage.stop_ringback().await;
    }

    /// Starts recording the caller, for at most `max`.
    pub async fn record(
        &mut self,
        max: Duration,
        silence: Option<Duration>,
    ) -> Result<Arc<tokio::sync::Notify>, ActionError> {
        self.stage.record(max, silence).await
    }

    /// Stops the recording (running, or cut off by the call's end) and
    /// hands it over.
    pub async fn stop_recording(&mut self) -> Option<Recording> {
        self.stage.stop_recording().await
    }

    /// A digit `from` sent in SIP INFO, `duration` long (DTMF
    /// interworking, Asterisk's `dtmf_mode`), while bridged: it goes into
    /// the other side's stream as RFC 4733 events when that side
    /// negotiated them, else to that side in an INFO.
    pub fn signalled_digit(&self, from: Which, digit: rtp::Digit, duration: Duration) -> DigitTo {
        if !self.stage.is_bridged() {
            return DigitTo::Nowhere;
        }
        match self
            .stage
            .signalled_digit(stage_side(from), digit, duration)
        {
            pbx::DigitTo::Stream => DigitTo::Stream,
            pbx::DigitTo::Signalling(_) => DigitTo::Info(from.other()),
            _ => {
                tracing::debug!(digit = %digit, "keypress dropped: 16 already wait to cross the bridge");
                DigitTo::Nowhere
            }
        }
    }

    /// Whether a bridged side gets the other's RFC 4733 digits in INFO.
    pub fn interworks(&self) -> bool {
        self.stage.interworks()
    }

    /// The next RFC 4733 digit from one bridged side for the other, which
    /// negotiated no telephone-events (see [`interworks`](Self::interworks)):
    /// that side and the digit. Cancel-safe; pending while there is none.
    pub async fn next_info_digit(&mut self) -> (Which, rtp::Digit) {
        let (to, digit) = self.stage.next_signalled_digit().await;
        let to = match to {
            pbx::Side::A => Which::A,
            pbx::Side::B => Which::B,
        };
        (to, digit)
    }

    /// Whether the two sides are joined.
    pub fn is_bridged(&self) -> bool {
        self.stage.is_bridged()
    }

    /// Ends all media: what runs stops, the ports go back to the pool.
    pub fn release(&mut self) {
        self.stage.release();
        self.caller_lent = None;
        self.callee_lent = None;
    }
}

impl CallMedia {
    /// Stops what runs on the legs, which stay in the stage, idle, for
    /// the call to give back; nothing runs until told.
    async fn stop_all(&mut self) {
        self.stage.stop_all().await;
    }

    /// The callee's leg, lent by whoever keeps its endpoint (the bridged
    /// party's channel; a dial's target whose early media is heard), as
    /// the callee side's: [`bridge`](Self::bridge) joins it to the
    /// caller. Given while nothing runs on the callee side.
    pub fn lend_callee(&mut self, leg: Leg) {
        self.callee_lent = Some(leg.params().codec.name());
        self.stage.give(pbx::Side::B, leg);
    }

    /// The lent leg, when nothing runs on it: its channel has it back (to
    /// watch it, and set it to what its phone settles on).
    pub fn idle_callee(&mut self) -> Option<Leg> {
        self.callee_lent?;
        self.stage.take_idle(pbx::Side::B)
    }

    /// The callee leaves (the bridged party; a dial's target heard no
    /// more): what ran on the legs stops, its lent leg comes back (for
    /// whoever keeps its endpoint), and the caller is listened to.
    pub async fn return_callee(&mut self) -> Option<Leg> {
        self.stop_all().await;
        let leg = self.idle_callee();
        self.callee_lent = None;
        self.listen().await;
        leg
    }

    /// Stops what runs on the legs, for it to be started again with
    /// [`go_on`](Self::go_on) (a party's new codec: its leg goes back to
    /// its keeper meanwhile).
    pub async fn suspend(&mut self) -> pbx::Suspended {
        self.stage.suspend().await
    }

    /// Starts again what [`suspend`](Self::suspend) stopped.
    pub async fn go_on(&mut self, suspended: pbx::Suspended) {
        self.stage.go_on(suspended);
    }

    /// The caller's leg, lent by its channel, as side `A`'s.
    pub fn lend_caller(&mut self, leg: Leg) {
        self.caller_lent = Some(leg.params().codec.name());
        self.stage.give(pbx::Side::A, leg);
    }

    /// The caller's lent leg, when nothing runs on it: its channel has it
    /// back.
    pub fn idle_caller(&mut self) -> Option<Leg> {
        self.caller_lent?;
        self.stage.take_idle(pbx::Side::A)
    }

    /// The answered caller leaves: what ran on the legs stops and its
    /// lent leg comes back (for its channel).
    pub async fn return_caller(&mut self) -> Option<Leg> {
        self.stop_all().await;
        let leg = self.idle_caller();
        self.caller_lent = None;
        leg
    }
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
        let c = config();
        let status = |body: &[u8]| {
            check_offer(&c, body)
                .map(|o| o.is_some())
                .map_err(|f| f.status())
        };
        assert_eq!(status(b""), Ok(false), "no offer: we offer in our 200");
        assert_eq!(status(b"garbage"), Err(400));
        let g729 = b"v=0\r\no=- 1 1 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
        let refused = check_offer(&c, g729).unwrap_err();
        assert_eq!(refused.status(), 488);
        assert!(refused.text().contains("PCMU"), "{}", refused.text());
        assert_eq!(status(OFFER), Ok(true));
    }

    #[tokio::test]
    async fn the_callee_is_offered_the_callers_codec_first_and_the_caller_gets_its_own() {
        let c = config();
        let mut m = CallMedia::new(c.clone());
        let caller_offer = check_offer(&c, OFFER).unwrap().expect("an offer");
        let ip = Some("127.0.0.1".parse().unwrap());
        let prefer = offered_names(&caller_offer);
        let (callee, offer) = m.callee_endpoint(ip, None, &prefer).unwrap();
        let offer = parse(&offer).unwrap();
        let audio = &offer.media[0];
        assert_eq!(audio.formats[0], "8", "PCMA, the caller's first: {offer:?}");
        assert_ne!(audio.port, 4000);
        // The callee answers PCMU only, on its own address; its endpoint
        // (its keeper's) settles it and lends the call its leg.
        let mut callee = callee;
        let answer = "v=0\r\no=- 2 2 IN IP4 127.0.0.12\r\ns=-\r\nc=IN IP4 127.0.0.12\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let stream = callee.read_answer(answer.as_bytes()).unwrap();
        assert_eq!(callee.settle(&stream).unwrap(), Settled::Done);
        m.lend_callee(callee.take_leg().expect("its leg, made by its answer"));
        assert_eq!(m.callee_codec(), ["PCMU"]);
        // The caller's answer, on its own endpoint (its channel's), the
        // callee's codec first.
        let mut caller = MediaEndpoint::open(&c, ip, true).unwrap();
        let (ours, _) = caller
            .answer(&caller_offer, &m.callee_codec(), Direction::SendRecv)
            .unwrap();
        let ours = parse(&ours).unwrap();
        // Its sections in order, video refused, audio on our address and
        // port, PCMU first (no transcoding needed), and recvonly for its
        // sendonly.
        assert_eq!(ours.media.len(), 2);
        assert_eq!(ours.media[0].port, 0);
        let a = &ours.media[1];
        assert_eq!(a.formats[0], "0", "{ours:?}");
        assert_eq!(ours.direction(1), Direction::RecvOnly);
        assert_eq!(ours.rtp_address(1).unwrap().ip().to_string(), "127.0.0.1");
        // Kept, for the same bytes again in a 200 after a 183.
        assert_eq!(caller.last_sent(), Some(Bytes::from(ours.to_bytes())));
    }
}
