//! Fast acceptance of the common shapes of Via (RFC 3261 §20.42), From /
//! To / Contact (§20.10, §20.20, §20.39) and token-list (§20.5 Allow,
//! §20.37 Supported, ...) and CSeq (§20.16) values, for the parser's
//! validation pass.
//!
//! Each check reads the value once, byte by byte, and answers `true` only
//! for a strict subset of what the full scanners in `typed.rs` accept (no
//! LWS inside, no escapes, no quoted parameter values, one list element,
//! lowercase `sip:`/`sips:`, ...). `false` means "not sure": the caller then
//! runs the full scanner, which gives the answer and the error message, so
//! these checks can only make validation faster, never change its result.

use crate::scan::{self, GENVALUE, HOST, PARAMCHAR, QDTEXT, TOKEN, USER};

/// A read position in a value's bytes; never indexes.
struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips bytes of `class`; returns how many.
    #[inline]
    fn run(&mut self, class: u16) -> usize {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&c| !scan::is(c, class))
            .unwrap_or(rest.len());
        self.pos += n;
        n
    }

    /// Skips SP / HTAB.
    #[inline]
    fn lws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    #[inline]
    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// 1 to 5 digits whose value fits a port (`scan_port` accepts these).
    #[inline]
    fn port(&mut self) -> bool {
        let start = self.pos;
        let mut v = 0u32;
        while let Some(c) = self.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            v = v * 10 + u32::from(c - b'0');
            self.pos += 1;
            if self.pos - start > 5 {
                return false;
            }
        }
        self.pos > start && v <= 65535
    }

    /// `*( ";" token [ "=" gen-value ] )` with no LWS and no quoted values
    /// (a subset of `scan_header_params`). With `via`, an `rport` value must
    /// be a port (`scan_via`'s extra check).
    #[inline(always)]
    fn header_params(&mut self, via: bool) -> bool {
        while self.eat(b';') {
            let name_at = self.pos;
            if self.run(TOKEN) == 0 {
                return false;
            }
            let name = self.b.get(name_at..self.pos).unwrap_or_default();
            if self.eat(b'=') {
                if via && name.eq_ignore_ascii_case(b"rport") {
                    if !self.port() {
                        return false;
                    }
                    // The value must be exactly the digits.
                    if self.peek().is_some_and(|c| scan::is(c, GENVALUE)) {
                        return false;
                    }
                } else if self.run(GENVALUE) == 0 {
                    return false;
                }
            }
        }
        true
    }

    /// `sip:` / `sips:` user `@` host [`:` port] *( `;` pchars [`=` pchars] )`
    /// with no escapes, ended by `>` (consumed): a subset of what
    /// `angle_uri` accepts.
    fn angle_sip_uri(&mut self) -> bool {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        if rest.starts_with(b"sip:") {
            self.pos += 4;
        } else if rest.starts_with(b"sips:") {
            self.pos += 5;
        } else {
            return false;
        }
        // The user part ends at the first '@' (no USER byte is '@' or '>').
        if self.run(USER) == 0 || !self.eat(b'@') {
            return false;
        }
        // Every non-empty run of host characters is a host to `scan_host`.
        if self.run(HOST) == 0 {
            return false;
        }
        if self.eat(b':') && !self.port() {
            return false;
        }
        while self.eat(b';') {
            if self.run(PARAMCHAR) == 0 {
                return false;
            }
            if self.eat(b'=') && self.run(PARAMCHAR) == 0 {
                return false;
            }
        }
        self.eat(b'>')
    }
}

/// Whether `v` (trimmed) is certainly a valid single From / To / Contact
/// value: `["display"] LWS <sip-uri> *(;param)`.
#[inline(always)]
pub(crate) fn name_addr(v: &str) -> bool {
    let mut c = Bytes {
        b: v.as_bytes(),
        pos: 0,
    };
    if c.eat(b'"') {
        // Plain qdtext only; a backslash sends it to the full scanner.
        c.run(QDTEXT);
        if !c.eat(b'"') {
            return false;
        }
        c.lws();
    }
    c.eat(b'<') && c.angle_sip_uri() && c.header_params(false) && c.at_end()
}

/// Whether `v` (trimmed) is certainly a valid single Via value:
/// `SIP/2.0/transport SP host [:port] *(;param)`.
pub(crate) fn via(v: &str) -> bool {
    let Some(rest) = v.as_bytes().strip_prefix(b"SIP/2.0/") else {
        return false;
    };
    let mut c = Bytes { b: rest, pos: 0 };
    if c.run(TOKEN) == 0 || !c.eat(b' ') || c.run(HOST) == 0 {
        return false;
    }
    if c.eat(b':') && !c.port() {
        return false;
    }
    c.header_params(true) && c.at_end()
}

/// Whether `v` (trimmed) is certainly a valid token list (Allow,
/// Supported, ...): `token *( "," *SP token )`.
pub(crate) fn token_list(v: &str) -> bool {
    let mut c = Bytes {
        b: v.as_bytes(),
        pos: 0,
    };
    loop {
        if c.run(TOKEN) == 0 {
            return false;
        }
        if c.at_end() {
            return true;
        }
        if !c.eat(b',') {
            return false;
        }
        c.lws();
    }
}

/// Whether `v` (trimmed) is certainly a valid CSeq: 1 to 9 digits (so it
/// fits a `u32`), one SP, a method token.
pub(crate) fn cseq(v: &str) -> bool {
    let mut c = Bytes {
        b: v.as_bytes(),
        pos: 0,
    };
    let digits = c.b.iter().take_while(|d| d.is_ascii_digit()).count();
    c.pos = digits;
    (1..=9).contains(&digits) && c.eat(b' ') && c.run(TOKEN) > 0 && c.at_end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed;

    /// Every value the fast checks accept, the full scanners accept too.
    #[test]
    fn subset_of_the_full_scanners() {
        let addrs = [
            "\"Alice\" <sip:1001@pbx.example.com>;tag=9fxced76sl",
            "<sip:1002@192.0.2.20:5060>",
            "<sip:1001@192.0.2.10:5060;transport=udp>;expires=3600",
            "\"\" <sips:a@b;lr>",
            "\"A\"<sip:a@b:65535>",
            "<sip:a@b:65536>",
            "<sip:a@b:0000001>",
            "<sip:a@b;x=>",
            "<sip:a@b;>",
            "<sip:@b>",
            "<sip:a@>",
            "<sip:a@b>;",
            "<sip:a@b>;tag",
            "<sip:a@b>;tag=",
            "<sip:a@b> ;tag=1",
            "<sip:a@b>, <sip:c@d>",
            "<sip:a@b?x=y>",
            "<SIP:a@b>",
            "\"a\\\"b\" <sip:a@b>",
            "\"\u{e9}\" <sip:a;b@c>",
            "<sip:a%41@b>",
            "*",
        ];
        for v in addrs {
            if name_addr(v) {
                assert!(typed::validate(&crate::HeaderName::From, v).is_ok(), "{v}");
                assert!(
                    typed::validate(&crate::HeaderName::Contact, v).is_ok(),
                    "{v}"
                );
            }
        }
        assert!(name_addr(addrs[0]) && name_addr(addrs[2]));
        assert!(!name_addr("<sip:a@b:65536>") && !name_addr("*"));
        let vias = [
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport",
            "SIP/2.0/UDP h;rport=5060;received=192.0.2.10",
            "SIP/2.0/UDP h;rport=+5060",
            "SIP/2.0/UDP h;rport=70000",
            "SIP/2.0/UDP h;rport=5060x",
            "SIP/2.0/UDP h;rport=",
            "SIP/2.0/UDP h:",
            "SIP/2.0/UDP h;",
            "SIP/2.0/UDP  h",
            "SIP/2.0/ h",
            "SIP/2.0/TCP [::1]:5060",
            "SIP/2.0/UDP h, SIP/2.0/UDP i",
        ];
        for v in vias {
            if via(v) {
                assert!(typed::validate(&crate::HeaderName::Via, v).is_ok(), "{v}");
            }
        }
        assert!(via(vias[0]) && via(vias[1]) && !via("SIP/2.0/UDP h;rport=70000"));
        // Single-byte substitutions and deletions of accepted values.
        let swaps = b" \t\"\\<>@:;=,?%[]/.+0a9Z\x01\x7f";
        let check = |v: &[u8]| {
            let Ok(v) = std::str::from_utf8(v) else {
                return;
            };
            if name_addr(v) {
                assert!(typed::validate(&crate::HeaderName::To, v).is_ok(), "{v}");
                assert!(
                    typed::validate(&crate::HeaderName::Contact, v).is_ok(),
                    "{v}"
                );
            }
            if via(v) {
                assert!(typed::validate(&crate::HeaderName::Via, v).is_ok(), "{v}");
            }
            if token_list(v) {
                assert!(
                    typed::validate(&crate::HeaderName::Supported, v).is_ok(),
                    "{v}"
                );
            }
            if cseq(v) {
                assert!(typed::validate(&crate::HeaderName::CSeq, v).is_ok(), "{v}");
            }
        };
        let lists = ["INVITE, ACK,BYE", "a", "a,", ",a", "a,,b", "a ,b", "a, \tb"];
        for v in lists {
            if token_list(v) {
                assert!(typed::validate(&crate::HeaderName::Allow, v).is_ok(), "{v}");
            }
        }
        assert!(token_list(lists[0]) && !token_list("a,") && !token_list(""));
        let cseqs = [
            "1 INVITE",
            "4294967295 ACK",
            "999999999 BYE",
            "1  X",
            "1",
            " 1 A",
            "1 A B",
        ];
        for v in cseqs {
            if cseq(v) {
                assert!(typed::validate(&crate::HeaderName::CSeq, v).is_ok(), "{v}");
            }
        }
        assert!(cseq(cseqs[0]) && cseq(cseqs[2]) && !cseq(cseqs[1]) && !cseq("1 A B"));
        for v in addrs
            .iter()
            .chain(&vias)
            .chain(&lists)
            .chain(&cseqs)
            .filter(|v| name_addr(v) || via(v) || token_list(v) || cseq(v))
        {
            let v = v.as_bytes();
            for i in 0..v.len() {
                let mut del = v.to_vec();
                del.remove(i);
                check(&del);
                for &b in swaps {
                    let mut m = v.to_vec();
                    m[i] = b;
                    check(&m);
                    m.insert(i, b);
                    check(&m);
                }
            }
        }
    }
}
