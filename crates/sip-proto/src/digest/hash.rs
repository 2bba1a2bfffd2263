//! Digest hash math (RFC 7616 §3.2, §3.4.1–§3.4.4; RFC 8760 for SIP; RFC 3261
//! §22.4): the algorithms, H(A1), H(A2), the request-digest, the userhash and
//! the stored secret an account authenticates with.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use super::Error;

/// A digest hash algorithm (RFC 7616 §3.2; RFC 8760 brings SHA-256 and
/// SHA-512-256 to SIP).
///
/// Parsed case-insensitively from `MD5`, `SHA-256`, `SHA-512-256`; the
/// `-sess` variants are [`DigestAlgorithm`]s, which [`Algorithm::from_str`]
/// rejects with [`Error::SessionVariant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 1321), the default when a challenge or response names none.
    Md5,
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// SHA-512/256 (FIPS 180-4: its own initial values, not SHA-512 cut
    /// to 256 bits).
    Sha512_256,
}

impl Algorithm {
    /// Every algorithm, weakest first.
    pub const ALL: [Algorithm; 3] = [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256];

    /// The name as written in `algorithm=` (`MD5`, `SHA-256`, `SHA-512-256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// How many lowercase hex digits a hash of this algorithm has
    /// (32 for MD5, 64 for the others).
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 | Algorithm::Sha512_256 => 64,
        }
    }

    /// `H(part0 ":" part1 ":" ...)` as lowercase hex.
    pub fn hash_joined(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Md5 => hex_digest::<Md5>(parts),
            Algorithm::Sha256 => hex_digest::<Sha256>(parts),
            Algorithm::Sha512_256 => hex_digest::<Sha512_256>(parts),
        }
    }

    fn index(self) -> usize {
        match self {
            Algorithm::Md5 => 0,
            Algorithm::Sha256 => 1,
            Algorithm::Sha512_256 => 2,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Algorithm, Error> {
        let d: DigestAlgorithm = s.parse()?;
        if d.session {
            return Err(Error::SessionVariant(d.hash));
        }
        Ok(d.hash)
    }
}

/// The value of an `algorithm=` parameter: a hash, and whether it is the
/// `-sess` variant (RFC 7616 §3.4.2: H(A1) is then
/// `H(H(username:realm:password) ":" nonce ":" cnonce)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigestAlgorithm {
    /// The hash function.
    pub hash: Algorithm,
    /// Whether it is `<hash>-sess`.
    pub session: bool,
}

impl DigestAlgorithm {
    /// The plain (non-`-sess`) form of `hash`.
    pub fn plain(hash: Algorithm) -> DigestAlgorithm {
        DigestAlgorithm {
            hash,
            session: false,
        }
    }
}

impl From<Algorithm> for DigestAlgorithm {
    fn from(hash: Algorithm) -> DigestAlgorithm {
        DigestAlgorithm::plain(hash)
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        if self.session {
            f.write_str("-sess")?;
        }
        Ok(())
    }
}

impl FromStr for DigestAlgorithm {
    type Err = Error;

    /// Parses `MD5`, `SHA-256`, `SHA-512-256`, each optionally with
    /// `-sess`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<DigestAlgorithm, Error> {
        let (base, session) = match s.len().checked_sub(5) {
            Some(i) if s.is_char_boundary(i) && s[i..].eq_ignore_ascii_case("-sess") => {
                (&s[..i], true)
            }
            _ => (s, false),
        };
        let hash = Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(base))
            .ok_or_else(|| Error::UnknownAlgorithm(clip(s)))?;
        Ok(DigestAlgorithm { hash, session })
    }
}

/// At most 64 characters of untrusted text, for an error message.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn hex_digest<D: Digest>(parts: &[&str]) -> String {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    hex(&d.finalize())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// `H(A1)` for the plain algorithms: `H(username ":" realm ":" password)`
/// (RFC 7616 §3.4.2).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_joined(&[username, realm, password])
}

/// `H(A1)` for a `-sess` algorithm, from the plain `H(A1)`:
/// `H(ha1 ":" nonce ":" cnonce)` (RFC 7616 §3.4.2).
pub fn ha1_sess(alg: Algorithm, ha1: &str, nonce: &str, cnonce: &str) -> String {
    alg.hash_joined(&[ha1, nonce, cnonce])
}

/// `H(A2)` for `qop=auth` (and no qop): `H(method ":" digest-uri)`
/// (RFC 7616 §3.4.3). `digest_uri` is the `uri` parameter exactly as the
/// client sent it; for SIP `method` is the request method (RFC 3261 §22.4).
pub fn ha2(alg: Algorithm, method: &str, digest_uri: &str) -> String {
    alg.hash_joined(&[method, digest_uri])
}

/// The request-digest for `qop=auth`:
/// `H(ha1 ":" nonce ":" nc ":" cnonce ":" qop ":" ha2)` (RFC 7616 §3.4.1).
/// `nc` is the 8 hex digits as sent.
pub fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    ha2: &str,
) -> String {
    alg.hash_joined(&[ha1, nonce, nc, cnonce, qop, ha2])
}

/// The request-digest of a client that sends no `qop` (the RFC 2069 form
/// that RFC 2617 and RFC 3261 §22.4 keep for old clients):
/// `H(ha1 ":" nonce ":" ha2)`.
pub fn response_no_qop(alg: Algorithm, ha1: &str, nonce: &str, ha2: &str) -> String {
    alg.hash_joined(&[ha1, nonce, ha2])
}

/// The hashed username of `userhash=true` (RFC 7616 §3.4.4):
/// `H(username ":" realm)`.
pub fn userhash(alg: Algorithm, username: &str, realm: &str) -> String {
    alg.hash_joined(&[username, realm])
}

/// What an account authenticates with: a plain password, and/or an `H(A1)`
/// precomputed per algorithm (the config's `password`, `ha1_md5`,
/// `ha1_sha256`).
///
/// A precomputed `H(A1)` is only right for the username and realm it was
/// computed with; [`Secret::ha1_for`] cannot check that. With only
/// `ha1_md5` stored, SHA-256 is unavailable for the account.
///
/// `Debug` never shows the password or hashes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    password: Option<String>,
    ha1: [Option<String>; 3],
}

impl Secret {
    /// A secret holding the plain password (any algorithm can be served).
    pub fn password(password: impl Into<String>) -> Secret {
        Secret {
            password: Some(password.into()),
            ha1: Default::default(),
        }
    }

    /// A secret holding only a precomputed `H(A1)` for `alg`.
    ///
    /// Fails unless `hex` is [`Algorithm::hex_len`] hex digits (either case).
    pub fn from_ha1(alg: Algorithm, hex: &str) -> Result<Secret, Error> {
        Secret::default().with_ha1(alg, hex)
    }

    /// Adds (or replaces) the plain password.
    pub fn with_password(mut self, password: impl Into<String>) -> Secret {
        self.password = Some(password.into());
        self
    }

    /// Adds (or replaces) the precomputed `H(A1)` for `alg`; see
    /// [`Secret::from_ha1`].
    pub fn with_ha1(mut self, alg: Algorithm, hex: &str) -> Result<Secret, Error> {
        if hex.len() != alg.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidHa1 {
                algorithm: alg,
                expected_len: alg.hex_len(),
            });
        }
        self.ha1[alg.index()] = Some(hex.to_ascii_lowercase());
        Ok(self)
    }

    /// Whether `H(A1)` can be had for `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.password.is_some() || self.ha1[alg.index()].is_some()
    }

    /// The plain `H(A1)` for `alg`, or `None` if this secret cannot give it
    /// (no password and no precomputed `H(A1)` for that algorithm). A
    /// precomputed value wins over the password.
    pub fn ha1_for(&self, alg: Algorithm, username: &str, realm: &str) -> Option<String> {
        if let Some(h) = &self.ha1[alg.index()] {
            return Some(h.clone());
        }
        self.password
            .as_deref()
            .map(|p| ha1(alg, username, realm, p))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has: Vec<&str> = Algorithm::ALL
            .into_iter()
            .filter(|a| self.ha1[a.index()].is_some())
            .map(Algorithm::name)
            .collect();
        f.debug_struct("Secret")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ha1_for", &has)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
            assert_eq!(a.name().to_lowercase().parse::<Algorithm>().unwrap(), a);
            let s: DigestAlgorithm = format!("{}-SESS", a.name().to_lowercase()).parse().unwrap();
            assert_eq!(
                s,
                DigestAlgorithm {
                    hash: a,
                    session: true
                }
            );
            assert_eq!(s.to_string(), format!("{a}-sess"));
            assert!(matches!(
                format!("{a}-sess").parse::<Algorithm>(),
                Err(Error::SessionVariant(x)) if x == a
            ));
        }
        for bad in ["", "SHA-1", "AKAv1-MD5", "-sess", "MD5-", "é-sess", "sess"] {
            assert!(bad.parse::<DigestAlgorithm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hex_and_hashes() {
        assert_eq!(hex(&[0, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // RFC 1321 / FIPS 180-4 test values of the empty string.
        assert_eq!(
            Algorithm::Md5.hash_joined(&[""]),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            Algorithm::Sha512_256.hash_joined(&["abc"]),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
        assert_eq!(
            ha2(Algorithm::Md5, "GET", "/dir/index.html"),
            "39aff3a2bab6126f332b942af96d3366"
        );
    }

    #[test]
    fn secrets() {
        let md5 = ha1(Algorithm::Md5, "1001", "pbx", "pw");
        let s = Secret::from_ha1(Algorithm::Md5, &md5.to_uppercase()).unwrap();
        assert_eq!(s.ha1_for(Algorithm::Md5, "1001", "pbx"), Some(md5.clone()));
        assert!(!s.supports(Algorithm::Sha256));
        assert_eq!(s.ha1_for(Algorithm::Sha256, "1001", "pbx"), None);
        let p = Secret::password("pw");
        assert_eq!(p.ha1_for(Algorithm::Md5, "1001", "pbx"), Some(md5));
        assert!(Algorithm::ALL.into_iter().all(|a| p.supports(a)));
        assert!(Secret::from_ha1(Algorithm::Sha256, "abc").is_err());
        assert!(Secret::from_ha1(Algorithm::Md5, &"g".repeat(32)).is_err());
        let dbg = format!(
            "{:?}",
            p.with_ha1(Algorithm::Sha256, &"a".repeat(64)).unwrap()
        );
        assert!(!dbg.contains("pw") && !dbg.contains("aaaa"), "{dbg}");
    }
}
