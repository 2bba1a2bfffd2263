//! The redb backend's binding log: an append-only file of binding changes, synced before a write returns, that is folded into the B-tree in large checkpoints.
//!
//! Every change to the location table is written here as records of one
//! binding each, "the binding of (AOR, contact) is now this" or "there is
//! no binding of (AOR, contact)", and `fdatasync`ed before the change is
//! acknowledged. A record is
//!
//! ```text
//! length: u32 LE | crc32(seq, payload): u32 LE | seq: u64 LE | payload: JSON {"Put": binding} or {"Remove": {"aor", "contact"}}
//! ```
//!
//! A refresh of one contact writes one binding, whatever else its AOR
//! holds. Each record is a whole state of its key, not a delta, so
//! replaying the log over the B-tree is idempotent: the last record of a
//! key is its state, whatever the B-tree held.
//!
//! The file is written full of zeros once, at its working size, and then
//! overwritten in place from the start after every checkpoint: a sync then
//! flushes only the data pages written, never the inode (an append that
//! grows a file makes `fdatasync` write its size too, about a third of
//! the sync's cost on ext4). So the file holds older records behind the
//! newest ones. Sequence numbers, which only grow and are never used twice,
//! tell them apart: replay reads records from offset 0 while each has a
//! higher `seq` than its predecessor, and stops at the first that does not,
//! that is short, is zeros (a checkpoint zeroes the first header) or fails
//! its checksum. A crash can leave at most a torn
//! tail, made of records whose sync never returned (never acknowledged);
//! the next append overwrites it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::location::Binding;

/// Bytes before a record's payload: its length, its CRC-32 and its
/// sequence number.
const HEADER: usize = 16;

/// A record whose length field says more than this is damage, not a record.
const MAX_RECORD: usize = 64 << 20;

/// One record: the state of one (AOR, contact) key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// The binding of its (AOR, contact) is now this one.
    Put(Binding),
    /// There is no binding of `aor` to `contact`.
    Remove {
        /// The address of record.
        aor: String,
        /// The contact URI.
        contact: String,
    },
}

impl Change {
    /// The AOR the record is about.
    pub(crate) fn aor(&self) -> &str {
        match self {
            Change::Put(b) => &b.aor,
            Change::Remove { aor, .. } => aor,
        }
    }
}

/// Why opening or replaying the log failed.
#[derive(Debug)]
pub(crate) enum LogError {
    /// Reading, writing or syncing the file failed.
    Io(std::io::Error),
    /// A record with a good checksum that does not decode: written by an
    /// incompatible build, not torn by a crash.
    Decode { offset: u64, reason: String },
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        LogError::Io(e)
    }
}

/// The open log file.
#[derive(Debug)]
pub(crate) struct BindingLog {
    file: File,
    path: PathBuf,
    /// Bytes of valid records at the start of the file: where the next
    /// record goes.
    len: u64,
    /// The sequence number of the next record.
    seq: u64,
    /// AORs with a record since the last checkpoint.
    dirty: HashSet<String>,
    /// Set when a failed write could not be undone: the file's tail is
    /// unknown, so nothing more may be appended behind it.
    broken: bool,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl BindingLog {
    /// The log that belongs to the database at `db_path`: the same name
    /// with `-log` appended (`switchboard.redb-log`).
    pub(crate) fn path_for(db_path: &Path) -> PathBuf {
        let mut name = db_path.as_os_str().to_owned();
        name.push("-log");
        PathBuf::from(name)
    }

    /// Opens (or creates, mode 0600) the log at `path` and returns it with
    /// every intact record in it, oldest first. Everything behind those
    /// records is then overwritten with zeros up to `capacity` bytes (and
    /// synced), so that no older record from before this start can ever
    /// look like the continuation of a newer one.
    pub(crate) fn open(path: &Path, capacity: u64) -> Result<(BindingLog, Vec<Change>), LogError> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid, next_seq) = parse(&bytes)?;
        drop(bytes);
        file.set_len(valid as u64)?;
        {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(valid as u64))?;
        }
        let zeros = vec![0; 64 << 10];
        let mut left = capacity.saturating_sub(valid as u64);
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        let mut log = BindingLog {
            file,
            path: path.to_path_buf(),
            len: valid as u64,
            seq: next_seq,
            dirty: HashSet::new(),
            broken: false,
            buf: Vec::new(),
        };
        log.dirty = records.iter().map(|c| c.aor().to_owned()).collect();
        log.seek_to(log.len)?;
        Ok((log, records))
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of records since the last checkpoint.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The AORs written since the last checkpoint, handed over to it (they
    /// are given back with [`restore_dirty`](Self::restore_dirty) if the
    /// checkpoint fails).
    pub(crate) fn take_dirty(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// Puts back AORs of a checkpoint that failed.
    pub(crate) fn restore_dirty(&mut self, dirty: HashSet<String>) {
        self.dirty.extend(dirty);
    }

    /// Appends `records` and syncs them to disk (`fdatasync`): when this
    /// returns `Ok`, they survive a crash. On error nothing of them counts:
    /// the file is cut back to where it was (or, if even that fails, the
    /// log refuses every later append).
    pub(crate) fn append(&mut self, records: &[Change]) -> std::io::Result<()> {
        if self.broken {
            return Err(std::io::Error::other(
                "an earlier write to it failed and could not be undone; \
                 restart switchboard to recover from the log",
            ));
        }
        self.buf.clear();
        let mut seq = self.seq;
        for change in records {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; HEADER]);
            serde_json::to_writer(&mut self.buf, change).map_err(std::io::Error::other)?;
            let len = u32::try_from(self.buf.len() - start - HEADER)
                .ok()
                .filter(|&l| (l as usize) <= MAX_RECORD)
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "a binding of {} is too large to log",
                        change.aor()
                    ))
                })?;
            self.buf[start + 8..start + HEADER].copy_from_slice(&seq.to_le_bytes());
            let crc = crc32fast::hash(&self.buf[start + 8..]);
            self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
            self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            seq += 1;
        }
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                self.seq = seq;
                self.dirty
                    .extend(records.iter().map(|c| c.aor().to_owned()));
                Ok(())
            }
            Err(e) => {
                // Whatever part of the batch reached the file is a tail
                // that was never acknowledged: the next append overwrites
                // it from the same offset with higher sequence numbers, so
                // replay never takes what is left of it for their
                // continuation (its numbers are not used again).
                self.seq = seq;
                if self.seek_to(self.len).is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Empties the log after a checkpoint has put everything in it into the
    /// B-tree durably: zeroes the first record's header (so replay finds
    /// nothing) and starts writing at offset 0 again.
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        let zeroed = self
            .seek_to(0)
            .and_then(|()| self.file.write_all(&[0; HEADER]))
            .and_then(|()| self.file.sync_data())
            .and_then(|()| self.seek_to(0));
        match zeroed {
            Ok(()) => {
                self.len = 0;
                self.broken = false;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    fn seek_to(&mut self, at: u64) -> std::io::Result<()> {
        use std::io::Seek;
        self.file.seek(std::io::SeekFrom::Start(at)).map(drop)
    }
}

/// The chain of intact records at the start of `bytes`, how many bytes
/// they take, and the sequence number that follows the last.
fn parse(bytes: &[u8]) -> Result<(Vec<Change>, usize, u64), LogError> {
    let mut records = Vec::new();
    let mut at = 0;
    let mut expected: Option<u64> = None;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (len, crc) = (word(0) as usize, word(4));
        if len == 0 || len > MAX_RECORD {
            break;
        }
        let Some(covered) = bytes.get(at + 8..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(covered) != crc {
            break;
        }
        let seq = u64::from(word(8)) | (u64::from(word(12)) << 32);
        if expected.is_some_and(|e| seq < e) {
            // An older record behind the newest ones.
            break;
        }
        let record: Change =
            serde_json::from_slice(&covered[8..]).map_err(|e| LogError::Decode {
                offset: at as u64,
                reason: e.to_string(),
            })?;
        records.push(record);
        expected = Some(seq.wrapping_add(1));
        at += HEADER + len;
    }
    Ok((records, at, expected.unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(aor: &str, contact: &str) -> Binding {
        Binding {
            aor: aor.into(),
            contact: contact.into(),
            expires_at_ms: 60_000,
            q: None,
            call_id: "c".into(),
            cseq: 1,
            path: Vec::new(),
            source: "127.0.0.1:5060".parse().expect("addr"),
            transport: "udp".into(),
            user_agent: None,
            instance: None,
            reg_id: None,
            registered_at_ms: 0,
        }
    }

    fn remove(aor: &str, contact: &str) -> Change {
        Change::Remove {
            aor: aor.into(),
            contact: contact.into(),
        }
    }

    const CAPACITY: u64 = 4096;

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db-log");
        let a = Change::Put(binding("a", "sip:x"));
        let b = remove("b", "sip:y");
        let valid = {
            let (mut log, found) = BindingLog::open(&path, CAPACITY).expect("open");
            assert!(found.is_empty());
            assert_eq!(std::fs::metadata(&path).expect("meta").len(), CAPACITY);
            log.append(std::slice::from_ref(&a)).expect("append");
            log.append(&[b.clone(), a.clone()]).expect("append");
            log.len() as usize
        };
        // A crash in the middle of a later write: the start of a copy of
        // the first record, with the next sequence number's place garbled.
        let mut bytes = std::fs::read(&path).expect("read");
        let first = bytes[..30].to_vec();
        bytes[valid..valid + 30].copy_from_slice(&first);
        std::fs::write(&path, &bytes).expect("write");
        let (mut log, found) = BindingLog::open(&path, CAPACITY).expect("reopen");
        assert_eq!(found, vec![a.clone(), b.clone(), a.clone()]);
        assert_eq!(log.len() as usize, valid);
        // What is appended now follows the intact records.
        log.append(std::slice::from_ref(&b)).expect("append");
        drop(log);
        let (_, found) = BindingLog::open(&path, CAPACITY).expect("reopen");
        assert_eq!(found, vec![a.clone(), b.clone(), a, b]);
    }

    #[test]
    fn a_flipped_byte_ends_the_log_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db-log");
        let a = Change::Put(binding("a", "sip:x"));
        let valid = {
            let (mut log, _) = BindingLog::open(&path, CAPACITY).expect("open");
            log.append(&[a.clone(), a.clone()]).expect("append");
            log.len() as usize
        };
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[valid - 3] ^= 0x20;
        std::fs::write(&path, &bytes).expect("write");
        let (_, found) = BindingLog::open(&path, CAPACITY).expect("reopen");
        assert_eq!(found, vec![a]);
    }

    #[test]
    fn after_a_reset_older_records_behind_the_new_ones_are_not_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db-log");
        let old = Change::Put(binding("old", "sip:x"));
        let new = Change::Put(binding("new", "sip:x"));
        let (mut log, _) = BindingLog::open(&path, CAPACITY).expect("open");
        log.append(&[old.clone(), old.clone(), old.clone()])
            .expect("append");
        assert_eq!(log.take_dirty().len(), 1);
        log.reset().expect("reset");
        assert_eq!(log.len(), 0);
        drop(log);
        // Nothing logged since the checkpoint: nothing to replay.
        let (mut log, found) = BindingLog::open(&path, CAPACITY).expect("reopen");
        assert!(found.is_empty(), "{found:?}");
        log.append(&[old.clone(), old.clone(), old.clone()])
            .expect("append");
        log.reset().expect("reset");
        // The same sizes as the records behind: only the sequence numbers
        // tell the new one from the old ones.
        log.append(std::slice::from_ref(&new)).expect("append");
        drop(log);
        let (_, found) = BindingLog::open(&path, CAPACITY).expect("reopen");
        assert_eq!(found, vec![new]);
    }

    #[test]
    fn a_log_longer_than_its_capacity_still_replays_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db-log");
        let a = Change::Put(binding("a", "sip:x"));
        let batch = vec![a.clone(); 40];
        let (mut log, _) = BindingLog::open(&path, CAPACITY).expect("open");
        log.append(&batch).expect("append");
        assert!(log.len() > CAPACITY);
        drop(log);
        let (_, found) = BindingLog::open(&path, CAPACITY).expect("reopen");
        assert_eq!(found, batch);
    }
}
