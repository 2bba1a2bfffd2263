//! `storage`: what Switchboard keeps across restarts — the registrar's
//! location bindings (RFC 3261 §10), the namespaced key-value store that Lua
//! plugins use (`kv` in the dialplan API), and call detail records. It is the
//! persistence layer only: it knows nothing of SIP text or clocks, and
//! its API is synchronous (the PostgreSQL backend runs its async client on
//! a small tokio runtime of its own, out of its callers' sight).
//!
//! Each kind of data is a trait ([`LocationStore`], [`KvStore`],
//! [`CdrStore`]; [`Storage`] is all three) with three backends that pass one
//! contract test suite (`tests/contract.rs`):
//!
//! - [`RedbStorage`]: the embedded default, one redb file (ACID) and its
//!   binding log beside it. Every write is durable before the call returns,
//!   so a binding is on disk before the registrar sends its 200 OK. A file
//!   that is in use by another process, or that is not a Switchboard
//!   database, is a clear [`Error`] at open, never a panic.
//! - [`PostgresStorage`]: a PostgreSQL database that several Switchboards
//!   can share (`tokio-postgres` with a `deadpool` pool; schema migrations
//!   at open). An unreachable database is [`Error::Unavailable`]
//!   ([`Error::is_unavailable`]), and the store recovers by itself when it
//!   returns.
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
//! ## Durable registrations at in-memory speed
//!
//! A power cut that brings thousands of phones back at once makes the
//! registrar's write path the bottleneck, so the redb backend does not
//! commit its B-tree per registration. Measured before this design
//! (`bench/register.sh`, 1,000 AORs, `perf record` on the server, one
//! core): a registration cost 190–200 µs of CPU with redb against 45–50
//! with the memory backend, and the core, not the disk's latency, was the
//! limit. Of the server's CPU, the redb commit thread took 38% (the kernel
//! work of `fdatasync` writing back the pages a copy-on-write commit
//! dirties, their `pwrite`s, redb's page allocation), the `spawn_blocking`
//! of each REGISTER's binding read 11%, and the context switches of those
//! two thread hops 17%.
//!
//! So [`RedbStorage`] keeps the location table in memory (loaded at open)
//! and makes each change durable by appending one record per changed
//! binding to an append-only log (`binding_log`), one `fdatasync` per
//! batch, before applying it in memory (a refresh writes only the binding
//! it refreshed); every 8 MiB of log, the AORs it touched are
//! written into the B-tree in one transaction and the log starts over.
//! Reads of bindings never touch the disk
//! ([`LocationStore::reads_block`] is `false`). The registrar's group
//! commit gathers every REGISTER arriving within a millisecond into one
//! batch, whatever its AOR. A REGISTER's 200 OK still waits for the sync
//! of its record: "a 200 OK means the binding survives kill -9" holds
//! (`tests/registrar.rs` kills the server under load to check it). KV
//! entries and CDRs, written far less often, stay one transaction each.
//!
//! Measured after (same benchmark, `bench/README.md`): 59–64 µs of CPU per
//! durable registration against 41–46 in memory (Kamailio, in memory:
//! 50–51); redb's highest passing rate went from 4,000/s to 10,000–16,000/s,
//! Kamailio's 10,000–16,000/s in the same runs on a shared machine.
//!
//! Other designs weighed: larger group commits alone keep the B-tree's
//! per-commit page writes and the read hop; writing only the expiry on a
//! refresh still commits the B-tree; `Durability::None` commits would answer
//! before the disk has the binding.
//!
//! Read [`location`] first (the [`Binding`] the registrar stores), then
//! [`kv`] and [`cdr`], then the backends.

mod binding_log;
pub mod cdr;
mod error;
pub mod kv;
pub mod location;
mod memory;
mod postgres;
mod redb_store;

pub use cdr::{CdrEntry, CdrStore};
pub use error::Error;
pub use kv::KvStore;
pub use location::{Binding, LocationStore};
pub use memory::MemoryStorage;
pub use postgres::{PostgresOptions, PostgresStorage, describe_url};
pub use redb_store::RedbStorage;

/// Every store Switchboard needs, in one object: what the binary opens at
/// start-up and hands out as `Arc<dyn Storage>` (or, upcast, as
/// `Arc<dyn LocationStore>` and so on).
pub trait Storage: LocationStore + KvStore + CdrStore {}

impl<T: LocationStore + KvStore + CdrStore + ?Sized> Storage for T {}
