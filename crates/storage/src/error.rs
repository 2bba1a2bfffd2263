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

    /// The PostgreSQL server cannot be reached, refused the connection, or
    /// did not answer within the query timeout. Temporary: the next call
    /// tries again (the registrar answers 503 meanwhile).
    #[error(
        "PostgreSQL at {target} is unavailable while {action}: {reason}; \
         check that the database is running and reachable (requests are retried as they come)"
    )]
    Unavailable {
        /// Where the database is, without credentials (`host:port/dbname`).
        target: String,
        /// What was being done, e.g. "storing a binding".
        action: &'static str,
        /// What the client saw.
        reason: String,
    },

    /// PostgreSQL refused a statement (permissions, a schema changed by
    /// hand, a constraint).
    #[error("PostgreSQL at {target}: {action} failed: {source}")]
    Postgres {
        /// Where the database is, without credentials.
        target: String,
        /// What was being done.
        action: &'static str,
        /// The server's or client's error.
        #[source]
        source: Box<tokio_postgres::Error>,
    },

    /// The database's schema was written by a newer Switchboard.
    #[error(
        "PostgreSQL at {target} has Switchboard schema version {found}, newer than the {supported} \
         this switchboard knows; run the newer switchboard or point storage.url at another database"
    )]
    NewerSchema {
        /// Where the database is, without credentials.
        target: String,
        /// The schema version found in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// A row in PostgreSQL could not be decoded.
    #[error(
        "PostgreSQL at {target}: stored {what} {key} cannot be read ({reason}); delete that row"
    )]
    BadRow {
        /// Where the database is, without credentials.
        target: String,
        /// The kind of record, e.g. "binding".
        what: &'static str,
        /// Which record.
        key: String,
        /// What the decoder found wrong.
        reason: String,
    },

    /// The storage URL (`storage.url` or the file `storage.url_file` names)
    /// is not a PostgreSQL connection URL.
    #[error("storage.url: {reason}")]
    BadUrl {
        /// What is wrong with it.
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

impl Error {
    /// Whether this is a temporary outage of the storage (the database
    /// cannot be reached): callers answer "try again later" (SIP 503)
    /// rather than "server error", and the next call may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
