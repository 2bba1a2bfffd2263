//! URIs: `sip:` and `sips:` (RFC 3261 §19.1, §25.1), `tel:` (RFC 3966), IPv6
//! references in hosts (RFC 5118); any other scheme is kept opaque.
//!
//! Parsing is strict about structure and lenient about nothing it would
//! have to guess: escapes (`%HH`) are validated but kept raw (no recursive
//! unescaping, RFC 4475 §3.1.1.3), and the user part may hold `;` (RFC 4475
//! §3.1.1.9) because everything before the single `@` is userinfo.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::Error;
use crate::header::Params;
use crate::params::scan_uri_params;
use crate::scan::{self, Cursor, HNV, HOST, PASSWORD, PResult, Reason, SCHEME, TEL, URIC, USER};

/// The host part of a URI or of a Via `sent-by`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name, as received (not lower-cased).
    Domain(String),
    /// A dotted IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written as an IPv6 reference, in brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses a host: a name, an IPv4 address, or an IPv6 reference in
    /// brackets (RFC 5118: a bare IPv6 address is not a host).
    pub fn parse(s: &str) -> Result<Host, Error> {
        let mut c = Cursor::new(s);
        let h = scan_host(&mut c)
            .and_then(|h| {
                if c.at_end() {
                    Ok(h)
                } else {
                    Err(c.unexpected("end of host"))
                }
            })
            .map_err(|reason| Error::Uri {
                context: "host",
                reason,
            })?;
        Ok(h.to_owned())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A URI as found in a Request-URI or a name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:`.
    Tel(TelUri),
    /// Any other scheme (RFC 4475 §3.3.2–3.3.4 need these to parse).
    Other {
        /// The scheme, as received.
        scheme: String,
        /// Everything after the `:`.
        rest: String,
    },
}

/// A `sip:` / `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, raw (escapes kept, may contain `;`).
    pub user: Option<String>,
    /// The password after `user:`, raw.
    pub password: Option<String>,
    /// The host.
    pub host: Host,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`), raw.
    pub params: Params,
    /// URI headers (`?name=value&...`), raw (escapes kept).
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// A `sip:` URI with only a host.
    pub fn new(host: Host) -> Self {
        SipUri {
            secure: false,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// The `transport` URI parameter.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// Whether the `lr` (loose routing) parameter is present.
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }
}

/// A `tel:` URI (RFC 3966): the number as written (visual separators kept)
/// and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    /// `+1-201-555-0123` or a local number, as written.
    pub number: String,
    /// `;phone-context=...`, `;ext=...`, raw.
    pub params: Params,
}

impl Uri {
    /// Parses a whole URI (no surrounding `<>` or whitespace).
    pub fn parse(s: &str) -> Result<Uri, Error> {
        parse_uri_ref(s)
            .map(|u| u.to_owned())
            .map_err(|reason| Error::Uri {
                context: "URI",
                reason,
            })
    }

    /// The scheme: `sip`, `sips`, `tel`, or the other scheme as received.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI, if this is `sip:` or `sips:`.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The tel URI, if this is `tel:`.
    pub fn as_tel(&self) -> Option<&TelUri> {
        match self {
            Uri::Tel(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                f.write_str(":")?;
                f.write_str(pw)?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            f.write_str(n)?;
            f.write_str("=")?;
            f.write_str(v)?;
        }
        Ok(())
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}{}", self.number, self.params)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Borrowed views used while validating (no allocation), turned into the
// owned types above on demand.

/// A host borrowed from the text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostRef<'a> {
    Domain(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostRef<'_> {
    pub(crate) fn to_owned(self) -> Host {
        match self {
            HostRef::Domain(d) => Host::Domain(d.to_owned()),
            HostRef::V4(a) => Host::Ipv4(a),
            HostRef::V6(a) => Host::Ipv6(a),
        }
    }
}

/// A validated SIP URI, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SipUriRef<'a> {
    secure: bool,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: HostRef<'a>,
    port: Option<u16>,
    params: &'a str,
    headers: &'a str,
}

/// A validated URI, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UriRef<'a> {
    Sip(SipUriRef<'a>),
    Tel { number: &'a str, params: &'a str },
    Other { scheme: &'a str, rest: &'a str },
}

impl UriRef<'_> {
    pub(crate) fn to_owned(self) -> Uri {
        match self {
            UriRef::Sip(u) => Uri::Sip(SipUri {
                secure: u.secure,
                user: u.user.map(str::to_owned),
                password: u.password.map(str::to_owned),
                host: u.host.to_owned(),
                port: u.port,
                params: Params::from_uri_raw(u.params),
                headers: if u.headers.is_empty() {
                    Vec::new()
                } else {
                    u.headers
                        .split('&')
                        .map(|h| match h.split_once('=') {
                            Some((n, v)) => (n.to_owned(), v.to_owned()),
                            None => (h.to_owned(), String::new()),
                        })
                        .collect()
                },
            }),
            UriRef::Tel { number, params } => Uri::Tel(TelUri {
                number: number.to_owned(),
                params: Params::from_uri_raw(params),
            }),
            UriRef::Other { scheme, rest } => Uri::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            },
        }
    }
}

/// Scans a host at the cursor: `[IPv6]`, IPv4 or a host name.
pub(crate) fn scan_host<'a>(c: &mut Cursor<'a>) -> PResult<HostRef<'a>> {
    if c.eat(b'[') {
        let inner = c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !c.eat(b']') {
            return Err(if c.at_end() {
                "IPv6 reference not closed with ']'".into()
            } else {
                c.unexpected("']' closing the IPv6 reference")
            });
        }
        return parse_ipv6(inner).map(HostRef::V6);
    }
    let name = c.take_class(HOST);
    if name.is_empty() {
        return Err(c.unexpected("a host"));
    }
    if name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && let Some(a) = parse_ipv4(name)
    {
        return Ok(HostRef::V4(a));
    }
    Ok(HostRef::Domain(name))
}

/// A dotted-quad IPv4 address (four decimal octets, no leading zeros, as
/// `Ipv4Addr::from_str` reads them), without the generic parser's cost.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0usize;
    let (mut v, mut digits, mut first) = (0u16, 0usize, 0u8);
    for &c in s.as_bytes() {
        if c == b'.' {
            let o = octets.get_mut(i)?;
            if digits == 0 || digits > 1 && first == b'0' {
                return None;
            }
            *o = u8::try_from(v).ok()?;
            i += 1;
            (v, digits) = (0, 0);
        } else if c.is_ascii_digit() {
            if digits == 0 {
                first = c;
            }
            digits += 1;
            if digits > 3 {
                return None;
            }
            v = v * 10 + u16::from(c - b'0');
        } else {
            return None;
        }
    }
    if i != 3 || digits == 0 || digits > 1 && first == b'0' {
        return None;
    }
    *octets.get_mut(3)? = u8::try_from(v).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Parses the inside of an IPv6 reference. RFC 5118 §4.10: the RFC 3261
/// ABNF admits a spurious third colon (`2001:db8:::192.0.2.1`); it is
/// tolerated by reading `:::` as `::`.
fn parse_ipv6(s: &str) -> PResult<Ipv6Addr> {
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Ok(a);
    }
    if s.matches(":::").count() == 1
        && !s.contains("::::")
        && let Ok(a) = s.replacen(":::", "::", 1).parse::<Ipv6Addr>()
    {
        return Ok(a);
    }
    Err(format!("invalid IPv6 address '{s}'").into())
}

/// Scans 1*DIGIT as a port.
pub(crate) fn scan_port(c: &mut Cursor<'_>) -> PResult<u16> {
    let digits = c.take_while(|b| b.is_ascii_digit());
    if digits.is_empty() {
        return Err(c.unexpected("a port number"));
    }
    // 1*DIGIT with leading zeros allowed; value must fit 0..=65535.
    let v = scan::parse_u32(digits, "port").map_err(|_| Reason::from("port out of range"))?;
    u16::try_from(v).map_err(|_| format!("port {v} out of range").into())
}

/// Parses a complete URI into a borrowed view.
pub(crate) fn parse_uri_ref(s: &str) -> PResult<UriRef<'_>> {
    let Some(colon) = scan::find_byte(s.as_bytes(), b':') else {
        return Err("no scheme (missing ':')".into());
    };
    let scheme = s.get(..colon).unwrap_or("");
    let rest = s.get(colon + 1..).unwrap_or("");
    let mut sb = scheme.bytes();
    let valid_scheme =
        sb.next().is_some_and(|b| b.is_ascii_alphabetic()) && sb.all(|b| scan::is(b, SCHEME));
    if !valid_scheme {
        return Err(format!("invalid scheme '{}'", scheme.escape_debug()).into());
    }
    if scheme.eq_ignore_ascii_case("sip") {
        sip_uri(rest, false).map(UriRef::Sip)
    } else if scheme.eq_ignore_ascii_case("sips") {
        sip_uri(rest, true).map(UriRef::Sip)
    } else if scheme.eq_ignore_ascii_case("tel") {
        tel_uri(rest)
    } else {
        if rest.is_empty() {
            return Err(format!("nothing after '{scheme}:'").into());
        }
        let mut c = Cursor::new(rest);
        c.take_class(URIC);
        if !c.at_end() {
            return Err(c.unexpected("URI characters"));
        }
        Ok(UriRef::Other { scheme, rest })
    }
}

fn sip_uri(rest: &str, secure: bool) -> PResult<SipUriRef<'_>> {
    let (userinfo, hostpart) = match scan::find_byte(rest.as_bytes(), b'@') {
        Some(at) => (
            Some(rest.get(..at).unwrap_or("")),
            rest.get(at + 1..).unwrap_or(""),
        ),
        None => (None, rest),
    };
    let (mut user, mut password) = (None, None);
    if let Some(ui) = userinfo {
        let mut c = Cursor::new(ui);
        let u = c.take_escaped(USER)?;
        if u.is_empty() {
            return Err("empty user part before '@'".into());
        }
        user = Some(u);
        if c.eat(b':') {
            password = Some(c.take_escaped(PASSWORD)?);
        }
        if !c.at_end() {
            return Err(c.unexpected("user or password characters"));
        }
    }
    let mut c = Cursor::new(hostpart);
    if c.at_end() {
        return Err("missing host".into());
    }
    let host = scan_host(&mut c)?;
    let port = if c.eat(b':') {
        Some(scan_port(&mut c)?)
    } else {
        None
    };
    let pstart = c.pos();
    scan_uri_params(&mut c, &mut |_, _| ())?;
    let params = c.slice(pstart, c.pos());
    let mut headers = "";
    if c.eat(b'?') {
        let hstart = c.pos();
        loop {
            let name = c.take_escaped(HNV)?;
            if name.is_empty() {
                return Err(c.unexpected("a URI header name"));
            }
            c.expect(b'=', "'=' after URI header name")?;
            c.take_escaped(HNV)?;
            if !c.eat(b'&') {
                break;
            }
        }
        headers = c.slice(hstart, c.pos());
    }
    if !c.at_end() {
        return Err(c.unexpected("end of URI"));
    }
    Ok(SipUriRef {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn tel_uri(rest: &str) -> PResult<UriRef<'_>> {
    let mut c = Cursor::new(rest);
    let number = c.take_class(TEL);
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || digits.contains('+') {
        return Err(if number.is_empty() {
            c.unexpected("a telephone number")
        } else {
            "invalid telephone number".into()
        });
    }
    let pstart = c.pos();
    scan_uri_params(&mut c, &mut |_, _| ())?;
    let params = c.slice(pstart, c.pos());
    if !c.at_end() {
        return Err(c.unexpected("end of tel URI"));
    }
    Ok(UriRef::Tel { number, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    fn round_trip(s: &str) {
        let u = Uri::parse(s).unwrap();
        assert_eq!(Uri::parse(&u.to_string()).unwrap(), u, "{s}");
    }

    #[test]
    fn sip_uris() {
        let u = sip("sip:alice:secret@example.com:5070;transport=TCP;lr?subject=hi&x=");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("TCP"));
        assert!(u.lr());
        assert_eq!(
            u.headers,
            vec![("subject".into(), "hi".into()), ("x".into(), "".into())]
        );
        assert!(sip("SIPS:host").secure);
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        let u = sip("sip:%00%00@host5.example.com");
        assert_eq!(u.user.as_deref(), Some("%00%00"));
        round_trip("sip:alice:secret@example.com:5070;transport=TCP;lr?subject=hi&x=");
        round_trip("sips:[2001:db8::1]:5061;maddr=[2001:db8::2]");
        assert!(Uri::parse("sip:").is_err());
        assert!(Uri::parse("sip:@host").is_err());
        assert!(Uri::parse("sip:host;").is_err());
        assert!(Uri::parse("sip:host;;lr").is_err());
        assert!(Uri::parse("sip:ho st").is_err());
        assert!(Uri::parse("sip:a%4@host").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
        assert!(Uri::parse("<sip:host>").is_err());
    }

    #[test]
    fn ipv6_hosts() {
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        // RFC 5118 §4.2: brackets are mandatory.
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        // §4.10: the extra colon is tolerated.
        let u = sip("sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::192.0.2.1".parse().unwrap()));
        assert!(Uri::parse("sip:[2001:db8::1").is_err());
        assert!(Uri::parse("sip:[::::1]").is_err());
        assert_eq!(Host::Ipv6("::1".parse().unwrap()).to_string(), "[::1]");
        assert_eq!(
            Host::parse("192.0.2.1").unwrap(),
            Host::Ipv4("192.0.2.1".parse().unwrap())
        );
        assert!(Host::parse("").is_err());
    }

    #[test]
    fn ipv4_matches_std() {
        for s in [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            "a.b.c.d",
            "1.2.3.04",
            "10.0.0.1",
            "1234.1.1.1",
            "",
        ] {
            assert_eq!(parse_ipv4(s), s.parse().ok(), "{s}");
        }
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        let t = u.as_tel().unwrap();
        assert_eq!(t.number, "+1-201-555-0123");
        assert_eq!(t.params.value("phone-context"), Some("example.com"));
        assert_eq!(u.scheme(), "tel");
        round_trip("tel:7042;phone-context=example.com");
        assert!(Uri::parse("tel:").is_err());
        assert!(Uri::parse("tel:+").is_err());
        assert!(Uri::parse("tel:1+2").is_err());
        let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme(), "soap.beep");
        assert_eq!(u.to_string(), "soap.beep://192.0.2.103:3002");
        assert!(u.as_sip().is_none());
        round_trip("nobodyKnowsThisScheme:totallyopaquecontent");
        assert!(Uri::parse("isbn:").is_err());
        assert!(Uri::parse("1x:abc").is_err());
        assert!(Uri::parse("x:a b").is_err());
    }
}
