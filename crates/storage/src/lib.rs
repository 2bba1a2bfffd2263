//! `storage`: what Switchboard keeps across restarts — the registrar's
//! location bindings (RFC 3261 §10), the namespaced key-value store that Lua
//! plugins use (`kv` in the dialplan API), and call detail records. It is the
//! persistence layer only: it knows nothing of SIP text, clocks or tokio.
//!
//! Each kind of data is a trait ([`LocationStore`], [`KvStore`],
//! [`CdrStore`]; [`Storage`] is all three) with two backends that pass one
//! contract test suite (`tests/contract.rs`):
//!
//! - [`RedbStorage`]: the embedded default, one redb file (ACID). Every write
//!   is durably committed before the call returns, so a binding is on disk
//!   before the registrar sends its 200 OK. A file that is in use by another
//!   process, or that is not a Switchboard database, is a clear [`Error`] at
//!   open, never a panic.
//! - [`MemoryStorage`]: the same contract in memory, for tests and for
//!   setups that want nothing on disk.
//!
//! Time is always passed in as unix milliseconds (`now_unix_ms`): no
//! implementation reads a clock, so expiry is deterministic under test.
//!
//! The API is synchronous. A redb commit waits for `fsync`, so async callers
//! should call writes through `tokio::task::spawn_blocking` (or a dedicated
//! writer thread) rather than on a runtime worker; reads are short and do not
//! wait for the disk to sync.
//!
//! Read [`location`] first (the [`Binding`] the registrar stores), then
//! [`kv`] and [`cdr`], then the two backends.

mod binding_log;
pub mod cdr;
mod error;
pub mod kv;
pub mod location;
mod memory;
mod redb_store;

pub use cdr::{CdrEntry, CdrStore};
pub use error::Error;
pub use kv::KvStore;
pub use location::{Binding, LocationStore};
pub use memory::MemoryStorage;
pub use redb_store::RedbStorage;

/// Every store Switchboard needs, in one object: what the binary opens at
/// start-up and hands out as `Arc<dyn Storage>` (or, upcast, as
/// `Arc<dyn LocationStore>` and so on).
pub trait Storage: LocationStore + KvStore + CdrStore {}

impl<T: LocationStore + KvStore + CdrStore + ?Sized> Storage for T {}
