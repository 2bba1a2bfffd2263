//! Codecs: `a=rtpmap` values (RFC 8866 §6.6), the RFC 3551 §6 static
//! payload types, and the codecs Switchboard offers (PCMU, PCMA, G722,
//! RFC 4733 telephone-event).

use std::borrow::Cow;
use std::fmt;

/// What an RTP payload type stands for: `encoding/clock[/channels]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Encoding name as written (`PCMU`, `iLBC`, `telephone-event`);
    /// compared without regard to case (RFC 4855 §3).
    pub encoding: String,
    /// RTP clock rate in Hz (8000 for G.722 too, RFC 3551 §4.5.2).
    pub clock_rate: u32,
    /// Audio channels; 1 when the rtpmap does not say.
    pub channels: u16,
}

impl RtpMap {
    /// Parses the part of an `a=rtpmap` value after the payload type:
    /// `PCMU/8000`, `L16/8000/2`.
    pub fn parse(s: &str) -> Option<RtpMap> {
        let mut parts = s.trim().split('/');
        let encoding = parts.next()?.trim();
        if encoding.is_empty() || encoding.contains(' ') {
            return None;
        }
        let clock_rate = crate::parse::digits(parts.next()?.trim())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)?;
        let channels = match parts.next() {
            Some(c) => crate::parse::digits(c.trim())
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)?,
            None => 1,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(RtpMap {
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }

    /// Whether this is RFC 4733 `telephone-event`.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }

    /// Whether this is RFC 3389 comfort noise (`CN`).
    pub fn is_comfort_noise(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("CN")
    }

    /// Whether this carries voice: neither telephone-event nor comfort
    /// noise.
    pub fn is_voice(&self) -> bool {
        !self.is_telephone_event() && !self.is_comfort_noise()
    }
}

impl fmt::Display for RtpMap {
    /// `PCMU/8000`, with `/channels` only when it is not 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.encoding, self.clock_rate)?;
        if self.channels != 1 {
            write!(f, "/{}", self.channels)?;
        }
        Ok(())
    }
}

/// RFC 3551 §6 Table 4 and 5: the static payload types, which mean their
/// codec even without an `a=rtpmap`.
const STATIC: &[(u8, &str, u32, u16)] = &[
    (0, "PCMU", 8000, 1),
    (3, "GSM", 8000, 1),
    (4, "G723", 8000, 1),
    (5, "DVI4", 8000, 1),
    (6, "DVI4", 16000, 1),
    (7, "LPC", 8000, 1),
    (8, "PCMA", 8000, 1),
    (9, "G722", 8000, 1),
    (10, "L16", 44100, 2),
    (11, "L16", 44100, 1),
    (12, "QCELP", 8000, 1),
    (13, "CN", 8000, 1),
    (14, "MPA", 90000, 1),
    (15, "G728", 8000, 1),
    (16, "DVI4", 11025, 1),
    (17, "DVI4", 22050, 1),
    (18, "G729", 8000, 1),
    (25, "CelB", 90000, 1),
    (26, "JPEG", 90000, 1),
    (28, "nv", 90000, 1),
    (31, "H261", 90000, 1),
    (32, "MPV", 90000, 1),
    (33, "MP2T", 90000, 1),
    (34, "H263", 90000, 1),
];

/// The RFC 3551 static meaning of `payload_type`, if it has one.
pub fn static_payload_type(payload_type: u8) -> Option<RtpMap> {
    STATIC.iter().find(|(pt, ..)| *pt == payload_type).map(
        |&(_, encoding, clock_rate, channels)| RtpMap {
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        },
    )
}

/// Which kind of `m=` section a codec belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
}

impl MediaKind {
    /// The `m=` media name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    /// The kind of an `m=` media name, if it is one we know.
    pub fn from_media(media: &str) -> Option<Self> {
        if media.eq_ignore_ascii_case("audio") {
            Some(MediaKind::Audio)
        } else if media.eq_ignore_ascii_case("video") {
            Some(MediaKind::Video)
        } else {
            None
        }
    }
}

/// A codec we can send and receive, in the form offers and answers need.
///
/// `payload_type` is the number we use when we offer it (the static one
/// for PCMU/PCMA/G722, a dynamic one for others); when we answer, the
/// offer's number is used instead (RFC 3264 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// The section kind it goes in.
    pub kind: MediaKind,
    /// Encoding name, compared without regard to case.
    pub encoding: Cow<'static, str>,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channels (1 for every telephony codec).
    pub channels: u16,
    /// Payload type we use in our offers.
    pub payload_type: u8,
    /// `a=fmtp` parameters we offer, if any.
    pub fmtp: Option<Cow<'static, str>>,
}

impl Codec {
    /// G.711 µ-law, static payload type 0.
    pub const PCMU: Codec = Codec::audio_static("PCMU", 0);
    /// G.711 A-law, static payload type 8.
    pub const PCMA: Codec = Codec::audio_static("PCMA", 8);
    /// G.722 (16 kHz audio, 8000 RTP clock), static payload type 9.
    pub const G722: Codec = Codec::audio_static("G722", 9);
    /// G.729, static payload type 18.
    pub const G729: Codec = Codec::audio_static("G729", 18);
    /// RFC 4733 DTMF events 0–16 on dynamic payload type 101.
    pub const TELEPHONE_EVENT: Codec = Codec {
        kind: MediaKind::Audio,
        encoding: Cow::Borrowed("telephone-event"),
        clock_rate: 8000,
        channels: 1,
        payload_type: 101,
        fmtp: Some(Cow::Borrowed("0-16")),
    };

    const fn audio_static(name: &'static str, payload_type: u8) -> Codec {
        Codec {
            kind: MediaKind::Audio,
            encoding: Cow::Borrowed(name),
            clock_rate: 8000,
            channels: 1,
            payload_type,
            fmtp: None,
        }
    }

    /// A codec by its usual name, as `media.codecs` in the config lists
    /// them: `PCMU`, `PCMA`, `G722`, `G729`, `telephone-event`
    /// (case-insensitive).
    pub fn by_name(name: &str) -> Option<Codec> {
        [
            Codec::PCMU,
            Codec::PCMA,
            Codec::G722,
            Codec::G729,
            Codec::TELEPHONE_EVENT,
        ]
        .into_iter()
        .find(|c| c.encoding.eq_ignore_ascii_case(name))
    }

    /// Any other codec: `kind`, `encoding/clock_rate`, one channel, on
    /// `payload_type` when we offer it.
    pub fn new(
        kind: MediaKind,
        encoding: impl Into<Cow<'static, str>>,
        clock_rate: u32,
        payload_type: u8,
    ) -> Codec {
        Codec {
            kind,
            encoding: encoding.into(),
            clock_rate,
            channels: 1,
            payload_type,
            fmtp: None,
        }
    }

    /// Whether an rtpmap names this codec (name, clock rate, channels).
    pub fn matches(&self, map: &RtpMap) -> bool {
        self.encoding.eq_ignore_ascii_case(&map.encoding)
            && self.clock_rate == map.clock_rate
            && self.channels == map.channels
    }

    /// Whether this is RFC 4733 `telephone-event`.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }

    /// The rtpmap this codec is offered with.
    pub fn rtpmap(&self) -> RtpMap {
        RtpMap {
            encoding: self.encoding.clone().into_owned(),
            clock_rate: self.clock_rate,
            channels: self.channels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_types_are_known_without_rtpmap() {
        let pcmu = static_payload_type(0).unwrap();
        assert_eq!((pcmu.encoding.as_str(), pcmu.clock_rate), ("PCMU", 8000));
        assert_eq!(static_payload_type(8).unwrap().encoding, "PCMA");
        assert_eq!(static_payload_type(9).unwrap().clock_rate, 8000);
        assert_eq!(static_payload_type(18).unwrap().encoding, "G729");
        assert_eq!(static_payload_type(3).unwrap().encoding, "GSM");
        assert_eq!(static_payload_type(10).unwrap().channels, 2);
        assert_eq!(static_payload_type(96), None);
        assert_eq!(static_payload_type(2), None);
    }

    #[test]
    fn rtpmap_values() {
        let m = RtpMap::parse("L16/8000/2").unwrap();
        assert_eq!((m.clock_rate, m.channels), (8000, 2));
        assert_eq!(m.to_string(), "L16/8000/2");
        assert_eq!(RtpMap::parse("PCMU/8000").unwrap().to_string(), "PCMU/8000");
        for bad in [
            "",
            "PCMU",
            "PCMU/",
            "PCMU/x",
            "PCMU/0",
            "PCMU/8000/0",
            "a/1/1/1",
            "/8000",
        ] {
            assert_eq!(RtpMap::parse(bad), None, "{bad:?}");
        }
        assert!(Codec::PCMU.matches(&RtpMap::parse("pcmu/8000").unwrap()));
        assert!(!Codec::PCMU.matches(&RtpMap::parse("PCMU/16000").unwrap()));
        assert_eq!(Codec::by_name("g722"), Some(Codec::G722));
        assert_eq!(
            Codec::by_name("TELEPHONE-EVENT"),
            Some(Codec::TELEPHONE_EVENT)
        );
        assert_eq!(Codec::by_name("opus"), None);
    }
}
