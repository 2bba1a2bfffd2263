//! `[[trunk]]`: the SIP carriers (DESIGN.md "Trunks"): where outbound
//! calls go (host, port, transport), the credentials for their 401/407 and
//! for outbound registration (RFC 3261 §10), the sources whose INVITEs are
//! theirs, the context those calls enter, and the STIR/SHAKEN signing key.
//!
//! Same two steps as the rest of the config: serde reads [`RawTrunk`], the
//! checker builds [`TrunkConfig`] with file:line:column errors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ::registrar::bans::{IpNet, parse_network};
use serde::Deserialize;
use toml::Spanned;

use super::registrar::{DEFAULT_CONTEXT, MAX_CONTEXT_LEN};
use super::{Checker, ConfigError, DurationText};

/// Default of a trunk's `expires` (seconds asked for in its REGISTER).
pub const DEFAULT_TRUNK_EXPIRES: u32 = 3600;
/// Shortest `expires` accepted (RFC 3261 §10.2.8's usual Min-Expires).
pub const MIN_TRUNK_EXPIRES: u32 = 60;
/// Longest `expires` accepted.
pub const MAX_TRUNK_EXPIRES: u32 = 86_400;
/// How often a trunk is pinged with OPTIONS when `qualify = true`.
pub const DEFAULT_QUALIFY: Duration = Duration::from_secs(60);
/// Longest trunk name.
pub const MAX_TRUNK_NAME_LEN: usize = 32;

/// How a trunk's transport is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkTransport {
    /// `"udp"` (the default).
    Udp,
    /// `"tcp"`.
    Tcp,
}

/// How numbers are written towards a trunk (`caller_id_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerIdFormat {
    /// `"e164"` (the default): `+15550001001`.
    E164,
    /// `"national"`: without `+` and country code, as many national carriers want it.
    National,
}

/// `stir_shaken = { key, x5u }`: what outbound calls on this trunk are signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct StirShakenConfig {
    /// `key`: the P-256 private key (PKCS#8 or SEC1 PEM), relative to the config file.
    pub key: PathBuf,
    /// `x5u`: the https URL of the certificate verifiers fetch.
    pub x5u: String,
    /// The key file's PEM text, read (and checked) by `check`.
    pub key_pem: String,
}

impl std::fmt::Debug for StirShakenConfig {
    /// The key file's name, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StirShakenConfig")
            .field("key", &self.key)
            .field("x5u", &self.x5u)
            .finish_non_exhaustive()
    }
}

/// A `[[trunk]]`, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkConfig {
    /// `name`: what `trunk:NAME/NUMBER` and the API call it.
    pub name: String,
    /// `host`: a host name (RFC 3263 lookup when `port` is left out) or an IP address.
    pub host: String,
    /// `port`: `None` means look it up (a name) or 5060 (an address).
    pub port: Option<u16>,
    /// `transport`.
    pub transport: TrunkTransport,
    /// `username`: the account at the carrier (From user and digest user by default).
    pub username: Option<String>,
    /// `password`: answers the carrier's 401/407.
    pub password: Option<String>,
    /// `auth_username`: the digest user name when it is not `username`.
    pub auth_username: Option<String>,
    /// `register`: keep a registration at the carrier.
    pub register: bool,
    /// `expires`: seconds asked for in REGISTER.
    pub expires: u32,
    /// `from_user`: the From user of REGISTER and of calls without a caller ID.
    pub from_user: Option<String>,
    /// `from_domain`: the host of From (default: `host`).
    pub from_domain: Option<String>,
    /// `match`: sources whose INVITEs are this trunk's.
    pub matches: Vec<IpNet>,
    /// `context`: where its inbound calls enter the dialplan.
    pub context: String,
    /// `max_channels`: most calls on this trunk at once (`None`: no limit).
    pub max_channels: Option<u32>,
    /// `codecs`: offered to this trunk in this order (`None`: `media.codecs`).
    pub codecs: Option<Vec<sdp::Codec>>,
    /// `caller_id_format`.
    pub caller_id_format: CallerIdFormat,
    /// `qualify`: OPTIONS ping period (`None`: off).
    pub qualify: Option<Duration>,
    /// `stir_shaken`: the signing key and certificate URL.
    pub stir_shaken: Option<StirShakenConfig>,
}

impl TrunkConfig {
    /// The SIP channel's view of this trunk.
    pub fn to_trunk(&self) -> chan_sip::Trunk {
        chan_sip::Trunk {
            name: self.name.clone(),
            host: self.host.clone(),
            port: self.port,
            transport: match self.transport {
                TrunkTransport::Udp => sip_net::Transport::Udp,
                TrunkTransport::Tcp => sip_net::Transport::Tcp,
            },
            username: self.username.clone(),
            password: self.password.clone(),
            auth_username: self.auth_username.clone(),
            register: self.register,
            expires: self.expires,
            from_user: self.from_user.clone(),
            from_domain: self.from_domain.clone(),
            matches: self.matches.clone(),
            context: self.context.clone(),
            max_channels: self.max_channels,
            caller_id_format: match self.caller_id_format {
                CallerIdFormat::E164 => chan_sip::CallerIdFormat::E164,
                CallerIdFormat::National => chan_sip::CallerIdFormat::National,
            },
            qualify: self.qualify,
            codecs: self.codecs.clone(),
            // Checked when the config was read.
            stir: self
                .stir_shaken
                .as_ref()
                .and_then(|s| chan_sip::StirKey::from_pem(&s.key_pem, &s.x5u).ok()),
        }
    }
}

impl std::fmt::Debug for TrunkConfig {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[hidden]"))
            .field("auth_username", &self.auth_username)
            .field("register", &self.register)
            .field("expires", &self.expires)
            .field("from_user", &self.from_user)
            .field("from_domain", &self.from_domain)
            .field("matches", &self.matches)
            .field("context", &self.context)
            .field("max_channels", &self.max_channels)
            .field("codecs", &self.codecs)
            .field("caller_id_format", &self.caller_id_format)
            .field("qualify", &self.qualify)
            .field("stir_shaken", &self.stir_shaken)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// What serde reads.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    name: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    transport: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    auth_username: Option<Spanned<String>>,
    register: Option<Spanned<bool>>,
    expires: Option<Spanned<i64>>,
    from_user: Option<Spanned<String>>,
    from_domain: Option<Spanned<String>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<Vec<Spanned<String>>>>,
    context: Option<Spanned<String>>,
    max_channels: Option<Spanned<i64>>,
    codecs: Option<Spanned<Vec<Spanned<String>>>>,
    caller_id_format: Option<Spanned<String>>,
    qualify: Option<Spanned<Qualify>>,
    stir_shaken: Option<Spanned<RawStirShaken>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStirShaken {
    key: Spanned<String>,
    x5u: Spanned<String>,
}

/// `qualify = true | false | "30s"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Qualify {
    On(bool),
    Every(String),
}

// ---------------------------------------------------------------------------
// The checks.

/// A user part we write in From or digest: no spaces, no SIP delimiters.
fn valid_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b))
}

/// A host name or IP address, without scheme, port or path.
fn valid_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && (s.parse::<std::net::IpAddr>().is_ok()
            || s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
}

impl Checker<'_> {
    /// Checks every `[[trunk]]`; names must be unique.
    pub(super) fn trunks(
        &self,
        raw: &[Spanned<RawTrunk>],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<TrunkConfig>, ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for trunk in raw {
            let t = trunk.get_ref();
            let name = self.trunk_name(&t.name)?;
            let line = super::line_column(self.text, t.name.span().start).0;
            if let Some(first) = seen.insert(t.name.get_ref().as_str(), line) {
                return Err(self.error(
                    t.name.span(),
                    format!(
                        "trunk {name:?} is defined twice (first at line {first}); give each [[trunk]] its own name"
                    ),
                ));
            }
            out.push(self.trunk(&name, trunk, warnings)?);
        }
        Ok(out)
    }

    /// Where each trunk's `context` is set (its `name` when left out), by name.
    pub(super) fn trunk_locations(
        &self,
        raw: &[Spanned<RawTrunk>],
    ) -> HashMap<String, super::Location> {
        raw.iter()
            .map(|t| {
                let t = t.get_ref();
                let span = t.context.as_ref().unwrap_or(&t.name).span();
                (
                    t.name.get_ref().clone(),
                    super::Location::at(self.source, self.text, Some(span)),
                )
            })
            .collect()
    }

    fn trunk_name(&self, v: &Spanned<String>) -> Result<String, ConfigError> {
        let name = v.get_ref();
        let valid = !name.is_empty()
            && name.len() <= MAX_TRUNK_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(self.error(
                v.span(),
                format!(
                    "trunk name {name:?} is not valid; use 1 to {MAX_TRUNK_NAME_LEN} letters, digits, '_' or '-' (dial it as \"trunk:NAME/NUMBER\"), e.g. \"carrier\""
                ),
            ));
        }
        Ok(name.clone())
    }

    fn trunk(
        &self,
        name: &str,
        raw: &Spanned<RawTrunk>,
        warnings: &mut Vec<String>,
    ) -> Result<TrunkConfig, ConfigError> {
        let t = raw.get_ref();
        let key = |k: &str| format!("trunk {name}: {k}");
        let Some(host_v) = &t.host else {
            return Err(self.error(
                t.name.span(),
                format!(
                    "trunk {name} has no host; set host = \"sip.carrier.example\" (a name, looked up by RFC 3263) or an IP address"
                ),
            ));
        };
        let host = host_v.get_ref().trim().to_ascii_lowercase();
        if !valid_host(&host) {
            return Err(self.error(
                host_v.span(),
                format!(
                    "{}: {:?} is not a host name or IP address; write only the host (e.g. \"sip.carrier.example\"), and the port in `port`",
                    key("host"),
                    host_v.get_ref()
                ),
            ));
        }
        let port = match &t.port {
            Some(v) => match u16::try_from(*v.get_ref()) {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    return Err(self.error(
                        v.span(),
                        format!("{}: {} is not a port (1-65535)", key("port"), v.get_ref()),
                    ));
                }
            },
            None => None,
        };
        let transport = match &t.transport {
            None => TrunkTransport::Udp,
            Some(v) => match v.get_ref().trim().to_ascii_lowercase().as_str() {
                "udp" => TrunkTransport::Udp,
                "tcp" => TrunkTransport::Tcp,
                other => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "{}: {other:?} is not supported; write \"udp\" or \"tcp\"",
                            key("transport")
                        ),
                    ));
                }
            },
        };
        let user = |k: &str, v: &Option<Spanned<String>>| -> Result<Option<String>, ConfigError> {
            match v {
                None => Ok(None),
                Some(v) if valid_user(v.get_ref()) => Ok(Some(v.get_ref().clone())),
                Some(v) => Err(self.error(
                    v.span(),
                    format!(
                        "{}: {:?} is not a SIP user name; use 1 to 64 letters, digits or -_.+ without spaces",
                        key(k),
                        v.get_ref()
                    ),
                )),
            }
        };
        let username = user("username", &t.username)?;
        let auth_username = user("auth_username", &t.auth_username)?;
        let from_user = user("from_user", &t.from_user)?;
        let password = match &t.password {
            Some(v) => Some(self.text_value(&key("password"), v)?),
            None => None,
        };
        if let Some(p) = &t.password
            && username.is_none()
            && auth_username.is_none()
        {
            return Err(self.error(
                p.span(),
                format!(
                    "trunk {name}: password is set but no username; add username = \"...\" (or auth_username) as the carrier gave it"
                ),
            ));
        }
        if let Some(a) = &t.auth_username
            && password.is_none()
        {
            return Err(self.error(
                a.span(),
                format!(
                    "trunk {name}: auth_username is set but no password; add password = \"...\""
                ),
            ));
        }
        let register = t.register.as_ref().is_some_and(|v| *v.get_ref());
        if let Some(r) = &t.register
            && register
            && (password.is_none() || username.is_none())
        {
            return Err(self.error(
                r.span(),
                format!(
                    "trunk {name}: register = true needs username and password (the account the carrier gave you)"
                ),
            ));
        }
        let expires = match &t.expires {
            None => DEFAULT_TRUNK_EXPIRES,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(e) if (MIN_TRUNK_EXPIRES..=MAX_TRUNK_EXPIRES).contains(&e) => {
                    if !register {
                        warnings.push(self.warning(
                            v.span(),
                            format!(
                                "trunk {name}: expires is set but register is not true; it has no effect"
                            ),
                        ));
                    }
                    e
                }
                _ => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "{}: {} is not a registration time; use {MIN_TRUNK_EXPIRES} to {MAX_TRUNK_EXPIRES} seconds (default {DEFAULT_TRUNK_EXPIRES})",
                            key("expires"),
                            v.get_ref()
                        ),
                    ));
                }
            },
        };
        let from_domain = match &t.from_domain {
            None => None,
            Some(v) => {
                let d = v.get_ref().trim().to_ascii_lowercase();
                if !valid_host(&d) {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "{}: {:?} is not a host name or IP address",
                            key("from_domain"),
                            v.get_ref()
                        ),
                    ));
                }
                Some(d)
            }
        };
        let mut matches = Vec::new();
        for m in t.matches.iter().flat_map(|m| m.get_ref()) {
            let net = parse_network(m.get_ref()).map_err(|_| {
                self.error(
                    m.span(),
                    format!(
                        "{}: {:?} is not an IP address or network; write e.g. \"198.51.100.7\" or \"198.51.100.0/24\"",
                        key("match"),
                        m.get_ref()
                    ),
                )
            })?;
            matches.push(net);
        }
        let context = match &t.context {
            None => DEFAULT_CONTEXT.to_owned(),
            Some(v) => {
                let c = v.get_ref();
                let valid = !c.is_empty()
                    && c.len() <= MAX_CONTEXT_LEN
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "{}: {c:?} is not a dialplan context name; use letters, digits, '_' or '-' (dialplans/NAME.lua), e.g. \"from-carrier\"",
                            key("context")
                        ),
                    ));
                }
                c.clone()
            }
        };
        let max_channels = match &t.max_channels {
            None => None,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "{}: {} must be a number of calls greater than zero (leave it out for no limit)",
                            key("max_channels"),
                            v.get_ref()
                        ),
                    ));
                }
            },
        };
        let codecs = match &t.codecs {
            Some(list) => Some(self.codecs(&key("codecs"), list)?),
            None => None,
        };
        let caller_id_format = match &t.caller_id_format {
            None => CallerIdFormat::E164,
            Some(v) => match v.get_ref().trim().to_ascii_lowercase().as_str() {
                "e164" => CallerIdFormat::E164,
                "national" => CallerIdFormat::National,
                other => {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "{}: {other:?} is not a format; write \"e164\" (+15550001001, the default) or \"national\"",
                            key("caller_id_format")
                        ),
                    ));
                }
            },
        };
        let qualify = match &t.qualify {
            Some(v) => match v.get_ref() {
                Qualify::On(false) => None,
                Qualify::On(true) => Some(DEFAULT_QUALIFY),
                Qualify::Every(text) => {
                    let spanned = Spanned::new(v.span(), DurationText(text.clone()));
                    Some(self.duration(&key("qualify"), &spanned, false)?)
                }
            },
            None => None,
        };
        let stir_shaken = match &t.stir_shaken {
            None => None,
            Some(s) => Some(self.stir_shaken(name, s.get_ref())?),
        };
        if matches.is_empty() && !register {
            warnings.push(self.warning(
                t.name.span(),
                format!(
                    "trunk {name}: no match and no register; calls can go out through it, but no inbound call is recognised as this trunk's \
                     — add match = [\"CARRIER-IP\"] or register = true"
                ),
            ));
        }
        Ok(TrunkConfig {
            name: name.to_owned(),
            host,
            port,
            transport,
            username,
            password,
            auth_username,
            register,
            expires,
            from_user,
            from_domain,
            matches,
            context,
            max_channels,
            codecs,
            caller_id_format,
            qualify,
            stir_shaken,
        })
    }

    /// `stir_shaken = { key, x5u }`: the key file must be readable PEM
    /// holding a private key; x5u an https URL.
    fn stir_shaken(
        &self,
        name: &str,
        raw: &RawStirShaken,
    ) -> Result<StirShakenConfig, ConfigError> {
        let path = super::dialplan::resolve(self.source, raw.key.get_ref());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.error(
                raw.key.span(),
                format!(
                    "trunk {name}: stir_shaken.key: cannot read {}: {e}; give the P-256 private key in PEM (relative to the config file)",
                    path.display()
                ),
            )
        })?;
        let pem_key = text.contains("-----BEGIN PRIVATE KEY-----")
            || text.contains("-----BEGIN EC PRIVATE KEY-----");
        if !pem_key {
            return Err(self.error(
                raw.key.span(),
                format!(
                    "trunk {name}: stir_shaken.key: {} is not a PEM private key (no \"BEGIN PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"); \
                     make one with `openssl ecparam -name prime256v1 -genkey -noout -out stir.pem`",
                    path.display()
                ),
            ));
        }
        let x5u = raw.x5u.get_ref().trim();
        let host = x5u.strip_prefix("https://").unwrap_or_default();
        let host = host.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || x5u.contains(char::is_whitespace) {
            return Err(self.error(
                raw.x5u.span(),
                format!(
                    "trunk {name}: stir_shaken.x5u: {x5u:?} is not an https URL; verifiers fetch the certificate from it, e.g. \"https://certs.example.com/office.pem\""
                ),
            ));
        }
        if let Err(e) = chan_sip::StirKey::from_pem(&text, x5u) {
            return Err(self.error(
                raw.key.span(),
                format!(
                    "trunk {name}: stir_shaken: {}: {e}; STIR/SHAKEN signs with a P-256 key \
                     (`openssl ecparam -name prime256v1 -genkey -noout -out stir.pem`)",
                    path.display()
                ),
            ));
        }
        Ok(StirShakenConfig {
            key: path,
            x5u: x5u.to_owned(),
            key_pem: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigSource};
    use super::*;

    fn parse_in(dir: &std::path::Path, text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File(dir.join("t.toml")), text).map_err(|e| e.to_string())
    }

    fn parse(text: &str) -> Result<Config, String> {
        parse_in(std::path::Path::new(""), text)
    }

    const KEY_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFg1ITQrxkJfeKIYNotY7HhLxCjBAiEHYPVk/uCA+SFtoAoGCCqGSM49\nAwEHoUQDQgAEDrr9B2cDYpMzVdtmcimPlWtjYgXkF+j4//EfQknqaj+/ZYoHT2OV\n4nQkQzR/n1SFSzFMGsFIGCZ8HoBBg+fYjg==\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn every_key_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stir.pem"), KEY_PEM).unwrap();
        let config = parse_in(
            dir.path(),
            r#"
[[extension]]
id = "1001"
password = "a-long-secret-1"
did = "+15550001001"
outbound = true
international = true

[security]
anonymous = "reject"

[[trunk]]
name = "carrier"
host = "SIP.Carrier.example"
port = 5080
transport = "tcp"
username = "office"
password = "s3cret"
auth_username = "office-auth"
register = true
expires = 600
from_user = "office"
from_domain = "carrier.example"
match = ["127.0.1.0/24", "127.0.0.7"]
context = "from-carrier"
max_channels = 30
codecs = ["PCMA", "telephone-event"]
caller_id_format = "national"
qualify = "30s"
stir_shaken = { key = "stir.pem", x5u = "https://certs.example.com/office.pem" }

[[trunk]]
name = "backup"
host = "127.0.0.10"
qualify = true
"#,
        )
        .unwrap();
        let ext = &config.extensions[0];
        assert_eq!(ext.did.as_deref(), Some("+15550001001"));
        assert!(ext.outbound && ext.international);
        assert!(config.security.reject_anonymous);
        let t = &config.trunks[0];
        assert_eq!(t.name, "carrier");
        assert_eq!(t.host, "sip.carrier.example");
        assert_eq!(t.port, Some(5080));
        assert_eq!(t.transport, TrunkTransport::Tcp);
        assert_eq!(t.username.as_deref(), Some("office"));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.auth_username.as_deref(), Some("office-auth"));
        assert!(t.register);
        assert_eq!(t.expires, 600);
        assert_eq!(t.from_user.as_deref(), Some("office"));
        assert_eq!(t.from_domain.as_deref(), Some("carrier.example"));
        let matches = |ip: &str| {
            t.matches
                .iter()
                .any(|n| n.contains(&ip.parse::<std::net::IpAddr>().unwrap()))
        };
        assert!(matches("127.0.1.99"));
        assert!(matches("127.0.0.7"));
        assert!(!matches("127.0.0.8"));
        assert_eq!(t.context, "from-carrier");
        assert_eq!(t.max_channels, Some(30));
        assert_eq!(t.codecs.as_ref().map(Vec::len), Some(2));
        assert_eq!(t.caller_id_format, CallerIdFormat::National);
        assert_eq!(t.qualify, Some(Duration::from_secs(30)));
        let stir = t.stir_shaken.as_ref().unwrap();
        assert_eq!(stir.key, dir.path().join("stir.pem"));
        assert_eq!(stir.x5u, "https://certs.example.com/office.pem");
        assert!(
            !format!("{t:?}").contains("s3cret"),
            "Debug hides the password"
        );
        let b = &config.trunks[1];
        assert_eq!(
            (b.port, b.transport, b.register),
            (None, TrunkTransport::Udp, false)
        );
        assert_eq!(b.context, "default");
        assert_eq!(b.caller_id_format, CallerIdFormat::E164);
        assert_eq!(b.qualify, Some(DEFAULT_QUALIFY));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("trunk backup: no match and no register")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn bad_trunks_name_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not-a-key.pem"), "hello\n").unwrap();
        for (text, needle, line) in [
            (
                "[[trunk]]\nname = \"a\"\nhots = \"x\"\n",
                "unknown field `hots`",
                3,
            ),
            (
                "[[trunk]]\nname = \"a b\"\nhost = \"x\"\n",
                "trunk name \"a b\" is not valid",
                2,
            ),
            ("[[trunk]]\nname = \"a\"\n", "trunk a has no host", 2),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"sip:x.example:5060\"\n",
                "trunk a: host",
                3,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nport = 70000\n",
                "trunk a: port: 70000",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\ntransport = \"tls\"\n",
                "trunk a: transport: \"tls\"",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\npassword = \"p\"\n",
                "password is set but no username",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nusername = \"u\"\nauth_username = \"v\"\n",
                "auth_username is set but no password",
                5,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nregister = true\n",
                "register = true needs username and password",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nusername = \"u\"\npassword = \"p\"\nregister = true\nexpires = 10\n",
                "trunk a: expires: 10",
                7,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nmatch = [\"10.0.0.0/33\"]\n",
                "trunk a: match: \"10.0.0.0/33\"",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\ncontext = \"../etc\"\n",
                "trunk a: context",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nmax_channels = 0\n",
                "trunk a: max_channels",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\ncodecs = [\"opus\"]\n",
                "trunk a: codecs: unknown codec \"opus\"",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\ncaller_id_format = \"e.164\"\n",
                "trunk a: caller_id_format",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nqualify = \"often\"\n",
                "trunk a: qualify",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nusername = \"o f\"\n",
                "trunk a: username",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nstir_shaken = { key = \"missing.pem\", x5u = \"https://c.example/x.pem\" }\n",
                "stir_shaken.key: cannot read",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nstir_shaken = { key = \"not-a-key.pem\", x5u = \"https://c.example/x.pem\" }\n",
                "is not a PEM private key",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\nstir_shaken = { key = \"not-a-key.pem\", x5u = \"http://c.example/x.pem\", alg = 1 }\n",
                "unknown field `alg`",
                4,
            ),
            (
                "[[trunk]]\nname = \"a\"\nhost = \"x\"\n\n[[trunk]]\nname = \"a\"\nhost = \"y\"\n",
                "trunk \"a\" is defined twice (first at line 2)",
                6,
            ),
            (
                "[[extension]]\nid = \"1001\"\npassword = \"a-long-secret-1\"\ndid = \"5550001001\"\n",
                "did \"5550001001\" is not an E.164 number",
                4,
            ),
            (
                "[[extension]]\nid = \"1001\"\npassword = \"a-long-secret-1\"\ndid = \"+15550001001\"\n[[extension]]\nid = \"1002\"\npassword = \"a-long-secret-2\"\ndid = \"+15550001001\"\n",
                "already extension 1001's",
                8,
            ),
            (
                "[[extension]]\nid = \"1001\"\npassword = \"a-long-secret-1\"\noutbound = \"yes\"\n",
                "invalid type",
                4,
            ),
            (
                "[security]\nanonymous = \"drop\"\n",
                "security.anonymous: \"drop\"",
                2,
            ),
        ] {
            let e = parse_in(dir.path(), text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains(&format!("t.toml:{line}:")), "{text:?}: {e}");
        }
        // The x5u must be https.
        std::fs::write(dir.path().join("k.pem"), KEY_PEM).unwrap();
        let e = parse_in(
            dir.path(),
            "[[trunk]]\nname = \"a\"\nhost = \"x\"\nstir_shaken = { key = \"k.pem\", x5u = \"http://c.example/x.pem\" }\n",
        )
        .unwrap_err();
        assert!(
            e.contains("stir_shaken.x5u: \"http://c.example/x.pem\" is not an https URL"),
            "{e}"
        );
        assert!(parse("").unwrap().trunks.is_empty());
    }
}
