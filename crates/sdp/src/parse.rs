//! The SDP parser (RFC 8866 §5, §9 grammar): strict on the lines the
//! model types, lenient on unknown attributes, bounded by [`Limits`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Limit};
use crate::model::{
    Address, Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription, Timing,
};

/// Bounds that keep a hostile description from using much memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest description, in bytes.
    pub max_size: usize,
    /// Most lines.
    pub max_lines: usize,
    /// Most `m=` sections.
    pub max_media: usize,
}

impl Default for Limits {
    /// 64 KiB, 2,000 lines, 64 `m=` sections: far above any phone's SDP.
    fn default() -> Self {
        Limits {
            max_size: 65_536,
            max_lines: 2_000,
            max_media: 64,
        }
    }
}

/// Parses a session description with the default [`Limits`].
pub fn parse(input: &[u8]) -> Result<SessionDescription, Error> {
    parse_with(input, &Limits::default())
}

impl FromStr for SessionDescription {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        parse(s.as_bytes())
    }
}

impl SessionDescription {
    /// Parses a session description with the default [`Limits`].
    pub fn parse(input: &[u8]) -> Result<Self, Error> {
        parse(input)
    }
}

/// A non-empty run of ASCII digits as a number (`u64::from_str` alone
/// would take `+5`).
pub(crate) fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 8866 §9 `token-char`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b))
}

/// Where the parser is: which lines may come next.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Stage {
    /// After `v=`, expecting `o=`.
    Origin,
    /// After `o=`, expecting `s=`.
    Name,
    /// Session-level lines.
    Session,
    /// Inside an `m=` section.
    Media,
}

/// Parses a session description. Lines may end in CRLF or LF; the last
/// may lack its line end. Empty lines are accepted only at the end.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<SessionDescription, Error> {
    if input.len() > limits.max_size {
        return Err(Error::TooLarge {
            limit: Limit::Size,
            max: limits.max_size,
        });
    }
    let mut lines: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(Error::Empty);
    }
    if lines.len() > limits.max_lines {
        return Err(Error::TooLarge {
            limit: Limit::Lines,
            max: limits.max_lines,
        });
    }

    let mut origin = None;
    let mut sdp = SessionDescription {
        origin: Origin {
            username: String::new(),
            session_id: String::new(),
            session_version: 0,
            address: Address::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        },
        session_name: String::new(),
        information: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: None,
        bandwidths: Vec::new(),
        timings: Vec::new(),
        time_zones: None,
        key: None,
        attributes: Vec::new(),
        media: Vec::new(),
    };
    let mut stage = Stage::Origin;

    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let (kind, value) = split_line(n, raw)?;
        if n == 1 {
            if kind != b'v' {
                return Err(Error::syntax(1, "a session description starts with v=0"));
            }
            if value.trim_end() != "0" {
                return Err(Error::syntax(
                    1,
                    format!("unsupported SDP version v={}", clip(value)),
                ));
            }
            continue;
        }
        match stage {
            Stage::Origin => {
                if kind != b'o' {
                    return Err(Error::syntax(n, "o= must follow v= (RFC 8866 §5)"));
                }
                origin = Some(parse_origin(n, value)?);
                stage = Stage::Name;
            }
            Stage::Name => {
                if kind != b's' {
                    return Err(Error::syntax(n, "s= must follow o= (RFC 8866 §5)"));
                }
                sdp.session_name = value.to_owned();
                stage = Stage::Session;
            }
            Stage::Session => match kind {
                b'i' => set_once(n, &mut sdp.information, "i=", value)?,
                b'u' => set_once(n, &mut sdp.uri, "u=", value)?,
                b'e' => sdp.emails.push(value.to_owned()),
                b'p' => sdp.phones.push(value.to_owned()),
                b'c' => {
                    if sdp.connection.is_some() {
                        return Err(Error::syntax(n, "c= may appear only once at session level"));
                    }
                    sdp.connection = Some(parse_connection(n, value)?);
                }
                b'b' => sdp.bandwidths.push(parse_bandwidth(n, value)?),
                b't' => sdp.timings.push(parse_timing(n, value)?),
                b'r' => match sdp.timings.last_mut() {
                    Some(t) if !value.is_empty() => t.repeats.push(value.to_owned()),
                    Some(_) => return Err(Error::syntax(n, "r= line is empty")),
                    None => return Err(Error::syntax(n, "r= must follow a t= line")),
                },
                b'z' => set_once(n, &mut sdp.time_zones, "z=", value)?,
                b'k' => set_once(n, &mut sdp.key, "k=", value)?,
                b'a' => sdp.attributes.push(parse_attribute(n, value)?),
                b'm' => {
                    stage = Stage::Media;
                    push_media(n, value, &mut sdp.media, limits)?;
                }
                _ => return Err(misplaced(n, kind, "at session level")),
            },
            Stage::Media => {
                // A Media stage always has a section: it is entered by
                // pushing one.
                let Some(m) = sdp.media.last_mut() else {
                    return Err(Error::syntax(n, "internal: media line outside m= section"));
                };
                match kind {
                    b'i' => set_once(n, &mut m.title, "i=", value)?,
                    b'c' => m.connections.push(parse_connection(n, value)?),
                    b'b' => m.bandwidths.push(parse_bandwidth(n, value)?),
                    b'k' => set_once(n, &mut m.key, "k=", value)?,
                    b'a' => m.attributes.push(parse_attribute(n, value)?),
                    b'm' => push_media(n, value, &mut sdp.media, limits)?,
                    _ => return Err(misplaced(n, kind, "in an m= section")),
                }
            }
        }
    }
    sdp.origin = origin.ok_or(Error::Missing { what: "o=" })?;
    if stage == Stage::Name {
        return Err(Error::Missing { what: "s=" });
    }
    if sdp.timings.is_empty() {
        return Err(Error::Missing { what: "t=" });
    }
    Ok(sdp)
}

/// At most 40 characters of `s`, for error messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn misplaced(n: usize, kind: u8, place: &str) -> Error {
    let what = if kind.is_ascii_lowercase() {
        format!("{}= is not allowed {place}", kind as char)
    } else {
        format!("unknown line type {:?}", kind as char)
    };
    Error::syntax(n, what)
}

fn set_once(n: usize, slot: &mut Option<String>, what: &str, value: &str) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::syntax(
            n,
            format!("{what} may appear only once here"),
        ));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

/// `<type>=<value>`: a lowercase letter, `=`, and UTF-8 text without
/// control characters other than tab.
fn split_line(n: usize, raw: &[u8]) -> Result<(u8, &str), Error> {
    if raw.is_empty() {
        return Err(Error::syntax(n, "empty line"));
    }
    if raw.len() < 2 || raw[1] != b'=' {
        return Err(Error::syntax(n, "expected <type>=<value>"));
    }
    let kind = raw[0];
    if !kind.is_ascii_lowercase() {
        return Err(Error::syntax(n, "line type must be a lowercase letter"));
    }
    if let Some(b) = raw[2..]
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(Error::syntax(
            n,
            format!("control character 0x{b:02x} in value"),
        ));
    }
    let value =
        std::str::from_utf8(&raw[2..]).map_err(|_| Error::syntax(n, "value is not valid UTF-8"))?;
    Ok((kind, value))
}

fn parse_origin(n: usize, value: &str) -> Result<Origin, Error> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, id, version, net, addr_type, address] = f[..] else {
        return Err(Error::syntax(
            n,
            "o= line needs \"username sess-id sess-version IN IP4|IP6 address\"",
        ));
    };
    if digits(id).is_none() {
        return Err(Error::syntax(
            n,
            format!("o= session id {:?} is not a number", clip(id)),
        ));
    }
    let session_version = digits(version).ok_or_else(|| {
        Error::syntax(
            n,
            format!(
                "o= session version {:?} is not a 64-bit number",
                clip(version)
            ),
        )
    })?;
    Ok(Origin {
        username: username.to_owned(),
        session_id: id.to_owned(),
        session_version,
        address: parse_address(n, "o=", net, addr_type, address)?,
    })
}

fn parse_address(
    n: usize,
    what: &str,
    net: &str,
    addr_type: &str,
    address: &str,
) -> Result<Address, Error> {
    if net != "IN" {
        return Err(Error::syntax(
            n,
            format!("{what} network type must be IN, not {:?}", clip(net)),
        ));
    }
    let ipv6 = match addr_type {
        "IP4" => false,
        "IP6" => true,
        _ => {
            return Err(Error::syntax(
                n,
                format!(
                    "{what} address type must be IP4 or IP6, not {:?}",
                    clip(addr_type)
                ),
            ));
        }
    };
    if let Ok(ip) = address.parse::<Ipv4Addr>() {
        if ipv6 {
            return Err(Error::syntax(n, format!("{what} IP6 with an IPv4 address")));
        }
        return Ok(Address::Ip(IpAddr::V4(ip)));
    }
    if let Ok(ip) = address.parse::<Ipv6Addr>() {
        if !ipv6 {
            return Err(Error::syntax(n, format!("{what} IP4 with an IPv6 address")));
        }
        return Ok(Address::Ip(IpAddr::V6(ip)));
    }
    let name_ok = !address.is_empty()
        && address.len() <= 255
        && address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && address.bytes().any(|b| b.is_ascii_alphabetic());
    if !name_ok {
        return Err(Error::syntax(
            n,
            format!(
                "{what} address {:?} is neither an IP address nor a domain name",
                clip(address)
            ),
        ));
    }
    Ok(Address::Name {
        name: address.to_owned(),
        ipv6,
    })
}

fn parse_connection(n: usize, value: &str) -> Result<Connection, Error> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, addr_type, address] = f[..] else {
        return Err(Error::syntax(n, "c= line needs \"IN IP4|IP6 address\""));
    };
    let mut parts = address.split('/');
    let host = parts.next().unwrap_or_default();
    let address = parse_address(n, "c=", net, addr_type, host)?;
    let suffix: Vec<&str> = parts.collect();
    let number = |s: &str, what: &str| {
        digits(s)
            .ok_or_else(|| Error::syntax(n, format!("c= {what} {:?} is not a number", clip(s))))
    };
    let (ttl, count) = match (address.addr_type(), &suffix[..]) {
        (_, []) => (None, None),
        ("IP4", [ttl]) => (Some(number(ttl, "TTL")?), None),
        ("IP4", [ttl, count]) => (
            Some(number(ttl, "TTL")?),
            Some(number(count, "address count")?),
        ),
        ("IP6", [count]) => (None, Some(number(count, "address count")?)),
        _ => return Err(Error::syntax(n, "c= address has too many /fields")),
    };
    let ttl = ttl
        .map(|t| u8::try_from(t).map_err(|_| Error::syntax(n, "c= TTL must be 0-255")))
        .transpose()?;
    let count = count
        .map(|c| {
            u32::try_from(c)
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| Error::syntax(n, "c= address count must be 1 or more"))
        })
        .transpose()?;
    Ok(Connection {
        address,
        ttl,
        count,
    })
}

fn parse_bandwidth(n: usize, value: &str) -> Result<Bandwidth, Error> {
    let Some((kind, bw)) = value.trim_end().split_once(':') else {
        return Err(Error::syntax(n, "b= line needs \"bwtype:bandwidth\""));
    };
    if !is_token(kind) {
        return Err(Error::syntax(n, "b= bandwidth type is not a token"));
    }
    let value = digits(bw)
        .ok_or_else(|| Error::syntax(n, format!("b= bandwidth {:?} is not a number", clip(bw))))?;
    Ok(Bandwidth {
        kind: kind.to_owned(),
        value,
    })
}

fn parse_timing(n: usize, value: &str) -> Result<Timing, Error> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [start, stop] = f[..] else {
        return Err(Error::syntax(n, "t= line needs \"start-time stop-time\""));
    };
    let (Some(start), Some(stop)) = (digits(start), digits(stop)) else {
        return Err(Error::syntax(n, "t= times must be numbers"));
    };
    Ok(Timing {
        start,
        stop,
        repeats: Vec::new(),
    })
}

fn parse_attribute(n: usize, value: &str) -> Result<Attribute, Error> {
    let (name, value) = match value.split_once(':') {
        Some((name, v)) => (name, Some(v.to_owned())),
        // Sloppy writers leave a space after a property (`a=sendrecv `).
        None => (value.trim_end_matches([' ', '\t']), None),
    };
    if !is_token(name) {
        return Err(Error::syntax(
            n,
            format!("a= attribute name {:?} is not a token", clip(name)),
        ));
    }
    Ok(Attribute {
        name: name.to_owned(),
        value,
    })
}

fn push_media(
    n: usize,
    value: &str,
    media: &mut Vec<MediaDescription>,
    limits: &Limits,
) -> Result<(), Error> {
    if media.len() >= limits.max_media {
        return Err(Error::TooLarge {
            limit: Limit::MediaSections,
            max: limits.max_media,
        });
    }
    media.push(parse_media(n, value)?);
    Ok(())
}

fn parse_media(n: usize, value: &str) -> Result<MediaDescription, Error> {
    let mut f = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(Error::syntax(
            n,
            "m= line needs \"media port proto fmt...\"",
        ));
    };
    let formats: Vec<String> = f.map(str::to_owned).collect();
    if formats.is_empty() {
        return Err(Error::syntax(
            n,
            "m= line needs \"media port proto fmt...\"",
        ));
    }
    if !is_token(kind) {
        return Err(Error::syntax(n, "m= media type is not a token"));
    }
    if !proto.split('/').all(is_token) {
        return Err(Error::syntax(
            n,
            format!("m= protocol {:?} is malformed", clip(proto)),
        ));
    }
    let (port, count) = match port.split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (port, None),
    };
    let port = digits(port)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| Error::syntax(n, format!("m= port {:?} is not 0-65535", clip(port))))?;
    let port_count = count
        .map(|c| {
            digits(c)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| *c > 0)
                .ok_or_else(|| {
                    Error::syntax(
                        n,
                        format!("m= number of ports {:?} is not 1-65535", clip(c)),
                    )
                })
        })
        .transpose()?;
    let mut m = MediaDescription::new(kind, port, proto);
    m.port_count = port_count;
    if m.is_rtp() {
        if let Some(bad) = formats.iter().find(|f| digits(f).is_none_or(|pt| pt > 127)) {
            return Err(Error::syntax(
                n,
                format!("m= payload type {:?} is not a number 0-127", clip(bad)),
            ));
        }
    } else if let Some(bad) = formats
        .iter()
        .find(|f| !f.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(Error::syntax(
            n,
            format!("m= format {:?} is malformed", clip(bad)),
        ));
    }
    m.formats = formats;
    Ok(m)
}
