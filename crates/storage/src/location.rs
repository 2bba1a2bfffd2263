//! The location service of RFC 3261 §10.3: bindings of an address of record to contacts.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One registered contact of an address of record (RFC 3261 §10.3 step 7),
/// with what the registrar needs to reach the phone again.
///
/// A binding is identified by its (`aor`, `contact`) pair: putting a binding
/// whose pair is already stored replaces the stored one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The address of record, canonical form, e.g. `sip:1001@pbx.example.com`.
    pub aor: String,
    /// The Contact URI exactly as the phone registered it (without the
    /// header's `expires`/`q` parameters).
    pub contact: String,
    /// When the binding expires, unix milliseconds. It is expired at this
    /// instant and after (see [`Binding::is_expired`]).
    pub expires_at_ms: u64,
    /// The Contact's `q` value in thousandths (`q=0.5` is 500, `q=1` is
    /// 1000); `None` when the phone gave none.
    #[serde(default)]
    pub q: Option<u16>,
    /// Call-ID of the REGISTER that created or last refreshed the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER (§10.3 step 7: an older CSeq with the same
    /// Call-ID is rejected).
    pub cseq: u32,
    /// The Path header values (RFC 3327), in the order received; requests to
    /// the contact are routed through them.
    #[serde(default)]
    pub path: Vec<String>,
    /// Address and port the REGISTER came from: where the phone is reached
    /// when it sits behind NAT and advertised a private Contact.
    pub source: SocketAddr,
    /// Transport the REGISTER came over, lower case as in a URI's
    /// `transport` parameter: `udp`, `tcp`, `tls`, `ws`, `wss`.
    pub transport: String,
    /// The User-Agent header, if any.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The Contact's `+sip.instance` parameter (RFC 5626 §4.1), if any.
    #[serde(default)]
    pub instance: Option<String>,
    /// The Contact's `reg-id` parameter (RFC 5626 §4.2), if any.
    #[serde(default)]
    pub reg_id: Option<u32>,
    /// When the binding was first created, unix milliseconds.
    pub registered_at_ms: u64,
}

impl Binding {
    /// Whether the binding has expired at `now_unix_ms`.
    pub fn is_expired(&self, now_unix_ms: u64) -> bool {
        self.expires_at_ms <= now_unix_ms
    }

    /// Milliseconds left before expiry at `now_unix_ms` (0 once expired):
    /// what the 200 OK's per-contact `expires` is computed from.
    pub fn remaining_ms(&self, now_unix_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_unix_ms)
    }
}

/// Where bindings live. Every method that changes something has committed
/// the change (durably, for a persistent backend) when it returns `Ok`.
///
/// Reads return what is stored, expired or not: the registrar compares
/// [`Binding::expires_at_ms`] with its own clock and calls
/// [`LocationStore::sweep_expired`] to purge.
pub trait LocationStore: Send + Sync {
    /// Adds `binding`, or replaces the stored binding with the same `aor` and
    /// `contact`.
    fn put(&self, binding: &Binding) -> Result<(), Error>;

    /// Replaces every binding of `aor` with `bindings` in one commit, and
    /// returns the bindings it replaced. This is how one REGISTER that adds,
    /// refreshes and removes several contacts is applied atomically. Every
    /// element of `bindings` must have `aor` as its AOR
    /// ([`Error::InvalidBinding`] otherwise, and nothing changes).
    fn replace_aor(&self, aor: &str, bindings: &[Binding]) -> Result<Vec<Binding>, Error>;

    /// Applies several [`replace_aor`](Self::replace_aor)s in one commit
    /// (group commit: a persistent backend syncs once for the batch). All
    /// or nothing; every binding must belong to the AOR it is listed under.
    /// The default applies them one by one, for backends where a commit
    /// costs nothing.
    fn replace_aors(&self, batch: &[(String, Vec<Binding>)]) -> Result<(), Error> {
        for (aor, bindings) in batch {
            check_same_aor(aor, bindings)?;
        }
        for (aor, bindings) in batch {
            self.replace_aor(aor, bindings)?;
        }
        Ok(())
    }

    /// Whether calls may block on disk IO (so async callers should run them
    /// on a blocking thread). `false` for the in-memory backend.
    fn blocks(&self) -> bool {
        true
    }

    /// Whether the reads ([`list`](Self::list), [`list_all`](Self::list_all))
    /// may block on disk IO. `false` where bindings are served from memory
    /// (the in-memory backend, and redb, which keeps the location table in
    /// memory beside its file), so a caller can read them on a runtime
    /// worker. Defaults to [`blocks`](Self::blocks).
    fn reads_block(&self) -> bool {
        self.blocks()
    }

    /// Removes the binding of `aor` to `contact`; returns it if it existed.
    fn remove(&self, aor: &str, contact: &str) -> Result<Option<Binding>, Error>;

    /// Removes every binding of `aor` (`Contact: *`); returns them.
    fn remove_all(&self, aor: &str) -> Result<Vec<Binding>, Error>;

    /// The bindings of `aor`, ordered by contact URI.
    fn list(&self, aor: &str) -> Result<Vec<Binding>, Error>;

    /// Every binding, ordered by AOR then contact URI.
    fn list_all(&self) -> Result<Vec<Binding>, Error>;

    /// Removes and returns every binding expired at `now_unix_ms`
    /// (`expires_at_ms <= now_unix_ms`), ordered by expiry time.
    fn sweep_expired(&self, now_unix_ms: u64) -> Result<Vec<Binding>, Error>;
}

/// Checks that every binding handed to `replace_aor` belongs to `aor`.
pub(crate) fn check_same_aor(aor: &str, bindings: &[Binding]) -> Result<(), Error> {
    match bindings.iter().find(|b| b.aor != aor) {
        Some(b) => Err(Error::InvalidBinding {
            reason: format!(
                "binding of {} to {} handed to replace_aor for {aor}",
                b.aor, b.contact
            ),
        }),
        None => Ok(()),
    }
}
