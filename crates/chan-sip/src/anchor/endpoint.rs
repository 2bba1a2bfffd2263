//! One party's anchored media (docs/call-core.md, "the SIP channel
//! driver"): the port pair leased for it, our SDP session towards it and
//! its offer/answer state (RFC 3264 §5, §6, re-offers §8), and its
//! [`media::Leg`]. It belongs to the party, not to a call: a call holds
//! one per side ([`CallMedia`](super::CallMedia)), a
//! [`SipChannel`](crate::channel::SipChannel) its own, and moving the
//! party moves it. It answers its own party's offers; what runs on its
//! leg (a bridge, a prompt) is its owner's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use media::{Leg, LegHandle, MediaTimeout, PortPair, StreamParams};
use sdp::{Codec, Direction, Local, LocalSession, MediaKind, Role, SessionDescription};

use super::{Failure, MediaConfig};

/// Parses an SDP body with the parser's limits; `Malformed` names the line.
pub(crate) fn parse(body: &[u8]) -> Result<SessionDescription, Failure> {
    sdp::parse(body).map_err(|e| Failure::Malformed(format!("bad SDP: {e}")))
}

/// The first accepted audio stream of an exchange.
fn audio(streams: Vec<sdp::Stream>) -> Result<sdp::Stream, Failure> {
    streams
        .into_iter()
        .find(|s| s.media.eq_ignore_ascii_case("audio") && s.accepted && s.codec.is_some())
        .ok_or_else(|| Failure::NotAcceptable("no audio stream was accepted".into()))
}

/// Our ports for answering `offer`: `port` on its first audio section,
/// 0 (refused) on every other.
pub(super) fn ports_for(offer: &SessionDescription, port: u16) -> Vec<u16> {
    let mut ports = vec![0; offer.media.len()];
    if let Some(i) = offer
        .media
        .iter()
        .position(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
    {
        ports[i] = port;
    }
    ports
}

/// The direction of an offer's first audio section, as its writer says.
pub(super) fn audio_direction(sdp: &SessionDescription) -> Direction {
    sdp.media
        .iter()
        .position(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .map_or(Direction::SendRecv, |i| sdp.direction(i))
}

/// The encoding names of an offer's first audio section, in its order.
pub(crate) fn offered_names(sdp: &SessionDescription) -> Vec<String> {
    sdp.media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .map(|m| {
            m.payload_types()
                .filter_map(|pt| m.rtpmap(pt))
                .map(|map| map.encoding.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that we can answer `offer` with `config`'s codecs (an audio
/// section with one of them), without leasing anything.
pub(super) fn answerable(config: &MediaConfig, offer: &SessionDescription) -> Result<(), Failure> {
    let ip = config.bind;
    let local = Local::new(ip, config.codecs.clone(), ports_for(offer, 1));
    let trial = sdp::answer(offer, &local, &mut LocalSession::with_id(1, ip));
    let streams = sdp::negotiate(offer, &trial, Role::Answerer)
        .map_err(|e| Failure::Malformed(format!("bad SDP: {e}")))?;
    let stream = audio(streams).map_err(|_| {
        let ours: Vec<&str> = config.codecs.iter().map(|c| c.encoding.as_ref()).collect();
        Failure::NotAcceptable(format!(
            "no audio stream with a codec we have ({})",
            ours.join(", ")
        ))
    })?;
    StreamParams::from_sdp(&stream)
        .map(|_| ())
        .map_err(|e| Failure::NotAcceptable(e.to_string()))
}

/// What [`MediaEndpoint::settle`] did with a negotiated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Settled {
    /// Applied: the leg made, or changed in place (address, direction).
    Done,
    /// A new codec while the leg is away: what runs on it was made for the
    /// old one and must be restarted; the leg takes the new codec when it
    /// is given back ([`MediaEndpoint::park_leg`]).
    Restart,
}

/// One party's media (see the module docs).
pub(crate) struct MediaEndpoint {
    config: Arc<MediaConfig>,
    /// Our address in the SDP we send the party.
    address: IpAddr,
    /// Our `o=` line and the last description we sent (RFC 3264 §8).
    session: LocalSession,
    rtp_port: u16,
    /// The pair, until the leg is made (boxed: a pair is 104 bytes, which
    /// the endpoint would keep for the whole call after the leg took it).
    ports: Option<Box<PortPair>>,
    /// Our offer whose answer has not come yet.
    our_offer: Option<Box<SessionDescription>>,
    /// What the last exchange settled on.
    params: Option<StreamParams>,
    remote: Option<SocketAddr>,
    /// The IP the party's SIP comes from: its RTP may come from there.
    signalling: Option<IpAddr>,
    direction: Direction,
    /// The leg, while nothing runs on it.
    leg: Option<Box<Leg>>,
    handle: Option<LegHandle>,
    timeout: Option<MediaTimeout>,
    /// Whether the leg keeps digits from its first packet on (a caller's:
    /// a key pressed right after the answer is not lost); a subscription
    /// costs a queue, so other parties' legs have none until asked.
    keeps_digits: bool,
    digits: Option<media::Digits>,
}

impl MediaEndpoint {
    /// Leases a port pair for a party whose SIP reaches us on `sip_ip`,
    /// advertising an address it can reach.
    pub fn open(
        config: &Arc<MediaConfig>,
        sip_ip: Option<IpAddr>,
        keeps_digits: bool,
    ) -> Result<Box<MediaEndpoint>, Failure> {
        // With the wildcard bind, a phone that reaches us over IPv6 gets
        // sockets on the IPv6 wildcard.
        let bind = match (config.bind, sip_ip) {
            (IpAddr::V4(v4), Some(IpAddr::V6(_))) if v4.is_unspecified() => {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
            (bind, _) => bind,
        };
        let ports = config.pool.allocate(bind).map_err(|e| {
            // The caller gets 503 with this in a Warning; the operator
            // needs it too (a full port range, or the process out of
            // file descriptors: each anchored call holds four sockets).
            let hint = match &e {
                media::Error::Socket { source, .. } if source.raw_os_error() == Some(24) => {
                    " — the process is out of file descriptors: raise its open-files \
                         limit (ulimit -n, systemd LimitNOFILE); each call holds four sockets"
                }
                media::Error::Exhausted { .. } => " — widen [media] rtp_ports",
                _ => "",
            };
            tracing::warn!("media: {e}{hint}");
            Failure::NoPorts(e.to_string())
        })?;
        let address = config.advertise_for(sip_ip);
        Ok(Box::new(MediaEndpoint {
            config: config.clone(),
            address,
            session: LocalSession::with_id(rand::random::<u32>().into(), address),
            rtp_port: ports.rtp_port(),
            ports: Some(Box::new(ports)),
            our_offer: None,
            params: None,
            remote: None,
            signalling: None,
            direction: Direction::SendRecv,
            leg: None,
            handle: None,
            timeout: None,
            keeps_digits,
            digits: None,
        }))
    }

    /// The description we last sent the party.
    pub fn last_sent(&self) -> Option<Bytes> {
        self.session.last_sent_bytes().map(Bytes::copy_from_slice)
    }

    /// The text of `sdp`, which the session just stamped: the session
    /// kept it as it stamped it, so it is not written out again.
    fn sent(&self, sdp: &SessionDescription) -> Bytes {
        self.last_sent()
            .unwrap_or_else(|| Bytes::from(sdp.to_bytes()))
    }

    /// The codec the last exchange settled on, to prefer elsewhere.
    pub fn codec_name(&self) -> Option<&'static str> {
        self.params.map(|p| p.codec.name())
    }

    /// The codec to put first towards this party: the one it uses.
    pub fn preferred(&self) -> Vec<String> {
        self.codec_name().map(str::to_owned).into_iter().collect()
    }

    /// Our codecs, with the ones named in `prefer` first (in that order).
    fn local(&self, prefer: &[String], direction: Direction) -> Local {
        let mut codecs = self.config.codecs.clone();
        codecs.sort_by_key(|c| {
            prefer
                .iter()
                .position(|p| c.encoding.eq_ignore_ascii_case(p))
                .unwrap_or(usize::MAX)
        });
        Local {
            address: self.address,
            codecs,
            ports: vec![self.rtp_port],
            ptime: Some(20),
            direction,
        }
    }

    /// Our offer to the party (RFC 3264 §5; a re-offer §8 keeps the
    /// session's version line), `prefer` first, only the codecs of `only`
    /// (a trunk's, in its order) that we have, all of ours when none of
    /// them is a voice codec we have. Kept until its answer.
    pub fn offer(
        &mut self,
        prefer: &[String],
        direction: Direction,
        only: Option<&[Codec]>,
    ) -> Bytes {
        let mut local = self.local(prefer, direction);
        if let Some(only) = only {
            let ours = |c: &&Codec| {
                local
                    .codecs
                    .iter()
                    .any(|o| o.encoding.eq_ignore_ascii_case(&c.encoding))
            };
            let chosen: Vec<Codec> = only.iter().filter(ours).cloned().collect();
            if chosen.iter().any(|c| !c.is_telephone_event()) {
                local.codecs = chosen;
            }
        }
        let offer = sdp::offer(&local, &[MediaKind::Audio], &mut self.session);
        let bytes = self.sent(&offer);
        self.our_offer = Some(Box::new(offer));
        bytes
    }

    /// A late offer (the party's INVITE had none): ours, with a leg in the
    /// codec we prefer sending nowhere until the answer (or the party's
    /// first packet) says where.
    pub fn offer_late(&mut self, prefer: &[String]) -> Bytes {
        let bytes = self.offer(prefer, Direction::SendRecv, None);
        let codec = self
            .local(prefer, Direction::SendRecv)
            .codecs
            .iter()
            .find_map(|c| rtp::Codec::from_name(&c.encoding))
            .unwrap_or(rtp::Codec::Pcmu);
        self.make_leg(StreamParams::new(codec), None, Direction::SendRecv);
        bytes
    }

    /// Reads the party's answer (in a 18x or 2xx) to our offer, without
    /// applying it.
    pub fn read_answer(&self, body: &[u8]) -> Result<sdp::Stream, Failure> {
        let offer = self
            .our_offer
            .as_deref()
            .ok_or_else(|| Failure::NotAcceptable("an answer without our offer".into()))?;
        let (stream, _) = negotiate_answer(offer, body)?;
        StreamParams::from_sdp(&stream).map_err(|e| Failure::NotAcceptable(e.to_string()))?;
        Ok(stream)
    }

    /// The party's answer to our pending offer, which it closes: what it
    /// settles, and the direction the answer asks for.
    pub fn take_answer(&mut self, body: &[u8]) -> Result<(sdp::Stream, Direction), Failure> {
        let offer = self
            .our_offer
            .take()
            .ok_or_else(|| Failure::NotAcceptable("an answer without our offer".into()))?;
        negotiate_answer(&offer, body)
    }

    /// Whether an offer of ours waits for its answer.
    pub fn offering(&self) -> bool {
        self.our_offer.is_some()
    }

    /// Our offer is closed without an answer (refused, RFC 3264 §8: the
    /// session stays as it was, or a final 2xx settled it).
    pub fn withdraw_offer(&mut self) {
        self.our_offer = None;
    }

    /// Answers `offer` (RFC 3264 §6), wanting `direction`, `prefer` first:
    /// our answer's bytes and what it settles (to [`settle`](Self::settle)).
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        prefer: &[String],
        direction: Direction,
    ) -> Result<(Bytes, sdp::Stream), Failure> {
        let mut local = self.local(prefer, direction);
        local.ports = ports_for(offer, self.rtp_port);
        let answer = sdp::answer(offer, &local, &mut self.session);
        let bytes = self.sent(&answer);
        let streams = sdp::negotiate(offer, &answer, Role::Answerer)
            .map_err(|e| Failure::Malformed(format!("bad SDP: {e}")))?;
        Ok((bytes, audio(streams)?))
    }

    /// An offer the party makes to us alone (a re-INVITE or UPDATE with
    /// nobody to pass it to): answered on the same ports, its codec kept
    /// when it still offers it.
    pub fn answer_alone(&mut self, body: &[u8]) -> Result<(Bytes, Settled), Failure> {
        let offer = parse(body)?;
        answerable(&self.config, &offer)?;
        let prefer = self.preferred();
        let (bytes, stream) = self.answer(&offer, &prefer, Direction::SendRecv)?;
        Ok((bytes, self.settle(&stream)?))
    }

    /// The answer an ACK carries, to our offer in a 2xx (late offer, or an
    /// offerless re-INVITE). Ignored when we made no offer; an empty one
    /// closes it.
    pub fn ack_answer(&mut self, body: &[u8]) -> Result<Settled, Failure> {
        if !self.offering() {
            return Ok(Settled::Done);
        }
        if body.is_empty() {
            self.withdraw_offer();
            return Ok(Settled::Done);
        }
        let (stream, _) = self.take_answer(body)?;
        self.settle(&stream)
    }

    /// An offerless re-INVITE: our current description again as the offer
    /// (RFC 3264 §8.4 allows an unchanged one); the answer comes in the ACK.
    pub fn offer_again(&mut self) -> Option<Bytes> {
        let bytes = Bytes::copy_from_slice(self.session.last_sent_bytes()?);
        self.our_offer = Some(Box::new(self.session.last_sent()?));
        Some(bytes)
    }

    /// Where the party's SIP comes from (another fork may have answered):
    /// its leg takes RTP from that IP.
    pub fn set_signalling(&mut self, ip: IpAddr) {
        if self.signalling != Some(ip) {
            self.signalling = Some(ip);
            if let Some(handle) = &self.handle {
                handle.set_signalling(Some(ip));
            }
        }
    }

    /// Applies one negotiated stream: makes the leg, or changes where it
    /// sends and whether it sends, and its codec (on the parked leg; a
    /// leg away is changed when it comes back, see [`Settled::Restart`]).
    pub fn settle(&mut self, stream: &sdp::Stream) -> Result<Settled, Failure> {
        let (params, remote) =
            StreamParams::from_sdp(stream).map_err(|e| Failure::NotAcceptable(e.to_string()))?;
        let direction = stream.direction;
        let Some(handle) = &self.handle else {
            self.make_leg(params, remote, direction);
            return Ok(Settled::Done);
        };
        if self.params == Some(params) {
            if self.remote != remote {
                handle.set_remote(remote);
                handle.relatch();
            }
            handle.set_sending(direction.sends());
            self.remote = remote;
            self.direction = direction;
            return Ok(Settled::Done);
        }
        self.params = Some(params);
        self.remote = remote;
        self.direction = direction;
        match self.leg.take() {
            Some(leg) => {
                self.park_leg(*leg);
                Ok(Settled::Done)
            }
            None => Ok(Settled::Restart),
        }
    }

    /// Makes the leg (once: the pair goes into it).
    pub fn make_leg(
        &mut self,
        params: StreamParams,
        remote: Option<SocketAddr>,
        direction: Direction,
    ) {
        let Some(ports) = self.ports.take() else {
            return;
        };
        let mut leg = Leg::new(*ports, params, remote)
            .with_latching(self.config.latching)
            .with_signalling(self.signalling);
        leg.set_sending(direction.sends());
        let handle = leg.handle();
        self.timeout = self.config.rtp_timeout.map(|t| handle.media_timeout(t));
        if self.keeps_digits {
            self.digits = Some(handle.digits());
        }
        self.handle = Some(handle);
        self.leg = Some(Box::new(leg));
        self.params = Some(params);
        self.remote = remote;
        self.direction = direction;
    }

    /// The leg, for what runs on it; `None` while it is away (or not made).
    pub fn take_leg(&mut self) -> Option<Leg> {
        self.leg.take().map(|l| *l)
    }

    /// The leg back, set to the codec, address and direction the SDP
    /// settled on while it was away.
    pub fn park_leg(&mut self, mut leg: Leg) {
        if let Some(params) = self.params
            && leg.params() != params
        {
            leg.set_params(params);
        }
        if leg.remote() != self.remote {
            leg.set_remote(self.remote);
            leg.relatch();
        }
        leg.set_sending(self.direction.sends());
        self.leg = Some(Box::new(leg));
    }

    /// Its party has just answered: its leg's silence counts from now
    /// (it may have been made at a 183, or our 183, long before).
    pub fn answered(&self) {
        if let Some(timeout) = &self.timeout {
            timeout.restart(std::time::Instant::now());
        }
    }

    /// The party's digits: those since its leg was made the first time
    /// (for a caller), from now on after that.
    pub fn digits(&mut self) -> Option<media::Digits> {
        self.digits
            .take()
            .or_else(|| self.handle.as_ref().map(LegHandle::digits))
    }

    /// A digit the party sent in signalling (SIP INFO), offered to
    /// `read_digits` like an RFC 4733 one.
    pub fn push_digit(&self, digit: rtp::Digit) {
        if let Some(handle) = &self.handle {
            handle.push_digit(digit);
        }
    }

    /// The leg's silence timeout, when it should be receiving: made, run
    /// by something, and the party not on hold.
    pub fn watched(&self) -> Option<MediaTimeout> {
        let t = self.timeout.as_ref()?;
        (self.leg.is_none() && self.direction.receives()).then(|| t.clone())
    }
}

/// Negotiates `body`, an answer to our `offer`, down to its audio stream
/// and the direction its writer asks for.
fn negotiate_answer(
    offer: &SessionDescription,
    body: &[u8],
) -> Result<(sdp::Stream, Direction), Failure> {
    let answer = parse(body)?;
    let stream = audio(
        sdp::negotiate(offer, &answer, Role::Offerer)
            .map_err(|e| Failure::NotAcceptable(format!("bad answer: {e}")))?,
    )?;
    Ok((stream, audio_direction(&answer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::PortPool;

    fn config() -> Arc<MediaConfig> {
        Arc::new(MediaConfig::new(
            PortPool::new(24300..=24399).unwrap(),
            "127.0.0.1".parse().unwrap(),
        ))
    }

    fn offer(pt: &str, port: u16, direction: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt}\r\na={direction}\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn a_party_answers_its_own_offers_and_a_new_codec_waits_for_its_leg() {
        let ip = Some("127.0.0.1".parse().unwrap());
        let mut party = MediaEndpoint::open(&config(), ip, true).unwrap();
        // Its first offer: PCMU; the leg is made and parked here.
        let (ours, settled) = party.answer_alone(&offer("0", 4000, "sendrecv")).unwrap();
        assert_eq!(settled, Settled::Done);
        let ours = parse(&ours).unwrap();
        assert_eq!(ours.media[0].formats[0], "0");
        assert_eq!(party.codec_name(), Some("PCMU"));
        assert!(party.digits().is_some(), "a caller's digits are kept");
        // Something runs on the leg; the party moves to PCMA and holds
        // with nothing sent either way.
        let leg = party.take_leg().unwrap();
        assert!(party.watched().is_some(), "a running leg is watched");
        let (again, settled) = party.answer_alone(&offer("8", 4002, "inactive")).unwrap();
        assert_eq!(
            settled,
            Settled::Restart,
            "the running leg has the old codec"
        );
        assert_eq!(parse(&again).unwrap().direction(0), Direction::Inactive);
        assert!(
            party.watched().is_none(),
            "an inactive party is not watched"
        );
        // Given back, the leg takes what the SDP settled on meanwhile.
        assert_eq!(leg.params().codec, rtp::Codec::Pcmu);
        party.park_leg(leg);
        let leg = party.take_leg().unwrap();
        assert_eq!(leg.params().codec, rtp::Codec::Pcma);
        assert_eq!(leg.remote().map(|a| a.port()), Some(4002));
        // Same codec, a new address: changed in place, no restart.
        let (_, settled) = party.answer_alone(&offer("8", 4004, "sendrecv")).unwrap();
        assert_eq!(settled, Settled::Done);
        party.park_leg(leg);
        assert_eq!(
            party.take_leg().unwrap().remote().map(|a| a.port()),
            Some(4004)
        );
    }

    #[tokio::test]
    async fn answers_close_only_our_own_offers() {
        let ip = Some("127.0.0.1".parse().unwrap());
        let mut party = MediaEndpoint::open(&config(), ip, false).unwrap();
        // No offer of ours: an ACK's body is ignored, an answer refused.
        assert_eq!(
            party.ack_answer(&offer("0", 4000, "sendrecv")),
            Ok(Settled::Done)
        );
        assert_eq!(
            party
                .take_answer(&offer("0", 4000, "sendrecv"))
                .map_err(|f| f.status()),
            Err(488)
        );
        // Our offer (a trunk's codecs: PCMA only), answered with PCMA.
        let ours = party.offer(&[], Direction::SendRecv, Some(&[Codec::PCMA]));
        assert_eq!(parse(&ours).unwrap().media[0].formats, ["8"]);
        assert!(party.offering());
        let stream = party.read_answer(&offer("8", 5000, "sendrecv")).unwrap();
        assert!(
            party.offering(),
            "reading an answer does not close the offer"
        );
        assert_eq!(party.settle(&stream), Ok(Settled::Done));
        assert_eq!(party.codec_name(), Some("PCMA"));
        assert!(party.digits().is_some(), "asked for, a callee's digits too");
        party.withdraw_offer();
        // An offerless re-INVITE: our last description again, answered in
        // the ACK.
        assert_eq!(party.offer_again(), party.last_sent());
        let (stream, direction) = party.take_answer(&offer("8", 5002, "recvonly")).unwrap();
        assert_eq!(direction, Direction::RecvOnly);
        assert_eq!(party.settle(&stream), Ok(Settled::Done));
        assert!(!party.offering());
    }
}
