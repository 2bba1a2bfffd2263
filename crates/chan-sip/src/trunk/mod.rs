//! SIP trunks (DESIGN.md "Trunks"): the carriers calls go out through and
//! come in from. [`Trunks`] holds the configured ones (swapped whole on
//! reload), their registration state (RFC 3261 §10 as a client, in
//! `register.rs`), how many calls each carries (`max_channels`), and
//! answers "is this INVITE a trunk's?" for the channel.
//!
//! Read `register.rs` for the registration client, `qualify.rs` for the
//! OPTIONS pings (RFC 3261 §11), `auth.rs` for the
//! digest answers it and outbound calls give (RFC 7616, RFC 8760), and
//! `number.rs` for how numbers are normalised (E.164).

mod auth;
mod dns;
pub(crate) mod number;
mod qualify;
mod register;
mod stir;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use registrar::bans::IpNet;
use sip_net::{EndpointHandle, Transport};
use tokio_util::sync::CancellationToken;

pub(crate) use auth::authorization;
pub use dns::Dns;
pub use number::{CallerIdFormat, to_e164};
pub use stir::{StirKey, StirVerify};

/// One `[[trunk]]` as the channel uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Trunk {
    /// `name`: `trunk:NAME/NUMBER` and the API call it so.
    pub name: String,
    /// `host`: a name or an IP address.
    pub host: String,
    /// `port`: `None` for a name means "look it up" (RFC 3263); 5060 for an address.
    pub port: Option<u16>,
    /// `transport`.
    pub transport: Transport,
    /// `username`: the account at the carrier.
    pub username: Option<String>,
    /// `password`: for the carrier's 401/407.
    pub password: Option<String>,
    /// `auth_username`: the digest user when not `username`.
    pub auth_username: Option<String>,
    /// `register`: keep a registration at the carrier.
    pub register: bool,
    /// `expires`: seconds asked for in REGISTER.
    pub expires: u32,
    /// `from_user`: From user of REGISTER and of calls without a caller ID.
    pub from_user: Option<String>,
    /// `from_domain`: the host of From and To (default: `host`).
    pub from_domain: Option<String>,
    /// `match`: sources whose INVITEs are this trunk's.
    pub matches: Vec<IpNet>,
    /// `context`: where its inbound calls enter the dialplan.
    pub context: String,
    /// `max_channels`: most calls at once (`None`: no limit).
    pub max_channels: Option<u32>,
    /// `caller_id_format`: how numbers are written towards it.
    pub caller_id_format: CallerIdFormat,
    /// `qualify`: how often it is pinged with OPTIONS (`None`: never).
    pub qualify: Option<Duration>,
    /// `codecs`: offered to it, in this order (`None`: `media.codecs`).
    pub codecs: Option<Vec<sdp::Codec>>,
    /// `stir_shaken`: outbound INVITEs carry an `Identity` signed with it.
    pub stir: Option<StirKey>,
}

impl std::fmt::Debug for Trunk {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trunk")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("register", &self.register)
            .field("context", &self.context)
            .field("stir", &self.stir)
            .finish_non_exhaustive()
    }
}

impl Trunk {
    /// The digest user name: `auth_username`, else `username`.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_username.as_deref().or(self.username.as_deref())
    }

    /// The host of From/To URIs towards this trunk.
    pub fn domain(&self) -> &str {
        self.from_domain.as_deref().unwrap_or(&self.host)
    }

    /// The user of our own From (REGISTER, calls without a caller ID).
    pub fn own_user(&self) -> &str {
        self.from_user
            .as_deref()
            .or(self.username.as_deref())
            .unwrap_or("switchboard")
    }

    /// `sip:host[:port]`, the Request-URI of REGISTER.
    pub fn registrar_uri(&self) -> String {
        match self.port {
            Some(p) => format!("sip:{}:{p}", bracket(&self.host)),
            None => format!("sip:{}", bracket(&self.host)),
        }
    }

    /// Where to send to this trunk without DNS of our own: an address as
    /// given, a name through the system's `getaddrinfo` (A/AAAA only, port
    /// 5060 when none is given). [`Trunks::locate`] does RFC 3263.
    async fn resolve_plain(&self) -> Result<SocketAddr, String> {
        let port = self.port.unwrap_or(5060);
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        tokio::net::lookup_host((self.host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A trunk's registration as `GET /api/v1/trunks` and the metric show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// `register = false`.
    NotRegistering,
    /// The first REGISTER is under way.
    Registering,
    /// The carrier accepted the binding until `until`.
    Registered {
        /// When the binding runs out unless refreshed.
        until: Instant,
    },
    /// The last attempt failed; `retry` says whether and when it is tried again.
    Failed {
        /// `403 Forbidden`, `no response`, ...
        reason: String,
        /// `None`: stopped until the config is reloaded (403, 404).
        retry: Option<Instant>,
    },
}

impl RegState {
    /// `registered`, `failed (REASON)`, `registering`, `off`.
    pub fn label(&self) -> String {
        match self {
            RegState::NotRegistering => "off".to_owned(),
            RegState::Registering => "registering".to_owned(),
            RegState::Registered { .. } => "registered".to_owned(),
            RegState::Failed { reason, .. } => format!("failed ({reason})"),
        }
    }
}

/// One trunk as the API lists it.
#[derive(Debug, Clone)]
pub struct TrunkStatus {
    /// The trunk's config.
    pub trunk: Arc<Trunk>,
    /// Its registration.
    pub registration: RegState,
    /// Calls it carries now (inbound and outbound).
    pub channels: u32,
    /// Whether it answered its last OPTIONS ping (`None`: not pinged yet, or `qualify` is off).
    pub reachable: Option<bool>,
}

struct Running {
    trunk: Arc<Trunk>,
    stop: CancellationToken,
    /// Its registration and qualify tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The trunks in force, their registrations and channel counts.
#[derive(Clone)]
pub struct Trunks {
    inner: Arc<TrunksInner>,
}

struct TrunksInner {
    list: ArcSwap<Vec<Arc<Trunk>>>,
    states: Mutex<HashMap<String, RegState>>,
    channels: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Where each registering trunk's REGISTERs go: INVITEs from there are
    /// the trunk's (the carrier calling its registered contact).
    registrars: Mutex<HashMap<String, IpAddr>>,
    /// Whether each qualified trunk answered its last OPTIONS.
    reachable: Mutex<HashMap<String, bool>>,
    running: Mutex<HashMap<String, Running>>,
    client: Mutex<Option<register::Client>>,
    /// STIR/SHAKEN verification of inbound calls (`None`: no trust anchors).
    verify: arc_swap::ArcSwapOption<StirVerify>,
    /// The resolver for trunk host names (`None`: the system's, made at
    /// the first lookup).
    dns: arc_swap::ArcSwapOption<Dns>,
}

impl Trunks {
    /// `list` in force; nothing registers until [`Trunks::start`].
    pub fn new(list: Vec<Trunk>) -> Trunks {
        let trunks = Trunks {
            inner: Arc::new(TrunksInner {
                list: ArcSwap::from_pointee(Vec::new()),
                states: Mutex::new(HashMap::new()),
                channels: Mutex::new(HashMap::new()),
                registrars: Mutex::new(HashMap::new()),
                reachable: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                client: Mutex::new(None),
                verify: arc_swap::ArcSwapOption::empty(),
                dns: arc_swap::ArcSwapOption::empty(),
            }),
        };
        trunks.set(list);
        trunks
    }

    /// Starts registering (the trunks with `register = true`) through
    /// `endpoint`, until `shutdown`.
    pub fn start(&self, endpoint: EndpointHandle, user_agent: String, shutdown: CancellationToken) {
        *lock(&self.inner.client) = Some(register::Client {
            endpoint,
            user_agent,
            shutdown,
        });
        let list = self.inner.list.load_full();
        self.restart_registrations(&list);
    }

    /// Puts `list` in force (a reload). A trunk whose settings changed, or
    /// whose registration stopped (403, 404), registers afresh; the others
    /// keep theirs.
    pub fn set(&self, list: Vec<Trunk>) {
        let list: Vec<Arc<Trunk>> = list.into_iter().map(Arc::new).collect();
        {
            let mut states = lock(&self.inner.states);
            let mut channels = lock(&self.inner.channels);
            states.retain(|name, _| list.iter().any(|t| &t.name == name));
            for t in &list {
                channels.entry(t.name.clone()).or_default();
                if !t.register {
                    states.insert(t.name.clone(), RegState::NotRegistering);
                }
            }
        }
        self.inner.list.store(Arc::new(list.clone()));
        if lock(&self.inner.client).is_some() {
            self.restart_registrations(&list);
        }
    }

    fn restart_registrations(&self, list: &[Arc<Trunk>]) {
        let client = lock(&self.inner.client).clone();
        let Some(client) = client else { return };
        let mut running = lock(&self.inner.running);
        let states = lock(&self.inner.states).clone();
        running.retain(|name, r| {
            let keep = list
                .iter()
                .any(|t| t == &r.trunk && (t.register || t.qualify.is_some()))
                && !matches!(states.get(name), Some(RegState::Failed { retry: None, .. }));
            if !keep {
                r.stop.cancel();
            }
            keep
        });
        for trunk in list.iter().filter(|t| t.register || t.qualify.is_some()) {
            if running.contains_key(&trunk.name) {
                continue;
            }
            let stop = client.shutdown.child_token();
            let mut tasks = Vec::new();
            if trunk.register {
                self.set_state(&trunk.name, RegState::Registering);
                tasks.push(tokio::spawn(register::run(
                    client.clone(),
                    Arc::clone(trunk),
                    self.clone(),
                    stop.clone(),
                )));
            }
            if let Some(every) = trunk.qualify {
                tasks.push(tokio::spawn(qualify::run(
                    client.clone(),
                    Arc::clone(trunk),
                    every,
                    self.clone(),
                    stop.clone(),
                )));
            }
            running.insert(
                trunk.name.clone(),
                Running {
                    trunk: Arc::clone(trunk),
                    stop,
                    tasks,
                },
            );
        }
    }

    /// Stops every registration and ping (a shutdown, before the SIP
    /// endpoint stops): registered trunks send REGISTER with Expires: 0,
    /// waiting at most `within` for the carriers' answers.
    pub async fn stop(&self, within: Duration) {
        *lock(&self.inner.client) = None;
        let running: Vec<Running> = lock(&self.inner.running).drain().map(|(_, r)| r).collect();
        let mut tasks = Vec::new();
        for r in running {
            r.stop.cancel();
            tasks.extend(r.tasks);
        }
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(within, all).await;
    }

    /// Puts the STIR/SHAKEN verifier of inbound trunk calls in force
    /// (`None`: their `Identity` is not checked).
    pub fn set_verify(&self, verify: Option<StirVerify>) {
        self.inner.verify.store(verify.map(Arc::new));
    }

    /// The verifier in force.
    pub(crate) fn verify(&self) -> Option<Arc<StirVerify>> {
        self.inner.verify.load_full()
    }

    /// Resolves trunk host names with `dns` (`sip.nameservers`), or the
    /// system's configuration when `None`.
    pub fn set_dns(&self, dns: Option<Dns>) {
        self.inner.dns.store(dns.map(Arc::new));
    }

    /// Where to send to `trunk` (RFC 3263 §4.2, `dns.rs`): its address, or
    /// its name's SRV records, then A/AAAA. Without a usable DNS
    /// configuration, the system's `getaddrinfo` (A/AAAA only).
    pub async fn locate(&self, trunk: &Trunk) -> Result<SocketAddr, String> {
        if let Ok(ip) = trunk.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, trunk.port.unwrap_or(5060)));
        }
        let dns = match self.inner.dns.load_full() {
            Some(dns) => dns,
            None => match Dns::system() {
                Ok(dns) => {
                    let dns = Arc::new(dns);
                    self.inner.dns.store(Some(Arc::clone(&dns)));
                    dns
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no DNS resolver; getaddrinfo for {}", trunk.host);
                    return trunk.resolve_plain().await;
                }
            },
        };
        dns.locate(&trunk.host, trunk.port, trunk.transport).await
    }

    /// The trunk called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Trunk>> {
        self.inner
            .list
            .load()
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    /// The trunk an INVITE from `source` belongs to: its address is in the
    /// trunk's `match`, or it is the registrar the trunk registers with.
    pub fn identify(&self, source: IpAddr) -> Option<Arc<Trunk>> {
        let list = self.inner.list.load();
        if let Some(t) = list
            .iter()
            .find(|t| t.matches.iter().any(|n| n.contains(&source)))
        {
            return Some(Arc::clone(t));
        }
        let registrars = lock(&self.inner.registrars);
        list.iter()
            .find(|t| t.register && registrars.get(&t.name) == Some(&source))
            .cloned()
    }

    /// Every trunk with its registration and channel count, in config order.
    pub fn status(&self) -> Vec<TrunkStatus> {
        let states = lock(&self.inner.states);
        let channels = lock(&self.inner.channels);
        let reachable = lock(&self.inner.reachable);
        self.inner
            .list
            .load()
            .iter()
            .map(|t| TrunkStatus {
                trunk: Arc::clone(t),
                registration: states.get(&t.name).cloned().unwrap_or(if t.register {
                    RegState::Registering
                } else {
                    RegState::NotRegistering
                }),
                channels: channels
                    .get(&t.name)
                    .map_or(0, |c| c.load(Ordering::Relaxed)),
                reachable: t.qualify.and(reachable.get(&t.name).copied()),
            })
            .collect()
    }

    /// Takes one of `trunk`'s channels, or `None` when `max_channels` are in use.
    pub fn seize(&self, trunk: &Trunk) -> Option<ChannelSeized> {
        let counter = Arc::clone(
            lock(&self.inner.channels)
                .entry(trunk.name.clone())
                .or_default(),
        );
        let limit = trunk.max_channels.unwrap_or(u32::MAX);
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(ChannelSeized { counter })
    }

    pub(crate) fn set_state(&self, name: &str, state: RegState) {
        let registered = matches!(state, RegState::Registered { .. });
        metrics::gauge!("trunk_registered", "trunk" => name.to_owned()).set(if registered {
            1.0
        } else {
            0.0
        });
        lock(&self.inner.states).insert(name.to_owned(), state);
    }

    pub(crate) fn set_reachable(&self, name: &str, reachable: bool) {
        metrics::gauge!("trunk_reachable", "trunk" => name.to_owned()).set(if reachable {
            1.0
        } else {
            0.0
        });
        lock(&self.inner.reachable).insert(name.to_owned(), reachable);
    }

    pub(crate) fn status_of(&self, name: &str) -> Option<RegState> {
        lock(&self.inner.states).get(name).cloned()
    }

    pub(crate) fn set_registrar(&self, name: &str, addr: Option<IpAddr>) {
        let mut registrars = lock(&self.inner.registrars);
        match addr {
            Some(ip) => registrars.insert(name.to_owned(), ip),
            None => registrars.remove(name),
        };
    }
}

/// One call on a trunk; the channel is given back when this is dropped.
#[derive(Debug)]
pub struct ChannelSeized {
    counter: Arc<AtomicU32>,
}

impl Drop for ChannelSeized {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long to wait before trying a failed registration again: doubling
/// from 10 s to 10 min with the number of failures in a row.
pub(crate) fn backoff(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1 << failures.min(6));
    Duration::from_secs(secs.min(600))
}
