//! `[media]`: where RTP is anchored (DESIGN.md "Media"): the address RTP
//! sockets bind to, the address written in SDP, the RTP/RTCP port range
//! (RFC 3550 §11: even RTP, odd RTCP), the codecs in preference order,
//! the RTP timeout and the country whose call-progress tones callers hear.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigError, DurationText};

/// Default of `media.rtp_ports`.
pub const DEFAULT_RTP_PORTS: RangeInclusive<u16> = 10000..=20000;
/// Default of `media.codecs`.
pub const DEFAULT_CODECS: [&str; 4] = ["PCMU", "PCMA", "G722", "telephone-event"];
/// Default of `media.rtp_timeout`.
pub const DEFAULT_RTP_TIMEOUT: Duration = Duration::from_secs(60);

/// `[media]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// `bind`: the address RTP sockets bind to.
    pub bind: IpAddr,
    /// `advertise`: the address written in SDP (`None`: the bind address,
    /// or the address each phone reaches our SIP on).
    pub advertise: Option<IpAddr>,
    /// `rtp_ports`: the range RTP/RTCP pairs are leased from.
    pub rtp_ports: RangeInclusive<u16>,
    /// `codecs`, in preference order, as the SDP crate knows them.
    pub codecs: Vec<sdp::Codec>,
    /// `rtp_timeout`: hang up after this long without RTP (`None`: "0s").
    pub rtp_timeout: Option<Duration>,
    /// `strict_source`: a leg takes RTP only from the IP its SIP comes
    /// from or its SDP's IP (default); off, another source may take over
    /// after a probation.
    pub strict_source: bool,
    /// `tone_zone`: the country of the ringback callers hear (us, uk,
    /// eu/de, fr, au).
    pub tone_zone: media::tones::ToneZone,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            advertise: None,
            rtp_ports: DEFAULT_RTP_PORTS,
            codecs: DEFAULT_CODECS
                .iter()
                .filter_map(|c| sdp::Codec::by_name(c))
                .collect(),
            rtp_timeout: Some(DEFAULT_RTP_TIMEOUT),
            strict_source: true,
            tone_zone: media::tones::ToneZone::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMedia {
    bind: Option<Spanned<String>>,
    advertise: Option<Spanned<String>>,
    rtp_ports: Option<Spanned<String>>,
    codecs: Option<Spanned<Vec<Spanned<String>>>>,
    rtp_timeout: Option<Spanned<DurationText>>,
    strict_source: Option<bool>,
    tone_zone: Option<Spanned<String>>,
}

/// The codecs the media engine can relay and transcode.
const KNOWN: [&str; 4] = ["PCMU", "PCMA", "G722", "telephone-event"];

impl Checker<'_> {
    /// A codec list in preference order (`media.codecs`, a trunk's `codecs`):
    /// known names only, at least one voice codec.
    pub(super) fn codecs(
        &self,
        key: &str,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<sdp::Codec>, ConfigError> {
        let mut codecs = Vec::new();
        for name in list.get_ref() {
            let known = KNOWN
                .iter()
                .find(|k| k.eq_ignore_ascii_case(name.get_ref().trim()));
            let Some(codec) = known.and_then(|k| sdp::Codec::by_name(k)) else {
                return Err(self.error(
                    name.span(),
                    format!(
                        "{key}: unknown codec {:?}; choose from {}",
                        name.get_ref(),
                        KNOWN.join(", ")
                    ),
                ));
            };
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
        if !codecs.iter().any(|c| !c.is_telephone_event()) {
            return Err(self.error(
                list.span(),
                format!("{key}: needs at least one voice codec (PCMU, PCMA or G722)"),
            ));
        }
        Ok(codecs)
    }

    /// Where `media.bind` is set, if it is.
    pub(super) fn media_bind_location(&self, raw: &RawMedia) -> Option<super::Location> {
        raw.bind
            .as_ref()
            .map(|v| super::Location::at(self.source, self.text, Some(v.span())))
    }

    pub(super) fn media(&self, raw: &RawMedia) -> Result<MediaConfig, ConfigError> {
        let defaults = MediaConfig::default();
        let ip = |key: &str, v: &Spanned<String>| {
            v.get_ref().trim().parse::<IpAddr>().map_err(|_| {
                self.error(
                    v.span(),
                    format!(
                        "{key}: {:?} is not an IP address; write e.g. \"0.0.0.0\" or \"203.0.113.10\"",
                        v.get_ref()
                    ),
                )
            })
        };
        let bind = match &raw.bind {
            Some(v) => ip("media.bind", v)?,
            None => defaults.bind,
        };
        let advertise = match &raw.advertise {
            Some(v) => {
                let a = ip("media.advertise", v)?;
                if a.is_unspecified() || a.is_multicast() {
                    return Err(self.error(
                        v.span(),
                        "media.advertise: must be an address phones can send RTP to, not 0.0.0.0 or multicast".to_owned(),
                    ));
                }
                Some(a)
            }
            None => None,
        };
        let rtp_ports = match &raw.rtp_ports {
            Some(v) => {
                let text = v.get_ref().trim();
                let range = text
                    .split_once('-')
                    .and_then(|(a, b)| {
                        Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
                    })
                    .filter(|(a, b)| *a >= 1024 && b > a);
                match range {
                    Some((a, b)) => a..=b,
                    None => {
                        return Err(self.error(
                            v.span(),
                            format!(
                                "media.rtp_ports: {text:?} is not a port range; write \"FIRST-LAST\" with 1024 <= FIRST < LAST <= 65535, e.g. \"10000-20000\""
                            ),
                        ));
                    }
                }
            }
            None => defaults.rtp_ports,
        };
        let codecs = match &raw.codecs {
            Some(list) => self.codecs("media.codecs", list)?,
            None => defaults.codecs,
        };
        let rtp_timeout = match &raw.rtp_timeout {
            Some(v) => Some(self.duration("media.rtp_timeout", v, true)?).filter(|d| !d.is_zero()),
            None => defaults.rtp_timeout,
        };
        let tone_zone = match &raw.tone_zone {
            Some(v) => v
                .get_ref()
                .trim()
                .parse()
                .map_err(|e| self.error(v.span(), format!("media.tone_zone: {e}")))?,
            None => defaults.tone_zone,
        };
        Ok(MediaConfig {
            tone_zone,
            bind,
            advertise,
            rtp_ports,
            codecs,
            rtp_timeout,
            strict_source: raw.strict_source.unwrap_or(defaults.strict_source),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigSource};

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File("t.toml".into()), text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_every_key() {
        let c = parse("").unwrap();
        assert_eq!(c.media.rtp_ports, 10000..=20000);
        assert_eq!(c.media.codecs.len(), 4);
        assert_eq!(c.media.advertise, None);
        let c = parse(
            "[media]\nbind = \"127.0.0.1\"\nadvertise = \"203.0.113.10\"\nrtp_ports = \"30000-30099\"\ncodecs = [\"pcma\", \"telephone-event\"]\nrtp_timeout = \"0s\"\nstrict_source = false\ntone_zone = \"UK\"\n",
        )
        .unwrap();
        assert_eq!(c.media.bind.to_string(), "127.0.0.1");
        assert_eq!(c.media.advertise.unwrap().to_string(), "203.0.113.10");
        assert_eq!(c.media.rtp_ports, 30000..=30099);
        assert_eq!(c.media.codecs[0].encoding, "PCMA");
        assert_eq!(c.media.rtp_timeout, None);
        assert!(!c.media.strict_source);
        assert_eq!(c.media.tone_zone, media::tones::ToneZone::Uk);
        assert_eq!(
            parse("").unwrap().media.tone_zone,
            media::tones::ToneZone::Us
        );
    }

    #[test]
    fn bad_values_name_key_and_line() {
        for (text, needle) in [
            ("[media]\nbind = \"here\"\n", "media.bind"),
            (
                "[media]\ntone_zone = \"mars\"\n",
                "media.tone_zone: unknown tone zone \"mars\"",
            ),
            ("[media]\nadvertise = \"0.0.0.0\"\n", "media.advertise"),
            ("[media]\nrtp_ports = \"20000-10000\"\n", "media.rtp_ports"),
            ("[media]\nrtp_ports = \"80-90\"\n", "media.rtp_ports"),
            ("[media]\ncodecs = [\"G729\"]\n", "unknown codec \"G729\""),
            (
                "[media]\ncodecs = [\"telephone-event\"]\n",
                "at least one voice codec",
            ),
            ("[media]\nrtp_timeout = \"soon\"\n", "media.rtp_timeout"),
            ("[media]\nports = 1\n", "unknown field `ports`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("t.toml:2:"), "{text:?}: {e}");
        }
    }
}
