//! The session description as data (RFC 8866 §5): session-level fields,
//! `m=` sections, and the typed accessors offer/answer and media use
//! (RFC 8866 §6 attributes, RFC 3551 static payload types).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::codec::{self, RtpMap};

/// A parsed SDP session description (RFC 8866 §5).
///
/// Fields hold what the lines said; unknown attributes are kept in order.
/// [`crate::parse`] reads one and its `Display` writes it back with CRLF
/// line ends in the RFC 8866 §5 order. `v=` is always `0` and not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`: originator and session identifier.
    pub origin: Origin,
    /// `s=`: session name (`" "` when there is none to give, RFC 8866 §5.3).
    pub session_name: String,
    /// `i=`: session information.
    pub information: Option<String>,
    /// `u=`: URI of a description.
    pub uri: Option<String>,
    /// `e=` lines.
    pub emails: Vec<String>,
    /// `p=` lines.
    pub phones: Vec<String>,
    /// Session-level `c=`: the default for every `m=` section without one.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` lines, each with the `r=` lines that follow it (at least one).
    pub timings: Vec<Timing>,
    /// `z=`: time zone adjustments, as written.
    pub time_zones: Option<String>,
    /// Session-level `k=` (obsolete, kept for round trips).
    pub key: Option<String>,
    /// Session-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

/// The `o=` line (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user's login on the originating host, or `-`.
    pub username: String,
    /// Session id: a numeric string (kept as text, it may exceed 64 bits).
    pub session_id: String,
    /// Session version: incremented on every change (RFC 3264 §8).
    pub session_version: u64,
    /// Address of the originating host.
    pub address: Address,
}

/// `c=IN IP4 …` / `c=IN IP6 …` (RFC 8866 §5.7), with the multicast
/// TTL and number of addresses when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection address.
    pub address: Address,
    /// IPv4 multicast TTL (`/ttl`).
    pub ttl: Option<u8>,
    /// Number of multicast addresses (`/n`).
    pub count: Option<u32>,
}

impl Connection {
    /// A unicast connection to `ip`.
    pub fn ip(ip: IpAddr) -> Self {
        Connection {
            address: Address::Ip(ip),
            ttl: None,
            count: None,
        }
    }
}

/// A network address of `o=` or `c=`: `IN IP4` / `IN IP6`, an IP literal
/// or a fully qualified domain name (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// An IP literal (its family gives `IP4` or `IP6`).
    Ip(IpAddr),
    /// A domain name, with the address type it was given.
    Name {
        /// The domain name.
        name: String,
        /// `true` for `IP6`, `false` for `IP4`.
        ipv6: bool,
    },
}

impl Address {
    /// The IP address, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            Address::Name { .. } => None,
        }
    }

    /// `"IP4"` or `"IP6"`.
    pub fn addr_type(&self) -> &'static str {
        let v6 = match self {
            Address::Ip(ip) => ip.is_ipv6(),
            Address::Name { ipv6, .. } => *ipv6,
        };
        if v6 { "IP6" } else { "IP4" }
    }

    /// Whether this is the RFC 2543 hold address `0.0.0.0` (or `::`).
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "{ip}"),
            Address::Name { name, .. } => f.write_str(name),
        }
    }
}

/// A `b=` line (RFC 8866 §5.8): `b=AS:64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `CT`, `AS`, `TIAS`, …
    pub kind: String,
    /// In kilobits per second (bits for `TIAS`).
    pub value: u64,
}

/// A `t=` line and its `r=` lines (RFC 8866 §5.9, §5.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Start time (NTP seconds), 0 for unbounded.
    pub start: u64,
    /// Stop time (NTP seconds), 0 for unbounded.
    pub stop: u64,
    /// `r=` lines, as written.
    pub repeats: Vec<String>,
}

/// An `a=` line (RFC 8866 §5.13): a property (`a=sendonly`) or a value
/// attribute (`a=rtpmap:0 PCMU/8000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The name before the colon.
    pub name: String,
    /// The value after the colon; `None` for a property attribute.
    pub value: Option<String>,
}

impl Attribute {
    /// `a=name:value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// `a=name`.
    pub fn flag(name: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: None,
        }
    }
}

/// An `m=` section (RFC 8866 §5.14) with its own `i=`, `c=`, `b=`, `k=`
/// and `a=` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `text`, `application`, `message`, …
    pub media: String,
    /// Transport port; 0 means the stream is refused or disabled
    /// (RFC 3264 §5.1, §6).
    pub port: u16,
    /// `port/number` for layered encodings.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, …
    pub proto: String,
    /// The formats: RTP payload type numbers for RTP protocols.
    pub formats: Vec<String>,
    /// `i=`: media title.
    pub title: Option<String>,
    /// Media-level `c=` lines (more than one only for multicast).
    pub connections: Vec<Connection>,
    /// Media-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// Media-level `k=`.
    pub key: Option<String>,
    /// Media-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
}

/// Media direction attribute (RFC 8866 §6.7; RFC 3264 §5.1, §6.1):
/// from the point of view of the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive (the default when no attribute is present).
    SendRecv,
    /// Send only (the writer puts the other side on hold).
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name: `sendrecv`, `sendonly`, `recvonly`, `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction named by an attribute, if it is one.
    pub fn from_attribute(name: &str) -> Option<Self> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// Whether the writer sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other side: `sendonly` ↔ `recvonly`.
    pub fn reverse(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both allow: sends only if both send, receives only if both
    /// receive.
    pub fn intersect(self, other: Direction) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `a=fmtp:` parameter line (RFC 8866 §6.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmtp<'a> {
    /// The payload type it applies to.
    pub payload_type: u8,
    /// The format-specific parameters, as written (e.g. `0-16`).
    pub params: &'a str,
}

/// The `telephone-event` format of a section (RFC 4733 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Its (dynamic) payload type.
    pub payload_type: u8,
    /// Its clock rate (8000 with narrowband codecs).
    pub clock_rate: u32,
    /// The events offered, as written in `a=fmtp` (e.g. `0-16`); `None`
    /// means the RFC 4733 default `0-15`.
    pub events: Option<String>,
}

fn find_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn direction_in(attrs: &[Attribute]) -> Option<Direction> {
    attrs
        .iter()
        .filter(|a| a.value.is_none())
        .find_map(|a| Direction::from_attribute(&a.name))
}

/// Splits `"<pt> <rest>"` for rtpmap/fmtp values.
fn pt_and_rest(value: &str) -> Option<(u8, &str)> {
    let (pt, rest) = value.split_once(' ')?;
    let pt = crate::parse::digits(pt).and_then(|n| u8::try_from(n).ok())?;
    (pt < 128).then_some((pt, rest.trim_start()))
}

impl MediaDescription {
    /// A section with no lines but its `m=`.
    pub fn new(media: impl Into<String>, port: u16, proto: impl Into<String>) -> Self {
        MediaDescription {
            media: media.into(),
            port,
            port_count: None,
            proto: proto.into(),
            formats: Vec::new(),
            title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        }
    }

    /// Whether this is an RTP section (`RTP/AVP`, `RTP/SAVPF`, …), whose
    /// formats are payload type numbers.
    pub fn is_rtp(&self) -> bool {
        is_rtp_proto(&self.proto)
    }

    /// Whether the port is 0: the stream is refused or disabled.
    pub fn is_disabled(&self) -> bool {
        self.port == 0
    }

    /// The formats that are RTP payload types (0–127), in `m=` order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| crate::parse::digits(f).and_then(|n| u8::try_from(n).ok()))
            .filter(|pt| *pt < 128)
    }

    /// The first `a=NAME` of this section.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attr(&self.attributes, name)
    }

    /// The value of the first `a=NAME:value` of this section.
    pub fn attribute_value(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(|a| a.value.as_deref())
    }

    /// What `payload_type` means here: its `a=rtpmap`, or, without one,
    /// the RFC 3551 static assignment (0 PCMU, 8 PCMA, 9 G722, 18 G729,
    /// …). `None` for an unknown dynamic type or a malformed rtpmap.
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        for a in self.attributes.iter().filter(|a| a.name == "rtpmap") {
            if let Some((pt, rest)) = a.value.as_deref().and_then(pt_and_rest)
                && pt == payload_type
            {
                return RtpMap::parse(rest);
            }
        }
        codec::static_payload_type(payload_type)
    }

    /// Every payload type of the `m=` line with what it means, in `m=`
    /// order; unknown ones are left out.
    pub fn rtpmaps(&self) -> Vec<(u8, RtpMap)> {
        self.payload_types()
            .filter_map(|pt| self.rtpmap(pt).map(|m| (pt, m)))
            .collect()
    }

    /// The `a=fmtp` parameters of `payload_type`.
    pub fn fmtp(&self, payload_type: u8) -> Option<Fmtp<'_>> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| a.value.as_deref().and_then(pt_and_rest))
            .find(|(pt, _)| *pt == payload_type)
            .map(|(payload_type, params)| Fmtp {
                payload_type,
                params,
            })
    }

    /// `a=ptime` in milliseconds (RFC 8866 §6.4); a fractional value is
    /// rounded down.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute_value("ptime").and_then(parse_ms)
    }

    /// `a=maxptime` in milliseconds (RFC 8866 §6.5).
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute_value("maxptime").and_then(parse_ms)
    }

    /// The direction attribute of this section, if it has one (see
    /// [`SessionDescription::direction`] for the effective one).
    pub fn direction_attribute(&self) -> Option<Direction> {
        direction_in(&self.attributes)
    }

    /// Replaces the section's direction attribute (or adds one).
    pub fn set_direction(&mut self, direction: Direction) {
        self.attributes
            .retain(|a| a.value.is_some() || Direction::from_attribute(&a.name).is_none());
        self.attributes.push(Attribute::flag(direction.as_str()));
    }

    /// Keeps only the payload types `keep` accepts (given the type and
    /// what it means, `None` for an unknown dynamic type), removing the
    /// others from the `m=` line together with their `a=rtpmap` and
    /// `a=fmtp` lines: e.g. to forward an offer restricted to codecs the
    /// media engine can transcode. Returns how many formats are left; a
    /// section left with none should be refused (port 0) by the caller,
    /// since an `m=` line needs at least one format. Non-RTP sections are
    /// left alone.
    pub fn retain_formats(&mut self, mut keep: impl FnMut(u8, Option<&RtpMap>) -> bool) -> usize {
        if !self.is_rtp() {
            return self.formats.len();
        }
        let mut dropped = Vec::new();
        let mut kept = Vec::new();
        for f in std::mem::take(&mut self.formats) {
            let pt = crate::parse::digits(&f).and_then(|n| u8::try_from(n).ok());
            match pt {
                Some(pt) if keep(pt, self.rtpmap(pt).as_ref()) => kept.push(f),
                Some(pt) => dropped.push(pt),
                None => kept.push(f),
            }
        }
        self.formats = kept;
        let formats = &self.formats;
        self.attributes.retain(|a| {
            if a.name != "rtpmap" && a.name != "fmtp" {
                return true;
            }
            match a.value.as_deref().and_then(pt_and_rest) {
                Some((pt, _)) => {
                    !dropped.contains(&pt) || formats.iter().any(|f| *f == pt.to_string())
                }
                None => true,
            }
        });
        self.formats.len()
    }

    /// The section's `telephone-event` format (RFC 4733), if it lists one.
    pub fn telephone_event(&self) -> Option<TelephoneEvent> {
        self.rtpmaps()
            .into_iter()
            .find(|(_, m)| m.is_telephone_event())
            .map(|(pt, m)| TelephoneEvent {
                payload_type: pt,
                clock_rate: m.clock_rate,
                events: self.fmtp(pt).map(|f| f.params.to_owned()),
            })
    }
}

fn parse_ms(v: &str) -> Option<u32> {
    let whole = v.trim().split('.').next()?;
    crate::parse::digits(whole).and_then(|n| u32::try_from(n).ok())
}

pub(crate) fn is_rtp_proto(proto: &str) -> bool {
    proto.split('/').any(|p| p == "RTP")
}

impl SessionDescription {
    /// The first session-level `a=NAME`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attr(&self.attributes, name)
    }

    /// The effective connection of `m=` section `index`: its own first
    /// `c=`, else the session-level one (RFC 8866 §5.7).
    pub fn connection(&self, index: usize) -> Option<&Connection> {
        let m = self.media.get(index)?;
        m.connections.first().or(self.connection.as_ref())
    }

    /// Where section `index` wants its RTP: the effective connection
    /// address and the `m=` port, when the address is an IP literal and
    /// the port is not 0. (Names are not resolved here: no IO.)
    pub fn rtp_address(&self, index: usize) -> Option<SocketAddr> {
        let m = self.media.get(index)?;
        let ip = self.connection(index)?.address.ip()?;
        (m.port != 0).then_some(SocketAddr::new(ip, m.port))
    }

    /// The effective direction of section `index`: its own attribute, else
    /// the session-level one, else `sendrecv` (RFC 8866 §6.7).
    pub fn direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(MediaDescription::direction_attribute)
            .or_else(|| direction_in(&self.attributes))
            .unwrap_or(Direction::SendRecv)
    }

    /// Writes the description (CRLF line ends, RFC 8866 §5 order).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}
