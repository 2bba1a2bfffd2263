//! The embedded backend: one redb file and its binding log, every write durable before the call returns.
//!
//! Bindings live in memory and in the log (`binding_log`, the file's
//! name with `-log` appended) first, and reach the B-tree at checkpoints:
//! every 8 MiB of log, at close, and at open after a crash (the log is
//! replayed, then checkpointed). The tables below are as a checkpoint
//! leaves them; KV entries and CDRs are committed to them directly.
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
use std::collections::BTreeMap;
use std::panic::UnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, StorageError, Table,
    TableDefinition, TableHandle, WriteTransaction,
};

use crate::Error;
use crate::binding_log::{BindingLog, Change, LogError};
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

/// Log bytes that trigger a checkpoint into the B-tree (about 20,000
/// registrations; replaying that much at start takes well under a second).
const CHECKPOINT_BYTES: u64 = 8 << 20;

/// The binding log's file size: a checkpoint's worth and room for the
/// largest batch that can follow it (the registrar commits at most 512
/// REGISTERs at once).
const LOG_CAPACITY: u64 = CHECKPOINT_BYTES + (2 << 20);

/// Every binding, AOR → contact → binding: the location table as of the
/// last durable write.
type Bindings = BTreeMap<String, BTreeMap<String, Binding>>;

/// Storage in one redb file (plus its binding log): ACID, crash-safe, one
/// process at a time.
///
/// Each write is durable (synced) before the method returns, so it blocks
/// for a disk flush: call it from `spawn_blocking` or a dedicated thread in
/// async code. Binding reads come from memory and never wait for the disk
/// ([`LocationStore::reads_block`] is `false`); other reads run
/// concurrently with each other and with a write in progress.
pub struct RedbStorage {
    db: Database,
    path: PathBuf,
    /// The location table in memory, updated after each durable write.
    bindings: RwLock<Bindings>,
    /// The binding log; its lock also orders binding writes.
    log: Mutex<BindingLog>,
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
        init(&db, &path)?;
        let bindings = load_bindings(&db, &path)?;
        let log_path = BindingLog::path_for(&path);
        let (log, records) = BindingLog::open(&log_path, LOG_CAPACITY).map_err(|e| match e {
            LogError::Io(source) => Error::Io {
                path: log_path.clone(),
                source,
            },
            LogError::Decode { offset, reason } => Error::Decode {
                path: log_path.clone(),
                what: "binding log record",
                key: format!("at byte {offset}"),
                reason,
            },
        })?;
        let storage = Self {
            db,
            path,
            bindings: RwLock::new(bindings),
            log: Mutex::new(log),
        };
        if !records.is_empty() {
            tracing::info!(
                records = records.len(),
                "storage: replaying the binding log left by the last run"
            );
            let mut log = storage.log();
            apply_changes(&mut storage.bindings_mut(), records);
            storage.checkpoint(&mut log)?;
        }
        Ok(storage)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The binding log, locked (a panic elsewhere leaves it consistent:
    /// every change to it is complete or undone before it could panic).
    fn log(&self) -> MutexGuard<'_, BindingLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bindings(&self) -> RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn bindings_mut(&self) -> std::sync::RwLockWriteGuard<'_, Bindings> {
        self.bindings
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the current bindings of every AOR logged since the last
    /// checkpoint into the B-tree in one durable transaction, then empties
    /// the log. Called with the log locked.
    fn checkpoint(&self, log: &mut BindingLog) -> Result<(), Error> {
        let dirty = log.take_dirty();
        let written = {
            let bindings = self.bindings();
            self.write("checkpointing the binding log", |txn| {
                let mut table = txn.open_table(BINDINGS)?;
                let mut index = txn.open_table(BINDING_EXPIRY)?;
                for aor in &dirty {
                    remove_aor(&mut table, &mut index, aor)?;
                    for b in bindings.get(aor).into_iter().flat_map(BTreeMap::values) {
                        put_binding(&mut table, &mut index, b)?;
                    }
                }
                Ok(())
            })
        };
        if let Err(e) = written {
            log.restore_dirty(dirty);
            return Err(e);
        }
        log.reset().map_err(|source| Error::Io {
            path: log.path().to_path_buf(),
            source,
        })
    }

    /// Changes bindings durably: `change` reads the current table and
    /// returns the changes to make, plus its result. The changes are
    /// appended to the log and synced, then applied in memory; a full log
    /// is checkpointed.
    fn change_bindings<T>(
        &self,
        change: impl FnOnce(&Bindings) -> Result<(Vec<Change>, T), Error>,
    ) -> Result<T, Error> {
        let mut log = self.log();
        let (records, out) = change(&self.bindings())?;
        if records.is_empty() {
            return Ok(out);
        }
        if let Err(source) = log.append(&records) {
            let error = Error::Io {
                path: log.path().to_path_buf(),
                source,
            };
            // Fold the log into the B-tree and start it afresh, so that a
            // disk that fails for a moment does not leave the log refusing
            // writes until a restart. If this fails too, the log stays as
            // it is (intact, or refusing appends when its end is unknown).
            let _ = self.checkpoint(&mut log);
            return Err(error);
        }
        apply_changes(&mut self.bindings_mut(), records);
        if log.len() >= CHECKPOINT_BYTES
            && let Err(e) = self.checkpoint(&mut log)
        {
            // The change itself is durable in the log; the next write
            // tries the checkpoint again.
            tracing::warn!(error = %e, "storage: binding log checkpoint failed");
        }
        Ok(out)
    }
}

impl Drop for RedbStorage {
    /// Folds the binding log into the B-tree, so that a clean shutdown
    /// leaves a file that needs no replay (a crash leaves the log, which
    /// the next open replays).
    fn drop(&mut self) {
        let mut log = self.log();
        if log.len() > 0
            && let Err(e) = self.checkpoint(&mut log)
        {
            tracing::warn!(error = %e, "storage: binding log checkpoint at close failed; it is replayed at the next start");
        }
    }
}

/// Applies logged changes to the table in memory, in order.
fn apply_changes(bindings: &mut Bindings, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::Put(b) => {
                bindings
                    .entry(b.aor.clone())
                    .or_default()
                    .insert(b.contact.clone(), b);
            }
            Change::Remove { aor, contact } => {
                if let Some(contacts) = bindings.get_mut(&aor) {
                    contacts.remove(&contact);
                    if contacts.is_empty() {
                        bindings.remove(&aor);
                    }
                }
            }
        }
    }
}

/// The changes that turn `old`, the bindings of `aor`, into `new` (which
/// all belong to `aor`): a removal for each contact that is gone, the new
/// binding for each contact that is new or differs. A binding that stays
/// as it was costs nothing.
fn diff(
    aor: &str,
    old: Option<&BTreeMap<String, Binding>>,
    new: &[Binding],
    out: &mut Vec<Change>,
) {
    for contact in old.into_iter().flat_map(BTreeMap::keys) {
        if !new.iter().any(|b| &b.contact == contact) {
            out.push(Change::Remove {
                aor: aor.to_owned(),
                contact: contact.clone(),
            });
        }
    }
    for (i, b) in new.iter().enumerate() {
        // A contact listed twice: the last one counts, as in the B-tree.
        let last = !new[i + 1..].iter().any(|later| later.contact == b.contact);
        if last && old.and_then(|o| o.get(&b.contact)) != Some(b) {
            out.push(Change::Put(b.clone()));
        }
    }
}

/// The bindings table read into memory. A record that cannot be decoded is
/// left in the file and skipped, with a warning.
fn load_bindings(db: &Database, path: &Path) -> Result<Bindings, Error> {
    let fail = |e: redb::Error| Error::Database {
        path: path.to_path_buf(),
        action: "loading the bindings",
        source: Box::new(e),
    };
    let txn = db.begin_read().map_err(|e| fail(e.into()))?;
    let table = txn.open_table(BINDINGS).map_err(|e| fail(e.into()))?;
    let mut bindings = Bindings::new();
    for item in table.iter().map_err(|e| fail(e.into()))? {
        let (key, value) = item.map_err(|e| fail(e.into()))?;
        let (aor, contact) = key.value();
        match decode_binding(aor, contact, value.value()) {
            Ok(b) => {
                bindings
                    .entry(aor.to_owned())
                    .or_default()
                    .insert(contact.to_owned(), b);
            }
            Err(_) => tracing::warn!(
                path = %path.display(),
                aor,
                contact,
                "storage: a stored binding cannot be read and is ignored"
            ),
        }
    }
    Ok(bindings)
}

/// Checks that the file holds Switchboard's tables and format, and creates
/// the tables in a new file.
fn init(db: &Database, path: &Path) -> Result<(), Error> {
    let fail = |e: redb::Error| Error::Database {
        path: path.to_path_buf(),
        action: "opening",
        source: Box::new(e),
    };
    let not_ours = |reason: String| Error::NotADatabase {
        path: path.to_path_buf(),
        reason,
    };
    let txn = db.begin_write().map_err(|e| fail(e.into()))?;
    let tables = txn.list_tables().map_err(|e| fail(e.into()))?;
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
        Err(e) => return Err(fail(e)),
    };
    if let Some(found) = found.filter(|&f| f > FORMAT) {
        return Err(Error::NewerFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT,
        });
    }
    txn.commit().map_err(|e| fail(e.into()))
}

impl RedbStorage {
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

/// The bindings of `aor` in the table, ordered by contact.
fn listed(bindings: &Bindings, aor: &str) -> Vec<Binding> {
    bindings
        .get(aor)
        .map(|contacts| contacts.values().cloned().collect())
        .unwrap_or_default()
}

impl LocationStore for RedbStorage {
    fn reads_block(&self) -> bool {
        false
    }

    fn put(&self, binding: &Binding) -> Result<(), Error> {
        self.change_bindings(|table| {
            let same = table
                .get(&binding.aor)
                .and_then(|contacts| contacts.get(&binding.contact))
                == Some(binding);
            let changes = if same {
                Vec::new()
            } else {
                vec![Change::Put(binding.clone())]
            };
            Ok((changes, ()))
        })
    }

    fn replace_aor(&self, aor: &str, bindings: &[Binding]) -> Result<Vec<Binding>, Error> {
        location::check_same_aor(aor, bindings)?;
        self.change_bindings(|table| {
            let mut changes = Vec::new();
            diff(aor, table.get(aor), bindings, &mut changes);
            Ok((changes, listed(table, aor)))
        })
    }

    fn replace_aors(&self, batch: &[(String, Vec<Binding>)]) -> Result<(), Error> {
        for (aor, bindings) in batch {
            location::check_same_aor(aor, bindings)?;
        }
        self.change_bindings(|table| {
            let mut changes = Vec::new();
            // An AOR listed twice is diffed against what its earlier entry
            // left, as if the entries were applied one by one.
            let mut seen: Vec<(&str, BTreeMap<String, Binding>)> = Vec::new();
            for (aor, bindings) in batch {
                let old = match seen.iter().rposition(|(a, _)| a == aor) {
                    Some(i) => seen.get(i).map(|(_, set)| set),
                    None => table.get(aor),
                };
                diff(aor, old, bindings, &mut changes);
                if batch.iter().filter(|(a, _)| a == aor).count() > 1 {
                    let set = bindings
                        .iter()
                        .map(|b| (b.contact.clone(), b.clone()))
                        .collect();
                    seen.push((aor, set));
                }
            }
            Ok((changes, ()))
        })
    }

    fn remove(&self, aor: &str, contact: &str) -> Result<Option<Binding>, Error> {
        self.change_bindings(|table| {
            let old = table.get(aor).and_then(|c| c.get(contact)).cloned();
            let changes = match old {
                Some(_) => vec![Change::Remove {
                    aor: aor.to_owned(),
                    contact: contact.to_owned(),
                }],
                None => Vec::new(),
            };
            Ok((changes, old))
        })
    }

    fn remove_all(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        self.change_bindings(|table| {
            let mut changes = Vec::new();
            diff(aor, table.get(aor), &[], &mut changes);
            Ok((changes, listed(table, aor)))
        })
    }

    fn list(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        Ok(listed(&self.bindings(), aor))
    }

    fn list_all(&self) -> Result<Vec<Binding>, Error> {
        Ok(self
            .bindings()
            .values()
            .flat_map(|contacts| contacts.values().cloned())
            .collect())
    }

    fn sweep_expired(&self, now_unix_ms: u64) -> Result<Vec<Binding>, Error> {
        self.change_bindings(|table| {
            let mut expired: Vec<Binding> = table
                .values()
                .flat_map(BTreeMap::values)
                .filter(|b| b.is_expired(now_unix_ms))
                .cloned()
                .collect();
            expired.sort_by(|a, b| {
                (a.expires_at_ms, &a.aor, &a.contact).cmp(&(b.expires_at_ms, &b.aor, &b.contact))
            });
            let changes = expired
                .iter()
                .map(|b| Change::Remove {
                    aor: b.aor.clone(),
                    contact: b.contact.clone(),
                })
                .collect();
            Ok((changes, expired))
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
