//! The verification service (RFC 8224 §6, RFC 8588): checks an `Identity`
//! header against the request's From/To numbers, the signer's certificate
//! chain and the configured trust anchors, and maps failures to the
//! RFC 8224 §6.2.2 response codes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use thiserror::Error;
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use crate::identity::{HeaderError, IdentityHeader};
use crate::passport::{ALG_ES256, Attestation, JwsError, PPT_SHAKEN, Passport, TYP_PASSPORT};
use crate::tn::canonical_tn;

/// How far `iat` may be from now (RFC 8224 §6.2.3 recommends one minute).
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(60);
/// Most certificates a fetched chain may hold.
pub const MAX_CHAIN_CERTS: usize = 8;

/// Why the trust anchors could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The text holds no `BEGIN CERTIFICATE` block.
    #[error("no PEM certificate ('-----BEGIN CERTIFICATE-----') in the STIR trust anchor file")]
    NoCertificate,
    /// A PEM block could not be decoded.
    #[error("STIR trust anchor file is not valid PEM: {0}")]
    Pem(rustls_pki_types::pem::Error),
    /// A certificate that cannot serve as a trust anchor.
    #[error("STIR trust anchor certificate #{index} cannot be used as a CA: {source}")]
    Certificate {
        /// Its position in the file, from 1.
        index: usize,
        /// What webpki found wrong.
        source: webpki::Error,
    },
}

/// The CA certificates verification trusts (the STI-PA's list, or a
/// private one), loaded from PEM.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustAnchors {
    /// No anchors: every chain fails with 437.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every certificate of a PEM file (one CA or a bundle).
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, AnchorError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(AnchorError::Pem)?;
        if certs.is_empty() {
            return Err(AnchorError::NoCertificate);
        }
        for (i, cert) in certs.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(cert).map_err(|source| {
                AnchorError::Certificate {
                    index: i + 1,
                    source,
                }
            })?;
            self.anchors.push(anchor.to_owned());
        }
        Ok(certs.len())
    }

    /// Anchors from one PEM file's text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, AnchorError> {
        let mut anchors = Self::new();
        anchors.add_pem(pem)?;
        Ok(anchors)
    }

    /// How many anchors there are.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// Why the certificate at `x5u` could not be fetched.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Only `https://` URLs are fetched (RFC 8588 §3 / ATIS-1000074).
    #[error("certificate URL '{0}' is not https://")]
    NotHttps(String),
    /// The URL does not parse or names no host.
    #[error("certificate URL '{0}' is not a valid URL")]
    BadUrl(String),
    /// No answer in time.
    #[error("fetching the certificate timed out after {0:?}")]
    Timeout(Duration),
    /// TCP connect or read failed.
    #[error("fetching the certificate: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (untrusted server, wrong name, ...).
    #[error("TLS to the certificate server failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP error fetching the certificate: {0}")]
    Http(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The fetcher's TLS setup failed (unusable CA roots).
    #[error("cannot set up HTTPS for certificate fetching: {0}")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server answered something other than 200.
    #[error("the certificate server answered HTTP {0}")]
    Status(u16),
    /// The body is larger than the fetcher accepts.
    #[error("the certificate body is larger than {0} bytes")]
    TooLarge(usize),
}

/// The future a [`CertFetcher`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<[u8]>, FetchError>> + Send + 'a>>;

/// Fetches the certificate chain at an `x5u` URL: PEM certificates, the
/// signer's first then its intermediates (or one DER certificate). The
/// crate's `HttpsFetcher` (feature `https`) is the real one; tests serve
/// their own.
pub trait CertFetcher: Send + Sync {
    /// The bytes at `url`.
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a>;
}

/// Why a PASSporT did not verify, each with its RFC 8224 §6.2.2 response
/// code ([`Reason::status_code`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Reason {
    /// The request carries no `Identity` header: 428 Use Identity Header.
    #[error("no Identity header")]
    NoIdentity,
    /// The header value is malformed: 438.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The PASSporT is not a decodable JWS: 438.
    #[error("{0}")]
    Jws(#[from] JwsError),
    /// `alg` (header parameter or JOSE header) is not ES256: 438.
    #[error("unsupported alg '{0}'; SHAKEN uses ES256")]
    Alg(String),
    /// `typ` is not `passport`: 438.
    #[error("JOSE typ is '{0}', not 'passport'")]
    Typ(String),
    /// `ppt` is not `shaken`, or the header parameter and the JOSE header
    /// disagree: 438.
    #[error("PASSporT type (ppt) is '{0}'; only 'shaken' is verified")]
    Ppt(String),
    /// A claim SHAKEN requires is missing or invalid: 438.
    #[error("PASSporT claim {0}")]
    Claim(String),
    /// The `info` parameter and the JOSE `x5u` differ: 438.
    #[error("Identity info <{info}> differs from the PASSporT's x5u <{x5u}>")]
    InfoMismatch {
        /// The header's `info`.
        info: String,
        /// The PASSporT's `x5u`.
        x5u: String,
    },
    /// `iat` is further from now than the freshness allows: 438 (RFC 8224
    /// §6.2.2 also allows 403 "Stale Date").
    #[error("iat {iat} is {age_secs} s from now, more than the {limit_secs} s allowed")]
    StaleIat {
        /// The claim.
        iat: u64,
        /// |now − iat| in seconds.
        age_secs: u64,
        /// The freshness limit.
        limit_secs: u64,
    },
    /// `orig` is not the From number: 438.
    #[error("orig {passport} does not match the From number '{from}'")]
    OrigMismatch {
        /// The PASSporT's `orig.tn`.
        passport: String,
        /// The From number as given.
        from: String,
    },
    /// The To number is not among `dest`: 438.
    #[error("dest {passport:?} does not include the To number '{to}'")]
    DestMismatch {
        /// The PASSporT's `dest.tn`.
        passport: Vec<String>,
        /// The To number as given.
        to: String,
    },
    /// The certificate could not be fetched: 436 Bad Identity Info.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The fetched chain is not a usable certificate chain: 437.
    #[error("certificate at x5u is unusable: {0}")]
    BadCertificate(String),
    /// The chain does not lead to a trust anchor, or is expired: 437
    /// Unsupported Credential.
    #[error("certificate chain is not trusted: {0}")]
    Untrusted(webpki::Error),
    /// The ES256 signature does not verify with the certificate's key: 438.
    #[error("signature does not verify with the certificate's key")]
    BadSignature,
}

impl Reason {
    /// The RFC 8224 §6.2.2 response code a verifier that rejects the call
    /// sends: 428, 436, 437 or 438.
    pub fn status_code(&self) -> u16 {
        match self {
            Reason::NoIdentity => 428,
            Reason::Fetch(_) => 436,
            Reason::BadCertificate(_) | Reason::Untrusted(_) => 437,
            _ => 438,
        }
    }

    /// The response's reason phrase (RFC 8224 §13.2).
    pub fn reason_phrase(&self) -> &'static str {
        match self.status_code() {
            428 => "Use Identity Header",
            436 => "Bad Identity Info",
            437 => "Unsupported Credential",
            _ => "Invalid Identity Header",
        }
    }
}

/// The outcome of verifying one request.
#[derive(Debug)]
pub struct Verification {
    /// Whether everything checked out.
    pub verified: bool,
    /// The PASSporT's attestation when it could be read; also on failure,
    /// where it is only what the token claims.
    pub attest: Option<Attestation>,
    /// The PASSporT's `origid`, when it could be read.
    pub origid: Option<String>,
    /// Why it failed; `None` when verified.
    pub reason: Option<Reason>,
}

impl Verification {
    /// The result for a request without `Identity` (428).
    pub fn missing() -> Self {
        Self::failed(Reason::NoIdentity, None, None)
    }

    fn failed(reason: Reason, attest: Option<Attestation>, origid: Option<String>) -> Self {
        Verification {
            verified: false,
            attest,
            origid,
            reason: Some(reason),
        }
    }

    /// The response code for a rejection, `None` when verified.
    pub fn status_code(&self) -> Option<u16> {
        self.reason.as_ref().map(Reason::status_code)
    }

    /// The `verstat` value to put on the From/P-Asserted-Identity towards
    /// the phone: `tn-validation-passed`, `tn-validation-failed`, or
    /// `no-tn-validation` when the request carried no Identity.
    pub fn verstat(&self) -> &'static str {
        match (&self.reason, self.verified) {
            (_, true) => "tn-validation-passed",
            (Some(Reason::NoIdentity), _) => "no-tn-validation",
            _ => "tn-validation-failed",
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            None => write!(
                f,
                "verified (attestation {})",
                self.attest.map_or("?", Attestation::as_str)
            ),
            Some(r) => write!(f, "{} {}: {r}", r.status_code(), r.reason_phrase()),
        }
    }
}

/// A PASSporT whose claims passed the checks that need no certificate;
/// [`Verifier::finish`] completes it with the chain from [`x5u`](Self::x5u).
#[derive(Debug)]
pub struct Pending {
    passport: Passport,
    attest: Attestation,
    origid: String,
}

impl Pending {
    /// The certificate URL to fetch.
    pub fn x5u(&self) -> &str {
        &self.passport.header.x5u
    }

    /// The attestation claimed (not yet verified).
    pub fn attest(&self) -> Attestation {
        self.attest
    }
}

/// Verifies SHAKEN PASSporTs against a set of trust anchors.
///
/// Sans-IO in two steps, [`prepare`](Self::prepare) then
/// [`finish`](Self::finish) with the bytes fetched from `x5u`, or both at
/// once with a [`CertFetcher`] through [`verify`](Self::verify). The clock
/// is the caller's: every step takes `now`.
#[derive(Debug, Clone)]
pub struct Verifier {
    anchors: TrustAnchors,
    freshness: Duration,
}

impl Verifier {
    /// A verifier trusting `anchors`, with the default 60 s `iat` freshness.
    pub fn new(anchors: TrustAnchors) -> Self {
        Verifier {
            anchors,
            freshness: DEFAULT_FRESHNESS,
        }
    }

    /// Sets how far `iat` may be from now, either way.
    pub fn with_freshness(mut self, freshness: Duration) -> Self {
        self.freshness = freshness;
        self
    }

    /// Parses `identity` (the header value) and checks everything that
    /// needs no certificate: `alg`, `typ`, `ppt`, `info` against `x5u`,
    /// the SHAKEN claims, `iat` against `now`, `orig` against the `from`
    /// number and `dest` against the `to` number (both canonicalized per
    /// RFC 8224 §8.3). `from` and `to` are the numbers only: the user part
    /// of the From and To URIs (or a `tel:` number), not the whole URI.
    /// On failure, the finished [`Verification`].
    pub fn prepare(
        &self,
        identity: &str,
        from: &str,
        to: &str,
        now: SystemTime,
    ) -> Result<Pending, Verification> {
        let fail = |r: Reason| Verification::failed(r, None, None);
        let header = IdentityHeader::parse(identity).map_err(|e| fail(e.into()))?;
        if let Some(alg) = header.alg.as_deref().filter(|a| *a != ALG_ES256) {
            return Err(fail(Reason::Alg(alg.to_owned())));
        }
        let passport = Passport::decode(&header.passport).map_err(|e| fail(e.into()))?;
        let claims = &passport.claims;
        let attest = claims
            .attest
            .as_deref()
            .map(str::parse::<Attestation>)
            .transpose()
            .ok()
            .flatten();
        let origid = claims.origid.clone();
        let fail = |r: Reason| Verification::failed(r, attest, origid.clone());
        let jose = &passport.header;
        if jose.alg != ALG_ES256 {
            return Err(fail(Reason::Alg(jose.alg.clone())));
        }
        if let Some(typ) = jose.typ.as_deref().filter(|t| *t != TYP_PASSPORT) {
            return Err(fail(Reason::Typ(typ.to_owned())));
        }
        let ppt = jose.ppt.as_deref().unwrap_or("(none)");
        if ppt != PPT_SHAKEN {
            return Err(fail(Reason::Ppt(ppt.to_owned())));
        }
        if let Some(p) = header.ppt.as_deref().filter(|p| *p != PPT_SHAKEN) {
            return Err(fail(Reason::Ppt(p.to_owned())));
        }
        if header.info != jose.x5u {
            return Err(fail(Reason::InfoMismatch {
                info: header.info.clone(),
                x5u: jose.x5u.clone(),
            }));
        }
        let Some(attest) = attest else {
            let what = match &claims.attest {
                None => "attest is missing".to_owned(),
                Some(a) => format!("attest '{a}' is not A, B or C"),
            };
            return Err(fail(Reason::Claim(what)));
        };
        let Some(origid) = origid.clone().filter(|o| !o.is_empty()) else {
            return Err(fail(Reason::Claim("origid is missing".into())));
        };
        let now_secs = unix_secs(now);
        let age_secs = now_secs.abs_diff(claims.iat);
        if age_secs > self.freshness.as_secs() {
            return Err(fail(Reason::StaleIat {
                iat: claims.iat,
                age_secs,
                limit_secs: self.freshness.as_secs(),
            }));
        }
        let orig = claims.orig.tn.clone().unwrap_or_default();
        let orig_ok = matches!(
            (canonical_tn(&orig), canonical_tn(from)),
            (Ok(a), Ok(b)) if a == b
        );
        if !orig_ok {
            return Err(fail(Reason::OrigMismatch {
                passport: orig,
                from: from.to_owned(),
            }));
        }
        let dest_ok = canonical_tn(to).is_ok_and(|to| {
            claims
                .dest
                .tn
                .iter()
                .any(|d| canonical_tn(d).is_ok_and(|d| d == to))
        });
        if !dest_ok {
            return Err(fail(Reason::DestMismatch {
                passport: claims.dest.tn.clone(),
                to: to.to_owned(),
            }));
        }
        Ok(Pending {
            passport,
            attest,
            origid,
        })
    }

    /// Completes `pending` with the bytes fetched from its `x5u`: the chain
    /// must lead to a trust anchor and be valid at `now`, and the
    /// signature must verify with the first certificate's key.
    pub fn finish(&self, pending: Pending, chain: &[u8], now: SystemTime) -> Verification {
        let Pending {
            passport,
            attest,
            origid,
        } = pending;
        let fail = |r: Reason| Verification::failed(r, Some(attest), Some(origid.clone()));
        let certs = match parse_chain(chain) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let Some((leaf_der, intermediates)) = certs.split_first() else {
            return fail(Reason::BadCertificate("no certificate".into()));
        };
        let leaf = match EndEntityCert::try_from(leaf_der) {
            Ok(l) => l,
            Err(e) => return fail(Reason::BadCertificate(format!("first certificate: {e}"))),
        };
        let time = UnixTime::since_unix_epoch(Duration::from_secs(unix_secs(now)));
        if let Err(e) = leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors.anchors,
            intermediates,
            time,
            AnyUsage,
            None,
            None,
        ) {
            return fail(Reason::Untrusted(e));
        }
        let Ok(signature) = p256::ecdsa::Signature::from_slice(&passport.signature) else {
            return fail(Reason::BadSignature);
        };
        match leaf.verify_signature(
            webpki::ring::ECDSA_P256_SHA256,
            passport.signing_input.as_bytes(),
            signature.to_der().as_bytes(),
        ) {
            Ok(()) => Verification {
                verified: true,
                attest: Some(attest),
                origid: Some(origid),
                reason: None,
            },
            Err(webpki::Error::InvalidSignatureForPublicKey) => fail(Reason::BadSignature),
            Err(e) => fail(Reason::BadCertificate(format!(
                "its key cannot check an ES256 signature: {e}"
            ))),
        }
    }

    /// [`prepare`](Self::prepare), fetch `x5u` with `fetcher`, then
    /// [`finish`](Self::finish). A request without `Identity` gets
    /// [`Verification::missing`].
    pub async fn verify(
        &self,
        identity: Option<&str>,
        from: &str,
        to: &str,
        now: SystemTime,
        fetcher: &dyn CertFetcher,
    ) -> Verification {
        let Some(identity) = identity else {
            return Verification::missing();
        };
        let pending = match self.prepare(identity, from, to, now) {
            Ok(p) => p,
            Err(v) => return v,
        };
        if !pending.x5u().starts_with("https://") {
            let url = pending.x5u().to_owned();
            return Verification::failed(
                Reason::Fetch(FetchError::NotHttps(url)),
                Some(pending.attest),
                Some(pending.origid),
            );
        }
        match fetcher.fetch(pending.x5u()).await {
            Ok(chain) => self.finish(pending, &chain, now),
            Err(e) => {
                Verification::failed(Reason::Fetch(e), Some(pending.attest), Some(pending.origid))
            }
        }
    }
}

/// Seconds since the Unix epoch (0 for times before it).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The certificates at `x5u`: PEM (leaf first), or a single DER certificate.
fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, Reason> {
    let looks_pem = bytes
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    let certs = if looks_pem {
        CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Reason::BadCertificate(format!("not valid PEM: {e}")))?
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    if certs.is_empty() {
        return Err(Reason::BadCertificate(
            "no '-----BEGIN CERTIFICATE-----' block".into(),
        ));
    }
    if certs.len() > MAX_CHAIN_CERTS {
        return Err(Reason::BadCertificate(format!(
            "{} certificates, more than {MAX_CHAIN_CERTS}",
            certs.len()
        )));
    }
    Ok(certs)
}

/// STI certificates carry no extended key usage that matters here (ATIS-
/// 1000080 defines none), so any (or none) is accepted; a malformed
/// extension is still an error.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}
