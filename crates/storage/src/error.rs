//! What can go wrong opening or using storage, worded for the person running the PBX.

use std::path::PathBuf;

/// A storage failure. Each message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another open in this one) holds the file's lock.
    #[error(
        "storage file {} is in use by another process (is another switchboard running?)",
        path.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },

    /// The file exists but is not a database this build can use.
    #[error(
        "storage file {} is not a valid Switchboard database: {reason}; move it aside to start fresh",
        path.display()
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The file was written by a newer Switchboard with a format this build
    /// does not know.
    #[error(
        "storage file {} has format {found}, newer than the {supported} this switchboard reads; \
         run the newer switchboard or move the file aside",
        path.display()
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The format number stored in the file.
        found: u64,
        /// The newest format this build reads.
        supported: u64,
    },

    /// The directory meant to hold the file could not be created.
    #[error("cannot create storage directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The storage file could not be created.
    #[error("cannot create storage file {}: {source}", path.display())]
    CreateFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The file could not be opened or read (permissions, a directory in its
    /// place, a full or failing disk).
    #[error("storage file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The database engine failed while doing `action`.
    #[error("storage file {}: {action} failed: {source}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// What was being done, e.g. "storing a binding".
        action: &'static str,
        /// The engine's error.
        #[source]
        source: Box<redb::Error>,
    },

    /// A stored record could not be decoded (damaged, or written by an
    /// incompatible build).
    #[error(
        "storage file {}: stored {what} {key} cannot be read ({reason}); \
         delete it, or move the file aside to start fresh",
        path.display()
    )]
    Decode {
        /// The file.
        path: PathBuf,
        /// The kind of record, e.g. "binding".
        what: &'static str,
        /// Which record.
        key: String,
        /// What the decoder found wrong.
        reason: String,
    },

    /// A caller handed the store something inconsistent (a bug in the
    /// caller, not a problem with the file).
    #[error("invalid binding: {reason}")]
    InvalidBinding {
        /// What is inconsistent.
        reason: String,
    },
}
