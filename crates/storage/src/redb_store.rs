//! The embedded backend: one redb file, every write durably committed before the call returns.
//!
//! Layout (format 1): `bindings` maps (AOR, contact) to the binding as JSON;
//! `binding_expiry` indexes (expires_at, AOR, contact) so a sweep reads only
//! what is due; `kv` maps (namespace, key) to an 8-byte big-endian expiry
//! (`u64::MAX` for none) followed by the value, with `kv_expiry` as its
//! index; `cdrs` maps a sequence number to the record as JSON; `meta` holds
//! the format number. An index entry that disagrees with its record (left by
//! a record that could not be decoded when it was replaced) is dropped by the
//! next sweep without touching the record.
//!
//! Records are JSON rather than postcard or bincode: JSON is
//! self-describing, so a field added to [`Binding`] later (with
//! `#[serde(default)]`) still reads files written today without a
//! migration; CDRs are arbitrary `serde_json::Value`s, which a
//! non-self-describing format cannot decode; and the microsecond or two it
//! costs per record is noise next to the `fsync` of every commit.

use std::cell::Cell;
use std::panic::UnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, StorageError, Table,
    TableDefinition, TableHandle, WriteTransaction,
};

use crate::Error;
use crate::cdr::{CdrEntry, CdrStore};
use crate::kv::{self, KvStore};
use crate::location::{self, Binding, LocationStore};

/// The file format this build writes and reads.
const FORMAT: u64 = 1;
const FORMAT_KEY: &str = "format";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BINDINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bindings");
const BINDING_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("binding_expiry");
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
const KV_EXPIRY: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("kv_expiry");
const CDRS: TableDefinition<u64, &[u8]> = TableDefinition::new("cdrs");

const TABLES: [&str; 6] = [
    "meta",
    "bindings",
    "binding_expiry",
    "kv",
    "kv_expiry",
    "cdrs",
];

/// A KV value's stored expiry when it has no TTL.
const NO_EXPIRY: u64 = u64::MAX;

type BindingTable<'t> = Table<'t, (&'static str, &'static str), &'static [u8]>;
type ExpiryTable<'t> = Table<'t, (u64, &'static str, &'static str), ()>;
type KvTable<'t> = Table<'t, (&'static str, &'static str), &'static [u8]>;

/// Storage in one redb file: ACID, crash-safe, one process at a time.
///
/// Each write is its own transaction, committed with `fsync` before the
/// method returns, so it blocks for a disk flush: call it from
/// `spawn_blocking` or a dedicated thread in async code. Reads run
/// concurrently with each other and with a write in progress.
pub struct RedbStorage {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStorage {
    /// Opens the database at `path`, creating the file and its parent
    /// directories if they do not exist.
    ///
    /// Fails with [`Error::InUse`] when another process (or another
    /// `RedbStorage` in this one) has the file open, with
    /// [`Error::NotADatabase`] when the file is something else or is
    /// damaged, and with [`Error::NewerFormat`] when a newer Switchboard wrote
    /// it. If the previous owner crashed, opening repairs the file first,
    /// which can take a moment on a large file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Owner only: the file holds registrations, CDRs and the
            // dialplan's data (and, for the demo office, its passwords).
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|source| Error::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // A new file is made 0600 before redb writes anything to it (an
        // existing one keeps the mode its owner gave it).
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::CreateFile {
                    path: path.clone(),
                    source,
                });
            }
        }
        // The whole file's checksums are verified at open, so that damage is
        // found here, as one clear error, and not later by a read in the
        // middle of a call. redb 4 can panic on some damaged pages instead
        // of returning an error: a panic while opening is reported as a
        // damaged file like any other.
        let opened = catch_quietly(|| {
            let mut db = Database::create(&path)?;
            let clean = db.check_integrity()?;
            Ok::<_, DatabaseError>((db, clean))
        });
        let db = match opened {
            Ok(Ok((db, clean))) => {
                if !clean {
                    tracing::warn!(
                        path = %path.display(),
                        "storage file was damaged and has been repaired to its last intact commit"
                    );
                }
                db
            }
            Ok(Err(e)) => return Err(open_error(path, e)),
            Err(_) => {
                return Err(Error::NotADatabase {
                    path,
                    reason: "the storage engine failed while reading it".to_owned(),
                });
            }
        };
        let storage = Self { db, path };
        storage.init()?;
        Ok(storage)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the file holds Switchboard's tables and format, and
    /// creates the tables in a new file.
    fn init(&self) -> Result<(), Error> {
        let not_ours = |reason: String| Error::NotADatabase {
            path: self.path.clone(),
            reason,
        };
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.fail("opening", e.into()))?;
        let tables = txn
            .list_tables()
            .map_err(|e| self.fail("opening", e.into()))?;
        for table in tables {
            if !TABLES.contains(&table.name()) {
                return Err(not_ours(format!(
                    "it holds a table `{}` that Switchboard does not use \
                     (is it another program's database?)",
                    table.name()
                )));
            }
        }
        let opened = (|| -> Result<Option<u64>, redb::Error> {
            txn.open_table(BINDINGS)?;
            txn.open_table(BINDING_EXPIRY)?;
            txn.open_table(KV)?;
            txn.open_table(KV_EXPIRY)?;
            txn.open_table(CDRS)?;
            let mut meta = txn.open_table(META)?;
            let found = meta.get(FORMAT_KEY)?.map(|v| v.value());
            if found.is_none() {
                meta.insert(FORMAT_KEY, FORMAT)?;
            }
            Ok(found)
        })();
        let found = match opened {
            Ok(found) => found,
            Err(
                e @ (redb::Error::TableTypeMismatch { .. }
                | redb::Error::TableIsMultimap(_)
                | redb::Error::TableIsNotMultimap(_)
                | redb::Error::TypeDefinitionChanged { .. }),
            ) => return Err(not_ours(format!("its tables have another layout ({e})"))),
            Err(e) => return Err(self.fail("opening", TxError::Redb(e))),
        };
        if let Some(found) = found.filter(|&f| f > FORMAT) {
            return Err(Error::NewerFormat {
                path: self.path.clone(),
                found,
                supported: FORMAT,
            });
        }
        txn.commit().map_err(|e| self.fail("opening", e.into()))
    }

    /// Runs `f` in a write transaction and commits it durably.
    fn write<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        let run = || -> Result<T, TxError> {
            let txn = self.db.begin_write()?;
            // On error the transaction is dropped, which aborts it.
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.fail(action, e))
    }

    /// Runs `f` in a read transaction.
    fn read<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&ReadTransaction) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        let run = || -> Result<T, TxError> { f(&self.db.begin_read()?) };
        run().map_err(|e| self.fail(action, e))
    }

    /// Turns an error inside a transaction into the public [`Error`].
    fn fail(&self, action: &'static str, e: TxError) -> Error {
        let path = self.path.clone();
        match e {
            TxError::Redb(source) => Error::Database {
                path,
                action,
                source: Box::new(source),
            },
            TxError::Decode { what, key, reason } => Error::Decode {
                path,
                what,
                key,
                reason,
            },
        }
    }
}

thread_local! {
    /// Set while this thread runs [`catch_quietly`].
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Runs `f`, turning a panic into `Err` without the panic message on stderr,
/// so that a damaged file at start-up is the one line of [`Error`] and not a
/// panic report followed by it.
///
/// The first call wraps the process's panic hook once: panics on a thread
/// inside `catch_quietly` are not reported, every other panic goes to the
/// hook that was installed before. A hook installed later replaces the
/// wrapper, which only brings the engine's message back.
fn catch_quietly<T>(f: impl FnOnce() -> T + UnwindSafe) -> std::thread::Result<T> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
    let result = std::panic::catch_unwind(f);
    QUIET.with(|quiet| quiet.set(false));
    result
}

/// Maps a failure to open the file to what the user should do about it.
fn open_error(path: PathBuf, e: DatabaseError) -> Error {
    match e {
        DatabaseError::DatabaseAlreadyOpen => Error::InUse { path },
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::NotADatabase {
                path,
                reason: source.to_string(),
            }
        }
        DatabaseError::Storage(StorageError::Io(source)) => Error::Io { path, source },
        DatabaseError::Storage(StorageError::Corrupted(reason)) => {
            Error::NotADatabase { path, reason }
        }
        DatabaseError::UpgradeRequired(version) => Error::NotADatabase {
            path,
            reason: format!(
                "it uses the old redb file format {version}, which this build cannot read"
            ),
        },
        other => Error::Database {
            path,
            action: "opening",
            source: Box::new(other.into()),
        },
    }
}

/// An error inside a transaction, before it gets the file's path and action.
enum TxError {
    Redb(redb::Error),
    Decode {
        what: &'static str,
        key: String,
        reason: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for TxError {
            fn from(e: $t) -> Self {
                TxError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn encode_binding(b: &Binding) -> Result<Vec<u8>, TxError> {
    serde_json::to_vec(b).map_err(|e| TxError::Decode {
        what: "binding",
        key: format!("{} {}", b.aor, b.contact),
        reason: format!("cannot encode: {e}"),
    })
}

fn decode_binding(aor: &str, contact: &str, bytes: &[u8]) -> Result<Binding, TxError> {
    serde_json::from_slice(bytes).map_err(|e| TxError::Decode {
        what: "binding",
        key: format!("{aor} {contact}"),
        reason: e.to_string(),
    })
}

/// Splits a stored KV value into its expiry and its bytes.
fn split_kv(ns: &str, key: &str, bytes: &[u8]) -> Result<(Option<u64>, Vec<u8>), TxError> {
    match bytes.split_first_chunk::<8>() {
        Some((head, value)) => {
            let at = u64::from_be_bytes(*head);
            Ok(((at != NO_EXPIRY).then_some(at), value.to_vec()))
        }
        None => Err(TxError::Decode {
            what: "kv entry",
            key: format!("{ns}/{key}"),
            reason: format!("{} bytes, shorter than its 8-byte header", bytes.len()),
        }),
    }
}

/// The stored expiry of a KV value, or `None` if it is too short to have one.
fn kv_expiry_of(bytes: &[u8]) -> Option<u64> {
    bytes
        .split_first_chunk::<8>()
        .map(|(head, _)| u64::from_be_bytes(*head))
}

/// Stores `b`, replacing any binding with the same AOR and contact, and keeps
/// the expiry index in step.
fn put_binding(
    table: &mut BindingTable<'_>,
    index: &mut ExpiryTable<'_>,
    b: &Binding,
) -> Result<(), TxError> {
    let bytes = encode_binding(b)?;
    let key = (b.aor.as_str(), b.contact.as_str());
    let old = table
        .insert(key, bytes.as_slice())?
        .and_then(|old| decode_binding(&b.aor, &b.contact, old.value()).ok());
    // An old record that cannot be decoded is overwritten; its index entry,
    // if any, is dropped by the next sweep (it no longer matches).
    if let Some(old) = old {
        index.remove((old.expires_at_ms, key.0, key.1))?;
    }
    index.insert((b.expires_at_ms, key.0, key.1), ())?;
    Ok(())
}

/// Removes the binding of `aor` to `contact` and its index entry.
fn remove_binding(
    table: &mut BindingTable<'_>,
    index: &mut ExpiryTable<'_>,
    aor: &str,
    contact: &str,
) -> Result<Option<Binding>, TxError> {
    let old = table
        .remove((aor, contact))?
        .and_then(|old| decode_binding(aor, contact, old.value()).ok());
    if let Some(old) = &old {
        index.remove((old.expires_at_ms, aor, contact))?;
    }
    Ok(old)
}

/// The contacts bound to `aor`.
fn contacts_of(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    aor: &str,
) -> Result<Vec<String>, TxError> {
    let mut contacts = Vec::new();
    for item in table.range((aor, "")..)? {
        let (key, _) = item?;
        let (a, contact) = key.value();
        if a != aor {
            break;
        }
        contacts.push(contact.to_owned());
    }
    Ok(contacts)
}

/// Removes every binding of `aor`; returns those that could be decoded.
fn remove_aor(
    table: &mut BindingTable<'_>,
    index: &mut ExpiryTable<'_>,
    aor: &str,
) -> Result<Vec<Binding>, TxError> {
    let mut removed = Vec::new();
    for contact in contacts_of(table, aor)? {
        removed.extend(remove_binding(table, index, aor, &contact)?);
    }
    Ok(removed)
}

/// The index entries due at `now_unix_ms`, as owned keys.
fn due(index: &ExpiryTable<'_>, now_unix_ms: u64) -> Result<Vec<(u64, String, String)>, TxError> {
    let mut due = Vec::new();
    for item in index.iter()? {
        let (key, _) = item?;
        let (at, a, b) = key.value();
        if at > now_unix_ms {
            break;
        }
        due.push((at, a.to_owned(), b.to_owned()));
    }
    Ok(due)
}

impl LocationStore for RedbStorage {
    fn put(&self, binding: &Binding) -> Result<(), Error> {
        self.write("storing a binding", |txn| {
            let mut table = txn.open_table(BINDINGS)?;
            let mut index = txn.open_table(BINDING_EXPIRY)?;
            put_binding(&mut table, &mut index, binding)
        })
    }

    fn replace_aor(&self, aor: &str, bindings: &[Binding]) -> Result<Vec<Binding>, Error> {
        location::check_same_aor(aor, bindings)?;
        self.write("replacing the bindings of an AOR", |txn| {
            let mut table = txn.open_table(BINDINGS)?;
            let mut index = txn.open_table(BINDING_EXPIRY)?;
            let old = remove_aor(&mut table, &mut index, aor)?;
            for b in bindings {
                put_binding(&mut table, &mut index, b)?;
            }
            Ok(old)
        })
    }

    fn replace_aors(&self, batch: &[(String, Vec<Binding>)]) -> Result<(), Error> {
        for (aor, bindings) in batch {
            location::check_same_aor(aor, bindings)?;
        }
        self.write("replacing the bindings of several AORs", |txn| {
            let mut table = txn.open_table(BINDINGS)?;
            let mut index = txn.open_table(BINDING_EXPIRY)?;
            for (aor, bindings) in batch {
                remove_aor(&mut table, &mut index, aor)?;
                for b in bindings {
                    put_binding(&mut table, &mut index, b)?;
                }
            }
            Ok(())
        })
    }

    fn remove(&self, aor: &str, contact: &str) -> Result<Option<Binding>, Error> {
        self.write("removing a binding", |txn| {
            let mut table = txn.open_table(BINDINGS)?;
            let mut index = txn.open_table(BINDING_EXPIRY)?;
            remove_binding(&mut table, &mut index, aor, contact)
        })
    }

    fn remove_all(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        self.write("removing the bindings of an AOR", |txn| {
            let mut table = txn.open_table(BINDINGS)?;
            let mut index = txn.open_table(BINDING_EXPIRY)?;
            remove_aor(&mut table, &mut index, aor)
        })
    }

    fn list(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        self.read("listing bindings", |txn| {
            let table = txn.open_table(BINDINGS)?;
            let mut out = Vec::new();
            for item in table.range((aor, "")..)? {
                let (key, value) = item?;
                let (a, contact) = key.value();
                if a != aor {
                    break;
                }
                out.push(decode_binding(a, contact, value.value())?);
            }
            Ok(out)
        })
    }

    fn list_all(&self) -> Result<Vec<Binding>, Error> {
        self.read("listing bindings", |txn| {
            let table = txn.open_table(BINDINGS)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (key, value) = item?;
                let (aor, contact) = key.value();
                out.push(decode_binding(aor, contact, value.value())?);
            }
            Ok(out)
        })
    }

    fn sweep_expired(&self, now_unix_ms: u64) -> Result<Vec<Binding>, Error> {
        self.write("removing expired bindings", |txn| {
            let mut table = txn.open_table(BINDINGS)?;
            let mut index = txn.open_table(BINDING_EXPIRY)?;
            let mut expired = Vec::new();
            for (at, aor, contact) in due(&index, now_unix_ms)? {
                index.remove((at, aor.as_str(), contact.as_str()))?;
                let stored = table
                    .get((aor.as_str(), contact.as_str()))?
                    .map(|v| decode_binding(&aor, &contact, v.value()));
                match stored {
                    // A stale index entry: the binding was refreshed.
                    Some(Ok(b)) if b.expires_at_ms != at => {}
                    Some(Ok(b)) => {
                        table.remove((aor.as_str(), contact.as_str()))?;
                        expired.push(b);
                    }
                    // Due by its index and unreadable: it goes too.
                    Some(Err(_)) => {
                        table.remove((aor.as_str(), contact.as_str()))?;
                    }
                    None => {}
                }
            }
            Ok(expired)
        })
    }
}

/// Sets `(ns, key)` to `stored` (header and value) and keeps the KV expiry
/// index in step.
fn put_kv(
    table: &mut KvTable<'_>,
    index: &mut ExpiryTable<'_>,
    ns: &str,
    key: &str,
    stored: Option<&[u8]>,
) -> Result<bool, TxError> {
    let old = match stored {
        Some(bytes) => table
            .insert((ns, key), bytes)?
            .map(|v| kv_expiry_of(v.value())),
        None => table.remove((ns, key))?.map(|v| kv_expiry_of(v.value())),
    };
    if let Some(Some(at)) = old.filter(|at| *at != Some(NO_EXPIRY)) {
        index.remove((at, ns, key))?;
    }
    if let Some(at) = stored.and_then(kv_expiry_of).filter(|&at| at != NO_EXPIRY) {
        index.insert((at, ns, key), ())?;
    }
    Ok(old.is_some())
}

impl KvStore for RedbStorage {
    fn kv_get(&self, ns: &str, key: &str, now_unix_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.read("reading a kv entry", |txn| {
            let table = txn.open_table(KV)?;
            let Some(stored) = table.get((ns, key))? else {
                return Ok(None);
            };
            let (expires_at, value) = split_kv(ns, key, stored.value())?;
            Ok((!kv::is_expired(expires_at, now_unix_ms)).then_some(value))
        })
    }

    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now_unix_ms: u64,
    ) -> Result<(), Error> {
        let at = kv::expiry(ttl, now_unix_ms).unwrap_or(NO_EXPIRY);
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&at.to_be_bytes());
        stored.extend_from_slice(value);
        self.write("storing a kv entry", |txn| {
            let mut table = txn.open_table(KV)?;
            let mut index = txn.open_table(KV_EXPIRY)?;
            put_kv(&mut table, &mut index, ns, key, Some(&stored))?;
            Ok(())
        })
    }

    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, Error> {
        self.write("deleting a kv entry", |txn| {
            let mut table = txn.open_table(KV)?;
            let mut index = txn.open_table(KV_EXPIRY)?;
            put_kv(&mut table, &mut index, ns, key, None)
        })
    }

    fn kv_list(
        &self,
        ns: &str,
        prefix: &str,
        now_unix_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.read("listing kv entries", |txn| {
            let table = txn.open_table(KV)?;
            let mut out = Vec::new();
            for item in table.range((ns, prefix)..)? {
                let (k, v) = item?;
                let (n, key) = k.value();
                if n != ns || !key.starts_with(prefix) {
                    break;
                }
                let (expires_at, value) = split_kv(n, key, v.value())?;
                if !kv::is_expired(expires_at, now_unix_ms) {
                    out.push((key.to_owned(), value));
                }
            }
            Ok(out)
        })
    }

    fn kv_sweep_expired(&self, now_unix_ms: u64) -> Result<usize, Error> {
        self.write("removing expired kv entries", |txn| {
            let mut table = txn.open_table(KV)?;
            let mut index = txn.open_table(KV_EXPIRY)?;
            let mut removed = 0;
            for (at, ns, key) in due(&index, now_unix_ms)? {
                index.remove((at, ns.as_str(), key.as_str()))?;
                let stored_at = table
                    .get((ns.as_str(), key.as_str()))?
                    .map(|v| kv_expiry_of(v.value()));
                // Only an entry whose own expiry is this one; a stale index
                // entry (the value was set again) leaves the value alone.
                if stored_at.is_some_and(|s| s.is_none() || s == Some(at)) {
                    table.remove((ns.as_str(), key.as_str()))?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }
}

impl CdrStore for RedbStorage {
    fn append_cdr(&self, record: &serde_json::Value) -> Result<u64, Error> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Decode {
            path: self.path.clone(),
            what: "CDR",
            key: "(new)".to_owned(),
            reason: format!("cannot encode: {e}"),
        })?;
        self.write("appending a CDR", |txn| {
            let mut table = txn.open_table(CDRS)?;
            let id = table
                .last()?
                .map_or(1, |(k, _)| k.value().saturating_add(1));
            table.insert(id, bytes.as_slice())?;
            Ok(id)
        })
    }

    fn append_cdrs(&self, records: &[serde_json::Value]) -> Result<Vec<u64>, Error> {
        let encoded = records
            .iter()
            .map(|record| {
                serde_json::to_vec(record).map_err(|e| Error::Decode {
                    path: self.path.clone(),
                    what: "CDR",
                    key: "(new)".to_owned(),
                    reason: format!("cannot encode: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write("appending CDRs", |txn| {
            let mut table = txn.open_table(CDRS)?;
            let mut next = table
                .last()?
                .map_or(1, |(k, _)| k.value().saturating_add(1));
            let mut ids = Vec::with_capacity(encoded.len());
            for bytes in &encoded {
                table.insert(next, bytes.as_slice())?;
                ids.push(next);
                next = next.saturating_add(1);
            }
            Ok(ids)
        })
    }

    fn recent_cdrs(&self, limit: usize) -> Result<Vec<CdrEntry>, Error> {
        self.read("listing CDRs", |txn| {
            let table = txn.open_table(CDRS)?;
            let mut out = Vec::new();
            for item in table.iter()?.rev().take(limit) {
                let (k, v) = item?;
                let id = k.value();
                let record = serde_json::from_slice(v.value()).map_err(|e| TxError::Decode {
                    what: "CDR",
                    key: id.to_string(),
                    reason: e.to_string(),
                })?;
                out.push(CdrEntry { id, record });
            }
            Ok(out)
        })
    }
}
