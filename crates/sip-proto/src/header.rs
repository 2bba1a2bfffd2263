//! Header fields (RFC 3261 §7.3, §20): names with their compact forms
//! (§7.3.3, RFC 3515, RFC 3892, RFC 4028, RFC 6665), the ordered raw
//! [`Headers`] list, and typed accessors that parse values on demand.
//!
//! Values are stored as received, unfolded and trimmed; typed getters parse
//! them each time they are called (a message that [`crate::Message::parse`]
//! accepted has already had every known header's syntax checked, so on such
//! a message the getters only fail for headers that were edited since).

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::error::Error;
use crate::typed;

pub use crate::params::Params;
pub use crate::typed::{
    CSeq, Challenge, Contact, Credentials, Event, NameAddr, Replaces, RetryAfter, SessionExpires,
    SubscriptionState, Via, Warning,
};
pub use crate::value::HeaderValue;

/// A header field name. Parsing is case-insensitive and maps compact forms
/// to their full name; headers without a variant are kept as
/// [`HeaderName::Other`] (compact forms of those, like `s` for Subject, are
/// stored under their full name). Two names are equal when their full
/// names are equal ignoring ASCII case, so `Other("via") == Via`.
#[derive(Debug, Clone)]
pub enum HeaderName {
    /// `Via` / `v`.
    Via,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Call-ID` / `i`.
    CallId,
    /// `CSeq`.
    CSeq,
    /// `Contact` / `m`.
    Contact,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Route`.
    Route,
    /// `Record-Route`.
    RecordRoute,
    /// `Path` (RFC 3327).
    Path,
    /// `Content-Length` / `l` (never stored by the parser; see [`Headers`]).
    ContentLength,
    /// `Content-Type` / `c`.
    ContentType,
    /// `Expires`.
    Expires,
    /// `Min-Expires`.
    MinExpires,
    /// `Allow`.
    Allow,
    /// `Supported` / `k`.
    Supported,
    /// `Require`.
    Require,
    /// `Proxy-Require`.
    ProxyRequire,
    /// `Unsupported`.
    Unsupported,
    /// `User-Agent`.
    UserAgent,
    /// `Server`.
    Server,
    /// `Authorization`.
    Authorization,
    /// `Proxy-Authorization`.
    ProxyAuthorization,
    /// `WWW-Authenticate`.
    WwwAuthenticate,
    /// `Proxy-Authenticate`.
    ProxyAuthenticate,
    /// `Warning`.
    Warning,
    /// `Event` / `o` (RFC 6665).
    Event,
    /// `Subscription-State` (RFC 6665).
    SubscriptionState,
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo,
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy,
    /// `Replaces` (RFC 3891).
    Replaces,
    /// `Session-Expires` / `x` (RFC 4028).
    SessionExpires,
    /// `Retry-After`.
    RetryAfter,
    /// `Accept`.
    Accept,
    /// Any other header, by its name as received (or the full name for a
    /// compact form: `s` → `Subject`, `e` → `Content-Encoding`, ...).
    Other(String),
}

/// Known full names, in the order of the variants above (checked against
/// `known` and `as_str` in the tests).
#[cfg(test)]
const KNOWN: &[(&str, HeaderName)] = &[
    ("Via", HeaderName::Via),
    ("From", HeaderName::From),
    ("To", HeaderName::To),
    ("Call-ID", HeaderName::CallId),
    ("CSeq", HeaderName::CSeq),
    ("Contact", HeaderName::Contact),
    ("Max-Forwards", HeaderName::MaxForwards),
    ("Route", HeaderName::Route),
    ("Record-Route", HeaderName::RecordRoute),
    ("Path", HeaderName::Path),
    ("Content-Length", HeaderName::ContentLength),
    ("Content-Type", HeaderName::ContentType),
    ("Expires", HeaderName::Expires),
    ("Min-Expires", HeaderName::MinExpires),
    ("Allow", HeaderName::Allow),
    ("Supported", HeaderName::Supported),
    ("Require", HeaderName::Require),
    ("Proxy-Require", HeaderName::ProxyRequire),
    ("Unsupported", HeaderName::Unsupported),
    ("User-Agent", HeaderName::UserAgent),
    ("Server", HeaderName::Server),
    ("Authorization", HeaderName::Authorization),
    ("Proxy-Authorization", HeaderName::ProxyAuthorization),
    ("WWW-Authenticate", HeaderName::WwwAuthenticate),
    ("Proxy-Authenticate", HeaderName::ProxyAuthenticate),
    ("Warning", HeaderName::Warning),
    ("Event", HeaderName::Event),
    ("Subscription-State", HeaderName::SubscriptionState),
    ("Refer-To", HeaderName::ReferTo),
    ("Referred-By", HeaderName::ReferredBy),
    ("Replaces", HeaderName::Replaces),
    ("Session-Expires", HeaderName::SessionExpires),
    ("Retry-After", HeaderName::RetryAfter),
    ("Accept", HeaderName::Accept),
];

/// The lowercase bytes of `name` (up to 16) as a little-endian word, and
/// the mask of its letters' case bits, for [`HeaderName::known`].
const fn name_key(name: &[u8]) -> (u128, u128) {
    let (mut v, mut m) = (0u128, 0u128);
    let mut i = 0;
    while i < name.len() && i < 16 {
        let c = name[i];
        v |= (c.to_ascii_lowercase() as u128) << (8 * i);
        if c.is_ascii_alphabetic() {
            m |= 0x20u128 << (8 * i);
        }
        i += 1;
    }
    (v, m)
}

/// Compact forms of headers that have no variant: their full names.
fn compact_other(c: u8) -> Option<&'static str> {
    Some(match c {
        b'a' => "Accept-Contact",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'j' => "Reject-Contact",
        b'n' => "Identity-Info",
        b's' => "Subject",
        b'u' => "Allow-Events",
        b'y' => "Identity",
        _ => return None,
    })
}

impl HeaderName {
    /// Parses a header name: case-insensitive; compact forms `v f t i m l c
    /// k e o r b x s u` (and `a d j n y`) are recognised.
    pub fn parse(s: &str) -> HeaderName {
        Self::from_bytes(s.as_bytes())
    }

    /// [`HeaderName::parse`] on bytes (non-UTF-8 bytes of an unknown name
    /// are replaced; the parser only passes tokens, which are ASCII).
    pub(crate) fn from_bytes(b: &[u8]) -> HeaderName {
        if let Some(h) = Self::known(b) {
            return h;
        }
        match b {
            [c] => match compact_other(c.to_ascii_lowercase()) {
                Some(full) => HeaderName::Other(full.to_owned()),
                None => HeaderName::Other(String::from_utf8_lossy(b).into_owned()),
            },
            _ => HeaderName::Other(String::from_utf8_lossy(b).into_owned()),
        }
    }

    /// The variant for a known name or compact form, without allocating.
    pub(crate) fn known(b: &[u8]) -> Option<HeaderName> {
        if let [c] = b {
            return Some(match c.to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'k' => HeaderName::Supported,
                b'o' => HeaderName::Event,
                b'r' => HeaderName::ReferTo,
                b'b' => HeaderName::ReferredBy,
                b'x' => HeaderName::SessionExpires,
                _ => return None,
            });
        }
        let first = b.first()?.to_ascii_lowercase();
        // Names of up to 16 bytes are compared as one 128-bit word: `b`,
        // zero-padded, with the case bit (0x20) forced on where the known
        // name has a letter, equals the lowercase name exactly when
        // `eq_ignore_ascii_case` holds (the lengths are already equal).
        let word = (b.len() <= 16).then(|| {
            let mut a = [0u8; 16];
            for (d, s) in a.iter_mut().zip(b) {
                *d = *s;
            }
            u128::from_le_bytes(a)
        });
        macro_rules! is {
            ($name:literal) => {{
                const KEY: (u128, u128) = name_key($name.as_bytes());
                match word {
                    Some(w) if $name.len() <= 16 => w | KEY.1 == KEY.0,
                    _ => b.eq_ignore_ascii_case($name.as_bytes()),
                }
            }};
        }
        // Dispatch on length and first letter, then compare once or twice.
        Some(match (b.len(), first) {
            (2, b't') if is!("To") => HeaderName::To,
            (3, b'v') if is!("Via") => HeaderName::Via,
            (4, b'f') if is!("From") => HeaderName::From,
            (4, b'c') if is!("CSeq") => HeaderName::CSeq,
            (4, b'p') if is!("Path") => HeaderName::Path,
            (5, b'r') if is!("Route") => HeaderName::Route,
            (5, b'a') if is!("Allow") => HeaderName::Allow,
            (5, b'e') if is!("Event") => HeaderName::Event,
            (6, b'a') if is!("Accept") => HeaderName::Accept,
            (6, b's') if is!("Server") => HeaderName::Server,
            (7, b'c') if is!("Call-ID") => HeaderName::CallId,
            (7, b'c') if is!("Contact") => HeaderName::Contact,
            (7, b'e') if is!("Expires") => HeaderName::Expires,
            (7, b'r') if is!("Require") => HeaderName::Require,
            (7, b'w') if is!("Warning") => HeaderName::Warning,
            (8, b'r') if is!("Refer-To") => HeaderName::ReferTo,
            (8, b'r') if is!("Replaces") => HeaderName::Replaces,
            (9, b's') if is!("Supported") => HeaderName::Supported,
            (10, b'u') if is!("User-Agent") => HeaderName::UserAgent,
            (11, b'm') if is!("Min-Expires") => HeaderName::MinExpires,
            (11, b'u') if is!("Unsupported") => HeaderName::Unsupported,
            (11, b'r') if is!("Retry-After") => HeaderName::RetryAfter,
            (11, b'r') if is!("Referred-By") => HeaderName::ReferredBy,
            (12, b'm') if is!("Max-Forwards") => HeaderName::MaxForwards,
            (12, b'r') if is!("Record-Route") => HeaderName::RecordRoute,
            (12, b'c') if is!("Content-Type") => HeaderName::ContentType,
            (13, b'a') if is!("Authorization") => HeaderName::Authorization,
            (13, b'p') if is!("Proxy-Require") => HeaderName::ProxyRequire,
            (14, b'c') if is!("Content-Length") => HeaderName::ContentLength,
            (15, b's') if is!("Session-Expires") => HeaderName::SessionExpires,
            (16, b'w') if is!("WWW-Authenticate") => HeaderName::WwwAuthenticate,
            (18, b'p') if is!("Proxy-Authenticate") => HeaderName::ProxyAuthenticate,
            (18, b's') if is!("Subscription-State") => HeaderName::SubscriptionState,
            (19, b'p') if is!("Proxy-Authorization") => HeaderName::ProxyAuthorization,
            _ => return None,
        })
    }

    /// The canonical full name (`Call-ID`, `WWW-Authenticate`, ...); for
    /// [`HeaderName::Other`], the stored name.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Other(s) => s,
            known => known.static_name(),
        }
    }

    /// The canonical name of a known header as a `'static` string (for
    /// error messages); `header` for [`HeaderName::Other`].
    pub(crate) fn static_name(&self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Path => "Path",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Allow => "Allow",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Warning => "Warning",
            HeaderName::Event => "Event",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::Replaces => "Replaces",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Accept => "Accept",
            HeaderName::Other(_) => "header",
        }
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => {
                self.as_str().eq_ignore_ascii_case(other.as_str())
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: the lower-cased full name.
        for b in self.as_str().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field: its name and its value, unfolded (each fold became
/// one SP) and trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name.
    pub name: HeaderName,
    /// The value as received, unfolded and trimmed (derefs to `&str`; a
    /// parsed value shares the message text instead of owning a copy).
    pub value: HeaderValue,
}

/// The header fields of a message, in order.
///
/// `Content-Length` is not kept here: the parser uses it to frame the body
/// and the serializer always writes `Content-Length: <body length>` (any
/// Content-Length pushed here is ignored when writing), so that
/// parse → serialize → parse gives an equal message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers { list: Vec::new() }
    }

    /// With room for `n` headers.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            list: Vec::with_capacity(n),
        }
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.list.iter()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.list
            .iter()
            .find(|h| h.name == *name)
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`, in order (one per header line, not split at commas).
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> {
        self.list
            .iter()
            .filter(move |h| h.name == *name)
            .map(|h| h.value.as_str())
    }

    /// The first value of the header called `name` (any case, compact form allowed).
    pub fn get_raw(&self, name: &str) -> Option<&str> {
        match HeaderName::known(name.as_bytes()) {
            Some(h) => self.get(&h),
            None => {
                let full = match name.as_bytes() {
                    [c] => compact_other(c.to_ascii_lowercase()).unwrap_or(name),
                    _ => name,
                };
                self.list
                    .iter()
                    .find(|h| h.name.as_str().eq_ignore_ascii_case(full))
                    .map(|h| h.value.as_str())
            }
        }
    }

    /// Appends a header.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.list.push(Header {
            name,
            value: HeaderValue::from(value.into()),
        });
    }

    /// Inserts a header before the first existing one of the same name (a
    /// new top Via or Record-Route), or at the top if there is none.
    pub fn insert_first(&mut self, name: HeaderName, value: impl Into<String>) {
        let at = self.list.iter().position(|h| h.name == name).unwrap_or(0);
        self.list.insert(
            at,
            Header {
                name,
                value: HeaderValue::from(value.into()),
            },
        );
    }

    /// Replaces every header of that name by one with `value`, at the
    /// position of the first (or appended if there was none).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = HeaderValue::from(value.into());
        match self.list.iter().position(|h| h.name == name) {
            Some(at) => {
                let mut i = 0;
                self.list.retain(|h| {
                    let keep = i <= at || h.name != name;
                    i += 1;
                    keep
                });
                if let Some(h) = self.list.get_mut(at) {
                    h.value = value;
                }
            }
            None => self.list.push(Header { name, value }),
        }
    }

    /// Replaces the first comma-separated value of the first header of that
    /// name with `value`, keeping the values after it on that line and every
    /// other header (how a received Via is stamped with `received`/`rport`).
    /// Returns `false`, changing nothing, if there is no such header.
    pub fn replace_first_value(&mut self, name: &HeaderName, value: &str) -> bool {
        let Some(h) = self.list.iter_mut().find(|h| h.name == *name) else {
            return false;
        };
        // The rest of the line is kept as it came: everything after the
        // comma that ends the first value.
        let line: &str = &h.value;
        let first_end = split_list(line).next().map_or(0, |first| {
            first.as_ptr() as usize - line.as_ptr() as usize + first.len()
        });
        let rest = line
            .get(first_end..)
            .and_then(|tail| tail.find(',').and_then(|c| tail.get(c + 1..)))
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let new = match rest {
            Some(rest) => format!("{value}, {rest}"),
            None => value.to_owned(),
        };
        h.value = HeaderValue::from(new);
        true
    }

    /// Removes every header of that name; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.list.len();
        self.list.retain(|h| h.name != *name);
        before - self.list.len()
    }

    /// Appends a header whose value is already a [`HeaderValue`] (the
    /// parser's path: no copy).
    pub fn push_value(&mut self, name: HeaderName, value: HeaderValue) {
        self.list.push(Header { name, value });
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn err(name: &HeaderName, reason: crate::scan::Reason) -> Error {
        Error::header(name.static_name(), None, reason)
    }

    fn missing(name: &HeaderName) -> Error {
        Error::MissingHeader {
            name: name.static_name(),
        }
    }

    fn name_addr_list(&self, name: &HeaderName) -> Result<Vec<NameAddr>, Error> {
        let mut out = Vec::new();
        for v in self.get_all(name) {
            typed::name_addr_list(v, &mut out).map_err(|r| Self::err(name, r))?;
        }
        Ok(out)
    }

    fn name_addr_one(&self, name: &HeaderName) -> Result<Option<NameAddr>, Error> {
        self.get(name)
            .map(|v| typed::name_addr_one(v).map_err(|r| Self::err(name, r)))
            .transpose()
    }

    fn number(&self, name: &HeaderName) -> Result<Option<u32>, Error> {
        self.get(name)
            .map(|v| typed::scan_delta(v, name.static_name()).map_err(|r| Self::err(name, r)))
            .transpose()
    }

    /// Every Via value, top first, comma-separated values split.
    pub fn via(&self) -> Result<Vec<Via>, Error> {
        let mut out = Vec::new();
        for v in self.get_all(&HeaderName::Via) {
            typed::via_list(v, &mut out).map_err(|r| Self::err(&HeaderName::Via, r))?;
        }
        Ok(out)
    }

    /// The topmost Via value only (cheaper than [`Headers::via`]).
    pub fn top_via(&self) -> Result<Option<Via>, Error> {
        let Some(v) = self.get(&HeaderName::Via) else {
            return Ok(None);
        };
        let mut c = crate::scan::Cursor::new(v);
        typed::scan_via(&mut c)
            .map(|r| Some(r.to_owned()))
            .map_err(|r| Self::err(&HeaderName::Via, r))
    }

    /// The Contact headers: `*`, or every address (comma lists split;
    /// empty if there is no Contact). `*` mixed with addresses is an error.
    pub fn contact(&self) -> Result<Contact, Error> {
        let mut out = Vec::new();
        let mut star = false;
        let mut count = 0;
        for v in self.get_all(&HeaderName::Contact) {
            count += 1;
            star |= typed::scan_contact_value(v, |r| out.push(r.to_owned()))
                .map_err(|r| Self::err(&HeaderName::Contact, r))?;
        }
        if star {
            if count > 1 {
                return Err(Self::err(
                    &HeaderName::Contact,
                    "'*' must be the only Contact value".into(),
                ));
            }
            return Ok(Contact::Star);
        }
        Ok(Contact::Addrs(out))
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr, Error> {
        self.name_addr_one(&HeaderName::From)?
            .ok_or_else(|| Self::missing(&HeaderName::From))
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr, Error> {
        self.name_addr_one(&HeaderName::To)?
            .ok_or_else(|| Self::missing(&HeaderName::To))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.get(&HeaderName::CallId)
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq, Error> {
        let v = self
            .get(&HeaderName::CSeq)
            .ok_or_else(|| Self::missing(&HeaderName::CSeq))?;
        CSeq::parse(v)
    }

    /// Max-Forwards (0–255), if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, Error> {
        let n = self.number(&HeaderName::MaxForwards)?;
        match n {
            Some(n) if n > 255 => Err(Self::err(
                &HeaderName::MaxForwards,
                format!("Max-Forwards {n} is over 255").into(),
            )),
            n => Ok(n),
        }
    }

    /// Expires (seconds), if present.
    pub fn expires(&self) -> Result<Option<u32>, Error> {
        self.number(&HeaderName::Expires)
    }

    /// Min-Expires (seconds), if present.
    pub fn min_expires(&self) -> Result<Option<u32>, Error> {
        self.number(&HeaderName::MinExpires)
    }

    /// Every Route value, in order.
    pub fn route(&self) -> Result<Vec<NameAddr>, Error> {
        self.name_addr_list(&HeaderName::Route)
    }

    /// Every Record-Route value, in order.
    pub fn record_route(&self) -> Result<Vec<NameAddr>, Error> {
        self.name_addr_list(&HeaderName::RecordRoute)
    }

    /// Every Path value (RFC 3327), in order.
    pub fn path(&self) -> Result<Vec<NameAddr>, Error> {
        self.name_addr_list(&HeaderName::Path)
    }

    /// The comma-separated items of every `name` header, trimmed, empty
    /// items dropped (Allow, Supported, Require, Proxy-Require, Unsupported,
    /// Accept, ...). Commas inside quotes or `<>` do not split.
    pub fn tokens(&self, name: &HeaderName) -> Vec<String> {
        self.get_all(name)
            .flat_map(typed::split_commas)
            .map(str::to_owned)
            .collect()
    }

    fn auth<T>(
        &self,
        name: &HeaderName,
        make: impl Fn(String, Params) -> T,
    ) -> Result<Vec<T>, Error> {
        self.get_all(name)
            .map(|v| {
                let mut params = Params::new();
                let scheme =
                    typed::scan_auth(v, &mut |n, val| params.push(n, Some(val.to_owned())))
                        .map_err(|r| Self::err(name, r))?;
                Ok(make(scheme.to_owned(), params))
            })
            .collect()
    }

    /// Every Authorization value (one credentials per header line).
    pub fn authorization(&self) -> Result<Vec<Credentials>, Error> {
        self.auth(&HeaderName::Authorization, |scheme, params| Credentials {
            scheme,
            params,
        })
    }

    /// Every Proxy-Authorization value.
    pub fn proxy_authorization(&self) -> Result<Vec<Credentials>, Error> {
        self.auth(&HeaderName::ProxyAuthorization, |scheme, params| {
            Credentials { scheme, params }
        })
    }

    /// Every WWW-Authenticate challenge.
    pub fn www_authenticate(&self) -> Result<Vec<Challenge>, Error> {
        self.auth(&HeaderName::WwwAuthenticate, |scheme, params| Challenge {
            scheme,
            params,
        })
    }

    /// Every Proxy-Authenticate challenge.
    pub fn proxy_authenticate(&self) -> Result<Vec<Challenge>, Error> {
        self.auth(&HeaderName::ProxyAuthenticate, |scheme, params| Challenge {
            scheme,
            params,
        })
    }

    /// Every Warning value, comma lists split.
    pub fn warning(&self) -> Result<Vec<Warning>, Error> {
        let mut out = Vec::new();
        for v in self.get_all(&HeaderName::Warning) {
            typed::warning_list(v, &mut out).map_err(|r| Self::err(&HeaderName::Warning, r))?;
        }
        Ok(out)
    }

    /// The Content-Type value, raw (`application/sdp`).
    pub fn content_type(&self) -> Option<&str> {
        self.get(&HeaderName::ContentType)
    }

    /// The Event header, if present.
    pub fn event(&self) -> Result<Option<Event>, Error> {
        let n = HeaderName::Event;
        self.get(&n)
            .map(|v| typed::event(v).map_err(|r| Self::err(&n, r)))
            .transpose()
    }

    /// The Subscription-State header, if present.
    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, Error> {
        let n = HeaderName::SubscriptionState;
        self.get(&n)
            .map(|v| typed::subscription_state(v).map_err(|r| Self::err(&n, r)))
            .transpose()
    }

    /// The Refer-To header, if present.
    pub fn refer_to(&self) -> Result<Option<NameAddr>, Error> {
        self.name_addr_one(&HeaderName::ReferTo)
    }

    /// The Referred-By header, if present.
    pub fn referred_by(&self) -> Result<Option<NameAddr>, Error> {
        self.name_addr_one(&HeaderName::ReferredBy)
    }

    /// The Replaces header, if present.
    pub fn replaces(&self) -> Result<Option<Replaces>, Error> {
        let n = HeaderName::Replaces;
        self.get(&n)
            .map(|v| typed::replaces(v).map_err(|r| Self::err(&n, r)))
            .transpose()
    }

    /// The Session-Expires header, if present.
    pub fn session_expires(&self) -> Result<Option<SessionExpires>, Error> {
        let n = HeaderName::SessionExpires;
        self.get(&n)
            .map(|v| typed::session_expires(v).map_err(|r| Self::err(&n, r)))
            .transpose()
    }

    /// The Retry-After header, if present.
    pub fn retry_after(&self) -> Result<Option<RetryAfter>, Error> {
        let n = HeaderName::RetryAfter;
        self.get(&n)
            .map(|v| typed::retry_after(v).map_err(|r| Self::err(&n, r)))
            .transpose()
    }

    /// The User-Agent value, raw.
    pub fn user_agent(&self) -> Option<&str> {
        self.get(&HeaderName::UserAgent)
    }

    /// The Server value, raw.
    pub fn server(&self) -> Option<&str> {
        self.get(&HeaderName::Server)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// Splits a header value into its comma-separated values, trimmed and
/// non-empty, never inside a quoted string or `<...>` (RFC 3261 §7.3.1).
/// Works on any text, well-formed or not.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    typed::split_commas(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compact_forms() {
        for (s, h) in [
            ("v", HeaderName::Via),
            ("VIA", HeaderName::Via),
            ("f", HeaderName::From),
            ("T", HeaderName::To),
            ("i", HeaderName::CallId),
            ("call-id", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("o", HeaderName::Event),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("MaX-fOrWaRdS", HeaderName::MaxForwards),
        ] {
            assert_eq!(HeaderName::parse(s), h, "{s}");
        }
        for (name, h) in KNOWN {
            assert_eq!(
                HeaderName::known(name.as_bytes()).as_ref(),
                Some(h),
                "{name}"
            );
            assert_eq!(
                HeaderName::known(name.to_ascii_uppercase().as_bytes()).as_ref(),
                Some(h)
            );
            assert_eq!(h.as_str(), *name);
        }
        assert_eq!(HeaderName::parse("s").as_str(), "Subject");
        assert_eq!(HeaderName::parse("e").as_str(), "Content-Encoding");
        assert_eq!(HeaderName::parse("u").as_str(), "Allow-Events");
        assert_eq!(HeaderName::parse("subject"), HeaderName::parse("s"));
        assert_eq!(HeaderName::parse("C%6Fntact").as_str(), "C%6Fntact");
        assert_ne!(HeaderName::parse("C%6Fntact"), HeaderName::Contact);
        assert_eq!(HeaderName::Other("via".into()), HeaderName::Via);
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        use std::collections::HashSet;
        let set: HashSet<_> = [
            HeaderName::Other("X-A".into()),
            HeaderName::Other("x-a".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn known_names_compare_exactly() {
        // Only letters match in either case: a non-letter with its 0x20 bit
        // flipped ('-' vs CR) or any other change is another name.
        for (name, h) in KNOWN {
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect();
            assert_eq!(
                HeaderName::known(mixed.as_bytes()).as_ref(),
                Some(h),
                "{mixed}"
            );
            for i in 0..name.len() {
                for flip in [0x20u8, 0x01, 0x80] {
                    let mut b = name.as_bytes().to_vec();
                    b[i] ^= flip;
                    if flip == 0x20 && b[i].is_ascii_alphabetic() {
                        continue;
                    }
                    assert_ne!(HeaderName::known(&b).as_ref(), Some(h), "{b:?}");
                }
            }
            let mut longer = name.as_bytes().to_vec();
            longer.push(b'x');
            assert_ne!(HeaderName::known(&longer).as_ref(), Some(h), "{longer:?}");
        }
    }

    #[test]
    fn edit_operations() {
        let mut h = Headers::new();
        h.push(HeaderName::Via, "SIP/2.0/UDP a");
        h.push(HeaderName::From, "<sip:a@b>;tag=1");
        h.push(HeaderName::Via, "SIP/2.0/UDP b");
        h.insert_first(HeaderName::Via, "SIP/2.0/UDP top");
        assert_eq!(h.get(&HeaderName::Via), Some("SIP/2.0/UDP top"));
        assert_eq!(h.get_all(&HeaderName::Via).count(), 3);
        h.insert_first(HeaderName::RecordRoute, "<sip:p;lr>");
        assert_eq!(h.iter().next().unwrap().name, HeaderName::RecordRoute);
        h.set(HeaderName::Via, "SIP/2.0/TCP only");
        assert_eq!(
            h.get_all(&HeaderName::Via).collect::<Vec<_>>(),
            ["SIP/2.0/TCP only"]
        );
        assert_eq!(h.iter().nth(1).unwrap().name, HeaderName::Via);
        h.set(HeaderName::Expires, "60");
        assert_eq!(h.expires().unwrap(), Some(60));
        assert_eq!(h.get_raw("v"), Some("SIP/2.0/TCP only"));
        assert_eq!(h.get_raw("F"), Some("<sip:a@b>;tag=1"));
        h.push(HeaderName::parse("Subject"), "hi");
        assert_eq!(h.get_raw("s"), Some("hi"));
        assert_eq!(h.remove(&HeaderName::Via), 1);
        assert_eq!(h.len(), 4);
        assert!(!h.is_empty());
    }

    #[test]
    fn typed_getters() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b",
        );
        h.push(HeaderName::Via, "SIP/2.0/UDP c");
        h.push(HeaderName::Contact, "*");
        h.push(HeaderName::Allow, "INVITE, ACK,BYE");
        h.push(HeaderName::Allow, "OPTIONS");
        h.push(
            HeaderName::Authorization,
            "Digest username=\"a\", realm=\"x,y\"",
        );
        h.push(HeaderName::Warning, "399 pbx \"a, b\", 307 isi.edu \"x\"");
        h.push(HeaderName::MaxForwards, "300");
        assert_eq!(h.via().unwrap().len(), 3);
        assert_eq!(h.top_via().unwrap().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(h.contact().unwrap(), Contact::Star);
        assert_eq!(
            h.tokens(&HeaderName::Allow),
            ["INVITE", "ACK", "BYE", "OPTIONS"]
        );
        let a = h.authorization().unwrap();
        assert_eq!(a[0].params.unquoted("realm").as_deref(), Some("x,y"));
        assert_eq!(h.warning().unwrap().len(), 2);
        assert!(h.max_forwards().is_err());
        assert!(matches!(
            h.from(),
            Err(Error::MissingHeader { name: "From" })
        ));
        h.push(HeaderName::Contact, "<sip:a@b>");
        assert!(h.contact().is_err());
        assert_eq!(h.event().unwrap(), None);
        assert_eq!(Headers::new().contact().unwrap(), Contact::Addrs(vec![]));
    }

    #[test]
    fn replace_first_value_keeps_the_rest_of_the_line() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP \"b,c\"",
        );
        h.push(HeaderName::Via, "SIP/2.0/UDP d");
        assert!(h.replace_first_value(&HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1;rport=9"));
        let all: Vec<&str> = h.get_all(&HeaderName::Via).collect();
        assert_eq!(
            all,
            [
                "SIP/2.0/UDP a;branch=z9hG4bK1;rport=9, SIP/2.0/UDP \"b,c\"",
                "SIP/2.0/UDP d"
            ]
        );
        assert!(!h.replace_first_value(&HeaderName::Route, "x"));
        assert_eq!(h.len(), 2);
    }
}
