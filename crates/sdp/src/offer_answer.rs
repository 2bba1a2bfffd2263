//! The offer/answer model (RFC 3264 §5 offers, §6 answers, §8 changing
//! the session) as pure functions, plus what a B2BUA needs after an
//! exchange: the negotiated codec and remote RTP address per section, and
//! the rewrite of an SDP onto its own address and ports (media anchoring).
//!
//! Policy, where RFC 3264 leaves a choice to the answerer:
//! - Formats are answered in **our** preference order ([`Local::codecs`]),
//!   as §6.1 recommends ("SHOULD ... in the order of preference of the
//!   answerer"), each under the offer's payload type number (§6.1).
//! - A section is accepted when it is `RTP/AVP`, its port is not 0, it
//!   has a `c=` (its own or the session's), we have a port for it, and at
//!   least one of our codecs of its kind (`audio`/`video`) is in the
//!   offer. Switchboard configures audio codecs only, so every non-audio
//!   section is refused. Telephone-event (or comfort noise) alone is not
//!   enough in a section that also offers voice codecs (DTMF without
//!   voice is useless there); a section that offers only events (an RFC
//!   4317 §2.4 tone stream) is accepted when we have telephone-event.
//!   Everything else is refused with port 0, keeping the offer's formats
//!   (§6: same number of `m=` lines in the same order).
//! - Direction: the offer's, seen from our side, intersected with what we
//!   want (§6.1): `sendonly` → `recvonly`, `recvonly` → `sendonly`,
//!   `inactive` → `inactive`. A direction attribute is always written.
//! - `a=ptime` is echoed from the offer, or ours ([`Local::ptime`]) when
//!   the offer has none. `a=fmtp` is echoed from the offer for each format
//!   we answer, or ours when the offer has none.
//! - `c=IN IP4 0.0.0.0` in an offer (the RFC 2543 hold / 3pcc black hole)
//!   does not change the direction; [`Stream::remote`] is `None` for it so
//!   nothing is sent there.

use std::net::{IpAddr, SocketAddr};

use crate::codec::{Codec, MediaKind, RtpMap};
use crate::error::Error;
use crate::model::{
    Address, Attribute, Connection, Direction, MediaDescription, Origin, SessionDescription, Timing,
};

/// The one transport protocol we answer (RFC 3551; no SRTP, no AVPF).
pub const RTP_AVP: &str = "RTP/AVP";

/// What we can do, and where, for building offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Our media address, written in `c=` (and `o=`).
    pub address: IpAddr,
    /// Our codecs in our order of preference, telephone-event included.
    pub codecs: Vec<Codec>,
    /// Our RTP port for each `m=` section, by index. A section without a
    /// port (or with port 0) is refused.
    pub ports: Vec<u16>,
    /// Packetization time we want to receive, in ms (written when the
    /// offer has none, and in our offers).
    pub ptime: Option<u32>,
    /// What we want to do: `SendRecv` normally, `SendOnly` to put the
    /// other side on hold, `Inactive` to stop both ways.
    pub direction: Direction,
}

impl Local {
    /// `address` with `codecs`, one port per section, `sendrecv`, no ptime.
    pub fn new(address: IpAddr, codecs: Vec<Codec>, ports: Vec<u16>) -> Self {
        Local {
            address,
            codecs,
            ports,
            ptime: None,
            direction: Direction::SendRecv,
        }
    }
}

/// Our side of one SDP session: the `o=` line we send and the last
/// description we sent, so that the version moves only when the
/// description changes (RFC 3264 §8, §5: "MUST be incremented" on change,
/// unchanged on an identical re-send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSession {
    origin: Origin,
    /// The last description sent, as sent: a call keeps one per side for
    /// its whole length, and the text is a third the size of the parsed
    /// form.
    last_sent: Option<Box<[u8]>>,
}

impl LocalSession {
    /// A session whose first description will carry `origin` as given
    /// (choose `session_id` unique, e.g. random; the first version is
    /// usually small or equal to the id).
    pub fn new(origin: Origin) -> Self {
        LocalSession {
            origin,
            last_sent: None,
        }
    }

    /// A session with `o=- <session_id> <session_id> IN IP4|IP6 <address>`
    /// (the first version equal to the id, as RFC 4317's examples and most
    /// phones do; pick an id below 2^63 so the version never wraps).
    pub fn with_id(session_id: u64, address: IpAddr) -> Self {
        LocalSession::new(Origin {
            username: "-".to_owned(),
            session_id: session_id.to_string(),
            session_version: session_id,
            address: Address::Ip(address),
        })
    }

    /// The `o=` the last description carried (or the first will carry).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The last description [`LocalSession::stamp`] returned, as text.
    pub fn last_sent_bytes(&self) -> Option<&[u8]> {
        self.last_sent.as_deref()
    }

    /// The last description [`LocalSession::stamp`] returned (parsed again
    /// from its text; `None` if nothing was sent).
    pub fn last_sent(&self) -> Option<SessionDescription> {
        crate::parse(self.last_sent.as_deref()?).ok()
    }

    /// Puts our `o=` on `sdp` and records it as sent: the version is
    /// incremented when anything but `o=` differs from the last one sent
    /// (RFC 3264 §8), and kept when it is the same (§8: a re-sent
    /// description keeps its version).
    pub fn stamp(&mut self, mut sdp: SessionDescription) -> SessionDescription {
        sdp.origin = self.origin.clone();
        let mut text = sdp.to_bytes();
        if let Some(last) = &self.last_sent
            && **last != *text
        {
            self.origin.session_version = self.origin.session_version.wrapping_add(1);
            sdp.origin.session_version = self.origin.session_version;
            text = sdp.to_bytes();
        }
        self.last_sent = Some(text.into_boxed_slice());
        sdp
    }
}

fn skeleton(address: IpAddr) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: "-".to_owned(),
            session_id: "0".to_owned(),
            session_version: 0,
            address: Address::Ip(address),
        },
        // RFC 3264 §5: a single space or a dash for unicast sessions.
        session_name: "-".to_owned(),
        information: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: Some(Connection::ip(address)),
        bandwidths: Vec::new(),
        timings: vec![Timing {
            start: 0,
            stop: 0,
            repeats: Vec::new(),
        }],
        time_zones: None,
        key: None,
        attributes: Vec::new(),
        media: Vec::new(),
    }
}

/// One format of a section we write: payload type, rtpmap, fmtp.
struct Format {
    payload_type: u8,
    rtpmap: RtpMap,
    fmtp: Option<String>,
}

fn section(
    kind: &str,
    port: u16,
    formats: &[Format],
    ptime: Option<String>,
    direction: Direction,
) -> MediaDescription {
    let mut m = MediaDescription::new(kind, port, RTP_AVP);
    for f in formats {
        m.formats.push(f.payload_type.to_string());
        m.attributes.push(Attribute::new(
            "rtpmap",
            format!("{} {}", f.payload_type, f.rtpmap),
        ));
        if let Some(p) = &f.fmtp {
            m.attributes
                .push(Attribute::new("fmtp", format!("{} {p}", f.payload_type)));
        }
    }
    if let Some(p) = ptime {
        m.attributes.push(Attribute::new("ptime", p));
    }
    m.attributes.push(Attribute::flag(direction.as_str()));
    m
}

fn refused(offered: &MediaDescription) -> MediaDescription {
    let mut m = MediaDescription::new(offered.media.clone(), 0, offered.proto.clone());
    m.formats = offered.formats.clone();
    m
}

/// Builds an offer (RFC 3264 §5): one `m=` section per entry of `kinds`,
/// on `local.ports[i]`, listing our codecs of that kind in our order; a
/// kind with no codec or no port gets a disabled (port 0) section.
pub fn offer(local: &Local, kinds: &[MediaKind], session: &mut LocalSession) -> SessionDescription {
    let mut sdp = skeleton(local.address);
    for (i, kind) in kinds.iter().enumerate() {
        let formats: Vec<Format> = local
            .codecs
            .iter()
            .filter(|c| c.kind == *kind)
            .map(|c| Format {
                payload_type: c.payload_type,
                rtpmap: c.rtpmap(),
                fmtp: c.fmtp.as_ref().map(|f| f.to_string()),
            })
            .collect();
        let port = local.ports.get(i).copied().unwrap_or(0);
        if formats.is_empty() || port == 0 {
            let mut m = MediaDescription::new(kind.as_str(), 0, RTP_AVP);
            m.formats = match formats.first() {
                Some(f) => vec![f.payload_type.to_string()],
                None => vec!["0".to_owned()],
            };
            sdp.media.push(m);
            continue;
        }
        let ptime = local
            .ptime
            .filter(|_| *kind == MediaKind::Audio)
            .map(|p| p.to_string());
        sdp.media.push(section(
            kind.as_str(),
            port,
            &formats,
            ptime,
            local.direction,
        ));
    }
    session.stamp(sdp)
}

/// The formats of offered section `m` we answer, in our preference order
/// under the offer's numbers; `None` when the section must be refused.
fn answer_formats(m: &MediaDescription, kind: MediaKind, local: &Local) -> Option<Vec<Format>> {
    let offered = m.rtpmaps();
    let mut out: Vec<Format> = Vec::new();
    for codec in local.codecs.iter().filter(|c| c.kind == kind) {
        let found = offered
            .iter()
            .find(|(pt, map)| codec.matches(map) && !out.iter().any(|f| f.payload_type == *pt));
        if let Some((pt, map)) = found {
            out.push(Format {
                payload_type: *pt,
                rtpmap: map.clone(),
                fmtp: m
                    .fmtp(*pt)
                    .map(|f| f.params.to_owned())
                    .or_else(|| codec.fmtp.as_ref().map(|f| f.to_string())),
            });
        }
    }
    let has_voice = out.iter().any(|f| f.rtpmap.is_voice());
    let offer_has_voice =
        offered.iter().any(|(_, map)| map.is_voice()) || m.payload_types().count() > offered.len();
    (has_voice || (!out.is_empty() && !offer_has_voice)).then_some(out)
}

/// Answers `offer` (RFC 3264 §6) with what `local` can do; see the module
/// documentation for the policy. The answer has the offer's `m=` sections
/// in the same order; `session` stamps its `o=` (§8 versioning).
pub fn answer(
    offer: &SessionDescription,
    local: &Local,
    session: &mut LocalSession,
) -> SessionDescription {
    let mut sdp = skeleton(local.address);
    for (i, m) in offer.media.iter().enumerate() {
        let port = local.ports.get(i).copied().unwrap_or(0);
        let usable = port != 0
            && m.port != 0
            && m.proto.eq_ignore_ascii_case(RTP_AVP)
            && offer.connection(i).is_some();
        let formats = MediaKind::from_media(&m.media)
            .filter(|_| usable)
            .and_then(|kind| answer_formats(m, kind, local));
        let Some(formats) = formats else {
            sdp.media.push(refused(m));
            continue;
        };
        let direction = offer.direction(i).reverse().intersect(local.direction);
        let ptime = m
            .attribute_value("ptime")
            .map(str::to_owned)
            .or_else(|| local.ptime.map(|p| p.to_string()));
        sdp.media
            .push(section(&m.media, port, &formats, ptime, direction));
    }
    session.stamp(sdp)
}

/// Which side of the exchange we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the offer; the remote description is the answer.
    Offerer,
    /// We sent the answer; the remote description is the offer.
    Answerer,
}

/// The codec a section settled on, with the payload type numbers each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    /// What it is (as the answer names it).
    pub rtpmap: RtpMap,
    /// The number we send it with: the remote description's (RFC 3264
    /// §5.1: the numbers in an SDP are the ones its writer receives).
    pub send_payload_type: u8,
    /// The number we receive it with: our description's.
    pub recv_payload_type: u8,
    /// The answer's `a=fmtp` for it.
    pub fmtp: Option<String>,
}

/// One `m=` section after an offer/answer exchange, from our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Index of the `m=` section.
    pub index: usize,
    /// Its media type (`audio`, `video`, …).
    pub media: String,
    /// Whether both sides have a non-zero port (the stream is on).
    pub accepted: bool,
    /// The codec to send: the answer's first format that is neither
    /// telephone-event nor comfort noise (RFC 3264 §6.1, §7). `None` when
    /// refused.
    pub codec: Option<NegotiatedCodec>,
    /// RFC 4733 telephone-event, when both sides have it.
    pub telephone_event: Option<NegotiatedCodec>,
    /// Where to send RTP: the remote description's effective `c=` and
    /// port. `None` when refused, for a domain name (resolving is IO), or
    /// for the hold address `0.0.0.0`.
    pub remote: Option<SocketAddr>,
    /// What we may do: our direction intersected with the remote's seen
    /// from our side (`Inactive` when refused).
    pub direction: Direction,
    /// The remote's `a=ptime`: how it wants to receive.
    pub remote_ptime: Option<u32>,
}

/// The offer's format for a codec the answer names: the same number when
/// it means the same codec, else any that does.
fn counterpart(offer: &MediaDescription, pt: u8, map: &RtpMap) -> Option<u8> {
    let same = |m: &RtpMap| {
        m.encoding.eq_ignore_ascii_case(&map.encoding)
            && m.clock_rate == map.clock_rate
            && m.channels == map.channels
    };
    if offer.rtpmap(pt).is_some_and(|m| same(&m)) && offer.payload_types().any(|p| p == pt) {
        return Some(pt);
    }
    offer
        .rtpmaps()
        .into_iter()
        .find(|(_, m)| same(m))
        .map(|(p, _)| p)
}

/// Reads a finished exchange: per `m=` section, what to send, how and
/// where. `role` says which description is ours. Fails only when the
/// answer does not have the offer's number of sections (§6).
pub fn negotiate(
    offer: &SessionDescription,
    answer: &SessionDescription,
    role: Role,
) -> Result<Vec<Stream>, Error> {
    if offer.media.len() != answer.media.len() {
        return Err(Error::SectionCount {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let (ours, remote) = match role {
        Role::Offerer => (offer, answer),
        Role::Answerer => (answer, offer),
    };
    let mut streams = Vec::with_capacity(offer.media.len());
    for (i, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        let accepted = o.port != 0 && a.port != 0;
        let mut codec = None;
        let mut telephone_event = None;
        if accepted {
            for (pt, map) in a.rtpmaps() {
                let Some(offer_pt) = counterpart(o, pt, &map) else {
                    continue;
                };
                let (send, recv) = match role {
                    Role::Offerer => (pt, offer_pt),
                    Role::Answerer => (offer_pt, pt),
                };
                let slot = if map.is_telephone_event() {
                    &mut telephone_event
                } else if map.is_voice() {
                    &mut codec
                } else {
                    continue;
                };
                if slot.is_none() {
                    *slot = Some(NegotiatedCodec {
                        fmtp: a.fmtp(pt).map(|f| f.params.to_owned()),
                        rtpmap: map,
                        send_payload_type: send,
                        recv_payload_type: recv,
                    });
                }
            }
        }
        let remote_addr = remote
            .rtp_address(i)
            .filter(|s| accepted && !s.ip().is_unspecified());
        let direction = if accepted {
            ours.direction(i).intersect(remote.direction(i).reverse())
        } else {
            Direction::Inactive
        };
        streams.push(Stream {
            index: i,
            media: o.media.clone(),
            accepted,
            codec,
            telephone_event,
            remote: remote_addr,
            direction,
            remote_ptime: remote.media[i].ptime(),
        });
    }
    Ok(streams)
}

/// Attributes that carry the writer's own transport addresses (RFC 3605
/// `a=rtcp`, RFC 8839 ICE): wrong once media is anchored elsewhere.
const ADDRESS_ATTRIBUTES: &[&str] = &[
    "rtcp",
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
];

/// Rewrites a description onto our media address and ports (anchoring):
/// the session `c=` and the `o=` address become `address`; media-level
/// `c=` lines go; every enabled section `i` gets `ports[i]` (port 0 when
/// there is none, which refuses it rather than leak the peer's address);
/// disabled sections stay at 0; `a=rtcp` and ICE attributes are removed
/// (RTCP then goes to port + 1, RFC 3550 §11). Codecs, directions and
/// other attributes are left alone. Restamp the `o=` with the leg's
/// [`LocalSession::stamp`] before sending.
pub fn rewrite_connection(sdp: &mut SessionDescription, address: IpAddr, ports: &[u16]) {
    sdp.origin.address = Address::Ip(address);
    sdp.connection = Some(Connection::ip(address));
    sdp.attributes
        .retain(|a| !ADDRESS_ATTRIBUTES.contains(&a.name.as_str()));
    for (i, m) in sdp.media.iter_mut().enumerate() {
        m.connections.clear();
        m.port_count = None;
        if m.port != 0 {
            m.port = ports.get(i).copied().unwrap_or(0);
        }
        m.attributes
            .retain(|a| !ADDRESS_ATTRIBUTES.contains(&a.name.as_str()));
    }
}
