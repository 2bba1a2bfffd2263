//! Lexical layer shared by the SIP parsers: RFC 3261 §25.1 character classes,
//! a panic-free cursor over an (already unfolded) header value, and quoted
//! strings (§25.1 `quoted-string`, `quoted-pair`).
//!
//! Every parser in this crate works on `&str` values whose line folding has
//! already been replaced by single spaces, so "LWS" here is just SP / HTAB.
//! The cursor never indexes: it peeks with `get`, and only ever stops on an
//! ASCII byte or at the end, so every slice it hands out falls on a UTF-8
//! character boundary.

use std::borrow::Cow;
use std::fmt;

/// Why a piece of text did not parse; wrapped into [`crate::Error`] by the
/// caller, who knows the header name and line.
pub(crate) type Reason = Cow<'static, str>;
/// Result of a low-level scanner.
pub(crate) type PResult<T> = Result<T, Reason>;

/// `token` characters (RFC 3261 §25.1).
pub(crate) const TOKEN: u16 = 1 << 0;
/// `word` characters (Call-ID).
pub(crate) const WORD: u16 = 1 << 1;
/// `unreserved` = alphanum / mark.
pub(crate) const UNRESERVED: u16 = 1 << 2;
/// `user`: unreserved / user-unreserved (escapes handled separately).
pub(crate) const USER: u16 = 1 << 3;
/// `password`: unreserved / `&=+$,`.
pub(crate) const PASSWORD: u16 = 1 << 4;
/// `paramchar`: param-unreserved / unreserved.
pub(crate) const PARAMCHAR: u16 = 1 << 5;
/// `hnv-unreserved` / unreserved (URI headers).
pub(crate) const HNV: u16 = 1 << 6;
/// Host name characters: alphanum, `-`, `.` and (tolerated) `_`.
pub(crate) const HOST: u16 = 1 << 7;
/// Unquoted `gen-value`: token / host (so `:`, `[`, `]` too).
pub(crate) const GENVALUE: u16 = 1 << 8;
/// Characters of an `absoluteURI` of an unknown scheme (RFC 2396 `uric`,
/// plus `[`, `]`, `#`).
pub(crate) const URIC: u16 = 1 << 9;
/// `tel:` number characters (RFC 3966 phonedigit-hex, separators, `+`).
pub(crate) const TEL: u16 = 1 << 10;
/// URI scheme characters after the first ALPHA.
pub(crate) const SCHEME: u16 = 1 << 11;
/// Plain `qdtext` (RFC 3261 §25.1): HTAB, printable ASCII but `"` and `\`,
/// and every non-ASCII byte (UTF-8 is checked elsewhere).
pub(crate) const QDTEXT: u16 = 1 << 12;

const fn has(set: &[u8], b: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == b {
            return true;
        }
        i += 1;
    }
    false
}

const fn build_classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let unreserved = alnum || has(b"-_.!~*'()", b);
        let token = alnum || has(b"-.!%*_+`'~", b);
        let mut c = 0u16;
        if token {
            c |= TOKEN | GENVALUE;
        }
        if token || has(b"()<>:\\\"/[]?{}", b) {
            c |= WORD;
        }
        if unreserved {
            c |= UNRESERVED;
        }
        if unreserved || has(b"&=+$,;?/", b) {
            c |= USER;
        }
        if unreserved || has(b"&=+$,", b) {
            c |= PASSWORD;
        }
        if unreserved || has(b"[]/:&+$", b) {
            c |= PARAMCHAR;
        }
        if unreserved || has(b"[]/?:+$", b) {
            c |= HNV;
        }
        if alnum || has(b"-._", b) {
            c |= HOST;
        }
        if has(b":[]", b) {
            c |= GENVALUE;
        }
        if unreserved || has(b";/?:@&=+$,%[]#", b) {
            c |= URIC;
        }
        if b.is_ascii_hexdigit() || has(b"*#-.()+", b) {
            c |= TEL;
        }
        if alnum || has(b"+-.", b) {
            c |= SCHEME;
        }
        if b == b'\t' || b >= 0x80 || (b >= 0x20 && b < 0x7f && b != b'"' && b != b'\\') {
            c |= QDTEXT;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CLASSES: [u16; 256] = build_classes();

/// Whether byte `b` belongs to `class` (one of the constants above, or an OR
/// of several).
#[inline]
pub(crate) fn is(b: u8, class: u16) -> bool {
    // A u8 index into a 256-entry table cannot be out of bounds.
    CLASSES[usize::from(b)] & class != 0
}

/// Whether the whole of `s` is a non-empty `token`.
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| is(b, TOKEN))
}

/// Trims SP and HTAB (only those: SIP's LWS) from both ends.
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    // SP and HTAB are ASCII, so both ends are character boundaries.
    s.get(start..end).unwrap_or_default()
}

/// The range of `b` left after trimming SP and HTAB from both ends.
#[inline]
pub(crate) fn trim_lws_range(b: &[u8]) -> (usize, usize) {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    (start, end)
}

/// Position of `b` in `s` — a plain loop, cheaper than `memchr` on the
/// short strings (URIs, parameters) it is used for.
#[inline]
pub(crate) fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// A read position in an unfolded header value (or a URI).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor {
            s,
            b: s.as_bytes(),
            pos: 0,
        }
    }

    /// The bytes from the cursor on.
    #[inline]
    fn tail(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or_default()
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn peek_at(&self, offset: usize) -> Option<u8> {
        self.b.get(self.pos + offset).copied()
    }

    #[inline]
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// The text between two positions this cursor has been at.
    #[inline]
    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        // Positions come from this cursor and sit on ASCII bytes or the end,
        // so `get` always succeeds; the fallback only guards against a bug.
        self.s.get(from..to).unwrap_or("")
    }

    #[cfg(test)]
    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// Consumes `b` if it is next.
    #[inline]
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips SP / HTAB and returns how many were skipped.
    #[inline]
    pub(crate) fn skip_lws(&mut self) -> usize {
        let n = self
            .tail()
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(self.b.len().saturating_sub(self.pos));
        self.pos += n;
        n
    }

    /// Consumes bytes while `f` holds. `f` must only accept ASCII bytes or
    /// accept every non-ASCII byte, so that the slice ends on a boundary.
    #[inline]
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let tail = self.tail();
        let n = tail.iter().position(|&b| !f(b)).unwrap_or(tail.len());
        self.pos += n;
        self.slice(start, self.pos)
    }

    /// Consumes bytes up to (not including) `stop`, or to the end.
    #[inline]
    pub(crate) fn take_until(&mut self, stop: u8) -> &'a str {
        let start = self.pos;
        let tail = self.tail();
        self.pos += find_byte(tail, stop).unwrap_or(tail.len());
        self.slice(start, self.pos)
    }

    /// Consumes bytes of a character class.
    #[inline]
    pub(crate) fn take_class(&mut self, class: u16) -> &'a str {
        self.take_while(|b| is(b, class))
    }

    /// Consumes bytes of a class plus `escaped` (`%` HEXDIG HEXDIG).
    pub(crate) fn take_escaped(&mut self, class: u16) -> PResult<&'a str> {
        let start = self.pos;
        loop {
            self.take_class(class);
            let Some(b) = self.peek() else { break };
            if b == b'%' {
                let ok = matches!(
                    (self.peek_at(1), self.peek_at(2)),
                    (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
                );
                if !ok {
                    return Err("'%' not followed by two hex digits".into());
                }
                self.pos += 3;
            } else {
                break;
            }
        }
        Ok(self.slice(start, self.pos))
    }

    /// Requires `b` next.
    #[inline]
    pub(crate) fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// An error describing the byte at the cursor, `while` doing `what`.
    pub(crate) fn unexpected(&self, what: &str) -> Reason {
        match self.peek() {
            None => format!("unexpected end of value, expected {what}").into(),
            Some(b) if b.is_ascii_graphic() => {
                format!("unexpected character '{}', expected {what}", char::from(b)).into()
            }
            Some(b) => format!("unexpected byte 0x{b:02x}, expected {what}").into(),
        }
    }

    /// Consumes a `quoted-string` starting at the cursor and returns it raw,
    /// quotes and backslashes included.
    pub(crate) fn quoted_string(&mut self) -> PResult<&'a str> {
        let start = self.pos;
        self.expect(b'"', "'\"'")?;
        loop {
            // Plain qdtext in one go.
            self.take_class(QDTEXT);
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.slice(start, self.pos));
                }
                Some(b'\\') => match self.peek_at(1) {
                    Some(b) if b < 0x80 && b != b'\r' && b != b'\n' => self.pos += 2,
                    _ => return Err("invalid quoted-pair in quoted string".into()),
                },
                Some(b) if b == b'\t' || b >= 0x20 && b != 0x7f => self.pos += 1,
                Some(b) => {
                    return Err(
                        format!("control byte 0x{b:02x} in quoted string (escape it)").into(),
                    );
                }
            }
        }
    }

    /// Consumes a `comment` (RFC 3261 §25.1: parentheses, nested) and
    /// returns its text without the outer parentheses.
    pub(crate) fn comment(&mut self) -> PResult<&'a str> {
        self.expect(b'(', "'('")?;
        let start = self.pos;
        let mut depth = 1usize;
        loop {
            match self.peek() {
                None => return Err("unterminated comment".into()),
                Some(b'(') => {
                    depth += 1;
                    self.pos += 1;
                }
                Some(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        let text = self.slice(start, self.pos);
                        self.pos += 1;
                        return Ok(text);
                    }
                    self.pos += 1;
                }
                Some(b'\\') => match self.peek_at(1) {
                    Some(b) if b < 0x80 && b != b'\r' && b != b'\n' => self.pos += 2,
                    _ => return Err("invalid quoted-pair in comment".into()),
                },
                Some(b) if b == b'\t' || b >= 0x20 && b != 0x7f => self.pos += 1,
                Some(b) => {
                    return Err(format!("control byte 0x{b:02x} in comment").into());
                }
            }
        }
    }
}

/// The text of a raw `quoted-string` (as returned by
/// [`Cursor::quoted_string`]) with its quotes and escapes removed. Text that
/// is not quoted is returned as it is.
pub(crate) fn unquote(raw: &str) -> Cow<'_, str> {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Cow::Borrowed(raw);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for ch in inner.chars() {
        if escaped {
            out.push(ch);
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

/// Writes `s` as a `quoted-string`: `"` and `\` and control characters are
/// escaped; CR and LF (which no quoted-pair may carry) become spaces.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for ch in s.chars() {
        match ch {
            '\r' | '\n' => f.write_char(' ')?,
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(ch)?;
            }
            c if (c < ' ' && c != '\t') || c == '\u{7f}' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// `s` quoted with [`write_quoted`].
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing to a String cannot fail.
    let _ = write_quoted(&mut out, s);
    out
}

/// Parses 1*DIGIT as a `u32` (leading zeros allowed).
pub(crate) fn parse_u32(digits: &str, what: &'static str) -> PResult<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} is not a number").into());
    }
    let mut v: u32 = 0;
    for b in digits.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(b - b'0')))
            .ok_or_else(|| Reason::from(format!("{what} is larger than 2^32-1")))?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is(b'a', TOKEN) && is(b'%', TOKEN) && is(b'`', TOKEN));
        assert!(!is(b':', TOKEN) && is(b':', GENVALUE) && is(b':', WORD));
        assert!(is(b';', USER) && !is(b';', PASSWORD) && !is(b'@', USER));
        assert!(!is(0x80, TOKEN) && !is(b' ', URIC));
    }

    #[test]
    fn quoted_strings() {
        let mut c = Cursor::new(r#""J Rosenberg \\\"" rest"#);
        assert_eq!(c.quoted_string().unwrap(), r#""J Rosenberg \\\"""#);
        assert_eq!(c.rest(), " rest");
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), "J Rosenberg \\\"");
        assert_eq!(unquote("\"a,b\""), "a,b");
        assert!(Cursor::new("\"open").quoted_string().is_err());
        assert!(Cursor::new("\"bad\u{1}\"").quoted_string().is_err());
        assert!(Cursor::new("\"\\\u{e9}\"").quoted_string().is_err());
        // UTF-8 inside quotes is fine.
        assert!(Cursor::new("\"Привет\"").quoted_string().is_ok());
        let s = "BEL:\u{7} NUL:\0 \"q\" back\\slash";
        let q = quote(s);
        let mut c = Cursor::new(&q);
        let raw = c.quoted_string().unwrap();
        assert_eq!(unquote(raw), s);
        assert_eq!(quote("a\r\nb"), "\"a  b\"");
    }

    #[test]
    fn escapes_and_numbers() {
        let mut c = Cursor::new("a%41b%4");
        assert!(c.take_escaped(USER).is_err());
        let mut c = Cursor::new("a%41b@");
        assert_eq!(c.take_escaped(USER).unwrap(), "a%41b");
        assert_eq!(parse_u32("0068", "x").unwrap(), 68);
        assert!(parse_u32("4294967296", "x").is_err());
        assert!(parse_u32("", "x").is_err());
        assert!(parse_u32("-1", "x").is_err());
        let mut c = Cursor::new("(a (nested) \\) one) x");
        assert_eq!(c.comment().unwrap(), "a (nested) \\) one");
    }
}
