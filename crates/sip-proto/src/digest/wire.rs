//! Digest header values (RFC 7616 §3.3 challenges and §3.4 responses; RFC
//! 8760; RFC 3261 §22.4, §20.27, §20.44): what a server writes in
//! WWW-Authenticate / Proxy-Authenticate and what a client writes in
//! Authorization / Proxy-Authorization.

use super::hash::{self, Algorithm};
use crate::scan::quote;

/// A WWW-Authenticate / Proxy-Authenticate value offering `alg` with
/// `qop="auth"`, e.g.
/// `Digest realm="pbx.example.com", nonce="…", algorithm=MD5, qop="auth"`,
/// with `opaque="…"` if given and `stale=true` if `stale`.
///
/// `realm`, `nonce` and `opaque` are written as quoted-strings (`"` and
/// `\` escaped; CR and LF, which no header may carry, become spaces).
/// Offer several algorithms with one header each, preferred first (RFC
/// 8760 §2.4).
pub fn challenge_value(
    realm: &str,
    nonce: &str,
    alg: Algorithm,
    opaque: Option<&str>,
    stale: bool,
) -> String {
    let mut out = String::with_capacity(128 + realm.len() + nonce.len());
    out.push_str("Digest realm=");
    out.push_str(&quote(realm));
    out.push_str(", nonce=");
    out.push_str(&quote(nonce));
    if let Some(o) = opaque {
        out.push_str(", opaque=");
        out.push_str(&quote(o));
    }
    out.push_str(", algorithm=");
    out.push_str(alg.name());
    out.push_str(", qop=\"auth\"");
    if stale {
        out.push_str(", stale=true");
    }
    out
}

/// A client's answer to a challenge, for UAs and tests: everything that
/// goes into an Authorization / Proxy-Authorization value with `qop=auth`.
#[derive(Debug, Clone, Copy)]
pub struct DigestAnswer<'a> {
    /// The algorithm of the challenge answered.
    pub algorithm: Algorithm,
    /// The user name.
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
    /// The challenge's realm.
    pub realm: &'a str,
    /// The challenge's nonce.
    pub nonce: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The digest-uri (the Request-URI).
    pub uri: &'a str,
    /// The nonce-count: 1 for the first request with this nonce, then 2, …
    pub nc: u32,
    /// The client nonce.
    pub cnonce: &'a str,
    /// The challenge's opaque, echoed.
    pub opaque: Option<&'a str>,
}

impl DigestAnswer<'_> {
    /// The response digest.
    pub fn response(&self) -> String {
        let a = self.algorithm;
        let ha1 = hash::ha1(a, self.username, self.realm, self.password);
        let ha2 = hash::ha2(a, self.method, self.uri);
        let nc = format!("{:08x}", self.nc);
        hash::response(a, &ha1, self.nonce, &nc, self.cnonce, "auth", &ha2)
    }

    /// The header value: `Digest username="…", realm="…", nonce="…",
    /// uri="…", response="…", algorithm=…, cnonce="…", qop=auth,
    /// nc=…` (and `opaque="…"`).
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{}\", algorithm={}, cnonce={}, qop=auth, nc={:08x}",
            quote(self.username),
            quote(self.realm),
            quote(self.nonce),
            quote(self.uri),
            self.response(),
            self.algorithm.name(),
            quote(self.cnonce),
            self.nc,
        );
        if let Some(o) = self.opaque {
            out.push_str(", opaque=");
            out.push_str(&quote(o));
        }
        out
    }
}
