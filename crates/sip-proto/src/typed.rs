//! Typed header values (RFC 3261 §20 and §25.1; RFC 3581 `rport`; RFC 3515
//! Refer-To, RFC 3892 Referred-By, RFC 3891 Replaces, RFC 4028
//! Session-Expires, RFC 6665 Event / Subscription-State): their grammar,
//! owned types and `Display`.
//!
//! Each grammar is written once as a scanner over an unfolded value that
//! returns a borrowed view; [`crate::Message::parse`] runs the scanners to
//! validate (no allocation), and the public types are built from the views
//! when a caller asks for them.

use std::fmt;

use crate::error::Error;
use crate::header::Params;
use crate::message::Method;
use crate::params::scan_header_params;
use crate::scan::{self, Cursor, GENVALUE, PResult, Reason, TOKEN, WORD};
use crate::uri::{self, Host, HostRef, Uri, UriRef};

// ---------------------------------------------------------------------------
// Public types

/// One Via header value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or another token — upper-cased.
    pub transport: String,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// `branch`, `received`, `rport`, `maddr`, `ttl` and extensions, raw.
    pub params: Params,
}

impl Via {
    /// Parses a single Via value (no commas).
    pub fn parse(s: &str) -> Result<Via, Error> {
        single(s, "Via", scan_via).map(ViaRef::to_owned)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// The `received` parameter (may be an IPv6 address with or without
    /// brackets, RFC 5118 §4.5).
    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` for the bare flag,
    /// `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// A name-addr or addr-spec with header parameters: the value of From, To,
/// Contact, Route, Record-Route, Path, Refer-To, Referred-By.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted (`"A \"B\""` becomes `A "B"`); `None` if absent.
    pub display: Option<String>,
    /// The URI (parameters inside `<>` belong to it, RFC 4475 §3.3.13).
    pub uri: Uri,
    /// Header parameters after the URI (`;tag=`, `;expires=`, `;q=`, ...),
    /// raw. For an addr-spec without `<>` every `;param` is here (RFC 4475 §3.3.12).
    pub params: Params,
}

impl NameAddr {
    /// Parses a single name-addr or addr-spec with parameters.
    pub fn parse(s: &str) -> Result<NameAddr, Error> {
        single(s, "name-addr", scan_name_addr).map(NameAddrRef::to_owned)
    }

    /// A name-addr with just a URI.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Params::new(),
        }
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// The `expires` parameter of a Contact, if it is a valid number.
    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(|v| v.parse().ok())
    }
}

impl fmt::Display for NameAddr {
    /// Always the name-addr form (`"display" <uri>;params`), which is valid
    /// for every URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            scan::write_quoted(f, d)?;
            f.write_str(" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The Contact header(s) of a message: `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (REGISTER with Expires: 0 removes all bindings).
    Star,
    /// The addresses, in order (empty if there is no Contact).
    Addrs(Vec<NameAddr>),
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addrs(list) => write_list(f, list),
        }
    }
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value (`4711 INVITE`).
    pub fn parse(s: &str) -> Result<CSeq, Error> {
        let (seq, m) = scan_cseq(s).map_err(|r| Error::header("CSeq", None, r))?;
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Authorization / Proxy-Authorization credentials (RFC 3261 §20.7,
/// RFC 7616): a scheme and comma-separated auth-params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `Digest`, or another scheme as received.
    pub scheme: String,
    /// The auth-params, values raw (quoted ones keep their quotes; use
    /// [`Params::unquoted`]).
    pub params: Params,
}

impl Credentials {
    /// Parses one Authorization / Proxy-Authorization value.
    pub fn parse(s: &str) -> Result<Credentials, Error> {
        let (scheme, params) = parse_auth(s, "Authorization")?;
        Ok(Credentials { scheme, params })
    }
}

/// WWW-Authenticate / Proxy-Authenticate challenge (RFC 3261 §20.27,
/// RFC 7616).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Digest`, or another scheme as received.
    pub scheme: String,
    /// The auth-params, values raw (see [`Credentials::params`]).
    pub params: Params,
}

impl Challenge {
    /// Parses one WWW-Authenticate / Proxy-Authenticate value.
    pub fn parse(s: &str) -> Result<Challenge, Error> {
        let (scheme, params) = parse_auth(s, "WWW-Authenticate")?;
        Ok(Challenge { scheme, params })
    }
}

fn parse_auth(s: &str, name: &'static str) -> Result<(String, Params), Error> {
    let mut params = Params::new();
    let scheme = scan_auth(s, &mut |n, v| params.push(n, Some(v.to_owned())))
        .map_err(|r| Error::header(name, None, r))?;
    Ok((scheme.to_owned(), params))
}

fn write_auth(f: &mut fmt::Formatter<'_>, scheme: &str, params: &Params) -> fmt::Result {
    f.write_str(scheme)?;
    for (i, (n, v)) in params.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        f.write_str(n)?;
        f.write_str("=")?;
        // Auth-params always have a value; an empty one is written quoted.
        match v {
            Some(v) if !v.is_empty() => f.write_str(v)?,
            _ => f.write_str("\"\"")?,
        }
    }
    Ok(())
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_auth(f, &self.scheme, &self.params)
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_auth(f, &self.scheme, &self.params)
    }
}

/// One Warning header value (RFC 3261 §20.43): `399 host "text"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The three-digit warn-code.
    pub code: u16,
    /// The warn-agent (`host[:port]` or a pseudonym).
    pub agent: String,
    /// The warn-text, unquoted.
    pub text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {} ", self.code, self.agent)?;
        scan::write_quoted(f, &self.text)
    }
}

/// The Event header (RFC 6665 §8.2.1): a package and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type, e.g. `presence`, `message-summary`, `refer`.
    pub package: String,
    /// `;id=` and other parameters, raw.
    pub params: Params,
}

impl Event {
    /// The `id` parameter.
    pub fn id(&self) -> Option<&str> {
        self.params.value("id")
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

/// The Subscription-State header (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    /// `active`, `pending`, `terminated` or an extension.
    pub state: String,
    /// `;expires=`, `;reason=`, `;retry-after=`, raw.
    pub params: Params,
}

impl SubscriptionState {
    /// The `expires` parameter, if a valid number.
    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(|v| v.parse().ok())
    }

    /// The `reason` parameter.
    pub fn reason(&self) -> Option<&str> {
        self.params.value("reason")
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.state, self.params)
    }
}

/// The Replaces header (RFC 3891): a dialog by Call-ID and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The Call-ID of the dialog to replace.
    pub call_id: String,
    /// `;to-tag=`, `;from-tag=`, `;early-only`, raw.
    pub params: Params,
}

impl Replaces {
    /// The `to-tag` parameter.
    pub fn to_tag(&self) -> Option<&str> {
        self.params.value("to-tag")
    }

    /// The `from-tag` parameter.
    pub fn from_tag(&self) -> Option<&str> {
        self.params.value("from-tag")
    }

    /// Whether `early-only` is present.
    pub fn early_only(&self) -> bool {
        self.params.contains("early-only")
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.call_id, self.params)
    }
}

/// The Session-Expires header (RFC 4028 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval in seconds.
    pub delta: u32,
    /// `;refresher=uac|uas` and extensions, raw.
    pub params: Params,
}

impl SessionExpires {
    /// The `refresher` parameter.
    pub fn refresher(&self) -> Option<&str> {
        self.params.value("refresher")
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.delta, self.params)
    }
}

/// The Retry-After header (RFC 3261 §20.33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds to wait.
    pub delta: u32,
    /// The comment inside parentheses, raw, if any.
    pub comment: Option<String>,
    /// `;duration=` and extensions, raw.
    pub params: Params,
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.delta)?;
        if let Some(c) = &self.comment {
            write!(f, " ({c})")?;
        }
        write!(f, "{}", self.params)
    }
}

/// Writes a comma-separated list.
pub(crate) fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, list: &[T]) -> fmt::Result {
    for (i, v) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    Ok(())
}

/// Parses `s` as exactly one value with `scan`.
fn single<'a, T>(
    s: &'a str,
    name: &'static str,
    scan: impl Fn(&mut Cursor<'a>) -> PResult<T>,
) -> Result<T, Error> {
    let mut c = Cursor::new(s);
    let r = scan(&mut c).and_then(|v| {
        c.skip_lws();
        if c.at_end() {
            Ok(v)
        } else {
            Err(c.unexpected("end of value"))
        }
    });
    r.map_err(|reason| Error::header(name, None, reason))
}

// ---------------------------------------------------------------------------
// Borrowed views and scanners

/// A validated Via value, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaRef<'a> {
    transport: &'a str,
    host: HostRef<'a>,
    port: Option<u16>,
    params: &'a str,
}

impl ViaRef<'_> {
    pub(crate) fn to_owned(self) -> Via {
        Via {
            transport: self.transport.to_ascii_uppercase(),
            host: self.host.to_owned(),
            port: self.port,
            params: Params::from_header_raw(self.params),
        }
    }
}

/// Scans one via-parm.
pub(crate) fn scan_via<'a>(c: &mut Cursor<'a>) -> PResult<ViaRef<'a>> {
    c.skip_lws();
    let proto = c.take_class(TOKEN);
    if !proto.eq_ignore_ascii_case("SIP") {
        return Err(if proto.is_empty() {
            c.unexpected("'SIP/2.0/transport'")
        } else {
            format!("protocol '{proto}' is not SIP").into()
        });
    }
    c.skip_lws();
    c.expect(b'/', "'/' after SIP")?;
    c.skip_lws();
    let version = c.take_class(TOKEN);
    if version != "2.0" {
        return Err(format!("unsupported protocol version SIP/{version}").into());
    }
    c.skip_lws();
    c.expect(b'/', "'/' after SIP/2.0")?;
    c.skip_lws();
    let transport = c.take_class(TOKEN);
    if transport.is_empty() {
        return Err(c.unexpected("a transport"));
    }
    if c.skip_lws() == 0 {
        return Err(c.unexpected("a space before sent-by"));
    }
    let host = uri::scan_host(c)?;
    let before = c.pos();
    c.skip_lws();
    let port = if c.eat(b':') {
        c.skip_lws();
        Some(uri::scan_port(c)?)
    } else {
        c.set_pos(before);
        None
    };
    let pstart = c.pos();
    let mut bad_rport = false;
    scan_header_params(c, &mut |n, v| {
        if n.eq_ignore_ascii_case("rport")
            && let Some(v) = v
        {
            bad_rport |= v.parse::<u16>().is_err();
        }
    })?;
    if bad_rport {
        return Err("rport parameter is not a port number".into());
    }
    Ok(ViaRef {
        transport,
        host,
        port,
        params: c.slice(pstart, c.pos()),
    })
}

/// A display name as written: quoted (raw, with quotes) or tokens.
#[derive(Debug, Clone, Copy)]
enum DisplayRef<'a> {
    Quoted(&'a str),
    Tokens(&'a str),
}

/// A validated name-addr / addr-spec with params, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameAddrRef<'a> {
    display: Option<DisplayRef<'a>>,
    uri: UriRef<'a>,
    params: &'a str,
}

impl NameAddrRef<'_> {
    pub(crate) fn to_owned(self) -> NameAddr {
        NameAddr {
            display: self.display.map(|d| match d {
                DisplayRef::Quoted(raw) => scan::unquote(raw).into_owned(),
                DisplayRef::Tokens(t) => t.to_owned(),
            }),
            uri: self.uri.to_owned(),
            params: Params::from_header_raw(self.params),
        }
    }
}

/// Scans `( name-addr / addr-spec ) *( SEMI generic-param )`.
pub(crate) fn scan_name_addr<'a>(c: &mut Cursor<'a>) -> PResult<NameAddrRef<'a>> {
    c.skip_lws();
    let (display, uri) = match c.peek() {
        Some(b'"') => {
            let raw = c.quoted_string()?;
            c.skip_lws();
            if !c.eat(b'<') {
                return Err(c.unexpected("'<' after the display name"));
            }
            (Some(DisplayRef::Quoted(raw)), angle_uri(c)?)
        }
        Some(b'<') => {
            c.eat(b'<');
            (None, angle_uri(c)?)
        }
        _ => {
            let start = c.pos();
            let words = c.take_while(|b| scan::is(b, TOKEN) || b == b' ' || b == b'\t');
            if c.eat(b'<') {
                // `display-name = *(token LWS)`, and RFC 4475 §3.1.1.6 says
                // to accept it with no LWS before `<` too.
                (
                    Some(DisplayRef::Tokens(scan::trim_lws(words))),
                    angle_uri(c)?,
                )
            } else {
                c.set_pos(start);
                (None, addr_spec(c)?)
            }
        }
    };
    let pstart = c.pos();
    scan_header_params(c, &mut |_, _| ())?;
    Ok(NameAddrRef {
        display,
        uri,
        params: c.slice(pstart, c.pos()),
    })
}

fn angle_uri<'a>(c: &mut Cursor<'a>) -> PResult<UriRef<'a>> {
    let inner = c.take_until(b'>');
    if !c.eat(b'>') {
        return Err("'<' without a closing '>'".into());
    }
    uri::parse_uri_ref(inner).map_err(|r| format!("invalid URI <{inner}>: {r}").into())
}

/// An addr-spec outside `<>`: it ends at `;` (header params), `,` (next
/// value) or whitespace. A `?` there is an error: RFC 3261 §20.10 requires
/// `<>` around a URI with `,`, `;` or `?` (RFC 4475 §3.1.2.13).
fn addr_spec<'a>(c: &mut Cursor<'a>) -> PResult<UriRef<'a>> {
    let text = c.take_while(|b| !matches!(b, b';' | b',' | b' ' | b'\t' | b'?' | b'<' | b'>'));
    if text.is_empty() {
        return Err(c.unexpected("a URI or name-addr"));
    }
    if c.peek() == Some(b'?') {
        return Err("URI with '?' headers must be enclosed in '<>'".into());
    }
    uri::parse_uri_ref(text).map_err(|r| format!("invalid URI {text}: {r}").into())
}

/// Scans `1*DIGIT LWS Method`.
pub(crate) fn scan_cseq(s: &str) -> PResult<(u32, &str)> {
    let mut c = Cursor::new(s);
    c.skip_lws();
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seq = scan::parse_u32(digits, "sequence number")?;
    if c.skip_lws() == 0 {
        return Err(c.unexpected("a space after the sequence number"));
    }
    let method = c.take_class(TOKEN);
    if method.is_empty() {
        return Err(c.unexpected("a method"));
    }
    c.skip_lws();
    if !c.at_end() {
        return Err(c.unexpected("end of CSeq"));
    }
    Ok((seq, method))
}

/// Scans a Call-ID (`word [ "@" word ]`).
pub(crate) fn check_call_id(s: &str) -> PResult<()> {
    let b = s.as_bytes();
    let bad = b.iter().position(|&c| !scan::is(c, WORD));
    let at = match bad {
        None => None,
        Some(i) if b.get(i) == Some(&b'@') => Some(i),
        Some(i) => return Err(bad_call_id_char(b.get(i).copied().unwrap_or(0))),
    };
    if let Some(at) = at {
        let after = b.get(at + 1..).unwrap_or_default();
        if let Some(&c) = after.iter().find(|&&c| !scan::is(c, WORD)) {
            return Err(bad_call_id_char(c));
        }
        if at == 0 || after.is_empty() {
            return Err("empty word around '@' in Call-ID".into());
        }
    } else if b.is_empty() {
        return Err("empty Call-ID".into());
    }
    Ok(())
}

fn bad_call_id_char(c: u8) -> Reason {
    if c.is_ascii_graphic() {
        format!("character '{}' not allowed in Call-ID", char::from(c)).into()
    } else {
        format!("byte 0x{c:02x} not allowed in Call-ID").into()
    }
}

/// Scans a delta-seconds value (Expires, Min-Expires, Max-Forwards).
pub(crate) fn scan_delta(s: &str, what: &'static str) -> PResult<u32> {
    scan::parse_u32(scan::trim_lws(s), what)
}

/// Scans `auth-scheme [LWS auth-param *(COMMA auth-param)]`, calling `f`
/// for each param; returns the scheme.
pub(crate) fn scan_auth<'a>(s: &'a str, f: &mut impl FnMut(&'a str, &'a str)) -> PResult<&'a str> {
    let mut c = Cursor::new(s);
    c.skip_lws();
    let scheme = c.take_class(TOKEN);
    if scheme.is_empty() {
        return Err(c.unexpected("an auth scheme"));
    }
    if c.skip_lws() == 0 && !c.at_end() {
        return Err(c.unexpected("a space after the auth scheme"));
    }
    if c.at_end() {
        return Ok(scheme);
    }
    loop {
        let name = c.take_class(TOKEN);
        if name.is_empty() {
            return Err(c.unexpected("an auth-param name"));
        }
        c.skip_lws();
        c.expect(b'=', "'=' after the auth-param name")?;
        c.skip_lws();
        let value = if c.peek() == Some(b'"') {
            c.quoted_string()?
        } else {
            c.take_while(|b| scan::is(b, GENVALUE) || b == b'/')
        };
        if value.is_empty() {
            return Err(format!("auth-param '{name}' has an empty value").into());
        }
        f(name, value);
        c.skip_lws();
        if c.at_end() {
            return Ok(scheme);
        }
        c.expect(b',', "',' between auth-params")?;
        c.skip_lws();
    }
}

/// Scans one warning-value.
fn scan_warning<'a>(c: &mut Cursor<'a>) -> PResult<(u16, &'a str, &'a str)> {
    c.skip_lws();
    let code = c.take_while(|b| b.is_ascii_digit());
    if code.len() != 3 {
        return Err(format!("warn-code '{code}' is not three digits").into());
    }
    let code = code
        .parse::<u16>()
        .map_err(|_| Reason::from("bad warn-code"))?;
    c.expect(b' ', "a space after the warn-code")?;
    let agent = c.take_class(GENVALUE);
    if agent.is_empty() {
        return Err(c.unexpected("a warn-agent"));
    }
    c.expect(b' ', "a space after the warn-agent")?;
    let text = c.quoted_string()?;
    Ok((code, agent, text))
}

/// Scans `token *(SEMI generic-param)`; returns the token and the raw params.
pub(crate) fn scan_token_params<'a>(
    c: &mut Cursor<'a>,
    what: &'static str,
) -> PResult<(&'a str, &'a str)> {
    c.skip_lws();
    let t = c.take_class(TOKEN);
    if t.is_empty() {
        return Err(c.unexpected(what));
    }
    let p = c.pos();
    scan_header_params(c, &mut |_, _| ())?;
    Ok((t, c.slice(p, c.pos())))
}

/// Scans a Call-ID-like word with params (Replaces).
fn scan_replaces<'a>(c: &mut Cursor<'a>) -> PResult<(&'a str, &'a str)> {
    c.skip_lws();
    let id = c.take_while(|b| b != b';' && b != b' ' && b != b'\t');
    check_call_id(id)?;
    let p = c.pos();
    scan_header_params(c, &mut |_, _| ())?;
    Ok((id, c.slice(p, c.pos())))
}

/// Scans `delta-seconds *(SEMI param)` (Session-Expires).
fn scan_delta_params<'a>(c: &mut Cursor<'a>, what: &'static str) -> PResult<(u32, &'a str)> {
    c.skip_lws();
    let d = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()), what)?;
    let p = c.pos();
    scan_header_params(c, &mut |_, _| ())?;
    Ok((d, c.slice(p, c.pos())))
}

/// Scans `delta-seconds [comment] *(SEMI param)` (Retry-After).
fn scan_retry_after<'a>(c: &mut Cursor<'a>) -> PResult<(u32, Option<&'a str>, &'a str)> {
    c.skip_lws();
    let d = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()), "Retry-After")?;
    let before = c.pos();
    c.skip_lws();
    let comment = if c.peek() == Some(b'(') {
        Some(c.comment()?)
    } else {
        c.set_pos(before);
        None
    };
    let p = c.pos();
    scan_header_params(c, &mut |_, _| ())?;
    Ok((d, comment, c.slice(p, c.pos())))
}

/// Scans `type "/" subtype *(SEMI m-parameter)` (Content-Type).
pub(crate) fn scan_media_type(c: &mut Cursor<'_>) -> PResult<()> {
    c.skip_lws();
    if c.take_class(TOKEN).is_empty() {
        return Err(c.unexpected("a media type"));
    }
    c.skip_lws();
    c.expect(b'/', "'/' in the media type")?;
    c.skip_lws();
    if c.take_class(TOKEN).is_empty() {
        return Err(c.unexpected("a media subtype"));
    }
    scan_header_params(c, &mut |_, _| ())
}

// ---------------------------------------------------------------------------
// Lists and whole-value helpers used by `Headers` and by the parser.

/// Scans a comma-separated list of at least one element, calling `f` on each.
pub(crate) fn scan_list<'a, T>(
    s: &'a str,
    mut elem: impl FnMut(&mut Cursor<'a>) -> PResult<T>,
    mut f: impl FnMut(T),
) -> PResult<()> {
    let mut c = Cursor::new(s);
    loop {
        c.skip_lws();
        if c.at_end() || c.peek() == Some(b',') {
            return Err("empty list element".into());
        }
        f(elem(&mut c)?);
        c.skip_lws();
        if c.at_end() {
            return Ok(());
        }
        if !c.eat(b',') {
            return Err(c.unexpected("',' or end of value"));
        }
    }
}

/// Parses a whole value as exactly one element.
pub(crate) fn scan_one<'a, T>(
    s: &'a str,
    elem: impl FnOnce(&mut Cursor<'a>) -> PResult<T>,
) -> PResult<T> {
    let mut c = Cursor::new(s);
    let v = elem(&mut c)?;
    c.skip_lws();
    if c.at_end() {
        Ok(v)
    } else {
        Err(c.unexpected("end of value"))
    }
}

/// Parses a Contact value: `*` or a list of name-addrs.
pub(crate) fn scan_contact_value<'a>(
    s: &'a str,
    f: impl FnMut(NameAddrRef<'a>),
) -> PResult<bool /* is star */> {
    if scan::trim_lws(s) == "*" {
        return Ok(true);
    }
    scan_list(s, scan_name_addr, f)?;
    Ok(false)
}

/// Splits a comma list outside quotes and `<>` into trimmed, non-empty items.
pub(crate) fn split_commas(s: &str) -> impl Iterator<Item = &str> {
    let mut c = Cursor::new(s);
    std::iter::from_fn(move || {
        loop {
            c.skip_lws();
            if c.at_end() {
                return None;
            }
            let start = c.pos();
            while let Some(b) = c.peek() {
                match b {
                    b',' => break,
                    b'"' => {
                        if c.quoted_string().is_err() {
                            c.set_pos(s.len());
                        }
                    }
                    b'<' => {
                        c.take_while(|b| b != b'>');
                        c.eat(b'>');
                    }
                    _ => {
                        c.take_while(|b| !matches!(b, b',' | b'"' | b'<'));
                    }
                }
            }
            let item = scan::trim_lws(c.slice(start, c.pos()));
            c.eat(b',');
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

/// Validates a token list (Allow, Supported, Require, ...): comma-separated
/// tokens; an empty value is allowed.
pub(crate) fn check_token_list(s: &str) -> PResult<()> {
    if scan::trim_lws(s).is_empty() {
        return Ok(());
    }
    scan_list(
        s,
        |c| {
            let t = c.take_class(TOKEN);
            if t.is_empty() {
                Err(c.unexpected("a token"))
            } else {
                Ok(())
            }
        },
        |_| (),
    )
}

/// Which grammar a header value is checked against by the parser.
pub(crate) fn validate(name: &crate::header::HeaderName, v: &str) -> PResult<()> {
    use crate::header::HeaderName as H;
    match name {
        // The fast checks accept a subset of the grammar; anything else
        // (and every error) goes to the full scanner.
        H::Via if crate::fast::via(v) => Ok(()),
        H::Via => scan_list(v, scan_via, |_| ()),
        H::From | H::To | H::Contact if crate::fast::name_addr(v) => Ok(()),
        H::From | H::To | H::ReferTo | H::ReferredBy => scan_one(v, scan_name_addr).map(|_| ()),
        H::Contact => scan_contact_value(v, |_| ()).map(|_| ()),
        H::Route | H::RecordRoute | H::Path => scan_list(v, scan_name_addr, |_| ()),
        H::CallId => check_call_id(v),
        H::CSeq if crate::fast::cseq(v) => Ok(()),
        H::CSeq => scan_cseq(v).map(|_| ()),
        H::MaxForwards => {
            let n = scan_delta(v, "Max-Forwards")?;
            if n > 255 {
                Err(format!("Max-Forwards {n} is over 255").into())
            } else {
                Ok(())
            }
        }
        H::Expires => scan_delta(v, "Expires").map(|_| ()),
        H::MinExpires => scan_delta(v, "Min-Expires").map(|_| ()),
        H::ContentType => scan_one(v, scan_media_type),
        H::Allow | H::Supported | H::Require | H::ProxyRequire | H::Unsupported => {
            if crate::fast::token_list(v) {
                Ok(())
            } else {
                check_token_list(v)
            }
        }
        H::Authorization | H::ProxyAuthorization | H::WwwAuthenticate | H::ProxyAuthenticate => {
            scan_auth(v, &mut |_, _| ()).map(|_| ())
        }
        H::Warning => scan_list(v, scan_warning, |_| ()),
        H::Event => scan_one(v, |c| scan_token_params(c, "an event type")).map(|_| ()),
        H::SubscriptionState => {
            scan_one(v, |c| scan_token_params(c, "a subscription state")).map(|_| ())
        }
        H::Replaces => scan_one(v, scan_replaces).map(|_| ()),
        H::SessionExpires => scan_one(v, |c| scan_delta_params(c, "Session-Expires")).map(|_| ()),
        H::RetryAfter => scan_one(v, scan_retry_after).map(|_| ()),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Owned builders used by `Headers`' typed getters.

pub(crate) fn via_list(v: &str, out: &mut Vec<Via>) -> PResult<()> {
    scan_list(v, scan_via, |r| out.push(r.to_owned()))
}

pub(crate) fn name_addr_list(v: &str, out: &mut Vec<NameAddr>) -> PResult<()> {
    scan_list(v, scan_name_addr, |r| out.push(r.to_owned()))
}

pub(crate) fn name_addr_one(v: &str) -> PResult<NameAddr> {
    scan_one(v, scan_name_addr).map(NameAddrRef::to_owned)
}

pub(crate) fn warning_list(v: &str, out: &mut Vec<Warning>) -> PResult<()> {
    scan_list(v, scan_warning, |(code, agent, text)| {
        out.push(Warning {
            code,
            agent: agent.to_owned(),
            text: scan::unquote(text).into_owned(),
        })
    })
}

pub(crate) fn event(v: &str) -> PResult<Event> {
    let (t, p) = scan_one(v, |c| scan_token_params(c, "an event type"))?;
    Ok(Event {
        package: t.to_owned(),
        params: Params::from_header_raw(p),
    })
}

pub(crate) fn subscription_state(v: &str) -> PResult<SubscriptionState> {
    let (t, p) = scan_one(v, |c| scan_token_params(c, "a subscription state"))?;
    Ok(SubscriptionState {
        state: t.to_owned(),
        params: Params::from_header_raw(p),
    })
}

pub(crate) fn replaces(v: &str) -> PResult<Replaces> {
    let (id, p) = scan_one(v, scan_replaces)?;
    Ok(Replaces {
        call_id: id.to_owned(),
        params: Params::from_header_raw(p),
    })
}

pub(crate) fn session_expires(v: &str) -> PResult<SessionExpires> {
    let (d, p) = scan_one(v, |c| scan_delta_params(c, "Session-Expires"))?;
    Ok(SessionExpires {
        delta: d,
        params: Params::from_header_raw(p),
    })
}

pub(crate) fn retry_after(v: &str) -> PResult<RetryAfter> {
    let (d, comment, p) = scan_one(v, scan_retry_after)?;
    Ok(RetryAfter {
        delta: d,
        comment: comment.map(str::to_owned),
        params: Params::from_header_raw(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vias(s: &str) -> PResult<Vec<Via>> {
        let mut v = Vec::new();
        via_list(s, &mut v)?;
        Ok(v)
    }

    #[test]
    fn via_with_lws_and_lists() {
        let v = vias(
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , \
             SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].transport, "TCP");
        assert_eq!(v[0].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(v[1].host, Host::Ipv4("192.168.255.111".parse().unwrap()));
        assert_eq!(v[1].branch(), Some("z9hG4bK30239"));
        let v = Via::parse("SIP/2.0/udp [2001:db8::9:1]:6050;rport;branch=z9hG4bKx").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
        let v = Via::parse("SIP/2.0/UDP h;rport=5060;received=[2001:db8::9:255]").unwrap();
        assert_eq!(v.rport(), Some(Some(5060)));
        assert_eq!(v.received(), Some("[2001:db8::9:255]"));
        assert!(Via::parse("SIP/2.0/UDP h;rport=x").is_err());
        assert!(Via::parse("SIP/7.0/UDP h").is_err());
        assert!(Via::parse("SIP/2.0/UDPh").is_err());
        assert!(vias("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(vias("SIP/2.0/UDP a,").is_err());
        let e = Via::parse("SIP/2.0/UDP ;branch=1").unwrap_err();
        assert!(e.to_string().starts_with("Via header: "), "{e}");
    }

    #[test]
    fn name_addrs() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").unwrap();
        assert_eq!(n.display.as_deref(), Some("A. Bell"));
        // cparam01 vs cparam02.
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(n.params.contains("unknownparam"));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        let n = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(n.params.is_empty());
        assert!(n.uri.as_sip().unwrap().params.contains("unknownparam"));
        // Non-SIP schemes.
        let n = NameAddr::parse("isbn:2983792873").unwrap();
        assert_eq!(n.uri.scheme(), "isbn");
        // Errors.
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>").is_err());
        assert!(NameAddr::parse("\"W\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E").is_err());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:x%3E>").is_ok());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("").is_err());
    }

    #[test]
    fn contact_star_and_lists() {
        assert!(scan_contact_value(" * ", |_| ()).unwrap());
        let mut n = 0;
        assert!(
            !scan_contact_value(
                "\"Quoted string \\\"\\\"\" <sip:a@b> ; newparam = newvalue ; secondparam ; q = 0.33, <sip:c@d>",
                |_| n += 1
            )
            .unwrap()
        );
        assert_eq!(n, 2);
        assert!(scan_contact_value("*, <sip:a@b>", |_| ()).is_err());
    }

    #[test]
    fn cseq_call_id_numbers() {
        assert_eq!(scan_cseq("0009 INVITE").unwrap(), (9, "INVITE"));
        assert!(scan_cseq("36893488147419103232 REGISTER").is_err());
        assert!(scan_cseq("1INVITE").is_err());
        assert!(scan_cseq("1 INVITE x").is_err());
        let c = CSeq::parse("4711 INVITE").unwrap();
        assert_eq!(c.method, Method::Invite);
        assert_eq!(c.to_string(), "4711 INVITE");
        assert!(check_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id("a b").is_err());
        assert!(check_call_id("a@b@c").is_err());
        assert!(check_call_id("@b").is_err());
        assert!(scan_delta(" 0068 ", "x").is_ok());
    }

    #[test]
    fn auth_with_quoted_commas() {
        let c = Credentials::parse(
            "Digest username=\"bob\", realm=\"a,b\",nonce=\"x\" , uri=\"sip:a@b\", qop=auth, nc=00000001, algorithm=MD5",
        )
        .unwrap();
        assert_eq!(c.scheme, "Digest");
        assert_eq!(c.params.unquoted("realm").as_deref(), Some("a,b"));
        assert_eq!(c.params.value("qop"), Some("auth"));
        assert_eq!(Credentials::parse(&c.to_string()).unwrap(), c);
        let ch =
            Challenge::parse("Digest realm=\"pbx\", qop=\"auth,auth-int\", stale=TRUE").unwrap();
        assert_eq!(ch.params.unquoted("qop").as_deref(), Some("auth,auth-int"));
        assert!(Credentials::parse("NoOneKnowsThisScheme opaque-data=here").is_ok());
        assert!(Credentials::parse("Digest realm=").is_err());
        assert!(Credentials::parse("Digest realm=\"x\" nonce=\"y\"").is_err());
        assert!(Credentials::parse("").is_err());
    }

    #[test]
    fn warnings() {
        let mut w = Vec::new();
        warning_list(
            "307 isi.edu \"Session parameter 'foo' not understood\", 399 [2001:db8::1]:5060 \"a \\\"b\\\"\"",
            &mut w,
        )
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].code, 307);
        assert_eq!(w[1].agent, "[2001:db8::1]:5060");
        assert_eq!(w[1].text, "a \"b\"");
        assert_eq!(w[1].to_string(), "399 [2001:db8::1]:5060 \"a \\\"b\\\"\"");
        assert!(warning_list("1812 overture \"In Progress\"", &mut w).is_err());
        assert!(warning_list("399 host text", &mut w).is_err());
    }

    #[test]
    fn other_typed_values() {
        let e = event("presence;id=17").unwrap();
        assert_eq!(e.package, "presence");
        assert_eq!(e.id(), Some("17"));
        let s = subscription_state("terminated;reason=timeout").unwrap();
        assert_eq!(s.reason(), Some("timeout"));
        let r =
            replaces("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only").unwrap();
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(r.to_tag(), Some("ff87ff"));
        assert!(r.early_only());
        let se = session_expires("1800;refresher=uac").unwrap();
        assert_eq!((se.delta, se.refresher()), (1800, Some("uac")));
        let ra = retry_after("18000 (in (a) meeting);duration=3600").unwrap();
        assert_eq!(ra.comment.as_deref(), Some("in (a) meeting"));
        assert_eq!(retry_after(&ra.to_string()).unwrap(), ra);
        assert!(retry_after("949302838503028349304023988").is_err());
        assert!(check_token_list("INVITE, ACK ,BYE").is_ok());
        assert!(check_token_list("").is_ok());
        assert!(check_token_list("INVITE,,BYE").is_err());
        let items: Vec<_> = split_commas("a, \"b,c\" , <sip:d,e>;x, ,f").collect();
        assert_eq!(items, vec!["a", "\"b,c\"", "<sip:d,e>;x", "f"]);
        assert!(scan_one("multipart/mixed;boundary=7a9cbec02ceef655", scan_media_type).is_ok());
        assert!(scan_one("application", scan_media_type).is_err());
    }
}
