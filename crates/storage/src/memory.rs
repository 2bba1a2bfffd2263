//! The in-memory backend: the storage contract with nothing on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::Error;
use crate::cdr::{CdrEntry, CdrStore};
use crate::kv::{self, KvStore};
use crate::location::{self, Binding, LocationStore};

/// Storage held in memory and lost when dropped: for tests, and for setups
/// that want nothing on disk. Cheap to create; `Send + Sync`.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// AOR → contact → binding.
    bindings: BTreeMap<String, BTreeMap<String, Binding>>,
    /// Namespace → key → entry.
    kv: BTreeMap<String, BTreeMap<String, KvEntry>>,
    /// CDRs in append order; a record's id is its index + 1.
    cdrs: Vec<serde_json::Value>,
}

#[derive(Debug)]
struct KvEntry {
    expires_at: Option<u64>,
    value: Vec<u8>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state. Every operation leaves it consistent before it could
    /// panic, so a lock poisoned by a panicking caller still guards good data.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LocationStore for MemoryStorage {
    fn blocks(&self) -> bool {
        false
    }

    fn put(&self, binding: &Binding) -> Result<(), Error> {
        self.state()
            .bindings
            .entry(binding.aor.clone())
            .or_default()
            .insert(binding.contact.clone(), binding.clone());
        Ok(())
    }

    fn replace_aor(&self, aor: &str, bindings: &[Binding]) -> Result<Vec<Binding>, Error> {
        location::check_same_aor(aor, bindings)?;
        let new: BTreeMap<String, Binding> = bindings
            .iter()
            .map(|b| (b.contact.clone(), b.clone()))
            .collect();
        let mut state = self.state();
        let old = if new.is_empty() {
            state.bindings.remove(aor)
        } else {
            state.bindings.insert(aor.to_owned(), new)
        };
        Ok(old.map(|m| m.into_values().collect()).unwrap_or_default())
    }

    fn remove(&self, aor: &str, contact: &str) -> Result<Option<Binding>, Error> {
        let mut state = self.state();
        let Some(contacts) = state.bindings.get_mut(aor) else {
            return Ok(None);
        };
        let removed = contacts.remove(contact);
        if contacts.is_empty() {
            state.bindings.remove(aor);
        }
        Ok(removed)
    }

    fn remove_all(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        let removed = self.state().bindings.remove(aor);
        Ok(removed
            .map(|m| m.into_values().collect())
            .unwrap_or_default())
    }

    fn list(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        let state = self.state();
        Ok(state
            .bindings
            .get(aor)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    fn list_all(&self) -> Result<Vec<Binding>, Error> {
        let state = self.state();
        Ok(state
            .bindings
            .values()
            .flat_map(|m| m.values().cloned())
            .collect())
    }

    fn sweep_expired(&self, now_unix_ms: u64) -> Result<Vec<Binding>, Error> {
        let mut state = self.state();
        let mut expired = Vec::new();
        state.bindings.retain(|_, contacts| {
            contacts.retain(|_, b| {
                if b.is_expired(now_unix_ms) {
                    expired.push(b.clone());
                    false
                } else {
                    true
                }
            });
            !contacts.is_empty()
        });
        // Same order as the redb backend's expiry index: time, AOR, contact.
        expired.sort_by(|a, b| {
            (a.expires_at_ms, &a.aor, &a.contact).cmp(&(b.expires_at_ms, &b.aor, &b.contact))
        });
        Ok(expired)
    }
}

impl KvStore for MemoryStorage {
    fn kv_get(&self, ns: &str, key: &str, now_unix_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        let state = self.state();
        Ok(state
            .kv
            .get(ns)
            .and_then(|entries| entries.get(key))
            .filter(|e| !kv::is_expired(e.expires_at, now_unix_ms))
            .map(|e| e.value.clone()))
    }

    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now_unix_ms: u64,
    ) -> Result<(), Error> {
        let entry = KvEntry {
            expires_at: kv::expiry(ttl, now_unix_ms),
            value: value.to_vec(),
        };
        self.state()
            .kv
            .entry(ns.to_owned())
            .or_default()
            .insert(key.to_owned(), entry);
        Ok(())
    }

    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, Error> {
        let mut state = self.state();
        let Some(entries) = state.kv.get_mut(ns) else {
            return Ok(false);
        };
        let removed = entries.remove(key).is_some();
        if entries.is_empty() {
            state.kv.remove(ns);
        }
        Ok(removed)
    }

    fn kv_list(
        &self,
        ns: &str,
        prefix: &str,
        now_unix_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let state = self.state();
        let Some(entries) = state.kv.get(ns) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| !kv::is_expired(e.expires_at, now_unix_ms))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect())
    }

    fn kv_sweep_expired(&self, now_unix_ms: u64) -> Result<usize, Error> {
        let mut state = self.state();
        let mut removed = 0;
        state.kv.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|_, e| !kv::is_expired(e.expires_at, now_unix_ms));
            removed += before - entries.len();
            !entries.is_empty()
        });
        Ok(removed)
    }
}

impl CdrStore for MemoryStorage {
    fn append_cdr(&self, record: &serde_json::Value) -> Result<u64, Error> {
        let mut state = self.state();
        state.cdrs.push(record.clone());
        Ok(state.cdrs.len() as u64)
    }

    fn recent_cdrs(&self, limit: usize) -> Result<Vec<CdrEntry>, Error> {
        let state = self.state();
        Ok(state
            .cdrs
            .iter()
            .enumerate()
            .rev()
            .take(limit)
            .map(|(i, record)| CdrEntry {
                id: i as u64 + 1,
                record: record.clone(),
            })
            .collect())
    }
}
