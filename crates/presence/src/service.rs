//! SUBSCRIBE, start to end (RFC 6665 §4.2.1, §4.2.2): authenticate the
//! subscriber (digest, as for INVITE), check the package (489), the target
//! (404) and the authorizer (403), settle the expiry (423 below the
//! minimum, clamped to the maximum), create, refresh or end the
//! subscription, and send NOTIFYs: the full state at once, again on every
//! change with a growing version, and `terminated` at the end. NOTIFYs of
//! one subscription go out one at a time; a change that arrives while one
//! is in flight replaces any waiting one (each carries the full state). A
//! subscriber that answers 408/481 (or anything but 2xx) or does not answer
//! at all is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pbx::{MailboxCounts, MailboxListener, Mailboxes, NewMessage, Registry};
use serde::Serialize;
use sip_net::{BoxFuture, EndpointHandle, Incoming, Service, Transport};
use sip_proto::{HeaderName, Headers, Method, Request, Response, Uri};

use crate::body::{self, DialogView};
use crate::calls::{Directory, Tracker};

/// The event packages served (RFC 6665 §7.2), as listed in `Allow-Events`.
const ALLOW_EVENTS: &str = "dialog, message-summary, presence";

/// An event package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Package {
    /// `dialog` (RFC 4235): busy lamps.
    Dialog,
    /// `message-summary` (RFC 3842): the message-waiting light.
    MessageSummary,
    /// `presence` (RFC 3856).
    Presence,
}

impl Package {
    /// The package of an `Event` header's value, if it is one we serve.
    pub fn parse(name: &str) -> Option<Package> {
        match name.to_ascii_lowercase().as_str() {
            "dialog" => Some(Package::Dialog),
            "message-summary" => Some(Package::MessageSummary),
            "presence" => Some(Package::Presence),
            _ => None,
        }
    }

    /// Its name in `Event`.
    pub fn as_str(self) -> &'static str {
        match self {
            Package::Dialog => "dialog",
            Package::MessageSummary => "message-summary",
            Package::Presence => "presence",
        }
    }

    /// The Content-Type of its NOTIFY bodies.
    pub fn content_type(self) -> &'static str {
        match self {
            Package::Dialog => "application/dialog-info+xml",
            Package::MessageSummary => "application/simple-message-summary",
            Package::Presence => "application/pidf+xml",
        }
    }
}

/// Limits and defaults of subscriptions.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// Our SIP domain (the host of every entity URI).
    pub domain: String,
    /// Expiry when a SUBSCRIBE has no `Expires`, seconds.
    pub default_expires: u32,
    /// Shortest expiry accepted (shorter gets 423 with `Min-Expires`).
    pub min_expires: u32,
    /// Longest expiry granted (longer is cut to this).
    pub max_expires: u32,
    /// Most subscriptions one extension may hold.
    pub max_per_subscriber: usize,
    /// Most subscriptions in all.
    pub max_total: usize,
}

impl PresenceConfig {
    /// The defaults for `domain`: one hour by default and at most, a
    /// minute at least, 200 per phone (a BLF sidecar has up to 100 keys,
    /// times two packages), 50,000 in all.
    pub fn new(domain: &str) -> PresenceConfig {
        PresenceConfig {
            domain: domain.to_owned(),
            default_expires: 3600,
            min_expires: 60,
            max_expires: 3600,
            max_per_subscriber: 200,
            max_total: 50_000,
        }
    }
}

/// Decides whether an extension may watch another (the dialplan's
/// `on_subscribe` hook in the binary).
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `ext` may subscribe to `event` of `target`.
    fn allowed(&self, ext: &str, event: &str, target: &str) -> BoxFuture<bool>;
}

/// Lets every extension watch every extension of the office.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn allowed(&self, _ext: &str, _event: &str, _target: &str) -> BoxFuture<bool> {
        Box::pin(async { true })
    }
}

/// Why [`Presence::set_lamp`] refused a lamp.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LampError {
    /// The name is a configured extension, whose lamp follows its calls.
    #[error(
        "{0} is an extension, whose lamp follows its calls: give the lamp a name that is no extension (a feature code such as *28)"
    )]
    Extension(String),
}

/// One subscription as `GET /api/v1/subscriptions` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The extension that subscribed.
    pub subscriber: String,
    /// The event package.
    pub event: &'static str,
    /// The watched extension.
    pub target: String,
    /// Seconds until it expires.
    pub expires: u64,
    /// The version of the last state sent (NOTIFYs sent so far).
    pub version: u32,
}

/// What the next NOTIFY of a subscription reports.
#[derive(Debug, Clone)]
enum Content {
    Dialogs(Arc<[DialogView]>),
    Mailbox(MailboxCounts),
    Presence { open: bool, busy: bool },
}

/// A NOTIFY waiting to go out: the state, and the reason if it is the last.
#[derive(Debug, Clone)]
struct Pending {
    content: Content,
    end: Option<&'static str>,
}

/// The dialog a subscription's NOTIFYs are sent in (RFC 6665 §4.1.2.1:
/// our From is the SUBSCRIBE's To with our tag, our To its From).
#[derive(Debug)]
struct NotifyDialog {
    call_id: Box<str>,
    local: Box<str>,
    remote: Box<str>,
    target_uri: Box<str>,
    event: Box<str>,
    dest: SocketAddr,
    transport: Transport,
}

/// One subscription. Strings are boxed (no spare capacity): with the map
/// entries and the dialog this is about 700 bytes for a typical phone.
#[derive(Debug)]
struct Subscription {
    id: u64,
    subscriber: Box<str>,
    package: Package,
    target: Box<str>,
    expires_at: Instant,
    version: u32,
    cseq: u32,
    dialog: Arc<NotifyDialog>,
    pending: Option<Pending>,
    sending: bool,
    ending: bool,
}

#[derive(Debug, Default)]
struct Table {
    subs: HashMap<Box<str>, Subscription>,
    by_target: HashMap<Box<str>, Vec<Box<str>>>,
    per_subscriber: HashMap<Box<str>, usize>,
    next_id: u64,
}

impl Table {
    fn insert(&mut self, key: Box<str>, sub: Subscription) {
        // One ending under the same key (an unsubscribe still being
        // notified) gives way.
        if let Some(old) = self.subs.get(&key).map(|s| s.id) {
            self.remove(&key, old);
        }
        self.by_target
            .entry(sub.target.clone())
            .or_default()
            .push(key.clone());
        *self
            .per_subscriber
            .entry(sub.subscriber.clone())
            .or_default() += 1;
        self.subs.insert(key, sub);
    }

    fn remove(&mut self, key: &str, id: u64) -> bool {
        if self.subs.get(key).is_none_or(|s| s.id != id) {
            return false;
        }
        let Some(sub) = self.subs.remove(key) else {
            return false;
        };
        if let Some(keys) = self.by_target.get_mut(&sub.target) {
            keys.retain(|k| &**k != key);
            if keys.is_empty() {
                self.by_target.remove(&sub.target);
            }
        }
        if let Some(n) = self.per_subscriber.get_mut(&sub.subscriber) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_subscriber.remove(&sub.subscriber);
            }
        }
        true
    }

    fn live(&self) -> usize {
        self.subs.values().filter(|s| !s.ending).count()
    }
}

struct Inner {
    config: PresenceConfig,
    endpoint: EndpointHandle,
    registrar: registrar::Registrar,
    directory: Arc<dyn Directory>,
    authorizer: Arc<dyn Authorizer>,
    mailboxes: Arc<dyn Mailboxes>,
    runtime: tokio::runtime::Handle,
    table: Mutex<Table>,
    tracker: Mutex<Tracker>,
    /// The live calls, once [`Presence::run`] follows them: a dormant
    /// tracker is brought up to date from them.
    registry: std::sync::OnceLock<Arc<Registry>>,
    /// The feed a waking tracker opened (before reading the live calls it
    /// resyncs from), for [`Presence::run`] to follow from then on: the
    /// changes it holds are all newer than that state.
    woken_feed: Mutex<Option<tokio::sync::broadcast::Receiver<pbx::CallChange>>>,
    /// Tells [`Presence::run`] that `woken_feed` is there.
    woken: tokio::sync::Notify,
    /// Counts voicemail reported, newer than what `mailboxes` would say.
    counts: Mutex<HashMap<String, MailboxCounts>>,
    /// Whether each watched extension was last seen registered.
    registered: Mutex<HashMap<String, bool>>,
    /// The lamps scripts set ([`Presence::set_lamp`]): on (busy) or off.
    lamps: Mutex<HashMap<String, bool>>,
}

/// The subscription service; cheap to clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these; a poisoned one is intact.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Presence {
    /// A service answering SUBSCRIBE for `directory`'s extensions,
    /// authenticating with `registrar` and asking it where the phones are
    /// (its location lookup), reading first mailbox counts from `mailboxes`, sending
    /// NOTIFYs through `endpoint`. Must be made inside a tokio runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: PresenceConfig,
        endpoint: EndpointHandle,
        registrar: registrar::Registrar,
        directory: Arc<dyn Directory>,
        authorizer: Arc<dyn Authorizer>,
        mailboxes: Arc<dyn Mailboxes>,
    ) -> Presence {
        Presence {
            inner: Arc::new(Inner {
                config,
                endpoint,
                registrar,
                directory,
                authorizer,
                mailboxes,
                runtime: tokio::runtime::Handle::current(),
                table: Mutex::new(Table::default()),
                tracker: Mutex::new(Tracker::new()),
                registry: std::sync::OnceLock::new(),
                woken_feed: Mutex::new(None),
                woken: tokio::sync::Notify::new(),
                counts: Mutex::new(HashMap::new()),
                registered: Mutex::new(HashMap::new()),
                lamps: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Every live subscription, by subscriber then target.
    pub fn list(&self) -> Vec<SubscriptionInfo> {
        let now = Instant::now();
        let table = lock(&self.inner.table);
        let mut all: Vec<SubscriptionInfo> = table
            .subs
            .values()
            .filter(|s| !s.ending)
            .map(|s| SubscriptionInfo {
                subscriber: s.subscriber.to_string(),
                event: s.package.as_str(),
                target: s.target.to_string(),
                expires: s.expires_at.saturating_duration_since(now).as_secs(),
                version: s.version,
            })
            .collect();
        all.sort_by(|a, b| {
            (&a.subscriber, &a.target, a.event).cmp(&(&b.subscriber, &b.target, b.event))
        });
        all
    }

    /// Lights (`on`, shown as a `confirmed` dialog, busy) or clears (a
    /// `terminated` dialog, idle) the lamp `name`, one that no call drives:
    /// a script's state such as night mode, watched by a BLF key on `name`
    /// like an extension (same `on_subscribe` rule). Its watchers get a
    /// NOTIFY when it changes. Lamps live as long as the service, across
    /// dialplan reloads; a name that is an extension is refused.
    pub fn set_lamp(&self, name: &str, on: bool) -> Result<(), LampError> {
        if self.inner.directory.contains(name) {
            return Err(LampError::Extension(name.to_owned()));
        }
        let before = lock(&self.inner.lamps).insert(name.to_owned(), on);
        if before == Some(on) {
            return Ok(());
        }
        tracing::info!(lamp = %name, state = if on { "busy" } else { "idle" }, "lamp set");
        self.notify_target(
            name,
            Package::Dialog,
            &Content::Dialogs(self.lamp_dialogs(name, on)),
        );
        self.notify_target(
            name,
            Package::Presence,
            &Content::Presence {
                open: true,
                busy: on,
            },
        );
        Ok(())
    }

    /// Whether the lamp `name` a script set is on; `None` if none set it.
    pub fn lamp(&self, name: &str) -> Option<bool> {
        lock(&self.inner.lamps).get(name).copied()
    }

    /// What a lamp a script set shows: one dialog, `confirmed` while on,
    /// `terminated` while off.
    fn lamp_dialogs(&self, name: &str, on: bool) -> Arc<[DialogView]> {
        let domain = &self.inner.config.domain;
        Arc::from(vec![DialogView {
            call: format!("lamp:{name}"),
            call_id: format!("lamp-{name}@{domain}"),
            local_tag: None,
            remote_tag: None,
            state: if on {
                body::DialogState::Confirmed
            } else {
                body::DialogState::Terminated
            },
            direction: body::Direction::Recipient,
            remote: format!("sip:{name}@{domain}"),
            remote_name: None,
        }])
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        lock(&self.inner.table).live()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Follows calls in `registry` (lamps, presence) and expires
    /// subscriptions, until `stop` completes.
    pub async fn run(self, registry: Arc<Registry>, stop: impl std::future::Future<Output = ()>) {
        // `None` while the tracker sleeps: with no receiver the registry
        // sends nothing either.
        let mut feed = Some(registry.watch());
        let _ = self.inner.registry.set(Arc::clone(&registry));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        tokio::pin!(stop);
        loop {
            if let Some(woken) = lock(&self.inner.woken_feed).take() {
                feed = Some(woken);
            }
            let next = async {
                match feed.as_mut() {
                    Some(feed) => feed.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                () = self.inner.woken.notified() => {}
                change = next => match change {
                    Ok(change) => {
                        if !self.on_call_change(&change) {
                            feed = None;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "subscriptions: fell behind the call feed; lamps resynchronised from the live calls");
                        let live = registry.list();
                        let changes = lock(&self.inner.tracker).resync(
                            &live,
                            &*self.inner.directory,
                            &self.inner.config.domain,
                        );
                        self.lamps_changed(changes);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    ticks += 1;
                    self.expire();
                    if ticks.is_multiple_of(5) {
                        let me = self.clone();
                        let _ = tokio::task::spawn_blocking(move || me.check_registrations()).await;
                    }
                    metrics::gauge!("subscriptions").set(self.len() as f64);
                }
            }
        }
    }

    /// The lamp tracker, woken first if it was asleep: a new feed is
    /// opened for [`run`](Self::run), then the tracker is resynced from the
    /// live calls (so every change on the new feed is newer than what it
    /// holds; the old feed, closed when it fell asleep, held only older).
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        let mut tracker = lock(&self.inner.tracker);
        if tracker.is_dormant()
            && let Some(registry) = self.inner.registry.get()
        {
            let feed = registry.watch();
            // Nobody was watching, so there is nobody to tell what changed:
            // a new subscriber gets this state as its first NOTIFY.
            let _ = tracker.resync(
                &registry.list(),
                &*self.inner.directory,
                &self.inner.config.domain,
            );
            *lock(&self.inner.woken_feed) = Some(feed);
            self.inner.woken.notify_one();
        }
        tracker
    }

    /// Applies a change from the feed; `false` when the tracker fell (or
    /// is) asleep, and the feed can be closed.
    fn on_call_change(&self, change: &pbx::CallChange) -> bool {
        // Lock order: tracker, then table (nothing takes them the other way).
        let mut tracker = lock(&self.inner.tracker);
        if tracker.is_dormant() {
            // From a feed opened before the tracker fell asleep: older than
            // what a waking resync reads.
            return false;
        }
        if lock(&self.inner.table).subs.is_empty() {
            // Nobody watches a lamp: nothing to follow. A subscription
            // made from now on finds the tracker asleep and wakes it from
            // the live calls; one made before this check is in the table.
            tracker.sleep();
            return false;
        }
        let watched = |ext: &str| {
            lock(&self.inner.table)
                .by_target
                .get(ext)
                .is_some_and(|keys| !keys.is_empty())
        };
        let changes = tracker.apply(
            change,
            &*self.inner.directory,
            &self.inner.config.domain,
            &watched,
        );
        drop(tracker);
        self.lamps_changed(changes);
        true
    }

    fn lamps_changed(&self, changes: Vec<crate::calls::LampChange>) {
        for lamp in changes {
            self.notify_target(&lamp.ext, Package::Dialog, &Content::Dialogs(lamp.dialogs));
            if lamp.busy_before != lamp.busy_after {
                let open = self.is_registered(&lamp.ext);
                self.notify_target(
                    &lamp.ext,
                    Package::Presence,
                    &Content::Presence {
                        open,
                        busy: lamp.busy_after,
                    },
                );
            }
        }
    }

    /// Ends subscriptions past their expiry with a final NOTIFY
    /// (`terminated;reason=timeout`).
    fn expire(&self) {
        let now = Instant::now();
        let expired: Vec<(Box<str>, Package, Box<str>)> = lock(&self.inner.table)
            .subs
            .iter()
            .filter(|(_, s)| !s.ending && s.expires_at <= now)
            .map(|(k, s)| (k.clone(), s.package, s.target.clone()))
            .collect();
        for (key, package, target) in expired {
            let content = self.content(package, &target);
            tracing::info!(target = %target, event = package.as_str(), "subscription expired");
            self.queue(&key, content, Some("timeout"));
        }
    }

    /// Presence: a watched extension that registered or lost its
    /// registrations since the last look gets a NOTIFY.
    fn check_registrations(&self) {
        let watched: Vec<Box<str>> = {
            let table = lock(&self.inner.table);
            let mut t: Vec<Box<str>> = table
                .subs
                .values()
                .filter(|s| s.package == Package::Presence && !s.ending)
                .map(|s| s.target.clone())
                .collect();
            // A script's lamp has no registrations to follow.
            let lamps = lock(&self.inner.lamps);
            t.retain(|target| !lamps.contains_key(&**target));
            t.sort();
            t.dedup();
            t
        };
        for ext in watched {
            let open = self.is_registered(&ext);
            let before = lock(&self.inner.registered).insert(ext.to_string(), open);
            if before.is_some_and(|b| b != open) {
                let busy = self.tracker().busy(&ext);
                self.notify_target(&ext, Package::Presence, &Content::Presence { open, busy });
            }
        }
    }

    fn is_registered(&self, ext: &str) -> bool {
        self.inner
            .registrar
            .contacts_blocking(ext, now_ms())
            .is_ok_and(|live| !live.is_empty())
    }

    fn counts(&self, ext: &str) -> MailboxCounts {
        if let Some(c) = lock(&self.inner.counts).get(ext) {
            return *c;
        }
        self.inner.mailboxes.counts(ext)
    }

    /// The full state of `target` for `package`.
    fn content(&self, package: Package, target: &str) -> Content {
        if let Some(on) = self.lamp(target) {
            match package {
                Package::Dialog => return Content::Dialogs(self.lamp_dialogs(target, on)),
                Package::Presence => {
                    return Content::Presence {
                        open: true,
                        busy: on,
                    };
                }
                Package::MessageSummary => {}
            }
        }
        match package {
            Package::Dialog => Content::Dialogs(self.tracker().dialogs(target).into()),
            Package::MessageSummary => Content::Mailbox(self.counts(target)),
            Package::Presence => {
                let open = self.is_registered(target);
                lock(&self.inner.registered).insert(target.to_owned(), open);
                Content::Presence {
                    open,
                    busy: self.tracker().busy(target),
                }
            }
        }
    }

    /// Queues `content` for every live subscription to `package` of `ext`;
    /// returns how many there were.
    fn notify_target(&self, ext: &str, package: Package, content: &Content) -> usize {
        let keys: Vec<Box<str>> = {
            let table = lock(&self.inner.table);
            table
                .by_target
                .get(ext)
                .map(|keys| {
                    keys.iter()
                        .filter(|k| {
                            table
                                .subs
                                .get(&***k)
                                .is_some_and(|s| s.package == package && !s.ending)
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        for key in &keys {
            self.queue(key, content.clone(), None);
        }
        keys.len()
    }

    /// Puts `content` up as the subscription's next NOTIFY (replacing one
    /// not yet sent) and starts sending if nothing is in flight. With
    /// `end`, it is the last; the subscription stops counting at once.
    fn queue(&self, key: &str, content: Content, end: Option<&'static str>) {
        let start = {
            let mut table = lock(&self.inner.table);
            let Some(sub) = table.subs.get_mut(key) else {
                return;
            };
            let id = sub.id;
            if sub.ending && end.is_none() {
                return;
            }
            sub.pending = Some(Pending { content, end });
            if end.is_some() {
                sub.ending = true;
            }
            (!std::mem::replace(&mut sub.sending, true)).then_some(id)
        };
        if let Some(id) = start {
            let me = self.clone();
            let key: Box<str> = key.into();
            self.inner
                .runtime
                .spawn(async move { me.send_loop(key, id).await });
        }
    }

    /// Sends the subscription's NOTIFYs one at a time until none waits.
    async fn send_loop(self, key: Box<str>, id: u64) {
        loop {
            let next = {
                let mut table = lock(&self.inner.table);
                let Some(sub) = table.subs.get_mut(&key).filter(|s| s.id == id) else {
                    return;
                };
                match sub.pending.take() {
                    None => {
                        sub.sending = false;
                        return;
                    }
                    Some(p) => {
                        sub.version = sub.version.saturating_add(1);
                        sub.cseq = sub.cseq.saturating_add(1);
                        let request = self.notify_request(sub, &p);
                        (request, sub.dialog.clone(), p.end.is_some())
                    }
                }
            };
            let (request, dialog, last) = next;
            let result = self
                .inner
                .endpoint
                .request(request, dialog.transport, dialog.dest)
                .await;
            let failure = match &result {
                Ok(r) if (200..300).contains(&r.status) => None,
                Ok(r) => Some(format!("answered {} {}", r.status, r.reason)),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = &failure {
                tracing::info!(call_id = %dialog.call_id, to = %dialog.dest, "subscription dropped: NOTIFY {why}");
            }
            if last || failure.is_some() {
                lock(&self.inner.table).remove(&key, id);
                return;
            }
        }
    }

    fn notify_request(&self, sub: &Subscription, p: &Pending) -> Request {
        let domain = &self.inner.config.domain;
        let d = &sub.dialog;
        let body = match &p.content {
            Content::Dialogs(list) => {
                let name = self.inner.directory.name(&sub.target);
                body::dialog_info(&sub.target, name.as_deref(), domain, sub.version, list)
            }
            Content::Mailbox(c) => body::message_summary(&sub.target, domain, *c),
            Content::Presence { open, busy } => body::pidf(&sub.target, domain, *open, *busy),
        };
        let state = match p.end {
            Some(reason) => format!("terminated;reason={reason}"),
            None => format!(
                "active;expires={}",
                sub.expires_at
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            ),
        };
        let mut headers = Headers::new();
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(HeaderName::From, &*d.local);
        headers.push(HeaderName::To, &*d.remote);
        headers.push(HeaderName::CallId, &*d.call_id);
        headers.push(HeaderName::CSeq, format!("{} NOTIFY", sub.cseq));
        headers.push(
            HeaderName::Contact,
            self.contact(&sub.target, d.transport, d.dest),
        );
        headers.push(HeaderName::Event, &*d.event);
        headers.push(HeaderName::SubscriptionState, state);
        headers.push(HeaderName::ContentType, sub.package.content_type());
        let uri = Uri::parse(&d.target_uri).unwrap_or_else(|_| fallback_uri(d.dest));
        Request {
            method: Method::Notify,
            uri,
            headers,
            body: bytes::Bytes::from(body),
        }
    }

    /// Our Contact for `target`'s dialogs with a peer at `dest`.
    fn contact(&self, target: &str, transport: Transport, dest: SocketAddr) -> String {
        let addr = self
            .inner
            .endpoint
            .local_addr_for(transport, dest)
            .map_or_else(|| self.inner.config.domain.clone(), |a| a.to_string());
        match transport {
            Transport::Tcp => format!("<sip:{target}@{addr};transport=tcp>"),
            _ => format!("<sip:{target}@{addr}>"),
        }
    }

    async fn subscribe(self, incoming: Incoming) -> Response {
        let req = &incoming.request;
        let domain = self.inner.config.domain.clone();
        let event = match req.headers.event() {
            Ok(Some(e)) => e,
            Ok(None) => {
                return incoming.response_with_warning(
                    400,
                    &domain,
                    "SUBSCRIBE without an Event header",
                );
            }
            Err(e) => return incoming.response_with_warning(400, &domain, &e.to_string()),
        };
        let Some(package) = Package::parse(&event.package) else {
            let mut r = incoming.response(489);
            r.headers
                .push(HeaderName::parse("Allow-Events"), ALLOW_EVENTS);
            return r;
        };
        let ext = match self.inner.registrar.authenticate_call(&incoming) {
            Ok(ext) => ext,
            Err(challenge) => return challenge,
        };
        let target = match &req.uri {
            Uri::Sip(u) => u.user.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let target = target.split(';').next().unwrap_or_default().to_owned();
        if !self.inner.directory.contains(&target) && self.lamp(&target).is_none() {
            return incoming.response_with_warning(404, &domain, "no such extension to watch");
        }
        let expires = match req.headers.expires() {
            Ok(e) => e.unwrap_or(self.inner.config.default_expires),
            Err(e) => return incoming.response_with_warning(400, &domain, &e.to_string()),
        };
        if expires != 0 && expires < self.inner.config.min_expires {
            let mut r = incoming.response(423);
            r.headers.push(
                HeaderName::MinExpires,
                self.inner.config.min_expires.to_string(),
            );
            return r;
        }
        let expires = expires.min(self.inner.config.max_expires);
        let (Ok(from), Ok(to)) = (req.headers.from(), req.headers.to()) else {
            return incoming.response_with_warning(400, &domain, "unreadable From or To");
        };
        let Some(from_tag) = from.tag().map(str::to_owned) else {
            return incoming.response_with_warning(400, &domain, "From has no tag");
        };
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let key: Box<str> = format!(
            "{call_id}\n{from_tag}\n{}\n{}",
            package.as_str(),
            event.id().unwrap_or_default()
        )
        .into();
        let our_tag = to.tag().unwrap_or(incoming.to_tag()).to_owned();
        let to_value = req.headers.get(&HeaderName::To).unwrap_or_default();
        let local = if to.tag().is_some() {
            to_value.to_owned()
        } else {
            format!("{to_value};tag={our_tag}")
        };
        let existing = lock(&self.inner.table)
            .subs
            .get(&key)
            .filter(|s| !s.ending)
            .map(|s| s.subscriber.to_string());
        if let Some(owner) = &existing
            && owner != &ext
        {
            return incoming.response_with_warning(
                403,
                &domain,
                "this subscription is another extension's",
            );
        }
        if existing.is_none()
            && !self
                .inner
                .authorizer
                .allowed(&ext, package.as_str(), &target)
                .await
        {
            tracing::info!(subscriber = %ext, event = package.as_str(), %target, "subscription refused by on_subscribe");
            return incoming.response_with_warning(
                403,
                &domain,
                "not allowed to watch this extension",
            );
        }
        let target_uri = match req.headers.contact() {
            Ok(sip_proto::header::Contact::Addrs(list)) => list.first().map(|c| c.uri.to_string()),
            _ => None,
        };
        let Some(target_uri) = target_uri else {
            return incoming.response_with_warning(400, &domain, "SUBSCRIBE without a Contact");
        };
        let content = self.content(package, &target);
        let now = Instant::now();
        {
            let mut table = lock(&self.inner.table);
            if let Some(sub) = table.subs.get_mut(&key).filter(|s| !s.ending) {
                // A refresh (RFC 6665 §4.1.2.2) or an unsubscribe; it
                // refreshes the target too (the phone may have moved).
                sub.expires_at = now + Duration::from_secs(u64::from(expires));
                let d = &sub.dialog;
                sub.dialog = Arc::new(NotifyDialog {
                    call_id: d.call_id.clone(),
                    local: d.local.clone(),
                    remote: d.remote.clone(),
                    target_uri: target_uri.into(),
                    event: d.event.clone(),
                    dest: incoming.source,
                    transport: incoming.transport,
                });
            } else {
                // New (or, with Expires: 0, a fetch: one NOTIFY with the
                // state, already terminated; RFC 6665 §4.4.3).
                if expires != 0
                    && (table.live() >= self.inner.config.max_total
                        || table.per_subscriber.get(ext.as_str()).copied().unwrap_or(0)
                            >= self.inner.config.max_per_subscriber)
                {
                    drop(table);
                    tracing::warn!(subscriber = %ext, "subscription refused: too many subscriptions");
                    let mut r =
                        incoming.response_with_warning(503, &domain, "too many subscriptions");
                    r.headers.push(HeaderName::RetryAfter, "60");
                    return r;
                }
                if to.tag().is_some() {
                    // Not ours (we restarted, or it expired): re-created
                    // with the phone's dialog, as if new.
                    tracing::info!(subscriber = %ext, event = package.as_str(), %target, "subscription re-created from a refresh");
                }
                table.next_id += 1;
                let id = table.next_id;
                let sub = Subscription {
                    id,
                    subscriber: ext.as_str().into(),
                    package,
                    target: target.as_str().into(),
                    expires_at: now + Duration::from_secs(u64::from(expires)),
                    version: 0,
                    cseq: 0,
                    dialog: Arc::new(NotifyDialog {
                        call_id: call_id.as_str().into(),
                        local: local.into(),
                        remote: req
                            .headers
                            .get(&HeaderName::From)
                            .unwrap_or_default()
                            .into(),
                        target_uri: target_uri.into(),
                        event: event.to_string().into(),
                        dest: incoming.source,
                        transport: incoming.transport,
                    }),
                    pending: None,
                    sending: false,
                    ending: false,
                };
                table.insert(key.clone(), sub);
                tracing::info!(subscriber = %ext, event = package.as_str(), %target, expires, "subscribed");
            }
        }
        if expires == 0 {
            tracing::info!(subscriber = %ext, event = package.as_str(), %target, "unsubscribed");
        }
        self.queue(&key, content, (expires == 0).then_some("timeout"));
        metrics::gauge!("subscriptions").set(self.len() as f64);
        let mut ok = incoming.response(200);
        ok.headers.push(HeaderName::Expires, expires.to_string());
        ok.headers.push(
            HeaderName::Contact,
            self.contact(&target, incoming.transport, incoming.source),
        );
        ok
    }

    /// Sends `ext`'s counts to its `message-summary` subscribers, or, if it
    /// has none, to its registered phones unsolicited (many desk phones
    /// light their lamp on an unsolicited NOTIFY and never subscribe).
    async fn mwi_changed(self, ext: String, counts: MailboxCounts) {
        if self.notify_target(&ext, Package::MessageSummary, &Content::Mailbox(counts)) > 0 {
            return;
        }
        let Ok(bindings) = self.inner.registrar.contacts(&ext).await else {
            return;
        };
        let domain = self.inner.config.domain.clone();
        for b in bindings {
            let Ok(uri) = Uri::parse(&b.contact) else {
                continue;
            };
            let transport = if b.transport.eq_ignore_ascii_case("tcp") {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let mut headers = Headers::new();
            for route in &b.path {
                headers.push(HeaderName::Route, route.as_str());
            }
            headers.push(HeaderName::MaxForwards, "70");
            headers.push(
                HeaderName::From,
                format!("<sip:{ext}@{domain}>;tag={:016x}", rand::random::<u64>()),
            );
            headers.push(HeaderName::To, format!("<sip:{ext}@{domain}>"));
            headers.push(
                HeaderName::CallId,
                format!("{:016x}@{domain}", rand::random::<u64>()),
            );
            headers.push(HeaderName::CSeq, "1 NOTIFY");
            headers.push(HeaderName::Contact, self.contact(&ext, transport, b.source));
            headers.push(HeaderName::Event, "message-summary");
            headers.push(HeaderName::SubscriptionState, "active");
            headers.push(
                HeaderName::ContentType,
                Package::MessageSummary.content_type(),
            );
            let request = Request {
                method: Method::Notify,
                uri,
                headers,
                body: bytes::Bytes::from(body::message_summary(&ext, &domain, counts)),
            };
            let endpoint = self.inner.endpoint.clone();
            let source = b.source;
            let ext = ext.clone();
            tokio::spawn(async move {
                match endpoint.request(request, transport, source).await {
                    Ok(r) if r.status < 300 => {}
                    Ok(r) => {
                        tracing::debug!(%ext, status = r.status, "unsolicited MWI NOTIFY refused")
                    }
                    Err(e) => tracing::debug!(%ext, "unsolicited MWI NOTIFY: {e}"),
                }
            });
        }
    }
}

/// Where to send a NOTIFY whose Contact did not parse: the address it came from.
fn fallback_uri(dest: SocketAddr) -> Uri {
    Uri::parse(&format!("sip:{dest}")).unwrap_or_else(|_| Uri::Other {
        scheme: "sip".to_owned(),
        rest: dest.to_string(),
    })
}

impl MailboxListener for Presence {
    fn counts_changed(&self, ext: &str, counts: MailboxCounts) {
        lock(&self.inner.counts).insert(ext.to_owned(), counts);
        let me = self.clone();
        self.inner
            .runtime
            .spawn(me.mwi_changed(ext.to_owned(), counts));
    }

    fn message_left(&self, _message: &NewMessage) {}
}

impl Service for Presence {
    fn methods(&self) -> Vec<Method> {
        vec![Method::Subscribe]
    }

    fn handle(&self, incoming: Incoming) -> BoxFuture<Response> {
        Box::pin(self.clone().subscribe(incoming))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes a subscription holds at rest: its map entry (with the
    /// hashbrown control byte and the 7/8 load factor), the key again in
    /// the by-target index, every boxed string, and the shared dialog.
    fn approx_bytes(key: &str, sub: &Subscription) -> usize {
        let entry = std::mem::size_of::<(Box<str>, Subscription)>() + 1;
        let entry = entry * 8 / 7;
        let index = std::mem::size_of::<Box<str>>() + key.len();
        let d = &sub.dialog;
        let dialog = 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<NotifyDialog>()
            + d.call_id.len()
            + d.local.len()
            + d.remote.len()
            + d.target_uri.len()
            + d.event.len();
        entry + key.len() + index + sub.subscriber.len() + sub.target.len() + dialog
    }

    #[test]
    fn a_desk_phones_subscription_costs_under_2_kib() {
        // What a Yealink sends for one BLF key, at the lengths phones use.
        let call_id = "0_2758329364@192.168.100.123-ab12cd34ef56ab12cd34ef56";
        let key = format!("{call_id}\n2983473927\ndialog\n");
        let sub = Subscription {
            id: 1,
            subscriber: "1001".into(),
            package: Package::Dialog,
            target: "1002".into(),
            expires_at: Instant::now(),
            version: 1,
            cseq: 1,
            dialog: Arc::new(NotifyDialog {
                call_id: call_id.into(),
                local: "\"Reception Desk\" <sip:1002@pbx.example-office.com>;tag=3f2a9c1d0b7e6a54"
                    .into(),
                remote: "\"Alice Example\" <sip:1001@pbx.example-office.com>;tag=2983473927".into(),
                target_uri: "sip:1001@192.168.100.123:5062;transport=udp;line=abcdef12".into(),
                event: "dialog".into(),
                dest: "192.168.100.123:5062".parse().expect("address"),
                transport: Transport::Udp,
            }),
            pending: None,
            sending: false,
            ending: false,
        };
        let bytes = approx_bytes(&key, &sub);
        assert!(bytes <= 2048, "a subscription holds about {bytes} bytes");
        // Printed for the closing note (cargo test -- --nocapture).
        println!("one subscription: about {bytes} bytes");
    }
}
