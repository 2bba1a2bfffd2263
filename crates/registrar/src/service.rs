//! One REGISTER, start to end (RFC 3261 §10.3 steps 1–8): check the AOR,
//! authenticate with digest (RFC 7616, RFC 8760), apply the binding rules,
//! commit to storage, answer 200 with every current contact. Failed
//! authentications feed the ban list; banned sources are not admitted.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use sip_net::{BoxFuture, EndpointHandle, Incoming, Service, Transport};
use sip_proto::digest::{
    self, Algorithm, DigestResponse, NonceCounts, NonceKey, Secret, Verdict, VerifyContext,
};
use sip_proto::header::Contact;
use sip_proto::{HeaderName, Headers, Method, Request, Response, Uri};
use storage::{Binding, LocationStore};

use crate::bans::{BanList, BanPolicy, Bans, Source};
use crate::bindings::{Policy, Refusal, RegisterRequest, apply};
use crate::commit::Committer;
use crate::faillog::{self, FailureLog};

/// Shards of the per-AOR lock: REGISTERs for one AOR take turns, others
/// run side by side. A turn lasts until the binding is durably committed
/// (a group commit: a millisecond or two), so two AORs that share a shard
/// cannot share a batch; with 4,096 shards 5,000 phones rarely meet (with
/// 64, the 16 or so AORs of a shard would each wait behind the others'
/// syncs).
const AOR_LOCKS: usize = 4096;
/// Nonces whose nonce-counts are remembered at once.
const NONCE_COUNT_CAPACITY: usize = 65_536;

/// An extension (a phone account) from the config.
#[derive(Debug, Clone)]
pub struct Extension {
    /// The extension number / user name, e.g. `1001`.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Dialplan context for calls it places.
    pub context: String,
    /// Its password or stored HA1s.
    pub secret: Secret,
}

/// Everything the registrar is configured with.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// The SIP domain: digest realm and the host of every AOR.
    pub domain: String,
    /// Challenge algorithms, offered in this order (one header each).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh.
    pub nonce_max_age: Duration,
    /// Expiry and contact limits.
    pub policy: Policy,
    /// When to ban a source.
    pub bans: BanPolicy,
}

/// One registration as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Registration {
    /// Address of record.
    pub aor: String,
    /// Contact URI.
    pub contact: String,
    /// Where the REGISTER came from (where the phone is reached).
    pub source: SocketAddr,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The phone's User-Agent.
    pub user_agent: Option<String>,
    /// Seconds until the binding expires.
    pub expires_in: u64,
    /// Whether the contact answered its last OPTIONS qualify ping; `None`
    /// until it has been pinged (or when qualify is off).
    pub reachable: Option<bool>,
    /// Round-trip time of the last answered ping, in milliseconds.
    pub rtt_ms: Option<u64>,
}

/// What the last qualify ping of a contact found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reachability {
    reachable: bool,
    rtt_ms: Option<u64>,
}

struct Inner {
    config: RegistrarConfig,
    /// Secrets by extension id; swapped whole when the config is reloaded.
    extensions: ArcSwap<HashMap<String, Secret>>,
    store: Arc<dyn LocationStore>,
    nonce_key: NonceKey,
    counts: Mutex<NonceCounts>,
    bans: Mutex<BanList>,
    /// Whether any ban may be active: lets `admit`, which runs for every
    /// packet, skip the ban list's lock in the common case of no bans.
    any_bans: AtomicBool,
    /// The same for user locks, checked for every request with credentials.
    any_locks: AtomicBool,
    aor_locks: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
    /// Qualify results by (AOR, contact); entries of bindings that have
    /// gone are dropped at the next qualify round.
    reachability: Mutex<HashMap<(String, String), Reachability>>,
    committer: Committer,
    /// Which failed authentications get an info line.
    failure_log: Mutex<FailureLog>,
    /// Told of each contact a REGISTER adds (see [`Registrar::on_register`]).
    on_register: OnceLock<RegisterObserver>,
}

/// What [`Registrar::on_register`] calls: the extension and the new binding.
pub type RegisterObserver = Arc<dyn Fn(&str, &Binding) + Send + Sync>;

/// The registrar service; cheap to clone.
#[derive(Clone)]
pub struct Registrar {
    inner: Arc<Inner>,
}

/// Whose challenge a request gets: a registrar's (401) or a proxy's (407).
/// A request the registrar did not authenticate: the response to send, and
/// why, in words for an admin (a call's trace shows them; never the
/// credentials themselves).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Denied {
    /// The challenge (401/407) or refusal (400/403) to send.
    pub response: Response,
    /// Why (`wrong password for extension "1001"; challenged again`).
    pub reason: String,
}

impl Denied {
    fn new(response: Response, reason: impl Into<String>) -> Denied {
        Denied {
            response,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Registrar,
    Proxy,
}

fn secrets(extensions: &[Extension]) -> HashMap<String, Secret> {
    extensions
        .iter()
        .map(|e| (e.id.clone(), e.secret.clone()))
        .collect()
}

/// The Retry-After (seconds) of a REGISTER refused because storage failed.
const STORAGE_RETRY_AFTER_S: u32 = 5;

/// Why a location lookup gave no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Storage failed to list the bindings.
    #[error("location lookup failed: {0}")]
    Storage(#[from] storage::Error),
    /// The blocking lookup task was cancelled (the server is stopping).
    #[error("location lookup stopped: the server is shutting down")]
    Stopped,
}

/// The unexpired bindings of `bindings`, highest `q` first (no `q` counts
/// as 1.0; equal `q` keep their stored order).
fn live_contacts(bindings: Vec<Binding>, now_ms: u64) -> Vec<Binding> {
    let mut live: Vec<Binding> = bindings
        .into_iter()
        .filter(|b| !b.is_expired(now_ms))
        .collect();
    live.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
    live
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Registrar {
    /// A registrar for `extensions`, keeping bindings in `store`. Fails only
    /// if its storage writer thread cannot be started.
    /// `nonce_secret` keys the stateless nonces; a random one per process
    /// is fine (nonces then go stale on restart, and phones simply retry).
    pub fn new(
        config: RegistrarConfig,
        extensions: &[Extension],
        store: Arc<dyn LocationStore>,
        nonce_secret: [u8; 32],
    ) -> std::io::Result<Registrar> {
        let max_age = config.nonce_max_age.as_secs();
        let committer = Committer::spawn(store.clone())?;
        let inner = Inner {
            extensions: ArcSwap::from_pointee(secrets(extensions)),
            store,
            nonce_key: NonceKey::new(nonce_secret),
            counts: Mutex::new(NonceCounts::new(NONCE_COUNT_CAPACITY, max_age)),
            bans: Mutex::new(BanList::new(config.bans.clone())),
            any_bans: AtomicBool::new(false),
            any_locks: AtomicBool::new(false),
            aor_locks: (0..AOR_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: RandomState::new(),
            reachability: Mutex::new(HashMap::new()),
            committer,
            failure_log: Mutex::new(FailureLog::new(faillog::DEFAULT_WINDOW)),
            on_register: OnceLock::new(),
            config,
        };
        let registrar = Registrar {
            inner: Arc::new(inner),
        };
        registrar.remember_holders();
        Ok(registrar)
    }

    /// Replaces the extensions (a config reload): a request being
    /// authenticated finishes against the old set, every later one uses
    /// the new. Registrations stay; one of an extension that is gone
    /// expires as usual, and cannot be renewed.
    pub fn set_extensions(&self, extensions: &[Extension]) {
        self.inner.extensions.store(Arc::new(secrets(extensions)));
    }

    /// Fills the ban list's record of who holds live registrations from
    /// where with the bindings already stored (they survive restarts).
    fn remember_holders(&self) {
        let Ok(all) = self.inner.store.list_all() else {
            return;
        };
        let now_ms = now_ms();
        let now = Instant::now();
        let mut bans = self
            .inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for b in all.iter().filter(|b| !b.is_expired(now_ms)) {
            let user = b
                .aor
                .split_once(':')
                .and_then(|(_, rest)| rest.split_once('@'))
                .map(|(user, _)| user);
            if let Some(user) = user {
                let until = now + Duration::from_millis(b.remaining_ms(now_ms));
                bans.registered(b.source.ip(), user, Some(until));
            }
        }
    }

    /// Sets the observer told of each contact a REGISTER adds (not of
    /// refreshes, queries or removals), once the binding is stored; it
    /// runs on the REGISTER's task and must not block (the binary hands
    /// the event to the dialplan's `on_register` hooks). Only the first
    /// observer set is kept; returns whether this one was.
    pub fn on_register(&self, observer: RegisterObserver) -> bool {
        self.inner.on_register.set(observer).is_ok()
    }

    /// Every live registration (for `GET /api/v1/registrations`).
    pub fn registrations(&self) -> Result<Vec<Registration>, storage::Error> {
        let now = now_ms();
        let all = self.inner.store.list_all()?;
        let reach = self
            .inner
            .reachability
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(all
            .into_iter()
            .filter(|b| !b.is_expired(now))
            .map(|b| Registration {
                reachable: reach
                    .get(&(b.aor.clone(), b.contact.clone()))
                    .map(|r| r.reachable),
                rtt_ms: reach
                    .get(&(b.aor.clone(), b.contact.clone()))
                    .and_then(|r| r.rtt_ms),
                expires_in: b.remaining_ms(now).div_ceil(1000),
                aor: b.aor,
                contact: b.contact,
                source: b.source,
                transport: b.transport,
                user_agent: b.user_agent,
            })
            .collect())
    }

    /// Removes expired bindings and forgotten ban entries; call every
    /// second or so. Returns how many bindings expired.
    pub fn sweep(&self) -> usize {
        let expired = match self.inner.store.sweep_expired(now_ms()) {
            Ok(expired) => expired,
            Err(e) => {
                tracing::error!(error = %e, "registrar: sweeping expired bindings failed");
                Vec::new()
            }
        };
        for b in &expired {
            tracing::info!(aor = %b.aor, contact = %b.contact, "registration expired");
        }
        let now = Instant::now();
        let (bans, locks) = {
            let mut bans = self
                .inner
                .bans
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            bans.sweep(now);
            let active = bans.active_bans(now);
            if active == 0 {
                self.inner.any_bans.store(false, Ordering::Relaxed);
            }
            let locks = bans.active_locks(now);
            if locks == 0 {
                self.inner.any_locks.store(false, Ordering::Relaxed);
            }
            (active, locks)
        };
        metrics::gauge!("registrar_bans_active").set(bans as f64);
        metrics::gauge!("registrar_user_locks_active").set(locks as f64);
        if let Ok(all) = self.inner.store.list_all() {
            metrics::gauge!("registrar_bindings").set(all.len() as f64);
        }
        expired.len()
    }

    /// Runs [`sweep`](Self::sweep) every second on a blocking thread until
    /// `stop` completes.
    pub async fn run_sweeper(self, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.sweep()).await;
                }
            }
        }
    }

    /// Pings every registered contact with OPTIONS every `interval`
    /// (sent to where its REGISTER came from, over the same transport, so
    /// it crosses the phone's NAT binding), marking contacts that stop
    /// answering unreachable; runs until `stop` completes.
    pub async fn run_qualify(
        self,
        endpoint: EndpointHandle,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            let me = self.clone();
            let Ok(Ok(bindings)) =
                tokio::task::spawn_blocking(move || me.inner.store.list_all()).await
            else {
                continue;
            };
            let now = now_ms();
            let live: Vec<Binding> = bindings
                .into_iter()
                .filter(|b| !b.is_expired(now))
                .collect();
            {
                let mut reach = self
                    .inner
                    .reachability
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                reach.retain(|(aor, contact), _| {
                    live.iter().any(|b| &b.aor == aor && &b.contact == contact)
                });
            }
            let mut pings = tokio::task::JoinSet::new();
            for binding in live {
                let me = self.clone();
                let endpoint = endpoint.clone();
                pings.spawn(async move { me.qualify_one(&endpoint, binding).await });
            }
            let mut unreachable = 0usize;
            while let Some(result) = pings.join_next().await {
                if matches!(result, Ok(false)) {
                    unreachable += 1;
                }
            }
            metrics::gauge!("registrar_unreachable_contacts").set(unreachable as f64);
        }
    }

    /// One OPTIONS ping; `true` if any response came back (RFC 3261 §11:
    /// even an error status shows the contact is there).
    async fn qualify_one(&self, endpoint: &EndpointHandle, binding: Binding) -> bool {
        let Ok(uri) = Uri::parse(&binding.contact) else {
            return false;
        };
        let transport = if binding.transport.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let domain = &self.inner.config.domain;
        let mut headers = Headers::new();
        for route in &binding.path {
            headers.push(HeaderName::Route, route.as_str());
        }
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(
            HeaderName::From,
            format!(
                "<sip:switchboard@{domain}>;tag={:016x}",
                rand::random::<u64>()
            ),
        );
        headers.push(HeaderName::To, format!("<{}>", binding.contact));
        headers.push(
            HeaderName::CallId,
            format!("{:016x}@{domain}", rand::random::<u64>()),
        );
        headers.push(HeaderName::CSeq, "1 OPTIONS");
        let request = Request {
            method: Method::Options,
            uri,
            headers,
            body: bytes::Bytes::new(),
        };
        let started = Instant::now();
        let result = endpoint.request(request, transport, binding.source).await;
        let reach = match &result {
            Ok(_) => Reachability {
                reachable: true,
                rtt_ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            },
            Err(_) => Reachability {
                reachable: false,
                rtt_ms: None,
            },
        };
        let key = (binding.aor.clone(), binding.contact.clone());
        let before = self
            .inner
            .reachability
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, reach);
        if before.map(|b| b.reachable) != Some(reach.reachable) {
            if reach.reachable {
                tracing::info!(aor = %binding.aor, contact = %binding.contact, "contact reachable");
            } else {
                tracing::warn!(aor = %binding.aor, contact = %binding.contact, source = %binding.source, "contact unreachable: no answer to OPTIONS");
            }
        }
        reach.reachable
    }

    fn challenge_as(&self, incoming: &Incoming, stale: bool, role: Role) -> Response {
        let (status, header) = match role {
            Role::Registrar => (401, HeaderName::WwwAuthenticate),
            Role::Proxy => (407, HeaderName::ProxyAuthenticate),
        };
        let mut resp = incoming.response(status);
        let now = now_ms() / 1000;
        // Bound to the source: a nonce answered from anywhere else is not
        // ours, so a spoofed request cannot make a failure count.
        let binding = Source::of(incoming.source.ip()).nonce_binding();
        for alg in &self.inner.config.algorithms {
            let nonce = self
                .inner
                .nonce_key
                .issue_for(now, rand::random(), &binding);
            let value =
                digest::challenge_value(&self.inner.config.domain, &nonce, *alg, None, stale);
            resp.headers.push(header.clone(), value);
        }
        resp
    }

    /// Authenticates a request that starts a call (RFC 3261 §22.3: 407 with
    /// Proxy-Authenticate, credentials in Proxy-Authorization) and returns
    /// the extension it came from. `Err` is the response to send: a
    /// challenge (the same for an unknown user and a wrong password), and
    /// failures count towards the source's ban like REGISTER's do.
    pub fn authenticate_call(&self, incoming: &Incoming) -> Result<String, Response> {
        self.authenticate_call_explained(incoming)
            .map_err(|denied| denied.response)
    }

    /// As [`authenticate_call`](Self::authenticate_call), with the reason
    /// an admin reads in a call's trace (`wrong password for extension
    /// "1001"`; never the credentials themselves).
    pub fn authenticate_call_explained(&self, incoming: &Incoming) -> Result<String, Denied> {
        self.verify(incoming, None, Role::Proxy)
    }

    fn refuse(&self, incoming: &Incoming, status: u16, reason: &str) -> Response {
        incoming.response_with_warning(status, &self.inner.config.domain, reason)
    }

    /// Step 3–4: authenticates the REGISTER as the user in its To URI.
    /// `Err` is the response to send (401 challenge or 403).
    fn authenticate(&self, incoming: &Incoming, user: &str) -> Result<(), Response> {
        self.verify(incoming, Some(user), Role::Registrar)
            .map(drop)
            .map_err(|denied| denied.response)
    }

    /// Checks the request's digest credentials for our realm; with `user`,
    /// they must be that user's (§10.3 step 4).
    ///
    /// In order: no credentials for our realm, or unreadable ones: a
    /// challenge. A digest `uri` that is not the Request-URI: 400 (RFC 7616
    /// §3.4.6), before any password is checked, so it neither counts nor
    /// tells a guess apart. A locked user: 403 whatever the password (the
    /// same for a name that is no extension, so locks do not reveal which
    /// users exist). Then the digest, against a nonce bound to the source:
    /// only a wrong answer to such a nonce counts towards bans and locks.
    fn verify(
        &self,
        incoming: &Incoming,
        user: Option<&str>,
        role: Role,
    ) -> Result<String, Denied> {
        let req = &incoming.request;
        let domain = &self.inner.config.domain;
        let credentials = match role {
            Role::Registrar => req.headers.authorization(),
            Role::Proxy => req.headers.proxy_authorization(),
        }
        .unwrap_or_default();
        let Some(cred) = credentials.iter().find(|c| {
            c.scheme.eq_ignore_ascii_case("Digest")
                && c.params
                    .get("realm")
                    .flatten()
                    .is_some_and(|r| r.trim_matches('"') == domain)
        }) else {
            return Err(Denied::new(
                self.challenge_as(incoming, false, role),
                format!(
                    "no credentials for realm {domain:?} yet (challenged; a phone answers with its password)"
                ),
            ));
        };
        let ip = incoming.source.ip();
        let response = match DigestResponse::from_credentials(cred) {
            Ok(r) => r,
            Err(failure) => {
                self.not_counted(ip, &failure.to_string());
                return Err(Denied::new(
                    self.challenge_as(incoming, false, role),
                    format!("unreadable credentials ({failure}); challenged again"),
                ));
            }
        };
        if !digest::uri_matches(&response.uri, &req.uri) {
            self.not_counted(ip, "digest uri is not the Request-URI");
            let reason = "the digest uri does not match the Request-URI";
            return Err(Denied::new(self.refuse(incoming, 400, reason), reason));
        }
        if self.is_locked(&response.username) {
            tracing::debug!(source = %ip, user = %response.username, "refused: user locked");
            self.log_failure(
                incoming,
                &response.username,
                &format!(
                    "extension locked after too many failed authentications (DELETE /api/v1/bans/user/{} lifts it)",
                    response.username
                ),
            );
            return Err(Denied::new(
                self.refuse(
                    incoming,
                    403,
                    "too many failed authentications for this user; try again later",
                ),
                format!(
                    "extension {:?} is locked after too many failed authentications (DELETE /api/v1/bans/user/{} lifts it)",
                    response.username, response.username
                ),
            ));
        }
        let binding = Source::of(ip).nonce_binding();
        let ctx = VerifyContext::new(
            domain,
            &self.inner.nonce_key,
            self.inner.config.nonce_max_age.as_secs(),
        )
        .for_client(&binding);
        let verdict = {
            let mut counts = self
                .inner
                .counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            digest::verify(
                cred,
                req.method.as_str(),
                &ctx,
                &**self.inner.extensions.load(),
                &mut counts,
                now_ms() / 1000,
            )
        };
        match verdict {
            Verdict::Ok {
                username,
                algorithm,
                ..
            } => {
                if !self.inner.config.algorithms.contains(&algorithm.hash) {
                    self.not_counted(ip, "algorithm not offered");
                    return Err(Denied::new(
                        self.challenge_as(incoming, false, role),
                        "the credentials use a digest algorithm not offered; challenged again",
                    ));
                }
                if user.is_some_and(|user| username != user) {
                    // Authenticated, but as someone else (§10.3 step 4):
                    // the password was right, so no guess.
                    self.not_counted(ip, "credentials for another user");
                    if let Some(user) = user {
                        self.log_failure(
                            incoming,
                            user,
                            &format!("the credentials are extension {username}'s, not {user}'s"),
                        );
                    }
                    let reason = "credentials do not match the To URI";
                    return Err(Denied::new(self.refuse(incoming, 403, reason), reason));
                }
                Ok(username)
            }
            Verdict::Stale { .. } => Err(Denied::new(
                self.challenge_as(incoming, true, role),
                "the nonce has expired (stale); challenged again",
            )),
            Verdict::Failed(failure) => {
                // Unknown user and wrong password look the same on the
                // wire: a fresh challenge, nothing else.
                let reason = match &failure {
                    digest::Failure::UnknownUser(_) => "unknown extension".to_owned(),
                    digest::Failure::WrongResponse(_) => "wrong password".to_owned(),
                    other => other.to_string(),
                };
                if failure.is_guess() {
                    self.log_failure(incoming, &response.username, &reason);
                    self.failed(ip, &response.username, &failure.to_string());
                } else {
                    self.not_counted(ip, &failure.to_string());
                }
                Err(Denied::new(
                    self.challenge_as(incoming, false, role),
                    format!(
                        "{reason} for extension {:?}; challenged again",
                        response.username
                    ),
                ))
            }
        }
    }

    /// One info line for a failed authentication, so that "why won't this
    /// phone register?" has an answer in the log: source, extension,
    /// reason. At most one per source and extension every
    /// [`faillog::DEFAULT_WINDOW`]; the next says how many were held back.
    fn log_failure(&self, incoming: &Incoming, user: &str, reason: &str) {
        let held_back = self
            .inner
            .failure_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(incoming.source.ip(), user, Instant::now());
        let Some(held_back) = held_back else {
            return;
        };
        let method = incoming.request.method.as_str();
        let what = if method == "REGISTER" {
            "registration"
        } else {
            "call authentication"
        };
        let more = if held_back > 0 {
            format!(
                " ({held_back} more such failures in the last {} s not logged)",
                faillog::DEFAULT_WINDOW.as_secs()
            )
        } else {
            String::new()
        };
        let source = incoming.source;
        tracing::info!(
            %source,
            extension = user,
            reason,
            method,
            held_back,
            "{what} failed: {method} from {source} for extension {user:?}: {reason}{more}"
        );
    }

    fn is_locked(&self, user: &str) -> bool {
        if !self.inner.any_locks.load(Ordering::Relaxed) {
            return false;
        }
        self.inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_locked(user, Instant::now())
    }

    /// A failure that guessed nothing (see [`digest::Failure::is_guess`]): logged
    /// and counted in a metric, never towards a ban.
    fn not_counted(&self, ip: IpAddr, why: &str) {
        metrics::counter!("registrar_auth_failures_total").increment(1);
        metrics::counter!("registrar_auth_failures_ignored_total").increment(1);
        tracing::debug!(source = %ip, reason = why, "authentication failed (not counted towards bans)");
    }

    /// A wrong guess for `user` from `ip`: counts towards banning the
    /// source and locking the user.
    fn failed(&self, ip: IpAddr, user: &str, why: &str) {
        metrics::counter!("registrar_auth_failures_total").increment(1);
        tracing::debug!(source = %ip, reason = why, "authentication failed");
        let now = Instant::now();
        let (outcome, active_bans, active_locks) = {
            let mut bans = self
                .inner
                .bans
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let outcome = bans.record_failure(ip, user, now);
            (outcome, bans.active_bans(now), bans.active_locks(now))
        };
        let policy = &self.inner.config.bans;
        if outcome.banned {
            metrics::gauge!("registrar_bans_active").set(active_bans as f64);
            self.inner.any_bans.store(true, Ordering::Relaxed);
            let source = Source::of(ip);
            tracing::warn!(
                %source,
                failures = policy.after_failures,
                ban_secs = policy.ban_time.as_secs(),
                "banned {source} for {} s after {} failed authentications; DELETE /api/v1/bans/{source} lifts it",
                policy.ban_time.as_secs(),
                policy.after_failures,
            );
        }
        if outcome.locked {
            metrics::gauge!("registrar_user_locks_active").set(active_locks as f64);
            self.inner.any_locks.store(true, Ordering::Relaxed);
            tracing::warn!(
                user,
                source = %ip,
                failures = policy.after_failures,
                ban_secs = policy.ban_time.as_secs(),
                "locked user {user:?} for {} s after {} failed authentications (last from {ip}); \
                 even the right password gets 403 until then; DELETE /api/v1/bans/user/{user} lifts it",
                policy.ban_time.as_secs(),
                policy.after_failures,
            );
        }
    }

    /// Every active source ban and user lock (for `GET /api/v1/bans`).
    pub fn bans(&self) -> Bans {
        self.inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list(Instant::now())
    }

    /// Lifts the ban of `ip`'s source (its /64 for IPv6); `true` if it was
    /// banned.
    pub fn unban(&self, ip: IpAddr) -> bool {
        let lifted = self
            .inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unban(ip, Instant::now());
        if lifted {
            tracing::info!(source = %Source::of(ip), "ban lifted by the admin API");
        }
        lifted
    }

    /// The AOR `ext` names: `ext` itself if it is a `sip:` URI, else
    /// `sip:EXT@DOMAIN`.
    pub fn aor_of(&self, ext: &str) -> String {
        if ext.starts_with("sip:") || ext.starts_with("sips:") {
            ext.to_owned()
        } else {
            format!("sip:{ext}@{}", self.inner.config.domain)
        }
    }

    /// The live contacts of `ext` (an extension id or AOR) at `now_ms`,
    /// highest `q` first (RFC 3261 §16.6): the PBX's one location lookup.
    /// Reads storage on the calling thread; on a runtime thread use
    /// [`contacts`](Self::contacts) when [`LocationStore::reads_block`].
    pub fn contacts_blocking(
        &self,
        ext: &str,
        now_ms: u64,
    ) -> Result<Vec<Binding>, storage::Error> {
        Ok(live_contacts(
            self.inner.store.list(&self.aor_of(ext))?,
            now_ms,
        ))
    }

    /// [`contacts_blocking`](Self::contacts_blocking) at the current time,
    /// off the runtime's threads when the store reads from disk.
    pub async fn contacts(&self, ext: &str) -> Result<Vec<Binding>, LookupError> {
        if !self.inner.store.reads_block() {
            return Ok(self.contacts_blocking(ext, now_ms())?);
        }
        let (registrar, ext) = (self.clone(), ext.to_owned());
        tokio::task::spawn_blocking(move || registrar.contacts_blocking(&ext, now_ms()))
            .await
            .map_err(|_| LookupError::Stopped)?
            .map_err(LookupError::Storage)
    }

    /// Removes every binding of `ext` (an extension or AOR), taking the
    /// AOR's turn like a REGISTER does; returns how many there were (for
    /// `DELETE /api/v1/registrations/{aor}`). The phones register again at
    /// their next refresh.
    pub async fn unregister(&self, ext: &str) -> Result<usize, String> {
        let aor = self.aor_of(ext);
        let shard = (self.inner.hasher.hash_one(&aor) as usize) % AOR_LOCKS;
        let Some(lock) = self.inner.aor_locks.get(shard) else {
            return Err("registrar lock missing".to_owned());
        };
        let _turn = lock.lock().await;
        let store = self.inner.store.clone();
        let listed = if store.reads_block() {
            let (store, aor) = (store.clone(), aor.clone());
            tokio::task::spawn_blocking(move || store.list(&aor))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        } else {
            store.list(&aor).map_err(|e| e.to_string())?
        };
        let now = now_ms();
        let live = listed.iter().filter(|b| !b.is_expired(now)).count();
        if listed.is_empty() {
            return Ok(0);
        }
        if store.blocks() {
            self.inner.committer.commit(aor.clone(), Vec::new()).await?;
        } else {
            store
                .replace_aor(&aor, &[])
                .map(drop)
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(%aor, contacts = live, "registrations removed by the admin API");
        Ok(live)
    }

    /// Lifts the lock of `user`; `true` if it was locked.
    pub fn unlock(&self, user: &str) -> bool {
        let lifted = self
            .inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unlock(user, Instant::now());
        if lifted {
            tracing::info!(user, "user lock lifted by the admin API");
        }
        lifted
    }

    async fn register(self, incoming: Incoming) -> Response {
        let req = &incoming.request;
        // Step 5: the AOR comes from To and must be a SIP URI of our domain.
        let to = match req.headers.to() {
            Ok(to) => to,
            Err(e) => return self.refuse(&incoming, 400, &e.to_string()),
        };
        let Uri::Sip(to_uri) = &to.uri else {
            return self.refuse(
                &incoming,
                400,
                "the To URI (address of record) must be sip: or sips:",
            );
        };
        let Some(user) = to_uri.user.clone() else {
            return self.refuse(&incoming, 400, "the To URI has no user part");
        };
        if let Err(challenge) = self.authenticate(&incoming, &user) {
            return challenge;
        }
        let contact = match req.headers.get(&HeaderName::Contact) {
            None => None,
            Some(_) => match req.headers.contact() {
                Ok(c) => Some(c),
                Err(e) => return self.refuse(&incoming, 400, &e.to_string()),
            },
        };
        if let Some(Contact::Star) = &contact
            && req.headers.get_all(&HeaderName::Contact).count() > 1
        {
            return self.refuse(&incoming, 400, "Contact: * must be the only Contact");
        }
        let expires = match req.headers.expires() {
            Ok(e) => e,
            Err(e) => return self.refuse(&incoming, 400, &e.to_string()),
        };
        let path: Vec<String> = req
            .headers
            .path()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        let aor = format!("sip:{user}@{}", self.inner.config.domain);
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let cseq = req.cseq().map_or(0, |c| c.seq);
        let user_agent = req.headers.get(&HeaderName::UserAgent).map(str::to_owned);
        let transport = incoming.transport.to_string();
        let source = incoming.source;

        let shard = (self.inner.hasher.hash_one(&aor) as usize) % AOR_LOCKS;
        let Some(lock) = self.inner.aor_locks.get(shard) else {
            return self.refuse(&incoming, 500, "registrar lock missing");
        };
        let _turn = lock.lock().await;
        let store = self.inner.store.clone();
        // The location table is in memory for both shipped backends (redb
        // keeps it beside its file), so this is no thread hop for them.
        let existing = if store.reads_block() {
            let (store, aor) = (store.clone(), aor.clone());
            match tokio::task::spawn_blocking(move || store.list(&aor)).await {
                Ok(listed) => listed.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            store.list(&aor).map_err(|e| e.to_string())
        };
        let existing = match existing {
            Ok(existing) => existing,
            Err(e) => return self.storage_failed(&incoming, &aor, &e),
        };
        let register = RegisterRequest {
            aor: &aor,
            contact: contact.as_ref(),
            expires,
            call_id: &call_id,
            cseq,
            path,
            source,
            transport: &transport,
            user_agent: user_agent.as_deref(),
            now_ms: now_ms(),
        };
        let now = register.now_ms;
        let set = match apply(&existing, &register, &self.inner.config.policy) {
            Ok(set) => set,
            Err(refusal) => return self.refused(&incoming, &refusal),
        };
        // Only write when something changed (a query does not).
        if register.contact.is_some() || existing.iter().any(|b| b.is_expired(now)) {
            let stored = if store.blocks() {
                self.inner.committer.commit(aor.clone(), set.clone()).await
            } else {
                store
                    .replace_aor(&aor, &set)
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = stored {
                return self.storage_failed(&incoming, &aor, &e);
            }
        }
        // Who holds live registrations from where: a source holding them
        // is not banned for another user's failures.
        let from_here = Source::of(source.ip());
        let until = set
            .iter()
            .filter(|b| Source::of(b.source.ip()) == from_here)
            .map(|b| b.remaining_ms(now))
            .max()
            .filter(|ms| *ms > 0)
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .registered(source.ip(), &user, until);
        tracing::debug!(%aor, contacts = set.len(), %source, "REGISTER ok");
        if let Some(observer) = self.inner.on_register.get() {
            let added = set.iter().filter(|b| {
                !b.is_expired(now)
                    && !existing
                        .iter()
                        .any(|e| e.contact == b.contact && !e.is_expired(now))
            });
            for binding in added {
                observer(&user, binding);
            }
        }
        let mut resp = incoming.response(200);
        for b in &set {
            resp.headers
                .push(HeaderName::Contact, contact_value(b, now));
        }
        for p in req.headers.get_all(&HeaderName::Path) {
            resp.headers.push(HeaderName::Path, p);
        }
        resp
    }

    /// The answer when storage fails (a database outage, a full disk):
    /// 503 with Retry-After, so the phone tries again shortly and, with
    /// several registrars, another one meanwhile (RFC 3261 §21.5.4); the
    /// storage recovers by itself when the database returns.
    fn storage_failed(&self, incoming: &Incoming, aor: &str, error: &str) -> Response {
        tracing::error!(%aor, %error, "registrar: storage failed");
        let mut resp = self.refuse(incoming, 503, "registration could not be stored");
        resp.headers
            .push(HeaderName::RetryAfter, STORAGE_RETRY_AFTER_S.to_string());
        resp
    }

    fn refused(&self, incoming: &Incoming, refusal: &Refusal) -> Response {
        let mut resp = self.refuse(incoming, refusal.status(), &refusal.reason());
        if let Refusal::IntervalTooBrief { min_expires } = refusal {
            resp.headers
                .push(HeaderName::MinExpires, min_expires.to_string());
        }
        resp
    }
}

/// `<uri>;expires=N` (and `q`) for a 200 OK (§10.3 step 8).
fn contact_value(b: &Binding, now: u64) -> String {
    let mut v = format!(
        "<{}>;expires={}",
        b.contact,
        b.remaining_ms(now).div_ceil(1000)
    );
    if let Some(q) = b.q {
        v.push_str(&format!(";q={}.{:03}", q / 1000, q % 1000));
    }
    v
}

impl Service for Registrar {
    fn methods(&self) -> Vec<Method> {
        vec![Method::Register]
    }

    fn supported(&self) -> Vec<String> {
        vec!["path".to_owned()]
    }

    fn admit(&self, source: IpAddr) -> bool {
        if !self.inner.any_bans.load(Ordering::Relaxed) {
            return true;
        }
        !self
            .inner
            .bans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_banned(source, Instant::now())
    }

    fn handle(&self, incoming: Incoming) -> BoxFuture<Response> {
        Box::pin(self.clone().register(incoming))
    }
}

#[cfg(test)]
mod lookup_tests {
    use super::*;

    fn binding(contact: &str, expires_at_ms: u64, q: Option<u16>) -> Binding {
        Binding {
            aor: "sip:1001@pbx.test".into(),
            contact: contact.into(),
            expires_at_ms,
            q,
            call_id: "c".into(),
            cseq: 1,
            path: Vec::new(),
            source: "127.0.0.5:5062".parse().unwrap(),
            transport: "udp".into(),
            user_agent: None,
            instance: None,
            reg_id: None,
            registered_at_ms: 0,
        }
    }

    #[test]
    fn live_contacts_drop_the_expired_and_put_the_highest_q_first() {
        let now = 1_000_000;
        let listed = vec![
            binding("sip:a@127.0.0.5", now + 10, Some(500)),
            binding("sip:gone@127.0.0.5", now - 1, Some(1000)),
            binding("sip:b@127.0.0.5", now + 10, None),
            binding("sip:c@127.0.0.5", now + 10, Some(800)),
        ];
        let live: Vec<String> = live_contacts(listed, now)
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(
            live,
            ["sip:b@127.0.0.5", "sip:c@127.0.0.5", "sip:a@127.0.0.5"]
        );
    }
}
