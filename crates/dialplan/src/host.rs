//! What the dialplan asks of the rest of the PBX outside the call (DESIGN.md
//! "Dialplan (Lua)", modules): the `kv` store, `registrar.contacts` and
//! `pbx.extension` / `pbx.state`, behind the [`Host`] trait; [`MemoryHost`] for tests.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why a host call failed (storage error, …); Lua sees its message.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct HostError {
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
    /// Whether it is temporary (the storage is out of reach): a route that
    /// fails on it gives the caller 503 (try again later), not 500.
    pub retry_later: bool,
}

impl HostError {
    /// Wraps any error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            retry_later: false,
        }
    }

    /// Wraps a temporary failure (see [`HostError::retry_later`]).
    pub fn retry_later(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            retry_later: true,
        }
    }
}

/// The Lua error of a host call that failed for now (a [`HostError`] with
/// `retry_later`): same message, but the route's failure is
/// [`FailureKind::Unavailable`](crate::FailureKind::Unavailable).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RetryLater(pub(crate) String);

/// One registered contact of an extension (`registrar.contacts(ext)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The Contact URI the phone registered.
    pub uri: String,
    /// Where the phone is reached, `ip:port` (the REGISTER's source).
    pub source: String,
    /// `udp`, `tcp`, …
    pub transport: String,
    /// Seconds until the registration expires.
    pub expires: u64,
}

/// An extension of the PBX (`pbx.extension(id)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionInfo {
    /// The extension id (`1001`).
    pub id: String,
    /// Its display name, if configured.
    pub name: Option<String>,
    /// The context its calls enter.
    pub context: String,
    /// Its outside number in E.164 (`did`), if configured.
    pub did: Option<String>,
    /// `outbound`: may call out through trunks (the dialplan enforces it).
    pub outbound: bool,
    /// `international`: may call international and premium numbers (the dialplan enforces it).
    pub international: bool,
}

/// What an extension's phone is doing (`pbx.state(ext)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhoneState {
    /// Registered and on no call.
    Idle,
    /// A call is ringing it.
    Ringing,
    /// On a call (placing, talking or holding one).
    Busy,
    /// Not registered.
    Unregistered,
}

impl PhoneState {
    /// The name Lua sees: `idle`, `ringing`, `busy`, `unregistered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Ringing => "ringing",
            Self::Busy => "busy",
            Self::Unregistered => "unregistered",
        }
    }
}

/// The PBX as the dialplan's modules see it. The binary implements it over
/// storage, the registrar and the configuration.
///
/// Methods may block (a redb commit waits for the disk): unless
/// [`Host::blocks`] says `false`, the runtime calls them on tokio's blocking
/// pool, never on a runtime worker. Namespaces are the script's own names;
/// a host that shares its store with other users should keep them apart
/// (the binary prefixes them).
pub trait Host: Send + Sync + 'static {
    /// The value of `key` in namespace `ns`, if set and not expired.
    fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Sets `key` in `ns`, expiring after `ttl` if given.
    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), HostError>;
    /// Deletes `key` from `ns`; whether it was set.
    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, HostError>;
    /// The live registered contacts of extension `ext` (none if unknown).
    fn contacts(&self, ext: &str) -> Result<Vec<Contact>, HostError>;
    /// The extension `id`, if configured.
    fn extension(&self, id: &str) -> Result<Option<ExtensionInfo>, HostError>;

    /// What `ext`'s phone is doing. The default knows registrations only
    /// (`unregistered` without contacts, else `idle`); the binary adds the
    /// live calls.
    fn phone_state(&self, ext: &str) -> Result<PhoneState, HostError> {
        Ok(if self.contacts(ext)?.is_empty() {
            PhoneState::Unregistered
        } else {
            PhoneState::Idle
        })
    }

    /// Lights (`busy`) or clears the lamp `name` (`pbx.set_lamp`): a busy
    /// lamp no call drives, that a phone's BLF key on `name` watches (the
    /// night mode on `*28`). The binary keeps lamps for as long as it runs,
    /// across reloads. The default says this host has none.
    fn set_lamp(&self, name: &str, busy: bool) -> Result<(), HostError> {
        let _ = (name, busy);
        Err(HostError::new(
            "this host has no busy lamps (they are the server's)",
        ))
    }

    /// The extension whose `did` is `number` (E.164, `+15550001001`), if any.
    fn extension_by_did(&self, number: &str) -> Result<Option<ExtensionInfo>, HostError> {
        let _ = number;
        Ok(None)
    }
    /// Whether the methods may block on IO (then they run on a blocking
    /// thread). `true` unless the host is all in memory.
    fn blocks(&self) -> bool {
        true
    }
    /// The time `os.time()` and `os.date()` read, in seconds since the Unix
    /// epoch, when the host keeps its own clock (the spec runner's virtual
    /// clock); `None`, the default, for the real time.
    fn now(&self) -> Option<i64> {
        None
    }
    /// The voicemail boxes behind the `mailbox` module, if this host has
    /// them; `None`, the default, makes every `mailbox` function a Lua
    /// error saying so.
    fn voicemail(&self) -> Option<&dyn crate::mailbox::Voicemail> {
        None
    }
    /// Whether the `mailbox` functions may block (they read and write
    /// files even when the rest of the host is in memory); as
    /// [`blocks`](Self::blocks) by default.
    fn voicemail_blocks(&self) -> bool {
        self.blocks()
    }
    /// The call queues behind the `queues` module (`plugins/queue.lua`),
    /// kept by the host so they outlive a reload; `None`, the default,
    /// makes every `queues` function a Lua error saying so.
    fn queues(&self) -> Option<crate::Queues> {
        None
    }
}

/// A shared host, printable in `Debug` output.
#[derive(Clone)]
pub(crate) struct SharedHost(pub(crate) Arc<dyn Host>);

impl fmt::Debug for SharedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Host")
    }
}

#[derive(Debug, Default)]
struct MemoryInner {
    kv: HashMap<(String, String), (Vec<u8>, Option<Instant>)>,
    contacts: HashMap<String, Vec<Contact>>,
    extensions: HashMap<String, ExtensionInfo>,
    lamps: HashMap<String, bool>,
}

/// A [`Host`] all in memory: `kv` for one process, contacts and extensions
/// as the test (or an embedding) sets them. What a [`Runtime`] uses when
/// given no host.
///
/// [`Runtime`]: crate::Runtime
#[derive(Debug, Default)]
pub struct MemoryHost {
    inner: Mutex<MemoryInner>,
    queues: crate::Queues,
}

impl MemoryHost {
    /// An empty host: no keys, contacts or extensions.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // Nothing panics while holding it; a poisoned lock still has valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds (or replaces) an extension.
    pub fn add_extension(&self, ext: ExtensionInfo) {
        self.lock().extensions.insert(ext.id.clone(), ext);
    }

    /// Sets the registered contacts of `ext`.
    pub fn set_contacts(&self, ext: &str, contacts: Vec<Contact>) {
        self.lock().contacts.insert(ext.to_owned(), contacts);
    }

    /// Whether the lamp `name` a script set is on (`None`: never set).
    pub fn lamp(&self, name: &str) -> Option<bool> {
        self.lock().lamps.get(name).copied()
    }

    /// The value of `key` in `ns`, as a test checks what a script stored.
    pub fn get(&self, ns: &str, key: &str) -> Option<Vec<u8>> {
        self.kv_get(ns, key).ok().flatten()
    }
}

impl Host for MemoryHost {
    fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let mut inner = self.lock();
        let k = (ns.to_owned(), key.to_owned());
        match inner.kv.get(&k) {
            Some((_, Some(expires))) if *expires <= Instant::now() => {
                inner.kv.remove(&k);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), HostError> {
        let expires = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        self.lock()
            .kv
            .insert((ns.to_owned(), key.to_owned()), (value.to_vec(), expires));
        Ok(())
    }

    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, HostError> {
        Ok(self
            .lock()
            .kv
            .remove(&(ns.to_owned(), key.to_owned()))
            .is_some())
    }

    fn contacts(&self, ext: &str) -> Result<Vec<Contact>, HostError> {
        Ok(self.lock().contacts.get(ext).cloned().unwrap_or_default())
    }

    fn extension_by_did(&self, number: &str) -> Result<Option<ExtensionInfo>, HostError> {
        Ok(self
            .lock()
            .extensions
            .values()
            .find(|e| e.did.as_deref() == Some(number))
            .cloned())
    }

    fn extension(&self, id: &str) -> Result<Option<ExtensionInfo>, HostError> {
        Ok(self.lock().extensions.get(id).cloned())
    }

    fn set_lamp(&self, name: &str, busy: bool) -> Result<(), HostError> {
        self.lock().lamps.insert(name.to_owned(), busy);
        Ok(())
    }

    fn blocks(&self) -> bool {
        false
    }

    fn queues(&self) -> Option<crate::Queues> {
        Some(self.queues.clone())
    }
}
