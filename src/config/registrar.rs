//! The registrar's sections: `[storage]`, `[security]`, `[registrar]` and `[[extension]]`.
//!
//! Same two steps as the rest of the config: serde reads the `Raw*` structs
//! (unknown keys are errors, every value keeps its span), then the
//! [`Checker`] methods here check them and build the typed values. Problems
//! that do not stop the PBX from working (an extension that can answer only
//! some of the offered digest algorithms) become warnings, not errors.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ::registrar::bans::{IpNet, parse_network};
use ::registrar::{BanPolicy, Policy};
use serde::Deserialize;
use sip_proto::digest::{Algorithm, Secret};
use toml::Spanned;

use super::{Checker, ConfigError, ConfigSource, DurationText, Location};

/// How often contacts are pinged when `registrar.qualify_interval` is not set.
const DEFAULT_QUALIFY_INTERVAL: Duration = Duration::from_secs(30);

/// Default of `storage.path`, relative to the working directory.
pub const DEFAULT_STORAGE_PATH: &str = "var/switchboard.redb";
/// Default of `storage.pool_size` (PostgreSQL connections per node).
pub const DEFAULT_PG_POOL_SIZE: usize = 16;
/// Largest `storage.pool_size`.
pub const MAX_PG_POOL_SIZE: usize = 1_000;
/// Default of `storage.connect_timeout`.
pub const DEFAULT_PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of `storage.query_timeout`.
pub const DEFAULT_PG_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of `security.ban_after_failures`.
pub const DEFAULT_BAN_AFTER_FAILURES: u32 = 10;
/// Default of `security.ban_window`.
pub const DEFAULT_BAN_WINDOW: Duration = Duration::from_secs(60);
/// Default of `security.ban_time`.
pub const DEFAULT_BAN_TIME: Duration = Duration::from_secs(600);
/// Default of `security.nonce_max_age`.
pub const DEFAULT_NONCE_MAX_AGE: Duration = Duration::from_secs(300);
/// Default of an extension's `context`.
pub const DEFAULT_CONTEXT: &str = "default";
/// Longest extension id.
pub const MAX_EXTENSION_ID_LEN: usize = 32;
/// Longest dialplan context name.
pub const MAX_CONTEXT_LEN: usize = 64;

/// `[storage]`: where bindings and the key-value store live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// `backend = "redb"` (the default): one file at `path`, relative to the working directory.
    Redb {
        /// The database file.
        path: PathBuf,
    },
    /// `backend = "memory"`: nothing on disk, everything lost at exit.
    Memory,
    /// `backend = "postgres"`: a PostgreSQL database, which several nodes can share.
    Postgres(PostgresConfig),
}

/// `[storage]` with `backend = "postgres"`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `url`, or the contents of the file `url_file` names: it may hold
    /// a password, so it is never shown (see [`PostgresConfig::target`]).
    pub url: String,
    /// `user@host:port/dbname`: the URL without its password.
    pub target: String,
    /// `pool_size`: most connections this node opens.
    pub pool_size: usize,
    /// `connect_timeout`: longest wait for a new connection.
    pub connect_timeout: Duration,
    /// `query_timeout`: longest a storage call may take (a REGISTER or a
    /// call's location lookup gets 503 after it while the database is out).
    pub query_timeout: Duration,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("target", &self.target)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// The storage crate's options.
    pub fn options(&self) -> storage::PostgresOptions {
        storage::PostgresOptions {
            url: self.url.clone(),
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            query_timeout: self.query_timeout,
        }
    }
}

impl fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::Redb { path } => write!(f, "{}", path.display()),
            StorageConfig::Memory => f.write_str("memory"),
            StorageConfig::Postgres(pg) => write!(f, "postgres {}", pg.target),
        }
    }
}

/// `[security]`: digest authentication and the brute-force ban list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `digest_algorithms`: offered in this order, one challenge each.
    pub digest_algorithms: Vec<Algorithm>,
    /// `ban_after_failures`: failed authentications within `ban_window` that ban a source IP or lock a user (0: never).
    pub ban_after_failures: u32,
    /// `ban_window`: the window failures are counted in.
    pub ban_window: Duration,
    /// `ban_time`: how long a ban lasts.
    pub ban_time: Duration,
    /// `nonce_max_age`: how long a challenge's nonce is accepted before it is `stale`.
    pub nonce_max_age: Duration,
    /// `trusted_networks`: sources in these networks are never banned (their users are still locked).
    pub trusted_networks: Vec<IpNet>,
    /// `anonymous = "reject"`: an INVITE from neither an extension nor a
    /// trunk gets 403 at once instead of a 407 challenge (`"challenge"`, the default).
    pub reject_anonymous: bool,
}

impl SecurityConfig {
    /// The ban list's policy.
    pub fn ban_policy(&self) -> BanPolicy {
        BanPolicy {
            after_failures: self.ban_after_failures,
            window: self.ban_window,
            ban_time: self.ban_time,
            trusted: self.trusted_networks.clone(),
            ..BanPolicy::default()
        }
    }
}

/// An `[[extension]]`: a phone account.
#[derive(Debug, Clone)]
pub struct ExtensionConfig {
    /// `id`: the user name phones register with, e.g. `1001`.
    pub id: String,
    /// `name`: display name.
    pub name: Option<String>,
    /// `context`: dialplan context for calls it places.
    pub context: String,
    /// `password`, `ha1_md5`, `ha1_sha256`; `None` only in the embedded
    /// demo config, whose passwords are generated at first start.
    pub secret: Option<Secret>,
    /// `email`: where voicemail messages are mailed (through `[smtp]`).
    pub email: Option<String>,
    /// `voicemail_pin`: the digits that open its mailbox (`*97`, `*98`).
    pub voicemail_pin: Option<String>,
    /// `pickup_group`: the group whose ringing calls `*8` picks up.
    pub pickup_group: Option<String>,
    /// `did`: its outside number in E.164 (caller ID on trunks, inbound DID routing).
    pub did: Option<String>,
    /// `outbound`: the shipped dialplan lets it call national numbers through a trunk.
    pub outbound: bool,
    /// `international`: the shipped dialplan lets it call international and premium numbers.
    pub international: bool,
}

impl ExtensionConfig {
    /// The registrar's view of this extension, with `secret` filled in.
    pub fn to_extension(&self, secret: Secret) -> registrar::Extension {
        registrar::Extension {
            id: self.id.clone(),
            name: self.name.clone(),
            context: self.context.clone(),
            secret,
        }
    }
}

// ---------------------------------------------------------------------------
// What serde reads.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    path: Option<Spanned<String>>,
    backend: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    pool_size: Option<Spanned<usize>>,
    connect_timeout: Option<Spanned<DurationText>>,
    query_timeout: Option<Spanned<DurationText>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurity {
    digest_algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    ban_after_failures: Option<Spanned<u32>>,
    ban_window: Option<Spanned<DurationText>>,
    ban_time: Option<Spanned<DurationText>>,
    nonce_max_age: Option<Spanned<DurationText>>,
    trusted_networks: Option<Vec<Spanned<String>>>,
    anonymous: Option<Spanned<String>>,
    // The endpoint's defences, checked in `netsec`.
    pub(super) tcp_max_per_ip: Option<Spanned<usize>>,
    pub(super) tcp_message_timeout: Option<Spanned<DurationText>>,
    pub(super) tcp_outbound_reserved: Option<Spanned<usize>>,
    pub(super) max_transactions: Option<Spanned<usize>>,
    pub(super) max_calls: Option<Spanned<usize>>,
    pub(super) udp_rate: Option<Spanned<u32>>,
    pub(super) udp_burst: Option<Spanned<u32>>,
    // STIR/SHAKEN verification, checked in `stir`.
    pub(super) stir_trust_anchors: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) stir_https_ca: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) stir_freshness: Option<Spanned<DurationText>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistrar {
    min_expires: Option<Spanned<u32>>,
    max_expires: Option<Spanned<u32>>,
    default_expires: Option<Spanned<u32>>,
    max_contacts: Option<Spanned<usize>>,
    qualify_interval: Option<Spanned<DurationText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtension {
    id: Spanned<String>,
    password: Option<Spanned<String>>,
    ha1_md5: Option<Spanned<String>>,
    ha1_sha256: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    email: Option<Spanned<String>>,
    voicemail_pin: Option<Spanned<String>>,
    pickup_group: Option<Spanned<String>>,
    did: Option<Spanned<String>>,
    outbound: Option<bool>,
    international: Option<bool>,
}

/// Each extension's id and where its `email` is, for those that have one.
pub(super) fn emails(
    raw: &[Spanned<RawExtension>],
) -> impl Iterator<Item = (String, std::ops::Range<usize>)> + '_ {
    raw.iter().filter_map(|ext| {
        let ext = ext.get_ref();
        let email = ext.email.as_ref()?;
        Some((ext.id.get_ref().clone(), email.span()))
    })
}

// ---------------------------------------------------------------------------
// The checks.

/// Shortest password that is not called weak.
const MIN_PASSWORD_LEN: usize = 10;

/// Why `password` is easy to guess for extension `id`, if it is: the
/// patterns SIP scanners try first (the extension number, digits only,
/// short, one repeated character, the classic defaults).
pub(crate) fn weak_password(id: &str, password: &str) -> Option<String> {
    let lower = password.to_ascii_lowercase();
    let distinct: HashSet<char> = password.chars().collect();
    if lower == id.to_ascii_lowercase() {
        Some("it is the extension id".to_owned())
    } else if lower.contains(&id.to_ascii_lowercase()) {
        Some("it contains the extension id".to_owned())
    } else if [
        "password", "secret", "changeme", "admin", "qwerty", "letmein",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        Some("it contains a common word".to_owned())
    } else if password.chars().all(|c| c.is_ascii_digit()) {
        Some("digits only".to_owned())
    } else if password.chars().count() < MIN_PASSWORD_LEN {
        Some(format!("shorter than {MIN_PASSWORD_LEN} characters"))
    } else if distinct.len() < 4 {
        Some("fewer than 4 different characters".to_owned())
    } else {
        None
    }
}

impl Checker<'_> {
    /// A warning in the same `file:line:col: message` form as errors.
    pub(super) fn warning(&self, span: std::ops::Range<usize>, message: String) -> String {
        format!(
            "config {}: {message}",
            Location::at(self.source, self.text, Some(span))
        )
    }

    pub(super) fn storage(&self, raw: &RawStorage) -> Result<StorageConfig, ConfigError> {
        let memory = match &raw.backend {
            None => false,
            Some(v) => match v.get_ref().trim() {
                "redb" => false,
                "memory" => true,
                "postgres" => return self.postgres(raw),
                other => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "storage.backend: {other:?} is not a storage backend; write \"redb\" (a file, the default), \"postgres\" (a PostgreSQL database several nodes can share) or \"memory\" (nothing kept across restarts)"
                        ),
                    ));
                }
            },
        };
        let backend = if memory { "memory" } else { "redb" };
        let pg_only = [
            ("url", raw.url.as_ref().map(Spanned::span)),
            ("url_file", raw.url_file.as_ref().map(Spanned::span)),
            ("pool_size", raw.pool_size.as_ref().map(Spanned::span)),
            (
                "connect_timeout",
                raw.connect_timeout.as_ref().map(Spanned::span),
            ),
            (
                "query_timeout",
                raw.query_timeout.as_ref().map(Spanned::span),
            ),
        ];
        if let Some((key, Some(span))) = pg_only.into_iter().find(|(_, span)| span.is_some()) {
            return Err(self.error(
                span,
                format!(
                    "storage.{key}: is only used with backend = \"postgres\"; remove it, or set backend = \"postgres\" (the backend is {backend:?})"
                ),
            ));
        }
        match (&raw.path, memory) {
            (Some(p), true) => Err(self.error(
                p.span(),
                "storage.path: is only used with backend = \"redb\"; remove it, or remove backend = \"memory\"".to_owned(),
            )),
            (None, true) => Ok(StorageConfig::Memory),
            (Some(p), false) => Ok(StorageConfig::Redb {
                path: PathBuf::from(self.text_value("storage.path", p)?),
            }),
            (None, false) => Ok(StorageConfig::Redb {
                path: PathBuf::from(DEFAULT_STORAGE_PATH),
            }),
        }
    }

    /// `[storage]` with `backend = "postgres"`: `url` or `url_file` (one
    /// of them), the pool size and the timeouts.
    fn postgres(&self, raw: &RawStorage) -> Result<StorageConfig, ConfigError> {
        if let Some(p) = &raw.path {
            return Err(self.error(
                p.span(),
                "storage.path: is only used with backend = \"redb\"; remove it (backend = \"postgres\" is set)".to_owned(),
            ));
        }
        let url = match (&raw.url, &raw.url_file) {
            (Some(_), Some(file)) => {
                return Err(self.error(
                    file.span(),
                    "storage.url_file: set either url or url_file, not both (url_file keeps the password out of the config)".to_owned(),
                ));
            }
            (Some(url), None) => {
                let text = self.text_value("storage.url", url)?;
                storage::describe_url(&text).map_err(|e| self.error(url.span(), e.to_string()))?;
                text
            }
            (None, Some(file)) => {
                let name = self.text_value("storage.url_file", file)?;
                let path = super::dialplan::resolve(self.source, &name);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.error(
                        file.span(),
                        format!(
                            "storage.url_file: cannot read {}: {e}; write the postgres:// URL into that file (readable by switchboard only)",
                            path.display()
                        ),
                    )
                })?;
                let text = text.trim().to_owned();
                storage::describe_url(&text).map_err(|e| {
                    self.error(
                        file.span(),
                        format!(
                            "storage.url_file: {} holds no usable URL: {e}",
                            path.display()
                        ),
                    )
                })?;
                text
            }
            (None, None) => {
                let at = raw.backend.as_ref().map(Spanned::span);
                return Err(self.error(
                    at.unwrap_or(0..0),
                    "storage.url: backend = \"postgres\" needs url = \"postgres://user:password@host:port/dbname\" or url_file = \"FILE\" (a file holding that URL)".to_owned(),
                ));
            }
        };
        let target = storage::describe_url(&url).unwrap_or_default();
        let pool_size = match self.size("storage.pool_size", &raw.pool_size)? {
            Some(n) if n > MAX_PG_POOL_SIZE => {
                let span = raw.pool_size.as_ref().map_or(0..0, Spanned::span);
                return Err(self.error(
                    span,
                    format!("storage.pool_size: {n} is more than {MAX_PG_POOL_SIZE} connections; a PostgreSQL server allows about 100 by default"),
                ));
            }
            Some(n) => n,
            None => DEFAULT_PG_POOL_SIZE,
        };
        let connect_timeout = match &raw.connect_timeout {
            Some(v) => self.duration("storage.connect_timeout", v, false)?,
            None => DEFAULT_PG_CONNECT_TIMEOUT,
        };
        let query_timeout = match &raw.query_timeout {
            Some(v) => self.duration("storage.query_timeout", v, false)?,
            None => DEFAULT_PG_QUERY_TIMEOUT,
        };
        Ok(StorageConfig::Postgres(PostgresConfig {
            url,
            target,
            pool_size,
            connect_timeout,
            query_timeout,
        }))
    }

    pub(super) fn security(&self, raw: &RawSecurity) -> Result<SecurityConfig, ConfigError> {
        let digest_algorithms = match &raw.digest_algorithms {
            None => vec![Algorithm::Md5],
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.error(
                        list.span(),
                        r#"security.digest_algorithms: is empty; list at least one, e.g. ["MD5"] or ["SHA-256", "MD5"]"#
                            .to_owned(),
                    ));
                }
                let mut out: Vec<Algorithm> = Vec::with_capacity(list.get_ref().len());
                for item in list.get_ref() {
                    let alg: Algorithm = item.get_ref().trim().parse().map_err(|e| {
                        self.error(item.span(), format!("security.digest_algorithms: {e}"))
                    })?;
                    if out.contains(&alg) {
                        return Err(self.error(
                            item.span(),
                            format!(
                                "security.digest_algorithms: {alg} is listed twice; remove one"
                            ),
                        ));
                    }
                    out.push(alg);
                }
                out
            }
        };
        let ban_after_failures = raw
            .ban_after_failures
            .as_ref()
            .map_or(DEFAULT_BAN_AFTER_FAILURES, |v| *v.get_ref());
        let ban_window = match &raw.ban_window {
            Some(v) => self.duration("security.ban_window", v, false)?,
            None => DEFAULT_BAN_WINDOW,
        };
        let ban_time = match &raw.ban_time {
            Some(v) => self.duration("security.ban_time", v, false)?,
            None => DEFAULT_BAN_TIME,
        };
        let nonce_max_age = match &raw.nonce_max_age {
            Some(v) => {
                let d = self.duration("security.nonce_max_age", v, false)?;
                // Nonces carry a timestamp in whole seconds.
                if d < Duration::from_secs(1) {
                    return Err(self.error(
                        v.span(),
                        "security.nonce_max_age: must be at least 1s".to_owned(),
                    ));
                }
                d
            }
            None => DEFAULT_NONCE_MAX_AGE,
        };
        let mut trusted_networks = Vec::new();
        for item in raw.trusted_networks.iter().flatten() {
            let net = parse_network(item.get_ref()).map_err(|_| {
                self.error(
                    item.span(),
                    format!(
                        "security.trusted_networks: {:?} is not a network; write an address or ADDRESS/PREFIX, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"",
                        item.get_ref()
                    ),
                )
            })?;
            trusted_networks.push(net);
        }
        let reject_anonymous = match &raw.anonymous {
            None => false,
            Some(v) => match v.get_ref().trim() {
                "challenge" => false,
                "reject" => true,
                other => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "security.anonymous: {other:?} is not a policy; write \"challenge\" (407, the default) or \"reject\" (403 for INVITEs from neither an extension nor a trunk)"
                        ),
                    ));
                }
            },
        };
        Ok(SecurityConfig {
            reject_anonymous,
            digest_algorithms,
            ban_after_failures,
            ban_window,
            ban_time,
            nonce_max_age,
            trusted_networks,
        })
    }

    pub(super) fn registrar(&self, raw: &RawRegistrar) -> Result<Policy, ConfigError> {
        let defaults = Policy::default();
        let seconds = |key: &str, v: &Option<Spanned<u32>>, default: u32| match v {
            Some(v) if *v.get_ref() == 0 => Err(self.error(
                v.span(),
                format!("registrar.{key}: must be greater than zero (seconds)"),
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let min_expires = seconds("min_expires", &raw.min_expires, defaults.min_expires)?;
        let max_expires = seconds("max_expires", &raw.max_expires, defaults.max_expires)?;
        let default_expires = seconds(
            "default_expires",
            &raw.default_expires,
            defaults.default_expires,
        )?;
        let span_of = |fields: [&Option<Spanned<u32>>; 2]| {
            fields
                .into_iter()
                .find_map(|f| f.as_ref().map(Spanned::span))
                .unwrap_or(0..0)
        };
        if min_expires > default_expires {
            return Err(self.error(
                span_of([&raw.min_expires, &raw.default_expires]),
                format!(
                    "registrar.min_expires ({min_expires}) is greater than registrar.default_expires ({default_expires}); need min_expires <= default_expires <= max_expires"
                ),
            ));
        }
        if default_expires > max_expires {
            return Err(self.error(
                span_of([&raw.default_expires, &raw.max_expires]),
                format!(
                    "registrar.default_expires ({default_expires}) is greater than registrar.max_expires ({max_expires}); need min_expires <= default_expires <= max_expires"
                ),
            ));
        }
        let max_contacts = match self.size("registrar.max_contacts", &raw.max_contacts)? {
            Some(n) => n,
            None => defaults.max_contacts,
        };
        Ok(Policy {
            min_expires,
            max_expires,
            default_expires,
            max_contacts,
        })
    }

    /// `registrar.qualify_interval`: how often every contact is pinged with
    /// OPTIONS (default 30 s; "0s" turns qualify off).
    pub(super) fn qualify_interval(
        &self,
        raw: &RawRegistrar,
    ) -> Result<Option<Duration>, ConfigError> {
        match &raw.qualify_interval {
            None => Ok(Some(DEFAULT_QUALIFY_INTERVAL)),
            Some(v) => {
                let d = self.duration("registrar.qualify_interval", v, true)?;
                Ok((!d.is_zero()).then_some(d))
            }
        }
    }

    /// Checks every `[[extension]]`; an extension that can serve only some
    /// of `algorithms` adds a line to `warnings`.
    pub(super) fn extensions(
        &self,
        raw: &[Spanned<RawExtension>],
        algorithms: &[Algorithm],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ExtensionConfig>, ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
        let mut out = Vec::with_capacity(raw.len());
        let mut dids: HashMap<String, String> = HashMap::new();
        for ext in raw {
            let ext = ext.get_ref();
            let id = self.extension_id(&ext.id)?;
            let line = super::line_column(self.text, ext.id.span().start).0;
            if let Some(first) = seen.insert(ext.id.get_ref().as_str(), line) {
                return Err(self.error(
                    ext.id.span(),
                    format!(
                        "extension {id:?} is defined twice (first at line {first}); give each [[extension]] its own id"
                    ),
                ));
            }
            let secret = self.secret(&id, ext)?;
            if let Some(secret) = &secret {
                self.check_algorithms(&id, ext, secret, algorithms, warnings)?;
            }
            if let Some(p) = &ext.password
                && let Some(why) = weak_password(&id, p.get_ref())
            {
                warnings.push(self.warning(
                    p.span(),
                    format!(
                        "extension {id}: weak password ({why}); SIP passwords are guessed by scanners within hours of a PBX going online — \
                         use 12 or more random characters (e.g. `openssl rand -base64 12`)"
                    ),
                ));
            }
            let name = match &ext.name {
                Some(v) => Some(self.text_value(&format!("extension {id}: name"), v)?),
                None => None,
            };
            let context = match &ext.context {
                Some(v) => self.context(&id, v)?,
                None => DEFAULT_CONTEXT.to_owned(),
            };
            let email = match &ext.email {
                Some(v) => Some(self.email(&id, v)?),
                None => None,
            };
            let voicemail_pin = match &ext.voicemail_pin {
                Some(v) => Some(self.voicemail_pin(&id, v)?),
                None => None,
            };
            let pickup_group = match &ext.pickup_group {
                Some(v) => Some(self.pickup_group(&id, v)?),
                None => None,
            };
            let did = match &ext.did {
                Some(v) => Some(self.did(&id, v, &mut dids)?),
                None => None,
            };
            out.push(ExtensionConfig {
                id,
                name,
                context,
                secret,
                email,
                voicemail_pin,
                pickup_group,
                did,
                outbound: ext.outbound.unwrap_or(false),
                international: ext.international.unwrap_or(false),
            });
        }
        Ok(out)
    }

    /// Where each extension's `context` is set (its `id` when left out), by id.
    pub(super) fn extension_locations(
        &self,
        raw: &[Spanned<RawExtension>],
    ) -> HashMap<String, Location> {
        raw.iter()
            .map(|ext| {
                let ext = ext.get_ref();
                let span = ext.context.as_ref().unwrap_or(&ext.id).span();
                (
                    ext.id.get_ref().clone(),
                    Location::at(self.source, self.text, Some(span)),
                )
            })
            .collect()
    }

    /// `pickup_group`: a name of 1-64 letters, digits, `_` or `-`.
    fn pickup_group(&self, id: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let group = v.get_ref();
        if group.is_empty()
            || group.len() > 64
            || !group
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(self.error(
                v.span(),
                format!(
                    "extension {id}: pickup_group must be 1-64 letters, digits, _ or -, e.g. \"sales\""
                ),
            ));
        }
        Ok(group.clone())
    }

    /// `did`: `+` and 7 to 15 digits (E.164), owned by one extension.
    fn did(
        &self,
        id: &str,
        v: &Spanned<String>,
        seen: &mut HashMap<String, String>,
    ) -> Result<String, ConfigError> {
        let did = v.get_ref().trim();
        let digits = did.strip_prefix('+').unwrap_or_default();
        if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.error(
                v.span(),
                format!(
                    "extension {id}: did {did:?} is not an E.164 number; write + and the full number with country code, e.g. \"+15550001001\""
                ),
            ));
        }
        if let Some(other) = seen.insert(did.to_owned(), id.to_owned()) {
            return Err(self.error(
                v.span(),
                format!("extension {id}: did {did} is already extension {other}'s; a number rings one extension"),
            ));
        }
        Ok(did.to_owned())
    }

    /// `voicemail_pin`: 4 to 16 digits, typed on a phone's keypad.
    fn voicemail_pin(&self, id: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let pin = v.get_ref();
        if !(4..=16).contains(&pin.len()) || !pin.chars().all(|c| c.is_ascii_digit()) {
            return Err(self.error(
                v.span(),
                format!(
                    "extension {id}: voicemail_pin must be 4 to 16 digits (0-9), typed on the phone's keypad, e.g. \"4711\""
                ),
            ));
        }
        Ok(pin.clone())
    }

    fn extension_id(&self, v: &Spanned<String>) -> Result<String, ConfigError> {
        let id = v.get_ref();
        let valid_chars = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if id.is_empty() || id.len() > MAX_EXTENSION_ID_LEN || !valid_chars {
            return Err(self.error(
                v.span(),
                format!(
                    "extension id {id:?} is not valid; use 1 to {MAX_EXTENSION_ID_LEN} letters, digits, '.', '_' or '-' (e.g. \"1001\")"
                ),
            ));
        }
        Ok(id.clone())
    }

    fn context(&self, id: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let context = v.get_ref();
        let valid_chars = context
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if context.is_empty() || context.len() > MAX_CONTEXT_LEN || !valid_chars {
            return Err(self.error(
                v.span(),
                format!(
                    "extension {id}: context {context:?} is not a dialplan context name; use letters, digits, '_' or '-' (dialplans/NAME.lua), e.g. \"default\""
                ),
            ));
        }
        Ok(context.clone())
    }

    /// The extension's secret; `None` (generated later) only for the embedded demo config.
    fn secret(&self, id: &str, ext: &RawExtension) -> Result<Option<Secret>, ConfigError> {
        let mut secret: Option<Secret> = None;
        if let Some(p) = &ext.password {
            let password = p.get_ref();
            if password.is_empty() {
                return Err(self.error(
                    p.span(),
                    format!("extension {id}: password must not be empty"),
                ));
            }
            if password.chars().any(char::is_control) {
                return Err(self.error(
                    p.span(),
                    format!(
                        "extension {id}: password must not contain control characters (tabs, line breaks)"
                    ),
                ));
            }
            secret = Some(Secret::password(password.clone()));
        }
        for (key, alg, value) in [
            ("ha1_md5", Algorithm::Md5, &ext.ha1_md5),
            ("ha1_sha256", Algorithm::Sha256, &ext.ha1_sha256),
        ] {
            let Some(v) = value else { continue };
            let hex = v.get_ref().trim();
            if hex.len() != alg.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "extension {id}: {key} must be {} hex digits, the {alg} of \"{id}:REALM:PASSWORD\" with REALM = sip.domain",
                        alg.hex_len()
                    ),
                ));
            }
            let with = secret.take().unwrap_or_default().with_ha1(alg, hex);
            secret = Some(with.map_err(|e| self.error(v.span(), format!("extension {id}: {e}")))?);
        }
        if secret.is_none() && *self.source != ConfigSource::Embedded {
            return Err(self.error(
                ext.id.span(),
                format!(
                    "extension {id} has no secret; set password = \"...\" (or ha1_md5 / ha1_sha256). \
                     Only the embedded demo config generates passwords"
                ),
            ));
        }
        Ok(secret)
    }

    /// An extension must be able to answer at least one offered algorithm;
    /// answering only some of them is a warning.
    fn check_algorithms(
        &self,
        id: &str,
        ext: &RawExtension,
        secret: &Secret,
        algorithms: &[Algorithm],
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let (served, missing): (Vec<Algorithm>, Vec<Algorithm>) =
            algorithms.iter().partition(|a| secret.supports(**a));
        if missing.is_empty() {
            return Ok(());
        }
        let span = ext
            .ha1_md5
            .as_ref()
            .or(ext.ha1_sha256.as_ref())
            .map_or(ext.id.span(), Spanned::span);
        let names =
            |algs: &[Algorithm]| algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
        if served.is_empty() {
            return Err(self.error(
                span,
                format!(
                    "extension {id} cannot authenticate with any of security.digest_algorithms ({}): \
                     it has no password and no H(A1) for them; add password = \"...\"{}",
                    names(&missing),
                    if missing.contains(&Algorithm::Sha256) {
                        " or ha1_sha256"
                    } else {
                        ""
                    }
                ),
            ));
        }
        warnings.push(self.warning(
            span,
            format!(
                "extension {id} can authenticate only with {} (no password, no H(A1) for {}); \
                 a phone that answers the {} challenge will fail: add password = \"...\" to serve every algorithm",
                names(&served),
                names(&missing),
                names(&missing),
            ),
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigSource};
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File("t.toml".into()), text).map_err(|e| e.to_string())
    }

    const MD5_1001: &str = "8b5d1a8e2ad2b0d4e3c7a1f0c4e1b2a3";

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Redb {
                path: DEFAULT_STORAGE_PATH.into()
            }
        );
        assert_eq!(c.security.digest_algorithms, vec![Algorithm::Md5]);
        assert_eq!(c.security.ban_after_failures, 10);
        assert_eq!(c.security.ban_window, Duration::from_secs(60));
        assert_eq!(c.security.ban_time, Duration::from_secs(600));
        assert_eq!(c.security.nonce_max_age, Duration::from_secs(300));
        assert_eq!(c.registrar, Policy::default());
        assert!(c.extensions.is_empty());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(&format!(
            r#"
[storage]
path = "/tmp/x/sb.redb"
[security]
digest_algorithms = ["SHA-256", "md5", "SHA-512-256"]
ban_after_failures = 0
ban_window = "2m"
ban_time = "1h"
nonce_max_age = "30s"
[registrar]
min_expires = 30
max_expires = 7200
default_expires = 600
max_contacts = 3
[[extension]]
id = "1001"
password = "pw"
name = "Alice"
context = "office-2"
[[extension]]
id = "bob.smith"
password = "pw"
ha1_md5 = "{MD5_1001}"
"#
        ))
        .unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Redb {
                path: "/tmp/x/sb.redb".into()
            }
        );
        assert_eq!(
            c.security.digest_algorithms,
            vec![Algorithm::Sha256, Algorithm::Md5, Algorithm::Sha512_256]
        );
        let bans = c.security.ban_policy();
        assert_eq!(bans.after_failures, 0);
        assert_eq!(bans.window, Duration::from_secs(120));
        assert_eq!(bans.ban_time, Duration::from_secs(3600));
        assert_eq!(c.security.nonce_max_age, Duration::from_secs(30));
        assert_eq!(
            c.registrar,
            Policy {
                min_expires: 30,
                max_expires: 7200,
                default_expires: 600,
                max_contacts: 3
            }
        );
        assert_eq!(c.extensions.len(), 2);
        let alice = &c.extensions[0];
        assert_eq!(alice.id, "1001");
        assert_eq!(alice.name.as_deref(), Some("Alice"));
        assert_eq!(alice.context, "office-2");
        let bob = &c.extensions[1];
        assert_eq!(bob.context, "default");
        let secret = bob.secret.clone().unwrap();
        assert!(secret.supports(Algorithm::Sha512_256));
        assert_eq!(
            secret.ha1_for(Algorithm::Md5, "bob.smith", "x").as_deref(),
            Some(MD5_1001)
        );
        // "pw" is weak (only a warning); nothing else is.
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings.iter().all(|w| w.contains("weak password")),
            "{:?}",
            c.warnings
        );
        let r = c.registrar_config();
        assert_eq!(r.policy.max_contacts, 3);
        assert_eq!(r.algorithms[0], Algorithm::Sha256);
    }

    #[test]
    fn weak_passwords_are_named() {
        for (id, password, why) in [
            ("1001", "1001", "it is the extension id"),
            ("1001", "x1001-abcdefg", "it contains the extension id"),
            ("1001", "MySecret-991", "it contains a common word"),
            ("1001", "8675309000000", "digits only"),
            ("1001", "a-B3", "shorter than 10 characters"),
            ("1001", "abababababab", "fewer than 4 different characters"),
        ] {
            assert_eq!(
                weak_password(id, password).as_deref(),
                Some(why),
                "{password}"
            );
        }
        assert_eq!(weak_password("1001", "Vq7-zK2p-Lm9w"), None);
    }

    #[test]
    fn memory_backend() {
        let c = parse("[storage]\nbackend = \"memory\"\n").unwrap();
        assert_eq!(c.storage, StorageConfig::Memory);
        assert!(c.summary().contains("storage memory"), "{}", c.summary());
        let e = parse("[storage]\nbackend = \"memory\"\npath = \"a.redb\"\n").unwrap_err();
        assert!(e.starts_with("config t.toml:3:"), "{e}");
        assert!(e.contains("storage.path: is only used with"), "{e}");
        let e = parse("[storage]\nbackend = \"sled\"\n").unwrap_err();
        assert!(e.contains("storage.backend: \"sled\""), "{e}");
        let e = parse("[storage]\npth = \"x\"\n").unwrap_err();
        assert!(e.contains("unknown field `pth`"), "{e}");
    }

    #[test]
    fn postgres_backend() {
        let c = parse(
            "[storage]\nbackend = \"postgres\"\nurl = \"postgres://sb:s3cret@db.example.com:5433/pbx\"\n",
        )
        .unwrap();
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!("{:?}", c.storage);
        };
        assert_eq!(pg.url, "postgres://sb:s3cret@db.example.com:5433/pbx");
        assert_eq!(pg.target, "sb@db.example.com:5433/pbx");
        assert_eq!(pg.pool_size, DEFAULT_PG_POOL_SIZE);
        assert_eq!(pg.connect_timeout, DEFAULT_PG_CONNECT_TIMEOUT);
        assert_eq!(pg.query_timeout, DEFAULT_PG_QUERY_TIMEOUT);
        // The password is in neither the summary `check` prints nor Debug.
        let summary = c.summary();
        assert!(
            summary.contains("storage postgres sb@db.example.com:5433/pbx"),
            "{summary}"
        );
        assert!(!summary.contains("s3cret") && !format!("{c:?}").contains("s3cret"));

        // url_file: the URL from a file (relative to the config's directory).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg.url"), "postgres://sb:pw@10.0.0.5/pbx\n").unwrap();
        let text = "[storage]\nbackend = \"postgres\"\nurl_file = \"pg.url\"\npool_size = 4\nconnect_timeout = \"1s\"\nquery_timeout = \"500ms\"\n";
        let c = Config::parse(ConfigSource::File(dir.path().join("sb.toml")), text).unwrap();
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!("{:?}", c.storage);
        };
        assert_eq!(pg.url, "postgres://sb:pw@10.0.0.5/pbx");
        assert_eq!(pg.pool_size, 4);
        assert_eq!(pg.connect_timeout, Duration::from_secs(1));
        assert_eq!(pg.query_timeout, Duration::from_millis(500));

        // Every mistake is reported at its line.
        let pg = "[storage]\nbackend = \"postgres\"\n";
        for (text, at, needle) in [
            (
                format!("{pg}url = \"postgres://a@b/c\"\nurl_file = \"f\"\n"),
                "t.toml:4:",
                "storage.url_file: set either url or url_file",
            ),
            (
                pg.to_owned(),
                "t.toml:2:",
                "storage.url: backend = \"postgres\" needs url",
            ),
            (
                format!("{pg}url = \"mysql://a@b/c\"\n"),
                "t.toml:3:",
                "storage.url: not a PostgreSQL connection URL",
            ),
            (
                format!("{pg}url_file = \"/nonexistent/pg.url\"\n"),
                "t.toml:3:",
                "storage.url_file: cannot read /nonexistent/pg.url",
            ),
            (
                format!("{pg}url = \"postgres://a@b/c\"\npool_size = 0\n"),
                "t.toml:4:",
                "storage.pool_size: must be greater than zero",
            ),
            (
                format!("{pg}url = \"postgres://a@b/c\"\npool_size = 5000\n"),
                "t.toml:4:",
                "storage.pool_size: 5000 is more than 1000",
            ),
            (
                format!("{pg}url = \"postgres://a@b/c\"\nquery_timeout = \"soon\"\n"),
                "t.toml:4:",
                "storage.query_timeout: \"soon\" is not a duration",
            ),
            (
                format!("{pg}url = \"postgres://a@b/c\"\npath = \"a.redb\"\n"),
                "t.toml:4:",
                "storage.path: is only used with backend = \"redb\"",
            ),
            (
                "[storage]\nurl = \"postgres://a@b/c\"\n".to_owned(),
                "t.toml:2:",
                "storage.url: is only used with backend = \"postgres\"",
            ),
            (
                "[storage]\nbackend = \"memory\"\nquery_timeout = \"1s\"\n".to_owned(),
                "t.toml:3:",
                "storage.query_timeout: is only used with backend = \"postgres\"",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with(&format!("config {at}")), "{text:?}: {e}");
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn bad_security_values() {
        for (text, needle) in [
            (
                "[security]\ndigest_algorithms = []\n",
                "security.digest_algorithms: is empty",
            ),
            (
                "[security]\ndigest_algorithms = [\"SHA-1\"]\n",
                "unknown digest algorithm 'SHA-1'",
            ),
            (
                "[security]\ndigest_algorithms = [\"MD5-sess\"]\n",
                "cannot be offered here",
            ),
            (
                "[security]\ndigest_algorithms = [\"MD5\", \"md5\"]\n",
                "MD5 is listed twice",
            ),
            (
                "[security]\nban_window = \"0s\"\n",
                "security.ban_window: must be greater than zero",
            ),
            (
                "[security]\nban_time = \"ever\"\n",
                "security.ban_time: \"ever\" is not a duration",
            ),
            (
                "[security]\nnonce_max_age = \"500ms\"\n",
                "security.nonce_max_age: must be at least 1s",
            ),
            (
                "[security]\nban_after_failures = -1\n",
                "ban_after_failures",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("t.toml:2:"), "{text:?}: {e}");
        }
    }

    #[test]
    fn bad_registrar_values() {
        for (text, needle, line) in [
            (
                "[registrar]\nmin_expires = 0\n",
                "registrar.min_expires: must be greater than zero",
                2,
            ),
            (
                "[registrar]\nmax_contacts = 0\n",
                "registrar.max_contacts: must be greater than zero",
                2,
            ),
            (
                "[registrar]\ndefault_expires = 30\n",
                "registrar.min_expires (60) is greater than registrar.default_expires (30)",
                2,
            ),
            (
                "[registrar]\nmax_expires = 100\nmin_expires = 10\n",
                "registrar.default_expires (3600) is greater than registrar.max_expires (100)",
                2,
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains(&format!("t.toml:{line}:")), "{text:?}: {e}");
        }
        // Equal values are fine.
        parse("[registrar]\nmin_expires = 120\ndefault_expires = 120\nmax_expires = 120\n")
            .unwrap();
    }

    #[test]
    fn duplicate_extension_names_both_lines() {
        let e = parse(
            "[[extension]]\nid = \"1001\"\npassword = \"a\"\n\n[[extension]]\nid = \"1001\"\npassword = \"b\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("config t.toml:6:"), "{e}");
        assert!(
            e.contains("extension \"1001\" is defined twice (first at line 2)"),
            "{e}"
        );
    }

    #[test]
    fn bad_extensions() {
        for (text, needle) in [
            (
                "[[extension]]\nid = \"10 01\"\npassword = \"a\"\n",
                "extension id \"10 01\" is not valid",
            ),
            (
                "[[extension]]\nid = \"\"\npassword = \"a\"\n",
                "extension id \"\" is not valid",
            ),
            (
                "[[extension]]\nid = \"123456789012345678901234567890123\"\npassword = \"a\"\n",
                "is not valid",
            ),
            (
                "[[extension]]\nid = \"1001\"\n",
                "extension 1001 has no secret; set password",
            ),
            (
                "[[extension]]\nid = \"1001\"\npassword = \"\"\n",
                "extension 1001: password must not be empty",
            ),
            (
                "[[extension]]\nid = \"1001\"\nha1_md5 = \"abc\"\n",
                "extension 1001: ha1_md5 must be 32 hex digits",
            ),
            (
                "[[extension]]\nid = \"1001\"\nha1_sha256 = \"8b5d1a8e2ad2b0d4e3c7a1f0c4e1b2a3\"\n",
                "extension 1001: ha1_sha256 must be 64 hex digits",
            ),
            (
                "[[extension]]\nid = \"1001\"\npassword = \"a\"\ncontext = \"../etc\"\n",
                "context \"../etc\" is not a dialplan context name",
            ),
            (
                "[[extension]]\nid = \"1001\"\npassword = \"a\"\nsecret = \"b\"\n",
                "unknown field `secret`",
            ),
            ("[[extension]]\npassword = \"a\"\n", "missing field `id`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("config t.toml:"), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: {e}");
        }
    }

    #[test]
    fn ha1_only_extension_warns_or_fails_by_algorithm() {
        let ext = format!("[[extension]]\nid = \"1001\"\nha1_md5 = \"{MD5_1001}\"\n");
        // MD5 only: fine.
        let c = parse(&ext).unwrap();
        assert!(c.warnings.is_empty());
        // SHA-256 and MD5 offered: works with MD5 only, a warning.
        let c = parse(&format!(
            "[security]\ndigest_algorithms = [\"SHA-256\", \"MD5\"]\n{ext}"
        ))
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let w = &c.warnings[0];
        assert!(w.starts_with("config t.toml:5:"), "{w}");
        assert!(
            w.contains("extension 1001 can authenticate only with MD5"),
            "{w}"
        );
        // SHA-256 only: it could never register, an error.
        let e = parse(&format!(
            "[security]\ndigest_algorithms = [\"SHA-256\"]\n{ext}"
        ))
        .unwrap_err();
        assert!(
            e.contains("extension 1001 cannot authenticate with any of security.digest_algorithms (SHA-256)"),
            "{e}"
        );
    }

    #[test]
    fn embedded_default_has_demo_extensions_without_secrets() {
        let c = Config::load(&ConfigSource::Embedded).unwrap();
        let ids: Vec<&str> = c.extensions.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1000", "1001", "1002", "1003"]);
        assert!(c.extensions.iter().all(|e| e.secret.is_none()));
        assert_eq!(
            c.storage,
            StorageConfig::Redb {
                path: DEFAULT_STORAGE_PATH.into()
            }
        );
        // The same text from a file must set passwords.
        let e = Config::parse(
            ConfigSource::File("switchboard.toml".into()),
            super::super::DEFAULT_TOML,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("extension 1000 has no secret"), "{e}");
    }
}
