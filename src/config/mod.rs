//! The TOML configuration file, checked strictly: `shutdown_grace`, `[sip]`,
//! `[admin]`, `[log]` here; `[storage]`, `[security]`, `[registrar]` and
//! `[[extension]]` in [`registrar`]; `[dialplan]` in [`dialplan`]; `[smtp]`
//! and the extensions' `email` in [`smtp`]; `[[trunk]]` in [`trunk`].
//!
//! Loading has two steps. serde reads the text into `Raw*` structs (every
//! struct `deny_unknown_fields`, every value kept with its byte span), then
//! [`Config::from_raw`] checks the values and builds the typed [`Config`].
//! Both steps report errors as one line naming the file, line, column and
//! key, so that an admin can fix the file without reading a backtrace.
//! What is allowed but probably not meant becomes a warning in
//! [`Config::warnings`], in the same form.

mod dialplan;
mod media;
mod netsec;
mod registrar;
mod smtp;
mod stir;
mod trunk;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::registrar::{Policy, RegistrarConfig};
use serde::Deserialize;
use sip_net::{EndpointConfig, ListenAddr};
use toml::Spanned;

pub use self::dialplan::DialplanConfig;
pub use self::media::MediaConfig;
pub use self::netsec::NetSecurityConfig;
pub(crate) use self::registrar::weak_password;
pub use self::registrar::{DEFAULT_STORAGE_PATH, ExtensionConfig, SecurityConfig, StorageConfig};
pub use self::smtp::SmtpConfig;
pub use self::stir::StirConfig;
pub use self::trunk::TrunkConfig;

/// The configuration compiled into the binary: the demo office.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// The file `run` and `check` read when no `--config` is given, if it exists.
pub const LOCAL_CONFIG: &str = "switchboard.toml";

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file on disk (from `--config`, or `./switchboard.toml`).
    File(PathBuf),
    /// The embedded default ([`DEFAULT_TOML`]).
    Embedded,
}

impl ConfigSource {
    /// `--config FILE` if given, else `./switchboard.toml` if it exists, else the embedded default.
    pub fn resolve(cli: Option<&Path>) -> ConfigSource {
        match cli {
            Some(path) => ConfigSource::File(path.to_owned()),
            None if Path::new(LOCAL_CONFIG).is_file() => {
                ConfigSource::File(PathBuf::from(LOCAL_CONFIG))
            }
            None => ConfigSource::Embedded,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Embedded => f.write_str("(embedded default)"),
        }
    }
}

/// A place in a config file: `switchboard.toml:7:5`, or just the file when no position is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as [`ConfigSource`] displays it.
    pub file: String,
    /// 1-based line and column (in characters), when known.
    pub position: Option<(usize, usize)>,
}

impl Location {
    fn at(source: &ConfigSource, text: &str, span: Option<Range<usize>>) -> Location {
        Location {
            file: source.to_string(),
            position: span.map(|span| line_column(text, span.start)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, no permission, not UTF-8).
    #[error(
        "cannot read config {}: {source}; give an existing file with --config, \
         or leave --config out to use ./switchboard.toml or the embedded default",
        path.display()
    )]
    Read {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type or range.
    #[error("config {at}: {message}")]
    Invalid {
        /// Where the fault is.
        at: Location,
        /// What is wrong and what is expected, on one line.
        message: String,
    },
}

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub source: ConfigSource,
    /// How long a shutdown waits for work in progress (`shutdown_grace`, top-level).
    pub shutdown_grace: Duration,
    /// `[sip]`: listeners, domain, timers, limits.
    pub sip: SipConfig,
    /// `[admin]`: the admin HTTP server.
    pub admin: AdminConfig,
    /// `[log]`: log filter.
    pub log: LogConfig,
    /// `[storage]`: where bindings and the key-value store live.
    pub storage: StorageConfig,
    /// `[security]`: digest algorithms, nonce lifetime, bans.
    pub security: SecurityConfig,
    /// `[security]`: what the SIP endpoint enforces (connection and
    /// transaction limits, the UDP rate per source).
    pub net_security: NetSecurityConfig,
    /// `[registrar]`: expiry and contact limits.
    pub registrar: Policy,
    /// `[registrar] qualify_interval`: OPTIONS ping period, `None` when off.
    pub qualify_interval: Option<Duration>,
    /// `[[extension]]`: the phone accounts, in file order.
    pub extensions: Vec<ExtensionConfig>,
    /// `[dialplan]`: the Lua contexts and plugins, and their limits.
    pub dialplan: DialplanConfig,
    /// `[media]`: RTP anchoring.
    pub media: MediaConfig,
    /// `[smtp]`: the relay voicemail emails go through (`None`: no email).
    pub smtp: Option<SmtpConfig>,
    /// `[[trunk]]`: the SIP carriers, in file order.
    pub trunks: Vec<TrunkConfig>,
    /// `[security] stir_*`: STIR/SHAKEN verification of trunk calls
    /// (`None`: no `stir_trust_anchors`, nothing verified).
    pub stir: Option<StirConfig>,
    /// Things that work but are probably not meant, each one line with
    /// file, line and column (`check` prints them, `run` logs them).
    pub warnings: Vec<String>,
    /// Where some keys are, for checks made after loading (see `crate::preflight`).
    pub locations: Locations,
}

/// Where keys that later checks name are in the file.
#[derive(Debug, Clone)]
pub struct Locations {
    /// `media.bind`, when set.
    pub media_bind: Option<Location>,
    /// Each extension's `context` (its `id` when no context is set), by id.
    pub extension_context: std::collections::HashMap<String, Location>,
    /// Each trunk's `context` (its `name` when no context is set), by name.
    pub trunk_context: std::collections::HashMap<String, Location>,
    /// The whole file, for keys left out.
    pub file: Location,
}

/// `[sip]`: what the SIP endpoint binds and how it behaves.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// `listen`: listeners, e.g. `udp:0.0.0.0:5060`.
    pub listen: Vec<ListenAddr>,
    /// `domain`: host of local URIs.
    pub domain: String,
    /// `user_agent`: value of the `Server` / `User-Agent` header.
    pub user_agent: String,
    /// `t1`: RFC 3261 round-trip estimate.
    pub t1: Duration,
    /// `t2`: RFC 3261 maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// `t4`: RFC 3261 maximum time a message stays in the network.
    pub t4: Duration,
    /// `max_message_size`: largest SIP message in bytes (`None`: the parser's default).
    pub max_message_size: Option<usize>,
    /// `max_headers`: most header fields in one message (`None`: the parser's default).
    pub max_headers: Option<usize>,
    /// `max_body_size`: largest message body in bytes (`None`: the parser's default).
    pub max_body_size: Option<usize>,
    /// `max_header_line`: longest header line in bytes (`None`: the parser's default).
    pub max_header_line: Option<usize>,
    /// `max_tcp_connections`: most simultaneous SIP TCP connections.
    pub max_tcp_connections: usize,
    /// `tcp_idle_timeout`: a TCP connection silent this long is closed.
    pub tcp_idle_timeout: Duration,
    /// `nameservers`: the DNS servers trunk host names are looked up with
    /// (RFC 3263 SRV, A/AAAA); empty: `/etc/resolv.conf`'s.
    pub nameservers: Vec<SocketAddr>,
}

/// `[admin]`: the admin HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address to bind, or `None` when `enabled = false`.
    pub listen: Option<SocketAddr>,
    /// `token`: the bearer token every request but `/health` (and, with
    /// `metrics_public`, `/metrics`) must carry; `None`: generated at start
    /// (see `crate::admin::token`).
    pub token: Option<String>,
    /// `metrics_public`: serve `/metrics` without the token (default false).
    pub metrics_public: bool,
    /// `trace_calls`: how many recent calls keep their trace for
    /// `GET /api/v1/calls/{id}/trace`, and as many Call-IDs refused before
    /// routing (default 100; 0 turns traces off).
    pub trace_calls: usize,
    /// `hosts`: more names the `Host` header may carry (`name` or
    /// `name:port`), besides the listen address (and `localhost` on loopback).
    pub hosts: Vec<String>,
}

/// Default of `admin.trace_calls`.
pub const DEFAULT_TRACE_CALLS: usize = 100;
/// Most `admin.trace_calls` (each keeps up to `pbx::MAX_EVENTS` messages).
pub const MAX_TRACE_CALLS: usize = 10_000;

/// Shortest `admin.token` accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// `[log]`: what is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `info,sip_net=trace`. `RUST_LOG` overrides it.
    pub level: String,
}

/// Default of `shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default of `sip.listen`.
pub const DEFAULT_SIP_LISTEN: [&str; 2] = ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"];
/// Default of `admin.listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8088";
/// Default of `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

impl Config {
    /// Reads and checks the configuration from `source`.
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        let text = match source {
            ConfigSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    source: e,
                })?
            }
            ConfigSource::Embedded => DEFAULT_TOML.to_owned(),
        };
        Config::parse(source.clone(), &text)
    }

    /// Parses and checks `text`; `source` names it in errors.
    pub fn parse(source: ConfigSource, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(&source, text, &e))?;
        Config::from_raw(source, text, raw)
    }

    fn from_raw(source: ConfigSource, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
        let check = Checker {
            source: &source,
            text,
        };
        let shutdown_grace = match &raw.shutdown_grace {
            Some(v) => check.duration("shutdown_grace", v, true)?,
            None => DEFAULT_SHUTDOWN_GRACE,
        };
        let sip = check.sip(raw.sip)?;
        let admin = check.admin(&raw.admin)?;
        let log = check.log(raw.log)?;
        let storage = check.storage(&raw.storage)?;
        let security = check.security(&raw.security)?;
        let net_security = check.net_security(&raw.security, &sip)?;
        let stir = check.stir(&raw.security)?;
        let registrar = check.registrar(&raw.registrar)?;
        let qualify_interval = check.qualify_interval(&raw.registrar)?;
        let dialplan = check.dialplan(&raw.dialplan)?;
        let media = check.media(&raw.media)?;
        let locations = Locations {
            media_bind: check.media_bind_location(&raw.media),
            extension_context: check.extension_locations(&raw.extensions),
            trunk_context: check.trunk_locations(&raw.trunks),
            file: Location::at(&source, text, None),
        };
        let mut warnings = Vec::new();
        let extensions =
            check.extensions(&raw.extensions, &security.digest_algorithms, &mut warnings)?;
        let smtp = check.smtp(raw.smtp.as_ref(), &mut warnings)?;
        let trunks = check.trunks(&raw.trunks, &mut warnings)?;
        if smtp.is_none() {
            check.emails_without_smtp(registrar::emails(&raw.extensions), &mut warnings);
        }
        if let Some(addr) = admin.listen
            && !addr.ip().is_loopback()
        {
            let span = raw.admin.listen.as_ref().map(Spanned::span);
            warnings.push(format!(
                "config {}: admin.listen: {addr} is not a loopback address; the admin API (bearer token required) can be reached from the network — \
                 keep it on 127.0.0.1 or [::1] and reach it through SSH or a reverse proxy, or firewall the port",
                Location::at(&source, text, span)
            ));
        }
        Ok(Config {
            source,
            shutdown_grace,
            sip,
            admin,
            log,
            storage,
            security,
            net_security,
            registrar,
            qualify_interval,
            extensions,
            dialplan,
            media,
            smtp,
            trunks,
            stir,
            warnings,
            locations,
        })
    }

    /// The SIP endpoint's configuration: `[sip]` and the endpoint's `[security]` limits.
    pub fn endpoint_config(&self) -> EndpointConfig {
        let mut config = self.sip.endpoint_config();
        self.net_security.apply(&mut config);
        config
    }

    /// The registrar's configuration: realm = `sip.domain`, `[security]`, `[registrar]`.
    pub fn registrar_config(&self) -> RegistrarConfig {
        RegistrarConfig {
            domain: self.sip.domain.clone(),
            algorithms: self.security.digest_algorithms.clone(),
            nonce_max_age: self.security.nonce_max_age,
            policy: self.registrar,
            bans: self.security.ban_policy(),
        }
    }

    /// The demo extensions whose passwords are generated at start-up (only in the embedded default).
    pub fn demo_extensions(&self) -> impl Iterator<Item = &ExtensionConfig> {
        self.extensions.iter().filter(|e| e.secret.is_none())
    }

    /// One line for `switchboard check`: where the config came from and what it sets up.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.sip.listen.iter().map(ToString::to_string).collect();
        let admin = match self.admin.listen {
            Some(addr) => format!("admin http://{addr}"),
            None => "admin disabled".to_owned(),
        };
        let algorithms: Vec<&str> = self
            .security
            .digest_algorithms
            .iter()
            .map(|a| a.name())
            .collect();
        let demo = self.demo_extensions().count();
        let extensions = match (self.extensions.len(), demo) {
            (1, 0) => "1 extension".to_owned(),
            (n, 0) => format!("{n} extensions"),
            (n, d) if d == n => {
                format!("{n} demo extensions (passwords generated at first run, kept in storage)")
            }
            (n, d) => format!("{n} extensions ({d} with generated passwords)"),
        };
        let smtp = match &self.smtp {
            Some(s) => format!(
                "; voicemail email via smtp {}:{} ({})",
                s.host,
                s.port,
                s.tls.name()
            ),
            None => String::new(),
        };
        let trunks = match self.trunks.len() {
            0 => String::new(),
            1 => "; 1 trunk".to_owned(),
            n => format!("; {n} trunks"),
        };
        format!(
            "{}: SIP {} (domain {}); {extensions}{trunks}, digest {}; media RTP {} ports {}-{}; storage {}; {admin}; log {}; shutdown_grace {}{smtp}",
            self.source,
            listen.join(", "),
            self.sip.domain,
            algorithms.join(", "),
            self.media.bind,
            self.media.rtp_ports.start(),
            self.media.rtp_ports.end(),
            self.storage,
            self.log.level,
            humantime::format_duration(self.shutdown_grace),
        )
    }
}

impl SipConfig {
    /// The endpoint configuration these settings describe (the `[security]`
    /// limits left at their defaults: see [`Config::endpoint_config`]).
    pub fn endpoint_config(&self) -> EndpointConfig {
        let mut config = EndpointConfig {
            listen: self.listen.clone(),
            domain: self.domain.clone(),
            user_agent: self.user_agent.clone(),
            t1: self.t1,
            t2: self.t2,
            t4: self.t4,
            max_tcp_connections: self.max_tcp_connections,
            tcp_idle_timeout: self.tcp_idle_timeout,
            ..EndpointConfig::default()
        };
        self.apply_limits(&mut config.limits);
        config
    }

    /// Applies `max_message_size`, `max_headers`, `max_body_size` and
    /// `max_header_line` to the parser limits; a key left out keeps the parser's default.
    fn apply_limits(&self, limits: &mut sip_proto::message::Limits) {
        if let Some(n) = self.max_message_size {
            limits.max_message_size = n;
        }
        if let Some(n) = self.max_headers {
            limits.max_headers = n;
        }
        if let Some(n) = self.max_body_size {
            limits.max_body_size = n;
        }
        if let Some(n) = self.max_header_line {
            limits.max_header_line = n;
        }
    }
}

// ---------------------------------------------------------------------------
// What serde reads: every key optional, every value with its span.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    shutdown_grace: Option<Spanned<DurationText>>,
    #[serde(default)]
    sip: RawSip,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    storage: registrar::RawStorage,
    #[serde(default)]
    security: registrar::RawSecurity,
    #[serde(default)]
    registrar: registrar::RawRegistrar,
    #[serde(default, rename = "extension")]
    extensions: Vec<Spanned<registrar::RawExtension>>,
    #[serde(default)]
    dialplan: dialplan::RawDialplan,
    #[serde(default)]
    media: media::RawMedia,
    smtp: Option<Spanned<smtp::RawSmtp>>,
    #[serde(default, rename = "trunk")]
    trunks: Vec<Spanned<trunk::RawTrunk>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    domain: Option<Spanned<String>>,
    user_agent: Option<Spanned<String>>,
    t1: Option<Spanned<DurationText>>,
    t2: Option<Spanned<DurationText>>,
    t4: Option<Spanned<DurationText>>,
    max_message_size: Option<Spanned<usize>>,
    max_headers: Option<Spanned<usize>>,
    max_body_size: Option<Spanned<usize>>,
    max_header_line: Option<Spanned<usize>>,
    max_tcp_connections: Option<Spanned<usize>>,
    tcp_idle_timeout: Option<Spanned<DurationText>>,
    nameservers: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    metrics_public: Option<bool>,
    hosts: Option<Vec<Spanned<String>>>,
    trace_calls: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
}

/// A duration written as a string (`"500ms"`, `"10s"`, `"10m"`), parsed by the checker.
#[derive(Debug)]
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration string such as "500ms", "10s" or "10m""#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        d.deserialize_str(Visitor)
    }
}

// ---------------------------------------------------------------------------
// The checker: raw values to typed ones, errors with file:line:column and key.

struct Checker<'a> {
    source: &'a ConfigSource,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            at: Location::at(self.source, self.text, Some(span)),
            message,
        }
    }

    fn duration(
        &self,
        key: &str,
        value: &Spanned<DurationText>,
        zero_ok: bool,
    ) -> Result<Duration, ConfigError> {
        let text = &value.get_ref().0;
        let d = humantime::parse_duration(text).map_err(|e| {
            self.error(
                value.span(),
                format!(
                    r#"{key}: {text:?} is not a duration ({e}); write e.g. "500ms", "10s" or "10m""#
                ),
            )
        })?;
        if d.is_zero() && !zero_ok {
            return Err(self.error(value.span(), format!("{key}: must be greater than zero")));
        }
        Ok(d)
    }

    fn size(
        &self,
        key: &str,
        value: &Option<Spanned<usize>>,
    ) -> Result<Option<usize>, ConfigError> {
        match value {
            Some(v) if *v.get_ref() == 0 => Err(self.error(
                v.span(),
                format!("{key}: must be greater than zero (leave the key out for the default)"),
            )),
            Some(v) => Ok(Some(*v.get_ref())),
            None => Ok(None),
        }
    }

    fn text_value(&self, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
        let s = value.get_ref();
        if s.trim().is_empty() {
            return Err(self.error(value.span(), format!("{key}: must not be empty")));
        }
        if s.chars().any(char::is_control) {
            return Err(self.error(
                value.span(),
                format!("{key}: must not contain control characters (tabs, line breaks)"),
            ));
        }
        Ok(s.clone())
    }

    fn sip(&self, raw: RawSip) -> Result<SipConfig, ConfigError> {
        let defaults = EndpointConfig::default();
        let listen = match &raw.listen {
            Some(list) => self.listen(list)?,
            None => DEFAULT_SIP_LISTEN
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        let domain = match &raw.domain {
            Some(v) => {
                let domain = self.text_value("sip.domain", v)?;
                if domain.contains(char::is_whitespace) {
                    return Err(self.error(
                        v.span(),
                        format!("sip.domain: {domain:?} must be a host name or IP address, without spaces"),
                    ));
                }
                domain
            }
            None => defaults.domain.clone(),
        };
        let user_agent = match &raw.user_agent {
            Some(v) => self.text_value("sip.user_agent", v)?,
            None => defaults.user_agent.clone(),
        };
        let t1 = match &raw.t1 {
            Some(v) => self.duration("sip.t1", v, false)?,
            None => defaults.t1,
        };
        let t2 = match &raw.t2 {
            Some(v) => self.duration("sip.t2", v, false)?,
            None => defaults.t2,
        };
        let t4 = match &raw.t4 {
            Some(v) => self.duration("sip.t4", v, false)?,
            None => defaults.t4,
        };
        if t1 > t2 {
            let span = raw
                .t1
                .as_ref()
                .or(raw.t2.as_ref())
                .map(Spanned::span)
                .unwrap_or(0..0);
            return Err(self.error(
                span,
                format!(
                    "sip.t1 ({}) is greater than sip.t2 ({}); RFC 3261 needs t1 <= t2",
                    humantime::format_duration(t1),
                    humantime::format_duration(t2)
                ),
            ));
        }
        let max_tcp_connections =
            match self.size("sip.max_tcp_connections", &raw.max_tcp_connections)? {
                Some(n) => n,
                None => defaults.max_tcp_connections,
            };
        let tcp_idle_timeout = match &raw.tcp_idle_timeout {
            Some(v) => self.duration("sip.tcp_idle_timeout", v, false)?,
            None => defaults.tcp_idle_timeout,
        };
        Ok(SipConfig {
            listen,
            domain,
            user_agent,
            t1,
            t2,
            t4,
            max_message_size: self.size("sip.max_message_size", &raw.max_message_size)?,
            max_headers: self.size("sip.max_headers", &raw.max_headers)?,
            max_body_size: self.size("sip.max_body_size", &raw.max_body_size)?,
            max_header_line: self.size("sip.max_header_line", &raw.max_header_line)?,
            max_tcp_connections,
            tcp_idle_timeout,
            nameservers: self.nameservers(raw.nameservers.as_deref())?,
        })
    }

    /// `sip.nameservers`: `"IP"` (port 53) or `"IP:PORT"` each.
    fn nameservers(
        &self,
        list: Option<&[Spanned<String>]>,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        let mut out = Vec::new();
        for item in list.unwrap_or_default() {
            let text = item.get_ref().trim();
            let addr = text
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| text.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
                .ok_or_else(|| {
                    self.error(
                        item.span(),
                        format!(
                            "sip.nameservers: {text:?} is not a DNS server address; write an IP address, with a port if not 53 (\"192.0.2.53\", \"[2001:db8::53]:5353\")"
                        ),
                    )
                })?;
            out.push(addr);
        }
        Ok(out)
    }

    fn listen(&self, list: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<ListenAddr>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                r#"sip.listen: is empty; add at least one listener, e.g. ["udp:0.0.0.0:5060"]"#
                    .to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.get_ref().len());
        for item in list.get_ref() {
            let addr: ListenAddr = item
                .get_ref()
                .parse()
                .map_err(|e| self.error(item.span(), format!("sip.listen: {e}")))?;
            if !seen.insert((addr.transport, addr.addr)) {
                return Err(self.error(
                    item.span(),
                    format!("sip.listen: {addr} is listed twice; remove one"),
                ));
            }
            out.push(addr);
        }
        Ok(out)
    }

    fn admin(&self, raw: &RawAdmin) -> Result<AdminConfig, ConfigError> {
        let listen = match &raw.listen {
            Some(v) => v.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
                self.error(
                    v.span(),
                    format!(
                        "admin.listen: {:?} is not ADDR:PORT; write e.g. \"127.0.0.1:8088\" or \"[::1]:8088\" \
                         (set admin.enabled = false to turn the admin server off)",
                        v.get_ref()
                    ),
                )
            })?,
            // The constant is a valid socket address; a test below parses it.
            None => DEFAULT_ADMIN_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8088))),
        };
        let token = match &raw.token {
            Some(v) => {
                let t = v.get_ref();
                if t.len() < MIN_ADMIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "admin.token: must be at least {MIN_ADMIN_TOKEN_LEN} characters of printable ASCII without spaces \
                             (e.g. the output of `openssl rand -hex 24`); or leave it out to have one generated into admin.token beside the storage"
                        ),
                    ));
                }
                Some(t.clone())
            }
            None => None,
        };
        let mut hosts = Vec::new();
        for h in raw.hosts.iter().flatten() {
            let host = h.get_ref().trim();
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
            if !valid {
                return Err(self.error(
                    h.span(),
                    format!(
                        "admin.hosts: {:?} is not a host name; write a name or name:port as browsers send it in Host, e.g. \"pbx.example.com\" or \"pbx.example.com:8088\"",
                        h.get_ref()
                    ),
                ));
            }
            hosts.push(host.to_ascii_lowercase());
        }
        let trace_calls = match &raw.trace_calls {
            None => DEFAULT_TRACE_CALLS,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if n <= MAX_TRACE_CALLS => n,
                _ => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "admin.trace_calls: {} is not a number of calls from 0 (no traces) to {MAX_TRACE_CALLS}",
                            v.get_ref()
                        ),
                    ));
                }
            },
        };
        Ok(AdminConfig {
            listen: raw.enabled.unwrap_or(true).then_some(listen),
            token,
            metrics_public: raw.metrics_public.unwrap_or(false),
            hosts,
            trace_calls,
        })
    }

    fn log(&self, raw: RawLog) -> Result<LogConfig, ConfigError> {
        let level = match &raw.level {
            Some(v) => {
                let level = v.get_ref().trim().to_owned();
                crate::logging::check_level(&level).map_err(|e| {
                    self.error(
                        v.span(),
                        format!(
                            "log.level: {e}; write e.g. \"info\", \"debug\" or \"info,sip_net=debug\""
                        ),
                    )
                })?;
                level
            }
            None => DEFAULT_LOG_LEVEL.to_owned(),
        };
        Ok(LogConfig { level })
    }
}

/// Turns a toml error into one line with the position and, where toml knows it, the key.
fn toml_error(source: &ConfigSource, text: &str, error: &toml::de::Error) -> ConfigError {
    let message = one_line(error.message());
    // toml keeps the key path private, but prints it as "in `a.b`" when the
    // error has no input attached; ask for that form to learn the key.
    let mut bare = error.clone();
    bare.set_input(None);
    let key = bare
        .to_string()
        .lines()
        .find_map(|l| l.strip_prefix("in `").and_then(|k| k.strip_suffix('`')))
        .map(str::to_owned);
    let message = match key {
        Some(key) if !key.is_empty() && !message.contains(&format!("`{key}`")) => {
            format!("{key}: {message}")
        }
        _ => message,
    };
    ConfigError::Invalid {
        at: Location::at(source, text, error.span()),
        message,
    }
}

/// Joins a possibly multi-line message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File("t.toml".into()), text).map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_default_is_valid_and_is_the_demo_office() {
        let c = Config::load(&ConfigSource::Embedded).expect("embedded default must parse");
        let listen: Vec<String> = c.sip.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, DEFAULT_SIP_LISTEN);
        assert_eq!(c.admin.listen, Some(DEFAULT_ADMIN_LISTEN.parse().unwrap()));
        assert_eq!(c.log.level, "info");
        assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.sip.listen.len(), 2);
        assert_eq!(c.sip.t1, Duration::from_millis(500));
        assert_eq!(c.admin.listen, Some("127.0.0.1:8088".parse().unwrap()));
        assert_eq!(c.sip.max_message_size, None);
        let parser = sip_proto::message::Limits::default();
        assert_eq!(c.sip.endpoint_config().limits, parser);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
shutdown_grace = "2s"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:[::1]:5070"]
domain = "pbx.example.com"
user_agent = "Test"
t1 = "100ms"
t2 = "2s"
t4 = "3s"
max_message_size = 1000
max_headers = 20
max_body_size = 500
max_header_line = 300
max_tcp_connections = 7
tcp_idle_timeout = "1m"
[admin]
listen = "127.0.0.1:0"
[log]
level = "debug,sip_net=trace"
"#,
        )
        .unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(2));
        assert_eq!(c.sip.listen[1].to_string(), "tcp:[::1]:5070");
        assert_eq!(c.sip.domain, "pbx.example.com");
        assert_eq!(c.sip.t1, Duration::from_millis(100));
        assert_eq!(c.sip.max_headers, Some(20));
        assert_eq!(c.sip.max_header_line, Some(300));
        assert_eq!(c.sip.tcp_idle_timeout, Duration::from_secs(60));
        let e = c.sip.endpoint_config();
        assert_eq!(e.max_tcp_connections, 7);
        assert_eq!(e.limits.max_message_size, 1000);
        assert_eq!(e.limits.max_headers, 20);
        assert_eq!(e.limits.max_body_size, 500);
        assert_eq!(e.limits.max_header_line, 300);
        assert_eq!(e.user_agent, "Test");
        assert_eq!(c.log.level, "debug,sip_net=trace");
    }

    #[test]
    fn admin_can_be_disabled() {
        let c = parse("[admin]\nenabled = false\n").unwrap();
        assert_eq!(c.admin.listen, None);
        assert!(c.summary().contains("admin disabled"));
    }

    #[test]
    fn unknown_key_names_key_line_and_column() {
        let e = parse("[sip]\ndomain = \"x\"\nlisen = [\"udp:1.2.3.4:5\"]\n").unwrap_err();
        assert!(e.starts_with("config t.toml:3:1: "), "{e}");
        assert!(e.contains("unknown field `lisen`"), "{e}");
        assert!(e.contains("`listen`"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let e = parse("[voicemail]\nbox = \"0.0.0.0\"\n").unwrap_err();
        assert!(e.contains("t.toml:1:"), "{e}");
        assert!(e.contains("unknown field `voicemail`"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("[sip]\ndomain = \"x\"\nlisten = [\"udp:1.2.3.4:5\"\n").unwrap_err();
        assert!(e.starts_with("config t.toml:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse("[sip\n").unwrap_err();
        assert!(e.starts_with("config t.toml:1:"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let e = parse("[sip]\n\nt1 = 500\n").unwrap_err();
        assert!(e.starts_with("config t.toml:3:"), "{e}");
        assert!(e.contains("duration"), "{e}");
        let e = parse("[sip]\nmax_headers = -1\n").unwrap_err();
        assert!(e.starts_with("config t.toml:2:"), "{e}");
    }

    #[test]
    fn bad_listen_string_is_named() {
        let e = parse("[sip]\nlisten = [\n  \"udp:127.0.0.1:0\",\n  \"sctp:1.2.3.4:5060\",\n]\n")
            .unwrap_err();
        assert!(e.starts_with("config t.toml:4:3: sip.listen: "), "{e}");
        assert!(e.contains("sctp:1.2.3.4:5060"), "{e}");
    }

    #[test]
    fn duplicate_listener_is_an_error() {
        let e = parse("[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"]\n")
            .unwrap_err();
        assert!(e.contains("t.toml:2:"), "{e}");
        assert!(e.contains("listed twice"), "{e}");
        // Same address on two transports is fine.
        parse("[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]\n").unwrap();
    }

    #[test]
    fn empty_listen_is_an_error() {
        let e = parse("[sip]\nlisten = []\n").unwrap_err();
        assert!(e.contains("sip.listen: is empty"), "{e}");
    }

    #[test]
    fn t1_above_t2_is_an_error() {
        let e = parse("[sip]\nt2 = \"1s\"\nt1 = \"2s\"\n").unwrap_err();
        assert!(e.starts_with("config t.toml:3:"), "{e}");
        assert!(e.contains("sip.t1 (2s) is greater than sip.t2 (1s)"), "{e}");
    }

    #[test]
    fn nameservers_take_an_address_with_or_without_port() {
        let config =
            parse("[sip]\nnameservers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"[::1]:53\"]\n")
                .expect("parses");
        let want: Vec<SocketAddr> = ["127.0.0.1:5353", "192.0.2.53:53", "[::1]:53"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        assert_eq!(config.sip.nameservers, want);
        assert!(parse("").expect("parses").sip.nameservers.is_empty());
    }

    #[test]
    fn zero_and_bad_values_are_errors() {
        for (text, needle) in [
            (
                "[sip]\nmax_message_size = 0\n",
                "sip.max_message_size: must be greater than zero",
            ),
            (
                "[sip]\nmax_tcp_connections = 0\n",
                "sip.max_tcp_connections",
            ),
            ("[sip]\nt1 = \"0s\"\n", "sip.t1: must be greater than zero"),
            (
                "[sip]\nt4 = \"soon\"\n",
                "sip.t4: \"soon\" is not a duration",
            ),
            ("[sip]\ndomain = \"\"\n", "sip.domain: must not be empty"),
            (
                "[sip]\nnameservers = [\"127.0.0.1:5353\", \"dns.example\"]\n",
                "2:34: sip.nameservers: \"dns.example\" is not a DNS server address",
            ),
            (
                "[sip]\nuser_agent = \"a\\r\\nX: y\"\n",
                "sip.user_agent: must not contain control",
            ),
            (
                "[admin]\nlisten = \"localhost\"\n",
                "admin.listen: \"localhost\" is not ADDR:PORT",
            ),
            ("[log]\nlevel = \"sip_net=loud\"\n", "log.level"),
            (
                "[log]\nlevel = \"warning\"\n",
                "log.level: \"warning\" is not a log level",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("t.toml:2:"), "{text:?}: {e}");
        }
        // A zero grace period is allowed: exit at once.
        assert_eq!(
            parse("shutdown_grace = \"0s\"\n").unwrap().shutdown_grace,
            Duration::ZERO
        );
    }

    #[test]
    fn missing_file_is_one_line() {
        let e = Config::load(&ConfigSource::File("/nonexistent/switchboard.toml".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/switchboard.toml"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("abc", 99), (1, 4));
    }
}
