//! Errors that stop the binary: each prints as one line after `switchboard: ` and exits 1.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::logging::LogError;

/// Why Switchboard could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Logging could not start.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    /// The registrar's storage writer thread could not be started.
    #[error("cannot start the registrar's storage writer thread: {0}")]
    RegistrarStart(io::Error),
    /// The SIGTERM / Ctrl-C handlers could not be installed.
    #[error("cannot install the SIGTERM / Ctrl-C handlers: {0}")]
    Signals(io::Error),
    /// The metrics recorder could not be installed.
    #[error("cannot start metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// The SIP endpoint could not bind a listener.
    #[error("{source}{}", bind_hint(.source, "sip.listen"))]
    SipStart {
        /// What the endpoint said.
        source: sip_net::Error,
    },
    /// The RTP port range or bind address is unusable.
    #[error("media: {0}")]
    MediaStart(#[source] media::Error),
    /// `[smtp]` cannot make a mail transport.
    #[error("voicemail email: {0}")]
    MailerStart(#[source] mailer::Error),
    /// The admin HTTP port could not be bound.
    #[error("cannot listen for admin HTTP on {addr}: {source}{}; change admin.listen or set admin.enabled = false", io_hint(.source))]
    AdminBind {
        /// The configured `admin.listen`.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The generated admin token file could not be read or created.
    #[error("admin token file {}: {source}; fix its directory's permissions, or set admin.token in the config", path.display())]
    AdminToken {
        /// The token file (`admin.token` beside the storage).
        path: std::path::PathBuf,
        /// The OS error (or `InvalidData` for an empty file).
        source: io::Error,
    },
    /// The storage could not be opened (in use, not a database, no permission, ...).
    #[error("{source}{}", storage_hint(.source))]
    Storage {
        /// What the storage said; its message names the file.
        source: storage::Error,
    },
    /// The demo extensions' passwords could not be read or kept in storage.
    #[error("cannot keep the demo extensions' passwords in storage: {0}")]
    DemoPasswords(storage::Error),
    /// The SIP endpoint stopped with an error while running.
    #[error("SIP endpoint failed: {0}")]
    SipRun(sip_net::Error),
    /// The admin HTTP server stopped with an error while running.
    #[error("admin HTTP server failed: {0}")]
    AdminRun(io::Error),
    /// `init` wrote nothing (a file was there) or could not write.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    /// `check` found a problem (already worded, e.g. a Lua `file:line: message`).
    #[error("{0}")]
    Check(String),
    /// The Lua dialplan could not start (bad file, missing directory).
    #[error("dialplan: {0}")]
    Dialplan(#[from] crate::dialplan::DialplanError),
    /// An operator subcommand failed (no server, an error answer).
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(io::Error),
    /// A server task ended before shutdown was asked for (a bug: please report it).
    #[error("{0} stopped unexpectedly; this is a bug, please report it with the log above")]
    Stopped(&'static str),
}

/// What to change after a storage error, when the storage's own message does not say it.
fn storage_hint(error: &storage::Error) -> &'static str {
    match error {
        storage::Error::InUse { .. } => {
            "; stop the other switchboard, or set storage.path to another file"
        }
        storage::Error::CreateDir { .. } | storage::Error::Io { .. } => {
            "; fix the permissions, or set storage.path (or storage.backend = \"memory\")"
        }
        storage::Error::Unavailable { .. } => {
            "; start the database or fix storage.url (switchboard needs it reachable at start to run its schema migrations)"
        }
        _ => "",
    }
}

/// A hint after a bind error: what usually causes it and which key to change.
fn bind_hint(error: &sip_net::Error, key: &str) -> String {
    match error {
        sip_net::Error::Bind { source, .. } => format!("{}; change {key}", io_hint(source)),
        _ => String::new(),
    }
}

fn io_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::AddrInUse => " (another program, or another switchboard, is using it)",
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port of 1024 or above)"
        }
        io::ErrorKind::AddrNotAvailable => " (that address is not on this machine)",
        _ => "",
    }
}
