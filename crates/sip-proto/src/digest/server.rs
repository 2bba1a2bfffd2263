//! Verifying digest credentials (RFC 7616 §3.4–§3.5, §5; RFC 8760; RFC 3261
//! §22.4 and §22.3 for Proxy-Authorization): parameter parsing, the secret
//! lookup and the [`Verdict`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use subtle::{Choice, ConstantTimeEq};

use super::hash::{self, Algorithm, DigestAlgorithm, Secret, clip};
use super::nonce::{NcCheck, NonceCheck, NonceCounts, NonceKey};
use crate::header::Credentials;
use crate::scan::unquote;
use crate::uri::{Host, Uri};

/// The longest value accepted for any digest parameter, in bytes.
pub const MAX_PARAM_LEN: usize = 1024;

/// The password of the dummy account an unknown user is checked against,
/// so that an unknown user costs the same work as a wrong password.
const DUMMY_PASSWORD: &str = "\u{0}switchboard-unknown-user\u{0}";

/// The digest parameters of one Authorization / Proxy-Authorization value,
/// unquoted and checked (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    /// `username` as sent: the name, or with `userhash=true` its hash.
    pub username: String,
    /// Whether `username` is `H(username ":" realm)` (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`, the digest-uri that goes into H(A2) exactly as sent.
    pub uri: String,
    /// `response`, lowercased (hex digits only).
    pub response: String,
    /// `algorithm`, MD5 when absent.
    pub algorithm: DigestAlgorithm,
    /// `qop=auth` with its `nc` and `cnonce`; `None` for an RFC 2069 client
    /// that sent no qop.
    pub qop: Option<QopAuth>,
    /// `opaque`, echoed from the challenge (not part of the hash).
    pub opaque: Option<String>,
}

/// The `qop=auth` part of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QopAuth {
    /// The qop value as sent (`auth`, any case), as it enters the hash.
    pub qop: String,
    /// `nc`, the nonce-count.
    pub nc: u32,
    /// `nc` as sent (8 hex digits), as it enters the hash.
    pub nc_hex: String,
    /// `cnonce`.
    pub cnonce: String,
}

/// Why credentials were refused. For logs and metrics only: the answer on
/// the wire must be the same for all of them (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The scheme is not `Digest`.
    #[error("authorization scheme is not Digest")]
    NotDigest,
    /// A required parameter is absent.
    #[error("digest credentials lack the '{0}' parameter")]
    Missing(&'static str),
    /// A parameter is present but unusable.
    #[error("malformed digest credentials: {0}")]
    Malformed(Malformed),
    /// `realm` is not this server's realm.
    #[error("digest realm '{0}' is not this server's realm")]
    RealmMismatch(String),
    /// `algorithm` names no supported algorithm.
    #[error("unsupported digest algorithm '{0}'")]
    UnsupportedAlgorithm(String),
    /// `qop` is not `auth` (e.g. `auth-int`). (An absent `qop` while RFC
    /// 2069 answers are not allowed is [`Failure::Missing`]`("qop")`.)
    #[error("unsupported digest qop '{0}' (only qop=auth is accepted)")]
    UnsupportedQop(String),
    /// The nonce is not one this server issued (forged, corrupted or from
    /// the future).
    #[error("nonce was not issued by this server")]
    InvalidNonce,
    /// No such user. Never reveal this on the wire.
    #[error("unknown user '{0}'")]
    UnknownUser(String),
    /// The user exists but has no H(A1) for the algorithm the client used
    /// (e.g. only `ha1_md5` is stored and it answered with SHA-256).
    #[error("user '{username}' has no password or H(A1) for {algorithm}")]
    AlgorithmUnavailable {
        /// The user.
        username: String,
        /// The algorithm the client used.
        algorithm: Algorithm,
    },
    /// The response does not match: a wrong password (or a wrong method or
    /// uri on the client's side). Never reveal it apart from
    /// [`Failure::UnknownUser`] on the wire.
    #[error("wrong password for '{0}' (response does not match)")]
    WrongResponse(String),
    /// The nonce-count was not higher than one already seen for this
    /// nonce: a replayed request.
    #[error("replayed nonce-count {nc:08x} for user '{username}'")]
    Replayed {
        /// The user.
        username: String,
        /// The nonce-count sent.
        nc: u32,
    },
}

impl Failure {
    /// Whether this is a wrong answer to a nonce this server issued to this
    /// client (the nonce's MAC checked out, fresh or stale): a password
    /// guess, or a phone with a wrong password. Only these should count
    /// towards bans. Everything else failed before any password was tried
    /// (malformed, foreign realm, a nonce that is forged, corrupted or was
    /// issued to another address — so possibly a spoofed source) or is a
    /// replay of a correct answer, which guesses nothing.
    pub fn is_guess(&self) -> bool {
        matches!(
            self,
            Failure::UnknownUser(_)
                | Failure::AlgorithmUnavailable { .. }
                | Failure::WrongResponse(_)
        )
    }
}

/// How a parameter was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The parameter appears more than once.
    #[error("parameter '{0}' appears more than once")]
    Duplicate(&'static str),
    /// The value is longer than [`MAX_PARAM_LEN`].
    #[error("parameter '{0}' is longer than {MAX_PARAM_LEN} bytes")]
    TooLong(&'static str),
    /// `nc` is not 8 hex digits, or is zero.
    #[error("nc must be 8 hex digits and not 00000000")]
    NonceCount,
    /// `response` is not 1–128 hex digits.
    #[error("response must be hex digits")]
    Response,
    /// `userhash` is neither `true` nor `false`.
    #[error("userhash must be true or false")]
    Userhash,
}

/// What [`verify`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated.
    Ok {
        /// The user (the real name, also when the client sent a userhash).
        username: String,
        /// The algorithm the client used (check it is one you offer).
        algorithm: DigestAlgorithm,
        /// The digest `uri` the response covers; the caller may insist that
        /// it equal the Request-URI (RFC 7616 §3.4.6).
        uri: String,
    },
    /// The response is correct but for a nonce that is too old (or that
    /// the replay tracker has forgotten): challenge again with
    /// `stale=true` so the client retries without asking its user.
    Stale {
        /// The user.
        username: String,
        /// The algorithm the client used.
        algorithm: DigestAlgorithm,
    },
    /// Refused: challenge again without `stale`. The reason is for logs.
    Failed(Failure),
}

impl Verdict {
    /// `None` if authenticated, else `Some(stale)`: the new challenge
    /// carries `stale=true` exactly when this is `Some(true)`. This is the
    /// one place that decides what a verdict looks like on the wire.
    pub fn challenge_stale(&self) -> Option<bool> {
        match self {
            Verdict::Ok { .. } => None,
            Verdict::Stale { .. } => Some(true),
            Verdict::Failed(_) => Some(false),
        }
    }
}

/// A user found by its `userhash` (RFC 7616 §3.4.4).
#[derive(Debug, Clone)]
pub struct HashedUser<'a> {
    /// The real username.
    pub username: Cow<'a, str>,
    /// Its secret.
    pub secret: Cow<'a, Secret>,
}

/// Where [`verify`] looks up a user's [`Secret`].
///
/// Implemented for `HashMap<String, Secret>` and `BTreeMap<String, Secret>`
/// (no userhash support) and for closures through [`SecretFn`].
pub trait SecretStore {
    /// The secret of `username`, or `None` if there is no such user.
    fn secret(&self, username: &str) -> Option<Cow<'_, Secret>>;

    /// The user whose `H(username ":" realm)` under `alg` is `hash`, for
    /// clients that send `userhash=true`. Keep an index: a linear search
    /// per request would let anyone make the server hash every account.
    /// The default finds no one.
    fn user_by_hash(&self, hash: &str, alg: Algorithm, realm: &str) -> Option<HashedUser<'_>> {
        let _ = (hash, alg, realm);
        None
    }
}

impl<S: BuildHasher> SecretStore for HashMap<String, Secret, S> {
    fn secret(&self, username: &str) -> Option<Cow<'_, Secret>> {
        self.get(username).map(Cow::Borrowed)
    }
}

impl SecretStore for BTreeMap<String, Secret> {
    fn secret(&self, username: &str) -> Option<Cow<'_, Secret>> {
        self.get(username).map(Cow::Borrowed)
    }
}

/// A [`SecretStore`] from a closure `Fn(&str) -> Option<Secret>`.
#[derive(Debug, Clone, Copy)]
pub struct SecretFn<F>(pub F);

impl<F: Fn(&str) -> Option<Secret>> SecretStore for SecretFn<F> {
    fn secret(&self, username: &str) -> Option<Cow<'_, Secret>> {
        (self.0)(username).map(Cow::Owned)
    }
}

/// The server side settings [`verify`] checks against.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// This server's realm (`sip.domain`); compared exactly.
    pub realm: &'a str,
    /// The key nonces were issued with.
    pub key: &'a NonceKey,
    /// How long a nonce stays fresh, in seconds.
    pub max_age_secs: u64,
    /// Whether to accept RFC 2069 answers without `qop` (no cnonce, no nc).
    /// Each such nonce is then good for one request only, as replays
    /// cannot be told apart otherwise. Default `false`: RFC 7616 requires
    /// qop, and the challenges here always offer `qop="auth"`.
    pub allow_no_qop: bool,
    /// Who is answering: the `client` the nonce must have been issued to
    /// ([`NonceKey::issue_for`]); empty for nonces bound to no one.
    pub client: &'a [u8],
}

impl<'a> VerifyContext<'a> {
    /// Settings for `realm` and `key` with nonces fresh for `max_age_secs`,
    /// qop required.
    pub fn new(realm: &'a str, key: &'a NonceKey, max_age_secs: u64) -> VerifyContext<'a> {
        VerifyContext {
            realm,
            key,
            max_age_secs,
            allow_no_qop: false,
            client: &[],
        }
    }

    /// The same settings for nonces issued to `client`
    /// ([`NonceKey::issue_for`]).
    pub fn for_client(self, client: &'a [u8]) -> VerifyContext<'a> {
        VerifyContext { client, ..self }
    }
}

const NAMES: [&str; 11] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "nc",
    "qop",
    "opaque",
    "userhash",
];

impl DigestResponse {
    /// Reads the digest parameters of `credentials`: quoted values are
    /// unquoted (backslash escapes removed), a duplicated parameter or one
    /// over [`MAX_PARAM_LEN`] bytes is [`Failure::Malformed`], unknown
    /// parameters are ignored. Never panics.
    pub fn from_credentials(credentials: &Credentials) -> Result<DigestResponse, Failure> {
        if !credentials.scheme.eq_ignore_ascii_case("Digest") {
            return Err(Failure::NotDigest);
        }
        let mut vals: [Option<Cow<'_, str>>; NAMES.len()] = Default::default();
        for (name, value) in credentials.params.iter() {
            let Some(i) = NAMES.iter().position(|k| k.eq_ignore_ascii_case(name)) else {
                continue;
            };
            if vals[i].is_some() {
                return Err(Failure::Malformed(Malformed::Duplicate(NAMES[i])));
            }
            let raw = value.unwrap_or("");
            if raw.len() > MAX_PARAM_LEN + 2 {
                return Err(Failure::Malformed(Malformed::TooLong(NAMES[i])));
            }
            vals[i] = Some(unquote(raw));
        }
        let [
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            nc,
            qop,
            opaque,
            userhash,
        ] = vals;
        let req = |v: Option<Cow<'_, str>>, name: &'static str| -> Result<String, Failure> {
            v.map(Cow::into_owned).ok_or(Failure::Missing(name))
        };
        let username = req(username, "username")?;
        let realm = req(realm, "realm")?;
        let nonce = req(nonce, "nonce")?;
        let uri = req(uri, "uri")?;
        let response = req(response, "response")?;
        if response.is_empty()
            || response.len() > 128
            || !response.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Failure::Malformed(Malformed::Response));
        }
        let response = response.to_ascii_lowercase();
        let algorithm = match algorithm {
            None => DigestAlgorithm::plain(Algorithm::Md5),
            Some(a) => a
                .parse()
                .map_err(|_| Failure::UnsupportedAlgorithm(clip(&a)))?,
        };
        let qop = match qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_hex = req(nc, "nc")?;
                let cnonce = req(cnonce, "cnonce")?;
                let nc = parse_nc(&nc_hex).ok_or(Failure::Malformed(Malformed::NonceCount))?;
                Some(QopAuth {
                    qop: q.into_owned(),
                    nc,
                    nc_hex,
                    cnonce,
                })
            }
            Some(q) => return Err(Failure::UnsupportedQop(clip(&q))),
        };
        if algorithm.session && qop.is_none() {
            // -sess hashes the cnonce, which only comes with qop.
            return Err(Failure::Missing("cnonce"));
        }
        let userhash = match userhash.as_deref() {
            None => false,
            Some(u) if u.eq_ignore_ascii_case("true") => true,
            Some(u) if u.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(Failure::Malformed(Malformed::Userhash)),
        };
        Ok(DigestResponse {
            username,
            userhash,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
            opaque: opaque.map(Cow::into_owned),
        })
    }
}

/// Whether a digest `uri` names the same resource as the Request-URI
/// (RFC 7616 §3.4.6, RFC 2617 §3.2.2.5: otherwise answer 400). Equal text
/// matches; else both must parse as URIs with the same scheme, host (host
/// names compared without case) and port, and the same user when the
/// digest uri names one. URI parameters and headers are not compared:
/// phones differ in whether they copy `;transport=` or `;user=phone`, and
/// what a stolen answer could be re-aimed at (another number, another
/// host) is the user, host and port. A digest uri without a user is
/// accepted for any user at that host and port: SIPp's `[authentication]`
/// writes `sip:HOST:PORT` whatever the Request-URI.
pub fn uri_matches(digest_uri: &str, request_uri: &Uri) -> bool {
    let Ok(digest_uri) = Uri::parse(digest_uri.trim()) else {
        return false;
    };
    match (&digest_uri, request_uri) {
        (Uri::Sip(a), Uri::Sip(b)) => {
            a.secure == b.secure
                && (a.user.is_none() || a.user == b.user)
                && a.port == b.port
                && match (&a.host, &b.host) {
                    (Host::Domain(x), Host::Domain(y)) => x.eq_ignore_ascii_case(y),
                    (x, y) => x == y,
                }
        }
        (a, b) => a == b,
    }
}

/// `nc`: exactly 8 hex digits (either case), not zero.
fn parse_nc(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok().filter(|&n| n != 0)
}

/// Verifies one Authorization / Proxy-Authorization value of a request
/// whose method is `method`, at `now` (unix seconds).
///
/// In order: the parameters are read ([`DigestResponse::from_credentials`]);
/// the realm must be `ctx.realm`; the nonce must be one of ours
/// ([`NonceKey::verify`]); the user's H(A1) is found (or, for an unknown
/// user or an algorithm the user's secret cannot serve, a dummy one is
/// computed with the same work) and the response compared in constant
/// time; a correct response for an expired nonce is [`Verdict::Stale`];
/// otherwise the nonce-count is checked and recorded in `counts`
/// ([`NcCheck::Replayed`] → [`Failure::Replayed`], [`NcCheck::Forgotten`]
/// → [`Verdict::Stale`]).
///
/// Only correct responses reach `counts`, so unauthenticated traffic cannot
/// fill it. The verdict does not check that the algorithm is one you offer
/// or that `uri` is the Request-URI: both are returned for the caller to
/// check.
pub fn verify(
    credentials: &Credentials,
    method: &str,
    ctx: &VerifyContext<'_>,
    store: &(impl SecretStore + ?Sized),
    counts: &mut NonceCounts,
    now: u64,
) -> Verdict {
    match verify_inner(credentials, method, ctx, store, counts, now) {
        Ok(v) => v,
        Err(f) => Verdict::Failed(f),
    }
}

fn verify_inner(
    credentials: &Credentials,
    method: &str,
    ctx: &VerifyContext<'_>,
    store: &(impl SecretStore + ?Sized),
    counts: &mut NonceCounts,
    now: u64,
) -> Result<Verdict, Failure> {
    let r = DigestResponse::from_credentials(credentials)?;
    if r.realm != ctx.realm {
        return Err(Failure::RealmMismatch(clip(&r.realm)));
    }
    if r.qop.is_none() && !ctx.allow_no_qop {
        return Err(Failure::Missing("qop"));
    }
    let nonce_state = ctx
        .key
        .verify_for(&r.nonce, now, ctx.max_age_secs, ctx.client);
    if nonce_state == NonceCheck::Invalid {
        return Err(Failure::InvalidNonce);
    }
    let alg = r.algorithm.hash;

    // Find the user, and its H(A1); an unknown user (or an algorithm its
    // secret cannot serve) is checked against a dummy password instead, so
    // it costs the same hashing as a known user with a wrong password.
    let found = if r.userhash {
        store
            .user_by_hash(&r.username, alg, &r.realm)
            .map(|u| (u.username, u.secret))
    } else {
        store
            .secret(&r.username)
            .map(|s| (Cow::Borrowed(r.username.as_str()), s))
    };
    let (username, real_ha1) = match &found {
        Some((name, secret)) => (name.as_ref(), secret.ha1_for(alg, name, &r.realm)),
        None => (r.username.as_str(), None),
    };
    let fault = match (&found, &real_ha1) {
        (None, _) => Some(Failure::UnknownUser(clip(username))),
        (Some(_), None) => Some(Failure::AlgorithmUnavailable {
            username: clip(username),
            algorithm: alg,
        }),
        (Some(_), Some(_)) => None,
    };
    let ha1 = match real_ha1 {
        Some(h) => h,
        None => hash::ha1(alg, username, &r.realm, DUMMY_PASSWORD),
    };

    let ha1 = match (&r.qop, r.algorithm.session) {
        (Some(q), true) => hash::ha1_sess(alg, &ha1, &r.nonce, &q.cnonce),
        // Parsing refused -sess without qop (it needs the cnonce).
        _ => ha1,
    };
    let ha2 = hash::ha2(alg, method, &r.uri);
    let expected = match &r.qop {
        Some(q) => hash::response(alg, &ha1, &r.nonce, &q.nc_hex, &q.cnonce, &q.qop, &ha2),
        None => hash::response_no_qop(alg, &ha1, &r.nonce, &ha2),
    };
    let matches: Choice = expected.as_bytes().ct_eq(r.response.as_bytes());
    let known = Choice::from(u8::from(fault.is_none()));
    if !bool::from(matches & known) {
        return Err(fault.unwrap_or_else(|| Failure::WrongResponse(clip(username))));
    }

    let username = username.to_owned();
    let issued_at = match nonce_state {
        NonceCheck::Valid { issued_at } => issued_at,
        // Invalid returned above; Stale with a correct response is stale.
        NonceCheck::Stale | NonceCheck::Invalid => {
            return Ok(Verdict::Stale {
                username,
                algorithm: r.algorithm,
            });
        }
    };
    // Without qop there is no nc: each nonce is good once (nc 1).
    let nc = r.qop.as_ref().map_or(1, |q| q.nc);
    match counts.check_and_record(&r.nonce, issued_at, nc, now) {
        NcCheck::Accepted => Ok(Verdict::Ok {
            username,
            algorithm: r.algorithm,
            uri: r.uri,
        }),
        NcCheck::Replayed => Err(Failure::Replayed { username, nc }),
        NcCheck::Forgotten => Ok(Verdict::Stale {
            username,
            algorithm: r.algorithm,
        }),
    }
}
