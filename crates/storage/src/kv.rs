//! The namespaced key-value store behind the dialplan's `kv` module: the only state that outlives a call.

use std::time::Duration;

use crate::Error;

/// Namespaced keys to byte values, each with an optional time to live.
///
/// The methods carry a `kv_` prefix so that they never clash with
/// [`LocationStore`](crate::LocationStore)'s on a type that implements both.
///
/// Namespaces are isolated from each other (a plugin's namespace is its
/// name). An entry whose TTL has run out at the `now_unix_ms` a read is given
/// is invisible to that read; [`KvStore::kv_sweep_expired`] frees its space.
pub trait KvStore: Send + Sync {
    /// The value of `key` in `ns`, unless absent or expired at `now_unix_ms`.
    fn kv_get(&self, ns: &str, key: &str, now_unix_ms: u64) -> Result<Option<Vec<u8>>, Error>;

    /// Sets `key` in `ns` to `value`, replacing any previous value and TTL.
    /// With `ttl`, the entry expires at `now_unix_ms + ttl`.
    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now_unix_ms: u64,
    ) -> Result<(), Error>;

    /// Deletes `key` from `ns`; returns whether it was stored (expired or not).
    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, Error>;

    /// The live entries of `ns` whose key starts with `prefix` (`""` for all),
    /// ordered by key.
    fn kv_list(
        &self,
        ns: &str,
        prefix: &str,
        now_unix_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, Error>;

    /// Removes every entry, in every namespace, expired at `now_unix_ms`;
    /// returns how many were removed.
    fn kv_sweep_expired(&self, now_unix_ms: u64) -> Result<usize, Error>;
}

/// The absolute expiry of an entry set at `now_unix_ms` with `ttl`.
pub(crate) fn expiry(ttl: Option<Duration>, now_unix_ms: u64) -> Option<u64> {
    ttl.map(|ttl| {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        now_unix_ms.saturating_add(ms)
    })
}

/// Whether an entry with expiry `expires_at` is expired at `now_unix_ms`.
pub(crate) fn is_expired(expires_at: Option<u64>, now_unix_ms: u64) -> bool {
    expires_at.is_some_and(|at| at <= now_unix_ms)
}
